//! A directory destination (NAS mount, USB disk, PVC). Every object is written under a
//! temporary name, fsynced, and renamed into place, and the directory is fsynced, so a
//! crash never leaves a half-written file under a real name. Free space is checked before
//! and during writes, keeping a reserve of 10 % of the file system.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::{Chunk, ObjectInfo, ObjectReader, StoreError};

/// Share of the file system kept free.
pub const RESERVE_FRACTION: f64 = 0.10;
/// Free space is re-checked after this many bytes written.
const SPACE_CHECK_EVERY: u64 = 64 << 20;
/// Prefix of temporary names; listing and prune know it.
pub const TEMP_PREFIX: &str = ".arca-tmp-";

/// A directory store rooted at `root`.
#[derive(Debug, Clone)]
pub struct PathStore {
    root: PathBuf,
}

fn io_err(op: &'static str, key: &str, root: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        return StoreError::Full {
            target: root.display().to_string(),
            detail: format!("no space left while writing {key}"),
        };
    }
    StoreError::Other {
        op,
        key: key.to_string(),
        target: root.display().to_string(),
        detail: e.to_string(),
    }
}

impl PathStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        let ok = rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !ok || key.is_empty() {
            return Err(StoreError::Other {
                op: "resolve",
                key: key.to_string(),
                target: self.describe(),
                detail: "invalid object key".into(),
            });
        }
        Ok(self.root.join(rel))
    }

    /// Free bytes and total bytes of the file system holding the root.
    fn space(&self) -> Result<(u64, u64), StoreError> {
        let probe = existing_ancestor(&self.root);
        let st = nix::sys::statvfs::statvfs(&probe).map_err(|e| StoreError::Other {
            op: "statvfs",
            key: String::new(),
            target: self.describe(),
            detail: e.to_string(),
        })?;
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        let frsize = st.fragment_size() as u64;
        #[allow(clippy::unnecessary_cast)]
        let avail = st.blocks_available() as u64 * frsize;
        #[allow(clippy::unnecessary_cast)]
        let total = st.blocks() as u64 * frsize;
        Ok((avail, total))
    }

    fn reserve(total: u64) -> u64 {
        (total as f64 * RESERVE_FRACTION) as u64
    }

    /// The root exists (or can be created) and is writable.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        let target = self.describe();
        tokio::task::spawn_blocking(move || {
            if !root.exists() {
                // A missing mount point must not be silently replaced by a fresh directory
                // on the root file system: only create the root when its parent exists.
                let parent_ok = root.parent().is_some_and(Path::exists);
                if !parent_ok {
                    return Err(StoreError::Missing { target });
                }
            }
            std::fs::create_dir_all(&root).map_err(|e| StoreError::Unreachable {
                target: target.clone(),
                detail: e.to_string(),
            })?;
            let probe = root.join(format!("{TEMP_PREFIX}probe-{}", std::process::id()));
            std::fs::write(&probe, b"arca").map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    StoreError::Full {
                        target: target.clone(),
                        detail: "cannot write even a small file".into(),
                    }
                } else {
                    StoreError::Unreachable {
                        target: target.clone(),
                        detail: format!("not writable: {e}"),
                    }
                }
            })?;
            let _ = std::fs::remove_file(&probe);
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Other {
            op: "probe",
            key: String::new(),
            target: self.describe(),
            detail: e.to_string(),
        })?
    }

    /// Room for `needed` more bytes while keeping the 10 % reserve?
    pub async fn check_space(&self, needed: u64) -> Result<(), StoreError> {
        let (avail, total) = self.space()?;
        let reserve = Self::reserve(total);
        if avail < reserve.saturating_add(needed) {
            return Err(StoreError::Full {
                target: self.describe(),
                detail: format!(
                    "{} free, about {} needed plus a reserve of {} (10 %)",
                    human_bytes(avail),
                    human_bytes(needed),
                    human_bytes(reserve)
                ),
            });
        }
        Ok(())
    }

    /// Write a streamed artifact: temp name, fsync, rename, fsync dir.
    pub async fn put_stream(
        &self,
        key: &str,
        mut rx: mpsc::Receiver<Chunk>,
    ) -> Result<u64, StoreError> {
        let dest = self.path_of(key)?;
        let tmp = temp_path(&dest);
        let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_err("create directory for", key, &self.root, e))?;
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io_err("create", key, &self.root, e))?;
        let mut written: u64 = 0;
        let mut next_check = SPACE_CHECK_EVERY;
        let result: Result<(), StoreError> = async {
            loop {
                match rx.recv().await {
                    Some(Chunk::Data(b)) => {
                        file.write_all(&b)
                            .await
                            .map_err(|e| io_err("write", key, &self.root, e))?;
                        written += b.len() as u64;
                        if written >= next_check {
                            next_check += SPACE_CHECK_EVERY;
                            self.check_space(0).await?;
                        }
                    }
                    Some(Chunk::Commit) => break,
                    None => {
                        return Err(StoreError::Aborted {
                            key: key.to_string(),
                        })
                    }
                }
            }
            file.flush()
                .await
                .map_err(|e| io_err("flush", key, &self.root, e))?;
            file.sync_all()
                .await
                .map_err(|e| io_err("fsync", key, &self.root, e))?;
            tokio::fs::rename(&tmp, &dest)
                .await
                .map_err(|e| io_err("rename", key, &self.root, e))?;
            sync_dir(&dir).await;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            drop(file);
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Ok(written)
    }

    /// Write a small object atomically.
    pub async fn put_bytes(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel(2);
        let _ = tx.send(Chunk::Data(data)).await;
        let _ = tx.send(Chunk::Commit).await;
        drop(tx);
        self.put_stream(key, rx).await.map(|_| ())
    }

    /// Read a small object.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let p = self.path_of(key)?;
        match tokio::fs::read(&p).await {
            Ok(v) => Ok(Some(Bytes::from(v))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", key, &self.root, e)),
        }
    }

    /// Open an object for reading.
    pub async fn get_stream(&self, key: &str) -> Result<(ObjectReader, u64), StoreError> {
        let p = self.path_of(key)?;
        let file = tokio::fs::File::open(&p).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound {
                    target: self.describe(),
                    key: key.to_string(),
                }
            } else {
                io_err("open", key, &self.root, e)
            }
        })?;
        let len = file
            .metadata()
            .await
            .map_err(|e| io_err("stat", key, &self.root, e))?
            .len();
        Ok((
            Box::new(tokio::io::BufReader::with_capacity(1 << 20, file)),
            len,
        ))
    }

    /// Immediate sub-directories of `prefix`.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = if prefix.trim_matches('/').is_empty() {
            self.root.clone()
        } else {
            self.path_of(prefix.trim_end_matches('/'))?
        };
        let mut out = Vec::new();
        let mut rd = match tokio::fs::read_dir(&dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("list", prefix, &self.root, e)),
        };
        while let Some(entry) = rd
            .next_entry()
            .await
            .map_err(|e| io_err("list", prefix, &self.root, e))?
        {
            let is_dir = entry.file_type().await.map(|t| t.is_dir()).unwrap_or(false);
            if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every file under `prefix`, recursively.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let root = self.root.clone();
        let start = if prefix.trim_matches('/').is_empty() {
            root.clone()
        } else {
            self.path_of(prefix.trim_end_matches('/'))?
        };
        let target = self.describe();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("list", "", Path::new(&target), e)),
                };
                for entry in rd.flatten() {
                    let Ok(meta) = entry.metadata() else { continue };
                    let path = entry.path();
                    if meta.is_dir() {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        out.push(ObjectInfo {
                            key: rel.to_string_lossy().into_owned(),
                            size: meta.len(),
                            modified: meta.modified().ok().map(chrono::DateTime::from),
                        });
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Other {
            op: "list",
            key: prefix.to_string(),
            target: self.describe(),
            detail: e.to_string(),
        })?
    }

    /// Delete a file, and its directory when that becomes empty.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let p = self.path_of(key)?;
        match tokio::fs::remove_file(&p).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("delete", key, &self.root, e)),
        }
        // Tidy empty snapshot folders (fails harmlessly when not empty).
        let mut dir = p.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.root || tokio::fs::remove_dir(&d).await.is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }
}

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: u32 = rand::random();
    dest.with_file_name(format!("{TEMP_PREFIX}{name}-{nonce:08x}"))
}

/// The nearest existing ancestor of `p` (itself when it exists).
pub fn existing_ancestor(p: &Path) -> PathBuf {
    let mut cur = p.to_path_buf();
    while !cur.exists() {
        match cur.parent() {
            Some(parent) => cur = parent.to_path_buf(),
            None => break,
        }
    }
    cur
}

/// Bytes available to unprivileged writers on the file system holding `p` (or its
/// nearest existing ancestor).
pub fn free_bytes(p: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(&existing_ancestor(p)).ok()?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    let avail = st.blocks_available() as u64 * st.fragment_size() as u64;
    Some(avail)
}

async fn sync_dir(dir: &Path) {
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

/// `1.5 GiB`-style sizes for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}
