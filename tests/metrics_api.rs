//! metrics.k8s.io/v1beta1 served in process from node usage: discovery,
//! NodeMetrics and PodMetrics as `kubectl top` and `kubectl get` read them,
//! with the simulated nodes reporting what their pods' annotations and
//! requests say.

mod common;

use std::time::Duration;

use common::{Server, squeeze, wait_until};

const WAIT: Duration = Duration::from_secs(60);

fn start() -> Server {
    let s = Server::builder()
        .arg("--simulate-nodes")
        .arg("2")
        .arg("--simulate-node-cpu")
        .arg("4")
        .arg("--simulate-node-memory")
        .arg("8Gi")
        .start();
    assert!(
        wait_until(WAIT, || common::stdout(&s.kubectl(&[
            "get",
            "nodes",
            "--no-headers"
        ]))
        .lines()
        .filter(|l| l.contains(" Ready "))
        .count()
            == 2),
        "nodes not Ready:\n{}",
        s.k(&["get", "nodes"])
    );
    s
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
  annotations: {rk3s.io/simulate-cpu: 250m, rk3s.io/simulate-memory: 64Mi}
spec:
  nodeName: sim-0
  containers: [{name: main, image: nginx}]
---
apiVersion: v1
kind: Pod
metadata:
  name: db
  labels: {app: db}
spec:
  nodeName: sim-1
  containers:
  - {name: server, image: postgres, resources: {requests: {cpu: 100m, memory: 32Mi}}}
  - {name: backup, image: busybox, resources: {requests: {cpu: 200m, memory: 16Mi}}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata:
  name: batch
  namespace: other
  annotations: {rk3s.io/simulate-cpu: "1500m"}
spec:
  nodeName: sim-1
  containers: [{name: main, image: busybox}]
"#;

/// Rows of a kubectl table, whitespace squeezed, header first.
fn rows(text: &str) -> Vec<String> {
    text.lines()
        .map(squeeze)
        .filter(|l| !l.is_empty())
        .collect()
}

fn raw(s: &Server, path: &str) -> serde_json::Value {
    common::json(&s.k(&["get", "--raw", path]))
}

fn running(s: &Server, ns: &str, name: &str) -> bool {
    s.k_json(&["get", "pod", "-n", ns, name])["status"]["phase"] == "Running"
}

#[test]
fn kubectl_top_reads_nodes_and_pods() {
    let s = start();
    // Discovery: the group is there in both formats, as kubectl top checks.
    let apis = s.k(&["get", "--raw", "/apis"]);
    assert!(apis.contains("\"metrics.k8s.io/v1beta1\""), "{apis}");
    let res = rows(&s.k(&["api-resources", "--api-group=metrics.k8s.io"]));
    assert_eq!(
        res,
        [
            "NAME SHORTNAMES APIVERSION NAMESPACED KIND",
            "nodes metrics.k8s.io/v1beta1 false NodeMetrics",
            "pods metrics.k8s.io/v1beta1 true PodMetrics",
        ]
    );

    // Idle nodes: zero usage against their allocatable.
    let top = rows(&s.k(&["top", "nodes"]));
    assert_eq!(
        top,
        [
            "NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)",
            "sim-0 0m 0% 0Mi 0%",
            "sim-1 0m 0% 0Mi 0%",
        ]
    );

    s.k_in(PODS, &["apply", "-f", "-"]);
    for (ns, name) in [("default", "web"), ("default", "db"), ("other", "batch")] {
        assert!(
            wait_until(WAIT, || running(&s, ns, name)),
            "{ns}/{name} not running"
        );
    }

    // Annotations win; otherwise each container uses its requests; 1m and
    // 4Mi for a container with neither.
    let top = rows(&s.k(&["top", "pods"]));
    assert_eq!(
        top,
        [
            "NAME CPU(cores) MEMORY(bytes)",
            "db 300m 48Mi",
            "web 250m 64Mi"
        ]
    );
    let top = rows(&s.k(&["top", "pods", "--containers"]));
    assert_eq!(
        top,
        [
            "POD NAME CPU(cores) MEMORY(bytes)",
            "db backup 200m 16Mi",
            "db server 100m 32Mi",
            "web main 250m 64Mi",
        ]
    );
    let top = rows(&s.k(&["top", "pods", "-A"]));
    assert_eq!(
        top,
        [
            "NAMESPACE NAME CPU(cores) MEMORY(bytes)",
            "default db 300m 48Mi",
            "default web 250m 64Mi",
            "other batch 1500m 4Mi",
        ]
    );
    assert_eq!(
        rows(&s.k(&["top", "pods", "-l", "app=web", "--no-headers"])),
        ["web 250m 64Mi"]
    );
    assert_eq!(
        rows(&s.k(&["top", "pod", "db", "--no-headers"])),
        ["db 300m 48Mi"]
    );

    // A node uses the sum of its pods: 1800m of 4 cores is 45 %.
    let top = rows(&s.k(&["top", "nodes"]));
    assert_eq!(
        top,
        [
            "NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)",
            "sim-0 250m 6% 64Mi 0%",
            "sim-1 1800m 45% 52Mi 0%",
        ]
    );
    assert_eq!(
        rows(&s.k(&["top", "node", "sim-1", "--no-headers"])),
        ["sim-1 1800m 45% 52Mi 0%"]
    );

    // Changing a running pod's annotations changes its usage.
    s.k(&[
        "annotate",
        "pod",
        "web",
        "rk3s.io/simulate-cpu=2",
        "--overwrite",
    ]);
    assert!(
        wait_until(WAIT, || s
            .k(&["top", "pod", "web", "--no-headers"])
            .contains("2000m")),
        "{}",
        s.k(&["top", "pod", "web"])
    );

    // An older kubectl (its own discovery path) reads the same.
    let old = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
    if std::path::Path::new(old).exists() {
        let out = common::run(
            std::process::Command::new(old)
                .env_remove("KUBECONFIG")
                .env("HOME", s.root.join("home"))
                .arg("--kubeconfig")
                .arg(&s.kubeconfig)
                .arg("--cache-dir")
                .arg(s.root.join("kube-cache-1.27"))
                .args(["top", "pods", "db", "--no-headers"]),
            None,
            Duration::from_secs(60),
        );
        assert_eq!(
            rows(&common::stdout(&out)),
            ["db 300m 48Mi"],
            "{}",
            common::stderr(&out)
        );
    }

    // Objects without metrics are 404s in metrics-server's words.
    let err = s.k_err(&["top", "pod", "nope"]);
    assert!(
        err.contains(r#"podmetrics.metrics.k8s.io "default/nope" not found"#),
        "{err}"
    );
    let err = s.k_err(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nope"]);
    assert!(err.contains("NotFound"), "{err}");
    // Read-only and unwatchable.
    let err = s.k_err(&["get", "podmetrics", "--watch", "--request-timeout=5s"]);
    assert!(
        err.contains("MethodNotAllowed") || err.contains("not allow"),
        "{err}"
    );
}

#[test]
fn metrics_objects_read_like_metrics_server() {
    let s = start();
    s.k_in(PODS, &["apply", "-f", "-"]);
    assert!(wait_until(WAIT, || running(&s, "default", "db")
        && running(&s, "other", "batch")));

    let pm = raw(
        &s,
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/db",
    );
    assert_eq!(pm["kind"], "PodMetrics");
    assert_eq!(pm["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(pm["metadata"]["namespace"], "default");
    assert_eq!(pm["metadata"]["labels"]["app"], "db");
    assert_eq!(pm["window"], "5s");
    assert!(
        pm["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{pm}"
    );
    assert_eq!(
        pm["containers"],
        serde_json::json!([
            {"name": "server", "usage": {"cpu": "100m", "memory": "32Mi"}},
            {"name": "backup", "usage": {"cpu": "200m", "memory": "16Mi"}},
        ])
    );
    let nm = raw(&s, "/apis/metrics.k8s.io/v1beta1/nodes/sim-1");
    assert_eq!(nm["kind"], "NodeMetrics");
    assert_eq!(
        nm["usage"],
        serde_json::json!({"cpu": "1800m", "memory": "52Mi"})
    );
    assert!(
        nm["metadata"]["labels"]["kubernetes.io/hostname"] == "sim-1",
        "{nm}"
    );

    // Lists select by the objects' labels and fields.
    let list = raw(
        &s,
        "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Ddb",
    );
    assert_eq!(list["kind"], "PodMetricsList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db"]);
    let list = raw(
        &s,
        "/apis/metrics.k8s.io/v1beta1/nodes?fieldSelector=metadata.name%3Dsim-0",
    );
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    // kubectl get prints metrics-server's table.
    let t = rows(&s.k(&["get", "podmetrics", "db"]));
    assert_eq!(t, ["NAME CPU MEMORY WINDOW", "db 300m 48Mi 5s"]);
    let t = rows(&s.k(&["get", "nodes.metrics.k8s.io", "sim-1"]));
    assert_eq!(t, ["NAME CPU MEMORY WINDOW", "sim-1 1800m 52Mi 5s"]);
}
