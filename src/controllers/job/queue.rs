//! A delaying work queue as client-go's: keys are deduplicated (the earliest
//! requested time wins), a key is never handed to two workers at once (a key
//! added while it is being processed comes back once it is done), and
//! failures are retried with per-key exponential back-off.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

pub struct WorkQueue<K> {
    inner: Mutex<Inner<K>>,
    notify: Notify,
    base_retry: Duration,
    max_retry: Duration,
}

struct Inner<K> {
    /// key -> when it is due; mirrored in `order` for the earliest lookup.
    due: HashMap<K, Instant>,
    order: BTreeSet<(Instant, K)>,
    processing: HashSet<K>,
    /// Keys added while processing, with their earliest due time.
    dirty: HashMap<K, Instant>,
    failures: HashMap<K, u32>,
}

impl<K: Clone + Eq + Hash + Ord> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    /// A queue whose failed keys are retried after `base_retry`, doubling up to `max_retry`.
    pub fn new(base_retry: Duration, max_retry: Duration) -> Self {
        WorkQueue {
            inner: Mutex::new(Inner {
                due: HashMap::new(),
                order: BTreeSet::new(),
                processing: HashSet::new(),
                dirty: HashMap::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
            base_retry,
            max_retry,
        }
    }

    pub fn add(&self, key: K) {
        self.add_after(key, Duration::ZERO);
    }

    /// Make `key` due after `delay` (or earlier, if it already is).
    pub fn add_after(&self, key: K, delay: Duration) {
        let at = Instant::now() + delay;
        let mut inner = self.inner.lock();
        if inner.processing.contains(&key) {
            let e = inner.dirty.entry(key).or_insert(at);
            *e = (*e).min(at);
            return;
        }
        inner.schedule(key, at);
        drop(inner);
        self.notify.notify_waiters();
    }

    /// Wait for the next due key and mark it as being processed.
    pub async fn next(&self) -> K {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let mut inner = self.inner.lock();
                match inner.order.first().cloned() {
                    Some((at, key)) if at <= Instant::now() => {
                        inner.order.remove(&(at, key.clone()));
                        inner.due.remove(&key);
                        inner.processing.insert(key.clone());
                        return key;
                    }
                    Some((at, _)) => Some(at),
                    None => None,
                }
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Processing of `key` finished; a re-add that came meanwhile is queued.
    pub fn done(&self, key: &K) {
        let mut inner = self.inner.lock();
        inner.processing.remove(key);
        if let Some(at) = inner.dirty.remove(key) {
            inner.schedule(key.clone(), at);
            drop(inner);
            self.notify.notify_waiters();
        }
    }

    /// Retry `key` after its back-off; returns the delay used.
    pub fn add_rate_limited(&self, key: K) -> Duration {
        let n = {
            let mut inner = self.inner.lock();
            let n = inner.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let delay = self
            .base_retry
            .saturating_mul(1u32 << (n - 1).min(20))
            .min(self.max_retry);
        self.add_after(key, delay);
        delay
    }

    /// Reset the back-off of `key` (after a success).
    pub fn forget(&self, key: &K) {
        self.inner.lock().failures.remove(key);
    }

    /// How many keys are waiting (due or not).
    pub fn len(&self) -> usize {
        self.inner.lock().due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Clone + Eq + Hash + Ord> Inner<K> {
    fn schedule(&mut self, key: K, at: Instant) {
        match self.due.get(&key).copied() {
            Some(cur) if cur <= at => {}
            Some(cur) => {
                self.order.remove(&(cur, key.clone()));
                self.order.insert((at, key.clone()));
                self.due.insert(key, at);
            }
            None => {
                self.order.insert((at, key.clone()));
                self.due.insert(key, at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_orders_and_holds_keys_in_flight() {
        let ms = Duration::from_millis;
        let q: WorkQueue<String> = WorkQueue::default();
        let t0 = Instant::now();
        q.add_after("b".into(), ms(500));
        q.add_after("a".into(), ms(200));
        q.add_after("b".into(), ms(100));
        q.add_after("b".into(), ms(900));
        assert_eq!(q.len(), 2);
        // "b" comes first, before "a" (200 ms): its earliest time won.
        assert_eq!(q.next().await, "b");
        assert!(t0.elapsed() >= ms(100), "{:?}", t0.elapsed());
        // Added while in flight: deferred until done.
        q.add("b".into());
        assert_eq!(q.next().await, "a");
        q.done(&"a".into());
        q.done(&"b".into());
        assert_eq!(q.next().await, "b");
        q.done(&"b".into());
        assert!(q.is_empty());
        assert_eq!(q.add_rate_limited("c".into()), Duration::from_secs(1));
        assert_eq!(q.add_rate_limited("c".into()), Duration::from_secs(2));
        q.forget(&"c".into());
        assert_eq!(q.add_rate_limited("c".into()), Duration::from_secs(1));
    }
}
