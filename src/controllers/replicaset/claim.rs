//! Adoption and release by selector and ownerReferences (upstream's
//! ControllerRefManager): a controller owns the dependents whose controller
//! reference names it and whose labels its selector matches; it adopts
//! matching orphans and releases dependents whose labels stopped matching.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// What to do with one candidate dependent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours already.
    Owned,
    /// An orphan that matches: take it.
    Adopt,
    /// Ours but no longer matching: let it go.
    Release,
    /// Someone else's, or not for us.
    Ignore,
}

/// The ControllerRefManager's decision for one dependent.
///
/// `owner_uid` / `owner_deleting` describe the controller; `controller` is
/// the dependent's controller reference, `dependent_deleting` whether it has
/// a deletionTimestamp, `matches` whether the selector matches its labels.
pub fn decide(
    owner_uid: &str,
    owner_deleting: bool,
    controller: Option<&OwnerReference>,
    dependent_deleting: bool,
    matches: bool,
) -> Claim {
    match controller {
        Some(c) if c.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        // A controller being deleted keeps what it has (no release storm).
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || dependent_deleting => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// The owner references of a dependent after adopting it: ours appended.
pub fn with_owner(refs: &[OwnerReference], ours: OwnerReference) -> Vec<OwnerReference> {
    let mut out: Vec<OwnerReference> = refs.iter().filter(|r| r.uid != ours.uid).cloned().collect();
    out.push(ours);
    out
}

/// The owner references of a dependent after releasing it: ours removed.
pub fn without_owner(refs: &[OwnerReference], owner_uid: &str) -> Vec<OwnerReference> {
    refs.iter()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect()
}

/// Write a dependent's owner references, pinned to the resourceVersion the
/// decision was made on: a concurrent change makes this fail (409) rather
/// than clobber it, and the controller syncs again.
pub async fn set_owner_references<K>(
    api: &Api<K>,
    name: &str,
    resource_version: Option<&str>,
    refs: Vec<OwnerReference>,
) -> Result<K, kube::Error>
where
    K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let refs = if refs.is_empty() {
        serde_json::Value::Null
    } else {
        json!(refs)
    };
    let mut patch = json!({"metadata": {"ownerReferences": refs}});
    if let Some(rv) = resource_version {
        patch["metadata"]["resourceVersion"] = json!(rv);
    }
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oref(uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn decisions() {
        let mine = oref("me", true);
        let theirs = oref("them", true);
        assert_eq!(decide("me", false, Some(&mine), false, true), Claim::Owned);
        assert_eq!(
            decide("me", false, Some(&mine), false, false),
            Claim::Release
        );
        assert_eq!(decide("me", true, Some(&mine), false, false), Claim::Ignore);
        assert_eq!(
            decide("me", false, Some(&theirs), false, true),
            Claim::Ignore
        );
        assert_eq!(decide("me", false, None, false, true), Claim::Adopt);
        assert_eq!(decide("me", false, None, false, false), Claim::Ignore);
        assert_eq!(decide("me", false, None, true, true), Claim::Ignore);
        assert_eq!(decide("me", true, None, false, true), Claim::Ignore);
    }

    #[test]
    fn owner_lists() {
        let other = oref("other", false);
        let mine = oref("me", true);
        let adopted = with_owner(std::slice::from_ref(&other), mine.clone());
        assert_eq!(adopted, vec![other.clone(), mine.clone()]);
        // Adopting twice does not duplicate.
        assert_eq!(with_owner(&adopted, mine.clone()).len(), 2);
        assert_eq!(without_owner(&adopted, "me"), vec![other]);
    }
}
