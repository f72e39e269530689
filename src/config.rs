//! Server configuration: flags, then `RK3S_<FLAG>` env, then the config file
//! (/etc/rk3s/config.yaml or `--config`); flags win over env over file.

use std::net::IpAddr;
use std::path::PathBuf;

/// Everything `rk3s server` needs, resolved.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub https_port: u16,
    pub write_kubeconfig: Option<PathBuf>,
    pub write_kubeconfig_mode: u32,
    pub tls_san: Vec<String>,
    pub node_name: String,
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub disable: Vec<String>,
    pub log_level: String,
}

impl ServerConfig {
    pub fn is_disabled(&self, component: &str) -> bool {
        self.disable.iter().any(|d| d == component)
    }
}
