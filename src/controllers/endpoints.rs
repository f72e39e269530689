//! Endpoints controller (upstream's endpoint controller): for every Service
//! with a selector, an Endpoints object of the same name listing the IPs of
//! the selected pods, ready ones under `addresses` and the others under
//! `notReadyAddresses`, with target ports resolved by name from the pods'
//! container ports. Services without a selector are left to their users.
//!
//! The service/pod tracking here (watches of Services, pods and nodes into
//! a small projection, a work queue of service keys, trigger times) is
//! shared with the EndpointSlice controller.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PartialObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::Notify;
use tracing::debug;

use super::gc::queue::WorkQueue;

/// Label the controller puts on the Endpoints it manages (1.33).
pub const LABEL_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// Label of Endpoints/EndpointSlices of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
pub const ANNOTATION_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Leader-election records kept in Endpoints are not the controller's.
const ANNOTATION_LEADER: &str = "control-plane.alpha.kubernetes.io/leader";
/// Most addresses an Endpoints object holds; the rest are dropped.
pub const MAX_CAPACITY: usize = 1000;
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
const WORKERS: usize = 8;

/// (namespace, name) of a Service.
pub type ServiceKey = (String, String);

/// A container port a Service's targetPort can name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub port: i32,
    pub protocol: String,
}

/// What the endpoint controllers need of a pod.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub node_name: String,
    pub hostname: String,
    pub subdomain: String,
    /// status.podIPs, or status.podIP when that is all there is.
    pub ips: Vec<String>,
    /// Condition Ready=True.
    pub ready: bool,
    /// When the Ready condition last changed.
    pub ready_since: Option<jiff::Timestamp>,
    /// Succeeded or Failed.
    pub terminal: bool,
    /// Has a deletionTimestamp.
    pub terminating: bool,
    pub ports: Vec<NamedPort>,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut ips: Vec<String> = status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|v| v.iter().map(|i| i.ip.clone()).collect())
            .unwrap_or_default();
        if ips.is_empty()
            && let Some(ip) = status
                .and_then(|s| s.pod_ip.clone())
                .filter(|ip| !ip.is_empty())
        {
            ips.push(ip);
        }
        let ready_cond = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        let mut ports = Vec::new();
        if let Some(spec) = spec {
            // Sidecars (restartable init containers) serve ports too.
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            for c in spec.containers.iter().chain(sidecars) {
                for p in c.ports.iter().flatten() {
                    if let Some(name) = p.name.as_ref().filter(|n| !n.is_empty()) {
                        ports.push(NamedPort {
                            name: name.clone(),
                            port: p.container_port,
                            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        });
                    }
                }
            }
        }
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            hostname: spec.and_then(|s| s.hostname.clone()).unwrap_or_default(),
            subdomain: spec.and_then(|s| s.subdomain.clone()).unwrap_or_default(),
            ips,
            ready: ready_cond.is_some_and(|c| c.status == "True"),
            ready_since: ready_cond
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0),
            terminal: phase == "Succeeded" || phase == "Failed",
            terminating: meta.deletion_timestamp.is_some(),
            ports,
        }
    }

    /// Upstream's ShouldPodBeInEndpoints.
    pub fn should_be_in_endpoints(&self, include_terminating: bool) -> bool {
        !self.terminal && !self.ips.is_empty() && (include_terminating || !self.terminating)
    }

    /// The pod's IPv4 addresses.
    pub fn ipv4(&self) -> Vec<String> {
        self.ips
            .iter()
            .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
            .cloned()
            .collect()
    }

    pub fn target_ref(&self) -> ObjectReference {
        ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }

    /// The hostname the pod has in `svc`'s DNS (hostname + subdomain).
    pub fn hostname_for(&self, svc: &Service) -> Option<String> {
        (!self.hostname.is_empty()
            && svc.metadata.name.as_deref() == Some(self.subdomain.as_str())
            && svc.metadata.namespace.as_deref() == Some(self.namespace.as_str()))
        .then(|| self.hostname.clone())
    }

    /// Upstream's FindPort: the pod port a Service port targets, by number
    /// or by container port name (and protocol).
    pub fn find_port(&self, sp: &ServicePort) -> Option<i32> {
        let protocol = sp.protocol.as_deref().unwrap_or("TCP");
        match &sp.target_port {
            Some(IntOrString::String(name)) => self
                .ports
                .iter()
                .find(|p| p.name == *name && p.protocol == protocol)
                .map(|p| p.port),
            Some(IntOrString::Int(n)) if *n != 0 => Some(*n),
            _ => Some(sp.port),
        }
    }
}

/// The selector a Service picks pods with; None for selector-less ones.
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A Service without a cluster IP ("" or "None").
pub fn is_headless(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_none_or(|ip| ip.is_empty() || ip == "None")
}

pub fn is_external_name(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// What the controllers know of the cluster, from their watches.
#[derive(Default)]
pub struct State {
    /// namespace -> name -> Service
    pub services: HashMap<String, HashMap<String, Arc<Service>>>,
    /// namespace -> name -> pod
    pub pods: HashMap<String, HashMap<String, Arc<PodInfo>>>,
    /// node -> zone label
    pub zones: HashMap<String, String>,
}

impl State {
    pub fn service(&self, key: &ServiceKey) -> Option<Arc<Service>> {
        self.services.get(&key.0)?.get(&key.1).cloned()
    }

    /// The pods `svc` selects, by name.
    pub fn pods_for(&self, svc: &Service) -> Vec<Arc<PodInfo>> {
        let Some(sel) = selector(svc) else {
            return Vec::new();
        };
        let ns = svc.metadata.namespace.as_deref().unwrap_or("");
        let mut pods: Vec<Arc<PodInfo>> = self
            .pods
            .get(ns)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|p| selects(sel, &p.labels))
            .cloned()
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }

    /// Services of `ns` selecting a pod with `labels`.
    fn selecting(&self, ns: &str, labels: &BTreeMap<String, String>) -> Vec<ServiceKey> {
        self.services
            .get(ns)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(_, s)| selector(s).is_some_and(|sel| selects(sel, labels)))
            .map(|(n, _)| (ns.to_string(), n.clone()))
            .collect()
    }
}

/// Upstream's TriggerTimeTracker: the time of the earliest pod or Service
/// change not yet reflected, for the last-change-trigger-time annotation.
#[derive(Default)]
pub struct TriggerTimes {
    services: HashMap<ServiceKey, ServiceTriggers>,
}

#[derive(Default)]
struct ServiceTriggers {
    pods: HashMap<String, Option<jiff::Timestamp>>,
    service: Option<jiff::Timestamp>,
}

impl TriggerTimes {
    pub fn compute(
        &mut self,
        key: &ServiceKey,
        svc: &Service,
        pods: &[Arc<PodInfo>],
    ) -> Option<jiff::Timestamp> {
        let old = self.services.remove(key).unwrap_or_default();
        let mut new = ServiceTriggers::default();
        let mut min: Option<jiff::Timestamp> = None;
        let mut consider = |t: Option<jiff::Timestamp>| {
            if let Some(t) = t {
                min = Some(min.map_or(t, |m| m.min(t)));
            }
        };
        for p in pods {
            let t = p.ready_since;
            if old.pods.get(&p.name) != Some(&t) {
                consider(t);
            }
            new.pods.insert(p.name.clone(), t);
        }
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if created.is_some() && (old.service.is_none() || created > old.service) {
            consider(created);
        }
        new.service = created.or(old.service);
        self.services.insert(key.clone(), new);
        min
    }

    pub fn forget(&mut self, key: &ServiceKey) {
        self.services.remove(key);
    }
}

/// Counts the watches that still have to finish their first list.
struct Synced {
    remaining: AtomicUsize,
    notify: Notify,
}

impl Synced {
    fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) <= 1 {
            self.notify.notify_waiters();
        }
    }
    async fn wait(&self) {
        loop {
            let n = self.notify.notified();
            if self.remaining.load(Ordering::SeqCst) == 0 {
                return;
            }
            n.await;
        }
    }
}

/// State, queue and client shared by one controller's tasks. `T` is what
/// the controller last wrote or read for each Service (its output objects
/// as the server has them), so a sync needs no read when nothing else
/// changed them.
pub struct Shared<T> {
    pub client: kube::Client,
    pub state: RwLock<State>,
    pub queue: Arc<WorkQueue<ServiceKey>>,
    pub triggers: Mutex<TriggerTimes>,
    pub outputs: Mutex<HashMap<ServiceKey, T>>,
}

impl<T> Shared<T> {
    /// Queue a Service if it exists and has a selector.
    pub fn enqueue_selecting(&self, key: ServiceKey) {
        let wanted = self
            .state
            .read()
            .service(&key)
            .is_some_and(|s| selector(&s).is_some());
        if wanted {
            self.queue.add(key);
        }
    }
}

pub type SyncFn<T> = fn(Arc<Shared<T>>, ServiceKey) -> BoxFuture<'static, Result<(), kube::Error>>;

/// Start the watches of Services, pods and nodes feeding `Shared`, wait for
/// their first lists, then run workers calling `sync` for queued Services.
/// Returns once the workers run; they run until the process ends.
pub async fn start<T: Send + 'static>(
    client: kube::Client,
    name: &'static str,
    sync: SyncFn<T>,
) -> Arc<Shared<T>> {
    let shared = Arc::new(Shared {
        client: client.clone(),
        state: RwLock::new(State::default()),
        queue: WorkQueue::new(),
        triggers: Mutex::new(TriggerTimes::default()),
        outputs: Mutex::new(HashMap::new()),
    });
    let synced = Arc::new(Synced {
        remaining: AtomicUsize::new(3),
        notify: Notify::new(),
    });
    tokio::spawn(watch_services(shared.clone(), synced.clone()));
    tokio::spawn(watch_pods(shared.clone(), synced.clone()));
    tokio::spawn(watch_nodes(shared.clone(), synced.clone()));
    synced.wait().await;
    for _ in 0..WORKERS {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let key = shared.queue.get().await;
                let started = std::time::Instant::now();
                let res = sync(shared.clone(), key.clone()).await;
                shared.queue.done(&key);
                debug!(controller = name, namespace = key.0, service = key.1, elapsed = ?started.elapsed(), "synced");
                match res {
                    Ok(()) => shared.queue.forget(&key),
                    Err(e) => {
                        debug!(
                            controller = name,
                            namespace = key.0,
                            service = key.1,
                            "sync failed: {e}"
                        );
                        shared.queue.add_rate_limited(key);
                    }
                }
            }
        });
    }
    shared
}

/// Key of a watched object: (namespace, name).
type Key = (String, String);

/// Feed one watch stream into `apply` (added or changed objects) and
/// `remove` (told which keys are gone: deleted ones, and after a relist the
/// ones not listed again).
async fn follow<K, F, G>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    synced: Arc<Synced>,
    key_of: fn(&K) -> Key,
    mut apply: F,
    mut remove: G,
) where
    K: Send,
    F: FnMut(K) + Send,
    G: FnMut(&dyn Fn(&Key) -> bool) + Send,
{
    let mut stream = std::pin::pin!(stream);
    let mut seen: HashSet<Key> = HashSet::new();
    let mut synced = Some(synced);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => seen.clear(),
            Ok(watcher::Event::InitApply(o)) => {
                seen.insert(key_of(&o));
                apply(o);
            }
            Ok(watcher::Event::InitDone) => {
                remove(&|k| !seen.contains(k));
                seen.clear();
                if let Some(s) = synced.take() {
                    s.done();
                }
            }
            Ok(watcher::Event::Apply(o)) => apply(o),
            Ok(watcher::Event::Delete(o)) => {
                let gone = key_of(&o);
                remove(&|k| *k == gone);
            }
            Err(e) => debug!("endpoints watch: {e}"),
        }
    }
}

/// The keys of `present` that `gone` selects.
fn to_remove<'a>(present: impl Iterator<Item = &'a Key>, gone: &dyn Fn(&Key) -> bool) -> Vec<Key> {
    present.filter(|k| gone(k)).cloned().collect()
}

fn meta_key(m: &ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

async fn watch_services<T: Send + 'static>(shared: Arc<Shared<T>>, synced: Arc<Synced>) {
    let api: Api<Service> = Api::all(shared.client.clone());
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let s1 = shared.clone();
    let s2 = shared.clone();
    follow(
        stream,
        synced,
        |s: &Service| meta_key(&s.metadata),
        move |svc: Service| {
            let key = meta_key(&svc.metadata);
            s1.state
                .write()
                .services
                .entry(key.0.clone())
                .or_default()
                .insert(key.1.clone(), Arc::new(svc));
            s1.queue.add(key);
        },
        move |gone: &dyn Fn(&Key) -> bool| {
            let gone = {
                let mut st = s2.state.write();
                let present: Vec<(String, String)> = st
                    .services
                    .iter()
                    .flat_map(|(ns, m)| m.keys().map(|n| (ns.clone(), n.clone())))
                    .collect();
                let gone = to_remove(present.iter(), gone);
                for (ns, n) in &gone {
                    if let Some(m) = st.services.get_mut(ns) {
                        m.remove(n);
                    }
                }
                gone
            };
            for k in gone {
                s2.queue.add(k);
            }
        },
    )
    .await;
}

async fn watch_pods<T: Send + 'static>(shared: Arc<Shared<T>>, synced: Arc<Synced>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let s1 = shared.clone();
    let s2 = shared.clone();
    follow(
        stream,
        synced,
        |p: &Pod| meta_key(&p.metadata),
        move |pod: Pod| {
            let info = PodInfo::from_pod(&pod);
            let keys = {
                let mut st = s1.state.write();
                let old = st
                    .pods
                    .entry(info.namespace.clone())
                    .or_default()
                    .insert(info.name.clone(), Arc::new(info.clone()));
                if old.as_deref() == Some(&info) {
                    return;
                }
                let mut keys = st.selecting(&info.namespace, &info.labels);
                if let Some(old) = old.filter(|o| o.labels != info.labels) {
                    keys.extend(st.selecting(&old.namespace, &old.labels));
                }
                keys
            };
            for k in keys {
                s1.queue.add(k);
            }
        },
        move |gone: &dyn Fn(&Key) -> bool| {
            let keys = {
                let mut st = s2.state.write();
                let present: Vec<(String, String)> = st
                    .pods
                    .iter()
                    .flat_map(|(ns, m)| m.keys().map(|n| (ns.clone(), n.clone())))
                    .collect();
                let mut keys = Vec::new();
                for (ns, n) in to_remove(present.iter(), gone) {
                    if let Some(old) = st.pods.get_mut(&ns).and_then(|m| m.remove(&n)) {
                        keys.extend(st.selecting(&ns, &old.labels));
                    }
                }
                keys
            };
            for k in keys {
                s2.queue.add(k);
            }
        },
    )
    .await;
}

async fn watch_nodes<T: Send + 'static>(shared: Arc<Shared<T>>, synced: Arc<Synced>) {
    let api: Api<PartialObjectMeta<Node>> = Api::all(shared.client.clone());
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let s1 = shared.clone();
    let s2 = shared.clone();
    // A node changing zone changes the endpoints of the pods on it.
    let on_nodes = |shared: &Shared<T>, nodes: &HashSet<String>| {
        let keys: HashSet<ServiceKey> = {
            let st = shared.state.read();
            st.pods
                .values()
                .flat_map(|m| m.values())
                .filter(|p| nodes.contains(&p.node_name))
                .flat_map(|p| st.selecting(&p.namespace, &p.labels))
                .collect()
        };
        for k in keys {
            shared.queue.add(k);
        }
    };
    follow(
        stream,
        synced,
        |n: &PartialObjectMeta<Node>| (String::new(), n.metadata.name.clone().unwrap_or_default()),
        move |n: PartialObjectMeta<Node>| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let zone = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_ZONE))
                .cloned();
            let changed = {
                let mut st = s1.state.write();
                let old = match &zone {
                    Some(z) => st.zones.insert(name.clone(), z.clone()),
                    None => st.zones.remove(&name),
                };
                old != zone
            };
            if changed {
                on_nodes(&s1, &[name].into());
            }
        },
        move |gone: &dyn Fn(&Key) -> bool| {
            let gone: HashSet<String> = {
                let mut st = s2.state.write();
                let present: Vec<(String, String)> = st
                    .zones
                    .keys()
                    .map(|n| (String::new(), n.clone()))
                    .collect();
                let gone: HashSet<String> = to_remove(present.iter(), gone)
                    .into_iter()
                    .map(|(_, n)| n)
                    .collect();
                for n in &gone {
                    st.zones.remove(n);
                }
                gone
            };
            if !gone.is_empty() {
                on_nodes(&s2, &gone);
            }
        },
    )
    .await;
}

/// Drop nulls, empty strings, empty lists and empty objects, so objects
/// compare equal however the server spells "unset".
pub fn canonical(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, canonical(v)))
                .filter(|(_, v)| !is_empty_value(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

pub fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => canonical(a) == canonical(b),
        _ => false,
    }
}

/// Upstream's RFC3339Nano rendering of a trigger time.
pub fn format_trigger_time(t: jiff::Timestamp) -> String {
    t.to_string()
}

// ------------------------------------------------------------------ Endpoints

/// Run until the process ends.
pub async fn run(ctx: Arc<super::Context>) {
    let shared = start(ctx.client.clone(), "endpoint-controller", |s, k| {
        Box::pin(sync_service(s, k))
    })
    .await;
    // Changes to Endpoints objects by others (deleted, edited) bring their
    // Service back to the queue; at start every Endpoints is checked once,
    // so objects of Services deleted meanwhile go (as upstream's
    // checkLeftoverEndpoints).
    let api: Api<PartialObjectMeta<Endpoints>> = Api::all(ctx.client.clone());
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::InitApply(ep)) => {
                let leader = ep
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(ANNOTATION_LEADER));
                if !leader {
                    shared.queue.add(meta_key(&ep.metadata));
                }
            }
            Ok(watcher::Event::Apply(ep)) => {
                let key = meta_key(&ep.metadata);
                let ours = {
                    let outputs = shared.outputs.lock();
                    outputs.get(&key).is_some_and(|c| {
                        c.metadata.resource_version == ep.metadata.resource_version
                    })
                };
                if !ours {
                    shared.outputs.lock().remove(&key);
                    shared.enqueue_selecting(key);
                }
            }
            Ok(watcher::Event::Delete(ep)) => {
                let key = meta_key(&ep.metadata);
                shared.outputs.lock().remove(&key);
                shared.enqueue_selecting(key);
            }
            Ok(_) => {}
            Err(e) => debug!("endpoints watch: {e}"),
        }
    }
}

/// The subsets a Service's pods call for (upstream's syncService), before
/// repacking.
pub fn desired_subsets(svc: &Service, pods: &[Arc<PodInfo>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.clone().unwrap_or_default();
    let mut subsets = Vec::new();
    for pod in pods {
        if !pod.should_be_in_endpoints(tolerate_unready) {
            continue;
        }
        let Some(ip) = pod.ipv4().into_iter().next() else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            hostname: pod.hostname_for(svc),
            node_name: Some(pod.node_name.clone()).filter(|n| !n.is_empty()),
            target_ref: Some(pod.target_ref()),
        };
        let ready = tolerate_unready || pod.ready;
        let mut push = |port: Option<EndpointPort>| {
            let (addresses, not_ready) = if ready {
                (Some(vec![address.clone()]), None)
            } else {
                (None, Some(vec![address.clone()]))
            };
            subsets.push(EndpointSubset {
                addresses,
                not_ready_addresses: not_ready,
                ports: port.map(|p| vec![p]),
            });
        };
        if ports.is_empty() && is_headless(svc) {
            push(None);
            continue;
        }
        for sp in &ports {
            let Some(port) = pod.find_port(sp) else {
                continue;
            };
            push(Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            }));
        }
    }
    subsets
}

/// Upstream's RepackSubsets: one subset per distinct set of addresses,
/// carrying every port those addresses serve; sorted.
pub fn repack(subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    type PortKey = (String, i32, String, Option<String>);
    /// (ip, pod uid)
    type AddrKey = (String, String);
    // address key (ip, uid) -> address
    let mut addrs: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    // port -> address key -> ready
    let mut by_port: BTreeMap<Option<PortKey>, BTreeMap<AddrKey, bool>> = BTreeMap::new();
    for s in subsets {
        let ports: Vec<Option<PortKey>> = match s.ports.as_deref() {
            None | Some([]) => vec![None],
            Some(ps) => ps
                .iter()
                .map(|p| {
                    Some((
                        p.name.clone().unwrap_or_default(),
                        p.port,
                        p.protocol.clone().unwrap_or_default(),
                        p.app_protocol.clone(),
                    ))
                })
                .collect(),
        };
        let lists = [
            (s.addresses.unwrap_or_default(), true),
            (s.not_ready_addresses.unwrap_or_default(), false),
        ];
        for (list, ready) in lists {
            for a in list {
                let key = (
                    a.ip.clone(),
                    a.target_ref
                        .as_ref()
                        .and_then(|r| r.uid.clone())
                        .unwrap_or_default(),
                );
                addrs.entry(key.clone()).or_insert(a);
                for p in &ports {
                    let m = by_port.entry(p.clone()).or_default();
                    // Ready wins over not ready for the same port.
                    let e = m.entry(key.clone()).or_insert(ready);
                    *e = *e || ready;
                }
            }
        }
    }
    // Group ports by identical address sets.
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Vec<Option<PortKey>>> = BTreeMap::new();
    for (port, set) in by_port {
        groups
            .entry(set.into_iter().collect())
            .or_default()
            .push(port);
    }
    let mut out: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(set, ports)| {
            let pick = |want: bool| -> Option<Vec<EndpointAddress>> {
                let v: Vec<EndpointAddress> = set
                    .iter()
                    .filter(|(_, r)| *r == want)
                    .filter_map(|(k, _)| addrs.get(k).cloned())
                    .collect();
                (!v.is_empty()).then_some(v)
            };
            let ports: Vec<EndpointPort> = ports
                .into_iter()
                .flatten()
                .map(|(name, port, protocol, app_protocol)| EndpointPort {
                    name: Some(name),
                    port,
                    protocol: Some(protocol),
                    app_protocol,
                })
                .collect();
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    out.sort_by_key(subset_sort_key);
    out
}

fn subset_sort_key(s: &EndpointSubset) -> (String, Vec<i32>) {
    let first = s
        .addresses
        .iter()
        .chain(s.not_ready_addresses.iter())
        .flatten()
        .map(|a| a.ip.clone())
        .next();
    (
        first.unwrap_or_default(),
        s.ports.iter().flatten().map(|p| p.port).collect(),
    )
}

/// Keep at most MAX_CAPACITY addresses, ready ones first; true if some were dropped.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let total: usize = subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if total <= MAX_CAPACITY {
        return false;
    }
    let mut budget = MAX_CAPACITY;
    for s in subsets.iter_mut() {
        if let Some(a) = s.addresses.as_mut() {
            a.truncate(budget);
            budget -= a.len();
        }
    }
    for s in subsets.iter_mut() {
        if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(budget);
            budget -= a.len();
        }
    }
    true
}

/// Labels of a Service's Endpoints: the Service's, plus the headless and
/// managed-by markers.
pub fn endpoints_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.remove(LABEL_HEADLESS);
    if is_headless(svc) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

async fn sync_service(shared: Arc<Shared<Endpoints>>, key: ServiceKey) -> Result<(), kube::Error> {
    let res = sync_endpoints(&shared, &key).await;
    if res.is_err() {
        // Read the object afresh next time.
        shared.outputs.lock().remove(&key);
    }
    res
}

async fn sync_endpoints(shared: &Shared<Endpoints>, key: &ServiceKey) -> Result<(), kube::Error> {
    let (ns, name) = (&key.0, &key.1);
    let api: Api<Endpoints> = Api::namespaced(shared.client.clone(), ns);
    let (svc, pods) = {
        let st = shared.state.read();
        match st.service(key) {
            Some(svc) => {
                let pods = st.pods_for(&svc);
                (Some(svc), pods)
            }
            None => (None, Vec::new()),
        }
    };
    let Some(svc) = svc else {
        // The Service is gone: so are its Endpoints.
        shared.triggers.lock().forget(key);
        shared.outputs.lock().remove(key);
        return match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        };
    };
    if selector(&svc).is_none() || is_external_name(&svc) {
        shared.outputs.lock().remove(key);
        return Ok(());
    }
    let trigger = shared.triggers.lock().compute(key, &svc, &pods);
    let mut subsets = repack(desired_subsets(&svc, &pods));
    let over = truncate(&mut subsets);
    let cached = shared.outputs.lock().get(key).cloned();
    let current = match cached {
        Some(c) => Some(c),
        None => api.get_opt(name).await?,
    };
    let labels = endpoints_labels(&svc);
    if let Some(cur) = &current {
        let cur_over = cur
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANNOTATION_OVER_CAPACITY));
        let cur_subsets = cur.subsets.clone().unwrap_or_default();
        let same_subsets = cur_subsets == subsets || same(&cur_subsets, &subsets);
        if same_subsets
            && cur.metadata.labels.clone().unwrap_or_default() == labels
            && cur_over == over
        {
            shared.outputs.lock().insert(key.clone(), cur.clone());
            return Ok(());
        }
    }
    let mut ep = current.clone().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    });
    ep.metadata.labels = Some(labels);
    let annotations = ep.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger {
        Some(t) => annotations.insert(ANNOTATION_TRIGGER_TIME.into(), format_trigger_time(t)),
        None => annotations.remove(ANNOTATION_TRIGGER_TIME),
    };
    if over {
        annotations.insert(ANNOTATION_OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(ANNOTATION_OVER_CAPACITY);
    }
    if annotations.is_empty() {
        ep.metadata.annotations = None;
    }
    ep.subsets = (!subsets.is_empty()).then_some(subsets);
    let res = match current {
        Some(_) => api.replace(name, &PostParams::default(), &ep).await,
        None => api.create(&PostParams::default(), &ep).await,
    };
    match res {
        Ok(written) => {
            shared.outputs.lock().insert(key.clone(), written);
            Ok(())
        }
        // Created in a namespace being deleted: nothing to do.
        Err(kube::Error::Api(s)) if s.code == 403 && namespace_terminating(&s) => Ok(()),
        Err(e) => Err(e),
    }
}

fn namespace_terminating(s: &kube::core::Status) -> bool {
    s.message.contains("being terminated")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub(crate) fn pod(name: &str, ip: &str, ready: bool) -> Arc<PodInfo> {
        let p = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()).filter(|s: &String| !s.is_empty()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]).filter(|_| !ip.is_empty()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(
                        jiff::Timestamp::from_second(1_700_000_000).unwrap_or_default(),
                    )),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        };
        Arc::new(PodInfo::from_pod(&p))
    }

    pub(crate) fn service(ports: Vec<ServicePort>, cluster_ip: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("svc-uid".into()),
                labels: Some([("team".to_string(), "a".to_string())].into()),
                creation_timestamp: Some(Time(
                    jiff::Timestamp::from_second(1_600_000_000).unwrap_or_default(),
                )),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                cluster_ip: Some(cluster_ip.into()),
                ports: Some(ports),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub(crate) fn named_port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    #[test]
    fn ready_and_not_ready_pods_split_and_named_ports_resolve() {
        let svc = service(
            vec![
                named_port("http", 80, IntOrString::String("http".into())),
                named_port("metrics", 9090, IntOrString::Int(9100)),
                named_port("missing", 81, IntOrString::String("nope".into())),
            ],
            "10.43.0.10",
        );
        let pods = vec![
            pod("a", "10.42.0.2", true),
            pod("b", "10.42.0.3", false),
            pod("c", "", true),
        ];
        let subsets = repack(desired_subsets(&svc, &pods));
        assert_eq!(subsets.len(), 1, "{subsets:?}");
        let s = &subsets[0];
        let ips = |v: &Option<Vec<EndpointAddress>>| {
            v.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&s.addresses), vec!["10.42.0.2"]);
        assert_eq!(ips(&s.not_ready_addresses), vec!["10.42.0.3"]);
        let mut ports: Vec<(String, i32)> = s
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.port))
            .collect();
        ports.sort();
        assert_eq!(ports, vec![("http".into(), 8080), ("metrics".into(), 9100)]);
        let a = s.addresses.clone().unwrap_or_default().remove(0);
        assert_eq!(a.node_name.as_deref(), Some("node-1"));
        assert_eq!(
            a.target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_pod_ready() {
        let mut svc = service(
            vec![named_port("", 80, IntOrString::Int(8080))],
            "10.43.0.10",
        );
        if let Some(spec) = svc.spec.as_mut() {
            spec.publish_not_ready_addresses = Some(true);
        }
        let subsets = repack(desired_subsets(&svc, &[pod("a", "10.42.0.2", false)]));
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(1));
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn headless_without_ports_lists_addresses_only() {
        let svc = service(vec![], "None");
        let subsets = repack(desired_subsets(
            &svc,
            &[pod("a", "10.42.0.2", true), pod("b", "10.42.0.3", true)],
        ));
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_none());
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            endpoints_labels(&svc)
                .get(LABEL_HEADLESS)
                .map(String::as_str),
            Some("")
        );
        assert_eq!(
            endpoints_labels(&svc)
                .get(LABEL_MANAGED_BY)
                .map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        assert_eq!(
            endpoints_labels(&svc).get("team").map(String::as_str),
            Some("a")
        );
    }

    #[test]
    fn terminating_and_finished_pods_are_left_out() {
        let svc = service(
            vec![named_port("", 80, IntOrString::Int(8080))],
            "10.43.0.10",
        );
        let mut gone = (*pod("a", "10.42.0.2", true)).clone();
        gone.terminating = true;
        let mut done = (*pod("b", "10.42.0.3", false)).clone();
        done.terminal = true;
        assert!(repack(desired_subsets(&svc, &[Arc::new(gone), Arc::new(done)])).is_empty());
    }

    #[test]
    fn repack_groups_addresses_by_port_set() {
        let addr = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let port = |n: &str, p: i32| EndpointPort {
            name: Some(n.into()),
            port: p,
            protocol: Some("TCP".into()),
            app_protocol: None,
        };
        let subsets = vec![
            EndpointSubset {
                addresses: Some(vec![addr("10.0.0.1")]),
                not_ready_addresses: None,
                ports: Some(vec![port("a", 1)]),
            },
            EndpointSubset {
                addresses: Some(vec![addr("10.0.0.1")]),
                not_ready_addresses: None,
                ports: Some(vec![port("b", 2)]),
            },
            EndpointSubset {
                addresses: Some(vec![addr("10.0.0.2")]),
                not_ready_addresses: None,
                ports: Some(vec![port("a", 1)]),
            },
        ];
        let out = repack(subsets);
        assert_eq!(out.len(), 2, "{out:?}");
        // 10.0.0.1 and .2 serve "a"; only .1 serves "b".
        let a = out
            .iter()
            .find(|s| s.ports.iter().flatten().any(|p| p.port == 1))
            .cloned()
            .unwrap_or_default();
        assert_eq!(a.addresses.map(|v| v.len()), Some(2));
        let b = out
            .iter()
            .find(|s| s.ports.iter().flatten().any(|p| p.port == 2))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            b.addresses
                .map(|v| v.into_iter().map(|a| a.ip).collect::<Vec<_>>()),
            Some(vec!["10.0.0.1".to_string()])
        );
    }

    #[test]
    fn endpoints_beyond_capacity_are_truncated() {
        let addrs: Vec<EndpointAddress> = (0..1200)
            .map(|i| EndpointAddress {
                ip: format!("10.0.{}.{}", i / 256, i % 256),
                ..Default::default()
            })
            .collect();
        let mut subsets = vec![EndpointSubset {
            addresses: Some(addrs),
            not_ready_addresses: None,
            ports: None,
        }];
        assert!(truncate(&mut subsets));
        assert_eq!(
            subsets[0].addresses.as_ref().map(Vec::len),
            Some(MAX_CAPACITY)
        );
    }

    #[test]
    fn hostnames_are_published_for_matching_subdomains() {
        let svc = service(vec![], "None");
        let mut p = (*pod("a", "10.42.0.2", true)).clone();
        p.hostname = "a-0".into();
        p.subdomain = "web".into();
        assert_eq!(p.hostname_for(&svc).as_deref(), Some("a-0"));
        p.subdomain = "other".into();
        assert_eq!(p.hostname_for(&svc), None);
    }

    #[test]
    fn trigger_time_is_the_earliest_unseen_change() {
        let svc = service(vec![], "None");
        let key: ServiceKey = ("ns".into(), "web".into());
        let mut t = TriggerTimes::default();
        let pods = vec![pod("a", "10.42.0.2", true)];
        // First sight: the Service's creation is the earliest change.
        assert_eq!(
            t.compute(&key, &svc, &pods),
            Some(jiff::Timestamp::from_second(1_600_000_000).unwrap_or_default())
        );
        // Nothing new.
        assert_eq!(t.compute(&key, &svc, &pods), None);
        let mut changed = (*pods[0]).clone();
        let later = jiff::Timestamp::from_second(1_700_000_500).unwrap_or_default();
        changed.ready_since = Some(later);
        assert_eq!(t.compute(&key, &svc, &[Arc::new(changed)]), Some(later));
    }

    #[test]
    fn canonical_comparison_ignores_unset_spellings() {
        let a = serde_json::json!({"name": "", "port": 80, "x": null, "list": []});
        let b = serde_json::json!({"port": 80});
        assert_eq!(canonical(a), canonical(b));
    }

    #[test]
    fn removal_picks_the_keys_gone() {
        let present = [
            ("a".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
        ];
        let keep: HashSet<Key> = [("a".to_string(), "1".to_string())].into();
        assert_eq!(
            to_remove(present.iter(), &|k| !keep.contains(k)),
            vec![("a".to_string(), "2".to_string())]
        );
    }
}
