//! Filter plugins, in upstream's default order: NodeUnschedulable, NodeName,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//! VolumeBinding, PodTopologySpread, InterPodAffinity. A node fails on the
//! first plugin that rejects it, with that plugin's reasons (which make up
//! the FailedScheduling message) and a code saying whether preemption could
//! help.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use super::cache::{AffinityTerm, Cache, NodeInfo, PodInfo};
use super::labels::{self, Labels, NodeAffinity, Selector};
use super::volumes::{self, VolumeState};

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const REASON_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Whether preemption might help a node that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Removing pods could make room.
    Unschedulable,
    /// Nothing on the node can change the verdict.
    Unresolvable,
}

/// Why a node was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Status {
    fn new(code: Code, reason: impl Into<String>) -> Status {
        Status {
            code,
            reasons: vec![reason.into()],
        }
    }
}

/// One topology spread constraint, compiled.
#[derive(Clone, Debug)]
pub struct Spread {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: Selector,
    pub min_domains: Option<i64>,
    pub hard: bool,
    pub honor_affinity: bool,
    pub honor_taints: bool,
    /// A system default: selects the pods of the same controller.
    pub same_owner: Option<String>,
}

impl Spread {
    pub fn counts(&self, p: &PodInfo, ns: &str) -> bool {
        if p.terminating || p.namespace != ns {
            return false;
        }
        match &self.same_owner {
            Some(owner) => p.owner.as_deref() == Some(owner.as_str()),
            None => self.selector.matches(&p.labels),
        }
    }
}

/// The pod being scheduled, compiled once per cycle.
pub struct Pending {
    pub pod: Arc<Pod>,
    pub info: PodInfo,
    pub tolerations: Vec<Toleration>,
    pub node_affinity: NodeAffinity,
    pub spread: Vec<Spread>,
    pub volumes: VolumeState,
    /// The node the pod asked for in spec.nodeName (never set for pods in
    /// the queue; kept for the NodeName filter's completeness).
    pub node_name: Option<String>,
    pub images: Vec<String>,
}

impl Pending {
    pub fn new(pod: Arc<Pod>, volumes: VolumeState) -> Pending {
        let info = PodInfo::from_pod(&pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let mut spread = Vec::new();
        for c in spec.topology_spread_constraints.iter().flatten() {
            let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
            if !selector.is_nothing() {
                for k in c.match_label_keys.iter().flatten() {
                    if let Some(v) = info.labels.get(k) {
                        selector.require(k, v, true);
                    }
                }
            }
            spread.push(Spread {
                max_skew: c.max_skew.max(1).into(),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: c.min_domains.map(i64::from),
                hard: c.when_unsatisfiable != "ScheduleAnyway",
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                same_owner: None,
            });
        }
        // Upstream's system default constraints (ScheduleAnyway, hostname
        // skew 3 and zone skew 5) for pods of a controller without their own.
        if spread.is_empty()
            && let Some(owner) = info.owner.clone()
        {
            for (key, skew) in [
                ("kubernetes.io/hostname", 3),
                ("topology.kubernetes.io/zone", 5),
            ] {
                spread.push(Spread {
                    max_skew: skew,
                    topology_key: key.into(),
                    selector: Selector::everything(),
                    min_domains: None,
                    hard: false,
                    honor_affinity: true,
                    honor_taints: false,
                    same_owner: Some(owner.clone()),
                });
            }
        }
        let images = spec
            .containers
            .iter()
            .filter_map(|c| c.image.as_deref())
            .map(super::cache::normalize_image)
            .collect();
        Pending {
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_affinity: NodeAffinity::from_pod(&spec),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            spread,
            volumes,
            info,
            images,
            pod,
        }
    }

    /// Whether node passes the pod's required node affinity and selector.
    pub fn node_affinity_ok(&self, n: &NodeInfo) -> bool {
        self.node_affinity.matches(&n.name, &n.labels)
    }

    fn taints_ok(&self, taints: &[Taint]) -> bool {
        labels::first_untolerated(taints, &self.tolerations, &["NoSchedule", "NoExecute"]).is_none()
    }
}

/// Per-cycle state computed over all nodes (upstream's PreFilter results).
#[derive(Default)]
pub struct PreState {
    /// Per hard spread constraint: topology value -> matching pods, and the
    /// number of domains.
    pub spread_counts: Vec<HashMap<String, i64>>,
    /// (topologyKey, value) -> pods matching all of the pod's affinity terms.
    pub affinity_counts: HashMap<(String, String), i64>,
    /// (topologyKey, value) -> pods matching one of the pod's anti-affinity terms.
    pub anti_affinity_counts: HashMap<(String, String), i64>,
    /// (topologyKey, value) where an existing pod's anti-affinity forbids this pod.
    pub existing_anti_affinity: HashSet<(String, String)>,
}

/// Compute the per-cycle state, ignoring pods in `excluded` (preemption's
/// what-if) .
pub fn prefilter(pending: &Pending, cache: &Cache, excluded: &HashSet<String>) -> PreState {
    let mut st = PreState::default();
    let ns = pending.info.namespace.as_str();
    let nodes = || cache.order.iter().filter_map(|n| cache.nodes.get(n));
    let visible = |p: &PodInfo| !excluded.contains(&p.key);

    // PodTopologySpread (hard constraints only).
    let hard: Vec<&Spread> = pending.spread.iter().filter(|s| s.hard).collect();
    if !hard.is_empty() {
        st.spread_counts = vec![HashMap::new(); hard.len()];
        for n in nodes() {
            if !hard.iter().all(|c| n.labels.contains_key(&c.topology_key)) {
                continue;
            }
            for (i, c) in hard.iter().enumerate() {
                if (c.honor_affinity && !pending.node_affinity_ok(n))
                    || (c.honor_taints && !pending.taints_ok(&n.taints))
                {
                    continue;
                }
                let value = n.labels.get(&c.topology_key).cloned().unwrap_or_default();
                let count = n
                    .pods
                    .values()
                    .filter(|p| visible(p) && c.counts(p, ns))
                    .count() as i64;
                *st.spread_counts[i].entry(value).or_insert(0) += count;
            }
        }
    }

    // InterPodAffinity.
    let own = pending.info.affinity.as_deref();
    let wants_affinity = own
        .is_some_and(|a| !a.required_affinity.is_empty() || !a.required_anti_affinity.is_empty());
    let others_have_affinity = cache.nodes.values().any(|n| n.pods_with_affinity > 0);
    if !wants_affinity && !others_have_affinity {
        return st;
    }
    let nsl = &cache.namespace_labels;
    for n in cache.nodes.values() {
        for p in n.pods.values().filter(|p| visible(p)) {
            if let Some(a) = own {
                if !a.required_affinity.is_empty()
                    && a.required_affinity
                        .iter()
                        .all(|t| t.matches(&p.namespace, &p.labels, nsl))
                {
                    for t in &a.required_affinity {
                        if let Some(v) = n.labels.get(&t.topology_key) {
                            *st.affinity_counts
                                .entry((t.topology_key.clone(), v.clone()))
                                .or_insert(0) += 1;
                        }
                    }
                }
                for t in &a.required_anti_affinity {
                    if t.matches(&p.namespace, &p.labels, nsl)
                        && let Some(v) = n.labels.get(&t.topology_key)
                    {
                        *st.anti_affinity_counts
                            .entry((t.topology_key.clone(), v.clone()))
                            .or_insert(0) += 1;
                    }
                }
            }
            if let Some(pa) = p.affinity.as_deref() {
                for t in &pa.required_anti_affinity {
                    if t.matches(ns, &pending.info.labels, nsl)
                        && let Some(v) = n.labels.get(&t.topology_key)
                    {
                        st.existing_anti_affinity
                            .insert((t.topology_key.clone(), v.clone()));
                    }
                }
            }
        }
    }
    st
}

fn all_terms_match(
    terms: &[AffinityTerm],
    ns: &str,
    labels: &Labels,
    nsl: &HashMap<String, Labels>,
) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(ns, labels, nsl))
}

/// Run every filter on one node; `nominated` are pods of at least this
/// pod's priority waiting for room on the node.
pub fn filter(
    pending: &Pending,
    pre: &PreState,
    cache: &Cache,
    n: &NodeInfo,
    nominated: &[Arc<PodInfo>],
) -> Result<(), Status> {
    use Code::*;
    // NodeUnschedulable: cordoned nodes, unless the pod tolerates the taint.
    if n.unschedulable {
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if !labels::tolerated(&pending.tolerations, &cordon) {
            return Err(Status::new(Unresolvable, REASON_UNSCHEDULABLE));
        }
    }
    // NodeName.
    if pending
        .node_name
        .as_deref()
        .is_some_and(|want| want != n.name)
    {
        return Err(Status::new(Unresolvable, REASON_NODE_NAME));
    }
    // TaintToleration.
    if let Some(t) = labels::first_untolerated(
        &n.taints,
        &pending.tolerations,
        &["NoSchedule", "NoExecute"],
    ) {
        return Err(Status::new(
            Unresolvable,
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ),
        ));
    }
    // NodeAffinity.
    if !pending.node_affinity_ok(n) {
        return Err(Status::new(Unresolvable, REASON_NODE_AFFINITY));
    }
    // NodePorts.
    let ports_taken = |hp: &super::cache::HostPort| {
        n.used_ports.iter().any(|u| u.conflicts(hp))
            || nominated
                .iter()
                .flat_map(|p| p.host_ports.iter())
                .any(|u| u.conflicts(hp))
    };
    if pending.info.host_ports.iter().any(ports_taken) {
        return Err(Status::new(Unschedulable, REASON_NODE_PORTS));
    }
    // NodeResourcesFit.
    fit(&pending.info, n, nominated)?;
    // VolumeBinding.
    if let Err(reason) = volumes::filter(&pending.volumes, &n.name, &n.labels) {
        let code = if reason == volumes::REASON_NODE_CONFLICT || reason == volumes::REASON_NOT_EXIST
        {
            Unresolvable
        } else {
            Unschedulable
        };
        return Err(Status::new(code, reason));
    }
    // PodTopologySpread.
    let ns = pending.info.namespace.as_str();
    for (i, c) in pending.spread.iter().filter(|s| s.hard).enumerate() {
        let Some(value) = n.labels.get(&c.topology_key) else {
            return Err(Status::new(Unresolvable, REASON_SPREAD_LABEL));
        };
        let counts = &pre.spread_counts[i];
        let mut min = counts.values().copied().min().unwrap_or(0);
        if c.min_domains.is_some_and(|m| (counts.len() as i64) < m) {
            min = 0;
        }
        let self_match = i64::from(c.counts(&pending.info, ns));
        let here = counts.get(value).copied().unwrap_or(0);
        if here + self_match - min > c.max_skew {
            return Err(Status::new(Unschedulable, REASON_SPREAD));
        }
    }
    // InterPodAffinity.
    if let Some(a) = pending.info.affinity.as_deref() {
        let mut pods_exist = true;
        for t in &a.required_affinity {
            match n.labels.get(&t.topology_key) {
                Some(v) => {
                    if pre
                        .affinity_counts
                        .get(&(t.topology_key.clone(), v.clone()))
                        .copied()
                        .unwrap_or(0)
                        <= 0
                    {
                        pods_exist = false;
                    }
                }
                None => return Err(Status::new(Unresolvable, REASON_AFFINITY)),
            }
        }
        // The first pod of a group with affinity to itself may go anywhere.
        if !(pods_exist
            || pre.affinity_counts.is_empty()
                && all_terms_match(
                    &a.required_affinity,
                    ns,
                    &pending.info.labels,
                    &cache.namespace_labels,
                ))
        {
            return Err(Status::new(Unresolvable, REASON_AFFINITY));
        }
        for t in &a.required_anti_affinity {
            if let Some(v) = n.labels.get(&t.topology_key)
                && pre
                    .anti_affinity_counts
                    .get(&(t.topology_key.clone(), v.clone()))
                    .copied()
                    .unwrap_or(0)
                    > 0
            {
                return Err(Status::new(Unschedulable, REASON_ANTI_AFFINITY));
            }
        }
    }
    if !pre.existing_anti_affinity.is_empty()
        && n.labels
            .iter()
            .any(|(k, v)| pre.existing_anti_affinity.contains(&(k.clone(), v.clone())))
    {
        return Err(Status::new(Unschedulable, REASON_EXISTING_ANTI_AFFINITY));
    }
    Ok(())
}

/// NodeResourcesFit: the pod's requests against what is left on the node.
/// A request larger than the whole node cannot be helped by preemption.
pub fn fit(p: &PodInfo, n: &NodeInfo, nominated: &[Arc<PodInfo>]) -> Result<(), Status> {
    let mut used = n.requested.clone();
    for o in nominated {
        used.add(&o.requests);
    }
    let alloc = &n.allocatable;
    let mut reasons = Vec::new();
    let mut code = Code::Unschedulable;
    if used.pods + 1 > alloc.pods {
        reasons.push(REASON_TOO_MANY_PODS.to_string());
    }
    let r = &p.requests;
    let mut check = |name: &str, want: i64, used: i64, have: i64| {
        if want > 0 && want > have - used {
            reasons.push(format!("Insufficient {name}"));
            if want > have {
                code = Code::Unresolvable;
            }
        }
    };
    check("cpu", r.milli_cpu, used.milli_cpu, alloc.milli_cpu);
    check("memory", r.memory, used.memory, alloc.memory);
    check(
        "ephemeral-storage",
        r.ephemeral_storage,
        used.ephemeral_storage,
        alloc.ephemeral_storage,
    );
    for (name, want) in &r.scalar {
        let u = used.scalar.get(name).copied().unwrap_or(0);
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        check(name, *want, u, have);
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Status { code, reasons })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{Value, json};

    fn node(name: &str, labels: Value, extra: Value) -> Node {
        let mut n = json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3"}}
        });
        if let (Some(obj), Some(extra)) = (n.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(n).unwrap()
    }

    fn pod(name: &str, spec: Value) -> Pod {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c"}]);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": name, "labels": {"app": "web"}},
            "spec": spec
        }))
        .unwrap()
    }

    fn bound(name: &str, node: &str, labels: Value, spec: Value) -> PodInfo {
        let mut p = pod(name, spec);
        p.metadata.labels = serde_json::from_value(labels).unwrap();
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        PodInfo::from_pod(&p)
    }

    fn run(cache: &Cache, p: Pod) -> Vec<(String, Result<(), Status>)> {
        let pending = Pending::new(Arc::new(p), VolumeState::default());
        let pre = prefilter(&pending, cache, &HashSet::new());
        cache
            .order
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    filter(&pending, &pre, cache, &cache.nodes[n], &[]),
                )
            })
            .collect()
    }

    fn reasons(r: &Result<(), Status>) -> Vec<String> {
        r.as_ref()
            .err()
            .map(|s| s.reasons.clone())
            .unwrap_or_default()
    }

    #[test]
    fn resources_taints_selectors_ports() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("a", json!({"disk": "ssd"}), json!({})));
        cache.upsert_node(&node(
            "b",
            json!({}),
            json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        ));
        cache.upsert_node(&node(
            "c",
            json!({}),
            json!({"spec": {"unschedulable": true}}),
        ));

        let big = pod(
            "big",
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]}),
        );
        let r = run(&cache, big);
        assert_eq!(reasons(&r[0].1), ["Insufficient cpu"]);
        assert_eq!(
            r[0].1.as_ref().unwrap_err().code,
            Code::Unresolvable,
            "bigger than the node"
        );
        assert_eq!(
            reasons(&r[1].1),
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
        assert_eq!(reasons(&r[2].1), [REASON_UNSCHEDULABLE]);

        let sel = pod(
            "sel",
            json!({"nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
        );
        let r = run(&cache, sel);
        assert!(r[0].1.is_ok());
        assert_eq!(reasons(&r[1].1), [REASON_NODE_AFFINITY]);

        cache.add_pod(bound("web-1", "a", json!({}), json!({"containers": [{"name": "c",
            "ports": [{"containerPort": 80, "hostPort": 8080}], "resources": {"requests": {"cpu": "1500m"}}}]})));
        let p = pod(
            "p",
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        assert_eq!(reasons(&run(&cache, p)[0].1), [REASON_NODE_PORTS]);
        let p = pod(
            "p",
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "5Gi"}}}]}),
        );
        let r = run(&cache, p);
        assert_eq!(
            reasons(&r[0].1),
            ["Insufficient cpu", "Insufficient memory"]
        );
        assert_eq!(
            r[0].1.as_ref().unwrap_err().code,
            Code::Unresolvable,
            "5Gi exceeds the node"
        );
        cache.add_pod(bound("x", "a", json!({}), json!({})));
        cache.add_pod(bound("y", "a", json!({}), json!({})));
        assert_eq!(
            reasons(&run(&cache, pod("p", json!({})))[0].1),
            [REASON_TOO_MANY_PODS]
        );
    }

    #[test]
    fn topology_spread_and_anti_affinity() {
        let mut cache = Cache::default();
        for (n, zone) in [("a", "z1"), ("b", "z1"), ("c", "z2")] {
            cache.upsert_node(&node(
                n,
                json!({"zone": zone, "kubernetes.io/hostname": n}),
                json!({}),
            ));
        }
        cache.add_pod(bound("w1", "a", json!({"app": "web"}), json!({})));
        let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
        let r = run(&cache, pod("w2", spread.clone()));
        assert_eq!(
            reasons(&r[0].1),
            [REASON_SPREAD],
            "z1 has 1, z2 has 0: skew would be 2"
        );
        assert_eq!(reasons(&r[1].1), [REASON_SPREAD]);
        assert!(r[2].1.is_ok());

        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}]}}});
        let r = run(&cache, pod("w2", anti.clone()));
        assert_eq!(reasons(&r[0].1), [REASON_ANTI_AFFINITY]);
        assert!(r[1].1.is_ok() && r[2].1.is_ok());

        // An existing pod's anti-affinity keeps matching pods out of its zone.
        cache.add_pod(bound(
            "loner",
            "c",
            json!({"app": "db"}),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "web"}}}]}}}),
        ));
        let r = run(&cache, pod("w3", json!({})));
        assert_eq!(reasons(&r[2].1), [REASON_EXISTING_ANTI_AFFINITY]);
        assert!(r[0].1.is_ok());

        // Required affinity to app=db: only zone z2; the self-match rule
        // does not apply because a db pod exists.
        let aff = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "db"}}}]}}});
        let r = run(&cache, pod("w4", aff));
        assert_eq!(reasons(&r[0].1), [REASON_AFFINITY]);
        // (c is excluded by the db pod's anti-affinity.)
        assert_eq!(reasons(&r[2].1), [REASON_EXISTING_ANTI_AFFINITY]);

        // Self-affinity with no matching pod anywhere: allowed.
        let selfaff = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "web"}}}]}}});
        let mut lonely = Cache::default();
        lonely.upsert_node(&node("a", json!({"zone": "z1"}), json!({})));
        assert!(run(&lonely, pod("first", selfaff))[0].1.is_ok());

        // A node without the topology key fails spreading as unresolvable.
        let mut c2 = Cache::default();
        c2.upsert_node(&node("bare", json!({}), json!({})));
        let r = run(&c2, pod("w", spread));
        assert_eq!(reasons(&r[0].1), [REASON_SPREAD_LABEL]);
        assert_eq!(r[0].1.as_ref().unwrap_err().code, Code::Unresolvable);
    }
}
