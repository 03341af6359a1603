//! A directory tree as a POSIX tar (GNU long names): modes, owners, mtimes and symlinks
//! kept, entries sorted so the same tree gives the same archive. Exclude globs without a
//! `/` match a name at any depth; globs with a `/` match the path from the root. A file
//! that vanishes or changes while it is read is a warning (on stderr with its path; in the
//! manifest as a count, since paths can name patients) — never a silent success. A file
//! that cannot be read fails the component.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::{blocking, CaptureInfo, SourceError};
use crate::pipeline::PipelineWriter;

/// Exclude patterns, compiled.
#[derive(Debug, Clone)]
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
}

impl Excludes {
    /// Compile `patterns`; an invalid glob is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let text = p.trim_start_matches('/').trim_end_matches('/');
            let anchored = p.starts_with('/') || text.contains('/');
            let glob = GlobBuilder::new(text)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("invalid exclude pattern {p:?}: {e}"))?;
            if anchored {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        Ok(Self {
            names: names.build().map_err(|e| e.to_string())?,
            paths: paths.build().map_err(|e| e.to_string())?,
        })
    }

    /// Is the entry at `rel` (relative to the root) excluded?
    pub fn matches(&self, rel: &Path, name: &OsStr) -> bool {
        self.names.is_match(Path::new(name)) || self.paths.is_match(rel)
    }
}

/// A directory tree to capture.
#[derive(Debug, Clone)]
pub struct FileTree {
    /// Root directory.
    pub root: PathBuf,
    /// Excludes.
    pub excludes: Excludes,
}

/// One entry found by the walk.
struct Entry {
    abs: PathBuf,
    rel: PathBuf,
    meta: Metadata,
}

/// Counters and warnings of a walk.
#[derive(Default)]
struct Tally {
    files: u64,
    dirs: u64,
    symlinks: u64,
    bytes: u64,
    vanished: u64,
    changed: u64,
    skipped: u64,
}

impl FileTree {
    fn check_root(&self) -> Result<(), SourceError> {
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(SourceError::Path(format!(
                "{} is not a directory: point the files component at a directory",
                self.root.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SourceError::Path(format!(
                "{} does not exist: check the files component's path and that the volume is mounted",
                self.root.display()
            ))),
            Err(e) => Err(SourceError::Path(format!(
                "cannot read {}: {e}; run arca as a user that can read the volume",
                self.root.display()
            ))),
        }
    }

    /// Sorted children of `dir` that are not excluded.
    fn children(&self, dir: &Path, rel: &Path) -> Result<Vec<Entry>, SourceError> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.as_os_str().is_empty() => {
                return Ok(Vec::new())
            }
            Err(e) => {
                return Err(SourceError::Path(format!(
                    "cannot list {}: {e}; run arca as a user that can read the volume",
                    dir.display()
                )))
            }
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| SourceError::Io {
                what: format!("listing {}", dir.display()),
                source: e,
            })?;
            let name = ent.file_name();
            let child_rel = rel.join(&name);
            if self.excludes.matches(&child_rel, &name) {
                continue;
            }
            let abs = ent.path();
            let meta = match std::fs::symlink_metadata(&abs) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(SourceError::Io {
                        what: format!("reading metadata of {}", abs.display()),
                        source: e,
                    })
                }
            };
            out.push(Entry {
                abs,
                rel: child_rel,
                meta,
            });
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    /// Bytes of regular files in the tree (for sizing uploads).
    pub async fn size_hint(&self) -> Result<u64, SourceError> {
        let me = self.clone();
        blocking(move || {
            me.check_root()?;
            let mut total = 0u64;
            let mut stack = vec![(me.root.clone(), PathBuf::new())];
            while let Some((dir, rel)) = stack.pop() {
                for e in me.children(&dir, &rel)? {
                    if e.meta.is_dir() {
                        stack.push((e.abs, e.rel));
                    } else if e.meta.is_file() {
                        total += e.meta.len();
                    }
                }
            }
            Ok(total)
        })
        .await
    }

    /// Stream the tree as tar.
    pub async fn capture(
        self,
        w: PipelineWriter,
    ) -> Result<(PipelineWriter, CaptureInfo), SourceError> {
        blocking(move || {
            self.check_root()?;
            let mut builder = tar::Builder::new(w);
            builder.follow_symlinks(false);
            let mut tally = Tally::default();
            self.walk(&mut builder, &self.root.clone(), Path::new(""), &mut tally)?;
            builder.finish().map_err(SourceError::Write)?;
            let w = builder.into_inner().map_err(SourceError::Write)?;
            let mut info = CaptureInfo {
                tool: Some(format!("arca {} (tar)", env!("CARGO_PKG_VERSION"))),
                path: Some(self.root.display().to_string()),
                ..Default::default()
            };
            info.items.files = Some(tally.files);
            info.items.directories = Some(tally.dirs);
            info.items.symlinks = Some(tally.symlinks);
            info.items.bytes = Some(tally.bytes);
            if tally.vanished > 0 {
                info.warnings.push(format!(
                    "{} file(s) vanished while the tree was read (paths in the run log)",
                    tally.vanished
                ));
            }
            if tally.changed > 0 {
                info.warnings.push(format!(
                    "{} file(s) changed while they were read and may be inconsistent (paths in the run log); consider a cold backup (quiesce)",
                    tally.changed
                ));
            }
            if tally.skipped > 0 {
                info.warnings.push(format!(
                    "{} special file(s) (sockets, fifos, devices) skipped",
                    tally.skipped
                ));
            }
            if tally.files == 0 && tally.dirs == 0 && tally.symlinks == 0 {
                info.warnings.push(format!(
                    "{} is empty: check that the volume is mounted",
                    self.root.display()
                ));
            }
            Ok((w, info))
        })
        .await
    }

    fn walk(
        &self,
        b: &mut tar::Builder<PipelineWriter>,
        dir: &Path,
        rel: &Path,
        tally: &mut Tally,
    ) -> Result<(), SourceError> {
        for e in self.children(dir, rel)? {
            let ft = e.meta.file_type();
            if ft.is_dir() {
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&e.meta, tar::HeaderMode::Complete);
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, &e.rel, io::empty())
                    .map_err(SourceError::Write)?;
                tally.dirs += 1;
                self.walk(b, &e.abs, &e.rel, tally)?;
            } else if ft.is_symlink() {
                let target = match std::fs::read_link(&e.abs) {
                    Ok(t) => t,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {
                        tracing::warn!(path = %e.abs.display(), "symlink vanished while read");
                        tally.vanished += 1;
                        continue;
                    }
                    Err(err) => {
                        return Err(SourceError::Io {
                            what: format!("reading symlink {}", e.abs.display()),
                            source: err,
                        })
                    }
                };
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&e.meta, tar::HeaderMode::Complete);
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &e.rel, &target)
                    .map_err(SourceError::Write)?;
                tally.symlinks += 1;
            } else if ft.is_file() {
                self.file(b, &e, tally)?;
            } else {
                tracing::warn!(path = %e.abs.display(), "special file skipped");
                tally.skipped += 1;
            }
        }
        Ok(())
    }

    fn file(
        &self,
        b: &mut tar::Builder<PipelineWriter>,
        e: &Entry,
        tally: &mut Tally,
    ) -> Result<(), SourceError> {
        let f = match File::open(&e.abs) {
            Ok(f) => f,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(path = %e.abs.display(), "file vanished while the tree was read");
                tally.vanished += 1;
                return Ok(());
            }
            Err(err) => {
                return Err(SourceError::Path(format!(
                "cannot read {}: {err}; run arca as a user that can read every file, or exclude it",
                e.abs.display()
            )))
            }
        };
        let before = f.metadata().map_err(|err| SourceError::Io {
            what: format!("stat {}", e.abs.display()),
            source: err,
        })?;
        let size = before.len();
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&before, tar::HeaderMode::Complete);
        h.set_size(size);
        let mut reader = ExactReader {
            inner: f,
            remaining: size,
            short: false,
            error: None,
        };
        let appended = b.append_data(&mut h, &e.rel, &mut reader);
        if let Some(err) = reader.error.take() {
            return Err(SourceError::Path(format!(
                "reading {} failed: {err}",
                e.abs.display()
            )));
        }
        appended.map_err(SourceError::Write)?;
        let after = reader.inner.metadata().ok();
        let changed = reader.short
            || after.is_none_or(|a| {
                a.len() != before.len()
                    || a.mtime() != before.mtime()
                    || a.mtime_nsec() != before.mtime_nsec()
            });
        if changed {
            tracing::warn!(path = %e.abs.display(), "file changed while it was read");
            tally.changed += 1;
        }
        tally.files += 1;
        tally.bytes += size;
        Ok(())
    }
}

/// Reads exactly `remaining` bytes: pads with zeros when the file shrank, stops when it
/// grew, so the tar stays well-formed either way; read errors are kept aside so they are
/// not mistaken for pipeline errors.
struct ExactReader {
    inner: File,
    remaining: u64,
    short: bool,
    error: Option<io::Error>,
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining as usize);
        let n = if self.short {
            0
        } else {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
                Err(e) => {
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(io::Error::other(msg));
                }
            }
        };
        if n == 0 {
            self.short = true;
            buf[..want].fill(0);
            self.remaining -= want as u64;
            return Ok(want);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_by_name_anywhere_and_by_anchored_path() {
        let ex =
            Excludes::new(&["*.tmp".into(), "cache/".into(), "/db/wal/*".into()]).expect("globs");
        let m = |p: &str| {
            let path = Path::new(p);
            ex.matches(path, path.file_name().unwrap_or_default())
        };
        assert!(m("a.tmp"));
        assert!(m("deep/er/x.tmp"));
        assert!(!m("a.tmpx"));
        assert!(m("db/wal/000001"));
        assert!(!m("other/db/wal/000001"));
        assert!(!m("db/wal"));
        assert!(m("cache"));
    }

    #[test]
    fn invalid_globs_are_named() {
        let err = Excludes::new(&["[oops".into()]).expect_err("bad glob");
        assert!(err.contains("[oops"), "{err}");
    }
}
