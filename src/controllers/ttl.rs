//! TTL-after-finished controller: deletes a finished Job (and, through the
//! garbage collector, its pods) `spec.ttlSecondsAfterFinished` seconds after
//! its Complete or Failed condition. As upstream, the deletion is Foreground
//! with a UID precondition: the Job stays (being deleted) until its pods are
//! gone, and a Job recreated under the same name is never hit.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{debug, warn};

use super::Context;
use super::job::queue::WorkQueue;
use super::job::{key_of, split_key};

/// When the Job finished: the transition time of its terminal condition.
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// How long until the Job expires (zero if it has), or None if it never does.
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finish_time(job)?;
    let expire = finished
        .checked_add(jiff::SignedDuration::from_secs(i64::from(ttl)))
        .ok()?;
    let left = now.duration_until(expire);
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

/// Run until the Job watch ends.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let queue: Arc<WorkQueue<String>> = Arc::new(WorkQueue::default());
    let worker = {
        let (client, queue) = (client.clone(), queue.clone());
        tokio::spawn(async move {
            loop {
                let key = queue.next().await;
                match process(&client, &queue, &key).await {
                    Ok(()) => queue.forget(&key),
                    Err(e) => {
                        debug!(job = %key, "ttl-after-finished: {e}");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        })
    };
    let api: Api<Job> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Apply(job)) | Ok(watcher::Event::InitApply(job)) => {
                if time_left(&job, Timestamp::now()).is_some() {
                    let ns = job.metadata.namespace.as_deref().unwrap_or("");
                    queue.add(key_of(ns, job.metadata.name.as_deref().unwrap_or("")));
                }
            }
            Ok(_) => {}
            Err(e) => debug!("ttl-after-finished job watch: {e}"),
        }
    }
    warn!("ttl-after-finished job watch ended");
    worker.abort();
}

/// Delete the Job if its TTL has run out, else come back when it will.
async fn process(
    client: &kube::Client,
    queue: &WorkQueue<String>,
    key: &str,
) -> Result<(), kube::Error> {
    let (ns, name) = split_key(key);
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    // Always the newest Job: the TTL may have changed since it was queued.
    let Some(job) = api.get_opt(name).await? else {
        return Ok(());
    };
    match time_left(&job, Timestamp::now()) {
        None => Ok(()),
        Some(left) if !left.is_zero() => {
            queue.add_after(key.to_string(), left);
            Ok(())
        }
        Some(_) => {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: job.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::foreground()
            };
            debug!(job = %key, "cleaning up finished job");
            match api.delete(name, &dp).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, finished: Option<&str>) -> Job {
        let conds = finished.map_or(
            json!([]),
            |t| json!([{"type": "Complete", "status": "True", "lastTransitionTime": t}]),
        );
        serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "default"},
            "spec": {"ttlSecondsAfterFinished": ttl, "template": {}},
            "status": {"conditions": conds}
        }))
        .expect("job")
    }

    #[test]
    fn expiry() {
        let now: Timestamp = "2024-01-01T00:00:30Z".parse().expect("ts");
        assert_eq!(
            time_left(&job(Some(100), Some("2024-01-01T00:00:00Z")), now),
            Some(Duration::from_secs(70))
        );
        assert_eq!(
            time_left(&job(Some(10), Some("2024-01-01T00:00:00Z")), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            time_left(&job(Some(0), Some("2024-01-01T00:00:30Z")), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            time_left(&job(None, Some("2024-01-01T00:00:00Z")), now),
            None
        );
        assert_eq!(time_left(&job(Some(10), None), now), None);
    }
}
