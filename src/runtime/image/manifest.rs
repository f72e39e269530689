//! The parts of OCI (and Docker schema 2) manifests, indexes and image
//! configs the store needs, read leniently: registries and archives in the
//! wild omit optional fields or write `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ImageConfig, ImageError};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What the store asks a registry for.
pub(crate) const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// The annotations that name an image in an OCI layout's index.
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub(crate) const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest or an index (manifest list): one shape for both.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        serde_json::from_slice(bytes)
            .map_err(|e| ImageError::Invalid(format!("invalid manifest: {e}")))
    }

    pub fn is_index(&self) -> bool {
        matches!(self.media_type.as_deref(), Some(OCI_INDEX | DOCKER_LIST))
            || (self.config.is_none() && !self.manifests.is_empty())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawImageConfig {
    #[serde(default)]
    config: Option<RawConfig>,
    rootfs: RootFs,
}

/// The runtime config and the layers' diff-ids of an image config blob.
pub(crate) fn parse_config(bytes: &[u8]) -> Result<(ImageConfig, Vec<String>), ImageError> {
    let raw: RawImageConfig = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::Invalid(format!("invalid image config: {e}")))?;
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let config = match raw.config {
        Some(c) => ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: non_empty(c.working_dir),
            user: non_empty(c.user),
            stop_signal: non_empty(c.stop_signal),
        },
        None => ImageConfig::default(),
    };
    for d in &raw.rootfs.diff_ids {
        check_digest(d)?;
    }
    Ok((config, raw.rootfs.diff_ids))
}

/// `sha256:<64 hex>`: the only digest the store accepts (it names files).
pub(crate) fn check_digest(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            if hex.bytes().any(|b| b.is_ascii_uppercase()) {
                Err(ImageError::Invalid(format!("invalid digest {digest:?}")))
            } else {
                Ok(hex)
            }
        }
        _ => Err(ImageError::Invalid(format!(
            "unsupported digest {digest:?} (sha256 only)"
        ))),
    }
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Fail unless `bytes` has `digest`.
pub(crate) fn verify(what: &str, bytes: &[u8], digest: &str) -> Result<(), ImageError> {
    let actual = sha256_digest(bytes);
    if actual != digest {
        return Err(ImageError::Digest {
            what: what.to_string(),
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(())
}

/// The node's platform in GOARCH terms (what image indexes use).
pub(crate) fn host_platform() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    }
}

/// The entry of an index for this node: linux on our architecture, the
/// exact variant preferred. An index whose only entry has no platform is
/// taken as is (OCI layouts written by hand do that).
pub(crate) fn select_platform(entries: &[Descriptor]) -> Result<&Descriptor, ImageError> {
    let (arch, variant) = host_platform();
    let candidates: Vec<&Descriptor> = entries
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    let exact = candidates
        .iter()
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_deref()) == variant);
    if let Some(d) = exact.or(candidates.first()) {
        return Ok(d);
    }
    if let [only] = entries
        && only.platform.is_none()
    {
        return Ok(only);
    }
    let offered: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| format!("{}/{}", p.os, p.architecture))
        .collect();
    Err(ImageError::Invalid(format!(
        "no match for platform linux/{arch} in manifest list (offers {})",
        offered.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>, digest: char) -> Descriptor {
        Descriptor {
            media_type: Some(OCI_MANIFEST.into()),
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(String::from),
            }),
            annotations: None,
        }
    }

    #[test]
    fn picks_this_nodes_platform() {
        let (arch, variant) = host_platform();
        let entries = vec![
            entry("s390x", None, 'a'),
            entry(arch, Some("v0"), 'b'),
            entry(arch, variant, 'c'),
        ];
        // The exact variant wins; without one, any variant of our arch.
        let picked = select_platform(&entries).unwrap();
        assert_eq!(picked.digest, format!("sha256:{}", "c".repeat(64)));
        let picked = select_platform(&entries[..2]).unwrap();
        assert_eq!(picked.digest, format!("sha256:{}", "b".repeat(64)));
        let err = select_platform(&entries[..1]).unwrap_err().to_string();
        assert!(err.contains("offers linux/s390x"), "{err}");
    }

    #[test]
    fn reads_configs_leniently() {
        let d = format!("sha256:{}", "0".repeat(64));
        let json = format!(
            r#"{{"config":{{"Env":["A=1"],"Cmd":null,"Entrypoint":["/x"],"WorkingDir":"",
            "User":"1000","StopSignal":"SIGINT"}},"rootfs":{{"type":"layers","diff_ids":["{d}"]}}}}"#
        );
        let (c, ids) = parse_config(json.as_bytes()).unwrap();
        assert_eq!(c.env, ["A=1"]);
        assert!(c.cmd.is_empty());
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("1000"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(ids, [d]);
        assert!(parse_config(br#"{"rootfs":{"diff_ids":["md5:x"]}}"#).is_err());
        assert!(check_digest("sha256:../../etc").is_err());
    }
}
