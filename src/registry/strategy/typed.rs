//! Decoding objects into their typed k8s-openapi structs to reject values of
//! the wrong JSON type, reported as a 422 cause on the offending field in the
//! wording upstream uses for schema type errors
//! (`spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::status::FieldError;

fn has_null_member(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().any(|x| x.is_null() || has_null_member(x)),
        Value::Array(a) => a.iter().any(has_null_member),
        _ => false,
    }
}

/// Drop null object members: Go decodes `null` into a zero value, so upstream
/// accepts `key: null` even where the type is a plain string.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), strip_nulls(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Decode `obj` as `T`; the first type error becomes a field error.
pub fn decode_as<T: DeserializeOwned>(obj: &Value) -> Result<(), FieldError> {
    let stripped;
    let obj = if has_null_member(obj) {
        stripped = strip_nulls(obj);
        &stripped
    } else {
        obj
    };
    match serde_path_to_error::deserialize::<_, T>(obj) {
        Ok(_) => Ok(()),
        Err(e) => {
            let path = e.path().to_string();
            let msg = e.inner().to_string();
            Err(to_field_error(obj, &path, &msg))
        }
    }
}

/// The JSON type name as OpenAPI schemas call it.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What serde's "expected ..." names, as an OpenAPI type.
fn expected_type(expected: &str) -> &'static str {
    let e = expected.trim();
    match e {
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "a 32-bit integer" => "integer",
        "f32" | "f64" => "number",
        "a boolean" | "bool" => "boolean",
        "a sequence" => "array",
        "IntOrString" => "integer or string",
        "a string"
        | "string"
        | "Quantity"
        | "Time"
        | "MicroTime"
        | "a base64-encoded string"
        | "a borrowed string"
        | "char" => "string",
        _ => "object",
    }
}

/// The value at a serde_path_to_error path (`spec.containers[0].name`).
fn value_at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.split('.') {
        // A part may carry indexes: `containers[0][1]`.
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for ix in rest.split('[').filter(|x| !x.is_empty()) {
            let n: usize = ix.trim_end_matches(']').parse().ok()?;
            cur = cur.get(n)?;
        }
    }
    Some(cur)
}

fn to_field_error(obj: &Value, path: &str, msg: &str) -> FieldError {
    let field = if path == "." {
        String::new()
    } else {
        path.to_string()
    };
    let at = value_at(obj, path);
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let expected = rest
            .rsplit_once(", expected ")
            .map(|(_, e)| e)
            .unwrap_or("");
        let got = at.map(json_type).unwrap_or("null");
        let want = expected_type(expected);
        return FieldError {
            reason: "FieldValueTypeInvalid",
            message: format!(
                "Invalid value: \"{got}\": {field} in body must be of type {want}: \"{got}\""
            ),
            field,
        };
    }
    let shown = match at {
        Some(Value::String(s)) => Value::String(s.clone()).to_string(),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        Some(Value::Null) | None => "null".to_string(),
        Some(_) => "\"object\"".to_string(),
    };
    FieldError {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {shown}: {msg}"),
        field,
    }
}

/// Decode an object of a built-in kind. `api_version` disambiguates kinds
/// served in several versions with different shapes (HPA v1/v2).
pub fn check_builtin(group: &str, kind: &str, obj: &Value) -> Result<(), FieldError> {
    use k8s_openapi::api as a;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    match (group, kind) {
        ("", "Pod") => decode_as::<a::core::v1::Pod>(obj),
        ("", "Service") => decode_as::<a::core::v1::Service>(obj),
        ("", "Endpoints") => decode_as::<a::core::v1::Endpoints>(obj),
        ("", "ConfigMap") => decode_as::<a::core::v1::ConfigMap>(obj),
        ("", "Secret") => decode_as::<a::core::v1::Secret>(obj),
        ("", "ServiceAccount") => decode_as::<a::core::v1::ServiceAccount>(obj),
        ("", "Event") => decode_as::<a::core::v1::Event>(obj),
        ("", "Node") => decode_as::<a::core::v1::Node>(obj),
        ("", "Namespace") => decode_as::<a::core::v1::Namespace>(obj),
        ("", "PersistentVolume") => decode_as::<a::core::v1::PersistentVolume>(obj),
        ("", "PersistentVolumeClaim") => decode_as::<a::core::v1::PersistentVolumeClaim>(obj),
        ("", "LimitRange") => decode_as::<a::core::v1::LimitRange>(obj),
        ("", "ResourceQuota") => decode_as::<a::core::v1::ResourceQuota>(obj),
        ("", "ReplicationController") => decode_as::<a::core::v1::ReplicationController>(obj),
        ("", "PodTemplate") => decode_as::<a::core::v1::PodTemplate>(obj),
        ("apps", "Deployment") => decode_as::<a::apps::v1::Deployment>(obj),
        ("apps", "ReplicaSet") => decode_as::<a::apps::v1::ReplicaSet>(obj),
        ("apps", "StatefulSet") => decode_as::<a::apps::v1::StatefulSet>(obj),
        ("apps", "DaemonSet") => decode_as::<a::apps::v1::DaemonSet>(obj),
        ("apps", "ControllerRevision") => decode_as::<a::apps::v1::ControllerRevision>(obj),
        ("batch", "Job") => decode_as::<a::batch::v1::Job>(obj),
        ("batch", "CronJob") => decode_as::<a::batch::v1::CronJob>(obj),
        ("autoscaling", "HorizontalPodAutoscaler") if api_version == "autoscaling/v1" => {
            decode_as::<a::autoscaling::v1::HorizontalPodAutoscaler>(obj)
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            decode_as::<a::autoscaling::v2::HorizontalPodAutoscaler>(obj)
        }
        ("policy", "PodDisruptionBudget") => decode_as::<a::policy::v1::PodDisruptionBudget>(obj),
        ("networking.k8s.io", "Ingress") => decode_as::<a::networking::v1::Ingress>(obj),
        ("networking.k8s.io", "IngressClass") => decode_as::<a::networking::v1::IngressClass>(obj),
        ("networking.k8s.io", "NetworkPolicy") => {
            decode_as::<a::networking::v1::NetworkPolicy>(obj)
        }
        ("discovery.k8s.io", "EndpointSlice") => decode_as::<a::discovery::v1::EndpointSlice>(obj),
        ("coordination.k8s.io", "Lease") => decode_as::<a::coordination::v1::Lease>(obj),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            decode_as::<a::rbac::v1::ClusterRoleBinding>(obj)
        }
        ("rbac.authorization.k8s.io", "ClusterRole") => decode_as::<a::rbac::v1::ClusterRole>(obj),
        ("rbac.authorization.k8s.io", "RoleBinding") => decode_as::<a::rbac::v1::RoleBinding>(obj),
        ("rbac.authorization.k8s.io", "Role") => decode_as::<a::rbac::v1::Role>(obj),
        ("storage.k8s.io", "StorageClass") => decode_as::<a::storage::v1::StorageClass>(obj),
        ("storage.k8s.io", "CSIDriver") => decode_as::<a::storage::v1::CSIDriver>(obj),
        ("storage.k8s.io", "CSINode") => decode_as::<a::storage::v1::CSINode>(obj),
        ("storage.k8s.io", "VolumeAttachment") => {
            decode_as::<a::storage::v1::VolumeAttachment>(obj)
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            decode_as::<a::scheduling::v1::PriorityClass>(obj)
        }
        ("node.k8s.io", "RuntimeClass") => decode_as::<a::node::v1::RuntimeClass>(obj),
        ("events.k8s.io", "Event") => decode_as::<a::events::v1::Event>(obj),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            decode_as::<a::certificates::v1::CertificateSigningRequest>(obj)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            decode_as::<a::admissionregistration::v1::MutatingWebhookConfiguration>(obj)
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            decode_as::<a::admissionregistration::v1::ValidatingWebhookConfiguration>(obj)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            decode_as::<apiext::CustomResourceDefinition>(obj)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_are_reported_on_the_field() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"replicas": "three", "selector": {}, "template": {}}});
        let e = check_builtin("apps", "Deployment", &d).err();
        let e = e.as_ref().map(|e| (e.reason, e.display()));
        assert_eq!(
            e,
            Some((
                "FieldValueTypeInvalid",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"".to_string()
            ))
        );
    }

    #[test]
    fn nested_paths_and_arrays() {
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": "eighty"}]}]}});
        let e = check_builtin("", "Pod", &p).err().map(|e| e.display());
        assert_eq!(
            e.as_deref(),
            Some(
                "spec.containers[0].ports[0].containerPort: Invalid value: \"string\": spec.containers[0].ports[0].containerPort in body must be of type integer: \"string\""
            )
        );
        let p = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": {"name": "a"}}});
        let e = check_builtin("", "Pod", &p).err().map(|e| e.display());
        assert_eq!(
            e.as_deref(),
            Some(
                "spec.containers: Invalid value: \"object\": spec.containers in body must be of type array: \"object\""
            )
        );
    }

    #[test]
    fn valid_objects_and_unknown_kinds_pass() {
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "a", "image": "nginx", "resources": {"limits": {"cpu": 1}}}]}});
        assert!(check_builtin("", "Pod", &p).is_ok());
        assert!(check_builtin("example.com", "Widget", &json!({"spec": 5})).is_ok());
        let hpa1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "x"}, "targetCPUUtilizationPercentage": 50}});
        assert!(check_builtin("autoscaling", "HorizontalPodAutoscaler", &hpa1).is_ok());
    }

    #[test]
    fn nulls_decode_as_zero_values() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"empty": null, "k": "v"}, "metadata": {"labels": null}});
        assert!(check_builtin("", "ConfigMap", &cm).is_ok());
    }

    #[test]
    fn bad_base64_in_secret_data() {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "!!!"}});
        let e = check_builtin("", "Secret", &s).err();
        assert_eq!(e.as_ref().map(|e| e.field.as_str()), Some("data.k"));
        assert!(e.is_some_and(|e| e.message.starts_with("Invalid value: \"!!!\": ")));
    }
}
