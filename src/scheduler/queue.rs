//! The scheduling queue (upstream's PriorityQueue): an active queue ordered
//! by priority then arrival, a back-off queue (1 s doubling to 10 s per
//! failed attempt) and a parking lot of unschedulable pods that cluster
//! events (a node added or changed, a pod removed) move back.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::cache::{PodKey, pod_key};

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active { priority: i32, seq: u64 },
    Backoff { ready: Instant, seq: u64 },
    Unschedulable,
}

/// A pending pod in the queue.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub pod: Arc<Pod>,
    /// Failed scheduling attempts so far.
    pub attempts: u32,
    pub last_failure: Option<Instant>,
    /// A hash of what scheduling depends on (spec, labels), to tell real
    /// updates from status-only ones.
    pub fingerprint: u64,
    place: Place,
}

impl QueuedPod {
    fn backoff_ready(&self) -> Option<Instant> {
        let at = self.last_failure?;
        Some(at + backoff_for(self.attempts))
    }
}

/// The back-off after `attempts` failures: 1 s, 2 s, 4 s, 8 s, then 10 s.
pub fn backoff_for(attempts: u32) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    let shift = (attempts - 1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

/// What scheduling depends on in a pod.
pub fn fingerprint(pod: &Pod) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&pod.spec)
        .unwrap_or_default()
        .hash(&mut h);
    pod.metadata.labels.hash(&mut h);
    pod.metadata.uid.hash(&mut h);
    pod.metadata.deletion_timestamp.is_some().hash(&mut h);
    h.finish()
}

/// A popped pod, with the bookkeeping to requeue it.
#[derive(Clone, Debug)]
pub struct Popped {
    pub pod: Arc<Pod>,
    pub attempts: u32,
    /// The move counter when it was popped (see `Queue::requeue_failed`).
    pub move_seq: u64,
}

#[derive(Default)]
pub struct Queue {
    pods: HashMap<PodKey, QueuedPod>,
    active: BTreeSet<(std::cmp::Reverse<i32>, u64, PodKey)>,
    backoff: BTreeSet<(Instant, u64, PodKey)>,
    /// Pods being scheduled or bound right now, with the latest update seen
    /// for them meanwhile (None: no update).
    in_flight: HashMap<PodKey, Option<Arc<Pod>>>,
    /// In-flight pods deleted or bound elsewhere meanwhile.
    gone: HashSet<PodKey>,
    seq: u64,
    /// Bumped by every cluster event that may make pods schedulable.
    move_seq: u64,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn unplace(&mut self, key: &str, place: Place) {
        match place {
            Place::Active { priority, seq } => {
                self.active
                    .remove(&(std::cmp::Reverse(priority), seq, key.to_string()));
            }
            Place::Backoff { ready, seq } => {
                self.backoff.remove(&(ready, seq, key.to_string()));
            }
            Place::Unschedulable => {}
        }
    }

    fn place(&mut self, key: &str, place: Place) {
        match place {
            Place::Active { priority, seq } => {
                self.active
                    .insert((std::cmp::Reverse(priority), seq, key.to_string()));
            }
            Place::Backoff { ready, seq } => {
                self.backoff.insert((ready, seq, key.to_string()));
            }
            Place::Unschedulable => {}
        }
        if let Some(q) = self.pods.get_mut(key) {
            q.place = place;
        }
    }

    /// Move a queued pod to active, or to back-off if its back-off has not expired.
    fn activate_or_backoff(&mut self, key: &str, now: Instant) {
        let Some(q) = self.pods.get(key) else { return };
        let old = q.place;
        let priority = priority_of(&q.pod);
        let ready = q.backoff_ready().filter(|r| *r > now);
        self.unplace(key, old);
        let seq = self.next_seq();
        let place = match ready {
            Some(ready) => Place::Backoff { ready, seq },
            None => Place::Active { priority, seq },
        };
        self.place(key, place);
    }

    /// A pending pod was added or updated (from the watch).
    pub fn add_or_update(&mut self, pod: Pod, now: Instant) {
        let key = pod_key(&pod);
        let fp = fingerprint(&pod);
        let pod = Arc::new(pod);
        if let Some(slot) = self.in_flight.get_mut(&key) {
            *slot = Some(pod);
            return;
        }
        match self.pods.get_mut(&key) {
            Some(q) => {
                let changed = q.fingerprint != fp;
                q.pod = pod;
                q.fingerprint = fp;
                // A real update may make an unschedulable pod schedulable.
                if changed && q.place == Place::Unschedulable {
                    self.activate_or_backoff(&key, now);
                }
            }
            None => {
                let priority = priority_of(&pod);
                let seq = self.next_seq();
                let q = QueuedPod {
                    pod,
                    attempts: 0,
                    last_failure: None,
                    fingerprint: fp,
                    place: Place::Unschedulable,
                };
                self.pods.insert(key.clone(), q);
                self.place(&key, Place::Active { priority, seq });
            }
        }
    }

    /// A pod left the pending set (deleted, bound, terminal).
    pub fn remove(&mut self, key: &str) {
        if self.in_flight.contains_key(key) {
            self.gone.insert(key.to_string());
        }
        if let Some(q) = self.pods.remove(key) {
            self.unplace(key, q.place);
        }
    }

    /// Move back-off pods whose time has come to the active queue.
    pub fn flush_backoff(&mut self, now: Instant) {
        while let Some((ready, _, key)) = self.backoff.first().cloned() {
            if ready > now {
                break;
            }
            self.activate_or_backoff(&key, now);
        }
    }

    /// When the next back-off pod becomes ready.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.first().map(|(r, _, _)| *r)
    }

    /// A cluster event that may help unschedulable pods: move them all back.
    pub fn move_all_unschedulable(&mut self, now: Instant) {
        self.move_seq += 1;
        let keys: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(_, q)| q.place == Place::Unschedulable)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.activate_or_backoff(&k, now);
        }
    }

    /// Unschedulable pods that have waited at least `age` since their last
    /// attempt go back to the active queue (upstream's periodic flush).
    pub fn flush_unschedulable_older_than(&mut self, age: Duration, now: Instant) {
        let keys: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(_, q)| {
                q.place == Place::Unschedulable && q.last_failure.is_none_or(|t| now - t >= age)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.activate_or_backoff(&k, now);
        }
    }

    /// Take the highest-priority active pod.
    pub fn pop(&mut self) -> Option<Popped> {
        let (_, _, key) = self.active.pop_first()?;
        let q = self.pods.remove(&key)?;
        self.in_flight.insert(key, None);
        Some(Popped {
            pod: q.pod,
            attempts: q.attempts,
            move_seq: self.move_seq,
        })
    }

    /// Scheduling (or binding) of a popped pod ended well: forget it.
    pub fn done(&mut self, key: &str) {
        self.in_flight.remove(key);
        self.gone.remove(key);
    }

    /// Scheduling failed: park the pod as unschedulable, or in back-off if a
    /// cluster event happened while it was being scheduled (it may fit now)
    /// or `retry` says the failure was transient (an API error).
    pub fn requeue_failed(&mut self, popped: Popped, retry: bool, now: Instant) {
        let key = pod_key(&popped.pod);
        let latest = self.in_flight.remove(&key).flatten();
        if self.gone.remove(&key) {
            return;
        }
        let pod = latest.unwrap_or(popped.pod);
        let attempts = popped.attempts + 1;
        let q = QueuedPod {
            fingerprint: fingerprint(&pod),
            pod,
            attempts,
            last_failure: Some(now),
            place: Place::Unschedulable,
        };
        let moved = self.move_seq != popped.move_seq;
        self.pods.insert(key.clone(), q);
        if moved || retry {
            let ready = now + backoff_for(attempts);
            let seq = self.next_seq();
            self.place(&key, Place::Backoff { ready, seq });
        }
    }

    pub fn is_in_flight(&self, key: &str) -> bool {
        self.in_flight.contains_key(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// The pending pods parked as unschedulable (for tests and metrics).
    pub fn unschedulable_len(&self) -> usize {
        self.pods
            .values()
            .filter(|q| q.place == Place::Unschedulable)
            .count()
    }
}

pub fn priority_of(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": name},
            "spec": {"priority": priority, "containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let secs: Vec<u64> = (0..7).map(|a| backoff_for(a).as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn pops_by_priority_then_arrival() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(pod("low", 0), now);
        q.add_or_update(pod("high", 100), now);
        q.add_or_update(pod("low2", 0), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|p| p.pod.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(order, ["high", "low", "low2"]);
    }

    #[test]
    fn failures_park_until_an_event_then_back_off() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(pod("a", 0), t0);
        let p = q.pop().unwrap();
        q.requeue_failed(p, false, t0);
        assert_eq!(q.unschedulable_len(), 1);
        assert!(
            q.pop().is_none(),
            "parked pods are not retried by themselves"
        );

        // A status-only update (same fingerprint) does not move it.
        q.add_or_update(pod("a", 0), t0);
        assert!(q.pop().is_none());

        // A node event moves it, into back-off first (1 s after the failure).
        q.move_all_unschedulable(t0 + Duration::from_millis(100));
        assert!(q.pop().is_none());
        assert_eq!(q.next_backoff(), Some(t0 + Duration::from_secs(1)));
        q.flush_backoff(t0 + Duration::from_secs(1));
        let p = q.pop().expect("active after back-off");
        assert_eq!(p.attempts, 1);

        // An event while it is in flight sends it to back-off, not the lot.
        q.move_all_unschedulable(t0 + Duration::from_secs(2));
        q.requeue_failed(p, false, t0 + Duration::from_secs(2));
        assert_eq!(q.unschedulable_len(), 0);
        assert_eq!(q.next_backoff(), Some(t0 + Duration::from_secs(4)));
    }

    #[test]
    fn deleted_in_flight_pods_are_not_requeued() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(pod("a", 0), now);
        let p = q.pop().unwrap();
        q.remove("d/a");
        q.requeue_failed(p, true, now);
        assert!(q.is_empty());
        // Updates to an in-flight pod are kept for its requeue.
        q.add_or_update(pod("b", 0), now);
        let p = q.pop().unwrap();
        let mut newer = pod("b", 0);
        newer.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        q.add_or_update(newer, now);
        assert!(q.is_empty(), "not queued twice while in flight");
        q.requeue_failed(p, true, now);
        q.flush_backoff(now + Duration::from_secs(1));
        let p = q.pop().unwrap();
        assert!(
            p.pod.metadata.labels.is_some(),
            "the newest copy is requeued"
        );
    }
}
