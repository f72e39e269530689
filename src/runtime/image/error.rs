//! The image store's errors. `Display` is what `kubectl describe` shows in
//! the Failed event and the container's waiting message, so pull errors
//! follow containerd's wording and carry the registry's own message.

use std::path::Path;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    /// The kubelet's `InvalidImageName`.
    #[error("couldn't parse image name \"{reference}\": {reason}")]
    InvalidReference { reference: String, reason: String },
    /// The kubelet's `ErrImageNeverPull`.
    #[error("Container image \"{0}\" is not present with pull policy of Never")]
    NeverPull(String),
    /// The registry has no such repository or tag.
    #[error(
        "failed to pull and unpack image \"{reference}\": failed to resolve reference \
         \"{reference}\": {reference}: not found: {message}"
    )]
    NotFound { reference: String, message: String },
    /// The registry refused the credentials (or their absence).
    #[error(
        "failed to pull and unpack image \"{reference}\": failed to resolve reference \
         \"{reference}\": pull access denied, repository does not exist or may require \
         authorization: {message}"
    )]
    Unauthorized { reference: String, message: String },
    /// Any other failure while pulling: connection, TLS, digest, unpack.
    #[error("failed to pull and unpack image \"{reference}\": {message}")]
    Pull { reference: String, message: String },
    /// `rm`/`get` of an image the store does not hold.
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
    /// Content the store cannot use (bad JSON, unknown media type, no
    /// manifest for this platform, a layer that is not a tar).
    #[error("{0}")]
    Invalid(String),
    #[error("invalid archive {path}: {reason}")]
    Archive { path: String, reason: String },
    #[error("invalid registries config {path}: {reason}")]
    RegistriesConfig { path: String, reason: String },
    #[error("invalid docker config json: {0}")]
    DockerConfig(String),
}

impl ImageError {
    /// The reason the kubelet puts in the container's waiting state.
    pub fn kubelet_reason(&self) -> &'static str {
        match self {
            ImageError::InvalidReference { .. } => "InvalidImageName",
            ImageError::NeverPull(_) => "ErrImageNeverPull",
            _ => "ErrImagePull",
        }
    }

    pub(crate) fn io(path: &Path, err: impl std::fmt::Display) -> Self {
        ImageError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }

    /// This error, as the failure of pulling `reference` (errors that
    /// already name the reference stay as they are).
    pub(crate) fn in_pull(self, reference: &str) -> Self {
        match self {
            e @ (ImageError::NotFound { .. }
            | ImageError::Unauthorized { .. }
            | ImageError::Pull { .. }
            | ImageError::InvalidReference { .. }
            | ImageError::NeverPull(_)) => e,
            other => ImageError::Pull {
                reference: reference.to_string(),
                message: other.to_string(),
            },
        }
    }
}
