//! The node agent: rk3s's kubelet. It registers this machine as a Node,
//! keeps its Lease and status fresh, and runs the pods bound to it through
//! the container runtime (`crate::runtime::cri`), one worker per pod.
//!
//! It only talks to the API through a `kube::Client` (in memory inside
//! `rk3s server`, over HTTPS for a remote agent later), and to the machine
//! through the services in [`Services`]: the runtime, the image store, pod
//! networking, volumes. Those are traits here so the worker's decisions can
//! be tested without a kernel, and so each mechanism stays in its module.

pub mod command;
pub mod envvars;
pub mod eviction;
pub mod lease;
pub mod podfiles;
pub mod podworker;
pub mod qos;
pub mod registration;
pub mod security;
pub mod services;
pub mod stats;
pub mod status;
pub mod streams;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use tokio::task::JoinHandle;

use crate::runtime::cri::{ContainerRuntime, ImageSpec, Mount};

/// How this node agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node_name: String,
    /// `<data-dir>/agent`: pod directories, runtime and network state.
    pub agent_dir: PathBuf,
    /// Where CRI logs go: `<log_root>/<ns>_<name>_<uid>/<container>/<n>.log`.
    pub log_root: PathBuf,
    /// The cluster CIDR the node's podCIDR comes from.
    pub cluster_cidr: String,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    /// `cpu=100m,memory=256Mi` held back from pods.
    pub system_reserved: String,
    /// Lease renewal period (10 s upstream).
    pub lease_interval: Duration,
    /// Node status report period when nothing changed.
    pub status_interval: Duration,
    /// The address advertised as InternalIP; the first non-loopback IPv4
    /// address when `None`.
    pub node_ip: Option<IpAddr>,
    pub max_pods: u32,
    /// Hard eviction thresholds (`--eviction-hard`).
    pub eviction_hard: eviction::Thresholds,
    /// Soft thresholds and their grace periods (`--eviction-soft`,
    /// `--eviction-soft-grace-period`).
    pub eviction_soft: eviction::SoftThresholds,
    /// The most a pod evicted for a soft threshold gets to stop (seconds).
    pub eviction_max_pod_grace: i64,
    /// How long a pressure condition outlives its signal.
    pub eviction_pressure_transition_period: Duration,
    /// Image GC starts above this percent of disk use...
    pub image_gc_high: u8,
    /// ...and frees down to this one.
    pub image_gc_low: u8,
    /// Images used or imported more recently are not collected (the
    /// kubelet's imageMinimumGCAge, 2 min).
    pub image_minimum_gc_age: Duration,
    /// How often usage is sampled and eviction decided (the kubelet's
    /// housekeeping and eviction monitoring period, 10 s).
    pub housekeeping_interval: Duration,
}

impl AgentConfig {
    pub fn new(node_name: impl Into<String>, agent_dir: PathBuf) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            agent_dir,
            log_root: PathBuf::from("/var/log/pods"),
            cluster_cidr: crate::config::DEFAULT_CLUSTER_CIDR.into(),
            cluster_dns: IpAddr::from([10, 43, 0, 10]),
            cluster_domain: crate::config::DEFAULT_CLUSTER_DOMAIN.into(),
            system_reserved: String::new(),
            lease_interval: Duration::from_secs(10),
            status_interval: Duration::from_secs(60),
            node_ip: None,
            max_pods: 110,
            eviction_hard: eviction::Thresholds::parse(crate::config::DEFAULT_EVICTION_HARD)
                .unwrap_or_default(),
            eviction_soft: eviction::SoftThresholds::default(),
            eviction_max_pod_grace: 0,
            eviction_pressure_transition_period:
                crate::config::DEFAULT_EVICTION_PRESSURE_TRANSITION_PERIOD,
            image_gc_high: crate::config::DEFAULT_IMAGE_GC_HIGH_THRESHOLD,
            image_gc_low: crate::config::DEFAULT_IMAGE_GC_LOW_THRESHOLD,
            image_minimum_gc_age: crate::config::DEFAULT_IMAGE_MINIMUM_GC_AGE,
            housekeeping_interval: Duration::from_secs(10),
        }
    }

    /// `<agent-dir>/pods/<uid>`: the pod's own files (hosts, resolv.conf).
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.agent_dir.join("pods").join(uid)
    }
}

/// An image made present for a container, as the image store resolved it.
#[derive(Clone, Debug, Default)]
pub struct ResolvedImage {
    pub spec: ImageSpec,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries of the image config.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub size: u64,
    /// False when it was already present.
    pub pulled: bool,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ImagePullError {
    /// imagePullPolicy Never and the image is not on the node.
    #[error("{0}")]
    NeverPull(String),
    /// The registry or the store said no; the message is shown as is.
    #[error("{0}")]
    Pull(String),
}

/// The image store, as the agent needs it.
#[async_trait]
pub trait ImageService: Send + Sync {
    /// Make `reference` present per `policy` ("Always", "IfNotPresent",
    /// "Never"), with the pod's dockerconfigjson pull secrets.
    async fn ensure(
        &self,
        reference: &str,
        policy: &str,
        pull_secrets: &[Secret],
    ) -> Result<ResolvedImage, ImagePullError>;
    /// Whether the image is on the node already (decides the Pulling event).
    fn present(&self, reference: &str) -> bool;
}

/// A pod's network, as pod networking set it up.
#[derive(Clone, Debug)]
pub struct PodNetworkInfo {
    pub netns_path: PathBuf,
    pub ip: IpAddr,
}

/// Pod networking, as the agent needs it.
#[async_trait]
pub trait NetworkService: Send + Sync {
    /// The node's podCIDR is known (after registration): addresses come
    /// from it.
    fn set_pod_cidr(&self, _cidr: &str) -> Result<(), String> {
        Ok(())
    }
    /// Make (or find again) the pod's network namespace and address.
    async fn setup(
        &self,
        pod_uid: &str,
        namespace: &str,
        name: &str,
    ) -> Result<PodNetworkInfo, String>;
    /// Release everything of the pod's network; idempotent.
    async fn teardown(&self, pod_uid: &str) -> Result<(), String>;
}

/// Volumes, as the agent needs them.
#[async_trait]
pub trait VolumeService: Send + Sync {
    /// Mount every volume of the pod; the error is the FailedMount message.
    async fn mount_pod_volumes(&self, pod: &Pod) -> Result<HashMap<String, PathBuf>, String>;
    async fn unmount_pod_volumes(&self, pod_uid: &str);
    /// The container's volumeMounts as runtime mounts.
    fn container_mounts(
        &self,
        pod: &Pod,
        container: &Container,
        volumes: &HashMap<String, PathBuf>,
        env: &[(String, String)],
    ) -> Result<Vec<Mount>, String>;
}

/// The machinery a node agent drives.
#[derive(Clone)]
pub struct Services {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub images: Arc<dyn ImageService>,
    pub network: Arc<dyn NetworkService>,
    pub volumes: Arc<dyn VolumeService>,
}

/// A running agent; dropping it does not stop it (it runs for the life of
/// the process, like the controllers).
pub struct NodeAgent {
    pub tasks: Vec<JoinHandle<()>>,
    pub workers: podworker::PodWorkers,
    /// The latest usage sample (metrics API, stats/summary, eviction).
    pub stats: Arc<stats::StatsCollector>,
}

/// What the agent publishes and garbage-collects besides running pods.
#[derive(Clone, Default)]
pub struct Housekeeping {
    /// Where usage samples go for the metrics API.
    pub published: Arc<crate::node::metrics::Published>,
    /// The image store to prune under disk pressure, if any.
    pub images: Option<Arc<dyn eviction::ImageGc>>,
}

impl NodeAgent {
    /// Register the node, start the heartbeat and the pod workers.
    pub fn start(client: kube::Client, config: AgentConfig, services: Services) -> NodeAgent {
        Self::start_with(client, config, services, Housekeeping::default())
    }

    /// `start`, with usage published and images collected as `housekeeping` says.
    pub fn start_with(
        client: kube::Client,
        config: AgentConfig,
        services: Services,
        housekeeping: Housekeeping,
    ) -> NodeAgent {
        let client = as_kubelet(client);
        let config = Arc::new(config);
        let node = registration::NodeRegistration::new(client.clone(), config.clone());
        let workers = podworker::PodWorkers::new(
            client.clone(),
            config.clone(),
            services.clone(),
            node.clone(),
        );
        let mut tasks = Vec::new();
        {
            let node = node.clone();
            let workers = workers.clone();
            let network = services.network.clone();
            tasks.push(tokio::spawn(async move {
                node.register_until_done().await;
                match node.pod_cidr() {
                    Some(c) => {
                        if let Err(e) = network.set_pod_cidr(&c) {
                            tracing::error!("pod network: {e}");
                        }
                    }
                    None => tracing::error!("the node has no podCIDR: pods cannot get addresses"),
                }
                workers.run().await;
            }));
        }
        tasks.push(tokio::spawn(node.clone().status_loop()));
        let stats = Arc::new(stats::StatsCollector::new(
            config.node_name.clone(),
            config.agent_dir.clone(),
            services.runtime.clone(),
            housekeeping.published.clone(),
            Some(workers.clone()),
        ));
        let evictions = eviction::EvictionManager {
            client: client.clone(),
            node: node.clone(),
            runtime: services.runtime.clone(),
            workers: workers.clone(),
            stats: stats.clone(),
            images: housekeeping.images,
            thresholds: config.eviction_hard.clone(),
            soft: config.eviction_soft.clone(),
            max_pod_grace: config.eviction_max_pod_grace,
            image_gc_high: config.image_gc_high,
            image_gc_low: config.image_gc_low,
            image_min_age: config.image_minimum_gc_age,
            interval: config.housekeeping_interval,
        };
        tasks.push(tokio::spawn(evictions.run()));
        tasks.push(tokio::spawn(lease::heartbeat(
            client,
            config.node_name.clone(),
            config.lease_interval,
            node,
        )));
        NodeAgent {
            tasks,
            workers,
            stats,
        }
    }
}

/// The user agent the node agent writes with: managedFields name the
/// program (`kubelet`), as upstream's kubelet's writes do.
pub const USER_AGENT: &str = "kubelet/v1.33.0 (linux/amd64) kubernetes/rk3s";

/// `client`, its requests carrying the kubelet's user agent (whatever
/// the underlying client would send), so the API records the agent's
/// writes under the field manager `kubelet`.
pub fn as_kubelet(client: kube::Client) -> kube::Client {
    let ns = client.default_namespace().to_string();
    let svc = tower::service_fn(move |mut req: http::Request<kube::client::Body>| {
        let client = client.clone();
        async move {
            req.headers_mut().insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static(USER_AGENT),
            );
            client.send(req).await
        }
    });
    kube::Client::new(svc, ns)
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("image store: {0}")]
    Images(#[from] crate::runtime::image::ImageError),
    #[error("container runtime: {0}")]
    Runtime(#[from] crate::runtime::cri::RuntimeError),
}

/// Where the node's registry settings live (k3s's layout).
pub const REGISTRIES_FILE: &str = "/etc/rk3s/registries.yaml";

/// The agent of `rk3s server`: the real runtime, image store, pod network
/// and volumes on this machine, with the local streaming backend
/// registered with the API. Logs the host checks first.
pub fn start_in_server(
    cfg: &crate::config::ServerConfig,
    client: kube::Client,
    streams: &crate::api::streams::NodeStreamsRegistry,
    metrics: &crate::node::metrics::MetricsRegistry,
) -> Result<NodeAgent, AgentError> {
    crate::node::checkconfig::log_checks(&crate::node::checkconfig::checks());
    let agent_dir = cfg.agent_dir();
    let mut config = AgentConfig::new(cfg.node_name.clone(), agent_dir.clone());
    config.cluster_cidr = cfg.cluster_cidr.clone();
    config.cluster_dns = cfg.cluster_dns_ip()?;
    config.cluster_domain = cfg.cluster_domain.clone();
    config.system_reserved = cfg.system_reserved.clone();
    config.eviction_hard = eviction::Thresholds::parse(&cfg.eviction_hard)
        .map_err(|reason| crate::config::invalid("eviction-hard", &cfg.eviction_hard, reason))?;
    config.eviction_soft =
        eviction::SoftThresholds::parse(&cfg.eviction_soft, &cfg.eviction_soft_grace_period)
            .map_err(|reason| {
                crate::config::invalid("eviction-soft", &cfg.eviction_soft, reason)
            })?;
    config.eviction_max_pod_grace = cfg.eviction_max_pod_grace_period;
    config.eviction_pressure_transition_period = cfg.eviction_pressure_transition_period;
    config.image_gc_high = cfg.image_gc_high_threshold;
    config.image_gc_low = cfg.image_gc_low_threshold;
    config.image_minimum_gc_age = cfg.image_minimum_gc_age;
    let registries =
        crate::runtime::image::RegistriesConfig::load(std::path::Path::new(REGISTRIES_FILE))?;
    let images_dir = agent_dir.join("images");
    let store = crate::runtime::image::ImageStore::open(images_dir.clone(), registries)?;
    // Air-gapped images dropped next to the store.
    match store.import_dir(&images_dir) {
        Ok(refs) if !refs.is_empty() => tracing::info!(?refs, "imported image archives"),
        Ok(_) => {}
        Err(e) => tracing::warn!("importing image archives: {e}"),
    }
    let runtime: Arc<dyn ContainerRuntime> =
        Arc::new(crate::runtime::local::LocalRuntime::new(agent_dir.clone())?);
    let volumes = Arc::new(crate::node::volumes::VolumeManager::new(
        client.clone(),
        agent_dir.join("pods"),
        cfg.node_name.clone(),
    ));
    volumes.spawn_resync(Duration::from_secs(60));
    let housekeeping = Housekeeping {
        published: Arc::new(crate::node::metrics::Published::default()),
        images: Some(Arc::new(store.clone())),
    };
    metrics.register(&cfg.node_name, housekeeping.published.clone());
    let services = Services {
        runtime: runtime.clone(),
        images: Arc::new(services::LocalImages(store)),
        network: Arc::new(services::LocalNetwork::new(
            agent_dir.join("net"),
            cfg.cluster_network()?,
            cfg.service_network()?,
        )),
        volumes: Arc::new(services::LocalVolumes(volumes)),
    };
    let agent = NodeAgent::start_with(client, config, services, housekeeping);
    streams.register(
        cfg.node_name.clone(),
        Arc::new(
            streams::LocalStreams::new(runtime, agent.workers.clone())
                .with_stats(agent.stats.clone()),
        ),
    );
    Ok(agent)
}
