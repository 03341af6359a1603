//! MariaDB/MySQL: `mariadb-dump` (or `mysqldump`) with `--single-transaction --routines
//! --triggers --events`, without `--databases` so the dump restores under any name. The
//! password reaches the tools through a private `--defaults-extra-file`, never argv. Rows
//! are counted from the dump stream itself, so the counts match exactly what was dumped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use arca_api::manifest::TableCount;

use super::child::{last_lines, stream_child, which};
use super::{blocking, CaptureInfo, SourceError};
use crate::pipeline::PipelineWriter;
use crate::secret::Secret;

/// One MariaDB/MySQL database.
#[derive(Debug, Clone)]
pub struct MyDatabase {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Password.
    pub password: Option<Secret>,
    /// Database.
    pub database: String,
}

/// Client tools found on this machine.
#[derive(Debug, Clone)]
pub struct MyTools {
    /// `mariadb-dump` or `mysqldump`.
    pub dump: PathBuf,
    /// `mariadb` or `mysql`.
    pub client: PathBuf,
}

/// Find the dump tool and the client.
pub fn find_tools() -> Result<MyTools, SourceError> {
    let dump = which("mariadb-dump").or_else(|| which("mysqldump"));
    let client = which("mariadb").or_else(|| which("mysql"));
    match (dump, client) {
        (Some(dump), Some(client)) => Ok(MyTools { dump, client }),
        _ => Err(SourceError::MissingTool(
            "mariadb-dump/mysqldump and the mariadb/mysql client are not installed: install them (Debian: apt-get install mariadb-client)".into(),
        )),
    }
}

/// A private option file holding the password (mode 0600, removed on drop).
pub struct OptionFile {
    file: tempfile::NamedTempFile,
}

impl OptionFile {
    /// Write `[client] password=...`.
    pub fn new(password: Option<&Secret>) -> Result<Self, SourceError> {
        let mut file = tempfile::Builder::new()
            .prefix("arca-my-")
            .tempfile()
            .map_err(|e| SourceError::Io {
                what: "creating a private option file".into(),
                source: e,
            })?;
        let mut text = String::from("[client]\n");
        if let Some(p) = password {
            let escaped = p.expose().replace('\\', "\\\\").replace('"', "\\\"");
            text.push_str(&format!("password=\"{escaped}\"\n"));
        }
        file.write_all(text.as_bytes())
            .map_err(|e| SourceError::Io {
                what: "writing a private option file".into(),
                source: e,
            })?;
        Ok(Self { file })
    }

    /// `--defaults-extra-file=<path>` (must be the first argument).
    pub fn arg(&self) -> String {
        format!("--defaults-extra-file={}", self.file.path().display())
    }
}

impl MyDatabase {
    /// `mysql://user@host:port/db`.
    pub fn describe(&self) -> String {
        format!(
            "mysql://{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }

    fn server(&self) -> String {
        format!("MariaDB/MySQL at {}:{}", self.host, self.port)
    }

    /// A command for `tool` with the connection arguments.
    pub fn command(&self, tool: &PathBuf, opts: &OptionFile) -> Command {
        let mut cmd = Command::new(tool);
        cmd.arg(opts.arg())
            .arg("--protocol=TCP")
            .arg("--host")
            .arg(&self.host)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--user")
            .arg(&self.user)
            .env_remove("MYSQL_PWD");
        cmd
    }

    /// Map a client's stderr to what the user must fix.
    pub fn map_client_error(&self, stderr: &str) -> SourceError {
        let detail = last_lines(stderr, 2);
        if stderr.contains("Access denied") {
            SourceError::Login {
                what: self.server(),
                user: self.user.clone(),
                detail,
            }
        } else if stderr.contains("Unknown database") {
            SourceError::NoDatabase {
                what: self.server(),
                database: self.database.clone(),
            }
        } else if stderr.contains("Can't connect")
            || stderr.contains("Unknown server host")
            || stderr.contains("Lost connection")
        {
            SourceError::Unreachable {
                what: self.server(),
                detail,
            }
        } else {
            SourceError::Query {
                what: self.server(),
                detail,
            }
        }
    }

    /// Check the login and the database, read the version and size.
    pub async fn prepare(&self) -> Result<PreparedMysql, SourceError> {
        let me = self.clone();
        blocking(move || {
            let tools = find_tools()?;
            let opts = OptionFile::new(me.password.as_ref())?;
            let lit = me.database.replace('\\', "\\\\").replace('\'', "\\'");
            let sql = format!(
                "SELECT VERSION(), (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='{lit}'), (SELECT COALESCE(SUM(DATA_LENGTH+INDEX_LENGTH),0) FROM information_schema.TABLES WHERE TABLE_SCHEMA='{lit}')"
            );
            let mut cmd = me.command(&tools.client, &opts);
            cmd.arg("--batch").arg("--skip-column-names").arg("-e").arg(sql);
            let out = cmd.output().map_err(|e| SourceError::Tool {
                tool: tools.client.display().to_string(),
                detail: format!("cannot start it: {e}"),
            })?;
            if !out.status.success() {
                return Err(me.map_client_error(&String::from_utf8_lossy(&out.stderr)));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let fields: Vec<&str> = text.trim().split('\t').collect();
            let version = fields.first().copied().unwrap_or_default().to_string();
            if fields.get(1).copied() != Some("1") {
                return Err(SourceError::NoDatabase {
                    what: me.server(),
                    database: me.database.clone(),
                });
            }
            let size = fields.get(2).and_then(|s| s.parse::<u64>().ok());
            let mut v = Command::new(&tools.dump);
            v.arg("--version");
            let tool_version = super::child::run_capture(v, "mariadb-dump")
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            Ok(PreparedMysql {
                src: me,
                tools,
                opts,
                server_version: version,
                tool_version,
                size_hint: size,
            })
        })
        .await
    }
}

/// A database ready to dump.
pub struct PreparedMysql {
    src: MyDatabase,
    tools: MyTools,
    opts: OptionFile,
    server_version: String,
    tool_version: String,
    /// Data and index size on the server.
    pub size_hint: Option<u64>,
}

impl PreparedMysql {
    /// Stream the dump, counting rows as they pass.
    pub async fn capture(
        self,
        mut w: PipelineWriter,
    ) -> Result<(PipelineWriter, CaptureInfo), SourceError> {
        let mut cmd = self.src.command(&self.tools.dump, &self.opts);
        cmd.args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--no-tablespaces",
            "--default-character-set=utf8mb4",
        ])
        .arg("--")
        .arg(&self.src.database);
        let tool = self
            .tools
            .dump
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mariadb-dump".into());
        let src = self.src.clone();
        let opts = self.opts;
        let (w, out, counter) = blocking(move || {
            let mut counter = InsertCounter::default();
            let r = stream_child(cmd, &tool, &mut w, &mut |b| counter.feed(b));
            drop(opts);
            match r {
                Ok(out) => Ok((w, out, counter)),
                Err(SourceError::Tool { detail, .. })
                    if detail.contains("Access denied") || detail.contains("Got error") =>
                {
                    Err(src.map_client_error(&detail))
                }
                Err(e) => Err(e),
            }
        })
        .await?;
        let mut info = CaptureInfo {
            server_version: Some(self.server_version),
            tool: Some(self.tool_version),
            database: Some(self.src.database.clone()),
            warnings: out.warnings,
            ..Default::default()
        };
        if !counter.complete {
            return Err(SourceError::Tool {
                tool: "mariadb-dump".into(),
                detail: "the dump ended without its completion marker: it is truncated".into(),
            });
        }
        info.items.tables = counter.tables();
        if info.items.tables.is_empty() {
            info.warnings
                .push(format!("database {} has no tables", self.src.database));
        }
        Ok((w, info))
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    #[default]
    Prefix,
    Values,
    Skip,
}

/// Counts rows of `INSERT INTO `t` VALUES (...),(...);` lines in a mysqldump stream, and
/// notices the `-- Dump completed` trailer that a complete dump ends with.
#[derive(Debug, Default)]
pub struct InsertCounter {
    mode: Mode,
    line: Vec<u8>,
    table: String,
    in_str: bool,
    escape: bool,
    depth: u32,
    counts: BTreeMap<String, u64>,
    /// The completion trailer was seen.
    pub complete: bool,
}

const LINE_PREFIX_MAX: usize = 4096;

fn backquoted_name(s: &[u8]) -> Option<(String, usize)> {
    // s starts right after the opening backquote; `` is an escaped backquote.
    let mut name = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'`' {
            if s.get(i + 1) == Some(&b'`') {
                name.push(b'`');
                i += 2;
                continue;
            }
            return Some((String::from_utf8_lossy(&name).into_owned(), i + 1));
        }
        name.push(s[i]);
        i += 1;
    }
    None
}

impl InsertCounter {
    /// Feed the next bytes of the dump.
    pub fn feed(&mut self, data: &[u8]) {
        for &b in data {
            match self.mode {
                Mode::Prefix => {
                    // MySQL writes `INSERT INTO `t` VALUES (..),(..);` on one line,
                    // MariaDB 10.x `INSERT INTO `t` VALUES` then one tuple per line.
                    let newline = b == b'\n';
                    if !newline {
                        self.line.push(b);
                    }
                    let starts = self.line.starts_with(b"INSERT INTO `");
                    if starts
                        && (self.line.ends_with(b" VALUES ")
                            || (newline && self.line.ends_with(b" VALUES")))
                    {
                        if let Some((name, _)) = backquoted_name(&self.line[13..]) {
                            self.table = name;
                            self.counts.entry(self.table.clone()).or_insert(0);
                            self.mode = Mode::Values;
                            self.depth = 0;
                            self.in_str = false;
                            self.escape = false;
                        }
                        self.line.clear();
                    } else if newline {
                        self.end_of_prefix_line();
                    } else if self.line.len() > LINE_PREFIX_MAX {
                        self.line.clear();
                        self.mode = Mode::Skip;
                    }
                }
                Mode::Values => {
                    if self.in_str {
                        if self.escape {
                            self.escape = false;
                        } else if b == b'\\' {
                            self.escape = true;
                        } else if b == b'\'' {
                            self.in_str = false;
                        }
                        continue;
                    }
                    match b {
                        b'\'' => self.in_str = true,
                        b'(' => {
                            if self.depth == 0 {
                                if let Some(c) = self.counts.get_mut(&self.table) {
                                    *c += 1;
                                }
                            }
                            self.depth += 1;
                        }
                        b')' => self.depth = self.depth.saturating_sub(1),
                        b';' if self.depth == 0 => self.mode = Mode::Skip,
                        _ => {}
                    }
                }
                Mode::Skip => {
                    if b == b'\n' {
                        self.mode = Mode::Prefix;
                    }
                }
            }
        }
    }

    fn end_of_prefix_line(&mut self) {
        if self.line.starts_with(b"CREATE TABLE `") {
            if let Some((name, _)) = backquoted_name(&self.line[14..]) {
                self.counts.entry(name).or_insert(0);
            }
        } else if self.line.starts_with(b"-- Dump completed") {
            self.complete = true;
        }
        self.line.clear();
    }

    /// Tables and their row counts, sorted by name.
    pub fn tables(&self) -> Vec<TableCount> {
        self.counts
            .iter()
            .map(|(name, rows)| TableCount {
                name: name.clone(),
                rows: *rows,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rows_across_chunk_boundaries_and_tricky_strings() {
        let dump = b"-- MariaDB dump\nCREATE TABLE `empty` (\n  `id` int\n);\nCREATE TABLE `we``ird` (\n  `id` int\n);\nINSERT INTO `we``ird` VALUES (1,'a(b'),(2,'it\\'s ) ('),(3,NULL);\nINSERT INTO `we``ird` VALUES (4,0x2829);\nINSERT INTO `t2` VALUES (1,'line\\nbreak'),(2,'x');\nINSERT INTO `t3` VALUES\n(1,'a;b'),\n(2,'(;)'),\n(3,'c');\n-- Dump completed on 2026-11-23\n";
        for split in [1usize, 3, 7, 64, dump.len()] {
            let mut c = InsertCounter::default();
            for part in dump.chunks(split) {
                c.feed(part);
            }
            let t = c.tables();
            let get = |n: &str| t.iter().find(|x| x.name == n).map(|x| x.rows);
            assert_eq!(get("empty"), Some(0), "split {split}");
            assert_eq!(get("we`ird"), Some(4), "split {split}");
            assert_eq!(get("t2"), Some(2), "split {split}");
            assert_eq!(get("t3"), Some(3), "split {split}");
            assert!(c.complete);
        }
    }

    #[test]
    fn a_truncated_dump_is_not_complete() {
        let mut c = InsertCounter::default();
        c.feed(b"CREATE TABLE `a` (\n);\nINSERT INTO `a` VALUES (1),(2");
        assert!(!c.complete);
    }
}
