//! The node's resource usage, as the kubelet's stats provider: each pod
//! container's cgroup statistics (through the runtime) and the node's (the
//! root cgroup, /proc/meminfo, the agent directory's filesystem), sampled
//! on the housekeeping period. Each sample is published for the metrics
//! API (`node::metrics::Published`, read by `kubectl top` and the HPA) and
//! kept for `nodes/NAME/proxy/stats/summary` and for eviction ranking.
//!
//! The summary also has, as the kubelet's: network counters (a pod's
//! interfaces as its processes see them in `/proc/PID/net/dev`, the node's
//! own), each pod's volumes (bytes and inodes used, the filesystem's
//! capacity), each container's writable layer and logs, and the pod's
//! ephemeral storage (all of those but PersistentVolumeClaims).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::podworker::{LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID, PodVolume, PodWorkers};
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
    /// The writable layer (the overlay's upper dir).
    pub rootfs: Option<FsStats>,
    pub logs: Option<FsStats>,
}

/// One network interface's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// Network counters: the default interface first.
#[derive(Clone, Debug, Default)]
pub struct NetworkStats {
    pub interfaces: Vec<InterfaceStats>,
}

/// A pod volume's usage.
#[derive(Clone, Debug, Default)]
pub struct VolumeStats {
    pub name: String,
    /// The PersistentVolumeClaim it comes from.
    pub claim: Option<String>,
    pub fs: FsStats,
}

#[derive(Clone, Debug, Default)]
pub struct PodStats {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub started: Option<SystemTime>,
    pub containers: Vec<ContainerStats>,
    pub network: Option<NetworkStats>,
    pub volumes: Vec<VolumeStats>,
    pub ephemeral: Option<FsStats>,
}

/// Capacity and free space of a filesystem; with what a directory on it
/// uses, when the figures are a directory's (`used`, `inodes_used`).
#[derive(Clone, Copy, Debug, Default)]
pub struct FsStats {
    pub capacity: u64,
    pub available: u64,
    pub inodes: u64,
    pub inodes_free: u64,
    pub used: Option<u64>,
    pub inodes_used: Option<u64>,
}

impl FsStats {
    /// The filesystem's figures with a directory's usage.
    fn of_dir(fs: FsStats, (used, inodes_used): (u64, u64)) -> FsStats {
        FsStats {
            used: Some(used),
            inodes_used: Some(inodes_used),
            ..fs
        }
    }
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
    pub network: Option<NetworkStats>,
    /// (pid_max, processes running).
    pub rlimit: Option<(u64, u64)>,
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
                "usedBytes": f.used.unwrap_or(f.capacity.saturating_sub(f.available)),
                "inodesFree": f.inodes_free,
                "inodes": f.inodes,
                "inodesUsed": f.inodes_used.unwrap_or(f.inodes.saturating_sub(f.inodes_free)),
            })
        };
        // The default interface's counters inline, and every interface.
        let net = |n: &NetworkStats| {
            let iface = |i: &InterfaceStats| {
                json!({"name": i.name, "rxBytes": i.rx_bytes, "rxErrors": i.rx_errors,
                       "txBytes": i.tx_bytes, "txErrors": i.tx_errors})
            };
            let mut v = n.interfaces.first().map(iface).unwrap_or_else(|| json!({}));
            v["time"] = json!(at);
            v["interfaces"] = n.interfaces.iter().map(iface).collect();
            v
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
                        let mut v = json!({
                            "name": c.name,
                            "startTime": started(c.started),
                            "cpu": cpu(c.cpu_nanocores, c.cpu_usage_core_nanos),
                            "memory": {"time": at, "workingSetBytes": c.memory_working_set,
                                       "usageBytes": c.memory_usage},
                        });
                        if let Some(r) = &c.rootfs {
                            v["rootfs"] = fs(r);
                        }
                        if let Some(l) = &c.logs {
                            v["logs"] = fs(l);
                        }
                        v
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
                let mut v = json!({
                    "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                    "startTime": started(p.started),
                    "containers": containers,
                    "cpu": cpu(rate, total_cpu),
                    "memory": {"time": at, "workingSetBytes": ws, "usageBytes": usage},
                });
                if let Some(n) = &p.network {
                    v["network"] = net(n);
                }
                if !p.volumes.is_empty() {
                    v["volume"] = p
                        .volumes
                        .iter()
                        .map(|vol| {
                            let mut j = fs(&vol.fs);
                            j["name"] = json!(vol.name);
                            if let Some(c) = &vol.claim {
                                j["pvcRef"] = json!({"name": c, "namespace": p.namespace});
                            }
                            j
                        })
                        .collect();
                }
                if let Some(e) = &p.ephemeral {
                    v["ephemeral-storage"] = fs(e);
                }
                v
            })
            .collect();
        let mut node = json!({
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
        });
        if let Some(nw) = &n.network {
            node["network"] = net(nw);
        }
        if let Some((max, cur)) = n.rlimit {
            node["rlimit"] = json!({"time": at, "maxpid": max, "curproc": cur});
        }
        json!({"node": node, "pods": pods})
    }
}

/// Samples usage and keeps the latest sample; cheap to share.
pub struct StatsCollector {
    node_name: String,
    agent_dir: PathBuf,
    images_dir: PathBuf,
    runtime: Arc<dyn ContainerRuntime>,
    /// The pod workers, for pods' volumes (none in unit tests).
    workers: Option<PodWorkers>,
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
        workers: Option<PodWorkers>,
    ) -> Self {
        StatsCollector {
            node_name,
            images_dir: agent_dir.join("images"),
            agent_dir,
            runtime,
            workers,
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
        let nodefs = fs_stats(&self.agent_dir);
        let imagefs = fs_stats(&self.images_dir);
        let sandboxes = self.runtime.list_sandboxes().await.unwrap_or_default();
        for sb in sandboxes {
            let label = |k: &str| sb.labels.get(k).cloned().unwrap_or_default();
            let mut pod = PodStats {
                namespace: label(LABEL_POD_NAMESPACE),
                name: label(LABEL_POD_NAME),
                uid: label(LABEL_POD_UID),
                started: Some(sb.created_at),
                ..Default::default()
            };
            let mut disk = PodDisk {
                volumes: self
                    .workers
                    .as_ref()
                    .map(|w| w.pod_volumes(&pod.uid))
                    .unwrap_or_default(),
                ..Default::default()
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
                    ..Default::default()
                });
                disk.containers.push((
                    self.agent_dir
                        .join("sandboxes")
                        .join(&sb.id)
                        .join("containers")
                        .join(&c.id)
                        .join("upper"),
                    c.log_path.parent().map(Path::to_path_buf),
                ));
                disk.pid = disk.pid.or(c.pid);
            }
            if !pod.containers.is_empty() {
                let measured =
                    tokio::task::spawn_blocking(move || disk.measure(nodefs, imagefs)).await;
                if let Ok(m) = measured {
                    for (c, (rootfs, logs)) in pod.containers.iter_mut().zip(m.containers) {
                        c.rootfs = Some(rootfs);
                        c.logs = logs;
                    }
                    pod.volumes = m.volumes;
                    pod.ephemeral = Some(m.ephemeral);
                    pod.network = m.network;
                }
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
                fs: nodefs,
                image_fs: imagefs,
                network: std::fs::read_to_string("/proc/self/net/dev")
                    .ok()
                    .map(|t| node_network(&t, default_interface().as_deref())),
                rlimit: rlimit(),
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

/// What a pod's disk and network figures are measured from.
#[derive(Default)]
struct PodDisk {
    /// Per container: its overlay upper dir and its log directory.
    containers: Vec<(PathBuf, Option<PathBuf>)>,
    volumes: Vec<PodVolume>,
    /// A process of the pod, for its network namespace's counters.
    pid: Option<u32>,
}

struct PodMeasure {
    containers: Vec<(FsStats, Option<FsStats>)>,
    volumes: Vec<VolumeStats>,
    ephemeral: FsStats,
    network: Option<NetworkStats>,
}

impl PodDisk {
    /// Walks directories: run off the async threads.
    fn measure(self, nodefs: FsStats, imagefs: FsStats) -> PodMeasure {
        let mut ephemeral = (0u64, 0u64);
        let mut add = |u: (u64, u64)| {
            ephemeral.0 += u.0;
            ephemeral.1 += u.1;
        };
        let mut containers = Vec::new();
        for (upper, logs) in &self.containers {
            let r = dir_usage(upper);
            add(r);
            let l = logs.as_deref().map(|d| {
                let u = dir_usage(d);
                add(u);
                FsStats::of_dir(nodefs, u)
            });
            containers.push((FsStats::of_dir(imagefs, r), l));
        }
        let mut volumes = Vec::new();
        for v in &self.volumes {
            let u = dir_usage(&v.path);
            // Claims are persistent storage, not the pod's ephemeral storage.
            if v.claim.is_none() {
                add(u);
            }
            volumes.push(VolumeStats {
                name: v.name.clone(),
                claim: v.claim.clone(),
                fs: FsStats::of_dir(fs_stats(&v.path), u),
            });
        }
        PodMeasure {
            containers,
            volumes,
            ephemeral: FsStats::of_dir(nodefs, ephemeral),
            network: self.pid.and_then(pod_network),
        }
    }
}

/// Bytes and inodes used under `dir` (not following symlinks, not
/// crossing into other filesystems such as mounted volumes).
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let dev = root.dev();
    let (mut bytes, mut inodes) = (root.blocks() * 512, 1u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            bytes = bytes.saturating_add(m.blocks() * 512);
            inodes += 1;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

/// The interfaces of `/proc/net/dev` (loopback left out).
pub fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (name != "lo" && f.len() >= 11).then(|| InterfaceStats {
                name: name.to_string(),
                rx_bytes: f[0],
                rx_errors: f[2],
                tx_bytes: f[8],
                tx_errors: f[10],
            })
        })
        .collect()
}

/// A pod's interfaces as its process `pid` sees them, eth0 first; None
/// when it shares the node's network namespace (hostNetwork).
fn pod_network(pid: u32) -> Option<NetworkStats> {
    let ns = |p: &str| std::fs::read_link(p).ok();
    let theirs = ns(&format!("/proc/{pid}/ns/net"))?;
    if Some(&theirs) == ns("/proc/self/ns/net").as_ref() {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    let mut interfaces = parse_net_dev(&text);
    interfaces.sort_by_key(|i| i.name != crate::net::POD_IFNAME);
    Some(NetworkStats { interfaces })
}

/// The node's interfaces, the default route's first; pods' veth ends and
/// the pod bridge left out, as cAdvisor leaves virtual devices out.
fn node_network(text: &str, default: Option<&str>) -> NetworkStats {
    let mut interfaces: Vec<InterfaceStats> = parse_net_dev(text)
        .into_iter()
        .filter(|i| !i.name.starts_with("veth") && i.name != crate::net::DEFAULT_BRIDGE)
        .collect();
    interfaces.sort_by_key(|i| Some(i.name.as_str()) != default);
    NetworkStats { interfaces }
}

/// The interface of the default route (/proc/net/route).
fn default_interface() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/net/route").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000")).then(|| f[0].to_string())
    })
}

/// (pid_max, processes running), the node's rlimit stats.
fn rlimit() -> Option<(u64, u64)> {
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cur = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count() as u64;
    Some((max, cur))
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
        ..Default::default()
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
                    ..Default::default()
                },
                image_fs: FsStats::default(),
                network: Some(NetworkStats {
                    interfaces: vec![InterfaceStats {
                        name: "eth0".into(),
                        rx_bytes: 100,
                        rx_errors: 1,
                        tx_bytes: 200,
                        tx_errors: 2,
                    }],
                }),
                rlimit: Some((4194304, 300)),
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
                            rootfs: Some(FsStats {
                                capacity: 1000,
                                available: 600,
                                used: Some(8192),
                                inodes_used: Some(3),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ],
                    network: Some(NetworkStats {
                        interfaces: vec![InterfaceStats {
                            name: "eth0".into(),
                            rx_bytes: 5,
                            tx_bytes: 6,
                            ..Default::default()
                        }],
                    }),
                    volumes: vec![
                        VolumeStats {
                            name: "data".into(),
                            claim: Some("claim".into()),
                            fs: FsStats::default(),
                        },
                        VolumeStats {
                            name: "cache".into(),
                            claim: None,
                            fs: FsStats::default(),
                        },
                    ],
                    ephemeral: None,
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
                    ..Default::default()
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
        // Network: the default interface inline, and the list.
        assert_eq!(v["node"]["network"]["name"], "eth0");
        assert_eq!(v["node"]["network"]["rxErrors"], 1);
        assert_eq!(v["node"]["network"]["interfaces"][0]["txBytes"], 200);
        assert_eq!(v["node"]["rlimit"]["maxpid"], 4194304);
        assert_eq!(v["pods"][0]["network"]["rxBytes"], 5);
        // A directory's usage, not the filesystem's.
        let rootfs = &v["pods"][0]["containers"][1]["rootfs"];
        assert_eq!(rootfs["usedBytes"], 8192);
        assert_eq!(rootfs["inodesUsed"], 3);
        assert_eq!(rootfs["availableBytes"], 600);
        assert_eq!(v["pods"][0]["volume"][0]["pvcRef"]["name"], "claim");
        assert_eq!(v["pods"][0]["volume"][0]["pvcRef"]["namespace"], "default");
        assert!(v["pods"][0]["volume"][1].get("pvcRef").is_none());
        assert!(v["pods"][1].get("network").is_none());
    }

    #[test]
    fn net_dev_as_the_kernel_writes_it() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:   52000     400    3    0    0     0          0         0    61000     410    4    0    0     0       0          0
veth12:       1       1    0    0    0     0          0         0        2       1    0    0    0     0       0          0
";
        let ifs = parse_net_dev(text);
        assert_eq!(ifs.len(), 2);
        assert_eq!(
            ifs[0],
            InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 52000,
                rx_errors: 3,
                tx_bytes: 61000,
                tx_errors: 4,
            }
        );
        let node = node_network(text, Some("eth0"));
        assert_eq!(node.interfaces.len(), 1, "veth ends left out");
    }

    #[test]
    fn dir_usage_counts_bytes_and_inodes() {
        let d = std::env::temp_dir().join(format!("rk3s-du-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).expect("mkdir");
        std::fs::write(d.join("sub/f"), vec![1u8; 64 << 10]).expect("write");
        let (bytes, inodes) = dir_usage(&d);
        assert_eq!(inodes, 3);
        assert!(bytes >= 64 << 10, "{bytes}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
