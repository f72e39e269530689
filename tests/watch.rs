//! Watch: `kubectl get -w` sees ADDED/MODIFIED/DELETED; raw watches resume
//! from an old resourceVersion, deliver bookmarks and initial events, and get
//! 410 Expired once a resourceVersion has left the window.

mod common;

use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Req, Server, squeeze};
use serde_json::{Value, json};

/// A long-running kubectl whose stdout is collected as it arrives.
struct Background {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

impl Background {
    fn spawn(s: &Server, args: &[&str]) -> Background {
        let mut child = s
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        for (pipe, buf) in [
            (
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
                out.clone(),
            ),
            (
                Box::new(child.stderr.take().expect("stderr")) as Box<dyn Read + Send>,
                err.clone(),
            ),
        ] {
            let mut pipe = pipe;
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.lock()
                        .map(|mut b| b.extend_from_slice(&chunk[..n]))
                        .ok();
                }
            });
        }
        Background { child, out, err }
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().map(|b| b.clone()).unwrap_or_default())
            .into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().map(|b| b.clone()).unwrap_or_default())
            .into_owned()
    }
    /// Wait until stdout satisfies `pred`; fail with everything printed so far.
    #[track_caller]
    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if pred(&self.stdout()) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                if pred(&self.stdout()) {
                    return;
                }
                panic!(
                    "kubectl exited ({st}) before {what}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn update_data(s: &Server, name: &str, key: &str, value: &str) {
    let mut cm = s.k_json(&["get", "cm", name, "-n", "w"]);
    cm["data"][key] = value.into();
    s.k_in(&cm.to_string(), &["replace", "-f", "-"]);
}

#[test]
fn kubectl_get_watch_table_sees_added_modified_deleted() {
    let s = Server::start();
    s.k(&["create", "namespace", "w"]);
    s.k(&[
        "create",
        "configmap",
        "before",
        "-n",
        "w",
        "--from-literal=a=1",
    ]);
    let mut bg = Background::spawn(
        &s,
        &[
            "get",
            "configmaps",
            "-n",
            "w",
            "-w",
            "--output-watch-events",
        ],
    );
    // The initial list shows up as ADDED events.
    bg.wait_for("the initial list", Duration::from_secs(30), |o| {
        o.lines().any(|l| squeeze(l).starts_with("ADDED before 1 "))
    });
    s.k(&[
        "create",
        "configmap",
        "live",
        "-n",
        "w",
        "--from-literal=a=1",
    ]);
    bg.wait_for("ADDED live", Duration::from_secs(30), |o| {
        o.lines().any(|l| squeeze(l).starts_with("ADDED live 1 "))
    });
    update_data(&s, "live", "b", "2");
    bg.wait_for("MODIFIED live", Duration::from_secs(30), |o| {
        o.lines()
            .any(|l| squeeze(l).starts_with("MODIFIED live 2 "))
    });
    s.k(&["delete", "configmap", "live", "-n", "w"]);
    bg.wait_for("DELETED live", Duration::from_secs(30), |o| {
        o.lines().any(|l| squeeze(l).starts_with("DELETED live 2 "))
    });
    let out = bg.stdout();
    let header = out.lines().next().map(squeeze).unwrap_or_default();
    assert_eq!(header, "EVENT NAME DATA AGE", "{out}");
    let events: Vec<String> = out
        .lines()
        .skip(1)
        .filter(|l| common::not_root_ca(l))
        .map(|l| squeeze(l).split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        events,
        vec![
            "ADDED before",
            "ADDED live",
            "MODIFIED live",
            "DELETED live"
        ],
        "{out}"
    );
    assert!(!bg.stderr().contains("error"), "{}", bg.stderr());
}

#[test]
fn kubectl_get_watch_json_events() {
    let s = Server::start();
    s.k(&["create", "namespace", "w"]);
    let mut bg = Background::spawn(
        &s,
        &[
            "get",
            "configmaps",
            "-n",
            "w",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ],
    );
    // Nothing exists yet; give kubectl a moment to list and start watching.
    std::thread::sleep(Duration::from_millis(500));
    s.k(&["create", "configmap", "j", "-n", "w", "--from-literal=a=1"]);
    update_data(&s, "j", "a", "2");
    s.k(&["delete", "configmap", "j", "-n", "w"]);
    bg.wait_for("three events", Duration::from_secs(30), |o| {
        parse_stream(o).len() >= 3
    });
    let events = parse_stream(&bg.stdout());
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(types, vec!["ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(events[0]["object"]["data"]["a"], "1");
    assert_eq!(events[1]["object"]["data"]["a"], "2");
    assert_eq!(
        events[2]["object"]["data"]["a"], "2",
        "DELETED carries the last state"
    );
    assert_eq!(events[0]["object"]["kind"], "ConfigMap");
    assert_eq!(events[0]["object"]["apiVersion"], "v1");
    let rvs: Vec<u64> = events.iter().map(|e| rv(&e["object"])).collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]),
        "resourceVersions must increase: {rvs:?}"
    );
}

#[test]
fn kubectl_watch_single_object() {
    let s = Server::start();
    s.k(&["create", "namespace", "w"]);
    s.k(&[
        "create",
        "configmap",
        "mine",
        "-n",
        "w",
        "--from-literal=a=1",
    ]);
    let mut bg = Background::spawn(&s, &["get", "configmap", "mine", "-n", "w", "-w"]);
    let rows = |o: &str| {
        o.lines()
            .filter(|l| squeeze(l).starts_with("mine "))
            .count()
    };
    bg.wait_for("the initial object", Duration::from_secs(30), |o| {
        rows(o) >= 1
    });
    s.k(&["create", "configmap", "noise", "-n", "w"]);
    update_data(&s, "mine", "a", "2");
    bg.wait_for("the modification", Duration::from_secs(30), |o| {
        rows(o) >= 2
    });
    assert!(
        !bg.stdout().contains("noise"),
        "a single-object watch saw another object:\n{}",
        bg.stdout()
    );
}

/// Concatenated JSON documents (kubectl prints them pretty, one after
/// another), without the root-CA ConfigMap's events.
fn parse_stream(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .filter(|e| e["object"]["metadata"]["name"] != common::ROOT_CA_CONFIGMAP)
        .collect()
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no numeric resourceVersion in {obj}"))
}

/// A raw watch that ends by itself (timeoutSeconds), parsed line by line.
fn raw_watch(s: &mut Server, query: &str) -> (u16, Vec<Value>) {
    let r = s.request(
        Req::new(
            "GET",
            &format!("/api/v1/namespaces/w/configmaps?watch=1&{query}"),
        )
        .timeout(Duration::from_secs(30)),
    );
    let events = r
        .text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(common::json)
        .filter(|e| e["object"]["metadata"]["name"] != common::ROOT_CA_CONFIGMAP)
        .collect();
    (r.status, events)
}

#[test]
fn watch_resumes_from_an_old_resource_version() {
    let mut s = Server::start();
    s.k(&["create", "namespace", "w"]);
    s.k(&["create", "configmap", "first", "-n", "w"]);
    let rv0 = s.get_json("/api/v1/namespaces/w/configmaps")["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    s.k(&["create", "configmap", "a", "-n", "w", "--from-literal=k=1"]);
    update_data(&s, "a", "k", "2");
    s.k(&["delete", "configmap", "a", "-n", "w"]);
    s.k(&["create", "configmap", "b", "-n", "w"]);
    // Other namespaces do not leak into this watch.
    s.k(&["create", "configmap", "elsewhere", "-n", "default"]);

    let (status, events) = raw_watch(&mut s, &format!("resourceVersion={rv0}&timeoutSeconds=2"));
    assert_eq!(status, 200);
    let got: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap_or("?"),
                e["object"]["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        got,
        vec!["ADDED a", "MODIFIED a", "DELETED a", "ADDED b"],
        "events after {rv0}"
    );
    let rvs: Vec<u64> = events.iter().map(|e| rv(&e["object"])).collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]) && rvs[0] > rv0.parse::<u64>().unwrap_or(0),
        "{rvs:?}"
    );
    assert_eq!(events[1]["object"]["data"]["k"], "2");

    // Resuming from the middle replays only what came after.
    let mid = rvs[1];
    let (_, events) = raw_watch(&mut s, &format!("resourceVersion={mid}&timeoutSeconds=1"));
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(types, vec!["DELETED", "ADDED"]);

    // resourceVersion=0 / unset: starts with the current state as ADDED events.
    let (_, events) = raw_watch(&mut s, "timeoutSeconds=1");
    let names: Vec<&str> = events
        .iter()
        .filter_map(|e| e["object"]["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["b", "first"],
        "a watch without resourceVersion starts with a synthetic list"
    );

    // A field selector applies to watch events too.
    let (_, events) = raw_watch(
        &mut s,
        &format!("resourceVersion={rv0}&timeoutSeconds=1&fieldSelector=metadata.name%3Db"),
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["object"]["metadata"]["name"], "b");
}

#[test]
fn watch_bookmarks_and_initial_events() {
    let mut s = Server::start();
    s.k(&["create", "namespace", "w"]);
    s.k(&["create", "configmap", "x", "-n", "w"]);
    s.k(&["create", "configmap", "y", "-n", "w"]);
    // Streaming lists (sendInitialEvents): every object, then a bookmark marking the end.
    let (status, events) = raw_watch(
        &mut s,
        "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2",
    );
    assert_eq!(status, 200);
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(&types[..3], &["ADDED", "ADDED", "BOOKMARK"], "{events:?}");
    let bookmark = &events[2]["object"];
    assert_eq!(
        bookmark["kind"], "ConfigMap",
        "a bookmark carries the watched kind"
    );
    assert_eq!(
        bookmark["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
        "{bookmark}"
    );
    assert!(rv(bookmark) >= rv(&events[1]["object"]));
    // sendInitialEvents without allowWatchBookmarks is invalid (422), as upstream.
    // (timeoutSeconds so a server that wrongly starts the watch ends it soon.)
    let r = s.get("/api/v1/namespaces/w/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=3");
    r.assert_status(422, "Invalid");
}

#[test]
fn watch_table_rows_for_kubectl() {
    let mut s = Server::start();
    s.k(&["create", "namespace", "w"]);
    s.k(&["create", "configmap", "t", "-n", "w", "--from-literal=a=1"]);
    let r = s.request(
        Req::new(
            "GET",
            "/api/v1/namespaces/w/configmaps?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dt",
        )
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        ),
    );
    assert_eq!(r.status, 200, "{}", r.snippet());
    let first = common::json(r.text().lines().next().unwrap_or("{}"));
    assert_eq!(first["type"], "ADDED");
    let table = &first["object"];
    assert_eq!(table["kind"], "Table", "{first}");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        table["rows"].as_array().map(Vec::len),
        Some(1),
        "one row per watch event"
    );
    assert_eq!(table["rows"][0]["cells"][0], "t");
    assert_eq!(table["rows"][0]["cells"][1], 1);
}

/// Compaction: once a resourceVersion has left the watch window (and the
/// store compacted it), resuming from it is 410 Expired and an Exact list at
/// it is 410 too. The server is asked to compact often and keep a small window
/// (RK3S_COMPACT_INTERVAL, RK3S_COMPACT_RETAIN, RK3S_WATCH_WINDOW);
/// the test then writes until the old revision expires, up to a bound.
#[test]
fn old_resource_version_gets_410_expired() {
    // Compact every second keeping 50 revisions, and keep 100 events for resuming.
    let mut s = Server::builder()
        .env("RK3S_COMPACT_INTERVAL", "1")
        .env("RK3S_COMPACT_RETAIN", "50")
        .env("RK3S_WATCH_WINDOW", "100")
        .start();
    s.k(&["create", "namespace", "w"]);
    s.k(&[
        "create",
        "configmap",
        "churn",
        "-n",
        "w",
        "--from-literal=n=0",
    ]);
    let rv0 = s.get_json("/api/v1/namespaces/w/configmaps")["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    // Still in the window: resume works.
    let (status, events) = raw_watch(&mut s, &format!("resourceVersion={rv0}&timeoutSeconds=1"));
    assert_eq!(status, 200);
    assert!(events.is_empty(), "{events:?}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt.block_on(s.client());
    const MAX_WRITES: usize = 30_000;
    let mut written = 0;
    let expired = loop {
        // 1,000 more updates of one object from 16 concurrent writers.
        let n = rt.block_on(churn(&client, 1000));
        written += n;
        std::thread::sleep(Duration::from_millis(1500)); // let a compaction run
        let (status, events) =
            raw_watch(&mut s, &format!("resourceVersion={rv0}&timeoutSeconds=1"));
        let is_410 = status == 410
            || events
                .first()
                .is_some_and(|e| e["type"] == "ERROR" && e["object"]["code"] == 410);
        if is_410 {
            let st = if status == 410 {
                s.get(&format!(
                    "/api/v1/namespaces/w/configmaps?watch=1&resourceVersion={rv0}"
                ))
                .json()
            } else {
                events[0]["object"].clone()
            };
            break st;
        }
        assert!(
            written < MAX_WRITES,
            "resourceVersion {rv0} still resumable after {written} writes; the watch window must be bounded \
             (set RK3S_COMPACT_INTERVAL or shrink the window). Last watch: HTTP {status}, {} events",
            events.len()
        );
    };
    assert_eq!(expired["kind"], "Status", "{expired}");
    assert_eq!(expired["reason"], "Expired", "{expired}");
    assert_eq!(expired["code"], 410);
    let msg = expired["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("too old resource version"),
        "upstream's message: {msg}"
    );

    // A list at the compacted revision is 410 Expired as well.
    s.get(&format!(
        "/api/v1/namespaces/w/configmaps?resourceVersion={rv0}&resourceVersionMatch=Exact"
    ))
    .assert_status(410, "Expired");
    // The current state is intact.
    let cm = s.get_json("/api/v1/namespaces/w/configmaps/churn");
    assert_eq!(
        cm["data"]["n"],
        (written).to_string(),
        "every churn write applied once, in order"
    );
}

/// `n` read-modify-write updates of configmap w/churn from 16 tasks, retrying
/// conflicts. Returns how many updates were applied.
async fn churn(client: &kube::Client, n: usize) -> usize {
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = client.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while done.load(std::sync::atomic::Ordering::SeqCst) < n {
                let (st, body) = common::send(
                    &client,
                    "GET",
                    "/api/v1/namespaces/w/configmaps/churn",
                    None,
                )
                .await
                .expect("get churn");
                assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
                let mut cm: Value = serde_json::from_slice(&body).expect("json");
                let next = cm["data"]["n"]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                cm["data"]["n"] = json!(next.to_string());
                let (st, body) = common::send(
                    &client,
                    "PUT",
                    "/api/v1/namespaces/w/configmaps/churn",
                    Some(cm.to_string().into_bytes()),
                )
                .await
                .expect("put churn");
                match st {
                    200 => {
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    409 => {}
                    _ => panic!("update: HTTP {st}: {}", String::from_utf8_lossy(&body)),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("churn task");
    }
    done.load(std::sync::atomic::Ordering::SeqCst)
}
