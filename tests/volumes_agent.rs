//! Volumes, probes and hooks through the real node agent (the server in a
//! test network namespace, the web test image imported): what a user sees
//! with kubectl.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::time::Duration;

use common::netns::TestNetns;
use common::{Server, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn start(ns: &TestNetns) -> Server {
    let s = Server::builder().netns(ns).start();
    registry::import(&s.data_dir, "web_1");
    s
}

#[track_caller]
fn wait_pod(s: &Server, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut p = Value::Null;
    let ok = wait_until(WAIT, || {
        p = s.k_json(&["get", "pod", name]);
        f(&p)
    });
    assert!(
        ok,
        "{name}: timed out waiting for {what}: {:#}\nevents: {:#?}\n--- server log ---\n{}",
        p["status"],
        s.events(name),
        s.log_tail(30)
    );
    p
}

fn ready(p: &Value) -> String {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// A pod naming a missing ConfigMap stays ContainerCreating with upstream's
/// FailedMount event, and starts once the ConfigMap exists; the files are
/// the atomic writer's, read-only in the container, and a ConfigMap edit
/// reaches the running container.
#[test]
fn config_map_volume_missing_then_created_then_updated() {
    let ns = TestNetns::create();
    let s = start(&ns);
    s.k_in(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: rk3s-test/web:1
    command: ["sh", "-c", "sleep 3600"]
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes: [{name: cfg, configMap: {name: settings}}]
"#,
        &["apply", "-f", "-"],
    );
    s.wait_event(
        "reader",
        "FailedMount: MountVolume.SetUp failed for volume \"cfg\" : configmap \"settings\" not found",
        WAIT,
    );
    let p = s.k_json(&["get", "pod", "reader"]);
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating",
        "{:#}",
        p["status"]
    );

    s.k(&["create", "configmap", "settings", "--from-literal=mode=one"]);
    wait_pod(&s, "reader", "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(s.k(&["exec", "reader", "--", "cat", "/cfg/mode"]), "one");
    let listing = s.k(&["exec", "reader", "--", "ls", "-la", "/cfg/"]);
    assert!(listing.contains("..data -> ..20"), "{listing}");
    assert!(listing.contains("mode -> ..data/mode"), "{listing}");
    let o = s.kubectl(&["exec", "reader", "--", "sh", "-c", "echo x > /cfg/new"]);
    assert!(!o.status.success(), "configMap volumes are read-only");

    // An edit reaches the running container (within the agent's resync).
    s.k(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"mode":"two"}}"#,
    ]);
    let mut seen = String::new();
    assert!(
        wait_until(Duration::from_secs(150), || {
            // An exec that fails under load is tried again; the content is what counts.
            let o = s.kubectl(&["exec", "reader", "--", "cat", "/cfg/mode"]);
            seen = String::from_utf8_lossy(&o.stdout).trim().to_string();
            o.status.success() && seen == "two"
        }),
        "still {seen:?}"
    );
}

/// Readiness from an httpGet probe drives the Ready condition; a failing
/// liveness probe restarts the container with upstream's events; a
/// postStart hook runs before the container counts as started.
#[test]
fn probes_and_hooks_through_the_agent() {
    let ns = TestNetns::create();
    let s = start(&ns);
    s.k_in(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: rk3s-test/web:1
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
    lifecycle:
      postStart: {exec: {command: ["sh", "-c", "echo started > /tmp/hook"]}}
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes: [{name: scratch, emptyDir: {medium: Memory, sizeLimit: 8Mi}}]
---
apiVersion: v1
kind: Pod
metadata: {name: notready}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: rk3s-test/web:1
    readinessProbe: {httpGet: {path: /missing, port: 8080}, periodSeconds: 1}
    livenessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1, failureThreshold: 2}
"#,
        &["apply", "-f", "-"],
    );
    let p = wait_pod(&s, "web", "Ready", |p| ready(p) == "True");
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(
        s.k(&["exec", "web", "--", "cat", "/tmp/hook"]).trim(),
        "started"
    );
    // The memory emptyDir is a tmpfs of its sizeLimit.
    let df = s.k(&["exec", "web", "--", "df", "-k", "/scratch"]);
    assert!(df.contains("tmpfs") && df.contains("8192"), "{df}");

    s.wait_event(
        "notready",
        "Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 404",
        WAIT,
    );
    s.wait_event(
        "notready",
        "Unhealthy: Liveness probe failed: dial tcp ",
        WAIT,
    );
    let p = wait_pod(&s, "notready", "a liveness restart", |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    assert_eq!(ready(&p), "False");
}
