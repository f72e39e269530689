//! The agent's decisions against a real control plane in process and an
//! in-test double of the runtime, image store, network and volumes: the
//! double's containers "run" their argv (`exit N` exits with N at once,
//! anything else runs until stopped), so the worker's ordering, restarts,
//! back-off, status and events can be checked without a kernel. The real
//! runtime is exercised by tests/agent.rs.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Container, Event, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::broadcast;

use super::*;
use crate::runtime::cri::{
    self, ContainerConfig, ContainerEvent, ContainerStats, ContainerStatus, ExecOutput,
    ExecRequest, ExecSession, SandboxConfig, SandboxStatus,
};

#[derive(Default)]
struct FakeState {
    seq: u64,
    sandboxes: HashMap<String, SandboxConfig>,
    removed_sandboxes: Vec<String>,
    containers: HashMap<String, (ContainerConfig, ContainerStatus)>,
    /// Order in which containers were started (names).
    started: Vec<String>,
    stopped: Vec<(String, Duration)>,
}

struct FakeRuntime {
    state: Mutex<FakeState>,
    events: broadcast::Sender<ContainerEvent>,
}

impl FakeRuntime {
    fn new() -> Arc<FakeRuntime> {
        Arc::new(FakeRuntime {
            state: Mutex::new(FakeState::default()),
            events: broadcast::channel(64).0,
        })
    }

    /// Changes container `id` as `f` says and reports it as the runtime's
    /// event would; false if there is no such container.
    fn update(&self, id: &str, f: impl FnOnce(&mut ContainerStatus)) -> bool {
        let ev = {
            let mut st = self.state.lock();
            let Some((_, s)) = st.containers.get_mut(id) else {
                return false;
            };
            f(s);
            ContainerEvent {
                sandbox_id: s.sandbox_id.clone(),
                container_id: s.id.clone(),
                status: s.clone(),
            }
        };
        let _ = self.events.send(ev);
        true
    }

    fn exit(&self, id: &str, code: i32, reason: Option<&str>) {
        self.update(id, |s| {
            s.state = cri::ContainerState::Exited;
            s.exit_code = Some(code);
            s.finished_at = Some(SystemTime::now());
            s.reason = reason.map(str::to_string);
        });
    }

    /// The running container named `name` loses its shim: its state turns
    /// Unknown and nobody knows how it ended.
    fn lose(&self, name: &str) -> bool {
        let id = self
            .state
            .lock()
            .containers
            .values()
            .find(|(_, s)| s.name == name && s.state == cri::ContainerState::Running)
            .map(|(_, s)| s.id.clone());
        id.is_some_and(|id| {
            self.update(&id, |s| {
                s.state = cri::ContainerState::Unknown;
                s.pid = None;
            })
        })
    }
}

#[async_trait]
impl cri::ContainerRuntime for FakeRuntime {
    async fn run_sandbox(&self, config: &SandboxConfig) -> cri::Result<String> {
        let mut st = self.state.lock();
        st.seq += 1;
        let id = format!("sb{}", st.seq);
        st.sandboxes.insert(id.clone(), config.clone());
        Ok(id)
    }
    async fn stop_sandbox(&self, id: &String) -> cri::Result<()> {
        let ids: Vec<String> = self
            .state
            .lock()
            .containers
            .values()
            .filter(|(_, s)| s.sandbox_id == *id && s.state == cri::ContainerState::Running)
            .map(|(_, s)| s.id.clone())
            .collect();
        for c in &ids {
            self.exit(c, 137, None);
        }
        Ok(())
    }
    async fn remove_sandbox(&self, id: &String) -> cri::Result<()> {
        let mut st = self.state.lock();
        st.sandboxes.remove(id);
        st.containers.retain(|_, (_, s)| s.sandbox_id != *id);
        st.removed_sandboxes.push(id.clone());
        Ok(())
    }
    async fn list_sandboxes(&self) -> cri::Result<Vec<SandboxStatus>> {
        Ok(self
            .state
            .lock()
            .sandboxes
            .iter()
            .map(|(id, c)| SandboxStatus {
                id: id.clone(),
                ready: true,
                labels: c.labels.clone(),
                created_at: SystemTime::now(),
            })
            .collect())
    }
    async fn create_container(
        &self,
        sandbox: &String,
        config: &ContainerConfig,
    ) -> cri::Result<String> {
        let mut st = self.state.lock();
        st.seq += 1;
        let id = format!("c{}", st.seq);
        let status = ContainerStatus {
            id: id.clone(),
            sandbox_id: sandbox.clone(),
            name: config.name.clone(),
            attempt: config.attempt,
            state: cri::ContainerState::Created,
            created_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            message: None,
            image_id: config.image.image_id.clone(),
            log_path: config.log_path.clone(),
            labels: config.labels.clone(),
            pid: None,
        };
        st.containers.insert(id.clone(), (config.clone(), status));
        Ok(id)
    }
    async fn start_container(&self, id: &String) -> cri::Result<()> {
        let exit = {
            let mut st = self.state.lock();
            let Some((cfg, s)) = st.containers.get_mut(id) else {
                return Err(cri::RuntimeError::NotFound(id.clone()));
            };
            s.state = cri::ContainerState::Running;
            s.started_at = Some(SystemTime::now());
            if cfg.args.first().map(String::as_str) == Some("nosuchbinary") {
                s.state = cri::ContainerState::Created;
                return Err(cri::RuntimeError::StartFailed(
                    "exec: \"nosuchbinary\": executable file not found in $PATH".into(),
                ));
            }
            let name = cfg.name.clone();
            let exit = match cfg.args.as_slice() {
                [e, code, ..] if e == "exit" => code.parse::<i32>().ok(),
                [e, ..] if e == "oom" => Some(-1),
                _ => None,
            };
            st.started.push(name);
            exit
        };
        match exit {
            Some(-1) => self.exit(id, 137, Some("OOMKilled")),
            Some(code) => self.exit(id, code, None),
            None => {}
        }
        Ok(())
    }
    async fn stop_container(&self, id: &String, timeout: Duration) -> cri::Result<()> {
        self.state.lock().stopped.push((id.clone(), timeout));
        self.exit(id, 143, None);
        Ok(())
    }
    async fn remove_container(&self, id: &String) -> cri::Result<()> {
        self.state.lock().containers.remove(id);
        Ok(())
    }
    async fn container_status(&self, id: &String) -> cri::Result<ContainerStatus> {
        self.state
            .lock()
            .containers
            .get(id)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| cri::RuntimeError::NotFound(id.clone()))
    }
    async fn list_containers(&self, sandbox: &String) -> cri::Result<Vec<ContainerStatus>> {
        Ok(self
            .state
            .lock()
            .containers
            .values()
            .filter(|(_, s)| s.sandbox_id == *sandbox)
            .map(|(_, s)| s.clone())
            .collect())
    }
    async fn container_stats(&self, _id: &String) -> cri::Result<ContainerStats> {
        Ok(ContainerStats::default())
    }
    async fn exec(&self, _id: &String, _r: ExecRequest) -> cri::Result<ExecSession> {
        Err(cri::RuntimeError::Other("not in the double".into()))
    }
    async fn exec_sync(
        &self,
        _id: &String,
        _cmd: &[String],
        _t: Duration,
    ) -> cri::Result<ExecOutput> {
        Ok(ExecOutput::default())
    }
    async fn attach(&self, _id: &String, _stdin: bool, _tty: bool) -> cri::Result<ExecSession> {
        Err(cri::RuntimeError::Other("not in the double".into()))
    }
    fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.events.subscribe()
    }
}

struct FakeImages;

#[async_trait]
impl ImageService for FakeImages {
    async fn ensure(
        &self,
        reference: &str,
        policy: &str,
        _s: &[Secret],
    ) -> Result<ResolvedImage, ImagePullError> {
        if reference.contains("missing") {
            if policy == "Never" {
                return Err(ImagePullError::NeverPull(reference.into()));
            }
            return Err(ImagePullError::Pull(format!(
                "rpc error: manifest unknown: {reference}"
            )));
        }
        Ok(ResolvedImage {
            spec: cri::ImageSpec {
                reference: reference.into(),
                image_id: format!("{reference}@sha256:00"),
                layers: vec![],
                stop_signal: None,
            },
            entrypoint: vec![],
            cmd: vec!["sleep".into(), "3600".into()],
            env: vec!["PATH=/bin".into(), "FROM_IMAGE=1".into()],
            size: 1234,
            pulled: true,
            ..Default::default()
        })
    }
    fn present(&self, _reference: &str) -> bool {
        false
    }
}

#[derive(Default)]
struct FakeNetwork {
    torn_down: Mutex<Vec<String>>,
}

#[async_trait]
impl NetworkService for FakeNetwork {
    async fn setup(&self, _uid: &str, _ns: &str, _name: &str) -> Result<PodNetworkInfo, String> {
        Ok(PodNetworkInfo {
            netns_path: PathBuf::from("/run/netns/fake"),
            ip: IpAddr::from([10, 42, 0, 9]),
        })
    }
    async fn teardown(&self, uid: &str) -> Result<(), String> {
        self.torn_down.lock().push(uid.to_string());
        Ok(())
    }
}

struct NoVolumes;

#[async_trait]
impl VolumeService for NoVolumes {
    async fn mount_pod_volumes(&self, pod: &Pod) -> Result<HashMap<String, PathBuf>, String> {
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if let Some(cm) = &v.config_map {
                return Err(format!(
                    "MountVolume.SetUp failed for volume \"{}\" : configmap \"{}\" not found",
                    v.name, cm.name
                ));
            }
        }
        Ok(HashMap::new())
    }
    async fn unmount_pod_volumes(&self, _uid: &str) {}
    fn container_mounts(
        &self,
        _p: &Pod,
        _c: &Container,
        _v: &HashMap<String, PathBuf>,
        _e: &[(String, String)],
    ) -> Result<Vec<cri::Mount>, String> {
        Ok(vec![])
    }
}

struct Harness {
    cp: crate::server::ControlPlane,
    client: kube::Client,
    runtime: Arc<FakeRuntime>,
    network: Arc<FakeNetwork>,
    _agent: NodeAgent,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn harness() -> Harness {
    let dir = std::env::temp_dir().join(format!("rk3s-agent-{}", uuid::Uuid::new_v4()));
    let cfg = crate::config::ServerConfig::new(dir.clone(), "n1");
    let cp = crate::server::ControlPlane::open(&cfg).expect("open");
    cp.bootstrap(&cfg).await.expect("bootstrap");
    let client = cp.client();
    let runtime = FakeRuntime::new();
    let network = Arc::new(FakeNetwork::default());
    let mut config = AgentConfig::new("n1", dir.join("agent"));
    config.log_root = dir.join("logs");
    config.node_ip = Some(IpAddr::from([100, 64, 0, 2]));
    // This machine's disk is past upstream's thresholds: no evictions here.
    config.eviction_hard = super::eviction::Thresholds::default();
    let services = Services {
        runtime: runtime.clone(),
        images: Arc::new(FakeImages),
        network: network.clone(),
        volumes: Arc::new(NoVolumes),
    };
    let agent = NodeAgent::start(client.clone(), config, services);
    Harness {
        cp,
        client,
        runtime,
        network,
        _agent: agent,
        dir,
    }
}

async fn create_pod(client: &kube::Client, v: serde_json::Value) -> Pod {
    let mut v = v;
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Pod");
    v["spec"]["nodeName"] = json!("n1");
    let pod: Pod = serde_json::from_value(v).expect("pod");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

async fn wait_pod(client: &kube::Client, name: &str, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let p = api.get(name).await.expect("get pod");
        if f(&p) {
            return p;
        }
        if tokio::time::Instant::now() > end {
            panic!(
                "timed out waiting for {what}: {}",
                serde_json::to_string_pretty(&p.status).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn cond(p: &Pod, t: &str) -> Option<String> {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == t))
        .map(|c| c.status.clone())
}

fn cstatus<'a>(p: &'a Pod, name: &str) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    let s = p.status.as_ref()?;
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
}

fn waiting_reason(p: &Pod, name: &str) -> Option<String> {
    cstatus(p, name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

fn terminated_reason(p: &Pod, name: &str) -> Option<String> {
    cstatus(p, name)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?
        .reason
        .clone()
}

async fn events_of(client: &kube::Client, pod: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

async fn wait_event(client: &kube::Client, pod: &str, reason: &str, contains: &str) -> String {
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let evs = events_of(client, pod).await;
        if let Some((_, m)) = evs
            .iter()
            .find(|(r, m)| r == reason && m.contains(contains))
        {
            return m.clone();
        }
        if tokio::time::Instant::now() > end {
            panic!("no {reason} event containing {contains:?} for {pod}: {evs:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn registers_node_with_lease_and_runs_a_pod() {
    let h = harness().await;
    let nodes: Api<Node> = Api::all(h.client.clone());
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    let node = loop {
        if let Ok(Some(n)) = nodes.get_opt("n1").await
            && n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some()
        {
            break n;
        }
        assert!(tokio::time::Instant::now() < end, "node never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let spec = node.spec.clone().expect("spec");
    assert_eq!(spec.pod_cidr.as_deref(), Some("10.42.0.0/24"));
    let status = node.status.clone().expect("status");
    let info = status.node_info.expect("nodeInfo");
    assert!(info.container_runtime_version.starts_with("rk3s://"));
    assert_eq!(info.kubelet_version, registration::KUBELET_VERSION);
    let ready = status
        .conditions
        .expect("conds")
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "True");
    assert_eq!(status.capacity.expect("cap")["pods"].0, "110");

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(h.client.clone(), lease::NODE_LEASE_NAMESPACE);
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while leases.get_opt("n1").await.ok().flatten().is_none() {
        assert!(tokio::time::Instant::now() < end, "no lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    create_pod(
        &h.client,
        json!({"metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "rk3s-test/web:1",
            "env": [{"name": "A", "value": "x-$(FROM_IMAGE)"}]}]}}),
    )
    .await;
    let p = wait_pod(&h.client, "web", "Running and Ready", |p| {
        phase(p) == "Running" && cond(p, "Ready").as_deref() == Some("True")
    })
    .await;
    let st = p.status.as_ref().expect("status");
    assert_eq!(st.pod_ip.as_deref(), Some("10.42.0.9"));
    assert_eq!(st.host_ip.as_deref(), Some("100.64.0.2"));
    for c in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "PodScheduled",
    ] {
        if c != "PodScheduled" {
            assert_eq!(cond(&p, c).as_deref(), Some("True"), "{c}");
        }
    }
    let cs = cstatus(&p, "c").expect("container status");
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|i| i.starts_with("rk3s://"))
    );
    assert_eq!(cs.image_id, "rk3s-test/web:1@sha256:00");
    for (reason, msg) in [
        ("Pulling", "Pulling image \"rk3s-test/web:1\""),
        ("Pulled", "Successfully pulled image \"rk3s-test/web:1\" in"),
        ("Created", "Created container: c"),
        ("Started", "Started container c"),
    ] {
        wait_event(&h.client, "web", reason, msg).await;
    }
    // What the runtime was asked to run.
    let (cfg, sb) = {
        let st = h.runtime.state.lock();
        let (cfg, s) = st.containers.values().next().expect("container").clone();
        (cfg, st.sandboxes[&s.sandbox_id].clone())
    };
    assert_eq!(cfg.args, ["sleep", "3600"]);
    let env: BTreeMap<_, _> = cfg.env.iter().cloned().collect();
    assert_eq!(env["A"], "x-$(FROM_IMAGE)", "image env is not a $() source");
    assert_eq!(env["HOSTNAME"], "web");
    assert_eq!(env["FROM_IMAGE"], "1");
    assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
    assert_eq!(sb.hostname, "web");
    assert!(sb.cgroup_parent.starts_with("kubepods/besteffort/pod"));
    assert_eq!(sb.labels[podworker::LABEL_POD_NAME], "web");

    // Graceful deletion: SIGTERM with the grace period, then the agent
    // removes the pod from the API.
    Api::<Pod>::namespaced(h.client.clone(), "default")
        .delete("web", &DeleteParams::default().grace_period(7))
        .await
        .expect("delete");
    let api: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while api.get_opt("web").await.expect("get").is_some() {
        assert!(tokio::time::Instant::now() < end, "pod never went away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let st = h.runtime.state.lock();
        assert_eq!(st.stopped.len(), 1);
        assert_eq!(st.stopped[0].1, Duration::from_secs(7));
        assert_eq!(st.removed_sandboxes.len(), 1);
    }
    assert_eq!(h.network.torn_down.lock().len(), 1);
    wait_event(&h.client, "web", "Killing", "Stopping container c").await;
    h.cp.store.close().await;
}

#[tokio::test]
async fn init_containers_run_in_order_then_sidecars_and_apps() {
    let h = harness().await;
    create_pod(
        &h.client,
        json!({"metadata": {"name": "ordered"},
        "spec": {"initContainers": [
            {"name": "init1", "image": "i", "command": ["exit", "0"]},
            {"name": "side", "image": "i", "restartPolicy": "Always"},
            {"name": "init2", "image": "i", "command": ["exit", "0"]}],
         "containers": [{"name": "app", "image": "i"}]}}),
    )
    .await;
    let p = wait_pod(&h.client, "ordered", "Running", |p| {
        phase(p) == "Running" && cond(p, "Ready").as_deref() == Some("True")
    })
    .await;
    assert_eq!(terminated_reason(&p, "init1").as_deref(), Some("Completed"));
    assert_eq!(terminated_reason(&p, "init2").as_deref(), Some("Completed"));
    assert!(cstatus(&p, "side").is_some_and(|s| s.started == Some(true) && s.ready));
    assert_eq!(
        h.runtime.state.lock().started,
        ["init1", "side", "init2", "app"]
    );
    h.cp.store.close().await;
}

#[tokio::test]
async fn failing_init_container_with_never_fails_the_pod() {
    let h = harness().await;
    create_pod(
        &h.client,
        json!({"metadata": {"name": "badinit"},
        "spec": {"restartPolicy": "Never",
         "initContainers": [{"name": "init", "image": "i", "command": ["exit", "3"]}],
         "containers": [{"name": "app", "image": "i"}]}}),
    )
    .await;
    let p = wait_pod(&h.client, "badinit", "Failed", |p| phase(p) == "Failed").await;
    assert_eq!(terminated_reason(&p, "init").as_deref(), Some("Error"));
    assert_eq!(
        waiting_reason(&p, "app").as_deref(),
        Some("PodInitializing")
    );
    assert!(!h.runtime.state.lock().started.contains(&"app".to_string()));
    h.cp.store.close().await;
}

/// A container whose end nobody saw (its shim died) fails the pod as
/// the kubelet reports it, exit 137 ContainerStatusUnknown; it never
/// passes for a success.
#[tokio::test]
async fn a_container_lost_with_its_shim_is_not_a_success() {
    let h = harness().await;
    create_pod(
        &h.client,
        json!({"metadata": {"name": "lost"},
        "spec": {"restartPolicy": "Never",
         "containers": [{"name": "app", "image": "i"}]}}),
    )
    .await;
    wait_pod(&h.client, "lost", "Running", |p| phase(p) == "Running").await;
    assert!(h.runtime.lose("app"));
    let p = wait_pod(&h.client, "lost", "Failed", |p| phase(p) == "Failed").await;
    let t = cstatus(&p, "app")
        .and_then(|c| c.state.as_ref()?.terminated.clone())
        .expect("terminated");
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (137, Some("ContainerStatusUnknown"))
    );
    h.cp.store.close().await;
}

#[tokio::test]
async fn restart_policies_and_crash_loop_backoff() {
    let h = harness().await;
    create_pod(&h.client, json!({"metadata": {"name": "ok"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i", "command": ["exit", "0"]}]}}))
    .await;
    create_pod(&h.client, json!({"metadata": {"name": "bad"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i", "command": ["exit", "2"]}]}}))
    .await;
    create_pod(&h.client, json!({"metadata": {"name": "oom"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i", "command": ["oom"]}]}}))
    .await;
    create_pod(
        &h.client,
        json!({"metadata": {"name": "loop"},
        "spec": {"containers": [{"name": "c", "image": "i", "command": ["exit", "1"]}]}}),
    )
    .await;
    let p = wait_pod(&h.client, "ok", "Succeeded", |p| phase(p) == "Succeeded").await;
    assert_eq!(terminated_reason(&p, "c").as_deref(), Some("Completed"));
    assert_eq!(
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.reason.clone())
            .as_deref(),
        Some("PodCompleted")
    );
    let p = wait_pod(&h.client, "bad", "Failed", |p| phase(p) == "Failed").await;
    assert_eq!(terminated_reason(&p, "c").as_deref(), Some("Error"));
    let p = wait_pod(&h.client, "oom", "Failed", |p| phase(p) == "Failed").await;
    assert_eq!(terminated_reason(&p, "c").as_deref(), Some("OOMKilled"));
    // Always: restarted at once, then held back 10 s (CrashLoopBackOff).
    let p = wait_pod(&h.client, "loop", "CrashLoopBackOff", |p| {
        waiting_reason(p, "c").as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    let cs = cstatus(&p, "c").expect("status");
    assert_eq!(cs.restart_count, 1);
    let last = cs
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .expect("lastState");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    let msg = cs
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .unwrap_or_default();
    assert!(
        msg.starts_with("back-off 10s restarting failed container=c pod=loop_default("),
        "{msg}"
    );
    assert_eq!(phase(&p), "Running");
    wait_event(
        &h.client,
        "loop",
        "BackOff",
        "Back-off restarting failed container c in pod loop_default",
    )
    .await;
    // Still in back-off a few seconds later: no third start yet.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let starts = h.runtime.state.lock().started.len();
    assert!(starts <= 5, "restarted during back-off: {starts} starts");
    h.cp.store.close().await;
}

#[tokio::test]
async fn bad_input_ends_in_upstream_reasons() {
    let h = harness().await;
    create_pod(
        &h.client,
        json!({"metadata": {"name": "noimage"},
        "spec": {"containers": [{"name": "c", "image": "missing/image:1"}]}}),
    )
    .await;
    create_pod(&h.client, json!({"metadata": {"name": "never"},
        "spec": {"containers": [{"name": "c", "image": "missing/image:1", "imagePullPolicy": "Never"}]}}))
    .await;
    create_pod(&h.client, json!({"metadata": {"name": "nocm"},
        "spec": {"containers": [{"name": "c", "image": "i",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}]}}))
    .await;
    create_pod(
        &h.client,
        json!({"metadata": {"name": "novol"},
        "spec": {"containers": [{"name": "c", "image": "i"}],
                 "volumes": [{"name": "v", "configMap": {"name": "absent"}}]}}),
    )
    .await;
    create_pod(&h.client, json!({"metadata": {"name": "nocmd"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i", "command": ["nosuchbinary"]}]}}))
    .await;
    wait_pod(&h.client, "noimage", "ErrImagePull", |p| {
        matches!(
            waiting_reason(p, "c").as_deref(),
            Some("ErrImagePull") | Some("ImagePullBackOff")
        )
    })
    .await;
    wait_event(
        &h.client,
        "noimage",
        "Failed",
        "Failed to pull image \"missing/image:1\": rpc error: manifest unknown",
    )
    .await;
    let p = wait_pod(&h.client, "noimage", "ImagePullBackOff", |p| {
        waiting_reason(p, "c").as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(phase(&p), "Pending");
    wait_event(
        &h.client,
        "noimage",
        "BackOff",
        "Back-off pulling image \"missing/image:1\"",
    )
    .await;
    wait_pod(&h.client, "never", "ErrImageNeverPull", |p| {
        waiting_reason(p, "c").as_deref() == Some("ErrImageNeverPull")
    })
    .await;
    let p = wait_pod(&h.client, "nocm", "CreateContainerConfigError", |p| {
        waiting_reason(p, "c").as_deref() == Some("CreateContainerConfigError")
    })
    .await;
    let msg = cstatus(&p, "c")
        .and_then(|s| s.state.clone())
        .and_then(|s| s.waiting)
        .and_then(|w| w.message);
    assert_eq!(msg.as_deref(), Some("configmap \"absent\" not found"));
    let p = wait_pod(&h.client, "novol", "ContainerCreating", |p| {
        waiting_reason(p, "c").as_deref() == Some("ContainerCreating")
    })
    .await;
    assert_eq!(phase(&p), "Pending");
    wait_event(
        &h.client,
        "novol",
        "FailedMount",
        "MountVolume.SetUp failed for volume \"v\" : configmap \"absent\" not found",
    )
    .await;
    let p = wait_pod(&h.client, "nocmd", "Failed", |p| phase(p) == "Failed").await;
    let t = cstatus(&p, "c")
        .and_then(|s| s.state.clone())
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (128, Some("StartError"))
    );
    assert!(
        t.message
            .unwrap_or_default()
            .contains("executable file not found")
    );
    wait_event(
        &h.client,
        "nocmd",
        "Failed",
        "Error: exec: \"nosuchbinary\": executable file not found",
    )
    .await;
    h.cp.store.close().await;
}

#[tokio::test]
async fn restart_readopts_running_sandboxes() {
    let h = harness().await;
    create_pod(
        &h.client,
        json!({"metadata": {"name": "keep"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .await;
    wait_pod(&h.client, "keep", "Running", |p| phase(p) == "Running").await;
    let before = h.runtime.state.lock().started.len();
    // A second agent over the same runtime (as after a restart) adopts the
    // sandbox instead of making another, and starts nothing new.
    let mut config = AgentConfig::new("n1", h.dir.join("agent"));
    config.log_root = h.dir.join("logs");
    config.eviction_hard = super::eviction::Thresholds::default();
    let services = Services {
        runtime: h.runtime.clone(),
        images: Arc::new(FakeImages),
        network: h.network.clone(),
        volumes: Arc::new(NoVolumes),
    };
    let second = NodeAgent::start(h.client.clone(), config, services);
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let st = h.runtime.state.lock();
        assert_eq!(st.sandboxes.len(), 1, "no second sandbox");
        assert_eq!(st.started.len(), before, "nothing restarted");
    }
    let uid = Api::<Pod>::namespaced(h.client.clone(), "default")
        .get("keep")
        .await
        .expect("pod")
        .metadata
        .uid
        .expect("uid");
    assert!(second.workers.sandbox_of(&uid).is_some());
    h.cp.store.close().await;
}
