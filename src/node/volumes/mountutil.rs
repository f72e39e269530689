//! Mount-table helpers: tmpfs for memory-backed volumes, and finding and
//! undoing every mount under a pod's volume directory at teardown.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Decode the octal escapes (`\040` = space) of /proc/self/mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..=i + 3].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mount point of this mount namespace, in mount order.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect())
}

pub fn is_mount_point(path: &Path) -> bool {
    mount_points()
        .map(|m| m.iter().any(|p| p == path))
        .unwrap_or(false)
}

/// Mount a tmpfs at `path` (an existing directory) unless one is there.
/// `size` in bytes; `None` = the kernel's default (half of RAM).
pub fn mount_tmpfs(path: &Path, size: Option<u64>, mode: u32) -> io::Result<()> {
    if is_mount_point(path) {
        return Ok(());
    }
    let mut opts = format!("mode={mode:o}");
    if let Some(s) = size {
        opts.push_str(&format!(",size={s}"));
    }
    mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(io::Error::from)
}

/// Unmount everything at or below `dir`, deepest first (lazily, so a
/// process still holding a file cannot block the pod's teardown).
pub fn unmount_all_under(dir: &Path) -> io::Result<()> {
    let mut under: Vec<PathBuf> = mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    under.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    under.dedup();
    for p in under {
        // A path mounted more than once needs one umount per layer.
        while is_mount_point(&p) {
            umount2(&p, MntFlags::MNT_DETACH).map_err(io::Error::from)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/trail\\04"), "/trail\\04");
    }
}
