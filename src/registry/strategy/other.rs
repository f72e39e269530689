//! The remaining built-in kinds: autoscaling, policy, networking, discovery,
//! coordination, rbac, storage, scheduling, node, events.k8s.io,
//! certificates, admissionregistration and apiextensions.

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Map, Value, json};

use super::core::core_event_field;
use super::typed;
use super::util::{
    self, arr, child, child_opt, each_obj_mut, get, idx, join, s, set_default, set_default_str,
};
use super::validation;
use crate::api::status::FieldError;
use crate::registry::names;
use crate::registry::strategy::{NameRule, Strategy};

fn spec_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.as_object_mut().and_then(|m| child(m, "spec"))
}

fn reset_status(obj: &mut Value, status: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
    }
}

/// A kind whose only hook is the typed decode.
pub struct TypedOnly {
    pub group: &'static str,
    pub kind: &'static str,
    pub name_rule: NameRule,
}

#[async_trait]
impl Strategy for TypedOnly {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin(self.group, self.kind, obj)
    }
    fn name_rule(&self) -> NameRule {
        self.name_rule
    }
}

// ---------------------------------------------------------------- HorizontalPodAutoscaler

/// HPA scale-up/down defaults (GenerateHPAScaleUpRules/ScaleDownRules).
fn default_scaling_rules(rules: &mut Map<String, Value>, up: bool) {
    set_default(
        rules,
        "stabilizationWindowSeconds",
        json!(if up { 0 } else { 300 }),
    );
    set_default_str(rules, "selectPolicy", "Max");
    let policies = if up {
        json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}])
    } else {
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
    };
    set_default(rules, "policies", policies);
}

pub struct HpaStrategy;

fn is_hpa_v1(obj: &Value) -> bool {
    s(obj, "/apiVersion") == "autoscaling/v1"
}

#[async_trait]
impl Strategy for HpaStrategy {
    fn default(&self, obj: &mut Value) {
        let v1 = is_hpa_v1(obj);
        let Some(spec) = spec_mut(obj) else { return };
        set_default(spec, "minReplicas", json!(1));
        if v1 {
            // The v1 CPU default is applied in conversion, as upstream.
            return;
        }
        let no_metrics = spec
            .get("metrics")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if no_metrics {
            spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            );
        }
        if let Some(b) = child_opt(spec, "behavior") {
            if let Some(up) = child(b, "scaleUp") {
                default_scaling_rules(up, true);
            }
            if let Some(down) = child(b, "scaleDown") {
                default_scaling_rules(down, false);
            }
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("autoscaling", "HorizontalPodAutoscaler", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        let st = if is_hpa_v1(obj) {
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        } else {
            json!({"desiredReplicas": 0})
        };
        reset_status(obj, st);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(min) = util::int(obj, "/spec/minReplicas")
            && min < 1
        {
            errs.push(FieldError::invalid_raw(
                "spec.minReplicas",
                min,
                "must be greater than or equal to 1",
            ));
        }
        let max = util::int(obj, "/spec/maxReplicas").unwrap_or(0);
        if max < 1 {
            errs.push(FieldError::invalid_raw(
                "spec.maxReplicas",
                max,
                "must be greater than 0",
            ));
        }
        if let Some(min) = util::int(obj, "/spec/minReplicas")
            && max < min
        {
            errs.push(FieldError::invalid_raw(
                "spec.maxReplicas",
                max,
                "must be greater than or equal to `minReplicas`",
            ));
        }
        if s(obj, "/spec/scaleTargetRef/kind").is_empty() {
            errs.push(FieldError::required("spec.scaleTargetRef.kind"));
        }
        let name = s(obj, "/spec/scaleTargetRef/name");
        if name.is_empty() {
            errs.push(FieldError::required("spec.scaleTargetRef.name"));
        } else {
            for m in names::validate_name(NameRule::PathSegment, name) {
                errs.push(FieldError::invalid("spec.scaleTargetRef.name", name, m));
            }
        }
        if is_hpa_v1(obj)
            && let Some(t) = util::int(obj, "/spec/targetCPUUtilizationPercentage")
            && t < 1
        {
            errs.push(FieldError::invalid_raw(
                "spec.targetCPUUtilizationPercentage",
                t,
                "must be greater than or equal to 1",
            ));
        }
        errs
    }
}

// ---------------------------------------------------------------- PodDisruptionBudget

pub struct PdbStrategy;

#[async_trait]
impl Strategy for PdbStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("policy", "PodDisruptionBudget", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        reset_status(
            obj,
            json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}),
        );
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let min = get(obj, "/spec/minAvailable");
        let max = get(obj, "/spec/maxUnavailable");
        if min.is_some() && max.is_some() {
            errs.push(FieldError::invalid_raw(
                "spec",
                obj.get("spec").map(Value::to_string).unwrap_or_default(),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        validation::validate_int_or_percent(&mut errs, min, "spec.minAvailable", true);
        validation::validate_int_or_percent(&mut errs, max, "spec.maxUnavailable", true);
        if let Some(sel) = get(obj, "/spec/selector") {
            validation::validate_label_selector(&mut errs, sel, "spec.selector");
        }
        util::check_enum(
            &mut errs,
            "spec.unhealthyPodEvictionPolicy",
            obj.pointer("/spec/unhealthyPodEvictionPolicy"),
            &["AlwaysAllow", "IfHealthyBudget"],
            false,
        );
        errs
    }
}

// ---------------------------------------------------------------- networking.k8s.io

fn validate_ingress_backend(errs: &mut Vec<FieldError>, b: &Value, p: &str) {
    let svc = get(b, "/service");
    let res = get(b, "/resource");
    match (svc, res) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            p,
            "",
            "cannot set both service and resource backends",
        )),
        (None, None) => errs.push(FieldError::invalid(p, "", "one backend must be specified")),
        (Some(svc), None) => {
            let name = s(svc, "/name");
            if name.is_empty() {
                errs.push(FieldError::required(join(p, "service.name")));
            } else {
                for m in names::is_dns1035_label(name) {
                    errs.push(FieldError::invalid(join(p, "service.name"), name, m));
                }
            }
            let pname = s(svc, "/port/name");
            let pnum = util::int(svc, "/port/number").unwrap_or(0);
            match (pname.is_empty(), pnum == 0) {
                (false, false) => errs.push(FieldError::invalid(
                    join(p, "service.port"),
                    pname,
                    "cannot set both port name & port number",
                )),
                (true, true) => errs.push(FieldError::invalid(
                    join(p, "service.port"),
                    "",
                    "port name or number is required",
                )),
                (false, true) => {
                    for m in names::is_valid_port_name(pname) {
                        errs.push(FieldError::invalid(join(p, "service.port.name"), pname, m));
                    }
                }
                (true, false) => {
                    for m in names::is_valid_port_num(pnum) {
                        errs.push(FieldError::invalid_raw(
                            join(p, "service.port.number"),
                            pnum,
                            m,
                        ));
                    }
                }
            }
        }
        (None, Some(r)) => {
            if s(r, "/kind").is_empty() {
                errs.push(FieldError::required(join(p, "resource.kind")));
            }
            if s(r, "/name").is_empty() {
                errs.push(FieldError::required(join(p, "resource.name")));
            }
        }
    }
}

fn validate_host(errs: &mut Vec<FieldError>, host: &str, p: &str) {
    let h = host.strip_prefix("*.").unwrap_or(host);
    if host.parse::<std::net::IpAddr>().is_ok() {
        errs.push(FieldError::invalid(
            p,
            host,
            "must be a DNS name, not an IP address",
        ));
        return;
    }
    for m in names::is_dns1123_subdomain(h) {
        let m = if host.starts_with("*.") {
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string()
        } else {
            m
        };
        errs.push(FieldError::invalid(p, host, m));
    }
}

pub struct IngressStrategy;

#[async_trait]
impl Strategy for IngressStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("networking.k8s.io", "Ingress", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"loadBalancer": {}}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let rules = arr(obj, "/spec/rules");
        let default_backend = get(obj, "/spec/defaultBackend");
        if rules.is_empty() && default_backend.is_none() {
            errs.push(FieldError::invalid(
                "spec.rules",
                "[]",
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        if let Some(b) = default_backend {
            validate_ingress_backend(&mut errs, b, "spec.defaultBackend");
        }
        for (i, r) in rules.iter().enumerate() {
            let rp = idx("spec.rules", i);
            let host = s(r, "/host");
            if !host.is_empty() {
                validate_host(&mut errs, host, &join(&rp, "host"));
            }
            let Some(http) = get(r, "/http") else {
                continue;
            };
            let paths = arr(http, "/paths");
            if paths.is_empty() {
                errs.push(FieldError::required(join(&rp, "http.paths")));
            }
            for (j, p) in paths.iter().enumerate() {
                let pp = idx(&join(&rp, "http.paths"), j);
                let pt = s(p, "/pathType");
                let path = s(p, "/path");
                match pt {
                    "" => errs.push(util::required(
                        join(&pp, "pathType"),
                        "pathType must be specified",
                    )),
                    "Exact" | "Prefix" => {
                        if !path.starts_with('/') {
                            errs.push(FieldError::invalid(
                                join(&pp, "path"),
                                path,
                                "must be an absolute path",
                            ));
                        }
                    }
                    "ImplementationSpecific" => {
                        if !path.is_empty() && !path.starts_with('/') {
                            errs.push(FieldError::invalid(
                                join(&pp, "path"),
                                path,
                                "must be an absolute path",
                            ));
                        }
                    }
                    other => errs.push(FieldError::not_supported(
                        join(&pp, "pathType"),
                        other,
                        &["Exact", "ImplementationSpecific", "Prefix"],
                    )),
                }
                validate_ingress_backend(
                    &mut errs,
                    p.get("backend").unwrap_or(&Value::Null),
                    &join(&pp, "backend"),
                );
            }
        }
        for (i, t) in arr(obj, "/spec/tls").iter().enumerate() {
            for (j, h) in arr(t, "/hosts").iter().enumerate() {
                validate_host(
                    &mut errs,
                    h.as_str().unwrap_or(""),
                    &idx(&join(&idx("spec.tls", i), "hosts"), j),
                );
            }
        }
        let class = s(obj, "/spec/ingressClassName");
        if !class.is_empty() {
            for m in names::is_dns1123_subdomain(class) {
                errs.push(FieldError::invalid("spec.ingressClassName", class, m));
            }
        }
        errs
    }
}

pub struct IngressClassStrategy;

#[async_trait]
impl Strategy for IngressClassStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("networking.k8s.io", "IngressClass", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let c = s(obj, "/spec/controller");
        if c.is_empty() {
            errs.push(FieldError::required("spec.controller"));
        } else if c.len() > 250 {
            errs.push(util::too_long("spec.controller", 250));
        }
        if let Some(p) = get(obj, "/spec/parameters") {
            if s(p, "/kind").is_empty() {
                errs.push(FieldError::required("spec.parameters.kind"));
            }
            if s(p, "/name").is_empty() {
                errs.push(FieldError::required("spec.parameters.name"));
            }
            util::check_enum(
                &mut errs,
                "spec.parameters.scope",
                p.get("scope"),
                &["Cluster", "Namespace"],
                false,
            );
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_immutable(&mut errs, new, old, "spec.controller");
        errs
    }
}

pub struct NetworkPolicyStrategy;

#[async_trait]
impl Strategy for NetworkPolicyStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = spec_mut(obj) else { return };
        for dir in ["ingress", "egress"] {
            for rule in each_obj_mut(spec, dir) {
                for p in each_obj_mut(rule, "ports") {
                    set_default_str(p, "protocol", "TCP");
                }
            }
        }
        let empty_types = spec
            .get("policyTypes")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if empty_types {
            let has_egress = spec
                .get("egress")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            let types = if has_egress {
                json!(["Ingress", "Egress"])
            } else {
                json!(["Ingress"])
            };
            spec.insert("policyTypes".into(), types);
        }
        set_default(spec, "podSelector", json!({}));
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("networking.k8s.io", "NetworkPolicy", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(sel) = get(obj, "/spec/podSelector") {
            validation::validate_label_selector(&mut errs, sel, "spec.podSelector");
        }
        for (i, t) in arr(obj, "/spec/policyTypes").iter().enumerate() {
            let t = t.as_str().unwrap_or("");
            if t != "Ingress" && t != "Egress" {
                errs.push(FieldError::not_supported(
                    idx("spec.policyTypes", i),
                    t,
                    &["Egress", "Ingress"],
                ));
            }
        }
        for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
            for (i, rule) in arr(obj, &format!("/spec/{dir}")).iter().enumerate() {
                let rp = idx(&format!("spec.{dir}"), i);
                for (j, p) in arr(rule, "/ports").iter().enumerate() {
                    let pp = idx(&join(&rp, "ports"), j);
                    util::check_enum(
                        &mut errs,
                        &join(&pp, "protocol"),
                        p.get("protocol"),
                        &["SCTP", "TCP", "UDP"],
                        false,
                    );
                    if let Some(port) = get(p, "/port") {
                        validation::validate_port_ref(&mut errs, port, &join(&pp, "port"));
                    }
                    if let Some(end) = util::int(p, "/endPort") {
                        let start = util::int(p, "/port");
                        match start {
                            None => errs.push(FieldError::required(join(&pp, "port"))),
                            Some(st) if end < st => errs.push(FieldError::invalid_raw(
                                join(&pp, "endPort"),
                                end,
                                "must be greater than or equal to `port`",
                            )),
                            _ => {}
                        }
                    }
                }
                for (j, peer) in arr(rule, &format!("/{peers}")).iter().enumerate() {
                    let pp = idx(&join(&rp, peers), j);
                    if let Some(cidr) = get(peer, "/ipBlock/cidr").and_then(Value::as_str)
                        && crate::registry::allocator::Cidr::parse(cidr).is_none()
                    {
                        errs.push(FieldError::invalid(
                            join(&pp, "ipBlock.cidr"),
                            cidr,
                            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                        ));
                    }
                    for sel in ["podSelector", "namespaceSelector"] {
                        if let Some(v) = get(peer, &format!("/{sel}")) {
                            validation::validate_label_selector(&mut errs, v, &join(&pp, sel));
                        }
                    }
                }
            }
        }
        errs
    }
}

// ---------------------------------------------------------------- discovery / coordination

pub struct EndpointSliceStrategy;

#[async_trait]
impl Strategy for EndpointSliceStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else { return };
        for p in each_obj_mut(m, "ports") {
            set_default(p, "protocol", json!("TCP"));
            set_default(p, "name", json!(""));
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("discovery.k8s.io", "EndpointSlice", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let at = s(obj, "/addressType");
        util::check_enum(
            &mut errs,
            "addressType",
            obj.get("addressType"),
            &["FQDN", "IPv4", "IPv6"],
            true,
        );
        for (i, ep) in arr(obj, "/endpoints").iter().enumerate() {
            let p = idx("endpoints", i);
            let addrs = arr(ep, "/addresses");
            if addrs.is_empty() {
                errs.push(util::required(
                    join(&p, "addresses"),
                    "must contain at least 1 address",
                ));
            } else if addrs.len() > 100 {
                errs.push(util::too_many(join(&p, "addresses"), addrs.len(), 100));
            }
            for (j, a) in addrs.iter().enumerate() {
                let a = a.as_str().unwrap_or("");
                let ap = idx(&join(&p, "addresses"), j);
                match at {
                    "IPv4" if a.parse::<std::net::Ipv4Addr>().is_err() => {
                        errs.push(FieldError::invalid(ap, a, "must be a valid IPv4 address"))
                    }
                    "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => {
                        errs.push(FieldError::invalid(ap, a, "must be a valid IPv6 address"))
                    }
                    "FQDN" => {
                        for m in names::is_dns1123_subdomain(a) {
                            errs.push(FieldError::invalid(ap.clone(), a, m));
                        }
                    }
                    _ => {}
                }
            }
        }
        for (i, p) in arr(obj, "/ports").iter().enumerate() {
            let pp = idx("ports", i);
            let name = s(p, "/name");
            if !name.is_empty() {
                for m in names::is_dns1123_label(name) {
                    errs.push(FieldError::invalid(join(&pp, "name"), name, m));
                }
            }
            util::check_enum(
                &mut errs,
                &join(&pp, "protocol"),
                p.get("protocol"),
                &["SCTP", "TCP", "UDP"],
                false,
            );
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_immutable(&mut errs, new, old, "addressType");
        errs
    }
}

pub struct LeaseStrategy;

#[async_trait]
impl Strategy for LeaseStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("coordination.k8s.io", "Lease", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(d) = util::int(obj, "/spec/leaseDurationSeconds")
            && d <= 0
        {
            errs.push(FieldError::invalid_raw(
                "spec.leaseDurationSeconds",
                d,
                "must be greater than 0",
            ));
        }
        util::check_non_negative(
            &mut errs,
            "spec.leaseTransitions",
            util::int(obj, "/spec/leaseTransitions"),
        );
        errs
    }
}

// ---------------------------------------------------------------- rbac.authorization.k8s.io

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub struct RbacRoleStrategy {
    pub kind: &'static str,
}

#[async_trait]
impl Strategy for RbacRoleStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin(RBAC_GROUP, self.kind, obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let namespaced = self.kind == "Role";
        for (i, r) in arr(obj, "/rules").iter().enumerate() {
            let p = idx("rules", i);
            if arr(r, "/verbs").is_empty() {
                errs.push(util::required(
                    join(&p, "verbs"),
                    "verbs must contain at least one value",
                ));
            }
            let has_urls = !arr(r, "/nonResourceURLs").is_empty();
            if has_urls {
                if namespaced {
                    errs.push(FieldError::invalid_raw(
                        join(&p, "nonResourceURLs"),
                        Value::Array(arr(r, "/nonResourceURLs").to_vec()),
                        "namespaced rules cannot apply to non-resource URLs",
                    ));
                }
                if !arr(r, "/apiGroups").is_empty()
                    || !arr(r, "/resources").is_empty()
                    || !arr(r, "/resourceNames").is_empty()
                {
                    errs.push(FieldError::invalid_raw(
                        join(&p, "nonResourceURLs"),
                        Value::Array(arr(r, "/nonResourceURLs").to_vec()),
                        "rules cannot apply to both regular resources and non-resource URLs",
                    ));
                }
                continue;
            }
            if arr(r, "/apiGroups").is_empty() {
                errs.push(util::required(
                    join(&p, "apiGroups"),
                    "resource rules must supply at least one api group",
                ));
            }
            if arr(r, "/resources").is_empty() {
                errs.push(util::required(
                    join(&p, "resources"),
                    "resource rules must supply at least one resource",
                ));
            }
        }
        errs
    }
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}

pub struct RbacBindingStrategy {
    pub kind: &'static str,
}

fn default_binding(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    if let Some(rr) = child(m, "roleRef") {
        set_default_str(rr, "apiGroup", RBAC_GROUP);
    }
    for sub in each_obj_mut(m, "subjects") {
        let kind = sub
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if sub
            .get("apiGroup")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let g = if kind == "ServiceAccount" {
                ""
            } else {
                RBAC_GROUP
            };
            if kind == "User" || kind == "Group" || kind == "ServiceAccount" {
                sub.insert("apiGroup".into(), json!(g));
            }
        }
        if kind == "ServiceAccount" && sub.get("apiGroup").and_then(Value::as_str) == Some("") {
            sub.remove("apiGroup");
        }
    }
}

#[async_trait]
impl Strategy for RbacBindingStrategy {
    fn default(&self, obj: &mut Value) {
        default_binding(obj);
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin(RBAC_GROUP, self.kind, obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let cluster = self.kind == "ClusterRoleBinding";
        let g = s(obj, "/roleRef/apiGroup");
        if g != RBAC_GROUP {
            errs.push(FieldError::not_supported(
                "roleRef.apiGroup",
                g,
                &[RBAC_GROUP],
            ));
        }
        let allowed: &[&str] = if cluster {
            &["ClusterRole"]
        } else {
            &["ClusterRole", "Role"]
        };
        let kind = s(obj, "/roleRef/kind");
        if !allowed.contains(&kind) {
            errs.push(FieldError::not_supported("roleRef.kind", kind, allowed));
        }
        let rn = s(obj, "/roleRef/name");
        if rn.is_empty() {
            errs.push(FieldError::required("roleRef.name"));
        } else {
            for m in names::validate_name(NameRule::PathSegment, rn) {
                errs.push(FieldError::invalid("roleRef.name", rn, m));
            }
        }
        for (i, sub) in arr(obj, "/subjects").iter().enumerate() {
            let p = idx("subjects", i);
            let name = s(sub, "/name");
            if name.is_empty() {
                errs.push(FieldError::required(join(&p, "name")));
            }
            match s(sub, "/kind") {
                "ServiceAccount" => {
                    let ag = s(sub, "/apiGroup");
                    if !ag.is_empty() {
                        errs.push(FieldError::not_supported(join(&p, "apiGroup"), ag, &[""]));
                    }
                    if !name.is_empty() {
                        for m in names::is_dns1123_subdomain(name) {
                            errs.push(FieldError::invalid(join(&p, "name"), name, m));
                        }
                    }
                    if cluster && s(sub, "/namespace").is_empty() {
                        errs.push(FieldError::required(join(&p, "namespace")));
                    }
                }
                "User" | "Group" => {
                    let ag = s(sub, "/apiGroup");
                    if ag != RBAC_GROUP {
                        errs.push(FieldError::not_supported(
                            join(&p, "apiGroup"),
                            ag,
                            &[RBAC_GROUP],
                        ));
                    }
                }
                other => errs.push(FieldError::not_supported(
                    join(&p, "kind"),
                    other,
                    &["Group", "ServiceAccount", "User"],
                )),
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if new.get("roleRef") != old.get("roleRef") {
            errs.push(FieldError::invalid_raw(
                "roleRef",
                format!(
                    "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                    util::go_repr(&json!(s(new, "/roleRef/apiGroup"))),
                    util::go_repr(&json!(s(new, "/roleRef/kind"))),
                    util::go_repr(&json!(s(new, "/roleRef/name")))
                ),
                "cannot change roleRef",
            ));
        }
        errs
    }
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}

// ---------------------------------------------------------------- storage.k8s.io

pub struct StorageClassStrategy;

#[async_trait]
impl Strategy for StorageClassStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else { return };
        set_default_str(m, "reclaimPolicy", "Delete");
        set_default_str(m, "volumeBindingMode", "Immediate");
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("storage.k8s.io", "StorageClass", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let p = s(obj, "/provisioner");
        if p.is_empty() {
            errs.push(FieldError::required("provisioner"));
        } else {
            for m in names::is_qualified_name(&p.to_lowercase()) {
                errs.push(FieldError::invalid("provisioner", p, m));
            }
        }
        util::check_enum(
            &mut errs,
            "reclaimPolicy",
            obj.get("reclaimPolicy"),
            &["Delete", "Retain"],
            false,
        );
        util::check_enum(
            &mut errs,
            "volumeBindingMode",
            obj.get("volumeBindingMode"),
            &["Immediate", "WaitForFirstConsumer"],
            false,
        );
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for f in ["parameters", "provisioner", "reclaimPolicy"] {
            if get(new, &format!("/{f}")) != get(old, &format!("/{f}")) {
                errs.push(FieldError::forbidden(
                    f,
                    format!("updates to {f} are forbidden."),
                ));
            }
        }
        if get(new, "/volumeBindingMode") != get(old, "/volumeBindingMode") {
            errs.push(FieldError::forbidden(
                "volumeBindingMode",
                "field is immutable",
            ));
        }
        errs
    }
}

pub struct CsiDriverStrategy;

#[async_trait]
impl Strategy for CsiDriverStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = spec_mut(obj) else { return };
        set_default(spec, "attachRequired", json!(true));
        set_default(spec, "podInfoOnMount", json!(false));
        set_default(spec, "storageCapacity", json!(false));
        set_default_str(spec, "fsGroupPolicy", "ReadWriteOnceWithFSType");
        set_default(spec, "volumeLifecycleModes", json!(["Persistent"]));
        set_default(spec, "requiresRepublish", json!(false));
        set_default(spec, "seLinuxMount", json!(false));
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("storage.k8s.io", "CSIDriver", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_enum(
            &mut errs,
            "spec.fsGroupPolicy",
            obj.pointer("/spec/fsGroupPolicy"),
            &["File", "None", "ReadWriteOnceWithFSType"],
            false,
        );
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_immutable(&mut errs, new, old, "spec.attachRequired");
        errs
    }
}

pub struct VolumeAttachmentStrategy;

#[async_trait]
impl Strategy for VolumeAttachmentStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("storage.k8s.io", "VolumeAttachment", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"attached": false}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if s(obj, "/spec/attacher").is_empty() {
            errs.push(FieldError::required("spec.attacher"));
        }
        if s(obj, "/spec/nodeName").is_empty() {
            errs.push(FieldError::required("spec.nodeName"));
        }
        let n = ["inlineVolumeSpec", "persistentVolumeName"]
            .iter()
            .filter(|k| get(obj, &format!("/spec/source/{k}")).is_some())
            .count();
        if n != 1 {
            errs.push(util::required(
                "spec.source",
                "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
            ));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_immutable(&mut errs, new, old, "spec");
        errs
    }
}

// ---------------------------------------------------------------- scheduling / node

/// The highest priority a user-defined PriorityClass may have.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

pub struct PriorityClassStrategy;

#[async_trait]
impl Strategy for PriorityClassStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            set_default_str(m, "preemptionPolicy", "PreemptLowerPriority");
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("scheduling.k8s.io", "PriorityClass", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = s(obj, "/metadata/name");
        let value = util::int(obj, "/value").unwrap_or(0);
        if let Some(rest) = name.strip_prefix("system-") {
            let known = matches!(
                (rest, value),
                ("node-critical", 2_000_001_000) | ("cluster-critical", 2_000_000_000)
            );
            if !known {
                errs.push(FieldError::forbidden(
                    "metadata.name",
                    format!("priority class names with 'system-' prefix are reserved for system use only. error: {name} is not a known system priority class"),
                ));
            }
        } else if value > HIGHEST_USER_PRIORITY {
            errs.push(FieldError::forbidden(
                "value",
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"
                ),
            ));
        }
        util::check_enum(
            &mut errs,
            "preemptionPolicy",
            obj.get("preemptionPolicy"),
            &["Never", "PreemptLowerPriority"],
            false,
        );
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if get(new, "/value") != get(old, "/value") {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        util::check_immutable(&mut errs, new, old, "preemptionPolicy");
        errs
    }
}

pub struct RuntimeClassStrategy;

#[async_trait]
impl Strategy for RuntimeClassStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("node.k8s.io", "RuntimeClass", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let h = s(obj, "/handler");
        if h.is_empty() {
            errs.push(FieldError::required("handler"));
        } else {
            for m in names::is_dns1123_label(h) {
                errs.push(FieldError::invalid("handler", h, m));
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_immutable(&mut errs, new, old, "handler");
        errs
    }
}

// ---------------------------------------------------------------- events.k8s.io/v1

pub struct EventsV1Strategy;

/// events.k8s.io field selector names and the core fields they read.
const EVENTS_V1_FIELDS: &[(&str, &str)] = &[
    ("reason", "reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("type", "type"),
];

#[async_trait]
impl Strategy for EventsV1Strategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("events.k8s.io", "Event", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let ns = s(obj, "/metadata/namespace");
        let rns = s(obj, "/regarding/namespace");
        let mismatch = if rns.is_empty() {
            !ns.is_empty() && ns != "default" && ns != "kube-system"
        } else {
            rns != ns
        };
        if mismatch {
            errs.push(FieldError::invalid(
                "regarding.namespace",
                rns,
                "does not match event.namespace",
            ));
        }
        if get(obj, "/eventTime").is_none() {
            errs.push(FieldError::required("eventTime"));
        }
        let t = s(obj, "/type");
        if t != "Normal" && t != "Warning" {
            errs.push(FieldError::invalid(
                "type",
                "",
                format!("has invalid value: {t}"),
            ));
        }
        for f in ["deprecatedFirstTimestamp", "deprecatedLastTimestamp"] {
            if get(obj, &format!("/{f}")).is_some() {
                errs.push(FieldError::invalid(f, "", "needs to be unset"));
            }
        }
        if util::int(obj, "/deprecatedCount").unwrap_or(0) != 0 {
            errs.push(FieldError::invalid(
                "deprecatedCount",
                "",
                "needs to be unset",
            ));
        }
        let rc = s(obj, "/reportingController");
        if rc.is_empty() {
            errs.push(FieldError::required("reportingController"));
        } else {
            for m in names::is_qualified_name(rc) {
                errs.push(FieldError::invalid("reportingController", rc, m));
            }
        }
        for (f, max) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            let v = s(obj, &format!("/{f}"));
            if v.is_empty() {
                errs.push(FieldError::required(f));
            } else if v.len() > max {
                errs.push(FieldError::invalid(
                    f,
                    "",
                    format!("can have at most {max} characters"),
                ));
            }
        }
        if s(obj, "/note").len() > 1024 {
            errs.push(FieldError::invalid(
                "note",
                "",
                "can have at most 1024 characters",
            ));
        }
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        // The object is in events.k8s.io form; map back to core names.
        let core = EVENTS_V1_FIELDS
            .iter()
            .find(|(v1, _)| *v1 == field)
            .map(|(_, c)| *c)?;
        let as_core = json!({
            "involvedObject": obj.get("regarding").cloned().unwrap_or(json!({})),
            "reason": obj.get("reason").cloned().unwrap_or(Value::Null),
            "reportingComponent": obj.get("reportingController").cloned().unwrap_or(Value::Null),
            "type": obj.get("type").cloned().unwrap_or(Value::Null),
        });
        core_event_field(&as_core, core)
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "reason",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reportingController",
            "type",
        ]
    }
}

// ---------------------------------------------------------------- certificates.k8s.io

pub struct CsrStrategy;

const KEY_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

#[async_trait]
impl Strategy for CsrStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("certificates.k8s.io", "CertificateSigningRequest", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        reset_status(obj, json!({}));
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) {
        // Only metadata changes through the main resource.
        if let (Some(m), Some(spec)) = (new.as_object_mut(), old.get("spec")) {
            m.insert("spec".into(), spec.clone());
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        match obj
            .pointer("/spec/request")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            None => errs.push(FieldError::required("spec.request")),
            Some(r) => {
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(r)
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(&pem);
                if !text.contains("-----BEGIN CERTIFICATE REQUEST-----") {
                    errs.push(FieldError::invalid_raw(
                        "spec.request",
                        "[]byte{...}",
                        "PEM block type must be CERTIFICATE REQUEST",
                    ));
                }
            }
        }
        let signer = s(obj, "/spec/signerName");
        if signer.is_empty() {
            errs.push(FieldError::required("spec.signerName"));
        } else if !signer.contains('/') {
            errs.push(FieldError::invalid(
                "spec.signerName",
                signer,
                "must be a fully qualified domain and path of the form 'example.com/signer-name'",
            ));
        }
        let usages = arr(obj, "/spec/usages");
        if usages.is_empty() {
            errs.push(FieldError::required("spec.usages"));
        }
        for (i, u) in usages.iter().enumerate() {
            let u = u.as_str().unwrap_or("");
            if !KEY_USAGES.contains(&u) {
                errs.push(FieldError::not_supported(
                    idx("spec.usages", i),
                    u,
                    KEY_USAGES,
                ));
            }
        }
        if let Some(e) = util::int(obj, "/spec/expirationSeconds")
            && e < 600
        {
            errs.push(FieldError::invalid_raw(
                "spec.expirationSeconds",
                e,
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "spec.signerName").then(|| s(obj, "/spec/signerName").to_string())
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.signerName"]
    }
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}

// ---------------------------------------------------------------- admissionregistration.k8s.io

pub struct WebhookConfigStrategy {
    pub kind: &'static str,
}

#[async_trait]
impl Strategy for WebhookConfigStrategy {
    fn default(&self, obj: &mut Value) {
        let mutating = self.kind == "MutatingWebhookConfiguration";
        let Some(m) = obj.as_object_mut() else { return };
        for wh in each_obj_mut(m, "webhooks") {
            set_default_str(wh, "failurePolicy", "Fail");
            set_default_str(wh, "matchPolicy", "Equivalent");
            set_default(wh, "namespaceSelector", json!({}));
            set_default(wh, "objectSelector", json!({}));
            set_default(wh, "timeoutSeconds", json!(10));
            if mutating {
                set_default_str(wh, "reinvocationPolicy", "Never");
            }
            for rule in each_obj_mut(wh, "rules") {
                set_default_str(rule, "scope", "*");
            }
            if let Some(svc) = child_opt(wh, "clientConfig").and_then(|c| child_opt(c, "service")) {
                set_default(svc, "port", json!(443));
            }
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("admissionregistration.k8s.io", self.kind, obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, wh) in arr(obj, "/webhooks").iter().enumerate() {
            let p = idx("webhooks", i);
            let name = s(wh, "/name");
            if name.is_empty() {
                errs.push(FieldError::required(join(&p, "name")));
            } else {
                for m in names::is_dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(join(&p, "name"), name, m));
                }
                if name.split('.').count() < 3 {
                    errs.push(FieldError::invalid(
                        join(&p, "name"),
                        name,
                        "should be a domain with at least three segments separated by dots",
                    ));
                }
                if !seen.insert(name.to_string()) {
                    errs.push(FieldError::duplicate(join(&p, "name"), name));
                }
            }
            match s(wh, "/sideEffects") {
                "" => errs.push(util::required(
                    join(&p, "sideEffects"),
                    "must specify one of None, NoneOnDryRun",
                )),
                "None" | "NoneOnDryRun" => {}
                other => errs.push(FieldError::not_supported(
                    join(&p, "sideEffects"),
                    other,
                    &["None", "NoneOnDryRun"],
                )),
            }
            let versions = arr(wh, "/admissionReviewVersions");
            if versions.is_empty() {
                errs.push(util::required(
                    join(&p, "admissionReviewVersions"),
                    "must specify one of v1, v1beta1",
                ));
            } else if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
                errs.push(FieldError::invalid_raw(
                    join(&p, "admissionReviewVersions"),
                    Value::Array(versions.to_vec()),
                    "must include at least one of v1, v1beta1",
                ));
            }
            let url = get(wh, "/clientConfig/url").is_some();
            let svc = get(wh, "/clientConfig/service").is_some();
            if url == svc {
                errs.push(util::required(
                    join(&p, "clientConfig"),
                    "exactly one of url or service is required",
                ));
            }
            if let Some(u) = get(wh, "/clientConfig/url").and_then(Value::as_str) {
                errs.extend(crate::admission::webhook::config::validate_url(
                    u,
                    &join(&p, "clientConfig.url"),
                ));
            }
            errs.extend(crate::admission::webhook::config::validate_match_conditions(wh, &p));
            util::check_enum(
                &mut errs,
                &join(&p, "failurePolicy"),
                wh.get("failurePolicy"),
                &["Fail", "Ignore"],
                false,
            );
            util::check_enum(
                &mut errs,
                &join(&p, "matchPolicy"),
                wh.get("matchPolicy"),
                &["Equivalent", "Exact"],
                false,
            );
            if let Some(t) = util::int(wh, "/timeoutSeconds")
                && !(1..=30).contains(&t)
            {
                errs.push(FieldError::invalid_raw(
                    join(&p, "timeoutSeconds"),
                    t,
                    "the timeout value must be between 1 and 30 seconds",
                ));
            }
        }
        errs
    }
}

// ---------------------------------------------------------------- apiextensions.k8s.io

pub struct CrdStrategy;

fn storage_version(obj: &Value) -> Option<String> {
    arr(obj, "/spec/versions")
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| s(v, "/name").to_string())
}

#[async_trait]
impl Strategy for CrdStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = spec_mut(obj) else { return };
        if let Some(names) = child(spec, "names") {
            let kind = names
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if !kind.is_empty() {
                set_default_str(names, "singular", &kind.to_lowercase());
                set_default_str(names, "listKind", &format!("{kind}List"));
            }
        }
        if let Some(conv) = child(spec, "conversion") {
            set_default_str(conv, "strategy", "None");
            if let Some(svc) = child_opt(conv, "webhook")
                .and_then(|w| child_opt(w, "clientConfig"))
                .and_then(|c| child_opt(c, "service"))
            {
                set_default(svc, "port", json!(443));
            }
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("apiextensions.k8s.io", "CustomResourceDefinition", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        let stored: Vec<String> = storage_version(obj).into_iter().collect();
        reset_status(
            obj,
            json!({"acceptedNames": {"kind": "", "plural": ""}, "storedVersions": stored}),
        );
    }
    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        // A new storage version joins status.storedVersions.
        let Some(v) = storage_version(new) else {
            return;
        };
        if let Some(status) = new.as_object_mut().and_then(|m| child(m, "status")) {
            let list = status.entry("storedVersions").or_insert_with(|| json!([]));
            if let Some(l) = list.as_array_mut()
                && !l.iter().any(|x| x == &json!(v))
            {
                l.push(json!(v));
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let group = s(obj, "/spec/group");
        let plural = s(obj, "/spec/names/plural");
        let name = s(obj, "/metadata/name");
        if name != format!("{plural}.{group}") {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        if group.is_empty() {
            errs.push(FieldError::required("spec.group"));
        } else {
            for m in names::is_dns1123_subdomain(group) {
                errs.push(FieldError::invalid("spec.group", group, m));
            }
            if !group.contains('.') {
                errs.push(FieldError::invalid(
                    "spec.group",
                    group,
                    "should be a domain with at least one dot",
                ));
            }
        }
        for f in ["plural", "kind"] {
            let v = s(obj, &format!("/spec/names/{f}"));
            if v.is_empty() {
                errs.push(FieldError::required(format!("spec.names.{f}")));
            }
        }
        if !plural.is_empty() {
            for m in names::is_dns1035_label(plural) {
                errs.push(FieldError::invalid("spec.names.plural", plural, m));
            }
        }
        util::check_enum(
            &mut errs,
            "spec.scope",
            obj.pointer("/spec/scope"),
            &["Cluster", "Namespaced"],
            true,
        );
        let versions = arr(obj, "/spec/versions");
        if versions.is_empty() {
            errs.push(util::required(
                "spec.versions",
                "must have exactly one version marked as storage version",
            ));
        } else {
            let storage = versions
                .iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .count();
            if storage != 1 {
                errs.push(FieldError::invalid_raw(
                    "spec.versions",
                    Value::Array(versions.to_vec()),
                    "must have exactly one version marked as storage version",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, v) in versions.iter().enumerate() {
                let vn = s(v, "/name");
                for m in names::is_dns1035_label(vn) {
                    errs.push(FieldError::invalid(
                        join(&idx("spec.versions", i), "name"),
                        vn,
                        m,
                    ));
                }
                if !seen.insert(vn.to_string()) {
                    errs.push(FieldError::duplicate(
                        join(&idx("spec.versions", i), "name"),
                        vn,
                    ));
                }
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_immutable(&mut errs, new, old, "spec.group");
        util::check_immutable(&mut errs, new, old, "spec.names.plural");
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::display).collect()
    }

    #[test]
    fn hpa_defaults_and_validation() {
        let mut h = json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        HpaStrategy.default(&mut h);
        HpaStrategy.prepare_create(&mut h);
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(
            h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(
            h["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        assert_eq!(
            h["spec"]["behavior"]["scaleUp"]["policies"][0],
            json!({"type": "Pods", "value": 4, "periodSeconds": 15})
        );
        assert_eq!(h["status"], json!({"desiredReplicas": 0}));
        assert!(HpaStrategy.validate(&h).is_empty());
        let bad = json!({"apiVersion": "autoscaling/v1", "spec": {"minReplicas": 3, "maxReplicas": 2, "scaleTargetRef": {"kind": "Deployment"}}});
        assert_eq!(
            display(&HpaStrategy.validate(&bad)),
            vec![
                "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
                "spec.scaleTargetRef.name: Required value"
            ]
        );
    }

    #[test]
    fn rbac() {
        let mut b = json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "sa"}]});
        let st = RbacBindingStrategy {
            kind: "ClusterRoleBinding",
        };
        st.default(&mut b);
        assert_eq!(b["roleRef"]["apiGroup"], RBAC_GROUP);
        assert_eq!(b["subjects"][0]["apiGroup"], RBAC_GROUP);
        assert!(b["subjects"][1].get("apiGroup").is_none());
        assert_eq!(
            display(&st.validate(&b)),
            vec!["subjects[1].namespace: Required value"]
        );
        let mut changed = b.clone();
        changed["roleRef"]["name"] = json!("edit");
        assert_eq!(
            display(&st.validate_update(&changed, &b)),
            vec![
                "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"
            ]
        );
        assert_eq!(st.name_rule(), NameRule::PathSegment);
        let role = RbacRoleStrategy { kind: "Role" };
        let r = json!({"rules": [{"resources": ["pods"], "verbs": ["get"]}, {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]});
        assert_eq!(
            display(&role.validate(&r)),
            vec![
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].nonResourceURLs: Invalid value: [\"/healthz\"]: namespaced rules cannot apply to non-resource URLs"
            ]
        );
    }

    #[test]
    fn networking() {
        let mut np = json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        NetworkPolicyStrategy.default(&mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let ing = json!({"spec": {"rules": [{"host": "Example.com", "http": {"paths": [{"path": "api", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}, {"path": "/", "backend": {}}]}}]}});
        let e = display(&IngressStrategy.validate(&ing));
        assert!(
            e[0].starts_with(
                "spec.rules[0].host: Invalid value: \"Example.com\": a lowercase RFC 1123 subdomain"
            ),
            "{e:?}"
        );
        assert_eq!(
            e[1],
            "spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path"
        );
        assert_eq!(
            e[2],
            "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified"
        );
        assert_eq!(
            e[3],
            "spec.rules[0].http.paths[1].backend: Invalid value: \"\": one backend must be specified"
        );
        let mut eps = json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]});
        EndpointSliceStrategy.default(&mut eps);
        assert_eq!(
            eps["ports"][0],
            json!({"port": 80, "protocol": "TCP", "name": ""})
        );
        assert!(EndpointSliceStrategy.validate(&eps).is_empty());
        let mut v6 = eps.clone();
        v6["addressType"] = json!("IPv6");
        assert_eq!(
            display(&EndpointSliceStrategy.validate_update(&v6, &eps)),
            vec!["addressType: Invalid value: \"IPv6\": field is immutable"]
        );
    }

    #[test]
    fn storage_and_scheduling() {
        let mut sc = json!({"provisioner": "rancher.io/local-path"});
        StorageClassStrategy.default(&mut sc);
        assert_eq!(
            (sc["reclaimPolicy"].clone(), sc["volumeBindingMode"].clone()),
            (json!("Delete"), json!("Immediate"))
        );
        let mut sc2 = sc.clone();
        sc2["parameters"] = json!({"a": "b"});
        assert_eq!(
            display(&StorageClassStrategy.validate_update(&sc2, &sc)),
            vec!["parameters: Forbidden: updates to parameters are forbidden."]
        );
        let mut pc = json!({"metadata": {"name": "high"}, "value": 2_000_000_001i64});
        PriorityClassStrategy.default(&mut pc);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(
            display(&PriorityClassStrategy.validate(&pc)),
            vec![
                "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
            ]
        );
        let sys = json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000i64});
        assert!(PriorityClassStrategy.validate(&sys).is_empty());
        let mut csi = json!({"spec": {}});
        CsiDriverStrategy.default(&mut csi);
        assert_eq!(csi["spec"]["attachRequired"], true);
        assert_eq!(csi["spec"]["volumeLifecycleModes"], json!(["Persistent"]));
    }

    #[test]
    fn events_v1() {
        let ev = json!({"metadata": {"namespace": "default"}, "eventTime": "2024-01-01T00:00:00.000000Z", "type": "Normal",
            "reportingController": "example.com/ctl", "reportingInstance": "ctl-1", "action": "Sync", "reason": "Synced",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}});
        assert!(
            EventsV1Strategy.validate(&ev).is_empty(),
            "{:?}",
            EventsV1Strategy.validate(&ev)
        );
        assert_eq!(
            EventsV1Strategy
                .field_value(&ev, "regarding.kind")
                .as_deref(),
            Some("Pod")
        );
        assert_eq!(
            EventsV1Strategy
                .field_value(&ev, "reportingController")
                .as_deref(),
            Some("example.com/ctl")
        );
        let bad = json!({"metadata": {"namespace": "default"}, "type": "Odd"});
        let e = display(&EventsV1Strategy.validate(&bad));
        assert_eq!(e[0], "eventTime: Required value");
        assert_eq!(e[1], "type: Invalid value: \"\": has invalid value: Odd");
    }

    #[test]
    fn webhooks_and_crds() {
        let mut wh = json!({"webhooks": [{"name": "pods.example.com", "clientConfig": {"service": {"name": "s", "namespace": "n"}}, "rules": [{"operations": ["CREATE"]}], "admissionReviewVersions": ["v1"]}]});
        let st = WebhookConfigStrategy {
            kind: "MutatingWebhookConfiguration",
        };
        st.default(&mut wh);
        let w = &wh["webhooks"][0];
        assert_eq!(
            (
                w["failurePolicy"].clone(),
                w["matchPolicy"].clone(),
                w["timeoutSeconds"].clone()
            ),
            (json!("Fail"), json!("Equivalent"), json!(10))
        );
        assert_eq!(w["reinvocationPolicy"], "Never");
        assert_eq!(w["clientConfig"]["service"]["port"], 443);
        assert_eq!(
            display(&st.validate(&wh)),
            vec!["webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"]
        );

        let mut crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"}, "versions": [{"name": "v1", "served": true, "storage": true}]}});
        CrdStrategy.default(&mut crd);
        CrdStrategy.prepare_create(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "widget");
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        assert!(
            CrdStrategy.validate(&crd).is_empty(),
            "{:?}",
            CrdStrategy.validate(&crd)
        );
        crd["metadata"]["name"] = json!("widget.example.com");
        assert_eq!(
            display(&CrdStrategy.validate(&crd)),
            vec![
                "metadata.name: Invalid value: \"widget.example.com\": must be spec.names.plural+\".\"+spec.group"
            ]
        );
    }

    #[test]
    fn csr() {
        let req = base64::engine::general_purpose::STANDARD.encode(
            "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
        );
        let c = json!({"spec": {"request": req, "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}});
        assert!(CsrStrategy.validate(&c).is_empty());
        assert_eq!(
            CsrStrategy.field_value(&c, "spec.signerName").as_deref(),
            Some("kubernetes.io/kube-apiserver-client")
        );
        let bad = json!({"spec": {}});
        assert_eq!(
            display(&CsrStrategy.validate(&bad)),
            vec![
                "spec.request: Required value",
                "spec.signerName: Required value",
                "spec.usages: Required value"
            ]
        );
    }
}
