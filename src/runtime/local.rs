//! [`LocalRuntime`]: the node's [`ContainerRuntime`], one shim process per
//! pod sandbox (see [`crate::runtime::shim`]).
//!
//! On disk, under `<agent-dir>/sandboxes/<id>/`: `sandbox.json` (what the
//! shim reads), the shim's socket, pid file and log, and per container
//! `containers/<cid>/` with the OCI bundle (`config.json`, the overlayfs
//! `rootfs` over the image layers, its `upper` and `work` dirs) and
//! `record.json`, the container's state, which the shim rewrites on every
//! change. State lives on disk so a restarted agent finds every sandbox and
//! container again; a sandbox whose shim answers is live.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::runtime::bundle::{self, BundleError, BundleInputs, SandboxNamespaces};
use crate::runtime::cri::*;
use crate::runtime::shim::protocol::*;
use crate::runtime::shim::{self, cgroup, fdpass};

pub struct LocalRuntime {
    agent_dir: PathBuf,
    shim_binary: PathBuf,
    events: broadcast::Sender<ContainerEvent>,
    /// Container id to sandbox id (rebuilt from disk on a miss).
    owners: Mutex<HashMap<ContainerId, SandboxId>>,
    /// Sandboxes whose exit events are being forwarded.
    watched: Mutex<HashMap<SandboxId, tokio::task::JoinHandle<()>>>,
    /// CRI log rotation (containerLogMaxSize, containerLogMaxFiles).
    log_max_size: u64,
    log_max_files: usize,
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        for (_, task) in self.watched.lock().drain() {
            task.abort();
        }
    }
}

fn other(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

fn to_time(nanos: u128) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
}

fn new_id(len: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..len].to_string()
}

/// The pid of the shim of the sandbox in `dir`, from its pid file.
fn shim_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join(PID_FILE))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<i32>().ok())
}

/// Whether the shim of the sandbox in `dir` still runs.
fn shim_alive(dir: &Path) -> bool {
    shim_pid(dir).is_some_and(|pid| !process_gone(pid))
}

/// A record as the CRI status the agent reads; `shim_alive` says whether
/// the sandbox's shim still runs.
fn status_of(rec: &ContainerRecord, shim_alive: bool) -> ContainerStatus {
    let mut state = match rec.state {
        State::Created => ContainerState::Created,
        State::Running => ContainerState::Running,
        State::Exited => ContainerState::Exited,
    };
    // A running record whose process is gone while its shim is gone too:
    // nobody will record how it ended. With the shim alive, the process
    // has just been reaped and its exit is being written; calling it
    // Unknown then would end it with no exit code, i.e. as a success.
    if state == ContainerState::Running
        && !shim_alive
        && rec
            .pid
            .is_none_or(|p| !Path::new(&format!("/proc/{p}")).exists())
    {
        state = ContainerState::Unknown;
    }
    ContainerStatus {
        id: rec.id.clone(),
        sandbox_id: rec.sandbox_id.clone(),
        name: rec.name.clone(),
        attempt: rec.attempt,
        state,
        created_at: to_time(rec.created_at),
        started_at: rec.started_at.map(to_time),
        finished_at: rec.finished_at.map(to_time),
        exit_code: rec.exit_code,
        reason: rec.reason.clone(),
        message: rec.message.clone(),
        image_id: rec.image_id.clone(),
        log_path: rec.log_path.clone(),
        labels: rec.labels.clone(),
        pid: if state == ContainerState::Running {
            rec.pid
        } else {
            None
        },
    }
}

/// One exchange with a shim: the first response line, the fds that came
/// with it, the connection (for requests that answer again later) and
/// bytes read past the first line.
struct Reply {
    resp: Response,
    fds: Vec<(FdKind, OwnedFd)>,
    stream: UnixStream,
    rest: Vec<u8>,
}

fn call_blocking(dir: &Path, req: &Request, read_timeout: Option<Duration>) -> Result<Reply> {
    let mut stream = shim::connect_unix(&dir.join(SOCKET_FILE)).map_err(|e| {
        RuntimeError::Other(format!(
            "the sandbox's shim is not running ({}): {e}",
            dir.display()
        ))
    })?;
    stream.set_read_timeout(read_timeout)?;
    let mut line = serde_json::to_vec(req).map_err(other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut got: Vec<u8> = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut buf = [0u8; 8192];
    let nl = loop {
        if let Some(nl) = got.iter().position(|b| *b == b'\n') {
            break nl;
        }
        let (n, more) = fdpass::recv(stream.as_raw_fd(), &mut buf)?;
        fds.extend(more);
        if n == 0 {
            return Err(RuntimeError::Other("the shim closed the connection".into()));
        }
        got.extend_from_slice(&buf[..n]);
    };
    let resp: Response = serde_json::from_slice(&got[..nl]).map_err(other)?;
    let rest = got[nl + 1..].to_vec();
    if let Some(msg) = &resp.error {
        return Err(if resp.not_found {
            RuntimeError::NotFound(msg.clone())
        } else if resp.start_failed {
            RuntimeError::StartFailed(msg.clone())
        } else {
            RuntimeError::Other(msg.clone())
        });
    }
    let fds = resp.fds.iter().copied().zip(fds).collect();
    Ok(Reply {
        resp,
        fds,
        stream,
        rest,
    })
}

/// Read the next response line of a waiting request.
async fn next_line(reply: Reply) -> Option<Response> {
    let Reply {
        stream, mut rest, ..
    } = reply;
    if let Some(nl) = rest.iter().position(|b| *b == b'\n') {
        return serde_json::from_slice(&rest[..nl]).ok();
    }
    stream.set_nonblocking(true).ok()?;
    let mut stream = tokio::net::UnixStream::from_std(stream).ok()?;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        rest.extend_from_slice(&buf[..n]);
        if let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            return serde_json::from_slice(&rest[..nl]).ok();
        }
    }
}

impl LocalRuntime {
    /// A runtime keeping its sandboxes under `<agent_dir>/sandboxes`. The
    /// shim is this executable (`rk3s shim`), or `$RK3S_SHIM_BINARY`.
    pub fn new(agent_dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(agent_dir.join("sandboxes"))?;
        let shim_binary = match std::env::var_os("RK3S_SHIM_BINARY") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()?,
        };
        let (events, _) = broadcast::channel(1024);
        Ok(LocalRuntime {
            agent_dir,
            shim_binary,
            events,
            owners: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashMap::new()),
            log_max_size: shim::logs::DEFAULT_MAX_SIZE,
            log_max_files: shim::logs::DEFAULT_MAX_FILES,
        })
    }

    /// Run shims from another binary than the current executable (tests
    /// and benchmarks, whose executable is not rk3s).
    pub fn with_shim_binary(mut self, path: PathBuf) -> Self {
        self.shim_binary = path;
        self
    }

    /// Rotate container logs at `max_size` bytes, keeping `max_files`
    /// files per container (the kubelet's containerLogMaxSize and
    /// containerLogMaxFiles; 10 MiB and 5 by default).
    pub fn with_log_rotation(mut self, max_size: u64, max_files: usize) -> Self {
        self.log_max_size = max_size;
        self.log_max_files = max_files;
        self
    }

    pub fn sandboxes_dir(&self) -> PathBuf {
        self.agent_dir.join("sandboxes")
    }

    fn sandbox_dir(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(RuntimeError::NotFound(format!("sandbox {id:?}")));
        }
        let dir = self.sandboxes_dir().join(id);
        if !dir.join(SANDBOX_FILE).exists() {
            return Err(RuntimeError::NotFound(format!("sandbox {id}")));
        }
        Ok(dir)
    }

    async fn call(&self, sandbox: &str, req: Request, timeout: Option<Duration>) -> Result<Reply> {
        let dir = self.sandbox_dir(sandbox)?;
        tokio::task::spawn_blocking(move || call_blocking(&dir, &req, timeout))
            .await
            .map_err(other)?
    }

    /// The sandbox a container belongs to.
    fn owner(&self, id: &str) -> Result<SandboxId> {
        if let Some(s) = self.owners.lock().get(id) {
            return Ok(s.clone());
        }
        if !id.is_empty() && !id.contains('/') && !id.starts_with('.') {
            for e in std::fs::read_dir(self.sandboxes_dir())?.flatten() {
                if e.path()
                    .join(CONTAINERS_DIR)
                    .join(id)
                    .join(RECORD_FILE)
                    .exists()
                {
                    let sid = e.file_name().to_string_lossy().to_string();
                    self.owners.lock().insert(id.to_string(), sid.clone());
                    return Ok(sid);
                }
            }
        }
        Err(RuntimeError::NotFound(format!("container {id}")))
    }

    fn record(&self, id: &str) -> Result<(PathBuf, ContainerRecord)> {
        let sid = self.owner(id)?;
        let dir = self
            .sandboxes_dir()
            .join(&sid)
            .join(CONTAINERS_DIR)
            .join(id);
        let rec = shim::read_record(&dir)
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        Ok((dir, rec))
    }

    /// Forward the shim's exit events to subscribers.
    /// Follows a sandbox's container events. The subscription is made
    /// before this returns: made later, under load, a container could
    /// start and exit before it, and its exit would never be reported.
    async fn watch(&self, sandbox: &str) {
        if self
            .watched
            .lock()
            .get(sandbox)
            .is_some_and(|t| !t.is_finished())
        {
            return;
        }
        let Ok(dir) = self.sandbox_dir(sandbox) else {
            return;
        };
        let Ok(Ok(reply)) =
            tokio::task::spawn_blocking(move || call_blocking(&dir, &Request::Events, None)).await
        else {
            return;
        };
        let mut watched = self.watched.lock();
        if watched.get(sandbox).is_some_and(|t| !t.is_finished()) {
            // Another caller subscribed meanwhile; one follower is enough.
            return;
        }
        let events = self.events.clone();
        let task = tokio::spawn(async move {
            let Reply {
                stream, mut rest, ..
            } = reply;
            if stream.set_nonblocking(true).is_err() {
                return;
            }
            let Ok(mut stream) = tokio::net::UnixStream::from_std(stream) else {
                return;
            };
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = rest.drain(..=nl).collect();
                    if let Ok(resp) = serde_json::from_slice::<Response>(&line) {
                        for rec in resp.containers {
                            let _ = events.send(ContainerEvent {
                                sandbox_id: rec.sandbox_id.clone(),
                                container_id: rec.id.clone(),
                                status: status_of(&rec, true),
                            });
                        }
                    }
                }
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => rest.extend_from_slice(&buf[..n]),
                }
            }
        });
        watched.insert(sandbox.to_string(), task);
    }

    fn shim_alive(dir: &Path) -> bool {
        call_blocking(dir, &Request::Ping, Some(Duration::from_secs(5))).is_ok()
    }

    /// The overlayfs root of a container: the image layers read-only, the
    /// container's writes in its own upper dir.
    fn mount_rootfs(dir: &Path, layers: &[PathBuf]) -> Result<PathBuf> {
        if layers.is_empty() {
            return Err(RuntimeError::InvalidArgument(
                "the image has no layers".into(),
            ));
        }
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for d in [&upper, &work, &rootfs] {
            std::fs::create_dir_all(d)?;
        }
        for l in layers {
            let s = l.to_string_lossy();
            if s.contains(':') || s.contains(',') || !l.is_dir() {
                return Err(RuntimeError::InvalidArgument(format!(
                    "bad image layer {s}"
                )));
            }
        }
        // overlayfs lists lower dirs top first.
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|l| l.to_string_lossy().to_string())
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        let target =
            std::ffi::CString::new(rootfs.as_os_str().as_encoded_bytes()).map_err(other)?;
        let data = std::ffi::CString::new(data).map_err(other)?;
        // SAFETY: valid C strings.
        let rc = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(RuntimeError::Other(format!(
                "mount overlay at {}: {}",
                rootfs.display(),
                std::io::Error::last_os_error()
            )));
        }
        Ok(rootfs)
    }
}

/// Make the working directory in the rootfs if the image lacks it (as
/// containerd does), refusing to follow symlinks out of the rootfs.
fn ensure_workdir(rootfs: &Path, wd: &str) -> Result<()> {
    if bundle::resolve_in_root(rootfs, wd).is_some() {
        return Ok(());
    }
    let mut p = rootfs.to_path_buf();
    for part in wd.split('/').filter(|s| !s.is_empty() && *s != ".") {
        if part == ".." {
            return Err(RuntimeError::InvalidArgument(format!(
                "bad workingDir {wd}"
            )));
        }
        p.push(part);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(RuntimeError::InvalidArgument(format!(
                    "workingDir {wd} is a dangling symlink"
                )));
            }
            Ok(_) => {}
            Err(_) => std::fs::create_dir(&p)?,
        }
    }
    Ok(())
}

/// A nonblocking fd (pipe end or pty master) as tokio reader and writer.
pub struct FdStream {
    fd: Option<AsyncFd<OwnedFd>>,
}

impl FdStream {
    pub fn new(fd: OwnedFd) -> std::io::Result<FdStream> {
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl on an fd we own.
        unsafe {
            let flags = libc::fcntl(raw, libc::F_GETFL);
            libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd and stays open, as
        // the same file description, until the AsyncFd drops it.
        let fd =
            unsafe { AsyncFd::register(fd) }.map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(FdStream { fd: Some(fd) })
    }
}

impl AsyncRead for FdStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let Some(fd) = &self.fd else {
            return Poll::Ready(Ok(()));
        };
        loop {
            let mut guard = ready!(fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            // SAFETY: reading into an initialised buffer of the given length.
            let n =
                unsafe { libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len()) };
            if n >= 0 {
                buf.advance(n as usize);
                return Poll::Ready(Ok(()));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => guard.clear_ready(),
                Some(libc::EINTR) => {}
                // A pty whose other side closed.
                Some(libc::EIO) => return Poll::Ready(Ok(())),
                _ => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let Some(fd) = &self.fd else {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        };
        loop {
            let mut guard = ready!(fd.poll_write_ready(cx))?;
            // SAFETY: writing from a valid slice.
            let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
            if n >= 0 {
                return Poll::Ready(Ok(n as usize));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => guard.clear_ready(),
                Some(libc::EINTR) => {}
                _ => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Closing our end is the process's end of input.
    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.fd = None;
        Poll::Ready(Ok(()))
    }
}

fn set_winsize(fd: &OwnedFd, size: TerminalSize) {
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize on a pty master.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Turn a shim's answer with fds into an [`ExecSession`].
fn build_session(mut reply: Reply, want_stdin: bool) -> Result<ExecSession> {
    let fds = std::mem::take(&mut reply.fds);
    let mut stdin: Option<BoxedWriter> = None;
    let mut stdout: Option<BoxedReader> = None;
    let mut stderr: Option<BoxedReader> = None;
    let mut resize = None;
    let mut pty_out = None;
    for (kind, fd) in fds {
        match kind {
            FdKind::Stdin => stdin = Some(Box::pin(FdStream::new(fd)?)),
            FdKind::Stdout => stdout = Some(Box::pin(FdStream::new(fd)?)),
            FdKind::Stderr => stderr = Some(Box::pin(FdStream::new(fd)?)),
            FdKind::Pty => {
                let (tx, mut rx) = mpsc::channel::<TerminalSize>(8);
                let resizer = nix::unistd::dup(&fd).map_err(other)?;
                tokio::spawn(async move {
                    while let Some(size) = rx.recv().await {
                        set_winsize(&resizer, size);
                    }
                });
                resize = Some(tx);
                if want_stdin {
                    stdin = Some(Box::pin(FdStream::new(
                        nix::unistd::dup(&fd).map_err(other)?,
                    )?));
                }
                pty_out = Some(fd);
            }
        }
    }
    // An exec with a TTY reads its output from the master itself; an attach
    // gets a copy of the shim's reading in a pipe instead.
    if stdout.is_none()
        && let Some(fd) = pty_out
    {
        stdout = Some(Box::pin(FdStream::new(fd)?));
    }
    let (tx, exit) = oneshot::channel();
    tokio::spawn(async move {
        let code = next_line(reply)
            .await
            .and_then(|r| r.exit_code)
            .unwrap_or(-1);
        let _ = tx.send(code);
    });
    Ok(ExecSession {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    })
}

#[async_trait]
impl ContainerRuntime for LocalRuntime {
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxId> {
        let id = new_id(16);
        let dir = self.sandboxes_dir().join(&id);
        std::fs::create_dir_all(&dir)?;
        let mut spec = SandboxSpec::from_config(&id, config, shim::now_nanos());
        spec.log_max_size = self.log_max_size;
        spec.log_max_files = self.log_max_files;
        std::fs::write(
            dir.join(SANDBOX_FILE),
            serde_json::to_vec_pretty(&spec).map_err(other)?,
        )?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("shim.log"))?;
        let status = tokio::process::Command::new(&self.shim_binary)
            .arg("shim")
            .arg("run")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .status()
            .await?;
        if !status.success() {
            let text = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
            let reason = text.lines().last().unwrap_or("the shim failed").to_string();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(RuntimeError::Other(format!(
                "failed to start the pod sandbox: {reason}"
            )));
        }
        self.watch(&id).await;
        Ok(id)
    }

    async fn stop_sandbox(&self, id: &SandboxId) -> Result<()> {
        match self.call(id, Request::StopSandbox, None).await {
            Ok(_) => Ok(()),
            // No shim: nothing of the sandbox runs.
            Err(RuntimeError::Other(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn remove_sandbox(&self, id: &SandboxId) -> Result<()> {
        let dir = self.sandbox_dir(id)?;
        if let Some(t) = self.watched.lock().remove(id) {
            t.abort();
        }
        let shim_pid = shim_pid(&dir);
        let asked = self
            .call(id, Request::Shutdown, Some(Duration::from_secs(60)))
            .await
            .is_ok();
        if asked && let Some(pid) = shim_pid {
            for _ in 0..500 {
                if process_gone(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let d = dir.clone();
        tokio::task::spawn_blocking(move || crate::node::killall::clean_sandbox_dir(&d))
            .await
            .map_err(other)?
            .map_err(other)?;
        self.owners.lock().retain(|_, s| s != id);
        Ok(())
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        let root = self.sandboxes_dir();
        let found = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for e in std::fs::read_dir(&root)?.flatten() {
                let dir = e.path();
                let Ok(text) = std::fs::read(dir.join(SANDBOX_FILE)) else {
                    continue;
                };
                let Ok(spec) = serde_json::from_slice::<SandboxSpec>(&text) else {
                    continue;
                };
                let ready = LocalRuntime::shim_alive(&dir);
                out.push((spec, ready));
            }
            Ok::<_, std::io::Error>(out)
        })
        .await
        .map_err(other)??;
        let mut out = Vec::new();
        for (spec, ready) in found {
            if ready {
                self.watch(&spec.id).await;
            }
            out.push(SandboxStatus {
                id: spec.id.clone(),
                ready,
                labels: spec.labels.clone(),
                created_at: to_time(spec.created_at),
            });
        }
        Ok(out)
    }

    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig,
    ) -> Result<ContainerId> {
        let sdir = self.sandbox_dir(sandbox)?;
        let spec: SandboxSpec =
            serde_json::from_slice(&std::fs::read(sdir.join(SANDBOX_FILE))?).map_err(other)?;
        let pause = self
            .call(sandbox, Request::Ping, Some(Duration::from_secs(10)))
            .await?
            .resp
            .pid;
        let id = new_id(32);
        let dir = sdir.join(CONTAINERS_DIR).join(&id);
        std::fs::create_dir_all(&dir)?;
        let sandbox_config = spec.to_config();
        let config = config.clone();
        let (d, sid, cid) = (dir.clone(), sandbox.clone(), id.clone());
        let shm = sdir.join("shm");
        let made = tokio::task::spawn_blocking(move || -> Result<ContainerRecord> {
            let rootfs = LocalRuntime::mount_rootfs(&d, &config.image.layers)?;
            if let Some(wd) = config.working_dir.as_deref().filter(|w| !w.is_empty()) {
                ensure_workdir(&rootfs, wd)?;
            }
            let namespaces = SandboxNamespaces::for_sandbox(
                &sandbox_config,
                pause,
                shm.exists().then_some(shm.clone()),
            );
            let parent = sandbox_config.cgroup_parent.trim_matches('/');
            let cgroup_path = if parent.is_empty() {
                format!("/rk3s/{sid}/{cid}")
            } else {
                format!("/{parent}/{cid}")
            };
            let oci = bundle::build_spec(&BundleInputs {
                sandbox: &sandbox_config,
                container: &config,
                namespaces: &namespaces,
                rootfs: &rootfs,
                cgroup_path: cgroup_path.clone(),
                cgroup_v2: cgroup::is_v2(),
            })
            .map_err(|e| match e {
                BundleError::Invalid(m) => RuntimeError::InvalidArgument(m),
                e => other(e),
            })?;
            oci.save(d.join("config.json")).map_err(other)?;
            let rec = ContainerRecord {
                id: cid,
                sandbox_id: sid,
                name: config.name.clone(),
                attempt: config.attempt,
                state: State::Created,
                created_at: shim::now_nanos(),
                started_at: None,
                finished_at: None,
                exit_code: None,
                reason: None,
                message: None,
                image_id: config.image.image_id.clone(),
                log_path: config.log_path.clone(),
                labels: config.labels.clone(),
                pid: None,
                tty: config.tty,
                stdin: config.stdin,
                stdin_once: config.stdin_once,
                cgroup_path,
                stop_signal: config.image.stop_signal.as_deref().and_then(|name| {
                    let number = parse_signal(name);
                    if number.is_none() {
                        tracing::warn!(
                            signal = name,
                            "unknown image StopSignal; stopping with SIGTERM"
                        );
                    }
                    number
                }),
            };
            shim::write_record(&d, &rec);
            Ok(rec)
        })
        .await
        .map_err(other)?;
        if let Err(e) = made {
            shim::unmount(&dir.join("rootfs"));
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.owners.lock().insert(id.clone(), sandbox.clone());
        Ok(id)
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        let sid = self.owner(id)?;
        self.call(
            &sid,
            Request::Start { id: id.clone() },
            Some(Duration::from_secs(120)),
        )
        .await?;
        Ok(())
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        let sid = self.owner(id)?;
        let req = Request::Stop {
            id: id.clone(),
            timeout_ms: timeout.as_millis() as u64,
            signal: None,
        };
        let reply = self.call(&sid, req, None).await?;
        if reply.resp.exit_code.is_none() {
            // Answered at once only when it was not running; otherwise wait.
            let wait = next_line(reply);
            let _ = tokio::time::timeout(timeout + Duration::from_secs(30), wait).await;
        }
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        let sid = self.owner(id)?;
        match self
            .call(
                &sid,
                Request::Remove { id: id.clone() },
                Some(Duration::from_secs(60)),
            )
            .await
        {
            Ok(_) => {}
            // The shim is gone: clean up what it would have.
            Err(RuntimeError::Other(_)) => {
                let (dir, rec) = self.record(id)?;
                cgroup::remove_tree(&rec.cgroup_path);
                shim::unmount(&dir.join("rootfs"));
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(e) => return Err(e),
        }
        self.owners.lock().remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        let (dir, rec) = self.record(id)?;
        // dir is <sandbox>/containers/<id>.
        let alive = dir.parent().and_then(Path::parent).is_some_and(shim_alive);
        Ok(status_of(&rec, alive))
    }

    async fn list_containers(&self, sandbox: &SandboxId) -> Result<Vec<ContainerStatus>> {
        let sandbox_dir = self.sandbox_dir(sandbox)?;
        let alive = shim_alive(&sandbox_dir);
        let dir = sandbox_dir.join(CONTAINERS_DIR);
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if let Some(rec) = shim::read_record(&e.path()) {
                    self.owners.lock().insert(rec.id.clone(), sandbox.clone());
                    out.push(status_of(&rec, alive));
                }
            }
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let (_, rec) = self.record(id)?;
        Ok(cgroup::stats(&rec.cgroup_path))
    }

    async fn exec(&self, id: &ContainerId, request: ExecRequest) -> Result<ExecSession> {
        let sid = self.owner(id)?;
        let req = Request::Exec {
            id: id.clone(),
            cmd: request.cmd.clone(),
            tty: request.tty,
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr && !request.tty,
            timeout_ms: None,
        };
        let reply = self.call(&sid, req, Some(Duration::from_secs(60))).await?;
        reply.stream.set_read_timeout(None)?;
        build_session(reply, request.stdin)
    }

    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let sid = self.owner(id)?;
        let req = Request::Exec {
            id: id.clone(),
            cmd: cmd.to_vec(),
            tty: false,
            stdin: false,
            stdout: true,
            stderr: true,
            timeout_ms: Some(timeout.as_millis().max(1) as u64),
        };
        let started = std::time::Instant::now();
        let reply = self.call(&sid, req, Some(Duration::from_secs(60))).await?;
        reply.stream.set_read_timeout(None)?;
        let mut s = build_session(reply, false)?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let collect = async {
            let a = async {
                if let Some(r) = &mut s.stdout {
                    let _ = r.read_to_end(&mut out).await;
                }
            };
            let b = async {
                if let Some(r) = &mut s.stderr {
                    let _ = r.read_to_end(&mut err).await;
                }
            };
            tokio::join!(a, b);
            (&mut s.exit).await.unwrap_or(-1)
        };
        let code = tokio::time::timeout(timeout + Duration::from_secs(5), collect)
            .await
            .map_err(|_| RuntimeError::Other(format!("command {cmd:?} timed out")))?;
        if started.elapsed() >= timeout && code == 128 + libc::SIGKILL {
            return Err(RuntimeError::Other(format!(
                "command {cmd:?} timed out after {}s",
                timeout.as_secs_f64()
            )));
        }
        Ok(ExecOutput {
            exit_code: code,
            stdout: out,
            stderr: err,
        })
    }

    async fn attach(&self, id: &ContainerId, stdin: bool, tty: bool) -> Result<ExecSession> {
        let sid = self.owner(id)?;
        let req = Request::Attach {
            id: id.clone(),
            stdin,
            stdout: true,
            stderr: !tty,
        };
        let reply = self.call(&sid, req, Some(Duration::from_secs(60))).await?;
        reply.stream.set_read_timeout(None)?;
        build_session(reply, stdin)
    }

    fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.events.subscribe()
    }
}

/// Whether `pid` has exited. A zombie counts as gone: the shim is
/// re-parented to init, which may reap it only much later (some container
/// inits poll about once a second), and it holds nothing by then.
fn process_gone(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // "pid (comm) S ...": the state follows the last ')', as comm may hold any byte.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_none_or(|state| state == "Z" || state == "X")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_record(pid: u32) -> ContainerRecord {
        ContainerRecord {
            id: "c1".into(),
            sandbox_id: "s1".into(),
            name: "c".into(),
            attempt: 0,
            state: State::Running,
            created_at: 0,
            started_at: Some(0),
            finished_at: None,
            exit_code: None,
            reason: None,
            message: None,
            image_id: String::new(),
            log_path: PathBuf::new(),
            labels: Default::default(),
            pid: Some(pid),
            tty: false,
            stdin: false,
            stdin_once: false,
            cgroup_path: String::new(),
            stop_signal: None,
        }
    }

    /// The shim reaps a container's process a moment before it writes the
    /// exit code; a status read in between must not end the container
    /// with no exit code (the pod would be Succeeded after an `exit 3`).
    #[test]
    fn a_reaped_process_is_still_running_while_its_shim_records_the_exit() {
        let mut done = std::process::Command::new("true").spawn().unwrap();
        let pid = done.id();
        done.wait().unwrap();
        let rec = running_record(pid);
        assert_eq!(status_of(&rec, true).state, ContainerState::Running);
        assert_eq!(status_of(&rec, false).state, ContainerState::Unknown);

        let dir = std::env::temp_dir().join(format!("rk3s-shim-alive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!shim_alive(&dir), "no pid file: no shim");
        std::fs::write(dir.join(PID_FILE), format!("{} 1", std::process::id())).unwrap();
        assert!(shim_alive(&dir));
        std::fs::write(dir.join(PID_FILE), format!("{pid} 1")).unwrap();
        assert!(!shim_alive(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_zombie_is_gone_a_sleeper_is_not() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let quick = std::process::Command::new("true").spawn().unwrap();
        assert!(!process_gone(sleeper.id() as i32));
        // Not reaped: `true` stays a zombie until the wait below.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !process_gone(quick.id() as i32) {
            assert!(
                std::time::Instant::now() < deadline,
                "zombie not seen as gone"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(std::path::Path::new(&format!("/proc/{}", quick.id())).exists());
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        let mut quick = quick;
        quick.wait().unwrap();
    }
}
