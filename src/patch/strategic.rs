//! Strategic merge patch for built-in kinds: like a merge patch, but lists
//! with a merge key are merged element by element, and the `$patch`,
//! `$setElementOrder/`, `$retainKeys` and `$deleteFromPrimitiveList/`
//! directives are honoured. Merge keys come from a table keyed by field name
//! (enough to tell the built-in types apart); a list without one is replaced.

use serde_json::{Map, Value};

use super::PatchError;

/// How a list field merges.
enum ListStrategy {
    /// Merge object elements by this key.
    Key(&'static str),
    /// Merge primitive elements as a set (finalizers).
    PrimitiveSet,
    Replace,
}

fn list_strategy(field: &str, items: &[Value]) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "readinessGates"
        | "schedulingGates" => match field {
            "readinessGates" => ListStrategy::Key("conditionType"),
            _ => ListStrategy::Key("name"),
        },
        "volumeMounts" => ListStrategy::Key("mountPath"),
        "volumeDevices" => ListStrategy::Key("devicePath"),
        "hostAliases" => ListStrategy::Key("ip"),
        "conditions" => ListStrategy::Key("type"),
        "ownerReferences" => ListStrategy::Key("uid"),
        "topologySpreadConstraints" => ListStrategy::Key("topologyKey"),
        "finalizers" => ListStrategy::PrimitiveSet,
        // Container ports merge by containerPort, Service ports by port.
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                ListStrategy::Key("containerPort")
            } else if items.iter().any(|i| i.get("port").is_some()) {
                ListStrategy::Key("port")
            } else {
                ListStrategy::Replace
            }
        }
        _ => ListStrategy::Replace,
    }
}

/// Apply strategic merge patch `patch` to `original`.
pub fn merge(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Some(p) = patch.as_object() else {
        return Err(PatchError::Invalid(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    merge_map(original.as_object().cloned().unwrap_or_default(), p).map(Value::Object)
}

fn merge_map(
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Map<String, Value>, PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut m = patch.clone();
            m.remove("$patch");
            return Ok(m);
        }
        Some("delete") => return Ok(Map::new()),
        Some("merge") | None => {}
        Some(other) => return Err(PatchError::Invalid(format!("Unknown patch type: {other}"))),
    }
    if let Some(keys) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (orig.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
                // An emptied list goes, as upstream leaves no `[]` behind.
                if list.is_empty() {
                    orig.remove(field);
                }
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(PatchError::Invalid(format!("unknown directive {k}")));
        }
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        let merged = match (orig.remove(k), v) {
            (Some(Value::Object(o)), Value::Object(pv)) => Value::Object(merge_map(o, pv)?),
            (Some(Value::Array(o)), Value::Array(pv)) => Value::Array(merge_list(k, o, pv)?),
            (None, Value::Object(pv)) => Value::Object(merge_map(Map::new(), pv)?),
            (None, Value::Array(pv)) => Value::Array(merge_list(k, Vec::new(), pv)?),
            (_, pv) => pv.clone(),
        };
        orig.insert(k.clone(), merged);
    }
    // Order of merged lists as the client wants it.
    for (k, v) in patch {
        if let (Some(field), Some(order)) = (k.strip_prefix("$setElementOrder/"), v.as_array())
            && let Some(Value::Array(list)) = orig.get_mut(field)
        {
            reorder(field, list, order);
        }
    }
    Ok(orig)
}

fn reorder(field: &str, list: &mut [Value], order: &[Value]) {
    let key = match list_strategy(field, list) {
        ListStrategy::Key(k) => Some(k),
        ListStrategy::PrimitiveSet => None,
        ListStrategy::Replace => return,
    };
    let pos = |item: &Value| -> usize {
        let id = match key {
            Some(k) => item.get(k),
            None => Some(item),
        };
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k) == id,
                None => Some(o) == id,
            })
            .unwrap_or(usize::MAX)
    };
    // Stable: elements not named keep their relative order, after the named ones.
    list.sort_by_key(|item| pos(item));
}

fn merge_list(
    field: &str,
    mut orig: Vec<Value>,
    patch: &[Value],
) -> Result<Vec<Value>, PatchError> {
    // A list-level `$patch: replace` element replaces the whole list.
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .cloned()
            .collect());
    }
    let mut all = orig.clone();
    all.extend(patch.iter().cloned());
    match list_strategy(field, &all) {
        ListStrategy::Replace => Ok(patch.to_vec()),
        ListStrategy::PrimitiveSet => {
            for p in patch {
                if !orig.contains(p) {
                    orig.push(p.clone());
                }
            }
            Ok(orig)
        }
        ListStrategy::Key(key) => {
            for p in patch {
                let Some(pm) = p.as_object() else {
                    return Err(PatchError::Invalid(format!(
                        "{field}: list elements must be objects"
                    )));
                };
                let Some(id) = pm.get(key) else {
                    return Err(PatchError::Invalid(format!(
                        "map: {p} does not contain declared merge key: {key}"
                    )));
                };
                let found = orig.iter().position(|o| o.get(key) == Some(id));
                match (pm.get("$patch").and_then(Value::as_str), found) {
                    (Some("delete"), Some(i)) => {
                        orig.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(i)) => {
                        let base = orig[i].as_object().cloned().unwrap_or_default();
                        orig[i] = Value::Object(merge_map(base, pm)?);
                    }
                    (_, None) => orig.push(Value::Object(merge_map(Map::new(), pm)?)),
                }
            }
            Ok(orig)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name() {
        let o = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let p = json!({"spec": {"containers": [{"name": "b", "image": "z"}]}});
        let m = merge(&o, &p).unwrap();
        assert_eq!(
            m["spec"]["containers"],
            json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}])
        );
    }

    #[test]
    fn delete_directive_and_null() {
        let o = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let p = json!({"metadata": {"labels": {"a": null}}, "spec": {"containers": [{"name": "a", "$patch": "delete"}]}});
        let m = merge(&o, &p).unwrap();
        assert_eq!(m["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(m["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn set_element_order_and_primitive_lists() {
        let o = json!({"metadata": {"finalizers": ["x", "y"]}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let p = json!({
            "metadata": {"finalizers": ["z"], "$deleteFromPrimitiveList/finalizers": ["x"]},
            "spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]},
        });
        let m = merge(&o, &p).unwrap();
        assert_eq!(m["metadata"]["finalizers"], json!(["y", "z"]));
        assert_eq!(
            m["spec"]["containers"],
            json!([{"name": "b"}, {"name": "a"}])
        );
    }

    #[test]
    fn unmerged_lists_are_replaced() {
        let o = json!({"spec": {"args": ["a", "b"]}});
        let p = json!({"spec": {"args": ["c"]}});
        assert_eq!(merge(&o, &p).unwrap()["spec"]["args"], json!(["c"]));
    }
}
