//! Unit tests of matching, of the AdmissionReview checks and of the
//! configuration checks.

use serde_json::{Value, json};

use super::config::{parse_hook, validate_url};
use super::review::{denied, verify};
use super::*;
use crate::registry::catalogue;

fn def(group: &str, plural: &str) -> ResourceDef {
    catalogue::builtin()
        .into_iter()
        .find(|d| d.plural == plural && d.group == group)
        .expect("built-in kind")
}

fn hook(rules: Value) -> Hook {
    parse_hook(
        "cfg",
        &json!({"name": "h.test.rk3s.io", "clientConfig": {"url": "https://127.0.0.1/x"},
                "rules": rules, "sideEffects": "None", "admissionReviewVersions": ["v1"]}),
    )
    .expect("hook")
}

fn rule(ops: &[&str], groups: &[&str], resources: &[&str], scope: &str) -> Value {
    json!([{"operations": ops, "apiGroups": groups, "apiVersions": ["*"],
            "resources": resources, "scope": scope}])
}

#[test]
fn resources_match_with_their_subresources() {
    let pods = def("", "pods");
    let opts = WriteOptions::default();
    let old = json!({});
    let main = Attributes::update(&pods, Some("ns"), "p", None, &old, &opts);
    let status = Attributes::update(&pods, Some("ns"), "p", Some("status"), &old, &opts);
    let m = |r: &[&str], a: &Attributes<'_>| {
        matching::rules_match(&hook(rule(&["*"], &[""], r, "*")), a)
    };
    assert!(m(&["pods"], &main));
    assert!(!m(&["pods"], &status));
    assert!(m(&["pods/status"], &status));
    assert!(!m(&["pods/status"], &main));
    assert!(m(&["*"], &main) && !m(&["*"], &status));
    assert!(m(&["*/*"], &main) && m(&["*/*"], &status));
    assert!(m(&["pods/*"], &status) && m(&["*/status"], &status));
    assert!(!m(&["services"], &main));
    // Operations and groups.
    let h = hook(rule(&["CREATE"], &[""], &["pods"], "*"));
    assert!(!matching::rules_match(&h, &main));
    let h = hook(rule(&["UPDATE"], &["apps"], &["pods"], "*"));
    assert!(!matching::rules_match(&h, &main));
}

#[test]
fn scope_treats_namespaces_as_cluster_scoped() {
    let opts = WriteOptions::default();
    let nss = def("", "namespaces");
    let nodes = def("", "nodes");
    let cms = def("", "configmaps");
    let ns = Attributes::create(&nss, None, "team-a", &opts);
    let node = Attributes::create(&nodes, None, "n1", &opts);
    let cm = Attributes::create(&cms, Some("team-a"), "c", &opts);
    let m = |scope: &str, a: &Attributes<'_>| {
        matching::rules_match(&hook(rule(&["*"], &["*"], &["*"], scope)), a)
    };
    assert!(m("Cluster", &ns) && m("Cluster", &node) && !m("Cluster", &cm));
    assert!(!m("Namespaced", &ns) && !m("Namespaced", &node) && m("Namespaced", &cm));
    assert!(m("*", &ns) && m("*", &node) && m("*", &cm));
    // A Namespace's request names itself as the namespace, as upstream.
    assert_eq!(ns.request_namespace(), "team-a");
}

#[test]
fn object_selector_looks_at_old_and_new() {
    let mut h = hook(rule(&["*"], &["*"], &["*"], "*"));
    h.object_selector = crate::api::selectors::LabelSelector::parse("app=web").expect("selector");
    let web = json!({"metadata": {"labels": {"app": "web"}}});
    let db = json!({"metadata": {"labels": {"app": "db"}}});
    assert!(matching::object_selector_matches(&h, Some(&web), None));
    assert!(matching::object_selector_matches(&h, Some(&db), Some(&web)));
    assert!(matching::object_selector_matches(&h, None, Some(&web)));
    assert!(!matching::object_selector_matches(&h, Some(&db), None));
}

#[test]
fn dry_runs_refuse_webhooks_with_side_effects() {
    let cms = def("", "configmaps");
    let opts = WriteOptions {
        dry_run: true,
        ..Default::default()
    };
    let a = Attributes::create(&cms, Some("default"), "c", &opts);
    let mut h = hook(rule(&["*"], &["*"], &["*"], "*"));
    assert!(dry_run_refusal(&h, &a).is_none());
    h.side_effects = "NoneOnDryRun".into();
    assert!(dry_run_refusal(&h, &a).is_none());
    h.side_effects = "Unknown".into();
    let e = dry_run_refusal(&h, &a).expect("refused");
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "admission webhook \"h.test.rk3s.io\" does not support dry run"
    );
    let real = WriteOptions::default();
    assert!(dry_run_refusal(&h, &Attributes::create(&cms, Some("default"), "c", &real)).is_none());
}

fn answer(uid: &str, response: Value) -> Vec<u8> {
    let mut r = response;
    r["uid"] = json!(uid);
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
        .to_string()
        .into_bytes()
}

#[test]
fn answers_are_checked_as_upstream() {
    let ok = verify("u1", false, &answer("u1", json!({"allowed": true}))).expect("ok");
    assert!(ok.allowed && ok.patch.is_none());
    let e = verify("u1", false, &answer("u2", json!({"allowed": true}))).unwrap_err();
    assert_eq!(e, "expected response.uid=\"u1\", got \"u2\"");
    let e = verify(
        "u1",
        false,
        br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","response":{"uid":"u1","allowed":true}}"#,
    )
    .unwrap_err();
    assert!(
        e.starts_with("expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview"),
        "{e}"
    );
    let e = verify(
        "u1",
        false,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    )
    .unwrap_err();
    assert_eq!(e, "webhook response was absent");
    assert!(verify("u1", false, b"not json").is_err());
    // "[]" in base64.
    let patched = json!({"allowed": true, "patch": "W10=", "patchType": "JSONPatch"});
    let e = verify("u1", false, &answer("u1", patched.clone())).unwrap_err();
    assert_eq!(e, "validating webhook may not return response.patch");
    let m = verify("u1", true, &answer("u1", patched)).expect("mutating patch");
    assert_eq!(m.patch.as_deref(), Some(&b"[]"[..]));
    let e = verify(
        "u1",
        true,
        &answer("u1", json!({"allowed": true, "patch": "W10="})),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "webhook returned response.patch but not response.patchType"
    );
    let w = verify(
        "u1",
        false,
        &answer("u1", json!({"allowed": true, "warnings": ["a", "b"]})),
    )
    .expect("warnings");
    assert_eq!(w.warnings, ["a", "b"]);
}

#[test]
fn refusals_read_as_upstreams() {
    let e = denied(
        "h.test.rk3s.io",
        Some(&json!({"message": "no", "code": 200})),
    );
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "admission webhook \"h.test.rk3s.io\" denied the request: no"
    );
    assert_eq!(e.reason, "");
    let e = denied(
        "h.test.rk3s.io",
        Some(&json!({"reason": "Conflict", "code": 409})),
    );
    assert_eq!((e.code, e.reason), (409, "Conflict"));
    assert_eq!(
        e.message,
        "admission webhook \"h.test.rk3s.io\" denied the request: Conflict"
    );
    let e = denied("h.test.rk3s.io", None);
    assert_eq!(
        e.message,
        "admission webhook \"h.test.rk3s.io\" denied the request without explanation"
    );
}

#[test]
fn urls_must_be_plain_https() {
    let f = "webhooks[0].clientConfig.url";
    assert!(validate_url("https://example.com/path", f).is_empty());
    let msgs =
        |u: &str| -> Vec<String> { validate_url(u, f).into_iter().map(|e| e.message).collect() };
    assert_eq!(
        msgs("http://example.com"),
        [
            "Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]"
        ]
    );
    assert_eq!(
        msgs("https://u:p@example.com"),
        ["Invalid value: \"u:p\": user information is not permitted in the URL"]
    );
    assert_eq!(
        msgs("https://example.com/x?a=b"),
        ["Invalid value: \"a=b\": query parameters are not permitted in the URL"]
    );
    assert_eq!(
        msgs("https://example.com/x#frag"),
        ["Invalid value: \"frag\": fragments are not permitted in the URL"]
    );
    assert_eq!(msgs("wrong url pattern").len(), 2);
}

#[test]
fn match_conditions_follow_upstreams_rules() {
    let cms = def("", "configmaps");
    let opts = WriteOptions::default();
    let a = Attributes::create(&cms, Some("default"), "c", &opts);
    let obj = json!({"metadata": {"name": "c", "labels": {"team": "a"}}});
    let with = |conds: Value| {
        parse_hook(
            "cfg",
            &json!({"name": "h.test.rk3s.io", "clientConfig": {"url": "https://127.0.0.1/x"},
                    "rules": rule(&["*"], &["*"], &["*"], "*"), "sideEffects": "None",
                    "matchConditions": conds}),
        )
        .expect("hook")
    };
    let t = json!({"name": "t", "expression": "object.metadata.labels.team == 'a'"});
    let f = json!({"name": "f", "expression": "request.operation == 'DELETE'"});
    let e = json!({"name": "e", "expression": "object.spec.x == 1"});
    let holds = |c: Value| matching::conditions_hold(&with(c), &a, Some(&obj));
    assert_eq!(holds(json!([t])), Ok(true));
    assert_eq!(holds(json!([t, f])), Ok(false));
    // A false condition wins over an error.
    assert_eq!(holds(json!([e, f])), Ok(false));
    assert!(holds(json!([t, e])).is_err_and(|m| m.contains("expression 'e' resulted in error")));
    // `authorizer` is not offered: such a condition is an error, never a silent match.
    assert!(holds(json!([{"name": "z", "expression": "authorizer.group('').resource('pods').check('get').allowed()"}])).is_err());
}

/// Store operations so far (the sum of the store latency histograms' counts).
fn store_ops(metrics: &crate::api::metrics::Metrics) -> u64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.contains("store") && l.contains("_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// With no configuration a write's webhook checks touch no store and take
/// next to nothing; the cache follows configurations as they are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_answers_none_without_the_store_and_follows_writes() {
    use crate::registry::Catalogue;
    use crate::registry::generic::Settings;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};
    use std::sync::Arc;
    let sqlite = SqliteStore::open_temp(SqliteOptions::default()).expect("store");
    let metrics = Arc::new(crate::api::metrics::Metrics::default());
    let store = Arc::new(crate::store::metered::MeteredStore::new(
        sqlite,
        metrics.clone(),
    ));
    let reg = Registry::new(
        store,
        Arc::new(Catalogue::new(catalogue::builtin())),
        Settings::default(),
    );
    let cms = def("", "configmaps");
    let opts = WriteOptions::default();
    let dopts = DeleteOptions::default();
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "c", "namespace": "default"}});
    let old = obj.clone();
    // The first use lists the configurations.
    mutate(
        &reg,
        &Attributes::create(&cms, Some("default"), "c", &opts),
        &mut obj,
    )
    .await
    .expect("admitted");
    let before = store_ops(&metrics);
    assert!(before > 0, "the first use lists the configurations");
    let n = 10_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let a = Attributes::update(&cms, Some("default"), "c", None, &old, &opts);
        mutate(&reg, &a, &mut obj).await.expect("admitted");
        validate(&reg, &a, Some(&obj)).await.expect("admitted");
        let d = Attributes::delete(&cms, Some("default"), "c", &old, &dopts);
        admit_delete(&reg, &d).await.expect("admitted");
    }
    let per_write = t.elapsed() / n;
    eprintln!("webhook checks with none configured: {per_write:?} per write");
    assert_eq!(
        store_ops(&metrics),
        before,
        "a check with no webhooks read the store"
    );

    // A configuration written through the registry reaches the cache.
    let vdef = def(
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    );
    let cfg = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "v"},
        "webhooks": [{"name": "h.test.rk3s.io", "clientConfig": {"url": "https://127.0.0.1:1/x"},
                      "rules": rule(&["CREATE"], &[""], &["configmaps"], "*"),
                      "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
    reg.create(&vdef, None, cfg, &opts).await.expect("created");
    let mut seen = None;
    for _ in 0..200 {
        if let Some(h) = reg.webhooks.current(&reg).await {
            seen = Some(h);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let hooks = seen.expect("the cache saw the configuration");
    assert_eq!(hooks.validating.len(), 1);
    assert_eq!(hooks.validating[0].configuration, "v");
    assert!(hooks.mutating.is_empty());
    // Nothing listens on port 1: failurePolicy Fail refuses the create.
    let e = validate(
        &reg,
        &Attributes::create(&cms, Some("default"), "c", &opts),
        Some(&obj),
    )
    .await
    .expect_err("refused");
    assert_eq!(e.code, 500);
    assert!(
        e.message.starts_with(
            "Internal error occurred: failed calling webhook \"h.test.rk3s.io\": failed to call webhook: Post \"https://127.0.0.1:1/x?timeout=10s\": dial tcp 127.0.0.1:1: connect: connection refused"
        ),
        "{}",
        e.message
    );
    reg.delete(&vdef, None, "v", &dopts).await.expect("deleted");
    let mut gone = false;
    for _ in 0..200 {
        if reg.webhooks.current(&reg).await.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(gone, "the cache still holds a deleted configuration");
}

fn def_at(group: &str, version: &str, plural: &str) -> ResourceDef {
    catalogue::builtin()
        .into_iter()
        .find(|d| d.plural == plural && d.group == group && d.version == version)
        .expect("built-in kind")
}

fn versioned_hook(group: &str, version: &str, plural: &str, policy: &str) -> Hook {
    parse_hook(
        "cfg",
        &json!({"name": "h.test.rk3s.io", "clientConfig": {"url": "https://127.0.0.1/x"},
                "rules": [{"operations": ["*"], "apiGroups": [group], "apiVersions": [version],
                           "resources": [plural, format!("{plural}/status")]}],
                "matchPolicy": policy,
                "sideEffects": "None", "admissionReviewVersions": ["v1"]}),
    )
    .expect("hook")
}

#[test]
fn match_policy_equivalent_finds_other_versions_of_the_stored_resource() {
    let cat = crate::registry::Catalogue::new(catalogue::builtin());
    let v2 = def_at("autoscaling", "v2", "horizontalpodautoscalers");
    let opts = WriteOptions::default();
    let a = Attributes::create(&v2, Some("ns"), "h", &opts);
    let named = |m: Option<matching::Matched>| match m {
        Some(matching::Matched::Equivalent(d)) => format!("{}/{}", d.group, d.version),
        Some(matching::Matched::Exact) => "exact".into(),
        None => "none".into(),
    };
    let hpa = "horizontalpodautoscalers";
    let inv = |h: &Hook, a: &Attributes<'_>| named(matching::invocation(h, a, &cat));
    assert_eq!(
        inv(&versioned_hook("autoscaling", "v1", hpa, "Equivalent"), &a),
        "autoscaling/v1"
    );
    assert_eq!(
        inv(&versioned_hook("autoscaling", "v1", hpa, "Exact"), &a),
        "none"
    );
    assert_eq!(
        inv(&versioned_hook("autoscaling", "v2", hpa, "Exact"), &a),
        "exact"
    );
    // Subresources carry over; an equivalent must serve them.
    let old = json!({});
    let st = Attributes::update(&v2, Some("ns"), "h", Some("status"), &old, &opts);
    assert_eq!(
        inv(&versioned_hook("autoscaling", "v1", hpa, "Equivalent"), &st),
        "autoscaling/v1"
    );
    // Another group storing the same objects is equivalent too (events).
    let core_events = def_at("", "v1", "events");
    let ev = Attributes::create(&core_events, Some("ns"), "e", &opts);
    assert_eq!(
        inv(&versioned_hook("events.k8s.io", "v1", "events", ""), &ev),
        "events.k8s.io/v1"
    );
    // Unrelated resources are not.
    let cms = def("", "configmaps");
    let cm = Attributes::create(&cms, Some("ns"), "c", &opts);
    assert_eq!(
        inv(&versioned_hook("", "v2", "configmaps", "Equivalent"), &cm),
        "none"
    );
    // A Scale does not change with its parent's version.
    let deploy = def("apps", "deployments");
    let scale = Attributes::update(&deploy, Some("ns"), "d", None, &old, &opts).scale();
    assert_eq!(
        inv(
            &versioned_hook("apps", "v1beta2", "deployments/scale", ""),
            &scale
        ),
        "none"
    );
}

#[test]
fn equivalent_objects_are_converted_both_ways() {
    let v2 = def_at("autoscaling", "v2", "horizontalpodautoscalers");
    let v1 = def_at("autoscaling", "v1", "horizontalpodautoscalers");
    let obj = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "namespace": "ns"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 5,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                     "target": {"type": "Utilization", "averageUtilization": 60}}}]}});
    let old = matching::convert(&obj, &v2, &v1);
    assert_eq!(old["apiVersion"], "autoscaling/v1");
    assert_eq!(old["spec"]["targetCPUUtilizationPercentage"], 60);
    assert!(old["spec"].get("metrics").is_none(), "{old}");
    let back = matching::convert(&old, &v1, &v2);
    assert_eq!(back["apiVersion"], "autoscaling/v2");
    assert_eq!(back["spec"]["metrics"], obj["spec"]["metrics"]);
}

#[test]
fn connect_options_are_upstreams_v1_objects() {
    use super::connect::{Streams, exec_options, port_forward_options, proxy_options};
    let s = Streams {
        container: "c",
        stdin: false,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let cmd = vec!["ls".to_string(), "-l".to_string()];
    assert_eq!(
        exec_options(&s, Some(&cmd)),
        json!({"kind": "PodExecOptions", "apiVersion": "v1", "stdout": true, "stderr": true,
               "container": "c", "command": ["ls", "-l"]})
    );
    let s = Streams {
        container: "",
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    assert_eq!(
        exec_options(&s, None),
        json!({"kind": "PodAttachOptions", "apiVersion": "v1", "stdin": true, "stdout": true,
               "tty": true})
    );
    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        port_forward_options(&q(&[("ports", "80"), ("ports", "443,8080")])),
        json!({"kind": "PodPortForwardOptions", "apiVersion": "v1", "ports": [80, 443, 8080]})
    );
    assert_eq!(
        port_forward_options(&q(&[])),
        json!({"kind": "PodPortForwardOptions", "apiVersion": "v1"})
    );
    assert_eq!(
        proxy_options("Service", "/metrics"),
        json!({"kind": "ServiceProxyOptions", "apiVersion": "v1", "path": "/metrics"})
    );
    // Options carry no labels: an object selector never selects them.
    let mut h = hook(rule(&["*"], &["*"], &["*"], "*"));
    h.object_selector = crate::api::selectors::LabelSelector::parse("!app").expect("selector");
    assert!(!matching::object_selector_matches(
        &h,
        Some(&proxy_options("Pod", "/")),
        None
    ));
    assert!(matching::object_selector_matches(
        &h,
        Some(&json!({"metadata": {}})),
        None
    ));
}
