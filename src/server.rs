//! `rk3s server`: opens the store, makes or loads the PKI, bootstraps the
//! cluster's own objects and serves the API over TLS until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{info, warn};

use crate::api::metrics::Metrics;
use crate::api::{self, ApiState, Identity};
use crate::auth::UserInfo;
use crate::config::ServerConfig;
use crate::registry::generic::{Registry, Settings, WriteOptions};
use crate::registry::{Catalogue, catalogue};
use crate::store::Store;
use crate::store::metered::MeteredStore;
use crate::store::sqlite::{SqliteOptions, SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("pki: {0}")]
    Pki(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

/// A running control plane (everything but the listener), usable in process.
pub struct ControlPlane {
    pub state: Arc<ApiState>,
    pub router: Router,
    pub store: Arc<dyn Store>,
}

impl ControlPlane {
    /// Open the store and build the API over it.
    pub fn open(cfg: &ServerConfig) -> Result<Self, ServerError> {
        let db_dir = cfg.server_dir().join("db");
        std::fs::create_dir_all(&db_dir)?;
        // The database holds Secrets: only root may read it.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&db_dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let sqlite = SqliteStore::open(&db_dir.join("state.db"), store_options_from_env())?;
        let metrics = Arc::new(Metrics::default());
        let store: Arc<dyn Store> = Arc::new(MeteredStore::new(sqlite, metrics.clone()));
        let catalogue = Arc::new(Catalogue::new(catalogue::builtin()));
        let settings = Settings {
            service_cidr: cfg.service_cidr.clone(),
            cluster_cidr: cfg.cluster_cidr.clone(),
            ..Settings::default()
        };
        let registry = Arc::new(Registry::new(store.clone(), catalogue.clone(), settings));
        let host = match cfg.bind_address {
            ip if ip.is_unspecified() => primary_address().unwrap_or_else(|| "127.0.0.1".into()),
            ip => ip.to_string(),
        };
        let state = Arc::new(ApiState {
            registry,
            catalogue,
            metrics,
            server_address: format!("{host}:{}", cfg.https_port),
            ready: Default::default(),
            shutting_down: Default::default(),
            openapi: Default::default(),
            resource_metrics: Default::default(),
            streams: Default::default(),
        });
        let router = api::router(state.clone());
        // Compile the field-validation schemas off the request path.
        std::thread::spawn(crate::api::fieldvalidation::warm);
        Ok(ControlPlane {
            state,
            router,
            store,
        })
    }

    /// A kube::Client that talks to this control plane through the router in
    /// memory: no TCP, no TLS, the same admission and watch semantics.
    pub fn client(&self) -> kube::Client {
        in_memory_client(self.router.clone())
    }

    /// Create the objects every cluster has: system namespaces and the
    /// `kubernetes` Service. Idempotent.
    pub async fn bootstrap(&self, cfg: &ServerConfig) -> Result<(), ServerError> {
        let reg = &self.state.registry;
        let cat = &self.state.catalogue;
        let err = |e: crate::api::status::ApiError| ServerError::Bootstrap(e.to_string());
        let ns_def = cat
            .get("", "v1", "namespaces")
            .ok_or_else(|| ServerError::Bootstrap("no namespaces".into()))?;
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match reg
                .create(&ns_def, None, obj, &WriteOptions::default())
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(err(e)),
            }
        }
        let svc_def = cat
            .get("", "v1", "services")
            .ok_or_else(|| ServerError::Bootstrap("no services".into()))?;
        let ip = cfg.first_service_ip()?.to_string();
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": cfg.https_port}]},
        });
        match reg
            .create(&svc_def, Some("default"), svc, &WriteOptions::default())
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(err(e)),
        }
        self.reconcile_master_endpoints(cfg).await?;
        self.state.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The `kubernetes` Service's Endpoints and EndpointSlice point at this
    /// server, as upstream's endpoint reconciler keeps them.
    async fn reconcile_master_endpoints(&self, cfg: &ServerConfig) -> Result<(), ServerError> {
        let reg = &self.state.registry;
        let cat = &self.state.catalogue;
        let ip = match cfg.bind_address {
            a if a.is_unspecified() => primary_address().unwrap_or_else(|| "127.0.0.1".into()),
            a => a.to_string(),
        };
        let port = cfg.https_port;
        let objs = [
            (
                cat.get("", "v1", "endpoints"),
                json!({"apiVersion": "v1", "kind": "Endpoints",
                       "metadata": {"name": "kubernetes", "namespace": "default",
                                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                       "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
            ),
            (
                cat.get("discovery.k8s.io", "v1", "endpointslices"),
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": "kubernetes", "namespace": "default",
                                    "labels": {"kubernetes.io/service-name": "kubernetes"}},
                       "addressType": if ip.contains(':') { "IPv6" } else { "IPv4" },
                       "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
                       "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
            ),
        ];
        for (def, obj) in objs {
            let Some(def) = def else { continue };
            let opts = WriteOptions::default();
            let res = match reg.create(&def, Some("default"), obj.clone(), &opts).await {
                Err(e) if e.code == 409 => {
                    reg.update(&def, Some("default"), "kubernetes", obj, None, &opts)
                        .await
                }
                other => other,
            };
            res.map_err(|e| ServerError::Bootstrap(e.to_string()))?;
        }
        Ok(())
    }
}

/// Store tuning from the environment (for tests and odd hardware):
/// RK3S_COMPACT_INTERVAL (seconds, 0 = off), RK3S_COMPACT_RETAIN (revisions),
/// RK3S_WATCH_WINDOW (events kept for resuming watches).
fn store_options_from_env() -> SqliteOptions {
    let mut o = SqliteOptions::default();
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(s) = num("RK3S_COMPACT_INTERVAL") {
        o.compaction_interval = (s > 0).then(|| Duration::from_secs(s));
    }
    if let Some(r) = num("RK3S_COMPACT_RETAIN") {
        o.compaction_retain = r as i64;
    }
    if let Some(n) = num("RK3S_WATCH_WINDOW") {
        o.window.max_events = n as usize;
    }
    o
}

/// The kube::Client over an in-memory router, authenticated as the loopback
/// identity (system:masters).
pub fn in_memory_client(router: Router) -> kube::Client {
    let svc = tower::ServiceBuilder::new()
        .map_request(|mut req: http::Request<kube::client::Body>| {
            req.extensions_mut()
                .insert(Identity(Some(UserInfo::loopback())));
            // managedFields name writers by user agent; upstream's controllers
            // are kube-controller-manager.
            if !req.headers().contains_key(http::header::USER_AGENT) {
                req.headers_mut().insert(
                    http::header::USER_AGENT,
                    http::HeaderValue::from_static("kube-controller-manager/v1.33.0"),
                );
            }
            req.map(axum::body::Body::new)
        })
        .service(router);
    kube::Client::new(svc, "default")
}

/// The host's first non-loopback IPv4 address, for advertising.
fn primary_address() -> Option<String> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            let ip = sin.ip();
            if !ip.is_loopback() {
                return Some(ip.to_string());
            }
        }
    }
    None
}

fn tls_setup(
    cfg: &ServerConfig,
) -> Result<(Arc<rustls::ServerConfig>, crate::auth::pki::Pki), ServerError> {
    let pki = crate::auth::pki::Pki::load_or_create(
        &cfg.tls_dir(),
        &crate::auth::pki::SanInputs::from_config(cfg)?,
    )
    .map_err(|e| ServerError::Pki(e.to_string()))?;
    let tls = pki
        .server_tls_config()
        .map_err(|e| ServerError::Pki(e.to_string()))?;
    Ok((tls, pki))
}

fn write_kubeconfigs(cfg: &ServerConfig, pki: &crate::auth::pki::Pki) -> Result<(), ServerError> {
    use crate::auth::kubeconfig;
    let contents = pki.admin_kubeconfig(&cfg.local_server_url());
    let write = |p: &Path, mode: u32| {
        kubeconfig::write_kubeconfig(p, &contents, mode)
            .map_err(|e| ServerError::Pki(e.to_string()))
    };
    write(&cfg.admin_kubeconfig_path(), 0o600)?;
    if let Some(p) = &cfg.write_kubeconfig {
        write(p, cfg.write_kubeconfig_mode)?;
        info!(path = %p.display(), "wrote kubeconfig");
    }
    Ok(())
}

/// Run the server until SIGTERM/SIGINT.
pub async fn run(cfg: ServerConfig) -> Result<(), ServerError> {
    let started = Instant::now();
    for w in &cfg.warnings {
        warn!("{w}");
    }
    std::fs::create_dir_all(cfg.server_dir())?;
    let (tls, pki) = tls_setup(&cfg)?;
    let cp = ControlPlane::open(&cfg)?;
    cp.bootstrap(&cfg).await?;
    // CRDs of earlier runs are served before the first request.
    let _crds = crate::controllers::crd::start(cp.state.registry.clone()).await;
    write_kubeconfigs(&cfg, &pki)?;
    let ctx = Arc::new(crate::controllers::Context {
        client: cp.client(),
        catalogue: cp.state.catalogue.clone(),
        settings: crate::controllers::Settings {
            service_cidr: cfg.service_cidr.clone(),
            node_monitor_grace_period: cfg.node_monitor_grace_period,
            ca_pem: pki.ca_pem().to_string(),
            storage_dir: cfg.data_dir.join("storage"),
        },
    });
    // ---- leader election: controllers and scheduler run only while leading ----
    use crate::controllers::leaderelection::{self as le, ElectionConfig, Work};
    let identity = le::identity(&cfg.server_dir());
    let _controllers = {
        let disabled = cfg.disable.clone();
        let work: Work = Arc::new(move || {
            let (ctx, disabled) = (ctx.clone(), disabled.clone());
            Box::pin(async move {
                let _running = crate::controllers::start(ctx, &disabled);
                std::future::pending::<()>().await
            })
        });
        let lease = ElectionConfig::new(le::CONTROLLER_MANAGER_LEASE, &identity);
        le::spawn(cp.client(), lease, work)
    };
    // ---- scheduler and simulated nodes (issue 4) ----
    let _scheduler = (!cfg.is_disabled("scheduler")).then(|| {
        let opts = crate::scheduler::SchedulerOptions {
            scoring: cfg.scheduler_scoring,
            ..Default::default()
        };
        let client = cp.client();
        let work: Work = Arc::new(move || {
            let (client, opts) = (client.clone(), opts.clone());
            Box::pin(async move {
                let _running = crate::scheduler::start(client, opts);
                std::future::pending::<()>().await
            })
        });
        let lease = ElectionConfig::new(le::SCHEDULER_LEASE, &identity);
        le::spawn(cp.client(), lease, work)
    });
    let _simulated_nodes = (cfg.simulate_nodes > 0).then(|| {
        let sim = crate::node::simulated::SimConfig::from_server(&cfg);
        let nodes = crate::node::simulated::SimulatedNodes::start(cp.client(), sim);
        (cp.state.resource_metrics).register("simulated", Arc::new(nodes.clone()));
        nodes
    });
    // ---- end scheduler and simulated nodes ----
    // ---- node agent (issue 5) ----
    let _agent = if cfg.is_disabled("agent") {
        None
    } else {
        match crate::node::agent::start_in_server(
            &cfg,
            cp.client(),
            &cp.state.streams,
            &cp.state.resource_metrics,
        ) {
            Ok(agent) => Some(agent),
            Err(e) => {
                tracing::error!("the node agent cannot start: {e}");
                None
            }
        }
    };
    // ---- end node agent ----

    let addr = SocketAddr::new(cfg.bind_address, cfg.https_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })?;
    info!(%addr, elapsed_ms = started.elapsed().as_millis() as u64, kubeconfig = %cfg.admin_kubeconfig_path().display(), "rk3s API server is ready");

    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            shutdown.cancel();
        });
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        tokio::select! {
            res = listener.accept() => {
                let (tcp, peer) = match res {
                    Ok(c) => c,
                    Err(e) => { warn!("accept: {e}"); continue; }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let router = cp.router.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => { tracing::debug!(%peer, "TLS handshake failed: {e}"); return; }
                        Err(_) => return,
                    };
                    let user = tls.get_ref().1.peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(|c| crate::auth::authn::user_from_cert(c.as_ref()));
                    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(Identity(user.clone()));
                        router.clone().oneshot(req.map(axum::body::Body::new))
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                    tokio::select! {
                        res = conn => { if let Err(e) = res { tracing::debug!(%peer, "connection: {e}"); } }
                        _ = shutdown.cancelled() => {}
                    }
                });
            }
            _ = shutdown.cancelled() => break,
        }
    }
    info!("shutting down");
    cp.state.shutting_down.store(true, Ordering::Release);
    cp.store.close().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
    use kube::api::{
        Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
    };

    fn temp_config() -> ServerConfig {
        let dir = std::env::temp_dir().join(format!("rk3s-cp-{}", uuid::Uuid::new_v4()));
        ServerConfig::new(dir, "test-node")
    }

    /// The in-memory kube::Client goes through the same router as kubectl:
    /// bootstrap objects, create/get/list/patch/watch/delete, Status errors.
    #[tokio::test]
    async fn in_memory_client_round_trip() {
        let cfg = temp_config();
        let cp = ControlPlane::open(&cfg).expect("open");
        cp.bootstrap(&cfg).await.expect("bootstrap");
        let client = cp.client();

        let nss: Api<Namespace> = Api::all(client.clone());
        let names: Vec<String> = nss
            .list(&ListParams::default())
            .await
            .expect("list ns")
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(
                names.iter().any(|n| n == want),
                "missing namespace {want} in {names:?}"
            );
        }
        let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
        let k = svcs.get("kubernetes").await.expect("kubernetes service");
        assert_eq!(
            k.spec.and_then(|s| s.cluster_ip).as_deref(),
            Some("10.43.0.1")
        );

        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let mut watch = cms
            .watch(&WatchParams::default(), "0")
            .await
            .expect("watch")
            .boxed();
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c1", "labels": {"app": "x"}}, "data": {"a": "1"}
        }))
        .expect("cm");
        let created = cms
            .create(&PostParams::default(), &cm)
            .await
            .expect("create");
        let rv1 = created.metadata.resource_version.clone().expect("rv");
        let err = cms
            .create(&PostParams::default(), &cm)
            .await
            .expect_err("duplicate");
        match err {
            kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
            other => panic!("unexpected {other:?}"),
        }
        let patched = cms
            .patch(
                "c1",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"b": "2"}})),
            )
            .await
            .expect("patch");
        assert_ne!(
            patched.metadata.resource_version.as_deref(),
            Some(rv1.as_str())
        );
        assert_eq!(
            patched
                .data
                .as_ref()
                .and_then(|d| d.get("b"))
                .map(String::as_str),
            Some("2")
        );
        let listed = cms
            .list(&ListParams::default().labels("app=x"))
            .await
            .expect("list");
        assert_eq!(listed.items.len(), 1);
        cms.delete("c1", &DeleteParams::default())
            .await
            .expect("delete");

        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(5), watch.try_next()).await {
                Ok(Ok(Some(WatchEvent::Added(_)))) => kinds.push("ADDED"),
                Ok(Ok(Some(WatchEvent::Modified(_)))) => kinds.push("MODIFIED"),
                Ok(Ok(Some(WatchEvent::Deleted(_)))) => kinds.push("DELETED"),
                Ok(Ok(Some(_))) => {}
                other => panic!("watch ended early: {other:?} after {kinds:?}"),
            }
        }
        assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
        cp.store.close().await;
        let _ = std::fs::remove_dir_all(&cfg.data_dir);
    }
}
