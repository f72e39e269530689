//! Storage: a revisioned key-value log (kine's shape) behind a trait, so an
//! external engine can back an HA control plane later without touching the
//! registry. Keys look like `/registry/<group>/<resource>/<namespace>/<name>`.
//!
//! Every write gets the next global revision; that revision is the object's
//! resourceVersion. Values are opaque bytes (JSON of the object, stored without
//! `metadata.resourceVersion`, which the registry fills in from `mod_revision`).

pub mod metered;
pub mod sqlite;
pub mod watch;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

/// A global revision: the resourceVersion of every object.
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the write that produced this value.
    pub mod_revision: Revision,
    pub value: bytes::Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
}

/// A committed change, as fanned out to watchers.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    /// For Created/Updated the new value; for Deleted the last value with
    /// `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The value before this write (None for Created).
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Result of a list: the items and the revision the list was read at.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
    /// Number of matching keys after the last returned one (for `remainingItemCount`).
    pub remaining: usize,
}

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Read at this revision; None or 0 = the current revision.
    pub revision: Option<Revision>,
    /// Only keys strictly greater than this (pagination).
    pub start_after: Option<String>,
    /// At most this many items; None = all.
    pub limit: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// Compare-and-swap failed; carries the current value.
    #[error("revision conflict on {}", .0.key)]
    Conflict(Box<KeyValue>),
    /// The requested revision has been compacted (HTTP 410 Expired).
    #[error("required revision {requested} has been compacted (oldest available is {oldest})")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// The requested revision is in the future.
    #[error("revision {0} is newer than the current revision")]
    FutureRevision(Revision),
    #[error("storage is shutting down")]
    Closed,
    #[error("storage error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A stream of committed events for a watch. It ends (None) when the watcher
/// fell too far behind or the store shut down; the client then re-lists.
pub type EventStream = Pin<Box<dyn Stream<Item = StoreResult<Event>> + Send>>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The newest committed revision.
    fn current_revision(&self) -> Revision;
    /// The oldest revision still readable (everything at or below it may be gone).
    fn compacted_revision(&self) -> Revision;

    /// Get a key, at the current revision or at `revision`.
    async fn get(&self, key: &str, revision: Option<Revision>) -> StoreResult<Option<KeyValue>>;
    /// List keys with `prefix`, in key order.
    async fn list(&self, prefix: &str, opts: ListOptions) -> StoreResult<ListResult>;
    /// Count keys with `prefix` at the current revision.
    async fn count(&self, prefix: &str) -> StoreResult<usize>;

    /// Create a key; fails with AlreadyExists if it is live.
    async fn create(&self, key: &str, value: bytes::Bytes) -> StoreResult<KeyValue>;
    /// Replace a key's value if its mod_revision is `expected` (0 = any).
    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: bytes::Bytes,
    ) -> StoreResult<KeyValue>;
    /// Delete a key if its mod_revision is `expected` (0 = any). Returns the
    /// deleted value with mod_revision set to the delete's revision.
    async fn delete(&self, key: &str, expected: Revision) -> StoreResult<KeyValue>;

    /// Watch keys with `prefix` for events after revision `after` (exclusive).
    /// `after` = 0 means from now. Older than the in-memory window: Compacted.
    fn watch(&self, prefix: &str, after: Revision) -> StoreResult<EventStream>;

    /// Drop superseded revisions at or below `revision` and reclaim space.
    async fn compact(&self, revision: Revision) -> StoreResult<()>;

    /// Flush and close; later calls fail with Closed.
    async fn close(&self);
}

/// The exclusive end of a prefix range (for `key >= prefix AND key < end`).
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    String::new()
}
