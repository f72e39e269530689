//! PodDisruptionBudgets on simulated nodes, driven by stock kubectl and
//! curl: the disruption controller's status numbers and condition, the
//! eviction subresource (201 vs 429 with upstream's Status), and
//! `kubectl drain` evicting through a budget.

mod common;

use std::time::Duration;

use common::{Req, Server, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn sim_server(nodes: u32) -> Server {
    let s = Server::builder()
        .arg("--simulate-nodes")
        .arg(nodes.to_string())
        .start();
    assert!(
        wait_until(WAIT, || {
            let text = s.k(&["get", "nodes", "--no-headers"]);
            text.lines().filter(|l| l.contains(" Ready ")).count() == nodes as usize
        }),
        "simulated nodes never became Ready"
    );
    s
}

fn ready_pods(s: &Server, selector: &str) -> Vec<String> {
    let list = s.k_json(&["get", "pods", "-l", selector, "-o", "json"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[track_caller]
fn deployment(s: &Server, name: &str, replicas: u32) -> Vec<String> {
    s.k(&[
        "create",
        "deployment",
        name,
        "--image=busybox",
        &format!("--replicas={replicas}"),
    ]);
    let sel = format!("app={name}");
    let mut pods = Vec::new();
    assert!(
        wait_until(WAIT, || {
            pods = ready_pods(s, &sel);
            pods.len() == replicas as usize
        }),
        "deployment {name} never had {replicas} ready pods: {pods:?}"
    );
    pods
}

/// Wait until the budget's status has these numbers
/// (expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed).
#[track_caller]
fn wait_pdb(s: &Server, name: &str, want: (i64, i64, i64, i64)) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = s.k_json(&["get", "pdb", name, "-o", "json"]);
        let st = &last["status"];
        let n = |f: &str| st[f].as_i64().unwrap_or(-1);
        (
            n("expectedPods"),
            n("desiredHealthy"),
            n("currentHealthy"),
            n("disruptionsAllowed"),
        ) == want
            && st["observedGeneration"] == last["metadata"]["generation"]
    });
    assert!(ok, "pdb {name} status never reached {want:?}: {last}");
    last
}

fn condition(pdb: &Value) -> (String, String) {
    let c = pdb["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"))
        .cloned()
        .unwrap_or(Value::Null);
    (
        c["status"].as_str().unwrap_or("").into(),
        c["reason"].as_str().unwrap_or("").into(),
    )
}

fn evict(s: &mut Server, pod: &str) -> common::Resp {
    s.request(
        Req::new(
            "POST",
            &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
        )
        .json(&json!({"apiVersion": "policy/v1", "kind": "Eviction",
                      "metadata": {"name": pod, "namespace": "default"}})),
    )
}

/// Status numbers for integer and percentage minAvailable and
/// maxUnavailable (percentages scale the controllers' replicas, rounded
/// up), the DisruptionAllowed condition and kubectl's PDB table.
#[test]
fn pdb_status_numbers() {
    let s = sim_server(1);
    deployment(&s, "web", 3);
    deployment(&s, "api", 4);
    s.k(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=2",
    ]);
    let pdb = wait_pdb(&s, "web", (3, 2, 3, 1));
    assert_eq!(condition(&pdb), ("True".into(), "SufficientPods".into()));
    s.k(&[
        "create",
        "pdb",
        "api",
        "--selector=app=api",
        "--max-unavailable=50%",
    ]);
    wait_pdb(&s, "api", (4, 2, 4, 2));
    s.k(&[
        "create",
        "pdb",
        "api-pct",
        "--selector=app=api",
        "--min-available=60%",
    ]);
    // 60% of 4 rounds up to 3.
    wait_pdb(&s, "api-pct", (4, 3, 4, 1));
    let rows = s.k(&["get", "pdb", "--no-headers"]);
    let rows: Vec<String> = rows.lines().map(common::squeeze).collect();
    assert!(
        rows.iter().any(|r| r.starts_with("web 2 N/A 1 ")),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r.starts_with("api N/A 50% 2 ")),
        "{rows:?}"
    );
    // Scaling the controller moves the numbers; a budget nobody can meet
    // allows nothing.
    s.k(&["scale", "deployment", "api", "--replicas=2"]);
    wait_pdb(&s, "api", (2, 1, 2, 1));
    s.k(&[
        "create",
        "pdb",
        "none",
        "--selector=app=nothing",
        "--min-available=1",
    ]);
    let pdb = wait_pdb(&s, "none", (0, 1, 0, 0));
    assert_eq!(condition(&pdb), ("False".into(), "InsufficientPods".into()));
    // A spec change bumps generation; status follows it.
    s.k(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":3}}"#,
    ]);
    let pdb = wait_pdb(&s, "web", (3, 3, 3, 0));
    assert_eq!(pdb["status"]["observedGeneration"], 2);
    assert_eq!(condition(&pdb), ("False".into(), "InsufficientPods".into()));
}

fn bare_pods(s: &Server, app: &str, names: &[&str]) {
    for n in names {
        s.k(&["run", n, "--image=busybox", &format!("--labels=app={app}")]);
    }
    assert!(
        wait_until(WAIT, || ready_pods(s, &format!("app={app}")).len()
            == names.len()),
        "pods never became ready"
    );
}

fn pod_gone(s: &Server, name: &str) -> bool {
    !s.k(&["get", "pods", "-o", "name"])
        .lines()
        .any(|l| l == format!("pod/{name}"))
}

/// Eviction against the controller's numbers: 429 with upstream's Status
/// while the budget allows nothing, 201 when it allows one (and then no
/// more), direct deletes without a budget, dry runs, input errors.
#[test]
fn eviction_honours_budgets() {
    let mut s = sim_server(1);
    bare_pods(&s, "solo", &["a", "b"]);
    s.k(&[
        "create",
        "pdb",
        "solo",
        "--selector=app=solo",
        "--min-available=2",
    ]);
    wait_pdb(&s, "solo", (2, 2, 2, 0));

    let st = evict(&mut s, "a").assert_status(429, "TooManyRequests");
    assert_eq!(
        st["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        st["details"]["causes"],
        json!([{"reason": "DisruptionBudget",
                "message": "The disruption budget solo needs 2 healthy pods and has 2 currently"}])
    );
    assert!(
        s.k_json(&["get", "pod", "a", "-o", "json"])["metadata"]["deletionTimestamp"].is_null()
    );

    // Mismatched names are a 400.
    let r = s.request(
        Req::new("POST", "/api/v1/namespaces/default/pods/a/eviction").json(
            &json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}}),
        ),
    );
    let st = r.assert_status(400, "BadRequest");
    assert_eq!(
        st["message"],
        "name in URL does not match name in Eviction object"
    );

    s.k(&[
        "patch",
        "pdb",
        "solo",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    wait_pdb(&s, "solo", (2, 1, 2, 1));
    // A dry run changes nothing.
    let r = s.request(
        Req::new(
            "POST",
            "/api/v1/namespaces/default/pods/a/eviction?dryRun=All",
        )
        .json(&json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "a"}})),
    );
    assert_eq!(r.status, 201, "{}", r.snippet());
    assert!(
        s.k_json(&["get", "pod", "a", "-o", "json"])["metadata"]["deletionTimestamp"].is_null()
    );
    assert_eq!(
        s.k_json(&["get", "pdb", "solo", "-o", "json"])["status"]["disruptionsAllowed"],
        1
    );

    let r = evict(&mut s, "a");
    assert_eq!(r.status, 201, "{}", r.snippet());
    assert_eq!(r.json()["status"], "Success");
    assert_eq!(
        s.k_json(&["get", "pdb", "solo", "-o", "json"])["status"]["disruptionsAllowed"],
        0
    );
    assert!(
        wait_until(WAIT, || pod_gone(&s, "a")),
        "evicted pod never went"
    );
    // Nothing replaces a bare pod: the budget stays spent.
    wait_pdb(&s, "solo", (1, 1, 1, 0));
    let st = evict(&mut s, "b").assert_status(429, "TooManyRequests");
    assert_eq!(
        st["details"]["causes"][0]["message"],
        "The disruption budget solo needs 1 healthy pods and has 1 currently"
    );

    // A pod no budget covers is simply deleted.
    s.k(&["run", "loner", "--image=busybox"]);
    let r = evict(&mut s, "loner");
    assert_eq!(r.status, 201, "{}", r.snippet());
    assert!(
        wait_until(WAIT, || pod_gone(&s, "loner")),
        "loner never went"
    );
    // Unknown pods are 404.
    evict(&mut s, "nope").assert_status(404, "NotFound");
}

/// The eviction subresource's own bookkeeping, with no disruption
/// controller to race it (the budget's status is written by hand): the
/// decrement, disruptedPods, the condition, a budget still being
/// processed, and unhealthyPodEvictionPolicy.
#[test]
fn eviction_charges_the_budget_status() {
    let mut s = Server::builder()
        .arg("--simulate-nodes")
        .arg("1")
        .arg("--disable")
        .arg("disruption")
        .start();
    bare_pods(&s, "solo", &["a", "b"]);
    // "c" is bound to a node no kubelet serves: its status is ours to set.
    s.k_in(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: c, labels: {app: solo}}\nspec:\n  nodeName: ghost\n  containers: [{name: c, image: busybox}]\n",
        &["apply", "-f", "-"],
    );
    s.k(&[
        "patch",
        "pod",
        "c",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"False"}]}}"#,
    ]);
    s.k(&[
        "create",
        "pdb",
        "solo",
        "--selector=app=solo",
        "--min-available=1",
    ]);
    let set_status = |s: &Server, allowed: i64, generation: i64| {
        let st = json!({"status": {"observedGeneration": generation, "disruptionsAllowed": allowed,
            "currentHealthy": 3, "desiredHealthy": 1, "expectedPods": 3,
            "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                            "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
        s.k(&[
            "patch",
            "pdb",
            "solo",
            "--subresource=status",
            "--type=merge",
            "-p",
            &st.to_string(),
        ]);
    };
    // observedGeneration behind generation: still being processed.
    set_status(&s, 2, 0);
    let st = evict(&mut s, "a").assert_status(429, "TooManyRequests");
    assert_eq!(
        st["details"]["causes"][0]["message"],
        "The disruption budget solo is still being processed by the server."
    );
    set_status(&s, 1, 1);
    assert_eq!(evict(&mut s, "a").status, 201);
    let pdb = s.k_json(&["get", "pdb", "solo", "-o", "json"]);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{pdb}");
    assert!(pdb["status"]["disruptedPods"]["a"].is_string(), "{pdb}");
    assert_eq!(condition(&pdb), ("False".into(), "InsufficientPods".into()));
    evict(&mut s, "b").assert_status(429, "TooManyRequests");

    // An unready pod: IfHealthyBudget lets it go while the budget is met
    // without it, and that costs no disruption.
    let r = evict(&mut s, "c");
    assert_eq!(r.status, 201, "{}", r.snippet());
    assert_eq!(
        s.k_json(&["get", "pdb", "solo", "-o", "json"])["status"]["disruptionsAllowed"],
        0
    );
    // No kubelet finishes its graceful delete: it shows what eviction did,
    // upstream's DisruptionTarget condition and a deletionTimestamp.
    let pod = s.k_json(&["get", "pod", "c", "-o", "json"]);
    assert!(!pod["metadata"]["deletionTimestamp"].is_null(), "{pod}");
    let cond = pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        (&cond["status"], &cond["reason"], &cond["message"]),
        (
            &json!("True"),
            &json!("EvictionByEvictionAPI"),
            &json!("Eviction API: evicting")
        ),
        "{pod}"
    );
}

/// `kubectl drain` evicts every pod of a node through the budget: with
/// maxUnavailable=1 it waits for replacements, and ends with the node
/// cordoned and empty.
#[test]
fn kubectl_drain_evicts_through_budget() {
    let s = sim_server(2);
    deployment(&s, "web", 4);
    s.k(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--max-unavailable=1",
    ]);
    wait_pdb(&s, "web", (4, 3, 4, 1));
    let on_node = |node: &str| {
        s.k(&[
            "get",
            "pods",
            "--field-selector",
            &format!("spec.nodeName={node}"),
            "-o",
            "name",
        ])
    };
    let node = if on_node("sim-0").trim().is_empty() {
        "sim-1"
    } else {
        "sim-0"
    };
    let before = on_node(node);
    let out = s.kubectl(&[
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=120s",
    ]);
    let text = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(out.status.success(), "drain failed:\n{text}");
    assert!(text.contains(&format!("node/{node} cordoned")), "{text}");
    assert!(text.contains(&format!("node/{node} drained")), "{text}");
    if before.lines().count() > 1 {
        // Only one may be down at a time: the others were refused first.
        assert!(
            text.contains("Cannot evict pod as it would violate the pod's disruption budget."),
            "{text}"
        );
    }
    for p in before.lines() {
        assert!(
            text.contains(&format!("{p} evicted")),
            "{p} not evicted:\n{text}"
        );
    }
    assert_eq!(
        s.k(&["get", "node", node, "-o", "jsonpath={.spec.unschedulable}"]),
        "true"
    );
    assert!(on_node(node).trim().is_empty(), "{}", on_node(node));
    // The deployment is whole again on the other node.
    assert!(
        wait_until(WAIT, || ready_pods(&s, "app=web").len() == 4),
        "replacements never became ready"
    );
}
