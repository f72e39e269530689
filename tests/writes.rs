//! Write semantics every verb shares: dry runs, field validation levels,
//! the deletion lifecycle (finalizers, preconditions, graceful pod
//! deletion), and the status, scale and binding subresources.

mod common;

use common::{Req, Server, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn dry_run_on_every_write_verb_persists_nothing() {
    let mut s = Server::start();
    // create: the answer is what would be stored, but nothing is.
    let out = s.k(&[
        "create",
        "cm",
        "a",
        "--from-literal=x=1",
        "--dry-run=server",
        "-o",
        "json",
    ]);
    let would = common::json(&out);
    assert_eq!(would["data"]["x"], "1");
    assert!(would["metadata"]["uid"].is_string(), "{would}");
    assert!(would["metadata"]["creationTimestamp"].is_string());
    assert!(
        rv(&would).is_empty(),
        "a dry-run create has no resourceVersion: {would}"
    );
    assert!(s.k_err(&["get", "cm", "a"]).contains("NotFound"));
    // generateName is resolved in the answer too.
    let r = s.request(Req::new("POST", &format!("{CMS}?dryRun=All")).json(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "g-"}}),
    ));
    assert_eq!(r.status, 201, "{}", r.snippet());
    let name = r.json()["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(name.starts_with("g-") && name.len() > 2, "{name}");
    s.get(&format!("{CMS}/{name}"))
        .assert_status(404, "NotFound");

    s.k(&["create", "cm", "a", "--from-literal=x=1"]);
    let before = s.k_json(&["get", "cm", "a"]);

    // patch
    let out = s.k(&[
        "patch",
        "cm",
        "a",
        "-p",
        r#"{"data":{"x":"2"}}"#,
        "--dry-run=server",
        "-o",
        "json",
    ]);
    assert_eq!(common::json(&out)["data"]["x"], "2");
    // update (PUT)
    let mut edited = before.clone();
    edited["data"]["x"] = json!("3");
    let out = s.k_in(
        &edited.to_string(),
        &["replace", "--dry-run=server", "-f", "-", "-o", "json"],
    );
    assert_eq!(common::json(&out)["data"]["x"], "3");
    // apply, client- and server-side
    let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: \"4\"}\n";
    s.k_in(doc, &["apply", "--dry-run=server", "-f", "-"]);
    s.k_in(
        doc,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            "-",
        ],
    );
    // delete, one and the collection
    let out = s.k(&["delete", "cm", "a", "--dry-run=server"]);
    assert!(out.contains("deleted (server dry run)"), "{out}");
    let r = s.request(Req::new("DELETE", &format!("{CMS}?dryRun=All")));
    assert_eq!(r.status, 200, "{}", r.snippet());
    let listed = r.json();
    assert!(
        listed["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|o| o["metadata"]["name"] == "a")),
        "a dry-run deletecollection answers with what it would delete: {listed}"
    );

    let after = s.k_json(&["get", "cm", "a"]);
    assert_eq!(after["data"], before["data"], "{after}");
    assert_eq!(rv(&after), rv(&before), "no write reached the store");
    assert!(after["metadata"]["deletionTimestamp"].is_null());

    // Only All is a dry-run value.
    let r = s.request(
        Req::new("POST", &format!("{CMS}?dryRun=Bogus"))
            .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}})),
    );
    let st = r.assert_status(400, "BadRequest");
    assert!(
        st["message"].as_str().unwrap_or_default().contains("Bogus"),
        "{st}"
    );
}

#[test]
fn field_validation_strict_warn_and_ignore() {
    let mut s = Server::start();
    let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\n  bogus: 1\ndata:\n  a: b\nextra: true\n";
    // Warn: admitted, each unknown field a warning kubectl prints.
    let o = s.kubectl_stdin(doc, &["create", "--validate=warn", "-f", "-"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let err = common::stderr(&o);
    assert!(err.contains("Warning: unknown field \"extra\""), "{err}");
    assert!(
        err.contains("Warning: unknown field \"metadata.bogus\""),
        "{err}"
    );
    let cm = s.k_json(&["get", "cm", "w"]);
    assert!(
        cm.get("extra").is_none(),
        "unknown fields are dropped: {cm}"
    );
    s.k(&["delete", "cm", "w"]);
    // Ignore: admitted silently.
    let o = s.kubectl_stdin(doc, &["create", "--validate=false", "-f", "-"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(
        !common::stderr(&o).contains("Warning"),
        "{}",
        common::stderr(&o)
    );
    s.k(&["delete", "cm", "w"]);
    // Strict: refused, nothing stored.
    let err = s.k_in_err(doc, &["create", "--validate=strict", "-f", "-"]);
    assert!(
        err.contains(
            "strict decoding error: unknown field \"extra\", unknown field \"metadata.bogus\""
        ),
        "{err}"
    );
    assert!(s.k_err(&["get", "cm", "w"]).contains("NotFound"));

    // Duplicate fields (JSON kubectl would never send): Strict refuses,
    // Warn warns, Ignore is silent; the last value wins.
    let dup = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d"},"data":{"a":"1","a":"2"}}"#;
    let r = s.request(
        Req::new("POST", &format!("{CMS}?fieldValidation=Strict"))
            .body("application/json", &dup[..]),
    );
    let st = r.assert_status(400, "BadRequest");
    assert!(
        st["message"]
            .as_str()
            .unwrap_or_default()
            .contains("strict decoding error: duplicate field \"data.a\""),
        "{st}"
    );
    let r = s.request(
        Req::new("POST", &format!("{CMS}?fieldValidation=Warn")).body("application/json", &dup[..]),
    );
    assert_eq!(r.status, 201, "{}", r.snippet());
    assert!(
        r.header("Warning")
            .is_some_and(|w| w.contains("duplicate field \\\"data.a\\\"")),
        "{}",
        r.headers
    );
    assert_eq!(r.json()["data"]["a"], "2");
    let dup2 = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d2"},"data":{"a":"1","a":"2"}}"#;
    let r = s.request(
        Req::new("POST", &format!("{CMS}?fieldValidation=Ignore"))
            .body("application/json", &dup2[..]),
    );
    assert_eq!(r.status, 201, "{}", r.snippet());
    assert!(r.header("Warning").is_none(), "{}", r.headers);
    // An unknown level is a 400, for patches too.
    let r = s.request(
        Req::new("POST", &format!("{CMS}?fieldValidation=Bogus"))
            .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "e"}})),
    );
    r.assert_status(400, "BadRequest");
    let r = s.request(
        Req::new("PATCH", &format!("{CMS}/d?fieldValidation=Bogus"))
            .body("application/merge-patch+json", r#"{"data":{"b":"1"}}"#),
    );
    r.assert_status(400, "BadRequest");
}

#[test]
fn finalizers_hold_deletion_and_preconditions_guard_it() {
    let mut s = Server::start();
    s.k_in(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: f\n  finalizers: [example.com/hold]\n",
        &["create", "-f", "-"],
    );
    s.k(&["delete", "cm", "f", "--wait=false"]);
    let held = s.k_json(&["get", "cm", "f"]);
    let meta = &held["metadata"];
    assert!(meta["deletionTimestamp"].is_string(), "{held}");
    assert_eq!(meta["deletionGracePeriodSeconds"], 0, "{held}");
    // Once its last finalizer is removed, it goes.
    s.k(&[
        "patch",
        "cm",
        "f",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(
        wait_until(Duration::from_secs(5), || {
            !s.kubectl(&["get", "cm", "f"]).status.success()
        }),
        "the object goes once its last finalizer is removed"
    );

    // Preconditions on uid and resourceVersion.
    s.k(&["create", "cm", "p"]);
    let cm = s.k_json(&["get", "cm", "p"]);
    let uid = cm["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let del = |s: &mut Server, pre: Value| {
        s.request(
            Req::new("DELETE", &format!("{CMS}/p"))
                .json(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": pre})),
        )
    };
    let st = del(&mut s, json!({"uid": "not-the-uid"})).assert_status(409, "Conflict");
    assert_eq!(
        st["message"],
        format!(
            "Operation cannot be fulfilled on configmaps \"p\": Precondition failed: UID in precondition: not-the-uid, UID in object meta: {uid}"
        )
    );
    let st = del(&mut s, json!({"resourceVersion": "1"})).assert_status(409, "Conflict");
    assert!(
        st["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!(
                "Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta: {}",
                rv(&cm)
            )),
        "{st}"
    );
    assert!(s.kubectl(&["get", "cm", "p"]).status.success());
    let r = del(&mut s, json!({"uid": uid, "resourceVersion": rv(&cm)}));
    assert_eq!(r.status, 200, "{}", r.snippet());
    assert!(s.k_err(&["get", "cm", "p"]).contains("NotFound"));
}

#[test]
fn pods_go_at_once_without_a_node_and_gracefully_with_one() {
    let s = Server::builder().arg("--disable").arg("scheduler").start();
    s.k_in(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: pending}\nspec:\n  containers: [{name: c, image: busybox}]\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: bound}\nspec:\n  nodeName: elsewhere\n  terminationGracePeriodSeconds: 45\n  containers: [{name: c, image: busybox}]\n",
        &["create", "-f", "-"],
    );
    // Never scheduled: nothing runs it, so it goes at once.
    s.k(&["delete", "pod", "pending", "--wait=false"]);
    assert!(s.k_err(&["get", "pod", "pending"]).contains("NotFound"));
    // On a node: the node agent must finish it, so it stays, marked.
    s.k(&["delete", "pod", "bound", "--wait=false"]);
    let p = s.k_json(&["get", "pod", "bound"]);
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 45, "{p}");
    // A shorter grace period may still be asked for...
    s.k(&["delete", "pod", "bound", "--wait=false", "--grace-period=5"]);
    let p = s.k_json(&["get", "pod", "bound"]);
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 5, "{p}");
    // ...and a forced deletion removes it without the node.
    s.k(&["delete", "pod", "bound", "--grace-period=0", "--force"]);
    assert!(s.k_err(&["get", "pod", "bound"]).contains("NotFound"));
}

/// Every field of `part` is in `whole` with the same value.
fn contains(whole: &Value, part: &Value) -> bool {
    match (whole, part) {
        (Value::Object(w), Value::Object(p)) => p
            .iter()
            .all(|(k, v)| w.get(k).is_some_and(|wv| contains(wv, v))),
        _ => whole == part,
    }
}

/// No controller may write status while the test does.
fn quiet_server() -> Server {
    let mut b = Server::builder();
    for c in [
        "scheduler",
        "deployment",
        "replicaset",
        "statefulset",
        "daemonset",
        "replicationcontroller",
        "job",
        "cronjob",
        "local-path-provisioner",
        "endpoints",
        "endpointslice",
        "disruption",
        "horizontal-pod-autoscaler",
        "resourcequota",
    ] {
        b = b.arg("--disable").arg(c);
    }
    b.start()
}

#[test]
fn status_and_the_main_resource_are_written_apart() {
    let mut s = quiet_server();
    s.k_in(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  replicas: 1
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: d}}
"#,
        &["create", "-f", "-"],
    );
    s.k(&["create", "namespace", "ns1"]);
    // (path, a status change, a main-resource change, a spec change sent to /status)
    let cases = [
        (
            "/apis/apps/v1/namespaces/default/deployments/d",
            json!({"status": {"replicas": 7, "observedGeneration": 9}}),
            json!({"spec": {"replicas": 3}}),
            json!({"spec": {"replicas": 5}}),
        ),
        (
            "/apis/batch/v1/namespaces/default/jobs/j",
            json!({"status": {"active": 4}}),
            json!({"spec": {"parallelism": 2}}),
            json!({"spec": {"parallelism": 5}}),
        ),
        (
            "/api/v1/namespaces/default/services/svc",
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.168.77.1"}]}}}),
            json!({"spec": {"sessionAffinity": "ClientIP"}}),
            json!({"spec": {"sessionAffinity": "None"}}),
        ),
        (
            "/api/v1/namespaces/default/persistentvolumeclaims/claim",
            json!({"status": {"phase": "Lost"}}),
            json!({"metadata": {"labels": {"touched": "yes"}}}),
            json!({"spec": {"volumeName": "pv-x"}}),
        ),
        (
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets/pdb",
            json!({"status": {"expectedPods": 5, "currentHealthy": 2, "desiredHealthy": 1, "disruptionsAllowed": 1}}),
            json!({"spec": {"minAvailable": 2}}),
            json!({"spec": {"minAvailable": 4}}),
        ),
        (
            "/api/v1/namespaces/ns1",
            json!({"status": {"phase": "Terminating"}}),
            json!({"metadata": {"labels": {"touched": "yes"}}}),
            json!({"spec": {"finalizers": ["example.com/x"]}}),
        ),
    ];
    let merge = "application/merge-patch+json";
    let join = |a: &Value, b: &Value| {
        let mut m = a.as_object().cloned().unwrap_or_default();
        m.extend(b.as_object().cloned().unwrap_or_default());
        Value::Object(m)
    };
    for (path, status, main, spec_to_status) in &cases {
        let before = s.get_json(path);
        // A write to the main resource carrying a status change keeps the old status.
        let r = s.request(Req::new("PATCH", path).body(merge, join(main, status).to_string()));
        assert_eq!(r.status, 200, "{path}: {}", r.snippet());
        let after = r.json();
        assert_eq!(
            after["status"], before["status"],
            "{path}: a main write changed status"
        );
        assert!(
            contains(&after, main),
            "{path}: {main} not written: {after}"
        );
        // A write to /status carrying a spec change keeps the spec.
        let r = s.request(
            Req::new("PATCH", &format!("{path}/status"))
                .body(merge, join(spec_to_status, status).to_string()),
        );
        assert_eq!(r.status, 200, "{path}/status: {}", r.snippet());
        let after_status = r.json();
        assert_eq!(
            after_status["spec"], after["spec"],
            "{path}: a status write changed spec"
        );
        for (k, v) in status["status"].as_object().expect("status") {
            assert_eq!(
                &after_status["status"][k], v,
                "{path}: status.{k} not written"
            );
        }
        // And a later main write keeps the status that /status set.
        let r = s.request(
            Req::new("PATCH", path).body(merge, r#"{"metadata":{"annotations":{"again":"1"}}}"#),
        );
        assert_eq!(r.status, 200, "{}", r.snippet());
        assert_eq!(r.json()["status"], after_status["status"], "{path}");
    }
}

#[test]
fn scale_subresource_on_every_scalable_kind() {
    let mut s = quiet_server();
    let tmpl = "  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec: {containers: [{name: c, image: busybox}]}\n";
    let mut docs = String::new();
    for (api, kind) in [
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "StatefulSet"),
    ] {
        docs += &format!(
            "---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: x}}\nspec:\n  replicas: 1\n{tmpl}"
        );
    }
    docs += "---\napiVersion: v1\nkind: ReplicationController\nmetadata: {name: x}\nspec:\n  replicas: 1\n  selector: {app: x}\n  template:\n    metadata: {labels: {app: x}}\n    spec: {containers: [{name: c, image: busybox}]}\n";
    s.k_in(&docs, &["create", "-f", "-"]);
    for (res, base) in [
        (
            "deployment",
            "/apis/apps/v1/namespaces/default/deployments/x",
        ),
        (
            "replicaset",
            "/apis/apps/v1/namespaces/default/replicasets/x",
        ),
        (
            "statefulset",
            "/apis/apps/v1/namespaces/default/statefulsets/x",
        ),
        (
            "replicationcontroller",
            "/api/v1/namespaces/default/replicationcontrollers/x",
        ),
    ] {
        let scale = s.get_json(&format!("{base}/scale"));
        assert_eq!(scale["apiVersion"], "autoscaling/v1", "{res}: {scale}");
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["spec"]["replicas"], 1, "{res}: {scale}");
        assert_eq!(scale["metadata"]["name"], "x");
        assert_eq!(scale["status"]["selector"], "app=x", "{res}: {scale}");
        // kubectl scale, with its current-replicas precondition.
        let err = s.k_err(&["scale", res, "x", "--replicas=4", "--current-replicas=2"]);
        assert!(
            err.contains("Expected replicas to be 2, was 1"),
            "{res}: {err}"
        );
        s.k(&["scale", res, "x", "--replicas=4"]);
        assert_eq!(
            s.k(&["get", res, "x", "-o", "jsonpath={.spec.replicas}"]),
            "4",
            "{res}"
        );
        // PUT /scale with a stale resourceVersion conflicts; the object is unchanged.
        let mut stale = scale.clone();
        stale["spec"]["replicas"] = json!(9);
        let r = s.request(Req::new("PUT", &format!("{base}/scale")).json(&stale));
        r.assert_status(409, "Conflict");
        assert_eq!(s.get_json(base)["spec"]["replicas"], 4, "{res}");
        // A Scale with another name is refused.
        let mut other = s.get_json(&format!("{base}/scale"));
        other["metadata"]["name"] = json!("y");
        let r = s.request(Req::new("PUT", &format!("{base}/scale")).json(&other));
        let st = r.assert_status(400, "BadRequest");
        assert_eq!(
            st["message"],
            "the name of the object (y) does not match the name on the URL (x)"
        );
    }
    // A kind without a scale subresource has none.
    s.k(&["create", "cm", "x"]);
    let err = s.k_err(&["scale", "configmap", "x", "--replicas=2"]);
    assert!(
        err.contains("could not find") || err.contains("not found") || err.contains("NotFound"),
        "{err}"
    );
}

#[test]
fn pods_binding_assigns_a_node_once() {
    let mut s = Server::builder().arg("--disable").arg("scheduler").start();
    s.k_in(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec:\n  containers: [{name: c, image: busybox}]\n",
        &["create", "-f", "-"],
    );
    let path = "/api/v1/namespaces/default/pods/b/binding";
    let binding = |node: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"}, "target": {"kind": "Node", "name": node}});
    let r = s.request(Req::new("POST", path).json(&binding("n1")));
    assert_eq!(r.status, 201, "{}", r.snippet());
    assert_eq!(r.json()["status"], "Success");
    let p = s.k_json(&["get", "pod", "b"]);
    assert_eq!(p["spec"]["nodeName"], "n1");
    let cond = p["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled").cloned())
        .unwrap_or_default();
    assert_eq!(cond["status"], "True", "{p}");
    // A bound pod cannot be bound again.
    let st = s
        .request(Req::new("POST", path).json(&binding("n2")))
        .assert_status(409, "Conflict");
    assert_eq!(
        st["message"],
        "Operation cannot be fulfilled on pods \"b\": pod b is already assigned to node \"n1\""
    );
    // No such pod.
    let r = s.request(
        Req::new("POST", "/api/v1/namespaces/default/pods/zz/binding").json(&binding("n1")),
    );
    r.assert_status(404, "NotFound");
    assert_eq!(s.k_json(&["get", "pod", "b"])["spec"]["nodeName"], "n1");
}
