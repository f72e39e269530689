//! Admission of requests whose object is not the resource's own: the
//! CONNECT of exec, attach, port-forward and proxy (the object is the
//! request's options, as upstream's connect handler decodes them from the
//! query) and the creates of pods/binding and pods/eviction.

use serde_json::{Map, Value, json};

use super::{Attributes, mutate, validate};
use crate::api::status::ApiError;
use crate::auth::UserInfo;
use crate::registry::ResourceDef;
use crate::registry::generic::{Registry, WriteOptions};

fn options_object(kind: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("kind".into(), json!(kind));
    m.insert("apiVersion".into(), json!("v1"));
    m
}

/// Set `key` to `v` when true (Go's `omitempty` on the v1 types).
fn flag(m: &mut Map<String, Value>, key: &str, v: bool) {
    if v {
        m.insert(key.into(), json!(true));
    }
}

/// The streams of exec and attach.
pub struct Streams<'a> {
    pub container: &'a str,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// v1 PodExecOptions (`command`: None for attach, whose options are
/// PodAttachOptions).
pub fn exec_options(s: &Streams<'_>, command: Option<&[String]>) -> Value {
    let mut m = options_object(if command.is_some() {
        "PodExecOptions"
    } else {
        "PodAttachOptions"
    });
    flag(&mut m, "stdin", s.stdin);
    flag(&mut m, "stdout", s.stdout);
    flag(&mut m, "stderr", s.stderr);
    flag(&mut m, "tty", s.tty);
    if !s.container.is_empty() {
        m.insert("container".into(), json!(s.container));
    }
    if let Some(c) = command {
        m.insert("command".into(), json!(c));
    }
    Value::Object(m)
}

/// v1 PodPortForwardOptions from the query's `ports` (numbers that do not
/// parse are left to the stream handler to refuse).
pub fn port_forward_options(query: &[(String, String)]) -> Value {
    let mut m = options_object("PodPortForwardOptions");
    let ports: Vec<u16> = query
        .iter()
        .filter(|(k, _)| k == "ports")
        .flat_map(|(_, v)| v.split(','))
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    if !ports.is_empty() {
        m.insert("ports".into(), json!(ports));
    }
    Value::Object(m)
}

/// v1 Pod/Service/NodeProxyOptions: the path after `/proxy`.
pub fn proxy_options(kind: &str, path: &str) -> Value {
    let mut m = options_object(&format!("{kind}ProxyOptions"));
    if !path.is_empty() {
        m.insert("path".into(), json!(path));
    }
    Value::Object(m)
}

/// CONNECT admission of a streaming subresource, before anything is looked
/// up or upgraded (upstream admits before the connecter runs). Returns the
/// options as mutating webhooks left them.
pub async fn admit(
    reg: &Registry,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    subresource: &str,
    options: Value,
    user: Option<&UserInfo>,
) -> Result<Value, ApiError> {
    if reg.webhooks.current(reg).await.is_none() {
        return Ok(options);
    }
    let kind = options
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let a = Attributes::connect(def, ns, name, subresource, &kind, user);
    let mut options = options;
    mutate(reg, &a, &mut options).await?;
    validate(reg, &a, Some(&options)).await?;
    Ok(options)
}

/// The kind a subresource create carries, when it is not the resource's.
fn create_kind(def: &ResourceDef, subresource: &str) -> Option<(&'static str, &'static str)> {
    match (def.group.as_str(), def.plural.as_str(), subresource) {
        ("", "pods", "binding") => Some(("v1", "Binding")),
        ("", "pods", "eviction") => Some(("policy/v1", "Eviction")),
        _ => None,
    }
}

/// Admission of a create on pods/binding or pods/eviction: webhooks see
/// the Binding or Eviction (typed as upstream decodes it: apiVersion,
/// kind and the request's namespace set). Returns it as they left it.
pub async fn admit_create(
    reg: &Registry,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    subresource: &str,
    obj: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let Some((api_version, kind)) = create_kind(def, subresource) else {
        return Ok(obj);
    };
    if reg.webhooks.current(reg).await.is_none() {
        return Ok(obj);
    }
    let mut obj = obj;
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut()
            && let Some(ns) = ns
            && meta
                .get("namespace")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            meta.insert("namespace".into(), json!(ns));
        }
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let a =
        Attributes::subresource_create(def, ns, name, subresource, (group, version, kind), opts);
    mutate(reg, &a, &mut obj).await?;
    validate(reg, &a, Some(&obj)).await?;
    Ok(obj)
}
