//! The downward API: pod fields (`fieldRef`) and container resources
//! (`resourceFieldRef`) as strings, formatted as the kubelet formats them.
//! Shared by downwardAPI/projected volumes and (for the agent) env vars.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::registry::strategy::kinds::quantity;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DownwardError {
    #[error("unsupported fieldPath: {0}")]
    UnsupportedField(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("invalid quantity {0:?}")]
    Quantity(String),
}

/// Go's `%q` of a string (strconv.Quote): what the kubelet writes for each
/// label or annotation value.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key="value"` lines, sorted by key, without a trailing newline
/// (upstream's fieldpath.FormatMap).
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `metadata.labels['key']` -> Some(("metadata.labels", "key")).
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (base, rest) = path.split_once("['")?;
    let key = rest.strip_suffix("']")?;
    Some((base, key))
}

/// The value of a pod field as the kubelet renders it.
pub fn field_value(pod: &Pod, path: &str) -> Result<String, DownwardError> {
    let meta = &pod.metadata;
    if let Some((base, key)) = subscript(path) {
        let map = match base {
            "metadata.annotations" => meta.annotations.as_ref(),
            "metadata.labels" => meta.labels.as_ref(),
            _ => return Err(DownwardError::UnsupportedField(path.to_string())),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let ips = |v: Option<Vec<String>>| v.unwrap_or_default().join(",");
    Ok(match path {
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => ips(status.and_then(|s| {
            s.host_ips
                .as_ref()
                .map(|v| v.iter().map(|i| i.ip.clone()).collect())
        })),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => ips(status.and_then(|s| {
            s.pod_ips
                .as_ref()
                .map(|v| v.iter().map(|i| i.ip.clone()).collect())
        })),
        _ => return Err(DownwardError::UnsupportedField(path.to_string())),
    })
}

fn parse(q: &Quantity) -> Result<i128, DownwardError> {
    quantity::parse(&q.0)
        .map(|q| q.0)
        .map_err(|_| DownwardError::Quantity(q.0.clone()))
}

/// Ceiling division of positive nano-unit values.
fn ceil_div(a: i128, b: i128) -> i128 {
    if b == 0 {
        return 0;
    }
    let q = a / b;
    if a % b != 0 && (a > 0) == (b > 0) {
        q + 1
    } else {
        q
    }
}

/// A container resource (`limits.cpu`, `requests.memory`, ...) divided by
/// the divisor and rounded up. A limit the container does not set is the
/// node's allocatable amount, as upstream.
pub fn resource_value(
    pod: &Pod,
    sel: &ResourceFieldSelector,
    default_container: Option<&str>,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, DownwardError> {
    let name = sel
        .container_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(default_container)
        .unwrap_or("");
    let spec = pod.spec.as_ref();
    let container: Option<&Container> = spec.and_then(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .find(|c| c.name == name)
    });
    let Some(container) = container else {
        return Err(DownwardError::ContainerNotFound(name.to_string()));
    };
    let (kind, res) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| DownwardError::UnsupportedResource(sel.resource.clone()))?;
    let known =
        matches!(res, "cpu" | "memory" | "ephemeral-storage") || res.starts_with("hugepages-");
    if !known || !matches!(kind, "limits" | "requests") {
        return Err(DownwardError::UnsupportedResource(sel.resource.clone()));
    }
    let resources = container.resources.as_ref();
    let value = match kind {
        "limits" => resources
            .and_then(|r| r.limits.as_ref())
            .and_then(|m| m.get(res))
            .or_else(|| node_allocatable.get(res)),
        _ => resources
            .and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get(res)),
    };
    let nanos = value.map(parse).transpose()?.unwrap_or(0);
    let divisor = sel
        .divisor
        .as_ref()
        .map(parse)
        .transpose()?
        .filter(|d| *d != 0)
        .unwrap_or(1_000_000_000);
    let out = if res == "cpu" {
        // Upstream divides milli-values, each rounded up first.
        ceil_div(ceil_div(nanos, 1_000_000), ceil_div(divisor, 1_000_000))
    } else {
        ceil_div(
            ceil_div(nanos, 1_000_000_000),
            ceil_div(divisor, 1_000_000_000),
        )
    };
    Ok(out.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"b": "2", "a": "x\"y\n"}, "annotations": {"k": "v"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [
                {"name": "c", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"},
                    "requests": {"cpu": "100m", "memory": "32Mi"}}},
                {"name": "nolimits"}]},
            "status": {"podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}], "hostIP": "192.168.1.2"}
        }))
        .unwrap()
    }

    #[test]
    fn fields() {
        let p = pod();
        assert_eq!(
            field_value(&p, "metadata.labels").unwrap(),
            "a=\"x\\\"y\\n\"\nb=\"2\""
        );
        assert_eq!(field_value(&p, "metadata.annotations").unwrap(), "k=\"v\"");
        assert_eq!(field_value(&p, "metadata.labels['b']").unwrap(), "2");
        assert_eq!(field_value(&p, "metadata.labels['zz']").unwrap(), "");
        assert_eq!(field_value(&p, "metadata.uid").unwrap(), "u-1");
        assert_eq!(field_value(&p, "spec.nodeName").unwrap(), "n1");
        assert_eq!(field_value(&p, "status.podIPs").unwrap(), "10.42.0.5");
        assert_eq!(
            field_value(&p, "spec.foo").unwrap_err().to_string(),
            "unsupported fieldPath: spec.foo"
        );
    }

    #[test]
    fn resources() {
        let p = pod();
        let mut alloc = BTreeMap::new();
        alloc.insert("cpu".to_string(), Quantity("4".into()));
        alloc.insert("memory".to_string(), Quantity("8Gi".into()));
        let sel = |c: &str, r: &str, d: Option<&str>| ResourceFieldSelector {
            container_name: Some(c.into()),
            resource: r.into(),
            divisor: d.map(|d| Quantity(d.into())),
        };
        let v = |s: ResourceFieldSelector| resource_value(&p, &s, None, &alloc).unwrap();
        assert_eq!(
            v(sel("c", "limits.cpu", None)),
            "1",
            "250m rounds up to 1 core"
        );
        assert_eq!(v(sel("c", "limits.cpu", Some("1m"))), "250");
        assert_eq!(v(sel("c", "requests.cpu", Some("1m"))), "100");
        assert_eq!(v(sel("c", "limits.memory", None)), "67108864");
        assert_eq!(v(sel("c", "limits.memory", Some("1Mi"))), "64");
        assert_eq!(
            v(sel("nolimits", "limits.cpu", None)),
            "4",
            "node allocatable"
        );
        assert_eq!(v(sel("nolimits", "limits.memory", Some("1Gi"))), "8");
        assert_eq!(
            resource_value(&p, &sel("zz", "limits.cpu", None), None, &alloc).unwrap_err(),
            DownwardError::ContainerNotFound("zz".into())
        );
        assert!(resource_value(&p, &sel("c", "limits.gpu", None), None, &alloc).is_err());
    }
}
