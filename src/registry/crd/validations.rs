//! `x-kubernetes-validations`: CEL rules on a CRD's structural schema, as
//! upstream's apiextensions server runs them. Rules are compiled with the
//! schema (once per CRD version, when the CRD is registered); every node of
//! an object that has rules evaluates them with `self` bound to the node's
//! value and, for transition rules on update, `oldSelf` to the correlated
//! old value. Cost estimation and budgets are not implemented.

use std::collections::HashMap;
use std::sync::Arc;

use ::cel::objects::{Key, Map, OptionalValue};
use serde_json::{Map as JsonMap, Value};

use super::schema::Schema;
use crate::api::status::FieldError;
use crate::cel::{self, CelError, Program};
use crate::registry::strategy::kinds::util::go_repr;

/// The reasons a rule may give its errors.
const REASONS: &[&str] = &[
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

/// Variables a rule may use.
const VARIABLES: &[&str] = &["self", "oldSelf"];

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    rule: String,
    program: Program,
    message: String,
    message_expression: Option<Program>,
    reason: Option<String>,
    /// fieldPath as a path below the node (`replicas`, `labels[app]`).
    field_path: Option<String>,
    optional_old_self: bool,
}

impl Rule {
    /// Uses `oldSelf`: a transition rule.
    fn transition(&self) -> bool {
        self.program.uses("oldSelf")
    }

    /// The rule as errors name it: its message, else its expression.
    fn shown(&self) -> &str {
        if self.message.is_empty() {
            self.rule.trim()
        } else {
            &self.message
        }
    }
}

/// Go's `%#v` of an apiextensions.ValidationRule, as upstream shows a rule
/// that does not compile.
fn go_rule(r: &JsonMap<String, Value>) -> String {
    let s = |k: &str| Value::String(r.get(k).and_then(Value::as_str).unwrap_or("").to_string());
    let ptr = |k: &str, ty: &str| match r.get(k) {
        Some(v) if !v.is_null() => format!("(*{ty})(0xc000000000)"),
        _ => format!("(*{ty})(nil)"),
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{}, FieldPath:{}, OptionalOldSelf:{}}}",
        s("rule"),
        s("message"),
        s("messageExpression"),
        ptr("reason", "apiextensions.FieldValueErrorReason"),
        s("fieldPath"),
        ptr("optionalOldSelf", "bool"),
    )
}

/// Compiles the `x-kubernetes-validations` of schema node `m` (at `path`,
/// for errors that make the CRD invalid). `node` is the node's schema so
/// far (fieldPath must name one of its fields).
pub fn compile(
    m: &JsonMap<String, Value>,
    node: &Schema,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<Arc<Rule>> {
    let Some(list) = m.get("x-kubernetes-validations") else {
        return Vec::new();
    };
    let Value::Array(list) = list else {
        errs.push(FieldError::invalid_raw(
            format!("{path}.x-kubernetes-validations"),
            go_repr(list),
            "must be a list of rules",
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let at = format!("{path}.x-kubernetes-validations[{i}]");
        let Value::Object(r) = r else {
            errs.push(FieldError::invalid_raw(
                &at,
                go_repr(r),
                "must be an object",
            ));
            continue;
        };
        let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let rule = text("rule");
        if rule.trim().is_empty() {
            errs.push(required(format!("{at}.rule"), "rule is not specified"));
            continue;
        }
        let message = text("message");
        if message.contains('\n') {
            errs.push(FieldError::invalid(
                format!("{at}.message"),
                &message,
                "message must not contain line breaks",
            ));
        }
        let mut ok = true;
        let program = match cel::compile_with(&rule, VARIABLES) {
            Ok(p) => Some(p),
            Err(e) => {
                errs.push(FieldError::invalid_raw(
                    format!("{at}.rule"),
                    go_rule(r),
                    format!("compilation failed: {e}"),
                ));
                None
            }
        };
        let expr = text("messageExpression");
        let message_expression = if expr.trim().is_empty() {
            None
        } else {
            match cel::compile_with(&expr, VARIABLES) {
                Ok(p) => Some(p),
                Err(e) => {
                    ok = false;
                    errs.push(FieldError::invalid(
                        format!("{at}.messageExpression"),
                        &expr,
                        format!("messageExpression compilation failed: {e}"),
                    ));
                    None
                }
            }
        };
        let reason = r.get("reason").and_then(Value::as_str).map(String::from);
        if let Some(reason) = &reason
            && !REASONS.contains(&reason.as_str())
        {
            ok = false;
            errs.push(FieldError::not_supported(
                format!("{at}.reason"),
                reason,
                REASONS,
            ));
        }
        let field_path = match r.get("fieldPath").and_then(Value::as_str) {
            None | Some("") => None,
            Some(fp) => match normalize_field_path(fp, node) {
                Ok(p) => Some(p),
                Err(e) => {
                    ok = false;
                    errs.push(FieldError::invalid(
                        format!("{at}.fieldPath"),
                        fp,
                        format!("fieldPath must be a valid path: {e}"),
                    ));
                    None
                }
            },
        };
        let optional_old_self = r.get("optionalOldSelf").and_then(Value::as_bool) == Some(true);
        let Some(program) = program else { continue };
        if r.get("optionalOldSelf").is_some_and(|v| !v.is_null()) && !program.uses("oldSelf") {
            errs.push(FieldError::invalid_raw(
                format!("{at}.optionalOldSelf"),
                go_repr(&r["optionalOldSelf"]),
                "may not be set if oldSelf is not used in rule",
            ));
            ok = false;
        }
        if ok {
            out.push(Arc::new(Rule {
                rule,
                program,
                message: message.trim().to_string(),
                message_expression,
                reason,
                field_path,
                optional_old_self,
            }));
        }
    }
    out
}

fn required(field: String, detail: &str) -> FieldError {
    FieldError {
        reason: "FieldValueRequired",
        field,
        message: format!("Required value: {detail}"),
    }
}

/// A rule's fieldPath (`.spec.replicas`, `.labels['app.kubernetes.io/name']`)
/// as a field path below the node, checked against `schema`.
fn normalize_field_path(fp: &str, schema: &Schema) -> Result<String, String> {
    let mut out = String::new();
    let mut s = schema;
    let mut rest = fp;
    while !rest.is_empty() {
        let (name, tail) = if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (r[..end].to_string(), &r[end..])
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r
                .find("']")
                .ok_or_else(|| "unexpected end of JSON path".to_string())?;
            (r[..end].replace("\\'", "'"), &r[end + 2..])
        } else {
            return Err(format!("expected [ or . but got: {rest}"));
        };
        if name.is_empty() {
            return Err("unexpected end of JSON path".into());
        }
        if let Some(child) = s.properties.get(&name) {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&name);
            s = child;
        } else if let Some(a) = &s.additional {
            out.push_str(&format!("[{name}]"));
            s = a;
        } else {
            return Err("does not refer to a valid field".into());
        }
        rest = tail;
    }
    Ok(out)
}

/// Runs every rule of `schema` on `obj` (the whole custom resource); `old`
/// is the stored object on update. Errors on values unchanged from `old`
/// are dropped unless the rule is a transition rule (upstream's ratcheting).
pub fn validate(schema: &Schema, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    walk(schema, obj, old, "", true, false, &mut errs);
    errs
}

/// Whether any node of `schema` has rules (most CRDs have none).
pub fn has_rules(schema: &Schema) -> bool {
    !schema.validations.is_empty()
        || schema.properties.values().any(has_rules)
        || schema.additional.as_deref().is_some_and(has_rules)
        || schema.items.as_deref().is_some_and(has_rules)
        || schema.all_of.iter().any(has_rules)
}

fn child_path(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn walk(
    s: &Schema,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    resource: bool,
    parent_unchanged: bool,
    errs: &mut Vec<FieldError>,
) {
    if v.is_null() {
        return;
    }
    // A node correlated with its old value ratchets when equal to it;
    // one without (a set's item) follows its nearest correlated parent.
    let unchanged = match old {
        Some(o) => o == v,
        None => parent_unchanged,
    };
    run_rules(s, v, old, path, resource, unchanged, errs);
    for a in &s.all_of {
        // upstream does not ratchet allOf rules.
        run_rules(a, v, old, path, resource, false, errs);
    }
    match v {
        Value::Object(m) => {
            let old_m = old.and_then(Value::as_object);
            for (k, child) in m {
                let old_child = old_m.and_then(|o| o.get(k));
                if let Some(ps) = s.properties.get(k) {
                    let embedded = ps.embedded;
                    walk(
                        ps,
                        child,
                        old_child,
                        &child_path(path, k),
                        embedded,
                        unchanged,
                        errs,
                    );
                } else if let Some(a) = &s.additional {
                    walk(
                        a,
                        child,
                        old_child,
                        &format!("{path}[{k}]"),
                        a.embedded,
                        unchanged,
                        errs,
                    );
                }
            }
        }
        Value::Array(items) => {
            let Some(is) = &s.items else { return };
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                // Only map lists correlate items with old ones, by key.
                let old_item = match old_items {
                    Some(olds) if s.list_type == "map" => olds
                        .iter()
                        .find(|o| s.list_map_keys.iter().all(|k| o.get(k) == item.get(k))),
                    _ => None,
                };
                walk(
                    is,
                    item,
                    old_item,
                    &format!("{path}[{i}]"),
                    is.embedded,
                    unchanged,
                    errs,
                );
            }
        }
        _ => {}
    }
}

fn run_rules(
    s: &Schema,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    resource: bool,
    unchanged: bool,
    errs: &mut Vec<FieldError>,
) {
    if s.validations.is_empty() {
        return;
    }
    let this = typed(s, v, resource);
    let mut old_self: Option<::cel::Value> = None;
    for rule in &s.validations {
        let transition = rule.transition();
        let mut vars: Vec<(&str, ::cel::Value)> = vec![("self", this.clone())];
        if transition {
            let o = old.map(|o| {
                old_self
                    .get_or_insert_with(|| typed(s, o, resource))
                    .clone()
            });
            if rule.optional_old_self {
                let opt = match o {
                    Some(o) => OptionalValue::of(o),
                    None => OptionalValue::none(),
                };
                vars.push(("oldSelf", ::cel::Value::Opaque(Arc::new(opt))));
            } else {
                match o {
                    Some(o) => vars.push(("oldSelf", o)),
                    // Transition rules need an old value to compare with.
                    None => continue,
                }
            }
        }
        let shown_at = if path.is_empty() { "<nil>" } else { path };
        let ty = &s.ty;
        match crate::cel::eval_cel(&rule.program, &vars) {
            Ok(::cel::Value::Bool(true)) => continue,
            Ok(::cel::Value::Bool(false)) => {}
            Ok(other) => {
                errs.push(FieldError::invalid(
                    shown_at,
                    ty,
                    format!(
                        "rule did not evaluate to a bool, got {} evaluating rule: {}",
                        other.type_of(),
                        rule.shown()
                    ),
                ));
                continue;
            }
            Err(CelError::Eval(e)) if e.starts_with("no such overload") => {
                errs.push(FieldError::invalid(
                    shown_at,
                    ty,
                    format!(
                        "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {}",
                        rule.shown()
                    ),
                ));
                continue;
            }
            Err(e) => {
                errs.push(FieldError::invalid(
                    shown_at,
                    ty,
                    format!("{e} evaluating rule: {}", rule.shown()),
                ));
                continue;
            }
        }
        if unchanged && !transition {
            // Ratcheting: an unchanged value keeps passing.
            continue;
        }
        let field = match &rule.field_path {
            Some(fp) if fp.starts_with('[') => format!("{path}{fp}"),
            Some(fp) => child_path(path, fp),
            None => shown_at.to_string(),
        };
        let detail = rule
            .message_expression
            .as_ref()
            .and_then(|m| message_from(m, &vars))
            .unwrap_or_else(|| {
                if rule.message.is_empty() {
                    format!("failed rule: {}", rule.shown())
                } else {
                    rule.message.clone()
                }
            });
        errs.push(match rule.reason.as_deref() {
            Some("FieldValueForbidden") => FieldError::forbidden(field, detail),
            Some("FieldValueRequired") => required(field, &detail),
            Some("FieldValueDuplicate") => FieldError::duplicate(field, ty),
            _ => FieldError::invalid(field, ty, detail),
        });
    }
}

/// A messageExpression's message, if it yields a usable one (upstream
/// falls back to the message otherwise).
fn message_from(p: &Program, vars: &[(&str, ::cel::Value)]) -> Option<String> {
    match crate::cel::eval_cel(p, vars) {
        Ok(::cel::Value::String(s)) => {
            let s = s.trim();
            (!s.is_empty() && !s.contains('\n') && s.len() <= 5 * 1024).then(|| s.to_string())
        }
        _ => None,
    }
}

/// `v` as the CEL value a rule sees: numbers as the schema types them, and
/// of a resource's metadata only name and generateName, as upstream.
fn typed(s: &Schema, v: &Value, resource: bool) -> ::cel::Value {
    match v {
        Value::Number(n) if s.ty == "number" => ::cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        Value::Object(m) => {
            let mut map: HashMap<Key, ::cel::Value> = HashMap::with_capacity(m.len());
            for (k, child) in m {
                let value = if resource && k == "metadata" {
                    let mut meta = JsonMap::new();
                    for f in ["name", "generateName"] {
                        if let Some(x) = child.get(f) {
                            meta.insert(f.to_string(), x.clone());
                        }
                    }
                    crate::cel::to_cel(&Value::Object(meta))
                } else if let Some(ps) = s.properties.get(k) {
                    typed(ps, child, ps.embedded)
                } else if let Some(a) = &s.additional {
                    typed(a, child, a.embedded)
                } else {
                    crate::cel::to_cel(child)
                };
                map.insert(Key::String(Arc::new(k.clone())), value);
            }
            ::cel::Value::Map(Map { map: Arc::new(map) })
        }
        Value::Array(items) => match &s.items {
            Some(is) => ::cel::Value::List(Arc::new(
                items.iter().map(|x| typed(is, x, is.embedded)).collect(),
            )),
            None => crate::cel::to_cel(v),
        },
        other => crate::cel::to_cel(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> (Schema, Vec<FieldError>) {
        let mut errs = Vec::new();
        let s = Schema::compile(&v, "spec.versions[0].schema.openAPIV3Schema", &mut errs);
        (s, errs)
    }

    fn shown(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::display).collect()
    }

    fn widget() -> Value {
        json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.minReplicas <= self.replicas", "message": "replicas must be at least minReplicas"},
            {"rule": "self.name.startsWith('x')", "messageExpression": "'name ' + self.name + ' must start with x'"},
            {"rule": "self.ratio < 1.0", "reason": "FieldValueForbidden", "fieldPath": ".ratio"},
            {"rule": "self.name == oldSelf.name", "message": "name is immutable"},
        ],
        "properties": {
            "replicas": {"type": "integer"}, "minReplicas": {"type": "integer"},
            "name": {"type": "string"}, "ratio": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() <= 3"}]}},
            "limits": {"type": "object", "additionalProperties": {"type": "integer", "x-kubernetes-validations": [{"rule": "self >= 0", "reason": "FieldValueRequired"}]}},
        }}}})
    }

    #[test]
    fn rules_run_at_their_node() {
        let (s, errs) = schema(widget());
        assert!(errs.is_empty(), "{errs:?}");
        assert!(has_rules(&s));
        let ok = json!({"spec": {"replicas": 2, "minReplicas": 1, "name": "xa", "ratio": 0, "tags": ["a"], "limits": {"a": 1}}});
        assert_eq!(shown(&validate(&s, &ok, None)), Vec::<String>::new());
        let bad = json!({"spec": {"replicas": 1, "minReplicas": 2, "name": "ya", "ratio": 2, "tags": ["a", "long"], "limits": {"a": -1}}});
        assert_eq!(
            shown(&validate(&s, &bad, None)),
            vec![
                "spec: Invalid value: \"object\": replicas must be at least minReplicas",
                "spec: Invalid value: \"object\": name ya must start with x",
                "spec.ratio: Forbidden: failed rule: self.ratio < 1.0",
                "spec.limits[a]: Required value: failed rule: self >= 0",
                "spec.tags[1]: Invalid value: \"string\": failed rule: self.size() <= 3",
            ]
        );
    }

    #[test]
    fn transition_rules_need_an_old_value_and_unchanged_values_ratchet() {
        let (s, _) = schema(widget());
        let old = json!({"spec": {"replicas": 1, "minReplicas": 2, "name": "xa", "ratio": 0}});
        let renamed = json!({"spec": {"replicas": 1, "minReplicas": 2, "name": "xb", "ratio": 0}});
        // minReplicas > replicas was already there; the rename is not allowed.
        assert_eq!(
            shown(&validate(&s, &renamed, Some(&old))),
            vec![
                "spec: Invalid value: \"object\": replicas must be at least minReplicas",
                "spec: Invalid value: \"object\": name is immutable"
            ]
        );
        assert!(validate(&s, &old, Some(&old)).is_empty());
        // An invalid map value left as it was ratchets; a new one does not.
        let old = json!({"spec": {"replicas": 1, "minReplicas": 1, "name": "xa", "ratio": 0, "limits": {"a": -1}}});
        let new = json!({"spec": {"replicas": 2, "minReplicas": 1, "name": "xa", "ratio": 0, "limits": {"a": -1, "b": -2}}});
        assert_eq!(
            shown(&validate(&s, &new, Some(&old))),
            vec!["spec.limits[b]: Required value: failed rule: self >= 0"]
        );
        assert_eq!(validate(&s, &new, None).len(), 2);
    }

    #[test]
    fn bad_rules_make_the_crd_invalid() {
        let (_, errs) = schema(json!({"type": "object", "x-kubernetes-validations": [
            {"rule": "self.a <"},
            {"rule": "foo == 1"},
            {"rule": "true", "reason": "Nope"},
            {"rule": "true", "fieldPath": ".nope"},
            {"rule": "self == oldSelf", "messageExpression": "'a' +"},
        ]}));
        let e = shown(&errs);
        let at = "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations";
        assert!(e[0].starts_with(&format!("{at}[0].rule: Invalid value: apiextensions.ValidationRule{{Rule:\"self.a <\", Message:\"\"")), "{e:?}");
        assert!(
            e[0].contains("compilation failed: ERROR: <input>:1:"),
            "{e:?}"
        );
        assert!(e[1].ends_with("compilation failed: ERROR: <input>:1:1: undeclared reference to 'foo' (in container '')"), "{e:?}");
        assert!(
            e[2].starts_with(&format!("{at}[2].reason: Unsupported value: \"Nope\"")),
            "{e:?}"
        );
        assert_eq!(
            e[3],
            format!(
                "{at}[3].fieldPath: Invalid value: \".nope\": fieldPath must be a valid path: does not refer to a valid field"
            )
        );
        assert!(e[4].starts_with(&format!("{at}[4].messageExpression: Invalid value: \"'a' +\": messageExpression compilation failed")), "{e:?}");
    }

    #[test]
    fn numbers_follow_the_schema_and_metadata_is_limited() {
        let (s, _) = schema(json!({"type": "object",
            "x-kubernetes-validations": [{"rule": "!has(self.metadata.labels) && self.metadata.name == 'a'"}],
            "properties": {"spec": {"type": "object",
                "x-kubernetes-validations": [{"rule": "self.ratio == 1.0"}],
                "properties": {"ratio": {"type": "number"}}}}}));
        let obj = json!({"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"ratio": 1}});
        assert!(
            validate(&s, &obj, None).is_empty(),
            "{:?}",
            validate(&s, &obj, None)
        );
        let obj = json!({"metadata": {"name": "b"}, "spec": {"ratio": 1}});
        assert_eq!(
            shown(&validate(&s, &obj, None)),
            vec![
                "<nil>: Invalid value: \"object\": failed rule: !has(self.metadata.labels) && self.metadata.name == 'a'"
            ]
        );
    }

    #[test]
    fn optional_old_self_runs_without_an_old_value() {
        let (s, errs) = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"name": {"type": "string", "x-kubernetes-validations": [{
                "rule": "oldSelf.hasValue() ? self == oldSelf.value() : self.startsWith('a')",
                "optionalOldSelf": true, "message": "starts with a, then immutable"}]}}}}}),
        );
        assert!(errs.is_empty(), "{errs:?}");
        let obj = |n: &str| json!({"spec": {"name": n}});
        assert!(validate(&s, &obj("ab"), None).is_empty());
        assert_eq!(
            shown(&validate(&s, &obj("b"), None)),
            vec!["spec.name: Invalid value: \"string\": starts with a, then immutable"]
        );
        assert!(validate(&s, &obj("ab"), Some(&obj("ab"))).is_empty());
        assert_eq!(validate(&s, &obj("ac"), Some(&obj("ab"))).len(), 1);
        // optionalOldSelf only goes with rules that use oldSelf.
        let (_, errs) = schema(json!({"type": "object", "x-kubernetes-validations": [
            {"rule": "true", "optionalOldSelf": true}]}));
        assert_eq!(
            shown(&errs),
            vec![
                "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[0].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule"
            ]
        );
    }
}
