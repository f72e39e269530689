//! The atomic writer layout of configMap, secret, downwardAPI and projected
//! volumes, as the kubelet lays them out so that a container sees a whole
//! new set of files or the old one, never a mix:
//!
//! ```text
//! <volume>/..2024_05_01_10_00_00.123456789/  the current payload (real files)
//! <volume>/..data -> ..2024_05_01_10_00_00.123456789
//! <volume>/<key>  -> ..data/<key>             one per top-level path
//! ```
//!
//! An update writes a new timestamped directory, swaps `..data` with a
//! rename (atomic), adds or removes the per-key symlinks and removes the
//! old directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// The symlink naming the current payload directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (defaultMode or the item's mode).
    pub mode: u32,
}

/// Relative path -> contents.
pub type Payload = BTreeMap<String, FileProjection>;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid path {0:?}: must be relative, without '..' elements and not start with '..'")]
    InvalidPath(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Upstream's validatePath: relative, no `..` element, not starting with
/// `..` (which would clash with the writer's own entries).
fn validate_path(p: &str) -> Result<(), WriteError> {
    let bad = p.is_empty()
        || p.starts_with("..")
        || Path::new(p).is_absolute()
        || Path::new(p)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)));
    if bad {
        Err(WriteError::InvalidPath(p.to_string()))
    } else {
        Ok(())
    }
}

fn top_level(p: &str) -> &str {
    p.split('/').next().unwrap_or(p)
}

/// Whether the directory `dir` holds exactly `payload`.
fn holds(dir: &Path, payload: &Payload) -> bool {
    let mut found = BTreeSet::new();
    if collect_files(dir, dir, &mut found).is_err() {
        return false;
    }
    if found.len() != payload.len() || !payload.keys().all(|k| found.contains(k)) {
        return false;
    }
    payload.iter().all(|(k, f)| {
        let p = dir.join(k);
        match (fs::read(&p), fs::symlink_metadata(&p)) {
            (Ok(data), Ok(meta)) => data == f.data && meta.permissions().mode() & 0o7777 == f.mode,
            _ => false,
        }
    })
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// The timestamped directory `..data` points at now, if any.
pub fn current_dir(target: &Path) -> Option<PathBuf> {
    let link = fs::read_link(target.join(DATA_DIR)).ok()?;
    Some(target.join(link))
}

/// Make `target` hold `payload`. Returns whether anything changed.
pub fn write(target: &Path, payload: &Payload) -> Result<bool, WriteError> {
    for p in payload.keys() {
        validate_path(p)?;
    }
    fs::create_dir_all(target).map_err(io_err(target))?;
    let old_dir = current_dir(target);
    if let Some(old) = &old_dir
        && holds(old, payload)
    {
        return Ok(false);
    }

    // 1. The new payload in a fresh timestamped directory.
    let stamp = jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S.")
        .to_string();
    let name = format!("{stamp}{:09}", rand::random::<u32>() % 1_000_000_000);
    let new_dir = target.join(&name);
    fs::create_dir(&new_dir).map_err(io_err(&new_dir))?;
    fs::set_permissions(&new_dir, fs::Permissions::from_mode(0o755)).map_err(io_err(&new_dir))?;
    let written = write_payload(&new_dir, payload);
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&new_dir);
        return Err(e);
    }

    // 2. Swap ..data atomically: a new symlink renamed over the old one.
    let tmp = target.join(DATA_DIR_TMP);
    let _ = fs::remove_file(&tmp);
    symlink(&name, &tmp).map_err(io_err(&tmp))?;
    fs::rename(&tmp, target.join(DATA_DIR)).map_err(io_err(&tmp))?;

    // 3. The per-key symlinks for new top-level names.
    let wanted: BTreeSet<&str> = payload.keys().map(|k| top_level(k)).collect();
    for top in &wanted {
        let link = target.join(top);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(top), &link).map_err(io_err(&link))?;
        }
    }

    // 4. Drop the names the new payload no longer has, then the old data.
    if let Ok(entries) = fs::read_dir(target) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let n = file_name.to_string_lossy();
            if n.starts_with("..") || wanted.contains(n.as_ref()) {
                continue;
            }
            // Only our own symlinks into ..data: never user files.
            if let Ok(dest) = fs::read_link(entry.path())
                && dest.starts_with(DATA_DIR)
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    if let Some(old) = old_dir
        && old != new_dir
    {
        let _ = fs::remove_dir_all(old);
    }
    Ok(true)
}

fn write_payload(dir: &Path, payload: &Payload) -> Result<(), WriteError> {
    for (rel, file) in payload {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut f = fs::File::create(&path).map_err(io_err(&path))?;
        f.write_all(&file.data).map_err(io_err(&path))?;
        // Explicit chmod: the umask must not narrow the requested mode.
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode)).map_err(io_err(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(items: &[(&str, &str, u32)]) -> Payload {
        items
            .iter()
            .map(|(k, v, m)| {
                (
                    k.to_string(),
                    FileProjection {
                        data: v.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rk3s-aw-{tag}-{}", rand::random::<u64>()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn layout_update_and_removal() {
        let d = tmpdir("layout");
        assert!(write(&d, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)])).unwrap());
        let first = current_dir(&d).unwrap();
        let first_name = first.file_name().unwrap().to_string_lossy().into_owned();
        assert!(first_name.starts_with(".."), "{first_name}");
        assert_eq!(fs::read_link(d.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::read_link(d.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        assert_eq!(fs::read_to_string(d.join("sub/b")).unwrap(), "2");
        let mode = fs::metadata(d.join("sub/b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);

        // The same payload again: nothing changes.
        assert!(!write(&d, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)])).unwrap());
        assert_eq!(current_dir(&d).unwrap(), first);

        // New content, a removed key and a new one.
        assert!(write(&d, &payload(&[("a", "3", 0o644), ("c", "4", 0o600)])).unwrap());
        let second = current_dir(&d).unwrap();
        assert_ne!(second, first);
        assert!(!first.exists(), "the old payload dir is removed");
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "3");
        assert_eq!(fs::read_to_string(d.join("c")).unwrap(), "4");
        assert!(
            fs::symlink_metadata(d.join("sub")).is_err(),
            "stale key link removed"
        );
        // A mode change alone is a change.
        assert!(write(&d, &payload(&[("a", "3", 0o640), ("c", "4", 0o600)])).unwrap());
        let mode = fs::metadata(d.join("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rejects_escaping_paths() {
        let d = tmpdir("bad");
        for bad in ["../x", "/etc/passwd", "a/../../b", "..data", ""] {
            assert!(
                matches!(
                    write(&d, &payload(&[(bad, "x", 0o644)])),
                    Err(WriteError::InvalidPath(_))
                ),
                "{bad}"
            );
        }
        fs::remove_dir_all(&d).unwrap();
    }
}
