//! The two kinds the replica controller manages: apps/v1 ReplicaSet and
//! core/v1 ReplicationController. Upstream runs one controller over both
//! (RC through a conversion); here a trait gives the controller what it reads
//! and writes, so the logic is written once.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use kube::core::Selector;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Status fields common to ReplicaSet and ReplicationController.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    /// ReplicaSetCondition and ReplicationControllerCondition have the same shape.
    pub conditions: Vec<ReplicaSetCondition>,
}

impl ReplicaStatus {
    /// A merge patch writing this status. Zero counts are removed, as upstream
    /// omits them (`omitempty`), except `replicas`, which it always writes.
    pub fn merge_patch(&self) -> Value {
        let opt = |n: i64| if n == 0 { Value::Null } else { json!(n) };
        let conditions = if self.conditions.is_empty() {
            Value::Null
        } else {
            json!(self.conditions)
        };
        json!({"status": {
            "replicas": self.replicas,
            "fullyLabeledReplicas": opt(self.fully_labeled_replicas.into()),
            "readyReplicas": opt(self.ready_replicas.into()),
            "availableReplicas": opt(self.available_replicas.into()),
            "observedGeneration": opt(self.observed_generation),
            "conditions": conditions,
        }})
    }
}

/// What the replica controller needs from the kind it manages.
pub trait ReplicaKind:
    kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The event source component, as upstream names it.
    const COMPONENT: &'static str;

    /// spec.replicas (defaulted to 1 by the API server).
    fn desired(&self) -> i32;
    /// The pod selector; None selects nothing (missing, empty or invalid).
    fn pod_selector(&self) -> Option<Selector>;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    fn replica_status(&self) -> ReplicaStatus;
}

impl ReplicaKind for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn desired(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn pod_selector(&self) -> Option<Selector> {
        let sel = self.spec.as_ref()?.selector.clone();
        let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
        if empty {
            return None;
        }
        Selector::try_from(sel).ok()
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn replica_status(&self) -> ReplicaStatus {
        let Some(s) = self.status.as_ref() else {
            return ReplicaStatus::default();
        };
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s.conditions.clone().unwrap_or_default(),
        }
    }
}

impl ReplicaKind for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn desired(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn pod_selector(&self) -> Option<Selector> {
        let map = self.spec.as_ref()?.selector.clone()?;
        if map.is_empty() {
            return None;
        }
        Some(map.into_iter().collect())
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn replica_status(&self) -> ReplicaStatus {
        let Some(s) = self.status.as_ref() else {
            return ReplicaStatus::default();
        };
        let conditions = s
            .conditions
            .iter()
            .flatten()
            .map(|c| ReplicaSetCondition {
                last_transition_time: c.last_transition_time.clone(),
                message: c.message.clone(),
                reason: c.reason.clone(),
                status: c.status.clone(),
                type_: c.type_.clone(),
            })
            .collect();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::ReplicationControllerSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kube::core::SelectorExt;
    use std::collections::BTreeMap;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let rs = ReplicaSet {
            spec: Some(ReplicaSetSpec {
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let sel = rs.pod_selector().expect("selector");
        assert!(sel.matches(&labels(&[("app", "web"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "db")])));
        assert_eq!(rs.desired(), 1);

        let empty = ReplicaSet {
            spec: Some(ReplicaSetSpec::default()),
            ..Default::default()
        };
        assert!(empty.pod_selector().is_none());

        let rc = ReplicationController {
            spec: Some(ReplicationControllerSpec {
                replicas: Some(3),
                selector: Some(labels(&[("app", "web")])),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            rc.pod_selector()
                .expect("rc selector")
                .matches(&labels(&[("app", "web")]))
        );
        assert_eq!(rc.desired(), 3);
    }

    #[test]
    fn status_patch_omits_zeros_but_replicas() {
        let st = ReplicaStatus {
            replicas: 0,
            ready_replicas: 2,
            observed_generation: 3,
            ..Default::default()
        };
        let p = st.merge_patch();
        assert_eq!(p["status"]["replicas"], 0);
        assert_eq!(p["status"]["readyReplicas"], 2);
        assert!(p["status"]["availableReplicas"].is_null());
        assert_eq!(p["status"]["observedGeneration"], 3);
        assert!(p["status"]["conditions"].is_null());
    }
}
