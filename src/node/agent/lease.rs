//! The node's heartbeat: a Lease named after the node in
//! `kube-node-lease`, renewed every 10 s (40 s duration), owned by the
//! Node so it goes away with it -- the kubelet's nodelease controller.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::debug;

use super::registration::NodeRegistration;

pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Upstream's leaseDurationSeconds for node leases.
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// Renew (or create) the node's Lease now.
pub async fn renew(
    client: &kube::Client,
    node: &str,
    node_uid: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let now =
        serde_json::to_value(MicroTime(jiff::Timestamp::now())).map_err(kube::Error::SerdeError)?;
    let spec = json!({"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now});
    match api
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let mut lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": NODE_LEASE_NAMESPACE},
                "spec": spec,
            });
            if let Some(uid) = node_uid {
                lease["metadata"]["ownerReferences"] =
                    json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]);
            }
            let lease: Lease = serde_json::from_value(lease).map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Renew the lease every `interval` once the node is registered.
pub async fn heartbeat(
    client: kube::Client,
    node: String,
    interval: Duration,
    registration: NodeRegistration,
) {
    loop {
        let Some(uid) = registration.uid() else {
            // Not registered yet: the first lease follows registration closely.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if let Err(e) = renew(&client, &node, Some(&uid)).await {
            debug!(%node, "lease renewal failed: {e}");
        }
        tokio::time::sleep(interval).await;
    }
}
