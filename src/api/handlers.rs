//! Resource endpoints: path resolution and the REST verbs, rendering the
//! registry's results as JSON, Table or PartialObjectMetadata.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::ApiState;
use super::discovery;
use super::fieldvalidation;
use super::request::{self, BodyType, FieldValidation, Output, Query};
use super::status::{ApiError, success_status};
use super::table;
use crate::registry::ResourceDef;
use crate::registry::generic::{ListPage, WriteOptions};

pub(crate) fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub async fn api_root(State(st): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if let Some(v) = discovery::wants_aggregated(&headers) {
        return aggregated(&st, true, v);
    }
    json_response(StatusCode::OK, &discovery::api_versions(&st.server_address))
}

pub async fn apis_root(State(st): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if let Some(v) = discovery::wants_aggregated(&headers) {
        return aggregated(&st, false, v);
    }
    json_response(StatusCode::OK, &discovery::group_list(&st.catalogue))
}

fn aggregated(st: &ApiState, legacy: bool, version: &str) -> Response {
    let body = serde_json::to_vec(&discovery::aggregated(&st.catalogue, legacy, version))
        .unwrap_or_default();
    let mut resp = (StatusCode::OK, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&discovery::aggregated_content_type(version)) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// /openapi/v2 (JSON or protobuf) and /openapi/v3 documents. The first build
/// costs tens of milliseconds of CPU, so it runs off the async workers.
pub async fn openapi(
    State(st): State<Arc<ApiState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let st2 = st.clone();
    tokio::task::spawn_blocking(move || {
        st2.openapi
            .respond(&st2.catalogue, uri.path(), uri.query(), &headers)
    })
    .await
    .unwrap_or_else(|e| ApiError::internal(e.to_string()).into_response())
}

/// A resolved resource path.
pub(crate) struct Target {
    pub def: Arc<ResourceDef>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

enum Resolved {
    GroupVersion(String, String),
    Group(String),
    Resource(Target),
}

fn resolve(st: &ApiState, path: &str) -> Result<Resolved, ApiError> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let (group, version, rest) = match segs.first().map(String::as_str) {
        Some("api") if segs.len() >= 2 => (String::new(), segs[1].clone(), &segs[2..]),
        Some("apis") if segs.len() == 2 => return Ok(Resolved::Group(segs[1].clone())),
        Some("apis") if segs.len() >= 3 => (segs[1].clone(), segs[2].clone(), &segs[3..]),
        _ => return Err(ApiError::not_found_path()),
    };
    if rest.is_empty() {
        return Ok(Resolved::GroupVersion(group, version));
    }
    let cat = &st.catalogue;
    // namespaces/{ns}/{resource}/... when {resource} is a namespaced resource.
    if rest[0] == "namespaces"
        && rest.len() >= 3
        && let Some(def) = cat.get(&group, &version, &rest[2]).filter(|d| d.namespaced)
    {
        // Proxy subresources carry a path of their own after `proxy`.
        if rest.len() > 5 && rest[4] != "proxy" {
            return Err(ApiError::not_found_path());
        }
        return Ok(Resolved::Resource(Target {
            def,
            namespace: Some(rest[1].clone()),
            name: rest.get(3).cloned(),
            subresource: rest.get(4).cloned(),
        }));
    }
    let Some(def) = cat.get(&group, &version, &rest[0]) else {
        return Err(ApiError::not_found_path());
    };
    if (rest.len() > 3 && rest[2] != "proxy") || (def.namespaced && rest.len() > 1) {
        return Err(ApiError::not_found_path());
    }
    Ok(Resolved::Resource(Target {
        def,
        namespace: None,
        name: rest.get(1).cloned(),
        subresource: rest.get(2).cloned(),
    }))
}

/// Read a body up to the 3 MiB limit.
async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, request::MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large())
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "error reading the request body: {e}"
        ))),
    }
}

/// The fallback handler: every resource path.
pub async fn resource(State(st): State<Arc<ApiState>>, req: Request) -> Response {
    // metrics.k8s.io is served from node usage, not from the store.
    if super::resourcemetrics::handles(req.uri().path()) {
        return super::resourcemetrics::serve(&st, req).await;
    }
    match serve(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(st: Arc<ApiState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let q = Query::parse(parts.uri.query())?;
    let resolved = resolve(&st, parts.uri.path())?;
    let t = match resolved {
        Resolved::Group(g) => {
            if parts.method != Method::GET {
                return Err(ApiError::method_not_allowed("only GET is allowed"));
            }
            return discovery::group(&st.catalogue, &g)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(ApiError::not_found_path);
        }
        Resolved::GroupVersion(g, v) => {
            if parts.method != Method::GET {
                return Err(ApiError::method_not_allowed("only GET is allowed"));
            }
            return discovery::resource_list(&st.catalogue, &g, &v)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(ApiError::not_found_path);
        }
        Resolved::Resource(t) => t,
    };
    if let Some(sub) = &t.subresource
        && !t.def.has_subresource(sub)
        && !(t.def.kind == "Namespace" && sub == "finalize")
    {
        return Err(ApiError::not_found_path());
    }
    if super::streams::handles(&t) {
        return Ok(super::streams::serve(st, t, Request::from_parts(parts, body)).await);
    }
    let out = request::negotiate(&parts.headers)?;
    let deprecated = deprecation(&t.def);
    let (resp, admission) =
        super::warning::collect(serve_resource(&st, t, parts, body, q, out)).await;
    let mut resp = resp?;
    if let Some(w) = deprecated {
        add_warnings(&mut resp, &[w]);
    }
    add_warnings(&mut resp, &admission);
    Ok(resp)
}

/// Upstream's deprecation warnings, sent on every use of the resource.
fn deprecation(def: &ResourceDef) -> Option<String> {
    if let Some(cr) = def.strategy.custom_resource() {
        return cr.deprecation_warning.clone();
    }
    (def.group.is_empty() && def.plural == "endpoints").then(|| {
        "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice".to_string()
    })
}

async fn serve_resource(
    st: &Arc<ApiState>,
    t: Target,
    parts: axum::http::request::Parts,
    body: Body,
    q: Query,
    out: Output,
) -> Result<Response, ApiError> {
    let ns = t.namespace.as_deref();
    let reg = &st.registry;
    let def = t.def.clone();
    match (&parts.method, &t.name) {
        (&Method::GET, None) if q.flag("watch") => {
            super::watch::serve(st.clone(), def, t.namespace.clone(), &q, out).await
        }
        (&Method::GET, None) => {
            let lq = q.list_query()?;
            let page = reg.list(&def, ns, &lq).await?;
            Ok(render_list(&def, page, out, &q)?)
        }
        (&Method::GET, Some(name)) if t.subresource.as_deref() == Some("scale") => {
            let obj = reg.get(&def, ns, name, q.read_at()?).await?;
            Ok(json_response(
                StatusCode::OK,
                &crate::registry::generic::Registry::scale_of(&def, &obj),
            ))
        }
        (&Method::PUT, Some(name)) if t.subresource.as_deref() == Some("scale") => {
            let bt = request::body_type(&parts.headers)?;
            let raw = read_body(body).await?;
            let scale = request::decode_object(&raw, bt)?;
            let opts = write_options(&q, &parts)?;
            Ok(json_response(
                StatusCode::OK,
                &reg.update_scale(&def, ns, name, &scale, &opts).await?,
            ))
        }
        (&Method::PATCH, Some(name)) if t.subresource.as_deref() == Some("scale") => {
            let bt = request::body_type(&parts.headers)?;
            let raw = read_body(body).await?;
            let opts = write_options(&q, &parts)?;
            Ok(json_response(
                StatusCode::OK,
                &crate::patch::apply_scale_patch(reg, &def, ns, name, bt, &raw, &opts).await?,
            ))
        }
        (&Method::GET, Some(name)) => {
            let obj = reg.get(&def, ns, name, q.read_at()?).await?;
            render_object(&def, StatusCode::OK, obj, out, &q)
        }
        (&Method::POST, None) => {
            let bt = request::body_type(&parts.headers)?;
            if !matches!(bt, BodyType::Json | BodyType::Yaml | BodyType::Protobuf) {
                return Err(ApiError::unsupported_media_type(
                    parts
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                ));
            }
            let raw = read_body(body).await?;
            let mode = q.field_validation()?;
            let (mut obj, duplicates) = decode_checked(&raw, bt, mode)?;
            let warnings = check_fields(&def, &raw, bt, &mut obj, mode, duplicates)?;
            let opts = write_options(&q, &parts)?;
            let created = reg.create(&def, ns, obj, &opts).await?;
            let mut resp = render_object(&def, StatusCode::CREATED, created, out, &q)?;
            add_warnings(&mut resp, &warnings);
            Ok(resp)
        }
        (&Method::POST, Some(name)) if t.subresource.as_deref() == Some("binding") => {
            let bt = request::body_type(&parts.headers)?;
            let raw = read_body(body).await?;
            let binding = request::decode_object(&raw, bt)?;
            let opts = write_options(&q, &parts)?;
            let binding = crate::admission::webhook::connect::admit_create(
                reg, &def, ns, name, "binding", binding, &opts,
            )
            .await?;
            let status = reg.bind_pod(&def, ns, name, &binding, &opts).await?;
            Ok(json_response(StatusCode::CREATED, &status))
        }
        (&Method::POST, Some(name)) if t.subresource.as_deref() == Some("eviction") => {
            let bt = request::body_type(&parts.headers)?;
            let eviction = request::decode_object(&read_body(body).await?, bt)?;
            let dry_run = q.dry_run()?;
            let eviction = crate::admission::webhook::connect::admit_create(
                reg,
                &def,
                ns,
                name,
                "eviction",
                eviction,
                &write_options(&q, &parts)?,
            )
            .await?;
            let status = crate::registry::eviction::evict(reg, &def, ns, name, &eviction, dry_run);
            Ok(json_response(StatusCode::CREATED, &status.await?))
        }
        (&Method::PUT, Some(name)) => {
            let bt = request::body_type(&parts.headers)?;
            if !matches!(bt, BodyType::Json | BodyType::Yaml | BodyType::Protobuf) {
                return Err(ApiError::unsupported_media_type(
                    parts
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                ));
            }
            let raw = read_body(body).await?;
            let mode = q.field_validation()?;
            let (mut obj, duplicates) = decode_checked(&raw, bt, mode)?;
            let warnings = check_fields(&def, &raw, bt, &mut obj, mode, duplicates)?;
            let opts = write_options(&q, &parts)?;
            let sub = t
                .subresource
                .as_deref()
                .map(|s| if s == "finalize" { "finalize" } else { s });
            let updated = if sub == Some("finalize") {
                reg.finalize_namespace(&def, name, obj, &opts).await?
            } else {
                reg.update(&def, ns, name, obj, sub, &opts).await?
            };
            let mut resp = render_object(&def, StatusCode::OK, updated, out, &q)?;
            add_warnings(&mut resp, &warnings);
            Ok(resp)
        }
        (&Method::PATCH, Some(name)) => {
            let bt = request::body_type(&parts.headers)?;
            let raw = read_body(body).await?;
            let opts = write_options(&q, &parts)?;
            let force = q.force(bt == BodyType::ApplyPatch)?;
            if bt == BodyType::ApplyPatch {
                // Server-side apply: kubectl names its manager; the user agent won't do.
                let opts = WriteOptions {
                    field_manager: q.get("fieldManager").map(str::to_string),
                    ..opts
                };
                let mode = q.field_validation()?;
                let mut config = request::decode_object(&raw, bt)?;
                let warnings = check_fields(&def, &raw, bt, &mut config, mode, None)?;
                let (obj, created) = crate::patch::apply::apply_patch(
                    reg,
                    &def,
                    ns,
                    name,
                    t.subresource.as_deref(),
                    config,
                    force,
                    &opts,
                )
                .await?;
                let code = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                let mut resp = render_object(&def, code, obj, out, &q)?;
                add_warnings(&mut resp, &warnings);
                return Ok(resp);
            }
            let (patched, warnings) = crate::patch::apply_patch_warned(
                reg,
                &def,
                ns,
                name,
                t.subresource.as_deref(),
                bt,
                &raw,
                &opts,
            )
            .await?;
            let mut resp = render_object(&def, StatusCode::OK, patched, out, &q)?;
            add_warnings(&mut resp, &warnings);
            Ok(resp)
        }
        (&Method::DELETE, Some(name)) => {
            let raw = read_body(body).await?;
            let body_opts = if raw.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(request::decode_object(&raw, BodyType::Json)?)
            };
            let opts = q.delete_options(body_opts.as_ref(), user_of(&parts))?;
            let (obj, gone) = reg.delete(&def, ns, name, &opts).await?;
            if gone
                && !matches!(
                    def.kind.as_str(),
                    "Pod" | "Namespace" | "CustomResourceDefinition"
                )
            {
                let uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
                return Ok(json_response(
                    StatusCode::OK,
                    &success_status(def.target(), name, uid),
                ));
            }
            // Objects still pending deletion (finalizers) come back whole, 202 upstream for some kinds.
            render_object(&def, StatusCode::OK, obj, out, &q)
        }
        (&Method::DELETE, None) => {
            if !def.verbs.iter().any(|v| v == "deletecollection") {
                return Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({})",
                    def.plural
                )));
            }
            let raw = read_body(body).await?;
            let body_opts = if raw.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(request::decode_object(&raw, BodyType::Json)?)
            };
            let opts = q.delete_options(body_opts.as_ref(), user_of(&parts))?;
            let lq = q.list_query()?;
            let deleted = reg.delete_collection(&def, ns, &lq, &opts).await?;
            let rev = st.registry.store.current_revision();
            render_list(
                &def,
                ListPage {
                    items: deleted,
                    revision: rev,
                    continue_token: None,
                    remaining: None,
                },
                out,
                &q,
            )
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            def.plural
        ))),
    }
}

/// The requesting user (admission webhooks are told who asked).
fn user_of(parts: &axum::http::request::Parts) -> Option<crate::auth::UserInfo> {
    parts
        .extensions
        .get::<super::Identity>()
        .and_then(|i| i.0.clone())
}

/// Options of a write: dry run, the field manager recorded in managedFields
/// and the requesting user.
fn write_options(q: &Query, parts: &axum::http::request::Parts) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        dry_run: q.dry_run()?,
        field_manager: Some(q.field_manager(&parts.headers)?),
        managed_fields_set: false,
        user: user_of(parts),
        request_options: crate::admission::webhook::RequestOptions {
            field_manager: q.get("fieldManager").map(str::to_string),
            field_validation: q.get("fieldValidation").map(str::to_string),
        },
        field_validation: q.field_validation()?,
        ..Default::default()
    })
}

/// Decode a create/update body. In Warn mode a JSON body is parsed once,
/// noting whether it repeats a key (`Some(found)`); otherwise `None`.
fn decode_checked(
    raw: &[u8],
    bt: BodyType,
    mode: FieldValidation,
) -> Result<(Value, Option<bool>), ApiError> {
    if mode != FieldValidation::Warn || bt != BodyType::Json {
        return Ok((request::decode_object(raw, bt)?, None));
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    let (v, duplicates) = fieldvalidation::parse_noting_duplicates(raw).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: the body must be an object",
        ));
    }
    Ok((v, Some(duplicates)))
}

/// Field validation: Strict rejects unknown and duplicate fields; Warn and
/// Ignore drop unknown fields (as decoding into the typed object does
/// upstream), Warn also returning them for Warning headers.
fn check_fields(
    def: &ResourceDef,
    raw: &[u8],
    bt: BodyType,
    obj: &mut Value,
    mode: FieldValidation,
    duplicates: Option<bool>,
) -> Result<Vec<String>, ApiError> {
    if mode == FieldValidation::Strict {
        let problems: Vec<String> = if bt == BodyType::Json {
            fieldvalidation::strict_errors(def, raw)
                .iter()
                .map(ToString::to_string)
                .collect()
        } else {
            fieldvalidation::unknown_fields(def, obj)
                .into_iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect()
        };
        if problems.is_empty() {
            return Ok(Vec::new());
        }
        // Upstream names only the version here: `Deployment in version "v1"`.
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            def.kind,
            def.version,
            def.kind,
            problems.join(", ")
        )));
    }
    let mut warnings: Vec<String> = Vec::new();
    // The paths of duplicates need a walk of the body; skip it when the
    // parse already saw none.
    if mode == FieldValidation::Warn && bt == BodyType::Json && duplicates != Some(false) {
        warnings.extend(
            fieldvalidation::duplicate_fields(raw)
                .into_iter()
                .map(|f| format!("duplicate field \"{f}\"")),
        );
    }
    let unknown = fieldvalidation::prune_unknown(def, obj);
    if mode == FieldValidation::Warn {
        warnings.extend(
            unknown
                .into_iter()
                .map(|f| format!("unknown field \"{f}\"")),
        );
    }
    Ok(warnings)
}

fn add_warnings(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
}

fn list_meta(page: &ListPage) -> Value {
    let mut m = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        m["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        m["remainingItemCount"] = json!(r);
    }
    m
}

fn meta_api_version(v1beta1: bool) -> &'static str {
    if v1beta1 {
        "meta.k8s.io/v1beta1"
    } else {
        "meta.k8s.io/v1"
    }
}

pub(crate) fn partial_metadata(obj: &Value, v1beta1: bool) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": meta_api_version(v1beta1), "metadata": obj["metadata"].clone()})
}

fn render_list(
    def: &ResourceDef,
    page: ListPage,
    out: Output,
    q: &Query,
) -> Result<Response, ApiError> {
    let meta = list_meta(&page);
    let v = match out {
        Output::Json => {
            return Ok(list_json_response(
                &def.list_kind(),
                &def.api_version(),
                &meta,
                page.items,
            ));
        }
        Output::Table { v1beta1 } => {
            let mut t = table::build_table(def, &page.items, q.include_object()?, meta);
            t["apiVersion"] = json!(meta_api_version(v1beta1));
            t
        }
        Output::Metadata { v1beta1 } => {
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|o| partial_metadata(o, v1beta1))
                .collect();
            json!({"kind": "PartialObjectMetadataList", "apiVersion": meta_api_version(v1beta1), "metadata": meta, "items": items})
        }
    };
    Ok(json_response(StatusCode::OK, &v))
}

/// A JSON list body written item by item, each freed once written: a list
/// of 30,000 pods otherwise held the decoded items, a deep copy of them
/// (`json!` serialises a Vec into a new Value) and the output at once.
fn list_json_response(kind: &str, api_version: &str, meta: &Value, items: Vec<Value>) -> Response {
    fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
        // Writing to a Vec cannot fail, and these values always serialise.
        let _ = serde_json::to_writer(&mut *out, v);
    }
    let mut body = Vec::with_capacity(64 + items.len() * 1024);
    body.extend_from_slice(b"{\"kind\":");
    put(&mut body, kind);
    body.extend_from_slice(b",\"apiVersion\":");
    put(&mut body, api_version);
    body.extend_from_slice(b",\"metadata\":");
    put(&mut body, meta);
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        put(&mut body, &item);
    }
    body.extend_from_slice(b"]}");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn render_object(
    def: &ResourceDef,
    code: StatusCode,
    obj: Value,
    out: Output,
    q: &Query,
) -> Result<Response, ApiError> {
    let v = match out {
        Output::Json => obj,
        Output::Table { v1beta1 } => {
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(json!(""));
            let mut t = table::build_table(
                def,
                std::slice::from_ref(&obj),
                q.include_object()?,
                json!({"resourceVersion": rv}),
            );
            t["apiVersion"] = json!(meta_api_version(v1beta1));
            t
        }
        Output::Metadata { v1beta1 } => partial_metadata(&obj, v1beta1),
    };
    Ok(json_response(code, &v))
}
