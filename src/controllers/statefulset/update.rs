//! One pass of the StatefulSet control loop (upstream's updateStatefulSet):
//! create missing pods in ordinal order (one at a time, each Running and
//! Ready before the next, under OrderedReady; all at once under Parallel),
//! delete pods beyond the replica count from the highest ordinal down, then
//! roll pods onto the update revision from the highest ordinal down to the
//! partition. API writes go through [`PodControl`] so the decisions can be
//! tested without a server.

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::history::SyncError;
use super::identity::{
    identity_matches, in_ordinal_range, new_versioned_pod, ordinal, pod_revision, replicas,
    start_ordinal, storage_matches,
};
use super::podstate::{
    is_created, is_failed, is_healthy, is_pending, is_running_and_available, is_running_and_ready,
    is_succeeded, is_terminating,
};

/// The writes the control loop makes (upstream's StatefulPodControl).
#[async_trait]
pub trait PodControl: Send + Sync {
    /// Create the pod's missing claims, then the pod.
    async fn create_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), SyncError>;
    /// Fix a pod's identity, storage and claim owners (set = update revision).
    async fn update_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), SyncError>;
    async fn delete_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), SyncError>;
    /// Whether the pod's claims are owned as the retention policy says.
    async fn claims_match_retention(&self, set: &StatefulSet, pod: &Pod)
    -> Result<bool, SyncError>;
    async fn update_claims_for_retention(
        &self,
        set: &StatefulSet,
        pod: &Pod,
    ) -> Result<(), SyncError>;
    /// A claim of the pod still belongs to an earlier pod of the same name.
    async fn pod_claim_is_stale(&self, set: &StatefulSet, pod: &Pod) -> Result<bool, SyncError>;
    async fn create_missing_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), SyncError>;
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn allows_burst(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

fn strategy_type(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// Replica counts of `pods` against the two revisions.
pub fn compute_status(
    status: &mut StatefulSetStatus,
    min_ready: i32,
    current: &str,
    update: &str,
    pods: &[&Pod],
    now: Timestamp,
) {
    let (mut replicas, mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0, 0);
    for pod in pods {
        if is_created(pod) {
            replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if is_running_and_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            let rev = pod_revision(pod);
            if rev == current {
                cur += 1;
            }
            if rev == update {
                upd += 1;
            }
        }
    }
    status.replicas = replicas;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(cur);
    status.updated_replicas = Some(upd);
}

/// maxUnavailable for a rolling update: an absolute number or a percentage
/// of the replicas rounded down, at least 1.
pub fn max_unavailable(v: Option<&IntOrString>, replicas: i32) -> i32 {
    let n = match v {
        None => 1,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct = s.trim_end_matches('%').parse::<i64>().unwrap_or(1);
            i32::try_from(pct * i64::from(replicas) / 100).unwrap_or(i32::MAX)
        }
    };
    n.max(1)
}

/// Outcome of one pass: the status to record and the first write that failed.
pub struct Outcome {
    pub status: StatefulSetStatus,
    pub error: Option<SyncError>,
}

/// Pods indexed by slot (`ordinal - start`) and the condemned (out of range), sorted high to low.
struct Slots {
    replicas: Vec<Pod>,
    condemned: Vec<Pod>,
}

fn slots(
    set: &StatefulSet,
    current_set: &StatefulSet,
    update_set: &StatefulSet,
    current: &str,
    update: &str,
    pods: &[Pod],
) -> Slots {
    let start = start_ordinal(set);
    let count = usize::try_from(replicas(set)).unwrap_or(0);
    let mut replicas_v: Vec<Option<Pod>> = vec![None; count];
    let mut condemned = Vec::new();
    for pod in pods {
        let ord = ordinal(pod);
        if in_ordinal_range(pod, set) {
            if let Some(slot) = usize::try_from(ord - start)
                .ok()
                .and_then(|i| replicas_v.get_mut(i))
            {
                *slot = Some(pod.clone());
            }
        } else if ord >= 0 {
            condemned.push(pod.clone());
        }
    }
    let replicas_v = replicas_v
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            p.unwrap_or_else(|| {
                let ord = start + i32::try_from(i).unwrap_or(i32::MAX);
                new_versioned_pod(current_set, update_set, current, update, ord)
            })
        })
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
    Slots {
        replicas: replicas_v,
        condemned,
    }
}

/// Run `f` over `n` items: in order, stopping at the first that says stop,
/// when `monotonic`; otherwise all of them in slow-start batches
/// (1, 2, 4, ...) that stop at the first batch with a failure.
async fn run_for_all<F, Fut>(n: usize, monotonic: bool, f: F) -> Result<bool, SyncError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<bool, SyncError>>,
{
    if monotonic {
        for i in 0..n {
            if f(i).await? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let mut pos = 0;
    let mut batch = 1;
    while pos < n {
        let end = (pos + batch).min(n);
        let results = futures::future::join_all((pos..end).map(&f)).await;
        if let Some(err) = results.into_iter().find_map(Result::err) {
            return Err(err);
        }
        pos = end;
        batch = (batch * 2).min(500);
    }
    Ok(false)
}

async fn process_replica(
    ctl: &dyn PodControl,
    set: &StatefulSet,
    update_set: &StatefulSet,
    monotonic: bool,
    pod: &Pod,
    now: Timestamp,
) -> Result<bool, SyncError> {
    // Finished pods are replaced: delete now, recreate on a later pass.
    if is_failed(pod) || is_succeeded(pod) {
        if !is_terminating(pod) {
            ctl.delete_pod(set, pod).await?;
        }
        return Ok(true);
    }
    if !is_created(pod) {
        if ctl.pod_claim_is_stale(set, pod).await? {
            return Ok(true);
        }
        ctl.create_pod(set, pod).await?;
        if monotonic {
            return Ok(true);
        }
        // Parallel: nothing more to check on a pod that does not exist yet.
        return Ok(false);
    }
    if is_pending(pod) {
        ctl.create_missing_claims(set, pod).await?;
    }
    if monotonic
        && (is_terminating(pod)
            || !is_running_and_ready(pod)
            || !is_running_and_available(pod, min_ready_seconds(set), now))
    {
        return Ok(true);
    }
    let retention_ok = ctl
        .claims_match_retention(update_set, pod)
        .await
        .unwrap_or(true);
    if identity_matches(set, pod) && storage_matches(set, pod) && retention_ok {
        return Ok(false);
    }
    ctl.update_pod(update_set, pod).await?;
    Ok(false)
}

async fn process_condemned(
    ctl: &dyn PodControl,
    set: &StatefulSet,
    first_unhealthy: Option<&str>,
    monotonic: bool,
    pod: &Pod,
    now: Timestamp,
) -> Result<bool, SyncError> {
    if is_terminating(pod) {
        return Ok(monotonic);
    }
    let is_first_unhealthy = first_unhealthy == pod.metadata.name.as_deref();
    if monotonic
        && !is_first_unhealthy
        && (!is_running_and_ready(pod)
            || !is_running_and_available(pod, min_ready_seconds(set), now))
    {
        return Ok(true);
    }
    ctl.delete_pod(set, pod).await?;
    Ok(true)
}

/// One pass over `pods` (the set's claimed pods). `current_set` and
/// `update_set` are `set` with the templates of the two revisions.
#[allow(clippy::too_many_arguments)]
pub async fn update_stateful_set(
    ctl: &dyn PodControl,
    set: &StatefulSet,
    current_set: &StatefulSet,
    update_set: &StatefulSet,
    current: &ControllerRevision,
    update: &ControllerRevision,
    collision_count: i32,
    pods: &[Pod],
    now: Timestamp,
) -> Outcome {
    let cur_name = current.metadata.name.clone().unwrap_or_default();
    let upd_name = update.metadata.name.clone().unwrap_or_default();
    let min_ready = min_ready_seconds(set);
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(cur_name.clone()),
        update_revision: Some(upd_name.clone()),
        collision_count: Some(collision_count),
        ..Default::default()
    };
    let all: Vec<&Pod> = pods.iter().collect();
    compute_status(&mut status, min_ready, &cur_name, &upd_name, &all, now);

    let Slots {
        replicas,
        condemned,
    } = slots(set, current_set, update_set, &cur_name, &upd_name, pods);
    let recount = |status: &mut StatefulSetStatus| {
        let both: Vec<&Pod> = replicas.iter().chain(condemned.iter()).collect();
        compute_status(status, min_ready, &cur_name, &upd_name, &both, now);
    };

    // The first unhealthy pod: lowest replica, else lowest condemned.
    let first_unhealthy = replicas
        .iter()
        .find(|p| !is_healthy(p))
        .or_else(|| condemned.iter().rev().find(|p| !is_healthy(p)))
        .and_then(|p| p.metadata.name.clone());

    if set.metadata.deletion_timestamp.is_some() {
        return Outcome {
            status,
            error: None,
        };
    }
    let monotonic = !allows_burst(set);

    let step = run_for_all(replicas.len(), monotonic, |i| {
        process_replica(ctl, set, update_set, monotonic, &replicas[i], now)
    })
    .await;
    match step {
        Ok(false) => {}
        Ok(true) => {
            recount(&mut status);
            return Outcome {
                status,
                error: None,
            };
        }
        Err(e) => {
            recount(&mut status);
            return Outcome {
                status,
                error: Some(e),
            };
        }
    }

    // Condemned pods' claims pass to the pod when whenScaled=Delete.
    let step = run_for_all(condemned.len(), monotonic, |i| {
        let pod = &condemned[i];
        async move {
            if !ctl.claims_match_retention(update_set, pod).await? {
                ctl.update_claims_for_retention(update_set, pod).await?;
            }
            Ok(false)
        }
    })
    .await;
    if let Err(e) = step {
        recount(&mut status);
        return Outcome {
            status,
            error: Some(e),
        };
    }

    let step = run_for_all(condemned.len(), monotonic, |i| {
        process_condemned(
            ctl,
            set,
            first_unhealthy.as_deref(),
            monotonic,
            &condemned[i],
            now,
        )
    })
    .await;
    match step {
        Ok(false) => {}
        Ok(true) => {
            recount(&mut status);
            return Outcome {
                status,
                error: None,
            };
        }
        Err(e) => {
            recount(&mut status);
            return Outcome {
                status,
                error: Some(e),
            };
        }
    }
    recount(&mut status);

    if strategy_type(set) == "OnDelete" {
        return Outcome {
            status,
            error: None,
        };
    }
    let ru = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let update_min = usize::try_from(ru.and_then(|r| r.partition).unwrap_or(0)).unwrap_or(0);
    let error = match ru.and_then(|r| r.max_unavailable.as_ref()) {
        // Without maxUnavailable: one pod at a time, waiting for health.
        None => roll_one(ctl, set, &replicas, update_min, &upd_name, &mut status).await,
        Some(mu) => {
            let max = max_unavailable(Some(mu), replicas.len().try_into().unwrap_or(i32::MAX));
            roll_many(ctl, set, &replicas, update_min, &upd_name, max, &mut status).await
        }
    };
    Outcome { status, error }
}

fn dec(v: &mut Option<i32>) {
    *v = Some(v.unwrap_or(0) - 1);
}

async fn roll_one(
    ctl: &dyn PodControl,
    set: &StatefulSet,
    replicas: &[Pod],
    update_min: usize,
    update: &str,
    status: &mut StatefulSetStatus,
) -> Option<SyncError> {
    for pod in replicas.iter().skip(update_min).rev() {
        if pod_revision(pod) != update && !is_terminating(pod) {
            dec(&mut status.current_replicas);
            return ctl.delete_pod(set, pod).await.err();
        }
        if !is_healthy(pod) {
            return None;
        }
    }
    None
}

async fn roll_many(
    ctl: &dyn PodControl,
    set: &StatefulSet,
    replicas: &[Pod],
    update_min: usize,
    update: &str,
    max_unavailable: i32,
    status: &mut StatefulSetStatus,
) -> Option<SyncError> {
    let unavailable = replicas.iter().filter(|p| !is_healthy(p)).count();
    let budget = usize::try_from(max_unavailable)
        .unwrap_or(0)
        .saturating_sub(unavailable);
    let targets: Vec<&Pod> = replicas
        .iter()
        .skip(update_min)
        .rev()
        .filter(|p| pod_revision(p) != update && !is_terminating(p))
        .take(budget)
        .collect();
    for pod in targets {
        if let Err(e) = ctl.delete_pod(set, pod).await {
            return Some(e);
        }
        dec(&mut status.current_replicas);
    }
    None
}

/// A rolling update is complete once every replica is updated and ready:
/// the update revision becomes the current one.
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let want = replicas(set);
    if strategy_type(set) == "RollingUpdate"
        && status.updated_replicas.unwrap_or(0) == want
        && status.ready_replicas.unwrap_or(0) == want
        && status.replicas == want
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// Whether `status` differs from what the set reports (worth a write).
pub fn status_changed(set: &StatefulSet, status: &StatefulSetStatus) -> bool {
    let old = set.status.clone().unwrap_or_default();
    let z = |v: Option<i32>| v.unwrap_or(0);
    status.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || status.replicas != old.replicas
        || z(status.current_replicas) != z(old.current_replicas)
        || z(status.ready_replicas) != z(old.ready_replicas)
        || z(status.updated_replicas) != z(old.updated_replicas)
        || z(status.available_replicas) != z(old.available_replicas)
        || status.current_revision != old.current_revision
        || status.update_revision != old.update_revision
        || z(status.collision_count) != z(old.collision_count)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use parking_lot::Mutex;

    use super::super::identity::testing::set;
    use super::super::identity::{name_of, new_pod};
    use super::super::podstate::testing::with_phase;
    use super::*;
    use crate::controllers::history::REVISION_HASH_LABEL;

    /// Records the writes.
    #[derive(Default)]
    struct Fake {
        log: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl PodControl for Fake {
        async fn create_pod(&self, _: &StatefulSet, pod: &Pod) -> Result<(), SyncError> {
            self.log
                .lock()
                .push(format!("create {} {}", name_of(pod), pod_revision(pod)));
            Ok(())
        }
        async fn update_pod(&self, _: &StatefulSet, pod: &Pod) -> Result<(), SyncError> {
            self.log.lock().push(format!("update {}", name_of(pod)));
            Ok(())
        }
        async fn delete_pod(&self, _: &StatefulSet, pod: &Pod) -> Result<(), SyncError> {
            self.log.lock().push(format!("delete {}", name_of(pod)));
            Ok(())
        }
        async fn claims_match_retention(
            &self,
            _: &StatefulSet,
            _: &Pod,
        ) -> Result<bool, SyncError> {
            Ok(true)
        }
        async fn update_claims_for_retention(
            &self,
            _: &StatefulSet,
            _: &Pod,
        ) -> Result<(), SyncError> {
            Ok(())
        }
        async fn pod_claim_is_stale(&self, _: &StatefulSet, _: &Pod) -> Result<bool, SyncError> {
            Ok(false)
        }
        async fn create_missing_claims(&self, _: &StatefulSet, _: &Pod) -> Result<(), SyncError> {
            Ok(())
        }
    }

    fn rev(name: &str) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: None,
            revision: 1,
        }
    }

    /// A pod of `s` at `revision`, Running+Ready or Pending.
    fn pod(s: &StatefulSet, ord: i32, revision: &str, ready: bool) -> Pod {
        let mut p = new_pod(s, ord);
        p.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(REVISION_HASH_LABEL.into(), revision.into());
        if ready {
            with_phase(p, "Running", true)
        } else {
            with_phase(p, "Pending", false)
        }
    }

    async fn pass(
        s: &StatefulSet,
        pods: &[Pod],
        cur: &str,
        upd: &str,
    ) -> (Vec<String>, StatefulSetStatus) {
        let fake = Fake::default();
        let out = update_stateful_set(
            &fake,
            s,
            s,
            s,
            &rev(cur),
            &rev(upd),
            0,
            pods,
            Timestamp::now(),
        )
        .await;
        assert!(out.error.is_none());
        let log = fake.log.lock().clone();
        (log, out.status)
    }

    fn set_partition(s: &mut StatefulSet, p: i32) {
        if let Some(ru) = s
            .spec
            .as_mut()
            .and_then(|sp| sp.update_strategy.as_mut())
            .and_then(|u| u.rolling_update.as_mut())
        {
            ru.partition = Some(p);
        }
    }

    #[tokio::test]
    async fn ordered_ready_creates_one_at_a_time() {
        let s = set("web", 3);
        let (log, st) = pass(&s, &[], "r1", "r1").await;
        assert_eq!(log, ["create web-0 r1"]);
        assert_eq!(st.replicas, 0);
        // web-0 exists but is not ready: nothing more.
        let (log, st) = pass(&s, &[pod(&s, 0, "r1", false)], "r1", "r1").await;
        assert!(log.is_empty(), "{log:?}");
        assert_eq!((st.replicas, st.ready_replicas), (1, Some(0)));
        let (log, st) = pass(&s, &[pod(&s, 0, "r1", true)], "r1", "r1").await;
        assert_eq!(log, ["create web-1 r1"]);
        assert_eq!(
            (st.replicas, st.ready_replicas, st.available_replicas),
            (1, Some(1), Some(1))
        );
    }

    #[tokio::test]
    async fn parallel_creates_all() {
        let mut s = set("web", 3);
        if let Some(sp) = s.spec.as_mut() {
            sp.pod_management_policy = Some("Parallel".into());
        }
        let (mut log, _) = pass(&s, &[], "r1", "r1").await;
        log.sort();
        assert_eq!(
            log,
            ["create web-0 r1", "create web-1 r1", "create web-2 r1"]
        );
    }

    #[tokio::test]
    async fn scale_down_goes_from_the_top_one_at_a_time() {
        let s = set("web", 1);
        let pods: Vec<Pod> = (0..3).map(|o| pod(&s, o, "r1", true)).collect();
        let (log, st) = pass(&s, &pods, "r1", "r1").await;
        assert_eq!(log, ["delete web-2"]);
        assert_eq!(st.replicas, 3);
        // An unhealthy condemned pod that is not the first unhealthy blocks.
        let pods = vec![
            pod(&s, 0, "r1", true),
            pod(&s, 1, "r1", false),
            pod(&s, 2, "r1", true),
        ];
        let (log, _) = pass(&s, &pods, "r1", "r1").await;
        assert_eq!(log, ["delete web-2"]);
        let pods = vec![
            pod(&s, 0, "r1", true),
            pod(&s, 1, "r1", true),
            pod(&s, 2, "r1", false),
        ];
        let (log, _) = pass(&s, &pods, "r1", "r1").await;
        assert_eq!(log, ["delete web-2"], "the first unhealthy pod may go");
        // A pod still terminating blocks the next deletion.
        let mut terminating = pod(&s, 2, "r1", true);
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        let pods = vec![pod(&s, 0, "r1", true), pod(&s, 1, "r1", true), terminating];
        let (log, _) = pass(&s, &pods, "r1", "r1").await;
        assert!(log.is_empty(), "{log:?}");
    }

    #[tokio::test]
    async fn rolling_update_goes_down_to_the_partition() {
        let mut s = set("web", 3);
        set_partition(&mut s, 1);
        let pods: Vec<Pod> = (0..3).map(|o| pod(&s, o, "r1", true)).collect();
        let (log, st) = pass(&s, &pods, "r1", "r2").await;
        assert_eq!(log, ["delete web-2"]);
        assert_eq!(
            (st.current_replicas, st.updated_replicas),
            (Some(2), Some(0))
        );
        // web-2 updated and ready: web-1 is next; web-0 is below the partition.
        let pods = vec![
            pod(&s, 0, "r1", true),
            pod(&s, 1, "r1", true),
            pod(&s, 2, "r2", true),
        ];
        let (log, st) = pass(&s, &pods, "r1", "r2").await;
        assert_eq!(log, ["delete web-1"]);
        assert_eq!(st.updated_replicas, Some(1));
        let pods = vec![
            pod(&s, 0, "r1", true),
            pod(&s, 1, "r2", true),
            pod(&s, 2, "r2", true),
        ];
        let (log, mut st) = pass(&s, &pods, "r1", "r2").await;
        assert!(log.is_empty(), "{log:?}");
        complete_rolling_update(&s, &mut st);
        assert_eq!(
            st.current_revision.as_deref(),
            Some("r1"),
            "partitioned: not complete"
        );
        // Missing pods below the partition come back at the current revision.
        let pods = vec![pod(&s, 1, "r2", true), pod(&s, 2, "r2", true)];
        let (log, _) = pass(&s, &pods, "r1", "r2").await;
        assert_eq!(log, ["create web-0 r1"]);
    }

    #[tokio::test]
    async fn rolling_update_waits_for_unhealthy_updated_pods() {
        let s = set("web", 3);
        let pods = vec![
            pod(&s, 0, "r1", true),
            pod(&s, 1, "r1", true),
            pod(&s, 2, "r2", false),
        ];
        let (log, _) = pass(&s, &pods, "r1", "r2").await;
        assert!(log.is_empty(), "{log:?}");
        let pods: Vec<Pod> = (0..3).map(|o| pod(&s, o, "r2", true)).collect();
        let (_, mut st) = pass(&s, &pods, "r1", "r2").await;
        complete_rolling_update(&s, &mut st);
        assert_eq!(st.current_revision.as_deref(), Some("r2"));
        assert_eq!(st.current_replicas, Some(3));
    }

    #[tokio::test]
    async fn max_unavailable_deletes_several_from_the_top() {
        let mut s = set("web", 4);
        if let Some(ru) = s
            .spec
            .as_mut()
            .and_then(|sp| sp.update_strategy.as_mut())
            .and_then(|u| u.rolling_update.as_mut())
        {
            ru.max_unavailable = Some(IntOrString::Int(2));
        }
        let pods: Vec<Pod> = (0..4).map(|o| pod(&s, o, "r1", true)).collect();
        let (log, _) = pass(&s, &pods, "r1", "r2").await;
        assert_eq!(log, ["delete web-3", "delete web-2"]);
        // One already unavailable: one more.
        let pods = vec![
            pod(&s, 0, "r1", true),
            pod(&s, 1, "r1", true),
            pod(&s, 2, "r1", true),
            pod(&s, 3, "r2", false),
        ];
        let (log, _) = pass(&s, &pods, "r1", "r2").await;
        assert!(
            log.is_empty(),
            "monotonic scale-up check waits for web-3: {log:?}"
        );
        assert_eq!(
            max_unavailable(Some(&IntOrString::String("50%".into())), 5),
            2
        );
        assert_eq!(
            max_unavailable(Some(&IntOrString::String("10%".into())), 5),
            1
        );
        assert_eq!(max_unavailable(None, 5), 1);
    }

    #[tokio::test]
    async fn on_delete_never_deletes_for_updates_and_failed_pods_are_replaced() {
        let mut s = set("web", 2);
        if let Some(u) = s.spec.as_mut().and_then(|sp| sp.update_strategy.as_mut()) {
            u.type_ = Some("OnDelete".into());
            u.rolling_update = None;
        }
        let pods: Vec<Pod> = (0..2).map(|o| pod(&s, o, "r1", true)).collect();
        let (log, _) = pass(&s, &pods, "r1", "r2").await;
        assert!(log.is_empty(), "{log:?}");
        let pods = vec![
            with_phase(pod(&s, 0, "r1", true), "Failed", false),
            pod(&s, 1, "r1", true),
        ];
        let (log, _) = pass(&s, &pods, "r1", "r2").await;
        assert_eq!(log, ["delete web-0"]);
    }

    #[test]
    fn status_change_detection() {
        let mut s = set("web", 1);
        let st = StatefulSetStatus {
            replicas: 1,
            observed_generation: Some(1),
            ..Default::default()
        };
        assert!(status_changed(&s, &st));
        s.status = Some(st.clone());
        assert!(!status_changed(&s, &st));
    }
}
