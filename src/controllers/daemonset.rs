//! DaemonSet controller (upstream's pkg/controller/daemon): one pod on
//! every node the DaemonSet's nodeSelector, node affinity and tolerations
//! admit. Pods are made with a required node affinity on the node's name so
//! the scheduler binds them there, and carry the tolerations upstream adds
//! to daemon pods. Templates are kept as ControllerRevisions
//! (`<ds>-<hash>`); the hash labels the pods, and RollingUpdate (maxUnavailable
//! or maxSurge) or OnDelete moves them to the current one.
//!
//! Each sync reads the DaemonSet's pods fresh from the API, so the previous
//! sync's writes are always seen; nodes come from a watch cache.

pub mod eligibility;
pub mod rollout;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{PartialObjectMeta, Selector};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde_json::json;
use tracing::{debug, warn};

use self::eligibility::{add_daemon_tolerations, node_should_run, pin_to_node, target_node};
use self::rollout::{
    NodePods, Rollout, TEMPLATE_GENERATION_LABEL, allows_surge, count, is_rolling_update,
    plan_node, rolling_update, surge_count, template_generation, unavailable_count,
};
use super::Context;
use super::events::{NORMAL, Recorder, WARNING, reference};
use super::history::{
    History, REVISION_HASH_LABEL, SyncError, selector_matches, selector_of, template_hash,
    template_patch,
};
use super::podcontrol::{controller_of, controller_ref, pod_from_template};

const COMPONENT: &str = "daemonset-controller";
/// Upstream's cap on pod creations or deletions per sync.
const BURST_REPLICAS: usize = 250;

struct State {
    client: kube::Client,
    recorder: Recorder,
    nodes: Store<Node>,
    failures: Mutex<HashMap<String, u32>>,
    /// Back-off for deleting failed daemon pods, per (DaemonSet, node):
    /// (current delay, when it was last used).
    failed_pods: Mutex<HashMap<String, (Duration, Instant)>>,
}

/// Run until the watches end.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let (nodes, writer) = reflector::store::<Node>();
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let state = Arc::new(State {
        client: client.clone(),
        recorder: ctx.recorder(COMPONENT),
        nodes,
        failures: Mutex::default(),
        failed_pods: Mutex::default(),
    });
    // Node changes that can change eligibility re-sync every DaemonSet;
    // heartbeats (status only) do not.
    let mut seen: HashMap<String, String> = HashMap::new();
    let node_changes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .filter_map(move |ev| futures::future::ready(node_change(&mut seen, ev)));
    let pods_cfg = watcher::Config::default().labels(REVISION_HASH_LABEL);
    controller
        .owns(
            Api::<ControllerRevision>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<PartialObjectMeta<Pod>>::all(client),
            pods_cfg,
            move |pod| sets_for_pod(&sets, &pod),
        )
        .reconcile_all_on(node_changes)
        .run(reconcile, error_policy, state)
        .for_each(|res| {
            if let Err(e) = res {
                debug!("daemonset controller: {e}");
            }
            futures::future::ready(())
        })
        .await;
}

/// What about a node matters to DaemonSets: its labels and taints.
fn fingerprint(node: &Node) -> String {
    let labels = serde_json::to_string(&node.metadata.labels).unwrap_or_default();
    let taints = serde_json::to_string(&node.spec.as_ref().and_then(|s| s.taints.as_ref()))
        .unwrap_or_default();
    format!("{labels}|{taints}")
}

/// Some(()) when a node event should re-sync the DaemonSets.
fn node_change(
    seen: &mut HashMap<String, String>,
    ev: Result<watcher::Event<Node>, watcher::Error>,
) -> Option<()> {
    match ev {
        Ok(watcher::Event::Apply(n)) | Ok(watcher::Event::InitApply(n)) => {
            let name = n.metadata.name.clone().unwrap_or_default();
            let fp = fingerprint(&n);
            (seen.insert(name, fp.clone()).as_ref() != Some(&fp)).then_some(())
        }
        Ok(watcher::Event::Delete(n)) => {
            seen.remove(n.metadata.name.as_deref().unwrap_or(""));
            Some(())
        }
        Ok(watcher::Event::InitDone) => Some(()),
        Ok(watcher::Event::Init) => None,
        Err(e) => {
            debug!("node watch: {e}");
            None
        }
    }
}

fn sets_for_pod(
    sets: &Store<DaemonSet>,
    pod: &PartialObjectMeta<Pod>,
) -> Vec<ObjectRef<DaemonSet>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(c) = controller_of(&pod.metadata) {
        if c.kind == "DaemonSet" && c.api_version == "apps/v1" {
            return vec![ObjectRef::new(&c.name).within(&ns)];
        }
        return Vec::new();
    }
    sets.state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|d| {
            selector_of(d.spec.as_ref().map(|s| &s.selector)).is_some_and(|sel| {
                !sel.selects_all() && selector_matches(&sel, pod.metadata.labels.as_ref())
            })
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn key_of(ds: &DaemonSet) -> String {
    format!(
        "{}/{}",
        ds.metadata.namespace.as_deref().unwrap_or(""),
        name_of(&ds.metadata)
    )
}

async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action, SyncError> {
    let action = sync(&ds, &state).await?;
    state.failures.lock().remove(&key_of(&ds));
    Ok(action)
}

fn error_policy(ds: Arc<DaemonSet>, err: &SyncError, state: Arc<State>) -> Action {
    let key = key_of(&ds);
    let n = {
        let mut f = state.failures.lock();
        let n = f.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    warn!(daemonset = key, "sync failed: {err}");
    let ms = 250u64.saturating_mul(1u64 << n.saturating_sub(1).min(16));
    Action::requeue(Duration::from_millis(ms.min(300_000)))
}

/// One pass over a DaemonSet, with what it needs at hand.
struct Sync<'a> {
    state: &'a State,
    ds: &'a DaemonSet,
    ns: String,
    pods: Api<Pod>,
    ds_ref: k8s_openapi::api::core::v1::ObjectReference,
    /// Earliest re-sync asked for (failed-pod back-off, minReadySeconds).
    requeue: Option<Duration>,
}

async fn sync(ds: &DaemonSet, state: &State) -> Result<Action, SyncError> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let Some(selector) = selector_of(Some(&spec.selector)) else {
        warn!(daemonset = key_of(ds), "invalid selector");
        return Ok(Action::await_change());
    };
    if state.nodes.wait_until_ready().await.is_err() {
        return Err(SyncError::Invalid("node cache is gone".into()));
    }
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let mut s = Sync {
        state,
        ds,
        pods: Api::namespaced(state.client.clone(), &ns),
        ds_ref: reference(ds),
        ns,
        requeue: None,
    };
    let mut nodes: Vec<Arc<Node>> = state.nodes.state();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let history = History::new(state.client.clone(), &s.ns);
    let owner = controller_ref(ds);
    let revisions = history.list_controlled(&owner, &selector, true).await?;
    let pods = s.claim_pods(&selector).await?;
    let (current, old) = s.construct_history(&history, revisions, &pods).await?;
    let hash = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_default();

    // A rolling-update step waits for a pass in which manage had nothing
    // to do, so it never reasons about pods from before manage's writes.
    let mut wrote = s.manage(&nodes, &pods, &hash).await?;
    if !wrote && is_rolling_update(ds) {
        wrote = s.roll(&nodes, &pods, &hash).await?;
    }
    let pods = if wrote {
        s.claim_pods(&selector).await?
    } else {
        pods
    };
    s.cleanup_history(&history, old, &pods).await?;
    s.update_status(&nodes, &pods, &hash).await?;
    Ok(match s.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

fn group_by_node(pods: &[Pod]) -> NodePods<'_> {
    let mut out: NodePods = BTreeMap::new();
    for pod in pods {
        if let Some(node) = target_node(pod) {
            out.entry(node).or_default().push(pod);
        }
    }
    out
}

impl Sync<'_> {
    fn min_ready(&self) -> i32 {
        self.ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn requeue_after(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    async fn event(&self, type_: &str, reason: &str, message: String) {
        self.state
            .recorder
            .publish(&self.ds_ref, type_, reason, &message)
            .await;
    }

    /// The DaemonSet's pods: controlled ones it still selects, plus matching
    /// orphans it adopts.
    async fn claim_pods(&self, selector: &Selector) -> Result<Vec<Pod>, SyncError> {
        let uid = self.ds.metadata.uid.clone().unwrap_or_default();
        let list = self
            .pods
            .list(&ListParams::default().labels(&selector.to_string()))
            .await?;
        let mut out = Vec::new();
        for pod in list.items {
            match controller_of(&pod.metadata) {
                Some(c) if c.uid == uid => out.push(pod),
                Some(_) => {}
                None if pod.metadata.deletion_timestamp.is_none() && !selector.selects_all() => {
                    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(controller_ref(self.ds));
                    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.metadata.resource_version}});
                    match self
                        .pods
                        .patch(
                            name_of(&pod.metadata),
                            &PatchParams::default(),
                            &Patch::Merge(patch),
                        )
                        .await
                    {
                        Ok(p) => out.push(p),
                        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// The revision of the current template and the older ones (upstream's
    /// constructHistory); creates or renumbers the current one as needed.
    async fn construct_history(
        &self,
        history: &History,
        revisions: Vec<ControllerRevision>,
        pods: &[Pod],
    ) -> Result<(ControllerRevision, Vec<ControllerRevision>), SyncError> {
        let spec = self
            .ds
            .spec
            .as_ref()
            .ok_or_else(|| SyncError::Invalid("daemonset has no spec".into()))?;
        let patch = template_patch(&spec.template);
        let mut current = Vec::new();
        let mut old = Vec::new();
        for mut rev in revisions {
            // Older revisions may lack the hash label: their name stands in.
            if rev
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH_LABEL))
                .is_none()
            {
                let name = rev.metadata.name.clone().unwrap_or_default();
                rev = history.label(&rev, REVISION_HASH_LABEL, &name).await?;
            }
            if rev.data.as_ref().map(|d| &d.0) == Some(&patch) {
                current.push(rev);
            } else {
                old.push(rev);
            }
        }
        let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let cur = if current.is_empty() {
            self.snapshot(next).await?
        } else {
            let cur = self.dedup(history, current, pods).await?;
            if cur.revision < next {
                history.set_revision_number(&cur, next).await?
            } else {
                cur
            }
        };
        Ok((cur, old))
    }

    /// Create the revision for the current template (upstream's snapshot).
    async fn snapshot(&self, revision: i64) -> Result<ControllerRevision, SyncError> {
        let spec = self
            .ds
            .spec
            .as_ref()
            .ok_or_else(|| SyncError::Invalid("daemonset has no spec".into()))?;
        let collision = self.ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision);
        let name = format!("{}-{hash}", name_of(&self.ds.metadata));
        let mut labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(REVISION_HASH_LABEL.into(), hash);
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns.clone()),
                labels: Some(labels),
                annotations: self.ds.metadata.annotations.clone(),
                owner_references: Some(vec![controller_ref(self.ds)]),
                ..Default::default()
            },
            data: Some(RawExtension(template_patch(&spec.template))),
            revision,
        };
        let api: Api<ControllerRevision> = Api::namespaced(self.state.client.clone(), &self.ns);
        match api.create(&PostParams::default(), &rev).await {
            Ok(r) => Ok(r),
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                let existing = api.get(&name).await?;
                if existing.data == rev.data {
                    return Ok(existing);
                }
                // A different template hashed to the same name: bump the
                // collision count (on the freshest DaemonSet) and retry.
                let dss: Api<DaemonSet> = Api::namespaced(self.state.client.clone(), &self.ns);
                let fresh = dss.get(name_of(&self.ds.metadata)).await?;
                let fresh_count = fresh.status.as_ref().and_then(|s| s.collision_count);
                if fresh_count != collision {
                    return Err(SyncError::Invalid(format!(
                        "found a stale collision count ({collision:?}, expected {fresh_count:?}) of DaemonSet {}; will retry until it is updated",
                        name_of(&self.ds.metadata)
                    )));
                }
                let bumped = fresh_count.unwrap_or(0) + 1;
                dss.patch_status(
                    name_of(&self.ds.metadata),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"collisionCount": bumped}})),
                )
                .await?;
                Err(kube::Error::Api(s).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Several revisions hold the current template: keep the newest, move
    /// pods labelled with the others' hashes onto it, delete the others.
    async fn dedup(
        &self,
        history: &History,
        mut current: Vec<ControllerRevision>,
        pods: &[Pod],
    ) -> Result<ControllerRevision, SyncError> {
        current.sort_by_key(|r| r.revision);
        let Some(keep) = current.pop() else {
            return Err(SyncError::Invalid("no current revision".into()));
        };
        let hash_of = |r: &ControllerRevision| {
            r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH_LABEL))
                .cloned()
                .unwrap_or_default()
        };
        let keep_hash = hash_of(&keep);
        for dup in current {
            let dup_hash = hash_of(&dup);
            for pod in pods {
                if pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(REVISION_HASH_LABEL))
                    == Some(&dup_hash)
                {
                    let patch = json!({"metadata": {"labels": {REVISION_HASH_LABEL: keep_hash}}});
                    self.pods
                        .patch(
                            name_of(&pod.metadata),
                            &PatchParams::default(),
                            &Patch::Merge(patch),
                        )
                        .await?;
                }
            }
            history.delete(&dup).await?;
        }
        Ok(keep)
    }

    /// Create and delete daemon pods so each eligible node has one
    /// (upstream's manage). Whether anything was written.
    async fn manage(
        &mut self,
        nodes: &[Arc<Node>],
        pods: &[Pod],
        hash: &str,
    ) -> Result<bool, SyncError> {
        let node_pods = group_by_node(pods);
        let surge = allows_surge(self.ds);
        let now = Timestamp::now();
        let mut create_on = Vec::new();
        let mut delete = Vec::new();
        let key = key_of(self.ds);
        for node in nodes {
            let name = name_of(&node.metadata);
            let on_node = node_pods.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let plan = plan_node(
                node_should_run(node, self.ds),
                on_node,
                surge,
                hash,
                self.min_ready(),
                now,
            );
            if plan.create {
                create_on.push(name.to_string());
            }
            delete.extend(plan.delete);
            for failed in plan.failed {
                // Kubelets may keep rejecting a pod: back off between kills.
                let backoff_key = format!("{key}/{name}");
                match self.failed_pod_backoff(&backoff_key) {
                    Some(wait) => self.requeue_after(wait),
                    None => {
                        let msg = format!(
                            "Found failed daemon pod {}/{failed} on node {name}, will try to kill it",
                            self.ns
                        );
                        self.event(WARNING, "FailedDaemonPod", msg).await;
                        delete.push(failed);
                    }
                }
            }
        }
        // Unscheduled pods for nodes that no longer exist never get a node.
        let known: HashSet<&str> = nodes.iter().map(|n| name_of(&n.metadata)).collect();
        for (node, on_node) in &node_pods {
            if known.contains(node.as_str()) {
                continue;
            }
            for pod in on_node {
                let unscheduled = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(str::is_empty);
                if unscheduled && pod.metadata.deletion_timestamp.is_none() {
                    delete.push(name_of(&pod.metadata).to_string());
                }
            }
        }
        self.sync_nodes(&delete, &create_on, hash).await
    }

    /// None if the failed pod may be killed now (and the delay doubles),
    /// else how long to wait.
    fn failed_pod_backoff(&self, key: &str) -> Option<Duration> {
        let mut map = self.state.failed_pods.lock();
        let now = Instant::now();
        match map.get(key).copied() {
            Some((delay, last)) if now.duration_since(last) < delay => {
                Some(delay - now.duration_since(last))
            }
            Some((delay, last)) => {
                // After a long quiet spell start over.
                let next = if now.duration_since(last) > Duration::from_secs(1800) {
                    Duration::from_secs(1)
                } else {
                    (delay * 2).min(Duration::from_secs(900))
                };
                map.insert(key.to_string(), (next, now));
                None
            }
            None => {
                if map.len() > 4096 {
                    map.clear();
                }
                map.insert(key.to_string(), (Duration::from_secs(1), now));
                None
            }
        }
    }

    /// Delete `delete` and create a pod on each of `create_on` (slow start
    /// batches for creations, as upstream). Whether anything was attempted.
    async fn sync_nodes(
        &self,
        delete: &[String],
        create_on: &[String],
        hash: &str,
    ) -> Result<bool, SyncError> {
        let create_on = &create_on[..create_on.len().min(BURST_REPLICAS)];
        let delete = &delete[..delete.len().min(BURST_REPLICAS)];
        let mut first_err: Option<SyncError> = None;
        let template = self.pod_template(hash);
        let mut pos = 0;
        let mut batch = 1;
        while pos < create_on.len() {
            let end = (pos + batch).min(create_on.len());
            let results = futures::future::join_all(
                create_on[pos..end]
                    .iter()
                    .map(|node| self.create_pod(&template, node)),
            )
            .await;
            let failed = results.into_iter().filter_map(Result::err).next();
            if let Some(e) = failed {
                // Do not go on creating into an error (quota, admission).
                first_err.get_or_insert(e);
                break;
            }
            pos = end;
            batch *= 2;
        }
        let results =
            futures::future::join_all(delete.iter().map(|name| self.delete_pod(name))).await;
        if let Some(e) = results.into_iter().filter_map(Result::err).next() {
            first_err.get_or_insert(e);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(!create_on.is_empty() || !delete.is_empty()),
        }
    }

    /// The template daemon pods are made from: the DaemonSet's, with the
    /// daemon tolerations and the revision (and generation) labels.
    fn pod_template(&self, hash: &str) -> k8s_openapi::api::core::v1::PodTemplateSpec {
        let mut t = self
            .ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        if let Some(spec) = t.spec.as_mut() {
            add_daemon_tolerations(spec);
        }
        let labels = t
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new);
        if let Some(g) = template_generation(self.ds) {
            labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
        }
        if !hash.is_empty() {
            labels.insert(REVISION_HASH_LABEL.into(), hash.to_string());
        }
        t
    }

    async fn create_pod(
        &self,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
        node: &str,
    ) -> Result<(), SyncError> {
        let mut pod = pod_from_template(
            template,
            &self.ns,
            controller_ref(self.ds),
            name_of(&self.ds.metadata),
            None,
        );
        if let Some(spec) = pod.spec.as_mut() {
            spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
        }
        match self.pods.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                self.event(
                    NORMAL,
                    "SuccessfulCreate",
                    format!("Created pod: {}", name_of(&p.metadata)),
                )
                .await;
                Ok(())
            }
            Err(e) => {
                self.event(WARNING, "FailedCreate", format!("Error creating: {e}"))
                    .await;
                Err(e.into())
            }
        }
    }

    async fn delete_pod(&self, name: &str) -> Result<(), SyncError> {
        match self.pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                self.event(NORMAL, "SuccessfulDelete", format!("Deleted pod: {name}"))
                    .await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => {
                self.event(WARNING, "FailedDelete", format!("Error deleting: {e}"))
                    .await;
                Err(e.into())
            }
        }
    }

    /// One rolling-update step. Whether anything was written.
    async fn roll(
        &mut self,
        nodes: &[Arc<Node>],
        pods: &[Pod],
        hash: &str,
    ) -> Result<bool, SyncError> {
        let mut node_pods = group_by_node(pods);
        let mut should: HashMap<String, bool> = HashMap::new();
        let mut desired = 0;
        for node in nodes {
            let name = name_of(&node.metadata).to_string();
            let run = node_should_run(node, self.ds).0;
            if run {
                desired += 1;
                node_pods.entry(name.clone()).or_default();
            }
            should.insert(name, run);
        }
        let mut max_surge = surge_count(self.ds, desired);
        let mut max_unavailable = unavailable_count(self.ds, desired);
        if desired > 0 && max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        if max_surge < 0 {
            max_surge = 0;
        }
        let r = Rollout {
            node_pods: &node_pods,
            hash,
            generation: template_generation(self.ds),
            max_surge,
            max_unavailable,
            desired,
            min_ready: self.min_ready(),
            now: Timestamp::now(),
        };
        let plan = rolling_update(&r, &|n| should.get(n).copied().unwrap_or(false));
        self.sync_nodes(&plan.delete, &plan.create_on, hash).await
    }

    /// Delete old revisions beyond revisionHistoryLimit that no pod uses.
    async fn cleanup_history(
        &self,
        history: &History,
        mut old: Vec<ControllerRevision>,
        pods: &[Pod],
    ) -> Result<(), SyncError> {
        let limit = self
            .ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0);
        let mut to_kill = old.len() as i64 - i64::from(limit);
        if to_kill <= 0 {
            return Ok(());
        }
        let live: HashSet<&str> = pods
            .iter()
            .filter_map(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get(REVISION_HASH_LABEL)
                    .map(String::as_str)
            })
            .collect();
        old.sort_by_key(|r| r.revision);
        for rev in &old {
            if to_kill <= 0 {
                break;
            }
            let hash = rev
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH_LABEL))
                .map(String::as_str);
            if hash.is_some_and(|h| live.contains(h)) {
                continue;
            }
            history.delete(rev).await?;
            to_kill -= 1;
        }
        Ok(())
    }

    async fn update_status(
        &mut self,
        nodes: &[Arc<Node>],
        pods: &[Pod],
        hash: &str,
    ) -> Result<(), SyncError> {
        let node_pods = group_by_node(pods);
        let eligible: Vec<(String, bool)> = nodes
            .iter()
            .map(|n| {
                (
                    name_of(&n.metadata).to_string(),
                    node_should_run(n, self.ds).0,
                )
            })
            .collect();
        let now = Timestamp::now();
        let min_ready = self.min_ready();
        let c = count(
            &eligible,
            &node_pods,
            hash,
            template_generation(self.ds),
            min_ready,
            now,
        );
        let old = self.ds.status.clone().unwrap_or_default();
        let generation = self.ds.metadata.generation.unwrap_or(0);
        let unavailable = c.desired - c.available;
        let same = old.desired_number_scheduled == c.desired
            && old.current_number_scheduled == c.current
            && old.number_misscheduled == c.misscheduled
            && old.number_ready == c.ready
            && old.updated_number_scheduled.unwrap_or(0) == c.updated
            && old.number_available.unwrap_or(0) == c.available
            && old.number_unavailable.unwrap_or(0) == unavailable
            && old.observed_generation.unwrap_or(0) >= generation;
        if min_ready > 0 && c.ready != c.available {
            self.requeue_after(Duration::from_secs(u64::try_from(min_ready).unwrap_or(1)));
        }
        if same {
            return Ok(());
        }
        let status = json!({"status": {
            "observedGeneration": generation,
            "desiredNumberScheduled": c.desired,
            "currentNumberScheduled": c.current,
            "numberMisscheduled": c.misscheduled,
            "numberReady": c.ready,
            "updatedNumberScheduled": c.updated,
            "numberAvailable": c.available,
            "numberUnavailable": unavailable,
        }});
        let api: Api<DaemonSet> = Api::namespaced(self.state.client.clone(), &self.ns);
        match api
            .patch_status(
                name_of(&self.ds.metadata),
                &PatchParams::default(),
                &Patch::Merge(status),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};

    use super::*;

    fn node(labels: &[(&str, &str)], taints: &[&str]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|k| Taint {
                            key: k.to_string(),
                            effect: "NoSchedule".into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn only_label_and_taint_changes_resync() {
        let mut seen = HashMap::new();
        let ev = |n: Node| Ok(watcher::Event::Apply(n));
        assert_eq!(
            node_change(&mut seen, ev(node(&[("a", "1")], &[]))),
            Some(())
        );
        // A heartbeat: same labels and taints.
        let mut hb = node(&[("a", "1")], &[]);
        hb.status = Some(Default::default());
        assert_eq!(node_change(&mut seen, ev(hb)), None);
        assert_eq!(
            node_change(&mut seen, ev(node(&[("a", "2")], &[]))),
            Some(())
        );
        assert_eq!(
            node_change(&mut seen, ev(node(&[("a", "2")], &["t"]))),
            Some(())
        );
        assert_eq!(
            node_change(&mut seen, Ok(watcher::Event::Delete(node(&[], &[])))),
            Some(())
        );
        assert_eq!(
            node_change(&mut seen, Ok(watcher::Event::InitDone)),
            Some(())
        );
    }
}
