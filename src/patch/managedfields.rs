//! `metadata.managedFields`: who owns which fields of an object. Every write
//! records it: an apply as an `Apply` entry holding the fields the manager
//! applied, every other write as an `Update` entry holding the fields it
//! changed, taking them away from whoever owned them before.
//!
//! Entries are told apart by (manager, operation, subresource) and, for
//! updates, apiVersion; an entry that ends up owning nothing is dropped.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::apply::fieldpath::Set;
use super::apply::schema::{self, Root, Schema};
use super::apply::typed;
use crate::registry::ResourceDef;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One managedFields entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub set: Set,
}

impl Entry {
    /// Whether two entries are the same manager in upstream's sense.
    fn same(&self, manager: &str, op: Operation, subresource: &str, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == op
            && self.subresource == subresource
            && (op == Operation::Apply || self.api_version == api_version)
    }

    /// The manager as conflicts name it: `"kubectl" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid managedFields: {0}")]
pub struct DecodeError(String);

/// The entries of an object's managedFields (none when absent).
pub fn decode(obj: &Value) -> Result<Vec<Entry>, DecodeError> {
    let Some(mf) = obj.pointer("/metadata/managedFields") else {
        return Ok(Vec::new());
    };
    let Some(list) = mf.as_array() else {
        if mf.is_null() {
            return Ok(Vec::new());
        }
        return Err(DecodeError("expected a list".into()));
    };
    let mut out: Vec<Entry> = Vec::with_capacity(list.len());
    for e in list {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let operation = match e.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => return Err(DecodeError(format!("unknown operation {other:?}"))),
        };
        match e.get("fieldsType").and_then(Value::as_str) {
            None | Some("FieldsV1") => {}
            Some(t) => return Err(DecodeError(format!("unknown fieldsType {t:?}"))),
        }
        let set = match e.get("fieldsV1") {
            Some(v) => Set::from_fields_v1(v).map_err(|e| DecodeError(e.to_string()))?,
            None => Set::new(),
        };
        let entry = Entry {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            time: e.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: s("subresource"),
            set,
        };
        match out.iter_mut().find(|x| {
            x.same(
                &entry.manager,
                entry.operation,
                &entry.subresource,
                &entry.api_version,
            )
        }) {
            Some(x) => x.set.union_in_place(&entry.set),
            None => out.push(entry),
        }
    }
    Ok(out)
}

/// Writes the entries into the object, in upstream's order (applies first,
/// then by time, manager, apiVersion and subresource); none removes the field.
pub fn encode(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
        return;
    }
    let list: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), json!(e.manager));
            m.insert("operation".into(), json!(e.operation.as_str()));
            m.insert("apiVersion".into(), json!(e.api_version));
            if let Some(t) = e.time {
                m.insert("time".into(), json!(t));
            }
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), e.set.to_fields_v1());
            if !e.subresource.is_empty() {
                m.insert("subresource".into(), json!(e.subresource));
            }
            Value::Object(m)
        })
        .collect();
    meta.insert("managedFields".into(), Value::Array(list));
}

/// The schema server-side apply uses for a resource: the built-in one, the
/// kind's own (custom resources, through the strategy), or a deduced one.
pub enum SchemaFor {
    Static(Root<'static>),
    Owned(Arc<Schema>),
}

impl SchemaFor {
    pub fn of(def: &ResourceDef) -> SchemaFor {
        if let Some(r) = schema::builtin_root(&def.group, &def.version, &def.kind) {
            return SchemaFor::Static(r);
        }
        match def.strategy.custom_resource() {
            Some(cr) => SchemaFor::Owned(custom_schema(
                &format!("{}/{}/{}", cr.group, cr.version, cr.kind),
                cr.fingerprint,
                &cr.raw_schema,
            )),
            None => SchemaFor::Static(Root {
                schema: Schema::deduced(),
                id: 0,
            }),
        }
    }

    pub fn root(&self) -> Root<'_> {
        match self {
            SchemaFor::Static(r) => *r,
            SchemaFor::Owned(s) => s.root("").unwrap_or(Root {
                schema: Schema::deduced(),
                id: 0,
            }),
        }
    }
}

/// The compiled schema of a custom resource, compiled once per CRD state.
pub fn custom_schema(gvk: &str, fingerprint: u64, raw: &Value) -> Arc<Schema> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Cache = Mutex<HashMap<String, (u64, Arc<Schema>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = match cache.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some((fp, s)) = guard.get(gvk)
        && *fp == fingerprint
    {
        return s.clone();
    }
    let s = Arc::new(Schema::from_openapi_v3(raw));
    guard.insert(gvk.to_string(), (fingerprint, s.clone()));
    s
}

/// Metadata fields no manager owns (the server sets them).
const STRIPPED_META: &[&str] = &[
    "f:name",
    "f:namespace",
    "f:creationTimestamp",
    "f:selfLink",
    "f:uid",
    "f:clusterName",
    "f:generation",
    "f:managedFields",
    "f:resourceVersion",
];

/// Removes from `set` what no manager may own for a write to `subresource`:
/// system metadata, and status on the main resource of a kind with a status
/// subresource (or everything but status on the status subresource).
pub fn strip(set: &mut Set, def: &ResourceDef, subresource: Option<&str>) {
    set.remove_prefix(&["f:apiVersion"]);
    set.remove_prefix(&["f:kind"]);
    set.remove_member("f:metadata");
    for f in STRIPPED_META {
        set.remove_prefix(&["f:metadata", f]);
    }
    match subresource {
        None if def.has_subresource("status") => set.remove_prefix(&["f:status"]),
        Some("status") => *set = set.keep_prefix(&["f:status"]),
        _ => {}
    }
}

/// The manager for a write: `?fieldManager=`, else the program name of the
/// user agent, as upstream.
pub fn manager_from(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = user_agent.unwrap_or("");
    let prog = ua.split('/').next().unwrap_or("");
    prog.chars().take(128).collect()
}

/// Records an Update by `manager` that turns `old` (None: a create) into
/// `new`. The managedFields of `new` are used as the starting point when the
/// writer set them (not on subresources), else those of `old`.
pub fn track_update(
    def: &ResourceDef,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let requested = if subresource.is_none() {
        decode(new).ok().filter(|e| !e.is_empty())
    } else {
        None
    };
    let mut entries = match requested {
        Some(e) => e,
        None => old.and_then(|o| decode(o).ok()).unwrap_or_default(),
    };
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    let schema = SchemaFor::of(def);
    let mut cmp = typed::compare(schema.root(), old, new);
    strip(&mut cmp.changed, def, subresource);
    strip(&mut cmp.removed, def, subresource);
    let api_version = def.api_version();
    let sub = subresource.unwrap_or("");
    for e in &mut entries {
        e.set = e.set.difference(&cmp.changed).difference(&cmp.removed);
    }
    if !cmp.changed.is_empty() {
        let now = crate::registry::generic::now_rfc3339();
        match entries
            .iter_mut()
            .find(|e| e.same(manager, Operation::Update, sub, &api_version))
        {
            Some(e) => {
                e.set.union_in_place(&cmp.changed);
                e.time = Some(now);
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: Operation::Update,
                api_version,
                time: Some(now),
                subresource: sub.to_string(),
                set: cmp.changed,
            }),
        }
    }
    cap_update_managers(&mut entries);
    encode(new, entries);
}

/// Upstream's cap on Update entries: beyond it the oldest are merged, per
/// apiVersion, into one entry of this manager.
pub const MAX_UPDATE_MANAGERS: usize = 10;
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// Keeps at most [`MAX_UPDATE_MANAGERS`] Update entries: taking them oldest
/// first (by the second, then by name), the second and later entry of an
/// apiVersion is merged into that version's `ancient-changes` entry (which
/// the first one becomes) until few enough are left. Apply entries are
/// never capped.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation == Operation::Update)
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    let seconds = |e: &Entry| {
        e.time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(0, |t| t.as_second())
    };
    updaters.sort_by(|&a, &b| {
        let (ea, eb) = (&entries[a], &entries[b]);
        (seconds(ea), &ea.manager, &ea.api_version, &ea.subresource).cmp(&(
            seconds(eb),
            &eb.manager,
            &eb.api_version,
            &eb.subresource,
        ))
    });
    let is_bucket = |e: &Entry, v: &str| {
        e.manager == ANCIENT_CHANGES
            && e.operation == Operation::Update
            && e.subresource.is_empty()
            && e.api_version == v
    };
    let mut first_of_version: Vec<(String, usize)> = Vec::new();
    let mut merged_away = vec![false; entries.len()];
    let mut left = updaters.len();
    for &i in &updaters {
        if left <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        let Some(&(_, first)) = first_of_version.iter().find(|(v, _)| *v == version) else {
            first_of_version.push((version, i));
            continue;
        };
        // The bucket: an existing one, else the first entry of the version
        // becomes it.
        let bucket = match (0..entries.len())
            .find(|&j| !merged_away[j] && is_bucket(&entries[j], &version))
        {
            Some(j) => j,
            None => {
                entries[first].manager = ANCIENT_CHANGES.to_string();
                entries[first].subresource = String::new();
                first
            }
        };
        if bucket == i {
            continue;
        }
        let set = entries[i].set.clone();
        let time = entries[i].time.clone();
        entries[bucket].set.union_in_place(&set);
        // The merged update is the more recent.
        entries[bucket].time = time;
        merged_away[i] = true;
        left -= 1;
    }
    let mut i = 0;
    entries.retain(|_| {
        i += 1;
        !merged_away[i - 1]
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::catalogue;

    fn def(group: &str, plural: &str) -> ResourceDef {
        catalogue::builtin()
            .into_iter()
            .find(|d| d.plural == plural && d.group == group)
            .expect("built-in kind")
    }

    fn fields(obj: &Value, i: usize) -> &Value {
        &obj["metadata"]["managedFields"][i]
    }

    #[test]
    fn creates_and_updates_record_changed_fields() {
        let cms = def("", "configmaps");
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default", "uid": "u", "labels": {"a": "1"}},
            "data": {"k": "v"}});
        track_update(&cms, None, &mut obj, "kubectl-create", None);
        let e = fields(&obj, 0);
        assert_eq!(e["manager"], "kubectl-create");
        assert_eq!(e["operation"], "Update");
        assert_eq!(e["apiVersion"], "v1");
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
        );
        assert!(e.get("subresource").is_none());

        // Another manager changes data.k and adds data.j: it takes k over.
        let old = obj.clone();
        let mut new = obj.clone();
        new["data"] = json!({"k": "w", "j": "x"});
        track_update(&cms, Some(&old), &mut new, "kubectl-edit", None);
        let mf = new["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 2);
        let by = |m: &str| mf.iter().find(|e| e["manager"] == m).unwrap()["fieldsV1"].clone();
        assert_eq!(
            by("kubectl-create"),
            json!({"f:data": {}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
        );
        assert_eq!(
            by("kubectl-edit"),
            json!({"f:data": {"f:j": {}, "f:k": {}}})
        );

        // A write that changes nothing adds no entry and keeps the rest.
        let before = new.clone();
        let mut same = new.clone();
        track_update(&cms, Some(&before), &mut same, "other", None);
        assert_eq!(same, before);

        // Removing a field removes it from its owners; an entry left empty goes.
        let mut gone = before.clone();
        gone["data"].as_object_mut().unwrap().remove("j");
        gone["data"].as_object_mut().unwrap().remove("k");
        track_update(&cms, Some(&before), &mut gone, "kubectl-edit", None);
        let mf = gone["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 1, "{mf:?}");
        assert_eq!(mf[0]["manager"], "kubectl-create");
    }

    #[test]
    fn status_writes_record_the_subresource_and_main_writes_skip_status() {
        let deps = def("apps", "deployments");
        let old = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 1}, "status": {"replicas": 0}});
        let mut new = old.clone();
        new["status"]["replicas"] = json!(1);
        track_update(
            &deps,
            Some(&old),
            &mut new,
            "kube-controller-manager",
            Some("status"),
        );
        let e = fields(&new, 0);
        assert_eq!(e["subresource"], "status");
        assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));

        let mut created = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 1}, "status": {"replicas": 5}});
        track_update(&deps, None, &mut created, "m", None);
        assert_eq!(
            fields(&created, 0)["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
    }

    #[test]
    fn update_managers_beyond_ten_merge_into_ancient_changes() {
        let e = |m: &str, v: &str, t: &str, f: &str| Entry {
            manager: m.into(),
            operation: Operation::Update,
            api_version: v.into(),
            time: Some(t.into()),
            subresource: String::new(),
            set: Set::from_fields_v1(&json!({"f:data": {format!("f:{f}"): {}}})).unwrap(),
        };
        let mut entries: Vec<Entry> = (10..22)
            .map(|i| {
                let v = if i == 11 { "v2" } else { "v1" };
                e(
                    &format!("m{i}"),
                    v,
                    &format!("2026-01-01T00:00:{i}Z"),
                    &format!("k{i}"),
                )
            })
            .collect();
        entries.push(Entry {
            operation: Operation::Apply,
            ..e("applier", "v1", "2026-01-01T00:00:00Z", "a")
        });
        cap_update_managers(&mut entries);
        let names: Vec<&str> = entries.iter().map(|e| e.manager.as_str()).collect();
        // 12 updaters: m10 (first of v1) becomes the bucket, m11 is the first
        // of v2 and stays, m12 and m13 go into the bucket.
        assert_eq!(
            names,
            [
                "ancient-changes",
                "m11",
                "m14",
                "m15",
                "m16",
                "m17",
                "m18",
                "m19",
                "m20",
                "m21",
                "applier"
            ]
        );
        assert_eq!(
            entries[0].set.to_fields_v1(),
            json!({"f:data": {"f:k10": {}, "f:k12": {}, "f:k13": {}}})
        );
        assert_eq!(entries[0].time.as_deref(), Some("2026-01-01T00:00:13Z"));
        assert_eq!(entries[0].api_version, "v1");
        // At the cap nothing changes.
        let before = entries.clone();
        cap_update_managers(&mut entries);
        assert_eq!(entries, before);
    }

    #[test]
    fn managers_from_user_agents() {
        assert_eq!(manager_from(Some("mine"), Some("kubectl/v1.33")), "mine");
        assert_eq!(
            manager_from(None, Some("kubectl/v1.33.0 (linux/amd64) kubernetes/abc")),
            "kubectl"
        );
        assert_eq!(manager_from(Some(""), Some("curl/8.0")), "curl");
        assert_eq!(manager_from(None, None), "");
    }

    #[test]
    fn decode_merges_duplicate_entries_and_rejects_garbage() {
        let obj = json!({"metadata": {"managedFields": [
            {"manager": "a", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:x": {}}}},
            {"manager": "a", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:y": {}}}},
            {"manager": "a", "operation": "Update", "apiVersion": "v2", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:z": {}}}},
        ]}});
        let e = decode(&obj).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].set.to_fields_v1(),
            json!({"f:data": {"f:x": {}, "f:y": {}}})
        );
        assert!(
            decode(&json!({"metadata": {"managedFields": [{"operation": "Mangle"}]}})).is_err()
        );
        assert!(decode(&json!({"metadata": {"managedFields": "x"}})).is_err());
    }
}
