//! Probes against real local servers (HTTP, HTTPS, TCP, gRPC over h2c)
//! and a fake runtime for exec.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use k8s_openapi::api::core::v1::{Container, Probe};
use parking_lot::Mutex;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::runtime::cri::{
    ContainerEvent, ContainerStats, ContainerStatus, ExecOutput, ExecRequest, ExecSession,
    Result as RtResult, RuntimeError, SandboxConfig, SandboxId, SandboxStatus,
};

/// Only exec_sync is real: it answers from a script keyed by argv[0].
pub(crate) struct FakeRuntime {
    pub calls: Mutex<Vec<Vec<String>>>,
}

impl FakeRuntime {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(FakeRuntime {
            calls: Mutex::new(Vec::new()),
        })
    }
}

fn unused<T>() -> RtResult<T> {
    Err(RuntimeError::Other("not used by these tests".into()))
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn run_sandbox(&self, _: &SandboxConfig) -> RtResult<SandboxId> {
        unused()
    }
    async fn stop_sandbox(&self, _: &SandboxId) -> RtResult<()> {
        unused()
    }
    async fn remove_sandbox(&self, _: &SandboxId) -> RtResult<()> {
        unused()
    }
    async fn list_sandboxes(&self) -> RtResult<Vec<SandboxStatus>> {
        unused()
    }
    async fn create_container(
        &self,
        _: &SandboxId,
        _: &crate::runtime::cri::ContainerConfig,
    ) -> RtResult<ContainerId> {
        unused()
    }
    async fn start_container(&self, _: &ContainerId) -> RtResult<()> {
        unused()
    }
    async fn stop_container(&self, _: &ContainerId, _: Duration) -> RtResult<()> {
        unused()
    }
    async fn remove_container(&self, _: &ContainerId) -> RtResult<()> {
        unused()
    }
    async fn container_status(&self, _: &ContainerId) -> RtResult<ContainerStatus> {
        unused()
    }
    async fn list_containers(&self, _: &SandboxId) -> RtResult<Vec<ContainerStatus>> {
        unused()
    }
    async fn container_stats(&self, _: &ContainerId) -> RtResult<ContainerStats> {
        unused()
    }
    async fn exec(&self, _: &ContainerId, _: ExecRequest) -> RtResult<ExecSession> {
        unused()
    }
    async fn exec_sync(
        &self,
        _id: &ContainerId,
        cmd: &[String],
        timeout: Duration,
    ) -> RtResult<ExecOutput> {
        self.calls.lock().push(cmd.to_vec());
        match cmd.first().map(String::as_str) {
            Some("true") => Ok(ExecOutput::default()),
            Some("fail") => Ok(ExecOutput {
                exit_code: 1,
                stdout: b"not ".to_vec(),
                stderr: b"healthy".to_vec(),
            }),
            Some("sleep") => {
                tokio::time::sleep(timeout).await;
                Err(RuntimeError::Other("timed out".into()))
            }
            _ => Err(RuntimeError::NotFound("container".into())),
        }
    }
    async fn attach(&self, _: &ContainerId, _: bool, _: bool) -> RtResult<ExecSession> {
        unused()
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ContainerEvent> {
        tokio::sync::broadcast::channel(1).1
    }
}

/// An HTTP/1.1 server answering by path; records request heads.
async fn http_server() -> (u16, Arc<Mutex<Vec<String>>>, Arc<AtomicU16>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    // /toggle answers with this status.
    let toggle = Arc::new(AtomicU16::new(200));
    let (h, t) = (heads.clone(), toggle.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (h, t) = (h.clone(), t.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                h.lock().push(head);
                let (status, extra, body) = match path.as_str() {
                    "/ok" => ("200 OK", String::new(), "fine".to_string()),
                    "/fail" => ("500 Internal Server Error", String::new(), "boom".into()),
                    "/redirect" => ("302 Found", "Location: /ok\r\n".into(), String::new()),
                    "/away" => (
                        "302 Found",
                        format!("Location: http://127.0.0.2:{port}/ok\r\n"),
                        "moved".into(),
                    ),
                    "/loop" => ("302 Found", "Location: /loop\r\n".into(), String::new()),
                    "/toggle" => {
                        let code = t.load(Ordering::SeqCst);
                        let line = if code == 200 {
                            "200 OK"
                        } else {
                            "503 Service Unavailable"
                        };
                        (line, String::new(), String::new())
                    }
                    "/hang" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    _ => ("404 Not Found", String::new(), String::new()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, heads, toggle)
}

fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn container() -> Container {
    serde_json::from_value(json!({"name": "web", "ports": [{"name": "http", "containerPort": 1}]}))
        .unwrap()
}

fn target(port_name_to: u16) -> ProbeTarget {
    let mut c = container();
    c.ports.as_mut().unwrap()[0].container_port = i32::from(port_name_to);
    ProbeTarget {
        container_id: "cid".into(),
        pod_ip: Some("127.0.0.1".into()),
        container: c,
    }
}

fn probe(v: serde_json::Value) -> Probe {
    serde_json::from_value(v).unwrap()
}

fn prober() -> Prober {
    Prober::new(FakeRuntime::new())
}

#[tokio::test]
async fn http_probes() {
    let (port, heads, _) = http_server().await;
    let p = prober();
    let t = target(port);
    let get = |path: &str| {
        probe(json!({"httpGet": {"path": path, "port": "http",
            "httpHeaders": [{"name": "X-Check", "value": "yes"}]}}))
    };
    assert_eq!(p.run(&get("/ok"), &t).await, ProbeResult::Success);
    let head = heads.lock().last().cloned().unwrap();
    assert!(head.starts_with("GET /ok HTTP/1.1\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("user-agent: kube-probe/1.33\r\n"), "{head}");
    assert!(lower.contains("x-check: yes\r\n"), "{head}");
    assert!(
        lower.contains(&format!("host: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
    assert!(lower.contains("connection: close\r\n"), "{head}");

    assert_eq!(
        p.run(&get("/fail"), &t).await,
        ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
    );
    // Same-host redirects are followed.
    assert_eq!(p.run(&get("/redirect"), &t).await, ProbeResult::Success);
    // Another host: not followed, a warning with the body.
    assert_eq!(
        p.run(&get("/away"), &t).await,
        ProbeResult::Warning("Probe terminated redirects, Response body: moved".into())
    );
    assert_eq!(
        p.run(&get("/loop"), &t).await,
        ProbeResult::Failure(format!(
            "Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"
        ))
    );
    // Timeout (timeoutSeconds 1).
    assert_eq!(
        p.run(&get("/hang"), &t).await,
        ProbeResult::Failure(format!(
            "Get \"http://127.0.0.1:{port}/hang\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    );
    // Nothing listening.
    let closed = refused_port();
    let r = p
        .run(
            &probe(json!({"httpGet": {"path": "/healthz", "port": closed}})),
            &t,
        )
        .await;
    assert_eq!(
        r,
        ProbeResult::Failure(format!(
            "Get \"http://127.0.0.1:{closed}/healthz\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
        ))
    );
    // A port name the container does not have: the probe errors.
    let r = p
        .run(
            &probe(json!({"httpGet": {"path": "/", "port": "metrics"}})),
            &t,
        )
        .await;
    assert_eq!(
        r,
        ProbeResult::Error("couldn't find port: metrics in web".into())
    );
}

#[tokio::test]
async fn https_probe_skips_verification() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 2048];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let r = prober()
        .run(
            &probe(json!({"httpGet": {"path": "/", "port": port, "scheme": "HTTPS"}})),
            &target(1),
        )
        .await;
    assert_eq!(r, ProbeResult::Success);
}

#[tokio::test]
async fn tcp_probes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = prober();
    let t = target(port);
    assert_eq!(
        p.run(&probe(json!({"tcpSocket": {"port": "http"}})), &t)
            .await,
        ProbeResult::Success
    );
    drop(listener);
    let closed = refused_port();
    assert_eq!(
        p.run(&probe(json!({"tcpSocket": {"port": closed}})), &t)
            .await,
        ProbeResult::Failure(format!(
            "dial tcp 127.0.0.1:{closed}: connect: connection refused"
        ))
    );
}

/// A grpc.health.v1 server over h2c: service "" is SERVING, "down" is
/// NOT_SERVING, "missing" answers NOT_FOUND; other paths UNIMPLEMENTED.
async fn grpc_server() -> u16 {
    use hyper::service::service_fn;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: ::http::Request<hyper::body::Incoming>| async move {
                    use http_body_util::BodyExt;
                    let path = req.uri().path().to_string();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let service =
                        String::from_utf8_lossy(body.get(7..).unwrap_or(&[])).into_owned();
                    let mut resp = ::http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc");
                    let (payload, status, msg): (Vec<u8>, &str, &str) =
                        if path != "/grpc.health.v1.Health/Check" {
                            (vec![], "12", "unknown method")
                        } else if service == "missing" {
                            (vec![], "5", "unknown service")
                        } else if service == "down" {
                            (vec![0, 0, 0, 0, 2, 0x08, 2], "0", "")
                        } else {
                            (vec![0, 0, 0, 0, 2, 0x08, 1], "0", "")
                        };
                    if payload.is_empty() {
                        // Trailers-only.
                        resp = resp
                            .header("grpc-status", status)
                            .header("grpc-message", msg);
                        return Ok::<_, std::convert::Infallible>(
                            resp.body(http_body_util::Either::Left(Full::new(Bytes::new())))
                                .unwrap(),
                        );
                    }
                    let mut trailers = ::http::HeaderMap::new();
                    trailers.insert("grpc-status", status.parse().unwrap());
                    let body = http_body_util::StreamBody::new(futures::stream::iter(vec![
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(
                            payload,
                        ))),
                        Ok(hyper::body::Frame::trailers(trailers)),
                    ]));
                    Ok(resp.body(http_body_util::Either::Right(body)).unwrap())
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn grpc_probes() {
    let port = grpc_server().await;
    let p = prober();
    let t = target(1);
    let g = |service: &str| probe(json!({"grpc": {"port": port, "service": service}}));
    assert_eq!(p.run(&g(""), &t).await, ProbeResult::Success);
    assert_eq!(
        p.run(&g("down"), &t).await,
        ProbeResult::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    assert_eq!(
        p.run(&g("missing"), &t).await,
        ProbeResult::Failure(
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
                .into()
        )
    );
    let closed = refused_port();
    assert_eq!(
        p.run(&probe(json!({"grpc": {"port": closed}})), &t).await,
        ProbeResult::Failure(format!(
            "timeout: failed to connect service \"127.0.0.1:{closed}\" within 1s"
        ))
    );
}

#[tokio::test]
async fn exec_probes() {
    let rt = FakeRuntime::new();
    let p = Prober::new(rt.clone());
    let t = target(1);
    let e = |cmd: &[&str]| probe(json!({"exec": {"command": cmd}, "timeoutSeconds": 1}));
    assert_eq!(p.run(&e(&["true"]), &t).await, ProbeResult::Success);
    assert_eq!(
        p.run(&e(&["fail", "x"]), &t).await,
        ProbeResult::Failure("not healthy".into())
    );
    assert_eq!(
        p.run(&e(&["sleep", "5"]), &t).await,
        ProbeResult::Failure("command \"sleep 5\" timed out".into())
    );
    assert!(matches!(
        p.run(&e(&["other"]), &t).await,
        ProbeResult::Error(_)
    ));
    assert_eq!(
        rt.calls.lock()[1],
        vec!["fail".to_string(), "x".to_string()]
    );
}

async fn next_result(rx: &mut mpsc::Receiver<ProbeMessage>) -> (ProbeKind, bool) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("a probe result in time")
            .expect("channel open");
        if let ProbeMessage::Result { kind, success, .. } = msg {
            return (kind, success);
        }
    }
}

#[tokio::test]
async fn workers_thresholds_startup_gate_and_events() {
    let (port, heads, toggle) = http_server().await;
    let mut c = container();
    c.ports.as_mut().unwrap()[0].container_port = i32::from(port);
    c.startup_probe = Some(probe(
        json!({"httpGet": {"path": "/toggle", "port": "http"},
        "periodSeconds": 1, "failureThreshold": 30}),
    ));
    c.readiness_probe = Some(probe(
        json!({"httpGet": {"path": "/toggle", "port": "http"},
        "periodSeconds": 1, "successThreshold": 2, "failureThreshold": 1}),
    ));
    c.liveness_probe = Some(probe(
        json!({"httpGet": {"path": "/toggle", "port": "http"},
        "periodSeconds": 1, "failureThreshold": 2, "terminationGracePeriodSeconds": 5}),
    ));
    // Failing at first: the startup probe holds the others back.
    toggle.store(503, Ordering::SeqCst);
    let t = ProbeTarget {
        container_id: "c1".into(),
        pod_ip: Some("127.0.0.1".into()),
        container: c,
    };
    let (tx, mut rx) = mpsc::channel(64);
    let probes = ContainerProbes::start(prober(), t, Instant::now(), tx);
    // The startup probe's failures are events, not results (threshold 30).
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let ProbeMessage::Event {
        reason, message, ..
    } = first
    else {
        panic!("unexpected {first:?}");
    };
    let ev = (reason, message);
    assert_eq!(
        ev,
        (
            "Unhealthy",
            "Startup probe failed: HTTP probe failed with statuscode: 503".into()
        )
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = heads.lock().len();
    assert!(before >= 2);
    toggle.store(200, Ordering::SeqCst);
    assert_eq!(next_result(&mut rx).await, (ProbeKind::Startup, true));
    // Then readiness after two successes; liveness reports nothing while healthy.
    assert_eq!(next_result(&mut rx).await, (ProbeKind::Readiness, true));
    // Failing again: readiness drops at once (threshold 1), liveness after two.
    toggle.store(503, Ordering::SeqCst);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(next_result(&mut rx).await);
    }
    seen.sort_by_key(|(k, _)| *k as u8);
    assert_eq!(
        seen,
        vec![(ProbeKind::Liveness, false), (ProbeKind::Readiness, false)]
    );
    drop(probes);
}
