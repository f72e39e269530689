//! The line protocol between the agent ([`crate::runtime::local`]) and a
//! shim: one JSON request per line on a fresh connection to the shim's unix
//! socket, one JSON response line back, file descriptors (stdio pipes, a
//! pty) riding along with the response as `SCM_RIGHTS`. Requests that wait
//! (stop, exec, attach, events) keep the connection and get more lines.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::runtime::cri::{LinuxResources, SandboxConfig};

/// The sandbox as the shim reads it from `sandbox.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub id: String,
    pub pod_uid: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub hostname: String,
    pub netns_path: Option<PathBuf>,
    pub host_ipc: bool,
    pub host_pid: bool,
    pub share_process_namespace: bool,
    pub cgroup_parent: String,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
    pub oom_score_adj: Option<i32>,
    pub log_directory: PathBuf,
    pub etc_hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    pub hostname_file: Option<PathBuf>,
    pub sysctls: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Unix nanoseconds.
    pub created_at: u128,
    /// CRI log rotation: bytes per file and files kept per container.
    pub log_max_size: u64,
    pub log_max_files: usize,
}

impl SandboxSpec {
    pub fn from_config(id: &str, c: &SandboxConfig, created_at: u128) -> Self {
        SandboxSpec {
            id: id.to_string(),
            pod_uid: c.pod_uid.clone(),
            pod_name: c.pod_name.clone(),
            pod_namespace: c.pod_namespace.clone(),
            hostname: c.hostname.clone(),
            netns_path: c.netns_path.clone(),
            host_ipc: c.host_ipc,
            host_pid: c.host_pid,
            share_process_namespace: c.share_process_namespace,
            cgroup_parent: c.cgroup_parent.clone(),
            cpu_shares: c.resources.cpu_shares,
            cpu_quota: c.resources.cpu_quota,
            cpu_period: c.resources.cpu_period,
            memory_limit: c.resources.memory_limit,
            pids_limit: c.resources.pids_limit,
            oom_score_adj: c.resources.oom_score_adj,
            log_directory: c.log_directory.clone(),
            etc_hosts: c.etc_hosts.clone(),
            resolv_conf: c.resolv_conf.clone(),
            hostname_file: c.hostname_file.clone(),
            sysctls: c.sysctls.clone(),
            labels: c.labels.clone(),
            created_at,
            log_max_size: crate::runtime::shim::logs::DEFAULT_MAX_SIZE,
            log_max_files: crate::runtime::shim::logs::DEFAULT_MAX_FILES,
        }
    }

    pub fn to_config(&self) -> SandboxConfig {
        SandboxConfig {
            pod_uid: self.pod_uid.clone(),
            pod_name: self.pod_name.clone(),
            pod_namespace: self.pod_namespace.clone(),
            hostname: self.hostname.clone(),
            netns_path: self.netns_path.clone(),
            host_ipc: self.host_ipc,
            host_pid: self.host_pid,
            share_process_namespace: self.share_process_namespace,
            cgroup_parent: self.cgroup_parent.clone(),
            resources: self.resources(),
            log_directory: self.log_directory.clone(),
            etc_hosts: self.etc_hosts.clone(),
            resolv_conf: self.resolv_conf.clone(),
            hostname_file: self.hostname_file.clone(),
            sysctls: self.sysctls.clone(),
            labels: self.labels.clone(),
        }
    }

    pub fn resources(&self) -> LinuxResources {
        LinuxResources {
            cpu_shares: self.cpu_shares,
            cpu_quota: self.cpu_quota,
            cpu_period: self.cpu_period,
            memory_limit: self.memory_limit,
            pids_limit: self.pids_limit,
            oom_score_adj: self.oom_score_adj,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Created,
    Running,
    Exited,
}

/// One container as the shim keeps it (`containers/<id>/record.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub state: State,
    /// Unix nanoseconds.
    pub created_at: u128,
    pub started_at: Option<u128>,
    pub finished_at: Option<u128>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub image_id: String,
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub pid: Option<u32>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// The container's cgroup, relative to the hierarchy roots.
    pub cgroup_path: String,
    /// The image's StopSignal, sent by a graceful stop that names none.
    #[serde(default)]
    pub stop_signal: Option<i32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and the sandbox's namespace holder.
    Ping,
    List,
    Start {
        id: String,
    },
    /// Signal, then SIGKILL after `timeout_ms`; answers once it exited.
    Stop {
        id: String,
        timeout_ms: u64,
        signal: Option<i32>,
    },
    Remove {
        id: String,
    },
    /// Answers with the requested stdio fds, then `exit_code` when the
    /// process ends (killed after `timeout_ms` if given).
    Exec {
        id: String,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        timeout_ms: Option<u64>,
    },
    /// The container's own stdio; `exit_code` when the container ends.
    Attach {
        id: String,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// A line per container exit, for as long as the connection lives.
    Events,
    /// SIGKILL every container.
    StopSandbox,
    /// Kill and remove everything, then exit.
    Shutdown,
}

/// Which fds ride with a response, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FdKind {
    Stdin,
    Stdout,
    Stderr,
    /// A pty master: output, input and resizes all go through it.
    Pty,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error is a failed container start (the message is runc's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start_failed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_found: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fds: Vec<FdKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

impl Response {
    pub fn error(msg: impl Into<String>) -> Self {
        Response {
            error: Some(msg.into()),
            ..Default::default()
        }
    }
}

pub const SANDBOX_FILE: &str = "sandbox.json";
pub const SOCKET_FILE: &str = "shim.sock";
pub const PID_FILE: &str = "shim.pid";
pub const RECORD_FILE: &str = "record.json";
pub const CONTAINERS_DIR: &str = "containers";
