//! Which pods go first when a replica controller scales down: upstream's
//! ActivePodsWithRanks order. Earlier in the order = deleted first:
//!
//! 1. unassigned before assigned;
//! 2. Pending before Unknown before Running;
//! 3. not ready before ready;
//! 4. lower `controller.kubernetes.io/pod-deletion-cost` first;
//! 5. more related pods on the same node first (spread what remains);
//! 6. ready for less time first (log2 buckets of age, ties by uid);
//! 7. more container restarts first;
//! 8. newer first (log2 buckets of age, ties by uid).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;

use super::pods::PodInfo;

fn phase_ordinal(phase: &str) -> u8 {
    match phase {
        "Unknown" => 1,
        "Running" => 2,
        // Pending and anything unexpected rank lowest, as upstream's map miss.
        _ => 0,
    }
}

/// log2 of how long ago `t` was, in nanoseconds; -1 for "not in the past".
fn log_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d > 0 {
        (d as f64).log2().floor() as i64
    } else {
        -1
    }
}

/// Upstream's afterOrZero: a zero (unknown) time sorts first, then later
/// before earlier. Returns the ordering of `a` relative to `b`.
fn after_or_zero(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// Compare two times, newer first, with logarithmic buckets so that pods of
/// similar age are chosen from at random (by uid) rather than strictly by age.
fn newer_first(
    a: Option<Timestamp>,
    b: Option<Timestamp>,
    a_uid: &str,
    b_uid: &str,
    now: Timestamp,
) -> Ordering {
    match (a, b) {
        (Some(ta), Some(tb)) => {
            let diff = log_bucket(ta, now) - log_bucket(tb, now);
            if diff == 0 {
                a_uid.cmp(b_uid)
            } else {
                diff.cmp(&0)
            }
        }
        _ => after_or_zero(a, b),
    }
}

/// The deletion order of pod `a` (with `rank_a` related pods on its node)
/// against pod `b`: Less means `a` is deleted first.
pub fn deletion_order(
    a: &PodInfo,
    rank_a: usize,
    b: &PodInfo,
    rank_b: usize,
    now: Timestamp,
) -> Ordering {
    // 1. Unassigned < assigned.
    if a.node_name != b.node_name && (a.node_name.is_empty() || b.node_name.is_empty()) {
        return if a.node_name.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // 2. Pending < Unknown < Running.
    let (pa, pb) = (phase_ordinal(&a.phase), phase_ordinal(&b.phase));
    if pa != pb {
        return pa.cmp(&pb);
    }
    // 3. Not ready < ready.
    if a.ready != b.ready {
        return if a.ready {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    // 4. Lower deletion cost < higher.
    if a.deletion_cost != b.deletion_cost {
        return a.deletion_cost.cmp(&b.deletion_cost);
    }
    // 5. Doubled up < not doubled up.
    if rank_a != rank_b {
        return rank_b.cmp(&rank_a);
    }
    // 6. Ready for less time < more time.
    if a.ready && b.ready && a.ready_since != b.ready_since {
        let o = newer_first(a.ready_since, b.ready_since, &a.uid, &b.uid, now);
        if o != Ordering::Equal {
            return o;
        }
    }
    // 7. More restarts < fewer.
    if a.restarts != b.restarts {
        return b.restarts.cmp(&a.restarts);
    }
    // 8. Newer < older.
    if a.created != b.created {
        return newer_first(a.created, b.created, &a.uid, &b.uid, now);
    }
    Ordering::Equal
}

/// The `diff` pods of `filtered` to delete first. `related` are the active
/// pods of this controller and of its siblings (ReplicaSets of the same
/// Deployment); a pod's rank is how many of them share its node.
pub fn pods_to_delete(
    mut filtered: Vec<Arc<PodInfo>>,
    related: &[Arc<PodInfo>],
    diff: usize,
    now: Timestamp,
) -> Vec<Arc<PodInfo>> {
    if diff < filtered.len() {
        let mut on_node: HashMap<&str, usize> = HashMap::new();
        for p in related.iter().filter(|p| p.is_active()) {
            *on_node.entry(p.node_name.as_str()).or_default() += 1;
        }
        let mut ranked: Vec<(usize, Arc<PodInfo>)> = filtered
            .drain(..)
            .map(|p| (on_node.get(p.node_name.as_str()).copied().unwrap_or(0), p))
            .collect();
        ranked.sort_by(|(ra, a), (rb, b)| deletion_order(a, *ra, b, *rb, now));
        filtered = ranked.into_iter().map(|(_, p)| p).collect();
    }
    filtered.truncate(diff);
    filtered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap_or_default()
    }

    fn ago(secs: i64) -> Option<Timestamp> {
        Timestamp::from_second(now().as_second() - secs).ok()
    }

    fn running(name: &str, node: &str) -> PodInfo {
        PodInfo {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            node_name: node.into(),
            phase: "Running".into(),
            ready: true,
            ready_since: ago(3600),
            created: ago(3700),
            ..Default::default()
        }
    }

    fn order(mut pods: Vec<PodInfo>, related: &[PodInfo]) -> Vec<String> {
        let n = pods.len();
        let filtered: Vec<Arc<PodInfo>> = pods.drain(..).map(Arc::new).collect();
        let related: Vec<Arc<PodInfo>> = related.iter().cloned().map(Arc::new).collect();
        // diff < len forces the sort; add a dummy that always sorts last.
        let mut with_dummy = filtered.clone();
        let mut dummy = running("zz-dummy", "far");
        dummy.deletion_cost = i32::MAX;
        with_dummy.push(Arc::new(dummy));
        pods_to_delete(with_dummy, &related, n, now())
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    #[test]
    fn unassigned_then_phase_then_readiness() {
        let mut unassigned = running("unassigned", "");
        unassigned.phase = "Pending".into();
        unassigned.ready = false;
        let mut pending = running("pending", "n1");
        pending.phase = "Pending".into();
        pending.ready = false;
        let mut unknown = running("unknown", "n1");
        unknown.phase = "Unknown".into();
        unknown.ready = false;
        let mut not_ready = running("not-ready", "n1");
        not_ready.ready = false;
        not_ready.ready_since = None;
        let ready = running("ready", "n1");
        let got = order(vec![ready, not_ready, unknown, pending, unassigned], &[]);
        assert_eq!(
            got,
            ["unassigned", "pending", "unknown", "not-ready", "ready"]
        );
    }

    #[test]
    fn deletion_cost_before_colocation() {
        let mut cheap = running("cheap", "n1");
        cheap.deletion_cost = -5;
        let mut dear = running("dear", "n2");
        dear.deletion_cost = 100;
        let plain = running("plain", "n1");
        let got = order(vec![dear, plain, cheap], &[]);
        assert_eq!(got, ["cheap", "plain", "dear"]);
    }

    #[test]
    fn doubled_up_pods_go_first() {
        let a = running("alone", "n1");
        let b = running("crowded", "n2");
        let related = vec![
            running("r1", "n2"),
            running("r2", "n2"),
            running("alone", "n1"),
        ];
        let got = order(vec![a.clone(), b.clone()], &related);
        assert_eq!(got, ["crowded", "alone"]);
        // Terminating related pods do not count.
        let mut t1 = running("r1", "n2");
        t1.terminating = true;
        let mut t2 = running("r2", "n2");
        t2.terminating = true;
        let got = order(
            vec![a, b],
            &[t1, t2, running("x", "n1"), running("y", "n1")],
        );
        assert_eq!(got, ["alone", "crowded"]);
    }

    #[test]
    fn recently_ready_then_restarts_then_newest() {
        // Ready for 10 s vs an hour: different log2 buckets.
        let mut fresh = running("fresh", "n1");
        fresh.ready_since = ago(10);
        let old = running("old", "n1");
        assert_eq!(order(vec![old.clone(), fresh], &[]), ["fresh", "old"]);

        let mut crashy = running("crashy", "n1");
        crashy.restarts = 7;
        assert_eq!(order(vec![old.clone(), crashy], &[]), ["crashy", "old"]);

        let mut young = running("young", "n1");
        young.created = ago(100);
        assert_eq!(order(vec![old.clone(), young], &[]), ["young", "old"]);

        // Unknown creation time sorts first.
        let mut nocreate = running("nocreate", "n1");
        nocreate.created = None;
        assert_eq!(order(vec![old, nocreate], &[]), ["nocreate", "old"]);
    }

    #[test]
    fn same_bucket_ties_break_by_uid() {
        // 3600 s and 3700 s ago share a log2 bucket of nanoseconds.
        let mut a = running("a", "n1");
        a.created = ago(3600);
        a.uid = "b-uid".into();
        let mut b = running("b", "n1");
        b.created = ago(3700);
        b.uid = "a-uid".into();
        assert_eq!(
            log_bucket(ago(3600).unwrap_or_default(), now()),
            log_bucket(ago(3700).unwrap_or_default(), now())
        );
        assert_eq!(order(vec![a, b], &[]), ["b", "a"]);
    }

    #[test]
    fn deleting_all_skips_sorting() {
        let pods: Vec<Arc<PodInfo>> =
            vec![Arc::new(running("x", "n1")), Arc::new(running("y", ""))];
        let got = pods_to_delete(pods, &[], 5, now());
        assert_eq!(got.len(), 2);
        let pods: Vec<Arc<PodInfo>> =
            vec![Arc::new(running("x", "n1")), Arc::new(running("y", ""))];
        let got = pods_to_delete(pods, &[], 1, now());
        assert_eq!(got[0].name, "y");
    }
}
