//! PATCH: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic
//! merge patch, applied to the current object and written through the
//! generic update path (so defaulting, validation and concurrency apply).

pub mod apply;
pub mod managedfields;
pub mod strategic;

use serde_json::Value;

use crate::api::request::BodyType;
use crate::api::status::ApiError;
use crate::registry::ResourceDef;
use crate::registry::generic::{ReadAt, Registry, WriteOptions};

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed: 400.
    #[error("{0}")]
    BadRequest(String),
    /// The patch does not apply to the object (a JSON patch operation
    /// fails, lists of lists): 422 with upstream's generic message.
    #[error("{0}")]
    Rejected(String),
    /// More JSON patch operations than upstream allows: 413.
    #[error("{0}")]
    TooLarge(String),
}

/// Upstream's cap on the operations of one JSON patch.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

impl PatchError {
    /// The Status upstream answers with.
    pub fn into_api(self) -> ApiError {
        match self {
            PatchError::BadRequest(m) => ApiError::bad_request(m),
            PatchError::Rejected(m) => {
                tracing::debug!("patch rejected: {m}");
                let mut e = ApiError::new(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                );
                e.details = Some(serde_json::json!({}));
                e
            }
            PatchError::TooLarge(m) => ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("Request entity too large: {m}"),
            ),
        }
    }
}

/// Decode a patch body; `want` is the Go type upstream decodes it into, named
/// in the error when the JSON has another shape.
fn decode(raw: &[u8], prefix: &str, want: &str) -> Result<Value, PatchError> {
    let v: Value =
        serde_json::from_slice(raw).map_err(|e| PatchError::BadRequest(format!("{prefix}{e}")))?;
    let fits = match want {
        "[]handlers.jsonPatchOp" => v.is_array() || v.is_null(),
        _ => v.is_object() || v.is_null(),
    };
    if !fits {
        return Err(PatchError::BadRequest(format!(
            "{prefix}json: cannot unmarshal {} into Go value of type {want}",
            strategic::json_kind(&v)
        )));
    }
    Ok(v)
}

/// Apply a patch document of type `bt` to `current`.
pub fn apply(current: &Value, bt: BodyType, raw: &[u8]) -> Result<Value, PatchError> {
    const MAP: &str = "map[string]interface {}";
    match bt {
        BodyType::JsonPatch => {
            let ops = decode(raw, "error decoding patch: ", "[]handlers.jsonPatchOp")?;
            let ops = ops.as_array().cloned().unwrap_or_default();
            if let Some(op) = ops.iter().find(|op| !op.is_object()) {
                return Err(PatchError::BadRequest(format!(
                    "error decoding patch: json: cannot unmarshal {} into Go value of type handlers.jsonPatchOp",
                    strategic::json_kind(op)
                )));
            }
            if ops.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(PatchError::TooLarge(format!(
                    "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                    ops.len()
                )));
            }
            // Upstream decodes any object as an operation and fails when
            // applying it (an unknown op, a missing path): 422, not 400.
            let p: json_patch::Patch = serde_json::from_value(Value::Array(ops))
                .map_err(|e| PatchError::Rejected(e.to_string()))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| PatchError::Rejected(e.to_string()))?;
            Ok(doc)
        }
        BodyType::MergePatch => {
            let p = decode(raw, "error decoding patch: ", MAP)?;
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        BodyType::StrategicMergePatch => {
            let p = decode(raw, "", MAP)?;
            if p.is_null() {
                return Ok(current.clone());
            }
            strategic::merge(current, &p)
        }
        _ => Err(PatchError::BadRequest("unsupported patch type".into())),
    }
}

/// PATCH one object: read, patch, update; retried when another writer got in
/// between, unless the patch itself pins a resourceVersion.
#[allow(clippy::too_many_arguments)]
pub async fn apply_patch(
    reg: &Registry,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    bt: BodyType,
    raw: &[u8],
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    apply_patch_warned(reg, def, ns, name, subresource, bt, raw, opts)
        .await
        .map(|(o, _)| o)
}

/// `apply_patch`, also returning the warnings for the response (unknown
/// fields dropped under fieldValidation=Warn, the default).
#[allow(clippy::too_many_arguments)]
pub async fn apply_patch_warned(
    reg: &Registry,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    bt: BodyType,
    raw: &[u8],
    opts: &WriteOptions,
) -> Result<(Value, Vec<String>), ApiError> {
    match bt {
        BodyType::JsonPatch | BodyType::MergePatch | BodyType::StrategicMergePatch => {}
        BodyType::ApplyPatch => {
            let config = crate::api::request::decode_object(raw, bt)?;
            return apply::apply_patch(reg, def, ns, name, subresource, config, false, opts)
                .await
                .map(|(o, _)| (o, Vec::new()));
        }
        _ => return Err(ApiError::unsupported_media_type("application/json")),
    }
    if bt == BodyType::StrategicMergePatch
        && def.group.contains('.')
        && !is_builtin_group(&def.group)
    {
        return Err(ApiError::unsupported_media_type(
            "application/strategic-merge-patch+json",
        ));
    }
    for _ in 0..8 {
        let current = reg.get(def, ns, name, ReadAt::Latest).await?;
        let mut patched = apply(&current, bt, raw).map_err(PatchError::into_api)?;
        let warnings = check_fields(def, bt, raw, &current, &mut patched, opts)?;
        let pinned = patched.pointer("/metadata/resourceVersion")
            != current.pointer("/metadata/resourceVersion");
        if !pinned {
            // Patches apply to the version just read.
            patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        }
        match reg.update(def, ns, name, patched, subresource, opts).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" && !pinned => continue,
            other => return other.map(|o| (o, warnings)),
        }
    }
    Err(ApiError::conflict(
        def.target(),
        name,
        "too many concurrent writers, please retry",
    ))
}

/// PATCH of a `/scale` subresource: the Scale view of the object is patched
/// and written back as the object's replicas; retried like any patch when
/// the object changed in between (a controller's status write), unless the
/// patch pins a resourceVersion.
#[allow(clippy::too_many_arguments)]
pub async fn apply_scale_patch(
    reg: &Registry,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    bt: BodyType,
    raw: &[u8],
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    for _ in 0..8 {
        let obj = reg.get(def, ns, name, ReadAt::Latest).await?;
        let scale = Registry::scale_of(def, &obj);
        let patched = apply(&scale, bt, raw).map_err(PatchError::into_api)?;
        let pinned = patched.pointer("/metadata/resourceVersion")
            != scale.pointer("/metadata/resourceVersion");
        match reg.update_scale(def, ns, name, &patched, opts).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" && !pinned => continue,
            other => return other,
        }
    }
    Err(ApiError::conflict(
        def.target(),
        name,
        "too many concurrent writers, please retry",
    ))
}

/// Fields the schema does not know, in the patched object: with
/// fieldValidation=Strict a 422 naming the patch, as upstream's typed
/// decoding of the result gives; otherwise they go (upstream drops them when
/// decoding), with a warning each under Warn, the default.
fn check_fields(
    def: &ResourceDef,
    bt: BodyType,
    raw: &[u8],
    current: &Value,
    patched: &mut Value,
    opts: &WriteOptions,
) -> Result<Vec<String>, ApiError> {
    use crate::api::fieldvalidation::{prune_unknown, unknown_fields};
    use crate::api::request::FieldValidation;
    match opts.field_validation {
        FieldValidation::Strict => {}
        FieldValidation::Ignore => {
            prune_unknown(def, patched);
            return Ok(Vec::new());
        }
        FieldValidation::Warn => {
            return Ok(prune_unknown(def, patched)
                .into_iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect());
        }
    }
    // Only what the patch brought in: a stored object is not refused for
    // what it already holds.
    let before = unknown_fields(def, current);
    let unknown: Vec<String> = unknown_fields(def, patched)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let problems: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    // Upstream shows the patch (strategic: as a Go map) or the patched
    // object (JSON and merge patches) as the invalid value.
    let shown = if bt == BodyType::StrategicMergePatch {
        let p: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
        strategic::go_fmt(&p)
    } else {
        patched.to_string()
    };
    let cause = format!(
        "Invalid value: {}: strict decoding error: {}",
        Value::String(shown),
        problems.join(", ")
    );
    let mut e = ApiError::new(422, "Invalid", format!(" \"\" is invalid: patch: {cause}"));
    e.details = Some(serde_json::json!({
        "causes": [{"reason": "FieldValueInvalid", "message": cause, "field": "patch"}]
    }));
    Err(e)
}

/// Invalid PatchOptions (or other write options): 422, as upstream.
pub fn patch_options_invalid(detail: &str) -> ApiError {
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("PatchOptions.meta.k8s.io \"\" is invalid: {detail}"),
    );
    e.details = Some(serde_json::json!({"group": "meta.k8s.io", "kind": "PatchOptions"}));
    e
}

fn is_builtin_group(g: &str) -> bool {
    g.ends_with(".k8s.io") || g == "apps" || g == "batch" || g == "autoscaling" || g == "policy"
}
