//! The RollingUpdate strategy (upstream's rolling.go): scale the new
//! ReplicaSet up as far as maxSurge allows, scale old ones down as far as
//! maxUnavailable allows (unhealthy pods first), repeat on every change.

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::util;
use super::{Error, Syncer};

impl Syncer<'_> {
    pub(super) async fn rollout_rolling(&mut self) -> Result<(), Error> {
        let (new, olds) = self.get_all_replica_sets(true).await?;
        let Some(new) = new else {
            return Ok(());
        };
        let mut all = olds.clone();
        all.push(new.clone());
        if self.reconcile_new_replica_set(&all, &new).await? {
            return self.sync_rollout_status(&all, Some(&new)).await;
        }
        if self
            .reconcile_old_replica_sets(&all, util::filter_active(&olds), &new)
            .await?
        {
            return self.sync_rollout_status(&all, Some(&new)).await;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if util::deployment_complete(&self.d, &status) {
            self.cleanup(&olds).await?;
        }
        self.sync_rollout_status(&all, Some(&new)).await
    }

    /// Scale the new ReplicaSet towards spec.replicas within the surge.
    async fn reconcile_new_replica_set(
        &mut self,
        all: &[ReplicaSet],
        new: &ReplicaSet,
    ) -> Result<bool, Error> {
        let want = util::replicas(&self.d);
        let have = util::rs_replicas(new);
        if have == want {
            return Ok(false);
        }
        let target = if have > want {
            want
        } else {
            util::new_rs_new_replicas(&self.d, all, new).map_err(Error::Invalid)?
        };
        Ok(self.scale_and_record(new, target).await?.0)
    }

    /// Scale old ReplicaSets down while keeping spec.replicas - maxUnavailable
    /// pods available.
    async fn reconcile_old_replica_sets(
        &mut self,
        all: &[ReplicaSet],
        olds: Vec<ReplicaSet>,
        new: &ReplicaSet,
    ) -> Result<bool, Error> {
        if util::replica_count(&olds) == 0 {
            return Ok(false);
        }
        let min_available = util::replicas(&self.d) - util::max_unavailable(&self.d);
        let new_unavailable = util::rs_replicas(new) - util::rs_available(new);
        // Unavailable pods of the new ReplicaSet do not count towards what
        // may be taken down: they are not serving yet.
        let max_scaled_down = util::replica_count(all) - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy old replicas go first: they serve nothing and would
        // otherwise block the rollout.
        let (olds, cleaned) = self
            .cleanup_unhealthy_replicas(olds, max_scaled_down)
            .await?;
        let mut all = olds.clone();
        all.push(new.clone());
        let scaled = self.scale_down_old_replica_sets(&all, olds).await?;
        Ok(cleaned + scaled > 0)
    }

    async fn cleanup_unhealthy_replicas(
        &mut self,
        mut olds: Vec<ReplicaSet>,
        max: i32,
    ) -> Result<(Vec<ReplicaSet>, i32), Error> {
        olds.sort_by(util::by_creation);
        let mut total = 0;
        for slot in olds.iter_mut() {
            if total >= max {
                break;
            }
            let (replicas, available) = (util::rs_replicas(slot), util::rs_available(slot));
            if replicas == 0 || replicas == available {
                continue;
            }
            let down = (max - total).min(replicas - available);
            let (_, updated) = self.scale_and_record(slot, replicas - down).await?;
            total += down;
            *slot = updated;
        }
        Ok((olds, total))
    }

    async fn scale_down_old_replica_sets(
        &mut self,
        all: &[ReplicaSet],
        mut olds: Vec<ReplicaSet>,
    ) -> Result<i32, Error> {
        let min_available = util::replicas(&self.d) - util::max_unavailable(&self.d);
        let available = util::available_replica_count(all);
        if available <= min_available {
            return Ok(0);
        }
        olds.sort_by(util::by_creation);
        let budget = available - min_available;
        let mut total = 0;
        for rs in &olds {
            if total >= budget {
                break;
            }
            let replicas = util::rs_replicas(rs);
            if replicas == 0 {
                continue;
            }
            let down = replicas.min(budget - total);
            self.scale_and_record(rs, replicas - down).await?;
            total += down;
        }
        Ok(total)
    }
}
