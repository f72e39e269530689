//! Endpoints and EndpointSlices through real kubectl: they follow the
//! selected pods' IPs and readiness (set here through the status
//! subresource), resolve named target ports, handle headless Services and
//! publishNotReadyAddresses, and leave selector-less Services alone.

mod common;

use std::time::Duration;

use common::{Server, json, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ep, labels: {team: a}}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9090, targetPort: 9100}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: ep}
spec:
  clusterIP: None
  selector: {app: web}
---
apiVersion: v1
kind: Service
metadata: {name: peers, namespace: ep}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: web}
  ports: [{name: peer, port: 7000}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-a, namespace: ep, labels: {app: web}}
spec:
  containers:
  - {name: c, image: nginx, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-b, namespace: ep, labels: {app: web}}
spec:
  hostname: web-b
  subdomain: db
  containers:
  - {name: c, image: nginx, ports: [{name: http, containerPort: 8081}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: ep, labels: {app: other}}
spec:
  containers: [{name: c, image: nginx}]
"#;

/// Give a pod an IP and a Ready condition through the status subresource.
fn set_status(s: &Server, pod: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = format!(
        r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"{status}","lastTransitionTime":"2025-01-01T00:00:00Z"}}]}}}}"#
    );
    s.k(&[
        "patch",
        "pod",
        pod,
        "-n",
        "ep",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

fn endpoints(s: &Server, name: &str) -> Value {
    let out = s.k(&[
        "get",
        "endpoints",
        name,
        "-n",
        "ep",
        "--ignore-not-found",
        "-o",
        "json",
    ]);
    if out.trim().is_empty() {
        Value::Null
    } else {
        json(&out)
    }
}

fn slices(s: &Server, svc: &str) -> Vec<Value> {
    let v = s.k_json(&[
        "get",
        "endpointslices",
        "-n",
        "ep",
        "-l",
        &format!("kubernetes.io/service-name={svc}"),
    ]);
    v["items"].as_array().cloned().unwrap_or_default()
}

/// (ip, ready) of every endpoint of a Service's slices, sorted.
fn slice_endpoints(s: &Server, svc: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = slices(s, svc)
        .iter()
        .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["addresses"][0].as_str().unwrap_or("").to_string(),
                e["conditions"]["ready"] == true,
            )
        })
        .collect();
    out.sort();
    out
}

fn ips(subset_list: &Value) -> Vec<String> {
    let mut v: Vec<String> = subset_list
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["ip"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

/// (ready ips, not ready ips, "name:port" sorted) of an Endpoints with one subset at most.
fn summary(ep: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let subsets = ep["subsets"].as_array().cloned().unwrap_or_default();
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut ports = Vec::new();
    for s in &subsets {
        ready.extend(ips(&s["addresses"]));
        not_ready.extend(ips(&s["notReadyAddresses"]));
        for p in s["ports"].as_array().into_iter().flatten() {
            let p = format!("{}:{}", p["name"].as_str().unwrap_or(""), p["port"]);
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
    }
    for v in [&mut ready, &mut not_ready, &mut ports] {
        v.sort();
        v.dedup();
    }
    (ready, not_ready, ports)
}

#[track_caller]
fn wait_for(s: &Server, what: &str, mut f: impl FnMut() -> bool, show: impl Fn() -> String) {
    assert!(
        wait_until(WAIT, &mut f),
        "{what}: {}\n{}",
        show(),
        s.log_tail(5)
    );
}

#[test]
fn endpoints_and_slices_follow_pods() {
    let s = Server::start();
    s.k(&["create", "namespace", "ep"]);
    s.k_in(OBJECTS, &["apply", "-f", "-"]);

    // No pod has an IP yet: an empty Endpoints, one placeholder slice.
    wait_for(
        &s,
        "no Endpoints for web",
        || !endpoints(&s, "web").is_null(),
        String::new,
    );
    let ep = endpoints(&s, "web");
    assert!(
        ep["subsets"].is_null() || ep["subsets"] == serde_json::json!([]),
        "{ep}"
    );
    assert_eq!(ep["metadata"]["labels"]["team"], "a");
    assert_eq!(
        ep["metadata"]["labels"]["endpoints.kubernetes.io/managed-by"],
        "endpoint-controller"
    );
    wait_for(
        &s,
        "no placeholder slice",
        || slices(&s, "web").len() == 1,
        || format!("{:?}", slices(&s, "web")),
    );
    let placeholder = &slices(&s, "web")[0];
    assert_eq!(placeholder["addressType"], "IPv4");
    assert_eq!(
        placeholder["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(
        placeholder["metadata"]["ownerReferences"][0]["kind"],
        "Service"
    );
    assert_eq!(placeholder["metadata"]["ownerReferences"][0]["name"], "web");

    // A ready pod: its IP with the named port resolved per pod.
    set_status(&s, "web-a", "10.42.0.11", true);
    wait_for(
        &s,
        "web-a not in Endpoints",
        || summary(&endpoints(&s, "web")).0 == vec!["10.42.0.11"],
        || endpoints(&s, "web").to_string(),
    );
    let (_, _, ports) = summary(&endpoints(&s, "web"));
    assert_eq!(ports, vec!["http:8080", "metrics:9100"]);
    let ep = endpoints(&s, "web");
    assert_eq!(
        ep["subsets"][0]["addresses"][0]["targetRef"]["name"],
        "web-a"
    );
    assert_eq!(ep["subsets"][0]["addresses"][0]["targetRef"]["kind"], "Pod");
    assert!(
        ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string(),
        "{ep}"
    );
    wait_for(
        &s,
        "web-a not in slices",
        || slice_endpoints(&s, "web") == vec![("10.42.0.11".to_string(), true)],
        || format!("{:?}", slices(&s, "web")),
    );
    let sl = slices(&s, "web");
    assert_eq!(sl.len(), 1, "the placeholder is reused: {sl:?}");
    let e = &sl[0]["endpoints"][0];
    assert_eq!(
        e["conditions"],
        serde_json::json!({"ready": true, "serving": true, "terminating": false})
    );
    assert_eq!(e["targetRef"]["name"], "web-a");
    let mut sports: Vec<String> = sl[0]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{}:{}", p["name"].as_str().unwrap_or(""), p["port"]))
        .collect();
    sports.sort();
    assert_eq!(sports, vec!["http:8080", "metrics:9100"]);

    // A pod that is not ready: notReadyAddresses, ready=false in its slice.
    // Its http port is another number, so it lands in its own subset/slice.
    set_status(&s, "web-b", "10.42.0.12", false);
    wait_for(
        &s,
        "web-b not listed as not ready",
        || summary(&endpoints(&s, "web")).1 == vec!["10.42.0.12"],
        || endpoints(&s, "web").to_string(),
    );
    wait_for(
        &s,
        "web-b not in slices",
        || {
            slice_endpoints(&s, "web")
                == vec![
                    ("10.42.0.11".to_string(), true),
                    ("10.42.0.12".to_string(), false),
                ]
        },
        || format!("{:?}", slices(&s, "web")),
    );
    assert_eq!(slices(&s, "web").len(), 2, "one slice per port set");

    // It becomes ready.
    set_status(&s, "web-b", "10.42.0.12", true);
    wait_for(
        &s,
        "web-b not ready in Endpoints",
        || summary(&endpoints(&s, "web")).0 == vec!["10.42.0.11", "10.42.0.12"],
        || endpoints(&s, "web").to_string(),
    );
    wait_for(
        &s,
        "web-b not ready in slices",
        || {
            slice_endpoints(&s, "web")
                == vec![
                    ("10.42.0.11".to_string(), true),
                    ("10.42.0.12".to_string(), true),
                ]
        },
        || format!("{:?}", slices(&s, "web")),
    );
    let described = s.k(&["describe", "service", "web", "-n", "ep"]);
    assert!(described.contains("10.42.0.11:8080"), "{described}");

    // Headless without ports: addresses only, hostname from hostname+subdomain.
    wait_for(
        &s,
        "headless Endpoints",
        || summary(&endpoints(&s, "db")).0 == vec!["10.42.0.11", "10.42.0.12"],
        || endpoints(&s, "db").to_string(),
    );
    let db = endpoints(&s, "db");
    assert!(db["subsets"][0]["ports"].is_null(), "{db}");
    assert_eq!(
        db["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    let hostnames: Vec<String> = db["subsets"][0]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["hostname"].as_str().map(String::from))
        .collect();
    assert_eq!(hostnames, vec!["web-b"]);
    assert_eq!(
        slices(&s, "db")[0]["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );

    // Relabelled away: gone from the Service.
    s.k(&[
        "label",
        "pod",
        "web-a",
        "-n",
        "ep",
        "app=gone",
        "--overwrite",
    ]);
    wait_for(
        &s,
        "relabelled pod still listed",
        || summary(&endpoints(&s, "web")).0 == vec!["10.42.0.12"],
        || endpoints(&s, "web").to_string(),
    );
    wait_for(
        &s,
        "relabelled pod still in slices",
        || slice_endpoints(&s, "web") == vec![("10.42.0.12".to_string(), true)],
        || format!("{:?}", slices(&s, "web")),
    );
    assert_eq!(slices(&s, "web").len(), 1, "the emptied slice is deleted");

    // publishNotReadyAddresses: a not-ready pod is still an address.
    set_status(&s, "web-b", "10.42.0.12", false);
    wait_for(
        &s,
        "publishNotReadyAddresses",
        || summary(&endpoints(&s, "peers")).0 == vec!["10.42.0.12"],
        || endpoints(&s, "peers").to_string(),
    );
    assert_eq!(
        slice_endpoints(&s, "peers"),
        vec![("10.42.0.12".to_string(), true)]
    );
    wait_for(
        &s,
        "not-ready pod still ready in web",
        || summary(&endpoints(&s, "web")).1 == vec!["10.42.0.12"],
        || endpoints(&s, "web").to_string(),
    );

    // Deleting the pod empties the Endpoints.
    s.k(&["delete", "pod", "web-b", "-n", "ep", "--wait=false"]);
    wait_for(
        &s,
        "deleted pod still listed",
        || {
            let (r, n, _) = summary(&endpoints(&s, "web"));
            r.is_empty() && n.is_empty()
        },
        || endpoints(&s, "web").to_string(),
    );

    // Deleting the Service deletes its Endpoints and slices.
    s.k(&["delete", "service", "web", "-n", "ep"]);
    wait_for(
        &s,
        "Endpoints of a deleted Service",
        || endpoints(&s, "web").is_null(),
        || endpoints(&s, "web").to_string(),
    );
    wait_for(
        &s,
        "slices of a deleted Service",
        || slices(&s, "web").is_empty(),
        || format!("{:?}", slices(&s, "web")),
    );
}

#[test]
fn services_without_selectors_are_left_alone() {
    let s = Server::start();
    s.k(&["create", "namespace", "ep"]);
    s.k_in(
        r#"
apiVersion: v1
kind: Endpoints
metadata: {name: ext, namespace: ep}
subsets: [{addresses: [{ip: 192.168.1.10}], ports: [{port: 5432}]}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: ep}
spec:
  ports: [{port: 5432}]
"#,
        &["apply", "-f", "-"],
    );
    std::thread::sleep(Duration::from_secs(2));
    let ep = endpoints(&s, "ext");
    assert_eq!(summary(&ep).0, vec!["192.168.1.10"], "{ep}");
    assert!(
        ep["metadata"]["labels"].is_null(),
        "user-managed Endpoints were relabelled: {ep}"
    );
    assert!(slices(&s, "ext").is_empty());
    // The API server's own Endpoints are not touched.
    let k = s.k_json(&["get", "endpoints", "kubernetes", "-n", "default"]);
    assert!(
        k["metadata"]["labels"]["endpoints.kubernetes.io/managed-by"].is_null(),
        "{k}"
    );
}

#[test]
fn edited_or_deleted_outputs_are_repaired() {
    let s = Server::start();
    s.k(&["create", "namespace", "ep"]);
    s.k_in(OBJECTS, &["apply", "-f", "-"]);
    set_status(&s, "web-a", "10.42.0.11", true);
    wait_for(
        &s,
        "web-a not in Endpoints",
        || summary(&endpoints(&s, "web")).0 == vec!["10.42.0.11"],
        || endpoints(&s, "web").to_string(),
    );
    wait_for(
        &s,
        "web-a not in slices",
        || slice_endpoints(&s, "web") == vec![("10.42.0.11".to_string(), true)],
        || format!("{:?}", slices(&s, "web")),
    );
    // Someone rewrites the Endpoints: the controller puts it back.
    s.k(&[
        "patch",
        "endpoints",
        "web",
        "-n",
        "ep",
        "--type=merge",
        "-p",
        r#"{"subsets":[{"addresses":[{"ip":"10.9.9.9"}],"ports":[{"name":"http","port":1}]}]}"#,
    ]);
    wait_for(
        &s,
        "tampered Endpoints not restored",
        || summary(&endpoints(&s, "web")).0 == vec!["10.42.0.11"],
        || endpoints(&s, "web").to_string(),
    );
    // Someone deletes the slice: it comes back.
    let name = slices(&s, "web")[0]["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    s.k(&["delete", "endpointslice", &name, "-n", "ep"]);
    wait_for(
        &s,
        "deleted slice not recreated",
        || {
            let sl = slices(&s, "web");
            sl.len() == 1 && sl[0]["metadata"]["name"] != name.as_str()
        },
        || format!("{:?}", slices(&s, "web")),
    );
    assert_eq!(
        slice_endpoints(&s, "web"),
        vec![("10.42.0.11".to_string(), true)]
    );
    // And the Endpoints object too.
    s.k(&["delete", "endpoints", "web", "-n", "ep"]);
    wait_for(
        &s,
        "deleted Endpoints not recreated",
        || summary(&endpoints(&s, "web")).0 == vec!["10.42.0.11"],
        || endpoints(&s, "web").to_string(),
    );
}

#[test]
fn pods_on_simulated_nodes_become_endpoints_with_topology() {
    let s = Server::builder().arg("--simulate-nodes").arg("1").start();
    s.k(&[
        "label",
        "node",
        "sim-0",
        "topology.kubernetes.io/zone=zone-a",
    ]);
    s.k(&[
        "create",
        "deployment",
        "app",
        "--image=nginx",
        "--replicas=3",
        "--port=8080",
    ]);
    s.k(&[
        "expose",
        "deployment",
        "app",
        "--port=80",
        "--target-port=8080",
    ]);
    let ready = |s: &Server| {
        let ep = s.k(&[
            "get",
            "endpoints",
            "app",
            "--ignore-not-found",
            "-o",
            "json",
        ]);
        if ep.trim().is_empty() {
            return 0;
        }
        json(&ep)["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|ss| ss["addresses"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    };
    assert!(
        wait_until(WAIT, || ready(&s) == 3),
        "Endpoints: {}",
        s.k(&["get", "endpoints", "app", "-o", "yaml"])
    );
    let v = s.k_json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=app",
    ]);
    let eps = v["items"][0]["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(eps.len(), 3, "{v}");
    for e in &eps {
        assert_eq!(e["nodeName"], "sim-0", "{e}");
        assert_eq!(e["zone"], "zone-a", "{e}");
        assert_eq!(e["conditions"]["ready"], true, "{e}");
    }
    // Scaling down removes endpoints.
    s.k(&[
        "patch",
        "deployment",
        "app",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ]);
    assert!(
        wait_until(WAIT, || ready(&s) == 1),
        "Endpoints: {}",
        s.k(&["get", "endpoints", "app", "-o", "yaml"])
    );
}
