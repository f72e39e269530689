//! The node agent with real containers: `rk3s server` with its agent on,
//! inside a test network namespace, the test images imported with
//! `rk3s image import`, driven with kubectl as a user would.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::TestNetns;
use common::{Server, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn start(ns: &TestNetns, extra: &[&str]) -> Server {
    let mut b = Server::builder().netns(ns);
    for a in extra {
        b = b.arg(*a);
    }
    let s = b.start();
    import(&s);
    s
}

fn import(s: &Server) {
    registry::import(&s.data_dir, "web_1");
}

fn pod(s: &Server, name: &str) -> Value {
    s.k_json(&["get", "pod", name])
}

#[track_caller]
fn wait_pod(s: &Server, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut p = Value::Null;
    let ok = wait_until(WAIT, || {
        p = pod(s, name);
        f(&p)
    });
    assert!(
        ok,
        "{name}: timed out waiting for {what}: {:#}\n--- server log ---\n{}",
        p["status"],
        s.log_tail(30)
    );
    p
}

fn cs<'a>(p: &'a Value, name: &str) -> &'a Value {
    for key in ["containerStatuses", "initContainerStatuses"] {
        if let Some(list) = p["status"][key].as_array()
            && let Some(c) = list.iter().find(|c| c["name"] == name)
        {
            return c;
        }
    }
    &Value::Null
}

fn condition(p: &Value, t: &str) -> String {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: web
    image: rk3s-test/web:1
    ports: [{containerPort: 8080}]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: GREETING, value: "hello $(POD_NAME)"}
"#;

/// The node registers as upstream's kubelet does (capacity, allocatable
/// minus --system-reserved, addresses, nodeInfo, conditions, podCIDR, a
/// Lease), and a pod of the web image runs for real: Running and Ready
/// with an IP from the podCIDR, serving its host name, with the kubelet's
/// environment and events.
#[test]
fn node_registers_and_a_pod_runs() {
    let ns = TestNetns::create();
    let s = start(&ns, &["--system-reserved", "cpu=100m,memory=64Mi"]);
    let node_name = ns.name.as_str();
    let mut node = Value::Null;
    assert!(
        wait_until(WAIT, || {
            node = s.k_json(&["get", "node", node_name]);
            condition_of_node(&node, "Ready") == "True"
        }),
        "node not Ready: {node:#}"
    );
    let st = &node["status"];
    assert_eq!(st["capacity"]["pods"], "110");
    for r in ["cpu", "memory", "ephemeral-storage", "pods"] {
        assert!(st["allocatable"][r].is_string(), "allocatable {r}: {st:#}");
    }
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(st["capacity"]["cpu"], cpus.to_string());
    assert_eq!(
        st["allocatable"]["cpu"],
        format!("{}m", cpus * 1000 - 100),
        "cpu minus --system-reserved"
    );
    let info = &st["nodeInfo"];
    assert_eq!(info["containerRuntimeVersion"], "rk3s://0.1.0");
    assert_eq!(info["kubeletVersion"], "v1.33.1");
    assert_eq!(info["operatingSystem"], "linux");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(info["kernelVersion"], kernel.trim());
    let addrs = st["addresses"].to_string();
    assert!(
        addrs.contains(&format!(
            "{{\"address\":\"{}\",\"type\":\"InternalIP\"}}",
            ns.node_ip
        )),
        "{addrs}"
    );
    for c in ["MemoryPressure", "PIDPressure"] {
        assert_eq!(condition_of_node(&node, c), "False", "{c}");
    }
    // DiskPressure follows the disk (nodefs.available < 10%; this
    // machine's disk may well be that full), but is always reported.
    assert!(
        ["True", "False"].contains(&condition_of_node(&node, "DiskPressure").as_str()),
        "{node:#}"
    );
    assert_eq!(node["spec"]["podCIDR"], "10.42.0.0/24");
    let lease = s.k_json(&["-n", "kube-node-lease", "get", "lease", node_name]);
    assert_eq!(lease["spec"]["holderIdentity"], node_name);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    let wide = s.k(&["get", "nodes", "-o", "wide"]);
    assert!(wide.contains("rk3s://0.1.0"), "{wide}");

    s.k_in(WEB, &["apply", "-f", "-"]);
    let p = wait_pod(&s, "web", "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && condition(p, "Ready") == "True"
    });
    for c in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert_eq!(condition(&p, c), "True", "{c}");
    }
    let ip = p["status"]["podIP"].as_str().expect("podIP").to_string();
    assert!(ip.starts_with("10.42.0."), "{ip}");
    assert_eq!(p["status"]["hostIP"], ns.node_ip.to_string());
    let c = cs(&p, "web");
    assert!(c["containerID"].as_str().unwrap().starts_with("rk3s://"));
    assert!(
        c["imageID"]
            .as_str()
            .unwrap()
            .starts_with("docker.io/rk3s-test/web@sha256:")
    );
    // Its server answers with its host name.
    let mut page = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let o = ns.output(&["curl", "-s", "-m", "3", &format!("http://{ip}:8080/")]);
            page = common::stdout(&o);
            page.contains("web")
        }),
        "no answer from the pod: {page:?}"
    );
    assert!(page.contains("rk3s-test web v1 on web"), "{page}");
    // The environment as upstream builds it.
    let env = s.k(&["exec", "web", "--", "env"]);
    for want in [
        "HOSTNAME=web",
        "POD_NAME=web",
        "GREETING=hello web",
        "KUBERNETES_SERVICE_HOST=10.43.0.1",
        "KUBERNETES_SERVICE_PORT=443",
        "KUBERNETES_PORT_443_TCP=tcp://10.43.0.1:443",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in:\n{env}");
    }
    // The kubelet's /etc/hosts and resolv.conf.
    let hosts = s.k(&["exec", "web", "--", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{ip}\tweb")), "{hosts}");
    let resolv = s.k(&["exec", "web", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.43.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    let describe = s.k(&["describe", "pod", "web"]);
    for want in [
        "Container image \"rk3s-test/web:1\" already present on machine",
        "Created container: web",
        "Started container web",
    ] {
        assert!(describe.contains(want), "{want:?} not in:\n{describe}");
    }
    assert!(describe.contains("kubelet"), "{describe}");
    // A Service made after the pod is not in its env; a new pod sees it.
    s.k(&[
        "expose",
        "pod",
        "web",
        "--port",
        "80",
        "--target-port",
        "8080",
        "--name",
        "my-web",
    ]);
    let svc_ip = s.k(&["get", "svc", "my-web", "-o", "jsonpath={.spec.clusterIP}"]);
    s.k_in(
        &WEB.replace("name: web,", "name: web2,"),
        &["apply", "-f", "-"],
    );
    wait_pod(&s, "web2", "Running", |p| p["status"]["phase"] == "Running");
    let env2 = s.k(&["exec", "web2", "--", "env"]);
    assert!(
        env2.lines()
            .any(|l| l == format!("MY_WEB_SERVICE_HOST={svc_ip}")),
        "{env2}"
    );
    assert!(
        env2.lines().any(|l| l == "MY_WEB_SERVICE_PORT=80"),
        "{env2}"
    );
}

fn condition_of_node(node: &Value, t: &str) -> String {
    condition(node, t)
}

const ORDERED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ordered}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - {name: init1, image: rk3s-test/web:1, command: [sh, -c, "echo init1 >> /work/order"], volumeMounts: [{name: work, mountPath: /work}]}
  - {name: side, image: rk3s-test/web:1, restartPolicy: Always, command: [sh, -c, "echo side >> /work/order; exec sleep 3600"], volumeMounts: [{name: work, mountPath: /work}]}
  - {name: init2, image: rk3s-test/web:1, command: [sh, -c, "echo init2 >> /work/order"], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - {name: app, image: rk3s-test/web:1, command: [sh, -c, "echo app >> /work/order; exec sleep 3600"], volumeMounts: [{name: work, mountPath: /work}]}
"#;

fn simple_pod(name: &str, restart: &str, command: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: rk3s-test/web:1\n    command: [sh, -c, {command:?}]\n{extra}"
    )
}

/// Init containers run one after another, a sidecar starts in its place
/// and keeps running, then the app; exits end in upstream's states and
/// reasons: Completed/Error with restartPolicy Never, OOMKilled under a
/// small memory limit, CrashLoopBackOff with back-off for Always, a
/// missing binary as StartError, a missing image as ErrImagePull then
/// ImagePullBackOff -- each with its event, none stopping the agent.
#[test]
fn containers_run_in_order_and_fail_as_upstream() {
    let ns = TestNetns::create();
    let s = start(&ns, &[]);
    s.k_in(ORDERED, &["apply", "-f", "-"]);
    for (name, restart, cmd, extra) in [
        ("done", "Never", "echo finished; exit 0", ""),
        ("fails", "Never", "echo failing >&2; exit 3", ""),
        ("crash", "Always", "echo crashing; exit 1", ""),
        (
            "oom",
            "Never",
            "dd if=/dev/zero of=/dev/null bs=64M count=1",
            "    resources: {limits: {memory: 16Mi}}\n",
        ),
    ] {
        s.k_in(
            &simple_pod(name, restart, cmd, extra),
            &["apply", "-f", "-"],
        );
    }
    s.k(&[
        "run",
        "nocmd",
        "--image=rk3s-test/web:1",
        "--restart=Never",
        "--command",
        "--",
        "/no/such/binary",
    ]);
    s.k(&["run", "noimage", "--image=rk3s-test/does-not-exist:1"]);

    let p = wait_pod(&s, "ordered", "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && condition(p, "Ready") == "True"
    });
    assert_eq!(
        cs(&p, "init1")["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(
        cs(&p, "init2")["state"]["terminated"]["reason"],
        "Completed"
    );
    assert!(
        cs(&p, "side")["state"]["running"].is_object(),
        "{:#}",
        p["status"]
    );
    let order = s.k(&["exec", "ordered", "-c", "app", "--", "cat", "/work/order"]);
    assert_eq!(
        order.split_whitespace().collect::<Vec<_>>(),
        ["init1", "side", "init2", "app"]
    );

    let p = wait_pod(&s, "done", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let t = &cs(&p, "c")["state"]["terminated"];
    assert_eq!(
        (t["reason"].as_str(), t["exitCode"].as_i64()),
        (Some("Completed"), Some(0))
    );
    assert_eq!(s.k(&["logs", "done"]).trim(), "finished");
    let p = wait_pod(&s, "fails", "Failed", |p| p["status"]["phase"] == "Failed");
    let t = &cs(&p, "c")["state"]["terminated"];
    assert_eq!(
        (t["reason"].as_str(), t["exitCode"].as_i64()),
        (Some("Error"), Some(3))
    );
    let p = wait_pod(&s, "oom", "Failed", |p| p["status"]["phase"] == "Failed");
    assert_eq!(
        cs(&p, "c")["state"]["terminated"]["reason"],
        "OOMKilled",
        "{:#}",
        p["status"]
    );

    let p = wait_pod(&s, "crash", "CrashLoopBackOff", |p| {
        cs(p, "c")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let c = cs(&p, "c");
    assert!(c["restartCount"].as_i64().unwrap() >= 1);
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    let msg = c["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.starts_with("back-off 10s restarting failed container=c pod=crash_default("),
        "{msg}"
    );
    // Back-off: no restart within the next few seconds, then one.
    let count = c["restartCount"].as_i64().unwrap();
    let table = s.k(&["get", "pod", "crash", "--no-headers"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");
    s.wait_event(
        "crash",
        "Back-off restarting failed container c in pod crash_default",
        WAIT,
    );
    assert_eq!(s.k(&["logs", "crash", "--previous"]).trim(), "crashing");
    let t0 = Instant::now();
    wait_pod(&s, "crash", "another restart", |p| {
        cs(p, "c")["restartCount"].as_i64().unwrap_or(0) > count
    });
    assert!(
        t0.elapsed() >= Duration::from_secs(5),
        "restarted after {:?}",
        t0.elapsed()
    );

    let p = wait_pod(&s, "nocmd", "StartError", |p| {
        cs(p, "c")["state"]["terminated"]["reason"] == "StartError"
            || cs(p, "nocmd")["state"]["terminated"]["reason"] == "StartError"
    });
    assert_eq!(p["status"]["phase"], "Failed");
    let t = &cs(&p, "nocmd")["state"]["terminated"];
    assert_eq!(t["exitCode"], 128);
    assert!(
        t["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/no/such/binary"),
        "{t}"
    );
    s.wait_event("nocmd", "Error: ", WAIT);

    wait_pod(&s, "noimage", "ImagePullBackOff", |p| {
        cs(p, "noimage")["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    let describe = s.k(&["describe", "pod", "noimage"]);
    for want in [
        "Failed to pull image \"rk3s-test/does-not-exist:1\"",
        "Error: ErrImagePull",
        "Back-off pulling image \"rk3s-test/does-not-exist:1\"",
    ] {
        assert!(describe.contains(want), "{want:?} not in:\n{describe}");
    }
    // The agent is still fine: a new pod runs.
    s.k_in(
        &simple_pod("after", "Never", "exit 0", ""),
        &["apply", "-f", "-"],
    );
    wait_pod(&s, "after", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
}

/// Deletion is graceful: preStop runs, then SIGTERM, and the agent
/// finishes the deletion once the containers are gone. Killing the server
/// with SIGKILL leaves the pods running; the agent of the restarted server
/// re-adopts them (same container, same start time) and deletes them later.
#[test]
fn graceful_deletion_and_restart_survival() {
    let ns = TestNetns::create();
    let mut s = start(&ns, &[]);
    let marks = s.data_dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let graceful = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: graceful}}
spec:
  terminationGracePeriodSeconds: 20
  volumes: [{{name: marks, hostPath: {{path: {marks}, type: Directory}}}}]
  containers:
  - name: c
    image: rk3s-test/web:1
    command: [sh, -c, "trap 'echo term >> /marks/log; exit 0' TERM; echo started >> /marks/log; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: marks, mountPath: /marks}}]
    lifecycle:
      preStop: {{exec: {{command: [sh, -c, "echo prestop >> /marks/log"]}}}}
"#,
        marks = marks.display()
    );
    s.k_in(&graceful, &["apply", "-f", "-"]);
    s.k_in(WEB, &["apply", "-f", "-"]);
    wait_pod(&s, "graceful", "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let before = wait_pod(&s, "web", "Running", |p| p["status"]["phase"] == "Running");
    let started = cs(&before, "web")["state"]["running"]["startedAt"].clone();
    let id = cs(&before, "web")["containerID"].clone();

    let t0 = Instant::now();
    s.k(&["delete", "pod", "graceful", "--wait=true", "--timeout=60s"]);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "deletion took {took:?}: SIGTERM not delivered?"
    );
    let log = std::fs::read_to_string(marks.join("log")).unwrap();
    assert_eq!(
        log.split_whitespace().collect::<Vec<_>>(),
        ["started", "prestop", "term"],
        "{log}"
    );
    s.wait_event("graceful", "Stopping container c", WAIT);

    // kill -9: the pod keeps serving.
    let ip = before["status"]["podIP"].as_str().unwrap().to_string();
    s.kill9();
    let page = ns.run(&["curl", "-s", "-m", "5", &format!("http://{ip}:8080/")]);
    assert!(page.contains("on web"), "{page}");
    s.start_again();
    std::thread::sleep(Duration::from_secs(3));
    let after = wait_pod(&s, "web", "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && condition(p, "Ready") == "True"
    });
    assert_eq!(cs(&after, "web")["state"]["running"]["startedAt"], started);
    assert_eq!(cs(&after, "web")["containerID"], id);
    assert_eq!(cs(&after, "web")["restartCount"], 0);
    assert_eq!(after["status"]["podIP"], ip.as_str());
    // The re-adopted pod still stops and goes away.
    s.k(&["delete", "pod", "web", "--wait=true", "--timeout=60s"]);
    let sandboxes = Path::new(&s.data_dir).join("agent/sandboxes");
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_dir(&sandboxes)
            .map(|d| d.count() == 0)
            .unwrap_or(true)),
        "sandbox state left behind in {}",
        sandboxes.display()
    );
}
