//! The HTTP API: router, discovery, OpenAPI, verbs, watch, tables, errors.

pub mod discovery;
pub mod fieldvalidation;
pub mod handlers;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod protobuf;
pub mod request;
pub mod resourcemetrics;
pub mod selectors;
pub mod status;
pub mod streams;
pub mod table;
pub mod warning;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::UserInfo;
use crate::registry::Catalogue;
use crate::registry::generic::Registry;
use status::ApiError;

/// Shared state of every request.
pub struct ApiState {
    pub registry: Arc<Registry>,
    pub catalogue: Arc<Catalogue>,
    pub metrics: Arc<metrics::Metrics>,
    /// host:port clients should use, for /api's serverAddressByClientCIDRs.
    pub server_address: String,
    /// Set once bootstrap objects exist (readyz).
    pub ready: AtomicBool,
    pub shutting_down: AtomicBool,
    /// Generated OpenAPI documents, built on first use.
    pub openapi: openapi::OpenApi,
    /// Node usage for metrics.k8s.io (`resourcemetrics`); node agents register here.
    pub resource_metrics: Arc<crate::node::metrics::MetricsRegistry>,
    /// Nodes' streaming endpoints (exec, attach, port-forward, logs, proxy).
    pub streams: streams::NodeStreamsRegistry,
}

/// The authenticated identity of a request, put in its extensions by the
/// TLS layer (client certificates) or the in-memory client.
#[derive(Clone, Debug)]
pub struct Identity(pub Option<UserInfo>);

/// Paths anyone may read, as upstream's system:public-info-viewer allows.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/version/"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

async fn authenticate(req: Request, next: Next) -> Response {
    let user = req.extensions().get::<Identity>().and_then(|i| i.0.clone());
    if user.is_none() && !is_public(req.uri().path()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

/// Verb and resource names for metrics, derived cheaply from the request.
fn metric_labels(req: &Request) -> (String, String) {
    let path = req.uri().path();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segs.first() {
        Some(&"api") if segs.len() >= 2 => &segs[2..],
        Some(&"apis") if segs.len() >= 3 => &segs[3..],
        _ => &[],
    };
    let rest = if rest.len() >= 3 && rest[0] == "namespaces" {
        &rest[2..]
    } else {
        rest
    };
    let resource = rest.first().copied().unwrap_or("").to_string();
    let is_watch = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=1" || kv == "watch=true"));
    let verb = if is_watch {
        "WATCH".to_string()
    } else {
        req.method().as_str().to_string()
    };
    (verb, resource)
}

async fn observe(State(st): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let (verb, resource) = metric_labels(&req);
    let start = Instant::now();
    let mut resp = next.run(req).await;
    st.metrics.observe(
        &verb,
        &resource,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    // Upstream answers every API response with these; some clients look.
    resp.headers_mut()
        .entry("cache-control")
        .or_insert(HeaderValue::from_static("no-cache, private"));
    resp
}

async fn metrics_handler(State(st): State<Arc<ApiState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

/// The whole API as one router. Served over TLS and, unchanged, in memory
/// for in-process clients.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/version", get(health::version))
        .route("/version/", get(health::version))
        .route("/healthz", get(health::health))
        .route("/livez", get(health::health))
        .route("/readyz", get(health::health))
        .route("/healthz/{check}", get(health::health_check))
        .route("/livez/{check}", get(health::health_check))
        .route("/readyz/{check}", get(health::health_check))
        .route("/metrics", get(metrics_handler))
        .route("/openapi/v2", get(handlers::openapi))
        .route("/openapi/v3", get(handlers::openapi))
        .route("/openapi/v3/{*path}", get(handlers::openapi))
        .route("/api", get(handlers::api_root))
        .route("/api/", get(handlers::api_root))
        .route("/apis", get(handlers::apis_root))
        .route("/apis/", get(handlers::apis_root))
        .fallback(handlers::resource)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(authenticate))
        .with_state(state)
}
