//! REST operations of the served resources, described once and rendered as
//! Swagger 2.0 or OpenAPI 3.0 path items.
//!
//! kubectl reads these: `x-kubernetes-group-version-kind` on operations finds
//! a resource's operations (explain, field-validation support, apply), the
//! PATCH operation's `fieldValidation` parameter tells kubectl 1.27+ that the
//! server validates fields itself, and its request content types tell apply
//! whether strategic-merge patch is supported.

use serde_json::{Map, Value, json};

use super::definitions::{
    DELETE_OPTIONS, KindSchema, PATCH, SCALE, STATUS, V2_REF_PREFIX, V3_REF_PREFIX,
};
use crate::registry::ResourceDef;

const JSON: &str = "application/json";
const YAML: &str = "application/yaml";
const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";
const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
const APPLY_PATCH: &str = "application/apply-patch+yaml";
const WATCH_STREAM: &str = "application/json;stream=watch";

/// A query parameter.
#[derive(Clone, Copy)]
struct Param {
    name: &'static str,
    ty: &'static str,
    description: &'static str,
}

const fn q(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        ty,
        description,
    }
}

const PRETTY: Param = q(
    "pretty",
    "string",
    "If 'true', the output is pretty printed.",
);
const DRY_RUN: Param = q(
    "dryRun",
    "string",
    "When present, the request is processed without persisting it. The only valid value is All.",
);
const FIELD_MANAGER: Param = q(
    "fieldManager",
    "string",
    "Name of the actor making the change, recorded in managedFields.",
);
const FIELD_VALIDATION: Param = q(
    "fieldValidation",
    "string",
    "How to treat unknown and duplicate fields in the request body: Ignore drops them, Warn (the default) drops them and returns a warning for each, Strict fails the request with a BadRequest listing them.",
);
const FORCE: Param = q(
    "force",
    "boolean",
    "Apply requests only: take ownership of fields other managers own instead of failing on the conflict.",
);
const LIST_PARAMS: &[Param] = &[
    q(
        "allowWatchBookmarks",
        "boolean",
        "Watch only: ask for BOOKMARK events carrying the current resourceVersion.",
    ),
    q(
        "continue",
        "string",
        "The continue token of the previous page of a paginated list.",
    ),
    q(
        "fieldSelector",
        "string",
        "Select objects by fields; defaults to everything.",
    ),
    q(
        "labelSelector",
        "string",
        "Select objects by labels; defaults to everything.",
    ),
    q(
        "limit",
        "integer",
        "Maximum number of objects to return; the response carries a continue token when more remain.",
    ),
    q(
        "resourceVersion",
        "string",
        "Which version of the collection to serve; see resourceVersionMatch.",
    ),
    q(
        "resourceVersionMatch",
        "string",
        "How resourceVersion is applied: Exact or NotOlderThan.",
    ),
    q(
        "sendInitialEvents",
        "boolean",
        "Watch only: start with synthetic ADDED events for the current state.",
    ),
    q(
        "timeoutSeconds",
        "integer",
        "Upper bound on the duration of the call.",
    ),
    q(
        "watch",
        "boolean",
        "Stream changes (ADDED, MODIFIED, DELETED) instead of returning a list.",
    ),
];
const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    q(
        "gracePeriodSeconds",
        "integer",
        "Seconds before the object is deleted; zero deletes at once.",
    ),
    q(
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "Delete objects the store cannot decode; dangerous, see the API documentation.",
    ),
    q(
        "orphanDependents",
        "boolean",
        "Deprecated: use propagationPolicy.",
    ),
    q(
        "propagationPolicy",
        "string",
        "Garbage collection of dependents: Orphan, Background or Foreground.",
    ),
];

/// One operation on one path.
struct Op {
    method: &'static str,
    action: &'static str,
    id: String,
    description: String,
    params: Vec<Param>,
    /// (content types, definition) of the request body.
    body: Option<(Vec<&'static str>, &'static str, String)>,
    /// (code, description, definition)
    responses: Vec<(u16, &'static str, String)>,
    produces: Vec<&'static str>,
    gvk: (String, String, String),
    tag: String,
}

/// A path with its path parameters and operations.
struct Item {
    path: String,
    params: Vec<(&'static str, String)>,
    ops: Vec<Op>,
}

/// `networking.k8s.io` -> `Networking`, `rbac.authorization.k8s.io` ->
/// `RbacAuthorization`, `` -> `Core`: the group part of operation ids.
fn group_ident(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(capitalize)
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The URL prefix of a group-version: `/api/v1`, `/apis/apps/v1`.
pub fn gv_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// Path items for the resources of one group-version, in catalogue order.
fn items(defs: &[&ResourceDef], kinds: &[KindSchema]) -> Vec<Item> {
    let mut out = Vec::new();
    for def in defs {
        let Some(ks) = kinds.iter().find(|k| {
            (k.group.as_str(), k.version.as_str(), k.kind.as_str())
                == (def.group.as_str(), def.version.as_str(), def.kind.as_str())
        }) else {
            continue;
        };
        out.extend(resource_items(def, ks, kinds));
    }
    out
}

fn resource_items(def: &ResourceDef, ks: &KindSchema, kinds: &[KindSchema]) -> Vec<Item> {
    let can = |verb: &str| def.verbs.iter().any(|v| v == verb);
    let prefix = gv_prefix(&def.group, &def.version);
    let gi = format!("{}{}", group_ident(&def.group), capitalize(&def.version));
    let tag = format!("{}_{}", lower_first(&group_ident(&def.group)), def.version);
    let scope = if def.namespaced { "Namespaced" } else { "" };
    let kind = &def.kind;
    let gvk = (def.group.clone(), def.version.clone(), def.kind.clone());
    let obj = ks.definition.clone();
    let list = ks.list_definition.clone();
    let collection = if def.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", def.plural)
    } else {
        format!("{prefix}/{}", def.plural)
    };
    let ns_param = || {
        if def.namespaced {
            vec![(
                "namespace",
                "object name and auth scope, such as for teams and projects".to_string(),
            )]
        } else {
            vec![]
        }
    };
    let name_param = |what: &str| ("name", format!("name of the {what}"));
    let op = |method, action, id: String, description: String| Op {
        method,
        action,
        id,
        description,
        params: Vec::new(),
        body: None,
        responses: Vec::new(),
        produces: vec![JSON, YAML],
        gvk: gvk.clone(),
        tag: tag.clone(),
    };
    let mut patch_types = vec![JSON_PATCH, MERGE_PATCH];
    if ks.builtin {
        patch_types.push(STRATEGIC_MERGE_PATCH);
    }
    patch_types.push(APPLY_PATCH);

    let mut out = Vec::new();

    // The collection: list, create, deletecollection.
    let mut coll = Item {
        path: collection.clone(),
        params: ns_param(),
        ops: Vec::new(),
    };
    if can("list") {
        let mut o = op(
            "get",
            "list",
            format!("list{gi}{scope}{kind}"),
            format!("list or watch {kind} objects"),
        );
        o.params.extend_from_slice(LIST_PARAMS);
        o.responses.push((200, "OK", list.clone()));
        o.produces.push(WATCH_STREAM);
        coll.ops.push(o);
    }
    if can("create") {
        let mut o = op(
            "post",
            "post",
            format!("create{gi}{scope}{kind}"),
            format!("create a {kind}"),
        );
        o.params.extend([DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION]);
        o.body = Some((vec![JSON, YAML], "body", obj.clone()));
        o.responses.extend([
            (200, "OK", obj.clone()),
            (201, "Created", obj.clone()),
            (202, "Accepted", obj.clone()),
        ]);
        coll.ops.push(o);
    }
    if can("deletecollection") {
        let mut o = op(
            "delete",
            "deletecollection",
            format!("delete{gi}Collection{scope}{kind}"),
            format!("delete a collection of {kind} objects"),
        );
        o.params.extend_from_slice(DELETE_PARAMS);
        o.params.extend(
            LIST_PARAMS
                .iter()
                .copied()
                .filter(|p| !matches!(p.name, "watch" | "allowWatchBookmarks")),
        );
        o.body = Some((vec![JSON, YAML], "body", DELETE_OPTIONS.to_string()));
        o.responses.push((200, "OK", STATUS.to_string()));
        coll.ops.push(o);
    }
    if !coll.ops.is_empty() {
        out.push(coll);
    }

    // Every namespace at once.
    if def.namespaced && can("list") {
        let mut o = op(
            "get",
            "list",
            format!("list{gi}{kind}ForAllNamespaces"),
            format!("list or watch {kind} objects of every namespace"),
        );
        o.params.extend_from_slice(LIST_PARAMS);
        o.responses.push((200, "OK", list.clone()));
        o.produces.push(WATCH_STREAM);
        out.push(Item {
            path: format!("{prefix}/{}", def.plural),
            params: Vec::new(),
            ops: vec![o],
        });
    }

    // One object: read, replace, patch, delete.
    let mut item_params = vec![name_param(kind)];
    item_params.extend(ns_param());
    let mut item = Item {
        path: format!("{collection}/{{name}}"),
        params: item_params.clone(),
        ops: Vec::new(),
    };
    if can("get") {
        let mut o = op(
            "get",
            "get",
            format!("read{gi}{scope}{kind}"),
            format!("read the named {kind}"),
        );
        o.responses.push((200, "OK", obj.clone()));
        item.ops.push(o);
    }
    if can("update") {
        let mut o = op(
            "put",
            "put",
            format!("replace{gi}{scope}{kind}"),
            format!("replace the named {kind}"),
        );
        o.params.extend([DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION]);
        o.body = Some((vec![JSON, YAML], "body", obj.clone()));
        o.responses
            .extend([(200, "OK", obj.clone()), (201, "Created", obj.clone())]);
        item.ops.push(o);
    }
    if can("patch") {
        let mut o = op(
            "patch",
            "patch",
            format!("patch{gi}{scope}{kind}"),
            format!("partially update the named {kind}"),
        );
        o.params
            .extend([DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE]);
        o.body = Some((patch_types.clone(), "body", PATCH.to_string()));
        o.responses
            .extend([(200, "OK", obj.clone()), (201, "Created", obj.clone())]);
        item.ops.push(o);
    }
    if can("delete") {
        let mut o = op(
            "delete",
            "delete",
            format!("delete{gi}{scope}{kind}"),
            format!("delete the named {kind}"),
        );
        o.params.extend_from_slice(DELETE_PARAMS);
        o.body = Some((vec![JSON, YAML], "body", DELETE_OPTIONS.to_string()));
        o.responses
            .extend([(200, "OK", obj.clone()), (202, "Accepted", obj.clone())]);
        item.ops.push(o);
    }
    if !item.ops.is_empty() {
        out.push(item);
    }

    // Subresources that read and write a whole object.
    for sub in &def.subresources {
        let (suffix, target, target_gvk, builtin) = match sub.as_str() {
            "status" => ("Status", obj.clone(), gvk.clone(), ks.builtin),
            "scale" => {
                let Some(scale) = kinds.iter().find(|k| k.definition == SCALE) else {
                    continue;
                };
                (
                    "Scale",
                    SCALE.to_string(),
                    (
                        scale.group.clone(),
                        scale.version.clone(),
                        scale.kind.clone(),
                    ),
                    true,
                )
            }
            _ => continue,
        };
        let mut it = Item {
            path: format!("{collection}/{{name}}/{sub}"),
            params: item_params.clone(),
            ops: Vec::new(),
        };
        let mut add = |mut o: Op| {
            o.gvk = target_gvk.clone();
            it.ops.push(o);
        };
        let mut o = op(
            "get",
            "get",
            format!("read{gi}{scope}{kind}{suffix}"),
            format!("read {sub} of the named {kind}"),
        );
        o.responses.push((200, "OK", target.clone()));
        add(o);
        if can("update") {
            let mut o = op(
                "put",
                "put",
                format!("replace{gi}{scope}{kind}{suffix}"),
                format!("replace {sub} of the named {kind}"),
            );
            o.params.extend([DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION]);
            o.body = Some((vec![JSON, YAML], "body", target.clone()));
            o.responses.extend([
                (200, "OK", target.clone()),
                (201, "Created", target.clone()),
            ]);
            add(o);
        }
        if can("patch") {
            let mut types = vec![JSON_PATCH, MERGE_PATCH];
            if builtin {
                types.push(STRATEGIC_MERGE_PATCH);
            }
            types.push(APPLY_PATCH);
            let mut o = op(
                "patch",
                "patch",
                format!("patch{gi}{scope}{kind}{suffix}"),
                format!("partially update {sub} of the named {kind}"),
            );
            o.params
                .extend([DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE]);
            o.body = Some((types, "body", PATCH.to_string()));
            o.responses.extend([
                (200, "OK", target.clone()),
                (201, "Created", target.clone()),
            ]);
            add(o);
        }
        out.push(it);
    }
    out
}

fn gvk_value((g, v, k): &(String, String, String)) -> Value {
    json!({"group": g, "kind": k, "version": v})
}

fn path_param_v2(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": description})
}

fn path_param_v3(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn query_param_v2(p: &Param) -> Value {
    json!({"name": p.name, "in": "query", "type": p.ty, "uniqueItems": true, "description": p.description})
}

fn query_param_v3(p: &Param) -> Value {
    json!({"name": p.name, "in": "query", "description": p.description, "schema": {"type": p.ty, "uniqueItems": true}})
}

/// Swagger 2.0 path items of the given resources.
pub fn v2_paths(defs: &[&ResourceDef], kinds: &[KindSchema]) -> Map<String, Value> {
    let mut paths = Map::new();
    for item in items(defs, kinds) {
        let mut pi = Map::new();
        for op in &item.ops {
            let mut params: Vec<Value> = Vec::new();
            if let Some((_, name, def)) = &op.body {
                params.push(json!({"name": name, "in": "body", "required": true, "schema": {"$ref": format!("{V2_REF_PREFIX}{def}")}}));
            }
            params.extend(op.params.iter().map(query_param_v2));
            let mut responses = Map::new();
            for (code, desc, def) in &op.responses {
                responses.insert(code.to_string(), json!({"description": desc, "schema": {"$ref": format!("{V2_REF_PREFIX}{def}")}}));
            }
            responses.insert("401".into(), json!({"description": "Unauthorized"}));
            let consumes = match &op.body {
                Some((types, _, _)) => types.clone(),
                None => vec!["*/*"],
            };
            pi.insert(
                op.method.into(),
                json!({
                    "description": op.description,
                    "consumes": consumes,
                    "produces": op.produces,
                    "schemes": ["https"],
                    "tags": [op.tag],
                    "operationId": op.id,
                    "parameters": params,
                    "responses": responses,
                    "x-kubernetes-action": op.action,
                    "x-kubernetes-group-version-kind": gvk_value(&op.gvk),
                }),
            );
        }
        let mut params: Vec<Value> = item
            .params
            .iter()
            .map(|(n, d)| path_param_v2(n, d))
            .collect();
        params.push(query_param_v2(&PRETTY));
        pi.insert("parameters".into(), Value::Array(params));
        paths.insert(item.path, Value::Object(pi));
    }
    paths
}

/// OpenAPI 3.0 path items of the given resources (one group-version).
pub fn v3_paths(defs: &[&ResourceDef], kinds: &[KindSchema]) -> Map<String, Value> {
    let mut paths = Map::new();
    for item in items(defs, kinds) {
        let mut pi = Map::new();
        for op in &item.ops {
            let params: Vec<Value> = op.params.iter().map(query_param_v3).collect();
            let mut responses = Map::new();
            for (code, desc, def) in &op.responses {
                let schema = json!({"$ref": format!("{V3_REF_PREFIX}{def}")});
                let content: Map<String, Value> = op
                    .produces
                    .iter()
                    .map(|ct| (ct.to_string(), json!({"schema": schema})))
                    .collect();
                responses.insert(
                    code.to_string(),
                    json!({"description": desc, "content": content}),
                );
            }
            responses.insert("401".into(), json!({"description": "Unauthorized"}));
            let mut o = json!({
                "tags": [op.tag],
                "description": op.description,
                "operationId": op.id,
                "parameters": params,
                "responses": responses,
                "x-kubernetes-action": op.action,
                "x-kubernetes-group-version-kind": gvk_value(&op.gvk),
            });
            if let Some((types, _, def)) = &op.body {
                let schema = json!({"$ref": format!("{V3_REF_PREFIX}{def}")});
                let content: Map<String, Value> = types
                    .iter()
                    .map(|ct| (ct.to_string(), json!({"schema": schema})))
                    .collect();
                o["requestBody"] = json!({"content": content, "required": true});
            }
            pi.insert(op.method.into(), o);
        }
        let mut params: Vec<Value> = item
            .params
            .iter()
            .map(|(n, d)| path_param_v3(n, d))
            .collect();
        params.push(query_param_v3(&PRETTY));
        pi.insert("parameters".into(), Value::Array(params));
        paths.insert(item.path, Value::Object(pi));
    }
    paths
}

/// The `GET /api/v1/` (resource list) operation of a group-version.
pub fn resource_list_path(group: &str, version: &str, v3: bool) -> (String, Value) {
    let gi = format!("{}{}", group_ident(group), capitalize(version));
    let tag = format!("{}_{}", lower_first(&group_ident(group)), version);
    let path = format!("{}/", gv_prefix(group, version));
    let def = super::definitions::API_RESOURCE_LIST;
    let op = if v3 {
        let schema = json!({"$ref": format!("{V3_REF_PREFIX}{def}")});
        json!({
            "tags": [tag],
            "description": "get available resources",
            "operationId": format!("get{gi}APIResources"),
            "responses": {
                "200": {"description": "OK", "content": {JSON: {"schema": schema}, YAML: {"schema": schema}}},
                "401": {"description": "Unauthorized"},
            },
        })
    } else {
        json!({
            "description": "get available resources",
            "consumes": [JSON, YAML],
            "produces": [JSON, YAML],
            "schemes": ["https"],
            "tags": [tag],
            "operationId": format!("get{gi}APIResources"),
            "responses": {
                "200": {"description": "OK", "schema": {"$ref": format!("{V2_REF_PREFIX}{def}")}},
                "401": {"description": "Unauthorized"},
            },
        })
    };
    (path, json!({"get": op}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_idents_follow_upstream_operation_ids() {
        assert_eq!(group_ident(""), "Core");
        assert_eq!(group_ident("apps"), "Apps");
        assert_eq!(
            group_ident("rbac.authorization.k8s.io"),
            "RbacAuthorization"
        );
        assert_eq!(group_ident("networking.k8s.io"), "Networking");
        assert_eq!(
            lower_first(&group_ident("rbac.authorization.k8s.io")),
            "rbacAuthorization"
        );
    }
}
