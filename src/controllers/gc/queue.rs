//! A work queue in client-go's shape: an item waits in the queue at most
//! once, is never handed to two workers at the same time (an item added
//! while it is being processed comes back after `done`), and an item that
//! keeps failing comes back after exponential back-off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// First retry delay of a failing item; doubles per failure.
const BASE_DELAY: Duration = Duration::from_millis(5);
/// Longest retry delay.
const MAX_DELAY: Duration = Duration::from_secs(300);

pub struct WorkQueue<T> {
    inner: Mutex<Inner<T>>,
    notify: Notify,
}

struct Inner<T> {
    queue: VecDeque<T>,
    /// Items waiting in `queue` or to be re-queued once processed.
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
}

impl<T: Hash + Eq + Clone + Send + Sync + 'static> WorkQueue<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(WorkQueue {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
        })
    }

    /// Queue `item` unless it is already waiting.
    pub fn add(&self, item: T) {
        let mut inner = self.inner.lock();
        if !inner.dirty.insert(item.clone()) {
            return;
        }
        if inner.processing.contains(&item) {
            // Re-queued by `done`.
            return;
        }
        inner.queue.push_back(item);
        drop(inner);
        self.notify.notify_one();
    }

    /// Queue `item` after `delay`.
    pub fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        if delay.is_zero() {
            self.add(item);
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.add(item);
        });
    }

    /// Queue `item` after its back-off: 5 ms doubling per failure up to 5 min.
    pub fn add_rate_limited(self: &Arc<Self>, item: T) {
        let failures = {
            let mut inner = self.inner.lock();
            let n = inner.failures.entry(item.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.add_after(item, backoff(failures));
    }

    /// Forget `item`'s failures (after a success).
    pub fn forget(&self, item: &T) {
        self.inner.lock().failures.remove(item);
    }

    /// Wait for the next item. Call `done` when finished with it.
    pub async fn get(&self) -> T {
        loop {
            {
                let mut inner = self.inner.lock();
                if let Some(item) = inner.queue.pop_front() {
                    inner.dirty.remove(&item);
                    inner.processing.insert(item.clone());
                    if !inner.queue.is_empty() {
                        // Wake another worker for the rest.
                        self.notify.notify_one();
                    }
                    return item;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Processing of `item` finished; if it was added meanwhile it goes back
    /// into the queue.
    pub fn done(&self, item: &T) {
        let mut inner = self.inner.lock();
        inner.processing.remove(item);
        if inner.dirty.contains(item) {
            inner.queue.push_back(item.clone());
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.inner.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The delay before the `failures`-th retry.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    BASE_DELAY.saturating_mul(1u32 << exp).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_item_is_queued_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, "a");
        assert_eq!(q.get().await, "b");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn an_item_added_while_processing_comes_back_after_done() {
        let q = WorkQueue::new();
        q.add("a");
        let a = q.get().await;
        q.add("a");
        // Not handed out again while still being processed.
        assert!(q.is_empty());
        q.done(&a);
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, "a");
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn get_waits_for_an_add() {
        let q: Arc<WorkQueue<u32>> = WorkQueue::new();
        let q2 = q.clone();
        let h = tokio::spawn(async move { q2.get().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.add(7);
        let got = tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .expect("woken")
            .expect("join");
        assert_eq!(got, 7);
    }

    #[tokio::test]
    async fn add_after_delays_the_item() {
        let q: Arc<WorkQueue<u32>> = WorkQueue::new();
        q.add_after(1, Duration::from_millis(30));
        assert!(q.is_empty());
        let got = tokio::time::timeout(Duration::from_secs(2), q.get())
            .await
            .expect("delivered");
        assert_eq!(got, 1);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(4), Duration::from_millis(40));
        assert_eq!(backoff(40), MAX_DELAY);
    }
}
