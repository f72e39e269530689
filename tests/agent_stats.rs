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

const VOLUMES: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: token}
stringData: {token: s3cret}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: disks}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: cache, emptyDir: {}}
  - {name: settings, configMap: {name: settings}}
  - {name: token, secret: {secretName: token}}
  - {name: data, persistentVolumeClaim: {claimName: data}}
  containers:
  - name: web
    image: rk3s-test/web:1
    volumeMounts:
    - {name: cache, mountPath: /cache}
    - {name: settings, mountPath: /etc/settings}
    - {name: token, mountPath: /etc/token}
    - {name: data, mountPath: /data}
"#;

/// The summary's per-pod figures beyond CPU and memory, in the kubelet's
/// shape: eth0's counters (traffic to the pod shows), each volume's usage
/// with the claim named for a PVC, the container's writable layer and logs,
/// the pod's ephemeral storage; and the node's network and rlimit.
#[test]
fn stats_summary_has_network_volumes_and_container_filesystems() {
    let ns = TestNetns::create();
    let s = Server::builder().netns(&ns).start();
    import(&s, "web_1");
    let node = ns.name.as_str();
    s.k_in(VOLUMES, &["apply", "-f", "-"]);
    let mut p = Value::Null;
    assert!(
        wait_until(WAIT, || {
            p = s.k_json(&["get", "pod", "disks"]);
            p["status"]["phase"] == "Running"
        }),
        "disks not Running: {:#}\n{}",
        p["status"],
        s.log_tail(30)
    );
    let ip = p["status"]["podIP"].as_str().expect("podIP").to_string();
    // 3 MiB into the emptyDir, 2 MiB into the PVC, 4 MiB into the
    // writable layer.
    for (file, mib) in [("/cache/blob", 3), ("/data/blob", 2), ("/tmp/blob", 4)] {
        s.k(&[
            "exec",
            "disks",
            "--",
            "dd",
            "if=/dev/zero",
            &format!("of={file}"),
            "bs=1048576",
            &format!("count={mib}"),
        ]);
    }
    // Traffic to the pod.
    for _ in 0..3 {
        ns.output(&["curl", "-s", "-m", "3", &format!("http://{ip}:8080/")]);
    }
    let mib = 1u64 << 20;
    let mut pod = Value::Null;
    let mut summary = Value::Null;
    let ok = wait_until(WAIT, || {
        let raw = s.k(&[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{node}/proxy/stats/summary"),
        ]);
        summary = serde_json::from_str(&raw).unwrap_or(Value::Null);
        pod = summary["pods"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["podRef"]["name"] == "disks"))
            .cloned()
            .unwrap_or(Value::Null);
        let vol = |n: &str| {
            pod["volume"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["name"] == n))
                .map(|v| v["usedBytes"].as_u64().unwrap_or(0))
                .unwrap_or(0)
        };
        vol("cache") >= 3 * mib
            && vol("data") >= 2 * mib
            && pod["containers"][0]["rootfs"]["usedBytes"]
                .as_u64()
                .unwrap_or(0)
                >= 4 * mib
            && pod["network"]["rxBytes"].as_u64().unwrap_or(0) > 0
    });
    assert!(ok, "summary: {pod:#}\n{}", s.log_tail(20));
    // Network: eth0 inline and listed, both directions counted.
    let net = &pod["network"];
    assert_eq!(net["name"], "eth0", "{net:#}");
    assert!(net["txBytes"].as_u64().unwrap_or(0) > 0, "{net:#}");
    assert!(
        net["rxErrors"].is_u64() && net["txErrors"].is_u64(),
        "{net:#}"
    );
    assert_eq!(net["interfaces"][0]["name"], "eth0", "{net:#}");
    assert!(net["time"].is_string());
    // Volumes: every one, with its filesystem's capacity; the claim named.
    let vols = pod["volume"].as_array().cloned().unwrap_or_default();
    for name in ["cache", "settings", "token", "data"] {
        let v = vols
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}: {vols:#?}"));
        for k in [
            "capacityBytes",
            "availableBytes",
            "inodes",
            "inodesFree",
            "inodesUsed",
        ] {
            assert!(v[k].is_u64(), "{name} {k}: {v:#}");
        }
        assert!(v["capacityBytes"].as_u64().unwrap_or(0) > 0, "{v:#}");
        assert_eq!(v["pvcRef"].is_object(), name == "data", "{v:#}");
    }
    let data = vols.iter().find(|v| v["name"] == "data").expect("data");
    assert_eq!(
        data["pvcRef"],
        serde_json::json!({"name": "data", "namespace": "default"})
    );
    // The secret is on its own tmpfs: its capacity is not the disk's.
    let token = vols.iter().find(|v| v["name"] == "token").expect("token");
    assert_ne!(
        token["capacityBytes"],
        summary["node"]["fs"]["capacityBytes"]
    );
    // The container's writable layer and logs; the pod's ephemeral
    // storage counts the layer and the emptyDir, not the claim.
    let c = &pod["containers"][0];
    assert!(
        c["rootfs"]["inodesUsed"].as_u64().unwrap_or(0) >= 1,
        "{c:#}"
    );
    assert!(c["logs"]["usedBytes"].is_u64(), "{c:#}");
    assert!(
        c["logs"]["capacityBytes"].as_u64().unwrap_or(0) > 0,
        "{c:#}"
    );
    let eph = pod["ephemeral-storage"]["usedBytes"].as_u64().unwrap_or(0);
    assert!(eph >= 7 * mib, "ephemeral {eph}: {pod:#}");
    assert!(
        eph < 9 * mib + c["logs"]["usedBytes"].as_u64().unwrap_or(0),
        "claim counted: {eph}"
    );
    // The node: its interfaces and process counts.
    let n = &summary["node"];
    assert!(
        n["network"]["interfaces"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{n:#}"
    );
    assert!(
        !n["network"]["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["name"].as_str().unwrap_or("").starts_with("veth")),
        "{n:#}"
    );
    assert!(n["rlimit"]["maxpid"].as_u64().unwrap_or(0) > 0, "{n:#}");
    assert!(n["rlimit"]["curproc"].as_u64().unwrap_or(0) > 0, "{n:#}");
}
