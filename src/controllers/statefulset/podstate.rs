//! What workload controllers ask of a pod's state (upstream's podutil and
//! the StatefulSet helpers): created, running and ready, available for
//! minReadySeconds, terminating, finished. Shared with the DaemonSet
//! controller.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the API server has the pod (it has a phase; a pod we only built
/// locally has none).
pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

pub fn is_pending(pod: &Pod) -> bool {
    phase(pod) == "Pending"
}

pub fn is_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}

pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Condition Ready=True.
pub fn is_ready(pod: &Pod) -> bool {
    super::super::podcontrol::is_ready(pod)
}

/// Phase Running and Ready.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// Running, Ready and not being deleted.
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// Ready for at least `min_ready_seconds` (upstream's IsPodAvailable).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    since.is_some_and(|t| t + SignedDuration::from_secs(i64::from(min_ready_seconds)) < now)
}

/// Running, Ready and available.
pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    phase(pod) == "Running" && is_available(pod, min_ready_seconds, now)
}

/// How long until a ready pod becomes available (None: not ready, or already).
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    if !is_ready(pod) || is_available(pod, min_ready_seconds, now) {
        return None;
    }
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)?;
    let left =
        (since + SignedDuration::from_secs(i64::from(min_ready_seconds))).duration_since(now);
    std::time::Duration::try_from(left).ok()
}

#[cfg(test)]
pub mod testing {
    //! Pods in given states, for the controllers' unit tests.
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    pub fn with_phase(mut pod: Pod, phase: &str, ready: bool) -> Pod {
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(
                    Timestamp::now() - SignedDuration::from_secs(3600),
                )),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }
}

#[cfg(test)]
mod tests {
    use super::testing::with_phase;
    use super::*;

    #[test]
    fn states() {
        let p = Pod::default();
        assert!(!is_created(&p));
        let p = with_phase(Pod::default(), "Pending", false);
        assert!(is_created(&p) && is_pending(&p) && !is_running_and_ready(&p));
        let p = with_phase(Pod::default(), "Running", true);
        assert!(is_healthy(&p));
        let now = Timestamp::now();
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 60, now), "ready an hour ago");
        assert!(!is_available(&p, 7200, now), "not ready for two hours yet");
        let left = until_available(&p, 7200, now).expect("waiting");
        assert!(left.as_secs() > 3500 && left.as_secs() <= 3600, "{left:?}");
        let mut t = p.clone();
        t.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        assert!(is_terminating(&t) && !is_healthy(&t));
    }
}
