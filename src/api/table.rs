//! `application/json;as=Table;v=v1;g=meta.k8s.io`: server-side printing with
//! the columns kubectl shows against upstream (pkg/printers/internalversion).
//!
//! Like upstream's server, every row carries the wide (priority 1) cells too;
//! kubectl hides them unless `-o wide`. Column descriptions come from the
//! k8s-openapi schemas, i.e. the same API doc text upstream's SwaggerDoc uses.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::autoscaling::v2 as autoscaling;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::certificates::v1 as certificates;
use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::api::scheduling::v1 as scheduling;
use k8s_openapi::api::storage::v1 as storage;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use crate::api::selectors::LabelSelector;
use crate::registry::ResourceDef;

/// What each row's `object` holds (`includeObject` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// The `includeObject` query value; empty means the default (Metadata).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "Metadata" => Some(IncludeObject::Metadata),
            "None" => Some(IncludeObject::None),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// A meta.k8s.io/v1 Table for `items`; `list_meta` is the list's metadata
/// (resourceVersion, continue, remainingItemCount), or for a single object
/// `{"resourceVersion": <its RV>}` as upstream.
pub fn build_table(
    def: &ResourceDef,
    items: &[Value],
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    build_table_at(def, items, include, list_meta, true, Timestamp::now())
}

/// `build_table` for watch events: upstream sends the column definitions
/// with the first event only (`headers` false afterwards gives
/// `"columnDefinitions": null`, as upstream's TableOptions.NoHeaders).
pub fn build_table_with(
    def: &ResourceDef,
    items: &[Value],
    include: IncludeObject,
    list_meta: Value,
    headers: bool,
) -> Value {
    build_table_at(def, items, include, list_meta, headers, Timestamp::now())
}

/// `build_table_with` at an explicit "now" for the age columns.
pub fn build_table_at(
    def: &ResourceDef,
    items: &[Value],
    include: IncludeObject,
    list_meta: Value,
    headers: bool,
    now: Timestamp,
) -> Value {
    if let Some(cr) = def.strategy.custom_resource() {
        return custom_table(cr, items, include, list_meta, headers, now);
    }
    let printer = Printer::of(&def.group, &def.kind);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(printer.cells(def, o, now)));
            if let Some(c) = printer.conditions(o) {
                row.insert("conditions".into(), c);
            }
            row.insert("object".into(), row_object(o, include));
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": if headers { printer.column_definitions() } else { Value::Null },
        "rows": rows,
    })
}

/// A custom resource's table: Name, then the CRD's additionalPrinterColumns
/// (Age when it names none), cells as upstream's CRD table convertor makes
/// them: the first value the JSONPath selects, typed by the column, dates as
/// ages, nothing (kubectl's `<none>`) when the path selects nothing.
fn custom_table(
    cr: &crate::registry::crd::CustomResource,
    items: &[Value],
    include: IncludeObject,
    list_meta: Value,
    headers: bool,
    now: Timestamp,
) -> Value {
    let mut defs = vec![name_col().to_json()];
    for c in &cr.columns {
        defs.push(json!({"name": c.name, "type": c.ty, "format": c.format,
                         "description": c.description, "priority": c.priority}));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![name(o)];
            for c in &cr.columns {
                let cell = match c.path.find(o).first() {
                    None | Some(Value::Null) => Value::Null,
                    Some(v) => custom_cell(&c.ty, v, now),
                };
                cells.push(cell);
            }
            json!({"cells": cells, "object": row_object(o, include)})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": if headers { Value::Array(defs) } else { Value::Null },
        "rows": rows,
    })
}

fn custom_cell(ty: &str, v: &Value, now: Timestamp) -> Value {
    match (ty, v) {
        // kubectl's JSONPath printing: strings bare, the rest as JSON text.
        ("string", Value::String(_)) => v.clone(),
        ("string", _) => Value::String(v.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(_)) => v.clone(),
        ("date", Value::String(s)) => match s.parse::<Timestamp>() {
            Ok(t) => Value::String(since(Some(t), now)),
            Err(_) => Value::String("<invalid>".into()),
        },
        _ => Value::Null,
    }
}

fn row_object(o: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
        IncludeObject::Object => o.clone(),
    }
}

// ---------------------------------------------------------------------------
// Durations and timestamps
// ---------------------------------------------------------------------------

/// apimachinery's `duration.HumanDuration`: about 2-3 significant figures
/// (`45s`, `3m20s`, `15m`, `5h30m`, `10h`, `3d4h`, `20d`, `2y30d`, `9y`).
pub fn human_duration(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// A metav1.Time / MicroTime; None for absent, unparsable or Go's zero time.
fn timestamp(v: &Value, ptr: &str) -> Option<Timestamp> {
    let t: Timestamp = v.pointer(ptr)?.as_str()?.parse().ok()?;
    // Go's zero time (0001-01-01T00:00:00Z) counts as unset.
    (t.as_second() != -62_135_596_800).then_some(t)
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` if unset.
fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

fn age(o: &Value, now: Timestamp) -> Value {
    Value::String(since(timestamp(o, "/metadata/creationTimestamp"), now))
}

// ---------------------------------------------------------------------------
// JSON accessors: absent fields read as Go zero values
// ---------------------------------------------------------------------------

fn present<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    v.pointer(ptr).filter(|x| !x.is_null())
}

fn st<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn int_or(v: &Value, ptr: &str, default: i64) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(default)
}

fn boolean(v: &Value, ptr: &str) -> Option<bool> {
    v.pointer(ptr).and_then(Value::as_bool)
}

fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn map_len(v: &Value, ptr: &str) -> usize {
    v.pointer(ptr)
        .and_then(Value::as_object)
        .map_or(0, Map::len)
}

fn annotation<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

fn name(o: &Value) -> Value {
    Value::String(st(o, "/metadata/name").to_string())
}

fn s(x: impl Into<String>) -> Value {
    Value::String(x.into())
}

fn or_none(x: &str) -> String {
    if x.is_empty() {
        "<none>".to_string()
    } else {
        x.to_string()
    }
}

/// `labels.FormatLabels`: sorted `k=v` pairs, `<none>` when empty.
fn format_labels(v: Option<&Value>) -> String {
    let mut pairs: Vec<String> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    or_none(&pairs.join(","))
}

/// `metav1.FormatLabelSelector`: `<none>` for empty or null, `<error>` if invalid.
fn format_label_selector(v: Option<&Value>) -> String {
    match LabelSelector::from_label_selector_json(v.unwrap_or(&Value::Null)) {
        Ok(sel) => or_none(&sel.to_string()),
        Err(_) => "<error>".to_string(),
    }
}

/// `layoutContainerCells`: container names and images, comma-joined.
fn containers(o: &Value, ptr: &str) -> (Value, Value) {
    let cs = arr(o, ptr);
    let names: Vec<&str> = cs.iter().map(|c| st(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| st(c, "/image")).collect();
    (s(names.join(",")), s(images.join(",")))
}

/// `listWithMoreString`: the first three, then `+ N more...`.
fn list_with_more(all: &[String], max: usize, empty: &str) -> String {
    let shown = all.iter().take(max).cloned().collect::<Vec<_>>().join(",");
    if all.len() > max {
        format!("{shown} + {} more...", all.len() - max)
    } else if shown.is_empty() {
        empty.to_string()
    } else {
        shown
    }
}

/// The `status` of the first condition of `ty` is "True".
fn condition_true(conditions: &[Value], ty: &str) -> bool {
    conditions
        .iter()
        .find(|c| st(c, "/type") == ty)
        .is_some_and(|c| st(c, "/status") == "True")
}

/// `net.JoinHostPort`.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// ---------------------------------------------------------------------------
// Quantities
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum QFormat {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A `resource.Quantity` in canonical form, as its `String()` prints it
/// (`1024Mi` -> `1Gi`, `1.5Gi` -> `1536Mi`, `0.5` -> `500m`). Input that
/// does not parse is returned unchanged.
pub fn canonical_quantity(input: &str) -> String {
    format_quantity(input.trim()).unwrap_or_else(|| input.to_string())
}

fn format_quantity(q: &str) -> Option<String> {
    let b = q.as_bytes();
    if b.is_empty() {
        return None;
    }
    let mut pos = 0;
    let neg = match b[0] {
        b'-' => {
            pos = 1;
            true
        }
        b'+' => {
            pos = 1;
            false
        }
        _ => false,
    };
    let digits_from = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let num_end = digits_from(pos);
    let int_part = &q[pos..num_end];
    pos = num_end;
    let mut frac = "";
    if pos < b.len() && b[pos] == b'.' {
        let end = digits_from(pos + 1);
        frac = &q[pos + 1..end];
        pos = end;
    }
    let suffix = &q[pos..];
    let (base2_exp, mut exp10, mut format) = match suffix {
        "" => (0, 0, QFormat::DecimalSI),
        "n" => (0, -9, QFormat::DecimalSI),
        "u" => (0, -6, QFormat::DecimalSI),
        "m" => (0, -3, QFormat::DecimalSI),
        "k" => (0, 3, QFormat::DecimalSI),
        "M" => (0, 6, QFormat::DecimalSI),
        "G" => (0, 9, QFormat::DecimalSI),
        "T" => (0, 12, QFormat::DecimalSI),
        "P" => (0, 15, QFormat::DecimalSI),
        "E" => (0, 18, QFormat::DecimalSI),
        "Ki" => (10, 0, QFormat::BinarySI),
        "Mi" => (20, 0, QFormat::BinarySI),
        "Gi" => (30, 0, QFormat::BinarySI),
        "Ti" => (40, 0, QFormat::BinarySI),
        "Pi" => (50, 0, QFormat::BinarySI),
        "Ei" => (60, 0, QFormat::BinarySI),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => (
            0,
            s[1..].parse::<i32>().ok().filter(|e| e.abs() < 1000)?,
            QFormat::DecimalExponent,
        ),
        _ => return None,
    };
    let digits = format!("{int_part}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 24 {
        return None;
    }
    let mut mant: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    exp10 -= i32::try_from(frac.len()).ok()?;
    mant = mant.checked_mul(1u128 << base2_exp)?;
    if mant == 0 {
        return Some("0".to_string());
    }
    // Precision stops at nano; smaller amounts round up (away from zero).
    if exp10 < -9 {
        let shift = u32::try_from(-9 - exp10).ok()?;
        mant = match 10u128.checked_pow(shift) {
            Some(div) => mant / div + u128::from(!mant.is_multiple_of(div)),
            None => 1,
        };
        exp10 = -9;
    }
    while mant.is_multiple_of(10) {
        mant /= 10;
        exp10 += 1;
    }
    let sign = if neg { "-" } else { "" };
    if format == QFormat::BinarySI {
        // Small or fractional binary amounts print in decimal.
        let whole = u32::try_from(exp10)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
            .and_then(|p| mant.checked_mul(p));
        match whole {
            Some(v) if v >= 1024 => {
                let (mut v, mut times) = (v, 0usize);
                while v.is_multiple_of(1024) {
                    v /= 1024;
                    times += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].get(times)?;
                return Some(format!("{sign}{v}{suffix}"));
            }
            _ => format = QFormat::DecimalSI,
        }
    }
    // Exponent down to a multiple of three.
    let r = exp10.rem_euclid(3);
    mant = mant.checked_mul(10u128.pow(r.unsigned_abs()))?;
    exp10 -= r;
    let suffix = match (format, exp10) {
        (_, 0) => String::new(),
        (QFormat::DecimalSI, -9) => "n".into(),
        (QFormat::DecimalSI, -6) => "u".into(),
        (QFormat::DecimalSI, -3) => "m".into(),
        (QFormat::DecimalSI, 3) => "k".into(),
        (QFormat::DecimalSI, 6) => "M".into(),
        (QFormat::DecimalSI, 9) => "G".into(),
        (QFormat::DecimalSI, 12) => "T".into(),
        (QFormat::DecimalSI, 15) => "P".into(),
        (QFormat::DecimalSI, 18) => "E".into(),
        (_, e) => format!("e{e}"),
    };
    Some(format!("{sign}{mant}{suffix}"))
}

/// A quantity field as `Quantity.String()` prints it; absent is `0`.
fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(q)) => canonical_quantity(q),
        Some(Value::Number(n)) => canonical_quantity(&n.to_string()),
        _ => "0".to_string(),
    }
}

// ---------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------

/// Where a column's description comes from.
#[derive(Clone, Copy)]
enum Desc {
    Text(&'static str),
    /// A field's API doc from the schema of a k8s-openapi type.
    Doc(fn() -> Value, &'static str),
}

#[derive(Clone, Copy)]
struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: i32,
    desc: Desc,
}

fn schema_of<T: JsonSchema>() -> Value {
    T::json_schema(&mut SchemaGenerator::default()).to_value()
}

fn text(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        priority: 0,
        desc: Desc::Text(desc),
    }
}

fn doc<T: JsonSchema>(name: &'static str, ty: &'static str, field: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        priority: 0,
        desc: Desc::Doc(schema_of::<T>, field),
    }
}

impl Col {
    fn wide(mut self) -> Col {
        self.priority = 1;
        self
    }
    fn format(mut self, f: &'static str) -> Col {
        self.format = f;
        self
    }
    fn description(&self) -> String {
        match self.desc {
            Desc::Text(t) => t.to_string(),
            Desc::Doc(schema, field) => schema()
                .pointer(&format!("/properties/{field}/description"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        }
    }
    fn to_json(self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty,
            "format": self.format,
            "description": self.description(),
            "priority": self.priority,
        })
    }
}

fn name_col() -> Col {
    doc::<ObjectMeta>("Name", "string", "name").format("name")
}
fn age_col() -> Col {
    doc::<ObjectMeta>("Age", "string", "creationTimestamp")
}
fn containers_col() -> Col {
    text(
        "Containers",
        "string",
        "Names of each container in the template.",
    )
    .wide()
}
fn images_col() -> Col {
    text(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    )
    .wide()
}

// ---------------------------------------------------------------------------
// Printers
// ---------------------------------------------------------------------------

/// One printer per kind upstream prints; everything else gets the default
/// table (Name, Created At).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Printer {
    Pod,
    PodTemplate,
    PodDisruptionBudget,
    ReplicationController,
    ReplicaSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    Ingress,
    IngressClass,
    StatefulSet,
    Endpoints,
    Node,
    Event,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    Deployment,
    HorizontalPodAutoscaler,
    ConfigMap,
    NetworkPolicy,
    RoleBinding,
    ClusterRoleBinding,
    CertificateSigningRequest,
    Lease,
    StorageClass,
    ControllerRevision,
    ResourceQuota,
    PriorityClass,
    RuntimeClass,
    VolumeAttachment,
    EndpointSlice,
    CSINode,
    CSIDriver,
    CSIStorageCapacity,
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
    Default,
}

impl Printer {
    fn of(group: &str, kind: &str) -> Printer {
        use Printer::*;
        match (group, kind) {
            ("", "Pod") => Pod,
            ("", "PodTemplate") => PodTemplate,
            ("policy", "PodDisruptionBudget") => PodDisruptionBudget,
            ("", "ReplicationController") => ReplicationController,
            ("apps", "ReplicaSet") => ReplicaSet,
            ("apps", "DaemonSet") => DaemonSet,
            ("batch", "Job") => Job,
            ("batch", "CronJob") => CronJob,
            ("", "Service") => Service,
            ("networking.k8s.io", "Ingress") => Ingress,
            ("networking.k8s.io", "IngressClass") => IngressClass,
            ("apps", "StatefulSet") => StatefulSet,
            ("", "Endpoints") => Endpoints,
            ("", "Node") => Node,
            ("" | "events.k8s.io", "Event") => Event,
            ("", "Namespace") => Namespace,
            ("", "Secret") => Secret,
            ("", "ServiceAccount") => ServiceAccount,
            ("", "PersistentVolume") => PersistentVolume,
            ("", "PersistentVolumeClaim") => PersistentVolumeClaim,
            ("apps", "Deployment") => Deployment,
            ("autoscaling", "HorizontalPodAutoscaler") => HorizontalPodAutoscaler,
            ("", "ConfigMap") => ConfigMap,
            ("networking.k8s.io", "NetworkPolicy") => NetworkPolicy,
            ("rbac.authorization.k8s.io", "RoleBinding") => RoleBinding,
            ("rbac.authorization.k8s.io", "ClusterRoleBinding") => ClusterRoleBinding,
            ("certificates.k8s.io", "CertificateSigningRequest") => CertificateSigningRequest,
            ("coordination.k8s.io", "Lease") => Lease,
            ("storage.k8s.io", "StorageClass") => StorageClass,
            ("apps", "ControllerRevision") => ControllerRevision,
            ("", "ResourceQuota") => ResourceQuota,
            ("scheduling.k8s.io", "PriorityClass") => PriorityClass,
            ("node.k8s.io", "RuntimeClass") => RuntimeClass,
            ("storage.k8s.io", "VolumeAttachment") => VolumeAttachment,
            ("discovery.k8s.io", "EndpointSlice") => EndpointSlice,
            ("storage.k8s.io", "CSINode") => CSINode,
            ("storage.k8s.io", "CSIDriver") => CSIDriver,
            ("storage.k8s.io", "CSIStorageCapacity") => CSIStorageCapacity,
            ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
                MutatingWebhookConfiguration
            }
            ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
                ValidatingWebhookConfiguration
            }
            _ => Default,
        }
    }

    /// The column definitions, built once per printer (schema lookups).
    fn column_definitions(self) -> Value {
        static CACHE: OnceLock<Mutex<HashMap<Printer, Value>>> = OnceLock::new();
        let mut cache = CACHE.get_or_init(Default::default).lock();
        cache
            .entry(self)
            .or_insert_with(|| Value::Array(self.columns().into_iter().map(Col::to_json).collect()))
            .clone()
    }

    fn columns(self) -> Vec<Col> {
        use Printer as P;
        match self {
            P::Pod => vec![
                name_col(),
                text(
                    "Ready",
                    "string",
                    "The aggregate readiness state of this pod for accepting traffic.",
                ),
                text(
                    "Status",
                    "string",
                    "The aggregate status of the containers in this pod.",
                ),
                text(
                    "Restarts",
                    "string",
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                ),
                age_col(),
                doc::<core::PodStatus>("IP", "string", "podIP").wide(),
                doc::<core::PodSpec>("Node", "string", "nodeName").wide(),
                doc::<core::PodStatus>("Nominated Node", "string", "nominatedNodeName").wide(),
                doc::<core::PodSpec>("Readiness Gates", "string", "readinessGates").wide(),
            ],
            P::PodTemplate => vec![
                name_col(),
                text(
                    "Containers",
                    "string",
                    "Names of each container in the template.",
                ),
                text(
                    "Images",
                    "string",
                    "Images referenced by each container in the template.",
                ),
                text("Pod Labels", "string", "The labels for the pod template."),
            ],
            P::PodDisruptionBudget => vec![
                name_col(),
                text(
                    "Min Available",
                    "string",
                    "The minimum number of pods that must be available.",
                ),
                text(
                    "Max Unavailable",
                    "string",
                    "The maximum number of pods that may be unavailable.",
                ),
                text(
                    "Allowed Disruptions",
                    "integer",
                    "Calculated number of pods that may be disrupted at this time.",
                ),
                age_col(),
            ],
            P::ReplicationController => vec![
                name_col(),
                doc::<core::ReplicationControllerSpec>("Desired", "integer", "replicas"),
                doc::<core::ReplicationControllerStatus>("Current", "integer", "replicas"),
                doc::<core::ReplicationControllerStatus>("Ready", "integer", "readyReplicas"),
                age_col(),
                containers_col(),
                images_col(),
                doc::<core::ReplicationControllerSpec>("Selector", "string", "selector").wide(),
            ],
            P::ReplicaSet => vec![
                name_col(),
                doc::<apps::ReplicaSetSpec>("Desired", "integer", "replicas"),
                doc::<apps::ReplicaSetStatus>("Current", "integer", "replicas"),
                doc::<apps::ReplicaSetStatus>("Ready", "integer", "readyReplicas"),
                age_col(),
                containers_col(),
                images_col(),
                doc::<apps::ReplicaSetSpec>("Selector", "string", "selector").wide(),
            ],
            P::DaemonSet => vec![
                name_col(),
                doc::<apps::DaemonSetStatus>("Desired", "integer", "desiredNumberScheduled"),
                doc::<apps::DaemonSetStatus>("Current", "integer", "currentNumberScheduled"),
                doc::<apps::DaemonSetStatus>("Ready", "integer", "numberReady"),
                doc::<apps::DaemonSetStatus>("Up-to-date", "integer", "updatedNumberScheduled"),
                doc::<apps::DaemonSetStatus>("Available", "integer", "numberAvailable"),
                doc::<core::PodSpec>("Node Selector", "string", "nodeSelector"),
                age_col(),
                containers_col(),
                images_col(),
                doc::<apps::DaemonSetSpec>("Selector", "string", "selector").wide(),
            ],
            P::Job => vec![
                name_col(),
                text("Status", "string", "Status of the job."),
                doc::<batch::JobStatus>("Completions", "string", "succeeded"),
                text("Duration", "string", "Time required to complete the job."),
                age_col(),
                containers_col(),
                images_col(),
                doc::<batch::JobSpec>("Selector", "string", "selector").wide(),
            ],
            P::CronJob => vec![
                name_col(),
                doc::<batch::CronJobSpec>("Schedule", "string", "schedule"),
                doc::<batch::CronJobSpec>("Timezone", "string", "timeZone"),
                doc::<batch::CronJobSpec>("Suspend", "boolean", "suspend"),
                doc::<batch::CronJobStatus>("Active", "integer", "active"),
                doc::<batch::CronJobStatus>("Last Schedule", "string", "lastScheduleTime"),
                age_col(),
                containers_col(),
                images_col(),
                doc::<batch::JobSpec>("Selector", "string", "selector").wide(),
            ],
            P::Service => vec![
                name_col(),
                doc::<core::ServiceSpec>("Type", "string", "type"),
                doc::<core::ServiceSpec>("Cluster-IP", "string", "clusterIP"),
                doc::<core::ServiceSpec>("External-IP", "string", "externalIPs"),
                doc::<core::ServiceSpec>("Port(s)", "string", "ports"),
                age_col(),
                doc::<core::ServiceSpec>("Selector", "string", "selector").wide(),
            ],
            P::Ingress => vec![
                name_col(),
                text(
                    "Class",
                    "string",
                    "The name of the IngressClass resource that should be used for additional configuration",
                ),
                text(
                    "Hosts",
                    "string",
                    "Hosts that incoming requests are matched against before the ingress rule",
                ),
                text(
                    "Address",
                    "string",
                    "Address is a list containing ingress points for the load-balancer",
                ),
                text("Ports", "string", "Ports of TLS configurations that open"),
                age_col(),
            ],
            P::IngressClass => vec![
                name_col(),
                text(
                    "Controller",
                    "string",
                    "Controller that is responsible for handling this class",
                ),
                text(
                    "Parameters",
                    "string",
                    "A reference to a resource with additional parameters",
                ),
                age_col(),
            ],
            P::StatefulSet => vec![
                name_col(),
                text("Ready", "string", "Number of the pod with ready state"),
                age_col(),
                containers_col(),
                images_col(),
            ],
            P::Endpoints => vec![
                name_col(),
                doc::<core::Endpoints>("Endpoints", "string", "subsets"),
                age_col(),
            ],
            P::Node => vec![
                name_col(),
                text("Status", "string", "The status of the node"),
                text("Roles", "string", "The roles of the node"),
                age_col(),
                doc::<core::NodeSystemInfo>("Version", "string", "kubeletVersion"),
                doc::<core::NodeStatus>("Internal-IP", "string", "addresses").wide(),
                doc::<core::NodeStatus>("External-IP", "string", "addresses").wide(),
                doc::<core::NodeSystemInfo>("OS-Image", "string", "osImage").wide(),
                doc::<core::NodeSystemInfo>("Kernel-Version", "string", "kernelVersion").wide(),
                doc::<core::NodeSystemInfo>(
                    "Container-Runtime",
                    "string",
                    "containerRuntimeVersion",
                )
                .wide(),
            ],
            P::Event => vec![
                doc::<core::Event>("Last Seen", "string", "lastTimestamp"),
                doc::<core::Event>("Type", "string", "type"),
                doc::<core::Event>("Reason", "string", "reason"),
                doc::<core::Event>("Object", "string", "involvedObject"),
                doc::<core::ObjectReference>("Subobject", "string", "fieldPath").wide(),
                doc::<core::Event>("Source", "string", "source").wide(),
                doc::<core::Event>("Message", "string", "message"),
                doc::<core::Event>("First Seen", "string", "firstTimestamp").wide(),
                doc::<core::Event>("Count", "string", "count").wide(),
                name_col().wide(),
            ],
            P::Namespace => vec![
                name_col(),
                text("Status", "string", "The status of the namespace"),
                age_col(),
            ],
            P::Secret => vec![
                name_col(),
                doc::<core::Secret>("Type", "string", "type"),
                doc::<core::Secret>("Data", "string", "data"),
                age_col(),
            ],
            P::ServiceAccount => {
                vec![
                    name_col(),
                    doc::<core::ServiceAccount>("Secrets", "string", "secrets"),
                    age_col(),
                ]
            }
            P::PersistentVolume => vec![
                name_col(),
                doc::<core::PersistentVolumeSpec>("Capacity", "string", "capacity"),
                doc::<core::PersistentVolumeSpec>("Access Modes", "string", "accessModes"),
                doc::<core::PersistentVolumeSpec>(
                    "Reclaim Policy",
                    "string",
                    "persistentVolumeReclaimPolicy",
                ),
                doc::<core::PersistentVolumeStatus>("Status", "string", "phase"),
                doc::<core::PersistentVolumeSpec>("Claim", "string", "claimRef"),
                text("StorageClass", "string", "StorageClass of the pv"),
                text(
                    "VolumeAttributesClass",
                    "string",
                    "VolumeAttributesClass of the pv",
                ),
                doc::<core::PersistentVolumeStatus>("Reason", "string", "reason"),
                age_col(),
                doc::<core::PersistentVolumeSpec>("VolumeMode", "string", "volumeMode").wide(),
            ],
            P::PersistentVolumeClaim => vec![
                name_col(),
                doc::<core::PersistentVolumeClaimStatus>("Status", "string", "phase"),
                doc::<core::PersistentVolumeClaimSpec>("Volume", "string", "volumeName"),
                doc::<core::PersistentVolumeClaimStatus>("Capacity", "string", "capacity"),
                doc::<core::PersistentVolumeClaimStatus>("Access Modes", "string", "accessModes"),
                text("StorageClass", "string", "StorageClass of the pvc"),
                text(
                    "VolumeAttributesClass",
                    "string",
                    "VolumeAttributesClass of the pvc",
                ),
                age_col(),
                doc::<core::PersistentVolumeClaimSpec>("VolumeMode", "string", "volumeMode").wide(),
            ],
            P::Deployment => vec![
                name_col(),
                text("Ready", "string", "Number of the pod with ready state"),
                doc::<apps::DeploymentStatus>("Up-to-date", "string", "updatedReplicas"),
                doc::<apps::DeploymentStatus>("Available", "string", "availableReplicas"),
                age_col(),
                containers_col(),
                images_col(),
                doc::<apps::DeploymentSpec>("Selector", "string", "selector").wide(),
            ],
            P::HorizontalPodAutoscaler => vec![
                name_col(),
                doc::<autoscaling::HorizontalPodAutoscalerSpec>(
                    "Reference",
                    "string",
                    "scaleTargetRef",
                ),
                doc::<autoscaling::HorizontalPodAutoscalerSpec>("Targets", "string", "metrics"),
                doc::<autoscaling::HorizontalPodAutoscalerSpec>("MinPods", "string", "minReplicas"),
                doc::<autoscaling::HorizontalPodAutoscalerSpec>("MaxPods", "string", "maxReplicas"),
                doc::<autoscaling::HorizontalPodAutoscalerStatus>(
                    "Replicas",
                    "string",
                    "currentReplicas",
                ),
                age_col(),
            ],
            P::ConfigMap => vec![
                name_col(),
                doc::<core::ConfigMap>("Data", "string", "data"),
                age_col(),
            ],
            P::NetworkPolicy => {
                vec![
                    name_col(),
                    doc::<networking::NetworkPolicySpec>("Pod-Selector", "string", "podSelector"),
                    age_col(),
                ]
            }
            P::RoleBinding => vec![
                name_col(),
                doc::<rbac::RoleBinding>("Role", "string", "roleRef"),
                age_col(),
                text("Users", "string", "Users in the roleBinding").wide(),
                text("Groups", "string", "Groups in the roleBinding").wide(),
                text(
                    "ServiceAccounts",
                    "string",
                    "ServiceAccounts in the roleBinding",
                )
                .wide(),
            ],
            P::ClusterRoleBinding => vec![
                name_col(),
                doc::<rbac::ClusterRoleBinding>("Role", "string", "roleRef"),
                age_col(),
                text("Users", "string", "Users in the clusterRoleBinding").wide(),
                text("Groups", "string", "Groups in the clusterRoleBinding").wide(),
                text(
                    "ServiceAccounts",
                    "string",
                    "ServiceAccounts in the clusterRoleBinding",
                )
                .wide(),
            ],
            P::CertificateSigningRequest => vec![
                name_col(),
                age_col(),
                doc::<certificates::CertificateSigningRequestSpec>(
                    "SignerName",
                    "string",
                    "signerName",
                ),
                doc::<certificates::CertificateSigningRequestSpec>(
                    "Requestor",
                    "string",
                    "request",
                ),
                doc::<certificates::CertificateSigningRequestSpec>(
                    "RequestedDuration",
                    "string",
                    "expirationSeconds",
                ),
                doc::<certificates::CertificateSigningRequestStatus>(
                    "Condition",
                    "string",
                    "conditions",
                ),
            ],
            P::Lease => vec![
                name_col(),
                doc::<coordination::LeaseSpec>("Holder", "string", "holderIdentity"),
                age_col(),
            ],
            P::StorageClass => vec![
                name_col(),
                doc::<storage::StorageClass>("Provisioner", "string", "provisioner"),
                doc::<storage::StorageClass>("ReclaimPolicy", "string", "reclaimPolicy"),
                doc::<storage::StorageClass>("VolumeBindingMode", "string", "volumeBindingMode"),
                doc::<storage::StorageClass>(
                    "AllowVolumeExpansion",
                    "string",
                    "allowVolumeExpansion",
                ),
                age_col(),
            ],
            P::ControllerRevision => vec![
                name_col(),
                text("Controller", "string", "Controller of the object"),
                doc::<apps::ControllerRevision>("Revision", "string", "revision"),
                age_col(),
            ],
            P::ResourceQuota => vec![
                name_col(),
                text(
                    "Request",
                    "string",
                    "Request represents a minimum amount of cpu/memory that a container may consume.",
                ),
                text(
                    "Limit",
                    "string",
                    "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
                ),
                age_col(),
            ],
            P::PriorityClass => vec![
                name_col(),
                doc::<scheduling::PriorityClass>("Value", "integer", "value"),
                doc::<scheduling::PriorityClass>("Global-Default", "boolean", "globalDefault"),
                age_col(),
                doc::<scheduling::PriorityClass>("PreemptionPolicy", "string", "preemptionPolicy"),
            ],
            // Upstream reads this description from ObjectMeta, which has no
            // such field: it is empty.
            P::RuntimeClass => vec![name_col(), text("Handler", "string", ""), age_col()],
            P::VolumeAttachment => vec![
                name_col(),
                doc::<storage::VolumeAttachmentSpec>("Attacher", "string", "attacher")
                    .format("name"),
                doc::<storage::VolumeAttachmentSource>("PV", "string", "persistentVolumeName"),
                doc::<storage::VolumeAttachmentSpec>("Node", "string", "nodeName"),
                doc::<storage::VolumeAttachmentStatus>("Attached", "boolean", "attached"),
                age_col(),
            ],
            P::EndpointSlice => vec![
                name_col(),
                doc::<discovery::EndpointSlice>("AddressType", "string", "addressType"),
                doc::<discovery::EndpointSlice>("Ports", "string", "ports"),
                doc::<discovery::EndpointSlice>("Endpoints", "string", "endpoints"),
                age_col(),
            ],
            P::CSINode => vec![
                name_col(),
                text(
                    "Drivers",
                    "integer",
                    "Drivers indicates the number of CSI drivers registered on the node",
                ),
                age_col(),
            ],
            P::CSIDriver => vec![
                name_col(),
                doc::<storage::CSIDriverSpec>("AttachRequired", "boolean", "attachRequired"),
                doc::<storage::CSIDriverSpec>("PodInfoOnMount", "boolean", "podInfoOnMount"),
                doc::<storage::CSIDriverSpec>("StorageCapacity", "boolean", "storageCapacity"),
                doc::<storage::CSIDriverSpec>("TokenRequests", "string", "tokenRequests"),
                doc::<storage::CSIDriverSpec>("RequiresRepublish", "boolean", "requiresRepublish"),
                doc::<storage::CSIDriverSpec>("Modes", "string", "volumeLifecycleModes"),
                age_col(),
            ],
            P::CSIStorageCapacity => vec![
                name_col(),
                doc::<storage::CSIStorageCapacity>(
                    "StorageClassName",
                    "string",
                    "storageClassName",
                ),
                doc::<storage::CSIStorageCapacity>("Capacity", "string", "capacity"),
            ],
            P::MutatingWebhookConfiguration | P::ValidatingWebhookConfiguration => vec![
                name_col(),
                text(
                    "Webhooks",
                    "integer",
                    "Webhooks indicates the number of webhooks registered in this configuration",
                ),
                age_col(),
            ],
            P::Default => vec![
                name_col(),
                doc::<ObjectMeta>("Created At", "date", "creationTimestamp"),
            ],
        }
    }

    /// Row conditions: pods that finished are marked Completed.
    fn conditions(self, o: &Value) -> Option<Value> {
        if self != Printer::Pod {
            return None;
        }
        let (reason, message) = match st(o, "/status/phase") {
            "Succeeded" => ("Succeeded", "The pod has completed successfully."),
            "Failed" => ("Failed", "The pod failed."),
            _ => return None,
        };
        Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
    }

    fn cells(self, def: &ResourceDef, o: &Value, now: Timestamp) -> Vec<Value> {
        use Printer as P;
        match self {
            P::Pod => pod_cells(o, now),
            P::PodTemplate => {
                let (names, images) = containers(o, "/template/spec/containers");
                vec![
                    name(o),
                    names,
                    images,
                    s(format_labels(o.pointer("/template/metadata/labels"))),
                ]
            }
            P::PodDisruptionBudget => {
                let int_or_string = |ptr: &str| match present(o, ptr) {
                    Some(Value::String(x)) => x.clone(),
                    Some(x) => x.to_string(),
                    None => "N/A".to_string(),
                };
                vec![
                    name(o),
                    s(int_or_string("/spec/minAvailable")),
                    s(int_or_string("/spec/maxUnavailable")),
                    json!(int(o, "/status/disruptionsAllowed")),
                    age(o, now),
                ]
            }
            P::ReplicationController => {
                let (names, images) = containers(o, "/spec/template/spec/containers");
                vec![
                    name(o),
                    json!(int_or(o, "/spec/replicas", 1)),
                    json!(int(o, "/status/replicas")),
                    json!(int(o, "/status/readyReplicas")),
                    age(o, now),
                    names,
                    images,
                    s(format_labels(o.pointer("/spec/selector"))),
                ]
            }
            P::ReplicaSet => {
                let (names, images) = containers(o, "/spec/template/spec/containers");
                vec![
                    name(o),
                    json!(int_or(o, "/spec/replicas", 1)),
                    json!(int(o, "/status/replicas")),
                    json!(int(o, "/status/readyReplicas")),
                    age(o, now),
                    names,
                    images,
                    s(format_label_selector(o.pointer("/spec/selector"))),
                ]
            }
            P::DaemonSet => {
                let (names, images) = containers(o, "/spec/template/spec/containers");
                vec![
                    name(o),
                    json!(int(o, "/status/desiredNumberScheduled")),
                    json!(int(o, "/status/currentNumberScheduled")),
                    json!(int(o, "/status/numberReady")),
                    json!(int(o, "/status/updatedNumberScheduled")),
                    json!(int(o, "/status/numberAvailable")),
                    s(format_labels(o.pointer("/spec/template/spec/nodeSelector"))),
                    age(o, now),
                    names,
                    images,
                    s(format_label_selector(o.pointer("/spec/selector"))),
                ]
            }
            P::Job => job_cells(o, now),
            P::CronJob => {
                let last = match timestamp(o, "/status/lastScheduleTime") {
                    Some(t) => since(Some(t), now),
                    None if present(o, "/status/lastScheduleTime").is_some() => {
                        "<unknown>".to_string()
                    }
                    None => "<none>".to_string(),
                };
                let suspend = match boolean(o, "/spec/suspend") {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "<unset>",
                };
                let (names, images) =
                    containers(o, "/spec/jobTemplate/spec/template/spec/containers");
                vec![
                    name(o),
                    s(st(o, "/spec/schedule")),
                    s(present(o, "/spec/timeZone")
                        .and_then(Value::as_str)
                        .unwrap_or("<none>")),
                    s(suspend),
                    json!(arr(o, "/status/active").len()),
                    s(last),
                    age(o, now),
                    names,
                    images,
                    s(format_label_selector(
                        o.pointer("/spec/jobTemplate/spec/selector"),
                    )),
                ]
            }
            P::Service => service_cells(o, now),
            P::Ingress => {
                let class = present(o, "/spec/ingressClassName")
                    .and_then(Value::as_str)
                    .unwrap_or("<none>");
                let ports = if arr(o, "/spec/tls").is_empty() {
                    "80"
                } else {
                    "80, 443"
                };
                vec![
                    name(o),
                    s(class),
                    s(ingress_hosts(arr(o, "/spec/rules"))),
                    s(load_balancer_ingress(arr(
                        o,
                        "/status/loadBalancer/ingress",
                    ))),
                    s(ports),
                    age(o, now),
                ]
            }
            P::IngressClass => {
                let params = match present(o, "/spec/parameters") {
                    Some(p) => {
                        let mut x = st(p, "/kind").to_string();
                        if let Some(g) = present(p, "/apiGroup").and_then(Value::as_str) {
                            x = format!("{x}.{g}");
                        }
                        format!("{x}/{}", st(p, "/name"))
                    }
                    None => "<none>".to_string(),
                };
                vec![
                    name(o),
                    s(st(o, "/spec/controller")),
                    s(params),
                    age(o, now),
                ]
            }
            P::StatefulSet => {
                let (names, images) = containers(o, "/spec/template/spec/containers");
                let ready = format!(
                    "{}/{}",
                    int(o, "/status/readyReplicas"),
                    int_or(o, "/spec/replicas", 1)
                );
                vec![name(o), s(ready), age(o, now), names, images]
            }
            P::Endpoints => vec![name(o), s(format_endpoints(o)), age(o, now)],
            P::Node => node_cells(o, now),
            P::Event => event_cells(&def.group, o, now),
            P::Namespace => vec![name(o), s(st(o, "/status/phase")), age(o, now)],
            P::Secret => {
                let ty = present(o, "/type")
                    .and_then(Value::as_str)
                    .unwrap_or("Opaque");
                vec![name(o), s(ty), json!(map_len(o, "/data")), age(o, now)]
            }
            P::ServiceAccount => vec![name(o), json!(arr(o, "/secrets").len()), age(o, now)],
            P::PersistentVolume => pv_cells(o, now),
            P::PersistentVolumeClaim => pvc_cells(o, now),
            P::Deployment => {
                let (names, images) = containers(o, "/spec/template/spec/containers");
                let selector = match LabelSelector::from_label_selector_json(
                    o.pointer("/spec/selector").unwrap_or(&Value::Null),
                ) {
                    Ok(sel) => sel.to_string(),
                    Err(_) => "<invalid>".to_string(),
                };
                let ready = format!(
                    "{}/{}",
                    int(o, "/status/readyReplicas"),
                    int_or(o, "/spec/replicas", 1)
                );
                vec![
                    name(o),
                    s(ready),
                    json!(int(o, "/status/updatedReplicas")),
                    json!(int(o, "/status/availableReplicas")),
                    age(o, now),
                    names,
                    images,
                    s(selector),
                ]
            }
            P::HorizontalPodAutoscaler => hpa_cells(&def.version, o, now),
            P::ConfigMap => vec![
                name(o),
                json!(map_len(o, "/data") + map_len(o, "/binaryData")),
                age(o, now),
            ],
            P::NetworkPolicy => vec![
                name(o),
                // Never null in the typed object: an absent podSelector is empty.
                s(format_label_selector(Some(
                    o.pointer("/spec/podSelector").unwrap_or(&json!({})),
                ))),
                age(o, now),
            ],
            P::RoleBinding | P::ClusterRoleBinding => {
                let role = format!("{}/{}", st(o, "/roleRef/kind"), st(o, "/roleRef/name"));
                let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
                for subj in arr(o, "/subjects") {
                    match st(subj, "/kind") {
                        "ServiceAccount" => {
                            sas.push(format!("{}/{}", st(subj, "/namespace"), st(subj, "/name")))
                        }
                        "User" => users.push(st(subj, "/name").to_string()),
                        "Group" => groups.push(st(subj, "/name").to_string()),
                        _ => {}
                    }
                }
                vec![
                    name(o),
                    s(role),
                    age(o, now),
                    s(users.join(", ")),
                    s(groups.join(", ")),
                    s(sas.join(", ")),
                ]
            }
            P::CertificateSigningRequest => {
                let signer = or_none(st(o, "/spec/signerName"));
                let duration = match o.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
                    Some(secs) => human_duration(SignedDuration::from_secs(secs)),
                    None => "<none>".to_string(),
                };
                vec![
                    name(o),
                    age(o, now),
                    s(signer),
                    s(st(o, "/spec/username")),
                    s(duration),
                    s(csr_condition(o)),
                ]
            }
            P::Lease => vec![name(o), s(st(o, "/spec/holderIdentity")), age(o, now)],
            P::StorageClass => {
                let default_class = [
                    "storageclass.kubernetes.io/is-default-class",
                    "storageclass.beta.kubernetes.io/is-default-class",
                ]
                .iter()
                .any(|k| annotation(o, k) == Some("true"));
                let mut n = st(o, "/metadata/name").to_string();
                if default_class {
                    n.push_str(" (default)");
                }
                vec![
                    s(n),
                    s(st(o, "/provisioner")),
                    s(present(o, "/reclaimPolicy")
                        .and_then(Value::as_str)
                        .unwrap_or("Delete")),
                    s(present(o, "/volumeBindingMode")
                        .and_then(Value::as_str)
                        .unwrap_or("Immediate")),
                    json!(boolean(o, "/allowVolumeExpansion").unwrap_or(false)),
                    age(o, now),
                ]
            }
            P::ControllerRevision => {
                vec![
                    name(o),
                    s(controller_of(o)),
                    json!(int(o, "/revision")),
                    age(o, now),
                ]
            }
            P::ResourceQuota => resource_quota_cells(o, now),
            P::PriorityClass => vec![
                name(o),
                json!(int(o, "/value")),
                json!(boolean(o, "/globalDefault").unwrap_or(false)),
                age(o, now),
                s(st(o, "/preemptionPolicy")),
            ],
            P::RuntimeClass => vec![name(o), s(st(o, "/handler")), age(o, now)],
            P::VolumeAttachment => vec![
                name(o),
                s(st(o, "/spec/attacher")),
                s(st(o, "/spec/source/persistentVolumeName")),
                s(st(o, "/spec/nodeName")),
                json!(boolean(o, "/status/attached").unwrap_or(false)),
                age(o, now),
            ],
            P::EndpointSlice => {
                let ports: Vec<String> = arr(o, "/ports")
                    .iter()
                    .map(|p| {
                        match (
                            p.get("port").and_then(Value::as_i64),
                            present(p, "/name").and_then(Value::as_str),
                        ) {
                            (Some(n), _) => n.to_string(),
                            (None, Some(name)) => name.to_string(),
                            (None, None) => "*".to_string(),
                        }
                    })
                    .collect();
                let addrs: Vec<String> = arr(o, "/endpoints")
                    .iter()
                    .flat_map(|e| {
                        arr(e, "/addresses")
                            .iter()
                            .map(|a| a.as_str().unwrap_or("").to_string())
                    })
                    .collect();
                vec![
                    name(o),
                    s(st(o, "/addressType")),
                    s(list_with_more(&ports, 3, "<unset>")),
                    s(list_with_more(&addrs, 3, "<unset>")),
                    age(o, now),
                ]
            }
            P::CSINode => vec![name(o), json!(arr(o, "/spec/drivers").len()), age(o, now)],
            P::CSIDriver => {
                let tokens = match present(o, "/spec/tokenRequests") {
                    Some(t) => arr(t, "")
                        .iter()
                        .map(|x| st(x, "/audience"))
                        .collect::<Vec<_>>()
                        .join(","),
                    None => "<unset>".to_string(),
                };
                let modes = match present(o, "/spec/volumeLifecycleModes") {
                    Some(m) => or_none(
                        &arr(m, "")
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    // Defaulted to Persistent on create.
                    None => "Persistent".to_string(),
                };
                vec![
                    name(o),
                    json!(boolean(o, "/spec/attachRequired").unwrap_or(true)),
                    json!(boolean(o, "/spec/podInfoOnMount").unwrap_or(false)),
                    json!(boolean(o, "/spec/storageCapacity").unwrap_or(false)),
                    s(tokens),
                    json!(boolean(o, "/spec/requiresRepublish").unwrap_or(false)),
                    s(modes),
                    age(o, now),
                ]
            }
            P::CSIStorageCapacity => {
                let cap = match present(o, "/capacity") {
                    Some(q) => quantity(Some(q)),
                    None => "<unset>".to_string(),
                };
                vec![name(o), s(st(o, "/storageClassName")), s(cap)]
            }
            P::MutatingWebhookConfiguration | P::ValidatingWebhookConfiguration => {
                vec![name(o), json!(arr(o, "/webhooks").len()), age(o, now)]
            }
            P::Default => {
                let created = timestamp(o, "/metadata/creationTimestamp").map_or_else(
                    || "0001-01-01T00:00:00Z".to_string(),
                    |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                );
                vec![name(o), s(created)]
            }
        }
    }
}

// --- per-kind cell builders ---------------------------------------------------

fn pod_cells(p: &Value, now: Timestamp) -> Vec<Value> {
    let init_specs = arr(p, "/spec/initContainers");
    let restartable = |name: &str| {
        // Like upstream's name -> container map, the last duplicate wins.
        init_specs
            .iter()
            .rev()
            .find(|c| st(c, "/name") == name)
            .is_some_and(|c| st(c, "/restartPolicy") == "Always")
    };
    let total = arr(p, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| st(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_restartable_restart: Option<Timestamp> = None;
    let later = |a: Option<Timestamp>, b: Option<Timestamp>| a.max(b);

    let phase = st(p, "/status/phase");
    let mut reason = match st(p, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let conditions = arr(p, "/status/conditions");
    if conditions
        .iter()
        .any(|c| st(c, "/type") == "PodScheduled" && st(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, c) in arr(p, "/status/initContainerStatuses").iter().enumerate() {
        let rc = int(c, "/restartCount");
        let finished = timestamp(c, "/lastState/terminated/finishedAt");
        restarts += rc;
        last_restart = later(last_restart, finished);
        let is_restartable = restartable(st(c, "/name"));
        if is_restartable {
            restartable_restarts += rc;
            last_restartable_restart = later(last_restartable_restart, finished);
        }
        let terminated = present(c, "/state/terminated");
        let waiting_reason = st(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
            continue;
        }
        if is_restartable && boolean(c, "/started") == Some(true) {
            if boolean(c, "/ready") == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match st(t, "/reason") {
                "" if int(t, "/signal") != 0 => format!("Init:Signal:{}", int(t, "/signal")),
                "" => format!("Init:ExitCode:{}", int(t, "/exitCode")),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .find(|c| st(c, "/type") == "Initialized")
        .is_some_and(|c| st(c, "/status") == "True");
    if !initializing || initialized {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in arr(p, "/status/containerStatuses").iter().rev() {
            restarts += int(c, "/restartCount");
            last_restart = later(
                last_restart,
                timestamp(c, "/lastState/terminated/finishedAt"),
            );
            let waiting_reason = st(c, "/state/waiting/reason");
            let terminated = present(c, "/state/terminated");
            if present(c, "/state/waiting").is_some() && !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match st(t, "/reason") {
                    "" if int(t, "/signal") != 0 => format!("Signal:{}", int(t, "/signal")),
                    "" => format!("ExitCode:{}", int(t, "/exitCode")),
                    r => r.to_string(),
                };
            } else if boolean(c, "/ready") == Some(true) && present(c, "/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A container still running keeps a "Completed" pod Running.
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    if present(p, "/metadata/deletionTimestamp").is_some() {
        if st(p, "/status/reason") == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_string();
        }
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    // An explicit podIP wins over podIPs, as in the v1 -> internal conversion.
    let ip = match st(p, "/status/podIP") {
        "" => st(p, "/status/podIPs/0/ip"),
        ip => ip,
    };
    let gates = arr(p, "/spec/readinessGates");
    let gates_text = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let ok = gates
            .iter()
            .filter(|g| condition_true(conditions, st(g, "/conditionType")))
            .count();
        format!("{ok}/{}", gates.len())
    };
    vec![
        name(p),
        s(format!("{ready}/{total}")),
        s(reason),
        s(restarts_text),
        age(p, now),
        s(or_none(ip)),
        s(or_none(st(p, "/spec/nodeName"))),
        s(or_none(st(p, "/status/nominatedNodeName"))),
        s(gates_text),
    ]
}

fn job_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int(o, "/status/succeeded");
    let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(o, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        timestamp(o, "/status/startTime"),
        timestamp(o, "/status/completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    let conditions = arr(o, "/status/conditions");
    let status = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if present(o, "/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers(o, "/spec/template/spec/containers");
    vec![
        name(o),
        s(status),
        s(completions),
        s(duration),
        age(o, now),
        names,
        images,
        s(format_label_selector(o.pointer("/spec/selector"))),
    ]
}

/// Sorted, de-duplicated load-balancer ingress points (IP, else hostname).
/// The server prints wide, so nothing is truncated.
fn load_balancer_ingress(ingress: &[Value]) -> String {
    let set: BTreeSet<&str> = ingress
        .iter()
        .filter_map(|i| match (st(i, "/ip"), st(i, "/hostname")) {
            ("", "") => None,
            ("", h) => Some(h),
            (ip, _) => Some(ip),
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn service_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let ty = present(o, "/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    // An explicit clusterIP wins over clusterIPs, as in the v1 -> internal conversion.
    let cluster_ip = match st(o, "/spec/clusterIP") {
        "" => or_none(st(o, "/spec/clusterIPs/0")),
        ip => ip.to_string(),
    };
    let external: Vec<&str> = arr(o, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external_ip = match ty {
        "ClusterIP" | "NodePort" => or_none(&external.join(",")),
        "LoadBalancer" => {
            let lb = load_balancer_ingress(arr(o, "/status/loadBalancer/ingress"));
            if !external.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').collect()
                };
                all.extend(external);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => st(o, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(o, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = present(p, "/protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            match int(p, "/nodePort") {
                np if np > 0 => format!("{}:{np}/{proto}", int(p, "/port")),
                _ => format!("{}/{proto}", int(p, "/port")),
            }
        })
        .collect();
    vec![
        name(o),
        s(ty),
        s(cluster_ip),
        s(external_ip),
        s(or_none(&ports.join(","))),
        age(o, now),
        s(format_labels(o.pointer("/spec/selector"))),
    ]
}

/// `formatHosts`: up to three hosts, `*` when none.
fn ingress_hosts(rules: &[Value]) -> String {
    let mut list = Vec::new();
    let mut more = false;
    for r in rules {
        if list.len() == 3 {
            more = true;
        }
        let host = st(r, "/host");
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - 3)
    } else {
        joined
    }
}

/// `formatEndpoints`: up to three `ip:port` pairs across subsets.
fn format_endpoints(o: &Value) -> String {
    let subsets = arr(o, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addrs = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(st(a, "/ip").to_string());
            }
            continue;
        }
        for port in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(join_host_port(st(a, "/ip"), int(port, "/port")));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - max)
    } else {
        joined
    }
}

fn node_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let mut status: Vec<&str> = Vec::new();
    // The last Ready condition wins, as upstream's type -> condition map.
    if let Some(c) = arr(o, "/status/conditions")
        .iter()
        .rev()
        .find(|c| st(c, "/type") == "Ready")
    {
        status.push(if st(c, "/status") == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if boolean(o, "/spec/unschedulable") == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = o.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let role = match k.strip_prefix("node-role.kubernetes.io/") {
                Some(role) => role,
                None if k == "kubernetes.io/role" => v.as_str().unwrap_or(""),
                None => "",
            };
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        }
    }
    let address = |ty: &str| {
        arr(o, "/status/addresses")
            .iter()
            .find(|a| st(a, "/type") == ty)
            .map_or_else(|| "<none>".to_string(), |a| st(a, "/address").to_string())
    };
    let info = |field: &str| match st(o, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        x => x.to_string(),
    };
    vec![
        name(o),
        s(status.join(",")),
        s(or_none(&roles.into_iter().collect::<Vec<_>>().join(","))),
        age(o, now),
        s(st(o, "/status/nodeInfo/kubeletVersion")),
        s(address("InternalIP")),
        s(address("ExternalIP")),
        s(info("osImage")),
        s(info("kernelVersion")),
        s(info("containerRuntimeVersion")),
    ]
}

/// core/v1 and events.k8s.io/v1 Events print alike; the latter names the
/// same fields differently.
fn event_cells(group: &str, o: &Value, now: Timestamp) -> Vec<Value> {
    let new_api = group == "events.k8s.io";
    // Objects come in the served shape; the other shape is accepted too.
    let f = |core: &'static str, events: &'static str| {
        let (own, other) = if new_api {
            (events, core)
        } else {
            (core, events)
        };
        if o.pointer(own).is_none() && o.pointer(other).is_some() {
            other
        } else {
            own
        }
    };
    let involved = o
        .pointer(f("/involvedObject", "/regarding"))
        .unwrap_or(&Value::Null);
    let source = o
        .pointer(f("/source", "/deprecatedSource"))
        .unwrap_or(&Value::Null);

    let first = match timestamp(o, f("/firstTimestamp", "/deprecatedFirstTimestamp")) {
        Some(t) => since(Some(t), now),
        None => since(timestamp(o, "/eventTime"), now),
    };
    let mut last = match timestamp(o, f("/lastTimestamp", "/deprecatedLastTimestamp")) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int(o, f("/count", "/deprecatedCount"));
    if let Some(series) = present(o, "/series") {
        last = since(timestamp(series, "/lastObservedTime"), now);
        count = int(series, "/count");
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let kind = st(involved, "/kind").to_lowercase();
    let target = match st(involved, "/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = first_non_empty(
        st(source, "/component"),
        st(o, f("/reportingComponent", "/reportingController")),
    );
    let instance = first_non_empty(st(source, "/host"), st(o, "/reportingInstance"));
    let source_text = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        s(last),
        s(st(o, "/type")),
        s(st(o, "/reason")),
        s(target),
        s(st(involved, "/fieldPath")),
        s(source_text),
        s(st(o, f("/message", "/note")).trim()),
        s(first),
        json!(count),
        name(o),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

/// `helper.GetAccessModesAsString`: fixed order, no duplicates.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|x| x.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn pv_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match present(o, "/spec/claimRef") {
        Some(c) => format!("{}/{}", st(c, "/namespace"), st(c, "/name")),
        None => String::new(),
    };
    let mut phase = present(o, "/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    if present(o, "/metadata/deletionTimestamp").is_some() {
        phase = "Terminating";
    }
    let class =
        annotation(o, BETA_STORAGE_CLASS).unwrap_or_else(|| st(o, "/spec/storageClassName"));
    vec![
        name(o),
        s(quantity(o.pointer("/spec/capacity/storage"))),
        s(access_modes(arr(o, "/spec/accessModes"))),
        s(present(o, "/spec/persistentVolumeReclaimPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Retain")),
        s(phase),
        s(claim),
        s(class),
        s(present(o, "/spec/volumeAttributesClassName")
            .and_then(Value::as_str)
            .unwrap_or("<unset>")),
        s(st(o, "/status/reason")),
        age(o, now),
        s(present(o, "/spec/volumeMode")
            .and_then(Value::as_str)
            .unwrap_or("Filesystem")),
    ]
}

fn pvc_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let mut phase = present(o, "/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    if present(o, "/metadata/deletionTimestamp").is_some() {
        phase = "Terminating";
    }
    let volume = st(o, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(o.pointer("/status/capacity/storage")),
            access_modes(arr(o, "/status/accessModes")),
        )
    };
    let class =
        annotation(o, BETA_STORAGE_CLASS).unwrap_or_else(|| st(o, "/spec/storageClassName"));
    vec![
        name(o),
        s(phase),
        s(volume),
        s(capacity),
        s(modes),
        s(class),
        s(present(o, "/spec/volumeAttributesClassName")
            .and_then(Value::as_str)
            .unwrap_or("<unset>")),
        age(o, now),
        s(present(o, "/spec/volumeMode")
            .and_then(Value::as_str)
            .unwrap_or("Filesystem")),
    ]
}

fn hpa_cells(version: &str, o: &Value, now: Timestamp) -> Vec<Value> {
    // autoscaling/v1 has only the CPU target; it reads as one Resource metric.
    let (specs, statuses) = if version == "v1" {
        let specs = match o
            .pointer("/spec/targetCPUUtilizationPercentage")
            .and_then(Value::as_i64)
        {
            Some(t) => vec![
                json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}),
            ],
            None => Vec::new(),
        };
        let statuses = match o
            .pointer("/status/currentCPUUtilizationPercentage")
            .and_then(Value::as_i64)
        {
            Some(c) => vec![
                json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}),
            ],
            None => Vec::new(),
        };
        (specs, statuses)
    } else {
        (
            arr(o, "/spec/metrics").to_vec(),
            arr(o, "/status/currentMetrics").to_vec(),
        )
    };
    let min = match o.pointer("/spec/minReplicas").and_then(Value::as_i64) {
        Some(m) => m.to_string(),
        None => "<unset>".to_string(),
    };
    vec![
        name(o),
        s(format!(
            "{}/{}",
            st(o, "/spec/scaleTargetRef/kind"),
            st(o, "/spec/scaleTargetRef/name")
        )),
        s(hpa_metrics(&specs, &statuses)),
        s(min),
        json!(int(o, "/spec/maxReplicas")),
        json!(int(o, "/status/currentReplicas")),
        age(o, now),
    ]
}

/// `formatHPAMetrics`: `current/target` per metric, at most two shown.
fn hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let unknown = || "<unknown>".to_string();
    let q = |v: Option<&Value>| v.filter(|x| !x.is_null()).map(|x| quantity(Some(x)));
    let pct = |v: Option<&Value>| v.and_then(Value::as_i64).map(|p| format!("{p}%"));
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let cur = |section: &str, field: &str| {
            status.and_then(|st| present(st, &format!("/{section}/current/{field}")))
        };
        let has_status =
            |section: &str| status.is_some_and(|st| present(st, &format!("/{section}")).is_some());
        let entry = match st(spec, "/type") {
            section @ ("External" | "Object") => {
                let key = if section == "External" {
                    "external"
                } else {
                    "object"
                };
                if let Some(target) = present(spec, &format!("/{key}/target/averageValue")) {
                    let current = q(cur(key, "averageValue")).unwrap_or_else(unknown);
                    format!("{current}/{} (avg)", quantity(Some(target)))
                } else {
                    let current = if has_status(key) {
                        quantity(cur(key, "value"))
                    } else {
                        unknown()
                    };
                    format!(
                        "{current}/{}",
                        quantity(spec.pointer(&format!("/{key}/target/value")))
                    )
                }
            }
            "Pods" => {
                let current = if has_status("pods") {
                    quantity(cur("pods", "averageValue"))
                } else {
                    unknown()
                };
                format!(
                    "{current}/{}",
                    quantity(spec.pointer("/pods/target/averageValue"))
                )
            }
            section @ ("Resource" | "ContainerResource") => {
                let key = if section == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let res = st(spec, &format!("/{key}/name"));
                if let Some(target) = present(spec, &format!("/{key}/target/averageValue")) {
                    let current = q(cur(key, "averageValue")).unwrap_or_else(unknown);
                    format!("{res}: {current}/{}", quantity(Some(target)))
                } else {
                    let current = pct(cur(key, "averageUtilization")).unwrap_or_else(unknown);
                    let target = pct(spec.pointer(&format!("/{key}/target/averageUtilization")))
                        .unwrap_or_else(|| "<auto>".to_string());
                    format!("{res}: {current}/{target}")
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(entry);
    }
    let max = 2;
    if list.len() > max {
        let more = list.len() - max;
        list.truncate(max);
        return format!("{} + {more} more...", list.join(", "));
    }
    list.join(", ")
}

/// `extractCSRStatus`.
fn csr_condition(o: &Value) -> String {
    let conditions = arr(o, "/status/conditions");
    let has = |t: &str| conditions.iter().any(|c| st(c, "/type") == t);
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !st(o, "/status/certificate").is_empty() {
        status.push_str(",Issued");
    }
    status
}

/// The controller owner as `kind.group/name` (lower-case kind), or `<none>`.
fn controller_of(o: &Value) -> String {
    let Some(owner) = arr(o, "/metadata/ownerReferences")
        .iter()
        .find(|r| boolean(r, "/controller") == Some(true))
    else {
        return "<none>".to_string();
    };
    let api_version = st(owner, "/apiVersion");
    let group = match api_version.split_once('/') {
        Some((g, _)) => g,
        None => "",
    };
    let kind = st(owner, "/kind");
    let name = st(owner, "/name");
    if kind.is_empty() && group.is_empty() {
        return name.to_string();
    }
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    format!("{}/{name}", group_kind.to_lowercase())
}

fn resource_quota_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<&String> = o
        .pointer("/status/hard")
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for r in resources {
        let used = quantity(o.pointer("/status/used").and_then(|u| u.get(r.as_str())));
        let hard = quantity(o.pointer("/status/hard").and_then(|h| h.get(r.as_str())));
        let entry = format!("{r}: {used}/{hard}");
        let is_limit = r.split('.').count() > 1 && r.split('.').next() == Some("limits");
        if is_limit {
            limits.push(entry)
        } else {
            requests.push(entry)
        }
    }
    vec![
        name(o),
        s(requests.join(", ")),
        s(limits.join(", ")),
        age(o, now),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::registry::strategy::Plain;

    fn def(group: &str, version: &str, kind: &str) -> ResourceDef {
        ResourceDef {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
            singular: kind.to_lowercase(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            subresources: vec![],
            verbs: vec![],
            storage_prefix: String::new(),
            storage_version: true,
            strategy: Arc::new(Plain),
            conversion: None,
        }
    }

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    /// (name, priority) of each column.
    fn columns(t: &Value) -> Vec<(String, i64)> {
        t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["priority"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    fn cols(spec: &[(&str, i64)]) -> Vec<(String, i64)> {
        spec.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    fn table(group: &str, kind: &str, items: &[Value]) -> Value {
        build_table_at(
            &def(group, "v1", kind),
            items,
            IncludeObject::Metadata,
            json!({"resourceVersion": "42"}),
            true,
            now(),
        )
    }

    #[test]
    fn human_duration_matches_upstream() {
        let d = |secs: i64| human_duration(SignedDuration::from_secs(secs));
        assert_eq!(d(-5), "<invalid>");
        assert_eq!(d(-1), "0s");
        assert_eq!(d(0), "0s");
        assert_eq!(d(5), "5s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(120), "2m");
        assert_eq!(d(200), "3m20s");
        assert_eq!(d(599), "9m59s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3 * 3600 - 1), "179m");
        assert_eq!(d(3 * 3600), "3h");
        assert_eq!(d(5 * 3600 + 30 * 60), "5h30m");
        assert_eq!(d(8 * 3600), "8h");
        assert_eq!(d(47 * 3600 + 59 * 60), "47h");
        assert_eq!(d(2 * 86400), "2d");
        assert_eq!(d(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(d(8 * 86400 + 5 * 3600), "8d");
        assert_eq!(d(400 * 86400), "400d");
        assert_eq!(d(730 * 86400), "2y");
        assert_eq!(d(760 * 86400), "2y30d");
        assert_eq!(d(9 * 365 * 86400), "9y");
        // Sub-second parts are truncated like Go's int(d.Seconds()).
        assert_eq!(human_duration(SignedDuration::from_millis(1999)), "1s");
        assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
    }

    #[test]
    fn canonical_quantities() {
        for (input, want) in [
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1000Mi", "1000Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5", "500m"),
            ("100m", "100m"),
            ("1000m", "1"),
            ("1500M", "1500M"),
            ("2000", "2k"),
            ("12e6", "12e6"),
            ("512", "512"),
            ("100Ki", "100Ki"),
            ("0.5Ki", "512"),
            ("0Gi", "0"),
            ("-1Gi", "-1Gi"),
            ("0.0000000001", "1n"),
            ("garbage", "garbage"),
        ] {
            assert_eq!(canonical_quantity(input), want, "{input}");
        }
    }

    #[test]
    fn pods() {
        let running = json!({
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2025-06-01T11:56:40Z", "uid": "u1"},
            "spec": {"nodeName": "node1", "containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.42.0.5",
                "podIPs": [{"ip": "10.42.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2025-06-01T11:57:00Z"}}},
                    {"name": "b", "ready": true, "restartCount": 2,
                     "state": {"running": {"startedAt": "2025-06-01T11:55:00Z"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:55:00Z"}}},
                ]
            }
        });
        let crashing = json!({
            "metadata": {"name": "crash", "creationTimestamp": "2025-05-30T12:00:00Z"},
            "spec": {"containers": [{"name": "a", "image": "x"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:59:30Z"}}}
            ]}
        });
        let init = json!({
            "metadata": {"name": "init", "creationTimestamp": "2025-06-01T11:59:55Z"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}],
                     "readinessGates": [{"conditionType": "example.com/gate"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "state": {"running": {}}}
            ], "conditions": [{"type": "example.com/gate", "status": "False"}]}
        });
        let done = json!({
            "metadata": {"name": "done", "creationTimestamp": "2025-06-01T10:00:00Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]}
        });
        let deleting = json!({
            "metadata": {"name": "bye", "creationTimestamp": "2025-06-01T11:00:00Z", "deletionTimestamp": "2025-06-01T11:59:00Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running"}
        });
        let lost = json!({
            "metadata": {"name": "lost", "creationTimestamp": "2025-06-01T11:00:00Z", "deletionTimestamp": "2025-06-01T11:59:00Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "reason": "NodeLost"}
        });
        let t = table("", "Pod", &[running, crashing, init, done, deleting, lost]);
        assert_eq!(
            columns(&t),
            cols(&[
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ])
        );
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["columnDefinitions"][0]["type"], "string");
        assert!(
            t["columnDefinitions"][4]["description"]
                .as_str()
                .unwrap()
                .starts_with("CreationTimestamp is a timestamp")
        );
        assert!(
            t["columnDefinitions"][5]["description"]
                .as_str()
                .unwrap()
                .contains("IP address allocated to the pod")
        );
        let rows = t["rows"].as_array().unwrap();
        assert_eq!(
            rows[0]["cells"],
            json!([
                "web-1",
                "2/2",
                "Running",
                "2 (5m ago)",
                "3m20s",
                "10.42.0.5",
                "node1",
                "<none>",
                "<none>"
            ])
        );
        assert_eq!(
            rows[1]["cells"],
            json!([
                "crash",
                "0/1",
                "CrashLoopBackOff",
                "5 (30s ago)",
                "2d",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ])
        );
        assert_eq!(
            rows[2]["cells"],
            json!([
                "init", "0/1", "Init:1/2", "0", "5s", "<none>", "<none>", "<none>", "0/1"
            ])
        );
        assert_eq!(rows[3]["cells"][2], "Completed");
        assert_eq!(
            rows[3]["conditions"],
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
        );
        assert!(rows[0].get("conditions").is_none());
        assert_eq!(rows[4]["cells"][2], "Terminating");
        assert_eq!(rows[5]["cells"][2], "Unknown");
        assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(rows[0]["object"]["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(rows[0]["object"]["metadata"]["uid"], "u1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    }

    #[test]
    fn pod_init_failures_and_sidecars() {
        let failing = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        let sidecar = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "side", "restartPolicy": "Always"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "side", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}}}],
                "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        });
        let t = table("", "Pod", &[failing, sidecar]);
        assert_eq!(
            t["rows"][0]["cells"].as_array().unwrap()[1..4],
            json!(["0/1", "Init:CrashLoopBackOff", "3"])
                .as_array()
                .unwrap()[..]
        );
        assert_eq!(
            t["rows"][1]["cells"].as_array().unwrap()[1..4],
            json!(["2/2", "Running", "1"]).as_array().unwrap()[..]
        );
        // Missing creationTimestamp reads as Go's zero time.
        assert_eq!(t["rows"][0]["cells"][4], "<unknown>");
    }

    #[test]
    fn include_object_modes() {
        let pod = json!({"metadata": {"name": "a"}, "spec": {"containers": []}});
        let d = def("", "v1", "Pod");
        let none = build_table_at(
            &d,
            std::slice::from_ref(&pod),
            IncludeObject::None,
            json!({}),
            true,
            now(),
        );
        assert_eq!(none["rows"][0]["object"], Value::Null);
        let full = build_table_at(
            &d,
            std::slice::from_ref(&pod),
            IncludeObject::Object,
            json!({}),
            true,
            now(),
        );
        assert_eq!(full["rows"][0]["object"], pod);
        let watch_row = build_table_at(
            &d,
            std::slice::from_ref(&pod),
            IncludeObject::None,
            json!({}),
            false,
            now(),
        );
        assert_eq!(watch_row["columnDefinitions"], Value::Null);
        assert_eq!(watch_row["rows"][0]["cells"][0], "a");
        assert_eq!(IncludeObject::parse(""), Some(IncludeObject::Metadata));
        assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
        assert_eq!(IncludeObject::parse("bogus"), None);
    }

    #[test]
    fn deployments_and_replicasets() {
        let deploy = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-06-01T07:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let t = table("apps", "Deployment", &[deploy]);
        assert_eq!(
            columns(&t),
            cols(&[
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1)
            ])
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "2/3",
                3,
                2,
                "5h",
                "nginx,side",
                "nginx:1.27,busybox",
                "app=web"
            ])
        );

        let rs = json!({
            "metadata": {"name": "web-abc", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "abc"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}},
            "status": {"replicas": 3, "readyReplicas": 1}
        });
        let t = table("apps", "ReplicaSet", &[rs]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web-abc",
                3,
                3,
                1,
                "60m",
                "nginx",
                "nginx",
                "app=web,pod-template-hash=abc"
            ])
        );
    }

    #[test]
    fn jobs_and_cronjobs() {
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2025-06-01T11:50:00Z"},
            "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "x"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": "2025-06-01T11:50:00Z", "completionTime": "2025-06-01T11:50:42Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}
        });
        let running = json!({
            "metadata": {"name": "par", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "spec": {"parallelism": 3, "template": {"spec": {"containers": []}}},
            "status": {"startTime": "2025-06-01T11:59:00Z"}
        });
        let t = table("batch", "Job", &[job, running]);
        assert_eq!(
            columns(&t),
            cols(&[
                ("Name", 0),
                ("Status", 0),
                ("Completions", 0),
                ("Duration", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1)
            ])
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "pi",
                "Complete",
                "1/1",
                "42s",
                "10m",
                "pi",
                "perl",
                "batch.kubernetes.io/controller-uid=x"
            ])
        );
        assert_eq!(
            t["rows"][1]["cells"],
            json!(["par", "Running", "0/1 of 3", "60s", "60s", "", "", "<none>"])
        );

        let cj = json!({
            "metadata": {"name": "hello", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
            "status": {"lastScheduleTime": "2025-06-01T11:55:00Z", "active": [{"name": "hello-1"}]}
        });
        let t = table("batch", "CronJob", &[cj]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "hello",
                "*/5 * * * *",
                "<none>",
                "False",
                1,
                "5m",
                "60m",
                "hello",
                "busybox",
                "<none>"
            ])
        );
    }

    #[test]
    fn services() {
        let cluster_ip = json!({
            "metadata": {"name": "kubernetes", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"],
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}
        });
        let node_port = json!({
            "metadata": {"name": "np", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.9", "selector": {"app": "web", "tier": "fe"},
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}
        });
        let lb = json!({
            "metadata": {"name": "lb", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.10", "ports": [{"port": 80, "nodePort": 31000}]},
            "status": {"loadBalancer": {}}
        });
        let headless = json!({
            "metadata": {"name": "hl", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"]}
        });
        let ext = json!({
            "metadata": {"name": "ext", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}
        });
        let t = table("", "Service", &[cluster_ip, node_port, lb, headless, ext]);
        assert_eq!(
            columns(&t),
            cols(&[
                ("Name", 0),
                ("Type", 0),
                ("Cluster-IP", 0),
                ("External-IP", 0),
                ("Port(s)", 0),
                ("Age", 0),
                ("Selector", 1)
            ])
        );
        let rows = t["rows"].as_array().unwrap();
        assert_eq!(
            rows[0]["cells"],
            json!([
                "kubernetes",
                "ClusterIP",
                "10.43.0.1",
                "<none>",
                "443/TCP",
                "60m",
                "<none>"
            ])
        );
        assert_eq!(
            rows[1]["cells"],
            json!([
                "np",
                "NodePort",
                "10.43.0.9",
                "<none>",
                "80:30080/TCP,53/UDP",
                "60m",
                "app=web,tier=fe"
            ])
        );
        assert_eq!(rows[2]["cells"][3], "<pending>");
        assert_eq!(rows[2]["cells"][4], "80:31000/TCP");
        assert_eq!(
            rows[3]["cells"].as_array().unwrap()[1..5],
            json!(["ClusterIP", "None", "<none>", "<none>"])
                .as_array()
                .unwrap()[..]
        );
        assert_eq!(
            rows[4]["cells"].as_array().unwrap()[1..4],
            json!(["ExternalName", "<none>", "example.com"])
                .as_array()
                .unwrap()[..]
        );
    }

    #[test]
    fn nodes() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2025-05-01T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "true", "kubernetes.io/hostname": "n1"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "n1"}],
                "nodeInfo": {"kubeletVersion": "v1.33.1+rk3s", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": "rk3s://0.1.0"}
            }
        });
        let bare = json!({"metadata": {"name": "n2", "creationTimestamp": "2025-06-01T11:00:00Z"}});
        let t = table("", "Node", &[node, bare]);
        assert_eq!(
            columns(&t),
            cols(&[
                ("Name", 0),
                ("Status", 0),
                ("Roles", 0),
                ("Age", 0),
                ("Version", 0),
                ("Internal-IP", 1),
                ("External-IP", 1),
                ("OS-Image", 1),
                ("Kernel-Version", 1),
                ("Container-Runtime", 1)
            ])
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane,master",
                "31d",
                "v1.33.1+rk3s",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0",
                "rk3s://0.1.0"
            ])
        );
        assert_eq!(
            t["rows"][1]["cells"],
            json!([
                "n2",
                "Unknown",
                "<none>",
                "60m",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ])
        );
    }

    #[test]
    fn events_both_apis() {
        let core_event = json!({
            "metadata": {"name": "web-1.17f", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{a}"},
            "reason": "Pulled", "type": "Normal", "message": "Successfully pulled image\n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2025-06-01T11:00:00Z", "lastTimestamp": "2025-06-01T11:58:00Z", "count": 4
        });
        let t = table("", "Event", &[core_event]);
        assert_eq!(
            columns(&t),
            cols(&[
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1)
            ])
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "2m",
                "Normal",
                "Pulled",
                "pod/web-1",
                "spec.containers{a}",
                "kubelet, n1",
                "Successfully pulled image",
                "60m",
                4,
                "web-1.17f"
            ])
        );
        let new_event = json!({
            "metadata": {"name": "e2"},
            "regarding": {"kind": "Node", "name": "n1"},
            "reason": "Starting", "type": "Normal", "note": "Starting rk3s",
            "reportingController": "rk3s", "reportingInstance": "n1",
            "eventTime": "2025-06-01T11:59:50.123456Z"
        });
        let t = build_table_at(
            &def("events.k8s.io", "v1", "Event"),
            &[new_event],
            IncludeObject::None,
            json!({}),
            true,
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "9s",
                "Normal",
                "Starting",
                "node/n1",
                "",
                "rk3s, n1",
                "Starting rk3s",
                "9s",
                1,
                "e2"
            ])
        );
    }

    #[test]
    fn small_kinds() {
        let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": "2025-06-01T11:59:00Z"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            table("", "ConfigMap", &[cm])["rows"][0]["cells"],
            json!(["cfg", 3, "60s"])
        );
        let secret = json!({"metadata": {"name": "tls", "creationTimestamp": "2025-06-01T11:59:00Z"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        let t = table("", "Secret", &[secret]);
        assert_eq!(
            columns(&t),
            cols(&[("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)])
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["tls", "kubernetes.io/tls", 2, "60s"])
        );
        let sa =
            json!({"metadata": {"name": "default", "creationTimestamp": "2025-06-01T11:59:00Z"}});
        assert_eq!(
            table("", "ServiceAccount", &[sa])["rows"][0]["cells"],
            json!(["default", 0, "60s"])
        );
        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": "2025-06-01T11:59:00Z"}, "status": {"phase": "Active"}});
        assert_eq!(
            table("", "Namespace", &[ns])["rows"][0]["cells"],
            json!(["kube-system", "Active", "60s"])
        );
        let lease = json!({"metadata": {"name": "n1", "creationTimestamp": "2025-06-01T11:59:00Z"}, "spec": {"holderIdentity": "n1"}});
        let t = table("coordination.k8s.io", "Lease", &[lease]);
        assert_eq!(columns(&t), cols(&[("Name", 0), ("Holder", 0), ("Age", 0)]));
        assert_eq!(t["rows"][0]["cells"], json!(["n1", "n1", "60s"]));
        let ep = json!({"metadata": {"name": "kubernetes", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}], "ports": [{"port": 6443}]}]});
        assert_eq!(
            table("", "Endpoints", &[ep])["rows"][0]["cells"],
            json!([
                "kubernetes",
                "10.0.0.1:6443,10.0.0.2:6443,[fd00::3]:6443 + 1 more...",
                "60s"
            ])
        );
        let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": "2025-06-01T11:59:00Z",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            table("storage.k8s.io", "StorageClass", &[sc])["rows"][0]["cells"],
            json!([
                "local-path (default)",
                "rancher.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                false,
                "60s"
            ])
        );
        let pvc = json!({"metadata": {"name": "data", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "spec": {"volumeName": "pv-1", "storageClassName": "local-path", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "capacity": {"storage": "1024Mi"}, "accessModes": ["ReadWriteOnce"]}});
        let t = table("", "PersistentVolumeClaim", &[pvc]);
        assert_eq!(
            columns(&t),
            cols(&[
                ("Name", 0),
                ("Status", 0),
                ("Volume", 0),
                ("Capacity", 0),
                ("Access Modes", 0),
                ("StorageClass", 0),
                ("VolumeAttributesClass", 0),
                ("Age", 0),
                ("VolumeMode", 1)
            ])
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "data",
                "Bound",
                "pv-1",
                "1Gi",
                "RWO",
                "local-path",
                "<unset>",
                "60s",
                "Filesystem"
            ])
        );
        let rb = json!({"metadata": {"name": "rb", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot", "namespace": "ci"}, {"kind": "Group", "name": "devs"}]});
        assert_eq!(
            table("rbac.authorization.k8s.io", "RoleBinding", &[rb])["rows"][0]["cells"],
            json!(["rb", "ClusterRole/view", "60s", "alice", "devs", "ci/bot"])
        );
        let cr = json!({"metadata": {"name": "web-7d9", "creationTimestamp": "2025-06-01T11:59:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]}, "revision": 2});
        assert_eq!(
            table("apps", "ControllerRevision", &[cr])["rows"][0]["cells"],
            json!(["web-7d9", "statefulset.apps/web", 2, "60s"])
        );
        let rq = json!({"metadata": {"name": "q", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi"}, "used": {"pods": "3", "requests.memory": "512Mi"}}});
        assert_eq!(
            table("", "ResourceQuota", &[rq])["rows"][0]["cells"],
            json!([
                "q",
                "pods: 3/10, requests.memory: 512Mi/1Gi",
                "limits.cpu: 0/2",
                "60s"
            ])
        );
    }

    #[test]
    fn default_table_for_other_kinds() {
        let role =
            json!({"metadata": {"name": "admin", "creationTimestamp": "2025-06-01T11:59:00.5Z"}});
        for (group, kind) in [
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
            ("", "LimitRange"),
        ] {
            let t = table(group, kind, std::slice::from_ref(&role));
            assert_eq!(
                columns(&t),
                cols(&[("Name", 0), ("Created At", 0)]),
                "{kind}"
            );
            assert_eq!(t["columnDefinitions"][1]["type"], "date");
            assert_eq!(t["columnDefinitions"][1]["format"], "");
            assert_eq!(
                t["rows"][0]["cells"],
                json!(["admin", "2025-06-01T11:59:00Z"])
            );
        }
    }

    #[test]
    fn hpa_metrics_text() {
        let v2 = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                                 {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1024Mi"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]}
        });
        let t = build_table_at(
            &def("autoscaling", "v2", "HorizontalPodAutoscaler"),
            &[v2],
            IncludeObject::None,
            json!({}),
            true,
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "Deployment/web",
                "cpu: 12%/80%, memory: <unknown>/1Gi",
                "1",
                5,
                2,
                "60s"
            ])
        );
        let v1 = json!({
            "metadata": {"name": "old"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "old"}, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}
        });
        let t = build_table_at(
            &def("autoscaling", "v1", "HorizontalPodAutoscaler"),
            &[v1],
            IncludeObject::None,
            json!({}),
            true,
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"].as_array().unwrap()[2..4],
            json!(["cpu: <unknown>/50%", "<unset>"]).as_array().unwrap()[..]
        );
    }
}
