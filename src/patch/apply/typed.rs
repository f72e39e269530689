//! Operations on objects by their schema: the field set of an applied
//! configuration, the comparison of two versions of an object, the merge
//! of a configuration into a live object, and removal of fields.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::fieldpath::{self, Set};
use super::schema::{ListType, Root, Schema, Type, TypeId};

/// A type id that resolves to `Type::Deduced` (fields no schema declares).
const DEDUCED: TypeId = TypeId::MAX;

/// What a value is, given its type.
enum Kind<'a> {
    Leaf,
    Struct(&'a HashMap<Box<str>, super::schema::Field>),
    Map(TypeId),
    ListMap(&'a [String], TypeId),
    Set,
}

impl Kind<'_> {
    fn is_container(&self) -> bool {
        !matches!(self, Kind::Leaf)
    }
    fn same_shape(&self, o: &Kind<'_>) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(o)
    }
}

fn kind<'a>(s: &'a Schema, ty: TypeId, v: &Value) -> Kind<'a> {
    match (s.get(ty), v) {
        (Type::Struct(f), Value::Object(_)) => Kind::Struct(f),
        (Type::Map(e), Value::Object(_)) => Kind::Map(*e),
        (Type::Deduced, Value::Object(_)) => Kind::Map(DEDUCED),
        (
            Type::List {
                list_type: ListType::Map(keys),
                items,
            },
            Value::Array(_),
        ) if !keys.is_empty() => Kind::ListMap(keys, *items),
        (
            Type::List {
                list_type: ListType::Set,
                ..
            },
            Value::Array(_),
        ) => Kind::Set,
        _ => Kind::Leaf,
    }
}

/// The type of a child of a struct or map, and whether it is zero-present.
fn child_type(k: &Kind<'_>, key: &str) -> (TypeId, bool) {
    match k {
        Kind::Struct(fields) => fields
            .get(key)
            .map(|f| (f.ty, f.zero_present))
            .unwrap_or((DEDUCED, false)),
        Kind::Map(e) => (*e, false),
        _ => (DEDUCED, false),
    }
}

/// The `k:{...}` element of a list-map item whose items have type `items`,
/// None when a key is missing and its field has no default.
pub fn item_key(s: &Schema, items: TypeId, item: &Value, keys: &[String]) -> Option<String> {
    let obj = item.as_object()?;
    let mut fields: Vec<(&str, &Value)> = Vec::with_capacity(keys.len());
    for k in keys {
        match obj.get(k) {
            Some(v) if !v.is_null() => fields.push((k, v)),
            _ => fields.push((k, key_default(s, items, k)?)),
        }
    }
    Some(fieldpath::key(&fields))
}

/// The schema default of the key field `key` of list items of type `items`.
fn key_default<'a>(s: &'a Schema, items: TypeId, key: &str) -> Option<&'a Value> {
    match s.get(items) {
        Type::Struct(f) => f.get(key).and_then(|f| f.default.as_ref()),
        _ => None,
    }
}

/// Why a value does not fit its schema: (path, message) pairs, printed as
/// upstream's structured-merge-diff prints its validation errors.
#[derive(Debug)]
pub struct TypedError(pub Vec<(String, String)>);

impl std::fmt::Display for TypedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let one = |(p, m): &(String, String)| {
            if p.is_empty() {
                m.clone()
            } else {
                format!("{p}: {m}")
            }
        };
        match self.0.as_slice() {
            [e] => f.write_str(&one(e)),
            errs => {
                f.write_str("errors:")?;
                for e in errs {
                    write!(f, "\n  {}", one(e))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for TypedError {}

/// Why a list-map item has no key, in upstream's words.
fn missing_key_reason(s: &Schema, items: TypeId, item: &Value, keys: &[String]) -> String {
    let Some(obj) = item.as_object() else {
        return if item.is_null() {
            "associative list with keys may not have a null element".into()
        } else {
            "associative list with keys may not have non-map elements".into()
        };
    };
    let missing = keys
        .iter()
        .find(|k| {
            obj.get(k.as_str()).is_none_or(Value::is_null) && key_default(s, items, k).is_none()
        })
        .map(String::as_str)
        .unwrap_or_default();
    format!(
        "associative list with keys has an element that omits key field {missing:?} (and doesn't have default value)"
    )
}

/// The fields an applied configuration sets: leaves, list-map items, set
/// items, keys of granular maps, and empty or null values. Items of a
/// list-map without their keys, or twice the same item, are errors.
pub fn to_field_set(root: Root<'_>, v: &Value) -> Result<Set, TypedError> {
    let mut out = Set::new();
    let mut errs = Vec::new();
    fs_children(
        root.schema,
        root.id,
        v,
        &mut out,
        &mut Vec::new(),
        &mut errs,
    );
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(TypedError(errs))
    }
}

fn fs_children(
    s: &Schema,
    ty: TypeId,
    v: &Value,
    out: &mut Set,
    path: &mut Vec<String>,
    errs: &mut Vec<(String, String)>,
) {
    let k = kind(s, ty, v);
    match (&k, v) {
        (Kind::Struct(_) | Kind::Map(_), Value::Object(m)) => {
            for (key, cv) in m {
                let pe = fieldpath::field(key);
                let (cty, _) = child_type(&k, key);
                let declared = matches!(&k, Kind::Struct(f) if f.contains_key(key.as_str()));
                let ck = kind(s, cty, cv);
                let empty_map = cv.as_object().is_some_and(Map::is_empty);
                if !ck.is_container() || cv.is_null() || empty_map || !declared {
                    out.insert_member(&pe);
                }
                if ck.is_container() && !empty_map {
                    path.push(pe.clone());
                    let mut c = Set::new();
                    fs_children(s, cty, cv, &mut c, path, errs);
                    path.pop();
                    out.put_child(pe, c);
                }
            }
        }
        (Kind::ListMap(keys, items), Value::Array(list)) => {
            let mut seen = HashSet::new();
            for (i, item) in list.iter().enumerate() {
                let Some(pe) = item_key(s, *items, item, keys) else {
                    let reason = missing_key_reason(s, *items, item, keys);
                    errs.push((fieldpath::display(path), format!("element {i}: {reason}")));
                    // Without a key nothing deeper can be reported: upstream
                    // stops at the first such item of a list.
                    return;
                };
                if !seen.insert(pe.clone()) {
                    errs.push((
                        fieldpath::display(path),
                        format!(
                            "duplicate entries for key {}",
                            fieldpath::display(std::slice::from_ref(&pe))
                        ),
                    ));
                }
                out.insert_member(&pe);
                path.push(pe.clone());
                let mut c = Set::new();
                fs_children(s, *items, item, &mut c, path, errs);
                path.pop();
                out.put_child(pe, c);
            }
        }
        (Kind::Set, Value::Array(list)) => {
            for item in list {
                out.insert_member(&fieldpath::value(item));
            }
        }
        _ => {}
    }
}

/// What changed between two versions of an object.
#[derive(Debug, Default, PartialEq)]
pub struct Comparison {
    /// Added or modified paths.
    pub changed: Set,
    pub removed: Set,
}

/// Compares `old` (None: a new object, compared with the zero object) with `new`.
pub fn compare(root: Root<'_>, old: Option<&Value>, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    let empty = Value::Object(Map::new());
    let old = old.unwrap_or(&empty);
    cmp_children(root.schema, root.id, old, new, true, true, &mut c);
    c
}

/// Compares the children of two present values of the same shape.
fn cmp_children(
    s: &Schema,
    ty: TypeId,
    l: &Value,
    r: &Value,
    l_exists: bool,
    r_exists: bool,
    out: &mut Comparison,
) {
    let lk = kind(s, ty, l);
    match (&lk, l, r) {
        (Kind::Struct(_) | Kind::Map(_), Value::Object(lm), Value::Object(rm)) => {
            for (key, rv) in rm {
                let (cty, zero) = child_type(&lk, key);
                cmp_node(
                    s,
                    cty,
                    fieldpath::field(key),
                    lm.get(key),
                    Some(rv),
                    zero && l_exists,
                    zero && r_exists,
                    out,
                );
            }
            for (key, lv) in lm {
                if !rm.contains_key(key) {
                    let (cty, zero) = child_type(&lk, key);
                    cmp_node(
                        s,
                        cty,
                        fieldpath::field(key),
                        Some(lv),
                        None,
                        zero && l_exists,
                        zero && r_exists,
                        out,
                    );
                }
            }
        }
        (Kind::ListMap(keys, items), Value::Array(la), Value::Array(ra)) => {
            let mut lindex: HashMap<String, &Value> = HashMap::with_capacity(la.len());
            for item in la {
                if let Some(k) = item_key(s, *items, item, keys) {
                    lindex.entry(k).or_insert(item);
                }
            }
            let mut rkeys = HashSet::with_capacity(ra.len());
            for item in ra {
                if let Some(k) = item_key(s, *items, item, keys)
                    && rkeys.insert(k.clone())
                {
                    let lv = lindex.get(&k).copied();
                    cmp_node(s, *items, k, lv, Some(item), false, false, out);
                }
            }
            for item in la {
                if let Some(k) = item_key(s, *items, item, keys)
                    && !rkeys.contains(&k)
                    && rkeys.insert(k.clone())
                {
                    cmp_node(s, *items, k, Some(item), None, false, false, out);
                }
            }
        }
        (Kind::Set, Value::Array(la), Value::Array(ra)) => {
            for item in ra {
                if !la.contains(item) {
                    out.changed.insert_member(&fieldpath::value(item));
                }
            }
            for item in la {
                if !ra.contains(item) {
                    out.removed.insert_member(&fieldpath::value(item));
                }
            }
        }
        _ => {}
    }
}

/// Compares one child `pe`. A zero-present child that is absent on a side
/// counts as present there (`l_virtual`, `r_virtual`).
#[allow(clippy::too_many_arguments)]
fn cmp_node(
    s: &Schema,
    ty: TypeId,
    pe: String,
    l: Option<&Value>,
    r: Option<&Value>,
    l_virtual: bool,
    r_virtual: bool,
    out: &mut Comparison,
) {
    let l = l.filter(|v| !v.is_null());
    let r = r.filter(|v| !v.is_null());
    let lk = l.map(|v| kind(s, ty, v));
    let rk = r.map(|v| kind(s, ty, v));
    let container = match (&lk, &rk) {
        (Some(a), Some(b)) => a.is_container() && a.same_shape(b),
        (Some(a), None) => a.is_container(),
        (None, Some(b)) => b.is_container(),
        (None, None) => return,
    };
    if !container {
        match (l, r) {
            (None, Some(_)) => out.changed.insert_member(&pe),
            (Some(a), Some(b)) if a != b => out.changed.insert_member(&pe),
            (Some(_), None) => out.removed.insert_member(&pe),
            _ => {}
        }
        return;
    }
    if l.is_none() && !l_virtual {
        out.changed.insert_member(&pe);
    }
    if r.is_none() && !r_virtual {
        out.removed.insert_member(&pe);
    }
    // An absent side compares as an empty value of the other's shape.
    let empty_obj = Value::Object(Map::new());
    let empty_arr = Value::Array(Vec::new());
    let shape_of = |v: &Value| if v.is_array() { &empty_arr } else { &empty_obj };
    let (lv, rv) = match (l, r) {
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) => (a, shape_of(a)),
        (None, Some(b)) => (shape_of(b), b),
        (None, None) => return,
    };
    let mut sub = Comparison::default();
    cmp_children(
        s,
        ty,
        lv,
        rv,
        l.is_some() || l_virtual,
        r.is_some() || r_virtual,
        &mut sub,
    );
    out.changed.put_child(pe.clone(), sub.changed);
    out.removed.put_child(pe, sub.removed);
}

/// Merges an applied configuration into the live object: maps and structs
/// key by key, list-maps item by item, sets by value; everything else the
/// configuration replaces.
pub fn merge(root: Root<'_>, live: &Value, config: &Value) -> Value {
    merge_value(root.schema, root.id, Some(live), config)
}

fn merge_value(s: &Schema, ty: TypeId, l: Option<&Value>, r: &Value) -> Value {
    let rk = kind(s, ty, r);
    match (&rk, l, r) {
        (Kind::Struct(_) | Kind::Map(_), Some(Value::Object(lm)), Value::Object(rm)) => {
            let mut out = lm.clone();
            for (k, rv) in rm {
                if rv.is_null() {
                    out.remove(k);
                    continue;
                }
                let (cty, _) = child_type(&rk, k);
                let merged = merge_value(s, cty, lm.get(k), rv);
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Kind::ListMap(keys, items), Some(Value::Array(la)), Value::Array(ra)) => {
            let id = |v: &Value| item_key(s, *items, v, keys);
            let merged = merge_lists(la, ra, id, |lv, rv| match lv {
                Some(lv) => merge_value(s, *items, Some(lv), rv),
                None => rv.clone(),
            });
            Value::Array(merged)
        }
        (Kind::Set, Some(Value::Array(la)), Value::Array(ra)) => {
            let id = |v: &Value| Some(fieldpath::value(v));
            Value::Array(merge_lists(la, ra, id, |_, rv| rv.clone()))
        }
        _ => r.clone(),
    }
}

/// Merges two lists of identified items: items of `r` in `r`'s order, merged
/// with their `l` counterpart; items only in `l` keep their place relative
/// to the shared items that follow them.
fn merge_lists(
    l: &[Value],
    r: &[Value],
    id: impl Fn(&Value) -> Option<String>,
    mut merge_item: impl FnMut(Option<&Value>, &Value) -> Value,
) -> Vec<Value> {
    let lids: Vec<Option<String>> = l.iter().map(&id).collect();
    let rids: Vec<Option<String>> = r.iter().map(&id).collect();
    let in_r: HashSet<&str> = rids.iter().flatten().map(String::as_str).collect();
    let mut lpos: HashMap<&str, usize> = HashMap::new();
    for (i, k) in lids.iter().enumerate() {
        if let Some(k) = k {
            lpos.entry(k.as_str()).or_insert(i);
        }
    }
    let only_l = |j: usize| lids[j].as_deref().is_none_or(|k| !in_r.contains(k));
    // For each item of `r`, the position in `l` of the next shared item.
    let mut next_shared = vec![l.len(); r.len() + 1];
    for ri in (0..r.len()).rev() {
        next_shared[ri] = match rids[ri].as_deref().and_then(|k| lpos.get(k)) {
            Some(&p) => p,
            None => next_shared[ri + 1],
        };
    }
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let mut next = 0;
    let mut emitted: HashSet<&str> = HashSet::new();
    for (ri, item) in r.iter().enumerate() {
        let rid = rids[ri].as_deref();
        if rid.is_some_and(|k| !emitted.insert(k)) {
            continue;
        }
        // Items only in `l` that come before the next shared one go first.
        let p = next_shared[ri];
        for (j, item) in l.iter().enumerate().take(p).skip(next) {
            if only_l(j) {
                out.push(item.clone());
            }
        }
        next = next.max(p);
        match rid.and_then(|k| lpos.get(k).copied()) {
            Some(lp) => {
                if lp == next {
                    next += 1;
                }
                out.push(merge_item(Some(&l[lp]), item));
            }
            None => out.push(merge_item(None, item)),
        }
    }
    for (j, item) in l.iter().enumerate().skip(next) {
        if only_l(j) {
            out.push(item.clone());
        }
    }
    out
}

/// Removes the fields of `remove` from `v`, except those with descendants in
/// `keep` (fields others still own inside them). Lists and granular maps
/// emptied by the removal go too.
pub fn remove(root: Root<'_>, v: &mut Value, remove: &Set, keep: &Set) {
    remove_in(root.schema, root.id, v, remove, Some(keep));
}

fn remove_in(s: &Schema, ty: TypeId, v: &mut Value, rm: &Set, keep: Option<&Set>) {
    let keeps_inside = |pe: &str| {
        keep.and_then(|k| k.child(pe))
            .is_some_and(|c| !c.is_empty())
    };
    let k = kind(s, ty, v);
    match (k, v) {
        (k @ (Kind::Struct(_) | Kind::Map(_)), Value::Object(m)) => {
            for pe in rm.members() {
                if let Some(key) = pe.strip_prefix("f:")
                    && !keeps_inside(pe)
                {
                    m.remove(key);
                }
            }
            for (pe, c) in rm.children() {
                let Some(key) = pe.strip_prefix("f:") else {
                    continue;
                };
                let (cty, _) = child_type(&k, key);
                let mut emptied = false;
                if let Some(cv) = m.get_mut(key) {
                    let was_empty = is_empty_collection(cv);
                    remove_in(s, cty, cv, c, keep.and_then(|k| k.child(pe)));
                    let granular = !matches!(s.get(cty), Type::Struct(_));
                    emptied = !was_empty && granular && is_empty_collection(cv);
                }
                if emptied {
                    m.remove(key);
                }
            }
        }
        (Kind::ListMap(keys, items), Value::Array(list)) => {
            let keys = keys.to_vec();
            list.retain(|item| {
                item_key(s, items, item, &keys)
                    .is_none_or(|pe| !rm.member(&pe) || keeps_inside(&pe))
            });
            for item in list.iter_mut() {
                if let Some(pe) = item_key(s, items, item, &keys)
                    && let Some(c) = rm.child(&pe)
                {
                    // A kept item keeps its keys.
                    let mut c = c.clone();
                    for k in &keys {
                        c.remove_member(&fieldpath::field(k));
                    }
                    remove_in(s, items, item, &c, keep.and_then(|k| k.child(&pe)));
                }
            }
        }
        (Kind::Set, Value::Array(list)) => {
            list.retain(|item| !rm.member(&fieldpath::value(item)));
        }
        _ => {}
    }
}

fn is_empty_collection(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::{Schema, builtin_root};
    use super::*;
    use serde_json::json;

    fn deployment() -> Root<'static> {
        builtin_root("apps", "v1", "Deployment").unwrap()
    }

    fn set_of(v: Value) -> Set {
        Set::from_fields_v1(&v).unwrap()
    }

    #[test]
    fn field_sets_of_applied_configurations() {
        let cases = vec![
            (
                json!({"metadata": {"name": "a", "labels": {"app": "x"}}, "spec": {"replicas": 2}}),
                json!({"f:metadata": {"f:name": {}, "f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}}),
            ),
            (
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}}}),
                json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                    ".": {}, "f:name": {}, "f:image": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
                }}}}}}),
            ),
            (
                // Atomic struct (selector), set (finalizers), empty map, atomic list.
                json!({"metadata": {"finalizers": ["a", "b"], "annotations": {}},
                       "spec": {"selector": {"matchLabels": {"app": "x"}},
                                "template": {"spec": {"containers": [{"name": "c", "args": ["x"]}]}}}}),
                json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}, "f:annotations": {}},
                       "f:spec": {"f:selector": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}, "f:args": {}}}}}}}),
            ),
        ];
        for (config, want) in cases {
            assert_eq!(
                to_field_set(deployment(), &config).unwrap(),
                set_of(want),
                "{config}"
            );
        }
        let missing = json!({"spec": {"template": {"spec": {"containers": [{"image": "i"}]}}}});
        assert_eq!(
            to_field_set(deployment(), &missing)
                .unwrap_err()
                .to_string(),
            ".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
        );
        let dup =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}});
        assert_eq!(
            to_field_set(deployment(), &dup).unwrap_err().to_string(),
            ".spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
        );
        // Both at once, and a defaulted key (protocol) is no omission.
        let both = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 80}, {"protocol": "UDP"}]}, {"name": "a"}]}}}});
        assert_eq!(
            to_field_set(deployment(), &both).unwrap_err().to_string(),
            "errors:\n  .spec.template.spec.containers[name=\"a\"].ports: element 1: associative list with keys has an element that omits key field \"containerPort\" (and doesn't have default value)\n  .spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
        );
    }

    #[test]
    fn comparisons() {
        // (old, new, changed, removed)
        let cases = vec![
            (
                None,
                json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                       "template": {"spec": {"containers": [{"name": "c", "image": "i", "resources": {}}]}}}}),
                json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}},
                       "f:spec": {"f:replicas": {}, "f:strategy": {"f:type": {}, "f:rollingUpdate": {".": {}, "f:maxSurge": {}}},
                                  "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}, "f:image": {}, "f:resources": {}}}}}}}),
                json!({}),
            ),
            (
                Some(
                    json!({"spec": {"replicas": 1, "paused": true, "template": {"spec": {"containers": [{"name": "c", "image": "i"}, {"name": "d"}]}}}}),
                ),
                json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "j", "env": [{"name": "E", "value": "v"}]}]}}}}),
                json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                    "f:image": {}, "f:env": {".": {}, "k:{\"name\":\"E\"}": {".": {}, "f:name": {}, "f:value": {}}}}}}}}}),
                json!({"f:spec": {"f:paused": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"d\"}": {".": {}, "f:name": {}}}}}}}),
            ),
            (
                Some(json!({"metadata": {"finalizers": ["a", "b"]}})),
                json!({"metadata": {"finalizers": ["b", "c"]}}),
                json!({"f:metadata": {"f:finalizers": {"v:\"c\"": {}}}}),
                json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}}}}),
            ),
        ];
        for (old, new, changed, removed) in cases {
            let c = compare(deployment(), old.as_ref(), &new);
            assert_eq!(c.changed, set_of(changed), "changed for {new}");
            assert_eq!(c.removed, set_of(removed), "removed for {new}");
        }
    }

    #[test]
    fn merges() {
        // (live, config, merged)
        let cases = vec![
            (
                json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1, "selector": {"matchLabels": {"x": "1", "y": "2"}}}}),
                json!({"metadata": {"labels": {"b": "2"}}, "spec": {"selector": {"matchLabels": {"x": "1"}}}}),
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1, "selector": {"matchLabels": {"x": "1"}}}}),
            ),
            (
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}}}),
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c"}, {"name": "b", "image": "3", "args": ["x"]}]}}}}),
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "c"}, {"name": "b", "image": "3", "args": ["x"]}]}}}}),
            ),
            (
                json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}}}}),
                json!({"metadata": {"finalizers": ["c", "a"]}, "spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["3"]}]}}}}),
                json!({"metadata": {"finalizers": ["c", "a", "b"]}, "spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["3"]}]}}}}),
            ),
        ];
        for (live, config, want) in cases {
            assert_eq!(merge(deployment(), &live, &config), want, "{config}");
        }
    }

    #[test]
    fn removal_respects_other_owners() {
        let mut obj = json!({"metadata": {"labels": {"a": "1"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a", "image": "1", "args": ["x"]}, {"name": "b", "image": "2"}]}}}});
        let rm = set_of(
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:replicas": {},
            "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:args": {}},
                "k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}),
        );
        // Someone else owns container a's image, so a stays with its image.
        let keep = set_of(
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {"f:image": {}}}}}}}),
        );
        remove(deployment(), &mut obj, &rm, &keep);
        assert_eq!(
            obj,
            json!({"metadata": {}, "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}]}}}})
        );
    }

    #[test]
    fn custom_resources_default_to_atomic_lists() {
        let s = Schema::from_openapi_v3(
            &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "hosts": {"type": "array", "items": {"type": "string"}}}}}}),
        );
        let root = s.root("").unwrap();
        let live = json!({"spec": {"hosts": ["a", "b"], "other": {"x": 1}}});
        let config = json!({"spec": {"hosts": ["c"], "other": {"y": 2}}});
        assert_eq!(
            merge(root, &live, &config),
            json!({"spec": {"hosts": ["c"], "other": {"x": 1, "y": 2}}})
        );
        assert_eq!(
            to_field_set(root, &config).unwrap(),
            set_of(json!({"f:spec": {"f:hosts": {}, "f:other": {".": {}, "f:y": {}}}}))
        );
        let d = Schema::deduced().root("").unwrap();
        assert_eq!(
            to_field_set(d, &json!({"a": {"b": [1]}})).unwrap(),
            set_of(json!({"f:a": {".": {}, "f:b": {}}}))
        );
    }
}
