//! `rk3s server --simulate-nodes N`: the Node objects, their leases and
//! status as kubectl shows them, and pods run by the fake kubelet: Running
//! with an IP from the node's podCIDR, completing or failing as their
//! restartPolicy and `rk3s.io/simulate-exit-code` say, restarting on
//! failure, finished when deleted; a node whose kubelet is stopped.

mod common;

use std::time::Duration;

use common::{Server, squeeze, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn start(nodes: u32, extra: &[&str]) -> Server {
    let mut b = Server::builder()
        .arg("--simulate-nodes")
        .arg(nodes.to_string());
    for a in extra {
        b = b.arg(*a);
    }
    let s = b.start();
    assert!(
        wait_until(WAIT, || common::stdout(&s.kubectl(&[
            "get",
            "nodes",
            "--no-headers"
        ]))
        .lines()
        .filter(|l| l.contains(" Ready "))
        .count()
            == nodes as usize),
        "nodes not Ready:\n{}",
        s.k(&["get", "nodes"])
    );
    s
}

#[track_caller]
fn wait_phase(s: &Server, name: &str, phase: &str) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = s.k_json(&["get", "pod", name]);
        last["status"]["phase"] == phase
    });
    assert!(ok, "pod {name} never reached {phase}: {}", last["status"]);
    last
}

fn pod_yaml(name: &str, restart: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n  restartPolicy: {restart}\n  containers: [{{name: main, image: busybox}}]\n"
    )
}

#[test]
fn nodes_look_like_kubelets_registered_them() {
    let s = start(
        3,
        &[
            "--simulate-node-cpu",
            "3500m",
            "--simulate-node-memory",
            "8Gi",
            "--simulate-node-pods",
            "50",
        ],
    );
    let wide = s.k(&["get", "nodes", "-o", "wide", "--no-headers"]);
    let rows: Vec<String> = wide.lines().map(squeeze).collect();
    assert_eq!(rows.len(), 3, "{wide}");
    for (i, row) in rows.iter().enumerate() {
        let f: Vec<&str> = row.split(' ').collect();
        assert_eq!(f[0], format!("sim-{i}"));
        assert_eq!(f[1], "Ready");
        assert_eq!(f[4], "v1.33.1", "{row}");
        assert_eq!(f[5], format!("10.255.0.{}", i + 1), "{row}");
        assert!(row.contains("rk3s-sim://"), "{row}");
    }
    let n = s.k_json(&["get", "node", "sim-1"]);
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "sim-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["node.kubernetes.io/instance-type"], "rk3s-sim");
    assert!(labels["kubernetes.io/arch"].is_string());
    assert_eq!(n["spec"]["podCIDR"], "10.42.2.0/24");
    assert_eq!(n["status"]["capacity"]["cpu"], "3500m");
    assert_eq!(n["status"]["allocatable"]["memory"], "8Gi");
    assert_eq!(n["status"]["capacity"]["pods"], "50");
    assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1.33.1");
    assert_eq!(n["status"]["nodeInfo"]["operatingSystem"], "linux");
    let ready = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("KubeletReady"))
    );
    let lease = s.k_json(&["get", "lease", "sim-1", "-n", "kube-node-lease"]);
    assert_eq!(lease["spec"]["holderIdentity"], "sim-1");
    assert!(lease["spec"]["renewTime"].is_string());
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    let desc = s.k(&["describe", "node", "sim-1"]);
    assert!(desc.contains("kubelet is posting ready status"), "{desc}");
}

#[test]
fn pods_run_complete_fail_and_restart() {
    let s = start(2, &[]);

    // restartPolicy Always: Running and Ready with an IP from the node's CIDR.
    s.k_in(&pod_yaml("web", "Always", ""), &["apply", "-f", "-"]);
    let p = wait_phase(&s, "web", "Running");
    let node = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    let n = s.k_json(&["get", "node", &node]);
    let cidr = n["spec"]["podCIDR"].as_str().unwrap_or("").to_string();
    let ip = p["status"]["podIP"].as_str().unwrap_or("");
    assert!(
        ip.starts_with(cidr.trim_end_matches("0/24")),
        "{ip} not in {cidr}"
    );
    assert_eq!(p["status"]["podIPs"][0]["ip"].as_str(), Some(ip));
    assert_eq!(
        p["status"]["hostIP"],
        n["status"]["addresses"][0]["address"]
    );
    assert!(p["status"]["startTime"].is_string());
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(
        (cs["ready"].as_bool(), cs["started"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    assert!(
        cs["containerID"]
            .as_str()
            .unwrap_or("")
            .starts_with("rk3s-sim://")
    );
    for t in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodReadyToStartContainers",
    ] {
        let c = p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .cloned();
        assert_eq!(
            c.map(|c| c["status"].clone()),
            Some(Value::from("True")),
            "{t}: {}",
            p["status"]
        );
    }
    let row = squeeze(&s.k(&["get", "pod", "web", "--no-headers"]));
    assert!(row.starts_with("web 1/1 Running 0"), "{row}");

    // Two pods on one node never share an IP.
    s.k_in(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: twin}\nspec:\n  nodeName: NODE\n  containers: [{name: c, image: busybox}]\n"
            .replace("NODE", &node)
            .as_str(),
        &["apply", "-f", "-"],
    );
    let twin = wait_phase(&s, "twin", "Running");
    assert_ne!(twin["status"]["podIP"].as_str(), Some(ip));

    // restartPolicy Never, no annotation: Succeeded, reason Completed.
    s.k_in(&pod_yaml("done", "Never", ""), &["apply", "-f", "-"]);
    let p = wait_phase(&s, "done", "Succeeded");
    let term = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (term["exitCode"].as_i64(), term["reason"].as_str()),
        (Some(0), Some("Completed")),
        "{term}"
    );
    let row = squeeze(&s.k(&["get", "pod", "done", "--no-headers"]));
    assert!(row.starts_with("done 0/1 Completed 0"), "{row}");

    // Exit code 3 with Never: Failed, reason Error.
    s.k_in(
        &pod_yaml("bad", "Never", "rk3s.io/simulate-exit-code: \"3\""),
        &["apply", "-f", "-"],
    );
    let p = wait_phase(&s, "bad", "Failed");
    let term = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (term["exitCode"].as_i64(), term["reason"].as_str()),
        (Some(3), Some("Error")),
        "{term}"
    );
    let row = squeeze(&s.k(&["get", "pod", "bad", "--no-headers"]));
    assert!(row.starts_with("bad 0/1 Error 0"), "{row}");

    // OnFailure: restarts, counted, stays Running.
    s.k_in(
        &pod_yaml("flaky", "OnFailure", "rk3s.io/simulate-exit-code: \"1\""),
        &["apply", "-f", "-"],
    );
    let mut last = Value::Null;
    assert!(
        wait_until(WAIT, || {
            last = s.k_json(&["get", "pod", "flaky"]);
            last["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 1
        }),
        "flaky never restarted: {}",
        last["status"]
    );
    assert_eq!(last["status"]["phase"], "Running");
    assert_eq!(
        last["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        1
    );

    // Deleting a running pod finishes at once.
    s.k(&["delete", "pod", "web", "--timeout=20s"]);
    let out = s.kubectl(&["get", "pod", "web"]);
    assert!(!out.status.success(), "web still exists");
}

#[test]
fn a_stopped_kubelet_stops_heartbeating() {
    let s = start(2, &["--node-monitor-grace-period", "3s"]);
    let renew = |s: &Server| {
        s.k_json(&["get", "lease", "sim-0", "-n", "kube-node-lease"])["spec"]["renewTime"].clone()
    };
    let before = renew(&s);
    assert!(
        wait_until(WAIT, || renew(&s) != before),
        "sim-0 does not renew its lease"
    );
    s.k(&["annotate", "node", "sim-0", "rk3s.io/simulate-stopped=true"]);
    assert!(
        wait_until(WAIT, || squeeze(&s.k(&[
            "get",
            "node",
            "sim-0",
            "--no-headers"
        ]))
        .starts_with("sim-0 NotReady")),
        "{}",
        s.k(&["get", "nodes"])
    );
    let frozen = renew(&s);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(renew(&s), frozen, "a stopped node keeps renewing its lease");
    // Pods bound to it are not started while it is down.
    s.k_in(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: stuck}\nspec:\n  nodeName: sim-0\n  containers: [{name: c, image: busybox}]\n",
        &["apply", "-f", "-"],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        s.k_json(&["get", "pod", "stuck"])["status"]["phase"],
        "Pending"
    );
    // Back up: Ready again, and the pod runs.
    s.k(&["annotate", "node", "sim-0", "rk3s.io/simulate-stopped-"]);
    assert!(wait_until(WAIT, || squeeze(&s.k(&[
        "get",
        "node",
        "sim-0",
        "--no-headers"
    ]))
    .starts_with("sim-0 Ready")));
    wait_phase(&s, "stuck", "Running");
    let n = s.k_json(&["get", "node", "sim-0"]);
    let ready = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready["reason"], "KubeletReady");
}
