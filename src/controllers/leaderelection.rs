//! Leader election through a coordination.k8s.io/v1 Lease, as client-go's
//! leaderelection package does it: the holder renews `renewTime` every
//! retry period; a candidate takes the lease only once the record it
//! observes has not changed for `leaseDurationSeconds` (measured on its own
//! clock, so clock skew between servers does not matter); a leader that
//! cannot renew within the renew deadline stops leading. Servers sharing a
//! store thus never run two copies of a controller.
//!
//! The work done while leading runs on a tokio runtime of its own: stepping
//! down shuts that runtime down, which ends every task the work spawned
//! (controllers spawn workers of their own), not just the outer one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

/// The lease of the controllers and the scheduler, in kube-system.
pub const CONTROLLER_MANAGER_LEASE: &str = "rk3s-controller-manager";
pub const SCHEDULER_LEASE: &str = "rk3s-scheduler";
pub const LEASE_NAMESPACE: &str = "kube-system";

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("cannot start the leading runtime: {0}")]
    Runtime(std::io::Error),
}

/// client-go's settings (kube-controller-manager's defaults).
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    pub namespace: String,
    pub name: String,
    /// holderIdentity: `<hostname>_<uuid>`.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl ElectionConfig {
    pub fn new(name: &str, identity: &str) -> Self {
        ElectionConfig {
            namespace: LEASE_NAMESPACE.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// This server's identity: the host name and a UUID kept in `dir`, so a
/// restarted server recognises its own lease and resumes at once instead
/// of waiting for it to expire.
pub fn identity(dir: &std::path::Path) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let path = dir.join("leader-election-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(s) if uuid::Uuid::parse_str(s.trim()).is_ok() => s.trim().to_string(),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            if let Err(e) = std::fs::write(&path, &id) {
                warn!(path = %path.display(), "leader election identity not saved: {e}");
            }
            id
        }
    };
    format!("{host}_{id}")
}

/// What is run while leading: builds the future that starts the work.
pub type Work = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One candidate for one lease.
pub struct Elector {
    client: kube::Client,
    cfg: ElectionConfig,
    /// The record last seen and when it was first seen.
    observed: Option<(LeaseSpec, Instant)>,
    leading: watch::Sender<bool>,
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl Elector {
    pub fn new(client: kube::Client, cfg: ElectionConfig) -> Self {
        Elector {
            client,
            cfg,
            observed: None,
            leading: watch::Sender::new(false),
        }
    }

    /// Follows whether this candidate leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// One attempt: take or renew the lease. Ok(true) when we hold it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, ElectionError> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        let duration = i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now_micro()),
                    renew_time: Some(now_micro()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    self.observed = l.spec.map(|s| (s, Instant::now()));
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let changed = self.observed.as_ref().is_none_or(|(o, _)| *o != spec);
        if changed {
            self.observed = Some((spec.clone(), Instant::now()));
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.cfg.identity;
        let held_for = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(duration)).unwrap_or(0),
        );
        let seen_at = self
            .observed
            .as_ref()
            .map_or_else(Instant::now, |(_, t)| *t);
        if !holder.is_empty() && !mine && seen_at.elapsed() < held_for {
            return Ok(false);
        }
        let mut new = spec.clone();
        new.holder_identity = Some(self.cfg.identity.clone());
        new.lease_duration_seconds = Some(duration);
        new.renew_time = Some(now_micro());
        if !mine {
            new.acquire_time = Some(now_micro());
            new.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(new);
        // The resourceVersion we read makes this a compare-and-swap.
        match api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                self.observed = l.spec.map(|s| (s, Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Campaign forever: acquire, run `work` while leading, step down when
    /// renewing fails for the renew deadline, campaign again.
    pub async fn run(mut self, work: Work) {
        loop {
            self.acquire().await;
            info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
            let leading = match Leading::start(&self.cfg.name, work.clone()) {
                Ok(l) => l,
                Err(e) => {
                    warn!(lease = %self.cfg.name, "{e}");
                    tokio::time::sleep(self.cfg.retry_period).await;
                    continue;
                }
            };
            self.leading.send_replace(true);
            self.renew().await;
            self.leading.send_replace(false);
            warn!(lease = %self.cfg.name, identity = %self.cfg.identity, "leader election lost: stopping");
            leading.stop().await;
        }
    }

    async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::debug!(lease = %self.cfg.name, "acquire: {e}"),
            }
            tokio::time::sleep(jittered(self.cfg.retry_period)).await;
        }
    }

    /// Renew every retry period; return once a renew deadline passes
    /// without a successful renewal.
    async fn renew(&mut self) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.retry_period).await;
            let left = self.cfg.renew_deadline.saturating_sub(last_ok.elapsed());
            let attempt = tokio::time::timeout(left, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => last_ok = Instant::now(),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::debug!(lease = %self.cfg.name, "renew: {e}"),
                Err(_) => {}
            }
            if last_ok.elapsed() >= self.cfg.renew_deadline {
                return;
            }
        }
    }
}

/// client-go's wait.Jitter(period, 1.2).
fn jittered(d: Duration) -> Duration {
    d.mul_f64(1.0 + rand::random::<f64>() * 1.2)
}

/// Work running on its own runtime thread while leading.
struct Leading {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Leading {
    fn start(name: &str, work: Work) -> Result<Self, ElectionError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(format!("{name}-leading"))
            .enable_all()
            .build()
            .map_err(ElectionError::Runtime)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-leader"))
            .spawn(move || {
                rt.block_on(async move {
                    tokio::spawn(work());
                    let _ = stopped.await;
                });
                // Ends every task the work spawned.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(ElectionError::Runtime)?;
        Ok(Leading { stop, thread })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Campaign for `cfg` in the background; `work` runs only while leading.
pub fn spawn(
    client: kube::Client,
    cfg: ElectionConfig,
    work: Work,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<bool>) {
    let elector = Elector::new(client, cfg);
    let leading = elector.subscribe();
    (tokio::spawn(elector.run(work)), leading)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use crate::server::ControlPlane;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fast(name: &str, identity: &str) -> ElectionConfig {
        ElectionConfig {
            lease_duration: Duration::from_millis(1500),
            renew_deadline: Duration::from_millis(1000),
            retry_period: Duration::from_millis(200),
            ..ElectionConfig::new(name, identity)
        }
    }

    /// Counts how many copies of the work are running right now.
    fn counting_work(running: Arc<AtomicUsize>) -> Work {
        Arc::new(move || {
            let running = running.clone();
            Box::pin(async move {
                struct Guard(Arc<AtomicUsize>);
                impl Drop for Guard {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                running.fetch_add(1, Ordering::SeqCst);
                let _g = Guard(running.clone());
                // A nested task too: stepping down must end it as well.
                let nested = running.clone();
                tokio::spawn(async move {
                    nested.fetch_add(1, Ordering::SeqCst);
                    let _g = Guard(nested);
                    std::future::pending::<()>().await
                });
                std::future::pending::<()>().await
            })
        })
    }

    async fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
        let end = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Two candidates on one server: exactly one leads; when it stops
    /// renewing, the other takes over only after the lease expires, and
    /// the Lease reads as upstream's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_leader_and_takeover_after_expiry() {
        let dir = std::env::temp_dir().join(format!("rk3s-le-{}", uuid::Uuid::new_v4()));
        let cfg = ServerConfig::new(dir.clone(), "test-node");
        let cp = ControlPlane::open(&cfg).expect("open");
        cp.bootstrap(&cfg).await.expect("bootstrap");
        let (ra, rb) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (task_a, lead_a) = spawn(
            cp.client(),
            fast("test-lease", "a_1"),
            counting_work(ra.clone()),
        );
        wait_for(|| *lead_a.borrow(), "a to lead").await;
        let (task_b, lead_b) = spawn(
            cp.client(),
            fast("test-lease", "b_2"),
            counting_work(rb.clone()),
        );
        wait_for(
            || ra.load(Ordering::SeqCst) == 2,
            "a's work and its nested task",
        )
        .await;
        // b campaigns for several lease durations while a renews: never leads.
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            assert!(
                !*lead_b.borrow() && rb.load(Ordering::SeqCst) == 0,
                "two leaders"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let api: Api<Lease> = Api::namespaced(cp.client(), LEASE_NAMESPACE);
        let lease = api.get("test-lease").await.expect("lease");
        let spec = lease.spec.clone().expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("a_1"));
        assert_eq!(spec.lease_duration_seconds, Some(1));
        assert_eq!(spec.lease_transitions, Some(0));
        assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
        // MicroTime on the wire, as upstream: RFC 3339 with microseconds.
        let raw = serde_json::to_value(&lease).expect("json");
        let renew = raw["spec"]["renewTime"].as_str().expect("renewTime");
        assert_eq!(renew.len(), "2024-01-01T00:00:00.000000Z".len(), "{renew}");

        // a stops renewing (its process "hangs"): its elector is gone.
        let stopped = Instant::now();
        task_a.abort();
        wait_for(|| *lead_b.borrow(), "b to take over").await;
        // Not before a's last renewal had expired on b's clock.
        // (Less a little: b's clock for the lease started before `stopped`.)
        assert!(
            stopped.elapsed() >= Duration::from_millis(900),
            "took over too early: {:?}",
            stopped.elapsed()
        );
        wait_for(|| rb.load(Ordering::SeqCst) == 2, "b's work").await;
        let spec = api
            .get("test-lease")
            .await
            .expect("lease")
            .spec
            .expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("b_2"));
        assert_eq!(spec.lease_transitions, Some(1));
        task_b.abort();
        cp.store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A leader whose lease is taken (here by hand) steps down within the
    /// renew deadline, ending every task its work spawned, and campaigns
    /// again once the usurper's lease expires.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leader_steps_down_when_it_cannot_renew() {
        let dir = std::env::temp_dir().join(format!("rk3s-le-{}", uuid::Uuid::new_v4()));
        let cfg = ServerConfig::new(dir.clone(), "test-node");
        let cp = ControlPlane::open(&cfg).expect("open");
        cp.bootstrap(&cfg).await.expect("bootstrap");
        let running = Arc::new(AtomicUsize::new(0));
        let (task, leading) = spawn(
            cp.client(),
            fast("test-lease", "a_1"),
            counting_work(running.clone()),
        );
        wait_for(|| running.load(Ordering::SeqCst) == 2, "work").await;
        let api: Api<Lease> = Api::namespaced(cp.client(), LEASE_NAMESPACE);
        let mut lease = api.get("test-lease").await.expect("lease");
        if let Some(s) = lease.spec.as_mut() {
            s.holder_identity = Some("usurper".into());
            s.renew_time = Some(now_micro());
        }
        api.replace("test-lease", &PostParams::default(), &lease)
            .await
            .expect("usurp");
        wait_for(|| !*leading.borrow(), "step down").await;
        wait_for(
            || running.load(Ordering::SeqCst) == 0,
            "work and nested task to end",
        )
        .await;
        // The usurper never renews: the lease comes back.
        wait_for(|| *leading.borrow(), "re-election").await;
        wait_for(|| running.load(Ordering::SeqCst) == 2, "work again").await;
        let spec = api
            .get("test-lease")
            .await
            .expect("lease")
            .spec
            .expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("a_1"));
        assert_eq!(spec.lease_transitions, Some(1));
        task.abort();
        cp.store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
