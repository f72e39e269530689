//! HorizontalPodAutoscaler controller (autoscaling/v2; v1 objects are the
//! same stored objects, converted by the registry). Every sync period
//! (15 s, or `RK3S_HPA_SYNC_PERIOD` seconds) each HPA is reconciled as
//! upstream's controller does: read the target's scale subresource, compute
//! a replica count per metric from the resource metrics API
//! (metrics.k8s.io, through the API like any client), take the largest,
//! stabilize and rate-limit it (`normalize`), write the scale, and report
//! status, conditions (AbleToScale, ScalingActive, ScalingLimited) and
//! events with upstream's reasons and messages.
//!
//! Only resource metrics exist in rk3s (no custom or external metrics
//! API), so Pods, Object and External metrics report that their API is
//! missing, as upstream does when no adapter is installed.

pub mod normalize;
pub mod replicas;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus, MetricSpec,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tracing::debug;

use super::Context;
use super::events::{self, NORMAL, Recorder, WARNING};
use super::job::queue::WorkQueue;
use crate::registry::Catalogue;
use crate::registry::strategy::kinds::quantity;
use normalize::{History, Rules};
use replicas::{Calculator, Metrics, PodInfo, PodMetric};

/// `--horizontal-pod-autoscaler-sync-period`.
const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(15);
/// `--horizontal-pod-autoscaler-downscale-stabilization`.
const DEFAULT_DOWNSCALE_STABILIZATION: Duration = Duration::from_secs(300);

/// Seconds from an environment variable (fractions allowed).
fn env_seconds(name: &str) -> Option<Duration> {
    let v = std::env::var(name).ok()?;
    let s: f64 = v.trim().trim_end_matches('s').parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s))
}

struct Hpa {
    client: kube::Client,
    catalogue: Arc<Catalogue>,
    recorder: Recorder,
    downscale_stabilization: Duration,
    /// Per HPA (namespace/name): recommendations and scale events.
    history: Mutex<HashMap<String, History>>,
}

/// Run until the HPA watch ends.
pub async fn run(ctx: Arc<Context>) {
    let sync = env_seconds("RK3S_HPA_SYNC_PERIOD").unwrap_or(DEFAULT_SYNC_PERIOD);
    let hpa = Arc::new(Hpa {
        client: ctx.client.clone(),
        catalogue: ctx.catalogue.clone(),
        recorder: ctx.recorder("horizontal-pod-autoscaler"),
        downscale_stabilization: env_seconds("RK3S_HPA_DOWNSCALE_STABILIZATION")
            .unwrap_or(DEFAULT_DOWNSCALE_STABILIZATION),
        history: Mutex::new(HashMap::new()),
    });
    let queue: Arc<WorkQueue<String>> = Arc::new(WorkQueue::default());
    let worker = {
        let (hpa, queue) = (hpa.clone(), queue.clone());
        tokio::spawn(async move {
            loop {
                let key = queue.next().await;
                match hpa.reconcile(&key).await {
                    Ok(true) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), sync);
                    }
                    Ok(false) => {
                        queue.forget(&key);
                        hpa.history.lock().remove(&key);
                    }
                    Err(e) => {
                        debug!(hpa = %key, "horizontal-pod-autoscaler: {e}");
                        // Still resynced on schedule, not sooner: upstream
                        // retries failed HPAs at the sync period.
                        queue.add_after(key.clone(), sync);
                    }
                }
                queue.done(&key);
            }
        })
    };
    let api: Api<HorizontalPodAutoscaler> = Api::all(ctx.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            // Upstream enqueues every change with the sync period's delay:
            // an HPA is evaluated at most once per period, status writes
            // included.
            Ok(watcher::Event::Apply(h)) | Ok(watcher::Event::InitApply(h)) => {
                queue.add_after(key_of(&h), sync);
            }
            Ok(watcher::Event::Delete(h)) => {
                hpa.history.lock().remove(&key_of(&h));
            }
            Ok(_) => {}
            Err(e) => debug!("horizontal-pod-autoscaler watch: {e}"),
        }
    }
    worker.abort();
}

fn key_of(h: &HorizontalPodAutoscaler) -> String {
    format!(
        "{}/{}",
        h.metadata.namespace.as_deref().unwrap_or(""),
        h.metadata.name.as_deref().unwrap_or("")
    )
}

fn err_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Conditions as upstream's `setCondition` keeps them: in first-set order,
/// the transition time moving only when the status does.
struct Conditions {
    list: Vec<Value>,
    now: Timestamp,
}

impl Conditions {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let st = if status { "True" } else { "False" };
        let now = self.now.round(jiff::Unit::Second).unwrap_or(self.now);
        match self.list.iter_mut().find(|c| c["type"] == type_) {
            Some(c) => {
                if c["status"] != st {
                    c["lastTransitionTime"] = json!(now.to_string());
                }
                c["status"] = json!(st);
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
            None => self.list.push(json!({
                "type": type_, "status": st, "lastTransitionTime": now.to_string(),
                "reason": reason, "message": message,
            })),
        }
    }
}

/// A metric that could not be evaluated: the ScalingActive condition it
/// calls for and the error.
struct MetricError {
    reason: &'static str,
    /// For the event and the condition.
    message: String,
    /// For the aggregate error (FailedComputeMetricsReplicas).
    wrapped: String,
}

/// One metric's proposal.
struct Proposal {
    replicas: i32,
    name: String,
    status: Value,
}

/// The scaling rules of `behavior`, with the controller's defaults for
/// what is unset (the API server defaults most of them already).
fn rules(r: Option<&HPAScalingRules>, default: Rules) -> Rules {
    let Some(r) = r else { return default };
    Rules {
        stabilization: r
            .stabilization_window_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            .unwrap_or(default.stabilization),
        select: r.select_policy.clone().unwrap_or(default.select),
        policies: match &r.policies {
            Some(p) => p
                .iter()
                .map(|p| {
                    (
                        p.type_.clone(),
                        p.value,
                        Duration::from_secs(u64::try_from(p.period_seconds).unwrap_or(0)),
                    )
                })
                .collect(),
            None => default.policies,
        },
    }
}

/// A quantity's MilliValue (rounded up, as upstream).
fn milli(q: &str) -> Option<i64> {
    let nano = quantity::parse(q).ok()?.0;
    let m = if nano >= 0 {
        (nano + 999_999) / 1_000_000
    } else {
        nano / 1_000_000
    };
    i64::try_from(m).ok()
}

/// milli-units as a canonical decimal quantity, as `NewMilliQuantity(_,
/// DecimalSI)` prints: "250m", "2", "67108864", "3k".
fn milli_quantity(m: i64) -> String {
    if m % 1000 != 0 {
        return format!("{m}m");
    }
    let mut v = m / 1000;
    if v == 0 {
        return "0".into();
    }
    for suffix in ["", "k", "M", "G", "T", "P"] {
        if v % 1000 != 0 {
            return format!("{v}{suffix}");
        }
        v /= 1000;
    }
    format!("{v}E")
}

/// A Go duration as metrics-server writes windows ("15s", "1m0s", "10.5s").
fn go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

/// `getPodMetrics` / `getContainerMetrics`: each pod's usage of `resource`
/// in milli-units, summed over its containers (or the one named); pods
/// missing a container's figure are left out.
fn pod_metrics(
    items: &[Value],
    resource: &str,
    container: Option<&str>,
) -> Result<Metrics, String> {
    let mut out = Metrics::new();
    for m in items {
        let name = m
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let timestamp = m
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .unwrap_or_else(Timestamp::now);
        let window = m
            .get("window")
            .and_then(Value::as_str)
            .and_then(go_duration)
            .unwrap_or_default();
        let containers = m
            .get("containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let value = match container {
            Some(c) => {
                let Some(cm) = containers.iter().find(|x| x["name"] == c) else {
                    return Err(format!(
                        "failed to get container metrics: container {c} not present in metrics for pod {}/{name}",
                        m.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ));
                };
                match cm
                    .pointer(&format!("/usage/{resource}"))
                    .and_then(Value::as_str)
                    .and_then(milli)
                {
                    Some(v) => v,
                    None => continue,
                }
            }
            None => {
                let mut sum = 0i64;
                let mut missing = false;
                for c in &containers {
                    match c
                        .pointer(&format!("/usage/{resource}"))
                        .and_then(Value::as_str)
                        .and_then(milli)
                    {
                        Some(v) => sum = sum.saturating_add(v),
                        None => {
                            missing = true;
                            break;
                        }
                    }
                }
                if missing {
                    continue;
                }
                sum
            }
        };
        out.insert(
            name.to_string(),
            PodMetric {
                value,
                timestamp,
                window,
            },
        );
    }
    Ok(out)
}

/// What the calculator needs of a pod, for `resource` (and one container).
fn pod_info(pod: &Pod, resource: &str, container: Option<&str>) -> PodInfo {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| {
            (
                c.status == "True",
                c.last_transition_time
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or(Timestamp::UNIX_EPOCH),
            )
        });
    let requests = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| container.is_none_or(|n| c.name == n))
        .map(|c| {
            let req = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| milli(&q.0));
            (c.name.clone(), req)
        })
        .collect();
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into()),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready,
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        requests,
    }
}

impl Hpa {
    /// The scale subresource's API for the target: the catalogue's
    /// resource of that kind (in the group of its apiVersion) with `scale`.
    fn scale_api(
        &self,
        ns: &str,
        api_version: &str,
        kind: &str,
    ) -> Result<Api<DynamicObject>, String> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let def = self
            .catalogue
            .all()
            .into_iter()
            .find(|d| {
                d.kind == kind
                    && d.group == group
                    && (version.is_empty() || d.version == version)
                    && d.has_subresource("scale")
            })
            .ok_or_else(|| format!("no matches for kind \"{kind}\" in group \"{group}\""))?;
        let ar = ApiResource {
            group: def.group.clone(),
            version: def.version.clone(),
            api_version: def.api_version(),
            kind: def.kind.clone(),
            plural: def.plural.clone(),
        };
        Ok(Api::namespaced_with(self.client.clone(), ns, &ar))
    }

    async fn pods(&self, ns: &str, selector: &str) -> Result<Vec<Pod>, String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .map_err(|e| {
                format!(
                    "unable to get pods while calculating replica count: {}",
                    err_text(&e)
                )
            })
    }

    /// `GetResourceMetric`: PodMetrics of the selected pods.
    async fn resource_metric(
        &self,
        ns: &str,
        selector: &str,
        resource: &str,
        container: Option<&str>,
    ) -> Result<Metrics, String> {
        let path = format!(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector={}",
            percent_encoding::utf8_percent_encode(selector, percent_encoding::NON_ALPHANUMERIC)
        );
        let req = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let list: Value = self.client.request(req).await.map_err(|e| {
            format!(
                "unable to fetch metrics from resource metrics API: {}",
                err_text(&e)
            )
        })?;
        let items = list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if items.is_empty() {
            return Err("no metrics returned from resource metrics API".into());
        }
        pod_metrics(&items, resource, container)
    }

    /// `computeStatusForResourceMetricGeneric`, for Resource and
    /// ContainerResource metrics.
    async fn resource_proposal(
        &self,
        ns: &str,
        selector: &str,
        current: i32,
        resource: &str,
        container: Option<&str>,
        target: &k8s_openapi::api::autoscaling::v2::MetricTarget,
    ) -> Result<(i32, String, Value), String> {
        let calc = Calculator::new(Timestamp::now());
        let current_value = |avg: i64, util: Option<i32>| {
            let mut v = json!({"averageValue": milli_quantity(avg)});
            if let Some(u) = util {
                v["averageUtilization"] = json!(u);
            }
            v
        };
        if let Some(avg) = &target.average_value {
            let target_milli = milli(&avg.0).unwrap_or(0);
            let (n, usage) = async {
                let metrics = self
                    .resource_metric(ns, selector, resource, container)
                    .await
                    .map_err(|e| format!("unable to get metrics for resource {resource}: {e}"))?;
                let pods = self.pods(ns, selector).await?;
                let infos: Vec<PodInfo> = pods
                    .iter()
                    .map(|p| pod_info(p, resource, container))
                    .collect();
                calc.raw_resource_replicas(current, target_milli, resource, &infos, metrics)
            }
            .await
            .map_err(|e| format!("failed to get {resource} usage: {e}"))?;
            return Ok((
                n,
                format!("{resource} resource"),
                current_value(usage, None),
            ));
        }
        let Some(util) = target.average_utilization else {
            return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into());
        };
        let r = async {
            let metrics = self
                .resource_metric(ns, selector, resource, container)
                .await
                .map_err(|e| format!("unable to get metrics for resource {resource}: {e}"))?;
            let pods = self.pods(ns, selector).await?;
            let infos: Vec<PodInfo> = pods
                .iter()
                .map(|p| pod_info(p, resource, container))
                .collect();
            calc.resource_replicas(current, util, resource, &infos, metrics)
        }
        .await
        .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
        let name = if container.is_some() {
            format!("{resource} container resource utilization (percentage of request)")
        } else {
            format!("{resource} resource utilization (percentage of request)")
        };
        Ok((
            r.replicas,
            name,
            current_value(r.raw_average, Some(r.utilization)),
        ))
    }

    /// `computeReplicasForMetric`.
    async fn metric_proposal(
        &self,
        hpa: &HorizontalPodAutoscaler,
        spec: &MetricSpec,
        selector: &str,
        current: i32,
    ) -> Result<Proposal, MetricError> {
        let ns = hpa.metadata.namespace.as_deref().unwrap_or("");
        let what = match spec.type_.as_str() {
            "Resource" => format!(
                "{} resource metric",
                spec.resource
                    .as_ref()
                    .map(|r| r.name.as_str())
                    .unwrap_or("")
            ),
            "ContainerResource" => format!(
                "{} container metric",
                spec.container_resource
                    .as_ref()
                    .map(|r| r.name.as_str())
                    .unwrap_or("")
            ),
            "Pods" => "pods metric".into(),
            "Object" => "object metric".into(),
            "External" => "external metric".into(),
            _ => "metric".into(),
        };
        let fail = |reason: &'static str, e: String| MetricError {
            reason,
            wrapped: format!("failed to get {what} value: {e}"),
            message: e,
        };
        match spec.type_.as_str() {
            "Resource" => {
                let Some(r) = &spec.resource else {
                    return Err(fail(
                        "FailedGetResourceMetric",
                        "failed to get resource metric value: no resource metric source".into(),
                    ));
                };
                let (replicas, name, cur) = self
                    .resource_proposal(ns, selector, current, &r.name, None, &r.target)
                    .await
                    .map_err(|e| fail("FailedGetResourceMetric", e))?;
                Ok(Proposal {
                    replicas,
                    name,
                    status: json!({"type": "Resource", "resource": {"name": r.name, "current": cur}}),
                })
            }
            "ContainerResource" => {
                let Some(r) = &spec.container_resource else {
                    return Err(fail(
                        "FailedGetContainerResourceMetric",
                        "failed to get container resource metric value: no container resource metric source".into(),
                    ));
                };
                let (replicas, name, cur) = self
                    .resource_proposal(
                        ns,
                        selector,
                        current,
                        &r.name,
                        Some(&r.container),
                        &r.target,
                    )
                    .await
                    .map_err(|e| fail("FailedGetContainerResourceMetric", e))?;
                Ok(Proposal {
                    replicas,
                    name,
                    status: json!({"type": "ContainerResource", "containerResource": {"name": r.name, "container": r.container, "current": cur}}),
                })
            }
            "Pods" => {
                let name = spec
                    .pods
                    .as_ref()
                    .map(|p| p.metric.name.clone())
                    .unwrap_or_default();
                Err(fail(
                    "FailedGetPodsMetric",
                    format!(
                        "unable to get metric {name}: unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered"
                    ),
                ))
            }
            "Object" => {
                let name = spec
                    .object
                    .as_ref()
                    .map(|p| p.metric.name.clone())
                    .unwrap_or_default();
                Err(fail(
                    "FailedGetObjectMetric",
                    format!(
                        "unable to get metric {name}: unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered"
                    ),
                ))
            }
            "External" => {
                let name = spec
                    .external
                    .as_ref()
                    .map(|p| p.metric.name.clone())
                    .unwrap_or_default();
                Err(fail(
                    "FailedGetExternalMetric",
                    format!(
                        "unable to get external metric {ns}/{name}: unable to fetch metrics from external metrics API: no external metrics API (external.metrics.k8s.io) registered"
                    ),
                ))
            }
            other => Err(fail(
                "InvalidMetricSourceType",
                format!("unknown metric source type \"{other}\""),
            )),
        }
    }

    /// Reconcile one HPA; false if it no longer exists.
    async fn reconcile(&self, key: &str) -> Result<bool, String> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(false);
        };
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), ns);
        let Some(hpa) = api.get_opt(name).await.map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        if hpa.metadata.deletion_timestamp.is_some() {
            return Ok(true);
        }
        let now = Timestamp::now();
        let reference = events::reference(&hpa);
        let spec = hpa.spec.clone().unwrap_or_default();
        let old_status = hpa.status.clone().unwrap_or_default();
        let mut conds = Conditions {
            list: old_status
                .conditions
                .as_ref()
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| serde_json::to_value(c).ok())
                        .collect()
                })
                .unwrap_or_default(),
            now,
        };
        let target = &spec.scale_target_ref;
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;

        let got: Result<(Api<DynamicObject>, Scale), String> = async {
            let a = self.scale_api(
                ns,
                target.api_version.as_deref().unwrap_or(""),
                &target.kind,
            )?;
            let s = a.get_scale(&target.name).await.map_err(|e| err_text(&e))?;
            Ok((a, s))
        }
        .await;
        let (scale_api, scale) = match got {
            Ok(x) => x,
            Err(e) => {
                conds.set(
                    "AbleToScale",
                    false,
                    "FailedGetScale",
                    &format!(
                        "the HPA controller was unable to get the target's current scale: {e}"
                    ),
                );
                self.recorder
                    .publish(&reference, WARNING, "FailedGetScale", &e)
                    .await;
                let mut st = old_status.clone();
                st.conditions = typed_conditions(&conds.list);
                self.write_status(&api, &hpa, &old_status, st).await?;
                return Err(format!("failed to query scale subresource for {key}: {e}"));
            }
        };
        conds.set(
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        self.history
            .lock()
            .entry(key.to_string())
            .or_default()
            .init(current, now);

        let mut metric_statuses: Vec<Value> = Vec::new();
        let mut rescale_reason = String::new();
        let mut desired;
        let rescale;
        if current == 0 && min != 0 {
            desired = 0;
            rescale = false;
            conds.set(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            );
        } else if current > max {
            rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
            desired = max;
            rescale = true;
        } else if current < min {
            rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
            desired = min;
            rescale = true;
        } else {
            let computed = self
                .replicas_for_metrics(&hpa, &selector, current, &mut conds, &reference)
                .await;
            let (metric_desired, metric_name) = match computed {
                Ok((n, name, statuses)) => {
                    metric_statuses = statuses;
                    (n, name)
                }
                Err((e, statuses)) => {
                    let mut st = old_status.clone();
                    st.current_replicas = Some(current);
                    st.current_metrics = typed_metrics(&statuses);
                    st.conditions = typed_conditions(&conds.list);
                    self.write_status(&api, &hpa, &old_status, st).await?;
                    self.recorder
                        .publish(&reference, WARNING, "FailedComputeMetricsReplicas", &e)
                        .await;
                    return Err(format!(
                        "failed to compute desired number of replicas based on listed metrics for {}/{}: {e}",
                        target.kind, target.name
                    ));
                }
            };
            desired = metric_desired;
            if desired > current {
                rescale_reason = format!("{metric_name} above target");
            }
            if desired < current {
                rescale_reason = "All metrics below target".into();
            }
            let normalized = {
                let mut history = self.history.lock();
                let h = history.entry(key.to_string()).or_default();
                match &spec.behavior {
                    None => h.normalize(
                        now,
                        self.downscale_stabilization,
                        current,
                        desired,
                        min,
                        max,
                    ),
                    Some(b) => h.normalize_with_behavior(
                        now,
                        &rules(b.scale_up.as_ref(), Rules::default_up()),
                        &rules(
                            b.scale_down.as_ref(),
                            Rules::default_down(self.downscale_stabilization),
                        ),
                        current,
                        desired,
                        min,
                        max,
                    ),
                }
            };
            let (ok, reason, message) = normalized.able_to_scale;
            conds.set("AbleToScale", ok, reason, message);
            let (ok, reason, message) = normalized.scaling_limited;
            conds.set("ScalingLimited", ok, reason, message);
            desired = normalized.replicas;
            rescale = desired != current;
        }

        let mut last_scale_time = old_status.last_scale_time.clone();
        if rescale {
            let patch = kube::api::Patch::Merge(json!({"spec": {"replicas": desired}}));
            match scale_api
                .patch_scale(&target.name, &kube::api::PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {
                    conds.set(
                        "AbleToScale",
                        true,
                        "SucceededRescale",
                        &format!(
                            "the HPA controller was able to update the target scale to {desired}"
                        ),
                    );
                    self.recorder
                        .publish(
                            &reference,
                            NORMAL,
                            "SuccessfulRescale",
                            &format!("New size: {desired}; reason: {rescale_reason}"),
                        )
                        .await;
                    if let Some(b) = &spec.behavior {
                        let up = rules(b.scale_up.as_ref(), Rules::default_up());
                        let down = rules(
                            b.scale_down.as_ref(),
                            Rules::default_down(self.downscale_stabilization),
                        );
                        self.history
                            .lock()
                            .entry(key.to_string())
                            .or_default()
                            .store_event(&up, &down, current, desired, now);
                    }
                    last_scale_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        now.round(jiff::Unit::Second).unwrap_or(now),
                    ));
                }
                Err(e) => {
                    let e = err_text(&e);
                    self.recorder
                        .publish(
                            &reference,
                            WARNING,
                            "FailedRescale",
                            &format!("New size: {desired}; reason: {rescale_reason}; error: {e}"),
                        )
                        .await;
                    conds.set(
                        "AbleToScale",
                        false,
                        "FailedUpdateScale",
                        &format!("the HPA controller was unable to update the target scale: {e}"),
                    );
                    let mut st = old_status.clone();
                    st.current_replicas = Some(current);
                    st.current_metrics = typed_metrics(&metric_statuses);
                    st.conditions = typed_conditions(&conds.list);
                    self.write_status(&api, &hpa, &old_status, st).await?;
                    return Err(format!("failed to rescale {key}: {e}"));
                }
            }
        } else {
            desired = if current == 0 && min != 0 { 0 } else { current };
        }
        let st = HorizontalPodAutoscalerStatus {
            current_replicas: Some(current),
            desired_replicas: desired,
            last_scale_time,
            current_metrics: typed_metrics(&metric_statuses),
            conditions: typed_conditions(&conds.list),
            observed_generation: None,
        };
        self.write_status(&api, &hpa, &old_status, st).await?;
        Ok(true)
    }

    /// `computeReplicasForMetrics`: the largest proposal over the metrics,
    /// or an error (with the statuses so far) when every metric failed or
    /// a failure would let the others scale down.
    async fn replicas_for_metrics(
        &self,
        hpa: &HorizontalPodAutoscaler,
        selector: &str,
        current: i32,
        conds: &mut Conditions,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
    ) -> Result<(i32, String, Vec<Value>), (String, Vec<Value>)> {
        if selector.is_empty() {
            self.recorder
                .publish(
                    reference,
                    WARNING,
                    "SelectorRequired",
                    "selector is required",
                )
                .await;
            conds.set(
                "ScalingActive",
                false,
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
            );
            return Err(("selector is required".into(), Vec::new()));
        }
        if let Err(e) = crate::api::selectors::LabelSelector::parse(selector) {
            let msg = format!(
                "couldn't convert selector into a corresponding internal selector object: {e}"
            );
            self.recorder
                .publish(reference, WARNING, "InvalidSelector", &msg)
                .await;
            conds.set("ScalingActive", false, "InvalidSelector", &msg);
            return Err((msg, Vec::new()));
        }
        let specs = hpa
            .spec
            .as_ref()
            .and_then(|s| s.metrics.clone())
            .unwrap_or_default();
        let mut statuses: Vec<Value> = vec![json!({"type": ""}); specs.len()];
        let (mut replicas, mut metric) = (0i32, String::new());
        let mut invalid = 0usize;
        let mut first_error: Option<MetricError> = None;
        for (i, spec) in specs.iter().enumerate() {
            match self.metric_proposal(hpa, spec, selector, current).await {
                Ok(p) => {
                    statuses[i] = p.status;
                    if replicas == 0 || p.replicas > replicas {
                        replicas = p.replicas;
                        metric = p.name;
                    }
                }
                Err(e) => {
                    self.recorder
                        .publish(reference, WARNING, e.reason, &e.message)
                        .await;
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                    invalid += 1;
                }
            }
        }
        if let Some(e) = &first_error
            && (invalid >= specs.len() || replicas < current)
        {
            conds.set(
                "ScalingActive",
                false,
                e.reason,
                &format!(
                    "the HPA was unable to compute the replica count: {}",
                    e.message
                ),
            );
            return Err((
                format!(
                    "invalid metrics ({invalid} invalid out of {}), first error is: {}",
                    specs.len(),
                    e.wrapped
                ),
                statuses,
            ));
        }
        if specs.is_empty() {
            return Err(("no metrics".into(), statuses));
        }
        conds.set(
            "ScalingActive",
            true,
            "ValidMetricFound",
            &format!("the HPA was able to successfully calculate a replica count from {metric}"),
        );
        Ok((replicas, metric, statuses))
    }

    /// `updateStatusIfNeeded`.
    async fn write_status(
        &self,
        api: &Api<HorizontalPodAutoscaler>,
        hpa: &HorizontalPodAutoscaler,
        old: &HorizontalPodAutoscalerStatus,
        new: HorizontalPodAutoscalerStatus,
    ) -> Result<(), String> {
        if *old == new {
            return Ok(());
        }
        let mut obj = hpa.clone();
        obj.status = Some(new);
        api.replace_status(
            obj.metadata.name.as_deref().unwrap_or(""),
            &PostParams::default(),
            &obj,
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("failed to update status: {}", err_text(&e)))
    }
}

fn typed_conditions(
    list: &[Value],
) -> Option<Vec<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerCondition>> {
    let v: Vec<_> = list
        .iter()
        .filter_map(|c| serde_json::from_value(c.clone()).ok())
        .collect();
    (!v.is_empty()).then_some(v)
}

fn typed_metrics(list: &[Value]) -> Option<Vec<k8s_openapi::api::autoscaling::v2::MetricStatus>> {
    let v: Vec<_> = list
        .iter()
        .filter_map(|c| serde_json::from_value(c.clone()).ok())
        .collect();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_windows() {
        assert_eq!(milli("250m"), Some(250));
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("1500000n"), Some(2));
        assert_eq!(milli("64Mi"), Some(67_108_864_000));
        assert_eq!(milli_quantity(250), "250m");
        assert_eq!(milli_quantity(2000), "2");
        assert_eq!(milli_quantity(67_108_864_000), "67108864");
        assert_eq!(milli_quantity(3_000_000), "3k");
        assert_eq!(milli_quantity(0), "0");
        assert_eq!(go_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(go_duration("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(go_duration("10.5s"), Some(Duration::from_millis(10_500)));
        assert_eq!(go_duration("x"), None);
    }

    #[test]
    fn pod_metrics_sum_containers_and_skip_incomplete() {
        let items = vec![
            json!({"metadata": {"name": "a", "namespace": "d"}, "timestamp": "2025-01-01T00:00:00Z", "window": "5s",
                   "containers": [{"name": "x", "usage": {"cpu": "100m", "memory": "1Mi"}},
                                  {"name": "y", "usage": {"cpu": "50m", "memory": "1Mi"}}]}),
            json!({"metadata": {"name": "b", "namespace": "d"}, "timestamp": "2025-01-01T00:00:00Z", "window": "5s",
                   "containers": [{"name": "x", "usage": {"memory": "1Mi"}}]}),
        ];
        let m = pod_metrics(&items, "cpu", None).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m["a"].value, 150);
        assert_eq!(m["a"].window, Duration::from_secs(5));
        let m = pod_metrics(&items, "cpu", Some("y"));
        assert_eq!(
            m.err().as_deref(),
            Some("failed to get container metrics: container y not present in metrics for pod d/b")
        );
    }

    #[test]
    fn behavior_rules_fill_defaults() {
        let r: HPAScalingRules =
            serde_json::from_value(json!({"stabilizationWindowSeconds": 30})).unwrap();
        let got = rules(Some(&r), Rules::default_down(Duration::from_secs(300)));
        assert_eq!(got.stabilization, Duration::from_secs(30));
        assert_eq!(got.select, "Max");
        assert_eq!(got.policies, Rules::default_down(Duration::ZERO).policies);
        assert_eq!(rules(None, Rules::default_up()), Rules::default_up());
    }
}
