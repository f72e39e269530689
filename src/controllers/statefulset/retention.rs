//! persistentVolumeClaimRetentionPolicy: who owns a pod's claims so that the
//! garbage collector deletes them at the right time. whenDeleted=Delete puts
//! the StatefulSet among the claim's owners; whenScaled=Delete makes the pod
//! the owner once its ordinal is scaled away. Retain/Retain owns nothing.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::identity::{in_ordinal_range, set_name};

/// (whenDeleted is Delete, whenScaled is Delete); anything else is Retain.
pub fn policy(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let del = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        del(p.and_then(|p| p.when_deleted.as_ref())),
        del(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// Whether either rule deletes claims (otherwise claims are left alone).
pub fn any_delete(set: &StatefulSet) -> bool {
    let (d, s) = policy(set);
    d || s
}

/// An owner as a claim would refer to it.
struct Owner<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: &'a str,
    uid: &'a str,
}

fn set_owner(set: &StatefulSet) -> Owner<'_> {
    Owner {
        api_version: "apps/v1",
        kind: "StatefulSet",
        name: set_name(set),
        uid: set.metadata.uid.as_deref().unwrap_or(""),
    }
}

fn pod_owner(pod: &Pod) -> Owner<'_> {
    Owner {
        api_version: "v1",
        kind: "Pod",
        name: pod.metadata.name.as_deref().unwrap_or(""),
        uid: pod.metadata.uid.as_deref().unwrap_or(""),
    }
}

fn refs(claim: &PersistentVolumeClaim) -> &[OwnerReference] {
    claim.metadata.owner_references.as_deref().unwrap_or(&[])
}

/// A reference to the same kind and name (whatever the uid).
fn matches_ref(r: &OwnerReference, o: &Owner) -> bool {
    r.api_version == o.api_version && r.kind == o.kind && r.name == o.name
}

fn has_owner_ref(claim: &PersistentVolumeClaim, o: &Owner) -> bool {
    !o.uid.is_empty() && refs(claim).iter().any(|r| r.uid == o.uid)
}

/// A reference to the owner's name and kind but another uid: left by an
/// earlier object of the same name.
fn has_stale_owner_ref(claim: &PersistentVolumeClaim, o: &Owner) -> bool {
    refs(claim)
        .iter()
        .find(|r| matches_ref(r, o))
        .is_some_and(|r| r.uid != o.uid)
}

/// Some other controller owns the claim (only matters when a rule deletes).
fn has_unexpected_controller(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    if !any_delete(set) {
        return false;
    }
    let (so, po) = (set_owner(set), pod_owner(pod));
    for r in refs(claim) {
        if matches_ref(r, &so) {
            if r.uid != so.uid {
                return true;
            }
            continue;
        }
        if matches_ref(r, &po) {
            if r.uid != po.uid {
                return true;
            }
            continue;
        }
        if r.controller == Some(true) {
            return true;
        }
    }
    false
}

/// The set or pod is an owner but not the controller.
fn has_non_controller_owner(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    let (so, po) = (set_owner(set), pod_owner(pod));
    refs(claim).iter().any(|r| {
        ((!so.uid.is_empty() && r.uid == so.uid) || (!po.uid.is_empty() && r.uid == po.uid))
            && r.controller != Some(true)
    })
}

/// Whether the claim's owners already agree with the policy (claims in an
/// unknown state, with stale references, are left alone: "up to date").
pub fn is_claim_owner_up_to_date(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> bool {
    let (so, po) = (set_owner(set), pod_owner(pod));
    if has_stale_owner_ref(claim, &so) || has_stale_owner_ref(claim, &po) {
        return true;
    }
    if has_unexpected_controller(claim, set, pod) {
        return !(has_owner_ref(claim, &so) || has_owner_ref(claim, &po));
    }
    if has_non_controller_owner(claim, set, pod) {
        return false;
    }
    let (has_set, has_pod) = (has_owner_ref(claim, &so), has_owner_ref(claim, &po));
    let scaled_down = !in_ordinal_range(pod, set);
    match policy(set) {
        (false, false) => !has_set && !has_pod,
        (true, false) => has_set && !has_pod,
        (false, true) => !has_set && scaled_down == has_pod,
        (true, true) => scaled_down != has_set && scaled_down == has_pod,
    }
}

fn controller_ref_to(o: &Owner) -> OwnerReference {
    OwnerReference {
        api_version: o.api_version.into(),
        kind: o.kind.into(),
        name: o.name.into(),
        uid: o.uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Rewrite the claim's references to the set and pod to follow the policy.
pub fn update_claim_owner_refs(claim: &mut PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) {
    let unexpected = has_unexpected_controller(claim, set, pod);
    let (so, po) = (set_owner(set), pod_owner(pod));
    let mut out: Vec<OwnerReference> = refs(claim)
        .iter()
        .filter(|r| !matches_ref(r, &so) && !matches_ref(r, &po))
        .cloned()
        .collect();
    if !unexpected {
        let scaled_down = !in_ordinal_range(pod, set);
        let mut add = |o: &Owner| {
            if !o.uid.is_empty() && !out.iter().any(|r| r.uid == o.uid) {
                out.push(controller_ref_to(o));
            }
        };
        match policy(set) {
            (false, false) => {}
            (true, false) => add(&so),
            (false, true) => {
                if scaled_down {
                    add(&po)
                }
            }
            (true, true) => {
                if scaled_down {
                    add(&po)
                } else {
                    add(&so)
                }
            }
        }
    }
    claim.metadata.owner_references = (!out.is_empty()).then_some(out);
}

/// A claim left owned by an earlier pod of the same name that is going
/// away: the new pod must wait for it (upstream's PodClaimIsStale).
pub fn claim_is_stale(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    if !policy(set).1 {
        return false;
    }
    has_stale_owner_ref(claim, &pod_owner(pod))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy;

    use super::super::identity::testing::{set, with_claim};
    use super::super::identity::{claims_for, new_pod};
    use super::*;

    fn with_policy(mut s: StatefulSet, deleted: &str, scaled: &str) -> StatefulSet {
        if let Some(spec) = s.spec.as_mut() {
            spec.persistent_volume_claim_retention_policy =
                Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(deleted.into()),
                    when_scaled: Some(scaled.into()),
                });
        }
        s
    }

    fn pod(s: &StatefulSet, ord: i32) -> Pod {
        let mut p = new_pod(s, ord);
        p.metadata.uid = Some(format!("pod-uid-{ord}"));
        p
    }

    fn owners(c: &PersistentVolumeClaim) -> Vec<String> {
        refs(c)
            .iter()
            .map(|r| format!("{}/{}", r.kind, r.name))
            .collect()
    }

    #[test]
    fn owners_follow_each_policy() {
        for (deleted, scaled, in_range, out_of_range) in [
            ("Retain", "Retain", vec![], vec![]),
            (
                "Delete",
                "Retain",
                vec!["StatefulSet/web"],
                vec!["StatefulSet/web"],
            ),
            ("Retain", "Delete", vec![], vec!["Pod/web-5"]),
            (
                "Delete",
                "Delete",
                vec!["StatefulSet/web"],
                vec!["Pod/web-5"],
            ),
        ] {
            let s = with_policy(with_claim(set("web", 3), "www"), deleted, scaled);
            for (ord, want) in [(1, &in_range), (5, &out_of_range)] {
                let p = pod(&s, ord);
                let mut claim = claims_for(&s, &p).remove(0).1;
                let fresh_ok = want.is_empty();
                assert_eq!(
                    is_claim_owner_up_to_date(&claim, &s, &p),
                    fresh_ok,
                    "{deleted}/{scaled} ord {ord}"
                );
                update_claim_owner_refs(&mut claim, &s, &p);
                let want: Vec<String> = want
                    .iter()
                    .map(|w| w.replace("web-5", &format!("web-{ord}")))
                    .collect();
                assert_eq!(owners(&claim), want, "{deleted}/{scaled} ord {ord}");
                assert!(
                    is_claim_owner_up_to_date(&claim, &s, &p),
                    "{deleted}/{scaled} ord {ord} after update"
                );
            }
        }
    }

    #[test]
    fn switching_back_to_retain_removes_our_refs_only() {
        let s = with_policy(with_claim(set("web", 3), "www"), "Delete", "Delete");
        let p = pod(&s, 0);
        let mut claim = claims_for(&s, &p).remove(0).1;
        claim.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "keep".into(),
            uid: "cm".into(),
            ..Default::default()
        }]);
        update_claim_owner_refs(&mut claim, &s, &p);
        assert_eq!(owners(&claim), ["ConfigMap/keep", "StatefulSet/web"]);
        let retain = with_policy(s, "Retain", "Retain");
        assert!(!is_claim_owner_up_to_date(&claim, &retain, &p));
        update_claim_owner_refs(&mut claim, &retain, &p);
        assert_eq!(owners(&claim), ["ConfigMap/keep"]);
    }

    #[test]
    fn stale_pod_references_block_new_pods() {
        let s = with_policy(with_claim(set("web", 1), "www"), "Retain", "Delete");
        let old = pod(&s, 2);
        let mut claim = claims_for(&s, &old).remove(0).1;
        update_claim_owner_refs(&mut claim, &s, &old);
        let mut fresh = new_pod(&s, 2);
        fresh.metadata.uid = None;
        assert!(claim_is_stale(&claim, &s, &fresh));
        assert!(!claim_is_stale(&claim, &s, &old));
        assert!(!claim_is_stale(
            &claim,
            &with_policy(s, "Retain", "Retain"),
            &fresh
        ));
    }
}
