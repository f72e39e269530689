//! Test harness: runs the real `rk3s server` binary on a fresh data dir and a
//! free loopback port, and drives it with the real kubectl and with curl.
//!
//! Every `Server` owns its own temp dir (under target/tmp), port, kubectl cache
//! and HOME, so tests run in parallel without seeing each other. Dropping a
//! `Server` kills the process and removes the dir (set RK3S_KEEP_TEST_DIRS=1 to
//! keep it); if the test is panicking, the tail of the server log is printed.
//!
//! Shared by every test binary and by the benches (`#[path]`), so not every
//! item is used everywhere.
#![allow(dead_code)]

pub mod netns;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test, built by cargo for this test target.
pub const RK3S: &str = env!("CARGO_BIN_EXE_rk3s");

/// How long a start may take before the test fails (debug builds on a busy
/// 2-core machine are slow; the release target is 1 s).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Any single kubectl/curl invocation that takes longer than this is a hang.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The newest kubectl on the machine (v1.33 is the reference client).
pub fn kubectl_bin() -> PathBuf {
    let newest = Path::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33");
    if newest.exists() {
        newest.to_path_buf()
    } else {
        PathBuf::from("kubectl")
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Poll `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run a command to completion with a deadline; on timeout it is killed and
/// the test fails with whatever it printed.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let input = input.to_vec();
        // A writer thread, so a child that does not read cannot deadlock us.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out_reader = reader_thread(child.stdout.take().expect("stdout pipe"));
    let err_reader = reader_thread(child.stderr.take().expect("stderr pipe"));
    let end = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = out_reader.join().unwrap_or_default();
                let stderr = err_reader.join().unwrap_or_default();
                panic!(
                    "timed out after {timeout:?}: {cmd:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                );
            }
            Err(e) => panic!("wait {cmd:?}: {e}"),
        }
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

fn reader_thread(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parse JSON or fail with the text that was not JSON.
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Sorted, whitespace-split lines of `kubectl ... -o name` style output.
pub fn lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// The ConfigMap the root-CA publisher keeps in every namespace (as upstream);
/// tests that count ConfigMaps leave it out.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// Whether a name, `configmap/NAME` line or table row is not about the root-CA ConfigMap.
pub fn not_root_ca(line: &str) -> bool {
    !line.contains(ROOT_CA_CONFIGMAP)
}

/// At most 2,000 characters of `s`, for failure messages.
pub fn clip(s: &str) -> String {
    const MAX: usize = 2000;
    if s.chars().count() <= MAX {
        return s.to_string();
    }
    let head: String = s.chars().take(MAX).collect();
    format!("{head}... ({} bytes in all)", s.len())
}

/// Collapse runs of blanks, so table rows compare independently of column widths.
pub fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How a server is started; kept so `restart` starts it the same way.
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    port: u16,
    port_flag: bool,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config_yaml: Option<String>,
    /// Run the node agent (real containers); off unless a test asks, and
    /// then the test must run the server inside its own network namespace.
    agent: bool,
    /// The test network namespace the server, kubectl and curl run in.
    netns: Option<NetnsRef>,
}

/// What a `Server` needs of a `netns::TestNetns` (which the test keeps).
#[derive(Clone, Debug)]
pub struct NetnsRef {
    pub name: String,
    pub path: PathBuf,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            port: free_port(),
            port_flag: true,
            args: Vec::new(),
            env: Vec::new(),
            config_yaml: None,
            agent: false,
            netns: None,
        }
    }
}

impl ServerBuilder {
    /// The port the server is expected to listen on.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Do not pass `--https-port`; the test supplies the port via env or config
    /// file and tells the harness with `expect_port`.
    pub fn without_port_flag(mut self) -> Self {
        self.port_flag = false;
        self
    }
    pub fn expect_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Write this YAML to <root>/config.yaml and pass `--config` for it.
    pub fn config_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.config_yaml = Some(yaml.into());
        self
    }
    /// Keep the node agent on (see `agent`).
    pub fn with_agent(mut self) -> Self {
        self.agent = true;
        self
    }
    /// Run the server (with its node agent), and every kubectl and curl the
    /// harness runs for it, inside `ns`; the node is named after `ns`.
    pub fn netns(mut self, ns: &netns::TestNetns) -> Self {
        self.netns = Some(NetnsRef {
            name: ns.name.clone(),
            path: ns.path.clone(),
        });
        self.agent = true;
        self
    }
    /// `program` as a command inside the server's network namespace, if any.
    pub fn command_for(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.path.display()))
                    .arg("--")
                    .arg(program);
                c
            }
            None => Command::new(program),
        }
    }
    pub fn start(self) -> Server {
        Server::start_with(self)
    }
}

/// Client credentials extracted from the admin kubeconfig, as PEM files for curl.
#[derive(Clone, Debug)]
pub struct Creds {
    pub server: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A raw HTTP answer.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body for failure messages: at most 2,000 characters.
    pub fn snippet(&self) -> String {
        clip(&self.text())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}):\n{}",
                self.status,
                self.snippet()
            )
        })
    }
    /// The (last) value of a response header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .next_back()
    }
    /// Assert this is a metav1.Status error with `code` and `reason`; returns it.
    #[track_caller]
    pub fn assert_status(&self, code: u16, reason: &str) -> Value {
        assert_eq!(
            self.status,
            code,
            "wanted HTTP {code} {reason}, got {}:\n{}",
            self.status,
            self.snippet()
        );
        let s = self.json();
        assert_eq!(
            s["kind"], "Status",
            "error body is not a metav1.Status: {s}"
        );
        assert_eq!(s["apiVersion"], "v1", "Status apiVersion: {s}");
        assert_eq!(s["status"], "Failure", "Status.status: {s}");
        assert_eq!(s["code"], code, "Status.code: {s}");
        assert_eq!(s["reason"], reason, "Status.reason: {s}");
        s
    }
}

/// One raw request (curl). `auth` = present the admin client certificate.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub body: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
    pub auth: bool,
    pub timeout: Duration,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Self {
        Req {
            method: method.into(),
            path: path.into(),
            body: None,
            headers: Vec::new(),
            auth: true,
            timeout: Duration::from_secs(60),
        }
    }
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("Content-Type".into(), content_type.into()));
        self.body = Some(body.into());
        self
    }
    pub fn json(self, v: &Value) -> Self {
        self.body(
            "application/json",
            serde_json::to_vec(v).expect("serialize"),
        )
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn anonymous(mut self) -> Self {
        self.auth = false;
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
}

pub struct Server {
    /// Temp root: data/, home/, kube-cache/, server.log, kubeconfig.yaml.
    pub root: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    /// The admin kubeconfig the server always writes: <data-dir>/server/cred/admin.kubeconfig.
    pub kubeconfig: PathBuf,
    /// The copy written because of `--write-kubeconfig`.
    pub written_kubeconfig: PathBuf,
    pub log: PathBuf,
    builder: ServerBuilder,
    child: Option<Child>,
    creds: Option<Creds>,
}

impl Server {
    /// "Reason: message" of the events about objects named `name`, oldest
    /// first (by resourceVersion).
    #[allow(dead_code)]
    pub fn events(&self, name: &str) -> Vec<String> {
        let list = self.k_json(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
        ]);
        let mut items = list["items"].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|e| {
            e["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .parse::<u64>()
                .unwrap_or(0)
        });
        items
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["reason"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    /// Wait until an event about `name` contains `wanted`.
    #[allow(dead_code)]
    #[track_caller]
    pub fn wait_event(&self, name: &str, wanted: &str, timeout: Duration) {
        let mut last = Vec::new();
        let ok = wait_until(timeout, || {
            last = self.events(name);
            last.iter().any(|e| e.contains(wanted))
        });
        assert!(ok, "no event {wanted:?} for {name}: {last:#?}");
    }

    /// A server with default flags on a fresh data dir.
    pub fn start() -> Server {
        ServerBuilder::default().start()
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    fn start_with(builder: ServerBuilder) -> Server {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let name = format!(
            "rk3s-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst),
            thread_label()
        );
        let root = base.join(name);
        fs::create_dir_all(root.join("home")).expect("create test root");
        let data_dir = root.join("data");
        let mut s = Server {
            kubeconfig: data_dir.join("server/cred/admin.kubeconfig"),
            written_kubeconfig: root.join("kubeconfig.yaml"),
            log: root.join("server.log"),
            data_dir,
            port: builder.port,
            root,
            builder,
            child: None,
            creds: None,
        };
        // A port picked by free_port() can be taken by a parallel test before
        // the server binds it; then pick another (only when we chose it).
        for attempt in 0..3 {
            match s.spawn_and_wait() {
                Ok(()) => return s,
                Err(msg) if attempt < 2 && s.builder.port_flag && msg.contains("in use") => {
                    s.builder.port = free_port();
                    s.port = s.builder.port;
                }
                Err(msg) => panic!("{msg}"),
            }
        }
        unreachable!()
    }

    fn command(&self) -> Command {
        let mut cmd = self.builder.command_for(RK3S);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--bind-address")
            .arg("127.0.0.1")
            .arg("--write-kubeconfig")
            .arg(&self.written_kubeconfig);
        if self.builder.port_flag {
            cmd.arg("--https-port").arg(self.port.to_string());
        }
        // Always an explicit config file (empty unless the test gives one), so a
        // /etc/rk3s/config.yaml on the machine cannot leak into the tests.
        let config = self.root.join("config.yaml");
        fs::write(&config, self.builder.config_yaml.as_deref().unwrap_or(""))
            .expect("write config.yaml");
        cmd.arg("--config").arg(config);
        if !self.builder.agent {
            cmd.arg("--disable").arg("agent");
        }
        if let Some(ns) = &self.builder.netns
            && !self
                .builder
                .args
                .iter()
                .any(|a| a.starts_with("--node-name"))
        {
            cmd.arg("--node-name").arg(&ns.name);
        }
        cmd.args(&self.builder.args);
        // Only what the test asks for: no RK3S_* from the caller's environment.
        for (k, _) in std::env::vars() {
            if k.starts_with("RK3S_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_BACKTRACE", "1");
        if self.builder.agent {
            // The test machines' disks report little space available to
            // root (reserved blocks): upstream's disk thresholds would put
            // every test node under DiskPressure and garbage-collect the
            // images tests import. Tests that want them pass the flags
            // (flags win over env).
            cmd.env("RK3S_EVICTION_HARD", "memory.available<100Mi");
            cmd.env("RK3S_IMAGE_GC_HIGH_THRESHOLD", "100");
            cmd.env("RK3S_IMAGE_GC_LOW_THRESHOLD", "99");
        }
        for (k, v) in &self.builder.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Start the process and wait for /readyz; Err carries a diagnosis.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server.log");
        let log2 = log.try_clone().expect("clone log fd");
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {RK3S}: {e}"))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "rk3s server exited before it was ready ({status}); args {:?}\n--- server log ---\n{}",
                    self.command().get_args().collect::<Vec<_>>(),
                    self.log_tail(60)
                ));
            }
            if self.kubeconfig.exists() && self.readyz_ok() {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "rk3s server not ready within {READY_TIMEOUT:?} (kubeconfig {} exists: {})\n--- server log ---\n{}",
                    self.kubeconfig.display(),
                    self.kubeconfig.exists(),
                    self.log_tail(60)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn readyz_ok(&self) -> bool {
        let out = self
            .builder
            .command_for("curl")
            .args([
                "-sk",
                "--noproxy",
                "*",
                "--max-time",
                "2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("https://127.0.0.1:{}/readyz", self.port))
            .output();
        matches!(out, Ok(o) if o.stdout == b"200")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last `n` lines the server logged.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, wait for a clean exit (status 0), return the status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("send SIGTERM");
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait for rk3s") {
                break st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "rk3s did not exit within 30 s of SIGTERM\n--- server log ---\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "rk3s did not shut down cleanly on SIGTERM: {status}\n--- server log ---\n{}",
            self.log_tail(40)
        );
        status
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same data dir and port (after `stop` or `kill9`).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is still running");
        // Credentials are reused across restarts, but re-read them to prove it.
        self.creds = None;
        if let Err(msg) = self.spawn_and_wait() {
            panic!("restart failed: {msg}");
        }
    }

    /// Pass `a` too from the next `start_again` on (a node restarted
    /// with new settings, as upstream's e2e tests reconfigure kubelets).
    #[allow(dead_code)]
    pub fn push_arg(&mut self, a: impl Into<String>) {
        self.builder.args.push(a.into());
    }

    /// SIGTERM, then start again on the same data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    // ---- kubectl ------------------------------------------------------------

    /// A kubectl command bound to this server (its own cache dir and HOME).
    pub fn kubectl_cmd(&self) -> Command {
        let mut cmd = self.builder.command_for(kubectl_bin());
        cmd.env_remove("KUBECONFIG")
            .env("HOME", self.root.join("home"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.root.join("kube-cache"));
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        run(self.kubectl_cmd().args(args), None, COMMAND_TIMEOUT)
    }

    pub fn kubectl_stdin(&self, stdin: &str, args: &[&str]) -> Output {
        run(
            self.kubectl_cmd().args(args),
            Some(stdin.as_bytes()),
            COMMAND_TIMEOUT,
        )
    }

    pub fn kubectl_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = self.kubectl_cmd();
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(cmd.args(args), None, COMMAND_TIMEOUT)
    }

    /// kubectl that must succeed; returns stdout.
    #[track_caller]
    pub fn k(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        self.expect_ok(args, &o)
    }

    /// kubectl with stdin (e.g. `apply -f -`) that must succeed; returns stdout.
    #[track_caller]
    pub fn k_in(&self, stdin: &str, args: &[&str]) -> String {
        let o = self.kubectl_stdin(stdin, args);
        self.expect_ok(args, &o)
    }

    /// kubectl that must fail; returns stderr.
    #[track_caller]
    pub fn k_err(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            !o.status.success(),
            "kubectl {args:?} should have failed but printed:\n{}",
            stdout(&o)
        );
        stderr(&o)
    }

    /// kubectl with stdin that must fail; returns stderr.
    #[track_caller]
    pub fn k_in_err(&self, stdin: &str, args: &[&str]) -> String {
        let o = self.kubectl_stdin(stdin, args);
        assert!(
            !o.status.success(),
            "kubectl {args:?} should have failed but printed:\n{}",
            stdout(&o)
        );
        stderr(&o)
    }

    /// `kubectl get ... -o json`, parsed.
    #[track_caller]
    pub fn k_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        json(&self.k(&a))
    }

    /// Read an object (`kubectl get <get_args> -o json`), change it with
    /// `edit`, and `kubectl replace` it. A 409 Conflict means a controller
    /// wrote in between: read again and retry (a few times), as a user would.
    /// Returns the last replace's output (success or the first other error).
    pub fn replace_retrying(&self, get_args: &[&str], edit: impl Fn(&mut Value)) -> Output {
        for _ in 0..10 {
            let mut obj = self.k_json(get_args);
            edit(&mut obj);
            let o = self.kubectl_stdin(&obj.to_string(), &["replace", "-f", "-"]);
            if o.status.success() || !stderr(&o).contains("(Conflict)") {
                return o;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("kubectl replace of {get_args:?} conflicted 10 times in a row");
    }

    #[track_caller]
    fn expect_ok(&self, args: &[&str], o: &Output) -> String {
        assert!(
            o.status.success(),
            "kubectl {args:?} failed ({})\nstdout:\n{}\nstderr:\n{}\n--- server log tail ---\n{}",
            o.status,
            stdout(o),
            stderr(o),
            self.log_tail(15)
        );
        stdout(o)
    }

    // ---- raw HTTPS ----------------------------------------------------------

    /// The admin credentials from the kubeconfig, written out as PEM files.
    pub fn creds(&mut self) -> Creds {
        if let Some(c) = &self.creds {
            return c.clone();
        }
        let c = extract_creds(&self.kubeconfig, &self.root.join("pem"));
        self.creds = Some(c.clone());
        c
    }

    /// One request with curl; panics if curl cannot get an HTTP answer.
    #[track_caller]
    pub fn request(&mut self, req: Req) -> Resp {
        let desc = format!("{} {}", req.method, req.path);
        self.try_request(req)
            .unwrap_or_else(|e| panic!("{desc}: {e}\n--- server log ---\n{}", self.log_tail(30)))
    }

    /// One request with curl; Err when there is no HTTP answer (connection
    /// refused or reset, timeout).
    pub fn try_request(&mut self, req: Req) -> Result<Resp, String> {
        let creds = self.creds();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let body_file = self.root.join(format!("req-{n}.body"));
        let out_file = self.root.join(format!("req-{n}.out"));
        let hdr_file = self.root.join(format!("req-{n}.hdr"));
        let mut cmd = self.builder.command_for("curl");
        // HTTP/1.1: curl reports an error when an HTTP/2 server answers before it
        // has read the whole request body (which Go clients accept); the HTTP/2
        // path is exercised by kubectl.
        cmd.args(["-sS", "--http1.1", "--noproxy", "*", "-X", &req.method])
            .arg("--max-time")
            .arg(req.timeout.as_secs().max(1).to_string())
            .arg("--cacert")
            .arg(&creds.ca)
            .arg("-o")
            .arg(&out_file)
            .arg("-D")
            .arg(&hdr_file)
            .args(["-w", "%{http_code}", "-H", "Expect:"]);
        if req.auth {
            cmd.arg("--cert")
                .arg(&creds.cert)
                .arg("--key")
                .arg(&creds.key);
        }
        for (k, v) in &req.headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(b) = &req.body {
            fs::write(&body_file, b).expect("write request body");
            cmd.arg("--data-binary")
                .arg(format!("@{}", body_file.display()));
        }
        cmd.arg(format!("{}{}", creds.server, req.path));
        let o = run(&mut cmd, None, req.timeout + Duration::from_secs(10));
        let status: u16 = stdout(&o).trim().parse().unwrap_or(0);
        let body = fs::read(&out_file).unwrap_or_default();
        let headers = fs::read_to_string(&hdr_file).unwrap_or_default();
        for f in [&body_file, &out_file, &hdr_file] {
            let _ = fs::remove_file(f);
        }
        if !o.status.success() || status == 0 {
            return Err(format!("curl failed ({}): {}", o.status, stderr(&o).trim()));
        }
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    #[track_caller]
    pub fn get(&mut self, path: &str) -> Resp {
        self.request(Req::new("GET", path))
    }

    /// GET that must answer 200 with JSON.
    #[track_caller]
    pub fn get_json(&mut self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(
            r.status,
            200,
            "GET {path}: HTTP {}\n{}",
            r.status,
            r.snippet()
        );
        r.json()
    }

    #[track_caller]
    pub fn post_json(&mut self, path: &str, body: &Value) -> Resp {
        self.request(Req::new("POST", path).json(body))
    }

    #[track_caller]
    pub fn put_json(&mut self, path: &str, body: &Value) -> Resp {
        self.request(Req::new("PUT", path).json(body))
    }

    #[track_caller]
    pub fn delete(&mut self, path: &str) -> Resp {
        self.request(Req::new("DELETE", path))
    }

    // ---- kube::Client -------------------------------------------------------

    /// A kube-rs client from the admin kubeconfig (for load and raw async I/O).
    /// Not for a server in a test netns: this process is outside it.
    pub async fn client(&self) -> kube::Client {
        let kc =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read admin kubeconfig");
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kube config from admin kubeconfig");
        kube::Client::try_from(cfg).expect("kube client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- rk3s server log ({}) ---\n{}\n--- end of server log ---",
                self.log.display(),
                self.log_tail(60)
            );
        }
        self.kill9();
        if self.builder.agent {
            // Pods, mounts, interfaces and cgroups the agent made.
            let mut cmd = self.builder.command_for(RK3S);
            cmd.arg("killall").arg("--data-dir").arg(&self.data_dir);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Ok(mut child) = cmd.spawn() {
                let end = Instant::now() + Duration::from_secs(60);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::env::var_os("RK3S_KEEP_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        } else {
            eprintln!("kept test dir {}", self.root.display());
        }
    }
}

/// A raw request with a kube::Client: (status, body). Transport errors are Err.
pub async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Vec<u8>), String> {
    let mut b = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        b = b.header("Content-Type", "application/json");
    }
    let req = b
        .body(kube::client::Body::from(body.unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let resp = client.send(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, bytes.to_vec()))
}

fn thread_label() -> String {
    let t = std::thread::current();
    let name = t.name().unwrap_or("t");
    let tail = name.rsplit("::").next().unwrap_or(name);
    tail.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

/// Pull the server URL, CA and client cert/key out of a kubeconfig (inline
/// `*-data` or file references) into PEM files under `dir`.
fn extract_creds(kubeconfig: &Path, dir: &Path) -> Creds {
    use base64::Engine;
    let text = fs::read_to_string(kubeconfig)
        .unwrap_or_else(|e| panic!("read {}: {e}", kubeconfig.display()));
    let kc: Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("kubeconfig is not YAML ({e}):\n{text}"));
    let cluster = &kc["clusters"][0]["cluster"];
    let user = &kc["users"][0]["user"];
    let server = cluster["server"]
        .as_str()
        .unwrap_or_else(|| panic!("kubeconfig has no server:\n{text}"))
        .to_string();
    fs::create_dir_all(dir).expect("create pem dir");
    let pem = |obj: &Value, data_key: &str, file_key: &str, out: &str| -> PathBuf {
        let path = dir.join(out);
        if let Some(b64) = obj[data_key].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap_or_else(|e| panic!("kubeconfig {data_key} is not base64: {e}"));
            fs::write(&path, bytes).expect("write pem");
        } else if let Some(f) = obj[file_key].as_str() {
            fs::copy(f, &path).unwrap_or_else(|e| panic!("copy {f}: {e}"));
        } else {
            panic!("kubeconfig has neither {data_key} nor {file_key}:\n{text}");
        }
        path
    };
    Creds {
        server,
        ca: pem(
            cluster,
            "certificate-authority-data",
            "certificate-authority",
            "ca.crt",
        ),
        cert: pem(
            user,
            "client-certificate-data",
            "client-certificate",
            "client.crt",
        ),
        key: pem(user, "client-key-data", "client-key", "client.key"),
    }
}

/// A deterministic pseudo-random generator (SplitMix64): fuzz inputs must be
/// the same on every run so a failure can be replayed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
