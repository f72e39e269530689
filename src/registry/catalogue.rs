//! The built-in resources of Kubernetes 1.33 that a small cluster uses, as
//! declarations. Short names and categories follow upstream so that
//! `kubectl get all`, `kubectl get po,svc` and friends resolve as they do there.

use std::sync::Arc;

use super::conversion;
use super::strategy::kinds::for_kind;
use super::{Conversion, ResourceDef};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection upstream.
const VERBS_NO_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

struct D {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    cats: &'static [&'static str],
    subs: &'static [&'static str],
}

#[rustfmt::skip]
const BUILTINS: &[D] = &[
    // core/v1
    D { group: "", version: "v1", kind: "Pod", plural: "pods", namespaced: true, short: &["po"], cats: &["all"], subs: &["status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy"] },
    D { group: "", version: "v1", kind: "Service", plural: "services", namespaced: true, short: &["svc"], cats: &["all"], subs: &["status", "proxy"] },
    D { group: "", version: "v1", kind: "Endpoints", plural: "endpoints", namespaced: true, short: &["ep"], cats: &[], subs: &[] },
    D { group: "", version: "v1", kind: "ConfigMap", plural: "configmaps", namespaced: true, short: &["cm"], cats: &[], subs: &[] },
    D { group: "", version: "v1", kind: "Secret", plural: "secrets", namespaced: true, short: &[], cats: &[], subs: &[] },
    D { group: "", version: "v1", kind: "ServiceAccount", plural: "serviceaccounts", namespaced: true, short: &["sa"], cats: &[], subs: &[] },
    D { group: "", version: "v1", kind: "Event", plural: "events", namespaced: true, short: &["ev"], cats: &[], subs: &[] },
    D { group: "", version: "v1", kind: "Node", plural: "nodes", namespaced: false, short: &["no"], cats: &[], subs: &["status", "proxy"] },
    D { group: "", version: "v1", kind: "Namespace", plural: "namespaces", namespaced: false, short: &["ns"], cats: &[], subs: &["status"] },
    D { group: "", version: "v1", kind: "PersistentVolume", plural: "persistentvolumes", namespaced: false, short: &["pv"], cats: &[], subs: &["status"] },
    D { group: "", version: "v1", kind: "PersistentVolumeClaim", plural: "persistentvolumeclaims", namespaced: true, short: &["pvc"], cats: &[], subs: &["status"] },
    D { group: "", version: "v1", kind: "LimitRange", plural: "limitranges", namespaced: true, short: &["limits"], cats: &[], subs: &[] },
    D { group: "", version: "v1", kind: "ResourceQuota", plural: "resourcequotas", namespaced: true, short: &["quota"], cats: &[], subs: &["status"] },
    D { group: "", version: "v1", kind: "ReplicationController", plural: "replicationcontrollers", namespaced: true, short: &["rc"], cats: &["all"], subs: &["status", "scale"] },
    D { group: "", version: "v1", kind: "PodTemplate", plural: "podtemplates", namespaced: true, short: &[], cats: &[], subs: &[] },
    // apps/v1
    D { group: "apps", version: "v1", kind: "Deployment", plural: "deployments", namespaced: true, short: &["deploy"], cats: &["all"], subs: &["status", "scale"] },
    D { group: "apps", version: "v1", kind: "ReplicaSet", plural: "replicasets", namespaced: true, short: &["rs"], cats: &["all"], subs: &["status", "scale"] },
    D { group: "apps", version: "v1", kind: "StatefulSet", plural: "statefulsets", namespaced: true, short: &["sts"], cats: &["all"], subs: &["status", "scale"] },
    D { group: "apps", version: "v1", kind: "DaemonSet", plural: "daemonsets", namespaced: true, short: &["ds"], cats: &["all"], subs: &["status"] },
    D { group: "apps", version: "v1", kind: "ControllerRevision", plural: "controllerrevisions", namespaced: true, short: &[], cats: &[], subs: &[] },
    // batch/v1
    D { group: "batch", version: "v1", kind: "Job", plural: "jobs", namespaced: true, short: &[], cats: &["all"], subs: &["status"] },
    D { group: "batch", version: "v1", kind: "CronJob", plural: "cronjobs", namespaced: true, short: &["cj"], cats: &["all"], subs: &["status"] },
    // autoscaling: v2 is stored, v1 converted
    D { group: "autoscaling", version: "v2", kind: "HorizontalPodAutoscaler", plural: "horizontalpodautoscalers", namespaced: true, short: &["hpa"], cats: &["all"], subs: &["status"] },
    D { group: "autoscaling", version: "v1", kind: "HorizontalPodAutoscaler", plural: "horizontalpodautoscalers", namespaced: true, short: &["hpa"], cats: &["all"], subs: &["status"] },
    // policy/v1
    D { group: "policy", version: "v1", kind: "PodDisruptionBudget", plural: "poddisruptionbudgets", namespaced: true, short: &["pdb"], cats: &[], subs: &["status"] },
    // networking.k8s.io/v1
    D { group: "networking.k8s.io", version: "v1", kind: "Ingress", plural: "ingresses", namespaced: true, short: &["ing"], cats: &[], subs: &["status"] },
    D { group: "networking.k8s.io", version: "v1", kind: "IngressClass", plural: "ingressclasses", namespaced: false, short: &[], cats: &[], subs: &[] },
    D { group: "networking.k8s.io", version: "v1", kind: "NetworkPolicy", plural: "networkpolicies", namespaced: true, short: &["netpol"], cats: &[], subs: &[] },
    // discovery.k8s.io/v1
    D { group: "discovery.k8s.io", version: "v1", kind: "EndpointSlice", plural: "endpointslices", namespaced: true, short: &[], cats: &[], subs: &[] },
    // coordination.k8s.io/v1
    D { group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases", namespaced: true, short: &[], cats: &[], subs: &[] },
    // rbac.authorization.k8s.io/v1
    D { group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRoleBinding", plural: "clusterrolebindings", namespaced: false, short: &[], cats: &[], subs: &[] },
    D { group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRole", plural: "clusterroles", namespaced: false, short: &[], cats: &[], subs: &[] },
    D { group: "rbac.authorization.k8s.io", version: "v1", kind: "RoleBinding", plural: "rolebindings", namespaced: true, short: &[], cats: &[], subs: &[] },
    D { group: "rbac.authorization.k8s.io", version: "v1", kind: "Role", plural: "roles", namespaced: true, short: &[], cats: &[], subs: &[] },
    // storage.k8s.io/v1
    D { group: "storage.k8s.io", version: "v1", kind: "StorageClass", plural: "storageclasses", namespaced: false, short: &["sc"], cats: &[], subs: &[] },
    D { group: "storage.k8s.io", version: "v1", kind: "CSIDriver", plural: "csidrivers", namespaced: false, short: &[], cats: &[], subs: &[] },
    D { group: "storage.k8s.io", version: "v1", kind: "CSINode", plural: "csinodes", namespaced: false, short: &[], cats: &[], subs: &[] },
    D { group: "storage.k8s.io", version: "v1", kind: "VolumeAttachment", plural: "volumeattachments", namespaced: false, short: &[], cats: &[], subs: &["status"] },
    // scheduling.k8s.io/v1
    D { group: "scheduling.k8s.io", version: "v1", kind: "PriorityClass", plural: "priorityclasses", namespaced: false, short: &["pc"], cats: &[], subs: &[] },
    // node.k8s.io/v1
    D { group: "node.k8s.io", version: "v1", kind: "RuntimeClass", plural: "runtimeclasses", namespaced: false, short: &[], cats: &[], subs: &[] },
    // events.k8s.io/v1: the same objects as core/v1 events, converted
    D { group: "events.k8s.io", version: "v1", kind: "Event", plural: "events", namespaced: true, short: &["ev"], cats: &[], subs: &[] },
    // certificates.k8s.io/v1
    D { group: "certificates.k8s.io", version: "v1", kind: "CertificateSigningRequest", plural: "certificatesigningrequests", namespaced: false, short: &["csr"], cats: &[], subs: &["status"] },
    // admissionregistration.k8s.io/v1
    D { group: "admissionregistration.k8s.io", version: "v1", kind: "MutatingWebhookConfiguration", plural: "mutatingwebhookconfigurations", namespaced: false, short: &[], cats: &["api-extensions"], subs: &[] },
    D { group: "admissionregistration.k8s.io", version: "v1", kind: "ValidatingWebhookConfiguration", plural: "validatingwebhookconfigurations", namespaced: false, short: &[], cats: &["api-extensions"], subs: &[] },
    // apiextensions.k8s.io/v1
    D { group: "apiextensions.k8s.io", version: "v1", kind: "CustomResourceDefinition", plural: "customresourcedefinitions", namespaced: false, short: &["crd", "crds"], cats: &["api-extensions"], subs: &["status"] },
];

/// Where a resource is stored; versions and groups that share objects share a prefix.
fn storage_prefix(group: &str, plural: &str) -> String {
    let g = match (group, plural) {
        ("events.k8s.io", "events") => "core",
        ("", _) => "core",
        (g, _) => g,
    };
    format!("/registry/{g}/{plural}/")
}

fn conversion_for(group: &str, version: &str, plural: &str) -> Option<Arc<dyn Conversion>> {
    match (group, version, plural) {
        ("events.k8s.io", "v1", "events") => Some(Arc::new(conversion::EventsV1)),
        ("autoscaling", "v1", "horizontalpodautoscalers") => Some(Arc::new(conversion::HpaV1)),
        _ => None,
    }
}

/// The built-in resource declarations.
pub fn builtin() -> Vec<ResourceDef> {
    BUILTINS
        .iter()
        .map(|d| {
            let verbs = if d.plural == "namespaces" {
                VERBS_NO_DELETECOLLECTION
            } else {
                VERBS
            };
            let conversion = conversion_for(d.group, d.version, d.plural);
            ResourceDef {
                group: d.group.into(),
                version: d.version.into(),
                kind: d.kind.into(),
                plural: d.plural.into(),
                singular: d.kind.to_lowercase(),
                namespaced: d.namespaced,
                short_names: d.short.iter().map(|s| s.to_string()).collect(),
                categories: d.cats.iter().map(|s| s.to_string()).collect(),
                subresources: d.subs.iter().map(|s| s.to_string()).collect(),
                verbs: verbs.iter().map(|s| s.to_string()).collect(),
                storage_prefix: storage_prefix(d.group, d.plural),
                storage_version: conversion.is_none(),
                strategy: match (d.group, d.kind) {
                    // CRDs' rules live with the CRD machinery.
                    ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                        Arc::new(super::crd::CrdStrategy)
                    }
                    _ => for_kind(d.group, d.kind),
                },
                conversion,
            }
        })
        .collect()
}
