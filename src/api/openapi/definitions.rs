//! OpenAPI definitions generated from the k8s-openapi types (whose schemars
//! impls carry upstream's definition names, e.g. `io.k8s.api.core.v1.Pod`),
//! decorated with what the published Kubernetes documents add: the
//! group-version-kind of top-level kinds and the list/patch metadata of
//! `listmeta`. Generated definitions use v2-style references
//! (`#/definitions/<name>`); `to_v2` and `to_v3` adapt them per document.

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::listmeta;

pub const V2_REF_PREFIX: &str = "#/definitions/";
pub const V3_REF_PREFIX: &str = "#/components/schemas/";

pub const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// One table maps (group, version, kind) to its k8s-openapi type.
macro_rules! kinds {
    ($( $group:literal, $version:literal, $kind:literal => $ty:ty; )*) => {
        /// Every (group, version, kind) whose schema comes from k8s-openapi.
        pub const BUILTIN_KINDS: &[(&str, &str, &str)] = &[$(($group, $version, $kind)),*];

        /// Adds the schema of a built-in kind to the generator and returns
        /// its definition name; None for kinds without a k8s-openapi type.
        pub fn add_builtin(generator: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
            match (group, version, kind) {
                $(($group, $version, $kind) => {
                    generator.subschema_for::<$ty>();
                    Some(<$ty as JsonSchema>::schema_name().into_owned())
                })*
                _ => None,
            }
        }
    };
}

kinds! {
    "", "v1", "Pod" => api::core::v1::Pod;
    "", "v1", "Service" => api::core::v1::Service;
    "", "v1", "Endpoints" => api::core::v1::Endpoints;
    "", "v1", "ConfigMap" => api::core::v1::ConfigMap;
    "", "v1", "Secret" => api::core::v1::Secret;
    "", "v1", "ServiceAccount" => api::core::v1::ServiceAccount;
    "", "v1", "Event" => api::core::v1::Event;
    "", "v1", "Node" => api::core::v1::Node;
    "", "v1", "Namespace" => api::core::v1::Namespace;
    "", "v1", "PersistentVolume" => api::core::v1::PersistentVolume;
    "", "v1", "PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim;
    "", "v1", "LimitRange" => api::core::v1::LimitRange;
    "", "v1", "ResourceQuota" => api::core::v1::ResourceQuota;
    "", "v1", "ReplicationController" => api::core::v1::ReplicationController;
    "", "v1", "PodTemplate" => api::core::v1::PodTemplate;
    "", "v1", "Binding" => api::core::v1::Binding;
    "", "v1", "ComponentStatus" => api::core::v1::ComponentStatus;
    "apps", "v1", "Deployment" => api::apps::v1::Deployment;
    "apps", "v1", "ReplicaSet" => api::apps::v1::ReplicaSet;
    "apps", "v1", "StatefulSet" => api::apps::v1::StatefulSet;
    "apps", "v1", "DaemonSet" => api::apps::v1::DaemonSet;
    "apps", "v1", "ControllerRevision" => api::apps::v1::ControllerRevision;
    "batch", "v1", "Job" => api::batch::v1::Job;
    "batch", "v1", "CronJob" => api::batch::v1::CronJob;
    "autoscaling", "v1", "HorizontalPodAutoscaler" => api::autoscaling::v1::HorizontalPodAutoscaler;
    "autoscaling", "v1", "Scale" => api::autoscaling::v1::Scale;
    "autoscaling", "v2", "HorizontalPodAutoscaler" => api::autoscaling::v2::HorizontalPodAutoscaler;
    "policy", "v1", "PodDisruptionBudget" => api::policy::v1::PodDisruptionBudget;
    "policy", "v1", "Eviction" => api::policy::v1::Eviction;
    "networking.k8s.io", "v1", "Ingress" => api::networking::v1::Ingress;
    "networking.k8s.io", "v1", "IngressClass" => api::networking::v1::IngressClass;
    "networking.k8s.io", "v1", "NetworkPolicy" => api::networking::v1::NetworkPolicy;
    "networking.k8s.io", "v1", "IPAddress" => api::networking::v1::IPAddress;
    "networking.k8s.io", "v1", "ServiceCIDR" => api::networking::v1::ServiceCIDR;
    "discovery.k8s.io", "v1", "EndpointSlice" => api::discovery::v1::EndpointSlice;
    "coordination.k8s.io", "v1", "Lease" => api::coordination::v1::Lease;
    "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding" => api::rbac::v1::ClusterRoleBinding;
    "rbac.authorization.k8s.io", "v1", "ClusterRole" => api::rbac::v1::ClusterRole;
    "rbac.authorization.k8s.io", "v1", "RoleBinding" => api::rbac::v1::RoleBinding;
    "rbac.authorization.k8s.io", "v1", "Role" => api::rbac::v1::Role;
    "storage.k8s.io", "v1", "StorageClass" => api::storage::v1::StorageClass;
    "storage.k8s.io", "v1", "CSIDriver" => api::storage::v1::CSIDriver;
    "storage.k8s.io", "v1", "CSINode" => api::storage::v1::CSINode;
    "storage.k8s.io", "v1", "CSIStorageCapacity" => api::storage::v1::CSIStorageCapacity;
    "storage.k8s.io", "v1", "VolumeAttachment" => api::storage::v1::VolumeAttachment;
    "scheduling.k8s.io", "v1", "PriorityClass" => api::scheduling::v1::PriorityClass;
    "node.k8s.io", "v1", "RuntimeClass" => api::node::v1::RuntimeClass;
    "events.k8s.io", "v1", "Event" => api::events::v1::Event;
    "certificates.k8s.io", "v1", "CertificateSigningRequest" => api::certificates::v1::CertificateSigningRequest;
    "admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration" => api::admissionregistration::v1::MutatingWebhookConfiguration;
    "admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration" => api::admissionregistration::v1::ValidatingWebhookConfiguration;
    "admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy" => api::admissionregistration::v1::ValidatingAdmissionPolicy;
    "admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding" => api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
    "apiextensions.k8s.io", "v1", "CustomResourceDefinition" => apiextensions::CustomResourceDefinition;
    "authentication.k8s.io", "v1", "TokenRequest" => api::authentication::v1::TokenRequest;
}

/// Whether (group, version, kind) has a k8s-openapi type.
pub fn is_builtin(group: &str, version: &str, kind: &str) -> bool {
    BUILTIN_KINDS
        .iter()
        .any(|&(g, v, k)| (g, v, k) == (group, version, kind))
}

/// A kind placed in a set of definitions.
#[derive(Debug, Clone)]
pub struct KindSchema {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Definition of the object, e.g. `io.k8s.api.core.v1.Pod`.
    pub definition: String,
    /// Definition of its list, e.g. `io.k8s.api.core.v1.PodList`.
    pub list_definition: String,
    /// Whether the schema comes from k8s-openapi (built-in kinds support
    /// strategic-merge patch; others do not).
    pub builtin: bool,
}

/// Definitions generated for a set of kinds.
pub struct Generated {
    /// Definition name -> schema, with `#/definitions/` references.
    pub definitions: Map<String, Value>,
    pub kinds: Vec<KindSchema>,
}

fn generator() -> SchemaGenerator {
    // No transforms: we keep descriptions next to `$ref`s (v2 publishes them
    // there; v3 wraps the reference in allOf).
    SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "/definitions".into();
            s.meta_schema = None;
            s.transforms.clear();
        })
        .into_generator()
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// The definition-name prefix upstream uses for a custom group: the group's
/// labels reversed (`stable.example.com` -> `com.example.stable`).
fn custom_prefix(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

/// Generates the definitions of `kinds` (each (group, version, kind)) and of
/// the meta types the operations reference. Kinds without a k8s-openapi type
/// (custom resources) get a schema that accepts any content.
pub fn generate(kinds: &[(&str, &str, &str)]) -> Generated {
    let mut generator = generator();
    meta_types(&mut generator);
    let mut placed = Vec::new();
    let mut custom = Vec::new();
    for &(group, version, kind) in kinds {
        if placed.iter().any(|k: &KindSchema| {
            (k.group.as_str(), k.version.as_str(), k.kind.as_str()) == (group, version, kind)
        }) {
            continue;
        }
        let (definition, builtin) = match add_builtin(&mut generator, group, version, kind) {
            Some(name) => (name, true),
            None => {
                let name = format!("{}.{version}.{kind}", custom_prefix(group));
                custom.push(name.clone());
                (name, false)
            }
        };
        placed.push(KindSchema {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            list_definition: format!("{definition}List"),
            definition,
            builtin,
        });
    }
    let mut definitions = generator.take_definitions(false);
    for name in custom {
        definitions.insert(name, custom_schema());
    }
    for k in &placed {
        if !definitions.contains_key(&k.list_definition) {
            definitions.insert(
                k.list_definition.clone(),
                list_schema(&k.kind, &k.definition),
            );
        }
    }
    decorate(&mut definitions, &placed);
    Generated {
        definitions,
        kinds: placed,
    }
}

/// The meta types operations refer to.
fn meta_types(generator: &mut SchemaGenerator) {
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::APIResourceList>();
    generator.subschema_for::<meta::WatchEvent<()>>();
}

/// A custom resource without a published schema: any content is kept.
fn custom_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"description": "APIVersion of the object's schema.", "type": "string"},
            "kind": {"description": "Kind of the object.", "type": "string"},
            "metadata": {"$ref": format!("{V2_REF_PREFIX}{OBJECT_META}"), "description": "Standard object's metadata."},
        },
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn list_schema(kind: &str, definition: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {"description": "APIVersion of the list's schema.", "type": "string"},
            "items": {
                "description": format!("The {kind} objects of the list."),
                "type": "array",
                "items": {"$ref": format!("{V2_REF_PREFIX}{definition}")},
            },
            "kind": {"description": "Kind of the list.", "type": "string"},
            "metadata": {
                "$ref": format!("{V2_REF_PREFIX}{LIST_META}"),
                "description": "Standard list metadata: resourceVersion and continue token.",
            },
        },
        "required": ["items"],
    })
}

/// Adds group-version-kinds, list/patch metadata and atomic-struct markers.
fn decorate(definitions: &mut Map<String, Value>, kinds: &[KindSchema]) {
    let mut gvks: Vec<(String, Value)> = Vec::new();
    let mut push = |def: &str, v: Value| match gvks.iter_mut().find(|(d, _)| d == def) {
        Some((_, Value::Array(list))) => {
            if !list.contains(&v) {
                list.push(v)
            }
        }
        _ => gvks.push((def.to_string(), Value::Array(vec![v]))),
    };
    for k in kinds {
        push(&k.definition, gvk(&k.group, &k.version, &k.kind));
        push(
            &k.list_definition,
            gvk(&k.group, &k.version, &format!("{}List", k.kind)),
        );
    }
    // The meta types are served in every group-version, as upstream declares.
    push(STATUS, gvk("", "v1", "Status"));
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    for k in kinds {
        if !gvs.contains(&(k.group.as_str(), k.version.as_str())) {
            gvs.push((&k.group, &k.version));
        }
    }
    for (g, v) in gvs {
        push(DELETE_OPTIONS, gvk(g, v, "DeleteOptions"));
        push(WATCH_EVENT, gvk(g, v, "WatchEvent"));
    }
    push(API_RESOURCE_LIST, gvk("", "v1", "APIResourceList"));
    for (def, list) in gvks {
        if let Some(Value::Object(schema)) = definitions.get_mut(&def) {
            schema.insert("x-kubernetes-group-version-kind".into(), list);
        }
    }
    // k8s-openapi requires `metadata` on top-level kinds (its Rust field is
    // not optional); upstream does not, and explain shows the difference.
    for k in kinds {
        if let Some(Value::Object(schema)) = definitions.get_mut(&k.definition) {
            let now_empty = match schema.get_mut("required") {
                Some(Value::Array(req)) => {
                    req.retain(|f| f != "metadata");
                    req.is_empty()
                }
                _ => false,
            };
            if now_empty {
                schema.remove("required");
            }
        }
    }

    for (name, schema) in definitions.iter_mut() {
        let Value::Object(schema) = schema else {
            continue;
        };
        if listmeta::is_atomic_struct(name) {
            schema.insert("x-kubernetes-map-type".into(), "atomic".into());
        }
        let Some(Value::Object(props)) = schema.get_mut("properties") else {
            continue;
        };
        for m in listmeta::fields_of(name) {
            let Some(Value::Object(field)) = props.get_mut(m.field) else {
                continue;
            };
            if !m.list_type.is_empty() {
                field.insert("x-kubernetes-list-type".into(), m.list_type.into());
            }
            if !m.list_map_keys.is_empty() {
                field.insert(
                    "x-kubernetes-list-map-keys".into(),
                    m.list_map_keys.iter().map(|k| Value::from(*k)).collect(),
                );
            }
            if !m.map_type.is_empty() {
                field.insert("x-kubernetes-map-type".into(), m.map_type.into());
            }
            if !m.patch_merge_key.is_empty() {
                field.insert(
                    "x-kubernetes-patch-merge-key".into(),
                    m.patch_merge_key.into(),
                );
            }
            if !m.patch_strategy.is_empty() {
                field.insert(
                    "x-kubernetes-patch-strategy".into(),
                    m.patch_strategy.into(),
                );
            }
        }
    }
}

/// Applies `f` to every schema object nested in `schema` (itself included),
/// children first. Only schema positions are visited, never the keys of a
/// `properties` map (JSONSchemaProps has properties named like extensions).
pub fn walk_schemas(schema: &mut Value, f: &mut dyn FnMut(&mut Map<String, Value>)) {
    let Value::Object(obj) = schema else { return };
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for p in props.values_mut() {
            walk_schemas(p, f);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(s) = obj.get_mut(key) {
            match s {
                Value::Array(list) => list.iter_mut().for_each(|s| walk_schemas(s, f)),
                s => walk_schemas(s, f),
            }
        }
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            list.iter_mut().for_each(|s| walk_schemas(s, f));
        }
    }
    f(obj);
}

fn description_of(schema: &Value) -> Value {
    schema.get("description").cloned().unwrap_or(Value::Null)
}

fn with_description(mut v: Value, description: Value) -> Value {
    if let (Value::Object(o), Value::String(_)) = (&mut v, &description) {
        o.insert("description".into(), description);
    }
    v
}

/// Swagger 2.0 form, as kubectl's v2 parser requires: no oneOf/anyOf, no
/// `type` next to a `$ref`, and upstream's shapes for IntOrString/Quantity.
pub fn to_v2(mut definitions: Map<String, Value>) -> Map<String, Value> {
    if let Some(s) = definitions.get_mut(INT_OR_STRING) {
        *s = with_description(
            json!({"type": "string", "format": "int-or-string"}),
            description_of(s),
        );
    }
    if let Some(s) = definitions.get_mut(QUANTITY) {
        *s = with_description(json!({"type": "string"}), description_of(s));
    }
    for schema in definitions.values_mut() {
        walk_schemas(schema, &mut |obj| {
            obj.remove("oneOf");
            obj.remove("anyOf");
            if obj.contains_key("$ref") {
                obj.remove("type");
            }
        });
    }
    definitions
}

/// OpenAPI 3.0 form: `#/components/schemas/` references, references with
/// siblings wrapped in allOf (as upstream publishes them; kubectl explain
/// prints both the field's and the type's description), and upstream's
/// oneOf shapes for IntOrString/Quantity.
pub fn to_v3(mut definitions: Map<String, Value>) -> Map<String, Value> {
    if let Some(s) = definitions.get_mut(INT_OR_STRING) {
        *s = with_description(
            json!({"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]}),
            description_of(s),
        );
    }
    if let Some(s) = definitions.get_mut(QUANTITY) {
        *s = with_description(
            json!({"oneOf": [{"type": "string"}, {"type": "number"}]}),
            description_of(s),
        );
    }
    for schema in definitions.values_mut() {
        walk_schemas(schema, &mut v3_schema);
    }
    definitions
}

fn v3_schema(obj: &mut Map<String, Value>) {
    let Some(Value::String(r)) = obj.get_mut("$ref") else {
        return;
    };
    if let Some(name) = r.strip_prefix(V2_REF_PREFIX) {
        *r = format!("{V3_REF_PREFIX}{name}");
    }
    if obj.len() > 1
        && let Some(r) = obj.remove("$ref")
    {
        obj.insert("allOf".into(), json!([{"$ref": r}]));
    }
}

/// Names of the definitions `roots` reach through `$ref`s (v2 or v3 style).
pub fn reachable(
    definitions: &Map<String, Value>,
    roots: impl IntoIterator<Item = String>,
) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = definitions.get(&name) {
            collect_refs(schema, &mut todo);
        }
    }
    seen
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        let name = r
                            .strip_prefix(V2_REF_PREFIX)
                            .or_else(|| r.strip_prefix(V3_REF_PREFIX))
                            .unwrap_or(r);
                        out.push(name.to_string());
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_follow_upstream() {
        let g = generate(&[("", "v1", "Pod"), ("apps", "v1", "Deployment")]);
        assert_eq!(g.kinds[0].definition, "io.k8s.api.core.v1.Pod");
        assert_eq!(g.kinds[1].definition, "io.k8s.api.apps.v1.Deployment");
        for name in [
            "io.k8s.api.core.v1.PodSpec",
            "io.k8s.api.core.v1.PodList",
            OBJECT_META,
            INT_OR_STRING,
            STATUS,
            PATCH,
        ] {
            assert!(g.definitions.contains_key(name), "{name}");
        }
        let pod = &g.definitions["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        assert!(
            pod.get("required").is_none(),
            "metadata is optional upstream"
        );
        assert_eq!(
            pod["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.PodSpec"
        );
        let containers = &g.definitions["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    }

    #[test]
    fn every_catalogue_kind_is_builtin() {
        for d in crate::registry::catalogue::builtin() {
            assert!(
                is_builtin(&d.group, &d.version, &d.kind),
                "{} {} {}",
                d.group,
                d.version,
                d.kind
            );
        }
    }

    #[test]
    fn custom_kinds_accept_anything() {
        let g = generate(&[("stable.example.com", "v1", "CronTab")]);
        assert_eq!(g.kinds[0].definition, "com.example.stable.v1.CronTab");
        assert!(!g.kinds[0].builtin);
        assert_eq!(
            g.definitions["com.example.stable.v1.CronTab"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
    }

    #[test]
    fn v3_wraps_refs_with_siblings() {
        let g = generate(&[("", "v1", "Pod")]);
        let v3 = to_v3(g.definitions);
        let spec = &v3["io.k8s.api.core.v1.Pod"]["properties"]["spec"];
        assert_eq!(
            spec["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}])
        );
        assert!(spec["description"].is_string());
        let items = &v3["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["items"];
        assert_eq!(
            items["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Container"
        );
        assert_eq!(v3[INT_OR_STRING]["format"], "int-or-string");
    }
}
