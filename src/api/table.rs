//! `application/json;as=Table;v=v1;g=meta.k8s.io`: server-side printing with
//! the columns kubectl shows against upstream.

use serde_json::{Value, json};

use crate::registry::ResourceDef;

/// What each row's `object` holds (`includeObject` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

/// A meta.k8s.io/v1 Table for `items`; `list_meta` is the list's metadata
/// (resourceVersion, continue, remainingItemCount).
pub fn build_table(_def: &ResourceDef, items: &[Value], include: IncludeObject, list_meta: Value) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"].clone()}),
                IncludeObject::Object => o.clone(),
            };
            json!({"cells": [o["metadata"]["name"].clone(), ""], "object": object})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
            {"name": "Created At", "type": "date", "format": "", "description": "", "priority": 0},
        ],
        "rows": rows,
    })
}
