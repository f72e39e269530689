//! OpenAPI v2 and v3 documents generated from the k8s-openapi types and the
//! catalogue (not copied from upstream).

pub mod definitions;
pub mod listmeta;

use serde_json::{Value, json};

use crate::registry::Catalogue;

/// The /openapi/v2 document.
pub fn v2(_catalogue: &Catalogue) -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {}, "definitions": {}})
}

/// The /openapi/v3 index: `{"paths": {"api/v1": {"serverRelativeURL": ...}}}`.
pub fn v3_index(_catalogue: &Catalogue) -> Value {
    json!({"paths": {}})
}

/// The /openapi/v3/<path> document for one group-version (`api/v1`, `apis/apps/v1`).
pub fn v3_document(_catalogue: &Catalogue, _path: &str) -> Option<Value> {
    None
}
