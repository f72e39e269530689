//! ResourceQuota controller: keeps `status.hard` equal to `spec.hard` and
//! `status.used` equal to what the namespace's objects cost (the quota
//! evaluators in admission/quota.rs), as upstream's resource-quota
//! controller does. A quota is recounted when it changes, when an object
//! of a kind it limits changes in its namespace (replenishment), and on a
//! periodic resync. Admission charges creates as they happen; this
//! controller is what gives quota back when objects go away.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, DynamicObject, ListParams, PartialObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::Context;
use super::gc::api_resource;
use super::job::queue::WorkQueue;
use super::job::{key_of, split_key};
use crate::admission::quota::{self, Evaluator, ResourceList};
use crate::admission::resourcequota::namespace_lock;

/// Every quota is recounted this often even without events (upstream's
/// --resource-quota-sync-period is 5 minutes; objects of kinds without a
/// watch here are caught by it).
const RESYNC: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("quota {0}: {1}")]
    Encode(String, serde_json::Error),
}

struct Controller {
    ctx: Arc<Context>,
    queue: WorkQueue<String>,
    /// Quota names per namespace, from the quota watch.
    quotas: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Kinds (group, plural) already watched for replenishment.
    watched: Mutex<BTreeSet<(String, String)>>,
}

/// Run until the quota watch ends.
pub async fn run(ctx: Arc<Context>) {
    let me = Arc::new(Controller {
        ctx: ctx.clone(),
        queue: WorkQueue::default(),
        quotas: Mutex::default(),
        watched: Mutex::default(),
    });
    let worker = {
        let me = me.clone();
        tokio::spawn(async move {
            loop {
                let key = me.queue.next().await;
                match me.sync(&key).await {
                    Ok(()) => me.queue.forget(&key),
                    Err(e) => {
                        debug!(quota = %key, "resourcequota: {e}");
                        me.queue.add_rate_limited(key.clone());
                    }
                }
                me.queue.done(&key);
            }
        })
    };
    let resync = {
        let me = me.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RESYNC).await;
                let all: Vec<String> = me
                    .quotas
                    .lock()
                    .iter()
                    .flat_map(|(ns, names)| names.iter().map(|n| key_of(ns, n)))
                    .collect();
                for k in all {
                    me.queue.add(k);
                }
            }
        })
    };
    let api: Api<ResourceQuota> = Api::all(ctx.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Apply(q)) | Ok(watcher::Event::InitApply(q)) => {
                let ns = q.metadata.namespace.clone().unwrap_or_default();
                let name = q.metadata.name.clone().unwrap_or_default();
                me.clone().watch_kinds_of(&q);
                me.quotas
                    .lock()
                    .entry(ns.clone())
                    .or_default()
                    .insert(name.clone());
                me.queue.add(key_of(&ns, &name));
            }
            Ok(watcher::Event::Delete(q)) => {
                let ns = q.metadata.namespace.clone().unwrap_or_default();
                if let Some(set) = me.quotas.lock().get_mut(&ns) {
                    set.remove(q.metadata.name.as_deref().unwrap_or(""));
                }
            }
            Ok(_) => {}
            Err(e) => debug!("resourcequota watch: {e}"),
        }
    }
    warn!("resourcequota watch ended");
    worker.abort();
    resync.abort();
}

impl Controller {
    /// Start a metadata watch on every kind `q` limits that has none yet.
    fn watch_kinds_of(self: Arc<Self>, q: &ResourceQuota) {
        let names = q
            .spec
            .as_ref()
            .and_then(|s| s.hard.as_ref())
            .map(|h| h.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        for (group, plural) in names.iter().filter_map(|n| quota::resource_of(n)) {
            if !self.watched.lock().insert((group.clone(), plural.clone())) {
                continue;
            }
            let Some(def) = self
                .ctx
                .catalogue
                .all()
                .into_iter()
                .find(|d| d.group == group && d.plural == plural && d.namespaced)
            else {
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let api: Api<PartialObjectMeta<DynamicObject>> =
                    Api::all_with(me.ctx.client.clone(), &api_resource(&def));
                let mut events = watcher(api, watcher::Config::default())
                    .default_backoff()
                    .boxed();
                while let Some(ev) = events.next().await {
                    let meta = match ev {
                        Ok(watcher::Event::Apply(m)) | Ok(watcher::Event::Delete(m)) => m.metadata,
                        _ => continue,
                    };
                    let ns = meta.namespace.unwrap_or_default();
                    let keys: Vec<String> = me
                        .quotas
                        .lock()
                        .get(&ns)
                        .map(|s| s.iter().map(|n| key_of(&ns, n)).collect())
                        .unwrap_or_default();
                    for k in keys {
                        me.queue.add(k);
                    }
                }
            });
        }
    }

    /// Recount one quota and write its status if it changed.
    async fn sync(&self, key: &str) -> Result<(), QuotaError> {
        let (ns, name) = split_key(key);
        let client = &self.ctx.client;
        let api: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
        // Admission's charges and this recount take turns per namespace.
        let lock = namespace_lock(ns);
        let _turn = lock.lock().await;
        let Some(q) = api.get_opt(name).await? else {
            return Ok(());
        };
        let qv = serde_json::to_value(&q).map_err(|e| QuotaError::Encode(key.into(), e))?;
        let hard = quota::parse_list(qv.pointer("/spec/hard"));
        let used = self.usage(ns, &qv, &hard).await?;
        let status = json!({
            "hard": qv.pointer("/spec/hard").cloned().unwrap_or(json!({})),
            "used": quota::to_json(&used),
        });
        if qv.get("status") == Some(&status) {
            return Ok(());
        }
        let mut new = qv;
        new["status"] = status;
        let body: ResourceQuota =
            serde_json::from_value(new).map_err(|e| QuotaError::Encode(key.into(), e))?;
        // The resourceVersion in the body makes this a compare-and-swap: a
        // concurrent charge wins and this recount runs again.
        api.replace_status(name, &PostParams::default(), &body)
            .await?;
        Ok(())
    }

    /// What the namespace's objects cost against `quota`, for every name
    /// in `hard` (zero when nothing is charged).
    async fn usage(
        &self,
        ns: &str,
        quota_obj: &Value,
        hard: &ResourceList,
    ) -> Result<ResourceList, QuotaError> {
        let mut kinds: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for n in hard.keys() {
            if let Some(k) = quota::resource_of(n) {
                kinds.entry(k).or_default().push(n.clone());
            }
        }
        let mut used: ResourceList = hard
            .keys()
            .filter(|n| quota::resource_of(n).is_some())
            .map(|n| (n.clone(), quota::Amount::zero()))
            .collect();
        let now = jiff::Timestamp::now();
        for ((group, plural), names) in kinds {
            let Some(def) = self
                .ctx
                .catalogue
                .all()
                .into_iter()
                .find(|d| d.group == group && d.plural == plural && d.namespaced)
            else {
                continue;
            };
            let ev = Evaluator::new(&group, &plural);
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.ctx.client.clone(), ns, &api_resource(&def));
            for obj in api.list(&ListParams::default()).await?.items {
                let Ok(v) = serde_json::to_value(&obj) else {
                    continue;
                };
                if !ev.matches_scopes(quota_obj, &v) {
                    continue;
                }
                used = quota::add(&used, &quota::mask(&ev.usage(&v, now), names.iter()));
            }
        }
        Ok(used)
    }
}
