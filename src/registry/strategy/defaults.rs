//! Upstream's defaulting for pod specs and pod templates (`SetDefaults_*` in
//! `pkg/apis/core/v1/defaults.go` plus the declarative defaults), applied to
//! JSON in place. Every function is idempotent: defaults run on create and on
//! every update.

use serde_json::{Value, json};

use super::util::{
    Obj, child, child_opt, each_obj_mut, set_default, set_default_num, set_default_str,
};

/// The tag of an image reference as upstream's `parsers.ParseImageName`
/// sees it: `latest` when there is neither tag nor digest, "" with a digest only.
pub fn image_tag(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[last_slash..].rsplit_once(':') {
        Some((_, tag)) => tag.to_string(),
        None if digest => String::new(),
        None => "latest".to_string(),
    }
}

/// imagePullPolicy by tag: `Always` for `latest` (or no tag), else `IfNotPresent`.
pub fn pull_policy_for(image: &str) -> &'static str {
    if image_tag(image) == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    }
}

fn default_probe(p: &mut Obj) {
    set_default_num(p, "timeoutSeconds", 1);
    set_default_num(p, "periodSeconds", 10);
    set_default_num(p, "successThreshold", 1);
    set_default_num(p, "failureThreshold", 3);
    default_handler(p);
}

fn default_handler(h: &mut Obj) {
    if let Some(get) = child_opt(h, "httpGet") {
        set_default_str(get, "path", "/");
        set_default_str(get, "scheme", "HTTP");
    }
}

fn default_env(c: &mut Obj) {
    for e in each_obj_mut(c, "env") {
        if let Some(fr) = e
            .get_mut("valueFrom")
            .and_then(Value::as_object_mut)
            .and_then(|vf| child_opt(vf, "fieldRef"))
        {
            set_default_str(fr, "apiVersion", "v1");
        }
    }
}

/// SetDefaults_Container and the declarative container defaults.
pub fn default_container(c: &mut Obj) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default_str(c, "imagePullPolicy", pull_policy_for(&image));
    set_default_str(c, "terminationMessagePath", "/dev/termination-log");
    set_default_str(c, "terminationMessagePolicy", "File");
    // ResourceRequirements is not a pointer upstream: it always shows, as {}.
    set_default(c, "resources", json!({}));
    for p in each_obj_mut(c, "ports") {
        set_default_str(p, "protocol", "TCP");
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child_opt(c, probe) {
            default_probe(p);
        }
    }
    if let Some(lc) = child_opt(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child_opt(lc, hook) {
                default_handler(h);
            }
        }
    }
    default_env(c);
}

fn default_volume(v: &mut Obj) {
    let has_source = v.iter().any(|(k, x)| k != "name" && !x.is_null());
    if !has_source {
        v.insert("emptyDir".into(), json!({}));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = child_opt(v, src) {
            set_default(s, "defaultMode", json!(420));
        }
    }
    if let Some(hp) = child_opt(v, "hostPath") {
        set_default(hp, "type", json!(""));
    }
    if let Some(d) = child_opt(v, "downwardAPI") {
        for item in each_obj_mut(d, "items") {
            if let Some(fr) = child_opt(item, "fieldRef") {
                set_default_str(fr, "apiVersion", "v1");
            }
        }
    }
    if let Some(p) = child_opt(v, "projected") {
        for src in each_obj_mut(p, "sources") {
            if let Some(t) = child_opt(src, "serviceAccountToken") {
                set_default(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = child_opt(src, "downwardAPI") {
                for item in each_obj_mut(d, "items") {
                    if let Some(fr) = child_opt(item, "fieldRef") {
                        set_default_str(fr, "apiVersion", "v1");
                    }
                }
            }
        }
    }
    if let Some(iscsi) = child_opt(v, "iscsi") {
        set_default_str(iscsi, "iscsiInterface", "default");
    }
}

/// SetDefaults_PodSpec plus the defaults of everything inside a pod spec.
/// Applies to pods and to every pod template.
pub fn default_pod_spec(spec: &mut Obj) {
    set_default_str(spec, "dnsPolicy", "ClusterFirst");
    set_default_str(spec, "restartPolicy", "Always");
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default_str(spec, "schedulerName", "default-scheduler");
    // serviceAccount is the deprecated alias of serviceAccountName; upstream
    // fills one from the other on the way in and mirrors it on the way out.
    let sa_name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let sa = spec
        .get("serviceAccount")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if sa_name.is_empty() && !sa.is_empty() {
        spec.insert("serviceAccountName".into(), json!(sa));
    } else if !sa_name.is_empty() {
        spec.insert("serviceAccount".into(), json!(sa_name));
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in each_obj_mut(spec, list) {
            default_container(c);
        }
    }
    for v in each_obj_mut(spec, "volumes") {
        default_volume(v);
    }
}

/// Defaults for a pod template: its spec, and `metadata.creationTimestamp:
/// null`, which upstream always prints in templates.
pub fn default_pod_template(t: &mut Obj) {
    if let Some(meta) = child(t, "metadata")
        && !meta.contains_key("creationTimestamp")
    {
        meta.insert("creationTimestamp".into(), Value::Null);
    }
    if let Some(spec) = child(t, "spec") {
        default_pod_spec(spec);
    }
}

/// Defaults for a pod template at `obj.spec.template`, if present.
pub fn default_spec_template(obj: &mut Value) {
    if let Some(t) = obj
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .and_then(|s| child_opt(s, "template"))
    {
        default_pod_template(t);
    }
}

/// SetDefaults_Pod: pod-only defaults on top of the pod spec's.
pub fn default_pod(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default_pod_spec(spec);
    set_default(spec, "enableServiceLinks", json!(true));
    // Requests default to limits when unset (pods only, not templates).
    for list in ["containers", "initContainers"] {
        for c in each_obj_mut(spec, list) {
            let Some(res) = child_opt(c, "resources") else {
                continue;
            };
            let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            if let Some(req) = child(res, "requests") {
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
    }
    // With host networking, container ports default to host ports.
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["containers", "initContainers"] {
            for c in each_obj_mut(spec, list) {
                for p in each_obj_mut(c, "ports") {
                    let cp = p.get("containerPort").cloned().unwrap_or(Value::Null);
                    let zero = p
                        .get("hostPort")
                        .is_none_or(|h| h.is_null() || h.as_i64() == Some(0));
                    if zero && !cp.is_null() {
                        p.insert("hostPort".into(), cp);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy_for("nginx"), "Always");
        assert_eq!(pull_policy_for("nginx:latest"), "Always");
        assert_eq!(pull_policy_for("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy_for("localhost:5000/app"), "Always");
        assert_eq!(pull_policy_for("localhost:5000/app:v2"), "IfNotPresent");
        assert_eq!(pull_policy_for("nginx@sha256:abcd"), "IfNotPresent");
        assert_eq!(pull_policy_for("nginx:latest@sha256:abcd"), "Always");
    }

    #[test]
    fn pod_defaults_match_upstream_output() {
        let mut pod = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.27",
            "ports": [{"containerPort": 80}],
            "readinessProbe": {"httpGet": {"port": 80}},
            "resources": {"limits": {"cpu": "1"}}}],
            "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}]}});
        default_pod(&mut pod);
        let expected = json!({"spec": {
            "containers": [{"name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                    "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
            "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}}],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
            "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler", "enableServiceLinks": true}});
        assert_eq!(pod, expected);
        // Idempotent.
        let again = pod.clone();
        default_pod(&mut pod);
        assert_eq!(pod, again);
    }

    #[test]
    fn templates_get_spec_defaults_but_not_pod_only_ones() {
        let mut d = json!({"spec": {"template": {"metadata": {"labels": {"app": "a"}},
            "spec": {"serviceAccount": "builder", "containers": [{"name": "a", "image": "busybox"}]}}}});
        default_spec_template(&mut d);
        let t = &d["spec"]["template"];
        assert_eq!(t["metadata"]["creationTimestamp"], Value::Null);
        assert!(
            t["metadata"]
                .as_object()
                .is_some_and(|m| m.contains_key("creationTimestamp"))
        );
        assert_eq!(t["spec"]["serviceAccountName"], "builder");
        assert_eq!(t["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(t["spec"]["containers"][0]["resources"], json!({}));
        assert!(t["spec"].get("enableServiceLinks").is_none());
    }

    #[test]
    fn host_network_copies_ports() {
        let mut pod = json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 53}]}]}});
        default_pod(&mut pod);
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 53);
    }
}
