//! The garbage collector's ownerReference graph (upstream's GraphBuilder):
//! one node per object uid, edges from owners to dependents. Pure
//! bookkeeping: every change returns the `Effects` the workers must act on.
//! Decisions are never taken from the graph alone; the workers confirm
//! against the API.

use std::collections::{HashMap, HashSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// Finalizer of an owner whose dependents must be orphaned first.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// Finalizer of an owner waiting for its blocking dependents to go.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Where an object is: its coordinates and uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Identity {
    /// The identity an owner reference of an object in `namespace` points at.
    pub fn of_owner(r: &OwnerReference, namespace: &str) -> Identity {
        Identity {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: namespace.to_string(),
            name: r.name.clone(),
            uid: r.uid.clone(),
        }
    }

    /// Whether `r` names this object by the same coordinates.
    fn matches_ref(&self, r: &OwnerReference) -> bool {
        r.uid == self.uid
            && r.name == self.name
            && r.kind == self.kind
            && r.api_version == self.api_version
    }
}

/// Upstream's rendering, used in event messages.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}/{}, namespace: {}, name: {}, uid: {}]",
            self.api_version, self.kind, self.namespace, self.name, self.uid
        )
    }
}

/// An object as a watch reported it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub being_deleted: bool,
    pub finalizers: Vec<String>,
}

#[derive(Debug)]
pub struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    /// Uids of objects naming this one as an owner.
    pub dependents: HashSet<String>,
    pub being_deleted: bool,
    /// Being deleted with the foregroundDeletion finalizer.
    pub deleting_dependents: bool,
    /// Seen through a watch; false for a placeholder created for an owner
    /// reference ("virtual" upstream).
    pub observed: bool,
    /// The last observed state, to detect transitions.
    waiting_orphan: bool,
    waiting_foreground: bool,
}

/// An owner known not to exist: everywhere (`None`) or in one namespace.
pub type AbsentKey = (String, Option<String>);

/// What the workers must look at after a graph change.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// Uids for the attempt-to-delete queue.
    pub attempt_to_delete: Vec<String>,
    /// Uids for the attempt-to-delete queue, after back-off.
    pub attempt_to_delete_later: Vec<String>,
    /// Uids for the attempt-to-orphan queue.
    pub attempt_to_orphan: Vec<String>,
    /// A dependent and its owner reference into another namespace.
    pub invalid_namespace: Vec<(Identity, OwnerReference)>,
    /// Owners now known to be absent.
    pub absent: Vec<AbsentKey>,
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

/// Owner references added, removed and changed (old, new), by uid.
type RefDiff = (
    Vec<OwnerReference>,
    Vec<OwnerReference>,
    Vec<(OwnerReference, OwnerReference)>,
);

fn diff_refs(old: &[OwnerReference], new: &[OwnerReference]) -> RefDiff {
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for n in new {
        match old.iter().find(|o| o.uid == n.uid) {
            None => added.push(n.clone()),
            Some(o) if o != n => changed.push((o.clone(), n.clone())),
            Some(_) => {}
        }
    }
    let removed = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.uid == o.uid))
        .cloned()
        .collect();
    (added, removed, changed)
}

fn blocks(r: &OwnerReference) -> bool {
    r.block_owner_deletion == Some(true)
}

impl Graph {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Dependents whose reference to `uid` has blockOwnerDeletion=true, with
    /// whether each is itself deleting its dependents.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<(String, bool)> {
        let Some(node) = self.nodes.get(uid) else {
            return Vec::new();
        };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| d.owners.iter().any(|r| r.uid == uid && blocks(r)))
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
            .collect()
    }

    /// The dependents of `uid` as the graph knows them.
    pub fn dependents(&self, uid: &str) -> Vec<Identity> {
        let Some(node) = self.nodes.get(uid) else {
            return Vec::new();
        };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .map(|d| d.identity.clone())
            .collect()
    }

    /// An object was added or changed.
    pub fn upsert(&mut self, o: Observed) -> Effects {
        let mut fx = Effects::default();
        let uid = o.identity.uid.clone();
        if uid.is_empty() {
            return fx;
        }
        let has = |f: &str| o.finalizers.iter().any(|x| x == f);
        let waiting_orphan = o.being_deleted && has(FINALIZER_ORPHAN);
        let waiting_foreground = o.being_deleted && has(FINALIZER_FOREGROUND);
        match self.nodes.get_mut(&uid) {
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        identity: o.identity.clone(),
                        owners: o.owners.clone(),
                        dependents: HashSet::new(),
                        being_deleted: o.being_deleted,
                        deleting_dependents: waiting_foreground,
                        observed: true,
                        waiting_orphan: false,
                        waiting_foreground: false,
                    },
                );
                self.add_dependent_to_owners(&uid, &o.owners, &mut fx);
            }
            Some(node) => {
                let first_sight = !node.observed;
                let old_identity = std::mem::replace(&mut node.identity, o.identity.clone());
                node.observed = true;
                let (added, removed, changed) = diff_refs(&node.owners, &o.owners);
                node.owners = o.owners.clone();
                if o.being_deleted {
                    node.being_deleted = true;
                }
                if first_sight && old_identity != o.identity {
                    // Dependents found this placeholder under other
                    // coordinates: their references may be invalid.
                    self.recheck_dependents(&uid, &o.identity, &mut fx);
                }
                // A blocking reference going away may unblock its owner.
                for r in removed.iter().filter(|r| blocks(r)) {
                    if self.nodes.contains_key(&r.uid) {
                        fx.attempt_to_delete.push(r.uid.clone());
                    }
                }
                for (old, new) in &changed {
                    if blocks(old) && !blocks(new) && self.nodes.contains_key(&new.uid) {
                        fx.attempt_to_delete.push(new.uid.clone());
                    }
                }
                self.add_dependent_to_owners(&uid, &added, &mut fx);
                for r in &removed {
                    if let Some(owner) = self.nodes.get_mut(&r.uid) {
                        owner.dependents.remove(&uid);
                    }
                }
            }
        }
        // Transitions into orphan or foreground deletion.
        let Some(node) = self.nodes.get_mut(&uid) else {
            return fx;
        };
        if waiting_orphan && !node.waiting_orphan {
            fx.attempt_to_orphan.push(uid.clone());
        } else if waiting_foreground && !node.waiting_foreground {
            node.deleting_dependents = true;
            fx.attempt_to_delete.extend(node.dependents.iter().cloned());
            fx.attempt_to_delete.push(uid.clone());
        }
        if waiting_foreground {
            node.deleting_dependents = true;
        }
        node.waiting_orphan = waiting_orphan;
        node.waiting_foreground = waiting_foreground;
        fx
    }

    /// After a placeholder was observed as `observed`: dependents whose
    /// references disagree are checked again; references from another
    /// namespace to a namespaced owner are invalid.
    fn recheck_dependents(&self, uid: &str, observed: &Identity, fx: &mut Effects) {
        let Some(node) = self.nodes.get(uid) else {
            return;
        };
        let (_, nonmatching) = self.partition_dependents(node, observed);
        for dep in nonmatching {
            let Some(d) = self.nodes.get(&dep) else {
                continue;
            };
            if !observed.namespace.is_empty()
                && d.identity.namespace != observed.namespace
                && let Some(r) = d.owners.iter().find(|r| r.uid == uid)
            {
                fx.invalid_namespace.push((d.identity.clone(), r.clone()));
            }
            fx.attempt_to_delete.push(dep);
        }
    }

    /// Link `uid` under each of `owners`, creating placeholders for owners
    /// not seen yet (queued so a worker checks that they exist).
    fn add_dependent_to_owners(&mut self, uid: &str, owners: &[OwnerReference], fx: &mut Effects) {
        let Some(dep_identity) = self.nodes.get(uid).map(|n| n.identity.clone()) else {
            return;
        };
        let mut recheck = false;
        for r in owners {
            if r.uid.is_empty() {
                continue;
            }
            match self.nodes.get_mut(&r.uid) {
                None => {
                    let mut dependents = HashSet::new();
                    dependents.insert(uid.to_string());
                    self.nodes.insert(
                        r.uid.clone(),
                        Node {
                            identity: Identity::of_owner(r, &dep_identity.namespace),
                            owners: Vec::new(),
                            dependents,
                            being_deleted: false,
                            deleting_dependents: false,
                            observed: false,
                            waiting_orphan: false,
                            waiting_foreground: false,
                        },
                    );
                    fx.attempt_to_delete.push(r.uid.clone());
                }
                Some(owner) => {
                    owner.dependents.insert(uid.to_string());
                    if !owner.observed {
                        continue;
                    }
                    let owner_ns = &owner.identity.namespace;
                    if !owner_ns.is_empty() && *owner_ns != dep_identity.namespace {
                        // A namespaced owner can only own objects of its
                        // own namespace.
                        fx.invalid_namespace.push((dep_identity.clone(), r.clone()));
                        recheck = true;
                    } else if !owner.identity.matches_ref(r) {
                        recheck = true;
                    }
                }
            }
        }
        if recheck {
            fx.attempt_to_delete.push(uid.to_string());
        }
    }

    /// Dependents of `node` whose reference to it matches `identity`, and
    /// those whose reference does not.
    fn partition_dependents(&self, node: &Node, identity: &Identity) -> (Vec<String>, Vec<String>) {
        let mut matching = Vec::new();
        let mut nonmatching = Vec::new();
        for dep in &node.dependents {
            let Some(d) = self.nodes.get(dep) else {
                continue;
            };
            let (mut found_match, mut found_mismatch) = (false, false);
            if !identity.namespace.is_empty() && identity.namespace != d.identity.namespace {
                found_mismatch = true;
            } else {
                for r in d.owners.iter().filter(|r| r.uid == identity.uid) {
                    if identity.matches_ref(r) {
                        found_match = true;
                    } else {
                        found_mismatch = true;
                    }
                }
            }
            if found_match {
                matching.push(dep.clone());
            }
            if found_mismatch {
                nonmatching.push(dep.clone());
            }
        }
        (matching, nonmatching)
    }

    /// A watch reported the object deleted.
    pub fn delete(&mut self, identity: &Identity) -> Effects {
        let mut fx = Effects::default();
        if self.nodes.contains_key(&identity.uid) {
            self.remove_node(&identity.uid, &mut fx);
        }
        fx
    }

    /// A worker found `identity` missing from the API (upstream's virtual
    /// delete event).
    pub fn virtual_delete(&mut self, identity: &Identity) -> Effects {
        let mut fx = Effects::default();
        let uid = &identity.uid;
        let Some(node) = self.nodes.get(uid) else {
            return fx;
        };
        let absent_key = (
            uid.clone(),
            Some(identity.namespace.clone()).filter(|n| !n.is_empty()),
        );
        let mut remove = true;
        if !node.observed {
            let (matching, nonmatching) = self.partition_dependents(node, identity);
            if !nonmatching.is_empty() {
                // Dependents disagree about where this owner is: keep the
                // placeholder for the others.
                remove = false;
                if !matching.is_empty() {
                    fx.absent.push(absent_key);
                    fx.attempt_to_delete.extend(matching);
                }
                if node.identity == *identity {
                    let alternative = nonmatching.iter().find_map(|dep| {
                        let d = self.nodes.get(dep)?;
                        let r = d.owners.iter().find(|r| r.uid == *uid)?;
                        let alt = Identity::of_owner(r, &d.identity.namespace);
                        (alt != *identity).then_some(alt)
                    });
                    if let Some(alt) = alternative {
                        if let Some(n) = self.nodes.get_mut(uid) {
                            n.identity = alt;
                        }
                        fx.attempt_to_delete_later.push(uid.clone());
                    }
                }
            }
        } else if node.identity != *identity {
            // The object exists under other coordinates: only dependents
            // that named these ones lost their owner.
            remove = false;
            let (matching, _) = self.partition_dependents(node, identity);
            if !matching.is_empty() {
                fx.absent.push(absent_key);
                fx.attempt_to_delete.extend(matching);
            }
        }
        if remove {
            self.remove_node(uid, &mut fx);
        }
        fx
    }

    /// A relist of one kind finished: nodes of that kind not in `seen`
    /// were deleted while the watch was down.
    pub fn resync(&mut self, api_version: &str, kind: &str, seen: &HashSet<String>) -> Effects {
        let gone: Vec<String> = self
            .nodes
            .values()
            .filter(|n| {
                n.observed && n.identity.api_version == api_version && n.identity.kind == kind
            })
            .filter(|n| !seen.contains(&n.identity.uid))
            .map(|n| n.identity.uid.clone())
            .collect();
        let mut fx = Effects::default();
        for uid in gone {
            self.remove_node(&uid, &mut fx);
        }
        fx
    }

    fn remove_node(&mut self, uid: &str, fx: &mut Effects) {
        let Some(node) = self.nodes.remove(uid) else {
            return;
        };
        for r in &node.owners {
            if let Some(owner) = self.nodes.get_mut(&r.uid) {
                owner.dependents.remove(uid);
                // An owner in foreground deletion may have been waiting for this.
                if owner.deleting_dependents {
                    fx.attempt_to_delete.push(r.uid.clone());
                }
            }
        }
        if !node.dependents.is_empty() {
            fx.absent.push((uid.to_string(), None));
        }
        fx.attempt_to_delete.extend(node.dependents);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: &str, ns: &str, name: &str, uid: &str) -> Identity {
        Identity {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn oref(owner: &Identity, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            controller: None,
            block_owner_deletion: Some(block),
        }
    }

    fn obs(identity: &Identity, owners: Vec<OwnerReference>) -> Observed {
        Observed {
            identity: identity.clone(),
            owners,
            being_deleted: false,
            finalizers: vec![],
        }
    }

    fn deleting(identity: &Identity, owners: Vec<OwnerReference>, finalizer: &str) -> Observed {
        Observed {
            identity: identity.clone(),
            owners,
            being_deleted: true,
            finalizers: vec![finalizer.into()],
        }
    }

    #[test]
    fn deleting_an_owner_queues_its_dependents() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "ns", "owner", "u-owner");
        let dep = id("ConfigMap", "ns", "dep", "u-dep");
        assert_eq!(g.upsert(obs(&owner, vec![])), Effects::default());
        assert_eq!(
            g.upsert(obs(&dep, vec![oref(&owner, false)])),
            Effects::default()
        );
        assert_eq!(g.dependents("u-owner"), vec![dep.clone()]);
        let fx = g.delete(&owner);
        assert_eq!(fx.attempt_to_delete, vec!["u-dep".to_string()]);
        assert_eq!(fx.absent, vec![("u-owner".to_string(), None)]);
        assert!(g.node("u-owner").is_none());
    }

    #[test]
    fn an_owner_seen_after_its_dependent_replaces_the_placeholder() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "ns", "owner", "u-owner");
        let dep = id("ConfigMap", "ns", "dep", "u-dep");
        let fx = g.upsert(obs(&dep, vec![oref(&owner, true)]));
        // The placeholder is checked by a worker.
        assert_eq!(fx.attempt_to_delete, vec!["u-owner".to_string()]);
        assert!(!g.node("u-owner").map(|n| n.observed).unwrap_or(true));
        let fx = g.upsert(obs(&owner, vec![]));
        assert_eq!(fx, Effects::default());
        assert!(g.node("u-owner").map(|n| n.observed).unwrap_or(false));
        assert_eq!(
            g.blocking_dependents("u-owner"),
            vec![("u-dep".to_string(), false)]
        );
    }

    #[test]
    fn foreground_deletion_queues_dependents_and_owner_once() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "ns", "owner", "u-owner");
        let dep = id("ConfigMap", "ns", "dep", "u-dep");
        g.upsert(obs(&owner, vec![]));
        g.upsert(obs(&dep, vec![oref(&owner, true)]));
        let fx = g.upsert(deleting(&owner, vec![], FINALIZER_FOREGROUND));
        assert_eq!(
            fx.attempt_to_delete,
            vec!["u-dep".to_string(), "u-owner".to_string()]
        );
        assert!(
            g.node("u-owner")
                .map(|n| n.deleting_dependents)
                .unwrap_or(false)
        );
        // The same state again is no transition.
        assert_eq!(
            g.upsert(deleting(&owner, vec![], FINALIZER_FOREGROUND)),
            Effects::default()
        );
        // The dependent going away wakes the owner.
        let fx = g.delete(&dep);
        assert_eq!(fx.attempt_to_delete, vec!["u-owner".to_string()]);
        assert!(g.blocking_dependents("u-owner").is_empty());
    }

    #[test]
    fn orphan_deletion_queues_the_owner_for_orphaning() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "ns", "owner", "u-owner");
        g.upsert(obs(&owner, vec![]));
        let fx = g.upsert(deleting(&owner, vec![], FINALIZER_ORPHAN));
        assert_eq!(fx.attempt_to_orphan, vec!["u-owner".to_string()]);
        assert!(fx.attempt_to_delete.is_empty());
        assert!(
            g.upsert(deleting(&owner, vec![], FINALIZER_ORPHAN))
                .attempt_to_orphan
                .is_empty()
        );
    }

    #[test]
    fn a_reference_into_another_namespace_is_invalid() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "a", "owner", "u-owner");
        let dep = id("ConfigMap", "b", "dep", "u-dep");
        g.upsert(obs(&owner, vec![]));
        let r = oref(&owner, false);
        let fx = g.upsert(obs(&dep, vec![r.clone()]));
        assert_eq!(fx.invalid_namespace, vec![(dep.clone(), r)]);
        assert_eq!(fx.attempt_to_delete, vec!["u-dep".to_string()]);
    }

    #[test]
    fn a_cluster_scoped_owner_may_own_namespaced_objects() {
        let mut g = Graph::default();
        let owner = id("Node", "", "n1", "u-node");
        let dep = id("ConfigMap", "b", "dep", "u-dep");
        g.upsert(obs(&owner, vec![]));
        let fx = g.upsert(obs(&dep, vec![oref(&owner, false)]));
        assert_eq!(fx, Effects::default());
    }

    #[test]
    fn a_placeholder_observed_elsewhere_reports_the_dependents() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "a", "owner", "u-owner");
        let dep = id("ConfigMap", "b", "dep", "u-dep");
        let r = oref(&owner, false);
        g.upsert(obs(&dep, vec![r.clone()]));
        let fx = g.upsert(obs(&owner, vec![]));
        assert_eq!(fx.invalid_namespace, vec![(dep.clone(), r)]);
        assert_eq!(fx.attempt_to_delete, vec!["u-dep".to_string()]);
    }

    #[test]
    fn removing_a_blocking_reference_wakes_the_owner() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "ns", "owner", "u-owner");
        let dep = id("ConfigMap", "ns", "dep", "u-dep");
        g.upsert(obs(&owner, vec![]));
        g.upsert(obs(&dep, vec![oref(&owner, true)]));
        let fx = g.upsert(obs(&dep, vec![]));
        assert_eq!(fx.attempt_to_delete, vec!["u-owner".to_string()]);
        assert!(g.dependents("u-owner").is_empty());
    }

    #[test]
    fn a_virtual_delete_removes_the_placeholder_and_queues_dependents() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "ns", "owner", "u-owner");
        let dep = id("ConfigMap", "ns", "dep", "u-dep");
        g.upsert(obs(&dep, vec![oref(&owner, false)]));
        let fx = g.virtual_delete(&owner);
        assert_eq!(fx.attempt_to_delete, vec!["u-dep".to_string()]);
        assert!(g.node("u-owner").is_none());
    }

    #[test]
    fn a_virtual_delete_keeps_a_placeholder_other_dependents_see_elsewhere() {
        let mut g = Graph::default();
        let node_owner = id("Node", "a", "n1", "u-node");
        let dep_a = id("ConfigMap", "a", "dep", "u-a");
        let dep_b = id("ConfigMap", "b", "dep", "u-b");
        g.upsert(obs(&dep_a, vec![oref(&node_owner, false)]));
        g.upsert(obs(&dep_b, vec![oref(&node_owner, false)]));
        let fx = g.virtual_delete(&node_owner);
        assert_eq!(fx.attempt_to_delete, vec!["u-a".to_string()]);
        assert_eq!(fx.attempt_to_delete_later, vec!["u-node".to_string()]);
        assert_eq!(
            g.node("u-node").map(|n| n.identity.namespace.clone()),
            Some("b".to_string())
        );
    }

    #[test]
    fn resync_removes_objects_deleted_while_not_watching() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "ns", "owner", "u-owner");
        let kept = id("ConfigMap", "ns", "kept", "u-kept");
        let dep = id("Secret", "ns", "dep", "u-dep");
        g.upsert(obs(&owner, vec![]));
        g.upsert(obs(&kept, vec![]));
        g.upsert(obs(&dep, vec![oref(&owner, false)]));
        let seen: HashSet<String> = ["u-kept".to_string()].into();
        let fx = g.resync("v1", "ConfigMap", &seen);
        assert_eq!(fx.attempt_to_delete, vec!["u-dep".to_string()]);
        assert!(g.node("u-owner").is_none());
        assert!(g.node("u-kept").is_some());
        assert!(g.node("u-dep").is_some());
    }

    #[test]
    fn identity_renders_as_upstream() {
        let i = Identity {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            namespace: "ns".into(),
            name: "web".into(),
            uid: "123".into(),
        };
        assert_eq!(
            i.to_string(),
            "[apps/v1/ReplicaSet, namespace: ns, name: web, uid: 123]"
        );
    }
}
