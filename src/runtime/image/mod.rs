//! The node's image store: pulls from OCI distribution registries, imports
//! archives, and keeps every layer unpacked once, as an overlayfs lowerdir
//! shared read-only by all the containers that use it.
//!
//! On disk, under `<data-dir>/agent/images/` (where archives dropped for
//! air-gapped installs also live):
//!
//! ```text
//! blobs/sha256/<hex>    manifests and configs, content-addressed
//! layers/<hex>/fs       a layer unpacked, named by its diff-id
//! layers/<hex>/complete written (with the layer's size) after the unpack
//!                       was synced; the directory is renamed into place
//!                       only then, so nobody ever sees half a layer
//! images/<hash>.json    one record per reference (tag or digest): its
//!                       manifest, config and layers; mtime = last use
//! tmp/<pid>-<uuid>/     staging, removed when its process is gone
//! lock                  flock held while records or layers are removed
//! ```
//!
//! Records are read from disk on every lookup, so an `rk3s image import` in
//! another process is seen by a running server at once. Layer blobs are
//! deleted once unpacked: on small devices the disk is the scarce thing.

mod archive;
pub mod cli;
pub(crate) mod distribution;
mod error;
mod manifest;
mod pull;
pub mod reference;
mod registries;
mod unpack;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use error::ImageError;
pub use registries::{
    HostAuth, HostConfig, HostTls, Mirror, RegistriesConfig, RegistryCredential,
    credentials_from_docker_config_json,
};

use crate::runtime::cri::ImageSpec;

/// imagePullPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The pod spec's value; `None` for an unknown one.
    pub fn from_k8s(policy: &str) -> Option<Self> {
        match policy {
            "Always" => Some(Self::Always),
            "IfNotPresent" => Some(Self::IfNotPresent),
            "Never" => Some(Self::Never),
            _ => None,
        }
    }
}

/// What the runtime needs from an image's config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
}

/// An image ready to run.
#[derive(Clone, Debug)]
pub struct PulledImage {
    /// `layers` are the unpacked layer dirs, lowest first; `image_id` is
    /// `repo@sha256:...` (containerStatuses[].imageID).
    pub spec: ImageSpec,
    pub config: ImageConfig,
    /// Bytes of the image as the registry serves it (config + layers).
    pub size: u64,
    /// False when the image was already present and nothing was fetched.
    pub pulled: bool,
    /// How long `ensure` took, waiting for a shared pull included.
    pub duration: Duration,
}

/// One reference the store holds (a row of `rk3s image ls`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// Normalised, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// `repo@sha256:...`.
    pub image_id: String,
    /// The config digest (`crictl images`' IMAGE ID).
    pub id: String,
    pub size: u64,
    pub last_used: SystemTime,
}

/// What the store records for one reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ImageRecord {
    reference: String,
    repo_digest: String,
    /// Config digest.
    id: String,
    manifest: String,
    /// Diff-ids, lowest first.
    layers: Vec<String>,
    size: u64,
    config: ImageConfig,
}

type SharedPull = Shared<BoxFuture<'static, Result<PulledImage, ImageError>>>;

struct Inner {
    root: PathBuf,
    registries: RegistriesConfig,
    /// Pulls under way, by normalised reference: later callers wait on
    /// the same one.
    inflight: Mutex<HashMap<String, (u64, SharedPull)>>,
    seq: AtomicU64,
}

/// The node's image store; cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// Holds the store's lock file locked; unlocks on drop.
struct StoreLock(#[allow(dead_code)] nix::fcntl::Flock<fs::File>);

impl ImageStore {
    /// Open (creating) the store at `root`, `<data-dir>/agent/images`.
    pub fn open(root: PathBuf, registries: RegistriesConfig) -> Result<Self, ImageError> {
        for dir in ["blobs/sha256", "layers", "images", "tmp"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(|e| ImageError::io(&d, e))?;
        }
        let store = Self {
            inner: Arc::new(Inner {
                root,
                registries,
                inflight: Mutex::new(HashMap::new()),
                seq: AtomicU64::new(0),
            }),
        };
        store.clean_tmp();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn registries(&self) -> &RegistriesConfig {
        &self.inner.registries
    }

    /// Make `reference` present as `policy` says; concurrent calls for
    /// one reference share one pull (with the first caller's credentials).
    pub async fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        credentials: &[RegistryCredential],
    ) -> Result<PulledImage, ImageError> {
        let start = Instant::now();
        let parsed = reference::parse(reference)?;
        let normalized = parsed.whole();
        if policy != PullPolicy::Always
            && let Some(mut image) = self.lookup(&normalized, reference)
        {
            self.touch(&normalized);
            image.duration = start.elapsed();
            return Ok(image);
        }
        if policy == PullPolicy::Never {
            return Err(ImageError::NeverPull(reference.to_string()));
        }
        let (id, pull) = {
            let mut inflight = self.inner.inflight.lock();
            inflight
                .entry(normalized.clone())
                .or_insert_with(|| {
                    let id = self.inner.seq.fetch_add(1, Ordering::Relaxed);
                    let store = self.clone();
                    let credentials = credentials.to_vec();
                    let name = normalized.clone();
                    let task =
                        tokio::spawn(
                            async move { pull::pull(&store, &parsed, &credentials).await },
                        );
                    let shared = async move {
                        match task.await {
                            Ok(r) => r,
                            Err(e) => Err(ImageError::Pull {
                                reference: name,
                                message: format!("pull task failed: {e}"),
                            }),
                        }
                    }
                    .boxed()
                    .shared();
                    (id, shared)
                })
                .clone()
        };
        let result = pull.await;
        {
            let mut inflight = self.inner.inflight.lock();
            if inflight.get(&normalized).is_some_and(|(i, _)| *i == id) {
                inflight.remove(&normalized);
            }
        }
        let mut image = result.map_err(|e| e.in_pull(reference))?;
        image.spec.reference = reference.to_string();
        image.duration = start.elapsed();
        Ok(image)
    }

    /// The image if present locally (`pulled` false).
    pub fn get(&self, reference: &str) -> Option<PulledImage> {
        let normalized = reference::normalize(reference).ok()?;
        self.lookup(&normalized, reference)
    }

    fn lookup(&self, normalized: &str, as_given: &str) -> Option<PulledImage> {
        let record = self.read_record(normalized)?;
        self.to_pulled(&record, as_given, false)
    }

    /// The image of a record, if all its layers are still on disk.
    fn to_pulled(&self, record: &ImageRecord, as_given: &str, pulled: bool) -> Option<PulledImage> {
        let mut layers = Vec::with_capacity(record.layers.len());
        for diff_id in &record.layers {
            if !self.layer_present(diff_id) {
                return None;
            }
            layers.push(self.layer_dir(diff_id).ok()?.join("fs"));
        }
        Some(PulledImage {
            spec: ImageSpec {
                reference: as_given.to_string(),
                image_id: record.repo_digest.clone(),
                layers,
                stop_signal: record.config.stop_signal.clone(),
            },
            config: record.config.clone(),
            size: record.size,
            pulled,
            duration: Duration::ZERO,
        })
    }

    pub fn list(&self) -> Vec<ImageSummary> {
        let mut out: Vec<ImageSummary> = self
            .records()
            .into_iter()
            .map(|(r, last_used)| ImageSummary {
                reference: r.reference,
                image_id: r.repo_digest,
                id: r.id,
                size: r.size,
                last_used,
            })
            .collect();
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        out
    }

    /// Remove a reference (or every reference of an image, given its id or
    /// an unambiguous prefix of it), then the layers nothing uses any more.
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let _lock = self.lock()?;
        let targets = self.resolve_for_removal(reference)?;
        for r in targets {
            let path = self.record_path(&r);
            fs::remove_file(&path).map_err(|e| ImageError::io(&path, e))?;
        }
        self.collect_garbage()?;
        Ok(())
    }

    fn resolve_for_removal(&self, reference: &str) -> Result<Vec<String>, ImageError> {
        if let Ok(normalized) = reference::normalize(reference)
            && self.read_record(&normalized).is_some()
        {
            return Ok(vec![normalized]);
        }
        // An image id: `sha256:<hex>` or a hex prefix (at least 4 digits).
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let records = self.records();
            let ids: HashSet<&str> = records
                .iter()
                .map(|(r, _)| r.id.as_str())
                .filter(|id| id.trim_start_matches("sha256:").starts_with(hex))
                .collect();
            if ids.len() == 1 {
                return Ok(records
                    .iter()
                    .filter(|(r, _)| ids.contains(r.id.as_str()))
                    .map(|(r, _)| r.reference.clone())
                    .collect());
            }
            if ids.len() > 1 {
                return Err(ImageError::Invalid(format!(
                    "image id prefix {reference:?} is ambiguous"
                )));
            }
        }
        Err(ImageError::NoSuchImage(reference.to_string()))
    }

    /// Import an OCI archive or a `docker save` archive (optionally gzip or
    /// zstd compressed); returns the references it named.
    pub fn import(&self, archive: &Path) -> Result<Vec<String>, ImageError> {
        archive::import(self, archive)
    }

    /// Import every archive in `dir` (`*.tar`, `*.tar.gz`, `*.tgz`,
    /// `*.tar.zst`) that changed since it was last imported: the air-gapped
    /// images of `<data-dir>/agent/images/`. A bad archive is logged and
    /// skipped, so one broken file does not stop a node from starting.
    pub fn import_dir(&self, dir: &Path) -> Result<Vec<String>, ImageError> {
        archive::import_dir(self, dir)
    }

    /// Remove images none of `in_use` names (references as pods give
    /// them, or image ids), least recently used first, until at least
    /// `bytes_to_free` bytes of layers were freed. Returns the bytes freed.
    pub fn prune_unused(
        &self,
        in_use: &HashSet<String>,
        bytes_to_free: u64,
    ) -> Result<u64, ImageError> {
        self.prune_unused_older_than(in_use, bytes_to_free, Duration::ZERO)
    }

    /// `prune_unused`, sparing images used (or imported) less than
    /// `min_age` ago, as the kubelet's image GC spares images younger than
    /// its minimum GC age: an image just pulled or imported is about to be
    /// used.
    pub fn prune_unused_older_than(
        &self,
        in_use: &HashSet<String>,
        bytes_to_free: u64,
        min_age: Duration,
    ) -> Result<u64, ImageError> {
        let now = SystemTime::now();
        let in_use: HashSet<String> = in_use
            .iter()
            .map(|r| reference::normalize(r).unwrap_or_else(|_| r.clone()))
            .collect();
        let _lock = self.lock()?;
        let mut records = self.records();
        records.sort_by_key(|(_, used)| *used);
        let mut freed = 0u64;
        for (record, used) in records {
            if freed >= bytes_to_free {
                break;
            }
            if now.duration_since(used).unwrap_or_default() < min_age {
                continue;
            }
            if in_use.contains(&record.reference)
                || in_use.contains(&record.repo_digest)
                || in_use.contains(&record.id)
            {
                continue;
            }
            let path = self.record_path(&record.reference);
            fs::remove_file(&path).map_err(|e| ImageError::io(&path, e))?;
            tracing::info!(image = %record.reference, "removing unused image");
            freed += self.collect_garbage()?;
        }
        Ok(freed)
    }

    // ---- on-disk layout ------------------------------------------------

    fn record_path(&self, normalized: &str) -> PathBuf {
        let name = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            normalized.as_bytes(),
        ));
        self.inner.root.join("images").join(format!("{name}.json"))
    }

    fn read_record(&self, normalized: &str) -> Option<ImageRecord> {
        let bytes = fs::read(self.record_path(normalized)).ok()?;
        let record: ImageRecord = serde_json::from_slice(&bytes).ok()?;
        (record.reference == normalized).then_some(record)
    }

    fn records(&self) -> Vec<(ImageRecord, SystemTime)> {
        let dir = self.inner.root.join("images");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                let bytes = fs::read(e.path()).ok()?;
                let record: ImageRecord = serde_json::from_slice(&bytes).ok()?;
                let used = e.metadata().ok()?.modified().ok()?;
                Some((record, used))
            })
            .collect()
    }

    /// Mark a reference as used now (for least-recently-used pruning).
    fn touch(&self, normalized: &str) {
        if let Ok(f) = fs::File::options()
            .append(true)
            .open(self.record_path(normalized))
        {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        let hex = manifest::check_digest(diff_id)?;
        Ok(self.inner.root.join("layers").join(hex))
    }

    fn layer_present(&self, diff_id: &str) -> bool {
        self.layer_dir(diff_id)
            .is_ok_and(|d| d.join("complete").is_file())
    }

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = manifest::check_digest(digest)?;
        Ok(self.inner.root.join("blobs/sha256").join(hex))
    }

    /// A fresh staging directory of this process.
    pub(crate) fn tmp_dir(&self) -> Result<TmpDir, ImageError> {
        let path = self.inner.root.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&path).map_err(|e| ImageError::io(&path, e))?;
        Ok(TmpDir(path))
    }

    /// Remove staging dirs whose process is gone (a crash mid-pull).
    fn clean_tmp(&self) {
        let dir = self.inner.root.join("tmp");
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|p| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
            });
            if !alive {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Unpack the layer blob at `blob` as `diff_id`, unless it already is.
    pub(crate) fn add_layer(&self, diff_id: &str, blob: &Path) -> Result<(), ImageError> {
        if self.layer_present(diff_id) {
            return Ok(());
        }
        let dest = self.layer_dir(diff_id)?;
        let tmp = self.tmp_dir()?;
        let fs_dir = tmp.0.join("fs");
        fs::create_dir(&fs_dir).map_err(|e| ImageError::io(&fs_dir, e))?;
        unpack::unpack_layer(blob, diff_id, &fs_dir)?;
        let size = unpack::disk_usage(&fs_dir);
        // Everything unpacked reaches the disk before the marker says so.
        let dir = fs::File::open(&tmp.0).map_err(|e| ImageError::io(&tmp.0, e))?;
        nix::unistd::syncfs(&dir).map_err(|e| ImageError::io(&tmp.0, e))?;
        write_synced(&tmp.0.join("complete"), size.to_string().as_bytes())?;
        match fs::rename(&tmp.0, &dest) {
            Ok(()) => {}
            // Another pull or import got there first: theirs is as good.
            Err(_) if self.layer_present(diff_id) => {}
            Err(e) => {
                // A leftover without a marker (crash before the rename
                // could not leave one, but a hand-made one could).
                let _ = fs::remove_dir_all(&dest);
                fs::rename(&tmp.0, &dest).map_err(|_| ImageError::io(&dest, e))?;
            }
        }
        Ok(())
    }

    /// Store a manifest or config blob, verified.
    pub(crate) fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        manifest::verify(digest, bytes, digest)?;
        let path = self.blob_path(digest)?;
        if path.is_file() {
            return Ok(());
        }
        let tmp = self.tmp_dir()?;
        let staged = tmp.0.join("blob");
        write_synced(&staged, bytes)?;
        fs::rename(&staged, &path).map_err(|e| ImageError::io(&path, e))
    }

    /// Record `record` (its layers must be unpacked and its blobs stored).
    fn commit(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let _lock = self.lock()?;
        // A concurrent `rm` may have collected a layer we found present.
        if let Some(missing) = record.layers.iter().find(|d| !self.layer_present(d)) {
            return Err(ImageError::Invalid(format!(
                "layer {missing} was removed while the image was being added; retry"
            )));
        }
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| ImageError::Invalid(format!("cannot encode image record: {e}")))?;
        let tmp = self.tmp_dir()?;
        let staged = tmp.0.join("record.json");
        write_synced(&staged, &bytes)?;
        let path = self.record_path(&record.reference);
        fs::rename(&staged, &path).map_err(|e| ImageError::io(&path, e))
    }

    fn lock(&self) -> Result<StoreLock, ImageError> {
        let path = self.inner.root.join("lock");
        let file = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io(&path, e))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map(StoreLock)
            .map_err(|(_, e)| ImageError::io(&path, e))
    }

    /// Remove layers and blobs no record uses; returns the layer bytes
    /// freed. Call with the lock held.
    fn collect_garbage(&self) -> Result<u64, ImageError> {
        let records = self.records();
        let mut layers: HashSet<String> = HashSet::new();
        let mut blobs: HashSet<String> = HashSet::new();
        for (r, _) in &records {
            for l in &r.layers {
                layers.insert(l.trim_start_matches("sha256:").to_string());
            }
            blobs.insert(r.id.trim_start_matches("sha256:").to_string());
            blobs.insert(r.manifest.trim_start_matches("sha256:").to_string());
        }
        let mut freed = 0;
        let layer_root = self.inner.root.join("layers");
        for e in fs::read_dir(&layer_root)
            .map_err(|e| ImageError::io(&layer_root, e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if layers.contains(&name) {
                continue;
            }
            let size = fs::read_to_string(e.path().join("complete"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0);
            // Rename first so a half-deleted layer never looks complete.
            let staging = self.tmp_dir()?;
            let doomed = staging.0.join("doomed");
            if fs::rename(e.path(), &doomed).is_ok() {
                let _ = fs::remove_dir_all(&doomed);
                freed += size;
            }
        }
        let blob_root = self.inner.root.join("blobs/sha256");
        for e in fs::read_dir(&blob_root)
            .map_err(|e| ImageError::io(&blob_root, e))?
            .flatten()
        {
            if !blobs.contains(&*e.file_name().to_string_lossy()) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(freed)
    }
}

/// A staging directory, removed on drop.
pub(crate) struct TmpDir(pub PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut f = fs::File::create(path).map_err(|e| ImageError::io(path, e))?;
    f.write_all(bytes).map_err(|e| ImageError::io(path, e))?;
    f.sync_all().map_err(|e| ImageError::io(path, e))
}
