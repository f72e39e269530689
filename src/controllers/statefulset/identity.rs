//! A StatefulSet pod's stable identity: its name `<set>-<ordinal>`, its
//! hostname and subdomain, its identity labels, its revision label, and the
//! PersistentVolumeClaims `<template>-<set>-<ordinal>` its volumes point at.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};

use super::super::history::REVISION_HASH_LABEL;
use super::super::podcontrol::{controller_ref, pod_from_template};

/// The label naming a StatefulSet pod (for per-pod Services).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The parent name and ordinal in a pod name `<parent>-<ordinal>`; the
/// ordinal is -1 when the name has no numeric suffix (or it overflows).
pub fn parent_and_ordinal(name: &str) -> (&str, i32) {
    match name.rsplit_once('-') {
        Some((parent, digits))
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (parent, digits.parse::<i32>().unwrap_or(-1))
        }
        _ => ("", -1),
    }
}

pub fn name_of(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

pub fn ordinal(pod: &Pod) -> i32 {
    parent_and_ordinal(name_of(pod)).1
}

pub fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or("")
}

pub fn set_namespace(set: &StatefulSet) -> &str {
    set.metadata.namespace.as_deref().unwrap_or("")
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// The first ordinal (spec.ordinals.start, else 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

/// The last ordinal, inclusive.
pub fn end_ordinal(set: &StatefulSet) -> i32 {
    start_ordinal(set).saturating_add(replicas(set)) - 1
}

pub fn in_ordinal_range(pod: &Pod, set: &StatefulSet) -> bool {
    let o = ordinal(pod);
    o >= start_ordinal(set) && o <= end_ordinal(set)
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(set))
}

pub fn claim_name(template: &PersistentVolumeClaim, set: &StatefulSet, ordinal: i32) -> String {
    format!(
        "{}-{}-{ordinal}",
        template.metadata.name.as_deref().unwrap_or(""),
        set_name(set)
    )
}

/// Whether the pod's name says it belongs to `set`.
pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    let (parent, ord) = parent_and_ordinal(name_of(pod));
    ord >= 0 && parent == set_name(set)
}

fn service_name(set: &StatefulSet) -> Option<String> {
    set.spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or(&[])
}

/// Whether the pod's name, namespace and identity labels are right.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let (parent, ord) = parent_and_ordinal(name_of(pod));
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    ord >= 0
        && parent == set_name(set)
        && name_of(pod) == pod_name(set, ord)
        && pod.metadata.namespace.as_deref().unwrap_or("") == set_namespace(set)
        && label(POD_NAME_LABEL) == Some(name_of(pod))
        && label(POD_INDEX_LABEL) == Some(ord.to_string().as_str())
}

/// Set the pod's namespace and identity labels from its ordinal.
pub fn update_identity(set: &StatefulSet, pod: &mut Pod) {
    let ord = ordinal(pod);
    let name = pod_name(set, ord);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = Some(set_namespace(set).to_string());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name);
    labels.insert(POD_INDEX_LABEL.into(), ord.to_string());
}

/// Identity plus the fields only set at creation: hostname and subdomain.
fn init_identity(set: &StatefulSet, pod: &mut Pod) {
    update_identity(set, pod);
    let name = pod.metadata.name.clone();
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = name;
        spec.subdomain = service_name(set);
    }
}

/// The claims the pod needs, with the template name each comes from, in
/// template order: named for the pod, labelled with the set's selector.
pub fn claims_for(set: &StatefulSet, pod: &Pod) -> Vec<(String, PersistentVolumeClaim)> {
    let ord = ordinal(pod);
    let selector_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|t| {
            let mut claim = t.clone();
            let template_name = t.metadata.name.clone().unwrap_or_default();
            claim.metadata.name = Some(claim_name(t, set, ord));
            claim.metadata.namespace = Some(set_namespace(set).to_string());
            let labels = claim.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(selector_labels.clone());
            // A template is an embedded object: none of the server-managed fields.
            claim.metadata.creation_timestamp = None;
            claim.metadata.resource_version = None;
            claim.metadata.uid = None;
            claim.status = None;
            (template_name, claim)
        })
        .collect()
}

/// Whether every claim template has a volume of the pod pointing at its claim.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let ord = ordinal(pod);
    if ord < 0 {
        return false;
    }
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    claim_templates(set).iter().all(|t| {
        let want = claim_name(t, set, ord);
        volumes.iter().any(|v| {
            Some(v.name.as_str()) == t.metadata.name.as_deref()
                && v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == want)
        })
    })
}

/// Point the pod's volumes at its claims; a pod volume named like a claim
/// template is replaced.
pub fn update_storage(set: &StatefulSet, pod: &mut Pod) {
    let claims = claims_for(set, pod);
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let current = spec.volumes.take().unwrap_or_default();
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(template, claim)| Volume {
            name: template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        current
            .into_iter()
            .filter(|v| !claims.iter().any(|(t, _)| *t == v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
}

/// The revision a pod was made from (its controller-revision-hash label).
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .map_or("", String::as_str)
}

fn set_pod_revision(pod: &mut Pod, revision: &str) {
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_HASH_LABEL.into(), revision.into());
}

/// A new pod for `ordinal` from `set`'s template (upstream's newStatefulSetPod).
pub fn new_pod(set: &StatefulSet, ordinal: i32) -> Pod {
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let name = pod_name(set, ordinal);
    let mut pod = pod_from_template(
        &template,
        set_namespace(set),
        controller_ref(set),
        set_name(set),
        Some(name),
    );
    init_identity(set, &mut pod);
    update_storage(set, &mut pod);
    pod
}

fn partition(set: &StatefulSet) -> Option<i32> {
    let us = set.spec.as_ref()?.update_strategy.as_ref()?;
    if us.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    Some(
        us.rolling_update
            .as_ref()
            .and_then(|r| r.partition)
            .unwrap_or(0),
    )
}

/// A new pod for `ordinal` at the right revision: below the partition it
/// stays at the current revision, else it is made at the update revision.
pub fn new_versioned_pod(
    current_set: &StatefulSet,
    update_set: &StatefulSet,
    current_revision: &str,
    update_revision: &str,
    ordinal: i32,
) -> Pod {
    let rolling = current_set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let has_rolling_update = current_set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .is_some_and(|u| u.rolling_update.is_some());
    let current_replicas = current_set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let start = start_ordinal(current_set);
    // Upstream's precedence: (rolling && no rollingUpdate && below current) || (rollingUpdate && below partition).
    let keep_current = (rolling && !has_rolling_update && ordinal < start + current_replicas)
        || (has_rolling_update && ordinal < start + partition(current_set).unwrap_or(0));
    let (set, revision) = if keep_current {
        (current_set, current_revision)
    } else {
        (update_set, update_revision)
    };
    let mut pod = new_pod(set, ordinal);
    set_pod_revision(&mut pod, revision);
    pod
}

#[cfg(test)]
pub mod testing {
    //! StatefulSets for unit tests.
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{
        Container, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    use super::*;

    pub fn set(name: &str, replicas: i32) -> StatefulSet {
        let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
        StatefulSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some(name.into()),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    match_expressions: None,
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            image: Some("nginx:1".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                pod_management_policy: Some("OrderedReady".into()),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateStatefulSetStrategy {
                        partition: Some(0),
                        max_unavailable: None,
                    }),
                }),
                revision_history_limit: Some(10),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub fn with_claim(mut s: StatefulSet, template: &str) -> StatefulSet {
        if let Some(spec) = s.spec.as_mut() {
            spec.volume_claim_templates
                .get_or_insert_with(Vec::new)
                .push(PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(template.into()),
                        ..Default::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        ..Default::default()
                    }),
                    status: None,
                });
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn names_and_ordinals() {
        assert_eq!(parent_and_ordinal("web-0"), ("web", 0));
        assert_eq!(parent_and_ordinal("my-web-12"), ("my-web", 12));
        assert_eq!(parent_and_ordinal("web"), ("", -1));
        assert_eq!(parent_and_ordinal("web-"), ("", -1));
        assert_eq!(parent_and_ordinal("web-x1"), ("", -1));
        assert_eq!(parent_and_ordinal("web-99999999999").1, -1);
        let s = set("web", 3);
        assert_eq!(pod_name(&s, 2), "web-2");
        assert_eq!((start_ordinal(&s), end_ordinal(&s)), (0, 2));
    }

    #[test]
    fn new_pods_carry_identity_storage_and_revision() {
        let s = with_claim(set("web", 3), "www");
        let p = new_versioned_pod(&s, &s, "web-aaa", "web-bbb", 1);
        assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
        let l = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(l.get(POD_NAME_LABEL).map(String::as_str), Some("web-1"));
        assert_eq!(l.get(POD_INDEX_LABEL).map(String::as_str), Some("1"));
        assert_eq!(l.get("app").map(String::as_str), Some("web"));
        // Partition 0: every new pod is at the update revision.
        assert_eq!(pod_revision(&p), "web-bbb");
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let vols = spec.volumes.unwrap_or_default();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0].name, "www");
        assert_eq!(
            vols[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("www-web-1")
        );
        let oref = &p.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (oref.kind.as_str(), oref.name.as_str(), oref.controller),
            ("StatefulSet", "web", Some(true))
        );
        assert!(identity_matches(&s, &p));
        assert!(storage_matches(&s, &p));
        let claims = claims_for(&s, &p);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].1.metadata.name.as_deref(), Some("www-web-1"));
        assert_eq!(
            claims[0]
                .1
                .metadata
                .labels
                .clone()
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("web")
        );
    }

    #[test]
    fn partition_keeps_low_ordinals_at_current_revision() {
        let mut s = set("web", 4);
        if let Some(ru) = s
            .spec
            .as_mut()
            .and_then(|sp| sp.update_strategy.as_mut())
            .and_then(|u| u.rolling_update.as_mut())
        {
            ru.partition = Some(2);
        }
        assert_eq!(
            pod_revision(&new_versioned_pod(&s, &s, "cur", "upd", 1)),
            "cur"
        );
        assert_eq!(
            pod_revision(&new_versioned_pod(&s, &s, "cur", "upd", 2)),
            "upd"
        );
        assert_eq!(
            pod_revision(&new_versioned_pod(&s, &s, "cur", "upd", 3)),
            "upd"
        );
    }

    #[test]
    fn broken_identity_and_storage_are_detected_and_fixed() {
        let s = with_claim(set("web", 3), "www");
        let mut p = new_pod(&s, 0);
        if let Some(l) = p.metadata.labels.as_mut() {
            l.remove(POD_NAME_LABEL);
        }
        if let Some(spec) = p.spec.as_mut() {
            spec.volumes = Some(vec![Volume {
                name: "www".into(),
                ..Default::default()
            }]);
        }
        assert!(!identity_matches(&s, &p));
        assert!(!storage_matches(&s, &p));
        update_identity(&s, &mut p);
        update_storage(&s, &mut p);
        assert!(identity_matches(&s, &p));
        assert!(storage_matches(&s, &p));
        assert_eq!(
            p.spec
                .as_ref()
                .and_then(|sp| sp.volumes.as_ref())
                .map(Vec::len),
            Some(1)
        );
        assert!(is_member_of(&s, &p));
        let mut other = p.clone();
        other.metadata.name = Some("webx-0".into());
        assert!(!is_member_of(&s, &other));
    }
}
