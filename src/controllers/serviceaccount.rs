//! ServiceAccount controller (upstream's serviceaccounts-controller): every
//! active namespace has a `default` ServiceAccount; deleting it brings it
//! back.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::debug;

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

struct State {
    client: kube::Client,
}

/// Run until the process ends.
pub async fn run(ctx: Arc<super::Context>) {
    let client = ctx.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let only_default =
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}"));
    Controller::new(namespaces, watcher::Config::default())
        // A deleted default account sends us back to its namespace.
        .watches(accounts, only_default, |sa| {
            sa.metadata.namespace.as_deref().map(ObjectRef::new)
        })
        .run(reconcile, error_policy, Arc::new(State { client }))
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!("serviceaccount controller: {e}");
            }
        })
        .await;
}

fn error_policy(_: Arc<Namespace>, err: &kube::Error, _: Arc<State>) -> Action {
    debug!("serviceaccount controller: {err}");
    Action::requeue(Duration::from_secs(1))
}

/// Whether a namespace takes new content (not terminating).
pub(crate) fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Active")
}

async fn reconcile(ns: Arc<Namespace>, st: Arc<State>) -> Result<Action, kube::Error> {
    let Some(name) = ns.metadata.name.as_deref() else {
        return Ok(Action::await_change());
    };
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(st.client.clone(), name);
    if api.get_opt(DEFAULT_SERVICE_ACCOUNT).await?.is_some() {
        return Ok(Action::await_change());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(Action::await_change()),
        // Already there, or the namespace went or is terminating: nothing to do.
        Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 409) => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;

    #[test]
    fn terminating_namespaces_get_no_account() {
        let mut ns = Namespace::default();
        assert!(is_active(&ns));
        ns.status = Some(NamespaceStatus {
            phase: Some("Active".into()),
            ..Default::default()
        });
        assert!(is_active(&ns));
        ns.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        assert!(!is_active(&ns));
    }
}
