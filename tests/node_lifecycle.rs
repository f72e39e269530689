//! The node lifecycle controller with simulated nodes: a node that stops
//! heartbeating (grace period shortened by flag) becomes Unknown with the
//! unreachable taints; its pods are marked NotReady and evicted when their
//! tolerationSeconds run out, and a ReplicaSet replaces them on healthy
//! nodes; when the node comes back the taints go.

mod common;

use std::time::Duration;

use common::{Server, squeeze, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(40);

const RS: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: fleet, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: fleet}}
  template:
    metadata: {labels: {app: fleet}}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 1}
      containers: [{name: c, image: nginx}]
"#;

fn fleet(s: &Server) -> Vec<Value> {
    let list = s.k_json(&["get", "pods", "-l", "app=fleet"]);
    list["items"].as_array().cloned().unwrap_or_default()
}

fn is_running(p: &Value) -> bool {
    p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
}

#[test]
fn unreachable_node_is_tainted_and_its_pods_move() {
    let s = Server::builder()
        .arg("--simulate-nodes")
        .arg("3")
        .arg("--node-monitor-grace-period")
        .arg("3s")
        .start();
    assert!(wait_until(WAIT, || common::stdout(&s.kubectl(&[
        "get",
        "nodes",
        "--no-headers"
    ]))
    .lines()
    .filter(|l| l.contains(" Ready "))
    .count()
        == 3));

    s.k_in(RS, &["apply", "-f", "-"]);
    assert!(
        wait_until(WAIT, || {
            let pods = fleet(&s);
            pods.len() == 3 && pods.iter().all(is_running)
        }),
        "the ReplicaSet's pods never ran:\n{}",
        s.k(&["get", "pods", "-o", "wide"])
    );
    let victim_node = fleet(&s)[0]["spec"]["nodeName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let on_victim: Vec<String> = fleet(&s)
        .iter()
        .filter(|p| p["spec"]["nodeName"] == victim_node.as_str())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();

    // A bare pod with the default 300 s tolerations stays (NotReady).
    s.k_in(
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: patient}}\nspec:\n  nodeName: {victim_node}\n  containers: [{{name: c, image: nginx}}]\n"
        ),
        &["apply", "-f", "-"],
    );
    assert!(wait_until(
        WAIT,
        || s.k_json(&["get", "pod", "patient"])["status"]["phase"] == "Running"
    ));

    s.k(&[
        "annotate",
        "node",
        &victim_node,
        "rk3s.io/simulate-stopped=true",
    ]);
    assert!(
        wait_until(WAIT, || {
            let d = s.k(&["describe", "node", &victim_node]);
            d.contains("node.kubernetes.io/unreachable:NoExecute")
                && d.contains("node.kubernetes.io/unreachable:NoSchedule")
        }),
        "{}",
        s.k(&["describe", "node", &victim_node])
    );
    let n = s.k_json(&["get", "node", &victim_node]);
    let ready = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready["status"], "Unknown");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    let row = squeeze(&s.k(&["get", "node", &victim_node, "--no-headers"]));
    assert!(row.starts_with(&format!("{victim_node} NotReady")), "{row}");

    // The fleet's pods there are evicted and replaced on the other nodes.
    assert!(
        wait_until(WAIT, || {
            let pods = fleet(&s);
            let running: Vec<&Value> = pods.iter().filter(|p| is_running(p)).collect();
            running.len() == 3
                && running
                    .iter()
                    .all(|p| p["spec"]["nodeName"] != victim_node.as_str())
        }),
        "pods did not move off {victim_node}:\n{}",
        s.k(&["get", "pods", "-o", "wide"])
    );
    let events = s.k_json(&[
        "get",
        "events",
        "--field-selector",
        "reason=TaintManagerEviction",
    ]);
    let messages: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    for name in &on_victim {
        let want = format!("Marking for deletion Pod default/{name}");
        assert!(
            messages.contains(&want.as_str()),
            "{want} not in {messages:?}"
        );
    }

    // The patient pod is still there, marked NotReady.
    let p = s.k_json(&["get", "pod", "patient"]);
    assert!(p["metadata"]["deletionTimestamp"].is_null());
    let ready = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready["status"], "False", "{p}");

    // The node comes back: Ready, no taints, the pod Ready again.
    s.k(&[
        "annotate",
        "node",
        &victim_node,
        "rk3s.io/simulate-stopped-",
    ]);
    assert!(
        wait_until(WAIT, || {
            let n = s.k_json(&["get", "node", &victim_node]);
            n["spec"]["taints"].as_array().is_none_or(|t| t.is_empty())
                && squeeze(&s.k(&["get", "node", &victim_node, "--no-headers"]))
                    .starts_with(&format!("{victim_node} Ready"))
        }),
        "{}",
        s.k(&["describe", "node", &victim_node])
    );
    assert!(wait_until(WAIT, || {
        let p = s.k_json(&["get", "pod", "patient"]);
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    }));
    let desc = s.k(&["describe", "node", &victim_node]);
    assert!(
        desc.contains(&format!("Node {victim_node} status is now: NodeNotReady")),
        "{desc}"
    );
    assert!(
        wait_until(WAIT, || s
            .k(&["describe", "node", &victim_node])
            .contains(&format!("Node {victim_node} status is now: NodeReady"))),
        "{}",
        s.k(&["describe", "node", &victim_node])
    );
}
