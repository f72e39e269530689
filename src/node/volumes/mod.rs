//! Pod volumes on the node (the kubelet's volume manager and plugins):
//! each volume of a pod becomes a host path the runtime bind-mounts into
//! containers.
//!
//! Layout, as the kubelet's: `<pods_dir>/<pod uid>/volumes/kubernetes.io~<plugin>/<name>`
//! for emptyDir, configMap, secret, downwardAPI and projected volumes;
//! hostPath and PersistentVolume (hostPath/local) volumes are the host
//! path itself. Secret, downwardAPI and projected volumes and emptyDirs of
//! medium Memory are tmpfs mounts, so their contents never touch the disk.
//! ConfigMap, secret, downwardAPI and projected contents are written with
//! the atomic writer and rewritten by a periodic resync, so running pods
//! see updates.

pub mod atomic_writer;
pub mod downward;
pub mod hostpath;
pub mod mounts;
pub mod mountutil;
mod sources;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;
use parking_lot::Mutex;
use tracing::debug;

pub use mounts::{MountError, container_mounts};

use crate::registry::strategy::kinds::quantity;

/// A volume could not be set up. Display is the FailedMount event message
/// the kubelet writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
}

/// Plugin directory names, as the kubelet's (`kubernetes.io~<plugin>`).
const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
const CONFIG_MAP: &str = "kubernetes.io~configmap";
const SECRET: &str = "kubernetes.io~secret";
const DOWNWARD_API: &str = "kubernetes.io~downward-api";
const PROJECTED: &str = "kubernetes.io~projected";

/// A service account token written into a projected volume, kept until
/// it is 80% through its life (as the kubelet's token manager).
#[derive(Clone)]
struct CachedToken {
    token: String,
    refresh_at: Instant,
}

pub struct VolumeManager {
    client: kube::Client,
    pods_dir: PathBuf,
    node_name: String,
    /// Pods whose volumes are set up, by uid: what the resync refreshes.
    pods: Mutex<HashMap<String, Pod>>,
    tokens: Mutex<HashMap<(String, String, String), CachedToken>>,
    /// One writer at a time: a resync and a pod sync must not race on the
    /// same volume directory.
    write_lock: tokio::sync::Mutex<()>,
}

impl VolumeManager {
    pub fn new(client: kube::Client, pods_dir: PathBuf, node_name: impl Into<String>) -> Self {
        VolumeManager {
            client,
            pods_dir,
            node_name: node_name.into(),
            pods: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// `<pods_dir>/<uid>/volumes`: everything this manager makes for a pod.
    pub fn pod_volumes_dir(&self, pod_uid: &str) -> PathBuf {
        self.pods_dir.join(pod_uid).join("volumes")
    }

    fn plugin_dir(&self, pod_uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_volumes_dir(pod_uid).join(plugin).join(name)
    }

    /// Set up every volume of `pod` (idempotent: a second call refreshes
    /// contents and keeps emptyDir data). Returns volume name -> host path.
    /// The first failing volume's error is returned (the agent records it
    /// as a FailedMount event and retries).
    pub async fn mount_pod_volumes(
        &self,
        pod: &Pod,
    ) -> Result<HashMap<String, PathBuf>, VolumeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() || uid.contains('/') || uid.starts_with('.') {
            return Err(VolumeError {
                volume: String::new(),
                message: format!("invalid pod uid {uid:?}"),
            });
        }
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        let mut out = HashMap::new();
        let _guard = self.write_lock.lock().await;
        for v in &volumes {
            let path = self
                .setup_volume(pod, &uid, v)
                .await
                .map_err(|message| VolumeError {
                    volume: v.name.clone(),
                    message,
                })?;
            out.insert(v.name.clone(), path);
        }
        self.pods.lock().insert(uid, pod.clone());
        Ok(out)
    }

    /// Tear down what `mount_pod_volumes` made: unmount the tmpfs mounts
    /// and remove `<pods_dir>/<uid>/volumes`. hostPath and PV data stay.
    pub async fn unmount_pod_volumes(&self, pod_uid: &str) -> std::io::Result<()> {
        self.pods.lock().remove(pod_uid);
        self.tokens.lock().retain(|k, _| k.0 != pod_uid);
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid.starts_with('.') {
            return Ok(());
        }
        let dir = self.pod_volumes_dir(pod_uid);
        let _guard = self.write_lock.lock().await;
        if !dir.exists() {
            return Ok(());
        }
        mountutil::unmount_all_under(&dir)?;
        // Never recurse into something still mounted (it could be a bind
        // of host data).
        if mountutil::mount_points()?
            .iter()
            .any(|p| p.starts_with(&dir))
        {
            return Err(std::io::Error::other(format!(
                "{} still has mounts",
                dir.display()
            )));
        }
        fs::remove_dir_all(&dir)
    }

    /// Pod uids with a volumes directory on disk (e.g. from before a
    /// restart), so the agent can tear down those of pods that are gone.
    pub fn pods_on_disk(&self) -> Vec<String> {
        fs::read_dir(&self.pods_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("volumes").is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Rewrite the contents of configMap, secret, downwardAPI and projected
    /// volumes of every pod with mounted volumes, from the current API
    /// objects (the pod itself re-read for downward API fields).
    pub async fn resync(&self) {
        let pods: Vec<Pod> = self.pods.lock().values().cloned().collect();
        for old in pods {
            let uid = old.metadata.uid.clone().unwrap_or_default();
            let ns = old.metadata.namespace.clone().unwrap_or_default();
            let name = old.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let pod = match api.get_opt(&name).await {
                Ok(Some(p)) if p.metadata.uid.as_deref() == Some(uid.as_str()) => p,
                Ok(_) => continue,
                Err(e) => {
                    debug!(pod = %name, "volume resync: {e}");
                    old
                }
            };
            let _guard = self.write_lock.lock().await;
            if !self.pods.lock().contains_key(&uid) {
                continue; // torn down meanwhile
            }
            for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
                if is_content_volume(v)
                    && let Err(e) = self.setup_volume(&pod, &uid, v).await
                {
                    debug!(pod = %name, volume = %v.name, "volume resync: {e}");
                }
            }
            self.pods.lock().insert(uid, pod);
        }
    }

    /// Run `resync` every `period` until the manager is dropped.
    pub fn spawn_resync(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { return };
                me.resync().await;
            }
        })
    }

    async fn setup_volume(&self, pod: &Pod, uid: &str, v: &Volume) -> Result<PathBuf, String> {
        if let Some(ed) = &v.empty_dir {
            let dir = self.plugin_dir(uid, EMPTY_DIR, &v.name);
            let fresh = !dir.exists();
            fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            match ed.medium.as_deref().unwrap_or("") {
                "" => {}
                "Memory" => {
                    let size = self.memory_volume_size(pod, ed.size_limit.as_ref()).await;
                    mountutil::mount_tmpfs(&dir, size, 0o777).map_err(|e| e.to_string())?;
                }
                other => return Err(format!("unsupported emptyDir medium {other:?}")),
            }
            // emptyDir is world-writable, as upstream (0777).
            if fresh {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
                    .map_err(|e| e.to_string())?;
                // Only once: later calls must not chown the pod's own files.
                apply_fs_group(pod, &dir);
            }
            return Ok(dir);
        }
        if let Some(hp) = &v.host_path {
            let path = PathBuf::from(&hp.path);
            hostpath::check_type(&path, hp.type_.as_deref().unwrap_or(""))?;
            return Ok(path);
        }
        if let Some(pvc) = &v.persistent_volume_claim {
            return self.claim_path(pod, &pvc.claim_name).await;
        }
        if v.ephemeral.is_some() {
            let claim = format!("{}-{}", pod.metadata.name.as_deref().unwrap_or(""), v.name);
            return self.claim_path(pod, &claim).await;
        }
        let (plugin, memory) = if v.config_map.is_some() {
            (CONFIG_MAP, false)
        } else if v.secret.is_some() {
            (SECRET, true)
        } else if v.downward_api.is_some() {
            (DOWNWARD_API, true)
        } else if v.projected.is_some() {
            (PROJECTED, true)
        } else {
            return Err("volume type is not supported by this node".into());
        };
        let dir = self.plugin_dir(uid, plugin, &v.name);
        let mut payload = self.payload(pod, uid, v).await?;
        fs_group_modes(pod, &mut payload);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if memory {
            mountutil::mount_tmpfs(&dir, None, 0o755).map_err(|e| e.to_string())?;
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        atomic_writer::write(&dir, &payload).map_err(|e| e.to_string())?;
        apply_fs_group(pod, &dir);
        Ok(dir)
    }

    /// The host path of a bound claim's PersistentVolume.
    async fn claim_path(&self, pod: &Pod, claim: &str) -> Result<PathBuf, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pvc = pvcs
            .get_opt(claim)
            .await
            .map_err(|e| {
                format!(
                    "error processing PVC {ns}/{claim}: failed to fetch PVC from API server: {e}"
                )
            })?
            .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
        let phase = pvc
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if phase != "Bound" || pv_name.is_empty() {
            return Err(format!(
                "PVC {ns}/{claim} has non-bound phase (\"{phase}\") or empty pvc.Spec.VolumeName (\"{pv_name}\")"
            ));
        }
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let pv = pvs
            .get_opt(&pv_name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolume \"{pv_name}\" not found"))?;
        let spec = pv.spec.unwrap_or_default();
        if let Some(hp) = spec.host_path {
            let path = PathBuf::from(&hp.path);
            hostpath::check_type(&path, hp.type_.as_deref().unwrap_or(""))?;
            Ok(path)
        } else if let Some(local) = spec.local {
            let path = PathBuf::from(&local.path);
            if !path.exists() {
                return Err(format!("path {:?} does not exist", local.path));
            }
            Ok(path)
        } else {
            Err(format!(
                "persistentvolume \"{pv_name}\": volume type is not supported by this node"
            ))
        }
    }

    async fn node_allocatable(&self) -> BTreeMap<String, Quantity> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.get_opt(&self.node_name).await {
            Ok(Some(n)) => n.status.and_then(|s| s.allocatable).unwrap_or_default(),
            _ => BTreeMap::new(),
        }
    }

    /// A memory-backed emptyDir's size: the smallest of the node's
    /// allocatable memory, the pod's memory limit and the volume's
    /// sizeLimit (upstream's calculateEmptyDirMemorySize).
    async fn memory_volume_size(&self, pod: &Pod, size_limit: Option<&Quantity>) -> Option<u64> {
        let bytes = |q: &Quantity| {
            quantity::parse(&q.0)
                .ok()
                .map(|q| nanos_to_units(q.0))
                .filter(|b| *b > 0)
        };
        let alloc = self.node_allocatable().await;
        let candidates = [
            alloc.get("memory").and_then(bytes),
            pod_memory_limit(pod),
            size_limit.and_then(bytes),
        ];
        candidates
            .into_iter()
            .flatten()
            .min()
            .and_then(|b| u64::try_from(b).ok())
    }
}

/// The pod's memory limit in bytes if every container sets one: the sum
/// over app containers, or the largest init container's if bigger.
fn pod_memory_limit(pod: &Pod) -> Option<i128> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()?
            .limits
            .as_ref()?
            .get("memory")
            .and_then(|q| quantity::parse(&q.0).ok())
            .map(|q| nanos_to_units(q.0))
    };
    let mut sum = 0i128;
    for c in &spec.containers {
        sum += limit(c)?;
    }
    let mut init_max = 0i128;
    for c in spec.init_containers.iter().flatten() {
        init_max = init_max.max(limit(c)?);
    }
    Some(sum.max(init_max))
}

/// Nano-units to whole units, rounded up.
fn nanos_to_units(n: i128) -> i128 {
    let q = n / 1_000_000_000;
    if n % 1_000_000_000 > 0 { q + 1 } else { q }
}

fn is_content_volume(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// securityContext.fsGroup: the volume's files belong to that group and
/// new files inherit it (setgid directories), as upstream's
/// SetVolumeOwnership. Best effort: a failure is logged.
fn apply_fs_group(pod: &Pod, dir: &Path) {
    let Some(gid) = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
    else {
        return;
    };
    let Ok(gid) = u32::try_from(gid) else { return };
    if let Err(e) = chown_group_recursive(dir, gid) {
        debug!(dir = %dir.display(), "fsGroup: {e}");
    }
}

fn chown_group_recursive(path: &Path, gid: u32) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    std::os::unix::fs::lchown(path, None, Some(gid))?;
    if meta.is_dir() {
        // setgid: files made later inherit the group.
        let mode = meta.permissions().mode() & 0o7777;
        fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o2000))?;
        for e in fs::read_dir(path)? {
            chown_group_recursive(&e?.path(), gid)?;
        }
    }
    Ok(())
}

/// Under fsGroup, API-data files are group-readable (upstream ORs 0440
/// into read-only volumes' files).
fn fs_group_modes(pod: &Pod, payload: &mut atomic_writer::Payload) {
    let has_fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .is_some();
    if has_fs_group {
        for f in payload.values_mut() {
            f.mode |= 0o440;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_memory_limits() {
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "32Mi"}}}],
            "initContainers": [{"name": "i", "resources": {"limits": {"memory": "128Mi"}}}]}}))
        .unwrap();
        assert_eq!(pod_memory_limit(&pod), Some(128 << 20));
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "64Mi"}}}, {"name": "b"}]}}))
        .unwrap();
        assert_eq!(pod_memory_limit(&pod), None);
    }

    #[test]
    fn volume_error_message() {
        let e = VolumeError {
            volume: "cfg".into(),
            message: "configmap \"missing\" not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"missing\" not found"
        );
    }
}
