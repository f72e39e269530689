//! Node-pressure eviction, as the kubelet's eviction manager with hard
//! thresholds (`--eviction-hard`, default memory.available<100Mi,
//! nodefs.available<10%, imagefs.available<15%, nodefs.inodesFree<5%), and
//! image garbage collection (`--image-gc-high-threshold` /
//! `--image-gc-low-threshold`).
//!
//! Every housekeeping period the manager samples usage (the stats
//! collector), measures the signals, and when a threshold is met: the
//! node's MemoryPressure / DiskPressure / PIDPressure condition turns True
//! (the node lifecycle controller taints the node for it); disk pressure
//! first reclaims node-level resources (unused images); then, if the
//! threshold is still met, one pod is evicted per pass, ranked as upstream
//! ranks them: pods using more than they request first, then by priority,
//! then by how far usage exceeds requests (BestEffort pods request
//! nothing, so they go first). The evicted pod is killed at once (hard
//! thresholds allow no grace) and reported Failed with reason Evicted.
//!
//! Soft thresholds (`--eviction-soft`) evict only once met for their grace
//! period (`--eviction-soft-grace-period`), the pod given its own grace
//! period up to `--eviction-max-pod-grace-period`. A pressure condition
//! stays True for `--eviction-pressure-transition-period` after its signal
//! clears; while it is True new pods are admitted as upstream's eviction
//! admission says (`admits`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, ListParams};
use tracing::{info, warn};

use super::podworker::PodWorkers;
use super::qos::{QosClass, qos_class};
use super::registration::{NodeRegistration, fs_usage, meminfo};
use super::stats::{Snapshot, StatsCollector};
use crate::controllers::events::{Recorder, WARNING};
use crate::node::metrics::memory_quantity;
use crate::registry::strategy::kinds::quantity;
use crate::runtime::cri::ContainerRuntime;

/// The kubelet's default memory.available hard threshold (bytes).
pub const MEMORY_AVAILABLE_HARD: u64 = 100 << 20;
/// Upstream's image GC period.
const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);
/// Hard evictions kill at once; the kubelet gives 1 s.
pub const EVICTION_GRACE: Duration = Duration::from_secs(1);
/// Priority at and above which a pod is critical and never evicted
/// (system-cluster-critical and system-node-critical).
const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// An eviction signal the kubelet knows (Linux ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

impl Signal {
    fn parse(s: &str) -> Option<Signal> {
        Some(match s {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodeFsAvailable,
            "nodefs.inodesFree" => Signal::NodeFsInodesFree,
            "imagefs.available" => Signal::ImageFsAvailable,
            "imagefs.inodesFree" => Signal::ImageFsInodesFree,
            "pid.available" => Signal::PidAvailable,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// The resource a pod is evicted to reclaim, as the message names it.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    fn is_disk(self) -> bool {
        !matches!(self, Signal::MemoryAvailable | Signal::PidAvailable)
    }

    /// Upstream evicts for memory before disk before PIDs.
    fn order(self) -> u8 {
        match self {
            Signal::MemoryAvailable => 0,
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => 1,
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => 2,
            Signal::PidAvailable => 3,
        }
    }
}

/// A threshold's value: an absolute quantity (bytes, inodes, PIDs) or a
/// fraction of the signal's capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Quantity(u64),
    Percent(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
    /// The quantity as written (`100Mi`), for messages.
    text: String,
}

impl Threshold {
    /// The threshold in the signal's units, for a capacity.
    pub fn quantity(&self, capacity: u64) -> u64 {
        match self.value {
            Value::Quantity(q) => q,
            Value::Percent(p) => (capacity as f64 * p) as u64,
        }
    }

    /// As the message shows it: the quantity as written, or the
    /// percentage worked out against the capacity.
    fn quantity_text(&self, capacity: u64) -> String {
        match self.value {
            Value::Quantity(_) => self.text.clone(),
            Value::Percent(_) => render(self.signal, self.quantity(capacity)),
        }
    }
}

fn render(signal: Signal, v: u64) -> String {
    match signal {
        Signal::MemoryAvailable | Signal::NodeFsAvailable | Signal::ImageFsAvailable => {
            memory_quantity(v)
        }
        _ => v.to_string(),
    }
}

/// A set of hard thresholds (`--eviction-hard`). As the kubelet's flag, the
/// list replaces the defaults: a signal not listed is not watched.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

impl Thresholds {
    /// `memory.available<100Mi,nodefs.available<10%`; an empty string (or
    /// `none`) watches nothing.
    pub fn parse(text: &str) -> Result<Thresholds, String> {
        let mut out: Vec<Threshold> = Vec::new();
        let text = text.trim();
        if text.is_empty() || text == "none" {
            return Ok(Thresholds(out));
        }
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('<').ok_or_else(|| {
                format!("{part:?}: a threshold is signal<quantity, e.g. memory.available<100Mi")
            })?;
            let name = name.trim();
            let value = value.trim();
            let signal = Signal::parse(name).ok_or_else(|| {
                format!(
                    "unsupported eviction signal {name:?} (memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree, pid.available)"
                )
            })?;
            if out.iter().any(|t| t.signal == signal) {
                return Err(format!("{name} is given twice"));
            }
            let v = if let Some(p) = value.strip_suffix('%') {
                let p: f64 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("{part:?}: {p:?} is not a percentage"))?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(format!("{part:?}: a percentage must be from 0% to 100%"));
                }
                Value::Percent(p / 100.0)
            } else {
                let q = quantity::parse(value).map_err(|e| format!("{part:?}: {e}"))?;
                if q.is_negative() {
                    return Err(format!("{part:?}: must not be negative"));
                }
                // Nano-units to whole units, rounding up as Quantity.Value().
                let units = (q.0 + 999_999_999) / 1_000_000_000;
                Value::Quantity(u64::try_from(units).unwrap_or(u64::MAX))
            };
            out.push(Threshold {
                signal,
                value: v,
                text: value.to_string(),
            });
        }
        Ok(Thresholds(out))
    }

    pub fn get(&self, signal: Signal) -> Option<&Threshold> {
        self.0.iter().find(|t| t.signal == signal)
    }

    /// What allocatable holds back for a signal (memory.available,
    /// nodefs.available), as the kubelet subtracts hard thresholds.
    pub fn reserve(&self, signal: Signal, capacity: u64) -> u64 {
        self.get(signal)
            .map(|t| t.quantity(capacity).min(capacity))
            .unwrap_or(0)
    }

    /// The thresholds `obs` meets, most urgent first.
    pub fn met(&self, obs: &Signals) -> Vec<(Threshold, u64, u64)> {
        let mut out: Vec<(Threshold, u64, u64)> = self
            .0
            .iter()
            .filter_map(|t| {
                let (available, capacity) = obs.get(t.signal)?;
                (available < t.quantity(capacity)).then(|| (t.clone(), available, capacity))
            })
            .collect();
        out.sort_by_key(|(t, _, _)| t.signal.order());
        out
    }

    pub fn pressure(&self, obs: &Signals) -> Pressure {
        let mut p = Pressure::default();
        for (t, _, _) in self.met(obs) {
            match t.signal {
                Signal::MemoryAvailable => p.memory = true,
                Signal::PidAvailable => p.pid = true,
                _ => p.disk = true,
            }
        }
        p
    }
}

/// Which conditions are under pressure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

impl Pressure {
    fn or(self, o: Pressure) -> Pressure {
        Pressure {
            memory: self.memory || o.memory,
            disk: self.disk || o.disk,
            pid: self.pid || o.pid,
        }
    }

    /// The conditions under pressure, as upstream lists them in messages.
    pub fn conditions(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.memory {
            out.push("MemoryPressure");
        }
        if self.disk {
            out.push("DiskPressure");
        }
        if self.pid {
            out.push("PIDPressure");
        }
        out
    }
}

/// Soft thresholds (`--eviction-soft`), each with the time it must stay
/// met before pods are evicted for it (`--eviction-soft-grace-period`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SoftThresholds {
    pub thresholds: Thresholds,
    pub grace: HashMap<Signal, Duration>,
}

impl SoftThresholds {
    /// As the kubelet: every soft threshold needs a grace period; grace
    /// periods name known signals.
    pub fn parse(soft: &str, grace: &str) -> Result<SoftThresholds, String> {
        let thresholds = Thresholds::parse(soft)?;
        let grace = parse_grace_periods(grace)?;
        for t in &thresholds.0 {
            if !grace.contains_key(&t.signal) {
                return Err(format!(
                    "grace period must be specified for the soft eviction threshold {}",
                    t.signal.name()
                ));
            }
        }
        Ok(SoftThresholds { thresholds, grace })
    }

    pub fn grace(&self, signal: Signal) -> Duration {
        self.grace.get(&signal).copied().unwrap_or_default()
    }
}

/// `memory.available=1m30s,nodefs.available=2m`.
pub fn parse_grace_periods(text: &str) -> Result<HashMap<Signal, Duration>, String> {
    let mut out = HashMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or_else(|| {
            format!("{part:?}: a grace period is signal=duration, e.g. memory.available=1m30s")
        })?;
        let signal = Signal::parse(name.trim())
            .ok_or_else(|| format!("unsupported eviction signal {:?}", name.trim()))?;
        let d = crate::config::parse_duration(value).map_err(|e| format!("{part:?}: {e}"))?;
        if out.insert(signal, d).is_some() {
            return Err(format!("{} is given twice", signal.name()));
        }
    }
    Ok(out)
}

/// Pressure as the node reports it: a condition stays True until its
/// signal has been clear for the transition period
/// (`--eviction-pressure-transition-period`), so it does not flap.
#[derive(Clone, Debug, Default)]
pub struct PressureTracker {
    memory: Option<Instant>,
    disk: Option<Instant>,
    pid: Option<Instant>,
}

impl PressureTracker {
    /// Record what is observed `now`; the pressure to report.
    pub fn observe(&mut self, seen: Pressure, now: Instant, period: Duration) -> Pressure {
        for (on, at) in [
            (seen.memory, &mut self.memory),
            (seen.disk, &mut self.disk),
            (seen.pid, &mut self.pid),
        ] {
            if on {
                *at = Some(now);
            }
        }
        let recent =
            |at: Option<Instant>| at.is_some_and(|t| now.saturating_duration_since(t) < period);
        Pressure {
            memory: seen.memory || recent(self.memory),
            disk: seen.disk || recent(self.disk),
            pid: seen.pid || recent(self.pid),
        }
    }
}

/// What the thresholds (hard and soft) see in `obs`: soft thresholds
/// count at once for the conditions, as upstream's (their grace period
/// only delays evictions).
pub fn observed_pressure(hard: &Thresholds, soft: &SoftThresholds, obs: &Signals) -> Pressure {
    hard.pressure(obs).or(soft.thresholds.pressure(obs))
}

/// The message of a pod refused under node pressure, as upstream's.
pub fn admission_message(p: Pressure) -> String {
    format!("The node had condition: [{}]. ", p.conditions().join(" "))
}

/// Whether a new pod may start under `p`, as upstream's eviction
/// admission: critical pods always; under memory pressure alone, pods
/// other than BestEffort, and BestEffort ones tolerating the
/// memory-pressure taint; under any other pressure, none.
pub fn admits(p: Pressure, pod: &Pod) -> bool {
    if p == Pressure::default() || is_critical(pod) {
        return true;
    }
    if p.memory && !p.disk && !p.pid {
        if qos_class(pod) != QosClass::BestEffort {
            return true;
        }
        return pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_ref())
            .is_some_and(|ts| {
                ts.iter().any(|t| {
                    let key_ok = match t.key.as_deref() {
                        None | Some("") => t.operator.as_deref() == Some("Exists"),
                        Some(k) => k == "node.kubernetes.io/memory-pressure",
                    };
                    let value_ok = t.operator.as_deref() == Some("Exists")
                        || t.value.as_deref().unwrap_or("").is_empty();
                    let effect_ok =
                        matches!(t.effect.as_deref(), None | Some("") | Some("NoSchedule"));
                    key_ok && value_ok && effect_ok
                })
            });
    }
    false
}

/// Measured signals (bytes, counts). Images live under the agent
/// directory, so imagefs is nodefs here.
#[derive(Clone, Copy, Debug, Default)]
pub struct Signals {
    pub memory_available: Option<u64>,
    pub memory_capacity: Option<u64>,
    pub nodefs_total: Option<u64>,
    pub nodefs_available: Option<u64>,
    pub inodes_total: Option<u64>,
    pub inodes_free: Option<u64>,
    pub pids_used: Option<u64>,
    pub pid_max: Option<u64>,
}

impl Signals {
    pub fn read(agent_dir: &Path) -> Signals {
        let fs = fs_usage(agent_dir);
        let inodes = inode_usage(agent_dir);
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let pids_used = std::fs::read_dir("/proc").ok().map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count() as u64
        });
        Signals {
            memory_available: meminfo("MemAvailable"),
            memory_capacity: meminfo("MemTotal"),
            nodefs_total: fs.map(|f| f.0),
            nodefs_available: fs.map(|f| f.1),
            inodes_total: inodes.map(|i| i.0),
            inodes_free: inodes.map(|i| i.1),
            pids_used,
            pid_max,
        }
    }

    /// (available, capacity) of a signal, when measured.
    pub fn get(&self, signal: Signal) -> Option<(u64, u64)> {
        match signal {
            Signal::MemoryAvailable => Some((self.memory_available?, self.memory_capacity?)),
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => {
                Some((self.nodefs_available?, self.nodefs_total?))
            }
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => {
                Some((self.inodes_free?, self.inodes_total?))
            }
            Signal::PidAvailable => {
                let max = self.pid_max?;
                Some((max.saturating_sub(self.pids_used?), max))
            }
        }
    }
}

/// (total, free) inodes of the filesystem holding `path`.
fn inode_usage(path: &Path) -> Option<(u64, u64)> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let st = nix::sys::statvfs::statvfs(&p).ok()?;
    Some((st.files(), st.files_available()))
}

/// A pod as the ranking sees it: its usage of the resource being
/// reclaimed and what it requests of it (bytes).
pub struct Candidate<'a> {
    pub pod: &'a Pod,
    pub usage: u64,
    pub request: u64,
}

fn priority(p: &Pod) -> i32 {
    p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Whether the kubelet would never evict this pod (critical).
pub fn is_critical(p: &Pod) -> bool {
    priority(p) >= CRITICAL_PRIORITY
        || p.spec
            .as_ref()
            .and_then(|s| s.priority_class_name.as_deref())
            .is_some_and(|c| c == "system-node-critical" || c == "system-cluster-critical")
}

/// Eviction order, as upstream's rankMemoryPressure / rankDiskPressure:
/// usage above requests first, then lower priority, then the larger excess;
/// ties go to the lower QoS class, then the newest pod. Critical pods are
/// left out.
pub fn rank<'a>(mut candidates: Vec<Candidate<'a>>) -> Vec<Candidate<'a>> {
    candidates.retain(|c| !is_critical(c.pod));
    let qos = |p: &Pod| match qos_class(p) {
        QosClass::BestEffort => 0,
        QosClass::Burstable => 1,
        QosClass::Guaranteed => 2,
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    candidates.sort_by(|a, b| {
        let exceeds = |c: &Candidate| c.usage > c.request;
        exceeds(b)
            .cmp(&exceeds(a))
            .then_with(|| priority(a.pod).cmp(&priority(b.pod)))
            .then_with(|| {
                let over = |c: &Candidate| c.usage as i128 - c.request as i128;
                over(b).cmp(&over(a))
            })
            .then_with(|| qos(a.pod).cmp(&qos(b.pod)))
            .then_with(|| created(b.pod).cmp(&created(a.pod)))
    });
    candidates
}

/// A container's request of a resource, in bytes.
fn request_of(c: &k8s_openapi::api::core::v1::Container, resource: &str) -> u64 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|m| m.get(resource))
        .and_then(|q| quantity::parse(&q.0).ok())
        .map(|q| u64::try_from((q.0 + 999_999_999) / 1_000_000_000).unwrap_or(0))
        .unwrap_or(0)
}

/// The pod's request of a resource: its app containers' sum.
pub fn pod_request(pod: &Pod, resource: &str) -> u64 {
    pod.spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| request_of(c, resource)).sum())
        .unwrap_or(0)
}

/// The message upstream writes into an evicted pod's status (and the
/// Evicted event): the resource, the threshold and what was available,
/// and each container using more than it requested.
pub fn message(
    threshold: &Threshold,
    available: u64,
    capacity: u64,
    pod: &Pod,
    container_usage: &HashMap<String, u64>,
) -> String {
    let resource = threshold.signal.resource();
    let mut m = format!(
        "The node was low on resource: {resource}. Threshold quantity: {}, available: {}. ",
        threshold.quantity_text(capacity),
        render(threshold.signal, available),
    );
    if threshold.signal == Signal::MemoryAvailable {
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            let used = container_usage.get(&c.name).copied().unwrap_or(0);
            let req = request_of(c, resource);
            if used > req {
                m.push_str(&format!(
                    "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                    c.name,
                    memory_quantity(used),
                    memory_quantity(req),
                ));
            }
        }
    }
    m
}

/// Removing unused images, as the image store does it.
pub trait ImageGc: Send + Sync {
    /// Remove images `in_use` does not name, least recently used first,
    /// until `bytes` were freed; returns the bytes freed.
    fn prune(&self, in_use: &HashSet<String>, bytes: u64, min_age: Duration)
    -> Result<u64, String>;
}

impl ImageGc for crate::runtime::image::ImageStore {
    fn prune(
        &self,
        in_use: &HashSet<String>,
        bytes: u64,
        min_age: Duration,
    ) -> Result<u64, String> {
        self.prune_unused_older_than(in_use, bytes, min_age)
            .map_err(|e| e.to_string())
    }
}

/// The eviction manager and image garbage collector of one node.
pub struct EvictionManager {
    pub client: kube::Client,
    pub node: NodeRegistration,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub workers: PodWorkers,
    pub stats: Arc<StatsCollector>,
    pub images: Option<Arc<dyn ImageGc>>,
    pub thresholds: Thresholds,
    pub soft: SoftThresholds,
    /// The most a pod evicted for a soft threshold is given to stop
    /// (`--eviction-max-pod-grace-period`, seconds).
    pub max_pod_grace: i64,
    pub image_gc_high: u8,
    pub image_gc_low: u8,
    /// Images younger than this are never removed.
    pub image_min_age: Duration,
    pub interval: Duration,
}

/// A threshold to act on, with what was measured.
struct Met {
    threshold: Threshold,
    available: u64,
    capacity: u64,
    soft: bool,
}

struct LoopState {
    recorder: Recorder,
    last_image_gc: Option<Instant>,
    /// Pods evicted already (uid), so a pod whose status has not caught up
    /// is not picked again.
    evicted: HashSet<String>,
    pressure: Pressure,
    /// When each soft threshold was first seen met (cleared when not).
    soft_since: HashMap<Signal, Instant>,
}

impl EvictionManager {
    /// Sample and act every housekeeping interval until the process ends.
    pub async fn run(self) {
        let mut st = LoopState {
            recorder: Recorder::new(self.client.clone(), "kubelet")
                .with_host(self.node.node_name()),
            last_image_gc: None,
            evicted: HashSet::new(),
            pressure: Pressure::default(),
            soft_since: HashMap::new(),
        };
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Nothing to report to before the node is registered.
            while self.node.uid().is_none() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let snapshot = self.stats.collect().await;
            self.synchronize(&snapshot, &mut st).await;
        }
    }

    fn agent_dir(&self) -> &Path {
        &self.node.config().agent_dir
    }

    async fn synchronize(&self, snapshot: &Snapshot, st: &mut LoopState) {
        let mut obs = Signals::read(self.agent_dir());
        if st
            .last_image_gc
            .is_none_or(|t| t.elapsed() >= IMAGE_GC_PERIOD)
        {
            st.last_image_gc = Some(Instant::now());
            self.image_gc_by_usage(&obs, st).await;
            obs = Signals::read(self.agent_dir());
        }
        let pressure = self.node.observe_pressure(&obs);
        if pressure != st.pressure {
            info!(?pressure, "node pressure changed");
            st.pressure = pressure;
            // Report the condition now rather than at the next status tick.
            if let Err(e) = self.node.post_status().await {
                warn!("node status update failed: {e}");
            }
        }
        let mut met = self.met(&obs, st);
        if met.is_empty() {
            return;
        }
        // Disk pressure: reclaim node-level resources first.
        if met.iter().any(|m| m.threshold.signal.is_disk()) {
            let freed = self.prune_images(u64::MAX).await;
            if freed > 0 {
                info!(freed, "removed unused images under disk pressure");
                obs = Signals::read(self.agent_dir());
                met = self.met(&obs, st);
                if met.is_empty() {
                    return;
                }
            }
        }
        let Some(m) = met.into_iter().next() else {
            return;
        };
        self.evict_one(&m, snapshot, st).await;
    }

    /// The thresholds to act on now, most urgent first: hard ones met,
    /// and soft ones met for at least their grace period (a hard one
    /// wins over a soft one of the same signal).
    fn met(&self, obs: &Signals, st: &mut LoopState) -> Vec<Met> {
        let now = Instant::now();
        let soft_met = self.soft.thresholds.met(obs);
        st.soft_since
            .retain(|sig, _| soft_met.iter().any(|(t, _, _)| t.signal == *sig));
        let mut out: Vec<Met> = self
            .thresholds
            .met(obs)
            .into_iter()
            .map(|(threshold, available, capacity)| Met {
                threshold,
                available,
                capacity,
                soft: false,
            })
            .collect();
        for (threshold, available, capacity) in soft_met {
            let since = *st.soft_since.entry(threshold.signal).or_insert(now);
            let grace = self.soft.grace(threshold.signal);
            if now.saturating_duration_since(since) < grace
                || out.iter().any(|m| m.threshold.signal == threshold.signal)
            {
                continue;
            }
            out.push(Met {
                threshold,
                available,
                capacity,
                soft: true,
            });
        }
        out.sort_by_key(|m| (m.threshold.signal.order(), m.soft));
        out
    }

    /// How long a pod evicted for `m` is given to stop: nothing for a
    /// hard threshold; for a soft one its own grace period, at most
    /// `--eviction-max-pod-grace-period`.
    fn pod_grace(&self, m: &Met, pod: &Pod) -> Duration {
        if !m.soft {
            return EVICTION_GRACE;
        }
        let own = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(own.min(self.max_pod_grace).max(0) as u64)
    }

    /// The images the node must keep: those of its pods and containers.
    async fn images_in_use(&self) -> Option<HashSet<String>> {
        let mut in_use = HashSet::new();
        let pods = self.active_pods().await?;
        for p in &pods {
            let spec = p.spec.iter();
            for c in spec.flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            }) {
                if let Some(i) = &c.image {
                    in_use.insert(i.clone());
                }
            }
        }
        let sandboxes = self.runtime.list_sandboxes().await.ok()?;
        for sb in sandboxes {
            for c in self.runtime.list_containers(&sb.id).await.ok()? {
                if !c.image_id.is_empty() {
                    in_use.insert(c.image_id.clone());
                }
            }
        }
        Some(in_use)
    }

    /// Remove unused images until `bytes` are freed; the bytes freed.
    async fn prune_images(&self, bytes: u64) -> u64 {
        let Some(images) = self.images.clone() else {
            return 0;
        };
        // Without a complete picture of what is in use, remove nothing.
        let Some(in_use) = self.images_in_use().await else {
            return 0;
        };
        let min_age = self.image_min_age;
        match tokio::task::spawn_blocking(move || images.prune(&in_use, bytes, min_age)).await {
            Ok(Ok(freed)) => freed,
            Ok(Err(e)) => {
                warn!("image garbage collection: {e}");
                0
            }
            Err(e) => {
                warn!("image garbage collection: {e}");
                0
            }
        }
    }

    /// Upstream's image GC policy: above the high threshold of disk use,
    /// free down to the low one.
    async fn image_gc_by_usage(&self, obs: &Signals, st: &mut LoopState) {
        let (Some(total), Some(available)) = (obs.nodefs_total, obs.nodefs_available) else {
            return;
        };
        if total == 0 {
            return;
        }
        let used = total.saturating_sub(available);
        let percent = used as f64 * 100.0 / total as f64;
        if percent < f64::from(self.image_gc_high) {
            return;
        }
        let target = (total as f64 * f64::from(self.image_gc_low) / 100.0) as u64;
        let to_free = used.saturating_sub(target);
        let freed = self.prune_images(to_free).await;
        info!(
            usage_percent = percent as u64,
            high = self.image_gc_high,
            to_free,
            freed,
            "image garbage collection"
        );
        if freed < to_free {
            let msg = format!(
                "Failed to garbage collect required amount of images. Attempted to free {to_free} bytes, but only found {freed} bytes eligible to free."
            );
            st.recorder
                .publish(&self.node_ref(), WARNING, "FreeDiskSpaceFailed", &msg)
                .await;
        }
    }

    fn node_ref(&self) -> ObjectReference {
        let name = self.node.node_name().to_string();
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.clone()),
            uid: Some(name),
            ..Default::default()
        }
    }

    /// Pods bound to this node that are not finished or going away.
    async fn active_pods(&self) -> Option<Vec<Pod>> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", self.node.node_name()));
        match api.list(&lp).await {
            Ok(list) => Some(
                list.items
                    .into_iter()
                    .filter(|p| {
                        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                        !matches!(phase, Some("Succeeded") | Some("Failed"))
                            && p.metadata.deletion_timestamp.is_none()
                    })
                    .collect(),
            ),
            Err(e) => {
                warn!("eviction: cannot list pods: {e}");
                None
            }
        }
    }

    async fn evict_one(&self, met: &Met, snapshot: &Snapshot, st: &mut LoopState) {
        let (threshold, available, capacity) = (&met.threshold, met.available, met.capacity);
        let Some(pods) = self.active_pods().await else {
            return;
        };
        let pods: Vec<Pod> = pods
            .into_iter()
            .filter(|p| {
                p.metadata
                    .uid
                    .as_ref()
                    .is_some_and(|u| !st.evicted.contains(u))
            })
            .collect();
        let disk = threshold.signal.is_disk();
        let mut candidates = Vec::new();
        for p in &pods {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let usage = if disk {
                let dirs = [
                    self.node.config().pod_dir(&uid),
                    self.node.config().log_root.join(format!(
                        "{}_{}_{uid}",
                        p.metadata.namespace.as_deref().unwrap_or(""),
                        p.metadata.name.as_deref().unwrap_or("")
                    )),
                ];
                tokio::task::spawn_blocking(move || dirs.iter().map(|d| du(d)).sum())
                    .await
                    .unwrap_or(0)
            } else {
                snapshot.pod_memory(&uid)
            };
            let request = pod_request(p, if disk { "ephemeral-storage" } else { "memory" });
            candidates.push(Candidate {
                pod: p,
                usage,
                request,
            });
        }
        for c in rank(candidates) {
            let pod = c.pod;
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let usage = snapshot.container_memory(&uid);
            let msg = message(threshold, available, capacity, pod, &usage);
            if !self.workers.evict(&uid, &msg, self.pod_grace(met, pod)) {
                continue;
            }
            st.evicted.insert(uid);
            info!(
                pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or("")),
                signal = threshold.signal.name(),
                "evicting pod: {msg}"
            );
            let r = crate::controllers::events::reference(pod);
            st.recorder.publish(&r, WARNING, "Evicted", &msg).await;
            // One pod per pass: the next pass measures again.
            return;
        }
    }
}

/// Bytes used by the files under `dir` (not following symlinks, not
/// crossing into other filesystems such as mounted volumes).
pub fn du(dir: &Path) -> u64 {
    super::stats::dir_usage(dir).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obs(mem: u64, disk: u64, inodes: u64) -> Signals {
        Signals {
            memory_available: Some(mem),
            memory_capacity: Some(4 << 30),
            nodefs_total: Some(1000),
            nodefs_available: Some(disk),
            inodes_total: Some(1000),
            inodes_free: Some(inodes),
            pids_used: Some(10),
            pid_max: Some(1000),
        }
    }

    #[test]
    fn thresholds_parse_and_meet() {
        let t = Thresholds::parse(crate::config::DEFAULT_EVICTION_HARD).expect("defaults");
        assert_eq!(t.0.len(), 4);
        assert_eq!(
            t.get(Signal::MemoryAvailable).map(|t| t.value),
            Some(Value::Quantity(100 << 20))
        );
        assert_eq!(
            t.pressure(&obs(50 << 20, 99, 500)),
            Pressure {
                memory: true,
                disk: true,
                pid: false
            }
        );
        assert_eq!(t.pressure(&obs(1 << 30, 500, 500)), Pressure::default());
        // imagefs.available<15%: 140 of 1000 is disk pressure too.
        assert!(t.pressure(&obs(1 << 30, 140, 500)).disk);
        // Inodes.
        assert!(t.pressure(&obs(1 << 30, 500, 10)).disk);
        let met = t.met(&obs(50 << 20, 99, 500));
        assert_eq!(met[0].0.signal, Signal::MemoryAvailable);
        assert_eq!(t.reserve(Signal::MemoryAvailable, 4 << 30), 100 << 20);
        assert_eq!(t.reserve(Signal::NodeFsAvailable, 1000), 100);

        let only = Thresholds::parse("memory.available<1000Ti").expect("parse");
        assert!(only.pressure(&obs(1 << 30, 0, 0)).memory);
        assert!(
            !only.pressure(&obs(1 << 30, 0, 0)).disk,
            "nodefs not watched"
        );
        assert_eq!(Thresholds::parse("").expect("empty"), Thresholds::default());
        assert_eq!(
            Thresholds::parse("pid.available<10%")
                .expect("pid")
                .pressure(&Signals {
                    pids_used: Some(950),
                    pid_max: Some(1000),
                    ..Default::default()
                }),
            Pressure {
                pid: true,
                ..Default::default()
            }
        );
        for bad in [
            "memory.available>1Gi",
            "memory.free<1Gi",
            "memory.available<lots",
            "nodefs.available<150%",
            "memory.available<-1Gi",
            "memory.available<1Gi,memory.available<2Gi",
        ] {
            assert!(Thresholds::parse(bad).is_err(), "{bad} accepted");
        }
    }

    fn pod(name: &str, created: &str, requests: Option<&str>, limits: Option<&str>) -> Pod {
        let mut resources = json!({});
        if let Some(r) = requests {
            resources["requests"] = json!({"memory": r, "cpu": "100m"});
        }
        if let Some(l) = limits {
            resources["limits"] = json!({"memory": l, "cpu": "100m"});
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": name, "creationTimestamp": created},
            "spec": {"containers": [{"name": "c", "resources": resources}]},
        }))
        .expect("pod")
    }

    #[test]
    fn best_effort_goes_first_then_the_largest_excess() {
        let g = pod("g", "2025-01-01T00:00:00Z", Some("64Mi"), Some("64Mi"));
        let b_old = pod("b-old", "2025-01-01T00:00:00Z", None, None);
        let b_new = pod("b-new", "2025-01-02T00:00:00Z", None, None);
        let u = pod("u", "2025-01-03T00:00:00Z", Some("1Mi"), None);
        let names = |c: Vec<Candidate>| -> Vec<String> {
            c.iter()
                .map(|c| c.pod.metadata.name.clone().unwrap_or_default())
                .collect()
        };
        // Same (tiny) usage: the requests decide; BestEffort ties break
        // newest first.
        let mk = |p, usage| Candidate {
            pod: p,
            usage,
            request: pod_request(p, "memory"),
        };
        let ranked = rank(vec![
            mk(&g, 1 << 20),
            mk(&b_old, 1 << 20),
            mk(&b_new, 1 << 20),
            mk(&u, 1 << 20),
        ]);
        assert_eq!(names(ranked), ["b-new", "b-old", "u", "g"]);
        // A Burstable pod far above its request goes before a BestEffort
        // pod using little.
        let ranked = rank(vec![mk(&b_old, 1 << 20), mk(&u, 500 << 20), mk(&g, 0)]);
        assert_eq!(names(ranked), ["u", "b-old", "g"]);
        // Critical pods are never candidates.
        let mut crit = pod("crit", "2025-01-01T00:00:00Z", None, None);
        if let Some(s) = crit.spec.as_mut() {
            s.priority_class_name = Some("system-node-critical".into());
        }
        assert!(rank(vec![mk(&crit, 1 << 30)]).is_empty());
    }

    #[test]
    fn soft_thresholds_need_grace_periods() {
        let soft = SoftThresholds::parse(
            "memory.available<1Gi,nodefs.available<20%",
            "memory.available=1m30s,nodefs.available=2m",
        )
        .expect("soft");
        assert_eq!(soft.grace(Signal::MemoryAvailable), Duration::from_secs(90));
        assert_eq!(
            soft.grace(Signal::NodeFsAvailable),
            Duration::from_secs(120)
        );
        assert_eq!(
            SoftThresholds::parse("memory.available<1Gi", "nodefs.available=1m"),
            Err(
                "grace period must be specified for the soft eviction threshold memory.available"
                    .into()
            )
        );
        assert!(parse_grace_periods("memory.available").is_err());
        assert!(parse_grace_periods("memory.available=1m,memory.available=2m").is_err());
        assert_eq!(SoftThresholds::parse("", ""), Ok(SoftThresholds::default()));
        // A soft threshold met counts for the condition at once.
        let p = observed_pressure(&Thresholds::default(), &soft, &obs(512 << 20, 500, 500));
        assert!(p.memory && !p.disk);
    }

    #[test]
    fn pressure_outlives_its_signal_for_the_transition_period() {
        let mut t = PressureTracker::default();
        let period = Duration::from_secs(300);
        let t0 = Instant::now();
        let on = Pressure {
            disk: true,
            ..Default::default()
        };
        assert_eq!(t.observe(on, t0, period), on);
        assert_eq!(
            t.observe(Pressure::default(), t0 + Duration::from_secs(299), period),
            on
        );
        assert_eq!(
            t.observe(Pressure::default(), t0 + Duration::from_secs(300), period),
            Pressure::default()
        );
        // Seen again: held again from then.
        assert_eq!(t.observe(on, t0 + Duration::from_secs(400), period), on);
        assert_eq!(
            t.observe(Pressure::default(), t0 + Duration::from_secs(500), period),
            on
        );
    }

    #[test]
    fn admission_under_pressure_as_upstream() {
        let mem = Pressure {
            memory: true,
            ..Default::default()
        };
        let disk = Pressure {
            disk: true,
            ..Default::default()
        };
        let be = pod("be", "2025-01-01T00:00:00Z", None, None);
        let burstable = pod("b", "2025-01-01T00:00:00Z", Some("1Mi"), None);
        assert!(admits(Pressure::default(), &be));
        assert!(!admits(mem, &be));
        assert!(admits(mem, &burstable));
        assert!(!admits(disk, &burstable));
        assert!(!admits(mem.or(disk), &burstable));
        let mut tolerating = be.clone();
        if let Some(s) = tolerating.spec.as_mut() {
            s.tolerations = Some(vec![serde_json::from_value(json!({
                "key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"
            })).expect("toleration")]);
        }
        assert!(admits(mem, &tolerating));
        assert!(!admits(disk, &tolerating));
        let mut crit = be.clone();
        if let Some(s) = crit.spec.as_mut() {
            s.priority_class_name = Some("system-node-critical".into());
        }
        assert!(admits(mem.or(disk), &crit));
        assert_eq!(
            admission_message(mem),
            "The node had condition: [MemoryPressure]. "
        );
        assert_eq!(
            admission_message(mem.or(disk)),
            "The node had condition: [MemoryPressure DiskPressure]. "
        );
    }

    #[test]
    fn messages_as_upstream() {
        let t = Thresholds::parse("memory.available<1000Ti,nodefs.available<10%").expect("t");
        let p = pod("b", "2025-01-01T00:00:00Z", None, None);
        let usage: HashMap<String, u64> = [("c".to_string(), 2 << 20)].into();
        let m = message(
            t.get(Signal::MemoryAvailable).expect("mem"),
            3 << 30,
            4 << 30,
            &p,
            &usage,
        );
        assert_eq!(
            m,
            "The node was low on resource: memory. Threshold quantity: 1000Ti, available: 3Gi. Container c was using 2Mi, request is 0, has larger consumption of memory. "
        );
        let m = message(
            t.get(Signal::NodeFsAvailable).expect("fs"),
            50 << 20,
            1 << 30,
            &p,
            &usage,
        );
        assert_eq!(
            m,
            "The node was low on resource: ephemeral-storage. Threshold quantity: 107374182, available: 50Mi. "
        );
    }
}
