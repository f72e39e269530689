//! Service cluster IP and node port allocation.
//!
//! The store is the source of truth: every allocation starts from a scan of
//! `/registry/core/services/`, so deleted services free their IPs and ports
//! without any release hook, and nothing is lost across restarts. Values
//! handed out but not yet visible in the store (a create in flight) are held
//! as *pending* reservations under a process-wide mutex, which makes
//! concurrent creates safe. A reservation ends when a scan sees it committed
//! under the reserving service's uid, when `release_pending` is called, or
//! after `PENDING_TTL` (a create that failed after allocating).
//!
//! Dynamic choices follow upstream (KEP-3070/3668): random, preferring the
//! upper part of the range so the lower band stays free for static requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;

use crate::store::{ListOptions, Store, StoreError};

/// Where Service objects live in the store.
pub const SERVICES_PREFIX: &str = "/registry/core/services/";

/// How long an allocation may stay unconfirmed by the store.
pub const PENDING_TTL: Duration = Duration::from_secs(60);

/// An allocation failure, worded as upstream's allocators.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("range is full")]
    Full,
    #[error("provided IP is already allocated")]
    IpAllocated,
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    IpNotInRange { ip: String, range: String },
    #[error("provided port is already allocated")]
    PortAllocated,
    #[error("provided port is not in the valid range. The range of valid ports is {0}")]
    PortNotInRange(String),
}

/// One service CIDR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Network address as an integer (IPv4 in the low 32 bits).
    base: u128,
    prefix: u8,
    v6: bool,
    text: String,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.trim().split_once('/')?;
        let ip: IpAddr = ip.parse().ok()?;
        let prefix: u8 = len.parse().ok()?;
        let (raw, bits, v6) = match ip {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32u8, false),
            IpAddr::V6(a) => (u128::from(a), 128u8, true),
        };
        if prefix > bits {
            return None;
        }
        let host_bits = u32::from(bits - prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            !((1u128 << host_bits) - 1)
        };
        let base = raw & mask & if v6 { u128::MAX } else { u128::from(u32::MAX) };
        let text = format!("{}/{}", to_ip(base, v6), prefix);
        Some(Cidr {
            base,
            prefix,
            v6,
            text,
        })
    }

    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// `IPv4` or `IPv6`, the Service ipFamilies value.
    pub fn family(&self) -> &'static str {
        if self.v6 { "IPv6" } else { "IPv4" }
    }

    fn host_bits(&self) -> u32 {
        u32::from(if self.v6 { 128 } else { 32 } - self.prefix)
    }

    /// Number of addresses in the range (saturating for huge IPv6 ranges).
    fn size(&self) -> u128 {
        let hb = self.host_bits();
        if hb >= 127 {
            u128::MAX / 2
        } else {
            1u128 << hb
        }
    }

    /// Usable offsets: the network address is never handed out, nor the
    /// IPv4 broadcast address.
    fn usable(&self) -> (u128, u128) {
        let size = self.size();
        let last = if self.v6 {
            size - 1
        } else {
            size.saturating_sub(2)
        };
        (1, last.max(1))
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (ip, self.v6) {
            (IpAddr::V4(a), false) => {
                let v = u128::from(u32::from(*a));
                v >= self.base && v - self.base < self.size()
            }
            (IpAddr::V6(a), true) => {
                let v = u128::from(*a);
                v >= self.base && v - self.base < self.size()
            }
            _ => false,
        }
    }

    /// The `n`th address of the range (`nth(1)` is the first usable, the
    /// address of the `kubernetes` Service).
    pub fn nth(&self, n: u128) -> IpAddr {
        to_ip(self.base.wrapping_add(n), self.v6)
    }

    fn offset(&self, ip: &IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u128::from(u32::from(*a)).wrapping_sub(self.base),
            IpAddr::V6(a) => u128::from(*a).wrapping_sub(self.base),
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn to_ip(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::from(v))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::from(v as u32))
    }
}

/// Parse `--service-cidr` (one CIDR, or two comma-separated for dual-stack).
pub fn parse_service_cidrs(s: &str) -> Vec<Cidr> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .filter_map(Cidr::parse)
        .collect()
}

/// What the store holds: IPs and node ports in use, and which service (by
/// uid) holds each.
#[derive(Debug, Default)]
pub struct InUse {
    pub ips: HashMap<IpAddr, String>,
    pub ports: HashMap<u16, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SvcLite {
    metadata: MetaLite,
    spec: SpecLite,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MetaLite {
    uid: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SpecLite {
    #[serde(rename = "clusterIP")]
    cluster_ip: String,
    #[serde(rename = "clusterIPs")]
    cluster_ips: Vec<String>,
    ports: Vec<PortLite>,
    health_check_node_port: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PortLite {
    node_port: Option<i64>,
}

/// Read every Service and collect what it holds.
pub async fn scan(store: &dyn Store) -> Result<InUse, StoreError> {
    let list = store.list(SERVICES_PREFIX, ListOptions::default()).await?;
    let mut out = InUse::default();
    for kv in list.items {
        let Ok(svc) = serde_json::from_slice::<SvcLite>(&kv.value) else {
            continue;
        };
        let uid = svc.metadata.uid;
        let ips = std::iter::once(&svc.spec.cluster_ip).chain(svc.spec.cluster_ips.iter());
        for ip in ips.filter_map(|s| s.parse::<IpAddr>().ok()) {
            out.ips.insert(ip, uid.clone());
        }
        let ports = svc
            .spec
            .ports
            .iter()
            .filter_map(|p| p.node_port)
            .chain(svc.spec.health_check_node_port);
        for p in ports
            .filter_map(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        {
            out.ports.insert(p, uid.clone());
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Pending {
    ips: HashMap<IpAddr, (String, Instant)>,
    ports: HashMap<u16, (String, Instant)>,
}

/// Pending reservations per store (keyed by the store's address, so that
/// several stores in one process, as in tests, do not see each other's).
static PENDING: LazyLock<Mutex<HashMap<usize, Pending>>> = LazyLock::new(Default::default);

fn store_key(store: &dyn Store) -> usize {
    store as *const dyn Store as *const () as usize
}

/// Drop every pending reservation made for the service `uid` (call after a
/// create or update that allocated and then failed to reach the store).
pub fn release_pending(store: &dyn Store, uid: &str) {
    let mut all = PENDING.lock();
    if let Some(p) = all.get_mut(&store_key(store)) {
        p.ips.retain(|_, (u, _)| u != uid);
        p.ports.retain(|_, (u, _)| u != uid);
    }
}

/// One allocation pass for one service: a fresh scan plus the pending
/// reservations. Cheap to create; values it hands out are reserved at once.
pub struct Session {
    key: usize,
    uid: String,
    in_use: InUse,
}

impl Session {
    /// Scan the store and prepare to allocate for the service `uid`.
    pub async fn begin(store: &dyn Store, uid: &str) -> Result<Session, StoreError> {
        let in_use = scan(store).await?;
        let key = store_key(store);
        {
            // Forget reservations the store now shows committed, or stale ones.
            let mut all = PENDING.lock();
            let p = all.entry(key).or_default();
            let now = Instant::now();
            p.ips.retain(|ip, (u, t)| {
                in_use.ips.get(ip) != Some(u) && now.duration_since(*t) < PENDING_TTL
            });
            p.ports.retain(|port, (u, t)| {
                in_use.ports.get(port) != Some(u) && now.duration_since(*t) < PENDING_TTL
            });
        }
        Ok(Session {
            key,
            uid: uid.to_string(),
            in_use,
        })
    }

    /// A session over a known state (tests, or callers that scanned already).
    pub fn with_state(store: &dyn Store, uid: &str, in_use: InUse) -> Session {
        Session {
            key: store_key(store),
            uid: uid.to_string(),
            in_use,
        }
    }

    fn ip_taken(&self, p: &Pending, ip: &IpAddr) -> bool {
        self.in_use.ips.get(ip).is_some_and(|u| *u != self.uid)
            || p.ips.get(ip).is_some_and(|(u, _)| *u != self.uid)
    }

    fn port_taken(&self, p: &Pending, port: u16) -> bool {
        self.in_use.ports.get(&port).is_some_and(|u| *u != self.uid)
            || p.ports.get(&port).is_some_and(|(u, _)| *u != self.uid)
    }

    /// Allocate an IP from `cidr`: the one asked for, or a free one.
    pub fn allocate_ip(&self, cidr: &Cidr, wanted: Option<IpAddr>) -> Result<IpAddr, AllocError> {
        let mut all = PENDING.lock();
        let p = all.entry(self.key).or_default();
        let (lo, hi) = cidr.usable();
        let ip = match wanted {
            Some(ip) => {
                let off = cidr.offset(&ip);
                if !cidr.contains(&ip) || off < lo || off > hi {
                    return Err(AllocError::IpNotInRange {
                        ip: ip.to_string(),
                        range: cidr.to_string(),
                    });
                }
                if self.ip_taken(p, &ip) {
                    return Err(AllocError::IpAllocated);
                }
                ip
            }
            None => {
                // Ranges too small to hold a usable address (/31, /32).
                if !cidr.contains(&cidr.nth(hi)) {
                    return Err(AllocError::Full);
                }
                let count = hi - lo + 1;
                let band = (count / 16).clamp(16, 256).min(count);
                let found = pick(lo, hi, band, |off| !self.ip_taken(p, &cidr.nth(off)));
                cidr.nth(found.ok_or(AllocError::Full)?)
            }
        };
        p.ips.insert(ip, (self.uid.clone(), Instant::now()));
        Ok(ip)
    }

    /// Allocate a node port in `range` (inclusive): the one asked for, or a free one.
    pub fn allocate_port(&self, range: (u16, u16), wanted: Option<u16>) -> Result<u16, AllocError> {
        let mut all = PENDING.lock();
        let p = all.entry(self.key).or_default();
        let (lo, hi) = range;
        let port = match wanted {
            Some(port) => {
                if port < lo || port > hi {
                    return Err(AllocError::PortNotInRange(format!("{lo}-{hi}")));
                }
                if self.port_taken(p, port) {
                    return Err(AllocError::PortAllocated);
                }
                port
            }
            None => {
                if lo > hi {
                    return Err(AllocError::Full);
                }
                let count = u128::from(hi - lo) + 1;
                let band = (count / 32).clamp(16, 128).min(count);
                let found = pick(u128::from(lo), u128::from(hi), band, |v| {
                    !self.port_taken(p, v as u16)
                });
                found.ok_or(AllocError::Full)? as u16
            }
        };
        p.ports.insert(port, (self.uid.clone(), Instant::now()));
        Ok(port)
    }
}

/// Choose a free value in `lo..=hi`: random in the upper part (above the
/// first `band` values), scanning forward from there, then the lower band.
fn pick(lo: u128, hi: u128, band: u128, free: impl Fn(u128) -> bool) -> Option<u128> {
    let upper_lo = (lo + band).min(hi);
    let span = hi - upper_lo + 1;
    let start = upper_lo + rand::random_range(0..span);
    // Bounded scans: a full range walk is fine for IPv4 and node ports; for
    // huge IPv6 ranges the first few thousand candidates always suffice.
    let limit = span.min(1 << 20);
    for i in 0..limit {
        let v = upper_lo + (start - upper_lo + i) % span;
        if free(v) {
            return Some(v);
        }
    }
    (lo..upper_lo).find(|v| free(*v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};
    use std::collections::HashSet;

    #[test]
    fn cidr_parsing_and_ranges() {
        let c = Cidr::parse("10.43.0.0/16").map(|c| c.to_string());
        assert_eq!(c.as_deref(), Some("10.43.0.0/16"));
        let c = Cidr::parse("10.43.7.9/16");
        assert_eq!(
            c.as_ref().map(|c| c.to_string()).as_deref(),
            Some("10.43.0.0/16")
        );
        let c = c.expect("cidr");
        assert_eq!(c.nth(1).to_string(), "10.43.0.1");
        assert!(c.contains(&"10.43.255.254".parse().expect("ip")));
        assert!(!c.contains(&"10.44.0.1".parse().expect("ip")));
        assert_eq!(c.usable(), (1, 65534));
        let v6 = Cidr::parse("fd00:43::/112").expect("v6");
        assert_eq!(v6.family(), "IPv6");
        assert_eq!(v6.nth(1).to_string(), "fd00:43::1");
        assert_eq!(parse_service_cidrs("10.43.0.0/16,fd00::/108").len(), 2);
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        let st = store();
        let tiny = Cidr::parse("10.0.0.7/32").expect("cidr");
        let s = Session::with_state(st.as_ref(), "x", InUse::default());
        assert_eq!(s.allocate_ip(&tiny, None), Err(AllocError::Full));
        assert_eq!(s.allocate_port((5, 4), None), Err(AllocError::Full));
    }

    fn store() -> std::sync::Arc<dyn Store> {
        SqliteStore::open_temp(SqliteOptions {
            compaction_interval: None,
            ..Default::default()
        })
        .expect("store")
    }

    #[test]
    fn explicit_ips_are_checked() {
        let st = store();
        let c = Cidr::parse("10.43.0.0/16").expect("cidr");
        let mut used = InUse::default();
        used.ips
            .insert("10.43.0.10".parse().expect("ip"), "other".into());
        let s = Session::with_state(st.as_ref(), "me", used);
        assert_eq!(
            s.allocate_ip(&c, Some("10.43.0.10".parse().expect("ip"))),
            Err(AllocError::IpAllocated)
        );
        assert_eq!(
            s.allocate_ip(&c, Some("1.1.1.1".parse().expect("ip"))).map_err(|e| e.to_string()),
            Err("the provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is 10.43.0.0/16".into())
        );
        assert!(
            s.allocate_ip(&c, Some("10.43.255.255".parse().expect("ip")))
                .is_err(),
            "broadcast"
        );
        assert!(
            s.allocate_ip(&c, Some("10.43.0.0".parse().expect("ip")))
                .is_err(),
            "network"
        );
        assert_eq!(
            s.allocate_ip(&c, Some("10.43.0.11".parse().expect("ip")))
                .map(|i| i.to_string()),
            Ok("10.43.0.11".into())
        );
        // A second service cannot take the reserved IP while the first create is in flight.
        let s2 = Session::with_state(st.as_ref(), "you", InUse::default());
        assert_eq!(
            s2.allocate_ip(&c, Some("10.43.0.11".parse().expect("ip"))),
            Err(AllocError::IpAllocated)
        );
        release_pending(st.as_ref(), "me");
        assert!(
            s2.allocate_ip(&c, Some("10.43.0.11".parse().expect("ip")))
                .is_ok()
        );
    }

    #[test]
    fn dynamic_ips_avoid_the_static_band_and_fill_up() {
        let st = store();
        let c = Cidr::parse("10.43.0.0/16").expect("cidr");
        let s = Session::with_state(st.as_ref(), "me", InUse::default());
        let ip = s.allocate_ip(&c, None).expect("ip");
        assert!(c.offset(&ip) > 256, "{ip}");
        // A /29 has 6 usable addresses; the 7th allocation fails.
        let small = Cidr::parse("192.168.0.0/29").expect("cidr");
        let mut got = HashSet::new();
        for i in 0..6 {
            let s = Session::with_state(st.as_ref(), &format!("svc{i}"), InUse::default());
            got.insert(s.allocate_ip(&small, None).expect("free ip"));
        }
        assert_eq!(got.len(), 6);
        assert!(!got.contains(&"192.168.0.0".parse::<IpAddr>().expect("ip")));
        assert!(!got.contains(&"192.168.0.7".parse::<IpAddr>().expect("ip")));
        let s = Session::with_state(st.as_ref(), "late", InUse::default());
        assert_eq!(s.allocate_ip(&small, None), Err(AllocError::Full));
    }

    #[test]
    fn node_ports() {
        let st = store();
        let mut used = InUse::default();
        used.ports.insert(30080, "other".into());
        let s = Session::with_state(st.as_ref(), "me", used);
        assert_eq!(
            s.allocate_port((30000, 32767), Some(30080)),
            Err(AllocError::PortAllocated)
        );
        assert_eq!(
            s.allocate_port((30000, 32767), Some(80))
                .map_err(|e| e.to_string()),
            Err(
                "provided port is not in the valid range. The range of valid ports is 30000-32767"
                    .into()
            )
        );
        let p = s.allocate_port((30000, 32767), None).expect("port");
        assert!((30086..=32767).contains(&p), "{p}");
        assert_eq!(
            AllocError::PortAllocated.to_string(),
            "provided port is already allocated"
        );
    }

    #[tokio::test]
    async fn scan_reads_services_and_confirms_pending() {
        let st = store();
        let svc = serde_json::json!({"metadata": {"uid": "u1"}, "spec": {"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"],
            "ports": [{"port": 80, "nodePort": 30001}]}});
        st.create(
            &format!("{SERVICES_PREFIX}default/a"),
            serde_json::to_vec(&svc).expect("json").into(),
        )
        .await
        .expect("create");
        let s = Session::begin(st.as_ref(), "u2").await.expect("scan");
        let c = Cidr::parse("10.43.0.0/16").expect("cidr");
        assert_eq!(
            s.allocate_ip(&c, Some("10.43.0.5".parse().expect("ip"))),
            Err(AllocError::IpAllocated)
        );
        assert_eq!(
            s.allocate_port((30000, 32767), Some(30001)),
            Err(AllocError::PortAllocated)
        );
        // The owner itself may keep what it holds.
        let own = Session::begin(st.as_ref(), "u1").await.expect("scan");
        assert!(
            own.allocate_ip(&c, Some("10.43.0.5".parse().expect("ip")))
                .is_ok()
        );
        // Deleting the service frees everything.
        st.delete(&format!("{SERVICES_PREFIX}default/a"), 0)
            .await
            .expect("delete");
        release_pending(st.as_ref(), "u1");
        let s = Session::begin(st.as_ref(), "u3").await.expect("scan");
        assert!(
            s.allocate_ip(&c, Some("10.43.0.5".parse().expect("ip")))
                .is_ok()
        );
        assert!(s.allocate_port((30000, 32767), Some(30001)).is_ok());
    }

    #[tokio::test]
    async fn concurrent_allocations_never_collide() {
        let st = store();
        let c = Cidr::parse("10.96.0.0/27").expect("cidr");
        let mut tasks = Vec::new();
        for i in 0..30 {
            let st = st.clone();
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let s = Session::begin(st.as_ref(), &format!("svc-{i}"))
                    .await
                    .expect("scan");
                (
                    s.allocate_ip(&c, None),
                    s.allocate_port((30000, 30031), None),
                )
            }));
        }
        let mut ips = HashSet::new();
        let mut ports = HashSet::new();
        for t in tasks {
            let (ip, port) = t.await.expect("join");
            assert!(ips.insert(ip.expect("ip")), "duplicate ip");
            assert!(ports.insert(port.expect("port")), "duplicate port");
        }
        assert_eq!(ips.len(), 30);
    }
}
