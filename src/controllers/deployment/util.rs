//! Pure rollout arithmetic and bookkeeping of the deployment controller
//! (upstream's deployment/util): surge and unavailability fenceposts,
//! revision and replica annotations, the pod-template hash, which ReplicaSet
//! is new, proportional scaling, and the status conditions.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub const HASH_LABEL: &str = "pod-template-hash";
/// Revision history is kept to about 100 entries.
pub const MAX_REV_HISTORY_CHARS: usize = 2000;

// Condition types and reasons, as upstream.
pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const PAUSED_REASON: &str = "DeploymentPaused";
pub const RESUMED_REASON: &str = "DeploymentResumed";
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
pub const MIN_AVAILABLE_REASON: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE_REASON: &str = "MinimumReplicasUnavailable";

/// spec.replicas of a Deployment (defaulted to 1).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// spec.replicas of a ReplicaSet.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn set_rs_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

fn rs_status(
    rs: &ReplicaSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
) -> i32 {
    rs.status.as_ref().and_then(f).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs_status(rs, |s| s.available_replicas)
}

pub fn is_rolling(d: &Deployment) -> bool {
    strategy_type(d) != "Recreate"
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

pub fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// The rolling-update parameters, with the API's 25% defaults.
fn rolling_params(d: &Deployment) -> (IntOrString, IntOrString) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let quarter = || IntOrString::String("25%".into());
    (
        ru.and_then(|r| r.max_surge.clone()).unwrap_or_else(quarter),
        ru.and_then(|r| r.max_unavailable.clone())
            .unwrap_or_else(quarter),
    )
}

/// An int, or a percentage of `total` rounded up or down (upstream's
/// GetScaledValueFromIntOrPercent).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return Err(format!(
                    "invalid value for IntOrString: invalid type: string is not a percentage: {s:?}"
                ));
            };
            let p: i64 = num
                .parse()
                .map_err(|e| format!("invalid value for IntOrString: {e}"))?;
            let prod = p * i64::from(total);
            let v = if round_up {
                prod.div_euclid(100) + i64::from(prod.rem_euclid(100) != 0)
            } else {
                prod.div_euclid(100)
            };
            Ok(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }
    }
}

/// (maxSurge, maxUnavailable) resolved against `desired`. Both zero would
/// stall a rollout, so unavailability becomes 1 (rounding down a percentage
/// can get there even though validation forbids it explicitly).
pub fn resolve_fenceposts(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    desired: i32,
) -> Result<(i32, i32), String> {
    let surge = scaled_value(max_surge, desired, true)?;
    let unavailable = scaled_value(max_unavailable, desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// How many pods above spec.replicas a rolling update may run.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    let (s, u) = rolling_params(d);
    resolve_fenceposts(&s, &u, replicas(d))
        .map(|(s, _)| s)
        .unwrap_or(0)
}

/// How many of spec.replicas may be unavailable during a rolling update.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let want = replicas(d);
    if !is_rolling(d) || want == 0 {
        return 0;
    }
    let (s, u) = rolling_params(d);
    resolve_fenceposts(&s, &u, want)
        .map(|(_, u)| u.min(want))
        .unwrap_or(0)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The revision a ReplicaSet records (0 without one; Err if unparsable).
pub fn revision(rs: &ReplicaSet) -> Result<i64, std::num::ParseIntError> {
    annotation(rs, REVISION).map_or(Ok(0), str::parse)
}

pub fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter()
        .filter_map(|rs| revision(rs).ok())
        .max()
        .unwrap_or(0)
        .max(0)
}

pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, DESIRED_REPLICAS)?.parse().ok()
}

pub fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, MAX_REPLICAS)?.parse().ok()
}

/// Annotations a ReplicaSet does not inherit from its Deployment.
fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// Copy the Deployment's annotations (e.g. kubernetes.io/change-cause) onto
/// the ReplicaSet; true if anything changed.
fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(Default::default);
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || ann.get(k) == Some(v) {
            continue;
        }
        ann.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Record desired and max replicas on a ReplicaSet; true if changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(Default::default);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if ann.get(k) != Some(&v) {
            ann.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(rs, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS) != Some(max.to_string().as_str())
}

/// Bring the new ReplicaSet's annotations up to date: inherited ones, its
/// revision (raised to `new_revision` if lower; the revision it had goes to
/// the revision history, which is how a rollback keeps its past), and, for
/// one about to be created, the replica annotations. True if changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
    limit: usize,
) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let ann = rs.metadata.annotations.get_or_insert_with(Default::default);
    let old = ann.get(REVISION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => v,
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        ann.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = ann.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if history.is_empty() {
                ann.insert(REVISION_HISTORY.into(), old);
            } else {
                let mut parts: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > limit && start < parts.len() {
                    total -= parts[start].len() + 1;
                    start += 1;
                }
                if total <= limit {
                    parts.drain(..start);
                    parts.push(&old);
                    let joined = parts.join(",");
                    ann.insert(REVISION_HISTORY.into(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// Set the Deployment's revision annotation; true if changed.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let ann = d.metadata.annotations.get_or_insert_with(Default::default);
    if ann.get(REVISION).map(String::as_str) == Some(revision) {
        return false;
    }
    ann.insert(REVISION.into(), revision.into());
    true
}

/// Upstream's SafeEncodeString alphabet: no vowels, no look-alikes, so a
/// hash never spells a word.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[b as usize % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// FNV-1a, 32 bits.
fn fnv32a(data: &[u8], mut h: u32) -> u32 {
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

/// The pod-template-hash of a template: FNV-32a over its JSON (stable:
/// typed fields in declaration order, maps sorted), then the collision
/// count if any, rendered as upstream renders its hash.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv32a(&json, 2_166_136_261);
    if let Some(c) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv32a(&bytes, h);
    }
    safe_encode(&h.to_string())
}

/// Drop nulls and empty maps/lists, so "absent" and "empty" compare equal
/// (upstream's semantic equality).
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(m) => {
            m.retain(|_, x| prune(x));
            !m.is_empty()
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                prune(x);
            }
            !a.is_empty()
        }
        _ => true,
    }
}

fn normalized(t: &PodTemplateSpec) -> Value {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(HASH_LABEL);
    }
    let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
    prune(&mut v);
    v
}

/// Whether two templates are equal apart from the pod-template-hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

fn created(rs: &ReplicaSet) -> Option<&Time> {
    rs.metadata.creation_timestamp.as_ref()
}

/// Oldest first, by name on ties (upstream's ReplicaSetsByCreationTimestamp).
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Larger first; on ties newer first (for scaling up).
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// Larger first; on ties older first (for scaling down).
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// Lower revision first; unparsable or equal revisions by creation.
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    match (revision(a), revision(b)) {
        (Ok(x), Ok(y)) if x != y => x.cmp(&y),
        _ => by_creation(a, b),
    }
}

fn template(d: &Deployment) -> Option<&PodTemplateSpec> {
    d.spec.as_ref().map(|s| &s.template)
}

/// The ReplicaSet whose template is the Deployment's (the oldest such, if
/// several).
pub fn find_new_rs(d: &Deployment, rss: &[ReplicaSet]) -> Option<ReplicaSet> {
    let t = template(d)?;
    let mut sorted: Vec<&ReplicaSet> = rss.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted
        .into_iter()
        .find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|rt| equal_ignore_hash(rt, t))
        })
        .cloned()
}

/// Every ReplicaSet but `new`.
pub fn find_old_rss(rss: &[ReplicaSet], new: Option<&ReplicaSet>) -> Vec<ReplicaSet> {
    let new_uid = new.and_then(|n| n.metadata.uid.as_deref());
    rss.iter()
        .filter(|rs| new_uid.is_none() || rs.metadata.uid.as_deref() != new_uid)
        .cloned()
        .collect()
}

pub fn filter_active(rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    rss.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .cloned()
        .collect()
}

/// Sum of spec.replicas.
pub fn replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(rs_replicas).sum()
}

/// Sum of status.replicas.
pub fn actual_replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter()
        .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
        .sum()
}

pub fn ready_replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter()
        .map(|rs| rs_status(rs, |s| s.ready_replicas))
        .sum()
}

pub fn available_replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(rs_available).sum()
}

/// The only active ReplicaSet, or with none active the newest of all.
/// None when several are active (a rollout is in progress).
pub fn find_active_or_latest(new: Option<&ReplicaSet>, olds: &[ReplicaSet]) -> Option<ReplicaSet> {
    if new.is_none() && olds.is_empty() {
        return None;
    }
    let mut olds = olds.to_vec();
    olds.sort_by(|a, b| by_creation(b, a));
    let mut all = olds.clone();
    all.extend(new.cloned());
    let active = filter_active(&all);
    match active.len() {
        0 => new.cloned().or_else(|| olds.first().cloned()),
        1 => active.into_iter().next(),
        _ => None,
    }
}

/// The new ReplicaSet has all replicas, all available, for the current size.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else {
        return false;
    };
    let want = replicas(d);
    desired_replicas_annotation(rs) == Some(want)
        && rs_replicas(rs) == want
        && rs_available(rs) == want
}

/// How many replicas `new` should have now: for a rolling update as many
/// as the surge allows; for Recreate all of them.
pub fn new_rs_new_replicas(
    d: &Deployment,
    all: &[ReplicaSet],
    new: &ReplicaSet,
) -> Result<i32, String> {
    let want = replicas(d);
    if !is_rolling(d) {
        return Ok(want);
    }
    let (surge, _) = rolling_params(d);
    let surge = scaled_value(&surge, want, true)?;
    let current = replica_count(all);
    let max_total = want + surge;
    if current >= max_total {
        return Ok(rs_replicas(new));
    }
    let up = (max_total - current).min(want - rs_replicas(new));
    Ok(rs_replicas(new) + up)
}

/// The share of a proportional scaling (by `to_add`, of which `added` is
/// already handed out) that falls to `rs`.
pub fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = rs_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// How much `rs` should change so that it keeps its share of the new size.
fn rs_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let want = replicas(d);
    if want == 0 {
        return -rs_replicas(rs);
    }
    let total = want + max_surge(d);
    let annotated = max_replicas_annotation(rs)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(total) / f64::from(annotated);
    // Go's math.Round: halves away from zero, as f64::round.
    size.round() as i32 - rs_replicas(rs)
}

pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|p| p != i32::MAX)
}

pub fn progress_deadline(d: &Deployment) -> i64 {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .map_or(0, i64::from)
}

pub fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .filter(|l| *l != i32::MAX)
}

pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// Set a condition; one with the same status and reason is left alone, and
/// a status that does not change keeps its transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(cur) = get_condition(status, &cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            status.conditions = None;
        }
    }
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// All replicas updated, present and available, and the spec observed.
pub fn deployment_complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let want = replicas(d);
    count(st.updated_replicas) == want
        && count(st.replicas) == want
        && count(st.available_replicas) == want
        && st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether `new` shows progress over the Deployment's current status.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let default = DeploymentStatus::default();
    let old = d.status.as_ref().unwrap_or(&default);
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Whether the last progress is older than progressDeadlineSeconds.
pub fn deployment_timed_out(d: &Deployment, new: &DeploymentStatus, now: jiff::Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(cond) = get_condition(new, PROGRESSING) else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => false,
        Some(TIMED_OUT_REASON) => true,
        _ => cond
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + progress_deadline(d) < now.as_second()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus,
        RollingUpdateDeployment,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    fn deploy(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn rs(name: &str, replicas: i32, available: i32, created: i64) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: jiff::Timestamp::from_second(created).ok().map(Time),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn scaled_values_round_as_upstream() {
        assert_eq!(scaled_value(&IntOrString::Int(3), 10, true), Ok(3));
        assert_eq!(scaled_value(&pct("25%"), 10, true), Ok(3));
        assert_eq!(scaled_value(&pct("25%"), 10, false), Ok(2));
        assert_eq!(scaled_value(&pct("25%"), 4, true), Ok(1));
        assert_eq!(scaled_value(&pct("25%"), 1, false), Ok(0));
        assert_eq!(scaled_value(&pct("100%"), 7, false), Ok(7));
        assert_eq!(scaled_value(&pct("0%"), 7, true), Ok(0));
        assert!(scaled_value(&pct("25"), 10, true).is_err());
        assert!(scaled_value(&pct("x%"), 10, true).is_err());
    }

    #[test]
    fn fenceposts() {
        assert_eq!(resolve_fenceposts(&pct("25%"), &pct("25%"), 10), Ok((3, 2)));
        // 25% of 1 rounds to surge 1, unavailable 0.
        assert_eq!(resolve_fenceposts(&pct("25%"), &pct("25%"), 1), Ok((1, 0)));
        // Both zero: unavailable becomes 1.
        assert_eq!(
            resolve_fenceposts(&IntOrString::Int(0), &pct("10%"), 5),
            Ok((0, 1))
        );
        let d = deploy(3, IntOrString::Int(0), IntOrString::Int(5));
        assert_eq!(max_unavailable(&d), 3, "capped at replicas");
        assert_eq!(max_surge(&d), 0);
        let mut r = deploy(3, IntOrString::Int(2), IntOrString::Int(1));
        if let Some(s) = r.spec.as_mut() {
            s.strategy = Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            });
        }
        assert_eq!((max_surge(&r), max_unavailable(&r)), (0, 0));
        // No strategy at all: the API's defaults (RollingUpdate, 25%/25%).
        let mut plain = deploy(8, IntOrString::Int(0), IntOrString::Int(0));
        if let Some(s) = plain.spec.as_mut() {
            s.strategy = None;
        }
        assert_eq!((max_surge(&plain), max_unavailable(&plain)), (2, 2));
    }

    #[test]
    fn new_rs_replicas_respect_surge() {
        let d = deploy(4, IntOrString::Int(1), IntOrString::Int(0));
        let old = rs("old", 4, 4, 1);
        let new = rs("new", 0, 0, 2);
        assert_eq!(
            new_rs_new_replicas(&d, &[old.clone(), new.clone()], &new),
            Ok(1)
        );
        // Already at 4 + 1: no more.
        let new1 = rs("new", 1, 0, 2);
        assert_eq!(new_rs_new_replicas(&d, &[old, new1.clone()], &new1), Ok(1));
        // Old scaled down to 2: may go to 3.
        let old2 = rs("old", 2, 2, 1);
        assert_eq!(new_rs_new_replicas(&d, &[old2, new1.clone()], &new1), Ok(3));
        // Never above spec.replicas.
        let d = deploy(4, IntOrString::Int(10), IntOrString::Int(0));
        assert_eq!(
            new_rs_new_replicas(&d, &[rs("old", 4, 4, 1), new1.clone()], &new1),
            Ok(4)
        );
    }

    #[test]
    fn hash_is_stable_and_safe() {
        let t = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            }),
            spec: None,
        };
        let h1 = compute_hash(&t, None);
        assert_eq!(h1, compute_hash(&t.clone(), None));
        assert!(
            h1.len() >= 8
                && h1
                    .chars()
                    .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h1}"
        );
        assert_ne!(h1, compute_hash(&t, Some(1)));
        assert_ne!(compute_hash(&t, Some(1)), compute_hash(&t, Some(2)));
        let mut t2 = t.clone();
        if let Some(l) = t2.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.insert("v".into(), "2".into());
        }
        assert_ne!(h1, compute_hash(&t2, None));
        // Known FNV-1a vector: "a" -> 0xe40c292c.
        assert_eq!(fnv32a(b"a", 2_166_136_261), 0xe40c_292c);
        assert_eq!(safe_encode("0189"), "45df");
    }

    #[test]
    fn equal_ignoring_hash() {
        let a = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            }),
            spec: None,
        };
        let mut b = a.clone();
        if let Some(l) = b.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.insert(HASH_LABEL.into(), "abc".into());
        }
        assert!(equal_ignore_hash(&a, &b));
        // Empty vs absent maps are equal.
        let mut c = a.clone();
        if let Some(m) = c.metadata.as_mut() {
            m.annotations = Some(BTreeMap::new());
        }
        assert!(equal_ignore_hash(&a, &c));
        if let Some(l) = b.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.insert("other".into(), "x".into());
        }
        assert!(!equal_ignore_hash(&a, &b));
    }

    #[test]
    fn revision_annotations_on_rollback() {
        let d = deploy(3, IntOrString::Int(1), IntOrString::Int(0));
        let mut r = rs("web-1", 0, 0, 1);
        // A brand-new ReplicaSet: revision, desired and max replicas.
        assert!(set_new_rs_annotations(
            &d,
            &mut r,
            1,
            false,
            MAX_REV_HISTORY_CHARS
        ));
        let ann = r.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(REVISION).map(String::as_str), Some("1"));
        assert_eq!(ann.get(DESIRED_REPLICAS).map(String::as_str), Some("3"));
        assert_eq!(ann.get(MAX_REPLICAS).map(String::as_str), Some("4"));
        assert!(!ann.contains_key(REVISION_HISTORY));
        // Unchanged: nothing to do.
        assert!(!set_new_rs_annotations(
            &d,
            &mut r,
            1,
            true,
            MAX_REV_HISTORY_CHARS
        ));
        // Rolled back to at revision 3: 1 goes to the history.
        assert!(set_new_rs_annotations(
            &d,
            &mut r,
            3,
            true,
            MAX_REV_HISTORY_CHARS
        ));
        // And again at 5.
        assert!(set_new_rs_annotations(
            &d,
            &mut r,
            5,
            true,
            MAX_REV_HISTORY_CHARS
        ));
        let ann = r.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(REVISION).map(String::as_str), Some("5"));
        assert_eq!(ann.get(REVISION_HISTORY).map(String::as_str), Some("1,3"));
        // The history is bounded: oldest entries go.
        let mut r2 = r.clone();
        assert!(set_new_rs_annotations(&d, &mut r2, 7, true, 4));
        let ann = r2.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(REVISION_HISTORY).map(String::as_str), Some("3,5"));
        // A lower revision never lowers it.
        assert!(!set_new_rs_annotations(
            &d,
            &mut r,
            2,
            true,
            MAX_REV_HISTORY_CHARS
        ));
    }

    #[test]
    fn change_cause_is_copied_but_not_controller_annotations() {
        let mut d = deploy(1, IntOrString::Int(1), IntOrString::Int(0));
        d.metadata.annotations = Some(BTreeMap::from([
            (
                "kubernetes.io/change-cause".to_string(),
                "set image".to_string(),
            ),
            (REVISION.to_string(), "9".to_string()),
            (LAST_APPLIED.to_string(), "{}".to_string()),
        ]));
        let mut r = rs("x", 0, 0, 1);
        set_new_rs_annotations(&d, &mut r, 2, false, MAX_REV_HISTORY_CHARS);
        let ann = r.metadata.annotations.unwrap_or_default();
        assert_eq!(
            ann.get("kubernetes.io/change-cause").map(String::as_str),
            Some("set image")
        );
        assert_eq!(ann.get(REVISION).map(String::as_str), Some("2"));
        assert!(!ann.contains_key(LAST_APPLIED));
    }

    #[test]
    fn proportional_scaling() {
        // 10 replicas (surge 3) mid-rollout: old 8, new 5 (13 = 10 + 3).
        // Scaled to 20 (surge 5): 12 more to hand out.
        let mut d = deploy(20, pct("25%"), pct("25%"));
        d.status = Some(DeploymentStatus {
            replicas: Some(13),
            ..Default::default()
        });
        let mut old = rs("old", 8, 8, 1);
        let mut new = rs("new", 5, 0, 2);
        set_replicas_annotations(&mut old, 10, 13);
        set_replicas_annotations(&mut new, 10, 13);
        assert_eq!(max_surge(&d), 5);
        // 8 * 25 / 13 = 15.38 -> 15: +7; 5 * 25 / 13 = 9.6 -> 10: +5.
        assert_eq!(proportion(&old, &d, 12, 0), 7);
        assert_eq!(proportion(&new, &d, 12, 7), 5);
        // Never more than what is left.
        assert_eq!(proportion(&new, &d, 12, 10), 2);
        // Scaling to zero takes everything.
        let d0 = deploy(0, pct("25%"), pct("25%"));
        assert_eq!(proportion(&old, &d0, -13, 0), -8);
        // Zero-sized sets get nothing.
        assert_eq!(proportion(&rs("z", 0, 0, 3), &d, 12, 0), 0);
    }

    #[test]
    fn active_or_latest_and_saturation() {
        let a = rs("a", 0, 0, 1);
        let b = rs("b", 0, 0, 2);
        let c = rs("c", 3, 3, 3);
        // None active: the newest old one.
        assert_eq!(
            find_active_or_latest(None, &[a.clone(), b.clone()]).and_then(|r| r.metadata.name),
            Some("b".into())
        );
        // None active but a new one: the new one.
        assert_eq!(
            find_active_or_latest(Some(&a), std::slice::from_ref(&b)).and_then(|r| r.metadata.name),
            Some("a".into())
        );
        assert_eq!(
            find_active_or_latest(Some(&a), std::slice::from_ref(&c)).and_then(|r| r.metadata.name),
            Some("c".into())
        );
        assert!(find_active_or_latest(Some(&c), &[rs("d", 1, 1, 4)]).is_none());

        let d = deploy(3, IntOrString::Int(1), IntOrString::Int(0));
        let mut sat = c.clone();
        assert!(
            !is_saturated(&d, Some(&sat)),
            "needs the desired annotation"
        );
        set_replicas_annotations(&mut sat, 3, 4);
        assert!(is_saturated(&d, Some(&sat)));
        assert!(!is_saturated(&d, Some(&rs("e", 3, 2, 5))));
    }

    #[test]
    fn orderings() {
        let a = rs("a", 2, 0, 1);
        let b = rs("b", 2, 0, 2);
        let c = rs("c", 5, 0, 3);
        let mut v = [a.clone(), b.clone(), c.clone()];
        v.sort_by(by_size_newer);
        let names: Vec<_> = v.iter().filter_map(|r| r.metadata.name.clone()).collect();
        assert_eq!(names, ["c", "b", "a"]);
        v.sort_by(by_size_older);
        let names: Vec<_> = v.iter().filter_map(|r| r.metadata.name.clone()).collect();
        assert_eq!(names, ["c", "a", "b"]);
        let mut r1 = rs("r1", 0, 0, 9);
        let mut r2 = rs("r2", 0, 0, 1);
        r1.metadata.annotations = Some(BTreeMap::from([(REVISION.to_string(), "2".to_string())]));
        r2.metadata.annotations = Some(BTreeMap::from([(REVISION.to_string(), "10".to_string())]));
        assert_eq!(by_revision(&r1, &r2), Ordering::Less);
        assert_eq!(max_revision(&[r1, r2]), 10);
    }

    #[test]
    fn conditions_keep_transition_times() {
        let t1 = Time(jiff::Timestamp::from_second(100).unwrap_or_default());
        let t2 = Time(jiff::Timestamp::from_second(200).unwrap_or_default());
        let mut st = DeploymentStatus::default();
        set_condition(
            &mut st,
            new_condition(PROGRESSING, "True", NEW_RS_REASON, "a", &t1),
        );
        // Same status, new reason: transition time kept, update time new.
        set_condition(
            &mut st,
            new_condition(PROGRESSING, "True", RS_UPDATED_REASON, "b", &t2),
        );
        let c = get_condition(&st, PROGRESSING).cloned().unwrap_or_default();
        assert_eq!(c.reason.as_deref(), Some(RS_UPDATED_REASON));
        assert_eq!(c.last_transition_time, Some(t1.clone()));
        assert_eq!(c.last_update_time, Some(t2.clone()));
        // Same status and reason: untouched.
        set_condition(
            &mut st,
            new_condition(PROGRESSING, "True", RS_UPDATED_REASON, "c", &t2),
        );
        assert_eq!(
            get_condition(&st, PROGRESSING).and_then(|c| c.message.clone()),
            Some("b".into())
        );
        remove_condition(&mut st, PROGRESSING);
        assert!(st.conditions.is_none());
    }

    #[test]
    fn progress_and_deadline() {
        let mut d = deploy(3, IntOrString::Int(1), IntOrString::Int(0));
        if let Some(s) = d.spec.as_mut() {
            s.progress_deadline_seconds = Some(60);
        }
        d.status = Some(DeploymentStatus {
            replicas: Some(3),
            updated_replicas: Some(1),
            ..Default::default()
        });
        let more = DeploymentStatus {
            replicas: Some(3),
            updated_replicas: Some(2),
            ..Default::default()
        };
        assert!(deployment_progressing(&d, &more));
        assert!(!deployment_progressing(
            &d,
            d.status.as_ref().unwrap_or(&more)
        ));
        let t = Time(jiff::Timestamp::from_second(1000).unwrap_or_default());
        let mut st = DeploymentStatus::default();
        set_condition(
            &mut st,
            new_condition(PROGRESSING, "True", RS_UPDATED_REASON, "", &t),
        );
        let at = |s| jiff::Timestamp::from_second(s).unwrap_or_default();
        assert!(!deployment_timed_out(&d, &st, at(1059)));
        assert!(deployment_timed_out(&d, &st, at(1061)));
        let done = DeploymentStatus {
            replicas: Some(3),
            updated_replicas: Some(3),
            available_replicas: Some(3),
            observed_generation: Some(1),
            ..Default::default()
        };
        assert!(deployment_complete(&d, &done));
        let mut behind = done.clone();
        behind.observed_generation = Some(0);
        assert!(!deployment_complete(&d, &behind));
    }
}
