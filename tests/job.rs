//! The Job and TTL-after-finished controllers through real kubectl. Pod
//! phases are driven by hand (`kubectl patch --subresource=status`), as a
//! kubelet would report them, so every step is deterministic.

mod common;

use std::time::Duration;

use common::{Server, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// A server whose Job back-off starts at 100 ms instead of 10 s.
fn server() -> Server {
    Server::builder()
        .env("RK3S_JOB_BACKOFF_BASE_MS", "100")
        .start()
}

fn job_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n"
    )
}

fn job(s: &Server, name: &str) -> Value {
    s.k_json(&["get", "job", name])
}

/// The job's pods, by name.
fn pods(s: &Server, job: &str) -> Vec<Value> {
    let list = s.k_json(&[
        "get",
        "pods",
        "-l",
        &format!("batch.kubernetes.io/job-name={job}"),
    ]);
    let mut items = list["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string());
    items
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// Pods of the job that are neither finished nor being deleted.
fn active_pods(s: &Server, job: &str) -> Vec<Value> {
    pods(s, job)
        .into_iter()
        .filter(|p| {
            !matches!(phase(p), "Succeeded" | "Failed")
                && p["metadata"]["deletionTimestamp"].is_null()
        })
        .collect()
}

fn set_phase(s: &Server, pod: &str, status: Value) {
    let patch = json!({ "status": status }).to_string();
    s.k(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

fn succeed(s: &Server, pod: &str) {
    set_phase(s, pod, json!({"phase": "Succeeded"}));
}

fn fail(s: &Server, pod: &str) {
    set_phase(s, pod, json!({"phase": "Failed"}));
}

#[track_caller]
fn wait_active(s: &Server, job: &str, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let ok = wait_until(WAIT, || {
        last = active_pods(s, job);
        last.len() == n
    });
    assert!(
        ok,
        "wanted {n} active pods of {job}, have {}:\n{}",
        last.len(),
        s.k(&["get", "pods", "-o", "wide"])
    );
    last
}

#[track_caller]
fn wait_condition(s: &Server, name: &str, type_: &str) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = job(s, name);
        last["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == type_ && c["status"] == "True")
        })
    });
    assert!(
        ok,
        "job {name} never got condition {type_}:\n{:#}",
        last["status"]
    );
    last
}

fn condition<'a>(job: &'a Value, type_: &str) -> &'a Value {
    job["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

#[test]
fn completions_with_parallelism() {
    let s = server();
    s.k_in(
        &job_yaml("pi", "  completions: 3\n  parallelism: 2\n"),
        &["apply", "-f", "-"],
    );
    let first = wait_active(&s, "pi", 2);
    for p in &first {
        // Labels from the generated selector, the controller reference and
        // the tracking finalizer.
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["job-name"], "pi");
        assert!(labels["batch.kubernetes.io/controller-uid"].is_string());
        assert_eq!(
            labels["controller-uid"],
            labels["batch.kubernetes.io/controller-uid"]
        );
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["controller"].as_bool()),
            (Some("Job"), Some(true))
        );
        assert_eq!(
            p["metadata"]["finalizers"],
            json!(["batch.kubernetes.io/job-tracking"])
        );
        assert!(name(p).starts_with("pi-"));
    }
    let j = job(&s, "pi");
    assert_eq!(j["status"]["active"], 2);
    assert_eq!(j["status"]["ready"], 0);
    assert!(j["status"]["startTime"].is_string());
    succeed(&s, &name(&first[0]));
    // One done, two to go, at most two at a time: a replacement starts.
    assert!(wait_until(WAIT, || job(&s, "pi")["status"]["succeeded"] == 1));
    let second = wait_active(&s, "pi", 2);
    for p in &second {
        succeed(&s, &name(p));
    }
    let done = wait_condition(&s, "pi", "Complete");
    let st = &done["status"];
    assert_eq!(st["succeeded"], 3, "{st:#}");
    assert!(st["active"].is_null() && st["failed"].is_null(), "{st:#}");
    assert_eq!(
        (st["ready"].as_i64(), st["terminating"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(st["uncountedTerminatedPods"], json!({}));
    assert!(st["completionTime"].is_string());
    for t in ["SuccessCriteriaMet", "Complete"] {
        let c = condition(&done, t);
        assert_eq!(c["reason"], "CompletionsReached", "{c}");
        assert_eq!(c["message"], "Reached expected number of succeeded pods");
    }
    // Counted pods have lost their finalizer.
    for p in pods(&s, "pi") {
        assert!(
            p["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty()),
            "{p:#}"
        );
    }
    let table = s.k(&["get", "job", "pi"]);
    let row = common::squeeze(table.lines().nth(1).unwrap_or(""));
    assert!(row.starts_with("pi Complete 3/3 "), "{table}");
    s.wait_event("pi", "Completed: Job completed", WAIT);
    let evs = s.events("pi");
    assert_eq!(
        evs.iter()
            .filter(|e| e.starts_with("SuccessfulCreate: Created pod: pi-"))
            .count(),
        3,
        "{evs:#?}"
    );
}

#[test]
fn backoff_limit_fails_the_job() {
    let s = server();
    s.k_in(
        &job_yaml("doomed", "  backoffLimit: 2\n"),
        &["apply", "-f", "-"],
    );
    // Each failure is replaced (after the back-off) until the third.
    for _ in 0..3 {
        let active = wait_active(&s, "doomed", 1);
        fail(&s, &name(&active[0]));
    }
    let failed = wait_condition(&s, "doomed", "Failed");
    let st = &failed["status"];
    assert_eq!(st["failed"], 3, "{st:#}");
    assert!(
        st["succeeded"].is_null() && st["active"].is_null(),
        "{st:#}"
    );
    for t in ["FailureTarget", "Failed"] {
        let c = condition(&failed, t);
        assert_eq!(c["reason"], "BackoffLimitExceeded", "{c}");
        assert_eq!(c["message"], "Job has reached the specified backoff limit");
    }
    assert!(st["completionTime"].is_null());
    s.wait_event(
        "doomed",
        "BackoffLimitExceeded: Job has reached the specified backoff limit",
        WAIT,
    );
    // No replacement after the Job failed.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pods(&s, "doomed").len(), 3);
    let table = s.k(&["get", "job", "doomed"]);
    assert!(
        common::squeeze(table.lines().nth(1).unwrap_or("")).starts_with("doomed Failed 0/1 "),
        "{table}"
    );
}

#[test]
fn indexed_completion() {
    let s = server();
    s.k_in(
        &job_yaml(
            "idx",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n",
        ),
        &["apply", "-f", "-"],
    );
    let active = wait_active(&s, "idx", 3);
    let mut by_index = std::collections::BTreeMap::new();
    for p in &active {
        let ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            ix.as_str()
        );
        assert_eq!(p["spec"]["hostname"], format!("idx-{ix}"));
        assert!(name(p).starts_with(&format!("idx-{ix}-")), "{}", name(p));
        let env = &p["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "JOB_COMPLETION_INDEX");
        assert_eq!(
            env["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
        );
        by_index.insert(ix, name(p));
    }
    assert_eq!(
        by_index.keys().cloned().collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    succeed(&s, &by_index["1"]);
    assert!(wait_until(
        WAIT,
        || job(&s, "idx")["status"]["completedIndexes"] == "1"
    ));
    // A failed index is retried under the same index.
    fail(&s, &by_index["0"]);
    let again = wait_until(WAIT, || {
        active_pods(&s, "idx").iter().any(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "0"
                && name(p) != by_index["0"]
        })
    });
    assert!(again, "index 0 was not retried:\n{}", s.k(&["get", "pods"]));
    for p in active_pods(&s, "idx") {
        succeed(&s, &name(&p));
    }
    let done = wait_condition(&s, "idx", "Complete");
    assert_eq!(done["status"]["completedIndexes"], "0-2");
    assert_eq!(done["status"]["succeeded"], 3);
    assert_eq!(done["status"]["failed"], 1);
}

#[test]
fn suspend_and_resume() {
    let s = server();
    s.k_in(
        &job_yaml(
            "nap",
            "  suspend: true\n  parallelism: 2\n  completions: 2\n",
        ),
        &["apply", "-f", "-"],
    );
    let j = wait_condition(&s, "nap", "Suspended");
    assert_eq!(condition(&j, "Suspended")["reason"], "JobSuspended");
    assert!(
        j["status"]["startTime"].is_null(),
        "a suspended job has not started: {:#}",
        j["status"]
    );
    assert!(pods(&s, "nap").is_empty());
    s.k(&[
        "patch",
        "job",
        "nap",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    wait_active(&s, "nap", 2);
    let j = job(&s, "nap");
    assert_eq!(condition(&j, "Suspended")["status"], "False");
    assert_eq!(condition(&j, "Suspended")["reason"], "JobResumed");
    assert!(j["status"]["startTime"].is_string());
    // Suspending again deletes the running pods.
    s.k(&[
        "patch",
        "job",
        "nap",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    assert!(
        wait_until(WAIT, || pods(&s, "nap").is_empty()),
        "{}",
        s.k(&["get", "pods"])
    );
    let j = wait_condition(&s, "nap", "Suspended");
    assert!(j["status"]["active"].is_null(), "{:#}", j["status"]);
    s.wait_event("nap", "Suspended: Job suspended", WAIT);
    s.wait_event("nap", "Resumed: Job resumed", WAIT);
    s.wait_event("nap", "SuccessfulDelete: Deleted pod: nap-", WAIT);
}

#[test]
fn active_deadline() {
    let s = server();
    s.k_in(
        &job_yaml("slow", "  activeDeadlineSeconds: 2\n"),
        &["apply", "-f", "-"],
    );
    // Its pod starts at once and is still running when the deadline passes.
    let failed = wait_condition(&s, "slow", "Failed");
    let c = condition(&failed, "Failed");
    assert_eq!(c["reason"], "DeadlineExceeded");
    assert_eq!(
        c["message"],
        "Job was active longer than specified deadline"
    );
    // The running pod was stopped and counted as failed.
    assert_eq!(failed["status"]["failed"], 1, "{:#}", failed["status"]);
    assert!(active_pods(&s, "slow").is_empty());
    s.wait_event(
        "slow",
        "DeadlineExceeded: Job was active longer than specified deadline",
        WAIT,
    );
}

#[test]
fn pod_failure_policy_fails_the_job() {
    let s = server();
    let spec = "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        containerName: main\n        operator: In\n        values: [42]\n    - action: Ignore\n      onPodConditions:\n      - type: DisruptionTarget\n";
    s.k_in(&job_yaml("pfp", spec), &["apply", "-f", "-"]);
    // A disruption is ignored: replaced, not counted.
    let p = wait_active(&s, "pfp", 1);
    set_phase(
        &s,
        &name(&p[0]),
        json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}),
    );
    let p2 = wait_until(WAIT, || {
        active_pods(&s, "pfp")
            .iter()
            .any(|q| name(q) != name(&p[0]))
    });
    assert!(p2, "the disrupted pod was not replaced");
    assert!(job(&s, "pfp")["status"]["failed"].is_null());
    let p = wait_active(&s, "pfp", 1);
    let terminated = json!({"phase": "Failed", "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "",
        "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 42, "reason": "Error"}}}]});
    set_phase(&s, &name(&p[0]), terminated);
    let failed = wait_condition(&s, "pfp", "Failed");
    let c = condition(&failed, "Failed");
    assert_eq!(c["reason"], "PodFailurePolicy");
    assert_eq!(
        c["message"],
        format!(
            "Container main for pod default/{} failed with exit code 42 matching FailJob rule at index 0",
            name(&p[0])
        )
    );
    assert_eq!(failed["status"]["failed"], 1, "{:#}", failed["status"]);
}

#[test]
fn ttl_after_finished_deletes_the_job() {
    let s = server();
    s.k_in(
        &job_yaml("brief", "  ttlSecondsAfterFinished: 2\n"),
        &["apply", "-f", "-"],
    );
    let p = wait_active(&s, "brief", 1);
    let finished = std::time::Instant::now();
    succeed(&s, &name(&p[0]));
    // The Job may be gone before a poll sees it Complete: its events stay.
    let gone = wait_until(WAIT, || {
        s.k(&["get", "jobs", "--ignore-not-found", "-o", "name"])
            .trim()
            .is_empty()
    });
    assert!(
        gone,
        "the finished job was not deleted: {}",
        s.k(&["get", "jobs"])
    );
    // Two seconds after completion (condition times have whole seconds).
    assert!(
        finished.elapsed() >= Duration::from_secs(1),
        "deleted too early"
    );
    s.wait_event("brief", "Completed: Job completed", WAIT);
    // Its pods go first (foreground deletion through the garbage collector).
    assert!(
        wait_until(WAIT, || pods(&s, "brief").is_empty()),
        "{}",
        s.k(&["get", "pods"])
    );
}

#[test]
fn runs_on_simulated_nodes() {
    // The simulated kubelet runs the pods: they succeed after about a
    // second, or fail with the exit code the annotation asks for.
    let s = Server::builder()
        .arg("--simulate-nodes")
        .arg("1")
        .env("RK3S_JOB_BACKOFF_BASE_MS", "100")
        .start();
    s.k_in(
        &job_yaml("sim", "  completions: 3\n  parallelism: 2\n"),
        &["apply", "-f", "-"],
    );
    let crash = job_yaml("crash", "  backoffLimit: 1\n").replace(
        "  template:\n    spec:\n",
        "  template:\n    metadata:\n      annotations:\n        rk3s.io/simulate-exit-code: \"3\"\n    spec:\n",
    );
    s.k_in(&crash, &["apply", "-f", "-"]);
    let done = wait_condition(&s, "sim", "Complete");
    assert_eq!(done["status"]["succeeded"], 3, "{:#}", done["status"]);
    assert!(done["status"]["failed"].is_null());
    let pods_done = pods(&s, "sim");
    assert_eq!(pods_done.len(), 3);
    assert!(
        pods_done
            .iter()
            .all(|p| p["spec"]["nodeName"] == "sim-0" && phase(p) == "Succeeded")
    );
    let failed = wait_condition(&s, "crash", "Failed");
    assert_eq!(
        condition(&failed, "Failed")["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(failed["status"]["failed"], 2, "{:#}", failed["status"]);
    let crashed = pods(&s, "crash");
    assert_eq!(crashed.len(), 2);
    let code = &crashed[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"];
    assert_eq!(code, 3, "{:#}", crashed[0]["status"]);
}
