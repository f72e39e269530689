//! Garbage collector (upstream's garbagecollector): watches the metadata of
//! every deletable kind in the catalogue, keeps the ownerReference graph,
//! and
//! - deletes dependents whose owners are all gone (Background),
//! - lets an owner with the `foregroundDeletion` finalizer go once its
//!   blocking dependents are gone, deleting them first (Foreground),
//! - strips an owner with the `orphan` finalizer from its dependents'
//!   ownerReferences, then drops the finalizer (Orphan).
//!
//! The graph only says what to look at; every decision is checked against
//! the API first, as upstream does.

pub mod graph;
pub mod queue;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams,
    Preconditions, PropagationPolicy,
};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use self::graph::{
    AbsentKey, Effects, FINALIZER_FOREGROUND, FINALIZER_ORPHAN, Graph, Identity, Observed,
};
use self::queue::WorkQueue;
use super::events::{Recorder, WARNING};
use crate::registry::{Catalogue, ResourceDef};

/// Concurrent attempt-to-delete workers (upstream's default is 20).
const DELETE_WORKERS: usize = 16;
/// Concurrent attempt-to-orphan workers.
const ORPHAN_WORKERS: usize = 4;
/// How often the catalogue is checked for new or removed kinds (CRDs).
const RESYNC_MONITORS: Duration = Duration::from_secs(2);
/// Workers start once every monitor listed, or after this long anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// Remembered absent owners.
const ABSENT_CACHE: usize = 4096;

#[derive(Debug, thiserror::Error)]
enum GcError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("unable to find a resource for {0}")]
    UnknownKind(String),
    /// A cluster-scoped object cannot be owned by a namespaced one; retrying
    /// does not help.
    #[error("too many conflicts updating {0}")]
    Conflicts(String),
    #[error("cluster-scoped object refers to a namespaced owner")]
    NamespacedOwnerOfClusterScoped(OwnerReference),
}

/// What the graph builder is told.
enum Change {
    Upsert(Observed),
    Delete(Identity),
    /// A worker found the object missing from the API.
    VirtualDelete(Identity),
    /// A kind was (re)listed; objects of it not in `seen` are gone.
    Resync {
        api_version: String,
        kind: String,
        seen: HashSet<String>,
    },
}

/// Owners known not to exist, bounded (oldest forgotten first).
#[derive(Default)]
struct AbsentCache {
    set: HashSet<AbsentKey>,
    order: VecDeque<AbsentKey>,
}

impl AbsentCache {
    fn add(&mut self, key: AbsentKey) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
            while self.order.len() > ABSENT_CACHE {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
    /// Absent everywhere, or in `namespace`.
    fn has(&self, uid: &str, namespace: &str) -> bool {
        self.set.contains(&(uid.to_string(), None))
            || (!namespace.is_empty()
                && self
                    .set
                    .contains(&(uid.to_string(), Some(namespace.to_string()))))
    }
}

/// Counts the first list of every initial monitor.
struct Synced {
    remaining: AtomicUsize,
    notify: Notify,
}

impl Synced {
    fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) <= 1 {
            self.notify.notify_waiters();
        }
    }
    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.remaining.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct Gc {
    client: kube::Client,
    catalogue: Arc<Catalogue>,
    recorder: Recorder,
    graph: Mutex<Graph>,
    absent: Mutex<AbsentCache>,
    changes: mpsc::Sender<Change>,
    attempt_to_delete: Arc<WorkQueue<String>>,
    attempt_to_orphan: Arc<WorkQueue<String>>,
}

/// How a worker left an item.
enum Outcome {
    Done,
    /// Look again later (e.g. an owner that exists but was not watched yet).
    Requeue,
}

/// Run the garbage collector until the process ends.
pub async fn run(ctx: Arc<super::Context>) {
    let (tx, rx) = mpsc::channel(4096);
    let gc = Arc::new(Gc {
        client: ctx.client.clone(),
        catalogue: ctx.catalogue.clone(),
        recorder: ctx.recorder("garbage-collector-controller"),
        graph: Mutex::new(Graph::default()),
        absent: Mutex::new(AbsentCache::default()),
        changes: tx,
        attempt_to_delete: WorkQueue::new(),
        attempt_to_orphan: WorkQueue::new(),
    });
    let initial = monitored(&gc.catalogue);
    let synced = Arc::new(Synced {
        remaining: AtomicUsize::new(initial.len()),
        notify: Notify::new(),
    });
    tokio::spawn(gc.clone().run_monitors(synced.clone()));
    tokio::spawn(gc.clone().build_graph(rx));
    if tokio::time::timeout(SYNC_TIMEOUT, synced.wait())
        .await
        .is_err()
    {
        warn!("garbage collector: not every resource could be listed; collecting anyway");
    }
    info!(
        nodes = gc.graph.lock().len(),
        "garbage collector: all monitored resources synced"
    );
    let mut workers = Vec::new();
    for _ in 0..DELETE_WORKERS {
        workers.push(tokio::spawn(gc.clone().delete_worker()));
    }
    for _ in 0..ORPHAN_WORKERS {
        workers.push(tokio::spawn(gc.clone().orphan_worker()));
    }
    futures::future::join_all(workers).await;
}

/// The kinds the collector watches: every stored kind that can be listed,
/// watched and deleted, except events (as upstream).
fn monitored(catalogue: &Catalogue) -> Vec<Arc<ResourceDef>> {
    catalogue
        .all()
        .into_iter()
        .filter(|d| d.storage_version && d.plural != "events")
        .filter(|d| {
            ["list", "watch", "delete"]
                .iter()
                .all(|v| d.verbs.iter().any(|x| x == v))
        })
        .collect()
}

pub(crate) fn api_resource(def: &ResourceDef) -> ApiResource {
    ApiResource {
        group: def.group.clone(),
        version: def.version.clone(),
        api_version: def.api_version(),
        kind: def.kind.clone(),
        plural: def.plural.clone(),
    }
}

/// The resource served for an owner reference's apiVersion and kind; any
/// version of the same group and kind will do (they share objects).
pub(crate) fn resolve(
    catalogue: &Catalogue,
    api_version: &str,
    kind: &str,
) -> Option<Arc<ResourceDef>> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let all = catalogue.all();
    all.iter()
        .find(|d| d.group == group && d.version == version && d.kind == kind)
        .or_else(|| {
            all.iter()
                .find(|d| d.group == group && d.kind == kind && d.storage_version)
        })
        .or_else(|| all.iter().find(|d| d.group == group && d.kind == kind))
        .cloned()
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|fs| fs.iter().any(|x| x == f))
}

fn observed(def: &ResourceDef, meta: &ObjectMeta) -> Observed {
    Observed {
        identity: Identity {
            api_version: def.api_version(),
            kind: def.kind.clone(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        },
        owners: meta.owner_references.clone().unwrap_or_default(),
        being_deleted: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    }
}

impl Gc {
    /// Keep one metadata watch per monitored kind, following the catalogue.
    async fn run_monitors(self: Arc<Self>, synced: Arc<Synced>) {
        let mut running: HashMap<(String, String), tokio::task::JoinHandle<()>> = HashMap::new();
        let mut first = true;
        loop {
            let defs = monitored(&self.catalogue);
            let keys: HashSet<(String, String)> = defs
                .iter()
                .map(|d| (d.group.clone(), d.plural.clone()))
                .collect();
            for def in defs {
                let key = (def.group.clone(), def.plural.clone());
                if running.contains_key(&key) {
                    continue;
                }
                let synced = first.then(|| synced.clone());
                running.insert(key, tokio::spawn(self.clone().monitor(def, synced)));
            }
            running.retain(|k, h| {
                let keep = keys.contains(k);
                if !keep {
                    debug!(
                        group = k.0,
                        resource = k.1,
                        "garbage collector: resource gone, stopping its monitor"
                    );
                    h.abort();
                }
                keep
            });
            first = false;
            tokio::time::sleep(RESYNC_MONITORS).await;
        }
    }

    /// Feed one kind's metadata watch into the graph builder.
    async fn monitor(self: Arc<Self>, def: Arc<ResourceDef>, synced: Option<Arc<Synced>>) {
        // Api over PartialObjectMeta makes metadata-only requests.
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &api_resource(&def));
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut seen: HashSet<String> = HashSet::new();
        let mut synced = synced;
        while let Some(ev) = stream.next().await {
            let change = match ev {
                Ok(watcher::Event::Init) => {
                    seen.clear();
                    continue;
                }
                Ok(watcher::Event::InitApply(m)) => {
                    let o = observed(&def, &m.metadata);
                    seen.insert(o.identity.uid.clone());
                    Change::Upsert(o)
                }
                Ok(watcher::Event::Apply(m)) => Change::Upsert(observed(&def, &m.metadata)),
                Ok(watcher::Event::Delete(m)) => {
                    Change::Delete(observed(&def, &m.metadata).identity)
                }
                Ok(watcher::Event::InitDone) => {
                    let seen = std::mem::take(&mut seen);
                    if self
                        .changes
                        .send(Change::Resync {
                            api_version: def.api_version(),
                            kind: def.kind.clone(),
                            seen,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if let Some(s) = synced.take() {
                        s.done();
                    }
                    continue;
                }
                Err(e) => {
                    debug!(resource = def.plural, "garbage collector watch: {e}");
                    continue;
                }
            };
            if self.changes.send(change).await.is_err() {
                return;
            }
        }
    }

    /// The single writer of the graph.
    async fn build_graph(self: Arc<Self>, mut rx: mpsc::Receiver<Change>) {
        while let Some(change) = rx.recv().await {
            let fx = {
                let mut g = self.graph.lock();
                match change {
                    Change::Upsert(o) => g.upsert(o),
                    Change::Delete(i) => g.delete(&i),
                    Change::VirtualDelete(i) => g.virtual_delete(&i),
                    Change::Resync {
                        api_version,
                        kind,
                        seen,
                    } => g.resync(&api_version, &kind, &seen),
                }
            };
            self.apply(fx);
        }
    }

    fn apply(&self, fx: Effects) {
        if !fx.absent.is_empty() {
            let mut absent = self.absent.lock();
            for k in fx.absent {
                absent.add(k);
            }
        }
        for uid in fx.attempt_to_delete {
            self.attempt_to_delete.add(uid);
        }
        for uid in fx.attempt_to_delete_later {
            self.attempt_to_delete.add_rate_limited(uid);
        }
        for uid in fx.attempt_to_orphan {
            self.attempt_to_orphan.add(uid);
        }
        for (dependent, r) in fx.invalid_namespace {
            let recorder = self.recorder.clone();
            tokio::spawn(async move { report_invalid_namespace(&recorder, &dependent, &r).await });
        }
    }

    async fn delete_worker(self: Arc<Self>) {
        loop {
            let uid = self.attempt_to_delete.get().await;
            let res = self.attempt_to_delete_item(&uid).await;
            self.attempt_to_delete.done(&uid);
            match res {
                Ok(Outcome::Done) => self.attempt_to_delete.forget(&uid),
                Ok(Outcome::Requeue) => self.attempt_to_delete.add_rate_limited(uid),
                Err(e) => {
                    debug!(uid, "garbage collector: {e}");
                    self.attempt_to_delete.add_rate_limited(uid);
                }
            }
        }
    }

    async fn orphan_worker(self: Arc<Self>) {
        loop {
            let uid = self.attempt_to_orphan.get().await;
            let res = self.attempt_to_orphan_item(&uid).await;
            self.attempt_to_orphan.done(&uid);
            match res {
                Ok(()) => self.attempt_to_orphan.forget(&uid),
                Err(e) => {
                    debug!(uid, "garbage collector: orphaning: {e}");
                    self.attempt_to_orphan.add_rate_limited(uid);
                }
            }
        }
    }

    fn api(&self, def: &ResourceDef, namespace: &str) -> Api<DynamicObject> {
        let ar = api_resource(def);
        if def.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        }
    }

    fn def_of(&self, identity: &Identity) -> Result<Arc<ResourceDef>, GcError> {
        resolve(&self.catalogue, &identity.api_version, &identity.kind).ok_or_else(|| {
            GcError::UnknownKind(format!("{}, Kind={}", identity.api_version, identity.kind))
        })
    }

    async fn get_meta(
        &self,
        def: &ResourceDef,
        identity: &Identity,
    ) -> Result<Option<PartialObjectMeta<DynamicObject>>, GcError> {
        Ok(self
            .api(def, &identity.namespace)
            .get_metadata_opt(&identity.name)
            .await?)
    }

    /// Upstream's attemptToDeleteItem.
    async fn attempt_to_delete_item(&self, uid: &str) -> Result<Outcome, GcError> {
        let (identity, being_deleted, deleting_dependents, was_observed) = {
            let g = self.graph.lock();
            let Some(n) = g.node(uid) else {
                return Ok(Outcome::Done);
            };
            (
                n.identity.clone(),
                n.being_deleted,
                n.deleting_dependents,
                n.observed,
            )
        };
        // Being deleted is a one-way trip; its dependents are handled once it is gone.
        if being_deleted && !deleting_dependents {
            return Ok(Outcome::Done);
        }
        let def = self.def_of(&identity)?;
        let latest = self.get_meta(&def, &identity).await?;
        let latest = match latest {
            Some(m) if m.metadata.uid.as_deref() == Some(uid) => m,
            _ => {
                let _ = self.changes.send(Change::VirtualDelete(identity)).await;
                return Ok(Outcome::Done);
            }
        };
        let meta = &latest.metadata;
        if meta.deletion_timestamp.is_some() && has_finalizer(meta, FINALIZER_FOREGROUND) {
            self.process_deleting_dependents(&def, &identity).await?;
            return Ok(Outcome::Done);
        }
        let owners = meta.owner_references.clone().unwrap_or_default();
        let requeue_unobserved = if was_observed {
            Outcome::Done
        } else {
            Outcome::Requeue
        };
        if owners.is_empty() {
            return Ok(requeue_unobserved);
        }
        let item_ns = if def.namespaced {
            identity.namespace.clone()
        } else {
            String::new()
        };
        let (solid, dangling, waiting) = match self.classify(&item_ns, &owners).await {
            Ok(c) => c,
            Err(GcError::NamespacedOwnerOfClusterScoped(r)) => {
                report_invalid_namespace(&self.recorder, &identity, &r).await;
                return Ok(Outcome::Done);
            }
            Err(e) => return Err(e),
        };
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(requeue_unobserved);
            }
            // Drop references to owners that are gone or waiting for their
            // dependents, or the latter would wait forever.
            let uids: Vec<String> = dangling
                .iter()
                .chain(&waiting)
                .map(|r| r.uid.clone())
                .collect();
            debug!(item = %identity, "garbage collector: removing dangling and waiting owner references");
            self.patch_meta(&def, &identity, |m| {
                let refs = m.owner_references.clone().unwrap_or_default();
                let kept: Vec<&OwnerReference> =
                    refs.iter().filter(|r| !uids.contains(&r.uid)).collect();
                (kept.len() != refs.len()).then(|| json!({"ownerReferences": refs_value(&kept)}))
            })
            .await?;
            return Ok(requeue_unobserved);
        }
        let has_dependents = self
            .graph
            .lock()
            .node(uid)
            .is_some_and(|n| !n.dependents.is_empty());
        let policy = if !waiting.is_empty() && has_dependents {
            let cycle = {
                let g = self.graph.lock();
                g.node(uid).is_some_and(|n| {
                    n.dependents
                        .iter()
                        .any(|d| g.node(d).is_some_and(|d| d.deleting_dependents))
                })
            };
            if cycle {
                // An owner and a dependent both wait in foreground: make
                // this item's references non-blocking to break the cycle.
                self.patch_meta(&def, &identity, |m| {
                    let mut refs = m.owner_references.clone().unwrap_or_default();
                    for r in refs.iter_mut() {
                        r.block_owner_deletion = Some(false);
                    }
                    Some(json!({"ownerReferences": refs}))
                })
                .await?;
            }
            PropagationPolicy::Foreground
        } else if has_finalizer(meta, FINALIZER_ORPHAN) {
            PropagationPolicy::Orphan
        } else if has_finalizer(meta, FINALIZER_FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        debug!(item = %identity, ?policy, "garbage collector: deleting");
        self.delete_object(&def, &identity, policy).await?;
        Ok(requeue_unobserved)
    }

    /// Sort owner references into solid (owner exists), dangling (owner
    /// gone or replaced) and waiting (owner in foreground deletion).
    async fn classify(
        &self,
        item_ns: &str,
        owners: &[OwnerReference],
    ) -> Result<
        (
            Vec<OwnerReference>,
            Vec<OwnerReference>,
            Vec<OwnerReference>,
        ),
        GcError,
    > {
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in owners {
            match self.owner_of(item_ns, r).await? {
                None => dangling.push(r.clone()),
                Some(m)
                    if m.deletion_timestamp.is_some()
                        && has_finalizer(&m, FINALIZER_FOREGROUND) =>
                {
                    waiting.push(r.clone())
                }
                Some(_) => solid.push(r.clone()),
            }
        }
        Ok((solid, dangling, waiting))
    }

    /// The owner `r` points at from namespace `item_ns`, None if dangling.
    async fn owner_of(
        &self,
        item_ns: &str,
        r: &OwnerReference,
    ) -> Result<Option<ObjectMeta>, GcError> {
        if self.absent.lock().has(&r.uid, item_ns) {
            return Ok(None);
        }
        let def = resolve(&self.catalogue, &r.api_version, &r.kind)
            .ok_or_else(|| GcError::UnknownKind(format!("{}, Kind={}", r.api_version, r.kind)))?;
        if item_ns.is_empty() && def.namespaced {
            return Err(GcError::NamespacedOwnerOfClusterScoped(r.clone()));
        }
        let absent_key = (r.uid.clone(), def.namespaced.then(|| item_ns.to_string()));
        let owner = self.api(&def, item_ns).get_metadata_opt(&r.name).await?;
        match owner {
            Some(m) if m.metadata.uid.as_deref() == Some(r.uid.as_str()) => Ok(Some(m.metadata)),
            _ => {
                self.absent.lock().add(absent_key);
                Ok(None)
            }
        }
    }

    /// An owner in foreground deletion: once no blocking dependent is left,
    /// drop its finalizer; until then make sure its dependents are deleted.
    async fn process_deleting_dependents(
        &self,
        def: &ResourceDef,
        identity: &Identity,
    ) -> Result<(), GcError> {
        let blocking = self.graph.lock().blocking_dependents(&identity.uid);
        if blocking.is_empty() {
            debug!(item = %identity, "garbage collector: removing the foregroundDeletion finalizer");
            return self
                .remove_finalizer(def, identity, FINALIZER_FOREGROUND)
                .await;
        }
        for (dep, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.attempt_to_delete.add(dep);
            }
        }
        Ok(())
    }

    /// Upstream's attemptToOrphanWorker.
    async fn attempt_to_orphan_item(&self, uid: &str) -> Result<(), GcError> {
        let (owner, dependents) = {
            let g = self.graph.lock();
            let Some(n) = g.node(uid) else { return Ok(()) };
            (n.identity.clone(), g.dependents(uid))
        };
        let results: Vec<Result<(), GcError>> = futures::stream::iter(dependents)
            .map(|dep| async move {
                let def = self.def_of(&dep)?;
                self.patch_meta(&def, &dep, |m| {
                    let refs = m.owner_references.clone().unwrap_or_default();
                    let kept: Vec<&OwnerReference> = refs.iter().filter(|r| r.uid != uid).collect();
                    (kept.len() != refs.len())
                        .then(|| json!({"ownerReferences": refs_value(&kept)}))
                })
                .await
            })
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, GcError>>()?;
        let def = self.def_of(&owner)?;
        self.remove_finalizer(&def, &owner, FINALIZER_ORPHAN).await
    }

    async fn remove_finalizer(
        &self,
        def: &ResourceDef,
        identity: &Identity,
        finalizer: &str,
    ) -> Result<(), GcError> {
        self.patch_meta(def, identity, |m| {
            let fs = m.finalizers.clone().unwrap_or_default();
            if !fs.iter().any(|f| f == finalizer) {
                return None;
            }
            let kept: Vec<&String> = fs.iter().filter(|f| *f != finalizer).collect();
            Some(json!({"finalizers": if kept.is_empty() { Value::Null } else { json!(kept) }}))
        })
        .await
    }

    /// Read the object, let `change` compute a metadata merge patch (None:
    /// nothing to do), and apply it pinned to the version read; retried on
    /// conflicts. A missing or replaced object is not an error.
    async fn patch_meta(
        &self,
        def: &ResourceDef,
        identity: &Identity,
        change: impl Fn(&ObjectMeta) -> Option<Value>,
    ) -> Result<(), GcError> {
        let api = self.api(def, &identity.namespace);
        for _ in 0..10 {
            let Some(cur) = api.get_metadata_opt(&identity.name).await? else {
                return Ok(());
            };
            if cur.metadata.uid.as_deref() != Some(identity.uid.as_str()) {
                return Ok(());
            }
            let Some(mut patch) = change(&cur.metadata) else {
                return Ok(());
            };
            if let Some(m) = patch.as_object_mut() {
                m.insert(
                    "resourceVersion".into(),
                    json!(cur.metadata.resource_version),
                );
            }
            let body = json!({ "metadata": patch });
            match api
                .patch_metadata(&identity.name, &PatchParams::default(), &Patch::Merge(body))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if status_code(&e) == Some(404) => return Ok(()),
                Err(e) if status_code(&e) == Some(409) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(GcError::Conflicts(identity.to_string()))
    }

    async fn delete_object(
        &self,
        def: &ResourceDef,
        identity: &Identity,
        policy: PropagationPolicy,
    ) -> Result<(), GcError> {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(identity.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self
            .api(def, &identity.namespace)
            .delete(&identity.name, &dp)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// An ownerReferences value for a merge patch: null removes the field.
fn refs_value(refs: &[&OwnerReference]) -> Value {
    if refs.is_empty() {
        Value::Null
    } else {
        json!(refs)
    }
}

/// Upstream's OwnerRefInvalidNamespace warning on the dependent.
async fn report_invalid_namespace(recorder: &Recorder, dependent: &Identity, r: &OwnerReference) {
    let invalid = Identity::of_owner(r, &dependent.namespace);
    let obj = ObjectReference {
        api_version: Some(dependent.api_version.clone()),
        kind: Some(dependent.kind.clone()),
        name: Some(dependent.name.clone()),
        namespace: Some(dependent.namespace.clone()).filter(|n| !n.is_empty()),
        uid: Some(dependent.uid.clone()),
        ..Default::default()
    };
    let message = format!(
        "ownerRef {invalid} does not exist in namespace {:?}",
        dependent.namespace
    );
    recorder
        .publish(&obj, WARNING, "OwnerRefInvalidNamespace", &message)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_prefers_the_referenced_version() {
        let cat = Catalogue::new(crate::registry::catalogue::builtin());
        let d = resolve(&cat, "autoscaling/v1", "HorizontalPodAutoscaler").expect("hpa v1");
        assert_eq!(d.version, "v1");
        let d = resolve(&cat, "apps/v1", "ReplicaSet").expect("rs");
        assert_eq!(
            (d.group.as_str(), d.plural.as_str()),
            ("apps", "replicasets")
        );
        // An unknown version of a known kind falls back to the stored one.
        let d = resolve(&cat, "apps/v1beta2", "Deployment").expect("deployment");
        assert_eq!(d.version, "v1");
        assert!(resolve(&cat, "example.com/v1", "Widget").is_none());
        assert!(resolve(&cat, "v1", "Pod").is_some_and(|d| d.namespaced));
    }

    #[test]
    fn events_are_not_monitored() {
        let cat = Catalogue::new(crate::registry::catalogue::builtin());
        let m = monitored(&cat);
        assert!(!m.iter().any(|d| d.plural == "events"));
        assert!(m.iter().any(|d| d.plural == "pods"));
        assert!(m.iter().any(|d| d.plural == "namespaces"));
        // One version per stored resource.
        assert_eq!(
            m.iter()
                .filter(|d| d.plural == "horizontalpodautoscalers")
                .count(),
            1
        );
    }

    #[test]
    fn the_absent_cache_is_per_namespace_and_bounded() {
        let mut c = AbsentCache::default();
        c.add(("u1".into(), Some("a".into())));
        c.add(("u2".into(), None));
        assert!(c.has("u1", "a"));
        assert!(!c.has("u1", "b"));
        assert!(c.has("u2", "b"));
        assert!(c.has("u2", ""));
        for i in 0..ABSENT_CACHE + 10 {
            c.add((format!("x{i}"), None));
        }
        assert!(!c.has("u1", "a"));
        assert_eq!(c.set.len(), ABSENT_CACHE);
    }
}
