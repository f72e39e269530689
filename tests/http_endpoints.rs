//! The HTTP surface besides the REST verbs: OpenAPI v2/v3, server-side
//! Tables and PartialObjectMetadata, health checks and Prometheus metrics.

mod common;

use common::{Req, Server};
use serde_json::Value;

#[test]
fn openapi_v2_and_v3() {
    let mut s = Server::start();
    let v2 = s.request(Req::new("GET", "/openapi/v2").header("Accept", "application/json"));
    assert_eq!(v2.status, 200, "{}", v2.snippet());
    let v2 = v2.json();
    assert_eq!(v2["swagger"], "2.0");
    assert!(
        v2["info"]["version"]
            .as_str()
            .unwrap_or("")
            .starts_with("v1.33."),
        "{}",
        v2["info"]
    );
    for def in [
        "io.k8s.api.core.v1.Pod",
        "io.k8s.api.apps.v1.Deployment",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    ] {
        assert!(
            v2["definitions"].get(def).is_some(),
            "openapi/v2 lacks {def}"
        );
    }
    // x-kubernetes-group-version-kind ties definitions to kinds (kubectl explain uses it).
    let gvk =
        &v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"][0];
    assert_eq!(
        (
            gvk["group"].as_str(),
            gvk["version"].as_str(),
            gvk["kind"].as_str()
        ),
        (Some("apps"), Some("v1"), Some("Deployment"))
    );

    let index = s.get_json("/openapi/v3");
    let paths = index["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("no paths in the v3 index: {index}"));
    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/networking.k8s.io/v1",
    ] {
        assert!(
            paths.contains_key(gv),
            "openapi/v3 index lacks {gv}: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    let url = paths["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .expect("serverRelativeURL")
        .to_string();
    assert!(url.starts_with("/openapi/v3/apis/apps/v1"), "{url}");
    let doc = s.get_json(&url);
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    for verb in ["get", "put", "delete", "patch"] {
        assert!(
            item.get(verb).is_some(),
            "no {verb} operation on a deployment: {item}"
        );
    }
    // PATCH declares fieldValidation, which kubectl checks before sending it.
    let params: Vec<&Value> = item["patch"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(item["parameters"].as_array().into_iter().flatten())
        .collect();
    let declares = params.iter().any(|p| {
        p["name"] == "fieldValidation"
            || p["$ref"]
                .as_str()
                .is_some_and(|r| r.contains("fieldValidation"))
    });
    assert!(
        declares,
        "PATCH lacks the fieldValidation parameter: {params:?}"
    );
    assert!(
        doc["components"]["schemas"]
            .get("io.k8s.api.apps.v1.Deployment")
            .is_some()
    );
}

#[test]
fn tables_and_partial_object_metadata() {
    let mut s = Server::start();
    s.k_in(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: tp, labels: {a: b}}\nspec:\n  schedulerName: nobody\n  containers: [{name: c, image: busybox}]\n",
        &["create", "-f", "-"],
    );
    let table = s
        .request(Req::new("GET", "/api/v1/namespaces/default/pods").header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        ))
        .json();
    assert_eq!(table["kind"], "Table", "{table}");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    let cols: Vec<(String, u64)> = table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["priority"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ]
    .iter()
    .map(|(n, p)| (n.to_string(), *p))
    .collect();
    assert_eq!(cols, want, "pod table columns as upstream");
    let row = &table["rows"][0];
    assert_eq!(row["cells"][0], "tp");
    assert_eq!(row["cells"][1], "0/1");
    assert_eq!(row["cells"][2], "Pending");
    // includeObject defaults to Metadata.
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata", "{row}");
    assert_eq!(row["object"]["metadata"]["name"], "tp");
    assert!(table["metadata"]["resourceVersion"].is_string());

    let pom = s
        .request(Req::new("GET", "/api/v1/namespaces/default/pods").header(
            "Accept",
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
        ))
        .json();
    assert_eq!(pom["kind"], "PartialObjectMetadataList", "{pom}");
    assert_eq!(pom["apiVersion"], "meta.k8s.io/v1");
    let item = &pom["items"][0];
    assert_eq!(item["metadata"]["labels"]["a"], "b");
    assert!(item.get("spec").is_none(), "metadata only: {item}");
    let one = s
        .request(
            Req::new("GET", "/api/v1/namespaces/default/pods/tp").header(
                "Accept",
                "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
            ),
        )
        .json();
    assert_eq!(one["kind"], "PartialObjectMetadata", "{one}");
    assert!(one.get("spec").is_none());
    // Kinds without their own printer still get a Table, Name first.
    let t = s
        .request(
            Req::new("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles")
                .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io"),
        )
        .json();
    assert_eq!(t["kind"], "Table", "{t}");
    assert_eq!(t["columnDefinitions"][0]["name"], "Name");
}

#[test]
fn health_checks() {
    let mut s = Server::start();
    for path in ["/healthz", "/livez", "/readyz"] {
        let r = s.request(Req::new("GET", &format!("{path}?verbose")).anonymous());
        assert_eq!(r.status, 200);
        let text = r.text();
        let checks: Vec<&str> = text.lines().filter(|l| l.starts_with("[+]")).collect();
        assert!(
            !checks.is_empty(),
            "{path}?verbose lists no checks:\n{text}"
        );
        assert!(checks.iter().any(|l| l.starts_with("[+]ping ok")), "{text}");
        // Each check has its own path.
        let r = s.request(Req::new("GET", &format!("{path}/ping")).anonymous());
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{path}/ping");
        let r = s.request(Req::new("GET", &format!("{path}/no-such-check")).anonymous());
        assert_eq!(r.status, 404, "{path}/no-such-check");
    }
}

#[test]
fn prometheus_metrics() {
    let mut s = Server::start();
    for i in 0..3 {
        s.k(&["create", "configmap", &format!("m{i}")]);
    }
    s.k_err(&["get", "configmap", "missing"]);
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain") || ct.starts_with("application/openmetrics-text"),
        "{ct}"
    );
    let text = r.text();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let value = |l: &str| {
        l.rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let created: f64 = lines
        .iter()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains(r#"resource="configmaps""#)
                && l.contains(r#"code="201""#)
        })
        .map(|l| value(l))
        .sum();
    assert!(
        created >= 3.0,
        "apiserver_request_total for configmap creates: {created}\n{}",
        common::clip(&text)
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("apiserver_request_total{") && l.contains(r#"code="404""#)),
        "no 404 counted:\n{}",
        common::clip(&text)
    );
    for name in [
        "apiserver_request_duration_seconds_bucket{",
        "rk3s_store_operation_duration_seconds_bucket{",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(name)),
            "no {name} series:\n{}",
            common::clip(&text)
        );
    }
    assert!(
        text.contains("apiserver_registered_watchers"),
        "no watch gauge"
    );
}
