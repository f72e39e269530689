//! Watch over HTTP: newline-delimited JSON events, with initial state,
//! bookmarks, timeouts and Table/metadata renderings.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use super::ApiState;
use super::handlers::partial_metadata;
use super::request::{Output, Query};
use super::status::ApiError;
use super::table::{self, IncludeObject};
use crate::registry::ResourceDef;
use crate::registry::generic::{ListQuery, ReadAt, WatchEvent};

/// How often an idle watch with allowWatchBookmarks gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

/// Renders one event's object in the client's chosen form.
struct Renderer {
    def: Arc<ResourceDef>,
    out: Output,
    include: IncludeObject,
    columns_sent: bool,
}

impl Renderer {
    fn line(&mut self, kind: &str, obj: &Value) -> Bytes {
        /// One watch event, serialised without copying the object.
        #[derive(serde::Serialize)]
        struct Event<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            object: &'a Value,
        }
        let encode = |object: &Value| {
            let mut v = serde_json::to_vec(&Event { kind, object }).unwrap_or_default();
            v.push(b'\n');
            Bytes::from(v)
        };
        let object = match self.out {
            Output::Json => return encode(obj),
            Output::Metadata { v1beta1 } => partial_metadata(obj, v1beta1),
            Output::Table { v1beta1 } => {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(json!(""));
                // Column definitions travel with the first event only, as upstream.
                let mut t = table::build_table_with(
                    &self.def,
                    std::slice::from_ref(obj),
                    self.include,
                    json!({"resourceVersion": rv}),
                    !self.columns_sent,
                );
                if v1beta1 {
                    t["apiVersion"] = json!("meta.k8s.io/v1beta1");
                }
                self.columns_sent = true;
                t
            }
        };
        encode(&object)
    }

    fn bookmark(&self, rv: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = match self.out {
            Output::Table { .. } => {
                json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": [], "rows": []})
            }
            Output::Metadata { .. } => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
            }
            Output::Json => {
                json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta})
            }
        };
        let mut v =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }
}

fn error_line(e: &ApiError) -> Bytes {
    let mut v =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

pub async fn serve(
    st: Arc<ApiState>,
    def: Arc<ResourceDef>,
    ns: Option<String>,
    q: &Query,
    out: Output,
) -> Result<Response, ApiError> {
    let lq: ListQuery = q.list_query()?;
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true" || v == "1");
    let include = q.include_object()?;
    let rv = q.resource_version()?;
    if send_initial.is_some() && q.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(super::request::list_options_invalid(
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if send_initial == Some(true) && !bookmarks {
        return Err(super::request::list_options_invalid(
            "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
        ));
    }
    // Upstream: unset or "0" replays current state as ADDED; sendInitialEvents decides when given.
    let initial = send_initial.unwrap_or(rv.is_none());
    let timeout = match q.timeout_seconds()? {
        Some(s) => Duration::from_secs(s),
        // Upstream spreads long watches over 30-60 minutes.
        None => Duration::from_secs(1800 + rand::random_range(0..1800)),
    };
    let reg = st.registry.clone();
    let mut renderer = Renderer {
        def: def.clone(),
        out,
        include,
        columns_sent: false,
    };
    let mut head: Vec<Bytes> = Vec::new();
    let start_after;
    if initial {
        let page = reg
            .list(
                &def,
                ns.as_deref(),
                &ListQuery {
                    limit: None,
                    continue_token: None,
                    read_at: ReadAt::Latest,
                    ..lq.clone()
                },
            )
            .await?;
        for obj in &page.items {
            head.push(renderer.line("ADDED", obj));
        }
        start_after = page.revision;
        if send_initial == Some(true) && bookmarks {
            head.push(renderer.bookmark(page.revision, true));
        }
    } else {
        start_after = rv.unwrap_or(0);
    }
    // Too old a resourceVersion: upstream answers 200 and an ERROR event 410.
    let metadata_only = matches!(renderer.out, Output::Metadata { .. });
    let events = match reg.watch(
        def.clone(),
        ns.clone(),
        lq.labels.clone(),
        lq.fields.clone(),
        start_after,
        metadata_only,
    ) {
        Ok(s) => s.boxed(),
        Err(e) if e.code == 410 => {
            let body = Body::from(error_line(&e));
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response());
        }
        Err(e) => return Err(e),
    };
    let metrics = st.metrics.clone();
    metrics.watches.inc();
    let guard = WatchGuard(metrics.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = async_stream_lines(
        head,
        events,
        renderer,
        bookmarks,
        start_after,
        deadline,
        guard,
    );
    let body = Body::from_stream(stream.map(Ok::<Bytes, std::convert::Infallible>));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::TRANSFER_ENCODING, "chunked"),
        ],
        body,
    )
        .into_response())
}

/// Decrements the open-watch gauge when the stream is dropped.
struct WatchGuard(Arc<super::metrics::Metrics>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.watches.dec();
    }
}

fn async_stream_lines(
    head: Vec<Bytes>,
    events: futures::stream::BoxStream<'static, Result<WatchEvent, ApiError>>,
    renderer: Renderer,
    bookmarks: bool,
    start_rv: i64,
    deadline: tokio::time::Instant,
    guard: WatchGuard,
) -> impl futures::Stream<Item = Bytes> + Send {
    struct S {
        head: std::vec::IntoIter<Bytes>,
        events: futures::stream::BoxStream<'static, Result<WatchEvent, ApiError>>,
        renderer: Renderer,
        bookmarks: bool,
        last_rv: i64,
        deadline: tokio::time::Instant,
        done: bool,
        guard: WatchGuard,
    }
    let s = S {
        head: head.into_iter(),
        events,
        renderer,
        bookmarks,
        last_rv: start_rv,
        deadline,
        done: false,
        guard,
    };
    futures::stream::unfold(s, |mut s| async move {
        if s.done {
            return None;
        }
        if let Some(b) = s.head.next() {
            return Some((b, s));
        }
        loop {
            let tick = tokio::time::Instant::now() + BOOKMARK_EVERY;
            let wake = tick.min(s.deadline);
            tokio::select! {
                ev = s.events.next() => match ev {
                    Some(Ok(ev)) => {
                        s.last_rv = ev.revision;
                        let line = s.renderer.line(ev.kind, &ev.object);
                        s.guard.0.watch_events.inc();
                        return Some((line, s));
                    }
                    Some(Err(e)) => {
                        s.done = true;
                        return Some((error_line(&e), s));
                    }
                    None => return None,
                },
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= s.deadline {
                        return None;
                    }
                    if s.bookmarks {
                        let b = s.renderer.bookmark(s.last_rv, false);
                        return Some((b, s));
                    }
                }
            }
        }
    })
    .boxed()
}
