//! Label selectors (every operator), field selectors (generic and per kind),
//! --sort-by and pagination (--chunk-size, limit/continue).

mod common;

use common::{Server, lines};

/// ConfigMaps a..e with labels chosen so each operator selects a distinct set.
fn labelled() -> Server {
    let s = Server::start();
    s.k(&["create", "namespace", "sel"]);
    let objs = [
        ("a", "env: prod, tier: fe"),
        ("b", "env: dev, tier: be"),
        ("c", "env: prod"),
        ("d", "other: x"),
        ("e", "env: qa, tier: fe"),
    ];
    let mut doc = String::new();
    for (name, labels) in objs {
        doc.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: sel, labels: {{{labels}}}}}\ndata: {{n: {name}}}\n"
        ));
    }
    s.k_in(&doc, &["create", "-f", "-"]);
    s
}

fn names(s: &Server, args: &[&str]) -> Vec<String> {
    let mut a = vec!["get", "cm", "-n", "sel", "-o", "name"];
    a.extend_from_slice(args);
    lines(&s.k(&a))
        .into_iter()
        .filter(|l| common::not_root_ca(l))
        .map(|l| l.trim_start_matches("configmap/").to_string())
        .collect()
}

fn set(names: &str) -> Vec<String> {
    lines(&names.replace(' ', "\n"))
}

#[test]
fn label_selector_operators() {
    let s = labelled();
    let cases: &[(&str, &str)] = &[
        ("env=prod", "a c"),
        ("env==prod", "a c"),
        ("env!=prod", "b d e"), // objects without the label match !=
        ("env in (dev,qa)", "b e"),
        ("env notin (prod,dev)", "d e"),
        ("tier", "a b e"),
        ("!tier", "c d"),
        ("env=prod,tier", "a"),
        ("env=prod,!tier", "c"),
        ("env in (prod),tier notin (be)", "a c"), // notin matches a missing label
        ("env=nobody", ""),
    ];
    for (sel, want) in cases {
        assert_eq!(names(&s, &["-l", sel]), set(want), "selector {sel:?}");
    }
    // The same through the raw API, URL-encoded.
    let mut s = s;
    let list =
        s.get_json("/api/v1/namespaces/sel/configmaps?labelSelector=env%20notin%20(prod)%2Ctier");
    let got: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .filter(|n| common::not_root_ca(n))
        .collect();
    assert_eq!(got, vec!["b", "e"]);
    // Bad selectors are 400 BadRequest.
    for bad in ["env%20in%20(prod", "env%3D%3D%3Dx", "!%3Dx", "-bad-key%3Dx"] {
        let r = s.get(&format!(
            "/api/v1/namespaces/sel/configmaps?labelSelector={bad}"
        ));
        r.assert_status(400, "BadRequest");
    }
    let err = s.k_err(&["get", "cm", "-n", "sel", "-l", "env in (prod"]);
    assert!(
        err.contains("BadRequest") || err.contains("unable to parse requirement"),
        "{err}"
    );
}

#[test]
fn field_selectors() {
    let mut s = labelled();
    assert_eq!(
        names(&s, &["--field-selector", "metadata.name=c"]),
        set("c")
    );
    assert_eq!(
        names(&s, &["--field-selector", "metadata.name==c"]),
        set("c")
    );
    assert_eq!(
        names(&s, &["--field-selector", "metadata.name!=c"]),
        set("a b d e")
    );
    assert_eq!(
        names(&s, &["--field-selector", "metadata.namespace=sel"]),
        set("a b c d e")
    );
    assert_eq!(
        names(&s, &["--field-selector", "metadata.namespace=default"]),
        set("")
    );
    // Combined with a label selector.
    assert_eq!(
        names(
            &s,
            &["-l", "env=prod", "--field-selector", "metadata.name!=a"]
        ),
        set("c")
    );
    // Across namespaces.
    let all = lines(&s.k(&[
        "get",
        "ns",
        "--field-selector",
        "metadata.name=kube-system",
        "-o",
        "name",
    ]));
    assert_eq!(all, vec!["namespace/kube-system"]);

    // Unsupported field labels are rejected with upstream's message.
    let err = s.k_err(&["get", "cm", "-n", "sel", "--field-selector", "spec.foo=bar"]);
    assert!(err.contains("field label not supported: spec.foo"), "{err}");
    let r = s.get("/api/v1/namespaces/sel/configmaps?fieldSelector=spec.foo%3Dbar");
    let st = r.assert_status(400, "BadRequest");
    assert!(
        st["message"]
            .as_str()
            .unwrap_or("")
            .contains("field label not supported: spec.foo"),
        "{st}"
    );
    let r = s.get("/api/v1/namespaces/sel/configmaps?fieldSelector=metadata.name");
    r.assert_status(400, "BadRequest");
}

#[test]
fn pod_and_secret_field_selectors() {
    let s = Server::start();
    let doc = r#"
apiVersion: v1
kind: Pod
metadata: {name: never, namespace: default}
spec:
  restartPolicy: Never
  schedulerName: nobody # stays Pending whatever else runs
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: always, namespace: default}
spec:
  schedulerName: nobody
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: pinned, namespace: default}
spec:
  nodeName: node-a
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Secret
metadata: {name: opaque}
stringData: {a: b}
---
apiVersion: v1
kind: Secret
metadata: {name: tls}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
---
apiVersion: v1
kind: Secret
metadata: {name: custom}
type: example.com/custom
data: {x: eQ==}
"#;
    s.k_in(doc, &["create", "-f", "-"]);
    let get = |kind: &str, fs: &str| -> Vec<String> {
        lines(&s.k(&["get", kind, "--field-selector", fs, "-o", "name"]))
    };
    // No kubelet: every pod stays Pending.
    assert_eq!(
        get("pods", "status.phase=Pending"),
        lines("pod/always\npod/never\npod/pinned")
    );
    assert_eq!(get("pods", "status.phase=Running"), Vec::<String>::new());
    assert_eq!(
        get("pods", "status.phase!=Running"),
        lines("pod/always\npod/never\npod/pinned")
    );
    assert_eq!(get("pods", "spec.restartPolicy=Never"), lines("pod/never"));
    assert_eq!(
        get("pods", "spec.restartPolicy=Always"),
        lines("pod/always\npod/pinned")
    );
    assert_eq!(get("pods", "spec.nodeName=node-a"), lines("pod/pinned"));
    assert_eq!(
        get("pods", "spec.nodeName="),
        lines("pod/always\npod/never")
    );
    assert_eq!(
        get("pods", "spec.nodeName!=,status.phase=Pending"),
        lines("pod/pinned")
    );

    assert_eq!(get("secrets", "type=Opaque"), lines("secret/opaque"));
    assert_eq!(
        get("secrets", "type=kubernetes.io/tls"),
        lines("secret/tls")
    );
    assert_eq!(
        get("secrets", "type!=Opaque"),
        lines("secret/custom\nsecret/tls")
    );

    // Fields of one kind are not selectable on another.
    let err = s.k_err(&["get", "cm", "--field-selector", "status.phase=Pending"]);
    assert!(
        err.contains("field label not supported: status.phase"),
        "{err}"
    );
}

#[test]
fn event_field_selectors_for_describe() {
    let s = Server::start();
    s.k(&["create", "configmap", "target", "--from-literal=a=b"]);
    let uid = s.k(&["get", "cm", "target", "-o", "jsonpath={.metadata.uid}"]);
    let ev = format!(
        r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"target.1","namespace":"default"}},
           "involvedObject":{{"kind":"ConfigMap","name":"target","namespace":"default","uid":"{uid}","apiVersion":"v1"}},
           "reason":"Tested","message":"made by the test","type":"Normal","count":1,
           "source":{{"component":"tests"}},"firstTimestamp":"2025-01-01T00:00:00Z","lastTimestamp":"2025-01-01T00:00:00Z"}}"#
    );
    s.k_in(&ev, &["create", "-f", "-"]);
    let other = ev
        .replace("target.1", "other.1")
        .replace(r#""name":"target""#, r#""name":"other""#)
        .replace(uid.as_str(), "00000000-0000-0000-0000-000000000001");
    s.k_in(&other, &["create", "-f", "-"]);
    let got = lines(&s.k(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=target",
        "-o",
        "name",
    ]));
    assert_eq!(got, vec!["event/target.1"]);
    let got = lines(&s.k(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.uid={uid}"),
        "-o",
        "name",
    ]));
    assert_eq!(got, vec!["event/target.1"]);
    let got = lines(&s.k(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=ConfigMap,reason=Tested",
        "-o",
        "name",
    ]));
    assert_eq!(got, lines("event/other.1\nevent/target.1"));
    // describe finds the event through those selectors.
    let d = s.k(&["describe", "cm", "target"]);
    assert!(
        d.contains("made by the test"),
        "describe does not show the event:\n{d}"
    );
    assert!(!d.contains("other.1"), "{d}");
}

#[test]
fn sort_by() {
    let s = Server::start();
    for (name, rank) in [("z1", "1"), ("a1", "3"), ("m1", "2")] {
        s.k(&[
            "create",
            "configmap",
            name,
            &format!("--from-literal=rank={rank}"),
        ]);
    }
    let out = s.k(&["get", "cm", "--sort-by=.data.rank", "-o", "name"]);
    assert_eq!(
        out.lines()
            .filter(|l| common::not_root_ca(l))
            .collect::<Vec<_>>(),
        vec!["configmap/z1", "configmap/m1", "configmap/a1"]
    );
    let out = s.k(&["get", "cm", "--sort-by=.metadata.name", "-o", "name"]);
    assert_eq!(
        out.lines()
            .filter(|l| common::not_root_ca(l))
            .collect::<Vec<_>>(),
        vec!["configmap/a1", "configmap/m1", "configmap/z1"]
    );
    // Table output sorts the same way (kubectl sorts the server's Table rows).
    let rows: Vec<String> = s
        .k(&["get", "cm", "--sort-by=.data.rank", "--no-headers"])
        .lines()
        .filter(|l| common::not_root_ca(l))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(rows, vec!["z1", "m1", "a1"]);
    // Creation order via resourceVersion.
    let out = s.k(&[
        "get",
        "cm",
        "--sort-by=.metadata.resourceVersion",
        "-o",
        "name",
    ]);
    assert_eq!(
        out.lines()
            .filter(|l| common::not_root_ca(l))
            .collect::<Vec<_>>(),
        vec!["configmap/z1", "configmap/a1", "configmap/m1"]
    );
}

#[test]
fn chunked_lists_return_everything() {
    let mut s = Server::start();
    s.k(&["create", "namespace", "pages"]);
    let mut doc = String::new();
    for i in 0..23 {
        doc.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:02}, namespace: pages}}\n"));
    }
    s.k_in(&doc, &["create", "-f", "-"]);
    let want: Vec<String> = (0..23).map(|i| format!("configmap/cm-{i:02}")).collect();

    // kubectl pages with limit/continue; -v=6 shows the requests it made.
    let o = s.kubectl(&[
        "get",
        "cm",
        "-n",
        "pages",
        "--chunk-size=1",
        "-o",
        "name",
        "-v=6",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let got: Vec<String> = lines(&common::stdout(&o))
        .into_iter()
        .filter(|l| common::not_root_ca(l))
        .collect();
    assert_eq!(got, want);
    let log = common::stderr(&o);
    let pages = log
        .lines()
        .filter(|l| l.contains("/namespaces/pages/configmaps?") && l.contains("limit=1"))
        .count();
    assert!(
        pages >= 23,
        "kubectl made {pages} paged requests, expected one per item:\n{log}"
    );
    assert!(log.contains("continue="), "no continue token used:\n{log}");
    // Table output with chunks too.
    let rows = s.k(&["get", "cm", "-n", "pages", "--chunk-size=5", "--no-headers"]);
    assert_eq!(rows.lines().filter(|l| common::not_root_ca(l)).count(), 23);

    // The raw protocol: limit, continue, remainingItemCount, one resourceVersion.
    let mut seen = Vec::new();
    let mut cont = String::new();
    let mut list_rv = None;
    let mut total: Option<Vec<String>> = None;
    for page in 0.. {
        assert!(page < 10, "pagination does not terminate");
        let path = if cont.is_empty() {
            "/api/v1/namespaces/pages/configmaps?limit=10".to_string()
        } else {
            format!("/api/v1/namespaces/pages/configmaps?limit=10&continue={cont}")
        };
        let l = s.get_json(&path);
        let items = l["items"].as_array().expect("items").clone();
        assert!(items.len() <= 10);
        seen.extend(
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(String::from)),
        );
        let rv = l["metadata"]["resourceVersion"].clone();
        if let Some(first) = &list_rv {
            assert_eq!(
                &rv, first,
                "all pages are read at the first page's resourceVersion"
            );
        }
        // The whole list at this page's resourceVersion: what paging must yield.
        if total.is_none() {
            let rv = rv.as_str().expect("list resourceVersion");
            let exact = s.get_json(&format!(
                "/api/v1/namespaces/pages/configmaps?resourceVersion={rv}&resourceVersionMatch=Exact"
            ));
            total = Some(
                exact["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .filter_map(|i| i["metadata"]["name"].as_str().map(String::from))
                    .collect::<Vec<_>>(),
            );
        }
        list_rv = Some(rv);
        cont = l["metadata"]["continue"].as_str().unwrap_or("").to_string();
        let remaining = l["metadata"]["remainingItemCount"].as_u64();
        if cont.is_empty() {
            assert_eq!(remaining, None, "no remainingItemCount on the last page");
            break;
        }
        let all = total.as_ref().map_or(0, Vec::len);
        assert_eq!(
            remaining,
            Some((all - seen.len()) as u64),
            "remainingItemCount on page {page}"
        );
        // A write between pages must not show up in later pages (snapshot).
        if page == 0 {
            s.k(&["create", "configmap", "cm-99-late", "-n", "pages"]);
        }
    }
    assert_eq!(
        Some(&seen),
        total.as_ref(),
        "pages are in key order and complete"
    );
    let ours: Vec<&String> = seen.iter().filter(|n| common::not_root_ca(n)).collect();
    let want_names: Vec<String> = (0..23).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(
        ours,
        want_names.iter().collect::<Vec<_>>(),
        "every object, once"
    );
    // A garbage continue token is 400.
    s.get("/api/v1/namespaces/pages/configmaps?limit=5&continue=bm90LWEtdG9rZW4")
        .assert_status(400, "BadRequest");
}

#[test]
fn list_resource_version_semantics() {
    let mut s = Server::start();
    s.k(&["create", "configmap", "one"]);
    let l1 = s.get_json("/api/v1/namespaces/default/configmaps");
    let rv1 = l1["metadata"]["resourceVersion"]
        .as_str()
        .expect("list rv")
        .to_string();
    s.k(&["create", "configmap", "two"]);
    // resourceVersion=0: any version is fine (served from cache), never older than... anything; must include one.
    let l0 = s.get_json("/api/v1/namespaces/default/configmaps?resourceVersion=0");
    assert!(
        l0["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["metadata"]["name"] == "one")
    );
    // Exact: the state as it was at rv1.
    let exact = s.get_json(&format!(
        "/api/v1/namespaces/default/configmaps?resourceVersion={rv1}&resourceVersionMatch=Exact"
    ));
    let names: Vec<&str> = exact["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .filter(|n| common::not_root_ca(n))
        .collect();
    assert_eq!(names, vec!["one"], "Exact read at {rv1}");
    assert_eq!(exact["metadata"]["resourceVersion"], rv1.as_str());
    // NotOlderThan: at least rv1, so "two" is there.
    let not_older = s.get_json(&format!("/api/v1/namespaces/default/configmaps?resourceVersion={rv1}&resourceVersionMatch=NotOlderThan"));
    let names: Vec<&str> = not_older["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .filter(|n| common::not_root_ca(n))
        .collect();
    assert_eq!(names, vec!["one", "two"]);
    // resourceVersionMatch without resourceVersion is invalid.
    s.get("/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact")
        .assert_status(422, "Invalid");
    // Non-numeric resourceVersion is 400.
    s.get("/api/v1/namespaces/default/configmaps?resourceVersion=abc")
        .assert_status(400, "BadRequest");
    s.get("/api/v1/namespaces/default/configmaps/one?resourceVersion=abc")
        .assert_status(400, "BadRequest");
}
