//! The garbage collector through real kubectl: background cascades along
//! ownerReferences, dangling and invalid owners, orphan and foreground
//! deletion (with kubectl's --cascade and with the finalizers by hand).

mod common;

use std::time::Duration;

use common::{Server, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn uid(s: &Server, args: &[&str]) -> String {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend(["-o", "jsonpath={.metadata.uid}"]);
    let u = s.k(&a);
    assert!(!u.is_empty(), "no uid for {args:?}");
    u
}

fn exists(s: &Server, args: &[&str]) -> bool {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend(["--ignore-not-found", "-o", "name"]);
    !s.k(&a).trim().is_empty()
}

#[track_caller]
fn wait_gone(s: &Server, args: &[&str]) {
    assert!(
        wait_until(WAIT, || !exists(s, args)),
        "{args:?} still exists:\n{}",
        s.k(&["get", "cm,ns", "-A"])
    );
}

/// A ConfigMap owned by `owners` (api_version, kind, name, uid, block).
fn owned_cm(
    ns: &str,
    name: &str,
    owners: &[(&str, &str, &str, &str, bool)],
    finalizers: &[&str],
) -> String {
    let refs: Vec<String> = owners
        .iter()
        .map(|(av, k, n, u, b)| {
            format!("  - {{apiVersion: {av}, kind: {k}, name: {n}, uid: \"{u}\", blockOwnerDeletion: {b}}}\n")
        })
        .collect();
    let fins = if finalizers.is_empty() {
        String::new()
    } else {
        format!("  finalizers: [{}]\n", finalizers.join(", "))
    };
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n{fins}  ownerReferences:\n{}data: {{k: v}}\n",
        refs.concat()
    )
}

#[test]
fn background_cascades_and_dangling_owners() {
    let s = Server::start();
    s.k(&["create", "namespace", "bg"]);
    s.k(&["create", "namespace", "other"]);

    // owner <- child <- grandchild, deleted the kubectl way (Background).
    s.k(&["create", "configmap", "owner", "-n", "bg"]);
    let owner = uid(&s, &["cm", "owner", "-n", "bg"]);
    s.k_in(
        &owned_cm(
            "bg",
            "child",
            &[("v1", "ConfigMap", "owner", &owner, true)],
            &[],
        ),
        &["apply", "-f", "-"],
    );
    let child = uid(&s, &["cm", "child", "-n", "bg"]);
    s.k_in(
        &owned_cm(
            "bg",
            "grandchild",
            &[("v1", "ConfigMap", "child", &child, false)],
            &[],
        ),
        &["apply", "-f", "-"],
    );
    // Two owners, one of which stays: survives, loses the dangling reference.
    s.k(&["create", "configmap", "keeper", "-n", "bg"]);
    let keeper = uid(&s, &["cm", "keeper", "-n", "bg"]);
    s.k_in(
        &owned_cm(
            "bg",
            "shared",
            &[
                ("v1", "ConfigMap", "owner", &owner, false),
                ("v1", "ConfigMap", "keeper", &keeper, false),
            ],
            &[],
        ),
        &["apply", "-f", "-"],
    );
    // Let the collector see the graph before the owner goes.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        exists(&s, &["cm", "grandchild", "-n", "bg"]),
        "a dependent with a live owner was collected"
    );
    s.k(&["delete", "configmap", "owner", "-n", "bg"]);
    wait_gone(&s, &["cm", "child", "-n", "bg"]);
    wait_gone(&s, &["cm", "grandchild", "-n", "bg"]);
    assert!(
        wait_until(WAIT, || {
            s.k(&[
                "get",
                "cm",
                "shared",
                "-n",
                "bg",
                "-o",
                "jsonpath={.metadata.ownerReferences[*].name}",
            ]) == "keeper"
        }),
        "the dangling reference was not removed from a dependent with another owner: {}",
        s.k(&["get", "cm", "shared", "-n", "bg", "-o", "yaml"])
    );

    // A reference to a uid that never existed.
    s.k_in(
        &owned_cm(
            "bg",
            "dangling",
            &[(
                "v1",
                "ConfigMap",
                "ghost",
                "0f0f0f0f-0000-4000-8000-000000000000",
                false,
            )],
            &[],
        ),
        &["apply", "-f", "-"],
    );
    wait_gone(&s, &["cm", "dangling", "-n", "bg"]);

    // An owner of that name exists, but it is another object (uid mismatch).
    s.k(&["create", "configmap", "reborn", "-n", "bg"]);
    s.k_in(
        &owned_cm(
            "bg",
            "stale",
            &[(
                "v1",
                "ConfigMap",
                "reborn",
                "11111111-0000-4000-8000-000000000000",
                false,
            )],
            &[],
        ),
        &["apply", "-f", "-"],
    );
    wait_gone(&s, &["cm", "stale", "-n", "bg"]);
    assert!(exists(&s, &["cm", "reborn", "-n", "bg"]));

    // A namespaced owner cannot own objects of another namespace: the
    // dependent is collected and a warning names the bad reference.
    s.k(&["create", "configmap", "elsewhere", "-n", "other"]);
    let elsewhere = uid(&s, &["cm", "elsewhere", "-n", "other"]);
    s.k_in(
        &owned_cm(
            "bg",
            "crossns",
            &[("v1", "ConfigMap", "elsewhere", &elsewhere, false)],
            &[],
        ),
        &["apply", "-f", "-"],
    );
    wait_gone(&s, &["cm", "crossns", "-n", "bg"]);
    assert!(
        wait_until(WAIT, || s
            .k(&[
                "get",
                "events",
                "-n",
                "bg",
                "--field-selector",
                "reason=OwnerRefInvalidNamespace",
                "-o",
                "name"
            ])
            .contains("crossns")),
        "no OwnerRefInvalidNamespace event: {}",
        s.k(&["get", "events", "-n", "bg"])
    );
    let msg = s.k(&[
        "get",
        "events",
        "-n",
        "bg",
        "--field-selector",
        "reason=OwnerRefInvalidNamespace",
        "-o",
        "jsonpath={.items[0].message}",
    ]);
    assert_eq!(
        msg,
        format!(
            "ownerRef [v1/ConfigMap, namespace: bg, name: elsewhere, uid: {elsewhere}] does not exist in namespace \"bg\""
        )
    );

    // A cluster-scoped owner of namespaced objects is fine, and its
    // deletion cascades.
    s.k(&[
        "create",
        "clusterrole",
        "gc-owner",
        "--verb=get",
        "--resource=pods",
    ]);
    let role = uid(&s, &["clusterrole", "gc-owner"]);
    s.k_in(
        &owned_cm(
            "other",
            "by-role",
            &[(
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                "gc-owner",
                &role,
                false,
            )],
            &[],
        ),
        &["apply", "-f", "-"],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        exists(&s, &["cm", "by-role", "-n", "other"]),
        "a dependent of a live cluster-scoped owner was collected"
    );
    s.k(&["delete", "clusterrole", "gc-owner"]);
    wait_gone(&s, &["cm", "by-role", "-n", "other"]);

    // A cluster-scoped object cannot be owned by a namespaced one: the
    // reference cannot be resolved, so it is kept, with a warning.
    s.k_in(
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: bad-dep\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: keeper, uid: \"{keeper}\"}}]\nrules: []\n"
        ),
        &["apply", "-f", "-"],
    );
    assert!(
        wait_until(WAIT, || s
            .k(&[
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                "reason=OwnerRefInvalidNamespace",
                "-o",
                "name"
            ])
            .contains("bad-dep")),
        "no OwnerRefInvalidNamespace event for a cluster-scoped dependent: {}",
        s.k(&["get", "events", "-A"])
    );
    assert!(
        exists(&s, &["clusterrole", "bad-dep"]),
        "a cluster-scoped dependent of a namespaced owner was collected"
    );
}

#[test]
fn orphan_and_foreground_deletion() {
    let s = Server::start();
    s.k(&["create", "namespace", "fg"]);

    // --cascade=orphan: the owner goes, the dependent stays without the reference.
    s.k(&["create", "configmap", "parent", "-n", "fg"]);
    let parent = uid(&s, &["cm", "parent", "-n", "fg"]);
    s.k_in(
        &owned_cm(
            "fg",
            "kid",
            &[("v1", "ConfigMap", "parent", &parent, true)],
            &[],
        ),
        &["apply", "-f", "-"],
    );
    std::thread::sleep(Duration::from_millis(300));
    s.k(&[
        "delete",
        "configmap",
        "parent",
        "-n",
        "fg",
        "--cascade=orphan",
    ]);
    wait_gone(&s, &["cm", "parent", "-n", "fg"]);
    assert!(
        exists(&s, &["cm", "kid", "-n", "fg"]),
        "an orphaned dependent was deleted"
    );
    assert_eq!(
        s.k(&[
            "get",
            "cm",
            "kid",
            "-n",
            "fg",
            "-o",
            "jsonpath={.metadata.ownerReferences}"
        ]),
        ""
    );

    // The orphan finalizer by hand: same outcome.
    s.k_in(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: parent2, namespace: fg, finalizers: [orphan]}\n",
        &["apply", "-f", "-"],
    );
    let parent2 = uid(&s, &["cm", "parent2", "-n", "fg"]);
    s.k_in(
        &owned_cm(
            "fg",
            "kid2",
            &[("v1", "ConfigMap", "parent2", &parent2, true)],
            &[],
        ),
        &["apply", "-f", "-"],
    );
    std::thread::sleep(Duration::from_millis(300));
    // No propagationPolicy, so the object's own finalizer decides (kubectl
    // delete would send an explicit Background, which drops it, as upstream).
    s.k(&[
        "delete",
        "--raw",
        "/api/v1/namespaces/fg/configmaps/parent2",
    ]);
    wait_gone(&s, &["cm", "parent2", "-n", "fg"]);
    assert!(exists(&s, &["cm", "kid2", "-n", "fg"]));
    assert_eq!(
        s.k(&[
            "get",
            "cm",
            "kid2",
            "-n",
            "fg",
            "-o",
            "jsonpath={.metadata.ownerReferences}"
        ]),
        ""
    );

    // --cascade=foreground: the owner waits for a blocking dependent that is
    // held by its own finalizer, and goes once the dependent has gone.
    s.k(&["create", "configmap", "boss", "-n", "fg"]);
    let boss = uid(&s, &["cm", "boss", "-n", "fg"]);
    s.k_in(
        &owned_cm(
            "fg",
            "worker",
            &[("v1", "ConfigMap", "boss", &boss, true)],
            &["example.com/hold"],
        ),
        &["apply", "-f", "-"],
    );
    s.k_in(
        &owned_cm(
            "fg",
            "helper",
            &[("v1", "ConfigMap", "boss", &boss, false)],
            &[],
        ),
        &["apply", "-f", "-"],
    );
    std::thread::sleep(Duration::from_millis(300));
    s.k(&[
        "delete",
        "configmap",
        "boss",
        "-n",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    // The dependents are deleted; the held one stays with a deletionTimestamp.
    wait_gone(&s, &["cm", "helper", "-n", "fg"]);
    assert!(
        wait_until(WAIT, || !s
            .k(&[
                "get",
                "cm",
                "worker",
                "-n",
                "fg",
                "-o",
                "jsonpath={.metadata.deletionTimestamp}"
            ])
            .is_empty()),
        "the blocking dependent was not deleted"
    );
    std::thread::sleep(Duration::from_millis(500));
    let fins = s.k(&[
        "get",
        "cm",
        "boss",
        "-n",
        "fg",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]);
    assert!(
        fins.contains("foregroundDeletion"),
        "owner must wait in foreground deletion, finalizers: {fins}"
    );
    s.k(&[
        "patch",
        "configmap",
        "worker",
        "-n",
        "fg",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    wait_gone(&s, &["cm", "worker", "-n", "fg"]);
    wait_gone(&s, &["cm", "boss", "-n", "fg"]);

    // The foregroundDeletion finalizer by hand, with no dependents at all.
    s.k_in(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lonely, namespace: fg, finalizers: [foregroundDeletion]}\n",
        &["apply", "-f", "-"],
    );
    s.k(&["delete", "configmap", "lonely", "-n", "fg", "--wait=false"]);
    wait_gone(&s, &["cm", "lonely", "-n", "fg"]);
}

#[test]
fn deleting_a_replicaset_deletes_its_pods() {
    let s = Server::start();
    s.k(&["create", "namespace", "rs"]);
    s.k_in(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web, namespace: rs}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"#,
        &["apply", "-f", "-"],
    );
    let pods = || {
        s.k(&["get", "pods", "-n", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count()
    };
    assert!(
        wait_until(WAIT, || pods() == 2),
        "the ReplicaSet did not create its pods"
    );
    s.k(&["delete", "replicaset", "web", "-n", "rs"]);
    assert!(
        wait_until(WAIT, || pods() == 0),
        "pods left: {}",
        s.k(&["get", "pods", "-n", "rs"])
    );
}
