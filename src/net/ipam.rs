//! Per-node pod IP allocation from the node's podCIDR.
//!
//! One file per allocated address (`<dir>/<ip>`, holding the pod key), in
//! the shape of the CNI host-local plugin: allocations survive restarts,
//! a file is created with its content in one step (written aside, then
//! hard-linked into place, which fails if the address is taken), so two
//! processes cannot hand out the same address. Addresses are handed out
//! round-robin after the last one reserved, so a freed address is not reused
//! at once (a stale connection to it would reach the wrong pod).

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::config::Cidr;

use super::NetError;

const LAST_RESERVED: &str = "last_reserved_ip";

/// The allocations of one node, kept in one directory.
#[derive(Clone, Debug)]
pub struct Ipam {
    dir: PathBuf,
    /// First and last assignable addresses (network, gateway and broadcast
    /// are never handed out).
    first: u32,
    last: u32,
    range: Cidr,
}

impl Ipam {
    /// Allocations from `range` (an IPv4 podCIDR of at least 4 addresses)
    /// kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>, range: Cidr) -> Result<Ipam, NetError> {
        let IpAddr::V4(net) = range.network() else {
            return Err(NetError::Unsupported(format!(
                "pod CIDR {range}: only IPv4 pod networks are supported"
            )));
        };
        if range.host_bits() < 2 || range.host_bits() > 30 {
            return Err(NetError::Unsupported(format!(
                "pod CIDR {range}: needs between /2 and /30"
            )));
        }
        let base = u32::from(net);
        let size = 1u32 << range.host_bits();
        Ok(Ipam {
            dir: dir.into(),
            // .0 is the network, .1 the gateway (the bridge), the top the broadcast.
            first: base + 2,
            last: base + size - 2,
            range,
        })
    }

    /// The gateway: the first host address, held by the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first - 1)
    }

    pub fn range(&self) -> Cidr {
        self.range
    }

    /// The address held by `key`, if any.
    pub fn get(&self, key: &str) -> Option<Ipv4Addr> {
        self.list()
            .into_iter()
            .find(|(_, k)| k == key)
            .map(|(ip, _)| ip)
    }

    /// Every allocation: (address, pod key).
    pub fn list(&self) -> Vec<(Ipv4Addr, String)> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(Ipv4Addr, String)> = dir
            .flatten()
            .filter_map(|e| {
                let ip: Ipv4Addr = e.file_name().to_str()?.parse().ok()?;
                let key = fs::read_to_string(e.path()).ok()?;
                Some((ip, key.trim().to_string()))
            })
            .collect();
        out.sort();
        out
    }

    /// The address of `key`: the one it already holds, or a free one.
    pub fn allocate(&self, key: &str) -> Result<Ipv4Addr, NetError> {
        if key.is_empty() || key.contains(['\n', '/']) {
            return Err(NetError::Unsupported(format!("bad pod key {key:?}")));
        }
        if let Some(ip) = self.get(key) {
            return Ok(ip);
        }
        fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let count = self.last - self.first + 1;
        let start = self
            .last_reserved()
            .map(|l| if l >= self.last { self.first } else { l + 1 })
            .unwrap_or(self.first);
        for i in 0..count {
            let n = self.first + (start - self.first + i) % count;
            let ip = Ipv4Addr::from(n);
            if self.try_claim(ip, key)? {
                let _ = write_atomic(&self.dir.join(LAST_RESERVED), ip.to_string().as_bytes());
                return Ok(ip);
            }
        }
        Err(NetError::Exhausted(self.range.to_string()))
    }

    /// Give back what `key` holds (nothing if it holds nothing).
    pub fn release(&self, key: &str) -> Result<(), NetError> {
        for (ip, k) in self.list() {
            if k == key {
                let path = self.dir.join(ip.to_string());
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path, e)),
                }
            }
        }
        Ok(())
    }

    fn last_reserved(&self) -> Option<u32> {
        let text = fs::read_to_string(self.dir.join(LAST_RESERVED)).ok()?;
        let ip: Ipv4Addr = text.trim().parse().ok()?;
        let n = u32::from(ip);
        (self.first..=self.last).contains(&n).then_some(n)
    }

    /// Create `<dir>/<ip>` holding `key`, unless it exists.
    fn try_claim(&self, ip: Ipv4Addr, key: &str) -> Result<bool, NetError> {
        let path = self.dir.join(ip.to_string());
        if path.exists() {
            return Ok(false);
        }
        let tmp = self
            .dir
            .join(format!(".{ip}.{}.tmp", uuid::Uuid::new_v4().simple()));
        fs::write(&tmp, key.as_bytes()).map_err(|e| io_err(&tmp, e))?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(&path, e)),
        }
    }
}

fn io_err(path: &Path, source: io::Error) -> NetError {
    NetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write a small file so readers see the old or the new content, never half.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), NetError> {
    let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
    fs::write(&tmp, data).map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir() -> PathBuf {
        std::env::temp_dir().join(format!("rk3s-ipam-{}", uuid::Uuid::new_v4().simple()))
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn skips_network_gateway_and_broadcast_and_refuses_when_exhausted() {
        let dir = tmpdir();
        let ipam = Ipam::new(&dir, cidr("10.42.7.0/29")).unwrap();
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 42, 7, 1));
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| ipam.allocate(&format!("pod-{i}")).unwrap())
            .collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|n| Ipv4Addr::new(10, 42, 7, n)).collect();
        assert_eq!(got, want);
        let err = ipam.allocate("pod-5").unwrap_err();
        assert!(matches!(err, NetError::Exhausted(_)), "{err}");
        assert!(err.to_string().contains("10.42.7.0/29"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn same_key_same_address_and_it_persists() {
        let dir = tmpdir();
        let a = Ipam::new(&dir, cidr("10.42.0.0/24")).unwrap();
        let ip = a.allocate("uid-a").unwrap();
        assert_eq!(a.allocate("uid-a").unwrap(), ip);
        // A new instance on the same directory (a restart) sees it.
        let b = Ipam::new(&dir, cidr("10.42.0.0/24")).unwrap();
        assert_eq!(b.get("uid-a"), Some(ip));
        assert_ne!(b.allocate("uid-b").unwrap(), ip);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn release_frees_and_reuse_is_round_robin() {
        let dir = tmpdir();
        let ipam = Ipam::new(&dir, cidr("10.42.0.0/29")).unwrap();
        let first = ipam.allocate("a").unwrap();
        ipam.release("a").unwrap();
        ipam.release("a").unwrap(); // idempotent
        assert_eq!(ipam.get("a"), None);
        // The freed address is not handed out again straight away...
        assert_ne!(ipam.allocate("b").unwrap(), first);
        // ...but it is once the others are taken.
        let rest: Vec<Ipv4Addr> = (0..4)
            .map(|i| ipam.allocate(&format!("c{i}")).unwrap())
            .collect();
        assert!(rest.contains(&first), "{rest:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_ipv6_and_tiny_ranges() {
        assert!(Ipam::new(tmpdir(), cidr("fd00::/64")).is_err());
        assert!(Ipam::new(tmpdir(), cidr("10.0.0.0/31")).is_err());
    }
}
