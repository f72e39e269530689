//! Label and node selectors, tolerations and taints, compiled from the typed
//! API objects into forms that are cheap to evaluate many times per cycle.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            Op::In => v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotIn => v.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::Gt | Op::Lt => {
                let (Some(v), Some(bound)) = (v, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.op == Op::Gt {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

/// A metav1.LabelSelector: matchLabels and matchExpressions ANDed. An empty
/// selector matches everything; `Selector::nothing()` matches nothing (what
/// a nil selector means in affinity terms and spread constraints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    pub fn everything() -> Selector {
        Selector {
            reqs: Vec::new(),
            nothing: false,
        }
    }

    pub fn nothing() -> Selector {
        Selector {
            reqs: Vec::new(),
            nothing: true,
        }
    }

    /// Compile a LabelSelector; `None` selects nothing. An invalid operator
    /// also selects nothing (the API server rejects such objects anyway).
    pub fn from_label_selector(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else {
            return Selector::nothing();
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement {
                key: k.clone(),
                op: Op::In,
                values: vec![v.clone()],
            });
        }
        for e in sel.match_expressions.iter().flatten() {
            let op = match e.operator.as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                _ => return Selector::nothing(),
            };
            reqs.push(Requirement {
                key: e.key.clone(),
                op,
                values: e.values.clone().unwrap_or_default(),
            });
        }
        Selector {
            reqs,
            nothing: false,
        }
    }

    /// Add `key In (value)` (matchLabelKeys) or `key NotIn (value)` (mismatchLabelKeys).
    pub fn require(&mut self, key: &str, value: &str, equal: bool) {
        let op = if equal { Op::In } else { Op::NotIn };
        self.reqs.push(Requirement {
            key: key.to_string(),
            op,
            values: vec![value.to_string()],
        });
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing && self.reqs.iter().all(|r| r.matches(labels))
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }
}

/// One nodeSelectorTerm: expressions on labels and fields, ANDed. A term
/// without requirements matches no node, as upstream.
#[derive(Clone, Debug)]
pub struct NodeTerm {
    labels: Vec<Requirement>,
    /// metadata.name requirements (the only field upstream supports).
    names: Vec<Requirement>,
    valid: bool,
}

fn compile_node_reqs(reqs: Option<&Vec<NodeSelectorRequirement>>) -> Option<Vec<Requirement>> {
    let mut out = Vec::new();
    for r in reqs.into_iter().flatten() {
        let op = match r.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" => Op::Gt,
            "Lt" => Op::Lt,
            _ => return None,
        };
        out.push(Requirement {
            key: r.key.clone(),
            op,
            values: r.values.clone().unwrap_or_default(),
        });
    }
    Some(out)
}

impl NodeTerm {
    pub fn compile(term: &NodeSelectorTerm) -> NodeTerm {
        let labels = compile_node_reqs(term.match_expressions.as_ref());
        let names = compile_node_reqs(term.match_fields.as_ref()).map(|reqs| {
            reqs.into_iter()
                .filter(|r| r.key == "metadata.name")
                .map(|mut r| {
                    r.key = "metadata.name".into();
                    r
                })
                .collect::<Vec<_>>()
        });
        let field_count = term.match_fields.as_ref().map_or(0, Vec::len);
        let valid = labels.is_some()
            && names.as_ref().is_some_and(|n| n.len() == field_count)
            && (labels.as_ref().is_some_and(|l| !l.is_empty()) || field_count > 0);
        NodeTerm {
            labels: labels.unwrap_or_default(),
            names: names.unwrap_or_default(),
            valid,
        }
    }

    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if !self.valid || !self.labels.iter().all(|r| r.matches(labels)) {
            return false;
        }
        if self.names.is_empty() {
            return true;
        }
        let fields: Labels = [("metadata.name".to_string(), node_name.to_string())].into();
        self.names.iter().all(|r| r.matches(&fields))
    }
}

/// Required node affinity: nodeSelector labels AND any of the terms.
#[derive(Clone, Debug, Default)]
pub struct NodeAffinity {
    selector: Labels,
    /// None: no required terms (any node); Some(terms): at least one must match.
    terms: Option<Vec<NodeTerm>>,
}

impl NodeAffinity {
    pub fn from_pod(spec: &k8s_openapi::api::core::v1::PodSpec) -> NodeAffinity {
        let selector = spec.node_selector.clone().unwrap_or_default();
        let terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|ns| {
                ns.node_selector_terms
                    .iter()
                    .map(NodeTerm::compile)
                    .collect()
            });
        NodeAffinity { selector, terms }
    }

    /// From a PersistentVolume's spec.nodeAffinity.required.
    pub fn from_terms(terms: &[NodeSelectorTerm]) -> NodeAffinity {
        NodeAffinity {
            selector: Labels::new(),
            terms: Some(terms.iter().map(NodeTerm::compile).collect()),
        }
    }

    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if !self.selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(node_name, labels)),
        }
    }
}

/// Whether `t` tolerates `taint` (upstream's Toleration.ToleratesTaint).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        // An empty key with Exists tolerates every taint.
        "Exists" => true,
        "Equal" | "" => {
            key == taint.key
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Whether any of `ts` tolerates `taint`.
pub fn tolerated(ts: &[Toleration], taint: &Taint) -> bool {
    ts.iter().any(|t| tolerates(t, taint))
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn first_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerated(tolerations, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]},
                                 {"key": "track", "operator": "Exists"}]
        }))
        .unwrap();
        let s = Selector::from_label_selector(Some(&sel));
        assert!(s.matches(&labels(&[("app", "web"), ("track", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("track", "x"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(
            Selector::from_label_selector(Some(&LabelSelector::default())).matches(&labels(&[]))
        );
        assert!(!Selector::from_label_selector(None).matches(&labels(&[])));
        let mut s = Selector::everything();
        s.require("v", "1", true);
        assert!(s.matches(&labels(&[("v", "1")])) && !s.matches(&labels(&[("v", "2")])));
    }

    #[test]
    fn node_affinity_terms() {
        let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(json!({
            "containers": [],
            "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]},
            ]}}}
        }))
        .unwrap();
        let na = NodeAffinity::from_pod(&spec);
        assert!(na.matches("n1", &labels(&[("disk", "ssd"), ("cores", "8")])));
        assert!(!na.matches("n1", &labels(&[("disk", "ssd"), ("cores", "2")])));
        assert!(na.matches("n9", &labels(&[("disk", "ssd")])));
        assert!(!na.matches("n9", &labels(&[("disk", "hdd")])));
        // An empty term matches nothing.
        let empty = NodeAffinity::from_terms(&[NodeSelectorTerm::default()]);
        assert!(!empty.matches("n1", &labels(&[])));
    }

    #[test]
    fn tolerations() {
        let taint = |k: &str, v: &str, e: &str| Taint {
            key: k.into(),
            value: Some(v.into()).filter(|v: &String| !v.is_empty()),
            effect: e.into(),
            time_added: None,
        };
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(
            &tol(json!({"key": "a", "value": "b", "effect": "NoSchedule"})),
            &taint("a", "b", "NoSchedule")
        ));
        assert!(!tolerates(
            &tol(json!({"key": "a", "value": "c"})),
            &taint("a", "b", "NoSchedule")
        ));
        assert!(tolerates(
            &tol(json!({"key": "a", "operator": "Exists"})),
            &taint("a", "b", "NoExecute")
        ));
        assert!(tolerates(
            &tol(json!({"operator": "Exists"})),
            &taint("x", "y", "NoExecute")
        ));
        assert!(!tolerates(
            &tol(json!({"operator": "Exists", "effect": "NoSchedule"})),
            &taint("x", "", "NoExecute")
        ));
        let taints = vec![
            taint("soft", "", "PreferNoSchedule"),
            taint("hard", "1", "NoSchedule"),
        ];
        let first = first_untolerated(&taints, &[], &["NoSchedule", "NoExecute"]).unwrap();
        assert_eq!(first.key, "hard");
    }
}
