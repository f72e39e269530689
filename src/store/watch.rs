//! In-process watch fan-out with a bounded window of recent events.
//!
//! The SQLite writer publishes every committed batch here, in revision order,
//! while it holds the index write lock; nothing polls the database. The hub
//! keeps the most recent events (bounded by count, bytes and age) so that a
//! watch can resume from a resourceVersion still in the window, and so that
//! reads at a recent revision can be answered from memory by rolling the
//! current state back. Resuming from before the window is `Compacted`
//! (410 Expired upstream).
//!
//! Each watcher has a bounded channel; a watcher that cannot keep up is
//! dropped (its stream ends and the client re-lists) instead of making the
//! writer wait.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Event, EventStream, KeyValue, Revision, StoreError, StoreResult};

/// Bounds of the in-memory event window and of each watcher's buffer.
#[derive(Clone, Debug)]
pub struct WindowOptions {
    /// Most events kept for resuming watches.
    pub max_events: usize,
    /// Most value bytes (new and previous values) kept in the window.
    pub max_bytes: usize,
    /// Events older than this are dropped from the window.
    pub max_age: Duration,
    /// Events buffered per watcher before it is considered too slow and ended.
    pub channel_capacity: usize,
}

impl Default for WindowOptions {
    fn default() -> Self {
        WindowOptions {
            max_events: 10_000,
            max_bytes: 32 << 20,
            max_age: Duration::from_secs(15 * 60),
            channel_capacity: 4096,
        }
    }
}

struct Subscriber {
    prefix: String,
    /// Only events with a revision above this are sent (guards against an
    /// event being both replayed and delivered live).
    after: Revision,
    tx: mpsc::Sender<Event>,
}

struct Windowed {
    at: Instant,
    bytes: usize,
    event: Event,
}

struct HubState {
    window: VecDeque<Windowed>,
    window_bytes: usize,
    /// Every event with a revision above `floor` is in the window.
    floor: Revision,
    subscribers: Vec<Subscriber>,
    closed: bool,
}

/// The fan-out point between the committer and the watchers.
pub struct WatchHub {
    opts: WindowOptions,
    state: Mutex<HubState>,
}

fn event_bytes(e: &Event) -> usize {
    e.kv.key.len() + e.kv.value.len() + e.prev.as_ref().map_or(0, |p| p.value.len())
}

impl WatchHub {
    /// A hub whose window starts after `floor`, pre-filled with `recent`
    /// (events with revisions above `floor`, in order).
    pub fn new(opts: WindowOptions, floor: Revision, recent: Vec<Event>) -> Self {
        let hub = WatchHub {
            opts,
            state: Mutex::new(HubState {
                window: VecDeque::new(),
                window_bytes: 0,
                floor,
                subscribers: Vec::new(),
                closed: false,
            }),
        };
        {
            let mut st = hub.state.lock();
            let now = Instant::now();
            for event in recent {
                let bytes = event_bytes(&event);
                st.window_bytes += bytes;
                st.window.push_back(Windowed {
                    at: now,
                    bytes,
                    event,
                });
            }
            hub.evict(&mut st, now);
        }
        hub
    }

    /// Fan out committed events (in revision order) and remember them.
    pub fn publish(&self, events: &[Event]) {
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        let now = Instant::now();
        for event in events {
            let rev = event.revision();
            st.subscribers.retain(|s| {
                if rev <= s.after || !event.kv.key.starts_with(&s.prefix) {
                    return true;
                }
                match s.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // Info, not debug: the client re-lists, which costs memory
                        // and CPU at scale, so operators should see it.
                        tracing::info!(prefix = %s.prefix, "watcher fell behind; ending its stream");
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            let bytes = event_bytes(event);
            st.window_bytes += bytes;
            st.window.push_back(Windowed {
                at: now,
                bytes,
                event: event.clone(),
            });
        }
        self.evict(&mut st, now);
    }

    fn evict(&self, st: &mut HubState, now: Instant) {
        while let Some(front) = st.window.front() {
            let too_many = st.window.len() > self.opts.max_events;
            let too_big = st.window_bytes > self.opts.max_bytes;
            let too_old = now.saturating_duration_since(front.at) > self.opts.max_age;
            if !(too_many || too_big || too_old) {
                break;
            }
            if let Some(old) = st.window.pop_front() {
                st.window_bytes -= old.bytes;
                st.floor = st.floor.max(old.event.revision());
            }
        }
    }

    /// Start a watch on `prefix` for events after `after` (already resolved:
    /// never 0 here). Replays the window, then streams live events; both are
    /// taken under one lock so nothing is lost or sent twice.
    pub fn subscribe(&self, prefix: &str, after: Revision) -> StoreResult<EventStream> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(StoreError::Closed);
        }
        self.evict(&mut st, Instant::now());
        if after < st.floor {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: st.floor,
            });
        }
        let replay: Vec<Event> = st
            .window
            .iter()
            .map(|w| &w.event)
            .filter(|e| e.revision() > after && e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(self.opts.channel_capacity.max(1));
        st.subscribers.push(Subscriber {
            prefix: prefix.to_string(),
            after,
            tx,
        });
        drop(st);
        let live = ReceiverStream::new(rx).map(Ok);
        Ok(Box::pin(
            futures::stream::iter(replay.into_iter().map(Ok)).chain(live),
        ))
    }

    /// The revision every resumable watch must start after.
    pub fn floor(&self) -> Revision {
        self.state.lock().floor
    }

    /// History at or below `revision` is gone: forget it here too.
    pub fn compact(&self, revision: Revision) {
        let mut st = self.state.lock();
        while st
            .window
            .front()
            .is_some_and(|w| w.event.revision() <= revision)
        {
            if let Some(old) = st.window.pop_front() {
                st.window_bytes -= old.bytes;
            }
        }
        st.floor = st.floor.max(revision);
    }

    /// The state at revision `at` of every key matching `matches` that changed
    /// after `at` (None = absent at `at`), or None if the window does not
    /// reach back to `at`. Keys not in the map are unchanged since `at`.
    /// The caller holds the index read lock so the window and the index agree.
    pub fn rollback(
        &self,
        at: Revision,
        matches: impl Fn(&str) -> bool,
    ) -> Option<BTreeMap<String, Option<KeyValue>>> {
        let st = self.state.lock();
        if at < st.floor {
            return None;
        }
        let mut state_at = BTreeMap::new();
        // Newest first, so the last insert for a key is from its earliest
        // change after `at`, whose `prev` is the value at `at`.
        for w in st.window.iter().rev() {
            let e = &w.event;
            if e.revision() <= at {
                break;
            }
            if !matches(&e.kv.key) {
                continue;
            }
            let before = match (&e.kind, &e.prev) {
                (super::EventKind::Created, _) => None,
                // A change without its previous value (history loaded from a
                // partly compacted database): cannot roll back from memory.
                (_, None) => return None,
                (_, Some(p)) => Some(p.clone()),
            };
            state_at.insert(e.kv.key.clone(), before);
        }
        Some(state_at)
    }

    /// Number of live watchers.
    pub fn watchers(&self) -> usize {
        let mut st = self.state.lock();
        st.subscribers.retain(|s| !s.tx.is_closed());
        st.subscribers.len()
    }

    /// End every watch; later subscriptions fail with Closed.
    pub fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.subscribers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventKind;
    use bytes::Bytes;

    fn kv(key: &str, create: Revision, rev: Revision, v: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            create_revision: create,
            mod_revision: rev,
            value: Bytes::from(v.to_string()),
        }
    }

    fn created(key: &str, rev: Revision) -> Event {
        Event {
            kind: EventKind::Created,
            kv: kv(key, rev, rev, "v"),
            prev: None,
        }
    }

    fn updated(key: &str, create: Revision, prev: Revision, rev: Revision) -> Event {
        Event {
            kind: EventKind::Updated,
            kv: kv(key, create, rev, &format!("v{rev}")),
            prev: Some(kv(key, create, prev, &format!("v{prev}"))),
        }
    }

    #[tokio::test]
    async fn replay_then_live_without_gap_or_duplicate() {
        let hub = WatchHub::new(WindowOptions::default(), 0, vec![]);
        hub.publish(&[created("/a/1", 1), created("/b/1", 2), created("/a/2", 3)]);
        let mut s = hub.subscribe("/a/", 1).unwrap();
        // Published after subscribing, including a revision not above `after`.
        hub.publish(&[created("/a/3", 4)]);
        let revs: Vec<Revision> = vec![
            s.next().await.unwrap().unwrap().revision(),
            s.next().await.unwrap().unwrap().revision(),
        ];
        assert_eq!(revs, vec![3, 4]);
    }

    #[tokio::test]
    async fn live_events_at_or_below_after_are_filtered() {
        let hub = WatchHub::new(WindowOptions::default(), 0, vec![]);
        let mut s = hub.subscribe("", 5).unwrap();
        hub.publish(&[created("/x", 4), created("/y", 5), created("/z", 6)]);
        assert_eq!(s.next().await.unwrap().unwrap().kv.key, "/z");
    }

    #[test]
    fn window_is_bounded_and_resume_below_it_is_compacted() {
        let opts = WindowOptions {
            max_events: 3,
            ..Default::default()
        };
        let hub = WatchHub::new(opts, 0, vec![]);
        for r in 1..=5 {
            hub.publish(&[created(&format!("/k{r}"), r)]);
        }
        assert_eq!(hub.floor(), 2);
        assert!(hub.subscribe("", 2).is_ok());
        match hub.subscribe("", 1) {
            Err(StoreError::Compacted { requested, oldest }) => {
                assert_eq!((requested, oldest), (1, 2));
            }
            other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn window_is_bounded_by_age() {
        let opts = WindowOptions {
            max_age: Duration::from_millis(20),
            ..Default::default()
        };
        let hub = WatchHub::new(opts, 0, vec![]);
        hub.publish(&[created("/k1", 1), created("/k2", 2)]);
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(
            hub.subscribe("", 1),
            Err(StoreError::Compacted { .. })
        ));
        assert_eq!(hub.floor(), 2);
    }

    #[tokio::test]
    async fn slow_watcher_is_ended_not_waited_for() {
        let opts = WindowOptions {
            channel_capacity: 2,
            ..Default::default()
        };
        let hub = WatchHub::new(opts, 0, vec![]);
        let mut s = hub.subscribe("", 0).unwrap();
        for r in 1..=5 {
            hub.publish(&[created(&format!("/k{r}"), r)]);
        }
        assert_eq!(hub.watchers(), 0);
        let mut got = vec![];
        while let Some(e) = s.next().await {
            got.push(e.unwrap().revision());
        }
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn rollback_gives_state_at_revision() {
        let hub = WatchHub::new(WindowOptions::default(), 0, vec![]);
        hub.publish(&[
            created("/a", 1),
            updated("/a", 1, 1, 2),
            created("/b", 3),
            updated("/a", 1, 2, 4),
        ]);
        let at2 = hub.rollback(2, |_| true).unwrap();
        assert_eq!(at2.get("/a").unwrap().as_ref().unwrap().mod_revision, 2);
        assert_eq!(at2.get("/b").unwrap(), &None);
        let at1 = hub.rollback(1, |k| k == "/a").unwrap();
        assert_eq!(at1.get("/a").unwrap().as_ref().unwrap().mod_revision, 1);
        assert!(!at1.contains_key("/b"));
        hub.compact(2);
        assert!(hub.rollback(1, |_| true).is_none());
        assert!(hub.rollback(2, |_| true).is_some());
    }

    #[tokio::test]
    async fn close_ends_streams() {
        let hub = WatchHub::new(WindowOptions::default(), 0, vec![]);
        let mut s = hub.subscribe("", 0).unwrap();
        hub.close();
        assert!(s.next().await.is_none());
        assert!(matches!(hub.subscribe("", 0), Err(StoreError::Closed)));
    }
}
