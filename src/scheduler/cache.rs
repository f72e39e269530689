//! The scheduler's view of the cluster: nodes with the pods on them (bound,
//! and assumed while their binding is in flight), kept from watch events so
//! a scheduling cycle never waits for the API. Pods are held compactly: only
//! what filters and scores read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Affinity, Node, Pod, PodAffinityTerm, Taint};

use super::labels::{Labels, Selector};
use super::resources::{self, Resources};

/// "namespace/name".
pub type PodKey = String;

pub fn pod_key(pod: &Pod) -> PodKey {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// A hostPort a pod occupies on its node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports clash: same protocol and port, and the same IP
    /// or either on every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for p in c.ports.iter().flatten() {
            let Some(port) = p.host_port.filter(|p| *p > 0) else {
                continue;
            };
            out.push(HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty() && ip != "::")
                    .unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port,
            });
        }
    }
    out
}

/// An affinity term compiled for matching: which namespaces, which labels.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub topology_key: String,
    pub selector: Selector,
    /// Explicit namespaces (with the term's own namespace when neither
    /// namespaces nor namespaceSelector is given).
    pub namespaces: Vec<String>,
    /// namespaceSelector, matched against namespace labels.
    pub namespace_selector: Option<Selector>,
    pub weight: i64,
}

impl AffinityTerm {
    /// Compile `term` of a pod in `ns` with `pod_labels` (for matchLabelKeys).
    pub fn compile(
        term: &PodAffinityTerm,
        ns: &str,
        pod_labels: &Labels,
        weight: i64,
    ) -> AffinityTerm {
        let mut selector = Selector::from_label_selector(term.label_selector.as_ref());
        if !selector.is_nothing() {
            for k in term.match_label_keys.iter().flatten() {
                if let Some(v) = pod_labels.get(k) {
                    selector.require(k, v, true);
                }
            }
            for k in term.mismatch_label_keys.iter().flatten() {
                if let Some(v) = pod_labels.get(k) {
                    selector.require(k, v, false);
                }
            }
        }
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        let namespace_selector = term
            .namespace_selector
            .as_ref()
            .map(|s| Selector::from_label_selector(Some(s)));
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(ns.to_string());
        }
        AffinityTerm {
            topology_key: term.topology_key.clone(),
            selector,
            namespaces,
            namespace_selector,
            weight,
        }
    }

    /// Whether a pod in `ns` with `labels` matches (namespace labels from `ns_labels`).
    pub fn matches(&self, ns: &str, labels: &Labels, ns_labels: &HashMap<String, Labels>) -> bool {
        let ns_ok = self.namespaces.iter().any(|n| n == ns)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.matches(ns_labels.get(ns).unwrap_or(&Labels::new())));
        ns_ok && self.selector.matches(labels)
    }
}

/// A pod's inter-pod affinity, compiled.
#[derive(Clone, Debug, Default)]
pub struct PodAffinity {
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<AffinityTerm>,
    pub preferred_anti_affinity: Vec<AffinityTerm>,
}

impl PodAffinity {
    pub fn compile(affinity: Option<&Affinity>, ns: &str, labels: &Labels) -> Option<PodAffinity> {
        let a = affinity?;
        let mut out = PodAffinity::default();
        if let Some(pa) = &a.pod_affinity {
            for t in pa
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.required_affinity
                    .push(AffinityTerm::compile(t, ns, labels, 1));
            }
            for w in pa
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.preferred_affinity.push(AffinityTerm::compile(
                    &w.pod_affinity_term,
                    ns,
                    labels,
                    w.weight.into(),
                ));
            }
        }
        if let Some(pa) = &a.pod_anti_affinity {
            for t in pa
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.required_anti_affinity
                    .push(AffinityTerm::compile(t, ns, labels, 1));
            }
            for w in pa
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.preferred_anti_affinity.push(AffinityTerm::compile(
                    &w.pod_affinity_term,
                    ns,
                    labels,
                    w.weight.into(),
                ));
            }
        }
        let empty = out.required_affinity.is_empty()
            && out.required_anti_affinity.is_empty()
            && out.preferred_affinity.is_empty()
            && out.preferred_anti_affinity.is_empty();
        (!empty).then_some(out)
    }
}

/// What the scheduler remembers about a pod on a node.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub key: PodKey,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub labels: Labels,
    pub requests: Resources,
    /// (milli-cpu, memory) with defaults for best-effort containers.
    pub non_zero: (i64, i64),
    pub host_ports: Vec<HostPort>,
    pub priority: i32,
    pub affinity: Option<Arc<PodAffinity>>,
    /// The controlling owner's uid (for the default spreading).
    pub owner: Option<String>,
    pub terminating: bool,
    /// When the pod started (or was created): preemption prefers to keep
    /// older pods among equals.
    pub start_time: i64,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let affinity = spec
            .and_then(|s| PodAffinity::compile(s.affinity.as_ref(), &ns, &labels))
            .map(Arc::new);
        let start = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(pod.metadata.creation_timestamp.as_ref())
            .map(|t| t.0.as_millisecond())
            .unwrap_or(0);
        PodInfo {
            key: pod_key(pod),
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: ns,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            requests: resources::requests_of(pod),
            non_zero: spec.map(resources::non_zero_requests).unwrap_or((0, 0)),
            host_ports: host_ports(pod),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            affinity,
            owner: super::controller_uid(pod),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            start_time: start,
            labels,
        }
    }
}

/// A node and what is on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    /// False for a placeholder holding pods bound to a node not (or no
    /// longer) in the API; such nodes are never candidates.
    pub present: bool,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    /// Image name -> size in bytes, from node.status.images.
    pub images: HashMap<String, i64>,
    pub pods: BTreeMap<PodKey, Arc<PodInfo>>,
    /// Sum of the pods' requests (pods = their count).
    pub requested: Resources,
    pub non_zero_requested: (i64, i64),
    pub used_ports: Vec<HostPort>,
    /// Pods per controlling owner uid, for the default topology spreading.
    pub owner_counts: HashMap<String, u32>,
    /// How many pods here carry inter-pod affinity terms.
    pub pods_with_affinity: usize,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> NodeInfo {
        let mut ni = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            present: true,
            ..Default::default()
        };
        ni.update_node(node);
        ni
    }

    /// Refresh the node's own fields; returns whether anything the scheduler
    /// decides on changed (heartbeats alone do not count).
    pub fn update_node(&mut self, node: &Node) -> bool {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        let taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let status = node.status.as_ref();
        let allocatable = Resources::from_list(
            status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())),
        );
        let mut images = HashMap::new();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for n in img.names.iter().flatten() {
                images.insert(normalize_image(n), img.size_bytes.unwrap_or(0));
            }
        }
        let changed = labels != self.labels
            || taints != self.taints
            || unschedulable != self.unschedulable
            || allocatable != self.allocatable
            || images.len() != self.images.len();
        self.labels = labels;
        self.taints = taints;
        self.unschedulable = unschedulable;
        self.allocatable = allocatable;
        self.images = images;
        changed
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        if let Some(old) = self.pods.remove(&p.key) {
            self.account(&old, false);
        }
        self.account(&p, true);
        self.pods.insert(p.key.clone(), p);
    }

    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let p = self.pods.remove(key)?;
        self.account(&p, false);
        Some(p)
    }

    fn account(&mut self, p: &PodInfo, add: bool) {
        if add {
            self.requested.add(&p.requests);
            self.non_zero_requested.0 += p.non_zero.0;
            self.non_zero_requested.1 += p.non_zero.1;
            self.used_ports.extend(p.host_ports.iter().cloned());
            if let Some(o) = &p.owner {
                *self.owner_counts.entry(o.clone()).or_insert(0) += 1;
            }
            if p.affinity.is_some() {
                self.pods_with_affinity += 1;
            }
        } else {
            self.requested.sub(&p.requests);
            self.non_zero_requested.0 -= p.non_zero.0;
            self.non_zero_requested.1 -= p.non_zero.1;
            for hp in &p.host_ports {
                if let Some(i) = self.used_ports.iter().position(|u| u == hp) {
                    self.used_ports.swap_remove(i);
                }
            }
            if let Some(o) = &p.owner
                && let Some(c) = self.owner_counts.get_mut(o)
            {
                *c -= 1;
                if *c == 0 {
                    self.owner_counts.remove(o);
                }
            }
            if p.affinity.is_some() {
                self.pods_with_affinity -= 1;
            }
        }
    }
}

/// `nginx` -> `docker.io/library/nginx:latest`, so pod images and the names a
/// runtime reports compare equal (upstream's normalizedImageName plus the
/// registry defaults).
pub fn normalize_image(name: &str) -> String {
    let mut n = name.to_string();
    let last = n.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !n.contains('@') {
        n.push_str(":latest");
    }
    let first = n.split('/').next().unwrap_or("");
    let has_registry =
        n.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_registry {
        n = if n.contains('/') {
            format!("docker.io/{n}")
        } else {
            format!("docker.io/library/{n}")
        };
    }
    n
}

/// A pod this scheduler nominated to a node after preemption: its room is
/// held for it against pods of lower priority.
#[derive(Clone, Debug)]
pub struct Nominated {
    pub info: Arc<PodInfo>,
    pub node: String,
}

/// Nodes, pods and nominations.
#[derive(Default)]
pub struct Cache {
    pub nodes: HashMap<String, NodeInfo>,
    /// Node names in a stable order (sorted), for sampling.
    pub order: Vec<String>,
    /// Pod key -> (node, assumed). Assumed pods are ours, binding in flight.
    pub pods: HashMap<PodKey, (String, bool)>,
    pub nominated: HashMap<PodKey, Nominated>,
    pub namespace_labels: HashMap<String, Labels>,
    /// Where the next search for feasible nodes starts (upstream rotates it).
    pub next_start: usize,
}

impl Cache {
    pub fn upsert_node(&mut self, node: &Node) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let changed = match self.nodes.get_mut(&name) {
            Some(ni) if ni.present => return ni.update_node(node),
            Some(ni) => {
                ni.present = true;
                ni.update_node(node);
                true
            }
            None => {
                self.nodes.insert(name.clone(), NodeInfo::from_node(node));
                true
            }
        };
        if let Err(i) = self.order.binary_search(&name) {
            self.order.insert(i, name);
        }
        changed
    }

    /// A node left the API; its pods stay accounted in a placeholder in case
    /// it comes back (their deletion events clean it up).
    pub fn remove_node(&mut self, name: &str) {
        if let Ok(i) = self.order.binary_search_by(|n| n.as_str().cmp(name)) {
            self.order.remove(i);
        }
        match self.nodes.get_mut(name) {
            Some(ni) if !ni.pods.is_empty() => ni.present = false,
            Some(_) => {
                self.nodes.remove(name);
            }
            None => {}
        }
    }

    /// Record a bound pod (from the watch); replaces an assumed copy.
    pub fn add_pod(&mut self, info: PodInfo) {
        let key = info.key.clone();
        self.nominated.remove(&key);
        if let Some((old_node, _)) = self.pods.remove(&key)
            && let Some(ni) = self.nodes.get_mut(&old_node)
        {
            ni.remove_pod(&key);
        }
        let node = info.node.clone();
        // A pod on a node not seen yet goes to a placeholder the node fills in.
        self.nodes
            .entry(node.clone())
            .or_insert_with(|| NodeInfo {
                name: node.clone(),
                ..Default::default()
            })
            .add_pod(Arc::new(info));
        self.pods.insert(key, (node, false));
    }

    /// Put a pod on a node before its binding is confirmed.
    pub fn assume(&mut self, mut info: PodInfo, node: &str) {
        info.node = node.to_string();
        let key = info.key.clone();
        self.nominated.remove(&key);
        if let Some((old, _)) = self.pods.remove(&key)
            && let Some(ni) = self.nodes.get_mut(&old)
        {
            ni.remove_pod(&key);
        }
        if let Some(ni) = self.nodes.get_mut(node) {
            ni.add_pod(Arc::new(info));
            self.pods.insert(key, (node.to_string(), true));
        }
    }

    /// Undo `assume` after a failed binding (only if still assumed).
    pub fn forget(&mut self, key: &str) {
        if let Some((node, true)) = self.pods.get(key).cloned() {
            self.pods.remove(key);
            if let Some(ni) = self.nodes.get_mut(&node) {
                ni.remove_pod(key);
            }
        }
    }

    pub fn remove_pod(&mut self, key: &str) -> bool {
        self.nominated.remove(key);
        match self.pods.remove(key) {
            Some((node, _)) => {
                if let Some(ni) = self.nodes.get_mut(&node) {
                    ni.remove_pod(key);
                    if !ni.present && ni.pods.is_empty() {
                        self.nodes.remove(&node);
                    }
                }
                true
            }
            None => false,
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        matches!(self.pods.get(key), Some((_, true)))
    }

    pub fn has_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Nominated pods on `node` other than `except` with at least `priority`.
    pub fn nominated_on(&self, node: &str, priority: i32, except: &str) -> Vec<Arc<PodInfo>> {
        self.nominated
            .values()
            .filter(|n| n.node == node && n.info.priority >= priority && n.info.key != except)
            .map(|n| n.info.clone())
            .collect()
    }

    /// Every pod on every node (for cluster-wide affinity and spreading).
    pub fn all_pods(&self) -> impl Iterator<Item = (&NodeInfo, &Arc<PodInfo>)> {
        self.nodes
            .values()
            .flat_map(|n| n.pods.values().map(move |p| (n, p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, cpu: &str, port: Option<i32>) -> Pod {
        let mut c = json!({"name": "c", "resources": {"requests": {"cpu": cpu}}});
        if let Some(p) = port {
            c["ports"] = json!([{"containerPort": 80, "hostPort": p}]);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"nodeName": "n1", "containers": [c]}
        }))
        .unwrap()
    }

    #[test]
    fn node_accounting_adds_and_removes() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"a": "b"}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
        }))
        .unwrap();
        let mut cache = Cache::default();
        assert!(cache.upsert_node(&node));
        assert!(!cache.upsert_node(&node), "an identical node is no change");
        cache.add_pod(PodInfo::from_pod(&pod("a", "500m", Some(8080))));
        cache.assume(PodInfo::from_pod(&pod("b", "1", None)), "n1");
        let ni = &cache.nodes["n1"];
        assert_eq!(ni.requested.milli_cpu, 1500);
        assert_eq!(ni.requested.pods, 2);
        assert_eq!(ni.used_ports.len(), 1);
        assert!(cache.is_assumed("ns/b"));
        cache.forget("ns/b");
        cache.forget("ns/a");
        let ni = &cache.nodes["n1"];
        assert_eq!(
            ni.requested.milli_cpu, 500,
            "only assumed pods are forgotten"
        );
        cache.remove_pod("ns/a");
        let ni = &cache.nodes["n1"];
        assert_eq!(
            (
                ni.requested.milli_cpu,
                ni.requested.pods,
                ni.used_ports.len()
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn image_names_normalise() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            normalize_image("nginx:1.27"),
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(
            normalize_image("bitnami/redis"),
            "docker.io/bitnami/redis:latest"
        );
        assert_eq!(
            normalize_image("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(
            normalize_image("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
    }

    #[test]
    fn host_port_conflicts() {
        let a = HostPort {
            ip: "0.0.0.0".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let b = HostPort {
            ip: "10.0.0.1".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let c = HostPort {
            ip: "10.0.0.1".into(),
            protocol: "UDP".into(),
            port: 80,
        };
        let d = HostPort {
            ip: "10.0.0.2".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        assert!(a.conflicts(&b) && b.conflicts(&a));
        assert!(!b.conflicts(&c));
        assert!(!b.conflicts(&d));
    }
}
