//! Named network namespaces: a namespace kept alive by a bind mount of its
//! nsfs file (as `ip netns add` does), so it outlives the processes in it
//! and the runtime can join it by path.
//!
//! Entering a namespace changes the calling *thread*; it is only ever done
//! on a dedicated std thread that ends afterwards, never on a tokio worker
//! (whose later tasks would run in the wrong namespace).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::NetError;

fn io_err(path: &Path, source: io::Error) -> NetError {
    NetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn c_path(path: &Path) -> Result<CString, NetError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io_err(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"),
        )
    })
}

/// Whether `path` is a mounted namespace file.
pub fn is_mounted(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Make a new network namespace and bind-mount it at `path`; nothing to do
/// if one is mounted there already.
pub fn create(path: &Path) -> Result<(), NetError> {
    if is_mounted(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    let target = c_path(path)?;
    let result = std::thread::spawn(move || -> io::Result<()> {
        // SAFETY: plain syscalls on this thread only; the thread ends right
        // after, so the namespace change cannot leak into other work.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            let source = c"/proc/thread-self/ns/net";
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| {
        io_err(
            path,
            io::Error::other("the namespace-creating thread panicked"),
        )
    })?;
    result.map_err(|e| {
        let _ = fs::remove_file(path);
        io_err(path, e)
    })
}

/// Unmount and remove a named namespace (gone already is fine). The
/// namespace itself disappears once no process is left in it.
pub fn remove(path: &Path) -> Result<(), NetError> {
    if !path.exists() {
        return Ok(());
    }
    let c = c_path(path)?;
    // Detach: a process still holding the file open must not make this fail.
    // SAFETY: umount2 on a path we own; errors are read from errno.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // EINVAL: not a mount point (a leftover plain file).
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOENT) {
            return Err(io_err(path, e));
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Run `f` on a fresh thread inside the namespace at `path`.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, NetError> + Send + 'static,
{
    let file = fs::File::open(path).map_err(|e| io_err(path, e))?;
    let owned: PathBuf = path.to_path_buf();
    std::thread::spawn(move || {
        // SAFETY: setns on this dedicated thread with a valid namespace fd.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io_err(&owned, io::Error::last_os_error()));
        }
        drop(file);
        f()
    })
    .join()
    .map_err(|_| io_err(path, io::Error::other("the in-namespace thread panicked")))?
}
