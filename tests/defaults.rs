//! Server-side semantics kubectl output and controllers rely on: defaulting,
//! Service IP and NodePort allocation, generation, Secret stringData, and
//! immutable fields.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use common::Server;
use serde_json::json;

#[test]
fn pod_defaults() {
    let s = Server::start();
    let doc = r#"
apiVersion: v1
kind: Pod
metadata: {name: d}
spec:
  containers:
  - {name: latest, image: busybox, ports: [{containerPort: 80}]}
  - {name: tagged, image: "busybox:1.36"}
  - {name: digest, image: "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000"}
"#;
    s.k_in(doc, &["create", "-f", "-"]);
    let p = s.k_json(&["get", "pod", "d"]);
    let spec = &p["spec"];
    assert_eq!(spec["restartPolicy"], "Always", "{spec}");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    let c = &spec["containers"];
    assert_eq!(
        c[0]["imagePullPolicy"], "Always",
        "untagged image means :latest"
    );
    assert_eq!(c[1]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c[2]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c[0]["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c[0]["terminationMessagePolicy"], "File");
    assert_eq!(c[0]["ports"][0]["protocol"], "TCP");
    assert_eq!(c[0]["resources"], json!({}));
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["qosClass"], "BestEffort");
}

#[test]
fn deployment_job_cronjob_defaults() {
    let s = Server::start();
    s.k(&["create", "deployment", "web", "--image=nginx:1.27"]);
    let d = s.k_json(&["get", "deploy", "web"]);
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(d["metadata"]["generation"], 1);

    s.k(&[
        "create",
        "job",
        "once",
        "--image=busybox:1.36",
        "--",
        "true",
    ]);
    let j = s.k_json(&["get", "job", "once"]);
    let spec = &j["spec"];
    assert_eq!(spec["backoffLimit"], 6, "{spec}");
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    // The job controller's selector is generated from the job's uid.
    let uid = j["metadata"]["uid"].as_str().expect("uid");
    assert_eq!(
        spec["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid,
        "{spec}"
    );
    assert_eq!(spec["template"]["metadata"]["labels"]["job-name"], "once");

    s.k(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox:1.36",
        "--schedule=*/5 * * * *",
        "--",
        "true",
    ]);
    let c = s.k_json(&["get", "cronjob", "tick"]);
    let spec = &c["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow", "{spec}");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
}

fn in_service_cidr(ip: &str) -> bool {
    ip.parse::<Ipv4Addr>()
        .map(|a| a.octets()[0] == 10 && a.octets()[1] == 43)
        .unwrap_or(false)
}

#[test]
fn service_ip_and_node_port_allocation() {
    let s = Server::start();
    let mut ips = HashSet::new();
    ips.insert("10.43.0.1".to_string());
    for i in 0..5 {
        s.k(&[
            "create",
            "service",
            "clusterip",
            &format!("svc-{i}"),
            "--tcp=80:8080",
        ]);
        let svc = s.k_json(&["get", "svc", &format!("svc-{i}")]);
        let spec = &svc["spec"];
        let ip = spec["clusterIP"]
            .as_str()
            .unwrap_or_else(|| panic!("no clusterIP: {svc}"))
            .to_string();
        assert!(in_service_cidr(&ip), "clusterIP {ip} not in 10.43.0.0/16");
        assert!(ips.insert(ip.clone()), "clusterIP {ip} allocated twice");
        assert_eq!(spec["clusterIPs"], json!([ip]));
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["ports"][0]["targetPort"], 8080);
        assert!(
            spec["ports"][0].get("nodePort").is_none(),
            "ClusterIP services get no nodePort"
        );
    }

    let mut ports = HashSet::new();
    for i in 0..3 {
        s.k(&[
            "create",
            "service",
            "nodeport",
            &format!("np-{i}"),
            "--tcp=80:8080",
        ]);
        let spec = s.k_json(&["get", "svc", &format!("np-{i}")])["spec"].clone();
        assert_eq!(spec["type"], "NodePort");
        let np = spec["ports"][0]["nodePort"]
            .as_u64()
            .unwrap_or_else(|| panic!("no nodePort: {spec}"));
        assert!(
            (30000..=32767).contains(&np),
            "nodePort {np} outside 30000-32767"
        );
        assert!(ports.insert(np), "nodePort {np} allocated twice");
        assert_eq!(spec["externalTrafficPolicy"], "Cluster");
        assert!(
            in_service_cidr(spec["clusterIP"].as_str().unwrap_or("")),
            "{spec}"
        );
    }
    // LoadBalancer services get node ports too.
    s.k(&["create", "service", "loadbalancer", "lb", "--tcp=443:8443"]);
    let spec = s.k_json(&["get", "svc", "lb"])["spec"].clone();
    let np = spec["ports"][0]["nodePort"].as_u64().unwrap_or(0);
    assert!(
        (30000..=32767).contains(&np) && !ports.contains(&np),
        "LoadBalancer nodePort {np}"
    );
    assert_eq!(spec["allocateLoadBalancerNodePorts"], true);

    // A requested IP and port are honoured; taking them twice is 422.
    let fixed = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"fixed"},
      "spec":{"type":"NodePort","clusterIP":"10.43.200.200","ports":[{"port":80,"nodePort":31234}]}}"#;
    s.k_in(fixed, &["create", "-f", "-"]);
    let spec = s.k_json(&["get", "svc", "fixed"])["spec"].clone();
    assert_eq!(spec["clusterIP"], "10.43.200.200");
    assert_eq!(spec["ports"][0]["nodePort"], 31234);
    let dup = fixed.replace(r#""name":"fixed""#, r#""name":"fixed2""#);
    let err = s.k_in_err(&dup, &["create", "-f", "-"]);
    assert!(
        err.contains("Invalid")
            && err.contains("10.43.200.200")
            && err.contains("already allocated"),
        "{err}"
    );
    let err = s.k_in_err(
        &dup.replace("10.43.200.200", "10.43.200.201"),
        &["create", "-f", "-"],
    );
    assert!(
        err.contains("31234") && err.contains("already allocated"),
        "{err}"
    );
    // Outside the service CIDR is 422 too.
    let err = s.k_in_err(
        &dup.replace("10.43.200.200", "192.168.1.1")
            .replace("31234", "31235"),
        &["create", "-f", "-"],
    );
    assert!(
        err.contains("Invalid") && err.contains("192.168.1.1"),
        "{err}"
    );
    // Headless services keep None.
    s.k_in(r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"headless"},"spec":{"clusterIP":"None","ports":[{"port":80}]}}"#, &["create", "-f", "-"]);
    assert_eq!(
        s.k(&["get", "svc", "headless", "-o", "jsonpath={.spec.clusterIP}"]),
        "None"
    );

    // A deleted service's IP can be reused eventually; at least deletion succeeds and frees the name.
    s.k(&["delete", "svc", "svc-0"]);
    s.k(&["create", "service", "clusterip", "svc-0", "--tcp=80:8080"]);
}

#[test]
fn generation_tracks_spec_changes_only() {
    let s = Server::start();
    s.k(&["create", "deployment", "gen", "--image=nginx:1.27"]);
    let d = s.k_json(&["get", "deploy", "gen"]);
    assert_eq!(d["metadata"]["generation"], 1);
    // Metadata-only change through PUT (retried if the deployment controller
    // writes the status in between).
    let get = ["get", "deploy", "gen"];
    let o = s.replace_retrying(&get, |d| d["metadata"]["labels"]["extra"] = "yes".into());
    assert!(o.status.success(), "{}", common::stderr(&o));
    let d = s.k_json(&get);
    assert_eq!(
        d["metadata"]["generation"], 1,
        "labels do not bump generation"
    );
    // Status is ignored on the main resource (status subresource exists).
    let o = s.replace_retrying(&get, |d| {
        d["status"] = json!({"replicas": 7, "observedGeneration": 99})
    });
    assert!(o.status.success(), "{}", common::stderr(&o));
    let d = s.k_json(&get);
    assert_eq!(d["metadata"]["generation"], 1);
    assert_ne!(
        d["status"]["replicas"], 7,
        "status written through the main resource: {}",
        d["status"]
    );
    assert_ne!(d["status"]["observedGeneration"], 99);
    // A spec change bumps it.
    let o = s.replace_retrying(&get, |d| d["spec"]["replicas"] = 3.into());
    assert!(o.status.success(), "{}", common::stderr(&o));
    let d = s.k_json(&get);
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["spec"]["replicas"], 3);
}

#[test]
fn secret_string_data_is_merged_into_data() {
    let s = Server::start();
    s.k_in(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {keep: a2VlcA==, over: b2xk}\nstringData: {password: s3cr3t, over: new}\n",
        &["create", "-f", "-"],
    );
    let sec = s.k_json(&["get", "secret", "s"]);
    assert_eq!(sec["type"], "Opaque");
    assert_eq!(
        sec["data"],
        json!({"keep": "a2VlcA==", "over": "bmV3", "password": "czNjcjN0"})
    );
    assert!(
        sec.get("stringData").is_none(),
        "stringData must not be stored: {sec}"
    );
}

#[test]
fn immutable_fields_are_422() {
    let s = Server::start();
    // Immutable ConfigMap.
    s.k_in("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: b}\n", &["create", "-f", "-"]);
    let mut cm = s.k_json(&["get", "cm", "frozen"]);
    cm["data"]["a"] = "changed".into();
    let err = s.k_in_err(&cm.to_string(), &["replace", "-f", "-"]);
    assert!(
        err.contains(r#"The ConfigMap "frozen" is invalid"#),
        "{err}"
    );
    assert!(
        err.contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{err}"
    );

    // Immutable Secret.
    s.k_in("apiVersion: v1\nkind: Secret\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: Yg==}\n", &["create", "-f", "-"]);
    let mut sec = s.k_json(&["get", "secret", "frozen"]);
    sec["data"]["a"] = "Yw==".into();
    let err = s.k_in_err(&sec.to_string(), &["replace", "-f", "-"]);
    assert!(
        err.contains(r#"The Secret "frozen" is invalid"#)
            && err.contains("field is immutable when `immutable` is set"),
        "{err}"
    );

    // A Service's clusterIP.
    s.k(&["create", "service", "clusterip", "svc", "--tcp=80:80"]);
    let o = s.replace_retrying(&["get", "svc", "svc"], |svc| {
        svc["spec"]["clusterIP"] = "10.43.123.123".into();
        svc["spec"]["clusterIPs"] = json!(["10.43.123.123"]);
    });
    assert!(!o.status.success(), "clusterIP change accepted");
    let err = common::stderr(&o);
    assert!(
        err.contains(r#"The Service "svc" is invalid"#)
            && err.contains("spec.clusterIPs[0]")
            && err.contains("may not change once set"),
        "{err}"
    );

    // A Deployment's selector.
    s.k(&["create", "deployment", "dep", "--image=nginx:1.27"]);
    let o = s.replace_retrying(&["get", "deploy", "dep"], |d| {
        d["spec"]["selector"] = json!({"matchLabels": {"app": "dep", "x": "y"}});
        d["spec"]["template"]["metadata"]["labels"]["x"] = "y".into();
    });
    assert!(!o.status.success(), "selector change accepted");
    let err = common::stderr(&o);
    assert!(
        err.contains(r#"The Deployment "dep" is invalid"#)
            && err.contains("spec.selector")
            && err.contains("field is immutable"),
        "{err}"
    );

    // A Job's template.
    s.k(&["create", "job", "job", "--image=busybox:1.36", "--", "true"]);
    let o = s.replace_retrying(&["get", "job", "job"], |j| {
        j["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.37".into()
    });
    assert!(!o.status.success(), "job template change accepted");
    let err = common::stderr(&o);
    assert!(
        err.contains(r#"The Job "job" is invalid"#)
            && err.contains("spec.template")
            && err.contains("field is immutable"),
        "{err}"
    );

    // Nothing changed in the store.
    assert_eq!(
        s.k(&["get", "cm", "frozen", "-o", "jsonpath={.data.a}"]),
        "b"
    );
    assert_eq!(
        s.k(&[
            "get",
            "job",
            "job",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "busybox:1.36"
    );
}

#[test]
fn validation_errors_name_the_field() {
    let s = Server::start();
    let err = s.k_err(&["create", "configmap", "Bad_Name"]);
    assert!(
        err.contains(r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"#),
        "{err}"
    );
    // Namespaces use the stricter label rule.
    let err = s.k_err(&["create", "namespace", "bad_ns"]);
    assert!(
        err.contains(
            r#"metadata.name: Invalid value: "bad_ns": a lowercase RFC 1123 label must consist of"#
        ),
        "{err}"
    );
    // A valid subdomain that is not a label: apimachinery says why.
    let err = s.k_err(&["create", "namespace", "has.dot"]);
    assert!(
        err.contains(r#"metadata.name: Invalid value: "has.dot": must not contain dots"#),
        "{err}"
    );
    // Services too (DNS-1035 label).
    let err = s.k_err(&["create", "service", "clusterip", "1svc", "--tcp=80:80"]);
    assert!(
        err.contains(r#"metadata.name: Invalid value: "1svc": a DNS-1035 label must consist of"#),
        "{err}"
    );
    // Missing required fields and wrong types.
    let err = s.k_in_err(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: nocontainers}\nspec: {containers: []}\n",
        &["create", "-f", "-"],
    );
    assert!(
        err.contains(r#"The Pod "nocontainers" is invalid: spec.containers: Required value"#),
        "{err}"
    );
    let err = s.k_in_err(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: wrongtype}\nspec: {replicas: \"three\"}\n",
        &["create", "-f", "-", "--validate=false"],
    );
    assert!(
        err.contains("BadRequest") || err.contains("Invalid"),
        "{err}"
    );
    assert!(err.contains("replicas"), "the error names the field: {err}");
}
