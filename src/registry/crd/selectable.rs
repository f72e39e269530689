//! `spec.versions[].selectableFields`: fields of a custom resource that
//! field selectors may name (`kubectl get widgets --field-selector
//! spec.color=blue`). A CRD names at most eight, each a plain field path
//! to a string, boolean or integer of the version's schema; the selector
//! label is the path without its leading dot, and the value compared is
//! the field's value as text ("" when absent).

use serde_json::Value;

use super::schema::Schema;
use crate::api::status::FieldError;

/// Upstream's cap on selectable fields per version.
pub const MAX_SELECTABLE_FIELDS: usize = 8;

/// Why a jsonPath is not a field path of the schema (upstream's words).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("array notation is not allowed")]
    ArrayNotation,
    #[error("unexpected end of JSON path")]
    UnexpectedEnd,
    #[error("does not refer to a valid field")]
    NotAField,
    #[error("expected [ or . but got: {0}")]
    Expected(String),
}

/// Resolves `.a.b.c` against `schema`: the field names and the schema of
/// the field. Map keys (additionalProperties) are steps too, as upstream.
pub fn resolve<'a>(
    json_path: &str,
    schema: &'a Schema,
) -> Result<(Vec<String>, &'a Schema), PathError> {
    let mut names = Vec::new();
    let mut at = schema;
    let mut rest = json_path;
    while !rest.is_empty() {
        // Upstream's scanner: '.', '[' and ']' are tokens of their own.
        let (tok, after) = match rest.find(['.', '[', ']']) {
            Some(0) => rest.split_at(1),
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        match tok {
            "[" => return Err(PathError::ArrayNotation),
            "." => {
                let (name, after) = match after.find(['.', '[', ']']) {
                    Some(0) => after.split_at(1),
                    Some(i) => after.split_at(i),
                    None if after.is_empty() => return Err(PathError::UnexpectedEnd),
                    None => (after, ""),
                };
                at = if !at.properties.is_empty() {
                    at.properties.get(name).ok_or(PathError::NotAField)?
                } else if let Some(a) = &at.additional {
                    a
                } else {
                    return Err(PathError::NotAField);
                };
                names.push(name.to_string());
                rest = after;
            }
            other => return Err(PathError::Expected(other.to_string())),
        }
    }
    Ok((names, at))
}

/// Validates one version's selectableFields (`list`) against its schema;
/// errors go under `at` (`spec.versions[0].selectableFields`).
pub fn validate(list: &[Value], schema: &Schema, at: &str, errs: &mut Vec<FieldError>) {
    let mut unique: Vec<String> = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let field = format!("{at}[{i}].jsonPath");
        let jp = f.get("jsonPath").and_then(Value::as_str).unwrap_or("");
        if jp.is_empty() {
            errs.push(FieldError::required(field));
            continue;
        }
        let (names, found) = match resolve(jp, schema) {
            Ok(r) => r,
            Err(e) => {
                errs.push(FieldError::invalid(
                    field,
                    jp,
                    format!("is an invalid path: {e}"),
                ));
                continue;
            }
        };
        if names.first().is_some_and(|n| n == "metadata") {
            errs.push(FieldError::invalid(
                &field,
                jp,
                "must not point to fields in metadata",
            ));
        }
        if !matches!(found.ty.as_str(), "string" | "boolean" | "integer") {
            errs.push(FieldError::invalid(
                &field,
                jp,
                "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            ));
        }
        let key = names.join(".");
        if unique.contains(&key) {
            errs.push(FieldError::duplicate(field, jp));
        } else {
            unique.push(key);
        }
    }
    if unique.len() > MAX_SELECTABLE_FIELDS {
        errs.push(FieldError {
            reason: "FieldValueTooMany",
            field: at.to_string(),
            message: format!(
                "Too many: {}: must have at most {MAX_SELECTABLE_FIELDS} items",
                unique.len()
            ),
        });
    }
}

/// The selector labels of a version's selectableFields: paths without
/// their leading dot.
pub fn labels(version: &Value) -> Vec<String> {
    version
        .get("selectableFields")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                .map(|p| p.trim_start_matches('.').to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The value of the selectable field `label` of `obj` as selectors compare
/// it: strings as they are, numbers and booleans printed, "" when absent.
pub fn value(obj: &Value, label: &str) -> String {
    let mut v = obj;
    for name in label.split('.') {
        match v.get(name) {
            Some(c) => v = c,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        let mut errs = Vec::new();
        let s = Schema::compile(
            &json!({"type": "object", "properties": {
                "metadata": {"type": "object"},
                "spec": {"type": "object", "properties": {
                    "color": {"type": "string", "enum": ["red", "blue"]},
                    "size": {"type": "integer"},
                    "round": {"type": "boolean"},
                    "weight": {"type": "number"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "parts": {"type": "array", "items": {"type": "string"}},
                }},
            }}),
            "",
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");
        s
    }

    #[test]
    fn paths_resolve_through_fields_and_map_keys() {
        let s = schema();
        let (names, found) = resolve(".spec.color", &s).unwrap();
        assert_eq!(names, ["spec", "color"]);
        assert_eq!(found.ty, "string");
        assert_eq!(resolve(".spec.labels.team", &s).unwrap().1.ty, "string");
        assert_eq!(resolve(".spec.nope", &s).unwrap_err(), PathError::NotAField);
        assert_eq!(
            resolve(".spec.parts[0]", &s).unwrap_err(),
            PathError::ArrayNotation
        );
        assert_eq!(resolve(".spec.", &s).unwrap_err(), PathError::UnexpectedEnd);
        assert_eq!(
            resolve("spec.color", &s).unwrap_err(),
            PathError::Expected("spec".into())
        );
    }

    #[test]
    fn validation_messages() {
        let s = schema();
        let list: Vec<Value> = [
            ".spec.color",
            ".spec.weight",
            ".spec.nope",
            ".metadata.name",
            ".spec.color",
            "",
        ]
        .iter()
        .map(|p| json!({"jsonPath": p}))
        .collect();
        let mut errs = Vec::new();
        validate(&list, &s, "spec.versions[0].selectableFields", &mut errs);
        let shown: Vec<String> = errs.iter().map(FieldError::display).collect();
        assert_eq!(
            shown,
            [
                "spec.versions[0].selectableFields[1].jsonPath: Invalid value: \".spec.weight\": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
                "spec.versions[0].selectableFields[2].jsonPath: Invalid value: \".spec.nope\": is an invalid path: does not refer to a valid field",
                "spec.versions[0].selectableFields[3].jsonPath: Invalid value: \".metadata.name\": is an invalid path: does not refer to a valid field",
                "spec.versions[0].selectableFields[4].jsonPath: Duplicate value: \".spec.color\"",
                "spec.versions[0].selectableFields[5].jsonPath: Required value",
            ]
        );
        let many: Vec<Value> = (0..9)
            .map(|i| json!({"jsonPath": format!(".spec.labels.k{i}")}))
            .collect();
        let mut errs = Vec::new();
        validate(&many, &s, "spec.selectableFields", &mut errs);
        assert_eq!(
            errs.iter().map(FieldError::display).collect::<Vec<_>>(),
            ["spec.selectableFields: Too many: 9: must have at most 8 items"]
        );
    }

    #[test]
    fn values_as_selectors_see_them() {
        let obj = json!({"spec": {"color": "blue", "size": 3, "round": true}});
        assert_eq!(value(&obj, "spec.color"), "blue");
        assert_eq!(value(&obj, "spec.size"), "3");
        assert_eq!(value(&obj, "spec.round"), "true");
        assert_eq!(value(&obj, "spec.missing"), "");
        assert_eq!(
            labels(&json!({"selectableFields": [{"jsonPath": ".spec.color"}]})),
            ["spec.color"]
        );
    }
}
