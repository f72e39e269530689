//! Durability: a clean restart keeps every object byte for byte (with its
//! resourceVersion); kill -9 in the middle of a write load loses no write the
//! server acknowledged.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

const KINDS: &[&str] = &[
    "namespaces",
    "configmaps",
    "secrets",
    "deployments",
    "services",
    "jobs",
    "serviceaccounts",
];

/// Every object of KINDS in every namespace, keyed by kind/namespace/name.
fn snapshot(s: &Server) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for kind in KINDS {
        let list = s.k_json(&["get", kind, "-A"]);
        for item in list["items"].as_array().expect("items") {
            let key = format!(
                "{kind}/{}/{}",
                item["metadata"]["namespace"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or("?")
            );
            out.insert(key, item.clone());
        }
    }
    out
}

#[test]
fn restart_keeps_every_object_and_resource_version() {
    let mut s = Server::start();
    s.k(&["create", "namespace", "keep"]);
    for i in 0..10 {
        s.k(&[
            "create",
            "configmap",
            &format!("cm-{i}"),
            "-n",
            "keep",
            &format!("--from-literal=i={i}"),
        ]);
    }
    s.k(&[
        "create",
        "secret",
        "generic",
        "sec",
        "-n",
        "keep",
        "--from-literal=password=s3cr3t",
    ]);
    s.k(&[
        "create",
        "deployment",
        "web",
        "-n",
        "keep",
        "--image=nginx:1.27",
        "--replicas=3",
    ]);
    s.k(&[
        "create",
        "service",
        "nodeport",
        "web",
        "-n",
        "keep",
        "--tcp=80:8080",
    ]);
    s.k(&[
        "create",
        "job",
        "once",
        "-n",
        "keep",
        "--image=busybox:1.36",
        "--",
        "true",
    ]);
    s.k(&["create", "serviceaccount", "robot", "-n", "keep"]);
    // Updates and deletes, so the log has history, not just inserts.
    let mut cm = s.k_json(&["get", "cm", "cm-3", "-n", "keep"]);
    cm["data"]["i"] = "updated".into();
    s.k_in(&cm.to_string(), &["replace", "-f", "-"]);
    s.k(&["delete", "configmap", "cm-7", "-n", "keep"]);

    // Let the controllers settle (deployment and job status), so what the
    // restart is compared against is a steady state.
    let mut before = snapshot(&s);
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(1000));
        let again = snapshot(&s);
        if again == before {
            break;
        }
        before = again;
    }
    let rv_before = s.get_json("/api/v1/namespaces/keep/configmaps")["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    s.restart();
    let after = snapshot(&s);
    let missing: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let extra: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "objects lost {missing:?} or appeared {extra:?} across a restart"
    );
    for (k, v) in &before {
        assert_eq!(&after[k], v, "{k} changed across a restart");
    }
    assert!(
        !after.contains_key("configmaps/keep/cm-7"),
        "a deleted object came back"
    );
    assert_eq!(after["configmaps/keep/cm-3"]["data"]["i"], "updated");

    // The revision counter continues: new writes are newer than everything before.
    let rv_list = s.get_json("/api/v1/namespaces/keep/configmaps")["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    assert!(
        rv_list.parse::<u64>().unwrap_or(0) >= rv_before.parse::<u64>().unwrap_or(u64::MAX),
        "{rv_list} < {rv_before}"
    );
    s.k(&["create", "configmap", "after-restart", "-n", "keep"]);
    let rv_new: u64 = s
        .k(&[
            "get",
            "cm",
            "after-restart",
            "-n",
            "keep",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .expect("rv");
    let max_old = before
        .values()
        .filter_map(|o| {
            o["metadata"]["resourceVersion"]
                .as_str()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(
        rv_new > max_old,
        "resourceVersion went backwards after restart: {rv_new} <= {max_old}"
    );
    // Allocations are remembered: a new NodePort service does not reuse the old port or IP.
    s.k(&[
        "create",
        "service",
        "nodeport",
        "web2",
        "-n",
        "keep",
        "--tcp=80:8080",
    ]);
    let old = &after["services/keep/web"]["spec"];
    let new = s.k_json(&["get", "svc", "web2", "-n", "keep"])["spec"].clone();
    assert_ne!(
        new["clusterIP"], old["clusterIP"],
        "cluster IP reused after restart"
    );
    assert_ne!(
        new["ports"][0]["nodePort"], old["ports"][0]["nodePort"],
        "nodePort reused after restart"
    );

    // The resourceVersions read before the restart still work for compare-and-swap:
    // the first update with it succeeds, the second (now stale) is a 409.
    let mut cm3 = before["configmaps/keep/cm-3"].clone();
    cm3["data"]["i"] = "after-restart".into();
    let r = s.put_json("/api/v1/namespaces/keep/configmaps/cm-3", &cm3);
    assert_eq!(
        r.status,
        200,
        "update with the pre-restart resourceVersion: {}",
        r.snippet()
    );
    s.put_json("/api/v1/namespaces/keep/configmaps/cm-3", &cm3)
        .assert_status(409, "Conflict");
}

/// What the load generator saw acknowledged: name -> resourceVersion.
type Acked = Arc<Mutex<BTreeMap<String, String>>>;

#[test]
fn kill_9_under_write_load_keeps_acknowledged_writes() {
    let mut s = Server::start();
    s.k(&["create", "namespace", "load"]);
    let acked: Acked = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt.block_on(s.client());
    // 32 concurrent writers creating ConfigMaps as fast as the server accepts them.
    let mut tasks = Vec::new();
    for w in 0..32 {
        let client = client.clone();
        let acked = acked.clone();
        let stop = stop.clone();
        tasks.push(rt.spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let name = format!("w{w:02}-{i:05}");
                i += 1;
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "load"}, "data": {"payload": "x".repeat(512)}});
                match common::send(&client, "POST", "/api/v1/namespaces/load/configmaps", Some(body.to_string().into_bytes())).await {
                    Ok((201, bytes)) => {
                        let obj: Value = serde_json::from_slice(&bytes).expect("created object");
                        let rv = obj["metadata"]["resourceVersion"].as_str().expect("rv").to_string();
                        acked.lock().expect("lock").insert(name, rv);
                    }
                    // The connection died with the server: not acknowledged.
                    Err(_) => break,
                    Ok((st, bytes)) => {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        panic!("create {name}: HTTP {st}: {}", String::from_utf8_lossy(&bytes));
                    }
                }
            }
        }));
    }
    // A few kubectl writers alongside, through the full CLI path.
    let kubectl_acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut kthreads = Vec::new();
    for t in 0..2 {
        let stop = stop.clone();
        let ka = kubectl_acked.clone();
        let kubeconfig = s.kubeconfig.clone();
        let cache = s.root.join("kube-cache");
        let home = s.root.join("home");
        kthreads.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let name = format!("k{t}-{i:04}");
                i += 1;
                let o = std::process::Command::new(common::kubectl_bin())
                    .env("HOME", &home)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .arg("--cache-dir")
                    .arg(&cache)
                    .args([
                        "-n",
                        "load",
                        "create",
                        "configmap",
                        &name,
                        "--from-literal=k=v",
                        "--request-timeout=5s",
                    ])
                    .output();
                match o {
                    Ok(o) if o.status.success() => ka.lock().expect("lock").push(name),
                    _ => break,
                }
            }
        }));
    }

    // Let the load run, then pull the plug without warning.
    std::thread::sleep(Duration::from_millis(2500));
    s.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    rt.block_on(async {
        for t in tasks {
            t.await.expect("writer task");
        }
    });
    for t in kthreads {
        t.join().expect("kubectl writer");
    }
    let acked = acked.lock().expect("lock").clone();
    let kubectl_acked = kubectl_acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 100,
        "the load acknowledged only {} writes before the kill; too little to test",
        acked.len()
    );

    s.start_again();
    let list = s.get_json("/api/v1/namespaces/load/configmaps");
    let stored: BTreeMap<String, Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap_or("?").to_string(),
                i.clone(),
            )
        })
        .collect();
    let lost: Vec<&String> = acked.keys().filter(|n| !stored.contains_key(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates lost after kill -9: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(20)]
    );
    for (name, rv) in &acked {
        assert_eq!(
            stored[name]["metadata"]["resourceVersion"],
            rv.as_str(),
            "{name} has a different resourceVersion after recovery"
        );
        assert_eq!(
            stored[name]["data"]["payload"].as_str().map(str::len),
            Some(512),
            "{name} payload damaged"
        );
    }
    let klost: Vec<&String> = kubectl_acked
        .iter()
        .filter(|n| !stored.contains_key(*n))
        .collect();
    assert!(
        klost.is_empty(),
        "kubectl-acknowledged creates lost: {klost:?}"
    );
    // Unacknowledged writes may or may not be there, but whatever is there is whole.
    for (name, obj) in &stored {
        assert!(
            obj["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty()),
            "{name} lacks a uid"
        );
        assert!(
            obj["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|r| r.parse::<u64>().is_ok()),
            "{name}"
        );
    }
    // The server is fully usable after recovery.
    s.k(&["create", "configmap", "after-crash", "-n", "load"]);
    eprintln!(
        "kill -9 test: {} acknowledged via API, {} via kubectl, {} stored",
        acked.len(),
        kubectl_acked.len(),
        stored.len()
    );
}
