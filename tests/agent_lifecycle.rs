//! Pod lifecycle details of the node agent, as upstream's kubelet: sidecars
//! gate what follows them until they have started, and the agent's events
//! and writes are the kubelet's (source host, field manager).

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
        "{name}: timed out waiting for {what}: {:#}\n--- server log ---\n{}",
        p["status"],
        s.log_tail(30)
    );
    p
}

fn condition(p: &Value, t: &str) -> String {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// A sidecar whose startupProbe passes only once /shared/ready exists
/// (some seconds in) holds back the next init container and the app
/// containers until then: the init container finds the file.
const SIDECAR: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: sidecar}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: shared, emptyDir: {}}
  initContainers:
  - name: proxy
    image: rk3s-test/web:1
    restartPolicy: Always
    command: ["sh", "-c", "sleep 5; date +%s > /shared/ready; exec sleep 3600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
    startupProbe:
      exec: {command: ["test", "-f", "/shared/ready"]}
      periodSeconds: 1
      failureThreshold: 60
  - name: setup
    image: rk3s-test/web:1
    command: ["sh", "-c", "if [ -f /shared/ready ]; then echo after > /shared/setup; else echo before > /shared/setup; fi"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: app
    image: rk3s-test/web:1
    command: ["sh", "-c", "cat /shared/setup; exec sleep 3600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
"#;

/// The next init container starts only after a restartable init container
/// has started (its startupProbe succeeded), and the pod stays
/// uninitialized meanwhile.
#[test]
fn sidecar_startup_probe_gates_the_next_init_container() {
    let ns = TestNetns::create();
    let s = start(&ns);
    s.k_in(SIDECAR, &["apply", "-f", "-"]);
    // While the sidecar runs but has not started: not initialized, and
    // the next init container has not run.
    let p = wait_pod(&s, "sidecar", "the sidecar running", |p| {
        p["status"]["initContainerStatuses"][0]["state"]["running"].is_object()
    });
    if p["status"]["initContainerStatuses"][0]["started"] == false {
        assert_eq!(condition(&p, "Initialized"), "False", "{:#}", p["status"]);
        assert!(
            p["status"]["initContainerStatuses"][1]["state"]["waiting"].is_object(),
            "setup ran before the sidecar started: {:#}",
            p["status"]
        );
    }
    let p = wait_pod(&s, "sidecar", "Running", |p| {
        p["status"]["phase"] == "Running"
            && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    assert_eq!(p["status"]["initContainerStatuses"][0]["started"], true);
    assert_eq!(
        p["status"]["initContainerStatuses"][1]["state"]["terminated"]["exitCode"],
        0
    );
    let setup = s.k(&["exec", "sidecar", "-c", "app", "--", "cat", "/shared/setup"]);
    assert_eq!(
        setup.trim(),
        "after",
        "setup ran before the sidecar started"
    );
    // The app container started after the sidecar was ready, too.
    let ready_at: i64 = s
        .k(&["exec", "sidecar", "-c", "app", "--", "cat", "/shared/ready"])
        .trim()
        .parse()
        .expect("ready time");
    let app_started = p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let app_at = std::process::Command::new("date")
        .args(["-d", &app_started, "+%s"])
        .output()
        .expect("date");
    let app_at: i64 = String::from_utf8_lossy(&app_at.stdout)
        .trim()
        .parse()
        .expect("app start time");
    assert!(
        app_at >= ready_at,
        "app {app_at} before sidecar ready {ready_at}"
    );
}

/// The agent's events carry the node as their source host and reporting
/// instance, with component kubelet; its status writes are recorded under
/// the field manager `kubelet`.
#[test]
fn agent_events_and_writes_are_the_kubelets() {
    let ns = TestNetns::create();
    let s = start(&ns);
    let node = ns.name.as_str();
    s.k(&["run", "web", "--image=rk3s-test/web:1", "--restart=Never"]);
    wait_pod(&s, "web", "Running", |p| p["status"]["phase"] == "Running");
    s.wait_event("web", "Started: Started container web", WAIT);
    let events = s.k_json(&["get", "events", "-o", "json"]);
    let kubelet: Vec<&Value> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == "web" && e["source"]["component"] == "kubelet")
        .collect();
    for reason in ["Pulled", "Created", "Started"] {
        assert!(
            kubelet.iter().any(|e| e["reason"] == reason),
            "no kubelet {reason} event: {events:#}"
        );
    }
    for e in &kubelet {
        assert_eq!(e["source"]["host"], node, "{e:#}");
        assert_eq!(e["reportingComponent"], "kubelet", "{e:#}");
        assert_eq!(e["reportingInstance"], node, "{e:#}");
    }
    // `kubectl describe` shows the source as upstream's: kubelet.
    let d = s.k(&["describe", "pod", "web"]);
    assert!(d.contains("kubelet"), "{d}");

    let p = s.k_json(&["get", "pod", "web", "--show-managed-fields"]);
    let mf = p["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let status = mf
        .iter()
        .find(|m| m["subresource"] == "status")
        .unwrap_or_else(|| panic!("no status entry: {mf:#?}"));
    assert_eq!(status["manager"], "kubelet", "{mf:#?}");
    assert!(
        status["fieldsV1"]["f:status"]["f:containerStatuses"].is_object(),
        "{status:#}"
    );
    assert!(
        mf.iter()
            .filter(|m| m["subresource"] == "status")
            .all(|m| m["manager"] == "kubelet"),
        "{mf:#?}"
    );
    // The node object is the kubelet's too.
    let n = s.k_json(&["get", "node", node, "--show-managed-fields"]);
    let managers: Vec<&str> = n["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"kubelet"), "{managers:?}");
}
