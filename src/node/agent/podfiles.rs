//! The files the agent writes for each pod and every container mounts:
//! /etc/hostname, /etc/hosts and /etc/resolv.conf, under
//! `<agent-dir>/pods/<uid>/`, rendered by `crate::net::dns` with the
//! kubelet's rules.

use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use tracing::warn;

use super::AgentConfig;
use crate::net::dns;

#[derive(Clone, Debug, Default)]
pub struct PodFiles {
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    pub hostname: Option<PathBuf>,
}

/// The pod's host name (spec.hostname or its name, cut as upstream).
pub fn hostname_of(pod: &Pod, config: &AgentConfig) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    dns::pod_hostname_and_domain(
        pod.metadata.name.as_deref().unwrap_or(""),
        spec.and_then(|s| s.hostname.as_deref()),
        spec.and_then(|s| s.subdomain.as_deref()),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        &config.cluster_domain,
    )
}

/// Write the pod's files; a file that cannot be written is left out (the
/// container then sees the image's own) with a warning.
pub fn write(
    config: &AgentConfig,
    pod: &Pod,
    uid: &str,
    pod_ip: Option<&str>,
    host_network: bool,
) -> PodFiles {
    let dir = config.pod_dir(uid);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        warn!(dir = %dir.display(), "cannot create the pod directory: {e}");
        return PodFiles::default();
    }
    let put = |name: &str, contents: &str| -> Option<PathBuf> {
        let p = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        // Atomic replace: a container may be reading it.
        match std::fs::write(&tmp, contents).and_then(|()| std::fs::rename(&tmp, &p)) {
            Ok(()) => Some(p),
            Err(e) => {
                warn!(path = %p.display(), "cannot write pod file: {e}");
                None
            }
        }
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let (hostname, domain) = hostname_of(pod, config);
    let aliases = spec.host_aliases.clone().unwrap_or_default();
    let hosts = if host_network {
        let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        dns::render_host_network_hosts(&node_hosts, &aliases)
    } else {
        let ips: Vec<IpAddr> = pod_ip.and_then(|ip| ip.parse().ok()).into_iter().collect();
        dns::render_hosts(&ips, &hostname, domain.as_deref(), &aliases)
    };
    let host_resolv = std::fs::read_to_string(dns::host_resolv_conf_path()).unwrap_or_default();
    let cluster_dns = [config.cluster_dns];
    let inputs = dns::DnsInputs {
        policy: spec.dns_policy.as_deref().unwrap_or(""),
        host_network,
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        cluster_domain: &config.cluster_domain,
        cluster_dns: &cluster_dns,
        dns_config: spec.dns_config.as_ref(),
        host_resolv_conf: &host_resolv,
    };
    let (resolv, warnings) = dns::render_resolv_conf(&inputs);
    for w in warnings {
        warn!(pod = ?pod.metadata.name, "resolv.conf: {w}");
    }
    PodFiles {
        hostname: put("hostname", &format!("{hostname}\n")),
        hosts: put("hosts", &hosts),
        resolv_conf: put("resolv.conf", &resolv),
    }
}
