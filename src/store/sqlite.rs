//! The SQLite backend of `Store`.
//!
//! Shape (kine's): one table `kv` of revisions, `id` = the global revision
//! (rowid), plus `key`, `create_revision`, `prev_revision` (the row this one
//! supersedes), `deleted` (tombstone) and `value`. A `meta` table keeps the
//! compaction floor, so the revision counter never goes back even when
//! compaction removed the newest rows (tombstones).
//!
//! Why it is fast and kind to SD cards:
//! - The current state (key -> create/mod revision + value) lives in an
//!   in-memory B-tree loaded at open; gets and lists at the current revision
//!   never touch SQLite. Recent history is answered from the watch window by
//!   rolling the current state back; only older history reads SQLite.
//! - One writer thread owns the write connection and batches whatever writes
//!   are queued into one transaction (group commit): one fsync for many
//!   writes. Callers are answered after the commit, so acknowledged means
//!   durable.
//! - `kv` has no secondary index: rows are appended in rowid order, so a
//!   batch dirties only the last leaf pages instead of one random index page
//!   per write. The rare paths that need a key lookup (reads of history older
//!   than the window) scan by rowid instead; compaction finds superseded rows
//!   through `prev_revision`, a rowid lookup.
//! - Compaction runs on the writer thread in chunks between write batches
//!   (no second writer, no SQLITE_BUSY). Freed pages are reused by later
//!   writes; free space beyond what one interval of churn reuses is given
//!   back with incremental vacuum and a WAL checkpoint(TRUNCATE).
//! - WAL checkpoints never run inside a commit (SQLite's autocheckpoint
//!   copies and fsyncs megabytes while every writer waits): a checkpointer
//!   thread with its own connection copies the WAL back once it passes
//!   `wal_autocheckpoint_pages`, beside the writer. Under writes that never
//!   pause, the WAL can only start over after a checkpoint the writer itself
//!   ran, so past `journal_size_limit` the writer checkpoints the (short)
//!   rest itself. Compaction truncates an oversized WAL.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use super::watch::{WatchHub, WindowOptions};
use super::{
    Event, EventKind, EventStream, KeyValue, ListOptions, ListResult, Revision, Store, StoreError,
    StoreResult, prefix_end,
};

/// SQLite `synchronous` setting.
///
/// FULL is the default: in WAL mode it fsyncs the WAL on every commit, so an
/// acknowledged write survives power loss, not only `kill -9`. Group commit
/// makes that one fsync per batch, which is why FULL costs little throughput
/// under concurrency. NORMAL only survives process crashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    Off,
    Normal,
    #[default]
    Full,
    Extra,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

/// Tuning of the SQLite store; `Default` suits a small node.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// The watch window (resumable history kept in memory).
    pub window: WindowOptions,
    /// How often compaction runs; None disables the schedule (explicit
    /// `compact` still works). Upstream compacts every 5 minutes.
    pub compaction_interval: Option<Duration>,
    /// Revisions always kept behind the current one. Each scheduled run
    /// compacts to the revision that was current one interval earlier, but
    /// never closer than this to the current revision.
    pub compaction_retain: Revision,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Page size of a new database (bytes). 1 KiB, measured with
    /// `benches/store.rs` (bytes written per update of a 1 KiB object at 64
    /// clients: ~3.3 KiB with 1 KiB pages, ~5.2 KiB with 4 KiB pages): values
    /// then live mostly in overflow pages, which compaction frees without
    /// rewriting them, while with 4 KiB pages deleting superseded rows
    /// rebalances (rewrites) the leaf pages around them; a commit of one
    /// small write also dirties less.
    pub page_size: u32,
    /// WAL pages after which the checkpointer thread copies the WAL back
    /// into the database (SQLite's wal_autocheckpoint, off the writer); 4 MiB
    /// with 1 KiB pages. A larger WAL coalesces more rewrites of the same
    /// page before they reach the database file.
    pub wal_autocheckpoint_pages: u32,
    /// WAL size the file is truncated back to after a checkpoint (bytes);
    /// past it (or twice the checkpoint threshold, if larger) the writer
    /// checkpoints itself, which bounds the WAL under sustained writes.
    pub journal_size_limit: i64,
    /// SQLite page cache per connection (KiB); the state cache is separate.
    pub cache_size_kib: i64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            window: WindowOptions::default(),
            compaction_interval: Some(Duration::from_secs(300)),
            compaction_retain: 1000,
            max_batch: 1024,
            page_size: 1024,
            wal_autocheckpoint_pages: 4000,
            journal_size_limit: 16 << 20,
            cache_size_kib: 2048,
        }
    }
}

/// Counters for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Successful writes committed.
    pub writes: u64,
    /// Transactions that carried them.
    pub batches: u64,
    /// Compactions completed.
    pub compactions: u64,
}

/// Rows removed per compaction transaction, so writes interleave.
const COMPACT_CHUNK: Revision = 5_000;

#[derive(Clone, Debug)]
struct Entry {
    create_revision: Revision,
    mod_revision: Revision,
    value: Bytes,
}

impl Entry {
    fn to_kv(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            value: self.value.clone(),
        }
    }
}

/// State shared by the handle, the writer thread and history readers.
struct Shared {
    path: PathBuf,
    /// Current state. The writer changes it, the revision counter and the
    /// watch window together under this lock, so readers see them agree.
    index: RwLock<BTreeMap<String, Entry>>,
    current: AtomicI64,
    compacted: AtomicI64,
    hub: WatchHub,
    closed: AtomicBool,
    readers: Mutex<Vec<Connection>>,
    cache_size_kib: i64,
    writes: AtomicU64,
    batches: AtomicU64,
    compactions: AtomicU64,
    /// A scratch directory (open_temp) removed when everything is dropped.
    remove_on_drop: Option<PathBuf>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(dir) = &self.remove_on_drop {
            self.readers.lock().clear();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        expected: Revision,
        value: Bytes,
    },
    Delete {
        key: String,
        expected: Revision,
    },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

enum Request {
    Write {
        op: Op,
        reply: oneshot::Sender<StoreResult<KeyValue>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<StoreResult<()>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// The SQLite store. Cheap reads from memory; writes go through the writer
/// thread.
pub struct SqliteStore {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn configure(conn: &Connection, opts: &SqliteOptions) -> StoreResult<()> {
    configure_sqlite(conn, opts).map_err(backend)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "cannot enable WAL mode (journal_mode is {mode})"
        )));
    }
    Ok(())
}

fn configure_sqlite(conn: &Connection, opts: &SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(30))?;
    // page_size and auto_vacuum only take effect on a new, empty database.
    conn.pragma_update(None, "page_size", opts.page_size)?;
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", opts.synchronous.pragma())?;
    conn.pragma_update(None, "journal_size_limit", opts.journal_size_limit)?;
    conn.pragma_update(None, "wal_autocheckpoint", opts.wal_autocheckpoint_pages)?;
    conn.pragma_update(None, "cache_size", -opts.cache_size_kib)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS kv (
             id INTEGER PRIMARY KEY,
             key TEXT NOT NULL,
             create_revision INTEGER NOT NULL,
             prev_revision INTEGER NOT NULL,
             deleted INTEGER NOT NULL,
             value BLOB NOT NULL
         );
         CREATE TABLE IF NOT EXISTS meta (
             name TEXT PRIMARY KEY,
             value INTEGER NOT NULL
         ) WITHOUT ROWID;",
    )?;
    // A database created without incremental auto-vacuum could never give
    // space back to the file system: convert it once.
    let auto_vacuum: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
    if auto_vacuum != 2 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
    }
    Ok(())
}

/// SQLite's WAL file next to the database.
fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn meta_get(conn: &Connection, name: &str) -> rusqlite::Result<Option<Revision>> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
}

/// What `open` reads back from disk.
struct Loaded {
    index: BTreeMap<String, Entry>,
    current: Revision,
    compacted: Revision,
    compact_done: Revision,
    window_floor: Revision,
    recent: Vec<Event>,
}

/// Replays the table in revision order into the current state, and turns the
/// newest rows back into events for the watch window.
fn load(conn: &Connection, window_events: usize) -> rusqlite::Result<Loaded> {
    let compacted = meta_get(conn, "compact_revision")?.unwrap_or(0);
    let compact_done = meta_get(conn, "compact_done")?.unwrap_or(compacted);
    let max_id: Revision =
        conn.query_row("SELECT COALESCE(MAX(id), 0) FROM kv", [], |r| r.get(0))?;
    let current = max_id.max(compacted);
    let window_floor = compacted.max(current - window_events as Revision).max(0);

    let mut index: BTreeMap<String, Entry> = BTreeMap::new();
    let mut recent = Vec::new();
    let mut stmt =
        conn.prepare("SELECT id, key, create_revision, deleted, value FROM kv ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: Revision = row.get(0)?;
        let key: String = row.get(1)?;
        let create_revision: Revision = row.get(2)?;
        let deleted: bool = row.get(3)?;
        let in_window = id > window_floor;
        if deleted {
            let old = index.remove(&key);
            if in_window {
                let prev = old.map(|e| e.to_kv(&key));
                let mut kv = prev.clone().unwrap_or(KeyValue {
                    key: key.clone(),
                    create_revision,
                    mod_revision: id,
                    value: Bytes::new(),
                });
                kv.mod_revision = id;
                recent.push(Event {
                    kind: EventKind::Deleted,
                    kv,
                    prev,
                });
            }
            continue;
        }
        let value = Bytes::from(row.get::<_, Vec<u8>>(4)?);
        let entry = Entry {
            create_revision,
            mod_revision: id,
            value,
        };
        let old = index.insert(key.clone(), entry.clone());
        if in_window {
            let (kind, prev) = if create_revision == id {
                (EventKind::Created, None)
            } else {
                (EventKind::Updated, old.map(|e| e.to_kv(&key)))
            };
            recent.push(Event {
                kind,
                kv: entry.to_kv(&key),
                prev,
            });
        }
    }
    Ok(Loaded {
        index,
        current,
        compacted,
        compact_done,
        window_floor,
        recent,
    })
}

impl SqliteStore {
    /// Open (or create) the database at `path` and start the writer thread.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<Arc<SqliteStore>, StoreError> {
        Self::open_inner(path, opts, None)
    }

    /// A store in a fresh scratch directory that is removed when the store
    /// and its threads are gone (tests, benchmarks).
    pub fn open_temp(opts: SqliteOptions) -> Result<Arc<SqliteStore>, StoreError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "rk3s-store-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(backend)?;
        Self::open_inner(&dir.join("state.db"), opts, Some(dir))
    }

    fn open_inner(
        path: &Path,
        opts: SqliteOptions,
        remove_on_drop: Option<PathBuf>,
    ) -> Result<Arc<SqliteStore>, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(backend)?;
        }
        let conn = Connection::open(path).map_err(backend)?;
        configure(&conn, &opts)?;
        // Commits never checkpoint: the checkpointer thread does.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(backend)?;
        let threshold = u64::from(opts.wal_autocheckpoint_pages) * u64::from(opts.page_size);
        let checkpointer = Checkpointer::start(path, threshold)?;
        let loaded = load(&conn, opts.window.max_events).map_err(backend)?;
        tracing::info!(
            path = %path.display(),
            keys = loaded.index.len(),
            revision = loaded.current,
            compacted = loaded.compacted,
            "store opened"
        );
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            index: RwLock::new(loaded.index),
            current: AtomicI64::new(loaded.current),
            compacted: AtomicI64::new(loaded.compacted),
            hub: WatchHub::new(opts.window.clone(), loaded.window_floor, loaded.recent),
            closed: AtomicBool::new(false),
            readers: Mutex::new(Vec::new()),
            cache_size_kib: opts.cache_size_kib,
            writes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            remove_on_drop,
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            shared: shared.clone(),
            rx,
            job: None,
            compact_done: loaded.compact_done,
            // Unknown at start: assume the churn is steady, so the first
            // compaction keeps what it freed (released at the next one if
            // the churn dropped).
            freed_prev: i64::MAX,
            last_tick: Instant::now(),
            tick_revision: loaded.current,
            wal_cap: threshold
                .saturating_mul(2)
                .max(opts.journal_size_limit.max(0) as u64),
            checkpointer: Some(checkpointer),
            opts,
        };
        let handle = std::thread::Builder::new()
            .name("rk3s-store-writer".into())
            .spawn(move || writer.run())
            .map_err(backend)?;
        Ok(Arc::new(SqliteStore {
            shared,
            tx,
            writer: Mutex::new(Some(handle)),
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Write and compaction counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            writes: self.shared.writes.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
            compactions: self.shared.compactions.load(Ordering::Relaxed),
        }
    }

    /// Number of open watches.
    pub fn watchers(&self) -> usize {
        self.shared.hub.watchers()
    }

    fn check_open(&self) -> StoreResult<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    async fn submit(&self, op: Op) -> StoreResult<KeyValue> {
        self.check_open()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Write { op, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Validates a read revision: None = current; Some(r) = a past one.
    fn past_revision(
        &self,
        revision: Option<Revision>,
        current: Revision,
    ) -> StoreResult<Option<Revision>> {
        match revision {
            None | Some(0) => Ok(None),
            Some(r) if r > current => Err(StoreError::FutureRevision(r)),
            Some(r) if r == current => Ok(None),
            Some(r) => {
                let oldest = self.shared.compacted.load(Ordering::Acquire);
                if r < oldest {
                    Err(StoreError::Compacted {
                        requested: r,
                        oldest,
                    })
                } else {
                    Ok(Some(r))
                }
            }
        }
    }

    /// Runs `f` on a read-only connection off the async runtime.
    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = shared.readers.lock().pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &shared.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(backend)?;
                    c.busy_timeout(Duration::from_secs(30)).map_err(backend)?;
                    c.pragma_update(None, "cache_size", -shared.cache_size_kib)
                        .map_err(backend)?;
                    c
                }
            };
            let out = f(&mut conn).map_err(backend);
            let mut pool = shared.readers.lock();
            if pool.len() < 4 {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(backend)?
    }

    /// Compaction may have started while SQLite was read: the result is only
    /// valid if `revision` is still at or above the floor.
    fn still_readable(&self, revision: Revision) -> StoreResult<()> {
        let oldest = self.shared.compacted.load(Ordering::Acquire);
        if revision < oldest {
            Err(StoreError::Compacted {
                requested: revision,
                oldest,
            })
        } else {
            Ok(())
        }
    }

    async fn history_get(&self, key: &str, revision: Revision) -> StoreResult<Option<KeyValue>> {
        let key = key.to_string();
        let found = self
            .with_reader(move |conn| {
                conn.query_row(
                    "SELECT id, create_revision, deleted, value FROM kv
                     WHERE id <= ?1 AND key = ?2 ORDER BY id DESC LIMIT 1",
                    params![revision, key],
                    |r| {
                        let deleted: bool = r.get(2)?;
                        Ok((!deleted).then(|| -> rusqlite::Result<KeyValue> {
                            Ok(KeyValue {
                                key: key.clone(),
                                mod_revision: r.get(0)?,
                                create_revision: r.get(1)?,
                                value: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                            })
                        }))
                    },
                )
                .optional()
                .and_then(|o| o.flatten().transpose())
            })
            .await?;
        self.still_readable(revision)?;
        Ok(found)
    }

    async fn history_list(
        &self,
        prefix: &str,
        opts: ListOptions,
        revision: Revision,
    ) -> StoreResult<ListResult> {
        let prefix = prefix.to_string();
        let (items, remaining) = self
            .with_reader(move |conn| {
                let tx = conn.transaction()?;
                // Latest row at or below `revision` for each key in range.
                let mut latest: BTreeMap<String, (Revision, bool)> = BTreeMap::new();
                {
                    let end = prefix_end(&prefix);
                    let mut stmt = tx.prepare(
                        "SELECT id, key, deleted FROM kv
                         WHERE id <= ?1 AND key >= ?2 AND (?3 = '' OR key < ?3) ORDER BY id",
                    )?;
                    let mut rows = stmt.query(params![revision, prefix, end])?;
                    while let Some(r) = rows.next()? {
                        let key: String = r.get(1)?;
                        if key.starts_with(&prefix) {
                            latest.insert(key, (r.get(0)?, r.get(2)?));
                        }
                    }
                }
                let lower = lower_bound(&prefix, opts.start_after.as_deref());
                let mut live = latest
                    .range::<str, _>((lower, Bound::Unbounded))
                    .filter(|(_, (_, deleted))| !deleted);
                let limit = opts.limit.unwrap_or(usize::MAX);
                let page: Vec<(String, Revision)> = live
                    .by_ref()
                    .take(limit)
                    .map(|(k, (id, _))| (k.clone(), *id))
                    .collect();
                let remaining = live.count();
                let mut items = Vec::with_capacity(page.len());
                {
                    let mut stmt =
                        tx.prepare("SELECT create_revision, value FROM kv WHERE id = ?1")?;
                    for (key, id) in page {
                        let (create_revision, value) = stmt.query_row([id], |r| {
                            Ok((r.get::<_, Revision>(0)?, r.get::<_, Vec<u8>>(1)?))
                        })?;
                        items.push(KeyValue {
                            key,
                            create_revision,
                            mod_revision: id,
                            value: Bytes::from(value),
                        });
                    }
                }
                tx.commit()?;
                Ok((items, remaining))
            })
            .await?;
        self.still_readable(revision)?;
        Ok(ListResult {
            items,
            revision,
            remaining,
        })
    }
}

/// Where a list page starts: after `start_after` if it is inside the prefix
/// range, else at the prefix.
fn lower_bound<'a>(prefix: &'a str, start_after: Option<&'a str>) -> Bound<&'a str> {
    match start_after {
        Some(s) if s >= prefix => Bound::Excluded(s),
        _ => Bound::Included(prefix),
    }
}

/// A page of `limit` items from the sorted merge of the current state
/// (minus keys changed since the revision) and the rolled-back values.
fn merged_page(
    index: &BTreeMap<String, Entry>,
    rolled_back: &BTreeMap<String, Option<KeyValue>>,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
) -> (Vec<KeyValue>, usize) {
    let lower = lower_bound(prefix, start_after);
    let mut base = index
        .range::<str, _>((lower, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(k, _)| !rolled_back.contains_key(k.as_str()))
        .peekable();
    let mut old = rolled_back
        .range::<str, _>((lower, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter_map(|(_, v)| v.as_ref())
        .peekable();
    let mut items = Vec::new();
    let mut remaining = 0;
    loop {
        let take_base = match (base.peek(), old.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((bk, _)), Some(o)) => bk.as_str() < o.key.as_str(),
        };
        if items.len() < limit {
            if take_base {
                if let Some((k, e)) = base.next() {
                    items.push(e.to_kv(k));
                }
            } else if let Some(kv) = old.next() {
                items.push(kv.clone());
            }
        } else {
            if take_base {
                base.next();
            } else {
                old.next();
            }
            remaining += 1;
        }
    }
    (items, remaining)
}

#[async_trait]
impl Store for SqliteStore {
    fn current_revision(&self) -> Revision {
        self.shared.current.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> StoreResult<Option<KeyValue>> {
        self.check_open()?;
        let past = {
            let index = self.shared.index.read();
            let current = self.shared.current.load(Ordering::Acquire);
            match self.past_revision(revision, current)? {
                None => return Ok(index.get(key).map(|e| e.to_kv(key))),
                Some(r) => {
                    if let Some(old) = self.shared.hub.rollback(r, |k| k == key) {
                        return Ok(match old.get(key) {
                            Some(v) => v.clone(),
                            None => index.get(key).map(|e| e.to_kv(key)),
                        });
                    }
                    r
                }
            }
        };
        self.history_get(key, past).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> StoreResult<ListResult> {
        self.check_open()?;
        let limit = opts.limit.unwrap_or(usize::MAX);
        let past = {
            let index = self.shared.index.read();
            let current = self.shared.current.load(Ordering::Acquire);
            let start_after = opts.start_after.as_deref();
            match self.past_revision(opts.revision, current)? {
                None => {
                    let mut range = index
                        .range::<str, _>((lower_bound(prefix, start_after), Bound::Unbounded))
                        .take_while(|(k, _)| k.starts_with(prefix));
                    let items = range
                        .by_ref()
                        .take(limit)
                        .map(|(k, e)| e.to_kv(k))
                        .collect();
                    let remaining = range.count();
                    return Ok(ListResult {
                        items,
                        revision: current,
                        remaining,
                    });
                }
                Some(r) => {
                    if let Some(old) = self.shared.hub.rollback(r, |k| k.starts_with(prefix)) {
                        let (items, remaining) =
                            merged_page(&index, &old, prefix, start_after, limit);
                        return Ok(ListResult {
                            items,
                            revision: r,
                            remaining,
                        });
                    }
                    r
                }
            }
        };
        self.history_list(prefix, opts, past).await
    }

    async fn count(&self, prefix: &str) -> StoreResult<usize> {
        self.check_open()?;
        let index = self.shared.index.read();
        Ok(index
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .count())
    }

    async fn create(&self, key: &str, value: Bytes) -> StoreResult<KeyValue> {
        self.submit(Op::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(&self, key: &str, expected: Revision, value: Bytes) -> StoreResult<KeyValue> {
        self.submit(Op::Update {
            key: key.to_string(),
            expected,
            value,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Revision) -> StoreResult<KeyValue> {
        self.submit(Op::Delete {
            key: key.to_string(),
            expected,
        })
        .await
    }

    fn watch(&self, prefix: &str, after: Revision) -> StoreResult<EventStream> {
        self.check_open()?;
        let after = if after == 0 {
            self.shared.current.load(Ordering::Acquire)
        } else {
            after
        };
        let oldest = self.shared.compacted.load(Ordering::Acquire);
        if after < oldest {
            return Err(StoreError::Compacted {
                requested: after,
                oldest,
            });
        }
        self.shared.hub.subscribe(prefix, after)
    }

    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        self.check_open()?;
        let current = self.current_revision();
        if revision > current {
            return Err(StoreError::FutureRevision(revision));
        }
        if revision <= self.compacted_revision() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Compact { revision, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request::Shutdown { reply }).is_ok() {
            let _ = rx.await;
        }
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        self.shared.readers.lock().clear();
        self.shared.hub.close();
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Without close(): let the writer drain its queue, checkpoint and exit.
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            let (reply, _rx) = oneshot::channel();
            let _ = self.tx.send(Request::Shutdown { reply });
            self.shared.hub.close();
        }
        // A scratch store is removed with its last user, the writer thread:
        // wait for it (short) so the directory does not outlive the process.
        if self.shared.remove_on_drop.is_some()
            && let Some(handle) = self.writer.lock().take()
        {
            let _ = handle.join();
        }
    }
}

/// An in-progress compaction, done in chunks between write batches.
struct CompactJob {
    target: Revision,
    replies: Vec<oneshot::Sender<StoreResult<()>>>,
    /// Free pages when the job started, to tell how many it freed.
    free_before: i64,
}

/// One write of a batch, checked against the state but not yet committed.
struct Planned {
    reply: oneshot::Sender<StoreResult<KeyValue>>,
    result: StoreResult<KeyValue>,
}

struct Row {
    id: Revision,
    key: String,
    create_revision: Revision,
    prev_revision: Revision,
    deleted: bool,
    value: Bytes,
}

/// Owns the write connection; the only thread that writes SQLite.
struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Request>,
    opts: SqliteOptions,
    job: Option<CompactJob>,
    /// Rows up to here have been through compaction.
    compact_done: Revision,
    /// Pages the previous compaction freed (bounds the vacuum reserve).
    freed_prev: i64,
    last_tick: Instant,
    /// The revision at the previous scheduled tick (upstream compacts to the
    /// revision seen one interval earlier).
    tick_revision: Revision,
    /// WAL size past which the writer checkpoints itself.
    wal_cap: u64,
    checkpointer: Option<Checkpointer>,
}

/// Copies the WAL back into the database from a connection of its own, so
/// commits do not wait for checkpoints. A PASSIVE checkpoint runs beside the
/// writer (WAL mode allows one writer and one checkpointer at once). SQLite
/// refuses a second concurrent checkpoint, so the writer's own checkpoints
/// (compaction's TRUNCATE, the WAL cap) take `lock` first.
struct Checkpointer {
    lock: Arc<Mutex<()>>,
    nudge: Option<mpsc::SyncSender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path, threshold_bytes: u64) -> StoreResult<Checkpointer> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(backend)?;
        // It only copies pages: a small cache will do.
        conn.pragma_update(None, "cache_size", -64)
            .map_err(backend)?;
        let wal = wal_path(path);
        let lock = Arc::new(Mutex::new(()));
        let held = lock.clone();
        let (nudge, rx) = mpsc::sync_channel::<()>(1);
        let handle = std::thread::Builder::new()
            .name("rk3s-store-checkpoint".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                    if size < threshold_bytes {
                        continue;
                    }
                    let _guard = held.lock();
                    if let Err(e) = checkpoint(&conn, "PASSIVE") {
                        tracing::debug!(error = %e, "checkpoint skipped");
                    }
                }
            })
            .map_err(backend)?;
        Ok(Checkpointer {
            lock,
            nudge: Some(nudge),
            handle: Some(handle),
        })
    }

    /// After a commit: let the thread look at the WAL (never blocks).
    fn nudge(&self) {
        if let Some(n) = &self.nudge {
            let _ = n.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Runs `PRAGMA wal_checkpoint(MODE)`; Ok(false) when SQLite could not
/// finish it (a reader or another checkpoint in the way).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<bool> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|busy| busy == 0)
}

impl Writer {
    fn run(mut self) {
        loop {
            let first = if self.job.is_some() {
                match self.rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                match self.rx.recv_timeout(self.until_tick()) {
                    Ok(r) => Some(r),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            };
            let mut writes = Vec::new();
            let mut shutdown = None;
            if let Some(first) = first {
                let mut next = Some(first);
                while let Some(req) = next.take() {
                    match req {
                        Request::Write { op, reply } => writes.push((op, reply)),
                        Request::Compact { revision, reply } => {
                            self.start_compaction(revision, Some(reply))
                        }
                        Request::Shutdown { reply } => {
                            shutdown = Some(reply);
                            break;
                        }
                    }
                    if writes.len() < self.opts.max_batch.max(1) {
                        next = self.rx.try_recv().ok();
                    }
                }
            }
            if !writes.is_empty() {
                self.commit(writes);
            }
            if let Some(reply) = shutdown {
                self.finish();
                let _ = reply.send(());
                return;
            }
            self.scheduled_compaction();
            if self.job.is_some() {
                self.compact_step();
            }
        }
        self.finish();
    }

    fn until_tick(&self) -> Duration {
        match self.opts.compaction_interval {
            Some(every) => every.saturating_sub(self.last_tick.elapsed()),
            None => Duration::from_secs(3600),
        }
    }

    /// Checks each write against the state plus the earlier writes of the
    /// batch, commits the valid ones in one transaction, then publishes.
    fn commit(&mut self, writes: Vec<(Op, oneshot::Sender<StoreResult<KeyValue>>)>) {
        let base = self.shared.current.load(Ordering::Acquire);
        let mut next = base;
        let mut overlay: BTreeMap<String, Option<Entry>> = BTreeMap::new();
        let mut planned = Vec::with_capacity(writes.len());
        let mut rows = Vec::with_capacity(writes.len());
        let mut events = Vec::with_capacity(writes.len());
        {
            let index = self.shared.index.read();
            for (op, reply) in writes {
                let key = op.key().to_string();
                let current = match overlay.get(&key) {
                    Some(e) => e.clone(),
                    None => index.get(&key).cloned(),
                };
                let result = match (op, current) {
                    (Op::Create { .. }, Some(_)) => Err(StoreError::AlreadyExists(key)),
                    (Op::Create { value, .. }, None) => {
                        next += 1;
                        let entry = Entry {
                            create_revision: next,
                            mod_revision: next,
                            value,
                        };
                        rows.push(Row {
                            id: next,
                            key: key.clone(),
                            create_revision: next,
                            prev_revision: 0,
                            deleted: false,
                            value: entry.value.clone(),
                        });
                        let kv = entry.to_kv(&key);
                        events.push(Event {
                            kind: EventKind::Created,
                            kv: kv.clone(),
                            prev: None,
                        });
                        overlay.insert(key, Some(entry));
                        Ok(kv)
                    }
                    (Op::Update { .. } | Op::Delete { .. }, None) => Err(StoreError::NotFound(key)),
                    (Op::Update { expected, .. } | Op::Delete { expected, .. }, Some(cur))
                        if expected != 0 && expected != cur.mod_revision =>
                    {
                        Err(StoreError::Conflict(Box::new(cur.to_kv(&key))))
                    }
                    (Op::Update { value, .. }, Some(cur)) => {
                        next += 1;
                        let entry = Entry {
                            create_revision: cur.create_revision,
                            mod_revision: next,
                            value,
                        };
                        rows.push(Row {
                            id: next,
                            key: key.clone(),
                            create_revision: cur.create_revision,
                            prev_revision: cur.mod_revision,
                            deleted: false,
                            value: entry.value.clone(),
                        });
                        let kv = entry.to_kv(&key);
                        events.push(Event {
                            kind: EventKind::Updated,
                            kv: kv.clone(),
                            prev: Some(cur.to_kv(&key)),
                        });
                        overlay.insert(key, Some(entry));
                        Ok(kv)
                    }
                    (Op::Delete { .. }, Some(cur)) => {
                        next += 1;
                        rows.push(Row {
                            id: next,
                            key: key.clone(),
                            create_revision: cur.create_revision,
                            prev_revision: cur.mod_revision,
                            deleted: true,
                            value: Bytes::new(),
                        });
                        let prev = cur.to_kv(&key);
                        let mut kv = prev.clone();
                        kv.mod_revision = next;
                        events.push(Event {
                            kind: EventKind::Deleted,
                            kv: kv.clone(),
                            prev: Some(prev),
                        });
                        overlay.insert(key, None);
                        Ok(kv)
                    }
                };
                planned.push(Planned { reply, result });
            }
        }

        if !rows.is_empty() {
            if let Err(e) = self.insert_rows(&rows) {
                tracing::error!(error = %e, "store commit failed");
                for p in planned {
                    let result = match p.result {
                        Ok(_) => Err(backend(&e)),
                        other => other,
                    };
                    let _ = p.reply.send(result);
                }
                return;
            }
            let mut index = self.shared.index.write();
            for (key, entry) in overlay {
                match entry {
                    Some(e) => index.insert(key, e),
                    None => index.remove(&key),
                };
            }
            self.shared.hub.publish(&events);
            self.shared.current.store(next, Ordering::Release);
            drop(index);
            self.shared
                .writes
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
            self.shared.batches.fetch_add(1, Ordering::Relaxed);
            if let Some(c) = &self.checkpointer {
                c.nudge();
            }
        }
        for p in planned {
            let _ = p.reply.send(p.result);
        }
        self.bound_wal();
    }

    /// Under writes that never pause the background checkpoints can never
    /// catch up with the last frame, and only then may the WAL start over:
    /// past the cap, the writer copies the rest itself (little, as the
    /// checkpointer copied the bulk), so its next commit restarts the WAL.
    fn bound_wal(&mut self) {
        let wal = std::fs::metadata(wal_path(&self.shared.path))
            .map(|m| m.len())
            .unwrap_or(0);
        if wal <= self.wal_cap {
            return;
        }
        let _guard = self.checkpointer.as_ref().map(|c| c.lock.lock());
        if let Err(e) = checkpoint(&self.conn, "PASSIVE") {
            tracing::debug!(error = %e, "checkpoint skipped");
        }
    }

    fn insert_rows(&mut self, rows: &[Row]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO kv (id, key, create_revision, prev_revision, deleted, value)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for r in rows {
                stmt.execute(params![
                    r.id,
                    r.key,
                    r.create_revision,
                    r.prev_revision,
                    r.deleted,
                    r.value.as_ref()
                ])?;
            }
        }
        tx.commit()
    }

    fn scheduled_compaction(&mut self) {
        let Some(every) = self.opts.compaction_interval else {
            return;
        };
        if self.last_tick.elapsed() < every {
            return;
        }
        self.last_tick = Instant::now();
        let current = self.shared.current.load(Ordering::Acquire);
        let target = self
            .tick_revision
            .min(current - self.opts.compaction_retain);
        self.tick_revision = current;
        if target > self.shared.compacted.load(Ordering::Acquire) {
            tracing::debug!(target, current, "scheduled compaction");
            self.start_compaction(target, None);
        }
    }

    /// Raises the floor at once (reads below it now fail with Compacted and
    /// the watch window forgets it), then deletes rows in chunks.
    fn start_compaction(
        &mut self,
        revision: Revision,
        reply: Option<oneshot::Sender<StoreResult<()>>>,
    ) {
        let current = self.shared.current.load(Ordering::Acquire);
        let target = revision.min(current);
        if target > self.shared.compacted.load(Ordering::Acquire) {
            self.shared.compacted.store(target, Ordering::Release);
            self.shared.hub.compact(target);
            if self.job.is_none() {
                let free_before = self.free_pages().unwrap_or(0);
                self.job = Some(CompactJob {
                    target,
                    replies: Vec::new(),
                    free_before,
                });
            }
            let Some(job) = self.job.as_mut() else {
                return;
            };
            job.target = job.target.max(target);
        }
        if let Some(reply) = reply {
            match &mut self.job {
                Some(job) => job.replies.push(reply),
                None => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }

    fn compact_step(&mut self) {
        let Some(target) = self.job.as_ref().map(|j| j.target) else {
            return;
        };
        let from = self.compact_done;
        let to = (from + COMPACT_CHUNK).min(target);
        let result = self.delete_superseded(from, to, target);
        let done = match result {
            Ok(()) => {
                self.compact_done = to;
                if to < target {
                    return;
                }
                let free_before = self.job.as_ref().map_or(0, |j| j.free_before);
                self.reclaim(free_before)
            }
            Err(e) => Err(e),
        };
        if let Some(job) = self.job.take() {
            let outcome = done.map_err(|e| {
                tracing::error!(error = %e, "compaction failed");
                backend(e)
            });
            if outcome.is_ok() {
                self.shared.compactions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(revision = target, "compaction done");
            }
            for reply in job.replies {
                let _ = reply.send(match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError::Backend(e.to_string())),
                });
            }
        }
    }

    /// Deletes, for rows in (from, to], the rows they superseded, and the
    /// tombstones themselves; records progress in the same transaction.
    fn delete_superseded(
        &mut self,
        from: Revision,
        to: Revision,
        target: Revision,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM kv WHERE id IN
                 (SELECT prev_revision FROM kv WHERE id > ?1 AND id <= ?2 AND prev_revision > 0)",
            params![from, to],
        )?;
        tx.execute(
            "DELETE FROM kv WHERE id > ?1 AND id <= ?2 AND deleted = 1",
            params![from, to],
        )?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('compact_revision', ?1), ('compact_done', ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![target, to],
        )?;
        tx.commit()
    }

    fn free_pages(&self) -> rusqlite::Result<i64> {
        self.conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))
    }

    /// Gives free pages back to the file system, except a reserve the next
    /// interval's writes will reuse, and truncates the WAL if it grew past
    /// its limit (a long read can hold checkpoints back).
    ///
    /// Vacuuming moves live pages, which costs writes (SD-card wear), and
    /// under steady churn every freed page is reused by the next interval's
    /// writes anyway. So the reserve is what both this and the previous
    /// compaction freed (the steady churn); a burst above it, or a drop in
    /// churn, is released, and the file stays near live data + one interval
    /// of history.
    fn reclaim(&mut self, free_before: i64) -> rusqlite::Result<()> {
        let free = self.free_pages()?;
        let freed = (free - free_before).max(0);
        let reserve = freed.min(self.freed_prev);
        self.freed_prev = freed;
        let release = free - reserve;
        let vacuumed = release > 64;
        if vacuumed {
            let mut stmt = self
                .conn
                .prepare(&format!("PRAGMA incremental_vacuum({release})"))?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
        }
        // Otherwise leave checkpoints to the checkpointer: an extra one
        // only splits the coalescing of pages rewritten by later commits,
        // and truncating makes the file system allocate the WAL again.
        let wal_bytes = std::fs::metadata(wal_path(&self.shared.path))
            .map(|m| m.len())
            .unwrap_or(0);
        if vacuumed || wal_bytes > self.opts.journal_size_limit.max(0) as u64 {
            self.checkpoint_truncate()?;
        }
        Ok(())
    }

    fn checkpoint_truncate(&mut self) -> rusqlite::Result<()> {
        let _guard = self.checkpointer.as_ref().map(|c| c.lock.lock());
        if !checkpoint(&self.conn, "TRUNCATE")? {
            // A long read holds frames back; the next compaction retries.
            tracing::debug!("WAL not truncated: a reader still uses it");
        }
        Ok(())
    }

    fn finish(&mut self) {
        // Its connection must be closed for the last checkpoint to truncate.
        drop(self.checkpointer.take());
        if let Err(e) = self.checkpoint_truncate() {
            tracing::debug!(error = %e, "final checkpoint skipped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    fn quiet() -> SqliteOptions {
        SqliteOptions {
            compaction_interval: None,
            synchronous: Synchronous::Normal,
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_sustained_writes() {
        // 64 KiB checkpoint threshold, 256 KiB cap; ~6 MiB written in all.
        // Commits never checkpoint, so without the checkpointer and the
        // writer's cap the WAL would hold it all; the cap holds whatever the
        // background thread's pace (one batch of ~200 KiB may pass it).
        let s = SqliteStore::open_temp(SqliteOptions {
            wal_autocheckpoint_pages: 64,
            journal_size_limit: 256 << 10,
            ..quiet()
        })
        .unwrap();
        let value = Bytes::from(vec![b'x'; 1500]);
        let wal = wal_path(s.path());
        let mut largest = 0;
        for round in 0..40 {
            let mut tasks = Vec::new();
            for i in 0..100 {
                let s = s.clone();
                let v = value.clone();
                tasks.push(tokio::spawn(async move {
                    s.create(&format!("/r/{round}/{i}"), v).await
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
        assert!(largest < 1 << 20, "the WAL grew to {largest} bytes");
        // Every write is still there after the checkpoints.
        assert_eq!(s.count("/r/").await.unwrap(), 4000);
    }

    #[tokio::test]
    async fn create_get_update_delete_with_cas() {
        let s = SqliteStore::open_temp(quiet()).unwrap();
        let a = s.create("/r/a", b("1")).await.unwrap();
        assert_eq!((a.create_revision, a.mod_revision), (1, 1));
        assert!(
            matches!(s.create("/r/a", b("x")).await, Err(StoreError::AlreadyExists(k)) if k == "/r/a")
        );

        let a2 = s.update("/r/a", 1, b("2")).await.unwrap();
        assert_eq!((a2.create_revision, a2.mod_revision), (1, 2));
        match s.update("/r/a", 1, b("3")).await {
            Err(StoreError::Conflict(cur)) => {
                assert_eq!(cur.mod_revision, 2);
                assert_eq!(cur.value, b("2"));
            }
            other => panic!("expected Conflict, got {other:?}"),
        }
        let a3 = s.update("/r/a", 0, b("3")).await.unwrap();
        assert_eq!(a3.mod_revision, 3);
        assert!(matches!(
            s.update("/r/missing", 0, b("x")).await,
            Err(StoreError::NotFound(_))
        ));

        assert!(
            matches!(s.delete("/r/a", 2).await, Err(StoreError::Conflict(c)) if c.mod_revision == 3)
        );
        let gone = s.delete("/r/a", 3).await.unwrap();
        assert_eq!((gone.mod_revision, gone.create_revision), (4, 1));
        assert_eq!(gone.value, b("3"));
        assert_eq!(s.get("/r/a", None).await.unwrap(), None);
        assert!(matches!(
            s.delete("/r/a", 0).await,
            Err(StoreError::NotFound(_))
        ));

        let again = s.create("/r/a", b("new")).await.unwrap();
        assert_eq!((again.create_revision, again.mod_revision), (5, 5));
        assert_eq!(s.current_revision(), 5);
        s.close().await;
        assert!(matches!(s.get("/r/a", None).await, Err(StoreError::Closed)));
        assert!(matches!(
            s.create("/r/b", b("x")).await,
            Err(StoreError::Closed)
        ));
    }

    #[tokio::test]
    async fn list_prefix_pagination_and_remaining() {
        let s = SqliteStore::open_temp(quiet()).unwrap();
        for k in ["/p/a", "/p/b", "/p/c", "/p/d", "/pa/x", "/o/z"] {
            s.create(k, b(k)).await.unwrap();
        }
        let all = s.list("/p/", ListOptions::default()).await.unwrap();
        let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/p/a", "/p/b", "/p/c", "/p/d"]);
        assert_eq!((all.revision, all.remaining), (6, 0));

        let page1 = s
            .list(
                "/p/",
                ListOptions {
                    limit: Some(3),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page1.items.len(), 3);
        assert_eq!(page1.remaining, 1);
        let page2 = s
            .list(
                "/p/",
                ListOptions {
                    limit: Some(3),
                    start_after: Some(page1.items[2].key.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page2
                .items
                .iter()
                .map(|kv| kv.key.as_str())
                .collect::<Vec<_>>(),
            ["/p/d"]
        );
        assert_eq!(page2.remaining, 0);
        assert_eq!(s.count("/p/").await.unwrap(), 4);
        assert_eq!(s.count("/p").await.unwrap(), 5);
        assert_eq!(
            s.list("", ListOptions::default())
                .await
                .unwrap()
                .items
                .len(),
            6
        );
    }

    /// The same history read from memory (window) and from SQLite (no window).
    async fn check_history(window_events: usize) {
        let mut opts = quiet();
        opts.window.max_events = window_events;
        let s = SqliteStore::open_temp(opts).unwrap();
        s.create("/h/a", b("a1")).await.unwrap(); // 1
        s.create("/h/b", b("b1")).await.unwrap(); // 2
        s.update("/h/a", 1, b("a2")).await.unwrap(); // 3
        s.delete("/h/b", 2).await.unwrap(); // 4
        s.create("/h/c", b("c1")).await.unwrap(); // 5
        s.create("/h/b", b("b2")).await.unwrap(); // 6

        let at = |r: Revision| ListOptions {
            revision: Some(r),
            ..Default::default()
        };
        let l2 = s.list("/h/", at(2)).await.unwrap();
        assert_eq!(l2.revision, 2);
        let got: Vec<_> = l2
            .items
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone(), kv.mod_revision))
            .collect();
        assert_eq!(got, [("/h/a", b("a1"), 1), ("/h/b", b("b1"), 2)]);
        let l4 = s.list("/h/", at(4)).await.unwrap();
        let got: Vec<_> = l4
            .items
            .iter()
            .map(|kv| (kv.key.as_str(), kv.mod_revision))
            .collect();
        assert_eq!(got, [("/h/a", 3)]);
        let l5 = s
            .list(
                "/h/",
                ListOptions {
                    revision: Some(5),
                    limit: Some(1),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(l5.items[0].key, "/h/a");
        assert_eq!(l5.remaining, 1);
        let l5b = s
            .list(
                "/h/",
                ListOptions {
                    revision: Some(5),
                    limit: Some(1),
                    start_after: Some("/h/a".into()),
                },
            )
            .await
            .unwrap();
        assert_eq!(l5b.items[0].key, "/h/c");
        assert_eq!(l5b.remaining, 0);

        assert_eq!(
            s.get("/h/a", Some(2)).await.unwrap().unwrap().value,
            b("a1")
        );
        assert_eq!(s.get("/h/b", Some(5)).await.unwrap(), None);
        let b6 = s.get("/h/b", Some(6)).await.unwrap().unwrap();
        assert_eq!((b6.create_revision, b6.value), (6, b("b2")));
        assert_eq!(s.get("/h/c", Some(4)).await.unwrap(), None);
        assert!(matches!(
            s.get("/h/a", Some(7)).await,
            Err(StoreError::FutureRevision(7))
        ));
        assert!(matches!(
            s.list("/h/", at(9)).await,
            Err(StoreError::FutureRevision(9))
        ));

        s.compact(4).await.unwrap();
        assert_eq!(s.compacted_revision(), 4);
        assert!(matches!(
            s.get("/h/a", Some(3)).await,
            Err(StoreError::Compacted {
                requested: 3,
                oldest: 4
            })
        ));
        assert!(matches!(
            s.list("/h/", at(2)).await,
            Err(StoreError::Compacted { .. })
        ));
        // At the floor itself the state is still exact.
        let l4 = s.list("/h/", at(4)).await.unwrap();
        assert_eq!(
            l4.items
                .iter()
                .map(|kv| kv.mod_revision)
                .collect::<Vec<_>>(),
            [3]
        );
        assert_eq!(s.get("/h/b", Some(4)).await.unwrap(), None);
        assert_eq!(
            s.get("/h/a", Some(5)).await.unwrap().unwrap().value,
            b("a2")
        );
    }

    #[tokio::test]
    async fn history_from_the_window() {
        check_history(10_000).await;
    }

    #[tokio::test]
    async fn history_from_sqlite() {
        check_history(1).await;
    }

    #[tokio::test]
    async fn compaction_removes_superseded_rows_only() {
        let s = SqliteStore::open_temp(quiet()).unwrap();
        s.create("/c/a", b("1")).await.unwrap(); // 1
        s.update("/c/a", 0, b("2")).await.unwrap(); // 2
        s.create("/c/b", b("1")).await.unwrap(); // 3
        s.delete("/c/b", 0).await.unwrap(); // 4
        s.update("/c/a", 0, b("3")).await.unwrap(); // 5
        s.compact(4).await.unwrap();
        let path = s.path().to_path_buf();
        let conn = Connection::open(&path).unwrap();
        let ids: Vec<i64> = conn
            .prepare("SELECT id FROM kv ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Rev 1 superseded by 2; 3 and 4 are a deleted key; 2 is read at 4.
        assert_eq!(ids, [2, 5]);
    }

    #[tokio::test]
    async fn watch_replays_then_streams_without_gaps_under_concurrent_writes() {
        let s = SqliteStore::open_temp(quiet()).unwrap();
        for i in 0..20 {
            s.create(&format!("/w/pre{i}"), b("x")).await.unwrap();
        }
        let mut writers = Vec::new();
        for t in 0..8 {
            let s = s.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..50 {
                    s.create(&format!("/w/t{t}-{i}"), b("v")).await.unwrap();
                }
            }));
        }
        // Start while writes are in flight, from a revision in the window.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut w = s.watch("/w/", 10).unwrap();
        let mut other = s.watch("/other/", 0).unwrap();
        for h in writers {
            h.await.unwrap();
        }
        let last = s.current_revision();
        assert_eq!(last, 420);
        let mut expected = 11;
        while expected <= last {
            let e = w.next().await.unwrap().unwrap();
            assert_eq!(e.revision(), expected);
            assert_eq!(e.kind, EventKind::Created);
            expected += 1;
        }
        s.create("/other/x", b("1")).await.unwrap();
        assert_eq!(other.next().await.unwrap().unwrap().kv.key, "/other/x");
        s.close().await;
        assert!(w.next().await.is_none());
    }

    #[tokio::test]
    async fn watch_events_carry_kinds_and_previous_values() {
        let s = SqliteStore::open_temp(quiet()).unwrap();
        let mut w = s.watch("/e/", 0).unwrap();
        s.create("/e/a", b("1")).await.unwrap();
        s.update("/e/a", 0, b("2")).await.unwrap();
        s.delete("/e/a", 0).await.unwrap();
        let e1 = w.next().await.unwrap().unwrap();
        let e2 = w.next().await.unwrap().unwrap();
        let e3 = w.next().await.unwrap().unwrap();
        assert_eq!((e1.kind, e1.prev.is_none()), (EventKind::Created, true));
        assert_eq!(
            (e2.kind, e2.prev.unwrap().value),
            (EventKind::Updated, b("1"))
        );
        assert_eq!(
            (e3.kind, e3.kv.mod_revision, e3.kv.value),
            (EventKind::Deleted, 3, b("2"))
        );
    }

    #[tokio::test]
    async fn watch_from_compacted_revision_is_refused() {
        let s = SqliteStore::open_temp(quiet()).unwrap();
        for i in 0..5 {
            s.create(&format!("/k/{i}"), b("v")).await.unwrap();
        }
        assert!(s.watch("/k/", 1).is_ok());
        s.compact(3).await.unwrap();
        match s.watch("/k/", 2) {
            Err(StoreError::Compacted { requested, oldest }) => {
                assert_eq!((requested, oldest), (2, 3))
            }
            other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
        }
        let mut w = s.watch("/k/", 3).unwrap();
        assert_eq!(w.next().await.unwrap().unwrap().revision(), 4);
    }

    #[tokio::test]
    async fn reopen_keeps_data_revision_and_watch_window() {
        let s = SqliteStore::open_temp(quiet()).unwrap();
        let path = s.path().to_path_buf();
        s.create("/r/a", b("1")).await.unwrap(); // 1
        s.create("/r/b", b("2")).await.unwrap(); // 2
        s.update("/r/a", 1, b("3")).await.unwrap(); // 3
        s.create("/r/z", b("z")).await.unwrap(); // 4
        s.delete("/r/z", 4).await.unwrap(); // 5: the newest row is a tombstone
        s.compact(5).await.unwrap();
        s.close().await;
        // Keep the scratch dir alive by reopening before `s` is dropped.
        let r = SqliteStore::open(&path, quiet()).unwrap();
        assert_eq!(r.current_revision(), 5);
        assert_eq!(r.compacted_revision(), 5);
        let a = r.get("/r/a", None).await.unwrap().unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.value), (1, 3, b("3")));
        assert_eq!(r.get("/r/z", None).await.unwrap(), None);
        let next = r.create("/r/c", b("c")).await.unwrap();
        assert_eq!(next.mod_revision, 6);
        r.update("/r/b", 2, b("4")).await.unwrap(); // 7
        r.close().await;

        let r2 = SqliteStore::open(&path, quiet()).unwrap();
        assert_eq!(r2.current_revision(), 7);
        // The window was rebuilt from the table: resume and roll back.
        let mut w = r2.watch("/r/", 5).unwrap();
        let e6 = w.next().await.unwrap().unwrap();
        let e7 = w.next().await.unwrap().unwrap();
        assert_eq!((e6.kind, e6.revision()), (EventKind::Created, 6));
        assert_eq!(
            (e7.kind, e7.prev.unwrap().value),
            (EventKind::Updated, b("2"))
        );
        assert_eq!(
            r2.get("/r/b", Some(6)).await.unwrap().unwrap().value,
            b("2")
        );
        r2.close().await;
        drop(s);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_get_distinct_increasing_revisions() {
        let s = SqliteStore::open_temp(quiet()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..20 {
                    revs.push(
                        s.create(&format!("/c/{t}/{i}"), b("v"))
                            .await
                            .unwrap()
                            .mod_revision,
                    );
                }
                revs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let revs = t.await.unwrap();
            assert!(revs.windows(2).all(|w| w[0] < w[1]));
            all.extend(revs);
        }
        all.sort();
        assert_eq!(all, (1..=1280).collect::<Vec<_>>());
        assert_eq!(s.current_revision(), 1280);
        let stats = s.stats();
        assert_eq!(stats.writes, 1280);
        assert!(stats.batches < 1280, "writes were batched: {stats:?}");
    }

    fn disk_bytes(path: &Path) -> u64 {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        size(path) + size(&wal_path(path))
    }

    #[tokio::test]
    async fn compaction_shrinks_the_files_after_churn() {
        let s = SqliteStore::open_temp(quiet()).unwrap();
        let value = Bytes::from(vec![b'x'; 4096]);
        for round in 0..20 {
            let mut tasks = Vec::new();
            for k in 0..50 {
                let s = s.clone();
                let value = value.clone();
                tasks.push(tokio::spawn(async move {
                    let key = format!("/churn/{k}");
                    if round == 0 {
                        s.create(&key, value).await.unwrap();
                    } else {
                        s.update(&key, 0, value).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
        let before = disk_bytes(s.path());
        assert!(before > 1000 * 4096, "history is on disk: {before}");
        // The first compaction keeps the freed pages for the next interval's
        // writes; the churn stopped, so the next one gives them back.
        s.compact(s.current_revision()).await.unwrap();
        s.create("/churn/last", b("x")).await.unwrap();
        s.compact(s.current_revision()).await.unwrap();
        let after = disk_bytes(s.path());
        // 50 live values of 4 KiB remain (each needs an overflow page).
        assert!(
            after < 50 * 3 * 4096 + 64 * 4096,
            "before {before}, after {after}"
        );
        assert!(after * 4 < before, "before {before}, after {after}");
        assert_eq!(s.count("/churn/").await.unwrap(), 51);
        assert_eq!(s.stats().compactions, 2);
    }

    #[tokio::test]
    async fn scheduled_compaction_keeps_recent_revisions() {
        let opts = SqliteOptions {
            compaction_interval: Some(Duration::from_millis(50)),
            compaction_retain: 10,
            ..quiet()
        };
        let s = SqliteStore::open_temp(opts).unwrap();
        s.create("/s/a", b("0")).await.unwrap();
        for i in 1..100 {
            s.update("/s/a", 0, b(&i.to_string())).await.unwrap();
        }
        // A tick compacts to the revision seen at the previous tick, at most
        // current - 10; once writes stop that settles at 90.
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.compacted_revision() < 90 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(s.compacted_revision(), 90);
        assert_eq!(
            s.get("/s/a", Some(95)).await.unwrap().unwrap().value,
            b("94")
        );
        assert!(matches!(
            s.get("/s/a", Some(50)).await,
            Err(StoreError::Compacted { .. })
        ));
    }
}
