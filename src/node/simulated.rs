//! Simulated nodes, in the style of kwok: `--simulate-nodes N` registers
//! Node objects sim-0 ... sim-N-1 and plays their kubelets in process. Each
//! node heartbeats (a Lease in kube-node-lease every 10 s, node status every
//! minute or when its Ready condition is not True), and runs the pods bound
//! to it at once: status Running, a pod IP from the node's podCIDR, every
//! container running and ready. Nothing listens on the addresses; only the
//! API objects exist.
//!
//! Pod annotations drive the simulation:
//! - `rk3s.io/simulate-exit-code: "N"`: containers exit with N. Pods with
//!   restartPolicy other than Always always exit (default 0, after about a
//!   second): 0 -> Succeeded (reason Completed); non-zero with Never ->
//!   Failed (reason Error); with OnFailure (or Always and a non-zero code)
//!   the container restarts with the kubelet's back-off (immediately, then
//!   10 s doubling to 5 min) and restartCount counts up.
//! - `rk3s.io/simulate-duration: "5s"`: how long containers run before
//!   exiting (default 1s).
//! - `rk3s.io/simulate-cpu` / `rk3s.io/simulate-memory`: the usage reported
//!   for the metrics API (`kubectl top`, the HPA), split evenly over the
//!   pod's containers; without them each container uses its requests, or
//!   1m CPU and 4Mi memory if it has none. Changing the annotations of a
//!   running pod changes its usage. Samples are stamped "now" with a 5 s
//!   window (`SIM_METRICS_WINDOW`); a node uses the sum of its pods.
//!
//! Node annotation `rk3s.io/simulate-stopped: "true"` stops that node's
//! kubelet: no heartbeats, no status, no pod updates (as if it died), so
//! the node lifecycle controller marks it Unknown; removing the annotation
//! brings it back.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::config::{Cidr, ServerConfig};
use crate::registry::strategy::kinds::quantity;

pub const STOPPED_ANNOTATION: &str = "rk3s.io/simulate-stopped";
pub const EXIT_CODE_ANNOTATION: &str = "rk3s.io/simulate-exit-code";
pub const DURATION_ANNOTATION: &str = "rk3s.io/simulate-duration";
pub const CPU_ANNOTATION: &str = "rk3s.io/simulate-cpu";
pub const MEMORY_ANNOTATION: &str = "rk3s.io/simulate-memory";
/// Marks Node objects this module owns.
pub const SIMULATED_ANNOTATION: &str = "rk3s.io/simulated";
pub const INSTANCE_TYPE: &str = "rk3s-sim";
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
pub const KUBELET_VERSION: &str = "v1.33.1";
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Where pod CIDRs come from once the cluster CIDR's /24s run out
/// (the shared address space, 16,384 /24s).
const FALLBACK_POD_RANGE: &str = "100.64.0.0/10";
/// Concurrent writes to the API.
const MAX_WRITES: usize = 64;

/// How the simulated fleet looks.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub count: u32,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub ephemeral_storage: String,
    pub cluster_cidr: String,
    pub heartbeat_interval: Duration,
    pub status_interval: Duration,
    /// How long containers of run-to-completion pods run by default.
    pub run_duration: Duration,
}

impl SimConfig {
    pub fn from_server(cfg: &ServerConfig) -> SimConfig {
        SimConfig {
            count: cfg.simulate_nodes,
            cpu: cfg.simulate_node_cpu.clone(),
            memory: cfg.simulate_node_memory.clone(),
            pods: cfg.simulate_node_pods,
            cluster_cidr: cfg.cluster_cidr.clone(),
            // Upstream's kubelet renews every 10 s against a 40 s grace
            // period; keep that ratio when tests shorten the grace period.
            heartbeat_interval: (cfg.node_monitor_grace_period / 4)
                .clamp(Duration::from_millis(250), Duration::from_secs(10)),
            ..SimConfig::default()
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            count: 0,
            cpu: crate::config::DEFAULT_SIMULATE_NODE_CPU.into(),
            memory: crate::config::DEFAULT_SIMULATE_NODE_MEMORY.into(),
            pods: crate::config::DEFAULT_SIMULATE_NODE_PODS,
            ephemeral_storage: "100Gi".into(),
            cluster_cidr: crate::config::DEFAULT_CLUSTER_CIDR.into(),
            heartbeat_interval: Duration::from_secs(10),
            status_interval: Duration::from_secs(60),
            run_duration: Duration::from_secs(1),
        }
    }
}

pub use super::metrics::Usage;
use super::metrics::{ContainerSample, NodeSample, PodSample, UsageSource};

/// The window simulated metrics claim to be measured over.
pub const SIM_METRICS_WINDOW: Duration = Duration::from_secs(5);

/// One pod's usage, with where it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub usage: Usage,
    pub containers: Vec<ContainerSample>,
}

impl PodUsage {
    fn of(pod: &Pod, node: &str) -> PodUsage {
        let containers = container_usages(pod);
        let mut usage = Usage::default();
        for c in &containers {
            usage.add(c.usage);
        }
        PodUsage {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            node: node.to_string(),
            usage,
            containers,
        }
    }
}

/// The name of simulated node `i`.
pub fn node_name(i: u32) -> String {
    format!("sim-{i}")
}

/// The InternalIP of simulated node `i`: 10.255.x.y (x = i / 250, y = i % 250 + 1).
pub fn node_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// The podCIDR of simulated node `i`: the (i+1)th /24 of the cluster CIDR
/// (the 0th is left for the server's own node), then /24s of 100.64.0.0/10.
pub fn pod_cidr(cluster: &str, i: u32) -> Option<Ipv4Addr> {
    let nth_24 = |cidr: &Cidr, n: u32| -> Option<Ipv4Addr> {
        let std::net::IpAddr::V4(net) = cidr.network() else {
            return None;
        };
        let subnets = 1u64 << (24 - u32::from(cidr.prefix_len().min(24)));
        if u64::from(n) >= subnets {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(net) + (n << 8)))
    };
    let cluster: Cidr = cluster.parse().ok()?;
    if let Some(ip) = nth_24(&cluster, i + 1) {
        return Some(ip);
    }
    let used = match cluster.network() {
        std::net::IpAddr::V4(_) => 1u32 << (24 - u32::from(cluster.prefix_len().min(24))),
        _ => 0,
    };
    let fallback: Cidr = FALLBACK_POD_RANGE.parse().ok()?;
    nth_24(&fallback, (i + 1).saturating_sub(used))
}

struct SimNode {
    index: u32,
    uid: Option<String>,
    cidr: Option<Ipv4Addr>,
    stopped: bool,
    gone: bool,
    last_status: Option<Instant>,
    ready_since: Time,
    /// Host parts (2..=254) of pod IPs in use.
    used_ips: BTreeSet<u8>,
}

impl SimNode {
    fn allocate_ip(&mut self) -> Option<Ipv4Addr> {
        let base = self.cidr?;
        let host = (2..=254u8).find(|h| !self.used_ips.contains(h))?;
        self.used_ips.insert(host);
        Some(Ipv4Addr::from(u32::from(base) | u32::from(host)))
    }

    fn release_ip(&mut self, ip: Ipv4Addr) {
        if let Some(base) = self.cidr
            && u32::from(ip) & !0xff == u32::from(base)
        {
            self.used_ips.remove(&(u32::from(ip) as u8));
        }
    }

    fn claim_ip(&mut self, ip: Ipv4Addr) {
        if let Some(base) = self.cidr
            && u32::from(ip) & !0xff == u32::from(base)
        {
            self.used_ips.insert(u32::from(ip) as u8);
        }
    }
}

struct SimPod {
    uid: String,
    node: String,
    ip: Option<Ipv4Addr>,
    /// Our last report had the containers ready (not crash-looping).
    ready: bool,
    /// When Ready was last re-posted after someone else cleared it.
    reposted: Option<Instant>,
    deleting: bool,
    terminal: bool,
}

struct Inner {
    client: kube::Client,
    cfg: SimConfig,
    nodes: Mutex<HashMap<String, SimNode>>,
    pods: Mutex<HashMap<String, SimPod>>,
    usage: Mutex<HashMap<String, PodUsage>>,
    writes: Arc<Semaphore>,
    boot_id: String,
}

/// The running fleet; cheap to clone.
#[derive(Clone)]
pub struct SimulatedNodes {
    inner: Arc<Inner>,
}

impl SimulatedNodes {
    /// Register the nodes and start their kubelets.
    pub fn start(client: kube::Client, cfg: SimConfig) -> SimulatedNodes {
        let nodes = (0..cfg.count)
            .map(|i| {
                let node = SimNode {
                    index: i,
                    uid: None,
                    cidr: pod_cidr(&cfg.cluster_cidr, i),
                    stopped: false,
                    gone: false,
                    last_status: None,
                    ready_since: Time(jiff::Timestamp::now()),
                    used_ips: BTreeSet::new(),
                };
                (node_name(i), node)
            })
            .collect();
        let sim = SimulatedNodes {
            inner: Arc::new(Inner {
                client,
                cfg,
                nodes: Mutex::new(nodes),
                pods: Mutex::new(HashMap::new()),
                usage: Mutex::new(HashMap::new()),
                writes: Arc::new(Semaphore::new(MAX_WRITES)),
                boot_id: uuid::Uuid::new_v4().to_string(),
            }),
        };
        tokio::spawn(sim.clone().run());
        sim
    }

    /// The simulated nodes' names, in index order.
    pub fn node_names(&self) -> Vec<String> {
        (0..self.inner.cfg.count).map(node_name).collect()
    }

    /// The usage of one running pod.
    pub fn pod_usage(&self, namespace: &str, name: &str) -> Option<Usage> {
        self.inner
            .usage
            .lock()
            .get(&format!("{namespace}/{name}"))
            .map(|u| u.usage)
    }

    /// Every running pod's usage.
    pub fn pod_usages(&self) -> Vec<PodUsage> {
        self.inner.usage.lock().values().cloned().collect()
    }

    /// The sum of the pods' usage on a node (None if it is not simulated).
    pub fn node_usage(&self, node: &str) -> Option<Usage> {
        if !self.inner.nodes.lock().contains_key(node) {
            return None;
        }
        let mut u = Usage::default();
        for p in self.inner.usage.lock().values().filter(|p| p.node == node) {
            u.cpu_nanocores += p.usage.cpu_nanocores;
            u.memory_bytes += p.usage.memory_bytes;
        }
        Some(u)
    }

    async fn run(self) {
        let names = self.node_names();
        info!(nodes = names.len(), "registering simulated nodes");
        futures::stream::iter(names.clone())
            .for_each_concurrent(32, |name| {
                let me = self.clone();
                async move {
                    let mut delay = Duration::from_millis(200);
                    while let Err(e) = me.register(&name).await {
                        warn!(node = %name, "cannot register simulated node: {e}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            })
            .await;
        tokio::spawn(self.clone().watch_nodes());
        tokio::spawn(self.clone().watch_pods());
        self.heartbeat_loop().await;
    }

    // ---- nodes ----------------------------------------------------------------

    fn node_object(&self, name: &str) -> Value {
        let cidr = self.inner.nodes.lock().get(name).and_then(|n| n.cidr);
        let arch = arch();
        let mut spec = json!({"providerID": format!("rk3s-sim://{name}")});
        if let Some(c) = cidr {
            spec["podCIDR"] = json!(format!("{c}/24"));
            spec["podCIDRs"] = json!([format!("{c}/24")]);
        }
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "beta.kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
                    "kubernetes.io/arch": arch, "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                    INSTANCE_TYPE_LABEL: INSTANCE_TYPE,
                },
                "annotations": {
                    SIMULATED_ANNOTATION: "true",
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": spec,
        })
    }

    fn node_status(&self, name: &str, index: u32) -> Value {
        let c = &self.inner.cfg;
        let resources = json!({
            "cpu": c.cpu, "memory": c.memory, "pods": c.pods.to_string(),
            "ephemeral-storage": c.ephemeral_storage, "hugepages-1Gi": "0", "hugepages-2Mi": "0",
        });
        let now = time_value(jiff::Timestamp::now());
        let since = self
            .inner
            .nodes
            .lock()
            .get(name)
            .map(|n| n.ready_since.clone());
        let since = since
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
            .unwrap_or_else(|| now.clone());
        let cond = |t: &str, s: &str, reason: &str, msg: &str| {
            json!({"type": t, "status": s, "reason": reason, "message": msg,
                   "lastHeartbeatTime": now, "lastTransitionTime": since})
        };
        json!({
            "capacity": resources, "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": node_ip(index).to_string()},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": arch(), "bootID": self.inner.boot_id,
                "containerRuntimeVersion": format!("rk3s-sim://{}", env!("CARGO_PKG_VERSION")),
                "kernelVersion": "6.1.0-rk3s-sim", "kubeProxyVersion": KUBELET_VERSION, "kubeletVersion": KUBELET_VERSION,
                "machineID": format!("{:032x}", u128::from(index) + 1), "operatingSystem": "linux",
                "osImage": "rk3s simulated node", "systemUUID": format!("00000000-0000-4000-8000-{:012x}", index),
            },
        })
    }

    /// Create the Node (or refresh an existing one's labels), post its
    /// status and take its lease.
    async fn register(&self, name: &str) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.inner.client.clone());
        let obj = self.node_object(name);
        let node = match api.get_opt(name).await? {
            None => {
                let node: Node = serde_json::from_value(obj).map_err(kube::Error::SerdeError)?;
                match api.create(&PostParams::default(), &node).await {
                    Ok(n) => n,
                    Err(kube::Error::Api(s)) if s.code == 409 => api.get(name).await?,
                    Err(e) => return Err(e),
                }
            }
            Some(_) => {
                let meta = json!({"metadata": {"labels": obj["metadata"]["labels"], "annotations": obj["metadata"]["annotations"]}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(meta))
                    .await?
            }
        };
        let stopped = is_stopped(&node);
        {
            let mut nodes = self.inner.nodes.lock();
            if let Some(n) = nodes.get_mut(name) {
                n.uid = node.metadata.uid.clone();
                n.stopped = stopped;
            }
        }
        if !stopped {
            self.post_status(name).await?;
            self.renew_lease(name).await?;
        }
        Ok(())
    }

    async fn post_status(&self, name: &str) -> Result<(), kube::Error> {
        let index = self
            .inner
            .nodes
            .lock()
            .get(name)
            .map(|n| n.index)
            .unwrap_or(0);
        let api: Api<Node> = Api::all(self.inner.client.clone());
        let status = self.node_status(name, index);
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
        if let Some(n) = self.inner.nodes.lock().get_mut(name) {
            n.last_status = Some(Instant::now());
        }
        Ok(())
    }

    async fn renew_lease(&self, name: &str) -> Result<(), kube::Error> {
        let api: Api<Lease> = Api::namespaced(self.inner.client.clone(), NODE_LEASE_NAMESPACE);
        let now = serde_json::to_value(MicroTime(jiff::Timestamp::now()))
            .map_err(kube::Error::SerdeError)?;
        let patch =
            json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch.clone()))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let uid = self
                    .inner
                    .nodes
                    .lock()
                    .get(name)
                    .and_then(|n| n.uid.clone());
                let mut lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
                    "spec": patch["spec"],
                });
                if let Some(uid) = uid {
                    lease["metadata"]["ownerReferences"] =
                        json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]);
                }
                let lease: Lease =
                    serde_json::from_value(lease).map_err(kube::Error::SerdeError)?;
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Leases every heartbeat interval; node status every status interval.
    async fn heartbeat_loop(self) {
        let mut tick = tokio::time::interval(self.inner.cfg.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let due: Vec<(String, bool)> = {
                let nodes = self.inner.nodes.lock();
                nodes
                    .iter()
                    .filter(|(_, n)| !n.stopped && !n.gone)
                    .map(|(name, n)| {
                        let status_due = n
                            .last_status
                            .is_none_or(|t| t.elapsed() >= self.inner.cfg.status_interval);
                        (name.clone(), status_due)
                    })
                    .collect()
            };
            futures::stream::iter(due)
                .for_each_concurrent(16, |(name, status_due)| {
                    let me = self.clone();
                    async move {
                        if let Err(e) = me.renew_lease(&name).await {
                            debug!(node = %name, "lease renewal failed: {e}");
                        }
                        if status_due && let Err(e) = me.post_status(&name).await {
                            debug!(node = %name, "node status update failed: {e}");
                        }
                    }
                })
                .await;
        }
    }

    /// Follow the sim nodes: the stop annotation, Ready conditions someone
    /// else changed (the node lifecycle controller), deletions.
    async fn watch_nodes(self) {
        let api: Api<Node> = Api::all(self.inner.client.clone());
        let cfg =
            watcher::Config::default().labels(&format!("{INSTANCE_TYPE_LABEL}={INSTANCE_TYPE}"));
        let mut stream = watcher(api, cfg).boxed();
        while let Some(ev) = stream.next().await {
            let node = match ev {
                Ok(watcher::Event::Apply(n)) | Ok(watcher::Event::InitApply(n)) => n,
                Ok(watcher::Event::Delete(n)) => {
                    if let Some(s) = self
                        .inner
                        .nodes
                        .lock()
                        .get_mut(n.metadata.name.as_deref().unwrap_or(""))
                    {
                        s.gone = true;
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(e) => {
                    debug!("simulated node watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let name = node.metadata.name.clone().unwrap_or_default();
            let stopped = is_stopped(&node);
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True");
            let (resumed, needs_status) = {
                let mut nodes = self.inner.nodes.lock();
                let Some(s) = nodes.get_mut(&name) else {
                    continue;
                };
                s.gone = false;
                s.uid = node.metadata.uid.clone();
                let resumed = s.stopped && !stopped;
                s.stopped = stopped;
                // Answer a NotReady/Unknown verdict at once, but not in a loop.
                let needs = !stopped
                    && !ready
                    && s.last_status
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(2));
                if resumed || needs {
                    s.ready_since = Time(jiff::Timestamp::now());
                }
                (resumed, needs)
            };
            if stopped {
                continue;
            }
            if resumed || needs_status {
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = me.renew_lease(&name).await {
                        debug!(node = %name, "lease: {e}");
                    }
                    if let Err(e) = me.post_status(&name).await {
                        debug!(node = %name, "status: {e}");
                    }
                    if resumed {
                        me.resync_node_pods(&name).await;
                    }
                });
            }
        }
    }

    // ---- pods -----------------------------------------------------------------

    async fn watch_pods(self) {
        let api: Api<Pod> = Api::all(self.inner.client.clone());
        let cfg = watcher::Config::default().fields("spec.nodeName!=");
        let mut stream = watcher(api, cfg).boxed();
        // Keys seen during a relist; pods not among them went away unseen.
        let mut seen: Option<std::collections::HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(p)) => self.on_pod(p),
                Ok(watcher::Event::InitApply(p)) => {
                    if let Some(s) = seen.as_mut() {
                        s.insert(key_of(&p));
                    }
                    self.on_pod(p);
                }
                Ok(watcher::Event::Delete(p)) => self.forget_pod(&p),
                Ok(watcher::Event::Init) => seen = Some(Default::default()),
                Ok(watcher::Event::InitDone) => {
                    let Some(seen) = seen.take() else { continue };
                    let gone: Vec<String> = self
                        .inner
                        .pods
                        .lock()
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for key in gone {
                        let (ns, name) = key.split_once('/').unwrap_or(("", key.as_str()));
                        let mut p = Pod::default();
                        p.metadata.namespace = Some(ns.to_string());
                        p.metadata.name = Some(name.to_string());
                        self.forget_pod(&p);
                    }
                }
                Err(e) => {
                    debug!("simulated kubelet pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// After a node comes back, catch up with what happened to its pods.
    async fn resync_node_pods(&self, node: &str) {
        let api: Api<Pod> = Api::all(self.inner.client.clone());
        match api
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
        {
            Ok(list) => {
                for p in list.items {
                    self.on_pod(p);
                }
            }
            Err(e) => debug!(%node, "resync: {e}"),
        }
    }

    /// A running pod someone marked NotReady (the node lifecycle
    /// controller, while the node looked dead) gets its Ready status back,
    /// as a live kubelet's status sync reports it.
    fn repost_if_unready(&self, pod: &Pod) {
        let key = key_of(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if !running || crate::controllers::podcontrol::is_ready(pod) {
            return;
        }
        let (ip, node) = {
            let mut pods = self.inner.pods.lock();
            match pods.get_mut(&key) {
                Some(p)
                    if p.uid == uid
                        && p.ready
                        && !p.deleting
                        && !p.terminal
                        && p.reposted
                            .is_none_or(|t| t.elapsed() > Duration::from_secs(2)) =>
                {
                    p.reposted = Some(Instant::now());
                    (p.ip, p.node.clone())
                }
                _ => return,
            }
        };
        let index = self
            .inner
            .nodes
            .lock()
            .get(&node)
            .map(|n| n.index)
            .unwrap_or(0);
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
            .unwrap_or_else(jiff::Timestamp::now);
        let me = self.clone();
        let pod = pod.clone();
        tokio::spawn(async move {
            let ids = ContainerIds::new(&pod);
            let status = running_status(
                &pod,
                node_ip(index),
                ip,
                started,
                &ids,
                &Restarts::default(),
            );
            me.patch_pod_status(&pod, &uid, status).await;
        });
    }

    fn forget_pod(&self, pod: &Pod) {
        let key = key_of(pod);
        self.inner.usage.lock().remove(&key);
        let removed = {
            let mut pods = self.inner.pods.lock();
            match pods.get(&key) {
                Some(p)
                    if Some(&p.uid) == pod.metadata.uid.as_ref() || pod.metadata.uid.is_none() =>
                {
                    pods.remove(&key)
                }
                _ => None,
            }
        };
        if let Some(p) = removed
            && let Some(ip) = p.ip
            && let Some(n) = self.inner.nodes.lock().get_mut(&p.node)
        {
            n.release_ip(ip);
        }
    }

    fn on_pod(&self, pod: Pod) {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        {
            let nodes = self.inner.nodes.lock();
            match nodes.get(&node) {
                Some(n) if !n.stopped => {}
                _ => return,
            }
        }
        let key = key_of(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        // A different pod of the same name replaced one we knew.
        let stale = self
            .inner
            .pods
            .lock()
            .get(&key)
            .is_some_and(|p| p.uid != uid);
        if stale {
            let mut old = pod.clone();
            old.metadata.uid = None;
            self.forget_pod(&old);
        }
        let status = pod.status.as_ref();
        let phase = status
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending")
            .to_string();

        if pod.metadata.deletion_timestamp.is_some() {
            let first = {
                let mut pods = self.inner.pods.lock();
                let entry = pods.entry(key.clone()).or_insert_with(|| SimPod {
                    uid: uid.clone(),
                    node: node.clone(),
                    ip: None,
                    ready: false,
                    reposted: None,
                    deleting: false,
                    terminal: false,
                });
                !std::mem::replace(&mut entry.deleting, true)
            };
            if first {
                let me = self.clone();
                tokio::spawn(async move { me.finish_deletion(pod, uid).await });
            }
            return;
        }

        if phase == "Succeeded" || phase == "Failed" {
            self.inner.usage.lock().remove(&key);
            let ip = {
                let mut pods = self.inner.pods.lock();
                let entry = pods.entry(key.clone()).or_insert_with(|| SimPod {
                    uid: uid.clone(),
                    node: node.clone(),
                    ip: None,
                    ready: false,
                    reposted: None,
                    deleting: false,
                    terminal: true,
                });
                entry.terminal = true;
                entry.ip.take()
            };
            if let Some(ip) = ip
                && let Some(n) = self.inner.nodes.lock().get_mut(&node)
            {
                n.release_ip(ip);
            }
            return;
        }

        let known = self.inner.pods.lock().contains_key(&key);
        if known {
            // Usage annotations may have changed.
            if let Some(u) = self.inner.usage.lock().get_mut(&key) {
                *u = PodUsage::of(&pod, &node);
            }
            self.repost_if_unready(&pod);
            return;
        }
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let existing_ip = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let index = self
            .inner
            .nodes
            .lock()
            .get(&node)
            .map(|n| n.index)
            .unwrap_or(0);
        let ip = if host_network {
            Some(node_ip(index))
        } else {
            let mut nodes = self.inner.nodes.lock();
            let n = nodes.get_mut(&node);
            match (existing_ip, n) {
                (Some(ip), Some(n)) => {
                    n.claim_ip(ip);
                    Some(ip)
                }
                (None, Some(n)) => n.allocate_ip(),
                _ => None,
            }
        };
        if ip.is_none() {
            warn!(pod = %key, %node, "simulated node has no pod IP left");
        }
        self.inner.pods.lock().insert(
            key.clone(),
            SimPod {
                uid: uid.clone(),
                node: node.clone(),
                ip: if host_network { None } else { ip },
                ready: false,
                reposted: None,
                deleting: false,
                terminal: false,
            },
        );
        self.inner
            .usage
            .lock()
            .insert(key.clone(), PodUsage::of(&pod, &node));
        let me = self.clone();
        let already_running = phase == "Running";
        tokio::spawn(async move { me.drive(pod, uid, index, ip, already_running).await });
    }

    fn still_ours(&self, key: &str, uid: &str) -> bool {
        let node_up = |node: &str| {
            self.inner
                .nodes
                .lock()
                .get(node)
                .is_some_and(|n| !n.stopped && !n.gone)
        };
        let pods = self.inner.pods.lock();
        pods.get(key)
            .is_some_and(|p| p.uid == uid && !p.deleting && !p.terminal && node_up(&p.node))
    }

    /// Run the pod: Running at once; then, if its containers exit, finish or
    /// restart them as the kubelet would.
    async fn drive(
        self,
        pod: Pod,
        uid: String,
        node_index: u32,
        ip: Option<Ipv4Addr>,
        already_running: bool,
    ) {
        let key = key_of(&pod);
        let host_ip = node_ip(node_index);
        let ids = ContainerIds::new(&pod);
        let started = jiff::Timestamp::now();
        if !already_running {
            let status = running_status(&pod, host_ip, ip, started, &ids, &Restarts::default());
            if !self.patch_pod_status(&pod, &uid, status).await {
                return;
            }
        }
        self.set_ready(&key, true);
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let code: i32 = annotations
            .get(EXIT_CODE_ANNOTATION)
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0);
        if policy == "Always" && code == 0 {
            return;
        }
        let run_for = annotations
            .get(DURATION_ANNOTATION)
            .and_then(|d| crate::config::parse_duration(d).ok())
            .unwrap_or(self.inner.cfg.run_duration);
        let mut restarts = Restarts::default();
        loop {
            tokio::time::sleep(run_for).await;
            if !self.still_ours(&key, &uid) {
                return;
            }
            let finished = jiff::Timestamp::now();
            if code == 0 || policy == "Never" {
                let status = terminal_status(&pod, host_ip, ip, started, finished, code, &ids);
                self.patch_pod_status(&pod, &uid, status).await;
                return;
            }
            // Restart with the kubelet's crash-loop back-off.
            restarts.count += 1;
            restarts.last = Some((code, restarts.started.unwrap_or(started), finished));
            let delay = crash_backoff(restarts.count);
            if !delay.is_zero() {
                self.set_ready(&key, false);
                let waiting = waiting_status(&pod, host_ip, ip, started, &ids, &restarts, delay);
                if !self.patch_pod_status(&pod, &uid, waiting).await {
                    return;
                }
                tokio::time::sleep(delay).await;
                if !self.still_ours(&key, &uid) {
                    return;
                }
            }
            let now = jiff::Timestamp::now();
            restarts.started = Some(now);
            let status = running_status(&pod, host_ip, ip, started, &ids, &restarts);
            if !self.patch_pod_status(&pod, &uid, status).await {
                return;
            }
            self.set_ready(&key, true);
        }
    }

    fn set_ready(&self, key: &str, ready: bool) {
        if let Some(p) = self.inner.pods.lock().get_mut(key) {
            p.ready = ready;
        }
    }

    /// Merge-patch the pod's status; false if the pod is gone (or replaced).
    async fn patch_pod_status(&self, pod: &Pod, uid: &str, status: Value) -> bool {
        let _permit = self.inner.writes.acquire().await;
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), ns);
        let key = key_of(pod);
        if !self.still_ours(&key, uid) {
            return false;
        }
        let mut body = json!({"metadata": {"uid": uid}, "status": status});
        // Conditions set by others (PodScheduled, DisruptionTarget) stay.
        merge_foreign_conditions(pod, &mut body["status"]);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(body))
            .await
        {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => false,
            Err(e) => {
                debug!(pod = %key, "status update failed: {e}");
                false
            }
        }
    }

    /// A pod being deleted gracefully: its containers stop at once, so the
    /// deletion completes with a zero grace period.
    async fn finish_deletion(self, pod: Pod, uid: String) {
        let _permit = self.inner.writes.acquire().await;
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => debug!(pod = %key_of(&pod), "final delete failed: {e}"),
        }
    }
}

fn is_stopped(node: &Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STOPPED_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn time_value(t: jiff::Timestamp) -> Value {
    serde_json::to_value(Time(t)).unwrap_or(Value::Null)
}

/// The crash-loop back-off before restart number `n`: none for the first,
/// then 10 s doubling up to 5 minutes.
pub fn crash_backoff(n: u32) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let shift = (n - 2).min(5);
    Duration::from_secs(10 << shift).min(Duration::from_secs(300))
}

/// Usage reported for a pod: the sum of `container_usages`.
pub fn usage_of(pod: &Pod) -> Usage {
    let mut u = Usage::default();
    for c in container_usages(pod) {
        u.add(c.usage);
    }
    u
}

/// Usage reported for each container of a pod: the pod's annotations split
/// evenly (the remainder to the first container), else the container's
/// requests, else a small idle figure (1m CPU, 4Mi memory).
pub fn container_usages(pod: &Pod) -> Vec<ContainerSample> {
    let ann = pod.metadata.annotations.clone().unwrap_or_default();
    let nano = |s: &str| {
        quantity::parse(s)
            .ok()
            .map(|q| u64::try_from(q.0.max(0)).unwrap_or(u64::MAX))
    };
    let pod_cpu = ann.get(CPU_ANNOTATION).and_then(|s| nano(s));
    let pod_memory = ann
        .get(MEMORY_ANNOTATION)
        .and_then(|s| nano(s))
        .map(|n| n / 1_000_000_000);
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let n = containers.len().max(1) as u64;
    let share = |total: u64, i: usize| total / n + if i == 0 { total % n } else { 0 };
    containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let req = |r: &str| {
                c.resources
                    .as_ref()
                    .and_then(|res| res.requests.as_ref())
                    .and_then(|m| m.get(r))
                    .and_then(|q| nano(&q.0))
            };
            let cpu = match pod_cpu {
                Some(t) => share(t, i),
                None => req("cpu").unwrap_or(1_000_000),
            };
            let memory = match pod_memory {
                Some(t) => share(t, i),
                None => req("memory").map(|n| n / 1_000_000_000).unwrap_or(4 << 20),
            };
            ContainerSample {
                name: c.name.clone(),
                usage: Usage {
                    cpu_nanocores: cpu,
                    memory_bytes: memory,
                },
            }
        })
        .collect()
}

impl UsageSource for SimulatedNodes {
    /// Every running simulated node (not stopped) with its pods.
    fn samples(&self) -> Vec<NodeSample> {
        let now = jiff::Timestamp::now();
        let live: Vec<String> = self
            .inner
            .nodes
            .lock()
            .iter()
            .filter(|(_, n)| !n.stopped && !n.gone)
            .map(|(name, _)| name.clone())
            .collect();
        let usage = self.inner.usage.lock();
        live.into_iter()
            .map(|node| {
                let pods: Vec<PodSample> = usage
                    .values()
                    .filter(|p| p.node == node)
                    .map(|p| PodSample {
                        namespace: p.namespace.clone(),
                        name: p.name.clone(),
                        timestamp: now,
                        window: SIM_METRICS_WINDOW,
                        containers: p.containers.clone(),
                    })
                    .collect();
                let mut total = Usage::default();
                for p in &pods {
                    total.add(p.total());
                }
                NodeSample {
                    node,
                    timestamp: now,
                    window: SIM_METRICS_WINDOW,
                    usage: total,
                    pods,
                }
            })
            .collect()
    }
}

/// Stable fake container and image ids for a pod.
struct ContainerIds {
    ids: HashMap<String, String>,
}

impl ContainerIds {
    fn new(pod: &Pod) -> ContainerIds {
        let mut ids = HashMap::new();
        let spec = pod.spec.clone().unwrap_or_default();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            ids.insert(c.name.clone(), format!("rk3s-sim://{}", random_hex()));
        }
        ContainerIds { ids }
    }

    fn id(&self, name: &str) -> String {
        self.ids.get(name).cloned().unwrap_or_default()
    }
}

fn random_hex() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// `nginx:1.27` -> `docker.io/library/nginx@sha256:<digest of the name>`.
fn image_id(image: &str) -> String {
    let full = crate::scheduler::cache::normalize_image(image);
    let repo = match full.rfind(':') {
        Some(i) if !full[i..].contains('/') => &full[..i],
        _ => full.as_str(),
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, image.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{repo}@sha256:{hex}")
}

fn image_name(image: &str) -> String {
    crate::scheduler::cache::normalize_image(image)
}

#[derive(Default)]
struct Restarts {
    count: u32,
    /// (exit code, started, finished) of the last run.
    last: Option<(i32, jiff::Timestamp, jiff::Timestamp)>,
    /// When the current run started.
    started: Option<jiff::Timestamp>,
}

fn cond(t: &str, ok: bool, reason: Option<&str>, message: Option<&str>, at: &Value) -> Value {
    let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null,
                       "lastTransitionTime": at});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

fn ip_fields(status: &mut Value, host_ip: Ipv4Addr, pod_ip: Option<Ipv4Addr>, host_network: bool) {
    status["hostIP"] = json!(host_ip.to_string());
    status["hostIPs"] = json!([{"ip": host_ip.to_string()}]);
    let ip = if host_network { Some(host_ip) } else { pod_ip };
    if let Some(ip) = ip {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
}

fn init_statuses(pod: &Pod, started: jiff::Timestamp, ids: &ContainerIds) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let at = time_value(started);
    let list: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let state = if sidecar {
                json!({"running": {"startedAt": at}})
            } else {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": at, "finishedAt": at,
                                      "containerID": ids.id(&c.name)}})
            };
            json!({"name": c.name, "image": image_name(&image), "imageID": image_id(&image),
                   "containerID": ids.id(&c.name), "ready": true, "restartCount": 0, "started": sidecar,
                   "state": state, "lastState": {}})
        })
        .collect();
    Value::Array(list)
}

fn running_status(
    pod: &Pod,
    host_ip: Ipv4Addr,
    ip: Option<Ipv4Addr>,
    started: jiff::Timestamp,
    ids: &ContainerIds,
    restarts: &Restarts,
) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let now = time_value(jiff::Timestamp::now());
    let run_started = time_value(restarts.started.unwrap_or(started));
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let mut s = json!({"name": c.name, "image": image_name(&image), "imageID": image_id(&image),
                   "containerID": ids.id(&c.name), "ready": true, "started": true,
                   "restartCount": restarts.count, "state": {"running": {"startedAt": run_started}}, "lastState": {}});
            if let Some((code, from, to)) = restarts.last {
                s["lastState"] = json!({"terminated": {"exitCode": code, "reason": "Error",
                    "startedAt": time_value(from), "finishedAt": time_value(to), "containerID": ids.id(&c.name)}});
            }
            s
        })
        .collect();
    let mut status = json!({
        "phase": "Running",
        "startTime": time_value(started),
        "conditions": [
            cond("PodReadyToStartContainers", true, None, None, &now),
            cond("Initialized", true, None, None, &now),
            cond("Ready", true, None, None, &now),
            cond("ContainersReady", true, None, None, &now),
        ],
        "containerStatuses": containers,
    });
    if spec.init_containers.as_ref().is_some_and(|i| !i.is_empty()) {
        status["initContainerStatuses"] = init_statuses(pod, started, ids);
    }
    ip_fields(&mut status, host_ip, ip, spec.host_network.unwrap_or(false));
    status
}

fn waiting_status(
    pod: &Pod,
    host_ip: Ipv4Addr,
    ip: Option<Ipv4Addr>,
    started: jiff::Timestamp,
    ids: &ContainerIds,
    restarts: &Restarts,
    delay: Duration,
) -> Value {
    let mut status = running_status(pod, host_ip, ip, started, ids, restarts);
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let now = time_value(jiff::Timestamp::now());
    let mut names = Vec::new();
    if let Some(list) = status["containerStatuses"].as_array_mut() {
        for c in list.iter_mut() {
            let cname = c["name"].as_str().unwrap_or("").to_string();
            c["ready"] = json!(false);
            c["started"] = json!(false);
            c["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
                "message": format!("back-off {}s restarting failed container={cname} pod={name}_{ns}({uid})", delay.as_secs())}});
            names.push(cname);
        }
    }
    let msg = format!("containers with unready status: [{}]", names.join(" "));
    status["conditions"] = json!([
        cond("PodReadyToStartContainers", true, None, None, &now),
        cond("Initialized", true, None, None, &now),
        cond("Ready", false, Some("ContainersNotReady"), Some(&msg), &now),
        cond(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(&msg),
            &now
        ),
    ]);
    status
}

fn terminal_status(
    pod: &Pod,
    host_ip: Ipv4Addr,
    ip: Option<Ipv4Addr>,
    started: jiff::Timestamp,
    finished: jiff::Timestamp,
    code: i32,
    ids: &ContainerIds,
) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let ok = code == 0;
    let (phase, reason, pod_reason) = if ok {
        ("Succeeded", "Completed", "PodCompleted")
    } else {
        ("Failed", "Error", "PodFailed")
    };
    let now = time_value(finished);
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            json!({"name": c.name, "image": image_name(&image), "imageID": image_id(&image),
                   "containerID": ids.id(&c.name), "ready": false, "started": false, "restartCount": 0,
                   "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": time_value(started),
                                            "finishedAt": now, "containerID": ids.id(&c.name)}},
                   "lastState": {}})
        })
        .collect();
    let mut status = json!({
        "phase": phase,
        "startTime": time_value(started),
        "conditions": [
            cond("PodReadyToStartContainers", false, None, None, &now),
            cond("Initialized", true, Some(pod_reason), None, &now),
            cond("Ready", false, Some(pod_reason), None, &now),
            cond("ContainersReady", false, Some(pod_reason), None, &now),
        ],
        "containerStatuses": containers,
    });
    if spec.init_containers.as_ref().is_some_and(|i| !i.is_empty()) {
        status["initContainerStatuses"] = init_statuses(pod, started, ids);
    }
    ip_fields(&mut status, host_ip, ip, spec.host_network.unwrap_or(false));
    status
}

/// Keep the conditions other components own (PodScheduled keeps its
/// original transition time) in the full list a merge patch replaces.
fn merge_foreign_conditions(pod: &Pod, status: &mut Value) {
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
    ];
    let Some(list) = status.get_mut("conditions").and_then(Value::as_array_mut) else {
        return;
    };
    let existing = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut foreign: Vec<Value> = existing
        .iter()
        .filter(|c| !ours.contains(&c.type_.as_str()))
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    if !foreign.iter().any(|c| c["type"] == "PodScheduled") {
        let now = time_value(jiff::Timestamp::now());
        foreign.push(cond("PodScheduled", true, None, None, &now));
    }
    // Keep transition times of our own conditions whose status is unchanged.
    for c in list.iter_mut() {
        if let Some(old) = existing.iter().find(|o| c["type"] == o.type_.as_str())
            && c["status"] == old.status.as_str()
            && let Some(t) = &old.last_transition_time
        {
            c["lastTransitionTime"] = time_value(t.0);
        }
    }
    let mut all = foreign;
    all.append(list);
    *list = all;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_pod_cidrs() {
        assert_eq!(node_ip(0).to_string(), "10.255.0.1");
        assert_eq!(node_ip(249).to_string(), "10.255.0.250");
        assert_eq!(node_ip(250).to_string(), "10.255.1.1");
        assert_eq!(
            pod_cidr("10.42.0.0/16", 0)
                .map(|c| c.to_string())
                .as_deref(),
            Some("10.42.1.0")
        );
        assert_eq!(
            pod_cidr("10.42.0.0/16", 254)
                .map(|c| c.to_string())
                .as_deref(),
            Some("10.42.255.0")
        );
        assert_eq!(
            pod_cidr("10.42.0.0/16", 255)
                .map(|c| c.to_string())
                .as_deref(),
            Some("100.64.0.0")
        );
        // 999 - 255 = the 744th /24 of 100.64.0.0/10: 744 * 256 = 2 * 65536 + 232 * 256.
        assert_eq!(
            pod_cidr("10.42.0.0/16", 999)
                .map(|c| c.to_string())
                .as_deref(),
            Some("100.66.232.0")
        );
    }

    #[test]
    fn pod_ips_are_unique_and_reused() {
        let mut n = SimNode {
            index: 0,
            uid: None,
            cidr: pod_cidr("10.42.0.0/16", 0),
            stopped: false,
            gone: false,
            last_status: None,
            ready_since: Time(jiff::Timestamp::now()),
            used_ips: BTreeSet::new(),
        };
        let a = n.allocate_ip().unwrap();
        let b = n.allocate_ip().unwrap();
        assert_eq!(
            (a.to_string().as_str(), b.to_string().as_str()),
            ("10.42.1.2", "10.42.1.3")
        );
        n.release_ip(a);
        assert_eq!(n.allocate_ip(), Some(a));
        n.claim_ip("10.42.1.4".parse().unwrap());
        assert_eq!(n.allocate_ip().unwrap().to_string(), "10.42.1.5");
        let mut count = 4;
        while n.allocate_ip().is_some() {
            count += 1;
        }
        assert_eq!(count, 253, ".2 to .254");
    }

    #[test]
    fn back_off_and_usage() {
        let secs: Vec<u64> = (1..=8).map(|n| crash_backoff(n).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300]);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": {MEMORY_ANNOTATION: "64Mi"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m"}}}]}
        }))
        .unwrap();
        assert_eq!(
            usage_of(&pod),
            Usage {
                cpu_nanocores: 250_000_000,
                memory_bytes: 64 << 20
            }
        );
    }

    #[test]
    fn container_usage_split_and_defaults() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": {CPU_ANNOTATION: "301m"}},
            "spec": {"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}},
                {"name": "b"},
            ]}
        }))
        .unwrap();
        let got: Vec<(String, u64, u64)> = container_usages(&pod)
            .into_iter()
            .map(|c| (c.name, c.usage.cpu_nanocores, c.usage.memory_bytes))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), 150_500_000, 32 << 20),
                ("b".to_string(), 150_500_000, 4 << 20)
            ]
        );
        assert_eq!(
            usage_of(&pod),
            Usage {
                cpu_nanocores: 301_000_000,
                memory_bytes: 36 << 20
            }
        );
    }

    #[test]
    fn statuses_read_like_a_kubelet() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u1"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}],
                     "initContainers": [{"name": "init", "image": "busybox"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                       "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        let ids = ContainerIds::new(&pod);
        let t = jiff::Timestamp::now();
        let ip = Some(Ipv4Addr::new(10, 42, 1, 2));
        let mut s = running_status(&pod, node_ip(0), ip, t, &ids, &Restarts::default());
        merge_foreign_conditions(&pod, &mut s);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.42.1.2");
        assert_eq!(s["hostIP"], "10.255.0.1");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert_eq!(
            s["containerStatuses"][0]["image"],
            "docker.io/library/busybox:latest"
        );
        assert!(
            s["containerStatuses"][0]["imageID"]
                .as_str()
                .unwrap()
                .starts_with("docker.io/library/busybox@sha256:")
        );
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "PodScheduled",
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady"
            ]
        );
        assert_eq!(
            s["conditions"][0]["lastTransitionTime"],
            "2024-01-01T00:00:00Z"
        );

        let f = terminal_status(&pod, node_ip(0), ip, t, t, 3, &ids);
        assert_eq!(f["phase"], "Failed");
        assert_eq!(
            f["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            3
        );
        assert_eq!(
            f["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Error"
        );
        let ok = terminal_status(&pod, node_ip(0), ip, t, t, 0, &ids);
        assert_eq!(ok["phase"], "Succeeded");
        assert_eq!(ok["conditions"][2]["reason"], "PodCompleted");

        let r = Restarts {
            count: 2,
            last: Some((1, t, t)),
            ..Default::default()
        };
        let w = waiting_status(&pod, node_ip(0), ip, t, &ids, &r, Duration::from_secs(10));
        assert_eq!(
            w["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
        assert_eq!(w["containerStatuses"][0]["restartCount"], 2);
        assert_eq!(
            w["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
            1
        );
    }
}
