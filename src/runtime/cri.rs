//! The runtime interface the node agent drives, in CRI's shape: pod
//! sandboxes holding containers. Kubernetes policy (what to run, restarts,
//! probes, status) lives in `crate::node`; mechanism (namespaces, mounts,
//! cgroups, processes) lives behind this trait.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

pub type SandboxId = String;
pub type ContainerId = String;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0} not found")]
    NotFound(String),
    /// The container's process could not start (bad command, missing
    /// binary, ...): the message is what kubectl describe shows.
    #[error("{0}")]
    StartFailed(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What a pod sandbox is made of. The network namespace is made by
/// `crate::net` before the sandbox, so the runtime only joins it.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    pub pod_uid: String,
    pub pod_name: String,
    pub pod_namespace: String,
    /// The UTS host name (pod name, or spec.hostname).
    pub hostname: String,
    /// A bind-mounted network namespace (`/run/rk3s/netns/...`), or `None`
    /// for hostNetwork pods.
    pub netns_path: Option<PathBuf>,
    /// Share the host's IPC namespace (hostIPC).
    pub host_ipc: bool,
    /// Share the host's PID namespace (hostPID).
    pub host_pid: bool,
    /// One PID namespace for all containers (shareProcessNamespace).
    pub share_process_namespace: bool,
    /// The pod's cgroup, relative to the cgroup root, e.g.
    /// `kubepods/burstable/pod<uid>`; containers get a child each.
    pub cgroup_parent: String,
    /// The pod-level limits written to `cgroup_parent`.
    pub resources: LinuxResources,
    /// The pod's log directory: `/var/log/pods/<ns>_<name>_<uid>`.
    pub log_directory: PathBuf,
    /// Files the agent wrote that every container mounts: /etc/hosts,
    /// /etc/resolv.conf, /etc/hostname.
    pub etc_hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    pub hostname_file: Option<PathBuf>,
    /// Namespaced sysctls (securityContext.sysctls).
    pub sysctls: BTreeMap<String, String>,
    /// Labels the runtime keeps and reports back (pod name, namespace,
    /// uid), so the agent can re-adopt sandboxes after a restart.
    pub labels: BTreeMap<String, String>,
}

/// cgroup limits, in the OCI spec's units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinuxResources {
    /// cpu.shares (v1) / converted to cpu.weight on v2.
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// Bytes; `None` is unlimited.
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
    /// OOM score adjustment by QoS class (as the kubelet sets it).
    pub oom_score_adj: Option<i32>,
}

/// A mount into a container, already resolved to a host path by the agent
/// (volumes, subPath, service account files, termination log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: PathBuf,
    pub readonly: bool,
    /// `None`, `HostToContainer` (rslave) or `Bidirectional` (rshared).
    pub propagation: Option<String>,
}

/// The image a container runs, as the image store resolved it.
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    /// The reference as the pod spec gave it.
    pub reference: String,
    /// `repo@sha256:...`: what containerStatuses[].imageID reports.
    pub image_id: String,
    /// The unpacked layers, lowest first (overlayfs lowerdirs).
    pub layers: Vec<PathBuf>,
    /// The image config's `StopSignal` as written there (`SIGINT`, `INT`,
    /// `2`): what stopping the container sends instead of SIGTERM.
    pub stop_signal: Option<String>,
}

/// A signal as image configs name it (`SIGUSR1`, `USR1`, `10`,
/// `SIGRTMIN+3`, any case) -> its number; `None` for an unknown one.
pub fn parse_signal(name: &str) -> Option<i32> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return (1..=libc::SIGRTMAX()).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |base: i32, offset: &str, sign: i32| {
        let n = base + sign * offset.parse::<i32>().ok()?;
        (libc::SIGRTMIN()..=libc::SIGRTMAX())
            .contains(&n)
            .then_some(n)
    };
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        return match rest.strip_prefix('+') {
            Some(offset) => realtime(libc::SIGRTMIN(), offset, 1),
            None if rest.is_empty() => Some(libc::SIGRTMIN()),
            None => None,
        };
    }
    if let Some(rest) = bare.strip_prefix("RTMAX") {
        return match rest.strip_prefix('-') {
            Some(offset) => realtime(libc::SIGRTMAX(), offset, -1),
            None if rest.is_empty() => Some(libc::SIGRTMAX()),
            None => None,
        };
    }
    format!("SIG{bare}")
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Seccomp {
    #[default]
    Unconfined,
    RuntimeDefault,
    /// A profile file (localhost/<path> under the agent's seccomp dir).
    Localhost(PathBuf),
}

#[derive(Clone, Debug, Default)]
pub struct SecurityConfig {
    pub privileged: bool,
    /// Capability names without CAP_ (as Kubernetes writes them).
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub readonly_rootfs: bool,
    /// allowPrivilegeEscalation: false sets no_new_privs.
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
    /// runAsUser / runAsGroup / supplementalGroups / fsGroup; `None` takes
    /// the image's user (resolved against the rootfs's /etc/passwd).
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    /// runAsNonRoot: the runtime refuses to start a uid 0 process.
    pub run_as_non_root: bool,
    /// procMount Unmasked lifts the masked /proc paths.
    pub unmasked_proc: bool,
}

/// One container to create in a sandbox. The agent has already combined
/// the image's entrypoint/cmd with command/args and resolved the env.
#[derive(Clone, Debug, Default)]
pub struct ContainerConfig {
    pub name: String,
    /// Restart count: the log file is `<log_directory>/<name>/<attempt>.log`.
    pub attempt: u32,
    pub image: ImageSpec,
    /// argv; `args[0]` is looked up in the image's PATH if relative.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// The image's `User` (`uid[:gid]` or a name) when securityContext
    /// does not say.
    pub image_user: Option<String>,
    pub mounts: Vec<Mount>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub security: SecurityConfig,
    pub resources: LinuxResources,
    /// Where the CRI-format log of this attempt goes.
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Clone, Debug)]
pub struct ContainerStatus {
    pub id: ContainerId,
    pub sandbox_id: SandboxId,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub exit_code: Option<i32>,
    /// `OOMKilled` when the kernel killed it for memory, else `None` (the
    /// agent says Completed or Error from the exit code).
    pub reason: Option<String>,
    pub message: Option<String>,
    pub image_id: String,
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// The process id on the host, while running (for probes in its
    /// namespaces and stats).
    pub pid: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct SandboxStatus {
    pub id: SandboxId,
    pub ready: bool,
    pub labels: BTreeMap<String, String>,
    pub created_at: SystemTime,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// Cumulative CPU time.
    pub cpu_usage_nanos: u64,
    /// Memory usage minus inactive file, as the kubelet reports.
    pub memory_working_set_bytes: u64,
    pub memory_usage_bytes: u64,
    pub timestamp_unix_nanos: u128,
}

/// A container exited (or was OOM-killed): pushed so the agent reacts at
/// once instead of polling.
#[derive(Clone, Debug)]
pub struct ContainerEvent {
    pub sandbox_id: SandboxId,
    pub container_id: ContainerId,
    pub status: ContainerStatus,
}

#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

pub type BoxedReader = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxedWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A running exec or attach: its streams (those requested; with a TTY
/// stderr is merged into stdout), a resize channel for TTYs, and the exit
/// code when the process ends (attach: when the container ends).
pub struct ExecSession {
    pub stdin: Option<BoxedWriter>,
    pub stdout: Option<BoxedReader>,
    pub stderr: Option<BoxedReader>,
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    pub exit: oneshot::Receiver<i32>,
}

/// The captured result of a short command (exec probes, exec hooks).
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// CRI's RuntimeService, in process.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Make the sandbox (namespaces, pod cgroup, the shim that owns it).
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxId>;
    /// Kill every container of the sandbox (no grace: the agent stopped
    /// them gracefully first).
    async fn stop_sandbox(&self, id: &SandboxId) -> Result<()>;
    /// Remove the sandbox and everything it holds (mounts, cgroups, shim).
    async fn remove_sandbox(&self, id: &SandboxId) -> Result<()>;
    /// Every sandbox this node has, including ones from before a restart.
    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>>;

    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig,
    ) -> Result<ContainerId>;
    async fn start_container(&self, id: &ContainerId) -> Result<()>;
    /// SIGTERM (or the image's StopSignal), then SIGKILL after `timeout`.
    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()>;
    async fn remove_container(&self, id: &ContainerId) -> Result<()>;
    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus>;
    async fn list_containers(&self, sandbox: &SandboxId) -> Result<Vec<ContainerStatus>>;
    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats>;

    /// An interactive process in the container's namespaces.
    async fn exec(&self, id: &ContainerId, request: ExecRequest) -> Result<ExecSession>;
    /// Run to completion with a timeout, capturing output (probes, hooks).
    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput>;
    /// The container's own stdio (its stdin if it was created with one).
    async fn attach(&self, id: &ContainerId, stdin: bool, tty: bool) -> Result<ExecSession>;

    /// Exits and OOM kills as they happen.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ContainerEvent>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stop_signals_as_images_write_them() {
        assert_eq!(parse_signal("SIGINT"), Some(libc::SIGINT));
        assert_eq!(parse_signal("usr1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(parse_signal("RTMAX-1"), Some(libc::SIGRTMAX() - 1));
        for bad in ["", "SIGNOPE", "0", "999", "RTMIN+99", "RTMINx"] {
            assert_eq!(parse_signal(bad), None, "{bad}");
        }
    }
}
