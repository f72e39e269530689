//! Maps a built-in kind to its strategy.

use std::sync::Arc;

use super::{Plain, Strategy};

/// The strategy for a built-in kind; `Plain` for kinds without special rules.
pub fn for_kind(_group: &str, _kind: &str) -> Arc<dyn Strategy> {
    Arc::new(Plain)
}

/// Checks every object's metadata gets (labels, annotations).
pub fn validate_object_meta(_obj: &serde_json::Value) -> Vec<crate::api::status::FieldError> {
    Vec::new()
}
