//! The replica calculator of upstream's HPA controller for resource
//! metrics: from per-pod usage (milli-units) and the target, how many
//! replicas the target should have. Pure functions over the pods and their
//! metrics, so every rule is unit-tested:
//!
//! - within the tolerance (10 %) of the target nothing changes;
//! - pods being deleted or Failed are ignored; Pending pods, and (for CPU)
//!   pods not ready or whose sample may predate readiness, are "unready";
//!   pods with no sample are "missing";
//! - unready pods count as 0 % when scaling up; missing pods count as 100 %
//!   of their request (or the target) when scaling down and 0 % when scaling
//!   up; if that flips the direction, or lands within the tolerance, the
//!   replica count stays.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use jiff::Timestamp;

/// The default `--horizontal-pod-autoscaler-tolerance`.
pub const TOLERANCE: f64 = 0.1;
/// `--horizontal-pod-autoscaler-cpu-initialization-period`.
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// `--horizontal-pod-autoscaler-initial-readiness-delay`.
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

/// What the calculator needs to know of a pod.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub name: String,
    pub phase: String,
    pub deleting: bool,
    /// The Ready condition: whether it is True, and when it last changed.
    pub ready: Option<(bool, Timestamp)>,
    pub start_time: Option<Timestamp>,
    /// Each container's request of the resource in question (milli-units).
    pub requests: Vec<(String, Option<i64>)>,
}

/// One pod's usage of the resource (milli-units), as the metrics API said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: Timestamp,
    pub window: Duration,
}

pub type Metrics = HashMap<String, PodMetric>;

/// The calculator's settings and clock.
#[derive(Clone, Copy, Debug)]
pub struct Calculator {
    pub tolerance: f64,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
    pub now: Timestamp,
}

impl Calculator {
    pub fn new(now: Timestamp) -> Self {
        Calculator {
            tolerance: TOLERANCE,
            cpu_initialization_period: CPU_INITIALIZATION_PERIOD,
            initial_readiness_delay: INITIAL_READINESS_DELAY,
            now,
        }
    }
}

/// A Utilization target's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtilizationResult {
    pub replicas: i32,
    /// Current utilization, percent of requests.
    pub utilization: i32,
    /// Average usage per pod, milli-units.
    pub raw_average: i64,
}

struct Groups {
    ready_count: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

impl Calculator {
    fn group_pods(&self, pods: &[PodInfo], metrics: &Metrics, resource: &str) -> Groups {
        let mut g = Groups {
            ready_count: 0,
            unready: BTreeSet::new(),
            missing: BTreeSet::new(),
            ignored: BTreeSet::new(),
        };
        for pod in pods {
            if pod.deleting || pod.phase == "Failed" {
                g.ignored.insert(pod.name.clone());
                continue;
            }
            if pod.phase == "Pending" {
                g.unready.insert(pod.name.clone());
                continue;
            }
            let Some(metric) = metrics.get(&pod.name) else {
                g.missing.insert(pod.name.clone());
                continue;
            };
            if resource == "cpu" {
                let unready = match (pod.ready, pod.start_time) {
                    (Some((ready, changed)), Some(started)) => {
                        if add(started, self.cpu_initialization_period) > self.now {
                            // Still initialising: the sample must be wholly
                            // from after the pod became ready.
                            !ready || metric.timestamp < add(changed, metric.window)
                        } else {
                            // Unready and never ready since start.
                            !ready && add(started, self.initial_readiness_delay) > changed
                        }
                    }
                    _ => true,
                };
                if unready {
                    g.unready.insert(pod.name.clone());
                    continue;
                }
            }
            g.ready_count += 1;
        }
        g
    }

    /// `GetResourceReplicas`: a Utilization target (percent of requests).
    pub fn resource_replicas(
        &self,
        current: i32,
        target_utilization: i32,
        resource: &str,
        pods: &[PodInfo],
        mut metrics: Metrics,
    ) -> Result<UtilizationResult, String> {
        if pods.is_empty() {
            return Err("no pods returned by selector while calculating replica count".into());
        }
        let g = self.group_pods(pods, &metrics, resource);
        for name in g.ignored.iter().chain(g.unready.iter()) {
            metrics.remove(name);
        }
        if metrics.is_empty() {
            return Err("did not receive metrics for targeted pods (pods might be unready)".into());
        }
        let requests = pod_requests(pods, resource)?;
        let (ratio, utilization, raw) = utilization_ratio(&metrics, &requests, target_utilization)?;
        let result = |replicas| UtilizationResult {
            replicas,
            utilization,
            raw_average: raw,
        };
        let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
        if !scale_up_with_unready && g.missing.is_empty() {
            if (1.0 - ratio).abs() <= self.tolerance {
                return Ok(result(current));
            }
            return Ok(result(ceil(ratio * g.ready_count as f64)));
        }
        if !g.missing.is_empty() {
            for name in &g.missing {
                let value = if ratio < 1.0 {
                    requests.get(name).copied().unwrap_or(0)
                } else {
                    0
                };
                metrics.insert(name.clone(), filler(value, self.now));
            }
        }
        if scale_up_with_unready {
            for name in &g.unready {
                metrics.insert(name.clone(), filler(0, self.now));
            }
        }
        let (new_ratio, _, _) = utilization_ratio(&metrics, &requests, target_utilization)?;
        Ok(result(self.rebalanced(
            current,
            ratio,
            new_ratio,
            metrics.len(),
        )))
    }

    /// `GetRawResourceReplicas`: an AverageValue target (milli-units per pod).
    /// Returns the replicas and the current average (milli-units).
    pub fn raw_resource_replicas(
        &self,
        current: i32,
        target_average: i64,
        resource: &str,
        pods: &[PodInfo],
        mut metrics: Metrics,
    ) -> Result<(i32, i64), String> {
        if pods.is_empty() {
            return Err("no pods returned by selector while calculating replica count".into());
        }
        let g = self.group_pods(pods, &metrics, resource);
        for name in g.ignored.iter().chain(g.unready.iter()) {
            metrics.remove(name);
        }
        if metrics.is_empty() {
            return Err("did not receive metrics for targeted pods (pods might be unready)".into());
        }
        let (ratio, usage) = usage_ratio(&metrics, target_average);
        let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
        if !scale_up_with_unready && g.missing.is_empty() {
            if (1.0 - ratio).abs() <= self.tolerance {
                return Ok((current, usage));
            }
            return Ok((ceil(ratio * g.ready_count as f64), usage));
        }
        for name in &g.missing {
            let value = if ratio < 1.0 { target_average } else { 0 };
            metrics.insert(name.clone(), filler(value, self.now));
        }
        if scale_up_with_unready {
            for name in &g.unready {
                metrics.insert(name.clone(), filler(0, self.now));
            }
        }
        let (new_ratio, _) = usage_ratio(&metrics, target_average);
        Ok((
            self.rebalanced(current, ratio, new_ratio, metrics.len()),
            usage,
        ))
    }

    /// The answer once missing and unready pods are filled in: keep the
    /// current count if the fill-in flipped the direction or lands within
    /// the tolerance, or if the new count would move against the ratio.
    fn rebalanced(&self, current: i32, ratio: f64, new_ratio: f64, count: usize) -> i32 {
        if (1.0 - new_ratio).abs() <= self.tolerance
            || (ratio < 1.0 && new_ratio > 1.0)
            || (ratio > 1.0 && new_ratio < 1.0)
        {
            return current;
        }
        let new = ceil(new_ratio * count as f64);
        if (new_ratio < 1.0 && new > current) || (new_ratio > 1.0 && new < current) {
            return current;
        }
        new
    }
}

fn filler(value: i64, now: Timestamp) -> PodMetric {
    PodMetric {
        value,
        timestamp: now,
        window: Duration::ZERO,
    }
}

fn ceil(x: f64) -> i32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        c as i32
    }
}

/// `calculatePodRequests`: each pod's summed container requests; a
/// container without one makes utilization undefined.
fn pod_requests(pods: &[PodInfo], resource: &str) -> Result<HashMap<String, i64>, String> {
    let mut out = HashMap::new();
    for pod in pods {
        let mut sum = 0i64;
        for (container, req) in &pod.requests {
            match req {
                Some(r) => sum = sum.saturating_add(*r),
                None => {
                    return Err(format!(
                        "missing request for {resource} in container {container} of Pod {}",
                        pod.name
                    ));
                }
            }
        }
        out.insert(pod.name.clone(), sum);
    }
    Ok(out)
}

/// `GetResourceUtilizationRatio`: (ratio to target, utilization %, average milli-units).
fn utilization_ratio(
    metrics: &Metrics,
    requests: &HashMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (name, m) in metrics {
        if let Some(r) = requests.get(name) {
            used = used.saturating_add(m.value);
            requested = requested.saturating_add(*r);
            n += 1;
        }
    }
    if n == 0 || requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = i32::try_from(used.saturating_mul(100) / requested).unwrap_or(i32::MAX);
    let ratio = f64::from(utilization) / f64::from(target.max(1));
    Ok((ratio, utilization, used / n))
}

/// `GetMetricUsageRatio`: (ratio to target, average milli-units).
fn usage_ratio(metrics: &Metrics, target: i64) -> (f64, i64) {
    let total: i64 = metrics.values().map(|m| m.value).sum();
    let avg = total / (metrics.len().max(1) as i64);
    (avg as f64 / target.max(1) as f64, avg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    /// A pod started long ago, ready since long ago, requesting `req` milli.
    fn pod(name: &str, req: i64) -> PodInfo {
        PodInfo {
            name: name.into(),
            phase: "Running".into(),
            deleting: false,
            ready: Some((true, t(-3000))),
            start_time: Some(t(-3600)),
            requests: vec![("c".into(), Some(req))],
        }
    }

    fn metric(v: i64) -> PodMetric {
        PodMetric {
            value: v,
            timestamp: t(0),
            window: Duration::from_secs(15),
        }
    }

    fn metrics(pairs: &[(&str, i64)]) -> Metrics {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), metric(*v)))
            .collect()
    }

    fn calc() -> Calculator {
        Calculator::new(t(0))
    }

    #[test]
    fn scales_by_ratio_outside_tolerance() {
        let pods = vec![pod("a", 100), pod("b", 100)];
        // 150 % against 50 %: ratio 3 over two pods.
        let r = calc()
            .resource_replicas(2, 50, "cpu", &pods, metrics(&[("a", 150), ("b", 150)]))
            .unwrap();
        assert_eq!(
            r,
            UtilizationResult {
                replicas: 6,
                utilization: 150,
                raw_average: 150
            }
        );
        // 54 % against 50 %: within 10 %, unchanged.
        let r = calc()
            .resource_replicas(2, 50, "cpu", &pods, metrics(&[("a", 54), ("b", 54)]))
            .unwrap();
        assert_eq!(r.replicas, 2);
        assert_eq!(r.utilization, 54);
        // 20 % against 50 %: ceil(0.4 * 2) = 1.
        let r = calc()
            .resource_replicas(2, 50, "cpu", &pods, metrics(&[("a", 20), ("b", 20)]))
            .unwrap();
        assert_eq!(r.replicas, 1);
    }

    #[test]
    fn missing_requests_and_metrics_are_errors() {
        let mut p = pod("a", 100);
        p.requests = vec![("web".into(), None)];
        let err = calc()
            .resource_replicas(1, 50, "cpu", &[p], metrics(&[("a", 10)]))
            .unwrap_err();
        assert_eq!(err, "missing request for cpu in container web of Pod a");
        let err = calc()
            .resource_replicas(1, 50, "cpu", &[], metrics(&[]))
            .unwrap_err();
        assert_eq!(
            err,
            "no pods returned by selector while calculating replica count"
        );
        let err = calc()
            .resource_replicas(1, 50, "cpu", &[pod("a", 100)], metrics(&[]))
            .map(|r| r.replicas);
        // The only pod has no sample: missing, nothing left to average.
        assert_eq!(
            err,
            Err("did not receive metrics for targeted pods (pods might be unready)".into())
        );
    }

    #[test]
    fn unready_pods_count_as_zero_on_scale_up() {
        let mut fresh = pod("c", 100);
        fresh.phase = "Pending".into();
        let pods = vec![pod("a", 100), pod("b", 100), fresh];
        // Ready pods at 100 % against 50 % would ask for 4; with the pending
        // pod at 0 % the ratio is (200/300)/0.5 = 1.33 -> ceil(1.33*3) = 4.
        let r = calc()
            .resource_replicas(3, 50, "cpu", &pods, metrics(&[("a", 100), ("b", 100)]))
            .unwrap();
        assert_eq!(r.replicas, 4);
        // At 60 % (ratio 1.2) the pending pod at 0 % makes it 0.8: the
        // direction flips, so nothing changes.
        let r = calc()
            .resource_replicas(3, 50, "cpu", &pods, metrics(&[("a", 60), ("b", 60)]))
            .unwrap();
        assert_eq!(r.replicas, 3);
        assert_eq!(r.utilization, 60);
    }

    #[test]
    fn cpu_samples_before_readiness_are_unready() {
        // Started 60 s ago, ready 10 s ago; the 15 s window began before it
        // was ready: unready while initialising.
        let mut p = pod("a", 100);
        p.start_time = Some(t(-60));
        p.ready = Some((true, t(-10)));
        let res = calc().resource_replicas(1, 50, "cpu", &[p.clone()], metrics(&[("a", 300)]));
        assert_eq!(
            res,
            Err("did not receive metrics for targeted pods (pods might be unready)".into())
        );
        // Memory has no such rule.
        let r = calc()
            .resource_replicas(1, 50, "memory", &[p.clone()], metrics(&[("a", 300)]))
            .unwrap();
        assert_eq!(r.replicas, 6);
        // Ready 20 s ago: the sample is wholly after readiness.
        p.ready = Some((true, t(-20)));
        let r = calc()
            .resource_replicas(1, 50, "cpu", &[p], metrics(&[("a", 300)]))
            .unwrap();
        assert_eq!(r.replicas, 6);
        // Past the initialisation period, a pod that turned unready after
        // having been ready still counts.
        let mut q = pod("b", 100);
        q.ready = Some((false, t(-100)));
        let r = calc()
            .resource_replicas(1, 50, "cpu", &[q], metrics(&[("b", 100)]))
            .unwrap();
        assert_eq!(r.replicas, 2);
    }

    #[test]
    fn missing_pods_dampen_both_directions() {
        let pods = vec![pod("a", 100), pod("b", 100), pod("c", 100)];
        // Scale down: the missing pod counts at 100 % of its request.
        // (10+10+100)/300 = 40 % against 50 % -> ratio 0.8 -> ceil(2.4) = 3.
        let r = calc()
            .resource_replicas(3, 50, "cpu", &pods, metrics(&[("a", 10), ("b", 10)]))
            .unwrap();
        assert_eq!(r.replicas, 3);
        assert_eq!(r.utilization, 10);
        // Without the fill-in it would have been ceil(0.2 * 2) = 1.
        let r = calc()
            .resource_replicas(2, 50, "cpu", &pods[..2], metrics(&[("a", 10), ("b", 10)]))
            .unwrap();
        assert_eq!(r.replicas, 1);
        // Scale up: the missing pod counts at 0 %.
        // (200+200+0)/300 = 133 % against 50 % -> ratio 2.66 -> ceil(8) = 8.
        let r = calc()
            .resource_replicas(3, 50, "cpu", &pods, metrics(&[("a", 200), ("b", 200)]))
            .unwrap();
        assert_eq!(r.replicas, 8);
    }

    #[test]
    fn deleted_and_failed_pods_are_ignored() {
        let mut gone = pod("b", 100);
        gone.deleting = true;
        let mut failed = pod("c", 100);
        failed.phase = "Failed".into();
        let r = calc()
            .resource_replicas(
                3,
                50,
                "cpu",
                &[pod("a", 100), gone, failed],
                metrics(&[("a", 100), ("b", 0), ("c", 0)]),
            )
            .unwrap();
        assert_eq!(r.replicas, 2);
        assert_eq!(r.utilization, 100);
    }

    #[test]
    fn average_value_targets() {
        let pods = vec![pod("a", 100), pod("b", 100)];
        // 300m average against 100m -> 6.
        let (n, avg) = calc()
            .raw_resource_replicas(2, 100, "cpu", &pods, metrics(&[("a", 200), ("b", 400)]))
            .unwrap();
        assert_eq!((n, avg), (6, 300));
        // Within tolerance.
        let (n, _) = calc()
            .raw_resource_replicas(2, 100, "memory", &pods, metrics(&[("a", 95), ("b", 105)]))
            .unwrap();
        assert_eq!(n, 2);
        // Requests are not needed for AverageValue.
        let mut p = pod("a", 0);
        p.requests = vec![("c".into(), None)];
        let (n, _) = calc()
            .raw_resource_replicas(1, 100, "memory", &[p], metrics(&[("a", 300)]))
            .unwrap();
        assert_eq!(n, 3);
    }
}
