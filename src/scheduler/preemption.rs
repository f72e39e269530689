//! DefaultPreemption: when a pod fits nowhere, find the node where evicting
//! the fewest, least important lower-priority pods makes room, and choose
//! victims there (upstream's dry run, reprieve and node ranking, without
//! PodDisruptionBudgets yet).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::cache::{Cache, NodeInfo, PodInfo};
use super::filters::{self, Code, Pending, Status};

pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NOT_ELIGIBLE_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const NOT_ELIGIBLE_TERMINATING: &str =
    "not eligible due to a terminating pod on the nominated node.";

/// Where to preempt and whom.
#[derive(Clone, Debug)]
pub struct Plan {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    /// Lower-priority pods nominated to that node, whose nomination goes.
    pub clear_nominations: Vec<Arc<PodInfo>>,
}

#[derive(Debug)]
pub enum Outcome {
    Preempt(Plan),
    /// The pod may not preempt (message for the event).
    NotEligible(&'static str),
    /// No node works; per-node reasons for the message.
    NoCandidate(HashMap<String, Status>),
}

/// Whether `a` is more important than `b`: higher priority, then older.
fn more_important(a: &PodInfo, b: &PodInfo) -> bool {
    if a.priority != b.priority {
        return a.priority > b.priority;
    }
    a.start_time < b.start_time
}

pub fn preempt(pending: &Pending, cache: &Cache, statuses: &HashMap<String, Status>) -> Outcome {
    let spec = pending.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Outcome::NotEligible(NOT_ELIGIBLE_NEVER);
    }
    let prio = pending.info.priority;
    if let Some(nom) = pending
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
        && statuses
            .get(nom)
            .is_none_or(|s| s.code != Code::Unresolvable)
        && let Some(n) = cache.nodes.get(nom)
        && n.pods.values().any(|p| p.terminating && p.priority < prio)
    {
        return Outcome::NotEligible(NOT_ELIGIBLE_TERMINATING);
    }

    let mut out_statuses = HashMap::new();
    let mut candidates: Vec<(String, Vec<Arc<PodInfo>>)> = Vec::new();
    for name in &cache.order {
        let Some(n) = cache.nodes.get(name) else {
            continue;
        };
        if statuses
            .get(name)
            .is_some_and(|s| s.code == Code::Unresolvable)
        {
            out_statuses.insert(
                name.clone(),
                Status {
                    code: Code::Unresolvable,
                    reasons: vec![NOT_HELPFUL.into()],
                },
            );
            continue;
        }
        match select_victims(pending, cache, n) {
            Ok(victims) => candidates.push((name.clone(), victims)),
            Err(s) => {
                out_statuses.insert(name.clone(), s);
            }
        }
    }
    let Some((node, victims)) = pick(candidates) else {
        return Outcome::NoCandidate(out_statuses);
    };
    let clear_nominations = cache
        .nominated
        .values()
        .filter(|n| n.node == node && n.info.priority < prio && n.info.key != pending.info.key)
        .map(|n| n.info.clone())
        .collect();
    Outcome::Preempt(Plan {
        node,
        victims,
        clear_nominations,
    })
}

/// The victims on one node, or why there are none.
fn select_victims(
    pending: &Pending,
    cache: &Cache,
    n: &NodeInfo,
) -> Result<Vec<Arc<PodInfo>>, Status> {
    let prio = pending.info.priority;
    let mut potential: Vec<Arc<PodInfo>> = n
        .pods
        .values()
        .filter(|p| p.priority < prio && !p.terminating)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status {
            code: Code::Unresolvable,
            reasons: vec![NO_VICTIMS.into()],
        });
    }
    let mut trial = n.clone();
    for p in &potential {
        trial.remove_pod(&p.key);
    }
    let nominated = cache.nominated_on(&n.name, prio, &pending.info.key);
    let mut excluded: HashSet<String> = potential.iter().map(|p| p.key.clone()).collect();
    let pre = filters::prefilter(pending, cache, &excluded);
    filters::filter(pending, &pre, cache, &trial, &nominated)?;
    // Reprieve as many as possible, most important first.
    potential.sort_by(|a, b| {
        if more_important(a, b) {
            std::cmp::Ordering::Less
        } else if more_important(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let mut victims = Vec::new();
    for p in potential {
        trial.add_pod(p.clone());
        excluded.remove(&p.key);
        let pre = filters::prefilter(pending, cache, &excluded);
        if filters::filter(pending, &pre, cache, &trial, &nominated).is_err() {
            trial.remove_pod(&p.key);
            excluded.insert(p.key.clone());
            victims.push(p);
        }
    }
    if victims.is_empty() {
        // It fits without evicting anyone (room freed meanwhile); upstream
        // treats that as an error for this node.
        return Err(Status {
            code: Code::Unresolvable,
            reasons: vec![format!(
                "expected at least one victim pod on node \"{}\"",
                n.name
            )],
        });
    }
    Ok(victims)
}

/// Upstream's ranking: lowest highest-victim priority, then lowest sum of
/// priorities, then fewest victims, then the latest-started highest-priority
/// victims, then the first node.
fn pick(candidates: Vec<(String, Vec<Arc<PodInfo>>)>) -> Option<(String, Vec<Arc<PodInfo>>)> {
    let key = |v: &[Arc<PodInfo>]| {
        let highest = v.iter().map(|p| p.priority).max().unwrap_or(i32::MIN);
        let sum: i64 = v.iter().map(|p| i64::from(p.priority) + (1i64 << 31)).sum();
        let earliest_of_highest = v
            .iter()
            .filter(|p| p.priority == highest)
            .map(|p| p.start_time)
            .min()
            .unwrap_or(i64::MAX);
        (
            highest,
            sum,
            v.len(),
            std::cmp::Reverse(earliest_of_highest),
        )
    };
    let mut best: Option<(String, Vec<Arc<PodInfo>>)> = None;
    for (node, victims) in candidates {
        let better = match &best {
            None => true,
            Some((_, bv)) => key(&victims) < key(bv),
        };
        if better {
            best = Some((node, victims));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::volumes::VolumeState;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"}}
        }))
        .unwrap()
    }

    fn pod(name: &str, node: Option<&str>, cpu: &str, priority: i32, start: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": name, "creationTimestamp": start},
            "spec": {"nodeName": node, "priority": priority,
                     "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .unwrap()
    }

    fn statuses(pending: &Pending, cache: &Cache) -> HashMap<String, Status> {
        let pre = filters::prefilter(pending, cache, &HashSet::new());
        cache
            .order
            .iter()
            .filter_map(|n| {
                filters::filter(pending, &pre, cache, &cache.nodes[n], &[])
                    .err()
                    .map(|s| (n.clone(), s))
            })
            .collect()
    }

    #[test]
    fn evicts_the_fewest_least_important_pods() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("a"));
        cache.upsert_node(&node("b"));
        // a: two low pods of 1 cpu; b: one medium pod of 2 cpu.
        cache.add_pod(PodInfo::from_pod(&pod(
            "a1",
            Some("a"),
            "1",
            10,
            "2024-01-01T00:00:00Z",
        )));
        cache.add_pod(PodInfo::from_pod(&pod(
            "a2",
            Some("a"),
            "1",
            10,
            "2024-01-01T00:00:01Z",
        )));
        cache.add_pod(PodInfo::from_pod(&pod(
            "b1",
            Some("b"),
            "2",
            50,
            "2024-01-01T00:00:00Z",
        )));
        let pending = Pending::new(
            Arc::new(pod("hi", None, "1", 100, "2024-01-02T00:00:00Z")),
            VolumeState::default(),
        );
        let st = statuses(&pending, &cache);
        assert_eq!(st.len(), 2);
        let Outcome::Preempt(plan) = preempt(&pending, &cache, &st) else {
            panic!("expected a plan")
        };
        assert_eq!(
            plan.node, "a",
            "lower victim priority wins over fewer victims"
        );
        let names: Vec<&str> = plan.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["a2"], "one victim is enough; the younger one goes");
    }

    #[test]
    fn not_eligible_or_not_helpful() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("a"));
        cache.add_pod(PodInfo::from_pod(&pod(
            "a1",
            Some("a"),
            "2",
            1000,
            "2024-01-01T00:00:00Z",
        )));
        let pending = Pending::new(
            Arc::new(pod("p", None, "1", 10, "2024-01-02T00:00:00Z")),
            VolumeState::default(),
        );
        let st = statuses(&pending, &cache);
        let Outcome::NoCandidate(s) = preempt(&pending, &cache, &st) else {
            panic!()
        };
        assert_eq!(s["a"].reasons, [NO_VICTIMS]);

        let big = Pending::new(
            Arc::new(pod("big", None, "3", 2000, "2024-01-02T00:00:00Z")),
            VolumeState::default(),
        );
        let st = statuses(&big, &cache);
        let Outcome::NoCandidate(s) = preempt(&big, &cache, &st) else {
            panic!()
        };
        assert_eq!(
            s["a"].reasons,
            [NOT_HELPFUL],
            "3 cpu can never fit a 2 cpu node"
        );

        let mut never = pod("n", None, "1", 2000, "2024-01-02T00:00:00Z");
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        let never = Pending::new(Arc::new(never), VolumeState::default());
        assert!(matches!(
            preempt(&never, &cache, &statuses(&never, &cache)),
            Outcome::NotEligible(NOT_ELIGIBLE_NEVER)
        ));
    }
}
