//! Which webhooks a request goes to: rules (operations, API groups and
//! versions, resources with subresources, scope) and the object selector.
//! The namespace selector needs the store and is in mod.rs.
//!
//! matchPolicy Equivalent: a request also matches a rule naming another
//! served version (or group) of the same stored resource (a CRD's other
//! versions, autoscaling/v1 and v2 HorizontalPodAutoscalers, core and
//! events.k8s.io Events); the webhook is then called as for that version.

use std::sync::Arc;

use serde_json::Value;

use super::Attributes;
use super::config::{Hook, Rule};
use crate::registry::generic::labels_of;
use crate::registry::{Catalogue, ResourceDef};

/// How a webhook's rules matched a request.
#[derive(Debug)]
pub enum Matched {
    /// A rule names the request's own group, version and resource.
    Exact,
    /// Only a rule naming this equivalent resource matched (matchPolicy
    /// Equivalent): the webhook sees the objects converted to it.
    Equivalent(Arc<ResourceDef>),
}

fn any_or(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// `pods/status` -> ("pods", "status"); `*` -> ("*", "").
fn split_resource(r: &str) -> (&str, &str) {
    r.split_once('/').unwrap_or((r, ""))
}

fn resource_matches(rule: &Rule, resource: &str, sub: &str) -> bool {
    rule.resources.iter().any(|r| {
        let (res, rsub) = split_resource(r);
        (res == "*" || res == resource) && (rsub == "*" || rsub == sub)
    })
}

fn scope_matches(rule: &Rule, is_namespace: bool, namespace: &str) -> bool {
    match rule.scope.as_str() {
        // A Namespace is cluster-scoped even though it names a namespace.
        "Namespaced" => !is_namespace && !namespace.is_empty(),
        "Cluster" => is_namespace || namespace.is_empty(),
        _ => true,
    }
}

pub fn rule_matches(rule: &Rule, a: &Attributes<'_>) -> bool {
    rule_matches_as(rule, a, a.def)
}

/// `rule` against the request as if made to `def`.
fn rule_matches_as(rule: &Rule, a: &Attributes<'_>, def: &ResourceDef) -> bool {
    let is_namespace = def.group.is_empty() && def.plural == "namespaces";
    any_or(&rule.operations, a.operation.as_str())
        && any_or(&rule.api_groups, &def.group)
        && any_or(&rule.api_versions, &def.version)
        && resource_matches(rule, &def.plural, a.subresource.unwrap_or(""))
        && scope_matches(rule, is_namespace, a.request_namespace())
}

pub fn rules_match(hook: &Hook, a: &Attributes<'_>) -> bool {
    hook.rules.iter().any(|r| rule_matches(r, a))
}

/// The other served versions and groups of the request's resource (same
/// storage), which carry the request's subresource. Requests whose object
/// is another kind (Scale, Binding, options of CONNECT) have none: their
/// object does not change with the resource's version.
fn equivalents(a: &Attributes<'_>, catalogue: &Catalogue) -> Vec<Arc<ResourceDef>> {
    if a.object_kind.is_some() {
        return Vec::new();
    }
    let def = a.def;
    catalogue
        .all()
        .into_iter()
        .filter(|d| {
            d.storage_prefix == def.storage_prefix
                && (d.group != def.group || d.version != def.version)
                && a.subresource.is_none_or(|s| d.has_subresource(s))
        })
        .collect()
}

/// Whether and how `hook` matches: exactly first; then, unless its
/// matchPolicy is Exact, through the first equivalent resource a rule names.
pub fn invocation(hook: &Hook, a: &Attributes<'_>, catalogue: &Catalogue) -> Option<Matched> {
    if rules_match(hook, a) {
        return Some(Matched::Exact);
    }
    // Most writes match no rule at all: only then is the catalogue read.
    if hook.match_policy_exact
        || !hook
            .rules
            .iter()
            .any(|r| any_or(&r.operations, a.operation.as_str()))
    {
        return None;
    }
    equivalents(a, catalogue)
        .into_iter()
        .find(|d| hook.rules.iter().any(|r| rule_matches_as(r, a, d)))
        .map(Matched::Equivalent)
}

/// `obj` as the resource `to` serves it (through the stored form).
pub fn convert(obj: &Value, from: &ResourceDef, to: &ResourceDef) -> Value {
    let mut o = obj.clone();
    if let Some(c) = &from.conversion {
        o = c.to_storage(o);
    }
    if let Some(c) = &to.conversion {
        o = c.to_served(o);
    }
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(to.api_version()));
        m.insert("kind".into(), Value::String(to.kind.clone()));
    }
    o
}

/// The object selector holds for the object or, failing that, the old one
/// (a DELETE has only the old one).
pub fn object_selector_matches(hook: &Hook, obj: Option<&Value>, old: Option<&Value>) -> bool {
    if hook.object_selector.is_empty() {
        return true;
    }
    // Objects without metadata (a CONNECT's options) have no labels to
    // select on: upstream skips the webhook rather than match empty labels.
    [obj, old]
        .into_iter()
        .flatten()
        .filter(|o| o.get("metadata").is_some_and(Value::is_object))
        .any(|o| hook.object_selector.matches(&labels_of(o)))
}

/// matchConditions, as upstream: any false skips the webhook; otherwise
/// an evaluation error is an error (failurePolicy decides); all true calls.
pub fn conditions_hold(
    hook: &Hook,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> Result<bool, String> {
    conditions_hold_as(hook, a, None, obj, a.old)
}

/// matchConditions over the objects as the webhook is sent them
/// (`equivalent`: converted to that resource).
pub fn conditions_hold_as(
    hook: &Hook,
    a: &Attributes<'_>,
    equivalent: Option<&ResourceDef>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<bool, String> {
    if hook.match_conditions.is_empty() {
        return Ok(true);
    }
    let request = super::review::admission_request("", a, equivalent, None, None);
    let null = Value::Null;
    let vars: [(&str, &Value); 3] = [
        ("object", obj.unwrap_or(&null)),
        ("oldObject", old.unwrap_or(&null)),
        ("request", &request),
    ];
    let mut errors = Vec::new();
    for (name, program) in &hook.match_conditions {
        let result = match program {
            Ok(p) => crate::cel::eval_bool(p, &vars).map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        match result {
            Ok(false) => return Ok(false),
            Ok(true) => {}
            Err(e) => errors.push(format!("expression '{name}' resulted in error: {e}")),
        }
    }
    match errors.len() {
        0 => Ok(true),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}
