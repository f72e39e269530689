//! The shim's state and its single-threaded event loop.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Spec;

use super::cgroup;
use super::logs::{CriLog, Stream};
use super::protocol::*;
use super::{dev_null, fdpass};
use crate::runtime::bundle;

/// The shim's own OOM score: the kernel should pick a container first.
const SHIM_OOM_SCORE_ADJ: &str = "-998";
/// How long after a request or an exit the shim gives back the pages that
/// work touched (see [`super::trim`]): long enough that a burst of
/// requests (create, start, status) does not fault them in again each time.
const TRIM_AFTER: Duration = Duration::from_secs(1);

static SIGCHLD_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = SIGCHLD_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the byte.
        unsafe { libc::write(fd, b"c".as_ptr().cast(), 1) };
    }
}

extern "C" fn on_ignored(_: libc::c_int) {}

pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// One output of a container: a pipe, or the pty master.
struct Output {
    fd: OwnedFd,
    stream: Stream,
    closed: bool,
}

/// An attach session's end of the container's output.
struct Attacher {
    client: u64,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

struct Container {
    rec: ContainerRecord,
    dir: PathBuf,
    outputs: Vec<Output>,
    /// Our end of the container's stdin (a pipe, or the pty master).
    stdin: Option<OwnedFd>,
    /// The pty master of a TTY container.
    pty: Option<OwnedFd>,
    log: Option<CriLog>,
    attachers: Vec<Attacher>,
    /// Clients told the exit code when the container ends.
    waiters: Vec<u64>,
    kill_at: Option<Instant>,
}

struct Exec {
    client: u64,
    kill_at: Option<Instant>,
}

enum Mode {
    Request,
    /// Answered; waits for an exit it is in a waiter list for.
    Waiting,
    Events,
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    mode: Mode,
}

pub struct Shim {
    dir: PathBuf,
    spec: SandboxSpec,
    pause_pid: Option<i32>,
    shm: Option<PathBuf>,
    listener: UnixListener,
    sigchld: OwnedFd,
    clients: HashMap<u64, Client>,
    next_client: u64,
    containers: HashMap<String, Container>,
    execs: HashMap<i32, Exec>,
    exec_seq: u64,
    exit_after: bool,
    /// When to give back memory (set by work, cleared when done).
    trim_at: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Other(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SetupError {
    let what = what.into();
    move |e| SetupError::Io(what, e)
}

impl Shim {
    pub fn setup(dir: &Path) -> Result<Shim, SetupError> {
        let dir = dir.canonicalize().map_err(io(dir.display().to_string()))?;
        std::env::set_current_dir(&dir).map_err(io("chdir"))?;
        let text = std::fs::read_to_string(dir.join(SANDBOX_FILE)).map_err(io(SANDBOX_FILE))?;
        let spec: SandboxSpec = serde_json::from_str(&text)
            .map_err(|e| SetupError::Other(format!("{SANDBOX_FILE}: {e}")))?;

        // SAFETY: plain prctl/sigaction calls on our own process.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        let _ = std::fs::write("/proc/self/oom_score_adj", SHIM_OOM_SCORE_ADJ);

        let (sig_r, sig_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| SetupError::Io("pipe".into(), e.into()))?;
        SIGCHLD_PIPE.store(sig_w.as_raw_fd(), Ordering::Relaxed);
        std::mem::forget(sig_w);
        // Handlers (not SIG_IGN, which exec would pass on to containers);
        // SA_RESTART keeps libcontainer's blocking calls going.
        install_handler(libc::SIGCHLD, on_sigchld);
        install_handler(libc::SIGPIPE, on_ignored);

        if !spec.cgroup_parent.is_empty() {
            cgroup::create_pod(&spec.cgroup_parent, &spec.resources())
                .map_err(io(format!("pod cgroup {}", spec.cgroup_parent)))?;
        }
        let shm = if spec.host_ipc {
            None
        } else {
            Some(mount_shm(&dir)?)
        };
        let pause_pid = start_pause(&spec)?;

        let sock = dir.join(SOCKET_FILE);
        let _ = std::fs::remove_file(&sock);
        let listener = super::bind_unix(&sock).map_err(io(sock.display().to_string()))?;
        listener.set_nonblocking(true).map_err(io("listener"))?;
        std::fs::write(
            dir.join(PID_FILE),
            format!("{} {}", std::process::id(), pause_pid),
        )
        .map_err(io(PID_FILE))?;
        std::fs::create_dir_all(dir.join(CONTAINERS_DIR)).map_err(io(CONTAINERS_DIR))?;
        std::fs::create_dir_all(dir.join("youki")).map_err(io("youki"))?;

        // Our stdio belongs to the agent's spawn: point it at the shim's log
        // (the agent passed it as stderr) so nothing holds the agent's pipes.
        if let Ok(null) = dev_null() {
            let _ = nix::unistd::dup2_stdin(&null);
            let _ = nix::unistd::dup2_stdout(std::io::stderr());
        }

        Ok(Shim {
            dir,
            spec,
            pause_pid: Some(pause_pid),
            shm,
            listener,
            sigchld: sig_r,
            clients: HashMap::new(),
            next_client: 1,
            containers: HashMap::new(),
            execs: HashMap::new(),
            exec_seq: 0,
            exit_after: false,
            // Setup itself (cgroups, the pause fork) touched code too.
            trim_at: Some(Instant::now() + TRIM_AFTER),
        })
    }

    /// The event loop; returns after a `Shutdown`.
    pub fn run(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // What to wait for: [sigchld, listener, clients..., outputs...]
            let mut fds: Vec<libc::pollfd> = Vec::new();
            let pfd = |fd: RawFd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            fds.push(pfd(self.sigchld.as_raw_fd()));
            fds.push(pfd(self.listener.as_raw_fd()));
            let client_ids: Vec<u64> = self.clients.keys().copied().collect();
            for id in &client_ids {
                fds.push(pfd(self.clients[id].stream.as_raw_fd()));
            }
            let mut outputs: Vec<(String, usize)> = Vec::new();
            for (cid, c) in &self.containers {
                for (i, o) in c.outputs.iter().enumerate() {
                    fds.push(pfd(o.fd.as_raw_fd()));
                    outputs.push((cid.clone(), i));
                }
            }
            // Trim right before blocking: code that runs after the trim
            // faults back in (with the kernel's fault-around, 64 kB a
            // fault), so as little as possible runs in between.
            let trim = self.trim_at.is_some_and(|t| t <= Instant::now());
            if trim {
                self.trim_at = None;
            }
            let timeout = self.next_deadline().map(|d| {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(60_000) as i32
                    + 1
            });
            if trim {
                super::trim::release();
            }
            // SAFETY: fds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, timeout.unwrap_or(-1)) };
            if n < 0 {
                continue; // EINTR from SIGCHLD
            }
            let ready = |i: usize| fds[i].revents != 0;
            if ready(0) {
                while nix::unistd::read(&self.sigchld, &mut buf[..64])
                    .map(|n| n > 0)
                    .unwrap_or(false)
                {}
            }
            // Output first, so logs hold everything before an exit is seen.
            for (k, (cid, idx)) in outputs.iter().enumerate() {
                if ready(2 + client_ids.len() + k) {
                    self.read_output(cid, *idx, &mut buf);
                }
            }
            self.prune_outputs();
            self.reap();
            if ready(1) {
                self.accept();
            }
            for (k, id) in client_ids.iter().enumerate() {
                if ready(2 + k) {
                    self.read_client(*id, &mut buf);
                }
            }
            self.deadlines();
            if self.exit_after {
                self.shutdown_now();
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.containers
            .values()
            .filter_map(|c| c.kill_at)
            .chain(self.execs.values().filter_map(|e| e.kill_at))
            .chain(self.trim_at)
            .min()
    }

    /// Give back memory once the current burst of work is over.
    fn trim_soon(&mut self) {
        if self.trim_at.is_none() {
            self.trim_at = Some(Instant::now() + TRIM_AFTER);
        }
    }

    fn deadlines(&mut self) {
        let now = Instant::now();
        for c in self.containers.values_mut() {
            if let Some(t) = c.kill_at
                && t <= now
            {
                c.kill_at = None;
                if let Some(pid) = c.rec.pid {
                    kill_container(pid as i32, &c.rec.cgroup_path);
                }
            }
        }
        for (pid, e) in self.execs.iter_mut() {
            if let Some(t) = e.kill_at
                && t <= now
            {
                e.kill_at = None;
                let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            let id = self.next_client;
            self.next_client += 1;
            self.clients.insert(
                id,
                Client {
                    stream,
                    buf: Vec::new(),
                    mode: Mode::Request,
                },
            );
        }
    }

    fn read_client(&mut self, id: u64, buf: &mut [u8]) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let n = match (&client.stream).read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        if n == 0 {
            self.drop_client(id);
            return;
        }
        if !matches!(client.mode, Mode::Request) {
            return; // waiting clients send nothing more
        }
        client.buf.extend_from_slice(&buf[..n]);
        let Some(nl) = client.buf.iter().position(|b| *b == b'\n') else {
            if client.buf.len() > 1 << 20 {
                self.drop_client(id);
            }
            return;
        };
        let line: Vec<u8> = client.buf.drain(..=nl).collect();
        match serde_json::from_slice::<Request>(&line) {
            Ok(req) => self.handle(id, req),
            Err(e) => self.reply_close(id, &Response::error(format!("bad request: {e}")), &[]),
        }
    }

    fn drop_client(&mut self, id: u64) {
        self.clients.remove(&id);
        for c in self.containers.values_mut() {
            c.waiters.retain(|w| *w != id);
            c.attachers.retain(|a| a.client != id);
        }
        for e in self.execs.values_mut() {
            if e.client == id {
                e.client = 0;
            }
        }
    }

    fn send(&mut self, id: u64, resp: &Response, fds: &[RawFd]) -> bool {
        let Some(client) = self.clients.get(&id) else {
            return false;
        };
        let mut line = serde_json::to_vec(resp).unwrap_or_default();
        line.push(b'\n');
        fdpass::send(client.stream.as_raw_fd(), &line, fds).is_ok()
    }

    fn reply_close(&mut self, id: u64, resp: &Response, fds: &[RawFd]) {
        self.send(id, resp, fds);
        self.clients.remove(&id);
    }

    fn reply_wait(&mut self, id: u64, resp: &Response, fds: &[RawFd]) -> bool {
        let ok = self.send(id, resp, fds);
        if let Some(c) = self.clients.get_mut(&id) {
            c.mode = Mode::Waiting;
        }
        ok
    }

    fn handle(&mut self, id: u64, req: Request) {
        self.trim_soon();
        match req {
            Request::Ping => {
                let resp = Response {
                    pid: self.pause_pid.map(|p| p as u32),
                    ..Default::default()
                };
                self.reply_close(id, &resp, &[])
            }
            Request::List => {
                let resp = Response {
                    containers: self.list(),
                    ..Default::default()
                };
                self.reply_close(id, &resp, &[])
            }
            Request::Start { id: cid } => {
                let resp = match self.start(&cid) {
                    Ok(()) => Response::default(),
                    Err(e) => e,
                };
                self.reply_close(id, &resp, &[])
            }
            Request::Stop {
                id: cid,
                timeout_ms,
                signal,
            } => self.stop(id, &cid, timeout_ms, signal),
            Request::Remove { id: cid } => {
                let resp = self.remove(&cid);
                self.reply_close(id, &resp, &[])
            }
            Request::Exec {
                id: cid,
                cmd,
                tty,
                stdin,
                stdout,
                stderr,
                timeout_ms,
            } => self.exec(id, &cid, cmd, [stdin, stdout, stderr], tty, timeout_ms),
            Request::Attach {
                id: cid,
                stdin,
                stdout,
                stderr,
            } => self.attach(id, &cid, stdin, stdout, stderr),
            Request::Events => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.mode = Mode::Events;
                }
                self.send(id, &Response::default(), &[]);
            }
            Request::StopSandbox => {
                self.kill_all();
                self.reply_close(id, &Response::default(), &[])
            }
            Request::Shutdown => {
                self.kill_all();
                let ids: Vec<String> = self.known_ids();
                for cid in ids {
                    self.remove(&cid);
                }
                self.reply_close(id, &Response::default(), &[]);
                self.exit_after = true;
            }
        }
    }

    fn known_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.containers.keys().cloned().collect();
        if let Ok(rd) = std::fs::read_dir(self.dir.join(CONTAINERS_DIR)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !ids.contains(&name) {
                    ids.push(name);
                }
            }
        }
        ids
    }

    fn list(&self) -> Vec<ContainerRecord> {
        self.known_ids()
            .into_iter()
            .filter_map(|cid| match self.containers.get(&cid) {
                Some(c) => Some(c.rec.clone()),
                None => read_record(&self.dir.join(CONTAINERS_DIR).join(&cid)),
            })
            .collect()
    }

    /// The container, loaded from its record if this shim has not seen it.
    fn load(&mut self, cid: &str) -> Option<&mut Container> {
        if !self.containers.contains_key(cid) {
            if cid.is_empty() || cid.contains('/') || cid.starts_with('.') {
                return None;
            }
            let dir = self.dir.join(CONTAINERS_DIR).join(cid);
            let rec = read_record(&dir)?;
            self.containers.insert(
                cid.to_string(),
                Container {
                    rec,
                    dir,
                    outputs: Vec::new(),
                    stdin: None,
                    pty: None,
                    log: None,
                    attachers: Vec::new(),
                    waiters: Vec::new(),
                    kill_at: None,
                },
            );
        }
        self.containers.get_mut(cid)
    }

    fn start(&mut self, cid: &str) -> Result<(), Response> {
        let youki = self.dir.join("youki");
        let (max_size, max_files) = (self.spec.log_max_size, self.spec.log_max_files);
        let Some(c) = self.load(cid) else {
            return Err(Response {
                not_found: true,
                ..Response::error(format!("container {cid} not found"))
            });
        };
        if c.rec.state != State::Created {
            return Err(Response::error(format!(
                "container {cid} is not in created state"
            )));
        }
        let result = start_container(c, &youki, max_size, max_files);
        // libcontainer wrote the container's OOM score into our own.
        let _ = std::fs::write("/proc/self/oom_score_adj", SHIM_OOM_SCORE_ADJ);
        match result {
            Ok(()) => {
                write_record(&c.dir, &c.rec);
                Ok(())
            }
            Err(msg) => {
                let now = now_nanos();
                c.rec.state = State::Exited;
                c.rec.exit_code = Some(128);
                c.rec.reason = Some("StartError".into());
                c.rec.message = Some(msg.clone());
                c.rec.finished_at = Some(now);
                c.outputs.clear();
                c.stdin = None;
                if let Some(log) = &mut c.log {
                    log.flush();
                }
                write_record(&c.dir, &c.rec);
                let rec = c.rec.clone();
                if youki.join(cid).exists()
                    && let Ok(mut lc) = libcontainer::container::Container::load(youki.join(cid))
                {
                    let _ = lc.delete(true);
                }
                cgroup::remove_tree(&rec.cgroup_path);
                self.publish(&rec);
                Err(Response {
                    start_failed: true,
                    ..Response::error(msg)
                })
            }
        }
    }

    fn stop(&mut self, client: u64, cid: &str, timeout_ms: u64, signal: Option<i32>) {
        let Some(c) = self.load(cid) else {
            let resp = Response {
                not_found: true,
                ..Response::error(format!("container {cid} not found"))
            };
            return self.reply_close(client, &resp, &[]);
        };
        let Some(pid) = c.rec.pid.filter(|_| c.rec.state == State::Running) else {
            let resp = Response {
                exit_code: c.rec.exit_code,
                ..Default::default()
            };
            return self.reply_close(client, &resp, &[]);
        };
        if timeout_ms == 0 {
            kill_container(pid as i32, &c.rec.cgroup_path);
        } else {
            let sig = signal
                .or(c.rec.stop_signal)
                .and_then(|s| Signal::try_from(s).ok())
                .unwrap_or(Signal::SIGTERM);
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
            let deadline = Instant::now() + Duration::from_millis(timeout_ms);
            c.kill_at = Some(c.kill_at.map_or(deadline, |t| t.min(deadline)));
        }
        c.waiters.push(client);
        if let Some(cl) = self.clients.get_mut(&client) {
            cl.mode = Mode::Waiting;
        }
    }

    fn remove(&mut self, cid: &str) -> Response {
        let youki = self.dir.join("youki");
        let Some(c) = self.load(cid) else {
            return Response {
                not_found: true,
                ..Response::error(format!("container {cid} not found"))
            };
        };
        if let (State::Running, Some(pid)) = (c.rec.state, c.rec.pid) {
            kill_container(pid as i32, &c.rec.cgroup_path);
            // SIGKILL cannot be caught: the wait is short.
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
            self.exited(
                cid,
                WaitStatus::Signaled(Pid::from_raw(pid as i32), Signal::SIGKILL, false),
            );
        }
        let Some(c) = self.containers.remove(cid) else {
            return Response::default();
        };
        if youki.join(cid).exists()
            && let Ok(mut lc) = libcontainer::container::Container::load(youki.join(cid))
        {
            let _ = lc.delete(true);
        }
        let _ = std::fs::remove_dir_all(youki.join(cid));
        cgroup::remove_tree(&c.rec.cgroup_path);
        unmount(&c.dir.join("rootfs"));
        let _ = std::fs::remove_dir_all(&c.dir);
        Response::default()
    }

    fn kill_all(&mut self) {
        let running: Vec<(String, u32)> = self
            .list()
            .into_iter()
            .filter(|r| r.state == State::Running)
            .filter_map(|r| Some((r.id.clone(), r.pid?)))
            .collect();
        for (cid, pid) in running {
            if self.load(&cid).is_none() {
                continue;
            }
            let cg = self.containers[&cid].rec.cgroup_path.clone();
            kill_container(pid as i32, &cg);
            let status = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None).unwrap_or(
                WaitStatus::Signaled(Pid::from_raw(pid as i32), Signal::SIGKILL, false),
            );
            self.exited(&cid, status);
        }
    }

    fn shutdown_now(&mut self) {
        if let Some(pid) = self.pause_pid.take() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        }
        self.reap();
        if let Some(shm) = &self.shm {
            unmount(shm);
        }
        if !self.spec.cgroup_parent.is_empty() {
            cgroup::remove_tree(&self.spec.cgroup_parent);
        }
        let _ = std::fs::remove_file(self.dir.join(SOCKET_FILE));
        let _ = std::fs::remove_file(self.dir.join(PID_FILE));
    }

    fn exec(
        &mut self,
        client: u64,
        cid: &str,
        cmd: Vec<String>,
        [want_in, want_out, want_err]: [bool; 3],
        tty: bool,
        timeout_ms: Option<u64>,
    ) {
        let youki = self.dir.join("youki");
        self.exec_seq += 1;
        let seq = self.exec_seq;
        let Some(c) = self.load(cid) else {
            let resp = Response {
                not_found: true,
                ..Response::error(format!("container {cid} not found"))
            };
            return self.reply_close(client, &resp, &[]);
        };
        if c.rec.state != State::Running {
            let resp = Response::error(format!("container {cid} is not running"));
            return self.reply_close(client, &resp, &[]);
        }
        let dir = c.dir.clone();
        let result = (|| -> Result<(i32, Vec<(FdKind, OwnedFd)>), String> {
            if cmd.is_empty() {
                return Err("no command given".into());
            }
            let spec = Spec::load(dir.join("config.json")).map_err(|e| e.to_string())?;
            let mut process = spec.process().clone().ok_or("bundle has no process")?;
            let env = process.env().clone().unwrap_or_default();
            let rootfs = spec
                .root()
                .as_ref()
                .map(|r| r.path().clone())
                .unwrap_or_default();
            bundle::find_executable(&rootfs, &cmd[0], &env)?;
            process.set_args(Some(cmd.clone()));
            process.set_terminal(Some(tty));
            let pjson = dir.join(format!("exec-{seq}.json"));
            let text = serde_json::to_vec(&process).map_err(|e| e.to_string())?;
            std::fs::write(&pjson, text).map_err(|e| e.to_string())?;

            let mut give: Vec<(FdKind, OwnedFd)> = Vec::new();
            let mut builder = ContainerBuilder::new(cid.to_string(), SyscallType::default())
                .with_root_path(&youki)
                .map_err(|e| e.to_string())?;
            let mut console = None;
            if tty {
                let sock = dir.join(format!("exec-{seq}.sock"));
                let _ = std::fs::remove_file(&sock);
                let l = super::bind_unix(&sock).map_err(|e| e.to_string())?;
                builder = builder.with_console_socket(Some(&sock));
                console = Some((l, sock));
            } else {
                let (r, w) = pipe()?;
                if want_in {
                    builder = builder.with_stdin(r);
                    give.push((FdKind::Stdin, w));
                } else {
                    builder = builder.with_stdin(dev_null().map_err(|e| e.to_string())?);
                }
                for (want, kind) in [(want_out, FdKind::Stdout), (want_err, FdKind::Stderr)] {
                    let target = if want {
                        let (r, w) = pipe()?;
                        give.push((kind, r));
                        w
                    } else {
                        dev_null().map_err(|e| e.to_string())?
                    };
                    builder = if kind == FdKind::Stdout {
                        builder.with_stdout(target)
                    } else {
                        builder.with_stderr(target)
                    };
                }
            }
            let pid = builder
                .as_tenant()
                .with_detach(true)
                .with_process(Some(&pjson))
                .build()
                .map_err(|e| error_chain(&e));
            let _ = std::fs::remove_file(&pjson);
            if let Some((l, sock)) = console {
                let master = receive_pty(&l);
                let _ = std::fs::remove_file(&sock);
                give.push((FdKind::Pty, master?));
            }
            let pid = pid?;
            Ok((pid.as_raw(), give))
        })();
        let _ = std::fs::write("/proc/self/oom_score_adj", SHIM_OOM_SCORE_ADJ);
        match result {
            Ok((pid, give)) => {
                let kinds: Vec<FdKind> = give.iter().map(|(k, _)| *k).collect();
                let raw: Vec<RawFd> = give.iter().map(|(_, f)| f.as_raw_fd()).collect();
                let resp = Response {
                    fds: kinds,
                    pid: Some(pid as u32),
                    ..Default::default()
                };
                let kill_at = timeout_ms.map(|t| Instant::now() + Duration::from_millis(t));
                if self.reply_wait(client, &resp, &raw) {
                    self.execs.insert(pid, Exec { client, kill_at });
                } else {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                    self.execs.insert(
                        pid,
                        Exec {
                            client: 0,
                            kill_at: None,
                        },
                    );
                }
            }
            Err(msg) => self.reply_close(
                client,
                &Response {
                    start_failed: true,
                    ..Response::error(msg)
                },
                &[],
            ),
        }
    }

    fn attach(&mut self, client: u64, cid: &str, stdin: bool, stdout: bool, stderr: bool) {
        let Some(c) = self.load(cid) else {
            let resp = Response {
                not_found: true,
                ..Response::error(format!("container {cid} not found"))
            };
            return self.reply_close(client, &resp, &[]);
        };
        if c.rec.state != State::Running {
            let resp = Response::error("cannot attach to a container that is not running");
            return self.reply_close(client, &resp, &[]);
        }
        let mut give: Vec<(FdKind, OwnedFd)> = Vec::new();
        let mut att = Attacher {
            client,
            stdout: None,
            stderr: None,
        };
        let mut fail = None;
        if stdin && let Some(fd) = &c.stdin {
            match nix::unistd::dup(fd) {
                Ok(d) => give.push((
                    if c.pty.is_some() {
                        FdKind::Pty
                    } else {
                        FdKind::Stdin
                    },
                    d,
                )),
                Err(e) => fail = Some(e.to_string()),
            }
            if c.rec.stdin_once && c.pty.is_none() {
                // The attacher's close is the container's EOF.
                c.stdin = None;
            }
        } else if let Some(p) = &c.pty
            && let Ok(d) = nix::unistd::dup(p)
        {
            // Resizes still need the master.
            give.push((FdKind::Pty, d));
        }
        for (want, kind) in [
            (stdout, FdKind::Stdout),
            (stderr && c.pty.is_none(), FdKind::Stderr),
        ] {
            if !want {
                continue;
            }
            match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
                Ok((r, w)) => {
                    let _ = set_nonblocking(&w);
                    give.push((kind, r));
                    if kind == FdKind::Stdout {
                        att.stdout = Some(w);
                    } else {
                        att.stderr = Some(w);
                    }
                }
                Err(e) => fail = Some(e.to_string()),
            }
        }
        if let Some(e) = fail {
            return self.reply_close(client, &Response::error(e), &[]);
        }
        c.attachers.push(att);
        c.waiters.push(client);
        let kinds: Vec<FdKind> = give.iter().map(|(k, _)| *k).collect();
        let raw: Vec<RawFd> = give.iter().map(|(_, f)| f.as_raw_fd()).collect();
        let resp = Response {
            fds: kinds,
            pid: c.rec.pid,
            ..Default::default()
        };
        self.reply_wait(client, &resp, &raw);
    }

    fn read_output(&mut self, cid: &str, idx: usize, buf: &mut [u8]) {
        let Some(c) = self.containers.get_mut(cid) else {
            return;
        };
        let Some(out) = c.outputs.get(idx) else {
            return;
        };
        let stream = out.stream;
        match nix::unistd::read(&out.fd, buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => {
                // EOF, or EIO from a pty whose other side is gone.
                c.outputs[idx].closed = true;
            }
            Ok(n) => {
                if let Some(log) = &mut c.log {
                    log.write(stream, &buf[..n]);
                }
                for a in &mut c.attachers {
                    let target = match stream {
                        Stream::Stderr => a.stderr.as_ref(),
                        _ => a.stdout.as_ref(),
                    };
                    if let Some(fd) = target {
                        // A slow attacher loses output rather than stalling the pod.
                        let _ = nix::unistd::write(fd, &buf[..n]);
                    }
                }
            }
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => c.outputs[idx].closed = true,
        }
    }

    fn prune_outputs(&mut self) {
        for c in self.containers.values_mut() {
            c.outputs.retain(|o| !o.closed);
        }
    }

    fn reap(&mut self) {
        loop {
            let status =
                match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => return,
                    Ok(s) => s,
                };
            let Some(pid) = status.pid() else { continue };
            self.trim_soon();
            let raw = pid.as_raw();
            if Some(raw) == self.pause_pid {
                eprintln!("rk3s shim: the sandbox's pause process {raw} exited: {status:?}");
                self.pause_pid = None;
                continue;
            }
            if let Some(e) = self.execs.remove(&raw) {
                if e.client != 0 {
                    let resp = Response {
                        exit_code: Some(exit_code(&status)),
                        ..Default::default()
                    };
                    self.reply_close(e.client, &resp, &[]);
                }
                continue;
            }
            let cid = self
                .containers
                .iter()
                .find(|(_, c)| c.rec.state == State::Running && c.rec.pid == Some(raw as u32))
                .map(|(k, _)| k.clone());
            if let Some(cid) = cid {
                self.exited(&cid, status);
            }
        }
    }

    /// The container's process ended with `status`: record, log, tell.
    fn exited(&mut self, cid: &str, status: WaitStatus) {
        let mut buf = vec![0u8; 64 * 1024];
        let Some(c) = self.containers.get_mut(cid) else {
            return;
        };
        if c.rec.state != State::Running {
            return;
        }
        // What the process wrote before it died is still in the pipes.
        for o in &c.outputs {
            while let Ok(n) = nix::unistd::read(&o.fd, &mut buf) {
                if n == 0 {
                    break;
                }
                if let Some(log) = &mut c.log {
                    log.write(o.stream, &buf[..n]);
                }
                for a in &c.attachers {
                    let t = if o.stream == Stream::Stderr {
                        a.stderr.as_ref()
                    } else {
                        a.stdout.as_ref()
                    };
                    if let Some(fd) = t {
                        let _ = nix::unistd::write(fd, &buf[..n]);
                    }
                }
            }
        }
        c.outputs.clear();
        c.stdin = None;
        c.pty = None;
        c.kill_at = None;
        if let Some(log) = &mut c.log {
            log.flush();
        }
        c.log = None;
        // Leftovers in a shared PID namespace would keep the cgroup busy.
        for p in cgroup::procs(&c.rec.cgroup_path) {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        let code = exit_code(&status);
        c.rec.state = State::Exited;
        c.rec.exit_code = Some(code);
        c.rec.finished_at = Some(now_nanos());
        c.rec.pid = None;
        let killed = matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _));
        if killed && cgroup::oom_kills(&c.rec.cgroup_path) > 0 {
            c.rec.reason = Some("OOMKilled".into());
        }
        write_record(&c.dir, &c.rec);
        let rec = c.rec.clone();
        let waiters = std::mem::take(&mut c.waiters);
        c.attachers.clear();
        for w in waiters {
            let resp = Response {
                exit_code: Some(code),
                ..Default::default()
            };
            self.reply_close(w, &resp, &[]);
        }
        self.publish(&rec);
    }

    fn publish(&mut self, rec: &ContainerRecord) {
        let subscribers: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| matches!(c.mode, Mode::Events))
            .map(|(k, _)| *k)
            .collect();
        for s in subscribers {
            let resp = Response {
                containers: vec![rec.clone()],
                ..Default::default()
            };
            if !self.send(s, &resp, &[]) {
                self.clients.remove(&s);
            }
        }
    }
}

/// Create and start one container through libcontainer; `Err` is the
/// message a failed start shows.
fn start_container(
    c: &mut Container,
    youki: &Path,
    max_size: u64,
    max_files: usize,
) -> Result<(), String> {
    let cid = c.rec.id.clone();
    let spec = Spec::load(c.dir.join("config.json")).map_err(|e| e.to_string())?;
    let process = spec.process().as_ref().ok_or("bundle has no process")?;
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    let program = args.first().ok_or("no command specified")?;
    bundle::find_executable(&rootfs, program, &env)?;

    c.log = Some(
        CriLog::open(&c.rec.log_path, max_size, max_files).map_err(|e| {
            format!(
                "failed to create container log {}: {e}",
                c.rec.log_path.display()
            )
        })?,
    );

    let mut builder = ContainerBuilder::new(cid.clone(), SyscallType::default())
        .with_root_path(youki)
        .map_err(|e| error_chain(&e))?;
    let mut console = None;
    if c.rec.tty {
        let sock = c.dir.join("console.sock");
        let _ = std::fs::remove_file(&sock);
        let l = super::bind_unix(&sock).map_err(|e| e.to_string())?;
        builder = builder.with_console_socket(Some(&sock));
        console = Some((l, sock));
    } else {
        if c.rec.stdin {
            let (r, w) = pipe()?;
            builder = builder.with_stdin(r);
            c.stdin = Some(w);
        } else {
            builder = builder.with_stdin(dev_null().map_err(|e| e.to_string())?);
        }
        let (r, w) = pipe()?;
        set_nonblocking(&r)?;
        builder = builder.with_stdout(w);
        c.outputs.push(Output {
            fd: r,
            stream: Stream::Stdout,
            closed: false,
        });
        let (r, w) = pipe()?;
        set_nonblocking(&r)?;
        builder = builder.with_stderr(w);
        c.outputs.push(Output {
            fd: r,
            stream: Stream::Stderr,
            closed: false,
        });
    }
    let built = builder
        .as_init(&c.dir)
        .with_systemd(false)
        .with_detach(true)
        .build();
    let master = console.map(|(l, sock)| {
        let m = receive_pty(&l);
        let _ = std::fs::remove_file(&sock);
        m
    });
    let mut container = built.map_err(|e| error_chain(&e))?;
    if let Some(m) = master {
        let m = m?;
        set_nonblocking(&m)?;
        let out = nix::unistd::dup(&m).map_err(|e| e.to_string())?;
        set_nonblocking(&out)?;
        c.outputs.push(Output {
            fd: out,
            stream: Stream::Stdout,
            closed: false,
        });
        if c.rec.stdin {
            c.stdin = Some(nix::unistd::dup(&m).map_err(|e| e.to_string())?);
        }
        c.pty = Some(m);
    }
    c.rec.pid = container.pid().map(|p| p.as_raw() as u32);
    if let Err(e) = container.start() {
        let msg = error_chain(&e);
        let _ = container.delete(true);
        return Err(msg);
    }
    c.rec.state = State::Running;
    c.rec.started_at = Some(now_nanos());
    Ok(())
}

/// SIGKILL a container's process and anything else left in its cgroup.
fn kill_container(pid: i32, cgroup_path: &str) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    for p in cgroup::procs(cgroup_path) {
        let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
    }
}

/// Exit code as the kubelet reports it: a signal `n` is `128 + n`.
fn exit_code(status: &WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => *code,
        WaitStatus::Signaled(_, sig, _) => 128 + *sig as i32,
        _ => 255,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        source = s.source();
    }
    msg
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())
}

fn set_nonblocking(fd: &impl AsFd) -> Result<(), String> {
    let raw = fd.as_fd().as_raw_fd();
    // SAFETY: fcntl on an fd we hold.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}

/// The pty master the container's init sends over the console socket.
fn receive_pty(listener: &UnixListener) -> Result<OwnedFd, String> {
    let _ = listener.set_nonblocking(true);
    let (stream, _) = listener
        .accept()
        .map_err(|e| format!("console socket: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    let (_, mut fds) =
        fdpass::recv(stream.as_raw_fd(), &mut buf).map_err(|e| format!("console socket: {e}"))?;
    fds.pop()
        .ok_or_else(|| "console socket: no pty received".to_string())
}

fn install_handler(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction with a valid handler and an empty mask.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

pub fn read_record(dir: &Path) -> Option<ContainerRecord> {
    serde_json::from_slice(&std::fs::read(dir.join(RECORD_FILE)).ok()?).ok()
}

/// Write a record atomically (rename), so a reader never sees half of one.
pub fn write_record(dir: &Path, rec: &ContainerRecord) {
    let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
    if let Ok(text) = serde_json::to_vec(rec)
        && std::fs::write(&tmp, text).is_ok()
    {
        let _ = std::fs::rename(&tmp, dir.join(RECORD_FILE));
    }
}

/// Detach-unmount a mount point, ignoring "not mounted".
pub fn unmount(path: &Path) {
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: a valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The sandbox's /dev/shm: a tmpfs every container of the pod mounts.
fn mount_shm(dir: &Path) -> Result<PathBuf, SetupError> {
    let shm = dir.join("shm");
    std::fs::create_dir_all(&shm).map_err(io("shm"))?;
    let target = std::ffi::CString::new(shm.as_os_str().as_encoded_bytes())
        .map_err(|e| SetupError::Other(e.to_string()))?;
    let data = c"mode=1777,size=65536k";
    // SAFETY: valid C strings.
    let rc = unsafe {
        libc::mount(
            c"shm".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(SetupError::Io(
            "mount shm".into(),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(shm)
}

/// Fork the process that holds the sandbox's namespaces: it joins the
/// pod's network namespace, makes new UTS (with the pod's host name) and
/// IPC namespaces, and with a shared process namespace becomes its PID 1.
fn start_pause(spec: &SandboxSpec) -> Result<i32, SetupError> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| SetupError::Io("pipe".into(), e.into()))?;
    let netns = match &spec.netns_path {
        Some(p) => Some(std::fs::File::open(p).map_err(io(p.display().to_string()))?),
        None => None,
    };
    // SAFETY: single-threaded process (see `super::main`).
    match unsafe { nix::unistd::fork() }.map_err(|e| SetupError::Io("fork".into(), e.into()))? {
        ForkResult::Child => {
            drop(r);
            let mut w = std::fs::File::from(w);
            let new_pid = spec.share_process_namespace && !spec.host_pid;
            let res = (|| -> std::io::Result<()> {
                // SAFETY: plain syscalls on our own process.
                unsafe {
                    if let Some(ns) = &netns
                        && libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    let mut flags = 0;
                    if netns.is_some() {
                        flags |= libc::CLONE_NEWUTS;
                    }
                    if !spec.host_ipc {
                        flags |= libc::CLONE_NEWIPC;
                    }
                    if new_pid {
                        flags |= libc::CLONE_NEWPID;
                    }
                    if flags != 0 && libc::unshare(flags) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if netns.is_some() {
                    nix::unistd::sethostname(&spec.hostname).map_err(std::io::Error::from)?;
                }
                Ok(())
            })();
            drop(netns);
            if let Err(e) = res {
                let _ = w.write_all(format!("error: sandbox namespaces: {e}").as_bytes());
                // SAFETY: leave the forked child without running destructors.
                unsafe { libc::_exit(1) };
            }
            if new_pid {
                // SAFETY: still single-threaded.
                match unsafe { nix::unistd::fork() } {
                    Ok(ForkResult::Parent { child }) => {
                        let _ = w.write_all(child.as_raw().to_string().as_bytes());
                        unsafe { libc::_exit(0) };
                    }
                    Ok(ForkResult::Child) => {
                        drop(w);
                        pause_forever()
                    }
                    Err(e) => {
                        let _ = w.write_all(format!("error: fork: {e}").as_bytes());
                        unsafe { libc::_exit(1) };
                    }
                }
            }
            let _ = w.write_all(std::process::id().to_string().as_bytes());
            drop(w);
            pause_forever()
        }
        ForkResult::Parent { child } => {
            drop(w);
            drop(netns);
            let mut msg = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut msg);
            let pid: i32 = match msg.trim().parse() {
                Ok(pid) => pid,
                Err(_) => {
                    let _ = nix::sys::wait::waitpid(child, None);
                    return Err(SetupError::Other(
                        msg.trim_start_matches("error: ").to_string(),
                    ));
                }
            };
            if pid != child.as_raw() {
                // The intermediate of the PID-namespace fork.
                let _ = nix::sys::wait::waitpid(child, None);
            }
            Ok(pid)
        }
    }
}

/// The pause process: hold the namespaces, reap orphans (as PID 1).
fn pause_forever() -> ! {
    // SAFETY: syscalls on our own process; no allocation needed after this.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"rk3s-pause".as_ptr(), 0, 0, 0);
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        install_handler(libc::SIGCHLD, on_ignored);
        loop {
            libc::pause();
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        }
    }
}
