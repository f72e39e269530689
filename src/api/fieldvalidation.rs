//! Strict field validation: unknown and duplicate fields, as upstream reports them.
//!
//! Upstream decodes request bodies with a strict JSON decoder that records, in
//! document order, every field the Go type lacks (`unknown field
//! "spec.containers[0].foo"`) and every key given twice (`duplicate field
//! "metadata.name"`); paths join keys with `.` and list indexes as `[i]`. We
//! walk the body against the kind's schema instead: the k8s-openapi schemas,
//! compiled once into a compact tree (no descriptions), so a check costs a
//! hash lookup per key.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::api::openapi::definitions::{self, BUILTIN_KINDS, V2_REF_PREFIX};
use crate::registry::ResourceDef;

/// Upstream stops collecting strict errors after this many.
const MAX_ERRORS: usize = 100;

/// One strict-decoding problem.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StrictError {
    /// A field the schema does not have, e.g. `spec.containers[0].foo`.
    Unknown(String),
    /// A key given twice in one object, e.g. `metadata.name`.
    Duplicate(String),
}

impl fmt::Display for StrictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrictError::Unknown(p) => write!(f, "unknown field \"{p}\""),
            StrictError::Duplicate(p) => write!(f, "duplicate field \"{p}\""),
        }
    }
}

/// `strict decoding error: unknown field "a", duplicate field "b"`, the text
/// upstream puts after `<Kind> in version "<v>" cannot be handled as a <Kind>: `.
pub fn strict_decoding_message(errors: &[StrictError]) -> String {
    let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    format!("strict decoding error: {}", list.join(", "))
}

type NodeId = u32;

/// What a position of an object accepts, as far as field names go.
#[derive(Debug)]
enum Node {
    /// Anything, unchecked: free-form JSON, RawExtension, FieldsV1,
    /// x-kubernetes-preserve-unknown-fields.
    Any,
    /// A scalar (including IntOrString and Quantity): nothing to descend into.
    Scalar,
    /// A struct: these fields only.
    Object(HashMap<Box<str>, NodeId>),
    /// A map with values of one schema.
    Map(NodeId),
    Array(NodeId),
    /// One of several shapes (JSONSchemaPropsOrArray and friends), chosen by
    /// the JSON type of the value.
    Alt {
        object: Option<NodeId>,
        array: Option<NodeId>,
    },
}

/// Compiled schemas of the built-in kinds.
struct Schemas {
    nodes: Vec<Node>,
    /// "group/version/Kind" -> root node
    roots: HashMap<String, NodeId>,
}

fn gvk_key(group: &str, version: &str, kind: &str) -> String {
    format!("{group}/{version}/{kind}")
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let generated = definitions::generate(BUILTIN_KINDS);
        let mut c = Compiler {
            defs: &generated.definitions,
            nodes: Vec::new(),
            by_name: HashMap::new(),
        };
        let mut roots = HashMap::new();
        for k in &generated.kinds {
            let id = c.definition(&k.definition);
            roots.insert(gvk_key(&k.group, &k.version, &k.kind), id);
        }
        Schemas {
            nodes: c.nodes,
            roots,
        }
    })
}

/// Builds the schemas now rather than on the first write (they take a few
/// tens of milliseconds).
pub fn warm() {
    schemas();
}

struct Compiler<'a> {
    defs: &'a Map<String, Value>,
    nodes: Vec<Node>,
    by_name: HashMap<String, NodeId>,
}

impl Compiler<'_> {
    fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        (self.nodes.len() - 1) as NodeId
    }

    fn definition(&mut self, name: &str) -> NodeId {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        // Reserve the slot first: definitions may refer to themselves.
        let id = self.push(Node::Any);
        self.by_name.insert(name.to_string(), id);
        let node = match self.defs.get(name) {
            Some(schema) => self.node(schema),
            None => Node::Any,
        };
        self.nodes[id as usize] = node;
        id
    }

    fn child(&mut self, schema: &Value) -> NodeId {
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(V2_REF_PREFIX))
        {
            return self.definition(name);
        }
        let n = self.node(schema);
        self.push(n)
    }

    fn node(&mut self, schema: &Value) -> Node {
        let Value::Object(s) = schema else {
            return Node::Any;
        };
        if let Some(name) = s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(V2_REF_PREFIX))
        {
            let id = self.definition(name);
            return Node::Alt {
                object: Some(id),
                array: Some(id),
            };
        }
        if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            return Node::Any;
        }
        if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return Node::Scalar;
        }
        if let Some(Value::Array(alts)) = s.get("oneOf").or_else(|| s.get("anyOf")) {
            let (mut object, mut array) = (None, None);
            for a in alts {
                let id = self.child(a);
                match &self.nodes[id as usize] {
                    Node::Array(_) => array = array.or(Some(id)),
                    Node::Scalar => {}
                    _ => object = object.or(Some(id)),
                }
            }
            return Node::Alt { object, array };
        }
        if let Some(Value::Array(all)) = s.get("allOf") {
            if let [one] = all.as_slice() {
                return self.node(one);
            }
            return Node::Any;
        }
        match s.get("type").and_then(Value::as_str) {
            Some("array") => match s.get("items") {
                Some(items @ Value::Object(_)) => Node::Array(self.child(items)),
                _ => Node::Array(self.push(Node::Any)),
            },
            Some("object") | None => {
                if let Some(Value::Object(props)) = s.get("properties") {
                    let mut fields = HashMap::with_capacity(props.len());
                    for (k, v) in props {
                        let id = self.child(v);
                        fields.insert(k.as_str().into(), id);
                    }
                    Node::Object(fields)
                } else if let Some(ap @ Value::Object(_)) = s.get("additionalProperties") {
                    Node::Map(self.child(ap))
                } else {
                    Node::Any
                }
            }
            Some(_) => Node::Scalar,
        }
    }
}

/// Resolves `Alt` nodes (and `$ref` indirections) for a value of a given shape.
fn resolve(nodes: &[Node], mut id: NodeId, is_array: bool) -> Option<&Node> {
    // Bounded: an Alt chain cannot be longer than the node count.
    for _ in 0..nodes.len() {
        match &nodes[id as usize] {
            Node::Alt { object, array } => id = if is_array { (*array)? } else { (*object)? },
            n => return Some(n),
        }
    }
    None
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn push_index(path: &mut String, i: usize) {
    use std::fmt::Write;
    let _ = write!(path, "[{i}]");
}

fn root_of(group: &str, version: &str, kind: &str) -> Option<(&'static Schemas, NodeId)> {
    let s = schemas();
    s.roots
        .get(&gvk_key(group, version, kind))
        .map(|&id| (s, id))
}

/// Whether (group, version, kind) has a built-in schema to validate against.
pub fn has_schema(group: &str, version: &str, kind: &str) -> bool {
    root_of(group, version, kind).is_some()
}

/// Unknown fields of `obj` against the resource's schema, as paths in
/// upstream's form (`spec.containers[0].foo`). Keys of an object come in
/// `serde_json::Map` order (sorted), so use `strict_errors` on the raw body
/// for upstream's document order. Kinds without a built-in schema (custom
/// resources) report nothing.
pub fn unknown_fields(def: &ResourceDef, obj: &Value) -> Vec<String> {
    // Custom resources: what their structural schema would prune.
    if let Some(cr) = def.strategy.custom_resource() {
        return cr.unknown_fields(obj);
    }
    unknown_fields_of_kind(&def.group, &def.version, &def.kind, obj)
}

/// `unknown_fields` for a body of another kind than the resource's own
/// (subresources: `autoscaling/v1` Scale, `policy/v1` Eviction, Binding).
pub fn unknown_fields_of_kind(group: &str, version: &str, kind: &str, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((s, root)) = root_of(group, version, kind) {
        let mut path = String::new();
        walk_value(&s.nodes, root, obj, 0, &mut path, &mut out);
    }
    out
}

/// Deeper values are not looked into (parsed JSON cannot be deeper anyway;
/// this bounds the recursion for values built otherwise).
const MAX_DEPTH: usize = 256;

fn walk_value(
    nodes: &[Node],
    id: NodeId,
    v: &Value,
    depth: usize,
    path: &mut String,
    out: &mut Vec<String>,
) {
    if out.len() >= MAX_ERRORS || depth > MAX_DEPTH {
        return;
    }
    let Some(node) = resolve(nodes, id, v.is_array()) else {
        return;
    };
    match (node, v) {
        (Node::Object(fields), Value::Object(m)) => {
            for (k, child) in m {
                let len = path.len();
                push_key(path, k);
                match fields.get(k.as_str()) {
                    Some(&cid) => walk_value(nodes, cid, child, depth + 1, path, out),
                    None if out.len() < MAX_ERRORS => out.push(path.clone()),
                    None => {}
                }
                path.truncate(len);
            }
        }
        (Node::Map(cid), Value::Object(m)) => {
            for (k, child) in m {
                let len = path.len();
                push_key(path, k);
                walk_value(nodes, *cid, child, depth + 1, path, out);
                path.truncate(len);
            }
        }
        (Node::Array(cid), Value::Array(items)) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                push_index(path, i);
                walk_value(nodes, *cid, child, depth + 1, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Duplicate object keys in a raw JSON document, as paths
/// (`metadata.name`), in document order.
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    let mut st = State::default();
    walk_raw(raw, None, &mut st);
    st.errors
        .into_iter()
        .filter_map(|e| match e {
            StrictError::Duplicate(p) => Some(p),
            StrictError::Unknown(_) => None,
        })
        .collect()
}

/// Unknown and duplicate fields of a raw JSON body in one pass, in document
/// order, deduplicated and capped at 100, as upstream's strict decoder
/// reports them. Inside free-form values (RawExtension and the like) nothing
/// is reported, as upstream keeps those as raw bytes. Malformed JSON yields
/// what was found before the error (the caller rejects the body anyway).
pub fn strict_errors(def: &ResourceDef, raw: &[u8]) -> Vec<StrictError> {
    let mut errors = strict_errors_of_kind(&def.group, &def.version, &def.kind, raw);
    // Custom resources: duplicates first, then what their schema would
    // prune, as upstream's CRD decoder reports them.
    if let Some(cr) = def.strategy.custom_resource()
        && let Ok(obj) = serde_json::from_slice::<Value>(raw)
    {
        errors.extend(
            cr.unknown_fields(&obj)
                .into_iter()
                .map(StrictError::Unknown),
        );
    }
    errors
}

/// `strict_errors` for a body of another kind than the resource's own.
pub fn strict_errors_of_kind(
    group: &str,
    version: &str,
    kind: &str,
    raw: &[u8],
) -> Vec<StrictError> {
    let mut st = State::default();
    match root_of(group, version, kind) {
        Some((s, root)) => walk_raw(raw, Some((&s.nodes, root)), &mut st),
        // No schema: duplicates can still be found.
        None => walk_raw(raw, None, &mut st),
    }
    st.errors
}

#[derive(Default)]
struct State {
    path: String,
    errors: Vec<StrictError>,
    seen: HashSet<StrictError>,
}

impl State {
    fn record(&mut self, e: StrictError) {
        if self.errors.len() < MAX_ERRORS && self.seen.insert(e.clone()) {
            self.errors.push(e);
        }
    }
}

fn walk_raw(raw: &[u8], schema: Option<(&[Node], NodeId)>, st: &mut State) {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let _ = Walk { schema, st }.deserialize(&mut de);
}

/// Walks one JSON value. `schema` None means "no schema here": only
/// duplicates are looked for.
struct Walk<'s, 'n> {
    schema: Option<(&'n [Node], NodeId)>,
    st: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A key, borrowed from the input when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// The keys of one object seen so far; a list while small.
#[derive(Default)]
struct SeenKeys<'de> {
    list: Vec<Cow<'de, str>>,
    set: HashSet<Cow<'de, str>>,
}

impl<'de> SeenKeys<'de> {
    /// Whether `k` was seen before (and remembers it).
    // A Cow, not &str: a borrowed key is remembered without copying it.
    #[allow(clippy::ptr_arg)]
    fn repeat(&mut self, k: &Cow<'de, str>) -> bool {
        if self.set.is_empty() {
            if self.list.iter().any(|x| x == k) {
                return true;
            }
            self.list.push(k.clone());
            if self.list.len() > 16 {
                self.set.extend(self.list.drain(..));
            }
            false
        } else {
            !self.set.insert(k.clone())
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let child = match self.schema {
            None => Some(None),
            Some((nodes, id)) => match resolve(nodes, id, true) {
                Some(Node::Array(c)) => Some(Some((nodes, *c))),
                _ => None,
            },
        };
        let Some(child) = child else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut i = 0;
        loop {
            let len = self.st.path.len();
            push_index(&mut self.st.path, i);
            let more = seq.next_element_seed(Walk {
                schema: child,
                st: &mut *self.st,
            })?;
            self.st.path.truncate(len);
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        enum Shape<'n> {
            Unchecked,
            Fields(&'n HashMap<Box<str>, NodeId>, &'n [Node]),
            Values(&'n [Node], NodeId),
        }
        let shape = match self.schema {
            None => Shape::Unchecked,
            Some((nodes, id)) => match resolve(nodes, id, false) {
                Some(Node::Object(fields)) => Shape::Fields(fields, nodes),
                Some(Node::Map(c)) => Shape::Values(nodes, *c),
                // Free-form or mistyped: upstream does not look inside.
                _ => {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    return Ok(());
                }
            },
        };
        let mut seen = SeenKeys::default();
        while let Some(key) = map.next_key_seed(Key)? {
            let len = self.st.path.len();
            push_key(&mut self.st.path, &key);
            if seen.repeat(&key) {
                let p = self.st.path.clone();
                self.st.record(StrictError::Duplicate(p));
            }
            let child = match &shape {
                Shape::Unchecked => Some(None),
                Shape::Fields(fields, nodes) => {
                    fields.get(key.as_ref()).map(|&c| Some((*nodes, c)))
                }
                Shape::Values(nodes, c) => Some(Some((*nodes, *c))),
            };
            match child {
                Some(schema) => map.next_value_seed(Walk {
                    schema,
                    st: &mut *self.st,
                })?,
                None => {
                    let p = self.st.path.clone();
                    self.st.record(StrictError::Unknown(p));
                    map.next_value::<IgnoredAny>()?;
                }
            }
            self.st.path.truncate(len);
        }
        Ok(())
    }
}

/// Parse a JSON body into a Value, noting whether any object repeats a key
/// (serde_json silently keeps the last). Warn-mode validation needs to know
/// about duplicates on every write; noting them during the one parse a write
/// needs anyway spares a second pass over the body. The rare body that has
/// duplicates is walked again by `duplicate_fields` for their paths.
pub fn parse_noting_duplicates(raw: &[u8]) -> Result<(Value, bool), serde_json::Error> {
    let mut duplicate = false;
    let mut de = serde_json::Deserializer::from_slice(raw);
    let v = NoteDuplicates(&mut duplicate).deserialize(&mut de)?;
    de.end()?;
    Ok((v, duplicate))
}

struct NoteDuplicates<'a>(&'a mut bool);

impl<'de> DeserializeSeed<'de> for NoteDuplicates<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoteDuplicates<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(e) = seq.next_element_seed(NoteDuplicates(&mut *self.0))? {
            out.push(e);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(NoteDuplicates(&mut *self.0))?;
            if out.insert(k, v).is_some() {
                *self.0 = true;
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests;

/// Remove the fields the schema does not know, as decoding into the typed
/// object does upstream under fieldValidation=Warn or Ignore. Returns their
/// paths (for Warning headers).
pub fn prune_unknown(def: &ResourceDef, obj: &mut Value) -> Vec<String> {
    let paths = unknown_fields(def, obj);
    for p in &paths {
        remove_path(obj, p);
    }
    paths
}

/// Remove `a.b[2].c` from `v`; a path that does not resolve is left alone.
fn remove_path(v: &mut Value, path: &str) {
    let mut steps: Vec<Result<String, usize>> = Vec::new();
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            steps.push(Ok(key.to_string()));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            match idx.trim_end_matches(']').parse::<usize>() {
                Ok(i) => steps.push(Err(i)),
                Err(_) => return,
            }
        }
    }
    let Some((last, parents)) = steps.split_last() else {
        return;
    };
    let mut cur = v;
    for s in parents {
        let next = match s {
            Ok(k) => cur.get_mut(k.as_str()),
            Err(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (Ok(k), Some(m)) = (last, cur.as_object_mut()) {
        m.remove(k.as_str());
    }
}

#[cfg(test)]
mod prune_tests {
    use super::remove_path;
    use serde_json::json;

    #[test]
    fn removes_nested_paths_only() {
        let mut v = json!({"spec": {"containers": [{"name": "a", "imagee": "x"}, {"name": "b"}]}, "foo": 1});
        remove_path(&mut v, "spec.containers[0].imagee");
        remove_path(&mut v, "foo");
        remove_path(&mut v, "spec.nothing[3].x");
        assert_eq!(
            v,
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}})
        );
    }
}
