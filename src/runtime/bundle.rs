//! OCI runtime bundles: the `config.json` a container runs from, made from
//! the CRI-shaped [`SandboxConfig`] and [`ContainerConfig`].
//!
//! Defaults follow what containerd and runc give a Kubernetes container:
//! the default mounts, masked and read-only `/proc` and `/sys` paths, the
//! default capability set, `RLIMIT_NOFILE` 1048576, and for seccomp
//! `RuntimeDefault` a default-allow profile that returns `EPERM` for the
//! syscalls containerd's default profile withholds from containers without
//! extra capabilities (module loading, kexec, reboot, swap, clock setting,
//! keyrings, bpf, perf, ptrace of other processes, new mount API,
//! namespace creation, ...). It is a deny list rather than containerd's
//! allow list so that new harmless syscalls keep working.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder,
    LinuxSyscallBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, Process,
    RootBuilder, Spec, UserBuilder,
};

use crate::runtime::cri::{ContainerConfig, LinuxResources, SandboxConfig, Seccomp};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The pod asks for something that cannot be run (runAsNonRoot with a
    /// root user, an unknown capability, a bad seccomp profile...).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T, E = BundleError> = std::result::Result<T, E>;

/// The PATH a container gets when neither the image nor the pod sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a container gets one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceMode {
    /// The host's (hostNetwork, hostIPC, hostPID).
    Host,
    /// A new one of its own.
    New,
    /// The sandbox's, joined by path.
    Path(PathBuf),
}

/// Where the sandbox keeps the namespaces its containers share.
#[derive(Clone, Debug)]
pub struct SandboxNamespaces {
    pub network: NamespaceMode,
    pub uts: NamespaceMode,
    pub ipc: NamespaceMode,
    pub pid: NamespaceMode,
    /// The sandbox's /dev/shm (a tmpfs the shim made), `None` for hostIPC.
    pub shm: Option<PathBuf>,
}

impl SandboxNamespaces {
    /// The namespaces of a sandbox whose holder process is `holder_pid`
    /// (`/proc/<pid>/ns/...`), by the sandbox's host* flags.
    pub fn for_sandbox(
        config: &SandboxConfig,
        holder_pid: Option<u32>,
        shm: Option<PathBuf>,
    ) -> Self {
        let held = |name: &str| match holder_pid {
            Some(pid) => NamespaceMode::Path(PathBuf::from(format!("/proc/{pid}/ns/{name}"))),
            None => NamespaceMode::New,
        };
        let network = match &config.netns_path {
            Some(p) => NamespaceMode::Path(p.clone()),
            None => NamespaceMode::Host,
        };
        // hostNetwork pods share the host's UTS namespace (and host name).
        let uts = if config.netns_path.is_none() {
            NamespaceMode::Host
        } else {
            held("uts")
        };
        let ipc = if config.host_ipc {
            NamespaceMode::Host
        } else {
            held("ipc")
        };
        let pid = if config.host_pid {
            NamespaceMode::Host
        } else if config.share_process_namespace {
            held("pid")
        } else {
            NamespaceMode::New
        };
        SandboxNamespaces {
            network,
            uts,
            ipc,
            pid,
            shm: if config.host_ipc { None } else { shm },
        }
    }
}

/// The user a container process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Everything [`build_spec`] needs besides the two configs.
pub struct BundleInputs<'a> {
    pub sandbox: &'a SandboxConfig,
    pub container: &'a ContainerConfig,
    pub namespaces: &'a SandboxNamespaces,
    /// The mounted root filesystem (overlayfs over the image layers).
    pub rootfs: &'a Path,
    /// The container's cgroup, e.g. `/kubepods/burstable/pod<uid>/<id>`.
    pub cgroup_path: String,
    /// Whether the host runs the unified cgroup hierarchy (cgroup v2).
    pub cgroup_v2: bool,
}

/// The default capabilities of a container (containerd's and runc's set).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability a privileged container gets.
const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Syscalls the RuntimeDefault profile answers with EPERM.
const SECCOMP_DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "_sysctl",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// The OCI spec of one container.
pub fn build_spec(input: &BundleInputs<'_>) -> Result<Spec> {
    let c = input.container;
    let sec = &c.security;
    let user = resolve_user(input.rootfs, c)?;

    let mut spec = Spec::default();
    spec.set_version("1.0.2".into());
    spec.set_annotations(None);

    let root = RootBuilder::default()
        .path(input.rootfs.to_path_buf())
        .readonly(sec.readonly_rootfs)
        .build()?;
    spec.set_root(Some(root));
    spec.set_hostname(match input.namespaces.uts {
        NamespaceMode::Host => None,
        _ => Some(input.sandbox.hostname.clone()),
    });
    spec.set_mounts(Some(mounts(input)?));
    spec.set_process(Some(process(input, &user)?));

    let mut linux = oci_spec::runtime::Linux::default();
    linux.set_namespaces(Some(namespaces(input)));
    linux.set_cgroups_path(Some(PathBuf::from(&input.cgroup_path)));
    let mut resources = resources(&c.resources)?;
    resources.set_devices(Some(vec![device_rule(sec.privileged)?]));
    linux.set_resources(Some(resources));
    if sec.privileged {
        linux.set_devices(Some(host_devices(Path::new("/dev"))?));
    }
    let sysctl: HashMap<String, String> = input.sandbox.sysctls.clone().into_iter().collect();
    linux.set_sysctl((!sysctl.is_empty()).then_some(sysctl));
    if sec.privileged || sec.unmasked_proc {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }
    linux.set_seccomp(if sec.privileged {
        None
    } else {
        seccomp(&sec.seccomp)?
    });
    spec.set_linux(Some(linux));
    Ok(spec)
}

fn process(input: &BundleInputs<'_>, user: &ResolvedUser) -> Result<Process> {
    let c = input.container;
    let sec = &c.security;
    let mut process = Process::default();
    process.set_terminal(Some(c.tty));
    if c.args.is_empty() {
        return Err(BundleError::Invalid("no command specified".into()));
    }
    process.set_args(Some(c.args.clone()));
    process.set_env(Some(environment(input)));
    process.set_cwd(PathBuf::from(
        c.working_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .unwrap_or("/"),
    ));
    let mut u = UserBuilder::default().uid(user.uid).gid(user.gid);
    if !user.additional_gids.is_empty() {
        u = u.additional_gids(user.additional_gids.clone());
    }
    process.set_user(u.build()?);

    let caps = capabilities(
        sec.privileged,
        &sec.capabilities_add,
        &sec.capabilities_drop,
    )?;
    // Effective and permitted are the bounding set; the kernel clears them
    // on exec for a non-root user, as with runc.
    process.set_capabilities(Some(
        LinuxCapabilitiesBuilder::default()
            .bounding(caps.clone())
            .effective(caps.clone())
            .permitted(caps)
            .build()?,
    ));
    // libcontainer installs seccomp after dropping capabilities when the
    // field is set at all, which needs no_new_privs: leave it unset unless
    // it is asked for.
    process.set_no_new_privileges(sec.no_new_privileges.then_some(true));
    // 1048576 open files as containerd gives, capped by what this process
    // may grant (raising a hard limit needs CAP_SYS_RESOURCE).
    let mut nofile = 1_048_576u64;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        nofile = nofile.min(lim.rlim_max);
    }
    process.set_rlimits(Some(vec![
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(nofile)
            .hard(nofile)
            .build()?,
    ]));
    process.set_oom_score_adj(
        c.resources
            .oom_score_adj
            .or(input.sandbox.resources.oom_score_adj)
            .map(restrict_oom_score_adj),
    );
    Ok(process)
}

/// As containerd's `restrict_oom_score_adj`: without CAP_SYS_RESOURCE (some
/// VMs' and containers' bounding sets lack it, as do user namespaces) a
/// process cannot go below its own score, and asking for -997 would fail
/// the container's start; the score is clamped to ours instead.
fn restrict_oom_score_adj(want: i32) -> i32 {
    // CAP_SYS_RESOURCE is bit 24 of the effective set.
    let privileged = own_capabilities("CapEff:").is_some_and(|caps| caps & (1 << 24) != 0);
    if privileged {
        return want;
    }
    let own = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(0);
    want.max(own)
}

fn environment(input: &BundleInputs<'_>) -> Vec<String> {
    let c = input.container;
    let mut env: Vec<String> = Vec::with_capacity(c.env.len() + 3);
    if !c.env.iter().any(|(k, _)| k == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    // containerd sets HOSTNAME and, with a TTY, TERM.
    if !c.env.iter().any(|(k, _)| k == "HOSTNAME") {
        let hostname = match input.namespaces.uts {
            NamespaceMode::Host => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            _ => input.sandbox.hostname.clone(),
        };
        env.push(format!("HOSTNAME={hostname}"));
    }
    if c.tty && !c.env.iter().any(|(k, _)| k == "TERM") {
        env.push("TERM=xterm".into());
    }
    env.extend(c.env.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// The effective capability set: privileged gets all; otherwise the default
/// set plus `add` minus `drop` (`ALL` in either means every capability).
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<oci_spec::runtime::Capabilities> {
    let norm = |c: &str| c.trim_start_matches("CAP_").to_ascii_uppercase();
    let mut set: BTreeSet<String> = if privileged {
        all_capabilities().collect()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    };
    if !privileged {
        for c in add {
            if norm(c) == "ALL" {
                set.extend(all_capabilities());
            } else {
                set.insert(norm(c));
            }
        }
        for c in drop {
            if norm(c) == "ALL" {
                set.clear();
            } else {
                set.remove(&norm(c));
            }
        }
        // An explicit add wins over dropping ALL, as in containerd.
        if drop.iter().any(|c| norm(c) == "ALL") {
            set.extend(add.iter().map(|c| norm(c)).filter(|c| c != "ALL"));
        }
    }
    set.into_iter()
        .map(|name| {
            serde_json::from_value::<Capability>(serde_json::Value::String(format!("CAP_{name}")))
                .map_err(|_| BundleError::Invalid(format!("unknown capability {name:?}")))
        })
        .collect()
}

/// "Every capability", as containerd's privileged containers get it: every
/// one this process holds in its bounding set. Some VMs and containers
/// lack one (CAP_SYS_RESOURCE here), and asking for it fails the start.
fn all_capabilities() -> impl Iterator<Item = String> {
    let bounding = own_capabilities("CapBnd:");
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(move |(bit, _)| bounding.is_none_or(|b| b & (1 << bit) != 0))
        .map(|(_, name)| name.to_string())
}

/// A capability set of this process from /proc/self/status (`CapEff:`,
/// `CapBnd:`), `None` when unreadable.
fn own_capabilities(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix(field))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn namespaces(input: &BundleInputs<'_>) -> Vec<LinuxNamespace> {
    let ns = input.namespaces;
    let mut out = Vec::new();
    let mut add = |typ: LinuxNamespaceType, mode: &NamespaceMode| {
        let path = match mode {
            NamespaceMode::Host => return,
            NamespaceMode::New => None,
            NamespaceMode::Path(p) => Some(p.clone()),
        };
        let mut b = LinuxNamespaceBuilder::default().typ(typ);
        if let Some(p) = path {
            b = b.path(p);
        }
        if let Ok(n) = b.build() {
            out.push(n);
        }
    };
    add(LinuxNamespaceType::Pid, &ns.pid);
    add(LinuxNamespaceType::Network, &ns.network);
    add(LinuxNamespaceType::Ipc, &ns.ipc);
    add(LinuxNamespaceType::Uts, &ns.uts);
    add(LinuxNamespaceType::Mount, &NamespaceMode::New);
    // containerd gives containers a cgroup namespace on v2 only.
    if input.cgroup_v2 {
        add(LinuxNamespaceType::Cgroup, &NamespaceMode::New);
    }
    out
}

fn resources(r: &LinuxResources) -> Result<oci_spec::runtime::LinuxResources> {
    let mut b = LinuxResourcesBuilder::default().devices(Vec::new());
    if let Some(limit) = r.memory_limit {
        b = b.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(s) = r.cpu_shares {
            cpu = cpu.shares(s);
        }
        if let Some(q) = r.cpu_quota {
            cpu = cpu.quota(q);
        }
        if let Some(p) = r.cpu_period {
            cpu = cpu.period(p);
        }
        b = b.cpu(cpu.build()?);
    }
    if let Some(p) = r.pids_limit {
        b = b.pids(LinuxPidsBuilder::default().limit(p).build()?);
    }
    Ok(b.build()?)
}

/// The devices cgroup's first rule, as runc's: a privileged container may
/// use every device; any other is denied all but the runtime's defaults
/// (null, zero, full, random, urandom, tty, ptmx, pts, tun), which
/// libcontainer allows after this rule.
fn device_rule(privileged: bool) -> Result<LinuxDeviceCgroup> {
    Ok(LinuxDeviceCgroupBuilder::default()
        .allow(privileged)
        .typ(LinuxDeviceType::A)
        .access("rwm")
        .build()?)
}

/// Every device node under the host's `dir` (recursively), for a
/// privileged container's fresh /dev, as runc's host devices: not the
/// pseudo-terminal, shm, fd and mqueue dirs (the container has its own),
/// not /dev/console (a container's console is its own), no fifos.
pub fn host_devices(dir: &Path) -> Result<Vec<LinuxDevice>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { path, source }
    };
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        // Entries come and go (udev): one that vanished is skipped.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            let skip = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
            if !skip.iter().any(|s| name == *s) {
                out.extend(host_devices(&path)?);
            }
            continue;
        }
        let typ = if kind.is_char_device() {
            LinuxDeviceType::C
        } else if kind.is_block_device() {
            LinuxDeviceType::B
        } else {
            continue;
        };
        if name == "console" {
            continue;
        }
        let rdev = meta.rdev();
        out.push(
            LinuxDeviceBuilder::default()
                .path(path)
                .typ(typ)
                .major(libc::major(rdev) as i64)
                .minor(libc::minor(rdev) as i64)
                .file_mode(meta.mode() & 0o7777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build()?,
        );
    }
    Ok(out)
}

fn seccomp(profile: &Seccomp) -> Result<Option<LinuxSeccomp>> {
    match profile {
        Seccomp::Unconfined => Ok(None),
        Seccomp::RuntimeDefault => Ok(Some(runtime_default_seccomp()?)),
        Seccomp::Localhost(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| BundleError::Io {
                path: path.clone(),
                source,
            })?;
            serde_json::from_str(&text).map(Some).map_err(|e| {
                BundleError::Invalid(format!("seccomp profile {}: {e}", path.display()))
            })
        }
    }
}

/// The RuntimeDefault profile (see the module comment).
pub fn runtime_default_seccomp() -> Result<LinuxSeccomp> {
    let denied = LinuxSyscallBuilder::default()
        .names(
            SECCOMP_DENIED
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(libc::EPERM as u32)
        .build()?;
    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(vec![denied])
        .build()?)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(PathBuf::from(dest))
        .typ(typ.to_string())
        .source(PathBuf::from(source))
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn bind(dest: &str, source: &Path, readonly: bool, propagation: &str) -> Result<Mount> {
    let mut options = vec!["rbind", propagation];
    if readonly {
        options.push("ro");
    }
    mount(dest, "bind", &source.to_string_lossy(), &options)
}

fn mounts(input: &BundleInputs<'_>) -> Result<Vec<Mount>> {
    let c = input.container;
    let privileged = c.security.privileged;
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if privileged { "rw" } else { "ro" },
            ],
        )?,
    ];
    if input.cgroup_v2 {
        out.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                if privileged { "rw" } else { "ro" },
            ],
        )?);
    }
    match &input.namespaces.shm {
        Some(shm) => out.push(bind("/dev/shm", shm, false, "rprivate")?),
        None if input.sandbox.host_ipc => {
            out.push(bind("/dev/shm", Path::new("/dev/shm"), false, "rprivate")?)
        }
        None => out.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?),
    }
    let ro = c.security.readonly_rootfs;
    let user_paths: BTreeSet<&str> = c.mounts.iter().map(|m| m.container_path.as_str()).collect();
    for (dest, file) in [
        ("/etc/hosts", &input.sandbox.etc_hosts),
        ("/etc/resolv.conf", &input.sandbox.resolv_conf),
        ("/etc/hostname", &input.sandbox.hostname_file),
    ] {
        if let Some(file) = file
            && !user_paths.contains(dest)
        {
            out.push(bind(dest, file, ro, "rprivate")?);
        }
    }
    for m in &c.mounts {
        if !m.container_path.starts_with('/') {
            return Err(BundleError::Invalid(format!(
                "mount path {:?} must be absolute",
                m.container_path
            )));
        }
        let propagation = match m.propagation.as_deref() {
            Some("HostToContainer") => "rslave",
            Some("Bidirectional") => "rshared",
            _ => "rprivate",
        };
        out.push(bind(
            &m.container_path,
            &m.host_path,
            m.readonly,
            propagation,
        )?);
    }
    Ok(out)
}

/// Resolve the container's user: securityContext first, then the image's
/// `User`, names looked up in the rootfs's /etc/passwd and /etc/group.
pub fn resolve_user(rootfs: &Path, c: &ContainerConfig) -> Result<ResolvedUser> {
    let sec = &c.security;
    let passwd = read_db(rootfs, "etc/passwd");
    let group = read_db(rootfs, "etc/group");
    let image_user = c.image_user.as_deref().unwrap_or("").trim();
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };

    let (uid, name) = match sec.run_as_user {
        Some(uid) => {
            let uid = id_u32(uid, "runAsUser")?;
            (uid, passwd_by_uid(&passwd, uid).map(|e| e[0].to_string()))
        }
        None if user_part.is_empty() => (0, Some("root".to_string())),
        None => match user_part.parse::<u32>() {
            Ok(uid) => (uid, passwd_by_uid(&passwd, uid).map(|e| e[0].to_string())),
            Err(_) => {
                if sec.run_as_non_root {
                    return Err(BundleError::Invalid(format!(
                        "container has runAsNonRoot and image has non-numeric user ({user_part}), cannot verify user is non-root"
                    )));
                }
                let entry = passwd.iter().find(|e| e[0] == user_part).ok_or_else(|| {
                    BundleError::Invalid(format!(
                        "unable to find user {user_part}: no matching entries in passwd file"
                    ))
                })?;
                let uid = entry.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
                (uid, Some(user_part.to_string()))
            }
        },
    };
    if sec.run_as_non_root && uid == 0 {
        return Err(BundleError::Invalid(
            "container has runAsNonRoot and image will run as root".into(),
        ));
    }

    let gid = match (sec.run_as_group, group_part) {
        (Some(g), _) => id_u32(g, "runAsGroup")?,
        // The image's group only counts with the image's user.
        (None, Some(g)) if sec.run_as_user.is_none() && !g.is_empty() => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .iter()
                .find(|e| e[0] == g)
                .and_then(|e| e.get(2)?.parse().ok())
                .ok_or_else(|| {
                    BundleError::Invalid(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        },
        _ => passwd_by_uid(&passwd, uid)
            .and_then(|e| e.get(3)?.parse().ok())
            .unwrap_or(0),
    };

    let mut additional: BTreeSet<u32> = BTreeSet::new();
    if let Some(name) = &name {
        for e in &group {
            let members = e.get(3).map(String::as_str).unwrap_or("");
            if members.split(',').any(|m| m == name)
                && let Some(g) = e.get(2).and_then(|s| s.parse().ok())
            {
                additional.insert(g);
            }
        }
    }
    for g in &sec.supplemental_groups {
        additional.insert(id_u32(*g, "supplementalGroups")?);
    }
    additional.remove(&gid);
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional.into_iter().collect(),
    })
}

fn id_u32(id: i64, field: &str) -> Result<u32> {
    u32::try_from(id).map_err(|_| BundleError::Invalid(format!("{field} {id} is out of range")))
}

fn passwd_by_uid(db: &[Vec<String>], uid: u32) -> Option<&Vec<String>> {
    db.iter()
        .find(|e| e.get(2).and_then(|s| s.parse::<u32>().ok()) == Some(uid))
}

/// The colon-separated lines of a file of the rootfs; a missing file or a
/// symlink (which could point out of the rootfs) reads as empty.
fn read_db(rootfs: &Path, rel: &str) -> Vec<Vec<String>> {
    let path = rootfs.join(rel);
    let text = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => std::fs::read_to_string(&path).unwrap_or_default(),
        _ => String::new(),
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// Follow `path` inside `root` as the container will see it: absolute
/// symlinks are taken relative to `root`, `..` cannot leave it.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = Vec::new();
    let mut pending: Vec<String> = path.split('/').rev().map(str::to_string).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(parts.iter());
        candidate.push(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = std::fs::read_link(&candidate).ok()?;
                let target = target.to_string_lossy().to_string();
                if target.starts_with('/') {
                    parts.clear();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
            }
            Ok(_) => parts.push(part),
            Err(_) => return None,
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts.iter());
    Some(out)
}

/// Find the program a container runs as the kernel will, in the rootfs:
/// `Err` carries runc's message for a missing or unusable program.
pub fn find_executable(rootfs: &Path, program: &str, env: &[String]) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let usable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        return match resolve_in_root(rootfs, program) {
            Some(p) if usable(&p) => Ok(p),
            Some(p) if p.is_dir() => Err(format!("exec: \"{program}\": is a directory")),
            Some(_) => Err(format!("exec: \"{program}\": permission denied")),
            None => Err(format!(
                "exec: \"{program}\": stat {program}: no such file or directory"
            )),
        };
    }
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        if let Some(p) = resolve_in_root(rootfs, &format!("{dir}/{program}"))
            && usable(&p)
        {
            return Ok(p);
        }
    }
    Err(format!(
        "exec: \"{program}\": executable file not found in $PATH"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_oom_score_asked_for_is_one_this_process_may_set() {
        let own = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
        assert_eq!(restrict_oom_score_adj(1000), 1000);
        let low = restrict_oom_score_adj(-997);
        assert!(low >= -997);
        // On machines without CAP_SYS_RESOURCE -997 is clamped; whatever
        // comes back, the kernel accepts it (a container start would not).
        let set = std::fs::write("/proc/self/oom_score_adj", low.to_string());
        let _ = std::fs::write("/proc/self/oom_score_adj", own.trim());
        assert!(set.is_ok(), "{low}: {set:?}");
    }

    use super::*;
    use crate::runtime::cri::SecurityConfig;

    fn rootfs() -> tempdir::Dir {
        tempdir::Dir::new()
    }

    /// A throwaway directory (no tempfile crate in this crate's deps).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!("rk3s-bundle-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(p.join("etc")).unwrap();
                std::fs::create_dir_all(p.join("bin")).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn with_db(dir: &tempdir::Dir) {
        std::fs::write(
            dir.0.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.0.join("etc/group"),
            "root:x:0:\nwww:x:34:\nextra:x:50:www,other\n",
        )
        .unwrap();
    }

    fn container(user: Option<&str>, sec: SecurityConfig) -> ContainerConfig {
        ContainerConfig {
            name: "c".into(),
            args: vec!["sh".into()],
            image_user: user.map(String::from),
            security: sec,
            ..Default::default()
        }
    }

    #[test]
    fn user_by_name_takes_passwd_gid_and_group_membership() {
        let d = rootfs();
        with_db(&d);
        let u = resolve_user(&d.0, &container(Some("www"), Default::default())).unwrap();
        assert_eq!(
            u,
            ResolvedUser {
                uid: 33,
                gid: 34,
                additional_gids: vec![50]
            }
        );
    }

    #[test]
    fn run_as_user_and_group_override_the_image() {
        let d = rootfs();
        with_db(&d);
        let sec = SecurityConfig {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![4000],
            ..Default::default()
        };
        let u = resolve_user(&d.0, &container(Some("www:www"), sec)).unwrap();
        assert_eq!(
            u,
            ResolvedUser {
                uid: 1000,
                gid: 3000,
                additional_gids: vec![4000]
            }
        );
    }

    #[test]
    fn run_as_non_root_refuses_root_and_names() {
        let d = rootfs();
        with_db(&d);
        let sec = SecurityConfig {
            run_as_non_root: true,
            ..Default::default()
        };
        let e = resolve_user(&d.0, &container(None, sec.clone())).unwrap_err();
        assert!(e.to_string().contains("will run as root"), "{e}");
        let e = resolve_user(&d.0, &container(Some("www"), sec.clone())).unwrap_err();
        assert!(e.to_string().contains("non-numeric user (www)"), "{e}");
        assert_eq!(
            resolve_user(&d.0, &container(Some("33"), sec)).unwrap().uid,
            33
        );
    }

    #[test]
    fn capabilities_add_and_drop() {
        let caps = capabilities(false, &["NET_ADMIN".into()], &["CHOWN".into()]).unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::Chown));
        assert!(caps.contains(&Capability::Kill));
        let caps = capabilities(false, &["NET_BIND_SERVICE".into()], &["ALL".into()]).unwrap();
        assert_eq!(caps.len(), 1);
        assert!(capabilities(false, &["BOGUS".into()], &[]).is_err());
        // Privileged: all this process may grant (its bounding set).
        let bounding = own_capabilities("CapBnd:").unwrap();
        let held = (0..ALL_CAPABILITIES.len())
            .filter(|bit| bounding & (1 << bit) != 0)
            .count();
        assert_eq!(capabilities(true, &[], &[]).unwrap().len(), held);
    }

    #[test]
    fn executable_lookup_follows_symlinks_inside_the_root() {
        let d = rootfs();
        std::fs::write(d.0.join("bin/busybox"), "x").unwrap();
        let mut perm = std::fs::metadata(d.0.join("bin/busybox"))
            .unwrap()
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(d.0.join("bin/busybox"), perm).unwrap();
        std::os::unix::fs::symlink("/bin/busybox", d.0.join("bin/sh")).unwrap();
        let env = vec!["PATH=/usr/bin:/bin".to_string()];
        assert_eq!(
            find_executable(&d.0, "sh", &env).unwrap(),
            d.0.join("bin/busybox")
        );
        assert_eq!(
            find_executable(&d.0, "nope", &env).unwrap_err(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert!(find_executable(&d.0, "/bin/../../../bin/sh", &env).is_ok());
    }

    #[test]
    fn spec_for_a_plain_pod_container() {
        let d = rootfs();
        with_db(&d);
        let sandbox = SandboxConfig {
            hostname: "web-0".into(),
            netns_path: Some("/run/netns/x".into()),
            ..Default::default()
        };
        let ns = SandboxNamespaces::for_sandbox(&sandbox, Some(42), Some("/shm".into()));
        let mut c = container(
            None,
            SecurityConfig {
                readonly_rootfs: true,
                seccomp: Seccomp::RuntimeDefault,
                no_new_privileges: true,
                ..Default::default()
            },
        );
        c.resources.memory_limit = Some(64 << 20);
        c.env = vec![("A".into(), "b".into())];
        let spec = build_spec(&BundleInputs {
            sandbox: &sandbox,
            container: &c,
            namespaces: &ns,
            rootfs: &d.0,
            cgroup_path: "/kubepods/pod1/abc".into(),
            cgroup_v2: false,
        })
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["hostname"], "web-0");
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(v["linux"]["cgroupsPath"], "/kubepods/pod1/abc");
        assert!(
            v["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&"/proc/kcore".into())
        );
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&serde_json::json!({"type": "uts", "path": "/proc/42/ns/uts"})));
        assert!(ns.contains(&serde_json::json!({"type": "pid"})));
        assert!(
            v["process"]["env"]
                .as_array()
                .unwrap()
                .contains(&"A=b".into())
        );
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn host_namespaces_are_not_unshared() {
        let sandbox = SandboxConfig {
            host_ipc: true,
            host_pid: true,
            ..Default::default()
        };
        let ns = SandboxNamespaces::for_sandbox(&sandbox, Some(7), Some("/shm".into()));
        assert_eq!(ns.network, NamespaceMode::Host);
        assert_eq!(ns.uts, NamespaceMode::Host);
        assert_eq!(ns.ipc, NamespaceMode::Host);
        assert_eq!(ns.pid, NamespaceMode::Host);
        assert!(ns.shm.is_none());
        let shared = SandboxConfig {
            netns_path: Some("/run/netns/n".into()),
            share_process_namespace: true,
            ..Default::default()
        };
        let ns = SandboxNamespaces::for_sandbox(&shared, Some(7), None);
        assert_eq!(ns.pid, NamespaceMode::Path("/proc/7/ns/pid".into()));
        assert_eq!(ns.ipc, NamespaceMode::Path("/proc/7/ns/ipc".into()));
    }

    #[test]
    fn host_devices_are_the_device_nodes_under_dev() {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        let d = rootfs();
        let dev = d.0.join("dev");
        for sub in ["net", "pts", "shm"] {
            std::fs::create_dir_all(dev.join(sub)).unwrap();
        }
        let node = |p: &str, kind: SFlag, mode: u32, major: u64, minor: u64| {
            mknod(
                &dev.join(p),
                kind,
                Mode::from_bits_truncate(mode),
                makedev(major, minor),
            )
            .unwrap();
            // Whatever the umask took away.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dev.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
        };
        node("kmsg", SFlag::S_IFCHR, 0o640, 1, 11);
        node("loop0", SFlag::S_IFBLK, 0o660, 7, 0);
        node("net/tun", SFlag::S_IFCHR, 0o666, 10, 200);
        node("pts/0", SFlag::S_IFCHR, 0o620, 136, 0);
        node("console", SFlag::S_IFCHR, 0o600, 5, 1);
        node("initctl", SFlag::S_IFIFO, 0o600, 0, 0);
        std::fs::write(dev.join("plain"), "x").unwrap();
        std::os::unix::fs::symlink("/proc/self/fd", dev.join("fd")).unwrap();

        let found: Vec<(String, String, i64, i64, Option<u32>)> = host_devices(&dev)
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x.path().strip_prefix(&dev).unwrap().display().to_string(),
                    x.typ().as_str().to_string(),
                    x.major(),
                    x.minor(),
                    x.file_mode(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("kmsg".into(), "c".into(), 1, 11, Some(0o640)),
                ("loop0".into(), "b".into(), 7, 0, Some(0o660)),
                ("net/tun".into(), "c".into(), 10, 200, Some(0o666)),
            ]
        );
    }

    #[test]
    fn privileged_gets_host_devices_and_every_device_allowed() {
        let d = rootfs();
        with_db(&d);
        let sandbox = SandboxConfig::default();
        let ns = SandboxNamespaces::for_sandbox(&sandbox, Some(42), None);
        let spec_of = |privileged: bool| {
            let c = container(
                None,
                SecurityConfig {
                    privileged,
                    ..Default::default()
                },
            );
            let spec = build_spec(&BundleInputs {
                sandbox: &sandbox,
                container: &c,
                namespaces: &ns,
                rootfs: &d.0,
                cgroup_path: "/kubepods/pod1/abc".into(),
                cgroup_v2: false,
            })
            .unwrap();
            serde_json::to_value(&spec).unwrap()
        };
        let v = spec_of(true);
        assert_eq!(
            v["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": true, "type": "a", "access": "rwm"}])
        );
        let devices = v["linux"]["devices"].as_array().unwrap();
        assert!(
            devices
                .iter()
                .any(|x| x["path"] == "/dev/null" && x["major"] == 1 && x["minor"] == 3),
            "{devices:?}"
        );
        let v = spec_of(false);
        assert_eq!(
            v["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": false, "type": "a", "access": "rwm"}])
        );
        assert!(v["linux"]["devices"].is_null());
    }
}
