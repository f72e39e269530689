//! Server-side apply and managedFields through stock kubectl and raw HTTPS:
//! conflicts and their messages, --force-conflicts, removal of fields a
//! manager stops applying, migration from client-side apply,
//! --show-managed-fields, diff --server-side, dry runs and bad requests.

mod common;

use common::{Req, Server, stderr};
use serde_json::{Value, json};

fn deployment(replicas: u32, labels: &str, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {{{labels}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {image}
        ports: [{{containerPort: 8080}}]
"#
    )
}

fn managed(s: &Server, args: &[&str]) -> Vec<Value> {
    let mut a = args.to_vec();
    a.push("--show-managed-fields");
    let obj = s.k_json(&a);
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry<'a>(entries: &'a [Value], manager: &str, op: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == op)
}

#[test]
fn server_side_apply_conflicts_force_and_pruning() {
    let mut s = Server::start();
    let out = s.k_in(
        &deployment(2, "app: web, team: a", "web:1"),
        &["apply", "--server-side", "-f", "-"],
    );
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let mf = managed(&s, &["get", "deploy", "web"]);
    let mine = entry(&mf, "kubectl", "Apply").expect("kubectl's Apply entry");
    assert_eq!(mine["apiVersion"], "apps/v1");
    assert_eq!(mine["fieldsType"], "FieldsV1");
    let f = &mine["fieldsV1"];
    assert!(f["f:spec"]["f:replicas"].is_object(), "{f}");
    assert!(f["f:spec"]["f:selector"].is_object(), "{f}");
    assert!(
        f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:ports"]
            ["k:{\"containerPort\":8080,\"protocol\":\"TCP\"}"]["."]
            .is_object(),
        "{f}"
    );
    // Fields only defaulting set belong to no one.
    assert!(
        f["f:spec"].get("f:progressDeadlineSeconds").is_none(),
        "{f}"
    );

    // Another manager changing replicas conflicts with kubectl.
    let err = s.k_in_err(
        &deployment(5, "app: web, team: a", "web:1"),
        &["apply", "--server-side", "--field-manager=ci", "-f", "-"],
    );
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");

    // The same over raw HTTPS: a 409 listing each conflicting field.
    let body = deployment(5, "app: web, team: a", "web:2");
    let r = s.request(
        Req::new(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=ci",
        )
        .body("application/apply-patch+yaml", body.clone()),
    );
    let st = r.assert_status(409, "Conflict");
    assert_eq!(
        st["message"],
        "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
    );
    assert_eq!(
        st["details"]["causes"],
        json!([
            {"type": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".spec.replicas"},
            {"type": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".spec.template.spec.containers[name=\"web\"].image"},
        ])
    );

    // --force-conflicts: ci takes replicas over.
    let ci_manifest =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 5}\n";
    s.k_in(
        ci_manifest,
        &[
            "apply",
            "--server-side",
            "--field-manager=ci",
            "--force-conflicts",
            "-f",
            "-",
        ],
    );
    let d = s.k_json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 5);
    let mf = managed(&s, &["get", "deploy", "web"]);
    let kubectl = &entry(&mf, "kubectl", "Apply").expect("kubectl")["fieldsV1"];
    assert!(kubectl["f:spec"].get("f:replicas").is_none(), "{kubectl}");
    let ci = &entry(&mf, "ci", "Apply").expect("ci")["fieldsV1"];
    assert!(ci["f:spec"]["f:replicas"].is_object(), "{ci}");

    // kubectl drops the team label and its replicas: the label goes (only
    // kubectl had it), replicas stay (ci still applies them).
    let no_replicas = deployment(5, "app: web", "web:1").replace("  replicas: 5\n", "");
    s.k_in(&no_replicas, &["apply", "--server-side", "-f", "-"]);
    let d = s.k_json(&["get", "deploy", "web"]);
    assert_eq!(d["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(d["spec"]["replicas"], 5);

    // An Update manager (kubectl patch) owns what it changed: conflict named
    // with operation Update's apiVersion.
    s.k(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minReadySeconds":7}}"#,
    ]);
    let with_min = no_replicas.replace(
        "spec:\n  selector",
        "spec:\n  minReadySeconds: 3\n  selector",
    );
    let err = s.k_in_err(&with_min, &["apply", "--server-side", "-f", "-"]);
    assert!(
        err.contains("conflict with \"kubectl-patch\" using apps/v1: .spec.minReadySeconds"),
        "{err}"
    );
}

#[test]
fn client_side_apply_migrates_to_server_side() {
    let s = Server::start();
    s.k_in(
        &deployment(2, "app: web, team: a", "web:1"),
        &["apply", "-f", "-"],
    );
    let mf = managed(&s, &["get", "deploy", "web"]);
    let csa = entry(&mf, "kubectl-client-side-apply", "Update").expect("client-side entry");
    assert!(
        csa["fieldsV1"]["f:metadata"]["f:annotations"]
            ["f:kubectl.kubernetes.io/last-applied-configuration"]
            .is_object(),
        "{csa}"
    );
    // The same kubectl switches to --server-side with a changed manifest: no
    // conflict with its own client-side fields, and the manifest wins.
    s.k_in(
        &deployment(3, "app: web", "web:2"),
        &["apply", "--server-side", "-f", "-"],
    );
    let d = s.k_json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );
    assert_eq!(
        d["metadata"]["labels"],
        json!({"app": "web"}),
        "dropped label stays dropped"
    );
    let mf = managed(&s, &["get", "deploy", "web"]);
    assert!(entry(&mf, "kubectl", "Apply").is_some(), "{mf:?}");
    assert!(
        entry(&mf, "kubectl-client-side-apply", "Update").is_none(),
        "the client-side entry is migrated: {mf:?}"
    );
    // The last-applied annotation follows server-side applies by kubectl.
    let la: Value = serde_json::from_str(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("annotation"),
    )
    .expect("json");
    assert_eq!(la["spec"]["replicas"], 3);
    // And back to client-side apply works too.
    s.k_in(&deployment(4, "app: web", "web:2"), &["apply", "-f", "-"]);
    assert_eq!(s.k_json(&["get", "deploy", "web"])["spec"]["replicas"], 4);
}

#[test]
fn managed_fields_of_ordinary_writes() {
    let s = Server::start();
    s.k_in(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {key: v}\n",
        &["create", "-f", "-"],
    );
    // Hidden unless asked for, as upstream.
    let plain = s.k(&["get", "cm", "c", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");
    let yaml = s.k(&["get", "cm", "c", "-o", "yaml", "--show-managed-fields"]);
    let want = "  managedFields:\n  - apiVersion: v1\n    fieldsType: FieldsV1\n    fieldsV1:\n      f:data:\n        .: {}\n        f:key: {}\n    manager: kubectl-create\n    operation: Update\n    time: \"";
    assert!(yaml.contains(want), "{yaml}");
    let time = s.k(&[
        "get",
        "cm",
        "c",
        "-o",
        "jsonpath={.metadata.managedFields[0].time}",
    ]);
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "seconds precision: {time}"
    );
    s.k(&["label", "cm", "c", "tier=web"]);
    s.k(&["annotate", "cm", "c", "note=x"]);
    let mf = managed(&s, &["get", "cm", "c"]);
    let label = entry(&mf, "kubectl-label", "Update").expect("kubectl-label");
    assert_eq!(
        label["fieldsV1"],
        json!({"f:metadata": {"f:labels": {".": {}, "f:tier": {}}}})
    );
    assert!(entry(&mf, "kubectl-annotate", "Update").is_some(), "{mf:?}");
    // A client without fieldManager is named by its user agent.
    let mut s = s;
    let r = s.request(
        Req::new("PATCH", "/api/v1/namespaces/default/configmaps/c")
            .header("User-Agent", "my-tool/1.2 (linux)")
            .body("application/merge-patch+json", r#"{"data":{"key":"w"}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mf = managed(&s, &["get", "cm", "c"]);
    assert_eq!(
        entry(&mf, "my-tool", "Update").expect("my-tool")["fieldsV1"],
        json!({"f:data": {"f:key": {}}})
    );
    let create = entry(&mf, "kubectl-create", "Update").expect("kubectl-create");
    assert_eq!(
        create["fieldsV1"],
        json!({"f:data": {}}),
        "lost key to my-tool"
    );

    // Status writes are recorded against the status subresource: the
    // deployment controller's status updates of a Deployment.
    s.k_in(
        &deployment(0, "app: web", "web:1"),
        &["apply", "--server-side", "-f", "-"],
    );
    assert!(common::wait_until(
        std::time::Duration::from_secs(20),
        || {
            managed(&s, &["get", "deploy", "web"]).iter().any(|e| {
                e["subresource"] == "status"
                    && e["manager"] == "kube-controller-manager"
                    && e["fieldsV1"].get("f:status").is_some()
                    && e["fieldsV1"].get("f:spec").is_none()
            })
        }
    ));
}

#[test]
fn apply_requests_over_https() {
    let mut s = Server::start();
    let path = "/api/v1/namespaces/default/configmaps/ac";
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ac\ndata:\n  a: \"1\"\n";
    // No fieldManager: 422 as upstream's PatchOptions validation.
    let r = s.request(Req::new("PATCH", path).body("application/apply-patch+yaml", cm));
    let st = r.assert_status(422, "Invalid");
    assert_eq!(
        st["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    // force on a non-apply patch is forbidden.
    let r = s.request(
        Req::new("PATCH", &format!("{path}?force=true&fieldManager=x"))
            .body("application/merge-patch+json", "{}"),
    );
    r.assert_status(422, "Invalid");
    // Dry run: the object that would be created, nothing stored.
    let r = s.request(
        Req::new("PATCH", &format!("{path}?fieldManager=t&dryRun=All"))
            .body("application/apply-patch+yaml", cm),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["metadata"]["managedFields"][0]["manager"], "t");
    let r = s.request(Req::new("GET", path));
    r.assert_status(404, "NotFound");
    // Creates answer 201, updates 200; JSON bodies are YAML too.
    let r = s.request(
        Req::new("PATCH", &format!("{path}?fieldManager=t"))
            .body("application/apply-patch+yaml", cm),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s.request(Req::new("PATCH", &format!("{path}?fieldManager=t")).body(
        "application/apply-patch+yaml",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ac"},"data":{"b":"2"}}"#,
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["data"],
        json!({"b": "2"}),
        "a was applied before, not now"
    );
    // Applying the same configuration again writes nothing.
    let rv = r.json()["metadata"]["resourceVersion"].clone();
    let r = s.request(Req::new("PATCH", &format!("{path}?fieldManager=t")).body(
        "application/apply-patch+yaml",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ac"},"data":{"b":"2"}}"#,
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["resourceVersion"], rv);
    // Wrong apiVersion, managedFields in the body, a name mismatch: 400.
    for (body, msg) in [
        (
            "apiVersion: v2\nkind: ConfigMap\nmetadata: {name: ac}\n",
            "Incorrect version specified in apply patch",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ac, managedFields: [{manager: x}]}\n",
            "metadata.managedFields must be nil",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
            "does not match the name on the URL",
        ),
    ] {
        let r = s.request(
            Req::new("PATCH", &format!("{path}?fieldManager=t"))
                .body("application/apply-patch+yaml", body),
        );
        let st = r.assert_status(400, "BadRequest");
        assert!(st["message"].as_str().unwrap_or("").contains(msg), "{st}");
    }
    // Strict field validation rejects unknown fields, Ignore drops them.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ac}\nbogus: 1\n";
    let r = s.request(
        Req::new(
            "PATCH",
            &format!("{path}?fieldManager=t&fieldValidation=Strict"),
        )
        .body("application/apply-patch+yaml", bad),
    );
    let st = r.assert_status(400, "BadRequest");
    assert!(
        st["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown field \"bogus\""),
        "{st}"
    );
    let r = s.request(
        Req::new(
            "PATCH",
            &format!("{path}?fieldManager=t&fieldValidation=Ignore"),
        )
        .body("application/apply-patch+yaml", bad),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().get("bogus").is_none());
}

#[test]
fn diff_server_side_and_dry_run() {
    let s = Server::start();
    s.k_in(
        &deployment(2, "app: web", "web:1"),
        &["apply", "--server-side", "-f", "-"],
    );
    let o = s.kubectl_stdin(
        &deployment(3, "app: web", "web:1"),
        &["diff", "--server-side", "-f", "-"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = common::stdout(&o);
    assert!(
        out.contains("-  replicas: 2") && out.contains("+  replicas: 3"),
        "{out}"
    );
    // Nothing changed for real.
    assert_eq!(s.k_json(&["get", "deploy", "web"])["spec"]["replicas"], 2);
    let out = s.k_in(
        &deployment(4, "app: web", "web:1"),
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            "-",
            "-o",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["spec"]["replicas"], 4);
    assert_eq!(s.k_json(&["get", "deploy", "web"])["spec"]["replicas"], 2);
    // No differences: exit 0.
    let o = s.kubectl_stdin(
        &deployment(2, "app: web", "web:1"),
        &["diff", "--server-side", "-f", "-"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        common::stdout(&o),
        stderr(&o)
    );
}

#[test]
fn scale_writes_are_recorded_under_the_scale_subresource() {
    let s = Server::start();
    s.k_in(
        &deployment(2, "app: web", "web:1"),
        &["apply", "--server-side", "-f", "-"],
    );
    s.k(&["scale", "deploy/web", "--replicas=3"]);
    let mf = managed(&s, &["get", "deploy", "web"]);
    // Upstream records a /scale write as an Update of the parent with
    // subresource "scale", owning spec.replicas.
    let scale = mf
        .iter()
        .find(|e| e["operation"] == "Update" && e["subresource"] == "scale")
        .unwrap_or_else(|| panic!("no Update entry with subresource scale: {mf:?}"));
    assert!(
        scale["fieldsV1"]["f:spec"]["f:replicas"].is_object(),
        "{scale}"
    );
    let applied = entry(&mf, "kubectl", "Apply").expect("kubectl's Apply entry");
    assert!(
        applied["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "the scale took replicas from the applier: {applied}"
    );
    // Applying replicas again now conflicts with the scale's manager.
    let err = s.k_in_err(
        &deployment(2, "app: web", "web:1"),
        &["apply", "--server-side", "-f", "-"],
    );
    assert!(
        err.contains("with subresource \"scale\"") && err.contains(".spec.replicas"),
        "{err}"
    );
}

#[test]
fn list_map_items_without_their_keys_are_refused() {
    let mut s = Server::start();
    // A container without a name: upstream's typed-conversion error.
    let nameless = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nameless\n  namespace: default\nspec:\n  selector: {matchLabels: {app: nl}}\n  template:\n    metadata: {labels: {app: nl}}\n    spec:\n      containers:\n      - image: web:1\n";
    let err = s.k_in_err(nameless, &["apply", "--server-side", "-f", "-"]);
    assert!(
        err.contains("failed to create typed patch object (default/nameless; apps/v1, Kind=Deployment): .spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"),
        "{err}"
    );
    assert!(
        s.k_err(&["get", "deploy", "nameless"]).contains("NotFound"),
        "nothing was created"
    );
    // A port without protocol is fine (it has a default); one without
    // containerPort is not, and a duplicate item is reported too.
    let dup = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: dup\n  namespace: default\nspec:\n  selector: {matchLabels: {app: nl}}\n  template:\n    metadata: {labels: {app: nl}}\n    spec:\n      containers:\n      - {name: a, image: web:1, ports: [{containerPort: 80}, {protocol: UDP}]}\n      - {name: a, image: web:2}\n";
    let err = s.k_in_err(dup, &["apply", "--server-side", "-f", "-"]);
    assert!(
        err.contains("failed to create typed patch object (default/dup; apps/v1, Kind=Deployment): errors:\n  .spec.template.spec.containers[name=\"a\"].ports: element 1: associative list with keys has an element that omits key field \"containerPort\" (and doesn't have default value)\n  .spec.template.spec.containers: duplicate entries for key [name=\"a\"]"),
        "{err}"
    );
    // The same over HTTPS on an existing object: 422, and the object stays.
    let ok = nameless.replace("- image: web:1", "- {name: c, image: web:1}");
    s.k_in(&ok, &["apply", "--server-side", "-f", "-"]);
    let r = s.request(
        Req::new(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/nameless?fieldManager=x",
        )
        .body("application/apply-patch+yaml", nameless),
    );
    let st = r.assert_status(422, "Invalid");
    assert!(
        st["message"]
            .as_str()
            .unwrap_or("")
            .ends_with("element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"),
        "{st}"
    );
    assert_eq!(
        s.k(&[
            "get",
            "deploy",
            "nameless",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name}"
        ]),
        "c"
    );
}

#[test]
fn update_managers_beyond_ten_merge_into_ancient_changes() {
    let s = Server::start();
    s.k(&["create", "configmap", "many", "--from-literal=k=v"]);
    // Eleven more updaters: twelve Update managers in all.
    for i in 1..=11 {
        let m = format!("--field-manager=m{i:02}");
        s.k(&["label", "configmap", "many", &format!("l{i:02}=x"), &m]);
    }
    let mf = managed(&s, &["get", "configmap", "many"]);
    let updaters: Vec<&Value> = mf.iter().filter(|e| e["operation"] == "Update").collect();
    assert_eq!(updaters.len(), 10, "{mf:#?}");
    let ancient = entry(&mf, "ancient-changes", "Update").expect("the ancient-changes entry");
    assert_eq!(ancient["apiVersion"], "v1");
    // The oldest updater (the creator) went into it, with its fields.
    assert!(entry(&mf, "kubectl-create", "Update").is_none(), "{mf:#?}");
    assert!(
        ancient["fieldsV1"]["f:data"]["f:k"].is_object(),
        "{ancient}"
    );
    // Every label still has exactly one owner: its manager or the bucket.
    for i in 1..=11 {
        let label = format!("f:l{i:02}");
        let owners: Vec<&str> = updaters
            .iter()
            .filter(|e| {
                e["fieldsV1"]["f:metadata"]["f:labels"]
                    .get(&label)
                    .is_some()
            })
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(owners.len(), 1, "{label}: {owners:?}");
        assert!(
            owners[0] == format!("m{i:02}") || owners[0] == "ancient-changes",
            "{label}: {owners:?}"
        );
    }
    // The newest updaters keep their own entries.
    for i in 3..=11 {
        assert!(
            entry(&mf, &format!("m{i:02}"), "Update").is_some(),
            "m{i:02}: {mf:#?}"
        );
    }
    // A further updater keeps the count at ten.
    s.k(&["label", "configmap", "many", "l12=x", "--field-manager=m12"]);
    let mf = managed(&s, &["get", "configmap", "many"]);
    assert_eq!(
        mf.iter().filter(|e| e["operation"] == "Update").count(),
        10,
        "{mf:#?}"
    );
    assert!(entry(&mf, "m12", "Update").is_some());
}
