//! Discovery: /api, /apis, /api/v1, /apis/G, /apis/G/V in the legacy
//! formats and aggregated discovery (apidiscovery.k8s.io v2 and v2beta1).

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::registry::{Catalogue, ResourceDef};

/// Verbs of subresources as upstream advertises them.
fn subresource_verbs(sub: &str) -> Vec<&'static str> {
    match sub {
        "status" | "scale" => vec!["get", "patch", "update"],
        "finalize" => vec!["update"],
        "binding" | "eviction" | "token" => vec!["create"],
        "log" => vec!["get"],
        "exec" | "attach" | "portforward" => vec!["create", "get"],
        "proxy" => vec!["create", "delete", "get", "patch", "update"],
        _ => vec!["get"],
    }
}

/// The kind a subresource answers with.
fn subresource_kind(def: &ResourceDef, sub: &str) -> (String, String, String) {
    match sub {
        "scale" => ("autoscaling".into(), "v1".into(), "Scale".into()),
        "binding" => ("".into(), "v1".into(), "Binding".into()),
        "eviction" => ("policy".into(), "v1".into(), "Eviction".into()),
        "token" => (
            "authentication.k8s.io".into(),
            "v1".into(),
            "TokenRequest".into(),
        ),
        "log" | "exec" | "attach" | "portforward" | "proxy" => (
            "".into(),
            "v1".into(),
            match sub {
                "exec" => "PodExecOptions",
                "attach" => "PodAttachOptions",
                "portforward" => "PodPortForwardOptions",
                "proxy" if def.kind == "Node" => "NodeProxyOptions",
                "proxy" if def.kind == "Service" => "ServiceProxyOptions",
                "proxy" => "PodProxyOptions",
                _ => "Pod",
            }
            .into(),
        ),
        _ => (def.group.clone(), def.version.clone(), def.kind.clone()),
    }
}

/// upstream's storageVersionHash: base64 of the first 8 bytes of
/// sha256("group/version/kind") of the storage version.
fn storage_version_hash(def: &ResourceDef) -> String {
    use base64::Engine;
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{}/{}/{}", def.group, def.version, def.kind).as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(&d.as_ref()[..8])
}

/// /api/v1 or /apis/G/V: an APIResourceList.
pub fn resource_list(cat: &Catalogue, group: &str, version: &str) -> Option<Value> {
    let defs = cat.resources(group, version);
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in &defs {
        let mut r = json!({
            "name": d.plural, "singularName": d.singular, "namespaced": d.namespaced,
            "kind": d.kind, "verbs": d.verbs,
            "storageVersionHash": storage_version_hash(d),
        });
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if !d.categories.is_empty() {
            r["categories"] = json!(d.categories);
        }
        resources.push(r);
        for s in &d.subresources {
            let (g, v, k) = subresource_kind(d, s);
            let mut r = json!({
                "name": format!("{}/{}", d.plural, s), "singularName": "", "namespaced": d.namespaced,
                "kind": k, "verbs": subresource_verbs(s),
            });
            if g != d.group || v != d.version {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// /apis: an APIGroupList.
pub fn group_list(cat: &Catalogue) -> Value {
    let mut groups: Vec<Value> = cat
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    // metrics.k8s.io is served in process, outside the catalogue.
    groups.push(super::resourcemetrics::api_group());
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// /apis/G: an APIGroup.
pub fn group(cat: &Catalogue, group: &str) -> Option<Value> {
    cat.groups()
        .into_iter()
        .find(|(g, _)| g == group)
        .map(|(g, vs)| {
            let mut v = group_json(&g, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

/// /api: APIVersions.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// Which aggregated discovery version, if any, the client asked for.
pub fn wants_aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for part in accept.split(',') {
        if part.contains("as=APIGroupDiscoveryList") && part.contains("g=apidiscovery.k8s.io") {
            if part.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if part.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

/// The Content-Type of an aggregated discovery answer.
pub fn aggregated_content_type(v: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList")
}

fn aggregated_resource(d: &ResourceDef) -> Value {
    let mut r = json!({
        "resource": d.plural,
        "responseKind": {"group": d.group, "version": d.version, "kind": d.kind},
        "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": d.singular,
        "verbs": d.verbs,
    });
    if !d.short_names.is_empty() {
        r["shortNames"] = json!(d.short_names);
    }
    if !d.categories.is_empty() {
        r["categories"] = json!(d.categories);
    }
    if !d.subresources.is_empty() {
        let subs: Vec<Value> = d
            .subresources
            .iter()
            .map(|s| {
                let (g, v, k) = subresource_kind(d, s);
                json!({"subresource": s, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": subresource_verbs(s)})
            })
            .collect();
        r["subresources"] = json!(subs);
    }
    r
}

/// Aggregated discovery of the core group (`legacy`) or of every named group.
pub fn aggregated(cat: &Catalogue, legacy: bool, version: &str) -> Value {
    let mut items = Vec::new();
    for (g, vs) in cat.groups() {
        if g.is_empty() != legacy {
            continue;
        }
        let versions: Vec<Value> = vs
            .iter()
            .map(|v| {
                let resources: Vec<Value> = cat
                    .resources(&g, v)
                    .iter()
                    .map(|d| aggregated_resource(d))
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions}),
        );
    }
    // metrics.k8s.io is served in process, outside the catalogue.
    if !legacy {
        items.push(super::resourcemetrics::aggregated_group());
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}
