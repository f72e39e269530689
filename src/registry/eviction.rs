//! POST pods/NAME/eviction (policy/v1 and v1beta1 Eviction): a delete that
//! honours PodDisruptionBudgets, as upstream's eviction REST. Without a
//! budget the pod is deleted; with one, a disruption is taken from
//! `status.disruptionsAllowed` (compare-and-swap on the budget's
//! resourceVersion, the pod recorded in `disruptedPods` for the disruption
//! controller) or the request gets 429 TooManyRequests.

use serde_json::{Value, json};

use super::ResourceDef;
use super::generic::{DeleteOptions, ListQuery, ReadAt, Registry, WriteOptions, now_rfc3339};
use crate::api::selectors::LabelSelector;
use crate::api::status::ApiError;

/// Budgets with more unconfirmed evictions than this refuse more
/// (upstream's MaxDisruptedPodSize).
const MAX_DISRUPTED_PODS: usize = 2000;

/// How often a lost compare-and-swap on the budget is retried.
const RETRIES: usize = 5;

const TOO_MANY: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn too_many_requests(cause: String) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", TOO_MANY);
    e.details = Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]}));
    e
}

/// metav1.DeleteOptions inside the Eviction body.
fn delete_options(eviction: &Value, dry_run: bool) -> DeleteOptions {
    let d = eviction.get("deleteOptions").unwrap_or(&Value::Null);
    DeleteOptions {
        dry_run: dry_run
            || d.get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All")),
        precondition_uid: d
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        precondition_rv: d
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        grace_period_seconds: d.get("gracePeriodSeconds").and_then(Value::as_i64),
        user: None,
        propagation_policy: d
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(String::from),
    }
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Pods that already are not running, or are going, are evicted without
/// asking a budget.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed" | "Pending")
    ) || pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

fn selects(pdb: &Value, pod: &Value) -> bool {
    let Some(sel) = pdb.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        return false;
    };
    LabelSelector::from_label_selector_json(sel)
        .is_ok_and(|s| s.matches(&super::generic::labels_of(pod)))
}

fn num(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

/// Evict pod `name`; returns the Status to answer 201 with.
pub async fn evict(
    reg: &Registry,
    pod_def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    eviction: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    if let Some(kind) = eviction.get("kind").and_then(Value::as_str)
        && kind != "Eviction"
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind (Eviction)"
        )));
    }
    let body_name = eviction
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let mut opts = delete_options(eviction, dry_run);
    let pdb_def = reg
        .catalogue
        .get("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("no poddisruptionbudgets resource"))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let pod = reg.get(pod_def, ns, name, ReadAt::Latest).await?;
        if can_ignore_budget(&pod) {
            break;
        }
        let pdbs: Vec<Value> = reg
            .list(&pdb_def, ns, &ListQuery::default())
            .await?
            .items
            .into_iter()
            .filter(|p| selects(p, &pod))
            .collect();
        let pdb = match pdbs.as_slice() {
            [] => break,
            [one] => one,
            _ => {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
        };
        let pdb_name = super::generic::name_of(pdb).to_string();
        let healthy = num(pdb, "/status/currentHealthy");
        let desired = num(pdb, "/status/desiredHealthy");
        if !is_ready(&pod) {
            let always =
                pdb.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow"));
            // An unready pod costs the budget nothing when the budget is
            // met without it (or the policy says so); the delete is then
            // conditional on the pod not having become ready meanwhile.
            if always || (healthy >= desired && desired > 0) {
                if opts.precondition_rv.is_none() {
                    opts.precondition_rv = pod
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .map(String::from);
                }
                break;
            }
        }
        if num(pdb, "/status/observedGeneration") < num(pdb, "/metadata/generation") {
            return Err(too_many_requests(format!(
                "The disruption budget {pdb_name} is still being processed by the server."
            )));
        }
        let allowed = num(pdb, "/status/disruptionsAllowed");
        if allowed < 0 {
            return Err(ApiError::forbidden("pdb disruptions allowed is negative"));
        }
        let disrupted = pdb
            .pointer("/status/disruptedPods")
            .and_then(Value::as_object)
            .map_or(0, |m| m.len());
        if disrupted > MAX_DISRUPTED_PODS {
            return Err(ApiError::forbidden(
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            return Err(too_many_requests(format!(
                "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
            )));
        }
        if opts.dry_run {
            break;
        }
        let mut new = pdb.clone();
        new["status"]["disruptionsAllowed"] = json!(allowed - 1);
        new["status"]["disruptedPods"][name] = json!(now_rfc3339());
        if allowed == 1 {
            set_insufficient(&mut new);
        }
        // The body's resourceVersion makes this a compare-and-swap.
        match reg
            .update(
                &pdb_def,
                ns,
                &pdb_name,
                new,
                Some("status"),
                &WriteOptions::default(),
            )
            .await
        {
            Ok(_) => break,
            Err(e) if e.code == 409 && attempt < RETRIES => continue,
            Err(e) if e.code == 409 => {
                return Err(too_many_requests(format!(
                    "The disruption budget {pdb_name} is being updated concurrently; try again"
                )));
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(rv) = mark_disruption_target(reg, pod_def, ns, name, &opts).await?
        && opts.precondition_rv.is_some()
    {
        // We made that change ourselves: the delete expects it.
        opts.precondition_rv = Some(rv);
    }
    reg.delete(pod_def, ns, name, &opts).await?;
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// DisruptionAllowed=False, as the budget has no disruption left.
fn set_insufficient(pdb: &mut Value) {
    let generation = num(pdb, "/metadata/generation");
    let cond = json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                      "message": "", "observedGeneration": generation, "lastTransitionTime": now_rfc3339()});
    let mut conds: Vec<Value> = pdb
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match conds.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(c) if c["status"] == "False" => {}
        Some(c) => *c = cond,
        None => conds.push(cond),
    }
    pdb["status"]["conditions"] = Value::Array(conds);
}

/// The DisruptionTarget condition upstream puts on an evicted pod before
/// deleting it, on the newest pod that still meets the delete's
/// preconditions. Returns the pod's new resourceVersion when written.
async fn mark_disruption_target(
    reg: &Registry,
    pod_def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Option<String>, ApiError> {
    if opts.dry_run {
        return Ok(None);
    }
    for _ in 0..RETRIES {
        let pod = reg.get(pod_def, ns, name, ReadAt::Latest).await?;
        let rv = pod
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(want) = &opts.precondition_uid
            && want != uid
        {
            return Err(ApiError::conflict(
                pod_def.target(),
                name,
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        if let Some(want) = &opts.precondition_rv
            && *want != rv
        {
            return Err(ApiError::conflict(
                pod_def.target(),
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                ),
            ));
        }
        // Pods already going or gone need no condition.
        if pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
            || matches!(
                pod.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            )
        {
            return Ok(None);
        }
        let mut new = pod.clone();
        let cond = json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                          "message": "Eviction API: evicting", "lastProbeTime": null,
                          "lastTransitionTime": now_rfc3339()});
        let mut conds: Vec<Value> = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conds.retain(|c| c["type"] != "DisruptionTarget");
        conds.push(cond);
        new["status"]["conditions"] = Value::Array(conds);
        match reg
            .update(
                pod_def,
                ns,
                name,
                new,
                Some("status"),
                &WriteOptions::default(),
            )
            .await
        {
            Ok(updated) => {
                return Ok(updated
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(String::from));
            }
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::stale(pod_def.target(), name))
}
