//! The built-in local-path provisioner (as k3s ships Rancher's
//! local-path-provisioner) and the parts of upstream's PersistentVolume
//! controller it needs:
//!
//! - the `local-path` StorageClass (default class, WaitForFirstConsumer,
//!   reclaim Delete) is created at start if missing;
//! - a claim of that class that the scheduler has marked with
//!   `volume.kubernetes.io/selected-node` gets a PV `pvc-<uid>`: a hostPath
//!   directory `<data-dir>/storage/pvc-<uid>_<ns>_<name>` with node
//!   affinity to that node, pre-bound to the claim;
//! - binding: a PV whose claimRef names a claim (provisioned here, or
//!   chosen by the scheduler for a WaitForFirstConsumer claim) and that
//!   claim are completed into `Bound`; an unbound claim of an Immediate
//!   class takes the smallest Available PV that fits;
//! - phases as upstream: PV Pending -> Available -> Bound -> Released; PVC
//!   Pending -> Bound (Lost if its PV disappears);
//! - reclaim: when a bound claim is deleted, a `Delete` PV provisioned
//!   here has its directory removed (by this controller: the storage lives
//!   on this machine, in the server's data dir) and is deleted; a `Retain`
//!   PV stays Released.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tracing::{debug, info, warn};

use super::Context;
use super::events::{self, Recorder};
use super::job::queue::WorkQueue;
use crate::registry::strategy::kinds::quantity;

pub const CLASS_NAME: &str = "local-path";
pub const PROVISIONER: &str = "rancher.io/local-path";
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const SELECTED_NODE: &str = crate::scheduler::volumes::SELECTED_NODE;
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The StorageClass this controller serves, as k3s's.
pub fn storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(CLASS_NAME.into()),
            annotations: Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

/// `<storage>/pvc-<uid>_<ns>_<name>`: where a claim's data lives.
pub fn volume_path(storage_dir: &Path, pvc: &PersistentVolumeClaim) -> PathBuf {
    storage_dir.join(format!(
        "pvc-{}_{}_{}",
        pvc.metadata.uid.as_deref().unwrap_or(""),
        pvc.metadata.namespace.as_deref().unwrap_or(""),
        pvc.metadata.name.as_deref().unwrap_or("")
    ))
}

/// The DefaultStorageClass admission plugin: a new claim that names no
/// class (storageClassName absent; `""` means "no class" and stays) gets
/// the default StorageClass, the newest if several are marked default.
pub async fn admit_default_class(
    store: &dyn crate::store::Store,
    obj: &mut serde_json::Value,
) -> Result<(), crate::api::status::ApiError> {
    if obj
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null())
    {
        return Ok(());
    }
    let list = store
        .list(
            "/registry/storage.k8s.io/storageclasses/",
            Default::default(),
        )
        .await
        .map_err(|e| crate::api::status::ApiError::internal(e.to_string()))?;
    let is_default = |sc: &serde_json::Value| {
        [
            DEFAULT_CLASS_ANNOTATION,
            "storageclass.beta.kubernetes.io/is-default-class",
        ]
        .iter()
        .any(|a| {
            sc.pointer("/metadata/annotations")
                .and_then(|m| m.get(*a))
                .and_then(serde_json::Value::as_str)
                == Some("true")
        })
    };
    let newest = list
        .items
        .iter()
        .filter_map(|kv| serde_json::from_slice::<serde_json::Value>(&kv.value).ok())
        .filter(is_default)
        .max_by(|a, b| {
            let ts = |v: &serde_json::Value| {
                v.pointer("/metadata/creationTimestamp")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            // Upstream: the newest wins; at equal times the name first in order.
            let name = |v: &serde_json::Value| {
                v.pointer("/metadata/name")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            ts(a).cmp(&ts(b)).then_with(|| name(b).cmp(&name(a)))
        });
    if let (Some(sc), Some(spec)) = (newest, obj.get_mut("spec").and_then(|s| s.as_object_mut()))
        && let Some(name) = sc
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
    {
        spec.insert("storageClassName".into(), json!(name));
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Claim(String, String),
    Volume(String),
}

struct State {
    client: kube::Client,
    storage_dir: PathBuf,
    recorder: Recorder,
    queue: WorkQueue<Key>,
}

/// Run until the process ends.
pub async fn run(ctx: Arc<Context>) {
    let state = Arc::new(State {
        client: ctx.client.clone(),
        storage_dir: ctx.settings.storage_dir.clone(),
        recorder: Recorder::new(ctx.client.clone(), "persistentvolume-controller"),
        queue: WorkQueue::new(Duration::from_millis(200), Duration::from_secs(30)),
    });
    ensure_storage_class(&state.client).await;
    let worker = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                let key = state.queue.next().await;
                match process(&state, &key).await {
                    Ok(()) => state.queue.forget(&key),
                    Err(e) => {
                        debug!(?key, "local-path: {e}");
                        state.queue.add_rate_limited(key.clone());
                    }
                }
                state.queue.done(&key);
            }
        })
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::all(ctx.client.clone());
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let claims = watcher(pvcs, watcher::Config::default())
        .default_backoff()
        .map(|ev| match ev {
            Ok(watcher::Event::Apply(p))
            | Ok(watcher::Event::InitApply(p))
            | Ok(watcher::Event::Delete(p)) => claim_keys(&p),
            Ok(_) => vec![],
            Err(e) => {
                debug!("local-path claim watch: {e}");
                vec![]
            }
        });
    let volumes = watcher(pvs, watcher::Config::default())
        .default_backoff()
        .map(|ev| match ev {
            Ok(watcher::Event::Apply(v))
            | Ok(watcher::Event::InitApply(v))
            | Ok(watcher::Event::Delete(v)) => volume_keys(&v),
            Ok(_) => vec![],
            Err(e) => {
                debug!("local-path volume watch: {e}");
                vec![]
            }
        });
    // As upstream's PV controller, look at waiting claims again now and
    // then (a volume may have been freed without an event for them).
    let resync = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            loop {
                tick.tick().await;
                if let Err(e) = queue_pending_claims(&state).await {
                    debug!("local-path resync: {e}");
                }
            }
        })
    };
    let mut keys = futures::stream::select(claims.boxed(), volumes.boxed());
    while let Some(batch) = keys.next().await {
        for k in batch {
            state.queue.add(k);
        }
    }
    warn!("local-path watches ended");
    worker.abort();
    resync.abort();
}

fn claim_key(pvc: &PersistentVolumeClaim) -> Key {
    Key::Claim(
        pvc.metadata.namespace.clone().unwrap_or_default(),
        pvc.metadata.name.clone().unwrap_or_default(),
    )
}

/// A claim event concerns the claim and the volume it is bound to (whose
/// phase follows the claim's existence).
fn claim_keys(pvc: &PersistentVolumeClaim) -> Vec<Key> {
    let mut keys = vec![claim_key(pvc)];
    if let Some(v) = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
    {
        keys.push(Key::Volume(v));
    }
    keys
}

/// A PV event concerns the PV and the claim it names.
fn volume_keys(pv: &PersistentVolume) -> Vec<Key> {
    let mut keys = vec![Key::Volume(pv.metadata.name.clone().unwrap_or_default())];
    if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        keys.push(Key::Claim(
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
        ));
    }
    keys
}

/// Create the local-path StorageClass unless it exists (an admin's edits
/// to it are kept).
async fn ensure_storage_class(client: &kube::Client) {
    let api: Api<StorageClass> = Api::all(client.clone());
    for attempt in 0..60 {
        match api.create(&PostParams::default(), &storage_class()).await {
            Ok(_) => {
                info!("created StorageClass {CLASS_NAME}");
                return;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => return,
            Err(e) => {
                debug!(attempt, "creating StorageClass {CLASS_NAME}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    warn!("could not create StorageClass {CLASS_NAME}");
}

async fn process(state: &State, key: &Key) -> Result<(), kube::Error> {
    match key {
        Key::Claim(ns, name) => sync_claim(state, ns, name).await,
        Key::Volume(name) => sync_volume(state, name).await,
    }
}

fn storage_request(pvc: &PersistentVolumeClaim) -> Option<Quantity> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .cloned()
}

fn size(q: Option<&Quantity>) -> i128 {
    q.and_then(|q| quantity::parse(&q.0).ok())
        .map(|q| q.0)
        .unwrap_or(0)
}

fn claim_ref_matches(r: &ObjectReference, pvc: &PersistentVolumeClaim) -> bool {
    r.namespace == pvc.metadata.namespace
        && r.name == pvc.metadata.name
        && r.uid
            .as_ref()
            .is_none_or(|u| u.is_empty() || Some(u) == pvc.metadata.uid.as_ref())
}

fn reference(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: pvc.metadata.name.clone(),
        namespace: pvc.metadata.namespace.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        field_path: None,
    }
}

async fn sync_claim(state: &State, ns: &str, name: &str) -> Result<(), kube::Error> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(state.client.clone(), ns);
    let pvs: Api<PersistentVolume> = Api::all(state.client.clone());
    let Some(pvc) = pvcs.get_opt(name).await? else {
        return Ok(());
    };
    if pvc.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let spec = pvc.spec.clone().unwrap_or_default();
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();

    // Already pointing at a volume: complete the binding or notice it is gone.
    if let Some(pv_name) = spec.volume_name.clone().filter(|v| !v.is_empty()) {
        return match pvs.get_opt(&pv_name).await? {
            Some(pv) => complete_binding(state, &pvc, &pv).await,
            None => {
                if phase == "Bound" {
                    set_claim_phase(&pvcs, name, "Lost", None).await?;
                    let msg =
                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!";
                    state
                        .recorder
                        .publish(&events::reference(&pvc), events::WARNING, "ClaimLost", msg)
                        .await;
                }
                Ok(())
            }
        };
    }

    // A volume already claims it (provisioned here or chosen by the scheduler).
    let all = pvs.list(&Default::default()).await?.items;
    if let Some(pv) = all.iter().find(|pv| {
        pv.spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| claim_ref_matches(r, &pvc))
    }) {
        return complete_binding(state, &pvc, pv).await;
    }

    let class_name = spec.storage_class_name.clone().unwrap_or_default();
    let classes: Api<StorageClass> = Api::all(state.client.clone());
    let class = if class_name.is_empty() {
        None
    } else {
        classes.get_opt(&class_name).await?
    };
    let wffc = class
        .as_ref()
        .and_then(|c| c.volume_binding_mode.as_deref())
        == Some("WaitForFirstConsumer");

    // Immediate binding to a static volume that fits.
    if !wffc && let Some(pv) = best_static_match(&all, &pvc, &class_name) {
        let patch = json!({"spec": {"claimRef": reference(&pvc)},
            "metadata": {"annotations": {BOUND_BY_CONTROLLER: "yes"}}});
        let pv = pvs
            .patch(
                pv.metadata.name.as_deref().unwrap_or(""),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        return complete_binding(state, &pvc, &pv).await;
    }

    let Some(class) = class else { return Ok(()) };
    if class.provisioner != PROVISIONER {
        return Ok(());
    }
    let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
    let Some(node) = annotations
        .get(SELECTED_NODE)
        .filter(|n| !n.is_empty())
        .cloned()
    else {
        if wffc {
            state
                .recorder
                .publish(
                    &events::reference(&pvc),
                    events::NORMAL,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                )
                .await;
        }
        return Ok(());
    };
    provision(state, &pvc, &class, &node).await
}

/// The smallest Available, unclaimed PV of the class that fits the claim.
fn best_static_match<'a>(
    all: &'a [PersistentVolume],
    pvc: &PersistentVolumeClaim,
    class: &str,
) -> Option<&'a PersistentVolume> {
    let spec = pvc.spec.as_ref()?;
    let want = size(storage_request(pvc).as_ref());
    let modes = spec.access_modes.clone().unwrap_or_default();
    all.iter()
        .filter(|pv| {
            let Some(s) = pv.spec.as_ref() else {
                return false;
            };
            let available =
                pv.status.as_ref().and_then(|st| st.phase.as_deref()) == Some("Available");
            available
                && s.claim_ref.is_none()
                && s.storage_class_name.clone().unwrap_or_default() == class
                && size(s.capacity.as_ref().and_then(|c| c.get("storage"))) >= want
                && modes
                    .iter()
                    .all(|m| s.access_modes.iter().flatten().any(|pm| pm == m))
        })
        .min_by_key(|pv| {
            size(
                pv.spec
                    .as_ref()
                    .and_then(|s| s.capacity.as_ref())
                    .and_then(|c| c.get("storage")),
            )
        })
}

async fn provision(
    state: &State,
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
) -> Result<(), kube::Error> {
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let name = pvc.metadata.name.clone().unwrap_or_default();
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(state.client.clone(), &ns);
    let pvs: Api<PersistentVolume> = Api::all(state.client.clone());
    let pv_name = format!("pvc-{uid}");
    let obj = events::reference(pvc);

    // As the PV controller: name the provisioner on the claim.
    let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
    if annotations.get(STORAGE_PROVISIONER).map(String::as_str) != Some(PROVISIONER) {
        let patch = json!({"metadata": {"annotations": {
            STORAGE_PROVISIONER: PROVISIONER, BETA_STORAGE_PROVISIONER: PROVISIONER}}});
        pvcs.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        let msg = format!(
            "Waiting for a volume to be created either by the external provisioner '{PROVISIONER}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
        );
        state
            .recorder
            .publish(&obj, events::NORMAL, "ExternalProvisioning", &msg)
            .await;
    }
    state
        .recorder
        .publish(
            &obj,
            events::NORMAL,
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
        )
        .await;

    let path = volume_path(&state.storage_dir, pvc);
    // World-writable as k3s's helper makes it, so non-root pods can write.
    if let Err(e) = make_volume_dir(&path) {
        let msg = format!(
            "failed to provision volume with StorageClass \"{}\": {e}",
            class.metadata.name.as_deref().unwrap_or("")
        );
        state
            .recorder
            .publish(&obj, events::WARNING, "ProvisioningFailed", &msg)
            .await;
        return Err(kube::Error::Service(msg.into()));
    }
    let spec = pvc.spec.clone().unwrap_or_default();
    let capacity: BTreeMap<String, Quantity> = storage_request(pvc)
        .map(|q| [("storage".to_string(), q)].into())
        .unwrap_or_default();
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name.clone()),
            annotations: Some(
                [
                    (PROVISIONED_BY.to_string(), PROVISIONER.to_string()),
                    (
                        "local.path.provisioner/selected-node".to_string(),
                        node.to_string(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some(capacity),
            claim_ref: Some(reference(pvc)),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        ..Default::default()
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: spec.volume_mode.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = match pvs.create(&PostParams::default(), &pv).await {
        Ok(pv) => pv,
        Err(kube::Error::Api(s)) if s.code == 409 => pvs.get(&pv_name).await?,
        Err(e) => return Err(e),
    };
    state
        .recorder
        .publish(
            &obj,
            events::NORMAL,
            "ProvisioningSucceeded",
            &format!("Successfully provisioned volume {pv_name}"),
        )
        .await;
    complete_binding(state, pvc, &created).await
}

fn make_volume_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
}

/// Point the claim at the volume and both statuses at Bound.
async fn complete_binding(
    state: &State,
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<(), kube::Error> {
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let name = pvc.metadata.name.clone().unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(state.client.clone(), &ns);
    let pvs: Api<PersistentVolume> = Api::all(state.client.clone());
    let pv_spec = pv.spec.clone().unwrap_or_default();

    // The volume must name this claim (with its uid) first.
    match pv_spec.claim_ref.as_ref() {
        Some(r) if claim_ref_matches(r, pvc) => {
            if r.uid.as_deref().unwrap_or("").is_empty() {
                let patch = json!({"spec": {"claimRef": reference(pvc)}});
                pvs.patch(&pv_name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
        }
        // Claimed by someone else: this claim's volumeName is wrong; leave it Pending.
        Some(_) => return Ok(()),
        None => {
            let patch = json!({"spec": {"claimRef": reference(pvc)},
                "metadata": {"annotations": {BOUND_BY_CONTROLLER: "yes"}}});
            pvs.patch(&pv_name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        set_volume_phase(&pvs, &pv_name, "Bound").await?;
    }

    let spec = pvc.spec.clone().unwrap_or_default();
    let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
    if spec.volume_name.as_deref().unwrap_or("").is_empty()
        || annotations.get(BIND_COMPLETED).map(String::as_str) != Some("yes")
    {
        let mut ann = json!({BIND_COMPLETED: "yes"});
        if spec.volume_name.as_deref().unwrap_or("").is_empty() {
            ann[BOUND_BY_CONTROLLER] = json!("yes");
        }
        let patch = json!({"metadata": {"annotations": ann}, "spec": {"volumeName": pv_name}});
        pvcs.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
    }
    let status = pvc.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Bound") {
        let capacity = pv_spec.capacity.clone().unwrap_or_default();
        let patch = json!({"status": {"phase": "Bound",
            "accessModes": pv_spec.access_modes.clone().unwrap_or_default(),
            "capacity": capacity}});
        pvcs.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
    }
    Ok(())
}

async fn set_volume_phase(
    pvs: &Api<PersistentVolume>,
    name: &str,
    phase: &str,
) -> Result<(), kube::Error> {
    let patch = json!({"status": {"phase": phase,
        "lastPhaseTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}});
    pvs.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

async fn set_claim_phase(
    pvcs: &Api<PersistentVolumeClaim>,
    name: &str,
    phase: &str,
    capacity: Option<BTreeMap<String, Quantity>>,
) -> Result<(), kube::Error> {
    let mut status = json!({"phase": phase});
    if let Some(c) = capacity {
        status["capacity"] = json!(c);
    }
    pvcs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map(|_| ())
}

/// Queue every Pending claim (a volume they may bind to appeared).
async fn queue_pending_claims(state: &State) -> Result<(), kube::Error> {
    let pvcs: Api<PersistentVolumeClaim> = Api::all(state.client.clone());
    for pvc in pvcs.list(&Default::default()).await?.items {
        let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Pending") {
            state.queue.add(claim_key(&pvc));
        }
    }
    Ok(())
}

async fn sync_volume(state: &State, name: &str) -> Result<(), kube::Error> {
    let pvs: Api<PersistentVolume> = Api::all(state.client.clone());
    let Some(pv) = pvs.get_opt(name).await? else {
        return Ok(());
    };
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let phase = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let Some(claim) = spec.claim_ref.clone() else {
        if phase != "Available" {
            set_volume_phase(&pvs, name, "Available").await?;
            // A volume became available: waiting claims may take it.
            queue_pending_claims(state).await?;
        }
        return Ok(());
    };
    let ns = claim.namespace.clone().unwrap_or_default();
    let claim_name = claim.name.clone().unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(state.client.clone(), &ns);
    let pvc = pvcs.get_opt(&claim_name).await?;
    let claim_uid = claim.uid.clone().unwrap_or_default();
    let claim_gone = match &pvc {
        None => !claim_uid.is_empty(),
        Some(p) => !claim_uid.is_empty() && p.metadata.uid.as_deref() != Some(claim_uid.as_str()),
    };
    if !claim_gone {
        // Pre-bound or bound: the claim side completes the binding.
        if pvc.is_none() && phase != "Available" {
            set_volume_phase(&pvs, name, "Available").await?;
        }
        return Ok(());
    }
    // The claim is gone: release, then reclaim.
    if phase != "Released" && phase != "Failed" {
        set_volume_phase(&pvs, name, "Released").await?;
    }
    let policy = spec
        .persistent_volume_reclaim_policy
        .as_deref()
        .unwrap_or("Retain");
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .map(String::as_str)
        == Some(PROVISIONER);
    if policy != "Delete" || !ours {
        return Ok(());
    }
    if let Some(hp) = &spec.host_path {
        let path = PathBuf::from(&hp.path);
        // Only ever a directory of ours, directly under the storage dir.
        if path.parent() == Some(state.storage_dir.as_path())
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pvc-"))
            && path.exists()
            && let Err(e) = std::fs::remove_dir_all(&path)
        {
            warn!(pv = name, path = %path.display(), "local-path: removing volume data: {e}");
            return Err(kube::Error::Service(e.to_string().into()));
        }
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pv.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pvs.delete(name, &dp).await {
        Ok(_) => {
            info!(pv = name, "local-path: deleted volume of a deleted claim");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, class: &str, size: &str, phase: &str, modes: &[&str]) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"storageClassName": class, "capacity": {"storage": size},
                "accessModes": modes, "hostPath": {"path": "/x"}},
            "status": {"phase": phase}}))
        .unwrap()
    }

    #[test]
    fn static_matching_prefers_the_smallest_fit() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "d", "uid": "u"},
            "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap();
        let all = vec![
            pv("big", "manual", "10Gi", "Available", &["ReadWriteOnce"]),
            pv("small", "manual", "512Mi", "Available", &["ReadWriteOnce"]),
            pv(
                "fit",
                "manual",
                "2Gi",
                "Available",
                &["ReadWriteOnce", "ReadOnlyMany"],
            ),
            pv("other", "fast", "1Gi", "Available", &["ReadWriteOnce"]),
            pv("ro", "manual", "1Gi", "Available", &["ReadOnlyMany"]),
            pv("taken", "manual", "1Gi", "Bound", &["ReadWriteOnce"]),
        ];
        let m = best_static_match(&all, &claim, "manual").unwrap();
        assert_eq!(m.metadata.name.as_deref(), Some("fit"));
        assert!(best_static_match(&all, &claim, "none").is_none());
    }

    #[test]
    fn paths_and_class() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "1234"}}))
        .unwrap();
        assert_eq!(
            volume_path(Path::new("/d/storage"), &claim),
            PathBuf::from("/d/storage/pvc-1234_default_data")
        );
        let sc = storage_class();
        assert_eq!(sc.provisioner, "rancher.io/local-path");
        assert_eq!(
            sc.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );
    }
}
