//! Small helpers for hooks that work on JSON objects: defaulting without
//! clobbering, reading with defaults, field paths, and upstream-shaped field
//! errors (including Go-style renderings of values in messages).

use serde_json::{Map, Value};

use crate::api::status::FieldError;

pub type Obj = Map<String, Value>;

/// `base.child`, or `child` when `base` is empty.
pub fn join(base: &str, child: &str) -> String {
    if base.is_empty() {
        child.to_string()
    } else {
        format!("{base}.{child}")
    }
}

/// `base[i]`.
pub fn idx(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// `base[key]` (map keys in upstream's field paths).
pub fn key(base: &str, k: &str) -> String {
    format!("{base}[{k}]")
}

/// True when `m[k]` is present and not null.
pub fn is_set(m: &Obj, k: &str) -> bool {
    m.get(k).is_some_and(|v| !v.is_null())
}

/// Set `m[k]` to `v` unless it already holds a non-null value.
pub fn set_default(m: &mut Obj, k: &str, v: Value) {
    if !is_set(m, k) {
        m.insert(k.to_string(), v);
    }
}

/// Set `m[k]` to `v` when absent, null or an empty string (Go's zero value).
pub fn set_default_str(m: &mut Obj, k: &str, v: &str) {
    let zero = match m.get(k) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if zero {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
}

/// Set `m[k]` to `v` when absent, null or 0 (Go's zero value for numbers).
pub fn set_default_num(m: &mut Obj, k: &str, v: i64) {
    let zero = match m.get(k) {
        None | Some(Value::Null) => true,
        Some(x) => x.as_f64() == Some(0.0),
    };
    if zero {
        m.insert(k.to_string(), Value::from(v));
    }
}

/// The object at `m[k]`, created when absent or null. None when `m[k]` holds
/// something else (type errors are reported elsewhere).
pub fn child<'a>(m: &'a mut Obj, k: &str) -> Option<&'a mut Obj> {
    if !is_set(m, k) {
        m.insert(k.to_string(), Value::Object(Map::new()));
    }
    m.get_mut(k).and_then(Value::as_object_mut)
}

/// The object at `m[k]` if present.
pub fn child_opt<'a>(m: &'a mut Obj, k: &str) -> Option<&'a mut Obj> {
    m.get_mut(k).and_then(Value::as_object_mut)
}

/// Each object element of the array at `m[k]`.
pub fn each_obj_mut<'a>(m: &'a mut Obj, k: &str) -> impl Iterator<Item = &'a mut Obj> {
    m.get_mut(k)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Read a string at a JSON pointer, "" when absent.
pub fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Read an integer at a JSON pointer.
pub fn int(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(Value::as_i64)
}

/// Read a bool at a JSON pointer.
pub fn flag(v: &Value, ptr: &str) -> Option<bool> {
    v.pointer(ptr).and_then(Value::as_bool)
}

/// The array at a JSON pointer, empty when absent.
pub fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The map at a JSON pointer, if any.
pub fn map<'a>(v: &'a Value, ptr: &str) -> Option<&'a Obj> {
    v.pointer(ptr).and_then(Value::as_object)
}

/// The value at a JSON pointer, treating null as absent.
pub fn get<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    v.pointer(ptr).filter(|x| !x.is_null())
}

/// A value as Go's `%v`/`%#v` would show it in a field error: strings
/// quoted, numbers and booleans bare, anything else as compact JSON.
pub fn go_repr(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Null => "null".to_string(),
        Value::Number(_) | Value::Bool(_) => v.to_string(),
        _ => v.to_string(),
    }
}

/// `map[string]string{"a":"b"}` as Go prints a string map (keys sorted).
pub fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        go_repr(&Value::String(k.clone())),
                        go_repr(m.get(k).unwrap_or(&Value::Null))
                    )
                })
                .collect();
            format!("map[string]string{{{}}}", parts.join(", "))
        }
    }
}

/// A label selector as Go prints `v1.LabelSelector` with `%#v`.
pub fn go_label_selector(v: Option<&Value>) -> String {
    let Some(sel) = v.filter(|x| x.is_object()) else {
        return "(*v1.LabelSelector)(nil)".to_string();
    };
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    let vals = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(vs) => format!(
                            "[]string{{{}}}",
                            vs.iter().map(go_repr).collect::<Vec<_>>().join(", ")
                        ),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_repr(e.get("key").unwrap_or(&Value::String(String::new()))),
                        go_repr(e.get("operator").unwrap_or(&Value::String(String::new()))),
                        vals
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_string_map(sel.get("matchLabels")),
        exprs
    )
}

/// `Invalid value: <repr>: detail` with the value rendered as Go would.
pub fn invalid(field: impl Into<String>, v: &Value, detail: impl Into<String>) -> FieldError {
    FieldError::invalid_raw(field, go_repr(v), detail)
}

/// `Invalid value: <value>: field is immutable`.
pub fn immutable(field: impl Into<String>, v: &Value) -> FieldError {
    invalid(field, v, "field is immutable")
}

/// `Required value: detail`.
pub fn required(field: impl Into<String>, detail: &str) -> FieldError {
    let mut e = FieldError::required(field);
    if !detail.is_empty() {
        e.message = format!("Required value: {detail}");
    }
    e
}

/// `Too long: may not be more than N bytes` (the value is not shown).
pub fn too_long(field: impl Into<String>, max: usize) -> FieldError {
    FieldError {
        reason: "FieldValueTooLong",
        field: field.into(),
        message: format!("Too long: may not be more than {max} bytes"),
    }
}

/// `Not found: "value"`.
pub fn not_found(field: impl Into<String>, v: &str) -> FieldError {
    FieldError {
        reason: "FieldValueNotFound",
        field: field.into(),
        message: format!("Not found: {}", go_repr(&Value::String(v.to_string()))),
    }
}

/// `Too many: N: must have at most M items`.
pub fn too_many(field: impl Into<String>, n: usize, max: usize) -> FieldError {
    FieldError {
        reason: "FieldValueTooMany",
        field: field.into(),
        message: format!("Too many: {n}: must have at most {max} items"),
    }
}

/// `Unsupported value` for a string field whose allowed set is `allowed`.
pub fn check_enum(
    errs: &mut Vec<FieldError>,
    field: &str,
    v: Option<&Value>,
    allowed: &[&str],
    required_if_empty: bool,
) {
    match v {
        None | Some(Value::Null) => {
            if required_if_empty {
                errs.push(FieldError::required(field));
            }
        }
        Some(Value::String(s)) if s.is_empty() => {
            if required_if_empty {
                errs.push(FieldError::required(field));
            }
        }
        Some(Value::String(s)) => {
            if !allowed.contains(&s.as_str()) {
                errs.push(FieldError::not_supported(field, s, allowed));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(field, go_repr(other), allowed)),
    }
}

/// `must be greater than or equal to 0` for an optional integer.
pub fn check_non_negative(errs: &mut Vec<FieldError>, field: &str, v: Option<i64>) {
    if let Some(n) = v
        && n < 0
    {
        errs.push(FieldError::invalid_raw(
            field,
            n,
            "must be greater than or equal to 0",
        ));
    }
}

/// `must be greater than zero` for an optional integer.
pub fn check_positive(errs: &mut Vec<FieldError>, field: &str, v: Option<i64>) {
    if let Some(n) = v
        && n <= 0
    {
        errs.push(FieldError::invalid_raw(
            field,
            n,
            "must be greater than zero",
        ));
    }
}

/// The JSON pointer for a dotted field name (`spec.selector` -> `/spec/selector`).
pub fn ptr(field: &str) -> String {
    let mut out = String::new();
    for part in field.split('.') {
        out.push('/');
        out.push_str(&part.replace('~', "~0").replace('/', "~1"));
    }
    out
}

/// Push an immutability error when the value at `field` differs between
/// `new` and `old` (absent and null are the same).
pub fn check_immutable(errs: &mut Vec<FieldError>, new: &Value, old: &Value, field: &str) {
    let p = ptr(field);
    let n = get(new, &p);
    let o = get(old, &p);
    if n != o {
        errs.push(immutable(field, n.unwrap_or(&Value::Null)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_do_not_clobber() {
        let mut m = json!({"a": "x", "b": null, "c": "", "n": 0, "k": 5})
            .as_object()
            .cloned()
            .unwrap_or_default();
        set_default(&mut m, "a", json!("y"));
        set_default(&mut m, "b", json!("y"));
        set_default_str(&mut m, "c", "z");
        set_default_num(&mut m, "n", 30);
        set_default_num(&mut m, "k", 30);
        assert_eq!(
            Value::Object(m),
            json!({"a": "x", "b": "y", "c": "z", "n": 30, "k": 5})
        );
    }

    #[test]
    fn go_renderings() {
        assert_eq!(
            go_string_map(Some(&json!({"b": "2", "a": "1"}))),
            r#"map[string]string{"a":"1", "b":"2"}"#
        );
        assert_eq!(
            go_label_selector(Some(&json!({"matchLabels": {"app": "web"}}))),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"app":"web"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
        assert_eq!(
            immutable("type", &json!("Opaque")).message,
            r#"Invalid value: "Opaque": field is immutable"#
        );
        assert_eq!(
            too_long("data", 10).message,
            "Too long: may not be more than 10 bytes"
        );
    }
}
