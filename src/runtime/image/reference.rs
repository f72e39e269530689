//! Image references, normalised as the kubelet and containerd do:
//! `busybox` is `docker.io/library/busybox:latest`.

use oci_client::Reference;

use super::ImageError;

/// Parse and normalise `reference`; a reference without tag or digest gets
/// `:latest`.
pub fn parse(reference: &str) -> Result<Reference, ImageError> {
    let invalid = |reason: String| ImageError::InvalidReference {
        reference: reference.to_string(),
        reason,
    };
    if reference.is_empty() || reference.trim() != reference {
        return Err(invalid("invalid reference format".into()));
    }
    // Upper case in the repository is invalid upstream too ("repository
    // name must be lowercase"); oci-spec accepts some of it, so check first.
    let name_part = reference.split('@').next().unwrap_or(reference);
    let repo_part = match name_part.rfind(':') {
        Some(i) if !name_part[i..].contains('/') => &name_part[..i],
        _ => name_part,
    };
    let path = match repo_part.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => repo_part,
    };
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid(
            "invalid reference format: repository name must be lowercase".into(),
        ));
    }
    let parsed: Reference = reference
        .parse()
        .map_err(|e: oci_client::ParseError| invalid(format!("invalid reference format: {e}")))?;
    Ok(parsed)
}

/// The normalised text of `reference`, e.g. `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    parse(reference).map(|r| r.whole())
}

/// `registry/repository` of a reference, e.g. `docker.io/library/busybox`.
pub fn repository(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_the_kubelet() {
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("rk3s-test/web:1").unwrap(),
            "docker.io/rk3s-test/web:1"
        );
        assert_eq!(
            normalize("127.0.0.1:5000/a/b").unwrap(),
            "127.0.0.1:5000/a/b:latest"
        );
        assert_eq!(
            normalize("index.docker.io/library/busybox:1").unwrap(),
            "docker.io/library/busybox:1"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("busybox@{digest}")).unwrap(),
            format!("docker.io/library/busybox@{digest}")
        );
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "Busybox", "busy box", "a:b:c", "-x"] {
            let err = normalize(bad).unwrap_err();
            assert_eq!(err.kubelet_reason(), "InvalidImageName", "{bad:?}: {err}");
        }
    }
}
