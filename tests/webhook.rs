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
    // As upstream, the request's fields are recorded before mutating
    // admission: the webhook's label is nobody's.
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
            .pointer("/fieldsV1/f:metadata/f:labels/f:case")
            .is_some(),
        "{create}"
    );
    assert!(
        mf.iter().all(|e| e
            .pointer("/fieldsV1/f:metadata/f:labels/f:webhook-added")
            .is_none()),
        "{mf:?}"
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

/// A webhook refusing ConfigMaps labelled `case=<case>`: added to a
/// configuration so that `wait_for_configuration` can tell when the
/// server's cache holds it.
fn sentinel(wh: &WebhookServer, case: &str) -> Value {
    url_hook(
        wh,
        &format!("{case}.sentinel.test.rk3s.io"),
        "/deny",
        rules(&["CREATE"], &[""], &["configmaps"]),
        case,
    )
}

/// Wait until the configuration holding `sentinel(wh, case)` is in force.
fn wait_for_configuration(s: &Server, case: &str) {
    create_until_refused(s, &configmap("sentinel", "default", case));
}

/// The AdmissionReview requests received on `path` for `resource` and
/// subresource `sub`.
fn reviews_of(wh: &WebhookServer, path: &str, resource: &str, sub: &str) -> Vec<Value> {
    wh.received(path)
        .into_iter()
        .filter_map(|r| r.get("request").cloned())
        .filter(|r| {
            r["resource"]["resource"] == resource
                && r.get("subResource").and_then(Value::as_str).unwrap_or("") == sub
        })
        .collect()
}

fn pod(name: &str) -> String {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    .to_string()
}

#[test]
fn bindings_and_evictions_are_reviewed_as_creates_of_their_kind() {
    let mut s = Server::start();
    let wh = WebhookServer::start();
    let mut subs = url_hook(
        &wh,
        "subresources.test.rk3s.io",
        "/allow",
        rules(&["CREATE"], &[""], &["pods/binding", "pods/eviction"]),
        "",
    );
    subs["objectSelector"] = json!({});
    // A rule for `pods` does not see its subresources.
    let mut pods_only = url_hook(
        &wh,
        "pods.test.rk3s.io",
        "/warn",
        rules(&["*"], &[""], &["pods"]),
        "",
    );
    pods_only["objectSelector"] = json!({});
    s.k_in(
        &validating(
            "subresources",
            vec![subs, pods_only, sentinel(&wh, "sync-sub")],
        ),
        &["create", "-f", "-"],
    );
    wait_for_configuration(&s, "sync-sub");
    s.k_in(&pod("p1"), &["create", "-f", "-"]);
    s.k_in(&pod("p2"), &["create", "-f", "-"]);

    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p1"},
                         "target": {"kind": "Node", "name": "node-x"}});
    let r = s.post_json("/api/v1/namespaces/default/pods/p1/binding", &binding);
    assert_eq!(r.status, 201, "{}", r.snippet());
    let reviews = reviews_of(&wh, "/allow", "pods", "binding");
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    let req = &reviews[0];
    assert_eq!(req["operation"], "CREATE");
    assert_eq!(
        req["kind"],
        json!({"group": "", "version": "v1", "kind": "Binding"})
    );
    assert_eq!(req["requestKind"], req["kind"]);
    assert_eq!(
        req["resource"],
        json!({"group": "", "version": "v1", "resource": "pods"})
    );
    assert_eq!(req["requestSubResource"], "binding");
    assert_eq!(req["name"], "p1");
    assert_eq!(req["namespace"], "default");
    assert_eq!(req["object"]["kind"], "Binding");
    assert_eq!(req["object"]["target"]["name"], "node-x");
    assert_eq!(req["object"]["metadata"]["namespace"], "default");
    assert!(req["oldObject"].is_null());
    assert_eq!(req["options"]["kind"], "CreateOptions");
    assert_eq!(
        s.k(&["get", "pod", "p1", "-o", "jsonpath={.spec.nodeName}"]),
        "node-x"
    );

    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": "p1", "namespace": "default"}});
    let r = s.post_json("/api/v1/namespaces/default/pods/p1/eviction", &eviction);
    assert_eq!(r.status, 201, "{}", r.snippet());
    let reviews = reviews_of(&wh, "/allow", "pods", "eviction");
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    let req = &reviews[0];
    assert_eq!(req["operation"], "CREATE");
    assert_eq!(
        req["kind"],
        json!({"group": "policy", "version": "v1", "kind": "Eviction"})
    );
    assert_eq!(req["resource"]["resource"], "pods");
    assert_eq!(req["subResource"], "eviction");
    assert_eq!(req["name"], "p1");
    assert_eq!(req["object"]["apiVersion"], "policy/v1");
    // The `pods` rule saw the pods' creates (and the eviction's delete) only.
    assert!(
        reviews_of(&wh, "/warn", "pods", "binding").is_empty()
            && reviews_of(&wh, "/warn", "pods", "eviction").is_empty()
    );
    assert!(!reviews_of(&wh, "/warn", "pods", "").is_empty());

    // A refusal stops them.
    let mut deny = url_hook(
        &wh,
        "deny-subresources.test.rk3s.io",
        "/deny",
        rules(&["CREATE"], &[""], &["*/binding", "pods/eviction"]),
        "",
    );
    deny["objectSelector"] = json!({});
    s.k_in(
        &validating("deny-subresources", vec![deny, sentinel(&wh, "sync-deny")]),
        &["create", "-f", "-"],
    );
    wait_for_configuration(&s, "sync-deny");
    let mut binding = binding;
    binding["metadata"]["name"] = json!("p2");
    let r = s.post_json("/api/v1/namespaces/default/pods/p2/binding", &binding);
    let st = r.assert_status(403, "");
    assert_eq!(
        st["message"],
        "admission webhook \"deny-subresources.test.rk3s.io\" denied the request: the test says no"
    );
    assert_eq!(
        s.k(&["get", "pod", "p2", "-o", "jsonpath={.spec.nodeName}"]),
        ""
    );
    let mut eviction = eviction;
    eviction["metadata"]["name"] = json!("p2");
    let r = s.post_json("/api/v1/namespaces/default/pods/p2/eviction", &eviction);
    let st = r.assert_status(403, "");
    assert!(
        st["message"]
            .as_str()
            .is_some_and(|m| m.contains("deny-subresources.test.rk3s.io")),
        "{st}"
    );
    s.k(&["get", "pod", "p2"]);
}

#[test]
fn connect_requests_are_reviewed_before_the_stream_opens() {
    let mut s = Server::start();
    let wh = WebhookServer::start();
    s.k_in(&pod("p"), &["create", "-f", "-"]);
    // Without webhooks the pod's missing node is the answer.
    let err = s.k_err(&["exec", "p", "--", "echo", "hi"]);
    assert!(err.contains("does not have a host assigned"), "{err}");

    let mut connect = url_hook(
        &wh,
        "connect.test.rk3s.io",
        "/deny",
        rules(
            &["CONNECT"],
            &[""],
            &[
                "pods/exec",
                "pods/attach",
                "pods/portforward",
                "pods/proxy",
                "services/proxy",
            ],
        ),
        "",
    );
    connect["objectSelector"] = json!({});
    // A selector on labels never matches a CONNECT's options (upstream
    // skips objects without metadata).
    let mut selected = url_hook(
        &wh,
        "selected.test.rk3s.io",
        "/deny-quiet",
        rules(&["CONNECT"], &[""], &["pods/exec"]),
        "",
    );
    selected["objectSelector"] =
        json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]});
    s.k_in(
        &validating(
            "connect",
            vec![connect, selected, sentinel(&wh, "sync-connect")],
        ),
        &["create", "-f", "-"],
    );
    wait_for_configuration(&s, "sync-connect");

    let err = s.k_err(&["exec", "p", "-c", "c", "--", "echo", "hi"]);
    assert!(
        err.contains(
            "admission webhook \"connect.test.rk3s.io\" denied the request: the test says no"
        ),
        "{err}"
    );
    let reviews = reviews_of(&wh, "/deny", "pods", "exec");
    let req = reviews.last().expect("an exec review");
    assert_eq!(req["operation"], "CONNECT");
    assert_eq!(
        req["kind"],
        json!({"group": "", "version": "v1", "kind": "PodExecOptions"})
    );
    assert_eq!(
        req["resource"],
        json!({"group": "", "version": "v1", "resource": "pods"})
    );
    assert_eq!(req["name"], "p");
    assert_eq!(req["namespace"], "default");
    assert!(req["options"].is_null(), "{req}");
    assert!(req["oldObject"].is_null(), "{req}");
    assert_eq!(req["dryRun"], false);
    let o = &req["object"];
    assert_eq!(o["kind"], "PodExecOptions");
    assert_eq!(o["apiVersion"], "v1");
    assert_eq!(o["command"], json!(["echo", "hi"]));
    assert_eq!(o["container"], "c");
    assert_eq!(o["stdout"], true);
    assert!(o.get("stdin").is_none() && o.get("tty").is_none(), "{o}");
    assert!(wh.received("/deny-quiet").is_empty());

    // attach, port-forward and proxy, raw: refused before any upgrade.
    let r = s.request(common::Req::new(
        "POST",
        "/api/v1/namespaces/default/pods/p/attach?stdout=true&stdin=true&container=c",
    ));
    let st = r.assert_status(403, "");
    assert!(
        st["message"]
            .as_str()
            .is_some_and(|m| m.contains("connect.test.rk3s.io")),
        "{st}"
    );
    let req = reviews_of(&wh, "/deny", "pods", "attach")
        .pop()
        .expect("an attach review");
    assert_eq!(
        req["object"],
        json!({"kind": "PodAttachOptions", "apiVersion": "v1",
               "stdin": true, "stdout": true, "container": "c"})
    );
    s.request(common::Req::new(
        "GET",
        "/api/v1/namespaces/default/pods/p/portforward?ports=8080&ports=9090",
    ))
    .assert_status(403, "");
    let req = reviews_of(&wh, "/deny", "pods", "portforward")
        .pop()
        .expect("a portforward review");
    assert_eq!(
        req["object"],
        json!({"kind": "PodPortForwardOptions", "apiVersion": "v1", "ports": [8080, 9090]})
    );
    s.request(common::Req::new(
        "GET",
        "/api/v1/namespaces/default/pods/p:80/proxy/healthz",
    ))
    .assert_status(403, "");
    let req = reviews_of(&wh, "/deny", "pods", "proxy")
        .pop()
        .expect("a proxy review");
    assert_eq!(req["name"], "p:80");
    assert_eq!(
        req["object"],
        json!({"kind": "PodProxyOptions", "apiVersion": "v1", "path": "/healthz"})
    );
    s.request(common::Req::new(
        "GET",
        "/api/v1/namespaces/default/services/web:http/proxy/metrics/",
    ))
    .assert_status(403, "");
    let req = reviews_of(&wh, "/deny", "services", "proxy")
        .pop()
        .expect("a services/proxy review");
    assert_eq!(
        req["kind"],
        json!({"group": "", "version": "v1", "kind": "ServiceProxyOptions"})
    );
    assert_eq!(req["object"]["path"], "/metrics/");
    // nodes/proxy is not in the rules: the missing node is the answer.
    s.request(common::Req::new("GET", "/api/v1/nodes/n1/proxy/stats"))
        .assert_status(404, "NotFound");
    assert!(reviews_of(&wh, "/deny", "nodes", "proxy").is_empty());
    // Logs are not CONNECT.
    let logs = s.kubectl(&["logs", "p"]);
    assert!(!stderr(&logs).contains("connect.test.rk3s.io"), "{logs:?}");
}

#[test]
fn writes_send_upstreams_operation_options() {
    let s = Server::start();
    let wh = WebhookServer::start();
    s.k_in(
        &validating(
            "options",
            vec![
                url_hook(
                    &wh,
                    "options.test.rk3s.io",
                    "/allow",
                    rules(&["CREATE", "UPDATE"], &[""], &["configmaps"]),
                    "opts",
                ),
                sentinel(&wh, "sync-opts"),
            ],
        ),
        &["create", "-f", "-"],
    );
    wait_for_configuration(&s, "sync-opts");
    let options = |name: &str, op: &str| -> Vec<Value> {
        wh.received("/allow")
            .into_iter()
            .filter_map(|r| r.get("request").cloned())
            .filter(|r| r["name"] == name && r["operation"] == op)
            .map(|r| r["options"].clone())
            .collect()
    };
    s.k_in(&configmap("o1", "default", "opts"), &["create", "-f", "-"]);
    let o = options("o1", "CREATE").pop().expect("create options");
    assert_eq!(o["kind"], "CreateOptions");
    assert_eq!(o["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(o["fieldManager"], "kubectl-create");
    assert_eq!(o["fieldValidation"], "Strict");
    assert!(o.get("dryRun").is_none(), "{o}");

    // Every patch type is an UPDATE with UpdateOptions (upstream turns the
    // PatchOptions into those), naming kubectl's field manager.
    for (ty, patch) in [
        ("merge", r#"{"data":{"m":"1"}}"#),
        ("strategic", r#"{"data":{"s":"1"}}"#),
        ("json", r#"[{"op":"add","path":"/data/j","value":"1"}]"#),
    ] {
        wh.clear();
        s.k(&["patch", "configmap", "o1", "--type", ty, "-p", patch]);
        let o = options("o1", "UPDATE").pop().expect("patch options");
        assert_eq!(o["kind"], "UpdateOptions", "{ty}: {o}");
        assert_eq!(o["fieldManager"], "kubectl-patch", "{ty}: {o}");
        assert!(o.get("force").is_none(), "{o}");
    }
    wh.clear();
    let mut cm: Value = serde_json::from_str(&s.k(&["get", "configmap", "o1", "-o", "json"]))
        .expect("configmap json");
    cm["data"]["r"] = json!("1");
    s.k_in(&cm.to_string(), &["replace", "-f", "-"]);
    let o = options("o1", "UPDATE").pop().expect("replace options");
    assert_eq!(o["kind"], "UpdateOptions");
    assert_eq!(o["fieldManager"], "kubectl-replace");

    // Server-side apply: a create when the object is new, then updates.
    wh.clear();
    s.k_in(
        &configmap("o2", "default", "opts"),
        &["apply", "--server-side", "-f", "-"],
    );
    let o = options("o2", "CREATE").pop().expect("apply-create options");
    assert_eq!(o["kind"], "CreateOptions");
    assert_eq!(o["fieldManager"], "kubectl");
    assert!(o.get("force").is_none(), "{o}");
    let mut changed: Value =
        serde_json::from_str(&configmap("o2", "default", "opts")).expect("configmap json");
    changed["data"]["k"] = json!("w");
    s.k_in(
        &changed.to_string(),
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
    );
    let o = options("o2", "UPDATE").pop().expect("apply-update options");
    assert_eq!(o["kind"], "UpdateOptions");
    assert_eq!(o["fieldManager"], "kubectl");
    // Dry runs say so.
    wh.clear();
    s.k(&[
        "patch",
        "configmap",
        "o2",
        "--type=merge",
        "-p",
        r#"{"data":{"d":"1"}}"#,
        "--dry-run=server",
    ]);
    let o = options("o2", "UPDATE").pop().expect("dry-run options");
    assert_eq!(o["dryRun"], json!(["All"]));
}

#[test]
fn creates_reach_mutating_webhooks_before_names_and_uids_and_unowned_in_managed_fields() {
    let s = Server::start();
    let wh = WebhookServer::start();
    let cm = rules(&["CREATE", "UPDATE"], &[""], &["configmaps"]);
    s.k_in(
        &mutating(
            "generate",
            vec![url_hook(
                &wh,
                "label.test.rk3s.io",
                "/label",
                cm.clone(),
                "gen",
            )],
        ),
        &["create", "-f", "-"],
    );
    s.k_in(
        &validating(
            "generate",
            vec![
                url_hook(&wh, "see.test.rk3s.io", "/allow", cm, "gen"),
                sentinel(&wh, "sync-gen"),
            ],
        ),
        &["create", "-f", "-"],
    );
    wait_for_configuration(&s, "sync-gen");
    // The mutating configuration is followed by the same watch; make sure
    // it is in force too.
    assert!(wait_until(WAIT, || {
        let name = format!("probe-{}", wh.received("/label").len());
        s.k_in(&configmap(&name, "default", "gen"), &["create", "-f", "-"]);
        !wh.received("/label").is_empty()
    }));
    wh.clear();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"generateName": "gen-", "labels": {"case": "gen"}},
                      "data": {"k": "v"}});
    let out = s.k_in(&body.to_string(), &["create", "-f", "-", "-o", "json"]);
    let created: Value = serde_json::from_str(&out).expect("created json");
    let name = created["metadata"]["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let m = wh
        .received("/label")
        .pop()
        .and_then(|r| r.get("request").cloned())
        .expect("a mutating review");
    assert!(m.get("name").is_none(), "no name before generation: {m}");
    let meta = &m["object"]["metadata"];
    assert!(meta.get("name").is_none(), "{meta}");
    assert_eq!(meta["generateName"], "gen-");
    assert!(meta.get("uid").is_none(), "{meta}");
    assert!(meta.get("creationTimestamp").is_none(), "{meta}");
    assert!(meta.get("resourceVersion").is_none(), "{meta}");
    // managedFields are recorded before mutating admission.
    assert_eq!(meta["managedFields"][0]["manager"], "kubectl-create");

    let v = wh
        .received("/allow")
        .pop()
        .and_then(|r| r.get("request").cloned())
        .expect("a validating review");
    assert_eq!(v["name"], name);
    let meta = &v["object"]["metadata"];
    assert_eq!(meta["name"], name);
    assert!(
        meta["uid"].as_str().is_some_and(|u| u.len() == 36),
        "{meta}"
    );
    assert!(meta["creationTimestamp"].is_string(), "{meta}");
    assert_eq!(meta["labels"]["webhook-added"], "yes");

    // The webhook's label is the object's but nobody's in managedFields:
    // upstream records the request's fields before mutating admission.
    let owned = |obj: &Value| -> Vec<(String, String)> {
        obj["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap_or_default().to_string(),
                    e["fieldsV1"].to_string(),
                )
            })
            .collect()
    };
    let created = s.k_json(&["get", "configmap", name, "--show-managed-fields"]);
    assert_eq!(created["metadata"]["labels"]["webhook-added"], "yes");
    let entries = owned(&created);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].1.contains("f:case"), "{entries:?}");
    assert!(!entries[0].1.contains("webhook-added"), "{entries:?}");

    // Server-side apply alike.
    s.k_in(
        &configmap("applied", "default", "gen"),
        &["apply", "--server-side", "-f", "-"],
    );
    let applied = s.k_json(&["get", "configmap", "applied", "--show-managed-fields"]);
    assert_eq!(applied["metadata"]["labels"]["webhook-added"], "yes");
    let entries = owned(&applied);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        entries[0].0 == "kubectl" && entries[0].1.contains("f:case"),
        "{entries:?}"
    );
    assert!(!entries[0].1.contains("webhook-added"), "{entries:?}");
    // Nor does an update credit the webhook's change to its writer.
    s.k(&["label", "configmap", "applied", "more=1"]);
    let labelled = s.k_json(&["get", "configmap", "applied", "--show-managed-fields"]);
    assert!(
        owned(&labelled)
            .iter()
            .all(|(_, f)| !f.contains("webhook-added")),
        "{:?}",
        owned(&labelled)
    );
}

const GADGET_CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1",
  "kind": "CustomResourceDefinition",
  "metadata": {"name": "gadgets.test.rk3s.io"},
  "spec": {
    "group": "test.rk3s.io",
    "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
    "scope": "Namespaced",
    "versions": [
      {"name": "v1beta1", "served": true, "storage": false,
       "schema": {"openAPIV3Schema": {"type": "object", "properties": {
         "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}},
      {"name": "v1", "served": true, "storage": true,
       "schema": {"openAPIV3Schema": {"type": "object", "properties": {
         "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}
    ]
  }
}"#;

fn gadget(name: &str, version: &str) -> String {
    json!({"apiVersion": format!("test.rk3s.io/{version}"), "kind": "Gadget",
           "metadata": {"name": name, "namespace": "default", "labels": {"case": "mp"}},
           "spec": {"size": 3}})
    .to_string()
}

#[test]
fn match_policy_equivalent_reaches_other_versions_converted() {
    let s = Server::start();
    let wh = WebhookServer::start();
    s.k_in(GADGET_CRD, &["create", "-f", "-"]);
    s.k(&[
        "wait",
        "--for",
        "condition=established",
        "crd/gadgets.test.rk3s.io",
        "--timeout=30s",
    ]);
    let v1beta1 = json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": ["test.rk3s.io"],
                          "apiVersions": ["v1beta1"], "resources": ["gadgets"]}]);
    let mut equivalent = url_hook(
        &wh,
        "equivalent.test.rk3s.io",
        "/allow",
        v1beta1.clone(),
        "mp",
    );
    equivalent["matchPolicy"] = json!("Equivalent");
    let mut exact = url_hook(&wh, "exact.test.rk3s.io", "/warn", v1beta1.clone(), "mp");
    exact["matchPolicy"] = json!("Exact");
    // Mutating webhooks default to Equivalent too; the patch made to the
    // v1beta1 form lands on the v1 object.
    s.k_in(
        &mutating(
            "versions",
            vec![url_hook(&wh, "label.test.rk3s.io", "/label", v1beta1, "mp")],
        ),
        &["create", "-f", "-"],
    );
    s.k_in(
        &validating(
            "versions",
            vec![equivalent, exact, sentinel(&wh, "sync-mp")],
        ),
        &["create", "-f", "-"],
    );
    wait_for_configuration(&s, "sync-mp");
    assert!(wait_until(WAIT, || {
        let n = wh.received("/label").len();
        s.k_in(&gadget(&format!("probe-{n}"), "v1"), &["create", "-f", "-"]);
        !wh.received("/label").is_empty()
    }));
    wh.clear();

    s.k_in(&gadget("g1", "v1"), &["create", "-f", "-"]);
    let req = review_for(&wh, "/allow", "g1", "CREATE").expect("an Equivalent review");
    let gvk = |v: &str| json!({"group": "test.rk3s.io", "version": v, "kind": "Gadget"});
    let gvr = |v: &str| json!({"group": "test.rk3s.io", "version": v, "resource": "gadgets"});
    assert_eq!(req["kind"], gvk("v1beta1"));
    assert_eq!(req["resource"], gvr("v1beta1"));
    assert_eq!(req["requestKind"], gvk("v1"));
    assert_eq!(req["requestResource"], gvr("v1"));
    assert_eq!(req["object"]["apiVersion"], "test.rk3s.io/v1beta1");
    assert_eq!(req["object"]["metadata"]["labels"]["webhook-added"], "yes");
    assert!(
        review_for(&wh, "/warn", "g1", "CREATE").is_none(),
        "matchPolicy Exact matched another version"
    );
    let m = review_for(&wh, "/label", "g1", "CREATE").expect("a mutating review");
    assert_eq!(m["object"]["apiVersion"], "test.rk3s.io/v1beta1");
    assert_eq!(m["kind"], gvk("v1beta1"));
    let stored = s.k_json(&["get", "gadgets.v1.test.rk3s.io", "g1"]);
    assert_eq!(stored["apiVersion"], "test.rk3s.io/v1");
    assert_eq!(stored["metadata"]["labels"]["webhook-added"], "yes");

    // Updates convert the old object too.
    s.k(&["label", "gadgets.v1.test.rk3s.io", "g1", "more=1"]);
    let upd = review_for(&wh, "/allow", "g1", "UPDATE").expect("an update review");
    assert_eq!(upd["oldObject"]["apiVersion"], "test.rk3s.io/v1beta1");
    assert_eq!(upd["requestKind"], gvk("v1"));

    // A request to the rule's own version matches both exactly.
    s.k_in(&gadget("g2", "v1beta1"), &["create", "-f", "-"]);
    let req = review_for(&wh, "/warn", "g2", "CREATE").expect("an Exact review");
    assert_eq!(req["kind"], gvk("v1beta1"));
    assert_eq!(req["requestKind"], gvk("v1beta1"));
}

#[test]
fn webhooks_without_ca_bundle_are_verified_against_system_roots() {
    let s = Server::start();
    let wh = WebhookServer::start();
    let mut no_bundle = url_hook(
        &wh,
        "system-roots.test.rk3s.io",
        "/allow",
        rules(&["CREATE"], &[""], &["configmaps"]),
        "tls",
    );
    no_bundle["clientConfig"]
        .as_object_mut()
        .map(|c| c.remove("caBundle"));
    s.k_in(
        &validating("tls", vec![no_bundle, sentinel(&wh, "sync-tls")]),
        &["create", "-f", "-"],
    );
    wait_for_configuration(&s, "sync-tls");
    // The test CA is in no system store: the call fails, failing closed.
    let err = s.k_in_err(&configmap("t1", "default", "tls"), &["create", "-f", "-"]);
    assert!(
        err.contains("failed calling webhook \"system-roots.test.rk3s.io\"")
            && err.contains("x509: certificate signed by unknown authority"),
        "{err}"
    );
    assert!(wh.received("/allow").is_empty());
}

#[test]
fn mutating_webhooks_change_what_exec_connects_to() {
    let s = Server::start();
    let wh = WebhookServer::start();
    s.k_in(&pod("p"), &["create", "-f", "-"]);
    let mut hook = url_hook(
        &wh,
        "container.test.rk3s.io",
        "/container",
        rules(&["CONNECT"], &[""], &["pods/exec"]),
        "",
    );
    hook["objectSelector"] = json!({});
    s.k_in(&mutating("container", vec![hook]), &["create", "-f", "-"]);
    // The webhook's container replaces the request's: exec looks for it.
    let mut err = String::new();
    assert!(
        wait_until(WAIT, || {
            err = s.k_err(&["exec", "p", "-c", "c", "--", "true"]);
            err.contains("container nope is not valid for pod p")
        }),
        "{err}"
    );
    let req = reviews_of(&wh, "/container", "pods", "exec")
        .pop()
        .expect("an exec review");
    assert_eq!(req["object"]["container"], "c");
    assert_eq!(req["operation"], "CONNECT");
}

/// A plain HTTP server on 127.0.0.1 answering every request with its
/// request line (for the proxy subresources); it lives as long as the test
/// process.
fn echo_server() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(&conn);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let body = line.trim().to_string();
            let _ = write!(
                &conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn mutating_webhooks_change_where_proxy_goes() {
    let mut s = Server::start();
    let wh = WebhookServer::start();
    let port = echo_server();
    s.k_in(&pod("web"), &["create", "-f", "-"]);
    s.k(&[
        "patch",
        "pod",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}}"#,
    ]);
    let path = format!("/api/v1/namespaces/default/pods/web:{port}/proxy/asked");
    let r = s.request(common::Req::new("GET", &path));
    assert_eq!(r.text(), "GET /asked HTTP/1.1", "{}", r.snippet());
    let mut hook = url_hook(
        &wh,
        "path.test.rk3s.io",
        "/proxy-path",
        rules(&["CONNECT"], &[""], &["pods/proxy"]),
        "",
    );
    hook["objectSelector"] = json!({});
    s.k_in(&mutating("path", vec![hook]), &["create", "-f", "-"]);
    let mut last = String::new();
    assert!(
        wait_until(WAIT, || {
            last = s.request(common::Req::new("GET", &path)).text();
            last == "GET /changed HTTP/1.1"
        }),
        "{last}"
    );
    let req = reviews_of(&wh, "/proxy-path", "pods", "proxy")
        .pop()
        .expect("a proxy review");
    assert_eq!(req["operation"], "CONNECT");
    assert_eq!(req["object"]["path"], "/asked");
}
