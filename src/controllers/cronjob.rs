//! CronJob controller, as upstream's (v2): at each activation of the
//! schedule (in `spec.timeZone`), create a Job named
//! `<cronjob>-<scheduled time in minutes since the epoch>`, subject to
//! suspend, startingDeadlineSeconds and concurrencyPolicy; track the active
//! Jobs, lastScheduleTime and lastSuccessfulTime; delete finished Jobs beyond
//! the history limits.
//!
//! The decisions are pure functions of the CronJob, its Jobs and "now"
//! ([`reconcile_children`], [`decide`], [`history_to_delete`]); the sync
//! carries them out through the API.

pub mod schedule;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, ListParams, PartialObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use tracing::{debug, warn};

use super::Context;
use super::events::{NORMAL, Recorder, WARNING, reference};
use super::job::queue::WorkQueue;
use super::job::{error_message, finished_type, key_of, split_key};
use super::podcontrol;
use schedule::{Missed, Schedule};

pub const COMPONENT: &str = "cronjob-controller";
/// Jobs carry their scheduled time (RFC 3339, in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Requeues land this long after the activation, against clock skew.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
const WORKERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// Run the CronJob controller until its watches end.
pub async fn run(ctx: Arc<Context>) {
    let ctrl = Arc::new(CronJobController {
        client: ctx.client.clone(),
        recorder: ctx.recorder(COMPONENT),
        queue: WorkQueue::default(),
        schedules: Mutex::new(HashMap::new()),
    });
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let c = ctrl.clone();
        tasks.push(tokio::spawn(async move { c.worker().await }));
    }
    {
        let c = ctrl.clone();
        tasks.push(tokio::spawn(async move { c.watch_jobs().await }));
    }
    ctrl.watch_cronjobs().await;
    for t in tasks {
        t.abort();
    }
}

struct CronJobController {
    client: kube::Client,
    recorder: Recorder,
    queue: WorkQueue<String>,
    /// Last seen (schedule, timeZone) per key, to notice schedule changes.
    schedules: Mutex<HashMap<String, (String, Option<String>)>>,
}

// ------------------------------------------------------------ pure logic

/// The zone a CronJob's schedule runs in: `spec.timeZone`, else the local
/// zone of this process (as kube-controller-manager's).
pub fn time_zone(cj: &CronJob) -> Result<TimeZone, String> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        Some(name) => TimeZone::get(name).map_err(|e| format!("unknown time zone {name}: {e}")),
        None => Ok(TimeZone::system()),
    }
}

fn spec_of(cj: &CronJob) -> k8s_openapi::api::batch::v1::CronJobSpec {
    cj.spec.clone().unwrap_or_default()
}

/// Where counting activations starts: the last one scheduled, else creation.
fn earliest_time(cj: &CronJob) -> Timestamp {
    cj.status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// The name of the Job for an activation: minutes since the epoch.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!(
        "{}-{}",
        cj.metadata.name.as_deref().unwrap_or(""),
        scheduled.as_second().div_euclid(60)
    )
}

/// RFC 3339 as Go prints it ("Z" for a zero offset).
fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The Job for an activation, from the CronJob's template.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Job {
    let spec = spec_of(cj);
    let tmeta = spec.job_template.metadata.clone().unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    // The annotation is in the CronJob's zone, or UTC without one.
    let tz = match spec.time_zone.as_deref() {
        Some(name) => TimeZone::get(name).unwrap_or(TimeZone::UTC),
        None => TimeZone::UTC,
    };
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        rfc3339_in(scheduled, &tz),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![podcontrol::controller_ref(cj)]),
            ..Default::default()
        },
        spec: spec.job_template.spec.clone(),
        status: None,
    }
}

fn active_refs(cj: &CronJob) -> Vec<ObjectReference> {
    cj.status
        .as_ref()
        .and_then(|s| s.active.clone())
        .unwrap_or_default()
}

fn in_active_list(cj: &CronJob, uid: &str) -> bool {
    active_refs(cj)
        .iter()
        .any(|r| r.uid.as_deref() == Some(uid))
}

fn set_active(cj: &mut CronJob, refs: Vec<ObjectReference>) {
    // An empty list is left out, as upstream's omitempty does.
    cj.status.get_or_insert_with(Default::default).active = (!refs.is_empty()).then_some(refs);
}

fn delete_from_active_list(cj: &mut CronJob, uid: &str) {
    let refs: Vec<ObjectReference> = active_refs(cj)
        .into_iter()
        .filter(|r| r.uid.as_deref() != Some(uid))
        .collect();
    set_active(cj, refs);
}

/// An event to record about the CronJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

fn ev(type_: &'static str, reason: &'static str, message: String) -> Event {
    Event {
        type_,
        reason,
        message,
    }
}

/// Fold the Jobs' state into the status: finished Jobs leave the active
/// list, lastSuccessfulTime follows the newest completion. Returns the
/// events, whether the status changed, and the active refs whose Jobs were
/// not listed (they may be missing; the caller checks).
pub fn reconcile_children(
    cj: &mut CronJob,
    jobs: &[Job],
) -> (Vec<Event>, bool, Vec<ObjectReference>) {
    let mut events = Vec::new();
    let mut changed = false;
    let mut children = HashSet::new();
    for j in jobs {
        let uid = j.metadata.uid.clone().unwrap_or_default();
        let name = j.metadata.name.clone().unwrap_or_default();
        children.insert(uid.clone());
        let found = in_active_list(cj, &uid);
        let finished = finished_type(j);
        match (found, finished) {
            (false, None) => events.push(ev(
                WARNING,
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {name}"),
            )),
            (true, Some(status)) => {
                delete_from_active_list(cj, &uid);
                events.push(ev(
                    NORMAL,
                    "SawCompletedJob",
                    format!("Saw completed job: {name}, status: {status}"),
                ));
                changed = true;
            }
            (_, Some("Complete")) => {
                let completed = j.status.as_ref().and_then(|s| s.completion_time.clone());
                let status = cj.status.get_or_insert_with(Default::default);
                match (&status.last_successful_time, completed) {
                    (None, c) => {
                        changed |= c.is_some();
                        status.last_successful_time = c;
                    }
                    (Some(last), Some(c)) if c.0 > last.0 => {
                        status.last_successful_time = Some(c);
                        changed = true;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let unlisted = active_refs(cj)
        .into_iter()
        .filter(|r| !children.contains(r.uid.as_deref().unwrap_or("")))
        .collect();
    (events, changed, unlisted)
}

/// What to do about the schedule now.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing is due.
    Wait,
    /// The due activation is past startingDeadlineSeconds.
    Missed(Timestamp),
    /// This activation already has its Job.
    AlreadyProcessed,
    /// concurrencyPolicy Forbid and a Job still runs.
    Forbidden,
    /// Create the Job for `scheduled`, after deleting `replace` (Replace policy).
    Create {
        scheduled: Timestamp,
        replace: Vec<ObjectReference>,
    },
}

/// The decision for a CronJob that is neither suspended nor being deleted.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub action: Action,
    /// More than 100 activations were missed.
    pub too_many_missed: bool,
}

/// Decide from the schedule, the status and `now` (upstream's syncCronJob
/// after its checks of the children).
pub fn decide(cj: &CronJob, sched: &Schedule, now: Timestamp) -> Result<Decision, String> {
    let spec = spec_of(cj);
    let (_, latest, missed) = schedule::most_recent(
        sched,
        earliest_time(cj),
        now,
        spec.starting_deadline_seconds,
    )?;
    let too_many_missed = missed == Missed::Many && latest.is_some();
    let decision = |action| {
        Ok(Decision {
            action,
            too_many_missed,
        })
    };
    let Some(scheduled) = latest.filter(|t| *t <= now) else {
        return decision(Action::Wait);
    };
    if let Some(d) = spec.starting_deadline_seconds
        && scheduled
            .checked_add(jiff::SignedDuration::from_secs(d))
            .is_ok_and(|late| late < now)
    {
        return decision(Action::Missed(scheduled));
    }
    let name = job_name(cj, scheduled);
    let ns = cj.metadata.namespace.clone();
    let active = active_refs(cj);
    let last = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0);
    if active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()) && r.namespace == ns)
        || last == Some(scheduled)
    {
        return decision(Action::AlreadyProcessed);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => decision(Action::Forbidden),
        Some("Replace") => decision(Action::Create {
            scheduled,
            replace: active,
        }),
        _ => decision(Action::Create {
            scheduled,
            replace: Vec::new(),
        }),
    }
}

/// When to look again: just after the next activation following the most
/// recent one (or now, when activations were missed).
pub fn next_schedule_delay(cj: &CronJob, sched: &Schedule, now: Timestamp) -> Option<Duration> {
    let from = match schedule::most_recent(sched, earliest_time(cj), now, None) {
        Err(_) => now,
        Ok((_, Some(t), _)) => t,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    let next = sched.next(from)?;
    let until = Duration::try_from(now.duration_until(next)).unwrap_or(Duration::ZERO);
    Some(until + NEXT_SCHEDULE_DELTA)
}

/// Finished Jobs beyond the history limits, oldest first.
pub fn history_to_delete(cj: &CronJob, jobs: &[Job]) -> Vec<Job> {
    let spec = spec_of(cj);
    if spec.successful_jobs_history_limit.is_none() && spec.failed_jobs_history_limit.is_none() {
        return Vec::new();
    }
    let mut by_status: BTreeMap<&str, Vec<Job>> = BTreeMap::new();
    for j in jobs {
        if let Some(t) = finished_type(j) {
            by_status
                .entry(if t == "Complete" {
                    "Complete"
                } else {
                    "Failed"
                })
                .or_default()
                .push(j.clone());
        }
    }
    let mut out = Vec::new();
    for (status, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let (Some(limit), Some(mut list)) = (limit, by_status.remove(status)) else {
            continue;
        };
        let excess = list.len().saturating_sub(limit.max(0) as usize);
        if excess == 0 {
            continue;
        }
        // By start time (unstarted last), then name.
        list.sort_by(|a, b| {
            let start = |j: &Job| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
            };
            match (start(a), start(b)) {
                (Some(x), Some(y)) if x != y => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.metadata.name.cmp(&b.metadata.name),
            }
        });
        out.extend(list.into_iter().take(excess));
    }
    out
}

// ------------------------------------------------------------ the sync

impl CronJobController {
    async fn worker(&self) {
        loop {
            let key = self.queue.next().await;
            match self.sync(&key).await {
                Ok(Some(after)) => {
                    self.queue.forget(&key);
                    self.queue.add_after(key.clone(), after);
                }
                Ok(None) => self.queue.forget(&key),
                Err(e) => {
                    debug!(cronjob = %key, "cronjob sync failed: {e}");
                    self.queue.add_rate_limited(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

    async fn watch_cronjobs(&self) {
        let api: Api<CronJob> = Api::all(self.client.clone());
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Apply(cj)) | Ok(watcher::Event::InitApply(cj)) => {
                    self.cronjob_changed(&cj)
                }
                Ok(watcher::Event::Delete(cj)) => {
                    let key = key_of(
                        cj.metadata.namespace.as_deref().unwrap_or(""),
                        cj.metadata.name.as_deref().unwrap_or(""),
                    );
                    self.schedules.lock().remove(&key);
                }
                Ok(_) => {}
                Err(e) => debug!("cronjob watch: {e}"),
            }
        }
        warn!("cronjob watch ended");
    }

    fn cronjob_changed(&self, cj: &CronJob) {
        let key = key_of(
            cj.metadata.namespace.as_deref().unwrap_or(""),
            cj.metadata.name.as_deref().unwrap_or(""),
        );
        let spec = spec_of(cj);
        let now = (spec.schedule.clone(), spec.time_zone.clone());
        let before = self.schedules.lock().insert(key.clone(), now.clone());
        // A changed schedule takes effect from its next activation; any
        // other change is looked at now.
        if before.is_some_and(|b| b != now) {
            let next = time_zone(cj)
                .ok()
                .and_then(|tz| schedule::parse(&spec.schedule, tz).ok())
                .and_then(|s| next_schedule_delay(cj, &s, Timestamp::now()));
            match next {
                Some(after) => self.queue.add_after(key, after),
                None => self.queue.add(key),
            }
        } else {
            self.queue.add(key);
        }
    }

    async fn watch_jobs(&self) {
        // Only the owner matters here: a metadata-only watch.
        let api: Api<PartialObjectMeta<Job>> = Api::all(self.client.clone());
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Apply(j))
                | Ok(watcher::Event::InitApply(j))
                | Ok(watcher::Event::Delete(j)) => {
                    if let Some(o) =
                        podcontrol::controller_of(&j.metadata).filter(|o| o.kind == "CronJob")
                    {
                        self.queue.add(key_of(
                            j.metadata.namespace.as_deref().unwrap_or(""),
                            &o.name,
                        ));
                    }
                }
                Ok(_) => {}
                Err(e) => debug!("cronjob controller job watch: {e}"),
            }
        }
    }

    async fn event(&self, cj: &CronJob, e: &Event) {
        self.recorder
            .publish(&reference(cj), e.type_, e.reason, &e.message)
            .await;
    }

    /// One sync; Ok(Some(d)) asks to be run again after `d`.
    async fn sync(&self, key: &str) -> Result<Option<Duration>, SyncError> {
        let (ns, name) = split_key(key);
        let cjs: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
        let Some(cj) = cjs.get_opt(name).await? else {
            return Ok(None);
        };
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let jobs: Vec<Job> = jobs_api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|j| {
                podcontrol::controller_of(&j.metadata)
                    .is_some_and(|o| o.kind == "CronJob" && o.name == name)
            })
            .collect();
        let mut cj2 = cj.clone();
        let mut update = false;
        for j in history_to_delete(&cj2, &jobs) {
            update |= self.delete_job(&mut cj2, &j).await;
        }
        let (requeue, changed, result) = self.sync_cronjob(&mut cj2, &jobs).await;
        if update || changed {
            cjs.replace_status(name, &PostParams::default(), &cj2)
                .await?;
        }
        match (requeue, result) {
            (Some(after), Err(e)) => {
                debug!(cronjob = %key, "cronjob: {e}");
                Ok(Some(after))
            }
            (Some(after), Ok(())) => Ok(Some(after)),
            (None, r) => r.map(|()| None),
        }
    }

    /// Delete a Job of the CronJob (its pods go in the background).
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        let name = job.metadata.name.as_deref().unwrap_or("");
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                delete_from_active_list(cj, job.metadata.uid.as_deref().unwrap_or(""));
                self.event(
                    cj,
                    &ev(NORMAL, "SuccessfulDelete", format!("Deleted job {name}")),
                )
                .await;
                true
            }
            Err(e) => {
                self.event(
                    cj,
                    &ev(
                        WARNING,
                        "FailedDelete",
                        format!("Deleted job: {}", error_message(&e)),
                    ),
                )
                .await;
                false
            }
        }
    }

    async fn sync_cronjob(
        &self,
        cj: &mut CronJob,
        jobs: &[Job],
    ) -> (Option<Duration>, bool, Result<(), SyncError>) {
        let now = Timestamp::now();
        let (events, mut update, unlisted) = reconcile_children(cj, jobs);
        for e in &events {
            self.event(cj, e).await;
        }
        for r in unlisted {
            // Not in our list: ask the API before calling it missing.
            let api: Api<Job> =
                Api::namespaced(self.client.clone(), r.namespace.as_deref().unwrap_or(""));
            match api.get_opt(r.name.as_deref().unwrap_or("")).await {
                Ok(None) => {
                    let msg = format!(
                        "Active job went missing: {}",
                        r.name.as_deref().unwrap_or("")
                    );
                    self.event(cj, &ev(NORMAL, "MissingJob", msg)).await;
                    delete_from_active_list(cj, r.uid.as_deref().unwrap_or(""));
                    update = true;
                }
                Ok(Some(_)) => {}
                Err(e) => return (None, update, Err(e.into())),
            }
        }
        if cj.metadata.deletion_timestamp.is_some() {
            return (None, update, Ok(()));
        }
        let spec = spec_of(cj);
        let tz = match time_zone(cj) {
            Ok(tz) => tz,
            Err(e) => {
                let zone = spec.time_zone.clone().unwrap_or_default();
                self.event(
                    cj,
                    &ev(
                        WARNING,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {zone:?}: {e}"),
                    ),
                )
                .await;
                return (None, update, Ok(()));
            }
        };
        if spec.suspend == Some(true) {
            return (None, update, Ok(()));
        }
        let sched = match schedule::parse(&spec.schedule, tz) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("unparseable schedule: {:?} : {e}", spec.schedule);
                self.event(cj, &ev(WARNING, "UnparseableSchedule", msg))
                    .await;
                return (None, update, Ok(()));
            }
        };
        let decision = match decide(cj, &sched, now) {
            Ok(d) => d,
            Err(e) => {
                let msg = format!("invalid schedule: {} : {e}", spec.schedule);
                self.event(cj, &ev(WARNING, "InvalidSchedule", msg)).await;
                return (None, update, Ok(()));
            }
        };
        if decision.too_many_missed {
            let msg = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
            self.event(cj, &ev(WARNING, "TooManyMissedTimes", msg.into()))
                .await;
        }
        let next = |cj: &CronJob| next_schedule_delay(cj, &sched, now);
        let (scheduled, replace) = match decision.action {
            Action::Wait | Action::AlreadyProcessed => return (next(cj), update, Ok(())),
            Action::Missed(t) => {
                let when = t
                    .to_zoned(TimeZone::UTC)
                    .strftime("%a, %d %b %Y %H:%M:%S %z")
                    .to_string();
                self.event(
                    cj,
                    &ev(
                        WARNING,
                        "MissSchedule",
                        format!("Missed scheduled time to start a job: {when}"),
                    ),
                )
                .await;
                return (next(cj), update, Ok(()));
            }
            Action::Forbidden => {
                let msg = "Not starting job because prior execution is running and concurrency policy is Forbid";
                self.event(cj, &ev(NORMAL, "JobAlreadyActive", msg.into()))
                    .await;
                return (next(cj), update, Ok(()));
            }
            Action::Create { scheduled, replace } => (scheduled, replace),
        };
        for r in replace {
            let api: Api<Job> =
                Api::namespaced(self.client.clone(), r.namespace.as_deref().unwrap_or(""));
            let job = match api.get(r.name.as_deref().unwrap_or("")).await {
                Ok(j) => j,
                Err(e) => {
                    self.event(
                        cj,
                        &ev(
                            WARNING,
                            "FailedGet",
                            format!("Get job: {}", error_message(&e)),
                        ),
                    )
                    .await;
                    return (None, update, Err(e.into()));
                }
            };
            if !self.delete_job(cj, &job).await {
                let msg = format!(
                    "could not replace job {}/{}",
                    r.namespace.unwrap_or_default(),
                    r.name.unwrap_or_default()
                );
                return (None, update, Err(SyncError::Other(msg)));
            }
            update = true;
        }
        let req = job_from_template(cj, scheduled);
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let created = match api.create(&PostParams::default(), &req).await {
            Ok(j) => {
                let msg = format!("Created job {}", j.metadata.name.as_deref().unwrap_or(""));
                self.event(cj, &ev(NORMAL, "SuccessfulCreate", msg)).await;
                j
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                // Made before, but the status update was lost: re-add it.
                let j = match api.get(req.metadata.name.as_deref().unwrap_or("")).await {
                    Ok(j) => j,
                    Err(e) => return (None, update, Err(e.into())),
                };
                let ours = podcontrol::controller_of(&j.metadata)
                    .is_some_and(|o| Some(&o.uid) == cj.metadata.uid.as_ref());
                if !ours || in_active_list(cj, j.metadata.uid.as_deref().unwrap_or("")) {
                    return (None, update, Ok(()));
                }
                j
            }
            Err(e) => {
                if !error_message(&e).contains("because it is being terminated") {
                    self.event(
                        cj,
                        &ev(
                            WARNING,
                            "FailedCreate",
                            format!("Error creating job: {}", error_message(&e)),
                        ),
                    )
                    .await;
                }
                return (None, update, Err(e.into()));
            }
        };
        let mut refs = active_refs(cj);
        refs.push(reference(&created));
        set_active(cj, refs);
        cj.status
            .get_or_insert_with(Default::default)
            .last_schedule_time = Some(Time(scheduled));
        (next(cj), true, Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn cronjob(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
        let mut full = json!({"schedule": "*/1 * * * *", "jobTemplate": {"metadata": {"labels": {"app": "tick"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}});
        if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
            for (k, v) in s {
                f.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid", "creationTimestamp": "2024-01-01T10:00:30Z"},
            "spec": full, "status": status,
        }))
        .expect("cronjob")
    }

    fn job(name: &str, uid: &str, finished: Option<&str>, start: Option<&str>) -> Job {
        let conds = finished.map_or(json!([]), |t| json!([{"type": t, "status": "True"}]));
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": uid,
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick", "uid": "cj-uid", "controller": true}]},
            "spec": {"template": {}},
            "status": {"conditions": conds, "startTime": start, "completionTime": if finished == Some("Complete") { start } else { None }},
        }))
        .expect("job")
    }

    fn sched(cj: &CronJob) -> Schedule {
        schedule::parse(&spec_of(cj).schedule, TimeZone::UTC).expect("schedule")
    }

    fn active(name: &str, uid: &str) -> serde_json::Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "name": name, "namespace": "default", "uid": uid})
    }

    #[test]
    fn fires_once_per_activation() {
        let cj = cronjob(json!({}), json!({}));
        let s = sched(&cj);
        assert_eq!(
            decide(&cj, &s, ts("2024-01-01T10:00:50Z")).map(|d| d.action),
            Ok(Action::Wait)
        );
        assert_eq!(
            next_schedule_delay(&cj, &s, ts("2024-01-01T10:00:50Z")),
            Some(Duration::from_millis(10_100))
        );
        let d = decide(&cj, &s, ts("2024-01-01T10:01:02Z")).expect("decide");
        assert_eq!(
            d.action,
            Action::Create {
                scheduled: ts("2024-01-01T10:01:00Z"),
                replace: vec![]
            }
        );
        assert_eq!(job_name(&cj, ts("2024-01-01T10:01:00Z")), "tick-28401721");
        // After creating it, the same activation is not started again.
        let done = cronjob(
            json!({}),
            json!({"lastScheduleTime": "2024-01-01T10:01:00Z"}),
        );
        assert_eq!(
            decide(&done, &s, ts("2024-01-01T10:01:30Z")).map(|d| d.action),
            Ok(Action::Wait)
        );
        assert_eq!(
            next_schedule_delay(&done, &s, ts("2024-01-01T10:01:30Z")),
            Some(Duration::from_millis(30_100))
        );
        let listed = cronjob(
            json!({}),
            json!({"active": [active("tick-28401721", "j1")]}),
        );
        assert_eq!(
            decide(&listed, &s, ts("2024-01-01T10:01:30Z")).map(|d| d.action),
            Ok(Action::AlreadyProcessed)
        );
    }

    #[test]
    fn concurrency_policies() {
        let status = json!({"lastScheduleTime": "2024-01-01T10:01:00Z", "active": [active("tick-28401721", "j1")]});
        let now = ts("2024-01-01T10:02:01Z");
        let forbid = cronjob(json!({"concurrencyPolicy": "Forbid"}), status.clone());
        assert_eq!(
            decide(&forbid, &sched(&forbid), now).map(|d| d.action),
            Ok(Action::Forbidden)
        );
        let allow = cronjob(json!({"concurrencyPolicy": "Allow"}), status.clone());
        assert_eq!(
            decide(&allow, &sched(&allow), now).map(|d| d.action),
            Ok(Action::Create {
                scheduled: ts("2024-01-01T10:02:00Z"),
                replace: vec![]
            })
        );
        let replace = cronjob(json!({"concurrencyPolicy": "Replace"}), status);
        let Ok(Decision {
            action: Action::Create {
                replace: victims, ..
            },
            ..
        }) = decide(&replace, &sched(&replace), now)
        else {
            panic!("Replace should create");
        };
        assert_eq!(victims.len(), 1);
        assert_eq!(victims[0].name.as_deref(), Some("tick-28401721"));
    }

    #[test]
    fn deadlines_and_missed_runs() {
        // Down for a while: only the latest activation runs.
        let cj = cronjob(
            json!({}),
            json!({"lastScheduleTime": "2024-01-01T10:01:00Z"}),
        );
        let d = decide(&cj, &sched(&cj), ts("2024-01-01T10:07:30Z")).expect("decide");
        assert_eq!(
            d,
            Decision {
                action: Action::Create {
                    scheduled: ts("2024-01-01T10:07:00Z"),
                    replace: vec![]
                },
                too_many_missed: false
            }
        );
        // Too late for startingDeadlineSeconds.
        let late = cronjob(
            json!({"startingDeadlineSeconds": 10, "schedule": "0 * * * *"}),
            json!({"lastScheduleTime": "2024-01-01T10:00:00Z"}),
        );
        assert_eq!(
            decide(&late, &sched(&late), ts("2024-01-01T11:00:30Z")).map(|d| d.action),
            Ok(Action::Wait)
        );
        let in_time = decide(&late, &sched(&late), ts("2024-01-01T11:00:05Z")).map(|d| d.action);
        assert_eq!(
            in_time,
            Ok(Action::Create {
                scheduled: ts("2024-01-01T11:00:00Z"),
                replace: vec![]
            })
        );
        // Days without a run: more than 100 misses are reported.
        let stale = cronjob(
            json!({}),
            json!({"lastScheduleTime": "2024-01-01T10:01:00Z"}),
        );
        let d = decide(&stale, &sched(&stale), ts("2024-01-03T10:00:10Z")).expect("decide");
        assert!(d.too_many_missed);
        assert_eq!(
            d.action,
            Action::Create {
                scheduled: ts("2024-01-03T10:00:00Z"),
                replace: vec![]
            }
        );
    }

    #[test]
    fn starting_deadline_window() {
        // startingDeadlineSeconds: only activations within the window count.
        let cj = cronjob(
            json!({"startingDeadlineSeconds": 30}),
            json!({"lastScheduleTime": "2024-01-01T10:00:00Z"}),
        );
        let s = sched(&cj);
        // most_recent moves the window start to now-30s = 10:00:45, so 10:01 is found and is in time.
        assert_eq!(
            decide(&cj, &s, ts("2024-01-01T10:01:15Z")).map(|d| d.action),
            Ok(Action::Create {
                scheduled: ts("2024-01-01T10:01:00Z"),
                replace: vec![]
            })
        );
        assert_eq!(
            decide(&cj, &s, ts("2024-01-01T10:01:31Z")).map(|d| d.action),
            Ok(Action::Wait)
        );
    }

    #[test]
    fn children_and_history() {
        let mut cj = cronjob(
            json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0}),
            json!({"active": [active("tick-1", "u1"), active("tick-gone", "ugone")]}),
        );
        let jobs = vec![
            job(
                "tick-1",
                "u1",
                Some("Complete"),
                Some("2024-01-01T10:01:00Z"),
            ),
            job(
                "tick-0",
                "u0",
                Some("Complete"),
                Some("2024-01-01T10:00:00Z"),
            ),
            job("tick-f", "uf", Some("Failed"), Some("2024-01-01T09:00:00Z")),
            job("manual", "um", None, None),
        ];
        let (events, changed, unlisted) = reconcile_children(&mut cj, &jobs);
        assert!(changed);
        let reasons: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.reason, e.message.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "SawCompletedJob",
                    "Saw completed job: tick-1, status: Complete"
                ),
                (
                    "UnexpectedJob",
                    "Saw a job that the controller did not create or forgot: manual"
                ),
            ]
        );
        assert_eq!(
            unlisted
                .iter()
                .map(|r| r.name.clone().unwrap_or_default())
                .collect::<Vec<_>>(),
            ["tick-gone"]
        );
        // tick-0 was not active: it only moves lastSuccessfulTime.
        assert_eq!(
            cj.status
                .as_ref()
                .and_then(|s| s.last_successful_time.clone()),
            Some(Time(ts("2024-01-01T10:00:00Z")))
        );
        let (_, _, _) = reconcile_children(&mut cj, &jobs);
        assert_eq!(
            cj.status
                .as_ref()
                .and_then(|s| s.last_successful_time.clone()),
            Some(Time(ts("2024-01-01T10:01:00Z")))
        );
        let gone: Vec<String> = history_to_delete(&cj, &jobs)
            .iter()
            .map(|j| j.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(gone, ["tick-0", "tick-f"]);
        let unlimited = cronjob(json!({}), json!({}));
        assert!(history_to_delete(&unlimited, &jobs).is_empty());
    }

    #[test]
    fn jobs_from_the_template() {
        let cj = cronjob(json!({"timeZone": "America/New_York"}), json!({}));
        let j = job_from_template(&cj, ts("2024-01-01T15:00:00Z"));
        assert_eq!(j.metadata.name.as_deref(), Some("tick-28402020"));
        let ann = j.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get(SCHEDULED_TIMESTAMP_ANNOTATION).map(String::as_str),
            Some("2024-01-01T10:00:00-05:00")
        );
        assert_eq!(
            j.metadata
                .labels
                .clone()
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("tick")
        );
        let owner = &j.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "cj-uid", Some(true))
        );
        let utc = job_from_template(&cronjob(json!({}), json!({})), ts("2024-01-01T15:00:00Z"));
        let ann = utc.metadata.annotations.unwrap_or_default();
        assert_eq!(
            ann.get(SCHEDULED_TIMESTAMP_ANNOTATION).map(String::as_str),
            Some("2024-01-01T15:00:00Z")
        );
    }
}
