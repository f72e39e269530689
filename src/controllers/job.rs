//! Job controller, as upstream's kube-controller-manager runs it: pods up to
//! parallelism until completions succeed, back-off after failures,
//! backoffLimit / backoffLimitPerIndex / activeDeadlineSeconds /
//! podFailurePolicy / successPolicy, suspension, Indexed completion, and
//! counting through the `batch.kubernetes.io/job-tracking` pod finalizer so
//! that no finished pod is lost or counted twice.
//!
//! Watches on Jobs and Pods only decide *when* a Job is synced; each sync
//! reads the Job and its pods fresh from the API (the in-process client makes
//! that cheap), so no informer-staleness expectations are needed. A work
//! queue keeps one sync per Job at a time.

pub mod backoff;
pub mod indexes;
pub mod pods;
pub mod policy;
pub mod queue;
mod sync;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde_json::json;
use tracing::{debug, warn};

use super::Context;
use super::events::Recorder;
use super::podcontrol;
use queue::WorkQueue;

/// The component name events are reported under.
pub const COMPONENT: &str = "job-controller";
/// Jobs with `spec.managedBy` set to anything else belong to another controller.
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";
/// Pod events are batched per Job for this long (upstream's syncJobBatchPeriod).
const BATCH_PERIOD: Duration = Duration::from_secs(1);
/// Concurrent Job syncs (distinct Jobs; one Job is never synced twice at once).
const WORKERS: usize = 4;

/// Errors of one sync; the Job is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The controller's state shared by its watchers and workers.
pub struct JobController {
    client: kube::Client,
    recorder: Recorder,
    /// Jobs to sync, keyed "namespace/name".
    queue: WorkQueue<String>,
    /// Pods whose tracking finalizer may be left over, keyed "namespace/name".
    orphans: WorkQueue<String>,
    /// Back-off records per Job key (in memory, as upstream's).
    backoff: Mutex<HashMap<String, backoff::Record>>,
    /// Last seen (uid, generation) per Job key, to sync spec changes at once
    /// and batch status-only changes.
    generations: Mutex<HashMap<String, (String, i64)>>,
    backoff_base: Duration,
    backoff_max: Duration,
}

/// Run the Job controller until its watches end.
pub async fn run(ctx: Arc<Context>) {
    let ctrl = Arc::new(JobController::new(
        ctx.client.clone(),
        ctx.recorder(COMPONENT),
    ));
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let c = ctrl.clone();
        tasks.push(tokio::spawn(async move { c.worker().await }));
    }
    {
        let c = ctrl.clone();
        tasks.push(tokio::spawn(async move { c.orphan_worker().await }));
    }
    {
        let c = ctrl.clone();
        tasks.push(tokio::spawn(async move { c.watch_pods().await }));
    }
    ctrl.watch_jobs().await;
    for t in tasks {
        t.abort();
    }
}

pub(crate) fn key_of(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

pub(crate) fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// Whether a condition of `type_` is True.
pub fn has_condition(job: &Job, type_: &str) -> bool {
    find_condition(job, type_).is_some_and(|c| c.status == "True")
}

pub fn find_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Complete or Failed.
pub fn is_finished(job: &Job) -> bool {
    finished_type(job).is_some()
}

/// "Complete" or "Failed", whichever condition is True.
pub fn finished_type(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn managed_elsewhere(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.managed_by.as_deref())
        .is_some_and(|m| m != MANAGED_BY)
}

impl JobController {
    pub fn new(client: kube::Client, recorder: Recorder) -> Self {
        JobController {
            client,
            recorder,
            queue: WorkQueue::default(),
            orphans: WorkQueue::default(),
            backoff: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            backoff_base: backoff::base_from_env(),
            backoff_max: backoff::DEFAULT_MAX,
        }
    }

    async fn worker(&self) {
        loop {
            let key = self.queue.next().await;
            match self.sync(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(e) => {
                    let delay = self.queue.add_rate_limited(key.clone());
                    debug!(job = %key, ?delay, "job sync failed: {e}");
                }
            }
            self.queue.done(&key);
        }
    }

    async fn orphan_worker(&self) {
        loop {
            let key = self.orphans.next().await;
            match self.sync_orphan_pod(&key).await {
                Ok(()) => self.orphans.forget(&key),
                Err(e) => {
                    self.orphans.add_rate_limited(key.clone());
                    debug!(pod = %key, "orphan pod finalizer: {e}");
                }
            }
            self.orphans.done(&key);
        }
    }

    async fn watch_jobs(&self) {
        let api: Api<Job> = Api::all(self.client.clone());
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Apply(job)) | Ok(watcher::Event::InitApply(job)) => {
                    self.job_changed(&job)
                }
                Ok(watcher::Event::Delete(job)) => {
                    let key = key_of(
                        job.metadata.namespace.as_deref().unwrap_or(""),
                        job.metadata.name.as_deref().unwrap_or(""),
                    );
                    self.generations.lock().remove(&key);
                    self.queue.add(key);
                }
                Ok(_) => {}
                Err(e) => debug!("job watch: {e}"),
            }
        }
        warn!("job watch ended");
    }

    fn job_changed(&self, job: &Job) {
        let key = key_of(
            job.metadata.namespace.as_deref().unwrap_or(""),
            job.metadata.name.as_deref().unwrap_or(""),
        );
        let now = (
            job.metadata.uid.clone().unwrap_or_default(),
            job.metadata.generation.unwrap_or(0),
        );
        let before = self.generations.lock().insert(key.clone(), now.clone());
        // Spec changes (and new Jobs) sync at once; status-only updates,
        // mostly our own, are batched.
        if before.as_ref() != Some(&now) {
            self.queue.add(key);
        } else {
            self.queue.add_after(key, BATCH_PERIOD);
        }
    }

    async fn watch_pods(&self) {
        // Metadata is all it needs to route events: owner, finalizers,
        // deletion. Metadata-only watches spare decoding whole pods.
        let api: Api<PartialObjectMeta<Pod>> = Api::all(self.client.clone());
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Apply(pod))
                | Ok(watcher::Event::InitApply(pod))
                | Ok(watcher::Event::Delete(pod)) => self.pod_changed(&pod.metadata),
                Ok(_) => {}
                Err(e) => debug!("pod watch: {e}"),
            }
        }
        warn!("pod watch ended");
    }

    fn pod_changed(&self, meta: &ObjectMeta) {
        let ns = meta.namespace.as_deref().unwrap_or("");
        let owner = podcontrol::controller_of(meta)
            .filter(|o| o.kind == "Job" && o.api_version == "batch/v1");
        if let Some(o) = owner {
            self.queue.add_after(key_of(ns, &o.name), BATCH_PERIOD);
        }
        // A finalizer that no live Job will remove: orphans, and pods being
        // deleted whose Job may be gone or finished.
        let tracked = meta
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == pods::TRACKING_FINALIZER));
        if tracked && (owner.is_none() || meta.deletion_timestamp.is_some()) {
            self.orphans
                .add(key_of(ns, meta.name.as_deref().unwrap_or("")));
        }
    }

    /// Drop the tracking finalizer from a pod no live Job counts.
    async fn sync_orphan_pod(&self, key: &str) -> Result<(), SyncError> {
        let (ns, name) = split_key(key);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let Some(pod) = api.get_opt(name).await? else {
            return Ok(());
        };
        if !pods::has_tracking_finalizer(&pod) {
            return Ok(());
        }
        if let Some(owner) = podcontrol::controller_of(&pod.metadata) {
            if owner.kind != "Job" || owner.api_version != "batch/v1" {
                return Ok(());
            }
            let jobs: Api<Job> = Api::namespaced(self.client.clone(), ns);
            if let Some(job) = jobs.get_opt(&owner.name).await?
                && job.metadata.uid.as_deref() == Some(owner.uid.as_str())
                && (managed_elsewhere(&job) || !is_finished(&job))
            {
                // Its Job is alive (or someone else's): it counts the pod.
                return Ok(());
            }
        }
        remove_tracking_finalizer(&api, &pod).await?;
        Ok(())
    }
}

/// Remove the tracking finalizer (as upstream: a strategic-merge delete from
/// the primitive list, so concurrent finalizer changes are kept). A pod that
/// is already gone counts as done.
pub(crate) async fn remove_tracking_finalizer(
    api: &Api<Pod>,
    pod: &Pod,
) -> Result<(), kube::Error> {
    if !pods::has_tracking_finalizer(pod) {
        return Ok(());
    }
    let patch =
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [pods::TRACKING_FINALIZER]}});
    match api
        .patch(
            pods::name(pod),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The message of a kube error as upstream prints API errors (the Status message).
pub(crate) fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}
