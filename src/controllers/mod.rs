//! Controllers: reconcile loops that are ordinary API clients (kube::Client
//! over the in-memory router), never side doors into the store. Each file is
//! one controller with a `run(ctx)` entry; `start` spawns the enabled ones.

pub mod crd;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod expectations;
pub mod gc;
pub mod history;
pub mod horizontalpodautoscaler;
pub mod job;
pub mod leaderelection;
pub mod localpath;
pub mod namespace;
pub mod nodelifecycle;
pub mod podcontrol;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttl;

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::registry::Catalogue;

/// Settings controllers read (from `ServerConfig`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// After this long without a heartbeat a node is NotReady/Unknown.
    pub node_monitor_grace_period: std::time::Duration,
    /// The cluster's service CIDR (for the kubernetes Service).
    pub service_cidr: String,
    /// The cluster CA certificate (PEM), published as kube-root-ca.crt.
    pub ca_pem: String,
    /// `<data-dir>/storage`: the local-path provisioner's volumes.
    pub storage_dir: std::path::PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_monitor_grace_period: std::time::Duration::from_secs(40),
            service_cidr: "10.43.0.0/16".into(),
            ca_pem: String::new(),
            storage_dir: std::path::PathBuf::from("/var/lib/rk3s/storage"),
        }
    }
}

/// What every controller gets: a client, an event recorder, the resource
/// catalogue (read-only, for controllers that walk every kind: namespace,
/// garbage collector) and settings.
pub struct Context {
    pub client: kube::Client,
    pub catalogue: Arc<Catalogue>,
    pub settings: Settings,
}

impl Context {
    /// An event recorder reporting as `component` (e.g. "deployment-controller").
    pub fn recorder(&self, component: &str) -> events::Recorder {
        events::Recorder::new(self.client.clone(), component)
    }
}

type Runner = fn(Arc<Context>) -> futures::future::BoxFuture<'static, ()>;

/// Every controller by the name `--disable` knows it by.
fn controllers() -> Vec<(&'static str, Runner)> {
    vec![
        ("namespace", |ctx| Box::pin(namespace::run(ctx))),
        ("node-lifecycle", |ctx| Box::pin(nodelifecycle::run(ctx))),
        ("garbage-collector", |ctx| Box::pin(gc::run(ctx))),
        ("endpoints", |ctx| Box::pin(endpoints::run(ctx))),
        ("endpointslice", |ctx| Box::pin(endpointslice::run(ctx))),
        ("serviceaccount", |ctx| Box::pin(serviceaccount::run(ctx))),
        ("root-ca-certificate-publisher", |ctx| {
            Box::pin(rootca::run(ctx))
        }),
        ("job", |ctx| Box::pin(job::run(ctx))),
        ("ttl-after-finished", |ctx| Box::pin(ttl::run(ctx))),
        ("cronjob", |ctx| Box::pin(cronjob::run(ctx))),
        ("replicaset", |ctx| Box::pin(replicaset::run(ctx))),
        ("replicationcontroller", |ctx| {
            Box::pin(replicaset::run_replication_controllers(ctx))
        }),
        ("deployment", |ctx| Box::pin(deployment::run(ctx))),
        ("statefulset", |ctx| Box::pin(statefulset::run(ctx))),
        ("daemonset", |ctx| Box::pin(daemonset::run(ctx))),
        ("horizontal-pod-autoscaler", |ctx| {
            Box::pin(horizontalpodautoscaler::run(ctx))
        }),
        ("local-path-provisioner", |ctx| {
            Box::pin(localpath::run(ctx))
        }),
        ("resourcequota", |ctx| Box::pin(resourcequota::run(ctx))),
        ("disruption", |ctx| Box::pin(disruption::run(ctx))),
    ]
}

/// Spawn every controller not named in `disabled`.
pub fn start(ctx: Arc<Context>, disabled: &[String]) -> Vec<JoinHandle<()>> {
    controllers()
        .into_iter()
        .filter(|(name, _)| {
            !disabled
                .iter()
                .any(|d| d == name || d == &format!("{name}-controller"))
        })
        .map(|(name, run)| {
            let ctx = ctx.clone();
            tracing::debug!(controller = name, "starting");
            tokio::spawn(run(ctx))
        })
        .collect()
}
