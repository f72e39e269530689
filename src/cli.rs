//! The `rk3s` command line: subcommands and the resolution of `rk3s server`'s
//! settings from flags, `RK3S_<FLAG>` env variables and the YAML config file
//! (flags win over env, env over the file, the file over built-in defaults).
//!
//! Env and file values go through the same parsers as flags, so each source
//! gets the same checks, and errors name where the bad value came from.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Deserialize;

use crate::config::{self, ConfigError, ServerConfig, invalid};

/// What the command line asks rk3s to do, fully resolved.
#[derive(Debug)]
pub enum Command {
    /// Run the control plane and the node agent in this process.
    Server(Box<ServerConfig>),
    /// `rk3s image ...`: the arguments after `image`.
    Image(Vec<String>),
    /// `rk3s check-config ...`.
    CheckConfig(Vec<String>),
    /// `rk3s killall ...`.
    Killall(Vec<String>),
    /// `rk3s shim ...` (internal).
    Shim(Vec<String>),
}

/// Parse the process's arguments, env and config file; on `--help`,
/// `--version`, a usage error or a bad setting print the message and exit.
pub fn parse() -> Command {
    match try_parse_from(std::env::args_os(), &Host::current()) {
        Ok(command) => command,
        Err(ConfigError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("rk3s: error: {e}");
            std::process::exit(1)
        }
    }
}

/// Resolve `rk3s server`'s settings from a full argv (`["rk3s", "server", ...]`),
/// the process env and the config file.
pub fn server_config_from(args: &[String]) -> Result<ServerConfig, ConfigError> {
    match try_parse_from(args, &Host::current())? {
        Command::Server(config) => Ok(*config),
        _ => Err(ConfigError::Conflict("not a `server` command line".into())),
    }
}

/// Like [`parse`], with the facts that defaults depend on given explicitly.
pub fn try_parse_from<I, T>(args: I, host: &Host) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command {
        CliCommand::Server(flags) => Ok(Command::Server(Box::new(resolve_server(&flags, host)?))),
        CliCommand::Image(p) => Ok(Command::Image(p.args)),
        CliCommand::CheckConfig(p) => Ok(Command::CheckConfig(p.args)),
        CliCommand::Killall(p) => Ok(Command::Killall(p.args)),
        CliCommand::Shim(p) => Ok(Command::Shim(p.args)),
    }
}

/// The clap command, with each server flag's env variable shown in `--help`.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("server", |server| {
        server.mut_args(|arg| {
            let env = env_name(arg.get_id().as_str());
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            arg.help(format!("{help} [env: {env}]"))
        })
    })
}

/// The facts that defaults depend on, gathered once (injectable for tests).
#[derive(Clone, Debug)]
pub struct Host {
    pub is_root: bool,
    pub home: Option<PathBuf>,
    /// The host name, lowercased (the default node name, as k3s).
    pub hostname: String,
    /// The `RK3S_*` environment variables.
    pub env: BTreeMap<String, String>,
    /// The config file read when neither `--config` nor `RK3S_CONFIG` names one.
    pub default_config: PathBuf,
}

impl Host {
    pub fn current() -> Host {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("RK3S_"))
            .collect();
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok()??;
                Some(user.dir)
            });
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Host {
            is_root: nix::unistd::geteuid().is_root(),
            home,
            hostname,
            env,
            default_config: PathBuf::from(config::DEFAULT_CONFIG_FILE),
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "rk3s",
    version,
    about = "rk3s: a Kubernetes distribution in one binary",
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

// Parsed once per process: the size difference between variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum CliCommand {
    /// Run a single-node cluster: the API server on SQLite and (later) the
    /// controllers, scheduler and node agent.
    #[command(args_override_self = true)]
    Server(ServerFlags),
    /// Manage the node's image store: import, ls, rm.
    #[command(disable_help_flag = true)]
    Image(Passthrough),
    /// Say what this kernel and system lack for running pods.
    #[command(name = "check-config", disable_help_flag = true)]
    CheckConfig(Passthrough),
    /// Stop every pod of this node and clean up its mounts, interfaces and cgroups.
    #[command(disable_help_flag = true)]
    Killall(Passthrough),
    /// The per-pod shim (started by the node agent, not by hand).
    #[command(hide = true, disable_help_flag = true)]
    Shim(Passthrough),
}

/// The arguments of a subcommand that parses its own (its module owns them).
#[derive(Args, Debug)]
struct Passthrough {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `rk3s server`'s flags. Every one is optional here: what is not on the
/// command line comes from env, the config file or the default, in that order.
#[derive(Args, Debug, Default)]
struct ServerFlags {
    /// YAML file of settings keyed by flag name (e.g. `https-port: 7443`) [default: /etc/rk3s/config.yaml]
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// Where rk3s keeps its state [default: /var/lib/rk3s as root, ~/.local/share/rk3s otherwise]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Address the API server listens on [default: 0.0.0.0]
    #[arg(long, value_name = "IP")]
    bind_address: Option<String>,
    /// Port the API server listens on [default: 6443]
    #[arg(long, value_name = "PORT")]
    https_port: Option<String>,
    /// Also write the admin kubeconfig to this file ("" for none) [default: /etc/rk3s/rk3s.yaml as root, none otherwise]
    #[arg(long, value_name = "FILE")]
    write_kubeconfig: Option<String>,
    /// File mode of --write-kubeconfig, in octal [default: 0600]
    #[arg(long, value_name = "MODE")]
    write_kubeconfig_mode: Option<String>,
    /// Another host name or IP for the serving certificate (repeatable)
    #[arg(long, value_name = "NAME")]
    tls_san: Vec<String>,
    /// This node's name [default: the host name]
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// The pod network [default: 10.42.0.0/16]
    #[arg(long, value_name = "CIDR")]
    cluster_cidr: Option<String>,
    /// The Service ClusterIP range [default: 10.43.0.0/16]
    #[arg(long, value_name = "CIDR")]
    service_cidr: Option<String>,
    /// Do not run this component (repeatable)
    #[arg(long, value_name = "COMPONENT")]
    disable: Vec<String>,
    /// Log level or tracing filter, e.g. debug or rk3s=debug,info [default: info]
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Run N simulated nodes (sim-0 ... sim-N-1) that run scheduled pods at once, for tests and benchmarks [default: 0]
    #[arg(long, value_name = "N")]
    simulate_nodes: Option<String>,
    /// Each simulated node's cpu capacity [default: 4]
    #[arg(long, value_name = "QUANTITY")]
    simulate_node_cpu: Option<String>,
    /// Each simulated node's memory capacity [default: 16Gi]
    #[arg(long, value_name = "QUANTITY")]
    simulate_node_memory: Option<String>,
    /// Each simulated node's pod capacity [default: 110]
    #[arg(long, value_name = "N")]
    simulate_node_pods: Option<String>,
    /// How long a node may go without a heartbeat before it is marked Unknown [default: 40s]
    #[arg(long, value_name = "DURATION")]
    node_monitor_grace_period: Option<String>,
    /// How the scheduler scores node resources: LeastAllocated (spread) or MostAllocated (bin-pack) [default: LeastAllocated]
    #[arg(long, value_name = "STRATEGY")]
    scheduler_scoring: Option<String>,
    /// Resources held back from pods, e.g. cpu=100m,memory=256Mi [default: none]
    #[arg(long, value_name = "LIST")]
    system_reserved: Option<String>,
    /// The cluster DNS address in pods' resolv.conf [default: the tenth address of --service-cidr]
    #[arg(long, value_name = "IP")]
    cluster_dns: Option<String>,
    /// The cluster's DNS domain [default: cluster.local]
    #[arg(long, value_name = "DOMAIN")]
    cluster_domain: Option<String>,
    /// Hard eviction thresholds, e.g. memory.available<100Mi,nodefs.available<10% [default: memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%]
    #[arg(long, value_name = "LIST")]
    eviction_hard: Option<String>,
    /// Soft eviction thresholds, same syntax; each needs a grace period [default: none]
    #[arg(long, value_name = "LIST")]
    eviction_soft: Option<String>,
    /// How long each soft threshold must hold before pods are evicted, e.g. memory.available=1m30s [default: none]
    #[arg(long, value_name = "LIST")]
    eviction_soft_grace_period: Option<String>,
    /// The most seconds a pod evicted for a soft threshold gets to stop [default: 0]
    #[arg(long, value_name = "SECONDS")]
    eviction_max_pod_grace_period: Option<String>,
    /// How long a node pressure condition stays after its signal clears [default: 5m]
    #[arg(long, value_name = "DURATION")]
    eviction_pressure_transition_period: Option<String>,
    /// Disk use percent above which unused images are removed [default: 85]
    #[arg(long, value_name = "PERCENT")]
    image_gc_high_threshold: Option<String>,
    /// Disk use percent image garbage collection frees down to [default: 80]
    #[arg(long, value_name = "PERCENT")]
    image_gc_low_threshold: Option<String>,
    /// Images used or imported more recently are not garbage-collected [default: 2m]
    #[arg(long, value_name = "DURATION")]
    image_minimum_gc_age: Option<String>,
}

/// The settings a config file may hold for `server`, by flag name.
const SERVER_KEYS: &[&str] = &[
    "data-dir",
    "bind-address",
    "https-port",
    "write-kubeconfig",
    "write-kubeconfig-mode",
    "tls-san",
    "node-name",
    "cluster-cidr",
    "service-cidr",
    "disable",
    "log-level",
    "simulate-nodes",
    "simulate-node-cpu",
    "simulate-node-memory",
    "simulate-node-pods",
    "node-monitor-grace-period",
    "scheduler-scoring",
    "system-reserved",
    "cluster-dns",
    "cluster-domain",
    "eviction-hard",
    "eviction-soft",
    "eviction-soft-grace-period",
    "eviction-max-pod-grace-period",
    "eviction-pressure-transition-period",
    "image-gc-high-threshold",
    "image-gc-low-threshold",
    "image-minimum-gc-age",
];

/// Settings that take several values: repeated flags, comma-separated env
/// values, YAML lists (or comma-separated strings) in the file.
const MULTI_KEYS: &[&str] = &["tls-san", "disable"];

/// `data-dir` (or the clap id `data_dir`) -> `RK3S_DATA_DIR`.
pub fn env_name(key: &str) -> String {
    format!("RK3S_{}", key.replace('-', "_").to_ascii_uppercase())
}

impl ServerFlags {
    /// The values given on the command line, by flag name.
    fn given(&self) -> BTreeMap<&'static str, Vec<String>> {
        let singles = [
            ("data-dir", &self.data_dir),
            ("bind-address", &self.bind_address),
            ("https-port", &self.https_port),
            ("write-kubeconfig", &self.write_kubeconfig),
            ("write-kubeconfig-mode", &self.write_kubeconfig_mode),
            ("node-name", &self.node_name),
            ("cluster-cidr", &self.cluster_cidr),
            ("service-cidr", &self.service_cidr),
            ("log-level", &self.log_level),
            ("simulate-nodes", &self.simulate_nodes),
            ("simulate-node-cpu", &self.simulate_node_cpu),
            ("simulate-node-memory", &self.simulate_node_memory),
            ("simulate-node-pods", &self.simulate_node_pods),
            ("node-monitor-grace-period", &self.node_monitor_grace_period),
            ("scheduler-scoring", &self.scheduler_scoring),
            ("system-reserved", &self.system_reserved),
            ("cluster-dns", &self.cluster_dns),
            ("cluster-domain", &self.cluster_domain),
            ("eviction-hard", &self.eviction_hard),
            ("eviction-soft", &self.eviction_soft),
            (
                "eviction-soft-grace-period",
                &self.eviction_soft_grace_period,
            ),
            (
                "eviction-max-pod-grace-period",
                &self.eviction_max_pod_grace_period,
            ),
            (
                "eviction-pressure-transition-period",
                &self.eviction_pressure_transition_period,
            ),
            ("image-gc-high-threshold", &self.image_gc_high_threshold),
            ("image-gc-low-threshold", &self.image_gc_low_threshold),
            ("image-minimum-gc-age", &self.image_minimum_gc_age),
        ];
        let mut given: BTreeMap<&'static str, Vec<String>> = singles
            .into_iter()
            .filter_map(|(k, v)| Some((k, vec![v.clone()?])))
            .collect();
        for (k, v) in [("tls-san", &self.tls_san), ("disable", &self.disable)] {
            if !v.is_empty() {
                given.insert(k, v.clone());
            }
        }
        given
    }
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy)]
enum Origin<'a> {
    Flag,
    Env,
    File(&'a Path),
}

impl Origin<'_> {
    fn describe(self, key: &str) -> String {
        match self {
            Origin::Flag => format!("--{key}"),
            Origin::Env => env_name(key),
            Origin::File(path) => format!("{key} in {}", path.display()),
        }
    }
}

/// The three sources, each a map from flag name to raw values.
struct Layers<'a> {
    flags: BTreeMap<&'static str, Vec<String>>,
    env: BTreeMap<&'static str, Vec<String>>,
    file: BTreeMap<String, Vec<String>>,
    file_path: Option<&'a Path>,
}

impl<'a> Layers<'a> {
    /// The raw values of `key` from the strongest source that has it.
    fn raw(&self, key: &str) -> Option<(&[String], Origin<'a>)> {
        if let Some(v) = self.flags.get(key) {
            return Some((v, Origin::Flag));
        }
        if let Some(v) = self.env.get(key) {
            return Some((v, Origin::Env));
        }
        match (self.file.get(key), self.file_path) {
            (Some(v), Some(path)) => Some((v, Origin::File(path))),
            _ => None,
        }
    }

    /// One value (the last, when a flag is repeated), parsed.
    fn one<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let Some((values, origin)) = self.raw(key) else {
            return Ok(None);
        };
        let Some(value) = values.last() else {
            return Ok(None);
        };
        parse(value)
            .map(Some)
            .map_err(|reason| invalid(&origin.describe(key), value, reason))
    }

    /// Every value, split on commas, parsed; empty items dropped, duplicates removed.
    fn many<T: PartialEq>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        let Some((values, origin)) = self.raw(key) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let parsed =
                parse(item).map_err(|reason| invalid(&origin.describe(key), item, reason))?;
            if !out.contains(&parsed) {
                out.push(parsed);
            }
        }
        Ok(out)
    }
}

fn resolve_server(flags: &ServerFlags, host: &Host) -> Result<ServerConfig, ConfigError> {
    let env: BTreeMap<&'static str, Vec<String>> = SERVER_KEYS
        .iter()
        .filter_map(|key| {
            let value = host.env.get(&env_name(key)).filter(|v| !v.is_empty())?;
            Some((*key, vec![value.clone()]))
        })
        .collect();

    // The file is chosen by --config, then RK3S_CONFIG; only the default may be absent.
    let explicit = flags
        .config
        .clone()
        .or_else(|| host.env.get("RK3S_CONFIG").cloned())
        .filter(|p| !p.is_empty());
    let (file_path, must_exist) = match explicit {
        Some(p) => (PathBuf::from(p), true),
        None => (host.default_config.clone(), false),
    };
    let loaded = load_file(&file_path, must_exist)?;
    let found = loaded.is_some();
    let (file, warnings) = loaded.unwrap_or_default();
    let layers = Layers {
        flags: flags.given(),
        env,
        file,
        file_path: found.then_some(file_path.as_path()),
    };

    let data_dir = match layers.one("data-dir", non_empty)? {
        Some(dir) => absolute(PathBuf::from(dir)),
        None if host.is_root => PathBuf::from(config::DEFAULT_ROOT_DATA_DIR),
        None => host
            .home
            .as_ref()
            .ok_or(ConfigError::NoDataDir)?
            .join(".local/share/rk3s"),
    };
    // An empty --write-kubeconfig turns off the default copy.
    let write_kubeconfig = match layers.one("write-kubeconfig", |s| Ok(s.trim().to_string()))? {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(absolute(PathBuf::from(p))),
        None if host.is_root => Some(PathBuf::from(config::DEFAULT_ROOT_KUBECONFIG)),
        None => None,
    };
    let cluster = layers.one("cluster-cidr", config::parse_cluster_cidr)?;
    let service = layers.one("service-cidr", config::parse_service_cidr)?;
    let cluster = match cluster {
        Some(c) => c,
        None => config::parse_cluster_cidr(config::DEFAULT_CLUSTER_CIDR)
            .map_err(ConfigError::Conflict)?,
    };
    let service = match service {
        Some(c) => c,
        None => config::parse_service_cidr(config::DEFAULT_SERVICE_CIDR)
            .map_err(ConfigError::Conflict)?,
    };
    if cluster.overlaps(&service) {
        return Err(ConfigError::Conflict(format!(
            "cluster-cidr {cluster} and service-cidr {service} overlap; pods and Services need separate ranges"
        )));
    }
    let image_gc_high_threshold = layers
        .one("image-gc-high-threshold", config::parse_percent)?
        .unwrap_or(config::DEFAULT_IMAGE_GC_HIGH_THRESHOLD);
    let image_gc_low_threshold = layers
        .one("image-gc-low-threshold", config::parse_percent)?
        .unwrap_or(config::DEFAULT_IMAGE_GC_LOW_THRESHOLD);
    // As the kubelet: the low mark must be below the high one.
    if image_gc_low_threshold >= image_gc_high_threshold {
        return Err(ConfigError::Conflict(format!(
            "image-gc-low-threshold ({image_gc_low_threshold}) must be less than image-gc-high-threshold ({image_gc_high_threshold})"
        )));
    }
    let eviction_soft = layers
        .one("eviction-soft", config::parse_eviction_hard)?
        .unwrap_or_default();
    let eviction_soft_grace_period = layers
        .one(
            "eviction-soft-grace-period",
            config::parse_eviction_grace_periods,
        )?
        .unwrap_or_default();
    // As the kubelet: a soft threshold without a grace period is an error.
    crate::node::agent::eviction::SoftThresholds::parse(
        &eviction_soft,
        &eviction_soft_grace_period,
    )
    .map_err(ConfigError::Conflict)?;
    let node_name = match layers.one("node-name", config::parse_node_name)? {
        Some(name) => name,
        None => config::parse_node_name(&host.hostname).map_err(|reason| {
            invalid(
                "the host name (the default --node-name)",
                &host.hostname,
                format!("{reason}; set --node-name"),
            )
        })?,
    };

    Ok(ServerConfig {
        data_dir,
        bind_address: layers
            .one("bind-address", config::parse_ip)?
            .unwrap_or([0, 0, 0, 0].into()),
        https_port: layers
            .one("https-port", config::parse_port)?
            .unwrap_or(config::DEFAULT_HTTPS_PORT),
        write_kubeconfig,
        write_kubeconfig_mode: layers
            .one("write-kubeconfig-mode", config::parse_mode)?
            .unwrap_or(config::DEFAULT_KUBECONFIG_MODE),
        tls_san: layers.many("tls-san", config::parse_san)?,
        node_name,
        cluster_cidr: cluster.to_string(),
        service_cidr: service.to_string(),
        disable: layers.many("disable", |s| Ok(s.to_string()))?,
        log_level: layers
            .one("log-level", config::parse_log_level)?
            .unwrap_or_else(|| config::DEFAULT_LOG_LEVEL.into()),
        simulate_nodes: layers
            .one("simulate-nodes", config::parse_simulate_nodes)?
            .unwrap_or(0),
        simulate_node_cpu: layers
            .one("simulate-node-cpu", config::parse_positive_quantity)?
            .unwrap_or_else(|| config::DEFAULT_SIMULATE_NODE_CPU.into()),
        simulate_node_memory: layers
            .one("simulate-node-memory", config::parse_positive_quantity)?
            .unwrap_or_else(|| config::DEFAULT_SIMULATE_NODE_MEMORY.into()),
        simulate_node_pods: layers
            .one("simulate-node-pods", config::parse_pod_count)?
            .unwrap_or(config::DEFAULT_SIMULATE_NODE_PODS),
        node_monitor_grace_period: layers
            .one("node-monitor-grace-period", config::parse_grace_period)?
            .unwrap_or(config::DEFAULT_NODE_MONITOR_GRACE_PERIOD),
        scheduler_scoring: layers
            .one("scheduler-scoring", config::parse_scheduler_scoring)?
            .unwrap_or_default(),
        system_reserved: layers
            .one("system-reserved", |s| Ok(s.trim().to_string()))?
            .unwrap_or_default(),
        cluster_dns: layers
            .one("cluster-dns", |s| {
                config::parse_ip(s).map(|ip| ip.to_string())
            })?
            .unwrap_or_default(),
        cluster_domain: layers
            .one("cluster-domain", non_empty)?
            .unwrap_or_else(|| config::DEFAULT_CLUSTER_DOMAIN.into()),
        eviction_hard: layers
            .one("eviction-hard", config::parse_eviction_hard)?
            .unwrap_or_else(|| config::DEFAULT_EVICTION_HARD.into()),
        eviction_soft,
        eviction_soft_grace_period,
        eviction_max_pod_grace_period: layers
            .one("eviction-max-pod-grace-period", config::parse_grace_seconds)?
            .unwrap_or(0),
        eviction_pressure_transition_period: layers
            .one(
                "eviction-pressure-transition-period",
                config::parse_duration,
            )?
            .unwrap_or(config::DEFAULT_EVICTION_PRESSURE_TRANSITION_PERIOD),
        image_gc_high_threshold,
        image_gc_low_threshold,
        image_minimum_gc_age: layers
            .one("image-minimum-gc-age", config::parse_duration)?
            .unwrap_or(config::DEFAULT_IMAGE_MINIMUM_GC_AGE),
        // Last: these move what `layers` borrows.
        config_file: found.then_some(file_path),
        warnings,
    })
}

fn non_empty(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(t.to_string())
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

type FileValues = (BTreeMap<String, Vec<String>>, Vec<String>);

/// Read the config file: its known keys' raw values, and warnings about the
/// keys it has that `server` does not know (k3s skips those too: the same file
/// may hold settings of other subcommands). None when an optional file is absent.
fn load_file(path: &Path, must_exist: bool) -> Result<Option<FileValues>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => return Ok(None),
        Err(source) => {
            return Err(ConfigError::ReadFile {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let parse_error = |e: serde_saphyr::Error| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if text.trim().is_empty() {
        return Ok(Some(Default::default()));
    }
    let doc: Option<BTreeMap<String, Option<RawValue>>> =
        serde_saphyr::from_str(&text).map_err(parse_error)?;
    let mut values = BTreeMap::new();
    let mut warnings = Vec::new();
    for (key, value) in doc.unwrap_or_default() {
        if !SERVER_KEYS.contains(&key.as_str()) {
            warnings.push(format!(
                "unknown key {key:?} in {}, ignored",
                path.display()
            ));
            continue;
        }
        match value {
            None => {}
            Some(RawValue::One(v)) => {
                values.insert(key, vec![v]);
            }
            Some(RawValue::Many(v)) if MULTI_KEYS.contains(&key.as_str()) => {
                values.insert(key, v);
            }
            Some(RawValue::Many(_)) => {
                return Err(ConfigError::ParseFile {
                    path: path.to_path_buf(),
                    message: format!("{key} takes one value, not a list"),
                });
            }
            Some(RawValue::Other) => {
                return Err(ConfigError::ParseFile {
                    path: path.to_path_buf(),
                    message: format!("{key} must be a string, a number or a list of strings"),
                });
            }
        }
    }
    // Numbers come back as numbers above, which loses their spelling
    // (`0o644` would read as 420); read single values again as text.
    let texts: ScalarTexts = serde_saphyr::from_str(&text).map_err(parse_error)?;
    for (key, text) in texts.into_pairs() {
        if let Some(text) = text {
            values.insert(key.to_string(), vec![text.0]);
        }
    }
    Ok(Some((values, warnings)))
}

/// The single-valued keys of the file, each scalar as written.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ScalarTexts {
    data_dir: Option<Text>,
    bind_address: Option<Text>,
    https_port: Option<Text>,
    write_kubeconfig: Option<Text>,
    write_kubeconfig_mode: Option<Text>,
    node_name: Option<Text>,
    cluster_cidr: Option<Text>,
    service_cidr: Option<Text>,
    log_level: Option<Text>,
    simulate_nodes: Option<Text>,
    simulate_node_cpu: Option<Text>,
    simulate_node_memory: Option<Text>,
    simulate_node_pods: Option<Text>,
    node_monitor_grace_period: Option<Text>,
    scheduler_scoring: Option<Text>,
    system_reserved: Option<Text>,
    cluster_dns: Option<Text>,
    cluster_domain: Option<Text>,
    eviction_hard: Option<Text>,
    eviction_soft: Option<Text>,
    eviction_soft_grace_period: Option<Text>,
    eviction_max_pod_grace_period: Option<Text>,
    eviction_pressure_transition_period: Option<Text>,
    image_gc_high_threshold: Option<Text>,
    image_gc_low_threshold: Option<Text>,
    image_minimum_gc_age: Option<Text>,
}

impl ScalarTexts {
    fn into_pairs(self) -> [(&'static str, Option<Text>); 26] {
        [
            ("data-dir", self.data_dir),
            ("bind-address", self.bind_address),
            ("https-port", self.https_port),
            ("write-kubeconfig", self.write_kubeconfig),
            ("write-kubeconfig-mode", self.write_kubeconfig_mode),
            ("node-name", self.node_name),
            ("cluster-cidr", self.cluster_cidr),
            ("service-cidr", self.service_cidr),
            ("log-level", self.log_level),
            ("simulate-nodes", self.simulate_nodes),
            ("simulate-node-cpu", self.simulate_node_cpu),
            ("simulate-node-memory", self.simulate_node_memory),
            ("simulate-node-pods", self.simulate_node_pods),
            ("node-monitor-grace-period", self.node_monitor_grace_period),
            ("scheduler-scoring", self.scheduler_scoring),
            ("system-reserved", self.system_reserved),
            ("cluster-dns", self.cluster_dns),
            ("cluster-domain", self.cluster_domain),
            ("eviction-hard", self.eviction_hard),
            ("eviction-soft", self.eviction_soft),
            (
                "eviction-soft-grace-period",
                self.eviction_soft_grace_period,
            ),
            (
                "eviction-max-pod-grace-period",
                self.eviction_max_pod_grace_period,
            ),
            (
                "eviction-pressure-transition-period",
                self.eviction_pressure_transition_period,
            ),
            ("image-gc-high-threshold", self.image_gc_high_threshold),
            ("image-gc-low-threshold", self.image_gc_low_threshold),
            ("image-minimum-gc-age", self.image_minimum_gc_age),
        ]
    }
}

/// A scalar read as a string, so it keeps its spelling whatever its YAML type.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Text)
    }
}

/// A config-file value as text: scalars of any YAML type, or a list of them.
/// Unknown keys may hold anything (`Other`); only known keys must be scalars or lists.
enum RawValue {
    One(String),
    Many(Vec<String>),
    Other,
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> serde::de::Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, a number, a boolean or a list of them")
    }
    fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::One(v.to_string()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::One(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::One(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawValue, E> {
        Ok(RawValue::One(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::One(v.to_string()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        // A list of anything but scalars is `Other`; read it to the end regardless.
        let mut items = Some(Vec::new());
        while let Some(item) = seq.next_element::<RawValue>()? {
            match (item, &mut items) {
                (RawValue::One(s), Some(list)) => list.push(s),
                _ => items = None,
            }
        }
        Ok(items.map_or(RawValue::Other, RawValue::Many))
    }
    fn visit_unit<E>(self) -> Result<RawValue, E> {
        Ok(RawValue::Other)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(RawValue::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("rk3s-cli-{tag}-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn host(dir: &TempDir, root: bool, env: &[(&str, &str)]) -> Host {
        Host {
            is_root: root,
            home: Some("/home/u".into()),
            hostname: "node-a".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            default_config: dir.0.join("config.yaml"),
        }
    }

    fn server(args: &[&str], host: &Host) -> Result<ServerConfig, ConfigError> {
        let argv = ["rk3s", "server"].iter().chain(args).copied();
        match try_parse_from(argv, host)? {
            Command::Server(c) => Ok(*c),
            other => panic!("not a server command: {other:?}"),
        }
    }

    #[test]
    fn defaults_as_root_and_as_user() {
        let dir = TempDir::new("defaults");
        let c = server(&[], &host(&dir, true, &[])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/rk3s"));
        assert_eq!(
            c.write_kubeconfig,
            Some(PathBuf::from("/etc/rk3s/rk3s.yaml"))
        );
        assert_eq!(c.bind_address.to_string(), "0.0.0.0");
        assert_eq!(c.https_port, 6443);
        assert_eq!(c.write_kubeconfig_mode, 0o600);
        assert_eq!(c.node_name, "node-a");
        assert_eq!(c.cluster_cidr, "10.42.0.0/16");
        assert_eq!(c.service_cidr, "10.43.0.0/16");
        assert_eq!(c.log_level, "info");
        assert!(c.tls_san.is_empty() && c.disable.is_empty() && c.warnings.is_empty());
        assert_eq!(
            c.config_file, None,
            "the default file is absent, which is fine"
        );

        let c = server(&[], &host(&dir, false, &[])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/home/u/.local/share/rk3s"));
        assert_eq!(c.write_kubeconfig, None);

        let mut h = host(&dir, false, &[]);
        h.home = None;
        assert!(matches!(server(&[], &h), Err(ConfigError::NoDataDir)));
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = TempDir::new("precedence");
        dir.write(
            "config.yaml",
            "https-port: 7001\ndata-dir: /from/file\nlog-level: warn\n",
        );
        let env = [("RK3S_HTTPS_PORT", "7002"), ("RK3S_DATA_DIR", "/from/env")];
        let c = server(&["--https-port", "7003"], &host(&dir, true, &env)).unwrap();
        assert_eq!(c.https_port, 7003, "flag over env and file");
        assert_eq!(c.data_dir, PathBuf::from("/from/env"), "env over file");
        assert_eq!(c.log_level, "warn", "file over default");
        assert_eq!(
            c.bind_address.to_string(),
            "0.0.0.0",
            "default when nobody sets it"
        );
        assert_eq!(c.config_file, Some(dir.0.join("config.yaml")));

        let c = server(&[], &host(&dir, true, &env)).unwrap();
        assert_eq!(c.https_port, 7002, "env over file");
        let c = server(&[], &host(&dir, true, &[])).unwrap();
        assert_eq!(c.https_port, 7001, "file over default");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));

        // A repeated flag: the last one wins; the same for lists vs env.
        let c = server(
            &["--https-port=1", "--https-port=2"],
            &host(&dir, true, &env),
        )
        .unwrap();
        assert_eq!(c.https_port, 2);
    }

    #[test]
    fn lists_from_each_source() {
        let dir = TempDir::new("lists");
        dir.write(
            "config.yaml",
            "tls-san:\n  - a.example\n  - 10.0.0.9\ndisable: traefik\n",
        );
        let c = server(&[], &host(&dir, true, &[])).unwrap();
        assert_eq!(c.tls_san, ["a.example", "10.0.0.9"]);
        assert_eq!(c.disable, ["traefik"]);
        assert!(c.is_disabled("traefik") && !c.is_disabled("coredns"));

        let env = [
            ("RK3S_TLS_SAN", "e1.example, e2.example"),
            ("RK3S_DISABLE", "servicelb,traefik"),
        ];
        let c = server(&[], &host(&dir, true, &env)).unwrap();
        assert_eq!(
            c.tls_san,
            ["e1.example", "e2.example"],
            "env replaces the file's list"
        );
        assert_eq!(c.disable, ["servicelb", "traefik"]);

        let c = server(
            &[
                "--tls-san",
                "f.example",
                "--tls-san=F.example",
                "--tls-san",
                "1.2.3.4",
            ],
            &host(&dir, true, &env),
        )
        .unwrap();
        assert_eq!(
            c.tls_san,
            ["f.example", "1.2.3.4"],
            "flags replace env; names dedupe case-insensitively"
        );
    }

    #[test]
    fn file_value_types_like_k3s() {
        let dir = TempDir::new("types");
        dir.write(
            "config.yaml",
            "write-kubeconfig-mode: 0644\nhttps-port: 7443\ntls-san: [\"x.example\", y.example]\nnode-name: Edge-1\n",
        );
        let c = server(&[], &host(&dir, true, &[])).unwrap();
        assert_eq!(c.node_name, "edge-1", "lowercased, as the kubelet does");
        assert_eq!(c.write_kubeconfig_mode, 0o644);
        assert_eq!(c.https_port, 7443);
        assert_eq!(c.tls_san, ["x.example", "y.example"]);

        dir.write("config.yaml", "write-kubeconfig-mode: \"0640\"\n");
        assert_eq!(
            server(&[], &host(&dir, true, &[]))
                .unwrap()
                .write_kubeconfig_mode,
            0o640
        );
        dir.write("config.yaml", "write-kubeconfig-mode: 0o644\n");
        let c = server(&[], &host(&dir, true, &[])).unwrap();
        assert_eq!(
            c.write_kubeconfig_mode, 0o644,
            "spelled 0o644, not read as decimal 420"
        );
        dir.write("config.yaml", "node-name: edge_1\n");
        let err = server(&[], &host(&dir, true, &[])).unwrap_err();
        assert!(err.to_string().contains("node-name in"), "{err}");
    }

    #[test]
    fn config_file_selection() {
        let dir = TempDir::new("select");
        let other = dir.write("other.yaml", "https-port: 8001\n");
        let c = server(
            &["--config", other.to_str().unwrap()],
            &host(&dir, true, &[]),
        )
        .unwrap();
        assert_eq!(c.https_port, 8001);
        let c = server(
            &[],
            &host(&dir, true, &[("RK3S_CONFIG", other.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(c.https_port, 8001);

        let missing = dir.0.join("missing.yaml");
        let err = server(
            &["--config", missing.to_str().unwrap()],
            &host(&dir, true, &[]),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::ReadFile { .. }), "{err}");
        assert!(err.to_string().contains("missing.yaml"), "{err}");
        let err = server(
            &[],
            &host(&dir, true, &[("RK3S_CONFIG", missing.to_str().unwrap())]),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::ReadFile { .. }), "{err}");

        // An empty file is an empty configuration.
        dir.write("config.yaml", "# nothing yet\n");
        assert_eq!(
            server(&[], &host(&dir, true, &[])).unwrap().https_port,
            6443
        );
    }

    #[test]
    fn unknown_keys_warn_and_bad_files_fail() {
        let dir = TempDir::new("bad");
        dir.write(
            "config.yaml",
            "token: abc\nkubelet-arg: [a, b]\nnode-label: {x: y}\nhttps-port: 9443\n",
        );
        let c = server(&[], &host(&dir, true, &[])).unwrap();
        assert_eq!(c.https_port, 9443);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("\"kubelet-arg\""),
            "{:?}",
            c.warnings
        );

        for (text, needle) in [
            ("https-port: [1, 2]\n", "https-port takes one value"),
            ("tls-san: {a: b}\n", "tls-san must be"),
            ("- a\n- b\n", "config file"),
            ("https-port: : :\n", "config file"),
        ] {
            dir.write("config.yaml", text);
            let err = server(&[], &host(&dir, true, &[])).unwrap_err();
            assert!(
                matches!(err, ConfigError::ParseFile { .. }),
                "{text:?}: {err}"
            );
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn invalid_values_name_their_source() {
        let dir = TempDir::new("invalid");
        let h = host(&dir, true, &[]);
        let cases: &[(&[&str], &str)] = &[
            (&["--https-port", "70000"], "--https-port"),
            (&["--https-port", "0"], "--https-port"),
            (&["--bind-address", "localhost"], "--bind-address"),
            (&["--service-cidr", "10.43.0.0"], "--service-cidr"),
            (&["--cluster-cidr", "10.42.0.0/33"], "--cluster-cidr"),
            (
                &["--write-kubeconfig-mode", "0888"],
                "--write-kubeconfig-mode",
            ),
            (&["--tls-san", "bad name"], "--tls-san"),
            (&["--log-level", "rk3s=loud"], "--log-level"),
            (&["--data-dir", ""], "--data-dir"),
        ];
        for (args, origin) in cases {
            let err = server(args, &h).unwrap_err();
            match &err {
                ConfigError::Invalid { origin: o, .. } => assert_eq!(o, origin, "{args:?}"),
                other => panic!("{args:?}: {other}"),
            }
        }
        let err = server(&[], &host(&dir, true, &[("RK3S_SERVICE_CIDR", "nope")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value \"nope\" for RK3S_SERVICE_CIDR: "),
            "{err}"
        );
        dir.write("config.yaml", "https-port: high\n");
        let err = server(&[], &h).unwrap_err();
        assert!(err.to_string().contains("for https-port in "), "{err}");

        let err = server(
            &[
                "--cluster-cidr",
                "10.0.0.0/8",
                "--service-cidr",
                "10.43.0.0/16",
            ],
            &h,
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Conflict(_)), "{err}");

        let mut bad_host = host(&dir, true, &[]);
        bad_host.hostname = "my_laptop".into();
        std::fs::remove_file(dir.0.join("config.yaml")).unwrap();
        let err = server(&[], &bad_host).unwrap_err();
        assert!(err.to_string().contains("set --node-name"), "{err}");
        assert_eq!(
            server(&["--node-name", "laptop"], &bad_host)
                .unwrap()
                .node_name,
            "laptop"
        );
    }

    #[test]
    fn empty_write_kubeconfig_turns_it_off() {
        let dir = TempDir::new("kubeconfig");
        let c = server(&["--write-kubeconfig="], &host(&dir, true, &[])).unwrap();
        assert_eq!(c.write_kubeconfig, None);
        let c = server(
            &["--write-kubeconfig", "/tmp/k.yaml"],
            &host(&dir, false, &[]),
        )
        .unwrap();
        assert_eq!(c.write_kubeconfig, Some(PathBuf::from("/tmp/k.yaml")));
    }

    #[test]
    fn help_version_and_usage_errors() {
        let dir = TempDir::new("help");
        let h = host(&dir, true, &[]);
        let err = server(&["--help"], &h).unwrap_err();
        let ConfigError::Usage(e) = &err else {
            panic!("{err}")
        };
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = e.to_string();
        assert!(
            help.contains("--https-port <PORT>") && help.contains("[env: RK3S_HTTPS_PORT]"),
            "{help}"
        );
        assert!(help.contains("[env: RK3S_CONFIG]"), "{help}");

        let err = try_parse_from(["rk3s", "--version"], &h).unwrap_err();
        let ConfigError::Usage(e) = &err else {
            panic!("{err}")
        };
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(e.to_string().contains(env!("CARGO_PKG_VERSION")));

        let err = server(&["--no-such-flag"], &h).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Usage(e) if e.kind() == clap::error::ErrorKind::UnknownArgument)
        );
        assert!(
            try_parse_from(["rk3s"], &h).is_err(),
            "a subcommand is required"
        );
    }

    #[test]
    fn simulation_and_scheduler_flags_from_every_source() {
        use crate::config::SchedulerScoring;
        let dir = TempDir::new("sim");
        let c = server(&[], &host(&dir, true, &[])).unwrap();
        assert_eq!(c.simulate_nodes, 0);
        assert_eq!(c.simulate_node_cpu, "4");
        assert_eq!(c.simulate_node_memory, "16Gi");
        assert_eq!(c.simulate_node_pods, 110);
        assert_eq!(
            c.node_monitor_grace_period,
            std::time::Duration::from_secs(40)
        );
        assert_eq!(c.scheduler_scoring, SchedulerScoring::LeastAllocated);

        dir.write(
            "config.yaml",
            "simulate-nodes: 3\nsimulate-node-memory: 8Gi\nnode-monitor-grace-period: 1m\n",
        );
        let env = [
            ("RK3S_SIMULATE_NODE_CPU", "2500m"),
            ("RK3S_SCHEDULER_SCORING", "MostAllocated"),
        ];
        let c = server(&["--simulate-node-pods", "20"], &host(&dir, true, &env)).unwrap();
        assert_eq!(c.simulate_nodes, 3);
        assert_eq!(c.simulate_node_memory, "8Gi");
        assert_eq!(
            c.node_monitor_grace_period,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(c.simulate_node_cpu, "2500m");
        assert_eq!(c.scheduler_scoring, SchedulerScoring::MostAllocated);
        assert_eq!(c.simulate_node_pods, 20);

        let err = server(
            &["--node-monitor-grace-period", "soon"],
            &host(&dir, true, &[]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("--node-monitor-grace-period"),
            "{err}"
        );
        let err = server(&[], &host(&dir, true, &[("RK3S_SIMULATE_NODES", "many")])).unwrap_err();
        assert!(err.to_string().contains("RK3S_SIMULATE_NODES"), "{err}");
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("data-dir"), "RK3S_DATA_DIR");
        assert_eq!(
            env_name("write_kubeconfig_mode"),
            "RK3S_WRITE_KUBECONFIG_MODE"
        );
        command().debug_assert();
    }
}
