//! The per-pod shim: `rk3s shim run <sandbox-dir>`.
//!
//! The agent starts one per pod sandbox. It detaches (a new session,
//! re-parented away from the agent) so pods outlive the agent, holds the
//! sandbox's UTS/IPC (and shared PID) namespaces in a small pause process,
//! and owns the pod's containers through youki's libcontainer: it starts
//! them, keeps their stdio, writes their CRI logs, reaps them as the child
//! subreaper and reports exits. It is one thread with one `poll(2)` loop,
//! so libcontainer's clone/fork never races another thread, and no tokio.
//!
//! The agent talks to it over `<sandbox-dir>/shim.sock` ([`protocol`]).

pub mod cgroup;
pub mod fdpass;
pub mod logs;
pub mod protocol;
mod server;
mod trim;

pub use server::{now_nanos, read_record, unmount, write_record};

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::unistd::ForkResult;

/// `rk3s shim run <dir>`: start the shim for the sandbox in `<dir>` and
/// return once it listens (0) or failed (1, the reason on stderr).
pub fn main(args: &[String]) -> i32 {
    match args {
        [cmd, dir] if cmd == "run" => daemonize(Path::new(dir)),
        _ => {
            eprintln!("usage: rk3s shim run <sandbox-dir>");
            2
        }
    }
}

fn daemonize(dir: &Path) -> i32 {
    let (ready_r, ready_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rk3s shim: pipe: {e}");
            return 1;
        }
    };
    // SAFETY: the shim runs before any thread exists (main.rs calls it
    // before building a runtime), so the child may do anything.
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            eprintln!("rk3s shim: fork: {e}");
            1
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(ready_w);
            let mut msg = String::new();
            let _ = std::fs::File::from(ready_r).read_to_string(&mut msg);
            if msg.starts_with("ok") {
                0
            } else {
                eprintln!("rk3s shim: {}", msg.trim_start_matches("error: ").trim());
                1
            }
        }
        Ok(ForkResult::Child) => {
            drop(ready_r);
            // libcontainer's own diagnostics, into the shim's log, on request.
            if let Ok(filter) = std::env::var("RK3S_SHIM_LOG") {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                    .with_ansi(false)
                    .with_writer(std::io::stderr)
                    .try_init();
            }
            let mut ready = std::fs::File::from(ready_w);
            // Our own session: signals to the agent's process group (a
            // terminal's ^C, a service manager) do not reach the pod.
            let _ = nix::unistd::setsid();
            match server::Shim::setup(dir) {
                Ok(mut shim) => {
                    let _ = ready.write_all(b"ok\n");
                    drop(ready);
                    shim.run();
                    0
                }
                Err(e) => {
                    let _ = ready.write_all(format!("error: {e}\n").as_bytes());
                    1
                }
            }
        }
    }
}

/// Open `/dev/null` for a child's unused stdio.
fn dev_null() -> std::io::Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into())
}

/// Bind a unix socket at a path that may be longer than `sun_path` allows,
/// through the directory's `/proc/self/fd` entry.
pub fn bind_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    with_short_path(path, |p| std::os::unix::net::UnixListener::bind(p))
}

/// Connect to a unix socket at a path that may be too long for `sun_path`.
pub fn connect_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixStream> {
    with_short_path(path, |p| std::os::unix::net::UnixStream::connect(p))
}

fn with_short_path<T>(
    path: &Path,
    f: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    if path.as_os_str().len() < 100 {
        return f(path);
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return f(path);
    };
    let dir = nix::fcntl::open(
        parent,
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(std::io::Error::from)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    f(&short)
}
