//! One sync of one Job: count finished pods, decide whether the Job has
//! finished, create or delete pods, then write the status and release the
//! counted pods' tracking finalizers (upstream's syncJob and
//! trackJobStatusAndRemoveFinalizers).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::backoff::{self, Record};
use super::indexes::{self, Intervals};
use super::pods::{self, completion_index, has_tracking_finalizer, phase, uid, valid_index};
use super::policy::{self, Action};
use super::{
    JobController, SyncError, error_message, find_condition, is_finished, managed_elsewhere,
};
use crate::api::selectors::LabelSelector;
use crate::controllers::events::{NORMAL, WARNING, reference};
use crate::controllers::podcontrol;
use crate::registry::strategy::kinds::batch::CONTROLLER_UID_LABEL;

/// At most this many pods are created or deleted, or counted into
/// uncountedTerminatedPods, per sync (upstream's limits).
const MAX_PER_SYNC: usize = 500;

pub const REASON_BACKOFF_LIMIT: &str = "BackoffLimitExceeded";
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
pub const REASON_POD_FAILURE_POLICY: &str = "PodFailurePolicy";
pub const REASON_MAX_FAILED_INDEXES: &str = "MaxFailedIndexesExceeded";
pub const REASON_FAILED_INDEXES: &str = "FailedIndexes";
pub const REASON_SUCCESS_POLICY: &str = "SuccessPolicy";
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";

// ------------------------------------------------------------ spec helpers

fn completions(spec: &JobSpec) -> Option<i32> {
    spec.completions
}

fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

fn is_suspended(spec: &JobSpec) -> bool {
    spec.suspend == Some(true)
}

/// Replacement pods wait until the old ones are fully gone.
fn only_replace_failed(spec: &JobSpec) -> bool {
    spec.pod_replacement_policy.as_deref() == Some("Failed") || spec.pod_failure_policy.is_some()
}

/// Failed, or deleted before finishing (unless only Failed pods are replaced).
pub fn is_pod_failed(pod: &Pod, spec: &JobSpec) -> bool {
    match phase(pod) {
        "Failed" => true,
        "Succeeded" => false,
        _ => !only_replace_failed(spec) && pod.metadata.deletion_timestamp.is_some(),
    }
}

/// A condition as upstream's newCondition builds it.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Set a condition; a new False condition is not added. Returns whether
/// anything changed.
pub fn ensure_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status
            || c.reason.as_deref().unwrap_or("") != reason
            || c.message.as_deref().unwrap_or("") != message
        {
            *c = new_condition(type_, status, reason, message, now);
            return true;
        }
        return false;
    }
    if status != "False" {
        conds.push(new_condition(type_, status, reason, message, now));
        return true;
    }
    false
}

fn is_success_criteria_met(c: Option<&JobCondition>) -> bool {
    c.is_some_and(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True")
}

/// Pods wanted active: parallelism, less what is already done.
pub fn want_active(completions: Option<i32>, parallelism: i32, succeeded: i32, active: i32) -> i32 {
    match completions {
        // Without completions, the Job is done once any pod succeeds: leave
        // what runs running, start nothing new.
        None if succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - succeeded).min(parallelism).max(0),
    }
}

/// restartPolicy OnFailure: restarts of running pods count as failures.
fn past_backoff_limit_on_failure(spec: &JobSpec, all: &[Pod]) -> bool {
    if spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        != Some("OnFailure")
    {
        return false;
    }
    let restarts: i64 = all
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .map(pods::restart_count)
        .sum();
    let limit = i64::from(spec.backoff_limit.unwrap_or(6));
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

// --------------------------------------------------------------- the sync

/// What one sync works out before writing anything.
struct SyncState {
    key: String,
    job: Job,
    spec: JobSpec,
    pods: Vec<Pod>,
    active: Vec<Pod>,
    finished: Option<JobCondition>,
    succeeded: i32,
    prev_succeeded_indexes: Intervals,
    succeeded_indexes: Intervals,
    failed_indexes: Option<Intervals>,
    new_backoff: Record,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    delayed_per_index: HashMap<i64, Pod>,
    terminating: i32,
    ready: i32,
    now: Timestamp,
}

impl SyncState {
    fn completions(&self) -> i64 {
        i64::from(self.spec.completions.unwrap_or(0))
    }

    /// Pods with a tracking finalizer, not yet counted and (Indexed) with a
    /// valid index, that pass `filter`.
    fn valid_pods<'a>(
        &'a self,
        uncounted: &'a HashSet<String>,
        filter: impl Fn(&Pod) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Pod> + 'a {
        let indexed = is_indexed(&self.spec);
        let completions = self.completions();
        self.pods.iter().filter(move |p| {
            has_tracking_finalizer(p)
                && !uncounted.contains(uid(p))
                && (!indexed || valid_index(p, completions).is_some())
                && filter(p)
        })
    }
}

impl JobController {
    pub(super) async fn sync(&self, key: &str) -> Result<(), SyncError> {
        let (ns, name) = super::split_key(key);
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let Some(job) = api.get_opt(name).await? else {
            self.backoff.lock().remove(key);
            self.release_pods_of_missing_job(ns, name).await?;
            return Ok(());
        };
        if managed_elsewhere(&job) {
            return Ok(());
        }
        let Some(spec) = job.spec.clone() else {
            return Ok(());
        };
        if is_finished(&job) {
            self.backoff.lock().remove(key);
            // A backstop: counted pods lose their finalizers before the Job
            // finishes, but one may be left after a crash.
            for p in self.pods_for_job(&job, &spec).await? {
                if has_tracking_finalizer(&p) {
                    super::remove_tracking_finalizer(&Api::namespaced(self.client.clone(), ns), &p)
                        .await?;
                }
            }
            return Ok(());
        }
        if let Some(mode) = spec.completion_mode.as_deref()
            && mode != "NonIndexed"
            && mode != "Indexed"
        {
            self.recorder
                .publish(
                    &reference(&job),
                    WARNING,
                    "UnknownCompletionMode",
                    "Skipped Job sync because completion mode is unknown",
                )
                .await;
            return Ok(());
        }
        let now = Timestamp::now();
        let mut job = job;
        let status = job.status.get_or_insert_with(Default::default);
        let uncounted = status
            .uncounted_terminated_pods
            .get_or_insert_with(UncountedTerminatedPods::default)
            .clone();
        let pods = self.pods_for_job(&job, &spec).await?;
        let active: Vec<Pod> = pods
            .iter()
            .filter(|p| podcontrol::is_active(p))
            .cloned()
            .collect();
        let mut st = SyncState {
            key: key.to_string(),
            ready: active.iter().filter(|p| podcontrol::is_ready(p)).count() as i32,
            terminating: pods.iter().filter(|p| pods::is_terminating(p)).count() as i32,
            uncounted_succeeded: uncounted
                .succeeded
                .unwrap_or_default()
                .into_iter()
                .collect(),
            uncounted_failed: uncounted.failed.unwrap_or_default().into_iter().collect(),
            job,
            spec,
            pods,
            active,
            finished: None,
            succeeded: 0,
            prev_succeeded_indexes: Intervals::default(),
            succeeded_indexes: Intervals::default(),
            failed_indexes: None,
            new_backoff: Record::default(),
            delayed_per_index: HashMap::new(),
            now,
        };
        let spec = st.spec.clone();
        let mut active_n = st.active.len() as i32;
        let new_succeeded: Vec<Pod> = st
            .valid_pods(&st.uncounted_succeeded, |p| phase(p) == "Succeeded")
            .cloned()
            .collect();
        let new_failed: Vec<Pod> = st
            .valid_pods(&st.uncounted_failed, |p| is_pod_failed(p, &spec))
            .cloned()
            .collect();
        let counted_failures = new_failed
            .iter()
            .filter(|p| {
                Action::counts(
                    policy::match_pod_failure_policy(spec.pod_failure_policy.as_ref(), p).as_ref(),
                )
            })
            .count() as i32;
        let status = st.job.status.clone().unwrap_or_default();
        st.succeeded = status.succeeded.unwrap_or(0)
            + new_succeeded.len() as i32
            + st.uncounted_succeeded.len() as i32;
        let failed =
            status.failed.unwrap_or(0) + counted_failures + st.uncounted_failed.len() as i32;

        if status.start_time.is_none() && !is_suspended(&spec) {
            st.job
                .status
                .get_or_insert_with(Default::default)
                .start_time = Some(Time(now));
        }
        let old_record = self.backoff.lock().get(key).cloned().unwrap_or_default();
        st.new_backoff = old_record.observe(
            &new_succeeded.iter().collect::<Vec<_>>(),
            &new_failed.iter().collect::<Vec<_>>(),
        );

        // Has the Job finished (or is about to)?
        st.finished = find_condition(&st.job, "SuccessCriteriaMet")
            .filter(|c| c.status == "True")
            .cloned();
        if st.finished.is_none() {
            if let Some(ft) =
                find_condition(&st.job, "FailureTarget").filter(|c| c.status == "True")
            {
                st.finished = Some(new_condition(
                    "Failed",
                    "True",
                    ft.reason.as_deref().unwrap_or(""),
                    ft.message.as_deref().unwrap_or(""),
                    now,
                ));
            } else if let Some(msg) = fail_job_message(&spec, &st.pods) {
                st.finished = Some(new_condition(
                    "FailureTarget",
                    "True",
                    REASON_POD_FAILURE_POLICY,
                    &msg,
                    now,
                ));
            }
        }
        if st.finished.is_none() {
            let start = st
                .job
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0);
            if failed > spec.backoff_limit.unwrap_or(6)
                || past_backoff_limit_on_failure(&spec, &st.pods)
            {
                st.finished = Some(failure_condition(
                    REASON_BACKOFF_LIMIT,
                    "Job has reached the specified backoff limit",
                    now,
                ));
            } else if let (Some(ads), Some(start), false) =
                (spec.active_deadline_seconds, start, is_suspended(&spec))
            {
                let elapsed = now.duration_since(start).as_secs();
                if elapsed >= ads {
                    st.finished = Some(failure_condition(
                        REASON_DEADLINE,
                        "Job was active longer than specified deadline",
                        now,
                    ));
                } else {
                    let left = now.duration_since(start);
                    let left = Duration::from_secs(ads as u64)
                        .saturating_sub(Duration::try_from(left).unwrap_or_default());
                    self.queue.add_after(key.to_string(), left);
                }
            }
        }
        if is_indexed(&spec) {
            let completions = st.completions();
            let prev = Intervals::parse(
                status.completed_indexes.as_deref().unwrap_or(""),
                completions,
            );
            let new_ix: Vec<i64> = st
                .pods
                .iter()
                .filter(|p| phase(p) == "Succeeded" && has_tracking_finalizer(p))
                .filter_map(|p| valid_index(p, completions))
                .collect();
            st.succeeded_indexes = prev.with_indexes(new_ix);
            st.prev_succeeded_indexes = prev;
            st.succeeded = st.succeeded_indexes.total() as i32;
            if let Some(per_index) = spec.backoff_limit_per_index {
                let failed_ix = failed_indexes(&st, &status, per_index);
                if st.finished.is_none() {
                    if spec
                        .max_failed_indexes
                        .is_some_and(|m| failed_ix.total() > i64::from(m))
                    {
                        st.finished = Some(failure_condition(
                            REASON_MAX_FAILED_INDEXES,
                            "Job has exceeded the specified maximal number of failed indexes",
                            now,
                        ));
                    } else if failed_ix.total() > 0
                        && failed_ix.total() + st.succeeded_indexes.total() >= completions
                    {
                        st.finished = Some(failure_condition(
                            REASON_FAILED_INDEXES,
                            "Job has failed indexes",
                            now,
                        ));
                    }
                }
                st.failed_indexes = Some(failed_ix);
                st.delayed_per_index = pods_with_delayed_deletion(&st);
            }
            if st.finished.is_none()
                && let Some(msg) = policy::match_success_policy(
                    spec.success_policy.as_ref(),
                    completions,
                    &st.succeeded_indexes,
                )
            {
                st.finished = Some(new_condition(
                    "SuccessCriteriaMet",
                    "True",
                    REASON_SUCCESS_POLICY,
                    &msg,
                    now,
                ));
            }
        }

        let mut suspend_changed = false;
        let mut result: Result<(), SyncError> = Ok(());
        if st.finished.is_some() {
            // Finishing: stop whatever still runs (finalizers stay until counted).
            let (deleted_ready, deleted, err) = self.delete_active_pods(&st.job, &st.active).await;
            if deleted != active_n {
                st.finished = None;
            }
            active_n -= deleted;
            st.terminating += deleted;
            st.ready -= deleted_ready;
            if let Some(e) = err {
                result = Err(e);
            }
        } else {
            let mut manage_called = false;
            if st.job.metadata.deletion_timestamp.is_none() {
                let (n, r) = self.manage_job(&mut st).await;
                active_n = n;
                result = r;
                manage_called = true;
            }
            let complete = match completions(&spec) {
                None => st.succeeded > 0 && active_n == 0,
                Some(c) => st.succeeded >= c && active_n == 0,
            };
            if complete {
                st.finished = Some(new_condition(
                    "SuccessCriteriaMet",
                    "True",
                    REASON_COMPLETIONS_REACHED,
                    "Reached expected number of succeeded pods",
                    now,
                ));
            } else if manage_called {
                let conds = st
                    .job
                    .status
                    .get_or_insert_with(Default::default)
                    .conditions
                    .get_or_insert_with(Vec::new);
                if is_suspended(&spec) {
                    if ensure_condition(
                        conds,
                        "Suspended",
                        "True",
                        "JobSuspended",
                        "Job suspended",
                        now,
                    ) {
                        suspend_changed = true;
                        self.recorder
                            .publish(&reference(&st.job), NORMAL, "Suspended", "Job suspended")
                            .await;
                    }
                } else if ensure_condition(
                    conds,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                ) {
                    suspend_changed = true;
                    self.recorder
                        .publish(&reference(&st.job), NORMAL, "Resumed", "Job resumed")
                        .await;
                    // activeDeadlineSeconds counts time continuously active.
                    st.job
                        .status
                        .get_or_insert_with(Default::default)
                        .start_time = Some(Time(now));
                }
            }
        }

        let status = st.job.status.get_or_insert_with(Default::default);
        let needs_update = suspend_changed
            || active_n != status.active.unwrap_or(0)
            || Some(st.ready) != status.ready
            || Some(st.terminating) != status.terminating;
        status.active = (active_n != 0).then_some(active_n);
        status.ready = Some(st.ready);
        status.terminating = Some(st.terminating);
        self.track_status_and_remove_finalizers(&mut st, needs_update)
            .await?;
        result
    }

    /// The Job's pods: those it controls (listed by its generated selector
    /// when it has one) plus matching orphans, which it adopts.
    async fn pods_for_job(&self, job: &Job, spec: &JobSpec) -> Result<Vec<Pod>, SyncError> {
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        let job_uid = job.metadata.uid.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let selector_json = serde_json::to_value(&spec.selector).unwrap_or_default();
        let generated = json!({"matchLabels": {CONTROLLER_UID_LABEL: job_uid}});
        let lp = if spec.manual_selector != Some(true) && selector_json == generated {
            ListParams::default().labels(&format!("{CONTROLLER_UID_LABEL}={job_uid}"))
        } else {
            ListParams::default()
        };
        let selector = if spec.selector.is_some() {
            LabelSelector::from_label_selector_json(&selector_json)
                .map_err(|e| SyncError::Invalid(format!("couldn't convert Job selector: {e}")))?
        } else {
            LabelSelector::nothing()
        };
        let mut out = Vec::new();
        for pod in api.list(&lp).await?.items {
            match podcontrol::controller_of(&pod.metadata) {
                Some(o) if o.uid == job_uid => out.push(pod),
                Some(_) => {}
                None => {
                    let labels = pod.metadata.labels.clone().unwrap_or_default();
                    if !selector.matches(&labels)
                        || job.metadata.deletion_timestamp.is_some()
                        || pod.metadata.deletion_timestamp.is_some()
                    {
                        continue;
                    }
                    // Adopt: controller reference plus the tracking finalizer.
                    let patch = json!({"metadata": {
                        "uid": uid(&pod),
                        "ownerReferences": [podcontrol::controller_ref(job)],
                        "finalizers": [pods::TRACKING_FINALIZER],
                    }});
                    match api
                        .patch(
                            pods::name(&pod),
                            &PatchParams::default(),
                            &Patch::Strategic(patch),
                        )
                        .await
                    {
                        Ok(p) => out.push(p),
                        Err(kube::Error::Api(s))
                            if s.is_not_found() || s.is_conflict() || s.is_invalid() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(out)
    }

    /// The Job is gone: nothing will count its pods, so free them.
    async fn release_pods_of_missing_job(&self, ns: &str, name: &str) -> Result<(), SyncError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let lp = ListParams::default().labels(&format!(
            "{}={name}",
            crate::registry::strategy::kinds::batch::JOB_NAME_LABEL
        ));
        for pod in api.list(&lp).await?.items {
            let ours = podcontrol::controller_of(&pod.metadata)
                .is_some_and(|o| o.kind == "Job" && o.name == name);
            if ours && has_tracking_finalizer(&pod) {
                super::remove_tracking_finalizer(&api, &pod).await?;
            }
        }
        Ok(())
    }

    /// Create or delete pods so that the right number is active. Returns the
    /// active count after the changes.
    async fn manage_job(&self, st: &mut SyncState) -> (i32, Result<(), SyncError>) {
        let spec = st.spec.clone();
        let mut active = st.active.len() as i32;
        let indexed = is_indexed(&spec);
        if is_suspended(&spec) {
            let rm = pods::active_pods_for_removal(
                indexed,
                st.completions(),
                &st.active,
                st.active.len(),
            );
            let (ready, removed, err) = self.delete_job_pods(&st.job, &rm).await;
            st.terminating += removed;
            st.ready -= ready;
            return (active - removed, err.map_or(Ok(()), Err));
        }
        let want = want_active(
            spec.completions,
            spec.parallelism.unwrap_or(1),
            st.succeeded,
            active,
        );
        let rm_at_least = (active - want).max(0) as usize;
        let mut rm =
            pods::active_pods_for_removal(indexed, st.completions(), &st.active, rm_at_least);
        rm.truncate(MAX_PER_SYNC);
        if !rm.is_empty() {
            let (ready, removed, err) = self.delete_job_pods(&st.job, &rm).await;
            st.terminating += removed;
            st.ready -= ready;
            // Either deletions or creations in one sync, deletions first.
            return (active - removed, err.map_or(Ok(()), Err));
        }
        let terminating = if only_replace_failed(&spec) {
            st.terminating
        } else {
            0
        };
        let mut diff = want - terminating - active;
        if diff <= 0 {
            return (active, Ok(()));
        }
        if spec.backoff_limit_per_index.is_none() {
            let wait = st
                .new_backoff
                .remaining(st.now, self.backoff_base, self.backoff_max);
            if !wait.is_zero() {
                self.queue
                    .add_after(st.key.clone(), wait.max(super::BATCH_PERIOD));
                return (active, Ok(()));
            }
        }
        diff = diff.min(MAX_PER_SYNC as i32);
        let mut indexes: Vec<Option<i64>> = vec![None; diff as usize];
        if indexed {
            let mut taken = st
                .succeeded_indexes
                .with_indexes(st.active.iter().filter_map(completion_index));
            if only_replace_failed(&spec) {
                taken = taken.with_indexes(
                    st.pods
                        .iter()
                        .filter(|p| pods::is_terminating(p))
                        .filter_map(completion_index),
                );
            }
            if let Some(f) = &st.failed_indexes {
                taken = taken.merge(f);
            }
            let mut pending = indexes::first_pending(&taken, diff as usize, st.completions());
            if spec.backoff_limit_per_index.is_some() {
                let mut ready_now = Vec::new();
                let mut min_wait: Option<Duration> = None;
                for ix in pending {
                    let wait = st
                        .delayed_per_index
                        .get(&ix)
                        .map_or(Duration::ZERO, |last| {
                            let failures =
                                pods::index_absolute_failure_count(last).saturating_add(1) as u32;
                            backoff::remaining_for(
                                failures,
                                Some(backoff::finished_time(last)),
                                st.now,
                                self.backoff_base,
                                self.backoff_max,
                            )
                        });
                    if wait.is_zero() {
                        ready_now.push(ix);
                    } else {
                        min_wait = Some(min_wait.map_or(wait, |m| m.min(wait)));
                    }
                }
                if ready_now.is_empty() {
                    if let Some(w) = min_wait {
                        self.queue
                            .add_after(st.key.clone(), w.max(super::BATCH_PERIOD));
                    }
                    return (active, Ok(()));
                }
                pending = ready_now;
            }
            indexes = pending.into_iter().map(Some).collect();
        }
        // Slow start: batches of 1, 2, 4, ... stop at the first failing batch.
        let mut err = None;
        let mut batch = 1usize;
        let mut rest: &[Option<i64>] = &indexes;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            let results = join_all(now.iter().map(|ix| self.create_pod(st, *ix))).await;
            let failures: Vec<SyncError> = results.into_iter().filter_map(Result::err).collect();
            active += now.len() as i32 - failures.len() as i32;
            if let Some(e) = failures.into_iter().next() {
                err = Some(e);
                break;
            }
            batch *= 2;
        }
        (active, err.map_or(Ok(()), Err))
    }

    async fn create_pod(&self, st: &SyncState, index: Option<i64>) -> Result<(), SyncError> {
        let counts = match (index, st.spec.backoff_limit_per_index) {
            (Some(ix), Some(_)) => Some(new_index_failure_counts(
                &st.spec,
                st.delayed_per_index.get(&ix),
            )),
            _ => None,
        };
        let pod = pods::new_pod(&st.job, index, counts);
        let ns = st.job.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let jref = reference(&st.job);
        match api.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                let msg = format!("Created pod: {}", pods::name(&p));
                self.recorder
                    .publish(&jref, NORMAL, "SuccessfulCreate", &msg)
                    .await;
                Ok(())
            }
            // The namespace is going away: every create fails, quietly.
            Err(kube::Error::Api(s)) if s.message.contains("because it is being terminated") => {
                Ok(())
            }
            Err(e) => {
                let msg = format!("Error creating: {}", error_message(&e));
                self.recorder
                    .publish(&jref, WARNING, "FailedCreate", &msg)
                    .await;
                Err(e.into())
            }
        }
    }

    /// Delete pods the Job no longer wants (suspension, too many active):
    /// finalizer first, so they are not counted. Returns (ready deleted,
    /// deleted, first error).
    async fn delete_job_pods(&self, job: &Job, victims: &[Pod]) -> (i32, i32, Option<SyncError>) {
        self.delete_pods(job, victims, true).await
    }

    /// Delete active pods of a finishing Job, keeping their finalizers so
    /// they are counted as failed.
    async fn delete_active_pods(
        &self,
        job: &Job,
        victims: &[Pod],
    ) -> (i32, i32, Option<SyncError>) {
        self.delete_pods(job, victims, false).await
    }

    async fn delete_pods(
        &self,
        job: &Job,
        victims: &[Pod],
        drop_finalizer: bool,
    ) -> (i32, i32, Option<SyncError>) {
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let jref = reference(job);
        let results = join_all(victims.iter().map(|p| {
            let api = api.clone();
            let jref = jref.clone();
            async move {
                if drop_finalizer {
                    super::remove_tracking_finalizer(&api, p).await?;
                }
                match api.delete(pods::name(p), &DeleteParams::default()).await {
                    Ok(_) => {
                        let msg = format!("Deleted pod: {}", pods::name(p));
                        self.recorder
                            .publish(&jref, NORMAL, "SuccessfulDelete", &msg)
                            .await;
                        Ok(())
                    }
                    Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
                    Err(e) => {
                        let msg = format!("Error deleting: {}", error_message(&e));
                        self.recorder
                            .publish(&jref, WARNING, "FailedDelete", &msg)
                            .await;
                        Err(e)
                    }
                }
            }
        }))
        .await;
        let (mut ready, mut deleted, mut err) = (0, 0, None);
        for (p, r) in victims.iter().zip(results) {
            match r {
                Ok(()) => {
                    deleted += 1;
                    if podcontrol::is_ready(p) {
                        ready += 1;
                    }
                }
                Err(e) => {
                    err.get_or_insert(SyncError::Kube(e));
                }
            }
        }
        (ready, deleted, err)
    }

    /// Count finished pods into the status through uncountedTerminatedPods,
    /// release their finalizers, and record the terminal condition once
    /// every pod is counted and none is terminating.
    async fn track_status_and_remove_finalizers(
        &self,
        st: &mut SyncState,
        mut needs_flush: bool,
    ) -> Result<(), SyncError> {
        let indexed = is_indexed(&st.spec);
        let completions = st.completions();
        if indexed {
            st.pods.sort_by_key(|p| completion_index(p).unwrap_or(-1));
        }
        let mut with_finalizer: HashSet<String> = st
            .pods
            .iter()
            .filter(|p| has_tracking_finalizer(p))
            .map(|p| uid(p).to_string())
            .collect();
        let status = st.job.status.get_or_insert_with(Default::default);
        if clean_uncounted(status, &with_finalizer) {
            needs_flush = true;
        }
        let mut to_release: Vec<Pod> = Vec::new();
        let mut new_succeeded_indexes: Vec<i64> = Vec::new();
        let mut reached_max = false;
        let finished_failing = st
            .finished
            .as_ref()
            .is_some_and(|c| !is_success_criteria_met(Some(c)));
        for pod in &st.pods {
            if !has_tracking_finalizer(pod) {
                continue;
            }
            let failed = is_pod_failed(pod, &st.spec);
            if !can_remove_finalizer(st, pod, failed) {
                continue;
            }
            to_release.push(pod.clone());
            let status = st.job.status.get_or_insert_with(Default::default);
            let uncounted = status
                .uncounted_terminated_pods
                .get_or_insert_with(Default::default);
            let pod_uid = uid(pod).to_string();
            if phase(pod) == "Succeeded" && !st.uncounted_failed.contains(&pod_uid) {
                if indexed {
                    if let Some(ix) = valid_index(pod, completions)
                        && !st.prev_succeeded_indexes.has(ix)
                    {
                        new_succeeded_indexes.push(ix);
                        needs_flush = true;
                    }
                } else if !st.uncounted_succeeded.contains(&pod_uid) {
                    needs_flush = true;
                    uncounted
                        .succeeded
                        .get_or_insert_with(Vec::new)
                        .push(pod_uid);
                }
            } else if (failed || finished_failing)
                && !st.uncounted_failed.contains(&pod_uid)
                && (!indexed || valid_index(pod, completions).is_some())
            {
                let action =
                    policy::match_pod_failure_policy(st.spec.pod_failure_policy.as_ref(), pod);
                if Action::counts(action.as_ref()) {
                    needs_flush = true;
                    uncounted.failed.get_or_insert_with(Vec::new).push(pod_uid);
                }
            }
            let n = new_succeeded_indexes.len()
                + uncounted.succeeded.as_ref().map_or(0, Vec::len)
                + uncounted.failed.as_ref().map_or(0, Vec::len);
            if n >= MAX_PER_SYNC {
                reached_max = true;
                break;
            }
        }
        let status = st.job.status.get_or_insert_with(Default::default);
        if indexed {
            st.succeeded_indexes = st.succeeded_indexes.with_indexes(new_succeeded_indexes);
            let s = st.succeeded_indexes.to_string();
            if status.completed_indexes.as_deref().unwrap_or("") != s {
                needs_flush = true;
            }
            status.succeeded = Some(st.succeeded_indexes.total() as i32).filter(|n| *n != 0);
            status.completed_indexes = (!s.is_empty()).then_some(s);
            let failed_s = st.failed_indexes.as_ref().map(ToString::to_string);
            if status.failed_indexes != failed_s {
                status.failed_indexes = failed_s;
                needs_flush = true;
            }
        }
        if let Some(f) = st.finished.clone() {
            let conds = status.conditions.get_or_insert_with(Vec::new);
            if f.type_ == "FailureTarget" {
                // Recorded before the finalizers go, so the reason survives a crash.
                conds.push(f.clone());
                needs_flush = true;
                st.finished = Some(new_condition(
                    "Failed",
                    "True",
                    f.reason.as_deref().unwrap_or(""),
                    f.message.as_deref().unwrap_or(""),
                    st.now,
                ));
            } else if is_success_criteria_met(Some(&f)) {
                if !conds
                    .iter()
                    .any(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True")
                {
                    conds.push(f.clone());
                    needs_flush = true;
                }
                st.finished = Some(new_condition(
                    "Complete",
                    "True",
                    f.reason.as_deref().unwrap_or(""),
                    f.message.as_deref().unwrap_or(""),
                    st.now,
                ));
            }
        }

        // Flush the uncounted UIDs, then release the pods, then count them.
        let ns = st.job.metadata.namespace.clone().unwrap_or_default();
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let job_name = st.job.metadata.name.clone().unwrap_or_default();
        if needs_flush {
            tidy(&mut st.job);
            st.job = jobs
                .replace_status(&job_name, &PostParams::default(), &st.job)
                .await?;
            self.backoff
                .lock()
                .insert(st.key.clone(), st.new_backoff.clone());
            needs_flush = false;
        }
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let results = join_all(
            to_release
                .iter()
                .map(|p| super::remove_tracking_finalizer(&pod_api, p)),
        )
        .await;
        let mut rm_err = None;
        for (p, r) in to_release.iter().zip(results) {
            match r {
                Ok(()) => {
                    with_finalizer.remove(uid(p));
                }
                Err(e) => {
                    rm_err.get_or_insert(SyncError::Kube(e));
                }
            }
        }
        if clean_uncounted(
            st.job.status.get_or_insert_with(Default::default),
            &with_finalizer,
        ) {
            needs_flush = true;
        }
        if let Some(e) = rm_err {
            if needs_flush {
                tidy(&mut st.job);
                jobs.replace_status(&job_name, &PostParams::default(), &st.job)
                    .await?;
            }
            return Err(e);
        }
        let finished_now = !reached_max && self.enact_job_finished(st);
        if finished_now {
            needs_flush = true;
        }
        if needs_flush {
            tidy(&mut st.job);
            st.job = jobs
                .replace_status(&job_name, &PostParams::default(), &st.job)
                .await?;
            if finished_now {
                self.record_job_finished(st).await;
            }
        }
        Ok(())
    }

    /// Add the Complete or Failed condition once nothing is left to count.
    fn enact_job_finished(&self, st: &mut SyncState) -> bool {
        let Some(f) = st.finished.clone() else {
            return false;
        };
        let status = st.job.status.get_or_insert_with(Default::default);
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        if uncounted.succeeded.is_some_and(|v| !v.is_empty())
            || uncounted.failed.is_some_and(|v| !v.is_empty())
        {
            return false;
        }
        if st.terminating > 0 {
            return false;
        }
        let conds = status.conditions.get_or_insert_with(Vec::new);
        ensure_condition(
            conds,
            &f.type_,
            &f.status,
            f.reason.as_deref().unwrap_or(""),
            f.message.as_deref().unwrap_or(""),
            st.now,
        );
        if f.type_ == "Complete" {
            status.completion_time = f.last_transition_time.clone();
        }
        true
    }

    async fn record_job_finished(&self, st: &SyncState) {
        let Some(f) = &st.finished else { return };
        let jref = reference(&st.job);
        if f.type_ == "Complete" {
            let succeeded = st
                .job
                .status
                .as_ref()
                .and_then(|s| s.succeeded)
                .unwrap_or(0);
            if st.spec.completions.is_some_and(|c| succeeded > c) {
                self.recorder
                    .publish(
                        &jref,
                        WARNING,
                        "TooManySucceededPods",
                        "Too many succeeded pods running after completion count reached",
                    )
                    .await;
            }
            self.recorder
                .publish(&jref, NORMAL, "Completed", "Job completed")
                .await;
        } else {
            self.recorder
                .publish(
                    &jref,
                    WARNING,
                    f.reason.as_deref().unwrap_or(""),
                    f.message.as_deref().unwrap_or(""),
                )
                .await;
        }
    }
}

/// Leave out what upstream's omitempty leaves out.
fn tidy(job: &mut Job) {
    if let Some(s) = job.status.as_mut()
        && s.conditions.as_ref().is_some_and(Vec::is_empty)
    {
        s.conditions = None;
    }
}

/// A terminal-failure condition: FailureTarget first (upstream delays the
/// Failed condition until every pod is gone).
fn failure_condition(reason: &str, message: &str, now: Timestamp) -> JobCondition {
    new_condition("FailureTarget", "True", reason, message, now)
}

/// The message of a FailJob rule some failed pod matches.
fn fail_job_message(spec: &JobSpec, all: &[Pod]) -> Option<String> {
    let pfp = spec.pod_failure_policy.as_ref()?;
    all.iter().filter(|p| is_pod_failed(p, spec)).find_map(|p| {
        match policy::match_pod_failure_policy(Some(pfp), p) {
            Some(Action::FailJob(msg)) => Some(msg),
            _ => None,
        }
    })
}

/// Move UIDs whose pods no longer carry the finalizer from
/// uncountedTerminatedPods into the counters. Returns whether anything moved.
pub fn clean_uncounted(
    status: &mut k8s_openapi::api::batch::v1::JobStatus,
    with_finalizer: &HashSet<String>,
) -> bool {
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let mut changed = false;
    let moved = |list: &mut Option<Vec<String>>| -> i32 {
        let Some(v) = list.as_mut() else { return 0 };
        let before = v.len();
        v.retain(|u| with_finalizer.contains(u));
        let n = (before - v.len()) as i32;
        if v.is_empty() {
            *list = None;
        }
        n
    };
    let s = moved(&mut uncounted.succeeded);
    let f = moved(&mut uncounted.failed);
    if s > 0 {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + s);
        changed = true;
    }
    if f > 0 {
        status.failed = Some(status.failed.unwrap_or(0) + f);
        changed = true;
    }
    changed
}

fn can_remove_finalizer(st: &SyncState, pod: &Pod, considered_failed: bool) -> bool {
    if st.job.metadata.deletion_timestamp.is_some()
        || st.finished.is_some()
        || phase(pod) == "Succeeded"
    {
        return true;
    }
    if !considered_failed {
        return false;
    }
    // backoffLimitPerIndex: the last failed pod of an index stays until its
    // replacement exists, which inherits its failure count.
    if st.spec.backoff_limit_per_index.is_some()
        && let Some(ix) = completion_index(pod)
        && st
            .delayed_per_index
            .get(&ix)
            .is_some_and(|p| uid(p) == uid(pod))
    {
        return false;
    }
    true
}

/// status.failedIndexes plus indexes whose pods failed beyond the per-index limit.
fn failed_indexes(
    st: &SyncState,
    status: &k8s_openapi::api::batch::v1::JobStatus,
    per_index: i32,
) -> Intervals {
    let completions = st.completions();
    let prev = Intervals::parse(status.failed_indexes.as_deref().unwrap_or(""), completions);
    let new: Vec<i64> = st
        .pods
        .iter()
        .filter(|p| has_tracking_finalizer(p) && is_index_failed(&st.spec, p, per_index))
        .filter_map(|p| valid_index(p, completions))
        .collect();
    prev.with_indexes(new)
}

fn is_index_failed(spec: &JobSpec, pod: &Pod, per_index: i32) -> bool {
    if !is_pod_failed(pod, spec) {
        return false;
    }
    let counted = match policy::match_pod_failure_policy(spec.pod_failure_policy.as_ref(), pod) {
        Some(Action::FailIndex) => return true,
        a => Action::counts(a.as_ref()),
    };
    counted && pods::index_failure_count(pod) >= per_index
}

/// Per index, the failed pod whose deletion waits for its replacement.
fn pods_with_delayed_deletion(st: &SyncState) -> HashMap<i64, Pod> {
    let completions = st.completions();
    let active: HashSet<i64> = st.active.iter().filter_map(completion_index).collect();
    let empty = HashSet::new();
    let failed = st.failed_indexes.clone().unwrap_or_default();
    let mut out: BTreeMap<i64, Pod> = BTreeMap::new();
    for p in st.valid_pods(&empty, |p| is_pod_failed(p, &st.spec)) {
        let Some(ix) = valid_index(p, completions) else {
            continue;
        };
        if st.succeeded_indexes.has(ix) || failed.has(ix) || active.contains(&ix) {
            continue;
        }
        match out.get(&ix) {
            Some(last)
                if !(pods::index_absolute_failure_count(last)
                    <= pods::index_absolute_failure_count(p)
                    && backoff::finished_time(p) >= backoff::finished_time(last)) => {}
            _ => {
                out.insert(ix, p.clone());
            }
        }
    }
    out.into_iter().collect()
}

/// The failure counts the replacement of `replaced` starts with.
fn new_index_failure_counts(spec: &JobSpec, replaced: Option<&Pod>) -> (i32, i32) {
    let Some(p) = replaced else { return (0, 0) };
    let failed = pods::index_failure_count(p);
    let ignored = pods::index_absolute_failure_count(p) - failed;
    if Action::counts(
        policy::match_pod_failure_policy(spec.pod_failure_policy.as_ref(), p).as_ref(),
    ) {
        (failed.saturating_add(1), ignored)
    } else {
        (failed, ignored.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    #[test]
    fn active_targets() {
        assert_eq!(want_active(Some(3), 2, 0, 0), 2);
        assert_eq!(want_active(Some(3), 2, 2, 1), 1);
        assert_eq!(want_active(Some(3), 2, 5, 0), 0);
        assert_eq!(want_active(None, 4, 0, 1), 4);
        assert_eq!(want_active(None, 4, 1, 3), 3);
    }

    #[test]
    fn conditions_are_set_once() {
        let now = ts("2024-01-01T00:00:00Z");
        let later = ts("2024-01-01T00:01:00Z");
        let mut conds = Vec::new();
        assert!(!ensure_condition(
            &mut conds,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now
        ));
        assert!(conds.is_empty());
        assert!(ensure_condition(
            &mut conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(!ensure_condition(
            &mut conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            later
        ));
        assert!(ensure_condition(
            &mut conds,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            later
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].status, "False");
        assert_eq!(conds[0].last_transition_time, Some(Time(later)));
        let c = new_condition("Complete", "True", "", "", now);
        assert_eq!(
            serde_json::to_value(&c).expect("json"),
            json!({"type": "Complete", "status": "True",
            "lastProbeTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn uncounted_pods_move_into_counters() {
        let mut status = k8s_openapi::api::batch::v1::JobStatus {
            succeeded: Some(1),
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: Some(vec!["a".into(), "b".into()]),
                failed: Some(vec!["c".into()]),
            }),
            ..Default::default()
        };
        let still: HashSet<String> = ["b".to_string()].into();
        assert!(clean_uncounted(&mut status, &still));
        assert_eq!(status.succeeded, Some(2));
        assert_eq!(status.failed, Some(1));
        let u = status.uncounted_terminated_pods.clone().expect("uncounted");
        assert_eq!(u.succeeded, Some(vec!["b".to_string()]));
        assert_eq!(u.failed, None);
        assert!(!clean_uncounted(&mut status, &still));
        assert_eq!(
            serde_json::to_value(&u).expect("json"),
            json!({"succeeded": ["b"]})
        );
    }

    #[test]
    fn failures_and_deletions() {
        let spec: JobSpec = serde_json::from_value(
            json!({"template": {"spec": {"restartPolicy": "OnFailure", "containers": []}},
            "backoffLimit": 2}),
        )
        .expect("spec");
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).expect("pod") };
        let deleted_running = pod(
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}}),
        );
        assert!(is_pod_failed(&deleted_running, &spec));
        let mut only_failed = spec.clone();
        only_failed.pod_replacement_policy = Some("Failed".into());
        assert!(!is_pod_failed(&deleted_running, &only_failed));
        assert!(is_pod_failed(
            &pod(json!({"status": {"phase": "Failed"}})),
            &only_failed
        ));
        let restarting = pod(json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 2}]}}));
        assert!(past_backoff_limit_on_failure(
            &spec,
            std::slice::from_ref(&restarting)
        ));
        let mut never = spec.clone();
        never.template.spec.as_mut().expect("spec").restart_policy = Some("Never".into());
        assert!(!past_backoff_limit_on_failure(&never, &[restarting]));
    }

    #[test]
    fn index_failure_counts_carry_over() {
        let spec: JobSpec =
            serde_json::from_value(json!({"template": {}, "backoffLimitPerIndex": 2}))
                .expect("spec");
        let failed: Pod = serde_json::from_value(json!({"metadata": {"annotations": {
            pods::INDEX_FAILURE_COUNT: "1", pods::INDEX_IGNORED_FAILURE_COUNT: "2"}}, "status": {"phase": "Failed"}}))
        .expect("pod");
        assert_eq!(new_index_failure_counts(&spec, Some(&failed)), (2, 2));
        assert_eq!(new_index_failure_counts(&spec, None), (0, 0));
        assert!(!is_index_failed(&spec, &failed, 2));
        assert!(is_index_failed(&spec, &failed, 1));
    }
}
