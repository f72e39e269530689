//! Quota arithmetic and evaluators (upstream's quota/v1 package): what one
//! object costs against a ResourceQuota, which quotas it falls under
//! (resources and scopes), and resource lists printed as upstream's
//! canonical quantities. Shared by the admission plugin and the controller.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::registry::strategy::kinds::quantity;

/// One amount of a resource, remembering whether it was written with a
/// binary suffix (Ki, Mi, ...) so sums print as upstream's do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount {
    /// Nano-units.
    pub nano: i128,
    pub binary: bool,
}

const NANO: i128 = 1_000_000_000;

impl Amount {
    pub fn count(n: i64) -> Self {
        Amount {
            nano: i128::from(n) * NANO,
            binary: false,
        }
    }
    pub fn zero() -> Self {
        Amount::count(0)
    }
    /// A quantity string; None when malformed.
    pub fn parse(s: &str) -> Option<Self> {
        let q = quantity::parse(s).ok()?;
        Some(Amount {
            nano: q.0,
            binary: s.trim_end().ends_with('i'),
        })
    }
    fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Amount::parse(s),
            Value::Number(n) => Amount::parse(&n.to_string()),
            _ => None,
        }
    }
    pub fn is_zero(&self) -> bool {
        self.nano == 0
    }
}

impl std::fmt::Display for Amount {
    /// Upstream's canonical form: binary suffixes for whole multiples of
    /// 1024, else the largest decimal suffix that keeps an integer.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.nano == 0 {
            return f.write_str("0");
        }
        let sign = if self.nano < 0 { "-" } else { "" };
        let v = self.nano.abs();
        if self.binary && v % NANO == 0 && v / NANO >= 1024 {
            let mut n = v / NANO;
            let mut i = 0;
            const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            while n % 1024 == 0 && i < 6 {
                n /= 1024;
                i += 1;
            }
            return write!(f, "{sign}{n}{}", SUFFIXES[i]);
        }
        const DECIMAL: [(u32, &str); 10] = [
            (27, "E"),
            (24, "P"),
            (21, "T"),
            (18, "G"),
            (15, "M"),
            (12, "k"),
            (9, ""),
            (6, "m"),
            (3, "u"),
            (0, "n"),
        ];
        for (e, suffix) in DECIMAL {
            let p = 10i128.pow(e);
            if v % p == 0 {
                return write!(f, "{sign}{}{suffix}", v / p);
            }
        }
        write!(f, "{sign}{v}n")
    }
}

/// A ResourceList (name -> amount), sorted by name as upstream prints it.
pub type ResourceList = BTreeMap<String, Amount>;

/// Read a ResourceList object; malformed amounts are skipped (validation
/// rejected them on the way in).
pub fn parse_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Amount::from_json(v).map(|a| (k.clone(), a)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn to_json(l: &ResourceList) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string())))
            .collect::<Map<String, Value>>(),
    )
}

/// a + b; a zero or absent amount takes b's format, as upstream's
/// Quantity.Add does.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone())
            .and_modify(|x| {
                if x.nano == 0 {
                    x.binary = v.binary;
                }
                x.nano = x.nano.saturating_add(v.nano);
            })
            .or_insert(*v);
    }
    out
}

/// a - b, never below zero per name (upstream's SubtractWithNonNegativeResult).
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    a.iter()
        .map(|(k, v)| {
            let minus = b.get(k).map_or(0, |x| x.nano);
            (
                k.clone(),
                Amount {
                    nano: (v.nano - minus).max(0),
                    binary: v.binary,
                },
            )
        })
        .collect()
}

/// Only the names in `names`.
pub fn mask<'a>(l: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names
        .into_iter()
        .filter_map(|n| l.get(n).map(|a| (n.clone(), *a)))
        .collect()
}

/// Whether every amount is zero.
pub fn is_zero(l: &ResourceList) -> bool {
    l.values().all(Amount::is_zero)
}

/// Names in `a` above their limit in `b` (absent limits do not constrain).
pub fn exceeded(a: &ResourceList, b: &ResourceList) -> Vec<String> {
    a.iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|lim| v.nano > lim.nano))
        .map(|(k, _)| k.clone())
        .collect()
}

/// `name=amount,name=amount`, sorted (upstream's prettyPrint).
pub fn pretty(l: &ResourceList) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The object-count quota name for a resource: `count/pods`,
/// `count/deployments.apps`.
pub fn object_count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// Kinds whose legacy quota name is the bare plural (`configmaps`, ...).
const LEGACY_COUNTS: &[&str] = &[
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];

/// Pod resources a quota can limit, besides hugepages and extended requests.
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// If a quota limits one of these, every container must state it (a
/// backward-compatibility rule upstream keeps for cpu and memory only).
const VALIDATION_SET: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

const SERVICE_RESOURCES: &[&str] = &[
    "count/services",
    "services",
    "services.nodeports",
    "services.loadbalancers",
];

const PVC_RESOURCES: &[&str] = &[
    "count/persistentvolumeclaims",
    "persistentvolumeclaims",
    "requests.storage",
];

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// A resource name outside the kubernetes.io domain (extended resources).
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// The quota evaluator of one resource (group + plural).
#[derive(Clone, Copy, Debug)]
pub struct Evaluator<'a> {
    pub group: &'a str,
    pub plural: &'a str,
}

impl<'a> Evaluator<'a> {
    pub fn new(group: &'a str, plural: &'a str) -> Self {
        Evaluator { group, plural }
    }

    fn is(&self, plural: &str) -> bool {
        self.group.is_empty() && self.plural == plural
    }

    /// Whether updates are charged too (the quota of a Service grows with
    /// its type, a claim's with its size); everything else is charged on
    /// create only.
    pub fn charges_updates(&self) -> bool {
        self.is("services") || self.is("persistentvolumeclaims")
    }

    /// Whether this evaluator accounts for the quota resource `name`.
    pub fn tracks(&self, name: &str) -> bool {
        if name == object_count_name(self.group, self.plural) {
            return true;
        }
        if self.is("pods") {
            return POD_RESOURCES.contains(&name)
                || name.starts_with("hugepages-")
                || name.starts_with("requests.hugepages-")
                || (name.starts_with("requests.") && !is_native(name));
        }
        if self.is("services") {
            return SERVICE_RESOURCES.contains(&name);
        }
        if self.is("persistentvolumeclaims") {
            return PVC_RESOURCES.contains(&name)
                || name.ends_with(&format!("{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"))
                || name.ends_with(&format!("{STORAGE_CLASS_SUFFIX}requests.storage"));
        }
        self.group.is_empty() && LEGACY_COUNTS.contains(&self.plural) && name == self.plural
    }

    /// The names among `hard` this evaluator accounts for.
    pub fn matching_resources<'n>(
        &self,
        hard: impl IntoIterator<Item = &'n String>,
    ) -> Vec<String> {
        hard.into_iter()
            .filter(|n| self.tracks(n))
            .cloned()
            .collect()
    }

    /// Whether `obj` falls under `quota`: the quota limits something this
    /// evaluator tracks (per its status.hard) and every scope matches.
    pub fn matches(&self, quota: &Value, obj: &Value) -> bool {
        let hard = parse_list(quota.pointer("/status/hard"));
        !self.matching_resources(hard.keys()).is_empty() && self.matches_scopes(quota, obj)
    }

    /// Whether `obj` is inside every scope of `quota` (no scopes: all are).
    pub fn matches_scopes(&self, quota: &Value, obj: &Value) -> bool {
        scope_selectors(quota)
            .iter()
            .all(|s| self.matches_scope(s, obj))
    }

    fn matches_scope(&self, s: &ScopeSelector, obj: &Value) -> bool {
        // Only pods have scopes; a scoped quota never covers anything else.
        if !self.is("pods") {
            return false;
        }
        match s.scope.as_str() {
            "Terminating" => is_terminating(obj),
            "NotTerminating" => !is_terminating(obj),
            "BestEffort" => is_best_effort(obj),
            "NotBestEffort" => !is_best_effort(obj),
            "PriorityClass" => {
                let pc = obj
                    .pointer("/spec/priorityClassName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match s.operator.as_str() {
                    "Exists" => !pc.is_empty(),
                    "DoesNotExist" => pc.is_empty(),
                    "In" => !pc.is_empty() && s.values.iter().any(|v| v == pc),
                    "NotIn" => pc.is_empty() || !s.values.iter().any(|v| v == pc),
                    _ => false,
                }
            }
            "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(obj),
            _ => false,
        }
    }

    /// What the object costs.
    pub fn usage(&self, obj: &Value, now: Timestamp) -> ResourceList {
        let mut out = ResourceList::new();
        out.insert(object_count_name(self.group, self.plural), Amount::count(1));
        if self.is("pods") {
            // Finished pods stay in count/pods but free their compute quota.
            if charges_compute(obj, now) {
                out = add(&out, &pod_compute_usage(obj));
            }
        } else if self.is("services") {
            out = add(&out, &service_usage(obj));
        } else if self.is("persistentvolumeclaims") {
            out = add(&out, &pvc_usage(obj));
        } else if self.group.is_empty() && LEGACY_COUNTS.contains(&self.plural) {
            out.insert(self.plural.to_string(), Amount::count(1));
        }
        out
    }

    /// Upstream's pod Constraints: a quota on cpu or memory requires every
    /// container to state it. Err is "must specify ..." text.
    pub fn constraints(&self, required: &[String], obj: &Value) -> Result<(), String> {
        if !self.is("pods") {
            return Ok(());
        }
        let required: BTreeSet<&str> = required
            .iter()
            .map(String::as_str)
            .filter(|r| VALIDATION_SET.contains(r))
            .collect();
        if required.is_empty() {
            return Ok(());
        }
        let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for c in containers(obj, "containers").chain(containers(obj, "initContainers")) {
            let requests = parse_list(c.pointer("/resources/requests"));
            let limits = parse_list(c.pointer("/resources/limits"));
            let has = compute_helper(&requests, &limits);
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            for r in &required {
                if !has.contains_key(*r) {
                    missing.entry(r).or_default().insert(name.to_string());
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = missing
            .iter()
            .map(|(r, names)| {
                format!(
                    "{r} for: {}",
                    names.iter().cloned().collect::<Vec<_>>().join(",")
                )
            })
            .collect();
        Err(format!("must specify {}", parts.join("; ")))
    }
}

/// One scope of a quota: from spec.scopes (operator Exists) or
/// spec.scopeSelector.matchExpressions.
#[derive(Clone, Debug)]
pub struct ScopeSelector {
    pub scope: String,
    pub operator: String,
    pub values: Vec<String>,
}

pub fn scope_selectors(quota: &Value) -> Vec<ScopeSelector> {
    let mut out: Vec<ScopeSelector> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| ScopeSelector {
            scope: s.to_string(),
            operator: "Exists".into(),
            values: Vec::new(),
        })
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(ScopeSelector {
            scope: e
                .get("scopeName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            operator: e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            values: e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
        });
    }
    out
}

fn containers<'v>(pod: &'v Value, field: &str) -> impl Iterator<Item = &'v Value> {
    pod.get("spec")
        .and_then(|s| s.get(field))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn is_terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0)
}

/// QoS BestEffort: no container states cpu or memory requests or limits.
pub fn is_best_effort(pod: &Value) -> bool {
    containers(pod, "containers")
        .chain(containers(pod, "initContainers"))
        .all(|c| {
            ["requests", "limits"].iter().all(|k| {
                c.pointer(&format!("/resources/{k}"))
                    .and_then(Value::as_object)
                    .is_none_or(|m| !m.contains_key("cpu") && !m.contains_key("memory"))
            })
        })
}

fn uses_cross_namespace_affinity(pod: &Value) -> bool {
    let cross = |t: &Value| {
        t.get("namespaces")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
            || t.get("namespaceSelector").is_some_and(|s| !s.is_null())
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = pod.pointer(&format!("/spec/affinity/{kind}")) else {
            return false;
        };
        let req = a
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(cross);
        let pref = a
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|w| w.get("podAffinityTerm"))
            .any(cross);
        req || pref
    })
}

/// Whether a pod still holds compute quota: not terminal, and not past
/// the end of its deletion grace period.
pub fn charges_compute(pod: &Value, now: Timestamp) -> bool {
    if matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    if let Some(ts) = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok())
        && pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .is_some_and(|g| !g.is_null())
        && now > ts
    {
        return false;
    }
    true
}

/// Per-name maximum.
fn max_list(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone())
            .and_modify(|x| {
                if v.nano > x.nano {
                    x.nano = v.nano;
                }
            })
            .or_insert(*v);
    }
    out
}

/// A pod's effective requests or limits (`field`), as upstream's
/// PodRequests/PodLimits: containers and sidecars summed, each plain init
/// container (plus the sidecars started before it) as a floor, overhead on top.
fn pod_resources(pod: &Value, field: &str) -> ResourceList {
    let of = |c: &Value| parse_list(c.pointer(&format!("/resources/{field}")));
    let mut sum = ResourceList::new();
    for c in containers(pod, "containers") {
        sum = add(&sum, &of(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_floor = ResourceList::new();
    for c in containers(pod, "initContainers") {
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            sidecars = add(&sidecars, &of(c));
            sum = add(&sum, &of(c));
        } else {
            init_floor = max_list(&init_floor, &add(&of(c), &sidecars));
        }
    }
    let mut total = max_list(&sum, &init_floor);
    if let Some(overhead) = pod.pointer("/spec/overhead") {
        // Overhead counts only towards what the containers state at all.
        let overhead = parse_list(Some(overhead));
        if field == "requests" {
            total = add(&total, &overhead);
        } else {
            let present: Vec<String> = total.keys().cloned().collect();
            total = add(&total, &mask(&overhead, present.iter()));
        }
    }
    total
}

/// Upstream's podComputeUsageHelper: requests and limits -> quota names.
fn compute_helper(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), Amount::count(1));
    for (r, aliases) in [
        ("cpu", ["cpu", "requests.cpu"]),
        ("memory", ["memory", "requests.memory"]),
        (
            "ephemeral-storage",
            ["ephemeral-storage", "requests.ephemeral-storage"],
        ),
    ] {
        if let Some(q) = requests.get(r) {
            for a in aliases {
                out.insert(a.into(), *q);
            }
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    for (name, q) in requests {
        if name.starts_with("hugepages-") {
            out.insert(name.clone(), *q);
            out.insert(format!("requests.{name}"), *q);
        } else if !is_native(name) {
            out.insert(format!("requests.{name}"), *q);
        }
    }
    out
}

fn pod_compute_usage(pod: &Value) -> ResourceList {
    compute_helper(
        &pod_resources(pod, "requests"),
        &pod_resources(pod, "limits"),
    )
}

fn service_usage(svc: &Value) -> ResourceList {
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = ResourceList::new();
    out.insert("services".into(), Amount::count(1));
    out.insert("services.loadbalancers".into(), Amount::zero());
    out.insert("services.nodeports".into(), Amount::zero());
    match svc.pointer("/spec/type").and_then(Value::as_str) {
        Some("NodePort") => {
            out.insert(
                "services.nodeports".into(),
                Amount::count(ports.len() as i64),
            );
        }
        Some("LoadBalancer") => {
            let allocate = svc
                .pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let node_ports = if allocate {
                ports.len()
            } else {
                ports
                    .iter()
                    .filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0)
                    .count()
            };
            out.insert(
                "services.nodeports".into(),
                Amount::count(node_ports as i64),
            );
            out.insert("services.loadbalancers".into(), Amount::count(1));
        }
        _ => {}
    }
    out
}

fn pvc_usage(pvc: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("persistentvolumeclaims".into(), Amount::count(1));
    let storage = pvc
        .pointer("/spec/resources/requests/storage")
        .and_then(Amount::from_json);
    if let Some(s) = storage {
        out.insert("requests.storage".into(), s);
    }
    let class = pvc
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .or_else(|| {
            pvc.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                .and_then(Value::as_str)
        })
        .filter(|c| !c.is_empty());
    if let Some(class) = class {
        out.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            Amount::count(1),
        );
        if let Some(s) = storage {
            out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), s);
        }
    }
    out
}

/// The (group, plural) a quota resource name is charged by, for the kinds
/// with their own evaluators and for `count/<plural>[.<group>]`.
pub fn resource_of(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    for plural in ["pods", "services", "persistentvolumeclaims"]
        .into_iter()
        .chain(LEGACY_COUNTS.iter().copied())
    {
        if Evaluator::new("", plural).tracks(name) {
            return Some((String::new(), plural.to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Amount {
        Amount::parse(s).expect("quantity")
    }

    #[test]
    fn canonical_strings() {
        let cases = [
            ("0", "0"),
            ("1", "1"),
            ("100m", "100m"),
            ("1500m", "1500m"),
            ("2000", "2k"),
            ("0.5", "500m"),
            ("128Mi", "128Mi"),
            ("1Gi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("512", "512"),
            ("1G", "1G"),
        ];
        for (input, want) in cases {
            assert_eq!(a(input).to_string(), want, "{input}");
        }
        let sum = add(
            &ResourceList::from([("m".into(), a("1Gi"))]),
            &ResourceList::from([("m".into(), a("512Mi"))]),
        );
        assert_eq!(pretty(&sum), "m=1536Mi");
    }

    #[test]
    fn pod_usage_and_scopes() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "300m"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]}});
        let ev = Evaluator::new("", "pods");
        let u = ev.usage(&pod, Timestamp::now());
        assert_eq!(
            pretty(&u),
            "count/pods=1,cpu=1,limits.cpu=200m,memory=64Mi,pods=1,requests.cpu=1,requests.memory=64Mi"
        );
        let mut done = pod.clone();
        done["status"] = json!({"phase": "Succeeded"});
        assert_eq!(pretty(&ev.usage(&done, Timestamp::now())), "count/pods=1");
        assert_eq!(
            ev.constraints(&["limits.cpu".into(), "pods".into()], &pod),
            Err("must specify limits.cpu for: b,i".into())
        );
        assert!(!is_best_effort(&pod));
        let q = json!({"spec": {"scopes": ["BestEffort"]}, "status": {"hard": {"pods": "1"}}});
        assert!(!ev.matches(&q, &pod));
        assert!(ev.matches(&q, &json!({"spec": {"containers": [{"name": "x"}]}})));
        assert!(!Evaluator::new("", "services").matches(&q, &json!({})));
    }

    #[test]
    fn resource_names() {
        assert_eq!(
            resource_of("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            resource_of("requests.cpu"),
            Some(("".into(), "pods".into()))
        );
        assert_eq!(
            resource_of("services.nodeports"),
            Some(("".into(), "services".into()))
        );
        assert_eq!(
            resource_of("gold.storageclass.storage.k8s.io/requests.storage"),
            Some(("".into(), "persistentvolumeclaims".into()))
        );
        assert_eq!(resource_of("secrets"), Some(("".into(), "secrets".into())));
        assert_eq!(resource_of("bogus"), None);
    }
}
