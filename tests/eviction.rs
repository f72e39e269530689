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
