//! The node's image store against a real registry (Debian's docker-registry
//! on 127.0.0.1, plain HTTP and TLS + basic auth) and real archives
//! (skopeo's oci-archive and docker-archive of conformance/images), through
//! the library and through the `rk3s image` command.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::{RK3S, run, stderr, stdout};
use registry::{Registry, archive, test_images};
use rk3s::runtime::image::{
    ImageStore, PullPolicy, RegistriesConfig, RegistryCredential,
    credentials_from_docker_config_json,
};

/// A scratch data dir under target/tmp, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("images-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn store_root(&self) -> PathBuf {
        self.0.join("agent/images")
    }

    fn store(&self, registries: &str) -> ImageStore {
        let config = RegistriesConfig::parse(registries).expect("registries.yaml");
        ImageStore::open(self.store_root(), config).expect("open store")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("RK3S_KEEP_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// registries.yaml making `registry` reachable over plain HTTP.
fn plain_http(registry: &Registry) -> String {
    format!(
        "mirrors:\n  \"{h}\":\n    endpoint: [\"http://{h}\"]\n",
        h = registry.host()
    )
}

fn image_cli(data_dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(RK3S);
    cmd.arg("image").args(args).arg("--data-dir").arg(data_dir);
    run(&mut cmd, None, Duration::from_secs(120))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_over_plain_http_and_shares_layers() {
    let reg = Registry::start();
    reg.push("rk3s-test/web:1", "rk3s-test/web:1");
    reg.push("rk3s-test/busybox:latest", "rk3s-test/busybox:latest");
    let scratch = Scratch::new("plain");
    let store = scratch.store(&plain_http(&reg));

    let web_ref = format!("{}/rk3s-test/web:1", reg.host());
    let web = store
        .ensure(&web_ref, PullPolicy::IfNotPresent, &[])
        .await
        .expect("pull web:1");
    assert!(web.pulled);
    assert_eq!(web.spec.reference, web_ref);
    assert!(
        web.spec
            .image_id
            .starts_with(&format!("{}/rk3s-test/web@sha256:", reg.host())),
        "{}",
        web.spec.image_id
    );
    assert_eq!(web.spec.layers.len(), 2);
    assert!(web.spec.layers[0].join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(web.spec.layers[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let serve = fs::metadata(web.spec.layers[1].join("bin/serve")).unwrap();
    assert_eq!(serve.mode() & 0o777, 0o755);
    assert_eq!(web.config.cmd, ["/bin/serve"]);
    assert!(web.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert!(web.size > 1_000_000, "size {}", web.size);

    // Present now: IfNotPresent fetches nothing.
    let blob_gets = reg.gets("/blobs/");
    let again = store
        .ensure(&web_ref, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    assert!(!again.pulled);
    assert_eq!(again.spec.layers, web.spec.layers);
    assert_eq!(reg.gets("/blobs/"), blob_gets);
    assert!(store.get(&web_ref).is_some());

    // Always asks the registry again but downloads no layer it has.
    let always = store
        .ensure(&web_ref, PullPolicy::Always, &[])
        .await
        .unwrap();
    assert!(always.pulled);
    assert_eq!(always.spec.image_id, web.spec.image_id);
    assert_eq!(reg.gets("/blobs/"), blob_gets + 1, "only the config again");

    // busybox shares web's lower layer: the same unpacked directory.
    let busybox = store
        .ensure(
            &format!("{}/rk3s-test/busybox", reg.host()),
            PullPolicy::IfNotPresent,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(busybox.spec.layers, web.spec.layers[..1]);
    let listed: Vec<String> = store.list().into_iter().map(|i| i.reference).collect();
    assert_eq!(
        listed,
        [
            format!("{}/rk3s-test/busybox:latest", reg.host()),
            format!("{}/rk3s-test/web:1", reg.host()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_io_short_names_go_through_a_mirror() {
    let reg = Registry::start();
    reg.push("rk3s-test/busybox:latest", "library/busybox:latest");
    let scratch = Scratch::new("mirror");
    let store = scratch.store(&format!(
        "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n",
        reg.host()
    ));
    let img = store
        .ensure("busybox", PullPolicy::IfNotPresent, &[])
        .await
        .expect("busybox through the mirror");
    assert!(
        img.spec
            .image_id
            .starts_with("docker.io/library/busybox@sha256:"),
        "{}",
        img.spec.image_id
    );
    assert!(store.get("docker.io/library/busybox:latest").is_some());
    assert!(reg.gets("/v2/library/busybox/manifests/latest") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_rewrites_the_repository_path() {
    let reg = Registry::start();
    reg.push("rk3s-test/web:1", "mirror-ns/web:1");
    let scratch = Scratch::new("rewrite");
    let store = scratch.store(&format!(
        "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n    rewrite:\n      \"^library/(.*)\": \"mirror-ns/$1\"\n",
        reg.host()
    ));
    let img = store
        .ensure("docker.io/library/web:1", PullPolicy::IfNotPresent, &[])
        .await
        .expect("web through the rewriting mirror");
    // Stored and reported under the name the pod asked for.
    assert!(
        img.spec
            .image_id
            .starts_with("docker.io/library/web@sha256:"),
        "{}",
        img.spec.image_id
    );
    assert!(store.get("docker.io/library/web:1").is_some());
    assert!(
        reg.gets("/v2/mirror-ns/web/manifests/1") >= 1,
        "{}",
        reg.log()
    );
    assert_eq!(reg.gets("/v2/library/web/"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_over_tls_with_basic_auth_from_a_pull_secret() {
    let reg = Registry::start_tls_auth("puller", "s3cret");
    reg.push("rk3s-test/web:2", "private/web:2");
    let scratch = Scratch::new("tls");
    let ca = reg.ca_file.clone().unwrap();
    let store = scratch.store(&format!(
        "configs:\n  \"{}\":\n    tls:\n      ca_file: {}\n",
        reg.host(),
        ca.display()
    ));
    let image = format!("{}/private/web:2", reg.host());

    let err = store
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap_err();
    assert_eq!(err.kubelet_reason(), "ErrImagePull");
    let text = err.to_string();
    assert!(text.contains("pull access denied"), "{text}");
    assert!(text.contains("401 Unauthorized"), "{text}");

    let secret = |user: &str, pass: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let json = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host());
        credentials_from_docker_config_json(json.as_bytes()).unwrap()
    };
    let wrong = store
        .ensure(&image, PullPolicy::IfNotPresent, &secret("puller", "nope"))
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("pull access denied"), "{wrong}");

    // Credentials for another registry are not sent, and do not help.
    let elsewhere = vec![RegistryCredential {
        registry: "other.example".into(),
        username: "puller".into(),
        password: "s3cret".into(),
    }];
    assert!(
        store
            .ensure(&image, PullPolicy::IfNotPresent, &elsewhere)
            .await
            .is_err()
    );

    let img = store
        .ensure(
            &image,
            PullPolicy::IfNotPresent,
            &secret("puller", "s3cret"),
        )
        .await
        .expect("pull with the secret");
    assert!(img.pulled);
    assert_eq!(img.spec.layers.len(), 2);

    // The same registry trusted by insecure_skip_verify, with auth from
    // registries.yaml instead of a secret.
    let scratch2 = Scratch::new("tls-insecure");
    let store2 = scratch2.store(&format!(
        "configs:\n  \"{}\":\n    auth: {{username: puller, password: s3cret}}\n    tls: {{insecure_skip_verify: true}}\n",
        reg.host()
    ));
    store2
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .expect("pull with registries.yaml auth");

    // Without trusting the certificate the TLS error is what is reported.
    let scratch3 = Scratch::new("tls-untrusted");
    let store3 = scratch3.store("");
    let err = store3
        .ensure(
            &image,
            PullPolicy::IfNotPresent,
            &secret("puller", "s3cret"),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("failed to pull and unpack image"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_with_a_tls_client_certificate() {
    let reg = Registry::start_mtls();
    reg.push("rk3s-test/web:2", "private/web:2");
    let (cert, key) = reg.client_cert.clone().unwrap();
    let ca = reg.ca_file.clone().unwrap();
    let image = format!("{}/private/web:2", reg.host());

    // Trusting the server is not enough: it wants our certificate.
    let scratch = Scratch::new("mtls-none");
    let store = scratch.store(&format!(
        "configs:\n  \"{}\":\n    tls:\n      ca_file: {}\n",
        reg.host(),
        ca.display()
    ));
    let err = store
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap_err();
    assert_eq!(err.kubelet_reason(), "ErrImagePull");
    let text = err.to_string();
    assert!(text.contains("failed to pull and unpack image"), "{text}");
    // The registry's TLS alert (its log: "client didn't provide a certificate").
    assert!(
        text.contains("received fatal alert: BadCertificate"),
        "{text}"
    );

    let scratch = Scratch::new("mtls");
    let store = scratch.store(&format!(
        "configs:\n  \"{}\":\n    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        reg.host(),
        ca.display(),
        cert.display(),
        key.display()
    ));
    let img = store
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .expect("pull with the client certificate");
    assert!(img.pulled);
    assert_eq!(img.spec.layers.len(), 2);
    assert!(
        img.spec
            .image_id
            .starts_with(&format!("{}/private/web@sha256:", reg.host())),
        "{}",
        img.spec.image_id
    );
    assert!(reg.gets("/v2/private/web/manifests/2") >= 1);

    // The certificate with insecure_skip_verify instead of the CA; a key
    // without its certificate is a configuration error.
    let scratch = Scratch::new("mtls-insecure");
    let store = scratch.store(&format!(
        "configs:\n  \"{}\":\n    tls: {{insecure_skip_verify: true, cert_file: {}, key_file: {}}}\n",
        reg.host(),
        cert.display(),
        key.display()
    ));
    store
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .expect("pull with the client certificate, server unverified");
    let scratch = Scratch::new("mtls-half");
    let store = scratch.store(&format!(
        "configs:\n  \"{}\":\n    tls: {{insecure_skip_verify: true, key_file: {}}}\n",
        reg.host(),
        key.display()
    ));
    let err = store
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cert_file and key_file go together"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_images_report_the_registry_message() {
    let reg = Registry::start();
    reg.push("rk3s-test/web:1", "rk3s-test/web:1");
    let scratch = Scratch::new("missing");
    let store = scratch.store(&plain_http(&reg));

    let tag = format!("{}/rk3s-test/web:404", reg.host());
    let err = store
        .ensure(&tag, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap_err();
    assert_eq!(err.kubelet_reason(), "ErrImagePull");
    assert_eq!(
        err.to_string(),
        format!(
            "failed to pull and unpack image \"{tag}\": failed to resolve reference \"{tag}\": {tag}: not found: manifest unknown"
        )
    );

    let repo = format!("{}/rk3s-test/nothing:1", reg.host());
    let err = store
        .ensure(&repo, PullPolicy::Always, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");
    // docker-registry 2.8 says "manifest unknown" for unknown repositories too.
    assert!(err.ends_with(": not found: manifest unknown"), "{err}");

    let err = store
        .ensure("Bad/Name", PullPolicy::IfNotPresent, &[])
        .await
        .unwrap_err();
    assert_eq!(err.kubelet_reason(), "InvalidImageName");
    assert!(store.list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_policy_uses_only_what_is_present() {
    let scratch = Scratch::new("never");
    let store = scratch.store("");
    let err = store
        .ensure("rk3s-test/busybox", PullPolicy::Never, &[])
        .await
        .unwrap_err();
    assert_eq!(err.kubelet_reason(), "ErrImageNeverPull");
    assert_eq!(
        err.to_string(),
        "Container image \"rk3s-test/busybox\" is not present with pull policy of Never"
    );
    store
        .import(&archive("busybox_latest", "docker"))
        .expect("import busybox");
    let img = store
        .ensure("rk3s-test/busybox", PullPolicy::Never, &[])
        .await
        .expect("present after import");
    assert!(!img.pulled);
    assert_eq!(img.config.cmd, ["sh"]);
}

#[test]
fn image_command_imports_lists_and_removes() {
    let scratch = Scratch::new("cli");
    let data = &scratch.0;
    // The store of a running node, opened before the import: it sees the
    // images another process imports.
    let store = ImageStore::open(scratch.store_root(), RegistriesConfig::default()).unwrap();
    assert!(store.get("rk3s-test/web:1").is_none());

    let web_oci = archive("web_1", "oci");
    let busybox_docker = archive("busybox_latest", "docker");
    let out = image_cli(
        data,
        &[
            "import",
            web_oci.to_str().unwrap(),
            busybox_docker.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "imported docker.io/rk3s-test/web:1\nimported docker.io/rk3s-test/busybox:latest\n"
    );
    let web = store
        .get("rk3s-test/web:1")
        .expect("seen by the open store");
    assert!(web.spec.layers[1].join("bin/serve").is_file());
    // The docker archive's layer is the same content as the OCI one's.
    let busybox = store.get("rk3s-test/busybox").unwrap();
    assert_eq!(busybox.spec.layers, web.spec.layers[..1]);

    let out = image_cli(data, &["ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"], "{text}");
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(
        rows[1][..2],
        ["docker.io/rk3s-test/busybox", "latest"],
        "{text}"
    );
    assert_eq!(rows[2][..2], ["docker.io/rk3s-test/web", "1"], "{text}");
    assert_eq!(rows[2][2].len(), 13);
    assert!(rows[2][3].ends_with("MB"), "{text}");

    let layers = |d: &Path| fs::read_dir(d.join("agent/images/layers")).unwrap().count();
    assert_eq!(layers(data), 2);
    let out = image_cli(data, &["rm", "rk3s-test/web:1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Deleted: rk3s-test/web:1\n");
    // web's own layer is gone, the shared one stays for busybox.
    assert_eq!(layers(data), 1);
    assert!(store.get("rk3s-test/web:1").is_none());
    assert!(store.get("rk3s-test/busybox").is_some());
    let text = stdout(&image_cli(data, &["ls"]));
    assert!(!text.contains("rk3s-test/web"), "{text}");

    let out = image_cli(data, &["rm", "rk3s-test/web:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no such image: rk3s-test/web:1"),
        "{}",
        stderr(&out)
    );

    // By image id (as `ls -q` prints it).
    let id = stdout(&image_cli(data, &["ls", "-q"])).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let out = image_cli(data, &["rm", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(layers(data), 0);
    assert_eq!(stdout(&image_cli(data, &["ls", "-q"])), "");

    // Not an archive.
    let junk = scratch.0.join("junk.tar");
    fs::write(&junk, b"not a tar at all").unwrap();
    let out = image_cli(data, &["import", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid archive"), "{}", stderr(&out));
}

#[test]
fn archives_in_the_images_dir_are_imported_at_start() {
    let scratch = Scratch::new("airgap");
    let dir = scratch.store_root();
    fs::create_dir_all(&dir).unwrap();
    fs::copy(archive("web_2", "oci"), dir.join("web2.tar")).unwrap();
    // Compressed archives too, as k3s accepts them.
    let gz = run(
        Command::new("gzip")
            .arg("-c")
            .arg(archive("busybox_latest", "docker")),
        None,
        Duration::from_secs(60),
    );
    fs::write(dir.join("busybox.tar.gz"), &gz.stdout).unwrap();
    fs::write(dir.join("broken.tar"), b"garbage").unwrap();
    fs::write(dir.join("notes.txt"), b"not an archive name").unwrap();

    let store = scratch.store("");
    let mut refs = store.import_dir(&dir).expect("import dir");
    refs.sort();
    assert_eq!(
        refs,
        [
            "docker.io/rk3s-test/busybox:latest",
            "docker.io/rk3s-test/web:2"
        ]
    );
    let web = store.get("rk3s-test/web:2").unwrap();
    let serve = fs::read_to_string(web.spec.layers[1].join("bin/serve")).unwrap();
    assert!(serve.contains("v2"), "{serve}");

    // A restart does not unpack unchanged archives again (their records
    // are not rewritten), but re-imports one whose image was removed.
    let web_record_mtime = || {
        store
            .list()
            .into_iter()
            .find(|i| i.reference.ends_with("web:2"))
            .unwrap()
            .last_used
    };
    let before = web_record_mtime();
    store.remove("rk3s-test/busybox").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let reopened = scratch.store("");
    let again = reopened.import_dir(&dir).unwrap();
    assert_eq!(again.len(), 2);
    assert!(reopened.get("rk3s-test/busybox").is_some());
    assert_eq!(web_record_mtime(), before);
}

#[test]
fn layers_unpack_as_overlay_lowerdirs() {
    let scratch = Scratch::new("layers");
    let store = scratch.store("");
    let refs = store.import(&archive("layers_1", "oci")).unwrap();
    assert_eq!(refs, ["docker.io/rk3s-test/layers:1"]);
    let img = store.get("rk3s-test/layers:1").unwrap();
    let c = &img.config;
    assert_eq!(c.entrypoint, ["/bin/true"]);
    assert_eq!(c.cmd, ["-v"]);
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(c.working_dir.as_deref(), Some("/a"));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    // What the runtime sends on a graceful stop travels with the image.
    assert_eq!(img.spec.stop_signal.as_deref(), Some("SIGINT"));
    let (lower, upper) = (&img.spec.layers[0], &img.spec.layers[1]);

    // Lower (gzip): ownership and modes kept.
    let owned = fs::metadata(lower.join("owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1000, 1000, 0o640)
    );
    assert!(lower.join("a/x").is_file());

    // Upper (zstd): `.wh.b` is a 0/0 character device `b`.
    let b = fs::symlink_metadata(upper.join("b")).unwrap();
    assert!(b.file_type().is_char_device());
    assert_eq!(b.rdev(), 0);
    assert!(!upper.join(".wh.b").exists());
    // `.wh..wh..opq` is the opaque xattr on `a`.
    assert_eq!(
        xattr::get(upper.join("a"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!upper.join("a/.wh..wh..opq").exists());
    assert!(upper.join("a/z").is_file());
    // Hard links stay hard links; xattrs, symlinks and fifos are kept.
    let (h1, h2) = (
        fs::metadata(upper.join("h1")).unwrap(),
        fs::metadata(upper.join("h2")).unwrap(),
    );
    assert_eq!(h1.ino(), h2.ino());
    assert_eq!(h1.nlink(), 2);
    assert_eq!(h1.mode() & 0o777, 0o600);
    assert_eq!(
        xattr::get(upper.join("x"), "user.rk3s").unwrap(),
        Some(b"yes".to_vec())
    );
    assert_eq!(fs::read_link(upper.join("s")).unwrap(), Path::new("h1"));
    assert!(
        fs::symlink_metadata(upper.join("p"))
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // And overlayfs reads them as the image means: b deleted, a replaced.
    let merged = scratch.0.join("merged");
    let work = scratch.0.join("work");
    let upperdir = scratch.0.join("upper");
    for d in [&merged, &work, &upperdir] {
        fs::create_dir_all(d).unwrap();
    }
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        upper.display(),
        lower.display(),
        upperdir.display(),
        work.display()
    );
    let out = run(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged),
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "mount overlay: {}", stderr(&out));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(merged.clone());
    assert!(!merged.join("b").exists());
    let mut a: Vec<String> = fs::read_dir(merged.join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    a.sort();
    assert_eq!(a, ["z"]);
    assert_eq!(
        fs::read_to_string(merged.join("keep/file")).unwrap(),
        "kept\n"
    );
    assert_eq!(fs::read_to_string(merged.join("s")).unwrap(), "linked\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ensures_of_one_image_pull_once() {
    let reg = Registry::start();
    reg.push("rk3s-test/web:1", "rk3s-test/web:1");
    let scratch = Scratch::new("concurrent");
    let store = scratch.store(&plain_http(&reg));
    let image = format!("{}/rk3s-test/web:1", reg.host());
    let pulls = (0..6).map(|_| {
        let store = store.clone();
        let image = image.clone();
        tokio::spawn(async move { store.ensure(&image, PullPolicy::IfNotPresent, &[]).await })
    });
    let results = futures::future::join_all(pulls).await;
    let mut ids = HashSet::new();
    for r in results {
        let img = r.unwrap().expect("pull");
        ids.insert(img.spec.image_id);
    }
    assert_eq!(ids.len(), 1);
    // One manifest, one config and two layers fetched, once.
    assert_eq!(
        reg.gets("/v2/rk3s-test/web/manifests/1"),
        1,
        "{}",
        reg.log()
    );
    assert_eq!(reg.gets("/v2/rk3s-test/web/blobs/"), 3, "{}", reg.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_index_resolves_to_the_node_platform() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "the test images offer arm64 and amd64"
    );
    let reg = Registry::start();
    reg.push("rk3s-test/multiarch:1", "rk3s-test/multiarch:1");
    let scratch = Scratch::new("multiarch");
    let store = scratch.store(&plain_http(&reg));
    let image = format!("{}/rk3s-test/multiarch:1", reg.host());
    let img = store
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .expect("pull the index");
    let top = img.spec.layers.last().unwrap();
    assert_eq!(fs::read_to_string(top.join("arch")).unwrap(), "amd64\n");
    assert_eq!(img.config.cmd, ["cat", "/arch"]);
    // The image id is the digest the tag points at: the index.
    let index_digest = oci_index_digest("rk3s-test/multiarch:1");
    assert_eq!(
        img.spec.image_id,
        format!("{}/rk3s-test/multiarch@{index_digest}", reg.host())
    );
    // The arm64 layer was never fetched.
    assert_eq!(
        reg.gets("/v2/rk3s-test/multiarch/blobs/"),
        3,
        "{}",
        reg.log()
    );

    // The same from an OCI archive.
    let scratch2 = Scratch::new("multiarch-archive");
    let store2 = scratch2.store("");
    store2.import(&archive("multiarch_1", "oci")).unwrap();
    let img2 = store2.get("rk3s-test/multiarch:1").unwrap();
    assert_eq!(
        fs::read_to_string(img2.spec.layers.last().unwrap().join("arch")).unwrap(),
        "amd64\n"
    );
    assert_eq!(
        img2.spec.image_id,
        format!("docker.io/rk3s-test/multiarch@{index_digest}")
    );
}

/// The digest a ref name points at in the test images' OCI layout.
fn oci_index_digest(ref_name: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(test_images().join("oci/index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == ref_name)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_least_recently_used_unused_images() {
    let scratch = Scratch::new("prune");
    let store = scratch.store("");
    store.import(&archive("busybox_latest", "docker")).unwrap();
    store.import(&archive("web_1", "oci")).unwrap();
    store.import(&archive("web_2", "oci")).unwrap();
    // Use them in this order: busybox is the least recently used.
    for r in ["rk3s-test/busybox", "rk3s-test/web:1", "rk3s-test/web:2"] {
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.ensure(r, PullPolicy::Never, &[]).await.unwrap();
    }
    let in_use: HashSet<String> = ["rk3s-test/web:2".to_string()].into();

    // busybox goes first but frees nothing (web:2 shares its layer); web:1
    // then frees its own layer, which is enough.
    let freed = store.prune_unused(&in_use, 1).unwrap();
    assert!(freed > 0 && freed < 100_000, "freed {freed}");
    let left: Vec<String> = store.list().into_iter().map(|i| i.reference).collect();
    assert_eq!(left, ["docker.io/rk3s-test/web:2"]);

    // What is in use stays, whatever the pressure (named by image id too).
    let id = store.get("rk3s-test/web:2").unwrap().spec.image_id;
    let by_id: HashSet<String> = [id].into();
    assert_eq!(store.prune_unused(&by_id, u64::MAX).unwrap(), 0);
    assert_eq!(store.list().len(), 1);

    let freed = store.prune_unused(&HashSet::new(), u64::MAX).unwrap();
    assert!(freed > 1_000_000, "freed {freed}");
    assert!(store.list().is_empty());
    assert_eq!(
        fs::read_dir(scratch.store_root().join("layers"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn tampered_blobs_are_refused() {
    let scratch = Scratch::new("tampered");
    // Rewrite the web:1 OCI archive with one byte of its top layer changed.
    let manifest_digest = oci_index_digest("rk3s-test/web:1");
    let blob = |d: &str| {
        fs::read(
            test_images()
                .join("oci/blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&manifest_digest)).unwrap();
    let top = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let top_path = format!("blobs/sha256/{}", top.trim_start_matches("sha256:"));

    let src = fs::File::open(archive("web_1", "oci")).unwrap();
    let tampered = scratch.0.join("tampered.tar");
    let mut out = tar::Builder::new(fs::File::create(&tampered).unwrap());
    let mut input = tar::Archive::new(src);
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if path == top_path {
            let last = data.len() - 1;
            data[last] ^= 0xff;
        }
        let mut header = entry.header().clone();
        out.append_data(&mut header, &path, data.as_slice())
            .unwrap();
    }
    out.finish().unwrap();
    drop(out);

    let store = scratch.store("");
    let err = store.import(&tampered).unwrap_err().to_string();
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(err.contains(&top), "{err}");
    assert!(store.list().is_empty());
    assert!(store.get("rk3s-test/web:1").is_none());
}
