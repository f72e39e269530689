//! /healthz, /livez, /readyz (with `?verbose` and per-check paths) and /version.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiState;

/// The Kubernetes release we speak, and our build suffix (like k3s's `+k3s1`).
pub const KUBE_VERSION: &str = "v1.33.1";
pub const GIT_VERSION: &str = concat!("v1.33.1+rk3s-", env!("CARGO_PKG_VERSION"));

pub async fn version() -> Response {
    let body = json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": option_env!("RK3S_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": option_env!("RK3S_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z"),
        "goVersion": concat!("rust-", env!("CARGO_PKG_RUST_VERSION", "stable")),
        "compiler": "rustc",
        "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
    });
    axum::Json(body).into_response()
}

/// Each check: name and whether it passes.
async fn checks(st: &ApiState, which: &str) -> Vec<(&'static str, bool)> {
    let mut out = vec![("ping", true), ("log", true)];
    // The store answers a cheap read.
    let store_ok = st
        .registry
        .store
        .count("/registry/core/namespaces/")
        .await
        .is_ok();
    out.push(("etcd", store_ok));
    if which == "readyz" {
        out.push(("informer-sync", true));
        out.push((
            "poststarthook/bootstrap",
            st.ready.load(std::sync::atomic::Ordering::Acquire),
        ));
        out.push((
            "shutdown",
            !st.shutting_down.load(std::sync::atomic::Ordering::Acquire),
        ));
    }
    out
}

fn render(which: &str, checks: &[(&str, bool)], verbose: bool, only: Option<&str>) -> Response {
    let selected: Vec<&(&str, bool)> = checks
        .iter()
        .filter(|(n, _)| only.is_none_or(|o| o == *n))
        .collect();
    if selected.is_empty() {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    let ok = selected.iter().all(|(_, pass)| *pass);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = if only.is_some() {
        if ok {
            "ok".to_string()
        } else {
            "internal server error: check failed".to_string()
        }
    } else if verbose || !ok {
        let mut s = String::new();
        for (name, pass) in &selected {
            if *pass {
                s.push_str(&format!("[+]{name} ok\n"));
            } else {
                s.push_str(&format!("[-]{name} failed: reason withheld\n"));
            }
        }
        if ok {
            s.push_str(&format!("{which} check passed\n"));
        } else {
            s.push_str(&format!("{which} check failed\n"));
        }
        s
    } else {
        "ok".to_string()
    };
    (
        code,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn which_of(uri: &axum::http::Uri) -> &'static str {
    let p = uri.path();
    if p.starts_with("/readyz") {
        "readyz"
    } else if p.starts_with("/livez") {
        "livez"
    } else {
        "healthz"
    }
}

pub async fn health(
    State(st): State<Arc<ApiState>>,
    uri: axum::http::Uri,
    RawQuery(q): RawQuery,
) -> Response {
    let which = which_of(&uri);
    let verbose = q.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "verbose" || kv.starts_with("verbose="))
    });
    render(which, &checks(&st, which).await, verbose, None)
}

pub async fn health_check(
    State(st): State<Arc<ApiState>>,
    uri: axum::http::Uri,
    Path(check): Path<String>,
) -> Response {
    let which = which_of(&uri);
    render(which, &checks(&st, which).await, false, Some(&check))
}
