//! A container's environment, as the kubelet's makeEnvironmentVariables:
//! envFrom (ConfigMaps and Secrets, with prefixes), env (values with
//! `$(VAR)` expansion, configMapKeyRef, secretKeyRef, fieldRef,
//! resourceFieldRef), then the Docker-link-style variables of the
//! namespace's Services (and the `kubernetes` Service) for names not set.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

use super::command::expand;
use crate::registry::strategy::kinds::quantity;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// Upstream's CreateContainerConfigError messages.
    #[error("{0}")]
    Config(String),
}

/// What the environment is made from, fetched by the caller.
pub struct EnvSources<'a> {
    /// Services of the pod's namespace (plus `default/kubernetes`).
    pub services: &'a [Service],
    pub configmaps: &'a BTreeMap<String, ConfigMap>,
    pub secrets: &'a BTreeMap<String, Secret>,
    /// The node's allocatable cpu (millicores) and memory (bytes): what
    /// resourceFieldRef reports for a container without limits.
    pub node_cpu_milli: i128,
    pub node_memory: i128,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
}

/// The names of the ConfigMaps and Secrets the container's env refers to,
/// so the caller can fetch them.
pub fn referenced_objects(c: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for f in c.env_from.iter().flatten() {
        if let Some(r) = &f.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &f.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        let Some(vf) = &e.value_from else { continue };
        if let Some(r) = &vf.config_map_key_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &vf.secret_key_ref {
            secrets.push(r.name.clone());
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return Some(String::from_utf8_lossy(&v.0).into_owned());
    }
    s.string_data.as_ref().and_then(|d| d.get(key)).cloned()
}

fn configmap_value(c: &ConfigMap, key: &str) -> Option<String> {
    if let Some(v) = c.data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    c.binary_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

/// The container's environment in order (later entries win on duplicates,
/// which `dedup_last` resolves).
pub fn container_env(
    pod: &Pod,
    c: &Container,
    src: &EnvSources<'_>,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out: Vec<(String, String)> = Vec::new();
    let mut defined: HashMap<String, String> = HashMap::new();
    let service_links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let service_env = service_env_vars(src.services, ns, service_links);

    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        if let Some(r) = &f.config_map_ref {
            match src.configmaps.get(&r.name) {
                Some(cm) => {
                    let mut keys: BTreeMap<String, String> = BTreeMap::new();
                    for (k, v) in cm.data.iter().flatten() {
                        keys.insert(k.clone(), v.clone());
                    }
                    for (k, v) in cm.binary_data.iter().flatten() {
                        keys.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
                    }
                    for (k, v) in keys {
                        let name = format!("{prefix}{k}");
                        defined.insert(name.clone(), v.clone());
                        out.push((name, v));
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(EnvError::Config(format!(
                        "configmap \"{}\" not found",
                        r.name
                    )));
                }
            }
        }
        if let Some(r) = &f.secret_ref {
            match src.secrets.get(&r.name) {
                Some(s) => {
                    let mut keys: BTreeMap<String, String> = BTreeMap::new();
                    for k in s.data.iter().flatten().map(|(k, _)| k) {
                        if let Some(v) = secret_value(s, k) {
                            keys.insert(k.clone(), v);
                        }
                    }
                    for (k, v) in keys {
                        let name = format!("{prefix}{k}");
                        defined.insert(name.clone(), v.clone());
                        out.push((name, v));
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(EnvError::Config(format!("secret \"{}\" not found", r.name)));
                }
            }
        }
    }

    for e in c.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.config_map_key_ref {
                match src.configmaps.get(&r.name) {
                    Some(cm) => match configmap_value(cm, &r.key) {
                        Some(v) => v,
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(EnvError::Config(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(EnvError::Config(format!(
                            "configmap \"{}\" not found",
                            r.name
                        )));
                    }
                }
            } else if let Some(r) = &vf.secret_key_ref {
                match src.secrets.get(&r.name) {
                    Some(s) => match secret_value(s, &r.key) {
                        Some(v) => v,
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(EnvError::Config(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(EnvError::Config(format!("secret \"{}\" not found", r.name)));
                    }
                }
            } else if let Some(f) = &vf.field_ref {
                field_value(pod, &f.field_path, src)?
            } else if let Some(r) = &vf.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => pod
                        .spec
                        .as_ref()
                        .and_then(|s| {
                            s.containers
                                .iter()
                                .chain(s.init_containers.iter().flatten())
                                .find(|c| c.name == name)
                        })
                        .unwrap_or(c),
                    None => c,
                };
                resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    src,
                )?
            } else {
                String::new()
            }
        } else {
            // Expand against what is defined so far, then the service vars.
            let raw = e.value.clone().unwrap_or_default();
            let lookup = |n: &str| {
                defined
                    .get(n)
                    .cloned()
                    .or_else(|| service_env.get(n).cloned())
            };
            expand(&raw, &lookup)
        };
        defined.insert(e.name.clone(), value.clone());
        out.push((e.name.clone(), value));
    }

    for (k, v) in service_env {
        if !defined.contains_key(&k) {
            out.push((k, v));
        }
    }
    Ok(dedup_last(out))
}

/// Keep the last value of each name, in order of first appearance.
pub fn dedup_last(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        match index.get(&k) {
            Some(&i) => out[i].1 = v,
            None => {
                index.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    out
}

/// `metadata.name`, `metadata.labels['x']`, `status.podIP`, ...
pub fn field_value(pod: &Pod, path: &str, src: &EnvSources<'_>) -> Result<String, EnvError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    if let Some(k) = subscript("metadata.labels['") {
        return Ok(m
            .labels
            .as_ref()
            .and_then(|l| l.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(k) = subscript("metadata.annotations['") {
        return Ok(m
            .annotations
            .as_ref()
            .and_then(|l| l.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    let format_map = |map: Option<&BTreeMap<String, String>>| {
        map.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(m.labels.as_ref()),
        "metadata.annotations" => format_map(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => src.host_ip.clone().unwrap_or_default(),
        "status.podIP" | "status.podIPs" => src.pod_ip.clone().unwrap_or_default(),
        other => {
            return Err(EnvError::Config(format!("unsupported fieldPath: {other}")));
        }
    })
}

/// `limits.cpu`, `requests.memory`, ... divided by the divisor and rounded
/// up, as upstream's ExtractContainerResourceValue; limits default to the
/// node's allocatable.
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    src: &EnvSources<'_>,
) -> Result<String, EnvError> {
    let get = |which: &str, key: &str| -> Option<i128> {
        let r = c.resources.as_ref()?;
        let map = if which == "limits" {
            r.limits.as_ref()
        } else {
            r.requests.as_ref()
        }?;
        quantity::parse(&map.get(key)?.0).ok().map(|q| q.0)
    };
    let nano = 1_000_000_000i128;
    let value = match resource {
        "limits.cpu" => get("limits", "cpu").unwrap_or(src.node_cpu_milli * 1_000_000),
        "requests.cpu" => get("requests", "cpu").unwrap_or(0),
        "limits.memory" => get("limits", "memory").unwrap_or(src.node_memory * nano),
        "requests.memory" => get("requests", "memory").unwrap_or(0),
        "limits.ephemeral-storage" => get("limits", "ephemeral-storage").unwrap_or(0),
        "requests.ephemeral-storage" => get("requests", "ephemeral-storage").unwrap_or(0),
        other => {
            return Err(EnvError::Config(format!(
                "unsupported container resource : {other}"
            )));
        }
    };
    let div = match divisor.filter(|d| !d.is_empty()) {
        Some(d) => {
            quantity::parse(d)
                .map_err(|e| EnvError::Config(e.to_string()))?
                .0
        }
        None => nano,
    };
    if div <= 0 {
        return Err(EnvError::Config("divisor must be positive".into()));
    }
    let v = (value + div - 1) / div;
    Ok(v.to_string())
}

/// `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT>]` and the Docker link
/// variables (`<NAME>_PORT`, `<NAME>_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]`) of
/// the namespace's Services when service links are on, and always of the
/// `kubernetes` Service in `default`.
pub fn service_env_vars(
    services: &[Service],
    namespace: &str,
    service_links: bool,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for s in services {
        let Some(spec) = s.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.as_deref().unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = s.metadata.name.clone().unwrap_or_default();
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        if ns == namespace && service_links {
            chosen.insert(name, s);
        } else if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(s);
        }
    }
    for (name, s) in chosen {
        let Some(spec) = s.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let prefix = name.to_uppercase().replace('-', "_");
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
        out.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.insert(
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                );
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        let url = |p: &k8s_openapi::api::core::v1::ServicePort| {
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.clone()
            };
            format!("{}://{host}:{}", proto(p).to_lowercase(), p.port)
        };
        out.insert(format!("{prefix}_PORT"), url(first));
        for p in &ports {
            let base = format!("{prefix}_PORT_{}_{}", p.port, proto(p).to_uppercase());
            out.insert(base.clone(), url(p));
            out.insert(format!("{base}_PROTO"), proto(p).to_lowercase());
            out.insert(format!("{base}_PORT"), p.port.to_string());
            out.insert(format!("{base}_ADDR"), ip.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}}))
        .expect("svc")
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn service_link_variables() {
        let services = vec![
            svc(
                "default",
                "kubernetes",
                "10.43.0.1",
                json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            svc(
                "app",
                "my-web",
                "10.43.0.20",
                json!([{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]),
            ),
            svc("app", "headless", "None", json!([{"port": 80}])),
            svc("other", "far", "10.43.0.30", json!([{"port": 1}])),
        ];
        let env = service_env_vars(&services, "app", true);
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.43.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "10.43.0.1");
        assert_eq!(env["MY_WEB_SERVICE_HOST"], "10.43.0.20");
        assert_eq!(env["MY_WEB_SERVICE_PORT_DNS"], "53");
        assert_eq!(env["MY_WEB_PORT_53_UDP"], "udp://10.43.0.20:53");
        assert_eq!(env["MY_WEB_PORT_53_UDP_PROTO"], "udp");
        assert!(
            !env.keys()
                .any(|k| k.starts_with("HEADLESS") || k.starts_with("FAR"))
        );
        let env = service_env_vars(&services, "app", false);
        assert!(env.contains_key("KUBERNETES_SERVICE_HOST"));
        assert!(!env.contains_key("MY_WEB_SERVICE_HOST"), "links off");
    }

    #[test]
    fn env_from_sources_and_refs() {
        let p = pod(json!({
        "metadata": {"name": "p", "namespace": "app", "uid": "u-1", "labels": {"tier": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c",
            "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}},
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}, {"secretRef": {"name": "sec"}}],
            "env": [
                {"name": "GREETING", "value": "hi $(CM_a) $(NOPE) $(MY_WEB_SERVICE_HOST)"},
                {"name": "FROM_KEY", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "b"}}},
                {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                {"name": "CM_a", "value": "override"}
            ]}]}}));
        let c = p.spec.as_ref().expect("spec").containers[0].clone();
        let (cms, secrets) = referenced_objects(&c);
        assert_eq!(
            (cms, secrets),
            (vec!["cm".to_string()], vec!["sec".to_string()])
        );
        let mut configmaps = BTreeMap::new();
        configmaps.insert(
            "cm".to_string(),
            serde_json::from_value(json!({"data": {"a": "1", "b": "2"}})).expect("cm"),
        );
        let mut secret_map = BTreeMap::new();
        secret_map.insert(
            "sec".to_string(),
            serde_json::from_value(json!({"data": {"password": "czNjcjN0"}})).expect("s"),
        );
        let services = vec![svc("app", "my-web", "10.43.0.20", json!([{"port": 80}]))];
        let src = EnvSources {
            services: &services,
            configmaps: &configmaps,
            secrets: &secret_map,
            node_cpu_milli: 4000,
            node_memory: 1 << 30,
            pod_ip: Some("10.42.0.7".into()),
            host_ip: None,
        };
        let env: HashMap<String, String> = container_env(&p, &c, &src)
            .expect("env")
            .into_iter()
            .collect();
        assert_eq!(env["GREETING"], "hi 1 $(NOPE) 10.43.0.20");
        assert_eq!(env["FROM_KEY"], "2");
        assert_eq!(env["PASS"], "s3cr3t");
        assert_eq!(env["password"], "s3cr3t");
        assert_eq!(env["POD"], "p");
        assert_eq!(env["TIER"], "web");
        assert_eq!(env["IP"], "10.42.0.7");
        assert_eq!(env["MEM"], "64");
        assert_eq!(env["CPU"], "4", "no limit: node allocatable");
        assert_eq!(env["CPU_REQ"], "250");
        assert_eq!(env["CM_a"], "override", "later env wins");
        assert_eq!(env["MY_WEB_SERVICE_PORT"], "80");

        let empty = BTreeMap::new();
        let src = EnvSources {
            configmaps: &empty,
            secrets: &secret_map,
            ..src
        };
        assert_eq!(
            container_env(&p, &c, &src),
            Err(EnvError::Config("configmap \"cm\" not found".into()))
        );
        let mut cm_without_b = BTreeMap::new();
        cm_without_b.insert(
            "cm".to_string(),
            serde_json::from_value(json!({"data": {"a": "1"}})).expect("cm"),
        );
        let src = EnvSources {
            configmaps: &cm_without_b,
            ..src
        };
        assert_eq!(
            container_env(&p, &c, &src),
            Err(EnvError::Config(
                "couldn't find key b in ConfigMap app/cm".into()
            ))
        );
    }
}
