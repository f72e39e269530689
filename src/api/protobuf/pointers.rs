//! Fields whose zero value was set on purpose.
//!
//! Go's generated protobuf marshaller writes every non-pointer scalar field,
//! zero or not, while a JSON client drops zeros of `omitempty` fields; for
//! pointer fields (`*int32`, `*bool`, `*string`, `*SomeStringType`) it writes
//! only non-nil ones, so a zero there (`replicas: 0`, `backoffLimit: 0`,
//! `automountServiceAccountToken: false`, `storageClassName: ""`) means what
//! it says. This table lists those pointer scalar fields of the upstream Go
//! types (k8s.io/api, apimachinery's meta/v1, apiextensions-apiserver,
//! kube-aggregator, metrics), by Go type name and JSON name, sorted by type
//! name ignoring case. Pointers to structs need no entry: a message present
//! on the wire is always kept.

use std::cmp::Ordering;

/// Whether `json` of upstream type `type_name` (compared ignoring case, as
/// prost respells acronyms) is a pointer scalar field.
pub fn is_pointer(type_name: &str, json: &str) -> bool {
    POINTER_FIELDS
        .binary_search_by(|(t, _)| cmp_ignore_case(t, type_name))
        .is_ok_and(|i| POINTER_FIELDS[i].1.contains(&json))
}

fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

#[rustfmt::skip]
static POINTER_FIELDS: &[(&str, &[&str])] = &[
    ("AdmissionRequest", &["dryRun"]),
    ("AdmissionResponse", &["patchType"]),
    ("AllocatedDeviceStatus", &["shareID"]),
    ("AppArmorProfile", &["localhostProfile"]),
    ("AzureDiskVolumeSource", &["cachingMode", "fsType", "kind", "readOnly"]),
    ("AzureFilePersistentVolumeSource", &["secretNamespace"]),
    ("BasicDevice", &["allNodes", "allowMultipleAllocations", "bindsToNode", "nodeName"]),
    ("CertificateSigningRequestSpec", &["expirationSeconds", "signerName"]),
    ("ClientIPConfig", &["timeoutSeconds"]),
    ("ClusterTrustBundleProjection", &["name", "optional", "signerName", "user"]),
    ("CompositePodGroupSpec", &["parentCompositePodGroupName", "preemptionPolicy", "priority"]),
    ("CompositePodGroupTemplate", &["preemptionPolicy", "priority"]),
    ("ConfigMap", &["immutable"]),
    ("ConfigMapEnvSource", &["optional"]),
    ("ConfigMapKeySelector", &["optional"]),
    ("ConfigMapProjection", &["optional"]),
    ("ConfigMapVolumeSource", &["defaultMode", "defaultUser", "optional"]),
    ("Container", &["restartPolicy"]),
    ("ContainerResourceMetricSource", &["targetAverageUtilization"]),
    ("ContainerResourceMetricStatus", &["currentAverageUtilization"]),
    ("ContainerStatus", &["started", "stopSignal"]),
    ("CronJobSpec", &["failedJobsHistoryLimit", "startingDeadlineSeconds", "successfulJobsHistoryLimit", "suspend", "timeZone"]),
    ("CSIDriverSpec", &["attachRequired", "fsGroupPolicy", "nodeAllocatableUpdatePeriodSeconds", "podInfoOnMount", "preventPodSchedulingIfMissing", "requiresRepublish", "seLinuxMount", "serviceAccountTokenInSecrets", "storageCapacity"]),
    ("CSIVolumeSource", &["fsType", "readOnly"]),
    ("CustomResourceDefinitionSpec", &["preserveUnknownFields"]),
    ("CustomResourceDefinitionVersion", &["deprecationWarning"]),
    ("CustomResourceSubresourceScale", &["labelSelectorPath"]),
    ("DaemonSetSpec", &["revisionHistoryLimit"]),
    ("DaemonSetStatus", &["collisionCount"]),
    ("DeleteOptions", &["gracePeriodSeconds", "ignoreStoreReadErrorWithClusterBreakingPotential", "orphanDependents", "propagationPolicy"]),
    ("DeploymentSpec", &["progressDeadlineSeconds", "replicas", "revisionHistoryLimit"]),
    ("DeploymentStatus", &["collisionCount", "terminatingReplicas"]),
    ("Device", &["allNodes", "allowMultipleAllocations", "bindsToNode", "nodeName"]),
    ("DeviceAttribute", &["bool", "int", "string", "version"]),
    ("DeviceClassSpec", &["extendedResourceName"]),
    ("DeviceConstraint", &["distinctAttribute", "matchAttribute"]),
    ("DeviceRequest", &["adminAccess"]),
    ("DeviceRequestAllocationResult", &["adminAccess", "shareID"]),
    ("DeviceTaintSelector", &["device", "driver", "pool"]),
    ("DeviceToleration", &["tolerationSeconds"]),
    ("DownwardAPIVolumeFile", &["mode", "user"]),
    ("DownwardAPIVolumeSource", &["defaultMode", "defaultUser"]),
    ("EmptyDirVolumeSource", &["mode"]),
    ("Endpoint", &["hostname", "nodeName", "zone"]),
    ("EndpointAddress", &["nodeName"]),
    ("EndpointConditions", &["ready", "serving", "terminating"]),
    ("EndpointPort", &["appProtocol", "name", "port", "protocol"]),
    ("EphemeralContainerCommon", &["restartPolicy"]),
    ("EvictionRequestStatus", &["observedGeneration"]),
    ("EvictionResponder", &["priority"]),
    ("EvictionStatus", &["observedGeneration"]),
    ("ExactDeviceRequest", &["adminAccess"]),
    ("ExemptPriorityLevelConfiguration", &["lendablePercent", "nominalConcurrencyShares"]),
    ("ExternalMetricValue", &["window"]),
    ("FCVolumeSource", &["lun"]),
    ("FileKeySelector", &["optional"]),
    ("GlusterfsPersistentVolumeSource", &["endpointsNamespace"]),
    ("GRPCAction", &["mode", "service"]),
    ("HorizontalPodAutoscalerCondition", &["observedGeneration"]),
    ("HorizontalPodAutoscalerSpec", &["minReplicas", "targetCPUUtilizationPercentage"]),
    ("HorizontalPodAutoscalerStatus", &["currentCPUUtilizationPercentage", "observedGeneration"]),
    ("HostPathVolumeSource", &["type"]),
    ("HPAScalingRules", &["selectPolicy", "stabilizationWindowSeconds"]),
    ("HTTPGetAction", &["protocol"]),
    ("HTTPIngressPath", &["pathType"]),
    ("IngressClassParametersReference", &["apiGroup", "namespace", "scope"]),
    ("IngressPortStatus", &["error"]),
    ("IngressSpec", &["ingressClassName"]),
    ("ISCSIPersistentVolumeSource", &["initiatorName"]),
    ("ISCSIVolumeSource", &["initiatorName"]),
    ("JobSpec", &["activeDeadlineSeconds", "backoffLimit", "backoffLimitPerIndex", "completionMode", "completions", "managedBy", "manualSelector", "maxFailedIndexes", "parallelism", "podReplacementPolicy", "suspend", "ttlSecondsAfterFinished"]),
    ("JobStatus", &["failedIndexes", "ready", "terminating"]),
    ("JSONSchemaProps", &["$ref", "maxItems", "maxLength", "maxProperties", "maximum", "minItems", "minLength", "minProperties", "minimum", "multipleOf", "x-kubernetes-list-type", "x-kubernetes-map-type", "x-kubernetes-preserve-unknown-fields"]),
    ("KeyToPath", &["mode", "user"]),
    ("LeaseSpec", &["holderIdentity", "leaseDurationSeconds", "leaseTransitions", "preferredHolder", "strategy"]),
    ("Lifecycle", &["stopSignal"]),
    ("LimitedPriorityLevelConfiguration", &["borrowingLimitPercent", "lendablePercent", "nominalConcurrencyShares"]),
    ("ListMeta", &["remainingItemCount"]),
    ("ListOptions", &["sendInitialEvents", "timeoutSeconds"]),
    ("LoadBalancerIngress", &["ipMode"]),
    ("LocalVolumeSource", &["fsType"]),
    ("MatchResources", &["matchPolicy"]),
    ("MetricTarget", &["averageUtilization"]),
    ("MetricValue", &["window", "windowSeconds"]),
    ("MetricValueStatus", &["averageUtilization"]),
    ("MutatingAdmissionPolicySpec", &["failurePolicy"]),
    ("MutatingWebhook", &["failurePolicy", "matchPolicy", "reinvocationPolicy", "sideEffects", "timeoutSeconds"]),
    ("NetworkPolicyPort", &["endPort", "protocol"]),
    ("NodeAllocatableMapping", &["capacityKey"]),
    ("NodeFeatures", &["supplementalGroupsPolicy"]),
    ("NodeRuntimeHandlerFeatures", &["recursiveReadOnlyMounts", "userNamespaces"]),
    ("NodeSwapStatus", &["capacity"]),
    ("ObjectMeta", &["deletionGracePeriodSeconds"]),
    ("OwnerReference", &["blockOwnerDeletion", "controller"]),
    ("ParamRef", &["parameterNotFoundAction"]),
    ("PartitionTypeStatus", &["allocatable", "total"]),
    ("PatchOptions", &["force"]),
    ("PersistentVolumeClaimSpec", &["storageClassName", "volumeAttributesClassName", "volumeMode"]),
    ("PersistentVolumeClaimStatus", &["currentVolumeAttributesClassName"]),
    ("PersistentVolumeSpec", &["volumeAttributesClassName", "volumeMode"]),
    ("PodCertificateProjection", &["maxExpirationSeconds", "user"]),
    ("PodCertificateRequestSpec", &["maxExpirationSeconds"]),
    ("PodDisruptionBudgetSpec", &["unhealthyPodEvictionPolicy"]),
    ("PodDNSConfigOption", &["value"]),
    ("PodFailurePolicyOnExitCodesRequirement", &["containerName"]),
    ("PodGroupResourceClaim", &["resourceClaimName", "resourceClaimTemplateName"]),
    ("PodGroupResourceClaimStatus", &["resourceClaimName"]),
    ("PodGroupSpec", &["parentCompositePodGroupName", "preemptionPolicy", "priority"]),
    ("PodGroupTemplate", &["preemptionPolicy", "priority"]),
    ("PodLogOptions", &["limitBytes", "sinceSeconds", "stream", "tailLines"]),
    ("PodResourceClaim", &["resourceClaimName", "resourceClaimTemplateName"]),
    ("PodResourceClaimStatus", &["resourceClaimName"]),
    ("PodSchedulingGroup", &["podGroupName"]),
    ("PodSecurityContext", &["fsGroup", "fsGroupChangePolicy", "runAsGroup", "runAsNonRoot", "runAsUser", "seLinuxChangePolicy", "supplementalGroupsPolicy"]),
    ("PodSpec", &["activeDeadlineSeconds", "automountServiceAccountToken", "enableServiceLinks", "hostUsers", "hostnameOverride", "preemptionPolicy", "priority", "runtimeClassName", "setHostnameAsFQDN", "shareProcessNamespace", "terminationGracePeriodSeconds"]),
    ("PoolStatus", &["allocatedDevices", "availableDevices", "nodeName", "resourceSliceCount", "totalDevices", "unavailableDevices", "validationError"]),
    ("PortStatus", &["error"]),
    ("Preconditions", &["resourceVersion", "uid"]),
    ("PriorityClass", &["preemptionPolicy"]),
    ("Probe", &["terminationGracePeriodSeconds"]),
    ("ProjectedVolumeSource", &["defaultMode", "defaultUser"]),
    ("ReplicaSetSpec", &["replicas"]),
    ("ReplicaSetStatus", &["terminatingReplicas"]),
    ("ReplicationControllerSpec", &["replicas"]),
    ("ResourceHealth", &["message"]),
    ("ResourceMetricSource", &["targetAverageUtilization"]),
    ("ResourceMetricStatus", &["currentAverageUtilization"]),
    ("ResourcePoolStatusRequestSpec", &["defaultPartitionTypeAttribute", "limit", "poolName"]),
    ("ResourcePoolStatusRequestStatus", &["poolCount"]),
    ("ResourceSliceSpec", &["allNodes", "nodeName", "partitionTypeAttribute", "perDeviceNodeSelection"]),
    ("ResponderStatus", &["message"]),
    ("RollingUpdateStatefulSetStrategy", &["partition"]),
    ("Rule", &["scope"]),
    ("SeccompProfile", &["localhostProfile"]),
    ("Secret", &["immutable"]),
    ("SecretEnvSource", &["optional"]),
    ("SecretKeySelector", &["optional"]),
    ("SecretProjection", &["optional"]),
    ("SecretVolumeSource", &["defaultMode", "defaultUser", "optional"]),
    ("SecurityContext", &["allowPrivilegeEscalation", "privileged", "procMount", "readOnlyRootFilesystem", "runAsGroup", "runAsNonRoot", "runAsUser"]),
    ("ServiceAccount", &["automountServiceAccountToken"]),
    ("ServiceAccountTokenProjection", &["expirationSeconds", "user"]),
    ("ServicePort", &["appProtocol"]),
    ("ServiceReference", &["path", "port"]),
    ("ServiceSpec", &["allocateLoadBalancerNodePorts", "internalTrafficPolicy", "ipFamilyPolicy", "loadBalancerClass", "trafficDistribution"]),
    ("ShareableSummaryStatus", &["fullyAvailableDevices", "partiallyAvailableDevices"]),
    ("StatefulSetSpec", &["replicas", "revisionHistoryLimit"]),
    ("StatefulSetStatus", &["collisionCount", "observedGeneration"]),
    ("StorageClass", &["allowVolumeExpansion", "reclaimPolicy", "volumeBindingMode"]),
    ("StorageHealthCondition", &["accessMode", "volumeMode"]),
    ("StorageVersionStatus", &["commonEncodingVersion"]),
    ("SuccessPolicyRule", &["succeededCount", "succeededIndexes"]),
    ("TargetResponder", &["priority"]),
    ("TokenRequest", &["expirationSeconds"]),
    ("TokenRequestSpec", &["expirationSeconds"]),
    ("Toleration", &["tolerationSeconds"]),
    ("TopologySpreadConstraint", &["minDomains", "nodeAffinityPolicy", "nodeTaintsPolicy"]),
    ("TypedLocalObjectReference", &["apiGroup"]),
    ("TypedObjectReference", &["apiGroup", "namespace"]),
    ("ValidatingAdmissionPolicySpec", &["failurePolicy"]),
    ("ValidatingWebhook", &["failurePolicy", "matchPolicy", "sideEffects", "timeoutSeconds"]),
    ("Validation", &["reason"]),
    ("ValidationRule", &["optionalOldSelf", "reason"]),
    ("VolumeAttachmentSource", &["persistentVolumeName"]),
    ("VolumeError", &["errorCode"]),
    ("VolumeMount", &["mountPropagation", "recursiveReadOnly"]),
    ("VolumeMountStatus", &["recursiveReadOnly"]),
    ("VolumeNodeResources", &["count"]),
    ("WebhookClientConfig", &["url"]),
    ("WindowsSecurityContextOptions", &["gmsaCredentialSpec", "gmsaCredentialSpecName", "hostProcess", "runAsUserName"]),
    ("WorkloadCompositePodGroupGangSchedulingPolicy", &["minGroupCount"]),
    ("WorkloadPodGroupGangSchedulingPolicy", &["minCount"]),
    ("WorkloadPodGroupResourceClaim", &["resourceClaimName", "resourceClaimTemplateName"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        for w in POINTER_FIELDS.windows(2) {
            assert_eq!(
                cmp_ignore_case(w[0].0, w[1].0),
                Ordering::Less,
                "{} / {}",
                w[0].0,
                w[1].0
            );
        }
    }

    #[test]
    fn pointer_fields_are_found_in_any_case() {
        assert!(is_pointer("DeploymentSpec", "replicas"));
        assert!(is_pointer("JobSpec", "backoffLimit"));
        assert!(is_pointer("CsiDriverSpec", "attachRequired"));
        assert!(!is_pointer("DeploymentSpec", "minReadySeconds"));
        assert!(!is_pointer("ObjectMeta", "generateName"));
        assert!(!is_pointer("NoSuchType", "replicas"));
    }
}
