//! Admission: checks (and charges) that run on writes after defaulting and
//! validation, before storage. Called from the generic REST store.

pub mod limitranger;
pub mod namespacelifecycle;
pub mod podsecurity;
pub mod quota;
pub mod resourcequota;
pub mod webhook;

pub use resourcequota::{QuotaGuard, admit as admit_quota};

use serde_json::json;

use crate::api::status::ApiError;
use crate::registry::ResourceDef;

/// 403 Forbidden as upstream's admission plugins say it:
/// `pods "name" is forbidden: <why>`.
pub(crate) fn forbidden(def: &ResourceDef, name: &str, msg: &str) -> ApiError {
    let t = def.target();
    let mut e = ApiError::forbidden(if name.is_empty() {
        format!("{} is forbidden: {msg}", t.qualified())
    } else {
        format!("{} \"{name}\" is forbidden: {msg}", t.qualified())
    });
    let mut d = json!({"name": name, "kind": def.plural});
    if !def.group.is_empty() {
        d["group"] = json!(def.group);
    }
    e.details = Some(d);
    e
}
