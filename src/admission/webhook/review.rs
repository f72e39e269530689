//! admission.k8s.io/v1 AdmissionReview: the request a webhook is sent, the
//! checks on its answer, and the error a refusal becomes.

use base64::Engine;
use serde_json::{Value, json};

use super::Attributes;
use crate::api::status::ApiError;
use crate::registry::ResourceDef;

/// The AdmissionReview request body for `a`, with id `uid`.
pub fn request(
    uid: &str,
    a: &Attributes<'_>,
    equivalent: Option<&ResourceDef>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Vec<u8> {
    let review = json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": admission_request(uid, a, equivalent, obj, old),
    });
    serde_json::to_vec(&review).unwrap_or_default()
}

/// The AdmissionRequest for `a` (also the `request` variable of match
/// conditions). Called for an `equivalent` resource (matchPolicy
/// Equivalent), kind and resource are that one's while requestKind and
/// requestResource stay the request's.
pub fn admission_request(
    uid: &str,
    a: &Attributes<'_>,
    equivalent: Option<&ResourceDef>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Value {
    let gvk_gvr = |def: &ResourceDef| {
        let (kgroup, kversion, kind) =
            a.object_kind
                .unwrap_or((&def.group, &def.version, &def.kind));
        (
            json!({"group": kgroup, "version": kversion, "kind": kind}),
            json!({"group": def.group, "version": def.version, "resource": def.plural}),
        )
    };
    let (request_gvk, request_gvr) = gvk_gvr(a.def);
    let (gvk, gvr) = match equivalent {
        Some(d) => gvk_gvr(d),
        None => (request_gvk.clone(), request_gvr.clone()),
    };
    let sub = a.subresource.unwrap_or("");
    let mut user = json!({"username": "", "groups": []});
    if let Some(u) = a.user {
        user = json!({"username": u.name, "groups": u.groups});
    }
    let mut req = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": request_gvk,
        "requestResource": request_gvr,
        "name": a.name,
        "namespace": a.request_namespace(),
        "operation": a.operation.as_str(),
        "userInfo": user,
        "object": obj,
        "oldObject": old,
        "dryRun": a.dry_run,
        "options": a.options.to_json(),
    });
    if !sub.is_empty() {
        req["subResource"] = json!(sub);
        req["requestSubResource"] = json!(sub);
    }
    if a.name.is_empty() {
        req.as_object_mut().map(|m| m.remove("name"));
    }
    if a.request_namespace().is_empty() {
        req.as_object_mut().map(|m| m.remove("namespace"));
    }
    req
}

/// A webhook's answer, checked.
#[derive(Debug, Default)]
pub struct Response {
    pub allowed: bool,
    pub status: Option<Value>,
    pub patch: Option<Vec<u8>>,
    pub patch_type: Option<String>,
    pub warnings: Vec<String>,
}

/// Check an AdmissionReview answer as upstream does: the right kind, our
/// uid, and a patch only from a mutating webhook, with its type.
pub fn verify(uid: &str, mutating: bool, raw: &[u8]) -> Result<Response, String> {
    let review: Value = serde_json::from_slice(raw)
        .map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))?;
    let Some(resp) = review.get("response").filter(|r| r.is_object()) else {
        return Err("webhook response was absent".into());
    };
    let got_uid = resp.get("uid").and_then(Value::as_str).unwrap_or("");
    if got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        let (g, v) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {g}/{v}, Kind={kind}"
        ));
    }
    let patch = match resp.get("patch") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("illegal base64 data in response.patch: {e}"))?,
        ),
        Some(_) => return Err("response.patch must be a base64 string".into()),
    };
    let patch_type = resp
        .get("patchType")
        .and_then(Value::as_str)
        .map(str::to_string);
    if mutating {
        if patch.is_some() && patch_type.is_none() {
            return Err("webhook returned response.patch but not response.patchType".into());
        }
        if patch.is_none() && patch_type.is_some() {
            return Err("webhook returned response.patchType but not response.patch".into());
        }
        if patch_type.as_deref() == Some("") {
            return Err("webhook returned invalid response.patchType of \"\"".into());
        }
    } else {
        if patch.is_some() {
            return Err("validating webhook may not return response.patch".into());
        }
        if patch_type.is_some() {
            return Err("validating webhook may not return response.patchType".into());
        }
    }
    let warnings = resp
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Response {
        allowed: resp.get("allowed").and_then(Value::as_bool) == Some(true),
        status: resp.get("status").filter(|s| s.is_object()).cloned(),
        patch,
        patch_type,
        warnings,
    })
}

/// The status reasons a refusal may carry through (ApiError holds static
/// reasons); others are dropped, leaving the message.
const REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "Timeout",
    "TooManyRequests",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "Expired",
    "ServiceUnavailable",
];

/// A refusal as upstream words it: `admission webhook "NAME" denied the
/// request: MESSAGE`, with the webhook's code (403 below 400).
pub fn denied(webhook: &str, status: Option<&Value>) -> ApiError {
    let by = format!("admission webhook {webhook:?} denied the request");
    let empty = json!({});
    let st = status.unwrap_or(&empty);
    let message = st.get("message").and_then(Value::as_str).unwrap_or("");
    let reason = st.get("reason").and_then(Value::as_str).unwrap_or("");
    let text = if !message.is_empty() {
        format!("{by}: {message}")
    } else if !reason.is_empty() {
        format!("{by}: {reason}")
    } else {
        format!("{by} without explanation")
    };
    let code = st
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(403);
    let reason = REASONS
        .iter()
        .find(|r| **r == reason)
        .copied()
        .unwrap_or("");
    let mut e = ApiError::new(code, reason, text);
    e.details = st.get("details").filter(|d| d.is_object()).cloned();
    e
}
