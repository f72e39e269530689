//! The message table build.rs generates from the k8s-pb (field numbers) and
//! k8s-openapi (JSON names) sources: every Kubernetes protobuf message, its
//! fields sorted by tag.

/// One protobuf message.
#[derive(Debug)]
pub struct Message {
    /// k8s-pb module path, dotted: `api.core.v1`, `apimachinery.pkg.apis.meta.v1`.
    pub module: &'static str,
    /// The type name as upstream spells it where k8s-openapi knows the type
    /// (`CSIDriverSpec`), else prost's spelling (`CsiDriverSpec`).
    pub name: &'static str,
    /// Sorted by tag.
    pub fields: &'static [Field],
}

/// One field of a message.
#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    /// The JSON property name (unused for `Shape::Inline`).
    pub json: &'static str,
    /// The element type (map value type for maps).
    pub ty: Ty,
    pub shape: Shape,
    /// Listed as required in the OpenAPI definition: Go encodes such fields
    /// (no `omitempty`) even when they hold a zero value.
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// Index into `MESSAGES`.
    Message(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Repeated,
    /// `map<string, ty>`.
    Map,
    /// A Go struct embedded with `json:",inline"`: its properties belong to
    /// the enclosing object.
    Inline,
}

include!(concat!(env!("OUT_DIR"), "/protobuf_messages.rs"));

impl Message {
    pub fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }
}

/// The message for an object of `api_version`/`kind`: the module of the
/// group (k8s-pb's Resource impls, else the group's first label under
/// `api.`) at the version; meta types (DeleteOptions, Status, ...) are
/// registered in every group version upstream, so they are the fallback.
pub fn message_for(api_version: &str, kind: &str) -> Option<&'static Message> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let prefix = match GROUPS.iter().find(|(g, _)| *g == group) {
        Some((_, m)) => (*m).to_string(),
        None if group.is_empty() => "api.core".to_string(),
        None => format!("api.{}", group.split('.').next().unwrap_or(group)),
    };
    let module = format!("{prefix}.{version}");
    // prost changed acronym case (CSIDriver -> CsiDriver); names differ in
    // case only, so compare without it.
    let find = |module: &str| {
        MESSAGES
            .iter()
            .find(|m| m.module == module && m.name.eq_ignore_ascii_case(kind))
    };
    find(&module).or_else(|| find(META_V1))
}

pub const META_V1: &str = "apimachinery.pkg.apis.meta.v1";
