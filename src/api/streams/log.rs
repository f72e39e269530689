//! pods/log: PodLogOptions from the query, upstream's validation and
//! container checks, then the node's log stream as a chunked text/plain
//! body (kept open while following).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::backend::LogOptions;
use super::{flag, last, query_pairs};
use crate::api::ApiState;
use crate::api::handlers::Target;
use crate::api::status::{self, ApiError, FieldError};

fn int(q: &[(String, String)], k: &str) -> Result<Option<i64>, ApiError> {
    match last(q, k) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid value for {k}: strconv.ParseInt: parsing \"{v}\": invalid syntax"
            ))
        }),
    }
}

fn options(q: &[(String, String)], name: &str) -> Result<LogOptions, ApiError> {
    let o = LogOptions {
        follow: flag(q, "follow")?,
        previous: flag(q, "previous")?,
        timestamps: flag(q, "timestamps")?,
        tail_lines: int(q, "tailLines")?,
        since_seconds: int(q, "sinceSeconds")?,
        since_time: last(q, "sinceTime")
            .filter(|s| !s.is_empty())
            .map(String::from),
        limit_bytes: int(q, "limitBytes")?,
    };
    let mut errs = Vec::new();
    if let Some(n) = o.tail_lines
        && n < 0
    {
        errs.push(FieldError::invalid_raw(
            "tailLines",
            n,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = o.limit_bytes
        && n < 1
    {
        errs.push(FieldError::invalid_raw(
            "limitBytes",
            n,
            "must be greater than 0",
        ));
    }
    if o.since_seconds.is_some() && o.since_time.is_some() {
        errs.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    if let Some(n) = o.since_seconds
        && n < 1
    {
        errs.push(FieldError::invalid_raw(
            "sinceSeconds",
            n,
            "must be greater than 0",
        ));
    }
    if let Some(t) = &o.since_time
        && t.parse::<jiff::Timestamp>().is_err()
    {
        return Err(ApiError::bad_request(format!(
            "parsing time \"{t}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse"
        )));
    }
    if !errs.is_empty() {
        let t = status::Target {
            group: "",
            resource: "pods",
            kind: "PodLogOptions",
        };
        return Err(ApiError::invalid(t, name, &errs));
    }
    Ok(o)
}

pub(super) async fn serve(st: &ApiState, t: &Target, req: Request) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let q = query_pairs(&req)?;
    let opts = options(&q, &name)?;
    let pod = super::get_pod(st, t, &name).await?;
    let container = super::pick_container(&pod, &name, last(&q, "container").unwrap_or(""))?;
    let text = [(header::CONTENT_TYPE, "text/plain")];
    // Not scheduled yet: upstream answers with an empty log.
    if pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        return Ok((StatusCode::OK, text, Body::empty()).into_response());
    }
    crate::node::logs::check_container_log_status(&pod, &container, opts.previous)
        .map_err(ApiError::bad_request)?;
    let backend = super::node_backend(st, &pod, &name)?;
    let stream = backend
        .logs(&super::pod_ref(&pod), &container, opts)
        .await?;
    Ok((StatusCode::OK, text, Body::from_stream(stream)).into_response())
}
