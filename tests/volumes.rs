//! The node's volume manager against a real server: pods created with
//! kubectl, their volumes set up by `VolumeManager` over a kube-rs client
//! (the agent stays off; these tests drive the manager directly, as the
//! agent does). Needs root (tmpfs mounts).

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use rk3s::node::volumes::{VolumeManager, container_mounts, mountutil};

/// Unmounts whatever a test left under its pods dir, even on failure.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = mountutil::unmount_all_under(&self.0);
    }
}

async fn get_pod(client: &kube::Client, name: &str) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.get(name).await.expect("get pod")
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Names in a volume dir besides the writer's own `..` entries.
fn visible(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    v.sort();
    v
}

const API_DATA: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data: {greeting: hello, other: x}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: app
    image: busybox
    resources:
      limits: {cpu: 250m, memory: 64Mi}
    volumeMounts:
    - {name: cfg, mountPath: /etc/app}
    - {name: scratch, mountPath: /logs, subPathExpr: "$(POD_NAME)"}
  volumes:
  - name: cfg
    configMap: {name: app-config}
  - name: cfgitems
    configMap:
      name: app-config
      items: [{key: greeting, path: sub/hello.txt, mode: 0600}]
  - name: sec
    secret: {secretName: creds, defaultMode: 0400}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: cpu, resourceFieldRef: {containerName: app, resource: limits.cpu, divisor: 1m}}
  - name: proj
    projected:
      sources:
      - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
      - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}
      - secret: {name: creds}
  - name: opt
    configMap: {name: not-there, optional: true}
  - name: scratch
    emptyDir: {}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_data_volumes_are_written_atomically_and_follow_updates() {
    let s = Server::start();
    let pods_dir = s.root.join("pods");
    let _guard = MountGuard(pods_dir.clone());
    // The projected volume reads the root CA ConfigMap the publisher makes.
    assert!(
        wait_until(Duration::from_secs(30), || s
            .kubectl(&["get", "configmap", "kube-root-ca.crt"])
            .status
            .success()),
        "kube-root-ca.crt never appeared"
    );
    s.k_in(API_DATA, &["apply", "-f", "-"]);
    let client = s.client().await;
    let mgr = VolumeManager::new(client.clone(), pods_dir.clone(), "node-a");
    let pod = get_pod(&client, "web").await;
    let uid = pod.metadata.uid.clone().expect("uid");
    let vols = mgr.mount_pod_volumes(&pod).await.expect("mount");

    // configMap: every key, as a symlink through ..data.
    let cfg = &vols["cfg"];
    assert!(cfg.starts_with(pods_dir.join(&uid).join("volumes/kubernetes.io~configmap")));
    assert_eq!(visible(cfg), ["greeting", "other"]);
    assert_eq!(read(&cfg.join("greeting")), "hello");
    assert_eq!(
        fs::read_link(cfg.join("greeting")).unwrap(),
        Path::new("..data/greeting")
    );
    let first = fs::read_link(cfg.join("..data")).unwrap();
    assert!(first.to_string_lossy().starts_with("..20"), "{first:?}");
    assert_eq!(mode(&cfg.join("greeting")), 0o644, "defaultMode 0644");
    // items with a mode.
    let items = &vols["cfgitems"];
    assert_eq!(visible(items), ["sub"]);
    assert_eq!(read(&items.join("sub/hello.txt")), "hello");
    assert_eq!(mode(&items.join("sub/hello.txt")), 0o600);
    // secret: on tmpfs, defaultMode 0400.
    let sec = &vols["sec"];
    assert!(mountutil::is_mount_point(sec), "secret volumes are tmpfs");
    assert!(
        !mountutil::is_mount_point(cfg),
        "configMap volumes are on disk"
    );
    assert_eq!(read(&sec.join("password")), "s3cret");
    assert_eq!(mode(&sec.join("password")), 0o400);
    // downwardAPI.
    let info = &vols["info"];
    assert_eq!(read(&info.join("labels")), "app=\"web\"");
    assert_eq!(read(&info.join("name")), "web");
    assert_eq!(read(&info.join("cpu")), "250");
    // projected: the root CA, a downward field and a secret in one dir.
    let proj = &vols["proj"];
    assert_eq!(visible(proj), ["ca.crt", "namespace", "password"]);
    assert!(read(&proj.join("ca.crt")).starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(read(&proj.join("namespace")), "default");
    // An optional ConfigMap that does not exist: an empty volume.
    assert!(visible(&vols["opt"]).is_empty());
    // emptyDir: world-writable.
    assert_eq!(mode(&vols["scratch"]), 0o777);

    // Mounts for the container: configMap read-only; subPathExpr expanded
    // from the container's env and created inside the volume.
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let env = vec![("POD_NAME".to_string(), "web".to_string())];
    let mounts = container_mounts(&pod, c, &vols, &env).expect("mounts");
    assert_eq!(mounts[0].container_path, "/etc/app");
    assert!(mounts[0].readonly);
    assert_eq!(
        mounts[1].host_path,
        fs::canonicalize(&vols["scratch"]).unwrap().join("web")
    );
    assert!(mounts[1].host_path.is_dir());
    assert!(!mounts[1].readonly);

    // Updates: the ConfigMap changes (a key goes), the pod gets a label.
    s.k(&["patch", "configmap", "app-config", "--type=json", "-p",
        r#"[{"op":"replace","path":"/data/greeting","value":"bonjour"},{"op":"remove","path":"/data/other"}]"#]);
    s.k(&["label", "pod", "web", "tier=front"]);
    mgr.resync().await;
    assert_eq!(read(&cfg.join("greeting")), "bonjour");
    assert_eq!(visible(cfg), ["greeting"], "a removed key's link goes");
    let second = fs::read_link(cfg.join("..data")).unwrap();
    assert_ne!(first, second, "..data now names a new payload dir");
    assert!(!cfg.join(&first).exists(), "the old payload dir is removed");
    assert_eq!(read(&items.join("sub/hello.txt")), "bonjour");
    assert_eq!(read(&info.join("labels")), "app=\"web\"\ntier=\"front\"");
    // Nothing changed: nothing is rewritten.
    mgr.resync().await;
    assert_eq!(fs::read_link(cfg.join("..data")).unwrap(), second);

    // Teardown: tmpfs unmounted, the pod's volume dir gone.
    mgr.unmount_pod_volumes(&uid).await.expect("unmount");
    assert!(!pods_dir.join(&uid).join("volumes").exists());
    let left: Vec<PathBuf> = mountutil::mount_points()
        .unwrap()
        .into_iter()
        .filter(|p| p.starts_with(&pods_dir))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_sources_fail_with_upstream_messages() {
    let s = Server::start();
    let pods_dir = s.root.join("pods");
    let _guard = MountGuard(pods_dir.clone());
    s.k_in(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: present}
data: {a: "1"}
---
apiVersion: v1
kind: Pod
metadata: {name: no-cm}
spec:
  containers: [{name: c, image: busybox}]
  volumes: [{name: cfg, configMap: {name: nope}}]
---
apiVersion: v1
kind: Pod
metadata: {name: no-key}
spec:
  containers: [{name: c, image: busybox}]
  volumes: [{name: cfg, configMap: {name: present, items: [{key: nokey, path: x}]}}]
---
apiVersion: v1
kind: Pod
metadata: {name: no-secret}
spec:
  containers: [{name: c, image: busybox}]
  volumes: [{name: creds, secret: {secretName: nope}}]
---
apiVersion: v1
kind: Pod
metadata: {name: projected-missing}
spec:
  containers: [{name: c, image: busybox}]
  volumes:
  - name: all
    projected:
      sources:
      - configMap: {name: nope}
      - secret: {name: gone}
---
apiVersion: v1
kind: Pod
metadata: {name: optional-key}
spec:
  containers: [{name: c, image: busybox}]
  volumes: [{name: cfg, configMap: {name: present, optional: true, items: [{key: nokey, path: x}, {key: a, path: why}]}}]
"#,
        &["apply", "-f", "-"],
    );
    let client = s.client().await;
    let mgr = VolumeManager::new(client.clone(), pods_dir.clone(), "node-a");
    let err = |name: &'static str| {
        let (client, mgr) = (&client, &mgr);
        async move {
            let pod = get_pod(client, name).await;
            mgr.mount_pod_volumes(&pod)
                .await
                .expect_err("mount should fail")
                .to_string()
        }
    };
    assert_eq!(
        err("no-cm").await,
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"nope\" not found"
    );
    assert_eq!(
        err("no-key").await,
        "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: nokey"
    );
    assert_eq!(
        err("no-secret").await,
        "MountVolume.SetUp failed for volume \"creds\" : secret \"nope\" not found"
    );
    assert_eq!(
        err("projected-missing").await,
        "MountVolume.SetUp failed for volume \"all\" : [configmap \"nope\" not found, secret \"gone\" not found]"
    );
    // optional: a missing key is skipped.
    let pod = get_pod(&client, "optional-key").await;
    let vols = mgr.mount_pod_volumes(&pod).await.expect("optional mounts");
    assert_eq!(visible(&vols["cfg"]), ["why"]);
    // The ConfigMap appears: the next attempt succeeds.
    s.k(&["create", "configmap", "nope", "--from-literal=k=v"]);
    let pod = get_pod(&client, "no-cm").await;
    let vols: HashMap<String, PathBuf> = mgr.mount_pod_volumes(&pod).await.expect("now mounts");
    assert_eq!(read(&vols["cfg"].join("k")), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_dirs_host_paths_and_claims() {
    let s = Server::start();
    let pods_dir = s.root.join("pods");
    let _guard = MountGuard(pods_dir.clone());
    let hp = s.root.join("host");
    fs::create_dir_all(&hp).unwrap();
    let pv_dir = s.root.join("pv-data");
    fs::create_dir_all(&pv_dir).unwrap();
    let manifest = format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: manual-pv}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: {{path: {pv}, type: Directory}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: manual}}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 500Mi}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: waiting}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: store}}
spec:
  containers: [{{name: c, image: busybox}}]
  volumes:
  - {{name: disk, emptyDir: {{}}}}
  - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 16Mi}}}}
  - {{name: made, hostPath: {{path: {hp}/new/dir, type: DirectoryOrCreate}}}}
  - {{name: file, hostPath: {{path: {hp}/f.txt, type: FileOrCreate}}}}
  - {{name: claim, persistentVolumeClaim: {{claimName: manual}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: bad-type}}
spec:
  containers: [{{name: c, image: busybox}}]
  volumes: [{{name: f, hostPath: {{path: {hp}/f.txt, type: Directory}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: unbound}}
spec:
  containers: [{{name: c, image: busybox}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: waiting}}}}]
"#,
        pv = pv_dir.display(),
        hp = hp.display()
    );
    s.k_in(&manifest, &["apply", "-f", "-"]);
    // The binder binds the static claim.
    assert!(
        wait_until(Duration::from_secs(30), || {
            s.k(&["get", "pvc", "manual", "-o", "jsonpath={.status.phase}"]) == "Bound"
        }),
        "manual claim never bound: {}",
        s.k(&["get", "pvc,pv"])
    );
    let client = s.client().await;
    let mgr = VolumeManager::new(client.clone(), pods_dir.clone(), "node-a");
    let pod = get_pod(&client, "store").await;
    let vols = mgr.mount_pod_volumes(&pod).await.expect("mount");

    // Memory emptyDir: a tmpfs of sizeLimit.
    let mem = &vols["mem"];
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mem.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} is not mounted", mem.display()));
    assert!(
        line.contains(" tmpfs ") && line.contains("size=16384k"),
        "{line}"
    );
    assert!(!mountutil::is_mount_point(&vols["disk"]));
    // hostPath: created as asked.
    assert_eq!(vols["made"], hp.join("new/dir"));
    assert!(hp.join("new/dir").is_dir());
    assert_eq!(mode(&hp.join("new/dir")), 0o755);
    assert!(hp.join("f.txt").is_file());
    // The claim is its PV's directory.
    assert_eq!(vols["claim"], pv_dir);

    // Data in emptyDirs survives a second setup (an agent restart).
    fs::write(vols["disk"].join("keep"), "me").unwrap();
    fs::write(mem.join("keep"), "too").unwrap();
    let again = mgr.mount_pod_volumes(&pod).await.expect("mount again");
    assert_eq!(read(&again["disk"].join("keep")), "me");
    assert_eq!(read(&again["mem"].join("keep")), "too");

    let err = mgr
        .mount_pod_volumes(&get_pod(&client, "bad-type").await)
        .await
        .expect_err("wrong type");
    assert_eq!(
        err.to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"f\" : hostPath type check failed: {}/f.txt is not a directory",
            hp.display()
        )
    );
    let err = mgr
        .mount_pod_volumes(&get_pod(&client, "unbound").await)
        .await
        .expect_err("unbound claim");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"data\" : PVC default/waiting has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")"
    );

    let uid = pod.metadata.uid.clone().unwrap();
    mgr.unmount_pod_volumes(&uid).await.expect("unmount");
    assert!(!mountutil::is_mount_point(mem));
    assert!(!pods_dir.join(&uid).exists() || !pods_dir.join(&uid).join("volumes").exists());
    // Host data is never removed.
    assert!(hp.join("new/dir").is_dir());
    assert!(pv_dir.is_dir());
}
