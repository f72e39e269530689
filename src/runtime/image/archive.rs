//! Importing image archives: OCI archives (an OCI image layout in a tar, as
//! `skopeo copy ... oci-archive:` or `docker buildx --output type=oci`
//! write) and `docker save` archives, optionally gzip or zstd compressed.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::{self, Manifest};
use super::{ImageConfig, ImageError, ImageRecord, ImageStore, reference, unpack};

/// File names `import_dir` picks up, as k3s does for its images dir.
const ARCHIVE_SUFFIXES: &[&str] = &[".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"];

/// Remembers which archives of the images dir were imported, so a restart
/// does not unpack them again.
const IMPORTED_MARKER: &str = "imported.json";

pub(crate) fn import(store: &ImageStore, archive: &Path) -> Result<Vec<String>, ImageError> {
    let bad = |reason: String| ImageError::Archive {
        path: archive.display().to_string(),
        reason,
    };
    let staging = store.tmp_dir()?;
    let dir = staging.0.join("archive");
    fs::create_dir(&dir).map_err(|e| ImageError::io(&dir, e))?;
    extract(archive, &dir).map_err(|e| bad(e.to_string()))?;
    let dir = dir.canonicalize().map_err(|e| ImageError::io(&dir, e))?;
    let refs = if dir.join("index.json").is_file() {
        import_oci(store, &dir)
    } else if dir.join("manifest.json").is_file() {
        import_docker(store, &dir)
    } else {
        Err(ImageError::Invalid(
            "neither an OCI archive (index.json) nor a docker archive (manifest.json)".into(),
        ))
    }
    .map_err(|e| match e {
        e @ ImageError::Archive { .. } => e,
        other => bad(other.to_string()),
    })?;
    if refs.is_empty() {
        return Err(bad("no named image in the archive".into()));
    }
    Ok(refs)
}

/// Unpack the archive's files (not devices, not ownership) into `dir`.
fn extract(archive: &Path, dir: &Path) -> io::Result<()> {
    let file = fs::File::open(archive)?;
    let mut tar = tar::Archive::new(unpack::decompressed(file)?);
    tar.set_preserve_permissions(false);
    tar.set_unpack_xattrs(false);
    for entry in tar.entries()? {
        let mut entry = entry?;
        use tar::EntryType::*;
        if matches!(
            entry.header().entry_type(),
            Regular | Directory | Symlink | Link | Continuous | GNUSparse
        ) {
            entry.unpack_in(dir)?;
        }
    }
    Ok(())
}

/// `dir/rel`, refusing paths (or symlinks) that lead out of `dir`.
fn inside(dir: &Path, rel: &str) -> Result<PathBuf, ImageError> {
    let path = dir
        .join(rel)
        .canonicalize()
        .map_err(|e| ImageError::Invalid(format!("{rel}: {e}")))?;
    if !path.starts_with(dir) || !path.is_file() {
        return Err(ImageError::Invalid(format!(
            "{rel}: not a file in the archive"
        )));
    }
    Ok(path)
}

fn oci_blob(dir: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let hex = manifest::check_digest(digest)?;
    inside(dir, &format!("blobs/sha256/{hex}"))
}

fn read_verified(path: &Path, digest: &str, max: u64) -> Result<Vec<u8>, ImageError> {
    let len = fs::metadata(path)
        .map_err(|e| ImageError::io(path, e))?
        .len();
    if len > max {
        return Err(ImageError::Invalid(format!(
            "{digest}: {len} bytes is too large"
        )));
    }
    let bytes = fs::read(path).map_err(|e| ImageError::io(path, e))?;
    manifest::verify(digest, &bytes, digest)?;
    Ok(bytes)
}

fn file_digest(path: &Path) -> Result<(String, u64), ImageError> {
    let mut f = fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| ImageError::io(path, e))?;
        if n == 0 {
            break;
        }
        len += n as u64;
        hash.update(&buf[..n]);
    }
    Ok((format!("sha256:{}", hex::encode(hash.finalize())), len))
}

const MAX_METADATA: u64 = 8 << 20;

fn import_oci(store: &ImageStore, dir: &Path) -> Result<Vec<String>, ImageError> {
    let index_bytes = fs::read(dir.join("index.json")).map_err(|e| ImageError::io(dir, e))?;
    let index = Manifest::parse(&index_bytes)?;
    let mut refs = Vec::new();
    for entry in &index.manifests {
        let annotations = entry.annotations.clone().unwrap_or_default();
        let Some(name) = annotations
            .get(manifest::ANNOTATION_CONTAINERD_NAME)
            .or_else(|| annotations.get(manifest::ANNOTATION_REF_NAME))
        else {
            tracing::warn!(digest = %entry.digest, "archive entry without a name; skipped");
            continue;
        };
        let image = reference::parse(name)?;
        let top_bytes = read_verified(&oci_blob(dir, &entry.digest)?, &entry.digest, MAX_METADATA)?;
        let mut manifest_digest = entry.digest.clone();
        let mut manifest_bytes = top_bytes;
        let parsed = Manifest::parse(&manifest_bytes)?;
        if parsed.is_index() {
            let chosen = manifest::select_platform(&parsed.manifests)?;
            manifest_digest = chosen.digest.clone();
            manifest_bytes = read_verified(
                &oci_blob(dir, &manifest_digest)?,
                &manifest_digest,
                MAX_METADATA,
            )?;
        }
        let lookup = |digest: &str| oci_blob(dir, digest);
        let image_parts = add_image(store, &manifest_digest, &manifest_bytes, &lookup, true)?;
        let record = image_parts.record(
            image.whole(),
            format!("{}@{}", reference::repository(&image), entry.digest),
        );
        store.commit(&record)?;
        refs.push(record.reference);
    }
    Ok(refs)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SyntheticManifest {
    schema_version: u32,
    media_type: &'static str,
    config: manifest::Descriptor,
    layers: Vec<manifest::Descriptor>,
}

fn import_docker(store: &ImageStore, dir: &Path) -> Result<Vec<String>, ImageError> {
    let text = fs::read(dir.join("manifest.json")).map_err(|e| ImageError::io(dir, e))?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&text)
        .map_err(|e| ImageError::Invalid(format!("manifest.json: {e}")))?;
    let mut refs = Vec::new();
    for entry in entries {
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            tracing::warn!(config = %entry.config, "docker archive image without RepoTags; skipped");
            continue;
        }
        let images = tags
            .iter()
            .map(|t| reference::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        // A docker archive has no registry manifest: make the OCI one
        // containerd would, so the image has a digest to be known by.
        let config_path = inside(dir, &entry.config)?;
        let (config_digest, config_size) = file_digest(&config_path)?;
        let mut blobs: HashMap<String, PathBuf> = HashMap::new();
        blobs.insert(config_digest.clone(), config_path);
        let mut layers = Vec::new();
        for l in &entry.layers {
            let path = inside(dir, l)?;
            let (digest, size) = file_digest(&path)?;
            let media_type = media_type_of(&path)?;
            blobs.insert(digest.clone(), path);
            layers.push(descriptor(media_type, digest, size));
        }
        let synthetic = SyntheticManifest {
            schema_version: 2,
            media_type: manifest::OCI_MANIFEST,
            config: descriptor(manifest::OCI_CONFIG, config_digest, config_size),
            layers,
        };
        let manifest_bytes = serde_json::to_vec(&synthetic)
            .map_err(|e| ImageError::Invalid(format!("cannot encode manifest: {e}")))?;
        let manifest_digest = manifest::sha256_digest(&manifest_bytes);
        let lookup = |digest: &str| {
            blobs
                .get(digest)
                .cloned()
                .ok_or_else(|| ImageError::Invalid(format!("blob {digest} not in the archive")))
        };
        // The digests were just computed from these very files.
        let parts = add_image(store, &manifest_digest, &manifest_bytes, &lookup, false)?;
        for image in images {
            let record = parts.record(
                image.whole(),
                format!("{}@{}", reference::repository(&image), manifest_digest),
            );
            store.commit(&record)?;
            refs.push(record.reference);
        }
    }
    Ok(refs)
}

fn descriptor(media_type: &str, digest: String, size: u64) -> manifest::Descriptor {
    manifest::Descriptor {
        media_type: Some(media_type.to_string()),
        digest,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        platform: None,
        annotations: None,
    }
}

fn media_type_of(path: &Path) -> Result<&'static str, ImageError> {
    let mut magic = [0u8; 4];
    let mut f = fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
    let n = f.read(&mut magic).map_err(|e| ImageError::io(path, e))?;
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        manifest::OCI_LAYER_GZIP
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        manifest::OCI_LAYER_TAR
    })
}

/// An image whose layers are unpacked and blobs stored, not yet named.
struct ImageParts {
    id: String,
    manifest: String,
    layers: Vec<String>,
    size: u64,
    config: ImageConfig,
}

impl ImageParts {
    fn record(&self, reference: String, repo_digest: String) -> ImageRecord {
        ImageRecord {
            reference,
            repo_digest,
            id: self.id.clone(),
            manifest: self.manifest.clone(),
            layers: self.layers.clone(),
            size: self.size,
            config: self.config.clone(),
        }
    }
}

/// Unpack the layers of a manifest whose blobs `lookup` finds, and store
/// its manifest and config.
fn add_image(
    store: &ImageStore,
    manifest_digest: &str,
    manifest_bytes: &[u8],
    lookup: &dyn Fn(&str) -> Result<PathBuf, ImageError>,
    verify_layers: bool,
) -> Result<ImageParts, ImageError> {
    let parsed = Manifest::parse(manifest_bytes)?;
    let config_desc = parsed
        .config
        .as_ref()
        .ok_or_else(|| ImageError::Invalid("manifest has no config".into()))?;
    let config_bytes = read_verified(
        &lookup(&config_desc.digest)?,
        &config_desc.digest,
        MAX_METADATA,
    )?;
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
        let path = lookup(&layer.digest)?;
        if verify_layers {
            let (actual, _) = file_digest(&path)?;
            if actual != layer.digest {
                return Err(ImageError::Digest {
                    what: format!("layer {}", layer.digest),
                    expected: layer.digest.clone(),
                    actual,
                });
            }
        }
        store.add_layer(diff_id, &path)?;
    }
    store.put_blob(manifest_digest, manifest_bytes)?;
    store.put_blob(&config_desc.digest, &config_bytes)?;
    Ok(ImageParts {
        id: config_desc.digest.clone(),
        manifest: manifest_digest.to_string(),
        layers: diff_ids,
        size,
        config,
    })
}

#[derive(Default, Serialize, Deserialize)]
struct Imported {
    /// File name -> what it was ("size:mtime") and the refs it gave.
    files: BTreeMap<String, ImportedFile>,
}

#[derive(Serialize, Deserialize)]
struct ImportedFile {
    stamp: String,
    refs: Vec<String>,
}

pub(crate) fn import_dir(store: &ImageStore, dir: &Path) -> Result<Vec<String>, ImageError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImageError::io(dir, e)),
    };
    let marker = store.root().join(IMPORTED_MARKER);
    let mut imported: Imported = fs::read(&marker)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            ARCHIVE_SUFFIXES.iter().any(|s| name.ends_with(s))
        })
        .collect();
    files.sort();
    let mut all = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let stamp = fs::metadata(&path)
            .ok()
            .map(|m| {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                format!("{}:{mtime}", m.len())
            })
            .unwrap_or_default();
        if let Some(done) = imported.files.get(&name)
            && done.stamp == stamp
            && done.refs.iter().all(|r| store.get(r).is_some())
        {
            all.extend(done.refs.iter().cloned());
            continue;
        }
        match import(store, &path) {
            Ok(refs) => {
                tracing::info!(archive = %path.display(), images = ?refs, "imported images");
                all.extend(refs.iter().cloned());
                imported.files.insert(name, ImportedFile { stamp, refs });
            }
            Err(e) => {
                tracing::warn!(archive = %path.display(), error = %e, "cannot import image archive")
            }
        }
    }
    if let Ok(bytes) = serde_json::to_vec_pretty(&imported) {
        let staging = store.tmp_dir()?;
        let staged = staging.0.join(IMPORTED_MARKER);
        if fs::write(&staged, bytes).is_ok() {
            let _ = fs::rename(&staged, &marker);
        }
    }
    Ok(all)
}
