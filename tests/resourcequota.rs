//! ResourceQuota through stock kubectl: the controller's status (hard and
//! used for counts, compute requests/limits, services, scopes), quota
//! admission's upstream messages, dry runs that check without charging,
//! and concurrent creates that cannot overrun a quota.

mod common;

use std::time::Duration;

use common::{Server, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn used(s: &Server, ns: &str, quota: &str) -> Value {
    s.k_json(&["-n", ns, "get", "quota", quota, "-o", "json"])["status"]["used"].clone()
}

/// Wait until `status.used[name] == want`.
#[track_caller]
fn wait_used(s: &Server, ns: &str, quota: &str, name: &str, want: &str) {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = used(s, ns, quota);
        last[name] == want
    });
    assert!(ok, "quota {quota}: used.{name} never became {want}: {last}");
}

fn pod_yaml(name: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n{resources}"
    )
}

/// Step 26 of the walkthrough, word for word: a quota of one pod lets the
/// first `kubectl run` through and refuses the second with upstream's
/// message; deleting the first gives the unit back.
#[test]
fn walkthrough_quota_rejects_second_pod() {
    let s = Server::builder().arg("--simulate-nodes").arg("1").start();
    s.k(&["create", "namespace", "q"]);
    s.k(&["-n", "q", "create", "quota", "pods-max", "--hard=pods=1"]);
    assert!(
        wait_until(WAIT, || s.k(&[
            "-n",
            "q",
            "get",
            "quota",
            "pods-max",
            "-o",
            "jsonpath={.status.hard.pods}"
        ]) == "1"),
        "status.hard never set"
    );
    wait_used(&s, "q", "pods-max", "pods", "0");
    s.k(&["-n", "q", "run", "one", "--image=busybox"]);
    let err = s.k_err(&["-n", "q", "run", "two", "--image=busybox"]);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): pods \"two\" is forbidden: exceeded quota: pods-max, requested: pods=1, used: pods=1, limited: pods=1"
    );
    // The same check as a raw Status: 403 Forbidden with details.
    let status = s.k_json(&["-n", "q", "get", "quota", "pods-max", "-o", "json"]);
    assert_eq!(status["status"]["used"]["pods"], "1", "{status}");
    // kubectl describe prints the used/hard table.
    let describe = s.k(&["-n", "q", "describe", "quota", "pods-max"]);
    assert!(
        describe.lines().any(|l| common::squeeze(l) == "pods 1 1"),
        "describe:\n{describe}"
    );
    s.k(&[
        "-n",
        "q",
        "delete",
        "pod",
        "one",
        "--grace-period=0",
        "--force",
    ]);
    wait_used(&s, "q", "pods-max", "pods", "0");
    s.k(&["-n", "q", "run", "two", "--image=busybox"]);
    wait_used(&s, "q", "pods-max", "pods", "1");
}

/// Used amounts for counts and compute resources, the "must specify"
/// constraint, exceeded compute quota, services and node ports, terminal
/// pods giving compute quota back, scopes, and dry runs.
#[test]
fn usage_constraints_scopes_and_dry_run() {
    let s = Server::start();
    s.k(&["create", "namespace", "u"]);
    s.k_in(
        r#"
apiVersion: v1
kind: ResourceQuota
metadata: {name: compute, namespace: u}
spec:
  hard:
    pods: "10"
    requests.cpu: "1"
    requests.memory: 1Gi
    limits.memory: 2Gi
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: objects, namespace: u}
spec:
  hard:
    configmaps: "5"
    count/configmaps: "5"
    services: "3"
    services.nodeports: "2"
    count/deployments.apps: "1"
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: besteffort, namespace: u}
spec:
  hard: {pods: "1"}
  scopes: [BestEffort]
"#,
        &["apply", "-f", "-"],
    );
    wait_used(&s, "u", "compute", "requests.memory", "0");
    wait_used(&s, "u", "objects", "services", "0");
    wait_used(&s, "u", "besteffort", "pods", "0");
    // The root CA ConfigMap the publisher puts in every namespace counts.
    wait_used(&s, "u", "objects", "configmaps", "1");

    // A pod without requests under a compute quota: upstream's constraint.
    let err = s.k_in_err(&pod_yaml("bare", ""), &["-n", "u", "apply", "-f", "-"]);
    assert!(
        err.contains("pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: c; requests.cpu for: c; requests.memory for: c"),
        "{err}"
    );

    let sized = "    resources:\n      requests: {cpu: 250m, memory: 64Mi}\n      limits: {memory: 128Mi}\n";
    s.k_in(&pod_yaml("p1", sized), &["-n", "u", "apply", "-f", "-"]);
    let u = used(&s, "u", "compute");
    assert_eq!(u["pods"], "1", "{u}");
    assert_eq!(u["requests.cpu"], "250m", "{u}");
    assert_eq!(u["requests.memory"], "64Mi", "{u}");
    assert_eq!(u["limits.memory"], "128Mi", "{u}");
    // Not BestEffort: the scoped quota ignores it.
    assert_eq!(used(&s, "u", "besteffort")["pods"], "0");

    // 250m + 800m > 1 cpu.
    let big = "    resources:\n      requests: {cpu: 800m, memory: 64Mi}\n      limits: {memory: 128Mi}\n";
    let err = s.k_in_err(&pod_yaml("big", big), &["-n", "u", "apply", "-f", "-"]);
    assert!(
        err.contains("pods \"big\" is forbidden: exceeded quota: compute, requested: requests.cpu=800m, used: requests.cpu=250m, limited: requests.cpu=1"),
        "{err}"
    );

    // Dry runs are checked but not charged.
    s.k_in(
        &pod_yaml("p2", sized),
        &["-n", "u", "apply", "--dry-run=server", "-f", "-"],
    );
    assert_eq!(used(&s, "u", "compute")["requests.cpu"], "250m");
    let err = s.k_in_err(
        &pod_yaml("big", big),
        &["-n", "u", "apply", "--dry-run=server", "-f", "-"],
    );
    assert!(err.contains("exceeded quota: compute"), "{err}");

    s.k_in(&pod_yaml("p2", sized), &["-n", "u", "apply", "-f", "-"]);
    wait_used(&s, "u", "compute", "requests.memory", "128Mi");
    assert_eq!(used(&s, "u", "compute")["requests.cpu"], "500m");

    // A pod that finished gives its compute quota back (the controller
    // recounts on the pod's change).
    s.k(&[
        "-n",
        "u",
        "patch",
        "pod",
        "p2",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Succeeded"}}"#,
    ]);
    wait_used(&s, "u", "compute", "requests.cpu", "250m");
    assert_eq!(used(&s, "u", "compute")["pods"], "1");

    // BestEffort pods fall under the scoped quota: one, then refused.
    s.k(&["-n", "u", "delete", "quota", "compute"]);
    s.k_in(&pod_yaml("be1", ""), &["-n", "u", "apply", "-f", "-"]);
    wait_used(&s, "u", "besteffort", "pods", "1");
    let err = s.k_in_err(&pod_yaml("be2", ""), &["-n", "u", "apply", "-f", "-"]);
    assert!(
        err.contains(
            "exceeded quota: besteffort, requested: pods=1, used: pods=1, limited: pods=1"
        ),
        "{err}"
    );

    // Object counts: ConfigMaps, Services and their node ports, Deployments.
    s.k(&["-n", "u", "create", "configmap", "c1"]);
    let u = used(&s, "u", "objects");
    assert_eq!(
        (u["configmaps"].as_str(), u["count/configmaps"].as_str()),
        (Some("2"), Some("2")),
        "{u}"
    );
    s.k(&[
        "-n",
        "u",
        "create",
        "service",
        "nodeport",
        "np",
        "--tcp=80:80",
    ]);
    wait_used(&s, "u", "objects", "services.nodeports", "1");
    assert_eq!(used(&s, "u", "objects")["services"], "1");
    let err = s.k_err(&[
        "-n",
        "u",
        "create",
        "service",
        "nodeport",
        "np2",
        "--tcp=81:81",
        "--tcp=82:82",
    ]);
    assert!(
        err.contains("exceeded quota: objects, requested: services.nodeports=2, used: services.nodeports=1, limited: services.nodeports=2"),
        "{err}"
    );
    // A ClusterIP Service turned NodePort is charged on update.
    s.k(&[
        "-n",
        "u",
        "create",
        "service",
        "clusterip",
        "cip",
        "--tcp=83:83",
    ]);
    wait_used(&s, "u", "objects", "services", "2");
    s.k(&[
        "-n",
        "u",
        "patch",
        "service",
        "cip",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    wait_used(&s, "u", "objects", "services.nodeports", "2");
    s.k(&["-n", "u", "create", "deployment", "d1", "--image=busybox"]);
    wait_used(&s, "u", "objects", "count/deployments.apps", "1");
    let err = s.k_err(&["-n", "u", "create", "deployment", "d2", "--image=busybox"]);
    assert!(
        err.contains("deployments.apps \"d2\" is forbidden: exceeded quota: objects, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1"),
        "{err}"
    );
    // Deleting gives quota back.
    s.k(&["-n", "u", "delete", "service", "np"]);
    wait_used(&s, "u", "objects", "services.nodeports", "1");
    s.k(&["-n", "u", "delete", "deployment", "d1"]);
    wait_used(&s, "u", "objects", "count/deployments.apps", "0");
}

/// Many creates at once against a quota of five pods: exactly five are
/// admitted, every other one is refused with the quota message.
#[test]
fn concurrent_creates_cannot_exceed_quota() {
    let mut s = Server::start();
    s.k(&["create", "namespace", "c"]);
    s.k(&["-n", "c", "create", "quota", "five", "--hard=pods=5"]);
    wait_used(&s, "c", "five", "pods", "0");
    let creds = s.creds();
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let creds = creds.clone();
            std::thread::spawn(move || {
                let body = format!(
                    r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p{i}"}},"spec":{{"containers":[{{"name":"c","image":"busybox"}}]}}}}"#
                );
                let out = std::process::Command::new("curl")
                    .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
                    .arg(&creds.ca)
                    .arg("--cert")
                    .arg(&creds.cert)
                    .arg("--key")
                    .arg(&creds.key)
                    .args(["-X", "POST", "-H", "Content-Type: application/json", "-d", &body])
                    .arg(format!("{}/api/v1/namespaces/c/pods", creds.server))
                    .output()
                    .expect("curl");
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
        })
        .collect();
    let results: Vec<String> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let created = results.iter().filter(|r| r.ends_with("\n201")).count();
    for r in results.iter().filter(|r| !r.ends_with("\n201")) {
        assert!(
            r.ends_with("\n403")
                && r.contains(
                    "exceeded quota: five, requested: pods=1, used: pods=5, limited: pods=5"
                ),
            "unexpected answer: {r}"
        );
    }
    assert_eq!(created, 5, "{results:#?}");
    let pods = s.k(&["-n", "c", "get", "pods", "-o", "name"]);
    assert_eq!(pods.lines().count(), 5, "{pods}");
    // The controller's recount agrees with the charges.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(used(&s, "c", "five")["pods"], "5");
}
