//! Server-side apply (`application/apply-patch+yaml`): the applied
//! configuration is merged into the live object by its schema, the fields
//! the manager applied before and applies no more are removed unless someone
//! else owns them, and changing a field another manager owns is a conflict
//! unless forced. Field ownership lives in `metadata.managedFields`.

pub mod fieldpath;
pub mod schema;
pub mod typed;

use serde_json::{Value, json};

use super::managedfields::{self, Entry, Operation, SchemaFor};
use crate::api::status::ApiError;
use crate::registry::ResourceDef;
use crate::registry::generic::{ReadAt, Registry, WriteOptions, name_of};
use fieldpath::Set;

/// kubectl's annotation for client-side apply.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{message}")]
    Conflicts {
        message: String,
        /// (manager as described, path as printed).
        causes: Vec<(String, String)>,
    },
    #[error("{0}")]
    Invalid(String),
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Conflicts { message, causes } => {
                let mut err = ApiError::new(409, "Conflict", message);
                let causes: Vec<Value> = causes
                    .into_iter()
                    .map(|(m, f)| {
                        json!({"type": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": f})
                    })
                    .collect();
                err.details = Some(json!({"causes": causes}));
                err
            }
            ApplyError::Invalid(m) => ApiError::new(422, "Invalid", m),
        }
    }
}

/// One apply request, the parts the merge needs.
pub struct Request<'a> {
    pub def: &'a ResourceDef,
    pub manager: &'a str,
    pub force: bool,
    pub subresource: Option<&'a str>,
}

/// Applies `config` to `live` (None: the object does not exist yet) and
/// returns the object to store, managedFields included.
pub fn apply_to(
    req: &Request<'_>,
    live: Option<&Value>,
    config: &Value,
) -> Result<Value, ApplyError> {
    let schema = SchemaFor::of(req.def);
    let root = schema.root();
    let api_version = req.def.api_version();
    let sub = req.subresource.unwrap_or("");
    let mut live_obj = live.cloned().unwrap_or_else(|| json!({}));
    let mut entries = live
        .and_then(|l| managedfields::decode(l).ok())
        .unwrap_or_default();
    if let Some(m) = live_obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    // An object nobody manages yet: what is there belongs to one manager, so
    // the applier can conflict with it (upstream's "before-first-apply").
    if live.is_some() && entries.is_empty() {
        let mut set = typed::compare(root, None, &live_obj).changed;
        managedfields::strip(&mut set, req.def, req.subresource);
        entries.push(Entry {
            manager: "before-first-apply".into(),
            operation: Operation::Update,
            api_version: api_version.clone(),
            time: Some(crate::registry::generic::now_rfc3339()),
            subresource: String::new(),
            set,
        });
    }
    let mut applied = typed::to_field_set(root, config).map_err(|e| {
        ApplyError::Invalid(format!(
            "failed to create typed patch object ({}): {e}",
            object_gvknn(req.def, config)
        ))
    })?;
    managedfields::strip(&mut applied, req.def, req.subresource);

    let mine = |e: &Entry| {
        e.manager == req.manager && e.operation == Operation::Apply && e.subresource == sub
    };
    let previous = entries.iter().find(|e| mine(e)).cloned();
    let last = previous.as_ref().map(|e| e.set.clone()).unwrap_or_default();
    let mut others = Set::new();
    for e in entries.iter().filter(|e| !mine(e)) {
        others.union_in_place(&e.set);
    }

    let mut merged = typed::merge(root, &live_obj, config);
    // Fields this manager stops applying go, unless someone else owns them.
    let dropped = last.difference(&applied).difference(&others);
    if !dropped.is_empty() {
        typed::remove(root, &mut merged, &dropped, &others.union(&applied));
    }

    let mut cmp = typed::compare(root, live.map(|_| &live_obj), &merged);
    managedfields::strip(&mut cmp.changed, req.def, req.subresource);
    managedfields::strip(&mut cmp.removed, req.def, req.subresource);
    let conflicts: Vec<(Entry, Set)> = entries
        .iter()
        .filter(|e| !mine(e))
        .filter_map(|e| {
            let c = e.set.intersection(&cmp.changed);
            (!c.is_empty()).then(|| (e.clone(), c))
        })
        .collect();
    if !conflicts.is_empty()
        && !req.force
        && !allowed_by_last_applied(req, root, &live_obj, &conflicts)
    {
        return Err(conflict_error(conflicts));
    }
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        e.set = e.set.difference(&cmp.changed).difference(&cmp.removed);
    }
    let unchanged = merged == live_obj && last == applied && live.is_some();
    let time = match (&previous, unchanged) {
        (Some(p), true) => p.time.clone(),
        _ => Some(crate::registry::generic::now_rfc3339()),
    };
    entries.retain(|e| !mine(e));
    entries.push(Entry {
        manager: req.manager.to_string(),
        operation: Operation::Apply,
        api_version,
        time,
        subresource: sub.to_string(),
        set: applied,
    });
    // kubectl's own applies keep the client-side annotation in step, so a
    // later client-side apply sees what was applied last.
    if req.manager == "kubectl" && last_applied(&live_obj).is_some() {
        let mut la = config.clone();
        if let Some(a) = la
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            a.remove(LAST_APPLIED);
            if a.is_empty()
                && let Some(m) = la.get_mut("metadata").and_then(Value::as_object_mut)
            {
                m.remove("annotations");
            }
        }
        merged["metadata"]["annotations"][LAST_APPLIED] = json!(format!("{la}\n"));
    }
    if !merged.get("metadata").is_some_and(Value::is_object) {
        merged["metadata"] = json!({});
    }
    managedfields::encode(&mut merged, entries);
    Ok(merged)
}

/// How upstream names an object in apply errors: `ns/name; apps/v1, Kind=Deployment`.
fn object_gvknn(def: &ResourceDef, obj: &Value) -> String {
    let meta = |k: &str| {
        obj.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let gv = if def.group.is_empty() {
        format!("/{}", def.version)
    } else {
        format!("{}/{}", def.group, def.version)
    };
    format!(
        "{}/{}; {gv}, Kind={}",
        meta("namespace"),
        meta("name"),
        def.kind
    )
}

fn last_applied(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Upstream lets kubectl's first server-side apply take over the fields its
/// client-side applies set, as long as nobody changed them since: conflicts
/// on fields of the last-applied configuration that still hold its values
/// are no conflicts.
fn allowed_by_last_applied(
    req: &Request<'_>,
    root: schema::Root<'_>,
    live: &Value,
    conflicts: &[(Entry, Set)],
) -> bool {
    if req.manager != "kubectl" {
        return false;
    }
    let Some(Ok(la)) = last_applied(live).map(serde_json::from_str::<Value>) else {
        return false;
    };
    let Ok(mut allowed) = typed::to_field_set(root, &la) else {
        return false;
    };
    let since = typed::compare(root, Some(&la), live);
    allowed = allowed.difference(&since.changed);
    conflicts
        .iter()
        .all(|(_, c)| c.difference(&allowed).is_empty())
}

/// The 409 with upstream's message and one cause per conflicting field.
fn conflict_error(conflicts: Vec<(Entry, Set)>) -> ApplyError {
    let mut by_manager: Vec<(String, Vec<String>)> = conflicts
        .iter()
        .map(|(e, s)| {
            let paths = s.paths().iter().map(|p| fieldpath::display(p)).collect();
            (e.describe(), paths)
        })
        .collect();
    by_manager.sort();
    let causes: Vec<(String, String)> = by_manager
        .iter()
        .flat_map(|(m, ps)| ps.iter().map(move |p| (m.clone(), p.clone())))
        .collect();
    let message = if causes.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            causes[0].0, causes[0].1
        )
    } else {
        let mut parts = Vec::new();
        for (m, ps) in &by_manager {
            parts.push(format!("conflicts with {m}:"));
            parts.extend(ps.iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            causes.len(),
            parts.join("\n")
        )
    };
    ApplyError::Conflicts { message, causes }
}

/// PATCH with an apply patch: merge into the object, or create it.
/// Returns the object and whether it was created.
#[allow(clippy::too_many_arguments)]
pub async fn apply_patch(
    reg: &Registry,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    mut config: Value,
    force: bool,
    opts: &WriteOptions,
) -> Result<(Value, bool), ApiError> {
    let manager = opts.field_manager.clone().unwrap_or_default();
    if manager.is_empty() {
        return Err(super::patch_options_invalid(
            "fieldManager: Required value: is required for apply patch",
        ));
    }
    check_config(def, name, &mut config)?;
    let req = Request {
        def,
        manager: &manager,
        force,
        subresource,
    };
    let opts = WriteOptions {
        managed_fields_set: true,
        ..opts.clone()
    };
    for _ in 0..8 {
        match reg.get(def, ns, name, ReadAt::Latest).await {
            Err(e) if e.code == 404 && subresource.is_none() => {
                let obj = apply_to(&req, None, &config)?;
                match reg.create(def, ns, obj, &opts).await {
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    other => return other.map(|o| (o, true)),
                }
            }
            Err(e) => return Err(e),
            Ok(live) => {
                let mut obj = apply_to(&req, Some(&live), &config)?;
                obj["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
                match reg.update(def, ns, name, obj, subresource, &opts).await {
                    Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
                    other => return other.map(|o| (o, false)),
                }
            }
        }
    }
    Err(ApiError::conflict(
        def.target(),
        name,
        "too many concurrent writers, please retry",
    ))
}

/// What upstream checks of an apply body before merging it.
fn check_config(def: &ResourceDef, name: &str, config: &mut Value) -> Result<(), ApiError> {
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request(
            "error decoding YAML: Object 'Kind' is missing or apiVersion is not set in the apply patch",
        ));
    }
    if api_version != def.api_version() {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {api_version}, expected: {}",
            def.api_version()
        )));
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    crate::registry::generic::check_url_name(config, name)?;
    if name_of(config).is_empty() {
        config["metadata"]["name"] = json!(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::catalogue;

    fn deployments() -> ResourceDef {
        catalogue::builtin()
            .into_iter()
            .find(|d| d.plural == "deployments" && d.group == "apps")
            .expect("deployments")
    }

    fn dep(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}},
                        "template": {"metadata": {"labels": {"app": "d"}},
                                     "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn req<'a>(def: &'a ResourceDef, manager: &'a str, force: bool) -> Request<'a> {
        Request {
            def,
            manager,
            force,
            subresource: None,
        }
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
        obj["metadata"]["managedFields"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["manager"] == manager))
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn first_apply_owns_what_it_applied() {
        let d = deployments();
        let obj = apply_to(&req(&d, "a", false), None, &dep(2, "x")).unwrap();
        assert_eq!(obj["spec"]["replicas"], 2);
        let e = entry(&obj, "a");
        assert_eq!(e["operation"], "Apply");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}})
        );
    }

    #[test]
    fn conflicts_force_and_shared_ownership() {
        let d = deployments();
        let live = apply_to(&req(&d, "a", false), None, &dep(2, "x")).unwrap();
        // Same values: shared ownership, no conflict.
        let shared = apply_to(&req(&d, "b", false), Some(&live), &dep(2, "x")).unwrap();
        assert!(entry(&shared, "a")["fieldsV1"]["f:spec"]["f:replicas"].is_object());
        assert!(entry(&shared, "b")["fieldsV1"]["f:spec"]["f:replicas"].is_object());
        // A different value: a conflict naming the field and the manager.
        let err = apply_to(&req(&d, "b", false), Some(&live), &dep(3, "y")).unwrap_err();
        match err {
            ApplyError::Conflicts { message, causes } => {
                assert_eq!(
                    message,
                    "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"c\"].image"
                );
                assert_eq!(
                    causes[0],
                    ("\"a\"".to_string(), ".spec.replicas".to_string())
                );
            }
            other => panic!("{other:?}"),
        }
        // Forced: b takes the fields, a keeps the rest.
        let forced = apply_to(&req(&d, "b", true), Some(&live), &dep(3, "y")).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        assert!(
            entry(&forced, "a")["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_none()
        );
        assert!(entry(&forced, "a")["fieldsV1"]["f:spec"]["f:selector"].is_object());
        assert!(entry(&forced, "b")["fieldsV1"]["f:spec"]["f:replicas"].is_object());
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_owned_elsewhere() {
        let d = deployments();
        let mut with_label = dep(2, "x");
        with_label["metadata"]["labels"] = json!({"team": "a", "tier": "web"});
        let live = apply_to(&req(&d, "a", false), None, &with_label).unwrap();
        // b also applies tier.
        let b_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"tier": "web"}}});
        let live = apply_to(&req(&d, "b", false), Some(&live), &b_cfg).unwrap();
        // a drops both labels and the replicas: team and replicas go, tier stays (b owns it).
        let mut cfg = dep(2, "x");
        cfg["spec"].as_object_mut().unwrap().remove("replicas");
        let out = apply_to(&req(&d, "a", false), Some(&live), &cfg).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"tier": "web"}));
        assert!(out["spec"].get("replicas").is_none());
        // Re-applying the same configuration changes nothing, time included.
        let again = apply_to(&req(&d, "a", false), Some(&out), &cfg).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn objects_without_managers_belong_to_before_first_apply() {
        let d = deployments();
        let live = dep(2, "x");
        let err = apply_to(&req(&d, "a", false), Some(&live), &dep(3, "x")).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"before-first-apply\" using apps/v1"),
            "{err}"
        );
    }

    #[test]
    fn kubectl_takes_over_from_client_side_apply() {
        let d = deployments();
        let cfg = dep(2, "x");
        let mut live = cfg.clone();
        live["metadata"]["annotations"] = json!({LAST_APPLIED: cfg.to_string()});
        crate::patch::managedfields::track_update(
            &d,
            None,
            &mut live,
            "kubectl-client-side-apply",
            None,
        );
        // Unchanged since the last client-side apply: no conflict.
        let out = apply_to(&req(&d, "kubectl", false), Some(&live), &dep(3, "x")).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        let la: Value = serde_json::from_str(
            out["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(la["spec"]["replicas"], 3);
        // Changed by someone else since: a conflict.
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(5);
        crate::patch::managedfields::track_update(
            &d,
            Some(&live),
            &mut edited,
            "kubectl-edit",
            None,
        );
        assert!(apply_to(&req(&d, "kubectl", false), Some(&edited), &dep(3, "x")).is_err());
        // Another manager name gets no such help.
        assert!(apply_to(&req(&d, "other", false), Some(&live), &dep(3, "x")).is_err());
    }
}
