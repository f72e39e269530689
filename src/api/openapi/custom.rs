//! Custom resources in the OpenAPI documents: each served version's
//! openAPIV3Schema replaces the accept-anything placeholder, with
//! apiVersion, kind and metadata described as upstream publishes them, so
//! `kubectl explain` shows the CRD's fields.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::definitions::{OBJECT_META, V2_REF_PREFIX, walk_schemas};
use crate::registry::ResourceDef;

/// The definition name of a custom kind (`com.example.v1.Widget`).
fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let prefix: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", prefix.join("."))
}

/// Puts the schemas of the custom resources among `defs` into
/// `definitions` (generated with `#/definitions/` references); `v2` drops
/// what Swagger 2.0 cannot say.
pub fn merge(definitions: &mut Map<String, Value>, defs: &[Arc<ResourceDef>], v2: bool) {
    for d in defs {
        let Some(cr) = d.strategy.custom_resource() else {
            continue;
        };
        let name = definition_name(&d.group, &d.version, &d.kind);
        let mut schema = cr.raw_schema.clone();
        if !schema.is_object() {
            continue;
        }
        if !schema.get("properties").is_some_and(Value::is_object) {
            schema["properties"] = json!({});
        }
        let props = &mut schema["properties"];
        props["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"});
        props["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"});
        props["metadata"] = json!({"$ref": format!("{V2_REF_PREFIX}{OBJECT_META}"), "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"});
        if v2 {
            walk_schemas(&mut schema, &mut |o| {
                o.remove("nullable");
                o.remove("not");
                if o.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                    o.remove("anyOf");
                    o.remove("type");
                }
            });
        }
        if let Some(Value::Object(old)) = definitions.get(&name)
            && let Some(gvk) = old.get("x-kubernetes-group-version-kind")
        {
            schema["x-kubernetes-group-version-kind"] = gvk.clone();
        }
        // Upstream names the CRD's selectableFields on the kind and its list.
        if !cr.selectable_fields.is_empty() {
            let fields: Vec<Value> = cr
                .selectable_fields
                .iter()
                .map(|f| json!({"fieldPath": f}))
                .collect();
            schema["x-kubernetes-selectable-fields"] = json!(fields);
            if let Some(Value::Object(list)) = definitions.get_mut(&format!("{name}List")) {
                list.insert("x-kubernetes-selectable-fields".into(), json!(fields));
            }
        }
        definitions.insert(name, schema);
    }
}
