//! `rk3s check-config`: what the kernel and the system lack to run pods,
//! in plain words with the fix (the server logs the same at start).
//!
//! Sources, in order of trust: what is live (/proc/self/ns, /proc/filesystems,
//! /proc/cgroups and the /sys/fs/cgroup layout, /proc/modules), then the
//! kernel configuration (/proc/config.gz, /boot/config-<release>), then the
//! module lists under /lib/modules/<release>. A feature built as a module
//! that is not loaded counts as present: the kernel loads it on first use.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// One verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The heading it is printed under ("Namespaces", "Cgroups", ...).
    pub group: &'static str,
    /// What is checked, in plain words.
    pub name: String,
    /// Without it rk3s cannot run pods (else: some feature is lost).
    pub required: bool,
    pub status: Status,
    /// How it was found (or why it was not).
    pub detail: String,
    /// What to do when it is missing.
    pub fix: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Missing,
    /// Could not be determined (no kernel configuration to read).
    Unknown,
}

impl Check {
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
    /// Missing and required: rk3s cannot run pods.
    pub fn is_fatal(&self) -> bool {
        self.required && self.status == Status::Missing
    }
}

/// The cgroup layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v2 only (/sys/fs/cgroup is cgroup2).
    V2,
    /// v1 controllers, with a v2 hierarchy at /sys/fs/cgroup/unified.
    Hybrid,
    V1,
    None,
}

impl CgroupMode {
    pub fn describe(self) -> &'static str {
        match self {
            CgroupMode::V2 => "cgroups v2 (unified)",
            CgroupMode::Hybrid => {
                "cgroups v1 (hybrid: v1 controllers, v2 at /sys/fs/cgroup/unified)"
            }
            CgroupMode::V1 => "cgroups v1",
            CgroupMode::None => "no cgroup file system mounted at /sys/fs/cgroup",
        }
    }
}

/// Where the facts are read from (the real machine, or a test's fake root).
#[derive(Clone, Debug)]
pub struct Host {
    pub proc_dir: PathBuf,
    pub sys_dir: PathBuf,
    pub boot_dir: PathBuf,
    pub modules_dir: PathBuf,
    pub release: String,
    /// Directories searched for the `nft` binary.
    pub path: Vec<PathBuf>,
    /// Overrides the statfs-based cgroup detection (tests).
    pub cgroup_mode: Option<CgroupMode>,
}

impl Host {
    pub fn real() -> Host {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let mut path: Vec<PathBuf> = path;
        // Services often run with a short PATH; nft lives in sbin.
        for d in ["/usr/sbin", "/sbin", "/usr/local/sbin"] {
            if !path.iter().any(|p| p == Path::new(d)) {
                path.push(d.into());
            }
        }
        Host {
            proc_dir: "/proc".into(),
            sys_dir: "/sys".into(),
            boot_dir: "/boot".into(),
            modules_dir: "/lib/modules".into(),
            release,
            path,
            cgroup_mode: None,
        }
    }

    fn read(&self, p: &Path) -> Option<String> {
        std::fs::read_to_string(p).ok()
    }

    /// The kernel configuration, if the kernel exposes it; and where from.
    fn kernel_config(&self) -> Option<(String, String)> {
        let gz = self.proc_dir.join("config.gz");
        if let Ok(f) = std::fs::File::open(&gz) {
            let mut text = String::new();
            if flate2::read::GzDecoder::new(f)
                .read_to_string(&mut text)
                .is_ok()
            {
                return Some((text, gz.display().to_string()));
            }
        }
        let boot = self.boot_dir.join(format!("config-{}", self.release));
        self.read(&boot).map(|t| (t, boot.display().to_string()))
    }

    pub fn cgroup_mode(&self) -> CgroupMode {
        if let Some(m) = self.cgroup_mode {
            return m;
        }
        let root = self.sys_dir.join("fs/cgroup");
        let is_v2 = |p: &Path| {
            nix::sys::statfs::statfs(p)
                .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
                .unwrap_or(false)
        };
        if is_v2(&root) {
            CgroupMode::V2
        } else if is_v2(&root.join("unified")) {
            CgroupMode::Hybrid
        } else if root.join("memory").exists() || root.join("cpu").exists() {
            CgroupMode::V1
        } else {
            CgroupMode::None
        }
    }
}

/// How a kernel feature is known to be there.
struct Kernel {
    config: Option<(String, String)>,
    loaded: String,
    builtin: String,
    dep: String,
}

impl Kernel {
    fn load(host: &Host) -> Kernel {
        let mdir = host.modules_dir.join(&host.release);
        Kernel {
            config: host.kernel_config(),
            loaded: host
                .read(&host.proc_dir.join("modules"))
                .unwrap_or_default(),
            builtin: host.read(&mdir.join("modules.builtin")).unwrap_or_default(),
            dep: host.read(&mdir.join("modules.dep")).unwrap_or_default(),
        }
    }

    fn config_value(&self, option: &str) -> Option<Option<String>> {
        let (text, _) = self.config.as_ref()?;
        let prefix = format!("{option}=");
        Some(
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string())),
        )
    }

    /// Whether the `.ko` of `module` is listed in a modules file.
    fn listed(list: &str, module: &str) -> bool {
        let alt = module.replace('_', "-");
        list.lines().any(|l| {
            let file = l.split(':').next().unwrap_or("");
            let base = file.rsplit('/').next().unwrap_or("");
            let stem = base.split(".ko").next().unwrap_or("");
            stem == module || stem == alt
        })
    }

    fn is_loaded(&self, module: &str) -> bool {
        self.loaded
            .lines()
            .any(|l| l.split_whitespace().next() == Some(module))
    }

    /// (status, how) for a kernel option that may be a module.
    fn feature(&self, option: &str, module: &str) -> (Status, String) {
        if self.is_loaded(module) {
            return (Status::Ok, format!("module {module} loaded"));
        }
        if let Some(v) = self.config_value(option) {
            let from = self.config.as_ref().map(|(_, f)| f.as_str()).unwrap_or("");
            return match v.as_deref() {
                Some("y") => (Status::Ok, format!("{option}=y (built in)")),
                Some("m") if Self::listed(&self.dep, module) || self.dep.is_empty() => (
                    Status::Ok,
                    format!("{option}=m (module {module}, loaded on use)"),
                ),
                Some("m") => (
                    Status::Missing,
                    format!("{option}=m but module {module} is not installed"),
                ),
                _ => (Status::Missing, format!("{option} is not set in {from}")),
            };
        }
        if Self::listed(&self.builtin, module) {
            return (Status::Ok, format!("{module} built in"));
        }
        if Self::listed(&self.dep, module) {
            return (Status::Ok, format!("module {module} available"));
        }
        (
            Status::Unknown,
            "no kernel configuration (/proc/config.gz, /boot/config-*) or module list to tell"
                .to_string(),
        )
    }
}

fn check(
    group: &'static str,
    name: &str,
    required: bool,
    (status, detail): (Status, String),
    fix: &str,
) -> Check {
    Check {
        group,
        name: name.to_string(),
        required,
        status,
        detail,
        fix: fix.to_string(),
    }
}

fn present(ok: bool, yes: String, no: String) -> (Status, String) {
    if ok {
        (Status::Ok, yes)
    } else {
        (Status::Missing, no)
    }
}

/// Every check on this machine.
pub fn checks() -> Vec<Check> {
    checks_on(&Host::real())
}

/// Every check against `host`.
pub fn checks_on(host: &Host) -> Vec<Check> {
    let mut out = Vec::new();
    let kernel = Kernel::load(host);
    const REBUILD: &str = "use a kernel built with";

    // ---- namespaces: live, from /proc/self/ns.
    for (ns, what, option, required) in [
        ("net", "network namespaces", "CONFIG_NET_NS", true),
        ("pid", "PID namespaces", "CONFIG_PID_NS", true),
        ("ipc", "IPC namespaces", "CONFIG_IPC_NS", true),
        ("uts", "UTS namespaces", "CONFIG_UTS_NS", true),
        ("mnt", "mount namespaces", "CONFIG_NAMESPACES", true),
        ("cgroup", "cgroup namespaces", "CONFIG_CGROUPS", false),
        ("user", "user namespaces", "CONFIG_USER_NS", false),
    ] {
        let p = host.proc_dir.join("self/ns").join(ns);
        out.push(check(
            "Namespaces",
            what,
            required,
            present(
                p.exists(),
                format!("{} exists", p.display()),
                format!("{} does not exist", p.display()),
            ),
            &format!("{REBUILD} {option}=y"),
        ));
    }

    // ---- cgroups.
    let mode = host.cgroup_mode();
    out.push(check(
        "Cgroups",
        "cgroup file system",
        true,
        present(
            mode != CgroupMode::None,
            mode.describe().to_string(),
            mode.describe().to_string(),
        ),
        "mount cgroup2 at /sys/fs/cgroup (systemd does it at boot), or the v1 controllers under it",
    ));
    let cg = host.sys_dir.join("fs/cgroup");
    let v1_enabled: Vec<(String, bool)> = host
        .read(&host.proc_dir.join("cgroups"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), *f.get(3)? == "1"))
        })
        .collect();
    let v2_controllers = host
        .read(&cg.join("cgroup.controllers"))
        .unwrap_or_default();
    let controllers: &[(&str, &str, bool)] = &[
        ("cpu", "CPU shares and limits", true),
        ("memory", "memory limits", true),
        ("pids", "process-count limits", true),
        ("cpuset", "CPU pinning", false),
        ("hugetlb", "huge page limits", false),
    ];
    for (name, what, required) in controllers {
        let label = format!("cgroup controller {name} ({what})");
        let verdict = match mode {
            CgroupMode::V2 => present(
                v2_controllers.split_whitespace().any(|c| c == *name),
                format!("listed in {}", cg.join("cgroup.controllers").display()),
                format!("not in {}", cg.join("cgroup.controllers").display()),
            ),
            CgroupMode::Hybrid | CgroupMode::V1 => {
                let enabled = v1_enabled.iter().any(|(n, e)| n == name && *e);
                let mounted = cg.join(name).exists();
                match (enabled, mounted) {
                    (true, true) => (
                        Status::Ok,
                        format!("enabled, mounted at {}", cg.join(name).display()),
                    ),
                    (true, false) => (
                        Status::Missing,
                        format!("enabled but not mounted at {}", cg.join(name).display()),
                    ),
                    _ => (Status::Missing, "not enabled in /proc/cgroups".to_string()),
                }
            }
            CgroupMode::None => (Status::Missing, "no cgroup file system".to_string()),
        };
        let fix = match mode {
            CgroupMode::V2 => format!(
                "enable it on the kernel command line (e.g. cgroup_enable={name}) and reboot; on a Raspberry Pi add `cgroup_memory=1 cgroup_enable=memory` to /boot/cmdline.txt"
            ),
            _ if verdict.1.starts_with("enabled but not mounted") => format!(
                "mount it: mkdir -p {0} && mount -t cgroup -o {name} cgroup {0}",
                cg.join(name).display()
            ),
            _ => format!(
                "enable it on the kernel command line (cgroup_enable={name}), reboot, and mount it at {}",
                cg.join(name).display()
            ),
        };
        out.push(check("Cgroups", &label, *required, verdict, &fix));
    }
    if matches!(mode, CgroupMode::Hybrid | CgroupMode::V1) {
        for (name, what) in [
            ("cpuacct", "CPU usage accounting"),
            ("devices", "device access control"),
            ("freezer", "freezing containers"),
        ] {
            let enabled = v1_enabled.iter().any(|(n, e)| n == name && *e);
            let mounted = cg.join(name).exists();
            out.push(check(
                "Cgroups",
                &format!("cgroup controller {name} ({what})"),
                true,
                present(
                    enabled && mounted,
                    format!("enabled, mounted at {}", cg.join(name).display()),
                    if enabled {
                        "enabled but not mounted".to_string()
                    } else {
                        "not enabled in /proc/cgroups".to_string()
                    },
                ),
                &format!("mount the {name} controller at {}", cg.join(name).display()),
            ));
        }
    }

    // ---- file systems.
    let filesystems = host
        .read(&host.proc_dir.join("filesystems"))
        .unwrap_or_default();
    let overlay = if filesystems.split_whitespace().any(|f| f == "overlay") {
        (Status::Ok, "listed in /proc/filesystems".to_string())
    } else {
        kernel.feature("CONFIG_OVERLAY_FS", "overlay")
    };
    out.push(check(
        "File systems",
        "overlayfs (container root file systems)",
        true,
        overlay,
        "load it with `modprobe overlay`, or use a kernel built with CONFIG_OVERLAY_FS",
    ));

    // ---- networking.
    for (what, option, module, required, fix) in [
        (
            "veth pairs (pod interfaces)",
            "CONFIG_VETH",
            "veth",
            true,
            "modprobe veth",
        ),
        (
            "bridges (the pod bridge rk3s0)",
            "CONFIG_BRIDGE",
            "bridge",
            true,
            "modprobe bridge",
        ),
        (
            "nftables",
            "CONFIG_NF_TABLES",
            "nf_tables",
            true,
            "modprobe nf_tables",
        ),
        (
            "nftables NAT (Services)",
            "CONFIG_NFT_NAT",
            "nft_nat",
            true,
            "modprobe nft_nat",
        ),
        (
            "nftables masquerade (pod egress)",
            "CONFIG_NFT_MASQ",
            "nft_masq",
            true,
            "modprobe nft_masq",
        ),
        (
            "connection tracking",
            "CONFIG_NF_CONNTRACK",
            "nf_conntrack",
            true,
            "modprobe nf_conntrack",
        ),
        (
            "VXLAN (the overlay between nodes)",
            "CONFIG_VXLAN",
            "vxlan",
            false,
            "modprobe vxlan (needed only for clusters of more than one node)",
        ),
        (
            "bridge netfilter",
            "CONFIG_BRIDGE_NETFILTER",
            "br_netfilter",
            false,
            "modprobe br_netfilter (lets nftables see traffic between pods on the bridge: network policies)",
        ),
    ] {
        let mut verdict = kernel.feature(option, module);
        // Built-in or loaded bridges and veths leave traces in /sys.
        if verdict.0 != Status::Ok {
            let trace = match module {
                "bridge" => Some(host.sys_dir.join("module/bridge")),
                "br_netfilter" => Some(host.proc_dir.join("sys/net/bridge")),
                "nf_conntrack" => Some(host.proc_dir.join("sys/net/netfilter/nf_conntrack_max")),
                _ => None,
            };
            if let Some(t) = trace.filter(|t| t.exists()) {
                verdict = (Status::Ok, format!("{} exists", t.display()));
            }
        }
        let fix = format!("{fix}, or use a kernel built with {option}");
        out.push(check("Networking", what, required, verdict, &fix));
    }

    // ---- tools and security.
    let nft = host
        .path
        .iter()
        .map(|d| d.join("nft"))
        .find(|p| p.is_file());
    out.push(check(
        "Tools",
        "nft (the nftables command)",
        true,
        match &nft {
            Some(p) => (Status::Ok, format!("found at {}", p.display())),
            None => (Status::Missing, "not found on PATH".to_string()),
        },
        "install the nftables package (apt install nftables / dnf install nftables / apk add nftables)",
    ));
    let seccomp = host
        .read(&host.proc_dir.join("self/status"))
        .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
        .unwrap_or(false);
    out.push(check(
        "Security",
        "seccomp (RuntimeDefault profiles)",
        false,
        present(
            seccomp,
            "Seccomp: in /proc/self/status".to_string(),
            "the kernel reports no seccomp support".to_string(),
        ),
        "use a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y",
    ));
    out
}

/// The report as printed by `rk3s check-config`.
pub fn render(host_release: &str, checks: &[Check]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "rk3s check-config: kernel {host_release}");
    let mut group = "";
    for c in checks {
        if c.group != group {
            group = c.group;
            let _ = writeln!(s, "\n{group}:");
        }
        let word = match (c.status, c.required) {
            (Status::Ok, _) => "ok",
            (Status::Missing, true) => "missing",
            (Status::Missing, false) => "missing (optional)",
            (Status::Unknown, _) => "unknown",
        };
        let _ = writeln!(s, "  {word:<20}{}: {}", c.name, c.detail);
        if !c.is_ok() {
            let _ = writeln!(s, "  {:<20}fix: {}", "", c.fix);
        }
    }
    let fatal = checks.iter().filter(|c| c.is_fatal()).count();
    let optional = checks.iter().filter(|c| !c.required && !c.is_ok()).count();
    let unknown = checks
        .iter()
        .filter(|c| c.required && c.status == Status::Unknown)
        .count();
    let _ = writeln!(s);
    if fatal == 0 {
        let _ = write!(s, "OK: everything rk3s needs is present");
    } else {
        let _ = write!(
            s,
            "FAIL: {fatal} required feature(s) missing: rk3s cannot run pods here"
        );
    }
    if unknown > 0 {
        let _ = write!(s, "; {unknown} could not be checked");
    }
    if optional > 0 {
        let _ = write!(s, "; {optional} optional feature(s) missing");
    }
    let _ = writeln!(s, ".");
    s
}

/// Log the verdicts (for the server at start): missing required features
/// as errors, the rest as warnings or debug.
pub fn log_checks(checks: &[Check]) {
    for c in checks {
        match (c.status, c.required) {
            (Status::Ok, _) => tracing::debug!("check-config: {}: ok ({})", c.name, c.detail),
            (Status::Missing, true) => {
                tracing::error!(
                    "check-config: {} is missing ({}); fix: {}",
                    c.name,
                    c.detail,
                    c.fix
                )
            }
            _ => tracing::warn!(
                "check-config: {} is {} ({}); fix: {}",
                c.name,
                if c.status == Status::Unknown {
                    "unknown"
                } else {
                    "missing"
                },
                c.detail,
                c.fix
            ),
        }
    }
}

const USAGE: &str = "Usage: rk3s check-config

Checks that this machine's kernel and system have what rk3s needs to run
pods (namespaces, cgroups, overlayfs, veth, bridge, nftables, vxlan) and
says how to fix what is missing. Exits 1 if something required is missing.
";

pub fn main(args: &[String]) -> i32 {
    if let Some(a) = args.first() {
        if a == "-h" || a == "--help" {
            print!("{USAGE}");
            return 0;
        }
        eprintln!("rk3s check-config: unexpected argument {a:?}\n\n{USAGE}");
        return 2;
    }
    let host = Host::real();
    let checks = checks_on(&host);
    print!("{}", render(&host.release, &checks));
    if checks.iter().any(Check::is_fatal) {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc, /sys, /boot and /lib/modules under a temp dir.
    struct Fake {
        root: PathBuf,
    }

    impl Fake {
        fn new() -> Fake {
            let root = std::env::temp_dir().join(format!(
                "rk3s-checkconfig-{}",
                uuid::Uuid::new_v4().simple()
            ));
            for d in [
                "proc/self/ns",
                "sys/fs/cgroup",
                "boot",
                "lib/modules/6.1.0",
                "bin",
            ] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            Fake { root }
        }
        fn write(&self, rel: &str, text: &str) {
            let p = self.root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        fn host(&self, mode: CgroupMode) -> Host {
            Host {
                proc_dir: self.root.join("proc"),
                sys_dir: self.root.join("sys"),
                boot_dir: self.root.join("boot"),
                modules_dir: self.root.join("lib/modules"),
                release: "6.1.0".into(),
                path: vec![self.root.join("bin")],
                cgroup_mode: Some(mode),
            }
        }
        /// A machine with everything.
        fn complete() -> Fake {
            let f = Fake::new();
            for ns in ["net", "pid", "ipc", "uts", "mnt", "cgroup", "user"] {
                f.write(&format!("proc/self/ns/{ns}"), "");
            }
            f.write("proc/filesystems", "nodev\tcgroup2\nnodev\toverlay\n");
            f.write(
                "sys/fs/cgroup/cgroup.controllers",
                "cpuset cpu io memory hugetlb pids\n",
            );
            f.write(
                "boot/config-6.1.0",
                "CONFIG_VETH=m\nCONFIG_BRIDGE=y\nCONFIG_NF_TABLES=m\nCONFIG_NFT_NAT=m\nCONFIG_NFT_MASQ=m\nCONFIG_NF_CONNTRACK=m\nCONFIG_VXLAN=m\nCONFIG_BRIDGE_NETFILTER=m\nCONFIG_OVERLAY_FS=m\n",
            );
            f.write(
                "lib/modules/6.1.0/modules.dep",
                "kernel/drivers/net/veth.ko.xz:\nkernel/net/netfilter/nf_tables.ko.xz:\nkernel/net/netfilter/nft_nat.ko:\nkernel/net/netfilter/nft_masq.ko:\nkernel/net/netfilter/nf_conntrack.ko:\nkernel/drivers/net/vxlan/vxlan.ko:\nkernel/net/bridge/br_netfilter.ko:\n",
            );
            f.write("proc/self/status", "Name:\tx\nSeccomp:\t0\n");
            f.write("bin/nft", "");
            f
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name.starts_with(name))
            .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
    }

    #[test]
    fn complete_machine_passes() {
        let f = Fake::complete();
        let checks = checks_on(&f.host(CgroupMode::V2));
        let bad: Vec<&Check> = checks.iter().filter(|c| !c.is_ok()).collect();
        assert!(bad.is_empty(), "{bad:#?}");
        let text = render("6.1.0", &checks);
        assert!(
            text.ends_with("OK: everything rk3s needs is present.\n"),
            "{text}"
        );
        assert!(text.contains("  ok                  veth pairs (pod interfaces): CONFIG_VETH=m (module veth, loaded on use)\n"), "{text}");
    }

    #[test]
    fn missing_pieces_are_named_with_fixes() {
        let f = Fake::complete();
        std::fs::remove_file(f.root.join("proc/self/ns/net")).unwrap();
        f.write("proc/filesystems", "nodev\tcgroup2\n");
        f.write(
            "boot/config-6.1.0",
            "CONFIG_VETH=m\nCONFIG_BRIDGE=y\nCONFIG_NF_TABLES=m\nCONFIG_NFT_NAT=m\nCONFIG_NFT_MASQ=m\nCONFIG_NF_CONNTRACK=m\n# CONFIG_VXLAN is not set\n",
        );
        f.write("sys/fs/cgroup/cgroup.controllers", "cpu pids\n");
        std::fs::remove_file(f.root.join("bin/nft")).unwrap();
        let checks = checks_on(&f.host(CgroupMode::V2));
        assert!(find(&checks, "network namespaces").is_fatal());
        assert!(find(&checks, "overlayfs").is_fatal());
        assert!(find(&checks, "cgroup controller memory").is_fatal());
        assert!(find(&checks, "nft ").is_fatal());
        let vx = find(&checks, "VXLAN");
        assert_eq!(vx.status, Status::Missing);
        assert!(!vx.is_fatal());
        let text = render("6.1.0", &checks);
        assert!(text.contains("  missing             overlayfs (container root file systems): CONFIG_OVERLAY_FS is not set in"), "{text}");
        assert!(text.contains("fix: install the nftables package"), "{text}");
        assert!(text.contains("missing (optional)  VXLAN"), "{text}");
        assert!(
            text.contains("FAIL: 4 required feature(s) missing"),
            "{text}"
        );
        assert!(text.contains("cgroup_enable=memory"), "{text}");
    }

    #[test]
    fn hybrid_v1_controllers_need_enabling_and_mounting() {
        let f = Fake::complete();
        f.write(
            "proc/cgroups",
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\ncpuacct\t2\t1\t1\nmemory\t0\t1\t0\npids\t8\t1\t1\ndevices\t5\t1\t1\nfreezer\t6\t1\t1\ncpuset\t3\t1\t1\n",
        );
        for c in ["cpu", "cpuacct", "pids", "devices", "cpuset"] {
            std::fs::create_dir_all(f.root.join("sys/fs/cgroup").join(c)).unwrap();
        }
        let checks = checks_on(&f.host(CgroupMode::Hybrid));
        assert!(find(&checks, "cgroup controller cpu ").is_ok());
        let mem = find(&checks, "cgroup controller memory");
        assert!(
            mem.is_fatal() && mem.detail.contains("not enabled"),
            "{mem:?}"
        );
        let fr = find(&checks, "cgroup controller freezer");
        assert!(fr.is_fatal() && fr.detail.contains("not mounted"), "{fr:?}");
        assert!(
            find(&checks, "cgroup file system")
                .detail
                .contains("hybrid")
        );
    }

    #[test]
    fn no_config_and_no_modules_is_unknown_not_ok() {
        let f = Fake::complete();
        std::fs::remove_file(f.root.join("boot/config-6.1.0")).unwrap();
        std::fs::remove_file(f.root.join("lib/modules/6.1.0/modules.dep")).unwrap();
        let checks = checks_on(&f.host(CgroupMode::V2));
        assert_eq!(find(&checks, "veth").status, Status::Unknown);
        // A loaded module is enough.
        f.write("proc/modules", "veth 40960 0 - Live 0x0000000000000000\n");
        let checks = checks_on(&f.host(CgroupMode::V2));
        assert!(find(&checks, "veth").is_ok());
        let text = render("6.1.0", &checks);
        assert!(text.contains("could not be checked"), "{text}");
    }
}
