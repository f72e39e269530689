//! StatefulSet controller through stock kubectl: ordered creation with
//! stable names, hostnames and claims, ordered scale-down, rolling updates
//! with a partition, `kubectl rollout status|history|undo`, claim retention.
//!
//! No node agent runs here, so pods are made Running and Ready by hand
//! (`kubectl patch --subresource=status`), as a kubelet would.

mod common;

use std::time::Duration;

use common::{Server, json, wait_until};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

fn sts_yaml(name: &str, replicas: u32, extra_spec: &str, image: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}, namespace: default}}
spec:
  serviceName: {name}
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
{extra_spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: c
        image: {image}
"#
    )
}

fn get(s: &Server, kind: &str, name: &str) -> Option<Value> {
    let o = s.kubectl(&["get", kind, name, "-o", "json"]);
    o.status
        .success()
        .then(|| json(&String::from_utf8_lossy(&o.stdout)))
}

fn pods(s: &Server, app: &str) -> Vec<Value> {
    let l = s.k_json(&["get", "pods", "-l", &format!("app={app}")]);
    l["items"].as_array().cloned().unwrap_or_default()
}

fn pod_names(s: &Server, app: &str) -> Vec<String> {
    let mut v: Vec<String> = pods(s, app)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

fn is_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// What a kubelet would do: report the pod Running and Ready.
fn make_ready(s: &Server, pod: &str) {
    let patch = r#"{"status":{"phase":"Running","podIP":"10.42.0.10","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2024-01-01T00:00:00Z"}]}}"#;
    s.k(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]);
}

/// Make every pod of `app` ready, as they appear, until `done` holds.
#[track_caller]
fn converge(s: &Server, app: &str, what: &str, mut done: impl FnMut() -> bool) {
    let ok = wait_until(TIMEOUT, || {
        for p in pods(s, app) {
            if !is_ready(&p) && p["metadata"]["deletionTimestamp"].is_null() {
                make_ready(s, p["metadata"]["name"].as_str().unwrap_or(""));
            }
        }
        done()
    });
    assert!(
        ok,
        "timed out waiting for {what}; pods: {:?}\n{}",
        pod_names(s, app),
        s.k(&["get", "sts", "-o", "yaml"])
    );
}

fn status(s: &Server, name: &str) -> Value {
    get(s, "sts", name)
        .map(|v| v["status"].clone())
        .unwrap_or(Value::Null)
}

fn label<'a>(p: &'a Value, key: &str) -> &'a str {
    p["metadata"]["labels"][key].as_str().unwrap_or("")
}

/// Event messages about `name`, oldest first (by resourceVersion).
fn events(s: &Server, name: &str) -> Vec<(String, String)> {
    let l = s.k_json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
    ]);
    let mut items = l["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|e| {
        e["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .parse::<u64>()
            .unwrap_or(0)
    });
    items
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn ordered_creation_identity_claims_and_scale_down() {
    let s = Server::start();
    let claims = r#"  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}"#;
    s.k_in(
        &sts_yaml("web", 3, claims, "nginx:1"),
        &["apply", "-f", "-"],
    );

    // OrderedReady: web-0 alone until it is Running and Ready.
    assert!(
        wait_until(TIMEOUT, || get(&s, "pod", "web-0").is_some()),
        "web-0 never created"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        pod_names(&s, "web"),
        ["web-0"],
        "web-1 must wait for web-0 to be ready"
    );

    let p = get(&s, "pod", "web-0").unwrap_or_default();
    assert_eq!(p["spec"]["hostname"], "web-0");
    assert_eq!(p["spec"]["subdomain"], "web");
    assert_eq!(label(&p, "statefulset.kubernetes.io/pod-name"), "web-0");
    assert_eq!(label(&p, "apps.kubernetes.io/pod-index"), "0");
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    let vols = p["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    let www = vols
        .iter()
        .find(|v| v["name"] == "www")
        .unwrap_or(&Value::Null);
    assert_eq!(
        www["persistentVolumeClaim"]["claimName"], "www-web-0",
        "volumes: {vols:?}"
    );
    let pvc = get(&s, "pvc", "www-web-0").expect("claim www-web-0");
    assert_eq!(pvc["metadata"]["labels"]["app"], "web");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");

    converge(&s, "web", "3 ready replicas", || {
        status(&s, "web")["readyReplicas"] == 3
    });
    assert_eq!(pod_names(&s, "web"), ["web-0", "web-1", "web-2"]);
    for n in ["www-web-0", "www-web-1", "www-web-2"] {
        assert!(get(&s, "pvc", n).is_some(), "claim {n}");
    }
    let st = status(&s, "web");
    assert_eq!(st["replicas"], 3);
    assert_eq!(st["availableReplicas"], 3);
    assert_eq!(st["currentReplicas"], 3);
    assert_eq!(st["updatedReplicas"], 3);
    assert_eq!(st["observedGeneration"], 1);
    let rev = st["updateRevision"].as_str().unwrap_or("").to_string();
    assert!(rev.starts_with("web-"), "{st}");
    assert_eq!(st["currentRevision"], rev.as_str());
    for p in pods(&s, "web") {
        assert_eq!(label(&p, "controller-revision-hash"), rev);
    }
    let out = s.k(&["rollout", "status", "sts/web", "--timeout=20s"]);
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );

    let ev = events(&s, "web");
    for want in [
        (
            "SuccessfulCreate",
            "create Claim www-web-0 Pod web-0 in StatefulSet web success",
        ),
        (
            "SuccessfulCreate",
            "create Pod web-0 in StatefulSet web successful",
        ),
        (
            "SuccessfulCreate",
            "create Pod web-2 in StatefulSet web successful",
        ),
    ] {
        assert!(
            ev.iter().any(|(r, m)| r == want.0 && m == want.1),
            "missing {want:?} in {ev:?}"
        );
    }
    let describe = s.k(&["describe", "sts", "web"]);
    assert!(
        describe.contains("create Pod web-1 in StatefulSet web successful"),
        "{describe}"
    );

    // Scale down: highest ordinal first; claims stay (Retain).
    // (Patched rather than `kubectl scale`: no scale subresource is served yet.)
    s.k(&[
        "patch",
        "sts",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ]);
    converge(&s, "web", "scale down to 1", || {
        pod_names(&s, "web") == ["web-0"]
    });
    let deletes: Vec<String> = events(&s, "web")
        .into_iter()
        .filter(|(r, _)| r == "SuccessfulDelete")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        deletes,
        [
            "delete Pod web-2 in StatefulSet web successful",
            "delete Pod web-1 in StatefulSet web successful"
        ]
    );
    assert!(
        get(&s, "pvc", "www-web-2").is_some(),
        "claims are retained by default"
    );
    converge(&s, "web", "status after scale down", || {
        let st = status(&s, "web");
        st["replicas"] == 1 && st["readyReplicas"] == 1
    });

    // A deleted pod comes back with the same name and claim.
    s.k(&["delete", "pod", "web-0"]);
    converge(&s, "web", "web-0 recreated", || {
        get(&s, "pod", "web-0").is_some_and(|p| is_ready(&p))
            && status(&s, "web")["readyReplicas"] == 1
    });
    let p = get(&s, "pod", "web-0").unwrap_or_default();
    let vols = p["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    assert!(
        vols.iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == "www-web-0")
    );
}

#[test]
fn rolling_update_partition_history_and_undo() {
    let s = Server::start();
    let strategy = "  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 2}}";
    s.k_in(
        &sts_yaml("db", 3, strategy, "nginx:1"),
        &["apply", "-f", "-"],
    );
    converge(&s, "db", "3 ready", || {
        status(&s, "db")["readyReplicas"] == 3
    });
    let rev1 = status(&s, "db")["updateRevision"]
        .as_str()
        .unwrap_or("")
        .to_string();

    // Partition 2: only db-2 moves to the new template.
    s.k(&["set", "image", "sts/db", "c=nginx:2"]);
    converge(&s, "db", "db-2 updated", || {
        let st = status(&s, "db");
        st["updatedReplicas"] == 1 && st["readyReplicas"] == 3 && st["observedGeneration"] == 2
    });
    let st = status(&s, "db");
    let rev2 = st["updateRevision"].as_str().unwrap_or("").to_string();
    assert_ne!(rev1, rev2);
    assert_eq!(
        st["currentRevision"],
        rev1.as_str(),
        "partitioned: current stays"
    );
    assert_eq!(st["currentReplicas"], 2);
    let image = |p: &str| {
        get(&s, "pod", p)
            .map(|v| v["spec"]["containers"][0]["image"].clone())
            .unwrap_or_default()
    };
    assert_eq!(image("db-2"), "nginx:2");
    assert_eq!(image("db-1"), "nginx:1");
    assert_eq!(image("db-0"), "nginx:1");
    let out = s.k(&["rollout", "status", "sts/db", "--timeout=20s"]);
    assert!(
        out.contains("partitioned roll out complete: 1 new pods have been updated"),
        "{out}"
    );

    // Partition 0: the rest follow, highest ordinal first.
    s.k(&[
        "patch",
        "sts",
        "db",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    converge(&s, "db", "all updated", || {
        let st = status(&s, "db");
        st["updatedReplicas"] == 3
            && st["readyReplicas"] == 3
            && st["currentRevision"] == rev2.as_str()
    });
    assert_eq!(image("db-0"), "nginx:2");
    assert_eq!(status(&s, "db")["currentReplicas"], 3);
    let deletes: Vec<String> = events(&s, "db")
        .into_iter()
        .filter(|(r, _)| r == "SuccessfulDelete")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        deletes,
        [
            "delete Pod db-2 in StatefulSet db successful",
            "delete Pod db-1 in StatefulSet db successful",
            "delete Pod db-0 in StatefulSet db successful"
        ]
    );

    // History from ControllerRevisions.
    let revs = s.k_json(&["get", "controllerrevisions", "-l", "app=db"]);
    let items = revs["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{revs}");
    let out = s.k(&["rollout", "history", "sts/db"]);
    let rows: Vec<String> = out.lines().map(common::squeeze).collect();
    assert!(rows.iter().any(|l| l == "REVISION CHANGE-CAUSE"), "{out}");
    assert!(
        rows.iter().any(|l| l == "1 <none>") && rows.iter().any(|l| l == "2 <none>"),
        "{out}"
    );
    let out = s.k(&["rollout", "history", "sts/db", "--revision=2"]);
    assert!(out.contains("nginx:2"), "{out}");
    let out = s.k(&["rollout", "history", "sts/db", "--revision=1"]);
    assert!(out.contains("nginx:1"), "{out}");

    // Undo: back to nginx:1, which becomes revision 3.
    let out = s.k(&["rollout", "undo", "sts/db"]);
    assert!(out.contains("rolled back"), "{out}");
    converge(&s, "db", "rolled back", || {
        let st = status(&s, "db");
        st["updateRevision"] == rev1.as_str()
            && st["updatedReplicas"] == 3
            && st["currentRevision"] == rev1.as_str()
    });
    assert_eq!(image("db-0"), "nginx:1");
    let out = s.k(&["rollout", "history", "sts/db"]);
    let rows: Vec<String> = out.lines().map(common::squeeze).collect();
    assert!(
        rows.iter().any(|l| l == "2 <none>") && rows.iter().any(|l| l == "3 <none>"),
        "{out}"
    );
    assert!(!rows.iter().any(|l| l == "1 <none>"), "{out}");
}

#[test]
fn parallel_on_delete_and_claim_retention() {
    let s = Server::start();
    let extra = r#"  podManagementPolicy: Parallel
  updateStrategy: {type: OnDelete}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Delete}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}"#;
    s.k_in(&sts_yaml("q", 3, extra, "busybox:1"), &["apply", "-f", "-"]);
    // Parallel: all three at once, none ready.
    assert!(
        wait_until(TIMEOUT, || pod_names(&s, "q").len() == 3),
        "parallel creation: {:?}",
        pod_names(&s, "q")
    );
    // whenDeleted=Delete: the claims belong to the StatefulSet.
    let uid = get(&s, "sts", "q")
        .map(|v| v["metadata"]["uid"].clone())
        .unwrap_or_default();
    assert!(wait_until(TIMEOUT, || {
        get(&s, "pvc", "data-q-1")
            .is_some_and(|c| c["metadata"]["ownerReferences"][0]["uid"] == uid)
    }));
    converge(&s, "q", "3 ready", || status(&s, "q")["readyReplicas"] == 3);

    // OnDelete: a template change touches no pod until one is deleted.
    s.k(&["set", "image", "sts/q", "c=busybox:2"]);
    converge(&s, "q", "new revision observed", || {
        status(&s, "q")["observedGeneration"] == 2
    });
    std::thread::sleep(Duration::from_millis(500));
    let image = |p: &str| {
        get(&s, "pod", p)
            .map(|v| v["spec"]["containers"][0]["image"].clone())
            .unwrap_or_default()
    };
    assert_eq!(image("q-1"), "busybox:1");
    assert_eq!(status(&s, "q")["updatedReplicas"], 0);
    s.k(&["delete", "pod", "q-1"]);
    converge(&s, "q", "q-1 recreated at the new revision", || {
        image("q-1") == "busybox:2"
    });
    converge(&s, "q", "status", || {
        status(&s, "q")["updatedReplicas"] == 1
    });

    // whenScaled=Delete: a scaled-away pod's claim passes to the pod.
    s.k(&[
        "patch",
        "sts",
        "q",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":2}}"#,
    ]);
    converge(&s, "q", "scale down", || pod_names(&s, "q").len() == 2);
    // The garbage collector may remove it as soon as the pod is gone; until
    // then the pod, not the set, owns it.
    let mut last = Value::Null;
    assert!(
        wait_until(TIMEOUT, || match get(&s, "pvc", "data-q-2") {
            None => true,
            Some(c) => {
                let owners = c["metadata"]["ownerReferences"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                last = c;
                !owners.is_empty()
                    && owners
                        .iter()
                        .all(|o| o["kind"] == "Pod" && o["name"] == "q-2")
            }
        }),
        "claim of a scaled-away pod: {last}"
    );
    let kept = get(&s, "pvc", "data-q-1").unwrap_or_default();
    assert_eq!(
        kept["metadata"]["ownerReferences"][0]["uid"], uid,
        "claims in range stay with the set"
    );
}

/// With the scheduler and simulated nodes, no hand-made readiness: the
/// set comes up in order, rolls, and `kubectl rollout status` follows it.
#[test]
fn end_to_end_on_simulated_nodes() {
    let s = Server::builder().arg("--simulate-nodes").arg("2").start();
    // Default grace period: deletions go through the (simulated) kubelet.
    let yaml =
        sts_yaml("sim", 3, "", "nginx:1").replace("      terminationGracePeriodSeconds: 0\n", "");
    s.k_in(&yaml, &["apply", "-f", "-"]);
    let out = s.k(&["rollout", "status", "sts/sim", "--timeout=60s"]);
    assert!(out.contains("3 new pods have been updated"), "{out}");
    let ps = pods(&s, "sim");
    assert_eq!(ps.len(), 3);
    for p in &ps {
        assert!(is_ready(p), "{p}");
        let node = p["spec"]["nodeName"].as_str().unwrap_or("");
        assert!(
            node == "sim-0" || node == "sim-1",
            "scheduled onto a simulated node: {node}"
        );
    }
    s.k(&["set", "image", "sts/sim", "c=nginx:2"]);
    let out = s.k(&["rollout", "status", "sts/sim", "--timeout=60s"]);
    assert!(out.contains("3 new pods have been updated"), "{out}");
    assert!(wait_until(TIMEOUT, || {
        let st = status(&s, "sim");
        st["currentRevision"] == st["updateRevision"]
            && st["readyReplicas"] == 3
            && st["updatedReplicas"] == 3
    }));
    for p in pods(&s, "sim") {
        assert_eq!(p["spec"]["containers"][0]["image"], "nginx:2");
    }
}
