//! Resource usage that node agents publish for the metrics API
//! (metrics.k8s.io, served in process by `api::resourcemetrics`, read by
//! `kubectl top` and the HorizontalPodAutoscaler controller).
//!
//! Upstream, metrics-server scrapes every kubelet's resource metrics and
//! serves the last two samples' rate. Here every node agent is a
//! `UsageSource` registered in the `MetricsRegistry` of the API state: the
//! simulated nodes report what their pods' annotations or requests say; the
//! real agent samples cgroup statistics (`ContainerRuntime::container_stats`)
//! in the background, turns cumulative CPU time into a rate with `CpuRate`,
//! and hands its latest sample to a `Published` source.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::{Mutex, RwLock};

/// Resource use over a window: CPU as a rate, memory as the working set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.cpu_nanocores = self.cpu_nanocores.saturating_add(other.cpu_nanocores);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
    }
}

/// One container's usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSample {
    pub name: String,
    pub usage: Usage,
}

/// One pod's usage, per container (PodMetrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSample {
    pub namespace: String,
    pub name: String,
    /// When the sample was taken and over how long the CPU rate was measured.
    pub timestamp: Timestamp,
    pub window: Duration,
    pub containers: Vec<ContainerSample>,
}

impl PodSample {
    /// The sum over the pod's containers.
    pub fn total(&self) -> Usage {
        let mut u = Usage::default();
        for c in &self.containers {
            u.add(c.usage);
        }
        u
    }
}

/// One node's usage and its pods' (NodeMetrics and its PodMetrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSample {
    pub node: String,
    pub timestamp: Timestamp,
    pub window: Duration,
    pub usage: Usage,
    pub pods: Vec<PodSample>,
}

/// Something that knows the current usage of one or more nodes.
///
/// `samples` is called on every metrics API request (kubectl top, each HPA
/// sync), so it must be cheap and must not block: a source that has to read
/// files or talk to a runtime samples in the background and returns its
/// latest result (see `Published`).
pub trait UsageSource: Send + Sync + 'static {
    fn samples(&self) -> Vec<NodeSample>;
}

/// The usage sources of the cluster, by an id of the caller's choosing (the
/// node name for a real agent, "simulated" for the simulated fleet).
#[derive(Default)]
pub struct MetricsRegistry {
    sources: RwLock<Vec<(String, Arc<dyn UsageSource>)>>,
}

impl MetricsRegistry {
    /// Add a source, replacing one registered under the same id.
    pub fn register(&self, id: &str, source: Arc<dyn UsageSource>) {
        let mut sources = self.sources.write();
        sources.retain(|(i, _)| i != id);
        sources.push((id.to_string(), source));
    }

    pub fn unregister(&self, id: &str) {
        self.sources.write().retain(|(i, _)| i != id);
    }

    /// Every node's latest sample, sorted by node name. If two sources speak
    /// for the same node, the one registered last wins.
    pub fn nodes(&self) -> Vec<NodeSample> {
        let sources: Vec<Arc<dyn UsageSource>> =
            self.sources.read().iter().map(|(_, s)| s.clone()).collect();
        let mut by_node: HashMap<String, NodeSample> = HashMap::new();
        for s in sources {
            for n in s.samples() {
                by_node.insert(n.node.clone(), n);
            }
        }
        let mut out: Vec<NodeSample> = by_node.into_values().collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    /// One node's latest sample.
    pub fn node(&self, name: &str) -> Option<NodeSample> {
        self.nodes().into_iter().find(|n| n.node == name)
    }

    /// Every pod's latest sample, keyed by (namespace, name).
    pub fn pods(&self) -> HashMap<(String, String), PodSample> {
        self.nodes()
            .into_iter()
            .flat_map(|n| n.pods)
            .map(|p| ((p.namespace.clone(), p.name.clone()), p))
            .collect()
    }
}

/// A source that returns whatever was last published: the real node agent
/// samples cgroups on its own schedule and publishes here.
#[derive(Default)]
pub struct Published {
    latest: Mutex<Option<NodeSample>>,
}

impl Published {
    pub fn publish(&self, sample: NodeSample) {
        *self.latest.lock() = Some(sample);
    }
    pub fn clear(&self) {
        *self.latest.lock() = None;
    }
}

impl UsageSource for Published {
    fn samples(&self) -> Vec<NodeSample> {
        self.latest.lock().iter().cloned().collect()
    }
}

/// Turns cumulative CPU time (cgroup cpuacct.usage / cpu.stat usage_usec)
/// into a rate between consecutive samples, per key (container id, or the
/// node's root cgroup).
#[derive(Default)]
pub struct CpuRate {
    last: HashMap<String, (u64, u128)>,
}

impl CpuRate {
    /// Record a cumulative sample (`cpu_nanos` at `at_unix_nanos`); returns
    /// the rate in nanocores and the window since the previous sample of the
    /// same key, or None for a key's first sample (or a counter reset).
    pub fn observe(
        &mut self,
        key: &str,
        cpu_nanos: u64,
        at_unix_nanos: u128,
    ) -> Option<(u64, Duration)> {
        let prev = self
            .last
            .insert(key.to_string(), (cpu_nanos, at_unix_nanos));
        let (pcpu, pat) = prev?;
        if at_unix_nanos <= pat || cpu_nanos < pcpu {
            return None;
        }
        let dt = at_unix_nanos - pat;
        let rate = u128::from(cpu_nanos - pcpu) * 1_000_000_000 / dt;
        let window = Duration::from_nanos(u64::try_from(dt).unwrap_or(u64::MAX));
        Some((u64::try_from(rate).unwrap_or(u64::MAX), window))
    }

    /// Forget keys not in `live` (removed containers).
    pub fn retain(&mut self, live: &dyn Fn(&str) -> bool) {
        self.last.retain(|k, _| live(k));
    }
}

/// The kubelet's `/stats/summary` (stats/v1alpha1 Summary) for one node's
/// sample, the CPU and memory parts metrics-server reads: what a node
/// agent answers on `nodes/NAME/proxy/stats/summary`.
pub fn summary(sample: &NodeSample) -> serde_json::Value {
    use serde_json::json;
    let at = |t: Timestamp| t.round(jiff::Unit::Second).unwrap_or(t).to_string();
    let cpu = |u: Usage, t: Timestamp| json!({"time": at(t), "usageNanoCores": u.cpu_nanocores});
    let mem = |u: Usage, t: Timestamp| json!({"time": at(t), "workingSetBytes": u.memory_bytes, "usageBytes": u.memory_bytes});
    let pods: Vec<serde_json::Value> = sample
        .pods
        .iter()
        .map(|p| {
            let containers: Vec<serde_json::Value> = p
                .containers
                .iter()
                .map(|c| json!({"name": c.name, "cpu": cpu(c.usage, p.timestamp), "memory": mem(c.usage, p.timestamp)}))
                .collect();
            json!({
                "podRef": {"name": p.name, "namespace": p.namespace},
                "containers": containers,
                "cpu": cpu(p.total(), p.timestamp),
                "memory": mem(p.total(), p.timestamp),
            })
        })
        .collect();
    json!({
        "node": {
            "nodeName": sample.node,
            "cpu": cpu(sample.usage, sample.timestamp),
            "memory": mem(sample.usage, sample.timestamp),
        },
        "pods": pods,
    })
}

/// CPU nanocores as a canonical decimal quantity ("250m", "1", "12345n").
pub fn cpu_quantity(nanocores: u64) -> String {
    if nanocores == 0 {
        return "0".into();
    }
    for (div, suffix) in [(1_000_000_000, ""), (1_000_000, "m"), (1_000, "u")] {
        if nanocores.is_multiple_of(div) {
            return format!("{}{suffix}", nanocores / div);
        }
    }
    format!("{nanocores}n")
}

/// Bytes as a canonical binary quantity ("64Mi", "1234Ki", "1000").
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    for (shift, suffix) in [
        (60, "Ei"),
        (50, "Pi"),
        (40, "Ti"),
        (30, "Gi"),
        (20, "Mi"),
        (10, "Ki"),
    ] {
        if bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A window as a Go duration string, as metrics-server writes it ("15s", "10.5s").
pub fn window_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<NodeSample>);
    impl UsageSource for Fixed {
        fn samples(&self) -> Vec<NodeSample> {
            self.0.clone()
        }
    }

    fn sample(node: &str, cpu: u64) -> NodeSample {
        NodeSample {
            node: node.into(),
            timestamp: Timestamp::UNIX_EPOCH,
            window: Duration::from_secs(15),
            usage: Usage {
                cpu_nanocores: cpu,
                memory_bytes: 1 << 20,
            },
            pods: vec![PodSample {
                namespace: "default".into(),
                name: format!("{node}-pod"),
                timestamp: Timestamp::UNIX_EPOCH,
                window: Duration::from_secs(15),
                containers: vec![
                    ContainerSample {
                        name: "a".into(),
                        usage: Usage {
                            cpu_nanocores: 5,
                            memory_bytes: 7,
                        },
                    },
                    ContainerSample {
                        name: "b".into(),
                        usage: Usage {
                            cpu_nanocores: 1,
                            memory_bytes: 1,
                        },
                    },
                ],
            }],
        }
    }

    #[test]
    fn registry_merges_sources_and_replaces_by_id() {
        let r = MetricsRegistry::default();
        r.register("sim", Arc::new(Fixed(vec![sample("b", 1), sample("a", 2)])));
        r.register("agent", Arc::new(Fixed(vec![sample("b", 9)])));
        let nodes: Vec<(String, u64)> = r
            .nodes()
            .into_iter()
            .map(|n| (n.node, n.usage.cpu_nanocores))
            .collect();
        assert_eq!(nodes, [("a".to_string(), 2), ("b".to_string(), 9)]);
        r.register("agent", Arc::new(Fixed(vec![])));
        assert_eq!(r.node("b").map(|n| n.usage.cpu_nanocores), Some(1));
        let pods = r.pods();
        let p = &pods[&("default".to_string(), "a-pod".to_string())];
        assert_eq!(
            p.total(),
            Usage {
                cpu_nanocores: 6,
                memory_bytes: 8
            }
        );
        r.unregister("sim");
        r.unregister("agent");
        assert!(r.nodes().is_empty());
        let published = Arc::new(Published::default());
        r.register("n", published.clone());
        assert!(r.nodes().is_empty());
        published.publish(sample("n", 3));
        assert_eq!(r.node("n").map(|n| n.usage.cpu_nanocores), Some(3));
    }

    #[test]
    fn summary_has_node_and_pod_figures() {
        let s = summary(&sample("n1", 7));
        assert_eq!(s["node"]["nodeName"], "n1");
        assert_eq!(s["node"]["cpu"]["usageNanoCores"], 7);
        assert_eq!(s["node"]["memory"]["workingSetBytes"], 1 << 20);
        assert_eq!(s["pods"][0]["podRef"]["name"], "n1-pod");
        assert_eq!(s["pods"][0]["cpu"]["usageNanoCores"], 6);
        assert_eq!(s["pods"][0]["containers"][1]["name"], "b");
        assert_eq!(
            s["pods"][0]["containers"][1]["memory"]["workingSetBytes"],
            1
        );
        assert_eq!(s["node"]["cpu"]["time"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn cpu_rate_from_cumulative_time() {
        let mut r = CpuRate::default();
        assert_eq!(r.observe("c", 1_000_000_000, 10_000_000_000), None);
        // 0.5 s of CPU over 2 s: a quarter core.
        assert_eq!(
            r.observe("c", 1_500_000_000, 12_000_000_000),
            Some((250_000_000, Duration::from_secs(2)))
        );
        // A restarted container's counter goes back: no rate this time.
        assert_eq!(r.observe("c", 10, 13_000_000_000), None);
        r.retain(&|k| k != "c");
        assert_eq!(r.observe("c", 20, 14_000_000_000), None);
    }

    #[test]
    fn quantities_are_canonical() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(1_500), "1500n");
        assert_eq!(cpu_quantity(12_000), "12u");
        assert_eq!(memory_quantity(64 << 20), "64Mi");
        assert_eq!(memory_quantity(1_234 * 1024), "1234Ki");
        assert_eq!(memory_quantity(1_000), "1000");
        assert_eq!(memory_quantity(1 << 30), "1Gi");
        assert_eq!(window_text(Duration::from_secs(15)), "15s");
        assert_eq!(window_text(Duration::from_millis(10_500)), "10.5s");
    }
}
