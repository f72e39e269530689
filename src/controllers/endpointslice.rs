//! EndpointSlice controller (upstream's endpointslice controller): for
//! every Service with a selector, IPv4 EndpointSlices of at most 100
//! endpoints, one group of slices per set of resolved ports, each endpoint
//! with conditions ready/serving/terminating, nodeName, zone and the pod as
//! targetRef. Slices are labelled kubernetes.io/service-name and
//! endpointslice.kubernetes.io/managed-by, owned by their Service, and
//! changed as little as possible from one sync to the next. A Service with
//! no endpoints keeps one empty placeholder slice, as upstream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PartialObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::debug;

use super::endpoints::{
    self, ANNOTATION_TRIGGER_TIME, LABEL_HEADLESS, PodInfo, ServiceKey, Shared,
    format_trigger_time, is_external_name, is_headless, same, selector,
};

pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Upstream's --max-endpoints-per-slice default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const ADDRESS_TYPE: &str = "IPv4";
const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
const ANNOTATION_TOPOLOGY_HINTS: &str = "service.kubernetes.io/topology-aware-hints";

/// Run until the process ends.
pub async fn run(ctx: Arc<super::Context>) {
    let shared = endpoints::start(ctx.client.clone(), "endpointslice-controller", |s, k| {
        Box::pin(sync_service(s, k))
    })
    .await;
    // Our slices changed or deleted by someone else bring their Service back.
    let api: Api<PartialObjectMeta<EndpointSlice>> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={CONTROLLER_NAME}"));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        let (s, deleted) = match ev {
            Ok(watcher::Event::Apply(s)) | Ok(watcher::Event::InitApply(s)) => (s, false),
            Ok(watcher::Event::Delete(s)) => (s, true),
            Ok(_) => continue,
            Err(e) => {
                debug!("endpointslice watch: {e}");
                continue;
            }
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SERVICE_NAME))
        else {
            continue;
        };
        let key = (ns, svc.clone());
        let ours = shared.outputs.lock().get(&key).is_some_and(|known| {
            let same_name = known.iter().find(|k| k.metadata.name == s.metadata.name);
            match same_name {
                // Our own write, or our own delete.
                Some(k) => !deleted && k.metadata.resource_version == s.metadata.resource_version,
                None => deleted,
            }
        });
        if !ours {
            shared.outputs.lock().remove(&key);
            shared.enqueue_selecting(key);
        }
    }
}

/// The ports of `svc` that `pod` serves (upstream's getEndpointPorts).
fn endpoint_ports(svc: &Service, pod: &PodInfo) -> Vec<EndpointPort> {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    ports
        .iter()
        .filter_map(|sp| {
            let port = pod.find_port(sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// A pod as an endpoint of `svc` (upstream's podToEndpoint).
fn pod_endpoint(svc: &Service, pod: &PodInfo, zones: &HashMap<String, String>) -> Option<Endpoint> {
    let addresses = pod.ipv4();
    if addresses.is_empty() {
        return None;
    }
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let serving = pod.ready;
    let terminating = pod.terminating;
    // "ready" is never true for a terminating pod unless the Service
    // publishes not-ready addresses.
    let ready = publish_not_ready || (serving && !terminating);
    Some(Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: pod.hostname_for(svc),
        node_name: Some(pod.node_name.clone()).filter(|n| !n.is_empty()),
        zone: zones.get(&pod.node_name).cloned(),
        target_ref: Some(pod.target_ref()),
        ..Default::default()
    })
}

/// Canonical form of a port list, the key of a group of slices.
type PortsKey = Vec<(String, i32, String, String)>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut k: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    k.sort();
    k
}

/// Endpoints grouped by the ports they serve.
type Desired = BTreeMap<PortsKey, (Vec<EndpointPort>, Vec<Endpoint>)>;

fn desired(svc: &Service, pods: &[Arc<PodInfo>], zones: &HashMap<String, String>) -> Desired {
    let mut out: Desired = BTreeMap::new();
    for pod in pods {
        // Terminating pods stay, with their conditions saying so.
        if !pod.should_be_in_endpoints(true) {
            continue;
        }
        let Some(ep) = pod_endpoint(svc, pod, zones) else {
            continue;
        };
        let ports = endpoint_ports(svc, pod);
        out.entry(ports_key(&ports))
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(ep);
    }
    if wants_hints(svc) {
        add_zone_hints(&mut out);
    }
    out
}

/// Topology-aware routing asked for: trafficDistribution PreferClose or
/// the topology-mode annotation.
fn wants_hints(svc: &Service) -> bool {
    let prefer_close = svc
        .spec
        .as_ref()
        .and_then(|s| s.traffic_distribution.as_deref())
        == Some("PreferClose");
    let ann = svc.metadata.annotations.as_ref();
    let mode = ann
        .and_then(|a| {
            a.get(ANNOTATION_TOPOLOGY_MODE)
                .or_else(|| a.get(ANNOTATION_TOPOLOGY_HINTS))
        })
        .map(|m| m.to_ascii_lowercase());
    prefer_close || mode.as_deref() == Some("auto")
}

/// Hint each endpoint to its own zone (upstream's PreferClose heuristic),
/// only when every ready endpoint has a zone; otherwise no hints at all.
fn add_zone_hints(d: &mut Desired) {
    let all_zoned = d
        .values()
        .flat_map(|(_, eps)| eps.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .all(|e| e.zone.is_some());
    if !all_zoned {
        return;
    }
    for (_, eps) in d.values_mut() {
        for e in eps.iter_mut() {
            if let Some(z) = &e.zone {
                e.hints = Some(EndpointHints {
                    for_zones: Some(vec![ForZone { name: z.clone() }]),
                    ..Default::default()
                });
            }
        }
    }
}

/// Labels of a Service's slices: its own (without the reserved ones) plus
/// service-name, managed-by and the headless marker.
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != LABEL_SERVICE_NAME && k != LABEL_MANAGED_BY && k != LABEL_HEADLESS)
        .collect();
    if is_headless(svc) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

fn owner_ref(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    let uid = svc.metadata.uid.as_deref().unwrap_or("");
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// Identity of an endpoint across syncs: its pod, else its first address.
fn endpoint_key(e: &Endpoint) -> String {
    e.target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .or_else(|| e.addresses.first().cloned())
        .unwrap_or_default()
}

/// What to write to bring the slices to the desired state.
#[derive(Debug, Default)]
struct Plan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<String>,
}

/// A slice with the given content and the Service's metadata.
fn finish(
    mut s: EndpointSlice,
    svc: &Service,
    ports: &[EndpointPort],
    trigger: Option<&str>,
) -> EndpointSlice {
    s.address_type = ADDRESS_TYPE.into();
    s.ports = Some(ports.to_vec());
    s.metadata.labels = Some(slice_labels(svc));
    s.metadata.owner_references = Some(vec![owner_ref(svc)]);
    let ann = s.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger {
        Some(t) => ann.insert(ANNOTATION_TRIGGER_TIME.into(), t.to_string()),
        None => ann.remove(ANNOTATION_TRIGGER_TIME),
    };
    if ann.is_empty() {
        s.metadata.annotations = None;
    }
    s
}

fn new_slice(svc: &Service) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            ..Default::default()
        },
        address_type: ADDRESS_TYPE.into(),
        endpoints: Vec::new(),
        ports: None,
    }
}

/// Whether `s`'s metadata and ports already are what the Service calls for.
fn meta_current(s: &EndpointSlice, svc: &Service, ports: &[EndpointPort]) -> bool {
    s.metadata.labels.clone().unwrap_or_default() == slice_labels(svc)
        && s.metadata.owner_references.clone().unwrap_or_default() == vec![owner_ref(svc)]
        && ports_key(s.ports.as_deref().unwrap_or_default()) == ports_key(ports)
        && s.address_type == ADDRESS_TYPE
}

/// Upstream's reconciler, simplified: keep every endpoint in the slice it
/// already is in, drop the ones gone, put new ones first into slices being
/// written anyway, then into the fullest slices with room, then into new
/// slices; delete slices left empty and slices of port sets no longer used.
fn plan(
    svc: &Service,
    desired: Desired,
    existing: Vec<EndpointSlice>,
    trigger: Option<&str>,
) -> Plan {
    let mut plan = Plan::default();
    let total: usize = desired.values().map(|(_, e)| e.len()).sum();
    let name_of = |s: &EndpointSlice| s.metadata.name.clone().unwrap_or_default();
    if total == 0 {
        // One empty placeholder slice, as upstream.
        let mut existing = existing.into_iter();
        match existing.next() {
            Some(s) => {
                if !s.endpoints.is_empty() || !meta_current(&s, svc, &[]) {
                    let mut s = finish(s, svc, &[], trigger);
                    s.endpoints = Vec::new();
                    plan.update.push(s);
                }
            }
            None => plan.create.push(finish(new_slice(svc), svc, &[], trigger)),
        }
        plan.delete.extend(existing.map(|s| name_of(&s)));
        return plan;
    }
    let mut by_ports: HashMap<PortsKey, Vec<EndpointSlice>> = HashMap::new();
    let mut placeholder: Option<EndpointSlice> = None;
    for s in existing {
        if placeholder.is_none()
            && s.endpoints.is_empty()
            && s.ports.as_deref().unwrap_or_default().is_empty()
        {
            placeholder = Some(s);
            continue;
        }
        if s.address_type != ADDRESS_TYPE {
            plan.delete.push(name_of(&s));
            continue;
        }
        by_ports
            .entry(ports_key(s.ports.as_deref().unwrap_or_default()))
            .or_default()
            .push(s);
    }
    for (key, (ports, eps)) in desired {
        let order: Vec<String> = eps.iter().map(endpoint_key).collect();
        let mut wanted: HashMap<String, Endpoint> =
            eps.into_iter().map(|e| (endpoint_key(&e), e)).collect();
        // (slice, must be written)
        let mut slices: Vec<(EndpointSlice, bool)> = Vec::new();
        for mut s in by_ports.remove(&key).unwrap_or_default() {
            let kept: Vec<Endpoint> = s
                .endpoints
                .iter()
                .filter_map(|e| wanted.remove(&endpoint_key(e)))
                .collect();
            let changed = (kept != s.endpoints && !same(&kept, &s.endpoints))
                || !meta_current(&s, svc, &ports);
            s.endpoints = kept;
            slices.push((s, changed));
        }
        let mut leftovers: Vec<Endpoint> = order.iter().filter_map(|k| wanted.remove(k)).collect();
        leftovers.reverse();
        // Slices written anyway first, then the fullest.
        slices.sort_by_key(|(s, changed)| (!*changed, std::cmp::Reverse(s.endpoints.len())));
        for (s, changed) in slices.iter_mut() {
            while s.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                let Some(e) = leftovers.pop() else { break };
                s.endpoints.push(e);
                *changed = true;
            }
        }
        for (s, changed) in slices {
            if s.endpoints.is_empty() {
                plan.delete.push(name_of(&s));
            } else if changed {
                plan.update.push(finish(s, svc, &ports, trigger));
            }
        }
        leftovers.reverse();
        for chunk in leftovers.chunks(MAX_ENDPOINTS_PER_SLICE) {
            let mut s = finish(new_slice(svc), svc, &ports, trigger);
            s.endpoints = chunk.to_vec();
            plan.create.push(s);
        }
    }
    for slices in by_ports.into_values() {
        plan.delete.extend(slices.iter().map(name_of));
    }
    // The placeholder becomes the first new slice rather than going.
    if let Some(ph) = placeholder {
        if plan.create.is_empty() {
            plan.delete.push(name_of(&ph));
        } else {
            let mut s = plan.create.remove(0);
            s.metadata.name = ph.metadata.name;
            s.metadata.generate_name = None;
            s.metadata.resource_version = ph.metadata.resource_version;
            s.metadata.uid = ph.metadata.uid;
            s.metadata.creation_timestamp = ph.metadata.creation_timestamp;
            plan.update.push(s);
        }
    }
    plan
}

async fn sync_service(
    shared: Arc<Shared<Vec<EndpointSlice>>>,
    key: ServiceKey,
) -> Result<(), kube::Error> {
    let res = sync_slices(&shared, &key).await;
    if res.is_err() {
        // List the slices afresh next time.
        shared.outputs.lock().remove(&key);
    }
    res
}

async fn sync_slices(
    shared: &Shared<Vec<EndpointSlice>>,
    key: &ServiceKey,
) -> Result<(), kube::Error> {
    let (ns, name) = (&key.0, &key.1);
    let (svc, pods, zones) = {
        let st = shared.state.read();
        match st.service(key) {
            Some(svc) => {
                let pods = st.pods_for(&svc);
                let nodes: HashSet<&str> = pods.iter().map(|p| p.node_name.as_str()).collect();
                let zones: HashMap<String, String> = st
                    .zones
                    .iter()
                    .filter(|(n, _)| nodes.contains(n.as_str()))
                    .map(|(n, z)| (n.clone(), z.clone()))
                    .collect();
                (Some(svc), pods, zones)
            }
            None => (None, Vec::new(), HashMap::new()),
        }
    };
    // A deleted Service's slices go with it through their owner reference.
    let Some(svc) = svc else {
        shared.triggers.lock().forget(key);
        shared.outputs.lock().remove(key);
        return Ok(());
    };
    if selector(&svc).is_none() || is_external_name(&svc) {
        shared.outputs.lock().remove(key);
        return Ok(());
    }
    let trigger = shared
        .triggers
        .lock()
        .compute(key, &svc, &pods)
        .map(format_trigger_time);
    let api: Api<EndpointSlice> = Api::namespaced(shared.client.clone(), ns);
    let cached = shared.outputs.lock().get(key).cloned();
    let existing = match cached {
        Some(v) => v,
        None => {
            let lp = ListParams::default().labels(&format!(
                "{LABEL_SERVICE_NAME}={name},{LABEL_MANAGED_BY}={CONTROLLER_NAME}"
            ));
            api.list(&lp).await?.items
        }
    };
    let (owned, foreign): (Vec<EndpointSlice>, Vec<EndpointSlice>) =
        existing.into_iter().partition(|s| owned_by(s, &svc));
    let mut p = plan(
        &svc,
        desired(&svc, &pods, &zones),
        owned.clone(),
        trigger.as_deref(),
    );
    // Slices of an earlier Service of the same name.
    p.delete
        .extend(foreign.into_iter().filter_map(|s| s.metadata.name));
    // The slices as they will be, kept for the next sync.
    let mut now: Vec<EndpointSlice> = owned;
    let terminating =
        |s: &kube::core::Status| s.code == 403 && s.message.contains("being terminated");
    for s in &p.create {
        match api.create(&PostParams::default(), s).await {
            Ok(created) => now.push(created),
            Err(kube::Error::Api(st)) if terminating(&st) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    for s in &p.update {
        let written = api
            .replace(
                s.metadata.name.as_deref().unwrap_or_default(),
                &PostParams::default(),
                s,
            )
            .await?;
        match now
            .iter_mut()
            .find(|n| n.metadata.name == written.metadata.name)
        {
            Some(n) => *n = written,
            None => now.push(written),
        }
    }
    for n in &p.delete {
        match api.delete(n, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(st)) if st.code == 404 => {}
            Err(e) => return Err(e),
        }
        now.retain(|s| s.metadata.name.as_deref() != Some(n.as_str()));
    }
    shared.outputs.lock().insert(key.clone(), now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::endpoints::tests::{named_port, pod, service};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn web() -> Service {
        service(
            vec![named_port("http", 80, IntOrString::String("http".into()))],
            "10.43.0.10",
        )
    }

    fn pods(n: usize, ready: bool) -> Vec<Arc<PodInfo>> {
        (0..n)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.42.{}.{}", i / 200, i % 200 + 1),
                    ready,
                )
            })
            .collect()
    }

    /// The slices after applying a plan to `existing` (names given to new ones).
    fn apply(existing: Vec<EndpointSlice>, p: &Plan) -> Vec<EndpointSlice> {
        let mut out: Vec<EndpointSlice> = existing
            .into_iter()
            .filter(|s| {
                !p.delete
                    .contains(&s.metadata.name.clone().unwrap_or_default())
            })
            .map(|s| {
                p.update
                    .iter()
                    .find(|u| u.metadata.name == s.metadata.name)
                    .cloned()
                    .unwrap_or(s)
            })
            .collect();
        for (i, c) in p.create.iter().enumerate() {
            let mut c = c.clone();
            c.metadata.name = Some(format!("web-new{i}-{}", out.len()));
            out.push(c);
        }
        out
    }

    #[test]
    fn endpoints_carry_conditions_ports_and_topology() {
        let svc = web();
        let mut ps = pods(2, true);
        let mut not_ready = (*ps[1]).clone();
        not_ready.ready = false;
        ps[1] = Arc::new(not_ready);
        let zones: HashMap<String, String> = [("node-1".to_string(), "zone-a".to_string())].into();
        let d = desired(&svc, &ps, &zones);
        assert_eq!(d.len(), 1);
        let (ports, eps) = d.values().next().cloned().unwrap_or_default();
        assert_eq!(
            ports_key(&ports),
            vec![("http".to_string(), 8080, "TCP".to_string(), String::new())]
        );
        let c0 = eps[0].conditions.clone().unwrap_or_default();
        assert_eq!(
            (c0.ready, c0.serving, c0.terminating),
            (Some(true), Some(true), Some(false))
        );
        let c1 = eps[1].conditions.clone().unwrap_or_default();
        assert_eq!(
            (c1.ready, c1.serving, c1.terminating),
            (Some(false), Some(false), Some(false))
        );
        assert_eq!(eps[0].zone.as_deref(), Some("zone-a"));
        assert_eq!(eps[0].node_name.as_deref(), Some("node-1"));
        assert!(eps[0].hints.is_none());
    }

    #[test]
    fn terminating_pods_stay_as_terminating_endpoints() {
        let svc = web();
        let mut p = (*pods(1, true)[0]).clone();
        p.terminating = true;
        let d = desired(&svc, &[Arc::new(p)], &HashMap::new());
        let c = d
            .values()
            .next()
            .map(|(_, e)| e[0].conditions.clone().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn prefer_close_hints_each_endpoint_to_its_zone() {
        let mut svc = web();
        if let Some(s) = svc.spec.as_mut() {
            s.traffic_distribution = Some("PreferClose".into());
        }
        let zones: HashMap<String, String> = [("node-1".to_string(), "zone-a".to_string())].into();
        let d = desired(&svc, &pods(1, true), &zones);
        let e = &d
            .values()
            .next()
            .map(|(_, e)| e.clone())
            .unwrap_or_default()[0];
        assert_eq!(
            e.hints.as_ref().and_then(|h| h.for_zones.clone()),
            Some(vec![ForZone {
                name: "zone-a".into()
            }])
        );
        // Without zones, no hints.
        let d = desired(&svc, &pods(1, true), &HashMap::new());
        assert!(
            d.values()
                .next()
                .map(|(_, e)| e[0].hints.is_none())
                .unwrap_or(false)
        );
    }

    #[test]
    fn slices_hold_at_most_100_endpoints_and_keep_them_in_place() {
        let svc = web();
        let p = plan(
            &svc,
            desired(&svc, &pods(250, true), &HashMap::new()),
            vec![],
            Some("t"),
        );
        assert_eq!(
            p.create
                .iter()
                .map(|s| s.endpoints.len())
                .collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        let s0 = &p.create[0];
        assert_eq!(s0.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(s0.address_type, "IPv4");
        let labels = s0.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(LABEL_SERVICE_NAME).map(String::as_str),
            Some("web")
        );
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(
            s0.metadata.owner_references.clone().unwrap_or_default(),
            vec![owner_ref(&svc)]
        );
        assert_eq!(
            s0.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_TRIGGER_TIME))
                .map(String::as_str),
            Some("t")
        );
        let slices = apply(vec![], &p);
        // Same state again: nothing to write.
        let again = plan(
            &svc,
            desired(&svc, &pods(250, true), &HashMap::new()),
            slices.clone(),
            None,
        );
        assert!(
            again.create.is_empty() && again.update.is_empty() && again.delete.is_empty(),
            "{again:?}"
        );
        // One pod gone and one new: only the slices concerned change.
        let mut ps = pods(250, true);
        ps.remove(0);
        ps.push(pod("zzz", "10.42.9.9", true));
        let p2 = plan(
            &svc,
            desired(&svc, &ps, &HashMap::new()),
            slices.clone(),
            None,
        );
        assert!(p2.create.is_empty(), "{:?}", p2.create);
        assert_eq!(
            p2.update.len(),
            1,
            "the new endpoint fills the slice that lost one"
        );
        assert_eq!(p2.update[0].endpoints.len(), 100);
        let after = apply(slices, &p2);
        let total: usize = after.iter().map(|s| s.endpoints.len()).sum();
        assert_eq!(total, 250);
    }

    #[test]
    fn no_endpoints_leaves_one_placeholder() {
        let svc = web();
        let p = plan(&svc, desired(&svc, &[], &HashMap::new()), vec![], None);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());
        let slices = apply(vec![], &p);
        let again = plan(
            &svc,
            desired(&svc, &[], &HashMap::new()),
            slices.clone(),
            None,
        );
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
        // Pods appear: the placeholder is reused.
        let p = plan(
            &svc,
            desired(&svc, &pods(3, true), &HashMap::new()),
            slices,
            None,
        );
        assert!(p.create.is_empty());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].endpoints.len(), 3);
    }

    #[test]
    fn a_port_change_replaces_the_slices() {
        let svc = web();
        let slices = apply(
            vec![],
            &plan(
                &svc,
                desired(&svc, &pods(3, true), &HashMap::new()),
                vec![],
                None,
            ),
        );
        let other = service(
            vec![named_port("http", 80, IntOrString::Int(9000))],
            "10.43.0.10",
        );
        let p = plan(
            &other,
            desired(&other, &pods(3, true), &HashMap::new()),
            slices,
            None,
        );
        assert_eq!(p.create.len(), 1);
        assert_eq!(
            p.create[0].ports.as_ref().and_then(|v| v[0].port),
            Some(9000)
        );
        assert_eq!(p.delete.len(), 1);
    }

    #[test]
    fn headless_services_are_labelled() {
        let svc = service(vec![], "None");
        assert_eq!(
            slice_labels(&svc).get(LABEL_HEADLESS).map(String::as_str),
            Some("")
        );
        assert!(!slice_labels(&web()).contains_key(LABEL_HEADLESS));
    }
}
