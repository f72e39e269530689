//! The generic REST store: create/get/list/update/delete/watch over JSON
//! objects for any `ResourceDef`, calling its strategy hooks. Upstream's
//! `genericregistry.Store`; everything kind-specific lives in strategies.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::names::validate_name;
use super::strategy::Ctx;
use super::{Catalogue, ResourceDef};
use crate::api::selectors::{FieldSelector, LabelSelector};
use crate::api::status::{ApiError, FieldError};
use crate::store::{EventKind, EventStream, KeyValue, ListOptions, Revision, Store, StoreError};

/// Cluster settings the hooks need.
#[derive(Clone, Debug)]
pub struct Settings {
    pub service_cidr: String,
    pub cluster_cidr: String,
    pub node_port_range: (u16, u16),
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            service_cidr: "10.43.0.0/16".into(),
            cluster_cidr: "10.42.0.0/16".into(),
            node_port_range: (30000, 32767),
        }
    }
}

/// Kinds whose strategies keep metadata.generation (spec changes bump it).
const GENERATION_KINDS: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Ingress",
    "IngressClass",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn has_generation(def: &ResourceDef) -> bool {
    GENERATION_KINDS.contains(&def.kind.as_str()) || def.strategy.custom_resource().is_some()
}

/// Options common to every write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// The manager recorded in managedFields (`?fieldManager=` or the user agent).
    pub field_manager: Option<String>,
    /// The writer (server-side apply) has computed managedFields itself.
    pub managed_fields_set: bool,
    /// The requesting user, for admission webhooks' userInfo.
    pub user: Option<crate::auth::UserInfo>,
    /// Admission webhooks already saw this write (as a subresource's).
    pub webhooks_done: bool,
    /// The subresource managedFields records a main-resource write under
    /// (`scale`: a /scale write lands as an update of the parent).
    pub managed_subresource: Option<&'static str>,
    /// The query options admission webhooks are told of.
    pub request_options: crate::admission::webhook::RequestOptions,
    /// fieldValidation, for the unknown fields a patch brings in.
    pub field_validation: crate::api::request::FieldValidation,
}

/// Delete options (metav1.DeleteOptions, the parts this layer honours).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    /// The requesting user, for admission webhooks' userInfo.
    pub user: Option<crate::auth::UserInfo>,
}

/// How a list or get picks its revision (resourceVersion + resourceVersionMatch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReadAt {
    /// `resourceVersion` unset: the newest state.
    #[default]
    Latest,
    /// `resourceVersion=0`: any state is fine (we still serve the newest).
    Any,
    /// `resourceVersion=N` (NotOlderThan): at least N.
    NotOlderThan(Revision),
    /// `resourceVersionMatch=Exact`: exactly N.
    Exact(Revision),
}

#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub read_at: ReadAt,
}

/// A page of a list, before it is rendered.
pub struct ListPage {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// One watch event for the API layer.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED.
    pub kind: &'static str,
    pub object: Value,
    pub revision: Revision,
}

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub catalogue: Arc<Catalogue>,
    pub settings: Settings,
    /// The admission webhook configurations, followed from the store.
    pub webhooks: crate::admission::webhook::Cache,
}

fn store_err(def: &ResourceDef, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists(_) => ApiError::already_exists(def.target(), name),
        StoreError::NotFound(_) => ApiError::not_found(def.target(), name),
        StoreError::Conflict(_) => ApiError::stale(def.target(), name),
        StoreError::Compacted { requested, oldest } => {
            ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        StoreError::FutureRevision(r) => {
            let mut e = ApiError::timeout(format!("Too large resource version: {r}"));
            e.retry_after = Some(1);
            e
        }
        StoreError::Closed => ApiError::service_unavailable("the server is shutting down"),
        StoreError::Backend(m) => ApiError::internal(m),
    }
}

/// Random suffix for generateName, from upstream's alphabet (no vowels, no
/// look-alike digits, so generated names never spell words).
fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An update's body names the object on the URL, or no object (400 otherwise,
/// upstream's text).
pub(crate) fn check_url_name(obj: &Value, name: &str) -> Result<(), ApiError> {
    let body_name = name_of(obj);
    if body_name.is_empty() || body_name == name {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "the name of the object ({body_name}) does not match the name on the URL ({name})"
    )))
}

/// The name of an object (empty when absent).
pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// Labels as a map, for selector matching.
pub fn labels_of(obj: &Value) -> std::collections::BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything but metadata and status: what a spec change means for generation.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// Continue tokens carry the revision and the last key, base64 JSON as upstream.
fn encode_continue(rev: Revision, last_key: &str) -> String {
    use base64::Engine;
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": last_key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request("continue key is not valid: the continue token could not be decoded")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rev, start.to_string()))
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, catalogue: Arc<Catalogue>, settings: Settings) -> Self {
        Registry {
            store,
            catalogue,
            settings,
            webhooks: Default::default(),
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: self.store.as_ref(),
            service_cidr: &self.settings.service_cidr,
            cluster_cidr: &self.settings.cluster_cidr,
            node_port_range: self.settings.node_port_range,
        }
    }

    /// Stored bytes -> served object, with resourceVersion, apiVersion and kind.
    pub fn decode(&self, def: &ResourceDef, kv: &KeyValue) -> Result<Value, ApiError> {
        let mut obj: Value = serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
        if let Some(c) = &def.conversion {
            obj = c.to_served(obj);
        }
        obj["apiVersion"] = json!(def.api_version());
        obj["kind"] = json!(def.kind);
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        Ok(obj)
    }

    /// Only apiVersion, kind and metadata of a stored object: serde skips the
    /// rest without building it.
    pub fn decode_metadata(&self, def: &ResourceDef, kv: &KeyValue) -> Result<Value, ApiError> {
        if def.conversion.is_some() {
            return self.decode(def, kv);
        }
        #[derive(serde::Deserialize)]
        struct MetadataOnly {
            #[serde(default)]
            metadata: Value,
        }
        let m: MetadataOnly = serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
        let mut obj = json!({
            "apiVersion": def.api_version(),
            "kind": def.kind,
            "metadata": m.metadata,
        });
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        Ok(obj)
    }

    /// Served object -> stored bytes (no resourceVersion: the revision is it).
    fn encode(&self, def: &ResourceDef, obj: &Value) -> Result<Bytes, ApiError> {
        let mut o = obj.clone();
        if let Some(m) = o.pointer_mut("/metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        if let Some(c) = &def.conversion {
            o = c.to_storage(o);
        }
        serde_json::to_vec(&o)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Like `encode`, without copying the object: its resourceVersion is
    /// dropped here and set again by `written`.
    fn encode_in_place(&self, def: &ResourceDef, obj: &mut Value) -> Result<Bytes, ApiError> {
        if def.conversion.is_some() {
            return self.encode(def, obj);
        }
        if let Some(m) = obj.pointer_mut("/metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        serde_json::to_vec(obj)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// The served form of an object just written as `kv`: the object itself
    /// with its new resourceVersion, rather than a second decode of the
    /// bytes (a write's CPU is mostly JSON). Converted kinds decode, since
    /// the stored form may differ.
    fn written(&self, def: &ResourceDef, mut obj: Value, kv: &KeyValue) -> Result<Value, ApiError> {
        if def.conversion.is_some() {
            return self.decode(def, kv);
        }
        obj["apiVersion"] = json!(def.api_version());
        obj["kind"] = json!(def.kind);
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        Ok(obj)
    }

    fn namespace_def(&self) -> Option<Arc<ResourceDef>> {
        self.catalogue.get("", "v1", "namespaces")
    }

    /// NamespaceLifecycle's core: no creates in missing or terminating namespaces.
    async fn check_namespace(&self, ns: &str) -> Result<(), ApiError> {
        let Some(nsdef) = self.namespace_def() else {
            return Ok(());
        };
        let kv = self
            .store
            .get(&nsdef.key(None, ns), None)
            .await
            .map_err(|e| store_err(&nsdef, ns, e))?;
        let Some(kv) = kv else {
            return Err(ApiError::not_found(nsdef.target(), ns));
        };
        let obj = self.decode(&nsdef, &kv)?;
        if obj
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            let mut e = ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ));
            e.details = Some(
                json!({"name": ns, "kind": "namespaces", "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}),
            );
            return Err(e);
        }
        Ok(())
    }

    pub async fn get(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        at: ReadAt,
    ) -> Result<Value, ApiError> {
        let rev = match at {
            ReadAt::Exact(r) => Some(r),
            ReadAt::NotOlderThan(r) if r > self.store.current_revision() => {
                return Err(store_err(def, name, StoreError::FutureRevision(r)));
            }
            _ => None,
        };
        let kv = self
            .store
            .get(&def.key(ns, name), rev)
            .await
            .map_err(|e| store_err(def, name, e))?;
        match kv {
            Some(kv) => self.decode(def, &kv),
            None => Err(ApiError::not_found(def.target(), name)),
        }
    }

    /// The value of a field for field selectors: generic ones, then the strategy's.
    pub fn field_value(def: &ResourceDef, obj: &Value, field: &str) -> Option<String> {
        match field {
            "metadata.name" => Some(name_of(obj).to_string()),
            "metadata.namespace" if def.namespaced => Some(
                obj.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ),
            _ => def.strategy.field_value(obj, field),
        }
    }

    /// Reject field selectors naming fields the kind does not support, as upstream.
    pub fn check_field_selector(def: &ResourceDef, fs: &FieldSelector) -> Result<(), ApiError> {
        for r in &fs.requirements {
            let generic =
                r.field == "metadata.name" || (def.namespaced && r.field == "metadata.namespace");
            if !generic && !def.strategy.supports_field(&r.field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    r.field
                )));
            }
        }
        Ok(())
    }

    pub fn matches(
        def: &ResourceDef,
        obj: &Value,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> bool {
        (labels.is_empty() || labels.matches(&labels_of(obj)))
            && (fields.is_empty() || fields.matches(|f| Self::field_value(def, obj, f)))
    }

    pub async fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        q: &ListQuery,
    ) -> Result<ListPage, ApiError> {
        Self::check_field_selector(def, &q.fields)?;
        let prefix = def.list_prefix(ns);
        let (revision, start_after) = match &q.continue_token {
            Some(t) => {
                let (rev, start) = decode_continue(t)?;
                (Some(rev), Some(start))
            }
            None => match q.read_at {
                ReadAt::Exact(r) => (Some(r), None),
                ReadAt::NotOlderThan(r) if r > self.store.current_revision() => {
                    return Err(store_err(def, "", StoreError::FutureRevision(r)));
                }
                _ => (None, None),
            },
        };
        let filtering = !q.labels.is_empty() || !q.fields.is_empty();
        let opts = ListOptions {
            revision,
            start_after: start_after.clone(),
            // Without selectors the store can stop at the page size.
            limit: if filtering {
                None
            } else {
                q.limit.map(|l| l + 1)
            },
        };
        let res = self.store.list(&prefix, opts).await.map_err(|e| match e {
            StoreError::Compacted { .. } if q.continue_token.is_some() => ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ),
            e => store_err(def, "", e),
        })?;
        let mut items = Vec::new();
        let mut last_key = None;
        let mut more = false;
        let mut remaining = None;
        for (i, kv) in res.items.iter().enumerate() {
            // A namespace-less list of a namespaced kind must not match a
            // longer namespace that shares a prefix: keys end in /name.
            let obj = self.decode(def, kv)?;
            if !Self::matches(def, &obj, &q.labels, &q.fields) {
                continue;
            }
            if let Some(limit) = q.limit
                && items.len() == limit
            {
                more = true;
                if !filtering {
                    remaining = Some(res.items.len() - i + res.remaining);
                }
                break;
            }
            last_key = Some(kv.key.clone());
            items.push(obj);
        }
        let continue_token = if more {
            last_key.map(|k| encode_continue(res.revision, &k))
        } else {
            None
        };
        Ok(ListPage {
            items,
            revision: res.revision,
            continue_token,
            remaining,
        })
    }

    /// Decode-time checks shared by create and update: body kind/apiVersion
    /// against the URL, namespace agreement.
    fn check_body(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON or YAML object",
            ));
        }
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if kind.is_empty() {
            obj["kind"] = json!(def.kind);
        } else if kind != def.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                def.kind
            )));
        }
        if api_version.is_empty() {
            obj["apiVersion"] = json!(def.api_version());
        } else if api_version != def.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                def.api_version()
            )));
        }
        let meta = meta_mut(obj);
        if def.namespaced {
            let url_ns = ns.unwrap_or("");
            match meta.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        Ok(())
    }

    fn validate_common(def: &ResourceDef, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = name_of(obj);
        for msg in validate_name(def.strategy.name_rule(), name) {
            errs.push(FieldError::invalid("metadata.name", name, msg));
        }
        errs.extend(super::strategy::kinds::validate_object_meta(obj));
        errs
    }

    pub async fn create(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_body(def, ns, &mut obj)?;
        let requested_name = name_of(&obj).to_string();
        let generate = obj
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if requested_name.is_empty() && generate.is_empty() {
            let mut e = FieldError::required("metadata.name");
            e.message = "Required value: name or generateName is required".into();
            return Err(ApiError::invalid(def.target(), "", &[e]));
        }
        if let Err(e) = def.strategy.check_typed(&obj) {
            return Err(ApiError::invalid(def.target(), &requested_name, &[e]));
        }
        def.strategy.default(&mut obj);
        {
            // System fields are the server's (upstream wipes them on decode).
            let meta = meta_mut(&mut obj);
            for f in [
                "uid",
                "creationTimestamp",
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                meta.remove(f);
            }
        }
        // As upstream: managedFields are recorded before mutating admission
        // (whose changes nobody owns), and mutating admission sees the
        // object as sent, defaulted: no name generated yet, no uid.
        if !opts.managed_fields_set {
            let manager = opts.field_manager.as_deref().unwrap_or("");
            crate::patch::managedfields::track_update(def, None, &mut obj, manager, None);
        }
        // ---- admission: LimitRanger defaults (mutating) ----
        let limits =
            crate::admission::limitranger::mutate(self, def, ns, &mut obj, false, None).await?;
        let admit = crate::admission::webhook::Attributes::create(def, ns, &requested_name, opts);
        crate::admission::webhook::mutate(self, &admit, &mut obj).await?;
        // generateName: upstream appends 5 random characters.
        if requested_name.is_empty() {
            meta_mut(&mut obj).insert(
                "name".into(),
                json!(format!("{generate}{}", random_suffix(5))),
            );
        }
        let name = name_of(&obj).to_string();
        {
            let meta = meta_mut(&mut obj);
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            if has_generation(def) {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        def.strategy.prepare_create(&mut obj);
        // Validating webhooks see the generated name.
        let admit = crate::admission::webhook::Attributes::create(def, ns, &name, opts);
        let mut errs = Self::validate_common(def, &obj);
        errs.extend(def.strategy.validate(&obj));
        errs.extend(def.strategy.validate_create(&obj));
        if !errs.is_empty() {
            return Err(ApiError::invalid(def.target(), &name, &errs));
        }
        crate::admission::limitranger::validate(def, &obj, limits.as_ref())?;
        crate::admission::podsecurity::admit(self, def, ns, &obj, None, None).await?;
        crate::admission::webhook::validate(self, &admit, Some(&obj)).await?;
        if def.namespaced {
            self.check_namespace(ns.unwrap_or("")).await?;
        }
        // ---- admission: ResourceQuota (held until the object is stored) ----
        let _quota = crate::admission::admit_quota(self, def, ns, &obj, None, None, opts).await?;
        let key = def.key(ns, &name);
        if opts.dry_run {
            // Report a conflict a real create would hit, but allocate nothing.
            if self
                .store
                .get(&key, None)
                .await
                .map_err(|e| store_err(def, &name, e))?
                .is_some()
            {
                return Err(ApiError::already_exists(def.target(), &name));
            }
            return Ok(obj);
        }
        // An existing name is a 409, whatever allocation would have said.
        if self
            .store
            .get(&key, None)
            .await
            .map_err(|e| store_err(def, &name, e))?
            .is_some()
        {
            return Err(ApiError::already_exists(def.target(), &name));
        }
        def.strategy.allocate(&self.ctx(), &mut obj).await?;
        let bytes = self.encode_in_place(def, &mut obj)?;
        let kv = self
            .store
            .create(&key, bytes)
            .await
            .map_err(|e| store_err(def, &name, e))?;
        self.written(def, obj, &kv)
    }

    /// PUT of the main resource or of a subresource (`status`).
    pub async fn update(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_body(def, ns, &mut obj)?;
        check_url_name(&obj, name)?;
        if name_of(&obj).is_empty() {
            meta_mut(&mut obj).insert("name".into(), json!(name));
        }
        let key = def.key(ns, name);
        let cur = self
            .store
            .get(&key, None)
            .await
            .map_err(|e| store_err(def, name, e))?;
        let Some(cur) = cur else {
            return Err(ApiError::not_found(def.target(), name));
        };
        let old = self.decode(def, &cur)?;
        // Optimistic concurrency: a resourceVersion in the body must be current.
        match obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            Some(rv) if !rv.is_empty() => {
                let rv: Revision = rv.parse().map_err(|_| {
                    ApiError::invalid(
                        def.target(),
                        name,
                        &[FieldError::invalid(
                            "metadata.resourceVersion",
                            rv,
                            "must be a number",
                        )],
                    )
                })?;
                if rv != cur.mod_revision {
                    return Err(ApiError::stale(def.target(), name));
                }
            }
            _ => {}
        }
        let mut new = match subresource {
            // Status writes change only status.
            Some("status") => {
                let mut n = old.clone();
                n["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
                if n["status"].is_null() {
                    n.as_object_mut().map(|m| m.remove("status"));
                }
                n
            }
            Some(other) => {
                return Err(ApiError::not_found_path().with_message(format!(
                    "the server could not find the requested resource ({other})"
                )));
            }
            None => {
                let mut n = obj;
                // Writes to the main resource never change status.
                if def.has_subresource("status") {
                    match old.get("status") {
                        Some(s) => n["status"] = s.clone(),
                        None => {
                            n.as_object_mut().map(|m| m.remove("status"));
                        }
                    }
                }
                n
            }
        };
        // System fields come from the stored object.
        {
            let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
            let meta = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(f) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            meta.insert(
                "resourceVersion".into(),
                json!(cur.mod_revision.to_string()),
            );
        }
        if let Err(e) = def.strategy.check_typed(&new) {
            return Err(ApiError::invalid(def.target(), name, &[e]));
        }
        def.strategy.default(&mut new);
        if subresource.is_none() {
            def.strategy.prepare_update(&mut new, &old);
        }
        // managedFields before mutating admission, whose changes nobody
        // owns (upstream's order).
        if !opts.managed_fields_set {
            let manager = opts.field_manager.as_deref().unwrap_or("");
            crate::patch::managedfields::track_update(
                def,
                Some(&old),
                &mut new,
                manager,
                subresource.or(opts.managed_subresource),
            );
        }
        let limits =
            crate::admission::limitranger::mutate(self, def, ns, &mut new, true, subresource)
                .await?;
        let admit =
            crate::admission::webhook::Attributes::update(def, ns, name, subresource, &old, opts);
        crate::admission::webhook::mutate(self, &admit, &mut new).await?;
        // After mutating admission, so a webhook's spec change counts too.
        if has_generation(def) && spec_part(&new) != spec_part(&old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        let mut errs = Self::validate_common(def, &new);
        errs.extend(def.strategy.validate(&new));
        errs.extend(def.strategy.validate_update(&new, &old));
        if !errs.is_empty() {
            return Err(ApiError::invalid(def.target(), name, &errs));
        }
        crate::admission::limitranger::validate(def, &new, limits.as_ref())?;
        crate::admission::podsecurity::admit(self, def, ns, &new, Some(&old), subresource).await?;
        crate::admission::webhook::validate(self, &admit, Some(&new)).await?;
        if new == old {
            // A no-op update writes nothing and keeps the resourceVersion.
            return Ok(old);
        }
        // ---- admission: ResourceQuota (held until the object is stored) ----
        let _quota =
            crate::admission::admit_quota(self, def, ns, &new, Some(&old), subresource, opts)
                .await?;
        if opts.dry_run {
            return Ok(new);
        }
        def.strategy
            .allocate_update(&self.ctx(), &mut new, &old)
            .await?;
        // An object being deleted goes once its last finalizer is removed.
        if Self::finalizers(&old) > 0 && Self::deletion_ready(&new) {
            let kv = self
                .store
                .delete(&key, cur.mod_revision)
                .await
                .map_err(|e| store_err(def, name, e))?;
            return self.decode(def, &kv);
        }
        let bytes = self.encode_in_place(def, &mut new)?;
        let kv = self
            .store
            .update(&key, cur.mod_revision, bytes)
            .await
            .map_err(|e| store_err(def, name, e))?;
        self.written(def, new, &kv)
    }

    fn finalizers(obj: &Value) -> usize {
        obj.pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0)
    }

    fn deletion_ready(obj: &Value) -> bool {
        obj.pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
            && Self::finalizers(obj) == 0
            && obj.get("kind").and_then(Value::as_str) != Some("Namespace")
    }

    /// Delete: immediate unless finalizers hold the object, in which case it
    /// gets a deletionTimestamp and stays until they are removed. Returns the
    /// object as it is after the call and whether it is gone.
    pub async fn delete(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(Value, bool), ApiError> {
        crate::admission::namespacelifecycle::admit_delete(def, name)?;
        let key = def.key(ns, name);
        loop {
            let cur = self
                .store
                .get(&key, None)
                .await
                .map_err(|e| store_err(def, name, e))?;
            let Some(cur) = cur else {
                return Err(ApiError::not_found(def.target(), name));
            };
            let obj = self.decode(def, &cur)?;
            if let Some(uid) = &opts.precondition_uid {
                let have = obj
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if have != uid {
                    return Err(ApiError::conflict(
                        def.target(),
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                        ),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_rv {
                let have = cur.mod_revision.to_string();
                if *rv != have {
                    return Err(ApiError::conflict(
                        def.target(),
                        name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"
                        ),
                    ));
                }
            }
            let admit = crate::admission::webhook::Attributes::delete(def, ns, name, &obj, opts);
            crate::admission::webhook::admit_delete(self, &admit).await?;
            let namespace_pending = def.kind == "Namespace"
                && obj
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
            // Orphan and Foreground deletion hand the object to the garbage
            // collector through upstream's finalizers.
            let gc_finalizer = match opts.propagation_policy.as_deref() {
                Some("Orphan") => Some("orphan"),
                Some("Foreground") => Some("foregroundDeletion"),
                _ => None,
            };
            let stored = obj.clone();
            let mut obj = obj;
            // The two are exclusive; an explicit Background drops both.
            if opts.propagation_policy.is_some() {
                let list = meta_mut(&mut obj)
                    .entry("finalizers")
                    .or_insert_with(|| json!([]));
                if let Some(arr) = list.as_array_mut() {
                    arr.retain(|x| x != "orphan" && x != "foregroundDeletion");
                    if let Some(f) = gc_finalizer {
                        arr.push(json!(f));
                    }
                    if arr.is_empty() {
                        meta_mut(&mut obj).remove("finalizers");
                    }
                }
            }
            if obj
                .pointer("/metadata/deletionTimestamp")
                .is_none_or(Value::is_null)
            {
                def.strategy.prepare_delete(&mut obj);
            }
            let already = obj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null());
            let current_grace = obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            // A graceful delete, or a later one shortening the grace period.
            let grace = def
                .strategy
                .graceful_delete(&obj, opts.grace_period_seconds)
                .filter(|g| !already || current_grace.is_some_and(|c| *g < c));
            let pending_grace = already
                && current_grace.is_some_and(|c| c > 0)
                && opts.grace_period_seconds != Some(0);
            if Self::finalizers(&obj) > 0 || namespace_pending || grace.is_some() || pending_grace {
                // Graceful: mark and leave it to the finalizers' owners or the node.
                if already && obj == stored && grace.is_none() {
                    return Ok((obj, false));
                }
                let mut new = obj.clone();
                if !already || grace.is_some() {
                    let g = grace.unwrap_or(0);
                    let at = jiff::Timestamp::now()
                        .checked_add(jiff::SignedDuration::from_secs(g))
                        .unwrap_or_else(|_| jiff::Timestamp::now());
                    let meta = meta_mut(&mut new);
                    meta.insert(
                        "deletionTimestamp".into(),
                        json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    );
                    meta.insert("deletionGracePeriodSeconds".into(), json!(g));
                }
                if new == stored {
                    // Already being deleted with that finalizer: nothing to write.
                    return Ok((new, false));
                }
                if namespace_pending {
                    new["status"]["phase"] = json!("Terminating");
                }
                if opts.dry_run {
                    return Ok((new, false));
                }
                let bytes = self.encode(def, &new)?;
                match self.store.update(&key, cur.mod_revision, bytes).await {
                    Ok(kv) => return Ok((self.decode(def, &kv)?, false)),
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(store_err(def, name, e)),
                }
            }
            if opts.dry_run {
                return Ok((obj, true));
            }
            match self.store.delete(&key, cur.mod_revision).await {
                Ok(kv) => return Ok((self.decode(def, &kv)?, true)),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(store_err(def, name, e)),
            }
        }
    }

    /// PUT namespaces/NAME/finalize: replaces spec.finalizers; a terminating
    /// namespace with none left is removed.
    pub async fn finalize_namespace(
        &self,
        def: &ResourceDef,
        name: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let key = def.key(None, name);
        loop {
            let Some(cur) = self
                .store
                .get(&key, None)
                .await
                .map_err(|e| store_err(def, name, e))?
            else {
                return Err(ApiError::not_found(def.target(), name));
            };
            let mut obj = self.decode(def, &cur)?;
            let finalizers = body
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            obj["spec"]["finalizers"] = finalizers.clone();
            if opts.dry_run {
                return Ok(obj);
            }
            let terminating = obj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null());
            let empty = finalizers.as_array().is_none_or(Vec::is_empty);
            let res = if terminating && empty && Self::finalizers(&obj) == 0 {
                self.store.delete(&key, cur.mod_revision).await
            } else {
                let bytes = self.encode(def, &obj)?;
                self.store.update(&key, cur.mod_revision, bytes).await
            };
            match res {
                Ok(kv) => return self.decode(def, &kv),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(store_err(def, name, e)),
            }
        }
    }

    /// The autoscaling/v1 Scale of a scalable object (the scale subresource).
    pub fn scale_of(def: &ResourceDef, obj: &Value) -> Value {
        if let Some(cr) = def.strategy.custom_resource() {
            return super::crd::scale_of(cr, obj);
        }
        let selector = match obj.pointer("/spec/selector") {
            // ReplicationControllers select with a plain map.
            Some(Value::Object(m)) if def.kind == "ReplicationController" => {
                let mut pairs: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect();
                pairs.sort();
                pairs.join(",")
            }
            Some(sel) => LabelSelector::from_label_selector_json(sel)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            None => String::new(),
        };
        let meta = &obj["metadata"];
        json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                         "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
            "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
            "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
        })
    }

    /// PUT of the scale subresource: sets spec.replicas of the parent.
    pub async fn update_scale(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        scale: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let scale_target = crate::api::status::Target {
            group: "autoscaling",
            resource: "scale",
            kind: "Scale",
        };
        // As for any update, the body names the object on the URL.
        check_url_name(scale, name)?;
        let Some(replicas) = scale.pointer("/spec/replicas").and_then(Value::as_i64) else {
            return Err(ApiError::invalid(
                scale_target,
                name,
                &[FieldError::required("spec.replicas")],
            ));
        };
        if replicas < 0 || replicas > i64::from(i32::MAX) {
            return Err(ApiError::invalid(
                scale_target,
                name,
                &[FieldError::invalid_raw(
                    "spec.replicas",
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut obj = self.get(def, ns, name, ReadAt::Latest).await?;
        if let Some(rv) = scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            && Some(rv)
                != obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::stale(def.target(), name));
        }
        let replicas =
            crate::admission::webhook::admit_scale(self, def, ns, name, &obj, replicas, opts)
                .await?;
        match def.strategy.custom_resource() {
            Some(cr) => super::crd::set_replicas(cr, &mut obj, replicas),
            None => obj["spec"]["replicas"] = json!(replicas),
        }
        let opts = WriteOptions {
            webhooks_done: true,
            managed_subresource: Some("scale"),
            ..opts.clone()
        };
        let updated = self.update(def, ns, name, obj, None, &opts).await?;
        Ok(Self::scale_of(def, &updated))
    }

    /// POST pods/NAME/binding: assign a pod to a node, once.
    pub async fn bind_pod(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        binding: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if node.is_empty() {
            return Err(ApiError::invalid(
                crate::api::status::Target {
                    group: "",
                    resource: "bindings",
                    kind: "Binding",
                },
                name,
                &[FieldError::required("target.name")],
            ));
        }
        let key = def.key(ns, name);
        loop {
            let Some(cur) = self
                .store
                .get(&key, None)
                .await
                .map_err(|e| store_err(def, name, e))?
            else {
                return Err(ApiError::not_found(def.target(), name));
            };
            let mut pod = self.decode(def, &cur)?;
            if let Some(uid) = binding.pointer("/metadata/uid").and_then(Value::as_str)
                && pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
            {
                return Err(ApiError::conflict(
                    def.target(),
                    name,
                    "Precondition failed: UID mismatch",
                ));
            }
            if pod
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                return Err(ApiError::conflict(
                    def.target(),
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => {
                    return Err(ApiError::conflict(
                        def.target(),
                        name,
                        &format!("pod {name} is already assigned to node \"{n}\""),
                    ));
                }
                _ => {}
            }
            pod["spec"]["nodeName"] = json!(node);
            // PodScheduled=True, as upstream's binding storage sets it.
            let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                              "lastTransitionTime": now_rfc3339()});
            let conds = pod["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut conds: Vec<Value> = conds
                .into_iter()
                .filter(|c| c["type"] != "PodScheduled")
                .collect();
            conds.push(cond);
            pod["status"]["conditions"] = Value::Array(conds);
            if opts.dry_run {
                return Ok(pod);
            }
            let bytes = self.encode(def, &pod)?;
            match self.store.update(&key, cur.mod_revision, bytes).await {
                Ok(_) => {
                    return Ok(
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                    );
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(store_err(def, name, e)),
            }
        }
    }

    /// Delete every object a list query selects; returns the deleted ones.
    pub async fn delete_collection(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        q: &ListQuery,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>, ApiError> {
        let page = self
            .list(
                def,
                ns,
                &ListQuery {
                    limit: None,
                    continue_token: None,
                    ..q.clone()
                },
            )
            .await?;
        let mut out = Vec::new();
        for obj in page.items {
            let item_ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            match self
                .delete(def, item_ns.as_deref().or(ns), name_of(&obj), opts)
                .await
            {
                Ok((o, _)) => out.push(o),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Watch objects of `def` in `ns` after revision `after` (0 = from now),
    /// translating store events into API events, with selector transitions
    /// turned into ADDED/DELETED as upstream's watch cache does.
    pub fn watch(
        self: &Arc<Self>,
        def: Arc<ResourceDef>,
        ns: Option<String>,
        labels: LabelSelector,
        fields: FieldSelector,
        after: Revision,
        metadata_only: bool,
    ) -> Result<impl futures::Stream<Item = Result<WatchEvent, ApiError>> + Send + 'static, ApiError>
    {
        use futures::StreamExt;
        Self::check_field_selector(&def, &fields)?;
        let prefix = def.list_prefix(ns.as_deref());
        let stream: EventStream = self
            .store
            .watch(&prefix, after)
            .map_err(|e| store_err(&def, "", e))?;
        let me = self.clone();
        Ok(stream.filter_map(move |ev| {
            let out = match ev {
                Err(e) => Some(Err(store_err(&def, "", e))),
                Ok(ev) => me
                    .translate(&def, &labels, &fields, ev, metadata_only)
                    .transpose(),
            };
            futures::future::ready(out)
        }))
    }

    /// Whether a field selector names only fields the store key holds.
    fn key_decides(def: &ResourceDef, fields: &FieldSelector) -> bool {
        fields.requirements.iter().all(|r| {
            r.field == "metadata.name" || (def.namespaced && r.field == "metadata.namespace")
        })
    }

    /// Evaluate a name/namespace-only field selector on a store key
    /// (`<prefix><ns>/<name>` or `<prefix><name>`).
    fn key_matches(def: &ResourceDef, key: &str, fields: &FieldSelector) -> bool {
        let Some(rest) = key.strip_prefix(def.storage_prefix.as_str()) else {
            return false;
        };
        let (ns, name) = if def.namespaced {
            rest.split_once('/').unwrap_or(("", rest))
        } else {
            ("", rest)
        };
        fields.matches(|f| match f {
            "metadata.name" => Some(name.to_string()),
            "metadata.namespace" => Some(ns.to_string()),
            _ => None,
        })
    }

    fn translate(
        &self,
        def: &ResourceDef,
        labels: &LabelSelector,
        fields: &FieldSelector,
        ev: crate::store::Event,
        metadata_only: bool,
    ) -> Result<Option<WatchEvent>, ApiError> {
        let revision = ev.revision();
        // Selectors on name and namespace alone are decided by the key, so
        // watchers like the root-CA publisher's skip every other object
        // without decoding it: each write's cost must not grow with watchers.
        let by_key = labels.is_empty() && Self::key_decides(def, fields);
        if by_key && !Self::key_matches(def, &ev.kv.key, fields) {
            return Ok(None);
        }
        // Metadata-only watchers (the garbage collector watches every kind)
        // need not build the rest of the object when no selector looks at it.
        let metadata_will_do = metadata_only && Self::key_decides(def, fields);
        let obj = if metadata_will_do {
            self.decode_metadata(def, &ev.kv)?
        } else {
            self.decode(def, &ev.kv)?
        };
        let unselective = by_key || (labels.is_empty() && fields.is_empty());
        let now = unselective || Self::matches(def, &obj, labels, fields);
        let before = match &ev.prev {
            // The key never changes, so it matched before as it does now.
            Some(_) if ev.kind == EventKind::Updated && unselective => now,
            Some(p) if ev.kind == EventKind::Updated => {
                let prev = if metadata_will_do {
                    self.decode_metadata(def, p)?
                } else {
                    self.decode(def, p)?
                };
                Self::matches(def, &prev, labels, fields)
            }
            _ => false,
        };
        let kind = match ev.kind {
            EventKind::Created if now => "ADDED",
            EventKind::Deleted if now => "DELETED",
            EventKind::Updated if now && before => "MODIFIED",
            EventKind::Updated if now => "ADDED",
            EventKind::Updated if before => "DELETED",
            _ => return Ok(None),
        };
        Ok(Some(WatchEvent {
            kind,
            object: obj,
            revision,
        }))
    }
}

impl ApiError {
    pub fn with_message(mut self, m: String) -> Self {
        self.message = m;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::catalogue;

    fn def(plural: &str) -> ResourceDef {
        catalogue::builtin()
            .into_iter()
            .find(|d| d.plural == plural && d.group.is_empty())
            .expect("built-in kind")
    }

    #[test]
    fn name_and_namespace_selectors_are_decided_by_the_key() {
        let cms = def("configmaps");
        let key = cms.key(Some("team-a"), "kube-root-ca.crt");
        let sel = |s: &str| FieldSelector::parse(s).expect("selector");
        assert!(Registry::key_decides(
            &cms,
            &sel("metadata.name=kube-root-ca.crt")
        ));
        assert!(Registry::key_matches(
            &cms,
            &key,
            &sel("metadata.name=kube-root-ca.crt")
        ));
        assert!(!Registry::key_matches(
            &cms,
            &key,
            &sel("metadata.name=other")
        ));
        assert!(Registry::key_matches(
            &cms,
            &key,
            &sel("metadata.namespace=team-a")
        ));
        assert!(!Registry::key_matches(
            &cms,
            &key,
            &sel("metadata.namespace!=team-a")
        ));
        assert!(Registry::key_matches(
            &cms,
            &key,
            &sel("metadata.namespace=team-a,metadata.name!=x")
        ));
        // A name with a dot or a namespace-looking part is still split at the first slash.
        let nss = def("namespaces");
        assert!(Registry::key_matches(
            &nss,
            &nss.key(None, "team-a"),
            &sel("metadata.name=team-a")
        ));
        // Other fields need the object.
        let pods = def("pods");
        assert!(!Registry::key_decides(&pods, &sel("spec.nodeName=n1")));
    }
}
