//! The Swagger 2.0 document in gnostic's protobuf encoding (`openapi.v2.Document`
//! of github.com/google/gnostic-models), the only form client-go's
//! `OpenAPISchema()` understands: it requests
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and
//! unmarshals the body as that message whatever the server answers.
//!
//! Only the parts our documents use are encoded. Vendor extensions and
//! free-form values (`default`, `enum`, `example`) travel as `Any.yaml`
//! strings; JSON text is valid YAML, so they are written as JSON.

use serde_json::{Map, Value};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn tag(buf: &mut Vec<u8>, field: u32, wire: u8) {
    varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    tag(buf, field, LEN);
    varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// A string field; proto3 omits empty strings.
fn string(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes_field(buf, field, s.as_bytes());
    }
}

/// An embedded message, always written (presence matters for oneofs).
fn message(buf: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    bytes_field(buf, field, &inner);
}

fn boolean(buf: &mut Vec<u8>, field: u32, v: Option<&Value>) {
    if let Some(true) = v.and_then(Value::as_bool) {
        tag(buf, field, VARINT);
        varint(buf, 1);
    }
}

fn int64(buf: &mut Vec<u8>, field: u32, v: Option<&Value>) {
    if let Some(n) = v.and_then(Value::as_i64).filter(|n| *n != 0) {
        tag(buf, field, VARINT);
        varint(buf, n as u64);
    }
}

fn double(buf: &mut Vec<u8>, field: u32, v: Option<&Value>) {
    if let Some(n) = v.and_then(Value::as_f64).filter(|n| *n != 0.0) {
        tag(buf, field, FIXED64);
        buf.extend_from_slice(&n.to_le_bytes());
    }
}

fn str_of<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

fn strings(buf: &mut Vec<u8>, field: u32, v: Option<&Value>) {
    if let Some(Value::Array(list)) = v {
        for s in list.iter().filter_map(Value::as_str) {
            bytes_field(buf, field, s.as_bytes());
        }
    }
}

/// `Any { yaml = 2 }`.
fn any(buf: &mut Vec<u8>, field: u32, v: &Value) {
    let text = serde_json::to_string(v).unwrap_or_default();
    message(buf, field, |b| string(b, 2, &text));
}

/// `repeated NamedAny vendor_extension` from the object's `x-` keys.
fn extensions(buf: &mut Vec<u8>, field: u32, obj: &Map<String, Value>) {
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        message(buf, field, |b| {
            string(b, 1, k);
            any(b, 2, v);
        });
    }
}

/// Encodes a Swagger 2.0 document (as produced by `super::v2`).
pub fn encode_document(doc: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    let Value::Object(doc) = doc else { return buf };
    string(&mut buf, 1, str_of(doc, "swagger"));
    if let Some(Value::Object(info)) = doc.get("info") {
        message(&mut buf, 2, |b| {
            string(b, 1, str_of(info, "title"));
            string(b, 2, str_of(info, "version"));
            string(b, 3, str_of(info, "description"));
        });
    }
    strings(&mut buf, 5, doc.get("schemes"));
    strings(&mut buf, 6, doc.get("consumes"));
    strings(&mut buf, 7, doc.get("produces"));
    message(&mut buf, 8, |b| {
        if let Some(Value::Object(paths)) = doc.get("paths") {
            for (path, item) in paths {
                message(b, 2, |b| {
                    string(b, 1, path);
                    message(b, 2, |b| path_item(b, item));
                });
            }
        }
    });
    message(&mut buf, 9, |b| {
        if let Some(Value::Object(defs)) = doc.get("definitions") {
            for (name, schema_v) in defs {
                message(b, 1, |b| {
                    string(b, 1, name);
                    message(b, 2, |b| schema(b, schema_v));
                });
            }
        }
    });
    if let Some(Value::Array(reqs)) = doc.get("security") {
        for req in reqs.iter().filter_map(Value::as_object) {
            message(&mut buf, 12, |b| {
                for (name, scopes) in req {
                    message(b, 1, |b| {
                        string(b, 1, name);
                        message(b, 2, |b| strings(b, 1, Some(scopes)));
                    });
                }
            });
        }
    }
    if let Some(Value::Object(defs)) = doc.get("securityDefinitions") {
        message(&mut buf, 13, |b| {
            for (name, d) in defs
                .iter()
                .filter_map(|(n, d)| d.as_object().map(|d| (n, d)))
            {
                message(b, 1, |b| {
                    string(b, 1, name);
                    // Only apiKey schemes are published (`api_key_security = 2`).
                    message(b, 2, |b| {
                        message(b, 2, |b| {
                            string(b, 1, str_of(d, "type"));
                            string(b, 2, str_of(d, "name"));
                            string(b, 3, str_of(d, "in"));
                            string(b, 4, str_of(d, "description"));
                        })
                    });
                });
            }
        });
    }
    buf
}

fn path_item(buf: &mut Vec<u8>, item: &Value) {
    let Value::Object(item) = item else { return };
    for (method, field) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        if let Some(op) = item.get(method) {
            message(buf, field, |b| operation(b, op));
        }
    }
    if let Some(Value::Array(params)) = item.get("parameters") {
        for p in params {
            message(buf, 9, |b| parameter(b, p));
        }
    }
    extensions(buf, 10, item);
}

fn operation(buf: &mut Vec<u8>, op: &Value) {
    let Value::Object(op) = op else { return };
    strings(buf, 1, op.get("tags"));
    string(buf, 2, str_of(op, "summary"));
    string(buf, 3, str_of(op, "description"));
    string(buf, 5, str_of(op, "operationId"));
    strings(buf, 6, op.get("produces"));
    strings(buf, 7, op.get("consumes"));
    if let Some(Value::Array(params)) = op.get("parameters") {
        for p in params {
            message(buf, 8, |b| parameter(b, p));
        }
    }
    if let Some(Value::Object(responses)) = op.get("responses") {
        message(buf, 9, |b| {
            for (code, r) in responses {
                let Value::Object(r) = r else { continue };
                message(b, 1, |b| {
                    string(b, 1, code);
                    // ResponseValue { response = 1 }
                    message(b, 2, |b| {
                        message(b, 1, |b| {
                            string(b, 1, str_of(r, "description"));
                            if let Some(s) = r.get("schema") {
                                // SchemaItem { schema = 1 }
                                message(b, 2, |b| message(b, 1, |b| schema(b, s)));
                            }
                        })
                    });
                });
            }
        });
    }
    strings(buf, 10, op.get("schemes"));
    boolean(buf, 11, op.get("deprecated"));
    extensions(buf, 13, op);
}

/// `ParametersItem { parameter = 1 | json_reference = 2 }`.
fn parameter(buf: &mut Vec<u8>, p: &Value) {
    let Value::Object(p) = p else { return };
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        message(buf, 2, |b| string(b, 1, r));
        return;
    }
    message(buf, 1, |b| {
        let location = str_of(p, "in");
        if location == "body" {
            message(b, 1, |b| {
                string(b, 1, str_of(p, "description"));
                string(b, 2, str_of(p, "name"));
                string(b, 3, location);
                boolean(b, 4, p.get("required"));
                if let Some(s) = p.get("schema") {
                    message(b, 5, |b| schema(b, s));
                }
                extensions(b, 6, p);
            });
            return;
        }
        // NonBodyParameter: header = 1, formData = 2, query = 3, path = 4.
        // Query and formData number their fields alike, as do header and path
        // (which lack allow_empty_value).
        let (which, with_allow_empty) = match location {
            "header" => (1, false),
            "formData" => (2, true),
            "query" => (3, true),
            _ => (4, false),
        };
        message(b, 2, |b| {
            message(b, which, |b| {
                let o: u32 = if with_allow_empty { 1 } else { 0 };
                boolean(b, 1, p.get("required"));
                string(b, 2, location);
                string(b, 3, str_of(p, "description"));
                string(b, 4, str_of(p, "name"));
                if with_allow_empty {
                    boolean(b, 5, p.get("allowEmptyValue"));
                }
                string(b, 5 + o, str_of(p, "type"));
                string(b, 6 + o, str_of(p, "format"));
                string(b, 8 + o, str_of(p, "collectionFormat"));
                if let Some(d) = p.get("default") {
                    any(b, 9 + o, d);
                }
                boolean(b, 19 + o, p.get("uniqueItems"));
                if let Some(Value::Array(e)) = p.get("enum") {
                    e.iter().for_each(|v| any(b, 20 + o, v));
                }
                extensions(b, 22 + o, p);
            })
        });
    });
}

fn schema(buf: &mut Vec<u8>, s: &Value) {
    let Value::Object(s) = s else { return };
    string(buf, 1, str_of(s, "$ref"));
    string(buf, 2, str_of(s, "format"));
    string(buf, 3, str_of(s, "title"));
    string(buf, 4, str_of(s, "description"));
    if let Some(d) = s.get("default") {
        any(buf, 5, d);
    }
    double(buf, 6, s.get("multipleOf"));
    double(buf, 7, s.get("maximum"));
    boolean(buf, 8, s.get("exclusiveMaximum"));
    double(buf, 9, s.get("minimum"));
    boolean(buf, 10, s.get("exclusiveMinimum"));
    int64(buf, 11, s.get("maxLength"));
    int64(buf, 12, s.get("minLength"));
    string(buf, 13, str_of(s, "pattern"));
    int64(buf, 14, s.get("maxItems"));
    int64(buf, 15, s.get("minItems"));
    boolean(buf, 16, s.get("uniqueItems"));
    int64(buf, 17, s.get("maxProperties"));
    int64(buf, 18, s.get("minProperties"));
    strings(buf, 19, s.get("required"));
    if let Some(Value::Array(e)) = s.get("enum") {
        e.iter().for_each(|v| any(buf, 20, v));
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let b = *b;
            message(buf, 21, |m| {
                tag(m, 2, VARINT);
                varint(m, u64::from(b));
            })
        }
        Some(a @ Value::Object(_)) => message(buf, 21, |m| message(m, 1, |m| schema(m, a))),
        _ => {}
    }
    match s.get("type") {
        Some(Value::String(t)) => message(buf, 22, |m| string(m, 1, t)),
        Some(t @ Value::Array(_)) => message(buf, 22, |m| strings(m, 1, Some(t))),
        _ => {}
    }
    match s.get("items") {
        Some(Value::Array(list)) => message(buf, 23, |m| {
            list.iter().for_each(|i| message(m, 1, |m| schema(m, i)))
        }),
        Some(i @ Value::Object(_)) => message(buf, 23, |m| message(m, 1, |m| schema(m, i))),
        _ => {}
    }
    if let Some(Value::Array(list)) = s.get("allOf") {
        list.iter().for_each(|i| message(buf, 24, |m| schema(m, i)));
    }
    if let Some(Value::Object(props)) = s.get("properties") {
        message(buf, 25, |m| {
            for (name, p) in props {
                message(m, 1, |m| {
                    string(m, 1, name);
                    message(m, 2, |m| schema(m, p));
                });
            }
        });
    }
    string(buf, 26, str_of(s, "discriminator"));
    boolean(buf, 27, s.get("readOnly"));
    if let Some(e) = s.get("example") {
        any(buf, 30, e);
    }
    extensions(buf, 31, s);
}
