//! Unpacking one layer into a directory usable as an overlayfs lowerdir.
//!
//! OCI whiteouts become overlayfs' own: `.wh.NAME` is a 0/0 character device
//! `NAME`, `.wh..wh..opq` is the `trusted.overlay.opaque=y` xattr on its
//! directory. Modes, ownership, xattrs, hard links and device nodes are kept.
//! The uncompressed stream is hashed as it is read, so the layer's diff-id is
//! verified without a second pass.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The layer's bytes, decompressed by what they start with (gzip, zstd or
/// a plain tar), whatever the media type claimed.
pub(crate) fn decompressed(file: fs::File) -> io::Result<Box<dyn Read>> {
    let mut reader = BufReader::new(file);
    let magic = reader.fill_buf()?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::with_buffer(reader)?)
    } else {
        Box::new(reader)
    })
}

/// Unpack the layer blob at `blob` into `dest` (an empty directory) and
/// check its uncompressed digest against `diff_id`. Returns the bytes of
/// file content written.
pub(crate) fn unpack_layer(blob: &Path, diff_id: &str, dest: &Path) -> Result<u64, ImageError> {
    let file = fs::File::open(blob).map_err(|e| ImageError::io(blob, e))?;
    let reader = decompressed(file).map_err(|e| ImageError::io(blob, e))?;
    let mut hashing = Hashing {
        inner: reader,
        hash: Sha256::new(),
    };
    let layer_err = |e: io::Error| ImageError::Invalid(format!("layer {diff_id}: {e}"));
    let size = unpack_tar(&mut hashing, dest).map_err(layer_err)?;
    // The tar reader stops at the end-of-archive blocks: hash the rest too.
    io::copy(&mut hashing, &mut io::sink()).map_err(layer_err)?;
    let actual = format!("sha256:{}", hex::encode(hashing.hash.finalize()));
    if actual != diff_id {
        return Err(ImageError::Digest {
            what: format!("layer {}", blob.display()),
            expected: diff_id.to_string(),
            actual,
        });
    }
    Ok(size)
}

fn unpack_tar(reader: &mut dyn Read, dest: &Path) -> io::Result<u64> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    // Only root can give files away; an unprivileged import keeps its own.
    archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    let canonical_dest = dest.canonicalize()?;
    let mut size = 0u64;
    // Directory mtimes change as their contents are unpacked: set them last.
    let mut dir_mtimes: Vec<(PathBuf, i64)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(rel) = clean_path(&entry.path()?) else {
            continue;
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let parent = safe_dir(&canonical_dest, rel.parent().unwrap_or(Path::new("")))?;
            if name == OPAQUE_WHITEOUT {
                xattr::set(&parent, OPAQUE_XATTR, b"y")?;
            } else if !hidden.is_empty() {
                make_node(&parent.join(hidden), SFlag::S_IFCHR, 0, 0, 0, 0, 0)?;
            }
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        match kind {
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let parent = safe_dir(&canonical_dest, rel.parent().unwrap_or(Path::new("")))?;
                let flag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                // Fifos carry no device numbers (some writers leave the
                // fields blank).
                let (major, minor) = if kind == EntryType::Fifo {
                    (0, 0)
                } else {
                    (
                        header.device_major()?.unwrap_or(0),
                        header.device_minor()?.unwrap_or(0),
                    )
                };
                let (uid, gid) = (header.uid()?, header.gid()?);
                let mode = header.mode()?;
                let path = parent.join(&name);
                make_node(&path, flag, mode, major, minor, uid, gid)?;
                continue;
            }
            EntryType::Directory => {
                if let Ok(mtime) = header.mtime() {
                    dir_mtimes.push((rel.clone(), mtime as i64));
                }
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                size += header.size().unwrap_or(0);
            }
            _ => {}
        }
        entry.unpack_in(&canonical_dest)?;
    }
    for (rel, mtime) in dir_mtimes.iter().rev() {
        let path = canonical_dest.join(rel);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            let t = nix::sys::time::TimeSpec::new(*mtime, 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &path,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(io::Error::from)?;
        }
    }
    Ok(size)
}

/// The entry's path relative to the layer root, or `None` for the root
/// itself or a path that climbs out of it (skipped, as tar does).
fn clean_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// `root/rel`, created if missing, refusing to follow a symlink out of `root`.
fn safe_dir(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let target = root.join(rel);
    // The deepest part that exists may be (or pass through) a symlink
    // from this layer: resolve it before creating anything under it.
    let mut existing = target.as_path();
    while fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().unwrap_or(root);
    }
    let resolved = existing.canonicalize()?;
    if !resolved.starts_with(root) {
        return Err(io::Error::other(format!(
            "{} points outside the layer",
            rel.display()
        )));
    }
    let rest = target.strip_prefix(existing).unwrap_or(Path::new(""));
    let dir = resolved.join(rest);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn make_node(
    path: &Path,
    kind: SFlag,
    mode: u32,
    major: u32,
    minor: u32,
    uid: u64,
    gid: u64,
) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path)?,
        Ok(_) => fs::remove_file(path)?,
        Err(_) => {}
    }
    let perm = Mode::from_bits_truncate(mode & 0o7777);
    mknod(
        path,
        kind,
        perm,
        makedev(u64::from(major), u64::from(minor)),
    )
    .map_err(io::Error::from)?;
    if nix::unistd::geteuid().is_root() {
        let uid = u32::try_from(uid).map_err(io::Error::other)?;
        let gid = u32::try_from(gid).map_err(io::Error::other)?;
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    // mknod applies the umask; the image's mode wins.
    fs::set_permissions(
        path,
        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
    )
}

/// Bytes used by the files under `dir` (for garbage collection accounting).
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}
