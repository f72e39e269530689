//! ControllerRevision history shared by the StatefulSet and DaemonSet
//! controllers (upstream's pkg/controller/history): a revision stores a
//! strategic-merge patch that puts a pod template back (`$patch: replace`),
//! is named `<owner>-<hash>`, carries a monotonically increasing revision
//! number, and old, unused revisions are pruned down to
//! `revisionHistoryLimit`. `kubectl rollout history|undo` read and apply the
//! same objects, so their shape follows upstream exactly.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use serde_json::{Value, json};

use super::podcontrol::controller_of;

/// The label on pods (and DaemonSet revisions) naming the revision they were
/// made from (apps/v1 `ControllerRevisionHashLabelKey`).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The label the history package puts on every revision it makes.
pub const HISTORY_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Upstream's alphabet for hashes in names: no vowels, no 0/1/3 (no words).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Map every byte of `s` onto the safe alphabet (upstream's SafeEncodeString).
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// 32-bit FNV-1 (Go's `fnv.New32`), which ControllerRevision names use.
pub fn fnv1_32(parts: &[&[u8]]) -> u32 {
    let mut h = FNV_OFFSET;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h = h.wrapping_mul(FNV_PRIME);
        h ^= u32::from(*b);
    }
    h
}

/// 32-bit FNV-1a (Go's `fnv.New32a`), which template hashes use.
pub fn fnv1a_32(parts: &[&[u8]]) -> u32 {
    let mut h = FNV_OFFSET;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// JSON with object keys sorted at every level, as Go's encoder writes maps:
/// the same value always hashes the same, whatever order it was built in.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(val) = m.get(k) {
                    write_canonical(val, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, val) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(val, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The revision data for a template: a strategic-merge patch that replaces
/// the owner's `spec.template` wholesale (what `kubectl rollout undo` applies).
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision restores (upstream's ApplyRevision, which for
/// these patches amounts to taking the template out of the patch).
pub fn template_from_revision(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Upstream's HashControllerRevision: FNV-1 over the data, then the probe
/// (collision count) in decimal, safe-encoded.
pub fn hash_revision_data(data: &Value, probe: Option<i32>) -> String {
    let raw = canonical_json(data);
    let probe = probe.map(|p| p.to_string()).unwrap_or_default();
    safe_encode(&fnv1_32(&[raw.as_bytes(), probe.as_bytes()]).to_string())
}

/// A pod template's hash (upstream's controller.ComputeHash, used for
/// DaemonSet revision names and pod-template-hash): FNV-1a over the template
/// and the collision count, safe-encoded.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let raw = canonical_json(&serde_json::to_value(template).unwrap_or(Value::Null));
    let probe = collision_count.map(|c| (c as u32).to_le_bytes());
    let probe: &[u8] = probe.as_ref().map(|p| &p[..]).unwrap_or(&[]);
    safe_encode(&fnv1a_32(&[raw.as_bytes(), probe]).to_string())
}

/// `<prefix>-<hash>`, the prefix cut to 223 bytes so the name fits in 253.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut cut = prefix.len().min(223);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash}", &prefix[..cut])
}

/// A new revision of `owner` (upstream's NewControllerRevision): the
/// template's labels plus the hash label, a controller reference, the data,
/// named from the hash of the data and the collision count.
pub fn new_revision(
    owner_ref: OwnerReference,
    namespace: &str,
    template_labels: Option<&BTreeMap<String, String>>,
    data: Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let hash = hash_revision_data(&data, collision_count);
    let mut labels = template_labels.cloned().unwrap_or_default();
    labels.insert(HISTORY_HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&owner_ref.name, &hash)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Whether two revisions hold the same data (compared as JSON values, since
/// the server may re-order keys).
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// The revisions in `revisions` equal to `needle`, in the given order.
pub fn find_equal_revisions<'a>(
    revisions: &'a [ControllerRevision],
    needle: &ControllerRevision,
) -> Vec<&'a ControllerRevision> {
    revisions
        .iter()
        .filter(|r| equal_revision(r, needle))
        .collect()
}

/// Oldest first: by revision number, then creation time, then name.
pub fn sort_revisions(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
                ta.cmp(&tb)
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The number for a new revision: one more than the largest (1 if none).
pub fn next_revision(revisions: &[ControllerRevision]) -> i64 {
    revisions
        .iter()
        .map(|r| r.revision)
        .max()
        .map_or(1, |m| m + 1)
}

/// Which revisions to delete to keep at most `limit` that are not live
/// (live: in use by the owner's status or by a pod). `sorted` is oldest
/// first; the oldest go first.
pub fn revisions_to_prune<'a>(
    sorted: &'a [ControllerRevision],
    live: &HashSet<String>,
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let history: Vec<&ControllerRevision> = sorted
        .iter()
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or("")))
        .collect();
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    if history.len() <= limit {
        return Vec::new();
    }
    history[..history.len() - limit].to_vec()
}

/// A selector from an owner's label selector; `None` when it cannot select
/// anything sensible (upstream treats a bad selector as an error).
pub fn selector_of(sel: Option<&LabelSelector>) -> Option<Selector> {
    Selector::try_from(sel?.clone()).ok()
}

/// Whether a label selector matches a set of labels.
pub fn selector_matches(sel: &Selector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    sel.matches(labels.unwrap_or(&empty))
}

/// What the StatefulSet and DaemonSet controllers' syncs fail with.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// ControllerRevision API calls for one namespace.
pub struct History {
    api: Api<ControllerRevision>,
}

impl History {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        History {
            api: Api::namespaced(client, namespace),
        }
    }

    /// The revisions controlled by `owner` (matched by uid), adopting orphans
    /// that match its selector when `adopt` (the owner is not being deleted).
    pub async fn list_controlled(
        &self,
        owner: &OwnerReference,
        selector: &Selector,
        adopt: bool,
    ) -> Result<Vec<ControllerRevision>, kube::Error> {
        let lp = ListParams::default().labels(&selector.to_string());
        let mut out = Vec::new();
        for rev in self.api.list(&lp).await?.items {
            match controller_of(&rev.metadata) {
                Some(c) if c.uid == owner.uid => out.push(rev),
                Some(_) => {}
                None if adopt && rev.metadata.deletion_timestamp.is_none() => {
                    if let Some(adopted) = self.adopt(rev, owner).await? {
                        out.push(adopted);
                    }
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// Add `owner` as controller of an orphan; None if it went away.
    async fn adopt(
        &self,
        rev: ControllerRevision,
        owner: &OwnerReference,
    ) -> Result<Option<ControllerRevision>, kube::Error> {
        let name = rev.metadata.name.clone().unwrap_or_default();
        let mut refs = rev.metadata.owner_references.clone().unwrap_or_default();
        refs.push(owner.clone());
        let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rev.metadata.resource_version}});
        match self
            .api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create `revision`, renaming on a hash collision with a different
    /// revision (bumping `collision_count`); an identical existing one is
    /// returned as is (upstream's CreateControllerRevision).
    pub async fn create(
        &self,
        revision: &ControllerRevision,
        template_labels: Option<&BTreeMap<String, String>>,
        collision_count: &mut i32,
    ) -> Result<ControllerRevision, SyncError> {
        // Bounded: each round either returns or bumps the count.
        for _ in 0..64 {
            let data = revision
                .data
                .as_ref()
                .map(|d| d.0.clone())
                .unwrap_or(Value::Null);
            let owner = revision
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.first())
                .cloned()
                .unwrap_or_default();
            let ns = revision.metadata.namespace.clone().unwrap_or_default();
            let mut candidate = new_revision(
                owner,
                &ns,
                template_labels,
                data,
                revision.revision,
                Some(*collision_count),
            );
            candidate.metadata.annotations = revision.metadata.annotations.clone();
            match self.api.create(&PostParams::default(), &candidate).await {
                Ok(created) => return Ok(created),
                Err(kube::Error::Api(s)) if s.is_already_exists() => {
                    let name = candidate.metadata.name.clone().unwrap_or_default();
                    let existing = self.api.get(&name).await?;
                    if equal_revision(&existing, &candidate) {
                        return Ok(existing);
                    }
                    *collision_count += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(SyncError::Invalid(
            "too many ControllerRevision name collisions".into(),
        ))
    }

    /// Give an existing revision a new number (a rollback to it).
    pub async fn set_revision_number(
        &self,
        rev: &ControllerRevision,
        number: i64,
    ) -> Result<ControllerRevision, kube::Error> {
        if rev.revision == number {
            return Ok(rev.clone());
        }
        let name = rev.metadata.name.clone().unwrap_or_default();
        self.api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"revision": number})),
            )
            .await
    }

    /// Set a label on a revision (DaemonSets label old revisions with their hash).
    pub async fn label(
        &self,
        rev: &ControllerRevision,
        key: &str,
        value: &str,
    ) -> Result<ControllerRevision, kube::Error> {
        let name = rev.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"labels": {key: value}}});
        self.api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
    }

    pub async fn delete(&self, rev: &ControllerRevision) -> Result<(), kube::Error> {
        let name = rev.metadata.name.clone().unwrap_or_default();
        match self.api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn rev(name: &str, n: i64) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: None,
            revision: n,
        }
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        // Published FNV test vectors.
        assert_eq!(fnv1_32(&[b""]), 0x811c9dc5);
        assert_eq!(fnv1_32(&[b"a"]), 0x050c5d7e);
        assert_eq!(fnv1a_32(&[b"a"]), 0xe40c292c);
        assert_eq!(fnv1a_32(&[b"foobar"]), 0xbf9cf968);
        // Split input hashes like the whole.
        assert_eq!(fnv1_32(&[b"foo", b"bar"]), fnv1_32(&[b"foobar"]));
    }

    #[test]
    fn safe_encoding_uses_upstream_alphabet() {
        // '0' is byte 48: 48 % 27 = 21 -> '4'; '9' is 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("09"), "4f");
        assert!(
            safe_encode("1234567890")
                .chars()
                .all(|c| SAFE_ALPHABET.contains(&(c as u8)))
        );
    }

    #[test]
    fn canonical_json_sorts_keys_everywhere() {
        let a = json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": "s"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"s","z":[{"x":2,"y":1}]},"b":1}"#
        );
    }

    #[test]
    fn patch_replaces_the_template_and_round_trips() {
        let t = template("nginx:1");
        let p = template_patch(&t);
        assert_eq!(p["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            p["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1"
        );
        let r = new_revision(owner(), "ns", None, p, 1, None);
        assert_eq!(template_from_revision(&r), Some(t));
    }

    #[test]
    fn revision_names_and_hashes_are_stable_and_collision_aware() {
        let p1 = template_patch(&template("nginx:1"));
        let p2 = template_patch(&template("nginx:2"));
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let a = new_revision(owner(), "ns", Some(&labels), p1.clone(), 1, None);
        let b = new_revision(owner(), "ns", Some(&labels), p1.clone(), 7, None);
        let c = new_revision(owner(), "ns", Some(&labels), p2, 2, None);
        let d = new_revision(owner(), "ns", Some(&labels), p1, 1, Some(1));
        let name = a.metadata.name.clone().unwrap_or_default();
        assert!(name.starts_with("web-"), "{name}");
        let hash = &name["web-".len()..];
        assert!(
            !hash.is_empty() && hash.chars().all(|ch| SAFE_ALPHABET.contains(&(ch as u8))),
            "{name}"
        );
        assert_eq!(
            a.metadata.name, b.metadata.name,
            "same data, same name whatever the number"
        );
        assert_ne!(
            a.metadata.name, c.metadata.name,
            "different template, different name"
        );
        assert_ne!(
            a.metadata.name, d.metadata.name,
            "collision count changes the name"
        );
        let l = a.metadata.labels.clone().unwrap_or_default();
        assert_eq!(l.get("app").map(String::as_str), Some("web"));
        assert_eq!(l.get(HISTORY_HASH_LABEL).map(String::as_str), Some(hash));
        assert_eq!(
            a.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].uid.as_str()),
            Some("u1")
        );
        assert!(equal_revision(&a, &b));
        assert!(!equal_revision(&a, &c));
        assert_eq!(
            find_equal_revisions(&[c.clone(), a.clone(), b.clone()], &a).len(),
            2
        );
    }

    #[test]
    fn template_hash_depends_on_template_and_collisions() {
        let h1 = template_hash(&template("a"), None);
        assert_eq!(h1, template_hash(&template("a"), None));
        assert_ne!(h1, template_hash(&template("b"), None));
        assert_ne!(h1, template_hash(&template("a"), Some(1)));
        assert_ne!(
            template_hash(&template("a"), Some(1)),
            template_hash(&template("a"), Some(2))
        );
    }

    #[test]
    fn long_prefixes_are_cut() {
        let long = "x".repeat(300);
        let n = revision_name(&long, "abc");
        assert_eq!(n.len(), 223 + 4);
        assert!(n.ends_with("-abc"));
        assert_eq!(revision_name("web", "h"), "web-h");
    }

    #[test]
    fn sorting_numbering_and_pruning() {
        let mut revs = vec![
            rev("c", 3),
            rev("a", 1),
            rev("b", 2),
            rev("d", 4),
            rev("e", 5),
        ];
        sort_revisions(&mut revs);
        let names: Vec<_> = revs
            .iter()
            .map(|r| r.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        assert_eq!(next_revision(&revs), 6);
        assert_eq!(next_revision(&[]), 1);
        // e (update) and b (a pod uses it) are live; keep 1 of a, c, d: the newest.
        let live: HashSet<String> = ["e".to_string(), "b".to_string()].into();
        let pruned: Vec<_> = revisions_to_prune(&revs, &live, 1)
            .iter()
            .map(|r| r.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(pruned, ["a", "c"]);
        assert!(revisions_to_prune(&revs, &live, 3).is_empty());
        assert_eq!(revisions_to_prune(&revs, &live, 0).len(), 3);
    }

    #[test]
    fn selectors_match_labels() {
        let sel = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            match_expressions: None,
        };
        let s = selector_of(Some(&sel)).expect("selector");
        assert!(selector_matches(
            &s,
            Some(&BTreeMap::from([("app".to_string(), "web".to_string())]))
        ));
        assert!(!selector_matches(
            &s,
            Some(&BTreeMap::from([("app".to_string(), "db".to_string())]))
        ));
        assert!(!selector_matches(&s, None));
        assert_eq!(s.to_string(), "app=web");
    }
}
