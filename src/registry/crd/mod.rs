//! CustomResourceDefinitions (apiextensions.k8s.io/v1): the CRD kind's own
//! strategy (validation beyond the basics, the cleanup finalizer on delete)
//! and, for every served version of an established CRD, a `ResourceDef`
//! whose strategy is a `CustomResourceStrategy`: the same generic store and
//! handlers as built-in kinds, with the CRD's structural schema for pruning,
//! defaulting and validation. `controllers::crd` keeps the catalogue in step
//! with the stored CRDs.

pub mod approval;
pub mod jsonpath;
pub mod listtype;
pub mod schema;
pub mod selectable;
pub mod validations;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::api::status::{ApiError, FieldError};
use crate::registry::names;
use crate::registry::strategy::kinds::other;
use crate::registry::strategy::kinds::util::{invalid, required};
use crate::registry::strategy::{Ctx, Strategy};
use crate::registry::{Conversion, ResourceDef};
use jsonpath::JsonPath;
use schema::Schema;

/// The finalizer that holds a CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// One additionalPrinterColumn.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub ty: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub path: JsonPath,
}

/// The scale subresource's paths, as field names (`["spec", "replicas"]`).
#[derive(Debug, Clone)]
pub struct ScaleSpec {
    pub spec_replicas: Vec<String>,
    pub status_replicas: Vec<String>,
    pub label_selector: Option<Vec<String>>,
}

/// What the layers above the store need to know about one served version
/// of a custom resource.
#[derive(Debug)]
pub struct CustomResource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub schema: Schema,
    /// The schema has x-kubernetes-validations rules somewhere.
    pub rules: bool,
    /// The openAPIV3Schema as written, for the OpenAPI documents.
    pub raw_schema: Value,
    pub status: bool,
    pub scale: Option<ScaleSpec>,
    /// Printer columns; upstream's default (Age) when the CRD names none.
    pub columns: Vec<PrinterColumn>,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
    /// The Warning sent on every use of a deprecated version.
    pub deprecation_warning: Option<String>,
    /// Identifies this state (schema, columns...) for cached documents.
    pub fingerprint: u64,
    /// Field selector labels of the version's selectableFields (`spec.color`).
    pub selectable_fields: Vec<String>,
}

impl CustomResource {
    /// Fields of `obj` the schema would prune, as upstream's strict decoding
    /// reports them (`spec.foo`).
    pub fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        // metadata is ObjectMeta whatever the schema says.
        let mut out = match obj.get("metadata") {
            Some(m) => crate::api::fieldvalidation::unknown_fields_of_kind(
                "",
                "v1",
                "ConfigMap",
                &json!({"metadata": m}),
            ),
            None => Vec::new(),
        };
        if !self.schema.preserve_unknown {
            let mut copy = obj.clone();
            out.extend(self.schema.prune(&mut copy, true));
        }
        out
    }
}

fn strings(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn st<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn fields_of(path: &str) -> Option<Vec<String>> {
    JsonPath::parse(path)
        .ok()?
        .simple_fields()
        .map(|f| f.into_iter().map(String::from).collect())
}

/// The default printer column of custom resources.
fn age_column() -> PrinterColumn {
    PrinterColumn {
        name: "Age".into(),
        ty: "date".into(),
        format: String::new(),
        description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata".into(),
        priority: 0,
        path: JsonPath::of_fields(&["metadata", "creationTimestamp"]),
    }
}

impl CustomResource {
    /// Builds the served form of `version` (an entry of spec.versions).
    fn new(crd: &Value, version: &Value, terminating: bool) -> CustomResource {
        let raw_schema = version
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        let mut ignored = Vec::new();
        let schema = Schema::compile(&raw_schema, "", &mut ignored);
        let mut columns: Vec<PrinterColumn> = version
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .filter_map(|c| {
                        Some(PrinterColumn {
                            name: st(c, "/name").to_string(),
                            ty: st(c, "/type").to_string(),
                            format: st(c, "/format").to_string(),
                            description: st(c, "/description").to_string(),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            path: JsonPath::parse(st(c, "/jsonPath")).ok()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if columns.is_empty() {
            columns.push(age_column());
        }
        let scale = version.pointer("/subresources/scale").map(|s| ScaleSpec {
            spec_replicas: fields_of(st(s, "/specReplicasPath")).unwrap_or_default(),
            status_replicas: fields_of(st(s, "/statusReplicasPath")).unwrap_or_default(),
            label_selector: s
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .and_then(fields_of),
        });
        let mut h = std::hash::DefaultHasher::new();
        version.to_string().hash(&mut h);
        terminating.hash(&mut h);
        CustomResource {
            group: st(crd, "/spec/group").to_string(),
            version: st(version, "/name").to_string(),
            kind: accepted(crd, "kind"),
            rules: validations::has_rules(&schema),
            schema,
            raw_schema,
            status: version.pointer("/subresources/status").is_some(),
            scale,
            columns,
            terminating,
            deprecation_warning: deprecation_warning(crd, version),
            fingerprint: h.finish(),
            selectable_fields: selectable::labels(version),
        }
    }
}

/// A deprecated version's warning: its own text, or upstream's default
/// naming the best served version that is not deprecated.
fn deprecation_warning(crd: &Value, version: &Value) -> Option<String> {
    if version.get("deprecated").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    if let Some(w) = version.get("deprecationWarning").and_then(Value::as_str) {
        return Some(w.to_string());
    }
    let group = st(crd, "/spec/group");
    let kind = st(crd, "/spec/names/kind");
    let msg = format!("{group}/{} {kind} is deprecated", st(version, "/name"));
    let mut better: Vec<&str> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
                .filter(|v| v.get("deprecated").and_then(Value::as_bool) != Some(true))
                .map(|v| st(v, "/name"))
                .collect()
        })
        .unwrap_or_default();
    better.sort_by_key(|v| version_priority(v));
    Some(match better.first() {
        Some(b) => format!("{msg}; use {group}/{b} {kind}"),
        None => msg,
    })
}

/// A name from status.acceptedNames, else from spec.names.
fn accepted(crd: &Value, field: &str) -> String {
    let a = st(crd, &format!("/status/acceptedNames/{field}"));
    if a.is_empty() {
        st(crd, &format!("/spec/names/{field}")).to_string()
    } else {
        a.to_string()
    }
}

fn accepted_list(crd: &Value, field: &str) -> Vec<String> {
    if crd
        .pointer(&format!("/status/acceptedNames/{field}"))
        .is_some()
    {
        strings(crd, &format!("/status/acceptedNames/{field}"))
    } else {
        strings(crd, &format!("/spec/names/{field}"))
    }
}

/// Rewrites apiVersion between a served version and the storage version:
/// conversion strategy None.
struct ApiVersionOnly {
    storage: String,
}

impl Conversion for ApiVersionOnly {
    fn to_storage(&self, mut obj: Value) -> Value {
        obj["apiVersion"] = json!(self.storage);
        obj
    }
    fn to_served(&self, obj: Value) -> Value {
        // decode() sets the served apiVersion.
        obj
    }
}

/// Kubernetes' version priority: GA before beta before alpha, higher
/// numbers first, then other names alphabetically.
pub fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = |s: &str| -> Option<(i64, u8, i64)> {
        let rest = s.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 0, 0));
        }
        for (name, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(name) {
                return Some((major, rank, n.parse().ok()?));
            }
        }
        None
    };
    match parse(v) {
        Some((major, rank, minor)) => (rank, -major, -minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// The ResourceDefs of a CRD's served versions, best version first.
pub fn resource_defs(crd: &Value) -> Vec<ResourceDef> {
    let group = st(crd, "/spec/group").to_string();
    let plural = accepted(crd, "plural");
    let terminating = crd
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| st(v, "/name").to_string())
        .unwrap_or_default();
    let mut served: Vec<&Value> = versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .collect();
    served.sort_by_key(|v| version_priority(st(v, "/name")));
    served
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let cr = CustomResource::new(crd, v, terminating);
            let name = st(v, "/name").to_string();
            let mut subresources = Vec::new();
            if cr.status {
                subresources.push("status".to_string());
            }
            if cr.scale.is_some() {
                subresources.push("scale".to_string());
            }
            let conversion: Option<Arc<dyn Conversion>> = (name != storage).then(|| {
                Arc::new(ApiVersionOnly {
                    storage: format!("{group}/{storage}"),
                }) as Arc<dyn Conversion>
            });
            ResourceDef {
                group: group.clone(),
                version: name.clone(),
                kind: cr.kind.clone(),
                plural: plural.clone(),
                singular: {
                    let s = accepted(crd, "singular");
                    if s.is_empty() {
                        cr.kind.to_lowercase()
                    } else {
                        s
                    }
                },
                namespaced: st(crd, "/spec/scope") == "Namespaced",
                short_names: accepted_list(crd, "shortNames"),
                categories: accepted_list(crd, "categories"),
                subresources,
                verbs: [
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "create",
                    "update",
                    "watch",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                storage_prefix: format!("/registry/{group}/{plural}/"),
                // "Preferred" for discovery and the one def per stored
                // kind that controllers walk: the best served version, as
                // upstream prefers it (the objects are stored as `storage`).
                storage_version: i == 0,
                strategy: Arc::new(CustomResourceStrategy { cr }),
                conversion,
            }
        })
        .collect()
}

/// Custom resources: the CRD version's schema decides.
pub struct CustomResourceStrategy {
    cr: CustomResource,
}

impl CustomResourceStrategy {
    /// The x-kubernetes-validations rules, unless a value of the wrong type
    /// keeps them from running (upstream's blocking errors).
    fn run_rules(&self, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        if !self.cr.rules {
            return;
        }
        if errs.iter().any(|e| e.reason == "FieldValueTypeInvalid") {
            errs.push(FieldError::invalid_raw(
                "<nil>",
                "\"object\"",
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
            return;
        }
        errs.extend(validations::validate(&self.cr.schema, obj, old));
    }
}

#[async_trait]
impl Strategy for CustomResourceStrategy {
    fn default(&self, obj: &mut Value) {
        let s = &self.cr.schema;
        if !s.preserve_unknown {
            s.prune(obj, true);
        }
        s.drop_nulls(obj);
        s.apply_defaults(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        self.cr.schema.validate(obj, "")
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldError> {
        // validate() has reported schema errors; the rules need to know of
        // them (a value of the wrong type blocks them) but not repeat them.
        let mut errs = self.cr.schema.validate(obj, "");
        let reported = errs.len();
        self.run_rules(obj, None, &mut errs);
        errs.split_off(reported)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        // validate() has reported schema errors; they block the rules too.
        if self.cr.schema.validate(new, "").is_empty() {
            self.run_rules(new, Some(old), &mut errs);
        }
        errs
    }

    fn prepare_create(&self, obj: &mut Value) {
        // With a status subresource, status is written only through it.
        if self.cr.status
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) {
        // Without a status subresource status is content like spec: its
        // changes bump the generation too (spec changes are the store's).
        if self.cr.status || new.get("status") == old.get("status") {
            return;
        }
        let rest = |o: &Value| {
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                for k in ["metadata", "status", "apiVersion", "kind"] {
                    m.remove(k);
                }
            }
            o
        };
        if rest(new) == rest(old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
    }

    async fn allocate(&self, _ctx: &Ctx<'_>, _obj: &mut Value) -> Result<(), ApiError> {
        if self.cr.terminating {
            return Err(ApiError::method_not_allowed(
                "create not allowed while custom resource definition is terminating",
            ));
        }
        Ok(())
    }

    fn custom_resource(&self) -> Option<&CustomResource> {
        Some(&self.cr)
    }

    fn supports_field(&self, field: &str) -> bool {
        self.cr.selectable_fields.iter().any(|f| f == field)
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        self.supports_field(field)
            .then(|| selectable::value(obj, field))
    }
}

/// The autoscaling/v1 Scale of a custom resource, from the CRD's paths.
pub fn scale_of(cr: &CustomResource, obj: &Value) -> Value {
    let get = |fields: &[String]| -> Option<&Value> {
        let mut cur = obj;
        for f in fields {
            cur = cur.get(f.as_str())?;
        }
        Some(cur)
    };
    let Some(spec) = &cr.scale else {
        return Value::Null;
    };
    let meta = &obj["metadata"];
    let mut status = json!({
        "replicas": get(&spec.status_replicas).and_then(Value::as_i64).unwrap_or(0),
    });
    if let Some(sel) = spec
        .label_selector
        .as_ref()
        .and_then(|p| get(p))
        .and_then(Value::as_str)
    {
        status["selector"] = json!(sel);
    }
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": get(&spec.spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
        "status": status,
    })
}

/// Sets the replicas a Scale write asks for at the CRD's specReplicasPath.
pub fn set_replicas(cr: &CustomResource, obj: &mut Value, replicas: i64) {
    let Some(spec) = &cr.scale else { return };
    let Some((last, parents)) = spec.spec_replicas.split_last() else {
        return;
    };
    let mut cur = obj;
    for f in parents {
        if !cur.get(f.as_str()).is_some_and(Value::is_object) {
            cur[f.as_str()] = json!({});
        }
        cur = &mut cur[f.as_str()];
    }
    cur[last.as_str()] = json!(replicas);
}

/// The CRD kind: upstream's basics (in `other`) plus schemas, names,
/// subresources and printer columns, and the cleanup finalizer on delete.
pub struct CrdStrategy;

const BASE: other::CrdStrategy = other::CrdStrategy;

/// The versions' path in errors: `spec.versions[i]`.
fn vpath(i: usize) -> String {
    format!("spec.versions[{i}]")
}

#[async_trait]
impl Strategy for CrdStrategy {
    fn default(&self, obj: &mut Value) {
        BASE.default(obj);
        // Upstream's v1 defaults for printer columns and scope-less names.
        if let Some(vs) = obj
            .pointer_mut("/spec/versions")
            .and_then(Value::as_array_mut)
        {
            for v in vs {
                if let Some(cols) = v
                    .get_mut("additionalPrinterColumns")
                    .and_then(Value::as_array_mut)
                {
                    for c in cols {
                        if c.get("priority").is_none() && c.is_object() {
                            c["priority"] = json!(0);
                        }
                    }
                }
            }
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        BASE.check_typed(obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        BASE.prepare_create(obj);
        if let Some(s) = obj.get_mut("status") {
            s["conditions"] = json!([]);
        }
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) {
        BASE.prepare_update(new, old);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = BASE.validate(obj);
        let kind = st(obj, "/spec/names/kind");
        if !kind.is_empty() && !names::is_dns1035_label(&kind.to_lowercase()).is_empty() {
            errs.push(FieldError::invalid(
                "spec.names.kind",
                kind,
                "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
            ));
        }
        for f in ["singular", "listKind"] {
            let v = st(obj, &format!("/spec/names/{f}"));
            let check = if f == "listKind" {
                v.to_lowercase()
            } else {
                v.to_string()
            };
            if !v.is_empty() && !names::is_dns1035_label(&check).is_empty() {
                errs.push(FieldError::invalid(
                    format!("spec.names.{f}"),
                    v,
                    "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
                ));
            }
        }
        for (i, s) in strings(obj, "/spec/names/shortNames").iter().enumerate() {
            for m in names::is_dns1035_label(s) {
                errs.push(FieldError::invalid(
                    format!("spec.names.shortNames[{i}]"),
                    s,
                    m,
                ));
            }
        }
        let versions = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !versions.is_empty()
            && !versions
                .iter()
                .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        {
            errs.push(invalid(
                "spec.versions",
                &Value::Array(versions.clone()),
                "must have at least one version marked as served",
            ));
        }
        // Upstream validates its internal form, where schemas identical in
        // every version (always so with one version) move to
        // spec.validation: they are checked, and named, once.
        let shared_schema = versions
            .first()
            .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
            .filter(|s0| {
                versions
                    .iter()
                    .all(|v| v.pointer("/schema/openAPIV3Schema") == Some(*s0))
            });
        let shared_compiled =
            shared_schema.map(|s| Schema::compile(s, "spec.validation.openAPIV3Schema", &mut errs));
        // selectableFields identical in every version move likewise, to
        // spec.selectableFields, checked against the shared schema only.
        let selectable_of = |v: &Value| {
            v.get("selectableFields")
                .and_then(Value::as_array)
                .filter(|l| !l.is_empty())
                .cloned()
        };
        let shared_selectable = versions
            .first()
            .map(selectable_of)
            .filter(|first| versions.iter().all(|v| selectable_of(v) == *first));
        if let Some(Some(list)) = &shared_selectable {
            match &shared_compiled {
                Some(s) => selectable::validate(list, s, "spec.selectableFields", &mut errs),
                None => errs.push(FieldError::invalid(
                    "spec.selectableFields",
                    "",
                    "may only be set when validations.schema is included",
                )),
            }
        }
        for (i, v) in versions.iter().enumerate() {
            let at = vpath(i);
            let compiled = match v.pointer("/schema/openAPIV3Schema") {
                None => {
                    errs.push(required(
                        format!("{at}.schema.openAPIV3Schema"),
                        "schemas are required",
                    ));
                    None
                }
                Some(_) if shared_schema.is_some() => None,
                Some(s) => Some(Schema::compile(
                    s,
                    &format!("{at}.schema.openAPIV3Schema"),
                    &mut errs,
                )),
            };
            if let (None, Some(list)) = (&shared_selectable, selectable_of(v)) {
                let sat = format!("{at}.selectableFields");
                match &compiled {
                    Some(s) => selectable::validate(&list, s, &sat, &mut errs),
                    // Upstream's wording, though it means "is included":
                    // a schema shared by all versions is not this version's.
                    None => errs.push(FieldError::invalid(
                        sat,
                        "",
                        "may only be set when `version.schema.openAPIV3Schema` is not included",
                    )),
                }
            }
            if let Some(scale) = v.pointer("/subresources/scale") {
                for (field, prefix, needed) in [
                    ("specReplicasPath", ".spec.", true),
                    ("statusReplicasPath", ".status.", true),
                    ("labelSelectorPath", "", false),
                ] {
                    let p = st(scale, &format!("/{field}"));
                    let path = format!("{at}.subresources.scale.{field}");
                    if p.is_empty() {
                        if needed {
                            errs.push(FieldError::required(path));
                        }
                        continue;
                    }
                    if fields_of(p).is_none() {
                        errs.push(FieldError::invalid(path, p, "must be a simple json path"));
                    } else if !p.starts_with(prefix) {
                        errs.push(FieldError::invalid(
                            path,
                            p,
                            format!(
                                "should be a json path under {}",
                                prefix.trim_end_matches('.')
                            ),
                        ));
                    }
                }
            }
            if let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
                for (j, c) in cols.iter().enumerate() {
                    let cp = format!("{at}.additionalPrinterColumns[{j}]");
                    if st(c, "/name").is_empty() {
                        errs.push(FieldError::required(format!("{cp}.name")));
                    }
                    let ty = st(c, "/type");
                    if ty.is_empty() {
                        errs.push(FieldError::required(format!("{cp}.type")));
                    } else if !["integer", "number", "string", "boolean", "date"].contains(&ty) {
                        errs.push(FieldError::not_supported(
                            format!("{cp}.type"),
                            ty,
                            &["integer", "number", "string", "boolean", "date"],
                        ));
                    }
                    let jp = st(c, "/jsonPath");
                    if jp.is_empty() {
                        errs.push(FieldError::required(format!("{cp}.jsonPath")));
                    } else if let Err(e) = JsonPath::parse(jp) {
                        errs.push(FieldError::invalid(format!("{cp}.jsonPath"), jp, e));
                    }
                }
            }
        }
        if obj.pointer("/spec/preserveUnknownFields") == Some(&Value::Bool(true)) {
            errs.push(invalid(
                "spec.preserveUnknownFields",
                &Value::Bool(true),
                "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
            ));
        }
        if let Some(conv) = obj
            .pointer("/spec/conversion/strategy")
            .and_then(Value::as_str)
            && !["None", "Webhook"].contains(&conv)
        {
            errs.push(FieldError::not_supported(
                "spec.conversion.strategy",
                conv,
                &["None", "Webhook"],
            ));
        }
        errs
    }
    fn validate_create(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = list_type_errors(obj);
        errs.extend(approval::validate(obj, None));
        errs.extend(validations::crd_rule_errors(obj));
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = BASE.validate_update(new, old);
        // As upstream ratchets its newer schema checks: a CRD stored before
        // they existed may keep what they would refuse.
        if list_type_errors(old).is_empty() {
            errs.extend(list_type_errors(new));
        }
        errs.extend(approval::validate(new, Some(old)));
        errs.extend(validations::crd_rule_errors_update(new, old));
        // Versions still holding objects cannot disappear.
        let names: Vec<String> = new
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().map(|v| st(v, "/name").to_string()).collect())
            .unwrap_or_default();
        for sv in strings(new, "/status/storedVersions") {
            if !names.contains(&sv) {
                errs.push(invalid(
                    "status.storedVersions",
                    &json!(strings(new, "/status/storedVersions")),
                    "must appear in spec.versions",
                ));
            }
        }
        errs
    }
    fn prepare_delete(&self, obj: &mut Value) {
        // Upstream's CRD storage: the first DELETE adds the cleanup
        // finalizer and reports the pending deletion.
        let meta = &mut obj["metadata"];
        let list = meta
            .as_object_mut()
            .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
        if let Some(Value::Array(l)) = list
            && !l.iter().any(|f| f == CLEANUP_FINALIZER)
        {
            l.push(json!(CLEANUP_FINALIZER));
        }
        set_condition(
            obj,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }
}

/// The checks of the list and map type extensions of a CRD's schemas,
/// named as the schema checks name them (a schema shared by every version
/// is `spec.validation`).
fn list_type_errors(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    fn schema_of(v: &Value) -> Option<&Value> {
        v.pointer("/schema/openAPIV3Schema")
    }
    let shared = versions
        .first()
        .and_then(schema_of)
        .filter(|s0| versions.iter().all(|v| schema_of(v) == Some(*s0)));
    match shared {
        Some(s) => listtype::validate(s, "spec.validation.openAPIV3Schema", &mut errs),
        None => {
            for (i, v) in versions.iter().enumerate() {
                if let Some(s) = schema_of(v) {
                    let at = format!("{}.schema.openAPIV3Schema", vpath(i));
                    listtype::validate(s, &at, &mut errs);
                }
            }
        }
    }
    errs
}

/// Sets a CRD status condition, keeping lastTransitionTime when the status
/// does not change. Returns whether anything changed.
pub fn set_condition(crd: &mut Value, ty: &str, status: &str, reason: &str, message: &str) -> bool {
    if !crd.get("status").is_some_and(Value::is_object) {
        crd["status"] = json!({});
    }
    if !crd["status"].get("conditions").is_some_and(Value::is_array) {
        crd["status"]["conditions"] = json!([]);
    }
    let Some(conds) = crd["status"]["conditions"].as_array_mut() else {
        return false;
    };
    let now = crate::registry::generic::now_rfc3339();
    match conds.iter_mut().find(|c| c["type"] == ty) {
        Some(c) => {
            if c["status"] == status && c["reason"] == reason && c["message"] == message {
                return false;
            }
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => conds.push(
            json!({"type": ty, "status": status, "lastTransitionTime": now,
                                  "reason": reason, "message": message}),
        ),
    }
    true
}

/// The plural, singular and short names under `base` (spec.names or
/// status.acceptedNames).
fn resource_names(crd: &Value, base: &str) -> Vec<String> {
    [
        st(crd, &format!("{base}/plural")),
        st(crd, &format!("{base}/singular")),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .map(String::from)
    .chain(strings(crd, &format!("{base}/shortNames")))
    .collect()
}

/// Names a CRD asks for that another CRD of the same group already holds
/// (plural, singular, short names, kind, list kind), as upstream's naming
/// controller judges them; `others` are the other CRDs' accepted names.
pub fn name_conflict(crd: &Value, others: &[&Value]) -> Option<String> {
    let group = st(crd, "/spec/group");
    let mine_resources = resource_names(crd, "/spec/names");
    let mine_kinds = [st(crd, "/spec/names/kind"), st(crd, "/spec/names/listKind")];
    for o in others {
        if st(o, "/spec/group") != group {
            continue;
        }
        let theirs = resource_names(o, "/status/acceptedNames");
        for r in &mine_resources {
            if theirs.contains(r) {
                return Some(format!("{r:?} is already in use"));
            }
        }
        for k in mine_kinds.iter().filter(|k| !k.is_empty()) {
            if [
                st(o, "/status/acceptedNames/kind"),
                st(o, "/status/acceptedNames/listKind"),
            ]
            .contains(k)
            {
                return Some(format!("{k:?} is already in use"));
            }
        }
    }
    None
}

/// The names a CRD gets in status.acceptedNames when there is no conflict.
pub fn accepted_names(crd: &Value) -> Value {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut out = json!({"plural": names["plural"], "singular": names["singular"],
                         "kind": names["kind"], "listKind": names["listKind"]});
    for f in ["shortNames", "categories"] {
        if let Some(v) = names
            .get(f)
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        {
            out[f] = v.clone();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}},
                    {"name": "v2alpha1", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                ]}
        })
    }

    #[test]
    fn served_versions_become_resource_defs_best_first() {
        let defs = resource_defs(&crd());
        let vs: Vec<&str> = defs.iter().map(|d| d.version.as_str()).collect();
        assert_eq!(vs, vec!["v1", "v1beta1"]);
        assert!(defs[0].storage_version && defs[0].conversion.is_none());
        assert!(!defs[1].storage_version && defs[1].conversion.is_some());
        assert_eq!(defs[0].subresources, vec!["status", "scale"]);
        assert_eq!(defs[0].storage_prefix, "/registry/example.com/widgets/");
        assert_eq!(defs[0].short_names, vec!["wd"]);
        let stored = defs[1]
            .conversion
            .as_ref()
            .map(|c| c.to_storage(json!({"apiVersion": "example.com/v1beta1"})));
        assert_eq!(stored, Some(json!({"apiVersion": "example.com/v1"})));
    }

    #[test]
    fn crd_validation_requires_schemas_and_sane_columns() {
        let mut c = crd();
        c["spec"]["versions"][2]
            .as_object_mut()
            .map(|m| m.remove("schema"));
        c["spec"]["versions"][1]["additionalPrinterColumns"] =
            json!([{"name": "X", "type": "float", "jsonPath": "spec.x"}]);
        CrdStrategy.default(&mut c);
        let errs: Vec<String> = CrdStrategy
            .validate(&c)
            .iter()
            .map(FieldError::display)
            .collect();
        assert!(
            errs.contains(
                &"spec.versions[2].schema.openAPIV3Schema: Required value: schemas are required"
                    .to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with(
                "spec.versions[1].additionalPrinterColumns[0].type: Unsupported value: \"float\""
            )),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with(
                "spec.versions[1].additionalPrinterColumns[0].jsonPath: Invalid value: \"spec.x\""
            )),
            "{errs:?}"
        );
        let mut c = crd();
        c["spec"]["preserveUnknownFields"] = json!(true);
        let errs: Vec<String> = CrdStrategy
            .validate(&c)
            .iter()
            .map(FieldError::display)
            .collect();
        assert!(
            errs.iter().any(|e| e.starts_with(
                "spec.preserveUnknownFields: Invalid value: true: cannot set to true"
            )),
            "{errs:?}"
        );
    }

    #[test]
    fn delete_adds_the_cleanup_finalizer() {
        let mut c = crd();
        CrdStrategy.prepare_delete(&mut c);
        assert_eq!(c["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
        assert_eq!(c["status"]["conditions"][0]["type"], "Terminating");
    }

    #[test]
    fn scale_follows_the_crd_paths() {
        let defs = resource_defs(&crd());
        let cr = defs[0].strategy.custom_resource().expect("custom resource");
        let mut o =
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 3}, "status": {"replicas": 2}});
        let s = scale_of(cr, &o);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        set_replicas(cr, &mut o, 5);
        assert_eq!(o["spec"]["replicas"], 5);
    }

    #[test]
    fn names_conflict_within_a_group() {
        let a = crd();
        let mut other = crd();
        other["metadata"]["name"] = json!("gadgets.example.com");
        other["status"]["acceptedNames"] = json!({"plural": "gadgets", "singular": "gadget", "kind": "Widget", "listKind": "GadgetList"});
        assert_eq!(
            name_conflict(&a, &[&other]).as_deref(),
            Some("\"Widget\" is already in use")
        );
        other["spec"]["group"] = json!("other.com");
        assert!(name_conflict(&a, &[&other]).is_none());
    }

    #[test]
    fn versions_sort_by_kubernetes_priority() {
        let mut vs = vec!["v1alpha1", "v2", "foo", "v1beta2", "v1", "v1beta1", "v10"];
        vs.sort_by_key(|v| version_priority(v));
        assert_eq!(
            vs,
            vec!["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }
}
