//! A container's volumeMounts as runtime mounts: the volume's host path,
//! subPath / subPathExpr resolved safely inside the volume, readOnly and
//! mountPropagation (upstream's makeMounts).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

use crate::runtime::cri::Mount;

/// Why a container's mounts could not be made. The agent shows it as the
/// container's CreateContainerConfigError message, as the kubelet does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MountError(pub String);

/// `$(VAR)` expansion as upstream's expansion.Expand: `$$` escapes, an
/// unknown variable stays as written.
pub fn expand(input: &str, env: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Volumes whose mounts are always read-only (upstream's
/// ReadOnlyAPIDataVolumes), or read-only by their source.
fn source_read_only(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
        || v.persistent_volume_claim
            .as_ref()
            .and_then(|p| p.read_only)
            .unwrap_or(false)
}

/// The mounts of `container`, from the host paths `mount_pod_volumes`
/// returned. `env` is the container's resolved environment (for
/// subPathExpr).
pub fn container_mounts(
    pod: &Pod,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
    env: &[(String, String)],
) -> Result<Vec<Mount>, MountError> {
    let spec_volumes: HashMap<&str, &Volume> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .map(|v| (v.name.as_str(), v))
        .collect();
    let env: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut out = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let (Some(host), Some(vol)) = (volumes.get(&vm.name), spec_volumes.get(vm.name.as_str()))
        else {
            return Err(MountError(format!(
                "cannot find volume \"{}\" to mount into container \"{}\"",
                vm.name, container.name
            )));
        };
        let sub_path = match (&vm.sub_path_expr, &vm.sub_path) {
            (Some(expr), _) if !expr.is_empty() => expand(expr, &env),
            (_, Some(p)) => p.clone(),
            _ => String::new(),
        };
        let host_path = if sub_path.is_empty() {
            host.clone()
        } else {
            resolve_sub_path(host, &sub_path, &vm.name, &container.name)?
        };
        let propagation = match vm.mount_propagation.as_deref() {
            None | Some("") | Some("None") => None,
            Some(p @ ("HostToContainer" | "Bidirectional")) => Some(p.to_string()),
            Some(other) => {
                return Err(MountError(format!("invalid propagation mode: {other}")));
            }
        };
        out.push(Mount {
            container_path: vm.mount_path.clone(),
            host_path,
            readonly: vm.read_only.unwrap_or(false) || source_read_only(vol),
            propagation,
        });
    }
    Ok(out)
}

/// `volume/sub_path`, created if missing (mode of the volume root) and
/// never outside the volume, even through symlinks.
fn resolve_sub_path(
    volume: &Path,
    sub_path: &str,
    mount: &str,
    container: &str,
) -> Result<PathBuf, MountError> {
    if Path::new(sub_path).is_absolute() {
        return Err(MountError(format!(
            "error SubPath `{sub_path}` must not be an absolute path"
        )));
    }
    if Path::new(sub_path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(MountError(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        )));
    }
    let prepare_failed = || {
        MountError(format!(
            "failed to prepare subPath for volumeMount \"{mount}\" of container \"{container}\""
        ))
    };
    let root = fs::canonicalize(volume).map_err(|_| prepare_failed())?;
    let target = root.join(sub_path);
    if fs::symlink_metadata(&target).is_err() {
        // Make the missing directories one by one, checking each existing
        // step resolves inside the volume (a symlink could point out).
        let perm = fs::metadata(&root)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o755);
        let mut cur = root.clone();
        for comp in Path::new(sub_path).components() {
            let Component::Normal(c) = comp else { continue };
            cur.push(c);
            if fs::symlink_metadata(&cur).is_ok() {
                let real = fs::canonicalize(&cur).map_err(|_| prepare_failed())?;
                if !real.starts_with(&root) {
                    return Err(prepare_failed());
                }
                cur = real;
                continue;
            }
            let created = fs::create_dir(&cur)
                .and_then(|_| fs::set_permissions(&cur, fs::Permissions::from_mode(perm)));
            if created.is_err() {
                return Err(MountError(format!(
                    "failed to create subPath directory for volumeMount \"{mount}\" of container \"{container}\""
                )));
            }
        }
    }
    let real = fs::canonicalize(&target).map_err(|_| prepare_failed())?;
    if !real.starts_with(&root) {
        return Err(prepare_failed());
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion() {
        let env: HashMap<&str, &str> = [("POD", "web-0"), ("NS", "default")].into();
        assert_eq!(expand("logs/$(POD)", &env), "logs/web-0");
        assert_eq!(
            expand("$(NS)/$(MISSING)/$$(POD)", &env),
            "default/$(MISSING)/$(POD)"
        );
        assert_eq!(expand("a$b", &env), "a$b");
    }

    #[test]
    fn mounts_sub_paths_and_read_only() {
        let root = std::env::temp_dir().join(format!("rk3s-mounts-{}", rand::random::<u64>()));
        let data = root.join("data");
        let cfg = root.join("cfg");
        fs::create_dir_all(&data).unwrap();
        fs::create_dir_all(&cfg).unwrap();
        std::os::unix::fs::symlink("/etc", data.join("escape")).unwrap();
        let pod: Pod = serde_json::from_value(json!({"spec": {
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
            "containers": [{"name": "c", "volumeMounts": [
                {"name": "data", "mountPath": "/data", "subPathExpr": "logs/$(POD)"},
                {"name": "cfg", "mountPath": "/cfg"},
                {"name": "data", "mountPath": "/ro", "readOnly": true, "mountPropagation": "HostToContainer"}]}]}}))
        .unwrap();
        let volumes: HashMap<String, PathBuf> = [
            ("data".to_string(), data.clone()),
            ("cfg".to_string(), cfg.clone()),
        ]
        .into();
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let env = vec![("POD".to_string(), "web-0".to_string())];
        let m = container_mounts(&pod, c, &volumes, &env).unwrap();
        let real = fs::canonicalize(&data).unwrap();
        assert_eq!(m[0].host_path, real.join("logs/web-0"));
        assert!(m[0].host_path.is_dir(), "subPath directory created");
        assert!(!m[0].readonly);
        assert!(m[1].readonly, "configMap mounts are read-only");
        assert!(m[2].readonly);
        assert_eq!(m[2].propagation.as_deref(), Some("HostToContainer"));

        // A subPath through a symlink out of the volume is refused.
        let mut bad = pod.clone();
        bad.spec.as_mut().unwrap().containers[0].volume_mounts = Some(vec![
            serde_json::from_value(
                json!({"name": "data", "mountPath": "/x", "subPath": "escape/ssl"}),
            )
            .unwrap(),
        ]);
        let c = &bad.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container_mounts(&bad, c, &volumes, &[]).unwrap_err().0,
            "failed to prepare subPath for volumeMount \"data\" of container \"c\""
        );
        // A volume the pod does not have.
        bad.spec.as_mut().unwrap().containers[0].volume_mounts = Some(vec![
            serde_json::from_value(json!({"name": "nope", "mountPath": "/x"})).unwrap(),
        ]);
        let c = &bad.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container_mounts(&bad, c, &volumes, &[]).unwrap_err().0,
            "cannot find volume \"nope\" to mount into container \"c\""
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
