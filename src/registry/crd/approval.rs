//! API approval of CRDs in the community's protected groups (`k8s.io`,
//! `kubernetes.io` and their subdomains): such a CRD carries the
//! `api-approved.kubernetes.io` annotation, naming the URL of its approval
//! or a reason starting with "unapproved" (accepted, but reported in the
//! KubernetesAPIApprovalPolicyConformant condition).

use serde_json::Value;

use crate::api::status::FieldError;

pub const ANNOTATION: &str = "api-approved.kubernetes.io";
pub const CONDITION: &str = "KubernetesAPIApprovalPolicyConformant";

/// Whether a group belongs to the Kubernetes community.
pub fn is_protected_group(group: &str) -> bool {
    group == "k8s.io"
        || group.ends_with(".k8s.io")
        || group == "kubernetes.io"
        || group.ends_with(".kubernetes.io")
}

/// What the annotation says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Invalid,
    Approved,
    Bypassed,
    Missing,
}

fn annotation(crd: &Value) -> &str {
    crd.pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The state of the annotation and why, in upstream's words.
pub fn state(crd: &Value) -> (State, String) {
    let a = annotation(crd);
    if a.is_empty() {
        return (
            State::Missing,
            format!(
                "protected groups must have approval annotation {ANNOTATION:?}, see https://github.com/kubernetes/enhancements/pull/1111"
            ),
        );
    }
    if a.starts_with("unapproved") {
        return (State::Bypassed, format!("not approved: {a:?}"));
    }
    if is_url(a) {
        return (State::Approved, format!("approved in {a}"));
    }
    (
        State::Invalid,
        format!(
            "protected groups must have approval annotation {ANNOTATION:?} with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111"
        ),
    )
}

/// An absolute URL with a scheme and a host, as upstream demands.
fn is_url(s: &str) -> bool {
    url::Url::parse(s)
        .is_ok_and(|u| !u.scheme().is_empty() && u.host_str().is_some_and(|h| !h.is_empty()))
}

/// Validates the annotation of a CRD in a protected group. An update that
/// leaves the state as it was is never refused (a controller writing spec).
pub fn validate(new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let group = new
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !is_protected_group(group) {
        return Vec::new();
    }
    let (now, reason) = state(new);
    if old.is_some_and(|o| state(o).0 == now) {
        return Vec::new();
    }
    let field = format!("metadata.annotations[{ANNOTATION}]");
    match now {
        State::Approved | State::Bypassed => Vec::new(),
        State::Missing => vec![FieldError {
            reason: "FieldValueRequired",
            field,
            message: format!("Required value: {reason}"),
        }],
        State::Invalid => vec![FieldError::invalid(field, annotation(new), reason)],
    }
}

/// The KubernetesAPIApprovalPolicyConformant condition (status, reason,
/// message) of a CRD in a protected group; None for other groups.
pub fn condition(crd: &Value) -> Option<(&'static str, &'static str, String)> {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !is_protected_group(group) {
        return None;
    }
    let (s, reason) = state(crd);
    Some(match s {
        State::Invalid => ("False", "InvalidAnnotation", reason),
        State::Missing => ("False", "MissingAnnotation", reason),
        State::Approved => ("True", "ApprovedAnnotation", reason),
        State::Bypassed => ("False", "UnapprovedAnnotation", reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(group: &str, ann: Option<&str>) -> Value {
        let mut c = json!({"metadata": {"name": "x"}, "spec": {"group": group}});
        if let Some(a) = ann {
            c["metadata"]["annotations"] = json!({ANNOTATION: a});
        }
        c
    }

    #[test]
    fn protected_groups() {
        for g in ["k8s.io", "x.k8s.io", "kubernetes.io", "a.b.kubernetes.io"] {
            assert!(is_protected_group(g), "{g}");
        }
        for g in [
            "example.com",
            "k8s.io.example.com",
            "xk8s.io",
            "x-kubernetes.io",
        ] {
            assert!(!is_protected_group(g), "{g}");
        }
    }

    #[test]
    fn annotation_states_and_validation() {
        let url = "https://github.com/kubernetes/enhancements/pull/1111";
        assert_eq!(state(&crd("x.k8s.io", Some(url))).0, State::Approved);
        assert_eq!(
            state(&crd("x.k8s.io", Some("unapproved, testing"))).0,
            State::Bypassed
        );
        assert_eq!(
            state(&crd("x.k8s.io", Some("/just/a/path"))).0,
            State::Invalid
        );
        assert_eq!(
            state(&crd("x.k8s.io", Some("yes please"))).0,
            State::Invalid
        );
        assert_eq!(state(&crd("x.k8s.io", None)).0, State::Missing);
        assert!(validate(&crd("example.com", None), None).is_empty());
        let e = validate(&crd("x.k8s.io", None), None);
        assert_eq!(
            e[0].display(),
            "metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111"
        );
        let e = validate(&crd("x.k8s.io", Some("maybe")), None);
        assert!(e[0].display().starts_with("metadata.annotations[api-approved.kubernetes.io]: Invalid value: \"maybe\": protected groups must have approval annotation"), "{e:?}");
        // An update keeping the (bad) state is let through.
        assert!(
            validate(
                &crd("x.k8s.io", Some("maybe")),
                Some(&crd("x.k8s.io", Some("nope")))
            )
            .is_empty()
        );
        assert_eq!(
            condition(&crd("x.k8s.io", Some("unapproved, testing"))),
            Some((
                "False",
                "UnapprovedAnnotation",
                "not approved: \"unapproved, testing\"".into()
            ))
        );
        assert_eq!(
            condition(&crd("x.k8s.io", Some(url))).map(|c| c.1),
            Some("ApprovedAnnotation")
        );
        assert_eq!(condition(&crd("example.com", None)), None);
    }
}
