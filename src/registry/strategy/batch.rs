//! batch/v1: Jobs (including the generated selector and labels) and
//! CronJobs (including schedule parsing as upstream's cron library).

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::defaults;
use super::typed;
use super::util::{self, child, child_opt, each_obj_mut, get, s, set_default, set_default_str};
use super::validation;
use crate::api::status::FieldError;
use crate::registry::strategy::Strategy;

/// Labels a Job's pods get (legacy and prefixed forms).
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

fn spec_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.as_object_mut().and_then(|m| child(m, "spec"))
}

/// SetDefaults_Job on a job spec (also used for CronJob job templates'
/// pod templates, which get only the pod defaults).
fn default_job_spec(spec: &mut Map<String, Value>) {
    if !util::is_set(spec, "completions") && !util::is_set(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let backoff = if util::is_set(spec, "backoffLimitPerIndex") {
        i64::from(i32::MAX)
    } else {
        6
    };
    set_default(spec, "backoffLimit", json!(backoff));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "manualSelector", json!(false));
    let has_pfp = util::is_set(spec, "podFailurePolicy");
    set_default(
        spec,
        "podReplacementPolicy",
        json!(if has_pfp {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    if let Some(pfp) = child_opt(spec, "podFailurePolicy") {
        for rule in each_obj_mut(pfp, "rules") {
            for pat in each_obj_mut(rule, "onPodConditions") {
                set_default_str(pat, "status", "True");
            }
        }
    }
    if let Some(t) = child_opt(spec, "template") {
        defaults::default_pod_template(t);
    }
}

/// Job labels default to the template's labels when unset.
fn default_job_labels(obj: &mut Value) {
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    let Some(labels) = labels else { return };
    if let Some(meta) = obj.as_object_mut().and_then(|m| child(m, "metadata"))
        && meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
    {
        meta.insert("labels".into(), labels);
    }
}

/// generateSelector: pods of the job carry its name and uid; the selector
/// picks the uid.
fn generate_selector(obj: &mut Value) {
    let name = s(obj, "/metadata/name").to_string();
    let uid = s(obj, "/metadata/uid").to_string();
    let Some(spec) = spec_mut(obj) else { return };
    if let Some(labels) = child(spec, "template")
        .and_then(|t| child(t, "metadata"))
        .and_then(|m| child(m, "labels"))
    {
        for k in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
            labels.entry(k).or_insert_with(|| json!(name));
        }
        for k in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
            labels.entry(k).or_insert_with(|| json!(uid));
        }
    }
    if let Some(ml) = child(spec, "selector").and_then(|sel| child(sel, "matchLabels")) {
        ml.entry(CONTROLLER_UID_LABEL).or_insert_with(|| json!(uid));
    }
}

fn manual_selector(obj: &Value) -> bool {
    util::flag(obj, "/spec/manualSelector") == Some(true)
}

/// validateJobSpec (without the selector rules, which differ for templates).
fn validate_job_spec(errs: &mut Vec<FieldError>, spec: &Value, field: &str) {
    let f = |x: &str| util::join(field, x);
    for k in [
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        util::check_non_negative(errs, &f(k), util::int(spec, &format!("/{k}")));
    }
    util::check_positive(
        errs,
        &f("activeDeadlineSeconds"),
        util::int(spec, "/activeDeadlineSeconds"),
    );
    util::check_enum(
        errs,
        &f("completionMode"),
        spec.get("completionMode"),
        &["NonIndexed", "Indexed"],
        false,
    );
    if s(spec, "/completionMode") == "Indexed" && get(spec, "/completions").is_none() {
        errs.push(util::required(
            f("completions"),
            "when completion mode is Indexed",
        ));
    }
    util::check_enum(
        errs,
        &f("podReplacementPolicy"),
        spec.get("podReplacementPolicy"),
        &["Failed", "TerminatingOrFailed"],
        false,
    );
    validation::validate_pod_template(
        errs,
        spec.get("template"),
        &f("template"),
        &["OnFailure", "Never"],
    );
}

pub struct JobStrategy;

#[async_trait]
impl Strategy for JobStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = spec_mut(obj) {
            default_job_spec(spec);
        }
        default_job_labels(obj);
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("batch", "Job", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        if !manual_selector(obj) {
            generate_selector(obj);
        }
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({}));
        }
        // As upstream shows it: labels come from the (now labelled) template.
        default_job_labels(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_job_spec(&mut errs, spec, "spec");
        match get(obj, "/spec/selector") {
            None => errs.push(FieldError::required("spec.selector")),
            Some(sel) => {
                validation::validate_label_selector(&mut errs, sel, "spec.selector");
                let labels = obj.pointer("/spec/template/metadata/labels");
                if !validation::selector_matches(sel, labels) {
                    errs.push(FieldError::invalid_raw(
                        "spec.template.metadata.labels",
                        util::go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
                let uid = s(obj, "/metadata/uid");
                if !manual_selector(obj) && !uid.is_empty() {
                    let expected = json!({"matchLabels": {CONTROLLER_UID_LABEL: uid}});
                    if *sel != expected {
                        errs.push(FieldError::invalid_raw(
                            "spec.selector",
                            util::go_label_selector(Some(sel)),
                            "`selector` not auto-generated",
                        ));
                    }
                }
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let (n, o) = (get(new, "/spec/selector"), get(old, "/spec/selector"));
        if n != o {
            errs.push(FieldError::invalid_raw(
                "spec.selector",
                util::go_label_selector(n),
                "field is immutable",
            ));
        }
        for f in [
            "spec.template",
            "spec.completionMode",
            "spec.podFailurePolicy",
            "spec.backoffLimitPerIndex",
            "spec.managedBy",
            "spec.successPolicy",
        ] {
            util::check_immutable(&mut errs, new, old, f);
        }
        // Completions may only change for elastic Indexed jobs (with parallelism).
        let indexed = s(new, "/spec/completionMode") == "Indexed";
        let elastic =
            indexed && util::int(new, "/spec/completions") == util::int(new, "/spec/parallelism");
        if !elastic {
            util::check_immutable(&mut errs, new, old, "spec.completions");
        }
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.successful")
            .then(|| util::int(obj, "/status/succeeded").unwrap_or(0).to_string())
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
}

// ---------------------------------------------------------------- CronJob

/// upstream's limit: job names get an 11-character suffix.
const CRONJOB_NAME_MAX: usize = 52;

pub struct CronJobStrategy;

#[async_trait]
impl Strategy for CronJobStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = spec_mut(obj) else { return };
        set_default_str(spec, "concurrencyPolicy", "Allow");
        set_default(spec, "suspend", json!(false));
        set_default(spec, "successfulJobsHistoryLimit", json!(3));
        set_default(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(jt) = child(spec, "jobTemplate") {
            if let Some(meta) = child(jt, "metadata")
                && !meta.contains_key("creationTimestamp")
            {
                meta.insert("creationTimestamp".into(), Value::Null);
            }
            if let Some(t) = child(jt, "spec").and_then(|js| child_opt(js, "template")) {
                defaults::default_pod_template(t);
            }
        }
    }
    fn check_typed(&self, obj: &Value) -> Result<(), FieldError> {
        typed::check_builtin("batch", "CronJob", obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({}));
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = s(obj, "/metadata/name");
        if name.len() > CRONJOB_NAME_MAX {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                "must be no more than 52 characters",
            ));
        }
        let sched = s(obj, "/spec/schedule");
        if sched.is_empty() {
            errs.push(FieldError::required("spec.schedule"));
        } else if sched.contains("TZ") {
            errs.push(FieldError::invalid(
                "spec.schedule",
                sched,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        } else if let Err(e) =
            crate::controllers::cronjob::schedule::parse(sched, jiff::tz::TimeZone::UTC)
        {
            errs.push(FieldError::invalid("spec.schedule", sched, e));
        }
        let tz = s(obj, "/spec/timeZone");
        // The same tz database the CronJob controller schedules with.
        if !tz.is_empty() && jiff::tz::db().get(tz).is_err() {
            errs.push(FieldError::invalid(
                "spec.timeZone",
                tz,
                format!("unknown time zone {tz}"),
            ));
        }
        util::check_enum(
            &mut errs,
            "spec.concurrencyPolicy",
            obj.pointer("/spec/concurrencyPolicy"),
            &["Allow", "Forbid", "Replace"],
            true,
        );
        for f in [
            "startingDeadlineSeconds",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
        ] {
            util::check_non_negative(
                &mut errs,
                &format!("spec.{f}"),
                util::int(obj, &format!("/spec/{f}")),
            );
        }
        let jt = obj
            .pointer("/spec/jobTemplate/spec")
            .unwrap_or(&Value::Null);
        validate_job_spec(&mut errs, jt, "spec.jobTemplate.spec");
        if let Some(sel) = get(jt, "/selector") {
            errs.push(FieldError::invalid_raw(
                "spec.jobTemplate.spec.selector",
                util::go_label_selector(Some(sel)),
                "`selector` will be auto-generated",
            ));
        }
        if util::flag(jt, "/manualSelector") == Some(true) {
            errs.push(FieldError::not_supported(
                "spec.jobTemplate.spec.manualSelector",
                "true",
                &["nil", "false"],
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::display).collect()
    }

    fn job() -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}], "restartPolicy": "Never"}}}})
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let mut j = job();
        JobStrategy.default(&mut j);
        JobStrategy.prepare_create(&mut j);
        let spec = &j["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["manualSelector"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let labels = json!({"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "job-name": "pi"});
        assert_eq!(spec["template"]["metadata"]["labels"], labels);
        assert_eq!(j["metadata"]["labels"], labels);
        assert_eq!(j["status"], json!({}));
        assert!(
            JobStrategy.validate(&j).is_empty(),
            "{:?}",
            JobStrategy.validate(&j)
        );
        let mut only_par = job();
        only_par["spec"]["parallelism"] = json!(3);
        JobStrategy.default(&mut only_par);
        assert!(only_par["spec"].get("completions").is_none());
    }

    #[test]
    fn job_validation() {
        let mut j = job();
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        j["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
        JobStrategy.default(&mut j);
        JobStrategy.prepare_create(&mut j);
        let e = display(&JobStrategy.validate(&j));
        assert!(e.contains(&"spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".to_string()), "{e:?}");
        assert!(e.iter().any(|m| {
            m.starts_with("spec.template.metadata.labels: Invalid value: map[string]string{")
                && m.ends_with("`selector` does not match template `labels`")
        }));
        assert!(
            e.iter()
                .any(|m| m.ends_with("`selector` not auto-generated"))
        );
    }

    #[test]
    fn job_template_is_immutable() {
        let mut old = job();
        JobStrategy.default(&mut old);
        JobStrategy.prepare_create(&mut old);
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5.36");
        let e = display(&JobStrategy.validate_update(&new, &old));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("spec.template: Invalid value: {")
                && e[0].ends_with("}: field is immutable"),
            "{e:?}"
        );
        let mut suspend = old.clone();
        suspend["spec"]["suspend"] = json!(true);
        suspend["spec"]["parallelism"] = json!(2);
        assert!(JobStrategy.validate_update(&suspend, &old).is_empty());
        assert_eq!(
            JobStrategy
                .field_value(&json!({"status": {"succeeded": 2}}), "status.successful")
                .as_deref(),
            Some("2")
        );
    }

    #[test]
    fn cronjobs() {
        let mut cj = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "OnFailure"}}}}}});
        CronJobStrategy.default(&mut cj);
        CronJobStrategy.prepare_create(&mut cj);
        let spec = &cj["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        assert_eq!(
            spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
        assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
        assert!(
            CronJobStrategy.validate(&cj).is_empty(),
            "{:?}",
            CronJobStrategy.validate(&cj)
        );
        cj["spec"]["schedule"] = json!("61 * * * *");
        assert_eq!(
            display(&CronJobStrategy.validate(&cj)),
            vec![
                "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"
            ]
        );
        cj["spec"]["schedule"] = json!("bad");
        assert_eq!(
            display(&CronJobStrategy.validate(&cj)),
            vec![
                "spec.schedule: Invalid value: \"bad\": expected exactly 5 fields, found 1: [bad]"
            ]
        );
        let utc = jiff::tz::TimeZone::UTC;
        let parse = crate::controllers::cronjob::schedule::parse;
        assert!(parse("@hourly", utc.clone()).is_ok());
        assert!(parse("0 9 * jan-mar MON-FRI", utc.clone()).is_ok());
        assert!(parse("@foo", utc.clone()).is_err());
        assert!(
            parse("0 0 * * 7", utc).is_err(),
            "day-of-week 7 is out of range upstream"
        );
    }
}
