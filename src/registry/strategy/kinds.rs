//! Maps a built-in kind to its strategy, and holds the per-kind modules
//! (upstream's `pkg/registry/*/strategy.go`, `pkg/apis/*/validation` and
//! defaults).

use std::sync::Arc;

use serde_json::Value;

use super::{NameRule, Plain, Strategy};
use crate::api::status::FieldError;

#[path = "apps.rs"]
pub mod apps;
#[path = "batch.rs"]
pub mod batch;
#[path = "core.rs"]
pub mod core;
#[path = "defaults.rs"]
pub mod defaults;
#[path = "other.rs"]
pub mod other;
#[path = "pod.rs"]
pub mod pod;
#[path = "quantity.rs"]
pub mod quantity;
#[path = "service.rs"]
pub mod service;
#[path = "typed.rs"]
pub mod typed;
#[path = "util.rs"]
pub mod util;
#[path = "validation.rs"]
pub mod validation;

/// The strategy for a built-in kind; `Plain` for kinds without special rules.
pub fn for_kind(group: &str, kind: &str) -> Arc<dyn Strategy> {
    use other::*;
    let typed_only = |group: &'static str, kind: &'static str| -> Arc<dyn Strategy> {
        Arc::new(TypedOnly {
            group,
            kind,
            name_rule: NameRule::Subdomain,
        })
    };
    match (group, kind) {
        ("", "Pod") => Arc::new(pod::PodStrategy),
        ("", "Service") => Arc::new(service::ServiceStrategy),
        ("", "Endpoints") => Arc::new(core::EndpointsStrategy),
        ("", "ConfigMap") => Arc::new(core::ConfigMapStrategy),
        ("", "Secret") => Arc::new(core::SecretStrategy),
        ("", "ServiceAccount") => Arc::new(core::ServiceAccountStrategy),
        ("", "Event") => Arc::new(core::EventStrategy),
        ("", "Node") => Arc::new(core::NodeStrategy),
        ("", "Namespace") => Arc::new(core::NamespaceStrategy),
        ("", "PersistentVolume") => Arc::new(core::PersistentVolumeStrategy),
        ("", "PersistentVolumeClaim") => Arc::new(core::PersistentVolumeClaimStrategy),
        ("", "LimitRange") => Arc::new(core::LimitRangeStrategy),
        ("", "ResourceQuota") => Arc::new(core::ResourceQuotaStrategy),
        ("", "ReplicationController") => Arc::new(core::ReplicationControllerStrategy),
        ("", "PodTemplate") => Arc::new(core::PodTemplateStrategy),
        ("apps", "Deployment") => Arc::new(apps::DeploymentStrategy),
        ("apps", "ReplicaSet") => Arc::new(apps::ReplicaSetStrategy),
        ("apps", "StatefulSet") => Arc::new(apps::StatefulSetStrategy),
        ("apps", "DaemonSet") => Arc::new(apps::DaemonSetStrategy),
        ("apps", "ControllerRevision") => Arc::new(apps::ControllerRevisionStrategy),
        ("batch", "Job") => Arc::new(batch::JobStrategy),
        ("batch", "CronJob") => Arc::new(batch::CronJobStrategy),
        ("autoscaling", "HorizontalPodAutoscaler") => Arc::new(HpaStrategy),
        ("policy", "PodDisruptionBudget") => Arc::new(PdbStrategy),
        ("networking.k8s.io", "Ingress") => Arc::new(IngressStrategy),
        ("networking.k8s.io", "IngressClass") => Arc::new(IngressClassStrategy),
        ("networking.k8s.io", "NetworkPolicy") => Arc::new(NetworkPolicyStrategy),
        ("discovery.k8s.io", "EndpointSlice") => Arc::new(EndpointSliceStrategy),
        ("coordination.k8s.io", "Lease") => Arc::new(LeaseStrategy),
        ("rbac.authorization.k8s.io", "ClusterRole") => Arc::new(RbacRoleStrategy {
            kind: "ClusterRole",
        }),
        ("rbac.authorization.k8s.io", "Role") => Arc::new(RbacRoleStrategy { kind: "Role" }),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => Arc::new(RbacBindingStrategy {
            kind: "ClusterRoleBinding",
        }),
        ("rbac.authorization.k8s.io", "RoleBinding") => Arc::new(RbacBindingStrategy {
            kind: "RoleBinding",
        }),
        ("storage.k8s.io", "StorageClass") => Arc::new(StorageClassStrategy),
        ("storage.k8s.io", "CSIDriver") => Arc::new(CsiDriverStrategy),
        ("storage.k8s.io", "CSINode") => typed_only("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment") => Arc::new(VolumeAttachmentStrategy),
        ("scheduling.k8s.io", "PriorityClass") => Arc::new(PriorityClassStrategy),
        ("node.k8s.io", "RuntimeClass") => Arc::new(RuntimeClassStrategy),
        ("events.k8s.io", "Event") => Arc::new(EventsV1Strategy),
        ("certificates.k8s.io", "CertificateSigningRequest") => Arc::new(CsrStrategy),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            Arc::new(WebhookConfigStrategy {
                kind: "MutatingWebhookConfiguration",
            })
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            Arc::new(WebhookConfigStrategy {
                kind: "ValidatingWebhookConfiguration",
            })
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Arc::new(CrdStrategy),
        _ => Arc::new(Plain),
    }
}

/// Checks every object's metadata gets (labels, annotations, finalizers,
/// owner references). Called by the generic store for every kind.
pub fn validate_object_meta(obj: &Value) -> Vec<FieldError> {
    validation::validate_object_meta(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_kind_has_a_strategy() {
        for def in crate::registry::catalogue::builtin() {
            // Plain accepts anything, so a typed strategy must reject a wrong type.
            let bad = serde_json::json!({"apiVersion": def.api_version(), "kind": def.kind, "metadata": {"name": 5}});
            assert!(
                def.strategy.check_typed(&bad).is_err(),
                "{}/{} has no typed check",
                def.group,
                def.kind
            );
        }
    }

    #[test]
    fn name_rules() {
        assert_eq!(for_kind("", "Namespace").name_rule(), NameRule::Label);
        assert_eq!(for_kind("", "Service").name_rule(), NameRule::Label);
        assert_eq!(
            for_kind("rbac.authorization.k8s.io", "ClusterRole").name_rule(),
            NameRule::PathSegment
        );
        assert_eq!(for_kind("", "Event").name_rule(), NameRule::PathSegment);
        assert_eq!(
            for_kind("apps", "Deployment").name_rule(),
            NameRule::Subdomain
        );
    }
}
