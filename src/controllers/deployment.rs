//! Deployment controller (upstream's pkg/controller/deployment): rolls a
//! Deployment's pod template out through ReplicaSets named
//! `<deployment>-<pod-template-hash>`, one per template revision.
//!
//! Each sync claims the Deployment's ReplicaSets (adopt/release by selector),
//! finds the one whose template is current (creating it when rolling out),
//! keeps revision annotations, and then, in upstream's order of precedence:
//! a paused Deployment or a scaling event only rescales proportionally; a
//! RollingUpdate scales the new ReplicaSet up within maxSurge and the old ones
//! down within maxUnavailable; a Recreate scales the old ones to zero, waits
//! for their pods to go, then scales the new one up. Status counters and the
//! Available/Progressing/ReplicaFailure conditions report where it stands;
//! old ReplicaSets beyond revisionHistoryLimit are deleted.

mod progress;
mod recreate;
mod rolling;
mod sync;
pub mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tracing::{debug, warn};

use super::Context;
use super::events::{self, Recorder};
use super::podcontrol;
use super::replicaset::claim::{self, Claim};
use super::replicaset::engine::{self, Backoff, Queue, api_message, key_of};

const COMPONENT: &str = "deployment-controller";
/// Reconciles running at once (upstream's --concurrent-deployment-syncs).
const WORKERS: u16 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", api_message(.0))]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

struct Shared {
    client: kube::Client,
    recorder: Recorder,
    store: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    queue: Queue<Deployment>,
    backoff: Backoff,
}

/// Run the Deployment controller.
pub async fn run(ctx: Arc<Context>) {
    let (store, writer) = reflector::store::<Deployment>();
    let (replica_sets, rs_writer) = reflector::store::<ReplicaSet>();
    let (queue, rx) = Queue::new();
    let shared = Arc::new(Shared {
        client: ctx.client.clone(),
        recorder: ctx.recorder(COMPONENT),
        store: store.clone(),
        replica_sets,
        queue,
        backoff: Backoff::default(),
    });
    tokio::spawn(watch_deployments(shared.clone(), writer));
    tokio::spawn(watch_replica_sets(shared.clone(), rs_writer));
    engine::run(
        COMPONENT,
        store,
        rx,
        shared,
        WORKERS,
        reconcile,
        error_policy,
    )
    .await;
}

async fn watch_deployments(sh: Arc<Shared>, mut writer: reflector::store::Writer<Deployment>) {
    let api: Api<Deployment> = Api::all(sh.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(ev) => {
                writer.apply_watcher_event(&ev);
                match &ev {
                    watcher::Event::Apply(d) | watcher::Event::InitApply(d) => sh.queue.add(d),
                    watcher::Event::Delete(d) => sh.backoff.succeeded(&key_of(d)),
                    _ => {}
                }
            }
            Err(e) => debug!(controller = COMPONENT, "deployment watch: {e}"),
        }
    }
}

async fn watch_replica_sets(sh: Arc<Shared>, mut writer: reflector::store::Writer<ReplicaSet>) {
    let api: Api<ReplicaSet> = Api::all(sh.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                debug!(controller = COMPONENT, "replicaset watch: {e}");
                continue;
            }
        };
        let old = match &ev {
            watcher::Event::Apply(rs) => sh.replica_sets.get(&ObjectRef::from_obj(rs)),
            _ => None,
        };
        writer.apply_watcher_event(&ev);
        match &ev {
            watcher::Event::Apply(rs) => match old {
                Some(old) => sh.rs_updated(&old, rs),
                None => sh.rs_added(rs),
            },
            watcher::Event::InitApply(rs) => sh.rs_added(rs),
            watcher::Event::Delete(rs) => sh.rs_deleted(rs),
            _ => {}
        }
    }
}

impl Shared {
    fn resolve(&self, ns: &str, r: &OwnerReference) -> Option<Arc<Deployment>> {
        if r.kind != "Deployment" {
            return None;
        }
        let d = self.store.get(&ObjectRef::new(&r.name).within(ns))?;
        (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(d)
    }

    /// Deployments whose (non-empty) selector matches an orphan ReplicaSet.
    fn selecting(&self, rs: &ReplicaSet) -> Vec<Arc<Deployment>> {
        let labels = rs.metadata.labels.clone().unwrap_or_default();
        self.store.state_filter(|d| {
            d.metadata.namespace == rs.metadata.namespace
                && d.spec
                    .as_ref()
                    .filter(|s| !selects_everything(&s.selector))
                    .and_then(|s| Selector::try_from(s.selector.clone()).ok())
                    .is_some_and(|sel| sel.matches(&labels))
        })
    }

    fn rs_added(&self, rs: &ReplicaSet) {
        if rs.metadata.deletion_timestamp.is_some() {
            self.rs_deleted(rs);
            return;
        }
        let ns = rs.metadata.namespace.as_deref().unwrap_or("");
        if let Some(r) = podcontrol::controller_of(&rs.metadata) {
            if let Some(d) = self.resolve(ns, r) {
                self.queue.add(&d);
            }
            return;
        }
        for d in self.selecting(rs) {
            self.queue.add(&d);
        }
    }

    fn rs_updated(&self, old: &ReplicaSet, cur: &ReplicaSet) {
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        let ns = cur.metadata.namespace.as_deref().unwrap_or("");
        let (cur_ref, old_ref) = (
            podcontrol::controller_of(&cur.metadata),
            podcontrol::controller_of(&old.metadata),
        );
        let ref_changed = cur_ref != old_ref;
        if ref_changed && let Some(d) = old_ref.and_then(|r| self.resolve(ns, r)) {
            self.queue.add(&d);
        }
        if let Some(r) = cur_ref {
            if let Some(d) = self.resolve(ns, r) {
                self.queue.add(&d);
            }
            return;
        }
        if ref_changed || old.metadata.labels != cur.metadata.labels {
            for d in self.selecting(cur) {
                self.queue.add(&d);
            }
        }
    }

    fn rs_deleted(&self, rs: &ReplicaSet) {
        let ns = rs.metadata.namespace.as_deref().unwrap_or("");
        if let Some(d) = podcontrol::controller_of(&rs.metadata).and_then(|r| self.resolve(ns, r)) {
            self.queue.add(&d);
        }
    }
}

/// An empty selector selects every pod: upstream refuses to act on it.
fn selects_everything(sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// One sync of one Deployment: a working copy of it and of its ReplicaSets,
/// kept current with what each write returns.
pub(crate) struct Syncer<'a> {
    sh: &'a Shared,
    d: Deployment,
    /// The annotations as stored (the revision is written to the object,
    /// the rest of the status through /status).
    stored_annotations: Option<BTreeMap<String, String>>,
    /// The Deployment's ReplicaSets, as claimed.
    rs_list: Vec<ReplicaSet>,
    /// When to look again even if nothing changes.
    requeue: Option<Duration>,
}

impl<'a> Syncer<'a> {
    fn new(sh: &'a Shared, d: Deployment) -> Self {
        Syncer {
            sh,
            stored_annotations: d.metadata.annotations.clone(),
            d,
            rs_list: Vec::new(),
            requeue: None,
        }
    }

    fn ns(&self) -> String {
        self.d.metadata.namespace.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.d.name_any()
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.sh.client.clone(), &self.ns())
    }

    fn d_api(&self) -> Api<Deployment> {
        Api::namespaced(self.sh.client.clone(), &self.ns())
    }

    async fn event(&self, type_: &str, reason: &str, message: &str) {
        self.sh
            .recorder
            .publish(&events::reference(&self.d), type_, reason, message)
            .await;
    }

    /// Replace our copy of a ReplicaSet with what the server returned.
    fn remember(&mut self, rs: &ReplicaSet) {
        match self
            .rs_list
            .iter_mut()
            .find(|r| r.metadata.uid == rs.metadata.uid)
        {
            Some(slot) => *slot = rs.clone(),
            None => self.rs_list.push(rs.clone()),
        }
    }

    /// Write the working copy's status (and revision annotation).
    async fn update_status(&mut self) -> Result<(), Error> {
        let api = self.d_api();
        let name = self.name();
        let want = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(util::REVISION))
            .cloned();
        let have = self
            .stored_annotations
            .as_ref()
            .and_then(|a| a.get(util::REVISION))
            .cloned();
        if want.is_some() && want != have {
            let patch = json!({"metadata": {
                "annotations": {util::REVISION: want},
                "resourceVersion": self.d.metadata.resource_version,
            }});
            let stored = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            self.d.metadata.resource_version = stored.metadata.resource_version;
            self.stored_annotations = stored.metadata.annotations;
        }
        let stored = api
            .replace_status(&name, &PostParams::default(), &self.d)
            .await?;
        self.d.metadata.resource_version = stored.metadata.resource_version;
        Ok(())
    }

    /// Whether the Deployment may adopt: a fresh read confirms it is the
    /// same object and not being deleted.
    async fn can_adopt(&self) -> bool {
        match self.d_api().get_opt(&self.name()).await {
            Ok(Some(fresh)) => {
                fresh.metadata.uid == self.d.metadata.uid
                    && fresh.metadata.deletion_timestamp.is_none()
            }
            _ => false,
        }
    }

    /// Claim the namespace's ReplicaSets: ours that match, matching orphans
    /// (adopted), and release ours that stopped matching.
    async fn claim_replica_sets(&mut self, selector: &Selector) -> Result<(), Error> {
        let ns = self.d.metadata.namespace.clone();
        let mut candidates = self
            .sh
            .replica_sets
            .state_filter(|rs| rs.metadata.namespace == ns);
        candidates.sort_by(|a, b| util::by_creation(a, b));
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let api = self.rs_api();
        let mut may_adopt: Option<bool> = None;
        let mut first_err = None;
        for rs in candidates {
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let decision = claim::decide(
                &uid,
                deleting,
                podcontrol::controller_of(&rs.metadata),
                rs.metadata.deletion_timestamp.is_some(),
                selector.matches(&labels),
            );
            let (name, rv, refs) = (
                rs.name_any(),
                rs.metadata.resource_version.clone().unwrap_or_default(),
                rs.metadata.owner_references.clone().unwrap_or_default(),
            );
            match decision {
                Claim::Owned => self.rs_list.push((*rs).clone()),
                Claim::Ignore => {}
                Claim::Adopt => {
                    if may_adopt.is_none() {
                        may_adopt = Some(self.can_adopt().await);
                    }
                    if may_adopt != Some(true) {
                        continue;
                    }
                    let refs = claim::with_owner(&refs, podcontrol::controller_ref(&self.d));
                    match claim::set_owner_references(&api, &name, Some(&rv), refs).await {
                        Ok(adopted) => self.rs_list.push(adopted),
                        Err(e) if engine::is_not_found(&e) => {}
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                Claim::Release => {
                    let refs = claim::without_owner(&refs, &uid);
                    match claim::set_owner_references(&api, &name, Some(&rv), refs).await {
                        Ok(_) => {}
                        Err(e) if engine::is_not_found(&e) => {}
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        first_err.map_or(Ok(()), |e| Err(e.into()))
    }

    /// upstream's syncDeployment.
    async fn sync_deployment(&mut self) -> Result<(), Error> {
        let label_selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        if selects_everything(&label_selector) {
            self.event(
                events::WARNING,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            .await;
            let generation = self.d.metadata.generation.unwrap_or(0);
            let status = self.d.status.get_or_insert_with(Default::default);
            if status.observed_generation.unwrap_or(0) < generation {
                status.observed_generation = Some(generation);
                self.update_status().await?;
            }
            return Ok(());
        }
        let selector =
            Selector::try_from(label_selector).map_err(|e| Error::Invalid(e.to_string()))?;
        self.claim_replica_sets(&selector).await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only().await;
        }
        self.check_paused_conditions().await?;
        if util::paused(&self.d) {
            return self.sync().await;
        }
        if self.is_scaling_event().await? {
            return self.sync().await;
        }
        if util::is_rolling(&self.d) {
            self.rollout_rolling().await
        } else {
            self.rollout_recreate().await
        }
    }
}

async fn reconcile(d: Arc<Deployment>, sh: Arc<Shared>) -> Result<Action, Error> {
    let _ = sh.replica_sets.wait_until_ready().await;
    let key = key_of(&*d);
    let mut syncer = Syncer::new(&sh, (*d).clone());
    syncer.sync_deployment().await?;
    sh.backoff.succeeded(&key);
    Ok(syncer
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

fn error_policy(d: Arc<Deployment>, err: &Error, sh: Arc<Shared>) -> Action {
    let key = key_of(&*d);
    let delay = sh.backoff.failed(&key);
    match err {
        Error::Api(kube::Error::Api(s)) if s.code == 409 => {
            debug!(controller = COMPONENT, key, "conflict: {err}")
        }
        _ => warn!(controller = COMPONENT, key, "sync failed: {err}"),
    }
    Action::requeue(delay)
}
