//! What the node-agent benchmarks (`podstart`, `agentmem`) share: a real
//! `rk3s server` with its agent inside a network namespace the bench makes
//! (a veth pair is its only interface, so no packet leaves the machine),
//! the test web image imported, pods of it created through the API, and
//! memory figures from /proc.
//!
//! The bench process itself joins that namespace before it starts any
//! thread, so its API clients reach the server on the namespace's loopback
//! and every child it spawns (the server, the shims, `rk3s killall`)
//! starts there too.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

use crate::common::{Server, netns::TestNetns};
use crate::registry;

/// The image every bench pod runs (imported, so never pulled).
pub const IMAGE: &str = "rk3s-test/web:1";

/// Whether we may run: real containers need root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Move the calling thread into `ns`. Call it before any other thread
/// exists: threads and children inherit the namespace of their creator.
pub fn enter(ns: &TestNetns) {
    let f = std::fs::File::open(&ns.path).expect("open the bench's netns");
    // SAFETY: setns on our own thread with a namespace fd we hold.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns into {}: {}",
        ns.name,
        std::io::Error::last_os_error()
    );
}

/// A server with its node agent, in `ns`, with the web image imported.
pub fn start_agent(ns: &TestNetns) -> Server {
    let s = Server::builder().netns(ns).start();
    import(&s);
    s
}

/// A control plane only (`--disable agent`), in the namespace we are in.
pub fn start_control_plane() -> Server {
    Server::builder().start()
}

/// `rk3s image import` of the web image into the server's store.
pub fn import(s: &Server) {
    registry::import(&s.data_dir, "web_1");
}

/// A pod of the web image (a shell loop answering HTTP on :8080), with a
/// short grace period so the bench's deletions are quick.
pub fn web_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "agent"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "web",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080}],
            }],
        },
    }))
    .expect("pod manifest")
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Delete every bench pod in `api`'s namespace and wait until they are gone.
pub async fn delete_all(api: &Api<Pod>) {
    let lp = ListParams::default().labels("bench=agent");
    let _ = api.delete_collection(&DeleteParams::default(), &lp).await;
    for _ in 0..600 {
        match api.list(&lp).await {
            Ok(l) if l.items.is_empty() => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("bench pods were not deleted within 60 s");
}

/// A field of /proc/PID/status (`VmRSS`, `VmHWM`), in kB.
pub fn status_kb(pid: u32, field: &str) -> u64 {
    field_kb(&format!("/proc/{pid}/status"), field)
}

/// A field of /proc/PID/smaps_rollup (`Rss`, `Pss`, `Anonymous`, ...), in kB.
pub fn smaps_kb(pid: u32, field: &str) -> u64 {
    field_kb(&format!("/proc/{pid}/smaps_rollup"), field)
}

fn field_kb(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// (shim pid, pause pid) of every pod sandbox the agent of `data_dir` runs.
pub fn shims(data_dir: &Path) -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("agent/sandboxes")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("shim.pid")).ok()?;
            let mut it = text.split_whitespace().map(|p| p.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .collect()
}

/// The value at percentile `p` (0..=1) of sorted `v`, nearest rank.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (p * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    percentile(&s, 0.5)
}

pub fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// "OK" or "MISSED" against a target that is an upper bound.
pub fn verdict(value: f64, target: f64) -> &'static str {
    if value <= target { "OK" } else { "MISSED" }
}
