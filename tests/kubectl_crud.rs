//! Create, apply, get (every output format), describe, edit, label, annotate,
//! replace and delete with stock kubectl, across several kinds.

mod common;

use common::{Server, json, lines, squeeze};
use serde_json::Value;

/// Several kinds in one multi-document file, namespace first.
const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: crud
  labels: {team: a}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: crud
  labels: {app: web, tier: fe}
data:
  key: value1
  other: x
---
apiVersion: v1
kind: Secret
metadata: {name: sec, namespace: crud}
type: Opaque
stringData: {password: s3cr3t}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: crud
  labels: {app: web, role: lone}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example/web:1.0
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: crud}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: crud}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: "busybox:1.36", command: [sh, -c, "true"]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick, namespace: crud}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: "busybox:1.36"}]
---
apiVersion: v1
kind: Pod
metadata:
  name: p1
  namespace: crud
  labels: {app: web, role: lone}
spec:
  # No scheduler serves this name, so p1 stays Pending whatever else runs.
  schedulerName: nobody
  containers: [{name: c, image: busybox}]
"#;

fn with_manifest() -> Server {
    let s = Server::start();
    let out = s.k_in(MANIFEST, &["create", "-f", "-"]);
    assert_eq!(
        lines(&out),
        lines(
            "namespace/crud created\nconfigmap/cfg created\nsecret/sec created\ndeployment.apps/web created\n\
             service/web created\njob.batch/once created\ncronjob.batch/tick created\npod/p1 created"
        ),
        "kubectl create -f output"
    );
    s
}

/// The squeezed table rows of a `kubectl get` (header first).
fn table(s: &Server, args: &[&str]) -> Vec<String> {
    s.k(args).lines().map(squeeze).collect()
}

#[test]
fn create_from_file_then_get_each_kind() {
    let s = with_manifest();
    // Creating the same objects again is AlreadyExists, per object.
    let err = s.k_in_err(MANIFEST, &["create", "-f", "-"]);
    assert!(err.contains(r#"Error from server (AlreadyExists): error when creating "STDIN": namespaces "crud" already exists"#), "{err}");
    assert!(err.contains(r#"configmaps "cfg" already exists"#), "{err}");

    let cm = table(&s, &["get", "configmap", "cfg", "-n", "crud"]);
    assert_eq!(cm[0], "NAME DATA AGE");
    assert!(cm[1].starts_with("cfg 2 "), "{cm:?}");

    let sec = table(&s, &["get", "secret", "sec", "-n", "crud"]);
    assert_eq!(sec[0], "NAME TYPE DATA AGE");
    assert!(sec[1].starts_with("sec Opaque 1 "), "{sec:?}");

    let dep = table(&s, &["get", "deploy", "-n", "crud"]);
    assert_eq!(dep[0], "NAME READY UP-TO-DATE AVAILABLE AGE");
    // Nothing runs the pods here, so none is ready (controllers may have made them).
    assert!(dep[1].starts_with("web 0/2 "), "{dep:?}");

    let svc = table(&s, &["get", "svc", "web", "-n", "crud"]);
    assert_eq!(svc[0], "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE");
    let cols: Vec<&str> = svc[1].split(' ').collect();
    assert_eq!(
        (cols[0], cols[1], cols[3], cols[4]),
        ("web", "ClusterIP", "<none>", "80/TCP"),
        "{svc:?}"
    );
    assert!(
        cols[2].starts_with("10.43."),
        "cluster IP from 10.43.0.0/16: {svc:?}"
    );

    let po = table(&s, &["get", "pods", "-n", "crud"]);
    assert_eq!(po[0], "NAME READY STATUS RESTARTS AGE");
    let p1 = po
        .iter()
        .find(|r| r.starts_with("p1 "))
        .unwrap_or_else(|| panic!("no p1: {po:?}"));
    assert!(p1.starts_with("p1 0/1 Pending 0 "), "{po:?}");

    let cj = table(&s, &["get", "cronjobs", "-n", "crud"]);
    assert_eq!(
        cj[0],
        "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE"
    );
    assert!(
        cj[1].starts_with("tick */5 * * * * <none> False 0 <none> "),
        "{cj:?}"
    );

    let job = table(&s, &["get", "jobs", "-n", "crud"]);
    assert_eq!(job[0], "NAME STATUS COMPLETIONS DURATION AGE");
    assert!(job[1].starts_with("once "), "{job:?}");
    assert!(job[1].contains(" 0/1 "), "{job:?}");

    let ns = table(&s, &["get", "ns", "crud"]);
    assert!(ns[1].starts_with("crud Active "), "{ns:?}");

    // Several kinds at once, and `get all` (the "all" category).
    let both = lines(&s.k(&[
        "get",
        "po,svc",
        "-n",
        "crud",
        "-l",
        "role=lone",
        "-o",
        "name",
    ]));
    assert_eq!(both, lines("pod/p1"));
    let both = lines(&s.k(&["get", "pod/p1", "svc/web", "-n", "crud", "-o", "name"]));
    assert_eq!(both, lines("pod/p1\nservice/web"));
    let all = s.k(&["get", "all", "-n", "crud", "-o", "name"]);
    for want in [
        "pod/p1",
        "service/web",
        "deployment.apps/web",
        "job.batch/once",
        "cronjob.batch/tick",
    ] {
        assert!(
            all.lines().any(|l| l == want),
            "get all lacks {want}:\n{all}"
        );
    }
    assert!(
        !all.contains("configmap/"),
        "configmaps are not in category all:\n{all}"
    );
}

#[test]
fn get_output_formats() {
    let s = with_manifest();
    let obj = s.k_json(&["get", "cm", "cfg", "-n", "crud"]);
    assert_eq!(obj["kind"], "ConfigMap");
    assert_eq!(obj["apiVersion"], "v1");
    assert_eq!(obj["data"]["key"], "value1");
    let meta = &obj["metadata"];
    assert_eq!(meta["namespace"], "crud");
    assert!(
        meta["uid"].as_str().is_some_and(|u| u.len() == 36),
        "uid: {meta}"
    );
    assert!(
        meta["resourceVersion"]
            .as_str()
            .is_some_and(|rv| rv.parse::<u64>().is_ok()),
        "resourceVersion: {meta}"
    );
    assert!(
        meta["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "creationTimestamp: {meta}"
    );

    // YAML is the same object.
    let yaml = s.k(&["get", "cm", "cfg", "-n", "crud", "-o", "yaml"]);
    assert!(
        yaml.starts_with("apiVersion: v1\ndata:\n  key: value1\n"),
        "{yaml}"
    );
    let from_yaml: Value =
        serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("bad YAML ({e}):\n{yaml}"));
    assert_eq!(from_yaml, obj, "-o yaml and -o json disagree");

    assert_eq!(
        s.k(&[
            "get",
            "cm",
            "cfg",
            "-n",
            "crud",
            "-o",
            "jsonpath={.data.key}"
        ]),
        "value1"
    );
    let names = s.k(&[
        "get",
        "cm,secret",
        "-n",
        "crud",
        "-o",
        r#"jsonpath={range .items[*]}{.kind}/{.metadata.name}{"\n"}{end}"#,
    ]);
    let names: Vec<String> = lines(&names)
        .into_iter()
        .filter(|l| common::not_root_ca(l))
        .collect();
    assert_eq!(names, lines("ConfigMap/cfg\nSecret/sec"));
    assert_eq!(
        s.k(&["get", "cm", "cfg", "-n", "crud", "-o", "name"])
            .trim(),
        "configmap/cfg"
    );
    assert_eq!(
        s.k(&["get", "deploy", "web", "-n", "crud", "-o", "name"])
            .trim(),
        "deployment.apps/web"
    );
    let tmpl = s.k(&[
        "get",
        "cm",
        "cfg",
        "-n",
        "crud",
        "-o",
        "go-template={{.metadata.name}}:{{.data.other}}",
    ]);
    assert_eq!(tmpl, "cfg:x");
    let cc = s.k(&[
        "get",
        "cm",
        "-n",
        "crud",
        "-l",
        "app=web",
        "-o",
        "custom-columns=N:.metadata.name,K:.data.key",
    ]);
    assert_eq!(
        cc.lines().map(squeeze).collect::<Vec<_>>(),
        vec!["N K", "cfg value1"]
    );

    // -o wide adds the priority-1 columns.
    let po = table(&s, &["get", "pods", "-n", "crud", "-o", "wide"]);
    assert_eq!(
        po[0],
        "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES"
    );
    let p1 = po
        .iter()
        .find(|r| r.starts_with("p1 "))
        .unwrap_or_else(|| panic!("no p1: {po:?}"));
    assert!(
        p1.starts_with("p1 0/1 Pending 0 ") && p1.ends_with(" <none> <none> <none> <none>"),
        "{po:?}"
    );
    let dep = table(&s, &["get", "deploy", "-n", "crud", "-o", "wide"]);
    assert_eq!(
        dep[0],
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR"
    );
    assert!(
        dep[1].ends_with(" web registry.example/web:1.0 app=web"),
        "{dep:?}"
    );
    let svc = table(&s, &["get", "svc", "web", "-n", "crud", "-o", "wide"]);
    assert_eq!(
        svc[0],
        "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR"
    );
    assert!(svc[1].ends_with(" app=web"), "{svc:?}");

    // Label columns.
    let l = table(
        &s,
        &[
            "get", "cm", "cfg", "-n", "crud", "-L", "app", "-L", "missing",
        ],
    );
    assert_eq!(l[0], "NAME DATA AGE APP MISSING");
    assert!(
        l[1].starts_with("cfg 2 ") && l[1].ends_with(" web"),
        "{l:?}"
    );
    let sl = table(&s, &["get", "cm", "cfg", "-n", "crud", "--show-labels"]);
    assert_eq!(sl[0], "NAME DATA AGE LABELS");
    assert!(sl[1].ends_with(" app=web,tier=fe"), "{sl:?}");
    let nl = table(&s, &["get", "ns", "crud", "--show-labels"]);
    assert!(nl[1].contains("team=a"), "{nl:?}");
    assert!(
        nl[1].contains("kubernetes.io/metadata.name=crud"),
        "namespaces get their name label: {nl:?}"
    );

    // -A across namespaces.
    s.k(&[
        "create",
        "configmap",
        "elsewhere",
        "-n",
        "default",
        "--from-literal=a=b",
    ]);
    let all = table(&s, &["get", "cm", "-A"]);
    assert_eq!(all[0], "NAMESPACE NAME DATA AGE");
    assert!(all.iter().any(|r| r.starts_with("crud cfg 2 ")), "{all:?}");
    assert!(
        all.iter().any(|r| r.starts_with("default elsewhere 1 ")),
        "{all:?}"
    );
    let json_all = s.k_json(&["get", "cm", "-A"]);
    assert_eq!(json_all["kind"], "List");
    let ns_of: Vec<&str> = json_all["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["namespace"].as_str())
        .collect();
    assert!(
        ns_of.contains(&"crud") && ns_of.contains(&"default"),
        "{ns_of:?}"
    );

    // Not found.
    let err = s.k_err(&["get", "cm", "nope", "-n", "crud"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): configmaps "nope" not found"#
    );
    let o = s.kubectl(&["get", "deployments", "-n", "kube-public"]);
    assert!(o.status.success());
    assert_eq!(
        common::stderr(&o).trim(),
        "No resources found in kube-public namespace."
    );
}

#[test]
fn describe_shows_upstream_sections() {
    let s = with_manifest();
    let d: Vec<String> = s
        .k(&["describe", "configmap", "cfg", "-n", "crud"])
        .lines()
        .map(squeeze)
        .collect();
    for want in [
        "Name: cfg",
        "Namespace: crud",
        "Labels: app=web",
        "tier=fe",
        "Annotations: <none>",
        "Data",
        "key:",
        "value1",
        "Events: <none>",
    ] {
        assert!(
            d.iter().any(|l| l == want),
            "describe cm lacks {want:?}:\n{}",
            d.join("\n")
        );
    }
    let d: Vec<String> = s
        .k(&["describe", "deployment", "web", "-n", "crud"])
        .lines()
        .map(squeeze)
        .collect();
    assert!(
        d.iter().any(|l| l.starts_with("Replicas: 2 desired | ")
            && l.ends_with(" 0 available | 2 unavailable")
            || l == "Replicas: 2 desired | 0 updated | 0 total | 0 available | 0 unavailable"),
        "describe deployment lacks the Replicas line:\n{}",
        d.join("\n")
    );
    for want in [
        "Name: web",
        "Namespace: crud",
        "Selector: app=web",
        "StrategyType: RollingUpdate",
        "MinReadySeconds: 0",
        "RollingUpdateStrategy: 25% max unavailable, 25% max surge",
        "Image: registry.example/web:1.0",
        "Port: 8080/TCP",
    ] {
        assert!(
            d.iter().any(|l| l == want),
            "describe deployment lacks {want:?}:\n{}",
            d.join("\n")
        );
    }
    let d: Vec<String> = s
        .k(&["describe", "pod", "p1", "-n", "crud"])
        .lines()
        .map(squeeze)
        .collect();
    for want in [
        "Name: p1",
        "Namespace: crud",
        "Status: Pending",
        "Image: busybox",
        "QoS Class: BestEffort",
    ] {
        assert!(
            d.iter().any(|l| l == want),
            "describe pod lacks {want:?}:\n{}",
            d.join("\n")
        );
    }
    let d = s.k(&["describe", "svc", "web", "-n", "crud"]);
    assert!(
        d.lines().map(squeeze).any(|l| l == "Type: ClusterIP"),
        "{d}"
    );
    assert!(
        d.lines().map(squeeze).any(|l| l == "TargetPort: 8080/TCP"),
        "{d}"
    );
}

#[test]
fn apply_creates_then_is_idempotent_then_updates() {
    let s = Server::start();
    let v1 = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: applied, namespace: default, labels: {v: "1"}}
data: {a: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: default}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec: {containers: [{name: c, image: "nginx:1.27"}]}
"#;
    let out = s.k_in(v1, &["apply", "-f", "-"]);
    assert_eq!(
        lines(&out),
        lines("configmap/applied created\ndeployment.apps/app created")
    );
    let cm = s.k_json(&["get", "cm", "applied"]);
    let last = cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap_or_else(|| panic!("no last-applied annotation: {cm}"));
    assert_eq!(json(last)["data"]["a"], "1");

    let out = s.k_in(v1, &["apply", "-f", "-"]);
    assert_eq!(
        lines(&out),
        lines("configmap/applied unchanged\ndeployment.apps/app unchanged")
    );

    let v2 = v1
        .replace(r#"data: {a: "1"}"#, r#"data: {a: "2", b: "3"}"#)
        .replace("nginx:1.27", "nginx:1.28");
    let out = s.k_in(&v2, &["apply", "-f", "-"]);
    assert_eq!(
        lines(&out),
        lines("configmap/applied configured\ndeployment.apps/app configured")
    );
    let cm = s.k_json(&["get", "cm", "applied"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "2", "b": "3"}));
    let dep = s.k_json(&["get", "deploy", "app"]);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    assert_eq!(
        dep["metadata"]["generation"], 2,
        "a spec change bumps generation"
    );
}

#[test]
fn edit_with_editor_script() {
    let s = with_manifest();
    let script = s.root.join("editor.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\nsed -i 's/value1/edited-by-script/' \"$1\"\n",
    )
    .expect("write editor");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let editor = script.to_string_lossy().into_owned();
    let before = s.k_json(&["get", "cm", "cfg", "-n", "crud"]);
    let o = s.kubectl_env(
        &[("KUBE_EDITOR", &editor), ("EDITOR", &editor)],
        &["edit", "configmap", "cfg", "-n", "crud"],
    );
    assert!(
        o.status.success(),
        "kubectl edit failed:\n{}\n{}",
        common::stdout(&o),
        common::stderr(&o)
    );
    assert_eq!(common::stdout(&o).trim(), "configmap/cfg edited");
    let after = s.k_json(&["get", "cm", "cfg", "-n", "crud"]);
    assert_eq!(after["data"]["key"], "edited-by-script");
    assert_eq!(after["data"]["other"], "x", "untouched keys stay");
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_ne!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );

    // An editor that changes nothing: kubectl reports it and sends nothing.
    let noop = s.root.join("noop.sh");
    std::fs::write(&noop, "#!/bin/sh\ntrue\n").expect("write editor");
    std::fs::set_permissions(&noop, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let noop = noop.to_string_lossy().into_owned();
    let o = s.kubectl_env(
        &[("KUBE_EDITOR", &noop)],
        &["edit", "configmap", "cfg", "-n", "crud"],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("Edit cancelled, no changes made."),
        "{}",
        common::stderr(&o)
    );
    let again = s.k_json(&["get", "cm", "cfg", "-n", "crud"]);
    assert_eq!(
        again["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
}

#[test]
fn label_and_annotate() {
    let s = with_manifest();
    assert_eq!(
        s.k(&["label", "cm", "cfg", "-n", "crud", "color=blue"])
            .trim(),
        "configmap/cfg labeled"
    );
    assert_eq!(
        s.k(&[
            "get",
            "cm",
            "cfg",
            "-n",
            "crud",
            "-o",
            "jsonpath={.metadata.labels.color}"
        ]),
        "blue"
    );
    // Changing an existing label needs --overwrite, as upstream.
    let err = s.k_err(&["label", "cm", "cfg", "-n", "crud", "color=red"]);
    assert!(
        err.contains("'color' already has a value (blue), and --overwrite is false"),
        "{err}"
    );
    s.k(&[
        "label",
        "cm",
        "cfg",
        "-n",
        "crud",
        "color=red",
        "--overwrite",
    ]);
    assert_eq!(
        s.k(&[
            "get",
            "cm",
            "cfg",
            "-n",
            "crud",
            "-o",
            "jsonpath={.metadata.labels.color}"
        ]),
        "red"
    );
    assert_eq!(
        s.k(&["label", "cm", "cfg", "-n", "crud", "color-"]).trim(),
        "configmap/cfg unlabeled"
    );
    let labels = s.k_json(&["get", "cm", "cfg", "-n", "crud"])["metadata"]["labels"].clone();
    assert_eq!(labels, serde_json::json!({"app": "web", "tier": "fe"}));

    assert_eq!(
        s.k(&[
            "annotate",
            "deploy",
            "web",
            "-n",
            "crud",
            "note=hello world"
        ])
        .trim(),
        "deployment.apps/web annotated"
    );
    let dep = s.k_json(&["get", "deploy", "web", "-n", "crud"]);
    assert_eq!(dep["metadata"]["annotations"]["note"], "hello world");
    assert_eq!(
        dep["metadata"]["generation"], 1,
        "metadata changes do not bump generation"
    );
    s.k(&["annotate", "deploy", "web", "-n", "crud", "note-"]);
    let dep = s.k_json(&["get", "deploy", "web", "-n", "crud"]);
    assert!(
        dep["metadata"]["annotations"].get("note").is_none(),
        "{dep}"
    );

    // Label many objects at once by selector.
    let out = s.k(&[
        "label",
        "pods,deploy",
        "-n",
        "crud",
        "-l",
        "role=lone",
        "stage=canary",
    ]);
    assert_eq!(
        lines(&out),
        lines("pod/p1 labeled\ndeployment.apps/web labeled")
    );
}

#[test]
fn replace_uses_put_and_keeps_identity() {
    let s = with_manifest();
    let mut cm = s.k_json(&["get", "cm", "cfg", "-n", "crud"]);
    let uid = cm["metadata"]["uid"].clone();
    let created = cm["metadata"]["creationTimestamp"].clone();
    cm["data"]["key"] = "replaced".into();
    let out = s.k_in(&cm.to_string(), &["replace", "-f", "-"]);
    assert_eq!(out.trim(), "configmap/cfg replaced");
    let now = s.k_json(&["get", "cm", "cfg", "-n", "crud"]);
    assert_eq!(now["data"]["key"], "replaced");
    assert_eq!(now["metadata"]["uid"], uid, "uid is immutable");
    assert_eq!(
        now["metadata"]["creationTimestamp"], created,
        "creationTimestamp is kept"
    );
    let rv_old: u64 = cm["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("rv");
    let rv_new: u64 = now["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("rv");
    assert!(
        rv_new > rv_old,
        "resourceVersion must grow: {rv_old} -> {rv_new}"
    );
}

#[test]
fn delete_one_and_all() {
    let s = with_manifest();
    for i in 0..4 {
        s.k(&[
            "create",
            "cm",
            &format!("extra-{i}"),
            "-n",
            "crud",
            "--from-literal=i=x",
        ]);
    }
    let out = s.k(&["delete", "configmap", "cfg", "-n", "crud"]);
    assert!(
        out.trim().starts_with(r#"configmap "cfg" deleted"#),
        "{out}"
    );
    let err = s.k_err(&["get", "cm", "cfg", "-n", "crud"]);
    assert!(err.contains(r#"configmaps "cfg" not found"#), "{err}");
    let err = s.k_err(&["delete", "cm", "cfg", "-n", "crud"]);
    assert!(
        err.contains(r#"Error from server (NotFound): configmaps "cfg" not found"#),
        "{err}"
    );

    // A pod that was never scheduled is deleted at once (no kubelet to wait for).
    let out = s.k(&["delete", "pod", "p1", "-n", "crud", "--timeout=30s"]);
    assert!(out.contains(r#"pod "p1" deleted"#), "{out}");
    assert!(
        s.k_err(&["get", "pod", "p1", "-n", "crud"])
            .contains("not found")
    );

    let out = s.k(&["delete", "cm", "--all", "-n", "crud"]);
    let deleted: Vec<&str> = out.lines().filter(|l| common::not_root_ca(l)).collect();
    assert_eq!(deleted.len(), 4, "deleted one line per configmap:\n{out}");
    // Only the root-CA ConfigMap may come back (its publisher recreates it, as upstream).
    let left = lines(&s.k(&["get", "cm", "-n", "crud", "-o", "name"]));
    let left: Vec<&String> = left.iter().filter(|l| common::not_root_ca(l)).collect();
    assert!(
        left.is_empty(),
        "configmaps left after delete --all: {left:?}"
    );
    // Other namespaces are untouched.
    s.k(&["get", "svc", "kubernetes", "-n", "default"]);

    // Delete by file, and by label selector.
    let out = s.k(&["delete", "-l", "app=web", "deploy,svc", "-n", "crud"]);
    assert_eq!(
        out.lines().count(),
        1,
        "only the deployment carries app=web:\n{out}"
    );
    assert!(out.contains(r#"deployment.apps "web" deleted"#), "{out}");
    assert!(
        s.k(&["get", "svc", "web", "-n", "crud", "-o", "name"])
            .contains("service/web")
    );

    // deletecollection through the API (what `kubectl delete --all` does not use).
    let mut s = s;
    for i in 0..3 {
        s.k(&[
            "create",
            "secret",
            "generic",
            &format!("dc-{i}"),
            "-n",
            "crud",
            "--from-literal=a=b",
        ]);
    }
    let r = s.delete("/api/v1/namespaces/crud/secrets");
    assert_eq!(r.status, 200, "deletecollection: {}", r.snippet());
    let left = s.get_json("/api/v1/namespaces/crud/secrets");
    assert_eq!(left["items"].as_array().map(Vec::len), Some(0), "{left}");
}

#[test]
fn strict_field_validation() {
    let s = Server::start();
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: strict}
spec:
  containers: [{name: c, image: busybox, imagee: typo}]
"#;
    let err = s.k_in_err(pod, &["create", "-f", "-"]);
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.containers[0].imagee""#),
        "{err}"
    );
    assert!(err.contains("BadRequest"), "{err}");
    // --validate=false asks the server to ignore unknown fields.
    s.k_in(pod, &["create", "-f", "-", "--validate=false"]);
    let got = s.k_json(&["get", "pod", "strict"]);
    assert!(
        got["spec"]["containers"][0].get("imagee").is_none(),
        "unknown field was stored: {got}"
    );
    // --validate=warn: created, with a warning.
    let warn = pod.replace("name: strict", "name: warned");
    let o = s.kubectl_stdin(&warn, &["create", "-f", "-", "--validate=warn"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains(r#"Warning: unknown field "spec.containers[0].imagee""#),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn generate_name_and_missing_namespace() {
    let s = Server::start();
    let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: gen-}\ndata: {a: b}\n";
    let mut names = Vec::new();
    for _ in 0..3 {
        let out = s.k_in(doc, &["create", "-f", "-", "-o", "name"]);
        let name = out
            .trim()
            .strip_prefix("configmap/")
            .unwrap_or_else(|| panic!("{out}"))
            .to_string();
        assert!(
            name.len() == 9 && name.starts_with("gen-"),
            "generateName suffix is 5 chars: {name}"
        );
        assert!(
            name[4..]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{name}"
        );
        names.push(name);
    }
    names.dedup();
    assert_eq!(names.len(), 3, "generated names collide: {names:?}");
    let err = s.k_err(&["create", "configmap", "x", "-n", "no-such-ns"]);
    assert_eq!(
        err.trim(),
        r#"error: failed to create configmap: namespaces "no-such-ns" not found"#
    );
    let err = s.k_in_err(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-y, namespace: no-such-ns}\n",
        &["create", "-f", "-"],
    );
    assert!(err.contains(r#"Error from server (NotFound): error when creating "STDIN": namespaces "no-such-ns" not found"#), "{err}");
}
