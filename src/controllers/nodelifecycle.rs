//! Node lifecycle controller (upstream's node-lifecycle-controller and
//! taint-eviction-controller): watches node Leases and Node status. A node
//! whose heartbeat has not been seen for the grace period
//! (`--node-monitor-grace-period`, 40 s) gets Ready=Unknown ("Kubelet
//! stopped posting node status.") and the taints
//! node.kubernetes.io/unreachable:NoExecute and :NoSchedule; a NotReady node
//! gets node.kubernetes.io/not-ready; a cordoned node
//! node.kubernetes.io/unschedulable:NoSchedule. Pods on an unready node are
//! marked NotReady, and pods on a node with NoExecute taints are deleted
//! once their tolerations run out (at once without a matching toleration,
//! after the smallest tolerationSeconds otherwise), with a
//! TaintManagerEviction event. Their controllers replace them elsewhere.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use parking_lot::Mutex;
use serde_json::json;
use tracing::{debug, info};

use super::Context;
use super::events::{self, Recorder};

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The conditions the controller turns Unknown when the kubelet goes quiet.
const KUBELET_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

#[derive(Default)]
struct Health {
    node: Option<Node>,
    /// When a heartbeat (lease renewal or status) was last observed here.
    probe: Option<Instant>,
    lease_renew: Option<String>,
    status_heartbeat: Option<String>,
    /// The Ready status seen on the last pass (for NodeReady events).
    last_ready: Option<String>,
}

/// A pod waiting for its toleration to run out.
struct Scheduled {
    uid: String,
    deadline: Instant,
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, Health>,
    evictions: HashMap<String, Scheduled>,
}

struct Controller {
    client: kube::Client,
    grace: Duration,
    state: Mutex<State>,
    node_events: Recorder,
    eviction_events: Recorder,
}

/// Run until the process ends.
pub async fn run(ctx: Arc<Context>) {
    let grace = ctx.settings.node_monitor_grace_period;
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        grace,
        state: Mutex::new(State::default()),
        node_events: ctx.recorder("node-controller"),
        eviction_events: ctx.recorder("taint-eviction-controller"),
    });
    tokio::spawn(c.clone().watch_nodes());
    tokio::spawn(c.clone().watch_leases());
    // Upstream checks every 5 s; short grace periods (tests) check faster.
    let period = (grace / 5).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        c.monitor().await;
    }
}

fn ready_status(node: &Node) -> &str {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown")
}

fn ready_heartbeat(node: &Node) -> Option<String> {
    let c = node
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    c.last_heartbeat_time.as_ref().map(|t| t.0.to_string())
}

fn node_ref(name: &str) -> ObjectReference {
    // Upstream's node events use the node name as uid; kubectl describe
    // node looks them up that way.
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some(name.into()),
        ..Default::default()
    }
}

/// The taints this controller owns, as they should be for `ready` and
/// `unschedulable`; others' taints are kept as they are.
pub fn desired_taints(
    current: &[Taint],
    ready: &str,
    unschedulable: bool,
    now: jiff::Timestamp,
) -> Vec<Taint> {
    let mut want: Vec<(&str, &str)> = Vec::new();
    match ready {
        "True" => {}
        "False" => want.extend([
            (TAINT_NOT_READY, "NoExecute"),
            (TAINT_NOT_READY, "NoSchedule"),
        ]),
        _ => want.extend([
            (TAINT_UNREACHABLE, "NoExecute"),
            (TAINT_UNREACHABLE, "NoSchedule"),
        ]),
    }
    if unschedulable {
        want.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    let managed = |t: &Taint| {
        [TAINT_UNREACHABLE, TAINT_NOT_READY, TAINT_UNSCHEDULABLE].contains(&t.key.as_str())
            && (t.effect == "NoExecute" || t.effect == "NoSchedule")
    };
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || want.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in want {
        if !out.iter().any(|t| t.key == key && t.effect == effect) {
            out.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            });
        }
    }
    out
}

/// Upstream's TaintNodesByCondition: a node whose kubelet reports
/// MemoryPressure, DiskPressure or PIDPressure True gets the matching
/// NoSchedule taint, removed when the condition clears.
pub fn pressure_taints(current: Vec<Taint>, node: &Node, now: jiff::Timestamp) -> Vec<Taint> {
    let status = |t: &str| {
        node.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            .is_some_and(|c| c.status == "True")
    };
    let mut out = current;
    for (condition, key) in [
        ("MemoryPressure", TAINT_MEMORY_PRESSURE),
        ("DiskPressure", TAINT_DISK_PRESSURE),
        ("PIDPressure", TAINT_PID_PRESSURE),
    ] {
        let has = out.iter().any(|t| t.key == key && t.effect == "NoSchedule");
        match (status(condition), has) {
            (true, false) => out.push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                value: None,
                time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            }),
            (false, true) => out.retain(|t| !(t.key == key && t.effect == "NoSchedule")),
            _ => {}
        }
    }
    out
}

/// How long a pod may stay on a node with these NoExecute taints: None
/// forever, Some(0) not at all.
pub fn toleration_time(taints: &[Taint], tolerations: &[Toleration]) -> Option<Duration> {
    let mut min: Option<i64> = None;
    let mut any = false;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        any = true;
        let matching: Vec<&Toleration> = tolerations
            .iter()
            .filter(|t| crate::scheduler::labels::tolerates(t, taint))
            .collect();
        if matching.is_empty() {
            return Some(Duration::ZERO);
        }
        for t in matching {
            if let Some(s) = t.toleration_seconds {
                min = Some(min.map_or(s, |m: i64| m.min(s)));
            }
        }
    }
    if !any {
        return None;
    }
    min.map(|s| Duration::from_secs(s.max(0) as u64))
}

impl Controller {
    async fn watch_nodes(self: Arc<Self>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        let mut seen: Option<HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) => seen = Some(HashSet::new()),
                Ok(watcher::Event::InitDone) => {
                    if let Some(seen) = seen.take() {
                        self.state
                            .lock()
                            .nodes
                            .retain(|name, h| h.node.is_none() || seen.contains(name));
                    }
                }
                Ok(watcher::Event::Apply(n)) | Ok(watcher::Event::InitApply(n)) => {
                    let name = n.metadata.name.clone().unwrap_or_default();
                    if let Some(s) = seen.as_mut() {
                        s.insert(name.clone());
                    }
                    let hb = ready_heartbeat(&n);
                    let mut st = self.state.lock();
                    let h = st.nodes.entry(name).or_default();
                    // A node first seen gets a full grace period.
                    if h.probe.is_none() || (hb.is_some() && hb != h.status_heartbeat) {
                        h.probe = Some(Instant::now());
                    }
                    h.status_heartbeat = hb;
                    h.node = Some(n);
                }
                Ok(watcher::Event::Delete(n)) => {
                    self.state
                        .lock()
                        .nodes
                        .remove(n.metadata.name.as_deref().unwrap_or(""));
                }
                Err(e) => {
                    debug!("node lifecycle: node watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn watch_leases(self: Arc<Self>) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(l)) | Ok(watcher::Event::InitApply(l)) => {
                    let name = l.metadata.name.clone().unwrap_or_default();
                    let renew = l
                        .spec
                        .as_ref()
                        .and_then(|s| s.renew_time.as_ref())
                        .map(|t| t.0.to_string());
                    let mut st = self.state.lock();
                    let h = st.nodes.entry(name).or_default();
                    if renew.is_some() && renew != h.lease_renew {
                        h.probe = Some(Instant::now());
                    }
                    h.lease_renew = renew;
                }
                Ok(_) => {}
                Err(e) => {
                    debug!("node lifecycle: lease watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// One pass over every node: health, taints, pods.
    async fn monitor(&self) {
        let snapshot: Vec<(Node, Option<Instant>)> = {
            let st = self.state.lock();
            st.nodes
                .values()
                .filter_map(|h| Some((h.node.clone()?, h.probe)))
                .collect()
        };
        let mut live_evictions = HashSet::new();
        for (node, probe) in snapshot {
            let name = node.metadata.name.clone().unwrap_or_default();
            let mut node = node;
            let stale = probe.is_none_or(|p| p.elapsed() > self.grace);
            if stale && ready_status(&node) != "Unknown" {
                match self.mark_unknown(&node).await {
                    Ok(n) => node = n,
                    Err(e) => {
                        debug!(node = %name, "cannot mark node Unknown: {e}");
                        continue;
                    }
                }
            }
            let ready = ready_status(&node).to_string();
            let was = {
                let mut st = self.state.lock();
                st.nodes
                    .get_mut(&name)
                    .and_then(|h| h.last_ready.replace(ready.clone()))
            };
            if ready == "True" && was.as_deref().is_some_and(|w| w != "True") {
                let msg = format!("Node {name} status is now: NodeReady");
                self.node_events
                    .publish(&node_ref(&name), events::NORMAL, "NodeReady", &msg)
                    .await;
            }
            let spec = node.spec.clone().unwrap_or_default();
            let taints = spec.taints.clone().unwrap_or_default();
            let want = desired_taints(
                &taints,
                &ready,
                spec.unschedulable.unwrap_or(false),
                jiff::Timestamp::now(),
            );
            let want = pressure_taints(want, &node, jiff::Timestamp::now());
            if want != taints {
                match self.set_taints(&node, &want).await {
                    Ok(n) => node = n,
                    Err(e) => debug!(node = %name, "cannot update taints: {e}"),
                }
            }
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let no_execute: Vec<Taint> = taints
                .into_iter()
                .filter(|t| t.effect == "NoExecute")
                .collect();
            if ready == "True" && no_execute.is_empty() {
                continue;
            }
            let pods = match self.pods_on(&name).await {
                Ok(p) => p,
                Err(e) => {
                    debug!(node = %name, "cannot list pods: {e}");
                    continue;
                }
            };
            if ready != "True" {
                self.mark_pods_not_ready(&pods).await;
            }
            if !no_execute.is_empty() {
                self.evict(&pods, &no_execute, &mut live_evictions).await;
            }
        }
        // Taints gone (node back): cancel what was scheduled.
        let cancelled: Vec<(String, String)> = {
            let mut st = self.state.lock();
            let gone: Vec<String> = st
                .evictions
                .keys()
                .filter(|k| !live_evictions.contains(*k))
                .cloned()
                .collect();
            gone.into_iter()
                .filter_map(|k| st.evictions.remove(&k).map(|s| (k, s.uid)))
                .collect()
        };
        for (key, uid) in cancelled {
            let (ns, name) = key.split_once('/').unwrap_or(("", key.as_str()));
            let r = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(ns.into()),
                name: Some(name.into()),
                uid: Some(uid),
                ..Default::default()
            };
            self.eviction_events
                .publish(
                    &r,
                    events::NORMAL,
                    "TaintManagerEviction",
                    &format!("Cancelling deletion of Pod {key}"),
                )
                .await;
        }
    }

    async fn mark_unknown(&self, node: &Node) -> Result<Node, kube::Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let now = serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ))
        .map_err(kube::Error::SerdeError)?;
        let existing = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut conditions: Vec<serde_json::Value> = Vec::new();
        for c in &existing {
            let mut v = serde_json::to_value(c).map_err(kube::Error::SerdeError)?;
            if KUBELET_CONDITIONS.contains(&c.type_.as_str()) {
                if c.status != "Unknown" {
                    v["lastTransitionTime"] = now.clone();
                }
                v["status"] = json!("Unknown");
                v["reason"] = json!("NodeStatusUnknown");
                v["message"] = json!("Kubelet stopped posting node status.");
            }
            conditions.push(v);
        }
        for t in KUBELET_CONDITIONS {
            if !existing.iter().any(|c| c.type_ == *t) {
                conditions.push(json!({"type": t, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.", "lastHeartbeatTime": now, "lastTransitionTime": now}));
            }
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = Patch::Merge(json!({"status": {"conditions": conditions}}));
        let updated = api
            .patch_status(&name, &PatchParams::default(), &patch)
            .await?;
        info!(node = %name, "node stopped posting status; marked Unknown");
        self.node_events
            .publish(
                &node_ref(&name),
                events::NORMAL,
                "NodeNotReady",
                &format!("Node {name} status is now: NodeNotReady"),
            )
            .await;
        Ok(updated)
    }

    async fn set_taints(&self, node: &Node, taints: &[Taint]) -> Result<Node, kube::Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = Patch::Merge(json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": taints},
        }));
        api.patch(&name, &PatchParams::default(), &patch).await
    }

    async fn pods_on(&self, node: &str) -> Result<Vec<Pod>, kube::Error> {
        let api: Api<Pod> = Api::all(self.client.clone());
        Ok(api
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?
            .items)
    }

    /// Ready=False on every pod of an unready node (upstream's MarkPodsNotReady).
    async fn mark_pods_not_ready(&self, pods: &[Pod]) {
        for p in pods {
            let Some(conds) = p.status.as_ref().and_then(|s| s.conditions.as_ref()) else {
                continue;
            };
            if !conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            {
                continue;
            }
            let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
            let patch = Patch::Strategic(json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now}
            ]}}));
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                p.metadata.namespace.as_deref().unwrap_or(""),
            );
            if let Err(e) = api
                .patch_status(
                    p.metadata.name.as_deref().unwrap_or(""),
                    &PatchParams::default(),
                    &patch,
                )
                .await
            {
                debug!("cannot mark pod NotReady: {e}");
                continue;
            }
            self.node_events
                .publish(
                    &events::reference(p),
                    events::WARNING,
                    "NodeNotReady",
                    "Node is not ready",
                )
                .await;
        }
    }

    /// Delete pods whose tolerations of the node's NoExecute taints ran out.
    async fn evict(&self, pods: &[Pod], taints: &[Taint], live: &mut HashSet<String>) {
        let now = Instant::now();
        for p in pods {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let key = format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or(""),
                p.metadata.name.as_deref().unwrap_or("")
            );
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let tolerations = p
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            let Some(wait) = toleration_time(taints, &tolerations) else {
                continue;
            };
            let due = {
                let mut st = self.state.lock();
                let s = st.evictions.entry(key.clone()).or_insert(Scheduled {
                    uid: uid.clone(),
                    deadline: now + wait,
                });
                if s.uid != uid {
                    *s = Scheduled {
                        uid: uid.clone(),
                        deadline: now + wait,
                    };
                }
                s.deadline <= now
            };
            live.insert(key.clone());
            if !due {
                continue;
            }
            self.eviction_events
                .publish(
                    &events::reference(p),
                    events::NORMAL,
                    "TaintManagerEviction",
                    &format!("Marking for deletion Pod {key}"),
                )
                .await;
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                p.metadata.namespace.as_deref().unwrap_or(""),
            );
            let name = p.metadata.name.as_deref().unwrap_or("");
            let cond = Patch::Strategic(json!({"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            }]}}));
            let _ = api.patch_status(name, &PatchParams::default(), &cond).await;
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &dp).await {
                Ok(_) => info!(pod = %key, "evicted from a node with NoExecute taints"),
                Err(e) => debug!(pod = %key, "eviction failed: {e}"),
            }
            self.state.lock().evictions.remove(&key);
            live.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: None,
        }
    }

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pressure_conditions_taint_no_schedule() {
        let now = jiff::Timestamp::now();
        let node = |mem: &str, disk: &str| -> Node {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n"}, "status": {"conditions": [
                {"type": "MemoryPressure", "status": mem}, {"type": "DiskPressure", "status": disk}]}}))
            .unwrap()
        };
        let user = taint("dedicated", "NoSchedule");
        let t = pressure_taints(vec![user.clone()], &node("True", "False"), now);
        let keys: Vec<&str> = t.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["dedicated", TAINT_MEMORY_PRESSURE]);
        assert_eq!(t[1].effect, "NoSchedule");
        let t = pressure_taints(t, &node("False", "True"), now);
        let keys: Vec<&str> = t.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["dedicated", TAINT_DISK_PRESSURE]);
        assert_eq!(
            pressure_taints(t, &node("False", "Unknown"), now),
            vec![user]
        );
    }

    #[test]
    fn taints_follow_readiness() {
        let now = jiff::Timestamp::now();
        let user = taint("dedicated", "NoSchedule");
        let t = desired_taints(std::slice::from_ref(&user), "Unknown", false, now);
        let keys: Vec<(&str, &str)> = t
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute"),
                (TAINT_UNREACHABLE, "NoSchedule")
            ]
        );
        let t = desired_taints(&t, "False", true, now);
        let keys: Vec<(&str, &str)> = t
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (TAINT_NOT_READY, "NoExecute"),
                (TAINT_NOT_READY, "NoSchedule"),
                (TAINT_UNSCHEDULABLE, "NoSchedule")
            ]
        );
        assert_eq!(desired_taints(&t, "True", false, now), vec![user]);
        // Unchanged taints keep their timeAdded (no update loop).
        let once = desired_taints(&[], "Unknown", false, now);
        assert_eq!(
            desired_taints(&once, "Unknown", false, jiff::Timestamp::now()),
            once
        );
    }

    #[test]
    fn toleration_seconds() {
        let taints = [
            taint(TAINT_UNREACHABLE, "NoExecute"),
            taint("x", "NoSchedule"),
        ];
        assert_eq!(
            toleration_time(&taints, &[]),
            Some(Duration::ZERO),
            "untolerated: evict at once"
        );
        let ts = [
            tol(
                json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
            ),
            tol(json!({"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2})),
        ];
        assert_eq!(toleration_time(&taints, &ts), Some(Duration::from_secs(2)));
        let forever = [tol(json!({"key": TAINT_UNREACHABLE, "operator": "Exists"}))];
        assert_eq!(toleration_time(&taints, &forever), None);
        assert_eq!(
            toleration_time(&[taint("x", "NoSchedule")], &[]),
            None,
            "no NoExecute taint"
        );
    }
}
