//! The server-side apply extensions of a CRD schema, checked as upstream
//! checks them: `x-kubernetes-list-type` (atomic, set or map, on arrays),
//! `x-kubernetes-list-map-keys` (scalar item properties, required or
//! defaulted, not nullable), `x-kubernetes-map-type` (atomic or granular,
//! on objects), and set items that are lists or objects being atomic.

use serde_json::{Map, Value};

use crate::api::status::FieldError;

fn text<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

/// Checks `schema` (an openAPIV3Schema) and every schema below it; errors
/// name paths under `path`.
pub fn validate(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Value::Object(m) = schema else {
        return;
    };
    node(m, path, errs);
    if let Some(Value::Object(props)) = m.get("properties") {
        for (k, p) in props {
            validate(p, &format!("{path}.properties[{k}]"), errs);
        }
    }
    if let Some(a @ Value::Object(_)) = m.get("additionalProperties") {
        validate(a, &format!("{path}.additionalProperties"), errs);
    }
    if let Some(i) = m.get("items") {
        validate(i, &format!("{path}.items"), errs);
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = m.get(k) {
            for (i, a) in alts.iter().enumerate() {
                validate(a, &format!("{path}.{k}[{i}]"), errs);
            }
        }
    }
    if let Some(n) = m.get("not") {
        validate(n, &format!("{path}.not"), errs);
    }
}

fn node(m: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    let ty = text(m, "type").unwrap_or("");
    let map_type = text(m, "x-kubernetes-map-type");
    let list_type = text(m, "x-kubernetes-list-type");
    let keys: Vec<&str> = m
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let items = m.get("items").and_then(Value::as_object);

    if map_type.is_some() && ty != "object" {
        errs.push(wrong_type(
            path,
            ty,
            "must be object if x-kubernetes-map-type is specified",
        ));
    }
    if let Some(mt) = map_type
        && mt != "atomic"
        && mt != "granular"
    {
        errs.push(FieldError::not_supported(
            format!("{path}.x-kubernetes-map-type"),
            mt,
            &["atomic", "granular"],
        ));
    }
    if list_type.is_some() && ty != "array" {
        errs.push(wrong_type(
            path,
            ty,
            "must be array if x-kubernetes-list-type is specified",
        ));
    } else if list_type == Some("set")
        && let Some(is) = items
    {
        let set_msg = "must be atomic as item of a list with x-kubernetes-list-type=set";
        match text(is, "type") {
            Some("array") => {
                if let Some(lt) = text(is, "x-kubernetes-list-type")
                    && lt != "atomic"
                {
                    errs.push(FieldError::invalid(
                        format!("{path}.items.x-kubernetes-list-type"),
                        lt,
                        set_msg,
                    ));
                }
            }
            Some("object") if text(is, "x-kubernetes-map-type") != Some("atomic") => {
                // Upstream shows the item's list type here (nil: "null").
                errs.push(FieldError::invalid(
                    format!("{path}.items.x-kubernetes-map-type"),
                    text(is, "x-kubernetes-list-type").unwrap_or("null"),
                    set_msg,
                ));
            }
            _ => {}
        }
    }
    if let Some(lt) = list_type
        && !["atomic", "set", "map"].contains(&lt)
    {
        errs.push(FieldError::not_supported(
            format!("{path}.x-kubernetes-list-type"),
            lt,
            &["atomic", "set", "map"],
        ));
    }
    if !keys.is_empty() {
        match list_type {
            None => errs.push(FieldError {
                reason: "FieldValueRequired",
                field: format!("{path}.x-kubernetes-list-type"),
                message: "Required value: must be map if x-kubernetes-list-map-keys is non-empty"
                    .into(),
            }),
            Some("map") => {}
            Some(lt) => errs.push(FieldError::invalid(
                format!("{path}.x-kubernetes-list-type"),
                lt,
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
        }
    }
    // A []string as Go's %#v prints it.
    let keys_shown = || {
        let quoted: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        format!("[]string{{{}}}", quoted.join(", "))
    };
    if list_type == Some("map") {
        if keys.is_empty() {
            errs.push(FieldError {
                reason: "FieldValueRequired",
                field: format!("{path}.x-kubernetes-list-map-keys"),
                message: "Required value: must not be empty if x-kubernetes-list-type is map"
                    .into(),
            });
        }
        match items {
            None => errs.push(FieldError {
                reason: "FieldValueRequired",
                field: format!("{path}.items"),
                message: "Required value: must have a schema if x-kubernetes-list-type is map"
                    .into(),
            }),
            Some(is) if text(is, "type") != Some("object") => errs.push(FieldError::invalid(
                format!("{path}.items.type"),
                text(is, "type").unwrap_or(""),
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
            Some(is) => {
                let props = is.get("properties").and_then(Value::as_object);
                let mut seen: Vec<&str> = Vec::new();
                for k in &keys {
                    match props.and_then(|p| p.get(*k)) {
                        Some(p) => {
                            if matches!(
                                p.get("type").and_then(Value::as_str),
                                Some("array" | "object")
                            ) {
                                // Upstream shows the item's type, not the key's.
                                errs.push(FieldError::invalid(
                                    format!("{path}.items.properties[{k}].type"),
                                    "object",
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                        }
                        None => errs.push(FieldError::invalid_raw(
                            format!("{path}.x-kubernetes-list-map-keys"),
                            keys_shown(),
                            "entries must all be names of item properties",
                        )),
                    }
                    if seen.contains(k) {
                        errs.push(FieldError::invalid_raw(
                            format!("{path}.x-kubernetes-list-map-keys"),
                            keys_shown(),
                            "must not contain duplicate entries",
                        ));
                    }
                    seen.push(k);
                }
            }
        }
    }
    // Items of sets and maps: not nullable; map keys required or defaulted.
    if let (Some(lt @ ("set" | "map")), Some(is)) = (list_type, items) {
        if is.get("nullable") == Some(&Value::Bool(true)) {
            errs.push(FieldError::forbidden(
                format!("{path}.items.nullable"),
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required: Vec<&str> = is
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let props = is.get("properties").and_then(Value::as_object);
            for k in &keys {
                let Some(p) = props.and_then(|p| p.get(*k)) else {
                    continue;
                };
                if !required.contains(k) && p.get("default").is_none_or(Value::is_null) {
                    errs.push(FieldError {
                        reason: "FieldValueRequired",
                        field: format!("{path}.items.properties[{k}].default"),
                        message: "Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property".into(),
                    });
                }
                if p.get("nullable") == Some(&Value::Bool(true)) {
                    errs.push(FieldError::forbidden(
                        format!("{path}.items.properties[{k}].nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

fn wrong_type(path: &str, ty: &str, msg: &str) -> FieldError {
    if ty.is_empty() {
        FieldError {
            reason: "FieldValueRequired",
            field: format!("{path}.type"),
            message: format!("Required value: {msg}"),
        }
    } else {
        FieldError::invalid(format!("{path}.type"), ty, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(schema: Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate(&schema, "s", &mut errs);
        errs.iter().map(FieldError::display).collect()
    }

    #[test]
    fn well_formed_extensions_pass() {
        assert_eq!(
            errors(json!({"type": "object", "properties": {
                "m": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
                          "items": {"type": "object", "required": ["port"], "properties": {
                              "port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}}}},
            }})),
            Vec::<String>::new()
        );
    }

    #[test]
    fn upstream_messages() {
        assert_eq!(
            errors(json!({"type": "object", "properties": {
                "a": {"type": "string", "x-kubernetes-map-type": "loose"},
                "b": {"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}},
                "c": {"type": "array", "x-kubernetes-list-map-keys": ["k"], "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                "d": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k", "z"],
                      "items": {"type": "object", "properties": {"k": {"type": "string", "nullable": true}}}},
                "dd": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k", "k"],
                      "items": {"type": "object", "required": ["k"], "properties": {"k": {"type": "object"}}}},
                "e": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object"}},
            }})),
            [
                "s.properties[a].type: Invalid value: \"string\": must be object if x-kubernetes-map-type is specified",
                "s.properties[a].x-kubernetes-map-type: Unsupported value: \"loose\": supported values: \"atomic\", \"granular\"",
                "s.properties[b].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\"",
                "s.properties[c].x-kubernetes-list-type: Required value: must be map if x-kubernetes-list-map-keys is non-empty",
                "s.properties[d].x-kubernetes-list-map-keys: Invalid value: []string{\"k\", \"z\"}: entries must all be names of item properties",
                "s.properties[d].items.properties[k].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                "s.properties[d].items.properties[k].nullable: Forbidden: this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                "s.properties[dd].items.properties[k].type: Invalid value: \"object\": must be a scalar type if parent array's x-kubernetes-list-type is map",
                "s.properties[dd].items.properties[k].type: Invalid value: \"object\": must be a scalar type if parent array's x-kubernetes-list-type is map",
                "s.properties[dd].x-kubernetes-list-map-keys: Invalid value: []string{\"k\", \"k\"}: must not contain duplicate entries",
                "s.properties[e].items.x-kubernetes-map-type: Invalid value: \"null\": must be atomic as item of a list with x-kubernetes-list-type=set",
            ]
        );
    }
}
