//! The per-pod shim gives back the pages of the rk3s binary it touched once
//! it is idle (src/runtime/shim/trim.rs), and keeps working afterwards:
//! exec, stop and the exit report all run code that has to fault back in.
//! As root, in a network namespace of the test's own.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::netns::TestNetns;
use rk3s::runtime::cri::*;
use rk3s::runtime::local::LocalRuntime;

/// A field of /proc/PID/status in kB.
fn status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new(common::RK3S)
            .args(["killall", "--data-dir"])
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_shim_gives_back_binary_pages_and_keeps_working() {
    let base = std::env::temp_dir().join(format!("rk3s-shimmem-{}", std::process::id()));
    let _cleanup = Cleanup(base.clone());
    let netns = TestNetns::create();
    let layer = base.join("layer");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(layer.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
    for a in ["sh", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(a)).unwrap();
    }
    let rt = LocalRuntime::new(base.join("agent"))
        .unwrap()
        .with_shim_binary(PathBuf::from(common::RK3S));
    let sb = rt
        .run_sandbox(&SandboxConfig {
            pod_name: "mem".into(),
            pod_namespace: "default".into(),
            hostname: "mem".into(),
            netns_path: Some(netns.path.clone()),
            cgroup_parent: format!("rk3s-test-shimmem-{}", std::process::id()),
            log_directory: base.join("logs"),
            ..Default::default()
        })
        .await
        .unwrap();
    let container = ContainerConfig {
        name: "c".into(),
        image: ImageSpec {
            layers: vec![layer.clone()],
            ..Default::default()
        },
        args: vec!["sleep".into(), "1000".into()],
        log_path: base.join("logs/c.log"),
        ..Default::default()
    };
    let id = rt.create_container(&sb, &container).await.unwrap();
    rt.start_container(&id).await.unwrap();
    let pids =
        std::fs::read_to_string(base.join("agent/sandboxes").join(&sb).join("shim.pid")).unwrap();
    let shim = pids.split_whitespace().next().unwrap().to_string();

    // Just after the start: libcontainer's code is mapped.
    let busy = status_kb(&shim, "RssFile");
    let idle_within = |limit: u64| {
        let shim = shim.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                let kb = status_kb(&shim, "RssFile");
                if kb <= limit || Instant::now() > end {
                    return kb;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let idle = idle_within(busy / 3).await;
    eprintln!("shim RssFile: {busy} kB after the start, {idle} kB idle");
    assert!(
        idle <= busy / 3,
        "the idle shim kept its file pages: RssFile {busy} kB after the start, {idle} kB idle"
    );

    // Everything still works: exec (a new process through libcontainer),
    // then stop, whose exit the shim reaps and reports.
    let out = rt
        .exec_sync(
            &id,
            &["echo".into(), "still here".into()],
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_slice()),
        (0, &b"still here\n"[..])
    );
    let after_exec = idle_within(busy / 3).await;
    assert!(
        after_exec <= busy / 3,
        "no trim after the exec: RssFile {after_exec} kB"
    );
    rt.stop_container(&id, Duration::from_secs(5))
        .await
        .unwrap();
    let st = rt.container_status(&id).await.unwrap();
    assert_eq!(st.state, ContainerState::Exited, "{st:?}");
    rt.remove_sandbox(&sb).await.unwrap();
}
