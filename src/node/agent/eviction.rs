//! Node-pressure eviction signals, as the kubelet's eviction manager with
//! its default hard thresholds: memory.available < 100Mi, nodefs.available
//! < 10%, and PIDs available < 10% of pid_max. Under pressure the agent
//! evicts pods, BestEffort first, then Burstable, then Guaranteed; the
//! newest first within a class (upstream also ranks by usage above
//! requests; we have no per-pod usage yet).

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use super::qos::{QosClass, qos_class};
use super::registration::{fs_usage, meminfo};

/// memory.available hard threshold (bytes).
pub const MEMORY_AVAILABLE_HARD: u64 = 100 << 20;
/// nodefs.available hard threshold (percent of the filesystem).
pub const NODEFS_AVAILABLE_PERCENT: u64 = 10;
pub const PID_AVAILABLE_PERCENT: u64 = 10;

/// Which signals are past their thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// Measured signals (bytes, counts).
#[derive(Clone, Copy, Debug, Default)]
pub struct Signals {
    pub memory_available: Option<u64>,
    pub nodefs_total: Option<u64>,
    pub nodefs_available: Option<u64>,
    pub pids_used: Option<u64>,
    pub pid_max: Option<u64>,
}

impl Signals {
    pub fn read(agent_dir: &Path) -> Signals {
        let fs = fs_usage(agent_dir);
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let pids_used = std::fs::read_dir("/proc").ok().map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count() as u64
        });
        Signals {
            memory_available: meminfo("MemAvailable"),
            nodefs_total: fs.map(|f| f.0),
            nodefs_available: fs.map(|f| f.1),
            pids_used,
            pid_max,
        }
    }

    pub fn pressure(&self) -> Pressure {
        Pressure {
            memory: self
                .memory_available
                .is_some_and(|a| a < MEMORY_AVAILABLE_HARD),
            disk: matches!((self.nodefs_total, self.nodefs_available),
                (Some(t), Some(a)) if t > 0 && a * 100 < t * NODEFS_AVAILABLE_PERCENT),
            pid: matches!((self.pid_max, self.pids_used),
                (Some(max), Some(used)) if max > 0 && (max.saturating_sub(used)) * 100 < max * PID_AVAILABLE_PERCENT),
        }
    }
}

pub fn observe(agent_dir: &Path) -> Pressure {
    Signals::read(agent_dir).pressure()
}

/// The eviction message upstream writes into the pod's status.
pub fn message(resource: &str) -> String {
    format!("The node was low on resource: {resource}. ")
}

/// The pod to evict first among `pods` (running, not critical): the
/// lowest QoS class, newest first.
pub fn pick_victim(pods: &[Pod]) -> Option<&Pod> {
    let rank = |p: &Pod| match qos_class(p) {
        QosClass::BestEffort => 0,
        QosClass::Burstable => 1,
        QosClass::Guaranteed => 2,
    };
    pods.iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.priority_class_name.as_deref())
                .is_none_or(|c| c != "system-node-critical" && c != "system-cluster-critical")
        })
        .min_by(|a, b| {
            rank(a).cmp(&rank(b)).then_with(|| {
                // Newest first: a later creation time ranks lower.
                let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(b).cmp(&t(a))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds() {
        let s = Signals {
            memory_available: Some(50 << 20),
            nodefs_total: Some(1000),
            nodefs_available: Some(99),
            pids_used: Some(10),
            pid_max: Some(1000),
        };
        assert_eq!(
            s.pressure(),
            Pressure {
                memory: true,
                disk: true,
                pid: false
            }
        );
        let s = Signals {
            memory_available: Some(1 << 30),
            nodefs_total: Some(1000),
            nodefs_available: Some(500),
            pids_used: Some(950),
            pid_max: Some(1000),
        };
        assert_eq!(
            s.pressure(),
            Pressure {
                memory: false,
                disk: false,
                pid: true
            }
        );
        assert_eq!(Signals::default().pressure(), Pressure::default());
    }

    #[test]
    fn best_effort_goes_first() {
        let pod = |name: &str, qos: &str, created: &str| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": name, "creationTimestamp": created},
                "spec": {"containers": [{"name": "c"}]}, "status": {"qosClass": qos}}),
            )
            .expect("pod")
        };
        let pods = vec![
            pod("g", "Guaranteed", "2025-01-01T00:00:00Z"),
            pod("b-old", "BestEffort", "2025-01-01T00:00:00Z"),
            pod("b-new", "BestEffort", "2025-01-02T00:00:00Z"),
            pod("u", "Burstable", "2025-01-03T00:00:00Z"),
        ];
        assert_eq!(
            pick_victim(&pods).and_then(|p| p.metadata.name.as_deref()),
            Some("b-new")
        );
        assert!(pick_victim(&[]).is_none());
    }
}
