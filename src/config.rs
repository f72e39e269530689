//! Server configuration: flags, then `RK3S_<FLAG>` env, then the config file
//! (/etc/rk3s/config.yaml or `--config`); flags win over env over file.
//! The resolution itself lives in `crate::cli`; this module holds the result
//! and the value types and checks shared by every source.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;

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
    /// The config file that was read, if any (for the start-up log).
    pub config_file: Option<PathBuf>,
    /// Things worth a warning once logging is up (unknown config-file keys).
    pub warnings: Vec<String>,
    /// How many simulated nodes (sim-0 ... sim-N-1) to run in process.
    pub simulate_nodes: u32,
    /// Each simulated node's cpu capacity (a quantity, e.g. "4" or "3500m").
    pub simulate_node_cpu: String,
    /// Each simulated node's memory capacity (a quantity, e.g. "16Gi").
    pub simulate_node_memory: String,
    /// Each simulated node's pod capacity.
    pub simulate_node_pods: u32,
    /// After this long without a heartbeat a node is marked Unknown.
    pub node_monitor_grace_period: std::time::Duration,
    /// How the scheduler scores resource use on nodes.
    pub scheduler_scoring: SchedulerScoring,
    /// Resources held back from pods on this node (`cpu=100m,memory=256Mi`),
    /// subtracted from capacity to give allocatable.
    pub system_reserved: String,
    /// The cluster DNS Service address pods' resolv.conf points at
    /// (ClusterFirst); empty means the tenth address of the service CIDR.
    pub cluster_dns: String,
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// Hard eviction thresholds, as the kubelet's `--eviction-hard`
    /// (`memory.available<100Mi,nodefs.available<10%`); validated.
    pub eviction_hard: String,
    /// Soft eviction thresholds (`--eviction-soft`), same syntax; validated
    /// with their grace periods.
    pub eviction_soft: String,
    /// `memory.available=1m30s,...`: how long each soft threshold must
    /// hold before pods are evicted for it.
    pub eviction_soft_grace_period: String,
    /// The most a pod evicted for a soft threshold gets to stop (seconds).
    pub eviction_max_pod_grace_period: i64,
    /// How long a pressure condition stays after its signal clears.
    pub eviction_pressure_transition_period: std::time::Duration,
    /// Disk use (percent) above which unused images are removed...
    pub image_gc_high_threshold: u8,
    /// ...down to this percent.
    pub image_gc_low_threshold: u8,
    /// Images used or imported more recently than this are never collected.
    pub image_minimum_gc_age: std::time::Duration,
}

/// The NodeResourcesFit scoring strategy (`--scheduler-scoring`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchedulerScoring {
    /// Spread pods: prefer the node with the most free resources (upstream's default).
    #[default]
    LeastAllocated,
    /// Bin-pack: prefer the fullest node that fits (small edge clusters).
    MostAllocated,
}

impl fmt::Display for SchedulerScoring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchedulerScoring::LeastAllocated => "LeastAllocated",
            SchedulerScoring::MostAllocated => "MostAllocated",
        })
    }
}

impl ServerConfig {
    /// The defaults of every flag, for a server keeping its state in `data_dir`
    /// (in-process tests and embedders; the CLI resolves its own).
    pub fn new(data_dir: PathBuf, node_name: impl Into<String>) -> Self {
        ServerConfig {
            data_dir,
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            https_port: DEFAULT_HTTPS_PORT,
            write_kubeconfig: None,
            write_kubeconfig_mode: DEFAULT_KUBECONFIG_MODE,
            tls_san: Vec::new(),
            node_name: node_name.into(),
            cluster_cidr: DEFAULT_CLUSTER_CIDR.into(),
            service_cidr: DEFAULT_SERVICE_CIDR.into(),
            disable: Vec::new(),
            log_level: DEFAULT_LOG_LEVEL.into(),
            config_file: None,
            warnings: Vec::new(),
            simulate_nodes: 0,
            simulate_node_cpu: DEFAULT_SIMULATE_NODE_CPU.into(),
            simulate_node_memory: DEFAULT_SIMULATE_NODE_MEMORY.into(),
            simulate_node_pods: DEFAULT_SIMULATE_NODE_PODS,
            node_monitor_grace_period: DEFAULT_NODE_MONITOR_GRACE_PERIOD,
            scheduler_scoring: SchedulerScoring::default(),
            system_reserved: String::new(),
            cluster_dns: String::new(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.into(),
            eviction_hard: DEFAULT_EVICTION_HARD.into(),
            eviction_soft: String::new(),
            eviction_soft_grace_period: String::new(),
            eviction_max_pod_grace_period: 0,
            eviction_pressure_transition_period: DEFAULT_EVICTION_PRESSURE_TRANSITION_PERIOD,
            image_gc_high_threshold: DEFAULT_IMAGE_GC_HIGH_THRESHOLD,
            image_gc_low_threshold: DEFAULT_IMAGE_GC_LOW_THRESHOLD,
            image_minimum_gc_age: DEFAULT_IMAGE_MINIMUM_GC_AGE,
        }
    }

    /// The directory of the node agent's state (images, pods, IPAM).
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }

    /// The cluster DNS address: `--cluster-dns`, or the tenth host address
    /// of the service CIDR (10.43.0.10 by default), as k3s.
    pub fn cluster_dns_ip(&self) -> Result<IpAddr, ConfigError> {
        if !self.cluster_dns.is_empty() {
            return self.cluster_dns.parse().map_err(|_| {
                invalid("cluster-dns", &self.cluster_dns, "not an IP address".into())
            });
        }
        let net = self.service_network()?;
        Ok(match net.network() {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) + 10)),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) + 10)),
        })
    }

    pub fn is_disabled(&self, component: &str) -> bool {
        self.disable.iter().any(|d| d == component)
    }

    /// The service CIDR, parsed (validated when the config was resolved).
    pub fn service_network(&self) -> Result<Cidr, ConfigError> {
        self.service_cidr
            .parse()
            .map_err(|reason| invalid("service-cidr", &self.service_cidr, reason))
    }

    /// The cluster (pod) CIDR, parsed.
    pub fn cluster_network(&self) -> Result<Cidr, ConfigError> {
        self.cluster_cidr
            .parse()
            .map_err(|reason| invalid("cluster-cidr", &self.cluster_cidr, reason))
    }

    /// The ClusterIP of the `kubernetes` Service in `default`: the first host
    /// address of the service CIDR, as upstream.
    pub fn first_service_ip(&self) -> Result<IpAddr, ConfigError> {
        let net = self.service_network()?;
        net.nth(1).ok_or_else(|| {
            invalid(
                "service-cidr",
                &self.service_cidr,
                "has no host addresses".into(),
            )
        })
    }

    /// `<data-dir>/server`: the control plane's state.
    pub fn server_dir(&self) -> PathBuf {
        self.data_dir.join("server")
    }

    /// `<data-dir>/server/tls`: the cluster PKI.
    pub fn tls_dir(&self) -> PathBuf {
        self.server_dir().join("tls")
    }

    /// `<data-dir>/server/cred/admin.kubeconfig`, always written at start.
    pub fn admin_kubeconfig_path(&self) -> PathBuf {
        self.server_dir().join("cred").join("admin.kubeconfig")
    }

    /// The URL local clients (the kubeconfig) use: loopback when the server
    /// listens on every address, else the bind address itself.
    pub fn local_server_url(&self) -> String {
        let host = match self.bind_address {
            IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V6(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        format!("https://{host}:{}", self.https_port)
    }
}

pub const DEFAULT_CONFIG_FILE: &str = "/etc/rk3s/config.yaml";
pub const DEFAULT_ROOT_DATA_DIR: &str = "/var/lib/rk3s";
pub const DEFAULT_ROOT_KUBECONFIG: &str = "/etc/rk3s/rk3s.yaml";
pub const DEFAULT_HTTPS_PORT: u16 = 6443;
pub const DEFAULT_KUBECONFIG_MODE: u32 = 0o600;
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
pub const DEFAULT_SIMULATE_NODE_CPU: &str = "4";
pub const DEFAULT_SIMULATE_NODE_MEMORY: &str = "16Gi";
pub const DEFAULT_SIMULATE_NODE_PODS: u32 = 110;
pub const DEFAULT_NODE_MONITOR_GRACE_PERIOD: std::time::Duration =
    std::time::Duration::from_secs(40);
/// The kubelet's default hard eviction thresholds.
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%";
/// The kubelet's default evictionPressureTransitionPeriod.
pub const DEFAULT_EVICTION_PRESSURE_TRANSITION_PERIOD: std::time::Duration =
    std::time::Duration::from_secs(300);
pub const DEFAULT_IMAGE_GC_HIGH_THRESHOLD: u8 = 85;
pub const DEFAULT_IMAGE_GC_LOW_THRESHOLD: u8 = 80;
pub const DEFAULT_IMAGE_MINIMUM_GC_AGE: std::time::Duration = std::time::Duration::from_secs(120);
/// Upstream caps simulated fleets nowhere; we stop at a size the pod CIDR
/// fallback range (100.64.0.0/10, 16,384 /24s) can address.
pub const MAX_SIMULATE_NODES: u32 = 16_000;

/// Why a configuration could not be resolved. Every message names the flag,
/// env variable or file key the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A command-line usage problem, or `--help` / `--version` (clap renders these).
    #[error("{0}")]
    Usage(#[from] clap::Error),
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("invalid value {value:?} for {origin}: {reason}")]
    Invalid {
        origin: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error(
        "no default data directory: HOME is not set and the user has no home directory; set --data-dir"
    )]
    NoDataDir,
}

pub(crate) fn invalid(origin: &str, value: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.into(),
        value: value.into(),
        reason,
    }
}

/// An IP network in CIDR notation. Parsing masks host bits the way Go's
/// `net.ParseCIDR` does (so `10.43.0.1/16` is `10.43.0.0/16`), as k3s accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    fn bits(&self) -> u8 {
        if self.network.is_ipv4() { 32 } else { 128 }
    }

    /// How many host bits the network has.
    pub fn host_bits(&self) -> u8 {
        self.bits() - self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                mask(u32::from(a).into(), 32, self.prefix) == u32::from(n) as u128
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                mask(u128::from(a), 128, self.prefix) == u128::from(n)
            }
            _ => false,
        }
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The `n`th address of the network (0 is the network address itself),
    /// or None past its end.
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let host_bits = self.host_bits();
        if host_bits < 128 && n >> host_bits != 0 {
            return None;
        }
        Some(match self.network {
            IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(u32::from(ip) | n as u32)),
            IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(u128::from(ip) | n)),
        })
    }
}

fn mask(addr: u128, bits: u8, prefix: u8) -> u128 {
    let host_bits = bits - prefix;
    if host_bits >= 128 {
        0
    } else {
        addr >> host_bits << host_bits
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| "not a CIDR: expected ADDRESS/PREFIX, e.g. 10.43.0.0/16".to_string())?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 =
            prefix.parse().ok().filter(|p| *p <= bits).ok_or_else(|| {
                format!("prefix length {prefix:?} is not a number from 0 to {bits}")
            })?;
        let network = match ip {
            IpAddr::V4(a) => {
                IpAddr::V4(Ipv4Addr::from(mask(u32::from(a).into(), 32, prefix) as u32))
            }
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask(a.into(), 128, prefix))),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The service CIDR: upstream refuses ranges with more than 20 host bits
/// (IPv4 /12, IPv6 /108), and it needs room for the `kubernetes` Service.
pub fn parse_service_cidr(s: &str) -> Result<Cidr, String> {
    let cidr: Cidr = s.trim().parse()?;
    if cidr.host_bits() > 20 {
        let min = cidr.bits() - 20;
        return Err(format!(
            "the range is too large: the prefix must be /{min} or longer"
        ));
    }
    if cidr.host_bits() < 3 {
        return Err("the range is too small: it needs at least 8 addresses".into());
    }
    Ok(cidr)
}

/// The cluster (pod) CIDR: each node gets a /24 (IPv4) or /64 (IPv6) of it.
pub fn parse_cluster_cidr(s: &str) -> Result<Cidr, String> {
    let cidr: Cidr = s.trim().parse()?;
    let node_mask = if cidr.network.is_ipv4() { 24 } else { 64 };
    if cidr.prefix > node_mask {
        return Err(format!(
            "the range is too small: nodes get /{node_mask} subnets of it, so the prefix must be /{node_mask} or shorter"
        ));
    }
    Ok(cidr)
}

/// A file mode as an octal string, like k3s's `--write-kubeconfig-mode`
/// ("0600", "644", "0o640").
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("not an octal file mode like 0600 or 0644".into());
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err("file modes go up to 0777".into()),
    }
}

pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("not a port number from 1 to 65535".into()),
    }
}

pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| "not an IP address".to_string())
}

/// A `tracing` filter: a level ("info", "debug") or directives ("rk3s=debug,info").
pub fn parse_log_level(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty; use a level such as info or debug".into());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(t)
        .map(|_| t.to_string())
        .map_err(|e| {
            format!("not a log level or filter ({e}); use e.g. info, debug or rk3s=debug,info")
        })
}

/// `--simulate-nodes`: a count from 0 to [`MAX_SIMULATE_NODES`].
pub fn parse_simulate_nodes(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= MAX_SIMULATE_NODES => Ok(n),
        _ => Err(format!("not a node count from 0 to {MAX_SIMULATE_NODES}")),
    }
}

/// A positive resource quantity such as `4`, `3500m` or `16Gi`, kept as written.
/// `--eviction-hard`: a list of `signal<quantity|percent%` (see
/// `node::agent::eviction::Thresholds`), kept as written once valid.
pub fn parse_eviction_hard(s: &str) -> Result<String, String> {
    crate::node::agent::eviction::Thresholds::parse(s)?;
    Ok(s.trim().to_string())
}

/// `--eviction-soft-grace-period`: `signal=duration` pairs, kept as
/// written once valid.
pub fn parse_eviction_grace_periods(s: &str) -> Result<String, String> {
    crate::node::agent::eviction::parse_grace_periods(s)?;
    Ok(s.trim().to_string())
}

/// `--eviction-max-pod-grace-period`: whole seconds, not negative.
pub fn parse_grace_seconds(s: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| "must be a whole number of seconds, 0 or more".to_string())
}

/// An image GC threshold: a whole percent, 0 to 100.
pub fn parse_percent(s: &str) -> Result<u8, String> {
    s.trim()
        .trim_end_matches('%')
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| "must be a whole percent from 0 to 100".to_string())
}

pub fn parse_positive_quantity(s: &str) -> Result<String, String> {
    let t = s.trim();
    match crate::registry::strategy::kinds::quantity::parse(t) {
        Ok(q) if q.0 > 0 => Ok(t.to_string()),
        Ok(_) => Err("must be greater than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A positive pod count.
pub fn parse_pod_count(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("not a positive number of pods".into()),
    }
}

/// A Go-style duration (`40s`, `1m30s`, `500ms`, `2h`); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    const HELP: &str = "not a duration such as 40s, 1m30s or 500ms";
    if t.is_empty() {
        return Err(HELP.into());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| HELP.to_string())?;
        let value: f64 = rest[..num_len].parse().map_err(|_| HELP.to_string())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(HELP.into()),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if !total.is_finite() || total > 1e9 {
        return Err(HELP.into());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// A grace period: a duration of at least one second.
pub fn parse_grace_period(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

/// `--scheduler-scoring`: LeastAllocated or MostAllocated (case-insensitive).
pub fn parse_scheduler_scoring(s: &str) -> Result<SchedulerScoring, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "leastallocated" => Ok(SchedulerScoring::LeastAllocated),
        "mostallocated" => Ok(SchedulerScoring::MostAllocated),
        _ => Err("must be LeastAllocated or MostAllocated".into()),
    }
}

/// A node name must be a DNS-1123 subdomain, as upstream requires of Node
/// objects; like the kubelet's host name override it is lowercased first.
pub fn parse_node_name(s: &str) -> Result<String, String> {
    let name = s.trim().to_ascii_lowercase();
    if is_dns1123_subdomain(&name) {
        Ok(name)
    } else {
        Err("a node name must be a lowercase DNS-1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters, starting and ending alphanumeric)".into())
    }
}

/// A `--tls-san` entry: an IP address or a DNS name (a leading `*.` wildcard allowed).
pub fn parse_san(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.parse::<IpAddr>().is_ok() {
        return Ok(t.to_string());
    }
    let name = t.strip_prefix("*.").unwrap_or(t);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.is_empty() && t.len() <= 253 && name.split('.').all(label_ok) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err("not an IP address or DNS name".into())
    }
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(ok_char)
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            b.first().is_some_and(alnum) && b.last().is_some_and(alnum)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_masks_and_indexes() {
        let c: Cidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert_eq!(c.nth(1), Some("10.43.0.1".parse().unwrap()));
        assert_eq!(c.nth(65535), Some("10.43.255.255".parse().unwrap()));
        assert_eq!(c.nth(65536), None);
        assert!(c.contains("10.43.200.1".parse().unwrap()));
        assert!(!c.contains("10.44.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let v6: Cidr = "fd00:43::5/112".parse().unwrap();
        assert_eq!(v6.to_string(), "fd00:43::/112");
        assert_eq!(v6.nth(1), Some("fd00:43::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.168.1.1".parse().unwrap()));
        assert!(all.overlaps(&c));
        for bad in [
            "10.43.0.0",
            "10.43.0.0/33",
            "10.43.0/16",
            "x/8",
            "10.0.0.0/-1",
            "::/129",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn service_and_cluster_cidr_limits() {
        assert!(parse_service_cidr("10.43.0.0/16").is_ok());
        assert!(parse_service_cidr("10.0.0.0/12").is_ok());
        assert!(
            parse_service_cidr("10.0.0.0/11")
                .unwrap_err()
                .contains("/12")
        );
        assert!(
            parse_service_cidr("10.0.0.0/30")
                .unwrap_err()
                .contains("too small")
        );
        assert!(parse_service_cidr("fd00::/108").is_ok());
        assert!(parse_cluster_cidr("10.42.0.0/16").is_ok());
        assert!(
            parse_cluster_cidr("10.42.0.0/25")
                .unwrap_err()
                .contains("/24")
        );
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o640"), Ok(0o640));
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("rw-r--r--").is_err());
        assert!(parse_mode("").is_err());
        assert!(parse_mode("01777").is_err());
    }

    #[test]
    fn names_and_sans() {
        assert!(parse_node_name("node-1.example").is_ok());
        assert_eq!(parse_node_name("Edge-1").unwrap(), "edge-1");
        assert!(parse_node_name("node_1").is_err());
        assert!(parse_node_name("-a").is_err());
        assert_eq!(
            parse_san(" Master.Example.com ").unwrap(),
            "master.example.com"
        );
        assert_eq!(parse_san("*.apps.local").unwrap(), "*.apps.local");
        assert_eq!(parse_san("fd00::1").unwrap(), "fd00::1");
        assert!(parse_san("a b").is_err());
        assert!(parse_san("").is_err());
    }

    #[test]
    fn log_levels() {
        assert_eq!(parse_log_level("debug").unwrap(), "debug");
        assert!(parse_log_level("rk3s=debug,info").is_ok());
        assert!(parse_log_level("").is_err());
        assert!(parse_log_level("rk3s=loud").is_err());
    }

    #[test]
    fn simulation_and_scheduler_settings() {
        assert_eq!(parse_simulate_nodes("0"), Ok(0));
        assert_eq!(parse_simulate_nodes(" 100 "), Ok(100));
        assert!(parse_simulate_nodes("-1").is_err());
        assert!(parse_simulate_nodes("99999").is_err());
        assert_eq!(parse_positive_quantity("3500m").unwrap(), "3500m");
        assert_eq!(parse_positive_quantity("16Gi").unwrap(), "16Gi");
        assert!(parse_positive_quantity("0").is_err());
        assert!(parse_positive_quantity("lots").is_err());
        assert_eq!(parse_pod_count("110"), Ok(110));
        assert!(parse_pod_count("0").is_err());
        use std::time::Duration;
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_grace_period("500ms").is_err());
        assert_eq!(
            parse_scheduler_scoring("mostallocated"),
            Ok(SchedulerScoring::MostAllocated)
        );
        assert_eq!(
            parse_scheduler_scoring("LeastAllocated"),
            Ok(SchedulerScoring::LeastAllocated)
        );
        assert!(parse_scheduler_scoring("Random").is_err());
    }

    #[test]
    fn derived_paths_and_urls() {
        let mut c = ServerConfig::new("/d".into(), "n1");
        assert_eq!(
            c.first_service_ip().unwrap(),
            "10.43.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            c.admin_kubeconfig_path(),
            PathBuf::from("/d/server/cred/admin.kubeconfig")
        );
        assert_eq!(c.local_server_url(), "https://127.0.0.1:6443");
        c.bind_address = "fd00::2".parse().unwrap();
        c.https_port = 7443;
        assert_eq!(c.local_server_url(), "https://[fd00::2]:7443");
    }
}
