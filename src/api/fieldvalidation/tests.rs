use serde_json::json;

use super::*;

fn def(group: &str, version: &str, kind: &str) -> ResourceDef {
    crate::registry::catalogue::builtin()
        .into_iter()
        .find(|d| (d.group.as_str(), d.version.as_str(), d.kind.as_str()) == (group, version, kind))
        .expect("catalogue kind")
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}, "annotations": {"a.b/c": "d"}},
        "spec": {
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": 0.25, "memory": 64000000}},
                "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
                "readinessProbe": {"tcpSocket": {"port": 80}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"kubernetes.io/os": "linux"}
        },
        "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
    })
}

#[test]
fn valid_pod_has_no_unknown_fields() {
    assert_eq!(
        unknown_fields(&def("", "v1", "Pod"), &pod()),
        Vec::<String>::new()
    );
}

#[test]
fn nested_unknown_fields_are_reported_with_upstream_paths() {
    let mut p = pod();
    p["spec"]["containers"][0]["foo"] = json!(1);
    p["spec"]["bar"] = json!({"x": 1});
    p["metadata"]["labelz"] = json!({});
    p["spec"]["volumes"][0]["emptyDir"]["medium2"] = json!("x");
    p["extra"] = json!(true);
    let got = unknown_fields(&def("", "v1", "Pod"), &p);
    assert_eq!(
        got,
        vec![
            "extra",
            "metadata.labelz",
            "spec.bar",
            "spec.containers[0].foo",
            "spec.volumes[0].emptyDir.medium2"
        ]
    );
}

#[test]
fn valid_deployment_and_service_pass() {
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"limits": {"cpu": 1}}}]}
            }
        }
    });
    assert_eq!(
        unknown_fields(&def("apps", "v1", "Deployment"), &deployment),
        Vec::<String>::new()
    );
    let mut bad = deployment.clone();
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    bad["spec"]["strategy"]["rollingUpdate"]["maxSurgee"] = json!(1);
    assert_eq!(
        unknown_fields(&def("apps", "v1", "Deployment"), &bad),
        vec![
            "spec.strategy.rollingUpdate.maxSurgee",
            "spec.template.spec.containers[0].imagePullPolicyy"
        ]
    );

    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}, {"port": 443, "targetPort": 8443, "nodePort": 30443}], "type": "NodePort"}
    });
    assert_eq!(
        unknown_fields(&def("", "v1", "Service"), &service),
        Vec::<String>::new()
    );
}

#[test]
fn free_form_fields_accept_anything() {
    // ControllerRevision.data is a RawExtension; managedFields' fieldsV1 is free-form.
    let cr = json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "r", "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {"f:x": {}}}}]},
        "data": {"spec": {"anything": [1, {"goes": true}]}},
        "revision": 1
    });
    assert_eq!(
        unknown_fields(&def("apps", "v1", "ControllerRevision"), &cr),
        Vec::<String>::new()
    );
    // CRD schemas are recursive JSONSchemaProps with `default` free-form and
    // `items` one-of schema or list.
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "names": {"plural": "crontabs", "kind": "CronTab"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "cron": {"type": "string", "default": {"weird": [1]}},
                    "list": {"type": "array", "items": {"type": "string", "bogus": 1}}
                }}},
                "x-kubernetes-preserve-unknown-fields": true
            }}}]
        }
    });
    assert_eq!(
        unknown_fields(
            &def("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            &crd
        ),
        vec!["spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.list.items.bogus"]
    );
}

#[test]
fn subresource_bodies_use_their_own_kind() {
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 3, "replicaz": 1}});
    assert_eq!(
        unknown_fields_of_kind("autoscaling", "v1", "Scale", &scale),
        vec!["spec.replicaz"]
    );
    let raw = serde_json::to_vec(&scale).unwrap();
    assert_eq!(
        strict_errors_of_kind("autoscaling", "v1", "Scale", &raw),
        vec![StrictError::Unknown("spec.replicaz".into())]
    );
    assert!(has_schema("policy", "v1", "Eviction"));
    assert!(!has_schema("stable.example.com", "v1", "CronTab"));
}

#[test]
fn kinds_without_schema_report_nothing() {
    let mut d = def("", "v1", "Pod");
    d.group = "stable.example.com".into();
    d.kind = "CronTab".into();
    assert!(unknown_fields(&d, &json!({"spec": {"anything": 1}})).is_empty());
    assert!(strict_errors(&d, br#"{"spec": {"anything": 1}}"#).is_empty());
}

#[test]
fn duplicates_are_found_at_every_depth() {
    let raw = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","name":"b","labels":{"x":"1","x":"2"}},
        "spec":{"containers":[{"name":"c","image":"i"},{"name":"d","image":"i","image":"j"}]},"kind":"Pod"}"#;
    assert_eq!(
        duplicate_fields(raw),
        vec![
            "metadata.name",
            "metadata.labels.x",
            "spec.containers[1].image",
            "kind"
        ]
    );
    assert!(duplicate_fields(br#"{"a":{"b":1},"c":[{"b":2}]}"#).is_empty());
    // Keys with escapes compare by their decoded text.
    assert_eq!(duplicate_fields(br#"{"a":1,"\u0061":2}"#), vec!["a"]);
    // Many keys switch the seen-set representation.
    let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":1")).collect();
    let body = format!("{{{},\"k7\":2}}", many.join(","));
    assert_eq!(duplicate_fields(body.as_bytes()), vec!["k7"]);
}

#[test]
fn strict_errors_follow_document_order_like_upstream() {
    let raw = br#"{"apiVersion":"v1","kind":"Pod","spec":{"zeta":1,"containers":[{"name":"c","image":"i","foo":2}],"alpha":3},
        "metadata":{"name":"a","name":"a"}}"#;
    let errs = strict_errors(&def("", "v1", "Pod"), raw);
    assert_eq!(
        errs,
        vec![
            StrictError::Unknown("spec.zeta".into()),
            StrictError::Unknown("spec.containers[0].foo".into()),
            StrictError::Unknown("spec.alpha".into()),
            StrictError::Duplicate("metadata.name".into()),
        ]
    );
    assert_eq!(
        strict_decoding_message(&errs[2..]),
        r#"strict decoding error: unknown field "spec.alpha", duplicate field "metadata.name""#
    );
    // Unknown fields are not descended into; free-form values are not checked.
    let raw = br#"{"spec":{"bogus":{"a":1,"a":2}},"metadata":{"managedFields":[{"fieldsV1":{"f:a":{},"f:a":{}}}]}}"#;
    assert_eq!(
        strict_errors(&def("", "v1", "Pod"), raw),
        vec![StrictError::Unknown("spec.bogus".into())]
    );
    // Broken JSON yields what was found before the break.
    assert_eq!(
        strict_errors(
            &def("", "v1", "Pod"),
            br#"{"spec":{"bogus":1,"containers":[{"#
        ),
        vec![StrictError::Unknown("spec.bogus".into())]
    );
}

#[test]
fn raw_and_value_walks_agree_on_a_valid_pod() {
    let raw = serde_json::to_vec(&pod()).unwrap();
    assert!(strict_errors(&def("", "v1", "Pod"), &raw).is_empty());
}

#[test]
fn checks_are_fast() {
    warm();
    let d = def("", "v1", "Pod");
    let p = pod();
    let raw = serde_json::to_vec(&p).unwrap();
    let n = 200;
    let t = std::time::Instant::now();
    for _ in 0..n {
        assert!(unknown_fields(&d, &p).is_empty());
        assert!(strict_errors(&d, &raw).is_empty());
    }
    let per = t.elapsed() / n;
    eprintln!("field validation: {per:?} per pod (value walk + raw walk)");
    // Generous bound for unoptimised builds on a busy machine; release runs
    // take a few microseconds.
    assert!(per < std::time::Duration::from_millis(2), "{per:?} per pod");
}

#[test]
fn one_parse_notes_duplicates_and_builds_the_same_value() {
    let body =
        br#"{"a":1,"b":{"c":[1,2.5,{"d":null,"e":"x"}],"f":true},"g":-3,"h":18446744073709551615}"#;
    let (v, dup) = parse_noting_duplicates(body).expect("parses");
    assert!(!dup);
    assert_eq!(v, serde_json::from_slice::<Value>(body).expect("parses"));
    let (v, dup) = parse_noting_duplicates(br#"{"a":{"x":1,"x":2},"b":1}"#).expect("parses");
    assert!(dup);
    assert_eq!(
        v["a"]["x"], 2,
        "the last duplicate wins, as serde_json's own parse"
    );
    assert!(parse_noting_duplicates(br#"{"a":1} trailing"#).is_err());
    assert!(parse_noting_duplicates(br#"{"a":"#).is_err());
}
