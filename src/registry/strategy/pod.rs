//! Pods: defaults, create-time status (phase Pending, QoS class), the
//! admission-time defaults kubectl output shows (service account, priority,
//! default tolerations), validation, the narrow set of spec updates upstream
//! allows, and the selectable fields.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::defaults;
use super::quantity;
use super::typed;
use super::util::{self, arr, get, s};
use super::validation;
use crate::api::status::{ApiError, FieldError};
use crate::registry::strategy::{Ctx, NameRule, Strategy};

/// The message upstream gives when a pod update touches a frozen field.
pub const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Built-in priority classes upstream creates at start-up.
const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

pub struct PodStrategy;

/// The pod's QoS class (`qos.GetPodQOS`): BestEffort without any cpu/memory
/// request or limit, Guaranteed when every container limits both and
/// requests equal limits, Burstable otherwise.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut requests: std::collections::BTreeMap<String, quantity::Quantity> = Default::default();
    let mut limits: std::collections::BTreeMap<String, quantity::Quantity> = Default::default();
    let mut guaranteed = true;
    let containers = arr(spec, "/containers")
        .iter()
        .chain(arr(spec, "/initContainers"));
    for c in containers {
        let parse_list = |ptr: &str| -> Vec<(String, quantity::Quantity)> {
            util::map(c, ptr)
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k == "cpu" || *k == "memory")
                .filter_map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    quantity::parse(&text)
                        .ok()
                        .filter(|q| q.0 > 0)
                        .map(|q| (k.clone(), q))
                })
                .collect()
        };
        for (k, q) in parse_list("/resources/requests") {
            let e = requests.entry(k).or_insert(quantity::Quantity(0));
            *e = e.saturating_add(q);
        }
        let lims = parse_list("/resources/limits");
        let has = |n: &str| lims.iter().any(|(k, _)| k == n);
        if !(has("cpu") && has("memory")) {
            guaranteed = false;
        }
        for (k, q) in lims {
            let e = limits.entry(k).or_insert(quantity::Quantity(0));
            *e = e.saturating_add(q);
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        for (k, r) in &requests {
            if limits.get(k) != Some(r) {
                guaranteed = false;
                break;
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// A short, stable rendering of where two JSON values differ, shown after
/// the forbidden-update message as upstream shows its diff.
fn json_diff(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    if out.len() >= 8 || old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                json_diff(x, y, &util::join(path, k), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_diff(x, y, &util::idx(path, i), out);
            }
        }
        _ => {
            out.push(format!("-\t{path}: {old}"));
            out.push(format!("+\t{path}: {new}"));
        }
    }
}

/// ValidatePodUpdate's spec rule: only images, activeDeadlineSeconds,
/// added tolerations and a negative grace period raised to 1 may change.
fn validate_spec_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = json!({});
    let old_spec = old.get("spec").unwrap_or(&empty);
    let new_spec = new.get("spec").unwrap_or(&empty);
    let mut munged = new_spec.clone();
    // Images may change (when the container lists line up).
    for list in ["containers", "initContainers"] {
        let olds = arr(old_spec, &format!("/{list}"));
        if let Some(news) = munged.get_mut(list).and_then(Value::as_array_mut)
            && news.len() == olds.len()
        {
            for (n, o) in news.iter_mut().zip(olds) {
                if let (Some(n), Some(img)) = (n.as_object_mut(), o.get("image")) {
                    n.insert("image".into(), img.clone());
                }
            }
        }
    }
    // activeDeadlineSeconds may be set or lowered, never raised or removed.
    let new_ads = util::int(new_spec, "/activeDeadlineSeconds");
    let old_ads = util::int(old_spec, "/activeDeadlineSeconds");
    match (old_ads, new_ads) {
        (Some(_), None) => errs.push(FieldError::invalid_raw(
            "spec.activeDeadlineSeconds",
            "null",
            "must not update from a positive integer to nil value",
        )),
        (Some(o), Some(n)) if n > o => errs.push(FieldError::invalid_raw(
            "spec.activeDeadlineSeconds",
            n,
            "must be less than or equal to previous value",
        )),
        _ => {}
    }
    if let Some(m) = munged.as_object_mut() {
        match old_spec.get("activeDeadlineSeconds") {
            Some(v) => m.insert("activeDeadlineSeconds".into(), v.clone()),
            None => m.remove("activeDeadlineSeconds"),
        };
        // Tolerations may only be added.
        let old_t = arr(old_spec, "/tolerations");
        let new_t = arr(new_spec, "/tolerations");
        if old_t.iter().all(|t| new_t.contains(t)) {
            match old_spec.get("tolerations") {
                Some(v) => m.insert("tolerations".into(), v.clone()),
                None => m.remove("tolerations"),
            };
        }
        // A negative grace period may be raised to 1.
        if util::int(old_spec, "/terminationGracePeriodSeconds").is_some_and(|g| g < 0)
            && util::int(new_spec, "/terminationGracePeriodSeconds") == Some(1)
            && let Some(v) = old_spec.get("terminationGracePeriodSeconds")
        {
            m.insert("terminationGracePeriodSeconds".into(), v.clone());
        }
    }
    if &munged != old_spec {
        let mut diff = Vec::new();
        json_diff(old_spec, &munged, "", &mut diff);
        let msg = format!(
            "{POD_UPDATE_FORBIDDEN}\n  core.PodSpec{{\n{}\n  }}\n",
            diff.join("\n")
        );
        errs.push(FieldError::forbidden("spec", msg));
    }
    errs
}

/// Default tolerations the DefaultTolerationSeconds admission plugin adds.
fn add_default_tolerations(spec: &mut serde_json::Map<String, Value>) {
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for k in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let present = list.iter().any(|t| {
            let eff = s(t, "/effect");
            s(t, "/key") == k && (eff.is_empty() || eff == "NoExecute")
        });
        if !present {
            list.push(json!({"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

#[async_trait]
impl Strategy for PodStrategy {
    /// Pods on a node are deleted gracefully: the node's agent stops the
    /// containers and then removes the pod. Unscheduled or finished pods go
    /// at once, and so does gracePeriodSeconds=0.
    fn graceful_delete(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        let scheduled = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let phase = obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !scheduled || phase == "Succeeded" || phase == "Failed" {
            return None;
        }
        let spec = obj
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30);
        let grace = requested.unwrap_or(spec).max(0);
        (grace > 0).then_some(grace)
    }

    fn default(&self, obj: &mut Value) {
        defaults::default_pod(obj);
    }

    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("", "Pod", obj)
    }

    fn prepare_create(&self, obj: &mut Value) {
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        let mut status = json!({"phase": "Pending", "qosClass": qos_class(&spec)});
        if !arr(&spec, "/schedulingGates").is_empty() {
            status["conditions"] = json!([{
                "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
                "lastProbeTime": null, "lastTransitionTime": null
            }]);
        }
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), status);
        }
        // Admission-time defaults (ServiceAccount and DefaultTolerationSeconds
        // plugins) that every pod shows upstream.
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            if spec
                .get("serviceAccountName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                spec.insert("serviceAccountName".into(), json!("default"));
                spec.insert("serviceAccount".into(), json!("default"));
            }
            add_default_tolerations(spec);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validation::validate_pod_spec(&mut errs, spec, "spec", true);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_spec_update(new, old)
    }

    /// The Priority admission plugin: resolve priorityClassName (or the
    /// global default class) into priority and preemptionPolicy.
    async fn allocate(&self, ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
        if get(obj, "/spec/priority").is_some() && get(obj, "/spec/preemptionPolicy").is_some() {
            return Ok(());
        }
        let class_name = s(obj, "/spec/priorityClassName").to_string();
        let prefix = "/registry/scheduling.k8s.io/priorityclasses/";
        let class: Option<Value> = if class_name.is_empty() {
            let list = ctx
                .store
                .list(prefix, Default::default())
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            list.items
                .iter()
                .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
                .find(|pc| pc.get("globalDefault").and_then(Value::as_bool) == Some(true))
        } else {
            let kv = ctx
                .store
                .get(&format!("{prefix}{class_name}"), None)
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            match kv.and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok()) {
                Some(pc) => Some(pc),
                None => match SYSTEM_PRIORITY_CLASSES
                    .iter()
                    .find(|(n, _)| *n == class_name)
                {
                    Some((n, v)) => Some(json!({"metadata": {"name": n}, "value": v})),
                    None => {
                        let name = s(obj, "/metadata/name");
                        return Err(ApiError::forbidden(format!(
                            "pods \"{name}\" is forbidden: no PriorityClass with name {class_name} was found"
                        )));
                    }
                },
            }
        };
        let (priority, policy, name) = match &class {
            Some(pc) => (
                util::int(pc, "/value").unwrap_or(0),
                Some(s(pc, "/preemptionPolicy"))
                    .filter(|p| !p.is_empty())
                    .unwrap_or("PreemptLowerPriority")
                    .to_string(),
                s(pc, "/metadata/name").to_string(),
            ),
            None => (0, "PreemptLowerPriority".to_string(), String::new()),
        };
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            util::set_default(spec, "priority", json!(priority));
            util::set_default(spec, "preemptionPolicy", json!(policy));
            if !name.is_empty() {
                util::set_default_str(spec, "priorityClassName", &name);
            }
        }
        Ok(())
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        Some(match field {
            "spec.nodeName" | "spec.host" => s(obj, "/spec/nodeName").to_string(),
            "spec.restartPolicy" => s(obj, "/spec/restartPolicy").to_string(),
            "spec.schedulerName" => s(obj, "/spec/schedulerName").to_string(),
            "spec.serviceAccountName" => s(obj, "/spec/serviceAccountName").to_string(),
            "spec.hostNetwork" => util::flag(obj, "/spec/hostNetwork")
                .unwrap_or(false)
                .to_string(),
            "status.phase" => s(obj, "/status/phase").to_string(),
            "status.podIP" => {
                let first = arr(obj, "/status/podIPs")
                    .first()
                    .map(|p| s(p, "/ip"))
                    .unwrap_or("");
                if first.is_empty() {
                    s(obj, "/status/podIP")
                } else {
                    first
                }
                .to_string()
            }
            "status.nominatedNodeName" => s(obj, "/status/nominatedNodeName").to_string(),
            _ => return None,
        })
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.host",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": containers}})
    }

    #[test]
    fn qos_classes() {
        let be = pod(json!([{"name": "a", "image": "x"}]));
        assert_eq!(qos_class(&be["spec"]), "BestEffort");
        let mut g = pod(
            json!([{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]),
        );
        defaults::default_pod(&mut g);
        assert_eq!(qos_class(&g["spec"]), "Guaranteed");
        let b =
            pod(json!([{"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m"}}}]));
        assert_eq!(qos_class(&b["spec"]), "Burstable");
        let b2 = pod(
            json!([{"name": "a", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}}]),
        );
        assert_eq!(qos_class(&b2["spec"]), "Burstable");
    }

    #[test]
    fn create_sets_pending_status_and_admission_defaults() {
        let mut p = pod(json!([{"name": "a", "image": "nginx"}]));
        p["status"] = json!({"phase": "Running", "podIP": "1.2.3.4"});
        PodStrategy.default(&mut p);
        PodStrategy.prepare_create(&mut p);
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        assert_eq!(p["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            p["spec"]["tolerations"][0]["key"],
            "node.kubernetes.io/not-ready"
        );
        assert!(
            PodStrategy.validate(&p).is_empty(),
            "{:?}",
            PodStrategy.validate(&p)
        );
    }

    #[test]
    fn scheduling_gates_add_a_condition() {
        let mut p = pod(json!([{"name": "a", "image": "nginx"}]));
        p["spec"]["schedulingGates"] = json!([{"name": "example.com/wait"}]);
        PodStrategy.prepare_create(&mut p);
        assert_eq!(p["status"]["conditions"][0]["reason"], "SchedulingGated");
    }

    #[test]
    fn updates_may_change_images_only() {
        let mut old =
            pod(json!([{"name": "a", "image": "nginx:1", "ports": [{"containerPort": 80}]}]));
        PodStrategy.default(&mut old);
        PodStrategy.prepare_create(&mut old);
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        new["spec"]["activeDeadlineSeconds"] = json!(100);
        assert!(PodStrategy.validate_update(&new, &old).is_empty());
        new["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(81);
        let errs = PodStrategy.validate_update(&new, &old);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec");
        assert_eq!(errs[0].reason, "FieldValueForbidden");
        assert!(
            errs[0]
                .message
                .starts_with(&format!("Forbidden: {POD_UPDATE_FORBIDDEN}"))
        );
        assert!(
            errs[0]
                .message
                .contains("containers[0].ports[0].containerPort"),
            "{}",
            errs[0].message
        );
        // Tolerations may be added, not removed.
        let mut add = old.clone();
        if let Some(t) = add["spec"]["tolerations"].as_array_mut() {
            t.push(json!({"key": "k", "operator": "Exists"}));
        }
        assert!(PodStrategy.validate_update(&add, &old).is_empty());
        let mut remove = old.clone();
        remove["spec"]["tolerations"] = json!([]);
        assert_eq!(PodStrategy.validate_update(&remove, &old).len(), 1);
        // activeDeadlineSeconds may only go down.
        let mut a = old.clone();
        a["spec"]["activeDeadlineSeconds"] = json!(50);
        let mut b = a.clone();
        b["spec"]["activeDeadlineSeconds"] = json!(60);
        let errs: Vec<String> = PodStrategy
            .validate_update(&b, &a)
            .iter()
            .map(FieldError::display)
            .collect();
        assert_eq!(
            errs,
            vec![
                "spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"
            ]
        );
    }

    #[test]
    fn field_values() {
        let p = json!({"spec": {"nodeName": "n1", "restartPolicy": "Always"}, "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}]}});
        assert_eq!(
            PodStrategy.field_value(&p, "spec.nodeName").as_deref(),
            Some("n1")
        );
        assert_eq!(
            PodStrategy.field_value(&p, "status.podIP").as_deref(),
            Some("10.42.0.5")
        );
        assert_eq!(
            PodStrategy.field_value(&p, "spec.hostNetwork").as_deref(),
            Some("false")
        );
        assert_eq!(PodStrategy.field_value(&p, "status.podIPs"), None);
        assert!(
            PodStrategy
                .selectable_fields()
                .contains(&"status.nominatedNodeName")
        );
    }

    #[tokio::test]
    async fn priority_admission() {
        use crate::store::Store;
        use crate::store::sqlite::{SqliteOptions, SqliteStore};
        let st = SqliteStore::open_temp(SqliteOptions {
            compaction_interval: None,
            ..Default::default()
        })
        .expect("store");
        let ctx = Ctx {
            store: st.as_ref(),
            service_cidr: "10.43.0.0/16",
            cluster_cidr: "10.42.0.0/16",
            node_port_range: (30000, 32767),
        };
        let mut p = pod(json!([{"name": "a", "image": "x"}]));
        PodStrategy.allocate(&ctx, &mut p).await.expect("ok");
        assert_eq!(p["spec"]["priority"], 0);
        assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        let mut crit = pod(json!([{"name": "a", "image": "x"}]));
        crit["spec"]["priorityClassName"] = json!("system-node-critical");
        PodStrategy.allocate(&ctx, &mut crit).await.expect("ok");
        assert_eq!(crit["spec"]["priority"], 2_000_001_000);
        let pc = json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"});
        st.create(
            "/registry/scheduling.k8s.io/priorityclasses/high",
            serde_json::to_vec(&pc).expect("json").into(),
        )
        .await
        .expect("create");
        let mut hi = pod(json!([{"name": "a", "image": "x"}]));
        hi["spec"]["priorityClassName"] = json!("high");
        PodStrategy.allocate(&ctx, &mut hi).await.expect("ok");
        assert_eq!(
            (
                hi["spec"]["priority"].clone(),
                hi["spec"]["preemptionPolicy"].clone()
            ),
            (json!(1000), json!("Never"))
        );
        let mut missing = pod(json!([{"name": "a", "image": "x"}]));
        missing["spec"]["priorityClassName"] = json!("nope");
        let e = PodStrategy.allocate(&ctx, &mut missing).await.err();
        assert_eq!(
            e.map(|e| (e.code, e.message)),
            Some((
                403,
                "pods \"p\" is forbidden: no PriorityClass with name nope was found".to_string()
            ))
        );
    }
}
