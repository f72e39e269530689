//! Namespace controller: once a namespace is being deleted, delete every
//! namespaced object in it, then remove the `kubernetes` finalizer so the
//! namespace goes. Conditions on the namespace report what is left.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::runtime::watcher;
use tracing::{debug, warn};

use crate::registry::Catalogue;

/// Run until the stream of namespace events ends.
pub async fn run(ctx: Arc<super::Context>) {
    let client = ctx.client.clone();
    let catalogue = ctx.catalogue.clone();
    let api: Api<Namespace> = Api::all(client.clone());
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    while let Some(ev) = events.next().await {
        let nss: Vec<Namespace> = match ev {
            Ok(watcher::Event::Apply(ns)) | Ok(watcher::Event::InitApply(ns)) => vec![ns],
            Ok(_) => continue,
            Err(e) => {
                debug!("namespace watch: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for ns in nss {
            if ns.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let client = client.clone();
            let catalogue = catalogue.clone();
            tokio::spawn(async move {
                // Retry until the namespace is empty; objects with their own
                // finalizers may take a while.
                for attempt in 0..600u32 {
                    match reconcile(&client, &catalogue, &ns).await {
                        Ok(true) => return,
                        Ok(false) => {}
                        Err(e) => warn!(namespace = ns.metadata.name.as_deref().unwrap_or(""), "namespace cleanup: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10) + 1))).await;
                }
            });
        }
    }
}

/// Delete the namespace's contents; Ok(true) once it is finalized.
async fn reconcile(client: &kube::Client, catalogue: &Catalogue, ns: &Namespace) -> Result<bool, kube::Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let mut remaining = 0usize;
    for def in catalogue.all() {
        // One version per stored resource is enough.
        if !def.namespaced || !def.storage_version || !def.verbs.iter().any(|v| v == "deletecollection") {
            continue;
        }
        let ar = ApiResource {
            group: def.group.clone(),
            version: def.version.clone(),
            api_version: def.api_version(),
            kind: def.kind.clone(),
            plural: def.plural.clone(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &name, &ar);
        let left = api.list_metadata(&ListParams::default()).await?;
        if left.items.is_empty() {
            continue;
        }
        remaining += left.items.len();
        let dp = DeleteParams::background();
        api.delete_collection(&dp, &ListParams::default()).await?;
    }
    if remaining > 0 {
        return Ok(false);
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let mut current = match api.get_opt(&name).await? {
        Some(ns) => ns,
        None => return Ok(true),
    };
    if let Some(spec) = current.spec.as_mut() {
        spec.finalizers = Some(Vec::new());
    }
    let body = serde_json::to_vec(&current).map_err(kube::Error::SerdeError)?;
    let req = http::Request::put(format!("/api/v1/namespaces/{name}/finalize"))
        .header("content-type", "application/json")
        .body(body)
        .map_err(kube::Error::HttpError)?;
    let _: Namespace = client.request(req).await?;
    Ok(true)
}
