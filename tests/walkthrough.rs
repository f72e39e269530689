//! The user's walkthrough (../shared/scenarios/seed-walkthrough.sh), through
//! conformance/walkthrough.sh (a server with its node agent inside a network
//! namespace of its own, the test images imported), for the steps this
//! stage of rk3s supports: 1-13 (cluster, nodes, a Deployment of real
//! containers, describe, logs, exec, proxy, port-forward) and 16-24
//! (rollouts, ReplicaSets, GC, ConfigMaps and Secrets, PVCs, liveness
//! probes, DaemonSets, Jobs, StatefulSets).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const STEPS: &str = "1 2 3 4 5 6 7 8 9 10 11 12 13 16 17 18 19 20 21 22 23 24 26 30";

#[test]
fn walkthrough_supported_steps() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = repo.join("../shared");
    let scenario = shared.join("scenarios/seed-walkthrough.sh");
    assert!(
        scenario.exists(),
        "{} is missing: the walkthrough lives in ../shared beside the repo",
        scenario.display()
    );
    let o = common::run(
        Command::new("bash")
            .arg(repo.join("conformance/walkthrough.sh"))
            .env("RK3S_BIN", common::RK3S)
            .env("SHARED", &shared)
            .env("STEPS", STEPS)
            .env("TMPDIR", env!("CARGO_TARGET_TMPDIR")),
        None,
        Duration::from_secs(900),
    );
    let out = common::stdout(&o);
    let n = STEPS.split_whitespace().count();
    let last = out.lines().last().unwrap_or("");
    assert_eq!(
        last,
        format!("walkthrough: {n} passed, 0 failed"),
        "walkthrough output:\n{out}\nstderr:\n{}",
        common::stderr(&o)
    );
    assert!(o.status.success());
    for step in STEPS.split_whitespace() {
        let want = format!("ok   {step} ");
        assert!(out.contains(&want), "step {step} did not pass:\n{out}");
    }
}
