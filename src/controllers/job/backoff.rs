//! Exponential back-off for re-creating pods after failures, as upstream's
//! job controller computes it: base delay doubled per consecutive failure
//! since the last success, capped, counted from the last failure.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Upstream's defaults: 10 s doubling up to 10 minutes.
pub const DEFAULT_BASE: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX: Duration = Duration::from_secs(600);

/// The back-off base, overridable (for tests) with RK3S_JOB_BACKOFF_BASE_MS.
pub fn base_from_env() -> Duration {
    std::env::var("RK3S_JOB_BACKOFF_BASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(DEFAULT_BASE, Duration::from_millis)
}

/// Consecutive failures since the last success, and when the last one was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub failures_after_last_success: u32,
    pub last_failure_time: Option<Timestamp>,
}

impl Record {
    /// The record after observing newly finished pods.
    pub fn observe(&self, new_succeeded: &[&Pod], new_failed: &[&Pod]) -> Record {
        let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finished_time(p)).collect();
        failed.sort();
        let last_success = new_succeeded.iter().map(|p| finished_time(p)).max();
        match last_success {
            None => match failed.last() {
                None => self.clone(),
                Some(last) => Record {
                    failures_after_last_success: self.failures_after_last_success
                        + failed.len() as u32,
                    last_failure_time: Some(*last),
                },
            },
            Some(success) => {
                let after: Vec<&Timestamp> = failed.iter().filter(|t| **t > success).collect();
                Record {
                    failures_after_last_success: after.len() as u32,
                    last_failure_time: after.last().map(|t| **t),
                }
            }
        }
    }

    /// How long to wait before creating pods again.
    pub fn remaining(&self, now: Timestamp, base: Duration, max: Duration) -> Duration {
        remaining_for(
            self.failures_after_last_success,
            self.last_failure_time,
            now,
            base,
            max,
        )
    }
}

/// Delay left for `failures` consecutive failures, the last at `last`.
pub fn remaining_for(
    failures: u32,
    last: Option<Timestamp>,
    now: Timestamp,
    base: Duration,
    max: Duration,
) -> Duration {
    let Some(last) = last else {
        return Duration::ZERO;
    };
    if failures == 0 {
        return Duration::ZERO;
    }
    let mut delay = base;
    for _ in 1..failures {
        delay = delay.saturating_mul(2);
        if delay >= max {
            delay = max;
            break;
        }
    }
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    delay.saturating_sub(elapsed)
}

/// When a pod finished: its containers' latest finish time, else the
/// time it turned not-Ready, else its deletion time less the grace period,
/// else its creation time.
pub fn finished_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let sidecars: Vec<&str> = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map(|ics| {
            ics.iter()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"))
                .map(|c| c.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    let containers = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let inits: Vec<&ContainerStatus> = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .collect();
    let mut latest: Option<Timestamp> = None;
    let mut all_done = true;
    for cs in containers.iter().chain(inits) {
        match cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
        {
            Some(t) => latest = Some(latest.map_or(t.0, |l| l.max(t.0))),
            None => all_done = false,
        }
    }
    if all_done && let Some(t) = latest {
        return t;
    }
    let not_ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")
        })
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(t) = not_ready {
        return t.0;
    }
    if let Some(del) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return del
            .0
            .checked_sub(jiff::SignedDuration::from_secs(grace))
            .unwrap_or(del.0);
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_finished(at: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "status": {"containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "finishedAt": at}}}]}
        }))
        .expect("pod")
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn delays_double_and_cap() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        let last = ts("2024-01-01T00:00:00Z");
        assert_eq!(
            remaining_for(0, Some(last), last, base, max),
            Duration::ZERO
        );
        assert_eq!(
            remaining_for(1, Some(last), last, base, max),
            Duration::from_secs(10)
        );
        assert_eq!(
            remaining_for(3, Some(last), last, base, max),
            Duration::from_secs(40)
        );
        assert_eq!(
            remaining_for(3, Some(last), ts("2024-01-01T00:00:15Z"), base, max),
            Duration::from_secs(25)
        );
        assert_eq!(remaining_for(30, Some(last), last, base, max), max);
        assert_eq!(
            remaining_for(2, Some(last), ts("2024-01-01T01:00:00Z"), base, max),
            Duration::ZERO
        );
    }

    #[test]
    fn records_count_failures_after_the_last_success() {
        let f1 = pod_finished("2024-01-01T00:00:10Z");
        let f2 = pod_finished("2024-01-01T00:00:30Z");
        let s = pod_finished("2024-01-01T00:00:20Z");
        let r = Record::default().observe(&[], &[&f2, &f1]);
        assert_eq!(r.failures_after_last_success, 2);
        assert_eq!(r.last_failure_time, Some(ts("2024-01-01T00:00:30Z")));
        let r = r.observe(&[&s], &[&f1, &f2]);
        assert_eq!(
            r,
            Record {
                failures_after_last_success: 1,
                last_failure_time: Some(ts("2024-01-01T00:00:30Z"))
            }
        );
        assert_eq!(r.observe(&[&s], &[]), Record::default());
        assert_eq!(r.observe(&[], &[]), r);
        // No container finish times: fall back to the creation time.
        let bare: Pod = serde_json::from_value(
            json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:05Z"}}),
        )
        .expect("pod");
        assert_eq!(finished_time(&bare), ts("2024-01-01T00:00:05Z"));
    }
}
