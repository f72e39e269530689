//! Pod egress masquerading and forwarding, in an nftables table of our own.
//!
//! Rules go to the `nft` binary as one `nft -f -` script: the whole table is
//! replaced in one kernel transaction (so re-applying is idempotent and never
//! leaves a half-written table), the text is what `nft list table` prints
//! back, and there is no ABI to track (the `nftables` crate only wraps the
//! same binary with JSON).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::config::Cidr;

use super::NetError;

/// The table's family and name: `nft list table ip rk3s`.
pub const TABLE_FAMILY: &str = "ip";
pub const TABLE_NAME: &str = "rk3s";

/// The ruleset: traffic from pods to anywhere outside the cluster CIDR is
/// masqueraded behind the node's address (pod-to-pod and pod-to-Service
/// traffic keeps the pod's address); pod traffic is accepted in forward.
pub fn ruleset(cluster_cidr: &Cidr, bridge: &str) -> String {
    let c = cluster_cidr;
    // "add table; delete table; table {...}" replaces it in one transaction,
    // whether or not it existed.
    format!(
        "add table {TABLE_FAMILY} {TABLE_NAME}
delete table {TABLE_FAMILY} {TABLE_NAME}
table {TABLE_FAMILY} {TABLE_NAME} {{
	chain postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr {c} ip daddr != {c} ip daddr != 224.0.0.0/4 masquerade fully-random
	}}
	chain forward {{
		type filter hook forward priority filter; policy accept;
		iifname \"{bridge}\" accept
		oifname \"{bridge}\" accept
		ip saddr {c} accept
		ip daddr {c} accept
	}}
}}
"
    )
}

fn nft(script: &str) -> Result<(), NetError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Nftables(format!("cannot run nft: {e} (install nftables)")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| NetError::Nftables(format!("write to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Nftables(format!("wait for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Nftables(format!(
            "nft failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Install (or replace) our table. Blocking: call from a blocking context.
pub fn apply(cluster_cidr: &Cidr, bridge: &str) -> Result<(), NetError> {
    nft(&ruleset(cluster_cidr, bridge))
}

/// Remove our table; absent is fine.
pub fn delete_table() -> Result<(), NetError> {
    nft(&format!(
        "add table {TABLE_FAMILY} {TABLE_NAME}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masquerades_only_what_leaves_the_cluster() {
        let c: Cidr = "10.42.0.0/16".parse().unwrap();
        let r = ruleset(&c, "rk3s0");
        assert!(
            r.contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16"),
            "{r}"
        );
        assert!(r.contains("masquerade"), "{r}");
        assert!(r.contains("type nat hook postrouting"), "{r}");
        assert!(r.contains("iifname \"rk3s0\" accept"), "{r}");
    }
}
