//! Pod start latency through the real node agent: from the client's create
//! to the watch event that shows the pod Running (and Ready), image already
//! present. Targets (issue 5): p50 <= 300 ms, p99 <= 1 s over 50 pods
//! (upstream's pod startup SLO: p99 <= 5 s).
//!
//! `rk3s server` runs with its agent inside a network namespace this bench
//! creates (nothing leaves the machine); the web test image is imported
//! with `rk3s image import`. One watch on the namespace's pods is open
//! before the first create; each pod's latency is its own create (the
//! instant before the POST) to the first watch event with phase Running
//! (and, separately, with the Ready condition True). Two ways to create:
//!
//! - sequential: create one pod, wait until it is Running, then the next;
//!   the latency of one pod start on an otherwise idle node;
//! - burst: one client creates all pods back to back (each POST awaited),
//!   then waits; each pod's latency includes queueing behind the others.
//!
//! RK3S_BENCH_PODS (50) pods per pass, RK3S_BENCH_RUNS (3) sequential
//! passes, then one burst pass (RK3S_BENCH_BURST=0 skips it); pods are
//! deleted between passes. Prints each pass and the medians of the
//! sequential passes' p50 and p99.
//!
//! `cargo bench --profile profiling --bench podstart` (as root).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/registry.rs"]
mod registry;
#[path = "support/agent.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use parking_lot::Mutex;

use support::*;

const TARGET_P50_MS: f64 = 300.0;
const TARGET_P99_MS: f64 = 1000.0;
const POD_TIMEOUT: Duration = Duration::from_secs(120);

/// When the watch first showed each pod Running and Ready.
#[derive(Default)]
struct Seen {
    running: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
}

struct Watch {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Watch {
    /// A watch from the namespace's current resourceVersion on, re-opened
    /// from the last version seen if the server ends it.
    async fn start(api: Api<Pod>) -> Watch {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let list = api
            .list_metadata(&Default::default())
            .await
            .expect("list pods");
        let mut rv = list.metadata.resource_version.unwrap_or_default();
        let (s, c) = (seen.clone(), changed.clone());
        tokio::spawn(async move {
            loop {
                let Ok(stream) = api.watch(&WatchParams::default(), &rv).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut stream = stream.boxed();
                while let Some(ev) = stream.next().await {
                    let now = Instant::now();
                    let p = match ev {
                        Ok(WatchEvent::Added(p)) | Ok(WatchEvent::Modified(p)) => p,
                        Ok(WatchEvent::Bookmark(b)) => {
                            rv = b.metadata.resource_version;
                            continue;
                        }
                        Ok(WatchEvent::Deleted(p)) => {
                            rv = p.metadata.resource_version.clone().unwrap_or(rv);
                            continue;
                        }
                        _ => continue,
                    };
                    rv = p.metadata.resource_version.clone().unwrap_or(rv);
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let mut seen = s.lock();
                    if phase(&p) == "Running" {
                        seen.running.entry(name.clone()).or_insert(now);
                    }
                    if is_ready(&p) {
                        seen.ready.entry(name).or_insert(now);
                    }
                    drop(seen);
                    c.notify_waiters();
                }
            }
        });
        Watch { seen, changed }
    }

    /// Wait until every pod in `names` was seen Running and Ready.
    async fn wait(&self, names: &[String]) {
        let deadline = Instant::now() + POD_TIMEOUT;
        loop {
            let notified = self.changed.notified();
            {
                let seen = self.seen.lock();
                if names
                    .iter()
                    .all(|n| seen.running.contains_key(n) && seen.ready.contains_key(n))
                {
                    return;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "pods not Running and Ready within {POD_TIMEOUT:?}"
            );
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), notified).await;
        }
    }
}

/// Per-pod create -> Running and create -> Ready, in ms, sorted.
struct Pass {
    running: Vec<f64>,
    ready: Vec<f64>,
    wall: Duration,
}

async fn pass(api: &Api<Pod>, watch: &Watch, tag: &str, pods: usize, burst: bool) -> Pass {
    let names: Vec<String> = (0..pods).map(|i| format!("{tag}-{i}")).collect();
    let mut created = HashMap::new();
    let t0 = Instant::now();
    for name in &names {
        let t = Instant::now();
        api.create(&PostParams::default(), &web_pod(name))
            .await
            .expect("create pod");
        created.insert(name.clone(), t);
        if !burst {
            watch.wait(std::slice::from_ref(name)).await;
        }
    }
    watch.wait(&names).await;
    let wall = t0.elapsed();
    let seen = watch.seen.lock();
    let ms = |at: &HashMap<String, Instant>| {
        let mut v: Vec<f64> = names
            .iter()
            .map(|n| (at[n] - created[n]).as_secs_f64() * 1000.0)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    Pass {
        running: ms(&seen.running),
        ready: ms(&seen.ready),
        wall,
    }
}

fn print_pass(label: &str, p: &Pass) {
    for (what, v) in [("Running", &p.running), ("Ready", &p.ready)] {
        println!(
            "  {label:<14} create->{what:<8} p50 {:7.1} ms  p99 {:7.1} ms  min {:6.1}  max {:7.1}",
            percentile(v, 0.5),
            percentile(v, 0.99),
            v[0],
            v[v.len() - 1],
        );
    }
    println!(
        "  {label:<14} {} pods Running and Ready in {:.2} s",
        p.running.len(),
        p.wall.as_secs_f64()
    );
}

fn main() {
    if !is_root() {
        eprintln!("podstart bench: needs root (real containers); skipped");
        return;
    }
    let pods = env_usize("RK3S_BENCH_PODS", 50);
    let runs = env_usize("RK3S_BENCH_RUNS", 3);
    let burst = std::env::var("RK3S_BENCH_BURST").map_or(true, |v| v != "0");
    // The images are built (python, skopeo) before we enter the namespace.
    let _ = registry::test_images();
    let ns = common::netns::TestNetns::create();
    enter(&ns);
    let server = start_agent(&ns);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let client = server.client().await;
        let api: Api<Pod> = Api::namespaced(client, "default");
        let watch = Watch::start(api.clone()).await;
        // One pod first: the node is registered, the pod network and the
        // image's layers are warm, as on a node that already runs pods.
        let _ = pass(&api, &watch, "warmup", 1, false).await;
        delete_all(&api).await;

        println!(
            "rk3s pod start latency: {pods} pods of {IMAGE} (image present), create -> watch event"
        );
        let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
        for run in 1..=runs {
            let p = pass(&api, &watch, &format!("seq{run}"), pods, false).await;
            print_pass(&format!("sequential #{run}"), &p);
            p50s.push(percentile(&p.running, 0.5));
            p99s.push(percentile(&p.running, 0.99));
            delete_all(&api).await;
        }
        if burst {
            let p = pass(&api, &watch, "burst", pods, true).await;
            print_pass("burst", &p);
            delete_all(&api).await;
        }
        let (p50, p99) = (median(&p50s), median(&p99s));
        println!(
            "sequential create->Running, median of {runs} passes: p50 {p50:.1} ms (target <= {TARGET_P50_MS} ms) {}; p99 {p99:.1} ms (target <= {TARGET_P99_MS} ms) {}",
            verdict(p50, TARGET_P50_MS),
            verdict(p99, TARGET_P99_MS),
        );
    });
    drop(rt);
    drop(server);
    drop(ns);
}
