//! PATCH through stock kubectl and raw HTTPS: JSON patch, merge patch and
//! strategic merge patch (merge keys per field, the `$patch`,
//! `$setElementOrder`, `$retainKeys` and `$deleteFromPrimitiveList`
//! directives), the kubectl verbs that write through patches, malformed
//! bodies, missing objects and dry runs. Expected results are upstream's
//! (k8s.io/apimachinery's strategicpatch and the apiserver's patch handler).

mod common;

use common::{Req, Server};
use serde_json::{Value, json};

const CM_PATH: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOY_PATH: &str = "/apis/apps/v1/namespaces/default/deployments";
const SMP: &str = "application/strategic-merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const MERGE: &str = "application/merge-patch+json";
/// Upstream's message for a JSON patch that does not apply (its detail is
/// not passed on).
const REJECTED: &str = "the server rejected our request due to an error in our request";

/// A Deployment with two containers, env, ports, volumes, tolerations,
/// image pull secrets and a finalizer: every kind of list the pod spec has.
const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: sm
  finalizers: [example.com/a]
spec:
  replicas: 1
  selector: {matchLabels: {app: sm}}
  template:
    metadata: {labels: {app: sm}}
    spec:
      imagePullSecrets: [{name: s1}]
      tolerations: [{key: t1, operator: Exists}]
      volumes:
      - {name: v1, emptyDir: {}}
      - {name: v2, configMap: {name: cm}}
      containers:
      - name: web
        image: nginx:1
        env: [{name: A, value: a}, {name: B, value: b}]
        ports: [{containerPort: 80}, {containerPort: 81}]
      - name: side
        image: busybox:1
"#;

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| match &i[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string()
}

fn patch(s: &mut Server, path: &str, content_type: &str, body: &str) -> common::Resp {
    s.request(Req::new("PATCH", path).body(content_type, body.as_bytes().to_vec()))
}

/// PATCH that must succeed; returns the object answered.
#[track_caller]
fn patch_ok(s: &mut Server, path: &str, content_type: &str, body: &str) -> Value {
    let r = patch(s, path, content_type, body);
    assert_eq!(r.status, 200, "PATCH {body}: {}", r.snippet());
    r.json()
}

/// The containers of the `sm` Deployment's template.
fn containers(d: &Value) -> &Value {
    &d["spec"]["template"]["spec"]["containers"]
}

fn container<'a>(d: &'a Value, name: &str) -> &'a Value {
    containers(d)
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name}: {d}"))
}

#[test]
fn json_patch_operations_and_failures() {
    let mut s = Server::start();
    s.k(&[
        "create",
        "configmap",
        "c",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ]);
    let out = s.k(&[
        "patch",
        "configmap",
        "c",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/c","value":"3"},
            {"op":"replace","path":"/data/a","value":"10"},
            {"op":"remove","path":"/data/b"},
            {"op":"copy","from":"/data/a","path":"/data/d"},
            {"op":"move","from":"/data/c","path":"/data/e"},
            {"op":"test","path":"/data/e","value":"3"},
            {"op":"add","path":"/metadata/labels","value":{"x":"y"}}]"#,
    ]);
    assert_eq!(out.trim(), "configmap/c patched");
    let cm = s.k_json(&["get", "configmap", "c"]);
    assert_eq!(cm["data"], json!({"a": "10", "d": "10", "e": "3"}));
    assert_eq!(cm["metadata"]["labels"], json!({"x": "y"}));

    // A failing `test` stops the whole patch: 422 with upstream's generic
    // message, which kubectl prints as an invalid request.
    let err = s.k_err(&[
        "patch",
        "configmap",
        "c",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/d"},{"op":"test","path":"/data/a","value":"nope"}]"#,
    ]);
    assert_eq!(err.trim(), format!("The request is invalid: {REJECTED}"));
    let after = s.k_json(&["get", "configmap", "c"]);
    assert_eq!(after["data"], cm["data"]);
    assert_eq!(rv(&after), rv(&cm));

    // Over HTTPS: the Status, for a failed test, the removal of a missing
    // path and an unknown operation; nothing is written.
    let path = format!("{CM_PATH}/c");
    for body in [
        r#"[{"op":"test","path":"/data/a","value":"nope"}]"#,
        r#"[{"op":"remove","path":"/data/missing"}]"#,
        r#"[{"op":"replace","path":"/data/missing","value":"x"}]"#,
        r#"[{"op":"frobnicate","path":"/data/a"}]"#,
    ] {
        let r = patch(&mut s, &path, JSON_PATCH, body);
        let st = r.assert_status(422, "Invalid");
        assert_eq!(st["message"], REJECTED, "{body}");
        assert_eq!(st["details"], json!({}), "{body}");
    }
    let after = s.k_json(&["get", "configmap", "c"]);
    assert_eq!(rv(&after), rv(&cm), "a failed patch wrote: {after}");
}

#[test]
fn merge_patch_nulls_and_whole_lists() {
    let s = Server::start();
    s.k(&[
        "create",
        "configmap",
        "m",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ]);
    s.k(&["label", "configmap", "m", "old=1"]);
    let out = s.k(&[
        "patch",
        "configmap",
        "m",
        "--type=merge",
        "-p",
        r#"{"data":{"a":null,"c":"3"},"metadata":{"labels":{"new":"x","old":null}}}"#,
    ]);
    assert_eq!(out.trim(), "configmap/m patched");
    let cm = s.k_json(&["get", "configmap", "m"]);
    assert_eq!(cm["data"], json!({"b": "2", "c": "3"}));
    assert_eq!(cm["metadata"]["labels"], json!({"new": "x"}));

    // A merge patch replaces lists whole: the new container list is the
    // only one, and finalizers are not merged as a set.
    s.k_in(DEPLOYMENT, &["apply", "-f", "-"]);
    s.k(&[
        "patch",
        "deployment",
        "sm",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/b"]},
            "spec":{"template":{"spec":{"containers":[{"name":"other","image":"busybox:2"}]}}}}"#,
    ]);
    let d = s.k_json(&["get", "deployment", "sm"]);
    assert_eq!(names(containers(&d), "name"), ["other"]);
    assert_eq!(container(&d, "other")["image"], "busybox:2");
    assert!(container(&d, "other")["env"].is_null(), "{d}");
    assert_eq!(d["metadata"]["finalizers"], json!(["example.com/b"]));
    // The template still has its volumes: only the patched list changed.
    assert_eq!(
        names(&d["spec"]["template"]["spec"]["volumes"], "name"),
        ["v1", "v2"]
    );
}

#[test]
fn strategic_merge_by_field_metadata() {
    let s = Server::start();
    s.k_in(DEPLOYMENT, &["apply", "-f", "-"]);
    // kubectl's default patch type is strategic.
    let out = s.k(&[
        "patch",
        "deployment",
        "sm",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/b"]},
            "spec":{"template":{"spec":{
              "imagePullSecrets":[{"name":"s2"}],
              "tolerations":[{"key":"t2","operator":"Exists"}],
              "volumes":[{"name":"v3","emptyDir":{}}],
              "containers":[{"name":"web","image":"nginx:2",
                "env":[{"name":"B","value":"bb"},{"name":"C","value":"c"}],
                "ports":[{"containerPort":81,"name":"alt"},{"containerPort":82}]}]}}}}"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/sm patched");
    let d = s.k_json(&["get", "deployment", "sm"]);
    let spec = &d["spec"]["template"]["spec"];
    // Containers merge by name: `side` is untouched, `web` is merged.
    assert_eq!(names(containers(&d), "name"), ["web", "side"]);
    let web = container(&d, "web");
    assert_eq!(web["image"], "nginx:2");
    assert_eq!(container(&d, "side")["image"], "busybox:1");
    // env merges by name, ports by containerPort; the server's items keep
    // their place before the patch's items they preceded.
    assert_eq!(
        web["env"],
        json!([{"name": "A", "value": "a"}, {"name": "B", "value": "bb"}, {"name": "C", "value": "c"}])
    );
    assert_eq!(names(&web["ports"], "containerPort"), ["80", "81", "82"]);
    assert_eq!(web["ports"][1]["name"], "alt");
    assert_eq!(web["ports"][2]["protocol"], "TCP", "defaulted: {web}");
    // Volumes and image pull secrets merge by name, new items first (as
    // upstream orders items the server does not have yet).
    assert_eq!(names(&spec["volumes"], "name"), ["v3", "v1", "v2"]);
    assert_eq!(names(&spec["imagePullSecrets"], "name"), ["s2", "s1"]);
    // Tolerations have no patch strategy: replaced.
    assert_eq!(
        spec["tolerations"],
        json!([{"key": "t2", "operator": "Exists"}])
    );
    // Finalizers merge as a set of strings.
    assert_eq!(
        d["metadata"]["finalizers"],
        json!(["example.com/b", "example.com/a"])
    );

    // A Service's ports merge by port.
    s.k(&[
        "create",
        "service",
        "clusterip",
        "svc",
        "--tcp=80:8080",
        "--tcp=81:8081",
    ]);
    s.k(&[
        "patch",
        "service",
        "svc",
        "-p",
        r#"{"spec":{"ports":[{"port":81,"targetPort":9091,"name":"b"}]}}"#,
    ]);
    let svc = s.k_json(&["get", "service", "svc"]);
    assert_eq!(names(&svc["spec"]["ports"], "port"), ["80", "81"]);
    assert_eq!(svc["spec"]["ports"][1]["targetPort"], 9091);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
}

#[test]
fn strategic_directives() {
    let mut s = Server::start();
    s.k_in(DEPLOYMENT, &["apply", "-f", "-"]);
    let dpath = format!("{DEPLOY_PATH}/sm");

    // $setElementOrder orders the merged list; with a list in the patch,
    // the list is merged first.
    let d = patch_ok(
        &mut s,
        &dpath,
        SMP,
        r#"{"spec":{"template":{"spec":{
            "$setElementOrder/containers":[{"name":"side"},{"name":"web"}],
            "containers":[{"name":"web",
              "$setElementOrder/env":[{"name":"C"},{"name":"A"},{"name":"B"}],
              "env":[{"name":"C","value":"c"}]}]}}}}"#,
    );
    assert_eq!(names(containers(&d), "name"), ["side", "web"]);
    assert_eq!(names(&container(&d, "web")["env"], "name"), ["C", "A", "B"]);

    // $patch: delete of a list item by its merge key.
    let d = patch_ok(
        &mut s,
        &dpath,
        SMP,
        r#"{"spec":{"template":{"spec":{"containers":[
            {"name":"web","env":[{"name":"A","$patch":"delete"}]},
            {"name":"side","$patch":"delete"}]}}}}"#,
    );
    assert_eq!(names(containers(&d), "name"), ["web"]);
    assert_eq!(names(&container(&d, "web")["env"], "name"), ["C", "B"]);

    // $patch: replace on a list: the patch's items are the list.
    let d = patch_ok(
        &mut s,
        &dpath,
        SMP,
        r#"{"spec":{"template":{"spec":{"volumes":[{"$patch":"replace"},{"name":"only","emptyDir":{}}]}}}}"#,
    );
    assert_eq!(
        names(&d["spec"]["template"]["spec"]["volumes"], "name"),
        ["only"]
    );

    // $patch: replace on a map.
    let d = patch_ok(
        &mut s,
        &dpath,
        SMP,
        r#"{"spec":{"template":{"metadata":{"labels":{"$patch":"replace","app":"sm","tier":"x"}}}}}"#,
    );
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"],
        json!({"app": "sm", "tier": "x"})
    );

    // $retainKeys: switching the strategy to Recreate drops rollingUpdate;
    // without it the defaulted rollingUpdate stays and the result is invalid.
    let before = s.k_json(&["get", "deployment", "sm"]);
    assert_eq!(before["spec"]["strategy"]["type"], "RollingUpdate");
    assert!(before["spec"]["strategy"]["rollingUpdate"].is_object());
    let r = patch(
        &mut s,
        &dpath,
        SMP,
        r#"{"spec":{"strategy":{"type":"Recreate"}}}"#,
    );
    let st = r.assert_status(422, "Invalid");
    assert!(
        st["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.strategy.rollingUpdate")),
        "{st}"
    );
    let d = patch_ok(
        &mut s,
        &dpath,
        SMP,
        r#"{"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}}"#,
    );
    assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    // Every field the patch sets must be listed.
    let r = patch(
        &mut s,
        &dpath,
        SMP,
        r#"{"spec":{"strategy":{"$retainKeys":["type"],"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}}}"#,
    );
    let st = r.assert_status(400, "BadRequest");
    assert_eq!(st["message"], "invalid patch format of retainKeys");

    // On a ConfigMap: $deleteFromPrimitiveList, $patch: delete of a map,
    // null deletes.
    s.k_in(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: d
  finalizers: [example.com/a, example.com/b, example.com/c]
  annotations: {x: "1", y: "2"}
data: {a: "1", b: "2"}
"#,
        &["apply", "-f", "-"],
    );
    let cpath = format!("{CM_PATH}/d");
    let cm = patch_ok(
        &mut s,
        &cpath,
        SMP,
        r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["example.com/b","example.com/zz"],
            "annotations":{"$patch":"delete"}},
           "data":{"a":null}}"#,
    );
    assert_eq!(
        cm["metadata"]["finalizers"],
        json!(["example.com/a", "example.com/c"])
    );
    assert!(cm["metadata"]["annotations"].is_null(), "{cm}");
    assert_eq!(cm["data"], json!({"b": "2"}));
    // A list the patch empties goes, as upstream omits empty lists.
    let cm = patch_ok(
        &mut s,
        &cpath,
        SMP,
        r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["example.com/a","example.com/c"]}}"#,
    );
    assert!(cm["metadata"].get("finalizers").is_none(), "{cm}");
}

#[test]
fn strategic_directive_errors_change_nothing() {
    let mut s = Server::start();
    s.k_in(DEPLOYMENT, &["apply", "-f", "-"]);
    s.k(&["create", "configmap", "e", "--from-literal=a=1"]);
    let cpath = format!("{CM_PATH}/e");
    let dpath = format!("{DEPLOY_PATH}/sm");
    let cm = s.k_json(&["get", "configmap", "e"]);

    let cases: &[(&str, &str, &str)] = &[
        // An unknown $patch value.
        (
            &cpath,
            r#"{"data":{"$patch":"bogus","a":"2"}}"#,
            "unknown patch type: bogus in map: map[$patch:bogus a:2]",
        ),
        // `merge` is no directive for a map either.
        (
            &cpath,
            r#"{"data":{"$patch":"merge"}}"#,
            "unknown patch type: merge in map: map[$patch:merge]",
        ),
        // ...nor for a list.
        (
            &dpath,
            r#"{"spec":{"template":{"spec":{"containers":[{"$patch":"merge"}]}}}}"#,
            "merging lists cannot yet be specified in the patch",
        ),
        // A list delete needs the merge key.
        (
            &dpath,
            r#"{"spec":{"template":{"spec":{"containers":[{"$patch":"delete","image":"x"}]}}}}"#,
            "map: map[$patch:delete image:x] does not contain declared merge key: name",
        ),
        // So does every item of a merged list.
        (
            &dpath,
            r#"{"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}"#,
            "map: map[image:x] does not contain declared merge key: name",
        ),
        // A $setElementOrder list must agree with the patch's order.
        (
            &dpath,
            r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"side"},{"name":"web"}],
                "containers":[{"name":"web","image":"a"},{"name":"side","image":"b"}]}}}}"#,
            "The order in patch list:\n[map[image:a name:web] map[image:b name:side]]\n doesn't match $setElementOrder list:\n[map[name:side] map[name:web]]\n",
        ),
        (
            &cpath,
            r#"{"data":{"$retainKeys":"a"}}"#,
            "invalid patch format of retainKeys",
        ),
    ];
    let d = s.k_json(&["get", "deployment", "sm"]);
    for (path, body, message) in cases {
        let r = patch(&mut s, path, SMP, body);
        let st = r.assert_status(400, "BadRequest");
        assert_eq!(st["message"], *message, "{body}");
    }
    let after = s.k_json(&["get", "configmap", "e"]);
    assert_eq!(rv(&after), rv(&cm), "a failed patch wrote: {after}");
    let after = s.k_json(&["get", "deployment", "sm"]);
    assert_eq!(after["spec"], d["spec"], "a failed patch wrote");
}

#[test]
fn kubectl_verbs_that_patch() {
    let s = Server::start();
    s.k_in(DEPLOYMENT, &["apply", "-f", "-"]);

    // set image for every container at once.
    let out = s.k(&["set", "image", "deployment/sm", "*=registry.local/all:2"]);
    assert!(out.contains("deployment.apps/sm image updated"), "{out}");
    let d = s.k_json(&["get", "deployment", "sm"]);
    assert_eq!(container(&d, "web")["image"], "registry.local/all:2");
    assert_eq!(container(&d, "side")["image"], "registry.local/all:2");

    // set env adds (to every container unless -c), then removes.
    s.k(&[
        "set",
        "env",
        "deployment/sm",
        "-c",
        "web",
        "X=1",
        "B=changed",
    ]);
    let d = s.k_json(&["get", "deployment", "sm"]);
    assert_eq!(
        container(&d, "web")["env"],
        json!([
            {"name": "A", "value": "a"},
            {"name": "B", "value": "changed"},
            {"name": "X", "value": "1"}
        ])
    );
    assert!(container(&d, "side")["env"].is_null(), "{d}");
    s.k(&["set", "env", "deployment/sm", "-c", "web", "A-", "X-"]);
    let d = s.k_json(&["get", "deployment", "sm"]);
    assert_eq!(
        container(&d, "web")["env"],
        json!([{"name": "B", "value": "changed"}])
    );
    let listed = s.k(&["set", "env", "deployment/sm", "--list", "-c", "web"]);
    assert!(listed.contains("B=changed"), "{listed}");

    // set resources on one container.
    s.k(&[
        "set",
        "resources",
        "deployment/sm",
        "-c=side",
        "--limits=cpu=200m,memory=512Mi",
        "--requests=cpu=100m",
    ]);
    let d = s.k_json(&["get", "deployment", "sm"]);
    assert_eq!(
        container(&d, "side")["resources"],
        json!({"limits": {"cpu": "200m", "memory": "512Mi"}, "requests": {"cpu": "100m"}})
    );
    assert!(
        container(&d, "web")["resources"]
            .as_object()
            .is_none_or(|r| r.is_empty()),
        "{d}"
    );

    // label / annotate: --overwrite is needed to change a value; `k-` removes.
    s.k(&["label", "deployment", "sm", "team=a"]);
    let err = s.k_err(&["label", "deployment", "sm", "team=b"]);
    assert!(
        err.contains("'team' already has a value (a), and --overwrite is false"),
        "{err}"
    );
    s.k(&["label", "deployment", "sm", "team=b", "--overwrite"]);
    let d = s.k_json(&["get", "deployment", "sm"]);
    assert_eq!(d["metadata"]["labels"]["team"], "b");
    s.k(&["label", "deployment", "sm", "team-"]);
    let d = s.k_json(&["get", "deployment", "sm"]);
    assert!(d["metadata"]["labels"]["team"].is_null(), "{d}");

    s.k(&["annotate", "deployment", "sm", "note=hello"]);
    let err = s.k_err(&["annotate", "deployment", "sm", "note=bye"]);
    assert!(
        err.contains(
            "--overwrite is false but found the following declared annotation(s): 'note' already has a value (hello)"
        ),
        "{err}"
    );
    s.k(&["annotate", "deployment", "sm", "note=bye", "--overwrite"]);
    let d = s.k_json(&["get", "deployment", "sm"]);
    assert_eq!(d["metadata"]["annotations"]["note"], "bye");
    s.k(&["annotate", "deployment", "sm", "note-"]);
    let d = s.k_json(&["get", "deployment", "sm"]);
    assert!(d["metadata"]["annotations"]["note"].is_null(), "{d}");
}

#[test]
fn malformed_bodies_missing_objects_and_dry_run() {
    let mut s = Server::start();
    s.k(&["create", "configmap", "c", "--from-literal=a=1"]);
    let cm = s.k_json(&["get", "configmap", "c"]);
    let path = format!("{CM_PATH}/c");

    let r = patch(&mut s, &path, JSON_PATCH, "not json");
    let st = r.assert_status(400, "BadRequest");
    assert!(
        st["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("error decoding patch: ")),
        "{st}"
    );
    let cases = [
        (
            JSON_PATCH,
            r#"{"op":"add","path":"/data/b","value":"2"}"#,
            "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp",
        ),
        (
            JSON_PATCH,
            r#"["add"]"#,
            "error decoding patch: json: cannot unmarshal string into Go value of type handlers.jsonPatchOp",
        ),
        (
            MERGE,
            r#"[{"data":{"a":"2"}}]"#,
            "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}",
        ),
        (
            SMP,
            r#"[{"data":{"a":"2"}}]"#,
            "json: cannot unmarshal array into Go value of type map[string]interface {}",
        ),
    ];
    for (ct, body, message) in cases {
        let r = patch(&mut s, &path, ct, body);
        let st = r.assert_status(400, "BadRequest");
        assert_eq!(st["message"], message, "{ct} {body}");
    }
    let after = s.k_json(&["get", "configmap", "c"]);
    assert_eq!(rv(&after), rv(&cm));

    // A missing object: 404, through kubectl and raw.
    let err = s.k_err(&["patch", "configmap", "nope", "-p", r#"{"data":{"a":"2"}}"#]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): configmaps "nope" not found"#
    );
    let r = patch(&mut s, &format!("{CM_PATH}/nope"), MERGE, "{}");
    let st = r.assert_status(404, "NotFound");
    assert_eq!(st["message"], r#"configmaps "nope" not found"#);
    assert_eq!(st["details"], json!({"name": "nope", "kind": "configmaps"}));

    // --dry-run=server answers the patched object and stores nothing.
    let out = s.k(&[
        "patch",
        "configmap",
        "c",
        "-p",
        r#"{"data":{"a":"dry"}}"#,
        "--dry-run=server",
    ]);
    // kubectl's patch overwrites its printer's "(server dry run)" suffix.
    assert_eq!(out.trim(), "configmap/c patched");
    let shown = s.k_json(&[
        "patch",
        "configmap",
        "c",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/b","value":"dry"}]"#,
        "--dry-run=server",
    ]);
    assert_eq!(shown["data"], json!({"a": "1", "b": "dry"}));
    let after = s.k_json(&["get", "configmap", "c"]);
    assert_eq!(after["data"], json!({"a": "1"}));
    assert_eq!(rv(&after), rv(&cm));
}

#[test]
fn unknown_fields_in_patched_objects() {
    let mut s = Server::start();
    s.k(&["create", "deployment", "x", "--image=nginx:1"]);
    // kubectl patch sends no fieldValidation: upstream's default, Warn, drops
    // unknown fields and says so.
    let o = s.kubectl(&[
        "patch",
        "deployment",
        "x",
        "-p",
        r#"{"spec":{"bogus":1,"$foo":2,"template":{"spec":{"containers":[{"name":"nginx","zz":1}]}}}}"#,
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(
        common::stdout(&o).trim(),
        "deployment.apps/x patched (no change)"
    );
    let err = common::stderr(&o);
    assert!(
        err.contains(r#"Warning: unknown field "spec.bogus""#),
        "{err}"
    );
    assert!(
        err.contains(r#"Warning: unknown field "spec.template.spec.containers[0].zz""#),
        "{err}"
    );
    let d = s.k_json(&["get", "deployment", "x"]);
    assert!(d["spec"]["bogus"].is_null(), "{d}");
    assert!(container(&d, "nginx")["zz"].is_null(), "{d}");

    // Strict: 422 naming the patch (a strategic patch shown as upstream's Go
    // map, a merge patch's result as JSON); nothing is written.
    let path = format!("{DEPLOY_PATH}/x?fieldValidation=Strict");
    let r = patch(&mut s, &path, SMP, r#"{"spec":{"bogus":1}}"#);
    let st = r.assert_status(422, "Invalid");
    assert_eq!(
        st["message"],
        r#" "" is invalid: patch: Invalid value: "map[spec:map[bogus:1]]": strict decoding error: unknown field "spec.bogus""#
    );
    assert_eq!(st["details"]["causes"][0]["field"], "patch");
    assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueInvalid");
    let r = patch(&mut s, &path, MERGE, r#"{"spec":{"bogus":1}}"#);
    let st = r.assert_status(422, "Invalid");
    let msg = st["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(r#" "" is invalid: patch: Invalid value: "{"#)
            && msg.ends_with(r#"": strict decoding error: unknown field "spec.bogus""#),
        "{msg}"
    );
    // Ignore: dropped without a word.
    let r = patch(
        &mut s,
        &format!("{DEPLOY_PATH}/x?fieldValidation=Ignore"),
        MERGE,
        r#"{"spec":{"bogus":1},"metadata":{"labels":{"k":"v"}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.snippet());
    assert!(r.header("warning").is_none(), "{}", r.headers);
    assert!(r.json()["spec"]["bogus"].is_null());
    assert_eq!(r.json()["metadata"]["labels"]["k"], "v");
}

#[test]
fn scale_subresource_patches() {
    let mut s = Server::start();
    s.k(&["create", "deployment", "x", "--image=nginx:1"]);
    let path = format!("{DEPLOY_PATH}/x/scale");
    // The deployment controller writes status meanwhile: a patch that does
    // not pin a resourceVersion is retried on the newer object, not a 409.
    for (ct, body, replicas) in [
        (SMP, r#"{"spec":{"replicas":3}}"#, 3),
        (MERGE, r#"{"spec":{"replicas":4}}"#, 4),
        (
            JSON_PATCH,
            r#"[{"op":"replace","path":"/spec/replicas","value":5}]"#,
            5,
        ),
    ] {
        let scale = patch_ok(&mut s, &path, ct, body);
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["spec"]["replicas"], replicas, "{ct}");
    }
    let r = patch(
        &mut s,
        &path,
        JSON_PATCH,
        r#"[{"op":"test","path":"/spec/replicas","value":1}]"#,
    );
    let st = r.assert_status(422, "Invalid");
    assert_eq!(st["message"], REJECTED);
    let r = patch(&mut s, &path, MERGE, "[]");
    let st = r.assert_status(400, "BadRequest");
    assert_eq!(
        st["message"],
        "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}"
    );
    let d = s.k_json(&["get", "deployment", "x"]);
    assert_eq!(d["spec"]["replicas"], 5);
}

/// Client-side `kubectl apply` sends a three-way strategic merge patch:
/// `$setElementOrder` lists, `$retainKeys` for a volume changing its source,
/// `$patch: delete` for an env var dropped from the manifest.
#[test]
fn client_side_apply_three_way_patch() {
    let s = Server::start();
    let first = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: ap}
spec:
  selector: {matchLabels: {app: ap}}
  template:
    metadata: {labels: {app: ap}}
    spec:
      volumes:
      - {name: v, configMap: {name: cm}}
      - {name: w, emptyDir: {}}
      containers:
      - name: a
        image: nginx:1
        env: [{name: EX, value: "1"}, {name: WHY, value: "2"}]
        volumeMounts: [{name: v, mountPath: /v}]
      - name: b
        image: busybox:1
"#;
    let second = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: ap}
spec:
  selector: {matchLabels: {app: ap}}
  template:
    metadata: {labels: {app: ap}}
    spec:
      volumes:
      - {name: w, emptyDir: {}}
      - {name: v, secret: {secretName: s}}
      containers:
      - name: b
        image: busybox:2
      - name: a
        image: nginx:1
        env: [{name: ZED, value: "3"}, {name: EX, value: "1"}]
        volumeMounts: [{name: v, mountPath: /v}]
"#;
    assert!(s.k_in(first, &["apply", "-f", "-"]).contains("created"));
    let out = s.k_in(second, &["apply", "-f", "-"]);
    assert_eq!(out.trim(), "deployment.apps/ap configured");
    let d = s.k_json(&["get", "deployment", "ap"]);
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(
        spec["volumes"],
        json!([
            {"name": "w", "emptyDir": {}},
            {"name": "v", "secret": {"secretName": "s", "defaultMode": 420}}
        ])
    );
    assert_eq!(names(containers(&d), "name"), ["b", "a"]);
    assert_eq!(container(&d, "b")["image"], "busybox:2");
    assert_eq!(
        container(&d, "a")["env"],
        json!([{"name": "ZED", "value": "3"}, {"name": "EX", "value": "1"}])
    );
}

/// A patch that names a resourceVersion is a precondition: stale, it is a
/// 409 and is not retried; current, it applies.
#[test]
fn resource_version_in_a_patch_is_a_precondition() {
    let mut s = Server::start();
    s.k(&["create", "configmap", "c", "--from-literal=a=1"]);
    let cm = s.k_json(&["get", "configmap", "c"]);
    let old = rv(&cm);
    s.k(&["label", "configmap", "c", "x=y"]);
    let path = format!("{CM_PATH}/c");
    let body = format!(r#"{{"metadata":{{"resourceVersion":"{old}"}},"data":{{"a":"2"}}}}"#);
    for ct in [MERGE, SMP] {
        let r = patch(&mut s, &path, ct, &body);
        let st = r.assert_status(409, "Conflict");
        assert_eq!(
            st["message"],
            r#"Operation cannot be fulfilled on configmaps "c": the object has been modified; please apply your changes to the latest version and try again"#
        );
    }
    let now = rv(&s.k_json(&["get", "configmap", "c"]));
    let body = format!(r#"{{"metadata":{{"resourceVersion":"{now}"}},"data":{{"a":"3"}}}}"#);
    let cm = patch_ok(&mut s, &path, SMP, &body);
    assert_eq!(cm["data"], json!({"a": "3"}));
    assert_ne!(rv(&cm), now);
}
