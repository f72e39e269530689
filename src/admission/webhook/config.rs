//! The webhook configurations, kept in memory from a watch on the store so
//! that a write never lists them: with none configured the check is one
//! atomic load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::api::selectors::LabelSelector;
use crate::registry::generic::Registry;
use crate::store::{EventKind, ListOptions, Store, StoreError};

const GROUP: &str = "admissionregistration.k8s.io";

/// One rule of a webhook (RuleWithOperations).
#[derive(Clone, Debug, Default)]
pub struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    pub scope: String,
}

/// Where a webhook is reached.
#[derive(Clone, Debug)]
pub enum ClientTarget {
    Url(String),
    Service {
        namespace: String,
        name: String,
        path: String,
        port: u16,
    },
}

/// One webhook of a configuration, parsed once per configuration change.
#[derive(Debug)]
pub struct Hook {
    pub configuration: String,
    pub name: String,
    pub rules: Vec<Rule>,
    pub failure_policy_ignore: bool,
    pub match_policy_exact: bool,
    pub namespace_selector: LabelSelector,
    pub object_selector: LabelSelector,
    pub side_effects: String,
    pub timeout: Duration,
    pub reinvoke_if_needed: bool,
    pub client: ClientTarget,
    /// The TLS client trusting the webhook's caBundle, or why there is none.
    pub tls: Result<Arc<rustls::ClientConfig>, String>,
    /// matchConditions: name and compiled CEL expression (or why it
    /// does not compile).
    pub match_conditions: Vec<(String, Result<crate::cel::Program, String>)>,
}

/// The variables a match condition may use (`authorizer` is not offered).
pub const MATCH_CONDITION_VARIABLES: &[&str] = &["object", "oldObject", "request"];

/// Every webhook, mutating and validating, in calling order.
#[derive(Debug, Default)]
pub struct Hooks {
    pub mutating: Vec<Arc<Hook>>,
    pub validating: Vec<Arc<Hook>>,
}

#[derive(Default)]
struct Inner {
    /// True while no configuration holds a webhook: the write path's
    /// whole cost then.
    empty: AtomicBool,
    hooks: parking_lot::RwLock<Arc<Hooks>>,
}

/// The cache, one per registry; filled on first use.
#[derive(Default)]
pub struct Cache {
    started: tokio::sync::OnceCell<()>,
    inner: Arc<Inner>,
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// The system's trust roots, read once (a webhook without caBundle is
/// verified against them, as upstream's client falls back to the system
/// pool). Certificates that do not parse are skipped.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!("webhook client: system trust roots: {e}");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (_added, _skipped) = roots.add_parsable_certificates(found.certs);
            Arc::new(roots)
        })
        .clone()
}

/// A rustls client trusting exactly the PEM certificates of `ca_bundle`
/// (base64 of PEM in JSON, as the API's []byte fields are), or the system
/// roots without one.
pub fn tls_client(ca_bundle: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    use base64::Engine;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if ca_bundle.is_none_or(str::is_empty) {
        roots = (*system_roots()).clone();
    }
    if let Some(b64) = ca_bundle.filter(|b| !b.is_empty()) {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("invalid caBundle: {e}"))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("invalid caBundle: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("invalid caBundle: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Parse one webhook of configuration `configuration`; None for a webhook
/// that names no place to call (validation refuses those).
pub fn parse_hook(configuration: &str, wh: &Value) -> Option<Hook> {
    let cc = wh.get("clientConfig")?;
    let client = if let Some(url) = cc.get("url").and_then(Value::as_str) {
        ClientTarget::Url(url.to_string())
    } else {
        let svc = cc.get("service")?;
        ClientTarget::Service {
            namespace: str_of(svc, "namespace").to_string(),
            name: str_of(svc, "name").to_string(),
            path: str_of(svc, "path").to_string(),
            port: svc
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(443),
        }
    };
    let selector = |field: &str| match wh.get(field) {
        Some(v) if !v.is_null() => {
            LabelSelector::from_label_selector_json(v).unwrap_or_else(|_| LabelSelector::nothing())
        }
        _ => LabelSelector::default(),
    };
    let rules = wh
        .get("rules")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .map(|r| Rule {
                    operations: strings(r, "operations"),
                    api_groups: strings(r, "apiGroups"),
                    api_versions: strings(r, "apiVersions"),
                    resources: strings(r, "resources"),
                    scope: match str_of(r, "scope") {
                        "" => "*".to_string(),
                        s => s.to_string(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let timeout = wh
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .clamp(1, 30);
    Some(Hook {
        configuration: configuration.to_string(),
        name: str_of(wh, "name").to_string(),
        rules,
        failure_policy_ignore: str_of(wh, "failurePolicy") == "Ignore",
        match_policy_exact: str_of(wh, "matchPolicy") == "Exact",
        namespace_selector: selector("namespaceSelector"),
        object_selector: selector("objectSelector"),
        side_effects: str_of(wh, "sideEffects").to_string(),
        timeout: Duration::from_secs(timeout),
        reinvoke_if_needed: str_of(wh, "reinvocationPolicy") == "IfNeeded",
        client,
        tls: tls_client(cc.get("caBundle").and_then(Value::as_str)),
        match_conditions: wh
            .get("matchConditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                let program =
                    crate::cel::compile_with(str_of(c, "expression"), MATCH_CONDITION_VARIABLES)
                        .map_err(|e| e.to_string());
                (str_of(c, "name").to_string(), program)
            })
            .collect(),
    })
}

fn hooks_of(configs: &BTreeMap<String, Value>) -> Vec<Arc<Hook>> {
    let mut out = Vec::new();
    // Keys are the storage prefix plus the name: key order is name order.
    for cfg in configs.values() {
        let name = cfg
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        for wh in cfg
            .get("webhooks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(h) = parse_hook(name, wh) {
                out.push(Arc::new(h));
            }
        }
    }
    out
}

struct Prefixes {
    mutating: String,
    validating: String,
}

#[derive(Default)]
struct Configs {
    mutating: BTreeMap<String, Value>,
    validating: BTreeMap<String, Value>,
}

impl Inner {
    fn publish(&self, c: &Configs) {
        let hooks = Hooks {
            mutating: hooks_of(&c.mutating),
            validating: hooks_of(&c.validating),
        };
        let empty = hooks.mutating.is_empty() && hooks.validating.is_empty();
        *self.hooks.write() = Arc::new(hooks);
        self.empty.store(empty, Ordering::Release);
    }
}

async fn list(
    store: &dyn Store,
    p: &Prefixes,
) -> Result<(Configs, crate::store::Revision), StoreError> {
    let m = store.list(&p.mutating, ListOptions::default()).await?;
    let v = store
        .list(
            &p.validating,
            ListOptions {
                revision: Some(m.revision),
                ..Default::default()
            },
        )
        .await?;
    let decode = |items: Vec<crate::store::KeyValue>| {
        items
            .into_iter()
            .filter_map(|kv| {
                let obj: Value = serde_json::from_slice(&kv.value).ok()?;
                Some((kv.key, obj))
            })
            .collect()
    };
    Ok((
        Configs {
            mutating: decode(m.items),
            validating: decode(v.items),
        },
        m.revision,
    ))
}

/// Follow the configurations until the store closes; relist after a
/// broken watch.
async fn follow(
    inner: Arc<Inner>,
    store: Arc<dyn Store>,
    p: Prefixes,
    mut configs: Option<Configs>,
    mut rev: i64,
) {
    loop {
        let mut c = match configs.take() {
            Some(c) => c,
            None => match list(store.as_ref(), &p).await {
                Ok((c, r)) => {
                    inner.publish(&c);
                    rev = r;
                    c
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!("webhook configurations: list failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let streams = store
            .watch(&p.mutating, rev)
            .and_then(|m| Ok((m, store.watch(&p.validating, rev)?)));
        let (m, v) = match streams {
            Ok(s) => s,
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!("webhook configurations: watch failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut events = futures::stream::select(m, v);
        while let Some(ev) = events.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!("webhook configurations: watch broke: {e}");
                    break;
                }
            };
            let map = if ev.kv.key.starts_with(&p.mutating) {
                &mut c.mutating
            } else {
                &mut c.validating
            };
            match ev.kind {
                EventKind::Deleted => {
                    map.remove(&ev.kv.key);
                }
                EventKind::Created | EventKind::Updated => {
                    if let Ok(obj) = serde_json::from_slice(&ev.kv.value) {
                        map.insert(ev.kv.key.clone(), obj);
                    }
                }
            }
            rev = ev.kv.mod_revision;
            inner.publish(&c);
        }
        // The stream ended or broke: list again (configs is None).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Cache {
    /// The webhooks now configured, or None when there are none. The first
    /// call lists the configurations and starts following them.
    pub async fn current(&self, reg: &Registry) -> Option<Arc<Hooks>> {
        if !self.started.initialized() {
            self.start(reg).await;
        }
        if self.inner.empty.load(Ordering::Acquire) {
            return None;
        }
        Some(self.inner.hooks.read().clone())
    }

    /// True once started and while no webhook is configured.
    pub fn known_empty(&self) -> bool {
        self.started.initialized() && self.inner.empty.load(Ordering::Acquire)
    }

    async fn start(&self, reg: &Registry) {
        self.started
            .get_or_init(|| async {
                let (Some(m), Some(v)) = (
                    reg.catalogue
                        .get(GROUP, "v1", "mutatingwebhookconfigurations"),
                    reg.catalogue
                        .get(GROUP, "v1", "validatingwebhookconfigurations"),
                ) else {
                    self.inner.empty.store(true, Ordering::Release);
                    return;
                };
                let p = Prefixes {
                    mutating: m.storage_prefix.clone(),
                    validating: v.storage_prefix.clone(),
                };
                // List here, so the first write already sees what exists.
                let rev = match list(reg.store.as_ref(), &p).await {
                    Ok((c, rev)) => {
                        self.inner.publish(&c);
                        Some((c, rev))
                    }
                    Err(e) => {
                        tracing::warn!("webhook configurations: list failed: {e}");
                        None
                    }
                };
                let inner = self.inner.clone();
                let store = reg.store.clone();
                tokio::spawn(async move {
                    match rev {
                        Some((c, rev)) => follow(inner, store, p, Some(c), rev).await,
                        None => follow(inner, store, p, None, 0).await,
                    }
                });
            })
            .await;
    }
}

/// `clientConfig.url` checks of webhook configurations, as upstream's
/// ValidateWebhookURL with https forced (the strategy calls this).
pub fn validate_url(url: &str, field: &str) -> Vec<crate::api::status::FieldError> {
    use crate::api::status::FieldError;
    const FORM: &str = "; desired format: https://host[/path]";
    let mut errs = Vec::new();
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("", ""),
    };
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = rest.split('/').next().unwrap_or("");
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if scheme != "https" {
        errs.push(FieldError::invalid(
            field,
            scheme,
            format!("'https' is the only allowed URL scheme{FORM}"),
        ));
    }
    if host.is_empty() {
        errs.push(FieldError::invalid(
            field,
            "",
            format!("host must be specified{FORM}"),
        ));
    }
    if let Some(u) = user {
        errs.push(FieldError::invalid(
            field,
            u,
            "user information is not permitted in the URL",
        ));
    }
    if !fragment.is_empty() {
        errs.push(FieldError::invalid(
            field,
            fragment,
            "fragments are not permitted in the URL",
        ));
    }
    if !query.is_empty() {
        errs.push(FieldError::invalid(
            field,
            query,
            "query parameters are not permitted in the URL",
        ));
    }
    errs
}

/// `matchConditions` checks of a webhook (`path` is `webhooks[i]`): names
/// are unique qualified names, expressions compile against the variables
/// webhooks offer; at most 64.
pub fn validate_match_conditions(wh: &Value, path: &str) -> Vec<crate::api::status::FieldError> {
    use crate::api::status::FieldError;
    let mut errs = Vec::new();
    let Some(conds) = wh.get("matchConditions").and_then(Value::as_array) else {
        return errs;
    };
    let base = format!("{path}.matchConditions");
    if conds.len() > 64 {
        errs.push(FieldError::invalid_raw(
            &base,
            conds.len(),
            "must have at most 64 items",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, c) in conds.iter().enumerate() {
        let p = format!("{base}[{i}]");
        let name = str_of(c, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name")));
        } else {
            for m in crate::api::selectors::qualified_name_errors(name) {
                errs.push(FieldError::invalid(format!("{p}.name"), name, m));
            }
            if !seen.insert(name) {
                errs.push(FieldError::duplicate(format!("{p}.name"), name));
            }
        }
        let expr = str_of(c, "expression");
        if expr.is_empty() {
            errs.push(FieldError::required(format!("{p}.expression")));
        } else if let Err(e) = crate::cel::compile_with(expr, MATCH_CONDITION_VARIABLES) {
            errs.push(FieldError::invalid(
                format!("{p}.expression"),
                expr,
                format!("compilation failed: {e}"),
            ));
        }
    }
    errs
}
