//! Node registration and status, as the kubelet's: the Node object with
//! its labels and podCIDR, capacity and allocatable from the machine,
//! addresses, nodeInfo, and the pressure/Ready conditions, re-posted every
//! status interval or when a condition changes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::AgentConfig;
use super::eviction::{self, Pressure};
use crate::config::Cidr;
use crate::registry::strategy::kinds::quantity;

pub const KUBELET_VERSION: &str = crate::node::simulated::KUBELET_VERSION;
/// Pods this node runs at most (upstream's default maxPods).
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Facts about the machine that go into the Node's status.
#[derive(Clone, Debug, Default)]
pub struct MachineInfo {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub system_uuid: String,
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `MemTotal`, `MemAvailable`, ... of /proc/meminfo in bytes.
pub fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// (total, available) bytes of the filesystem holding `path`.
pub fn fs_usage(path: &Path) -> Option<(u64, u64)> {
    let mut p = path.to_path_buf();
    // The agent dir may not exist yet on first start.
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let st = nix::sys::statvfs::statvfs(&p).ok()?;
    let frag = st.fragment_size() as u64;
    Some((
        st.blocks() as u64 * frag,
        st.blocks_available() as u64 * frag,
    ))
}

impl MachineInfo {
    pub fn probe(agent_dir: &Path) -> MachineInfo {
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "Linux".into());
        let machine_id = read_trim("/etc/machine-id").unwrap_or_default();
        MachineInfo {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1),
            memory_bytes: meminfo("MemTotal").unwrap_or(0),
            ephemeral_storage_bytes: fs_usage(agent_dir).map(|(t, _)| t).unwrap_or(0),
            kernel_version: read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
            os_image,
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid")
                .unwrap_or_else(|| machine_id.clone()),
            machine_id,
            boot_id: read_trim("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        }
    }
}

/// `cpu=100m,memory=256Mi` into (resource, nano-units).
pub fn parse_reserved(text: &str) -> Result<BTreeMap<String, i128>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not resource=quantity"))?;
        let q = quantity::parse(v.trim()).map_err(|e| format!("{k}: {e}"))?;
        out.insert(k.trim().to_string(), q.0);
    }
    Ok(out)
}

const NANO: i128 = 1_000_000_000;

/// Render nano-units the way upstream prints these resources: cpu in
/// cores or millicores, bytes in Ki.
fn render(resource: &str, nano: i128) -> String {
    let nano = nano.max(0);
    match resource {
        "cpu" => {
            if nano % NANO == 0 {
                (nano / NANO).to_string()
            } else {
                format!("{}m", nano / 1_000_000)
            }
        }
        "pods" => (nano / NANO).to_string(),
        _ => {
            let bytes = nano / NANO;
            if bytes % 1024 == 0 {
                format!("{}Ki", bytes / 1024)
            } else {
                bytes.to_string()
            }
        }
    }
}

/// Capacity and allocatable: allocatable is capacity minus
/// `--system-reserved` and the hard eviction thresholds of memory.available
/// and nodefs.available, as the kubelet computes it.
pub fn resources(
    m: &MachineInfo,
    reserved: &BTreeMap<String, i128>,
    max_pods: u32,
    thresholds: &eviction::Thresholds,
) -> (Value, Value) {
    let cap: BTreeMap<&str, i128> = [
        ("cpu", m.cpus as i128 * NANO),
        ("memory", m.memory_bytes as i128 * NANO),
        (
            "ephemeral-storage",
            m.ephemeral_storage_bytes as i128 * NANO,
        ),
        ("pods", max_pods as i128 * NANO),
        ("hugepages-1Gi", 0),
        ("hugepages-2Mi", 0),
    ]
    .into_iter()
    .collect();
    let mut capacity = serde_json::Map::new();
    let mut allocatable = serde_json::Map::new();
    for (k, v) in &cap {
        capacity.insert(k.to_string(), json!(render(k, *v)));
        let mut a = *v - reserved.get(*k).copied().unwrap_or(0);
        match *k {
            "memory" => {
                a -= thresholds.reserve(eviction::Signal::MemoryAvailable, m.memory_bytes) as i128
                    * NANO
            }
            "ephemeral-storage" => {
                a -= thresholds
                    .reserve(eviction::Signal::NodeFsAvailable, m.ephemeral_storage_bytes)
                    as i128
                    * NANO
            }
            _ => {}
        }
        allocatable.insert(k.to_string(), json!(render(k, a)));
    }
    (Value::Object(capacity), Value::Object(allocatable))
}

/// The first /24 of the cluster CIDR no node uses.
pub fn allocate_pod_cidr(cluster: &str, used: &[String]) -> Option<String> {
    let cidr: Cidr = cluster.parse().ok()?;
    let IpAddr::V4(net) = cidr.network() else {
        return None;
    };
    let count = 1u32 << (24 - u32::from(cidr.prefix_len().min(24)));
    (0..count)
        .map(|n| format!("{}/24", std::net::Ipv4Addr::from(u32::from(net) + (n << 8))))
        .find(|c| !used.iter().any(|u| u == c))
}

/// The first non-loopback IPv4 address of this network namespace.
pub fn primary_ipv4() -> Option<IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            let ip = sin.ip();
            if !ip.is_loopback() {
                return Some(IpAddr::V4(ip));
            }
        }
    }
    None
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

struct State {
    uid: Option<String>,
    pod_cidr: Option<String>,
    /// Condition type -> (status, since).
    transitions: BTreeMap<String, (String, Time)>,
    last_posted: Option<Instant>,
    last_pressure: Option<Pressure>,
    pressure_seen: eviction::PressureTracker,
}

/// This node's registration and status reporter; cheap to clone.
#[derive(Clone)]
pub struct NodeRegistration {
    client: kube::Client,
    config: Arc<AgentConfig>,
    machine: Arc<MachineInfo>,
    state: Arc<Mutex<State>>,
}

impl NodeRegistration {
    pub fn new(client: kube::Client, config: Arc<AgentConfig>) -> Self {
        let machine = Arc::new(MachineInfo::probe(&config.agent_dir));
        NodeRegistration {
            client,
            config,
            machine,
            state: Arc::new(Mutex::new(State {
                uid: None,
                pod_cidr: None,
                transitions: BTreeMap::new(),
                last_posted: None,
                last_pressure: None,
                pressure_seen: Default::default(),
            })),
        }
    }

    pub fn node_name(&self) -> &str {
        &self.config.node_name
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The pressure to report now (see `observe_pressure`).
    fn observe(&self) -> Pressure {
        self.observe_pressure(&eviction::Signals::read(&self.config.agent_dir))
    }

    /// The pressure to report given `obs`: what the hard and soft
    /// thresholds see, each condition held for the transition period
    /// after its signal clears.
    pub fn observe_pressure(&self, obs: &eviction::Signals) -> Pressure {
        let seen = eviction::observed_pressure(
            &self.config.eviction_hard,
            &self.config.eviction_soft,
            obs,
        );
        self.state.lock().pressure_seen.observe(
            seen,
            Instant::now(),
            self.config.eviction_pressure_transition_period,
        )
    }

    pub fn uid(&self) -> Option<String> {
        self.state.lock().uid.clone()
    }

    pub fn pod_cidr(&self) -> Option<String> {
        self.state.lock().pod_cidr.clone()
    }

    pub fn machine(&self) -> &MachineInfo {
        &self.machine
    }

    pub fn node_ip(&self) -> Option<IpAddr> {
        self.config.node_ip.or_else(primary_ipv4)
    }

    /// Allocatable (cpu millicores, memory bytes), for resourceFieldRef
    /// defaults.
    pub fn allocatable(&self) -> (i128, i128) {
        let reserved = parse_reserved(&self.config.system_reserved).unwrap_or_default();
        let cpu = self.machine.cpus as i128 * 1000
            - reserved.get("cpu").copied().unwrap_or(0) / 1_000_000;
        let mem = self.machine.memory_bytes as i128
            - reserved.get("memory").copied().unwrap_or(0) / NANO
            - self
                .config
                .eviction_hard
                .reserve(eviction::Signal::MemoryAvailable, self.machine.memory_bytes)
                as i128;
        (cpu, mem)
    }

    fn labels(&self) -> Value {
        let a = arch();
        json!({
            "beta.kubernetes.io/arch": a, "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": a, "kubernetes.io/os": "linux",
            "kubernetes.io/hostname": self.config.node_name,
            "node-role.kubernetes.io/control-plane": "true",
        })
    }

    /// Retry registration until the API takes it.
    pub async fn register_until_done(&self) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.register().await {
                Ok(()) => return,
                Err(e) => {
                    warn!(node = %self.config.node_name, "cannot register node: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(7));
                }
            }
        }
    }

    /// Create the Node (with a podCIDR of its own) or adopt the existing
    /// one, then post its status.
    pub async fn register(&self) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let name = &self.config.node_name;
        let node = match api.get_opt(name).await? {
            Some(_) => {
                let patch = json!({"metadata": {"labels": self.labels(),
                    "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                    "volumes.kubernetes.io/controller-managed-attach-detach": "true"}}});
                let mut n = api
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                if n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none() {
                    n = self.assign_pod_cidr(&api).await?;
                }
                n
            }
            None => {
                let used = self.used_pod_cidrs(&api).await?;
                let cidr = allocate_pod_cidr(&self.config.cluster_cidr, &used);
                let mut spec = json!({});
                if let Some(c) = &cidr {
                    spec = json!({"podCIDR": c, "podCIDRs": [c]});
                }
                let obj = json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": self.labels(),
                        "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                        "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
                    "spec": spec,
                });
                let node: Node = serde_json::from_value(obj).map_err(kube::Error::SerdeError)?;
                match api.create(&PostParams::default(), &node).await {
                    Ok(n) => n,
                    Err(kube::Error::Api(s)) if s.code == 409 => api.get(name).await?,
                    Err(e) => return Err(e),
                }
            }
        };
        {
            let mut st = self.state.lock();
            st.uid = node.metadata.uid.clone();
            st.pod_cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        }
        info!(node = %name, pod_cidr = ?self.pod_cidr(), "node registered");
        self.post_status().await
    }

    async fn used_pod_cidrs(&self, api: &Api<Node>) -> Result<Vec<String>, kube::Error> {
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|n| n.spec.and_then(|s| s.pod_cidr))
            .collect())
    }

    /// A Node that exists without a podCIDR (registered before, or by hand)
    /// gets one; podCIDR is immutable once set, as upstream.
    async fn assign_pod_cidr(&self, api: &Api<Node>) -> Result<Node, kube::Error> {
        let used = self.used_pod_cidrs(api).await?;
        let name = &self.config.node_name;
        match allocate_pod_cidr(&self.config.cluster_cidr, &used) {
            Some(c) => {
                let patch = json!({"spec": {"podCIDR": c, "podCIDRs": [c]}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
            }
            None => api.get(name).await,
        }
    }

    fn condition(&self, type_: &str, ok: bool, now: &Value) -> Value {
        let (status, reason, message) = match (type_, ok) {
            ("Ready", true) => ("True", "KubeletReady", "kubelet is posting ready status"),
            ("Ready", false) => ("False", "KubeletNotReady", "container runtime is not ready"),
            ("MemoryPressure", true) => (
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("MemoryPressure", false) => (
                "True",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            ("DiskPressure", true) => (
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            ("DiskPressure", false) => (
                "True",
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            ),
            ("PIDPressure", true) => (
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            (_, _) => (
                "True",
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
        };
        let since = {
            let mut st = self.state.lock();
            let e = st
                .transitions
                .entry(type_.to_string())
                .or_insert_with(|| (status.to_string(), Time(jiff::Timestamp::now())));
            if e.0 != status {
                *e = (status.to_string(), Time(jiff::Timestamp::now()));
            }
            e.1.clone()
        };
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    }

    /// The node's whole status now.
    pub fn status(&self) -> Value {
        let m = &self.machine;
        let reserved = parse_reserved(&self.config.system_reserved).unwrap_or_else(|e| {
            warn!("ignoring --system-reserved: {e}");
            BTreeMap::new()
        });
        let (capacity, allocatable) = resources(
            m,
            &reserved,
            self.config.max_pods,
            &self.config.eviction_hard,
        );
        let pressure = self.observe();
        self.state.lock().last_pressure = Some(pressure);
        let now = serde_json::to_value(Time(jiff::Timestamp::now())).unwrap_or(Value::Null);
        let mut addresses = Vec::new();
        if let Some(ip) = self.node_ip() {
            addresses.push(json!({"type": "InternalIP", "address": ip.to_string()}));
        }
        addresses.push(json!({"type": "Hostname", "address": self.config.node_name}));
        json!({
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [
                self.condition("MemoryPressure", !pressure.memory, &now),
                self.condition("DiskPressure", !pressure.disk, &now),
                self.condition("PIDPressure", !pressure.pid, &now),
                self.condition("Ready", true, &now),
            ],
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": arch(),
                "bootID": m.boot_id,
                "containerRuntimeVersion": format!("rk3s://{}", env!("CARGO_PKG_VERSION")),
                "kernelVersion": m.kernel_version,
                "kubeProxyVersion": KUBELET_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "machineID": m.machine_id,
                "operatingSystem": "linux",
                "osImage": m.os_image,
                "systemUUID": m.system_uuid,
            },
        })
    }

    pub async fn post_status(&self) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let status = self.status();
        api.patch_status(
            &self.config.node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
        self.state.lock().last_posted = Some(Instant::now());
        Ok(())
    }

    /// The pressure seen at the last status report.
    pub fn pressure(&self) -> Pressure {
        self.state.lock().last_pressure.unwrap_or_default()
    }

    /// Post status every status interval, and sooner when pressure
    /// changes (checked every 10 s) -- the kubelet's nodeStatusUpdateFrequency
    /// and nodeStatusReportFrequency.
    pub async fn status_loop(self) {
        let check = Duration::from_secs(10).min(self.config.status_interval);
        let mut tick = tokio::time::interval(check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (registered, due, old) = {
                let st = self.state.lock();
                (
                    st.uid.is_some(),
                    st.last_posted
                        .is_none_or(|t| t.elapsed() >= self.config.status_interval),
                    st.last_pressure,
                )
            };
            if !registered {
                continue;
            }
            let changed = old != Some(self.observe());
            if (due || changed)
                && let Err(e) = self.post_status().await
            {
                // The node may have been deleted: register it again.
                if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    self.register_until_done().await;
                } else {
                    warn!("node status update failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_subtracts_reserved_and_thresholds() {
        let m = MachineInfo {
            cpus: 2,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 100 << 30,
            ..Default::default()
        };
        let reserved = parse_reserved("cpu=100m, memory=256Mi").expect("parse");
        let thresholds =
            eviction::Thresholds::parse(crate::config::DEFAULT_EVICTION_HARD).expect("defaults");
        let (cap, alloc) = resources(&m, &reserved, 110, &thresholds);
        assert_eq!(cap["cpu"], "2");
        assert_eq!(cap["memory"], "4194304Ki");
        assert_eq!(cap["pods"], "110");
        assert_eq!(alloc["cpu"], "1900m");
        // 4Gi - 256Mi - 100Mi = 3740Mi.
        assert_eq!(alloc["memory"], format!("{}Ki", 3740 * 1024));
        assert_eq!(
            alloc["ephemeral-storage"],
            format!("{}Ki", 90 * 1024 * 1024)
        );
        assert!(parse_reserved("cpu").is_err());
        assert!(parse_reserved("cpu=lots").is_err());
    }

    #[test]
    fn pod_cidrs_are_the_first_free_24() {
        assert_eq!(
            allocate_pod_cidr("10.42.0.0/16", &[]).as_deref(),
            Some("10.42.0.0/24")
        );
        let used = vec!["10.42.0.0/24".to_string(), "10.42.2.0/24".to_string()];
        assert_eq!(
            allocate_pod_cidr("10.42.0.0/16", &used).as_deref(),
            Some("10.42.1.0/24")
        );
        assert_eq!(
            allocate_pod_cidr("10.42.0.0/24", &["10.42.0.0/24".into()]),
            None
        );
    }

    #[test]
    fn machine_facts_are_read() {
        let m = MachineInfo::probe(Path::new("/"));
        assert!(m.cpus >= 1);
        assert!(m.memory_bytes > 0);
        assert!(m.ephemeral_storage_bytes > 0);
        assert!(!m.kernel_version.is_empty());
    }
}
