//! Running a database tool whose stdout is the artifact: stdout is streamed into the
//! pipeline, stderr is kept (last lines) for the error message, and a non-zero exit, a
//! signal or an empty output fails the capture.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use super::SourceError;

/// Bytes of stderr kept for messages.
const STDERR_TAIL: usize = 8 * 1024;
/// Read size from the child's stdout.
const READ_BUF: usize = 256 * 1024;

/// What came out of a finished child.
#[derive(Debug)]
pub struct ChildOutput {
    /// Bytes copied from stdout.
    pub bytes: u64,
    /// stderr lines that look like warnings.
    pub warnings: Vec<String>,
}

/// Run `cmd`, streaming stdout into `out` through `tap` (which sees every byte).
pub fn stream_child(
    mut cmd: Command,
    tool: &str,
    out: &mut dyn Write,
    tap: &mut dyn FnMut(&[u8]),
) -> Result<ChildOutput, SourceError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| SourceError::Tool {
        tool: tool.to_string(),
        detail: format!("cannot start it: {e}"),
    })?;
    let mut stdout = child.stdout.take().ok_or_else(|| SourceError::Tool {
        tool: tool.to_string(),
        detail: "no stdout".into(),
    })?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut tail = Vec::new();
        if let Some(mut e) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = e.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL * 2 {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });

    let mut buf = vec![0u8; READ_BUF];
    let mut bytes: u64 = 0;
    let mut write_error = None;
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                write_error = Some(SourceError::Tool {
                    tool: tool.to_string(),
                    detail: format!("reading its output failed: {e}"),
                });
                break;
            }
        };
        tap(&buf[..n]);
        if let Err(e) = out.write_all(&buf[..n]) {
            write_error = Some(SourceError::Write(e));
            break;
        }
        bytes += n as u64;
    }
    if write_error.is_some() {
        let _ = child.kill();
    }
    drop(stdout);
    let status = child.wait().map_err(|e| SourceError::Tool {
        tool: tool.to_string(),
        detail: format!("waiting for it failed: {e}"),
    })?;
    let stderr_text = err_thread.join().unwrap_or_default();
    if let Some(e) = write_error {
        return Err(e);
    }
    if !status.success() {
        let how = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_string(),
        };
        return Err(SourceError::Tool {
            tool: tool.to_string(),
            detail: format!("{how}: {}", last_lines(&stderr_text, 3)),
        });
    }
    if bytes == 0 {
        return Err(SourceError::Empty {
            tool: tool.to_string(),
        });
    }
    let warnings = stderr_text
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("warning"))
        .take(20)
        .map(str::to_string)
        .collect();
    Ok(ChildOutput { bytes, warnings })
}

/// The last `n` non-empty lines of `text`, joined with ` | `.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    let joined = lines[start..].join(" | ");
    if joined.is_empty() {
        "no error message".into()
    } else {
        joined
    }
}

/// Run a tool to completion and return its stdout (for `--version` and small queries).
pub fn run_capture(mut cmd: Command, tool: &str) -> Result<String, SourceError> {
    cmd.stdin(Stdio::null());
    let out = cmd.output().map_err(|e| SourceError::Tool {
        tool: tool.to_string(),
        detail: format!("cannot start it: {e}"),
    })?;
    if !out.status.success() {
        return Err(SourceError::Tool {
            tool: tool.to_string(),
            detail: last_lines(&String::from_utf8_lossy(&out.stderr), 3),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Find `name` on PATH.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
