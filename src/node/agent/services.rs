//! The node's real machinery behind the agent's service traits: the image
//! store (`crate::runtime::image`), pod networking (`crate::net`) and
//! volumes (`crate::node::volumes`). The runtime (`crate::runtime::local`)
//! implements `ContainerRuntime` itself.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use parking_lot::Mutex;
use tracing::warn;

use super::{
    ImagePullError, ImageService, NetworkService, PodNetworkInfo, ResolvedImage, VolumeService,
};
use crate::config::Cidr;
use crate::net::{NetConfig, PodNetwork};
use crate::node::volumes::VolumeManager;
use crate::runtime::cri::Mount;
use crate::runtime::image::{self, ImageError, ImageStore, PullPolicy};

/// The image store as the agent's image service.
pub struct LocalImages(pub ImageStore);

/// Registry credentials from the pod's kubernetes.io/dockerconfigjson (or
/// legacy dockercfg) pull secrets.
fn credentials(secrets: &[Secret]) -> Vec<image::RegistryCredential> {
    let mut out = Vec::new();
    for s in secrets {
        let data = s.data.clone().unwrap_or_default();
        for key in [".dockerconfigjson", ".dockercfg"] {
            if let Some(bytes) = data.get(key) {
                match image::credentials_from_docker_config_json(&bytes.0) {
                    Ok(c) => out.extend(c),
                    Err(e) => warn!(secret = ?s.metadata.name, "ignoring pull secret: {e}"),
                }
            }
        }
    }
    out
}

#[async_trait]
impl ImageService for LocalImages {
    async fn ensure(
        &self,
        reference: &str,
        policy: &str,
        pull_secrets: &[Secret],
    ) -> Result<ResolvedImage, ImagePullError> {
        let policy = PullPolicy::from_k8s(policy).unwrap_or(PullPolicy::IfNotPresent);
        match self
            .0
            .ensure(reference, policy, &credentials(pull_secrets))
            .await
        {
            Ok(p) => Ok(ResolvedImage {
                spec: p.spec,
                entrypoint: p.config.entrypoint,
                cmd: p.config.cmd,
                env: p.config.env,
                working_dir: p.config.working_dir,
                user: p.config.user,
                size: p.size,
                pulled: p.pulled,
                duration: p.duration,
            }),
            Err(e @ ImageError::NeverPull(_)) => Err(ImagePullError::NeverPull(e.to_string())),
            Err(e) => Err(ImagePullError::Pull(e.to_string())),
        }
    }

    fn present(&self, reference: &str) -> bool {
        self.0.get(reference).is_some()
    }
}

/// Pod networking on the node's bridge; made once the node has a podCIDR.
pub struct LocalNetwork {
    state_dir: PathBuf,
    cluster_cidr: Cidr,
    service_cidr: Cidr,
    net: Mutex<Option<PodNetwork>>,
}

impl LocalNetwork {
    pub fn new(state_dir: PathBuf, cluster_cidr: Cidr, service_cidr: Cidr) -> Self {
        LocalNetwork {
            state_dir,
            cluster_cidr,
            service_cidr,
            net: Mutex::new(None),
        }
    }

    fn get(&self) -> Result<PodNetwork, String> {
        self.net
            .lock()
            .clone()
            .ok_or_else(|| "the node has no podCIDR yet".to_string())
    }
}

#[async_trait]
impl NetworkService for LocalNetwork {
    fn set_pod_cidr(&self, cidr: &str) -> Result<(), String> {
        let pod_cidr: Cidr = cidr.parse().map_err(|e| format!("podCIDR {cidr}: {e}"))?;
        let cfg = NetConfig::new(
            self.state_dir.clone(),
            pod_cidr,
            self.cluster_cidr,
            self.service_cidr,
        );
        let net = PodNetwork::new(cfg).map_err(|e| e.to_string())?;
        *self.net.lock() = Some(net);
        Ok(())
    }

    async fn setup(&self, pod_uid: &str, _ns: &str, _name: &str) -> Result<PodNetworkInfo, String> {
        let net = self.get()?;
        let n = net.setup(pod_uid).await.map_err(|e| e.to_string())?;
        Ok(PodNetworkInfo {
            netns_path: n.netns_path,
            ip: n.ip,
        })
    }

    async fn teardown(&self, pod_uid: &str) -> Result<(), String> {
        match self.get() {
            Ok(net) => net.teardown(pod_uid).await.map_err(|e| e.to_string()),
            // Nothing was ever set up without a podCIDR.
            Err(_) => Ok(()),
        }
    }
}

/// The volume manager as the agent's volume service.
pub struct LocalVolumes(pub Arc<VolumeManager>);

#[async_trait]
impl VolumeService for LocalVolumes {
    async fn mount_pod_volumes(&self, pod: &Pod) -> Result<HashMap<String, PathBuf>, String> {
        self.0
            .mount_pod_volumes(pod)
            .await
            .map_err(|e| e.to_string())
    }

    async fn unmount_pod_volumes(&self, pod_uid: &str) {
        if let Err(e) = self.0.unmount_pod_volumes(pod_uid).await {
            warn!(%pod_uid, "unmounting volumes: {e}");
        }
    }

    fn container_mounts(
        &self,
        pod: &Pod,
        container: &Container,
        volumes: &HashMap<String, PathBuf>,
        env: &[(String, String)],
    ) -> Result<Vec<Mount>, String> {
        crate::node::volumes::container_mounts(pod, container, volumes, env)
            .map_err(|e| e.to_string())
    }
}
