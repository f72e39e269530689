//! The node agent's memory: its share of the `rk3s server` RSS with
//! RK3S_BENCH_PODS (20) running pods, and each pod's shim. Targets
//! (issue 5): agent share <= 30 MB, shim RSS <= 3 MB.
//!
//! The agent runs inside the server process, so its share is a difference
//! of two servers holding the same pod objects:
//!   A: `rk3s server` with its agent, the pods Running (real containers);
//!   B: `rk3s server --disable agent`, the same pods created (they stay
//!      Pending: no node), i.e. the same API, store, controllers and
//!      scheduler work without the agent.
//! Each server's VmRSS is the median of 5 samples a second apart, taken
//! after RK3S_BENCH_IDLE_SECS (10) of quiet once the pods are in place.
//! Shims: VmRSS from /proc/PID/status (the target), and from smaps_rollup
//! Pss (shared pages of the rk3s binary and libc divided among the
//! processes mapping them), Anonymous and Private_Dirty.
//!
//! Both servers run in a network namespace this bench creates (a veth pair
//! is its only interface). `cargo bench --profile profiling --bench agentmem`
//! (as root).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/registry.rs"]
mod registry;
#[path = "support/agent.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};

use support::*;

const TARGET_AGENT_MB: f64 = 30.0;
const TARGET_SHIM_MB: f64 = 3.0;

/// Median VmRSS of `pid` over 5 samples, in MB.
fn server_rss_mb(pid: u32) -> f64 {
    let mut v = Vec::new();
    for i in 0..5 {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        v.push(status_kb(pid, "VmRSS") as f64 / 1024.0);
    }
    median(&v)
}

/// Create `pods` web pods and wait until `done` holds for all of them.
async fn fill(api: &Api<Pod>, pods: usize, done: impl Fn(&Pod) -> bool) {
    for i in 0..pods {
        api.create(&PostParams::default(), &web_pod(&format!("mem-{i}")))
            .await
            .expect("create pod");
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let list = api
            .list(&ListParams::default().labels("bench=agent"))
            .await
            .expect("list pods");
        if list.items.len() == pods && list.items.iter().all(&done) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pods did not settle within 180 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn main() {
    if !is_root() {
        eprintln!("agentmem bench: needs root (real containers); skipped");
        return;
    }
    let pods = env_usize("RK3S_BENCH_PODS", 20);
    let idle = Duration::from_secs(env_usize("RK3S_BENCH_IDLE_SECS", 10) as u64);
    let _ = registry::test_images();
    let ns = common::netns::TestNetns::create();
    enter(&ns);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    // B: the control plane alone, holding the same pod objects.
    let without = start_control_plane();
    rt.block_on(async {
        let api: Api<Pod> = Api::namespaced(without.client().await, "default");
        // Pending, with the scheduler's verdict written: as settled as it gets.
        fill(&api, pods, |p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "PodScheduled"))
        })
        .await;
    });
    std::thread::sleep(idle);
    let rss_without = server_rss_mb(without.pid());
    drop(without);

    // A: the server with its agent and the pods running.
    let with = start_agent(&ns);
    rt.block_on(async {
        let api: Api<Pod> = Api::namespaced(with.client().await, "default");
        fill(&api, pods, |p| phase(p) == "Running" && is_ready(p)).await;
    });
    std::thread::sleep(idle);
    let rss_with = server_rss_mb(with.pid());
    let shims = shims(&with.data_dir);
    assert_eq!(shims.len(), pods, "one shim per pod");
    let col = |f: &dyn Fn(u32) -> u64, pid_of: &dyn Fn(&(u32, u32)) -> u32| -> Vec<f64> {
        shims.iter().map(|s| f(pid_of(s)) as f64 / 1024.0).collect()
    };
    let shim = |s: &(u32, u32)| s.0;
    let pause = |s: &(u32, u32)| s.1;
    let shim_rss = col(&|p| status_kb(p, "VmRSS"), &shim);
    let shim_pss = col(&|p| smaps_kb(p, "Pss"), &shim);
    let shim_anon = col(&|p| smaps_kb(p, "Anonymous"), &shim);
    let shim_dirty = col(&|p| smaps_kb(p, "Private_Dirty"), &shim);
    let pause_rss = col(&|p| status_kb(p, "VmRSS"), &pause);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    drop(with);
    drop(rt);
    drop(ns);

    let share = rss_with - rss_without;
    println!("rk3s node agent memory, {pods} running pods of {IMAGE}");
    println!("  server RSS with the agent and {pods} running pods: {rss_with:.1} MB");
    println!(
        "  server RSS with --disable agent and the same {pods} pod objects: {rss_without:.1} MB"
    );
    println!(
        "  agent share: {share:.1} MB (target <= {TARGET_AGENT_MB} MB) {}",
        verdict(share, TARGET_AGENT_MB)
    );
    let rss = median(&shim_rss);
    println!(
        "  shim VmRSS: median {rss:.2} MB, max {:.2} MB (target <= {TARGET_SHIM_MB} MB) {}",
        max(&shim_rss),
        verdict(max(&shim_rss), TARGET_SHIM_MB)
    );
    println!(
        "  shim Pss {:.2} MB, anonymous {:.2} MB, private dirty {:.2} MB (medians); pause VmRSS {:.2} MB",
        median(&shim_pss),
        median(&shim_anon),
        median(&shim_dirty),
        median(&pause_rss),
    );
}
