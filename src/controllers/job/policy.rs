//! podFailurePolicy and successPolicy matching, as upstream's job controller
//! evaluates them.

use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, SuccessPolicy,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};

use super::indexes::Intervals;

/// The action of the first rule a failed pod matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    FailJob(String),
    FailIndex,
    Ignore,
    Count,
}

impl Action {
    /// Whether the failure counts towards backoffLimit (only Ignore does not).
    pub fn counts(this: Option<&Action>) -> bool {
        !matches!(this, Some(Action::Ignore))
    }
}

/// Match a failed pod against the policy's rules in order.
pub fn match_pod_failure_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Option<Action> {
    let policy = policy?;
    let status = pod.status.as_ref();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(req) = &rule.on_exit_codes {
            let Some(cs) = status.and_then(|s| {
                match_exit_codes(s.container_statuses.as_deref(), req)
                    .or_else(|| match_exit_codes(s.init_container_statuses.as_deref(), req))
            }) else {
                continue;
            };
            let code = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map_or(0, |t| t.exit_code);
            format!(
                "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                cs.name, rule.action
            )
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conds = status
                .and_then(|s| s.conditions.as_deref())
                .unwrap_or_default();
            let found: Option<&PodCondition> = conds.iter().find(|c| {
                patterns
                    .iter()
                    .any(|p| p.type_ == c.type_ && p.status == c.status)
            });
            let Some(cond) = found else { continue };
            format!(
                "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                cond.type_, rule.action
            )
        } else {
            continue;
        };
        return match rule.action.as_str() {
            "Ignore" => Some(Action::Ignore),
            "Count" => Some(Action::Count),
            "FailIndex" => Some(Action::FailIndex),
            "FailJob" => Some(Action::FailJob(matched)),
            // An action this controller does not know: the rule is skipped.
            _ => continue,
        };
    }
    None
}

fn match_exit_codes<'a>(
    statuses: Option<&'a [ContainerStatus]>,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    statuses?.iter().find(|cs| {
        let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            return false;
        };
        if req.container_name.as_deref().is_some_and(|n| n != cs.name) || t.exit_code == 0 {
            return false;
        }
        match req.operator.as_str() {
            "In" => req.values.contains(&t.exit_code),
            "NotIn" => !req.values.contains(&t.exit_code),
            _ => false,
        }
    })
}

/// The SuccessCriteriaMet message when a successPolicy rule is met.
pub fn match_success_policy(
    policy: Option<&SuccessPolicy>,
    completions: i64,
    succeeded: &Intervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let count = rule.succeeded_count.map(i64::from);
        let met = match &rule.succeeded_indexes {
            Some(ixs) => {
                let required = Intervals::parse(ixs, completions);
                if required.is_empty() {
                    continue;
                }
                let covered = overlap(&required, succeeded);
                covered == required.total() || count.is_some_and(|c| covered >= c)
            }
            None => count.is_some_and(|c| succeeded.total() >= c),
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

/// How many indexes of `a` are also in `b`.
fn overlap(a: &Intervals, b: &Intervals) -> i64 {
    let mut n = 0;
    for x in &a.0 {
        for y in &b.0 {
            let o = x.last.min(y.last) - x.first.max(y.first) + 1;
            if o > 0 {
                n += o;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(v).expect("policy")
    }

    fn failed_pod(exit: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions,
                "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": exit}}}]}
        }))
        .expect("pod")
    }

    #[test]
    fn exit_codes_and_conditions() {
        let p = policy(json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [2]}},
        ]}));
        assert_eq!(
            match_pod_failure_policy(Some(&p), &failed_pod(42, json!([]))),
            Some(Action::FailJob("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()))
        );
        assert_eq!(
            match_pod_failure_policy(Some(&p), &failed_pod(7, json!([]))),
            Some(Action::Count)
        );
        assert_eq!(
            match_pod_failure_policy(Some(&p), &failed_pod(2, json!([]))),
            Some(Action::FailIndex)
        );
        assert_eq!(
            match_pod_failure_policy(Some(&p), &failed_pod(1, json!([]))),
            None
        );
        let disrupted = failed_pod(42, json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert_eq!(
            match_pod_failure_policy(Some(&p), &disrupted),
            Some(Action::Ignore)
        );
        assert!(!Action::counts(Some(&Action::Ignore)));
        assert!(Action::counts(None) && Action::counts(Some(&Action::Count)));
        let fail_on_cond = policy(
            json!({"rules": [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}),
        );
        assert_eq!(
            match_pod_failure_policy(Some(&fail_on_cond), &disrupted),
            Some(Action::FailJob(
                "Pod ns/p has condition DisruptionTarget matching FailJob rule at index 0".into()
            ))
        );
    }

    #[test]
    fn success_policy_rules() {
        let sp: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0,2-4", "succeededCount": 3},
            {"succeededCount": 5},
        ]}))
        .expect("sp");
        let done = |s: &str| match_success_policy(Some(&sp), 10, &Intervals::parse(s, 10));
        assert_eq!(done("0,2"), None);
        assert_eq!(done("0,3,4").as_deref(), Some("Matched rules at index 0"));
        assert_eq!(done("5-9").as_deref(), Some("Matched rules at index 1"));
        let all: SuccessPolicy =
            serde_json::from_value(json!({"rules": [{"succeededIndexes": "1-2"}]})).expect("sp");
        assert_eq!(
            match_success_policy(Some(&all), 10, &Intervals::parse("1", 10)),
            None
        );
        assert!(match_success_policy(Some(&all), 10, &Intervals::parse("0-3", 10)).is_some());
    }
}
