//! `x-kubernetes-validations`: CEL rules on a CRD's structural schema, as
//! upstream's apiextensions server runs them. Rules are compiled with the
//! schema (once per CRD version, when the CRD is registered); every node of
//! an object that has rules evaluates them with `self` bound to the node's
//! value and, for transition rules on update, `oldSelf` to the correlated
//! old value.
//!
//! When a CRD is written, [`check_crd`] does what needs the whole schema:
//! type-checks every rule against the structural schema of its node (as
//! upstream's DeclTypes expose it), estimates its cost against the
//! per-rule and per-CRD budgets, and refuses transition rules where old
//! values cannot be correlated. The per-call runtime cost limit is not
//! enforced: cel-rust cannot count the cost of an evaluation.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ::cel::common::types::{CelDouble, CelList, CelMap, CelMapKey, CelOptional};
use ::cel::common::value::Val;
use serde_json::{Map as JsonMap, Value};

use super::schema::Schema;
use crate::api::status::FieldError;
use crate::cel::check::{self, Decl, DeclKind, Ty, Want, escape};
use crate::cel::time::{Duration, Timestamp};
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
    /// The rule's index in its node's x-kubernetes-validations.
    index: usize,
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
                    errs.push(FieldError::invalid_raw(
                        format!("{at}.messageExpression"),
                        go_rule(r),
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
                index: i,
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
    let mut old_self: Option<Box<dyn Val>> = None;
    for rule in &s.validations {
        let transition = rule.transition();
        let old_binding: Option<Box<dyn Val>> = if transition {
            let o = old.map(|o| {
                old_self
                    .get_or_insert_with(|| typed(s, o, resource))
                    .clone_as_boxed()
            });
            if rule.optional_old_self {
                Some(Box::new(match o {
                    Some(o) => CelOptional::of(o),
                    None => CelOptional::none(),
                }))
            } else {
                match o {
                    Some(o) => Some(o),
                    // Transition rules need an old value to compare with.
                    None => continue,
                }
            }
        } else {
            None
        };
        // The interpreter takes its variables by value: one set per run.
        let vars = || {
            let mut vars: Vec<(&str, Box<dyn Val>)> = vec![("self", this.clone_as_boxed())];
            if let Some(o) = &old_binding {
                vars.push(("oldSelf", o.clone_as_boxed()));
            }
            vars
        };
        let shown_at = if path.is_empty() { "<nil>" } else { path };
        let ty = &s.ty;
        match crate::cel::eval_val(&rule.program, vars()) {
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
            .and_then(|m| message_from(m, vars()))
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
fn message_from(p: &Program, vars: Vec<(&str, Box<dyn Val>)>) -> Option<String> {
    match crate::cel::eval_val(p, vars) {
        Ok(::cel::Value::String(s)) => {
            let s = s.trim();
            (!s.is_empty() && !s.contains('\n') && s.len() <= 5 * 1024).then(|| s.to_string())
        }
        _ => None,
    }
}

/// `v` as the CEL value a rule sees: numbers as the schema types them, and
/// of a resource's metadata only name and generateName, as upstream.
fn typed(s: &Schema, v: &Value, resource: bool) -> Box<dyn Val> {
    match v {
        Value::Number(n) if s.ty == "number" => {
            Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
        }
        // Durations and timestamps are values of their CEL types; a value
        // that does not parse stays a string (schema validation reports it).
        Value::String(text) if s.ty == "string" => {
            let t: Option<Box<dyn Val>> = match s.format.as_str() {
                "duration" => Duration::from_schema(text).map(|d| Box::new(d) as Box<dyn Val>),
                "date" => Timestamp::from_schema(text, true).map(|t| Box::new(t) as Box<dyn Val>),
                "date-time" => {
                    Timestamp::from_schema(text, false).map(|t| Box::new(t) as Box<dyn Val>)
                }
                _ => None,
            };
            t.unwrap_or_else(|| crate::cel::to_val(v))
        }
        Value::Object(m) => {
            let mut map: HashMap<CelMapKey<'static>, Box<dyn Val>> =
                HashMap::with_capacity(m.len());
            for (k, child) in m {
                let value = if resource && k == "metadata" {
                    let mut meta = JsonMap::new();
                    for f in ["name", "generateName"] {
                        if let Some(x) = child.get(f) {
                            meta.insert(f.to_string(), x.clone());
                        }
                    }
                    crate::cel::to_val(&Value::Object(meta))
                } else if let Some(ps) = s.properties.get(k) {
                    // Rules name properties escaped (`x__dash__y`); those
                    // no name can spell are not visible.
                    let Some(name) = escape(k) else { continue };
                    map.insert(CelMapKey::from(name), typed(ps, child, ps.embedded));
                    continue;
                } else if let Some(a) = &s.additional {
                    typed(a, child, a.embedded)
                } else {
                    crate::cel::to_val(child)
                };
                map.insert(CelMapKey::from(k.clone()), value);
            }
            Box::new(CelMap::from(map))
        }
        Value::Array(items) => match &s.items {
            Some(is) => Box::new(CelList::from(
                items
                    .iter()
                    .map(|x| typed(is, x, is.embedded))
                    .collect::<Vec<_>>(),
            )),
            None => crate::cel::to_val(v),
        },
        other => crate::cel::to_val(other),
    }
}

/// The whole-schema rule checks ([`check_crd`]) of every schema of CRD
/// `crd`, named as upstream names them: `spec.validation.openAPIV3Schema`
/// when every version has the same schema, else per version.
pub fn crd_rule_errors(crd: &Value) -> Vec<FieldError> {
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let schema_of = |v: &Value| v.pointer("/schema/openAPIV3Schema").cloned();
    let first = versions.first().and_then(schema_of);
    let shared = first.is_some() && versions.iter().all(|v| schema_of(v) == first);
    let mut errs = Vec::new();
    let mut check = |raw: &Value, path: &str| {
        let mut schema_errs = Vec::new();
        let s = Schema::compile(raw, path, &mut schema_errs);
        // As upstream, only a schema otherwise valid has its rules checked.
        if schema_errs
            .iter()
            .all(|e| e.field.contains("x-kubernetes-validations"))
        {
            check_crd(&s, raw, path, &mut errs);
        }
    };
    if shared {
        if let Some(raw) = &first {
            check(raw, "spec.validation.openAPIV3Schema");
        }
    } else {
        for (i, v) in versions.iter().enumerate() {
            if let Some(raw) = schema_of(v) {
                check(&raw, &format!("spec.versions[{i}].schema.openAPIV3Schema"));
            }
        }
    }
    errs
}

/// [`crd_rule_errors`] of an update: errors the stored CRD already had
/// are kept (upstream suppresses cost limits for unchanged schemas and
/// compiles stored rules leniently), so a CRD stored before these checks
/// can still be updated, and its status written.
pub fn crd_rule_errors_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let had: Vec<String> = crd_rule_errors(old)
        .iter()
        .map(FieldError::display)
        .collect();
    crd_rule_errors(new)
        .into_iter()
        .filter(|e| !had.contains(&e.display()))
        .collect()
}

/// The largest request the API server accepts: unbounded lists, maps and
/// strings are costed as if they filled one.
const MAX_REQUEST_BYTES: u64 = 3 * 1024 * 1024;
/// The largest estimated cost of one rule (upstream's
/// StaticEstimatedCostLimit).
const RULE_COST_LIMIT: u64 = 10_000_000;
/// The largest estimated cost of all a CRD version's rules (upstream's
/// StaticEstimatedCRDCostLimit).
const CRD_COST_LIMIT: u64 = 100_000_000;

/// The CEL type of schema node `s` as rules see it (upstream's
/// SchemaDeclType): `None` for nodes rules cannot see (no type, or
/// containing only such). `resource` adds apiVersion, kind and
/// metadata.name/generateName, as at the root of a resource.
pub fn decl_of(s: &Schema, resource: bool) -> Option<Arc<Decl>> {
    let decl = |kind, max_elements, min_size| {
        Some(Arc::new(Decl {
            kind,
            max_elements,
            min_size,
        }))
    };
    let unbounded_string = MAX_REQUEST_BYTES - 2;
    if s.int_or_string {
        let max = s
            .max_length
            .map_or(unbounded_string, |m| m.saturating_mul(4));
        return decl(DeclKind::Dyn, max, 1);
    }
    match s.ty.as_str() {
        "array" => {
            let items = s.items.as_deref()?;
            let it = decl_of(items, items.embedded)?;
            let max = s
                .max_items
                .unwrap_or((MAX_REQUEST_BYTES - 2) / (it.min_size + 1));
            decl(DeclKind::List(it), max, 2)
        }
        "object" => {
            if let Some(a) = s.additional.as_deref() {
                let v = decl_of(a, a.embedded)?;
                let max = s
                    .max_properties
                    .unwrap_or((MAX_REQUEST_BYTES - 2) / (v.min_size + 6));
                return decl(DeclKind::Map(v), max, 2);
            }
            let mut fields = BTreeMap::new();
            let mut min_size = 2u64;
            for (name, p) in &s.properties {
                if resource && matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let Some(fd) = decl_of(p, p.embedded) else {
                    continue;
                };
                if s.required.contains(name) && p.default.is_none() {
                    min_size += name.len() as u64 + fd.min_size + 4;
                }
                if let Some(n) = escape(name) {
                    fields.insert(n, fd);
                }
            }
            if resource {
                let string = |max| {
                    Arc::new(Decl {
                        kind: DeclKind::String,
                        max_elements: max,
                        min_size: 2,
                    })
                };
                let meta_len = |f: &str, cap: u64| {
                    s.properties
                        .get("metadata")
                        .and_then(|m| m.properties.get(f))
                        .and_then(|p| p.max_length)
                        .map_or(cap, |m| m.min(cap))
                };
                let mut meta = BTreeMap::new();
                meta.insert("name".to_string(), string(meta_len("name", 253)));
                meta.insert(
                    "generateName".to_string(),
                    string(meta_len("generateName", 252)),
                );
                fields.insert("apiVersion".into(), string(unbounded_string));
                fields.insert("kind".into(), string(unbounded_string));
                fields.insert(
                    "metadata".into(),
                    Arc::new(Decl {
                        kind: DeclKind::Object(meta),
                        max_elements: 0,
                        min_size: 2,
                    }),
                );
            }
            decl(DeclKind::Object(fields), 0, min_size)
        }
        "string" => match s.format.as_str() {
            "byte" => decl(DeclKind::Bytes, s.max_length.unwrap_or(unbounded_string), 2),
            "duration" => decl(DeclKind::Duration, 32, 3),
            "date" => decl(DeclKind::Timestamp, 12, 12),
            "date-time" => decl(DeclKind::Timestamp, 32, 21),
            _ => {
                let max = match (&s.max_length, &s.enumeration) {
                    (Some(m), _) => m.saturating_mul(4),
                    (None, Some(e)) if !e.is_empty() => e
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|v| v.len() as u64)
                        .max()
                        .unwrap_or(0),
                    _ => unbounded_string,
                };
                decl(DeclKind::String, max, 2)
            }
        },
        "boolean" => decl(DeclKind::Bool, 0, 4),
        "number" => decl(DeclKind::Double, 0, 1),
        "integer" => decl(DeclKind::Int, 0, 1),
        _ => None,
    }
}

/// What the check of one CRD version's rules carries down the schema.
#[derive(Clone)]
struct Scope {
    /// How many times a node can occur in one object: the product of the
    /// maxItems/maxProperties above it; `None` if some list or map above
    /// is unbounded.
    cardinality: Option<u64>,
    /// The highest list or atomic map above whose items' old values
    /// cannot be correlated (transition rules are refused below it).
    uncorrelatable: Option<String>,
}

/// Upstream's figure for a rule cost total.
fn cost_message(what: &str, cost: u64, limit: u64) -> String {
    let f = cost as f64 / limit as f64;
    let factor = if f > 100.0 {
        "more than 100x".to_string()
    } else if f < 1.5 {
        format!("{f:.6}x")
    } else {
        format!("{f:.1}x")
    };
    format!(
        "{what} exceeds budget by factor of {factor} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// Checks the rules of a CRD version's schema `s` (compiled from `raw`,
/// at `path`) as a whole: types, costs, and where oldSelf may be used.
pub fn check_crd(s: &Schema, raw: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if !has_rules(s) {
        return;
    }
    let mut costs: Vec<(String, u64)> = Vec::new();
    let scope = Scope {
        cardinality: Some(1),
        uncorrelatable: None,
    };
    check_node(s, raw, path, true, &scope, &mut costs, errs);
    let total = costs
        .iter()
        .fold(0u64, |acc, (_, c)| acc.saturating_add(*c));
    if total > CRD_COST_LIMIT {
        // The (up to) four most expensive rules of at least 1% of the
        // limit are named, as upstream does.
        let mut top: Vec<&(String, u64)> = costs
            .iter()
            .filter(|(_, c)| *c >= CRD_COST_LIMIT / 100)
            .collect();
        top.sort_by_key(|c| std::cmp::Reverse(c.1));
        for (at, _) in top.into_iter().take(4) {
            errs.push(FieldError::forbidden(
                at,
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        errs.push(FieldError::forbidden(
            path,
            cost_message(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                total,
                CRD_COST_LIMIT,
            ),
        ));
    }
}

fn check_node(
    s: &Schema,
    raw: &Value,
    path: &str,
    resource: bool,
    scope: &Scope,
    costs: &mut Vec<(String, u64)>,
    errs: &mut Vec<FieldError>,
) {
    if !has_rules(s) {
        return;
    }
    if !s.validations.is_empty() {
        check_rules(s, raw, path, resource, scope, costs, errs);
    }
    // How many of each child one occurrence of this node holds.
    let per = |bound: Option<u64>| -> Option<u64> {
        scope
            .cardinality
            .zip(bound)
            .map(|(c, b)| c.saturating_mul(b))
    };
    let atomic_map = raw.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
    for (k, ps) in &s.properties {
        let child_raw = raw.pointer(&format!(
            "/properties/{}",
            k.replace('~', "~0").replace('/', "~1")
        ));
        let child = Scope {
            cardinality: scope.cardinality,
            uncorrelatable: scope
                .uncorrelatable
                .clone()
                .or_else(|| atomic_map.then(|| path.to_string())),
        };
        check_node(
            ps,
            child_raw.unwrap_or(&Value::Null),
            &format!("{path}.properties[{k}]"),
            ps.embedded,
            &child,
            costs,
            errs,
        );
    }
    if let Some(a) = s.additional.as_deref() {
        let child = Scope {
            cardinality: per(s.max_properties),
            uncorrelatable: scope.uncorrelatable.clone(),
        };
        check_node(
            a,
            raw.get("additionalProperties").unwrap_or(&Value::Null),
            &format!("{path}.additionalProperties"),
            a.embedded,
            &child,
            costs,
            errs,
        );
    }
    if let Some(i) = s.items.as_deref() {
        let child = Scope {
            cardinality: per(s.max_items),
            uncorrelatable: scope
                .uncorrelatable
                .clone()
                .or_else(|| (s.list_type != "map").then(|| path.to_string())),
        };
        check_node(
            i,
            raw.get("items").unwrap_or(&Value::Null),
            &format!("{path}.items"),
            i.embedded,
            &child,
            costs,
            errs,
        );
    }
}

fn check_rules(
    s: &Schema,
    raw: &Value,
    path: &str,
    resource: bool,
    scope: &Scope,
    costs: &mut Vec<(String, u64)>,
    errs: &mut Vec<FieldError>,
) {
    let Some(decl) = decl_of(s, resource) else {
        errs.push(FieldError {
            reason: "InternalError",
            field: format!("{path}.x-kubernetes-validations"),
            message: "Internal error: internal error: failed to retrieve type information for x-kubernetes-validations".into(),
        });
        return;
    };
    // How many times the rule may run for one object: from the bounds
    // above, else what fits in a request.
    let cardinality = scope
        .cardinality
        .unwrap_or(MAX_REQUEST_BYTES / (decl.min_size + 1));
    let this = Ty::Decl(decl);
    for rule in &s.validations {
        let at = format!("{path}.x-kubernetes-validations[{}]", rule.index);
        let raw_rule = raw
            .get("x-kubernetes-validations")
            .and_then(|l| l.get(rule.index))
            .and_then(Value::as_object);
        let shown = raw_rule.map(go_rule).unwrap_or_default();
        let old = if rule.optional_old_self {
            Ty::Optional(Box::new(this.clone()))
        } else {
            this.clone()
        };
        let vars = [("self", this.clone()), ("oldSelf", old)];
        match check::check(&rule.program, &vars, Some(Want::Bool)) {
            Ok(c) => {
                let cost = c.max_cost.saturating_mul(cardinality);
                if cost > RULE_COST_LIMIT {
                    errs.push(FieldError::forbidden(
                        format!("{at}.rule"),
                        cost_message("estimated rule cost", cost, RULE_COST_LIMIT),
                    ));
                }
                costs.push((format!("{at}.rule"), cost));
            }
            Err(CelError::Type(e)) => {
                errs.push(FieldError::invalid_raw(format!("{at}.rule"), &shown, e));
            }
            Err(e) => errs.push(FieldError::invalid_raw(
                format!("{at}.rule"),
                &shown,
                format!("compilation failed: {e}"),
            )),
        }
        if let Some(m) = &rule.message_expression {
            match check::check(m, &vars, Some(Want::String)) {
                Ok(c) => {
                    if c.max_cost > RULE_COST_LIMIT {
                        errs.push(FieldError::forbidden(
                            format!("{at}.messageExpression"),
                            cost_message(
                                "estimated messageExpression cost",
                                c.max_cost,
                                RULE_COST_LIMIT,
                            ),
                        ));
                    }
                    costs.push((format!("{at}.messageExpression"), c.max_cost));
                }
                Err(CelError::Type(_)) => errs.push(FieldError::invalid_raw(
                    format!("{at}.messageExpression"),
                    &shown,
                    "messageExpression must evaluate to a string",
                )),
                Err(e) => errs.push(FieldError::invalid_raw(
                    format!("{at}.messageExpression"),
                    &shown,
                    format!("messageExpression compilation failed: {e}"),
                )),
            }
        }
        if rule.transition()
            && let Some(within) = &scope.uncorrelatable
        {
            errs.push(FieldError::invalid_raw(
                format!("{at}.rule"),
                go_repr(&Value::String(rule.rule.clone())),
                format!(
                    "oldSelf cannot be used on the uncorrelatable portion of the schema within {within}"
                ),
            ));
        }
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
        assert!(e[4].starts_with(&format!("{at}[4].messageExpression: Invalid value: apiextensions.ValidationRule{{Rule:\"self == oldSelf\"")), "{e:?}");
        assert!(
            e[4].contains(": messageExpression compilation failed: ERROR: <input>:1:"),
            "{e:?}"
        );
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

    /// The estimated cost of `rule` at a node of schema `v`.
    fn cost(v: Value, rule: &str) -> u64 {
        let (s, _) = schema(v);
        let decl = decl_of(&s, false).expect("a typed schema");
        let p = crate::cel::compile(rule).expect("a rule that parses");
        check::check(&p, &[("self", Ty::Decl(decl))], Some(Want::Bool))
            .expect("a rule that checks")
            .max_cost
    }

    #[test]
    fn costs_are_upstreams() {
        // Upstream's TestCostEstimation figures, unbounded and bounded.
        let list = |ty: &str, max: Option<u64>| {
            let mut v = json!({"type": "array", "items": {"type": ty}});
            if let Some(m) = max {
                v["maxItems"] = json!(m);
            }
            v
        };
        let string = |max: Option<u64>| {
            let mut v = json!({"type": "string"});
            if let Some(m) = max {
                v["maxLength"] = json!(m);
            }
            v
        };
        assert_eq!(cost(list("number", None), "self.all(x, true)"), 4718591);
        assert_eq!(cost(list("number", Some(10)), "self.all(x, true)"), 32);
        assert_eq!(cost(list("string", None), "self.all(x, true)"), 3145727);
        assert_eq!(cost(list("string", Some(20)), "self.all(x, true)"), 62);
        assert_eq!(cost(list("boolean", None), "self.all(x, true)"), 1887437);
        assert_eq!(
            cost(
                json!({"type": "object", "additionalProperties": {"type": "number"}}),
                "self.all(x, true)"
            ),
            1348169
        );
        assert_eq!(cost(string(None), "self.contains('test')"), 314574);
        assert_eq!(cost(string(Some(10)), "self.contains('test')"), 5);
        assert_eq!(
            cost(string(None), "size(self + \"hello\") > size(\"hello\")"),
            314578
        );
        assert_eq!(cost(list("string", None), "self[1] == self[1]"), 314577);
        assert_eq!(cost(string(None), "self.matches(\"x\")"), 314574);
        assert_eq!(cost(string(Some(50)), "self.matches(\"x\")"), 22);
        assert_eq!(
            cost(list("number", Some(10)), "self.all(x, self.all(y, true))"),
            352
        );
        assert!(cost(list("number", None), "self.all(x, self.all(y, true))") > RULE_COST_LIMIT);
        assert_eq!(cost(string(None), "self.startsWith('x')"), 2);
    }

    #[test]
    fn rules_are_checked_against_the_schema() {
        let crd = |rule: &str| {
            let raw = json!({"type": "object", "properties": {"spec": {"type": "object",
                "x-kubernetes-validations": [{"rule": rule}],
                "properties": {"a": {"type": "integer"}, "x-y": {"type": "string"}}}}});
            let (s, _) = schema(raw.clone());
            let mut errs = Vec::new();
            check_crd(&s, &raw, "s", &mut errs);
            shown(&errs)
        };
        assert_eq!(
            crd("self.a > 0 && self.x__dash__y != ''"),
            Vec::<String>::new()
        );
        let e = crd("self.b > 0");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("s.properties[spec].x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{Rule:\"self.b > 0\""),
            "{e:?}"
        );
        assert!(
            e[0].ends_with("compilation failed: ERROR: <input>:1:5: undefined field 'b'\n | self.b > 0\n | ....^"),
            "{e:?}"
        );
        assert!(crd("self.a")[0].ends_with(": cel expression must evaluate to a bool"));
        // Escaped names are what rules see at run time too.
        let (s, _) = schema(
            json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.x__dash__y == 'b'"}],
            "properties": {"x-y": {"type": "string"}}}),
        );
        assert!(validate(&s, &json!({"x-y": "b"}), None).is_empty());
        assert_eq!(validate(&s, &json!({"x-y": "c"}), None).len(), 1);
    }

    #[test]
    fn crds_stored_before_the_checks_stay_updatable() {
        let crd = |rules: Value| {
            json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object",
                "x-kubernetes-validations": rules,
                "properties": {"a": {"type": "integer"}}}}}}}]}})
        };
        let old = crd(json!([{"rule": "self.b > 0"}]));
        let errs = shown(&crd_rule_errors(&old));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with(
            "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
        ));
        // Unchanged (a status write, a label): accepted; a new bad rule is not.
        let mut labelled = old.clone();
        labelled["metadata"] = json!({"labels": {"x": "y"}});
        assert!(crd_rule_errors_update(&labelled, &old).is_empty());
        let worse = crd(json!([{"rule": "self.b > 0"}, {"rule": "self.c > 0"}]));
        let errs = shown(&crd_rule_errors_update(&worse, &old));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("undefined field 'c'"), "{errs:?}");
    }
}
