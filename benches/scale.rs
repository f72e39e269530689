//! Scheduling and control-plane scale with simulated nodes, against the
//! release `rk3s server`.
//!
//! 1. Throughput: `--simulate-nodes RK3S_SCALE_DEPLOY_NODES` (100), one
//!    Deployment of RK3S_SCALE_DEPLOY_REPLICAS (3,000) replicas; time from
//!    the create until every pod is Running, as pods per second (end to end:
//!    deployment and ReplicaSet controllers, scheduler, simulated kubelets).
//!    Target: 500 pods/s. RK3S_SCALE_DIRECT=1 creates the pods directly
//!    through 32 concurrent clients instead (scheduler and kubelets only).
//! 2. Density: `--simulate-nodes RK3S_SCALE_NODES` with RK3S_SCALE_PODS pods
//!    in Deployments of 3,000 (one namespace each), then churn (a fifth more
//!    bare pods created, run and deleted). Throughout, a prober GETs
//!    one pod and LISTs one namespace's pods; prints their p50/p99/max and
//!    the server's RSS (peak and at the end). Targets (upstream's SLOs and
//!    the issue): get p99 <= 1 s, namespace list p99 <= 5 s, RSS <= 1 GB.
//!    The defaults (300 nodes, 9,000 pods) finish in a few minutes on two
//!    cores; RK3S_SCALE_NODES=1000 RK3S_SCALE_PODS=30000 is the full run.
//!
//! `cargo bench --bench scale`; RK3S_SCALE_SKIP_DENSITY=1 or
//! RK3S_SCALE_SKIP_THROUGHPUT=1 runs one part only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

const TARGET_PODS_PER_S: f64 = 500.0;
const TARGET_GET_P99_MS: f64 = 1000.0;
const TARGET_LIST_P99_MS: f64 = 5000.0;
const TARGET_RSS_MB: f64 = 1024.0;
const PODS_PER_DEPLOYMENT: usize = 3000;
const DEADLINE: Duration = Duration::from_secs(900);

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn env_flag(key: &str) -> bool {
    std::env::var(key).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut failed = false;
    if !env_flag("RK3S_SCALE_SKIP_THROUGHPUT") {
        let nodes = env_usize("RK3S_SCALE_DEPLOY_NODES", 100);
        let replicas = env_usize("RK3S_SCALE_DEPLOY_REPLICAS", 3000);
        let direct = env_flag("RK3S_SCALE_DIRECT");
        failed |= rt.block_on(throughput(nodes, replicas, direct));
    }
    if !env_flag("RK3S_SCALE_SKIP_DENSITY") {
        let nodes = env_usize("RK3S_SCALE_NODES", 300);
        let pods = env_usize("RK3S_SCALE_PODS", 9000);
        failed |= rt.block_on(density(nodes, pods));
    }
    if failed {
        std::process::exit(1);
    }
}

fn start_server(nodes: usize) -> common::Server {
    common::Server::builder()
        .arg("--simulate-nodes")
        .arg(nodes.to_string())
        // Room for the pods whatever their spread.
        .arg("--simulate-node-pods")
        .arg("250")
        .arg("--simulate-node-cpu")
        .arg("64")
        .arg("--simulate-node-memory")
        .arg("256Gi")
        .start()
}

/// (current RSS, peak RSS) of a process in MB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn wait_nodes_ready(client: &kube::Client, nodes: usize) -> Result<Duration, String> {
    let started = Instant::now();
    let api: Api<Node> = Api::all(client.clone());
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= nodes {
            return Ok(started.elapsed());
        }
        if started.elapsed() > DEADLINE {
            return Err(format!("only {ready}/{nodes} nodes Ready"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A pod's progress: created, bound to a node, Running.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Created,
    Bound,
    Running,
}

/// Counts Running pods (not being deleted) per namespace from a watch.
#[derive(Clone, Default)]
struct RunningCounter {
    running: Arc<parking_lot::Mutex<HashMap<String, Stage>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl RunningCounter {
    fn start(client: kube::Client) -> RunningCounter {
        let c = RunningCounter::default();
        let me = c.clone();
        tokio::spawn(async move {
            let api: Api<Pod> = Api::all(client);
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            // A relist (after a watch expired) replaces everything.
            let mut relist: Option<HashMap<String, Stage>> = None;
            while let Some(ev) = stream.next().await {
                let key = |p: &Pod| {
                    format!(
                        "{}/{}",
                        p.metadata.namespace.as_deref().unwrap_or(""),
                        p.metadata.name.as_deref().unwrap_or("")
                    )
                };
                match ev {
                    Ok(watcher::Event::Init) => relist = Some(HashMap::new()),
                    Ok(watcher::Event::InitDone) => {
                        if let Some(fresh) = relist.take() {
                            *me.running.lock() = fresh;
                        }
                    }
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => {
                        let running = p.status.as_ref().and_then(|s| s.phase.as_deref())
                            == Some("Running")
                            && p.metadata.deletion_timestamp.is_none();
                        let bound = p
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_some_and(|n| !n.is_empty());
                        let stage = if running {
                            Stage::Running
                        } else if bound {
                            Stage::Bound
                        } else {
                            Stage::Created
                        };
                        match relist.as_mut() {
                            Some(fresh) => {
                                fresh.insert(key(&p), stage);
                            }
                            None => {
                                me.running.lock().insert(key(&p), stage);
                            }
                        }
                    }
                    Ok(watcher::Event::Delete(p)) => {
                        me.running.lock().remove(&key(&p));
                    }
                    // Transient (and endless once the server is gone).
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
                me.changed.notify_waiters();
            }
        });
        c
    }

    /// Running pods whose namespace starts with `prefix`.
    fn count(&self, prefix: &str) -> usize {
        self.running
            .lock()
            .iter()
            .filter(|(k, r)| **r == Stage::Running && k.starts_with(prefix))
            .count()
    }

    /// (created, bound, running) pods whose key starts with `prefix`.
    fn stages(&self, prefix: &str) -> (usize, usize, usize) {
        let m = self.running.lock();
        let mut out = (0, 0, 0);
        for (_, st) in m.iter().filter(|(k, _)| k.starts_with(prefix)) {
            out.0 += 1;
            if *st != Stage::Created {
                out.1 += 1;
            }
            if *st == Stage::Running {
                out.2 += 1;
            }
        }
        out
    }

    /// Sample the stages every second until `stop`, for a timeline.
    fn timeline(
        &self,
        prefix: &str,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<Vec<(usize, usize, usize)>> {
        let me = self.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut out = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                out.push(me.stages(&prefix));
            }
            out
        })
    }

    async fn wait_for(
        &self,
        prefix: &str,
        want: usize,
        deadline: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            let n = self.count(prefix);
            if n >= want {
                return Ok(started.elapsed());
            }
            if started.elapsed() > deadline {
                return Err(format!("only {n}/{want} pods Running after {deadline:?}"));
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), self.changed.notified()).await;
        }
    }
}

fn deployment(name: &str, ns: &str, replicas: usize) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            }
        }
    }))
    .expect("deployment")
}

async fn create_namespace(client: &kube::Client, name: &str) -> Result<(), String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).map_err(|e| e.to_string())?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

async fn throughput(nodes: usize, replicas: usize, direct: bool) -> bool {
    let server = start_server(nodes);
    let client = server.client().await;
    let boot = match wait_nodes_ready(&client, nodes).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("nodes: {e}");
            return true;
        }
    };
    let ns = "scale-throughput";
    if let Err(e) = create_namespace(&client, ns).await {
        eprintln!("namespace: {e}");
        return true;
    }
    let counter = RunningCounter::start(client.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let timeline = counter.timeline(&format!("{ns}/"), stop.clone());
    let created = if direct {
        create_pods_directly(&server, ns, replicas).await
    } else {
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        api.create(&PostParams::default(), &deployment("web", ns, replicas))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    if let Err(e) = created {
        eprintln!("create: {e}");
        return true;
    }
    let result = counter
        .wait_for(&format!("{ns}/"), replicas, DEADLINE)
        .await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let timeline = timeline.await.unwrap_or_default();
    let (rss, peak) = rss_mb(server.pid());
    println!();
    println!(
        "rk3s scheduling throughput: {nodes} simulated nodes, {} of {replicas} replicas, release build",
        if direct {
            "32 concurrent clients creating pods"
        } else {
            "one Deployment"
        }
    );
    println!(
        "  nodes registered and Ready in {:.2} s",
        boot.as_secs_f64()
    );
    match &result {
        Ok(_) => {
            let rate = replicas as f64 / elapsed.as_secs_f64();
            println!(
                "  all {replicas} pods Running {:.2} s after the create: {rate:.0} pods/s",
                elapsed.as_secs_f64()
            );
            println!(
                "  target {TARGET_PODS_PER_S:.0} pods/s: ratio {:.2} ({})",
                rate / TARGET_PODS_PER_S,
                if rate >= TARGET_PODS_PER_S {
                    "met"
                } else {
                    "MISSED"
                }
            );
        }
        Err(e) => println!("  FAILED: {e}"),
    }
    println!("  server RSS {rss:.0} MB (peak {peak:.0} MB)");
    let steps: Vec<String> = timeline
        .iter()
        .map(|(c, b, r)| format!("{c}/{b}/{r}"))
        .collect();
    println!(
        "  pods created/bound/Running, each second: {}",
        steps.join(" ")
    );
    result.is_err()
}

async fn create_pods_directly(
    server: &common::Server,
    ns: &str,
    count: usize,
) -> Result<(), String> {
    const CLIENTS: usize = 32;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = server.client().await;
        let ns = ns.to_string();
        tasks.push(tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let mut i = c;
            while i < count {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("pod-{i}"), "labels": {"app": "direct"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
                }))
                .map_err(|e| e.to_string())?;
                api.create(&PostParams::default(), &pod)
                    .await
                    .map_err(|e| e.to_string())?;
                i += CLIENTS;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Create (or delete) `count` bare pods `churn-N` in each namespace,
/// spread over the clients.
async fn churn_pods(
    clients: &[kube::Client],
    groups: usize,
    count: usize,
    create: bool,
) -> Result<(), String> {
    let jobs: Vec<(usize, usize)> = (0..groups)
        .flat_map(|g| (0..count).map(move |i| (g, i)))
        .collect();
    let per_client = jobs.len().div_ceil(clients.len().max(1));
    let mut tasks = Vec::new();
    for (c, chunk) in jobs.chunks(per_client.max(1)).enumerate() {
        let client = clients[c % clients.len()].clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for (g, i) in chunk {
                let api: Api<Pod> = Api::namespaced(client.clone(), &format!("scale-{g}"));
                let name = format!("churn-{i}");
                let res = if create {
                    let pod: Pod = serde_json::from_value(json!({
                        "metadata": {"name": name},
                        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
                    }))
                    .map_err(|e| e.to_string())?;
                    api.create(&PostParams::default(), &pod).await.map(|_| ())
                } else {
                    api.delete(&name, &Default::default()).await.map(|_| ())
                };
                res.map_err(|e| format!("churn {name}: {e}"))?;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

#[derive(Default)]
struct Latencies {
    get: Vec<Duration>,
    list: Vec<Duration>,
    errors: usize,
}

fn percentiles(v: &[Duration]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    (at(0.50), at(0.99), ms[ms.len() - 1])
}

/// GET one pod and LIST one namespace's pods, back to back, until stopped.
/// The prober has a thread and runtime of its own, so what it measures is
/// the server's answer, not the wait for this process's load generators
/// (32 churn clients and a watch over every pod share the main runtime).
fn start_prober(
    kubeconfig: std::path::PathBuf,
    ns: String,
    pod: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Latencies> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("prober runtime");
        rt.block_on(async move {
            let mut lat = Latencies::default();
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
            let cfg = kube::Config::from_custom_kubeconfig(
                kc,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .expect("kube config");
            let client = kube::Client::try_from(cfg).expect("kube client");
            let api: Api<Pod> = Api::namespaced(client, &ns);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match api.get(&pod).await {
                    Ok(_) => lat.get.push(t.elapsed()),
                    Err(_) => lat.errors += 1,
                }
                let t = Instant::now();
                match api.list(&ListParams::default()).await {
                    Ok(_) => lat.list.push(t.elapsed()),
                    Err(_) => lat.errors += 1,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            lat
        })
    })
}

async fn density(nodes: usize, pods: usize) -> bool {
    let server = start_server(nodes);
    let client = server.client().await;
    let boot = match wait_nodes_ready(&client, nodes).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("nodes: {e}");
            return true;
        }
    };
    let (rss_idle, _) = rss_mb(server.pid());
    let groups = pods.div_ceil(PODS_PER_DEPLOYMENT);
    let per = pods.div_ceil(groups);
    let total = per * groups;
    for g in 0..groups {
        if let Err(e) = create_namespace(&client, &format!("scale-{g}")).await {
            eprintln!("namespace: {e}");
            return true;
        }
    }
    // A sentinel pod for the GET probe.
    let sentinel: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sentinel"},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .expect("pod");
    if let Err(e) = Api::<Pod>::namespaced(client.clone(), "scale-0")
        .create(&PostParams::default(), &sentinel)
        .await
    {
        eprintln!("sentinel: {e}");
        return true;
    }
    let counter = RunningCounter::start(client.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let prober = start_prober(
        server.kubeconfig.clone(),
        "scale-0".into(),
        "sentinel".into(),
        stop.clone(),
    );

    let started = Instant::now();
    for g in 0..groups {
        let ns = format!("scale-{g}");
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = api
            .create(&PostParams::default(), &deployment("load", &ns, per))
            .await
        {
            eprintln!("deployment: {e}");
            return true;
        }
    }
    let fill = counter.wait_for("scale-", total + 1, DEADLINE).await;
    let fill_time = started.elapsed();

    // Churn: a fifth more pods per namespace, created and deleted again by
    // 32 concurrent clients (bare pods, so only the API, the scheduler and
    // the kubelets are involved).
    let churn_started = Instant::now();
    let extra = per / 5;
    let churn = async {
        let mut clients = Vec::new();
        for _ in 0..32 {
            clients.push(server.client().await);
        }
        churn_pods(&clients, groups, extra, true).await?;
        counter
            .wait_for("scale-", total + 1 + extra * groups, DEADLINE)
            .await?;
        churn_pods(&clients, groups, extra, false).await?;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let n = counter.count("scale-");
            if n == total + 1 {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("churn: {n} Running, wanted {}", total + 1));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok::<(), String>(())
    }
    .await;
    let churn_time = churn_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let lat = tokio::task::spawn_blocking(move || prober.join().unwrap_or_default())
        .await
        .unwrap_or_default();
    let (rss_end, peak) = rss_mb(server.pid());

    println!();
    println!(
        "rk3s density: {nodes} simulated nodes, {total} pods in {groups} Deployments of {per}, release build"
    );
    println!(
        "  nodes registered and Ready in {:.2} s; server RSS idle {rss_idle:.0} MB",
        boot.as_secs_f64()
    );
    let mut failed = false;
    match &fill {
        Ok(_) => println!(
            "  all pods Running in {:.1} s ({:.0} pods/s)",
            fill_time.as_secs_f64(),
            total as f64 / fill_time.as_secs_f64()
        ),
        Err(e) => {
            println!("  FAILED to fill: {e}");
            failed = true;
        }
    }
    match &churn {
        Ok(()) => println!(
            "  churn ({} more pods created, Running, then deleted) in {:.1} s",
            extra * groups,
            churn_time.as_secs_f64()
        ),
        Err(e) => {
            println!("  FAILED churn: {e}");
            failed = true;
        }
    }
    let (g50, g99, gmax) = percentiles(&lat.get);
    let (l50, l99, lmax) = percentiles(&lat.list);
    println!(
        "  {:<28} {:>8} {:>9} {:>9} {:>9}",
        "probe during fill and churn", "requests", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "  {:<28} {:>8} {g50:>9.1} {g99:>9.1} {gmax:>9.1}",
        "pod get",
        lat.get.len()
    );
    println!(
        "  {:<28} {:>8} {l50:>9.1} {l99:>9.1} {lmax:>9.1}",
        format!("namespace list ({per} pods)"),
        lat.list.len()
    );
    if lat.errors > 0 {
        println!("  probe errors: {}", lat.errors);
    }
    println!(
        "  targets: get p99 <= {TARGET_GET_P99_MS:.0} ms (ratio {:.2}), list p99 <= {TARGET_LIST_P99_MS:.0} ms (ratio {:.2})",
        g99 / TARGET_GET_P99_MS,
        l99 / TARGET_LIST_P99_MS
    );
    println!(
        "  server RSS at the end {rss_end:.0} MB, peak {peak:.0} MB; target <= {TARGET_RSS_MB:.0} MB (ratio {:.2})",
        peak / TARGET_RSS_MB
    );
    failed
}
