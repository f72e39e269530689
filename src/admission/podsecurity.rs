//! PodSecurity admission (the Pod Security Standards, upstream's built-in
//! plugin). A namespace picks a level per mode with labels
//! `pod-security.kubernetes.io/<mode>: privileged|baseline|restricted`
//! (and `<mode>-version`, used in messages):
//! - enforce: pods that violate the level are refused (403 Forbidden);
//! - warn: writes of pods and of workloads with pod templates that would
//!   violate it answer with warnings (`kubectl` prints them);
//! - audit: upstream annotates the request's audit event; rk3s keeps no
//!   audit log and records the violation in the server log (target
//!   `rk3s::audit`).
//!
//! Labelling a namespace with a stricter enforce level warns about the
//! existing pods that violate it. Unlabelled namespaces are privileged, as
//! upstream's default configuration.

use serde_json::{Value, json};

use super::forbidden;
use crate::api::status::{ApiError, FieldError};
use crate::registry::ResourceDef;
use crate::registry::generic::{ListQuery, ReadAt, Registry, name_of};

const PREFIX: &str = "pod-security.kubernetes.io/";
const MODES: [&str; 3] = ["enforce", "warn", "audit"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// One mode's policy: the level and how messages name it ("restricted:latest").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub level: Level,
    pub version: String,
}

impl Policy {
    fn label(&self) -> String {
        format!("{}:{}", self.level.name(), self.version)
    }
}

/// The namespace's policy for `mode`; privileged when unlabelled or
/// malformed (namespace validation refuses malformed labels on write).
fn policy(ns: &Value, mode: &str) -> Policy {
    let labels = ns.pointer("/metadata/labels");
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let level = get(&format!("{PREFIX}{mode}"))
        .and_then(Level::parse)
        .unwrap_or(Level::Privileged);
    let version = get(&format!("{PREFIX}{mode}-version"))
        .filter(|v| valid_version(v))
        .unwrap_or("latest")
        .to_string();
    Policy { level, version }
}

fn valid_version(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix("v1.")
            .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
}

/// The field errors of malformed pod-security labels on a namespace.
pub fn validate_namespace_labels(ns: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(labels) = ns.pointer("/metadata/labels").and_then(Value::as_object) else {
        return errs;
    };
    for mode in MODES {
        let key = format!("{PREFIX}{mode}");
        if let Some(v) = labels.get(&key).and_then(Value::as_str)
            && Level::parse(v).is_none()
        {
            errs.push(FieldError::invalid(
                format!("metadata.labels[{key}]"),
                v,
                "must be one of privileged, baseline, restricted",
            ));
        }
        let key = format!("{PREFIX}{mode}-version");
        if let Some(v) = labels.get(&key).and_then(Value::as_str)
            && !valid_version(v)
        {
            errs.push(FieldError::invalid(
                format!("metadata.labels[{key}]"),
                v,
                "must be \"latest\" or \"v1.x\"",
            ));
        }
    }
    errs
}

/// The pod template of a workload kind, if `def` is one.
fn template_of<'a>(def: &ResourceDef, obj: &'a Value) -> Option<&'a Value> {
    let ptr = match (def.group.as_str(), def.plural.as_str()) {
        ("", "pods") => return Some(obj),
        ("", "podtemplates") => "/template",
        ("", "replicationcontrollers")
        | ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => "/spec/template",
        ("batch", "cronjobs") => "/spec/jobTemplate/spec/template",
        _ => return None,
    };
    obj.pointer(ptr)
}

/// Admit a write of `obj` (a create when `old` is None).
pub async fn admit(
    reg: &Registry,
    def: &ResourceDef,
    ns: Option<&str>,
    obj: &Value,
    old: Option<&Value>,
    subresource: Option<&str>,
) -> Result<(), ApiError> {
    if def.group.is_empty() && def.plural == "namespaces" && subresource.is_none() {
        return admit_namespace(reg, obj, old).await;
    }
    let Some(ns) = ns.filter(|n| !n.is_empty()) else {
        return Ok(());
    };
    let is_pod = def.group.is_empty() && def.plural == "pods";
    // Pods are checked on create, on updates of their spec (images) and
    // ephemeral containers; status and other subresources never.
    match subresource {
        None => {}
        Some("ephemeralcontainers") if is_pod => {}
        Some(_) => return Ok(()),
    }
    let Some(pod) = template_of(def, obj) else {
        return Ok(());
    };
    if let Some(old) = old
        && template_of(def, old).and_then(|p| p.get("spec")) == pod.get("spec")
    {
        return Ok(());
    }
    let Some(nsdef) = reg.catalogue.get("", "v1", "namespaces") else {
        return Ok(());
    };
    let Ok(namespace) = reg.get(&nsdef, None, ns, ReadAt::Latest).await else {
        return Ok(());
    };
    let enforce = policy(&namespace, "enforce");
    let warn = policy(&namespace, "warn");
    if is_pod && enforce.level > Level::Privileged {
        let violations = evaluate(enforce.level, pod);
        if !violations.is_empty() {
            return Err(forbidden(
                def,
                name_of(obj),
                &format!(
                    "violates PodSecurity \"{}\": {}",
                    enforce.label(),
                    violations.join(", ")
                ),
            ));
        }
    }
    // Workloads are warned against the enforce level too (their pods would
    // be refused), and everything against the warn level.
    let mut warned = Vec::new();
    if !is_pod && enforce.level > Level::Privileged {
        warned.push(enforce);
    }
    if warn.level > Level::Privileged && !warned.contains(&warn) {
        warned.push(warn);
    }
    for p in warned {
        let violations = evaluate(p.level, pod);
        if !violations.is_empty() {
            crate::api::warning::add(format!(
                "would violate PodSecurity \"{}\": {}",
                p.label(),
                violations.join(", ")
            ));
        }
    }
    // Audit: upstream puts this annotation on the request's audit event.
    // rk3s keeps no audit log, so the server log is where it is recorded.
    let audit = policy(&namespace, "audit");
    if audit.level > Level::Privileged {
        let violations = evaluate(audit.level, pod);
        if !violations.is_empty() {
            tracing::warn!(
                target: "rk3s::audit",
                namespace = ns,
                resource = %def.plural,
                name = name_of(obj),
                "pod-security.kubernetes.io/audit-violations: would violate PodSecurity \"{}\": {}",
                audit.label(),
                violations.join(", ")
            );
        }
    }
    Ok(())
}

/// A namespace's labels are validated; a stricter enforce level warns about
/// the namespace's pods that violate it.
async fn admit_namespace(reg: &Registry, ns: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let errs = validate_namespace_labels(ns);
    if !errs.is_empty() {
        let Some(nsdef) = reg.catalogue.get("", "v1", "namespaces") else {
            return Ok(());
        };
        return Err(ApiError::invalid(nsdef.target(), name_of(ns), &errs));
    }
    let Some(old) = old else {
        return Ok(());
    };
    let (before, after) = (policy(old, "enforce"), policy(ns, "enforce"));
    if after.level == Level::Privileged || after == before {
        return Ok(());
    }
    let Some(pdef) = reg.catalogue.get("", "v1", "pods") else {
        return Ok(());
    };
    let name = name_of(ns);
    let pods = reg
        .list(&pdef, Some(name), &ListQuery::default())
        .await?
        .items;
    let mut lines = Vec::new();
    for pod in &pods {
        let checks = check_names(after.level, pod);
        if !checks.is_empty() {
            lines.push(format!("{}: {}", name_of(pod), checks.join(", ")));
        }
    }
    if !lines.is_empty() {
        crate::api::warning::add(format!(
            "existing pods in namespace \"{name}\" violate the new PodSecurity enforce level \"{}\"",
            after.label()
        ));
        for l in lines {
            crate::api::warning::add(l);
        }
    }
    Ok(())
}

/// What a pod violates at `level`: "check (details)", in upstream's order.
pub fn evaluate(level: Level, pod: &Value) -> Vec<String> {
    checks(level, pod)
        .into_iter()
        .map(|(name, detail)| match detail {
            Some(d) => format!("{name} ({d})"),
            None => name.to_string(),
        })
        .collect()
}

/// Only the names of the violated checks (for existing pods).
fn check_names(level: Level, pod: &Value) -> Vec<String> {
    checks(level, pod)
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect()
}

struct Containers<'a> {
    all: Vec<&'a Value>,
}

impl<'a> Containers<'a> {
    fn of(spec: &'a Value) -> Self {
        let all = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .filter_map(|f| spec.get(*f).and_then(Value::as_array))
            .flatten()
            .collect();
        Containers { all }
    }

    /// The names of the containers for which `pred` holds.
    fn named_where(&self, pred: impl Fn(&Value) -> bool) -> Vec<&'a str> {
        self.all
            .iter()
            .filter(|c| pred(c))
            .map(|c| name(c))
            .collect()
    }
}

fn name(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

fn sc<'a>(c: &'a Value, field: &str) -> Option<&'a Value> {
    c.get("securityContext").and_then(|s| s.get(field))
}

/// `container "a"` or `containers "a", "b"`.
fn containers_phrase(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    if names.len() == 1 {
        format!("container {}", quoted[0])
    } else {
        format!("containers {}", quoted.join(", "))
    }
}

fn plural(one: &str, many: &str, n: usize) -> String {
    if n == 1 { one.into() } else { many.into() }
}

const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn adds(c: &Value) -> Vec<String> {
    sc(c, "capabilities")
        .and_then(|k| k.get("add"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The checks, sorted by upstream's check IDs (which orders its messages);
/// restricted's versions of capabilities, seccomp and volumes replace the
/// baseline ones.
fn checks(level: Level, pod: &Value) -> Vec<(&'static str, Option<String>)> {
    let mut out: Vec<(&'static str, Option<String>)> = Vec::new();
    if level == Level::Privileged {
        return out;
    }
    let restricted = level == Level::Restricted;
    let null = Value::Null;
    let spec = pod.get("spec").unwrap_or(&null);
    let psc = spec.get("securityContext").unwrap_or(&null);
    let cs = Containers::of(spec);

    // allowPrivilegeEscalation (restricted)
    if restricted {
        let bad: Vec<&str> =
            cs.named_where(|c| sc(c, "allowPrivilegeEscalation") != Some(&json!(false)));
        if !bad.is_empty() {
            out.push((
                "allowPrivilegeEscalation != false",
                Some(format!(
                    "{} must set securityContext.allowPrivilegeEscalation=false",
                    containers_phrase(&bad)
                )),
            ));
        }
    }
    // capabilities_baseline / capabilities_restricted
    if restricted {
        let mut details = Vec::new();
        let no_drop: Vec<&str> = cs.named_where(|c| {
            !sc(c, "capabilities")
                .and_then(|k| k.get("drop"))
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        });
        if !no_drop.is_empty() {
            details.push(format!(
                "{} must set securityContext.capabilities.drop=[\"ALL\"]",
                containers_phrase(&no_drop)
            ));
        }
        for c in &cs.all {
            let extra: Vec<String> = adds(c)
                .into_iter()
                .filter(|a| a != "NET_BIND_SERVICE")
                .collect();
            if !extra.is_empty() {
                details.push(format!(
                    "container {:?} must not include {} in securityContext.capabilities.add",
                    name(c),
                    quote_list(&extra)
                ));
            }
        }
        if !details.is_empty() {
            out.push(("unrestricted capabilities", Some(details.join("; "))));
        }
    } else {
        let mut details = Vec::new();
        for c in &cs.all {
            let extra: Vec<String> = adds(c)
                .into_iter()
                .filter(|a| !BASELINE_CAPS.contains(&a.as_str()))
                .collect();
            if !extra.is_empty() {
                details.push(format!(
                    "container {:?} must not include {} in securityContext.capabilities.add",
                    name(c),
                    quote_list(&extra)
                ));
            }
        }
        if !details.is_empty() {
            out.push(("non-default capabilities", Some(details.join("; "))));
        }
    }
    // hostNamespaces
    let host: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec.get(**f) == Some(&json!(true)))
        .map(|f| format!("{f}=true"))
        .collect();
    if !host.is_empty() {
        out.push(("host namespaces", Some(host.join(", "))));
    }
    // hostPathVolumes (baseline; restricted's volume check covers it)
    let volumes: Vec<&Value> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    if !restricted {
        let hp: Vec<String> = volumes
            .iter()
            .filter(|v| v.get("hostPath").is_some())
            .map(|v| format!("{:?}", name(v)))
            .collect();
        if !hp.is_empty() {
            out.push((
                "hostPath volumes",
                Some(format!(
                    "{} {}",
                    plural("volume", "volumes", hp.len()),
                    hp.join(", ")
                )),
            ));
        }
    }
    // hostPorts
    let mut port_details = Vec::new();
    for c in &cs.all {
        let ports: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("hostPort").and_then(Value::as_i64))
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
            .collect();
        if !ports.is_empty() {
            port_details.push(format!(
                "container {:?} uses {} {}",
                name(c),
                plural("hostPort", "hostPorts", ports.len()),
                ports.join(", ")
            ));
        }
    }
    if !port_details.is_empty() {
        out.push(("hostPort", Some(port_details.join("; "))));
    }
    // privileged
    let privileged: Vec<&str> = cs.named_where(|c| sc(c, "privileged") == Some(&json!(true)));
    if !privileged.is_empty() {
        out.push((
            "privileged",
            Some(format!(
                "{} must not set securityContext.privileged=true",
                containers_phrase(&privileged)
            )),
        ));
    }
    // procMount
    let unmasked: Vec<&str> = cs.named_where(|c| {
        sc(c, "procMount")
            .and_then(Value::as_str)
            .is_some_and(|m| m != "Default")
    });
    if !unmasked.is_empty() {
        out.push((
            "procMount",
            Some(format!(
                "{} must not set securityContext.procMount to \"Unmasked\"",
                containers_phrase(&unmasked)
            )),
        ));
    }
    // restrictedVolumes
    if restricted {
        let mut details = Vec::new();
        for v in &volumes {
            let Some(obj) = v.as_object() else { continue };
            if let Some(kind) = obj
                .keys()
                .find(|k| *k != "name" && !RESTRICTED_VOLUMES.contains(&k.as_str()))
            {
                details.push(format!(
                    "volume {:?} uses restricted volume type {kind:?}",
                    name(v)
                ));
            }
        }
        if !details.is_empty() {
            out.push(("restricted volume types", Some(details.join("; "))));
        }
    }
    // runAsNonRoot (restricted)
    if restricted {
        let pod_says = psc.get("runAsNonRoot").and_then(Value::as_bool);
        let mut details = Vec::new();
        if pod_says == Some(false) {
            details.push("pod must not set securityContext.runAsNonRoot=false".to_string());
        }
        let explicit_false: Vec<&str> =
            cs.named_where(|c| sc(c, "runAsNonRoot") == Some(&json!(false)));
        if !explicit_false.is_empty() {
            details.push(format!(
                "{} must not set securityContext.runAsNonRoot=false",
                containers_phrase(&explicit_false)
            ));
        }
        if pod_says != Some(true) {
            let unset: Vec<&str> = cs.named_where(|c| sc(c, "runAsNonRoot").is_none());
            if !unset.is_empty() {
                details.push(format!(
                    "pod or {} must set securityContext.runAsNonRoot=true",
                    containers_phrase(&unset)
                ));
            }
        }
        if !details.is_empty() {
            out.push(("runAsNonRoot != true", Some(details.join("; "))));
        }
        // runAsUser
        let mut details = Vec::new();
        if psc.get("runAsUser") == Some(&json!(0)) {
            details.push("pod must not set runAsUser=0".to_string());
        }
        let root: Vec<&str> = cs.named_where(|c| sc(c, "runAsUser") == Some(&json!(0)));
        if !root.is_empty() {
            details.push(format!(
                "{} must not set runAsUser=0",
                containers_phrase(&root)
            ));
        }
        if !details.is_empty() {
            out.push(("runAsUser=0", Some(details.join("; "))));
        }
    }
    // seLinuxOptions
    let selinux_bad = |o: Option<&Value>| {
        o.is_some_and(|o| {
            let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
            !matches!(
                ty,
                "" | "container_t" | "container_init_t" | "container_kvm_t" | "container_engine_t"
            ) || o.get("user").is_some()
                || o.get("role").is_some()
        })
    };
    let mut se = Vec::new();
    if selinux_bad(psc.get("seLinuxOptions")) {
        se.push("pod".to_string());
    }
    let se_cs: Vec<&str> = cs.named_where(|c| selinux_bad(sc(c, "seLinuxOptions")));
    if !se_cs.is_empty() {
        se.push(containers_phrase(&se_cs));
    }
    if !se.is_empty() {
        out.push((
            "seLinuxOptions",
            Some(format!(
                "{} set forbidden securityContext.seLinuxOptions",
                se.join(" and ")
            )),
        ));
    }
    // seccompProfile_baseline / seccompProfile_restricted
    let seccomp = |v: Option<&Value>| {
        v.and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let pod_seccomp = seccomp(psc.get("seccompProfile"));
    // Unconfined is refused at both levels; restricted also requires a
    // profile on the pod or on every container.
    let mut details = Vec::new();
    if pod_seccomp.as_deref() == Some("Unconfined") {
        details.push(
            "pod must not set securityContext.seccompProfile.type to \"Unconfined\"".to_string(),
        );
    }
    let unconfined: Vec<&str> =
        cs.named_where(|c| seccomp(sc(c, "seccompProfile")).as_deref() == Some("Unconfined"));
    if !unconfined.is_empty() {
        details.push(format!(
            "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            containers_phrase(&unconfined)
        ));
    }
    if restricted && !matches!(pod_seccomp.as_deref(), Some("RuntimeDefault" | "Localhost")) {
        let unset: Vec<&str> = cs.named_where(|c| seccomp(sc(c, "seccompProfile")).is_none());
        if !unset.is_empty() {
            details.push(format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&unset)
            ));
        }
    }
    if !details.is_empty() {
        out.push(("seccompProfile", Some(details.join("; "))));
    }
    // sysctls
    let bad_sysctls: Vec<String> = psc
        .get("sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .map(str::to_string)
        .collect();
    if !bad_sysctls.is_empty() {
        out.push(("forbidden sysctls", Some(bad_sysctls.join(", "))));
    }
    out
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn a_plain_pod_violates_restricted_as_upstream_says() {
        let p = pod(json!({"containers": [{"name": "c", "image": "nginx"}]}));
        assert!(evaluate(Level::Baseline, &p).is_empty());
        assert_eq!(
            evaluate(Level::Restricted, &p),
            [
                "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false)",
                "unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"])",
                "runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true)",
                "seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            ]
        );
    }

    #[test]
    fn a_hardened_pod_passes_restricted() {
        let p = pod(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "d", "emptyDir": {}}],
            "containers": [{"name": "c", "image": "x", "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]
        }));
        assert!(
            evaluate(Level::Restricted, &p).is_empty(),
            "{:?}",
            evaluate(Level::Restricted, &p)
        );
    }

    #[test]
    fn baseline_catches_host_access_and_privilege() {
        let p = pod(json!({
            "hostNetwork": true,
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
            "containers": [
                {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}],
                 "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}},
                {"name": "b", "image": "x", "securityContext": {"privileged": true}}]
        }));
        assert_eq!(
            evaluate(Level::Baseline, &p),
            [
                "non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add)",
                "host namespaces (hostNetwork=true)",
                "hostPath volumes (volume \"root\")",
                "hostPort (container \"a\" uses hostPort 80)",
                "privileged (containers \"a\", \"b\" must not set securityContext.privileged=true)",
                "forbidden sysctls (kernel.msgmax)",
            ]
        );
        // Restricted replaces the baseline volume check with its own.
        let r = evaluate(Level::Restricted, &p);
        assert!(
            r.contains(&"restricted volume types (volume \"root\" uses restricted volume type \"hostPath\")".to_string()),
            "{r:?}"
        );
        assert!(
            !r.iter().any(|m| m.starts_with("hostPath volumes")),
            "{r:?}"
        );
    }

    #[test]
    fn namespace_labels_are_validated() {
        let ns = json!({"metadata": {"name": "n", "labels": {
            "pod-security.kubernetes.io/enforce": "strict",
            "pod-security.kubernetes.io/warn-version": "1.30"}}});
        let errs = validate_namespace_labels(&ns);
        assert_eq!(errs.len(), 2);
        let ok = json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "v1.33"}}});
        assert!(validate_namespace_labels(&ok).is_empty());
        assert_eq!(policy(&ok, "enforce").label(), "restricted:v1.33");
        assert_eq!(policy(&ok, "warn").level, Level::Privileged);
    }
}
