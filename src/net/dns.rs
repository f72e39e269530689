//! A pod's /etc/resolv.conf and /etc/hosts, by the kubelet's rules.
//!
//! - dnsPolicy `ClusterFirst` (the default): the cluster DNS address,
//!   searches `<ns>.svc.<domain> svc.<domain> <domain>` then the host's,
//!   `options ndots:5`. A hostNetwork pod with ClusterFirst gets the host's
//!   configuration instead (that is what `ClusterFirstWithHostNet` is for).
//!   Without a cluster DNS address it falls back to the host's as well.
//! - `Default`: the host's resolv.conf (nameservers, searches, options).
//! - `None`: only what `dnsConfig` says.
//! - `dnsConfig` is appended to any of them: nameservers and searches
//!   without duplicates, options by name (the pod's value wins).
//! - Limits as upstream: 3 nameservers, 32 search domains, 2048 characters
//!   of search list; what is cut is reported as a warning.
//!
//! Pure functions: the caller reads the host's resolv.conf.

use std::fmt::Write as _;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{HostAlias, PodDNSConfig};

/// At most this many nameservers are written (glibc reads three).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains...
pub const MAX_SEARCHES: usize = 32;
/// ...and this many characters of them, spaces included.
pub const MAX_SEARCH_CHARS: usize = 2048;

/// A resolver configuration (the parts of resolv.conf we write).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parse resolv.conf text: every `nameserver`, the last `search` (or
    /// `domain`) line, every `options` line; comments dropped.
    pub fn parse(text: &str) -> ResolvConf {
        let mut rc = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => rc.nameservers.extend(fields.next().map(String::from)),
                Some("search") | Some("domain") => {
                    // A later search line replaces earlier ones, as in glibc.
                    rc.searches = fields
                        .filter(|s| *s != ".")
                        .map(|s| s.trim_end_matches('.').to_string())
                        .collect();
                }
                Some("options") => rc.options.extend(fields.map(String::from)),
                _ => {}
            }
        }
        rc
    }

    /// The file's text: search, nameservers, options (the order containerd
    /// writes them in).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            let _ = writeln!(out, "search {}", self.searches.join(" "));
        }
        for ns in &self.nameservers {
            let _ = writeln!(out, "nameserver {ns}");
        }
        if !self.options.is_empty() {
            let _ = writeln!(out, "options {}", self.options.join(" "));
        }
        out
    }
}

/// What decides a pod's resolv.conf.
#[derive(Clone, Debug)]
pub struct DnsInputs<'a> {
    /// spec.dnsPolicy ("" means ClusterFirst).
    pub policy: &'a str,
    pub host_network: bool,
    pub namespace: &'a str,
    /// The cluster domain, e.g. "cluster.local" ("" for none).
    pub cluster_domain: &'a str,
    /// The cluster DNS addresses (empty when there is none).
    pub cluster_dns: &'a [IpAddr],
    pub dns_config: Option<&'a PodDNSConfig>,
    /// The host's resolv.conf text (the node's `--resolv-conf`).
    pub host_resolv_conf: &'a str,
}

/// Which configuration a pod starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsType {
    Cluster,
    Host,
    None,
}

/// The kubelet's choice of configuration for a policy.
pub fn dns_type(policy: &str, host_network: bool, have_cluster_dns: bool) -> DnsType {
    let t = match policy {
        "None" => DnsType::None,
        "Default" => DnsType::Host,
        "ClusterFirstWithHostNet" => DnsType::Cluster,
        // ClusterFirst (and the empty default); a hostNetwork pod cannot use
        // the cluster's resolver by it, so it gets the host's.
        _ if host_network => DnsType::Host,
        _ => DnsType::Cluster,
    };
    if t == DnsType::Cluster && !have_cluster_dns {
        DnsType::Host
    } else {
        t
    }
}

/// The pod's resolv.conf text, and warnings about what did not fit.
pub fn render_resolv_conf(i: &DnsInputs<'_>) -> (String, Vec<String>) {
    let host = ResolvConf::parse(i.host_resolv_conf);
    let mut rc = match dns_type(i.policy, i.host_network, !i.cluster_dns.is_empty()) {
        DnsType::None => ResolvConf::default(),
        DnsType::Host => host,
        DnsType::Cluster => {
            let mut searches = Vec::new();
            if !i.cluster_domain.is_empty() {
                let d = i.cluster_domain;
                searches = vec![
                    format!("{}.svc.{d}", i.namespace),
                    format!("svc.{d}"),
                    d.to_string(),
                ];
            }
            searches.extend(host.searches);
            ResolvConf {
                nameservers: i.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
                searches: dedup(searches),
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(cfg) = i.dns_config {
        rc.nameservers
            .extend(cfg.nameservers.iter().flatten().cloned());
        rc.nameservers = dedup(std::mem::take(&mut rc.nameservers));
        rc.searches.extend(cfg.searches.iter().flatten().cloned());
        rc.searches = dedup(std::mem::take(&mut rc.searches));
        for opt in cfg.options.iter().flatten() {
            let Some(name) = opt.name.as_deref() else {
                continue;
            };
            let rendered = match &opt.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            };
            let existing = rc
                .options
                .iter()
                .position(|o| o.split(':').next() == Some(name));
            match existing {
                Some(pos) => rc.options[pos] = rendered,
                None => rc.options.push(rendered),
            }
        }
    }
    let warnings = fit_limits(&mut rc);
    (rc.render(), warnings)
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn fit_limits(rc: &mut ResolvConf) -> Vec<String> {
    let mut warnings = Vec::new();
    if rc.nameservers.len() > MAX_NAMESERVERS {
        let dropped = rc.nameservers.split_off(MAX_NAMESERVERS);
        warnings.push(format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {} (omitted: {})",
            rc.nameservers.join(" "),
            dropped.join(" ")
        ));
    }
    let mut chars = 0;
    let mut keep = 0;
    for (n, s) in rc.searches.iter().enumerate() {
        let add = s.len() + usize::from(n > 0);
        if n >= MAX_SEARCHES || chars + add > MAX_SEARCH_CHARS {
            break;
        }
        chars += add;
        keep = n + 1;
    }
    if keep < rc.searches.len() {
        rc.searches.truncate(keep);
        warnings.push(format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
            rc.searches.join(" ")
        ));
    }
    warnings
}

/// The pod's host name and domain as the kubelet makes them:
/// spec.hostname or the pod's name (at most 63 characters, no trailing
/// '-' or '.'), and `<subdomain>.<ns>.svc.<domain>` when a subdomain is set.
pub fn pod_hostname_and_domain(
    pod_name: &str,
    hostname: Option<&str>,
    subdomain: Option<&str>,
    namespace: &str,
    cluster_domain: &str,
) -> (String, Option<String>) {
    let name = match hostname.filter(|h| !h.is_empty()) {
        Some(h) => h.to_string(),
        None => {
            let cut: String = pod_name.chars().take(63).collect();
            cut.trim_end_matches(['-', '.']).to_string()
        }
    };
    let domain = subdomain
        .filter(|s| !s.is_empty())
        .map(|s| format!("{s}.{namespace}.svc.{cluster_domain}"));
    (name, domain)
}

/// A pod's /etc/hosts: the managed header, localhost lines, the pod's
/// addresses with its FQDN and host name, then spec.hostAliases.
pub fn render_hosts(
    pod_ips: &[IpAddr],
    hostname: &str,
    domain: Option<&str>,
    host_aliases: &[HostAlias],
) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file.\n");
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match domain {
            Some(d) => {
                let _ = writeln!(out, "{ip}\t{hostname}.{d}\t{hostname}");
            }
            None => {
                let _ = writeln!(out, "{ip}\t{hostname}");
            }
        }
    }
    out.push_str(&host_aliases_block(host_aliases));
    out
}

/// A hostNetwork pod's /etc/hosts: the node's own file under a header
/// saying so, then spec.hostAliases.
pub fn render_host_network_hosts(node_hosts: &str, host_aliases: &[HostAlias]) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (host network).\n");
    out.push_str(node_hosts);
    if !node_hosts.is_empty() && !node_hosts.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&host_aliases_block(host_aliases));
    out
}

fn host_aliases_block(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names = a.hostnames.clone().unwrap_or_default();
        let _ = writeln!(out, "{}\t{}", a.ip, names.join("\t"));
    }
    out
}

/// The host resolv.conf a node should hand to pods: /etc/resolv.conf, or
/// systemd-resolved's upstream file when /etc/resolv.conf only points at a
/// loopback stub (a pod cannot reach the host's 127.0.0.53), as k3s does.
pub fn host_resolv_conf_path() -> &'static str {
    const ETC: &str = "/etc/resolv.conf";
    const RESOLVED: &str = "/run/systemd/resolve/resolv.conf";
    let loopback_only = std::fs::read_to_string(ETC)
        .map(|t| {
            let rc = ResolvConf::parse(&t);
            !rc.nameservers.is_empty()
                && rc.nameservers.iter().all(|n| {
                    n.parse::<IpAddr>()
                        .map(|ip| ip.is_loopback())
                        .unwrap_or(false)
                })
        })
        .unwrap_or(false);
    if loopback_only && std::path::Path::new(RESOLVED).exists() {
        RESOLVED
    } else {
        ETC
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodDNSConfigOption;

    const HOST: &str = "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54 # second\nsearch corp.example lab.example.\noptions timeout:2 attempts:3\n";

    fn inputs<'a>(policy: &'a str, host_network: bool, dns: &'a [IpAddr]) -> DnsInputs<'a> {
        DnsInputs {
            policy,
            host_network,
            namespace: "shop",
            cluster_domain: "cluster.local",
            cluster_dns: dns,
            dns_config: None,
            host_resolv_conf: HOST,
        }
    }

    fn cluster_dns() -> Vec<IpAddr> {
        vec!["10.43.0.10".parse().unwrap()]
    }

    #[test]
    fn cluster_first() {
        let dns = cluster_dns();
        let (text, w) = render_resolv_conf(&inputs("ClusterFirst", false, &dns));
        assert_eq!(
            text,
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
        assert!(w.is_empty());
        // The empty policy is ClusterFirst.
        assert_eq!(render_resolv_conf(&inputs("", false, &dns)).0, text);
    }

    #[test]
    fn default_is_the_hosts() {
        let dns = cluster_dns();
        let (text, _) = render_resolv_conf(&inputs("Default", false, &dns));
        assert_eq!(
            text,
            "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:2 attempts:3\n"
        );
    }

    #[test]
    fn host_network_cluster_first_falls_back_to_host_unless_with_host_net() {
        let dns = cluster_dns();
        let host = render_resolv_conf(&inputs("Default", true, &dns)).0;
        assert_eq!(
            render_resolv_conf(&inputs("ClusterFirst", true, &dns)).0,
            host
        );
        let with = render_resolv_conf(&inputs("ClusterFirstWithHostNet", true, &dns)).0;
        assert!(with.contains("nameserver 10.43.0.10\n"), "{with}");
        assert!(with.contains("search shop.svc.cluster.local "), "{with}");
    }

    #[test]
    fn cluster_first_without_cluster_dns_uses_host() {
        let (text, _) = render_resolv_conf(&inputs("ClusterFirst", false, &[]));
        assert!(text.contains("nameserver 192.0.2.53"), "{text}");
        assert!(!text.contains("ndots"), "{text}");
    }

    #[test]
    fn none_takes_only_dns_config_and_dns_config_merges() {
        let dns = cluster_dns();
        let cfg = PodDNSConfig {
            nameservers: Some(vec!["1.2.3.4".into(), "10.43.0.10".into()]),
            searches: Some(vec![
                "ns1.svc.cluster-domain.example".into(),
                "svc.cluster.local".into(),
            ]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        };
        let mut i = inputs("None", false, &dns);
        i.dns_config = Some(&cfg);
        assert_eq!(
            render_resolv_conf(&i).0,
            "search ns1.svc.cluster-domain.example svc.cluster.local\nnameserver 1.2.3.4\nnameserver 10.43.0.10\noptions ndots:2 edns0\n"
        );
        let mut i = inputs("ClusterFirst", false, &dns);
        i.dns_config = Some(&cfg);
        assert_eq!(
            render_resolv_conf(&i).0,
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example ns1.svc.cluster-domain.example\nnameserver 10.43.0.10\nnameserver 1.2.3.4\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn limits_are_enforced_with_warnings() {
        let cfg = PodDNSConfig {
            nameservers: Some((1..=5).map(|n| format!("192.0.2.{n}")).collect()),
            searches: Some((0..40).map(|n| format!("d{n}.example")).collect()),
            options: None,
        };
        let mut i = inputs("None", false, &[]);
        i.dns_config = Some(&cfg);
        let (text, warnings) = render_resolv_conf(&i);
        assert_eq!(text.matches("nameserver ").count(), 3, "{text}");
        let search = text.lines().next().unwrap();
        assert_eq!(search.split_whitespace().count(), 1 + 32, "{search}");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("Nameserver limits were exceeded"));
    }

    #[test]
    fn hosts_file() {
        let ip: IpAddr = "10.42.0.5".parse().unwrap();
        let (name, domain) =
            pod_hostname_and_domain("web-0", None, Some("web"), "shop", "cluster.local");
        let text = render_hosts(&[ip], &name, domain.as_deref(), &[]);
        assert_eq!(
            text,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.42.0.5\tweb-0.web.shop.svc.cluster.local\tweb-0\n"
        );
        let aliases = vec![HostAlias {
            ip: "10.1.2.3".into(),
            hostnames: Some(vec!["foo.local".into(), "bar.local".into()]),
        }];
        let text = render_hosts(&[ip], "plain", None, &aliases);
        assert!(text.ends_with(
            "10.42.0.5\tplain\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"
        ), "{text}");
        let text = render_host_network_hosts("127.0.0.1 localhost\n", &aliases);
        assert!(
            text.starts_with(
                "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\n# Entries"
            ),
            "{text}"
        );
    }

    #[test]
    fn hostname_rules() {
        let long = "a".repeat(70);
        assert_eq!(
            pod_hostname_and_domain(&long, None, None, "d", "c").0.len(),
            63
        );
        let dashy = format!("{}-b", "a".repeat(62));
        assert_eq!(
            pod_hostname_and_domain(&dashy, None, None, "d", "c").0,
            "a".repeat(62)
        );
        assert_eq!(
            pod_hostname_and_domain("p", Some("h"), None, "d", "c"),
            ("h".to_string(), None)
        );
    }
}
