//! Which webhooks a request goes to: rules (operations, API groups and
//! versions, resources with subresources, scope) and the object selector.
//! The namespace selector needs the store and is in mod.rs.
//!
//! matchPolicy: every built-in kind is served under one group and version
//! here, and each CRD version is its own resource, so a request has no
//! equivalent under another version that a rule could name: Equivalent and
//! Exact decide alike.

use serde_json::Value;

use super::Attributes;
use super::config::{Hook, Rule};
use crate::registry::generic::labels_of;

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
    let def = a.def;
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

/// The object selector holds for the object or, failing that, the old one
/// (a DELETE has only the old one).
pub fn object_selector_matches(hook: &Hook, obj: Option<&Value>, old: Option<&Value>) -> bool {
    if hook.object_selector.is_empty() {
        return true;
    }
    [obj, old]
        .into_iter()
        .flatten()
        .any(|o| hook.object_selector.matches(&labels_of(o)))
}

/// matchConditions, as upstream: any false skips the webhook; otherwise
/// an evaluation error is an error (failurePolicy decides); all true calls.
pub fn conditions_hold(
    hook: &Hook,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> Result<bool, String> {
    if hook.match_conditions.is_empty() {
        return Ok(true);
    }
    let request = super::review::admission_request("", a, None);
    let null = Value::Null;
    let vars: [(&str, &Value); 3] = [
        ("object", obj.unwrap_or(&null)),
        ("oldObject", a.old.unwrap_or(&null)),
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
