//! The files of configMap, secret, downwardAPI and projected volumes
//! (upstream's MakePayload functions), with their error messages.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount,
    ServiceAccountTokenProjection, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, PostParams};

use super::atomic_writer::{FileProjection, Payload};
use super::downward;
use super::{CachedToken, VolumeManager};

/// The API's default for defaultMode (0644).
const DEFAULT_MODE: i32 = 0o644;

fn mode_of(mode: Option<i32>, default: i32) -> u32 {
    (mode.unwrap_or(default) as u32) & 0o7777
}

fn file(data: impl Into<Vec<u8>>, mode: u32) -> FileProjection {
    FileProjection {
        data: data.into(),
        mode,
    }
}

/// Keys to files: every key, or the `items` mapping. `what` names the
/// source in the missing-key message ("configmap references non-existent
/// config key" / "references non-existent secret key").
fn key_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
    missing_key: &str,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(k.clone(), file(v.clone(), default_mode));
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("{missing_key}: {}", item.key));
                };
                let mode = item
                    .mode
                    .map(|m| (m as u32) & 0o7777)
                    .unwrap_or(default_mode);
                out.insert(item.path.clone(), file(v.clone(), mode));
            }
        }
    }
    Ok(out)
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    data
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    // stringData is write-only in the API, but honour it if present.
    for (k, v) in s.string_data.iter().flatten() {
        data.entry(k.clone())
            .or_insert_with(|| v.clone().into_bytes());
    }
    data
}

impl VolumeManager {
    async fn get_config_map(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name).await.map_err(|e| e.to_string())
    }

    async fn get_secret(&self, ns: &str, name: &str) -> Result<Option<Secret>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name).await.map_err(|e| e.to_string())
    }

    /// The files a content volume holds now.
    pub(super) async fn payload(
        &self,
        pod: &Pod,
        uid: &str,
        v: &Volume,
    ) -> Result<Payload, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(src) = &v.config_map {
            let optional = src.optional.unwrap_or(false);
            let mode = mode_of(src.default_mode, DEFAULT_MODE);
            return match self.get_config_map(ns, &src.name).await? {
                Some(cm) => key_payload(
                    &config_map_data(&cm),
                    src.items.as_ref(),
                    mode,
                    optional,
                    "configmap references non-existent config key",
                ),
                None if optional => Ok(Payload::new()),
                None => Err(format!("configmap \"{}\" not found", src.name)),
            };
        }
        if let Some(src) = &v.secret {
            let name = src.secret_name.clone().unwrap_or_default();
            let optional = src.optional.unwrap_or(false);
            let mode = mode_of(src.default_mode, DEFAULT_MODE);
            return match self.get_secret(ns, &name).await? {
                Some(s) => key_payload(
                    &secret_data(&s),
                    src.items.as_ref(),
                    mode,
                    optional,
                    "references non-existent secret key",
                ),
                None if optional => Ok(Payload::new()),
                None => Err(format!("secret \"{name}\" not found")),
            };
        }
        if let Some(src) = &v.downward_api {
            let mode = mode_of(src.default_mode, DEFAULT_MODE);
            return self
                .downward_payload(pod, src.items.as_deref().unwrap_or(&[]), mode)
                .await;
        }
        if let Some(src) = &v.projected {
            return self.projected_payload(pod, uid, v, src).await;
        }
        Ok(Payload::new())
    }

    async fn downward_payload(
        &self,
        pod: &Pod,
        items: &[DownwardAPIVolumeFile],
        default_mode: u32,
    ) -> Result<Payload, String> {
        let mut out = Payload::new();
        let mut alloc: Option<BTreeMap<String, Quantity>> = None;
        for item in items {
            let mode = item
                .mode
                .map(|m| (m as u32) & 0o7777)
                .unwrap_or(default_mode);
            let value = if let Some(f) = &item.field_ref {
                downward::field_value(pod, &f.field_path).map_err(|e| e.to_string())?
            } else if let Some(r) = &item.resource_field_ref {
                if alloc.is_none() {
                    alloc = Some(self.node_allocatable().await);
                }
                let alloc = alloc.as_ref().map(|a| a as &BTreeMap<_, _>);
                downward::resource_value(pod, r, None, alloc.unwrap_or(&BTreeMap::new()))
                    .map_err(|e| e.to_string())?
            } else {
                continue;
            };
            out.insert(item.path.clone(), file(value, mode));
        }
        Ok(out)
    }

    async fn projected_payload(
        &self,
        pod: &Pod,
        uid: &str,
        v: &Volume,
        src: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    ) -> Result<Payload, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let default_mode = mode_of(src.default_mode, DEFAULT_MODE);
        let mut out = Payload::new();
        // As upstream: every source is tried, the errors aggregated.
        let mut errors: Vec<String> = Vec::new();
        for source in src.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let optional = cm.optional.unwrap_or(false);
                match self.get_config_map(ns, &cm.name).await {
                    Ok(Some(obj)) => match key_payload(
                        &config_map_data(&obj),
                        cm.items.as_ref(),
                        default_mode,
                        optional,
                        "configmap references non-existent config key",
                    ) {
                        Ok(p) => out.extend(p),
                        Err(e) => errors.push(e),
                    },
                    Ok(None) if optional => {}
                    Ok(None) => errors.push(format!("configmap \"{}\" not found", cm.name)),
                    Err(e) => errors.push(e),
                }
            }
            if let Some(s) = &source.secret {
                let optional = s.optional.unwrap_or(false);
                match self.get_secret(ns, &s.name).await {
                    Ok(Some(obj)) => match key_payload(
                        &secret_data(&obj),
                        s.items.as_ref(),
                        default_mode,
                        optional,
                        "references non-existent secret key",
                    ) {
                        Ok(p) => out.extend(p),
                        Err(e) => errors.push(e),
                    },
                    Ok(None) if optional => {}
                    Ok(None) => errors.push(format!("secret \"{}\" not found", s.name)),
                    Err(e) => errors.push(e),
                }
            }
            if let Some(d) = &source.downward_api {
                match self
                    .downward_payload(pod, d.items.as_deref().unwrap_or(&[]), default_mode)
                    .await
                {
                    Ok(p) => out.extend(p),
                    Err(e) => errors.push(e),
                }
            }
            if let Some(t) = &source.service_account_token {
                match self.service_account_token(pod, uid, &v.name, t).await {
                    Ok(token) => {
                        out.insert(t.path.clone(), file(token, default_mode));
                    }
                    Err(e) => errors.push(e),
                }
            }
            if source.cluster_trust_bundle.is_some() {
                errors.push("clusterTrustBundle projections are not supported".into());
            }
        }
        match errors.len() {
            0 => Ok(out),
            1 => Err(errors.remove(0)),
            _ => Err(format!("[{}]", errors.join(", "))),
        }
    }

    /// A token bound to the pod from the TokenRequest API, cached until it
    /// is 80% through its life or 24 hours old (as the kubelet).
    async fn service_account_token(
        &self,
        pod: &Pod,
        uid: &str,
        volume: &str,
        proj: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let key = (uid.to_string(), volume.to_string(), proj.path.clone());
        if let Some(t) = self.tokens.lock().get(&key)
            && Instant::now() < t.refresh_at
        {
            return Ok(t.token.clone());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let ttl = proj.expiration_seconds.unwrap_or(3600).max(600);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: proj
                    .audience
                    .iter()
                    .filter(|a| !a.is_empty())
                    .cloned()
                    .collect(),
                expiration_seconds: Some(ttl),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let resp = api
            .create_token_request(&sa, &PostParams::default(), &req)
            .await
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        let token = resp
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "failed to fetch token: empty token".to_string())?;
        let life = Duration::from_secs(ttl as u64)
            .mul_f64(0.8)
            .min(Duration::from_secs(24 * 3600));
        self.tokens.lock().insert(
            key,
            CachedToken {
                token: token.clone(),
                refresh_at: Instant::now() + life,
            },
        );
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_missing_keys() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]
        .into();
        let all = key_payload(&data, None, 0o644, false, "x").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"].mode, 0o644);
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "dir/bee".into(),
            mode: Some(0o400),
        }];
        let some = key_payload(&data, Some(&items), 0o644, false, "x").unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), vec!["dir/bee"]);
        assert_eq!(some["dir/bee"].mode, 0o400);
        let missing = vec![KeyToPath {
            key: "zz".into(),
            path: "z".into(),
            mode: None,
        }];
        assert_eq!(
            key_payload(
                &data,
                Some(&missing),
                0o644,
                false,
                "configmap references non-existent config key"
            )
            .unwrap_err(),
            "configmap references non-existent config key: zz"
        );
        assert!(
            key_payload(&data, Some(&missing), 0o644, true, "x")
                .unwrap()
                .is_empty()
        );
    }
}
