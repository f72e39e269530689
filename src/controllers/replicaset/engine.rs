//! The work-queue side of a controller, shared by the replica and deployment
//! controllers: a channel of object references feeding kube-runtime's
//! `applier` (which deduplicates, never runs two reconciles of one object at
//! once, and honours requeue delays), per-object failure back-off, and small
//! helpers for API errors and timestamps.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::runtime::controller::{Action, Config, applier};
use kube::runtime::reflector::{ObjectRef, Store};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Where event handlers put the objects to reconcile.
pub struct Queue<K: Resource<DynamicType = ()>> {
    tx: mpsc::UnboundedSender<ObjectRef<K>>,
}

impl<K: Resource<DynamicType = ()>> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue {
            tx: self.tx.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()> + 'static> Queue<K> {
    /// A queue and the receiving end the applier reads.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<ObjectRef<K>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Queue { tx }, rx)
    }

    pub fn add(&self, obj: &K) {
        let _ = self.tx.send(ObjectRef::from_obj(obj));
    }

    pub fn add_ref(&self, r: ObjectRef<K>) {
        let _ = self.tx.send(r);
    }

    /// Reconcile `obj` again after `delay`.
    pub fn add_after(&self, obj: &K, delay: Duration) {
        let tx = self.tx.clone();
        let r = ObjectRef::from_obj(obj);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(r);
        });
    }
}

/// Failure counts per object, for exponential back-off (upstream's
/// per-item rate limiter: 5 ms doubling, capped).
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(5);
    const CAP: Duration = Duration::from_secs(60);

    /// Record a failure of `key`; how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let mut f = self.failures.lock();
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        Self::delay(*n)
    }

    pub fn delay(failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        Self::BASE.saturating_mul(1u32 << shift).min(Self::CAP)
    }

    pub fn succeeded(&self, key: &str) {
        self.failures.lock().remove(key);
    }
}

/// `namespace/name` of an object.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or("")
    )
}

/// Run `reconcile` over the objects of `store` named on `rx` until the queue
/// closes. Errors go through `error_policy`; results are only logged.
pub async fn run<K, Ctx, F, Fut, E>(
    name: &'static str,
    store: Store<K>,
    rx: mpsc::UnboundedReceiver<ObjectRef<K>>,
    ctx: Arc<Ctx>,
    workers: u16,
    reconcile: F,
    error_policy: impl Fn(Arc<K>, &E, Arc<Ctx>) -> Action,
) where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Ctx>) -> Fut,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
    Ctx: Send + Sync + 'static,
{
    let queue = UnboundedReceiverStream::new(rx).map(Ok::<_, Infallible>);
    applier(
        move |obj, ctx| Box::pin(reconcile(obj, ctx)),
        error_policy,
        ctx,
        store,
        queue,
        Config::default().concurrency(workers),
    )
    .for_each(|res| async move {
        match res {
            Ok(_) => {}
            // Objects deleted while queued: expected.
            Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
            Err(e) => tracing::debug!(controller = name, "{e}"),
        }
    })
    .await;
}

/// The message of an API error as upstream prints a Go StatusError.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// A create refused because the namespace is terminating: nothing to report.
pub fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("because it is being terminated"))
}

/// Now, to the second: what a stored metav1.Time keeps, so a freshly made
/// condition compares equal to its stored copy.
pub fn now_time() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(Backoff::delay(1), Duration::from_millis(5));
        assert_eq!(Backoff::delay(2), Duration::from_millis(10));
        assert_eq!(Backoff::delay(5), Duration::from_millis(80));
        assert_eq!(Backoff::delay(40), Duration::from_secs(60));
        let b = Backoff::default();
        assert_eq!(b.failed("a"), Duration::from_millis(5));
        assert_eq!(b.failed("a"), Duration::from_millis(10));
        b.succeeded("a");
        assert_eq!(b.failed("a"), Duration::from_millis(5));
    }
}
