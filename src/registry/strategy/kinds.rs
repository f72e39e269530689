//! Maps a built-in kind to its strategy.

use std::sync::Arc;

use serde_json::Value;

use super::{Plain, Strategy};
use crate::api::status::FieldError;

#[path = "defaults.rs"]
pub mod defaults;
#[path = "quantity.rs"]
pub mod quantity;
#[path = "typed.rs"]
pub mod typed;
#[path = "util.rs"]
pub mod util;
#[path = "validation.rs"]
pub mod validation;

/// The strategy for a built-in kind; `Plain` for kinds without special rules.
pub fn for_kind(_group: &str, _kind: &str) -> Arc<dyn Strategy> {
    Arc::new(Plain)
}

/// Checks every object's metadata gets (labels, annotations, finalizers,
/// owner references). Called by the generic store for every kind.
pub fn validate_object_meta(obj: &Value) -> Vec<FieldError> {
    validation::validate_object_meta(obj)
}
