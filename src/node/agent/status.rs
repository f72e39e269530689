//! The pod's API status from what the node knows, as the kubelet's
//! generateAPIPodStatus: phase from the containers' states and the restart
//! policy, the conditions (PodReadyToStartContainers, Initialized,
//! ContainersReady, Ready; PodScheduled is the scheduler's), and transition
//! times kept while a condition does not change.

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Whether an init container is a sidecar (restartPolicy Always).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// What the worker knows beyond the container statuses.
#[derive(Clone, Debug, Default)]
pub struct PodFacts {
    /// The sandbox exists and its network is set up.
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    /// When the worker first saw the pod (status.startTime).
    pub start_time: Option<Time>,
    /// Set when the pod reached a terminal phase for a reason of its own
    /// (eviction, active deadline): (phase, reason, message).
    pub terminal: Option<(String, String, String)>,
}

fn state_of(s: &ContainerStatus) -> &'static str {
    match s.state.as_ref() {
        Some(st) if st.running.is_some() => "running",
        Some(st) if st.terminated.is_some() => "terminated",
        Some(st) if st.waiting.is_some() => "waiting",
        _ => "unknown",
    }
}

fn exit_code(s: &ContainerStatus) -> Option<i32> {
    s.state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .map(|t| t.exit_code)
}

fn last_exit_code(s: &ContainerStatus) -> Option<i32> {
    s.last_state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// The pod phase (the kubelet's getPhase).
pub fn phase(pod: &Pod, init: &[ContainerStatus], app: &[ContainerStatus]) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let init_specs: Vec<&Container> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let mut pending_init = 0;
    let mut failed_init = 0;
    for c in &init_specs {
        let Some(s) = init.iter().find(|s| s.name == c.name) else {
            pending_init += 1;
            continue;
        };
        if is_sidecar(c) {
            // A sidecar counts as initialized once it has started.
            if s.started != Some(true) {
                pending_init += 1;
            }
            continue;
        }
        match state_of(s) {
            "terminated" if exit_code(s) == Some(0) => {}
            "terminated" => failed_init += 1,
            "waiting" if last_exit_code(s).is_some_and(|c| c != 0) => failed_init += 1,
            _ => pending_init += 1,
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    let app_names: Vec<&str> = spec
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    for name in &app_names {
        let Some(s) = app.iter().find(|s| s.name == *name) else {
            unknown += 1;
            continue;
        };
        match state_of(s) {
            "running" => running += 1,
            "terminated" => {
                stopped += 1;
                if exit_code(s) == Some(0) {
                    succeeded += 1;
                }
            }
            "waiting" => {
                if s.last_state
                    .as_ref()
                    .and_then(|l| l.terminated.as_ref())
                    .is_some()
                {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
            _ => unknown += 1,
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed".into();
    }
    if pending_init > 0 || failed_init > 0 {
        // Init containers still running or restarting.
        return "Pending".into();
    }
    if waiting > 0 {
        return "Pending".into();
    }
    if running > 0 && unknown == 0 {
        return "Running".into();
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if policy == "Always" {
            return "Running".into();
        }
        if stopped == succeeded {
            return "Succeeded".into();
        }
        if policy == "Never" {
            return "Failed".into();
        }
        return "Running".into();
    }
    "Pending".into()
}

fn condition(
    old: Option<&PodStatus>,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let since = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!ok).then(|| reason.map(str::to_string)).flatten(),
        message: (!ok).then_some(message).flatten(),
        last_transition_time: since,
        last_probe_time: None,
        observed_generation: None,
    }
}

/// The whole status the node reports.
pub fn pod_status(
    pod: &Pod,
    facts: &PodFacts,
    init: Vec<ContainerStatus>,
    app: Vec<ContainerStatus>,
    now: &Time,
) -> PodStatus {
    let old = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let (mut phase_now, mut reason, mut message) = (phase(pod, &init, &app), None, None);
    if let Some((p, r, m)) = &facts.terminal {
        phase_now = p.clone();
        reason = Some(r.clone());
        message = Some(m.clone());
    }
    // A terminal phase never goes back (upstream forbids the transition).
    if let Some(old_phase) = old.and_then(|s| s.phase.as_deref())
        && (old_phase == "Succeeded" || old_phase == "Failed")
    {
        phase_now = old_phase.to_string();
        reason = old.and_then(|s| s.reason.clone()).or(reason);
        message = old.and_then(|s| s.message.clone()).or(message);
    }

    let init_specs: Vec<&Container> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let incomplete_init: Vec<String> = init_specs
        .iter()
        .filter(|c| {
            let s = init.iter().find(|s| s.name == c.name);
            match s {
                None => true,
                Some(s) if is_sidecar(c) => s.started != Some(true),
                Some(s) => !(state_of(s) == "terminated" && exit_code(s) == Some(0)),
            }
        })
        .map(|c| c.name.clone())
        .collect();
    let terminal = phase_now == "Succeeded" || phase_now == "Failed";
    // Once terminal, the kubelet reports init as done if it ever was.
    let initialized = incomplete_init.is_empty()
        || (terminal
            && old
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Initialized"))
                .is_some_and(|c| c.status == "True"));

    let mut unready: Vec<String> = Vec::new();
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        if !app.iter().any(|s| s.name == c.name && s.ready) {
            unready.push(c.name.clone());
        }
    }
    // Sidecars must be ready too.
    for c in init_specs.iter().filter(|c| is_sidecar(c)) {
        if !init.iter().any(|s| s.name == c.name && s.ready) {
            unready.push(c.name.clone());
        }
    }
    let (ready_reason, ready_msg) = if !initialized {
        (
            "ContainersNotInitialized",
            format!(
                "containers with incomplete status: [{}]",
                incomplete_init.join(" ")
            ),
        )
    } else if terminal {
        ("PodCompleted", String::new())
    } else {
        (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        )
    };
    let containers_ready = initialized && unready.is_empty() && !terminal;
    let gates_ok = spec
        .and_then(|s| s.readiness_gates.as_ref())
        .map(|gates| {
            gates.iter().all(|g| {
                old.and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == g.condition_type))
                    .is_some_and(|c| c.status == "True")
            })
        })
        .unwrap_or(true);
    let msg = |m: String| (!m.is_empty()).then_some(m);

    let mut conditions = vec![
        condition(
            old,
            "PodReadyToStartContainers",
            facts.sandbox_ready && !terminal,
            None,
            None,
            now,
        ),
        condition(
            old,
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            msg(format!(
                "containers with incomplete status: [{}]",
                incomplete_init.join(" ")
            )),
            now,
        ),
        condition(
            old,
            "Ready",
            containers_ready && gates_ok,
            Some(if containers_ready {
                "ReadinessGatesNotReady"
            } else {
                ready_reason
            }),
            if containers_ready {
                Some("the status of pod readiness gate is not \"True\"".into())
            } else {
                msg(ready_msg.clone())
            },
            now,
        ),
        condition(
            old,
            "ContainersReady",
            containers_ready,
            Some(ready_reason),
            msg(ready_msg),
            now,
        ),
    ];
    // An eviction by this node says so, as the kubelet does.
    if let Some((_, reason, message)) = &facts.terminal
        && reason == "Evicted"
    {
        let mut c = condition(old, "DisruptionTarget", true, None, None, now);
        c.reason = Some("TerminationByKubelet".into());
        c.message = Some(message.clone());
        conditions.push(c);
    }
    // Keep conditions other components own (PodScheduled, DisruptionTarget,
    // readiness gates).
    for c in old
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if !conditions.iter().any(|n| n.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }
    let order = |t: &str| match t {
        "PodReadyToStartContainers" => 0,
        "Initialized" => 1,
        "Ready" => 2,
        "ContainersReady" => 3,
        "PodScheduled" => 4,
        _ => 5,
    };
    conditions.sort_by_key(|c| order(&c.type_));

    let pod_ip = facts
        .pod_ip
        .clone()
        .or_else(|| old.and_then(|s| s.pod_ip.clone()));
    let host_ip = facts
        .host_ip
        .clone()
        .or_else(|| old.and_then(|s| s.host_ip.clone()));
    PodStatus {
        phase: Some(phase_now),
        reason,
        message,
        conditions: Some(conditions),
        host_ip: host_ip.clone(),
        host_ips: host_ip.map(|ip| vec![HostIP { ip }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: facts
            .start_time
            .clone()
            .or_else(|| old.and_then(|s| s.start_time.clone())),
        qos_class: old.and_then(|s| s.qos_class.clone()),
        init_container_statuses: (!init_specs.is_empty()).then_some(init),
        container_statuses: Some(app),
        nominated_node_name: old.and_then(|s| s.nominated_node_name.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    fn cs(v: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(v).expect("status")
    }

    fn running(name: &str, ready: bool) -> ContainerStatus {
        cs(
            json!({"name": name, "image": "i", "imageID": "", "restartCount": 0, "ready": ready,
                  "started": true, "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}),
        )
    }

    fn terminated(name: &str, code: i32) -> ContainerStatus {
        cs(
            json!({"name": name, "image": "i", "imageID": "", "restartCount": 0, "ready": false,
                  "started": false, "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"}}}}),
        )
    }

    fn waiting(name: &str, reason: &str, last_exit: Option<i32>) -> ContainerStatus {
        let mut v = json!({"name": name, "image": "i", "imageID": "", "restartCount": 1, "ready": false,
                           "state": {"waiting": {"reason": reason}}});
        if let Some(c) = last_exit {
            v["lastState"] = json!({"terminated": {"exitCode": c}});
        }
        cs(v)
    }

    fn now() -> Time {
        Time(jiff::Timestamp::now())
    }

    #[test]
    fn phases_follow_restart_policy() {
        let p = |policy: &str| {
            pod(
                json!({"spec": {"restartPolicy": policy, "containers": [{"name": "a"}, {"name": "b"}]}}),
            )
        };
        let always = p("Always");
        assert_eq!(phase(&always, &[], &[]), "Pending");
        assert_eq!(
            phase(
                &always,
                &[],
                &[waiting("a", "ContainerCreating", None), running("b", true)]
            ),
            "Pending"
        );
        assert_eq!(
            phase(&always, &[], &[running("a", true), running("b", false)]),
            "Running"
        );
        assert_eq!(
            phase(
                &always,
                &[],
                &[
                    waiting("a", "CrashLoopBackOff", Some(1)),
                    running("b", true)
                ]
            ),
            "Running"
        );
        assert_eq!(
            phase(&always, &[], &[terminated("a", 0), terminated("b", 0)]),
            "Running"
        );
        let never = p("Never");
        assert_eq!(
            phase(&never, &[], &[terminated("a", 0), terminated("b", 0)]),
            "Succeeded"
        );
        assert_eq!(
            phase(&never, &[], &[terminated("a", 0), terminated("b", 2)]),
            "Failed"
        );
        assert_eq!(
            phase(&never, &[], &[terminated("a", 0), running("b", true)]),
            "Running"
        );
        let on_failure = p("OnFailure");
        assert_eq!(
            phase(&on_failure, &[], &[terminated("a", 0), terminated("b", 0)]),
            "Succeeded"
        );
        assert_eq!(
            phase(
                &on_failure,
                &[],
                &[
                    terminated("a", 0),
                    waiting("b", "CrashLoopBackOff", Some(1))
                ]
            ),
            "Running"
        );
    }

    #[test]
    fn init_containers_gate_the_phase() {
        let p = pod(json!({"spec": {"restartPolicy": "Never",
            "initContainers": [{"name": "i1"}, {"name": "side", "restartPolicy": "Always"}],
            "containers": [{"name": "a"}]}}));
        assert_eq!(phase(&p, &[running("i1", false)], &[]), "Pending");
        assert_eq!(phase(&p, &[terminated("i1", 1)], &[]), "Failed");
        assert_eq!(
            phase(
                &p,
                &[terminated("i1", 0), running("side", true)],
                &[running("a", true)]
            ),
            "Running"
        );
        let st = pod_status(
            &p,
            &PodFacts {
                sandbox_ready: true,
                ..Default::default()
            },
            vec![running("i1", false)],
            vec![waiting("a", "PodInitializing", None)],
            &now(),
        );
        let conds = st.conditions.expect("conditions");
        let init = conds
            .iter()
            .find(|c| c.type_ == "Initialized")
            .expect("Initialized");
        assert_eq!(init.status, "False");
        assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [i1 side]")
        );
        let ready = conds.iter().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotInitialized"));
        let sandbox = conds
            .iter()
            .find(|c| c.type_ == "PodReadyToStartContainers")
            .expect("c");
        assert_eq!(sandbox.status, "True");
    }

    #[test]
    fn conditions_keep_transition_times_and_others() {
        let mut p = pod(json!({"spec": {"containers": [{"name": "a"}]},
            "status": {"conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2025-01-01T00:00:01Z"}]}}));
        let facts = PodFacts {
            sandbox_ready: true,
            pod_ip: Some("10.42.0.5".into()),
            ..Default::default()
        };
        let st = pod_status(&p, &facts, vec![], vec![running("a", true)], &now());
        let conds = st.conditions.clone().expect("conditions");
        let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        let cr = conds
            .iter()
            .find(|c| c.type_ == "ContainersReady")
            .expect("cr");
        assert_eq!(cr.status, "True");
        assert_eq!(
            serde_json::to_value(&cr.last_transition_time).expect("t"),
            json!("2025-01-01T00:00:01Z"),
            "unchanged condition keeps its time"
        );
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(
            st.pod_ips.as_ref().map(|v| v[0].ip.as_str()),
            Some("10.42.0.5")
        );
        p.status = Some(st);
        let st = pod_status(&p, &facts, vec![], vec![running("a", false)], &now());
        let ready = st
            .conditions
            .expect("c")
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a]")
        );
    }

    #[test]
    fn terminal_phase_sticks() {
        let p = pod(
            json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "a"}]},
            "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory"}}),
        );
        let st = pod_status(
            &p,
            &PodFacts::default(),
            vec![],
            vec![terminated("a", 0)],
            &now(),
        );
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert_eq!(st.reason.as_deref(), Some("Evicted"));
    }
}
