//! Request decoding: query parameters, content negotiation and bodies.

use axum::http::HeaderMap;
use serde_json::Value;

use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::table::IncludeObject;
use crate::registry::generic::{DeleteOptions, ListQuery, ReadAt};
use crate::store::Revision;

/// Upstream's limit on request bodies (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Query parameters as a multimap (order kept; the last value wins on lookup).
#[derive(Clone, Debug, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw {
            None | Some("") => Ok(Query::default()),
            Some(q) => serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .map(Query)
                .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}"))),
        }
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1") | Some("true") | Some("True"))
    }
    fn int<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {k}: \"{v}\" is not a number"))
            }),
        }
    }
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        let mut dry = false;
        for (k, v) in &self.0 {
            if k == "dryRun" {
                match v.as_str() {
                    "All" => dry = true,
                    "" => {}
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: \"{other}\": supported values: \"All\""
                        )));
                    }
                }
            }
        }
        Ok(dry)
    }
    pub fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        match self.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}, must be one of: Ignore, Warn, Strict"
            ))),
        }
    }
    /// The manager of a write: `fieldManager`, else the user agent's program
    /// name (upstream's rule). At most 128 printable characters.
    pub fn field_manager(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let given = self.get("fieldManager");
        if let Some(m) = given {
            if m.len() > 128 {
                return Err(options_invalid(
                    "fieldManager: Too long: may not be more than 128 bytes",
                ));
            }
            if m.chars().any(char::is_control) {
                return Err(options_invalid(&format!(
                    "fieldManager: Invalid value: {m:?}: must only contain printable characters"
                )));
            }
        }
        let ua = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        Ok(crate::patch::managedfields::manager_from(given, ua))
    }

    /// `force` of an apply patch; forbidden on other patches, as upstream.
    pub fn force(&self, apply: bool) -> Result<bool, ApiError> {
        match self.get("force") {
            None | Some("") => Ok(false),
            Some(_) if !apply => Err(crate::patch::patch_options_invalid(
                "force: Forbidden: may not be specified for non-apply patch",
            )),
            Some(v) => v
                .parse::<bool>()
                .map_err(|_| ApiError::bad_request(format!("invalid value for force: \"{v}\""))),
        }
    }

    pub fn timeout_seconds(&self) -> Result<Option<u64>, ApiError> {
        self.int("timeoutSeconds")
    }
    pub fn include_object(&self) -> Result<IncludeObject, ApiError> {
        match self.get("includeObject") {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(o) => Err(ApiError::bad_request(format!(
                "includeObject: unsupported value: {o}"
            ))),
        }
    }

    /// resourceVersion as a revision: None when unset or "0".
    pub fn resource_version(&self) -> Result<Option<Revision>, ApiError> {
        parse_rv(self.get("resourceVersion"))
    }

    pub fn read_at(&self) -> Result<ReadAt, ApiError> {
        let raw = self.get("resourceVersion").unwrap_or("");
        let rv = self.resource_version()?;
        match (self.get("resourceVersionMatch").unwrap_or(""), rv) {
            ("", None) if raw.is_empty() => Ok(ReadAt::Latest),
            ("", None) => Ok(ReadAt::Any),
            ("", Some(r)) | ("NotOlderThan", Some(r)) => Ok(ReadAt::NotOlderThan(r)),
            ("NotOlderThan", None) => Ok(ReadAt::Any),
            ("Exact", Some(r)) => Ok(ReadAt::Exact(r)),
            ("Exact", None) => Err(list_options_invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            )),
            (m, _) => Err(list_options_invalid(&format!(
                "resourceVersionMatch: Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\", \"\""
            ))),
        }
    }

    pub fn list_query(&self) -> Result<ListQuery, ApiError> {
        let labels = LabelSelector::parse(self.get("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(self.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
        let limit: Option<i64> = self.int("limit")?;
        let continue_token = self
            .get("continue")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let read_at = self.read_at()?;
        if continue_token.is_some() && !matches!(read_at, ReadAt::Latest) {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        Ok(ListQuery {
            labels,
            fields,
            limit: limit.filter(|l| *l > 0).map(|l| l as usize),
            continue_token,
            read_at,
        })
    }

    /// DeleteOptions from the query and (if any) the body, body winning.
    pub fn delete_options(
        &self,
        body: Option<&Value>,
        user: Option<crate::auth::UserInfo>,
    ) -> Result<DeleteOptions, ApiError> {
        let mut o = DeleteOptions {
            dry_run: self.dry_run()?,
            user,
            grace_period_seconds: self.int("gracePeriodSeconds")?,
            propagation_policy: self.get("propagationPolicy").map(str::to_string),
            ..Default::default()
        };
        if o.propagation_policy.is_none() {
            match self.get("orphanDependents") {
                Some("true") => o.propagation_policy = Some("Orphan".into()),
                Some("false") => o.propagation_policy = Some("Background".into()),
                _ => {}
            }
        }
        if let Some(b) = body {
            if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
                o.propagation_policy = Some(p.to_string());
            } else if let Some(orphan) = b.get("orphanDependents").and_then(Value::as_bool) {
                o.propagation_policy = Some(if orphan { "Orphan" } else { "Background" }.into());
            }
            if let Some(g) = b.get("gracePeriodSeconds").and_then(Value::as_i64) {
                o.grace_period_seconds = Some(g);
            }
            if let Some(arr) = b.get("dryRun").and_then(Value::as_array)
                && arr.iter().any(|v| v == "All")
            {
                o.dry_run = true;
            }
            if let Some(uid) = b.pointer("/preconditions/uid").and_then(Value::as_str) {
                o.precondition_uid = Some(uid.to_string());
            }
            if let Some(rv) = b
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
            {
                o.precondition_rv = Some(rv.to_string());
            }
        }
        if let Some(p) = &o.propagation_policy
            && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            )));
        }
        Ok(o)
    }
}

/// Invalid write options are 422 Invalid, as upstream validates them.
fn options_invalid(detail: &str) -> ApiError {
    crate::patch::patch_options_invalid(detail)
}

/// Invalid list options are 422 Invalid of kind ListOptions, as upstream.
pub fn list_options_invalid(detail: &str) -> ApiError {
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("ListOptions.meta.k8s.io \"\" is invalid: {detail}"),
    );
    e.details = Some(serde_json::json!({"group": "meta.k8s.io", "kind": "ListOptions"}));
    e
}

pub fn parse_rv(raw: Option<&str>) -> Result<Option<Revision>, ApiError> {
    match raw {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => match v.parse::<Revision>() {
            Ok(r) if r > 0 => Ok(Some(r)),
            _ => Err(ApiError::bad_request(format!(
                "invalid resource version \"{v}\": resourceVersion must be a positive integer"
            ))),
        },
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    /// The server's default, as upstream.
    #[default]
    Warn,
    Strict,
}

/// What the client wants back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    /// meta.k8s.io Table, with the group-version the client named.
    Table {
        v1beta1: bool,
    },
    /// PartialObjectMetadata(List).
    Metadata {
        v1beta1: bool,
    },
}

/// Parse the Accept header into what we can render.
pub fn negotiate(headers: &HeaderMap) -> Result<Output, ApiError> {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    let mut saw_other = false;
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        let (mut as_, mut v, mut g) = ("", "", "");
        for p in params {
            if let Some((k, val)) = p.split_once('=') {
                match k.trim() {
                    "as" => as_ = val.trim(),
                    "v" => v = val.trim(),
                    "g" => g = val.trim(),
                    _ => {}
                }
            }
        }
        let jsonish = matches!(
            media,
            "application/json" | "*/*" | "application/*" | "application/yaml"
        );
        if !jsonish {
            saw_other = true;
            continue;
        }
        match (as_, g) {
            ("", _) => return Ok(Output::Json),
            ("Table", "meta.k8s.io") => {
                return Ok(Output::Table {
                    v1beta1: v == "v1beta1",
                });
            }
            ("PartialObjectMetadata" | "PartialObjectMetadataList", "meta.k8s.io") => {
                return Ok(Output::Metadata {
                    v1beta1: v == "v1beta1",
                });
            }
            _ => continue,
        }
    }
    if saw_other || !accept.is_empty() {
        return Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (got {accept})"
        )));
    }
    Ok(Output::Json)
}

/// Body format of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
    /// application/vnd.kubernetes.protobuf (typed clients of kubectl 1.32+).
    Protobuf,
}

pub fn body_type(headers: &HeaderMap) -> Result<BodyType, ApiError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    match media {
        "" | "application/json" => Ok(BodyType::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(BodyType::Yaml),
        "application/json-patch+json" => Ok(BodyType::JsonPatch),
        "application/merge-patch+json" => Ok(BodyType::MergePatch),
        "application/strategic-merge-patch+json" => Ok(BodyType::StrategicMergePatch),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(BodyType::ApplyPatch),
        "application/vnd.kubernetes.protobuf" => Ok(BodyType::Protobuf),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Decode a JSON or YAML object body.
pub fn decode_object(raw: &[u8], ty: BodyType) -> Result<Value, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    let v: Value = match ty {
        BodyType::Protobuf => super::protobuf::decode_object(raw)
            .map_err(|e| ApiError::bad_request(format!("error decoding protobuf body: {e}")))?,
        BodyType::Yaml | BodyType::ApplyPatch => {
            let s = std::str::from_utf8(raw)
                .map_err(|_| ApiError::bad_request("the body is not valid UTF-8"))?;
            serde_saphyr::from_str(s)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
        }
        _ => serde_json::from_slice(raw).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: the body must be an object",
        ));
    }
    Ok(v)
}
