//! The parts of a sync every strategy shares (upstream's sync.go): finding
//! or creating the new ReplicaSet with its revision, scaling ReplicaSets
//! (proportionally during a rollout), cleaning up old revisions, and the
//! status.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};

use super::util::{self, MAX_REV_HISTORY_CHARS};
use super::{Error, Syncer};
use crate::controllers::events;
use crate::controllers::podcontrol;
use crate::controllers::replicaset::engine::{self, api_message};

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

impl Syncer<'_> {
    /// The new ReplicaSet (created if `create` and missing) and all old
    /// ones, with the new one's revision brought up to date.
    pub(super) async fn get_all_replica_sets(
        &mut self,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let existing = util::find_new_rs(&self.d, &self.rs_list);
        let olds = util::find_old_rss(&self.rs_list, existing.as_ref());
        let new = self.get_new_replica_set(&olds, existing, create).await?;
        Ok((new, olds))
    }

    async fn get_new_replica_set(
        &mut self,
        olds: &[ReplicaSet],
        existing: Option<ReplicaSet>,
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let new_revision = util::max_revision(olds) + 1;
        let now = engine::now_time();
        if let Some(existing) = existing {
            let mut copy = existing.clone();
            let annotations_changed = util::set_new_rs_annotations(
                &self.d,
                &mut copy,
                new_revision,
                true,
                MAX_REV_HISTORY_CHARS,
            );
            let min_ready = util::min_ready_seconds(&self.d);
            let spec = copy.spec.get_or_insert_with(Default::default);
            if annotations_changed || spec.min_ready_seconds.unwrap_or(0) != min_ready {
                spec.min_ready_seconds = Some(min_ready);
                let updated = self
                    .rs_api()
                    .replace(&copy.name_any(), &PostParams::default(), &copy)
                    .await?;
                self.remember(&updated);
                return Ok(Some(updated));
            }
            let revision = copy
                .annotations()
                .get(util::REVISION)
                .cloned()
                .unwrap_or_default();
            let mut needs_update = util::set_deployment_revision(&mut self.d, &revision);
            let has_deadline = util::has_progress_deadline(&self.d);
            let status = self.d.status.get_or_insert_with(Default::default);
            if has_deadline && util::get_condition(status, util::PROGRESSING).is_none() {
                let msg = format!("Found new replica set {:?}", copy.name_any());
                let cond = util::new_condition(
                    util::PROGRESSING,
                    "True",
                    util::FOUND_NEW_RS_REASON,
                    &msg,
                    &now,
                );
                util::set_condition(status, cond);
                needs_update = true;
            }
            if needs_update {
                self.update_status().await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }

        let spec = self.d.spec.clone().unwrap_or_default();
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::compute_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(util::HASH_LABEL.into(), hash.clone());
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels = Some(labels.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(util::HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{}", self.name(), hash);
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                owner_references: Some(vec![podcontrol::controller_ref(&self.d)]),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let mut all = olds.to_vec();
        all.push(new_rs.clone());
        let count = util::new_rs_new_replicas(&self.d, &all, &new_rs).map_err(Error::Invalid)?;
        util::set_rs_replicas(&mut new_rs, count);
        util::set_new_rs_annotations(
            &self.d,
            &mut new_rs,
            new_revision,
            false,
            MAX_REV_HISTORY_CHARS,
        );

        let mut already_exists = false;
        let created = match self.rs_api().create(&PostParams::default(), &new_rs).await {
            Ok(rs) => rs,
            Err(e) if engine::is_already_exists(&e) => {
                already_exists = true;
                let rs = self.rs_api().get(&name).await?;
                let ours = podcontrol::controller_of(&rs.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = rs
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| util::equal_ignore_hash(t, &spec.template));
                if !(ours && same) {
                    // A hash collision: another template hashed to this name.
                    // Count it so the next hash differs, and try again.
                    let status = self.d.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.update_status().await?;
                    return Err(e.into());
                }
                rs
            }
            Err(e) if engine::namespace_terminating(&e) => return Err(e.into()),
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set {name:?}: {}",
                    api_message(&e)
                );
                if util::has_progress_deadline(&self.d) {
                    let cond = util::new_condition(
                        util::PROGRESSING,
                        "False",
                        util::FAILED_RS_CREATE_REASON,
                        &msg,
                        &now,
                    );
                    util::set_condition(self.d.status.get_or_insert_with(Default::default), cond);
                    // The bigger problem is the one being reported.
                    let _ = self.update_status().await;
                }
                self.event(events::WARNING, util::FAILED_RS_CREATE_REASON, &msg)
                    .await;
                return Err(e.into());
            }
        };
        self.remember(&created);
        if !already_exists && count > 0 {
            let msg = format!(
                "Scaled up replica set {} from 0 to {count}",
                created.name_any()
            );
            self.event(events::NORMAL, "ScalingReplicaSet", &msg).await;
        }
        let mut needs_update =
            util::set_deployment_revision(&mut self.d, &new_revision.to_string());
        if !already_exists && util::has_progress_deadline(&self.d) {
            let msg = format!("Created new replica set {:?}", created.name_any());
            let cond =
                util::new_condition(util::PROGRESSING, "True", util::NEW_RS_REASON, &msg, &now);
            util::set_condition(self.d.status.get_or_insert_with(Default::default), cond);
            needs_update = true;
        }
        if needs_update {
            self.update_status().await?;
        }
        Ok(Some(created))
    }

    /// Scale one ReplicaSet to `new_scale` (no-op if already there).
    /// Returns whether it was scaled and the ReplicaSet as it now is.
    pub(super) async fn scale_and_record(
        &mut self,
        rs: &ReplicaSet,
        new_scale: i32,
    ) -> Result<(bool, ReplicaSet), Error> {
        let cur = util::rs_replicas(rs);
        if cur == new_scale {
            return Ok((false, rs.clone()));
        }
        let op = if cur < new_scale { "up" } else { "down" };
        self.scale_replica_set(rs, new_scale, op).await
    }

    /// Set a ReplicaSet's size and replica annotations; a size change is
    /// recorded as a ScalingReplicaSet event on the Deployment.
    async fn scale_replica_set(
        &mut self,
        rs: &ReplicaSet,
        new_scale: i32,
        op: &str,
    ) -> Result<(bool, ReplicaSet), Error> {
        let want = util::replicas(&self.d);
        let max = want + util::max_surge(&self.d);
        let old_scale = util::rs_replicas(rs);
        let size_changes = old_scale != new_scale;
        if !size_changes && !util::replicas_annotations_need_update(rs, want, max) {
            return Ok((false, rs.clone()));
        }
        let mut copy = rs.clone();
        util::set_rs_replicas(&mut copy, new_scale);
        util::set_replicas_annotations(&mut copy, want, max);
        let updated = self
            .rs_api()
            .replace(&copy.name_any(), &PostParams::default(), &copy)
            .await?;
        self.remember(&updated);
        if size_changes {
            let msg = format!(
                "Scaled {op} replica set {} from {old_scale} to {new_scale}",
                updated.name_any()
            );
            self.event(events::NORMAL, "ScalingReplicaSet", &msg).await;
        }
        Ok((size_changes, updated))
    }

    /// Scale for a changed spec.replicas. One active ReplicaSet takes it
    /// all; a saturated new one means the old ones go; otherwise (a rolling
    /// update in flight) every active ReplicaSet changes in proportion to its
    /// size, so the rollout neither speeds up nor slows down.
    pub(super) async fn scale(
        &mut self,
        new: Option<&ReplicaSet>,
        olds: &[ReplicaSet],
    ) -> Result<(), Error> {
        let want = util::replicas(&self.d);
        if let Some(active) = util::find_active_or_latest(new, olds) {
            if util::rs_replicas(&active) != want {
                self.scale_and_record(&active, want).await?;
            }
            return Ok(());
        }
        if util::is_saturated(&self.d, new) {
            for old in util::filter_active(olds) {
                self.scale_and_record(&old, 0).await?;
            }
            return Ok(());
        }
        if !util::is_rolling(&self.d) {
            return Ok(());
        }
        let mut all: Vec<ReplicaSet> = olds.to_vec();
        all.extend(new.cloned());
        let mut all = util::filter_active(&all);
        let allowed = if want > 0 {
            want + util::max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - util::replica_count(&all);
        let op = match to_add.cmp(&0) {
            Ordering::Greater => {
                all.sort_by(util::by_size_newer);
                "up"
            }
            Ordering::Less => {
                all.sort_by(util::by_size_older);
                "down"
            }
            Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes = Vec::with_capacity(all.len());
        for rs in &all {
            if to_add != 0 {
                let p = util::proportion(rs, &self.d, to_add, added);
                sizes.push(util::rs_replicas(rs) + p);
                added += p;
            } else {
                sizes.push(util::rs_replicas(rs));
            }
        }
        for (i, rs) in all.iter().enumerate() {
            let mut size = sizes[i];
            // Leftovers go to the largest.
            if i == 0 && to_add != 0 {
                size = (size + to_add - added).max(0);
            }
            self.scale_replica_set(rs, size, op).await?;
        }
        Ok(())
    }

    /// Delete old ReplicaSets beyond revisionHistoryLimit, oldest revision
    /// first, never one that still has pods.
    pub(super) async fn cleanup(&mut self, olds: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = util::revision_history_limit(&self.d) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = olds
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| util::by_revision(a, b));
        for rs in cleanable.into_iter().take(diff as usize) {
            let status = rs.status.as_ref();
            let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
            if status.is_some_and(|s| s.replicas != 0)
                || util::rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            match self
                .rs_api()
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(e) if engine::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The status the ReplicaSets add up to, with the Available condition.
    pub(super) fn calculate_status(
        &self,
        all: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> DeploymentStatus {
        let available = util::available_replica_count(all);
        let unavailable = (util::replica_count(all) - available).max(0);
        let current = self.d.status.clone().unwrap_or_default();
        let mut st = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: nonzero(util::actual_replica_count(all)),
            updated_replicas: nonzero(
                new.map_or(0, |n| util::actual_replica_count(std::slice::from_ref(n))),
            ),
            ready_replicas: nonzero(util::ready_replica_count(all)),
            available_replicas: nonzero(available),
            unavailable_replicas: nonzero(unavailable),
            collision_count: current.collision_count,
            conditions: current.conditions,
            terminating_replicas: None,
        };
        let now = engine::now_time();
        let cond = if available >= util::replicas(&self.d) - util::max_unavailable(&self.d) {
            util::new_condition(
                util::AVAILABLE,
                "True",
                util::MIN_AVAILABLE_REASON,
                "Deployment has minimum availability.",
                &now,
            )
        } else {
            util::new_condition(
                util::AVAILABLE,
                "False",
                util::MIN_UNAVAILABLE_REASON,
                "Deployment does not have minimum availability.",
                &now,
            )
        };
        util::set_condition(&mut st, cond);
        st
    }

    /// Write the status if it differs.
    pub(super) async fn sync_deployment_status(
        &mut self,
        all: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<(), Error> {
        let st = self.calculate_status(all, new);
        if self.d.status.as_ref() == Some(&st) {
            return Ok(());
        }
        self.d.status = Some(st);
        self.update_status().await
    }

    pub(super) async fn sync_status_only(&mut self) -> Result<(), Error> {
        let (new, olds) = self.get_all_replica_sets(false).await?;
        let mut all = olds;
        all.extend(new.clone());
        self.sync_deployment_status(&all, new.as_ref()).await
    }

    /// A paused Deployment, or one whose size changed: scale only.
    pub(super) async fn sync(&mut self) -> Result<(), Error> {
        let (new, olds) = self.get_all_replica_sets(false).await?;
        self.scale(new.as_ref(), &olds).await?;
        if util::paused(&self.d) {
            self.cleanup(&olds).await?;
        }
        let mut all = olds;
        all.extend(new.clone());
        self.sync_deployment_status(&all, new.as_ref()).await
    }

    /// Whether spec.replicas changed since the active ReplicaSets were
    /// last sized (their desired-replicas annotation says otherwise).
    pub(super) async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let (new, olds) = self.get_all_replica_sets(false).await?;
        let mut all = olds;
        all.extend(new);
        let want = util::replicas(&self.d);
        Ok(util::filter_active(&all)
            .iter()
            .any(|rs| util::desired_replicas_annotation(rs).is_some_and(|d| d != want)))
    }

    /// Record pausing and resuming in the Progressing condition, so time
    /// spent paused does not count against the progress deadline.
    pub(super) async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if !util::has_progress_deadline(&self.d) {
            return Ok(());
        }
        let paused = util::paused(&self.d);
        let status = self.d.status.get_or_insert_with(Default::default);
        let reason = util::get_condition(status, util::PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(util::TIMED_OUT_REASON) {
            return Ok(());
        }
        let paused_recorded = reason.as_deref() == Some(util::PAUSED_REASON);
        let now = engine::now_time();
        let cond = if paused && !paused_recorded {
            util::new_condition(
                util::PROGRESSING,
                "Unknown",
                util::PAUSED_REASON,
                "Deployment is paused",
                &now,
            )
        } else if !paused && paused_recorded {
            util::new_condition(
                util::PROGRESSING,
                "Unknown",
                util::RESUMED_REASON,
                "Deployment is resumed",
                &now,
            )
        } else {
            return Ok(());
        };
        util::set_condition(status, cond);
        self.update_status().await
    }
}
