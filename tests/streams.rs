//! Streaming subresources through real kubectl binaries (1.33 and the
//! oldest, 1.27): exec (WebSocket v5 and SPDY), attach, cp, port-forward
//! (SPDY over WebSocket and plain SPDY), logs, and the proxies.
//!
//! The API runs in this process over TLS exactly as `rk3s server` serves it,
//! with a `NodeStreams` double registered for node `node-a` that runs host
//! processes (for exec/attach), connects to 127.0.0.1 (for port-forward),
//! and reads CRI log files this test writes (through the real CRI log
//! reader). Only loopback is used. Real pods through the node agent are
//! tested where the agent's tests live.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::stream::BoxStream;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rk3s::api::Identity;
use rk3s::api::streams::backend::{DuplexStream, LogOptions, NodeStreams, PodRef, StreamError};
use rk3s::config::ServerConfig;
use rk3s::runtime::cri::{ExecRequest, ExecSession, TerminalSize};
use rk3s::server::ControlPlane;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use common::{free_port, run, stderr, stdout, wait_until};

const TIMEOUT: Duration = Duration::from_secs(60);
const OLDEST: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
const NEWEST: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
/// 1.30 is the last to port-forward over plain SPDY.
const SPDY_PF: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.30";

// ---- the node double --------------------------------------------------------

struct HostNode {
    /// Pod logs: `<root>/<ns>_<pod>/<container>/<attempt>.log`; a file
    /// `exited` next to them ends `logs -f`.
    root: PathBuf,
}

fn internal(e: impl std::fmt::Display) -> StreamError {
    StreamError::Internal(e.to_string())
}

/// Exit code of a finished host process, signals as 128+n.
fn code_of(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().or(st.signal().map(|s| 128 + s)).unwrap_or(255)
}

fn spawn_process(cmd: &[String], tty: bool, stdin: bool) -> Result<ExecSession, StreamError> {
    let (exit_tx, exit) = tokio::sync::oneshot::channel();
    let Some((prog, args)) = cmd.split_first() else {
        return Err(StreamError::BadRequest("no command".into()));
    };
    let mut c = tokio::process::Command::new(prog);
    c.args(args).kill_on_drop(true);
    if !tty {
        c.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(internal)?;
        let session = ExecSession {
            stdin: child
                .stdin
                .take()
                .map(|s| Box::pin(s) as rk3s::runtime::cri::BoxedWriter),
            stdout: child
                .stdout
                .take()
                .map(|s| Box::pin(s) as rk3s::runtime::cri::BoxedReader),
            stderr: child
                .stderr
                .take()
                .map(|s| Box::pin(s) as rk3s::runtime::cri::BoxedReader),
            resize: None,
            exit,
        };
        tokio::spawn(async move {
            if let Ok(st) = child.wait().await {
                let _ = exit_tx.send(code_of(st));
            }
        });
        return Ok(session);
    }
    // A pseudo-terminal: the process gets the slave as its controlling tty.
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two fds into the given integers.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(internal(std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just opened and are owned here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(internal);
    c.stdin(Stdio::from(dup(&slave)?))
        .stdout(Stdio::from(dup(&slave)?))
        .stderr(Stdio::from(dup(&slave)?));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = c.spawn().map_err(internal)?;
    drop(c);
    drop(slave);
    let reader = tokio::fs::File::from_std(std::fs::File::from(dup(&master)?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(dup(&master)?));
    let (resize_tx, mut resize_rx) = tokio::sync::mpsc::channel::<TerminalSize>(4);
    tokio::spawn(async move {
        while let Some(sz) = resize_rx.recv().await {
            let ws = libc::winsize {
                ws_row: sz.height,
                ws_col: sz.width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
    });
    tokio::spawn(async move {
        if let Ok(st) = child.wait().await {
            let _ = exit_tx.send(code_of(st));
        }
    });
    Ok(ExecSession {
        stdin: stdin.then(|| Box::pin(writer) as rk3s::runtime::cri::BoxedWriter),
        stdout: Some(Box::pin(reader)),
        stderr: None,
        resize: Some(resize_tx),
        exit,
    })
}

#[async_trait]
impl NodeStreams for HostNode {
    async fn exec(
        &self,
        _pod: &PodRef,
        _container: &str,
        r: ExecRequest,
    ) -> Result<ExecSession, StreamError> {
        spawn_process(&r.cmd, r.tty, r.stdin)
    }
    async fn attach(
        &self,
        _pod: &PodRef,
        _container: &str,
        stdin: bool,
        tty: bool,
    ) -> Result<ExecSession, StreamError> {
        // The "container's main process" echoes its stdin.
        spawn_process(&["cat".to_string()], tty, stdin)
    }
    async fn port_forward(&self, _pod: &PodRef, port: u16) -> Result<DuplexStream, StreamError> {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(internal)?;
        Ok(Box::pin(s))
    }
    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        options: LogOptions,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, StreamError> {
        let dir = self
            .root
            .join(format!("{}_{}", pod.namespace, pod.name))
            .join(container);
        let mut attempts: Vec<u32> = std::fs::read_dir(&dir)
            .map_err(|e| StreamError::NotFound(e.to_string()))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        attempts.sort();
        let attempt = if options.previous {
            attempts.iter().rev().nth(1)
        } else {
            attempts.last()
        }
        .copied()
        .ok_or_else(|| StreamError::BadRequest("no log".into()))?;
        let opts = rk3s::node::logs::ReadOptions::from_log_options(&options).map_err(internal)?;
        let marker = dir.join("exited");
        let exited = async move {
            while !marker.exists() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        .boxed();
        Ok(rk3s::node::logs::stream(
            dir.join(format!("{attempt}.log")),
            opts,
            Some(exited),
        ))
    }
    async fn proxy(
        &self,
        req: http::Request<axum::body::Body>,
    ) -> Result<http::Response<axum::body::Body>, StreamError> {
        let body = format!("node-a {} {}", req.method(), req.uri());
        Ok(http::Response::new(axum::body::Body::from(body)))
    }
}

// ---- the in-process API server ----------------------------------------------

struct Cluster {
    rt: tokio::runtime::Runtime,
    /// Kept alive for the server's lifetime.
    _cp: ControlPlane,
    dir: PathBuf,
    kubeconfig: PathBuf,
    logs: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn start() -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = std::env::temp_dir().join(format!("rk3s-streams-{}", uuid::Uuid::new_v4()));
        let port = free_port();
        let mut cfg = ServerConfig::new(dir.clone(), "node-a");
        cfg.bind_address = "127.0.0.1".parse().expect("ip");
        cfg.https_port = port;
        let logs = dir.join("pods");
        let kubeconfig = dir.join("kubeconfig");
        let cp = rt.block_on(async {
            let cp = ControlPlane::open(&cfg).expect("open");
            cp.bootstrap(&cfg).await.expect("bootstrap");
            let pki = rk3s::auth::pki::Pki::load_or_create(
                &cfg.tls_dir(),
                &rk3s::auth::pki::SanInputs::from_config(&cfg).expect("sans"),
            )
            .expect("pki");
            std::fs::write(
                &kubeconfig,
                pki.admin_kubeconfig(&format!("https://127.0.0.1:{port}")),
            )
            .expect("kubeconfig");
            let tls = pki.server_tls_config().expect("tls");
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            tokio::spawn(serve_tls(listener, tls, cp.router.clone()));
            cp.state
                .streams
                .register("node-a", Arc::new(HostNode { root: logs.clone() }));
            cp
        });
        let c = Cluster {
            rt,
            _cp: cp,
            dir,
            kubeconfig,
            logs,
        };
        c.create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}));
        c
    }

    fn kubectl_with(&self, bin: &str, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        let mut cmd = Command::new(bin);
        cmd.env("HOME", &self.dir)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args);
        run(&mut cmd, stdin, TIMEOUT)
    }

    fn k(&self, args: &[&str]) -> String {
        let o = self.kubectl_with(NEWEST, args, None);
        assert!(o.status.success(), "kubectl {args:?}: {}", stderr(&o));
        stdout(&o)
    }

    fn spawn_kubectl(&self, bin: &str, args: &[&str]) -> KillOnDrop {
        let child = Command::new(bin)
            .env("HOME", &self.dir)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        KillOnDrop(child)
    }

    fn create(&self, obj: Value) {
        let o = self.kubectl_with(
            NEWEST,
            &["create", "-f", "-"],
            Some(obj.to_string().as_bytes()),
        );
        assert!(o.status.success(), "create: {}", stderr(&o));
    }

    /// A pod on node-a, "running" at 127.0.0.1 with the given containers.
    fn running_pod(&self, name: &str, containers: &[&str], labels: Value, port: Option<u16>) {
        let cs: Vec<Value> = containers
            .iter()
            .map(|c| {
                let mut v = json!({"name": c, "image": "busybox"});
                if let Some(p) = port {
                    v["ports"] = json!([{"containerPort": p}]);
                }
                v
            })
            .collect();
        self.create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"nodeName": "node-a", "containers": cs}}));
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                json!({"name": c, "ready": true, "restartCount": 1, "image": "busybox",
                "imageID": "busybox@sha256:0", "containerID": format!("rk3s://{name}-{c}"),
                "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                    "containerID": format!("rk3s://{name}-{c}-0"),
                    "startedAt": "2024-01-01T00:00:00Z", "finishedAt": "2024-01-01T00:00:00Z"}}})
            })
            .collect();
        let patch = json!({"status": {"phase": "Running", "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}], "hostIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": statuses}});
        self.k(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]);
    }

    fn log_dir(&self, pod: &str, container: &str) -> PathBuf {
        let d = self.logs.join(format!("default_{pod}")).join(container);
        std::fs::create_dir_all(&d).expect("log dir");
        d
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `rk3s server` does per connection: TLS, the client certificate's
/// identity, HTTP/1.1 or h2 by ALPN, upgrades allowed.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    while let Ok((tcp, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| rk3s::auth::authn::user_from_cert(c.as_ref()));
            let svc =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Identity(user.clone()));
                    router.clone().oneshot(req.map(axum::body::Body::new))
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// A TCP server on 127.0.0.1 that answers every connection with a banner,
/// then echoes what it reads in upper case.
fn echo_server(rt: &tokio::runtime::Runtime, banner: &'static str) -> u16 {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(banner.as_bytes()).await;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let up = buf[..n].to_ascii_uppercase();
                    if s.write_all(&up).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// An HTTP server on 127.0.0.1 that answers with the path it was asked for.
fn http_server(rt: &tokio::runtime::Runtime, name: &'static str) -> u16 {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let body = format!("{name} {} {}", req.method(), req.uri());
                        let mut resp =
                            http::Response::new(http_body_util::Full::new(Bytes::from(body)));
                        if req.uri().path() == "/redirect" {
                            *resp.status_mut() = http::StatusCode::FOUND;
                            resp.headers_mut().insert(
                                http::header::LOCATION,
                                http::HeaderValue::from_static("/landing"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    port
}

/// Connect to a local port-forward, read the banner, send a line, read
/// its echo.
fn talk(port: u16, banner: &str) -> String {
    use std::io::{Read, Write};
    let mut s = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            s = std::net::TcpStream::connect(("127.0.0.1", port)).ok();
            s.is_some()
        }),
        "port-forward never listened on {port}"
    );
    let mut s = s.expect("connected");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut got = vec![0u8; banner.len()];
    s.read_exact(&mut got).expect("banner");
    s.write_all(b"ping\n").expect("write");
    let mut echo = [0u8; 5];
    s.read_exact(&mut echo).expect("echo");
    format!(
        "{}{}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&echo)
    )
}

fn cri(lines: &[(&str, &str, &str)]) -> String {
    lines
        .iter()
        .map(|(t, tag, msg)| format!("{t} stdout {tag} {msg}\n"))
        .collect()
}

// ---- the tests ---------------------------------------------------------------

/// exec: stdin to the process and EOF when kubectl's stdin ends, stdout and
/// stderr apart, the exit code through the status channel; with kubectl
/// 1.33 (WebSocket v5) and 1.27 (SPDY v4). The walkthrough's steps 10/11.
#[test]
fn exec_stdin_streams_and_exit_code() {
    let c = Cluster::start();
    c.running_pod("web", &["app"], json!({"app": "web"}), None);
    for bin in [NEWEST, OLDEST] {
        let o = c.kubectl_with(
            bin,
            &["exec", "-i", "web", "--", "cat"],
            Some(b"rk3s-stdin\n"),
        );
        assert!(o.status.success(), "{bin}: {}", stderr(&o));
        assert_eq!(stdout(&o), "rk3s-stdin\n", "{bin}");

        let o = c.kubectl_with(
            bin,
            &["exec", "web", "--", "sh", "-c", "echo out; echo err >&2"],
            None,
        );
        assert!(o.status.success(), "{bin}: {}", stderr(&o));
        assert_eq!(stdout(&o), "out\n", "{bin}");
        assert!(stderr(&o).contains("err"), "{bin}: {}", stderr(&o));

        let o = c.kubectl_with(
            bin,
            &["-v=4", "exec", "web", "--", "sh", "-c", "exit 7"],
            None,
        );
        assert_eq!(o.status.code(), Some(7), "{bin}: {}", stderr(&o));
        // 1.33 speaks WebSocket v5 without falling back to SPDY.
        if bin == NEWEST {
            assert!(
                stderr(&o).contains("v5.channel.k8s.io") && !stderr(&o).contains("fallback"),
                "{}",
                stderr(&o)
            );
        }

        // Megabytes both ways.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let o = c.kubectl_with(bin, &["exec", "-i", "web", "--", "wc", "-c"], Some(&big));
        assert!(o.status.success(), "{bin}: {}", stderr(&o));
        assert_eq!(stdout(&o).trim(), "3000000", "{bin}");
    }
    // Errors before any stream.
    let o = c.kubectl_with(NEWEST, &["exec", "web", "-c", "nope", "--", "true"], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("container nope is not valid for pod web"),
        "{}",
        stderr(&o)
    );
}

/// exec -t: a terminal inside, its size from kubectl's terminal (the resize
/// channel), with both protocol families. (The size arrives just after the
/// process starts, hence the sleep.)
#[test]
fn exec_tty_and_resize() {
    let c = Cluster::start();
    c.running_pod("term", &["app"], json!({}), None);
    for bin in [NEWEST, OLDEST] {
        let inner = format!(
            "stty rows 33 cols 77; {bin} --kubeconfig {} --cache-dir {} exec -it term -- sh -c 'sleep 1; tty; stty size'",
            c.kubeconfig.display(),
            c.dir.join("cache").display()
        );
        let o = run(
            Command::new("script")
                .args(["-qec", &inner, "/dev/null"])
                .env("HOME", &c.dir),
            None,
            TIMEOUT,
        );
        let out = stdout(&o);
        assert!(o.status.success(), "{bin}: {out} {}", stderr(&o));
        assert!(out.contains("/dev/pts/"), "{bin}: no tty in {out:?}");
        assert!(out.contains("33 77"), "{bin}: size not passed: {out:?}");
    }
}

/// attach -i: the container's process gets kubectl's stdin; it ending ends
/// the attach.
#[test]
fn attach_stdin() {
    let c = Cluster::start();
    c.running_pod("att", &["app"], json!({}), None);
    let o = c.kubectl_with(NEWEST, &["attach", "-i", "att"], Some(b"hello attach\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("hello attach"), "{}", stdout(&o));
}

/// kubectl cp both ways (tar over exec).
#[test]
fn cp_both_ways() {
    let c = Cluster::start();
    c.running_pod("files", &["app"], json!({}), None);
    let remote = c.dir.join("remote");
    std::fs::create_dir_all(&remote).expect("mkdir");
    std::fs::write(remote.join("in-pod.txt"), "from the pod\n").expect("write");
    let local = c.dir.join("local.txt");
    for bin in [NEWEST, OLDEST] {
        let _ = std::fs::remove_file(&local);
        let src = format!("files:{}", remote.join("in-pod.txt").display());
        let o = c.kubectl_with(bin, &["cp", &src, &local.display().to_string()], None);
        assert!(o.status.success(), "{bin}: {}", stderr(&o));
        assert_eq!(
            std::fs::read_to_string(&local).expect("copied"),
            "from the pod\n"
        );
    }
    std::fs::write(&local, "to the pod\n").expect("write");
    let dst = format!("files:{}", remote.join("uploaded.txt").display());
    let o = c.kubectl_with(NEWEST, &["cp", &local.display().to_string(), &dst], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(remote.join("uploaded.txt")).expect("uploaded"),
        "to the pod\n"
    );
}

/// port-forward to pod/NAME, deploy/NAME (through its pods) and svc/NAME
/// (service port to target port) with kubectl 1.33 (SPDY tunnelled over a
/// WebSocket), 1.30 (SPDY) and 1.27; two connections in a row.
#[test]
fn port_forward_pod_deploy_svc() {
    let c = Cluster::start();
    let target = echo_server(&c.rt, "hello from pod\n");
    c.running_pod("fwd-1", &["app"], json!({"app": "fwd"}), Some(target));
    c.create(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "fwd", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "fwd"}},
                 "template": {"metadata": {"labels": {"app": "fwd"}},
                              "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}}));
    c.create(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "fwd", "namespace": "default"},
        "spec": {"selector": {"app": "fwd"}, "ports": [{"port": 80, "targetPort": target}]}}));
    for bin in [NEWEST, SPDY_PF, OLDEST] {
        for (what, remote) in [
            ("pod/fwd-1", target),
            ("deploy/fwd", target),
            ("svc/fwd", 80),
        ] {
            let local = free_port();
            let mapping = format!("{local}:{remote}");
            let mut pf = c.spawn_kubectl(bin, &["-v=4", "port-forward", what, &mapping]);
            for _ in 0..2 {
                assert_eq!(
                    talk(local, "hello from pod\n"),
                    "hello from pod\nPING\n",
                    "{bin} {what}"
                );
            }
            let _ = pf.0.kill();
            let log = pf.0.wait_with_output_ref();
            // 1.33 tunnels SPDY through a WebSocket, without falling back.
            if bin == NEWEST {
                assert!(
                    log.contains("WebSocket Upgrade")
                        && log.contains("negotiated protocol: portforward.k8s.io")
                        && !log.contains("fallback"),
                    "{log}"
                );
            }
        }
    }
}

/// A port nobody listens on: kubectl reports the node's error and keeps
/// forwarding.
#[test]
fn port_forward_refused() {
    let c = Cluster::start();
    c.running_pod("closed", &["app"], json!({}), None);
    let dead = free_port();
    for bin in [NEWEST, OLDEST] {
        let local = free_port();
        let mut pf = c.spawn_kubectl(
            bin,
            &["port-forward", "pod/closed", &format!("{local}:{dead}")],
        );
        let mut ok = false;
        for _ in 0..100 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", local)) {
                use std::io::Read;
                s.set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(ok, "{bin}: never listened");
        let _ = pf.0.kill();
        let out = pf.0.wait_with_output_ref();
        assert!(
            out.contains("error forwarding port") || out.contains("connection refused"),
            "{bin}: {out}"
        );
    }
}

trait ChildOutput {
    fn wait_with_output_ref(&mut self) -> String;
}
impl ChildOutput for Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut s = String::new();
        if let Some(e) = self.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        if let Some(o) = self.stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    }
}

/// kubectl logs: whole, --tail, --timestamps, --since-time, --limit-bytes,
/// --previous, -c and --all-containers, deploy/NAME, -f until the container
/// exits; upstream's errors.
#[test]
fn logs_options_and_errors() {
    let c = Cluster::start();
    c.running_pod("logger", &["app"], json!({"app": "logger"}), None);
    let d = c.log_dir("logger", "app");
    std::fs::write(
        d.join("0.log"),
        cri(&[("2024-01-01T00:00:00Z", "F", "previous run")]),
    )
    .expect("write");
    std::fs::write(
        d.join("1.log"),
        cri(&[
            ("2024-01-01T00:00:01Z", "F", "one"),
            ("2024-01-01T00:00:02.25Z", "P", "tw"),
            ("2024-01-01T00:00:02.5Z", "F", "o"),
            ("2024-01-01T00:00:03Z", "F", "three"),
        ]),
    )
    .expect("write");
    assert_eq!(c.k(&["logs", "logger"]), "one\ntwo\nthree\n");
    assert_eq!(c.k(&["logs", "logger", "--tail=1"]), "three\n");
    assert_eq!(
        c.k(&["logs", "logger", "--timestamps", "--tail=2"]),
        "2024-01-01T00:00:02.25Z two\n2024-01-01T00:00:03Z three\n"
    );
    assert_eq!(
        c.k(&["logs", "logger", "--since-time=2024-01-01T00:00:02Z"]),
        "two\nthree\n"
    );
    assert_eq!(c.k(&["logs", "logger", "--limit-bytes=5"]), "one\nt");
    assert_eq!(c.k(&["logs", "logger", "--previous"]), "previous run\n");
    assert_eq!(c.k(&["logs", "logger", "-c", "app"]), "one\ntwo\nthree\n");
    c.create(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "logger", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "logger"}},
                 "template": {"metadata": {"labels": {"app": "logger"}},
                              "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}}));
    assert_eq!(c.k(&["logs", "deploy/logger", "--tail=1"]), "three\n");
}

/// Multi-container pods: the server's "choose one of" error, -c, and
/// --all-containers; a waiting container's error.
#[test]
fn logs_containers_and_waiting() {
    let c = Cluster::start();
    c.running_pod("two", &["a", "b"], json!({}), None);
    for (ctr, msg) in [("a", "from a"), ("b", "from b")] {
        std::fs::write(
            c.log_dir("two", ctr).join("1.log"),
            cri(&[("2024-01-01T00:00:01Z", "F", msg)]),
        )
        .expect("write");
    }
    assert_eq!(c.k(&["logs", "two", "-c", "b"]), "from b\n");
    let all = c.k(&["logs", "two", "--all-containers"]);
    assert!(all.contains("from a") && all.contains("from b"), "{all}");
    let raw = c.kubectl_with(
        NEWEST,
        &["get", "--raw", "/api/v1/namespaces/default/pods/two/log"],
        None,
    );
    assert!(
        stderr(&raw)
            .contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{}",
        stderr(&raw)
    );
    // A container still being created.
    c.create(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "starting", "namespace": "default"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "busybox"}]}}));
    let patch = json!({"status": {"phase": "Pending", "containerStatuses": [{"name": "app",
        "ready": false, "restartCount": 0, "image": "busybox", "imageID": "",
        "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
    c.k(&[
        "patch",
        "pod",
        "starting",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
    let o = c.kubectl_with(NEWEST, &["logs", "starting"], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "container \"app\" in pod \"starting\" is waiting to start: ContainerCreating"
        ),
        "{}",
        stderr(&o)
    );
    let o = c.kubectl_with(NEWEST, &["logs", "starting", "--previous"], None);
    assert!(
        stderr(&o).contains("previous terminated container \"app\" in pod \"starting\" not found"),
        "{}",
        stderr(&o)
    );
    // Bad options are 422s worded as upstream.
    let o = c.kubectl_with(
        NEWEST,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/two/log?container=a&limitBytes=0",
        ],
        None,
    );
    assert!(
        stderr(&o).contains("limitBytes: Invalid value: 0: must be greater than 0"),
        "{}",
        stderr(&o)
    );
}

/// logs -f streams what is appended and returns when the container exits.
#[test]
fn logs_follow() {
    let c = Cluster::start();
    c.running_pod("tailer", &["app"], json!({}), None);
    let d = c.log_dir("tailer", "app");
    let log = d.join("1.log");
    std::fs::write(&log, cri(&[("2024-01-01T00:00:01Z", "F", "first")])).expect("write");
    let mut f = c.spawn_kubectl(NEWEST, &["logs", "-f", "tailer"]);
    let mut out = f.0.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    std::thread::sleep(Duration::from_millis(800));
    {
        use std::io::Write;
        let mut h = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        h.write_all(cri(&[("2024-01-01T00:00:02Z", "F", "second")]).as_bytes())
            .expect("append");
    }
    std::thread::sleep(Duration::from_millis(800));
    std::fs::write(d.join("exited"), "").expect("exit marker");
    assert!(
        wait_until(Duration::from_secs(20), || f
            .0
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "logs -f did not end when the container exited"
    );
    assert_eq!(reader.join().expect("reader"), "first\nsecond\n");
}

/// pods/proxy, services/proxy and nodes/proxy through `kubectl get --raw`
/// and `kubectl proxy` (the walkthrough's step 12), redirects kept under
/// the proxy path.
#[test]
fn proxies() {
    let c = Cluster::start();
    let web = http_server(&c.rt, "web-pod");
    c.running_pod("webpod", &["app"], json!({"app": "webpod"}), Some(web));
    let raw = |p: &str| c.k(&["get", "--raw", p]);
    assert_eq!(
        raw(&format!(
            "/api/v1/namespaces/default/pods/webpod:{web}/proxy/some/path?x=1"
        )),
        "web-pod GET /some/path?x=1"
    );
    // No port: the first container port.
    assert_eq!(
        raw("/api/v1/namespaces/default/pods/webpod/proxy/"),
        "web-pod GET /"
    );
    // Services: a manual Endpoints object (no selector) at the server.
    c.create(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "websvc", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80}]}}));
    c.create(json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "websvc", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": web}]}]}));
    assert_eq!(
        raw("/api/v1/namespaces/default/services/websvc:80/proxy/hello"),
        "web-pod GET /hello"
    );
    assert_eq!(
        raw("/api/v1/namespaces/default/services/websvc:http/proxy/hello"),
        "web-pod GET /hello"
    );
    assert_eq!(
        raw("/api/v1/nodes/node-a/proxy/stats/summary"),
        "node-a GET /stats/summary"
    );
    // kubectl proxy, then plain HTTP as a browser would.
    let port = free_port();
    let _proxy = c.spawn_kubectl(NEWEST, &["proxy", &format!("--port={port}")]);
    let base = format!("http://127.0.0.1:{port}/api/v1/namespaces/default/pods/webpod:{web}/proxy");
    let mut body = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let o = run(
                Command::new("curl").args(["-sf", &format!("{base}/")]),
                None,
                TIMEOUT,
            );
            body = stdout(&o);
            o.status.success()
        }),
        "kubectl proxy never answered"
    );
    assert_eq!(body, "web-pod GET /");
    let o = run(
        Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{redirect_url}",
            &format!("{base}/redirect"),
        ]),
        None,
        TIMEOUT,
    );
    assert!(
        stdout(&o).ends_with(&format!(
            "/api/v1/namespaces/default/pods/webpod:{web}/proxy/landing"
        )),
        "{}",
        stdout(&o)
    );
    // Nothing listening: 503 as upstream.
    let dead = free_port();
    let o = c.kubectl_with(
        NEWEST,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/webpod:{dead}/proxy/"),
        ],
        None,
    );
    assert!(
        stderr(&o).contains("ServiceUnavailable")
            || stderr(&o).contains("error trying to reach service"),
        "{}",
        stderr(&o)
    );
}

/// Discovery lists the streaming subresources with upstream's verbs.
#[test]
fn discovery_lists_stream_subresources() {
    let c = Cluster::start();
    let v: Value = serde_json::from_str(&c.k(&["get", "--raw", "/api/v1"])).expect("json");
    let verbs = |name: &str| -> Vec<String> {
        v["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))["verbs"]
            .as_array()
            .expect("verbs")
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(verbs("pods/exec"), ["create", "get"]);
    assert_eq!(verbs("pods/attach"), ["create", "get"]);
    assert_eq!(verbs("pods/portforward"), ["create", "get"]);
    assert_eq!(verbs("pods/log"), ["get"]);
    for p in ["pods/proxy", "services/proxy", "nodes/proxy"] {
        assert_eq!(
            verbs(p),
            ["create", "delete", "get", "patch", "update"],
            "{p}"
        );
    }
}

// ---- real pods through the node agent ---------------------------------------

/// The walkthrough's steps 8-13 against a real container run by the node
/// agent inside a test network namespace, with kubectl 1.33 and 1.27:
/// logs (--tail, --timestamps, -f), exec (env, stdin, exit code, tty with
/// its size), kubectl cp, port-forward and `kubectl proxy` to the pod's page.
#[test]
fn real_pod_logs_exec_port_forward_proxy() {
    let ns = common::netns::TestNetns::create();
    let s = common::Server::builder().netns(&ns).start();
    registry::import(&s.data_dir, "web_1");
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: rk3s-test/web:1
    command: ["sh", "-c", "echo first line; echo second line; exec /bin/serve"]
    ports: [{containerPort: 8080}]
"#;
    s.k_in(pod, &["apply", "-f", "-"]);
    assert!(
        wait_until(Duration::from_secs(120), || {
            s.k(&["get", "pod", "web", "-o", "jsonpath={.status.phase}"]) == "Running"
        }),
        "pod never ran: {}",
        s.log_tail(30)
    );
    let kubectl = |bin: &str, args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = ns.cmd(bin);
        cmd.env("HOME", s.root.join("home"))
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args(args);
        run(&mut cmd, stdin, TIMEOUT)
    };
    // Step 8: logs.
    assert!(
        wait_until(Duration::from_secs(20), || stdout(&kubectl(
            NEWEST,
            &["logs", "web"],
            None
        )) == "first line\nsecond line\n"),
        "{}",
        stderr(&kubectl(NEWEST, &["logs", "web"], None))
    );
    assert_eq!(
        stdout(&kubectl(NEWEST, &["logs", "web", "--tail=1"], None)),
        "second line\n"
    );
    let ts = stdout(&kubectl(NEWEST, &["logs", "web", "--timestamps"], None));
    assert!(ts.lines().all(|l| l.contains("Z ")), "{ts}");
    for bin in [NEWEST, OLDEST] {
        // Step 9: exec -- env.
        let o = kubectl(bin, &["exec", "web", "--", "env"], None);
        assert!(o.status.success(), "{bin}: {}", stderr(&o));
        assert!(
            stdout(&o).lines().any(|l| l == "HOSTNAME=web"),
            "{bin}: {}",
            stdout(&o)
        );
        // Step 10: exec -i with stdin.
        let o = kubectl(
            bin,
            &["exec", "-i", "web", "--", "cat"],
            Some(b"rk3s-stdin\n"),
        );
        assert_eq!(stdout(&o), "rk3s-stdin\n", "{bin}: {}", stderr(&o));
        // Step 11: exit code.
        let o = kubectl(bin, &["exec", "web", "--", "sh", "-c", "exit 7"], None);
        assert_eq!(o.status.code(), Some(7), "{bin}: {}", stderr(&o));
        // Step 13: port-forward.
        let local = free_port();
        let mut cmd = ns.cmd(bin);
        cmd.env("HOME", s.root.join("home"))
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args(["port-forward", "pod/web", &format!("{local}:8080")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _pf = KillOnDrop(cmd.spawn().expect("port-forward"));
        let url = format!("http://127.0.0.1:{local}/");
        assert!(
            wait_until(Duration::from_secs(30), || {
                ns.output(&["curl", "-sf", "-m", "5", &url])
                    .status
                    .success()
            }),
            "{bin}: port-forward never answered"
        );
        assert!(
            ns.run(&["curl", "-sf", "-m", "5", &url]).contains("on web"),
            "{bin}"
        );
    }
    // A terminal in the container, sized by kubectl's; and kubectl cp.
    for bin in [NEWEST, OLDEST] {
        let inner = format!(
            "stty rows 33 cols 77; {bin} --kubeconfig {} exec -it web -- sh -c 'sleep 1; tty; stty size'",
            s.kubeconfig.display()
        );
        let o = run(
            ns.cmd("script")
                .args(["-qec", &inner, "/dev/null"])
                .env("HOME", s.root.join("home")),
            None,
            TIMEOUT,
        );
        let out = stdout(&o);
        assert!(
            out.contains("/dev/pts/") && out.contains("33 77"),
            "{bin}: {out:?} {}",
            stderr(&o)
        );
        let local = s.root.join(format!("index-{}.html", bin.len()));
        let o = kubectl(
            bin,
            &[
                "cp",
                "web:/tmp/www/index.html",
                &local.display().to_string(),
            ],
            None,
        );
        assert!(o.status.success(), "{bin}: {}", stderr(&o));
        let copied = std::fs::read_to_string(&local).unwrap_or_default();
        assert!(
            copied.contains("rk3s-test web v1 on web"),
            "{bin}: {copied:?}"
        );
    }
    // Step 12: kubectl proxy to the pod's page.
    let port = free_port();
    let mut cmd = ns.cmd(NEWEST);
    cmd.env("HOME", s.root.join("home"))
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["proxy", &format!("--port={port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _proxy = KillOnDrop(cmd.spawn().expect("kubectl proxy"));
    let url = format!("http://127.0.0.1:{port}/api/v1/namespaces/default/pods/web:8080/proxy/");
    let mut page = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let o = ns.output(&["curl", "-sf", "-m", "5", &url]);
            page = stdout(&o);
            o.status.success()
        }),
        "kubectl proxy never answered"
    );
    assert!(page.contains("rk3s-test web v1 on web"), "{page}");
    // logs -f ends when the container does.
    let mut cmd = ns.cmd(NEWEST);
    cmd.env("HOME", s.root.join("home"))
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["logs", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut follow = KillOnDrop(cmd.spawn().expect("logs -f"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        follow.0.try_wait().ok().flatten().is_none(),
        "logs -f ended early"
    );
    s.k(&["delete", "pod", "web", "--wait=false"]);
    assert!(
        wait_until(Duration::from_secs(60), || follow
            .0
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "logs -f kept going after the container ended"
    );
}
