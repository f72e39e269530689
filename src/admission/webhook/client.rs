//! The HTTPS call to a webhook: a fresh HTTP/1.1 connection over rustls,
//! trusting the webhook's caBundle, under its timeoutSeconds. A service
//! reference is resolved to a ready endpoint address (rk3s's API server is
//! not behind a service proxy) and verified as `NAME.NAMESPACE.svc`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use super::config::ClientTarget;
use crate::registry::generic::{ReadAt, Registry};

/// Webhook answers larger than this are refused.
const MAX_RESPONSE: usize = 30 << 20;

/// Where and how to reach a webhook for one call.
#[derive(Debug)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub connect: String,
    /// The name the serving certificate must carry.
    pub server_name: String,
    /// `Host` header.
    pub authority: String,
    /// Path and query sent, with upstream's `timeout` parameter.
    pub path: String,
    /// The URL as errors print it.
    pub url: String,
}

fn timeout_param(t: Duration) -> String {
    format!("timeout={}s", t.as_secs())
}

fn with_timeout(path_and_query: &str, t: Duration) -> String {
    let sep = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{path_and_query}{sep}{}", timeout_param(t))
}

fn from_url(url: &str, t: Duration) -> Result<Endpoint, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "invalid url {url:?}: 'https' is the only allowed URL scheme"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("invalid url {url:?}: no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    // An IPv6 literal comes bracketed in the URL; the certificate names it bare.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let connect = if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    };
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| connect.clone());
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let path = with_timeout(if pq.is_empty() { "/" } else { pq }, t);
    let base = url.split('?').next().unwrap_or(url);
    let shown = match uri.query() {
        Some(q) => format!("{base}?{q}&{}", timeout_param(t)),
        None => format!("{base}?{}", timeout_param(t)),
    };
    Ok(Endpoint {
        connect,
        server_name: bare.to_string(),
        authority,
        path,
        url: shown,
    })
}

/// A ready address of the Service's endpoints and the port behind `port`.
async fn service_address(
    reg: &Registry,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<(String, u16), String> {
    let (Some(sdef), Some(edef)) = (
        reg.catalogue.get("", "v1", "services"),
        reg.catalogue.get("", "v1", "endpoints"),
    ) else {
        return Err("services are not served".into());
    };
    let svc = reg
        .get(&sdef, Some(namespace), name, ReadAt::Latest)
        .await
        .map_err(|_| format!("service \"{name}\" not found"))?;
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(sp) = ports
        .iter()
        .find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(port)))
    else {
        return Err(format!(
            "no service port {port} found for service \"{name}\""
        ));
    };
    let port_name = sp.get("name").and_then(Value::as_str).unwrap_or("");
    let eps = reg
        .get(&edef, Some(namespace), name, ReadAt::Latest)
        .await
        .map_err(|_| format!("endpoints \"{name}\" not found"))?;
    for subset in eps
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(target) = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        if let Some(ip) = subset
            .get("addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|a| a.get("ip"))
            .and_then(Value::as_str)
        {
            return Ok((ip.to_string(), target));
        }
    }
    Err(format!("no endpoints available for service \"{name}\""))
}

/// Resolve where a webhook is called.
pub async fn resolve(
    reg: &Registry,
    target: &ClientTarget,
    t: Duration,
) -> Result<Endpoint, String> {
    match target {
        ClientTarget::Url(url) => from_url(url, t),
        ClientTarget::Service {
            namespace,
            name,
            path,
            port,
        } => {
            let host = format!("{name}.{namespace}.svc");
            let path = if path.is_empty() { "/" } else { path.as_str() };
            let url = format!("https://{host}:{port}{}", with_timeout(path, t));
            let (ip, target_port) = service_address(reg, namespace, name, *port)
                .await
                .map_err(|e| format!("Post {url:?}: {e}"))?;
            let connect = if ip.contains(':') {
                format!("[{ip}]:{target_port}")
            } else {
                format!("{ip}:{target_port}")
            };
            Ok(Endpoint {
                connect,
                server_name: host.clone(),
                authority: format!("{host}:{port}"),
                path: with_timeout(path, t),
                url,
            })
        }
    }
}

fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        _ => e.to_string(),
    }
}

/// A failed TLS handshake in Go's words where they are well known
/// (clients and tests match on "unknown authority").
fn tls_text(e: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let cert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|r| match r {
            rustls::Error::InvalidCertificate(c) => Some(c),
            _ => None,
        });
    match cert {
        Some(C::UnknownIssuer) => {
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                .into()
        }
        Some(C::Expired | C::ExpiredContext { .. }) => {
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
                .into()
        }
        Some(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!("tls: failed to verify certificate: x509: {e}")
        }
        _ => format!("tls: {e}"),
    }
}

async fn exchange(
    ep: &Endpoint,
    tls: Arc<rustls::ClientConfig>,
    body: Vec<u8>,
) -> Result<Bytes, String> {
    let url = &ep.url;
    let tcp = tokio::net::TcpStream::connect(&ep.connect)
        .await
        .map_err(|e| {
            format!(
                "Post {url:?}: dial tcp {}: connect: {}",
                ep.connect,
                io_text(&e)
            )
        })?;
    let _ = tcp.set_nodelay(true);
    let name = rustls_pki_types::ServerName::try_from(ep.server_name.clone())
        .map_err(|e| format!("Post {url:?}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("Post {url:?}: {}", tls_text(&e)))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("Post {url:?}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::post(ep.path.as_str())
        .header(http::header::HOST, ep.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .header(http::header::USER_AGENT, "rk3s-apiserver")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("Post {url:?}: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("Post {url:?}: {e}"))?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| format!("Post {url:?}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        // A metav1.Status body says why; anything else is quoted.
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            && v.get("kind").and_then(Value::as_str) == Some("Status")
            && let Some(m) = v.get("message").and_then(Value::as_str)
        {
            return Err(m.to_string());
        }
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        return Err(format!(
            "an error on the server ({text:?}) has prevented the request from succeeding"
        ));
    }
    Ok(bytes)
}

/// POST `body` to the webhook; the whole exchange is bounded by `timeout`.
pub async fn post(
    ep: &Endpoint,
    tls: Arc<rustls::ClientConfig>,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, String> {
    match tokio::time::timeout(timeout, exchange(ep, tls, body)).await {
        Ok(r) => r,
        Err(_) => Err(format!("Post {:?}: context deadline exceeded", ep.url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_upstreams_timeout_parameter() {
        let t = Duration::from_secs(7);
        let ep = from_url("https://127.0.0.1:8443/validate", t).expect("url");
        assert_eq!(ep.connect, "127.0.0.1:8443");
        assert_eq!(ep.server_name, "127.0.0.1");
        assert_eq!(ep.path, "/validate?timeout=7s");
        assert_eq!(ep.url, "https://127.0.0.1:8443/validate?timeout=7s");
        let ep = from_url("https://hooks.example.com/x?a=b", t).expect("url");
        assert_eq!(ep.connect, "hooks.example.com:443");
        assert_eq!(ep.path, "/x?a=b&timeout=7s");
        let ep = from_url("https://[::1]:9443/", t).expect("url");
        assert_eq!(ep.connect, "[::1]:9443");
        assert_eq!(ep.server_name, "::1");
        assert!(from_url("http://127.0.0.1/x", t).is_err());
    }
}
