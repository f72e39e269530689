//! Strategic merge patch for built-in kinds, as upstream's apimachinery
//! applies it: like a merge patch, but a list whose field carries the
//! `merge` patch strategy is merged element by element (by its merge key, or
//! as a set of scalars), a field with the `replace` strategy is replaced
//! whole, and the `$patch`, `$setElementOrder/`, `$retainKeys` and
//! `$deleteFromPrimitiveList/` directives are honoured. Strategies and merge
//! keys come from the `listmeta` table of the published OpenAPI, looked up by
//! the definition each value sits in (so `ports` of a container merges by
//! `containerPort`, of a Service by `port`, and of a NetworkPolicy rule not at
//! all).
//!
//! Upstream's order of a merged list is kept: items named in the patch take
//! the patch's order and come before items only the server has, unless the
//! server already had them later in the list.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::PatchError;
use crate::api::openapi::definitions::{self, BUILTIN_KINDS, SCALE, V2_REF_PREFIX};
use crate::api::openapi::listmeta;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// What one field of a definition holds.
#[derive(Debug)]
struct Child {
    /// The definition of the value, of a list's items or of a map's values.
    def: Option<Box<str>>,
    /// A map from keys to `def` (rather than a struct of type `def`).
    map: bool,
}

/// Field types of the built-in definitions, and each kind's root definition.
struct Index {
    roots: HashMap<String, String>,
    fields: HashMap<String, HashMap<String, Child>>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let generated = definitions::generate(BUILTIN_KINDS);
        let mut roots: HashMap<String, String> = generated
            .kinds
            .iter()
            .map(|k| {
                (
                    format!("{}/{}/{}", k.group, k.version, k.kind),
                    k.definition.clone(),
                )
            })
            .collect();
        roots.insert("autoscaling/v1/Scale".into(), SCALE.into());
        let fields = generated
            .definitions
            .iter()
            .filter_map(|(name, schema)| {
                let props = schema.get("properties")?.as_object()?;
                let children = props
                    .iter()
                    .map(|(k, v)| (k.clone(), classify(v)))
                    .collect();
                Some((name.clone(), children))
            })
            .collect();
        Index { roots, fields }
    })
}

fn ref_name(s: &Value) -> Option<&str> {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return r.strip_prefix(V2_REF_PREFIX);
    }
    ["allOf", "anyOf", "oneOf"].iter().find_map(|k| {
        s.get(*k)?
            .as_array()?
            .iter()
            .find_map(|v| v.get("$ref")?.as_str()?.strip_prefix(V2_REF_PREFIX))
    })
}

fn classify(s: &Value) -> Child {
    let def = |v: Option<&Value>| v.and_then(ref_name).map(Into::into);
    if let Some(r) = ref_name(s) {
        return Child {
            def: Some(r.into()),
            map: false,
        };
    }
    match s.get("type").and_then(Value::as_str) {
        Some("array") => Child {
            def: def(s.get("items")),
            map: false,
        },
        _ if s.get("additionalProperties").is_some_and(Value::is_object) => Child {
            def: def(s.get("additionalProperties")),
            map: true,
        },
        _ => Child {
            def: None,
            map: false,
        },
    }
}

/// Where in the built-in types a value sits.
#[derive(Debug, Clone, Copy)]
enum At {
    /// A struct of this definition.
    Struct(&'static str),
    /// A map whose values are of this definition (if known).
    MapOf(Option<&'static str>),
    /// Nothing known: merged as plain JSON, lists replaced.
    Unknown,
}

/// Patch metadata of one field: where its value (or its list items) sits,
/// its strategy (without `retainKeys`) and its merge key.
struct FieldMeta {
    at: At,
    strategy: &'static str,
    merge_key: &'static str,
}

impl At {
    fn root(obj: &Value) -> At {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        match index().roots.get(&format!("{group}/{version}/{kind}")) {
            Some(d) => At::Struct(d),
            None => At::Unknown,
        }
    }

    fn struct_at(def: Option<&'static str>) -> At {
        def.map_or(At::Unknown, At::Struct)
    }

    fn field(self, name: &str) -> FieldMeta {
        match self {
            At::Struct(def) => {
                let at = match index().fields.get(def).and_then(|f| f.get(name)) {
                    Some(Child { def: d, map: true }) => At::MapOf(d.as_deref()),
                    Some(Child { def: d, map: false }) => At::struct_at(d.as_deref()),
                    None => At::Unknown,
                };
                let (strategies, merge_key) = listmeta::patch_meta(def, name).unwrap_or(("", ""));
                let strategy = strategies
                    .split(',')
                    .find(|s| *s != "retainKeys")
                    .unwrap_or("");
                FieldMeta {
                    at,
                    strategy,
                    merge_key,
                }
            }
            At::MapOf(d) => FieldMeta {
                at: At::struct_at(d),
                strategy: "",
                merge_key: "",
            },
            At::Unknown => FieldMeta {
                at: At::Unknown,
                strategy: "",
                merge_key: "",
            },
        }
    }
}

/// Apply strategic merge patch `patch` to `original`, typed by the
/// original's apiVersion and kind.
pub fn merge(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Some(p) = patch.as_object() else {
        return Err(PatchError::BadRequest(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            json_kind(patch)
        )));
    };
    let orig = original.as_object().cloned().unwrap_or_default();
    merge_map(orig, p.clone(), At::root(original)).map(Value::Object)
}

/// The JSON kind of a value as Go's decoder names it in errors.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's name of the type a JSON value decodes to (`reflect.TypeOf`).
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// A value as Go's `%v` prints it, for upstream's error texts.
pub(crate) fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_fmt(&m[k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::BadRequest(format!(
        "map: {} does not contain declared merge key: {key}",
        go_fmt(&Value::Object(m.clone()))
    ))
}

fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    PatchError::BadRequest(format!(
        "expected a {expected}, but received a {}",
        go_type(actual)
    ))
}

fn bad_patch_type(directive: &Value, m: &Map<String, Value>) -> PatchError {
    PatchError::BadRequest(format!(
        "unknown patch type: {} in map: {}",
        go_fmt(directive),
        go_fmt(&Value::Object(m.clone()))
    ))
}

/// Whether a key is a directive rather than a field.
fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(SET_ELEMENT_ORDER)
        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// A patch value as it lands where the original had nothing (or something
/// of another type): without directives and without nulls. None when the
/// value itself is a directive.
fn clean(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let kept = m
                .into_iter()
                .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
                .filter_map(|(k, v)| clean(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(kept))
        }
        Value::Array(a) => Some(Value::Array(a.into_iter().filter_map(clean).collect())),
        other => Some(other),
    }
}

fn merge_map(
    mut orig: Map<String, Value>,
    mut patch: Map<String, Value>,
    at: At,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(match clean(Value::Object(patch)) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                })
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(directive, &patch)),
        };
    }
    retain_keys(&mut orig, &mut patch)?;
    set_element_order(&mut orig, &mut patch, at)?;

    for (k, pv) in patch {
        // Any other `$key` is, as upstream, just a field: one the schema
        // does not know, for field validation to drop or refuse.
        let (field, delete_list) = match k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(f) => (f.to_string(), true),
            None => (k, false),
        };
        if pv.is_null() {
            orig.remove(&field);
            continue;
        }
        let Some(ov) = orig.remove(&field) else {
            if !delete_list && let Some(v) = clean(pv) {
                orig.insert(field, v);
            }
            continue;
        };
        let merged = match (ov, pv) {
            (Value::Object(_), Value::Object(p))
                if p.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") =>
            {
                // Upstream empties the map, which its typed round trip then
                // omits (or defaults): the field goes.
                None
            }
            (Value::Object(o), Value::Object(p)) => {
                let meta = at.field(&field);
                if meta.strategy == "replace" {
                    clean(Value::Object(p))
                } else {
                    Some(Value::Object(merge_map(o, p, meta.at)?))
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                let meta = at.field(&field);
                if meta.strategy == "merge" || delete_list {
                    let merged = merge_list(o, p, meta.at, meta.merge_key, delete_list)?;
                    // A list the patch emptied goes: upstream's typed round
                    // trip omits empty lists (`omitempty`).
                    (!merged.is_empty()).then_some(Value::Array(merged))
                } else {
                    clean(Value::Array(p))
                }
            }
            (ov, _) if delete_list => Some(ov),
            (_, pv) => clean(pv),
        };
        if let Some(v) = merged {
            orig.insert(field, v);
        }
    }
    Ok(orig)
}

/// `$retainKeys`: keys of the original not listed go; every field the patch
/// sets must be listed.
fn retain_keys(
    orig: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(list) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::BadRequest("invalid patch format of retainKeys".into());
    let Value::Array(list) = list else {
        return Err(bad());
    };
    let listed = |k: &str| list.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !listed(k) {
            return Err(bad());
        }
    }
    orig.retain(|k, _| listed(k));
    Ok(())
}

/// `$setElementOrder/<list>`: merges the list (if the patch has it) and puts
/// the result in the given order, server-only items where they were.
fn set_element_order(
    orig: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    at: At,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let Some(order) = patch.remove(&key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg_type("[]interface {}", &order));
        };
        let field = &key[SET_ELEMENT_ORDER.len()..];
        let meta = at.field(field);
        let as_list = |v: Option<Value>| -> Result<Option<Vec<Value>>, PatchError> {
            match v {
                None => Ok(None),
                Some(Value::Array(a)) => Ok(Some(a)),
                Some(other) => Err(bad_arg_type("[]interface {}", &other)),
            }
        };
        let orig_list = as_list(orig.get(field).cloned())?;
        let patch_list = as_list(patch.remove(field))?;
        check_order(patch_list.as_deref().unwrap_or(&[]), &order, meta.merge_key)?;
        let merged = match (&orig_list, patch_list.clone()) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => p.into_iter().filter_map(clean).collect(),
            (Some(o), Some(p)) if meta.strategy == "merge" => {
                merge_list(o.clone(), p, meta.at, meta.merge_key, false)?
            }
            (Some(_), Some(p)) => p.into_iter().filter_map(clean).collect(),
            (None, None) => continue,
        };
        let server_order = orig_list.unwrap_or_default();
        let all: Vec<&Value> = server_order
            .iter()
            .chain(patch_list.iter().flatten())
            .collect();
        if all.is_empty() {
            orig.insert(field.to_string(), Value::Array(merged));
            continue;
        }
        let ordered = order_items(merged, &order, &server_order, meta.merge_key)?;
        orig.insert(field.to_string(), Value::Array(ordered));
    }
    Ok(())
}

/// The relative order of the patch's items must agree with the
/// `$setElementOrder` list, as upstream checks.
fn check_order(patch: &[Value], order: &[Value], key: &str) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::new();
    for p in patch {
        if key.is_empty() {
            kept.push(p);
            continue;
        }
        let Some(m) = p.as_object() else {
            return Err(bad_arg_type("map[string]interface {}", p));
        };
        if m.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
            kept.push(p);
        }
    }
    let (mut pi, mut oi) = (0, 0);
    while pi < kept.len() && oi < order.len() {
        if kept[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if same_item(kept[pi], &order[oi], key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < kept.len() {
        return Err(PatchError::BadRequest(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
            go_fmt(&Value::Array(patch.to_vec())),
            go_fmt(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

/// Whether two list items are the same item: by merge key, or by value.
fn same_item(a: &Value, b: &Value, key: &str) -> Result<bool, PatchError> {
    if key.is_empty() {
        return Ok(a == b);
    }
    let id = |v: &Value| -> Result<Value, PatchError> {
        let m = v
            .as_object()
            .ok_or_else(|| bad_arg_type("map[string]interface {}", v))?;
        m.get(key).cloned().ok_or_else(|| no_merge_key(m, key))
    };
    Ok(id(a)? == id(b)?)
}

/// The merge-key value (or the value itself) that identifies an item.
fn identity<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    if key.is_empty() { Some(v) } else { v.get(key) }
}

fn position(list: &[Value], item: &Value, key: &str) -> Option<usize> {
    let id = identity(item, key)?;
    list.iter().position(|o| identity(o, key) == Some(id))
}

/// Upstream's order of a merged list: items named in `order` in that order,
/// the others in the server's order, interleaved where the server's order
/// says a server-only item comes first.
fn order_items(
    merged: Vec<Value>,
    order: &[Value],
    server_order: &[Value],
    key: &str,
) -> Result<Vec<Value>, PatchError> {
    if !key.is_empty() {
        for v in merged.iter().chain(order).chain(server_order) {
            let m = v
                .as_object()
                .ok_or_else(|| bad_arg_type("map[string]interface {}", v))?;
            if m.get(DIRECTIVE).is_none() && !m.contains_key(key) {
                return Err(no_merge_key(m, key));
            }
        }
    }
    let (mut named, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| position(order, v, key).is_some());
    named.sort_by_key(|v| position(order, v, key));
    server_only.sort_by_key(|v| position(server_order, v, key));
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        named.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
            (Some(l), Some(r)) => matches!(
                (position(server_order, l, key), position(server_order, r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// Kinds of list elements, as far as merging cares.
#[derive(PartialEq, Eq)]
enum ElemKind {
    Map,
    Scalar(&'static str),
}

fn element_kind(orig: &[Value], patch: &[Value]) -> Result<ElemKind, PatchError> {
    let mut kind: Option<&'static str> = None;
    for v in orig.iter().chain(patch) {
        let t = go_type(v);
        match kind {
            None if v.is_array() => {
                return Err(PatchError::Rejected(
                    "lists of lists are not supported".into(),
                ));
            }
            None => kind = Some(t),
            Some(k) if k != t => {
                return Err(PatchError::BadRequest(format!(
                    "list element types are not identical: [{} {}]",
                    go_fmt(&Value::Array(orig.to_vec())),
                    go_fmt(&Value::Array(patch.to_vec()))
                )));
            }
            Some(_) => {}
        }
    }
    Ok(match kind {
        Some("map[string]interface {}") => ElemKind::Map,
        Some(t) => ElemKind::Scalar(t),
        None => ElemKind::Scalar(""),
    })
}

fn merge_list(
    orig: Vec<Value>,
    patch: Vec<Value>,
    at: At,
    key: &str,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if orig.is_empty() && patch.is_empty() {
        return Ok(orig);
    }
    if element_kind(&orig, &patch)? != ElemKind::Map {
        if delete_list {
            return Ok(orig.into_iter().filter(|v| !patch.contains(v)).collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(orig.len() + patch.len());
        for v in orig.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        return order_items(merged, &patch, &orig, "");
    }
    if key.is_empty() {
        let name = if matches!(at, At::Struct(_)) {
            "struct"
        } else {
            "map"
        };
        return Err(PatchError::BadRequest(format!(
            "cannot merge lists without merge key for {name}"
        )));
    }
    // Elements with a `$patch` directive first: deletions and replacement.
    let mut orig = orig;
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = v else {
            continue;
        };
        match m.get(DIRECTIVE) {
            None => plain.push(m),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let Some(id) = m.get(key) else {
                        return Err(no_merge_key(&m, key));
                    };
                    orig.retain(|o| o.get(key) != Some(id));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(PatchError::BadRequest(
                        "merging lists cannot yet be specified in the patch".into(),
                    ));
                }
                _ => return Err(bad_patch_type(d, &m)),
            },
        }
    }
    if replace {
        orig = plain
            .into_iter()
            .filter_map(|m| clean(Value::Object(m)))
            .collect();
        plain = Vec::new();
    }
    let server_order = orig.clone();
    let mut merged = orig;
    let mut order = Vec::with_capacity(plain.len());
    for p in plain {
        let Some(id) = p.get(key).cloned() else {
            return Err(no_merge_key(&p, key));
        };
        let mut found = None;
        for (i, o) in merged.iter().enumerate() {
            let Some(om) = o.as_object() else {
                return Err(PatchError::BadRequest(format!(
                    "value for key {i} is not a map"
                )));
            };
            if om.get(key) == Some(&id) {
                found = Some(i);
                break;
            }
        }
        order.push(Value::Object(p.clone()));
        match found {
            Some(i) => {
                let base = match merged[i].take() {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                merged[i] = Value::Object(merge_map(base, p, at)?);
            }
            None => merged.extend(clean(Value::Object(p))),
        }
    }
    order_items(merged, &order, &server_order, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn containers_merge_by_name_new_items_first() {
        let o =
            pod(json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}));
        let p = json!({"spec": {"containers": [{"name": "b", "image": "z"}]}});
        let m = merge(&o, &p).unwrap();
        assert_eq!(
            m["spec"]["containers"],
            json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}])
        );
        // As upstream: an item the server lacks comes before server-only ones.
        let p = json!({"spec": {"containers": [{"name": "c", "image": "w"}]}});
        let m = merge(&o, &p).unwrap();
        let names: Vec<&str> = m["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[test]
    fn delete_directive_and_null() {
        let mut o = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        o["metadata"]["labels"] = json!({"a": "1", "b": "2"});
        let p = json!({"metadata": {"labels": {"a": null}}, "spec": {"containers": [{"name": "a", "$patch": "delete"}]}});
        let m = merge(&o, &p).unwrap();
        assert_eq!(m["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(m["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn set_element_order_and_primitive_lists() {
        let mut o = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        o["metadata"]["finalizers"] = json!(["x", "y"]);
        let p = json!({
            "metadata": {"finalizers": ["z"], "$deleteFromPrimitiveList/finalizers": ["x"]},
            "spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]},
        });
        let m = merge(&o, &p).unwrap();
        assert_eq!(m["metadata"]["finalizers"], json!(["z", "y"]));
        assert_eq!(
            m["spec"]["containers"],
            json!([{"name": "b"}, {"name": "a"}])
        );
    }

    #[test]
    fn emptied_lists_go() {
        let mut o = pod(json!({"containers": [{"name": "a", "env": [{"name": "E"}]}]}));
        o["metadata"]["finalizers"] = json!(["x"]);
        let p = json!({
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]},
            "spec": {"containers": [{"name": "a", "env": [{"name": "E", "$patch": "delete"}]}]},
        });
        let m = merge(&o, &p).unwrap();
        assert!(m["metadata"].get("finalizers").is_none(), "{m}");
        assert_eq!(m["spec"]["containers"], json!([{"name": "a"}]));
    }

    #[test]
    fn lists_without_merge_strategy_are_replaced() {
        let o = pod(json!({
            "containers": [{"name": "a", "args": ["a", "b"]}],
            "tolerations": [{"key": "t1", "operator": "Exists"}],
        }));
        let p = json!({"spec": {
            "containers": [{"name": "a", "args": ["c"]}],
            "tolerations": [{"key": "t2", "operator": "Exists"}],
        }});
        let m = merge(&o, &p).unwrap();
        assert_eq!(m["spec"]["containers"][0]["args"], json!(["c"]));
        assert_eq!(
            m["spec"]["tolerations"],
            json!([{"key": "t2", "operator": "Exists"}])
        );
    }

    #[test]
    fn merge_keys_follow_the_definition() {
        // Service ports merge by port; NetworkPolicy ports are atomic.
        let svc = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80}, {"port": 81}]}});
        let m = merge(
            &svc,
            &json!({"spec": {"ports": [{"port": 81, "name": "b"}]}}),
        )
        .unwrap();
        assert_eq!(
            m["spec"]["ports"],
            json!([{"port": 80}, {"port": 81, "name": "b"}])
        );
        let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "spec": {"ingress": [{"ports": [{"port": 80}]}]}});
        let m = merge(
            &np,
            &json!({"spec": {"ingress": [{"ports": [{"port": 81}]}]}}),
        )
        .unwrap();
        assert_eq!(m["spec"]["ingress"], json!([{"ports": [{"port": 81}]}]));
    }

    #[test]
    fn directive_errors() {
        let o = pod(json!({"containers": [{"name": "a"}]}));
        let e = merge(&o, &json!({"spec": {"$patch": "merge"}})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown patch type: merge in map: map[$patch:merge]"
        );
        let e = merge(&o, &json!({"spec": {"containers": [{"$patch": "merge"}]}})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "merging lists cannot yet be specified in the patch"
        );
        let e = merge(&o, &json!({"spec": {"containers": [{"image": "x"}]}})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "map: map[image:x] does not contain declared merge key: name"
        );
    }
}
