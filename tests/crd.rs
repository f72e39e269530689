//! CustomResourceDefinitions through stock kubectl: a cert-manager-style
//! Certificate (status, printer columns, short names, categories), schema
//! pruning, defaulting and validation, status and scale subresources,
//! several versions, watch, deletion of a CRD with its objects, restart.

mod common;

use std::time::Duration;

use common::{Server, json, lines, squeeze, wait_until};
use serde_json::Value;

/// Shaped like cert-manager's Certificate CRD (trimmed).
const CERTIFICATE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.certs.example.com
spec:
  group: certs.example.com
  names:
    kind: Certificate
    listKind: CertificateList
    plural: certificates
    singular: certificate
    shortNames: [cert, certs]
    categories: [cert-manager]
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - jsonPath: .status.conditions[?(@.type=="Ready")].status
      name: Ready
      type: string
    - jsonPath: .spec.secretName
      name: Secret
      type: string
    - jsonPath: .spec.issuerRef.name
      name: Issuer
      priority: 1
      type: string
    - jsonPath: .status.conditions[?(@.type=="Ready")].message
      name: Status
      priority: 1
      type: string
    - jsonPath: .metadata.creationTimestamp
      name: Age
      type: date
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        description: A Certificate resource should be created to ensure an up to date and signed X.509 certificate is stored in the Kubernetes Secret resource named in `spec.secretName`.
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            description: Specification of the desired state of the Certificate resource.
            type: object
            required: [issuerRef, secretName]
            properties:
              commonName: {type: string, maxLength: 64}
              dnsNames:
                type: array
                items: {type: string}
              duration: {type: string, format: duration}
              isCA: {type: boolean}
              issuerRef:
                type: object
                required: [name]
                properties:
                  group: {type: string}
                  kind: {type: string}
                  name: {type: string}
              privateKey:
                type: object
                properties:
                  algorithm: {type: string, enum: [RSA, ECDSA, Ed25519]}
                  size: {type: integer}
                  rotationPolicy: {type: string, default: Always}
              secretName:
                description: Name of the Secret resource that will be automatically created and managed by this Certificate resource.
                type: string
          status:
            type: object
            properties:
              conditions:
                type: array
                items:
                  type: object
                  required: [status, type]
                  properties:
                    lastTransitionTime: {type: string, format: date-time}
                    message: {type: string}
                    reason: {type: string}
                    status: {type: string, enum: ["True", "False", Unknown]}
                    type: {type: string}
                x-kubernetes-list-map-keys: [type]
                x-kubernetes-list-type: map
              notAfter: {type: string, format: date-time}
"#;

const CERTIFICATE: &str = r#"
apiVersion: certs.example.com/v1
kind: Certificate
metadata:
  name: web-tls
  namespace: default
spec:
  secretName: web-tls
  dnsNames: [web.example.com]
  duration: 2160h
  issuerRef: {name: letsencrypt, kind: ClusterIssuer}
  privateKey: {algorithm: ECDSA, size: 256}
"#;

/// A namespaced, scalable CRD in the `all` category with two versions.
const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.toys.example.com
spec:
  group: toys.example.com
  names: {kind: Widget, plural: widgets, shortNames: [wd], categories: [all]}
  scope: Namespaced
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [color]
            properties:
              replicas: {type: integer, minimum: 0, maximum: 50, default: 1}
              color: {type: string, enum: [red, green, blue]}
              size: {x-kubernetes-int-or-string: true}
              name: {type: string, pattern: '^[a-z]+$', maxLength: 8}
              note: {type: string, nullable: true}
              labels: {type: object, additionalProperties: {type: string}}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
              template:
                type: object
                x-kubernetes-embedded-resource: true
                x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
"#;

fn create_crd(s: &Server, yaml: &str, name: &str) {
    s.k_in(yaml, &["apply", "-f", "-"]);
    s.k(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        &format!("crd/{name}"),
    ]);
}

/// (type, object name) of each event a `?watch=true&timeoutSeconds=N` GET
/// returns.
fn watch_events(s: &Server, path: &str) -> Vec<(String, String)> {
    s.k(&["get", "--raw", path])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let e = json(l);
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

fn condition<'a>(obj: &'a Value, ty: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .unwrap_or(&Value::Null)
}

#[test]
fn certificate_crd_is_served_with_names_columns_and_status() {
    let s = Server::start();
    create_crd(&s, CERTIFICATE_CRD, "certificates.certs.example.com");
    let crd = s.k_json(&["get", "crd", "certificates.certs.example.com"]);
    assert_eq!(condition(&crd, "NamesAccepted")["status"], "True");
    assert_eq!(condition(&crd, "NamesAccepted")["reason"], "NoConflicts");
    assert_eq!(condition(&crd, "Established")["status"], "True");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Certificate");
    assert_eq!(
        crd["status"]["acceptedNames"]["shortNames"],
        serde_json::json!(["cert", "certs"])
    );
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));
    assert!(crd["metadata"].get("finalizers").is_none());

    // Discovery: api-resources lists it with its short names and category.
    let res = s.k(&[
        "api-resources",
        "--api-group=certs.example.com",
        "-o",
        "wide",
    ]);
    let row = lines(&res)
        .into_iter()
        .map(|l| squeeze(&l))
        .find(|l| l.starts_with("certificates "))
        .unwrap_or_default();
    assert!(
        row.starts_with("certificates cert,certs certs.example.com/v1 true Certificate"),
        "{res}"
    );
    assert!(row.contains("cert-manager"), "{row}");

    s.k_in(CERTIFICATE, &["apply", "-f", "-"]);
    // Printer columns; the condition-filtered ones are empty for now.
    let out = s.k(&["get", "cert"]);
    let rows = lines(&out);
    assert_eq!(squeeze(&rows[0]), "NAME READY SECRET AGE", "{out}");
    assert!(squeeze(&rows[1]).starts_with("web-tls web-tls "), "{out}");
    let wide = s.k(&["get", "certificates.certs.example.com", "-o", "wide"]);
    assert_eq!(
        squeeze(&lines(&wide)[0]),
        "NAME READY SECRET ISSUER STATUS AGE",
        "{wide}"
    );
    assert!(
        // Cells the paths find nothing for are null: kubectl leaves them blank.
        squeeze(&lines(&wide)[1]).starts_with("web-tls web-tls letsencrypt "),
        "{wide}"
    );

    // Defaulting from the schema; generation 1.
    let c = s.k_json(&["get", "certificate", "web-tls"]);
    assert_eq!(c["spec"]["privateKey"]["rotationPolicy"], "Always");
    assert_eq!(c["metadata"]["generation"], 1);

    // The status subresource: kubectl patch --subresource=status.
    s.k(&[
        "patch",
        "certificate",
        "web-tls",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True","message":"Certificate is up to date and has not expired"}]},"spec":{"secretName":"ignored"}}"#,
    ]);
    let out = s.k(&["get", "cert", "-o", "wide"]);
    assert!(
        squeeze(&lines(&out)[1]).starts_with(
            "web-tls True web-tls letsencrypt Certificate is up to date and has not expired"
        ),
        "{out}"
    );
    let c = s.k_json(&["get", "certificate", "web-tls"]);
    assert_eq!(
        c["spec"]["secretName"], "web-tls",
        "spec changed through /status"
    );
    assert_eq!(
        c["metadata"]["generation"], 1,
        "status writes keep the generation"
    );

    // Writes to the main resource keep status and bump generation on spec changes.
    s.k(&[
        "patch",
        "certificate",
        "web-tls",
        "--type=merge",
        "-p",
        r#"{"spec":{"commonName":"web.example.com"},"status":{"conditions":[]}}"#,
    ]);
    let c = s.k_json(&["get", "certificate", "web-tls"]);
    assert_eq!(c["spec"]["commonName"], "web.example.com");
    assert_eq!(c["status"]["conditions"][0]["status"], "True");
    assert_eq!(c["metadata"]["generation"], 2);
    s.k(&["label", "certificate", "web-tls", "team=web"]);
    let c = s.k_json(&["get", "certificate", "web-tls"]);
    assert_eq!(c["metadata"]["generation"], 2, "labels are not spec");

    // JSON patch works; strategic merge is 415 for custom resources.
    s.k(&[
        "patch",
        "cert",
        "web-tls",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/dnsNames/-","value":"www.example.com"}]"#,
    ]);
    let c = s.k_json(&["get", "cert", "web-tls"]);
    assert_eq!(
        c["spec"]["dnsNames"],
        serde_json::json!(["web.example.com", "www.example.com"])
    );
    let err = s.k_err(&[
        "patch",
        "cert",
        "web-tls",
        "--type=strategic",
        "-p",
        r#"{"spec":{"isCA":true}}"#,
    ]);
    assert!(
        err.contains("application/strategic-merge-patch+json is not supported by certs.example.com/v1, Kind=Certificate"),
        "{err}"
    );

    // Category and short-name lookups.
    assert!(s.k(&["get", "cert-manager"]).contains("web-tls"));
    assert!(s.k(&["get", "certs", "-A"]).contains("web-tls"));

    // kubectl explain reads the schema from OpenAPI v3.
    let explain = s.k(&["explain", "certificate.spec.secretName"]);
    assert!(
        explain.contains("Name of the Secret resource that will be automatically created"),
        "{explain}"
    );
    let explain = s.k(&["explain", "certificates.spec"]);
    assert!(
        explain.contains("issuerRef") && explain.contains("-required-"),
        "{explain}"
    );

    let describe = s.k(&["describe", "certificate", "web-tls"]);
    assert!(
        describe.contains("Kind:         Certificate") && describe.contains("Secret Name:"),
        "{describe}"
    );
    s.k(&["delete", "certificate", "web-tls"]);
    assert!(
        s.k(&["get", "certificates", "-o", "name"])
            .trim()
            .is_empty()
    );
}

#[test]
fn schema_prunes_defaults_and_validates() {
    let s = Server::start();
    create_crd(&s, WIDGET_CRD, "widgets.toys.example.com");
    // Strict field validation (kubectl's default) rejects unknown fields.
    let body = r#"
apiVersion: toys.example.com/v1
kind: Widget
metadata: {name: w1}
spec:
  color: red
  bogus: 1
  extra: {anything: [1, 2]}
  template: {apiVersion: v1, kind: ConfigMap, metadata: {name: x}, data: {a: b}}
unknownTop: true
"#;
    let err = s.k_in_err(body, &["create", "-f", "-"]);
    assert!(
        err.contains(r#"Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.bogus", unknown field "unknownTop""#),
        "{err}"
    );
    let err = s.k_in_err(
        &body.replace("metadata: {name: w1}", "metadata: {name: w1, colour: red}"),
        &["create", "-f", "-"],
    );
    assert!(err.contains(r#"unknown field "metadata.colour""#), "{err}");
    // Warn: created, pruned, with warnings.
    let o = s.kubectl_stdin(body, &["create", "--validate=warn", "-f", "-"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let warn = common::stderr(&o);
    assert!(warn.contains(r#"unknown field "spec.bogus""#), "{warn}");
    let w = s.k_json(&["get", "widget", "w1"]);
    assert!(w["spec"].get("bogus").is_none() && w.get("unknownTop").is_none());
    assert_eq!(w["spec"]["extra"], serde_json::json!({"anything": [1, 2]}));
    assert_eq!(w["spec"]["template"]["data"]["a"], "b");
    assert_eq!(w["spec"]["replicas"], 1, "defaulted");
    // Ignore: pruned silently.
    let o = s.kubectl_stdin(
        &body.replace("w1", "w2"),
        &["create", "--validate=false", "-f", "-"],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(
        s.k_json(&["get", "widget", "w2"])["spec"]
            .get("bogus")
            .is_none()
    );

    // Validation: upstream-shaped 422 causes.
    let bad = r#"
apiVersion: toys.example.com/v1
kind: Widget
metadata: {name: bad}
spec:
  color: purple
  replicas: 99
  size: true
  name: "Not-Valid-Name"
  note: null
  labels: {a: 1}
  template: {kind: ConfigMap}
"#;
    let err = s.k_in_err(bad, &["create", "-f", "-"]);
    for want in [
        r#"The Widget "bad" is invalid"#,
        r#"spec.color: Unsupported value: "purple": supported values: "red", "green", "blue""#,
        "spec.replicas: Invalid value: 99: spec.replicas in body should be less than or equal to 50",
        r#"spec.size: Invalid value: true: spec.size in body must be of type integer,string: "boolean""#,
        "spec.name: Too long: may not be more than 8 bytes",
        r#"spec.name: Invalid value: "Not-Valid-Name": spec.name in body should match '^[a-z]+$'"#,
        r#"spec.labels.a: Invalid value: 1: spec.labels.a in body must be of type string: "integer""#,
        "spec.template.apiVersion: Required value",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    let err = s.k_in_err(
        "apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {name: nocolor}\nspec: {}\n",
        &["create", "-f", "-"],
    );
    assert!(err.contains("spec.color: Required value"), "{err}");
    // int-or-string takes both; nullable takes null.
    s.k_in(
        "apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {name: ok}\nspec: {color: blue, size: 3, note: null}\n",
        &["create", "-f", "-"],
    );
    s.k_in(
        "apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {name: ok2}\nspec: {color: blue, size: large}\n",
        &["create", "-f", "-"],
    );
    // Updates are validated too.
    let err = s.k_err(&[
        "patch",
        "widget",
        "ok",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":-1}}"#,
    ]);
    assert!(
        err.contains("spec.replicas in body should be greater than or equal to 0"),
        "{err}"
    );
}

#[test]
fn scale_subresource_printer_columns_and_all_category() {
    let s = Server::start();
    create_crd(&s, WIDGET_CRD, "widgets.toys.example.com");
    s.k_in(
        "apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {color: green, replicas: 2}\n",
        &["apply", "-f", "-"],
    );
    s.k(&["scale", "widget/w", "--replicas=5"]);
    let w = s.k_json(&["get", "wd", "w"]);
    assert_eq!(w["spec"]["replicas"], 5);
    assert_eq!(w["metadata"]["generation"], 2);
    // The Scale object follows the CRD's paths.
    s.k(&[
        "patch",
        "widget",
        "w",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":4,"selector":"app=w"}}"#,
    ]);
    let scale = json(&s.k(&[
        "get",
        "--raw",
        "/apis/toys.example.com/v1/namespaces/default/widgets/w/scale",
    ]));
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["replicas"], 4);
    assert_eq!(scale["status"]["selector"], "app=w");
    let err = s.k_err(&["scale", "widget/w", "--replicas=-1"]);
    assert!(err.contains("replicas"), "{err}");
    // Integer and priority-1 columns.
    let out = s.k(&["get", "widgets"]);
    assert_eq!(squeeze(&lines(&out)[0]), "NAME REPLICAS", "{out}");
    assert_eq!(squeeze(&lines(&out)[1]), "w 5", "{out}");
    let wide = s.k(&["get", "widgets", "-o", "wide"]);
    assert_eq!(squeeze(&lines(&wide)[1]), "w 5 green", "{wide}");
    // `kubectl get all` includes the `all` category.
    let all = s.k(&["get", "all"]);
    assert!(all.contains("widget.toys.example.com/w"), "{all}");
}

#[test]
fn versions_convert_by_api_version_and_watch_sees_changes() {
    let s = Server::start();
    create_crd(&s, WIDGET_CRD, "widgets.toys.example.com");
    // Both versions are served; v1 is preferred.
    let group = json(&s.k(&["get", "--raw", "/apis/toys.example.com"]));
    assert_eq!(group["preferredVersion"]["version"], "v1");
    assert_eq!(group["versions"].as_array().map(Vec::len), Some(2));
    s.k_in(
        "apiVersion: toys.example.com/v1beta1\nkind: Widget\nmetadata: {name: old}\nspec: {color: red, anything: [1]}\n",
        &["create", "-f", "-"],
    );
    let v1 = json(&s.k(&[
        "get",
        "--raw",
        "/apis/toys.example.com/v1/namespaces/default/widgets/old",
    ]));
    assert_eq!(v1["apiVersion"], "toys.example.com/v1");
    assert_eq!(
        v1["spec"]["anything"],
        serde_json::json!([1]),
        "no conversion of content"
    );
    let v1beta1 = json(&s.k(&[
        "get",
        "widgets.v1beta1.toys.example.com",
        "old",
        "-o",
        "json",
    ]));
    assert_eq!(v1beta1["apiVersion"], "toys.example.com/v1beta1");

    // Watch from a resourceVersion sees later writes.
    let list = json(&s.k(&[
        "get",
        "--raw",
        "/apis/toys.example.com/v1/namespaces/default/widgets",
    ]));
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    s.k_in(
        "apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {name: new}\nspec: {color: blue}\n",
        &["create", "-f", "-"],
    );
    s.k(&["delete", "widget", "old"]);
    let evs = watch_events(
        &s,
        &format!(
            "/apis/toys.example.com/v1/namespaces/default/widgets?watch=true&resourceVersion={rv}&timeoutSeconds=2"
        ),
    );
    assert_eq!(
        evs,
        vec![
            ("ADDED".into(), "new".into()),
            ("DELETED".into(), "old".into())
        ],
        "{evs:?}"
    );
}

#[test]
fn deleting_a_crd_deletes_its_objects_then_stops_serving() {
    let s = Server::start();
    create_crd(&s, WIDGET_CRD, "widgets.toys.example.com");
    s.k(&["create", "namespace", "other"]);
    for (name, ns) in [("a", "default"), ("b", "default"), ("c", "other")] {
        s.k_in(
            &format!("apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{color: red}}\n"),
            &["create", "-f", "-"],
        );
    }
    // kubectl waits for the CRD to be gone.
    let out = s.k(&["delete", "crd", "widgets.toys.example.com", "--timeout=30s"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            !s.k(&["api-resources"]).contains("toys.example.com")
        }),
        "still in discovery"
    );
    let raw = s.kubectl(&["get", "--raw", "/apis/toys.example.com/v1/widgets"]);
    assert!(!raw.status.success());
    assert!(
        common::stderr(&raw).contains("NotFound") || common::stderr(&raw).contains("not found")
    );
    // A new CRD of the same name starts empty.
    create_crd(&s, WIDGET_CRD, "widgets.toys.example.com");
    assert!(
        s.k(&["get", "widgets", "-A", "-o", "name"])
            .trim()
            .is_empty()
    );
}

#[test]
fn deleting_a_crd_waits_for_finalized_objects() {
    let s = Server::start();
    create_crd(&s, WIDGET_CRD, "widgets.toys.example.com");
    s.k_in(
        "apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {name: held, finalizers: [example.com/hold]}\nspec: {color: red}\n",
        &["create", "-f", "-"],
    );
    s.k(&["delete", "crd", "widgets.toys.example.com", "--wait=false"]);
    let crd = s.k_json(&["get", "crd", "widgets.toys.example.com"]);
    assert_eq!(
        crd["metadata"]["finalizers"],
        serde_json::json!(["customresourcecleanup.apiextensions.k8s.io"])
    );
    assert_eq!(condition(&crd, "Terminating")["status"], "True");
    // The object is being deleted and new ones are refused.
    assert!(wait_until(Duration::from_secs(10), || {
        s.k_json(&["get", "widget", "held"])["metadata"]["deletionTimestamp"].is_string()
    }));
    let err = s.k_in_err(
        "apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {name: late}\nspec: {color: red}\n",
        &["create", "-f", "-"],
    );
    assert!(
        err.contains("create not allowed while custom resource definition is terminating"),
        "{err}"
    );
    s.k(&[
        "patch",
        "widget",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            !s.kubectl(&["get", "crd", "widgets.toys.example.com"])
                .status
                .success()
        }),
        "the CRD stays after its objects are gone"
    );
}

#[test]
fn invalid_crds_are_rejected() {
    let s = Server::start();
    let err = s.k_in_err(
        &CERTIFICATE_CRD.replace(
            "name: certificates.certs.example.com",
            "name: certs.certs.example.com",
        ),
        &["create", "-f", "-"],
    );
    assert!(
        err.contains(r#"metadata.name: Invalid value: "certs.certs.example.com": must be spec.names.plural+"."+spec.group"#),
        "{err}"
    );
    let no_schema = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: things.example.com}
spec:
  group: example.com
  names: {kind: Thing, plural: things}
  scope: Cluster
  versions:
  - {name: v1, served: true, storage: true}
"#;
    let err = s.k_in_err(no_schema, &["create", "-f", "-"]);
    assert!(
        err.contains(
            "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"
        ),
        "{err}"
    );
    let not_structural = no_schema.replace(
        "storage: true}",
        "storage: true, schema: {openAPIV3Schema: {type: object, properties: {spec: {properties: {a: {type: string}}}, size: {type: integer, default: big}}}}}",
    );
    let err = s.k_in_err(&not_structural, &["create", "-f", "-"]);
    assert!(
        err.contains("spec.validation.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"),
        "{err}"
    );
    assert!(
        err.contains("spec.validation.openAPIV3Schema.properties[size].default: Invalid value"),
        "{err}"
    );
    let bad_pattern = no_schema.replace(
        "storage: true}",
        "storage: true, schema: {openAPIV3Schema: {type: object, properties: {name: {type: string, pattern: '(unclosed'}}}}}",
    );
    let err = s.k_in_err(&bad_pattern, &["create", "-f", "-"]);
    assert!(
        err.contains("spec.validation.openAPIV3Schema.properties[name].pattern: Invalid value: \"(unclosed\": must be a valid regular expression"),
        "{err}"
    );
    let two_storage = no_schema.replace(
        "  - {name: v1, served: true, storage: true}",
        "  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}\n  - {name: v2, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}",
    );
    let err = s.k_in_err(&two_storage, &["create", "-f", "-"]);
    assert!(
        err.contains("must have exactly one version marked as storage version"),
        "{err}"
    );
    // Nothing half-made is served.
    assert!(!s.k(&["api-resources"]).contains("things"));
}

#[test]
fn crds_and_their_objects_are_served_after_a_restart() {
    let mut s = Server::start();
    create_crd(&s, CERTIFICATE_CRD, "certificates.certs.example.com");
    s.k_in(CERTIFICATE, &["apply", "-f", "-"]);
    s.restart();
    // Served from the first request on.
    let c = s.k_json(&["get", "cert", "web-tls"]);
    assert_eq!(c["spec"]["secretName"], "web-tls");
    let out = s.k(&["get", "certificates"]);
    assert_eq!(squeeze(&lines(&out)[0]), "NAME READY SECRET AGE");
    s.k_in(
        &CERTIFICATE.replace("name: web-tls\n  namespace", "name: api-tls\n  namespace"),
        &["apply", "-f", "-"],
    );
    assert!(s.k(&["get", "certs"]).contains("api-tls"));
}

/// A cluster-scoped CRD whose kind another CRD of the group already has.
const GADGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.toys.example.com
spec:
  group: toys.example.com
  names: {kind: Gadget, plural: gadgets, shortNames: [gd]}
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[test]
fn cluster_scope_name_conflicts_edit_apply_and_garbage_collection() {
    let s = Server::start();
    create_crd(&s, GADGET_CRD, "gadgets.toys.example.com");
    s.k_in(
        "apiVersion: toys.example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {size: 1}\n",
        &["apply", "-f", "-"],
    );
    let g = s.k_json(&["get", "gd", "g1"]);
    assert!(g["metadata"].get("namespace").is_none(), "cluster-scoped");
    // Client-side apply again with a change: a merge patch with the
    // last-applied annotation.
    s.k_in(
        "apiVersion: toys.example.com/v1\nkind: Gadget\nmetadata: {name: g1, labels: {a: b}}\nspec: {size: 2}\n",
        &["apply", "-f", "-"],
    );
    let g = s.k_json(&["get", "gadget", "g1"]);
    assert_eq!(g["spec"]["size"], 2);
    assert_eq!(g["metadata"]["labels"]["a"], "b");
    assert_eq!(g["metadata"]["generation"], 2);
    // Without a status subresource, status is content: generation moves.
    s.k(&[
        "patch",
        "gadget",
        "g1",
        "--type=merge",
        "-p",
        r#"{"status":{"seen":true}}"#,
    ]);
    let g = s.k_json(&["get", "gadget", "g1"]);
    assert_eq!(g["metadata"]["generation"], 3);
    assert_eq!(g["status"]["seen"], true);
    // kubectl edit through an editor script.
    let editor = s.root.join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/size: 2/size: 7/' \"$1\"\n").expect("editor");
    std::process::Command::new("chmod")
        .args(["+x", &editor.to_string_lossy()])
        .status()
        .expect("chmod");
    let o = s.kubectl_env(
        &[("KUBE_EDITOR", &editor.to_string_lossy())],
        &["edit", "gadget", "g1"],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(s.k_json(&["get", "gadget", "g1"])["spec"]["size"], 7);

    // A second CRD asking for the kind Gadget in the same group is not accepted.
    let clash = GADGET_CRD
        .replace("gadgets.toys.example.com", "gizmos.toys.example.com")
        .replace("plural: gadgets, shortNames: [gd]", "plural: gizmos");
    s.k_in(&clash, &["create", "-f", "-"]);
    let mut crd = Value::Null;
    assert!(wait_until(Duration::from_secs(10), || {
        crd = s.k_json(&["get", "crd", "gizmos.toys.example.com"]);
        condition(&crd, "NamesAccepted")["status"] == "False"
    }));
    assert_eq!(condition(&crd, "NamesAccepted")["reason"], "NameConflict");
    assert_eq!(condition(&crd, "Established")["status"], "False");
    assert!(!s.k(&["api-resources"]).contains("gizmos"));

    // Custom resources take part in garbage collection.
    s.k(&["create", "configmap", "owner"]);
    let uid = s.k_json(&["get", "configmap", "owner"])["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    create_crd(&s, WIDGET_CRD, "widgets.toys.example.com");
    s.k_in(
        &format!("apiVersion: toys.example.com/v1\nkind: Widget\nmetadata:\n  name: owned\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}]\nspec: {{color: red}}\n"),
        &["create", "-f", "-"],
    );
    s.k(&["delete", "configmap", "owner"]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            !s.kubectl(&["get", "widget", "owned"]).status.success()
        }),
        "the owned widget outlived its owner"
    );
    // Deleting a namespace deletes its custom resources.
    s.k(&["create", "namespace", "gone"]);
    s.k_in(
        "apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: gone}\nspec: {color: red}\n",
        &["create", "-f", "-"],
    );
    s.k(&["delete", "namespace", "gone", "--timeout=60s"]);
    assert!(
        s.k(&["get", "widgets", "-A", "-o", "name"])
            .trim()
            .is_empty()
    );
}

#[test]
fn explain_through_openapi_v2_and_server_side_apply() {
    let s = Server::start();
    create_crd(&s, CERTIFICATE_CRD, "certificates.certs.example.com");
    let v2 = s.k(&[
        "explain",
        "certificates.spec.issuerRef",
        "--output=plaintext-openapiv2",
    ]);
    assert!(v2.contains("name"), "{v2}");
    let o = s.kubectl_stdin(
        CERTIFICATE,
        &["apply", "--server-side", "--field-manager=certs", "-f", "-"],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let c = s.k_json(&["get", "cert", "web-tls"]);
    assert_eq!(c["spec"]["secretName"], "web-tls");
    assert_eq!(c["spec"]["privateKey"]["rotationPolicy"], "Always");
}

#[test]
fn updating_a_crd_changes_what_is_served() {
    let s = Server::start();
    create_crd(&s, WIDGET_CRD, "widgets.toys.example.com");
    let shaped = "apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {name: s}\nspec: {color: red, shape: round}\n";
    let err = s.k_in_err(shaped, &["create", "-f", "-"]);
    assert!(err.contains(r#"unknown field "spec.shape""#), "{err}");
    // A new field in the schema, and v1beta1 deprecated.
    let updated = WIDGET_CRD
        .replace(
            "              color: {type: string, enum: [red, green, blue]}\n",
            "              color: {type: string, enum: [red, green, blue]}\n              shape:\n                type: string\n                description: The outline of the widget.\n",
        )
        .replace(
            "  - name: v1beta1\n    served: true\n",
            "  - name: v1beta1\n    served: true\n    deprecated: true\n",
        );
    s.k_in(&updated, &["apply", "-f", "-"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            s.kubectl_stdin(shaped, &["create", "-f", "-"])
                .status
                .success()
        }),
        "the new schema is not used"
    );
    assert_eq!(s.k_json(&["get", "widget", "s"])["spec"]["shape"], "round");
    let explain = s.k(&["explain", "widgets.spec.shape"]);
    assert!(explain.contains("The outline of the widget."), "{explain}");
    let o = s.kubectl(&["get", "widgets.v1beta1.toys.example.com"]);
    assert!(o.status.success());
    assert!(
        common::stderr(&o).contains(
            "Warning: toys.example.com/v1beta1 Widget is deprecated; use toys.example.com/v1 Widget"
        ),
        "{}",
        common::stderr(&o)
    );
    // A new storage version joins storedVersions.
    s.k(&[
        "patch",
        "crd",
        "widgets.toys.example.com",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/versions/0/storage","value":true},{"op":"replace","path":"/spec/versions/1/storage","value":false}]"#,
    ]);
    let crd = s.k_json(&["get", "crd", "widgets.toys.example.com"]);
    assert_eq!(
        crd["status"]["storedVersions"],
        serde_json::json!(["v1", "v1beta1"])
    );
    // Objects written now are stored as v1beta1 and still read as v1.
    s.k_in(
        "apiVersion: toys.example.com/v1\nkind: Widget\nmetadata: {name: later}\nspec: {color: blue}\n",
        &["create", "-f", "-"],
    );
    assert_eq!(
        s.k_json(&["get", "widgets.v1.toys.example.com", "later"])["apiVersion"],
        "toys.example.com/v1"
    );
    // No longer served: gone from discovery and 404.
    s.k(&[
        "patch",
        "crd",
        "widgets.toys.example.com",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/versions/0/served","value":false},{"op":"replace","path":"/spec/versions/0/storage","value":false},{"op":"replace","path":"/spec/versions/1/storage","value":true}]"#,
    ]);
    assert!(wait_until(Duration::from_secs(10), || {
        !s.kubectl(&[
            "get",
            "--raw",
            "/apis/toys.example.com/v1beta1/namespaces/default/widgets",
        ])
        .status
        .success()
    }));
    let group = json(&s.k(&["get", "--raw", "/apis/toys.example.com"]));
    assert_eq!(group["versions"].as_array().map(Vec::len), Some(1));
    assert_eq!(s.k(&["get", "widgets", "-o", "name"]).lines().count(), 2);
}

/// Lists and maps of every server-side apply shape.
const SHAPES_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: shapes.toys.example.com
spec:
  group: toys.example.com
  names: {kind: Shape, plural: shapes, singular: shape}
  scope: Namespaced
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
              atomicMap:
                type: object
                x-kubernetes-map-type: atomic
                additionalProperties: {type: string}
              granularMap:
                type: object
                x-kubernetes-map-type: granular
                additionalProperties: {type: string}
              ref:
                type: object
                x-kubernetes-map-type: atomic
                properties:
                  name: {type: string}
                  kind: {type: string}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
              hosts:
                type: array
                x-kubernetes-list-type: atomic
                items: {type: string}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [port, protocol]
                items:
                  type: object
                  required: [port]
                  properties:
                    port: {type: integer}
                    protocol: {type: string, default: TCP}
                    name: {type: string}
"#;

fn shape(spec: &str) -> String {
    format!("apiVersion: toys.example.com/v1\nkind: Shape\nmetadata: {{name: s}}\nspec: {spec}\n")
}

fn apply_as(s: &Server, manager: &str, spec: &str, force: bool) -> Result<String, String> {
    let m = format!("--field-manager={manager}");
    let mut args = vec!["apply", "--server-side", m.as_str(), "-f", "-"];
    if force {
        args.push("--force-conflicts");
    }
    let o = s.kubectl_stdin(&shape(spec), &args);
    if o.status.success() {
        Ok(common::stdout(&o))
    } else {
        Err(common::stderr(&o))
    }
}

fn owned_by(s: &Server, manager: &str) -> Value {
    let obj = s.k_json(&["get", "shape", "s", "--show-managed-fields"]);
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
        .map(|e| e["fieldsV1"]["f:spec"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn server_side_apply_follows_custom_list_and_map_types() {
    let s = Server::start();
    create_crd(&s, SHAPES_CRD, "shapes.toys.example.com");
    let a = "{atomicMap: {x: '1', q: '2'}, granularMap: {x: '1'}, ref: {name: a, kind: K}, tags: [t1], hosts: [h1], ports: [{port: 80, name: http}]}";
    apply_as(&s, "a", a, false).expect("first apply");
    let mine = owned_by(&s, "a");
    // Atomic maps and structs are owned whole; granular ones key by key;
    // sets item by item; keys default (protocol) into the item's key.
    assert_eq!(mine["f:atomicMap"], serde_json::json!({}), "{mine}");
    assert_eq!(mine["f:ref"], serde_json::json!({}), "{mine}");
    assert_eq!(mine["f:hosts"], serde_json::json!({}), "{mine}");
    assert!(mine["f:granularMap"]["f:x"].is_object(), "{mine}");
    assert!(mine["f:tags"]["v:\"t1\""].is_object(), "{mine}");
    assert!(
        mine["f:ports"]["k:{\"port\":80,\"protocol\":\"TCP\"}"]["f:name"].is_object(),
        "{mine}"
    );

    // Changing one key of an atomic map conflicts on the whole map.
    let err = apply_as(&s, "b", "{atomicMap: {x: '1', q: '3'}}", false).unwrap_err();
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"a\": .spec.atomicMap"),
        "{err}"
    );
    let err = apply_as(&s, "b", "{ref: {name: b}}", false).unwrap_err();
    assert!(err.contains("conflict with \"a\": .spec.ref"), "{err}");
    // A different key of a granular map, another set item, another port:
    // no conflict, merged, each owned by its applier.
    apply_as(
        &s,
        "b",
        "{granularMap: {z: '9'}, tags: [t2], ports: [{port: 81, protocol: UDP}]}",
        false,
    )
    .expect("granular apply");
    let obj = s.k_json(&["get", "shape", "s"]);
    assert_eq!(
        obj["spec"]["granularMap"],
        serde_json::json!({"x": "1", "z": "9"})
    );
    assert_eq!(obj["spec"]["tags"], serde_json::json!(["t1", "t2"]));
    assert_eq!(obj["spec"]["ports"].as_array().map(Vec::len), Some(2));
    // Forced, b takes the atomic map whole: a's keys are replaced, not merged.
    apply_as(
        &s,
        "b",
        "{granularMap: {z: '9'}, tags: [t2], ports: [{port: 81, protocol: UDP}], atomicMap: {q: '3'}, hosts: [h2]}",
        true,
    )
    .expect("forced apply");
    let obj = s.k_json(&["get", "shape", "s"]);
    assert_eq!(obj["spec"]["atomicMap"], serde_json::json!({"q": "3"}));
    assert_eq!(obj["spec"]["hosts"], serde_json::json!(["h2"]));
    let mine = owned_by(&s, "a");
    assert!(mine.get("f:atomicMap").is_none(), "{mine}");
    assert!(mine.get("f:hosts").is_none(), "{mine}");
    assert_eq!(owned_by(&s, "b")["f:atomicMap"], serde_json::json!({}));
    // a stops applying its tag and map key: they go; b's stay.
    apply_as(
        &s,
        "a",
        "{ref: {name: a, kind: K}, ports: [{port: 80, name: http}]}",
        false,
    )
    .expect("a re-applies less");
    let obj = s.k_json(&["get", "shape", "s"]);
    assert_eq!(obj["spec"]["tags"], serde_json::json!(["t2"]));
    assert_eq!(obj["spec"]["granularMap"], serde_json::json!({"z": "9"}));
    // An item of the list-map without its required key (no default): refused.
    let err = apply_as(&s, "c", "{ports: [{name: nameless}]}", false).unwrap_err();
    assert!(
        err.contains("failed to create typed patch object (default/s; toys.example.com/v1, Kind=Shape): .spec.ports: element 0: associative list with keys has an element that omits key field \"port\" (and doesn't have default value)"),
        "{err}"
    );
}

const PART_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: parts.toys.example.com
spec:
  group: toys.example.com
  names: {kind: Part, plural: parts}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    selectableFields:
    - jsonPath: .spec.color
    - jsonPath: .spec.size
    - jsonPath: .spec.round
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              color: {type: string, enum: [red, blue]}
              size: {type: integer}
              round: {type: boolean}
              weight: {type: number}
              parts: {type: array, items: {type: string}}
"#;

fn part(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: toys.example.com/v1\nkind: Part\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

#[test]
fn selectable_fields_filter_lists_and_watches() {
    let s = Server::start();
    create_crd(&s, PART_CRD, "parts.toys.example.com");
    for (n, spec) in [
        ("a", "{color: blue, size: 3, round: true}"),
        ("b", "{color: red, size: 3}"),
        ("c", "{color: blue, size: 10, round: false}"),
        ("d", "{}"),
    ] {
        s.k_in(&part(n, spec), &["create", "-f", "-"]);
    }
    let names = |sel: &str| {
        s.k(&["get", "parts", "--field-selector", sel, "-o", "name"])
            .lines()
            .map(|l| l.trim_start_matches("part.toys.example.com/").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("spec.color=blue"), ["a", "c"]);
    assert_eq!(names("spec.color!=blue"), ["b", "d"]);
    // Integers and booleans compare as text; absent fields as "".
    assert_eq!(names("spec.size=3"), ["a", "b"]);
    assert_eq!(names("spec.round=true"), ["a"]);
    assert_eq!(names("spec.round=false"), ["c"]);
    assert_eq!(names("spec.color=blue,spec.size=10"), ["c"]);
    assert_eq!(names("spec.color=,metadata.name=d"), ["d"]);
    // A field the CRD does not declare selectable: upstream's 400.
    let err = s.k_err(&["get", "parts", "--field-selector", "spec.weight=1"]);
    assert!(
        err.contains("field label not supported: spec.weight"),
        "{err}"
    );
    assert!(err.contains("(BadRequest)"), "{err}");

    // OpenAPI names them on the kind and its list, as upstream.
    let v3 = json(&s.k(&["get", "--raw", "/openapi/v3/apis/toys.example.com/v1"]));
    let schemas = &v3["components"]["schemas"];
    let want = serde_json::json!([{"fieldPath": "spec.color"}, {"fieldPath": "spec.size"}, {"fieldPath": "spec.round"}]);
    assert_eq!(
        schemas["com.example.toys.v1.Part"]["x-kubernetes-selectable-fields"],
        want
    );
    assert_eq!(
        schemas["com.example.toys.v1.PartList"]["x-kubernetes-selectable-fields"],
        want
    );
    let v2 = json(&s.k(&["get", "--raw", "/openapi/v2"]));
    assert_eq!(
        v2["definitions"]["com.example.toys.v1.Part"]["x-kubernetes-selectable-fields"],
        want
    );

    // Watches filter the same way.
    let list = json(&s.k(&[
        "get",
        "--raw",
        "/apis/toys.example.com/v1/namespaces/default/parts",
    ]));
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    s.k_in(&part("e", "{color: blue}"), &["create", "-f", "-"]);
    s.k_in(&part("f", "{color: red}"), &["create", "-f", "-"]);
    s.k(&[
        "patch",
        "part",
        "b",
        "--type=merge",
        "-p",
        r#"{"spec":{"color":"blue"}}"#,
    ]);
    s.k(&[
        "patch",
        "part",
        "a",
        "--type=merge",
        "-p",
        r#"{"spec":{"color":"red"}}"#,
    ]);
    let evs = watch_events(
        &s,
        &format!(
            "/apis/toys.example.com/v1/namespaces/default/parts?watch=true&resourceVersion={rv}&timeoutSeconds=2&fieldSelector=spec.color%3Dblue"
        ),
    );
    // b turns blue (ADDED to the selection), a stops being blue (DELETED).
    let want: Vec<(String, String)> = [("ADDED", "e"), ("ADDED", "b"), ("DELETED", "a")]
        .iter()
        .map(|(t, n)| (t.to_string(), n.to_string()))
        .collect();
    assert_eq!(evs, want);
}

#[test]
fn invalid_selectable_fields_are_rejected() {
    let s = Server::start();
    let bad = PART_CRD
        .replace(
            "    - jsonPath: .spec.round\n",
            "    - jsonPath: .spec.round\n    - jsonPath: .spec.weight\n    - jsonPath: .spec.nope\n    - jsonPath: .spec.parts\n    - jsonPath: .spec.color\n    - jsonPath: .metadata.name\n",
        );
    let err = s.k_in_err(&bad, &["create", "-f", "-"]);
    for want in [
        "The CustomResourceDefinition \"parts.toys.example.com\" is invalid",
        "spec.selectableFields[3].jsonPath: Invalid value: \".spec.weight\": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
        "spec.selectableFields[4].jsonPath: Invalid value: \".spec.nope\": is an invalid path: does not refer to a valid field",
        "spec.selectableFields[5].jsonPath: Invalid value: \".spec.parts\": must point to a field of type string, boolean or integer",
        "spec.selectableFields[6].jsonPath: Duplicate value: \".spec.color\"",
        "spec.selectableFields[7].jsonPath: Invalid value: \".metadata.name\": is an invalid path: does not refer to a valid field",
    ] {
        assert!(err.contains(want), "{want}\n--- in ---\n{err}");
    }
    // More than eight.
    let many: String = (0..9)
        .map(|i| format!("    - jsonPath: .spec.m{i}\n"))
        .collect();
    let props: String = (0..9)
        .map(|i| format!("              m{i}: {{type: string}}\n"))
        .collect();
    let nine = PART_CRD
        .replace(
            "    - jsonPath: .spec.color\n    - jsonPath: .spec.size\n    - jsonPath: .spec.round\n",
            &many,
        )
        .replace("              size: {type: integer}\n", &format!("              size: {{type: integer}}\n{props}"));
    let err = s.k_in_err(&nine, &["create", "-f", "-"]);
    assert!(
        err.contains("spec.selectableFields: Too many: 9: must have at most 8 items"),
        "{err}"
    );
    // Per version when versions differ.
    let two = PART_CRD.replace(
        "  versions:\n",
        "  versions:\n  - name: v2\n    served: true\n    storage: false\n    selectableFields: [{jsonPath: .spec.shade}]\n    schema:\n      openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {shade: {type: string}}}}}\n",
    );
    let ok = s.kubectl_stdin(&two, &["create", "-f", "-"]);
    assert!(ok.status.success(), "{}", common::stderr(&ok));
    let crd = s.k_json(&["get", "crd", "parts.toys.example.com"]);
    assert_eq!(
        crd["spec"]["versions"][0]["selectableFields"][0]["jsonPath"],
        ".spec.shade"
    );
}

const GIZMO_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.toys.k8s.io
  annotations: {APPROVAL}
spec:
  group: toys.k8s.io
  names: {kind: Gizmo, plural: gizmos}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[test]
fn protected_groups_need_api_approval() {
    let s = Server::start();
    let with = |a: &str| GIZMO_CRD.replace("{APPROVAL}", a);
    let err = s.k_in_err(&with("{}"), &["create", "-f", "-"]);
    assert!(
        err.contains("The CustomResourceDefinition \"gizmos.toys.k8s.io\" is invalid: metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111"),
        "{err}"
    );
    let err = s.k_in_err(
        &with("{api-approved.kubernetes.io: maybe}"),
        &["create", "-f", "-"],
    );
    assert!(
        err.contains("metadata.annotations[api-approved.kubernetes.io]: Invalid value: \"maybe\": protected groups must have approval annotation \"api-approved.kubernetes.io\" with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111"),
        "{err}"
    );
    // "unapproved, ..." is accepted, and the condition says so.
    create_crd(
        &s,
        &with("{api-approved.kubernetes.io: 'unapproved, experimental'}"),
        "gizmos.toys.k8s.io",
    );
    let crd = s.k_json(&["get", "crd", "gizmos.toys.k8s.io"]);
    let c = condition(&crd, "KubernetesAPIApprovalPolicyConformant");
    assert_eq!(c["status"], "False", "{crd}");
    assert_eq!(c["reason"], "UnapprovedAnnotation");
    assert_eq!(c["message"], "not approved: \"unapproved, experimental\"");
    // Approved by a URL: the condition turns True.
    let url = "https://github.com/kubernetes/enhancements/pull/1111";
    s.k(&[
        "annotate",
        "--overwrite",
        "crd",
        "gizmos.toys.k8s.io",
        &format!("api-approved.kubernetes.io={url}"),
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let crd = s.k_json(&["get", "crd", "gizmos.toys.k8s.io"]);
            condition(&crd, "KubernetesAPIApprovalPolicyConformant")["status"] == "True"
        }),
        "the condition does not follow the annotation"
    );
    let crd = s.k_json(&["get", "crd", "gizmos.toys.k8s.io"]);
    let c = condition(&crd, "KubernetesAPIApprovalPolicyConformant");
    assert_eq!(c["reason"], "ApprovedAnnotation");
    assert_eq!(c["message"], format!("approved in {url}"));
    // Changing it to something invalid is refused; other updates are not.
    let err = s.k_err(&[
        "annotate",
        "--overwrite",
        "crd",
        "gizmos.toys.k8s.io",
        "api-approved.kubernetes.io=nope",
    ]);
    assert!(err.contains("Invalid value: \"nope\""), "{err}");
    s.k(&["label", "crd", "gizmos.toys.k8s.io", "team=toys"]);
    // Groups outside the community's need nothing.
    create_crd(&s, WIDGET_CRD, "widgets.toys.example.com");
    let crd = s.k_json(&["get", "crd", "widgets.toys.example.com"]);
    assert!(condition(&crd, "KubernetesAPIApprovalPolicyConformant").is_null());
}

#[test]
fn list_and_map_type_extensions_are_checked() {
    let s = Server::start();
    let bad = SHAPES_CRD
        .replace(
            "                x-kubernetes-map-type: granular\n",
            "                x-kubernetes-map-type: loose\n",
        )
        .replace(
            "                x-kubernetes-list-type: set\n",
            "                x-kubernetes-list-type: bag\n",
        )
        .replace("                  required: [port]\n", "");
    let err = s.k_in_err(&bad, &["create", "-f", "-"]);
    for want in [
        "The CustomResourceDefinition \"shapes.toys.example.com\" is invalid",
        "spec.validation.openAPIV3Schema.properties[spec].properties[granularMap].x-kubernetes-map-type: Unsupported value: \"loose\": supported values: \"atomic\", \"granular\"",
        "spec.validation.openAPIV3Schema.properties[spec].properties[tags].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\"",
        "spec.validation.openAPIV3Schema.properties[spec].properties[ports].items.properties[port].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
    ] {
        assert!(err.contains(want), "{want}\n--- in ---\n{err}");
    }
    // The well-formed original is accepted.
    create_crd(&s, SHAPES_CRD, "shapes.toys.example.com");
}
