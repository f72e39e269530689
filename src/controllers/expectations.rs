//! Controller expectations (upstream's UIDTrackingControllerExpectations):
//! what a controller has asked the API server to create or delete and not yet
//! seen come back through its watch. While a controller still waits for its
//! own writes, its cache is behind, so it must not act again: a burst of pod
//! events would otherwise make it create (or delete) the same pods twice.
//!
//! Keys are controller keys (`namespace/name`); deletions are tracked by pod
//! key so that seeing the same deletion twice (a deletionTimestamp, then the
//! delete itself) lowers the count once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// After this long, expectations that never came true are ignored (a watch
/// event was lost): the controller syncs again. Upstream's value.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone)]
struct Expectation {
    add: i64,
    del: i64,
    /// Keys of pods whose deletion we asked for and have not yet observed.
    deleting: HashSet<String>,
    since: Instant,
}

impl Expectation {
    fn fulfilled(&self) -> bool {
        self.add <= 0 && self.del <= 0
    }
}

/// Pending creations and deletions per controller.
#[derive(Debug, Default)]
pub struct ControllerExpectations {
    inner: Mutex<HashMap<String, Expectation>>,
    timeout: Option<Duration>,
}

impl ControllerExpectations {
    pub fn new() -> Self {
        Self::default()
    }

    /// With a different expiry (tests).
    pub fn with_timeout(timeout: Duration) -> Self {
        ControllerExpectations {
            inner: Mutex::default(),
            timeout: Some(timeout),
        }
    }

    fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(EXPECTATIONS_TIMEOUT)
    }

    /// Whether the controller may act on `key`: nothing is pending, or what
    /// was pending has expired. A key never seen is satisfied.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.inner.lock().get(key) {
            Some(e) => e.fulfilled() || e.since.elapsed() > self.timeout(),
            None => true,
        }
    }

    /// Expect `n` pod creations for `key` (replaces any earlier record).
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.inner.lock().insert(
            key.to_string(),
            Expectation {
                add: n as i64,
                del: 0,
                deleting: HashSet::new(),
                since: Instant::now(),
            },
        );
    }

    /// Expect the deletion of these pods (by pod key) for `key`.
    pub fn expect_deletions(&self, key: &str, pod_keys: &[String]) {
        let deleting: HashSet<String> = pod_keys.iter().cloned().collect();
        self.inner.lock().insert(
            key.to_string(),
            Expectation {
                add: 0,
                del: deleting.len() as i64,
                deleting,
                since: Instant::now(),
            },
        );
    }

    /// A pod created for `key` was seen (or a creation will never happen).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.inner.lock().get_mut(key) {
            e.add -= 1;
        }
    }

    /// The deletion of `pod_key` was seen (or will never happen); counts
    /// once per pod, and only for pods we asked to delete.
    pub fn deletion_observed(&self, key: &str, pod_key: &str) {
        if let Some(e) = self.inner.lock().get_mut(key)
            && e.deleting.remove(pod_key)
        {
            e.del -= 1;
        }
    }

    /// Forget `key` (its controller was deleted).
    pub fn delete(&self, key: &str) {
        self.inner.lock().remove(key);
    }

    /// (pending creations, pending deletions) for `key`, for logs and tests.
    pub fn pending(&self, key: &str) -> Option<(i64, i64)> {
        self.inner.lock().get(key).map(|e| (e.add, e.del))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_satisfied() {
        let e = ControllerExpectations::new();
        assert!(e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        assert_eq!(e.pending("ns/rs"), None);
    }

    #[test]
    fn creations_block_until_all_observed() {
        let e = ControllerExpectations::new();
        e.expect_creations("ns/rs", 3);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        assert_eq!(e.pending("ns/rs"), Some((1, 0)));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        // Other controllers are independent.
        e.expect_creations("ns/other", 1);
        assert!(e.satisfied("ns/rs") && !e.satisfied("ns/other"));
    }

    #[test]
    fn deletions_count_each_pod_once() {
        let e = ControllerExpectations::new();
        e.expect_deletions("ns/rs", &["ns/a".into(), "ns/b".into()]);
        assert!(!e.satisfied("ns/rs"));
        // deletionTimestamp seen, then the delete itself: one observation.
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        assert_eq!(e.pending("ns/rs"), Some((0, 1)));
        // A pod we did not delete does not count.
        e.deletion_observed("ns/rs", "ns/zzz");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn expired_expectations_are_satisfied() {
        let e = ControllerExpectations::with_timeout(Duration::from_millis(10));
        e.expect_creations("ns/rs", 5);
        assert!(!e.satisfied("ns/rs"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn delete_forgets() {
        let e = ControllerExpectations::new();
        e.expect_creations("ns/rs", 5);
        e.delete("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
