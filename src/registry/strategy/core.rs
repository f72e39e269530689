//! core/v1 kinds other than pods and services: namespaces, secrets,
//! config maps, nodes, persistent volumes and claims, events, endpoints,
//! replication controllers, pod templates, limit ranges, resource quotas,
//! service accounts.

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};

use super::defaults;
use super::quantity;
use super::typed;
use super::util::{
    self, arr, child, child_opt, each_obj_mut, get, join, s, set_default, set_default_str,
};
use super::validation;
use crate::api::status::FieldError;
use crate::registry::names;
use crate::registry::strategy::{NameRule, Strategy};

/// Upstream's limit on the data of a Secret or ConfigMap (1 MiB).
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

fn status_reset(obj: &mut Value, status: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
    }
}

fn spec_mut(obj: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    obj.as_object_mut().and_then(|m| child(m, "spec"))
}

// ---------------------------------------------------------------- Namespace

pub struct NamespaceStrategy;

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[async_trait]
impl Strategy for NamespaceStrategy {
    fn default(&self, obj: &mut Value) {
        let name = s(obj, "/metadata/name").to_string();
        if name.is_empty() {
            return;
        }
        if let Some(labels) = obj
            .as_object_mut()
            .and_then(|m| child(m, "metadata"))
            .and_then(|m| child(m, "labels"))
        {
            labels.insert(NAMESPACE_NAME_LABEL.into(), json!(name));
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "Namespace", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        status_reset(obj, json!({"phase": "Active"}));
        if let Some(spec) = spec_mut(obj) {
            let list = spec.entry("finalizers").or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            if let Some(l) = list.as_array_mut()
                && !l.iter().any(|f| f == "kubernetes")
            {
                l.push(json!("kubernetes"));
            }
        }
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers change only through the finalize subresource.
        let fins = old.pointer("/spec/finalizers").cloned();
        if let Some(spec) = spec_mut(new) {
            match fins {
                Some(f) => spec.insert("finalizers".into(), f),
                None => spec.remove("finalizers"),
            };
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, f) in arr(obj, "/spec/finalizers").iter().enumerate() {
            let f = f.as_str().unwrap_or("");
            for m in names::is_qualified_name(f) {
                errs.push(FieldError::invalid(util::idx("spec.finalizers", i), f, m));
            }
        }
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.phase").then(|| s(obj, "/status/phase").to_string())
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }
}

// ---------------------------------------------------------------- Secret / ConfigMap

fn validate_data_keys(
    errs: &mut Vec<FieldError>,
    obj: &Value,
    field: &str,
    seen: &mut Vec<String>,
) -> usize {
    let mut size = 0;
    let Some(m) = util::map(obj, &format!("/{field}")) else {
        return 0;
    };
    for (k, v) in m {
        for msg in names::is_config_map_key(k) {
            errs.push(FieldError::invalid(util::key(field, k), k, msg));
        }
        if seen.contains(k) {
            errs.push(FieldError::invalid(
                util::key(field, k),
                k,
                "duplicate of key present in data",
            ));
        }
        seen.push(k.clone());
        size += v.as_str().map(str::len).unwrap_or(0);
    }
    size
}

fn validate_immutable_data(errs: &mut Vec<FieldError>, new: &Value, old: &Value, fields: &[&str]) {
    if util::flag(old, "/immutable") != Some(true) {
        return;
    }
    const MSG: &str = "field is immutable when `immutable` is set";
    if util::flag(new, "/immutable") != Some(true) {
        errs.push(FieldError::forbidden("immutable", MSG));
    }
    for f in fields {
        let p = format!("/{f}");
        let empty =
            |v: Option<&Value>| v.is_none_or(|v| v.as_object().is_some_and(|m| m.is_empty()));
        let (n, o) = (get(new, &p), get(old, &p));
        if n != o && !(empty(n) && empty(o)) {
            errs.push(FieldError::forbidden(*f, MSG));
        }
    }
}

pub struct SecretStrategy;

#[async_trait]
impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else { return };
        set_default_str(m, "type", "Opaque");
        // stringData is write-only: merged into data, never stored.
        if let Some(Value::Object(sd)) = m.remove("stringData")
            && !sd.is_empty()
            && let Some(data) = child(m, "data")
        {
            for (k, v) in sd {
                let text = v.as_str().unwrap_or("");
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "Secret", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut size = 0;
        if let Some(m) = util::map(obj, "/data") {
            for (k, v) in m {
                for msg in names::is_config_map_key(k) {
                    errs.push(FieldError::invalid(util::key("data", k), k, msg));
                }
                // Stored base64; upstream counts decoded bytes.
                size += v.as_str().map(|x| x.len() * 3 / 4).unwrap_or(0);
            }
        }
        if size > MAX_DATA_SIZE {
            errs.push(util::too_long("data", MAX_DATA_SIZE));
        }
        let has = |k: &str| {
            util::map(obj, "/data")
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        };
        let data_value = |k: &str| -> Option<Vec<u8>> {
            let v = util::map(obj, "/data")?.get(k)?.as_str()?;
            base64::engine::general_purpose::STANDARD.decode(v).ok()
        };
        match s(obj, "/type") {
            "kubernetes.io/service-account-token"
                if s(
                    obj,
                    "/metadata/annotations/kubernetes.io~1service-account.name",
                )
                .is_empty() =>
            {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                ));
            }
            "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
                let k = if s(obj, "/type") == "kubernetes.io/dockercfg" {
                    ".dockercfg"
                } else {
                    ".dockerconfigjson"
                };
                match data_value(k) {
                    None => errs.push(FieldError::required(util::key("data", k))),
                    Some(bytes) => {
                        if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
                            errs.push(FieldError::invalid(
                                util::key("data", k),
                                "<secret contents redacted>",
                                e.to_string(),
                            ));
                        }
                    }
                }
            }
            "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
                errs.push(FieldError::required("data[username]"));
                errs.push(FieldError::required("data[password]"));
            }
            "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => {
                errs.push(FieldError::required("data[ssh-privatekey]"));
            }
            "kubernetes.io/tls" => {
                for k in ["tls.crt", "tls.key"] {
                    if util::map(obj, "/data").and_then(|m| m.get(k)).is_none() {
                        errs.push(FieldError::required(util::key("data", k)));
                    }
                }
            }
            "" => errs.push(FieldError::required("type")),
            _ => {}
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_immutable(&mut errs, new, old, "type");
        validate_immutable_data(&mut errs, new, old, &["data"]);
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "type").then(|| s(obj, "/type").to_string())
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }
}

pub struct ConfigMapStrategy;

#[async_trait]
impl Strategy for ConfigMapStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "ConfigMap", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut seen = Vec::new();
        let mut size = validate_data_keys(&mut errs, obj, "data", &mut seen);
        // binaryData keys may not repeat data keys.
        if let Some(m) = util::map(obj, "/binaryData") {
            for (k, v) in m {
                for msg in names::is_config_map_key(k) {
                    errs.push(FieldError::invalid(util::key("binaryData", k), k, msg));
                }
                if seen.contains(k) {
                    errs.push(FieldError::invalid(
                        util::key("data", k),
                        k,
                        "duplicate of key present in binaryData",
                    ));
                }
                size += v.as_str().map(|x| x.len() * 3 / 4).unwrap_or(0);
            }
        }
        if size > MAX_DATA_SIZE {
            errs.push(util::too_long("", MAX_DATA_SIZE));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_immutable_data(&mut errs, new, old, &["data", "binaryData"]);
        errs
    }
}

// ---------------------------------------------------------------- ServiceAccount

pub struct ServiceAccountStrategy;

#[async_trait]
impl Strategy for ServiceAccountStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "ServiceAccount", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, sec) in arr(obj, "/secrets").iter().enumerate() {
            let n = s(sec, "/name");
            if !n.is_empty() {
                for m in names::is_dns1123_subdomain(n) {
                    errs.push(FieldError::invalid(
                        join(&util::idx("secrets", i), "name"),
                        n,
                        m,
                    ));
                }
            }
        }
        errs
    }
}

// ---------------------------------------------------------------- Node

pub struct NodeStrategy;

fn valid_cidr(s: &str) -> bool {
    crate::registry::allocator::Cidr::parse(s).is_some()
}

#[async_trait]
impl Strategy for NodeStrategy {
    fn default(&self, obj: &mut Value) {
        // Allocatable defaults to capacity (SetDefaults_NodeStatus).
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
            && !util::is_set(status, "allocatable")
            && let Some(cap) = status.get("capacity").filter(|c| !c.is_null()).cloned()
        {
            status.insert("allocatable".into(), cap);
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "Node", obj)
    }
    // Nodes keep everything on create, status included (kubelets register with it).
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let cidr = s(obj, "/spec/podCIDR");
        if !cidr.is_empty() && !valid_cidr(cidr) {
            errs.push(FieldError::invalid(
                "spec.podCIDR",
                cidr,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
        for (i, c) in arr(obj, "/spec/podCIDRs").iter().enumerate() {
            let c = c.as_str().unwrap_or("");
            if !valid_cidr(c) {
                errs.push(FieldError::invalid(
                    util::idx("spec.podCIDRs", i),
                    c,
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                ));
            }
        }
        for (i, t) in arr(obj, "/spec/taints").iter().enumerate() {
            let p = util::idx("spec.taints", i);
            let k = s(t, "/key");
            if k.is_empty() {
                errs.push(FieldError::required(join(&p, "key")));
            }
            for m in names::is_qualified_name(k)
                .into_iter()
                .filter(|_| !k.is_empty())
            {
                errs.push(FieldError::invalid(join(&p, "key"), k, m));
            }
            let v = s(t, "/value");
            for m in names::is_valid_label_value(v) {
                errs.push(FieldError::invalid(join(&p, "value"), v, m));
            }
            util::check_enum(
                &mut errs,
                &join(&p, "effect"),
                t.get("effect"),
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
                true,
            );
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let old_cidrs = arr(old, "/spec/podCIDRs");
        if !old_cidrs.is_empty() && arr(new, "/spec/podCIDRs") != old_cidrs {
            errs.push(FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_pid = s(old, "/spec/providerID");
        if !old_pid.is_empty() && s(new, "/spec/providerID") != old_pid {
            errs.push(FieldError::forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "spec.unschedulable").then(|| {
            util::flag(obj, "/spec/unschedulable")
                .unwrap_or(false)
                .to_string()
        })
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
}

// ---------------------------------------------------------------- PersistentVolume(Claim)

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn validate_access_modes(errs: &mut Vec<FieldError>, obj: &Value, field: &str) {
    let modes = arr(obj, &util::ptr(field));
    if modes.is_empty() {
        errs.push(util::required(field, "at least 1 access mode is required"));
    }
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(FieldError::not_supported(field, m, ACCESS_MODES));
        }
    }
    if modes.iter().any(|m| m == "ReadWriteOncePod") && modes.len() > 1 {
        errs.push(FieldError::forbidden(
            field,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn validate_storage_quantity(errs: &mut Vec<FieldError>, v: Option<&Value>, field: &str) {
    match v {
        None => errs.push(FieldError::required(field)),
        Some(v) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match quantity::parse(&text) {
                Err(e) => errs.push(FieldError::invalid(field, &text, e)),
                Ok(q) if q.0 <= 0 => errs.push(FieldError::invalid(
                    field,
                    &text,
                    "must be greater than zero",
                )),
                Ok(_) => {}
            }
        }
    }
}

pub struct PersistentVolumeStrategy;

const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

#[async_trait]
impl Strategy for PersistentVolumeStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            set_default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
            set_default_str(spec, "volumeMode", "Filesystem");
            if let Some(hp) = child_opt(spec, "hostPath") {
                set_default(hp, "type", json!(""));
            }
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "PersistentVolume", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        status_reset(obj, json!({"phase": "Pending"}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_access_modes(&mut errs, obj, "spec.accessModes");
        match util::map(obj, "/spec/capacity") {
            Some(cap) if !cap.is_empty() => {
                validate_storage_quantity(&mut errs, cap.get("storage"), "spec.capacity[storage]")
            }
            _ => errs.push(FieldError::required("spec.capacity")),
        }
        let n = PV_SOURCES
            .iter()
            .filter(|k| get(obj, &format!("/spec/{k}")).is_some())
            .count();
        if n == 0 {
            errs.push(util::required("spec", "must specify a volume type"));
        } else if n > 1 {
            errs.push(FieldError::forbidden(
                "spec",
                "may not specify more than 1 volume type",
            ));
        }
        util::check_enum(
            &mut errs,
            "spec.persistentVolumeReclaimPolicy",
            obj.pointer("/spec/persistentVolumeReclaimPolicy"),
            &["Delete", "Recycle", "Retain"],
            false,
        );
        util::check_enum(
            &mut errs,
            "spec.volumeMode",
            obj.pointer("/spec/volumeMode"),
            &["Block", "Filesystem"],
            false,
        );
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let src = |o: &Value| -> Vec<(String, Value)> {
            PV_SOURCES
                .iter()
                .filter_map(|k| get(o, &format!("/spec/{k}")).map(|v| (k.to_string(), v.clone())))
                .collect()
        };
        if src(new) != src(old) {
            errs.push(FieldError::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        util::check_immutable(&mut errs, new, old, "spec.volumeMode");
        errs
    }
}

pub struct PersistentVolumeClaimStrategy;

#[async_trait]
impl Strategy for PersistentVolumeClaimStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            set_default_str(spec, "volumeMode", "Filesystem");
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "PersistentVolumeClaim", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        status_reset(obj, json!({"phase": "Pending"}));
    }
    /// The DefaultStorageClass admission plugin (src/controllers/localpath.rs).
    async fn allocate(
        &self,
        ctx: &crate::registry::strategy::Ctx<'_>,
        obj: &mut Value,
    ) -> Result<(), crate::api::status::ApiError> {
        crate::controllers::localpath::admit_default_class(ctx.store, obj).await
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_access_modes(&mut errs, obj, "spec.accessModes");
        validate_storage_quantity(
            &mut errs,
            obj.pointer("/spec/resources/requests/storage"),
            "spec.resources[storage]",
        );
        util::check_enum(
            &mut errs,
            "spec.volumeMode",
            obj.pointer("/spec/volumeMode"),
            &["Block", "Filesystem"],
            false,
        );
        if let Some(sel) = get(obj, "/spec/selector") {
            validation::validate_label_selector(&mut errs, sel, "spec.selector");
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut n = new.get("spec").cloned().unwrap_or(Value::Null);
        let o = old.get("spec").cloned().unwrap_or(Value::Null);
        // A bound claim may change its storage request; nothing else changes.
        let bound = s(old, "/status/phase") == "Bound";
        let parse = |v: Option<&Value>| {
            v.and_then(|v| match v {
                Value::String(s) => quantity::parse(s).ok(),
                other => quantity::parse(&other.to_string()).ok(),
            })
        };
        if bound {
            let new_size = parse(new.pointer("/spec/resources/requests/storage"));
            let old_size = parse(old.pointer("/spec/resources/requests/storage"));
            if let (Some(ns), Some(os)) = (new_size, old_size) {
                let floor = parse(old.pointer("/status/capacity/storage")).unwrap_or(os);
                if ns < floor {
                    errs.push(FieldError::forbidden(
                        "spec.resources.requests.storage",
                        if old.pointer("/status/capacity/storage").is_some() {
                            "field can not be less than status.capacity"
                        } else {
                            "field can not be less than previous value"
                        },
                    ));
                }
            }
            if let Some(v) = o.pointer("/resources/requests/storage").cloned()
                && let Some(req) = n
                    .pointer_mut("/resources/requests")
                    .and_then(Value::as_object_mut)
            {
                req.insert("storage".into(), v);
            }
        }
        // volumeName may be set once (binding).
        if s(&o, "/volumeName").is_empty()
            && let Some(m) = n.as_object_mut()
        {
            match o.get("volumeName") {
                Some(v) => m.insert("volumeName".into(), v.clone()),
                None => m.remove("volumeName"),
            };
        }
        if n != o {
            let mut keys: Vec<&String> = n
                .as_object()
                .into_iter()
                .chain(o.as_object())
                .flat_map(|m| m.keys())
                .collect();
            keys.sort();
            keys.dedup();
            let diff: Vec<String> = keys
                .into_iter()
                .filter(|k| n.get(k.as_str()) != o.get(k.as_str()))
                .map(|k| format!("  \t{k}"))
                .collect();
            errs.push(FieldError::forbidden(
                "spec",
                format!("spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n  core.PersistentVolumeClaimSpec{{\n{}\n  }}\n", diff.join("\n")),
            ));
        }
        errs
    }
}

// ---------------------------------------------------------------- Event (core/v1)

pub struct EventStrategy;

#[async_trait]
impl Strategy for EventStrategy {
    fn default(&self, obj: &mut Value) {
        // Fields upstream serializes even when empty.
        let Some(m) = obj.as_object_mut() else { return };
        for k in ["reportingComponent", "reportingInstance"] {
            if !m.contains_key(k) {
                m.insert(k.into(), json!(""));
            }
        }
        for k in ["eventTime", "firstTimestamp", "lastTimestamp"] {
            if !m.contains_key(k) {
                m.insert(k.into(), Value::Null);
            }
        }
        set_default(m, "involvedObject", json!({}));
        set_default(m, "source", json!({}));
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "Event", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_core_event(obj, "reportingComponent")
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        core_event_field(obj, field)
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        CORE_EVENT_FIELDS
    }
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}

pub const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// Field selector values of a core/v1 Event.
pub fn core_event_field(obj: &Value, field: &str) -> Option<String> {
    let v = match field {
        "involvedObject.kind" => s(obj, "/involvedObject/kind"),
        "involvedObject.namespace" => s(obj, "/involvedObject/namespace"),
        "involvedObject.name" => s(obj, "/involvedObject/name"),
        "involvedObject.uid" => s(obj, "/involvedObject/uid"),
        "involvedObject.apiVersion" => s(obj, "/involvedObject/apiVersion"),
        "involvedObject.resourceVersion" => s(obj, "/involvedObject/resourceVersion"),
        "involvedObject.fieldPath" => s(obj, "/involvedObject/fieldPath"),
        "reason" => s(obj, "/reason"),
        "reportingComponent" => s(obj, "/reportingComponent"),
        "source" => {
            let c = s(obj, "/source/component");
            if c.is_empty() {
                s(obj, "/reportingComponent")
            } else {
                c
            }
        }
        "type" => s(obj, "/type"),
        _ => return None,
    };
    Some(v.to_string())
}

/// upstream's legacy event validation (what core/v1 writes get).
pub fn validate_core_event(obj: &Value, reporting_field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = s(obj, "/metadata/namespace");
    let io_ns = s(obj, "/involvedObject/namespace");
    if get(obj, "/eventTime").is_none() {
        if io_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(FieldError::invalid(
                    "involvedObject.namespace",
                    io_ns,
                    "does not match event.namespace",
                ));
            }
        } else if ns != io_ns {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                io_ns,
                "does not match event.namespace",
            ));
        }
    } else {
        if io_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                io_ns,
                "does not match event.namespace",
            ));
        }
        let rc = s(obj, "/reportingComponent");
        if rc.is_empty() {
            errs.push(FieldError::required(reporting_field));
        }
        for m in names::is_qualified_name(rc)
            .into_iter()
            .filter(|_| !rc.is_empty())
        {
            errs.push(FieldError::invalid(reporting_field, rc, m));
        }
        let ri = s(obj, "/reportingInstance");
        if ri.is_empty() {
            errs.push(FieldError::required("reportingInstance"));
        } else if ri.len() > 128 {
            errs.push(FieldError::invalid(
                "reportingInstance",
                "",
                "can have at most 128 characters",
            ));
        }
        let action = s(obj, "/action");
        if action.is_empty() {
            errs.push(FieldError::required("action"));
        } else if action.len() > 128 {
            errs.push(FieldError::invalid(
                "action",
                "",
                "can have at most 128 characters",
            ));
        }
        let reason = s(obj, "/reason");
        if reason.is_empty() {
            errs.push(FieldError::required("reason"));
        } else if reason.len() > 128 {
            errs.push(FieldError::invalid(
                "reason",
                "",
                "can have at most 128 characters",
            ));
        }
        if s(obj, "/message").len() > 1024 {
            errs.push(FieldError::invalid(
                "message",
                "",
                "can have at most 1024 characters",
            ));
        }
    }
    if !ns.is_empty() {
        for m in names::is_dns1123_subdomain(ns) {
            errs.push(FieldError::invalid("namespace", ns, m));
        }
    }
    errs
}

// ---------------------------------------------------------------- Endpoints

pub struct EndpointsStrategy;

#[async_trait]
impl Strategy for EndpointsStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else { return };
        for subset in each_obj_mut(m, "subsets") {
            for p in each_obj_mut(subset, "ports") {
                set_default_str(p, "protocol", "TCP");
            }
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "Endpoints", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, subset) in arr(obj, "/subsets").iter().enumerate() {
            let sp = util::idx("subsets", i);
            for list in ["addresses", "notReadyAddresses"] {
                for (j, a) in arr(subset, &format!("/{list}")).iter().enumerate() {
                    let ip = s(a, "/ip");
                    for m in names::is_valid_ip(ip) {
                        errs.push(FieldError::invalid(
                            join(&util::idx(&join(&sp, list), j), "ip"),
                            ip,
                            m,
                        ));
                    }
                }
            }
            let ports = arr(subset, "/ports");
            for (j, p) in ports.iter().enumerate() {
                let pp = util::idx(&join(&sp, "ports"), j);
                let name = s(p, "/name");
                if ports.len() > 1 && name.is_empty() {
                    errs.push(FieldError::required(join(&pp, "name")));
                }
                let n = util::int(p, "/port").unwrap_or(0);
                for m in names::is_valid_port_num(n) {
                    errs.push(FieldError::invalid_raw(join(&pp, "port"), n, m));
                }
                util::check_enum(
                    &mut errs,
                    &join(&pp, "protocol"),
                    p.get("protocol"),
                    &["SCTP", "TCP", "UDP"],
                    true,
                );
            }
        }
        errs
    }
}

// ---------------------------------------------------------------- ReplicationController / PodTemplate

pub struct ReplicationControllerStrategy;

#[async_trait]
impl Strategy for ReplicationControllerStrategy {
    fn default(&self, obj: &mut Value) {
        let labels = obj
            .pointer("/spec/template/metadata/labels")
            .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
            .cloned();
        if let Some(labels) = labels {
            if let Some(spec) = spec_mut(obj)
                && spec
                    .get("selector")
                    .and_then(Value::as_object)
                    .is_none_or(|m| m.is_empty())
            {
                spec.insert("selector".into(), labels.clone());
            }
            if let Some(meta) = obj.as_object_mut().and_then(|m| child(m, "metadata"))
                && meta
                    .get("labels")
                    .and_then(Value::as_object)
                    .is_none_or(|m| m.is_empty())
            {
                meta.insert("labels".into(), labels);
            }
        }
        if let Some(spec) = spec_mut(obj) {
            set_default(spec, "replicas", json!(1));
        }
        defaults::default_spec_template(obj);
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "ReplicationController", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        status_reset(obj, json!({"replicas": 0}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validation::validate_replicas(&mut errs, obj, "spec.replicas");
        util::check_non_negative(
            &mut errs,
            "spec.minReadySeconds",
            util::int(obj, "/spec/minReadySeconds"),
        );
        let sel = util::map(obj, "/spec/selector");
        match sel {
            Some(sel) if !sel.is_empty() => {
                validation::validate_labels(
                    &mut errs,
                    obj.pointer("/spec/selector"),
                    "spec.selector",
                );
                let labels = obj.pointer("/spec/template/metadata/labels");
                let as_selector = json!({"matchLabels": sel});
                if get(obj, "/spec/template").is_some()
                    && !validation::selector_matches(&as_selector, labels)
                {
                    errs.push(FieldError::invalid_raw(
                        "spec.template.metadata.labels",
                        util::go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            _ => errs.push(FieldError::required("spec.selector")),
        }
        validation::validate_pod_template(
            &mut errs,
            obj.pointer("/spec/template"),
            "spec.template",
            &["Always"],
        );
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.replicas")
            .then(|| util::int(obj, "/status/replicas").unwrap_or(0).to_string())
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}

pub struct PodTemplateStrategy;

#[async_trait]
impl Strategy for PodTemplateStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(t) = obj.as_object_mut().and_then(|m| child_opt(m, "template")) {
            defaults::default_pod_template(t);
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "PodTemplate", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validation::validate_pod_template(&mut errs, obj.get("template"), "template", &[]);
        errs
    }
}

// ---------------------------------------------------------------- LimitRange / ResourceQuota

fn validate_quantity_map(errs: &mut Vec<FieldError>, m: Option<&Value>, field: &str) {
    let Some(m) = m.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match quantity::parse(&text) {
            Err(e) => errs.push(FieldError::invalid(util::key(field, k), &text, e)),
            Ok(q) if q.is_negative() => errs.push(FieldError::invalid(
                util::key(field, k),
                &text,
                "must be greater than or equal to 0",
            )),
            Ok(_) => {}
        }
    }
}

pub struct LimitRangeStrategy;

#[async_trait]
impl Strategy for LimitRangeStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = spec_mut(obj) else { return };
        for item in each_obj_mut(spec, "limits") {
            if item.get("type").and_then(Value::as_str) != Some("Container") {
                continue;
            }
            let max = item
                .get("max")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let min = item
                .get("min")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(def) = child(item, "default") {
                for (k, v) in &max {
                    def.entry(k.clone()).or_insert(v.clone());
                }
            }
            let def = item
                .get("default")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(req) = child(item, "defaultRequest") {
                for (k, v) in def.iter().chain(min.iter()) {
                    req.entry(k.clone()).or_insert(v.clone());
                }
            }
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "LimitRange", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, item) in arr(obj, "/spec/limits").iter().enumerate() {
            let p = util::idx("spec.limits", i);
            util::check_enum(
                &mut errs,
                &join(&p, "type"),
                item.get("type"),
                &["Container", "PersistentVolumeClaim", "Pod"],
                true,
            );
            for f in [
                "max",
                "min",
                "default",
                "defaultRequest",
                "maxLimitRequestRatio",
            ] {
                validate_quantity_map(&mut errs, item.get(f), &join(&p, f));
            }
        }
        errs
    }
}

pub struct ResourceQuotaStrategy;

#[async_trait]
impl Strategy for ResourceQuotaStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "ResourceQuota", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        status_reset(obj, json!({}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_quantity_map(&mut errs, obj.pointer("/spec/hard"), "spec.hard");
        const SCOPES: &[&str] = &[
            "BestEffort",
            "CrossNamespacePodAffinity",
            "NotBestEffort",
            "NotTerminating",
            "PriorityClass",
            "Terminating",
        ];
        for (i, sc) in arr(obj, "/spec/scopes").iter().enumerate() {
            let v = sc.as_str().unwrap_or("");
            if !SCOPES.contains(&v) {
                errs.push(FieldError::not_supported(
                    util::idx("spec.scopes", i),
                    v,
                    SCOPES,
                ));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::display).collect()
    }

    #[test]
    fn namespaces() {
        let mut ns = json!({"metadata": {"name": "team-a"}, "spec": {"finalizers": ["example.com/x"]}, "status": {"phase": "Terminating"}});
        NamespaceStrategy.default(&mut ns);
        NamespaceStrategy.prepare_create(&mut ns);
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert_eq!(
            ns["spec"]["finalizers"],
            json!(["example.com/x", "kubernetes"])
        );
        assert_eq!(ns["status"], json!({"phase": "Active"}));
        let mut upd = json!({"metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "evil"}}, "spec": {}});
        NamespaceStrategy.default(&mut upd);
        NamespaceStrategy.prepare_update(&mut upd, &ns);
        assert_eq!(
            upd["spec"]["finalizers"],
            json!(["example.com/x", "kubernetes"])
        );
        assert_eq!(
            upd["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert_eq!(NamespaceStrategy.name_rule(), NameRule::Label);
        assert_eq!(
            NamespaceStrategy
                .field_value(&ns, "status.phase")
                .as_deref(),
            Some("Active")
        );
    }

    #[test]
    fn secrets() {
        let mut sec = json!({"metadata": {"name": "s"}, "stringData": {"user": "admin"}, "data": {"a": "eA=="}});
        SecretStrategy.default(&mut sec);
        assert_eq!(
            sec,
            json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA==", "user": "YWRtaW4="}})
        );
        assert!(SecretStrategy.validate(&sec).is_empty());
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": ""}});
        assert_eq!(
            display(&SecretStrategy.validate(&tls)),
            vec!["data[tls.key]: Required value"]
        );
        let bad_key = json!({"type": "Opaque", "data": {"a/b": ""}});
        assert!(display(&SecretStrategy.validate(&bad_key))[0].starts_with("data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters"));
        let mut changed = sec.clone();
        changed["type"] = json!("kubernetes.io/tls");
        assert_eq!(
            display(&SecretStrategy.validate_update(&changed, &sec)),
            vec!["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
        let mut frozen = sec.clone();
        frozen["immutable"] = json!(true);
        let mut edit = frozen.clone();
        edit["data"]["a"] = json!("eQ==");
        assert_eq!(
            display(&SecretStrategy.validate_update(&edit, &frozen)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let mut thaw = frozen.clone();
        thaw["immutable"] = json!(false);
        assert_eq!(
            display(&SecretStrategy.validate_update(&thaw, &frozen)),
            vec!["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
        assert_eq!(
            SecretStrategy.field_value(&sec, "type").as_deref(),
            Some("Opaque")
        );
    }

    #[test]
    fn config_maps() {
        let cm = json!({"data": {"k": "v"}, "binaryData": {"k": "AA=="}, "immutable": true});
        assert_eq!(
            display(&ConfigMapStrategy.validate(&cm)),
            vec!["data[k]: Invalid value: \"k\": duplicate of key present in binaryData"]
        );
        let old = json!({"data": {"k": "v"}, "immutable": true});
        let new = json!({"data": {"k": "w"}, "immutable": true});
        assert_eq!(
            display(&ConfigMapStrategy.validate_update(&new, &old)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let relabel =
            json!({"metadata": {"labels": {"a": "b"}}, "data": {"k": "v"}, "immutable": true});
        assert!(ConfigMapStrategy.validate_update(&relabel, &old).is_empty());
    }

    #[test]
    fn pvcs() {
        let mut pvc = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        PersistentVolumeClaimStrategy.default(&mut pvc);
        PersistentVolumeClaimStrategy.prepare_create(&mut pvc);
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"]["phase"], "Pending");
        assert!(PersistentVolumeClaimStrategy.validate(&pvc).is_empty());
        assert_eq!(
            display(&PersistentVolumeClaimStrategy.validate(&json!({"spec": {}}))),
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value"
            ]
        );
        let mut bound = pvc.clone();
        bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
        let mut grow = bound.clone();
        grow["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(
            PersistentVolumeClaimStrategy
                .validate_update(&grow, &bound)
                .is_empty()
        );
        let mut shrink = bound.clone();
        shrink["spec"]["resources"]["requests"]["storage"] = json!("500Mi");
        assert_eq!(
            display(&PersistentVolumeClaimStrategy.validate_update(&shrink, &bound)),
            vec![
                "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
            ]
        );
        let mut grow_unbound = pvc.clone();
        grow_unbound["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        let e = PersistentVolumeClaimStrategy.validate_update(&grow_unbound, &pvc);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].message.starts_with(
                "Forbidden: spec is immutable after creation except resources.requests"
            )
        );
        let mut bind = pvc.clone();
        bind["spec"]["volumeName"] = json!("pv-1");
        assert!(
            PersistentVolumeClaimStrategy
                .validate_update(&bind, &pvc)
                .is_empty()
        );
    }

    #[test]
    fn pvs() {
        let mut pv = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"}}});
        PersistentVolumeStrategy.default(&mut pv);
        PersistentVolumeStrategy.prepare_create(&mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["spec"]["hostPath"]["type"], "");
        assert_eq!(pv["status"]["phase"], "Pending");
        assert!(
            PersistentVolumeStrategy.validate(&pv).is_empty(),
            "{:?}",
            PersistentVolumeStrategy.validate(&pv)
        );
        let mut moved = pv.clone();
        moved["spec"]["hostPath"]["path"] = json!("/other");
        assert_eq!(
            PersistentVolumeStrategy.validate_update(&moved, &pv).len(),
            1
        );
    }

    #[test]
    fn nodes() {
        let old = json!({"spec": {"podCIDRs": ["10.42.0.0/24"], "podCIDR": "10.42.0.0/24"}});
        let new = json!({"spec": {"podCIDRs": ["10.42.1.0/24"], "podCIDR": "10.42.1.0/24", "unschedulable": true}});
        assert_eq!(
            display(&NodeStrategy.validate_update(&new, &old)),
            vec![
                "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"
            ]
        );
        assert_eq!(
            NodeStrategy
                .field_value(&new, "spec.unschedulable")
                .as_deref(),
            Some("true")
        );
        assert_eq!(
            NodeStrategy
                .field_value(&old, "spec.unschedulable")
                .as_deref(),
            Some("false")
        );
        let bad = json!({"spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}});
        assert_eq!(
            display(&NodeStrategy.validate(&bad)),
            vec![
                "spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoExecute\", \"NoSchedule\", \"PreferNoSchedule\""
            ]
        );
        let mut with_status = json!({"status": {"capacity": {"cpu": "4"}}});
        NodeStrategy.default(&mut with_status);
        assert_eq!(with_status["status"]["allocatable"], json!({"cpu": "4"}));
    }

    #[test]
    fn events() {
        let mut ev = json!({"metadata": {"name": "p.1", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Started", "source": {"component": "kubelet"}, "type": "Normal"});
        EventStrategy.default(&mut ev);
        assert_eq!(ev["reportingComponent"], "");
        assert!(ev.as_object().is_some_and(|m| m.contains_key("eventTime")));
        assert!(EventStrategy.validate(&ev).is_empty());
        assert_eq!(
            EventStrategy.field_value(&ev, "source").as_deref(),
            Some("kubelet")
        );
        assert_eq!(
            EventStrategy
                .field_value(&ev, "involvedObject.kind")
                .as_deref(),
            Some("Pod")
        );
        let wrong_ns =
            json!({"metadata": {"namespace": "a"}, "involvedObject": {"namespace": "b"}});
        assert_eq!(
            display(&EventStrategy.validate(&wrong_ns)),
            vec!["involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"]
        );
        let new_style = json!({"metadata": {"namespace": "default"}, "eventTime": "2024-01-01T00:00:00.000000Z", "involvedObject": {}});
        assert_eq!(
            display(&EventStrategy.validate(&new_style)),
            vec![
                "reportingComponent: Required value",
                "reportingInstance: Required value",
                "action: Required value",
                "reason: Required value"
            ]
        );
        assert_eq!(EventStrategy.name_rule(), NameRule::PathSegment);
    }

    #[test]
    fn replication_controllers() {
        let mut rc = json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        ReplicationControllerStrategy.default(&mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "a"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "a"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        assert!(
            ReplicationControllerStrategy.validate(&rc).is_empty(),
            "{:?}",
            ReplicationControllerStrategy.validate(&rc)
        );
        rc["spec"]["selector"] = json!({"app": "b"});
        assert_eq!(
            display(&ReplicationControllerStrategy.validate(&rc)),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"a\"}: `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn endpoints_and_limits() {
        let mut ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "nope"}], "ports": [{"port": 80}]}]});
        EndpointsStrategy.default(&mut ep);
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        let errs = display(&EndpointsStrategy.validate(&ep));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with(
            "subsets[0].addresses[1].ip: Invalid value: \"nope\": must be a valid IP address"
        ));
        let mut lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}}]}});
        LimitRangeStrategy.default(&mut lr);
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            lr["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "64Mi"})
        );
        let rq = json!({"spec": {"hard": {"pods": "x"}}});
        assert!(
            display(&ResourceQuotaStrategy.validate(&rq))[0]
                .starts_with("spec.hard[pods]: Invalid value: \"x\": quantities must match")
        );
    }
}
