//! Structural schemas of custom resources: an `openAPIV3Schema` compiled once
//! per CRD version, then used as upstream's apiextensions server uses its
//! structural schema: prune unknown fields, drop nulls the schema does not
//! allow, apply `default`s, and validate values with upstream's field paths
//! and messages (kube-openapi's wording, as `kubectl` shows it).
//!
//! Hand-written rather than a JSON-Schema crate: OpenAPI v3 schemas are not
//! JSON Schema (nullable, the `x-kubernetes-*` extensions), and pruning,
//! defaulting and Kubernetes-shaped errors are what matters here.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

use crate::api::status::FieldError;
use crate::registry::strategy::kinds::util::{go_repr, invalid, required, too_long, too_many};

/// One node of a structural schema.
#[derive(Debug, Default, Clone)]
pub struct Schema {
    /// `object`, `array`, `string`, `integer`, `number`, `boolean` or empty.
    pub ty: String,
    pub format: String,
    pub properties: BTreeMap<String, Schema>,
    /// additionalProperties as a schema (maps).
    pub additional: Option<Box<Schema>>,
    /// `additionalProperties: true`: any keys, kept as they are.
    pub additional_any: bool,
    pub items: Option<Box<Schema>>,
    pub required: Vec<String>,
    pub enumeration: Option<Vec<Value>>,
    pub nullable: bool,
    pub default: Option<Value>,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub pattern: Option<(String, Regex)>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub unique_items: bool,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    pub preserve_unknown: bool,
    pub int_or_string: bool,
    pub embedded: bool,
    /// x-kubernetes-list-type: atomic, set or map.
    pub list_type: String,
    pub list_map_keys: Vec<String>,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    /// Compiled x-kubernetes-validations (CEL rules).
    pub validations: Vec<std::sync::Arc<super::validations::Rule>>,
}

/// Keywords a CRD schema may not use (upstream rejects them).
const FORBIDDEN: &[&str] = &[
    "$ref",
    "$schema",
    "id",
    "definitions",
    "dependencies",
    "patternProperties",
    "additionalItems",
];

fn num(v: &Map<String, Value>, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

fn count(v: &Map<String, Value>, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

fn flag(v: &Map<String, Value>, k: &str) -> bool {
    v.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn text(v: &Map<String, Value>, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Where compiling happens: the CRD field path and whether the node is the
/// root, a value-validation branch (allOf...) or an ordinary field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Root,
    Field,
    Junctor,
}

impl Schema {
    /// Compiles `v` (an openAPIV3Schema); problems that make the CRD invalid
    /// are pushed to `errs` with paths under `path`.
    pub fn compile(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Schema {
        Self::node(v, path, Place::Root, errs)
    }

    fn node(v: &Value, path: &str, place: Place, errs: &mut Vec<FieldError>) -> Schema {
        let Value::Object(m) = v else {
            errs.push(invalid(path, v, "must be an object"));
            return Schema::default();
        };
        for k in FORBIDDEN {
            if m.contains_key(*k) {
                errs.push(FieldError::forbidden(
                    format!("{path}.{k}"),
                    format!("{k} is not supported"),
                ));
            }
        }
        let mut s = Schema {
            ty: text(m, "type"),
            format: text(m, "format"),
            nullable: flag(m, "nullable"),
            default: m.get("default").cloned(),
            minimum: num(m, "minimum"),
            exclusive_minimum: flag(m, "exclusiveMinimum"),
            maximum: num(m, "maximum"),
            exclusive_maximum: flag(m, "exclusiveMaximum"),
            multiple_of: num(m, "multipleOf"),
            min_length: count(m, "minLength"),
            max_length: count(m, "maxLength"),
            min_items: count(m, "minItems"),
            max_items: count(m, "maxItems"),
            unique_items: flag(m, "uniqueItems"),
            min_properties: count(m, "minProperties"),
            max_properties: count(m, "maxProperties"),
            preserve_unknown: flag(m, "x-kubernetes-preserve-unknown-fields"),
            int_or_string: flag(m, "x-kubernetes-int-or-string"),
            embedded: flag(m, "x-kubernetes-embedded-resource"),
            list_type: text(m, "x-kubernetes-list-type"),
            ..Schema::default()
        };
        if let Some(Value::Array(e)) = m.get("enum") {
            s.enumeration = Some(e.clone());
        }
        if let Some(Value::Array(r)) = m.get("required") {
            s.required = r
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
        }
        if let Some(Value::Array(k)) = m.get("x-kubernetes-list-map-keys") {
            s.list_map_keys = k
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
        }
        if let Some(p) = m.get("pattern").and_then(Value::as_str) {
            match Regex::new(p) {
                Ok(re) => s.pattern = Some((p.to_string(), re)),
                Err(e) => errs.push(invalid(
                    format!("{path}.pattern"),
                    &Value::String(p.to_string()),
                    format!("must be a valid regular expression, but isn't: {e}"),
                )),
            }
        }
        if !matches!(
            s.ty.as_str(),
            "" | "object" | "array" | "string" | "integer" | "number" | "boolean"
        ) {
            errs.push(FieldError::not_supported(
                format!("{path}.type"),
                &s.ty,
                &["array", "boolean", "integer", "number", "object", "string"],
            ));
        }
        // Structural: every field says its type, unless it is int-or-string
        // or keeps anything.
        match place {
            Place::Root if s.ty.is_empty() => {
                errs.push(required(
                    format!("{path}.type"),
                    "must not be empty at the root",
                ));
            }
            Place::Root if s.ty != "object" => errs.push(invalid(
                format!("{path}.type"),
                &Value::String(s.ty.clone()),
                "must be object at the root",
            )),
            Place::Field if s.ty.is_empty() && !s.int_or_string && !s.preserve_unknown => {
                errs.push(required(
                    format!("{path}.type"),
                    "must not be empty for specified object fields",
                ));
            }
            _ => {}
        }
        if s.int_or_string && !s.ty.is_empty() {
            errs.push(invalid(
                format!("{path}.type"),
                &Value::String(s.ty.clone()),
                "must be empty if x-kubernetes-int-or-string is true",
            ));
        }
        if place == Place::Junctor {
            for k in [
                "default",
                "nullable",
                "x-kubernetes-preserve-unknown-fields",
            ] {
                if m.contains_key(k) {
                    errs.push(FieldError::forbidden(
                        format!("{path}.{k}"),
                        "must be false to be structural",
                    ));
                }
            }
        }
        if let Some(Value::Object(props)) = m.get("properties") {
            for (k, p) in props {
                let child = Self::node(p, &format!("{path}.properties[{k}]"), sub(place), errs);
                s.properties.insert(k.clone(), child);
            }
        }
        match m.get("additionalProperties") {
            Some(Value::Bool(true)) => s.additional_any = true,
            Some(a @ Value::Object(_)) => {
                if !s.properties.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{path}.additionalProperties"),
                        "additionalProperties and properties are mutual exclusive",
                    ));
                }
                s.additional = Some(Box::new(Self::node(
                    a,
                    &format!("{path}.additionalProperties"),
                    sub(place),
                    errs,
                )));
            }
            _ => {}
        }
        match m.get("items") {
            Some(i @ Value::Object(_)) => {
                s.items = Some(Box::new(Self::node(
                    i,
                    &format!("{path}.items"),
                    sub(place),
                    errs,
                )));
            }
            Some(Value::Array(_)) => errs.push(FieldError::forbidden(
                format!("{path}.items"),
                "items must be a schema object and not an array",
            )),
            _ if s.ty == "array" && place != Place::Junctor => {
                errs.push(required(format!("{path}.items"), "must be specified"));
            }
            _ => {}
        }
        for (k, list) in [
            ("allOf", &mut s.all_of),
            ("anyOf", &mut s.any_of),
            ("oneOf", &mut s.one_of),
        ] {
            if let Some(Value::Array(alts)) = m.get(k) {
                for (i, a) in alts.iter().enumerate() {
                    list.push(Self::node(
                        a,
                        &format!("{path}.{k}[{i}]"),
                        Place::Junctor,
                        errs,
                    ));
                }
            }
        }
        if let Some(n) = m.get("not") {
            s.not = Some(Box::new(Self::node(
                n,
                &format!("{path}.not"),
                Place::Junctor,
                errs,
            )));
        }
        s.validations = super::validations::compile(m, &s, path, errs);
        if let Some(d) = &s.default
            && place != Place::Junctor
        {
            // A default must itself be valid and survive pruning.
            let mut pruned = d.clone();
            let unknown = s.prune(&mut pruned, false);
            if !unknown.is_empty() {
                errs.push(invalid(
                    format!("{path}.default"),
                    d,
                    format!("must not have unknown fields, got {}", unknown.join(", ")),
                ));
            } else {
                for e in s.validate(d, "") {
                    let mut e = e;
                    e.field = if e.field.is_empty() {
                        format!("{path}.default")
                    } else {
                        format!("{path}.default.{}", e.field)
                    };
                    errs.push(e);
                }
            }
        }
        s
    }

    /// Whether an object node keeps fields its properties do not name.
    fn keeps_unknown(&self) -> bool {
        self.preserve_unknown || self.additional_any
    }

    /// Removes fields the schema does not specify, returning their paths
    /// (`spec.foo`, `spec.list[0].bar`). `root` keeps apiVersion, kind and
    /// metadata, as do embedded resources.
    pub fn prune(&self, v: &mut Value, root: bool) -> Vec<String> {
        let mut out = Vec::new();
        self.prune_at(v, root, "", &mut out);
        out
    }

    fn prune_at(&self, v: &mut Value, resource: bool, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    let child_path = join(path, &k);
                    if resource && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        if k == "metadata"
                            && let Some(meta) = m.get_mut("metadata")
                            && let Some(p) = self.properties.get("metadata")
                            && !resource_is_root(path)
                        {
                            p.prune_at(meta, false, &child_path, out);
                        }
                        continue;
                    }
                    if let Some(p) = self.properties.get(&k) {
                        if let Some(c) = m.get_mut(&k) {
                            p.prune_at(c, p.embedded, &child_path, out);
                        }
                    } else if let Some(a) = &self.additional {
                        if let Some(c) = m.get_mut(&k) {
                            a.prune_at(c, a.embedded, &child_path, out);
                        }
                    } else if !self.keeps_unknown() {
                        m.remove(&k);
                        out.push(child_path);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(it) = &self.items {
                    for (i, c) in items.iter_mut().enumerate() {
                        it.prune_at(c, it.embedded, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Drops null fields the schema neither allows nor defaults (upstream
    /// removes them as decoding into a Go struct would).
    pub fn drop_nulls(&self, v: &mut Value) {
        match v {
            Value::Object(m) => {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    let child = self.properties.get(&k).or(self.additional.as_deref());
                    let Some(c) = child else { continue };
                    if m.get(&k).is_some_and(Value::is_null) {
                        if !c.nullable && c.default.is_none() {
                            m.remove(&k);
                        }
                    } else if let Some(x) = m.get_mut(&k) {
                        c.drop_nulls(x);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(it) = &self.items {
                    for x in items {
                        it.drop_nulls(x);
                    }
                }
            }
            _ => {}
        }
    }

    /// Fills in `default`s of absent fields (and of nulls where null is not
    /// allowed), top down.
    pub fn apply_defaults(&self, v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, p) in &self.properties {
                    let missing = match m.get(k) {
                        None => true,
                        Some(Value::Null) => !p.nullable,
                        Some(_) => false,
                    };
                    if missing && let Some(d) = &p.default {
                        m.insert(k.clone(), d.clone());
                    }
                    if let Some(c) = m.get_mut(k) {
                        p.apply_defaults(c);
                    }
                }
                if let Some(a) = &self.additional {
                    for (_, c) in m.iter_mut() {
                        a.apply_defaults(c);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(it) = &self.items {
                    for x in items {
                        it.apply_defaults(x);
                    }
                }
            }
            _ => {}
        }
    }

    /// Validates `v` at `path` (empty at the root). apiVersion, kind and
    /// metadata of the root are checked elsewhere.
    pub fn validate(&self, v: &Value, path: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        self.check(v, path, path.is_empty(), &mut errs);
        errs
    }

    fn check(&self, v: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
        let name = if path.is_empty() { "<root>" } else { path };
        if v.is_null() {
            if self.nullable || (self.ty.is_empty() && !self.int_or_string) {
                return;
            }
            let want = if self.int_or_string {
                "integer,string"
            } else {
                &self.ty
            };
            errs.push(type_invalid(path, v, name, want));
            return;
        }
        if self.int_or_string {
            if !(v.is_string() || is_integer(v)) {
                errs.push(type_invalid(path, v, name, "integer,string"));
                return;
            }
        } else if !self.ty.is_empty() && !type_matches(&self.ty, v) {
            errs.push(type_invalid(path, v, name, &self.ty));
            return;
        }
        if let Some(allowed) = &self.enumeration
            && !allowed.contains(v)
        {
            let list: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(s) => format!("{s:?}"),
                    other => format!("{:?}", other.to_string()),
                })
                .collect();
            errs.push(FieldError {
                reason: "FieldValueNotSupported",
                field: path.to_string(),
                message: format!(
                    "Unsupported value: {}: supported values: {}",
                    go_repr(v),
                    list.join(", ")
                ),
            });
        }
        match v {
            Value::String(s) => self.check_string(s, v, path, name, errs),
            Value::Number(_) => self.check_number(v, path, name, errs),
            Value::Array(items) => self.check_array(items, v, path, name, errs),
            Value::Object(m) => self.check_object(m, v, path, name, root, errs),
            _ => {}
        }
        for (i, a) in self.all_of.iter().enumerate() {
            let _ = i;
            a.check(v, path, false, errs);
        }
        if !self.any_of.is_empty() && !self.any_of.iter().any(|a| a.validate(v, path).is_empty()) {
            errs.push(invalid(
                path,
                v,
                format!("{name} in body must match at least one schema in anyOf"),
            ));
        }
        if !self.one_of.is_empty() {
            let n = self
                .one_of
                .iter()
                .filter(|a| a.validate(v, path).is_empty())
                .count();
            if n != 1 {
                errs.push(invalid(
                    path,
                    v,
                    format!("{name} in body must match exactly one schema in oneOf"),
                ));
            }
        }
        if let Some(n) = &self.not
            && n.validate(v, path).is_empty()
        {
            errs.push(invalid(
                path,
                v,
                format!("{name} in body should not match the schema in not"),
            ));
        }
    }

    fn check_string(&self, s: &str, v: &Value, path: &str, name: &str, errs: &mut Vec<FieldError>) {
        let chars = s.chars().count() as u64;
        if let Some(max) = self.max_length
            && chars > max
        {
            errs.push(too_long(path, max as usize));
        }
        if let Some(min) = self.min_length
            && chars < min
        {
            errs.push(invalid(
                path,
                v,
                format!("{name} in body should be at least {min} chars long"),
            ));
        }
        if let Some((p, re)) = &self.pattern
            && !re.is_match(s)
        {
            errs.push(invalid(
                path,
                v,
                format!("{name} in body should match '{p}'"),
            ));
        }
        if !self.format.is_empty() && !format_ok(&self.format, s) {
            errs.push(invalid(
                path,
                v,
                format!("{name} in body must be of type {}: {:?}", self.format, s),
            ));
        }
    }

    fn check_number(&self, v: &Value, path: &str, name: &str, errs: &mut Vec<FieldError>) {
        let Some(x) = v.as_f64() else { return };
        if let Some(min) = self.minimum {
            if self.exclusive_minimum && x <= min {
                errs.push(invalid(
                    path,
                    v,
                    format!("{name} in body should be greater than {}", fmt_num(min)),
                ));
            } else if x < min {
                errs.push(invalid(
                    path,
                    v,
                    format!(
                        "{name} in body should be greater than or equal to {}",
                        fmt_num(min)
                    ),
                ));
            }
        }
        if let Some(max) = self.maximum {
            if self.exclusive_maximum && x >= max {
                errs.push(invalid(
                    path,
                    v,
                    format!("{name} in body should be less than {}", fmt_num(max)),
                ));
            } else if x > max {
                errs.push(invalid(
                    path,
                    v,
                    format!(
                        "{name} in body should be less than or equal to {}",
                        fmt_num(max)
                    ),
                ));
            }
        }
        if let Some(m) = self.multiple_of
            && m > 0.0
            && (x / m).fract().abs() > 1e-9
        {
            errs.push(invalid(
                path,
                v,
                format!("{name} in body should be a multiple of {}", fmt_num(m)),
            ));
        }
        let range = match self.format.as_str() {
            "int32" => Some((i32::MIN as f64, i32::MAX as f64)),
            "int64" => Some((i64::MIN as f64, i64::MAX as f64)),
            _ => None,
        };
        if let Some((lo, hi)) = range
            && (x < lo || x > hi)
        {
            errs.push(invalid(
                path,
                v,
                format!(
                    "{name} in body must be of type {}: {:?}",
                    self.format,
                    v.to_string()
                ),
            ));
        }
    }

    fn check_array(
        &self,
        items: &[Value],
        v: &Value,
        path: &str,
        name: &str,
        errs: &mut Vec<FieldError>,
    ) {
        let n = items.len() as u64;
        if let Some(max) = self.max_items
            && n > max
        {
            errs.push(too_many(path, n as usize, max as usize));
        }
        if let Some(min) = self.min_items
            && n < min
        {
            errs.push(invalid(
                path,
                v,
                format!("{name} in body should have at least {min} items"),
            ));
        }
        if self.unique_items || self.list_type == "set" {
            for (i, x) in items.iter().enumerate() {
                if items[..i].contains(x) {
                    errs.push(duplicate(format!("{path}[{i}]"), go_repr(x)));
                }
            }
        }
        if self.list_type == "map" && !self.list_map_keys.is_empty() {
            let key_of = |x: &Value| -> Vec<Value> {
                self.list_map_keys
                    .iter()
                    .map(|k| x.get(k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            for (i, x) in items.iter().enumerate() {
                let k = key_of(x);
                if items[..i].iter().any(|y| key_of(y) == k) {
                    let shown: Map<String, Value> =
                        self.list_map_keys.iter().cloned().zip(k).collect();
                    errs.push(duplicate(
                        format!("{path}[{i}]"),
                        Value::Object(shown).to_string(),
                    ));
                }
            }
        }
        if let Some(it) = &self.items {
            for (i, x) in items.iter().enumerate() {
                it.check(x, &format!("{path}[{i}]"), false, errs);
            }
        }
    }

    fn check_object(
        &self,
        m: &Map<String, Value>,
        v: &Value,
        path: &str,
        name: &str,
        root: bool,
        errs: &mut Vec<FieldError>,
    ) {
        let n = m.len() as u64;
        if let Some(max) = self.max_properties
            && n > max
        {
            errs.push(invalid(
                path,
                v,
                format!("{name} in body should have at most {max} properties"),
            ));
        }
        if let Some(min) = self.min_properties
            && n < min
        {
            errs.push(invalid(
                path,
                v,
                format!("{name} in body should have at least {min} properties"),
            ));
        }
        for r in &self.required {
            if !m.contains_key(r) {
                errs.push(FieldError::required(join(path, r)));
            }
        }
        if self.embedded {
            for k in ["apiVersion", "kind"] {
                if m.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                    errs.push(FieldError::required(join(path, k)));
                }
            }
        }
        for (k, x) in m {
            if (root || self.embedded) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(p) = self.properties.get(k) {
                p.check(x, &join(path, k), false, errs);
            } else if let Some(a) = &self.additional {
                a.check(x, &join(path, k), false, errs);
            }
        }
    }

    /// The schema of a dotted path below this node (`.spec.replicas`), for
    /// printer columns and scale paths.
    pub fn at_path(&self, path: &str) -> Option<&Schema> {
        let mut cur = self;
        for part in path
            .trim_start_matches('.')
            .split('.')
            .filter(|p| !p.is_empty())
        {
            cur = cur.properties.get(part).or(cur.additional.as_deref())?;
        }
        Some(cur)
    }
}

/// `Duplicate value: <value>` with the value already rendered.
fn duplicate(field: String, shown: String) -> FieldError {
    FieldError {
        reason: "FieldValueDuplicate",
        field,
        message: format!("Duplicate value: {shown}"),
    }
}

fn sub(place: Place) -> Place {
    match place {
        Place::Junctor => Place::Junctor,
        _ => Place::Field,
    }
}

/// Metadata of the root object is ObjectMeta, validated generically; only
/// embedded resources' metadata is pruned by their schema.
fn resource_is_root(path: &str) -> bool {
    path.is_empty()
}

fn join(base: &str, k: &str) -> String {
    if base.is_empty() {
        k.to_string()
    } else {
        format!("{base}.{k}")
    }
}

fn is_integer(v: &Value) -> bool {
    v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => is_integer(v),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `Invalid value: "abc": spec.replicas in body must be of type integer: "string"`.
fn type_invalid(path: &str, v: &Value, name: &str, want: &str) -> FieldError {
    let shown = match v {
        Value::Object(_) | Value::Array(_) => format!("{:?}", json_type(v)),
        other => go_repr(other),
    };
    FieldError {
        reason: "FieldValueTypeInvalid",
        field: path.to_string(),
        message: format!(
            "Invalid value: {shown}: {name} in body must be of type {want}: {:?}",
            json_type(v)
        ),
    }
}

/// Numbers as Go's %v prints float64 bounds: integers without a fraction.
fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The string formats upstream checks; unknown formats pass.
fn format_ok(format: &str, s: &str) -> bool {
    use std::net::IpAddr;
    match format {
        "int-or-string" | "password" | "" => true,
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "date" => jiff::civil::Date::strptime("%Y-%m-%d", s).is_ok(),
        "date-time" | "datetime" => s.parse::<jiff::Timestamp>().is_ok(),
        "duration" => parse_go_duration(s),
        "uuid" => uuid::Uuid::parse_str(s).is_ok() && s.len() == 36,
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "ip" => s.parse::<IpAddr>().is_ok(),
        "cidr" => s
            .split_once('/')
            .is_some_and(|(ip, bits)| ip.parse::<IpAddr>().is_ok() && bits.parse::<u8>().is_ok()),
        "hostname" => {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
        "email" => s
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.') && !b.starts_with('.')),
        "uri" => s.contains(':'),
        _ => true,
    }
}

/// Go's time.ParseDuration syntax: `1h30m`, `300ms`, `-1.5h`, `0`.
fn parse_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .iter()
            .find(|u| rest.starts_with(**u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(v: Value) -> Schema {
        let mut errs = Vec::new();
        let s = Schema::compile(&v, "s", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        s
    }

    fn shown(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::display).collect()
    }

    fn widget() -> Schema {
        compile(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "string", "enum": ["S", "M", "L"]},
                        "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                        "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "when": {"type": "string", "format": "date-time", "nullable": true},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "x-kubernetes-preserve-unknown-fields": true},
                    }
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        }))
    }

    #[test]
    fn prunes_unknown_fields_but_keeps_preserved_ones() {
        let s = widget();
        let mut o = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"size": "S", "bogus": 1, "extra": {"anything": [1]}, "labels": {"a": "b"},
                     "tags": [{"x": 1}], "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "x": 1}},
            "other": true});
        let unknown = s.prune(&mut o, true);
        // A value of the wrong shape loses what its schema does not name.
        assert_eq!(
            unknown,
            vec![
                "other".to_string(),
                "spec.bogus".to_string(),
                "spec.tags[0].x".to_string()
            ]
        );
        assert_eq!(o["spec"]["extra"], json!({"anything": [1]}));
        assert_eq!(o["metadata"]["name"], "a");
        assert_eq!(o["spec"]["template"]["x"], 1);
    }

    #[test]
    fn defaults_fill_absent_fields() {
        let s = widget();
        let mut o = json!({"spec": {"size": "S"}});
        s.apply_defaults(&mut o);
        assert_eq!(o["spec"]["replicas"], 1);
        let mut o = json!({"spec": {"size": "S", "replicas": null, "when": null}});
        s.drop_nulls(&mut o);
        s.apply_defaults(&mut o);
        assert_eq!(o["spec"]["replicas"], 1);
        assert_eq!(o["spec"]["when"], Value::Null);
    }

    #[test]
    fn validation_errors_are_upstream_shaped() {
        let s = widget();
        let o = json!({"spec": {"size": "XL", "replicas": 11, "name": "ABCDEFG", "port": true,
                                 "tags": ["a", "a"], "when": "yesterday", "labels": {"a": 1},
                                 "template": {"kind": "Pod"}}});
        let got = shown(&s.validate(&o, ""));
        let want = [
            "spec.size: Unsupported value: \"XL\": supported values: \"S\", \"M\", \"L\"",
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            "spec.name: Too long: may not be more than 5 bytes",
            "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'",
            "spec.port: Invalid value: true: spec.port in body must be of type integer,string: \"boolean\"",
            "spec.tags[1]: Duplicate value: \"a\"",
            "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
            "spec.labels.a: Invalid value: 1: spec.labels.a in body must be of type string: \"integer\"",
            "spec.template.apiVersion: Required value",
        ];
        for w in want {
            assert!(got.contains(&w.to_string()), "missing {w}\n in {got:#?}");
        }
        assert_eq!(
            shown(&s.validate(&json!({"spec": {}}), "")),
            vec!["spec.size: Required value"]
        );
        assert!(
            s.validate(
                &json!({"spec": {"size": "M", "port": "http", "when": null}}),
                ""
            )
            .is_empty()
        );
    }

    #[test]
    fn non_structural_schemas_are_rejected() {
        let mut errs = Vec::new();
        Schema::compile(
            &json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}},
                    "list": {"type": "array"}, "bad": {"type": "integer", "default": "x"}}}),
            "schema",
            &mut errs,
        );
        let got = shown(&errs);
        assert!(got.contains(&"schema.properties[spec].type: Required value: must not be empty for specified object fields".to_string()), "{got:?}");
        assert!(
            got.contains(
                &"schema.properties[list].items: Required value: must be specified".to_string()
            ),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|e| e.starts_with("schema.properties[bad].default: Invalid value: \"x\"")),
            "{got:?}"
        );
        let mut errs = Vec::new();
        Schema::compile(&json!({"properties": {}}), "schema", &mut errs);
        assert_eq!(
            shown(&errs),
            vec!["schema.type: Required value: must not be empty at the root"]
        );
    }

    #[test]
    fn go_durations() {
        for ok in ["1h", "1h30m", "300ms", "-1.5h", "0", "2us"] {
            assert!(parse_go_duration(ok), "{ok}");
        }
        for bad in ["", "1", "h", "1x"] {
            assert!(!parse_go_duration(bad), "{bad}");
        }
    }
}
