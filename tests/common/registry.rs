//! Test harness piece: Debian's `docker-registry` on a free 127.0.0.1 port
//! with a temporary storage dir, plain HTTP or TLS (a self-signed
//! certificate for 127.0.0.1) with htpasswd basic auth; images from
//! `conformance/images/build.py` pushed into it with skopeo. Dropping a
//! `Registry` stops it and removes its dir.
//!
//! Include it with `#[path = "common/registry.rs"] mod registry;` next to
//! `mod common;` (it uses the harness' helpers through `crate::common`).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::{free_port, run, stderr, stdout, wait_until};

const TIMEOUT: Duration = Duration::from_secs(120);

/// The test images (built once per machine, cached under target/), as
/// `conformance/images/build.py` leaves them: `oci/`, `archives/`.
pub fn test_images() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/images/build.py");
        let out = run(Command::new("python3").arg(&script), None, TIMEOUT);
        assert!(
            out.status.success(),
            "building test images failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        PathBuf::from(stdout(&out).trim())
    })
    .clone()
}

/// The OCI layout reference of a test image, e.g. `rk3s-test/web:1`.
pub fn oci_ref(image: &str) -> String {
    format!("oci:{}:{image}", test_images().join("oci").display())
}

/// An archive of a test image: `archive("web_1", "oci")` or `"docker"`.
pub fn archive(name: &str, kind: &str) -> PathBuf {
    test_images()
        .join("archives")
        .join(format!("{name}.{kind}.tar"))
}

/// `rk3s image import` of a test image's docker archive (e.g. "web_1") into
/// the image store under `data_dir`, as an air-gapped install does.
#[allow(dead_code)]
pub fn import(data_dir: &Path, name: &str) {
    let out = run(
        Command::new(crate::common::RK3S)
            .args(["image", "import", "--data-dir"])
            .arg(data_dir)
            .arg(archive(name, "docker")),
        None,
        TIMEOUT,
    );
    assert!(out.status.success(), "rk3s image import: {}", stderr(&out));
}

pub struct Registry {
    pub port: u16,
    pub dir: PathBuf,
    /// PEM of the self-signed certificate (the CA to trust), when TLS.
    pub ca_file: Option<PathBuf>,
    pub creds: Option<(String, String)>,
    /// The client certificate and key the registry asks for (mTLS), PEM.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// skopeo's `--dest-cert-dir` for it (client.cert, client.key, ca.crt).
    cert_dir: Option<PathBuf>,
    log: PathBuf,
    child: Child,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn start() -> Self {
        Self::launch(false, None, false)
    }

    /// TLS with a self-signed certificate for 127.0.0.1, and htpasswd
    /// (bcrypt) basic auth for `user`/`password`.
    pub fn start_tls_auth(user: &str, password: &str) -> Self {
        Self::launch(true, Some((user.to_string(), password.to_string())), false)
    }

    /// TLS that requires a client certificate signed by a CA of its own
    /// (`http.tls.clientcas`); `client_cert` holds one, no auth.
    pub fn start_mtls() -> Self {
        Self::launch(true, None, true)
    }

    fn launch(tls: bool, creds: Option<(String, String)>, mtls: bool) -> Self {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "registry-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("storage")).expect("registry dir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: rk3s-test\n",
            dir.join("storage").display()
        );
        let mut ca_file = None;
        let (mut client_cert, mut cert_dir) = (None, None);
        if tls {
            // A CA and a serving certificate for 127.0.0.1 signed by it
            // (rustls refuses a CA certificate as the server's own).
            let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
            let (cert, key, csr) = (
                dir.join("cert.pem"),
                dir.join("key.pem"),
                dir.join("csr.pem"),
            );
            let ext = dir.join("ext.cnf");
            fs::write(
                &ext,
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
            )
            .expect("ext");
            let p = |p: &PathBuf| p.display().to_string();
            let steps: [Vec<String>; 3] = [
                [
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=rk3s test CA",
                    "-keyout",
                ]
                .iter()
                .map(|s| s.to_string())
                .chain([p(&ca_key), "-out".into(), p(&ca)])
                .collect(),
                [
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                ]
                .iter()
                .map(|s| s.to_string())
                .chain([p(&key), "-out".into(), p(&csr)])
                .collect(),
                ["x509", "-req", "-days", "2", "-set_serial", "2", "-in"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain([
                        p(&csr),
                        "-CA".into(),
                        p(&ca),
                        "-CAkey".into(),
                        p(&ca_key),
                        "-extfile".into(),
                        p(&ext),
                        "-out".into(),
                        p(&cert),
                    ])
                    .collect(),
            ];
            for args in steps {
                let out = run(Command::new("openssl").args(&args), None, TIMEOUT);
                assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
            }
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            if mtls {
                let (cca, cca_key) = (dir.join("client-ca.pem"), dir.join("client-ca-key.pem"));
                let (ccert, ckey, ccsr) = (
                    dir.join("client.pem"),
                    dir.join("client-key.pem"),
                    dir.join("client.csr"),
                );
                let cext = dir.join("client-ext.cnf");
                fs::write(
                    &cext,
                    "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
                )
                .expect("ext");
                let steps: [Vec<String>; 3] = [
                    vec![
                        "req".into(),
                        "-x509".into(),
                        "-newkey".into(),
                        "rsa:2048".into(),
                        "-nodes".into(),
                        "-days".into(),
                        "2".into(),
                        "-subj".into(),
                        "/CN=rk3s test client CA".into(),
                        "-keyout".into(),
                        p(&cca_key),
                        "-out".into(),
                        p(&cca),
                    ],
                    vec![
                        "req".into(),
                        "-newkey".into(),
                        "rsa:2048".into(),
                        "-nodes".into(),
                        "-subj".into(),
                        "/CN=rk3s-node".into(),
                        "-keyout".into(),
                        p(&ckey),
                        "-out".into(),
                        p(&ccsr),
                    ],
                    vec![
                        "x509".into(),
                        "-req".into(),
                        "-days".into(),
                        "2".into(),
                        "-set_serial".into(),
                        "3".into(),
                        "-in".into(),
                        p(&ccsr),
                        "-CA".into(),
                        p(&cca),
                        "-CAkey".into(),
                        p(&cca_key),
                        "-extfile".into(),
                        p(&cext),
                        "-out".into(),
                        p(&ccert),
                    ],
                ];
                for args in steps {
                    let out = run(Command::new("openssl").args(&args), None, TIMEOUT);
                    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
                }
                config.push_str(&format!("    clientcas:\n      - {}\n", cca.display()));
                let certs = dir.join("client-certs");
                fs::create_dir_all(&certs).expect("cert dir");
                fs::copy(&ccert, certs.join("client.cert")).expect("copy");
                fs::copy(&ckey, certs.join("client.key")).expect("copy");
                fs::copy(&ca, certs.join("ca.crt")).expect("copy");
                client_cert = Some((ccert, ckey));
                cert_dir = Some(certs);
            }
            ca_file = Some(ca);
        }
        if let Some((user, password)) = &creds {
            let htpasswd = dir.join("htpasswd");
            let out = run(
                Command::new("htpasswd").args(["-Bbn", user, password]),
                None,
                TIMEOUT,
            );
            assert!(out.status.success(), "htpasswd: {}", stderr(&out));
            fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rk3s-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.join("config.yml");
        fs::write(&config_path, config).expect("write registry config");
        let log = dir.join("registry.log");
        let log_file = fs::File::create(&log).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .expect("spawn docker-registry (apt-get install docker-registry)");
        let registry = Registry {
            port,
            dir,
            ca_file,
            creds,
            client_cert,
            cert_dir,
            log,
            child,
        };
        let up = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "registry did not start:\n{}", registry.log());
        registry
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Push a test image (`rk3s-test/web:1`) as `repo` (`rk3s-test/web:1`)
    /// with all its platforms.
    pub fn push(&self, image: &str, repo: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "--insecure-policy",
            "copy",
            "--all",
            "--dest-tls-verify=false",
        ]);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        if let Some(dir) = &self.cert_dir {
            cmd.arg(format!("--dest-cert-dir={}", dir.display()));
        }
        cmd.arg(oci_ref(image))
            .arg(format!("docker://{}/{repo}", self.host()));
        let out = run(&mut cmd, None, TIMEOUT);
        assert!(
            out.status.success(),
            "skopeo push {image} -> {repo}: {}\nregistry log:\n{}",
            stderr(&out),
            self.log()
        );
    }

    /// Everything the registry logged (access log included).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many `GET` requests the access log has for paths containing `needle`.
    pub fn gets(&self, needle: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains(needle))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- registry log (last 30 lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if std::env::var_os("RK3S_KEEP_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
