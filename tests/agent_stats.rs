//! Usage of real pods through the node agent: `kubectl top` (the in-process
//! metrics.k8s.io API fed by the agent's cgroup sampling) and the kubelet's
//! `/stats/summary` and `/healthz` through `nodes/NAME/proxy`.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::time::Duration;

use common::netns::TestNetns;
use common::{Server, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn import(s: &Server, name: &str) {
    registry::import(&s.data_dir, name);
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: burn}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: burn
    image: rk3s-test/web:1
    command: ["sh", "-c", "while :; do :; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: idle}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: rk3s-test/web:1
"#;

/// `kubectl top pod` rows as (name, millicores, bytes).
fn top_pods(s: &Server) -> Vec<(String, u64, String)> {
    let o = s.kubectl(&["top", "pod", "--no-headers"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let cpu = f.get(1)?.strip_suffix('m').map_or_else(
                || f.get(1)?.parse::<u64>().ok().map(|c| c * 1000),
                |m| m.parse().ok(),
            )?;
            Some((f[0].to_string(), cpu, f.get(2)?.to_string()))
        })
        .collect()
}

/// A pod that spins in a shell loop shows up busy in `kubectl top pod`
/// (from its cgroup's CPU time), an idle one does not, and `kubectl top
/// node` shows the node; the summary API says the same in the kubelet's
/// shape.
#[test]
fn kubectl_top_and_stats_summary_for_real_pods() {
    let ns = TestNetns::create();
    let s = Server::builder().netns(&ns).start();
    import(&s, "web_1");
    let node = ns.name.as_str();
    s.k_in(PODS, &["apply", "-f", "-"]);
    for p in ["burn", "idle"] {
        assert!(
            wait_until(WAIT, || s.k(&[
                "get",
                "pod",
                p,
                "-o",
                "jsonpath={.status.phase}"
            ]) == "Running"),
            "{p} not Running: {}",
            s.log_tail(30)
        );
    }

    // Rates need two samples (10 s apart); then the busy loop's CPU shows.
    let mut rows = Vec::new();
    let ok = wait_until(WAIT, || {
        rows = top_pods(&s);
        let cpu = |n: &str| rows.iter().find(|r| r.0 == n).map(|r| r.1);
        matches!((cpu("burn"), cpu("idle")), (Some(b), Some(i)) if b >= 200 && i < b)
    });
    assert!(ok, "kubectl top pod: {rows:?}\n{}", s.log_tail(30));
    let burn = rows.iter().find(|r| r.0 == "burn").expect("burn row");
    assert!(burn.2.ends_with("Mi") || burn.2.ends_with("Ki"), "{burn:?}");

    let top = s.k(&["top", "pod", "burn", "--containers", "--no-headers"]);
    let f: Vec<&str> = top.split_whitespace().collect();
    assert_eq!(f[..2], ["burn", "burn"], "{top}");

    let out = s.k(&["top", "node", "--no-headers"]);
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f.first().copied(), Some(node), "{out}");
    // NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%: the node is at least as
    // busy as its busiest pod.
    let node_milli: u64 = f[1].trim_end_matches('m').parse().expect("node cpu");
    assert!(node_milli >= 200, "{out}");
    assert!(f[2].ends_with('%') && f[4].ends_with('%'), "{out}");

    // The kubelet's summary API, through the API server's node proxy.
    let raw = s.k(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/stats/summary"),
    ]);
    let v: Value = serde_json::from_str(&raw).expect("summary is JSON");
    let n = &v["node"];
    assert_eq!(n["nodeName"], node);
    assert!(
        n["cpu"]["usageNanoCores"].as_u64().unwrap_or(0) > 0,
        "{n:#}"
    );
    assert!(n["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0) > 0);
    assert!(n["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0);
    assert!(n["memory"]["availableBytes"].as_u64().unwrap_or(0) > 0);
    assert!(n["fs"]["capacityBytes"].as_u64().unwrap_or(0) > 0);
    assert!(n["fs"]["availableBytes"].as_u64().is_some());
    assert!(
        n["runtime"]["imageFs"]["capacityBytes"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    let pods = v["pods"].as_array().expect("pods");
    let burn = pods
        .iter()
        .find(|p| p["podRef"]["name"] == "burn")
        .unwrap_or_else(|| panic!("no burn pod in {v:#}"));
    assert_eq!(burn["podRef"]["namespace"], "default");
    let uid = s.k(&["get", "pod", "burn", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(burn["podRef"]["uid"], uid.as_str());
    assert_eq!(burn["containers"][0]["name"], "burn");
    assert!(
        burn["cpu"]["usageNanoCores"].as_u64().unwrap_or(0) >= 200_000_000,
        "{burn:#}"
    );
    assert!(burn["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0);
    assert!(burn["containers"][0]["startTime"].is_string(), "{burn:#}");
    assert!(pods.iter().any(|p| p["podRef"]["name"] == "idle"));

    let health = s.k(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/healthz"),
    ]);
    assert_eq!(health, "ok");
    let err = s.k_err(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/nope")]);
    assert!(err.contains("NotFound") || err.contains("404"), "{err}");

    // A deleted pod leaves the metrics.
    s.k(&["delete", "pod", "burn", "--wait=true"]);
    assert!(
        wait_until(WAIT, || !top_pods(&s).iter().any(|r| r.0 == "burn")),
        "burn still in kubectl top"
    );
}
