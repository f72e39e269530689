//! Controllers: reconcile loops that are ordinary API clients (kube::Client
//! over the in-memory router), never side doors into the store. Each file is
//! one controller with a `run(ctx)` entry; `start` spawns the enabled ones.

pub mod events;
pub mod namespace;
pub mod podcontrol;

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings { node_monitor_grace_period: std::time::Duration::from_secs(40), service_cidr: "10.43.0.0/16".into() }
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
    vec![("namespace", |ctx| Box::pin(namespace::run(ctx)))]
}

/// Spawn every controller not named in `disabled`.
pub fn start(ctx: Arc<Context>, disabled: &[String]) -> Vec<JoinHandle<()>> {
    controllers()
        .into_iter()
        .filter(|(name, _)| !disabled.iter().any(|d| d == name || d == &format!("{name}-controller")))
        .map(|(name, run)| {
            let ctx = ctx.clone();
            tracing::debug!(controller = name, "starting");
            tokio::spawn(run(ctx))
        })
        .collect()
}
