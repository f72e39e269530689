//! The scheduler against simulated nodes, driven by stock kubectl: filters
//! (resources, nodeSelector, taints, hostPort, cordon, node and pod
//! affinity, topology spread), upstream's FailedScheduling wording, the
//! PodScheduled condition, scoring strategies, WaitForFirstConsumer volumes
//! and preemption.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Server, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn sim_server(nodes: u32, extra: &[&str]) -> Server {
    let mut b = Server::builder()
        .arg("--simulate-nodes")
        .arg(nodes.to_string())
        .arg("--simulate-node-cpu")
        .arg("2")
        .arg("--simulate-node-memory")
        .arg("4Gi");
    for a in extra {
        b = b.arg(*a);
    }
    let s = b.start();
    assert!(
        wait_until(WAIT, || {
            let out = s.kubectl(&["get", "nodes", "--no-headers"]);
            let text = common::stdout(&out);
            text.lines().filter(|l| l.contains(" Ready ")).count() == nodes as usize
        }),
        "simulated nodes never became Ready:\n{}",
        s.k(&["get", "nodes"])
    );
    s
}

fn pod(s: &Server, ns: &str, name: &str) -> Value {
    s.k_json(&["get", "pod", name, "-n", ns])
}

/// Wait until the pod is bound; returns its node.
#[track_caller]
fn wait_node(s: &Server, ns: &str, name: &str) -> String {
    let mut node = String::new();
    let ok = wait_until(WAIT, || {
        let out = s.kubectl(&[
            "get",
            "pod",
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.nodeName}",
        ]);
        node = common::stdout(&out).trim().to_string();
        !node.is_empty()
    });
    assert!(
        ok,
        "pod {ns}/{name} was never scheduled:\n{}",
        s.k(&["describe", "pod", name, "-n", ns])
    );
    node
}

/// The message of the pod's latest FailedScheduling event, once there is one
/// that satisfies `want`.
#[track_caller]
fn wait_failed_scheduling(s: &Server, ns: &str, name: &str, want: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    let ok = wait_until(WAIT, || {
        let ev = s.k_json(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            &format!("involvedObject.name={name},reason=FailedScheduling"),
        ]);
        let msgs: Vec<String> = ev["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str().map(String::from))
            .collect();
        match msgs.iter().find(|m| want(m)) {
            Some(m) => {
                last = m.clone();
                true
            }
            None => {
                last = msgs.join("\n");
                false
            }
        }
    });
    assert!(
        ok,
        "no matching FailedScheduling event for {ns}/{name}; saw:\n{last}"
    );
    last
}

fn apply(s: &Server, yaml: &str) {
    s.k_in(yaml, &["apply", "-f", "-"]);
}

fn simple_pod(name: &str, ns: &str, extra_spec: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\nspec:\n  containers:\n  - name: c\n    image: nginx\n    resources: {{requests: {{cpu: \"{cpu}\"}}}}\n{extra_spec}"
    )
}

#[test]
fn filters_and_failed_scheduling_messages() {
    let s = sim_server(3, &[]);
    s.k(&["create", "namespace", "f"]);
    s.k(&["label", "node", "sim-0", "disk=ssd"]);
    s.k(&["taint", "node", "sim-2", "dedicated=gpu:NoSchedule"]);

    // nodeSelector.
    apply(
        &s,
        &simple_pod("ssd", "f", "  nodeSelector: {disk: ssd}\n", "100m"),
    );
    assert_eq!(wait_node(&s, "f", "ssd"), "sim-0");
    let p = pod(&s, "f", "ssd");
    let scheduled = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned();
    assert_eq!(
        scheduled.as_ref().map(|c| c["status"].clone()),
        Some(Value::from("True")),
        "{p}"
    );
    // The Scheduled event is written just after the binding: wait for it.
    let mut desc = String::new();
    let seen = wait_until(WAIT, || {
        desc = s.k(&["describe", "pod", "ssd", "-n", "f"]);
        desc.contains("Successfully assigned f/ssd to sim-0")
    });
    assert!(seen, "{desc}");
    assert!(desc.contains("default-scheduler"), "{desc}");

    // Too big for any node, and a taint: upstream's exact wording.
    apply(&s, &simple_pod("big", "f", "", "3"));
    let msg = wait_failed_scheduling(&s, "f", "big", |m| m.contains("Insufficient cpu"));
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    let mut cond = Value::Null;
    let ok = wait_until(WAIT, || {
        let p = pod(&s, "f", "big");
        cond = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "PodScheduled")
            .cloned()
            .unwrap_or(Value::Null);
        cond["reason"] == "Unschedulable"
    });
    assert!(ok, "PodScheduled never became False/Unschedulable: {cond}");
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("Unschedulable"))
    );
    assert_eq!(cond["message"].as_str(), Some(msg.as_str()));
    let desc = s.k(&["describe", "pod", "big", "-n", "f"]);
    assert!(
        desc.contains("FailedScheduling") && desc.contains("untolerated taint {dedicated: gpu}"),
        "{desc}"
    );

    // A toleration opens the tainted node.
    apply(
        &s,
        &simple_pod(
            "gpu",
            "f",
            "  nodeSelector: {kubernetes.io/hostname: sim-2}\n  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n",
            "100m",
        ),
    );
    assert_eq!(wait_node(&s, "f", "gpu"), "sim-2");

    // hostPort conflicts.
    let port = "  nodeSelector: {kubernetes.io/hostname: sim-1}\n";
    let with_port = |name: &str| {
        simple_pod(name, "f", port, "100m").replace(
            "    image: nginx\n",
            "    image: nginx\n    ports: [{containerPort: 80, hostPort: 8080}]\n",
        )
    };
    apply(&s, &with_port("port1"));
    assert_eq!(wait_node(&s, "f", "port1"), "sim-1");
    apply(&s, &with_port("port2"));
    let msg = wait_failed_scheduling(&s, "f", "port2", |m| m.contains("free ports"));
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, \
         1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
         2 Preemption is not helpful for scheduling."
    );
    // Freeing the port lets the waiting pod in (a pod deletion requeues it).
    s.k(&["delete", "pod", "port1", "-n", "f", "--wait=false"]);
    assert_eq!(wait_node(&s, "f", "port2"), "sim-1");

    // Cordon: the unschedulable taint and the NodeUnschedulable filter.
    s.k(&["cordon", "sim-0"]);
    assert!(wait_until(WAIT, || s
        .k(&["describe", "node", "sim-0"])
        .contains("node.kubernetes.io/unschedulable:NoSchedule")));
    apply(
        &s,
        &simple_pod("cordoned", "f", "  nodeSelector: {disk: ssd}\n", "100m"),
    );
    let msg = wait_failed_scheduling(&s, "f", "cordoned", |m| m.contains("unschedulable"));
    assert!(
        msg.starts_with(
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable."
        ),
        "{msg}"
    );
    s.k(&["uncordon", "sim-0"]);
    assert_eq!(wait_node(&s, "f", "cordoned"), "sim-0");

    // Required node affinity with matchFields and Gt.
    s.k(&["label", "node", "sim-1", "cores=8"]);
    apply(
        &s,
        &simple_pod(
            "aff",
            "f",
            "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions: [{key: cores, operator: Gt, values: [\"4\"]}]\n",
            "100m",
        ),
    );
    assert_eq!(wait_node(&s, "f", "aff"), "sim-1");
    apply(
        &s,
        &simple_pod(
            "byname",
            "f",
            "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchFields: [{key: metadata.name, operator: In, values: [sim-2]}]\n  tolerations: [{operator: Exists}]\n",
            "100m",
        ),
    );
    assert_eq!(wait_node(&s, "f", "byname"), "sim-2");

    // A missing PVC fails every node before the filters run.
    apply(
        &s,
        &simple_pod(
            "nopvc",
            "f",
            "  volumes: [{name: d, persistentVolumeClaim: {claimName: nope}}]\n",
            "100m",
        ),
    );
    let msg = wait_failed_scheduling(&s, "f", "nopvc", |m| m.contains("nope"));
    assert_eq!(
        msg,
        "0/3 nodes are available: persistentvolumeclaim \"nope\" not found. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
}

#[test]
fn spreading_affinity_and_anti_affinity() {
    let s = sim_server(3, &[]);
    s.k(&["create", "namespace", "t"]);
    for (n, zone) in [("sim-0", "a"), ("sim-1", "a"), ("sim-2", "b")] {
        s.k(&[
            "label",
            "node",
            n,
            &format!("topology.kubernetes.io/zone={zone}"),
        ]);
    }

    // Required anti-affinity on hostname: one per node, the fourth waits.
    let anti = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: kubernetes.io/hostname\n        labelSelector: {matchLabels: {group: solo}}\n";
    let mut nodes = Vec::new();
    for i in 0..4 {
        let y = simple_pod(&format!("solo-{i}"), "t", anti, "100m")
            .replace("labels: {app: ", "labels: {group: solo, app: ");
        apply(&s, &y);
        if i < 3 {
            nodes.push(wait_node(&s, "t", &format!("solo-{i}")));
        }
    }
    nodes.sort();
    assert_eq!(nodes, ["sim-0", "sim-1", "sim-2"]);
    let msg = wait_failed_scheduling(&s, "t", "solo-3", |m| m.contains("anti-affinity"));
    assert_eq!(
        msg,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );

    // Zone spreading with maxSkew 1: four pods split 2/2 between zones a and b.
    let spread = "  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: topology.kubernetes.io/zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector: {matchLabels: {group: spread}}\n";
    let mut zones: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..4 {
        let y = simple_pod(&format!("spread-{i}"), "t", spread, "100m")
            .replace("labels: {app: ", "labels: {group: spread, app: ");
        apply(&s, &y);
        let node = wait_node(&s, "t", &format!("spread-{i}"));
        let zone = if node == "sim-2" { "b" } else { "a" };
        *zones.entry(zone.to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        zones,
        BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 2)])
    );

    // A node without the topology key cannot take a constrained pod.
    let y = simple_pod(
        "nokey",
        "t",
        &spread.replace("topology.kubernetes.io/zone", "rack"),
        "100m",
    );
    apply(&s, &y);
    let msg = wait_failed_scheduling(&s, "t", "nokey", |m| m.contains("spread"));
    assert!(msg.starts_with("0/3 nodes are available: 3 node(s) didn't match pod topology spread constraints (missing required label)."), "{msg}");

    // Required pod affinity: follow the db pod into its zone.
    apply(
        &s,
        &simple_pod(
            "db",
            "t",
            "  nodeSelector: {kubernetes.io/hostname: sim-2}\n",
            "100m",
        ),
    );
    assert_eq!(wait_node(&s, "t", "db"), "sim-2");
    let aff = "  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: topology.kubernetes.io/zone\n        labelSelector: {matchLabels: {app: db}}\n";
    apply(&s, &simple_pod("near-db", "t", aff, "100m"));
    assert_eq!(wait_node(&s, "t", "near-db"), "sim-2");
}

#[test]
fn scoring_spreads_by_default_and_packs_with_most_allocated() {
    for (flag, want_distinct) in [(None, 3usize), (Some("MostAllocated"), 1)] {
        let extra: Vec<&str> = flag
            .map(|f| vec!["--scheduler-scoring", f])
            .unwrap_or_default();
        let s = sim_server(3, &extra);
        let mut nodes = Vec::new();
        for i in 0..3 {
            let name = format!("p{i}");
            apply(&s, &simple_pod(&name, "default", "", "500m"));
            nodes.push(wait_node(&s, "default", &name));
        }
        nodes.sort();
        nodes.dedup();
        assert_eq!(nodes.len(), want_distinct, "{flag:?}: {nodes:?}");
    }
}

#[test]
fn wait_for_first_consumer_volumes_get_a_selected_node() {
    let s = sim_server(2, &[]);
    apply(
        &s,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local}\nprovisioner: rancher.io/local-path\nvolumeBindingMode: WaitForFirstConsumer\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: default}\nspec:\n  storageClassName: local\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    apply(
        &s,
        &simple_pod(
            "user",
            "default",
            "  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]\n",
            "100m",
        ),
    );
    let node = wait_node(&s, "default", "user");
    let pvc = s.k_json(&["get", "pvc", "data"]);
    assert_eq!(
        pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"].as_str(),
        Some(node.as_str()),
        "{pvc}"
    );

    // An Immediate class leaves unbound claims to the PV controller.
    apply(
        &s,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: now}\nprovisioner: example.com/x\nvolumeBindingMode: Immediate\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: early, namespace: default}\nspec:\n  storageClassName: now\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    apply(
        &s,
        &simple_pod(
            "waits",
            "default",
            "  volumes: [{name: d, persistentVolumeClaim: {claimName: early}}]\n",
            "100m",
        ),
    );
    let msg = wait_failed_scheduling(&s, "default", "waits", |m| m.contains("immediate"));
    assert!(
        msg.starts_with(
            "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        ),
        "{msg}"
    );
}

#[test]
fn preemption_evicts_lower_priority_pods() {
    let s = sim_server(2, &[]);
    apply(
        &s,
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n---\n\
         apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: low}\nvalue: 10\n",
    );
    // Fill both nodes with low-priority pods of 1500m.
    for i in 0..2 {
        let y = simple_pod(
            &format!("low-{i}"),
            "default",
            "  priorityClassName: low\n",
            "1500m",
        );
        apply(&s, &y);
        wait_node(&s, "default", &format!("low-{i}"));
    }
    // preemptionPolicy Never: may not preempt.
    apply(
        &s,
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: polite}\nvalue: 2000\npreemptionPolicy: Never\n",
    );
    apply(
        &s,
        &simple_pod("polite", "default", "  priorityClassName: polite\n", "1"),
    );
    let msg = wait_failed_scheduling(&s, "default", "polite", |m| m.contains("preemption"));
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    s.k(&["delete", "pod", "polite"]);

    apply(
        &s,
        &simple_pod("vip", "default", "  priorityClassName: high\n", "1"),
    );
    let node = wait_node(&s, "default", "vip");
    let vip = pod(&s, "default", "vip");
    assert_eq!(vip["spec"]["priority"], 1000);
    assert_eq!(
        vip["status"]["nominatedNodeName"].as_str(),
        Some(node.as_str()),
        "{vip}"
    );
    let pods = s.k(&["get", "pods", "-o", "name"]);
    let low_left: Vec<&str> = pods.lines().filter(|l| l.contains("low-")).collect();
    assert_eq!(low_left.len(), 1, "exactly one victim: {pods}");
    let events = s.k(&["get", "events", "-o", "json"]);
    let uid = vip["metadata"]["uid"].as_str().unwrap_or_default();
    assert!(
        events.contains(&format!("Preempted by pod {uid} on node {node}")),
        "{events}"
    );
    let desc = s.k(&["describe", "pod", "vip"]);
    assert!(
        desc.contains("0/2 nodes are available: 2 Insufficient cpu."),
        "{desc}"
    );
    assert!(
        desc.contains(&format!("Successfully assigned default/vip to {node}")),
        "{desc}"
    );
}
