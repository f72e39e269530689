//! The CustomResourceDefinition controllers of upstream's apiextensions
//! server, as one loop that every API server runs (not only the leader:
//! each server must serve the resources): naming (status.acceptedNames and
//! NamesAccepted), establishing (Established), serving (the catalogue gains,
//! changes or loses the CRD's resources, so discovery, OpenAPI and the REST
//! paths follow) and cleanup (a deleted CRD's objects are deleted, then its
//! `customresourcecleanup` finalizer is removed).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};

use crate::api::selectors::{FieldSelector, LabelSelector};
use crate::registry::ResourceDef;
use crate::registry::crd::{self, CLEANUP_FINALIZER};
use crate::registry::generic::{DeleteOptions, ListQuery, Registry, WriteOptions, name_of};

/// What the catalogue serves for one CRD.
#[derive(PartialEq, Eq)]
struct Served {
    group: String,
    plural: String,
    versions: Vec<String>,
    fingerprint: Vec<u64>,
}

pub struct CrdController {
    registry: Arc<Registry>,
    /// CRD name -> what is served for it.
    served: HashMap<String, Served>,
    /// Some CRD waits for its objects to go.
    cleaning: bool,
}

/// Serves the stored CRDs now (so a restarted server serves their resources
/// before it answers anyone), then keeps following them in the background.
pub async fn start(registry: Arc<Registry>) -> tokio::task::JoinHandle<()> {
    let mut c = CrdController {
        registry,
        served: HashMap::new(),
        cleaning: false,
    };
    c.resync().await;
    tokio::spawn(async move { c.run().await })
}

fn crd_def(reg: &Registry) -> Option<Arc<ResourceDef>> {
    reg.catalogue
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
}

fn is_terminating(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

fn condition_true(o: &Value, ty: &str) -> bool {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

impl CrdController {
    async fn run(mut self) {
        loop {
            let Some(def) = crd_def(&self.registry) else {
                return;
            };
            let from = self.registry.store.current_revision();
            let stream = self.registry.watch(
                def,
                None,
                LabelSelector::default(),
                FieldSelector::default(),
                from,
                false,
            );
            let Ok(stream) = stream else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let mut stream = Box::pin(stream);
            // Anything that happened before the watch began.
            self.resync().await;
            loop {
                let wait = if self.cleaning {
                    Duration::from_millis(250)
                } else {
                    Duration::from_secs(30)
                };
                tokio::select! {
                    ev = stream.next() => match ev {
                        Some(Ok(_)) => {
                            // Take every event already queued, then look once.
                            while let Some(Some(Ok(_))) = stream.next().now_or_never() {}
                            self.resync().await;
                        }
                        _ => break,
                    },
                    _ = tokio::time::sleep(wait) => self.resync().await,
                }
            }
        }
    }

    /// Brings status, catalogue and cleanup in line with every stored CRD.
    async fn resync(&mut self) {
        let Some(def) = crd_def(&self.registry) else {
            return;
        };
        let mut crds = match self.registry.list(&def, None, &ListQuery::default()).await {
            Ok(page) => page.items,
            Err(e) => {
                tracing::warn!("listing CRDs: {e}");
                return;
            }
        };
        // First come, first served for names.
        crds.sort_by(|a, b| {
            let t = |o: &Value| {
                o.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            t(a).cmp(&t(b)).then(name_of(a).cmp(name_of(b)))
        });
        let mut cleaning = false;
        let mut present = HashSet::new();
        for i in 0..crds.len() {
            let name = name_of(&crds[i]).to_string();
            present.insert(name.clone());
            let desired = {
                let others: Vec<&Value> = crds
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, o)| o)
                    .collect();
                desired_status(&crds[i], &others)
            };
            // Serve before Established is written: whoever sees the
            // condition may use the resource at once.
            if condition_true(&desired, "Established") {
                self.serve(&name, &desired);
            }
            if desired.get("status") != crds[i].get("status") {
                match self
                    .registry
                    .update(
                        &def,
                        None,
                        &name,
                        desired.clone(),
                        Some("status"),
                        &WriteOptions::default(),
                    )
                    .await
                {
                    Ok(written) => crds[i] = written,
                    // A newer version exists: its event brings us back.
                    Err(e) => {
                        tracing::debug!(crd = %name, "status update: {e}");
                        crds[i]["status"] = desired["status"].clone();
                    }
                }
            }
            let crd = crds[i].clone();
            if is_terminating(&crd) && !self.cleanup(&def, &name, &crd).await {
                cleaning = true;
            }
        }
        let gone: Vec<String> = self
            .served
            .keys()
            .filter(|n| !present.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            if let Some(s) = self.served.remove(&n) {
                self.registry.catalogue.remove(&s.group, &s.plural);
                tracing::info!(crd = %n, "no longer serving {}.{}", s.plural, s.group);
            }
        }
        self.cleaning = cleaning;
    }

    /// Puts the CRD's served versions in the catalogue (or refreshes them).
    fn serve(&mut self, name: &str, crd: &Value) {
        let defs = crd::resource_defs(crd);
        let Some(first) = defs.first() else {
            if let Some(s) = self.served.remove(name) {
                self.registry.catalogue.remove(&s.group, &s.plural);
            }
            return;
        };
        let now = Served {
            group: first.group.clone(),
            plural: first.plural.clone(),
            versions: defs.iter().map(|d| d.version.clone()).collect(),
            fingerprint: defs
                .iter()
                .map(|d| {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::hash::DefaultHasher::new();
                    (
                        &d.kind,
                        &d.singular,
                        d.namespaced,
                        &d.short_names,
                        &d.categories,
                        &d.subresources,
                        d.storage_version,
                    )
                        .hash(&mut h);
                    d.strategy
                        .custom_resource()
                        .map(|c| c.fingerprint)
                        .hash(&mut h);
                    h.finish()
                })
                .collect(),
        };
        match self.served.get(name) {
            Some(s) if *s == now => return,
            // Versions dropped or renamed: start from nothing.
            Some(s)
                if s.plural != now.plural
                    || s.versions.iter().any(|v| !now.versions.contains(v)) =>
            {
                self.registry.catalogue.remove(&s.group, &s.plural);
            }
            _ => {}
        }
        for d in defs {
            self.registry.catalogue.add(d);
        }
        tracing::info!(crd = %name, versions = ?now.versions, "serving {}.{}", now.plural, now.group);
        self.served.insert(name.to_string(), now);
    }

    /// Deletes the objects of a CRD being deleted; once none is left, drops
    /// the cleanup finalizer (and so the CRD). True when done.
    async fn cleanup(&mut self, def: &ResourceDef, name: &str, crd: &Value) -> bool {
        let has_finalizer = crd
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
        if !has_finalizer {
            return true;
        }
        // Any version's def reaches the objects: they share a prefix.
        let defs = crd::resource_defs(crd);
        if let Some(cr_def) = defs.first() {
            let items = match self
                .registry
                .list(cr_def, None, &ListQuery::default())
                .await
            {
                Ok(p) => p.items,
                Err(e) => {
                    tracing::warn!(crd = %name, "listing objects to delete: {e}");
                    return false;
                }
            };
            if !items.is_empty() {
                for o in &items {
                    if is_terminating(o) {
                        continue;
                    }
                    let ns = o.pointer("/metadata/namespace").and_then(Value::as_str);
                    if let Err(e) = self
                        .registry
                        .delete(cr_def, ns, name_of(o), &DeleteOptions::default())
                        .await
                        && e.code != 404
                    {
                        tracing::warn!(crd = %name, "deleting {}: {e}", name_of(o));
                    }
                }
                return false;
            }
        }
        let mut done = crd.clone();
        if let Some(f) = done
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|x| x != CLEANUP_FINALIZER);
        }
        match self
            .registry
            .update(def, None, name, done, None, &WriteOptions::default())
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(crd = %name, "removing the cleanup finalizer: {e}");
                false
            }
        }
    }
}

/// The CRD with the status the controllers want for it.
fn desired_status(crd: &Value, others: &[&Value]) -> Value {
    let mut d = crd.clone();
    match crd::name_conflict(crd, others) {
        None => {
            d["status"]["acceptedNames"] = crd::accepted_names(crd);
            crd::set_condition(
                &mut d,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            if !condition_true(crd, "Established") {
                crd::set_condition(
                    &mut d,
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                );
            }
        }
        Some(msg) => {
            crd::set_condition(&mut d, "NamesAccepted", "False", "NameConflict", &msg);
            if !condition_true(crd, "Established") {
                crd::set_condition(
                    &mut d,
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                );
            }
        }
    }
    if is_terminating(crd) {
        crd::set_condition(
            &mut d,
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        );
    }
    if let Some((status, reason, message)) = crd::approval::condition(crd) {
        crd::set_condition(&mut d, crd::approval::CONDITION, status, reason, &message);
    }
    if d.pointer("/status/storedVersions").is_none() {
        d["status"]["storedVersions"] = json!([]);
    }
    d
}
