//! Store write benchmark: rk3s's SQLite store against etcd 3.4, same keys,
//! value size and concurrency, in one run; plus bytes written to disk per
//! update of a 1 KiB object (SD-card wear).
//!
//! `cargo bench --bench store`. Knobs (env): RK3S_BENCH_KEYS (creates,
//! default 20000), RK3S_BENCH_CONCURRENCY (64), RK3S_BENCH_VALUE_BYTES (1024),
//! RK3S_BENCH_UPDATES (updates for the wear figure, default 20000),
//! RK3S_BENCH_ROUNDS (compactions during the updates, 5),
//! RK3S_BENCH_PAGE_SIZE (SQLite page size of the store),
//! RK3S_BENCH_ETCD=0 to skip etcd.
//!
//! etcd is driven through its v3 HTTP/JSON gateway with one keep-alive
//! connection per client, on loopback only; if it is not installed the
//! benchmark tries `apt-get install etcd-server`, and still prints our
//! figures when that fails.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rk3s::store::Store;
use rk3s::store::sqlite::{SqliteOptions, SqliteStore};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Config {
    keys: usize,
    concurrency: usize,
    value_bytes: usize,
    updates: usize,
    rounds: usize,
}

/// Throughput and latency of one run.
struct Run {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }
    fn print(&self, what: &str) {
        println!(
            "{what:<44} {:>9.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ops in {:.2} s)",
            self.per_sec(),
            self.pct(0.50).as_secs_f64() * 1e3,
            self.pct(0.99).as_secs_f64() * 1e3,
            self.ops,
            self.elapsed.as_secs_f64()
        );
    }
}

/// Runs `op(i)` for i in 0..n from `concurrency` tasks and times each call.
async fn drive<F, Fut>(n: usize, concurrency: usize, op: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let next = next.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                op(worker, i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for t in tasks {
        latencies.extend(t.await.expect("bench task"));
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Run {
        ops: n,
        elapsed,
        latencies,
    }
}

fn value(size: usize, i: usize) -> Bytes {
    let mut v = format!("{{\"n\":{i},\"pad\":\"").into_bytes();
    v.resize(size.saturating_sub(2), b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

/// write_bytes (what reached the block layer) and wchar (what was handed to
/// write(2)) of a process.
fn proc_io(pid: Option<u32>) -> (u64, u64) {
    let path = match pid {
        Some(p) => format!("/proc/{p}/io"),
        None => "/proc/self/io".to_string(),
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("write_bytes:"), field("wchar:"))
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                total += dir_bytes(&e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rk3s-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Bytes per update from the I/O counters, falling back to file growth.
fn per_update(
    write_bytes: u64,
    wchar: u64,
    file_growth: u64,
    updates: usize,
) -> (f64, &'static str) {
    let n = updates.max(1) as f64;
    if write_bytes > 0 {
        (write_bytes as f64 / n, "write_bytes")
    } else if wchar > 0 {
        (wchar as f64 / n, "wchar")
    } else {
        (file_growth as f64 / n, "file growth")
    }
}

async fn bench_rk3s(cfg: &Config) -> Run {
    let dir = scratch("rk3s");
    let path = dir.join("state.db");
    let mut opts = SqliteOptions {
        compaction_interval: None,
        ..Default::default()
    };
    if let Some(size) = std::env::var("RK3S_BENCH_PAGE_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.page_size = size;
    }
    let store = SqliteStore::open(&path, opts.clone()).expect("open store");

    let s = store.clone();
    let size = cfg.value_bytes;
    let creates = drive(cfg.keys, cfg.concurrency, move |_, i| {
        let s = s.clone();
        async move {
            s.create(&format!("/registry/bench/k{i:08}"), value(size, i))
                .await
                .expect("create");
        }
    })
    .await;
    let stats = store.stats();
    creates.print("rk3s store: create (1 KiB, FULL sync)");
    println!(
        "  group commit: {} writes in {} transactions ({:.1} per fsync)",
        stats.writes,
        stats.batches,
        stats.writes as f64 / stats.batches.max(1) as f64
    );

    // Wear: updates of existing 1 KiB objects in rounds, each followed by a
    // compaction to the revision of the previous round (as the scheduled
    // compaction does: one interval of history kept), then a last compaction
    // and the WAL checkpoint; everything is counted.
    let rounds = cfg.rounds.max(1);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    for (label, concurrency, updates) in [
        ("concurrency", cfg.concurrency, cfg.updates),
        ("one client", 1, (cfg.updates / 10).max(100)),
    ] {
        // A fresh store holding only the objects being updated.
        let dir = scratch("rk3s-wear");
        let store = SqliteStore::open(&dir.join("state.db"), opts.clone()).expect("open store");
        let hot = cfg.keys.min(1000);
        for i in 0..hot {
            store
                .create(&format!("/registry/bench/k{i:08}"), value(size, i))
                .await
                .expect("create");
        }
        let files_before = dir_bytes(&dir);
        let (wb0, wc0) = proc_io(None);
        let mut compaction_bytes = 0;
        let mut latencies = Vec::new();
        let mut elapsed = Duration::ZERO;
        let mut previous_round = store.current_revision();
        for round in 0..rounds {
            let n = updates / rounds + usize::from(round < updates % rounds);
            let s = store.clone();
            let run = drive(n, concurrency, move |_, i| {
                let s = s.clone();
                async move {
                    s.update(
                        &format!("/registry/bench/k{:08}", i % hot),
                        0,
                        value(size, i),
                    )
                    .await
                    .expect("update");
                }
            })
            .await;
            latencies.extend(run.latencies);
            elapsed += run.elapsed;
            let last = round + 1 == rounds;
            let target = if last {
                store.current_revision()
            } else {
                previous_round
            };
            previous_round = store.current_revision();
            let (before, _) = proc_io(None);
            store.compact(target).await.expect("compact");
            compaction_bytes += proc_io(None).0 - before;
        }
        let (wb1, wc1) = proc_io(None);
        latencies.sort();
        let run = Run {
            ops: updates,
            elapsed,
            latencies,
        };
        let growth = dir_bytes(&dir).saturating_sub(files_before);
        let (per, source) = per_update(wb1 - wb0, wc1 - wc0, growth, updates);
        run.print(&format!("rk3s store: update, {label} ({concurrency})"));
        println!(
            "  disk bytes per 1 KiB update ({label}, incl. {rounds} compactions + checkpoint): {per:.0} B \
             [{source}; of which during compaction {:.0} B; write(2) bytes {:.0} B]",
            compaction_bytes as f64 / updates.max(1) as f64,
            (wc1 - wc0) as f64 / updates.max(1) as f64
        );
        store.close().await;
        let db = std::fs::metadata(dir.join("state.db")).map_or(0, |m| m.len());
        println!(
            "  files after the last compaction and close: {} KiB (database {} KiB) for {hot} keys of {size} B",
            dir_bytes(&dir) / 1024,
            db / 1024
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    creates
}

/// A running etcd on loopback, killed on drop.
struct Etcd {
    bin: PathBuf,
    child: Child,
    client: SocketAddr,
    dir: PathBuf,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Option<u16> {
    TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()
        .map(|a| a.port())
}

fn find_etcd() -> Option<PathBuf> {
    let on_path = || {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("etcd"))
                .find(|c| c.is_file())
        })
    };
    if let Some(p) = on_path() {
        return Some(p);
    }
    println!("etcd not found; trying apt-get install -y etcd-server");
    let quiet = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if quiet(&["update"]) && quiet(&["install", "-y", "etcd-server"]) {
        on_path()
    } else {
        None
    }
}

fn start_etcd() -> Result<Etcd, String> {
    let bin = find_etcd().ok_or("etcd is not installed and could not be installed")?;
    let (client_port, peer_port) = match (free_port(), free_port()) {
        (Some(c), Some(p)) if c != p => (c, p),
        _ => return Err("no free loopback ports".into()),
    };
    let dir = scratch("etcd");
    let log = std::fs::File::create(dir.join("etcd.log")).map_err(|e| e.to_string())?;
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let child = Command::new(&bin)
        .arg("--name=bench")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=bench={peer_url}"))
        .arg("--log-level=error")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting etcd: {e}"))?;
    Ok(Etcd {
        bin,
        child,
        client: SocketAddr::from(([127, 0, 0, 1], client_port)),
        dir,
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn etcd_put(
    sender: &mut Sender,
    addr: SocketAddr,
    key: &str,
    value: &[u8],
) -> Result<(), String> {
    let body = format!(
        "{{\"key\":\"{}\",\"value\":\"{}\"}}",
        B64.encode(key),
        B64.encode(value)
    );
    let req = http::Request::post("/v3/kv/put")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body.to_bytes())
        ))
    }
}

/// One keep-alive connection per client, shared by index.
async fn etcd_clients(
    addr: SocketAddr,
    n: usize,
) -> Result<Arc<Vec<tokio::sync::Mutex<Sender>>>, String> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(tokio::sync::Mutex::new(connect(addr).await?));
    }
    Ok(Arc::new(v))
}

async fn wait_ready(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = async {
            let mut s = connect(addr).await?;
            etcd_put(&mut s, addr, "/bench/ready", b"1").await
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(format!("etcd not ready: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn bench_etcd(cfg: &Config) -> Result<Run, String> {
    let etcd = start_etcd()?;
    let addr = etcd.client;
    wait_ready(addr).await?;
    let version = Command::new(&etcd.bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    println!("etcd: {version} on {addr} (v3 JSON gateway)");

    let clients = etcd_clients(addr, cfg.concurrency).await?;
    let size = cfg.value_bytes;
    let c = clients.clone();
    let creates = drive(cfg.keys, cfg.concurrency, move |w, i| {
        let c = c.clone();
        async move {
            let mut s = c[w].lock().await;
            etcd_put(
                &mut s,
                addr,
                &format!("/registry/bench/k{i:08}"),
                &value(size, i),
            )
            .await
            .expect("etcd put");
        }
    })
    .await;
    creates.print("etcd: put of new keys (1 KiB)");

    let hot = cfg.keys.min(1000);
    let pid = etcd.child.id();
    let data = etcd.dir.join("data");
    let files_before = dir_bytes(&data);
    let (wb0, wc0) = proc_io(Some(pid));
    let c = clients.clone();
    let updates = drive(cfg.updates, cfg.concurrency, move |w, i| {
        let c = c.clone();
        async move {
            let mut s = c[w].lock().await;
            etcd_put(
                &mut s,
                addr,
                &format!("/registry/bench/k{:08}", i % hot),
                &value(size, i),
            )
            .await
            .expect("etcd put");
        }
    })
    .await;
    let (wb1, wc1) = proc_io(Some(pid));
    let growth = dir_bytes(&data).saturating_sub(files_before);
    let (per, source) = per_update(wb1 - wb0, wc1 - wc0, growth, cfg.updates);
    updates.print(&format!("etcd: update, concurrency ({})", cfg.concurrency));
    println!(
        "  etcd disk bytes per 1 KiB update (no compaction/defrag counted): {per:.0} B [{source}]"
    );
    drop(clients);
    drop(etcd);
    Ok(creates)
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` passes
    // nothing and should not spend a minute here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("store bench: run with `cargo bench --bench store`");
        return;
    }
    let cfg = Config {
        keys: env_usize("RK3S_BENCH_KEYS", 20_000),
        concurrency: env_usize("RK3S_BENCH_CONCURRENCY", 64).max(1),
        value_bytes: env_usize("RK3S_BENCH_VALUE_BYTES", 1024),
        updates: env_usize("RK3S_BENCH_UPDATES", 20_000),
        rounds: env_usize("RK3S_BENCH_ROUNDS", 5),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "store bench: {} keys, {} B values, {} concurrent clients, {} updates",
        cfg.keys, cfg.value_bytes, cfg.concurrency, cfg.updates
    );
    rt.block_on(async {
        let ours = bench_rk3s(&cfg).await;
        if std::env::var("RK3S_BENCH_ETCD").is_ok_and(|v| v == "0") {
            println!("etcd: skipped (RK3S_BENCH_ETCD=0)");
            return;
        }
        match bench_etcd(&cfg).await {
            Ok(theirs) => println!(
                "ratio rk3s/etcd (create throughput): {:.2}x   (p99 {:.2} ms vs {:.2} ms)",
                ours.per_sec() / theirs.per_sec(),
                ours.pct(0.99).as_secs_f64() * 1e3,
                theirs.pct(0.99).as_secs_f64() * 1e3
            ),
            Err(e) => println!("etcd unavailable: {e}; only rk3s figures above"),
        }
    });
}
