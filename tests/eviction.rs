//! Node-pressure eviction and image garbage collection by the node agent,
//! provoked as upstream's e2e tests do: the node is restarted with
//! thresholds the machine is certainly past (`--eviction-hard
//! memory.available<1000Ti`), its pods surviving the restart.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::process::Command;
use std::time::Duration;

use common::netns::TestNetns;
use common::{Server, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn import(s: &Server, name: &str) {
    registry::import(&s.data_dir, name);
}

/// `rk3s image ls` rows as "repository:tag".
fn images(s: &Server) -> Vec<String> {
    let o = Command::new(common::RK3S)
        .args(["image", "ls", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .expect("rk3s image ls");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(format!("{}:{}", f.first()?, f.get(1)?))
        })
        .collect()
}

fn has_image(list: &[String], name: &str) -> bool {
    list.iter().any(|i| i.ends_with(name))
}

#[track_caller]
fn wait_phase(s: &Server, pod: &str, phase: &str) -> Value {
    let mut p = Value::Null;
    let ok = wait_until(WAIT, || {
        p = s.k_json(&["get", "pod", pod]);
        p["status"]["phase"] == phase
    });
    assert!(
        ok,
        "{pod} not {phase}: {:#}\n{}",
        p["status"],
        s.log_tail(40)
    );
    p
}

fn condition<'a>(obj: &'a Value, t: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .unwrap_or(&Value::Null)
}

fn has_taint(node: &Value, key: &str) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|ts| {
        ts.iter()
            .any(|t| t["key"] == key && t["effect"] == "NoSchedule")
    })
}

#[track_caller]
fn wait_node(s: &Server, node: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut n = Value::Null;
    let ok = wait_until(WAIT, || {
        n = s.k_json(&["get", "node", node]);
        f(&n)
    });
    assert!(ok, "node: {what}: {n:#}\n{}", s.log_tail(30));
    n
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: requests}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: web
    image: rk3s-test/web:1
    resources:
      requests: {cpu: 100m, memory: 256Mi}
---
apiVersion: v1
kind: Pod
metadata: {name: besteffort}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: web
    image: rk3s-test/web:1
    command: ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]
"#;

/// Under memory pressure the node says MemoryPressure (and is tainted
/// memory-pressure:NoSchedule), and evicts its pods one at a time,
/// BestEffort (using more than the nothing it requests) before a pod
/// within its requests: each Failed with reason Evicted, upstream's
/// message, a DisruptionTarget condition, its containers killed at once
/// (despite a 30 s grace period), and an Evicted event.
#[test]
fn memory_pressure_evicts_best_effort_first() {
    let ns = TestNetns::create();
    let mut s = Server::builder().netns(&ns).start();
    import(&s, "web_1");
    let node = ns.name.clone();
    s.k_in(PODS, &["apply", "-f", "-"]);
    for p in ["requests", "besteffort"] {
        wait_phase(&s, p, "Running");
    }
    let n = s.k_json(&["get", "node", &node]);
    assert_eq!(condition(&n, "MemoryPressure")["status"], "False");

    // The node comes back with a threshold it is certainly under.
    s.stop();
    s.push_arg("--eviction-hard=memory.available<1000Ti");
    s.start_again();

    let n = wait_node(&s, &node, "MemoryPressure and its taint", |n| {
        condition(n, "MemoryPressure")["status"] == "True"
            && has_taint(n, "node.kubernetes.io/memory-pressure")
    });
    assert_eq!(
        condition(&n, "MemoryPressure")["reason"],
        "KubeletHasInsufficientMemory"
    );
    assert_eq!(condition(&n, "DiskPressure")["status"], "False");

    let be = wait_phase(&s, "besteffort", "Failed");
    // The pod within its requests is only evicted on a later pass.
    let g_now = s.k_json(&["get", "pod", "requests"]);
    assert_ne!(
        g_now["status"]["reason"], "Evicted",
        "requests went first or together: {:#}",
        g_now["status"]
    );
    assert_eq!(be["status"]["reason"], "Evicted");
    let msg = be["status"]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with(
            "The node was low on resource: memory. Threshold quantity: 1000Ti, available: "
        ),
        "{msg}"
    );
    assert!(
        msg.contains("Container web was using ")
            && msg.contains(", request is 0, has larger consumption of memory. "),
        "{msg}"
    );
    let dt = condition(&be, "DisruptionTarget");
    assert_eq!(dt["status"], "True", "{:#}", be["status"]);
    assert_eq!(dt["reason"], "TerminationByKubelet");
    // Killed at once (it ignores SIGTERM; its 30 s grace period does not
    // apply under a hard threshold), and reported so with the eviction.
    let term = &be["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 137, "{:#}", be["status"]);
    s.wait_event(
        "besteffort",
        "Evicted: The node was low on resource: memory",
        WAIT,
    );

    // Pressure stays: the other pod goes next, later.
    let g = wait_phase(&s, "requests", "Failed");
    assert_eq!(g["status"]["reason"], "Evicted");
    let t = |p: &Value| {
        condition(p, "DisruptionTarget")["lastTransitionTime"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(t(&be) < t(&g), "besteffort {} requests {}", t(&be), t(&g));
    // Within its request: no container named in the message.
    let gmsg = g["status"]["message"].as_str().unwrap_or("");
    assert!(!gmsg.contains("Container web"), "{gmsg}");
    // `kubectl get pods` shows them by their containers' ends, as upstream
    // does for evicted pods (the SIGTERM-deaf one was killed).
    let out = s.k(&["get", "pods", "--no-headers"]);
    let status = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(status("besteffort"), "Error", "{out}");
    assert_eq!(status("requests"), "Completed", "{out}");
}

/// Under disk pressure the node first removes unused images (an imported
/// image no pod uses goes, the one a pod runs stays), and then, still under
/// pressure, evicts the pod for ephemeral-storage.
#[test]
fn disk_pressure_removes_unused_images_before_evicting() {
    let ns = TestNetns::create();
    let mut s = Server::builder().netns(&ns).start();
    import(&s, "web_1");
    import(&s, "web_2");
    let node = ns.name.clone();
    s.k_in(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: web, image: rk3s-test/web:1}
"#,
        &["apply", "-f", "-"],
    );
    wait_phase(&s, "web", "Running");
    let before = images(&s);
    assert!(
        has_image(&before, "web:1") && has_image(&before, "web:2"),
        "{before:?}"
    );

    s.stop();
    s.push_arg("--eviction-hard=nodefs.available<1000Ti");
    // web:2 was imported seconds ago: let it be collected anyway.
    s.push_arg("--image-minimum-gc-age=0s");
    s.start_again();

    let n = wait_node(&s, &node, "DiskPressure and its taint", |n| {
        condition(n, "DiskPressure")["status"] == "True"
            && has_taint(n, "node.kubernetes.io/disk-pressure")
    });
    assert_eq!(
        condition(&n, "DiskPressure")["reason"],
        "KubeletHasDiskPressure"
    );
    assert_eq!(condition(&n, "MemoryPressure")["status"], "False");

    let p = wait_phase(&s, "web", "Failed");
    assert_eq!(p["status"]["reason"], "Evicted");
    let msg = p["status"]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with(
            "The node was low on resource: ephemeral-storage. Threshold quantity: 1000Ti, available: "
        ),
        "{msg}"
    );
    let after = images(&s);
    assert!(!has_image(&after, "web:2"), "unused image kept: {after:?}");
    assert!(
        has_image(&after, "web:1"),
        "image in use removed: {after:?}"
    );
    // Images went first, then the pod.
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    let gc = log.find("removing unused image");
    let evict = log.find("evicting pod");
    assert!(
        matches!((gc, evict), (Some(a), Some(b)) if a < b),
        "image GC {gc:?} eviction {evict:?}\n{}",
        s.log_tail(40)
    );
}

/// Image garbage collection by disk use: above `--image-gc-high-threshold`
/// the node removes unused images older than `--image-minimum-gc-age`, never
/// one its containers use, and says when it could not free enough; no pod
/// is evicted for it.
#[test]
fn image_gc_above_the_high_threshold_keeps_images_in_use() {
    let ns = TestNetns::create();
    let mut s = Server::builder().netns(&ns).start();
    import(&s, "web_1");
    import(&s, "web_2");
    let node = ns.name.clone();
    s.k_in(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: web, image: rk3s-test/web:1}
"#,
        &["apply", "-f", "-"],
    );
    wait_phase(&s, "web", "Running");
    assert!(has_image(&images(&s), "web:2"));

    // Any disk is more than 1% used; but web:2 is younger than the
    // default minimum age (2 min): collection runs and spares it.
    s.stop();
    s.push_arg("--image-gc-high-threshold=1");
    s.push_arg("--image-gc-low-threshold=0");
    s.start_again();
    s.wait_event(
        &node,
        "FreeDiskSpaceFailed: Failed to garbage collect required amount of images. Attempted to free ",
        WAIT,
    );
    assert!(has_image(&images(&s), "web:2"), "a young image was removed");

    s.stop();
    s.push_arg("--image-minimum-gc-age=0s");
    s.start_again();

    let mut list = Vec::new();
    assert!(
        wait_until(WAIT, || {
            list = images(&s);
            !has_image(&list, "web:2")
        }),
        "web:2 not collected: {list:?}\n{}",
        s.log_tail(30)
    );
    assert!(has_image(&list, "web:1"), "image in use removed: {list:?}");
    // Freeing down to 0% is impossible: a warning on the node, as upstream.
    s.wait_event(&node, "FreeDiskSpaceFailed: Failed to garbage collect required amount of images. Attempted to free ", WAIT);
    let p = s.k_json(&["get", "pod", "web"]);
    assert_eq!(p["status"]["phase"], "Running");
    // And a pod still starts from the image that was kept.
    s.k(&["run", "again", "--image=rk3s-test/web:1", "--restart=Never"]);
    wait_phase(&s, "again", "Running");
}

/// A tmpfs mounted over a server's agent directory, so a test controls
/// its free space (the nodefs signals); unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Stop `s`, move its agent directory onto a fresh tmpfs of `size`.
    fn under(s: &mut Server, size: &str) -> SmallDisk {
        s.stop();
        let agent = s.data_dir.join("agent");
        let aside = s.data_dir.join("agent.before");
        std::fs::rename(&agent, &aside).expect("move agent dir aside");
        std::fs::create_dir_all(&agent).expect("agent dir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "rk3s-test"])
            .arg(&agent)
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs");
        let disk = SmallDisk(agent.clone());
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", aside.display()))
            .arg(&agent)
            .status()
            .expect("cp");
        assert!(st.success(), "copy agent dir");
        disk
    }

    /// Take `mib` MiB of it (a file that `free` removes).
    fn fill(&self, mib: u32) {
        let st = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", self.0.join("filler").display()))
            .args(["bs=1M", &format!("count={mib}")])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("dd");
        assert!(st.success(), "fill the disk");
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).expect("remove filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A pod bound to the node directly (the pressure taints keep the
/// scheduler away), as a DaemonSet's or a static pod's would be.
fn bound_pod(name: &str, node: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: rk3s-test/web:1
{extra}
"#
    )
}

/// A pressure condition stays True for --eviction-pressure-transition-period
/// after its signal clears; while the node has DiskPressure a new pod is
/// refused (Failed, reason Evicted, upstream's "Pod was rejected" message,
/// an event), whatever its QoS class.
#[test]
fn disk_pressure_refuses_new_pods_and_outlives_its_signal() {
    let ns = TestNetns::create();
    let node = ns.name.clone();
    let mut s = Server::builder().netns(&ns).start();
    let disk = SmallDisk::under(&mut s, "256m");
    s.push_arg("--eviction-hard=nodefs.available<120Mi");
    s.push_arg("--eviction-pressure-transition-period=30s");
    s.start_again();
    let n = wait_node(&s, &node, "Ready", |n| {
        condition(n, "Ready")["status"] == "True"
    });
    assert_eq!(condition(&n, "DiskPressure")["status"], "False", "{n:#}");

    disk.fill(160);
    wait_node(&s, &node, "DiskPressure", |n| {
        condition(n, "DiskPressure")["status"] == "True"
    });
    s.k_in(
        &bound_pod(
            "refused",
            &node,
            "    resources: {requests: {cpu: 10m, memory: 16Mi}}",
        ),
        &["apply", "-f", "-"],
    );
    let p = wait_phase(&s, "refused", "Failed");
    assert_eq!(p["status"]["reason"], "Evicted", "{:#}", p["status"]);
    assert_eq!(
        p["status"]["message"], "Pod was rejected: The node had condition: [DiskPressure]. ",
        "{:#}",
        p["status"]
    );
    // Refused, not evicted: it never ran.
    assert!(
        condition(&p, "DisruptionTarget").is_null(),
        "{:#}",
        p["status"]
    );
    s.wait_event(
        "refused",
        "Evicted: The node had condition: [DiskPressure]. ",
        WAIT,
    );
    let out = s.k(&["get", "pod", "refused", "--no-headers"]);
    assert_eq!(out.split_whitespace().nth(2), Some("Evicted"), "{out}");

    // The signal clears; the condition holds for the transition period
    // (30 s; the last observation was at most one 10 s housekeeping
    // period before the file went).
    disk.free();
    let freed = std::time::Instant::now();
    wait_node(&s, &node, "DiskPressure cleared", |n| {
        condition(n, "DiskPressure")["status"] == "False"
    });
    let held = freed.elapsed();
    assert!(
        held >= Duration::from_secs(18),
        "DiskPressure cleared {held:?} after the disk was freed"
    );
}

/// Under MemoryPressure alone (a soft threshold the machine is past, with a
/// grace period long enough that nobody is evicted), a new BestEffort pod
/// is refused; a Burstable one and a BestEffort one tolerating the
/// memory-pressure taint run.
#[test]
fn memory_pressure_refuses_new_best_effort_pods() {
    let ns = TestNetns::create();
    let node = ns.name.clone();
    let s = Server::builder()
        .netns(&ns)
        .arg("--eviction-soft=memory.available<1000Ti")
        .arg("--eviction-soft-grace-period=memory.available=1h")
        .start();
    import(&s, "web_1");
    wait_node(&s, &node, "MemoryPressure", |n| {
        condition(n, "MemoryPressure")["status"] == "True"
            && has_taint(n, "node.kubernetes.io/memory-pressure")
    });
    s.k_in(&bound_pod("besteffort", &node, ""), &["apply", "-f", "-"]);
    s.k_in(
        &bound_pod(
            "burstable",
            &node,
            "    resources: {requests: {cpu: 10m, memory: 16Mi}}",
        ),
        &["apply", "-f", "-"],
    );
    let tolerating = bound_pod("tolerating", &node, "").replace(
        "  containers:",
        "  tolerations:\n  - {key: node.kubernetes.io/memory-pressure, operator: Exists, effect: NoSchedule}\n  containers:",
    );
    s.k_in(&tolerating, &["apply", "-f", "-"]);
    let p = wait_phase(&s, "besteffort", "Failed");
    assert_eq!(p["status"]["reason"], "Evicted");
    assert_eq!(
        p["status"]["message"],
        "Pod was rejected: The node had condition: [MemoryPressure]. "
    );
    // Nothing ran: no container statuses, `kubectl get` shows the reason.
    assert!(
        p["status"]["containerStatuses"].is_null(),
        "{:#}",
        p["status"]
    );
    let out = s.k(&["get", "pod", "besteffort", "--no-headers"]);
    assert_eq!(out.split_whitespace().nth(2), Some("Evicted"), "{out}");
    s.wait_event(
        "besteffort",
        "Evicted: The node had condition: [MemoryPressure]. ",
        WAIT,
    );
    wait_phase(&s, "burstable", "Running");
    wait_phase(&s, "tolerating", "Running");
}

/// A soft threshold evicts only once it has been met for its grace period,
/// and the evicted pod gets its own grace period capped by
/// --eviction-max-pod-grace-period (a SIGTERM-deaf pod asking for 30 s is
/// killed after 3), its preStop hook run first.
#[test]
fn soft_threshold_evicts_after_its_grace_period() {
    let ns = TestNetns::create();
    let node = ns.name.clone();
    let s = Server::builder()
        .netns(&ns)
        .arg("--eviction-soft=memory.available<1000Ti")
        .arg("--eviction-soft-grace-period=memory.available=25s")
        .arg("--eviction-max-pod-grace-period=3")
        .start();
    import(&s, "web_1");
    let out = s.root.join("prestop-out");
    std::fs::create_dir_all(&out).expect("hostPath dir");
    let n = wait_node(&s, &node, "MemoryPressure", |n| {
        condition(n, "MemoryPressure")["status"] == "True"
    });
    let since = condition(&n, "MemoryPressure")["lastTransitionTime"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let victim = bound_pod(
            "victim",
            &node,
            "    command: [\"sh\", \"-c\", \"trap '' TERM; while :; do sleep 1; done\"]\n    resources: {requests: {cpu: 10m, memory: 1Mi}}",
        )
        .replace("terminationGracePeriodSeconds: 1", "terminationGracePeriodSeconds: 30")
        .replace(
            "  containers:",
            &format!("  volumes:\n  - {{name: out, hostPath: {{path: {}}}}}\n  containers:", out.display()),
        )
        + "    volumeMounts: [{name: out, mountPath: /out}]\n    lifecycle: {preStop: {exec: {command: [\"sh\", \"-c\", \"echo stopping > /out/prestop\"]}}}\n";
    s.k_in(&victim, &["apply", "-f", "-"]);
    wait_phase(&s, "victim", "Running");
    let p = wait_phase(&s, "victim", "Failed");
    assert_eq!(p["status"]["reason"], "Evicted", "{:#}", p["status"]);
    let msg = p["status"]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("The node was low on resource: memory. Threshold quantity: 1000Ti"),
        "{msg}"
    );
    let secs = |t: &str| -> i64 {
        let o = Command::new("date")
            .args(["-d", t, "+%s"])
            .output()
            .expect("date");
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("time {t:?}"))
    };
    // Not before the grace period of the threshold.
    let ev = s.k_json(&["get", "events"]);
    let evicted_at = ev["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["involvedObject"]["name"] == "victim" && e["reason"] == "Evicted")
        .and_then(|e| e["firstTimestamp"].as_str())
        .unwrap_or_else(|| panic!("no Evicted event: {ev:#}"))
        .to_string();
    let waited = secs(&evicted_at) - secs(&since);
    assert!(
        waited >= 24,
        "evicted {waited} s after MemoryPressure began"
    );
    // SIGTERM ignored: killed after the capped 3 s, not the pod's 30 s.
    let term = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 137, "{:#}", p["status"]);
    let stopped_after = secs(term["finishedAt"].as_str().unwrap_or("")) - secs(&evicted_at);
    assert!(
        (2..=10).contains(&stopped_after),
        "killed {stopped_after} s after the eviction began"
    );
    let said = std::fs::read_to_string(out.join("prestop")).unwrap_or_default();
    assert_eq!(said.trim(), "stopping", "preStop did not run");
}

/// A bad `--eviction-hard` or image GC setting stops the server with a
/// message naming it.
#[test]
fn bad_eviction_settings_are_refused() {
    for (args, wanted) in [
        (
            vec!["--eviction-hard", "memory.free<1Gi"],
            "unsupported eviction signal",
        ),
        (
            vec!["--eviction-hard", "memory.available>1Gi"],
            "signal<quantity",
        ),
        (
            vec![
                "--image-gc-high-threshold",
                "50",
                "--image-gc-low-threshold",
                "60",
            ],
            "must be less than image-gc-high-threshold",
        ),
        (vec!["--image-gc-high-threshold", "101"], "percent"),
        (vec!["--image-minimum-gc-age", "soon"], "not a duration"),
        (
            vec!["--eviction-soft", "memory.available<1Gi"],
            "grace period must be specified for the soft eviction threshold memory.available",
        ),
        (
            vec!["--eviction-soft-grace-period", "memory.free=1m"],
            "unsupported eviction signal",
        ),
        (
            vec!["--eviction-soft-grace-period", "memory.available=soon"],
            "not a duration",
        ),
        (
            vec!["--eviction-max-pod-grace-period=-1"],
            "whole number of seconds",
        ),
        (
            vec!["--eviction-pressure-transition-period", "later"],
            "not a duration",
        ),
    ] {
        let o = Command::new(common::RK3S)
            .arg("server")
            .args(&args)
            .args(["--data-dir", "/nonexistent/rk3s-eviction-test"])
            .output()
            .expect("run rk3s");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(err.contains(wanted), "{args:?}: {err}");
    }
}
