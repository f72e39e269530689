//! Namespace controller (upstream's namespaced resources deleter): once a
//! namespace is being deleted, delete every namespaced object in it, of
//! every kind the catalogue serves at that moment (custom ones included),
//! wait for objects held by their own finalizers, report progress in the
//! namespace's status conditions, then remove the `kubernetes` finalizer
//! through namespaces/NAME/finalize so the namespace goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PartialObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use tracing::{debug, warn};

use super::gc::api_resource;
use crate::registry::{Catalogue, ResourceDef};

/// The finalizer this controller owns in `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";
/// Kinds cleaned at the same time.
const PARALLEL_KINDS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Content(String),
}

struct State {
    client: kube::Client,
    catalogue: Arc<Catalogue>,
}

/// Run until the process ends.
pub async fn run(ctx: Arc<super::Context>) {
    let state = Arc::new(State {
        client: ctx.client.clone(),
        catalogue: ctx.catalogue.clone(),
    });
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, state)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!("namespace controller: {e}");
            }
        })
        .await;
}

fn error_policy(ns: Arc<Namespace>, err: &Error, _: Arc<State>) -> Action {
    warn!(
        namespace = ns.metadata.name.as_deref().unwrap_or(""),
        "namespace deletion: {err}"
    );
    Action::requeue(Duration::from_secs(1))
}

/// How soon to look again at a namespace whose content is still going:
/// quickly at first, less often for content that takes long.
fn poll_interval(deleting_for: Duration) -> Duration {
    if deleting_for < Duration::from_secs(10) {
        Duration::from_millis(200)
    } else if deleting_for < Duration::from_secs(120) {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    }
}

async fn reconcile(ns: Arc<Namespace>, st: Arc<State>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() || finalized(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<Namespace> = Api::all(st.client.clone());
    // The cache may lag; act on the latest state.
    let Some(mut latest) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let Some(deleted_at) = latest.metadata.deletion_timestamp.clone() else {
        return Ok(Action::await_change());
    };
    if finalized(&latest) {
        return Ok(Action::await_change());
    }
    let totals = delete_all_content(&st, &name).await;
    let mut status = latest.status.clone().unwrap_or_default();
    let changed = update_conditions(
        &mut status.conditions,
        &totals,
        Time(jiff::Timestamp::now()),
    );
    if status.phase.as_deref() != Some("Terminating") {
        status.phase = Some("Terminating".into());
    }
    if changed || latest.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating") {
        latest.status = Some(status);
        match api
            .replace_status(&name, &PostParams::default(), &latest)
            .await
        {
            Ok(ns) => latest = ns,
            // Someone else changed it; the next pass writes the conditions.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !totals.errors.is_empty() {
        return Err(Error::Content(totals.errors.join(", ")));
    }
    if totals.remaining > 0 {
        let age = jiff::Timestamp::now()
            .duration_since(deleted_at.0)
            .unsigned_abs();
        return Ok(Action::requeue(poll_interval(age)));
    }
    finalize(&st.client, &api, latest).await?;
    Ok(Action::await_change())
}

/// No finalizer of ours left in `spec.finalizers`.
fn finalized(ns: &Namespace) -> bool {
    !ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// PUT namespaces/NAME/finalize without our finalizer; on a conflict read
/// the namespace again and retry.
async fn finalize(
    client: &kube::Client,
    api: &Api<Namespace>,
    mut ns: Namespace,
) -> Result<(), Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    for _ in 0..10 {
        if let Some(spec) = ns.spec.as_mut() {
            let rest: Vec<String> = spec
                .finalizers
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != FINALIZER)
                .collect();
            spec.finalizers = Some(rest);
        }
        let body = serde_json::to_vec(&ns).map_err(kube::Error::SerdeError)?;
        let req = http::Request::put(format!("/api/v1/namespaces/{name}/finalize"))
            .header("content-type", "application/json")
            .body(body)
            .map_err(kube::Error::HttpError)?;
        match client.request::<Namespace>(req).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(&name).await? {
                Some(fresh) => ns = fresh,
                None => return Ok(()),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Content(format!(
        "too many conflicts finalizing namespace {name}"
    )))
}

/// What is left after one pass over every kind.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    /// Objects still present.
    remaining: usize,
    /// "resource.group" -> objects still present.
    by_resource: BTreeMap<String, usize>,
    /// finalizer -> objects held by it.
    by_finalizer: BTreeMap<String, usize>,
    errors: Vec<String>,
}

/// One kind's result.
#[derive(Debug, Default)]
struct KindLeft {
    remaining: usize,
    finalizers: HashMap<String, usize>,
}

/// The namespaced kinds to empty: one stored version each.
fn deletable(catalogue: &Catalogue) -> Vec<Arc<ResourceDef>> {
    catalogue
        .all()
        .into_iter()
        .filter(|d| d.namespaced && d.storage_version)
        .filter(|d| {
            ["list", "delete"]
                .iter()
                .all(|v| d.verbs.iter().any(|x| x == v))
        })
        .collect()
}

async fn delete_all_content(st: &State, ns: &str) -> Totals {
    let defs = deletable(&st.catalogue);
    let results: Vec<(Arc<ResourceDef>, Result<KindLeft, String>)> = futures::stream::iter(defs)
        .map(|def| async move {
            let r = delete_kind(&st.client, &def, ns).await;
            (def, r)
        })
        .buffer_unordered(PARALLEL_KINDS)
        .collect()
        .await;
    let mut t = Totals::default();
    for (def, r) in results {
        match r {
            Ok(left) => {
                if left.remaining > 0 {
                    t.remaining += left.remaining;
                    *t.by_resource
                        .entry(format!("{}.{}", def.plural, def.group))
                        .or_default() += left.remaining;
                    for (f, n) in left.finalizers {
                        *t.by_finalizer.entry(f).or_default() += n;
                    }
                }
            }
            Err(e) => {
                // Count it as remaining so the namespace is not finalized.
                t.remaining += 1;
                t.errors.push(e);
            }
        }
    }
    t.errors.sort();
    t
}

/// Delete every object of one kind in `ns` (Background), then see what is
/// left. Objects still there must be held by finalizers or graceful
/// deletion; anything else is an error.
async fn delete_kind(
    client: &kube::Client,
    def: &ResourceDef,
    ns: &str,
) -> Result<KindLeft, String> {
    let ar = api_resource(def);
    let meta: Api<PartialObjectMeta<DynamicObject>> = Api::namespaced_with(client.clone(), ns, &ar);
    let gvr = format!("{}/{}, Resource={}", def.group, def.version, def.plural);
    let list = |what: &'static str| {
        let meta = meta.clone();
        let gvr = gvr.clone();
        async move {
            meta.list(&ListParams::default())
                .await
                .map_err(|e| format!("failed to {what} {gvr}: {e}"))
        }
    };
    let before = list("list").await?;
    if before.items.is_empty() {
        return Ok(KindLeft::default());
    }
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let dp = DeleteParams::background();
    if def.verbs.iter().any(|v| v == "deletecollection") {
        if let Err(e) = api.delete_collection(&dp, &ListParams::default()).await {
            return Err(format!("failed to delete {gvr}: {e}"));
        }
    } else {
        for item in &before.items {
            let Some(name) = item.metadata.name.as_deref() else {
                continue;
            };
            match api.delete(name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => {}
                Err(e) => return Err(format!("failed to delete {gvr}: {e}")),
            }
        }
    }
    let after = list("list").await?;
    let mut left = KindLeft {
        remaining: after.items.len(),
        ..Default::default()
    };
    let mut unexplained = false;
    for item in &after.items {
        let fs = item.metadata.finalizers.clone().unwrap_or_default();
        if fs.is_empty() && item.metadata.deletion_timestamp.is_none() {
            // Created after the delete, or not deletable: try again next pass.
            unexplained = true;
        }
        for f in fs {
            *left.finalizers.entry(f).or_default() += 1;
        }
    }
    if unexplained && left.finalizers.is_empty() {
        return Err(format!(
            "unexpected items still remain in namespace: {ns} for gvr: {gvr}"
        ));
    }
    Ok(left)
}

/// The condition types this controller maintains, in upstream's order,
/// with their reason and message when all is well.
const CONDITIONS: [(&str, &str, &str); 5] = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// The conditions `totals` call for: (type, status, reason, message).
fn desired_conditions(t: &Totals) -> Vec<(String, &'static str, String, String)> {
    CONDITIONS
        .iter()
        .map(|(ty, ok_reason, ok_message)| {
            let failing: Option<(&str, String)> = match *ty {
                "NamespaceDeletionContentFailure" if !t.errors.is_empty() => Some((
                    "ContentDeletionFailed",
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        t.errors.len(),
                        t.errors.join(", ")
                    ),
                )),
                "NamespaceContentRemaining" if t.by_resource.values().any(|n| *n > 0) => {
                    let parts: Vec<String> = t
                        .by_resource
                        .iter()
                        .map(|(r, n)| format!("{r} has {n} resource instances"))
                        .collect();
                    Some((
                        "SomeResourcesRemain",
                        format!("Some resources are remaining: {}", parts.join(", ")),
                    ))
                }
                "NamespaceFinalizersRemaining" if t.by_finalizer.values().any(|n| *n > 0) => {
                    let parts: Vec<String> = t
                        .by_finalizer
                        .iter()
                        .map(|(f, n)| format!("{f} in {n} resource instances"))
                        .collect();
                    Some((
                        "SomeFinalizersRemain",
                        format!(
                            "Some content in the namespace has finalizers remaining: {}",
                            parts.join(", ")
                        ),
                    ))
                }
                _ => None,
            };
            match failing {
                Some((reason, message)) => (ty.to_string(), "True", reason.to_string(), message),
                None => (
                    ty.to_string(),
                    "False",
                    ok_reason.to_string(),
                    ok_message.to_string(),
                ),
            }
        })
        .collect()
}

/// Bring `conditions` to what `totals` call for; true if anything changed.
/// A condition's transition time moves only when its status changes.
fn update_conditions(
    conditions: &mut Option<Vec<NamespaceCondition>>,
    t: &Totals,
    now: Time,
) -> bool {
    let list = conditions.get_or_insert_with(Vec::new);
    let mut changed = false;
    for (ty, status, reason, message) in desired_conditions(t) {
        match list.iter_mut().find(|c| c.type_ == ty) {
            None => {
                list.push(NamespaceCondition {
                    type_: ty,
                    status: status.into(),
                    reason: Some(reason),
                    message: Some(message),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
            Some(c) => {
                if c.status != status
                    || c.reason.as_deref() != Some(&reason)
                    || c.message.as_deref() != Some(&message)
                {
                    if c.status != status {
                        c.last_transition_time = Some(now.clone());
                    }
                    c.status = status.into();
                    c.reason = Some(reason);
                    c.message = Some(message);
                    changed = true;
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_750_000_000).unwrap_or_default())
    }

    #[test]
    fn conditions_report_all_clear_as_upstream() {
        let mut conds = None;
        assert!(update_conditions(&mut conds, &Totals::default(), now()));
        let conds = conds.unwrap_or_default();
        let got: Vec<(&str, &str, &str)> = conds
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_deref().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "NamespaceDeletionDiscoveryFailure",
                    "False",
                    "ResourcesDiscovered"
                ),
                (
                    "NamespaceDeletionGroupVersionParsingFailure",
                    "False",
                    "ParsedGroupVersions"
                ),
                ("NamespaceDeletionContentFailure", "False", "ContentDeleted"),
                ("NamespaceContentRemaining", "False", "ContentRemoved"),
                (
                    "NamespaceFinalizersRemaining",
                    "False",
                    "ContentHasNoFinalizers"
                ),
            ]
        );
    }

    #[test]
    fn conditions_name_what_remains() {
        let t = Totals {
            remaining: 3,
            by_resource: [
                ("configmaps.".to_string(), 2),
                ("widgets.example.com".to_string(), 1),
            ]
            .into(),
            by_finalizer: [("example.com/hold".to_string(), 3)].into(),
            errors: vec![],
        };
        let mut conds = None;
        update_conditions(&mut conds, &t, now());
        let conds = conds.unwrap_or_default();
        let find = |ty: &str| {
            conds
                .iter()
                .find(|c| c.type_ == ty)
                .cloned()
                .unwrap_or_default()
        };
        let remaining = find("NamespaceContentRemaining");
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some(
                "Some resources are remaining: configmaps. has 2 resource instances, widgets.example.com has 1 resource instances"
            )
        );
        let fins = find("NamespaceFinalizersRemaining");
        assert_eq!(fins.reason.as_deref(), Some("SomeFinalizersRemain"));
        assert_eq!(
            fins.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 3 resource instances"
            )
        );
        assert_eq!(find("NamespaceDeletionContentFailure").status, "False");
    }

    #[test]
    fn content_errors_are_reported() {
        let t = Totals {
            remaining: 1,
            errors: vec!["failed to delete /v1, Resource=pods: boom".into()],
            ..Default::default()
        };
        let mut conds = None;
        update_conditions(&mut conds, &t, now());
        let c = conds
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "NamespaceDeletionContentFailure")
            .unwrap_or_default();
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("ContentDeletionFailed"));
        assert_eq!(
            c.message.as_deref(),
            Some(
                "Failed to delete all resource types, 1 remaining: failed to delete /v1, Resource=pods: boom"
            )
        );
    }

    #[test]
    fn unchanged_conditions_are_not_rewritten() {
        let mut conds = None;
        update_conditions(&mut conds, &Totals::default(), now());
        assert!(!update_conditions(&mut conds, &Totals::default(), now()));
        // A status flip moves the transition time.
        let later = Time(jiff::Timestamp::from_second(1_750_000_100).unwrap_or_default());
        let t = Totals {
            remaining: 1,
            by_resource: [("pods.".to_string(), 1)].into(),
            ..Default::default()
        };
        assert!(update_conditions(&mut conds, &t, later.clone()));
        let c = conds
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .unwrap_or_default();
        assert_eq!(c.last_transition_time, Some(later));
    }

    #[test]
    fn every_namespaced_kind_is_emptied_once() {
        let cat = Catalogue::new(crate::registry::catalogue::builtin());
        let d = deletable(&cat);
        assert!(d.iter().all(|d| d.namespaced));
        assert!(d.iter().any(|d| d.plural == "pods"));
        assert!(d.iter().any(|d| d.plural == "events"));
        assert_eq!(d.iter().filter(|d| d.plural == "events").count(), 1);
        assert!(!d.iter().any(|d| d.plural == "namespaces"));
    }

    #[test]
    fn polling_slows_down_for_slow_content() {
        assert_eq!(
            poll_interval(Duration::from_secs(1)),
            Duration::from_millis(200)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(30)),
            Duration::from_secs(2)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(600)),
            Duration::from_secs(10)
        );
    }
}
