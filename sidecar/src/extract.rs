//! Safe tar extraction for restores: nothing is ever written outside the target. Entries
//! with absolute paths or `..`, device files, fifos and hard links are refused; no entry is
//! written through a symlink (a symlink entry may point anywhere, but later entries never
//! follow it). Modes, mtimes and — when running as root — numeric owners are restored.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// Why extraction stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The archive tries something unsafe.
    #[error("refusing hostile archive entry {path:?}: {why}")]
    Hostile {
        /// Entry path as written in the archive.
        path: String,
        /// What it tried.
        why: &'static str,
    },
    /// I/O while extracting.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ExtractError {
    let what = what.into();
    move |source| ExtractError::Io { what, source }
}

/// What was extracted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Relative paths of every entry.
    pub paths: BTreeSet<PathBuf>,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Validate an entry path: relative, only normal components.
pub fn safe_relative(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("is empty");
    }
    Ok(out)
}

/// Refuse when any existing ancestor of `rel` inside `root` is a symlink.
fn check_no_symlink_parents(root: &Path, rel: &Path, raw: &str) -> Result<(), ExtractError> {
    let mut cur = root.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for c in &parents[..parents.len().saturating_sub(1)] {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ExtractError::Hostile {
                    path: raw.to_string(),
                    why: "would be written through a symlink",
                })
            }
            Ok(m) if !m.is_dir() => {
                // A file where a directory is needed: replace it (it belongs to the target).
                fs::remove_file(&cur).map_err(io_err(format!("replacing {}", cur.display())))?;
                fs::create_dir(&cur).map_err(io_err(format!("creating {}", cur.display())))?;
            }
            Ok(_) => {}
            Err(_) => {
                fs::create_dir(&cur).map_err(io_err(format!("creating {}", cur.display())))?
            }
        }
    }
    Ok(())
}

/// Remove whatever is at `path` unless it is a directory (never follows symlinks).
fn clear_non_dir(path: &Path) -> Result<(), ExtractError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => fs::remove_file(path).map_err(io_err(format!("replacing {}", path.display()))),
        Err(_) => Ok(()),
    }
}

fn set_times(path: &Path, mtime: u64) {
    let t = TimeSpec::new(mtime as i64, 0);
    let _ = utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink);
}

fn set_owner(path: &Path, uid: u64, gid: u64) {
    if nix::unistd::geteuid().is_root() {
        let _ = nix::unistd::fchownat(
            None,
            path,
            Some(nix::unistd::Uid::from_raw(uid as u32)),
            Some(nix::unistd::Gid::from_raw(gid as u32)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
    }
}

/// Extract a tar stream into `root` (created if missing).
pub fn extract(reader: impl Read, root: &Path) -> Result<Extracted, ExtractError> {
    fs::create_dir_all(root).map_err(io_err(format!("creating {}", root.display())))?;
    let mut archive = tar::Archive::new(reader);
    let mut out = Extracted::default();
    let mut dir_times: Vec<(PathBuf, u64, u32, u64, u64)> = Vec::new();
    let entries = archive.entries().map_err(io_err("reading the archive"))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("reading the archive"))?;
        let raw_path = entry
            .path()
            .map_err(io_err("reading an entry name"))?
            .into_owned();
        let raw = raw_path.display().to_string();
        let rel = safe_relative(&raw_path).map_err(|why| ExtractError::Hostile {
            path: raw.clone(),
            why,
        })?;
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let dest = root.join(&rel);
        let kind = header.entry_type();
        check_no_symlink_parents(root, &rel, &raw)?;
        match kind {
            tar::EntryType::Directory => {
                clear_non_dir(&dest)?;
                if !dest.is_dir() {
                    fs::create_dir(&dest)
                        .map_err(io_err(format!("creating {}", dest.display())))?;
                }
                dir_times.push((dest.clone(), mtime, mode, uid, gid));
                out.directories += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear_non_dir(&dest)?;
                if dest.is_dir() {
                    fs::remove_dir_all(&dest)
                        .map_err(io_err(format!("replacing {}", dest.display())))?;
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(io_err(format!("creating {}", dest.display())))?;
                let n = io::copy(&mut entry, &mut f)
                    .map_err(io_err(format!("writing {}", dest.display())))?;
                drop(f);
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                    .map_err(io_err(format!("setting the mode of {}", dest.display())))?;
                set_owner(&dest, uid, gid);
                set_times(&dest, mtime);
                out.files += 1;
                out.bytes += n;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io_err("reading a link target"))?
                    .ok_or(ExtractError::Hostile {
                        path: raw.clone(),
                        why: "is a symlink without a target",
                    })?
                    .into_owned();
                if dest.is_dir() && !dest.is_symlink() {
                    fs::remove_dir_all(&dest)
                        .map_err(io_err(format!("replacing {}", dest.display())))?;
                }
                clear_non_dir(&dest)?;
                std::os::unix::fs::symlink(&target, &dest)
                    .map_err(io_err(format!("creating symlink {}", dest.display())))?;
                set_owner(&dest, uid, gid);
                set_times(&dest, mtime);
                out.symlinks += 1;
            }
            tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink
            | tar::EntryType::XHeader
            | tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Link => {
                return Err(ExtractError::Hostile {
                    path: raw,
                    why: "is a hard link (Arca archives have none)",
                })
            }
            _ => {
                return Err(ExtractError::Hostile {
                    path: raw,
                    why: "is a device, fifo or other special file",
                })
            }
        }
        out.paths.insert(rel);
    }
    // Directory metadata last: creating children changed their mtimes.
    for (dir, mtime, mode, uid, gid) in dir_times.into_iter().rev() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(mode));
        set_owner(&dir, uid, gid);
        set_times(&dir, mtime);
    }
    Ok(out)
}

/// Remove everything under `root` that is not in `keep` and not excluded; returns how
/// many entries were removed. Never follows symlinks.
pub fn delete_newer(
    root: &Path,
    keep: &BTreeSet<PathBuf>,
    excluded: &dyn Fn(&Path) -> bool,
) -> Result<u64, ExtractError> {
    let mut removed = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(_) => continue,
        };
        for e in rd.flatten() {
            let child = rel.join(e.file_name());
            if excluded(&child) {
                continue;
            }
            let abs = e.path();
            let meta =
                fs::symlink_metadata(&abs).map_err(io_err(format!("stat {}", abs.display())))?;
            if keep.contains(&child) {
                if meta.is_dir() {
                    stack.push(child);
                }
                continue;
            }
            if meta.is_dir() {
                fs::remove_dir_all(&abs).map_err(io_err(format!("removing {}", abs.display())))?;
            } else {
                fs::remove_file(&abs).map_err(io_err(format!("removing {}", abs.display())))?;
            }
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            // Write the name bytes raw so hostile paths survive the builder's checks.
            let name = h.as_gnu_mut().map(|g| &mut g.name);
            if let Some(n) = name {
                n[..path.len()].copy_from_slice(path.as_bytes());
            }
            if let Some(l) = link {
                h.set_link_name(l).expect("link");
            }
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn refuses_escapes_devices_and_links() {
        for (entries, needle) in [
            (
                vec![("../evil", tar::EntryType::Regular, &b"x"[..], None)],
                "contains '..'",
            ),
            (
                vec![("/etc/evil", tar::EntryType::Regular, &b"x"[..], None)],
                "absolute path",
            ),
            (
                vec![("dev", tar::EntryType::Char, &b""[..], None)],
                "device",
            ),
            (
                vec![("hl", tar::EntryType::Link, &b""[..], Some("/etc/passwd"))],
                "hard link",
            ),
            (
                vec![
                    ("esc", tar::EntryType::Symlink, &b""[..], Some("/tmp")),
                    ("esc/evil", tar::EntryType::Regular, &b"x"[..], None),
                ],
                "through a symlink",
            ),
        ] {
            let dir = tempfile::tempdir().expect("dir");
            let root = dir.path().join("t");
            let data = tar_with(&entries);
            let err = extract(&data[..], &root).expect_err(needle);
            assert!(err.to_string().contains(needle), "{needle}: {err}");
            assert!(!dir.path().join("evil").exists());
        }
    }

    #[test]
    fn extracts_and_deletes_newer() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path().join("t");
        fs::create_dir_all(root.join("old/sub")).expect("mk");
        fs::write(root.join("old/sub/x"), "x").expect("w");
        fs::write(root.join("keep.tmp"), "x").expect("w");
        let data = tar_with(&[
            ("a", tar::EntryType::Directory, b"", None),
            ("a/f", tar::EntryType::Regular, b"hello", None),
            ("l", tar::EntryType::Symlink, b"", Some("a/f")),
        ]);
        let got = extract(&data[..], &root).expect("extract");
        assert_eq!(
            (got.files, got.directories, got.symlinks, got.bytes),
            (1, 1, 1, 5)
        );
        assert_eq!(
            fs::read_to_string(root.join("l")).expect("via link"),
            "hello"
        );
        let removed = delete_newer(&root, &got.paths, &|p: &Path| {
            p.extension().is_some_and(|e| e == "tmp")
        })
        .expect("delete");
        assert_eq!(removed, 1);
        assert!(!root.join("old").exists());
        assert!(root.join("keep.tmp").exists());
    }
}
