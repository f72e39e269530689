//! NamespaceLifecycle's delete half: the namespaces every cluster relies on
//! cannot be deleted. (The create half, no new content in a missing or
//! terminating namespace, needs the store and lives in the generic registry.)

use crate::api::status::ApiError;
use crate::registry::ResourceDef;

/// Upstream's immortal namespaces.
const IMMORTAL: [&str; 3] = ["default", "kube-system", "kube-public"];

/// Refuse the delete of an immortal namespace with upstream's 403.
pub fn admit_delete(def: &ResourceDef, name: &str) -> Result<(), ApiError> {
    if def.group.is_empty() && def.kind == "Namespace" && IMMORTAL.contains(&name) {
        return Err(super::forbidden(
            def,
            name,
            "this namespace may not be deleted",
        ));
    }
    Ok(())
}
