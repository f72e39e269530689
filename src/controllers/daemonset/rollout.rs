//! The DaemonSet controller's decisions, free of I/O: which nodes need a
//! daemon pod and which pods must go (upstream's podsShouldBeOnNode), the
//! rolling update under maxUnavailable or maxSurge (rollingUpdate), and the
//! status counters.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::history::REVISION_HASH_LABEL;
use super::super::statefulset::podstate::{is_available, is_ready};

/// The deprecated label older controllers used for template generations.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The annotation the API server keeps a DaemonSet's template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// Daemon pods on each node (by target node), sorted oldest first.
pub type NodePods<'a> = BTreeMap<String, Vec<&'a Pod>>;

/// An int-or-percent scaled against `total` (upstream's
/// GetScaledValueFromIntOrPercent); a bad value counts as 0.
pub fn scaled(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let Some(pct) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let prod = pct * i64::from(total);
            let v = if round_up {
                (prod + 99).div_euclid(100)
            } else {
                prod.div_euclid(100)
            };
            i32::try_from(v).unwrap_or(i32::MAX)
        }
    }
}

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    let us = ds.spec.as_ref()?.update_strategy.as_ref()?;
    if us.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    us.rolling_update.as_ref()
}

pub fn is_rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// maxSurge in pods for `desired` scheduled pods (0 unless RollingUpdate).
pub fn surge_count(ds: &DaemonSet, desired: i32) -> i32 {
    rolling(ds).map_or(0, |r| scaled(r.max_surge.as_ref(), desired, true))
}

/// maxUnavailable in pods for `desired` scheduled pods (0 unless RollingUpdate).
pub fn unavailable_count(ds: &DaemonSet, desired: i32) -> i32 {
    rolling(ds).map_or(0, |r| scaled(r.max_unavailable.as_ref(), desired, true))
}

/// Whether the update strategy surges (maxSurge > 0).
pub fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1) != 0
}

/// The template generation the API server recorded, if any.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Whether a pod is at the DaemonSet's current template.
pub fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let generation_matches = generation
        .is_some_and(|g| label(pod, TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
    let hash_matches = !hash.is_empty() && label(pod, REVISION_HASH_LABEL) == Some(hash);
    hash_matches || generation_matches
}

/// Scheduled pods first, then oldest first, then by name.
pub fn by_creation_and_phase(a: &&Pod, b: &&Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    scheduled(b)
        .cmp(&scheduled(a))
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// What one node needs.
#[derive(Debug, Default, PartialEq)]
pub struct NodePlan {
    /// The node needs a (new) daemon pod.
    pub create: bool,
    /// Pods to delete.
    pub delete: Vec<String>,
    /// Failed pods: deleted subject to a back-off the caller keeps.
    pub failed: Vec<String>,
}

/// Upstream's podsShouldBeOnNode for one node, given NodeShouldRunDaemonPod.
pub fn plan_node(
    (should_run, should_continue): (bool, bool),
    pods: &[&Pod],
    surge: bool,
    hash: &str,
    min_ready: i32,
    now: Timestamp,
) -> NodePlan {
    let mut plan = NodePlan::default();
    if should_run && pods.is_empty() {
        plan.create = true;
        return plan;
    }
    if !should_continue {
        plan.delete = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| name(p))
            .collect();
        return plan;
    }
    let mut running: Vec<&Pod> = Vec::new();
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        match phase(pod) {
            "Failed" => plan.failed.push(name(pod)),
            "Succeeded" => plan.delete.push(name(pod)),
            _ => running.push(pod),
        }
    }
    running.sort_by(by_creation_and_phase);
    if !surge {
        // One pod per node: the oldest stays.
        plan.delete.extend(running.iter().skip(1).map(|p| name(p)));
        return plan;
    }
    if running.len() <= 1 {
        if running.is_empty() && should_run {
            plan.create = true;
        }
        return plan;
    }
    // Surging: keep the oldest new pod and the oldest old pod; the old one
    // goes once the new one is available (or if it is not ready anyway).
    let (mut oldest_new, mut oldest_old) = (None, None);
    for pod in running {
        let slot = if label(pod, REVISION_HASH_LABEL) == Some(hash) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            plan.delete.push(name(pod));
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!is_ready(old) || is_available(new, min_ready, now))
    {
        plan.delete.push(name(old));
    }
    plan
}

/// The new and old pod on a node; None when there are more than one of either.
fn updated_pods_on_node<'a>(
    pods: &[&'a Pod],
    hash: &str,
    generation: Option<i64>,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_pod_updated(pod, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*pod);
    }
    Some((new, old))
}

/// What a rolling update step does.
#[derive(Debug, Default, PartialEq)]
pub struct RolloutPlan {
    pub delete: Vec<String>,
    pub create_on: Vec<String>,
}

/// Inputs of a rolling update step.
pub struct Rollout<'a> {
    /// Daemon pods by node, with an (empty) entry for every node that should run one.
    pub node_pods: &'a NodePods<'a>,
    pub hash: &'a str,
    pub generation: Option<i64>,
    pub max_surge: i32,
    pub max_unavailable: i32,
    pub desired: i32,
    pub min_ready: i32,
    pub now: Timestamp,
}

/// Upstream's rollingUpdate: without surge, delete old pods while fewer
/// than maxUnavailable are unavailable (the manage step then recreates
/// them); with surge, start new pods next to available old ones, up to
/// maxSurge at a time, and delete old pods whose replacement is available.
pub fn rolling_update(r: &Rollout, should_run: &dyn Fn(&str) -> bool) -> RolloutPlan {
    let avail = |p: &Pod| is_available(p, r.min_ready, r.now);
    let mut plan = RolloutPlan::default();
    if r.max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for pods in r.node_pods.values() {
            let Some((new, old)) = updated_pods_on_node(pods, r.hash, r.generation) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !avail(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !avail(old) {
                        replace_now.push(name(old));
                        unavailable += 1;
                    } else if unavailable < r.max_unavailable {
                        candidates.push(name(old));
                    }
                }
            }
        }
        let room = usize::try_from((r.max_unavailable - unavailable).max(0))
            .unwrap_or(0)
            .min(candidates.len());
        plan.delete = replace_now;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }

    let (mut surge, mut available) = (0, 0);
    let mut allowed_new = Vec::new();
    let mut candidate_new = Vec::new();
    let mut not_running_here = Vec::new();
    for (node, pods) in r.node_pods {
        let Some((new, old)) = updated_pods_on_node(pods, r.hash, r.generation) else {
            surge += 1;
            continue;
        };
        if let Some(p) = old.or(new)
            && avail(p)
        {
            available += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !avail(old) {
                    if should_run(node) {
                        allowed_new.push(node.clone());
                    } else {
                        plan.delete.push(name(old));
                    }
                } else if !should_run(node) {
                    not_running_here.push(name(old));
                } else if surge < r.max_surge {
                    candidate_new.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if avail(new) {
                    plan.delete.push(name(old));
                } else {
                    surge += 1;
                }
            }
        }
    }
    // Pods on nodes that no longer qualify go only while enough pods are
    // available elsewhere: surging promises no loss of availability.
    let deletable = usize::try_from((available - r.desired).max(0))
        .unwrap_or(0)
        .min(not_running_here.len());
    plan.delete
        .extend(not_running_here.into_iter().take(deletable));
    let room = usize::try_from((r.max_surge - surge).max(0))
        .unwrap_or(0)
        .min(candidate_new.len());
    plan.create_on = allowed_new;
    plan.create_on.extend(candidate_new.into_iter().take(room));
    plan
}

/// The status counters.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
}

/// Count over nodes given as (name, should run a daemon pod there).
pub fn count(
    nodes: &[(String, bool)],
    node_pods: &NodePods,
    hash: &str,
    generation: Option<i64>,
    min_ready: i32,
    now: Timestamp,
) -> Counts {
    let mut c = Counts::default();
    for (node, should_run) in nodes {
        let mut pods: Vec<&Pod> = node_pods.get(node).cloned().unwrap_or_default();
        let scheduled = !pods.is_empty();
        if !should_run {
            if scheduled {
                c.misscheduled += 1;
            }
            continue;
        }
        c.desired += 1;
        if !scheduled {
            continue;
        }
        c.current += 1;
        pods.sort_by(by_creation_and_phase);
        let pod = pods[0];
        if is_ready(pod) {
            c.ready += 1;
            if is_available(pod, min_ready, now) {
                c.available += 1;
            }
        }
        if is_pod_updated(pod, hash, generation) {
            c.updated += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::super::super::statefulset::podstate::testing::with_phase;
    use super::*;

    fn pod(name: &str, hash: &str, ready: bool, age_s: i64) -> Pod {
        let p = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(REVISION_HASH_LABEL.to_string(), hash.to_string())].into()),
                creation_timestamp: Some(Time(
                    Timestamp::now() - jiff::SignedDuration::from_secs(age_s),
                )),
                ..Default::default()
            },
            ..Default::default()
        };
        if ready {
            with_phase(p, "Running", true)
        } else {
            with_phase(p, "Pending", false)
        }
    }

    fn names(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn scaling_int_or_percent() {
        assert_eq!(scaled(Some(&IntOrString::Int(2)), 10, true), 2);
        assert_eq!(
            scaled(Some(&IntOrString::String("25%".into())), 10, true),
            3
        );
        assert_eq!(
            scaled(Some(&IntOrString::String("25%".into())), 10, false),
            2
        );
        assert_eq!(
            scaled(Some(&IntOrString::String("bad".into())), 10, true),
            0
        );
        assert_eq!(scaled(None, 10, true), 0);
    }

    #[test]
    fn node_plans() {
        let now = Timestamp::now();
        assert_eq!(
            plan_node((true, true), &[], false, "h", 0, now),
            NodePlan {
                create: true,
                ..Default::default()
            }
        );
        assert_eq!(
            plan_node((false, false), &[], false, "h", 0, now),
            NodePlan::default()
        );
        let a = pod("a", "h", true, 20);
        let b = pod("b", "h", true, 10);
        // Not allowed here: everything goes.
        assert_eq!(
            names(&plan_node((false, false), &[&a, &b], false, "h", 0, now).delete),
            ["a", "b"]
        );
        // Tainted NoSchedule: existing pods stay.
        assert!(
            plan_node((false, true), &[&a], false, "h", 0, now)
                .delete
                .is_empty()
        );
        // Two pods without surge: the younger goes.
        assert_eq!(
            names(&plan_node((true, true), &[&b, &a], false, "h", 0, now).delete),
            ["b"]
        );
        // Failed pods are reported for back-off; succeeded ones deleted.
        let f = with_phase(pod("f", "h", false, 5), "Failed", false);
        let s = with_phase(pod("s", "h", false, 5), "Succeeded", false);
        let p = plan_node((true, true), &[&f, &s], false, "h", 0, now);
        assert_eq!(
            (names(&p.failed), names(&p.delete), p.create),
            (vec!["f"], vec!["s"], false)
        );
        // Surge: old and new both kept while the new one is not ready.
        let old = pod("old", "h1", true, 20);
        let new_unready = pod("new", "h2", false, 1);
        assert!(
            plan_node((true, true), &[&old, &new_unready], true, "h2", 0, now)
                .delete
                .is_empty()
        );
        let new_ready = pod("new", "h2", true, 1);
        assert_eq!(
            names(&plan_node((true, true), &[&old, &new_ready], true, "h2", 0, now).delete),
            ["old"]
        );
        // Surge with no live pod: create.
        assert!(plan_node((true, true), &[&f], true, "h2", 0, now).create);
    }

    fn rollout<'a>(
        np: &'a NodePods<'a>,
        surge: i32,
        unavailable: i32,
        desired: i32,
    ) -> Rollout<'a> {
        Rollout {
            node_pods: np,
            hash: "h2",
            generation: None,
            max_surge: surge,
            max_unavailable: unavailable,
            desired,
            min_ready: 0,
            now: Timestamp::now(),
        }
    }

    #[test]
    fn rolling_update_without_surge_respects_max_unavailable() {
        let (a, b, c) = (
            pod("a", "h1", true, 9),
            pod("b", "h1", true, 9),
            pod("c", "h1", true, 9),
        );
        let np: NodePods = [
            ("n1".to_string(), vec![&a]),
            ("n2".to_string(), vec![&b]),
            ("n3".to_string(), vec![&c]),
        ]
        .into();
        let plan = rolling_update(&rollout(&np, 0, 1, 3), &|_| true);
        assert_eq!((names(&plan.delete), plan.create_on.len()), (vec!["a"], 0));
        let plan = rolling_update(&rollout(&np, 0, 2, 3), &|_| true);
        assert_eq!(names(&plan.delete), ["a", "b"]);
        // A node already without a pod uses up the budget.
        let np2: NodePods = [
            ("n1".to_string(), vec![]),
            ("n2".to_string(), vec![&b]),
            ("n3".to_string(), vec![&c]),
        ]
        .into();
        assert!(
            rolling_update(&rollout(&np2, 0, 1, 3), &|_| true)
                .delete
                .is_empty()
        );
        // An unavailable old pod is replaced regardless.
        let sick = pod("sick", "h1", false, 9);
        let np3: NodePods = [
            ("n1".to_string(), vec![&sick]),
            ("n2".to_string(), vec![&b]),
        ]
        .into();
        assert_eq!(
            names(&rolling_update(&rollout(&np3, 0, 1, 2), &|_| true).delete),
            ["sick"]
        );
        // An updated but unready pod blocks further deletions.
        let fresh = pod("fresh", "h2", false, 1);
        let np4: NodePods = [
            ("n1".to_string(), vec![&fresh]),
            ("n2".to_string(), vec![&b]),
        ]
        .into();
        assert!(
            rolling_update(&rollout(&np4, 0, 1, 2), &|_| true)
                .delete
                .is_empty()
        );
    }

    #[test]
    fn rolling_update_with_surge() {
        let (a, b) = (pod("a", "h1", true, 9), pod("b", "h1", true, 9));
        let np: NodePods = [("n1".to_string(), vec![&a]), ("n2".to_string(), vec![&b])].into();
        let plan = rolling_update(&rollout(&np, 1, 0, 2), &|_| true);
        assert_eq!(
            (plan.delete.len(), plan.create_on.clone()),
            (0, vec!["n1".to_string()])
        );
        // New pod up but not available: wait (surge used up).
        let new_unready = pod("a2", "h2", false, 1);
        let np: NodePods = [
            ("n1".to_string(), vec![&a, &new_unready]),
            ("n2".to_string(), vec![&b]),
        ]
        .into();
        assert_eq!(
            rolling_update(&rollout(&np, 1, 0, 2), &|_| true),
            RolloutPlan::default()
        );
        // New pod available: the old one goes, the next node surges.
        let new_ready = pod("a2", "h2", true, 1);
        let np: NodePods = [
            ("n1".to_string(), vec![&a, &new_ready]),
            ("n2".to_string(), vec![&b]),
        ]
        .into();
        let plan = rolling_update(&rollout(&np, 1, 0, 2), &|_| true);
        assert_eq!(
            (names(&plan.delete), plan.create_on),
            (vec!["a"], vec!["n2".to_string()])
        );
    }

    #[test]
    fn counting() {
        let now = Timestamp::now();
        let (a, b, x) = (
            pod("a", "h2", true, 9),
            pod("b", "h1", false, 9),
            pod("x", "h2", true, 9),
        );
        let np: NodePods = [
            ("n1".to_string(), vec![&a]),
            ("n2".to_string(), vec![&b]),
            ("n4".to_string(), vec![&x]),
        ]
        .into();
        let nodes = vec![
            ("n1".to_string(), true),
            ("n2".to_string(), true),
            ("n3".to_string(), true),
            ("n4".to_string(), false),
        ];
        let c = count(&nodes, &np, "h2", None, 0, now);
        assert_eq!(
            c,
            Counts {
                desired: 3,
                current: 2,
                misscheduled: 1,
                ready: 1,
                updated: 1,
                available: 1
            }
        );
        assert!(is_pod_updated(&a, "h2", None));
        let mut g = b.clone();
        g.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(TEMPLATE_GENERATION_LABEL.into(), "4".into());
        assert!(is_pod_updated(&g, "h2", Some(4)));
        assert!(!is_pod_updated(&g, "h2", Some(5)));
    }
}
