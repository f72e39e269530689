//! Admission webhooks: a real HTTPS webhook server in the test process
//! (tests/common/webhook.rs) registered through Mutating/Validating
//! WebhookConfigurations, driven with kubectl.

mod common;
#[path = "common/webhook.rs"]
mod webhook_server;

use std::time::{Duration, Instant};

use common::{Server, stderr, wait_until};
use serde_json::{Value, json};
use webhook_server::WebhookServer;

const WAIT: Duration = Duration::from_secs(20);

fn rules(ops: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!([{"operations": ops, "apiGroups": groups, "apiVersions": ["*"], "resources": resources}])
}

/// One webhook called at `path` of `wh`, for `rules`, selecting objects
/// labelled `case=<case>`.
fn url_hook(wh: &WebhookServer, name: &str, path: &str, rules: Value, case: &str) -> Value {
    json!({
        "name": name,
        "clientConfig": {"url": wh.url(path), "caBundle": wh.ca_bundle()},
        "rules": rules,
        "objectSelector": {"matchLabels": {"case": case}},
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    })
}

fn config(kind: &str, name: &str, webhooks: Vec<Value>) -> String {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": webhooks,
    })
    .to_string()
}

fn validating(name: &str, webhooks: Vec<Value>) -> String {
    config("ValidatingWebhookConfiguration", name, webhooks)
}

fn mutating(name: &str, webhooks: Vec<Value>) -> String {
    config("MutatingWebhookConfiguration", name, webhooks)
}

fn configmap(name: &str, ns: &str, case: &str) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns, "labels": {"case": case}},
           "data": {"k": "v"}})
    .to_string()
}

/// Create `yaml` until kubectl fails (the webhook cache follows the
/// configurations a moment after they are written); returns stderr.
#[track_caller]
fn create_until_refused(s: &Server, body: &str) -> String {
    let mut last = String::new();
    let refused = wait_until(WAIT, || {
        let o = s.kubectl_stdin(body, &["create", "-f", "-"]);
        if o.status.success() {
            // Made before the webhook was seen: remove it and try again.
            let _ = s.kubectl_stdin(body, &["delete", "-f", "-", "--wait=false"]);
            false
        } else {
            last = stderr(&o);
            true
        }
    });
    assert!(refused, "the create was never refused");
    last
}

/// The first AdmissionReview request on `path` whose object or oldObject is named `name`.
fn review_for(wh: &WebhookServer, path: &str, name: &str, op: &str) -> Option<Value> {
    wh.received(path).into_iter().find_map(|r| {
        let req = r.get("request")?.clone();
        let named = |k: &str| req.pointer(&format!("/{k}/metadata/name")) == Some(&json!(name));
        ((named("object") || named("oldObject")) && req["operation"] == op).then_some(req)
    })
}

#[test]
fn validating_webhooks_refuse_with_upstreams_messages() {
    let s = Server::start();
    let wh = WebhookServer::start();
    let cm = rules(&["CREATE"], &[""], &["configmaps"]);
    s.k_in(
        &validating(
            "refusals",
            vec![
                url_hook(&wh, "deny.test.rk3s.io", "/deny", cm.clone(), "deny"),
                url_hook(
                    &wh,
                    "quiet.test.rk3s.io",
                    "/deny-quiet",
                    cm.clone(),
                    "quiet",
                ),
                url_hook(
                    &wh,
                    "invalid.test.rk3s.io",
                    "/deny-invalid",
                    cm.clone(),
                    "invalid",
                ),
            ],
        ),
        &["create", "-f", "-"],
    );
    let err = create_until_refused(&s, &configmap("one", "default", "deny"));
    assert_eq!(
        err.trim(),
        "Error from server: error when creating \"STDIN\": admission webhook \"deny.test.rk3s.io\" denied the request: the test says no"
    );
    let err = s.k_in_err(
        &configmap("two", "default", "quiet"),
        &["create", "-f", "-"],
    );
    assert!(
        err.contains(
            "admission webhook \"quiet.test.rk3s.io\" denied the request without explanation"
        ),
        "{err}"
    );
    let err = s.k_in_err(
        &configmap("three", "default", "invalid"),
        &["create", "-f", "-"],
    );
    assert_eq!(
        err.trim(),
        "The request is invalid: error when creating \"STDIN\": admission webhook \"invalid.test.rk3s.io\" denied the request: spec is wrong"
    );
    // Objects the selector leaves out are not sent.
    let before = wh.received("/deny").len();
    s.k_in(
        &configmap("four", "default", "other"),
        &["create", "-f", "-"],
    );
    assert_eq!(wh.received("/deny").len(), before);

    // What the webhook was told.
    let req = review_for(&wh, "/deny", "one", "CREATE").expect("a CREATE review of one");
    assert_eq!(
        req["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        req["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(req["requestKind"], req["kind"]);
    assert_eq!(req["requestResource"], req["resource"]);
    assert_eq!(req["name"], "one");
    assert_eq!(req["namespace"], "default");
    assert!(req.get("subResource").is_none());
    assert_eq!(req["object"]["data"], json!({"k": "v"}));
    assert!(req["oldObject"].is_null());
    assert_eq!(req["dryRun"], false);
    assert_eq!(req["options"]["kind"], "CreateOptions");
    assert_eq!(req["options"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(req["options"]["fieldManager"], "kubectl-create");
    assert!(req["uid"].as_str().is_some_and(|u| u.len() == 36), "{req}");
    let user = &req["userInfo"];
    assert!(
        user["username"].as_str().is_some_and(|u| !u.is_empty()),
        "{user}"
    );
    assert!(
        user["groups"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("system:masters"))),
        "{user}"
    );

    // A webhook refusing everything does not lock its own configuration in.
    s.k_in(
        &validating(
            "lockout",
            vec![json!({
                "name": "everything.test.rk3s.io",
                "clientConfig": {"url": wh.url("/deny"), "caBundle": wh.ca_bundle()},
                "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}],
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            })],
        ),
        &["create", "-f", "-"],
    );
    let err = create_until_refused(&s, &configmap("five", "default", "other"));
    assert!(err.contains("everything.test.rk3s.io"), "{err}");
    s.k(&["delete", "validatingwebhookconfiguration", "lockout"]);
    assert!(
        wh.received("/deny").iter().all(|r| r
            .pointer("/request/resource/group")
            .is_some_and(|g| g != "admissionregistration.k8s.io")),
        "webhook configurations were sent to a webhook"
    );
    assert!(wait_until(WAIT, || {
        s.kubectl_stdin(
            &configmap("six", "default", "other"),
            &["create", "-f", "-"],
        )
        .status
        .success()
    }));
}

#[test]
fn mutating_webhooks_patch_in_order_and_reinvoke() {
    let s = Server::start();
    let wh = WebhookServer::start();
    let cm = rules(&["CREATE"], &[""], &["configmaps"]);
    s.k_in(
        &mutating(
            "label",
            vec![url_hook(
                &wh,
                "label.test.rk3s.io",
                "/label",
                cm.clone(),
                "mutate",
            )],
        ),
        &["create", "-f", "-"],
    );
    let mut n = 0;
    let labelled = wait_until(WAIT, || {
        n += 1;
        let name = format!("m{n}");
        let o = s.k_in(
            &configmap(&name, "default", "mutate"),
            &["create", "-f", "-", "-o", "json"],
        );
        common::json(&o)
            .pointer("/metadata/labels/webhook-added")
            .is_some()
    });
    assert!(labelled, "the mutating webhook's label never appeared");
    let name = format!("m{n}");
    let yaml = s.k(&["get", "configmap", &name, "-o", "yaml"]);
    assert!(yaml.contains("webhook-added: \"yes\""), "{yaml}");
    // The mutation belongs to the request's field manager.
    let obj = s.k_json(&["get", "configmap", &name, "--show-managed-fields"]);
    let mf = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let create = mf
        .iter()
        .find(|e| e["manager"] == "kubectl-create")
        .unwrap_or_else(|| panic!("no kubectl-create entry: {mf:?}"));
    assert!(
        create
            .pointer("/fieldsV1/f:metadata/f:labels/f:webhook-added")
            .is_some(),
        "{create}"
    );

    // a-first runs before b-second; asked to be reinvoked if needed, it sees
    // the label b-second adds on its second call.
    let mut a = url_hook(&wh, "a.test.rk3s.io", "/a-sees-b", cm.clone(), "reinvoke");
    a["reinvocationPolicy"] = json!("IfNeeded");
    let b = url_hook(&wh, "b.test.rk3s.io", "/b-label", cm.clone(), "reinvoke");
    // Created b first, so the order is the configurations' names, not their age.
    s.k_in(&mutating("b-second", vec![b]), &["create", "-f", "-"]);
    s.k_in(&mutating("a-first", vec![a]), &["create", "-f", "-"]);
    let mut n = 0;
    let done = wait_until(WAIT, || {
        n += 1;
        let o = s.k_in(
            &configmap(&format!("r{n}"), "default", "reinvoke"),
            &["create", "-f", "-", "-o", "json"],
        );
        let o = common::json(&o);
        o.pointer("/metadata/labels/b").is_some()
            && o.pointer("/metadata/annotations/a-saw-b") == Some(&json!("true"))
    });
    assert!(done, "a-first was not reinvoked after b-second's change");
    let calls = wh
        .received("/a-sees-b")
        .iter()
        .filter(|r| r.pointer("/request/object/metadata/name") == Some(&json!(format!("r{n}"))))
        .count();
    assert_eq!(calls, 2, "a-first is called twice: once, then reinvoked");

    // A webhook cannot produce an invalid object.
    let secrets = rules(&["CREATE"], &[""], &["secrets"]);
    s.k_in(
        &mutating(
            "bad",
            vec![url_hook(
                &wh,
                "bad.test.rk3s.io",
                "/bad-patch",
                secrets,
                "bad",
            )],
        ),
        &["create", "-f", "-"],
    );
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "s1", "labels": {"case": "bad"}}})
    .to_string();
    let err = create_until_refused(&s, &secret);
    assert!(
        err.contains(
            "The Secret \"s1\" is invalid: metadata.labels: Invalid value: \"not valid!\""
        ),
        "{err}"
    );
    // Nor move it to another name.
    let secrets = rules(&["CREATE"], &[""], &["secrets"]);
    s.k_in(
        &mutating(
            "rename",
            vec![url_hook(
                &wh,
                "rename.test.rk3s.io",
                "/rename",
                secrets,
                "rename",
            )],
        ),
        &["create", "-f", "-"],
    );
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "s2", "labels": {"case": "rename"}}})
    .to_string();
    let err = create_until_refused(&s, &secret);
    assert!(
        err.contains("Internal error occurred: admission webhook \"rename.test.rk3s.io\" attempted to change metadata.name, which is not supported"),
        "{err}"
    );
    assert!(s.k_err(&["get", "secret", "renamed"]).contains("NotFound"));

    // Warnings come back to kubectl.
    let sas = rules(&["CREATE"], &[""], &["serviceaccounts"]);
    s.k_in(
        &validating(
            "warn",
            vec![url_hook(&wh, "warn.test.rk3s.io", "/warn", sas, "warn")],
        ),
        &["create", "-f", "-"],
    );
    let mut n = 0;
    let warned = wait_until(WAIT, || {
        n += 1;
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": format!("sa{n}"), "labels": {"case": "warn"}}});
        let o = s.kubectl_stdin(&sa.to_string(), &["create", "-f", "-"]);
        o.status.success() && stderr(&o).contains("Warning: from the test webhook")
    });
    assert!(warned, "the webhook's warning never reached kubectl");
}

#[test]
fn updates_deletes_and_subresources_are_reviewed() {
    let s = Server::start();
    let wh = WebhookServer::start();
    let mut hook = url_hook(
        &wh,
        "record.test.rk3s.io",
        "/allow",
        rules(&["UPDATE", "DELETE"], &[""], &["configmaps", "pods/status"]),
        "record",
    );
    hook["objectSelector"] = json!({});
    s.k_in(&validating("record", vec![hook]), &["create", "-f", "-"]);
    s.k_in(
        &configmap("c1", "default", "record"),
        &["create", "-f", "-"],
    );
    let mut n = 0;
    assert!(wait_until(WAIT, || {
        n += 1;
        s.k(&["label", "configmap", "c1", &format!("n={n}"), "--overwrite"]);
        review_for(&wh, "/allow", "c1", "UPDATE").is_some()
    }));
    let upd = review_for(&wh, "/allow", "c1", "UPDATE").expect("update review");
    assert_eq!(upd["oldObject"]["metadata"]["name"], "c1");
    assert!(
        upd["object"]["metadata"]["labels"]["n"].is_string(),
        "{upd}"
    );
    assert_eq!(upd["options"]["kind"], "UpdateOptions");

    s.k(&["delete", "configmap", "c1"]);
    let del = review_for(&wh, "/allow", "c1", "DELETE").expect("a DELETE review");
    assert!(del["object"].is_null(), "{del}");
    assert_eq!(del["oldObject"]["data"], json!({"k": "v"}));
    assert_eq!(del["options"]["kind"], "DeleteOptions");
    assert_eq!(del["name"], "c1");

    // pods/status: the whole Pod, with subResource status.
    s.k(&["run", "p1", "--image=busybox", "--restart=Never"]);
    s.k(&[
        "patch",
        "pod",
        "p1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"message":"from the test"}}"#,
    ]);
    let st = wh
        .received("/allow")
        .into_iter()
        .filter_map(|r| r.get("request").cloned())
        .find(|r| r.pointer("/object/status/message") == Some(&json!("from the test")))
        .expect("a pods/status review");
    assert_eq!(st["subResource"], "status");
    assert_eq!(st["resource"]["resource"], "pods");
    assert_eq!(st["kind"]["kind"], "Pod");
    assert_eq!(st["operation"], "UPDATE");
    // A pods/status rule does not see the pod itself.
    s.k(&["label", "pod", "p1", "x=y"]);
    assert!(
        wh.received("/allow")
            .iter()
            .filter_map(|r| r.get("request"))
            .filter(|r| r["resource"]["resource"] == "pods")
            .all(|r| r["subResource"] == "status")
    );

    // deployments/scale: the webhook sees a Scale and may change it.
    let mut scale = url_hook(
        &wh,
        "scale.test.rk3s.io",
        "/replicas",
        rules(&["UPDATE"], &["apps"], &["deployments/scale"]),
        "",
    );
    scale["objectSelector"] = json!({});
    s.k_in(&mutating("scale", vec![scale]), &["create", "-f", "-"]);
    s.k(&[
        "create",
        "deployment",
        "d1",
        "--image=busybox",
        "--replicas=1",
    ]);
    assert!(wait_until(WAIT, || {
        s.k(&["scale", "deployment", "d1", "--replicas=5"]);
        s.k(&["get", "deployment", "d1", "-o", "jsonpath={.spec.replicas}"]) == "3"
    }));
    let req = wh
        .received("/replicas")
        .last()
        .and_then(|r| r.get("request").cloned())
        .expect("a scale review");
    assert_eq!(
        req["kind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    assert_eq!(
        req["resource"],
        json!({"group": "apps", "version": "v1", "resource": "deployments"})
    );
    assert_eq!(req["subResource"], "scale");
    assert_eq!(req["object"]["spec"]["replicas"], 5);
    assert_eq!(req["oldObject"]["kind"], "Scale");
    // A plain update of the deployment is not a scale.
    let before = wh.received("/replicas").len();
    s.k(&["label", "deployment", "d1", "x=y"]);
    assert_eq!(wh.received("/replicas").len(), before);
}

#[test]
fn call_failures_follow_the_failure_policy() {
    let s = Server::start();
    let wh = WebhookServer::start();
    let other_ca = WebhookServer::start();
    let cm = rules(&["CREATE"], &[""], &["configmaps"]);
    let mut slow = url_hook(&wh, "slow.test.rk3s.io", "/sleep", cm.clone(), "slow");
    slow["timeoutSeconds"] = json!(1);
    let down_port = common::free_port();
    let mut down = url_hook(&wh, "down.test.rk3s.io", "/allow", cm.clone(), "down");
    down["clientConfig"]["url"] = json!(format!("https://127.0.0.1:{down_port}/allow"));
    let mut down_ignored = down.clone();
    down_ignored["name"] = json!("down-ignored.test.rk3s.io");
    down_ignored["failurePolicy"] = json!("Ignore");
    down_ignored["objectSelector"] = json!({"matchLabels": {"case": "down-ignored"}});
    let mut wrong_ca = url_hook(&wh, "ca.test.rk3s.io", "/allow", cm.clone(), "ca");
    wrong_ca["clientConfig"]["caBundle"] = json!(other_ca.ca_bundle());
    s.k_in(
        &validating(
            "failures",
            vec![
                slow,
                url_hook(
                    &wh,
                    "garbage.test.rk3s.io",
                    "/garbage",
                    cm.clone(),
                    "garbage",
                ),
                url_hook(&wh, "uid.test.rk3s.io", "/wrong-uid", cm.clone(), "uid"),
                url_hook(&wh, "e500.test.rk3s.io", "/error500", cm.clone(), "e500"),
                down,
                down_ignored,
                wrong_ca,
            ],
        ),
        &["create", "-f", "-"],
    );
    let err = create_until_refused(&s, &configmap("g", "default", "garbage"));
    assert!(
        err.contains("Error from server (InternalError): error when creating \"STDIN\": Internal error occurred: failed calling webhook \"garbage.test.rk3s.io\": received invalid webhook response:"),
        "{err}"
    );
    // timeoutSeconds: 1 fails the call after about a second, not 10.
    let t = Instant::now();
    let err = s.k_in_err(
        &configmap("slow", "default", "slow"),
        &["create", "-f", "-"],
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    assert!(
        err.contains(&format!(
            "Internal error occurred: failed calling webhook \"slow.test.rk3s.io\": failed to call webhook: Post \"https://127.0.0.1:{}/sleep?timeout=1s\": context deadline exceeded",
            wh.port
        )),
        "{err}"
    );
    let err = s.k_in_err(&configmap("u", "default", "uid"), &["create", "-f", "-"]);
    assert!(
        err.contains("received invalid webhook response: expected response.uid="),
        "{err}"
    );
    let err = s.k_in_err(&configmap("e", "default", "e500"), &["create", "-f", "-"]);
    assert!(
        err.contains("failed calling webhook \"e500.test.rk3s.io\": failed to call webhook: an error on the server (\"webhook broke\") has prevented the request from succeeding"),
        "{err}"
    );
    let err = s.k_in_err(&configmap("d", "default", "down"), &["create", "-f", "-"]);
    assert!(
        err.contains("failed calling webhook \"down.test.rk3s.io\"")
            && err.contains("connection refused"),
        "{err}"
    );
    // A serving certificate the caBundle does not vouch for is a call failure.
    let err = s.k_in_err(&configmap("c", "default", "ca"), &["create", "-f", "-"]);
    assert!(
        err.contains("failed calling webhook \"ca.test.rk3s.io\"") && err.contains("tls:"),
        "{err}"
    );
    // failurePolicy Ignore lets writes through a webhook that is down.
    s.k_in(
        &configmap("di", "default", "down-ignored"),
        &["create", "-f", "-"],
    );
    // ...and through one that times out.
    s.k(&[
        "patch",
        "validatingwebhookconfiguration",
        "failures",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]"#,
    ]);
    assert!(wait_until(WAIT, || {
        s.kubectl_stdin(
            &configmap("slow", "default", "slow"),
            &["create", "-f", "-"],
        )
        .status
        .success()
    }));
}

#[test]
fn dry_run_and_selectors() {
    let s = Server::start();
    let wh = WebhookServer::start();
    let cm = rules(&["CREATE"], &[""], &["configmaps"]);
    let mut dry = url_hook(&wh, "dry.test.rk3s.io", "/allow", cm.clone(), "dry");
    dry["sideEffects"] = json!("NoneOnDryRun");
    let mut ns_sel = url_hook(&wh, "ns.test.rk3s.io", "/deny", cm.clone(), "ns");
    ns_sel["namespaceSelector"] = json!({"matchExpressions": [
        {"key": "webhooks", "operator": "NotIn", "values": ["off"]}]});
    let mut namespaces = url_hook(
        &wh,
        "namespaces.test.rk3s.io",
        "/deny",
        rules(&["CREATE"], &[""], &["namespaces"]),
        "",
    );
    namespaces["objectSelector"] = json!({});
    namespaces["namespaceSelector"] = json!({"matchLabels": {"deny-me": "yes"}});
    let mut cluster_only = url_hook(&wh, "cluster.test.rk3s.io", "/deny", cm.clone(), "ns");
    cluster_only["rules"][0]["scope"] = json!("Cluster");
    s.k_in(
        &validating("selectors", vec![dry, ns_sel, namespaces, cluster_only]),
        &["create", "-f", "-"],
    );
    s.k(&["create", "namespace", "checked"]);
    s.k_in(
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"exempted","labels":{"webhooks":"off"}}}"#,
        &["create", "-f", "-"],
    );
    let err = create_until_refused(&s, &configmap("n1", "checked", "ns"));
    assert!(
        err.contains("\"ns.test.rk3s.io\" denied the request"),
        "{err}"
    );
    // The exempted namespace's label keeps the webhook out; the
    // Cluster-scoped rule never matches a namespaced object.
    s.k_in(&configmap("n1", "exempted", "ns"), &["create", "-f", "-"]);
    // A Namespace is matched on its own labels.
    let err = s.k_in_err(
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"refused","labels":{"deny-me":"yes"}}}"#,
        &["create", "-f", "-"],
    );
    assert!(
        err.contains("\"namespaces.test.rk3s.io\" denied the request"),
        "{err}"
    );
    let req = review_for(&wh, "/deny", "refused", "CREATE").expect("namespace review");
    assert_eq!(
        req["namespace"], "refused",
        "a Namespace's own name, as upstream"
    );
    s.k(&["create", "namespace", "allowed"]);

    // Dry run: a NoneOnDryRun webhook is called, told dryRun, and nothing is stored.
    s.k_in(
        &configmap("dry1", "default", "dry"),
        &["create", "-f", "-", "--dry-run=server"],
    );
    let req = review_for(&wh, "/allow", "dry1", "CREATE").expect("dry-run review");
    assert_eq!(req["dryRun"], true);
    assert_eq!(req["options"]["dryRun"], json!(["All"]));
    assert!(
        s.k_err(&["get", "configmap", "dry1"]).contains("NotFound"),
        "a dry run stored the object"
    );
}

#[test]
fn service_references_resolve_to_endpoints() {
    let s = Server::start();
    let wh = WebhookServer::start_with_names(&["hook.hooks.svc"]);
    s.k(&["create", "namespace", "hooks"]);
    for name in ["hook", "other"] {
        let objs = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "hooks"},
             "spec": {"ports": [{"name": "https", "port": 443, "targetPort": wh.port}]}},
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": "hooks"},
             "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                          "ports": [{"name": "https", "port": wh.port}]}]},
        ]});
        s.k_in(&objs.to_string(), &["create", "-f", "-"]);
    }
    let cm = rules(&["CREATE"], &[""], &["configmaps"]);
    let svc_hook = |hook: &str, svc: &str, case: &str| {
        let mut h = url_hook(&wh, hook, "/deny", cm.clone(), case);
        h["clientConfig"] = json!({
            "service": {"namespace": "hooks", "name": svc, "path": "/deny"},
            "caBundle": wh.ca_bundle(),
        });
        h
    };
    s.k_in(
        &validating(
            "by-service",
            vec![
                svc_hook("svc.test.rk3s.io", "hook", "svc"),
                svc_hook("wrong-name.test.rk3s.io", "other", "other"),
            ],
        ),
        &["create", "-f", "-"],
    );
    let err = create_until_refused(&s, &configmap("s1", "default", "svc"));
    assert!(
        err.contains("admission webhook \"svc.test.rk3s.io\" denied the request: the test says no"),
        "{err}"
    );
    // The certificate must name the service: other.hooks.svc it does not.
    let err = s.k_in_err(&configmap("s2", "default", "other"), &["create", "-f", "-"]);
    assert!(
        err.contains("failed calling webhook \"wrong-name.test.rk3s.io\"")
            && err.contains("https://other.hooks.svc:443/deny?timeout=10s")
            && err.contains("tls:"),
        "{err}"
    );
    let stored = s.k_json(&["get", "validatingwebhookconfiguration", "by-service"]);
    assert_eq!(
        stored["webhooks"][0]["clientConfig"]["service"]["port"],
        443
    );
}

#[test]
fn configurations_are_defaulted_and_validated() {
    let s = Server::start();
    let wh = WebhookServer::start();
    let cm = rules(&["CREATE"], &[""], &["configmaps"]);
    let mut h = url_hook(&wh, "defaults.test.rk3s.io", "/allow", cm.clone(), "x");
    h.as_object_mut().map(|m| m.remove("objectSelector"));
    s.k_in(
        &mutating("defaults", vec![h.clone()]),
        &["create", "-f", "-"],
    );
    let got = s.k_json(&["get", "mutatingwebhookconfiguration", "defaults"]);
    let w = &got["webhooks"][0];
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(w["matchPolicy"], "Equivalent");
    assert_eq!(w["namespaceSelector"], json!({}));
    assert_eq!(w["objectSelector"], json!({}));
    assert_eq!(w["timeoutSeconds"], 10);
    assert_eq!(w["reinvocationPolicy"], "Never");
    assert_eq!(w["rules"][0]["scope"], "*");

    let bad = |edit: &dyn Fn(&mut Value), want: &str| {
        let mut b = h.clone();
        edit(&mut b);
        let err = s.k_in_err(&validating("bad", vec![b]), &["create", "-f", "-"]);
        assert!(
            err.contains("is invalid") && err.contains(want),
            "{want}: {err}"
        );
    };
    bad(
        &|b| b["clientConfig"]["url"] = json!("http://127.0.0.1:1/x"),
        "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]",
    );
    bad(
        &|b| b["name"] = json!("short.name"),
        "webhooks[0].name: Invalid value: \"short.name\": should be a domain with at least three segments separated by dots",
    );
    bad(
        &|b| {
            b.as_object_mut().map(|m| m.remove("sideEffects"));
        },
        "webhooks[0].sideEffects: Required value",
    );
    bad(
        &|b| b["admissionReviewVersions"] = json!(["v2"]),
        "webhooks[0].admissionReviewVersions",
    );
    bad(
        &|b| b["timeoutSeconds"] = json!(31),
        "webhooks[0].timeoutSeconds",
    );
    bad(
        &|b| b["clientConfig"]["service"] = json!({"namespace": "a", "name": "b"}),
        "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
    );
    bad(
        &|b| b["matchConditions"] = json!([{"name": "c", "expression": "nosuch.field == 1"}]),
        "webhooks[0].matchConditions[0].expression: Invalid value: \"nosuch.field == 1\": compilation failed: ERROR: <input>:1:1: undeclared reference to 'nosuch'",
    );
    bad(
        &|b| {
            b["matchConditions"] = json!([
                {"name": "c", "expression": "true"}, {"name": "c", "expression": "true"}])
        },
        "webhooks[0].matchConditions[1].name: Duplicate value: \"c\"",
    );
    // A good condition is accepted.
    let mut good = h.clone();
    good["matchConditions"] = json!([{"name": "c", "expression": "object != null"}]);
    s.k_in(&validating("good", vec![good]), &["create", "-f", "-"]);
}

#[test]
fn match_conditions_select_with_cel() {
    let s = Server::start();
    let wh = WebhookServer::start();
    let cm = rules(&["CREATE"], &[""], &["configmaps"]);
    let mut team = url_hook(&wh, "team.test.rk3s.io", "/deny", cm.clone(), "cel");
    team["matchConditions"] = json!([
        {"name": "team-a", "expression": "'team' in object.metadata.labels && object.metadata.labels.team == 'a'"},
        {"name": "as-a-user", "expression": "request.userInfo.username != ''"},
    ]);
    let mut broken = url_hook(
        &wh,
        "broken.test.rk3s.io",
        "/allow",
        cm.clone(),
        "cel-error",
    );
    broken["matchConditions"] =
        json!([{"name": "no-spec", "expression": "object.spec.replicas == 1"}]);
    let mut broken_ignored = broken.clone();
    broken_ignored["name"] = json!("broken-ignored.test.rk3s.io");
    broken_ignored["failurePolicy"] = json!("Ignore");
    broken_ignored["objectSelector"] = json!({"matchLabels": {"case": "cel-ignored"}});
    s.k_in(
        &validating("cel", vec![team, broken, broken_ignored]),
        &["create", "-f", "-"],
    );
    let labelled = |name: &str, case: &str, team: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "labels": {"case": case, "team": team}}})
        .to_string()
    };
    let err = create_until_refused(&s, &labelled("a1", "cel", "a"));
    assert!(
        err.contains("\"team.test.rk3s.io\" denied the request"),
        "{err}"
    );
    // A condition that is false keeps the webhook out.
    s.k_in(&labelled("b1", "cel", "b"), &["create", "-f", "-"]);
    assert!(review_for(&wh, "/deny", "b1", "CREATE").is_none());
    // One that cannot be evaluated fails the request (failurePolicy Fail)...
    let err = s.k_in_err(&labelled("e1", "cel-error", "a"), &["create", "-f", "-"]);
    assert!(
        err.contains("Internal error occurred: failed calling webhook \"broken.test.rk3s.io\": failed to evaluate match conditions: expression 'no-spec' resulted in error"),
        "{err}"
    );
    // ...or skips the webhook (Ignore).
    s.k_in(&labelled("e2", "cel-ignored", "a"), &["create", "-f", "-"]);
    assert!(review_for(&wh, "/allow", "e2", "CREATE").is_none());
}
