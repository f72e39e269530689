//! CRD validation rules (`x-kubernetes-validations`, CEL) through stock
//! kubectl: rules on objects, list items and map values, messages and
//! messageExpression, reason and fieldPath, transition rules with oldSelf,
//! status subresource writes, dry-run, and rules that do not compile.

mod common;

use common::Server;

const SCALER_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: scalers.cel.example.com
spec:
  group: cel.example.com
  names: {kind: Scaler, listKind: ScalerList, plural: scalers, singular: scaler}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-validations:
        - rule: "self.metadata.name.size() <= 10"
          message: "name too long"
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.replicas"
              message: "replicas must be greater than or equal to minReplicas"
            - rule: "self.name.startsWith('x')"
              messageExpression: "'name ' + self.name + ' must start with x'"
            - rule: "!has(self.maxSurge) || self.maxSurge <= self.replicas"
              reason: FieldValueForbidden
              fieldPath: ".maxSurge"
              message: "maxSurge may not exceed replicas"
            properties:
              replicas: {type: integer}
              minReplicas: {type: integer}
              maxSurge: {type: integer}
              name: {type: string, maxLength: 20}
              mode:
                type: string
                x-kubernetes-validations:
                - rule: "self == oldSelf"
                  message: "Value is immutable"
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  x-kubernetes-validations:
                  - rule: "self.port > 0 && self.port < 65536"
                    messageExpression: "'port ' + self.name + ' is out of range'"
                  properties:
                    name: {type: string, maxLength: 15}
                    port: {type: integer}
              limits:
                type: object
                maxProperties: 10
                additionalProperties:
                  type: string
                  maxLength: 20
                  x-kubernetes-validations:
                  - rule: "isQuantity(self) && quantity(self).isLessThan(quantity('10Gi'))"
                    message: "must be a quantity below 10Gi"
                    reason: FieldValueRequired
          status:
            type: object
            x-kubernetes-validations:
            - rule: "self.ready <= self.total"
              message: "ready cannot exceed total"
            properties:
              ready: {type: integer}
              total: {type: integer}
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

fn scaler(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cel.example.com/v1\nkind: Scaler\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

#[test]
fn rules_reject_invalid_custom_resources() {
    let s = Server::start();
    create_crd(&s, SCALER_CRD, "scalers.cel.example.com");
    s.k_in(
        &scaler(
            "good",
            "{replicas: 3, minReplicas: 1, maxSurge: 1, name: xy, mode: fast, ports: [{name: http, port: 80}], limits: {memory: 1Gi}}",
        ),
        &["create", "-f", "-"],
    );

    // Every failing rule is a cause, at its node, with its message.
    let err = s.k_in_err(
        &scaler(
            "bad",
            "{replicas: 1, minReplicas: 2, maxSurge: 5, name: yz, ports: [{name: http, port: 80}, {name: big, port: 70000}], limits: {memory: 20Gi, cpu: lots}}",
        ),
        &["create", "-f", "-"],
    );
    for want in [
        r#"The Scaler "bad" is invalid: "#,
        r#"spec: Invalid value: "object": replicas must be greater than or equal to minReplicas"#,
        r#"spec: Invalid value: "object": name yz must start with x"#,
        "spec.maxSurge: Forbidden: maxSurge may not exceed replicas",
        "spec.limits[cpu]: Required value: must be a quantity below 10Gi",
        "spec.limits[memory]: Required value: must be a quantity below 10Gi",
        r#"spec.ports[1]: Invalid value: "object": port big is out of range"#,
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert!(!err.contains("spec.ports[0]"), "{err}");

    // Rules see the object's metadata name.
    let err = s.k_in_err(
        &scaler("much-too-long", "{replicas: 1, minReplicas: 1, name: x}"),
        &["create", "-f", "-"],
    );
    assert!(
        err.contains(r#"The Scaler "much-too-long" is invalid: <nil>: Invalid value: "object": name too long"#),
        "{err}"
    );

    // Dry-run runs the rules, and stores nothing either way.
    let err = s.k_in_err(
        &scaler("dry", "{replicas: 1, minReplicas: 5, name: x}"),
        &["create", "--dry-run=server", "-f", "-"],
    );
    assert!(
        err.contains("replicas must be greater than or equal to minReplicas"),
        "{err}"
    );
    s.k_in(
        &scaler("dry", "{replicas: 5, minReplicas: 1, name: x}"),
        &["create", "--dry-run=server", "-f", "-"],
    );
    assert!(s.k_err(&["get", "scaler", "dry"]).contains("NotFound"));

    // Updates run the rules on the new object.
    let err = s.k_err(&[
        "patch",
        "scaler",
        "good",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":0}}"#,
    ]);
    assert!(
        err.contains(r#"spec: Invalid value: "object": replicas must be greater than or equal to minReplicas"#),
        "{err}"
    );
}

#[test]
fn transition_rules_compare_with_the_old_object() {
    let s = Server::start();
    create_crd(&s, SCALER_CRD, "scalers.cel.example.com");
    s.k_in(
        &scaler("s1", "{replicas: 2, minReplicas: 1, name: xa, mode: fast}"),
        &["create", "-f", "-"],
    );
    let err = s.k_err(&[
        "patch",
        "scaler",
        "s1",
        "--type=merge",
        "-p",
        r#"{"spec":{"mode":"slow"}}"#,
    ]);
    assert!(
        err.contains(
            r#"The Scaler "s1" is invalid: spec.mode: Invalid value: "string": Value is immutable"#
        ),
        "{err}"
    );
    // Other fields may change; the immutable one keeps its value.
    s.k(&[
        "patch",
        "scaler",
        "s1",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ]);
    assert_eq!(
        s.k(&[
            "get",
            "scaler",
            "s1",
            "-o",
            "jsonpath={.spec.replicas}/{.spec.mode}"
        ]),
        "4/fast"
    );
    // A field first set on update has no old value to compare with.
    s.k_in(
        &scaler("s2", "{replicas: 2, minReplicas: 1, name: xa}"),
        &["create", "-f", "-"],
    );
    s.k(&[
        "patch",
        "scaler",
        "s2",
        "--type=merge",
        "-p",
        r#"{"spec":{"mode":"slow"}}"#,
    ]);
}

#[test]
fn status_writes_run_status_rules() {
    let s = Server::start();
    create_crd(&s, SCALER_CRD, "scalers.cel.example.com");
    s.k_in(
        &scaler("st", "{replicas: 2, minReplicas: 1, name: xa}"),
        &["create", "-f", "-"],
    );
    s.k(&[
        "patch",
        "scaler",
        "st",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":1,"total":2}}"#,
    ]);
    let err = s.k_err(&[
        "patch",
        "scaler",
        "st",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":3,"total":2}}"#,
    ]);
    assert!(
        err.contains(r#"The Scaler "st" is invalid: status: Invalid value: "object": ready cannot exceed total"#),
        "{err}"
    );
    assert_eq!(
        s.k(&["get", "scaler", "st", "-o", "jsonpath={.status.ready}"]),
        "1"
    );
}

#[test]
fn rules_that_do_not_compile_make_the_crd_invalid() {
    let s = Server::start();
    let crd = |rule: &str, extra: &str| {
        format!(
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: things.cel.example.com}}
spec:
  group: cel.example.com
  names: {{kind: Thing, plural: things}}
  scope: Cluster
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
              a: {{type: integer}}
            x-kubernetes-validations:
            - rule: {rule:?}
{extra}
"#
        )
    };
    let at = "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0]";
    let err = s.k_in_err(&crd("self.a <", ""), &["create", "-f", "-"]);
    assert!(
        err.contains(&format!(
            r#"{at}.rule: Invalid value: apiextensions.ValidationRule{{Rule:"self.a <", Message:"", MessageExpression:"""#
        )),
        "{err}"
    );
    assert!(
        err.contains("compilation failed: ERROR: <input>:1:"),
        "{err}"
    );
    let err = s.k_in_err(&crd("other.a > 0", ""), &["create", "-f", "-"]);
    assert!(
        err.contains("compilation failed: ERROR: <input>:1:1: undeclared reference to 'other' (in container '')"),
        "{err}"
    );
    let err = s.k_in_err(
        &crd(
            "self.a > 0",
            "              reason: Wrong\n              fieldPath: .b",
        ),
        &["create", "-f", "-"],
    );
    assert!(
        err.contains(&format!(r#"{at}.reason: Unsupported value: "Wrong": supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired""#)),
        "{err}"
    );
    assert!(
        err.contains(&format!(r#"{at}.fieldPath: Invalid value: ".b": fieldPath must be a valid path: does not refer to a valid field"#)),
        "{err}"
    );
    assert!(!s.k(&["get", "crd"]).contains("things.cel.example.com"));
    // A CRD update is checked the same way.
    create_crd(&s, &crd("self.a > 0", ""), "things.cel.example.com");
    let err = s.k_in_err(&crd("self.a >", ""), &["apply", "-f", "-"]);
    assert!(err.contains(&format!("{at}.rule: Invalid value")), "{err}");
    // The served rule is still the old one.
    let err = s.k_in_err(
        "apiVersion: cel.example.com/v1\nkind: Thing\nmetadata: {name: t}\nspec: {a: 0}\n",
        &["create", "-f", "-"],
    );
    assert!(
        err.contains(r#"spec: Invalid value: "object": failed rule: self.a > 0"#),
        "{err}"
    );
}

/// A one-version cluster-scoped CRD `widgets.cel.example.com` whose
/// openAPIV3Schema's `spec` is `spec_yaml` (indented by 10).
fn widget_crd(spec_yaml: &str) -> String {
    format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.cel.example.com}}
spec:
  group: cel.example.com
  names: {{kind: Widget, plural: widgets}}
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
{spec_yaml}
"#
    )
}

const WIDGET: &str = "spec.validation.openAPIV3Schema.properties[spec]";

#[test]
fn rules_are_type_checked_against_the_schema() {
    let s = Server::start();
    let spec = |rule: &str, extra: &str| {
        widget_crd(&format!(
            r#"            type: object
            properties:
              replicas: {{type: integer}}
              name: {{type: string}}
              ratio: {{type: number}}
              x-mode: {{type: string}}
              tags: {{type: array, items: {{type: string}}}}
              sub:
                type: object
                x-kubernetes-preserve-unknown-fields: true
                properties:
                  known: {{type: string}}
            x-kubernetes-validations:
            - rule: {rule:?}
{extra}"#
        ))
    };
    let at = format!("{WIDGET}.x-kubernetes-validations[0]");
    // A field the schema does not declare, even under has() or
    // x-kubernetes-preserve-unknown-fields, is a compile error.
    for (rule, col, field) in [
        ("self.foo == 1", 5, "foo"),
        // A presence test is placed at its macro's parenthesis, as cel-go.
        ("has(self.sub.other)", 4, "other"),
        (
            "self.tags.all(t, t.size() > 0) && self.sub.known.startsWith(self.nme)",
            65,
            "nme",
        ),
    ] {
        let err = s.k_in_err(&spec(rule, ""), &["create", "-f", "-"]);
        let want = format!(
            "{at}.rule: Invalid value: apiextensions.ValidationRule{{Rule:{rule:?}, Message:\"\""
        );
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
        let want = format!(
            "compilation failed: ERROR: <input>:1:{col}: undefined field '{field}'\n | {rule}\n | {}^",
            ".".repeat(col - 1)
        );
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
    // Calls no overload of which takes the argument types.
    let err = s.k_in_err(
        &spec("self.replicas.startsWith('a')", ""),
        &["create", "-f", "-"],
    );
    assert!(
        err.contains("compilation failed: ERROR: <input>:1:25: found no matching overload for 'startsWith' applied to 'int.(string)'"),
        "{err}"
    );
    let err = s.k_in_err(&spec("self.ratio == 1", ""), &["create", "-f", "-"]);
    assert!(
        err.contains("found no matching overload for '_==_' applied to '(double, int)'"),
        "{err}"
    );
    // A rule must be a bool, a messageExpression a string.
    let err = s.k_in_err(&spec("self.replicas + 1", ""), &["create", "-f", "-"]);
    assert!(
        err.contains(": cel expression must evaluate to a bool"),
        "{err}"
    );
    let err = s.k_in_err(
        &spec(
            "self.replicas > 0",
            "              messageExpression: self.replicas",
        ),
        &["create", "-f", "-"],
    );
    assert!(
        err.contains(&format!("{at}.messageExpression: Invalid value: apiextensions.ValidationRule{{Rule:\"self.replicas > 0\"")),
        "{err}"
    );
    assert!(
        err.contains(": messageExpression must evaluate to a string"),
        "{err}"
    );
    assert!(!s.k(&["get", "crd"]).contains("widgets.cel.example.com"));

    // Well-typed rules are accepted, and property names that are not CEL
    // identifiers are spelled escaped, as upstream.
    create_crd(
        &s,
        &spec(
            "self.replicas >= 0 && self.x__dash__mode != 'off' && self.tags.all(t, t.size() < 5)",
            "",
        ),
        "widgets.cel.example.com",
    );
    s.k_in(
        "apiVersion: cel.example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {replicas: 1, x-mode: fast, tags: [a]}\n",
        &["create", "-f", "-"],
    );
    let err = s.k_in_err(
        "apiVersion: cel.example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {replicas: 1, x-mode: 'off'}\n",
        &["create", "-f", "-"],
    );
    assert!(err.contains("failed rule: self.replicas >= 0"), "{err}");
}

#[test]
fn rules_over_budget_make_the_crd_invalid() {
    let s = Server::start();
    let budget = "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)";
    // Every pair of an unbounded list of unbounded strings.
    let pairs = |bounds: &str| {
        widget_crd(&format!(
            r#"            type: object
            properties:
              names:
                type: array
                {bounds}
                items: {{type: string, maxLength: 64}}
                x-kubernetes-validations:
                - rule: "self.all(a, self.exists_one(b, a == b))"
                  message: names must be unique"#
        ))
    };
    let err = s.k_in_err(&pairs(""), &["create", "-f", "-"]);
    assert!(
        err.contains(&format!(
            "{WIDGET}.properties[names].x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of more than 100x {budget}"
        )),
        "{err}"
    );
    // Bounded, the same rule is cheap enough, and runs.
    create_crd(&s, &pairs("maxItems: 100"), "widgets.cel.example.com");
    let err = s.k_in_err(
        "apiVersion: cel.example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {names: [a, b, a]}\n",
        &["create", "-f", "-"],
    );
    assert!(
        err.contains("spec.names: Invalid value: \"array\": names must be unique"),
        "{err}"
    );
    s.k(&["delete", "crd", "widgets.cel.example.com"]);

    // Rules each within budget, together over the CRD's.
    let rules: String = (0..20)
        .map(|i| format!("                  - rule: \"self.matches('^[a-z]{{{i}}}')\"\n"))
        .collect();
    let many = widget_crd(&format!(
        r#"            type: object
            properties:
              items:
                type: array
                maxItems: 5000
                items:
                  type: string
                  maxLength: 1000
                  x-kubernetes-validations:
{rules}"#
    ));
    let err = s.k_in_err(&many, &["create", "-f", "-"]);
    assert!(!err.contains("estimated rule cost exceeds"), "{err}");
    let contributed = "Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema";
    // The four most expensive are named.
    assert_eq!(err.matches(contributed).count(), 4, "{err}");
    assert!(
        err.contains(&format!(
            "{WIDGET}.properties[items].items.x-kubernetes-validations[0].rule: {contributed}"
        )),
        "{err}"
    );
    assert!(
err.contains(
            "spec.validation.openAPIV3Schema: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of"
        ),
        "{err}"
    );
    assert!(!s.k(&["get", "crd"]).contains("widgets.cel.example.com"));
}

#[test]
fn transition_rules_need_correlatable_old_values() {
    let s = Server::start();
    let crd = |list_type: &str| {
        widget_crd(&format!(
            r#"            type: object
            properties:
              ports:
                type: array
                x-kubernetes-list-type: {list_type}
                {keys}
                maxItems: 10
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {{type: string, maxLength: 10}}
                    port:
                      type: integer
                      x-kubernetes-validations:
                      - rule: self == oldSelf
                        message: port is immutable
              fixed:
                type: object
                x-kubernetes-map-type: atomic
                properties:
                  a:
                    type: string
                    maxLength: 10
                    {fixed_rule}"#,
            keys = if list_type == "map" {
                "x-kubernetes-list-map-keys: [name]"
            } else {
                ""
            },
            fixed_rule = if list_type == "map" {
                ""
            } else {
                "x-kubernetes-validations: [{rule: \"self == oldSelf\"}]"
            },
        ))
    };
    for list_type in ["atomic", "set"] {
        let err = s.k_in_err(&crd(list_type), &["create", "-f", "-"]);
        assert!(
            err.contains(&format!(
                r#"{WIDGET}.properties[ports].items.properties[port].x-kubernetes-validations[0].rule: Invalid value: "self == oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema within {WIDGET}.properties[ports]"#
            )),
            "{list_type}: {err}"
        );
        assert!(
            err.contains(&format!(
                r#"{WIDGET}.properties[fixed].properties[a].x-kubernetes-validations[0].rule: Invalid value: "self == oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema within {WIDGET}.properties[fixed]"#
            )),
            "{list_type}: {err}"
        );
    }
    // Map lists correlate items by key: the rule is accepted and runs.
    create_crd(&s, &crd("map"), "widgets.cel.example.com");
    s.k_in(
        "apiVersion: cel.example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {ports: [{name: http, port: 80}]}\n",
        &["create", "-f", "-"],
    );
    let err = s.k_err(&[
        "patch",
        "widget",
        "w",
        "--type=merge",
        "-p",
        r#"{"spec":{"ports":[{"name":"http","port":81}]}}"#,
    ]);
    assert!(
        err.contains(r#"spec.ports[0].port: Invalid value: "integer": port is immutable"#),
        "{err}"
    );
}

#[test]
fn durations_and_timestamps_are_typed_values() {
    let s = Server::start();
    let crd = widget_crd(
        r#"            type: object
            properties:
              timeout: {type: string, format: duration}
              at: {type: string, format: date-time}
              day: {type: string, format: date}
              note: {type: string, maxLength: 64}
            x-kubernetes-validations:
            - rule: "!has(self.timeout) || (self.timeout < duration('1h') && self.timeout >= duration('1s'))"
              message: timeout must be between 1s and 1h
            - rule: "!has(self.at) || timestamp(self.at) > timestamp('2020-01-01T00:00:00Z')"
              message: at must be after 2020
            - rule: "!has(self.at) || !has(self.day) || self.at - self.day < duration('24h')"
              message: at must be on day
            - rule: "!has(self.day) || self.day.getDayOfWeek() != 0"
              messageExpression: "self.day.getDayOfWeek() == 0 ? 'day is a Sunday' : 'day is wrong'"
            - rule: "!has(self.note) || timestamp(self.note) + duration('1h') > timestamp('2020-01-01T00:00:00Z')"
              message: note must be a timestamp"#,
    );
    // A duration compares with a string only as a type error.
    let bad = crd.replace("self.timeout < duration('1h')", "self.timeout < '1h'");
    let err = s.k_in_err(&bad, &["create", "-f", "-"]);
    assert!(
        err.contains(
            "found no matching overload for '_<_' applied to '(google.protobuf.Duration, string)'"
        ),
        "{err}"
    );
    create_crd(&s, &crd, "widgets.cel.example.com");
    let widget = |name: &str, spec: &str| {
        format!(
            "apiVersion: cel.example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    };
    s.k_in(
        &widget(
            "ok",
            "{timeout: 90s, at: '2024-03-01T10:00:00Z', day: '2024-03-01', note: '2024-01-01T00:00:00+02:00'}",
        ),
        &["create", "-f", "-"],
    );
    // The OpenAPI duration format's longer units are durations too.
    s.k_in(&widget("minutes", "{timeout: 30m}"), &["create", "-f", "-"]);
    let err = s.k_in_err(
        &widget(
            "bad",
            "{timeout: 2h, at: '2019-12-31T23:59:59Z', day: '2024-03-03'}",
        ),
        &["create", "-f", "-"],
    );
    for want in [
        r#"spec: Invalid value: "object": timeout must be between 1s and 1h"#,
        r#"spec: Invalid value: "object": at must be after 2020"#,
        r#"spec: Invalid value: "object": day is a Sunday"#,
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert!(!err.contains("at must be on day"), "{err}");
    let err = s.k_in_err(
        &widget(
            "late",
            "{at: '2024-03-02T10:00:00Z', day: '2024-03-01', timeout: 1ms}",
        ),
        &["create", "-f", "-"],
    );
    assert!(err.contains("at must be on day"), "{err}");
    assert!(err.contains("timeout must be between 1s and 1h"), "{err}");
    // A string that is no timestamp fails the rule at run time.
    let err = s.k_in_err(&widget("note", "{note: someday}"), &["create", "-f", "-"]);
    assert!(
        err.contains("spec: Invalid value: \"object\": timestamp: cannot parse \"someday\" as RFC 3339 timestamp evaluating rule: note must be a timestamp"),
        "{err}"
    );
}

#[test]
fn the_format_library_validates_names() {
    let s = Server::start();
    let crd = widget_crd(
        r#"            type: object
            properties:
              host:
                type: string
                maxLength: 253
                x-kubernetes-validations:
                - rule: "!format.dns1123Subdomain().validate(self).hasValue()"
                  message: host must be a DNS subdomain
              id:
                type: string
                maxLength: 36
                x-kubernetes-validations:
                - rule: "!format.named('uuid').value().validate(self).hasValue()"
                  message: must be a UUID"#,
    );
    create_crd(&s, &crd, "widgets.cel.example.com");
    let widget = |name: &str, spec: &str| {
        format!(
            "apiVersion: cel.example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    };
    s.k_in(
        &widget(
            "ok",
            "{host: a.example.com, id: 123e4567-e89b-12d3-a456-426614174000}",
        ),
        &["create", "-f", "-"],
    );
    let err = s.k_in_err(
        &widget("bad", "{host: A_b, id: nope}"),
        &["create", "-f", "-"],
    );
    assert!(
        err.contains(r#"spec.host: Invalid value: "string": host must be a DNS subdomain"#),
        "{err}"
    );
    assert!(
        err.contains(r#"spec.id: Invalid value: "string": must be a UUID"#),
        "{err}"
    );
}
