use super::*;

fn catalogue() -> Catalogue {
    Catalogue::new(crate::registry::catalogue::builtin())
}

fn patch_params(op: &Value) -> Vec<&str> {
    op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

#[test]
fn v3_core_document_has_pod_with_gvk_and_field_validation_on_patch() {
    let doc = v3_document(&catalogue(), "api/v1").unwrap();
    assert_eq!(doc["openapi"], "3.0.0");
    let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "", "kind": "Pod", "version": "v1"})
    );
    assert_eq!(patch["x-kubernetes-action"], "patch");
    for p in ["fieldValidation", "dryRun", "fieldManager", "force"] {
        assert!(patch_params(patch).contains(&p), "{p}");
    }
    assert!(patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object());
    // explain looks up the kind through these paths' operations.
    assert_eq!(
        doc["paths"]["/api/v1/pods"]["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Pod"
    );
    assert_eq!(
        doc["paths"]["/api/v1/nodes/{name}"]["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Node"
    );
    // Only this group-version's kinds.
    assert!(
        doc["components"]["schemas"]
            .get("io.k8s.api.apps.v1.Deployment")
            .is_none()
    );
}

/// kubectl's verifier takes the first PATCH operation carrying the kind's GVK
/// (in map order) and requires fieldValidation there: every one must have it.
#[test]
fn every_patch_operation_declares_field_validation() {
    let c = catalogue();
    for (group, versions) in c.groups() {
        for version in versions {
            let doc = v3_document(&c, &gv_path(&group, &version)).unwrap();
            let mut kinds_with_patch = Vec::new();
            for (path, item) in doc["paths"].as_object().unwrap() {
                if let Some(op) = item.get("patch") {
                    assert!(patch_params(op).contains(&"fieldValidation"), "{path}");
                    kinds_with_patch.push(
                        op["x-kubernetes-group-version-kind"]["kind"]
                            .as_str()
                            .unwrap()
                            .to_string(),
                    );
                }
            }
            for d in c.resources(&group, &version) {
                assert!(
                    kinds_with_patch.contains(&d.kind),
                    "{} {}",
                    d.api_version(),
                    d.kind
                );
                // explain and apply find the schema by the GVK extension.
                let found = doc["components"]["schemas"].as_object().unwrap().values().any(|s| {
                    s["x-kubernetes-group-version-kind"]
                        .as_array()
                        .is_some_and(|l| l.contains(&json!({"group": d.group, "kind": d.kind, "version": d.version})))
                });
                assert!(found, "{} {}", d.api_version(), d.kind);
            }
        }
    }
}

#[test]
fn v3_index_points_at_hashed_documents() {
    let c = catalogue();
    let idx = v3_index(&c);
    let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    assert!(idx["paths"]["api/v1"].is_object());
    assert_eq!(
        idx["paths"].as_object().unwrap().len(),
        c.groups().iter().map(|(_, v)| v.len()).sum::<usize>()
    );
    assert!(v3_document(&c, "apis/nope/v1").is_none());
    assert!(v3_document(&c, "apis/apps").is_none());
}

#[test]
fn patch_metadata_is_published() {
    let doc = v3_document(&catalogue(), "apis/apps/v1").unwrap();
    let s = &doc["components"]["schemas"];
    let containers = &s["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    let env = &s["io.k8s.api.core.v1.Container"]["properties"]["env"];
    assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
    let owners =
        &s["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["ownerReferences"];
    assert_eq!(owners["x-kubernetes-patch-merge-key"], "uid");
    let conditions = &s["io.k8s.api.apps.v1.DeploymentStatus"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    assert_eq!(
        s["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"][0]["kind"],
        "DeploymentList"
    );
    assert_eq!(
        s[definitions::QUANTITY]["oneOf"],
        json!([{"type": "string"}, {"type": "number"}])
    );
}

#[test]
fn custom_resources_do_not_offer_strategic_merge_patch() {
    let c = catalogue();
    let mut d = (*c.resources("", "v1")[0]).clone();
    d.group = "stable.example.com".into();
    d.kind = "CronTab".into();
    d.plural = "crontabs".into();
    d.subresources = vec!["status".into()];
    c.add(d);
    let doc = v3_document(&c, "apis/stable.example.com/v1").unwrap();
    let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
        ["patch"];
    assert!(patch_params(patch).contains(&"fieldValidation"));
    let content = patch["requestBody"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/merge-patch+json"));
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    assert!(doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/status"]["patch"].is_object());
    assert!(v3_index(&c)["paths"]["apis/stable.example.com/v1"].is_object());
}

/// The rules kubectl's v2 parser (kube-openapi util/proto) enforces; one
/// violation and `OpenAPISchema()` fails for every kind.
fn check_v2_schema(s: &Value, defs: &Map<String, Value>, at: &str) {
    let o = s
        .as_object()
        .unwrap_or_else(|| panic!("{at}: schema is not an object"));
    for k in ["oneOf", "anyOf", "nullable"] {
        assert!(!o.contains_key(k), "{at}: {k} is not Swagger 2.0");
    }
    if let Some(r) = o.get("$ref") {
        let name = r
            .as_str()
            .unwrap()
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("{at}: ref {r}"));
        assert!(defs.contains_key(name), "{at}: dangling ref {name}");
        assert!(
            !o.contains_key("type") && !o.contains_key("properties"),
            "{at}: ref with type/properties"
        );
        return;
    }
    match o.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let items = o
                .get("items")
                .filter(|i| i.is_object())
                .unwrap_or_else(|| panic!("{at}: array without one items schema"));
            check_v2_schema(items, defs, &format!("{at}[]"));
        }
        Some(Value::String(t)) if t == "object" => {}
        Some(Value::String(t)) => assert!(
            ["string", "number", "integer", "boolean"].contains(&t.as_str()),
            "{at}: type {t}"
        ),
        Some(t) => panic!("{at}: type {t}"),
        None => {}
    }
    if let Some(Value::Object(props)) = o.get("properties") {
        for (k, p) in props {
            check_v2_schema(p, defs, &format!("{at}.{k}"));
        }
    }
    if let Some(ap @ Value::Object(_)) = o.get("additionalProperties") {
        check_v2_schema(ap, defs, &format!("{at}{{}}"));
    }
}

#[test]
fn v2_document_parses_under_kubectl_rules() {
    let c = catalogue();
    let doc = v2(&c);
    assert_eq!(doc["swagger"], "2.0");
    let defs = doc["definitions"].as_object().unwrap();
    for (name, s) in defs {
        check_v2_schema(s, defs, name);
    }
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    assert!(patch_params(patch).contains(&"fieldValidation"));
    assert!(
        patch["consumes"]
            .as_array()
            .unwrap()
            .contains(&json!("application/strategic-merge-patch+json"))
    );
    assert_eq!(defs[definitions::INT_OR_STRING]["format"], "int-or-string");
    assert_eq!(
        defs["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"][0]["kind"],
        "Pod"
    );
    // k8s-openapi's required `metadata` is dropped; other required fields stay.
    assert_eq!(
        defs["io.k8s.api.rbac.v1.RoleBinding"]["required"],
        json!(["roleRef"])
    );
}

/// A minimal protobuf reader, enough to check the encoding's structure.
fn fields(mut b: &[u8]) -> Vec<(u64, Result<Vec<u8>, u64>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        match key & 7 {
            0 => out.push((key >> 3, Err(varint(&mut b)))),
            1 => {
                out.push((key >> 3, Ok(b[..8].to_vec())));
                b = &b[8..];
            }
            2 => {
                let n = varint(&mut b) as usize;
                out.push((key >> 3, Ok(b[..n].to_vec())));
                b = &b[n..];
            }
            w => panic!("wire type {w}"),
        }
    }
    out
}

fn field(b: &[u8], n: u64) -> Vec<Vec<u8>> {
    fields(b)
        .into_iter()
        .filter(|(f, _)| *f == n)
        .filter_map(|(_, v)| v.ok())
        .collect()
}

#[test]
fn v2_protobuf_carries_paths_definitions_and_extensions() {
    let doc = v2(&catalogue());
    let pb = proto::encode_document(&doc);
    assert_eq!(field(&pb, 1), vec![b"2.0".to_vec()]);
    // Document.definitions(9).additional_properties(1) -> NamedSchema{name 1, value 2}
    let defs = &field(&pb, 9)[0];
    let pod = field(defs, 1)
        .into_iter()
        .find(|ns| field(ns, 1)[0] == b"io.k8s.api.core.v1.Pod")
        .unwrap();
    let pod_schema = &field(&pod, 2)[0];
    // Schema.vendor_extension(31) -> NamedAny{name 1, value Any{yaml 2}}
    let ext = field(pod_schema, 31)
        .into_iter()
        .find(|e| field(e, 1)[0] == b"x-kubernetes-group-version-kind")
        .unwrap();
    let yaml = String::from_utf8(field(&field(&ext, 2)[0], 2)[0].clone()).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&yaml).unwrap(),
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    // Schema.type(22) -> TypeItem{value 1}
    assert_eq!(
        field(&field(pod_schema, 22)[0], 1),
        vec![b"object".to_vec()]
    );
    // Document.paths(8).path(2) -> NamedPathItem; PathItem.patch(8).parameters(8)
    let paths = &field(&pb, 8)[0];
    let item = field(paths, 2)
        .into_iter()
        .find(|p| field(p, 1)[0] == b"/api/v1/namespaces/{namespace}/pods/{name}")
        .unwrap();
    let patch = &field(&field(&item, 2)[0], 8)[0];
    let names: Vec<Vec<u8>> = field(patch, 8)
        .iter()
        .flat_map(|pi| field(pi, 1)) // ParametersItem.parameter
        .flat_map(|p| field(&p, 2)) // Parameter.non_body_parameter
        .flat_map(|nb| field(&nb, 3)) // NonBodyParameter.query_parameter_sub_schema
        .flat_map(|q| field(&q, 4)) // QueryParameterSubSchema.name
        .collect();
    assert!(names.contains(&b"fieldValidation".to_vec()), "{names:?}");
}

fn get(
    api: &OpenApi,
    c: &Catalogue,
    path: &str,
    query: Option<&str>,
    accept: &str,
    inm: Option<&str>,
) -> Response {
    let mut h = HeaderMap::new();
    if !accept.is_empty() {
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
    }
    if let Some(t) = inm {
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(t).unwrap());
    }
    api.respond(c, path, query, &h)
}

#[test]
fn served_documents_negotiate_and_cache() {
    let c = catalogue();
    let api = OpenApi::new();
    let r = get(&api, &c, "/openapi/v2", None, V2_PROTOBUF, None);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], V2_PROTOBUF_ALT);
    let r = get(&api, &c, "/openapi/v2", None, "application/json", None);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
    assert_eq!(
        get(&api, &c, "/openapi/v2", None, "", Some(&etag)).status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get(&api, &c, "/openapi/v2", None, "text/html", None).status(),
        StatusCode::NOT_ACCEPTABLE
    );
    // client-go's order of preference when it also takes JSON.
    let r = get(
        &api,
        &c,
        "/openapi/v2",
        None,
        "application/json;q=0.9, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        None,
    );
    assert_eq!(r.headers()[header::CONTENT_TYPE], V2_PROTOBUF_ALT);

    let idx = api.v3_index(&c);
    let idx: Value = serde_json::from_slice(&idx.body).unwrap();
    let url = idx["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    let (path, query) = url.split_once('?').unwrap();
    let r = get(&api, &c, path, Some(query), "application/json", None);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "public, immutable");
    assert!(r.headers().contains_key(header::EXPIRES));
    let r = get(&api, &c, path, Some("hash=stale"), "application/json", None);
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers()[header::LOCATION], url);
    assert_eq!(
        get(&api, &c, "/openapi/v3/apis/nope/v1", None, "", None).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&api, &c, "/openapi/v3", None, "", None).status(),
        StatusCode::OK
    );

    // A new resource changes the index on the next request.
    let mut d = (*c.resources("", "v1")[0]).clone();
    d.group = "stable.example.com".into();
    d.kind = "CronTab".into();
    d.plural = "crontabs".into();
    c.add(d);
    let idx: Value = serde_json::from_slice(&api.v3_index(&c).body).unwrap();
    assert!(idx["paths"]["apis/stable.example.com/v1"].is_object());
    assert!(api.v3_document(&c, "apis/stable.example.com/v1").is_some());
}

#[test]
fn accept_negotiation_follows_q_values() {
    let offered = [("application", "json"), ("application", "x+protobuf")];
    assert_eq!(negotiate("", &offered), Some(0));
    assert_eq!(negotiate("*/*", &offered), Some(0));
    assert_eq!(negotiate("application/x+protobuf", &offered), Some(1));
    assert_eq!(
        negotiate("application/json;q=0.5,application/x+protobuf", &offered),
        Some(1)
    );
    assert_eq!(
        negotiate("application/x+protobuf;q=0,application/*", &offered),
        Some(0)
    );
    assert_eq!(negotiate("text/plain", &offered), None);
}

#[test]
fn scale_subresource_uses_the_scale_kind() {
    let c = catalogue();
    let mut d = (*c.get("apps", "v1", "deployments").unwrap()).clone();
    d.subresources.push("scale".into());
    c.add(d);
    let doc = v3_document(&c, "apis/apps/v1").unwrap();
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        item["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    assert!(patch_params(&item["patch"]).contains(&"fieldValidation"));
    assert_eq!(
        item["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"
    );
    assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
    // The status subresource keeps the parent kind.
    let status = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"];
    assert_eq!(
        status["patch"]["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
}

#[test]
fn custom_resource_schemas_are_published() {
    let c = catalogue();
    let crd = json!({
        "metadata": {"name": "widgets.toys.example.com"},
        "spec": {"group": "toys.example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "description": "A widget.", "properties": {
                    "spec": {"type": "object", "properties": {
                        "note": {"type": "string", "nullable": true, "description": "Free text."}}}}}}}]}
    });
    for d in crate::registry::crd::resource_defs(&crd) {
        c.add(d);
    }
    let doc = v3_document(&c, "apis/toys.example.com/v1").unwrap();
    let w = &doc["components"]["schemas"]["com.example.toys.v1.Widget"];
    assert_eq!(w["description"], "A widget.");
    assert_eq!(
        w["properties"]["spec"]["properties"]["note"]["nullable"],
        true
    );
    assert_eq!(
        w["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        w["x-kubernetes-group-version-kind"],
        json!([{"group": "toys.example.com", "kind": "Widget", "version": "v1"}])
    );
    // Swagger 2.0 has no nullable.
    let v2doc = v2(&c);
    let w2 = &v2doc["definitions"]["com.example.toys.v1.Widget"];
    assert_eq!(
        w2["properties"]["spec"]["properties"]["note"]["description"],
        "Free text."
    );
    assert!(
        w2["properties"]["spec"]["properties"]["note"]
            .get("nullable")
            .is_none()
    );
    // A changed schema changes the served documents.
    let api = OpenApi::new();
    let before = api
        .v3_document(&c, "apis/toys.example.com/v1")
        .unwrap()
        .etag;
    let mut changed = crd.clone();
    changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = json!("Changed.");
    for d in crate::registry::crd::resource_defs(&changed) {
        c.add(d);
    }
    let after = api
        .v3_document(&c, "apis/toys.example.com/v1")
        .unwrap()
        .etag;
    assert_ne!(before, after);
}
