//! Hermetic networking for tests: a network namespace per test whose only
//! interface is a veth pair kept inside it, so nothing a test does with
//! pods, bridges, routes or nftables can reach the host's network or leave
//! the machine.
//!
//! ```ignore
//! let ns = TestNetns::create();
//! let s = Server::builder().netns(&ns).start(); // agent on, inside `ns`
//! ns.run(&["ip", "addr"]);                      // any command inside `ns`
//! ```
//!
//! Commands enter the namespace with `nsenter --net=<path>` rather than
//! `ip netns exec`: the latter also makes a private mount namespace, so the
//! server's mounts (pod netns bind mounts, container root filesystems) would
//! be invisible to `rk3s killall`, to the test, and to the same server after a
//! restart. Only the network namespace is entered; /sys still shows the
//! host's devices, so code under test must use netlink, not /sys/class/net.
//!
//! Test logic that itself needs the namespace (not just child commands) runs
//! the test binary again inside it: see [`inside`].
//!
//! Dropping a `TestNetns` kills every process in it (and their descendants)
//! and deletes it. Namespaces left by a test process that was killed are
//! removed by the next `create` (names carry the creating pid).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PREFIX: &str = "rk3s-t-";
const NETNS_DIR: &str = "/run/netns";
/// The env var that tells a re-executed test it is the inner run.
const INNER_ENV: &str = "RK3S_TEST_NETNS";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace owned by one test.
#[derive(Debug)]
pub struct TestNetns {
    /// `rk3s-t-<pid>-<n>`; also a valid Kubernetes node name.
    pub name: String,
    /// /run/netns/<name>.
    pub path: PathBuf,
    /// The node's address on `v0` (CGN space, 100.64.0.0/10).
    pub node_ip: Ipv4Addr,
    /// The default gateway (an address nobody answers for: packets to it die
    /// on `v1`).
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    /// Whether Drop deletes it (false for the handle an inner run borrows).
    owned: bool,
}

impl TestNetns {
    /// `ip netns add rk3s-t-<pid>-<n>` with `v0`/`v1` (a veth pair, both
    /// ends inside), 100.64.0.2/24 on v0, default route via 100.64.0.1, lo up.
    pub fn create() -> TestNetns {
        remove_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let ns = TestNetns {
            path: Path::new(NETNS_DIR).join(&name),
            name,
            node_ip: Ipv4Addr::new(100, 64, 0, 2),
            gateway: Ipv4Addr::new(100, 64, 0, 1),
            prefix_len: 24,
            owned: true,
        };
        ip(&["netns", "add", &ns.name]);
        let n = ns.name.as_str();
        let addr = format!("{}/{}", ns.node_ip, ns.prefix_len);
        let gw = ns.gateway.to_string();
        // `ip -n` creates the pair directly inside: the host namespace never
        // sees the interfaces.
        for args in [
            &[
                "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
            ][..],
            &["-n", n, "addr", "add", &addr, "dev", "v0"],
            &["-n", n, "link", "set", "lo", "up"],
            &["-n", n, "link", "set", "v0", "up"],
            &["-n", n, "link", "set", "v1", "up"],
            &["-n", n, "route", "add", "default", "via", &gw, "dev", "v0"],
        ] {
            ip(args);
        }
        ns
    }

    /// The namespace an inner run (see [`inside`]) executes in; not deleted
    /// on drop (the outer run owns it).
    pub fn current() -> Option<TestNetns> {
        let name = std::env::var(INNER_ENV).ok()?;
        Some(TestNetns {
            path: Path::new(NETNS_DIR).join(&name),
            name,
            node_ip: Ipv4Addr::new(100, 64, 0, 2),
            gateway: Ipv4Addr::new(100, 64, 0, 1),
            prefix_len: 24,
            owned: false,
        })
    }

    /// `program` run inside the namespace (add args to the returned Command).
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path.display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Run `argv` inside the namespace; returns its output whatever the status.
    pub fn output(&self, argv: &[&str]) -> Output {
        let (prog, rest) = argv.split_first().expect("a program to run");
        super::run(self.cmd(prog).args(rest), None, Duration::from_secs(60))
    }

    /// Run `argv` inside the namespace; it must succeed; returns stdout.
    #[track_caller]
    pub fn run(&self, argv: &[&str]) -> String {
        let o = self.output(argv);
        assert!(
            o.status.success(),
            "{argv:?} in netns {} failed ({}):\n{}{}",
            self.name,
            o.status,
            super::stdout(&o),
            super::stderr(&o)
        );
        super::stdout(&o)
    }

    /// Pids of the processes whose network namespace is this one.
    pub fn pids(&self) -> Vec<i32> {
        pids_in(&self.path)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if self.owned {
            destroy(&self.name);
        }
    }
}

/// Run the calling test's body inside a fresh [`TestNetns`]: the test binary
/// runs itself again (`nsenter --net=... <exe> --exact <test>`), so every
/// thread of the inner run (tokio workers, `nft` children) is in the
/// namespace and the host's network is never touched.
///
/// Returns `Some(ns)` in the inner run, which does the work; returns `None`
/// in the outer run after the inner one passed (it panics with the inner
/// output if not), and then deletes the namespace.
///
/// ```ignore
/// #[test]
/// fn pods_ping() {
///     let Some(ns) = netns::inside("pods_ping") else { return };
///     // ... runs inside `ns` ...
/// }
/// ```
#[track_caller]
pub fn inside(test_name: &str) -> Option<TestNetns> {
    if let Some(ns) = TestNetns::current() {
        return Some(ns);
    }
    let ns = TestNetns::create();
    let exe = std::env::current_exe().expect("current test executable");
    let mut cmd = ns.cmd(&exe);
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(INNER_ENV, &ns.name);
    let o = super::run(&mut cmd, None, Duration::from_secs(600));
    let out = super::stdout(&o);
    let err = super::stderr(&o);
    // `--exact` with a wrong name runs nothing and passes: catch that.
    assert!(
        out.contains("1 passed") && o.status.success(),
        "inner run of {test_name} in netns {} failed ({}):\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
        ns.name,
        o.status
    );
    None
}

fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    assert!(
        o.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// (dev, inode) of a namespace file, to compare with /proc/<pid>/ns/net.
fn ns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn pids_in(path: &Path) -> Vec<i32> {
    let Some(want) = ns_id(path) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| ns_id(&Path::new("/proc").join(pid.to_string()).join("ns/net")) == Some(want))
        .collect()
}

/// pid -> parent pid for every process.
fn parents() -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parens: the fields after the
        // last ')' are "state ppid ...".
        let rest = &stat[stat.rfind(')')? + 1..];
        let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
        Some((pid, ppid))
    })
    .collect()
}

/// Kill everything in the namespace and its descendants (containers run in
/// pod namespaces, but descend from processes in this one), then delete it.
fn destroy(name: &str) {
    let path = Path::new(NETNS_DIR).join(name);
    let me = std::process::id() as i32;
    for _ in 0..3 {
        let mut victims: Vec<i32> = pids_in(&path).into_iter().filter(|p| *p != me).collect();
        let tree = parents();
        let mut i = 0;
        while i < victims.len() {
            let p = victims[i];
            for (child, parent) in &tree {
                if *parent == p && !victims.contains(child) && *child != me {
                    victims.push(*child);
                }
            }
            i += 1;
        }
        if victims.is_empty() {
            break;
        }
        for p in &victims {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end
            && victims
                .iter()
                .any(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(*p))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true)
}

/// Delete namespaces left behind by test processes that no longer exist.
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            destroy(&name);
        }
    }
}
