//! Pod networking: a network namespace per pod on a bridge.
//!
//! Each pod gets a named network namespace (bind-mounted at
//! `<state-dir>/netns/<pod-key>`, which the runtime joins by path), a veth
//! pair whose host end is a port of the bridge (`rk3s0`, holding the
//! gateway: the first address of the node's podCIDR) and whose pod end is
//! `eth0` with an address from the node's IPAM and a default route via the
//! gateway. Egress to outside the cluster CIDR is masqueraded by an nftables
//! table of our own (`ip rk3s`); forwarding is on in the agent's namespace.
//!
//! State lives under the state dir (`<agent-dir>/net`): `ipam/` (one file
//! per address), `netns/` (the namespace mounts) and `network.json` (what
//! `cleanup_all` needs to undo it all without the agent's configuration).

pub mod dns;
pub mod ipam;
pub mod links;
pub mod netns;
pub mod nftables;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::config::Cidr;

pub use dns::{DnsInputs, render_hosts, render_resolv_conf};
pub use ipam::Ipam;

/// The default bridge name.
pub const DEFAULT_BRIDGE: &str = "rk3s0";
/// The name of the pod end of each veth pair.
pub const POD_IFNAME: &str = "eth0";
const NETWORK_FILE: &str = "network.json";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {op}: {message}")]
    Netlink { op: String, message: String },
    #[error("nftables: {0}")]
    Nftables(String),
    #[error("no free pod IP address left in {0}")]
    Exhausted(String),
    #[error("{0}")]
    Unsupported(String),
}

/// How a node's pod network is laid out.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// `<agent-dir>/net`.
    pub state_dir: PathBuf,
    /// The node's podCIDR (spec.podCIDR), e.g. 10.42.0.0/24.
    pub pod_cidr: Cidr,
    /// The whole cluster's pod range (masquerading stops at its edge).
    pub cluster_cidr: Cidr,
    pub service_cidr: Cidr,
    /// The bridge's name (`rk3s0`).
    pub bridge: String,
    /// The pods' MTU; None: that of the default route's interface.
    pub mtu: Option<u32>,
}

impl NetConfig {
    pub fn new(state_dir: PathBuf, pod_cidr: Cidr, cluster_cidr: Cidr, service_cidr: Cidr) -> Self {
        NetConfig {
            state_dir,
            pod_cidr,
            cluster_cidr,
            service_cidr,
            bridge: DEFAULT_BRIDGE.into(),
            mtu: None,
        }
    }
}

/// What a pod's sandbox got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNet {
    /// The namespace to join (a bind-mounted nsfs file).
    pub netns_path: PathBuf,
    pub ip: IpAddr,
    pub gateway: IpAddr,
    pub prefix_len: u8,
}

/// What `cleanup_all` reads back.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NetworkRecord {
    bridge: String,
    pod_cidr: String,
    cluster_cidr: String,
}

/// A node's pod network. Cheap to clone; clones share one lock, so set-ups
/// and tear-downs of one node never interleave.
#[derive(Clone, Debug)]
pub struct PodNetwork {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: NetConfig,
    ipam: Ipam,
    lock: tokio::sync::Mutex<()>,
    /// The nftables table and sysctls are in place (done once per process).
    host_ready: AtomicBool,
}

impl PodNetwork {
    pub fn new(cfg: NetConfig) -> Result<PodNetwork, NetError> {
        if !cfg.cluster_cidr.contains(cfg.pod_cidr.network()) {
            return Err(NetError::Unsupported(format!(
                "the pod CIDR {} is not inside the cluster CIDR {}",
                cfg.pod_cidr, cfg.cluster_cidr
            )));
        }
        if cfg.bridge.is_empty() || cfg.bridge.len() > 15 {
            return Err(NetError::Unsupported(format!(
                "bridge name {:?}: interface names have 1 to 15 characters",
                cfg.bridge
            )));
        }
        let ipam = Ipam::new(cfg.state_dir.join("ipam"), cfg.pod_cidr)?;
        Ok(PodNetwork {
            inner: Arc::new(Inner {
                cfg,
                ipam,
                lock: tokio::sync::Mutex::new(()),
                host_ready: AtomicBool::new(false),
            }),
        })
    }

    pub fn config(&self) -> &NetConfig {
        &self.inner.cfg
    }

    /// The bridge's address, the pods' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.inner.ipam.gateway()
    }

    /// Where `pod_key`'s namespace is (or would be) mounted.
    pub fn netns_path(&self, pod_key: &str) -> PathBuf {
        netns_dir(&self.inner.cfg.state_dir).join(sanitize(pod_key))
    }

    /// The address `pod_key` holds (for re-adopting a running pod).
    pub fn ip_of(&self, pod_key: &str) -> Option<IpAddr> {
        self.inner.ipam.get(pod_key).map(IpAddr::V4)
    }

    /// The pod's network: its namespace with `eth0` on the bridge. Safe to
    /// repeat (a restarted agent gets the same answer for a running pod).
    pub async fn setup(&self, pod_key: &str) -> Result<PodNet, NetError> {
        let _guard = self.inner.lock.lock().await;
        match self.setup_locked(pod_key).await {
            Ok(net) => Ok(net),
            Err(e) => {
                // Leave nothing half-made behind (an address held forever).
                if let Err(undo) = self.teardown_locked(pod_key).await {
                    tracing::warn!(pod = pod_key, "undoing a failed pod network set-up: {undo}");
                }
                Err(e)
            }
        }
    }

    async fn setup_locked(&self, pod_key: &str) -> Result<PodNet, NetError> {
        let cfg = &self.inner.cfg;
        let h = links::connect()?;
        let mtu = match cfg.mtu {
            Some(m) => m,
            None => detect_mtu(&h).await?,
        };
        let gateway = self.gateway();
        let prefix = cfg.pod_cidr.prefix_len();
        let bridge = links::ensure_bridge(&h, &cfg.bridge, gateway, prefix, mtu).await?;
        self.ensure_host().await?;

        let ip = self.inner.ipam.allocate(pod_key)?;
        let path = self.netns_path(pod_key);
        netns::create(&path)?;

        let host_if = host_veth_name(pod_key);
        if links::link_by_name(&h, &host_if).await?.is_none() {
            let ns = std::fs::File::open(&path).map_err(|e| NetError::Io {
                path: path.clone(),
                source: e,
            })?;
            links::add_veth_pair(&h, &host_if, POD_IFNAME, ns.as_raw_fd(), mtu).await?;
        }
        let port = links::link_by_name(&h, &host_if)
            .await?
            .ok_or_else(|| NetError::Netlink {
                op: format!("create veth {host_if}"),
                message: "it is not there after creating it".into(),
            })?
            .header
            .index;
        links::attach_to_bridge(&h, port, bridge).await?;

        netns::run_in(&path, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| NetError::Io {
                    path: PathBuf::from("tokio runtime"),
                    source: e,
                })?;
            rt.block_on(async move {
                let h = links::connect()?;
                links::configure_pod_side(&h, POD_IFNAME, ip, prefix, gateway).await
            })
        })?;
        Ok(PodNet {
            netns_path: path,
            ip: IpAddr::V4(ip),
            gateway: IpAddr::V4(gateway),
            prefix_len: prefix,
        })
    }

    /// Forwarding on, the nftables table and the state record written.
    async fn ensure_host(&self) -> Result<(), NetError> {
        if self.inner.host_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let cfg = self.inner.cfg.clone();
        tokio::task::spawn_blocking(move || -> Result<(), NetError> {
            std::fs::create_dir_all(&cfg.state_dir).map_err(|e| NetError::Io {
                path: cfg.state_dir.clone(),
                source: e,
            })?;
            let record = NetworkRecord {
                bridge: cfg.bridge.clone(),
                pod_cidr: cfg.pod_cidr.to_string(),
                cluster_cidr: cfg.cluster_cidr.to_string(),
            };
            let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
            ipam::write_atomic(&cfg.state_dir.join(NETWORK_FILE), &json)?;
            let fwd = Path::new("/proc/sys/net/ipv4/ip_forward");
            std::fs::write(fwd, b"1").map_err(|e| NetError::Io {
                path: fwd.to_path_buf(),
                source: e,
            })?;
            nftables::apply(&cfg.cluster_cidr, &cfg.bridge)
        })
        .await
        .map_err(|e| NetError::Nftables(format!("the set-up task failed: {e}")))??;
        self.inner.host_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Undo `setup`: the veth pair, the namespace mount, the address. Safe
    /// to repeat, and for pods that never had a network.
    pub async fn teardown(&self, pod_key: &str) -> Result<(), NetError> {
        let _guard = self.inner.lock.lock().await;
        self.teardown_locked(pod_key).await
    }

    async fn teardown_locked(&self, pod_key: &str) -> Result<(), NetError> {
        let h = links::connect()?;
        links::delete_link(&h, &host_veth_name(pod_key)).await?;
        netns::remove(&self.netns_path(pod_key))?;
        self.inner.ipam.release(pod_key)
    }

    /// The pod keys that have a network here (from the state on disk).
    pub fn pods(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.inner.ipam.list().into_iter().map(|(_, k)| k).collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

fn netns_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("netns")
}

/// A pod key as a file name (pod UIDs are already safe).
fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The host end of a pod's veth pair: `veth` + 10 hex digits of a hash of
/// the pod key (interface names have at most 15 characters).
pub fn host_veth_name(pod_key: &str) -> String {
    let digest = sha2::Sha256::digest(pod_key.as_bytes());
    format!("veth{}", &hex::encode(digest)[..10])
}

async fn detect_mtu(h: &rtnetlink::Handle) -> Result<u32, NetError> {
    if let Some(link) = links::default_route_link(h).await?
        && let Some(mtu) = links::mtu_of(h, link).await?
    {
        return Ok(mtu);
    }
    Ok(1500)
}

/// The node's own address: the first IPv4 address of the interface that
/// holds the default route (what the kubelet reports as InternalIP, and
/// hostNetwork pods' IP). Run in the agent's namespace.
pub async fn node_ip() -> Result<Option<Ipv4Addr>, NetError> {
    let h = links::connect()?;
    let Some(link) = links::default_route_link(&h).await? else {
        return Ok(None);
    };
    Ok(links::ipv4_addresses(&h, link).await?.into_iter().next())
}

/// Remove every trace of the pod network under `state_dir` (for
/// `rk3s killall`, after the pods' processes are gone): the pods'
/// namespaces and veths, the bridge, our nftables table, the IPAM state.
/// Goes on past failures and returns the first.
pub fn cleanup_all(state_dir: &Path) -> Result<(), NetError> {
    let state_dir = state_dir.to_path_buf();
    // Own thread and runtime: callable from sync code and from inside a
    // tokio runtime alike.
    std::thread::spawn(move || cleanup_all_blocking(&state_dir))
        .join()
        .map_err(|_| NetError::Unsupported("the clean-up thread panicked".into()))?
}

fn cleanup_all_blocking(state_dir: &Path) -> Result<(), NetError> {
    let mut first: Option<NetError> = None;
    let mut note = |r: Result<(), NetError>| {
        if let Err(e) = r
            && first.is_none()
        {
            first = Some(e);
        }
    };
    let record: Option<NetworkRecord> = std::fs::read(state_dir.join(NETWORK_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let bridge = record
        .as_ref()
        .map(|r| r.bridge.clone())
        .unwrap_or_else(|| DEFAULT_BRIDGE.to_string());

    // Pod keys: from IPAM files and from the namespace mounts.
    let mut keys: Vec<String> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(state_dir.join("ipam")) {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().parse::<Ipv4Addr>().is_ok()
                && let Ok(k) = std::fs::read_to_string(e.path())
            {
                keys.push(k.trim().to_string());
            }
        }
    }
    let mut mounts: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(netns_dir(state_dir)) {
        for e in dir.flatten() {
            keys.push(e.file_name().to_string_lossy().into_owned());
            mounts.push(e.path());
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NetError::Io {
            path: PathBuf::from("tokio runtime"),
            source: e,
        })?;
    note(rt.block_on(async {
        let h = links::connect()?;
        let mut first = None;
        // The veths of pods of ours, and anything else left on our bridge.
        let all = links::links(&h).await?;
        let bridge_index = all
            .iter()
            .find(|(_, n, _)| *n == bridge)
            .map(|(i, _, _)| *i);
        let mut names: Vec<String> = keys.iter().map(|k| host_veth_name(k)).collect();
        for (_, name, controller) in &all {
            if bridge_index.is_some() && *controller == bridge_index {
                names.push(name.clone());
            }
        }
        names.push(bridge.clone());
        for name in names {
            if let Err(e) = links::delete_link(&h, &name).await
                && first.is_none()
            {
                first = Some(e);
            }
        }
        first.map_or(Ok(()), Err)
    }));
    for m in mounts {
        note(netns::remove(&m));
    }
    note(nftables::delete_table());
    for sub in ["ipam", "netns"] {
        let p = state_dir.join(sub);
        match std::fs::remove_dir_all(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => note(Err(NetError::Io { path: p, source: e })),
        }
    }
    first.map_or(Ok(()), Err)
}
