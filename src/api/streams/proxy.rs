//! pods/proxy, services/proxy and nodes/proxy: HTTP (and upgrades such as
//! WebSockets) relayed to the pod IP, to a ready endpoint of the Service,
//! or to the node's own endpoints. The object name may carry a scheme and
//! port as upstream allows: `name:port`, `https:name:port`. What follows
//! `/proxy` is the path on the target.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::get_pod;
use crate::api::ApiState;
use crate::api::handlers::Target;
use crate::api::status::ApiError;
use crate::registry::generic::ReadAt;

/// Split `[scheme:]name[:port]` as upstream's SplitSchemeNamePort.
fn split_scheme_name_port(id: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [n] => ("", *n, ""),
        [n, p] => ("", *n, *p),
        [s, n, p] if *s == "http" || *s == "https" => (*s, *n, *p),
        _ => return None,
    };
    (!name.is_empty()).then(|| (scheme.to_string(), name.to_string(), port.to_string()))
}

/// The raw (still encoded) path after the `/proxy` segment, and the prefix
/// up to it.
fn split_path(path: &str) -> (String, String) {
    // The `proxy` segment itself (a pod may be called `proxy-1`).
    let seg = path
        .match_indices("/proxy")
        .map(|(i, _)| i)
        .find(|i| matches!(path.as_bytes().get(i + 6), None | Some(b'/')));
    match seg {
        Some(i) => (path[..i + 6].to_string(), path[i + 6..].to_string()),
        None => (path.to_string(), String::new()),
    }
}

pub(super) async fn serve(st: &ApiState, t: &Target, req: Request) -> Result<Response, ApiError> {
    let id = t.name.clone().unwrap_or_default();
    let Some((scheme, name, port)) = split_scheme_name_port(&id) else {
        return Err(ApiError::bad_request(format!("invalid request {id:?}")));
    };
    let (prefix, rest) = split_path(req.uri().path());
    // `.../proxy` with nothing after it: upstream redirects to `.../proxy/`.
    if rest.is_empty() && req.method() == Method::GET {
        let mut to = format!("{prefix}/");
        if let Some(q) = req.uri().query() {
            to.push('?');
            to.push_str(q);
        }
        return Ok((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, to)]).into_response());
    }
    let proxy_options = crate::admission::webhook::connect::proxy_options(&t.def.kind, &rest);
    let admitted = super::admit_connect(st, t, &req, proxy_options).await?;
    // Upstream proxies to the path as mutating webhooks left it.
    let rest = admitted
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let rest = if rest.is_empty() {
        "/".to_string()
    } else {
        rest
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    if scheme == "https" {
        return Err(ApiError::bad_request(
            "proxying to https endpoints is not supported",
        ));
    }
    match t.def.kind.as_str() {
        "Pod" => {
            let pod = get_pod(st, t, &name).await?;
            let ip = pod
                .pointer("/status/podIP")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    ApiError::service_unavailable(format!("pod \"{name}\" has no IP address"))
                })?;
            let port = if port.is_empty() {
                first_container_port(&pod).unwrap_or(80).to_string()
            } else {
                port
            };
            let port: u16 = port
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid port {port:?}")))?;
            forward(req, &join_host_port(ip, port), &path_and_query, &prefix).await
        }
        "Service" => {
            let addr = service_endpoint(st, t, &name, &port).await?;
            forward(req, &addr, &path_and_query, &prefix).await
        }
        "Node" => {
            // The node must exist; then its agent answers.
            st.registry.get(&t.def, None, &name, ReadAt::Latest).await?;
            let backend = super::node_by_name(st, &name)?;
            let (mut parts, body) = req.into_parts();
            parts.uri =
                Uri::try_from(path_and_query).map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(backend
                .proxy(http::Request::from_parts(parts, body))
                .await?
                .into_response())
        }
        _ => Err(ApiError::not_found_path()),
    }
}

fn join_host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn first_container_port(pod: &Value) -> Option<u16> {
    pod.pointer("/spec/containers")?
        .as_array()?
        .iter()
        .filter_map(|c| c.pointer("/ports/0/containerPort")?.as_u64())
        .find_map(|p| u16::try_from(p).ok())
}

/// A ready address of the Service's Endpoints for the named (or numbered)
/// service port, picked at random as upstream does.
async fn service_endpoint(
    st: &ApiState,
    t: &Target,
    name: &str,
    port: &str,
) -> Result<String, ApiError> {
    let ns = t.namespace.as_deref();
    let svc = st.registry.get(&t.def, ns, name, ReadAt::Latest).await?;
    let mut port_name = port.to_string();
    if let Ok(num) = port.parse::<i64>() {
        let ports = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let found = ports
            .iter()
            .find(|p| p.get("port").and_then(Value::as_i64) == Some(num))
            .ok_or_else(|| {
                ApiError::service_unavailable(format!(
                    "no service port {num} found for service \"{name}\""
                ))
            })?;
        port_name = found
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
    }
    let no_endpoints =
        || ApiError::service_unavailable(format!("no endpoints available for service \"{name}\""));
    let ep_def = st
        .catalogue
        .get("", "v1", "endpoints")
        .ok_or_else(no_endpoints)?;
    let eps = st
        .registry
        .get(&ep_def, ns, name, ReadAt::Latest)
        .await
        .map_err(|_| no_endpoints())?;
    let subsets = eps
        .get("subsets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    for i in 0..subsets.len() {
        let ss = &subsets[(seed + i) % subsets.len()];
        let addrs = ss
            .get("addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if addrs.is_empty() {
            continue;
        }
        let ports = ss
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(p) = ports
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or_default() == port_name)
        else {
            continue;
        };
        let Some(port) = p
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        let addr = &addrs[seed % addrs.len()];
        if let Some(ip) = addr.get("ip").and_then(Value::as_str) {
            return Ok(join_host_port(ip, port));
        }
    }
    Err(no_endpoints())
}

/// Headers that belong to one hop, not to be relayed (upgrades keep
/// `Connection`/`Upgrade`).
fn hop_by_hop(name: &header::HeaderName, upgrading: bool) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding"
    ) || (!upgrading && (n == "connection" || n == "upgrade"))
        || n == "authorization"
}

async fn forward(
    mut req: Request,
    addr: &str,
    path_and_query: &str,
    prefix: &str,
) -> Result<Response, ApiError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::service_unavailable(format!(
            "error trying to reach service: dial tcp {addr}: {e}"
        ))
    };
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let upgrading = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = upgrading
        .then(|| req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    let (parts, body) = req.into_parts();
    let mut out = http::Request::builder()
        .method(parts.method)
        .uri(path_and_query);
    for (k, v) in &parts.headers {
        if !hop_by_hop(k, upgrading) && k != header::HOST {
            out = out.header(k, v);
        }
    }
    let out = out
        .header(header::HOST, addr)
        .body(body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| unreachable(&e))?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client) = client_upgrade
    {
        let backend = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(c), Ok(b)) = (client.await, backend.await) {
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(b)).await;
            }
        });
    }
    let (mut parts, body) = resp.into_parts();
    // Redirects to an absolute path on the target stay under the proxy.
    if let Some(loc) = parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        && loc.starts_with('/')
        && let Ok(v) = HeaderValue::from_str(&format!("{prefix}{loc}"))
    {
        parts.headers.insert(header::LOCATION, v);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_name_port() {
        let s = |a: &str, b: &str, c: &str| Some((a.to_string(), b.to_string(), c.to_string()));
        assert_eq!(split_scheme_name_port("web"), s("", "web", ""));
        assert_eq!(split_scheme_name_port("web:8080"), s("", "web", "8080"));
        assert_eq!(
            split_scheme_name_port("https:web:443"),
            s("https", "web", "443")
        );
        assert_eq!(split_scheme_name_port("a:b:c"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(
            split_path("/api/v1/namespaces/d/pods/proxy-1/proxy"),
            (
                "/api/v1/namespaces/d/pods/proxy-1/proxy".to_string(),
                String::new()
            )
        );
        assert_eq!(
            split_path("/api/v1/namespaces/d/pods/p:80/proxy/a/b"),
            (
                "/api/v1/namespaces/d/pods/p:80/proxy".to_string(),
                "/a/b".to_string()
            )
        );
    }
}
