//! Namespace deletion through real kubectl: everything in the namespace
//! goes, objects held by finalizers keep it Terminating with upstream's
//! conditions, and the namespace disappears once they are released.

mod common;

use std::fmt::Write;
use std::time::{Duration, Instant};

use common::{Server, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A few dozen objects of several kinds in namespace `ns`.
fn content(ns: &str) -> String {
    let mut y = String::new();
    for i in 0..20 {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: {ns}}}\ndata: {{k: v}}\n"
        );
    }
    for i in 0..5 {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s-{i}, namespace: {ns}}}\nstringData: {{k: v}}\n"
        );
    }
    for i in 0..3 {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: {ns}}}\nspec: {{selector: {{app: a{i}}}, ports: [{{port: 80}}]}}\n"
        );
    }
    let _ = write!(
        y,
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: nginx}}]}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: robot, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reader, namespace: {ns}}}
rules: [{{apiGroups: [""], resources: [pods], verbs: [get]}}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {{name: lock, namespace: {ns}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: lonely, namespace: {ns}}}
spec: {{containers: [{{name: c, image: busybox}}]}}
"#
    );
    y
}

fn count_all(s: &Server, ns: &str) -> usize {
    s.k(&[
        "get",
        "cm,secret,svc,deploy,rs,sa,role,lease,pod",
        "-n",
        ns,
        "--ignore-not-found",
        "-o",
        "name",
    ])
    .lines()
    .filter(|l| !l.trim().is_empty())
    .count()
}

#[test]
fn deleting_a_namespace_deletes_everything_in_it_quickly() {
    let s = Server::start();
    s.k(&["create", "namespace", "doomed"]);
    s.k_in(&content("doomed"), &["apply", "-f", "-"]);
    // A neighbour that must be left alone.
    s.k(&["create", "namespace", "neighbour"]);
    s.k(&["create", "configmap", "cm-0", "-n", "neighbour"]);
    assert!(
        count_all(&s, "doomed") >= 33,
        "content not created: {}",
        count_all(&s, "doomed")
    );

    let started = Instant::now();
    // kubectl waits until the namespace is gone.
    s.k(&["delete", "namespace", "doomed", "--timeout=60s"]);
    let took = started.elapsed();
    eprintln!("namespace with {} objects deleted in {took:?}", 33);
    assert!(
        took < Duration::from_secs(15),
        "namespace deletion took {took:?}"
    );
    assert_eq!(
        s.k(&[
            "get",
            "namespace",
            "doomed",
            "--ignore-not-found",
            "-o",
            "name"
        ])
        .trim(),
        ""
    );
    // Nothing of it is left behind in the store.
    let left = s.k(&[
        "get",
        "cm,secret,svc,deploy,sa,role,lease,pod",
        "-A",
        "-o",
        "name",
        "--field-selector",
        "metadata.namespace=doomed",
    ]);
    assert_eq!(left.trim(), "", "left behind: {left}");
    assert_eq!(
        s.k(&["get", "cm", "cm-0", "-n", "neighbour", "-o", "name"])
            .trim(),
        "configmap/cm-0"
    );

    // The namespace name can be reused at once, and starts empty.
    s.k(&["create", "namespace", "doomed"]);
    assert_eq!(
        s.k(&[
            "get",
            "cm,secret",
            "-n",
            "doomed",
            "-o",
            "name",
            "--field-selector",
            "metadata.name=cm-0"
        ])
        .trim(),
        ""
    );
}

fn condition(ns: &Value, ty: &str) -> (String, String, String) {
    let c = ns["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .cloned()
        .unwrap_or(Value::Null);
    let f = |k: &str| c[k].as_str().unwrap_or("").to_string();
    (f("status"), f("reason"), f("message"))
}

#[test]
fn finalizers_hold_a_terminating_namespace_and_conditions_say_why() {
    let s = Server::start();
    s.k(&["create", "namespace", "held"]);
    s.k_in(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stuck, namespace: held, finalizers: [example.com/hold]}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: free, namespace: held}\n",
        &["apply", "-f", "-"],
    );
    s.k(&["delete", "namespace", "held", "--wait=false"]);
    let ns = || s.k_json(&["get", "namespace", "held"]);
    assert!(
        wait_until(WAIT, || condition(&ns(), "NamespaceFinalizersRemaining").0
            == "True"),
        "no NamespaceFinalizersRemaining condition: {}",
        ns()
    );
    let got = ns();
    assert_eq!(got["status"]["phase"], "Terminating");
    assert_eq!(
        condition(&got, "NamespaceFinalizersRemaining"),
        (
            "True".into(),
            "SomeFinalizersRemain".into(),
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances".into()
        )
    );
    assert_eq!(
        condition(&got, "NamespaceContentRemaining"),
        (
            "True".into(),
            "SomeResourcesRemain".into(),
            "Some resources are remaining: configmaps. has 1 resource instances".into()
        )
    );
    assert_eq!(
        condition(&got, "NamespaceDeletionDiscoveryFailure"),
        (
            "False".into(),
            "ResourcesDiscovered".into(),
            "All resources successfully discovered".into()
        )
    );
    assert_eq!(
        condition(&got, "NamespaceDeletionContentFailure"),
        (
            "False".into(),
            "ContentDeleted".into(),
            "All content successfully deleted, may be waiting on finalization".into()
        )
    );
    // The free object went; the held one waits with a deletionTimestamp.
    assert_eq!(
        s.k(&[
            "get",
            "cm",
            "free",
            "-n",
            "held",
            "--ignore-not-found",
            "-o",
            "name"
        ])
        .trim(),
        ""
    );
    assert!(
        !s.k(&[
            "get",
            "cm",
            "stuck",
            "-n",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}"
        ])
        .is_empty()
    );
    assert_eq!(
        s.k(&[
            "get",
            "namespace",
            "held",
            "-o",
            "jsonpath={.spec.finalizers}"
        ]),
        r#"["kubernetes"]"#
    );
    // kubectl describe shows the conditions.
    let described = s.k(&["describe", "namespace", "held"]);
    assert!(
        described.contains("NamespaceFinalizersRemaining"),
        "{described}"
    );

    // Releasing the object lets the namespace go.
    s.k(&[
        "patch",
        "configmap",
        "stuck",
        "-n",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    assert!(
        wait_until(WAIT, || s
            .k(&[
                "get",
                "namespace",
                "held",
                "--ignore-not-found",
                "-o",
                "name"
            ])
            .trim()
            .is_empty()),
        "namespace still there: {}",
        ns()
    );
}
