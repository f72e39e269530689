//! Pod networking and the hermetic test namespace it runs in.
//!
//! Nothing here touches the host's network namespace: tests that need the
//! namespace for their own logic (PodNetwork makes bridges, veths and
//! nftables tables) run the test binary again inside a fresh `TestNetns`
//! (`netns::inside`), so every thread and child of that run is confined.

mod common;

use std::process::Command;
use std::time::Duration;

use common::netns::{self, TestNetns};
use common::{Server, wait_until};

/// The namespace has only lo and the veth pair, an address and a default
/// route; dropping it kills what runs in it and deletes it.
#[test]
fn test_netns_is_hermetic_and_cleaned_up() {
    let ns = TestNetns::create();
    let links = ns.run(&["ip", "-o", "link", "show"]);
    let mut names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or(""))
        .collect();
    names.sort();
    assert_eq!(names, ["lo", "v0", "v1"], "{links}");
    let addrs = ns.run(&["ip", "-4", "-o", "addr", "show", "dev", "v0"]);
    assert!(addrs.contains("100.64.0.2/24"), "{addrs}");
    let routes = ns.run(&["ip", "route", "show", "default"]);
    assert!(routes.contains("default via 100.64.0.1 dev v0"), "{routes}");

    // A process left running inside is killed on drop, then the namespace goes.
    let mut sleeper = ns.cmd("sleep").arg("600").spawn().expect("spawn sleep");
    assert!(wait_until(Duration::from_secs(5), || !ns.pids().is_empty()));
    let name = ns.name.clone();
    drop(ns);
    let status = sleeper.wait().expect("wait sleep");
    assert!(!status.success(), "sleep should have been killed: {status}");
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&name),
        "{name} still listed"
    );
}

/// A server started with `.netns(&ns)` listens only inside the namespace,
/// and the harness's kubectl and curl reach it there.
#[test]
fn server_runs_inside_test_netns() {
    let ns = TestNetns::create();
    let mut s = Server::builder().netns(&ns).start();
    assert!(ns.pids().contains(&(s.pid() as i32)), "server not in {}", ns.name);
    let out = s.k(&["get", "ns", "default", "-o", "name"]);
    assert_eq!(out.trim(), "namespace/default");
    assert_eq!(s.get("/readyz").status, 200);
    // From the host's namespace the port is closed.
    let host = Command::new("curl")
        .args(["-sk", "--noproxy", "*", "--max-time", "2"])
        .arg(format!("https://127.0.0.1:{}/readyz", s.port))
        .output()
        .unwrap();
    assert!(!host.status.success(), "reached the server from the host");
}

/// `netns::inside` runs the test body in the namespace: the inner run sees
/// the namespace's interfaces.
#[test]
fn inside_runs_test_body_in_netns() {
    let Some(ns) = netns::inside("inside_runs_test_body_in_netns") else {
        return;
    };
    let me = std::process::id() as i32;
    assert!(ns.pids().contains(&me), "inner run is not in {}", ns.name);
    let o = Command::new("ip").args(["-o", "link", "show", "v0"]).output().unwrap();
    assert!(o.status.success(), "v0 not visible from the inner run");
}
