//! Services: defaults, validation, cluster IP and node port allocation (with
//! the IP family fields upstream's allocator initialises), and the update
//! rules that keep allocated values across re-submitted manifests.

use std::collections::HashSet;
use std::net::IpAddr;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::typed;
use super::util::{self, arr, each_obj_mut, get, idx, join, s, set_default, set_default_str};
use super::validation;
use crate::api::status::{ApiError, FieldError, Target};
use crate::registry::allocator::{self, AllocError, Cidr, Session};
use crate::registry::names;
use crate::registry::strategy::{Ctx, NameRule, Strategy};

const TARGET: Target<'static> = Target {
    group: "",
    resource: "services",
    kind: "Service",
};
const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
/// Upstream's default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_SECONDS: i64 = 10800;

pub struct ServiceStrategy;

fn svc_type(obj: &Value) -> &str {
    match s(obj, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    }
}

fn needs_cluster_ip(obj: &Value) -> bool {
    svc_type(obj) != "ExternalName"
}

fn needs_node_port(obj: &Value) -> bool {
    matches!(svc_type(obj), "NodePort" | "LoadBalancer")
}

fn externally_accessible(obj: &Value) -> bool {
    needs_node_port(obj)
        || (svc_type(obj) == "ClusterIP" && !arr(obj, "/spec/externalIPs").is_empty())
}

fn needs_health_check(obj: &Value) -> bool {
    svc_type(obj) == "LoadBalancer" && s(obj, "/spec/externalTrafficPolicy") == "Local"
}

fn should_allocate_node_ports(obj: &Value) -> bool {
    svc_type(obj) == "NodePort"
        || util::flag(obj, "/spec/allocateLoadBalancerNodePorts") != Some(false)
}

fn is_headless(obj: &Value) -> bool {
    s(obj, "/spec/clusterIP") == "None"
}

fn strings(obj: &Value, ptr: &str) -> Vec<String> {
    arr(obj, ptr)
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect()
}

/// `[]string{"a", "b"}` as Go prints a string slice.
fn go_strings(v: &[String]) -> String {
    if v.is_empty() {
        return "[]string(nil)".to_string();
    }
    let parts: Vec<String> = v
        .iter()
        .map(|x| Value::String(x.clone()).to_string())
        .collect();
    format!("[]string{{{}}}", parts.join(", "))
}

fn spec_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.as_object_mut().and_then(|m| util::child(m, "spec"))
}

fn node_ports(obj: &Value) -> Vec<i64> {
    arr(obj, "/spec/ports")
        .iter()
        .filter_map(|p| util::int(p, "/nodePort"))
        .filter(|n| *n != 0)
        .collect()
}

/// SetDefaults_Service.
fn default_service(obj: &mut Value) {
    let Some(spec) = spec_mut(obj) else { return };
    set_default_str(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.pointer("/clientIP/timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": DEFAULT_AFFINITY_SECONDS}}),
                );
            }
        }
        _ => {}
    }
    set_default_str(spec, "type", "ClusterIP");
    for p in each_obj_mut(spec, "ports") {
        set_default_str(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if unset && let Some(port) = p.get("port").cloned() {
            p.insert("targetPort".into(), port);
        }
    }
    let t = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let accessible =
        t == "NodePort" || t == "LoadBalancer" || (t == "ClusterIP" && has_external_ips);
    if accessible {
        set_default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(t.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if t == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if t == "LoadBalancer"
        && let Some(ings) = obj
            .pointer_mut("/status/loadBalancer/ingress")
            .and_then(Value::as_array_mut)
    {
        for ing in ings.iter_mut().filter_map(Value::as_object_mut) {
            if ing
                .get("ip")
                .and_then(Value::as_str)
                .is_some_and(|ip| !ip.is_empty())
            {
                set_default(ing, "ipMode", json!("VIP"));
            }
        }
    }
}

fn validate_service(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = s(obj, "/metadata/name");
    // Service names are DNS-1035 labels; the generic check covers RFC 1123.
    if !name.is_empty() && names::is_dns1123_label(name).is_empty() {
        for m in names::is_dns1035_label(name) {
            errs.push(FieldError::invalid("metadata.name", name, m));
        }
    }
    let t = svc_type(obj);
    if !TYPES.contains(&t) {
        errs.push(FieldError::not_supported("spec.type", t, TYPES));
    }
    let ports = arr(obj, "/spec/ports");
    if ports.is_empty() && !is_headless(obj) && t != "ExternalName" {
        errs.push(FieldError::required("spec.ports"));
    }
    let mut names_seen = HashSet::new();
    let mut keys = HashSet::new();
    let mut node_keys = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = idx("spec.ports", i);
        let pname = s(p, "/name");
        if ports.len() > 1 && pname.is_empty() {
            errs.push(FieldError::required(join(&pp, "name")));
        } else if !pname.is_empty() {
            for m in names::is_dns1123_label(pname) {
                errs.push(FieldError::invalid(join(&pp, "name"), pname, m));
            }
            if !names_seen.insert(pname.to_string()) {
                errs.push(FieldError::duplicate(join(&pp, "name"), pname));
            }
        }
        let port = util::int(p, "/port").unwrap_or(0);
        for m in names::is_valid_port_num(port) {
            errs.push(FieldError::invalid_raw(join(&pp, "port"), port, m));
        }
        util::check_enum(
            &mut errs,
            &join(&pp, "protocol"),
            p.get("protocol"),
            &["SCTP", "TCP", "UDP"],
            true,
        );
        if let Some(tp) = p.get("targetPort") {
            validation::validate_port_ref(&mut errs, tp, &join(&pp, "targetPort"));
        }
        let proto = s(p, "/protocol").to_string();
        if !keys.insert((proto.clone(), port)) {
            errs.push(FieldError {
                reason: "FieldValueDuplicate",
                field: pp.clone(),
                message: format!(
                    "Duplicate value: core.ServicePort{{Name:\"\", Protocol:\"{proto}\", AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
                ),
            });
        }
        let np = util::int(p, "/nodePort").unwrap_or(0);
        if np != 0 {
            if t == "ClusterIP" {
                errs.push(FieldError::forbidden(
                    join(&pp, "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
            for m in names::is_valid_port_num(np) {
                errs.push(FieldError::invalid_raw(join(&pp, "nodePort"), np, m));
            }
            if !node_keys.insert((proto, np)) {
                errs.push(FieldError {
                    reason: "FieldValueDuplicate",
                    field: join(&pp, "nodePort"),
                    message: format!("Duplicate value: {np}"),
                });
            }
        }
    }

    // clusterIP / clusterIPs and families.
    let cip = s(obj, "/spec/clusterIP");
    let cips = strings(obj, "/spec/clusterIPs");
    if t == "ExternalName" {
        if !cips.is_empty() {
            errs.push(FieldError::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
        if !arr(obj, "/spec/ipFamilies").is_empty() {
            errs.push(FieldError::forbidden(
                "spec.ipFamilies",
                "may not be set for ExternalName services",
            ));
        }
        if get(obj, "/spec/ipFamilyPolicy").is_some() {
            errs.push(FieldError::forbidden(
                "spec.ipFamilyPolicy",
                "may not be set for ExternalName services",
            ));
        }
        let cname = s(obj, "/spec/externalName").trim_end_matches('.');
        if cname.is_empty() {
            errs.push(FieldError::required("spec.externalName"));
        } else {
            for m in names::is_dns1123_subdomain(cname) {
                errs.push(FieldError::invalid("spec.externalName", cname, m));
            }
        }
    } else {
        if !cip.is_empty() {
            if cips.is_empty() {
                errs.push(FieldError::required("spec.clusterIPs"));
            } else if cips[0] != cip {
                errs.push(FieldError::invalid_raw(
                    "spec.clusterIPs",
                    go_strings(&cips),
                    "first value must match `clusterIP`",
                ));
            }
        } else if !cips.is_empty() {
            errs.push(FieldError::invalid_raw(
                "spec.clusterIPs",
                go_strings(&cips),
                "must be empty when `clusterIP` is not specified",
            ));
        }
        for (i, ip) in cips.iter().enumerate() {
            if i == 0 && ip == "None" {
                if cips.len() > 1 {
                    errs.push(FieldError::invalid_raw(
                        "spec.clusterIPs",
                        go_strings(&cips),
                        "'None' must be the first and only value",
                    ));
                }
                continue;
            }
            for m in names::is_valid_ip(ip) {
                errs.push(FieldError::invalid(idx("spec.clusterIPs", i), ip, m));
            }
        }
        if is_headless(obj) && t == "NodePort" {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                "None",
                "may not be set to 'None' for NodePort services",
            ));
        }
        if is_headless(obj) && t == "LoadBalancer" {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                "None",
                "may not be set to 'None' for LoadBalancer services",
            ));
        }
    }
    let mut fams = HashSet::new();
    for (i, f) in arr(obj, "/spec/ipFamilies").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        if f != "IPv4" && f != "IPv6" {
            errs.push(FieldError::not_supported(
                idx("spec.ipFamilies", i),
                f,
                &["IPv4", "IPv6"],
            ));
        }
        if !fams.insert(f) {
            errs.push(FieldError::duplicate(idx("spec.ipFamilies", i), f));
        }
    }
    util::check_enum(
        &mut errs,
        "spec.ipFamilyPolicy",
        obj.pointer("/spec/ipFamilyPolicy"),
        &["PreferDualStack", "RequireDualStack", "SingleStack"],
        false,
    );

    util::check_enum(
        &mut errs,
        "spec.sessionAffinity",
        obj.pointer("/spec/sessionAffinity"),
        &["ClientIP", "None"],
        true,
    );
    if s(obj, "/spec/sessionAffinity") == "ClientIP" {
        if let Some(t) = util::int(obj, "/spec/sessionAffinityConfig/clientIP/timeoutSeconds")
            && !(1..=86400).contains(&t)
        {
            errs.push(FieldError::invalid_raw(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                t,
                "must be greater than 0 and less than 86400",
            ));
        }
    } else if get(obj, "/spec/sessionAffinityConfig").is_some() {
        errs.push(FieldError::invalid(
            "spec.sessionAffinityConfig",
            "",
            format!(
                "must not be set when session affinity is {}",
                s(obj, "/spec/sessionAffinity")
            ),
        ));
    }
    validation::validate_labels(&mut errs, obj.pointer("/spec/selector"), "spec.selector");
    for (i, ip) in arr(obj, "/spec/externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        for m in names::is_valid_ip(ip) {
            errs.push(FieldError::invalid(idx("spec.externalIPs", i), ip, m));
        }
    }

    let etp = s(obj, "/spec/externalTrafficPolicy");
    if !externally_accessible(obj) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else {
        util::check_enum(
            &mut errs,
            "spec.externalTrafficPolicy",
            obj.pointer("/spec/externalTrafficPolicy"),
            &["Cluster", "Local"],
            true,
        );
    }
    let hc = util::int(obj, "/spec/healthCheckNodePort").unwrap_or(0);
    if hc != 0 && !needs_health_check(obj) {
        errs.push(FieldError::invalid_raw(
            "spec.healthCheckNodePort",
            hc,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    }
    util::check_enum(
        &mut errs,
        "spec.internalTrafficPolicy",
        obj.pointer("/spec/internalTrafficPolicy"),
        &["Cluster", "Local"],
        false,
    );
    if get(obj, "/spec/allocateLoadBalancerNodePorts").is_some() && t != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    errs
}

/// Keep what was allocated when a client re-submits a manifest without it
/// (upstream's patchAllocatedValues + normalizeClusterIPs + dropTypeDependentFields).
fn prepare_service_update(new: &mut Value, old: &Value) {
    let type_changed = svc_type(new) != svc_type(old);
    let same_ips = |n: &Value| {
        strings(n, "/spec/clusterIPs") == strings(old, "/spec/clusterIPs")
            && s(n, "/spec/clusterIP") == s(old, "/spec/clusterIP")
    };
    // Type changes first: drop what the new type does not use, if untouched.
    if type_changed {
        if needs_cluster_ip(old) && !needs_cluster_ip(new) {
            let same = same_ips(new);
            let same_fam = arr(new, "/spec/ipFamilies") == arr(old, "/spec/ipFamilies");
            let same_pol =
                new.pointer("/spec/ipFamilyPolicy") == old.pointer("/spec/ipFamilyPolicy");
            if let Some(spec) = spec_mut(new) {
                if same {
                    spec.remove("clusterIP");
                    spec.remove("clusterIPs");
                }
                if same_fam {
                    spec.remove("ipFamilies");
                }
                if same_pol {
                    spec.remove("ipFamilyPolicy");
                }
            }
        }
        if needs_node_port(old)
            && !needs_node_port(new)
            && node_ports(new) == node_ports(old)
            && let Some(spec) = spec_mut(new)
        {
            for p in each_obj_mut(spec, "ports") {
                p.remove("nodePort");
            }
        }
        if needs_health_check(old)
            && !needs_health_check(new)
            && new.pointer("/spec/healthCheckNodePort") == old.pointer("/spec/healthCheckNodePort")
            && let Some(spec) = spec_mut(new)
        {
            spec.remove("healthCheckNodePort");
        }
        if svc_type(old) == "LoadBalancer"
            && svc_type(new) != "LoadBalancer"
            && new.pointer("/spec/allocateLoadBalancerNodePorts")
                == old.pointer("/spec/allocateLoadBalancerNodePorts")
            && let Some(spec) = spec_mut(new)
        {
            spec.remove("allocateLoadBalancerNodePorts");
        }
        if externally_accessible(old)
            && !externally_accessible(new)
            && s(new, "/spec/externalTrafficPolicy") == s(old, "/spec/externalTrafficPolicy")
            && let Some(spec) = spec_mut(new)
        {
            spec.remove("externalTrafficPolicy");
        }
    }
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        let old_cip = old.pointer("/spec/clusterIP").cloned();
        let old_cips = old.pointer("/spec/clusterIPs").cloned();
        let new_cip = s(new, "/spec/clusterIP").to_string();
        let new_cips = strings(new, "/spec/clusterIPs");
        let old_fam = old.pointer("/spec/ipFamilies").cloned();
        let old_pol = old.pointer("/spec/ipFamilyPolicy").cloned();
        let ips_kept;
        if let Some(spec) = spec_mut(new) {
            if new_cip.is_empty()
                && let Some(v) = &old_cip
            {
                spec.insert("clusterIP".into(), v.clone());
            }
            if new_cips.is_empty() {
                // Only when the singular value agrees (an old client patching).
                let singular = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("");
                if let Some(v) = &old_cips
                    && old_cip.as_ref().and_then(Value::as_str).unwrap_or("") == singular
                {
                    spec.insert("clusterIPs".into(), v.clone());
                }
            } else if !new_cip.is_empty()
                && old_cip
                    .as_ref()
                    .and_then(Value::as_str)
                    .is_some_and(|o| o != new_cip)
            {
                // Changing the singular value with the plural untouched: move both.
                let untouched = old_cips
                    .as_ref()
                    .and_then(Value::as_array)
                    .is_some_and(|o| {
                        o.iter()
                            .map(|v| v.as_str().unwrap_or("").to_string())
                            .collect::<Vec<_>>()
                            == new_cips
                    });
                if untouched
                    && let Some(first) = spec
                        .get_mut("clusterIPs")
                        .and_then(Value::as_array_mut)
                        .and_then(|a| a.first_mut())
                {
                    *first = json!(new_cip);
                }
            }
            ips_kept = spec.get("clusterIPs") == old_cips.as_ref();
            if ips_kept
                && !util::is_set(spec, "ipFamilies")
                && let Some(f) = old_fam
            {
                spec.insert("ipFamilies".into(), f);
            }
            if !util::is_set(spec, "ipFamilyPolicy")
                && let Some(p) = old_pol
            {
                spec.insert("ipFamilyPolicy".into(), p);
            }
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        // Patch missing node ports by port name, unless already used.
        let used: HashSet<i64> = node_ports(new).into_iter().collect();
        let by_name: Vec<(String, i64)> = arr(old, "/spec/ports")
            .iter()
            .map(|p| {
                (
                    s(p, "/name").to_string(),
                    util::int(p, "/nodePort").unwrap_or(0),
                )
            })
            .collect();
        if let Some(spec) = spec_mut(new) {
            for p in each_obj_mut(spec, "ports") {
                let np = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
                if np != 0 {
                    continue;
                }
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                if let Some((_, v)) = by_name.iter().find(|(n, v)| n == name && *v != 0)
                    && !used.contains(v)
                {
                    p.insert("nodePort".into(), json!(v));
                }
            }
        }
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && util::int(new, "/spec/healthCheckNodePort").unwrap_or(0) == 0
        && let (Some(v), Some(spec)) = (
            old.pointer("/spec/healthCheckNodePort").cloned(),
            spec_mut(new),
        )
    {
        spec.insert("healthCheckNodePort".into(), v);
    }
}

fn validate_service_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if svc_type(new) == "ExternalName" || svc_type(old) == "ExternalName" {
        return errs;
    }
    if is_headless(new) && is_headless(old) {
        return errs;
    }
    let n = strings(new, "/spec/clusterIPs");
    let o = strings(old, "/spec/clusterIPs");
    if n.len() == o.len() {
        for (i, ip) in o.iter().enumerate() {
            if n[i] != *ip {
                errs.push(FieldError::invalid_raw(
                    idx("spec.clusterIPs", i),
                    go_strings(&n),
                    "may not change once set",
                ));
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(FieldError::invalid_raw(
                "spec.clusterIPs[0]",
                go_strings(&n),
                "primary clusterIP can not be unset",
            ));
        } else if n[0] != o[0] {
            errs.push(FieldError::invalid_raw(
                "spec.clusterIPs[0]",
                go_strings(&n),
                "may not change once set",
            ));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        errs.push(FieldError::invalid_raw(
            "spec.clusterIPs[0]",
            go_strings(&n),
            "may not change once set",
        ));
    }
    let nf = strings(new, "/spec/ipFamilies");
    let of = strings(old, "/spec/ipFamilies");
    if !nf.is_empty() && !of.is_empty() && nf[0] != of[0] {
        errs.push(FieldError::invalid(
            "spec.ipFamilies[0]",
            &nf[0],
            "may not change once set",
        ));
    }
    errs
}

fn family_of(ip: &IpAddr) -> &'static str {
    if ip.is_ipv6() { "IPv6" } else { "IPv4" }
}

fn invalid_err(name: &str, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid(TARGET, name, &errs)
}

/// upstream's initIPFamilyFields: choose ipFamilyPolicy and ipFamilies.
fn init_ip_families(obj: &mut Value, old: Option<&Value>, cidrs: &[Cidr]) -> Result<(), ApiError> {
    if !needs_cluster_ip(obj) {
        return Ok(());
    }
    let name = s(obj, "/metadata/name").to_string();
    let headless = is_headless(obj);
    let selectorless = util::map(obj, "/spec/selector").is_none_or(|m| m.is_empty());
    let configured: Vec<&str> = cidrs.iter().map(Cidr::family).collect();
    let primary = configured.first().copied().unwrap_or("IPv4");
    let mut families = strings(obj, "/spec/ipFamilies");
    let cips = strings(obj, "/spec/clusterIPs");
    let mut policy = s(obj, "/spec/ipFamilyPolicy").to_string();
    if policy.is_empty() && families.len() == 2 {
        policy = "RequireDualStack".into();
    }
    if policy.is_empty() {
        policy = match old
            .map(|o| s(o, "/spec/ipFamilyPolicy"))
            .filter(|p| !p.is_empty())
        {
            Some(p) => p.to_string(),
            None if headless && selectorless => "RequireDualStack".into(),
            None => "SingleStack".into(),
        };
    }
    let mut errs = Vec::new();
    if policy == "SingleStack" {
        if cips.len() == 2 {
            errs.push(FieldError::invalid("spec.ipFamilyPolicy", &policy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"));
        }
        if families.len() == 2 {
            errs.push(FieldError::invalid("spec.ipFamilyPolicy", &policy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"));
        }
    }
    for (i, ip) in cips.iter().enumerate() {
        if ip == "None" {
            break;
        }
        let Ok(ip) = ip.parse::<IpAddr>() else {
            continue;
        };
        let fam = family_of(&ip);
        if i >= families.len() {
            if configured.contains(&fam) {
                families.push(fam.to_string());
            } else {
                errs.push(FieldError::invalid_raw(
                    idx("spec.clusterIPs", i),
                    go_strings(&cips),
                    format!("{fam} is not configured on this cluster"),
                ));
            }
        }
    }
    if !errs.is_empty() {
        return Err(invalid_err(&name, errs));
    }
    let other = |f: &str| if f == "IPv4" { "IPv6" } else { "IPv4" };
    if headless && selectorless {
        if families.is_empty() {
            families.push(primary.to_string());
        }
        if families.len() < 2 && policy != "SingleStack" {
            let o = other(&families[0]).to_string();
            families.push(o);
        }
    } else {
        if policy == "RequireDualStack" && configured.len() < 2 {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                &policy,
                "this cluster is not configured for dual-stack services",
            ));
        }
        for (i, f) in families.iter().enumerate() {
            if !configured.contains(&f.as_str()) {
                errs.push(FieldError::invalid(
                    idx("spec.ipFamilies", i),
                    f,
                    "not configured on this cluster",
                ));
            }
        }
        if !errs.is_empty() {
            return Err(invalid_err(&name, errs));
        }
        if families.is_empty() {
            families.push(primary.to_string());
        }
        if policy != "SingleStack" && families.len() == 1 && configured.len() == 2 {
            let o = other(&families[0]).to_string();
            families.push(o);
        }
    }
    if let Some(spec) = spec_mut(obj) {
        spec.insert("ipFamilyPolicy".into(), json!(policy));
        spec.insert("ipFamilies".into(), json!(families));
    }
    Ok(())
}

fn alloc_error_ip(name: &str, cips: &[String], ip: &str, e: AllocError) -> ApiError {
    invalid_err(
        name,
        vec![FieldError::invalid_raw(
            "spec.clusterIPs",
            go_strings(cips),
            format!("failed to allocate IP {ip}: {e}"),
        )],
    )
}

/// Allocate every cluster IP the service lacks, one per family.
fn allocate_cluster_ips(
    obj: &mut Value,
    session: &Session,
    cidrs: &[Cidr],
) -> Result<(), ApiError> {
    if !needs_cluster_ip(obj) || is_headless(obj) {
        return Ok(());
    }
    let name = s(obj, "/metadata/name").to_string();
    let families = strings(obj, "/spec/ipFamilies");
    let mut cips = strings(obj, "/spec/clusterIPs");
    let held: Vec<String> = cips.clone();
    for (i, fam) in families.iter().enumerate() {
        let Some(cidr) = cidrs.iter().find(|c| c.family() == fam) else {
            continue;
        };
        let want = cips.get(i).cloned().unwrap_or_default();
        let ip = if want.is_empty() {
            session
                .allocate_ip(cidr, None)
                .map_err(|e| ApiError::internal(format!("failed to allocate a serviceIP: {e}")))?
        } else {
            let parsed: IpAddr = match want.parse() {
                Ok(ip) => ip,
                Err(_) => continue,
            };
            session
                .allocate_ip(cidr, Some(parsed))
                .map_err(|e| alloc_error_ip(&name, &held, &want, e))?
        };
        if i < cips.len() {
            cips[i] = ip.to_string();
        } else {
            cips.push(ip.to_string());
        }
    }
    if let Some(spec) = spec_mut(obj) {
        if let Some(first) = cips.first() {
            spec.insert("clusterIP".into(), json!(first));
        }
        spec.insert("clusterIPs".into(), json!(cips));
    }
    Ok(())
}

/// Allocate node ports (and the health check port) the service needs.
/// `old_ports` are node ports the service already holds.
fn allocate_node_ports(
    obj: &mut Value,
    session: &Session,
    range: (u16, u16),
    old_ports: &[i64],
) -> Result<(), ApiError> {
    let name = s(obj, "/metadata/name").to_string();
    if needs_node_port(obj) {
        let allocate_new = should_allocate_node_ports(obj);
        let ports: Vec<(i64, i64)> = arr(obj, "/spec/ports")
            .iter()
            .map(|p| {
                (
                    util::int(p, "/port").unwrap_or(0),
                    util::int(p, "/nodePort").unwrap_or(0),
                )
            })
            .collect();
        let mut by_port: Vec<(i64, i64)> = Vec::new();
        let mut result = Vec::with_capacity(ports.len());
        for (i, (port, np)) in ports.iter().enumerate() {
            if *np == 0 && !allocate_new {
                result.push(0);
                continue;
            }
            // Ports that share a number (TCP and UDP) share a node port.
            if let Some((_, shared)) = by_port.iter().find(|(p, _)| p == port)
                && (*np == 0 || np == shared)
            {
                result.push(*shared);
                continue;
            }
            let got = if *np != 0 {
                if old_ports.contains(np) || result.contains(np) {
                    *np
                } else {
                    let wanted = u16::try_from(*np).ok();
                    match wanted {
                        Some(w) => {
                            i64::from(session.allocate_port(range, Some(w)).map_err(|e| {
                                invalid_err(
                                    &name,
                                    vec![FieldError::invalid_raw(
                                        format!("spec.ports[{i}].nodePort"),
                                        np,
                                        e.to_string(),
                                    )],
                                )
                            })?)
                        }
                        None => *np,
                    }
                }
            } else {
                i64::from(session.allocate_port(range, None).map_err(|e| {
                    ApiError::internal(format!("failed to allocate a nodePort: {e}"))
                })?)
            };
            by_port.push((*port, got));
            result.push(got);
        }
        if let Some(spec) = spec_mut(obj) {
            for (p, np) in each_obj_mut(spec, "ports").zip(result) {
                if np != 0 {
                    p.insert("nodePort".into(), json!(np));
                }
            }
        }
    }
    if needs_health_check(obj) {
        let hc = util::int(obj, "/spec/healthCheckNodePort").unwrap_or(0);
        let got = if hc != 0 {
            if old_ports.contains(&hc) {
                hc
            } else {
                let w = u16::try_from(hc).ok();
                i64::from(session.allocate_port(range, w).map_err(|e| {
                    ApiError::internal(format!(
                        "failed to allocate requested HealthCheck NodePort {hc}: {e}"
                    ))
                })?)
            }
        } else {
            i64::from(session.allocate_port(range, None).map_err(|e| {
                ApiError::internal(format!("failed to allocate a HealthCheck NodePort 0: {e}"))
            })?)
        };
        if let Some(spec) = spec_mut(obj) {
            spec.insert("healthCheckNodePort".into(), json!(got));
        }
    }
    Ok(())
}

fn store_err(e: crate::store::StoreError) -> ApiError {
    ApiError::internal(e.to_string())
}

#[async_trait]
impl Strategy for ServiceStrategy {
    fn default(&self, obj: &mut Value) {
        default_service(obj);
    }

    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "Service", obj)
    }

    fn prepare_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"loadBalancer": {}}));
        }
        // An old client sets only clusterIP: initialise clusterIPs from it.
        let cip = s(obj, "/spec/clusterIP").to_string();
        if !cip.is_empty()
            && arr(obj, "/spec/clusterIPs").is_empty()
            && let Some(spec) = spec_mut(obj)
        {
            spec.insert("clusterIPs".into(), json!([cip]));
        }
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) {
        prepare_service_update(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_service(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_service_update(new, old)
    }

    async fn allocate(&self, ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
        let cidrs = allocator::parse_service_cidrs(ctx.service_cidr);
        init_ip_families(obj, None, &cidrs)?;
        let uid = s(obj, "/metadata/uid").to_string();
        let session = Session::begin(ctx.store, &uid).await.map_err(store_err)?;
        allocate_cluster_ips(obj, &session, &cidrs)?;
        allocate_node_ports(obj, &session, ctx.node_port_range, &[])
    }

    async fn allocate_update(
        &self,
        ctx: &Ctx<'_>,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        let cidrs = allocator::parse_service_cidrs(ctx.service_cidr);
        init_ip_families(new, Some(old), &cidrs)?;
        let needs_ips = needs_cluster_ip(new)
            && !is_headless(new)
            && strings(new, "/spec/clusterIPs").len()
                < strings(new, "/spec/ipFamilies").len().max(1);
        let needs_ports = needs_node_port(new)
            && arr(new, "/spec/ports").iter().any(|p| {
                util::int(p, "/nodePort").unwrap_or(0) == 0
                    || !node_ports(old).contains(&util::int(p, "/nodePort").unwrap_or(0))
            });
        let needs_hc = needs_health_check(new)
            && util::int(new, "/spec/healthCheckNodePort").unwrap_or(0)
                != util::int(old, "/spec/healthCheckNodePort").unwrap_or(0);
        let needs_hc = needs_hc
            || (needs_health_check(new)
                && util::int(new, "/spec/healthCheckNodePort").unwrap_or(0) == 0);
        if !(needs_ips || needs_ports || needs_hc) {
            return Ok(());
        }
        let uid = s(new, "/metadata/uid").to_string();
        let session = Session::begin(ctx.store, &uid).await.map_err(store_err)?;
        if needs_ips {
            allocate_cluster_ips(new, &session, &cidrs)?;
        }
        let mut held = node_ports(old);
        held.extend(util::int(old, "/spec/healthCheckNodePort").filter(|p| *p != 0));
        allocate_node_ports(new, &session, ctx.node_port_range, &held)
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "spec.clusterIP" => Some(s(obj, "/spec/clusterIP").to_string()),
            "spec.type" => Some(s(obj, "/spec/type").to_string()),
            _ => None,
        }
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};

    fn display(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::display).collect()
    }

    fn svc(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default", "uid": "uid-web"}, "spec": spec})
    }

    fn store() -> std::sync::Arc<dyn Store> {
        SqliteStore::open_temp(SqliteOptions {
            compaction_interval: None,
            ..Default::default()
        })
        .expect("store")
    }

    async fn create(st: &dyn Store, mut obj: Value) -> Result<Value, ApiError> {
        let ctx = Ctx {
            store: st,
            service_cidr: "10.43.0.0/16",
            cluster_cidr: "10.42.0.0/16",
            node_port_range: (30000, 32767),
        };
        let strategy = ServiceStrategy;
        strategy.default(&mut obj);
        strategy.prepare_create(&mut obj);
        let errs = strategy.validate(&obj);
        if !errs.is_empty() {
            return Err(ApiError::invalid(TARGET, "web", &errs));
        }
        strategy.allocate(&ctx, &mut obj).await?;
        let key = format!(
            "/registry/core/services/default/{}",
            s(&obj, "/metadata/name")
        );
        st.create(&key, serde_json::to_vec(&obj).expect("json").into())
            .await
            .map_err(store_err)?;
        Ok(obj)
    }

    #[test]
    fn defaults() {
        let mut o = svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        ServiceStrategy.default(&mut o);
        assert_eq!(
            o["spec"],
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster"})
        );
        let mut lb = svc(
            json!({"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 443, "targetPort": "https"}]}),
        );
        ServiceStrategy.default(&mut lb);
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            lb["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        assert_eq!(lb["spec"]["ports"][0]["targetPort"], "https");
    }

    #[test]
    fn validation_messages() {
        let mut o =
            svc(json!({"ports": [{"port": 80}, {"port": 70000, "name": "b", "nodePort": 30001}]}));
        ServiceStrategy.default(&mut o);
        let e = display(&ServiceStrategy.validate(&o));
        assert!(
            e.contains(&"spec.ports[0].name: Required value".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(
                &"spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
                    .to_string()
            )
        );
        assert!(
            e.contains(
                &"spec.ports[1].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
                    .to_string()
            )
        );
        let mut none = svc(json!({}));
        ServiceStrategy.default(&mut none);
        assert_eq!(
            display(&ServiceStrategy.validate(&none)),
            vec!["spec.ports: Required value"]
        );
        let mut bad_type = svc(json!({"type": "Magic", "ports": [{"port": 1}]}));
        ServiceStrategy.default(&mut bad_type);
        assert!(display(&ServiceStrategy.validate(&bad_type)).contains(
            &"spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".to_string()
        ));
        let mut num_name = svc(json!({"ports": [{"port": 1}]}));
        num_name["metadata"]["name"] = json!("1web");
        assert!(
            display(&ServiceStrategy.validate(&num_name))[0]
                .starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label")
        );
        let mut ext = svc(json!({"type": "ExternalName"}));
        ServiceStrategy.default(&mut ext);
        assert_eq!(
            display(&ServiceStrategy.validate(&ext)),
            vec!["spec.externalName: Required value"]
        );
    }

    #[tokio::test]
    async fn allocation_on_create() {
        let st = store();
        let o = create(
            st.as_ref(),
            svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]})),
        )
        .await
        .expect("create");
        let ip: IpAddr = s(&o, "/spec/clusterIP").parse().expect("ip");
        assert!(Cidr::parse("10.43.0.0/16").is_some_and(|c| c.contains(&ip)));
        assert_eq!(o["spec"]["clusterIPs"], json!([ip.to_string()]));
        assert_eq!(o["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(o["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(o["status"], json!({"loadBalancer": {}}));

        // The kubernetes service takes .1 explicitly.
        let mut k = svc(
            json!({"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}),
        );
        k["metadata"] = json!({"name": "kubernetes", "namespace": "default", "uid": "uid-k"});
        let k = create(st.as_ref(), k).await.expect("kubernetes");
        assert_eq!(k["spec"]["clusterIPs"], json!(["10.43.0.1"]));

        // The same IP again is taken; one outside the range is rejected.
        let mut dup = svc(json!({"clusterIP": "10.43.0.1", "ports": [{"port": 80}]}));
        dup["metadata"] = json!({"name": "dup", "namespace": "default", "uid": "uid-dup"});
        let e = create(st.as_ref(), dup).await.err().map(|e| e.message);
        assert_eq!(
            e.as_deref(),
            Some(
                "Service \"dup\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.43.0.1\"}: failed to allocate IP 10.43.0.1: provided IP is already allocated"
            )
        );
        let mut out = svc(json!({"clusterIP": "1.1.1.1", "ports": [{"port": 80}]}));
        out["metadata"] = json!({"name": "out", "namespace": "default", "uid": "uid-out"});
        let e = create(st.as_ref(), out)
            .await
            .err()
            .map(|e| (e.code, e.message));
        assert_eq!(e, Some((422, "Service \"out\" is invalid: spec.clusterIPs: Invalid value: []string{\"1.1.1.1\"}: failed to allocate IP 1.1.1.1: the provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is 10.43.0.0/16".to_string())));

        // Headless services get no IP.
        let mut hl =
            svc(json!({"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}));
        hl["metadata"] = json!({"name": "db", "namespace": "default", "uid": "uid-db"});
        let hl = create(st.as_ref(), hl).await.expect("headless");
        assert_eq!(hl["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(hl["spec"]["ipFamilyPolicy"], "SingleStack");
        let mut hl2 = svc(json!({"clusterIP": "None", "ports": [{"port": 5432}]}));
        hl2["metadata"] = json!({"name": "db2", "namespace": "default", "uid": "uid-db2"});
        let hl2 = create(st.as_ref(), hl2)
            .await
            .expect("headless selectorless");
        assert_eq!(hl2["spec"]["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(hl2["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
    }

    #[tokio::test]
    async fn node_ports_on_create_and_conflicts() {
        let st = store();
        let mut np = svc(
            json!({"type": "NodePort", "ports": [{"name": "tcp", "port": 53, "protocol": "TCP"}, {"name": "udp", "port": 53, "protocol": "UDP"}, {"name": "web", "port": 80, "nodePort": 30080}]}),
        );
        np["metadata"]["name"] = json!("np");
        let np = create(st.as_ref(), np).await.expect("nodeport");
        let p0 = util::int(&np, "/spec/ports/0/nodePort").unwrap_or(0);
        assert!((30000..=32767).contains(&p0));
        assert_eq!(
            util::int(&np, "/spec/ports/1/nodePort"),
            Some(p0),
            "TCP and UDP share a node port"
        );
        assert_eq!(util::int(&np, "/spec/ports/2/nodePort"), Some(30080));
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");

        let mut clash =
            svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
        clash["metadata"] = json!({"name": "clash", "namespace": "default", "uid": "uid-clash"});
        let e = create(st.as_ref(), clash).await.err().map(|e| e.message);
        assert_eq!(
            e.as_deref(),
            Some(
                "Service \"clash\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
            )
        );
        let mut range = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}));
        range["metadata"] = json!({"name": "range", "namespace": "default", "uid": "uid-range"});
        let e = create(st.as_ref(), range).await.err().map(|e| e.message);
        assert_eq!(
            e.as_deref(),
            Some(
                "Service \"range\" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"
            )
        );

        let mut lb = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
        );
        lb["metadata"] = json!({"name": "lb", "namespace": "default", "uid": "uid-lb"});
        let lb = create(st.as_ref(), lb).await.expect("lb");
        assert!(
            util::int(&lb, "/spec/healthCheckNodePort")
                .is_some_and(|p| (30000..=32767).contains(&p))
        );

        // Deleting frees the port for others.
        st.delete("/registry/core/services/default/np", 0)
            .await
            .expect("delete");
        let mut again =
            svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
        again["metadata"] = json!({"name": "again", "namespace": "default", "uid": "uid-again"});
        assert!(create(st.as_ref(), again).await.is_ok());
    }

    #[tokio::test]
    async fn resubmitted_manifests_keep_allocations() {
        let st = store();
        let ctx = Ctx {
            store: st.as_ref(),
            service_cidr: "10.43.0.0/16",
            cluster_cidr: "10.42.0.0/16",
            node_port_range: (30000, 32767),
        };
        let manifest = svc(
            json!({"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}),
        );
        let old = create(st.as_ref(), manifest.clone()).await.expect("create");
        let mut new = manifest.clone();
        ServiceStrategy.default(&mut new);
        new["status"] = old["status"].clone();
        ServiceStrategy.prepare_update(&mut new, &old);
        assert!(ServiceStrategy.validate(&new).is_empty());
        assert!(ServiceStrategy.validate_update(&new, &old).is_empty());
        ServiceStrategy
            .allocate_update(&ctx, &mut new, &old)
            .await
            .expect("update");
        assert_eq!(new, old, "a re-applied manifest is a no-op");

        // Changing the cluster IP is refused.
        let mut moved = old.clone();
        moved["spec"]["clusterIP"] = json!("10.43.9.9");
        ServiceStrategy.prepare_update(&mut moved, &old);
        assert_eq!(
            display(&ServiceStrategy.validate_update(&moved, &old)),
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"10.43.9.9\"}: may not change once set"
            ]
        );

        // NodePort -> ClusterIP drops the untouched node ports.
        let mut cip = old.clone();
        cip["spec"]["type"] = json!("ClusterIP");
        ServiceStrategy.default(&mut cip);
        ServiceStrategy.prepare_update(&mut cip, &old);
        assert!(cip["spec"]["ports"][0].get("nodePort").is_none());
        assert!(cip["spec"].get("externalTrafficPolicy").is_none());
        assert!(
            ServiceStrategy.validate(&cip).is_empty(),
            "{:?}",
            ServiceStrategy.validate(&cip)
        );

        // ClusterIP -> NodePort allocates.
        let mut to_np = cip.clone();
        to_np["spec"]["type"] = json!("NodePort");
        ServiceStrategy.default(&mut to_np);
        ServiceStrategy.prepare_update(&mut to_np, &cip);
        ServiceStrategy
            .allocate_update(&ctx, &mut to_np, &cip)
            .await
            .expect("to nodeport");
        assert!(util::int(&to_np, "/spec/ports/0/nodePort").is_some_and(|p| p >= 30000));
    }

    #[test]
    fn field_selectors() {
        let o = svc(json!({"type": "NodePort", "clusterIP": "10.43.0.9"}));
        assert_eq!(
            ServiceStrategy.field_value(&o, "spec.clusterIP").as_deref(),
            Some("10.43.0.9")
        );
        assert_eq!(
            ServiceStrategy.field_value(&o, "spec.type").as_deref(),
            Some("NodePort")
        );
        assert_eq!(ServiceStrategy.name_rule(), NameRule::Label);
    }
}
