//! The user's walkthrough (../shared/scenarios/seed-walkthrough.sh), through
//! conformance/walkthrough.sh, for the steps this stage of rk3s supports:
//! 1 (kubectl version), 2 (cluster-info), 4 (namespace).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn walkthrough_steps_1_2_4() {
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
            .env("STEPS", "1 2 4")
            .env("TMPDIR", env!("CARGO_TARGET_TMPDIR")),
        None,
        Duration::from_secs(300),
    );
    let out = common::stdout(&o);
    let last = out.lines().last().unwrap_or("");
    assert_eq!(
        last,
        "walkthrough: 3 passed, 0 failed",
        "walkthrough output:\n{out}\nstderr:\n{}",
        common::stderr(&o)
    );
    assert!(o.status.success());
    for step in ["ok   1 ", "ok   2 ", "ok   4 "] {
        assert!(out.contains(step), "step {step:?} did not pass:\n{out}");
    }
}
