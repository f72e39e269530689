//! Streaming subresources: pods/exec, attach, portforward, log, proxy, and
//! services/proxy and nodes/proxy. The API server finds the pod's node and
//! hands the stream to that node's [`backend::NodeStreams`] (the local agent
//! registers itself in [`NodeStreamsRegistry`]).

pub mod backend;
mod log;
mod portforward;
mod proxy;
mod remotecommand;
pub mod spdy;
mod upgrade;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use serde_json::Value;

use super::ApiState;
use super::handlers::Target;
use super::status::ApiError;
use crate::registry::generic::ReadAt;
use backend::{NodeStreams, PodRef, StreamError};

/// Node name -> that node's streaming backend.
#[derive(Default)]
pub struct NodeStreamsRegistry {
    nodes: RwLock<HashMap<String, Arc<dyn NodeStreams>>>,
}

impl NodeStreamsRegistry {
    pub fn register(&self, node: impl Into<String>, backend: Arc<dyn NodeStreams>) {
        self.nodes.write().insert(node.into(), backend);
    }
    pub fn unregister(&self, node: &str) {
        self.nodes.write().remove(node);
    }
    pub fn get(&self, node: &str) -> Option<Arc<dyn NodeStreams>> {
        self.nodes.read().get(node).cloned()
    }
}

/// Whether `t` is one of the streaming subresources served here.
pub(crate) fn handles(t: &Target) -> bool {
    if !t.def.group.is_empty() || t.name.is_none() {
        return false;
    }
    matches!(
        (t.def.kind.as_str(), t.subresource.as_deref()),
        (
            "Pod",
            Some("log" | "exec" | "attach" | "portforward" | "proxy")
        ) | ("Service" | "Node", Some("proxy"))
    )
}

pub(crate) async fn serve(st: Arc<ApiState>, t: Target, req: Request) -> Response {
    let res = match (t.def.kind.as_str(), t.subresource.as_deref()) {
        ("Pod", Some("log")) => log::serve(&st, &t, req).await,
        ("Pod", Some("exec")) => remotecommand::serve(&st, &t, req, false).await,
        ("Pod", Some("attach")) => remotecommand::serve(&st, &t, req, true).await,
        ("Pod", Some("portforward")) => portforward::serve(&st, &t, req).await,
        (_, Some("proxy")) => proxy::serve(&st, &t, req).await,
        _ => Err(ApiError::not_found_path()),
    };
    res.unwrap_or_else(IntoResponse::into_response)
}

/// CONNECT admission (webhooks) of a streaming request, whose object is
/// `options` (v1 PodExecOptions, ...), before anything is opened.
pub(crate) fn admit_connect<'a>(
    st: &'a ApiState,
    t: &'a Target,
    req: &Request,
    options: Value,
) -> impl Future<Output = Result<Value, ApiError>> + Send + 'a {
    // The user is taken out now: a request body is not Sync, so the
    // future may not hold the request.
    let user = req
        .extensions()
        .get::<super::Identity>()
        .and_then(|i| i.0.clone());
    async move {
        crate::admission::webhook::connect::admit(
            &st.registry,
            &t.def,
            t.namespace.as_deref(),
            t.name.as_deref().unwrap_or_default(),
            t.subresource.as_deref().unwrap_or_default(),
            options,
            user.as_ref(),
        )
        .await
    }
}

/// The query string as ordered pairs (exec repeats `command`).
pub(crate) fn query_pairs(req: &Request) -> Result<Vec<(String, String)>, ApiError> {
    match req.uri().query() {
        None | Some("") => Ok(Vec::new()),
        Some(q) => serde_urlencoded::from_str(q)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}"))),
    }
}

pub(crate) fn last<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

/// A boolean query parameter as upstream's conversion reads it.
pub(crate) fn flag(q: &[(String, String)], k: &str) -> Result<bool, ApiError> {
    match last(q, k) {
        None | Some("") => Ok(false),
        Some("1" | "true" | "True" | "TRUE" | "t" | "T") => Ok(true),
        Some("0" | "false" | "False" | "FALSE" | "f" | "F") => Ok(false),
        Some(v) => Err(ApiError::bad_request(format!(
            "invalid value for {k}: strconv.ParseBool: parsing \"{v}\": invalid syntax"
        ))),
    }
}

/// Fetch the pod a request names (404 as the REST store words it).
pub(crate) async fn get_pod(st: &ApiState, t: &Target, name: &str) -> Result<Value, ApiError> {
    st.registry
        .get(&t.def, t.namespace.as_deref(), name, ReadAt::Latest)
        .await
}

pub(crate) fn pod_ref(pod: &Value) -> PodRef {
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    PodRef {
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name"),
        uid: s("/metadata/uid"),
    }
}

/// Container names of a pod section (`containers`, `initContainers`, ...).
pub(crate) fn container_names(pod: &Value, section: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{section}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Go's `%v` of a string slice: `[a b]`.
pub(crate) fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// The container a stream is for: the named one, or the only one;
/// upstream's errors otherwise. `with_init` also lists init and ephemeral
/// containers (logs may read them; exec/attach may too).
pub(crate) fn pick_container(pod: &Value, name: &str, wanted: &str) -> Result<String, ApiError> {
    let main = container_names(pod, "containers");
    let init = container_names(pod, "initContainers");
    let eph = container_names(pod, "ephemeralContainers");
    if wanted.is_empty() {
        if main.len() == 1 {
            return Ok(main[0].clone());
        }
        let mut msg = format!(
            "a container name must be specified for pod {name}, choose one of: {}",
            go_list(&main)
        );
        if !init.is_empty() {
            msg.push_str(&format!(
                " or one of the init containers: {}",
                go_list(&init)
            ));
        }
        if !eph.is_empty() {
            msg.push_str(&format!(
                " or one of the ephemeral containers: {}",
                go_list(&eph)
            ));
        }
        return Err(ApiError::bad_request(msg));
    }
    if main.iter().chain(&init).chain(&eph).any(|c| c == wanted) {
        Ok(wanted.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "container {wanted} is not valid for pod {name}"
        )))
    }
}

/// The streaming backend of the pod's node.
pub(crate) fn node_backend(
    st: &ApiState,
    pod: &Value,
    name: &str,
) -> Result<Arc<dyn NodeStreams>, ApiError> {
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    node_by_name(st, node)
}

pub(crate) fn node_by_name(st: &ApiState, node: &str) -> Result<Arc<dyn NodeStreams>, ApiError> {
    st.streams.get(node).ok_or_else(|| {
        ApiError::internal(format!(
            "no streaming endpoint for node \"{node}\" (is its agent running?)"
        ))
    })
}

impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::NotFound(m) => ApiError::new(404, "NotFound", m),
            StreamError::BadRequest(m) => ApiError::bad_request(m),
            StreamError::Internal(m) => ApiError::internal(m),
        }
    }
}
