//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook: writes are sent
//! as AdmissionReview v1 to the HTTPS webhooks that
//! admissionregistration.k8s.io/v1 Mutating/ValidatingWebhookConfigurations
//! register. Mutating webhooks run one after another and may patch the
//! object; validating webhooks run in parallel and any refusal refuses.
//!
//! - `config.rs`: the watch-fed cache of the configurations (a write never
//!   lists them; with none configured the check is one atomic load);
//! - `matching.rs`: rules (with matchPolicy Equivalent), scope, namespace
//!   and object selectors;
//! - `review.rs`: the AdmissionReview request and the checks on its answer;
//! - `client.rs`: the HTTPS call (rustls, the webhook's caBundle or the
//!   system roots);
//! - `connect.rs`: CONNECT, pods/binding and pods/eviction.
//!
//! As upstream, writes of subresources whose object is not the resource's
//! own are sent with that object (pods/binding a Binding, pods/eviction an
//! Eviction, /scale a Scale), and exec/attach/portforward/proxy are sent as
//! CONNECT with their options object before the stream is opened (options
//! null). Options are upstream's Create/UpdateOptions, a PATCH's too.
//! matchConditions are CEL (`crate::cel`) over `object`, `oldObject` and
//! `request`; the `authorizer` variable is not offered.

pub mod client;
pub mod config;
pub mod connect;
pub mod matching;
pub mod review;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

pub use config::Cache;
use config::Hook;
use matching::Matched;

use crate::api::status::ApiError;
use crate::auth::UserInfo;
use crate::registry::ResourceDef;
use crate::registry::generic::{DeleteOptions, Registry, WriteOptions};

/// The admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// What a webhook is told about a request (upstream's admission.Attributes).
pub struct Attributes<'a> {
    pub def: &'a ResourceDef,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub subresource: Option<&'a str>,
    pub operation: Operation,
    pub old: Option<&'a Value>,
    pub dry_run: bool,
    pub user: Option<&'a UserInfo>,
    /// The CreateOptions/UpdateOptions/DeleteOptions of the request.
    pub options: Options<'a>,
    /// The kind of the object sent when it is not the resource's own
    /// (`autoscaling/v1 Scale` for the scale subresource).
    pub object_kind: Option<(&'a str, &'a str, &'a str)>,
    /// Webhooks already admitted this write (the scale subresource's
    /// update of its parent).
    pub skip: bool,
}

/// The query parameters upstream copies into the Create/UpdateOptions a
/// webhook is sent (a PATCH's too: upstream turns its PatchOptions into
/// those). The field manager is the parameter as given, not the
/// user-agent fallback managedFields records.
#[derive(Clone, Debug, Default)]
pub struct RequestOptions {
    pub field_manager: Option<String>,
    pub field_validation: Option<String>,
}

/// The request's options, turned into JSON only when a webhook is called
/// (every write builds Attributes).
pub enum Options<'a> {
    Create(&'a WriteOptions),
    Update(&'a WriteOptions),
    Delete(&'a DeleteOptions),
    /// CONNECT requests carry no options (upstream sends null).
    None,
}

impl Options<'_> {
    pub fn to_json(&self) -> Value {
        let (kind, dry_run) = match self {
            Options::Create(o) => ("CreateOptions", o.dry_run),
            Options::Update(o) => ("UpdateOptions", o.dry_run),
            Options::Delete(o) => ("DeleteOptions", o.dry_run),
            Options::None => return Value::Null,
        };
        let mut out = json!({"apiVersion": "meta.k8s.io/v1", "kind": kind});
        if dry_run {
            out["dryRun"] = json!(["All"]);
        }
        match self {
            Options::Create(o) | Options::Update(o) => {
                let r = &o.request_options;
                if let Some(m) = r.field_manager.as_deref().filter(|m| !m.is_empty()) {
                    out["fieldManager"] = json!(m);
                }
                if let Some(v) = r.field_validation.as_deref().filter(|v| !v.is_empty()) {
                    out["fieldValidation"] = json!(v);
                }
            }
            Options::Delete(o) => {
                if let Some(g) = o.grace_period_seconds {
                    out["gracePeriodSeconds"] = json!(g);
                }
                if let Some(p) = &o.propagation_policy {
                    out["propagationPolicy"] = json!(p);
                }
            }
            Options::None => {}
        }
        out
    }
}

impl<'a> Attributes<'a> {
    pub fn create(
        def: &'a ResourceDef,
        namespace: Option<&'a str>,
        name: &'a str,
        opts: &'a WriteOptions,
    ) -> Self {
        Attributes {
            def,
            namespace,
            name,
            subresource: None,
            operation: Operation::Create,
            old: None,
            dry_run: opts.dry_run,
            user: opts.user.as_ref(),
            options: Options::Create(opts),
            object_kind: None,
            skip: opts.webhooks_done,
        }
    }

    pub fn update(
        def: &'a ResourceDef,
        namespace: Option<&'a str>,
        name: &'a str,
        subresource: Option<&'a str>,
        old: &'a Value,
        opts: &'a WriteOptions,
    ) -> Self {
        Attributes {
            def,
            namespace,
            name,
            subresource,
            operation: Operation::Update,
            old: Some(old),
            dry_run: opts.dry_run,
            user: opts.user.as_ref(),
            options: Options::Update(opts),
            object_kind: None,
            skip: opts.webhooks_done,
        }
    }

    pub fn delete(
        def: &'a ResourceDef,
        namespace: Option<&'a str>,
        name: &'a str,
        old: &'a Value,
        opts: &'a DeleteOptions,
    ) -> Self {
        Attributes {
            def,
            namespace,
            name,
            subresource: None,
            operation: Operation::Delete,
            old: Some(old),
            dry_run: opts.dry_run,
            user: opts.user.as_ref(),
            options: Options::Delete(opts),
            object_kind: None,
            skip: false,
        }
    }

    /// A create on a subresource whose object is another kind
    /// (pods/binding: a v1 Binding; pods/eviction: a policy/v1 Eviction).
    pub fn subresource_create(
        def: &'a ResourceDef,
        namespace: Option<&'a str>,
        name: &'a str,
        subresource: &'a str,
        kind: (&'a str, &'a str, &'a str),
        opts: &'a WriteOptions,
    ) -> Self {
        Attributes {
            subresource: Some(subresource),
            object_kind: Some(kind),
            ..Attributes::create(def, namespace, name, opts)
        }
    }

    /// CONNECT of a streaming subresource: the object is its options
    /// (`v1 PodExecOptions`), and there are no operation options.
    pub fn connect(
        def: &'a ResourceDef,
        namespace: Option<&'a str>,
        name: &'a str,
        subresource: &'a str,
        kind: &'a str,
        user: Option<&'a UserInfo>,
    ) -> Self {
        Attributes {
            def,
            namespace,
            name,
            subresource: Some(subresource),
            operation: Operation::Connect,
            old: None,
            dry_run: false,
            user,
            options: Options::None,
            object_kind: Some(("", "v1", kind)),
            skip: false,
        }
    }

    /// The scale subresource: the objects are autoscaling/v1 Scales.
    pub fn scale(mut self) -> Self {
        self.subresource = Some("scale");
        self.object_kind = Some(("autoscaling", "v1", "Scale"));
        self
    }

    /// Upstream gives a Namespace's own name as the request's namespace.
    fn request_namespace(&self) -> &str {
        if self.def.group.is_empty() && self.def.plural == "namespaces" {
            self.name
        } else {
            self.namespace.unwrap_or("")
        }
    }
}

/// Upstream never sends webhook configurations (nor admission policies)
/// to webhooks, so a broken webhook cannot lock itself in.
fn exempt(a: &Attributes<'_>) -> bool {
    a.skip || a.def.group == "admissionregistration.k8s.io"
}

/// How a webhook call went wrong.
enum CallError {
    /// Calling the webhook failed: failurePolicy decides.
    Calling(String),
    /// The webhook answered no, or the request cannot be admitted at all.
    Refused(ApiError),
}

/// Namespace labels, read once per request and only when a selector needs them.
struct NamespaceLabels<'r> {
    reg: &'r Registry,
    cached: Option<Option<BTreeMap<String, String>>>,
}

impl NamespaceLabels<'_> {
    async fn get(&mut self, ns: &str) -> Option<&BTreeMap<String, String>> {
        if self.cached.is_none() {
            let labels = match self.reg.catalogue.get("", "v1", "namespaces") {
                Some(nsdef) => self
                    .reg
                    .get(&nsdef, None, ns, crate::registry::generic::ReadAt::Latest)
                    .await
                    .ok()
                    .map(|o| crate::registry::generic::labels_of(&o)),
                None => None,
            };
            self.cached = Some(labels);
        }
        self.cached.as_ref().and_then(Option::as_ref)
    }
}

/// Whether and how `hook` is to be called for this request; an error when
/// its match conditions cannot be evaluated and failurePolicy is Fail.
async fn should_call(
    hook: &Hook,
    a: &Attributes<'_>,
    obj: Option<&Value>,
    ns_labels: &mut NamespaceLabels<'_>,
) -> Result<Option<Matched>, ApiError> {
    let Some(matched) = matching::invocation(hook, a, &ns_labels.reg.catalogue) else {
        return Ok(None);
    };
    if !matching::object_selector_matches(hook, obj, a.old) {
        return Ok(None);
    }
    let ns_ok = if hook.namespace_selector.is_empty() {
        true
    } else if a.def.group.is_empty() && a.def.plural == "namespaces" {
        // A Namespace is matched on its own labels.
        let own = obj.or(a.old).map(crate::registry::generic::labels_of);
        own.is_some_and(|l| hook.namespace_selector.matches(&l))
    } else {
        match a.namespace.filter(|n| !n.is_empty()) {
            // Cluster-scoped objects ignore namespaceSelector.
            None => true,
            Some(ns) => {
                let empty = BTreeMap::new();
                let labels = ns_labels.get(ns).await.unwrap_or(&empty);
                hook.namespace_selector.matches(labels)
            }
        }
    };
    if !ns_ok {
        return Ok(None);
    }
    let held = match &matched {
        Matched::Exact => matching::conditions_hold(hook, a, obj),
        Matched::Equivalent(to) if !hook.match_conditions.is_empty() => {
            let obj = obj.map(|o| matching::convert(o, a.def, to));
            let old = a.old.map(|o| matching::convert(o, a.def, to));
            matching::conditions_hold_as(hook, a, Some(to), obj.as_ref(), old.as_ref())
        }
        Matched::Equivalent(_) => Ok(true),
    };
    match held {
        Ok(true) => Ok(Some(matched)),
        Ok(false) => Ok(None),
        Err(_) if hook.failure_policy_ignore => Ok(None),
        Err(why) => Err(ApiError::internal(format!(
            "failed calling webhook \"{}\": failed to evaluate match conditions: {why}",
            hook.name
        ))),
    }
}

/// A dry run may only reach webhooks without side effects (v1 admits
/// only None and NoneOnDryRun; older stored objects may say otherwise).
fn dry_run_refusal(hook: &Hook, a: &Attributes<'_>) -> Option<ApiError> {
    (a.dry_run && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun")).then(|| {
        ApiError::bad_request(format!(
            "admission webhook \"{}\" does not support dry run",
            hook.name
        ))
    })
}

/// Call one webhook; a mutating one's patch comes back applied to `obj`.
/// Returns whether the object changed.
async fn call(
    reg: &Registry,
    hook: &Hook,
    a: &Attributes<'_>,
    matched: &Matched,
    obj: Option<&mut Value>,
    mutating: bool,
) -> Result<bool, CallError> {
    if let Some(e) = dry_run_refusal(hook, a) {
        return Err(CallError::Refused(e));
    }
    let equivalent = match matched {
        Matched::Exact => None,
        Matched::Equivalent(to) => Some(to.as_ref()),
    };
    // Called for an equivalent resource, the webhook sees (and patches)
    // the objects as that resource serves them.
    let sent = match (equivalent, obj.as_deref()) {
        (Some(to), Some(o)) => Some(matching::convert(o, a.def, to)),
        _ => None,
    };
    let sent_old = equivalent.and_then(|to| a.old.map(|o| matching::convert(o, a.def, to)));
    let uid = uuid::Uuid::new_v4().to_string();
    let body = review::request(
        &uid,
        a,
        equivalent,
        sent.as_ref().or(obj.as_deref()),
        sent_old.as_ref().or(a.old),
    );
    let endpoint = client::resolve(reg, &hook.client, hook.timeout)
        .await
        .map_err(|e| CallError::Calling(format!("failed to call webhook: {e}")))?;
    let tls = hook
        .tls
        .clone()
        .map_err(|e| CallError::Calling(format!("could not get REST client: {e}")))?;
    let raw = client::post(&endpoint, tls, body, hook.timeout)
        .await
        .map_err(|e| CallError::Calling(format!("failed to call webhook: {e}")))?;
    let resp = review::verify(&uid, mutating, &raw)
        .map_err(|e| CallError::Calling(format!("received invalid webhook response: {e}")))?;
    for w in &resp.warnings {
        crate::api::warning::add(w.clone());
    }
    if !resp.allowed {
        return Err(CallError::Refused(review::denied(
            &hook.name,
            resp.status.as_ref(),
        )));
    }
    let Some(patch) = resp.patch else {
        return Ok(false);
    };
    if resp.patch_type.as_deref() != Some("JSONPatch") {
        return Err(CallError::Calling(format!(
            "unsupported patch type {:?}",
            resp.patch_type.unwrap_or_default()
        )));
    }
    let ops: json_patch::Patch = serde_json::from_slice(&patch).map_err(|e| {
        CallError::Calling(format!(
            "received undecodable patch in webhook response: {e}"
        ))
    })?;
    if ops.0.is_empty() {
        return Ok(false);
    }
    let Some(obj) = obj else {
        return Err(CallError::Refused(ApiError::internal(format!(
            "admission webhook \"{}\" attempted to modify the object, which is not supported for this operation",
            hook.name
        ))));
    };
    let before = sent.as_ref().unwrap_or(obj);
    let mut patched = before.clone();
    json_patch::patch(&mut patched, &ops)
        .map_err(|e| CallError::Refused(ApiError::internal(e.to_string())))?;
    // The object's identity is the request's: a webhook may not move it
    // to another name, namespace or kind (it would be stored under a key
    // that does not name it).
    for field in [
        "/metadata/name",
        "/metadata/namespace",
        "/apiVersion",
        "/kind",
    ] {
        if patched.pointer(field) != before.pointer(field) {
            return Err(CallError::Refused(ApiError::internal(format!(
                "admission webhook \"{}\" attempted to change {}, which is not supported",
                hook.name,
                field.trim_start_matches('/').replace('/', ".")
            ))));
        }
    }
    if let Some(to) = equivalent {
        patched = matching::convert(&patched, to, a.def);
    }
    // The patched object is decoded as a typed one would be: defaults apply.
    if a.object_kind.is_none() {
        a.def.strategy.default(&mut patched);
    }
    let changed = patched != *obj;
    *obj = patched;
    Ok(changed)
}

/// The error a failed call ends the request with, or None when
/// failurePolicy Ignore lets it through.
fn fail(hook: &Hook, e: CallError) -> Option<ApiError> {
    match e {
        CallError::Refused(e) => Some(e),
        CallError::Calling(_) if hook.failure_policy_ignore => None,
        CallError::Calling(why) => Some(ApiError::internal(format!(
            "failed calling webhook \"{}\": {why}",
            hook.name
        ))),
    }
}

/// The mutating webhooks, in order (configurations by name, webhooks as
/// listed); a webhook with reinvocationPolicy IfNeeded runs once more when
/// a later one changed the object.
pub async fn mutate(reg: &Registry, a: &Attributes<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if exempt(a) {
        return Ok(());
    }
    let Some(hooks) = reg.webhooks.current(reg).await else {
        return Ok(());
    };
    if hooks.mutating.is_empty() {
        return Ok(());
    }
    let mut ns_labels = NamespaceLabels { reg, cached: None };
    let mut invoked_reinvocable: BTreeSet<usize> = BTreeSet::new();
    let mut reinvoke: BTreeSet<usize> = BTreeSet::new();
    for (i, hook) in hooks.mutating.iter().enumerate() {
        let Some(matched) = should_call(hook, a, Some(obj), &mut ns_labels).await? else {
            continue;
        };
        match call(reg, hook, a, &matched, Some(obj), true).await {
            Ok(changed) => {
                if changed {
                    reinvoke.extend(invoked_reinvocable.iter().copied());
                }
            }
            Err(e) => {
                if let Some(e) = fail(hook, e) {
                    return Err(e);
                }
                tracing::warn!(webhook = %hook.name, "failed calling webhook, failing open");
            }
        }
        if hook.reinvoke_if_needed {
            invoked_reinvocable.insert(i);
        }
    }
    // One reinvocation round, for webhooks that asked for it and saw an
    // object a later webhook changed.
    for i in reinvoke {
        let hook = &hooks.mutating[i];
        let Some(matched) = should_call(hook, a, Some(obj), &mut ns_labels).await? else {
            continue;
        };
        if let Err(e) = call(reg, hook, a, &matched, Some(obj), true).await
            && let Some(e) = fail(hook, e)
        {
            return Err(e);
        }
    }
    Ok(())
}

/// The validating webhooks, called in parallel; the first refusal (in
/// configuration order) is the answer.
pub async fn validate(
    reg: &Registry,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> Result<(), ApiError> {
    if exempt(a) {
        return Ok(());
    }
    let Some(hooks) = reg.webhooks.current(reg).await else {
        return Ok(());
    };
    if hooks.validating.is_empty() {
        return Ok(());
    }
    let mut ns_labels = NamespaceLabels { reg, cached: None };
    let mut selected: Vec<(&Arc<Hook>, Matched)> = Vec::new();
    for hook in &hooks.validating {
        if let Some(m) = should_call(hook, a, obj, &mut ns_labels).await? {
            selected.push((hook, m));
        }
    }
    let calls = selected.iter().map(|(hook, matched)| async move {
        let mut copy = obj.cloned();
        match call(reg, hook, a, matched, copy.as_mut(), false).await {
            Ok(_) => None,
            Err(e) => {
                let out = fail(hook, e);
                if out.is_none() {
                    tracing::warn!(webhook = %hook.name, "failed calling webhook, failing open");
                }
                out
            }
        }
    });
    match futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .next()
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Validating webhooks for a DELETE: they see the object as oldObject.
/// (Mutating webhooks are called too, as upstream does; a patch is an error.)
pub async fn admit_delete(reg: &Registry, a: &Attributes<'_>) -> Result<(), ApiError> {
    if exempt(a) {
        return Ok(());
    }
    let Some(hooks) = reg.webhooks.current(reg).await else {
        return Ok(());
    };
    if !hooks.mutating.is_empty() {
        let mut ns_labels = NamespaceLabels { reg, cached: None };
        for hook in &hooks.mutating {
            let Some(matched) = should_call(hook, a, None, &mut ns_labels).await? else {
                continue;
            };
            if let Err(e) = call(reg, hook, a, &matched, None, true).await
                && let Some(e) = fail(hook, e)
            {
                return Err(e);
            }
        }
    }
    validate(reg, a, None).await
}

/// The scale subresource: webhooks see autoscaling/v1 Scales (old and
/// new) and may change the replicas; returns the replicas to write.
pub async fn admit_scale(
    reg: &Registry,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    parent: &Value,
    replicas: i64,
    opts: &WriteOptions,
) -> Result<i64, ApiError> {
    if opts.webhooks_done
        || def.group == "admissionregistration.k8s.io"
        || reg.webhooks.current(reg).await.is_none()
    {
        return Ok(replicas);
    }
    let old = Registry::scale_of(def, parent);
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(replicas);
    let a = Attributes::update(def, ns, name, Some("scale"), &old, opts).scale();
    mutate(reg, &a, &mut new).await?;
    validate(reg, &a, Some(&new)).await?;
    Ok(new
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(replicas))
}

#[cfg(test)]
mod tests;
