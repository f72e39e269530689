//! QoS classes and what they mean for cgroups, as the kubelet's
//! container manager: the `kubepods/{burstable,besteffort}/pod<uid>`
//! hierarchy, cpu shares and quota, memory limits and the OOM score
//! adjustment per class.

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;

use crate::registry::strategy::kinds::quantity;
use crate::runtime::cri::LinuxResources;

/// The kubelet's CFS period (100 ms), in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// cpu.shares floor (the kernel's minimum) and what BestEffort pods get.
pub const MIN_SHARES: u64 = 2;
/// The smallest quota the kubelet writes (1 ms).
pub const MIN_QUOTA_US: i64 = 1_000;
/// The kubelet's OOM score adjustments for the two fixed classes.
pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
pub const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// The pod's class: status.qosClass as the API server set it, else computed.
pub fn qos_class(pod: &Pod) -> QosClass {
    let from_status = pod.status.as_ref().and_then(|s| s.qos_class.as_deref());
    let computed;
    let name = match from_status {
        Some(n) => n,
        None => {
            let spec = pod
                .spec
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or_default();
            computed = crate::registry::strategy::kinds::pod::qos_class(&spec);
            computed
        }
    };
    match name {
        "Guaranteed" => QosClass::Guaranteed,
        "BestEffort" => QosClass::BestEffort,
        _ => QosClass::Burstable,
    }
}

/// The pod's cgroup, relative to the cgroup root.
pub fn cgroup_parent(class: QosClass, pod_uid: &str) -> String {
    match class {
        QosClass::Guaranteed => format!("kubepods/pod{pod_uid}"),
        QosClass::Burstable => format!("kubepods/burstable/pod{pod_uid}"),
        QosClass::BestEffort => format!("kubepods/besteffort/pod{pod_uid}"),
    }
}

/// A quantity in milli-units (cpu) or units (memory), rounded up.
fn milli(q: &KQuantity) -> Option<i128> {
    quantity::parse(&q.0)
        .ok()
        .map(|q| (q.0 + 999_999) / 1_000_000)
}

fn units(q: &KQuantity) -> Option<i128> {
    quantity::parse(&q.0)
        .ok()
        .map(|q| (q.0 + 999_999_999) / 1_000_000_000)
}

fn get<'a>(
    r: Option<&'a ResourceRequirements>,
    which: fn(
        &'a ResourceRequirements,
    ) -> Option<&'a std::collections::BTreeMap<String, KQuantity>>,
    key: &str,
) -> Option<&'a KQuantity> {
    r.and_then(which).and_then(|m| m.get(key))
}

/// milliCPU to cpu.shares: `milli * 1024 / 1000`, at least 2.
pub fn milli_cpu_to_shares(milli: i128) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    ((milli * 1024 / 1000) as u64).max(MIN_SHARES)
}

/// milliCPU to a CFS quota for `CPU_PERIOD_US`, at least 1 ms.
pub fn milli_cpu_to_quota(milli: i128) -> i64 {
    ((milli * CPU_PERIOD_US as i128 / 1000) as i64).max(MIN_QUOTA_US)
}

/// The cgroup limits of one container.
pub fn container_resources(
    class: QosClass,
    container: &Container,
    node_memory_capacity: u64,
) -> LinuxResources {
    let r = container.resources.as_ref();
    let req_cpu = get(r, |r| r.requests.as_ref(), "cpu").and_then(milli);
    let lim_cpu = get(r, |r| r.limits.as_ref(), "cpu").and_then(milli);
    let req_mem = get(r, |r| r.requests.as_ref(), "memory").and_then(units);
    let lim_mem = get(r, |r| r.limits.as_ref(), "memory").and_then(units);
    // A limit without a request requests the limit (API defaulting does
    // the same; be safe for pods that skipped it).
    let shares_from = req_cpu.or(lim_cpu);
    let mut out = LinuxResources {
        cpu_shares: Some(match class {
            QosClass::BestEffort => MIN_SHARES,
            _ => milli_cpu_to_shares(shares_from.unwrap_or(0)),
        }),
        ..Default::default()
    };
    if let Some(l) = lim_cpu.filter(|l| *l > 0) {
        out.cpu_quota = Some(milli_cpu_to_quota(l));
        out.cpu_period = Some(CPU_PERIOD_US);
    }
    if let Some(m) = lim_mem.filter(|m| *m > 0) {
        out.memory_limit = Some(m.min(i64::MAX as i128) as i64);
    }
    out.oom_score_adj = Some(oom_score_adj(
        class,
        req_mem.or(lim_mem).unwrap_or(0),
        node_memory_capacity,
    ));
    out
}

/// The kubelet's OOM score policy: Guaranteed -997, BestEffort 1000,
/// Burstable `1000 - 1000 * request / capacity` kept within [2, 999].
pub fn oom_score_adj(class: QosClass, memory_request: i128, memory_capacity: u64) -> i32 {
    match class {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            if memory_capacity == 0 {
                return 999;
            }
            let adj = 1000 - (1000 * memory_request / memory_capacity as i128);
            adj.clamp(2, 999) as i32
        }
    }
}

/// The pod cgroup's limits: the sum of the app containers' (plus the
/// largest init container's, as the kubelet's effective request), cpu
/// quota and memory limit only when every container sets one.
pub fn pod_resources(class: QosClass, pod: &Pod) -> LinuxResources {
    let Some(spec) = pod.spec.as_ref() else {
        return LinuxResources::default();
    };
    let sum = |which: fn(
        &ResourceRequirements,
    ) -> Option<&std::collections::BTreeMap<String, KQuantity>>,
               key: &str,
               conv: fn(&KQuantity) -> Option<i128>|
     -> (i128, bool) {
        let mut total = 0i128;
        let mut all = true;
        for c in &spec.containers {
            match get(c.resources.as_ref(), which, key).and_then(conv) {
                Some(v) => total += v,
                None => all = false,
            }
        }
        let init_max = spec
            .init_containers
            .iter()
            .flatten()
            .filter_map(|c| get(c.resources.as_ref(), which, key).and_then(conv))
            .max()
            .unwrap_or(0);
        (total.max(init_max), all)
    };
    let (req_cpu, _) = sum(|r| r.requests.as_ref(), "cpu", milli);
    let (lim_cpu, all_cpu) = sum(|r| r.limits.as_ref(), "cpu", milli);
    let (lim_mem, all_mem) = sum(|r| r.limits.as_ref(), "memory", units);
    let mut out = LinuxResources {
        cpu_shares: Some(match class {
            QosClass::BestEffort => MIN_SHARES,
            _ => milli_cpu_to_shares(req_cpu),
        }),
        ..Default::default()
    };
    if class != QosClass::BestEffort && all_cpu && lim_cpu > 0 {
        out.cpu_quota = Some(milli_cpu_to_quota(lim_cpu));
        out.cpu_period = Some(CPU_PERIOD_US);
    }
    if class != QosClass::BestEffort && all_mem && lim_mem > 0 {
        out.memory_limit = Some(lim_mem.min(i64::MAX as i128) as i64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn classes_and_parents() {
        let be = pod(json!({"spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(qos_class(&be), QosClass::BestEffort);
        assert_eq!(
            cgroup_parent(qos_class(&be), "u1"),
            "kubepods/besteffort/podu1"
        );
        let g = pod(json!({"spec": {"containers": [{"name": "a", "resources": {
            "limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "500m", "memory": "64Mi"}}}]}}));
        assert_eq!(qos_class(&g), QosClass::Guaranteed);
        assert_eq!(cgroup_parent(QosClass::Guaranteed, "u"), "kubepods/podu");
        let b = pod(
            json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]},
                           "status": {"qosClass": "Burstable"}}),
        );
        assert_eq!(qos_class(&b), QosClass::Burstable);
        assert_eq!(
            cgroup_parent(QosClass::Burstable, "u"),
            "kubepods/burstable/podu"
        );
    }

    #[test]
    fn container_limits_follow_the_kubelet() {
        let c: Container = serde_json::from_value(json!({"name": "a", "resources": {
            "limits": {"cpu": "250m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}}))
        .expect("c");
        let r = container_resources(QosClass::Burstable, &c, 1 << 30);
        assert_eq!(r.cpu_shares, Some(102));
        assert_eq!(r.cpu_quota, Some(25_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit, Some(128 << 20));
        // 1000 - 1000 * 64Mi / 1Gi = 938 (integer arithmetic).
        assert_eq!(r.oom_score_adj, Some(938));
        let tiny: Container = serde_json::from_value(
            json!({"name": "a", "resources": {"requests": {"cpu": "1m"}, "limits": {"cpu": "1m"}}}),
        )
        .expect("c");
        let r = container_resources(QosClass::Burstable, &tiny, 1 << 30);
        assert_eq!(r.cpu_shares, Some(2), "shares floor");
        assert_eq!(r.cpu_quota, Some(1_000), "quota floor 1ms");
        let none: Container = serde_json::from_value(json!({"name": "a"})).expect("c");
        let r = container_resources(QosClass::BestEffort, &none, 1 << 30);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit, r.oom_score_adj),
            (Some(2), None, None, Some(1000))
        );
        assert_eq!(oom_score_adj(QosClass::Guaranteed, 1, 1), -997);
        assert_eq!(
            oom_score_adj(QosClass::Burstable, 1 << 30, 1 << 30),
            2,
            "floor"
        );
    }

    #[test]
    fn pod_level_limits_need_every_container() {
        let p = pod(json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "100Mi"}, "requests": {"cpu": "1", "memory": "100Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "500m", "memory": "50Mi"}, "requests": {"cpu": "500m", "memory": "50Mi"}}}]}}));
        let r = pod_resources(QosClass::Guaranteed, &p);
        assert_eq!(r.cpu_shares, Some(1536));
        assert_eq!(r.cpu_quota, Some(150_000));
        assert_eq!(r.memory_limit, Some(150 << 20));
        let p = pod(json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "100Mi"}}},
            {"name": "b"}]}}));
        let r = pod_resources(QosClass::Burstable, &p);
        assert_eq!(r.memory_limit, None, "one container is unbounded");
    }
}
