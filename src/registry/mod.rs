//! The registry: one generic REST store for every resource. A resource is a
//! declaration (`ResourceDef`) plus strategy hooks; built-ins come from
//! `catalogue`, CRDs will be added at run time through the same type.

pub mod allocator;
pub mod catalogue;
pub mod conversion;
pub mod crd;
pub mod eviction;
pub mod generic;
pub mod names;
pub mod strategy;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

pub use strategy::Strategy;

/// Converts between a served version and the stored representation, for
/// resources served under several versions or groups (events, HPAs).
pub trait Conversion: Send + Sync + 'static {
    /// Served -> stored.
    fn to_storage(&self, obj: serde_json::Value) -> serde_json::Value;
    /// Stored -> served.
    fn to_served(&self, obj: serde_json::Value) -> serde_json::Value;
}

/// One resource as served at one group/version.
#[derive(Clone)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Lower-case plural, the URL segment (`pods`).
    pub plural: String,
    /// Lower-case singular (`pod`).
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Subresources served, e.g. `status`, `scale`, `binding`, `log`.
    pub subresources: Vec<String>,
    /// Verbs for discovery.
    pub verbs: Vec<String>,
    /// Storage prefix shared by every version of the resource, e.g.
    /// `/registry/apps/deployments/`.
    pub storage_prefix: String,
    /// The version to call "preferred"/storage in discovery.
    pub storage_version: bool,
    pub strategy: Arc<dyn Strategy>,
    pub conversion: Option<Arc<dyn Conversion>>,
}

impl std::fmt::Debug for ResourceDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ResourceDef({}/{} {})",
            self.group, self.version, self.plural
        )
    }
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    pub fn has_subresource(&self, s: &str) -> bool {
        self.subresources.iter().any(|x| x == s)
    }
    /// Store key of an object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/{}", self.storage_prefix, ns, name),
            _ => format!("{}{}", self.storage_prefix, name),
        }
    }
    /// Store prefix of a list, all namespaces when `namespace` is None.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/", self.storage_prefix, ns),
            _ => self.storage_prefix.clone(),
        }
    }
    pub fn target(&self) -> crate::api::status::Target<'_> {
        crate::api::status::Target {
            group: &self.group,
            resource: &self.plural,
            kind: &self.kind,
        }
    }
}

/// All served resources; readable from every request, writable when CRDs change.
#[derive(Default)]
pub struct Catalogue {
    inner: RwLock<CatalogueInner>,
}

#[derive(Default, Clone)]
struct CatalogueInner {
    /// (group, version, plural) -> def
    by_gvr: HashMap<(String, String, String), Arc<ResourceDef>>,
    /// Insertion order, for stable discovery output.
    order: Vec<Arc<ResourceDef>>,
}

impl Catalogue {
    pub fn new(defs: Vec<ResourceDef>) -> Self {
        let c = Catalogue::default();
        for d in defs {
            c.add(d);
        }
        c
    }
    pub fn add(&self, def: ResourceDef) {
        let def = Arc::new(def);
        let mut inner = self.inner.write();
        let k = (def.group.clone(), def.version.clone(), def.plural.clone());
        inner.order.retain(|d| {
            (d.group.as_str(), d.version.as_str(), d.plural.as_str())
                != (k.0.as_str(), k.1.as_str(), k.2.as_str())
        });
        inner.order.push(def.clone());
        inner.by_gvr.insert(k, def);
    }
    pub fn remove(&self, group: &str, plural: &str) {
        let mut inner = self.inner.write();
        inner.by_gvr.retain(|k, _| !(k.0 == group && k.2 == plural));
        inner
            .order
            .retain(|d| !(d.group == group && d.plural == plural));
    }
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.inner
            .read()
            .by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }
    /// Every def, in declaration order.
    pub fn all(&self) -> Vec<Arc<ResourceDef>> {
        self.inner.read().order.clone()
    }
    /// Groups with their versions, in declaration order; preferred version first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let inner = self.inner.read();
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in &inner.order {
            match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some((_, vs)) => {
                    if !vs.contains(&d.version) {
                        vs.push(d.version.clone());
                    }
                }
                None => out.push((d.group.clone(), vec![d.version.clone()])),
            }
        }
        for (g, vs) in out.iter_mut() {
            // Preferred version: the one marked storage_version.
            if let Some(pref) = inner
                .order
                .iter()
                .find(|d| d.group == *g && d.storage_version)
                && let Some(pos) = vs.iter().position(|v| *v == pref.version)
            {
                let v = vs.remove(pos);
                vs.insert(0, v);
            }
        }
        out
    }
    /// Resources of one group/version, in declaration order.
    pub fn resources(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        self.inner
            .read()
            .order
            .iter()
            .filter(|d| d.group == group && d.version == version)
            .cloned()
            .collect()
    }
}
