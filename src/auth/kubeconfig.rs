//! The admin kubeconfig: written at every start to
//! `<data-dir>/server/cred/admin.kubeconfig` and, if asked, to
//! `--write-kubeconfig` (k3s's /etc/rancher/k3s/k3s.yaml).

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::pki::{Pki, write_atomic};
use crate::config::ServerConfig;

/// A kubeconfig with one cluster, user and context, each named "default" as
/// k3s names them, carrying the CA and the client certificate inline.
pub fn admin_kubeconfig(server_url: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = STANDARD.encode(ca_pem),
        server = yaml_scalar(server_url),
        cert = STANDARD.encode(cert_pem),
        key = STANDARD.encode(key_pem),
    )
}

/// A URL as a YAML scalar: plain when that is unambiguous, else double-quoted
/// (a JSON string is a valid YAML double-quoted scalar).
fn yaml_scalar(s: &str) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/[]%?=&+@".contains(&b))
        && !s.contains(": ");
    if plain {
        s.to_string()
    } else {
        serde_json::Value::from(s).to_string()
    }
}

/// Write `contents` to `path` with permissions `mode` (exactly, whatever the
/// umask), creating parent directories and replacing the file atomically.
pub fn write_kubeconfig(path: &Path, contents: &str, mode: u32) -> io::Result<()> {
    write_atomic(path, contents.as_bytes(), mode).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing kubeconfig {}: {e}", path.display()),
        )
    })
}

/// Write the admin kubeconfig everywhere `config` asks: always to
/// `<data-dir>/server/cred/admin.kubeconfig` (0600), and to
/// `--write-kubeconfig` with `--write-kubeconfig-mode` when set. Returns the
/// paths written, the user-facing one last.
pub fn write_admin_kubeconfigs(config: &ServerConfig, pki: &Pki) -> io::Result<Vec<PathBuf>> {
    let contents = pki.admin_kubeconfig(&config.local_server_url());
    let mut written = Vec::new();
    let cred = config.admin_kubeconfig_path();
    write_kubeconfig(&cred, &contents, 0o600)?;
    written.push(cred);
    if let Some(path) = &config.write_kubeconfig {
        write_kubeconfig(path, &contents, config.write_kubeconfig_mode)?;
        written.push(path.clone());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authn::user_from_cert;
    use crate::auth::pki::SanInputs;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            TempDir(std::env::temp_dir().join(format!("rk3s-kubeconfig-{}", uuid::Uuid::new_v4())))
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .expect("kubectl on PATH");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn pki(dir: &Path) -> Pki {
        let sans = SanInputs {
            hostnames: vec!["h".into()],
            addresses: vec![],
            service_ip: "10.43.0.1".parse().unwrap(),
            extra: vec![],
        };
        Pki::load_or_create(&dir.join("tls"), &sans).unwrap()
    }

    #[test]
    fn kubectl_reads_it() {
        let dir = TempDir::new();
        let pki = pki(&dir.0);
        for url in [
            "https://127.0.0.1:6443",
            "https://[fd00::2]:7443",
            "https://api.example.com:6443/prefix",
        ] {
            let text =
                admin_kubeconfig(url, pki.ca_pem(), pki.admin_cert_pem(), pki.admin_key_pem());
            let path = dir.0.join("nested/dir/k.yaml");
            write_kubeconfig(&path, &text, 0o640).unwrap();
            assert_eq!(mode(&path), 0o640);
            let (ok, out, err) = kubectl(
                &path,
                &[
                    "config",
                    "view",
                    "-o",
                    "jsonpath={.clusters[0].cluster.server}",
                ],
            );
            assert!(ok, "{err}");
            assert_eq!(out, url);
            let (ok, out, err) = kubectl(&path, &["config", "current-context"]);
            assert!(ok, "{err}");
            assert_eq!(out.trim(), "default");
            let (ok, out, err) = kubectl(
                &path,
                &[
                    "config",
                    "view",
                    "--raw",
                    "-o",
                    "jsonpath={.users[0].user.client-certificate-data}",
                ],
            );
            assert!(ok, "{err}");
            assert_eq!(
                STANDARD.decode(out.trim()).unwrap(),
                pki.admin_cert_pem().as_bytes()
            );
        }
    }

    #[test]
    fn scalars_needing_quotes_are_quoted() {
        assert_eq!(
            yaml_scalar("https://127.0.0.1:6443"),
            "https://127.0.0.1:6443"
        );
        assert_eq!(yaml_scalar("https://x: y"), "\"https://x: y\"");
        assert_eq!(yaml_scalar("https://h/#frag"), "\"https://h/#frag\"");
    }

    #[test]
    fn written_where_the_config_says_with_its_mode() {
        let dir = TempDir::new();
        let pki = pki(&dir.0);
        let mut config = ServerConfig::new(dir.0.join("data"), "n1");
        config.https_port = 7443;
        let written = write_admin_kubeconfigs(&config, &pki).unwrap();
        assert_eq!(written, [dir.0.join("data/server/cred/admin.kubeconfig")]);
        assert_eq!(mode(&written[0]), 0o600);

        // Replaces an existing file, and sets the mode even if it was wider.
        let user_copy = dir.0.join("etc/rk3s/rk3s.yaml");
        std::fs::create_dir_all(user_copy.parent().unwrap()).unwrap();
        std::fs::write(&user_copy, "old").unwrap();
        std::fs::set_permissions(&user_copy, std::fs::Permissions::from_mode(0o666)).unwrap();
        config.write_kubeconfig = Some(user_copy.clone());
        config.write_kubeconfig_mode = 0o644;
        let written = write_admin_kubeconfigs(&config, &pki).unwrap();
        assert_eq!(written.last(), Some(&user_copy));
        assert_eq!(mode(&user_copy), 0o644);
        let (ok, out, err) = kubectl(
            &user_copy,
            &[
                "config",
                "view",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ],
        );
        assert!(ok, "{err}");
        assert_eq!(out, "https://127.0.0.1:7443");
    }

    /// kubectl (Go's TLS stack) trusts the serving certificate through the
    /// kubeconfig's CA and presents the admin certificate, which the server
    /// verifies and maps to system:admin.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kubectl_connects_with_it() {
        use http_body_util::Full;
        use hyper::body::Bytes;
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let dir = TempDir::new();
        let pki = pki(&dir.0);
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_tls_config().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let who = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| user_from_cert(&c[0]))
                        .map(|u| format!("{} {}", u.name, u.groups.join(",")))
                        .unwrap_or_else(|| "anonymous".into());
                    let service = hyper::service::service_fn(move |_req| {
                        let body = Full::new(Bytes::from(who.clone()));
                        async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });

        let mut config = ServerConfig::new(dir.0.join("data"), "n1");
        config.https_port = port;
        let path = write_admin_kubeconfigs(&config, &pki).unwrap().remove(0);
        let (ok, out, err) =
            tokio::task::spawn_blocking(move || kubectl(&path, &["get", "--raw", "/whoami"]))
                .await
                .unwrap();
        server.abort();
        assert!(ok, "{err}");
        assert_eq!(
            out.trim(),
            "system:admin system:masters,system:authenticated"
        );
    }
}
