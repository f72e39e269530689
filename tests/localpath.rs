//! The built-in local-path provisioner and PV binder, with a simulated
//! node: the default StorageClass, WaitForFirstConsumer provisioning once
//! the scheduler picks a node, binding, reclaim on claim deletion; static
//! volumes bind and are retained.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(60);

fn phase(s: &Server, kind: &str, name: &str) -> String {
    s.k(&["get", kind, name, "-o", "jsonpath={.status.phase}"])
}

#[test]
fn provisions_on_first_consumer_binds_and_deletes() {
    let s = Server::builder().arg("--simulate-nodes").arg("1").start();
    // The default class, as k3s's.
    assert!(
        wait_until(T, || s
            .kubectl(&["get", "sc", "local-path"])
            .status
            .success()),
        "no local-path StorageClass"
    );
    let table = s.k(&["get", "storageclass"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("local-path"))
        .map(squeeze)
        .unwrap_or_default();
    assert!(
        row.starts_with(
            "local-path (default) rancher.io/local-path Delete WaitForFirstConsumer false"
        ),
        "{table}"
    );

    // A claim without a class gets the default one and waits for a pod.
    s.k_in(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
"#,
        &["apply", "-f", "-"],
    );
    let pvc = s.k_json(&["get", "pvc", "data"]);
    assert_eq!(pvc["spec"]["storageClassName"], "local-path");
    assert_eq!(pvc["status"]["phase"], "Pending");
    s.wait_event(
        "data",
        "WaitForFirstConsumer: waiting for first consumer to be created before binding",
        T,
    );
    assert!(
        s.k(&["get", "pv", "-o", "name"]).trim().is_empty(),
        "nothing provisioned before a consumer"
    );

    // A pod uses it: the scheduler picks the node, the provisioner makes
    // the volume there and the claim binds.
    s.k_in(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  containers: [{name: c, image: busybox}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]
"#,
        &["apply", "-f", "-"],
    );
    // As upstream's PreBind, the pod is bound to its node only once the
    // claim is: the node never sees a pod whose volume does not exist yet.
    assert!(wait_until(T, || !s
        .k(&["get", "pod", "app", "-o", "jsonpath={.spec.nodeName}"])
        .is_empty()));
    assert_eq!(
        phase(&s, "pvc", "data"),
        "Bound",
        "claim bound before the pod"
    );
    assert!(
        wait_until(T, || phase(&s, "pvc", "data") == "Bound"),
        "claim never bound: {}\n{:#?}",
        s.k(&["get", "pvc,pv", "-o", "wide"]),
        s.events("data")
    );
    let pvc = s.k_json(&["get", "pvc", "data"]);
    let uid = pvc["metadata"]["uid"].as_str().unwrap().to_string();
    let node = s.k(&["get", "pod", "app", "-o", "jsonpath={.spec.nodeName}"]);
    assert!(!node.is_empty());
    assert_eq!(
        pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        node.as_str()
    );
    assert_eq!(
        pvc["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"],
        "rancher.io/local-path"
    );
    let pv_name = format!("pvc-{uid}");
    assert_eq!(pvc["spec"]["volumeName"], pv_name.as_str());
    assert_eq!(pvc["status"]["capacity"]["storage"], "2Gi");
    assert_eq!(pvc["status"]["accessModes"][0], "ReadWriteOnce");

    assert!(wait_until(T, || phase(&s, "pv", &pv_name) == "Bound"));
    let pv = s.k_json(&["get", "pv", &pv_name]);
    let path = PathBuf::from(pv["spec"]["hostPath"]["path"].as_str().unwrap());
    assert_eq!(
        path,
        s.data_dir
            .join("storage")
            .join(format!("pvc-{uid}_default_data"))
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["storageClassName"], "local-path");
    assert_eq!(pv["spec"]["claimRef"]["uid"], uid.as_str());
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        serde_json::json!({"key": "kubernetes.io/hostname", "operator": "In", "values": [node]})
    );
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "rancher.io/local-path"
    );
    assert!(path.is_dir());
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o777
    );
    let row = squeeze(s.k(&["get", "pvc", "data", "--no-headers"]).trim());
    assert!(
        row.starts_with(&format!("data Bound {pv_name} 2Gi RWO local-path")),
        "{row}"
    );
    s.wait_event(
        "data",
        &format!("ProvisioningSucceeded: Successfully provisioned volume {pv_name}"),
        T,
    );
    // The order of writes proves it: the volume was provisioned before the
    // pod was bound to the node (its Scheduled event).
    s.wait_event("app", "Scheduled", T);
    let rv_of = |name: &str, reason: &str| -> u64 {
        let list = s.k_json(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name},reason={reason}"),
        ]);
        list["items"][0]["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {reason} event for {name}: {list}"))
    };
    assert!(rv_of("data", "ProvisioningSucceeded") < rv_of("app", "Scheduled"));

    // Deleting the claim (pod first) deletes the volume and its data.
    fs::write(path.join("file"), "data").unwrap();
    s.k(&["delete", "pod", "app", "--grace-period=0", "--force"]);
    s.k(&["delete", "pvc", "data"]);
    assert!(
        wait_until(T, || !s.kubectl(&["get", "pv", &pv_name]).status.success()),
        "PV not deleted: {}",
        s.k(&["get", "pv", "-o", "wide"])
    );
    assert!(!path.exists(), "volume directory removed");
}

#[test]
fn static_volumes_bind_immediately_and_are_retained() {
    let s = Server::builder().arg("--simulate-nodes").arg("1").start();
    s.k_in(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: small}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {path: /tmp/rk3s-test-small}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: big}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {path: /tmp/rk3s-test-big}
"#,
        &["apply", "-f", "-"],
    );
    assert!(wait_until(T, || phase(&s, "pv", "small") == "Available"
        && phase(&s, "pv", "big") == "Available"));
    s.k_in(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: noclass}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#,
        &["apply", "-f", "-"],
    );
    // The smallest volume that fits (2Gi needs "big"), bound at once.
    assert!(
        wait_until(T, || phase(&s, "pvc", "claim") == "Bound"),
        "{}",
        s.k(&["get", "pvc,pv"])
    );
    assert_eq!(
        s.k(&["get", "pvc", "claim", "-o", "jsonpath={.spec.volumeName}"]),
        "big"
    );
    assert!(wait_until(T, || phase(&s, "pv", "big") == "Bound"));
    let pv = s.k_json(&["get", "pv", "big"]);
    assert_eq!(pv["spec"]["claimRef"]["name"], "claim");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    // "" means no class: it is not defaulted and no "manual" volume matches it.
    assert_eq!(
        s.k(&[
            "get",
            "pvc",
            "noclass",
            "-o",
            "jsonpath={.spec.storageClassName}"
        ]),
        ""
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(phase(&s, "pvc", "noclass"), "Pending");
    assert_eq!(phase(&s, "pv", "small"), "Available");

    // Retain: the volume outlives its claim, Released.
    s.k(&["delete", "pvc", "claim"]);
    assert!(
        wait_until(T, || phase(&s, "pv", "big") == "Released"),
        "{}",
        s.k(&["get", "pv"])
    );
}
