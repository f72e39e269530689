//! The container runtime driven directly through `LocalRuntime` (the CRI
//! trait), as root, with a root filesystem made of busybox-static as its
//! single image layer. Each test's pod joins a network namespace of its
//! own (hermetic: nothing leaves the machine), and `rk3s killall` cleans
//! up after it, checked for leftover mounts, cgroups and processes.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::netns::TestNetns;
use rk3s::runtime::cri::*;
use rk3s::runtime::local::LocalRuntime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "sleep", "id", "ls", "ps", "pwd", "hostname", "dd", "touch", "grep",
    "true", "false", "env", "wc", "chown", "stty", "tty", "head", "tr", "kill", "unshare",
];

/// One test's world: a busybox layer, an agent dir, a netns; cleaned by
/// `rk3s killall` and checked on drop.
struct Fixture {
    base: PathBuf,
    layer: PathBuf,
    netns: TestNetns,
    cgroup_parent: String,
}

impl Fixture {
    fn new() -> Fixture {
        let base = std::env::temp_dir().join(format!(
            "rk3s-rt-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let layer = base.join("layer");
        for d in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
            std::fs::create_dir_all(layer.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", layer.join("bin").join(a)).unwrap();
        }
        std::fs::write(
            layer.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            layer.join("etc/group"),
            "root:x:0:\nwww:x:34:\nstaff:x:50:www\n",
        )
        .unwrap();
        let cgroup_parent = format!("rk3s-test-pod{}", uuid::Uuid::new_v4().simple());
        Fixture {
            base,
            layer,
            netns: TestNetns::create(),
            cgroup_parent,
        }
    }

    fn agent_dir(&self) -> PathBuf {
        self.base.join("agent")
    }

    fn runtime(&self) -> LocalRuntime {
        LocalRuntime::new(self.agent_dir())
            .unwrap()
            .with_shim_binary(PathBuf::from(common::RK3S))
    }

    fn sandbox(&self, name: &str) -> SandboxConfig {
        SandboxConfig {
            pod_uid: uuid::Uuid::new_v4().to_string(),
            pod_name: name.into(),
            pod_namespace: "default".into(),
            hostname: name.into(),
            netns_path: Some(self.netns.path.clone()),
            cgroup_parent: self.cgroup_parent.clone(),
            log_directory: self.base.join("logs"),
            labels: BTreeMap::from([("io.kubernetes.pod.name".to_string(), name.to_string())]),
            ..Default::default()
        }
    }

    fn container(&self, name: &str, args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            name: name.into(),
            image: ImageSpec {
                reference: "busybox".into(),
                image_id: "busybox@sha256:test".into(),
                layers: vec![self.layer.clone()],
                stop_signal: None,
            },
            args: args.iter().map(|s| s.to_string()).collect(),
            log_path: self.base.join("logs").join(name).join("0.log"),
            ..Default::default()
        }
    }

    /// Run one container to its end in a fresh sandbox; its status and log.
    async fn run_to_end(&self, rt: &LocalRuntime, c: ContainerConfig) -> (ContainerStatus, String) {
        let sb = rt.run_sandbox(&self.sandbox("p")).await.unwrap();
        let id = rt.create_container(&sb, &c).await.unwrap();
        rt.start_container(&id).await.unwrap();
        let st = wait_exited(rt, &id).await;
        (st, std::fs::read_to_string(&c.log_path).unwrap_or_default())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::env::var_os("RK3S_KEEP_TEST_DIRS").is_some() {
            eprintln!("kept {}", self.base.display());
            return;
        }
        let out = std::process::Command::new(common::RK3S)
            .args(["killall", "--data-dir"])
            .arg(&self.base)
            .output()
            .unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let leaked_mounts: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(&*self.base.to_string_lossy()))
            .collect();
        let cg = Path::new("/sys/fs/cgroup/memory").join(&self.cgroup_parent);
        let cg_left = cg.exists();
        let _ = std::fs::remove_dir_all(&self.base);
        if !std::thread::panicking() {
            assert!(
                out.status.success(),
                "killall: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(leaked_mounts.is_empty(), "mounts left: {leaked_mounts:?}");
            assert!(!cg_left, "cgroup left: {}", cg.display());
        }
    }
}

/// The process no longer runs (gone, or a zombie waiting for its reaper).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_exited(rt: &LocalRuntime, id: &ContainerId) -> ContainerStatus {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let st = rt.container_status(id).await.unwrap();
        if st.state == ContainerState::Exited {
            return st;
        }
        assert!(Instant::now() < end, "container did not exit: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The message parts of a CRI log: (stream, tag, content).
fn cri_lines(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            assert!(
                f[0].parse::<jiff::Timestamp>().is_ok(),
                "bad timestamp in {l:?}"
            );
            (
                f[1].to_string(),
                f[2].to_string(),
                f.get(3).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

fn content(log: &str) -> Vec<String> {
    cri_lines(log).into_iter().map(|(_, _, c)| c).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_exit_code_and_cri_logs() {
    let f = Fixture::new();
    let rt = f.runtime();
    let mut events = rt.subscribe();
    let c = f.container(
        "app",
        &["sh", "-c", "echo hello; echo oops >&2; printf tail; exit 3"],
    );
    let (st, log) = f.run_to_end(&rt, c).await;
    assert_eq!(st.exit_code, Some(3));
    assert!(st.reason.is_none());
    assert!(st.started_at.is_some() && st.finished_at.is_some());
    let lines = cri_lines(&log);
    assert!(
        lines.contains(&("stdout".into(), "F".into(), "hello".into())),
        "{log}"
    );
    assert!(
        lines.contains(&("stderr".into(), "F".into(), "oops".into())),
        "{log}"
    );
    assert!(
        lines.contains(&("stdout".into(), "F".into(), "tail".into())),
        "{log}"
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.container_id, st.id);
    assert_eq!(ev.status.exit_code, Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn env_cwd_user_and_hostname() {
    let f = Fixture::new();
    let rt = f.runtime();
    let mut c = f.container(
        "app",
        &[
            "sh",
            "-c",
            "echo $FOO; pwd; id -u; id -g; id -G; hostname; echo $HOSTNAME",
        ],
    );
    c.env = vec![("FOO".into(), "bar".into())];
    c.working_dir = Some("/work/dir".into());
    c.image_user = Some("www".into());
    let (st, log) = f.run_to_end(&rt, c).await;
    assert_eq!(st.exit_code, Some(0), "{log}");
    assert_eq!(
        content(&log),
        ["bar", "/work/dir", "33", "34", "34 50", "p", "p"]
    );

    let mut c = f.container("app2", &["sh", "-c", "id -u; id -g"]);
    c.security.run_as_user = Some(1000);
    c.security.run_as_group = Some(2000);
    let (_, log) = f.run_to_end(&rt, c).await;
    assert_eq!(content(&log), ["1000", "2000"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_and_exec_with_and_without_tty() {
    let f = Fixture::new();
    let rt = f.runtime();
    let sb = rt.run_sandbox(&f.sandbox("p")).await.unwrap();
    let id = rt
        .create_container(&sb, &f.container("app", &["sleep", "1000"]))
        .await
        .unwrap();
    rt.start_container(&id).await.unwrap();
    assert_eq!(
        rt.container_status(&id).await.unwrap().state,
        ContainerState::Running
    );

    let out = rt
        .exec_sync(
            &id,
            &[
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 5".into(),
            ],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()),
        (5, &b"out\n"[..], &b"err\n"[..])
    );

    // A probe that outlives its timeout is an error, and is killed.
    let t = Instant::now();
    let err = rt
        .exec_sync(&id, &["sleep".into(), "30".into()], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));

    // A missing command in exec is an error with runc's wording.
    let err = rt
        .exec_sync(&id, &["nope".into()], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("executable file not found in $PATH"),
        "{err}"
    );

    // Without a TTY: stdin to stdout, EOF on shutdown, exit code.
    let req = ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), "cat; exit 4".into()],
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let mut s = rt.exec(&id, req).await.unwrap();
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"ping\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    drop(stdin);
    let mut got = String::new();
    s.stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .await
        .unwrap();
    assert_eq!(got, "ping\n");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), s.exit)
            .await
            .unwrap()
            .unwrap(),
        4
    );

    // With a TTY: a terminal, resizes reach it.
    let req = ExecRequest {
        cmd: vec!["sh".into()],
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let mut s = rt.exec(&id, req).await.unwrap();
    assert!(s.stderr.is_none());
    s.resize
        .as_ref()
        .unwrap()
        .send(TerminalSize {
            width: 123,
            height: 45,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"tty; stty size; exit 7\n").await.unwrap();
    let mut out = s.stdout.take().unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), out.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.contains("/dev/pts/"), "{got}");
    assert!(got.contains("45 123"), "{got}");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), s.exit)
            .await
            .unwrap()
            .unwrap(),
        7
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_to_a_container_with_stdin() {
    let f = Fixture::new();
    let rt = f.runtime();
    let sb = rt.run_sandbox(&f.sandbox("p")).await.unwrap();
    let mut c = f.container("app", &["sh", "-c", "read line; echo got $line; exit 2"]);
    c.stdin = true;
    c.stdin_once = true;
    let id = rt.create_container(&sb, &c).await.unwrap();
    rt.start_container(&id).await.unwrap();
    let mut s = rt.attach(&id, true, false).await.unwrap();
    s.stdin.take().unwrap().write_all(b"hi\n").await.unwrap();
    let mut got = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        s.stdout.take().unwrap().read_to_string(&mut got),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(got, "got hi\n");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), s.exit)
            .await
            .unwrap()
            .unwrap(),
        2
    );
    let log = std::fs::read_to_string(&c.log_path).unwrap();
    assert_eq!(content(&log), ["got hi"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_is_sigterm_then_sigkill_after_the_grace_period() {
    let f = Fixture::new();
    let rt = f.runtime();
    let sb = rt.run_sandbox(&f.sandbox("p")).await.unwrap();
    // PID 1 without a handler ignores SIGTERM: only SIGKILL ends it.
    let stubborn = rt
        .create_container(&sb, &f.container("stubborn", &["sleep", "1000"]))
        .await
        .unwrap();
    rt.start_container(&stubborn).await.unwrap();
    let polite = rt
        .create_container(
            &sb,
            &f.container(
                "polite",
                &[
                    "sh",
                    "-c",
                    "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
                ],
            ),
        )
        .await
        .unwrap();
    rt.start_container(&polite).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t = Instant::now();
    rt.stop_container(&polite, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let st = rt.container_status(&polite).await.unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, Some(0)));

    let t = Instant::now();
    rt.stop_container(&stubborn, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
    let st = rt.container_status(&stubborn).await.unwrap();
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::Exited, Some(137))
    );
    assert!(st.reason.is_none());

    rt.remove_container(&stubborn).await.unwrap();
    assert!(matches!(
        rt.container_status(&stubborn).await,
        Err(RuntimeError::NotFound(_))
    ));
    rt.remove_sandbox(&sb).await.unwrap();
    assert!(rt.list_sandboxes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_limit_ends_in_oomkilled() {
    let f = Fixture::new();
    let rt = f.runtime();
    let mut c = f.container(
        "hog",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"],
    );
    c.resources.memory_limit = Some(32 << 20);
    let (st, log) = f.run_to_end(&rt, c).await;
    assert_eq!(st.exit_code, Some(137), "{log}");
    assert_eq!(st.reason.as_deref(), Some("OOMKilled"));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_binary_is_a_start_error() {
    let f = Fixture::new();
    let rt = f.runtime();
    let sb = rt.run_sandbox(&f.sandbox("p")).await.unwrap();
    let id = rt
        .create_container(&sb, &f.container("app", &["no-such-command", "x"]))
        .await
        .unwrap();
    let err = rt.start_container(&id).await.unwrap_err();
    match &err {
        RuntimeError::StartFailed(m) => {
            assert!(
                m.contains("exec: \"no-such-command\": executable file not found in $PATH"),
                "{m}"
            )
        }
        e => panic!("{e:?}"),
    }
    let st = rt.container_status(&id).await.unwrap();
    assert_eq!(st.state, ContainerState::Exited);
    assert_eq!(st.exit_code, Some(128));
    assert_eq!(st.reason.as_deref(), Some("StartError"));
    // The sandbox goes on: another container starts fine.
    let ok = rt
        .create_container(&sb, &f.container("ok", &["true"]))
        .await
        .unwrap();
    rt.start_container(&ok).await.unwrap();
    assert_eq!(wait_exited(&rt, &ok).await.exit_code, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn security_readonly_rootfs_capabilities_and_masked_proc() {
    let f = Fixture::new();
    let rt = f.runtime();
    let mut c = f.container(
        "ro",
        &[
            "sh",
            "-c",
            "touch /x || echo denied; touch /tmp/y || echo denied-tmp",
        ],
    );
    c.security.readonly_rootfs = true;
    let (_, log) = f.run_to_end(&rt, c).await;
    let text = content(&log).join("\n");
    assert!(
        text.contains("Read-only file system") && text.contains("denied"),
        "{text}"
    );

    // CapBnd bit 0 is CAP_CHOWN.
    let cap_cmd = [
        "sh",
        "-c",
        "grep CapBnd /proc/self/status; chown 1 /tmp && echo chowned",
    ];
    let (_, log) = f.run_to_end(&rt, f.container("caps", &cap_cmd)).await;
    let text = content(&log).join("\n");
    assert!(text.contains("chowned"), "{text}");
    let mut c = f.container("nocaps", &cap_cmd);
    c.security.capabilities_drop = vec!["CHOWN".into()];
    c.security.capabilities_add = vec!["NET_ADMIN".into()];
    let (_, log) = f.run_to_end(&rt, c).await;
    let text = content(&log).join("\n");
    assert!(!text.contains("chowned"), "{text}");
    let bnd = text.lines().find(|l| l.starts_with("CapBnd")).unwrap();
    let bits = u64::from_str_radix(bnd.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(bits & 1, 0, "{bnd}");
    assert_ne!(bits & (1 << 12), 0, "NET_ADMIN {bnd}");

    let (_, log) = f
        .run_to_end(
            &rt,
            f.container("proc", &["sh", "-c", "wc -c < /proc/keys; wc -c < /proc/timer_list; echo 1 > /proc/sys/kernel/shm_rmid_forced || echo ro-sys"]),
        )
        .await;
    let text = content(&log);
    // Both have content on the host; masked, they read as empty.
    assert!(!std::fs::read("/proc/timer_list").unwrap().is_empty());
    assert_eq!(&text[..2], ["0", "0"], "{text:?}");
    assert!(text.iter().any(|l| l == "ro-sys"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_cannot_see_host_processes_or_mounts() {
    let f = Fixture::new();
    let rt = f.runtime();
    let c = f.container("ps", &["sh", "-c", "ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep -c . /proc/mounts"]);
    let (_, log) = f.run_to_end(&rt, c).await;
    let text = content(&log);
    // Only its own shell and the `ls` pipeline: far from the host's count.
    let procs: usize = text[0].parse().unwrap();
    assert!(procs <= 4, "{text:?}");
    assert!(text[1].starts_with("sh -c"), "{text:?}");
    let host_mounts = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .count();
    let mounts: usize = text[2].parse().unwrap();
    assert!(
        mounts < host_mounts + 5 && !log.contains(&*f.base.to_string_lossy()),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shims_survive_the_agent_and_killall_cleans_up() {
    let f = Fixture::new();
    let rt = f.runtime();
    let sb = rt.run_sandbox(&f.sandbox("p")).await.unwrap();
    let id = rt
        .create_container(&sb, &f.container("app", &["sleep", "1000"]))
        .await
        .unwrap();
    rt.start_container(&id).await.unwrap();
    let pid = rt.container_status(&id).await.unwrap().pid.unwrap();
    drop(rt);

    // A new agent finds the sandbox and its running container.
    let rt = f.runtime();
    let mut events = rt.subscribe();
    let sandboxes = rt.list_sandboxes().await.unwrap();
    assert_eq!(sandboxes.len(), 1);
    assert!(sandboxes[0].ready);
    assert_eq!(sandboxes[0].labels["io.kubernetes.pod.name"], "p");
    let cs = rt.list_containers(&sb).await.unwrap();
    assert_eq!(cs.len(), 1);
    assert_eq!(
        (cs[0].state, cs[0].pid),
        (ContainerState::Running, Some(pid))
    );
    let out = rt
        .exec_sync(
            &id,
            &["echo".into(), "still here".into()],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, b"still here\n");
    // And hears about its exit.
    rt.stop_container(&id, Duration::from_secs(0))
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.status.exit_code, Some(137));

    let id2 = rt
        .create_container(&sb, &f.container("app2", &["sleep", "1000"]))
        .await
        .unwrap();
    rt.start_container(&id2).await.unwrap();
    let pid2 = rt.container_status(&id2).await.unwrap().pid.unwrap();
    drop(rt);
    let shim_pids =
        std::fs::read_to_string(f.agent_dir().join("sandboxes").join(&sb).join("shim.pid"))
            .unwrap();

    let out = std::process::Command::new(common::RK3S)
        .args(["killall", "--data-dir"])
        .arg(&f.base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Killed; the host's init reaps what the dead shim no longer can.
    for p in shim_pids
        .split_whitespace()
        .chain([pid2.to_string().as_str()])
    {
        assert!(
            common::wait_until(Duration::from_secs(10), || gone(p)),
            "process {p} left"
        );
    }
    assert!(!f.agent_dir().join("sandboxes").join(&sb).exists());
    // Drop checks mounts and cgroups.
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_process_namespace_and_sysctls() {
    let f = Fixture::new();
    let rt = f.runtime();
    let mut sc = f.sandbox("p");
    sc.share_process_namespace = true;
    sc.sysctls = BTreeMap::from([("kernel.shm_rmid_forced".to_string(), "1".to_string())]);
    let sb = rt.run_sandbox(&sc).await.unwrap();
    let a = rt
        .create_container(&sb, &f.container("a", &["sleep", "1000"]))
        .await
        .unwrap();
    rt.start_container(&a).await.unwrap();
    let b = f.container("b", &["sh", "-c", "cat /proc/1/comm; ps -o args | grep -c '^sleep 1000'; cat /proc/sys/kernel/shm_rmid_forced"]);
    let id = rt.create_container(&sb, &b).await.unwrap();
    rt.start_container(&id).await.unwrap();
    wait_exited(&rt, &id).await;
    let log = std::fs::read_to_string(&b.log_path).unwrap();
    // PID 1 is the sandbox's pause process; the other container is visible.
    assert_eq!(content(&log), ["rk3s-pause", "1", "1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn seccomp_runtime_default_denies_unshare() {
    let f = Fixture::new();
    let rt = f.runtime();
    // Creating a user namespace needs no capability: only seccomp stops it.
    let cmd = ["sh", "-c", "unshare -U true && echo unshared"];
    let mut c = f.container("unconfined", &cmd);
    let (_, log) = f.run_to_end(&rt, c.clone()).await;
    assert_eq!(content(&log), ["unshared"], "{log}");
    c.name = "confined".into();
    c.log_path = f.base.join("logs/confined/0.log");
    c.security.seccomp = Seccomp::RuntimeDefault;
    let (_, log) = f.run_to_end(&rt, c).await;
    let text = content(&log).join("\n");
    assert!(
        !text.contains("unshared") && text.contains("Operation not permitted"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_reach_the_cgroups() {
    let f = Fixture::new();
    let rt = f.runtime();
    let mut sc = f.sandbox("p");
    sc.resources = LinuxResources {
        memory_limit: Some(256 << 20),
        cpu_shares: Some(512),
        ..Default::default()
    };
    let sb = rt.run_sandbox(&sc).await.unwrap();
    let mut c = f.container("app", &["sleep", "1000"]);
    c.resources = LinuxResources {
        cpu_shares: Some(256),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        memory_limit: Some(64 << 20),
        pids_limit: Some(42),
        oom_score_adj: Some(900),
    };
    let id = rt.create_container(&sb, &c).await.unwrap();
    rt.start_container(&id).await.unwrap();
    let pid = rt.container_status(&id).await.unwrap().pid.unwrap();
    let read = |ctrl: &str, rel: &str| {
        std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(ctrl).join(rel))
            .unwrap()
            .trim()
            .to_string()
    };
    let pod = f.cgroup_parent.clone();
    let ctr = format!("{pod}/{id}");
    assert_eq!(
        read("memory", &format!("{pod}/memory.limit_in_bytes")),
        (256u64 << 20).to_string()
    );
    assert_eq!(read("cpu", &format!("{pod}/cpu.shares")), "512");
    assert_eq!(
        read("memory", &format!("{ctr}/memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(read("cpu", &format!("{ctr}/cpu.shares")), "256");
    assert_eq!(read("cpu", &format!("{ctr}/cpu.cfs_quota_us")), "50000");
    assert_eq!(read("pids", &format!("{ctr}/pids.max")), "42");
    assert!(
        read("pids", &format!("{ctr}/cgroup.procs"))
            .lines()
            .any(|l| l == pid.to_string())
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim(),
        "900"
    );
    let stats = rt.container_stats(&id).await.unwrap();
    assert!(
        stats.memory_usage_bytes > 0 && stats.timestamp_unix_nanos > 0,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_limit_too_small_to_start_leaks_nothing() {
    let f = Fixture::new();
    let rt = f.runtime();
    let sb = rt.run_sandbox(&f.sandbox("p")).await.unwrap();
    let mut c = f.container("tiny", &["sh", "-c", "echo started"]);
    c.resources.memory_limit = Some(256 << 10);
    let id = rt.create_container(&sb, &c).await.unwrap();
    let started = rt.start_container(&id).await;
    let st = wait_exited(&rt, &id).await;
    match started {
        Err(RuntimeError::StartFailed(_)) => {
            assert_eq!(
                (st.exit_code, st.reason.as_deref()),
                (Some(128), Some("StartError"))
            )
        }
        Ok(()) => assert_eq!(
            (st.exit_code, st.reason.as_deref()),
            (Some(137), Some("OOMKilled")),
            "{st:?}"
        ),
        Err(e) => panic!("{e:?}"),
    }
    // The sandbox carries on; removal leaves no cgroup behind.
    rt.remove_container(&id).await.unwrap();
    assert!(
        !Path::new("/sys/fs/cgroup/memory")
            .join(&f.cgroup_parent)
            .join(&id)
            .exists()
    );
    let ok = rt
        .create_container(&sb, &f.container("ok", &["true"]))
        .await
        .unwrap();
    rt.start_container(&ok).await.unwrap();
    assert_eq!(wait_exited(&rt, &ok).await.exit_code, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_rotate_by_size_and_count() {
    let f = Fixture::new();
    let rt = f.runtime().with_log_rotation(4096, 3);
    let c = f.container(
        "chatty",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    let (st, log) = f.run_to_end(&rt, c.clone()).await;
    assert_eq!(st.exit_code, Some(0));
    assert!(log.len() <= 4096, "{}", log.len());
    assert_eq!(content(&log).last().map(String::as_str), Some("line 399"));
    let dir = c.log_path.parent().unwrap();
    let files = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(files, 3, "the live file and two rotated ones");
}

#[tokio::test(flavor = "multi_thread")]
async fn privileged_containers_get_the_host_devices() {
    let f = Fixture::new();
    let rt = f.runtime();
    // Host devices that are no runtime default, and a read of /dev/kmsg
    // (the devices cgroup must allow it, not only the node exist).
    let script =
        "ls /dev; dd if=/dev/kmsg of=/dev/null bs=8192 count=1 2>/dev/null && echo kmsg-readable";
    assert!(Path::new("/dev/kmsg").exists() && Path::new("/dev/loop-control").exists());
    let mut c = f.container("priv", &["sh", "-c", script]);
    c.security.privileged = true;
    let (st, log) = f.run_to_end(&rt, c).await;
    let text = content(&log);
    assert_eq!(st.exit_code, Some(0), "{text:?}");
    for dev in ["kmsg", "loop-control", "kmsg-readable"] {
        assert!(text.iter().any(|l| l == dev), "{dev} in {text:?}");
    }
    // Its /dev is still its own tmpfs, not the host's: no console.
    assert!(!text.iter().any(|l| l == "console"), "{text:?}");

    let (_, log) = f
        .run_to_end(&rt, f.container("plain", &["sh", "-c", script]))
        .await;
    let text = content(&log);
    assert!(text.iter().any(|l| l == "null"), "{text:?}");
    assert!(
        !text.iter().any(|l| l == "kmsg" || l == "loop-control"),
        "{text:?}"
    );
    assert!(!text.iter().any(|l| l == "kmsg-readable"), "{text:?}");

    // Making the node itself (CAP_MKNOD is a default capability; /dev is
    // a tmpfs without nodev) does not help: the devices cgroup denies all
    // but the runtime's defaults.
    let (_, log) = f
        .run_to_end(
            &rt,
            f.container(
                "mknod",
                &[
                    "sh",
                    "-c",
                    "mknod /dev/kmsg c 1 11 && echo made; dd if=/dev/kmsg of=/dev/null bs=8192 count=1 && echo kmsg-readable; echo x > /dev/null && echo null-ok",
                ],
            ),
        )
        .await;
    let text = content(&log);
    assert!(text.iter().any(|l| l == "made"), "{text:?}");
    assert!(text.iter().any(|l| l == "null-ok"), "{text:?}");
    assert!(!text.iter().any(|l| l == "kmsg-readable"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_sends_the_image_stop_signal() {
    let f = Fixture::new();
    let rt = f.runtime();
    let sb = rt.run_sandbox(&f.sandbox("p")).await.unwrap();
    // Ignores SIGTERM, ends at once on SIGUSR1.
    let script = "trap '' TERM; trap 'echo got-usr1; exit 0' USR1; while true; do sleep 0.1; done";
    let mut c = f.container("usr1", &["sh", "-c", script]);
    c.image.stop_signal = Some("SIGUSR1".into());
    let id = rt.create_container(&sb, &c).await.unwrap();
    rt.start_container(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    rt.stop_container(&id, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let st = rt.container_status(&id).await.unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, Some(0)));
    let log = std::fs::read_to_string(&c.log_path).unwrap();
    assert!(content(&log).iter().any(|l| l == "got-usr1"), "{log}");

    // The same script without a StopSignal waits out its grace period.
    let mut c = f.container("term", &["sh", "-c", script]);
    c.log_path = f.base.join("logs/term/0.log");
    let id = rt.create_container(&sb, &c).await.unwrap();
    rt.start_container(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    rt.stop_container(&id, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
    let st = rt.container_status(&id).await.unwrap();
    assert_eq!(st.exit_code, Some(137));
    rt.remove_sandbox(&sb).await.unwrap();
}
