//! The CronJob controller through real kubectl: a schedule that fires (this
//! one waits for the next minute), Jobs made by hand from a CronJob with
//! `kubectl create job --from`, and the history limits. Scheduling rules
//! (concurrency policies, deadlines, missed runs, time zones) are unit tests
//! in src/controllers/cronjob.rs with an injected clock.

mod common;

use std::time::Duration;

use common::{Server, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn cronjob_yaml(name: &str, schedule: &str, extra: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {name}\nspec:\n  schedule: \"{schedule}\"\n{extra}  jobTemplate:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: main\n            image: busybox\n"
    )
}

fn jobs(s: &Server) -> Vec<Value> {
    s.k_json(&["get", "jobs"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn name(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// Mark every pod of `job` Succeeded and wait for the Job to complete.
#[track_caller]
fn finish_job(s: &Server, job: &str) {
    let selector = format!("batch.kubernetes.io/job-name={job}");
    let ok = wait_until(WAIT, || {
        !s.k(&["get", "pods", "-l", &selector, "-o", "name"])
            .trim()
            .is_empty()
    });
    assert!(ok, "job {job} has no pods:\n{}", s.k(&["get", "pods,jobs"]));
    for pod in s
        .k(&["get", "pods", "-l", &selector, "-o", "name"])
        .split_whitespace()
    {
        s.k(&[
            "patch",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Succeeded"}}"#,
        ]);
    }
    let done = wait_until(WAIT, || {
        let j = s.k_json(&["get", "job", job]);
        j["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Complete"))
    });
    assert!(
        done,
        "job {job} did not complete:\n{}",
        s.k(&["get", "job", job, "-o", "yaml"])
    );
}

#[test]
fn fires_on_schedule() {
    let s = Server::start();
    s.k_in(
        &cronjob_yaml("tick", "*/1 * * * *", ""),
        &["apply", "-f", "-"],
    );
    let mut created = Vec::new();
    // The next minute boundary is at most 60 s away.
    let fired = wait_until(Duration::from_secs(75), || {
        created = jobs(&s);
        !created.is_empty()
    });
    assert!(
        fired,
        "no job within 75 s:\n{:#}",
        s.k_json(&["get", "cronjob", "tick"])
    );
    let job = &created[0];
    let job_name = name(job);
    let minutes: i64 = job_name
        .strip_prefix("tick-")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("job name {job_name}"));
    let scheduled =
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .as_str()
            .unwrap_or("");
    let at: jiff::Timestamp = scheduled
        .parse()
        .unwrap_or_else(|e| panic!("scheduled timestamp {scheduled:?}: {e}"));
    assert_eq!(at.as_second(), minutes * 60, "name and annotation disagree");
    assert!(scheduled.ends_with('Z'), "{scheduled}");
    assert_eq!(job["metadata"]["labels"]["app"], "tick");
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["name"].as_str(),
            owner["controller"].as_bool()
        ),
        (Some("CronJob"), Some("tick"), Some(true))
    );
    let cj = s.k_json(&["get", "cronjob", "tick"]);
    assert_eq!(
        cj["status"]["active"][0]["name"],
        job_name.as_str(),
        "{:#}",
        cj["status"]
    );
    let last: jiff::Timestamp = cj["status"]["lastScheduleTime"]
        .as_str()
        .unwrap_or("")
        .parse()
        .expect("lastScheduleTime");
    assert_eq!(last, at);
    s.wait_event(
        "tick",
        &format!("SuccessfulCreate: Created job {job_name}"),
        WAIT,
    );
    // kubectl's columns: ACTIVE 1, a LAST SCHEDULE age.
    let row = common::squeeze(
        s.k(&["get", "cronjob", "tick"])
            .lines()
            .nth(1)
            .unwrap_or(""),
    );
    assert!(row.starts_with("tick */1 * * * * <none> False 1 "), "{row}");

    // The Job runs; once it completes the CronJob sees it.
    finish_job(&s, &job_name);
    s.wait_event(
        "tick",
        &format!("SawCompletedJob: Saw completed job: {job_name}, status: Complete"),
        WAIT,
    );
    let ok = wait_until(WAIT, || {
        let st = &s.k_json(&["get", "cronjob", "tick"])["status"];
        st["active"].is_null() && st["lastSuccessfulTime"].is_string()
    });
    assert!(ok, "{:#}", s.k_json(&["get", "cronjob", "tick"])["status"]);
}

#[test]
fn manual_jobs_and_history_limits() {
    let s = Server::start();
    // Once a year: it will not fire during the test.
    let extra = "  successfulJobsHistoryLimit: 1\n  failedJobsHistoryLimit: 1\n";
    s.k_in(
        &cronjob_yaml("yearly", "0 0 1 1 *", extra),
        &["apply", "-f", "-"],
    );
    for n in ["manual-1", "manual-2", "manual-3"] {
        let out = s.k(&["create", "job", n, "--from=cronjob/yearly"]);
        assert_eq!(out.trim(), format!("job.batch/{n} created"));
    }
    let j = s.k_json(&["get", "job", "manual-1"]);
    assert_eq!(
        j["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(
        j["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "manual-1"
    );
    // Each runs like any Job; finished ones beyond the limit are deleted,
    // oldest first.
    finish_job(&s, "manual-1");
    finish_job(&s, "manual-2");
    let pruned = wait_until(WAIT, || !jobs(&s).iter().any(|j| name(j) == "manual-1"));
    assert!(
        pruned,
        "history limit not applied:\n{}",
        s.k(&["get", "jobs"])
    );
    s.wait_event("yearly", "SuccessfulDelete: Deleted job manual-1", WAIT);
    finish_job(&s, "manual-3");
    let pruned = wait_until(WAIT, || {
        jobs(&s).iter().map(name).collect::<Vec<_>>() == ["manual-3"]
    });
    assert!(
        pruned,
        "history limit not applied:\n{}",
        s.k(&["get", "jobs"])
    );
    // Manual Jobs were never in the active list, but their success counts.
    let ok = wait_until(WAIT, || {
        s.k_json(&["get", "cronjob", "yearly"])["status"]["lastSuccessfulTime"].is_string()
    });
    assert!(ok, "{:#}", s.k_json(&["get", "cronjob", "yearly"]));
    assert!(s.k_json(&["get", "cronjob", "yearly"])["status"]["lastScheduleTime"].is_null());
    s.wait_event(
        "yearly",
        "UnexpectedJob: Saw a job that the controller did not create or forgot: manual-",
        WAIT,
    );
}
