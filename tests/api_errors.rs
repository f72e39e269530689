//! Errors are metav1.Status with upstream's code, reason and message: 400,
//! 401, 404, 405, 409 (AlreadyExists and Conflict), 413, 415, 422.

mod common;

use common::{Req, Server};
use serde_json::{Value, json};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}})
}

fn message(st: &Value) -> String {
    st["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn unauthenticated_requests_are_401_except_health_and_version() {
    let mut s = Server::start();
    for path in [
        "/api",
        "/apis",
        "/api/v1/namespaces",
        "/api/v1/namespaces/default/configmaps",
        "/openapi/v2",
        "/metrics",
    ] {
        let r = s.request(Req::new("GET", path).anonymous());
        let st = r.assert_status(401, "Unauthorized");
        assert_eq!(message(&st), "Unauthorized", "{path}");
    }
    let r = s.request(Req::new("POST", CMS).anonymous().json(&cm("anon")));
    r.assert_status(401, "Unauthorized");
    // A bogus bearer token is not a credential either.
    let r = s.request(
        Req::new("GET", "/api/v1/namespaces")
            .anonymous()
            .header("Authorization", "Bearer not-a-token"),
    );
    r.assert_status(401, "Unauthorized");
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(
            s.request(Req::new("GET", path).anonymous()).status,
            200,
            "{path} must not need credentials"
        );
    }
    // Nothing was created anonymously.
    s.get(&format!("{CMS}/anon")).assert_status(404, "NotFound");
    // kubectl with a token the server does not know gets upstream's message
    // (with no credentials at all kubectl would prompt for a user name).
    let o = common::run(
        std::process::Command::new(common::kubectl_bin())
            .env("HOME", s.root.join("home"))
            .args([
                "--server",
                &s.url(),
                "--insecure-skip-tls-verify",
                "--kubeconfig",
                "/dev/null",
                "--token",
                "not-a-token",
                "get",
                "pods",
            ]),
        None,
        std::time::Duration::from_secs(60),
    );
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("error: You must be logged in to the server ("),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn not_found() {
    let mut s = Server::start();
    let st = s.get(&format!("{CMS}/nope")).assert_status(404, "NotFound");
    assert_eq!(message(&st), r#"configmaps "nope" not found"#);
    assert_eq!(st["details"]["name"], "nope");
    assert_eq!(st["details"]["kind"], "configmaps");
    let st = s
        .get("/apis/apps/v1/namespaces/default/deployments/nope")
        .assert_status(404, "NotFound");
    assert_eq!(message(&st), r#"deployments.apps "nope" not found"#);
    assert_eq!(st["details"]["group"], "apps");
    // In a namespace that does not exist: still the object's 404 for reads.
    let st = s
        .get("/api/v1/namespaces/ghost/configmaps/x")
        .assert_status(404, "NotFound");
    assert_eq!(message(&st), r#"configmaps "x" not found"#);
    // Creating in a missing namespace names the namespace.
    let st = s
        .post_json("/api/v1/namespaces/ghost/configmaps", &cm("x"))
        .assert_status(404, "NotFound");
    assert_eq!(message(&st), r#"namespaces "ghost" not found"#);
    // Unknown resources and groups.
    for path in [
        "/api/v1/foos",
        "/api/v1/namespaces/default/foos",
        "/apis/nope.example.com/v1",
        "/apis/apps/v9/deployments",
        "/nothing/here",
    ] {
        assert_eq!(s.get(path).status, 404, "{path}");
    }
    let err = s.k_err(&["get", "foos"]);
    assert!(
        err.contains(r#"error: the server doesn't have a resource type "foos""#),
        "{err}"
    );
    let st = s
        .delete(&format!("{CMS}/nope"))
        .assert_status(404, "NotFound");
    assert_eq!(message(&st), r#"configmaps "nope" not found"#);
}

#[test]
fn method_not_allowed() {
    let mut s = Server::start();
    assert_eq!(s.post_json(CMS, &cm("m")).status, 201);
    // POST to an object URL, PUT to a collection.
    s.request(Req::new("POST", &format!("{CMS}/m")).json(&cm("m")))
        .assert_status(405, "MethodNotAllowed");
    s.request(Req::new("PUT", CMS).json(&cm("m")))
        .assert_status(405, "MethodNotAllowed");
    // Namespaces have no deletecollection.
    s.delete("/api/v1/namespaces")
        .assert_status(405, "MethodNotAllowed");
}

#[test]
fn already_exists_and_conflict() {
    let mut s = Server::start();
    let r = s.post_json(CMS, &cm("dup"));
    assert_eq!(r.status, 201, "{}", r.snippet());
    let created = r.json();
    let st = s
        .post_json(CMS, &cm("dup"))
        .assert_status(409, "AlreadyExists");
    assert_eq!(message(&st), r#"configmaps "dup" already exists"#);
    assert_eq!(st["details"]["name"], "dup");

    // Update with the current resourceVersion works, the same again is stale.
    let mut v1 = created.clone();
    v1["data"]["a"] = "c".into();
    let r = s.put_json(&format!("{CMS}/dup"), &v1);
    assert_eq!(r.status, 200, "{}", r.snippet());
    let st = s
        .put_json(&format!("{CMS}/dup"), &v1)
        .assert_status(409, "Conflict");
    assert_eq!(
        message(&st),
        r#"Operation cannot be fulfilled on configmaps "dup": the object has been modified; please apply your changes to the latest version and try again"#
    );
    // The stale write changed nothing.
    assert_eq!(s.get_json(&format!("{CMS}/dup"))["data"]["a"], "c");
    // An update without resourceVersion is unconditional (allowed for configmaps).
    let mut nov = cm("dup");
    nov["data"]["a"] = "d".into();
    assert_eq!(s.put_json(&format!("{CMS}/dup"), &nov).status, 200);

    // kubectl replace with a stale object prints upstream's error.
    let mut stale = created.clone();
    stale["data"]["a"] = "stale".into();
    let err = s.k_in_err(&stale.to_string(), &["replace", "-f", "-"]);
    assert!(
        err.contains(r#"Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on configmaps "dup": the object has been modified; please apply your changes to the latest version and try again"#),
        "{err}"
    );

    // Delete with a stale precondition is a conflict; with the right one it works.
    let current = s.get_json(&format!("{CMS}/dup"));
    let old_rv = created["metadata"]["resourceVersion"].clone();
    let pre = |rv: &Value| json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": rv}});
    s.request(Req::new("DELETE", &format!("{CMS}/dup")).json(&pre(&old_rv)))
        .assert_status(409, "Conflict");
    let wrong_uid = json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}});
    s.request(Req::new("DELETE", &format!("{CMS}/dup")).json(&wrong_uid))
        .assert_status(409, "Conflict");
    let r = s.request(
        Req::new("DELETE", &format!("{CMS}/dup"))
            .json(&pre(&current["metadata"]["resourceVersion"])),
    );
    assert_eq!(r.status, 200, "{}", r.snippet());
    s.get(&format!("{CMS}/dup")).assert_status(404, "NotFound");
}

#[test]
fn invalid_is_422_with_causes() {
    let mut s = Server::start();
    let st = s
        .post_json(CMS, &cm("Bad_Name"))
        .assert_status(422, "Invalid");
    assert!(message(&st).starts_with(r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#), "{st}");
    assert_eq!(st["details"]["kind"], "ConfigMap");
    assert_eq!(st["details"]["name"], "Bad_Name");
    let cause = &st["details"]["causes"][0];
    assert_eq!(cause["reason"], "FieldValueInvalid", "{st}");
    assert_eq!(cause["field"], "metadata.name");
    // A name that is too long.
    let long = "a".repeat(254);
    let st = s.post_json(CMS, &cm(&long)).assert_status(422, "Invalid");
    assert!(
        message(&st).contains("must be no more than 253 characters"),
        "{st}"
    );
    // Missing name and generateName.
    let st = s
        .post_json(
            CMS,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        )
        .assert_status(422, "Invalid");
    assert!(
        message(&st).contains("metadata.name: Required value: name or generateName is required"),
        "{st}"
    );
    // Bad label value.
    let mut bad = cm("labels");
    bad["metadata"]["labels"] = json!({"ok": "-starts-with-dash"});
    let st = s.post_json(CMS, &bad).assert_status(422, "Invalid");
    assert!(
        message(&st).contains(r#"metadata.labels: Invalid value: "-starts-with-dash""#),
        "{st}"
    );
    // Several problems are all reported.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "Bad_C", "image": ""}]}});
    let st = s
        .post_json("/api/v1/namespaces/default/pods", &pod)
        .assert_status(422, "Invalid");
    let fields: Vec<&str> = st["details"]["causes"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["field"].as_str()).collect())
        .unwrap_or_default();
    assert!(fields.contains(&"spec.containers[0].name"), "{st}");
    assert!(fields.contains(&"spec.containers[0].image"), "{st}");
}

#[test]
fn oversized_body_is_413() {
    let mut s = Server::start();
    let mut big = cm("big");
    big["data"]["a"] = "x".repeat(3 * 1024 * 1024 + 10).into();
    let st = s
        .post_json(CMS, &big)
        .assert_status(413, "RequestEntityTooLarge");
    assert!(message(&st).contains("limit is 3145728"), "{st}");
    // A body just under the limit but over ConfigMap's 1 MiB data limit is 422, not 413.
    let mut mid = cm("mid");
    mid["data"]["a"] = "x".repeat(1024 * 1024 + 10).into();
    s.post_json(CMS, &mid).assert_status(422, "Invalid");
    s.get(&format!("{CMS}/big")).assert_status(404, "NotFound");
    // Chunked upload of a big body (no Content-Length) is limited too.
    let r = s.request(
        Req::new("POST", CMS)
            .body("application/json", serde_json::to_vec(&big).expect("json"))
            .header("Transfer-Encoding", "chunked"),
    );
    r.assert_status(413, "RequestEntityTooLarge");
}

#[test]
fn unsupported_media_type_is_415() {
    let mut s = Server::start();
    let body = serde_json::to_vec(&cm("ct")).expect("json");
    for ct in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
    ] {
        let st = s
            .request(Req::new("POST", CMS).body(ct, body.clone()))
            .assert_status(415, "UnsupportedMediaType");
        assert!(
            message(&st).contains("the body of the request was in an unknown format"),
            "{ct}: {st}"
        );
    }
    s.get(&format!("{CMS}/ct")).assert_status(404, "NotFound");
    // JSON with a charset parameter and YAML are fine.
    let r = s.request(Req::new("POST", CMS).body("application/json; charset=utf-8", body));
    assert_eq!(r.status, 201, "{}", r.snippet());
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n";
    let r = s.request(Req::new("POST", CMS).body("application/yaml", yaml));
    assert_eq!(r.status, 201, "{}", r.snippet());
    assert_eq!(r.json()["data"]["a"], "b", "answers in JSON");
}

#[test]
fn malformed_and_mismatched_bodies_are_400() {
    let mut s = Server::start();
    for (ct, body) in [
        (
            "application/json",
            "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": ",
        ),
        ("application/json", "not json at all"),
        ("application/json", ""),
        ("application/json", "[1,2,3]"),
        (
            "application/yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n",
        ),
        ("application/yaml", "\t- : :\n  - ]["),
    ] {
        let r = s.request(Req::new("POST", CMS).body(ct, body));
        r.assert_status(400, "BadRequest");
    }
    // Kind, apiVersion, namespace or name disagreeing with the URL.
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}});
    s.post_json(CMS, &secret).assert_status(400, "BadRequest");
    let deploy = json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "k"}});
    s.post_json(CMS, &deploy).assert_status(400, "BadRequest");
    let mut other_ns = cm("k");
    other_ns["metadata"]["namespace"] = "kube-system".into();
    let st = s.post_json(CMS, &other_ns).assert_status(400, "BadRequest");
    assert_eq!(
        message(&st),
        "the namespace of the provided object does not match the namespace sent on the request"
    );
    assert_eq!(s.post_json(CMS, &cm("named")).status, 201);
    let mut renamed = s.get_json(&format!("{CMS}/named"));
    renamed["metadata"]["name"] = "other".into();
    let st = s
        .put_json(&format!("{CMS}/named"), &renamed)
        .assert_status(400, "BadRequest");
    assert_eq!(
        message(&st),
        "the name of the object (other) does not match the name on the URL (named)"
    );
    // None of them left anything behind.
    let names: Vec<String> = s.get_json(CMS)["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str().map(String::from))
        .filter(|n| common::not_root_ca(n))
        .collect();
    assert_eq!(names, vec!["named"]);
    assert_eq!(s.get("/api/v1/namespaces/default/secrets/k").status, 404);

    // Bad query parameters.
    s.get(&format!("{CMS}?labelSelector=a%20in%20(b"))
        .assert_status(400, "BadRequest");
    s.get(&format!("{CMS}?fieldSelector=nope.nope%3Dx"))
        .assert_status(400, "BadRequest");
    s.get(&format!("{CMS}?resourceVersion=abc"))
        .assert_status(400, "BadRequest");
    s.get(&format!("{CMS}?watch=1&resourceVersion=abc"))
        .assert_status(400, "BadRequest");
    let r = s.get(&format!("{CMS}?limit=-5"));
    assert!(
        r.status < 500,
        "negative limit: HTTP {}: {}",
        r.status,
        r.snippet()
    );
    assert_eq!(s.get("/readyz").status, 200);
}
