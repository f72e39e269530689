//! Which nodes a DaemonSet runs on (upstream's NodeShouldRunDaemonPod):
//! the template's nodeName, nodeSelector and required node affinity must
//! match the node, and the node's NoSchedule/NoExecute taints must be
//! tolerated, counting the tolerations every daemon pod gets. Also the
//! node affinity that pins a daemon pod to its node for the scheduler.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};

/// Taint keys daemon pods tolerate (upstream's AddOrUpdateDaemonPodTolerations).
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// The field a daemon pod's node affinity selects its node by.
pub const NODE_NAME_FIELD: &str = "metadata.name";

fn exists(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        value: None,
        toleration_seconds: None,
    }
}

/// Two tolerations are "the same" when key, operator, value and effect agree
/// (upstream's MatchToleration; tolerationSeconds may differ).
fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
    let op = |t: &Toleration| {
        t.operator
            .clone()
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| "Equal".into())
    };
    a.key == b.key
        && op(a) == op(b)
        && a.value.clone().unwrap_or_default() == b.value.clone().unwrap_or_default()
        && a.effect == b.effect
}

/// Add (or replace the equivalent of) a toleration.
fn add_or_update(list: &mut Vec<Toleration>, t: Toleration) {
    match list.iter_mut().find(|x| same_toleration(x, &t)) {
        Some(x) => *x = t,
        None => list.push(t),
    }
}

/// Give a daemon pod spec the tolerations upstream adds: not-ready and
/// unreachable NoExecute for ever, the pressure and unschedulable NoSchedule
/// taints, and network-unavailable for host-network pods.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut list = spec.tolerations.take().unwrap_or_default();
    for (key, effect) in [
        (NOT_READY, "NoExecute"),
        (UNREACHABLE, "NoExecute"),
        (DISK_PRESSURE, "NoSchedule"),
        (MEMORY_PRESSURE, "NoSchedule"),
        (PID_PRESSURE, "NoSchedule"),
        (UNSCHEDULABLE, "NoSchedule"),
    ] {
        add_or_update(&mut list, exists(key, effect));
    }
    if spec.host_network == Some(true) {
        add_or_update(&mut list, exists(NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    spec.tolerations = Some(list);
}

/// Whether a toleration tolerates a taint (upstream's ToleratesTaint).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty())
        && k != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// The first taint among those `filter` keeps that no toleration tolerates.
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let int = |s: &str| s.trim().parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [want]) = (value.and_then(int), values) else {
                return false;
            };
            let Some(want) = int(want) else { return false };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches: every label expression and every
/// field expression (only metadata.name exists); an empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == NODE_NAME_FIELD
                && requirement_matches(r, Some(node.metadata.name.as_deref().unwrap_or("")))
        })
}

/// The pod's nodeSelector and required node affinity against the node.
pub fn fits_node_affinity(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(sel) = spec.node_selector.as_ref()
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(ns) => ns.node_selector_terms.iter().any(|t| term_matches(t, node)),
    }
}

/// The pod a DaemonSet would run on `node`: its template, the daemon
/// tolerations, and the node's name.
pub fn daemon_pod_spec(ds: &DaemonSet, node_name: &str) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec.node_name = Some(node_name.to_string());
    spec
}

/// (should run a daemon pod here, may keep running one here): a node whose
/// taints are only untolerated NoSchedule keeps its pods but gets no new
/// one; one that fails the node name or affinity gets and keeps none.
pub fn node_should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or("");
    let template_node = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_name.as_deref());
    if template_node.is_some_and(|n| !n.is_empty() && n != name) {
        return (false, false);
    }
    let spec = daemon_pod_spec(ds, name);
    if !fits_node_affinity(&spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let schedulable = |t: &Taint| t.effect == "NoSchedule" || t.effect == "NoExecute";
    if untolerated_taint(taints, tolerations, schedulable).is_some() {
        let evicting =
            untolerated_taint(taints, tolerations, |t| t.effect == "NoExecute").is_some();
        return (false, !evicting);
    }
    (true, true)
}

/// The node a daemon pod is for: its nodeName, else the single node its
/// required `metadata.name In [...]` field selector names.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find_map(|r| {
            (r.key == NODE_NAME_FIELD && r.operator == "In")
                .then(|| match r.values.as_deref() {
                    Some([one]) => Some(one.clone()),
                    _ => None,
                })
                .flatten()
        })
}

/// Pin a pod to `node`: its required node affinity becomes exactly
/// `metadata.name In [node]` (safe: the node already matched the rest).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            value: None,
                            time_added: None,
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn ds(spec: PodSpec) -> DaemonSet {
        DaemonSet {
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(spec),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn daemon_tolerations_are_added_once() {
        let mut spec = PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some(NOT_READY.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(300),
                value: None,
            }]),
            ..Default::default()
        };
        add_daemon_tolerations(&mut spec);
        add_daemon_tolerations(&mut spec);
        let t = spec.tolerations.clone().unwrap_or_default();
        assert_eq!(t.len(), 6, "{t:?}");
        let nr = t
            .iter()
            .find(|x| x.key.as_deref() == Some(NOT_READY))
            .expect("not-ready");
        assert_eq!(
            nr.toleration_seconds, None,
            "daemon pods tolerate not-ready for ever"
        );
        assert!(t.iter().any(|x| x.key.as_deref() == Some(UNSCHEDULABLE)
            && x.effect.as_deref() == Some("NoSchedule")));
        assert!(
            !t.iter()
                .any(|x| x.key.as_deref() == Some(NETWORK_UNAVAILABLE))
        );
        spec.host_network = Some(true);
        add_daemon_tolerations(&mut spec);
        assert!(
            spec.tolerations
                .unwrap_or_default()
                .iter()
                .any(|x| x.key.as_deref() == Some(NETWORK_UNAVAILABLE))
        );
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let t = |key: Option<&str>, op: Option<&str>, value: Option<&str>, effect: Option<&str>| {
            Toleration {
                key: key.map(Into::into),
                operator: op.map(Into::into),
                value: value.map(Into::into),
                effect: effect.map(Into::into),
                toleration_seconds: None,
            }
        };
        assert!(tolerates(&t(Some("k"), None, Some("v"), None), &taint));
        assert!(tolerates(
            &t(Some("k"), Some("Equal"), Some("v"), Some("NoSchedule")),
            &taint
        ));
        assert!(!tolerates(
            &t(Some("k"), Some("Equal"), Some("w"), None),
            &taint
        ));
        assert!(tolerates(&t(Some("k"), Some("Exists"), None, None), &taint));
        assert!(!tolerates(
            &t(Some("k"), Some("Exists"), None, Some("NoExecute")),
            &taint
        ));
        assert!(
            tolerates(&t(None, Some("Exists"), None, None), &taint),
            "empty key + Exists tolerates all"
        );
        assert!(!tolerates(
            &t(Some("other"), Some("Exists"), None, None),
            &taint
        ));
    }

    #[test]
    fn selectors_and_affinity() {
        let n = node("n1", &[("disk", "ssd"), ("cores", "8")], &[]);
        let mut spec = PodSpec {
            node_selector: Some([("disk".to_string(), "ssd".to_string())].into()),
            ..Default::default()
        };
        assert!(fits_node_affinity(&spec, &n));
        spec.node_selector = Some([("disk".to_string(), "hdd".to_string())].into());
        assert!(!fits_node_affinity(&spec, &n));
        spec.node_selector = None;
        for (r, want) in [
            (req("disk", "In", &["ssd", "nvme"]), true),
            (req("disk", "NotIn", &["ssd"]), false),
            (req("gpu", "NotIn", &["x"]), true),
            (req("gpu", "Exists", &[]), false),
            (req("gpu", "DoesNotExist", &[]), true),
            (req("cores", "Gt", &["4"]), true),
            (req("cores", "Lt", &["4"]), false),
            (req("disk", "Gt", &["4"]), false),
        ] {
            let term = NodeSelectorTerm {
                match_expressions: Some(vec![r.clone()]),
                match_fields: None,
            };
            assert_eq!(term_matches(&term, &n), want, "{r:?}");
        }
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req(NODE_NAME_FIELD, "In", &["n1"])]),
        };
        assert!(term_matches(&by_name, &n));
        assert!(!term_matches(&by_name, &node("n2", &[], &[])));
        assert!(
            !term_matches(&NodeSelectorTerm::default(), &n),
            "empty term matches nothing"
        );
        // Terms are ORed.
        spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![
                        NodeSelectorTerm {
                            match_expressions: Some(vec![req("gpu", "Exists", &[])]),
                            match_fields: None,
                        },
                        by_name,
                    ],
                }),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Default::default()
        });
        assert!(fits_node_affinity(&spec, &n));
        assert!(!fits_node_affinity(&spec, &node("n2", &[], &[])));
    }

    #[test]
    fn should_run_by_taints() {
        let d = ds(PodSpec::default());
        assert_eq!(node_should_run(&node("n", &[], &[]), &d), (true, true));
        // Taints daemon pods tolerate.
        assert_eq!(
            node_should_run(
                &node(
                    "n",
                    &[],
                    &[(NOT_READY, "NoExecute"), (UNSCHEDULABLE, "NoSchedule")]
                ),
                &d
            ),
            (true, true)
        );
        // NoSchedule: no new pod, an existing one stays.
        assert_eq!(
            node_should_run(&node("n", &[], &[("dedicated", "NoSchedule")]), &d),
            (false, true)
        );
        // NoExecute: none at all.
        assert_eq!(
            node_should_run(&node("n", &[], &[("dedicated", "NoExecute")]), &d),
            (false, false)
        );
        // PreferNoSchedule does not matter.
        assert_eq!(
            node_should_run(&node("n", &[], &[("dedicated", "PreferNoSchedule")]), &d),
            (true, true)
        );
        let tolerant = ds(PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(
            node_should_run(&node("n", &[], &[("dedicated", "NoExecute")]), &tolerant),
            (true, true)
        );
        // Network-unavailable is tolerated by host-network pods only.
        let net = node("n", &[], &[(NETWORK_UNAVAILABLE, "NoSchedule")]);
        assert_eq!(node_should_run(&net, &d), (false, true));
        assert_eq!(
            node_should_run(
                &net,
                &ds(PodSpec {
                    host_network: Some(true),
                    ..Default::default()
                })
            ),
            (true, true)
        );
    }

    #[test]
    fn should_run_by_name_and_selector() {
        let d = ds(PodSpec {
            node_name: Some("n2".into()),
            ..Default::default()
        });
        assert_eq!(node_should_run(&node("n1", &[], &[]), &d), (false, false));
        assert_eq!(node_should_run(&node("n2", &[], &[]), &d), (true, true));
        let d = ds(PodSpec {
            node_selector: Some([("role".to_string(), "edge".to_string())].into()),
            ..Default::default()
        });
        assert_eq!(
            node_should_run(&node("n1", &[("role", "edge")], &[]), &d),
            (true, true)
        );
        assert_eq!(node_should_run(&node("n2", &[], &[]), &d), (false, false));
    }

    #[test]
    fn pinning_and_target_nodes() {
        let user = Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![req("role", "In", &["edge"])]),
                        match_fields: None,
                    }],
                }),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Default::default()
        };
        let pinned = pin_to_node(Some(user), "n7");
        let terms = pinned
            .node_affinity
            .as_ref()
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.clone())
            .unwrap_or_default();
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].match_expressions, None);
        assert_eq!(
            terms[0].match_fields,
            Some(vec![req(NODE_NAME_FIELD, "In", &["n7"])])
        );
        let mut pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(pinned),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n7"));
        if let Some(s) = pod.spec.as_mut() {
            s.node_name = Some("n8".into());
        }
        assert_eq!(target_node(&pod).as_deref(), Some("n8"), "nodeName wins");
        assert_eq!(target_node(&Pod::default()), None);
        assert!(pin_to_node(None, "x").node_affinity.is_some());
    }
}
