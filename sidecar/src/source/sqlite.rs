//! SQLite: a live database is copied with SQLite's online backup API (one step, under a
//! read lock, so the copy is consistent even while the application writes), the copy is
//! `PRAGMA integrity_check`ed and its tables counted, then streamed. The temporary copy is
//! the only staging SQLite needs; its room is checked first.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arca_api::manifest::TableCount;
use rusqlite::{backup, Connection, OpenFlags};

use super::{blocking, CaptureInfo, SourceError};
use crate::pipeline::PipelineWriter;

/// A SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteFile {
    /// Path of the database.
    pub path: PathBuf,
}

/// A consistent, checked copy ready to stream.
pub struct PreparedSqlite {
    path: PathBuf,
    copy: tempfile::NamedTempFile,
    /// Size of the copy.
    pub size: u64,
    info: CaptureInfo,
}

fn sq_err(what: &str, e: rusqlite::Error) -> SourceError {
    SourceError::Query {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

/// Is this a SQLite 3 database file?
pub fn has_sqlite_header(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    Ok(n == 16 && &head == b"SQLite format 3\0")
}

/// Tables (excluding SQLite's own) with their row counts.
pub fn count_tables(conn: &Connection) -> Result<Vec<TableCount>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let sql = format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\""));
        let rows: i64 = conn.query_row(&sql, [], |r| r.get(0))?;
        out.push(TableCount {
            name,
            rows: rows.max(0) as u64,
        });
    }
    Ok(out)
}

/// Run `PRAGMA integrity_check`; Err with the first problems when not ok.
pub fn integrity_check(conn: &Connection) -> Result<(), String> {
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| e.to_string())?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(lines.into_iter().take(3).collect::<Vec<_>>().join("; "))
    }
}

impl SqliteFile {
    /// Copy with the backup API, check and count.
    pub async fn prepare(&self) -> Result<PreparedSqlite, SourceError> {
        let path = self.path.clone();
        blocking(move || {
            let shown = path.display().to_string();
            match has_sqlite_header(&path) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(SourceError::Path(format!(
                        "{shown} is not a SQLite 3 database: check the component's path"
                    )))
                }
                Err(e) => {
                    return Err(SourceError::Path(format!(
                        "cannot read the SQLite database {shown}: {e}; check the path and the mount"
                    )))
                }
            }
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let tmp_dir = std::env::temp_dir();
            if let Some(avail) = crate::store::path::free_bytes(&tmp_dir) {
                if avail < size.saturating_mul(11) / 10 {
                    return Err(SourceError::Path(format!(
                        "not enough room in {} for a temporary copy of {shown} ({} bytes): set TMPDIR to a larger directory",
                        tmp_dir.display(),
                        size
                    )));
                }
            }
            let copy = tempfile::Builder::new()
                .prefix("arca-sqlite-")
                .tempfile()
                .map_err(|e| SourceError::Io {
                    what: "creating a temporary copy".into(),
                    source: e,
                })?;
            let mut warnings = Vec::new();
            // A read-only mount cannot hold SQLite's lock files; then fall back to an
            // immutable open, which is only safe when the application is stopped.
            let src = match Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .and_then(|c| c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())).map(|_| c))
            {
                Ok(c) => c,
                Err(first) => {
                    let uri = format!("file:{}?immutable=1", path.display());
                    let c = Connection::open_with_flags(
                        &uri,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(|_| sq_err(&format!("opening {shown}"), first))?;
                    warnings.push(
                        "database opened immutable (read-only mount): consistent only if the application is stopped (quiesce)".to_string(),
                    );
                    c
                }
            };
            src.busy_timeout(Duration::from_secs(60))
                .map_err(|e| sq_err("setting the busy timeout", e))?;
            let mut dst = Connection::open(copy.path()).map_err(|e| sq_err("opening the copy", e))?;
            {
                let b = backup::Backup::new(&src, &mut dst)
                    .map_err(|e| sq_err(&format!("starting the backup of {shown}"), e))?;
                // One step of all pages (-1) copies under a single read lock: consistent.
                let deadline = std::time::Instant::now() + Duration::from_secs(300);
                loop {
                    match b.step(-1).map_err(|e| sq_err(&format!("copying {shown}"), e))? {
                        backup::StepResult::Done => break,
                        backup::StepResult::More => continue,
                        _ if std::time::Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(250))
                        }
                        _ => {
                            return Err(SourceError::Query {
                                what: format!("copying {shown}"),
                                detail: "the database stayed locked for 5 minutes: stop the application (quiesce) or retry".into(),
                            })
                        }
                    }
                }
            }
            drop(src);
            if let Err(problems) = integrity_check(&dst) {
                return Err(SourceError::Integrity(format!(
                    "the copy of {shown} fails PRAGMA integrity_check ({problems}): repair the database before backing it up"
                )));
            }
            let tables = count_tables(&dst).map_err(|e| sq_err("counting rows", e))?;
            drop(dst);
            let size = std::fs::metadata(copy.path()).map(|m| m.len()).unwrap_or(0);
            let mut info = CaptureInfo {
                tool: Some(format!("sqlite {}", rusqlite::version())),
                path: Some(shown),
                warnings,
                ..Default::default()
            };
            info.items.tables = tables;
            Ok(PreparedSqlite {
                path,
                copy,
                size,
                info,
            })
        })
        .await
    }
}

impl PreparedSqlite {
    /// Stream the checked copy.
    pub async fn capture(
        self,
        mut w: PipelineWriter,
    ) -> Result<(PipelineWriter, CaptureInfo), SourceError> {
        let shown = self.path.display().to_string();
        blocking(move || {
            let mut f = std::fs::File::open(self.copy.path()).map_err(|e| SourceError::Io {
                what: format!("reading the copy of {shown}"),
                source: e,
            })?;
            std::io::copy(&mut f, &mut w).map_err(SourceError::Write)?;
            drop(self.copy);
            Ok((w, self.info))
        })
        .await
    }
}
