//! The ReplicaSet and ReplicationController controller through real
//! kubectl: pods to match spec.replicas, self-healing, release of relabelled
//! pods and adoption of matching orphans, the scale-down order, bursts
//! without overshoot, status and events.
//!
//! Pod readiness is set by hand with status patches (as a kubelet reports
//! it); the pods use a nodeSelector no node has, so nothing else runs them.

mod common;

use std::time::Duration;

use common::{Server, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn server() -> Server {
    Server::builder().arg("--simulate-nodes").arg("2").start()
}

fn rs_yaml(name: &str, replicas: i32) -> String {
    format!(
        "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
        tier: web
    spec:
      nodeSelector:
        nowhere: \"true\"
      containers:
      - name: main
        image: nginx
"
    )
}

/// Active (not terminating) pods with `selector`, sorted by name.
fn pods(s: &Server, selector: &str) -> Vec<Value> {
    let list = s.k_json(&["get", "pods", "-l", selector]);
    let mut items: Vec<Value> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    items.sort_by_key(name);
    items
}

fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap_or("").to_string()
}

fn owner(p: &Value) -> Option<String> {
    p["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)
        .and_then(|o| o["name"].as_str().map(String::from))
}

#[track_caller]
fn wait_pods(s: &Server, selector: &str, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let ok = wait_until(WAIT, || {
        last = pods(s, selector);
        last.len() == n
    });
    assert!(
        ok,
        "wanted {n} pods for {selector}, have {}:\n{}",
        last.len(),
        s.k(&["get", "pods", "--show-labels"])
    );
    last
}

#[track_caller]
fn wait_for(s: &Server, what: &str, mut f: impl FnMut() -> bool) {
    assert!(
        wait_until(WAIT, &mut f),
        "timed out waiting for {what}\n{}",
        s.k(&["get", "rs,rc,pods", "--show-labels"])
    );
}

fn set_status(s: &Server, pod: &str, phase: &str, ready: bool, secs_ago: i64) {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs_ago);
    let t = t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let status = json!({"status": {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": t}],
    }});
    s.k(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

#[test]
fn creates_heals_and_reports() {
    let s = server();
    s.k_in(&rs_yaml("fe", 3), &["apply", "-f", "-"]);
    let created = wait_pods(&s, "app=fe", 3);
    for p in &created {
        assert!(
            name(p).starts_with("fe-") && name(p).len() == "fe-".len() + 5,
            "{}",
            name(p)
        );
        assert_eq!(owner(p).as_deref(), Some("fe"));
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
            true
        );
        assert_eq!(p["metadata"]["labels"]["tier"], "web");
    }
    let ev = s.events("fe");
    for p in &created {
        assert!(
            ev.contains(&format!("SuccessfulCreate: Created pod: {}", name(p))),
            "{ev:#?}"
        );
    }

    // Status: ready and available as the pods report.
    for p in &created {
        set_status(&s, &name(p), "Running", true, 5);
    }
    wait_for(&s, "status", || {
        let st = s.k_json(&["get", "rs", "fe"])["status"].clone();
        st["readyReplicas"] == 3 && st["availableReplicas"] == 3
    });
    let rs = s.k_json(&["get", "rs", "fe"]);
    assert_eq!(rs["status"]["replicas"], 3);
    assert_eq!(rs["status"]["fullyLabeledReplicas"], 3);
    assert_eq!(
        rs["status"]["observedGeneration"],
        rs["metadata"]["generation"]
    );
    let table = s.k(&["get", "rs", "fe"]);
    let row = common::squeeze(table.lines().nth(1).unwrap_or(""));
    assert!(row.starts_with("fe 3 3 3 "), "{table}");

    // A deleted pod is replaced.
    let victim = name(&created[0]);
    s.k(&["delete", "pod", &victim, "--wait=false"]);
    wait_for(&s, "replacement", || {
        let now = pods(&s, "app=fe");
        now.len() == 3 && now.iter().all(|p| name(p) != victim)
    });

    // Scaling (kubectl scale, then spec.replicas); the new generation is observed.
    s.k(&["scale", "rs/fe", "--replicas=1"]);
    wait_pods(&s, "app=fe", 1);
    wait_for(&s, "generation 2 observed", || {
        s.k_json(&["get", "rs", "fe"])["status"]["observedGeneration"] == 2
    });
    assert!(
        s.events("fe")
            .iter()
            .filter(|e| e.starts_with("SuccessfulDelete: Deleted pod: "))
            .count()
            >= 2
    );
    s.k(&[
        "patch",
        "rs",
        "fe",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ]);
    wait_pods(&s, "app=fe", 4);
}

#[test]
fn release_and_adoption() {
    let s = server();
    s.k_in(&rs_yaml("be", 3), &["apply", "-f", "-"]);
    let before = wait_pods(&s, "app=be", 3);

    // Relabelled out of the selector: released (no owner) and replaced.
    let moved = name(&before[0]);
    s.k(&["label", "pod", &moved, "app=elsewhere", "--overwrite"]);
    wait_for(&s, "release", || {
        owner(&s.k_json(&["get", "pod", &moved])).is_none()
    });
    let after = wait_pods(&s, "app=be", 3);
    assert!(after.iter().all(|p| name(p) != moved));
    assert!(s.k_json(&["get", "pod", &moved])["metadata"]["ownerReferences"].is_null());

    // Back in: adopted, and the ReplicaSet, now one over, deletes one. The
    // adopted pod is the only ready one, so it is not the one deleted.
    set_status(&s, &moved, "Running", true, 60);
    s.k(&["label", "pod", &moved, "app=be", "--overwrite"]);
    wait_for(&s, "adoption", || {
        owner(&s.k_json(&["get", "pod", &moved])).as_deref() == Some("be")
    });
    wait_pods(&s, "app=be", 3);
    wait_for(&s, "a SuccessfulDelete", || {
        s.events("be")
            .iter()
            .any(|e| e.starts_with("SuccessfulDelete: "))
    });

    // A matching orphan made before the ReplicaSet is adopted: only the
    // rest is created.
    let orphan = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "labels": {"app": "mid", "tier": "web"}},
        "spec": {"nodeSelector": {"nowhere": "true"}, "containers": [{"name": "main", "image": "nginx"}]},
    });
    s.k_in(&orphan.to_string(), &["apply", "-f", "-"]);
    s.k_in(&rs_yaml("mid", 2), &["apply", "-f", "-"]);
    let mid = wait_pods(&s, "app=mid", 2);
    assert!(mid.iter().any(|p| name(p) == "stray"), "{mid:#?}");
    wait_for(&s, "stray adopted", || {
        owner(&s.k_json(&["get", "pod", "stray"])).as_deref() == Some("mid")
    });
    let creates = || {
        s.events("mid")
            .iter()
            .filter(|e| e.starts_with("SuccessfulCreate"))
            .count()
    };
    wait_for(&s, "a SuccessfulCreate", || creates() >= 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(creates(), 1, "{:#?}", s.events("mid"));
}

#[test]
fn scale_down_order() {
    let s = server();
    s.k_in(&rs_yaml("ord", 4), &["apply", "-f", "-"]);
    let p = wait_pods(&s, "app=ord", 4);
    let (ready_old, ready_new, running, pending) =
        (name(&p[0]), name(&p[1]), name(&p[2]), name(&p[3]));
    // Ready for an hour, ready for 2 seconds, running but not ready, pending.
    set_status(&s, &ready_old, "Running", true, 3600);
    set_status(&s, &ready_new, "Running", true, 2);
    set_status(&s, &running, "Running", false, 5);
    let order = [&pending, &running, &ready_new, &ready_old];
    for keep in (1..4).rev() {
        s.k(&[
            "patch",
            "rs",
            "ord",
            "--type=merge",
            "-p",
            &json!({"spec": {"replicas": keep}}).to_string(),
        ]);
        let left: Vec<String> = wait_pods(&s, "app=ord", keep).iter().map(name).collect();
        let expected: Vec<String> = order[4 - keep..].iter().map(|n| n.to_string()).collect();
        let mut expected = expected;
        expected.sort();
        assert_eq!(left, expected, "scaling to {keep} deleted the wrong pod");
    }

    // pod-deletion-cost outranks readiness age.
    s.k(&[
        "patch",
        "rs",
        "ord",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":2}}"#,
    ]);
    let p = wait_pods(&s, "app=ord", 2);
    let fresh = p
        .iter()
        .map(name)
        .find(|n| *n != ready_old)
        .expect("new pod");
    // Without a cost the more recently ready pod would go first.
    set_status(&s, &fresh, "Running", true, 10);
    s.k(&[
        "annotate",
        "pod",
        &ready_old,
        "controller.kubernetes.io/pod-deletion-cost=-10",
    ]);
    std::thread::sleep(Duration::from_millis(200));
    s.k(&[
        "patch",
        "rs",
        "ord",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ]);
    let left: Vec<String> = wait_pods(&s, "app=ord", 1).iter().map(name).collect();
    assert_eq!(left, [fresh]);
}

#[test]
fn burst_without_overshoot() {
    let s = server();
    s.k_in(&rs_yaml("many", 150), &["apply", "-f", "-"]);
    wait_pods(&s, "app=many", 150);
    wait_for(&s, "status", || {
        s.k_json(&["get", "rs", "many"])["status"]["replicas"] == 150
    });
    // Every creation is recorded; none more (events are written off the
    // hot path, so they may trail the pods).
    let creates = |ev: &[String]| {
        ev.iter()
            .filter(|e| e.starts_with("SuccessfulCreate"))
            .count()
    };
    wait_for(&s, "150 SuccessfulCreate events", || {
        creates(&s.events("many")) >= 150
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pods(&s, "app=many").len(), 150);
    let ev = s.events("many");
    assert_eq!(creates(&ev), 150);
    assert!(
        !ev.iter().any(|e| e.starts_with("SuccessfulDelete")),
        "created too many and deleted some"
    );
}

#[test]
fn replication_controller() {
    let s = server();
    let rc = "apiVersion: v1
kind: ReplicationController
metadata:
  name: legacy
spec:
  replicas: 2
  selector:
    app: legacy
  template:
    metadata:
      labels:
        app: legacy
    spec:
      nodeSelector:
        nowhere: \"true\"
      containers:
      - name: main
        image: nginx
";
    s.k_in(rc, &["apply", "-f", "-"]);
    let created = wait_pods(&s, "app=legacy", 2);
    for p in &created {
        assert_eq!(owner(p).as_deref(), Some("legacy"));
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["kind"],
            "ReplicationController"
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["apiVersion"], "v1");
        set_status(&s, &name(p), "Running", true, 5);
    }
    wait_for(&s, "rc status", || {
        let st = s.k_json(&["get", "rc", "legacy"])["status"].clone();
        st["replicas"] == 2
            && st["readyReplicas"] == 2
            && st["availableReplicas"] == 2
            && st["observedGeneration"] == 1
    });
    let ev = s.events("legacy");
    assert!(
        ev.iter()
            .any(|e| e.starts_with("SuccessfulCreate: Created pod: legacy-")),
        "{ev:#?}"
    );
    let described = s.k(&["describe", "rc", "legacy"]);
    assert!(described.contains("replication-controller"), "{described}");

    s.k(&["delete", "pod", &name(&created[0]), "--wait=false"]);
    wait_for(&s, "replacement", || {
        let now = pods(&s, "app=legacy");
        now.len() == 2 && now.iter().all(|p| name(p) != name(&created[0]))
    });
    s.k(&["scale", "rc/legacy", "--replicas=0"]);
    wait_pods(&s, "app=legacy", 0);
    wait_for(&s, "rc status 0", || {
        s.k_json(&["get", "rc", "legacy"])["status"]["replicas"] == 0
    });
}
