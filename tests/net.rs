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
    assert!(
        ns.pids().contains(&(s.pid() as i32)),
        "server not in {}",
        ns.name
    );
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
    let o = Command::new("ip")
        .args(["-o", "link", "show", "v0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "v0 not visible from the inner run");
}

// ---- PodNetwork (each test body runs inside its own TestNetns) ----------

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rk3s::net::{self as podnet, NetConfig, PodNetwork};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh state dir under the target's tmp dir.
fn state_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "net-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn network(state: &Path) -> PodNetwork {
    PodNetwork::new(NetConfig::new(
        state.join("net"),
        "10.42.3.0/24".parse().unwrap(),
        "10.42.0.0/16".parse().unwrap(),
        "10.43.0.0/16".parse().unwrap(),
    ))
    .unwrap()
}

/// Run `argv` in the namespace mounted at `netns` (a pod's).
fn in_pod(netns: &Path, argv: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("--")
        .args(argv)
        .output()
        .unwrap()
}

fn ping_from(netns: &Path, to: &str) -> bool {
    in_pod(netns, &["busybox", "ping", "-c", "1", "-W", "3", to])
        .status
        .success()
}

fn sh(argv: &[&str]) -> String {
    let o = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Removes the state dir (and, on failure, the network) at the end.
struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podnet::cleanup_all(&self.0.join("net"));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn two_pods_reach_each_other_and_the_gateway() {
    let Some(_ns) = netns::inside("two_pods_reach_each_other_and_the_gateway") else {
        return;
    };
    let state = state_dir();
    let _c = Cleanup(state.clone());
    let net = network(&state);
    let (a, b) = rt().block_on(async {
        let a = net.setup("pod-a").await.unwrap();
        let b = net.setup("pod-b").await.unwrap();
        (a, b)
    });
    assert_eq!(a.ip.to_string(), "10.42.3.2");
    assert_eq!(b.ip.to_string(), "10.42.3.3");
    assert_eq!(a.gateway.to_string(), "10.42.3.1");
    assert_eq!(a.prefix_len, 24);

    // Inside the pod: eth0 with the address, lo up, default route via the bridge.
    let addr = String::from_utf8_lossy(&in_pod(&a.netns_path, &["ip", "-4", "-o", "addr"]).stdout)
        .into_owned();
    assert!(
        addr.contains("eth0    inet 10.42.3.2/24")
            || addr.contains("eth0 inet 10.42.3.2/24")
            || addr.contains("10.42.3.2/24"),
        "{addr}"
    );
    assert!(addr.contains("lo"), "{addr}");
    let route =
        String::from_utf8_lossy(&in_pod(&a.netns_path, &["ip", "route", "show", "default"]).stdout)
            .into_owned();
    assert!(route.contains("default via 10.42.3.1 dev eth0"), "{route}");

    // Host side: the bridge holds the gateway; both host veths are its ports.
    let br = sh(&["ip", "-4", "-o", "addr", "show", "dev", "rk3s0"]);
    assert!(br.contains("10.42.3.1/24"), "{br}");
    let ports = sh(&["ip", "-o", "link", "show", "master", "rk3s0"]);
    for key in ["pod-a", "pod-b"] {
        assert!(ports.contains(&podnet::host_veth_name(key)), "{ports}");
    }
    assert_eq!(sh(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(), "1");

    assert!(
        ping_from(&a.netns_path, "10.42.3.3"),
        "pod-a cannot ping pod-b"
    );
    assert!(
        ping_from(&b.netns_path, "10.42.3.2"),
        "pod-b cannot ping pod-a"
    );
    assert!(
        ping_from(&a.netns_path, "10.42.3.1"),
        "pod-a cannot ping the gateway"
    );
    // The node reaches pods directly.
    let o = Command::new("busybox")
        .args(["ping", "-c", "1", "-W", "3", "10.42.3.3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "the node cannot ping pod-b");

    // set-up again is a no-op with the same answer.
    let again = rt().block_on(net.setup("pod-a")).unwrap();
    assert_eq!(again, a);
    assert!(ping_from(&a.netns_path, "10.42.3.3"));
}

/// Egress leaves with the node's address: a host outside the cluster with
/// no route back to the pod CIDR answers a pod's ping only if it was
/// masqueraded.
#[test]
fn egress_is_masqueraded() {
    let Some(_ns) = netns::inside("egress_is_masqueraded") else {
        return;
    };
    let state = state_dir();
    let _c = Cleanup(state.clone());
    let net = network(&state);
    let pod = rt().block_on(net.setup("pod-a")).unwrap();

    // "outside": a namespace behind the node, 198.51.100.0/24, no default route.
    let outside = state.join("outside");
    podnet::netns::create(&outside).unwrap();
    let out = outside.display().to_string();
    sh(&[
        "ip", "link", "add", "x0", "type", "veth", "peer", "name", "x1", "netns", &out,
    ]);
    sh(&["ip", "addr", "add", "198.51.100.1/24", "dev", "x0"]);
    sh(&["ip", "link", "set", "x0", "up"]);
    let in_out = |args: &[&str]| {
        let o = in_pod(&outside, args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    in_out(&["ip", "addr", "add", "198.51.100.2/24", "dev", "x1"]);
    in_out(&["ip", "link", "set", "x1", "up"]);
    in_out(&["ip", "link", "set", "lo", "up"]);

    let table = sh(&["nft", "list", "table", "ip", "rk3s"]);
    assert!(
        table.contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16")
            && table.contains("masquerade"),
        "{table}"
    );
    assert!(
        ping_from(&pod.netns_path, "198.51.100.2"),
        "no masqueraded egress:\n{table}"
    );

    // Without our table the same ping gets no answer: it was the masquerade.
    sh(&["nft", "delete", "table", "ip", "rk3s"]);
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("conntrack").arg("-F").output();
    assert!(
        !ping_from(&pod.netns_path, "198.51.100.2"),
        "answered without masquerading"
    );

    let _ = Command::new("ip").args(["link", "del", "x0"]).output();
    podnet::netns::remove(&outside).unwrap();
}

#[test]
fn addresses_survive_restart_and_teardown_releases() {
    let Some(_ns) = netns::inside("addresses_survive_restart_and_teardown_releases") else {
        return;
    };
    let state = state_dir();
    let _c = Cleanup(state.clone());
    let a = {
        let net = network(&state);
        rt().block_on(net.setup("pod-a")).unwrap()
    };
    // A new PodNetwork on the same state dir: an agent restart.
    let net = network(&state);
    assert_eq!(net.ip_of("pod-a"), Some(a.ip));
    assert_eq!(net.pods(), vec!["pod-a".to_string()]);
    let b = rt().block_on(net.setup("pod-b")).unwrap();
    assert_ne!(b.ip, a.ip);
    assert_eq!(rt().block_on(net.setup("pod-a")).unwrap(), a);
    assert!(ping_from(&b.netns_path, &a.ip.to_string()));

    rt().block_on(net.teardown("pod-a")).unwrap();
    assert_eq!(net.ip_of("pod-a"), None);
    assert!(!a.netns_path.exists(), "netns mount left behind");
    let links = sh(&["ip", "-o", "link"]);
    assert!(!links.contains(&podnet::host_veth_name("pod-a")), "{links}");
    assert!(links.contains(&podnet::host_veth_name("pod-b")), "{links}");
    // Idempotent, also for a pod that never had a network.
    rt().block_on(net.teardown("pod-a")).unwrap();
    rt().block_on(net.teardown("never-set-up")).unwrap();
    let ip: IpAddr = net.ip_of("pod-b").unwrap();
    assert_eq!(ip, b.ip);
}

#[test]
fn cleanup_all_leaves_nothing() {
    let Some(_ns) = netns::inside("cleanup_all_leaves_nothing") else {
        return;
    };
    let state = state_dir();
    let _c = Cleanup(state.clone());
    let net = network(&state);
    let (a, b) = rt().block_on(async {
        (
            net.setup("pod-a").await.unwrap(),
            net.setup("pod-b").await.unwrap(),
        )
    });
    podnet::cleanup_all(&state.join("net")).unwrap();
    let links = sh(&["ip", "-o", "link"]);
    assert!(!links.contains("rk3s0"), "{links}");
    assert!(!links.contains("veth"), "{links}");
    assert!(!a.netns_path.exists() && !b.netns_path.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&state.display().to_string()), "{mounts}");
    let tables = sh(&["nft", "list", "tables"]);
    assert!(!tables.contains("ip rk3s"), "{tables}");
    assert!(net.ip_of("pod-a").is_none());
    // And again on nothing.
    podnet::cleanup_all(&state.join("net")).unwrap();
}

/// The node's address and the pods' MTU come from the default route's
/// interface (v0 in the test namespace).
#[test]
fn node_ip_and_mtu_follow_the_default_route() {
    let Some(ns) = netns::inside("node_ip_and_mtu_follow_the_default_route") else {
        return;
    };
    sh(&["ip", "link", "set", "v0", "mtu", "1400"]);
    let state = state_dir();
    let _c = Cleanup(state.clone());
    let net = network(&state);
    let (ip, pod) = rt().block_on(async {
        (
            podnet::node_ip().await.unwrap(),
            net.setup("pod-a").await.unwrap(),
        )
    });
    assert_eq!(ip, Some(ns.node_ip));
    let link = String::from_utf8_lossy(
        &in_pod(&pod.netns_path, &["ip", "-o", "link", "show", "eth0"]).stdout,
    )
    .into_owned();
    assert!(link.contains("mtu 1400"), "{link}");
    let br = sh(&["ip", "-o", "link", "show", "rk3s0"]);
    assert!(br.contains("mtu 1400"), "{br}");
}

/// Many pods set up at once (the agent starts pods concurrently) get
/// distinct addresses and working interfaces.
#[test]
fn concurrent_setups_get_distinct_addresses() {
    let Some(_ns) = netns::inside("concurrent_setups_get_distinct_addresses") else {
        return;
    };
    let state = state_dir();
    let _c = Cleanup(state.clone());
    let net = network(&state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let pods = rt.block_on(async {
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let net = net.clone();
                tokio::spawn(async move { net.setup(&format!("pod-{i}")).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    });
    let mut ips: Vec<IpAddr> = pods.iter().map(|p| p.ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 12, "{ips:?}");
    assert!(ping_from(&pods[0].netns_path, &pods[11].ip.to_string()));
    assert!(ping_from(&pods[11].netns_path, &pods[5].ip.to_string()));
}

// ---- through the real agent -------------------------------------------

/// The test images (conformance/images/build.py; cached after the first run).
fn web_image_archive() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-images");
    let o = Command::new("python3")
        .arg(root.join("conformance/images/build.py"))
        .env("RK3S_TEST_IMAGES", &out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "build.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.join("archives/web_1.oci.tar")
}

const WEB_POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"NAME"},
 "spec":{"containers":[{"name":"web","image":"rk3s-test/web:1","imagePullPolicy":"Never"}]}}"#;

/// Pods started by the agent get addresses from the node's podCIDR on the
/// bridge, reach each other and are reachable from the node, get the
/// kubelet's resolv.conf and hosts files, and lose their interface and
/// address when deleted.
#[test]
fn agent_pods_get_addresses_and_reach_each_other() {
    let ns = TestNetns::create();
    let s = Server::builder().netns(&ns).start();
    let o = Command::new(common::RK3S)
        .args(["image", "import", "--data-dir"])
        .arg(&s.data_dir)
        .arg(web_image_archive())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    for name in ["web-a", "web-b"] {
        s.k_in(&WEB_POD.replace("NAME", name), &["apply", "-f", "-"]);
    }
    let mut ips = Vec::new();
    for name in ["web-a", "web-b"] {
        let mut pod = serde_json::Value::Null;
        let ok = wait_until(Duration::from_secs(120), || {
            pod = s.k_json(&["get", "pod", name]);
            pod["status"]["phase"] == "Running" && pod["status"]["podIP"].is_string()
        });
        assert!(ok, "{name} not running with an IP: {:#}", pod["status"]);
        ips.push(pod["status"]["podIP"].as_str().unwrap().to_string());
    }
    let node = s.k_json(&["get", "node", &ns.name]);
    let cidr: rk3s::config::Cidr = node["spec"]["podCIDR"].as_str().unwrap().parse().unwrap();
    for ip in &ips {
        assert!(cidr.contains(ip.parse().unwrap()), "{ip} not in {cidr}");
    }
    assert_ne!(ips[0], ips[1]);

    // From the node, and from pod to pod.
    let page = ns.run(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        &format!("http://{}:8080/", ips[0]),
    ]);
    assert!(page.contains("on web-a"), "{page}");
    let page = s.k(&[
        "exec",
        "web-b",
        "--",
        "wget",
        "-qO-",
        &format!("http://{}:8080/", ips[0]),
    ]);
    assert!(page.contains("on web-a"), "{page}");

    // The resolver and hosts files.
    let resolv = s.k(&["exec", "web-a", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
    );
    let hosts = s.k(&["exec", "web-a", "--", "cat", "/etc/hosts"]);
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.\n"),
        "{hosts}"
    );
    assert!(hosts.contains(&format!("\n{}\tweb-a\n", ips[0])), "{hosts}");

    // Deleting a pod removes its veth and frees its address.
    let uid = s.k(&["get", "pod", "web-a", "-o", "jsonpath={.metadata.uid}"]);
    let veth = podnet::host_veth_name(&uid);
    assert!(ns.run(&["ip", "-o", "link"]).contains(&veth));
    s.k(&["delete", "pod", "web-a", "--wait=true"]);
    assert!(
        wait_until(Duration::from_secs(60), || !ns
            .run(&["ip", "-o", "link"])
            .contains(&veth)),
        "veth {veth} of a deleted pod is still there"
    );
    let ipam = s.data_dir.join("agent/net/ipam").join(&ips[0]);
    assert!(
        wait_until(Duration::from_secs(30), || !ipam.exists()),
        "{ips:?}: the address of a deleted pod is still allocated"
    );
}
