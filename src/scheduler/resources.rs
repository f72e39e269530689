//! Resource arithmetic for scheduling: pod requests as upstream computes them
//! (containers summed, init containers' maximum, restartable init containers
//! (sidecars) added, overhead on top) and node allocatable, in integer units
//! (milli-cpu, bytes, counts).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::registry::strategy::kinds::quantity;

/// Requests the scheduler assumes for scoring when a container asks for none
/// (upstream's DefaultMilliCPURequest and DefaultMemoryRequest).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A set of resource amounts in scheduler units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Pod slots (allocatable "pods"); for requests, the pod count (1).
    pub pods: i64,
    /// Extended and hugepages resources, in their base units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Add `other` to self.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.pods = self.pods.saturating_add(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Subtract `other` from self (never below zero).
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = (self.milli_cpu - other.milli_cpu).max(0);
        self.memory = (self.memory - other.memory).max(0);
        self.ephemeral_storage = (self.ephemeral_storage - other.ephemeral_storage).max(0);
        self.pods = (self.pods - other.pods).max(0);
        for (k, v) in &other.scalar {
            if let Some(e) = self.scalar.get_mut(k) {
                *e = (*e - v).max(0);
            }
        }
    }

    /// Per-resource maximum of self and `other`.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    /// Whether every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }

    /// Read a ResourceList (requests, limits, capacity, allocatable).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            r.set(name, &q.0);
        }
        r
    }

    /// Set one resource from a quantity string; malformed quantities count as zero.
    pub fn set(&mut self, name: &str, q: &str) {
        let Ok(nano) = quantity::parse(q) else {
            return;
        };
        let nano = nano.0.max(0);
        match name {
            "cpu" => self.milli_cpu = ceil_div(nano, 1_000_000),
            "memory" => self.memory = ceil_div(nano, 1_000_000_000),
            "ephemeral-storage" => self.ephemeral_storage = ceil_div(nano, 1_000_000_000),
            "pods" => self.pods = ceil_div(nano, 1_000_000_000),
            other if is_scalar_resource(other) => {
                self.scalar
                    .insert(other.to_string(), ceil_div(nano, 1_000_000_000));
            }
            _ => {}
        }
    }
}

/// Resources the scheduler counts besides cpu, memory, storage and pods:
/// hugepages and extended resources (a domain-qualified name outside
/// kubernetes.io, e.g. nvidia.com/gpu).
fn is_scalar_resource(name: &str) -> bool {
    if name.starts_with("hugepages-") {
        return true;
    }
    match name.split_once('/') {
        Some((domain, _)) => {
            !(domain == "kubernetes.io"
                || domain.ends_with(".kubernetes.io")
                || domain.starts_with("requests."))
        }
        None => false,
    }
}

fn ceil_div(n: i128, d: i128) -> i64 {
    let q = (n + d - 1) / d;
    q.min(i64::MAX as i128) as i64
}

/// A container's requests; a resource with a limit but no request requests
/// its limit (the API server defaults it so; repeated here for safety).
fn container_requests(c: &Container) -> Resources {
    let res = c.resources.as_ref();
    let mut r = Resources::from_list(res.and_then(|r| r.requests.as_ref()));
    if let Some(limits) = res.and_then(|r| r.limits.as_ref()) {
        let requested = res.and_then(|r| r.requests.as_ref());
        for (name, q) in limits {
            if requested.is_none_or(|req| !req.contains_key(name)) {
                r.set(name, &q.0);
            }
        }
    }
    r
}

/// The pod's effective requests (upstream's `resource.PodRequests`), pods = 1.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&container_requests(c));
    }
    // Init containers run one at a time before the app containers; sidecars
    // (restartPolicy Always) keep running, so their requests add up.
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let req = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&req);
            init_max.max_with(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&req);
            init_max.max_with(&during);
        }
    }
    sum.add(&sidecars);
    sum.max_with(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        sum.add(&Resources::from_list(Some(overhead)));
    }
    sum.pods = 1;
    sum
}

/// (milli-cpu, memory) with upstream's defaults for containers that request
/// none, used by the scoring plugins so best-effort pods still spread.
pub fn non_zero_requests(spec: &PodSpec) -> (i64, i64) {
    let nz = |c: &Container| {
        let r = container_requests(c);
        let cpu = if r.milli_cpu == 0 {
            DEFAULT_MILLI_CPU_REQUEST
        } else {
            r.milli_cpu
        };
        let mem = if r.memory == 0 {
            DEFAULT_MEMORY_REQUEST
        } else {
            r.memory
        };
        (cpu, mem)
    };
    let (mut cpu, mut mem) = spec
        .containers
        .iter()
        .map(nz)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let mut side = (0i64, 0i64);
    let mut init = (0i64, 0i64);
    for c in spec.init_containers.iter().flatten() {
        let r = nz(c);
        if c.restart_policy.as_deref() == Some("Always") {
            side = (side.0 + r.0, side.1 + r.1);
            init = (init.0.max(side.0), init.1.max(side.1));
        } else {
            init = (init.0.max(side.0 + r.0), init.1.max(side.1 + r.1));
        }
    }
    cpu = (cpu + side.0).max(init.0);
    mem = (mem + side.1).max(init.1);
    if let Some(o) = spec.overhead.as_ref() {
        let o = Resources::from_list(Some(o));
        cpu += o.milli_cpu;
        mem += o.memory;
    }
    (cpu, mem)
}

/// Requests of a whole pod object (an empty spec requests one pod slot).
pub fn requests_of(pod: &Pod) -> Resources {
    match pod.spec.as_ref() {
        Some(spec) => pod_requests(spec),
        None => Resources {
            pods: 1,
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn quantities_become_scheduler_units() {
        let mut r = Resources::default();
        r.set("cpu", "1.5");
        r.set("memory", "1Gi");
        r.set("ephemeral-storage", "1G");
        r.set("pods", "110");
        r.set("nvidia.com/gpu", "2");
        r.set("hugepages-2Mi", "4Mi");
        r.set("requests.cpu", "9");
        assert_eq!(r.milli_cpu, 1500);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(r.ephemeral_storage, 1_000_000_000);
        assert_eq!(r.pods, 110);
        assert_eq!(r.scalar.get("nvidia.com/gpu"), Some(&2));
        assert_eq!(r.scalar.get("hugepages-2Mi"), Some(&(4 << 20)));
        assert_eq!(r.scalar.len(), 2);
        r.set("cpu", "1m");
        assert_eq!(r.milli_cpu, 1);
        r.set("cpu", "100u");
        assert_eq!(r.milli_cpu, 1, "fractions of a milli-cpu round up");
    }

    #[test]
    fn pod_requests_follow_upstream_rules() {
        // Two app containers sum; init containers take the maximum; overhead adds.
        let s = spec(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "200m"}}},
            ],
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
                {"name": "i2", "resources": {"requests": {"memory": "128Mi"}}},
            ],
            "overhead": {"cpu": "10m"},
        }));
        let r = pod_requests(&s);
        assert_eq!(
            r.milli_cpu,
            1000 + 10,
            "init max (1 cpu) beats the app sum (300m)"
        );
        assert_eq!(r.memory, 128 << 20);
        assert_eq!(r.pods, 1);

        // A sidecar's requests last for the pod's whole life.
        let s = spec(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "init", "resources": {"requests": {"cpu": "600m"}}},
            ],
        }));
        assert_eq!(pod_requests(&s).milli_cpu, 800, "max(500+200, 200+600)");
    }

    #[test]
    fn non_zero_defaults_for_best_effort() {
        let s = spec(
            json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        assert_eq!(non_zero_requests(&s), (1100, 2 * DEFAULT_MEMORY_REQUEST));
        assert!(pod_requests(&spec(json!({"containers": [{"name": "a"}]}))).is_zero());
    }
}
