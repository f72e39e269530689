//! apps/v1: Deployments, ReplicaSets, StatefulSets, DaemonSets and
//! ControllerRevisions.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::defaults;
use super::typed;
use super::util::{self, child, child_opt, each_obj_mut, get, s, set_default, set_default_str};
use super::validation;
use crate::api::status::FieldError;
use crate::registry::strategy::Strategy;

fn spec_mut(obj: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    obj.as_object_mut().and_then(|m| child(m, "spec"))
}

fn reset_status(obj: &mut Value, status: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
    }
}

/// Selector immutability: `spec.selector: Invalid value: v1.LabelSelector{...}: field is immutable`.
fn selector_immutable(errs: &mut Vec<FieldError>, new: &Value, old: &Value) {
    let (n, o) = (get(new, "/spec/selector"), get(old, "/spec/selector"));
    if n != o {
        errs.push(FieldError::invalid_raw(
            "spec.selector",
            util::go_label_selector(n),
            "field is immutable",
        ));
    }
}

fn common_workload_checks(errs: &mut Vec<FieldError>, obj: &Value) {
    validation::validate_replicas(errs, obj, "spec.replicas");
    util::check_non_negative(
        errs,
        "spec.minReadySeconds",
        util::int(obj, "/spec/minReadySeconds"),
    );
    util::check_non_negative(
        errs,
        "spec.revisionHistoryLimit",
        util::int(obj, "/spec/revisionHistoryLimit"),
    );
}

// ---------------------------------------------------------------- Deployment

pub struct DeploymentStrategy;

#[async_trait]
impl Strategy for DeploymentStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            set_default(spec, "replicas", json!(1));
            if let Some(st) = child(spec, "strategy") {
                set_default_str(st, "type", "RollingUpdate");
                if st.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                    && let Some(ru) = child(st, "rollingUpdate")
                {
                    set_default(ru, "maxUnavailable", json!("25%"));
                    set_default(ru, "maxSurge", json!("25%"));
                }
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
        }
        defaults::default_spec_template(obj);
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("apps", "Deployment", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        reset_status(obj, json!({}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        common_workload_checks(&mut errs, obj);
        validation::validate_workload_selector(&mut errs, obj, "spec", "deployment");
        validation::validate_pod_template(
            &mut errs,
            obj.pointer("/spec/template"),
            "spec.template",
            &["Always"],
        );
        let ty = s(obj, "/spec/strategy/type");
        match ty {
            "Recreate" => {
                if get(obj, "/spec/strategy/rollingUpdate").is_some() {
                    errs.push(FieldError::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => {
                let mu = obj.pointer("/spec/strategy/rollingUpdate/maxUnavailable");
                let ms = obj.pointer("/spec/strategy/rollingUpdate/maxSurge");
                validation::validate_int_or_percent(
                    &mut errs,
                    mu,
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    true,
                );
                validation::validate_int_or_percent(
                    &mut errs,
                    ms,
                    "spec.strategy.rollingUpdate.maxSurge",
                    false,
                );
                if validation::int_or_percent_is_zero(mu) && validation::int_or_percent_is_zero(ms)
                {
                    errs.push(util::invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        mu.unwrap_or(&Value::Null),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
            "" => errs.push(FieldError::required("spec.strategy.type")),
            other => errs.push(FieldError::not_supported(
                "spec.strategy.type",
                other,
                &["Recreate", "RollingUpdate"],
            )),
        }
        if let Some(pds) = util::int(obj, "/spec/progressDeadlineSeconds") {
            util::check_non_negative(&mut errs, "spec.progressDeadlineSeconds", Some(pds));
            if pds <= util::int(obj, "/spec/minReadySeconds").unwrap_or(0) {
                errs.push(FieldError::invalid_raw(
                    "spec.progressDeadlineSeconds",
                    pds,
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        selector_immutable(&mut errs, new, old);
        errs
    }
}

// ---------------------------------------------------------------- ReplicaSet

pub struct ReplicaSetStrategy;

#[async_trait]
impl Strategy for ReplicaSetStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            set_default(spec, "replicas", json!(1));
        }
        defaults::default_spec_template(obj);
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("apps", "ReplicaSet", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"replicas": 0}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        common_workload_checks(&mut errs, obj);
        validation::validate_workload_selector(&mut errs, obj, "spec", "deployment");
        validation::validate_pod_template(
            &mut errs,
            obj.pointer("/spec/template"),
            "spec.template",
            &["Always"],
        );
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        selector_immutable(&mut errs, new, old);
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.replicas")
            .then(|| util::int(obj, "/status/replicas").unwrap_or(0).to_string())
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}

// ---------------------------------------------------------------- StatefulSet

pub struct StatefulSetStrategy;

const STS_UPDATE_FORBIDDEN: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

#[async_trait]
impl Strategy for StatefulSetStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            set_default_str(spec, "podManagementPolicy", "OrderedReady");
            if let Some(us) = child(spec, "updateStrategy") {
                if us
                    .get("type")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    us.insert("type".into(), json!("RollingUpdate"));
                    set_default(us, "rollingUpdate", json!({}));
                }
                if us.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                    && let Some(ru) = child_opt(us, "rollingUpdate")
                {
                    set_default(ru, "partition", json!(0));
                }
            }
            if let Some(p) = child(spec, "persistentVolumeClaimRetentionPolicy") {
                set_default_str(p, "whenDeleted", "Retain");
                set_default_str(p, "whenScaled", "Retain");
            }
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            // Claim templates are PVC objects and get their defaults.
            for pvc in each_obj_mut(spec, "volumeClaimTemplates") {
                set_default_str(pvc, "apiVersion", "v1");
                set_default_str(pvc, "kind", "PersistentVolumeClaim");
                if let Some(meta) = child(pvc, "metadata")
                    && !meta.contains_key("creationTimestamp")
                {
                    meta.insert("creationTimestamp".into(), Value::Null);
                }
                if let Some(ps) = child(pvc, "spec") {
                    set_default_str(ps, "volumeMode", "Filesystem");
                }
                if let Some(st) = child(pvc, "status") {
                    set_default_str(st, "phase", "Pending");
                }
            }
        }
        defaults::default_spec_template(obj);
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("apps", "StatefulSet", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"availableReplicas": 0, "replicas": 0}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        common_workload_checks(&mut errs, obj);
        validation::validate_workload_selector(&mut errs, obj, "spec", "statefulset");
        validation::validate_pod_template(
            &mut errs,
            obj.pointer("/spec/template"),
            "spec.template",
            &["Always"],
        );
        util::check_enum(
            &mut errs,
            "spec.podManagementPolicy",
            obj.pointer("/spec/podManagementPolicy"),
            &["OrderedReady", "Parallel"],
            true,
        );
        let ty = s(obj, "/spec/updateStrategy/type");
        util::check_enum(
            &mut errs,
            "spec.updateStrategy.type",
            obj.pointer("/spec/updateStrategy/type"),
            &["OnDelete", "RollingUpdate"],
            true,
        );
        if ty == "OnDelete" && get(obj, "/spec/updateStrategy/rollingUpdate").is_some() {
            errs.push(FieldError::invalid(
                "spec.updateStrategy.rollingUpdate",
                "",
                "only allowed for updateStrategy 'RollingUpdate'",
            ));
        }
        util::check_non_negative(
            &mut errs,
            "spec.updateStrategy.rollingUpdate.partition",
            util::int(obj, "/spec/updateStrategy/rollingUpdate/partition"),
        );
        if let Some(mu) = obj
            .pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable")
            .filter(|v| !v.is_null())
        {
            validation::validate_int_or_percent(
                &mut errs,
                Some(mu),
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                true,
            );
            if validation::int_or_percent_is_zero(Some(mu)) {
                errs.push(util::invalid(
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    mu,
                    "must be greater than 0",
                ));
            }
        }
        for f in ["whenDeleted", "whenScaled"] {
            util::check_enum(
                &mut errs,
                &format!("spec.persistentVolumeClaimRetentionPolicy.{f}"),
                obj.pointer(&format!("/spec/persistentVolumeClaimRetentionPolicy/{f}")),
                &["Delete", "Retain"],
                false,
            );
        }
        util::check_non_negative(
            &mut errs,
            "spec.ordinals.start",
            util::int(obj, "/spec/ordinals/start"),
        );
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let strip = |o: &Value| -> Value {
            let mut spec = o.get("spec").cloned().unwrap_or(json!({}));
            if let Some(m) = spec.as_object_mut() {
                for k in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "revisionHistoryLimit",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(k);
                }
            }
            spec
        };
        if strip(new) != strip(old) {
            errs.push(FieldError::forbidden("spec", STS_UPDATE_FORBIDDEN));
        }
        errs
    }
}

// ---------------------------------------------------------------- DaemonSet

pub struct DaemonSetStrategy;

#[async_trait]
impl Strategy for DaemonSetStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            if let Some(us) = child(spec, "updateStrategy") {
                set_default_str(us, "type", "RollingUpdate");
                if us.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                    && let Some(ru) = child(us, "rollingUpdate")
                {
                    set_default(ru, "maxUnavailable", json!(1));
                    set_default(ru, "maxSurge", json!(0));
                }
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
        }
        defaults::default_spec_template(obj);
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("apps", "DaemonSet", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        reset_status(
            obj,
            json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0}),
        );
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_non_negative(
            &mut errs,
            "spec.minReadySeconds",
            util::int(obj, "/spec/minReadySeconds"),
        );
        util::check_non_negative(
            &mut errs,
            "spec.revisionHistoryLimit",
            util::int(obj, "/spec/revisionHistoryLimit"),
        );
        validation::validate_workload_selector(&mut errs, obj, "spec", "daemonset");
        validation::validate_pod_template(
            &mut errs,
            obj.pointer("/spec/template"),
            "spec.template",
            &["Always"],
        );
        match s(obj, "/spec/updateStrategy/type") {
            "OnDelete" => {}
            "RollingUpdate" => {
                let mu = obj.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable");
                let ms = obj.pointer("/spec/updateStrategy/rollingUpdate/maxSurge");
                validation::validate_int_or_percent(
                    &mut errs,
                    mu,
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    true,
                );
                validation::validate_int_or_percent(
                    &mut errs,
                    ms,
                    "spec.updateStrategy.rollingUpdate.maxSurge",
                    true,
                );
                let (mu0, ms0) = (
                    validation::int_or_percent_is_zero(mu),
                    validation::int_or_percent_is_zero(ms),
                );
                if mu0 && ms0 {
                    errs.push(util::invalid(
                        "spec.updateStrategy.rollingUpdate.maxUnavailable",
                        mu.unwrap_or(&Value::Null),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                } else if !mu0 && !ms0 {
                    errs.push(util::invalid(
                        "spec.updateStrategy.rollingUpdate.maxSurge",
                        ms.unwrap_or(&Value::Null),
                        "may not be set when maxUnavailable is non-zero",
                    ));
                }
            }
            "" => errs.push(FieldError::required("spec.updateStrategy.type")),
            other => errs.push(FieldError::not_supported(
                "spec.updateStrategy.type",
                other,
                &["OnDelete", "RollingUpdate"],
            )),
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        selector_immutable(&mut errs, new, old);
        errs
    }
}

// ---------------------------------------------------------------- ControllerRevision

pub struct ControllerRevisionStrategy;

#[async_trait]
impl Strategy for ControllerRevisionStrategy {
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("apps", "ControllerRevision", obj)
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_non_negative(&mut errs, "revision", util::int(obj, "/revision"));
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        util::check_immutable(&mut errs, new, old, "data");
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::display).collect()
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}})
    }

    #[test]
    fn deployment_defaults() {
        let mut d = deployment();
        DeploymentStrategy.default(&mut d);
        DeploymentStrategy.prepare_create(&mut d);
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert_eq!(d["status"], json!({}));
        assert!(
            DeploymentStrategy.validate(&d).is_empty(),
            "{:?}",
            DeploymentStrategy.validate(&d)
        );
        let mut rec = deployment();
        rec["spec"]["strategy"] = json!({"type": "Recreate"});
        DeploymentStrategy.default(&mut rec);
        assert_eq!(rec["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn deployment_validation() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
        DeploymentStrategy.default(&mut d);
        let e = display(&DeploymentStrategy.validate(&d));
        assert_eq!(
            e,
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
            ]
        );
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let mut old = deployment();
        DeploymentStrategy.default(&mut old);
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web2"}});
        assert_eq!(
            display(&DeploymentStrategy.validate_update(&new, &old)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
            ]
        );
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(DeploymentStrategy.validate_update(&scaled, &old).is_empty());
    }

    #[test]
    fn statefulsets() {
        let mut sts = deployment();
        sts["kind"] = json!("StatefulSet");
        sts["spec"]["volumeClaimTemplates"] =
            json!([{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]);
        StatefulSetStrategy.default(&mut sts);
        StatefulSetStrategy.prepare_create(&mut sts);
        let spec = &sts["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["volumeClaimTemplates"][0]["kind"],
            "PersistentVolumeClaim"
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["status"]["phase"],
            "Pending"
        );
        assert_eq!(
            sts["status"],
            json!({"availableReplicas": 0, "replicas": 0})
        );
        assert!(
            StatefulSetStrategy.validate(&sts).is_empty(),
            "{:?}",
            StatefulSetStrategy.validate(&sts)
        );
        let mut scaled = sts.clone();
        scaled["spec"]["replicas"] = json!(3);
        scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert!(
            StatefulSetStrategy
                .validate_update(&scaled, &sts)
                .is_empty()
        );
        let mut renamed = sts.clone();
        renamed["spec"]["serviceName"] = json!("other");
        assert_eq!(
            display(&StatefulSetStrategy.validate_update(&renamed, &sts)),
            vec![format!("spec: Forbidden: {STS_UPDATE_FORBIDDEN}")]
        );
    }

    #[test]
    fn daemonsets_and_replicasets() {
        let mut ds = deployment();
        DaemonSetStrategy.default(&mut ds);
        DaemonSetStrategy.prepare_create(&mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(ds["status"]["numberReady"], 0);
        assert!(DaemonSetStrategy.validate(&ds).is_empty());
        ds["spec"]["selector"] = json!({});
        assert_eq!(
            display(&DaemonSetStrategy.validate(&ds)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"
            ]
        );
        let mut rs = deployment();
        ReplicaSetStrategy.default(&mut rs);
        ReplicaSetStrategy.prepare_create(&mut rs);
        assert_eq!(rs["spec"]["replicas"], 1);
        assert_eq!(rs["status"], json!({"replicas": 0}));
        assert_eq!(
            ReplicaSetStrategy
                .field_value(&rs, "status.replicas")
                .as_deref(),
            Some("0")
        );
    }

    #[test]
    fn controller_revision_data_is_immutable() {
        let old = json!({"revision": 1, "data": {"spec": {"a": 1}}});
        let new = json!({"revision": 2, "data": {"spec": {"a": 2}}});
        assert_eq!(
            display(&ControllerRevisionStrategy.validate_update(&new, &old)),
            vec!["data: Invalid value: {\"spec\":{\"a\":2}}: field is immutable"]
        );
    }
}
