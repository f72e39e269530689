//! LimitRanger admission (upstream's plugin of that name). The LimitRanges
//! of a namespace default the resources of a new pod's containers
//! (`default` limits, `defaultRequest` requests) and bound them: `min`,
//! `max` and `maxLimitRequestRatio` per Container and per Pod; and they bound
//! the storage a PersistentVolumeClaim asks for. A pod outside the bounds is
//! refused with 403 Forbidden and upstream's messages.
//!
//! As upstream, pods are admitted on create only (their resources cannot
//! change afterwards), claims on create and update, and subresources never.

use serde_json::{Map, Value, json};

use super::forbidden;
use super::quota::{self, Amount, ResourceList};
use crate::api::status::ApiError;
use crate::registry::ResourceDef;
use crate::registry::generic::{ListQuery, Registry, name_of};

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pod,
    Claim,
}

fn kind_of(def: &ResourceDef) -> Option<Kind> {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "pods") => Some(Kind::Pod),
        ("", "persistentvolumeclaims") => Some(Kind::Claim),
        _ => None,
    }
}

/// The limit items (`spec.limits[*]`) of every LimitRange in the namespace,
/// when `obj` is subject to them; None otherwise (nothing to enforce).
pub struct Limits {
    kind: Kind,
    items: Vec<Value>,
}

/// Mutating half: find the namespace's limits and default a new pod's
/// container resources from them. Returns the limits for `validate`.
pub async fn mutate(
    reg: &Registry,
    def: &ResourceDef,
    ns: Option<&str>,
    obj: &mut Value,
    is_update: bool,
    subresource: Option<&str>,
) -> Result<Option<Limits>, ApiError> {
    let Some(kind) = kind_of(def) else {
        return Ok(None);
    };
    let Some(ns) = ns.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if subresource.is_some() || (kind == Kind::Pod && is_update) {
        return Ok(None);
    }
    let Some(lrdef) = reg.catalogue.get("", "v1", "limitranges") else {
        return Ok(None);
    };
    let items: Vec<Value> = reg
        .list(&lrdef, Some(ns), &ListQuery::default())
        .await?
        .items
        .into_iter()
        .flat_map(|lr| match lr.pointer("/spec/limits") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        })
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    if kind == Kind::Pod {
        default_pod(obj, &items);
    }
    Ok(Some(Limits { kind, items }))
}

/// Validating half: refuse an object outside its namespace's bounds.
pub fn validate(def: &ResourceDef, obj: &Value, limits: Option<&Limits>) -> Result<(), ApiError> {
    let Some(limits) = limits else {
        return Ok(());
    };
    let errors = match limits.kind {
        Kind::Pod => check_pod(obj, &limits.items),
        Kind::Claim => check_claim(obj, &limits.items),
    };
    match errors.len() {
        0 => Ok(()),
        1 => Err(forbidden(def, name_of(obj), &errors[0])),
        _ => Err(forbidden(
            def,
            name_of(obj),
            &format!("[{}]", errors.join(", ")),
        )),
    }
}

fn items_of<'a>(items: &'a [Value], ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    items
        .iter()
        .filter(move |i| i.get("type").and_then(Value::as_str) == Some(ty))
}

fn list_at(v: &Value, field: &str) -> ResourceList {
    quota::parse_list(v.get(field))
}

/// Sets missing container limits and requests from the Container items'
/// `default` and `defaultRequest`, and records what it set in upstream's
/// annotation.
fn default_pod(pod: &mut Value, items: &[Value]) {
    let mut limits = Map::new();
    let mut requests = Map::new();
    for item in items_of(items, "Container") {
        for (field, into) in [("default", &mut limits), ("defaultRequest", &mut requests)] {
            if let Some(m) = item.get(field).and_then(Value::as_object) {
                for (k, v) in m {
                    into.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    if limits.is_empty() && requests.is_empty() {
        return;
    }
    let mut notes: Vec<String> = Vec::new();
    for (list, label) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(containers) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers.iter_mut() {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let Some(c) = c.as_object_mut() else { continue };
            let resources = c.entry("resources").or_insert_with(|| json!({}));
            let Some(resources) = resources.as_object_mut() else {
                continue;
            };
            let mut set_requests = Vec::new();
            let mut set_limits = Vec::new();
            for (field, defaults, set) in [
                ("requests", &requests, &mut set_requests),
                ("limits", &limits, &mut set_limits),
            ] {
                let have = resources.entry(field).or_insert_with(|| json!({}));
                let Some(have) = have.as_object_mut() else {
                    continue;
                };
                for (k, v) in defaults {
                    if !have.contains_key(k) {
                        have.insert(k.clone(), v.clone());
                        set.push(k.clone());
                    }
                }
                if have.is_empty() {
                    resources.remove(field);
                }
            }
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {label} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!(
                    "{} limit for {label} {name}",
                    set_limits.join(", ")
                ));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(
            ANNOTATION.into(),
            json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
        );
    }
}

fn check_pod(pod: &Value, items: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .collect();
    for item in items_of(items, "Container") {
        for c in &containers {
            let res = c.get("resources").cloned().unwrap_or(Value::Null);
            let (req, lim) = (list_at(&res, "requests"), list_at(&res, "limits"));
            bounds(&mut errors, item, "Container", &req, &lim);
        }
    }
    if items_of(items, "Pod").next().is_some() {
        let (req, lim) = pod_totals(pod);
        for item in items_of(items, "Pod") {
            bounds(&mut errors, item, "Pod", &req, &lim);
        }
    }
    errors
}

/// A pod's requests and limits as the LimitRanger sums them: the app
/// containers added up, raised to any single init container's amount.
fn pod_totals(pod: &Value) -> (ResourceList, ResourceList) {
    let sum = |field: &str| {
        let mut total = ResourceList::new();
        for c in pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            total = quota::add(
                &total,
                &quota::parse_list(c.pointer(&format!("/resources/{field}"))),
            );
        }
        for c in pod
            .pointer("/spec/initContainers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (k, v) in quota::parse_list(c.pointer(&format!("/resources/{field}"))) {
                let e = total.entry(k).or_insert(v);
                if v.nano > e.nano {
                    *e = v;
                }
            }
        }
        total
    };
    (sum("requests"), sum("limits"))
}

fn check_claim(pvc: &Value, items: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    let res = pvc
        .pointer("/spec/resources")
        .cloned()
        .unwrap_or(Value::Null);
    let (req, lim) = (list_at(&res, "requests"), list_at(&res, "limits"));
    for item in items_of(items, "PersistentVolumeClaim") {
        for (r, min) in list_at(item, "min") {
            if let Err(e) = min_constraint("PersistentVolumeClaim", &r, min, &req, &lim) {
                errors.push(e);
            }
        }
        for (r, max) in list_at(item, "max") {
            if let Err(e) = max_request_constraint("PersistentVolumeClaim", &r, max, &req) {
                errors.push(e);
            }
        }
    }
    errors
}

/// min, max and maxLimitRequestRatio of one item against `req` and `lim`.
fn bounds(
    errors: &mut Vec<String>,
    item: &Value,
    ty: &str,
    req: &ResourceList,
    lim: &ResourceList,
) {
    for (r, min) in list_at(item, "min") {
        if let Err(e) = min_constraint(ty, &r, min, req, lim) {
            errors.push(e);
        }
    }
    for (r, max) in list_at(item, "max") {
        if let Err(e) = max_constraint(ty, &r, max, req, lim) {
            errors.push(e);
        }
    }
    for (r, ratio) in list_at(item, "maxLimitRequestRatio") {
        if let Err(e) = ratio_constraint(ty, &r, ratio, req, lim) {
            errors.push(e);
        }
    }
}

fn min_constraint(
    ty: &str,
    r: &str,
    min: Amount,
    req: &ResourceList,
    lim: &ResourceList,
) -> Result<(), String> {
    let Some(rq) = req.get(r) else {
        return Err(format!(
            "minimum {r} usage per {ty} is {min}.  No request is specified"
        ));
    };
    if rq.nano < min.nano {
        return Err(format!(
            "minimum {r} usage per {ty} is {min}, but request is {rq}"
        ));
    }
    if let Some(l) = lim.get(r)
        && l.nano < min.nano
    {
        return Err(format!(
            "minimum {r} usage per {ty} is {min}, but limit is {l}"
        ));
    }
    Ok(())
}

fn max_constraint(
    ty: &str,
    r: &str,
    max: Amount,
    req: &ResourceList,
    lim: &ResourceList,
) -> Result<(), String> {
    let Some(l) = lim.get(r) else {
        return Err(format!(
            "maximum {r} usage per {ty} is {max}.  No limit is specified"
        ));
    };
    if l.nano > max.nano {
        return Err(format!(
            "maximum {r} usage per {ty} is {max}, but limit is {l}"
        ));
    }
    if let Some(rq) = req.get(r)
        && rq.nano > max.nano
    {
        return Err(format!(
            "maximum {r} usage per {ty} is {max}, but request is {rq}"
        ));
    }
    Ok(())
}

/// For claims, max bounds the request only (a claim has no limit).
fn max_request_constraint(
    ty: &str,
    r: &str,
    max: Amount,
    req: &ResourceList,
) -> Result<(), String> {
    match req.get(r) {
        Some(rq) if rq.nano > max.nano => Err(format!(
            "maximum {r} usage per {ty} is {max}, but request is {rq}"
        )),
        _ => Ok(()),
    }
}

fn ratio_constraint(
    ty: &str,
    r: &str,
    ratio: Amount,
    req: &ResourceList,
    lim: &ResourceList,
) -> Result<(), String> {
    let rq = req.get(r).filter(|a| !a.is_zero());
    let Some(rq) = rq else {
        return Err(format!(
            "{r} max limit to request ratio per {ty} is {ratio}, but no request is specified or request is 0"
        ));
    };
    let l = lim.get(r).filter(|a| !a.is_zero());
    let Some(l) = l else {
        return Err(format!(
            "{r} max limit to request ratio per {ty} is {ratio}, but no limit is specified or limit is 0"
        ));
    };
    let observed = l.nano as f64 / rq.nano as f64;
    if observed * 1e9 > ratio.nano as f64 {
        return Err(format!(
            "{r} max limit to request ratio per {ty} is {ratio}, but provided ratio is {observed:.6}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(v: Value) -> Vec<Value> {
        v.as_array().cloned().unwrap_or_default()
    }

    #[test]
    fn defaults_missing_requests_and_limits_and_notes_them() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "300m"}, "requests": {"cpu": "300m"}}},
            {"name": "b"}
        ]}});
        let lr = items(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]));
        default_pod(&mut pod, &lr);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "300m", "memory": "256Mi"}, "requests": {"cpu": "300m", "memory": "128Mi"}})
        );
        assert_eq!(
            pod["spec"]["containers"][1]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: memory request for container a; memory limit for container a; \
             cpu, memory request for container b; cpu, memory limit for container b"
        );
    }

    #[test]
    fn container_bounds_with_upstream_messages() {
        let lr = items(json!([{"type": "Container",
            "min": {"cpu": "100m"}, "max": {"cpu": "1", "memory": "1Gi"},
            "maxLimitRequestRatio": {"cpu": "2"}}]));
        let pod = |req: Value, lim: Value| json!({"spec": {"containers": [{"name": "c", "resources": {"requests": req, "limits": lim}}]}});
        assert!(
            check_pod(
                &pod(json!({"cpu": "500m"}), json!({"cpu": "1", "memory": "1Gi"})),
                &lr
            )
            .is_empty()
        );
        assert_eq!(
            check_pod(
                &pod(
                    json!({"cpu": "50m"}),
                    json!({"cpu": "100m", "memory": "1Gi"})
                ),
                &lr
            ),
            vec!["minimum cpu usage per Container is 100m, but request is 50m".to_string()]
        );
        assert_eq!(
            check_pod(&pod(json!({"cpu": "500m"}), json!({"cpu": "2"})), &lr),
            vec![
                "maximum cpu usage per Container is 1, but limit is 2".to_string(),
                "maximum memory usage per Container is 1Gi.  No limit is specified".to_string(),
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn pod_totals_add_containers_and_take_the_largest_init_container() {
        let pod = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"limits": {"cpu": "600m"}}},
                {"name": "b", "resources": {"limits": {"cpu": "600m"}}}],
            "initContainers": [{"name": "i", "resources": {"limits": {"cpu": "2"}}}]}});
        let (_, lim) = pod_totals(&pod);
        assert_eq!(lim["cpu"].to_string(), "2");
        let lr = items(json!([{"type": "Pod", "max": {"cpu": "1500m"}}]));
        assert_eq!(
            check_pod(&pod, &lr),
            vec!["maximum cpu usage per Pod is 1500m, but limit is 2".to_string()]
        );
    }

    #[test]
    fn claims_are_bounded_by_their_storage_request() {
        let lr = items(
            json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}}]),
        );
        let pvc = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        assert!(check_claim(&pvc("1Gi"), &lr).is_empty());
        assert_eq!(
            check_claim(&pvc("512Mi"), &lr),
            vec![
                "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 512Mi"
                    .to_string()
            ]
        );
        assert_eq!(
            check_claim(&pvc("3Gi"), &lr),
            vec![
                "maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 3Gi"
                    .to_string()
            ]
        );
    }
}
