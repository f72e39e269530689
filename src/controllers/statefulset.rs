//! StatefulSet controller (upstream's pkg/controller/statefulset): pods with
//! stable names `<set>-<ordinal>`, hostnames and claims, created and deleted
//! in ordinal order (OrderedReady) or all at once (Parallel); rolling
//! updates from the highest ordinal down to the partition, or OnDelete;
//! revisions kept as ControllerRevisions, whose names are the pods'
//! `controller-revision-hash` and the status's current/update revisions.
//!
//! Each sync reads the set's pods and revisions fresh from the API, so a
//! write made by the previous sync is always seen (no expectations needed).

pub mod identity;
pub mod podstate;
pub mod retention;
pub mod update;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{PartialObjectMeta, Selector};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use parking_lot::Mutex;
use serde_json::json;
use tracing::{debug, warn};

use self::identity::{claims_for, is_member_of, name_of, set_name, set_namespace};
use self::update::{PodControl, complete_rolling_update, status_changed, update_stateful_set};
use super::Context;
use super::events::{NORMAL, Recorder, WARNING, reference};
use super::history::{
    History, REVISION_HASH_LABEL, SyncError, equal_revision, find_equal_revisions, new_revision,
    next_revision, revisions_to_prune, selector_matches, selector_of, sort_revisions,
    template_from_revision, template_patch,
};
use super::podcontrol::{controller_of, controller_ref};

const COMPONENT: &str = "statefulset-controller";

/// Shared by every sync.
struct State {
    client: kube::Client,
    recorder: Recorder,
    /// Consecutive failures per set, for exponential back-off.
    failures: Mutex<HashMap<String, u32>>,
}

/// Run until the watches end.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let state = Arc::new(State {
        client: client.clone(),
        recorder: ctx.recorder(COMPONENT),
        failures: Mutex::default(),
    });
    // Every StatefulSet pod carries the revision label; watching only those
    // keeps other workloads' pod churn away from this controller.
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
        .run(reconcile, error_policy, state)
        .for_each(|res| {
            if let Err(e) = res {
                debug!("statefulset controller: {e}");
            }
            futures::future::ready(())
        })
        .await;
}

/// The sets a pod event concerns: its controller, or for an orphan every set
/// that would adopt it.
fn sets_for_pod(
    sets: &Store<StatefulSet>,
    pod: &PartialObjectMeta<Pod>,
) -> Vec<ObjectRef<StatefulSet>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(c) = controller_of(&pod.metadata) {
        if c.kind == "StatefulSet" && c.api_version == "apps/v1" {
            return vec![ObjectRef::new(&c.name).within(&ns)];
        }
        return Vec::new();
    }
    let probe = Pod {
        metadata: pod.metadata.clone(),
        ..Default::default()
    };
    sets.state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()) && is_member_of(s, &probe))
        .filter(|s| {
            selector_of(s.spec.as_ref().map(|sp| &sp.selector))
                .is_some_and(|sel| selector_matches(&sel, pod.metadata.labels.as_ref()))
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

fn key_of(set: &StatefulSet) -> String {
    format!("{}/{}", set_namespace(set), set_name(set))
}

async fn reconcile(set: Arc<StatefulSet>, state: Arc<State>) -> Result<Action, SyncError> {
    let action = sync(&set, &state).await?;
    state.failures.lock().remove(&key_of(&set));
    Ok(action)
}

fn error_policy(set: Arc<StatefulSet>, err: &SyncError, state: Arc<State>) -> Action {
    let key = key_of(&set);
    let n = {
        let mut f = state.failures.lock();
        let n = f.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    warn!(statefulset = key, "sync failed: {err}");
    Action::requeue(backoff(n))
}

/// 250 ms doubling per consecutive failure, at most 5 minutes.
fn backoff(failures: u32) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_millis(ms.min(300_000))
}

async fn sync(set: &StatefulSet, state: &State) -> Result<Action, SyncError> {
    let ns = set_namespace(set).to_string();
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let Some(selector) = selector_of(Some(&spec.selector)) else {
        warn!(statefulset = key_of(set), "invalid selector");
        return Ok(Action::await_change());
    };
    let owner = controller_ref(set);
    let adopt = set.metadata.deletion_timestamp.is_none();
    let history = History::new(state.client.clone(), &ns);
    let mut revisions = history.list_controlled(&owner, &selector, adopt).await?;
    sort_revisions(&mut revisions);
    let pods = claim_pods(state, set, &selector, adopt).await?;

    let (current, update, collision_count) = revisions_for(&history, set, &revisions).await?;
    let current_set = with_revision(set, &current);
    let update_set = with_revision(set, &update);
    let ctl = ApiPodControl::new(state, set);
    let now = Timestamp::now();
    let outcome = update_stateful_set(
        &ctl,
        set,
        &current_set,
        &update_set,
        &current,
        &update,
        collision_count,
        &pods,
        now,
    )
    .await;
    let mut status = outcome.status;
    complete_rolling_update(set, &mut status);
    let status_result = if status_changed(set, &status) {
        let api: Api<StatefulSet> = Api::namespaced(state.client.clone(), &ns);
        api.patch_status(
            set_name(set),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map(|_| ())
        .or_else(|e| match e {
            kube::Error::Api(s) if s.is_not_found() => Ok(()),
            e => Err(e),
        })
    } else {
        Ok(())
    };

    // Prune old revisions even when the pass failed, as upstream does.
    let mut live: HashSet<String> = pods
        .iter()
        .map(|p| identity::pod_revision(p).to_string())
        .collect();
    live.extend(current.metadata.name.clone());
    live.extend(update.metadata.name.clone());
    let limit = spec.revision_history_limit.unwrap_or(10);
    for old in revisions_to_prune(&revisions, &live, limit) {
        history.delete(old).await?;
    }

    if let Some(e) = outcome.error {
        return Err(e);
    }
    status_result?;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    if min_ready > 0 && status.available_replicas.unwrap_or(0) != identity::replicas(set) {
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(1),
        )));
    }
    Ok(Action::await_change())
}

/// `set` with the template a revision holds (upstream's ApplyRevision).
fn with_revision(set: &StatefulSet, rev: &ControllerRevision) -> StatefulSet {
    let mut out = set.clone();
    if let (Some(spec), Some(t)) = (out.spec.as_mut(), template_from_revision(rev)) {
        spec.template = t;
    }
    out
}

/// The current and update revisions and the collision count (upstream's
/// getStatefulSetRevisions): the update revision is the set's template,
/// reusing (and renumbering) an equal earlier revision on a rollback.
async fn revisions_for(
    history: &History,
    set: &StatefulSet,
    revisions: &[ControllerRevision],
) -> Result<(ControllerRevision, ControllerRevision, i32), SyncError> {
    let spec = set
        .spec
        .as_ref()
        .ok_or_else(|| SyncError::Invalid("statefulset has no spec".into()))?;
    let mut collision_count = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    let mut candidate = new_revision(
        controller_ref(set),
        set_namespace(set),
        labels,
        template_patch(&spec.template),
        next_revision(revisions),
        Some(collision_count),
    );
    candidate.metadata.annotations = set.metadata.annotations.clone();
    let equal = find_equal_revisions(revisions, &candidate);
    let update = match (equal.last(), revisions.last()) {
        (Some(eq), Some(latest)) if equal_revision(eq, latest) => latest.clone(),
        (Some(eq), _) => history.set_revision_number(eq, candidate.revision).await?,
        (None, _) => {
            history
                .create(&candidate, labels, &mut collision_count)
                .await?
        }
    };
    let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current = revisions
        .iter()
        .find(|r| r.metadata.name.is_some() && r.metadata.name == current_name)
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok((current, update, collision_count))
}

/// The set's pods: those it controls and still selects, plus matching
/// orphans it adopts; pods it controls that no longer belong are released.
async fn claim_pods(
    state: &State,
    set: &StatefulSet,
    selector: &Selector,
    adopt: bool,
) -> Result<Vec<Pod>, SyncError> {
    let api: Api<Pod> = Api::namespaced(state.client.clone(), set_namespace(set));
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let list = api
        .list(&ListParams::default().labels(&selector.to_string()))
        .await?;
    let mut out = Vec::new();
    for pod in list.items {
        let member = is_member_of(set, &pod);
        match controller_of(&pod.metadata) {
            Some(c) if c.uid == uid => {
                if member {
                    out.push(pod);
                } else {
                    set_owner_refs(&api, &pod, pod_refs_without(&pod, &uid)).await?;
                }
            }
            Some(_) => {}
            None if member && adopt && pod.metadata.deletion_timestamp.is_none() => {
                let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                refs.push(controller_ref(set));
                if let Some(adopted) = set_owner_refs(&api, &pod, refs).await? {
                    out.push(adopted);
                }
            }
            None => {}
        }
    }
    Ok(out)
}

fn pod_refs_without(
    pod: &Pod,
    uid: &str,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != uid)
        .cloned()
        .collect()
}

/// Replace a pod's owner references (guarded by its resourceVersion); None
/// if it changed or went away meanwhile.
async fn set_owner_refs(
    api: &Api<Pod>,
    pod: &Pod,
    refs: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Result<Option<Pod>, SyncError> {
    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.metadata.resource_version}});
    match api
        .patch(name_of(pod), &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Pod and claim writes through the API, with upstream's events.
struct ApiPodControl<'a> {
    state: &'a State,
    set_ref: ObjectReference,
    pods: Api<Pod>,
    pvcs: Api<PersistentVolumeClaim>,
    /// The namespace's claims, listed once per pass when first needed.
    claims: tokio::sync::Mutex<Option<HashMap<String, PersistentVolumeClaim>>>,
}

impl<'a> ApiPodControl<'a> {
    fn new(state: &'a State, set: &StatefulSet) -> Self {
        let ns = set_namespace(set);
        ApiPodControl {
            state,
            set_ref: reference(set),
            pods: Api::namespaced(state.client.clone(), ns),
            pvcs: Api::namespaced(state.client.clone(), ns),
            claims: tokio::sync::Mutex::new(None),
        }
    }

    async fn event(&self, type_: &str, reason: &str, message: String) {
        self.state
            .recorder
            .publish(&self.set_ref, type_, reason, &message)
            .await;
    }

    /// Upstream's recordPodEvent.
    async fn pod_event(&self, verb: &str, set: &StatefulSet, pod: &Pod, err: Option<&SyncError>) {
        let title = title(verb);
        match err {
            None => {
                let msg = format!(
                    "{verb} Pod {} in StatefulSet {} successful",
                    name_of(pod),
                    set_name(set)
                );
                self.event(NORMAL, &format!("Successful{title}"), msg).await;
            }
            Some(e) => {
                let msg = format!(
                    "{verb} Pod {} in StatefulSet {} failed error: {e}",
                    name_of(pod),
                    set_name(set)
                );
                self.event(WARNING, &format!("Failed{title}"), msg).await;
            }
        }
    }

    async fn claim(&self, name: &str) -> Result<Option<PersistentVolumeClaim>, SyncError> {
        let mut cache = self.claims.lock().await;
        if cache.is_none() {
            let list = self.pvcs.list(&ListParams::default()).await?;
            *cache = Some(
                list.items
                    .into_iter()
                    .map(|c| (c.metadata.name.clone().unwrap_or_default(), c))
                    .collect(),
            );
        }
        Ok(cache.as_ref().and_then(|c| c.get(name)).cloned())
    }

    async fn remember(&self, claim: PersistentVolumeClaim) {
        if let Some(cache) = self.claims.lock().await.as_mut() {
            cache.insert(claim.metadata.name.clone().unwrap_or_default(), claim);
        }
    }

    /// Create the pod's claims that do not exist (upstream's createPersistentVolumeClaims).
    async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), SyncError> {
        let mut errs = Vec::new();
        for (_, claim) in claims_for(set, pod) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            match self.claim(&name).await? {
                Some(existing) => {
                    if existing.metadata.deletion_timestamp.is_some() {
                        errs.push(format!("pvc {name} is being deleted"));
                    }
                }
                None => match self.pvcs.create(&PostParams::default(), &claim).await {
                    Ok(created) => {
                        let msg = format!(
                            "create Claim {name} Pod {} in StatefulSet {} success",
                            name_of(pod),
                            set_name(set)
                        );
                        self.event(NORMAL, "SuccessfulCreate", msg).await;
                        self.remember(created).await;
                    }
                    Err(kube::Error::Api(s)) if s.is_already_exists() => {
                        errs.push(format!("failed to create PVC {name}: {}", s.message));
                    }
                    Err(e) => {
                        let msg = format!(
                            "create Claim {name} for Pod {} in StatefulSet {} failed error: {e}",
                            name_of(pod),
                            set_name(set)
                        );
                        self.event(WARNING, "FailedCreate", msg).await;
                        errs.push(format!("failed to create PVC {name}: {e}"));
                    }
                },
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(SyncError::Invalid(errs.join("; ")))
        }
    }
}

fn title(verb: &str) -> String {
    let mut c = verb.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl PodControl for ApiPodControl<'_> {
    async fn create_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), SyncError> {
        if let Err(e) = self.create_claims(set, pod).await {
            self.pod_event("create", set, pod, Some(&e)).await;
            return Err(e);
        }
        let created = match self.pods.create(&PostParams::default(), pod).await {
            Ok(p) => p,
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                return Err(kube::Error::Api(s).into());
            }
            Err(e) => {
                let e = SyncError::from(e);
                self.pod_event("create", set, pod, Some(&e)).await;
                return Err(e);
            }
        };
        if let Err(e) = self.update_claims_for_retention(set, &created).await {
            self.pod_event("update", set, &created, Some(&e)).await;
            return Err(e);
        }
        self.pod_event("create", set, pod, None).await;
        Ok(())
    }

    async fn update_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), SyncError> {
        let mut pod = pod.clone();
        let mut attempted = false;
        let mut result = Ok(());
        for _ in 0..5 {
            let mut consistent = true;
            if !identity::identity_matches(set, &pod) {
                identity::update_identity(set, &mut pod);
                consistent = false;
            }
            if !identity::storage_matches(set, &pod) {
                identity::update_storage(set, &mut pod);
                consistent = false;
                if let Err(e) = self.create_claims(set, &pod).await {
                    self.pod_event("update", set, &pod, Some(&e)).await;
                    return Err(e);
                }
            }
            if !self.claims_match_retention(set, &pod).await? {
                self.update_claims_for_retention(set, &pod).await?;
            }
            if consistent {
                break;
            }
            attempted = true;
            match self
                .pods
                .replace(name_of(&pod), &PostParams::default(), &pod)
                .await
            {
                Ok(_) => {
                    result = Ok(());
                    break;
                }
                Err(kube::Error::Api(s)) if s.is_conflict() => {
                    result = Err(SyncError::from(kube::Error::Api(s)));
                    pod = self.pods.get(name_of(&pod)).await?;
                }
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        if attempted {
            self.pod_event("update", set, &pod, result.as_ref().err())
                .await;
        }
        result
    }

    async fn delete_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), SyncError> {
        match self
            .pods
            .delete(name_of(pod), &DeleteParams::default())
            .await
        {
            Ok(_) => {
                self.pod_event("delete", set, pod, None).await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => {
                let e = SyncError::from(e);
                self.pod_event("delete", set, pod, Some(&e)).await;
                Err(e)
            }
        }
    }

    async fn claims_match_retention(
        &self,
        set: &StatefulSet,
        pod: &Pod,
    ) -> Result<bool, SyncError> {
        for (_, want) in claims_for(set, pod) {
            if let Some(claim) = self
                .claim(want.metadata.name.as_deref().unwrap_or(""))
                .await?
                && !retention::is_claim_owner_up_to_date(&claim, set, pod)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn update_claims_for_retention(
        &self,
        set: &StatefulSet,
        pod: &Pod,
    ) -> Result<(), SyncError> {
        for (_, want) in claims_for(set, pod) {
            let name = want.metadata.name.clone().unwrap_or_default();
            let Some(mut claim) = self.claim(&name).await? else {
                continue;
            };
            if retention::is_claim_owner_up_to_date(&claim, set, pod) {
                continue;
            }
            retention::update_claim_owner_refs(&mut claim, set, pod);
            let refs = claim.metadata.owner_references.clone().unwrap_or_default();
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": claim.metadata.resource_version}});
            let updated = self
                .pvcs
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(|e| {
                    SyncError::Invalid(format!(
                        "could not update claim {name} for delete policy ownerRefs: {e}"
                    ))
                })?;
            self.remember(updated).await;
        }
        Ok(())
    }

    async fn pod_claim_is_stale(&self, set: &StatefulSet, pod: &Pod) -> Result<bool, SyncError> {
        if !retention::policy(set).1 {
            return Ok(false);
        }
        for (_, want) in claims_for(set, pod) {
            if let Some(claim) = self
                .claim(want.metadata.name.as_deref().unwrap_or(""))
                .await?
                && retention::claim_is_stale(&claim, set, pod)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn create_missing_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), SyncError> {
        self.create_claims(set, pod).await?;
        self.update_claims_for_retention(set, pod).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(5), Duration::from_millis(4000));
        assert_eq!(backoff(40), Duration::from_secs(300));
    }

    #[test]
    fn titles() {
        assert_eq!(title("create"), "Create");
        assert_eq!(title(""), "");
    }
}
