//! Root CA publisher (upstream's root-ca-certificate-publisher): every
//! active namespace has a `kube-root-ca.crt` ConfigMap whose `ca.crt` is
//! the cluster CA, so pods can verify the API server; edits are reverted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{debug, warn};

use super::serviceaccount::is_active;

pub const CONFIG_MAP: &str = "kube-root-ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct State {
    client: kube::Client,
    ca_pem: String,
}

/// Run until the process ends.
pub async fn run(ctx: Arc<super::Context>) {
    let ca_pem = ctx.settings.ca_pem.clone();
    if ca_pem.is_empty() {
        warn!("root CA publisher: no cluster CA configured; kube-root-ca.crt is not published");
        return;
    }
    let client = ctx.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    let only_ours = watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}"));
    Controller::new(namespaces, watcher::Config::default())
        .watches(config_maps, only_ours, |cm| {
            cm.metadata.namespace.as_deref().map(ObjectRef::new)
        })
        .run(reconcile, error_policy, Arc::new(State { client, ca_pem }))
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!("root CA publisher: {e}");
            }
        })
        .await;
}

fn error_policy(_: Arc<Namespace>, err: &kube::Error, _: Arc<State>) -> Action {
    debug!("root CA publisher: {err}");
    Action::requeue(Duration::from_secs(1))
}

fn desired_data(ca_pem: &str) -> BTreeMap<String, String> {
    [("ca.crt".to_string(), ca_pem.to_string())].into()
}

/// The ConfigMap brought to the published state; None if it already is.
fn corrected(mut cm: ConfigMap, ca_pem: &str) -> Option<ConfigMap> {
    let data = desired_data(ca_pem);
    let described = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|d| !d.is_empty());
    if cm.data.as_ref() == Some(&data) && cm.binary_data.is_none() && described {
        return None;
    }
    cm.data = Some(data);
    cm.binary_data = None;
    cm.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    Some(cm)
}

async fn reconcile(ns: Arc<Namespace>, st: Arc<State>) -> Result<Action, kube::Error> {
    let Some(name) = ns.metadata.name.as_deref() else {
        return Ok(Action::await_change());
    };
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let api: Api<ConfigMap> = Api::namespaced(st.client.clone(), name);
    let res = match api.get_opt(CONFIG_MAP).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CONFIG_MAP.into()),
                    annotations: Some(
                        [(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string())].into(),
                    ),
                    ..Default::default()
                },
                data: Some(desired_data(&st.ca_pem)),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await.map(|_| ())
        }
        Some(cm) => match corrected(cm, &st.ca_pem) {
            None => Ok(()),
            Some(cm) => api
                .replace(CONFIG_MAP, &PostParams::default(), &cm)
                .await
                .map(|_| ()),
        },
    };
    match res {
        Ok(()) => Ok(Action::await_change()),
        // The namespace went or is terminating; a conflict brings a new event.
        Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 409) => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edited_config_map_is_restored() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let cm = ConfigMap {
            data: Some([("ca.crt".to_string(), "tampered".to_string())].into()),
            ..Default::default()
        };
        let fixed = corrected(cm, pem).expect("needs fixing");
        assert_eq!(fixed.data, Some(desired_data(pem)));
        assert_eq!(
            fixed
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                .map(String::as_str),
            Some(DESCRIPTION)
        );
        assert!(corrected(fixed, pem).is_none());
    }
}
