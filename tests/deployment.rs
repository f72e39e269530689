//! The Deployment controller through real kubectl: ReplicaSets named by the
//! pod-template hash, `kubectl rollout status|history|undo|pause|resume|
//! restart`, `kubectl scale` and `kubectl set image`, RollingUpdate bounds,
//! Recreate, minReadySeconds, progress deadlines and history clean-up.
//!
//! Pods are made Ready by simulated nodes when they run them; pods nobody
//! runs are made Ready by a small fake kubelet in the test (pods with a
//! nodeSelector are left alone, so a test can keep pods from ever becoming
//! ready).

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, wait_until};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// A task running on its own runtime thread until dropped.
struct Background {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start<F, Fut>(kubeconfig: &Path, f: F) -> Background
    where
        F: FnOnce(kube::Client) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let kubeconfig: PathBuf = kubeconfig.to_path_buf();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
                let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .expect("config");
                let client = kube::Client::try_from(cfg).expect("client");
                tokio::select! {
                    _ = stopped => {}
                    _ = f(client) => {}
                }
            });
        });
        Background {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Mark pods that no node runs Running and Ready after `delay`, as a kubelet
/// would. Pods with a nodeSelector or a node are not touched.
fn fake_kubelet(s: &Server, delay: Duration) -> Background {
    Background::start(&s.kubeconfig, move |client| async move {
        let api: Api<Pod> = Api::all(client.clone());
        let mut pods = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        let seen = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
        while let Some(Ok(pod)) = pods.next().await {
            let spec = pod.spec.clone().unwrap_or_default();
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if ready
                || pod.metadata.deletion_timestamp.is_some()
                || spec.node_name.is_some()
                || spec.node_selector.as_ref().is_some_and(|n| !n.is_empty())
                || !seen.lock().expect("lock").insert(uid)
            {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // Scheduled meanwhile: a simulated node runs it.
                if let Ok(p) = api.get(&name).await
                    && p.spec.as_ref().is_some_and(|s| s.node_name.is_some())
                {
                    return;
                }
                let now = jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                let status = json!({"status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                }});
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await;
            });
        }
    })
}

/// Every version of the namespace's ReplicaSets as a watch delivers them:
/// (name, spec.replicas, status.availableReplicas).
type Versions = Arc<Mutex<Vec<(String, i32, i32)>>>;

fn observe_replica_sets(s: &Server, ns: &str) -> (Background, Versions) {
    let seen: Versions = Arc::default();
    let out = seen.clone();
    let ns = ns.to_string();
    let bg = Background::start(&s.kubeconfig, move |client| async move {
        let api: Api<ReplicaSet> = Api::namespaced(client, &ns);
        let mut rss = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(rs)) = rss.next().await {
            let name = rs.metadata.name.clone().unwrap_or_default();
            let spec = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let avail = rs
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            out.lock().expect("lock").push((name, spec, avail));
        }
    });
    (bg, seen)
}

/// (max total spec.replicas, min total availableReplicas) over the history,
/// counting from the first moment `from_available` pods were available.
fn bounds(versions: &[(String, i32, i32)], from_available: i32) -> (i32, i32) {
    let mut latest: BTreeMap<String, (i32, i32)> = BTreeMap::new();
    let (mut max_spec, mut min_avail) = (0, i32::MAX);
    let mut started = false;
    for (name, spec, avail) in versions {
        latest.insert(name.clone(), (*spec, *avail));
        let total_spec: i32 = latest.values().map(|v| v.0).sum();
        let total_avail: i32 = latest.values().map(|v| v.1).sum();
        max_spec = max_spec.max(total_spec);
        started |= total_avail >= from_available;
        if started {
            min_avail = min_avail.min(total_avail);
        }
    }
    (max_spec, min_avail)
}

fn server() -> (Server, Background) {
    let s = Server::builder().arg("--simulate-nodes").arg("2").start();
    let kubelet = fake_kubelet(&s, Duration::from_millis(100));
    (s, kubelet)
}

fn deploy(s: &Server, name: &str) -> Value {
    s.k_json(&["get", "deployment", name])
}

/// The Deployment's ReplicaSets by name.
fn replica_sets(s: &Server, app: &str) -> BTreeMap<String, Value> {
    let list = s.k_json(&["get", "rs", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|rs| {
            (
                rs["metadata"]["name"].as_str().unwrap_or("").to_string(),
                rs,
            )
        })
        .collect()
}

fn annotation<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj["metadata"]["annotations"][key].as_str().unwrap_or("")
}

fn condition<'a>(obj: &'a Value, type_: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

#[track_caller]
fn rollout_status(s: &Server, name: &str) -> String {
    s.k(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=60s",
    ])
}

#[track_caller]
fn wait_for(s: &Server, what: &str, mut f: impl FnMut() -> bool) {
    assert!(
        wait_until(WAIT, &mut f),
        "timed out waiting for {what}\n{}",
        s.k(&["get", "deploy,rs,pods", "-o", "wide"])
    );
}

fn deployment_yaml(name: &str, replicas: i32, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
{extra_spec}  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: main
        image: nginx:1
"
    )
}

#[test]
fn create_and_roll_out() {
    let (s, _kubelet) = server();
    s.k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas=3",
    ]);
    let out = rollout_status(&s, "web");
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );

    // One ReplicaSet, named and selected by the template hash.
    let rss = replica_sets(&s, "web");
    assert_eq!(rss.len(), 1, "{rss:#?}");
    let (rs_name, rs) = rss.iter().next().expect("one rs");
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("hash label")
        .to_string();
    assert_eq!(rs_name, &format!("web-{hash}"));
    assert!(
        hash.chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{hash}"
    );
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(rs["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(annotation(rs, "deployment.kubernetes.io/revision"), "1");
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/desired-replicas"),
        "3"
    );
    assert_eq!(annotation(rs, "deployment.kubernetes.io/max-replicas"), "4");

    // Its pods carry the hash and belong to it.
    let pods = s.k_json(&[
        "get",
        "pods",
        "-l",
        &format!("app=web,pod-template-hash={hash}"),
    ]);
    let pods = pods["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert!(
            p["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!("web-{hash}-"))
        );
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["name"],
            rs_name.as_str()
        );
    }

    let d = deploy(&s, "web");
    assert_eq!(annotation(&d, "deployment.kubernetes.io/revision"), "1");
    let st = &d["status"];
    assert_eq!(
        (st["replicas"].as_i64(), st["updatedReplicas"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(
        (
            st["readyReplicas"].as_i64(),
            st["availableReplicas"].as_i64()
        ),
        (Some(3), Some(3))
    );
    assert!(st["unavailableReplicas"].is_null(), "{st}");
    assert_eq!(st["observedGeneration"], d["metadata"]["generation"]);
    let available = condition(&d, "Available");
    assert_eq!(
        (available["status"].as_str(), available["reason"].as_str()),
        (Some("True"), Some("MinimumReplicasAvailable"))
    );
    let progressing = condition(&d, "Progressing");
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
    assert_eq!(
        progressing["message"],
        format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
    );
    assert!(s.events("web").contains(&format!(
        "ScalingReplicaSet: Scaled up replica set {rs_name} from 0 to 3"
    )));
    let described = s.k(&["describe", "deployment", "web"]);
    assert!(
        described.contains(&format!(
            "NewReplicaSet:   {rs_name} (3/3 replicas created)"
        )),
        "{described}"
    );
}

/// `kubectl scale` goes through the scale subresource; the same ReplicaSet
/// follows, proportionally annotated.
#[test]
fn kubectl_scale() {
    let (s, _kubelet) = server();
    s.k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas=3",
    ]);
    rollout_status(&s, "web");
    let rs_name = &replica_sets(&s, "web").into_keys().next().expect("rs");
    s.k(&["scale", "deployment/web", "--replicas=5"]);
    rollout_status(&s, "web");
    wait_for(&s, "5 available", || {
        deploy(&s, "web")["status"]["availableReplicas"] == 5
    });
    let rss = replica_sets(&s, "web");
    assert_eq!(rss.len(), 1);
    assert_eq!(rss[rs_name]["spec"]["replicas"], 5);
    assert_eq!(
        annotation(&rss[rs_name], "deployment.kubernetes.io/desired-replicas"),
        "5"
    );
    s.k(&["scale", "deployment/web", "--replicas=2"]);
    wait_for(&s, "2 pods", || {
        s.k_json(&["get", "pods", "-l", "app=web"])["items"]
            .as_array()
            .map(Vec::len)
            == Some(2)
    });
    wait_for(&s, "status of 2", || {
        deploy(&s, "web")["status"]["replicas"] == 2
    });
    let ev = s.events("web");
    assert!(
        ev.contains(&format!(
            "ScalingReplicaSet: Scaled up replica set {rs_name} from 3 to 5"
        )),
        "{ev:#?}"
    );
    assert!(
        ev.contains(&format!(
            "ScalingReplicaSet: Scaled down replica set {rs_name} from 5 to 2"
        )),
        "{ev:#?}"
    );
}

#[test]
fn set_image_history_and_undo() {
    let (s, _kubelet) = server();
    s.k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas=3",
    ]);
    rollout_status(&s, "web");
    let first = replica_sets(&s, "web")
        .into_keys()
        .next()
        .expect("first rs");

    s.k(&["set", "image", "deployment/web", "nginx=nginx:2"]);
    s.k(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=upgrade to 2",
    ]);
    rollout_status(&s, "web");
    wait_for(&s, "old scaled to 0, change-cause copied", || {
        let rss = replica_sets(&s, "web");
        rss.len() == 2
            && rss[&first]["spec"]["replicas"] == 0
            && rss[&first]["status"]["replicas"] == 0
            && rss
                .values()
                .any(|rs| annotation(rs, "kubernetes.io/change-cause") == "upgrade to 2")
    });
    let rss = replica_sets(&s, "web");
    let second = rss
        .keys()
        .find(|n| **n != first)
        .expect("second rs")
        .clone();
    assert_eq!(
        rss[&second]["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    assert_eq!(
        annotation(&rss[&second], "deployment.kubernetes.io/revision"),
        "2"
    );
    assert_eq!(
        annotation(&rss[&second], "kubernetes.io/change-cause"),
        "upgrade to 2"
    );

    let history = s.k(&["rollout", "history", "deployment/web"]);
    let rows: Vec<String> = history
        .lines()
        .skip(2)
        .map(common::squeeze)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(rows, ["1 <none>", "2 upgrade to 2"], "{history}");
    let rev2 = s.k(&["rollout", "history", "deployment/web", "--revision=2"]);
    assert!(rev2.contains("nginx:2"), "{rev2}");

    // Undo: the template comes back from revision 1 and its ReplicaSet is
    // reused, now as revision 3.
    let out = s.k(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(&s, "web");
    wait_for(&s, "second scaled to 0", || {
        let rss = replica_sets(&s, "web");
        rss.get(&second)
            .is_some_and(|rs| rs["status"]["replicas"] == 0)
            && rss[&first]["status"]["availableReplicas"] == 3
    });
    let d = deploy(&s, "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    assert_eq!(annotation(&d, "deployment.kubernetes.io/revision"), "3");
    let rss = replica_sets(&s, "web");
    assert_eq!(
        rss.len(),
        2,
        "no new ReplicaSet for a rollback: {:?}",
        rss.keys()
    );
    assert_eq!(rss[&first]["spec"]["replicas"], 3);
    assert_eq!(
        annotation(&rss[&first], "deployment.kubernetes.io/revision"),
        "3"
    );
    assert_eq!(
        annotation(&rss[&first], "deployment.kubernetes.io/revision-history"),
        "1"
    );
    let history = s.k(&["rollout", "history", "deployment/web"]);
    let revs: Vec<String> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    assert_eq!(revs, ["2", "3"], "{history}");
}

#[test]
fn recreate_and_restart() {
    let (s, _kubelet) = server();
    let (_observer, versions) = observe_replica_sets(&s, "default");
    s.k_in(
        &deployment_yaml("rec", 2, "  strategy:\n    type: Recreate\n"),
        &["apply", "-f", "-"],
    );
    rollout_status(&s, "rec");
    let first = replica_sets(&s, "rec").into_keys().next().expect("rs");

    let out = s.k(&["rollout", "restart", "deployment/rec"]);
    assert!(out.contains("restarted"), "{out}");
    rollout_status(&s, "rec");
    let d = deploy(&s, "rec");
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    let rss = replica_sets(&s, "rec");
    assert_eq!(rss.len(), 2);
    let second = rss.keys().find(|n| **n != first).expect("new rs").clone();
    assert_eq!(rss[&first]["spec"]["replicas"], 0);
    assert_eq!(rss[&second]["spec"]["replicas"], 2);

    // Never both at once: the new one starts after the old one is gone.
    let seen = versions.lock().expect("lock").clone();
    let mut latest: BTreeMap<String, i32> = BTreeMap::new();
    for (name, spec, _) in &seen {
        latest.insert(name.clone(), *spec);
        let active = latest.values().filter(|n| **n > 0).count();
        assert!(
            active <= 1,
            "two active ReplicaSets during Recreate: {seen:?}"
        );
    }
    let ev = s.events("rec");
    let down = ev.iter().position(|e| {
        e == &format!("ScalingReplicaSet: Scaled down replica set {first} from 2 to 0")
    });
    let up = ev.iter().position(|e| {
        e == &format!("ScalingReplicaSet: Scaled up replica set {second} from 0 to 2")
    });
    assert!(down.is_some() && up.is_some() && down < up, "{ev:#?}");
}

#[test]
fn pause_and_resume() {
    let (s, _kubelet) = server();
    s.k_in(&deployment_yaml("pz", 2, ""), &["apply", "-f", "-"]);
    rollout_status(&s, "pz");
    s.k(&["rollout", "pause", "deployment/pz"]);
    wait_for(&s, "paused condition", || {
        condition(&deploy(&s, "pz"), "Progressing")["reason"] == "DeploymentPaused"
    });
    let p = condition(&deploy(&s, "pz"), "Progressing").clone();
    assert_eq!(
        (p["status"].as_str(), p["message"].as_str()),
        (Some("Unknown"), Some("Deployment is paused"))
    );

    // No rollout while paused, though the spec change is observed.
    s.k(&["set", "image", "deployment/pz", "main=nginx:2"]);
    wait_for(&s, "generation observed", || {
        let d = deploy(&s, "pz");
        d["status"]["observedGeneration"] == d["metadata"]["generation"]
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        replica_sets(&s, "pz").len(),
        1,
        "a paused Deployment must not roll out"
    );

    s.k(&["rollout", "resume", "deployment/pz"]);
    rollout_status(&s, "pz");
    let rss = replica_sets(&s, "pz");
    assert_eq!(rss.len(), 2);
    assert!(rss.values().any(
        |rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
            && rs["status"]["availableReplicas"] == 2
    ));
    wait_for(&s, "complete", || {
        condition(&deploy(&s, "pz"), "Progressing")["reason"] == "NewReplicaSetAvailable"
    });
}

#[test]
fn rolling_update_bounds() {
    let s = Server::builder().arg("--simulate-nodes").arg("2").start();
    // Slow readiness, so the rollout takes several steps.
    let _kubelet = fake_kubelet(&s, Duration::from_millis(300));
    let strategy = "  strategy:\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 0\n";
    s.k_in(&deployment_yaml("ru", 4, strategy), &["apply", "-f", "-"]);
    rollout_status(&s, "ru");
    let (observer, versions) = observe_replica_sets(&s, "default");
    wait_for(&s, "observer caught up", || {
        !versions.lock().expect("lock").is_empty()
    });
    s.k(&["set", "image", "deployment/ru", "main=nginx:2"]);
    rollout_status(&s, "ru");
    wait_for(&s, "old ReplicaSet at 0 available", || {
        replica_sets(&s, "ru")
            .values()
            .all(|rs| rs["spec"]["replicas"] != 0 || rs["status"]["availableReplicas"].is_null())
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(observer);
    let seen = versions.lock().expect("lock").clone();
    let (max_spec, min_avail) = bounds(&seen, 4);
    assert!(
        max_spec <= 5,
        "more than replicas + maxSurge pods: {max_spec} in {seen:?}"
    );
    assert!(
        min_avail >= 4,
        "fewer than replicas - maxUnavailable available: {min_avail} in {seen:?}"
    );
    assert_eq!(max_spec, 5, "the surge was used: {seen:?}");

    // Percentages of 4: surge 0% -> 0, unavailable 50% -> 2.
    let strategy = json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "50%"}}}});
    s.k(&[
        "patch",
        "deployment/ru",
        "--type=merge",
        "-p",
        &strategy.to_string(),
    ]);
    let (observer, versions) = observe_replica_sets(&s, "default");
    wait_for(&s, "observer caught up", || {
        !versions.lock().expect("lock").is_empty()
    });
    s.k(&["set", "image", "deployment/ru", "main=nginx:3"]);
    rollout_status(&s, "ru");
    std::thread::sleep(Duration::from_millis(300));
    drop(observer);
    let seen = versions.lock().expect("lock").clone();
    let (max_spec, min_avail) = bounds(&seen, 4);
    assert!(max_spec <= 4, "no surge allowed: {max_spec} in {seen:?}");
    assert!(
        min_avail >= 2,
        "at most 2 unavailable: {min_avail} in {seen:?}"
    );
    let ev = s.events("ru");
    assert!(
        ev.iter().any(|e| e.contains("from 4 to 2")),
        "old ReplicaSet halved at once: {ev:#?}"
    );
}

#[test]
fn min_ready_seconds_and_progress_deadline() {
    let (s, _kubelet) = server();
    s.k_in(
        &deployment_yaml("mrs", 2, "  minReadySeconds: 3\n"),
        &["apply", "-f", "-"],
    );
    // The first status with both pods ready: not yet available.
    let mut d = Value::Null;
    wait_for(&s, "ready", || {
        d = deploy(&s, "mrs");
        d["status"]["readyReplicas"] == 2
    });
    assert!(
        d["status"]["availableReplicas"].is_null(),
        "available before minReadySeconds: {}",
        d["status"]
    );
    assert_eq!(condition(&d, "Available")["status"], "False");
    rollout_status(&s, "mrs");
    let d = deploy(&s, "mrs");
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(
        condition(&d, "Available")["reason"],
        "MinimumReplicasAvailable"
    );
    let rs = replica_sets(&s, "mrs").into_values().next().expect("rs");
    assert_eq!(rs["spec"]["minReadySeconds"], 3);

    // Pods that never become ready (nothing runs them): the deadline passes.
    let never = "  progressDeadlineSeconds: 2\n";
    let mut yaml = deployment_yaml("stuck", 2, never);
    yaml.push_str("      nodeSelector:\n        nowhere: \"true\"\n");
    s.k_in(&yaml, &["apply", "-f", "-"]);
    let o = s.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
    assert!(!o.status.success());
    let err = common::stderr(&o);
    assert!(
        err.contains("deployment \"stuck\" exceeded its progress deadline"),
        "{err}"
    );
    let d = deploy(&s, "stuck");
    let p = condition(&d, "Progressing");
    assert_eq!(
        (p["status"].as_str(), p["reason"].as_str()),
        (Some("False"), Some("ProgressDeadlineExceeded"))
    );
    let rs = replica_sets(&s, "stuck").into_keys().next().expect("rs");
    assert_eq!(
        p["message"],
        format!("ReplicaSet \"{rs}\" has timed out progressing.")
    );
    assert_eq!(
        condition(&d, "Available")["reason"],
        "MinimumReplicasUnavailable"
    );
    assert_eq!(d["status"]["unavailableReplicas"], 2);
}

#[test]
fn revision_history_limit() {
    let (s, _kubelet) = server();
    s.k_in(
        &deployment_yaml("hist", 1, "  revisionHistoryLimit: 1\n"),
        &["apply", "-f", "-"],
    );
    rollout_status(&s, "hist");
    for v in 2..=4 {
        s.k(&[
            "set",
            "image",
            "deployment/hist",
            &format!("main=nginx:{v}"),
        ]);
        rollout_status(&s, "hist");
    }
    // The current revision and one old one remain.
    wait_for(&s, "clean-up", || replica_sets(&s, "hist").len() == 2);
    let revs: Vec<String> = replica_sets(&s, "hist")
        .values()
        .map(|rs| annotation(rs, "deployment.kubernetes.io/revision").to_string())
        .collect();
    let mut revs = revs;
    revs.sort();
    assert_eq!(revs, ["3", "4"]);
}
