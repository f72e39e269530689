//! OpenAPI v2 and v3 documents generated from the k8s-openapi types and the
//! catalogue (not copied from upstream).
//!
//! What kubectl (1.27-1.33) reads:
//! - `/openapi/v3` (index) and `/openapi/v3/<gv>?hash=` (JSON): `kubectl
//!   explain`, the field-validation support check before create/apply/replace
//!   (the PATCH operation whose `x-kubernetes-group-version-kind` is the
//!   object's must declare the `fieldValidation` query parameter), and apply's
//!   strategic-merge patch (components carrying the kind's GVK and the
//!   `x-kubernetes-patch-*` field metadata).
//! - `/openapi/v2` only as protobuf (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`;
//!   client-go unmarshals the body as gnostic protobuf whatever the server
//!   answers): `explain --output=plaintext-openapiv2` and the fallbacks taken
//!   when v3 fails.

mod custom;
pub mod definitions;
pub mod listmeta;
mod paths;
mod proto;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use crate::api::status::ApiError;
use crate::registry::{Catalogue, ResourceDef};

/// The protobuf media type client-go asks /openapi/v2 for.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The same, spelled as newer servers answer it.
pub const V2_PROTOBUF_ALT: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const V2_PROTOBUF_SUBTYPE: &str = "com.github.proto-openapi.spec.v2@v1.0+protobuf";
const V2_PROTOBUF_ALT_SUBTYPE: &str = "com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn info() -> Value {
    json!({"title": "Kubernetes", "version": crate::api::health::GIT_VERSION})
}

fn security_schemes() -> Value {
    json!({"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header", "description": "Bearer token authentication"}})
}

/// (group, version, kind) of every def, deduplicated, in catalogue order.
fn gvks(defs: &[Arc<ResourceDef>]) -> Vec<(&str, &str, &str)> {
    let mut out: Vec<(&str, &str, &str)> = Vec::new();
    for d in defs {
        let k = (d.group.as_str(), d.version.as_str(), d.kind.as_str());
        if !out.contains(&k) {
            out.push(k);
        }
    }
    // Subresources reference these.
    if defs.iter().any(|d| d.has_subresource("scale")) {
        out.push(("autoscaling", "v1", "Scale"));
    }
    out
}

/// The /openapi/v2 document.
pub fn v2(catalogue: &Catalogue) -> Value {
    let defs = catalogue.all();
    let mut generated = definitions::generate(&gvks(&defs));
    custom::merge(&mut generated.definitions, &defs, true);
    let refs: Vec<&ResourceDef> = defs.iter().map(|d| d.as_ref()).collect();
    let mut paths = Map::new();
    for (group, versions) in catalogue.groups() {
        for version in versions {
            let (p, item) = paths::resource_list_path(&group, &version, false);
            paths.insert(p, item);
        }
    }
    paths.extend(paths::v2_paths(&refs, &generated.kinds));
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions::to_v2(generated.definitions),
        "securityDefinitions": security_schemes(),
        "security": [{"BearerToken": []}],
    })
}

/// `api/v1` -> ("", "v1"); `apis/apps/v1` -> ("apps", "v1").
fn parse_gv_path(path: &str) -> Option<(&str, &str)> {
    let path = path.trim_matches('/');
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("api"), Some(v), None, None) if !v.is_empty() => Some(("", v)),
        (Some("apis"), Some(g), Some(v), None) if !g.is_empty() && !v.is_empty() => Some((g, v)),
        _ => None,
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The /openapi/v3/<path> document for one group-version (`api/v1`, `apis/apps/v1`).
pub fn v3_document(catalogue: &Catalogue, path: &str) -> Option<Value> {
    let (group, version) = parse_gv_path(path)?;
    let defs = catalogue.resources(group, version);
    if defs.is_empty() {
        return None;
    }
    let mut generated = definitions::generate(&gvks(&defs));
    custom::merge(&mut generated.definitions, &defs, false);
    let refs: Vec<&ResourceDef> = defs.iter().map(|d| d.as_ref()).collect();
    let mut paths = Map::new();
    let (p, item) = paths::resource_list_path(group, version, true);
    paths.insert(p, item);
    paths.extend(paths::v3_paths(&refs, &generated.kinds));
    Some(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {
            "schemas": definitions::to_v3(generated.definitions),
            "securitySchemes": security_schemes(),
        },
        "security": [{"BearerToken": []}],
    }))
}

/// The /openapi/v3 index: `{"paths": {"api/v1": {"serverRelativeURL": ...}}}`.
pub fn v3_index(catalogue: &Catalogue) -> Value {
    let mut paths = Map::new();
    for (group, versions) in catalogue.groups() {
        for version in versions {
            let p = gv_path(&group, &version);
            if let Some(doc) = v3_document(catalogue, &p) {
                let hash = content_hash(&serde_json::to_vec(&doc).unwrap_or_default());
                paths.insert(
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
                );
            }
        }
    }
    json!({"paths": paths})
}

/// A stable content hash (upper-case hex) for ETags and `?hash=`.
fn content_hash(data: &[u8]) -> String {
    // Two differently seeded SipHashes: 128 bits, no extra dependency.
    let mut a = std::hash::DefaultHasher::new();
    data.hash(&mut a);
    let mut b = std::hash::DefaultHasher::new();
    0x6b38u16.hash(&mut b);
    data.hash(&mut b);
    format!("{:016X}{:016X}", a.finish(), b.finish())
}

/// A serialized document with its ETag (its content hash).
#[derive(Clone)]
pub struct Doc {
    pub body: Bytes,
    pub etag: String,
}

impl Doc {
    fn new(body: Vec<u8>) -> Self {
        let etag = content_hash(&body);
        Doc {
            body: Bytes::from(body),
            etag,
        }
    }
}

/// Every document of one catalogue state; each part is built on first use.
struct Built {
    fingerprint: u64,
    v2: OnceLock<(Doc, Doc)>,
    v3: OnceLock<V3>,
}

struct V3 {
    index: Doc,
    /// `api/v1` -> document
    docs: HashMap<String, Doc>,
}

/// The served OpenAPI documents, built once per catalogue state and cached as
/// bytes. A changed catalogue (CRDs added or removed) is noticed on the next
/// request and the documents are rebuilt lazily; `invalidate` forces it.
#[derive(Default)]
pub struct OpenApi {
    built: Mutex<Option<Arc<Built>>>,
}

/// What identifies a catalogue state for the documents.
fn fingerprint(catalogue: &Catalogue) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for d in catalogue.all() {
        (
            &d.group,
            &d.version,
            &d.kind,
            &d.plural,
            d.namespaced,
            &d.subresources,
            &d.verbs,
            d.strategy.custom_resource().map(|c| c.fingerprint),
        )
            .hash(&mut h);
    }
    h.finish()
}

impl OpenApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every cached document; the next request rebuilds.
    pub fn invalidate(&self) {
        *self.built.lock() = None;
    }

    fn current(&self, catalogue: &Catalogue) -> Arc<Built> {
        let fp = fingerprint(catalogue);
        let mut slot = self.built.lock();
        match &*slot {
            Some(b) if b.fingerprint == fp => b.clone(),
            _ => {
                let b = Arc::new(Built {
                    fingerprint: fp,
                    v2: OnceLock::new(),
                    v3: OnceLock::new(),
                });
                *slot = Some(b.clone());
                b
            }
        }
    }

    /// /openapi/v2 as (JSON, protobuf).
    pub fn v2(&self, catalogue: &Catalogue) -> (Doc, Doc) {
        let built = self.current(catalogue);
        built
            .v2
            .get_or_init(|| {
                let doc = v2(catalogue);
                let json = Doc::new(serde_json::to_vec(&doc).unwrap_or_default());
                let pb = Doc::new(proto::encode_document(&doc));
                (json, pb)
            })
            .clone()
    }

    fn v3_all(&self, catalogue: &Catalogue) -> Arc<Built> {
        let built = self.current(catalogue);
        built.v3.get_or_init(|| {
            let mut docs = HashMap::new();
            let mut paths = Map::new();
            for (group, versions) in catalogue.groups() {
                for version in versions {
                    let p = gv_path(&group, &version);
                    if let Some(doc) = v3_document(catalogue, &p) {
                        let doc = Doc::new(serde_json::to_vec(&doc).unwrap_or_default());
                        paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", doc.etag)}));
                        docs.insert(p, doc);
                    }
                }
            }
            let index = Doc::new(serde_json::to_vec(&json!({"paths": paths})).unwrap_or_default());
            V3 { index, docs }
        });
        built
    }

    /// The /openapi/v3 index.
    pub fn v3_index(&self, catalogue: &Catalogue) -> Doc {
        let built = self.v3_all(catalogue);
        built
            .v3
            .get()
            .map(|v| v.index.clone())
            .unwrap_or_else(|| Doc::new(b"{\"paths\":{}}".to_vec()))
    }

    /// One /openapi/v3/<path> document (`api/v1`, `apis/apps/v1`).
    pub fn v3_document(&self, catalogue: &Catalogue, path: &str) -> Option<Doc> {
        let built = self.v3_all(catalogue);
        let key = path.trim_matches('/');
        built.v3.get().and_then(|v| v.docs.get(key).cloned())
    }

    /// Answers a GET of `/openapi/v2`, `/openapi/v3` or `/openapi/v3/<gv>`
    /// (`path` is the request path, `query` its query string) as upstream's
    /// handlers do: content negotiation on Accept (406 when nothing fits),
    /// ETag with If-None-Match (304), and for `?hash=` documents a redirect
    /// (301) to the current hash or long-lived caching headers.
    pub fn respond(
        &self,
        catalogue: &Catalogue,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Response {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let path = path.trim_end_matches('/');
        if path == "/openapi/v2" {
            let choice = negotiate(
                accept,
                &[
                    ("application", "json"),
                    ("application", V2_PROTOBUF_SUBTYPE),
                    ("application", V2_PROTOBUF_ALT_SUBTYPE),
                ],
            );
            let (json, pb) = match choice {
                Some(_) => self.v2(catalogue),
                None => {
                    return ApiError::not_acceptable(
                        "only application/json and the gnostic protobuf are served",
                    )
                    .into_response();
                }
            };
            return match choice {
                Some(0) => doc_response(&json, "application/json", headers, false),
                _ => doc_response(&pb, V2_PROTOBUF_ALT, headers, false),
            };
        }
        if path == "/openapi/v3" {
            let doc = self.v3_index(catalogue);
            return doc_response(&doc, "application/json", headers, false);
        }
        let Some(gv) = path.strip_prefix("/openapi/v3/") else {
            return ApiError::not_found_path().into_response();
        };
        let Some(doc) = self.v3_document(catalogue, gv) else {
            return ApiError::not_found_path().into_response();
        };
        if negotiate(accept, &[("application", "json")]).is_none() {
            return ApiError::not_acceptable("only application/json is served for OpenAPI v3")
                .into_response();
        }
        let hash = query.and_then(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == "hash")
                .map(|(_, v)| v)
        });
        match hash {
            Some(h) if h != doc.etag => {
                let location = format!("/openapi/v3/{}?hash={}", gv.trim_matches('/'), doc.etag);
                let mut resp = StatusCode::MOVED_PERMANENTLY.into_response();
                if let Ok(v) = HeaderValue::from_str(&location) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                resp
            }
            Some(_) => doc_response(&doc, "application/json", headers, true),
            None => doc_response(&doc, "application/json", headers, false),
        }
    }
}

/// Index of the first of `offered` (type, subtype) that the Accept header
/// admits, taking clauses by descending q; an empty header admits anything.
fn negotiate(accept: &str, offered: &[(&str, &str)]) -> Option<usize> {
    let accept = if accept.trim().is_empty() {
        "*/*"
    } else {
        accept
    };
    let mut clauses: Vec<(f32, usize, &str, &str)> = Vec::new();
    for (i, clause) in accept.split(',').enumerate() {
        let mut parts = clause.split(';');
        let media = parts.next().unwrap_or("").trim();
        let mut q = 1.0f32;
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        let (t, s) = media.split_once('/').unwrap_or((media, ""));
        if q > 0.0 {
            clauses.push((q, i, t.trim(), s.trim()));
        }
    }
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, t, s) in clauses {
        for (i, (ot, os)) in offered.iter().enumerate() {
            if (t == "*" || t.eq_ignore_ascii_case(ot)) && (s == "*" || s.eq_ignore_ascii_case(os))
            {
                return Some(i);
            }
        }
    }
    None
}

fn doc_response(doc: &Doc, content_type: &str, headers: &HeaderMap, immutable: bool) -> Response {
    let etag = format!("\"{}\"", doc.etag);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, doc.body.clone()).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if immutable {
        // The URL names the content: clients may keep it (a year, as upstream).
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
        let expires = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * 365))
            .ok();
        if let Some(v) = expires.and_then(|t| {
            HeaderValue::from_str(&t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
        }) {
            h.insert(header::EXPIRES, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests;
