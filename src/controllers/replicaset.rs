//! ReplicaSet and ReplicationController controller (upstream's
//! pkg/controller/replicaset): keeps the number of active pods matching a
//! controller's selector at spec.replicas. It creates pods from the template
//! in slow-start batches, deletes the least valuable pods first (see
//! `ranking`), adopts matching orphans and releases pods whose labels stopped
//! matching, waits for its own creations and deletions to come back through
//! the watch before acting again (expectations), and reports status.
//!
//! One implementation serves both kinds through `kinds::ReplicaKind`.

pub mod claim;
pub mod engine;
pub mod kinds;
pub mod pods;
pub mod ranking;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{debug, warn};

use super::Context;
use super::events::{self, Recorder};
use super::expectations::ControllerExpectations;
use super::podcontrol;
use claim::Claim;
use engine::{Backoff, Queue, api_message, is_not_found, key_of, namespace_terminating};
use kinds::{ReplicaKind, ReplicaStatus};
use pods::{PodCache, PodChange, PodInfo};

/// At most this many pods are created or deleted in one sync (upstream's
/// burstReplicas); the rest follow once those are observed.
pub const BURST_REPLICAS: usize = 500;
/// Reconciles running at once (upstream's --concurrent-replicaset-syncs).
const WORKERS: u16 = 5;

/// Failures creating or deleting pods.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", api_message(.0))]
    Api(#[from] kube::Error),
    #[error("{0} has no pod template")]
    NoTemplate(String),
}

/// Run the ReplicaSet controller.
pub async fn run(ctx: Arc<Context>) {
    run_kind::<ReplicaSet>(ctx).await
}

/// Run the ReplicationController controller.
pub async fn run_replication_controllers(ctx: Arc<Context>) {
    run_kind::<ReplicationController>(ctx).await
}

/// What the event handlers and reconciles of one controller share.
struct Shared<K: ReplicaKind> {
    client: kube::Client,
    recorder: Recorder,
    pods: PodCache,
    store: Store<K>,
    expectations: ControllerExpectations,
    queue: Queue<K>,
    backoff: Backoff,
}

/// The replica controller for kind `K`.
pub async fn run_kind<K: ReplicaKind>(ctx: Arc<Context>) {
    let (store, writer) = reflector::store::<K>();
    let (queue, rx) = Queue::new();
    let shared = Arc::new(Shared {
        client: ctx.client.clone(),
        recorder: ctx.recorder(K::COMPONENT),
        pods: PodCache::new(),
        store: store.clone(),
        expectations: ControllerExpectations::new(),
        queue,
        backoff: Backoff::default(),
    });
    tokio::spawn(watch_owners(shared.clone(), writer));
    tokio::spawn(watch_pods(shared.clone()));
    engine::run(
        K::COMPONENT,
        store,
        rx,
        shared,
        WORKERS,
        reconcile::<K>,
        error_policy::<K>,
    )
    .await;
}

async fn watch_owners<K: ReplicaKind>(sh: Arc<Shared<K>>, mut writer: reflector::store::Writer<K>) {
    let api: Api<K> = Api::all(sh.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                debug!(controller = K::COMPONENT, "watch: {e}");
                continue;
            }
        };
        writer.apply_watcher_event(&ev);
        match &ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => sh.queue.add(o),
            watcher::Event::Delete(o) => {
                sh.expectations.delete(&key_of(o));
                sh.backoff.succeeded(&key_of(o));
            }
            _ => {}
        }
    }
}

async fn watch_pods<K: ReplicaKind>(sh: Arc<Shared<K>>) {
    let api: Api<Pod> = Api::all(sh.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relist: Vec<PodInfo> = Vec::new();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Apply(p)) => {
                let change = sh.pods.apply(PodInfo::from_pod(&p));
                sh.pod_changed(change);
            }
            Ok(watcher::Event::Delete(p)) => {
                let info = PodInfo::from_pod(&p);
                sh.pods.delete(&info.namespace, &info.name);
                sh.pod_changed(PodChange::Deleted(Arc::new(info)));
            }
            Ok(watcher::Event::Init) => relist.clear(),
            Ok(watcher::Event::InitApply(p)) => relist.push(PodInfo::from_pod(&p)),
            Ok(watcher::Event::InitDone) => {
                for change in sh.pods.replace(std::mem::take(&mut relist)) {
                    sh.pod_changed(change);
                }
                sh.pods.mark_synced();
            }
            Err(e) => debug!(controller = K::COMPONENT, "pod watch: {e}"),
        }
    }
}

impl<K: ReplicaKind> Shared<K> {
    /// The controller a pod's controller reference names, if it is ours.
    fn resolve(&self, ns: &str, r: &OwnerReference) -> Option<Arc<K>> {
        if r.kind != K::kind(&()) {
            return None;
        }
        let obj = self.store.get(&ObjectRef::new(&r.name).within(ns))?;
        (obj.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(obj)
    }

    /// Controllers in the pod's namespace whose selector matches it.
    fn selecting(&self, p: &PodInfo) -> Vec<Arc<K>> {
        self.store.state_filter(|o| {
            o.meta().namespace.as_deref() == Some(p.namespace.as_str())
                && o.pod_selector().is_some_and(|s| s.matches(&p.labels))
        })
    }

    /// Upstream's add/update/delete pod handlers: record what expectations
    /// wait for and queue the controllers concerned.
    fn pod_changed(&self, change: PodChange) {
        match change {
            PodChange::Added(p) => self.pod_added(&p),
            PodChange::Updated { old, new } => self.pod_updated(&old, &new),
            PodChange::Deleted(p) => self.pod_deleted(&p),
        }
    }

    fn pod_added(&self, p: &PodInfo) {
        if p.terminating {
            // Seen for the first time already being deleted (e.g. after a relist).
            self.pod_deleted(p);
            return;
        }
        if let Some(r) = p.controller() {
            if let Some(owner) = self.resolve(&p.namespace, r) {
                self.expectations.creation_observed(&key_of(&*owner));
                self.queue.add(&owner);
            }
            return;
        }
        // An orphan: wake whoever might adopt it.
        for owner in self.selecting(p) {
            self.queue.add(&owner);
        }
    }

    fn pod_updated(&self, old: &PodInfo, new: &PodInfo) {
        if old.resource_version == new.resource_version {
            return;
        }
        let labels_changed = old.labels != new.labels;
        if new.terminating {
            self.pod_deleted(new);
            if labels_changed {
                self.pod_deleted(old);
            }
            return;
        }
        let (cur_ref, old_ref) = (new.controller(), old.controller());
        let ref_changed = cur_ref != old_ref;
        if ref_changed && let Some(owner) = old_ref.and_then(|r| self.resolve(&old.namespace, r)) {
            self.queue.add(&owner);
        }
        if let Some(r) = cur_ref {
            if let Some(owner) = self.resolve(&new.namespace, r) {
                self.queue.add(&owner);
                // Availability changes minReadySeconds after readiness.
                let min_ready = owner.min_ready_seconds();
                if !old.ready && new.ready && min_ready > 0 {
                    self.queue
                        .add_after(&owner, Duration::from_secs(min_ready as u64));
                }
            }
            return;
        }
        if labels_changed || ref_changed {
            for owner in self.selecting(new) {
                self.queue.add(&owner);
            }
        }
    }

    fn pod_deleted(&self, p: &PodInfo) {
        let Some(owner) = p.controller().and_then(|r| self.resolve(&p.namespace, r)) else {
            return;
        };
        self.expectations
            .deletion_observed(&key_of(&*owner), &p.key());
        self.queue.add(&owner);
    }

    fn pods_api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Whether `owner` may adopt: a fresh read confirms it is the same object
    /// and is not being deleted (upstream's RecheckDeletionTimestamp).
    async fn can_adopt(&self, owner: &K) -> bool {
        let api: Api<K> = Api::namespaced(
            self.client.clone(),
            owner.meta().namespace.as_deref().unwrap_or(""),
        );
        match api.get_opt(&owner.name_any()).await {
            Ok(Some(fresh)) => {
                fresh.meta().uid == owner.meta().uid && fresh.meta().deletion_timestamp.is_none()
            }
            _ => false,
        }
    }

    /// Claim the candidate pods: keep ours, adopt matching orphans, release
    /// ours that no longer match. Returns the pods now ours.
    async fn claim_pods(
        &self,
        owner: &K,
        selector: Option<&Selector>,
        candidates: Vec<Arc<PodInfo>>,
    ) -> Result<Vec<Arc<PodInfo>>, Error> {
        let uid = owner.meta().uid.clone().unwrap_or_default();
        let owner_deleting = owner.meta().deletion_timestamp.is_some();
        let ns = owner.meta().namespace.clone().unwrap_or_default();
        let api = self.pods_api(&ns);
        let mut claimed = Vec::with_capacity(candidates.len());
        let mut first_err = None;
        let mut may_adopt: Option<bool> = None;
        for p in candidates {
            let matches = selector.is_some_and(|s| s.matches(&p.labels));
            match claim::decide(&uid, owner_deleting, p.controller(), p.terminating, matches) {
                Claim::Owned => claimed.push(p),
                Claim::Ignore => {}
                Claim::Adopt => {
                    if may_adopt.is_none() {
                        may_adopt = Some(self.can_adopt(owner).await);
                    }
                    if may_adopt != Some(true) {
                        continue;
                    }
                    let refs =
                        claim::with_owner(&p.owner_references, podcontrol::controller_ref(owner));
                    // No resourceVersion precondition (upstream patches with
                    // the pod's uid only): a node agent writes a starting
                    // pod's status several times a second, and a stale
                    // version would fail the claim again and again.
                    match claim::set_owner_references(&api, &p.name, None, refs).await {
                        Ok(pod) => claimed.push(Arc::new(PodInfo::from_pod(&pod))),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                Claim::Release => {
                    let refs = claim::without_owner(&p.owner_references, &uid);
                    match claim::set_owner_references(&api, &p.name, None, refs).await {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(claimed),
        }
    }

    /// Create or delete pods so that `filtered` (the active pods we own)
    /// moves towards spec.replicas.
    async fn manage_replicas(
        &self,
        owner: &K,
        filtered: &[Arc<PodInfo>],
        key: &str,
    ) -> Result<(), Error> {
        let desired = owner.desired().max(0) as usize;
        let have = filtered.len();
        if have < desired {
            let n = (desired - have).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, n);
            let Some(template) = owner.template() else {
                for _ in 0..n {
                    self.expectations.creation_observed(key);
                }
                return Err(Error::NoTemplate(key.to_string()));
            };
            let (created, err) = slow_start_batch(n, || self.create_pod(owner, template)).await;
            // Creations that were never attempted will never be observed.
            for _ in created..n {
                self.expectations.creation_observed(key);
            }
            return err.map_or(Ok(()), |e| Err(e.into()));
        }
        if have > desired {
            let n = (have - desired).min(BURST_REPLICAS);
            let related = self.related_pods(owner);
            let victims = ranking::pods_to_delete(filtered.to_vec(), &related, n, Timestamp::now());
            let keys: Vec<String> = victims.iter().map(|p| p.key()).collect();
            self.expectations.expect_deletions(key, &keys);
            let results = join_all(victims.iter().map(|p| self.delete_pod(owner, p))).await;
            let mut first_err = None;
            for (p, res) in victims.iter().zip(results) {
                if let Err(e) = res {
                    // This deletion will never be observed.
                    self.expectations.deletion_observed(key, &p.key());
                    if !is_not_found(&e) {
                        first_err.get_or_insert(e);
                    }
                }
            }
            return first_err.map_or(Ok(()), |e| Err(e.into()));
        }
        Ok(())
    }

    /// Active pods of the ReplicaSets that share this one's controller (the
    /// Deployment's other revisions), for spreading deletions across nodes.
    /// A controller with no owner has none, as upstream.
    fn related_pods(&self, owner: &K) -> Vec<Arc<PodInfo>> {
        let Some(parent) = podcontrol::controller_of(owner.meta()).map(|r| r.uid.clone()) else {
            return Vec::new();
        };
        let ns = owner.meta().namespace.clone();
        self.store
            .state_filter(|o| {
                o.meta().namespace == ns
                    && podcontrol::controller_of(o.meta()).is_some_and(|r| r.uid == parent)
            })
            .iter()
            .flat_map(|o| {
                self.pods
                    .controlled_by(o.meta().uid.as_deref().unwrap_or(""))
            })
            .filter(|p| p.is_active())
            .collect()
    }

    async fn create_pod(&self, owner: &K, template: &PodTemplateSpec) -> Result<(), kube::Error> {
        let ns = owner.meta().namespace.clone().unwrap_or_default();
        let pod = podcontrol::pod_from_template(
            template,
            &ns,
            podcontrol::controller_ref(owner),
            &owner.name_any(),
            None,
        );
        match self
            .pods_api(&ns)
            .create(&PostParams::default(), &pod)
            .await
        {
            Ok(created) => {
                // Best effort and off the hot path: a burst of creations must
                // not wait for its events.
                let (rec, oref) = (self.recorder.clone(), events::reference(owner));
                let msg = format!("Created pod: {}", created.name_any());
                tokio::spawn(async move {
                    rec.publish(&oref, events::NORMAL, "SuccessfulCreate", &msg)
                        .await
                });
                Ok(())
            }
            Err(e) if namespace_terminating(&e) => Err(e),
            Err(e) => {
                let msg = format!("Error creating: {}", api_message(&e));
                self.recorder
                    .publish(
                        &events::reference(owner),
                        events::WARNING,
                        "FailedCreate",
                        &msg,
                    )
                    .await;
                Err(e)
            }
        }
    }

    async fn delete_pod(&self, owner: &K, p: &PodInfo) -> Result<(), kube::Error> {
        match self
            .pods_api(&p.namespace)
            .delete(&p.name, &DeleteParams::default())
            .await
        {
            Ok(_) => {
                let (rec, oref) = (self.recorder.clone(), events::reference(owner));
                let msg = format!("Deleted pod: {}", p.name);
                tokio::spawn(async move {
                    rec.publish(&oref, events::NORMAL, "SuccessfulDelete", &msg)
                        .await
                });
                Ok(())
            }
            Err(e) if is_not_found(&e) => Err(e),
            Err(e) => {
                let msg = format!("Error deleting: {}", api_message(&e));
                self.recorder
                    .publish(
                        &events::reference(owner),
                        events::WARNING,
                        "FailedDelete",
                        &msg,
                    )
                    .await;
                Err(e)
            }
        }
    }

    /// Write the status if it changed (or the generation is unobserved).
    async fn update_status(
        &self,
        owner: &K,
        mut status: ReplicaStatus,
    ) -> Result<ReplicaStatus, kube::Error> {
        let current = owner.replica_status();
        let generation = owner.meta().generation.unwrap_or(0);
        status.observed_generation = current.observed_generation;
        if status == current && generation == current.observed_generation {
            return Ok(status);
        }
        status.observed_generation = generation;
        let api: Api<K> = Api::namespaced(
            self.client.clone(),
            owner.meta().namespace.as_deref().unwrap_or(""),
        );
        api.patch_status(
            &owner.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status.merge_patch()),
        )
        .await?;
        Ok(status)
    }
}

/// Run `create` `count` times in batches of 1, 2, 4, ... (upstream's
/// slowStartBatch): a template that cannot work fails once, not a
/// thousand times. Returns how many succeeded and the first error.
async fn slow_start_batch<F, Fut>(count: usize, create: F) -> (usize, Option<kube::Error>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let mut done = 0;
    let mut batch = count.min(1);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| create())).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => done += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if first_err.is_some() {
            return (done, first_err);
        }
        batch = (batch * 2).min(count - done);
    }
    (done, None)
}

/// The status for `filtered` (the active pods owned); `failure` is the
/// error of this sync's create/delete attempt, if any.
fn calculate_status<K: ReplicaKind>(
    owner: &K,
    filtered: &[Arc<PodInfo>],
    failure: Option<&Error>,
    now: Timestamp,
) -> ReplicaStatus {
    let mut st = owner.replica_status();
    let template_labels = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let min_ready = owner.min_ready_seconds();
    st.replicas = filtered.len() as i32;
    st.fully_labeled_replicas = filtered
        .iter()
        .filter(|p| {
            template_labels
                .iter()
                .flat_map(|l| l.iter())
                .all(|(k, v)| p.labels.get(k) == Some(v))
        })
        .count() as i32;
    st.ready_replicas = filtered.iter().filter(|p| p.ready).count() as i32;
    st.available_replicas = filtered
        .iter()
        .filter(|p| p.is_available(min_ready, now))
        .count() as i32;
    let existing = st
        .conditions
        .iter()
        .position(|c| c.type_ == "ReplicaFailure");
    match (failure, existing) {
        (Some(err), None) => {
            let diff = filtered.len() as i64 - i64::from(owner.desired());
            let reason = match diff.cmp(&0) {
                std::cmp::Ordering::Less => "FailedCreate",
                std::cmp::Ordering::Greater => "FailedDelete",
                std::cmp::Ordering::Equal => "",
            };
            st.conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(err.to_string()),
                last_transition_time: Some(engine::now_time()),
            });
        }
        (None, Some(i)) => {
            st.conditions.remove(i);
        }
        _ => {}
    }
    st
}

async fn reconcile<K: ReplicaKind>(owner: Arc<K>, sh: Arc<Shared<K>>) -> Result<Action, Error> {
    sh.pods.wait_synced().await;
    let key = key_of(&*owner);
    // Checked before reading the cache: anything observed after this point
    // is already in what we read.
    let needs_sync = sh.expectations.satisfied(&key);
    let ns = owner.meta().namespace.clone().unwrap_or_default();
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let mut candidates = sh.pods.controlled_by(&uid);
    candidates.extend(sh.pods.orphans(&ns));
    candidates.retain(|p| p.is_active() && p.namespace == ns);
    // Stable order: oldest first, as a list would return them.
    candidates.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    let selector = owner.pod_selector();
    let filtered = sh.claim_pods(&owner, selector.as_ref(), candidates).await?;

    let managed = if needs_sync && owner.meta().deletion_timestamp.is_none() {
        sh.manage_replicas(&owner, &filtered, &key).await
    } else {
        Ok(())
    };
    let status = calculate_status(&*owner, &filtered, managed.as_ref().err(), Timestamp::now());
    let written = sh.update_status(&owner, status).await?;
    managed?;
    sh.backoff.succeeded(&key);
    let desired = owner.desired();
    let min_ready = owner.min_ready_seconds();
    if min_ready > 0 && written.ready_replicas == desired && written.available_replicas != desired {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}

fn error_policy<K: ReplicaKind>(owner: Arc<K>, err: &Error, sh: Arc<Shared<K>>) -> Action {
    let key = key_of(&*owner);
    let delay = sh.backoff.failed(&key);
    match err {
        Error::Api(kube::Error::Api(s)) if s.code == 409 => {
            debug!(controller = K::COMPONENT, key, "conflict: {err}")
        }
        _ => warn!(controller = K::COMPONENT, key, "sync failed: {err}"),
    }
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("tier", "fe")])),
                        ..Default::default()
                    }),
                    spec: None,
                }),
            }),
            status: None,
        }
    }

    fn pod(
        name: &str,
        lbls: &[(&str, &str)],
        ready_secs_ago: Option<i64>,
        now: Timestamp,
    ) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            namespace: "ns".into(),
            name: name.into(),
            labels: labels(lbls),
            phase: "Running".into(),
            ready: ready_secs_ago.is_some(),
            ready_since: ready_secs_ago
                .and_then(|s| Timestamp::from_second(now.as_second() - s).ok()),
            ..Default::default()
        })
    }

    #[test]
    fn status_counts() {
        let now = Timestamp::from_second(1_700_000_000).unwrap_or_default();
        let owner = rs(4, 10);
        let pods = vec![
            pod("a", &[("app", "web"), ("tier", "fe")], Some(60), now),
            pod("b", &[("app", "web"), ("tier", "fe")], Some(3), now),
            pod("c", &[("app", "web")], None, now),
        ];
        let st = calculate_status(&owner, &pods, None, now);
        assert_eq!(
            (
                st.replicas,
                st.fully_labeled_replicas,
                st.ready_replicas,
                st.available_replicas
            ),
            (3, 2, 2, 1)
        );
        assert!(st.conditions.is_empty());
    }

    #[test]
    fn replica_failure_condition_comes_and_goes() {
        let now = Timestamp::now();
        let mut owner = rs(2, 0);
        let err = Error::NoTemplate("ns/web".into());
        let st = calculate_status(&owner, &[], Some(&err), now);
        assert_eq!(st.conditions.len(), 1);
        let c = &st.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str()),
            ("ReplicaFailure", "True")
        );
        assert_eq!(c.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(c.message.as_deref(), Some("ns/web has no pod template"));
        // Once it works again the condition goes.
        owner.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            conditions: Some(st.conditions.clone()),
            ..Default::default()
        });
        let st = calculate_status(&owner, &[], None, now);
        assert!(st.conditions.is_empty());
    }

    #[tokio::test]
    async fn slow_start_doubles_and_stops_at_first_failure() {
        let calls = AtomicUsize::new(0);
        let (n, err) = slow_start_batch(10, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await;
        assert_eq!((n, err.is_none()), (10, true));
        assert_eq!(calls.load(Ordering::SeqCst), 10);

        // Fail from the 4th call on: batches 1, 2 succeed, batch of 4 fails.
        let calls = AtomicUsize::new(0);
        let (n, err) = slow_start_batch(100, || {
            let i = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if i >= 3 {
                    Err(kube::Error::Api(
                        kube::core::Status::failure("boom", "InternalError")
                            .with_code(500)
                            .boxed(),
                    ))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(err.is_some());
        assert_eq!(n, 3);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            7,
            "1 + 2 + 4 attempts, then stop"
        );
    }
}
