//! Rollout progress (upstream's progress.go): the Progressing condition
//! (progress made, complete, or past progressDeadlineSeconds), ReplicaSet
//! failures surfaced as the Deployment's ReplicaFailure condition, and when
//! to look again so a stuck rollout is noticed on time.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus, ReplicaSet};
use kube::ResourceExt;

use super::util;
use super::{Error, Syncer};
use crate::controllers::replicaset::engine;

impl Syncer<'_> {
    pub(super) async fn sync_rollout_status(
        &mut self,
        all: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<(), Error> {
        let mut st = self.calculate_status(all, new);
        let has_deadline = util::has_progress_deadline(&self.d);
        if !has_deadline {
            util::remove_condition(&mut st, util::PROGRESSING);
        }
        let current_status = self.d.status.clone().unwrap_or_default();
        let current = util::get_condition(&current_status, util::PROGRESSING).cloned();
        // A completed rollout being resynced: nothing to estimate.
        let complete_before = st.replicas == st.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref())
                == Some(util::NEW_RS_AVAILABLE_REASON);
        let now = engine::now_time();
        let subject = |what: &str| match new {
            Some(n) => format!("ReplicaSet {:?} {what}", n.name_any()),
            None => format!("Deployment {:?} {what}", self.name()),
        };
        if has_deadline && !complete_before {
            if util::deployment_complete(&self.d, &st) {
                let msg = subject("has successfully progressed.");
                util::set_condition(
                    &mut st,
                    util::new_condition(
                        util::PROGRESSING,
                        "True",
                        util::NEW_RS_AVAILABLE_REASON,
                        &msg,
                        &now,
                    ),
                );
            } else if util::deployment_progressing(&self.d, &st) {
                // Progress refreshes lastUpdateTime even with the same reason.
                let msg = subject("is progressing.");
                let mut cond = util::new_condition(
                    util::PROGRESSING,
                    "True",
                    util::RS_UPDATED_REASON,
                    &msg,
                    &now,
                );
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        cond.last_transition_time = cur.last_transition_time.clone();
                    }
                    util::remove_condition(&mut st, util::PROGRESSING);
                }
                util::set_condition(&mut st, cond);
            } else if util::deployment_timed_out(&self.d, &st, now.0) {
                let msg = subject("has timed out progressing.");
                util::set_condition(
                    &mut st,
                    util::new_condition(
                        util::PROGRESSING,
                        "False",
                        util::TIMED_OUT_REASON,
                        &msg,
                        &now,
                    ),
                );
            }
        }
        match replica_failure(all, new) {
            Some(c) => util::set_condition(&mut st, c),
            None => util::remove_condition(&mut st, util::REPLICA_FAILURE),
        }
        if current_status == st {
            if let Some(after) = self.stuck_requeue(&st, now.0) {
                self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
            }
            return Ok(());
        }
        self.d.status = Some(st);
        self.update_status().await
    }

    /// When a rollout in progress reaches its deadline, so the timeout is
    /// reported even if nothing else happens.
    fn stuck_requeue(&self, st: &DeploymentStatus, now: jiff::Timestamp) -> Option<Duration> {
        if !util::has_progress_deadline(&self.d) {
            return None;
        }
        let current = self
            .d
            .status
            .as_ref()
            .and_then(|s| util::get_condition(s, util::PROGRESSING))?;
        if util::deployment_complete(&self.d, st)
            || current.reason.as_deref() == Some(util::TIMED_OUT_REASON)
        {
            return None;
        }
        let last = current.last_update_time.as_ref()?.0.as_second();
        let deadline = last + util::progress_deadline(&self.d);
        // The timeout check is "deadline < now" to the second: look just after.
        let after = (deadline - now.as_second()).max(0) + 1;
        Some(Duration::from_secs(after as u64))
    }
}

/// The first ReplicaFailure condition of the new ReplicaSet, else of any.
fn replica_failure(all: &[ReplicaSet], new: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    new.into_iter().chain(all.iter()).find_map(|rs| {
        let c = rs
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == util::REPLICA_FAILURE)?;
        Some(DeploymentCondition {
            type_: util::REPLICA_FAILURE.into(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: c.last_transition_time.clone(),
            last_update_time: c.last_transition_time.clone(),
        })
    })
}
