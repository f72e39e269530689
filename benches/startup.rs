//! Start-up and idle memory of `rk3s server` (the release binary).
//!
//! - cold start: spawn on a fresh data dir (PKI generation, new database,
//!   bootstrap objects) until `/readyz` answers 200; median of RUNS;
//! - warm start: the same on an existing data dir;
//! - idle RSS: VmRSS from /proc/PID/status after IDLE seconds with no load.
//!
//! Targets (issue 2): cold start <= 1 s, idle RSS <= 40 MB. `cargo bench --bench startup`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const IDLE: Duration = Duration::from_secs(5);
const TARGET_START_MS: f64 = 1000.0;
const TARGET_RSS_MB: f64 = 40.0;

fn main() {
    let runs = env_usize("RK3S_BENCH_RUNS", RUNS);
    let idle =
        Duration::from_secs(env_usize("RK3S_BENCH_IDLE_SECS", IDLE.as_secs() as usize) as u64);
    let tls = Arc::new(probe_tls_config());
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rk3s-bench-startup-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(base.clone());
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut rss = Vec::new();
    let mut hwm = Vec::new();
    for run in 0..runs {
        let dir = base.join(format!("run-{run}"));
        std::fs::create_dir_all(&dir).expect("create bench dir");
        let port = common::free_port();

        let (mut child, ms) = start(&dir, port, &tls);
        cold.push(ms);
        std::thread::sleep(idle);
        let (r, h) = memory(child.id());
        rss.push(r);
        hwm.push(h);
        stop(&mut child);

        let (mut child, ms) = start(&dir, port, &tls);
        warm.push(ms);
        stop(&mut child);
        eprintln!(
            "run {run}: cold {:.0} ms, warm {:.0} ms, idle RSS {r:.1} MB (peak {h:.1} MB)",
            cold[run], warm[run]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    println!();
    println!("rk3s server start-up ({runs} runs, release build)");
    report("cold start to /readyz 200", &cold, "ms", TARGET_START_MS);
    report("warm start to /readyz 200", &warm, "ms", TARGET_START_MS);
    report(
        &format!("idle RSS after {} s", idle.as_secs()),
        &rss,
        "MB",
        TARGET_RSS_MB,
    );
    report("peak RSS during start", &hwm, "MB", f64::INFINITY);
}

/// Removes the benchmark's scratch dir however main ends (a panic included).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Spawn the server and time it until /readyz says 200.
fn start(dir: &Path, port: u16, tls: &Arc<rustls::ClientConfig>) -> (Child, f64) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log");
    let log2 = log.try_clone().expect("log fd");
    let t0 = Instant::now();
    let mut child = Command::new(common::RK3S)
        .arg("server")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--bind-address",
            "127.0.0.1",
            "--https-port",
            &port.to_string(),
            "--write-kubeconfig",
            "",
            "--disable",
            "agent",
        ])
        .arg("--config")
        .arg(empty_config(dir))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .expect("spawn rk3s");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    loop {
        if readyz(addr, tls) == Some(200) {
            return (child, t0.elapsed().as_secs_f64() * 1000.0);
        }
        if let Ok(Some(st)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("rk3s exited during start-up ({st}):\n{log}");
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("rk3s not ready within 60 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn empty_config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(&p, "").expect("config");
    p
}

fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// (VmRSS, VmHWM) in MB.
fn memory(pid: u32) -> (f64, f64) {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// One HTTP/1.1 GET /readyz over TLS; the status code, or None if not up yet.
fn readyz(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> Option<u16> {
    let sock = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let name = rustls_pki_types::ServerName::try_from("localhost").ok()?;
    let conn = rustls::ClientConnection::new(tls.clone(), name).ok()?;
    let mut stream = rustls::StreamOwned::new(conn, sock);
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < 12 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&got);
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn report(what: &str, values: &[f64], unit: &str, target: f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let median = v[v.len() / 2];
    let verdict = if target.is_finite() {
        let ok = if median <= target { "meets" } else { "MISSES" };
        format!(
            "  target <= {target:.0} {unit}: {ok} ({:.2}x of target)",
            median / target
        )
    } else {
        String::new()
    };
    println!(
        "  {what:<28} median {median:>7.1} {unit}  min {:>7.1}  max {:>7.1}{verdict}",
        v[0],
        v[v.len() - 1]
    );
}

/// The probe only asks "are you up"; it trusts any certificate.
fn probe_tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
