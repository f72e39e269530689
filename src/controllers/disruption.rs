//! Disruption controller: computes a PodDisruptionBudget's status as
//! upstream does. expectedPods comes from the scale of the pods'
//! controllers (or the pod count for an integer minAvailable),
//! desiredHealthy from minAvailable/maxUnavailable, currentHealthy from
//! Ready pods not being deleted nor recently evicted, and
//! disruptionsAllowed = currentHealthy - desiredHealthy, with the
//! DisruptionAllowed condition. It also expires disruptedPods entries the
//! eviction subresource adds once their pods are gone or the entry is old.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DynamicObject, ListParams, PartialObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::Context;
use super::events::{Recorder, WARNING};
use super::gc::{api_resource, resolve};
use super::job::queue::WorkQueue;
use super::job::{key_of, split_key};
use crate::api::selectors::LabelSelector;

/// How long an eviction stays in disruptedPods waiting for its pod to go
/// (upstream's DeletionTimeout).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum DisruptionError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Compute(String),
}

struct Controller {
    ctx: Arc<Context>,
    queue: WorkQueue<String>,
    recorder: Recorder,
    /// PDB names per namespace.
    pdbs: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Controller {
    fn enqueue_namespace(&self, ns: &str) {
        let keys: Vec<String> = self
            .pdbs
            .lock()
            .get(ns)
            .map(|s| s.iter().map(|n| key_of(ns, n)).collect())
            .unwrap_or_default();
        for k in keys {
            self.queue.add(k);
        }
    }
}

/// Run until the PodDisruptionBudget watch ends.
pub async fn run(ctx: Arc<Context>) {
    let me = Arc::new(Controller {
        ctx: ctx.clone(),
        queue: WorkQueue::default(),
        recorder: ctx.recorder("controllermanager"),
        pdbs: Mutex::default(),
    });
    let worker = {
        let me = me.clone();
        tokio::spawn(async move {
            loop {
                let key = me.queue.next().await;
                match me.sync(&key).await {
                    Ok(()) => me.queue.forget(&key),
                    Err(e) => {
                        debug!(pdb = %key, "disruption: {e}");
                        me.queue.add_rate_limited(key.clone());
                    }
                }
                me.queue.done(&key);
            }
        })
    };
    // Pods and every scalable controller change a budget's numbers.
    let mut feeds = Vec::new();
    for (group, plural) in [
        ("", "pods"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("", "replicationcontrollers"),
    ] {
        let Some(def) = ctx
            .catalogue
            .all()
            .into_iter()
            .find(|d| d.group == group && d.plural == plural)
        else {
            continue;
        };
        let me = me.clone();
        feeds.push(tokio::spawn(async move {
            let api: Api<PartialObjectMeta<DynamicObject>> =
                Api::all_with(me.ctx.client.clone(), &api_resource(&def));
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = events.next().await {
                if let Ok(watcher::Event::Apply(m)) | Ok(watcher::Event::Delete(m)) = ev {
                    me.enqueue_namespace(m.metadata.namespace.as_deref().unwrap_or(""));
                }
            }
        }));
    }
    let api: Api<PodDisruptionBudget> = Api::all(ctx.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => {
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                let name = p.metadata.name.clone().unwrap_or_default();
                me.pdbs
                    .lock()
                    .entry(ns.clone())
                    .or_default()
                    .insert(name.clone());
                me.queue.add(key_of(&ns, &name));
            }
            Ok(watcher::Event::Delete(p)) => {
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                if let Some(s) = me.pdbs.lock().get_mut(&ns) {
                    s.remove(p.metadata.name.as_deref().unwrap_or(""));
                }
            }
            Ok(_) => {}
            Err(e) => debug!("disruption pdb watch: {e}"),
        }
    }
    warn!("disruption pdb watch ended");
    worker.abort();
    for f in feeds {
        f.abort();
    }
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// An int-or-percent against `total`, percentages rounded up (upstream's
/// GetScaledValueFromIntOrPercent with roundUp).
pub fn scaled(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let v = (pct * i64::from(total) + 99) / 100;
            Ok(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }
    }
}

/// The pods a budget selects (a missing selector selects none; an empty
/// one selects every pod in the namespace).
pub fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let Ok(v) = serde_json::to_value(sel) else {
        return false;
    };
    let Ok(sel) = LabelSelector::from_label_selector_json(&v) else {
        return false;
    };
    let labels: BTreeMap<String, String> = pod.metadata.labels.clone().unwrap_or_default();
    sel.matches(&labels)
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<(), DisruptionError> {
        let (ns, name) = split_key(key);
        let client = &self.ctx.client;
        let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
        let Some(pdb) = api.get_opt(name).await? else {
            return Ok(());
        };
        let pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|p| selects(&pdb, p))
            .collect();
        let now = Timestamp::now();
        let status = match self.expected(&pdb, &pods).await {
            Ok((expected, desired, unmanaged)) => {
                if !unmanaged.is_empty() {
                    self.recorder
                        .publish(
                            &super::events::reference(&pdb),
                            WARNING,
                            "UnmanagedPods",
                            &format!(
                                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                                selector_text(&pdb)
                            ),
                        )
                        .await;
                }
                let disrupted = live_disruptions(&pdb, &pods, now);
                let healthy = pods
                    .iter()
                    .filter(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or(""))
                            && is_ready(p)
                    })
                    .count() as i32;
                let allowed = (healthy - desired).max(0);
                // Come back when the oldest recorded eviction expires.
                if let Some(first) = disrupted.values().filter_map(|t| parse_time(t)).min()
                    && let Ok(expire) = first.checked_add(
                        jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default(),
                    )
                {
                    let left = now.duration_until(expire);
                    self.queue.add_after(
                        key.to_string(),
                        Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_secs(1),
                    );
                }
                status_json(
                    &pdb, expected, desired, healthy, allowed, &disrupted, None, now,
                )
            }
            Err(e) => {
                // Fail safe: no disruptions while the numbers are unknown.
                status_json(&pdb, 0, 0, 0, 0, &BTreeMap::new(), Some(&e), now)
            }
        };
        let mut cur =
            serde_json::to_value(&pdb).map_err(|e| DisruptionError::Compute(e.to_string()))?;
        if same_status(cur.get("status"), &status) {
            return Ok(());
        }
        cur["status"] = status;
        let body: PodDisruptionBudget =
            serde_json::from_value(cur).map_err(|e| DisruptionError::Compute(e.to_string()))?;
        // The body's resourceVersion makes this a compare-and-swap with
        // the eviction subresource's decrements.
        api.replace_status(name, &PostParams::default(), &body)
            .await?;
        Ok(())
    }

    /// (expectedPods, desiredHealthy, unmanaged pod names).
    async fn expected(
        &self,
        pdb: &PodDisruptionBudget,
        pods: &[Pod],
    ) -> Result<(i32, i32, Vec<String>), String> {
        let spec = pdb.spec.clone().unwrap_or_default();
        if let Some(max) = &spec.max_unavailable {
            let (expected, unmanaged) = self.expected_scale(pods).await?;
            let max = scaled(max, expected)?;
            return Ok((expected, (expected - max).max(0), unmanaged));
        }
        match &spec.min_available {
            Some(IntOrString::Int(i)) => Ok((pods.len() as i32, *i, Vec::new())),
            Some(pct) => {
                let (expected, unmanaged) = self.expected_scale(pods).await?;
                Ok((expected, scaled(pct, expected)?, unmanaged))
            }
            None => Ok((0, 0, Vec::new())),
        }
    }

    /// The summed scale of the pods' controllers (each counted once; a
    /// ReplicaSet of a Deployment counts as the Deployment).
    async fn expected_scale(&self, pods: &[Pod]) -> Result<(i32, Vec<String>), String> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut unmanaged = Vec::new();
        let mut total = 0i32;
        for pod in pods {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            let Some(owner) = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .cloned()
            else {
                unmanaged.push(pod.metadata.name.clone().unwrap_or_default());
                continue;
            };
            let (mut api_version, mut kind, mut oname, mut uid) =
                (owner.api_version, owner.kind, owner.name, owner.uid);
            let mut obj = self.get(ns, &api_version, &kind, &oname).await?;
            if kind == "ReplicaSet"
                && let Some(dep) = obj
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                    .cloned()
            {
                (api_version, kind, oname, uid) = (dep.api_version, dep.kind, dep.name, dep.uid);
                obj = self.get(ns, &api_version, &kind, &oname).await?;
            }
            if obj.metadata.uid.as_deref() != Some(uid.as_str()) {
                return Err(format!(
                    "found no controller for pod {:?}",
                    pod.metadata.name.as_deref().unwrap_or("")
                ));
            }
            if seen.insert(uid) {
                let replicas = match resolve(&self.ctx.catalogue, &api_version, &kind) {
                    Some(def) if def.has_subresource("scale") => {
                        let api: Api<DynamicObject> =
                            Api::namespaced_with(self.ctx.client.clone(), ns, &api_resource(&def));
                        api.get_scale(&oname)
                            .await
                            .map_err(|e| e.to_string())?
                            .spec
                            .and_then(|s| s.replicas)
                            .unwrap_or(0)
                    }
                    _ => {
                        return Err(format!(
                            "{kind} {oname:?} of pod {:?} has no scale subresource",
                            pod.metadata.name.as_deref().unwrap_or("")
                        ));
                    }
                };
                total = total.saturating_add(replicas);
            }
        }
        Ok((total, unmanaged))
    }

    async fn get(
        &self,
        ns: &str,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Result<DynamicObject, String> {
        let def = resolve(&self.ctx.catalogue, api_version, kind)
            .ok_or_else(|| format!("unknown controller kind {api_version}/{kind}"))?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.ctx.client.clone(), ns, &api_resource(&def));
        api.get(name).await.map_err(|e| e.to_string())
    }
}

fn selector_text(pdb: &PodDisruptionBudget) -> String {
    pdb.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|v| LabelSelector::from_label_selector_json(&v).ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// disruptedPods entries still pending: the pod exists, is not being
/// deleted yet, and the entry is younger than DELETION_TIMEOUT.
fn live_disruptions(
    pdb: &PodDisruptionBudget,
    pods: &[Pod],
    now: Timestamp,
) -> BTreeMap<String, String> {
    let Some(map) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return BTreeMap::new();
    };
    map.iter()
        .filter(|(name, t)| {
            let pod = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name.as_str()));
            let young =
                now.duration_since(t.0).as_secs().unsigned_abs() < DELETION_TIMEOUT.as_secs();
            pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none()) && young
        })
        .map(|(n, t)| (n.clone(), t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn status_json(
    pdb: &PodDisruptionBudget,
    expected: i32,
    desired: i32,
    healthy: i32,
    allowed: i32,
    disrupted: &BTreeMap<String, String>,
    failure: Option<&str>,
    now: Timestamp,
) -> Value {
    let (status, reason, message) = match failure {
        Some(e) => ("False", "SyncFailed", e.to_string()),
        None if allowed > 0 => ("True", "SufficientPods", String::new()),
        None => ("False", "InsufficientPods", String::new()),
    };
    // Keep the transition time while the condition's status holds.
    let since = pdb
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionAllowed"))
        .filter(|c| c.status == status)
        .map(|c| {
            c.last_transition_time
                .0
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .unwrap_or_else(|| now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    let mut s = json!({
        "observedGeneration": pdb.metadata.generation.unwrap_or(0),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{
            "type": "DisruptionAllowed", "status": status, "reason": reason, "message": message,
            "observedGeneration": pdb.metadata.generation.unwrap_or(0),
            "lastTransitionTime": since,
        }],
    });
    if !disrupted.is_empty() {
        s["disruptedPods"] = json!(disrupted);
    }
    s
}

/// Equal up to serialisation details (the stored status went through the
/// typed struct; compare the same way).
fn same_status(cur: Option<&Value>, want: &Value) -> bool {
    let norm = |v: &Value| {
        serde_json::from_value::<k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus>(v.clone())
            .ok()
            .and_then(|s| serde_json::to_value(s).ok())
    };
    cur.and_then(norm).is_some_and(|c| Some(c) == norm(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::String("34%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::Int(1), 3), Ok(1));
        assert!(scaled(&IntOrString::String("x".into()), 3).is_err());
    }
}
