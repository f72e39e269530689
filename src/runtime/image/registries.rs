//! Where and how to reach registries: `/etc/rk3s/registries.yaml` in the
//! shape k3s users know (mirrors with endpoints, per-host auth and TLS), and
//! credentials from `kubernetes.io/dockerconfigjson` pull secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use super::ImageError;

/// The parsed registries.yaml. A missing file is the default: every
/// registry is reached directly over HTTPS with the system's roots.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// Registry host (`docker.io`, `host:port`, or `*` for every registry
    /// without its own entry) -> the endpoints to try, in order.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Endpoint host -> auth and TLS for it.
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// `https://host[:port]` or `http://host[:port]` (plain HTTP); a path is ignored.
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regular expression -> replacement (`$1` for groups) applied to the
    /// repository path (`library/busybox`) when pulling through this
    /// mirror's endpoints, never the registry's own endpoint (as k3s).
    /// Patterns are tried in order; the first that changes the path wins.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<HostAuth>,
    #[serde(default)]
    pub tls: Option<HostTls>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAuth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// base64 of `username:password`.
    #[serde(default)]
    pub auth: String,
    #[serde(default)]
    pub identity_token: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostTls {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A user name and password for a registry (from a pull secret or
/// registries.yaml). `registry` is a host, optionally with a path prefix
/// and a scheme, as docker config files write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryCredential {
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// One place to pull from.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    pub plain_http: bool,
    pub tls: HostTls,
    pub auth: Option<RegistryCredential>,
    /// The mirror's repository rewrites (empty for the registry itself).
    pub rewrite: Vec<(regex::Regex, String)>,
}

impl Endpoint {
    /// The repository path to ask this endpoint for.
    pub(crate) fn repository(&self, repository: &str) -> String {
        for (pattern, replacement) in &self.rewrite {
            let rewritten = pattern.replace(repository, replacement.as_str());
            if rewritten != repository {
                return rewritten.into_owned();
            }
        }
        repository.to_string()
    }
}

impl RegistriesConfig {
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(ImageError::io(path, e)),
        };
        Self::parse(&text).map_err(|reason| ImageError::RegistriesConfig {
            path: path.display().to_string(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: Self = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        for (registry, mirror) in &config.mirrors {
            for endpoint in &mirror.endpoint {
                parse_endpoint(endpoint)
                    .map_err(|e| format!("mirrors.{registry:?}.endpoint: {e}"))?;
            }
            for pattern in mirror.rewrite.keys() {
                regex::Regex::new(pattern)
                    .map_err(|e| format!("mirrors.{registry:?}.rewrite: {pattern:?}: {e}"))?;
            }
        }
        Ok(config)
    }

    /// The endpoints to try for `registry` (a reference's registry host),
    /// mirrors first, then the registry itself unless a mirror already is.
    pub(crate) fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        let rewrite: Vec<(regex::Regex, String)> = mirror
            .iter()
            .flat_map(|m| &m.rewrite)
            .filter_map(|(p, r)| Some((regex::Regex::new(p).ok()?, r.clone())))
            .collect();
        let mut out: Vec<Endpoint> = Vec::new();
        for url in mirror.map(|m| m.endpoint.as_slice()).unwrap_or_default() {
            if let Ok((host, plain_http)) = parse_endpoint(url) {
                let mut endpoint = self.endpoint(host, plain_http);
                // The registry's own endpoint is pulled from as named.
                if endpoint.host != registry {
                    endpoint.rewrite = rewrite.clone();
                }
                out.push(endpoint);
            }
        }
        if !out.iter().any(|e| e.host == registry) {
            out.push(self.endpoint(registry.to_string(), false));
        }
        out
    }

    fn endpoint(&self, host: String, plain_http: bool) -> Endpoint {
        let config = self.configs.get(&host);
        let auth = config
            .and_then(|c| c.auth.as_ref())
            .and_then(|a| a.credential(&host));
        Endpoint {
            tls: config.and_then(|c| c.tls.clone()).unwrap_or_default(),
            auth,
            plain_http,
            host,
            rewrite: Vec::new(),
        }
    }
}

impl HostAuth {
    fn credential(&self, host: &str) -> Option<RegistryCredential> {
        let (username, password) = if !self.username.is_empty() {
            (self.username.clone(), self.password.clone())
        } else if !self.auth.is_empty() {
            decode_auth(&self.auth).ok()?
        } else if !self.identity_token.is_empty() {
            // Docker's convention for token logins.
            ("<token>".to_string(), self.identity_token.clone())
        } else {
            return None;
        };
        Some(RegistryCredential {
            registry: host.to_string(),
            username,
            password,
        })
    }
}

/// `https://host:port/path` -> (`host:port`, plain HTTP?).
fn parse_endpoint(url: &str) -> Result<(String, bool), String> {
    let (plain_http, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (false, rest)
    } else if url.contains("://") {
        return Err(format!(
            "{url:?}: only http and https endpoints are supported"
        ));
    } else {
        (false, url)
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok((host.to_string(), plain_http))
}

fn decode_auth(auth: &str) -> Result<(String, String), ImageError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| ImageError::DockerConfig(format!("auth is not base64: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ImageError::DockerConfig("auth is not UTF-8".into()))?;
    let (user, pass) = text
        .split_once(':')
        .ok_or_else(|| ImageError::DockerConfig("auth is not user:password".into()))?;
    Ok((user.to_string(), pass.to_string()))
}

#[derive(Deserialize)]
struct DockerConfigEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

/// The credentials in a `.dockerconfigjson` (`{"auths": {...}}`) or a
/// legacy `.dockercfg` (the map itself), as the kubelet reads pull secrets.
pub fn credentials_from_docker_config_json(
    bytes: &[u8],
) -> Result<Vec<RegistryCredential>, ImageError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ImageError::DockerConfig(e.to_string()))?;
    let auths = value.get("auths").cloned().unwrap_or(value);
    let entries: BTreeMap<String, DockerConfigEntry> =
        serde_json::from_value(auths).map_err(|e| ImageError::DockerConfig(e.to_string()))?;
    let mut out = Vec::new();
    for (registry, entry) in entries {
        let (username, password) = if !entry.username.is_empty() || !entry.password.is_empty() {
            (entry.username, entry.password)
        } else if !entry.auth.is_empty() {
            decode_auth(&entry.auth)?
        } else {
            continue;
        };
        out.push(RegistryCredential {
            registry,
            username,
            password,
        });
    }
    Ok(out)
}

/// Docker Hub's many names, as one.
fn canonical_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    }
}

impl RegistryCredential {
    /// Whether this credential is for `repository` (`registry/path`), as
    /// the kubelet matches pull-secret keys: the host (with `*` globs per
    /// label) and, if the key has a path, a path prefix.
    pub(crate) fn matches(&self, registry: &str, repository_path: &str) -> bool {
        let key = self
            .registry
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let (host, path) = match key.split_once('/') {
            Some((h, p)) => (h, p.trim_end_matches('/')),
            None => (key, ""),
        };
        // Docker Hub keys are often written https://index.docker.io/v1/.
        let path = if canonical_host(host) == "docker.io" && path == "v1" {
            ""
        } else {
            path
        };
        if !host_matches(canonical_host(host), canonical_host(registry)) {
            return false;
        }
        path.is_empty()
            || repository_path == path
            || repository_path.starts_with(&format!("{path}/"))
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let (pattern_name, pattern_port) = split_port(pattern);
    let (name, port) = split_port(host);
    if pattern_port != port {
        return false;
    }
    let pattern_labels: Vec<&str> = pattern_name.split('.').collect();
    let labels: Vec<&str> = name.split('.').collect();
    pattern_labels.len() == labels.len()
        && pattern_labels
            .iter()
            .zip(&labels)
            .all(|(p, l)| *p == "*" || p.eq_ignore_ascii_case(l))
}

fn split_port(host: &str) -> (&str, &str) {
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p),
        _ => (host, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dockerconfigjson_and_dockercfg() {
        let json = br#"{"auths":{"127.0.0.1:5000":{"username":"u","password":"p"},
            "https://index.docker.io/v1/":{"auth":"aGk6dGhlcmU="}}}"#;
        let creds = credentials_from_docker_config_json(json).unwrap();
        assert_eq!(creds.len(), 2);
        let hub = creds.iter().find(|c| c.username == "hi").unwrap();
        assert_eq!(hub.password, "there");
        assert!(hub.matches("docker.io", "library/busybox"));
        assert!(!hub.matches("quay.io", "library/busybox"));
        let local = creds.iter().find(|c| c.username == "u").unwrap();
        assert!(local.matches("127.0.0.1:5000", "a/b"));
        assert!(!local.matches("127.0.0.1:5001", "a/b"));

        let legacy = br#"{"reg.example":{"auth":"YTpi"}}"#;
        let creds = credentials_from_docker_config_json(legacy).unwrap();
        assert_eq!(
            (creds[0].username.as_str(), creds[0].password.as_str()),
            ("a", "b")
        );
        assert!(credentials_from_docker_config_json(b"[1]").is_err());
        assert!(credentials_from_docker_config_json(br#"{"auths":{"x":{"auth":"!!"}}}"#).is_err());
    }

    #[test]
    fn matches_globs_and_paths() {
        let c = |r: &str| RegistryCredential {
            registry: r.into(),
            username: String::new(),
            password: String::new(),
        };
        assert!(c("*.example.com").matches("reg.example.com", "x"));
        assert!(!c("*.example.com").matches("example.com", "x"));
        assert!(c("reg.io/team").matches("reg.io", "team/app"));
        assert!(!c("reg.io/team").matches("reg.io", "teamx/app"));
    }

    #[test]
    fn endpoints_put_mirrors_first() {
        let config = RegistriesConfig::parse(
            r#"
mirrors:
  docker.io:
    endpoint: ["http://127.0.0.1:5000", "https://mirror.example/v2"]
  "127.0.0.1:6000":
    endpoint: ["http://127.0.0.1:6000"]
configs:
  "mirror.example":
    auth: {username: u, password: p}
    tls: {insecure_skip_verify: true}
"#,
        )
        .unwrap();
        let eps = config.endpoints("docker.io");
        let hosts: Vec<_> = eps
            .iter()
            .map(|e| (e.host.as_str(), e.plain_http))
            .collect();
        assert_eq!(
            hosts,
            [
                ("127.0.0.1:5000", true),
                ("mirror.example", false),
                ("docker.io", false)
            ]
        );
        assert!(eps[1].tls.insecure_skip_verify);
        assert_eq!(eps[1].auth.as_ref().unwrap().username, "u");
        // A mirror that is the registry itself replaces the default endpoint.
        let eps = config.endpoints("127.0.0.1:6000");
        assert_eq!(eps.len(), 1);
        assert!(eps[0].plain_http);
        assert!(RegistriesConfig::parse("mirrors: {x: {endpoint: [\"ftp://a\"]}}").is_err());
        assert!(RegistriesConfig::parse("nonsense: 1").is_err());
        assert!(RegistriesConfig::parse("").unwrap().mirrors.is_empty());
    }

    #[test]
    fn rewrites_apply_to_mirror_endpoints_only() {
        let config = RegistriesConfig::parse(
            r#"
mirrors:
  docker.io:
    endpoint: ["http://127.0.0.1:5000"]
    rewrite:
      "^library/(.*)": "mirror-ns/$1"
      "^rancher/(.*)": "mirrored/rancher-$1"
"#,
        )
        .unwrap();
        let eps = config.endpoints("docker.io");
        assert_eq!(eps[0].repository("library/web"), "mirror-ns/web");
        assert_eq!(eps[0].repository("rancher/pause"), "mirrored/rancher-pause");
        assert_eq!(eps[0].repository("other/web"), "other/web");
        // The default endpoint (docker.io itself) is asked for the real name.
        assert_eq!(eps[1].host, "docker.io");
        assert_eq!(eps[1].repository("library/web"), "library/web");

        let err = RegistriesConfig::parse("mirrors: {x: {rewrite: {\"(\": \"y\"}}}").unwrap_err();
        assert!(err.contains("mirrors.\"x\".rewrite"), "{err}");
    }
}
