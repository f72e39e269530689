//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`):
//! kubectl 1.32+ sends typed creates and updates this way.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope
//! (typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2, contentEncoding = 3,
//! contentType = 4) whose `raw` is the object's message. We turn it into
//! the JSON a JSON client would have sent for the same object, so the rest
//! of the server only ever sees JSON.
//!
//! How: build.rs generates a table of every message in the k8s-pb crate
//! (kube-rs's prost bindings of all Kubernetes protos; field numbers and
//! types) with JSON names taken from k8s-openapi (`schema`). A generic walker
//! reads the wire format (`wire`) against that table. This covers every
//! built-in kind without per-kind code and without reflection support in
//! prost; k8s-pb itself is only needed as source at build time (and in
//! tests, as the encoder).
//!
//! Go's marshaller writes every non-pointer scalar even when zero, a JSON
//! client omits zeros of `omitempty` fields: zeros are dropped unless the
//! field is a pointer (`pointers`) or required (no `omitempty`).

mod pointers;
mod schema;
mod special;
mod wire;

use base64::Engine as _;
use serde_json::{Map, Number, Value};
use thiserror::Error;

use schema::{Field, MESSAGES, META_V1, Message, Shape, Ty};
use wire::{Reader, WireError, WireValue};

/// The prefix of every Kubernetes protobuf payload.
pub const MAGIC: &[u8] = b"k8s\x00";

/// Nesting limit for messages (CRD schemas nest deepest); protects the stack.
const MAX_DEPTH: u32 = 128;

/// Decode a protobuf-encoded object (the `k8s\0` envelope around a
/// runtime.Unknown) into its JSON form, with apiVersion and kind set.
pub fn decode_object(raw: &[u8]) -> std::result::Result<Value, String> {
    Decoder { depth: 0 }
        .envelope(raw)
        .map_err(|e| e.to_string())
}

#[derive(Debug, Error)]
enum DecodeError {
    #[error("the body does not start with the Kubernetes protobuf prefix")]
    Magic,
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("{0}: {1}")]
    InField(String, Box<DecodeError>),
    #[error("the object has no kind")]
    NoKind,
    #[error("no protobuf message is known for {0}, Kind={1}")]
    UnknownKind(String, String),
    #[error("content encoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error("wire type {0:?} does not match the field's type")]
    WireType(wire::WireType),
    #[error("string is not valid UTF-8")]
    Utf8,
    #[error("{0} is not a valid JSON number")]
    Number(f64),
    #[error("time out of range")]
    Time,
    #[error("embedded JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("an embedded object is not a JSON object")]
    NotObject,
    #[error("messages nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("message table index {0} out of range")]
    Table(usize),
}

type Result<T> = std::result::Result<T, DecodeError>;

fn in_field(name: &str) -> impl FnOnce(DecodeError) -> DecodeError + '_ {
    move |e| DecodeError::InField(name.to_string(), Box::new(e))
}

fn message_at(i: usize) -> Result<&'static Message> {
    MESSAGES.get(i).ok_or(DecodeError::Table(i))
}

fn len_bytes(value: WireValue<'_>) -> Result<&[u8]> {
    match value {
        WireValue::Len(b) => Ok(b),
        other => Err(DecodeError::WireType(other.wire_type())),
    }
}

fn utf8(b: &[u8]) -> Result<String> {
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| DecodeError::Utf8)
}

/// A JSON number as Go's encoder writes a float64: integral values without
/// a fraction.
fn float(f: f64) -> Result<Value> {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or(DecodeError::Number(f))
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn module_is(msg: &Message, module: &str, name: &str) -> bool {
    msg.module == module && msg.name.eq_ignore_ascii_case(name)
}

fn is_apiextensions(msg: &Message, name: &str) -> bool {
    msg.module
        .starts_with("apiextensions_apiserver.pkg.apis.apiextensions.")
        && msg.name.eq_ignore_ascii_case(name)
}

fn take_field(msg: &Message, obj: &mut Map<String, Value>, tag: u32) -> Option<Value> {
    msg.field(tag).and_then(|f| obj.remove(f.json))
}

/// The scalar fields of a small message, by tag (for the special types).
fn scalars(bytes: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while let Some(f) = r.field()? {
        out.push(f);
    }
    Ok(out)
}

fn varint_of(fields: &[(u32, WireValue<'_>)], tag: u32) -> Result<i64> {
    match fields.iter().rev().find(|(t, _)| *t == tag) {
        None => Ok(0),
        Some((_, WireValue::Varint(v))) => Ok(*v as i64),
        Some((_, other)) => Err(DecodeError::WireType(other.wire_type())),
    }
}

fn bytes_of<'a>(fields: &[(u32, WireValue<'a>)], tag: u32) -> Result<&'a [u8]> {
    match fields.iter().rev().find(|(t, _)| *t == tag) {
        None => Ok(&[]),
        Some((_, v)) => len_bytes(*v),
    }
}

struct Decoder {
    depth: u32,
}

impl Decoder {
    /// `k8s\0` + runtime.Unknown -> the object with apiVersion and kind.
    fn envelope(&mut self, raw: &[u8]) -> Result<Value> {
        let body = raw.strip_prefix(MAGIC).ok_or(DecodeError::Magic)?;
        let unknown = scalars(body)?;
        let type_meta = scalars(bytes_of(&unknown, 1)?)?;
        let api_version = utf8(bytes_of(&type_meta, 1)?)?;
        let kind = utf8(bytes_of(&type_meta, 2)?)?;
        let encoding = utf8(bytes_of(&unknown, 3)?)?;
        if !encoding.is_empty() {
            return Err(DecodeError::ContentEncoding(encoding));
        }
        if kind.is_empty() {
            return Err(DecodeError::NoKind);
        }
        let msg = schema::message_for(&api_version, &kind)
            .ok_or_else(|| DecodeError::UnknownKind(api_version.clone(), kind.clone()))?;
        let Value::Object(mut obj) = self.message(msg, bytes_of(&unknown, 2)?)? else {
            return Err(DecodeError::NotObject);
        };
        if !api_version.is_empty() {
            obj.insert("apiVersion".into(), Value::String(api_version));
        }
        obj.insert("kind".into(), Value::String(kind));
        Ok(Value::Object(obj))
    }

    /// One message as JSON.
    fn message(&mut self, msg: &'static Message, bytes: &[u8]) -> Result<Value> {
        if self.depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        self.depth += 1;
        let out = self.message_inner(msg, bytes);
        self.depth -= 1;
        out
    }

    fn message_inner(&mut self, msg: &'static Message, bytes: &[u8]) -> Result<Value> {
        if let Some(v) = self.special(msg, bytes)? {
            return Ok(v);
        }
        let mut obj = Map::new();
        self.fields_into(msg, bytes, &mut obj)?;
        Ok(self.reshape(msg, obj))
    }

    /// Types whose JSON is not an object of their fields.
    fn special(&mut self, msg: &Message, bytes: &[u8]) -> Result<Option<Value>> {
        let v = if module_is(msg, META_V1, "Time") || module_is(msg, META_V1, "MicroTime") {
            // A zero time is marshalled as no bytes; JSON says null.
            if bytes.is_empty() {
                return Ok(Some(Value::Null));
            }
            let f = scalars(bytes)?;
            let (seconds, nanos) = (varint_of(&f, 1)?, i64::from(varint_of(&f, 2)? as i32));
            let s = if msg.name.eq_ignore_ascii_case("Time") {
                special::rfc3339(seconds, nanos)
            } else {
                special::rfc3339_micro(seconds, nanos)
            };
            Value::String(s.ok_or(DecodeError::Time)?)
        } else if module_is(msg, META_V1, "Duration") {
            Value::String(special::go_duration(varint_of(&scalars(bytes)?, 1)?))
        } else if module_is(msg, "apimachinery.pkg.api.resource", "Quantity") {
            let s = utf8(bytes_of(&scalars(bytes)?, 1)?)?;
            Value::String(if s.is_empty() { "0".into() } else { s })
        } else if module_is(msg, "apimachinery.pkg.util.intstr", "IntOrString") {
            let f = scalars(bytes)?;
            if varint_of(&f, 1)? == 1 {
                Value::String(utf8(bytes_of(&f, 3)?)?)
            } else {
                Value::from(varint_of(&f, 2)? as i32)
            }
        } else if module_is(msg, "apimachinery.pkg.runtime", "RawExtension")
            || module_is(msg, META_V1, "FieldsV1")
            || is_apiextensions(msg, "JSON")
        {
            self.embedded(bytes_of(&scalars(bytes)?, 1)?)?
        } else {
            return Ok(None);
        };
        Ok(Some(v))
    }

    /// Raw bytes holding JSON, or a nested protobuf object.
    fn embedded(&mut self, raw: &[u8]) -> Result<Value> {
        if raw.is_empty() {
            Ok(Value::Null)
        } else if raw.starts_with(MAGIC) {
            self.envelope(raw)
        } else {
            Ok(serde_json::from_slice(raw)?)
        }
    }

    /// Types whose JSON is one of their fields: string lists wrapped in a
    /// message (ExtraValue, Verbs) and the apiextensions schema unions.
    fn reshape(&self, msg: &Message, mut obj: Map<String, Value>) -> Value {
        let mut take = |tag: u32| take_field(msg, &mut obj, tag);
        let wrapper = matches!(msg.fields, [f] if f.tag == 1 && f.json == "items"
            && f.ty == Ty::String && f.shape == Shape::Repeated);
        if wrapper {
            take(1).unwrap_or_else(|| Value::Array(Vec::new()))
        } else if is_apiextensions(msg, "JSONSchemaPropsOrArray") {
            // schema, else the list of schemas
            take(1).or_else(|| take(2)).unwrap_or(Value::Null)
        } else if is_apiextensions(msg, "JSONSchemaPropsOrBool") {
            // schema, else the boolean
            match take(2) {
                Some(schema) => schema,
                None => take(1).unwrap_or(Value::Bool(false)),
            }
        } else if is_apiextensions(msg, "JSONSchemaPropsOrStringArray") {
            // the string list, else schema
            match take(2) {
                Some(list) => list,
                None => take(1).unwrap_or(Value::Null),
            }
        } else {
            Value::Object(obj)
        }
    }

    /// Adds the fields of `msg` found in `bytes` to `obj`.
    fn fields_into(
        &mut self,
        msg: &'static Message,
        bytes: &[u8],
        obj: &mut Map<String, Value>,
    ) -> Result<()> {
        let mut r = Reader::new(bytes);
        while let Some((tag, value)) = r.field()? {
            // Fields we do not know (a newer client) are dropped, as upstream
            // drops them.
            let Some(field) = msg.field(tag) else {
                continue;
            };
            self.field(msg, field, value, obj)
                .map_err(in_field(field.json))?;
        }
        Ok(())
    }

    fn field(
        &mut self,
        msg: &'static Message,
        field: &'static Field,
        value: WireValue<'_>,
        obj: &mut Map<String, Value>,
    ) -> Result<()> {
        match field.shape {
            Shape::Single => {
                let v = self.value(field.ty, value)?;
                // A message on the wire is kept whatever its JSON (`{}`,
                // `null`, `false` for JSONSchemaPropsOrBool, `0`): Go's JSON
                // encoder does not drop structs either.
                let keep = matches!(field.ty, Ty::Message(_))
                    || !is_zero(&v)
                    || field.required
                    || pointers::is_pointer(msg.name, field.json);
                if keep {
                    obj.insert(field.json.into(), v);
                } else {
                    obj.remove(field.json);
                }
            }
            Shape::Inline => {
                let Ty::Message(i) = field.ty else {
                    return Err(DecodeError::WireType(value.wire_type()));
                };
                let sub = message_at(i)?;
                if self.depth >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                self.depth += 1;
                let out = self.fields_into(sub, len_bytes(value)?, obj);
                self.depth -= 1;
                out?;
            }
            Shape::Repeated => {
                let mut items = Vec::new();
                match (field.ty, value) {
                    // Packed numbers: several values in one length-delimited run.
                    (Ty::Bool | Ty::Int32 | Ty::Int64 | Ty::Double, WireValue::Len(b)) => {
                        let mut r = Reader::new(b);
                        while !r.is_empty() {
                            let v = if field.ty == Ty::Double {
                                WireValue::Fixed64(r.fixed64()?)
                            } else {
                                WireValue::Varint(r.varint()?)
                            };
                            items.push(self.value(field.ty, v)?);
                        }
                    }
                    _ => items.push(self.value(field.ty, value)?),
                }
                let entry = obj
                    .entry(field.json)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.extend(items);
                } else {
                    *entry = Value::Array(items);
                }
            }
            Shape::Map => {
                // Each entry is a message {key = 1, value = 2}.
                let entry = scalars(len_bytes(value)?)?;
                let key = utf8(bytes_of(&entry, 1)?)?;
                let v = match entry.iter().rev().find(|(t, _)| *t == 2) {
                    Some((_, v)) => self.value(field.ty, *v)?,
                    None => self.default_value(field.ty)?,
                };
                let map = obj
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, v);
                } else {
                    *map = Value::Object(Map::from_iter([(key, v)]));
                }
            }
        }
        Ok(())
    }

    /// A value of type `ty` from one wire occurrence.
    fn value(&mut self, ty: Ty, value: WireValue<'_>) -> Result<Value> {
        Ok(match (ty, value) {
            (Ty::String, WireValue::Len(b)) => Value::String(utf8(b)?),
            (Ty::Bytes, WireValue::Len(b)) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (Ty::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
            // Go truncates, as for any int32 on the wire.
            (Ty::Int32, WireValue::Varint(v)) => Value::from(v as i32),
            (Ty::Int64, WireValue::Varint(v)) => Value::from(v as i64),
            (Ty::Double, WireValue::Fixed64(v)) => float(f64::from_bits(v))?,
            (Ty::Message(i), WireValue::Len(b)) => self.message(message_at(i)?, b)?,
            (_, other) => return Err(DecodeError::WireType(other.wire_type())),
        })
    }

    /// A map value left out of its entry: the type's zero.
    fn default_value(&mut self, ty: Ty) -> Result<Value> {
        Ok(match ty {
            Ty::String | Ty::Bytes => Value::String(String::new()),
            Ty::Bool => Value::Bool(false),
            Ty::Int32 | Ty::Int64 | Ty::Double => Value::from(0),
            Ty::Message(i) => self.message(message_at(i)?, &[])?,
        })
    }
}

#[cfg(test)]
mod tests;
