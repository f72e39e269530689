//! API throughput and latency: CLIENTS concurrent clients, each with its own
//! TLS connection (a kube::Client from the admin kubeconfig) on loopback,
//! against the release `rk3s server`. Each client works in its own namespace:
//! create OBJECTS ConfigMaps (1 KiB of data each), get each, update each (PUT
//! with the resourceVersion from the create), then list its namespace LISTS
//! times (each list also carries the namespace's kube-root-ca.crt). Prints
//! throughput and p50/p99/max latency per verb.
//!
//! Targets (issue 2, 2-core machine): >= 3,000 creates/s, p99 <= 20 ms.
//! `cargo bench --bench api`; env RK3S_BENCH_CLIENTS, RK3S_BENCH_OBJECTS,
//! RK3S_BENCH_LISTS change the sizes.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CLIENTS: usize = 64;
const OBJECTS: usize = 100;
const LISTS: usize = 10;
const TARGET_CREATES_PER_S: f64 = 3000.0;
const TARGET_P99_MS: f64 = 20.0;

#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    errors: Vec<String>,
    wall: Duration,
}

fn main() {
    let clients = env_usize("RK3S_BENCH_CLIENTS", CLIENTS);
    let objects = env_usize("RK3S_BENCH_OBJECTS", OBJECTS);
    let lists = env_usize("RK3S_BENCH_LISTS", LISTS);
    let server = common::Server::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let failed = rt.block_on(run(&server, clients, objects, lists));
    let pid = server.pid();
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .unwrap_or_default();
    println!("  server peak RSS during the run: {rss} kB");
    drop(server);
    if failed {
        std::process::exit(1);
    }
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

async fn run(server: &common::Server, clients: usize, objects: usize, lists: usize) -> bool {
    // One client (one connection pool) per simulated user.
    let mut cs = Vec::new();
    for _ in 0..clients {
        cs.push(server.client().await);
    }
    for (i, c) in cs.iter().enumerate() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("bench-{i}")}});
        let (st, body) = common::send(
            c,
            "POST",
            "/api/v1/namespaces",
            Some(ns.to_string().into_bytes()),
        )
        .await
        .expect("create namespace");
        assert_eq!(
            st,
            201,
            "create namespace: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // Warm up each connection (TLS handshake, pools) outside the measurements.
    for c in &cs {
        let _ = common::send(c, "GET", "/api/v1/namespaces/default", None).await;
    }
    let payload = "x".repeat(1024);
    let rvs: Arc<parking_lot::Mutex<Vec<Vec<String>>>> = Arc::new(parking_lot::Mutex::new(vec![
            vec![String::new(); objects];
            clients
        ]));

    let create = phase(&cs, objects, {
        let rvs = rvs.clone();
        let payload = payload.clone();
        move |c, i, j| {
            let rvs = rvs.clone();
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{j}"), "namespace": format!("bench-{i}")}, "data": {"payload": payload}});
            async move {
                let (st, b) = common::send(&c, "POST", &format!("/api/v1/namespaces/bench-{i}/configmaps"), Some(body.to_string().into_bytes())).await?;
                if st != 201 {
                    return Err(format!("create: HTTP {st}: {}", common::clip(&String::from_utf8_lossy(&b))));
                }
                rvs.lock()[i][j] = resource_version(&b);
                Ok(())
            }
        }
    })
    .await;
    let get = phase(&cs, objects, |c, i, j| async move {
        let (st, b) = common::send(
            &c,
            "GET",
            &format!("/api/v1/namespaces/bench-{i}/configmaps/cm-{j}"),
            None,
        )
        .await?;
        if st != 200 {
            return Err(format!(
                "get: HTTP {st}: {}",
                common::clip(&String::from_utf8_lossy(&b))
            ));
        }
        Ok(())
    })
    .await;
    let update = phase(&cs, objects, {
        let rvs = rvs.clone();
        move |c, i, j| {
            let rv = rvs.lock()[i][j].clone();
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{j}"), "namespace": format!("bench-{i}"), "resourceVersion": rv},
                "data": {"payload": "y".repeat(1024)}});
            async move {
                let (st, b) = common::send(&c, "PUT", &format!("/api/v1/namespaces/bench-{i}/configmaps/cm-{j}"), Some(body.to_string().into_bytes())).await?;
                if st != 200 {
                    return Err(format!("update: HTTP {st}: {}", common::clip(&String::from_utf8_lossy(&b))));
                }
                Ok(())
            }
        }
    })
    .await;
    let list = phase(&cs, lists, move |c, i, _| async move {
        let (st, b) = common::send(
            &c,
            "GET",
            &format!("/api/v1/namespaces/bench-{i}/configmaps"),
            None,
        )
        .await?;
        if st != 200 {
            return Err(format!(
                "list: HTTP {st}: {}",
                common::clip(&String::from_utf8_lossy(&b))
            ));
        }
        // Our ConfigMaps (the namespace also holds kube-root-ca.crt).
        let items = serde_json::from_slice::<Value>(&b)
            .ok()
            .and_then(|v| {
                v["items"].as_array().map(|items| {
                    items
                        .iter()
                        .filter(|i| {
                            i["metadata"]["name"]
                                .as_str()
                                .is_some_and(|n| n.starts_with("cm-"))
                        })
                        .count()
                })
            })
            .unwrap_or(0);
        if items != objects {
            return Err(format!("list: {items} of our items, wanted {objects}"));
        }
        Ok(())
    })
    .await;

    println!();
    println!(
        "rk3s API, {clients} concurrent clients over TLS on loopback, ConfigMaps with 1 KiB of data"
    );
    println!(
        "  {:<8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "verb", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    let mut failed = false;
    for (name, p, unit_items) in [
        ("create", &create, 1),
        ("get", &get, 1),
        ("update", &update, 1),
        ("list", &list, objects),
    ] {
        let (p50, p99, max) = percentiles(&p.latencies);
        let rate = p.latencies.len() as f64 / p.wall.as_secs_f64();
        println!(
            "  {name:<8} {:>8} {rate:>10.0} {p50:>9.2} {p99:>9.2} {max:>9.2} {:>7}{}",
            p.latencies.len(),
            p.errors.len(),
            if unit_items > 1 {
                format!("   ({:.0} objects/s)", rate * unit_items as f64)
            } else {
                String::new()
            }
        );
        for e in p.errors.iter().take(5) {
            println!("    error: {e}");
        }
        failed |= !p.errors.is_empty();
    }
    let creates = create.latencies.len() as f64 / create.wall.as_secs_f64();
    let worst_p99 = [&create, &get, &update]
        .iter()
        .map(|p| percentiles(&p.latencies).1)
        .fold(0.0, f64::max);
    println!(
        "  creates/s {creates:.0} vs target {TARGET_CREATES_PER_S:.0}: {} ({:.2}x)",
        if creates >= TARGET_CREATES_PER_S {
            "meets"
        } else {
            "MISSES"
        },
        creates / TARGET_CREATES_PER_S
    );
    println!(
        "  worst p99 of create/get/update {worst_p99:.2} ms vs target {TARGET_P99_MS:.0} ms: {}",
        if worst_p99 <= TARGET_P99_MS {
            "meets"
        } else {
            "MISSES"
        }
    );
    failed
}

/// Run `op(client, client_index, item)` for every client concurrently, each
/// client doing its `items` sequentially; collect per-request latencies.
async fn phase<F, Fut>(cs: &[kube::Client], items: usize, op: F) -> Phase
where
    F: Fn(kube::Client, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, c) in cs.iter().enumerate() {
        let c = c.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(items);
            let mut errs = Vec::new();
            for j in 0..items {
                let t = Instant::now();
                match op(c.clone(), i, j).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => errs.push(e),
                }
            }
            (lat, errs)
        }));
    }
    let mut p = Phase::default();
    for t in tasks {
        match t.await {
            Ok((lat, errs)) => {
                p.latencies.extend(lat);
                p.errors.extend(errs);
            }
            Err(e) => p.errors.push(format!("client task: {e}")),
        }
    }
    p.wall = start.elapsed();
    p
}

fn percentiles(lat: &[Duration]) -> (f64, f64, f64) {
    if lat.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut v: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.50), at(0.99), v[v.len() - 1])
}

fn resource_version(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["metadata"]["resourceVersion"].as_str().map(String::from))
        .unwrap_or_default()
}
