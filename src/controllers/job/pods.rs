//! What the Job controller reads from and writes onto its pods: phases,
//! completion indexes, the tracking finalizer, the removal ranking and the
//! pods it creates from the template.

use std::cmp::Reverse;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};

use crate::controllers::podcontrol;

/// Pods carry this until the controller has counted them.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Longest generateName the server keeps whole (63 less the random suffix).
const MAX_GENERATED_NAME: usize = 58;

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

/// Being deleted but not yet in a terminal phase.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// The completion index from the pod's annotation, if valid.
pub fn completion_index(pod: &Pod) -> Option<i64> {
    let v = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    v.parse::<i64>().ok().filter(|i| *i >= 0)
}

/// The completion index, if valid and below `completions`.
pub fn valid_index(pod: &Pod, completions: i64) -> Option<i64> {
    completion_index(pod).filter(|i| *i < completions)
}

fn annotation_i32(pod: &Pod, key: &str) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| (0..=i64::from(i32::MAX)).contains(v))
        .map_or(0, |v| v as i32)
}

/// Failures counted against the index's backoffLimitPerIndex.
pub fn index_failure_count(pod: &Pod) -> i32 {
    annotation_i32(pod, INDEX_FAILURE_COUNT)
}

/// Failures of the index, counted and ignored ones.
pub fn index_absolute_failure_count(pod: &Pod) -> i32 {
    annotation_i32(pod, INDEX_FAILURE_COUNT)
        .saturating_add(annotation_i32(pod, INDEX_IGNORED_FAILURE_COUNT))
}

/// Sum of container restarts (for restartPolicy OnFailure back-off).
pub fn restart_count(pod: &Pod) -> i64 {
    let Some(s) = pod.status.as_ref() else {
        return 0;
    };
    let sum = |cs: Option<&Vec<k8s_openapi::api::core::v1::ContainerStatus>>| -> i64 {
        cs.map_or(0, |v| v.iter().map(|c| i64::from(c.restart_count)).sum())
    };
    sum(s.container_statuses.as_ref()) + sum(s.init_container_statuses.as_ref())
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
        .unwrap_or(0)
}

fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// Sort key putting the pods best deleted first (upstream's ActivePods):
/// unscheduled, pending before running, not ready, ready for less time,
/// more restarts, newer.
type Rank = (
    bool,
    u8,
    bool,
    Reverse<Timestamp>,
    Reverse<i32>,
    Reverse<Timestamp>,
);

fn removal_rank(pod: &Pod) -> Rank {
    let assigned = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let ready = podcontrol::is_ready(pod);
    let ready_time = if ready {
        ready_since(pod).unwrap_or(Timestamp::MAX)
    } else {
        Timestamp::MAX
    };
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::MAX, |t| t.0);
    (
        assigned,
        phase,
        ready,
        Reverse(ready_time),
        Reverse(max_restarts(pod)),
        Reverse(created),
    )
}

/// Sort pods so the ones best deleted come first.
pub fn sort_for_removal(pods: &mut [Pod]) {
    pods.sort_by_cached_key(removal_rank);
}

/// Active pods to delete: for Indexed Jobs every pod without a valid index
/// and all but one pod of a repeated index, then the lowest-ranked pods
/// until at least `at_least` are chosen.
pub fn active_pods_for_removal(
    indexed: bool,
    completions: i64,
    active: &[Pod],
    at_least: usize,
) -> Vec<Pod> {
    let mut rm: Vec<Pod> = Vec::new();
    let mut left: Vec<Pod> = Vec::new();
    if indexed {
        let mut by_index: std::collections::BTreeMap<i64, Vec<Pod>> = Default::default();
        for p in active {
            match valid_index(p, completions) {
                Some(ix) => by_index.entry(ix).or_default().push(p.clone()),
                None => rm.push(p.clone()),
            }
        }
        for (_, mut same) in by_index {
            sort_for_removal(&mut same);
            if let Some(keep) = same.pop() {
                rm.extend(same);
                left.push(keep);
            }
        }
    } else {
        left = active.to_vec();
    }
    if rm.len() < at_least {
        sort_for_removal(&mut left);
        let need = at_least - rm.len();
        rm.extend(left.into_iter().take(need));
    }
    rm
}

/// The generateName of the pod for `index` (kept whole by truncating the
/// job name part).
pub fn generate_name_with_index(job_name: &str, index: i64) -> String {
    let suffix = format!("-{index}-");
    let mut prefix = format!("{job_name}{suffix}");
    if prefix.len() > MAX_GENERATED_NAME {
        let keep = MAX_GENERATED_NAME.saturating_sub(suffix.len());
        // Job names are DNS subdomains: ASCII, so any byte offset is a boundary.
        prefix = format!("{}{suffix}", job_name.get(..keep).unwrap_or(job_name));
    }
    prefix
}

fn add_index_env(c: &mut Container) {
    let env = c.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: COMPLETION_INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    });
}

/// The pod to create for `job` (and `index`, for Indexed Jobs). `replaced`
/// is the failed pod of the index whose failure counts it inherits
/// (backoffLimitPerIndex).
pub fn new_pod(job: &Job, index: Option<i64>, failure_counts: Option<(i32, i32)>) -> Pod {
    let job_name = job.metadata.name.as_deref().unwrap_or("");
    let ns = job.metadata.namespace.as_deref().unwrap_or("default");
    let mut template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let fins = meta.finalizers.get_or_insert_with(Vec::new);
    if !fins.iter().any(|f| f == TRACKING_FINALIZER) {
        fins.push(TRACKING_FINALIZER.into());
    }
    let mut generate = job_name.to_string();
    if let Some(ix) = index {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), ix.to_string());
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), ix.to_string());
        if let Some((failed, ignored)) = failure_counts {
            let ann = meta.annotations.get_or_insert_with(Default::default);
            ann.insert(INDEX_FAILURE_COUNT.into(), failed.to_string());
            if ignored > 0 {
                ann.insert(INDEX_IGNORED_FAILURE_COUNT.into(), ignored.to_string());
            }
        }
        if let Some(spec) = template.spec.as_mut() {
            spec.containers.iter_mut().for_each(add_index_env);
            spec.init_containers
                .iter_mut()
                .flatten()
                .for_each(add_index_env);
            spec.hostname = Some(format!("{job_name}-{ix}"));
        }
        generate = generate_name_with_index(job_name, ix);
    }
    let mut pod = podcontrol::pod_from_template(
        &template,
        ns,
        podcontrol::controller_ref(job),
        job_name,
        None,
    );
    if index.is_some() {
        pod.metadata.generate_name = Some(generate);
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, v: serde_json::Value) -> Pod {
        let mut p: Pod = serde_json::from_value(v).expect("pod");
        p.metadata.name = Some(name.into());
        p
    }

    #[test]
    fn removal_prefers_early_stages() {
        let running_ready = pod(
            "rr",
            json!({"spec": {"nodeName": "n", "containers": []}, "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}),
        );
        let running = pod(
            "r",
            json!({"spec": {"nodeName": "n", "containers": []}, "status": {"phase": "Running"}}),
        );
        let pending = pod(
            "p",
            json!({"spec": {"nodeName": "n", "containers": []}, "status": {"phase": "Pending"}}),
        );
        let unscheduled = pod(
            "u",
            json!({"spec": {"containers": []}, "status": {"phase": "Pending"}}),
        );
        let mut all = vec![running_ready, running, pending, unscheduled];
        sort_for_removal(&mut all);
        let names: Vec<&str> = all.iter().map(name).collect();
        assert_eq!(names, ["u", "p", "r", "rr"]);
    }

    #[test]
    fn indexed_removal_drops_duplicates_and_strays() {
        let ix = |n: &str, i: &str| {
            pod(
                n,
                json!({"metadata": {"annotations": {COMPLETION_INDEX: i}}}),
            )
        };
        let active = vec![
            ix("a0", "0"),
            ix("b0", "0"),
            ix("a1", "1"),
            ix("x", "nope"),
            ix("big", "9"),
        ];
        let rm = active_pods_for_removal(true, 3, &active, 0);
        let mut names: Vec<&str> = rm.iter().map(name).collect();
        names.sort();
        assert_eq!(names.len(), 3);
        assert!(names.contains(&"x") && names.contains(&"big"));
        assert!(names.contains(&"a0") || names.contains(&"b0"));
        assert_eq!(active_pods_for_removal(false, 3, &active, 2).len(), 2);
    }

    #[test]
    fn indexed_pods_get_index_metadata() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "idx", "namespace": "ns", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "completions": 3, "template": {
                "metadata": {"labels": {"job-name": "idx"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .expect("job");
        let p = new_pod(&job, Some(2), Some((1, 0)));
        let ann = p.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(COMPLETION_INDEX).map(String::as_str), Some("2"));
        assert_eq!(ann.get(INDEX_FAILURE_COUNT).map(String::as_str), Some("1"));
        assert_eq!(
            p.metadata
                .labels
                .clone()
                .unwrap_or_default()
                .get(COMPLETION_INDEX)
                .map(String::as_str),
            Some("2")
        );
        assert_eq!(p.metadata.generate_name.as_deref(), Some("idx-2-"));
        assert_eq!(
            p.metadata.finalizers,
            Some(vec![TRACKING_FINALIZER.to_string()])
        );
        let spec = p.spec.expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("idx-2"));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
        let owner = &p.metadata.owner_references.expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Job", "u1", Some(true))
        );
        let plain = new_pod(&job, None, None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("idx-"));
        assert_eq!(generate_name_with_index(&"a".repeat(70), 12).len(), 58);
        assert!(generate_name_with_index(&"a".repeat(70), 12).ends_with("a-12-"));
    }
}
