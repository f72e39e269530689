//! The node's resource usage, as the kubelet's stats provider: each pod
//! container's cgroup statistics (through the runtime) and the node's (the
//! root cgroup, /proc/meminfo, the agent directory's filesystem), sampled
//! on the housekeeping period. Each sample is published for the metrics
//! API (`node::metrics::Published`, read by `kubectl top` and the HPA) and
//! kept for `nodes/NAME/proxy/stats/summary` and for eviction ranking.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::podworker::{LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};
use super::registration::{fs_usage, meminfo};
use crate::node::metrics::{ContainerSample, CpuRate, NodeSample, PodSample, Published, Usage};
use crate::runtime::cri::{ContainerRuntime, ContainerState};

/// The CPU-rate key of the node itself (container ids never look like it).
const NODE_KEY: &str = "/node";

/// One container's figures in a sample.
#[derive(Clone, Debug, Default)]
pub struct ContainerStats {
    pub name: String,
    pub started: Option<SystemTime>,
    pub cpu_usage_core_nanos: u64,
    /// None on a container's first sample.
    pub cpu_nanocores: Option<u64>,
    pub memory_working_set: u64,
    pub memory_usage: u64,
}

#[derive(Clone, Debug, Default)]
pub struct PodStats {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub started: Option<SystemTime>,
    pub containers: Vec<ContainerStats>,
}

/// Capacity and free space of a filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsStats {
    pub capacity: u64,
    pub available: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    pub cpu_usage_core_nanos: u64,
    pub cpu_nanocores: Option<u64>,
    pub memory_working_set: u64,
    pub memory_usage: u64,
    pub memory_available: u64,
    pub fs: FsStats,
    pub image_fs: FsStats,
}

/// One complete sample.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub node_name: String,
    pub time: Timestamp,
    pub window: Duration,
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

impl Snapshot {
    /// A pod's memory working set (bytes), 0 when unknown.
    pub fn pod_memory(&self, uid: &str) -> u64 {
        self.pods
            .iter()
            .filter(|p| p.uid == uid)
            .flat_map(|p| p.containers.iter())
            .map(|c| c.memory_working_set)
            .sum()
    }

    /// A pod's containers' memory working sets, by container name.
    pub fn container_memory(&self, uid: &str) -> HashMap<String, u64> {
        self.pods
            .iter()
            .filter(|p| p.uid == uid)
            .flat_map(|p| p.containers.iter())
            .map(|c| (c.name.clone(), c.memory_working_set))
            .collect()
    }

    /// What the metrics API serves: the node and the pods whose every
    /// running container has a CPU rate (a second sample).
    pub fn node_sample(&self) -> Option<NodeSample> {
        let pods = self
            .pods
            .iter()
            .filter(|p| {
                !p.containers.is_empty() && p.containers.iter().all(|c| c.cpu_nanocores.is_some())
            })
            .map(|p| PodSample {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                timestamp: self.time,
                window: self.window,
                containers: p
                    .containers
                    .iter()
                    .map(|c| ContainerSample {
                        name: c.name.clone(),
                        usage: Usage {
                            cpu_nanocores: c.cpu_nanocores.unwrap_or(0),
                            memory_bytes: c.memory_working_set,
                        },
                    })
                    .collect(),
            })
            .collect();
        Some(NodeSample {
            node: self.node_name.clone(),
            timestamp: self.time,
            window: self.window,
            usage: Usage {
                cpu_nanocores: self.node.cpu_nanocores?,
                memory_bytes: self.node.memory_working_set,
            },
            pods,
        })
    }

    /// The kubelet's `/stats/summary` (stats/v1alpha1 Summary).
    pub fn summary(&self) -> Value {
        let time = |t: Timestamp| t.round(jiff::Unit::Second).unwrap_or(t).to_string();
        let at = time(self.time);
        let started = |t: Option<SystemTime>| {
            t.and_then(|t| Timestamp::try_from(t).ok())
                .map(|t| json!(time(t)))
                .unwrap_or(Value::Null)
        };
        let cpu = |rate: Option<u64>, total: u64| {
            let mut v = json!({"time": at, "usageCoreNanoSeconds": total});
            if let Some(r) = rate {
                v["usageNanoCores"] = json!(r);
            }
            v
        };
        let fs = |f: &FsStats| {
            json!({
                "time": at,
                "availableBytes": f.available,
                "capacityBytes": f.capacity,
                "usedBytes": f.capacity.saturating_sub(f.available),
                "inodesFree": f.inodes_free,
                "inodes": f.inodes,
                "inodesUsed": f.inodes.saturating_sub(f.inodes_free),
            })
        };
        let n = &self.node;
        let pods: Vec<Value> = self
            .pods
            .iter()
            .map(|p| {
                let containers: Vec<Value> = p
                    .containers
                    .iter()
                    .map(|c| {
                        json!({
                            "name": c.name,
                            "startTime": started(c.started),
                            "cpu": cpu(c.cpu_nanocores, c.cpu_usage_core_nanos),
                            "memory": {"time": at, "workingSetBytes": c.memory_working_set,
                                       "usageBytes": c.memory_usage},
                        })
                    })
                    .collect();
                let rate = p
                    .containers
                    .iter()
                    .map(|c| c.cpu_nanocores)
                    .sum::<Option<u64>>();
                let total_cpu: u64 = p.containers.iter().map(|c| c.cpu_usage_core_nanos).sum();
                let ws: u64 = p.containers.iter().map(|c| c.memory_working_set).sum();
                let usage: u64 = p.containers.iter().map(|c| c.memory_usage).sum();
                json!({
                    "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                    "startTime": started(p.started),
                    "containers": containers,
                    "cpu": cpu(rate, total_cpu),
                    "memory": {"time": at, "workingSetBytes": ws, "usageBytes": usage},
                })
            })
            .collect();
        json!({
            "node": {
                "nodeName": self.node_name,
                "cpu": cpu(n.cpu_nanocores, n.cpu_usage_core_nanos),
                "memory": {
                    "time": at,
                    "availableBytes": n.memory_available,
                    "usageBytes": n.memory_usage,
                    "workingSetBytes": n.memory_working_set,
                },
                "fs": fs(&n.fs),
                "runtime": {"imageFs": fs(&n.image_fs)},
            },
            "pods": pods,
        })
    }
}

/// Samples usage and keeps the latest sample; cheap to share.
pub struct StatsCollector {
    node_name: String,
    agent_dir: PathBuf,
    images_dir: PathBuf,
    runtime: Arc<dyn ContainerRuntime>,
    rates: Mutex<CpuRate>,
    published: Arc<Published>,
    latest: Mutex<Option<Snapshot>>,
}

impl StatsCollector {
    pub fn new(
        node_name: String,
        agent_dir: PathBuf,
        runtime: Arc<dyn ContainerRuntime>,
        published: Arc<Published>,
    ) -> Self {
        StatsCollector {
            node_name,
            images_dir: agent_dir.join("images"),
            agent_dir,
            runtime,
            rates: Mutex::new(CpuRate::default()),
            published,
            latest: Mutex::new(None),
        }
    }

    pub fn latest(&self) -> Option<Snapshot> {
        self.latest.lock().clone()
    }

    /// Take a sample now, publish it and keep it.
    pub async fn collect(&self) -> Snapshot {
        let now_nanos = || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        };
        let mut pods = Vec::new();
        let mut live: Vec<String> = vec![NODE_KEY.to_string()];
        let mut window = Duration::ZERO;
        let sandboxes = self.runtime.list_sandboxes().await.unwrap_or_default();
        for sb in sandboxes {
            let label = |k: &str| sb.labels.get(k).cloned().unwrap_or_default();
            let mut pod = PodStats {
                namespace: label(LABEL_POD_NAMESPACE),
                name: label(LABEL_POD_NAME),
                uid: label(LABEL_POD_UID),
                started: Some(sb.created_at),
                containers: Vec::new(),
            };
            let containers = self
                .runtime
                .list_containers(&sb.id)
                .await
                .unwrap_or_default();
            for c in containers
                .into_iter()
                .filter(|c| c.state == ContainerState::Running)
            {
                let Ok(s) = self.runtime.container_stats(&c.id).await else {
                    continue;
                };
                live.push(c.id.clone());
                let rate =
                    self.rates
                        .lock()
                        .observe(&c.id, s.cpu_usage_nanos, s.timestamp_unix_nanos);
                if let Some((_, w)) = rate {
                    window = window.max(w);
                }
                pod.containers.push(ContainerStats {
                    name: c.name.clone(),
                    started: c.started_at,
                    cpu_usage_core_nanos: s.cpu_usage_nanos,
                    cpu_nanocores: rate.map(|r| r.0),
                    memory_working_set: s.memory_working_set_bytes,
                    memory_usage: s.memory_usage_bytes,
                });
            }
            if !pod.containers.is_empty() {
                pods.push(pod);
            }
        }
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let root = crate::runtime::shim::cgroup::stats("/");
        let total = meminfo("MemTotal").unwrap_or(0);
        let available = meminfo("MemAvailable").unwrap_or(0);
        let cpu_total = if root.cpu_usage_nanos > 0 {
            root.cpu_usage_nanos
        } else {
            proc_stat_cpu_nanos().unwrap_or(0)
        };
        let node_rate = self.rates.lock().observe(NODE_KEY, cpu_total, now_nanos());
        if let Some((_, w)) = node_rate {
            window = window.max(w);
        }
        // The root cgroup's working set (v1); v2 has no memory.current at
        // the root, so what /proc/meminfo says is in use.
        let (memory_usage, memory_working_set) = if root.memory_usage_bytes > 0 {
            (root.memory_usage_bytes, root.memory_working_set_bytes)
        } else {
            let used = total.saturating_sub(available);
            (used, used)
        };
        self.rates.lock().retain(&|k| live.iter().any(|l| l == k));
        let snapshot = Snapshot {
            node_name: self.node_name.clone(),
            time: Timestamp::now(),
            window,
            node: NodeStats {
                cpu_usage_core_nanos: cpu_total,
                cpu_nanocores: node_rate.map(|r| r.0),
                memory_working_set,
                memory_usage,
                memory_available: available,
                fs: fs_stats(&self.agent_dir),
                image_fs: fs_stats(&self.images_dir),
            },
            pods,
        };
        if let Some(sample) = snapshot.node_sample() {
            self.published.publish(sample);
        }
        *self.latest.lock() = Some(snapshot.clone());
        snapshot
    }
}

fn fs_stats(path: &std::path::Path) -> FsStats {
    let (capacity, available) = fs_usage(path).unwrap_or((0, 0));
    let (inodes, inodes_free) = nix::sys::statvfs::statvfs(path)
        .map(|s| (s.files(), s.files_available()))
        .unwrap_or((0, 0));
    FsStats {
        capacity,
        available,
        inodes,
        inodes_free,
    }
}

/// Busy CPU time of the whole machine from /proc/stat (all but idle and
/// iowait), in nanoseconds: the fallback when the root cgroup has no
/// cumulative CPU counter.
fn proc_stat_cpu_nanos() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| *v)
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|h| *h > 0)
        .unwrap_or(100) as u64;
    Some(busy.saturating_mul(1_000_000_000 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            node_name: "n1".into(),
            time: Timestamp::UNIX_EPOCH,
            window: Duration::from_secs(10),
            node: NodeStats {
                cpu_usage_core_nanos: 5_000,
                cpu_nanocores: Some(250_000_000),
                memory_working_set: 1 << 30,
                memory_usage: 2 << 30,
                memory_available: 3 << 30,
                fs: FsStats {
                    capacity: 100,
                    available: 40,
                    inodes: 10,
                    inodes_free: 4,
                },
                image_fs: FsStats::default(),
            },
            pods: vec![
                PodStats {
                    namespace: "default".into(),
                    name: "burn".into(),
                    uid: "u1".into(),
                    started: None,
                    containers: vec![
                        ContainerStats {
                            name: "a".into(),
                            cpu_nanocores: Some(900_000_000),
                            memory_working_set: 7,
                            ..Default::default()
                        },
                        ContainerStats {
                            name: "b".into(),
                            cpu_nanocores: Some(100_000_000),
                            memory_working_set: 3,
                            ..Default::default()
                        },
                    ],
                },
                PodStats {
                    namespace: "default".into(),
                    name: "new".into(),
                    uid: "u2".into(),
                    started: None,
                    containers: vec![ContainerStats {
                        name: "a".into(),
                        cpu_nanocores: None,
                        memory_working_set: 11,
                        ..Default::default()
                    }],
                },
            ],
        }
    }

    #[test]
    fn metrics_sample_only_has_pods_with_a_rate() {
        let s = snapshot();
        let n = s.node_sample().expect("node has a rate");
        assert_eq!(n.usage.cpu_nanocores, 250_000_000);
        assert_eq!(n.pods.len(), 1);
        assert_eq!(n.pods[0].total().cpu_nanocores, 1_000_000_000);
        assert_eq!(s.pod_memory("u1"), 10);
        assert_eq!(s.container_memory("u2")["a"], 11);
        let mut first = s.clone();
        first.node.cpu_nanocores = None;
        assert!(first.node_sample().is_none());
    }

    #[test]
    fn summary_has_the_kubelet_shape() {
        let v = snapshot().summary();
        assert_eq!(v["node"]["nodeName"], "n1");
        assert_eq!(v["node"]["cpu"]["usageNanoCores"], 250_000_000);
        assert_eq!(v["node"]["memory"]["availableBytes"], 3u64 << 30);
        assert_eq!(v["node"]["fs"]["usedBytes"], 60);
        assert_eq!(v["node"]["fs"]["inodesUsed"], 6);
        assert_eq!(v["pods"][0]["podRef"]["uid"], "u1");
        assert_eq!(v["pods"][0]["cpu"]["usageNanoCores"], 1_000_000_000);
        assert_eq!(v["pods"][0]["memory"]["workingSetBytes"], 10);
        assert_eq!(v["pods"][0]["containers"][1]["name"], "b");
        // No rate yet: no usageNanoCores, as the kubelet leaves it out.
        assert!(v["pods"][1]["cpu"].get("usageNanoCores").is_none());
        assert_eq!(v["node"]["cpu"]["time"], "1970-01-01T00:00:00Z");
    }
}
