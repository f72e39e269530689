//! The HTTP GET of httpGet probes and lifecycle hooks, as the kubelet's
//! prober does it: HTTP/1.1 with `Connection: close`, https without
//! certificate verification, redirects followed only to the same host (at
//! most 10), the body read up to 10 KiB, and errors worded as Go's
//! net/http client words them (`Get "URL": dial tcp ADDR: connect:
//! connection refused`), since those end up in events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The kubelet reads at most this much of a probe's response body.
pub const MAX_BODY: usize = 10 * 1024;
const MAX_REDIRECTS: usize = 10;

/// The Kubernetes minor version the kubelet reports in its User-Agent.
pub const KUBE_VERSION: &str = "1.33";

#[derive(Clone, Debug)]
pub struct HttpGet {
    /// `http` or `https`.
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    /// httpHeaders, in order. A `Host` header sets the request's host.
    pub headers: Vec<(String, String)>,
    /// `kube-probe/1.33` for probes, `kube-lifecycle/1.33` for hooks.
    pub user_agent: String,
}

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    /// A redirect to another host was not followed (a probe warning).
    pub redirect_not_followed: bool,
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl HttpGet {
    pub fn url(&self) -> String {
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        format!(
            "{}://{}{}",
            self.scheme.to_ascii_lowercase(),
            host_port(&self.host, self.port),
            path
        )
    }
}

/// Go's text for an OS error (`connection refused`, `no route to host`).
pub fn os_error_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_ascii_lowercase(),
        None => e.to_string(),
    }
}

/// Connect as Go's `net.Dial("tcp", addr)` would, with its error texts:
/// `dial tcp ADDR: connect: connection refused`, `dial tcp ADDR: i/o timeout`.
pub async fn dial(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addr = host_port(host, port);
    let resolved: Result<Vec<SocketAddr>, String> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
        Err(_) => tokio::time::timeout_at(deadline, tokio::net::lookup_host(addr.clone()))
            .await
            .map_err(|_| format!("dial tcp: lookup {host}: i/o timeout"))?
            .map(|it| it.collect())
            .map_err(|_| format!("dial tcp: lookup {host}: no such host")),
    };
    let targets = resolved?;
    let Some(target) = targets.first() else {
        return Err(format!("dial tcp: lookup {host}: no such host"));
    };
    match tokio::time::timeout_at(deadline, TcpStream::connect(target)).await {
        Err(_) => Err(format!(
            "dial tcp {}: i/o timeout",
            host_port(&target.ip().to_string(), port)
        )),
        Ok(Err(e)) => Err(format!(
            "dial tcp {}: connect: {}",
            host_port(&target.ip().to_string(), port),
            os_error_text(&e)
        )),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Accept any certificate: the kubelet's probes do not verify TLS.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One request/response on a fresh connection.
async fn exchange<T>(
    io: T,
    req: http::Request<Empty<Bytes>>,
) -> Result<(u16, Option<String>, String), String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| {
        if e.is_incomplete_message() {
            "EOF".to_string()
        } else {
            e.to_string()
        }
    });
    let result = match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut body = resp.into_body();
            let mut buf: Vec<u8> = Vec::new();
            while buf.len() < MAX_BODY {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => {
                        driver.abort();
                        return Err(e.to_string());
                    }
                    None => break,
                }
            }
            buf.truncate(MAX_BODY);
            Ok((status, location, String::from_utf8_lossy(&buf).into_owned()))
        }
        Err(e) => Err(e),
    };
    driver.abort();
    result
}

/// GET `req.url()` within `timeout`, following same-host redirects.
/// `Err` is Go's client error text (`Get "URL": ...`).
pub async fn get(req: &HttpGet, timeout: Duration) -> Result<HttpResponse, String> {
    let deadline = Instant::now() + timeout;
    let mut current = req.clone();
    let original_host = req.host.clone();
    for hop in 0..=MAX_REDIRECTS {
        let url = current.url();
        let attempt = tokio::time::timeout_at(deadline, get_once(&current, deadline)).await;
        let (status, location, body) = match attempt {
            Err(_) => {
                return Err(format!(
                    "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                ));
            }
            Ok(Err(e)) => return Err(format!("Get \"{url}\": {e}")),
            Ok(Ok(r)) => r,
        };
        let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
        let Some(location) = location.filter(|_| redirect) else {
            return Ok(HttpResponse {
                status,
                body,
                redirect_not_followed: false,
            });
        };
        let next = resolve_location(&current, &location);
        if next.host != original_host {
            return Ok(HttpResponse {
                status,
                body,
                redirect_not_followed: true,
            });
        }
        if hop == MAX_REDIRECTS - 1 {
            return Err(format!(
                "Get \"{}\": stopped after 10 redirects",
                next.url()
            ));
        }
        current = next;
    }
    Err(format!(
        "Get \"{}\": stopped after 10 redirects",
        current.url()
    ))
}

/// The request a redirect's Location leads to.
fn resolve_location(base: &HttpGet, location: &str) -> HttpGet {
    let mut next = base.clone();
    if let Ok(uri) = location.parse::<http::Uri>()
        && let Some(host) = uri.host()
    {
        next.scheme = uri.scheme_str().unwrap_or(&base.scheme).to_string();
        next.host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        next.port = uri
            .port_u16()
            .unwrap_or(if next.scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            });
        next.path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        // The Host header is for the original server only.
        next.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("host"));
        return next;
    }
    next.path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{dir}/{location}")
    };
    next
}

async fn get_once(
    req: &HttpGet,
    deadline: Instant,
) -> Result<(u16, Option<String>, String), String> {
    let path = if req.path.starts_with('/') {
        req.path.clone()
    } else {
        format!("/{}", req.path)
    };
    let mut host_header = host_port(&req.host, req.port);
    let mut builder = http::Request::builder().method("GET").uri(path.as_str());
    let mut has_ua = false;
    let mut has_accept = false;
    for (k, v) in &req.headers {
        if k.eq_ignore_ascii_case("host") {
            host_header = v.clone();
            continue;
        }
        has_ua |= k.eq_ignore_ascii_case("user-agent");
        has_accept |= k.eq_ignore_ascii_case("accept");
        builder = builder.header(k.as_str(), v.as_str());
    }
    if !has_ua {
        builder = builder.header(http::header::USER_AGENT, req.user_agent.as_str());
    }
    if !has_accept {
        builder = builder.header(http::header::ACCEPT, "*/*");
    }
    let request = builder
        .header(http::header::HOST, host_header)
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let tcp = dial(&req.host, req.port, deadline).await?;
    if req.scheme.eq_ignore_ascii_case("https") {
        let name =
            rustls_pki_types::ServerName::try_from(req.host.clone()).map_err(|e| e.to_string())?;
        let tls = tls_connector()?
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        exchange(tls, request).await
    } else {
        exchange(tcp, request).await
    }
}
