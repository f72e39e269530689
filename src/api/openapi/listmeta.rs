//! List, map and patch metadata of the built-in API fields: which lists merge
//! by key under strategic-merge patch, which are atomic, sets or maps for
//! server-side apply. The published OpenAPI carries these as
//! `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and
//! `x-kubernetes-map-type`; the strategic-merge-patch and apply
//! implementations read the same table.
//!
//! The facts follow the Kubernetes 1.33 API (the `+listType`, `+listMapKey`,
//! `+patchStrategy`, `+patchMergeKey`, `+mapType` and `+structType` markers of
//! its types); the k8s-openapi schemas do not carry them.

/// Metadata of one field of one definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMeta {
    /// OpenAPI definition name, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub definition: &'static str,
    /// JSON field name, e.g. `containers`.
    pub field: &'static str,
    /// Strategic-merge-patch strategy (`merge`, `retainKeys`, `merge,retainKeys`,
    /// `replace`), empty when none.
    pub patch_strategy: &'static str,
    /// Strategic-merge-patch merge key, empty when none.
    pub patch_merge_key: &'static str,
    /// Server-side-apply list type (`atomic`, `set`, `map`), empty when none.
    pub list_type: &'static str,
    /// Keys of a `map` list.
    pub list_map_keys: &'static [&'static str],
    /// Server-side-apply map type (`atomic`, `granular`), empty when none.
    pub map_type: &'static str,
}

const fn f(
    definition: &'static str,
    field: &'static str,
    patch_strategy: &'static str,
    patch_merge_key: &'static str,
    list_type: &'static str,
    list_map_keys: &'static [&'static str],
    map_type: &'static str,
) -> FieldMeta {
    FieldMeta {
        definition,
        field,
        patch_strategy,
        patch_merge_key,
        list_type,
        list_map_keys,
        map_type,
    }
}

/// Every annotated field, sorted by (definition, field).
#[rustfmt::skip]
pub const FIELDS: &[FieldMeta] = &[
    f("io.k8s.api.admissionregistration.v1.MatchResources", "excludeResourceRules", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.MatchResources", "resourceRules", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.MutatingWebhook", "admissionReviewVersions", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.MutatingWebhook", "matchConditions", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.admissionregistration.v1.MutatingWebhook", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "resourceNames", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.Rule", "apiGroups", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.Rule", "apiVersions", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.Rule", "resources", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.RuleWithOperations", "operations", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.TypeChecking", "expressionWarnings", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpec", "validationActions", "", "", "set", &[], ""),
    f("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "auditAnnotations", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "matchConditions", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "validations", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "variables", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyStatus", "conditions", "", "", "map", &["type"], ""),
    f("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "admissionReviewVersions", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "matchConditions", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", "", "", &[], ""),
    f("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates", "", "", "atomic", &[], ""),
    f("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.autoscaling.v2.HPAScalingRules", "policies", "", "", "atomic", &[], ""),
    f("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics", "", "", "atomic", &[], ""),
    f("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "currentMetrics", "", "", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.CronJobStatus", "active", "", "", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", "type", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.PodFailurePolicy", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", "", "", "set", &[], ""),
    f("io.k8s.api.batch.v1.PodFailurePolicyRule", "onPodConditions", "", "", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.SuccessPolicy", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.UncountedTerminatedPods", "failed", "", "", "set", &[], ""),
    f("io.k8s.api.batch.v1.UncountedTerminatedPods", "succeeded", "", "", "set", &[], ""),
    f("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "groups", "", "", "atomic", &[], ""),
    f("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "request", "", "", "atomic", &[], ""),
    f("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "usages", "", "", "atomic", &[], ""),
    f("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "certificate", "", "", "atomic", &[], ""),
    f("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "conditions", "", "", "map", &["type"], ""),
    f("io.k8s.api.core.v1.AvoidPods", "preferAvoidPods", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Capabilities", "add", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Capabilities", "drop", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.CephFSPersistentVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.CephFSVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ComponentStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.ConfigMapProjection", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ConfigMapVolumeSource", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Container", "args", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Container", "command", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Container", "env", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.Container", "envFrom", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Container", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"], ""),
    f("io.k8s.api.core.v1.Container", "resizePolicy", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Container", "volumeDevices", "merge", "devicePath", "map", &["devicePath"], ""),
    f("io.k8s.api.core.v1.Container", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    f("io.k8s.api.core.v1.ContainerImage", "names", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    f("io.k8s.api.core.v1.DownwardAPIProjection", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.DownwardAPIVolumeSource", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EndpointSubset", "addresses", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EndpointSubset", "notReadyAddresses", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EndpointSubset", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Endpoints", "subsets", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "args", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "command", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "envFrom", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "resizePolicy", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "merge", "devicePath", "map", &["devicePath"], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    f("io.k8s.api.core.v1.ExecAction", "command", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.FCVolumeSource", "targetWWNs", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.FCVolumeSource", "wwids", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.HTTPGetAction", "httpHeaders", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.HostAlias", "hostnames", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ISCSIPersistentVolumeSource", "portals", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ISCSIVolumeSource", "portals", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.LimitRangeSpec", "limits", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.LinuxContainerUser", "supplementalGroups", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.LoadBalancerIngress", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.LoadBalancerStatus", "ingress", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NamespaceSpec", "finalizers", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeSelectorRequirement", "values", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeSelectorTerm", "matchExpressions", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeSelectorTerm", "matchFields", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", "", "set", &[], ""),
    f("io.k8s.api.core.v1.NodeSpec", "taints", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.NodeStatus", "images", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeStatus", "runtimeHandlers", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeStatus", "volumesAttached", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeStatus", "volumesInUse", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "accessModes", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "allocatedResourceStatuses", "", "", "", &[], "granular"),
    f("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PersistentVolumeSpec", "mountOptions", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAffinityTerm", "matchLabelKeys", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAffinityTerm", "mismatchLabelKeys", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAffinityTerm", "namespaces", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodDNSConfig", "nameservers", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodDNSConfig", "options", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodDNSConfig", "searches", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodExecOptions", "command", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodPortForwardOptions", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodSecurityContext", "supplementalGroups", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodSecurityContext", "sysctls", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip", "map", &["ip"], ""),
    f("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "nodeSelector", "", "", "", &[], "atomic"),
    f("io.k8s.api.core.v1.PodSpec", "readinessGates", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodSpec", "resourceClaims", "merge,retainKeys", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "tolerations", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "merge", "topologyKey", "map", &["topologyKey", "whenUnsatisfiable"], ""),
    f("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.PodStatus", "containerStatuses", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodStatus", "ephemeralContainerStatuses", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", "ip", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", "ip", "map", &["ip"], ""),
    f("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.ProjectedVolumeSource", "sources", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.RBDPersistentVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.RBDVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ReplicationControllerSpec", "selector", "", "", "", &[], "atomic"),
    f("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.ResourceQuotaSpec", "scopes", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ResourceRequirements", "claims", "", "", "map", &["name"], ""),
    f("io.k8s.api.core.v1.ResourceStatus", "resources", "", "", "map", &["resourceID"], ""),
    f("io.k8s.api.core.v1.ScopeSelector", "matchExpressions", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ScopedResourceSelectorRequirement", "values", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.SecretProjection", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.SecretVolumeSource", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceAccount", "secrets", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "externalIPs", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "loadBalancerSourceRanges", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port", "map", &["port", "protocol"], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "selector", "", "", "", &[], "atomic"),
    f("io.k8s.api.core.v1.ServiceStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.TopologySelectorLabelRequirement", "values", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.TopologySelectorTerm", "matchLabelExpressions", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.TopologySpreadConstraint", "matchLabelKeys", "", "", "atomic", &[], ""),
    f("io.k8s.api.discovery.v1.Endpoint", "addresses", "", "", "set", &[], ""),
    f("io.k8s.api.discovery.v1.EndpointHints", "forNodes", "", "", "atomic", &[], ""),
    f("io.k8s.api.discovery.v1.EndpointHints", "forZones", "", "", "atomic", &[], ""),
    f("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", "", "", "atomic", &[], ""),
    f("io.k8s.api.discovery.v1.EndpointSlice", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.HTTPIngressRuleValue", "paths", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IPBlock", "except", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IngressLoadBalancerIngress", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IngressLoadBalancerStatus", "ingress", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IngressSpec", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IngressSpec", "tls", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IngressTLS", "hosts", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "to", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "from", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.NetworkPolicySpec", "egress", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.NetworkPolicySpec", "ingress", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.NetworkPolicySpec", "policyTypes", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.ServiceCIDRSpec", "cidrs", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.ServiceCIDRStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.node.v1.Scheduling", "nodeSelector", "", "", "", &[], "atomic"),
    f("io.k8s.api.node.v1.Scheduling", "tolerations", "", "", "atomic", &[], ""),
    f("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", "replace", "", "", &[], ""),
    f("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.rbac.v1.AggregationRule", "clusterRoleSelectors", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.ClusterRole", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.PolicyRule", "apiGroups", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.PolicyRule", "nonResourceURLs", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.PolicyRule", "resourceNames", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.PolicyRule", "resources", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.PolicyRule", "verbs", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.Role", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.RoleBinding", "subjects", "", "", "atomic", &[], ""),
    f("io.k8s.api.storage.v1.CSIDriverSpec", "tokenRequests", "", "", "atomic", &[], ""),
    f("io.k8s.api.storage.v1.CSIDriverSpec", "volumeLifecycleModes", "", "", "set", &[], ""),
    f("io.k8s.api.storage.v1.CSINodeDriver", "topologyKeys", "", "", "atomic", &[], ""),
    f("io.k8s.api.storage.v1.CSINodeSpec", "drivers", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.storage.v1.StorageClass", "allowedTopologies", "", "", "atomic", &[], ""),
    f("io.k8s.api.storage.v1.StorageClass", "mountOptions", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.ConversionRequest", "objects", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.ConversionResponse", "convertedObjects", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames", "categories", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames", "shortNames", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec", "versions", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "conditions", "", "", "map", &["type"], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "storedVersions", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", "additionalPrinterColumns", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", "selectableFields", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "allOf", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "anyOf", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "enum", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "oneOf", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "required", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-list-map-keys", "", "", "atomic", &[], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-validations", "merge", "rule", "map", &["rule"], ""),
    f("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.WebhookConversion", "conversionReviewVersions", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "serverAddressByClientCIDRs", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList", "groups", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "categories", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "shortNames", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", "resources", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "serverAddressByClientCIDRs", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "versions", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.ApplyOptions", "dryRun", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.CreateOptions", "dryRun", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "dryRun", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.FieldSelectorRequirement", "values", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "matchExpressions", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement", "values", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "merge", "", "set", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "managedFields", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "merge", "uid", "map", &["uid"], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.PatchOptions", "dryRun", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.RootPaths", "paths", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "details", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails", "causes", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.Table", "columnDefinitions", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.Table", "rows", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.TableRow", "cells", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.TableRow", "conditions", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.UpdateOptions", "dryRun", "", "", "atomic", &[], ""),
];

/// Definitions whose objects are replaced as a whole by server-side apply
/// (`x-kubernetes-map-type: atomic` on the definition).
#[rustfmt::skip]
pub const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.api.admissionregistration.v1.MatchResources",
    "io.k8s.api.admissionregistration.v1.NamedRuleWithOperations",
    "io.k8s.api.admissionregistration.v1.ParamKind",
    "io.k8s.api.admissionregistration.v1.ParamRef",
    "io.k8s.api.admissionregistration.v1.Variable",
    "io.k8s.api.autoscaling.v1.CrossVersionObjectReference",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ScopeSelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.discovery.v1.EndpointPort",
    "io.k8s.api.networking.v1.ServiceBackendPort",
    "io.k8s.api.rbac.v1.RoleRef",
    "io.k8s.api.rbac.v1.Subject",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
];

/// The metadata of `field` in `definition`, if it has any.
pub fn lookup(definition: &str, field: &str) -> Option<&'static FieldMeta> {
    FIELDS
        .binary_search_by(|m| (m.definition, m.field).cmp(&(definition, field)))
        .ok()
        .map(|i| &FIELDS[i])
}

/// The annotated fields of one definition.
pub fn fields_of(definition: &str) -> &'static [FieldMeta] {
    let start = FIELDS.partition_point(|m| m.definition < definition);
    let end = FIELDS.partition_point(|m| m.definition <= definition);
    &FIELDS[start..end]
}

/// Whether the definition is an atomic struct.
pub fn is_atomic_struct(definition: &str) -> bool {
    ATOMIC_STRUCTS.binary_search(&definition).is_ok()
}

/// Strategic-merge-patch metadata of a field: (strategies, merge key).
pub fn patch_meta(definition: &str, field: &str) -> Option<(&'static str, &'static str)> {
    lookup(definition, field)
        .filter(|m| !m.patch_strategy.is_empty() || !m.patch_merge_key.is_empty())
        .map(|m| (m.patch_strategy, m.patch_merge_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(
            FIELDS
                .windows(2)
                .all(|w| (w[0].definition, w[0].field) < (w[1].definition, w[1].field))
        );
        assert!(ATOMIC_STRUCTS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn containers_merge_by_name() {
        let m = lookup("io.k8s.api.core.v1.PodSpec", "containers").unwrap();
        assert_eq!(
            (m.patch_strategy, m.patch_merge_key, m.list_type),
            ("merge", "name", "map")
        );
        assert_eq!(m.list_map_keys, &["name"]);
        assert_eq!(
            patch_meta("io.k8s.api.core.v1.Container", "ports"),
            Some(("merge", "containerPort"))
        );
        assert_eq!(
            lookup("io.k8s.api.core.v1.Container", "ports")
                .unwrap()
                .list_map_keys,
            &["containerPort", "protocol"]
        );
        assert_eq!(
            patch_meta("io.k8s.api.core.v1.PodSpec", "volumes"),
            Some(("merge,retainKeys", "name"))
        );
        assert_eq!(
            patch_meta(
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                "ownerReferences"
            ),
            Some(("merge", "uid"))
        );
        assert_eq!(
            patch_meta("io.k8s.api.core.v1.PodSpec", "tolerations"),
            None
        );
        assert_eq!(
            lookup("io.k8s.api.core.v1.PodSpec", "tolerations")
                .unwrap()
                .list_type,
            "atomic"
        );
        assert!(
            fields_of("io.k8s.api.core.v1.PodSpec")
                .iter()
                .any(|m| m.field == "initContainers")
        );
        assert!(is_atomic_struct(
            "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
        ));
        assert!(!is_atomic_struct("io.k8s.api.core.v1.PodSpec"));
    }
}
