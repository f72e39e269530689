//! Conversions between served and stored representations, after upstream's
//! `pkg/apis/events/v1` and `pkg/apis/autoscaling/v1` conversion functions.
//! Both directions set apiVersion and kind.

use serde_json::{Map, Value, json};

use super::Conversion;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Move `from` to `to` in `m` (absent stays absent).
fn rename(m: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = m.remove(from) {
        m.insert(to.to_string(), v);
    }
}

fn drop_empty_strings(m: &mut Map<String, Value>, keys: &[&str]) {
    for k in keys {
        if m.get(*k)
            .is_some_and(|v| v.as_str() == Some("") || v.is_null())
        {
            m.remove(*k);
        }
    }
}

// ---------------------------------------------------------------- events

/// events.k8s.io/v1 Event <-> stored core/v1 Event.
pub struct EventsV1;

/// (events.k8s.io/v1 name, core/v1 name) of the fields that differ.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

impl Conversion for EventsV1 {
    fn to_storage(&self, o: Value) -> Value {
        let mut m = obj(o);
        for (v1, core) in EVENT_RENAMES {
            rename(&mut m, v1, core);
        }
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("kind".into(), json!("Event"));
        Value::Object(m)
    }
    fn to_served(&self, o: Value) -> Value {
        let mut m = obj(o);
        for (v1, core) in EVENT_RENAMES {
            rename(&mut m, core, v1);
        }
        // omitempty in events.k8s.io/v1 (core/v1 always writes these).
        drop_empty_strings(
            &mut m,
            &[
                "reportingController",
                "reportingInstance",
                "action",
                "reason",
                "note",
                "type",
            ],
        );
        if m.get("deprecatedCount").and_then(Value::as_i64) == Some(0) {
            m.remove("deprecatedCount");
        }
        m.insert("apiVersion".into(), json!("events.k8s.io/v1"));
        m.insert("kind".into(), json!("Event"));
        Value::Object(m)
    }
}

// ---------------------------------------------------------------- HPA

/// autoscaling/v1 HorizontalPodAutoscaler <-> stored autoscaling/v2.
pub struct HpaV1;

/// Round-trip annotations autoscaling/v1 uses for what it cannot express.
pub const HPA_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const HPA_CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const HPA_CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub const HPA_BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
const HPA_ANNOTATIONS: &[&str] = &[
    HPA_METRICS_ANNOTATION,
    HPA_CURRENT_METRICS_ANNOTATION,
    HPA_CONDITIONS_ANNOTATION,
    HPA_BEHAVIOR_ANNOTATION,
];
/// The CPU target autoscaling/v1 implies when none is given.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// Field order of the Go structs serialized into the round-trip annotations
/// (encoding/json writes struct fields in declaration order).
const GO_FIELD_ORDER: &[&str] = &[
    "type",
    "status",
    "lastTransitionTime",
    "reason",
    "message",
    "object",
    "pods",
    "resource",
    "containerResource",
    "external",
    "target",
    "metricName",
    "metricSelector",
    "kind",
    "name",
    "apiVersion",
    "targetValue",
    "targetAverageUtilization",
    "targetAverageValue",
    "currentValue",
    "currentAverageUtilization",
    "currentAverageValue",
    "selector",
    "averageValue",
    "container",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "ScaleUp",
    "ScaleDown",
    "StabilizationWindowSeconds",
    "SelectPolicy",
    "Policies",
    "Type",
    "Value",
    "PeriodSeconds",
    "Tolerance",
];

/// JSON text with object keys in Go struct order (unknown keys last, sorted).
fn go_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            let rank = |k: &str| {
                GO_FIELD_ORDER
                    .iter()
                    .position(|x| *x == k)
                    .unwrap_or(usize::MAX)
            };
            keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String(k.clone()),
                        go_json(m.get(k).unwrap_or(&Value::Null))
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(go_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// Insert `k: v` unless `v` is null.
fn put(m: &mut Map<String, Value>, k: &str, v: Option<&Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        m.insert(k.to_string(), v.clone());
    }
}

fn is_cpu_utilization_target(metric: &Value) -> bool {
    metric.get("type").and_then(Value::as_str) == Some("Resource")
        && metric.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && metric
            .pointer("/resource/target/averageUtilization")
            .is_some_and(|v| !v.is_null())
}

/// v2 MetricSpec -> v1 (v2beta1-shaped) MetricSpec.
fn metric_spec_to_v1(m: &Value) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    let target = |src: &Value| src.get("target").cloned().unwrap_or(json!({}));
    match ty {
        "Object" => {
            let src = m.get("object").cloned().unwrap_or(json!({}));
            let t = target(&src);
            let mut o = Map::new();
            put(&mut o, "target", src.get("describedObject"));
            put(&mut o, "metricName", src.pointer("/metric/name"));
            o.insert(
                "targetValue".into(),
                t.get("value").cloned().unwrap_or(json!("0")),
            );
            put(&mut o, "selector", src.pointer("/metric/selector"));
            put(&mut o, "averageValue", t.get("averageValue"));
            out.insert("object".into(), Value::Object(o));
        }
        "Pods" => {
            let src = m.get("pods").cloned().unwrap_or(json!({}));
            let t = target(&src);
            let mut o = Map::new();
            put(&mut o, "metricName", src.pointer("/metric/name"));
            o.insert(
                "targetAverageValue".into(),
                t.get("averageValue").cloned().unwrap_or(json!("0")),
            );
            put(&mut o, "selector", src.pointer("/metric/selector"));
            out.insert("pods".into(), Value::Object(o));
        }
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = m.get(key).cloned().unwrap_or(json!({}));
            let t = target(&src);
            let mut o = Map::new();
            put(&mut o, "name", src.get("name"));
            put(
                &mut o,
                "targetAverageUtilization",
                t.get("averageUtilization"),
            );
            put(&mut o, "targetAverageValue", t.get("averageValue"));
            put(&mut o, "container", src.get("container"));
            out.insert(key.into(), Value::Object(o));
        }
        "External" => {
            let src = m.get("external").cloned().unwrap_or(json!({}));
            let t = target(&src);
            let mut o = Map::new();
            put(&mut o, "metricName", src.pointer("/metric/name"));
            put(&mut o, "metricSelector", src.pointer("/metric/selector"));
            put(&mut o, "targetValue", t.get("value"));
            put(&mut o, "targetAverageValue", t.get("averageValue"));
            out.insert("external".into(), Value::Object(o));
        }
        _ => {}
    }
    Value::Object(out)
}

/// v1 (v2beta1-shaped) MetricSpec -> v2 MetricSpec.
fn metric_spec_from_v1(m: &Value) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    let metric = |name: Option<&Value>, sel: Option<&Value>| {
        let mut id = Map::new();
        put(&mut id, "name", name);
        put(&mut id, "selector", sel);
        Value::Object(id)
    };
    match ty {
        "Object" => {
            let src = m.get("object").cloned().unwrap_or(json!({}));
            let avg = src.get("averageValue").filter(|v| !v.is_null());
            let mut t = Map::new();
            t.insert(
                "type".into(),
                json!(if avg.is_none() {
                    "Value"
                } else {
                    "AverageValue"
                }),
            );
            put(&mut t, "value", src.get("targetValue"));
            put(&mut t, "averageValue", avg);
            let mut o = Map::new();
            put(&mut o, "describedObject", src.get("target"));
            o.insert(
                "metric".into(),
                metric(src.get("metricName"), src.get("selector")),
            );
            o.insert("target".into(), Value::Object(t));
            out.insert("object".into(), Value::Object(o));
        }
        "Pods" => {
            let src = m.get("pods").cloned().unwrap_or(json!({}));
            let mut t = Map::new();
            t.insert("type".into(), json!("AverageValue"));
            put(&mut t, "averageValue", src.get("targetAverageValue"));
            let mut o = Map::new();
            o.insert(
                "metric".into(),
                metric(src.get("metricName"), src.get("selector")),
            );
            o.insert("target".into(), Value::Object(t));
            out.insert("pods".into(), Value::Object(o));
        }
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = m.get(key).cloned().unwrap_or(json!({}));
            let util = src.get("targetAverageUtilization").filter(|v| !v.is_null());
            let mut t = Map::new();
            t.insert(
                "type".into(),
                json!(if util.is_none() {
                    "AverageValue"
                } else {
                    "Utilization"
                }),
            );
            put(&mut t, "averageValue", src.get("targetAverageValue"));
            put(&mut t, "averageUtilization", util);
            let mut o = Map::new();
            put(&mut o, "name", src.get("name"));
            put(&mut o, "container", src.get("container"));
            o.insert("target".into(), Value::Object(t));
            out.insert(key.into(), Value::Object(o));
        }
        "External" => {
            let src = m.get("external").cloned().unwrap_or(json!({}));
            let value = src.get("targetValue").filter(|v| !v.is_null());
            let mut t = Map::new();
            t.insert(
                "type".into(),
                json!(if value.is_some() {
                    "Value"
                } else {
                    "AverageValue"
                }),
            );
            put(&mut t, "value", value);
            put(&mut t, "averageValue", src.get("targetAverageValue"));
            let mut o = Map::new();
            o.insert(
                "metric".into(),
                metric(src.get("metricName"), src.get("metricSelector")),
            );
            o.insert("target".into(), Value::Object(t));
            out.insert("external".into(), Value::Object(o));
        }
        _ => {}
    }
    Value::Object(out)
}

/// v2 MetricStatus -> v1 MetricStatus.
fn metric_status_to_v1(m: &Value) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    let cur = |src: &Value| src.get("current").cloned().unwrap_or(json!({}));
    match ty {
        "Object" => {
            let src = m.get("object").cloned().unwrap_or(json!({}));
            let c = cur(&src);
            let mut o = Map::new();
            put(&mut o, "target", src.get("describedObject"));
            put(&mut o, "metricName", src.pointer("/metric/name"));
            o.insert(
                "currentValue".into(),
                c.get("value").cloned().unwrap_or(json!("0")),
            );
            put(&mut o, "selector", src.pointer("/metric/selector"));
            put(&mut o, "averageValue", c.get("averageValue"));
            out.insert("object".into(), Value::Object(o));
        }
        "Pods" => {
            let src = m.get("pods").cloned().unwrap_or(json!({}));
            let c = cur(&src);
            let mut o = Map::new();
            put(&mut o, "metricName", src.pointer("/metric/name"));
            o.insert(
                "currentAverageValue".into(),
                c.get("averageValue").cloned().unwrap_or(json!("0")),
            );
            put(&mut o, "selector", src.pointer("/metric/selector"));
            out.insert("pods".into(), Value::Object(o));
        }
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = m.get(key).cloned().unwrap_or(json!({}));
            let c = cur(&src);
            let mut o = Map::new();
            put(&mut o, "name", src.get("name"));
            put(
                &mut o,
                "currentAverageUtilization",
                c.get("averageUtilization"),
            );
            o.insert(
                "currentAverageValue".into(),
                c.get("averageValue").cloned().unwrap_or(json!("0")),
            );
            put(&mut o, "container", src.get("container"));
            out.insert(key.into(), Value::Object(o));
        }
        "External" => {
            let src = m.get("external").cloned().unwrap_or(json!({}));
            let c = cur(&src);
            let mut o = Map::new();
            put(&mut o, "metricName", src.pointer("/metric/name"));
            put(&mut o, "metricSelector", src.pointer("/metric/selector"));
            o.insert(
                "currentValue".into(),
                c.get("value").cloned().unwrap_or(json!("0")),
            );
            put(&mut o, "currentAverageValue", c.get("averageValue"));
            out.insert("external".into(), Value::Object(o));
        }
        _ => {}
    }
    Value::Object(out)
}

/// v1 MetricStatus -> v2 MetricStatus.
fn metric_status_from_v1(m: &Value) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    let metric = |name: Option<&Value>, sel: Option<&Value>| {
        let mut id = Map::new();
        put(&mut id, "name", name);
        put(&mut id, "selector", sel);
        Value::Object(id)
    };
    match ty {
        "Object" => {
            let src = m.get("object").cloned().unwrap_or(json!({}));
            let mut c = Map::new();
            put(&mut c, "value", src.get("currentValue"));
            put(&mut c, "averageValue", src.get("averageValue"));
            let mut o = Map::new();
            put(&mut o, "describedObject", src.get("target"));
            o.insert(
                "metric".into(),
                metric(src.get("metricName"), src.get("selector")),
            );
            o.insert("current".into(), Value::Object(c));
            out.insert("object".into(), Value::Object(o));
        }
        "Pods" => {
            let src = m.get("pods").cloned().unwrap_or(json!({}));
            let mut c = Map::new();
            put(&mut c, "averageValue", src.get("currentAverageValue"));
            let mut o = Map::new();
            o.insert(
                "metric".into(),
                metric(src.get("metricName"), src.get("selector")),
            );
            o.insert("current".into(), Value::Object(c));
            out.insert("pods".into(), Value::Object(o));
        }
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = m.get(key).cloned().unwrap_or(json!({}));
            let mut c = Map::new();
            put(&mut c, "averageValue", src.get("currentAverageValue"));
            put(
                &mut c,
                "averageUtilization",
                src.get("currentAverageUtilization"),
            );
            let mut o = Map::new();
            put(&mut o, "name", src.get("name"));
            put(&mut o, "container", src.get("container"));
            o.insert("current".into(), Value::Object(c));
            out.insert(key.into(), Value::Object(o));
        }
        "External" => {
            let src = m.get("external").cloned().unwrap_or(json!({}));
            let mut c = Map::new();
            put(&mut c, "value", src.get("currentValue"));
            put(&mut c, "averageValue", src.get("currentAverageValue"));
            let mut o = Map::new();
            o.insert(
                "metric".into(),
                metric(src.get("metricName"), src.get("metricSelector")),
            );
            o.insert("current".into(), Value::Object(c));
            out.insert("external".into(), Value::Object(o));
        }
        _ => {}
    }
    Value::Object(out)
}

/// The behavior annotation holds upstream's internal type, which has no JSON
/// tags: Go field names (`{"ScaleUp":{"StabilizationWindowSeconds":0,...}}`).
fn rules_to_go(r: &Value) -> Value {
    let mut out = Map::new();
    put(
        &mut out,
        "StabilizationWindowSeconds",
        r.get("stabilizationWindowSeconds"),
    );
    put(&mut out, "SelectPolicy", r.get("selectPolicy"));
    let pols: Vec<Value> = r
        .get("policies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| json!({"Type": p.get("type"), "Value": p.get("value"), "PeriodSeconds": p.get("periodSeconds")}))
        .collect();
    out.insert("Policies".into(), Value::Array(pols));
    put(&mut out, "Tolerance", r.get("tolerance"));
    Value::Object(out)
}

fn rules_from_go(r: &Value) -> Value {
    let mut out = Map::new();
    put(
        &mut out,
        "stabilizationWindowSeconds",
        r.get("StabilizationWindowSeconds"),
    );
    put(&mut out, "selectPolicy", r.get("SelectPolicy"));
    if let Some(pols) = r.get("Policies").and_then(Value::as_array) {
        let pols: Vec<Value> = pols
            .iter()
            .map(|p| json!({"type": p.get("Type"), "value": p.get("Value"), "periodSeconds": p.get("PeriodSeconds")}))
            .collect();
        out.insert("policies".into(), Value::Array(pols));
    }
    put(&mut out, "tolerance", r.get("Tolerance"));
    Value::Object(out)
}

fn behavior_to_go(b: &Value) -> Value {
    let mut out = Map::new();
    out.insert(
        "ScaleUp".into(),
        b.get("scaleUp")
            .filter(|v| !v.is_null())
            .map(rules_to_go)
            .unwrap_or(Value::Null),
    );
    out.insert(
        "ScaleDown".into(),
        b.get("scaleDown")
            .filter(|v| !v.is_null())
            .map(rules_to_go)
            .unwrap_or(Value::Null),
    );
    Value::Object(out)
}

fn behavior_from_go(b: &Value) -> Value {
    let mut out = Map::new();
    if let Some(up) = b.get("ScaleUp").filter(|v| !v.is_null()) {
        out.insert("scaleUp".into(), rules_from_go(up));
    }
    if let Some(down) = b.get("ScaleDown").filter(|v| !v.is_null()) {
        out.insert("scaleDown".into(), rules_from_go(down));
    }
    Value::Object(out)
}

fn annotations_mut(m: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    let meta = m.entry("metadata").or_insert_with(|| json!({}));
    let meta = meta.as_object_mut()?;
    if !meta.get("annotations").is_some_and(Value::is_object) {
        meta.insert("annotations".into(), json!({}));
    }
    meta.get_mut("annotations").and_then(Value::as_object_mut)
}

/// Remove the round-trip annotations, returning them decoded.
fn take_annotations(m: &mut Map<String, Value>) -> Map<String, Value> {
    let mut taken = Map::new();
    let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) else {
        return taken;
    };
    let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) else {
        return taken;
    };
    for k in HPA_ANNOTATIONS {
        if let Some(v) = ann.remove(*k)
            && let Some(parsed) = v
                .as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
        {
            taken.insert(k.to_string(), parsed);
        }
    }
    if ann.is_empty() {
        meta.remove("annotations");
    }
    taken
}

impl Conversion for HpaV1 {
    /// autoscaling/v1 -> autoscaling/v2.
    fn to_storage(&self, o: Value) -> Value {
        let mut m = obj(o);
        let ann = take_annotations(&mut m);
        let spec_in = m.remove("spec").unwrap_or(json!({}));
        let status_in = m.remove("status");

        let mut spec = Map::new();
        put(&mut spec, "scaleTargetRef", spec_in.get("scaleTargetRef"));
        put(&mut spec, "minReplicas", spec_in.get("minReplicas"));
        put(&mut spec, "maxReplicas", spec_in.get("maxReplicas"));
        let mut metrics: Vec<Value> = ann
            .get(HPA_METRICS_ANNOTATION)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(metric_spec_from_v1)
            .collect();
        if let Some(t) = spec_in
            .get("targetCPUUtilizationPercentage")
            .filter(|v| !v.is_null())
        {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}));
        }
        if metrics.is_empty() {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}));
        }
        spec.insert("metrics".into(), Value::Array(metrics));
        if let Some(b) = ann.get(HPA_BEHAVIOR_ANNOTATION) {
            spec.insert("behavior".into(), behavior_from_go(b));
        }
        m.insert("spec".into(), Value::Object(spec));

        if let Some(st) = status_in.filter(|s| !s.is_null()) {
            let mut status = Map::new();
            for k in [
                "observedGeneration",
                "lastScaleTime",
                "currentReplicas",
                "desiredReplicas",
            ] {
                put(&mut status, k, st.get(k));
            }
            if let Some(cur) = ann
                .get(HPA_CURRENT_METRICS_ANNOTATION)
                .and_then(Value::as_array)
            {
                status.insert(
                    "currentMetrics".into(),
                    Value::Array(cur.iter().map(metric_status_from_v1).collect()),
                );
            } else if let Some(c) = st
                .get("currentCPUUtilizationPercentage")
                .filter(|v| !v.is_null())
            {
                status.insert(
                    "currentMetrics".into(),
                    json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}]),
                );
            }
            if let Some(conds) = ann.get(HPA_CONDITIONS_ANNOTATION) {
                status.insert("conditions".into(), conds.clone());
            }
            m.insert("status".into(), Value::Object(status));
        }
        m.insert("apiVersion".into(), json!("autoscaling/v2"));
        m.insert("kind".into(), json!("HorizontalPodAutoscaler"));
        Value::Object(m)
    }

    /// autoscaling/v2 -> autoscaling/v1.
    fn to_served(&self, o: Value) -> Value {
        let mut m = obj(o);
        // Only annotations produced here may be present on the way out.
        take_annotations(&mut m);
        let spec_in = m.remove("spec").unwrap_or(json!({}));
        let status_in = m.remove("status");
        let metrics = spec_in
            .get("metrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();

        let mut spec = Map::new();
        put(&mut spec, "scaleTargetRef", spec_in.get("scaleTargetRef"));
        put(&mut spec, "minReplicas", spec_in.get("minReplicas"));
        put(&mut spec, "maxReplicas", spec_in.get("maxReplicas"));
        if let Some(cpu) = metrics.iter().find(|mt| is_cpu_utilization_target(mt)) {
            put(
                &mut spec,
                "targetCPUUtilizationPercentage",
                cpu.pointer("/resource/target/averageUtilization"),
            );
        }
        let others: Vec<Value> = metrics
            .iter()
            .filter(|mt| !is_cpu_utilization_target(mt))
            .map(metric_spec_to_v1)
            .collect();
        let mut new_ann: Vec<(&str, String)> = Vec::new();
        if !others.is_empty() {
            new_ann.push((HPA_METRICS_ANNOTATION, go_json(&Value::Array(others))));
        }
        if let Some(b) = spec_in.get("behavior").filter(|b| !b.is_null()) {
            new_ann.push((HPA_BEHAVIOR_ANNOTATION, go_json(&behavior_to_go(b))));
        }

        let st = status_in.unwrap_or(json!({}));
        let mut status = Map::new();
        put(
            &mut status,
            "observedGeneration",
            st.get("observedGeneration"),
        );
        put(&mut status, "lastScaleTime", st.get("lastScaleTime"));
        status.insert(
            "currentReplicas".into(),
            st.get("currentReplicas").cloned().unwrap_or(json!(0)),
        );
        status.insert(
            "desiredReplicas".into(),
            st.get("desiredReplicas").cloned().unwrap_or(json!(0)),
        );
        let current = st
            .get("currentMetrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(c) = current.iter().find(|c| {
            c.get("type").and_then(Value::as_str) == Some("Resource")
                && c.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
                && c.pointer("/resource/current/averageUtilization")
                    .is_some_and(|v| !v.is_null())
        }) {
            put(
                &mut status,
                "currentCPUUtilizationPercentage",
                c.pointer("/resource/current/averageUtilization"),
            );
        }
        if !current.is_empty() {
            let v1: Vec<Value> = current.iter().map(metric_status_to_v1).collect();
            new_ann.push((HPA_CURRENT_METRICS_ANNOTATION, go_json(&Value::Array(v1))));
        }
        if let Some(conds) = st
            .get("conditions")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
        {
            new_ann.push((
                HPA_CONDITIONS_ANNOTATION,
                go_json(&Value::Array(conds.clone())),
            ));
        }
        if !new_ann.is_empty()
            && let Some(ann) = annotations_mut(&mut m)
        {
            for (k, v) in new_ann {
                ann.insert(k.to_string(), json!(v));
            }
        }
        m.insert("spec".into(), Value::Object(spec));
        m.insert("status".into(), Value::Object(status));
        m.insert("apiVersion".into(), json!("autoscaling/v1"));
        m.insert("kind".into(), json!("HorizontalPodAutoscaler"));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2024-05-01T10:00:00.000000Z", "series": {"count": 2, "lastObservedTime": "2024-05-01T10:01:00.000000Z"},
            "reportingController": "example.com/ctl", "reportingInstance": "ctl-1", "action": "Sync", "reason": "Synced",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}, "related": {"kind": "Node", "name": "n"},
            "note": "all good", "type": "Normal", "deprecatedSource": {"component": "ctl"},
            "deprecatedFirstTimestamp": "2024-05-01T09:00:00Z", "deprecatedLastTimestamp": "2024-05-01T10:00:00Z", "deprecatedCount": 3});
        let core = EventsV1.to_storage(v1.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "all good");
        assert_eq!(core["reportingComponent"], "example.com/ctl");
        assert_eq!(core["source"], json!({"component": "ctl"}));
        assert_eq!(core["count"], 3);
        assert_eq!(core["firstTimestamp"], "2024-05-01T09:00:00Z");
        assert!(core.get("regarding").is_none() && core.get("note").is_none());
        assert_eq!(EventsV1.to_served(core), v1);
    }

    #[test]
    fn core_events_read_through_events_v1() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "p.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started", "message": "Started container",
            "source": {"component": "kubelet", "host": "n1"}, "count": 1, "type": "Normal",
            "reportingComponent": "", "reportingInstance": "", "eventTime": null});
        let v1 = EventsV1.to_served(core);
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["kind"], "Pod");
        assert_eq!(v1["note"], "Started container");
        assert_eq!(v1["deprecatedSource"]["host"], "n1");
        assert_eq!(v1["deprecatedCount"], 1);
        assert!(v1.get("reportingController").is_none());
    }

    #[test]
    fn hpa_v1_round_trip() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 10, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 70}});
        let v2 = HpaV1.to_storage(v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}])
        );
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            70
        );
        let back = HpaV1.to_served(v2);
        let mut expected = v1.clone();
        // The CPU status is also kept raw in the current-metrics annotation, as upstream.
        expected["metadata"]["annotations"] = json!({HPA_CURRENT_METRICS_ANNOTATION:
            r#"[{"type":"Resource","resource":{"name":"cpu","currentAverageUtilization":70,"currentAverageValue":"0"}}]"#});
        assert_eq!(back, expected);
        // And that annotation converts back to the same v2 status.
        assert_eq!(
            HpaV1.to_storage(back)["status"]["currentMetrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageValue": "0", "averageUtilization": 70}}}])
        );
    }

    #[test]
    fn hpa_v1_without_target_defaults_to_80() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}});
        let v2 = HpaV1.to_storage(v1);
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(
            HpaV1.to_served(v2)["spec"]["targetCPUUtilizationPercentage"],
            80
        );
    }

    #[test]
    fn hpa_v2_extras_survive_v1() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h", "annotations": {"keep": "me"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}}
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}},
            "status": {"desiredReplicas": 2, "currentReplicas": 2, "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}});
        let v1 = HpaV1.to_served(v2.clone());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        let ann = &v1["metadata"]["annotations"];
        assert_eq!(ann["keep"], "me");
        assert_eq!(
            ann[HPA_BEHAVIOR_ANNOTATION],
            r#"{"ScaleUp":null,"ScaleDown":{"StabilizationWindowSeconds":300,"SelectPolicy":"Max","Policies":[{"Type":"Percent","Value":100,"PeriodSeconds":15}]}}"#
        );
        assert!(
            ann[HPA_METRICS_ANNOTATION]
                .as_str()
                .is_some_and(|s| s.contains(r#""metricName":"rps""#))
        );
        assert!(
            ann[HPA_CONDITIONS_ANNOTATION]
                .as_str()
                .is_some_and(|s| s.contains("AbleToScale"))
        );
        let again = HpaV1.to_storage(v1);
        // Metrics come back with the CPU target last, as upstream orders them.
        let metrics = again["spec"]["metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(metrics.len(), 3);
        assert_eq!(metrics[0], v2["spec"]["metrics"][0]);
        assert_eq!(metrics[1], v2["spec"]["metrics"][2]);
        assert_eq!(metrics[2], v2["spec"]["metrics"][1]);
        assert_eq!(again["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(again["status"]["conditions"], v2["status"]["conditions"]);
        assert_eq!(again["metadata"]["annotations"], json!({"keep": "me"}));
    }
}
