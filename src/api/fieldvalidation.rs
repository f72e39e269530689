//! Strict field validation: unknown and duplicate fields, as upstream reports them.

use serde_json::Value;

use crate::registry::ResourceDef;

/// Unknown fields of `obj` against the resource's schema, as JSON paths
/// (`.spec.foo`), in document order.
pub fn unknown_fields(_def: &ResourceDef, _obj: &Value) -> Vec<String> {
    Vec::new()
}

/// Duplicate object keys in a raw JSON document, as JSON paths.
pub fn duplicate_fields(_raw: &[u8]) -> Vec<String> {
    Vec::new()
}
