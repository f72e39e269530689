//! The built-in admission plugins not covered elsewhere: NamespaceLifecycle,
//! ServiceAccount, DefaultTolerationSeconds and DefaultStorageClass.
//! (LimitRanger, ResourceQuota, PodSecurity and the webhooks have their own
//! files.)

mod common;

use common::{Server, wait_until};
use serde_json::json;
use std::time::Duration;

#[test]
fn namespace_lifecycle() {
    let s = Server::start();
    // No creates in a namespace that does not exist.
    let err = s.k_err(&["create", "configmap", "c", "-n", "nope"]);
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");
    // The namespaces every cluster relies on cannot be deleted.
    for ns in ["default", "kube-system", "kube-public"] {
        let err = s.k_err(&["delete", "namespace", ns, "--wait=false"]);
        assert!(
            err.contains(&format!(
                "Error from server (Forbidden): namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
            )),
            "{err}"
        );
        let n = s.k_json(&["get", "namespace", ns]);
        assert!(n["metadata"]["deletionTimestamp"].is_null(), "{n}");
    }
    // No creates in a terminating namespace (held open by a finalizer).
    s.k(&["create", "namespace", "t"]);
    s.k_in(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: t\n  finalizers: [example.com/hold]\n",
        &["create", "-f", "-"],
    );
    s.k(&["delete", "namespace", "t", "--wait=false"]);
    let err = s.k_err(&["create", "configmap", "late", "-n", "t"]);
    assert!(
        err.contains("unable to create new content in namespace t because it is being terminated"),
        "{err}"
    );
    // Updates to what is there still work while it terminates.
    s.k(&["label", "configmap", "held", "-n", "t", "still=writable"]);
    s.k(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "t",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(wait_until(Duration::from_secs(20), || {
        !s.kubectl(&["get", "namespace", "t"]).status.success()
    }));
}

#[test]
fn service_account_and_default_toleration_seconds() {
    let s = Server::builder().arg("--disable").arg("scheduler").start();
    s.k_in(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: tolerant}
spec:
  serviceAccountName: default
  tolerations:
  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 10}
  containers: [{name: c, image: busybox}]
"#,
        &["create", "-f", "-"],
    );
    let p = s.k_json(&["get", "pod", "plain"]);
    assert_eq!(p["spec"]["serviceAccountName"], "default", "{p}");
    assert_eq!(
        p["spec"]["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ])
    );
    // A toleration the pod brings is kept; only the missing one is added.
    let p = s.k_json(&["get", "pod", "tolerant"]);
    assert_eq!(
        p["spec"]["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ])
    );
}

#[test]
fn default_storage_class_is_the_newest_default() {
    let s = Server::builder()
        .arg("--disable")
        .arg("local-path-provisioner")
        .start();
    let claim = |name: &str, class: Option<&str>| {
        let class = class.map_or(String::new(), |c| format!("  storageClassName: \"{c}\"\n"));
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n{class}  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n"
        )
    };
    let class_of = |name: &str| {
        s.k(&[
            "get",
            "pvc",
            name,
            "-o",
            "jsonpath={.spec.storageClassName}",
        ])
    };
    // Remove whatever default the server ships so the test owns the choice.
    for sc in s
        .k(&["get", "storageclass", "-o", "name"])
        .lines()
        .filter(|l| !l.is_empty())
    {
        s.k(&[
            "annotate",
            sc,
            "--overwrite",
            "storageclass.kubernetes.io/is-default-class=false",
        ]);
    }
    s.k_in(&claim("none", None), &["create", "-f", "-"]);
    assert_eq!(class_of("none"), "", "no default class, no class");

    let class = |name: &str, default: bool| {
        format!(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {name}\n  annotations: {{storageclass.kubernetes.io/is-default-class: \"{default}\"}}\nprovisioner: example.com/none\n"
        )
    };
    s.k_in(&class("older", true), &["create", "-f", "-"]);
    s.k_in(&class("plain", false), &["create", "-f", "-"]);
    s.k_in(&claim("one", None), &["create", "-f", "-"]);
    assert_eq!(class_of("one"), "older");
    // creationTimestamp has one-second resolution.
    std::thread::sleep(Duration::from_millis(1100));
    s.k_in(&class("newer", true), &["create", "-f", "-"]);
    s.k_in(&claim("two", None), &["create", "-f", "-"]);
    assert_eq!(class_of("two"), "newer", "the newest default wins");
    // An explicit class, even "", is kept.
    s.k_in(&claim("explicit", Some("plain")), &["create", "-f", "-"]);
    assert_eq!(class_of("explicit"), "plain");
    s.k_in(&claim("empty", Some("")), &["create", "-f", "-"]);
    let p = s.k_json(&["get", "pvc", "empty"]);
    assert_eq!(p["spec"]["storageClassName"], "", "{p}");
}
