//! The replica controller's view of pods: a compact record per pod (only what
//! claiming, status and deletion ranking read) in a cache fed by a watch,
//! indexed by controlling owner and, for orphans, by namespace, so a sync
//! touches only the pods that can concern it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use parking_lot::RwLock;
use tokio::sync::watch;

/// Pods may ask to be deleted first (or last) on scale-down.
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// What the replica controller knows about one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub owner_references: Vec<OwnerReference>,
    /// metadata.deletionTimestamp is set.
    pub terminating: bool,
    pub created: Option<Timestamp>,
    pub node_name: String,
    pub phase: String,
    pub ready: bool,
    /// When the Ready condition last became True.
    pub ready_since: Option<Timestamp>,
    /// The highest restart count of its containers.
    pub restarts: i32,
    pub deletion_cost: i32,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let status = pod.status.as_ref();
        let ready_cond = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        let ready = ready_cond.is_some_and(|c| c.status == "True");
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            owner_references: meta.owner_references.clone().unwrap_or_default(),
            terminating: meta.deletion_timestamp.is_some(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
            ready,
            ready_since: if ready {
                ready_cond
                    .and_then(|c| c.last_transition_time.as_ref())
                    .map(|t| t.0)
            } else {
                None
            },
            restarts: status
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
                .unwrap_or(0),
            // Upstream treats an unparsable cost as 0.
            deletion_cost: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(DELETION_COST_ANNOTATION))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }

    /// `namespace/name`, the key expectations track deletions by.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn controller(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .find(|o| o.controller == Some(true))
    }

    /// Not terminal and not being deleted (upstream's IsPodActive).
    pub fn is_active(&self) -> bool {
        self.phase != "Succeeded" && self.phase != "Failed" && !self.terminating
    }

    /// Ready for at least `min_ready_seconds` (upstream's IsPodAvailable).
    pub fn is_available(&self, min_ready_seconds: i32, now: Timestamp) -> bool {
        if !self.ready {
            return false;
        }
        if min_ready_seconds <= 0 {
            return true;
        }
        self.ready_since.is_some_and(|t| {
            t.as_millisecond()
                .saturating_add(i64::from(min_ready_seconds) * 1000)
                < now.as_millisecond()
        })
    }
}

#[derive(Default)]
struct Inner {
    /// namespace -> name -> pod
    pods: HashMap<String, HashMap<String, Arc<PodInfo>>>,
    /// controller uid -> (namespace, name) of the pods it controls
    owned: HashMap<String, HashSet<(String, String)>>,
    /// namespace -> names of pods without a controller
    orphans: HashMap<String, HashSet<String>>,
}

impl Inner {
    fn unindex(&mut self, p: &PodInfo) {
        match p.controller() {
            Some(c) => {
                if let Some(set) = self.owned.get_mut(&c.uid) {
                    set.remove(&(p.namespace.clone(), p.name.clone()));
                    if set.is_empty() {
                        self.owned.remove(&c.uid);
                    }
                }
            }
            None => {
                if let Some(set) = self.orphans.get_mut(&p.namespace) {
                    set.remove(&p.name);
                    if set.is_empty() {
                        self.orphans.remove(&p.namespace);
                    }
                }
            }
        }
    }

    fn index(&mut self, p: &PodInfo) {
        match p.controller() {
            Some(c) => {
                self.owned
                    .entry(c.uid.clone())
                    .or_default()
                    .insert((p.namespace.clone(), p.name.clone()));
            }
            None => {
                self.orphans
                    .entry(p.namespace.clone())
                    .or_default()
                    .insert(p.name.clone());
            }
        }
    }

    fn upsert(&mut self, p: Arc<PodInfo>) -> Option<Arc<PodInfo>> {
        let old = self
            .pods
            .entry(p.namespace.clone())
            .or_default()
            .insert(p.name.clone(), p.clone());
        if let Some(o) = &old {
            self.unindex(o);
        }
        self.index(&p);
        old
    }

    fn remove(&mut self, ns: &str, name: &str) -> Option<Arc<PodInfo>> {
        let by_name = self.pods.get_mut(ns)?;
        let old = by_name.remove(name)?;
        if by_name.is_empty() {
            self.pods.remove(ns);
        }
        self.unindex(&old);
        Some(old)
    }
}

/// A change the cache saw, for the controller's event handlers.
#[derive(Clone, Debug)]
pub enum PodChange {
    Added(Arc<PodInfo>),
    Updated {
        old: Arc<PodInfo>,
        new: Arc<PodInfo>,
    },
    Deleted(Arc<PodInfo>),
}

/// Pods by namespace, by controller and orphans.
pub struct PodCache {
    inner: RwLock<Inner>,
    ready: watch::Sender<bool>,
}

impl Default for PodCache {
    fn default() -> Self {
        PodCache {
            inner: RwLock::default(),
            ready: watch::Sender::new(false),
        }
    }
}

impl PodCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<PodInfo>> {
        self.inner.read().pods.get(ns)?.get(name).cloned()
    }

    /// Insert or replace a pod; what changed.
    pub fn apply(&self, pod: PodInfo) -> PodChange {
        let new = Arc::new(pod);
        match self.inner.write().upsert(new.clone()) {
            Some(old) => PodChange::Updated { old, new },
            None => PodChange::Added(new),
        }
    }

    /// Remove a pod; the change, if it was known.
    pub fn delete(&self, ns: &str, name: &str) -> Option<PodChange> {
        self.inner.write().remove(ns, name).map(PodChange::Deleted)
    }

    /// Replace the whole content (after a relist); the changes against what
    /// was there.
    pub fn replace(&self, pods: Vec<PodInfo>) -> Vec<PodChange> {
        let mut inner = self.inner.write();
        let mut old = std::mem::take(&mut *inner);
        let mut changes = Vec::with_capacity(pods.len());
        for p in pods {
            let new = Arc::new(p);
            let prev = old.remove(&new.namespace, &new.name);
            inner.upsert(new.clone());
            changes.push(match prev {
                Some(o) if o == new => continue,
                Some(o) => PodChange::Updated { old: o, new },
                None => PodChange::Added(new),
            });
        }
        for (_, by_name) in old.pods {
            changes.extend(by_name.into_values().map(PodChange::Deleted));
        }
        changes
    }

    /// Pods whose controller has this uid.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<PodInfo>> {
        let inner = self.inner.read();
        let Some(keys) = inner.owned.get(uid) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|(ns, name)| inner.pods.get(ns)?.get(name).cloned())
            .collect()
    }

    /// Pods in `ns` without a controller.
    pub fn orphans(&self, ns: &str) -> Vec<Arc<PodInfo>> {
        let inner = self.inner.read();
        let Some(names) = inner.orphans.get(ns) else {
            return Vec::new();
        };
        let Some(pods) = inner.pods.get(ns) else {
            return Vec::new();
        };
        names.iter().filter_map(|n| pods.get(n).cloned()).collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read().pods.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first full list has been loaded.
    pub fn mark_synced(&self) {
        self.ready.send_replace(true);
    }

    /// Wait until the first full list has been loaded: acting on a partial
    /// view would create pods that already exist.
    pub async fn wait_synced(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, owner: Option<&str>) -> PodInfo {
        PodInfo {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            owner_references: owner
                .map(|o| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "rs".into(),
                        uid: o.into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]
                })
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn names(v: Vec<Arc<PodInfo>>) -> Vec<String> {
        let mut n: Vec<String> = v.iter().map(|p| p.name.clone()).collect();
        n.sort();
        n
    }

    #[test]
    fn indexes_follow_owner_changes() {
        let c = PodCache::new();
        assert!(matches!(
            c.apply(pod("a", "p1", Some("u1"))),
            PodChange::Added(_)
        ));
        c.apply(pod("a", "p2", Some("u1")));
        c.apply(pod("a", "p3", None));
        c.apply(pod("b", "p4", None));
        assert_eq!(names(c.controlled_by("u1")), ["p1", "p2"]);
        assert_eq!(names(c.orphans("a")), ["p3"]);
        // Released: p2 becomes an orphan.
        assert!(matches!(
            c.apply(pod("a", "p2", None)),
            PodChange::Updated { .. }
        ));
        assert_eq!(names(c.controlled_by("u1")), ["p1"]);
        assert_eq!(names(c.orphans("a")), ["p2", "p3"]);
        // Adopted: p3 moves to u2.
        c.apply(pod("a", "p3", Some("u2")));
        assert_eq!(names(c.orphans("a")), ["p2"]);
        assert_eq!(names(c.controlled_by("u2")), ["p3"]);
        assert!(matches!(c.delete("a", "p1"), Some(PodChange::Deleted(_))));
        assert!(c.controlled_by("u1").is_empty());
        assert!(c.delete("a", "p1").is_none());
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn replace_reports_differences() {
        let c = PodCache::new();
        c.apply(pod("a", "keep", None));
        c.apply(pod("a", "gone", None));
        c.apply(pod("a", "changed", None));
        let changes = c.replace(vec![
            pod("a", "keep", None),
            pod("a", "changed", Some("u")),
            pod("a", "new", None),
        ]);
        let mut kinds: Vec<String> = changes
            .iter()
            .map(|ch| match ch {
                PodChange::Added(p) => format!("+{}", p.name),
                PodChange::Updated { new, .. } => format!("~{}", new.name),
                PodChange::Deleted(p) => format!("-{}", p.name),
            })
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["+new", "-gone", "~changed"]);
        assert_eq!(names(c.orphans("a")), ["keep", "new"]);
        assert_eq!(names(c.controlled_by("u")), ["changed"]);
    }

    #[test]
    fn availability_needs_min_ready_seconds() {
        let now = Timestamp::from_second(1_000_000).unwrap_or_default();
        let mut p = pod("a", "p", None);
        assert!(!p.is_available(0, now));
        p.ready = true;
        p.ready_since = Some(Timestamp::from_second(999_995).unwrap_or_default());
        assert!(p.is_available(0, now));
        assert!(p.is_available(4, now));
        assert!(!p.is_available(5, now));
        assert!(!p.is_available(10, now));
        p.ready_since = None;
        assert!(!p.is_available(1, now));
    }
}
