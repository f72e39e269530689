//! A small client of the distribution API for endpoints that ask for a TLS
//! client certificate (registries.yaml `tls.cert_file`/`key_file`):
//! oci-client builds its own HTTP client and cannot present one. Only what
//! a pull needs: a manifest by tag or digest and a blob by digest, with
//! Basic auth or (anonymous or credentialed) Bearer tokens.

use std::io::Write;

use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ImageError;
use super::registries::Endpoint;

pub(crate) struct Client {
    http: reqwest::Client,
    /// `https://host[:port]`.
    base: String,
    /// The Bearer token the registry handed out for this pull.
    token: Mutex<Option<String>>,
}

/// What went wrong, before the caller names the image.
pub(crate) enum Failure {
    NotFound(String),
    Unauthorized(String),
    Other(String),
    Local(ImageError),
}

impl Failure {
    pub(crate) fn for_image(self, reference: &str) -> ImageError {
        let reference = reference.to_string();
        match self {
            Failure::NotFound(message) => ImageError::NotFound { reference, message },
            Failure::Unauthorized(message) => ImageError::Unauthorized { reference, message },
            Failure::Other(message) => ImageError::Pull { reference, message },
            Failure::Local(e) => e,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

impl Client {
    pub(crate) fn new(endpoint: &Endpoint) -> Result<Self, ImageError> {
        let tls = &endpoint.tls;
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| ImageError::io(p, e));
        let invalid = |what: &str, e: reqwest::Error| {
            ImageError::Invalid(format!(
                "registries.yaml configs.{:?}.tls: {what}: {}",
                endpoint.host,
                super::pull::error_chain(&e)
            ))
        };
        // As in pull.rs: reqwest has no crypto provider of its own.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .danger_accept_invalid_certs(tls.insecure_skip_verify)
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(120));
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|e| invalid("cert_file/key_file", e))?;
            builder = builder.identity(identity);
        }
        if let Some(ca) = &tls.ca_file {
            let roots = reqwest::Certificate::from_pem_bundle(&read(ca)?)
                .map_err(|e| invalid("ca_file", e))?;
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder.build().map_err(|e| invalid("client", e))?;
        Ok(Client {
            http,
            base: format!("https://{}", endpoint.host),
            token: Mutex::new(None),
        })
    }

    /// The manifest `remote` names (its digest, else its tag).
    pub(crate) async fn manifest(
        &self,
        remote: &Reference,
        auth: &RegistryAuth,
        accepted: &[&str],
    ) -> Result<Vec<u8>, Failure> {
        let name = remote
            .digest()
            .or(remote.tag())
            .unwrap_or("latest")
            .to_string();
        let url = format!("{}/v2/{}/manifests/{name}", self.base, remote.repository());
        let resp = self
            .get(&url, remote.repository(), auth, &accepted.join(", "))
            .await?;
        let bytes = resp.bytes().await.map_err(other)?;
        Ok(bytes.to_vec())
    }

    /// The blob `digest` of `remote`'s repository into `out`, checked
    /// against its digest on the way.
    pub(crate) async fn blob(
        &self,
        remote: &Reference,
        digest: &str,
        auth: &RegistryAuth,
        out: &mut (dyn Write + Send),
    ) -> Result<(), Failure> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, remote.repository());
        let mut resp = self.get(&url, remote.repository(), auth, "*/*").await?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = resp.chunk().await.map_err(other)? {
            hasher.update(&chunk);
            out.write_all(&chunk)
                .map_err(|e| Failure::Other(format!("writing blob {digest}: {e}")))?;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(Failure::Local(ImageError::Digest {
                what: format!("blob {digest}"),
                expected: digest.to_string(),
                actual,
            }));
        }
        Ok(())
    }

    /// GET with the token this pull holds; on 401 the challenge is
    /// answered (Basic with `auth`, or a Bearer token fetched from the
    /// realm) and the request made once more.
    async fn get(
        &self,
        url: &str,
        repository: &str,
        auth: &RegistryAuth,
        accept: &str,
    ) -> Result<reqwest::Response, Failure> {
        let request = |authorization: Option<String>| {
            let mut r = self.http.get(url).header(reqwest::header::ACCEPT, accept);
            if let Some(a) = authorization {
                r = r.header(reqwest::header::AUTHORIZATION, a);
            }
            r
        };
        let token = self.token.lock().clone();
        let mut resp = request(token.map(|t| format!("Bearer {t}")))
            .send()
            .await
            .map_err(other)?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let authorization = self.answer(&challenge, repository, auth).await?;
            resp = request(Some(authorization)).send().await.map_err(other)?;
        }
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(status_failure(resp).await)
    }

    /// The Authorization header answering a `WWW-Authenticate` challenge.
    async fn answer(
        &self,
        challenge: &str,
        repository: &str,
        auth: &RegistryAuth,
    ) -> Result<String, Failure> {
        let basic = match auth {
            RegistryAuth::Basic(user, pass) => Some((user.clone(), pass.clone())),
            _ => None,
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return match basic {
                Some((u, p)) => {
                    use base64::Engine;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                    Ok(format!("Basic {b64}"))
                }
                None => Err(Failure::Unauthorized("401 Unauthorized".into())),
            };
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Failure::Unauthorized(format!(
                "401 Unauthorized: unsupported challenge {challenge:?}"
            )));
        }
        let params = challenge_params(params);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Failure::Unauthorized("bearer challenge without a realm".into()))?;
        let mut query = vec![("scope".to_string(), format!("repository:{repository}:pull"))];
        if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
            query.push(("service".into(), service.clone()));
        }
        let url = reqwest::Url::parse_with_params(&realm, &query)
            .map_err(|e| Failure::Other(format!("token realm {realm:?}: {e}")))?;
        let mut request = self.http.get(url);
        if let Some((u, p)) = basic {
            request = request.basic_auth(u, Some(p));
        }
        let resp = request.send().await.map_err(other)?;
        if !resp.status().is_success() {
            return Err(match status_failure(resp).await {
                Failure::Other(m) | Failure::NotFound(m) => {
                    Failure::Unauthorized(format!("failed to fetch a token: {m}"))
                }
                f => f,
            });
        }
        let answer: TokenAnswer = resp
            .json()
            .await
            .map_err(|e| Failure::Unauthorized(format!("bad token answer: {e}")))?;
        let token = if answer.token.is_empty() {
            answer.access_token
        } else {
            answer.token
        };
        *self.token.lock() = Some(token.clone());
        Ok(format!("Bearer {token}"))
    }
}

/// `realm="https://x/token",service="reg"` -> pairs.
fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, t)) => (v.to_string(), t),
                None => (quoted.to_string(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, t)) => (v.trim().to_string(), t),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((key, value));
        rest = tail.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    out
}

async fn status_failure(resp: reqwest::Response) -> Failure {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    let message = serde_json::from_slice::<Envelope>(&body)
        .ok()
        .map(|e| {
            e.errors
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.to_string());
    match status.as_u16() {
        404 => Failure::NotFound(message),
        401 | 403 => Failure::Unauthorized(message),
        _ => Failure::Other(format!("{status}: {message}")),
    }
}

fn other(e: reqwest::Error) -> Failure {
    Failure::Other(super::pull::error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_challenge_parameters() {
        assert_eq!(
            challenge_params(
                r#"realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull""#
            ),
            [
                (
                    "realm".to_string(),
                    "https://auth.example/token".to_string()
                ),
                ("service".to_string(), "reg.example".to_string()),
                ("scope".to_string(), "repository:a/b:pull".to_string()),
            ]
        );
        assert_eq!(
            challenge_params("realm=x, service=y"),
            [
                ("realm".to_string(), "x".to_string()),
                ("service".to_string(), "y".to_string())
            ]
        );
        assert!(challenge_params("").is_empty());
    }
}
