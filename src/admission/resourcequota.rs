//! The ResourceQuota admission plugin: a create (or a charged update) that
//! would take any quota of its namespace over `status.hard` is refused with
//! upstream's 403 messages; an admitted one is charged to `status.used`
//! right away with a compare-and-swap on the quota's resourceVersion, so
//! two concurrent creates cannot both take the last unit. The controller
//! (controllers/resourcequota.rs) recomputes usage from what exists.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use serde_json::Value;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::forbidden;
use super::quota::{self, Evaluator, ResourceList};
use crate::api::status::ApiError;
use crate::registry::ResourceDef;
use crate::registry::generic::{ListQuery, Registry, WriteOptions, name_of};

/// Held from the charge until the object is stored: charges and the
/// controller's recounts in one namespace take turns (as upstream's
/// per-namespace admission queue does), so a recount never misses an object
/// that is charged but not yet written.
pub struct QuotaGuard {
    _lock: OwnedMutexGuard<()>,
}

static LOCKS: LazyLock<parking_lot::Mutex<HashMap<String, Arc<Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// The namespace's quota lock (shared with the quota controller).
pub fn namespace_lock(ns: &str) -> Arc<Mutex<()>> {
    LOCKS.lock().entry(ns.to_string()).or_default().clone()
}

/// How often a charge retries after losing a race on a quota's
/// resourceVersion to another writer (a user editing the quota).
const MAX_CONFLICT_RETRIES: usize = 8;

async fn list_quotas(reg: &Registry, qdef: &ResourceDef, ns: &str) -> Result<Vec<Value>, ApiError> {
    Ok(reg.list(qdef, Some(ns), &ListQuery::default()).await?.items)
}

/// Admit `obj` (a create when `old` is None, else an update of `old`).
/// Returns a guard to hold until the object is stored when usage was
/// charged; dry runs are checked but never charged.
pub async fn admit(
    reg: &Registry,
    def: &ResourceDef,
    ns: Option<&str>,
    obj: &Value,
    old: Option<&Value>,
    subresource: Option<&str>,
    opts: &WriteOptions,
) -> Result<Option<QuotaGuard>, ApiError> {
    let ns = match ns {
        Some(ns) if def.namespaced && !ns.is_empty() && subresource.is_none() => ns,
        _ => return Ok(None),
    };
    let ev = Evaluator::new(&def.group, &def.plural);
    if old.is_some() && !ev.charges_updates() {
        return Ok(None);
    }
    let Some(qdef) = reg.catalogue.get("", "v1", "resourcequotas") else {
        return Ok(None);
    };
    if !list_quotas(reg, &qdef, ns)
        .await?
        .iter()
        .any(|q| ev.matches(q, obj))
    {
        return Ok(None);
    }
    let now = jiff::Timestamp::now();
    let mut delta = ev.usage(obj, now);
    if let Some(old) = old {
        delta = quota::subtract_non_negative(&delta, &ev.usage(old, now));
    }
    if quota::is_zero(&delta) {
        return Ok(None);
    }
    let guard = namespace_lock(ns).lock_owned().await;
    let name = name_of(obj);
    let mut charged: BTreeSet<String> = BTreeSet::new();
    for _ in 0..MAX_CONFLICT_RETRIES {
        let current: Vec<Value> = list_quotas(reg, &qdef, ns)
            .await?
            .into_iter()
            .filter(|q| ev.matches(q, obj) && !charged.contains(name_of(q)))
            .collect();
        let mut updates = Vec::new();
        for q in &current {
            let qname = name_of(q);
            let hard = quota::parse_list(q.pointer("/status/hard"));
            let used = quota::parse_list(q.pointer("/status/used"));
            let restricted = ev.matching_resources(hard.keys());
            ev.constraints(&restricted, obj)
                .map_err(|m| forbidden(def, name, &format!("failed quota: {qname}: {m}")))?;
            let unknown: Vec<&String> = restricted
                .iter()
                .filter(|r| !used.contains_key(*r))
                .collect();
            if !unknown.is_empty() {
                let names: Vec<&str> = restricted.iter().map(String::as_str).collect();
                return Err(forbidden(
                    def,
                    name,
                    &format!(
                        "status unknown for quota: {qname}, resources: {}",
                        names.join(",")
                    ),
                ));
            }
            let requested = quota::mask(&delta, hard.keys());
            let new_used = quota::add(&used, &requested);
            let over = quota::exceeded(&quota::mask(&new_used, requested.keys()), &hard);
            if !over.is_empty() {
                let m = |l: &ResourceList| quota::pretty(&quota::mask(l, over.iter()));
                return Err(forbidden(
                    def,
                    name,
                    &format!(
                        "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                        m(&requested),
                        m(&used),
                        m(&hard)
                    ),
                ));
            }
            if new_used != used {
                updates.push((q, new_used));
            }
        }
        if opts.dry_run {
            return Ok(None);
        }
        let mut conflict = false;
        for (q, new_used) in updates {
            let mut q = q.clone();
            q["status"]["used"] = quota::to_json(&new_used);
            // The body's resourceVersion makes this a compare-and-swap.
            // Boxed: update runs admission, which lands here again (and
            // returns at once for a status write).
            let plain = WriteOptions::default();
            let write = Box::pin(reg.update(
                &qdef,
                Some(ns),
                name_of(&q),
                q.clone(),
                Some("status"),
                &plain,
            ));
            match write.await {
                Ok(_) => {
                    charged.insert(name_of(&q).to_string());
                }
                Err(e) if e.code == 409 => conflict = true,
                Err(e) => return Err(e),
            }
        }
        if !conflict {
            return Ok(Some(QuotaGuard { _lock: guard }));
        }
    }
    Err(forbidden(
        def,
        name,
        "status unknown for quota: too many concurrent updates to the namespace's quotas",
    ))
}
