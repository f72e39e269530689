//! The scheduler (kube-scheduler's default profile, in process): an API
//! client that watches pods and nodes, keeps them in a cache, takes pending
//! pods from a priority queue with back-off, filters and scores nodes, and
//! binds through `pods/NAME/binding`. Pods that fit nowhere get a
//! FailedScheduling event and PodScheduled=False, and may preempt pods of
//! lower priority.
//!
//! One task runs scheduling cycles against the cache (no API calls inside
//! a cycle); bindings run concurrently after the pod is "assumed" on its
//! node, so throughput is bounded by the API's write rate, not by
//! round-trips.

pub mod cache;
pub mod filters;
pub mod labels;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scores;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, info, warn};

use crate::config::SchedulerScoring;
use crate::controllers::events::{self, Recorder};
use cache::{Cache, Nominated, PodInfo, pod_key};
use filters::{Code, Pending, Status};
use queue::{Popped, Queue};

/// The name pods ask for in spec.schedulerName.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Unschedulable pods are retried at least this often even without a
/// cluster event (upstream: 5 minutes; shorter here because this scheduler
/// does not watch every kind upstream's does, e.g. PVCs).
const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(30);
/// Concurrent binding calls.
const MAX_BINDS: usize = 64;
/// Concurrent event writes (events are best effort).
const MAX_EVENTS: usize = 16;

/// How the scheduler is set up.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    pub scoring: SchedulerScoring,
    /// Pods naming another scheduler are left alone.
    pub scheduler_name: String,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            scoring: SchedulerScoring::LeastAllocated,
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
        }
    }
}

/// Counters, for logs and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub scheduled: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub preemptions: AtomicU64,
}

struct State {
    cache: Cache,
    queue: Queue,
    /// Last PodScheduled=False message written per pod (to skip repeats).
    last_failure: HashMap<String, String>,
    last_flush: Instant,
}

struct Inner {
    client: kube::Client,
    opts: SchedulerOptions,
    state: Mutex<State>,
    wake: Notify,
    recorder: Recorder,
    binds: Arc<Semaphore>,
    events: Arc<Semaphore>,
    priorities: Mutex<HashMap<String, i32>>,
    pods_synced: AtomicBool,
    nodes_synced: AtomicBool,
    stats: Stats,
}

/// A running scheduler.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

/// Start the scheduler on `client`; it runs until the process ends.
pub fn start(
    client: kube::Client,
    opts: SchedulerOptions,
) -> (Scheduler, tokio::task::JoinHandle<()>) {
    let s = Scheduler::new(client, opts);
    let handle = tokio::spawn(s.clone().run());
    (s, handle)
}

impl Scheduler {
    pub fn new(client: kube::Client, opts: SchedulerOptions) -> Scheduler {
        let recorder = Recorder::new(client.clone(), &opts.scheduler_name);
        Scheduler {
            inner: Arc::new(Inner {
                client,
                opts,
                state: Mutex::new(State {
                    cache: Cache::default(),
                    queue: Queue::default(),
                    last_failure: HashMap::new(),
                    last_flush: Instant::now(),
                }),
                wake: Notify::new(),
                recorder,
                binds: Arc::new(Semaphore::new(MAX_BINDS)),
                events: Arc::new(Semaphore::new(MAX_EVENTS)),
                priorities: Mutex::new(HashMap::new()),
                pods_synced: AtomicBool::new(false),
                nodes_synced: AtomicBool::new(false),
                stats: Stats::default(),
            }),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Pending pods in the queue (active, backing off or unschedulable).
    pub fn queued(&self) -> usize {
        self.inner.state.lock().queue.len()
    }

    /// Watch and schedule until the process ends.
    pub async fn run(self) {
        info!(scoring = %self.inner.opts.scoring, "scheduler starting");
        tokio::spawn(self.clone().watch_nodes());
        tokio::spawn(self.clone().watch_pods());
        tokio::spawn(self.clone().watch_namespaces());
        loop {
            let popped = self.next_pod().await;
            self.schedule_one(popped).await;
        }
    }

    /// Wait for the next pod to schedule (after the caches have synced).
    async fn next_pod(&self) -> Popped {
        loop {
            let notified = self.inner.wake.notified();
            let wait_until = {
                let mut st = self.inner.state.lock();
                let now = Instant::now();
                if now.duration_since(st.last_flush) >= Duration::from_secs(5) {
                    st.queue
                        .flush_unschedulable_older_than(UNSCHEDULABLE_FLUSH, now);
                    st.last_flush = now;
                }
                st.queue.flush_backoff(now);
                let synced = self.inner.pods_synced.load(Ordering::Acquire)
                    && self.inner.nodes_synced.load(Ordering::Acquire);
                if synced && let Some(p) = st.queue.pop() {
                    return p;
                }
                let next = st
                    .queue
                    .next_backoff()
                    .unwrap_or(now + Duration::from_secs(1));
                next.min(now + Duration::from_secs(1))
            };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wait_until.into()) => {}
            }
        }
    }

    fn responsible_for(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(DEFAULT_SCHEDULER_NAME);
        name == self.inner.opts.scheduler_name
    }

    // ---- watches ------------------------------------------------------------

    async fn watch_nodes(self) {
        let api: Api<Node> = Api::all(self.inner.client.clone());
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        let mut seen: Option<HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    debug!("scheduler node watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut st = self.inner.state.lock();
            let now = Instant::now();
            match ev {
                watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
                    if let Some(s) = seen.as_mut() {
                        s.insert(node.metadata.name.clone().unwrap_or_default());
                    }
                    if st.cache.upsert_node(&node) {
                        st.queue.move_all_unschedulable(now);
                    }
                }
                watcher::Event::Delete(node) => {
                    st.cache
                        .remove_node(node.metadata.name.as_deref().unwrap_or(""));
                }
                watcher::Event::Init => seen = Some(HashSet::new()),
                watcher::Event::InitDone => {
                    if let Some(s) = seen.take() {
                        let stale: Vec<String> = st
                            .cache
                            .order
                            .iter()
                            .filter(|n| !s.contains(*n))
                            .cloned()
                            .collect();
                        for n in stale {
                            st.cache.remove_node(&n);
                        }
                    }
                    st.queue.move_all_unschedulable(now);
                    self.inner.nodes_synced.store(true, Ordering::Release);
                }
            }
            drop(st);
            self.inner.wake.notify_one();
        }
    }

    async fn watch_namespaces(self) {
        let api: Api<Namespace> = Api::all(self.inner.client.clone());
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(ns)) | Ok(watcher::Event::InitApply(ns)) => {
                    let name = ns.metadata.name.clone().unwrap_or_default();
                    let labels = ns.metadata.labels.clone().unwrap_or_default();
                    self.inner
                        .state
                        .lock()
                        .cache
                        .namespace_labels
                        .insert(name, labels);
                }
                Ok(watcher::Event::Delete(ns)) => {
                    self.inner
                        .state
                        .lock()
                        .cache
                        .namespace_labels
                        .remove(ns.metadata.name.as_deref().unwrap_or(""));
                }
                Ok(_) => {}
                Err(e) => {
                    debug!("scheduler namespace watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn watch_pods(self) {
        let api: Api<Pod> = Api::all(self.inner.client.clone());
        // Terminal pods hold no resources; leaving them out also makes a pod
        // that finishes look deleted.
        let cfg = watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
        let mut stream = watcher(api, cfg).boxed();
        let mut seen: Option<HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    debug!("scheduler pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut st = self.inner.state.lock();
            let now = Instant::now();
            match ev {
                watcher::Event::Apply(pod) => self.on_pod(&mut st, pod, now),
                watcher::Event::InitApply(pod) => {
                    if let Some(s) = seen.as_mut() {
                        s.insert(pod_key(&pod));
                    }
                    self.on_pod(&mut st, pod, now);
                }
                watcher::Event::Delete(pod) => {
                    let key = pod_key(&pod);
                    st.queue.remove(&key);
                    st.last_failure.remove(&key);
                    if st.cache.remove_pod(&key) {
                        st.queue.move_all_unschedulable(now);
                    }
                }
                watcher::Event::Init => seen = Some(HashSet::new()),
                watcher::Event::InitDone => {
                    if let Some(s) = seen.take() {
                        let stale: Vec<String> = st
                            .cache
                            .pods
                            .keys()
                            .filter(|k| !s.contains(*k))
                            .cloned()
                            .collect();
                        for k in stale {
                            if !st.cache.is_assumed(&k) {
                                st.cache.remove_pod(&k);
                            }
                        }
                    }
                    self.inner.pods_synced.store(true, Ordering::Release);
                }
            }
            drop(st);
            self.inner.wake.notify_one();
        }
    }

    fn on_pod(&self, st: &mut State, pod: Pod, now: Instant) {
        let key = pod_key(&pod);
        let spec = pod.spec.as_ref();
        let node = spec.and_then(|s| s.node_name.as_deref()).unwrap_or("");
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            st.queue.remove(&key);
            if st.cache.remove_pod(&key) {
                st.queue.move_all_unschedulable(now);
            }
            return;
        }
        if !node.is_empty() {
            st.queue.remove(&key);
            st.last_failure.remove(&key);
            let info = PodInfo::from_pod(&pod);
            let was_assumed = st.cache.is_assumed(&key);
            let known = st.cache.has_pod(&key);
            let labels_changed = known
                && !was_assumed
                && st
                    .cache
                    .nodes
                    .get(node)
                    .and_then(|n| n.pods.get(&key))
                    .is_some_and(|p| p.labels != info.labels);
            st.cache.add_pod(info);
            // A pod that appeared bound without us, or changed labels, may
            // satisfy (anti-)affinity of waiting pods.
            if !known || labels_changed {
                st.queue.move_all_unschedulable(now);
            }
            return;
        }
        // Assumed: our binding is in flight and the watch has not caught up.
        if st.cache.is_assumed(&key) {
            return;
        }
        let gated = spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        if pod.metadata.deletion_timestamp.is_some() || gated || !self.responsible_for(&pod) {
            st.queue.remove(&key);
            return;
        }
        match pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
            .filter(|n| !n.is_empty())
        {
            Some(node) => {
                let info = Arc::new(PodInfo::from_pod(&pod));
                st.cache
                    .nominated
                    .insert(key.clone(), Nominated { info, node });
            }
            None => {
                st.cache.nominated.remove(&key);
            }
        }
        st.queue.add_or_update(pod, now);
    }

    // ---- one scheduling cycle ----------------------------------------------

    async fn schedule_one(&self, popped: Popped) {
        let key = pod_key(&popped.pod);
        let mut pod = (*popped.pod).clone();
        if pod.spec.as_ref().is_some_and(|s| s.priority.is_none()) {
            let p = self.resolve_priority(&pod).await;
            if let Some(spec) = pod.spec.as_mut() {
                spec.priority = Some(p);
            }
        }
        let pod = Arc::new(pod);
        let volume_state = if volumes::claim_names(&pod).is_empty() {
            Ok(volumes::VolumeState::default())
        } else {
            volumes::prefetch(&self.inner.client, &pod).await
        };

        let decision = {
            let mut st = self.inner.state.lock();
            let (vs, prefilter_error) = match volume_state {
                Ok(vs) => (vs, None),
                Err(msg) => (volumes::VolumeState::default(), Some(msg)),
            };
            let pending = Pending::new(pod.clone(), vs);
            let d = decide(
                &pending,
                &mut st.cache,
                prefilter_error,
                self.inner.opts.scoring,
            );
            if let Decision::Fit { node, .. } = &d {
                st.cache.assume(pending.info.clone(), node);
            }
            if let Decision::Fail {
                preemption: Some(preemption::Outcome::Preempt(plan)),
                ..
            } = &d
            {
                let info = Arc::new(pending.info.clone());
                st.cache.nominated.insert(
                    key.clone(),
                    Nominated {
                        info,
                        node: plan.node.clone(),
                    },
                );
                for n in &plan.clear_nominations {
                    st.cache.nominated.remove(&n.key);
                }
            }
            (d, pending)
        };
        match decision {
            (Decision::Fit { node, labels }, pending) => {
                let me = self.clone();
                let permit = self.inner.binds.clone().acquire_owned().await;
                tokio::spawn(async move {
                    let _permit = permit;
                    me.bind(popped, pending, node, labels).await;
                });
            }
            (
                Decision::Fail {
                    message,
                    preemption,
                },
                _,
            ) => {
                self.inner
                    .stats
                    .failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
                let nominate = match &preemption {
                    Some(preemption::Outcome::Preempt(plan)) => Some(plan.node.clone()),
                    _ => None,
                };
                if let Some(preemption::Outcome::Preempt(plan)) = preemption {
                    self.inner.stats.preemptions.fetch_add(1, Ordering::Relaxed);
                    self.execute_preemption(&pod, plan).await;
                }
                self.record_failure(&pod, &message, nominate).await;
                self.inner
                    .state
                    .lock()
                    .queue
                    .requeue_failed(popped, false, Instant::now());
                self.inner.wake.notify_one();
            }
        }
    }

    async fn bind(&self, popped: Popped, pending: Pending, node: String, labels: labels::Labels) {
        let pod = pending.pod.clone();
        let key = pod_key(&pod);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let result = async {
            if !pending.volumes.claims.is_empty() {
                volumes::prebind(&self.inner.client, &pod, &pending.volumes, &node, &labels)
                    .await?;
            }
            let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), &ns);
            let binding = serde_json::json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            api.create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await?;
            Ok::<(), kube::Error>(())
        }
        .await;
        match result {
            Ok(()) => {
                self.inner.stats.scheduled.fetch_add(1, Ordering::Relaxed);
                self.inner.state.lock().queue.done(&key);
                let msg = format!("Successfully assigned {ns}/{name} to {node}");
                self.event(&pod, events::NORMAL, "Scheduled", msg);
            }
            Err(kube::Error::Api(s))
                if s.code == 404 || (s.code == 409 && s.message.contains("already assigned")) =>
            {
                // Deleted meanwhile, or bound by someone else: nothing to retry.
                let mut st = self.inner.state.lock();
                st.cache.forget(&key);
                st.queue.done(&key);
            }
            Err(e) => {
                warn!(pod = %key, %node, "binding failed: {e}");
                {
                    let mut st = self.inner.state.lock();
                    st.cache.forget(&key);
                    st.queue.requeue_failed(popped, true, Instant::now());
                }
                self.event(
                    &pod,
                    events::WARNING,
                    "FailedScheduling",
                    format!("Binding rejected: {e}"),
                );
                self.inner.wake.notify_one();
            }
        }
    }

    /// FailedScheduling event and PodScheduled=False, as upstream.
    async fn record_failure(&self, pod: &Pod, message: &str, nominate: Option<String>) {
        let key = pod_key(pod);
        self.event(
            pod,
            events::WARNING,
            "FailedScheduling",
            message.to_string(),
        );
        let had_nomination = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let unchanged = self
            .inner
            .state
            .lock()
            .last_failure
            .get(&key)
            .is_some_and(|m| m == message);
        if unchanged && nominate.is_none() && !had_nomination {
            return;
        }
        let mut status = serde_json::json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": null, "lastTransitionTime": jiff::Timestamp::now().to_string(),
        }]});
        match nominate {
            Some(n) => status["nominatedNodeName"] = serde_json::json!(n),
            None if had_nomination => status["nominatedNodeName"] = serde_json::Value::Null,
            None => {}
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), ns);
        let patch = Patch::Strategic(serde_json::json!({"status": status}));
        let name = pod.metadata.name.as_deref().unwrap_or("");
        match api
            .patch_status(name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {
                self.inner
                    .state
                    .lock()
                    .last_failure
                    .insert(key, message.to_string());
            }
            Err(e) => debug!(pod = %key, "cannot update PodScheduled: {e}"),
        }
    }

    /// Evict the victims (DisruptionTarget condition, then delete), clear
    /// lower nominations on the node.
    async fn execute_preemption(&self, preemptor: &Pod, plan: preemption::Plan) {
        let uid = preemptor.metadata.uid.clone().unwrap_or_default();
        info!(
            preemptor = %pod_key(preemptor), node = %plan.node, victims = plan.victims.len(),
            "preempting lower-priority pods"
        );
        for v in &plan.victims {
            let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), &v.namespace);
            let cond = serde_json::json!({"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                "message": format!("{}: preempting to accommodate a higher priority pod", self.inner.opts.scheduler_name),
                "lastTransitionTime": jiff::Timestamp::now().to_string(),
            }]}});
            if let Err(e) = api
                .patch_status(&v.name, &PatchParams::default(), &Patch::Strategic(cond))
                .await
            {
                debug!(victim = %v.key, "DisruptionTarget: {e}");
            }
            match api.delete(&v.name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => warn!(victim = %v.key, "cannot delete preemption victim: {e}"),
            }
            let reference = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(v.name.clone()),
                namespace: Some(v.namespace.clone()),
                uid: Some(v.uid.clone()),
                ..Default::default()
            };
            let recorder = self.inner.recorder.clone();
            let msg = format!("Preempted by pod {uid} on node {}", plan.node);
            recorder
                .publish(&reference, events::NORMAL, "Preempted", &msg)
                .await;
        }
        for n in &plan.clear_nominations {
            let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), &n.namespace);
            let patch = Patch::Merge(serde_json::json!({"status": {"nominatedNodeName": null}}));
            let _ = api
                .patch_status(&n.name, &PatchParams::default(), &patch)
                .await;
        }
    }

    fn event(&self, pod: &Pod, type_: &'static str, reason: &'static str, message: String) {
        let recorder = self.inner.recorder.clone();
        let permits = self.inner.events.clone();
        let reference = events::reference(pod);
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            recorder.publish(&reference, type_, reason, &message).await;
        });
    }

    /// spec.priority from priorityClassName when admission left it unset.
    async fn resolve_priority(&self, pod: &Pod) -> i32 {
        let Some(name) = pod
            .spec
            .as_ref()
            .and_then(|s| s.priority_class_name.clone())
            .filter(|n| !n.is_empty())
        else {
            return 0;
        };
        match name.as_str() {
            "system-node-critical" => return 2_000_001_000,
            "system-cluster-critical" => return 2_000_000_000,
            _ => {}
        }
        if let Some(p) = self.inner.priorities.lock().get(&name) {
            return *p;
        }
        let api: Api<PriorityClass> = Api::all(self.inner.client.clone());
        match api.get_opt(&name).await {
            Ok(Some(pc)) => {
                self.inner.priorities.lock().insert(name, pc.value);
                pc.value
            }
            _ => 0,
        }
    }
}

/// What a cycle decided.
enum Decision {
    Fit {
        node: String,
        labels: labels::Labels,
    },
    Fail {
        message: String,
        preemption: Option<preemption::Outcome>,
    },
}

/// How many feasible nodes to look for before scoring (upstream's adaptive
/// percentageOfNodesToScore: all below 100 nodes, then 50% falling to 5%).
pub fn num_feasible_nodes_to_find(all: usize) -> usize {
    const MIN: usize = 100;
    if all < MIN {
        return all;
    }
    let pct = (50usize.saturating_sub(all / 125)).max(5);
    (all * pct / 100).max(MIN)
}

fn decide(
    pending: &Pending,
    cache: &mut Cache,
    prefilter_error: Option<String>,
    scoring: SchedulerScoring,
) -> Decision {
    let all = cache.order.len();
    if all == 0 {
        return Decision::Fail {
            message: "no nodes available to schedule pods".into(),
            preemption: None,
        };
    }
    if let Some(msg) = prefilter_error {
        let statuses: HashMap<String, Status> = cache
            .order
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    Status {
                        code: Code::Unresolvable,
                        reasons: vec![msg.clone()],
                    },
                )
            })
            .collect();
        let outcome = preemption::preempt(pending, cache, &statuses);
        return Decision::Fail {
            message: fit_error(all, Some(&msg), &statuses, Some(&outcome)),
            preemption: None,
        };
    }
    let pre = filters::prefilter(pending, cache, &HashSet::new());
    let prio = pending.info.priority;
    let key = pending.info.key.as_str();

    // A nominated node (after preemption) is tried first and taken if it fits.
    if let Some(nom) = pending
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        && let Some(n) = cache.nodes.get(nom).filter(|n| n.present)
    {
        let nominated = cache.nominated_on(nom, prio, key);
        if filters::filter(pending, &pre, cache, n, &nominated).is_ok() {
            return Decision::Fit {
                node: nom.to_string(),
                labels: n.labels.clone(),
            };
        }
    }

    let want = num_feasible_nodes_to_find(all);
    let start = cache.next_start % all;
    let mut feasible: Vec<&cache::NodeInfo> = Vec::new();
    let mut statuses: HashMap<String, Status> = HashMap::new();
    let mut processed = 0;
    let any_nominated = !cache.nominated.is_empty();
    for i in 0..all {
        let name = &cache.order[(start + i) % all];
        let Some(n) = cache.nodes.get(name) else {
            continue;
        };
        processed += 1;
        let nominated = if any_nominated {
            cache.nominated_on(name, prio, key)
        } else {
            Vec::new()
        };
        match filters::filter(pending, &pre, cache, n, &nominated) {
            Ok(()) => {
                feasible.push(n);
                if feasible.len() >= want {
                    break;
                }
            }
            Err(s) => {
                statuses.insert(name.clone(), s);
            }
        }
    }
    let next_start = (start + processed) % all;
    if feasible.is_empty() {
        cache.next_start = next_start;
        let outcome = preemption::preempt(pending, cache, &statuses);
        let message = fit_error(all, None, &statuses, Some(&outcome));
        return Decision::Fail {
            message,
            preemption: Some(outcome),
        };
    }
    let chosen = if feasible.len() == 1 {
        0
    } else {
        let scores = scores::score(scoring, pending, cache, &feasible);
        select_host(&scores)
    };
    let node = feasible[chosen];
    let decision = Decision::Fit {
        node: node.name.clone(),
        labels: node.labels.clone(),
    };
    cache.next_start = next_start;
    decision
}

/// The index of the best score; ties are broken at random so equal nodes
/// share the load.
fn select_host(scores: &[i64]) -> usize {
    let max = scores.iter().copied().max().unwrap_or(0);
    let best: Vec<usize> = (0..scores.len()).filter(|i| scores[*i] == max).collect();
    if best.len() <= 1 {
        return best.first().copied().unwrap_or(0);
    }
    best[(rand::random::<u64>() % best.len() as u64) as usize]
}

/// Upstream's FitError text: "0/3 nodes are available: 1 Insufficient cpu,
/// 2 node(s) had untolerated taint {k: v}. preemption: 0/3 nodes are
/// available: 3 Preemption is not helpful for scheduling."
pub fn fit_error(
    all: usize,
    prefilter_msg: Option<&str>,
    statuses: &HashMap<String, Status>,
    preemption: Option<&preemption::Outcome>,
) -> String {
    let mut msg = format!("0/{all} nodes are available:");
    match prefilter_msg {
        Some(m) => msg.push_str(&format!(" {m}.")),
        None => {
            let hist = histogram(statuses);
            if !hist.is_empty() {
                msg.push_str(&format!(" {hist}."));
            }
        }
    }
    match preemption {
        Some(preemption::Outcome::NotEligible(why)) => msg.push_str(&format!(" preemption: {why}")),
        Some(preemption::Outcome::NoCandidate(st)) => {
            msg.push_str(&format!(
                " preemption: 0/{all} nodes are available: {}.",
                histogram(st)
            ));
        }
        Some(preemption::Outcome::Preempt(_)) | None => {}
    }
    msg
}

/// "1 Insufficient cpu, 2 node(s) ..." sorted as strings, as upstream.
fn histogram(statuses: &HashMap<String, Status>) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in statuses.values() {
        for r in &s.reasons {
            *counts.entry(r.as_str()).or_insert(0) += 1;
        }
    }
    let mut parts: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    parts.sort();
    parts.join(", ")
}

/// The uid of a pod's controlling owner.
pub(crate) fn controller_uid(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fit_error_reads_as_upstream() {
        let st = |code, r: &str| Status {
            code,
            reasons: vec![r.to_string()],
        };
        let statuses: HashMap<String, Status> = [
            ("a".to_string(), st(Code::Unschedulable, "Insufficient cpu")),
            (
                "b".to_string(),
                st(
                    Code::Unresolvable,
                    "node(s) had untolerated taint {key: value}",
                ),
            ),
            (
                "c".to_string(),
                st(
                    Code::Unresolvable,
                    "node(s) had untolerated taint {key: value}",
                ),
            ),
        ]
        .into();
        let pre: HashMap<String, Status> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    st(Code::Unresolvable, preemption::NOT_HELPFUL),
                )
            })
            .collect();
        let outcome = preemption::Outcome::NoCandidate(pre);
        assert_eq!(
            fit_error(3, None, &statuses, Some(&outcome)),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {key: value}. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        let never = preemption::Outcome::NotEligible(preemption::NOT_ELIGIBLE_NEVER);
        assert_eq!(
            fit_error(
                1,
                None,
                &[("a".to_string(), st(Code::Unschedulable, "Insufficient cpu"))].into(),
                Some(&never)
            ),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        );
        assert_eq!(
            fit_error(
                2,
                Some("persistentvolumeclaim \"data\" not found"),
                &HashMap::new(),
                None
            ),
            "0/2 nodes are available: persistentvolumeclaim \"data\" not found."
        );
    }

    #[test]
    fn sampling_follows_upstream() {
        assert_eq!(num_feasible_nodes_to_find(50), 50);
        assert_eq!(num_feasible_nodes_to_find(100), 100);
        assert_eq!(num_feasible_nodes_to_find(1000), 420);
        assert_eq!(num_feasible_nodes_to_find(5000), 500);
        assert_eq!(num_feasible_nodes_to_find(200), 100);
    }

    #[test]
    fn decide_picks_a_feasible_node_and_rotates() {
        let mut cache = Cache::default();
        for n in ["a", "b", "c"] {
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": n},
                "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}
            }))
            .unwrap();
            cache.upsert_node(&node);
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "p"},
            "spec": {"nodeSelector": {"x": "y"}, "containers": [{"name": "c"}]}
        }))
        .unwrap();
        let pending = Pending::new(Arc::new(pod), volumes::VolumeState::default());
        let Decision::Fail { message, .. } =
            decide(&pending, &mut cache, None, SchedulerScoring::LeastAllocated)
        else {
            panic!("nothing matches the selector")
        };
        assert_eq!(
            message,
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "q", "namespace": "d", "uid": "q"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "600m"}}}]}
        }))
        .unwrap();
        let mut placed = HashSet::new();
        for _ in 0..3 {
            let pending = Pending::new(Arc::new(pod.clone()), volumes::VolumeState::default());
            let Decision::Fit { node, .. } =
                decide(&pending, &mut cache, None, SchedulerScoring::LeastAllocated)
            else {
                panic!("should fit")
            };
            let mut info = pending.info.clone();
            info.key = format!("d/q-{node}");
            cache.assume(info, &node);
            placed.insert(node);
        }
        assert_eq!(placed.len(), 3, "600m each: one per node");
        let pending = Pending::new(Arc::new(pod), volumes::VolumeState::default());
        let Decision::Fail { message, .. } =
            decide(&pending, &mut cache, None, SchedulerScoring::LeastAllocated)
        else {
            panic!("full")
        };
        assert!(
            message.starts_with("0/3 nodes are available: 3 Insufficient cpu."),
            "{message}"
        );
        assert!(
            message.ends_with("3 No preemption victims found for incoming pod."),
            "{message}"
        );
    }
}
