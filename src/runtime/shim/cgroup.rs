//! The few cgroup operations the runtime does itself, as plain file
//! writes: the pod-level cgroup and its limits (libcontainer only manages
//! each container's own cgroup), OOM-kill counts, usage for stats, and
//! removal. Works on cgroup v1 (these machines) and v2.

use std::path::{Path, PathBuf};

use crate::runtime::cri::{ContainerStats, LinuxResources};

pub const ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers that hold pod limits.
const V1_LIMITS: &[&str] = &["cpu", "cpuacct", "memory", "pids"];

/// Whether `/sys/fs/cgroup` is the unified (v2) hierarchy.
pub fn is_v2() -> bool {
    nix::sys::statfs::statfs(ROOT)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// The directory of `path` in one v1 controller's hierarchy, or in the v2
/// hierarchy when `controller` is `None`.
pub fn dir(controller: Option<&str>, path: &str) -> PathBuf {
    match controller {
        Some(c) => Path::new(ROOT).join(c).join(rel(path)),
        None => Path::new(ROOT).join(rel(path)),
    }
}

/// cpu.shares (2..262144) to cpu.weight (1..10000), as runc converts.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// The files to write for limits `r`, per controller (v1) or for the v2
/// directory (`None`).
pub fn limit_files(
    v2: bool,
    r: &LinuxResources,
) -> Vec<(Option<&'static str>, &'static str, String)> {
    let mut out = Vec::new();
    if v2 {
        if let Some(s) = r.cpu_shares {
            out.push((None, "cpu.weight", shares_to_weight(s).to_string()));
        }
        if r.cpu_quota.is_some() || r.cpu_period.is_some() {
            let quota = match r.cpu_quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            out.push((
                None,
                "cpu.max",
                format!("{quota} {}", r.cpu_period.unwrap_or(100_000)),
            ));
        }
        if let Some(m) = r.memory_limit {
            out.push((
                None,
                "memory.max",
                if m > 0 { m.to_string() } else { "max".into() },
            ));
        }
        if let Some(p) = r.pids_limit {
            out.push((
                None,
                "pids.max",
                if p > 0 { p.to_string() } else { "max".into() },
            ));
        }
    } else {
        if let Some(s) = r.cpu_shares {
            out.push((Some("cpu"), "cpu.shares", s.to_string()));
        }
        if let Some(p) = r.cpu_period {
            out.push((Some("cpu"), "cpu.cfs_period_us", p.to_string()));
        }
        if let Some(q) = r.cpu_quota {
            out.push((Some("cpu"), "cpu.cfs_quota_us", q.to_string()));
        }
        if let Some(m) = r.memory_limit {
            out.push((Some("memory"), "memory.limit_in_bytes", m.to_string()));
        }
        if let Some(p) = r.pids_limit {
            out.push((
                Some("pids"),
                "pids.max",
                if p > 0 { p.to_string() } else { "max".into() },
            ));
        }
    }
    out
}

/// Make the pod's cgroup and write its limits.
pub fn create_pod(path: &str, r: &LinuxResources) -> std::io::Result<()> {
    let v2 = is_v2();
    if v2 {
        std::fs::create_dir_all(dir(None, path))?;
    } else {
        for c in V1_LIMITS {
            let d = dir(Some(c), path);
            if Path::new(ROOT).join(c).is_dir() {
                std::fs::create_dir_all(d)?;
            }
        }
    }
    for (controller, file, value) in limit_files(v2, r) {
        std::fs::write(dir(controller, path).join(file), value)?;
    }
    Ok(())
}

/// Every hierarchy directory a cgroup path has: one per v1 controller
/// mount, or the one v2 directory.
pub fn all_dirs(path: &str) -> Vec<PathBuf> {
    if is_v2() {
        return vec![dir(None, path)];
    }
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(ROOT) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            // cgroup v1 hierarchies only; the hybrid `unified` mount is not
            // used for resources.
            if name == "unified" || !e.path().is_dir() {
                continue;
            }
            out.push(e.path().join(rel(path)));
        }
    }
    out
}

/// Processes still in the cgroup, in any hierarchy.
pub fn procs(path: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = all_dirs(path)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Remove a cgroup and everything below it (deepest first), in every
/// hierarchy; processes must be gone. Returns whether all went.
pub fn remove_tree(path: &str) -> bool {
    let mut ok = true;
    for d in all_dirs(path) {
        ok &= remove_dir_tree(&d);
    }
    ok
}

fn remove_dir_tree(d: &Path) -> bool {
    if !d.exists() {
        return true;
    }
    let mut ok = true;
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                ok &= remove_dir_tree(&e.path());
            }
        }
    }
    // cgroupfs directories go with rmdir only (their files are not removable).
    for _ in 0..50 {
        match std::fs::remove_dir(d) {
            Ok(()) => return ok,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ok,
            Err(_) => return false,
        }
    }
    false
}

fn read_kv(file: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_u64(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// How many times the kernel's OOM killer killed a process of the cgroup.
pub fn oom_kills(path: &str) -> u64 {
    if is_v2() {
        read_kv(&dir(None, path).join("memory.events"), "oom_kill").unwrap_or(0)
    } else {
        read_kv(
            &dir(Some("memory"), path).join("memory.oom_control"),
            "oom_kill",
        )
        .unwrap_or(0)
    }
}

/// CPU and memory usage of a cgroup, as the kubelet's summary reports.
pub fn stats(path: &str) -> ContainerStats {
    let timestamp_unix_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    if is_v2() {
        let d = dir(None, path);
        let usage = read_u64(&d.join("memory.current")).unwrap_or(0);
        let inactive = read_kv(&d.join("memory.stat"), "inactive_file").unwrap_or(0);
        ContainerStats {
            cpu_usage_nanos: read_kv(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
            memory_usage_bytes: usage,
            memory_working_set_bytes: usage.saturating_sub(inactive),
            timestamp_unix_nanos,
        }
    } else {
        let mem = dir(Some("memory"), path);
        let usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
        let inactive = read_kv(&mem.join("memory.stat"), "total_inactive_file").unwrap_or(0);
        ContainerStats {
            cpu_usage_nanos: read_u64(&dir(Some("cpuacct"), path).join("cpuacct.usage"))
                .unwrap_or(0),
            memory_usage_bytes: usage,
            memory_working_set_bytes: usage.saturating_sub(inactive),
            timestamp_unix_nanos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_limits_convert_shares_and_quota() {
        let r = LinuxResources {
            cpu_shares: Some(1024),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(1 << 20),
            pids_limit: Some(-1),
            oom_score_adj: None,
        };
        let files = limit_files(true, &r);
        assert!(files.contains(&(None, "cpu.weight", "39".into())));
        assert!(files.contains(&(None, "cpu.max", "50000 100000".into())));
        assert!(files.contains(&(None, "memory.max", "1048576".into())));
        assert!(files.contains(&(None, "pids.max", "max".into())));
        let v1 = limit_files(false, &r);
        assert!(v1.contains(&(Some("cpu"), "cpu.shares", "1024".into())));
        assert!(v1.contains(&(Some("memory"), "memory.limit_in_bytes", "1048576".into())));
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10000);
    }
}
