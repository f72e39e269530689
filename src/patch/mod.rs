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
    #[error("{0}")]
    Invalid(String),
}

/// Apply a patch document of type `bt` to `current`.
pub fn apply(current: &Value, bt: BodyType, raw: &[u8]) -> Result<Value, PatchError> {
    match bt {
        BodyType::JsonPatch => {
            let p: json_patch::Patch = serde_json::from_slice(raw)
                .map_err(|e| PatchError::Invalid(format!("error decoding patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| PatchError::Invalid(e.to_string()))?;
            Ok(doc)
        }
        BodyType::MergePatch => {
            let p: Value = serde_json::from_slice(raw)
                .map_err(|e| PatchError::Invalid(format!("error decoding patch: {e}")))?;
            if !p.is_object() {
                return Err(PatchError::Invalid("patch must be a JSON object".into()));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        BodyType::StrategicMergePatch => {
            let p: Value = serde_json::from_slice(raw)
                .map_err(|e| PatchError::Invalid(format!("error decoding patch: {e}")))?;
            strategic::merge(current, &p)
        }
        _ => Err(PatchError::Invalid("unsupported patch type".into())),
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
    match bt {
        BodyType::JsonPatch | BodyType::MergePatch | BodyType::StrategicMergePatch => {}
        BodyType::ApplyPatch => {
            let config = crate::api::request::decode_object(raw, bt)?;
            return apply::apply_patch(reg, def, ns, name, subresource, config, false, opts)
                .await
                .map(|(o, _)| o);
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
        let mut patched = apply(&current, bt, raw).map_err(|e| match e {
            PatchError::Invalid(m) => ApiError::new(422, "Invalid", m),
        })?;
        let pinned = patched.pointer("/metadata/resourceVersion")
            != current.pointer("/metadata/resourceVersion");
        if !pinned {
            // Patches apply to the version just read.
            patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        }
        match reg.update(def, ns, name, patched, subresource, opts).await {
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
