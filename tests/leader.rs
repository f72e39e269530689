//! Leader election with the real binary: the controllers and the scheduler
//! hold upstream-shaped Leases in kube-system, a restarted server resumes
//! its own lease at once, and a server whose lease is taken stops its
//! controllers until the lease expires and it wins it back.

mod common;

use std::time::{Duration, Instant};

use common::{Server, wait_until};
use serde_json::Value;

fn lease(s: &Server, name: &str) -> Value {
    s.k_json(&["-n", "kube-system", "get", "lease", name, "-o", "json"])
}

fn wait_lease(s: &Server, name: &str) -> Value {
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            let o = s.kubectl(&["-n", "kube-system", "get", "lease", name, "-o", "json"]);
            if !o.status.success() {
                return false;
            }
            last = common::json(&common::stdout(&o));
            true
        }),
        "lease {name} never appeared"
    );
    last
}

fn has_replicaset(s: &Server, deployment: &str) -> bool {
    !s.k(&[
        "get",
        "rs",
        "-l",
        &format!("app={deployment}"),
        "-o",
        "name",
    ])
    .trim()
    .is_empty()
}

fn is_micro_time(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|t| t.len() == "2024-01-01T00:00:00.000000Z".len() && t.ends_with('Z'))
}

#[test]
fn leases_restart_and_step_down() {
    let mut s = Server::start();
    let cm = wait_lease(&s, "rk3s-controller-manager");
    let sched = wait_lease(&s, "rk3s-scheduler");
    let holder = cm["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or("")
        .to_string();
    // <hostname>_<uuid>, one identity per server.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let (h, id) = holder.rsplit_once('_').unwrap_or(("", ""));
    assert_eq!(h, host.trim(), "{cm}");
    assert_eq!(id.len(), 36, "{cm}");
    assert_eq!(sched["spec"]["holderIdentity"], holder.as_str());
    for l in [&cm, &sched] {
        assert_eq!(l["spec"]["leaseDurationSeconds"], 15, "{l}");
        assert_eq!(l["spec"]["leaseTransitions"], 0, "{l}");
        assert!(is_micro_time(&l["spec"]["acquireTime"]), "{l}");
        assert!(is_micro_time(&l["spec"]["renewTime"]), "{l}");
    }
    // kubectl's table: NAME HOLDER AGE.
    let rows = s.k(&["-n", "kube-system", "get", "leases", "--no-headers"]);
    assert!(
        rows.lines()
            .any(|l| common::squeeze(l).starts_with(&format!("rk3s-controller-manager {holder} "))),
        "{rows}"
    );
    // Renewed every retry period (2 s).
    let first = cm["spec"]["renewTime"].clone();
    assert!(
        wait_until(Duration::from_secs(10), || lease(
            &s,
            "rk3s-controller-manager"
        )["spec"]["renewTime"]
            != first),
        "lease never renewed"
    );

    // A restarted server knows its own lease: no wait for expiry.
    s.restart();
    let started = Instant::now();
    s.k(&["create", "deployment", "after-restart", "--image=busybox"]);
    assert!(
        wait_until(Duration::from_secs(10), || has_replicaset(
            &s,
            "after-restart"
        )),
        "controllers did not resume after a restart"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let cm = lease(&s, "rk3s-controller-manager");
    assert_eq!(cm["spec"]["holderIdentity"], holder.as_str());
    assert_eq!(cm["spec"]["leaseTransitions"], 0);

    // Someone else takes the lease (another server sharing the store):
    // this one steps down within the renew deadline...
    let mut usurped = cm.clone();
    usurped["spec"]["holderIdentity"] = "intruder_1".into();
    let body = usurped.to_string();
    s.k_in(&body, &["replace", "-f", "-"]);
    assert!(
        wait_until(Duration::from_secs(20), || s
            .log_tail(200)
            .contains("leader election lost")),
        "never stepped down:\n{}",
        s.log_tail(40)
    );
    // ...so no controller acts on a new Deployment...
    s.k(&["create", "deployment", "while-away", "--image=busybox"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !has_replicaset(&s, "while-away"),
        "a controller ran without the lease"
    );
    // ...until the intruder's lease expires (it never renews) and this
    // server wins it back.
    assert!(
        wait_until(Duration::from_secs(30), || has_replicaset(&s, "while-away")),
        "controllers never resumed"
    );
    let cm = lease(&s, "rk3s-controller-manager");
    assert_eq!(cm["spec"]["holderIdentity"], holder.as_str(), "{cm}");
    assert_eq!(cm["spec"]["leaseTransitions"], 1, "{cm}");
}
