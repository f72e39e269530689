//! Score plugins with upstream's default weights: TaintToleration 3,
//! NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit
//! 1 (LeastAllocated or MostAllocated), BalancedAllocation 1, ImageLocality
//! 1. Each plugin scores 0..=100 per node after its normalisation.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::PodSpec;

use super::cache::{Cache, NodeInfo};
use super::filters::Pending;
use super::labels::{self, NodeTerm};
use crate::config::SchedulerScoring;

pub const MAX_SCORE: i64 = 100;

const W_TAINT: i64 = 3;
const W_NODE_AFFINITY: i64 = 2;
const W_SPREAD: i64 = 2;
const W_INTER_POD: i64 = 2;
const W_FIT: i64 = 1;
const W_BALANCED: i64 = 1;
const W_IMAGE: i64 = 1;

/// ImageLocality thresholds (upstream: 23 MB and 1000 MB per container).
const MIN_IMAGE_THRESHOLD: i64 = 23 * 1024 * 1024;
const MAX_CONTAINER_IMAGE_THRESHOLD: i64 = 1000 * 1024 * 1024;

fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_SCORE / capacity
}

fn most_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_SCORE / capacity
}

/// NodeResourcesFit's score over cpu and memory (weight 1 each), with the
/// pod's non-zero requests added to the node's.
pub fn fit_score(strategy: SchedulerScoring, pending: &Pending, n: &NodeInfo) -> i64 {
    let cpu = n.non_zero_requested.0 + pending.info.non_zero.0;
    let mem = n.non_zero_requested.1 + pending.info.non_zero.1;
    let f = match strategy {
        SchedulerScoring::LeastAllocated => least_allocated,
        SchedulerScoring::MostAllocated => most_allocated,
    };
    (f(cpu, n.allocatable.milli_cpu) + f(mem, n.allocatable.memory)) / 2
}

/// BalancedAllocation: 100 when cpu and memory are used in equal shares.
pub fn balanced_score(pending: &Pending, n: &NodeInfo) -> i64 {
    let frac = |req: i64, cap: i64| {
        if cap == 0 {
            1.0
        } else {
            (req as f64 / cap as f64).min(1.0)
        }
    };
    let cpu = frac(
        n.requested.milli_cpu + pending.info.requests.milli_cpu,
        n.allocatable.milli_cpu,
    );
    let mem = frac(
        n.requested.memory + pending.info.requests.memory,
        n.allocatable.memory,
    );
    // The standard deviation of two values is half their distance.
    let std = (cpu - mem).abs() / 2.0;
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

/// ImageLocality: the pod's images already on the node, weighted by how
/// widely each is spread (so one node with every image is not a magnet).
pub fn image_score(
    pending: &Pending,
    n: &NodeInfo,
    total_nodes: usize,
    image_spread: &HashMap<String, usize>,
) -> i64 {
    if pending.images.is_empty() || total_nodes == 0 {
        return 0;
    }
    let mut sum = 0i64;
    for img in &pending.images {
        if let Some(size) = n.images.get(img) {
            let spread = image_spread.get(img).copied().unwrap_or(1) as f64 / total_nodes as f64;
            sum += (*size as f64 * spread) as i64;
        }
    }
    let max = MAX_CONTAINER_IMAGE_THRESHOLD * pending.images.len() as i64;
    let sum = sum.clamp(MIN_IMAGE_THRESHOLD, max);
    MAX_SCORE * (sum - MIN_IMAGE_THRESHOLD) / (max - MIN_IMAGE_THRESHOLD)
}

/// Preferred node affinity terms with their weights.
pub fn preferred_terms(spec: &PodSpec) -> Vec<(i64, NodeTerm)> {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|terms| {
            terms
                .iter()
                .filter(|t| t.weight != 0)
                .map(|t| (i64::from(t.weight), NodeTerm::compile(&t.preference)))
                .collect()
        })
        .unwrap_or_default()
}

/// Normalise raw scores to 0..=100 by the maximum (optionally reversed),
/// as upstream's DefaultNormalizeScore.
fn normalize(raw: &mut [i64], reverse: bool) {
    let max = raw.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            raw.iter_mut().for_each(|s| *s = MAX_SCORE);
        }
        return;
    }
    for s in raw.iter_mut() {
        let v = MAX_SCORE * *s / max;
        *s = if reverse { MAX_SCORE - v } else { v };
    }
}

/// Score every feasible node; returns the weighted totals, one per node.
pub fn score(
    strategy: SchedulerScoring,
    pending: &Pending,
    cache: &Cache,
    feasible: &[&NodeInfo],
) -> Vec<i64> {
    let spec = pending.pod.spec.clone().unwrap_or_default();
    let len = feasible.len();
    let mut total = vec![0i64; len];

    // NodeResourcesFit, BalancedAllocation.
    for (i, n) in feasible.iter().enumerate() {
        total[i] +=
            W_FIT * fit_score(strategy, pending, n) + W_BALANCED * balanced_score(pending, n);
    }

    // ImageLocality.
    if !pending.images.is_empty() {
        let mut spread: HashMap<String, usize> = HashMap::new();
        for n in cache.nodes.values().filter(|n| n.present) {
            for img in &pending.images {
                if n.images.contains_key(img) {
                    *spread.entry(img.clone()).or_insert(0) += 1;
                }
            }
        }
        for (i, n) in feasible.iter().enumerate() {
            total[i] += W_IMAGE * image_score(pending, n, cache.order.len(), &spread);
        }
    }

    // NodeAffinity (preferred terms).
    let preferred = preferred_terms(&spec);
    let mut raw: Vec<i64> = feasible
        .iter()
        .map(|n| {
            preferred
                .iter()
                .filter(|(_, t)| t.matches(&n.name, &n.labels))
                .map(|(w, _)| *w)
                .sum()
        })
        .collect();
    normalize(&mut raw, false);
    add(&mut total, &raw, W_NODE_AFFINITY);

    // TaintToleration: untolerated PreferNoSchedule taints count against.
    let soft: Vec<_> = pending
        .tolerations
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .cloned()
        .collect();
    let mut raw: Vec<i64> = feasible
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule" && !labels::tolerated(&soft, t))
                .count() as i64
        })
        .collect();
    normalize(&mut raw, true);
    add(&mut total, &raw, W_TAINT);

    // PodTopologySpread (ScheduleAnyway constraints).
    let raw = spread_scores(pending, cache, feasible);
    add(&mut total, &raw, W_SPREAD);

    // InterPodAffinity (preferred terms, both ways).
    let raw = inter_pod_scores(pending, cache, feasible);
    add(&mut total, &raw, W_INTER_POD);

    total
}

fn add(total: &mut [i64], raw: &[i64], weight: i64) {
    for (t, r) in total.iter_mut().zip(raw) {
        *t += weight * r;
    }
}

/// PodTopologySpread's score: fewer matching pods in a node's domains is
/// better; constraints are weighted by log(domains + 2).
fn spread_scores(pending: &Pending, cache: &Cache, feasible: &[&NodeInfo]) -> Vec<i64> {
    let soft: Vec<_> = pending.spread.iter().filter(|s| !s.hard).collect();
    if soft.is_empty() {
        return vec![0; feasible.len()];
    }
    let ns = pending.info.namespace.as_str();
    // With explicit constraints, nodes lacking a topology key are ignored
    // (score 0); the system defaults just skip the missing key.
    let require_all = soft.iter().any(|c| c.same_owner.is_none());
    let ignored: Vec<bool> = feasible
        .iter()
        .map(|n| require_all && !soft.iter().all(|c| n.labels.contains_key(&c.topology_key)))
        .collect();
    let mut raw = vec![0f64; feasible.len()];
    for c in &soft {
        let count_on = |n: &NodeInfo| -> i64 {
            match &c.same_owner {
                Some(o) => n.owner_counts.get(o).copied().unwrap_or(0) as i64,
                None => n.pods.values().filter(|p| c.counts(p, ns)).count() as i64,
            }
        };
        let by_domain = c.topology_key != "kubernetes.io/hostname";
        let mut domains: HashMap<&str, i64> = HashMap::new();
        if by_domain {
            for n in cache.order.iter().filter_map(|n| cache.nodes.get(n)) {
                if c.honor_affinity && !pending.node_affinity_ok(n) {
                    continue;
                }
                if let Some(v) = n.labels.get(&c.topology_key) {
                    *domains.entry(v.as_str()).or_insert(0) += count_on(n);
                }
            }
        }
        // The number of domains among the candidate nodes.
        let size = if by_domain {
            let values: std::collections::HashSet<&str> = feasible
                .iter()
                .filter_map(|n| n.labels.get(&c.topology_key))
                .map(String::as_str)
                .collect();
            values.len()
        } else {
            feasible
                .iter()
                .filter(|n| n.labels.contains_key(&c.topology_key))
                .count()
        };
        let weight = ((size + 2) as f64).ln();
        for (i, n) in feasible.iter().enumerate() {
            let Some(v) = n.labels.get(&c.topology_key) else {
                continue;
            };
            let cnt = if by_domain {
                domains.get(v.as_str()).copied().unwrap_or(0)
            } else {
                count_on(n)
            };
            raw[i] += cnt as f64 * weight + (c.max_skew - 1) as f64;
        }
    }
    let raw: Vec<i64> = raw.iter().map(|s| s.round() as i64).collect();
    let considered = || {
        raw.iter()
            .zip(&ignored)
            .filter(|(_, ig)| !**ig)
            .map(|(s, _)| *s)
    };
    let min = considered().min().unwrap_or(0);
    let max = considered().max().unwrap_or(0);
    raw.iter()
        .zip(&ignored)
        .map(|(s, ig)| {
            if *ig {
                0
            } else if max == 0 {
                MAX_SCORE
            } else {
                MAX_SCORE * (max + min - s) / max
            }
        })
        .collect()
}

/// InterPodAffinity's score: the pod's preferred (anti-)affinity towards
/// existing pods, and existing pods' preferences (and hard affinity, with
/// weight 1) towards this pod, summed per topology domain and scaled so the
/// lowest node gets 0 and the highest 100.
fn inter_pod_scores(pending: &Pending, cache: &Cache, feasible: &[&NodeInfo]) -> Vec<i64> {
    let own = pending.info.affinity.as_deref();
    let has_own = own
        .is_some_and(|a| !a.preferred_affinity.is_empty() || !a.preferred_anti_affinity.is_empty());
    let others = cache.nodes.values().any(|n| n.pods_with_affinity > 0);
    if !has_own && !others {
        return vec![0; feasible.len()];
    }
    let nsl = &cache.namespace_labels;
    let ns = pending.info.namespace.as_str();
    let mut by_pair: HashMap<(String, String), i64> = HashMap::new();
    let mut bump = |key: &str, n: &NodeInfo, w: i64| {
        if let Some(v) = n.labels.get(key) {
            *by_pair.entry((key.to_string(), v.clone())).or_insert(0) += w;
        }
    };
    for (n, p) in cache.all_pods() {
        if let Some(a) = own {
            for t in &a.preferred_affinity {
                if t.matches(&p.namespace, &p.labels, nsl) {
                    bump(&t.topology_key, n, t.weight);
                }
            }
            for t in &a.preferred_anti_affinity {
                if t.matches(&p.namespace, &p.labels, nsl) {
                    bump(&t.topology_key, n, -t.weight);
                }
            }
        }
        if let Some(pa) = p.affinity.as_deref() {
            for t in &pa.required_affinity {
                if t.matches(ns, &pending.info.labels, nsl) {
                    bump(&t.topology_key, n, 1);
                }
            }
            for t in &pa.preferred_affinity {
                if t.matches(ns, &pending.info.labels, nsl) {
                    bump(&t.topology_key, n, t.weight);
                }
            }
            for t in &pa.preferred_anti_affinity {
                if t.matches(ns, &pending.info.labels, nsl) {
                    bump(&t.topology_key, n, -t.weight);
                }
            }
        }
    }
    let raw: Vec<i64> = feasible
        .iter()
        .map(|n| {
            n.labels
                .iter()
                .map(|(k, v)| by_pair.get(&(k.clone(), v.clone())).copied().unwrap_or(0))
                .sum::<i64>()
        })
        .collect();
    let min = raw.iter().copied().min().unwrap_or(0);
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| {
            if max > min {
                (MAX_SCORE as f64 * (s - min) as f64 / (max - min) as f64) as i64
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::PodInfo;
    use crate::scheduler::volumes::VolumeState;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn node(name: &str, labels: Value, extra: Value) -> Node {
        let mut n = json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
        });
        if let (Some(obj), Some(extra)) = (n.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(n).unwrap()
    }

    fn pending(spec: Value) -> Pending {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] =
                json!([{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]);
        }
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "p", "labels": {"app": "web"}},
            "spec": spec
        }))
        .unwrap();
        Pending::new(Arc::new(p), VolumeState::default())
    }

    fn best(strategy: SchedulerScoring, cache: &Cache, p: &Pending) -> String {
        let nodes: Vec<&NodeInfo> = cache.order.iter().map(|n| &cache.nodes[n]).collect();
        let s = score(strategy, p, cache, &nodes);
        let i = (0..s.len())
            .max_by_key(|i| (s[*i], std::cmp::Reverse(*i)))
            .unwrap();
        nodes[i].name.clone()
    }

    fn busy(cache: &mut Cache, node: &str, name: &str, cpu: &str) {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}
        }))
        .unwrap();
        cache.add_pod(PodInfo::from_pod(&p));
    }

    #[test]
    fn least_and_most_allocated() {
        assert_eq!(least_allocated(1000, 4000), 75);
        assert_eq!(least_allocated(5000, 4000), 0);
        assert_eq!(most_allocated(1000, 4000), 25);
        assert_eq!(most_allocated(5000, 4000), 100);
        let mut cache = Cache::default();
        cache.upsert_node(&node("empty", json!({}), json!({})));
        cache.upsert_node(&node("half", json!({}), json!({})));
        busy(&mut cache, "half", "x", "2");
        let p = pending(json!({}));
        assert_eq!(best(SchedulerScoring::LeastAllocated, &cache, &p), "empty");
        assert_eq!(best(SchedulerScoring::MostAllocated, &cache, &p), "half");
    }

    #[test]
    fn balanced_prefers_even_use() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("a", json!({}), json!({})));
        let p = pending(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}]}),
        );
        assert_eq!(balanced_score(&p, &cache.nodes["a"]), 100);
        let p = pending(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "4"}}}]}),
        );
        assert_eq!(balanced_score(&p, &cache.nodes["a"]), 50);
    }

    #[test]
    fn preferences_and_soft_taints() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("plain", json!({}), json!({})));
        cache.upsert_node(&node("ssd", json!({"disk": "ssd"}), json!({})));
        cache.upsert_node(&node(
            "tainted",
            json!({"disk": "ssd"}),
            json!({"spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}}),
        ));
        let p = pending(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}),
        );
        assert_eq!(best(SchedulerScoring::LeastAllocated, &cache, &p), "ssd");
    }

    #[test]
    fn images_attract() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("a", json!({}), json!({})));
        cache.upsert_node(&node(
            "b",
            json!({}),
            json!({"status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "images": [{"names": ["docker.io/library/big:1"], "sizeBytes": 800_000_000}]}}),
        ));
        let p = pending(json!({"containers": [{"name": "c", "image": "big:1"}]}));
        assert_eq!(best(SchedulerScoring::LeastAllocated, &cache, &p), "b");
        assert!(
            image_score(
                &p,
                &cache.nodes["b"],
                2,
                &[("docker.io/library/big:1".to_string(), 1)].into()
            ) > 0
        );
    }

    #[test]
    fn spreading_and_pod_preferences() {
        let mut cache = Cache::default();
        for n in ["a", "b"] {
            cache.upsert_node(&node(n, json!({"kubernetes.io/hostname": n}), json!({})));
        }
        let mut web = |name: &str, node: &str| {
            let p: Pod = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "d", "uid": name, "labels": {"app": "web"}},
                "spec": {"nodeName": node, "containers": [{"name": "c"}]}
            }))
            .unwrap();
            cache.add_pod(PodInfo::from_pod(&p));
        };
        web("w1", "a");
        web("w2", "a");
        let p = pending(
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]}),
        );
        assert_eq!(
            best(SchedulerScoring::MostAllocated, &cache, &p),
            "b",
            "spreading beats bin-packing"
        );
        let p = pending(
            json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {"app": "web"}}}}]}}}),
        );
        assert_eq!(best(SchedulerScoring::LeastAllocated, &cache, &p), "a");
    }
}
