//! Validation shared by many kinds, after upstream's `pkg/apis/core/validation`
//! and apimachinery's metadata validation: object metadata, label selectors,
//! pod specs and pod templates, resources, ports and probes.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::quantity;
use super::util::{self, arr, get, go_string_map, idx, invalid, join, key, s};
use crate::api::status::FieldError;
use crate::registry::names;

/// Upstream's total annotation size limit (256 KiB).
pub const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// Checks every object's metadata gets: label keys and values, annotation
/// keys and total size, finalizer names, owner references.
pub fn validate_object_meta(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_labels(
        &mut errs,
        obj.pointer("/metadata/labels"),
        "metadata.labels",
    );
    validate_annotations(
        &mut errs,
        obj.pointer("/metadata/annotations"),
        "metadata.annotations",
    );
    for f in arr(obj, "/metadata/finalizers") {
        let name = f.as_str().unwrap_or("");
        for m in names::is_qualified_name(name) {
            errs.push(FieldError::invalid("metadata.finalizers", name, m));
        }
    }
    let mut controllers = Vec::new();
    for r in arr(obj, "/metadata/ownerReferences") {
        let p = "metadata.ownerReferences";
        let api_version = s(r, "/apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(FieldError::invalid(
                join(p, "apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for (f, msg) in [
            ("kind", "must not be empty"),
            ("name", "must not be empty"),
            ("uid", "must not be empty"),
        ] {
            if s(r, &format!("/{f}")).is_empty() {
                errs.push(FieldError::invalid(join(p, f), "", msg));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers.push(s(r, "/name").to_string());
        }
    }
    if controllers.len() > 1 {
        errs.push(FieldError::invalid_raw(
            "metadata.ownerReferences",
            "[]v1.OwnerReference{...}",
            format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {} and {}",
                controllers[0], controllers[1]
            ),
        ));
    }
    errs
}

/// Label keys must be qualified names, values valid label values.
pub fn validate_labels(errs: &mut Vec<FieldError>, labels: Option<&Value>, field: &str) {
    let Some(m) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        for msg in names::is_qualified_name(k) {
            errs.push(FieldError::invalid(field, k, msg));
        }
        let v = v.as_str().unwrap_or("");
        for msg in names::is_valid_label_value(v) {
            errs.push(FieldError::invalid(field, v, msg));
        }
    }
}

/// Annotation keys must be qualified names (case-insensitively); the total
/// size is limited.
pub fn validate_annotations(errs: &mut Vec<FieldError>, ann: Option<&Value>, field: &str) {
    let Some(m) = ann.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in m {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(field, k, msg));
        }
        total += k.len() + v.as_str().map(str::len).unwrap_or(0);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(util::too_long(field, TOTAL_ANNOTATION_SIZE));
    }
}

/// metav1.LabelSelector syntax.
pub fn validate_label_selector(errs: &mut Vec<FieldError>, sel: &Value, field: &str) {
    validate_labels(errs, sel.get("matchLabels"), &join(field, "matchLabels"));
    for (i, e) in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = idx(&join(field, "matchExpressions"), i);
        let op = s(e, "/operator");
        let nvals = e
            .get("values")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0);
        match op {
            "In" | "NotIn" => {
                if nvals == 0 {
                    errs.push(util::required(
                        join(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if nvals > 0 {
                    errs.push(FieldError::forbidden(
                        join(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(FieldError::invalid(
                join(&p, "operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let k = s(e, "/key");
        for msg in names::is_qualified_name(k) {
            errs.push(FieldError::invalid(join(&p, "key"), k, msg));
        }
    }
}

/// Whether a metav1.LabelSelector matches `labels`. An empty selector
/// matches everything; a malformed one matches nothing.
pub fn selector_matches(sel: &Value, labels: Option<&Value>) -> bool {
    let empty = serde_json::Map::new();
    let labels = labels.and_then(Value::as_object).unwrap_or(&empty);
    let get_label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if get_label(k) != v.as_str() {
                return false;
            }
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let k = s(e, "/key");
        let vals: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        let ok = match s(e, "/operator") {
            "In" => get_label(k).is_some_and(|v| vals.contains(&v)),
            "NotIn" => get_label(k).is_none_or(|v| !vals.contains(&v)),
            "Exists" => get_label(k).is_some(),
            "DoesNotExist" => get_label(k).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A workload selector: required, valid, non-empty, and matching the pod
/// template's labels (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job).
pub fn validate_workload_selector(errs: &mut Vec<FieldError>, obj: &Value, spec: &str, what: &str) {
    let spec_ptr = util::ptr(spec);
    let sel_field = join(spec, "selector");
    match get(obj, &format!("{spec_ptr}/selector")) {
        None => errs.push(FieldError::required(sel_field)),
        Some(sel) => {
            validate_label_selector(errs, sel, &sel_field);
            let n = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .map(|m| m.len())
                .unwrap_or(0)
                + arr(sel, "/matchExpressions").len();
            if n == 0 {
                errs.push(FieldError::invalid_raw(
                    &sel_field,
                    util::go_label_selector(Some(sel)),
                    format!("empty selector is invalid for {what}"),
                ));
            } else {
                let labels = obj.pointer(&format!("{spec_ptr}/template/metadata/labels"));
                if !selector_matches(sel, labels) {
                    errs.push(FieldError::invalid_raw(
                        join(spec, "template.metadata.labels"),
                        go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
}

/// Validate a pod template (`template` at `field`): its metadata and pod spec.
/// `restart_policies` restricts the template's restart policy (controllers
/// allow only `Always`; jobs `OnFailure`/`Never`).
pub fn validate_pod_template(
    errs: &mut Vec<FieldError>,
    template: Option<&Value>,
    field: &str,
    restart_policies: &[&str],
) {
    let Some(t) = template.filter(|t| !t.is_null()) else {
        errs.push(FieldError::required(field));
        return;
    };
    validate_labels(
        errs,
        t.pointer("/metadata/labels"),
        &join(field, "metadata.labels"),
    );
    validate_annotations(
        errs,
        t.pointer("/metadata/annotations"),
        &join(field, "metadata.annotations"),
    );
    let spec = t.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(errs, spec, &join(field, "spec"), false);
    if !restart_policies.is_empty() {
        let rp = s(spec, "/restartPolicy");
        if !rp.is_empty() && !restart_policies.contains(&rp) {
            errs.push(FieldError::not_supported(
                join(field, "spec.restartPolicy"),
                rp,
                restart_policies,
            ));
        }
    }
}

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["FallbackToLogsOnError", "File"];

/// Validate a pod spec at `field` (`spec` for pods, `spec.template.spec` for
/// templates). `is_pod` adds the checks upstream applies to pods only.
pub fn validate_pod_spec(errs: &mut Vec<FieldError>, spec: &Value, field: &str, is_pod: bool) {
    // Volumes first: mounts refer to them.
    let mut volumes = HashSet::new();
    for (i, v) in arr(spec, "/volumes").iter().enumerate() {
        let p = idx(&join(field, "volumes"), i);
        let name = s(v, "/name");
        if name.is_empty() {
            errs.push(FieldError::required(join(&p, "name")));
        } else {
            for m in names::is_dns1123_label(name) {
                errs.push(FieldError::invalid(join(&p, "name"), name, m));
            }
            if !volumes.insert(name.to_string()) {
                errs.push(FieldError::duplicate(join(&p, "name"), name));
            }
        }
        let sources = v
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, x)| *k != "name" && !x.is_null())
                    .count()
            })
            .unwrap_or(0);
        if sources > 1 {
            errs.push(FieldError::forbidden(
                &p,
                "may not specify more than 1 volume type",
            ));
        } else if sources == 0 && is_pod {
            errs.push(util::required(&p, "must specify a volume type"));
        }
    }

    let containers = arr(spec, "/containers");
    if containers.is_empty() {
        errs.push(FieldError::required(join(field, "containers")));
    }
    let mut all_names = HashSet::new();
    for (list, kind) in [
        ("initContainers", ContainerKind::Init),
        ("containers", ContainerKind::Regular),
    ] {
        for (i, c) in arr(spec, &format!("/{list}")).iter().enumerate() {
            let p = idx(&join(field, list), i);
            validate_container(errs, c, &p, kind, &volumes, &mut all_names, is_pod);
        }
    }
    for (i, c) in arr(spec, "/ephemeralContainers").iter().enumerate() {
        let p = idx(&join(field, "ephemeralContainers"), i);
        validate_container(
            errs,
            c,
            &p,
            ContainerKind::Ephemeral,
            &volumes,
            &mut all_names,
            is_pod,
        );
    }

    util::check_enum(
        errs,
        &join(field, "restartPolicy"),
        spec.get("restartPolicy"),
        RESTART_POLICIES,
        false,
    );
    util::check_enum(
        errs,
        &join(field, "dnsPolicy"),
        spec.get("dnsPolicy"),
        DNS_POLICIES,
        false,
    );
    if s(spec, "/dnsPolicy") == "None" && get(spec, "/dnsConfig").is_none() {
        errs.push(util::required(
            join(field, "dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    if let Some(n) = util::int(spec, "/activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&n)
    {
        errs.push(FieldError::invalid_raw(
            join(field, "activeDeadlineSeconds"),
            n,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    validate_labels(errs, spec.get("nodeSelector"), &join(field, "nodeSelector"));
    for f in ["hostname", "subdomain"] {
        let v = s(spec, &format!("/{f}"));
        if !v.is_empty() {
            for m in names::is_dns1123_label(v) {
                errs.push(FieldError::invalid(join(field, f), v, m));
            }
        }
    }
    for f in ["serviceAccountName", "priorityClassName", "nodeName"] {
        let v = s(spec, &format!("/{f}"));
        if !v.is_empty() {
            for m in names::is_dns1123_subdomain(v) {
                errs.push(FieldError::invalid(join(field, f), v, m));
            }
        }
    }
    for (i, t) in arr(spec, "/tolerations").iter().enumerate() {
        validate_toleration(errs, t, &idx(&join(field, "tolerations"), i));
    }
    if let Some(n) = util::int(spec, "/terminationGracePeriodSeconds")
        && n < 0
        && !is_pod
    {
        errs.push(FieldError::invalid_raw(
            join(field, "terminationGracePeriodSeconds"),
            n,
            "must be greater than or equal to 0",
        ));
    }
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["containers", "initContainers"] {
            for (i, c) in arr(spec, &format!("/{list}")).iter().enumerate() {
                for (j, port) in arr(c, "/ports").iter().enumerate() {
                    let hp = util::int(port, "/hostPort").unwrap_or(0);
                    let cp = util::int(port, "/containerPort").unwrap_or(0);
                    if hp != 0 && hp != cp {
                        errs.push(FieldError::invalid_raw(
                            join(
                                &idx(&join(&idx(&join(field, list), i), "ports"), j),
                                "hostPort",
                            ),
                            hp,
                            "must match `containerPort` when `hostNetwork` is true",
                        ));
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ContainerKind {
    Regular,
    Init,
    Ephemeral,
}

fn validate_container(
    errs: &mut Vec<FieldError>,
    c: &Value,
    p: &str,
    kind: ContainerKind,
    volumes: &HashSet<String>,
    all_names: &mut HashSet<String>,
    is_pod: bool,
) {
    let name = s(c, "/name");
    if name.is_empty() {
        errs.push(FieldError::required(join(p, "name")));
    } else {
        for m in names::is_dns1123_label(name) {
            errs.push(FieldError::invalid(join(p, "name"), name, m));
        }
        if !all_names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(join(p, "name"), name));
        }
    }
    let image = s(c, "/image");
    if image.is_empty() {
        errs.push(FieldError::required(join(p, "image")));
    } else if is_pod && image.trim() != image {
        errs.push(FieldError::invalid(
            join(p, "image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    util::check_enum(
        errs,
        &join(p, "imagePullPolicy"),
        c.get("imagePullPolicy"),
        PULL_POLICIES,
        false,
    );
    util::check_enum(
        errs,
        &join(p, "terminationMessagePolicy"),
        c.get("terminationMessagePolicy"),
        TERMINATION_MESSAGE_POLICIES,
        false,
    );

    // Ports.
    let mut port_names = HashSet::new();
    for (i, port) in arr(c, "/ports").iter().enumerate() {
        let pp = idx(&join(p, "ports"), i);
        if kind == ContainerKind::Ephemeral {
            errs.push(FieldError::forbidden(
                join(p, "ports"),
                "cannot be set for an Ephemeral Container",
            ));
            break;
        }
        let pname = s(port, "/name");
        if !pname.is_empty() {
            for m in names::is_valid_port_name(pname) {
                errs.push(FieldError::invalid(join(&pp, "name"), pname, m));
            }
            if !port_names.insert(pname.to_string()) {
                errs.push(FieldError::duplicate(join(&pp, "name"), pname));
            }
        }
        match util::int(port, "/containerPort") {
            None | Some(0) => errs.push(FieldError::required(join(&pp, "containerPort"))),
            Some(n) => {
                for m in names::is_valid_port_num(n) {
                    errs.push(FieldError::invalid_raw(join(&pp, "containerPort"), n, m));
                }
            }
        }
        if let Some(n) = util::int(port, "/hostPort").filter(|n| *n != 0) {
            for m in names::is_valid_port_num(n) {
                errs.push(FieldError::invalid_raw(join(&pp, "hostPort"), n, m));
            }
        }
        util::check_enum(
            errs,
            &join(&pp, "protocol"),
            port.get("protocol"),
            PROTOCOLS,
            false,
        );
    }

    // Environment.
    for (i, e) in arr(c, "/env").iter().enumerate() {
        let ep = idx(&join(p, "env"), i);
        let en = s(e, "/name");
        if en.is_empty() {
            errs.push(FieldError::required(join(&ep, "name")));
        } else {
            for m in names::is_env_var_name(en) {
                errs.push(FieldError::invalid(join(&ep, "name"), en, m));
            }
        }
        if let Some(vf) = get(e, "/valueFrom") {
            if !s(e, "/value").is_empty() {
                errs.push(FieldError::invalid(
                    join(&ep, "valueFrom"),
                    "",
                    "may not be specified when `value` is not empty",
                ));
            }
            let n = vf
                .as_object()
                .map(|m| m.values().filter(|x| !x.is_null()).count())
                .unwrap_or(0);
            if n == 0 {
                errs.push(FieldError::invalid(
                    join(&ep, "valueFrom"),
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                ));
            } else if n > 1 {
                errs.push(FieldError::invalid(
                    join(&ep, "valueFrom"),
                    "",
                    "may not have more than one field specified at a time",
                ));
            }
        }
    }

    // Volume mounts.
    let mut mount_paths = HashSet::new();
    for (i, m) in arr(c, "/volumeMounts").iter().enumerate() {
        let mp = idx(&join(p, "volumeMounts"), i);
        let vname = s(m, "/name");
        if vname.is_empty() {
            errs.push(FieldError::required(join(&mp, "name")));
        } else if !volumes.contains(vname) {
            errs.push(util::not_found(join(&mp, "name"), vname));
        }
        let path = s(m, "/mountPath");
        if path.is_empty() {
            errs.push(FieldError::required(join(&mp, "mountPath")));
        } else if !mount_paths.insert(path.to_string()) {
            errs.push(FieldError::invalid(
                join(&mp, "mountPath"),
                path,
                "must be unique",
            ));
        }
    }

    validate_resources(errs, c.get("resources"), &join(p, "resources"));

    // Probes.
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(pr) = get(c, &format!("/{probe}")) else {
            continue;
        };
        let pp = join(p, probe);
        if kind == ContainerKind::Ephemeral {
            errs.push(FieldError::forbidden(
                &pp,
                "cannot be set for an Ephemeral Container",
            ));
            continue;
        }
        validate_probe(errs, pr, &pp);
        if probe != "readinessProbe"
            && let Some(n) = util::int(pr, "/successThreshold").filter(|n| *n != 1)
        {
            errs.push(FieldError::invalid_raw(
                join(&pp, "successThreshold"),
                n,
                "must be 1",
            ));
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(h) = c
            .pointer(&format!("/lifecycle/{hook}"))
            .filter(|x| !x.is_null())
        {
            validate_handler(errs, h, &join(&join(p, "lifecycle"), hook), true);
        }
    }
}

fn validate_probe(errs: &mut Vec<FieldError>, pr: &Value, p: &str) {
    validate_handler(errs, pr, p, false);
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        util::check_non_negative(errs, &join(p, f), util::int(pr, &format!("/{f}")));
    }
    if let Some(n) = util::int(pr, "/terminationGracePeriodSeconds")
        && n <= 0
    {
        errs.push(FieldError::invalid_raw(
            join(p, "terminationGracePeriodSeconds"),
            n,
            "must be greater than 0",
        ));
    }
}

/// Exactly one of exec/httpGet/tcpSocket/grpc (and sleep for lifecycle hooks).
fn validate_handler(errs: &mut Vec<FieldError>, h: &Value, p: &str, lifecycle: bool) {
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let set: Vec<&&str> = kinds
        .iter()
        .filter(|k| get(h, &format!("/{k}")).is_some())
        .collect();
    if set.is_empty() {
        errs.push(util::required(p, "must specify a handler type"));
        return;
    }
    if set.len() > 1 {
        errs.push(FieldError::forbidden(
            join(p, set[1]),
            "may not specify more than 1 handler type",
        ));
    }
    for pf in ["httpGet", "tcpSocket"] {
        if let Some(port) = h.pointer(&format!("/{pf}/port")) {
            validate_port_ref(errs, port, &join(&join(p, pf), "port"));
        } else if get(h, &format!("/{pf}")).is_some() {
            errs.push(FieldError::required(join(&join(p, pf), "port")));
        }
    }
    if let Some(scheme) = h.pointer("/httpGet/scheme") {
        util::check_enum(
            errs,
            &join(p, "httpGet.scheme"),
            Some(scheme),
            &["HTTP", "HTTPS"],
            false,
        );
    }
    if let Some(n) = util::int(h, "/grpc/port") {
        for m in names::is_valid_port_num(n) {
            errs.push(FieldError::invalid_raw(join(p, "grpc.port"), n, m));
        }
    }
    if let Some(ex) = get(h, "/exec")
        && arr(ex, "/command").is_empty()
    {
        errs.push(FieldError::required(join(p, "exec.command")));
    }
}

/// An int-or-string port: a valid number or an IANA service name.
pub fn validate_port_ref(errs: &mut Vec<FieldError>, port: &Value, p: &str) {
    match port {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(0);
            for m in names::is_valid_port_num(n) {
                errs.push(FieldError::invalid_raw(p, n, m));
            }
        }
        Value::String(name) => {
            for m in names::is_valid_port_name(name) {
                errs.push(FieldError::invalid(p, name, m));
            }
        }
        _ => {}
    }
}

/// Quantities in resources: well-formed, non-negative, requests <= limits.
pub fn validate_resources(errs: &mut Vec<FieldError>, res: Option<&Value>, p: &str) {
    let Some(res) = res.filter(|r| !r.is_null()) else {
        return;
    };
    let mut parsed: BTreeMap<&str, BTreeMap<String, (String, quantity::Quantity)>> =
        BTreeMap::new();
    for part in ["limits", "requests"] {
        let Some(m) = res.get(part).and_then(Value::as_object) else {
            continue;
        };
        for (name, q) in m {
            let qp = key(&join(p, part), name);
            let qs = match q {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            match quantity::parse(&qs) {
                Err(e) => errs.push(FieldError::invalid(&qp, &qs, e)),
                Ok(v) if v.is_negative() => errs.push(FieldError::invalid(
                    &qp,
                    &qs,
                    "must be greater than or equal to 0",
                )),
                Ok(v) => {
                    parsed
                        .entry(part)
                        .or_default()
                        .insert(name.clone(), (qs, v));
                }
            }
        }
    }
    if let (Some(req), Some(lim)) = (parsed.get("requests"), parsed.get("limits")) {
        for (name, (rs, rv)) in req {
            if let Some((ls, lv)) = lim.get(name)
                && rv > lv
            {
                errs.push(FieldError::invalid(
                    key(&join(p, "requests"), name),
                    rs,
                    format!("must be less than or equal to {name} limit of {ls}"),
                ));
            }
        }
    }
}

fn validate_toleration(errs: &mut Vec<FieldError>, t: &Value, p: &str) {
    let k = s(t, "/key");
    if !k.is_empty() {
        for m in names::is_qualified_name(k) {
            errs.push(FieldError::invalid(join(p, "key"), k, m));
        }
    }
    let op = s(t, "/operator");
    match op {
        "" | "Equal" => {
            if k.is_empty() && op == "Equal" {
                errs.push(FieldError::invalid(
                    join(p, "operator"),
                    op,
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
            let v = s(t, "/value");
            for m in names::is_valid_label_value(v) {
                errs.push(FieldError::invalid(join(p, "value"), v, m));
            }
        }
        "Exists" => {
            if !s(t, "/value").is_empty() {
                errs.push(FieldError::invalid(
                    join(p, "operator"),
                    s(t, "/value"),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            join(p, "operator"),
            other,
            &["Equal", "Exists"],
        )),
    }
    let effect = s(t, "/effect");
    if !effect.is_empty() {
        util::check_enum(
            errs,
            &join(p, "effect"),
            t.get("effect"),
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            false,
        );
    }
    if get(t, "/tolerationSeconds").is_some() && effect != "NoExecute" {
        errs.push(FieldError::invalid(
            join(p, "effect"),
            effect,
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
}

/// An int-or-percent value (`maxSurge`, `maxUnavailable`, `minAvailable`):
/// non-negative, a valid percent string, at most 100% when `max_100`.
pub fn validate_int_or_percent(
    errs: &mut Vec<FieldError>,
    v: Option<&Value>,
    p: &str,
    max_100: bool,
) {
    match v {
        Some(Value::Number(n)) if n.as_i64().unwrap_or(0) < 0 => {
            errs.push(FieldError::invalid_raw(
                p,
                n,
                "must be greater than or equal to 0",
            ));
        }
        Some(Value::String(st)) => match st.strip_suffix('%').and_then(|d| d.parse::<i64>().ok()) {
            Some(pct)
                if st
                    .strip_suffix('%')
                    .is_some_and(|d| d.bytes().all(|c| c.is_ascii_digit())) =>
            {
                if max_100 && pct > 100 {
                    errs.push(FieldError::invalid(p, st, "must not be greater than 100%"));
                }
            }
            _ => errs.push(FieldError::invalid(
                p,
                st,
                names::regex_error(
                    "a valid percent string must be a numeric string followed by an ending '%'",
                    "[0-9]+%",
                    &["1%", "93%"],
                ),
            )),
        },
        _ => {}
    }
}

/// True when an int-or-percent value is zero (0 or "0%").
pub fn int_or_percent_is_zero(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::String(s)) => {
            s.strip_suffix('%').and_then(|d| d.parse::<i64>().ok()) == Some(0)
        }
        _ => true,
    }
}

/// `field: Invalid value: N: must be greater than or equal to 0` for replicas-like fields.
pub fn validate_replicas(errs: &mut Vec<FieldError>, obj: &Value, field: &str) {
    util::check_non_negative(errs, field, util::int(obj, &util::ptr(field)));
}

/// Upstream's invalid-value helper re-exported for kind modules.
pub fn invalid_value(field: &str, v: &Value, detail: &str) -> FieldError {
    invalid(field, v, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::display).collect()
    }

    #[test]
    fn object_meta_labels_and_annotations() {
        let obj = json!({"metadata": {"labels": {"good": "v", "bad key!": "x", "k": "-v"}, "annotations": {"a": "b"}}});
        let m = msgs(&validate_object_meta(&obj));
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m.iter().any(|e| e.starts_with("metadata.labels: Invalid value: \"bad key!\": name part must consist of alphanumeric characters")));
        assert!(m.iter().any(|e| e.starts_with(
            "metadata.labels: Invalid value: \"-v\": a valid label must be an empty string"
        )));
        let big = json!({"metadata": {"annotations": {"a": "x".repeat(TOTAL_ANNOTATION_SIZE)}}});
        assert_eq!(
            msgs(&validate_object_meta(&big)),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn owner_references_need_fields_and_one_controller() {
        let obj = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}
        ]}});
        let m = msgs(&validate_object_meta(&obj));
        assert!(m.contains(&"metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty".to_string()));
        assert!(
            m.iter()
                .any(|e| e.contains("Only one reference can have Controller set to true"))
        );
    }

    #[test]
    fn selectors_match_and_validate() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert!(selector_matches(
            &sel,
            Some(&json!({"app": "web", "tier": "a"}))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&json!({"app": "web", "tier": "c"}))
        ));
        assert!(!selector_matches(&sel, None));
        let mut errs = Vec::new();
        validate_label_selector(
            &mut errs,
            &json!({"matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b", "operator": "Foo"}]}),
            "spec.selector",
        );
        assert_eq!(
            msgs(&errs),
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].operator: Invalid value: \"Foo\": not a valid selector operator"
            ]
        );
    }

    #[test]
    fn workload_selector_must_match_template() {
        let obj = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}}}});
        let mut errs = Vec::new();
        validate_workload_selector(&mut errs, &obj, "spec", "deployment");
        assert_eq!(
            msgs(&errs),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`"
            ]
        );
        let empty = json!({"spec": {"selector": {}, "template": {}}});
        let mut errs = Vec::new();
        validate_workload_selector(&mut errs, &empty, "spec", "deployment");
        assert_eq!(
            msgs(&errs),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
            ]
        );
        let mut errs = Vec::new();
        validate_workload_selector(&mut errs, &json!({"spec": {}}), "spec", "deployment");
        assert_eq!(msgs(&errs), vec!["spec.selector: Required value"]);
    }

    #[test]
    fn pod_spec_container_rules() {
        let spec = json!({
            "containers": [
                {"name": "Web", "image": "nginx", "ports": [{"containerPort": 70000, "protocol": "XTP"}]},
                {"name": "db"},
                {"name": "db", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}],
                 "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1", "memory": "abc"}}}
            ],
            "restartPolicy": "Sometimes"
        });
        let mut errs = Vec::new();
        validate_pod_spec(&mut errs, &spec, "spec", true);
        let m = msgs(&errs);
        let expect = [
            "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of",
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[0].protocol: Unsupported value: \"XTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[1].image: Required value",
            "spec.containers[2].name: Duplicate value: \"db\"",
            "spec.containers[2].volumeMounts[0].name: Not found: \"data\"",
            "spec.containers[2].resources.limits[memory]: Invalid value: \"abc\": quantities must match the regular expression",
            "spec.containers[2].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ];
        for e in expect {
            assert!(m.iter().any(|x| x.starts_with(e)), "missing {e} in {m:#?}");
        }
        let mut errs = Vec::new();
        validate_pod_spec(&mut errs, &json!({}), "spec", true);
        assert_eq!(msgs(&errs), vec!["spec.containers: Required value"]);
    }

    #[test]
    fn probes_need_one_handler() {
        let spec = json!({"containers": [{"name": "a", "image": "x",
            "livenessProbe": {"successThreshold": 2, "httpGet": {"port": 80}},
            "readinessProbe": {"periodSeconds": 5}}]});
        let mut errs = Vec::new();
        validate_pod_spec(&mut errs, &spec, "spec", true);
        assert_eq!(
            msgs(&errs),
            vec![
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[0].readinessProbe: Required value: must specify a handler type"
            ]
        );
    }

    #[test]
    fn percent_values() {
        let mut errs = Vec::new();
        validate_int_or_percent(&mut errs, Some(&json!("25%")), "x", true);
        validate_int_or_percent(&mut errs, Some(&json!("150%")), "y", true);
        validate_int_or_percent(&mut errs, Some(&json!("abc")), "z", true);
        let m = msgs(&errs);
        assert_eq!(
            m[0],
            "y: Invalid value: \"150%\": must not be greater than 100%"
        );
        assert_eq!(
            m[1],
            "z: Invalid value: \"abc\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
        );
        assert!(int_or_percent_is_zero(Some(&json!("0%"))));
        assert!(!int_or_percent_is_zero(Some(&json!(1))));
    }
}
