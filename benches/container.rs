//! Container start through the per-pod shim against `runc run` on the same
//! bundle, and the shim's memory.
//!
//! Both run `/bin/true` from a busybox root filesystem in the same pod
//! sandbox (its network namespace is one this bench creates: nothing leaves
//! the machine):
//! - shim: `start_container` until the exit event arrives (libcontainer
//!   create + start + the process running to its end + the exit reaching
//!   the agent); the bundle is made beforehand by `create_container`;
//! - runc: `runc run` on a copy of that container's `config.json` (its own
//!   cgroup), over the same mounted rootfs: create, start, wait, delete.
//!
//! Medians over RUNS; the ratio is runc / shim (1.0 or more: the shim is no
//! slower). Then each shim's and pause process's RSS with a running pod.
//! Targets (issue 5): ratio >= 1.0, shim RSS <= 3 MB.
//! `cargo bench --bench container` (as root, with runc installed).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rk3s::runtime::cri::*;
use rk3s::runtime::local::LocalRuntime;

const RUNS: usize = 20;
const TARGET_RATIO: f64 = 1.0;
const TARGET_RSS_KB: u64 = 3 * 1024;

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("container bench: needs root; skipped");
        return;
    }
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let runs = std::env::var("RK3S_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS);
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let base = std::env::temp_dir().join(format!("rk3s-bench-ctr-{}", std::process::id()));
    let netns = common::netns::TestNetns::create();
    let cleanup = Cleanup(base.clone());
    rt.block_on(bench(&base, &netns.path, runc.as_deref(), runs));
    drop(cleanup);
    drop(netns);
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(common::RK3S)
            .args(["killall", "--data-dir"])
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A field of /proc/PID/smaps_rollup, in kB.
fn smaps_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

async fn bench(base: &Path, netns: &Path, runc: Option<&Path>, runs: usize) {
    let layer = base.join("layer");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(layer.join(d)).expect("layer");
    }
    std::fs::copy("/bin/busybox", layer.join("bin/busybox")).expect("busybox-static");
    for a in ["true", "sleep", "sh"] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(a)).expect("symlink");
    }
    let rt = LocalRuntime::new(base.join("agent"))
        .expect("runtime")
        .with_shim_binary(common::RK3S.into());
    let sandbox = SandboxConfig {
        pod_name: "bench".into(),
        pod_namespace: "default".into(),
        hostname: "bench".into(),
        netns_path: Some(netns.to_path_buf()),
        cgroup_parent: format!("rk3s-bench-{}", std::process::id()),
        log_directory: base.join("logs"),
        ..Default::default()
    };
    let sb = rt.run_sandbox(&sandbox).await.expect("sandbox");
    let container = |n: usize, args: &[&str]| ContainerConfig {
        name: format!("c{n}"),
        image: ImageSpec {
            layers: vec![layer.clone()],
            ..Default::default()
        },
        args: args.iter().map(|s| s.to_string()).collect(),
        log_path: base.join("logs").join(format!("c{n}.log")),
        ..Default::default()
    };
    let mut events = rt.subscribe();
    let mut shim_ms = Vec::new();
    let mut runc_ms = Vec::new();
    for n in 0..runs {
        let id = rt
            .create_container(&sb, &container(n, &["/bin/true"]))
            .await
            .expect("create");
        let t = Instant::now();
        rt.start_container(&id).await.expect("start");
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(30), events.recv())
                .await
                .expect("exit event")
                .expect("events");
            if ev.container_id == id {
                break;
            }
        }
        shim_ms.push(t.elapsed().as_secs_f64() * 1000.0);

        if let Some(runc) = runc {
            // The same bundle, for runc: its config with a cgroup of its own.
            let bundle = base
                .join("agent/sandboxes")
                .join(&sb)
                .join("containers")
                .join(&id);
            let rbundle = base.join(format!("runc-{n}"));
            std::fs::create_dir_all(&rbundle).expect("runc bundle");
            let mut cfg: serde_json::Value =
                serde_json::from_slice(&std::fs::read(bundle.join("config.json")).expect("config"))
                    .expect("json");
            cfg["linux"]["cgroupsPath"] = format!("/{}/runc-{n}", sandbox.cgroup_parent).into();
            std::fs::write(rbundle.join("config.json"), cfg.to_string()).expect("write config");
            let t = Instant::now();
            let status = Command::new(runc)
                .args([
                    "--root",
                    &base.join("runc-root").to_string_lossy(),
                    "run",
                    "--bundle",
                ])
                .arg(&rbundle)
                .arg(format!("bench-{n}"))
                .stdin(std::process::Stdio::null())
                .status()
                .expect("runc");
            runc_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(status.success(), "runc run failed");
            for c in [
                "cpu", "cpuacct", "memory", "pids", "blkio", "devices", "freezer", "cpuset",
                "systemd",
            ] {
                let _ = std::fs::remove_dir(format!(
                    "/sys/fs/cgroup/{c}/{}/runc-{n}",
                    sandbox.cgroup_parent
                ));
            }
        }
        rt.remove_container(&id).await.expect("remove");
    }

    // Memory with a pod running.
    let id = rt
        .create_container(&sb, &container(runs, &["sleep", "1000"]))
        .await
        .expect("create");
    rt.start_container(&id).await.expect("start");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pids = std::fs::read_to_string(base.join("agent/sandboxes").join(&sb).join("shim.pid"))
        .unwrap_or_default();
    let mut it = pids.split_whitespace();
    let (shim_pid, pause_pid) = (
        it.next().unwrap_or("0").to_string(),
        it.next().unwrap_or("0").to_string(),
    );
    let shim_rss = smaps_kb(&shim_pid, "Rss");
    // What the shim costs on its own: memory it does not share with the
    // agent and the other shims (heap, relocated data), and its share.
    let shim_private_dirty = smaps_kb(&shim_pid, "Private_Dirty");
    let shim_anon = smaps_kb(&shim_pid, "Anonymous");
    let shim_pss = smaps_kb(&shim_pid, "Pss");
    let pause_rss = smaps_kb(&pause_pid, "Rss");
    rt.remove_sandbox(&sb).await.expect("remove sandbox");

    let shim = median(&mut shim_ms);
    println!("container start+exit via shim (median of {runs}): {shim:.1} ms");
    if runc.is_some() {
        let r = median(&mut runc_ms);
        let ratio = r / shim;
        println!("runc run on the same bundle   (median of {runs}): {r:.1} ms");
        println!(
            "ratio runc/shim: {ratio:.2} (target >= {TARGET_RATIO}) {}",
            if ratio >= TARGET_RATIO {
                "OK"
            } else {
                "MISSED"
            }
        );
    } else {
        println!("runc not installed (apt-get install -y runc): no reference run");
    }
    println!(
        "shim RSS with one running container: {shim_rss} kB (target <= {TARGET_RSS_KB} kB) {}; pause process: {pause_rss} kB",
        if shim_rss <= TARGET_RSS_KB {
            "OK"
        } else {
            "MISSED"
        }
    );
    println!(
        "  shim: anonymous {shim_anon} kB, private dirty {shim_private_dirty} kB, PSS {shim_pss} kB"
    );
}
