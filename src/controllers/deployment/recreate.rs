//! The Recreate strategy (upstream's recreate.go): scale every old
//! ReplicaSet to zero, wait until none of their pods is left running, then
//! create the new ReplicaSet at full size.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::core::Selector;

use super::util;
use super::{Error, Syncer};
use crate::controllers::podcontrol;

/// How soon to look again while old pods are still terminating (pod
/// deletions are not watched here).
const OLD_PODS_POLL: Duration = Duration::from_millis(500);

impl Syncer<'_> {
    pub(super) async fn rollout_recreate(&mut self) -> Result<(), Error> {
        // Not created yet: no scaling up before the old pods are gone.
        let (mut new, mut olds) = self.get_all_replica_sets(false).await?;
        let mut all = olds.clone();
        all.extend(new.clone());
        let mut scaled_down = false;
        for old in util::filter_active(&olds) {
            scaled_down |= self.scale_and_record(&old, 0).await?.0;
        }
        if scaled_down {
            return self.sync_rollout_status(&all, new.as_ref()).await;
        }
        if self.old_pods_running(new.as_ref(), &olds).await? {
            self.requeue = Some(OLD_PODS_POLL);
            return self.sync_rollout_status(&all, new.as_ref()).await;
        }
        if new.is_none() {
            (new, olds) = self.get_all_replica_sets(true).await?;
            all = olds.clone();
            all.extend(new.clone());
        }
        if let Some(n) = &new {
            self.scale_and_record(n, util::replicas(&self.d)).await?;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if util::deployment_complete(&self.d, &status) {
            self.cleanup(&olds).await?;
        }
        self.sync_rollout_status(&all, new.as_ref()).await
    }

    /// Whether any pod of an old ReplicaSet may still be running: counted
    /// ones, or ones not yet terminal (including those being deleted).
    async fn old_pods_running(
        &self,
        new: Option<&ReplicaSet>,
        olds: &[ReplicaSet],
    ) -> Result<bool, Error> {
        if util::actual_replica_count(olds) > 0 {
            return Ok(true);
        }
        let old_uids: HashSet<&str> = olds
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        if old_uids.is_empty() {
            return Ok(false);
        }
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let selector = Selector::try_from(selector).map_err(|e| Error::Invalid(e.to_string()))?;
        let pods: Api<Pod> = Api::namespaced(self.sh.client.clone(), &self.ns());
        let list = pods
            .list(&ListParams::default().labels(&selector.to_string()))
            .await?;
        let new_uid = new.and_then(|n| n.metadata.uid.as_deref());
        Ok(list.items.iter().any(|p| {
            let owner = podcontrol::controller_of(&p.metadata).map(|r| r.uid.as_str());
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("");
            owner.is_some_and(|u| old_uids.contains(u) && Some(u) != new_uid)
                && phase != "Failed"
                && phase != "Succeeded"
        }))
    }
}
