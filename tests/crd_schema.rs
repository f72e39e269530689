//! Structural-schema checks a CRD's objects get beyond those in crd.rs:
//! formats, item and property counts, and set/map list uniqueness.

mod common;

use common::{Req, Server, wait_until};
use std::time::{Duration, Instant};

const GIZMO_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gizmos.toys.example.com}
spec:
  group: toys.example.com
  scope: Namespaced
  names: {plural: gizmos, singular: gizmo, kind: Gizmo}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              d: {type: string, format: duration}
              at: {type: string, format: date-time}
              ip: {type: string, format: ipv4}
              tags: {type: array, items: {type: string}, x-kubernetes-list-type: set, maxItems: 3, minItems: 1}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [port]
                items: {type: object, required: [port], properties: {port: {type: integer}, name: {type: string}}}
              m: {type: object, maxProperties: 1, additionalProperties: {type: string}}
"#;

#[test]
fn formats_counts_and_list_uniqueness_are_validated() {
    let mut s = Server::start();
    s.k_in(GIZMO_CRD, &["apply", "-f", "-"]);
    // The resource is served within a second of the CRD's creation.
    let created = Instant::now();
    let served = wait_until(Duration::from_secs(1), || {
        s.request(Req::new(
            "GET",
            "/apis/toys.example.com/v1/namespaces/default/gizmos",
        ))
        .status
            == 200
    });
    assert!(served, "not served after {:?}", created.elapsed());
    s.k(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        "crd/gizmos.toys.example.com",
    ]);
    let bad = r#"
apiVersion: toys.example.com/v1
kind: Gizmo
metadata: {name: g}
spec:
  d: "5 minutes"
  at: "yesterday"
  ip: "300.1.1.1"
  tags: [a, a, b, c]
  ports: [{port: 1}, {port: 1, name: x}]
  m: {a: "x", b: "y"}
"#;
    let err = s.k_in_err(bad, &["create", "-f", "-"]);
    for want in [
        r#"The Gizmo "g" is invalid"#,
        r#"spec.at: Invalid value: "yesterday": spec.at in body must be of type date-time: "yesterday""#,
        r#"spec.d: Invalid value: "5 minutes": spec.d in body must be of type duration: "5 minutes""#,
        r#"spec.ip: Invalid value: "300.1.1.1": spec.ip in body must be of type ipv4: "300.1.1.1""#,
        "spec.m in body should have at most 1 properties",
        "spec.ports[1]: Duplicate value",
        "spec.tags: Too many: 4: must have at most 3 items",
        r#"spec.tags[1]: Duplicate value: "a""#,
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    let err = s.k_in_err(
        "apiVersion: toys.example.com/v1\nkind: Gizmo\nmetadata: {name: e}\nspec: {tags: []}\n",
        &["create", "-f", "-"],
    );
    assert!(
        err.contains("spec.tags in body should have at least 1 items"),
        "{err}"
    );
    let good = r#"
apiVersion: toys.example.com/v1
kind: Gizmo
metadata: {name: ok}
spec:
  d: "1h30m"
  at: "2024-05-01T10:00:00Z"
  ip: "192.168.1.9"
  tags: [a, b]
  ports: [{port: 1}, {port: 2, name: x}]
  m: {a: "x"}
"#;
    s.k_in(good, &["create", "-f", "-"]);
    assert_eq!(
        s.k(&["get", "gizmo", "ok", "-o", "jsonpath={.spec.d}"]),
        "1h30m"
    );
}
