//! `rk3s killall [--data-dir DIR]`: stop every pod of this node and remove
//! what they leave on the host (for uninstall and tests): the shims, pause
//! processes and containers, the rootfs, shm and volume mounts under the
//! agent dir, the pods' cgroups, and (through [`crate::net::cleanup_all`])
//! the pod network.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::runtime::shim::protocol::{CONTAINERS_DIR, PID_FILE, SANDBOX_FILE, SandboxSpec};
use crate::runtime::shim::{cgroup, read_record, unmount};

pub fn main(args: &[String]) -> i32 {
    let mut data_dir = PathBuf::from(crate::config::DEFAULT_ROOT_DATA_DIR);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => match it.next() {
                Some(d) => data_dir = PathBuf::from(d),
                None => return usage(),
            },
            s if s.starts_with("--data-dir=") => {
                data_dir = PathBuf::from(&s["--data-dir=".len()..])
            }
            "-h" | "--help" => {
                println!("usage: rk3s killall [--data-dir DIR]");
                return 0;
            }
            _ => return usage(),
        }
    }
    match killall(&data_dir.join("agent")) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rk3s killall: {e}");
            1
        }
    }
}

fn usage() -> i32 {
    eprintln!("usage: rk3s killall [--data-dir DIR]");
    2
}

/// Everything [`main`] does, for the agent dir `agent_dir`. Goes on past
/// failures and reports the first.
pub fn killall(agent_dir: &Path) -> Result<(), String> {
    let mut first: Option<String> = None;
    let sandboxes = agent_dir.join("sandboxes");
    // Shims whose sandbox dir lost its pid file still name it in argv.
    kill_shims_under(&sandboxes);
    if let Ok(rd) = std::fs::read_dir(&sandboxes) {
        for e in rd.flatten() {
            if let Err(err) = clean_sandbox_dir(&e.path())
                && first.is_none()
            {
                first = Some(err);
            }
        }
    }
    // Volume and other mounts the agent made elsewhere in its dir.
    for m in mounts_under(agent_dir) {
        unmount(&m);
    }
    if let Err(e) = crate::net::cleanup_all(&agent_dir.join("net"))
        && first.is_none()
    {
        first = Some(format!("network clean-up: {e}"));
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Kill and remove one sandbox: its shim, pause process and containers,
/// its mounts and cgroups, and the directory. Safe on a sandbox whose shim
/// already cleaned up (what `remove_sandbox` leaves).
pub fn clean_sandbox_dir(dir: &Path) -> Result<(), String> {
    // The shim first, so nothing restarts or reaps behind our back.
    if let Ok(text) = std::fs::read_to_string(dir.join(PID_FILE)) {
        for pid in text
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if is_ours(pid, dir) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    let spec: Option<SandboxSpec> = std::fs::read(dir.join(SANDBOX_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut cgroups: Vec<String> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join(CONTAINERS_DIR)) {
        for e in rd.flatten() {
            if let Some(rec) = read_record(&e.path()) {
                cgroups.push(rec.cgroup_path.clone());
            }
        }
    }
    if let Some(s) = &spec
        && !s.cgroup_parent.is_empty()
    {
        cgroups.push(s.cgroup_parent.clone());
    }
    // Whatever still runs in the pod's cgroups (containers, their children).
    for _ in 0..100 {
        let pids: Vec<i32> = cgroups.iter().flat_map(|c| cgroup::procs(c)).collect();
        if pids.is_empty() {
            break;
        }
        for p in pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for m in mounts_under(dir) {
        unmount(&m);
    }
    let mut failed = Vec::new();
    for c in &cgroups {
        if !cgroup::remove_tree(c) {
            failed.push(c.clone());
        }
    }
    let left = mounts_under(dir);
    if !left.is_empty() {
        // Never recurse into something still mounted.
        return Err(format!("{}: still mounted: {left:?}", dir.display()));
    }
    std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !failed.is_empty() {
        return Err(format!("cgroups not removed: {failed:?}"));
    }
    Ok(())
}

/// SIGKILL every `rk3s shim run <dir>` (and its pause process, which has
/// the same argv) with `<dir>` under `sandboxes`.
fn kill_shims_under(sandboxes: &Path) {
    let prefix = format!("{}/", sandboxes.display());
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() >= 4
            && args[1] == b"shim"
            && args[2] == b"run"
            && args[3].starts_with(prefix.as_bytes())
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Whether `pid` is a shim or pause process of this sandbox (a pid file
/// can outlive its process, and pids are reused).
fn is_ours(pid: i32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let text = String::from_utf8_lossy(&cmdline);
    text.contains("shim") && text.contains(&*dir.to_string_lossy())
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(&dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(digits) = std::str::from_utf8(&b[i + 1..i + 4])
            && let Ok(v) = u8::from_str_radix(digits, 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes() {
        assert_eq!(super::unescape(r"/a\040b"), "/a b");
        assert_eq!(super::unescape("/plain"), "/plain");
    }
}
