//! VolumeBinding: a pod's PersistentVolumeClaims decide where it may run.
//! A claim bound to a PV with node affinity pins the pod to those nodes; an
//! unbound claim of a WaitForFirstConsumer StorageClass waits for the pod:
//! the scheduler picks a node (a matching static PV, or a provisioner that
//! can serve the node) and records it on the claim as
//! `volume.kubernetes.io/selected-node`. Unbound claims with Immediate
//! binding make the pod wait for the PV controller.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};

use super::labels::{Labels, NodeAffinity, Selector};

pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// What a claim allows.
#[derive(Clone, Debug)]
pub enum ClaimState {
    /// Bound to a PV; where that PV can be used (None: anywhere).
    Bound(Option<NodeAffinity>),
    /// Bound to a PV that does not exist.
    BoundMissing,
    /// Waiting for its first consumer: static PVs that could serve it, and
    /// whether dynamic provisioning may make one (with allowed topologies).
    WaitForConsumer {
        claim: String,
        static_pvs: Vec<(String, Option<NodeAffinity>)>,
        provisioner: Option<Vec<Labels>>,
    },
}

/// The pod's claims, fetched before the cycle.
#[derive(Clone, Debug, Default)]
pub struct VolumeState {
    pub claims: Vec<ClaimState>,
}

/// The claim names a pod uses (PVC volumes and generic ephemeral volumes).
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(pvc) = &v.persistent_volume_claim {
            out.push(pvc.claim_name.clone());
        } else if v.ephemeral.is_some() {
            out.push(format!("{pod_name}-{}", v.name));
        }
    }
    out
}

fn node_affinity_of(pv: &PersistentVolume) -> Option<NodeAffinity> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    Some(NodeAffinity::from_terms(terms))
}

fn storage_of(
    q: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> i128 {
    q.and_then(|m| m.get("storage"))
        .and_then(|q| crate::registry::strategy::kinds::quantity::parse(&q.0).ok())
        .map(|q| q.0)
        .unwrap_or(0)
}

/// Fetch what the pod's claims need. `Err(message)` fails the pod on every
/// node with that message (upstream's PreFilter errors).
pub async fn prefetch(client: &kube::Client, pod: &Pod) -> Result<VolumeState, String> {
    let names = claim_names(pod);
    if names.is_empty() {
        return Ok(VolumeState::default());
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let classes: Api<StorageClass> = Api::all(client.clone());
    let mut state = VolumeState::default();
    let mut all_pvs: Option<Vec<PersistentVolume>> = None;
    for name in names {
        let pvc = match pvcs.get_opt(&name).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(format!("persistentvolumeclaim \"{name}\" not found")),
            Err(e) => {
                return Err(format!(
                    "error getting persistentvolumeclaim \"{name}\": {e}"
                ));
            }
        };
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let spec = pvc.spec.clone().unwrap_or_default();
        if let Some(pv_name) = spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            match pvs.get_opt(pv_name).await {
                Ok(Some(pv)) => state.claims.push(ClaimState::Bound(node_affinity_of(&pv))),
                Ok(None) => state.claims.push(ClaimState::BoundMissing),
                Err(e) => return Err(format!("error getting persistentvolume \"{pv_name}\": {e}")),
            }
            continue;
        }
        let class_name = spec.storage_class_name.clone().unwrap_or_default();
        let class = if class_name.is_empty() {
            None
        } else {
            classes.get_opt(&class_name).await.ok().flatten()
        };
        let wffc = class
            .as_ref()
            .and_then(|c| c.volume_binding_mode.as_deref())
            == Some("WaitForFirstConsumer");
        if !wffc {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        if all_pvs.is_none() {
            all_pvs = Some(
                pvs.list(&Default::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .items,
            );
        }
        let want = storage_of(spec.resources.as_ref().and_then(|r| r.requests.as_ref()));
        let selector = spec
            .selector
            .as_ref()
            .map(|s| Selector::from_label_selector(Some(s)));
        let static_pvs = all_pvs
            .iter()
            .flatten()
            .filter(|pv| {
                let s = pv.spec.as_ref();
                let available = pv.status.as_ref().and_then(|st| st.phase.as_deref())
                    == Some("Available")
                    && s.and_then(|s| s.claim_ref.as_ref()).is_none();
                available
                    && s.and_then(|s| s.storage_class_name.clone())
                        .unwrap_or_default()
                        == class_name
                    && storage_of(s.and_then(|s| s.capacity.as_ref())) >= want
                    && selector.as_ref().is_none_or(|sel| {
                        sel.matches(pv.metadata.labels.as_ref().unwrap_or(&Labels::new()))
                    })
            })
            .map(|pv| {
                (
                    pv.metadata.name.clone().unwrap_or_default(),
                    node_affinity_of(pv),
                )
            })
            .collect();
        let provisioner = class
            .as_ref()
            .filter(|c| c.provisioner != NO_PROVISIONER)
            .map(|c| {
                c.allowed_topologies
                    .iter()
                    .flatten()
                    .map(|t| {
                        // Each term: label -> allowed values; kept as a Labels map
                        // of "key" -> "v1,v2" for a compact check.
                        t.match_label_expressions
                            .iter()
                            .flatten()
                            .map(|r| (r.key.clone(), r.values.join(",")))
                            .collect::<Labels>()
                    })
                    .collect::<Vec<_>>()
            });
        state.claims.push(ClaimState::WaitForConsumer {
            claim: name,
            static_pvs,
            provisioner,
        });
    }
    Ok(state)
}

fn topology_allows(terms: &[Labels], labels: &Labels) -> bool {
    terms.is_empty()
        || terms.iter().any(|t| {
            t.iter().all(|(k, vals)| {
                labels
                    .get(k)
                    .is_some_and(|v| vals.split(',').any(|a| a == v))
            })
        })
}

/// The VolumeBinding filter for one node.
pub fn filter(state: &VolumeState, node: &str, labels: &Labels) -> Result<(), &'static str> {
    let mut missing = false;
    let mut conflict = false;
    let mut unbindable = false;
    for c in &state.claims {
        match c {
            ClaimState::Bound(Some(aff)) if !aff.matches(node, labels) => conflict = true,
            ClaimState::Bound(_) => {}
            ClaimState::BoundMissing => missing = true,
            ClaimState::WaitForConsumer {
                static_pvs,
                provisioner,
                ..
            } => {
                let static_ok = static_pvs
                    .iter()
                    .any(|(_, aff)| aff.as_ref().is_none_or(|a| a.matches(node, labels)));
                let dynamic_ok = provisioner
                    .as_ref()
                    .is_some_and(|t| topology_allows(t, labels));
                if !static_ok && !dynamic_ok {
                    unbindable = true;
                }
            }
        }
    }
    if missing {
        Err(REASON_NOT_EXIST)
    } else if conflict {
        Err(REASON_NODE_CONFLICT)
    } else if unbindable {
        Err(REASON_BIND_CONFLICT)
    } else {
        Ok(())
    }
}

/// Before binding: claim a static PV for each waiting claim where one fits
/// the node, and mark the claims with the chosen node for the provisioner.
pub async fn prebind(
    client: &kube::Client,
    pod: &Pod,
    state: &VolumeState,
    node: &str,
    labels: &Labels,
) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for c in &state.claims {
        let ClaimState::WaitForConsumer {
            claim, static_pvs, ..
        } = c
        else {
            continue;
        };
        if let Some((pv, _)) = static_pvs
            .iter()
            .find(|(_, aff)| aff.as_ref().is_none_or(|a| a.matches(node, labels)))
        {
            let current = pvcs.get(claim).await?;
            let patch = serde_json::json!({"spec": {"claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": claim,
                "uid": current.metadata.uid, "resourceVersion": current.metadata.resource_version}}});
            pvs.patch(pv, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            continue;
        }
        let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
        pvcs.patch(claim, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
    }
    // ---- wait for the claims to bind (issue 5, local-path) ----
    // As upstream's VolumeBinding PreBind: the pod is bound to the node only
    // once its claims are (provisioned and) bound, so the node never sees a
    // pod whose volumes cannot be mounted yet.
    let waiting: Vec<&String> = state
        .claims
        .iter()
        .filter_map(|c| match c {
            ClaimState::WaitForConsumer { claim, .. } => Some(claim),
            _ => None,
        })
        .collect();
    let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
    loop {
        let mut all_bound = true;
        for claim in &waiting {
            let pvc = pvcs.get(claim).await?;
            let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
                && pvc
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .is_some_and(|v| !v.is_empty());
            all_bound &= bound;
        }
        if all_bound {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(kube::Error::Service(
                "binding volumes: timed out waiting for the condition".into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // ---- end wait for the claims to bind ----
}

/// How long PreBind waits for claims to bind (upstream's bindTimeoutSeconds
/// is 600; a local provisioner answers in well under a second).
pub const BIND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorTerm;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bound_pv_node_affinity_and_waiting_claims() {
        let term: NodeSelectorTerm = serde_json::from_value(json!({"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}))
        .unwrap();
        let aff = NodeAffinity::from_terms(&[term]);
        let state = VolumeState {
            claims: vec![ClaimState::Bound(Some(aff.clone()))],
        };
        assert!(filter(&state, "a", &labels(&[("kubernetes.io/hostname", "a")])).is_ok());
        assert_eq!(
            filter(&state, "b", &labels(&[("kubernetes.io/hostname", "b")])),
            Err(REASON_NODE_CONFLICT)
        );

        let state = VolumeState {
            claims: vec![ClaimState::BoundMissing],
        };
        assert_eq!(filter(&state, "a", &Labels::new()), Err(REASON_NOT_EXIST));

        // Only a local PV on node a and no provisioner: only a fits.
        let waiting = ClaimState::WaitForConsumer {
            claim: "data".into(),
            static_pvs: vec![("pv-a".into(), Some(aff))],
            provisioner: None,
        };
        let state = VolumeState {
            claims: vec![waiting],
        };
        assert!(filter(&state, "a", &labels(&[("kubernetes.io/hostname", "a")])).is_ok());
        assert_eq!(
            filter(&state, "b", &labels(&[("kubernetes.io/hostname", "b")])),
            Err(REASON_BIND_CONFLICT)
        );

        // A provisioner limited to zone z1.
        let waiting = ClaimState::WaitForConsumer {
            claim: "data".into(),
            static_pvs: vec![],
            provisioner: Some(vec![labels(&[("zone", "z1,z2")])]),
        };
        let state = VolumeState {
            claims: vec![waiting],
        };
        assert!(filter(&state, "a", &labels(&[("zone", "z2")])).is_ok());
        assert!(filter(&state, "a", &labels(&[("zone", "z3")])).is_err());
    }
}
