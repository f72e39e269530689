//! The shape of an object as server-side apply sees it: which maps are
//! structs or granular maps, which lists are atomic, sets or maps keyed by
//! which fields, which values are atomic. Compiled once from the OpenAPI
//! definitions (built-in kinds: the k8s-openapi schemas decorated with the
//! `listmeta` table; custom resources: their `openAPIV3Schema`), both
//! spelling list and map types as `x-kubernetes-*` extensions.
//!
//! Anything the schema does not describe is "deduced" as upstream does for
//! untyped content: objects are granular maps, lists are atomic.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::api::openapi::definitions::{self, BUILTIN_KINDS, OBJECT_META, V2_REF_PREFIX};

pub type TypeId = u32;

/// How a list's items are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole, owned as one field.
    Atomic,
    /// Scalar items, each owned on its own (`v:<value>`).
    Set,
    /// Object items keyed by these fields (`k:{...}`).
    Map(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Field {
    pub ty: TypeId,
    /// Present (as an empty struct or null list) in the Go zero value of its
    /// parent, so a create never "adds" it: its own path is not recorded.
    pub zero_present: bool,
    /// The schema's default: stands in for a list-map key an item omits.
    pub default: Option<Value>,
}

#[derive(Debug, Clone)]
pub enum Type {
    /// A scalar or anything replaced as a whole.
    Atomic,
    /// A struct: these fields; other keys are deduced.
    Struct(HashMap<Box<str>, Field>),
    /// A map whose values all have one type.
    Map(TypeId),
    List {
        list_type: ListType,
        items: TypeId,
    },
    /// Shape decided by the value.
    Deduced,
}

/// A set of compiled types with named roots.
#[derive(Debug, Default)]
pub struct Schema {
    types: Vec<Type>,
    roots: HashMap<String, TypeId>,
}

/// One root of a schema: the type of a whole object.
#[derive(Clone, Copy)]
pub struct Root<'a> {
    pub schema: &'a Schema,
    pub id: TypeId,
}

impl Schema {
    pub fn get(&self, id: TypeId) -> &Type {
        self.types.get(id as usize).unwrap_or(&Type::Deduced)
    }

    pub fn root(&self, name: &str) -> Option<Root<'_>> {
        self.roots.get(name).map(|&id| Root { schema: self, id })
    }

    /// Compiles a custom resource's `openAPIV3Schema` (as a CRD version
    /// carries it) into a schema with the single root `""`. Lists without
    /// `x-kubernetes-list-type` are atomic, as upstream.
    pub fn from_openapi_v3(schema: &Value) -> Schema {
        let empty = Map::new();
        let mut c = Compiler {
            defs: &empty,
            types: Vec::new(),
            by_name: HashMap::new(),
            roots: &[],
        };
        let id = c.child(schema, None);
        let mut roots = HashMap::new();
        roots.insert(String::new(), id);
        Schema {
            types: c.types,
            roots,
        }
    }

    /// The deduced schema: for kinds nothing describes.
    pub fn deduced() -> &'static Schema {
        static DEDUCED: OnceLock<Schema> = OnceLock::new();
        DEDUCED.get_or_init(|| {
            let mut roots = HashMap::new();
            roots.insert(String::new(), 0);
            Schema {
                types: vec![Type::Deduced],
                roots,
            }
        })
    }
}

/// The built-in kinds' schemas, roots named `group/version/Kind`.
pub fn builtin() -> &'static Schema {
    static BUILTIN: OnceLock<Schema> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let generated = definitions::generate(BUILTIN_KINDS);
        let root_defs: Vec<String> = generated
            .kinds
            .iter()
            .map(|k| k.definition.clone())
            .collect();
        let mut c = Compiler {
            defs: &generated.definitions,
            types: Vec::new(),
            by_name: HashMap::new(),
            roots: &root_defs,
        };
        let mut roots = HashMap::new();
        for k in &generated.kinds {
            let id = c.definition(&k.definition);
            roots.insert(format!("{}/{}/{}", k.group, k.version, k.kind), id);
        }
        Schema {
            types: c.types,
            roots,
        }
    })
}

/// Builds the built-in schemas now rather than on the first write.
pub fn warm() {
    builtin();
}

/// The root type of a built-in kind, if it has a schema.
pub fn builtin_root(group: &str, version: &str, kind: &str) -> Option<Root<'static>> {
    builtin().root(&format!("{group}/{version}/{kind}"))
}

/// Non-pointer struct (and non-omitempty list) fields of the Go types: they
/// exist in a zero-valued object, so creating an object does not "add" them.
const ZERO_PRESENT: &[(&str, &str)] = &[
    ("io.k8s.api.apps.v1.DaemonSetSpec", "template"),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy"),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy"),
    ("io.k8s.api.apps.v1.DeploymentSpec", "template"),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", "template"),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "template"),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "updateStrategy"),
    ("io.k8s.api.batch.v1.CronJobSpec", "jobTemplate"),
    ("io.k8s.api.batch.v1.JobSpec", "template"),
    ("io.k8s.api.batch.v1.JobTemplateSpec", "spec"),
    ("io.k8s.api.core.v1.Container", "resources"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "resources"),
    ("io.k8s.api.core.v1.PodSpec", "containers"),
    ("io.k8s.api.core.v1.PodTemplate", "template"),
    ("io.k8s.api.core.v1.PodTemplateSpec", "spec"),
];

struct Compiler<'a> {
    defs: &'a Map<String, Value>,
    types: Vec<Type>,
    by_name: HashMap<String, TypeId>,
    /// Definitions of top-level kinds: their spec and status are zero-present.
    roots: &'a [String],
}

fn ref_name(s: &Map<String, Value>) -> Option<&str> {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return r.strip_prefix(V2_REF_PREFIX);
    }
    // v3 style: allOf with one reference.
    match s.get("allOf") {
        Some(Value::Array(all)) if all.len() == 1 => all[0]
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(V2_REF_PREFIX)),
        _ => None,
    }
}

impl Compiler<'_> {
    fn push(&mut self, t: Type) -> TypeId {
        self.types.push(t);
        (self.types.len() - 1) as TypeId
    }

    fn definition(&mut self, name: &str) -> TypeId {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        // Reserve the slot first: definitions may refer to themselves.
        let id = self.push(Type::Deduced);
        self.by_name.insert(name.to_string(), id);
        let t = match self.defs.get(name) {
            Some(Value::Object(s)) => self.shape(s, Some(name)),
            _ => Type::Deduced,
        };
        self.types[id as usize] = t;
        id
    }

    fn child(&mut self, schema: &Value, definition: Option<&str>) -> TypeId {
        let Value::Object(s) = schema else {
            return self.push(Type::Deduced);
        };
        if s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
            return self.push(Type::Atomic);
        }
        if let Some(name) = ref_name(s) {
            return self.definition(name);
        }
        let t = self.shape(s, definition);
        self.push(t)
    }

    fn shape(&mut self, s: &Map<String, Value>, definition: Option<&str>) -> Type {
        if s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            || s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        {
            return Type::Atomic;
        }
        let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        match s.get("type").and_then(Value::as_str) {
            Some("array") => {
                let items = match s.get("items") {
                    Some(i @ Value::Object(_)) => self.child(i, None),
                    _ => self.push(Type::Deduced),
                };
                Type::List {
                    list_type: list_type(s),
                    items,
                }
            }
            Some("object") | None => {
                if let Some(Value::Object(props)) = s.get("properties") {
                    let mut fields = HashMap::with_capacity(props.len());
                    for (k, v) in props {
                        let ty = self.child(v, None);
                        let zero_present = self.zero_present(definition, k, v);
                        let default = self.default(definition, k, v);
                        fields.insert(
                            k.as_str().into(),
                            Field {
                                ty,
                                zero_present,
                                default,
                            },
                        );
                    }
                    Type::Struct(fields)
                } else if let Some(ap @ Value::Object(_)) = s.get("additionalProperties") {
                    Type::Map(self.child(ap, None))
                } else if preserve || s.get("type").is_some() {
                    Type::Deduced
                } else {
                    // No type at all: a free-form value.
                    Type::Deduced
                }
            }
            Some(_) => Type::Atomic,
        }
    }

    /// A field's default. The built-in definitions carry none, but upstream's
    /// do for `protocol` (TCP), the one defaulted list-map key of the
    /// built-in kinds (container, service and endpoint ports).
    fn default(&self, definition: Option<&str>, field: &str, schema: &Value) -> Option<Value> {
        if let Some(d) = schema.get("default") {
            return Some(d.clone());
        }
        (definition.is_some() && field == "protocol").then(|| Value::from("TCP"))
    }

    fn zero_present(&self, definition: Option<&str>, field: &str, schema: &Value) -> bool {
        let Some(def) = definition else {
            return false;
        };
        if field == "metadata"
            && schema
                .as_object()
                .and_then(ref_name)
                .is_some_and(|r| r == OBJECT_META)
        {
            return true;
        }
        if (field == "spec" || field == "status") && self.roots.iter().any(|r| r == def) {
            return true;
        }
        ZERO_PRESENT.contains(&(def, field))
    }
}

/// A list field's type from its extensions; without `x-kubernetes-list-type`
/// a strategic-merge key makes a map and a bare `merge` strategy a set, as
/// upstream's schema conversion does; otherwise the list is atomic.
fn list_type(s: &Map<String, Value>) -> ListType {
    let keys = || -> Vec<String> {
        s.get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => ListType::Map(keys()),
        Some("set") => ListType::Set,
        Some(_) => ListType::Atomic,
        None => {
            let strategy = s
                .get("x-kubernetes-patch-strategy")
                .and_then(Value::as_str)
                .unwrap_or("");
            let key = s
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !strategy.split(',').any(|x| x == "merge") {
                ListType::Atomic
            } else if key.is_empty() {
                ListType::Set
            } else {
                ListType::Map(vec![key.to_string()])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field<'a>(s: &'a Schema, id: TypeId, name: &str) -> &'a Field {
        match s.get(id) {
            Type::Struct(f) => &f[name],
            other => panic!("not a struct: {other:?}"),
        }
    }

    #[test]
    fn builtin_shapes() {
        let s = builtin();
        let dep = builtin_root("apps", "v1", "Deployment").unwrap().id;
        let spec = field(s, dep, "spec");
        assert!(spec.zero_present);
        let tmpl = field(s, spec.ty, "template");
        assert!(tmpl.zero_present);
        let pod_spec = field(s, tmpl.ty, "spec").ty;
        let containers = field(s, pod_spec, "containers");
        assert!(containers.zero_present);
        match s.get(containers.ty) {
            Type::List { list_type, items } => {
                assert_eq!(*list_type, ListType::Map(vec!["name".into()]));
                let ports = field(s, *items, "ports");
                assert!(matches!(
                    s.get(ports.ty),
                    Type::List { list_type: ListType::Map(k), .. } if k == &["containerPort", "protocol"]
                ));
                assert!(matches!(
                    s.get(field(s, *items, "args").ty),
                    Type::List {
                        list_type: ListType::Atomic,
                        ..
                    }
                ));
                assert!(!field(s, *items, "securityContext").zero_present);
            }
            other => panic!("{other:?}"),
        }
        // LabelSelector is an atomic struct; labels a granular map; finalizers a set.
        assert!(matches!(
            s.get(field(s, spec.ty, "selector").ty),
            Type::Atomic
        ));
        let meta = field(s, dep, "metadata").ty;
        assert!(matches!(s.get(field(s, meta, "labels").ty), Type::Map(_)));
        assert!(matches!(
            s.get(field(s, meta, "finalizers").ty),
            Type::List {
                list_type: ListType::Set,
                ..
            }
        ));
        // nodeSelector is an atomic map.
        assert!(matches!(
            s.get(field(s, pod_spec, "nodeSelector").ty),
            Type::Atomic
        ));
    }

    #[test]
    fn custom_resource_schemas() {
        let s = Schema::from_openapi_v3(&json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "hosts": {"type": "array", "items": {"type": "string"}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"],
                              "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                }},
            },
        }));
        let root = s.root("").unwrap().id;
        let spec = field(&s, root, "spec").ty;
        assert!(matches!(
            s.get(field(&s, spec, "hosts").ty),
            Type::List {
                list_type: ListType::Atomic,
                ..
            }
        ));
        assert!(matches!(
            s.get(field(&s, spec, "tags").ty),
            Type::List {
                list_type: ListType::Set,
                ..
            }
        ));
        assert!(
            matches!(s.get(field(&s, spec, "ports").ty), Type::List { list_type: ListType::Map(k), .. } if k == &["port"])
        );
        assert!(matches!(s.get(field(&s, spec, "free").ty), Type::Deduced));
    }
}
