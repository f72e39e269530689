//! Pod workers: one task per pod bound to this node, as the kubelet's
//! podWorkers + SyncPod. A worker wakes on a change of its pod (watch), on
//! a container exit (runtime events), on a back-off expiring, and every
//! resync period, and then brings the node in line with the pod: sandbox
//! and network, volumes, init containers in order, sidecars, app
//! containers, restarts with back-off, and finally a status patch when
//! something changed. Deleted pods are stopped gracefully and the agent
//! finishes the deletion in the API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, ObjectReference, Pod, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};

use super::registration::NodeRegistration;
use super::status::{PodFacts, is_sidecar, pod_status};
use super::{
    AgentConfig, ImagePullError, ResolvedImage, Services, command, envvars, qos, security,
};
use crate::controllers::events::{NORMAL, Recorder, WARNING};
use crate::node::hooks::{HookKind, HookRunner};
use crate::node::probes::{ContainerProbes, ProbeKind, ProbeMessage, ProbeTarget, Prober};
use crate::runtime::cri::{self, ContainerConfig, ContainerId, SandboxConfig, SandboxId};

pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The prefix of containerStatuses[].containerID.
pub const CONTAINER_ID_SCHEME: &str = "rk3s://";

/// The kubelet's container restart back-off: 10 s doubling to 5 min,
/// forgotten after a container ran for 10 min.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often a quiet worker checks its pod anyway.
const RESYNC: Duration = Duration::from_secs(10);
/// Default terminationGracePeriodSeconds.
const DEFAULT_GRACE: i64 = 30;

/// A back-off timer: the next delay and when the current one ends.
#[derive(Clone, Copy, Debug, Default)]
pub struct Backoff {
    pub delay: Duration,
    pub until: Option<SystemTime>,
}

impl Backoff {
    /// Whether `since` (when the failure happened) is still in back-off.
    pub fn in_backoff(&self, now: SystemTime) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// Record a failure at `at`: the next attempt may come after the
    /// current delay, and the delay after that doubles (first retry at once).
    pub fn next(&mut self, at: SystemTime) {
        self.until = Some(at + self.delay);
        self.delay = if self.delay.is_zero() {
            BACKOFF_INITIAL
        } else {
            (self.delay * 2).min(BACKOFF_MAX)
        };
    }

    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.until.and_then(|u| u.duration_since(now).ok())
    }
}

/// What the worker remembers about one container between syncs.
#[derive(Clone, Debug, Default)]
struct ContainerMemory {
    /// Why it is not running when the runtime has nothing to say
    /// (ErrImagePull, CreateContainerConfigError, CrashLoopBackOff...).
    waiting: Option<(String, String)>,
    restart: Backoff,
    image: Backoff,
    /// The runtime container whose exit the restart back-off already counted.
    counted_exit: Option<ContainerId>,
    /// The start of this container failed with this message, at this time.
    start_error: Option<(ContainerId, String, SystemTime)>,
    /// Restarts that never produced a runtime container.
    extra_attempts: u32,
}

/// The newest and the previous runtime container of one spec container.
#[derive(Clone, Debug, Default)]
struct Observed {
    current: Option<cri::ContainerStatus>,
    previous: Option<cri::ContainerStatus>,
    older: Vec<ContainerId>,
}

fn observe(list: Vec<cri::ContainerStatus>) -> HashMap<String, Observed> {
    let mut by_name: HashMap<String, Vec<cri::ContainerStatus>> = HashMap::new();
    for c in list {
        by_name.entry(c.name.clone()).or_default().push(c);
    }
    by_name
        .into_iter()
        .map(|(name, mut v)| {
            v.sort_by(|a, b| {
                b.attempt
                    .cmp(&a.attempt)
                    .then(b.created_at.cmp(&a.created_at))
            });
            let mut it = v.into_iter();
            let current = it.next();
            let previous = it.next();
            let older = it.map(|c| c.id).collect();
            (
                name,
                Observed {
                    current,
                    previous,
                    older,
                },
            )
        })
        .collect()
}

fn time(t: SystemTime) -> Time {
    let ts = jiff::Timestamp::try_from(t).unwrap_or_else(|_| jiff::Timestamp::now());
    // The API keeps second precision for these timestamps.
    Time(jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

fn terminated(c: &cri::ContainerStatus, start_error: Option<&str>) -> ContainerStateTerminated {
    let code = c
        .exit_code
        .unwrap_or(if start_error.is_some() { 128 } else { 0 });
    let reason = match (&c.reason, start_error) {
        (Some(r), _) => r.clone(),
        (None, Some(_)) => "StartError".into(),
        (None, None) if code == 0 => "Completed".into(),
        (None, None) => "Error".into(),
    };
    ContainerStateTerminated {
        exit_code: code,
        reason: Some(reason),
        message: c
            .message
            .clone()
            .or_else(|| start_error.map(str::to_string)),
        started_at: c.started_at.map(time),
        finished_at: c.finished_at.map(time),
        container_id: Some(format!("{CONTAINER_ID_SCHEME}{}", c.id)),
        signal: None,
    }
}

fn waiting(reason: &str, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }),
        ..Default::default()
    }
}

/// Whether an exited container should run again, per restart policy.
fn should_restart(c: &Container, init: bool, policy: &str, exit_code: i32) -> bool {
    if init && is_sidecar(c) {
        return true;
    }
    if init {
        return exit_code != 0 && policy != "Never";
    }
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// A volume mounted for a pod: its name, where it is on the host, and
/// the claim it comes from (PersistentVolumeClaim volumes).
#[derive(Clone, Debug)]
pub struct PodVolume {
    pub name: String,
    pub path: PathBuf,
    pub claim: Option<String>,
}

/// What one sync decided about the pod's future.
enum Next {
    After(Duration),
    Done,
}

struct Shared {
    client: kube::Client,
    config: Arc<AgentConfig>,
    services: Services,
    node: NodeRegistration,
    recorder: Recorder,
    prober: Prober,
    hooks: HookRunner,
    workers: Mutex<HashMap<String, WorkerHandle>>,
    /// Pod uid -> sandbox found in the runtime at start (re-adoption).
    adopted: Mutex<HashMap<String, SandboxId>>,
    /// Sandbox -> pod uid, to route runtime events.
    owners: Mutex<HashMap<SandboxId, String>>,
    /// Pod uid -> its network namespace, for port-forward.
    netns: Mutex<HashMap<String, PathBuf>>,
    /// Pod uid -> its mounted volumes, for volume stats.
    volumes: Mutex<HashMap<String, Vec<PodVolume>>>,
    /// Pod uid -> the message of its eviction (the eviction manager's)
    /// and the time its containers get to stop.
    evictions: Mutex<HashMap<String, (String, Duration)>>,
}

struct WorkerHandle {
    pod: watch::Sender<Option<Pod>>,
    wake: Arc<Notify>,
}

/// Every pod worker of the node; cheap to clone.
#[derive(Clone)]
pub struct PodWorkers {
    shared: Arc<Shared>,
}

impl PodWorkers {
    pub fn new(
        client: kube::Client,
        config: Arc<AgentConfig>,
        services: Services,
        node: NodeRegistration,
    ) -> PodWorkers {
        let recorder = Recorder::new(client.clone(), "kubelet").with_host(&config.node_name);
        let prober = Prober::new(services.runtime.clone());
        let hooks = HookRunner::new(services.runtime.clone());
        PodWorkers {
            shared: Arc::new(Shared {
                client,
                config,
                services,
                node,
                recorder,
                prober,
                hooks,
                workers: Mutex::new(HashMap::new()),
                adopted: Mutex::new(HashMap::new()),
                owners: Mutex::new(HashMap::new()),
                netns: Mutex::new(HashMap::new()),
                evictions: Mutex::new(HashMap::new()),
                volumes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Evict a pod: its worker stops its containers (killed after
    /// `grace`) and reports it Failed with reason Evicted and `message`.
    /// False if no worker runs it.
    pub fn evict(&self, pod_uid: &str, message: &str, grace: Duration) -> bool {
        let workers = self.shared.workers.lock();
        let Some(w) = workers.get(pod_uid) else {
            return false;
        };
        self.shared
            .evictions
            .lock()
            .insert(pod_uid.to_string(), (message.to_string(), grace));
        w.wake.notify_one();
        true
    }

    /// The sandbox of a pod on this node, if it has one.
    pub fn sandbox_of(&self, pod_uid: &str) -> Option<SandboxId> {
        self.shared
            .owners
            .lock()
            .iter()
            .find(|(_, uid)| *uid == pod_uid)
            .map(|(id, _)| id.clone())
    }

    /// The volumes mounted for a pod on this node.
    pub fn pod_volumes(&self, pod_uid: &str) -> Vec<PodVolume> {
        self.shared
            .volumes
            .lock()
            .get(pod_uid)
            .cloned()
            .unwrap_or_default()
    }

    /// The network namespace of a pod on this node (None for hostNetwork).
    pub fn netns_of(&self, pod_uid: &str) -> Option<PathBuf> {
        self.shared.netns.lock().get(pod_uid).cloned()
    }

    /// Adopt what the runtime already runs, then follow the pods bound to
    /// this node and the runtime's exit events until the process ends.
    pub async fn run(self) {
        self.adopt().await;
        let me = self.clone();
        tokio::spawn(async move { me.runtime_events().await });
        self.watch_pods().await;
    }

    async fn adopt(&self) {
        match self.shared.services.runtime.list_sandboxes().await {
            Ok(list) => {
                let mut adopted = self.shared.adopted.lock();
                let mut owners = self.shared.owners.lock();
                for sb in list {
                    if let Some(uid) = sb.labels.get(LABEL_POD_UID) {
                        info!(sandbox = %sb.id, pod_uid = %uid, "re-adopting sandbox");
                        adopted.insert(uid.clone(), sb.id.clone());
                        owners.insert(sb.id, uid.clone());
                    }
                }
            }
            Err(e) => warn!("cannot list sandboxes: {e}"),
        }
    }

    async fn runtime_events(self) {
        let mut rx = self.shared.services.runtime.subscribe();
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let uid = ev
                        .status
                        .labels
                        .get(LABEL_POD_UID)
                        .cloned()
                        .or_else(|| self.shared.owners.lock().get(&ev.sandbox_id).cloned());
                    if let Some(uid) = uid
                        && let Some(w) = self.shared.workers.lock().get(&uid)
                    {
                        w.wake.notify_one();
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Missed exits: wake everyone to look.
                    for w in self.shared.workers.lock().values() {
                        w.wake.notify_one();
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn watch_pods(self) {
        let api: Api<Pod> = Api::all(self.shared.client.clone());
        let cfg = watcher::Config::default()
            .fields(&format!("spec.nodeName={}", self.shared.config.node_name));
        let mut stream = watcher(api, cfg).boxed();
        let mut seen: Option<HashSet<String>> = None;
        let mut first_list_done = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(p)) => self.dispatch(p, false),
                Ok(watcher::Event::InitApply(p)) => {
                    if let (Some(s), Some(uid)) = (seen.as_mut(), p.metadata.uid.as_ref()) {
                        s.insert(uid.clone());
                    }
                    self.dispatch(p, false);
                }
                Ok(watcher::Event::Delete(p)) => self.dispatch(p, true),
                Ok(watcher::Event::Init) => seen = Some(HashSet::new()),
                Ok(watcher::Event::InitDone) => {
                    let Some(seen) = seen.take() else { continue };
                    // Pods that went away while we were not watching.
                    let gone: Vec<String> = self
                        .shared
                        .workers
                        .lock()
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        if let Some(w) = self.shared.workers.lock().get(&uid) {
                            let _ = w.pod.send(None);
                        }
                    }
                    if !first_list_done {
                        first_list_done = true;
                        self.remove_orphans(&seen).await;
                    }
                }
                Err(e) => {
                    debug!("pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Sandboxes left from pods that no longer exist are torn down.
    async fn remove_orphans(&self, live: &HashSet<String>) {
        let orphans: Vec<(String, SandboxId)> = self
            .shared
            .adopted
            .lock()
            .iter()
            .filter(|(uid, _)| !live.contains(*uid))
            .map(|(u, s)| (u.clone(), s.clone()))
            .collect();
        for (uid, sandbox) in orphans {
            info!(pod_uid = %uid, %sandbox, "removing the sandbox of a pod that is gone");
            let s = &self.shared.services;
            if let Err(e) = s.runtime.stop_sandbox(&sandbox).await {
                debug!("stop orphan sandbox: {e}");
            }
            if let Err(e) = s.network.teardown(&uid).await {
                debug!("orphan network teardown: {e}");
            }
            s.volumes.unmount_pod_volumes(&uid).await;
            if let Err(e) = s.runtime.remove_sandbox(&sandbox).await {
                debug!("remove orphan sandbox: {e}");
            }
            self.shared.adopted.lock().remove(&uid);
            self.shared.owners.lock().remove(&sandbox);
        }
    }

    fn dispatch(&self, pod: Pod, deleted: bool) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut workers = self.shared.workers.lock();
        if let Some(w) = workers.get(&uid) {
            let update = if deleted { None } else { Some(pod.clone()) };
            if w.pod.send(update).is_ok() {
                return;
            }
            workers.remove(&uid);
        }
        if deleted {
            // Nothing runs for it here (or its worker already finished);
            // an adopted sandbox is handled by the orphan sweep.
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let wake = Arc::new(Notify::new());
        workers.insert(
            uid.clone(),
            WorkerHandle {
                pod: tx,
                wake: wake.clone(),
            },
        );
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let (probe_tx, probe_rx) = mpsc::channel(64);
            let mut w = Worker::new(shared.clone(), uid.clone(), probe_tx);
            w.run(rx, wake, probe_rx).await;
            let mut workers = shared.workers.lock();
            if workers.get(&uid).is_some_and(|h| h.pod.is_closed()) {
                workers.remove(&uid);
            }
        });
    }
}

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    sandbox: Option<SandboxId>,
    pod_ip: Option<String>,
    netns: Option<PathBuf>,
    volumes: Option<HashMap<String, PathBuf>>,
    containers: HashMap<String, ContainerMemory>,
    start_time: Option<Time>,
    /// The sandbox was stopped because the pod reached a terminal phase.
    finished: bool,
    /// Sandbox creation back-off.
    sandbox_backoff: Backoff,
    /// Last pod from the API.
    last_pod: Option<Pod>,
    /// Probe workers of running containers, by container id.
    probes: HashMap<ContainerId, ContainerProbes>,
    probe_tx: mpsc::Sender<ProbeMessage>,
    /// Readiness and startup results, by container id.
    ready: HashMap<ContainerId, bool>,
    started: HashMap<ContainerId, bool>,
    /// Passed (or skipped) node-pressure admission.
    admitted: bool,
}

impl Worker {
    fn new(shared: Arc<Shared>, uid: String, probe_tx: mpsc::Sender<ProbeMessage>) -> Worker {
        let sandbox = shared.adopted.lock().get(&uid).cloned();
        Worker {
            probes: HashMap::new(),
            probe_tx,
            ready: HashMap::new(),
            started: HashMap::new(),
            admitted: false,
            shared,
            uid,
            sandbox,
            pod_ip: None,
            netns: None,
            volumes: None,
            containers: HashMap::new(),
            start_time: None,
            finished: false,
            sandbox_backoff: Backoff::default(),
            last_pod: None,
        }
    }

    async fn run(
        &mut self,
        mut rx: watch::Receiver<Option<Pod>>,
        wake: Arc<Notify>,
        mut probe_rx: mpsc::Receiver<ProbeMessage>,
    ) {
        loop {
            let update = rx.borrow_and_update().clone();
            let next = match update {
                Some(pod) => {
                    self.last_pod = Some(pod.clone());
                    self.sync(pod).await
                }
                None => {
                    // Gone from the API (force deletion): stop at once.
                    if let Some(pod) = self.last_pod.clone() {
                        self.terminate(&pod, 0, false).await;
                    }
                    Next::Done
                }
            };
            let delay = match next {
                Next::Done => {
                    self.probes.clear();
                    self.shared.evictions.lock().remove(&self.uid);
                    self.shared.volumes.lock().remove(&self.uid);
                    return;
                }
                Next::After(d) => d,
            };
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = wake.notified() => {}
                _ = tokio::time::sleep(delay) => {}
                Some(m) = probe_rx.recv() => {
                    self.on_probe(m).await;
                    // Take whatever else arrived, then sync once.
                    while let Ok(m) = probe_rx.try_recv() {
                        self.on_probe(m).await;
                    }
                }
            }
        }
    }

    /// A probe's verdict: readiness into the Ready condition; a failed
    /// liveness or startup probe kills the container (it restarts per
    /// policy); events as the kubelet's.
    async fn on_probe(&mut self, m: ProbeMessage) {
        let Some(pod) = self.last_pod.clone() else {
            return;
        };
        match m {
            ProbeMessage::Event {
                container,
                type_,
                reason,
                message,
                ..
            } => {
                let init = self.is_init(&pod, &container);
                self.event(&pod, Some((&container, init)), type_, reason, &message)
                    .await;
            }
            ProbeMessage::Result {
                container_id,
                container,
                kind,
                success,
                termination_grace_period_seconds,
            } => match (kind, success) {
                (ProbeKind::Readiness, ok) => {
                    self.ready.insert(container_id, ok);
                }
                (ProbeKind::Startup, true) => {
                    self.started.insert(container_id, true);
                }
                (kind, false) => {
                    let init = self.is_init(&pod, &container);
                    let what = if kind == ProbeKind::Liveness {
                        "liveness"
                    } else {
                        "startup"
                    };
                    self.event(
                        &pod,
                        Some((&container, init)),
                        NORMAL,
                        "Killing",
                        &format!("Container {container} failed {what} probe, will be restarted"),
                    )
                    .await;
                    self.probes.remove(&container_id);
                    let grace = termination_grace_period_seconds
                        .or_else(|| {
                            pod.spec
                                .as_ref()
                                .and_then(|s| s.termination_grace_period_seconds)
                        })
                        .unwrap_or(DEFAULT_GRACE);
                    if let Some(c) = self.spec_container(&pod, &container)
                        && let Some(pre) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
                    {
                        self.run_hook(&pod, &c, HookKind::PreStop, pre, &container_id, grace)
                            .await;
                    }
                    let rt = &self.shared.services.runtime;
                    if let Err(e) = rt
                        .stop_container(&container_id, Duration::from_secs(grace.max(0) as u64))
                        .await
                    {
                        debug!(container = %container_id, "stop after failed probe: {e}");
                    }
                }
                (ProbeKind::Liveness, true) => {}
            },
        }
    }

    fn is_init(&self, pod: &Pod, name: &str) -> bool {
        pod.spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|v| v.iter().any(|c| c.name == name))
    }

    fn spec_container(&self, pod: &Pod, name: &str) -> Option<Container> {
        let spec = pod.spec.as_ref()?;
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .cloned()
    }

    async fn run_hook(
        &self,
        pod: &Pod,
        c: &Container,
        kind: HookKind,
        handler: &k8s_openapi::api::core::v1::LifecycleHandler,
        id: &ContainerId,
        limit_secs: i64,
    ) -> bool {
        let limit = Duration::from_secs(limit_secs.max(1) as u64);
        match self
            .shared
            .hooks
            .run(kind, handler, pod, c, id, self.pod_ip.as_deref(), limit)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                let init = self.is_init(pod, &c.name);
                self.event(
                    pod,
                    Some((&c.name, init)),
                    WARNING,
                    e.reason(),
                    &e.to_string(),
                )
                .await;
                false
            }
        }
    }

    /// Probe workers follow the running containers.
    fn sync_probes(&mut self, pod: &Pod, observed: &HashMap<String, Observed>) {
        let running: HashMap<ContainerId, String> = observed
            .values()
            .filter_map(|o| o.current.as_ref())
            .filter(|c| c.state == cri::ContainerState::Running)
            .map(|c| (c.id.clone(), c.name.clone()))
            .collect();
        self.probes.retain(|id, _| running.contains_key(id));
        self.ready.retain(|id, _| running.contains_key(id));
        self.started.retain(|id, _| running.contains_key(id));
        for (id, name) in running {
            if self.probes.contains_key(&id) {
                continue;
            }
            let Some(c) = self.spec_container(pod, &name) else {
                continue;
            };
            if c.liveness_probe.is_none()
                && c.readiness_probe.is_none()
                && c.startup_probe.is_none()
            {
                continue;
            }
            let started_at = observed
                .get(&name)
                .and_then(|o| o.current.as_ref())
                .and_then(|c| c.started_at)
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|ago| {
                    tokio::time::Instant::now()
                        .checked_sub(ago)
                        .unwrap_or_else(tokio::time::Instant::now)
                })
                .unwrap_or_else(tokio::time::Instant::now);
            let target = ProbeTarget {
                container_id: id.clone(),
                pod_ip: self.pod_ip.clone(),
                container: c,
            };
            let probes = ContainerProbes::start(
                self.shared.prober.clone(),
                target,
                started_at,
                self.probe_tx.clone(),
            );
            self.probes.insert(id, probes);
        }
    }

    fn key(pod: &Pod) -> String {
        format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        )
    }

    fn reference(pod: &Pod, container: Option<(&str, bool, usize)>) -> ObjectReference {
        let mut r = crate::controllers::events::reference(pod);
        if let Some((name, init, _)) = container {
            r.field_path = Some(if init {
                format!("spec.initContainers{{{name}}}")
            } else {
                format!("spec.containers{{{name}}}")
            });
        }
        r
    }

    async fn event(
        &self,
        pod: &Pod,
        container: Option<(&str, bool)>,
        type_: &str,
        reason: &str,
        msg: &str,
    ) {
        let r = Self::reference(pod, container.map(|(n, i)| (n, i, 0)));
        self.shared.recorder.publish(&r, type_, reason, msg).await;
    }

    async fn sync(&mut self, pod: Pod) -> Next {
        if self.start_time.is_none() {
            self.start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .or_else(|| Some(Time(jiff::Timestamp::now())));
        }
        if pod.metadata.deletion_timestamp.is_some() {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| {
                    pod.spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
                .unwrap_or(DEFAULT_GRACE);
            self.terminate(&pod, grace, true).await;
            return Next::Done;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let eviction = self.shared.evictions.lock().get(&self.uid).cloned();
        if let Some((message, grace)) = eviction
            && !matches!(phase, Some("Succeeded") | Some("Failed"))
        {
            self.evict(&pod, message, grace).await;
            return Next::After(RESYNC * 6);
        }
        if matches!(phase, Some("Succeeded") | Some("Failed")) {
            if !self.finished {
                self.finish(&pod).await;
            }
            return Next::After(RESYNC * 6);
        }
        if !self.admitted {
            // Only a pod nothing ran for yet is admitted (or refused): one
            // found running after a restart was admitted before.
            let new = self.sandbox.is_none()
                && pod.status.as_ref().is_none_or(|s| s.start_time.is_none());
            let pressure = self.shared.node.pressure();
            if new && !super::eviction::admits(pressure, &pod) {
                self.reject(&pod, super::eviction::admission_message(pressure))
                    .await;
                return Next::After(RESYNC * 6);
            }
            self.admitted = true;
        }
        let mut wake_in = RESYNC;
        let mut facts = PodFacts {
            start_time: self.start_time.clone(),
            host_ip: self.shared.node.node_ip().map(|ip| ip.to_string()),
            ..Default::default()
        };
        match self.ensure_sandbox(&pod).await {
            Ok(()) => {
                facts.sandbox_ready = true;
                facts.pod_ip = self.pod_ip.clone();
            }
            Err(d) => {
                wake_in = wake_in.min(d);
            }
        }
        if facts.sandbox_ready && self.volumes.is_none() {
            match self.shared.services.volumes.mount_pod_volumes(&pod).await {
                Ok(v) => {
                    let claims: HashMap<&str, &str> = pod
                        .spec
                        .iter()
                        .flat_map(|s| s.volumes.iter().flatten())
                        .filter_map(|v| {
                            let c = v.persistent_volume_claim.as_ref()?;
                            Some((v.name.as_str(), c.claim_name.as_str()))
                        })
                        .collect();
                    let list = v
                        .iter()
                        .map(|(name, path)| PodVolume {
                            name: name.clone(),
                            path: path.clone(),
                            claim: claims.get(name.as_str()).map(|c| c.to_string()),
                        })
                        .collect();
                    self.shared.volumes.lock().insert(self.uid.clone(), list);
                    self.volumes = Some(v)
                }
                Err(msg) => {
                    self.event(&pod, None, WARNING, "FailedMount", &msg).await;
                    wake_in = wake_in.min(Duration::from_secs(2));
                }
            }
        }
        let observed = match &self.sandbox {
            Some(sb) => match self.shared.services.runtime.list_containers(sb).await {
                Ok(list) => observe(self.normalize(list)),
                Err(e) => {
                    debug!("list containers: {e}");
                    HashMap::new()
                }
            },
            None => HashMap::new(),
        };
        if facts.sandbox_ready && self.volumes.is_some() {
            let d = self.run_containers(&pod, &observed, &facts).await;
            wake_in = wake_in.min(d);
        }
        // Look again after starting things, so the status shows them.
        let observed = match &self.sandbox {
            Some(sb) => match self.shared.services.runtime.list_containers(sb).await {
                Ok(list) => observe(self.normalize(list)),
                Err(_) => observed,
            },
            None => observed,
        };
        self.gc_containers(&observed).await;
        self.sync_probes(&pod, &observed);
        let status = self.report(&pod, &observed, &facts).await;
        if matches!(status.as_deref(), Some("Succeeded") | Some("Failed")) {
            self.finish(&pod).await;
        }
        Next::After(wake_in.max(Duration::from_millis(100)))
    }

    /// A container whose start failed is, as upstream reports it, exited
    /// with code 128 (StartError), whatever state the runtime left it in.
    /// One whose end nobody saw (its shim died) is, as the kubelet reports
    /// it, terminated with 137 and ContainerStatusUnknown: never a success.
    fn normalize(&self, mut list: Vec<cri::ContainerStatus>) -> Vec<cri::ContainerStatus> {
        for c in &mut list {
            if c.state == cri::ContainerState::Unknown && c.exit_code.is_none() {
                c.exit_code = Some(137);
                c.reason = Some("ContainerStatusUnknown".into());
                c.message = Some(
                    "The container could not be located when its runtime shim went away".into(),
                );
            }
            let Some((_, msg, at)) = self
                .containers
                .get(&c.name)
                .and_then(|m| m.start_error.as_ref())
                .filter(|(id, _, _)| *id == c.id)
            else {
                continue;
            };
            if c.state != cri::ContainerState::Running {
                c.state = cri::ContainerState::Exited;
                c.exit_code = Some(c.exit_code.filter(|e| *e != 0).unwrap_or(128));
                c.reason = Some("StartError".into());
                c.message = Some(msg.clone());
                c.finished_at = c.finished_at.or(Some(*at));
                // Never started: containerd reports the epoch.
                c.started_at = c.started_at.or(Some(SystemTime::UNIX_EPOCH));
            }
        }
        list
    }

    /// Keep the current and previous container of each name; remove older.
    async fn gc_containers(&self, observed: &HashMap<String, Observed>) {
        for o in observed.values() {
            for id in &o.older {
                if let Err(e) = self.shared.services.runtime.remove_container(id).await {
                    debug!(container = %id, "remove old container: {e}");
                }
            }
        }
    }

    /// Make the sandbox (network first) unless it exists; on failure the
    /// delay before the next try.
    async fn ensure_sandbox(&mut self, pod: &Pod) -> Result<(), Duration> {
        let now = SystemTime::now();
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if self.sandbox.is_some() && (self.pod_ip.is_some() || host_network) {
            return Ok(());
        }
        if let Some(rem) = self.sandbox_backoff.remaining(now) {
            return Err(rem);
        }
        let svc = &self.shared.services;
        // Network (also re-found for an adopted sandbox: IPs persist).
        if host_network {
            self.pod_ip = self.shared.node.node_ip().map(|ip| ip.to_string());
            self.netns = None;
        } else {
            match svc.network.setup(&self.uid, &ns, &name).await {
                Ok(n) => {
                    self.pod_ip = Some(n.ip.to_string());
                    self.shared
                        .netns
                        .lock()
                        .insert(self.uid.clone(), n.netns_path.clone());
                    self.netns = Some(n.netns_path);
                }
                Err(e) => {
                    self.sandbox_backoff.next(now);
                    let msg = format!(
                        "Failed to create pod sandbox: failed to set up network for sandbox: {e}"
                    );
                    self.event(pod, None, WARNING, "FailedCreatePodSandBox", &msg)
                        .await;
                    return Err(self.sandbox_backoff.delay.max(Duration::from_secs(1)));
                }
            }
        }
        if self.sandbox.is_some() {
            return Ok(());
        }
        let config = self.sandbox_config(pod, host_network);
        match svc.runtime.run_sandbox(&config).await {
            Ok(id) => {
                info!(pod = %Self::key(pod), sandbox = %id, "sandbox created");
                self.shared
                    .owners
                    .lock()
                    .insert(id.clone(), self.uid.clone());
                self.sandbox = Some(id);
                self.sandbox_backoff = Backoff::default();
                Ok(())
            }
            Err(e) => {
                self.sandbox_backoff.next(now);
                let msg = format!("Failed to create pod sandbox: {e}");
                self.event(pod, None, WARNING, "FailedCreatePodSandBox", &msg)
                    .await;
                Err(self.sandbox_backoff.delay.max(Duration::from_secs(1)))
            }
        }
    }

    fn sandbox_config(&self, pod: &Pod, host_network: bool) -> SandboxConfig {
        let spec = pod.spec.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let class = qos::qos_class(pod);
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_POD_UID.to_string(), self.uid.clone());
        labels.insert(LABEL_POD_NAME.to_string(), name.clone());
        labels.insert(LABEL_POD_NAMESPACE.to_string(), ns.clone());
        let (hostname, _) = super::podfiles::hostname_of(pod, &self.shared.config);
        let files = super::podfiles::write(
            &self.shared.config,
            pod,
            &self.uid,
            self.pod_ip.as_deref(),
            host_network,
        );
        let sysctls = spec
            .security_context
            .as_ref()
            .and_then(|s| s.sysctls.as_ref())
            .map(|v| {
                v.iter()
                    .map(|s| (s.name.clone(), s.value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        SandboxConfig {
            pod_uid: self.uid.clone(),
            pod_name: name.clone(),
            pod_namespace: ns.clone(),
            hostname,
            netns_path: if host_network {
                None
            } else {
                self.netns.clone()
            },
            host_ipc: spec.host_ipc.unwrap_or(false),
            host_pid: spec.host_pid.unwrap_or(false),
            share_process_namespace: spec.share_process_namespace.unwrap_or(false),
            cgroup_parent: qos::cgroup_parent(class, &self.uid),
            resources: qos::pod_resources(class, pod),
            log_directory: self
                .shared
                .config
                .log_root
                .join(format!("{ns}_{name}_{}", self.uid)),
            etc_hosts: files.hosts,
            resolv_conf: files.resolv_conf,
            hostname_file: files.hostname,
            sysctls,
            labels,
        }
    }

    /// Start what should run, in order; returns when to look again.
    async fn run_containers(
        &mut self,
        pod: &Pod,
        observed: &HashMap<String, Observed>,
        facts: &PodFacts,
    ) -> Duration {
        let Some(spec) = pod.spec.clone() else {
            return RESYNC;
        };
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut wake = RESYNC;
        let now = SystemTime::now();
        // Init containers: one at a time; sidecars keep running.
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            let o = observed.get(&c.name).cloned().unwrap_or_default();
            let sidecar = is_sidecar(c);
            match o.current.as_ref().map(|s| s.state) {
                Some(cri::ContainerState::Running) => {
                    // A sidecar lets the next container start once it has
                    // started: its startupProbe succeeded, if it has one.
                    if sidecar
                        && o.current
                            .as_ref()
                            .is_some_and(|s| self.has_started(c, &s.id))
                    {
                        continue;
                    }
                    return wake;
                }
                Some(cri::ContainerState::Exited) | Some(cri::ContainerState::Unknown) => {
                    let Some(cur) = o.current.as_ref() else {
                        continue;
                    };
                    let code = cur.exit_code.unwrap_or(0);
                    if !sidecar && code == 0 {
                        continue;
                    }
                    if !should_restart(c, true, &policy, code) {
                        // restartPolicy Never: the pod fails.
                        return wake;
                    }
                    match self.restart_gate(pod, c, cur, now).await {
                        Some(d) => return wake.min(d),
                        None => {
                            let attempt = cur.attempt + 1;
                            let d = self.start(pod, c, true, i, attempt, facts).await;
                            wake = wake.min(d);
                            if !sidecar {
                                return wake;
                            }
                        }
                    }
                }
                Some(cri::ContainerState::Created) => {
                    if let Some(cur) = o.current.as_ref()
                        && let Err(e) = self.shared.services.runtime.start_container(&cur.id).await
                    {
                        debug!("start created container: {e}");
                    }
                    if !sidecar {
                        return wake;
                    }
                }
                None => {
                    let attempt = self
                        .containers
                        .get(&c.name)
                        .map(|m| m.extra_attempts)
                        .unwrap_or(0);
                    let d = self.start(pod, c, true, i, attempt, facts).await;
                    wake = wake.min(d);
                    // Its startup probe has not run yet: the next sync,
                    // woken by the probe's result, goes on.
                    if !sidecar || c.startup_probe.is_some() || !self.is_running(&c.name).await {
                        return wake;
                    }
                }
            }
        }
        for (i, c) in spec.containers.iter().enumerate() {
            let o = observed.get(&c.name).cloned().unwrap_or_default();
            match o.current.as_ref().map(|s| s.state) {
                Some(cri::ContainerState::Running) => {}
                Some(cri::ContainerState::Exited) | Some(cri::ContainerState::Unknown) => {
                    let Some(cur) = o.current.as_ref() else {
                        continue;
                    };
                    let code = cur.exit_code.unwrap_or(0);
                    if !should_restart(c, false, &policy, code) {
                        continue;
                    }
                    match self.restart_gate(pod, c, cur, now).await {
                        Some(d) => wake = wake.min(d),
                        None => {
                            let d = self.start(pod, c, false, i, cur.attempt + 1, facts).await;
                            wake = wake.min(d);
                        }
                    }
                }
                Some(cri::ContainerState::Created) => {
                    if let Some(cur) = o.current.as_ref()
                        && let Err(e) = self.shared.services.runtime.start_container(&cur.id).await
                    {
                        debug!("start created container: {e}");
                    }
                }
                None => {
                    let attempt = self
                        .containers
                        .get(&c.name)
                        .map(|m| m.extra_attempts)
                        .unwrap_or(0);
                    let d = self.start(pod, c, false, i, attempt, facts).await;
                    wake = wake.min(d);
                }
            }
        }
        wake
    }

    /// Whether a running container counts as started: without a startup
    /// probe at once, with one when it has succeeded.
    fn has_started(&self, c: &Container, id: &ContainerId) -> bool {
        c.startup_probe.is_none() || self.started.get(id).copied().unwrap_or(false)
    }

    async fn is_running(&self, name: &str) -> bool {
        let Some(sb) = &self.sandbox else {
            return false;
        };
        self.shared
            .services
            .runtime
            .list_containers(sb)
            .await
            .map(|l| {
                l.iter()
                    .any(|c| c.name == name && c.state == cri::ContainerState::Running)
            })
            .unwrap_or(false)
    }

    /// The restart back-off for an exited container: `None` when it may
    /// restart now, else how long to wait (and the status says
    /// CrashLoopBackOff).
    async fn restart_gate(
        &mut self,
        pod: &Pod,
        c: &Container,
        exited: &cri::ContainerStatus,
        now: SystemTime,
    ) -> Option<Duration> {
        let finished = exited.finished_at.unwrap_or(now);
        let mem = self.containers.entry(c.name.clone()).or_default();
        if mem.counted_exit.as_deref() != Some(exited.id.as_str()) {
            mem.counted_exit = Some(exited.id.clone());
            if ran_for(exited.started_at, exited.finished_at) > BACKOFF_RESET {
                mem.restart = Backoff::default();
            }
            mem.restart.next(finished);
        }
        let remaining = mem.restart.remaining(now)?;
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let delay = mem.restart.delay / 2;
        let msg = format!(
            "back-off {} restarting failed container={} pod={name}_{ns}({})",
            humantime(delay.max(BACKOFF_INITIAL)),
            c.name,
            self.uid
        );
        let first = mem
            .waiting
            .as_ref()
            .is_none_or(|(r, _)| r != "CrashLoopBackOff");
        mem.waiting = Some(("CrashLoopBackOff".into(), msg));
        if first {
            let ev = format!(
                "Back-off restarting failed container {} in pod {name}_{ns}({})",
                c.name, self.uid
            );
            self.event(pod, Some((&c.name, false)), WARNING, "BackOff", &ev)
                .await;
        }
        Some(remaining)
    }

    /// Pull, create and start one container; returns when to look again.
    async fn start(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        _index: usize,
        attempt: u32,
        facts: &PodFacts,
    ) -> Duration {
        let now = SystemTime::now();
        let Some(sandbox) = self.sandbox.clone() else {
            return RESYNC;
        };
        let who = Some((c.name.as_str(), init));
        let image_ref = c.image.clone().unwrap_or_default();
        // Image.
        {
            let mem = self.containers.entry(c.name.clone()).or_default();
            if let Some(rem) = mem.image.remaining(now) {
                let msg = format!("Back-off pulling image \"{image_ref}\"");
                let first = mem
                    .waiting
                    .as_ref()
                    .is_none_or(|(r, _)| r != "ImagePullBackOff");
                mem.waiting = Some(("ImagePullBackOff".into(), msg.clone()));
                if first {
                    self.event(pod, who, NORMAL, "BackOff", &msg).await;
                    self.event(pod, who, WARNING, "Failed", "Error: ImagePullBackOff")
                        .await;
                }
                return rem;
            }
        }
        let image = match self.pull(pod, c, who).await {
            Ok(i) => i,
            Err(d) => return d,
        };
        // Environment, mounts and the command line.
        let config = match self.container_config(pod, c, &image, attempt, facts).await {
            Ok(cfg) => cfg,
            Err(msg) => {
                let mem = self.containers.entry(c.name.clone()).or_default();
                mem.waiting = Some(("CreateContainerConfigError".into(), msg.clone()));
                self.event(pod, who, WARNING, "Failed", &format!("Error: {msg}"))
                    .await;
                return Duration::from_secs(2);
            }
        };
        let rt = &self.shared.services.runtime;
        let id = match rt.create_container(&sandbox, &config).await {
            Ok(id) => id,
            Err(e) => {
                let msg = e.to_string();
                let mem = self.containers.entry(c.name.clone()).or_default();
                mem.waiting = Some(("CreateContainerError".into(), msg.clone()));
                mem.restart.next(now);
                let d = mem.restart.remaining(now).unwrap_or(Duration::from_secs(1));
                self.event(pod, who, WARNING, "Failed", &format!("Error: {msg}"))
                    .await;
                return d.max(Duration::from_secs(1));
            }
        };
        self.event(
            pod,
            who,
            NORMAL,
            "Created",
            &format!("Created container: {}", c.name),
        )
        .await;
        if let Err(e) = rt.start_container(&id).await {
            let msg = e.to_string();
            let mem = self.containers.entry(c.name.clone()).or_default();
            mem.start_error = Some((id.clone(), msg.clone(), SystemTime::now()));
            mem.waiting = None;
            self.event(pod, who, WARNING, "Failed", &format!("Error: {msg}"))
                .await;
            return Duration::from_millis(200);
        }
        let mem = self.containers.entry(c.name.clone()).or_default();
        mem.waiting = None;
        self.event(
            pod,
            who,
            NORMAL,
            "Started",
            &format!("Started container {}", c.name),
        )
        .await;
        if let Some(post) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            // Upstream bounds nothing here; a hook that hangs would hold
            // the worker, so it gets the grace period.
            let limit = spec_grace(pod);
            if !self
                .run_hook(pod, c, HookKind::PostStart, post, &id, limit)
                .await
            {
                if let Err(e) = rt_stop(&self.shared.services, &id, limit).await {
                    debug!("stop after failed postStart: {e}");
                }
                return Duration::from_millis(200);
            }
        }
        RESYNC
    }

    async fn pull(
        &mut self,
        pod: &Pod,
        c: &Container,
        who: Option<(&str, bool)>,
    ) -> Result<ResolvedImage, Duration> {
        let image_ref = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            let tag_latest = !image_ref.contains('@')
                && image_ref
                    .rsplit('/')
                    .next()
                    .is_none_or(|last| !last.contains(':') || last.ends_with(":latest"));
            if tag_latest { "Always" } else { "IfNotPresent" }.to_string()
        });
        let secrets = self.pull_secrets(pod).await;
        let images = self.shared.services.images.clone();
        let present = images.present(&image_ref);
        if policy == "Always" || (!present && policy != "Never") {
            self.event(
                pod,
                who,
                NORMAL,
                "Pulling",
                &format!("Pulling image \"{image_ref}\""),
            )
            .await;
        }
        let started = Instant::now();
        match images.ensure(&image_ref, &policy, &secrets).await {
            Ok(img) => {
                let msg = if img.pulled {
                    let took = img.duration.as_secs_f64();
                    let waited = started.elapsed().as_secs_f64();
                    format!(
                        "Successfully pulled image \"{image_ref}\" in {}s ({}s including waiting). Image size: {} bytes.",
                        round3(took),
                        round3(waited.max(took)),
                        img.size
                    )
                } else {
                    format!("Container image \"{image_ref}\" already present on machine")
                };
                self.event(pod, who, NORMAL, "Pulled", &msg).await;
                let mem = self.containers.entry(c.name.clone()).or_default();
                mem.image = Backoff::default();
                Ok(img)
            }
            Err(ImagePullError::NeverPull(_)) => {
                let msg = format!(
                    "Container image \"{image_ref}\" is not present with pull policy of Never"
                );
                let mem = self.containers.entry(c.name.clone()).or_default();
                mem.waiting = Some(("ErrImageNeverPull".into(), msg.clone()));
                self.event(pod, who, WARNING, "ErrImageNeverPull", &msg)
                    .await;
                self.event(pod, who, WARNING, "Failed", "Error: ErrImageNeverPull")
                    .await;
                Err(Duration::from_secs(10))
            }
            Err(ImagePullError::Pull(e)) => {
                let msg = format!("Failed to pull image \"{image_ref}\": {e}");
                let mem = self.containers.entry(c.name.clone()).or_default();
                mem.waiting = Some(("ErrImagePull".into(), e.clone()));
                mem.image.next(SystemTime::now());
                // The first retry waits too (upstream: 10 s).
                if mem.image.until.is_some_and(|u| u <= SystemTime::now()) {
                    mem.image.next(SystemTime::now());
                }
                let d = mem
                    .image
                    .remaining(SystemTime::now())
                    .unwrap_or(BACKOFF_INITIAL);
                self.event(pod, who, WARNING, "Failed", &msg).await;
                self.event(pod, who, WARNING, "Failed", "Error: ErrImagePull")
                    .await;
                Err(d)
            }
        }
    }

    async fn pull_secrets(&self, pod: &Pod) -> Vec<Secret> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), ns);
        let mut out = Vec::new();
        for r in pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten()
        {
            if let Ok(Some(s)) = api.get_opt(&r.name).await {
                out.push(s);
            }
        }
        out
    }

    async fn container_config(
        &self,
        pod: &Pod,
        c: &Container,
        image: &ResolvedImage,
        attempt: u32,
        facts: &PodFacts,
    ) -> Result<ContainerConfig, String> {
        let spec = pod.spec.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let client = &self.shared.client;
        let (cm_names, secret_names) = envvars::referenced_objects(c);
        let mut configmaps = BTreeMap::new();
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        for n in cm_names {
            if let Ok(Some(cm)) = cm_api.get_opt(&n).await {
                configmaps.insert(n, cm);
            }
        }
        let mut secrets = BTreeMap::new();
        let s_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        for n in secret_names {
            if let Ok(Some(s)) = s_api.get_opt(&n).await {
                secrets.insert(n, s);
            }
        }
        let mut services: Vec<Service> = Vec::new();
        for list_ns in [ns.as_str(), "default"] {
            let api: Api<Service> = Api::namespaced(client.clone(), list_ns);
            match api.list(&ListParams::default()).await {
                Ok(l) => services.extend(l.items),
                Err(e) => return Err(format!("cannot list services: {e}")),
            }
            if ns == "default" {
                break;
            }
        }
        let (cpu, mem) = self.shared.node.allocatable();
        let src = envvars::EnvSources {
            services: &services,
            configmaps: &configmaps,
            secrets: &secrets,
            node_cpu_milli: cpu,
            node_memory: mem,
            pod_ip: facts.pod_ip.clone(),
            host_ip: facts.host_ip.clone(),
        };
        let pod_env = envvars::container_env(pod, c, &src).map_err(|e| e.to_string())?;
        let (hostname, _) = super::podfiles::hostname_of(pod, &self.shared.config);
        // Image env, then HOSTNAME (as CRI runtimes add it), then the pod's.
        let mut env: Vec<(String, String)> = image
            .env
            .iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.insert(
                0,
                (
                    "PATH".into(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ),
            );
        }
        env.push(("HOSTNAME".into(), hostname));
        env.extend(pod_env.iter().cloned());
        let env = envvars::dedup_last(env);
        let argv = command::combine(
            &image.entrypoint,
            &image.cmd,
            c.command.as_deref().unwrap_or_default(),
            c.args.as_deref().unwrap_or_default(),
        );
        let args = command::expand_all(&argv, &pod_env);
        if args.is_empty() {
            return Err("no command specified".into());
        }
        let volumes = self.volumes.clone().unwrap_or_default();
        let mounts = self
            .shared
            .services
            .volumes
            .container_mounts(pod, c, &volumes, &pod_env)?;
        let class = qos::qos_class(pod);
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_POD_UID.to_string(), self.uid.clone());
        labels.insert(LABEL_POD_NAME.to_string(), name.clone());
        labels.insert(LABEL_POD_NAMESPACE.to_string(), ns.clone());
        labels.insert(LABEL_CONTAINER_NAME.to_string(), c.name.clone());
        let log_dir = self
            .shared
            .config
            .log_root
            .join(format!("{ns}_{name}_{}", self.uid))
            .join(&c.name);
        Ok(ContainerConfig {
            name: c.name.clone(),
            attempt,
            image: image.spec.clone(),
            args,
            env,
            working_dir: c
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .or_else(|| image.working_dir.clone()),
            image_user: image.user.clone(),
            mounts,
            tty: c.tty.unwrap_or(false),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            security: security::security_config(
                &spec,
                c,
                &self.shared.config.agent_dir.join("seccomp"),
            ),
            resources: qos::container_resources(class, c, self.shared.node.machine().memory_bytes),
            log_path: log_dir.join(format!("{attempt}.log")),
            labels,
        })
    }

    /// Compute the pod's status and patch it if it changed; returns the phase.
    async fn report(
        &mut self,
        pod: &Pod,
        observed: &HashMap<String, Observed>,
        facts: &PodFacts,
    ) -> Option<String> {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        let mut init_done = true;
        let mut init = Vec::new();
        for c in &init_specs {
            let s =
                self.container_status(c, true, &policy, observed.get(&c.name), "PodInitializing");
            let ok = if is_sidecar(c) {
                s.started == Some(true)
            } else {
                s.state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0)
            };
            init_done &= ok;
            init.push(s);
        }
        let default_wait = if init_done {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        // Before the sandbox exists everything is ContainerCreating.
        let default_wait = if facts.sandbox_ready {
            default_wait
        } else {
            "ContainerCreating"
        };
        let app: Vec<ContainerStatus> = spec
            .containers
            .iter()
            .map(|c| self.container_status(c, false, &policy, observed.get(&c.name), default_wait))
            .collect();
        // Init containers that have not started yet show as waiting
        // PodInitializing only after the first; the first is ContainerCreating.
        let init = init
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                if i == 0
                    && s.state
                        .as_ref()
                        .and_then(|st| st.waiting.as_ref())
                        .is_some_and(|w| w.reason.as_deref() == Some("PodInitializing"))
                {
                    s.state = Some(waiting("ContainerCreating", None));
                }
                s
            })
            .collect();
        let now = Time(jiff::Timestamp::now());
        let status = pod_status(pod, facts, init, app, &now);
        let phase = status.phase.clone();
        let new = match serde_json::to_value(&status) {
            Ok(v) => v,
            Err(_) => return phase,
        };
        let old = pod
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or_default();
        let mut merged = old.clone();
        json_patch::merge(&mut merged, &new);
        if merged != old {
            let api: Api<Pod> = Api::namespaced(
                self.shared.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let name = pod.metadata.name.clone().unwrap_or_default();
            if let Err(e) = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"status": new})),
                )
                .await
            {
                debug!(pod = %Self::key(pod), "status update failed: {e}");
            }
        }
        phase
    }

    fn container_status(
        &self,
        c: &Container,
        init: bool,
        policy: &str,
        o: Option<&Observed>,
        default_wait: &str,
    ) -> ContainerStatus {
        let mem = self.containers.get(&c.name).cloned().unwrap_or_default();
        let cur = o.and_then(|o| o.current.as_ref());
        let prev = o.and_then(|o| o.previous.as_ref());
        let start_err = |s: &cri::ContainerStatus| {
            mem.start_error
                .as_ref()
                .filter(|(id, _, _)| *id == s.id)
                .map(|(_, m, _)| m.clone())
        };
        let term = |s: &cri::ContainerStatus| ContainerState {
            terminated: Some(terminated(s, start_err(s).as_deref())),
            ..Default::default()
        };
        let mut last_state = prev.map(term);
        let mut ready = false;
        let mut started = Some(false);
        let state = match cur {
            Some(s) if s.state == cri::ContainerState::Running => {
                // Without a probe a running container is started and ready.
                let is_started =
                    c.startup_probe.is_none() || self.started.get(&s.id).copied().unwrap_or(false);
                started = Some(is_started);
                ready = is_started
                    && (c.readiness_probe.is_none()
                        || self.ready.get(&s.id).copied().unwrap_or(false));
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: s.started_at.map(time),
                    }),
                    ..Default::default()
                }
            }
            Some(s) if s.state == cri::ContainerState::Created => {
                waiting("ContainerCreating", None)
            }
            Some(s) => {
                let restart = should_restart(c, init, policy, s.exit_code.unwrap_or(0))
                    && !(init && !is_sidecar(c) && s.exit_code == Some(0));
                match (&mem.waiting, restart) {
                    (Some((reason, msg)), true) => {
                        last_state = Some(term(s));
                        waiting(reason, Some(msg))
                    }
                    _ => term(s),
                }
            }
            None => match &mem.waiting {
                Some((reason, msg)) => waiting(reason, Some(msg)),
                None => waiting(default_wait, None),
            },
        };
        let restart_count = cur.map(|s| s.attempt).unwrap_or(mem.extra_attempts) as i32;
        ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: cur.map(|s| s.image_id.clone()).unwrap_or_default(),
            container_id: cur.map(|s| format!("{CONTAINER_ID_SCHEME}{}", s.id)),
            ready,
            restart_count,
            started,
            state: Some(state),
            last_state: Some(last_state.unwrap_or_default()),
            ..Default::default()
        }
    }

    /// Evicted under node pressure: kill every container at once (hard
    /// thresholds allow no grace), report the pod Failed with reason
    /// Evicted and the containers' final states, and release the pod's
    /// network as for any finished pod.
    /// Refuse a pod at admission, as the kubelet's rejectPod: a warning
    /// event, and the status Failed with the reason and message and
    /// nothing else (no container ever ran).
    async fn reject(&mut self, pod: &Pod, message: String) {
        info!(pod = %Self::key(pod), "pod refused: {message}");
        self.event(pod, None, WARNING, "Evicted", &message).await;
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = serde_json::json!({"status": {
            "phase": "Failed",
            "reason": "Evicted",
            "message": format!("Pod was rejected: {message}"),
            "qosClass": super::qos::qos_class(pod).as_str(),
        }});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
        {
            debug!(pod = %Self::key(pod), "status update failed: {e}");
        }
        self.finished = true;
    }

    async fn evict(&mut self, pod: &Pod, message: String, grace: Duration) {
        self.probes.clear();
        if let Some(sb) = self.sandbox.clone() {
            let rt = self.shared.services.runtime.clone();
            let list = rt.list_containers(&sb).await.unwrap_or_default();
            // A soft eviction gives the pod time to stop: preStop hooks run
            // first, within it, as for any graceful kill.
            let began = std::time::Instant::now();
            if grace > super::eviction::EVICTION_GRACE {
                let this: &Worker = self;
                let hooks = list
                    .iter()
                    .filter(|c| c.state == cri::ContainerState::Running)
                    .filter_map(|c| {
                        let spec = this.spec_container(pod, &c.name)?;
                        let pre = spec.lifecycle.as_ref()?.pre_stop.clone()?;
                        Some(async move {
                            this.run_hook(
                                pod,
                                &spec,
                                HookKind::PreStop,
                                &pre,
                                &c.id,
                                grace.as_secs() as i64,
                            )
                            .await
                        })
                    });
                futures::future::join_all(hooks).await;
            }
            // The hooks' time comes out of the grace period; the kubelet
            // leaves at least 2 s after them.
            let grace = if grace > super::eviction::EVICTION_GRACE {
                grace
                    .saturating_sub(began.elapsed())
                    .max(Duration::from_secs(2))
            } else {
                grace
            };
            let stops = list
                .into_iter()
                .filter(|c| c.state == cri::ContainerState::Running)
                .map(|c| {
                    let rt = rt.clone();
                    async move {
                        if let Err(e) = rt.stop_container(&c.id, grace).await {
                            debug!(container = %c.id, "stop for eviction: {e}");
                        }
                    }
                });
            futures::future::join_all(stops).await;
        }
        let observed = match &self.sandbox {
            Some(sb) => match self.shared.services.runtime.list_containers(sb).await {
                Ok(list) => observe(self.normalize(list)),
                Err(_) => HashMap::new(),
            },
            None => HashMap::new(),
        };
        let facts = PodFacts {
            sandbox_ready: false,
            pod_ip: self.pod_ip.clone(),
            host_ip: self.shared.node.node_ip().map(|ip| ip.to_string()),
            start_time: self.start_time.clone(),
            terminal: Some(("Failed".into(), "Evicted".into(), message)),
        };
        self.report(pod, &observed, &facts).await;
        self.finish(pod).await;
    }

    /// The pod reached Succeeded or Failed: stop what still runs, release
    /// the network; keep the containers (logs) until the pod is deleted.
    async fn finish(&mut self, pod: &Pod) {
        self.finished = true;
        let s = &self.shared.services;
        if let Some(sb) = &self.sandbox {
            if let Ok(list) = s.runtime.list_containers(sb).await {
                for c in list
                    .into_iter()
                    .filter(|c| c.state == cri::ContainerState::Running)
                {
                    let _ = s
                        .runtime
                        .stop_container(&c.id, Duration::from_secs(DEFAULT_GRACE as u64))
                        .await;
                }
            }
            if let Err(e) = s.runtime.stop_sandbox(sb).await {
                debug!("stop sandbox: {e}");
            }
        }
        self.shared.netns.lock().remove(&self.uid);
        if let Err(e) = s.network.teardown(&self.uid).await {
            debug!(pod = %Self::key(pod), "network teardown: {e}");
        }
    }

    /// Graceful termination: SIGTERM (after preStop), SIGKILL after the
    /// grace period; sidecars after the app containers; then everything of
    /// the pod goes, and the deletion is finished in the API.
    async fn terminate(&mut self, pod: &Pod, grace: i64, finish_delete: bool) {
        let s = self.shared.services.clone();
        let grace = Duration::from_secs(grace.max(0) as u64);
        if let Some(sb) = self.sandbox.clone() {
            let this: &Worker = self;
            let list = s.runtime.list_containers(&sb).await.unwrap_or_default();
            let spec = pod.spec.clone().unwrap_or_default();
            let sidecars: HashSet<String> = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| is_sidecar(c))
                .map(|c| c.name.clone())
                .collect();
            let running: Vec<cri::ContainerStatus> = list
                .into_iter()
                .filter(|c| c.state == cri::ContainerState::Running)
                .collect();
            for group in [false, true] {
                let batch: Vec<&cri::ContainerStatus> = running
                    .iter()
                    .filter(|c| sidecars.contains(&c.name) == group)
                    .collect();
                let stops = batch.into_iter().map(|c| {
                    let s = s.clone();
                    let init = sidecars.contains(&c.name);
                    let name = c.name.clone();
                    let id = c.id.clone();
                    async move {
                        this.event(
                            pod,
                            Some((&name, init)),
                            NORMAL,
                            "Killing",
                            &format!("Stopping container {name}"),
                        )
                        .await;
                        let mut left = grace;
                        if let Some(c) = this.spec_container(pod, &name)
                            && let Some(pre) =
                                c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
                        {
                            let begun = Instant::now();
                            this.run_hook(
                                pod,
                                &c,
                                HookKind::PreStop,
                                pre,
                                &id,
                                grace.as_secs() as i64,
                            )
                            .await;
                            // The hook's time comes out of the grace period.
                            left = grace.saturating_sub(begun.elapsed());
                        }
                        if let Err(e) = s.runtime.stop_container(&id, left).await {
                            debug!(container = %id, "stop: {e}");
                        }
                    }
                });
                futures::future::join_all(stops).await;
            }
            if let Err(e) = s.runtime.stop_sandbox(&sb).await {
                debug!("stop sandbox: {e}");
            }
        }
        self.shared.netns.lock().remove(&self.uid);
        if let Err(e) = s.network.teardown(&self.uid).await {
            debug!(pod = %Self::key(pod), "network teardown: {e}");
        }
        s.volumes.unmount_pod_volumes(&self.uid).await;
        if let Some(sb) = self.sandbox.take() {
            if let Err(e) = s.runtime.remove_sandbox(&sb).await {
                debug!("remove sandbox: {e}");
            }
            self.shared.owners.lock().remove(&sb);
        }
        self.shared.adopted.lock().remove(&self.uid);
        let _ = std::fs::remove_dir_all(self.shared.config.pod_dir(&self.uid));
        if finish_delete {
            let api: Api<Pod> = Api::namespaced(
                self.shared.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let name = pod.metadata.name.clone().unwrap_or_default();
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => info!(pod = %Self::key(pod), "pod deleted"),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => warn!(pod = %Self::key(pod), "cannot finish deletion: {e}"),
            }
        }
    }
}

/// How long an exited container ran. One that never started (StartError,
/// reported as started at the epoch) ran for nothing: counting from 1970
/// would reset its back-off at every failure and restart it in a loop.
fn ran_for(started: Option<SystemTime>, finished: Option<SystemTime>) -> Duration {
    match (started, finished) {
        (Some(s), Some(f)) if s > SystemTime::UNIX_EPOCH => f.duration_since(s).unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

fn spec_grace(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE)
}

async fn rt_stop(s: &Services, id: &ContainerId, grace_secs: i64) -> cri::Result<()> {
    s.runtime
        .stop_container(id, Duration::from_secs(grace_secs.max(0) as u64))
        .await
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Go's time.Duration formatting for whole seconds and minutes ("10s", "5m0s").
pub fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_that_never_started_ran_for_nothing() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            ran_for(Some(SystemTime::UNIX_EPOCH), Some(at)),
            Duration::ZERO
        );
        assert_eq!(
            ran_for(Some(at - Duration::from_secs(700)), Some(at)),
            Duration::from_secs(700)
        );
    }

    #[test]
    fn backoff_doubles_from_ten_seconds() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut b = Backoff::default();
        b.next(t0);
        assert!(!b.in_backoff(t0), "the first restart is immediate");
        b.next(t0);
        assert_eq!(b.remaining(t0), Some(Duration::from_secs(10)));
        b.next(t0);
        assert_eq!(b.remaining(t0), Some(Duration::from_secs(20)));
        for _ in 0..10 {
            b.next(t0);
        }
        assert_eq!(b.remaining(t0), Some(BACKOFF_MAX));
        assert_eq!(humantime(Duration::from_secs(10)), "10s");
        assert_eq!(humantime(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn restart_policy() {
        let c: Container = serde_json::from_value(serde_json::json!({"name": "a"})).expect("c");
        let side: Container =
            serde_json::from_value(serde_json::json!({"name": "s", "restartPolicy": "Always"}))
                .expect("c");
        assert!(should_restart(&c, false, "Always", 0));
        assert!(!should_restart(&c, false, "OnFailure", 0));
        assert!(should_restart(&c, false, "OnFailure", 1));
        assert!(!should_restart(&c, false, "Never", 1));
        assert!(should_restart(&c, true, "Always", 1));
        assert!(!should_restart(&c, true, "Never", 1));
        assert!(should_restart(&side, true, "Never", 0));
    }
}
