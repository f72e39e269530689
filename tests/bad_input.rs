//! Throw broken bodies at every resource endpoint discovery lists, then check
//! that the server still answers and the store is intact: objects created
//! before read back identical, and nothing half-written exists.
//!
//! Bodies are derived from valid objects (truncated, bytes flipped, values
//! replaced by other types, YAML cut short, deep nesting, bad UTF-8 ...) by a
//! seeded generator, so a failure replays exactly; the seed is printed.

mod common;

use std::collections::BTreeMap;

use common::{Req, Rng, Server};
use serde_json::{Value, json};

const SEED: u64 = 0x726b_3373_6261_6421;
const REQUESTS: usize = 300;

/// One creatable resource from discovery.
#[derive(Clone, Debug)]
struct Resource {
    group_version: String,
    plural: String,
    kind: String,
    namespaced: bool,
}

impl Resource {
    fn api_prefix(&self) -> String {
        if self.group_version == "v1" {
            "/api/v1".into()
        } else {
            format!("/apis/{}", self.group_version)
        }
    }
    fn collection(&self, ns: &str) -> String {
        if self.namespaced {
            format!("{}/namespaces/{ns}/{}", self.api_prefix(), self.plural)
        } else {
            format!("{}/{}", self.api_prefix(), self.plural)
        }
    }
}

fn discover(s: &mut Server) -> Vec<Resource> {
    let mut gvs = vec!["v1".to_string()];
    let groups = s.get_json("/apis");
    for g in groups["groups"].as_array().expect("groups") {
        for v in g["versions"].as_array().expect("versions") {
            gvs.push(
                v["groupVersion"]
                    .as_str()
                    .expect("groupVersion")
                    .to_string(),
            );
        }
    }
    let mut out = Vec::new();
    for gv in gvs {
        let path = if gv == "v1" {
            "/api/v1".to_string()
        } else {
            format!("/apis/{gv}")
        };
        let list = s.get_json(&path);
        for r in list["resources"].as_array().expect("resources") {
            let name = r["name"].as_str().unwrap_or("");
            let creatable = r["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v == "create"));
            if name.contains('/') || !creatable {
                continue;
            }
            out.push(Resource {
                group_version: gv.clone(),
                plural: name.to_string(),
                kind: r["kind"].as_str().unwrap_or("").to_string(),
                namespaced: r["namespaced"].as_bool().unwrap_or(false),
            });
        }
    }
    out
}

/// A valid (or nearly valid) object of a resource, as the mutation seed.
fn valid_object(r: &Resource, name: &str) -> Value {
    let mut obj = json!({"apiVersion": r.group_version, "kind": r.kind, "metadata": {"name": name, "labels": {"fuzz": "yes"}}});
    let pod_spec = json!({"containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 80}],
        "env": [{"name": "A", "value": "b"}], "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}]});
    let template = json!({"metadata": {"labels": {"app": name}}, "spec": pod_spec});
    let extra = match r.kind.as_str() {
        "ConfigMap" => json!({"data": {"a": "b", "c": "d"}}),
        "Secret" => json!({"type": "Opaque", "data": {"a": "Yg=="}}),
        "Pod" => json!({"spec": pod_spec}),
        "Service" => {
            json!({"spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]}})
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" => {
            json!({"spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": template}})
        }
        "Job" => {
            json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
        }
        "CronJob" => {
            json!({"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec":
            {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
        }
        "Namespace" => json!({}),
        "ServiceAccount" => json!({}),
        "Lease" => json!({"spec": {"holderIdentity": "x", "leaseDurationSeconds": 15}}),
        "PriorityClass" => json!({"value": 1000}),
        "Role" | "ClusterRole" => {
            json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
        }
        "Event" => {
            json!({"involvedObject": {"kind": "Pod", "name": "x"}, "reason": "R", "message": "m"})
        }
        "HorizontalPodAutoscaler" => {
            json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x", "apiVersion": "apps/v1"},
            "minReplicas": 1, "maxReplicas": 3}})
        }
        "PodDisruptionBudget" => {
            json!({"spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}})
        }
        "NetworkPolicy" => json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        "Ingress" => {
            json!({"spec": {"rules": [{"host": "a.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "x", "port": {"number": 80}}}}]}}]}})
        }
        "StorageClass" => json!({"provisioner": "example.com/x"}),
        "PersistentVolumeClaim" => {
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
        }
        "CustomResourceDefinition" => {
            json!({"spec": {"group": "x.example.com", "names": {"plural": "foos", "kind": "Foo"},
            "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
        }
        _ => json!({"spec": {"x": [1, 2.5, true, null, "s", {"k": "v"}]}}),
    };
    if let (Some(o), Some(e)) = (obj.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    obj
}

/// Replace one random node of `v` by a value of another type.
fn wrong_type(v: &mut Value, rng: &mut Rng, depth: usize) {
    let replacements = [
        json!("a string"),
        json!(12345),
        json!(-1.5e308),
        json!(true),
        json!(null),
        json!([1, "x"]),
        json!({"unexpected": {}}),
        json!(99999999999999999999u128 as f64),
        json!(""),
    ];
    let descend = depth < 6 && rng.below(3) > 0;
    match v {
        Value::Object(m) if descend && !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            if let Some(child) = m.get_mut(&k) {
                wrong_type(child, rng, depth + 1);
            }
        }
        Value::Array(a) if descend && !a.is_empty() => {
            let i = rng.below(a.len());
            wrong_type(&mut a[i], rng, depth + 1);
        }
        _ => *v = rng.pick(&replacements).clone(),
    }
}

/// A broken body and its content type.
fn mutate(obj: &Value, rng: &mut Rng) -> (&'static str, Vec<u8>, &'static str) {
    let bytes = serde_json::to_vec(obj).expect("json");
    match rng.below(10) {
        0 => (
            "application/json",
            bytes[..rng.below(bytes.len())].to_vec(),
            "truncated json",
        ),
        1 => {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            ("application/json", b, "flipped bits")
        }
        2 | 3 => {
            let mut v = obj.clone();
            wrong_type(&mut v, rng, 0);
            (
                "application/json",
                serde_json::to_vec(&v).expect("json"),
                "wrong type",
            )
        }
        4 => {
            let yaml = serde_saphyr::to_string(obj).expect("yaml");
            let y = yaml.as_bytes();
            (
                "application/yaml",
                y[..rng.below(y.len())].to_vec(),
                "truncated yaml",
            )
        }
        5 => {
            let depth = 50 + rng.below(20_000);
            let mut b = b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"deep\"},\"data\":".to_vec();
            b.extend(std::iter::repeat_n(b'[', depth));
            b.extend(std::iter::repeat_n(b']', depth));
            b.push(b'}');
            ("application/json", b, "deep nesting")
        }
        6 => {
            let depth = 50 + rng.below(5_000);
            let mut y =
                String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deepy}\ndata: ");
            y.push_str(&"[".repeat(depth));
            y.push_str(&"]".repeat(depth));
            ("application/yaml", y.into_bytes(), "deep yaml")
        }
        7 => {
            // Invalid UTF-8 inside a string, and a NUL.
            let mut b = bytes.clone();
            if let Some(pos) = b.windows(6).position(|w| w == b"\"name\"") {
                b.splice(pos + 8..pos + 8, [0xff, 0xfe, 0x00, 0xc3]);
            }
            ("application/json", b, "bad utf-8")
        }
        8 => {
            let mut b = vec![0u8; 1 + rng.below(512)];
            for x in b.iter_mut() {
                *x = rng.next_u64() as u8;
            }
            (
                *rng.pick(&["application/json", "application/yaml"]),
                b,
                "random bytes",
            )
        }
        _ => {
            // Valid JSON, invalid shape: duplicate keys, metadata as a list, huge numbers, YAML anchors bomb.
            let choices: [(&str, &[u8]); 5] = [
                ("application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","name":"b"},"data":{"x":"1"}}"#),
                ("application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":[],"data":{}}"#),
                ("application/json", br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"n"},"spec":{"containers":[{"name":"c","image":"i","ports":[{"containerPort":1e999}]}]}}"#),
                ("application/yaml", b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\n"),
                ("application/json", b"null"),
            ];
            let (ct, b) = *rng.pick(&choices);
            (
                if ct == "application/json" {
                    "application/json"
                } else {
                    "application/yaml"
                },
                b.to_vec(),
                "odd shape",
            )
        }
    }
}

/// Objects created before the fuzzing, as they read back then.
fn sentinels(s: &mut Server) -> BTreeMap<String, Value> {
    s.k(&["create", "namespace", "fuzz"]);
    s.k(&[
        "create",
        "configmap",
        "keep",
        "-n",
        "fuzz",
        "--from-literal=a=b",
    ]);
    s.k(&[
        "create",
        "secret",
        "generic",
        "keep",
        "-n",
        "fuzz",
        "--from-literal=p=q",
    ]);
    s.k(&[
        "create",
        "deployment",
        "keep",
        "-n",
        "fuzz",
        "--image=nginx:1.27",
    ]);
    s.k(&[
        "create",
        "service",
        "clusterip",
        "keep",
        "-n",
        "fuzz",
        "--tcp=80:80",
    ]);
    s.k(&["create", "serviceaccount", "keep", "-n", "fuzz"]);
    let mut out = BTreeMap::new();
    for path in [
        "/api/v1/namespaces/fuzz",
        "/api/v1/namespaces/fuzz/configmaps/keep",
        "/api/v1/namespaces/fuzz/secrets/keep",
        "/apis/apps/v1/namespaces/fuzz/deployments/keep",
        "/api/v1/namespaces/fuzz/services/keep",
        "/api/v1/namespaces/fuzz/serviceaccounts/keep",
        "/api/v1/namespaces/default/services/kubernetes",
    ] {
        out.insert(path.to_string(), s.get_json(path));
    }
    out
}

#[test]
fn broken_bodies_do_not_hurt_the_server_or_the_store() {
    let mut s = Server::start();
    let before = sentinels(&mut s);
    let resources = discover(&mut s);
    assert!(
        resources.len() >= 40,
        "discovery lists only {} creatable resources",
        resources.len()
    );
    eprintln!(
        "bad_input: seed {SEED:#x}, {REQUESTS} requests over {} resources",
        resources.len()
    );

    let mut rng = Rng::new(SEED);
    let mut failures = Vec::new();
    let mut accepted = Vec::new();
    for i in 0..REQUESTS {
        let r = &resources[i % resources.len()];
        let name = format!("fuzz-{i}");
        let obj = valid_object(r, &name);
        let (ct, body, how) = mutate(&obj, &mut rng);
        // Mostly creates; some updates of an existing object (the sentinels) or a fresh name.
        let (method, path) = match rng.below(4) {
            0 if r.kind == "ConfigMap" => ("PUT", format!("{}/keep", r.collection("fuzz"))),
            0 => ("PUT", format!("{}/{name}", r.collection("fuzz"))),
            _ => ("POST", r.collection("fuzz")),
        };
        let desc = format!("#{i} {method} {path} [{how}, {ct}, {} bytes]", body.len());
        let resp = match s.try_request(Req::new(method, &path).body(ct, body)) {
            Ok(resp) => resp,
            Err(e) => {
                let alive = s.is_running();
                panic!(
                    "{desc}: no HTTP answer ({e}); server running: {alive}\n{}",
                    s.log_tail(40)
                );
            }
        };
        match resp.status {
            200 | 201 => {
                let created = resp.json();
                accepted.push((r.clone(), created));
            }
            400..=499 => {
                // Every refusal is a proper metav1.Status carrying the same code.
                match serde_json::from_slice::<Value>(&resp.body) {
                    Ok(st)
                        if st["kind"] == "Status"
                            && st["code"] == resp.status
                            && st["status"] == "Failure" => {}
                    _ => failures.push(format!(
                        "{desc}: HTTP {} without a matching Status body: {}",
                        resp.status,
                        resp.snippet()
                    )),
                }
            }
            other => failures.push(format!("{desc}: HTTP {other}: {}", resp.snippet())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad answers (seed {SEED:#x}):\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Still answering.
    assert!(s.is_running(), "rk3s died during the fuzzing");
    assert_eq!(s.get("/readyz").status, 200);
    s.k(&["get", "namespaces"]);
    s.k(&["create", "configmap", "after-fuzz", "-n", "fuzz"]);

    // The objects from before read back identical (except the PUT target,
    // whose accepted updates are checked below).
    let cm_updated = accepted
        .iter()
        .any(|(r, o)| r.kind == "ConfigMap" && o["metadata"]["name"] == "keep");
    for (path, obj) in &before {
        if cm_updated && path.ends_with("/configmaps/keep") {
            continue;
        }
        assert_eq!(&s.get_json(path), obj, "{path} changed during the fuzzing");
    }

    // Everything that exists is whole and readable on its own: list every
    // resource, and get each listed object by name.
    for r in &resources {
        let list = s.get(&if r.namespaced {
            format!("{}/{}", r.api_prefix(), r.plural)
        } else {
            r.collection("")
        });
        assert_eq!(list.status, 200, "list {}: {}", r.plural, list.snippet());
        let list = list.json();
        for item in list["items"].as_array().unwrap_or(&Vec::new()) {
            let meta = &item["metadata"];
            let name = meta["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{} item without a name: {item}", r.plural));
            assert!(
                meta["uid"].as_str().is_some_and(|u| u.len() == 36),
                "{} {name} has no uid: {item}",
                r.plural
            );
            assert!(
                meta["resourceVersion"]
                    .as_str()
                    .is_some_and(|v| v.parse::<u64>().is_ok()),
                "{} {name}: {item}",
                r.plural
            );
            assert!(
                meta["creationTimestamp"].is_string(),
                "{} {name}: {item}",
                r.plural
            );
            let ns = meta["namespace"].as_str().unwrap_or("");
            let one = s.get(&format!("{}/{name}", r.collection(ns)));
            assert_eq!(
                one.status,
                200,
                "{} {ns}/{name} listed but not readable: {}",
                r.plural,
                one.snippet()
            );
            let mut one = one.json();
            // Lists leave out kind/apiVersion per item; compare the rest.
            if let Some(o) = one.as_object_mut()
                && item.get("kind").is_none()
            {
                o.remove("kind");
                o.remove("apiVersion");
            }
            // Objects the server itself keeps changing (leader-election
            // Leases renewed every few seconds) may have moved on since the
            // list: compare only what is still the listed revision.
            if one.pointer("/metadata/resourceVersion") != item.pointer("/metadata/resourceVersion")
            {
                continue;
            }
            assert_eq!(
                &one, item,
                "{} {ns}/{name}: list and get disagree",
                r.plural
            );
        }
    }
    // Whatever the fuzzer got accepted is stored exactly as acknowledged
    // (unless a later accepted request replaced it).
    for (r, obj) in &accepted {
        let name = obj["metadata"]["name"].as_str().unwrap_or("");
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
        let newer = accepted.iter().any(|(r2, o2)| {
            r2.plural == r.plural
                && o2["metadata"]["name"] == name
                && o2["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    > obj["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|v| v.parse::<u64>().ok())
        });
        if newer {
            continue;
        }
        let got = s.get(&format!("{}/{name}", r.collection(ns)));
        assert_eq!(
            got.status,
            200,
            "accepted {} {ns}/{name} is not readable: {}",
            r.plural,
            got.snippet()
        );
    }
    eprintln!(
        "bad_input: {} of {REQUESTS} mutated bodies were accepted as valid",
        accepted.len()
    );
}

/// Odd URLs: every one gets an HTTP answer below 500.
#[test]
fn odd_paths_and_queries() {
    let mut s = Server::start();
    let long = "a".repeat(10_000);
    let paths = [
        "/api/v1/namespaces/%00/configmaps".to_string(),
        "/api/v1/namespaces/..%2F..%2Fetc/configmaps".to_string(),
        "/api/v1/namespaces/default/configmaps/%2e%2e".to_string(),
        format!("/api/v1/namespaces/default/configmaps/{long}"),
        "/api/v1/namespaces/default/configmaps?limit=abc".to_string(),
        "/api/v1/namespaces/default/configmaps?timeoutSeconds=-1&watch=maybe".to_string(),
        "/api/v1/namespaces/default/configmaps?labelSelector=%ff%fe".to_string(),
        "/api/v1/namespaces/default/configmaps?continue=%%%%".to_string(),
        "/apis/apps/v1/namespaces/default/deployments/x/scale/extra/segments".to_string(),
        "/api/v1/namespaces/default/pods/x/status/../..".to_string(),
        "/api///v1//namespaces".to_string(),
        "/apis/".to_string(),
        "/openapi/v3/apis/nope/v1".to_string(),
    ];
    for p in &paths {
        for method in ["GET", "DELETE", "PUT", "POST"] {
            let r = s
                .try_request(Req::new(method, p).body("application/json", "{}"))
                .unwrap_or_else(|e| panic!("{method} {}: no answer: {e}", &p[..p.len().min(80)]));
            assert!(
                r.status >= 200 && r.status < 500,
                "{method} {}: HTTP {}: {}",
                &p[..p.len().min(80)],
                r.status,
                r.snippet()
            );
        }
    }
    assert_eq!(s.get("/readyz").status, 200);
    assert!(s.is_running());
}
