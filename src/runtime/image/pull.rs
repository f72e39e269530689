//! Pulling an image from a registry with oci-client: endpoints (mirrors
//! first) from registries.yaml, credentials from pull secrets and
//! registries.yaml, anonymous bearer tokens, the node's platform picked
//! out of image indexes. Manifests and configs are fetched into memory and
//! verified here; layers stream to a staging file (oci-client checks their
//! digest) and are unpacked from there.

use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::distribution;
use super::manifest::{self, Manifest};
use super::reference;
use super::registries::Endpoint;
use super::{ImageError, ImageRecord, ImageStore, PulledImage, RegistryCredential};

/// Configs and manifests larger than this are refused (they are a few KiB).
const MAX_METADATA_BYTES: i64 = 8 << 20;

pub(crate) async fn pull(
    store: &ImageStore,
    image: &Reference,
    credentials: &[RegistryCredential],
) -> Result<PulledImage, ImageError> {
    let normalized = image.whole();
    let registry = image.registry();
    let mut answered: Option<ImageError> = None;
    let mut last: Option<ImageError> = None;
    for endpoint in store.registries().endpoints(registry) {
        for auth in auth_options(&endpoint, image, credentials) {
            match pull_from(store, &endpoint, &auth, image).await {
                Ok(record) => {
                    return store.to_pulled(&record, &normalized, true).ok_or_else(|| {
                        ImageError::Pull {
                            reference: normalized.clone(),
                            message: "a layer was removed while the image was pulled".into(),
                        }
                    });
                }
                Err(e) => {
                    tracing::debug!(image = %normalized, endpoint = %endpoint.host, error = %e, "pull attempt failed");
                    let unauthorized = matches!(e, ImageError::Unauthorized { .. });
                    if matches!(
                        e,
                        ImageError::NotFound { .. } | ImageError::Unauthorized { .. }
                    ) {
                        answered.get_or_insert(e.clone());
                    }
                    last = Some(e);
                    // Wrong credentials: try the next ones; anything else:
                    // the next endpoint.
                    if !unauthorized {
                        break;
                    }
                }
            }
        }
    }
    Err(answered.or(last).unwrap_or_else(|| ImageError::Pull {
        reference: normalized,
        message: "no registry endpoint to pull from".into(),
    }))
}

/// Credentials to try against `endpoint`, in order: registries.yaml's for
/// that host, then pull secrets for the image's own registry (never sent to
/// a mirror on another host), then none.
fn auth_options(
    endpoint: &Endpoint,
    image: &Reference,
    credentials: &[RegistryCredential],
) -> Vec<RegistryAuth> {
    let mut out = Vec::new();
    if let Some(c) = &endpoint.auth {
        out.push(RegistryAuth::Basic(c.username.clone(), c.password.clone()));
    }
    if endpoint.host == image.registry() {
        for c in credentials {
            if c.matches(image.registry(), image.repository()) {
                let auth = RegistryAuth::Basic(c.username.clone(), c.password.clone());
                if !out.contains(&auth) {
                    out.push(auth);
                }
            }
        }
    }
    out.push(RegistryAuth::Anonymous);
    out
}

/// How one endpoint is reached: oci-client, or our own small client when
/// the endpoint wants a TLS client certificate (oci-client cannot present
/// one).
enum Fetcher {
    Oci(Client),
    ClientCert(distribution::Client),
}

impl Fetcher {
    fn for_endpoint(endpoint: &Endpoint) -> Result<Self, ImageError> {
        if endpoint.tls.cert_file.is_some() || endpoint.tls.key_file.is_some() {
            if endpoint.tls.cert_file.is_none() || endpoint.tls.key_file.is_none() {
                return Err(ImageError::Invalid(format!(
                    "registries.yaml configs.{:?}.tls: cert_file and key_file go together",
                    endpoint.host
                )));
            }
            if !endpoint.plain_http {
                return Ok(Fetcher::ClientCert(distribution::Client::new(endpoint)?));
            }
        }
        client_for(endpoint).map(Fetcher::Oci)
    }

    async fn manifest(
        &self,
        remote: &Reference,
        auth: &RegistryAuth,
        normalized: &str,
    ) -> Result<Vec<u8>, ImageError> {
        match self {
            Fetcher::Oci(client) => client
                .pull_manifest_raw(remote, auth, manifest::ACCEPTED)
                .await
                .map(|(bytes, _)| bytes.to_vec())
                .map_err(|e| classify(normalized, e)),
            Fetcher::ClientCert(client) => client
                .manifest(remote, auth, manifest::ACCEPTED)
                .await
                .map_err(|f| f.for_image(normalized)),
        }
    }

    /// A blob into memory (configs).
    async fn blob_bytes(
        &self,
        remote: &Reference,
        digest: &str,
        auth: &RegistryAuth,
        normalized: &str,
    ) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        match self {
            Fetcher::Oci(client) => client
                .pull_blob(remote, digest, &mut out)
                .await
                .map_err(|e| classify(normalized, e))?,
            Fetcher::ClientCert(client) => client
                .blob(remote, digest, auth, &mut out)
                .await
                .map_err(|f| f.for_image(normalized))?,
        }
        Ok(out)
    }

    /// A layer blob into `path`; both check its digest.
    async fn blob_file(
        &self,
        remote: &Reference,
        descriptor: &OciDescriptor,
        auth: &RegistryAuth,
        path: &std::path::Path,
        normalized: &str,
    ) -> Result<(), ImageError> {
        match self {
            Fetcher::Oci(client) => {
                let file = tokio::fs::File::create(path)
                    .await
                    .map_err(|e| ImageError::io(path, e))?;
                client
                    .pull_blob(remote, descriptor, file)
                    .await
                    .map_err(|e| classify(normalized, e))
            }
            Fetcher::ClientCert(client) => {
                let file = std::fs::File::create(path).map_err(|e| ImageError::io(path, e))?;
                let mut out = std::io::BufWriter::new(file);
                client
                    .blob(remote, &descriptor.digest, auth, &mut out)
                    .await
                    .map_err(|f| f.for_image(normalized))?;
                std::io::Write::flush(&mut out).map_err(|e| ImageError::io(path, e))
            }
        }
    }
}

fn client_for(endpoint: &Endpoint) -> Result<Client, ImageError> {
    // reqwest is built without a crypto provider of its own: use ring, as
    // the rest of rk3s does (a no-op when the process already chose one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut extra_root_certificates = Vec::new();
    if let Some(ca) = &endpoint.tls.ca_file {
        let data = std::fs::read(ca).map_err(|e| ImageError::io(ca, e))?;
        extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    Ok(Client::new(ClientConfig {
        protocol: if endpoint.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: endpoint.tls.insecure_skip_verify,
        extra_root_certificates,
        // The store picks the platform itself (with variants).
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(120)),
        ..ClientConfig::default()
    }))
}

/// The reference to ask `endpoint` for.
fn at_endpoint(image: &Reference, endpoint: &Endpoint) -> Reference {
    if endpoint.host == image.registry() {
        return image.clone();
    }
    let (registry, repo) = (
        endpoint.host.clone(),
        endpoint.repository(image.repository()),
    );
    match (image.tag(), image.digest()) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repo, tag.into(), digest.into())
        }
        (_, Some(digest)) => Reference::with_digest(registry, repo, digest.into()),
        (tag, None) => Reference::with_tag(registry, repo, tag.unwrap_or("latest").into()),
    }
}

async fn pull_from(
    store: &ImageStore,
    endpoint: &Endpoint,
    auth: &RegistryAuth,
    image: &Reference,
) -> Result<ImageRecord, ImageError> {
    let normalized = image.whole();
    let client = Fetcher::for_endpoint(endpoint)?;
    let remote = at_endpoint(image, endpoint);

    let top_bytes = client.manifest(&remote, auth, &normalized).await?;
    let top_digest = manifest::sha256_digest(&top_bytes);
    if let Some(wanted) = image.digest() {
        manifest::verify(&format!("manifest of {normalized}"), &top_bytes, wanted)?;
    }
    let mut manifest_bytes = top_bytes.to_vec();
    let mut manifest_digest = top_digest.clone();
    let mut parsed = Manifest::parse(&manifest_bytes)?;
    if parsed.is_index() {
        let entry = manifest::select_platform(&parsed.manifests)?.clone();
        manifest::check_digest(&entry.digest)?;
        let bytes = client
            .manifest(
                &remote.clone_with_digest(entry.digest.clone()),
                auth,
                &normalized,
            )
            .await?;
        manifest::verify(&format!("manifest {}", entry.digest), &bytes, &entry.digest)?;
        manifest_bytes = bytes.to_vec();
        manifest_digest = entry.digest;
        parsed = Manifest::parse(&manifest_bytes)?;
        if parsed.is_index() {
            return Err(ImageError::Invalid(
                "manifest list entry is itself a manifest list".into(),
            ));
        }
    }
    let config_desc = parsed
        .config
        .clone()
        .ok_or_else(|| ImageError::Invalid("manifest has no config".into()))?;
    manifest::check_digest(&config_desc.digest)?;
    if config_desc.size > MAX_METADATA_BYTES {
        return Err(ImageError::Invalid(format!(
            "image config of {} bytes is too large",
            config_desc.size
        )));
    }
    let config_bytes = client
        .blob_bytes(&remote, &config_desc.digest, auth, &normalized)
        .await?;
    manifest::verify("image config", &config_bytes, &config_desc.digest)?;
    let (config, diff_ids) = manifest::parse_config(&config_bytes)?;
    if diff_ids.len() != parsed.layers.len() {
        return Err(ImageError::Invalid(format!(
            "image config lists {} layers, manifest {}",
            diff_ids.len(),
            parsed.layers.len()
        )));
    }

    let mut size = config_desc.size.max(0) as u64;
    for (layer, diff_id) in parsed.layers.iter().zip(&diff_ids) {
        size += layer.size.max(0) as u64;
        if store.layer_present(diff_id) {
            continue;
        }
        manifest::check_digest(&layer.digest)?;
        let staging = store.tmp_dir()?;
        let blob = staging.0.join("layer");
        let descriptor = OciDescriptor {
            media_type: layer.media_type.clone().unwrap_or_default(),
            digest: layer.digest.clone(),
            size: layer.size,
            ..OciDescriptor::default()
        };
        // pull_blob verifies the digest of what it wrote.
        client
            .blob_file(&remote, &descriptor, auth, &blob, &normalized)
            .await?;
        let written = std::fs::metadata(&blob).map_err(|e| ImageError::io(&blob, e))?;
        if layer.size >= 0 && written.len() != layer.size as u64 {
            return Err(ImageError::Invalid(format!(
                "layer {}: {} bytes, the manifest says {}",
                layer.digest,
                written.len(),
                layer.size
            )));
        }
        let (store2, diff_id2) = (store.clone(), diff_id.clone());
        tokio::task::spawn_blocking(move || {
            let r = store2.add_layer(&diff_id2, &blob);
            drop(staging);
            r
        })
        .await
        .map_err(|e| ImageError::Invalid(format!("unpack task failed: {e}")))??;
    }

    store.put_blob(&manifest_digest, &manifest_bytes)?;
    store.put_blob(&config_desc.digest, &config_bytes)?;
    let record = ImageRecord {
        reference: normalized,
        repo_digest: format!("{}@{}", reference::repository(image), top_digest),
        id: config_desc.digest,
        manifest: manifest_digest,
        layers: diff_ids,
        size,
        config,
    };
    store.commit(&record)?;
    Ok(record)
}

/// oci-client's error as the kubelet would show it.
fn classify(reference: &str, e: OciDistributionError) -> ImageError {
    let reference = reference.to_string();
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let message = envelope
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                ImageError::NotFound { reference, message }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                ImageError::Unauthorized { reference, message }
            } else {
                ImageError::Pull { reference, message }
            }
        }
        OciDistributionError::UnauthorizedError { .. } => ImageError::Unauthorized {
            reference,
            message: "401 Unauthorized".into(),
        },
        OciDistributionError::AuthenticationFailure(reason) => ImageError::Unauthorized {
            reference,
            message: format!("failed to authorize: {}", reason.trim()),
        },
        OciDistributionError::ServerError {
            code: 404, message, ..
        } => ImageError::NotFound { reference, message },
        OciDistributionError::ServerError {
            code: code @ (401 | 403),
            message,
            ..
        } => ImageError::Unauthorized {
            reference,
            message: format!("{code}: {}", message.trim()),
        },
        other => ImageError::Pull {
            reference,
            message: error_chain(&other),
        },
    }
}

/// An error and its sources, as one line (reqwest hides the cause, e.g.
/// "connection refused" or the TLS failure, in its sources).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
