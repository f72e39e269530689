//! metrics.k8s.io/v1beta1 served in process, as metrics-server serves it
//! through an APIService upstream: NodeMetrics (`nodes`, cluster-scoped) and
//! PodMetrics (`pods`, namespaced), get and list only, from the usage node
//! agents publish in the `MetricsRegistry` (see `node::metrics`).
//!
//! Objects are joined with the Node and Pod objects of the store, so label
//! and field selectors select as they do on nodes and pods, metrics carry
//! their object's labels, and only objects that exist have metrics. An
//! object without a sample (a node that does not report, a pod that is not
//! running) has no metrics: lists leave it out, gets answer 404, as
//! metrics-server does.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiState;
use super::handlers::{json_response, partial_metadata};
use super::request::{Output, Query};
use super::status::{ApiError, Target};
use super::table::IncludeObject;
use crate::node::metrics::{NodeSample, PodSample, cpu_quantity, memory_quantity, window_text};
use crate::registry::generic::ReadAt;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
const GROUP_PATH: &str = "/apis/metrics.k8s.io";

const NODES: Target<'static> = Target {
    group: "metrics.k8s.io",
    resource: "nodemetrics",
    kind: "NodeMetrics",
};
const PODS: Target<'static> = Target {
    group: "metrics.k8s.io",
    resource: "podmetrics",
    kind: "PodMetrics",
};

/// Whether `path` belongs to this group (the router sends those here).
pub fn handles(path: &str) -> bool {
    path == GROUP_PATH
        || path
            .strip_prefix(GROUP_PATH)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The group in an APIGroupList (/apis) or alone (/apis/metrics.k8s.io).
pub fn api_group() -> Value {
    let gv = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"name": GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

/// The group's entry in aggregated discovery (apidiscovery.k8s.io).
pub fn aggregated_group() -> Value {
    let res = |plural: &str, singular: &str, kind: &str, scope: &str| {
        json!({
            "resource": plural,
            "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
            "scope": scope,
            "singularResource": singular,
            "verbs": ["get", "list"],
        })
    };
    json!({
        "metadata": {"name": GROUP, "creationTimestamp": null},
        "versions": [{
            "version": VERSION,
            "resources": [
                res("nodes", "nodemetrics", "NodeMetrics", "Cluster"),
                res("pods", "podmetrics", "PodMetrics", "Namespaced"),
            ],
            "freshness": "Current",
        }],
    })
}

fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            {"name": "nodes", "singularName": "nodemetrics", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "podmetrics", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

/// Serve a request whose path `handles` accepted.
pub async fn serve(st: &Arc<ApiState>, req: Request) -> Response {
    match serve_inner(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

enum Path {
    Group,
    Version,
    Nodes(Option<String>),
    Pods(Option<String>, Option<String>),
}

fn parse_path(path: &str) -> Result<Path, ApiError> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["apis", GROUP] => Ok(Path::Group),
        ["apis", GROUP, VERSION] => Ok(Path::Version),
        ["apis", GROUP, VERSION, "nodes"] => Ok(Path::Nodes(None)),
        ["apis", GROUP, VERSION, "nodes", name] => Ok(Path::Nodes(Some(name.to_string()))),
        ["apis", GROUP, VERSION, "pods"] => Ok(Path::Pods(None, None)),
        ["apis", GROUP, VERSION, "namespaces", ns, "pods"] => {
            Ok(Path::Pods(Some(ns.to_string()), None))
        }
        ["apis", GROUP, VERSION, "namespaces", ns, "pods", name] => {
            Ok(Path::Pods(Some(ns.to_string()), Some(name.to_string())))
        }
        _ => Err(ApiError::not_found_path()),
    }
}

async fn serve_inner(st: &Arc<ApiState>, req: Request) -> Result<Response, ApiError> {
    let path = parse_path(req.uri().path())?;
    let q = Query::parse(req.uri().query())?;
    let not_allowed = |what: &str| {
        ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({what})"
        ))
    };
    let what = match &path {
        Path::Nodes(_) => "nodes.metrics.k8s.io",
        Path::Pods(..) => "pods.metrics.k8s.io",
        _ => "",
    };
    if req.method() != Method::GET {
        return Err(if what.is_empty() {
            ApiError::method_not_allowed("only GET is allowed")
        } else {
            not_allowed(what)
        });
    }
    // Metrics are a snapshot: there is nothing to watch.
    if q.flag("watch") {
        return Err(not_allowed(what));
    }
    let out = super::request::negotiate(req.headers())?;
    match path {
        Path::Group => {
            let mut g = api_group();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            Ok(json_response(StatusCode::OK, &g))
        }
        Path::Version => Ok(json_response(StatusCode::OK, &resource_list())),
        Path::Nodes(name) => {
            let items = node_metrics(st, &q, name.as_deref()).await?;
            match name {
                Some(n) => {
                    let obj = items
                        .into_iter()
                        .next()
                        .ok_or_else(|| ApiError::not_found(NODES, &n))?;
                    render_one(obj, out, &q)
                }
                None => render_list("NodeMetricsList", items, out, &q),
            }
        }
        Path::Pods(ns, name) => {
            let items = pod_metrics(st, &q, ns.as_deref(), name.as_deref()).await?;
            match name {
                Some(n) => {
                    let obj = items.into_iter().next().ok_or_else(|| {
                        ApiError::not_found(PODS, &format!("{}/{n}", ns.unwrap_or_default()))
                    })?;
                    render_one(obj, out, &q)
                }
                None => render_list("PodMetricsList", items, out, &q),
            }
        }
    }
}

/// Objects of a core kind matching the request's selectors, or the one named.
async fn objects(
    st: &ApiState,
    plural: &str,
    q: &Query,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let def = st
        .catalogue
        .get("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("no {plural} resource")))?;
    if let Some(name) = name {
        return match st.registry.get(&def, ns, name, ReadAt::Latest).await {
            Ok(o) => Ok(vec![o]),
            Err(e) if e.code == 404 => Ok(Vec::new()),
            Err(e) => Err(e),
        };
    }
    let mut lq = q.list_query()?;
    // Metrics lists are never paged.
    lq.limit = None;
    lq.continue_token = None;
    lq.read_at = ReadAt::Latest;
    Ok(st.registry.list(&def, ns, &lq).await?.items)
}

fn metadata(obj: &Value, namespaced: bool) -> Value {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now());
    let mut m = json!({
        "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "creationTimestamp": now.to_string(),
    });
    if namespaced {
        m["namespace"] = obj
            .pointer("/metadata/namespace")
            .cloned()
            .unwrap_or(Value::Null);
    }
    if let Some(l) = obj.pointer("/metadata/labels").filter(|l| !l.is_null()) {
        m["labels"] = l.clone();
    }
    m
}

fn timestamp(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

fn node_object(node: &Value, s: &NodeSample) -> Value {
    json!({
        "kind": "NodeMetrics", "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(node, false),
        "timestamp": timestamp(s.timestamp),
        "window": window_text(s.window),
        "usage": {"cpu": cpu_quantity(s.usage.cpu_nanocores), "memory": memory_quantity(s.usage.memory_bytes)},
    })
}

fn pod_object(pod: &Value, s: &PodSample) -> Value {
    let containers: Vec<Value> = s
        .containers
        .iter()
        .map(|c| {
            json!({"name": c.name, "usage": {"cpu": cpu_quantity(c.usage.cpu_nanocores), "memory": memory_quantity(c.usage.memory_bytes)}})
        })
        .collect();
    json!({
        "kind": "PodMetrics", "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(pod, true),
        "timestamp": timestamp(s.timestamp),
        "window": window_text(s.window),
        "containers": containers,
    })
}

async fn node_metrics(
    st: &ApiState,
    q: &Query,
    name: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let nodes = objects(st, "nodes", q, None, name).await?;
    let samples = st.resource_metrics.nodes();
    Ok(nodes
        .iter()
        .filter_map(|n| {
            let name = n.pointer("/metadata/name")?.as_str()?;
            let s = samples.iter().find(|s| s.node == name)?;
            Some(node_object(n, s))
        })
        .collect())
}

async fn pod_metrics(
    st: &ApiState,
    q: &Query,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let pods = objects(st, "pods", q, ns, name).await?;
    let samples = st.resource_metrics.pods();
    Ok(pods
        .iter()
        .filter_map(|p| {
            let name = p.pointer("/metadata/name")?.as_str()?.to_string();
            let ns = p.pointer("/metadata/namespace")?.as_str()?.to_string();
            let s = samples.get(&(ns, name))?;
            Some(pod_object(p, s))
        })
        .collect())
}

fn render_one(obj: Value, out: Output, q: &Query) -> Result<Response, ApiError> {
    let v = match out {
        Output::Json => obj,
        Output::Table { v1beta1 } => table(vec![obj], v1beta1, q.include_object()?),
        Output::Metadata { v1beta1 } => partial_metadata(&obj, v1beta1),
    };
    Ok(json_response(StatusCode::OK, &v))
}

fn render_list(
    list_kind: &str,
    items: Vec<Value>,
    out: Output,
    q: &Query,
) -> Result<Response, ApiError> {
    let v = match out {
        Output::Json => json!({
            "kind": list_kind, "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": {}, "items": items,
        }),
        Output::Table { v1beta1 } => table(items, v1beta1, q.include_object()?),
        Output::Metadata { v1beta1 } => {
            let items: Vec<Value> = items.iter().map(|o| partial_metadata(o, v1beta1)).collect();
            json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": if v1beta1 { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
                "metadata": {}, "items": items,
            })
        }
    };
    Ok(json_response(StatusCode::OK, &v))
}

/// metrics-server's table: the name, one column per resource (summed over
/// a pod's containers), and the window.
fn table(items: Vec<Value>, v1beta1: bool, include: IncludeObject) -> Value {
    let col = |name: &str, format: &str, desc: &str| json!({"name": name, "type": "string", "format": format, "description": desc, "priority": 0});
    let columns = vec![
        col(
            "Name",
            "name",
            "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        ),
        col("CPU", "quantity", "CPU usage"),
        col("Memory", "quantity", "Memory usage"),
        col(
            "Window",
            "duration",
            "Time window over which usage was measured",
        ),
    ];
    let rows: Vec<Value> = items
        .into_iter()
        .map(|o| {
            let (cpu, memory) = match o.get("usage") {
                Some(u) => (
                    u["cpu"].as_str().unwrap_or("0").to_string(),
                    u["memory"].as_str().unwrap_or("0").to_string(),
                ),
                None => summed(&o),
            };
            let mut row = json!({
                "cells": [o.pointer("/metadata/name").cloned().unwrap_or(Value::Null), cpu, memory, o["window"].clone()],
            });
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(&o, v1beta1),
                IncludeObject::Object => row["object"] = o,
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": if v1beta1 { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A PodMetrics' usage summed over its containers, as quantities.
fn summed(pod: &Value) -> (String, String) {
    use crate::registry::strategy::kinds::quantity;
    let (mut cpu, mut mem) = (0u64, 0u64);
    for c in pod["containers"].as_array().into_iter().flatten() {
        let q = |r: &str| {
            c.pointer(&format!("/usage/{r}"))
                .and_then(Value::as_str)
                .and_then(|s| quantity::parse(s).ok())
                .map(|q| u64::try_from(q.0.max(0)).unwrap_or(u64::MAX))
                .unwrap_or(0)
        };
        cpu = cpu.saturating_add(q("cpu"));
        mem = mem.saturating_add(q("memory") / 1_000_000_000);
    }
    (cpu_quantity(cpu), memory_quantity(mem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(handles("/apis/metrics.k8s.io"));
        assert!(handles("/apis/metrics.k8s.io/v1beta1/nodes"));
        assert!(!handles("/apis/metrics.k8s.iox"));
        assert!(!handles("/apis/apps/v1"));
        assert!(matches!(
            parse_path("/apis/metrics.k8s.io/v1beta1/namespaces/d/pods/p"),
            Ok(Path::Pods(Some(ns), Some(n))) if ns == "d" && n == "p"
        ));
        assert!(matches!(
            parse_path("/apis/metrics.k8s.io/v1beta1/nodes/n1"),
            Ok(Path::Nodes(Some(n))) if n == "n1"
        ));
        assert!(parse_path("/apis/metrics.k8s.io/v1/nodes").is_err());
        assert!(parse_path("/apis/metrics.k8s.io/v1beta1/namespaces/d/nodes").is_err());
    }

    #[test]
    fn pod_table_sums_containers() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "d"}, "window": "5s",
            "containers": [
                {"name": "a", "usage": {"cpu": "250m", "memory": "32Mi"}},
                {"name": "b", "usage": {"cpu": "1500000n", "memory": "4Mi"}},
            ],
        });
        let t = table(vec![pod], false, IncludeObject::None);
        assert_eq!(t["rows"][0]["cells"], json!(["p", "251500u", "36Mi", "5s"]));
        assert!(t["rows"][0].get("object").is_none());
    }
}
