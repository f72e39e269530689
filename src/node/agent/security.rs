//! securityContext (pod and container) to the runtime's security config,
//! container settings winning over the pod's, as the kubelet's
//! determineEffectiveSecurityContext.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, PodSpec, SeccompProfile};

use crate::runtime::cri::{Seccomp, SecurityConfig};

fn seccomp(p: &SeccompProfile, seccomp_root: &Path) -> Seccomp {
    match p.type_.as_str() {
        "RuntimeDefault" => Seccomp::RuntimeDefault,
        "Localhost" => Seccomp::Localhost(
            seccomp_root.join(p.localhost_profile.as_deref().unwrap_or_default()),
        ),
        _ => Seccomp::Unconfined,
    }
}

pub fn security_config(spec: &PodSpec, c: &Container, seccomp_root: &Path) -> SecurityConfig {
    let psc = spec.security_context.as_ref();
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let profile = sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| psc.and_then(|s| s.seccomp_profile.as_ref()));
    let mut supplemental: Vec<i64> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs_group) = psc.and_then(|s| s.fs_group) {
        supplemental.push(fs_group);
    }
    SecurityConfig {
        privileged,
        capabilities_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        // allowPrivilegeEscalation defaults to true; false sets no_new_privs.
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp: profile
            .map(|p| seccomp(p, seccomp_root))
            .unwrap_or_default(),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or_else(|| psc.and_then(|s| s.run_as_user)),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or_else(|| psc.and_then(|s| s.run_as_group)),
        supplemental_groups: supplemental,
        run_as_non_root: sc
            .and_then(|s| s.run_as_non_root)
            .or_else(|| psc.and_then(|s| s.run_as_non_root))
            .unwrap_or(false),
        unmasked_proc: sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_wins_over_pod() {
        let spec: PodSpec = serde_json::from_value(json!({
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000,
                                "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "securityContext": {"runAsUser": 1001,
                "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}]}))
        .expect("spec");
        let s = security_config(&spec, &spec.containers[0], Path::new("/x"));
        assert_eq!(s.run_as_user, Some(1001));
        assert_eq!(s.run_as_group, Some(3000));
        assert_eq!(s.supplemental_groups, vec![2000]);
        assert!(s.run_as_non_root && s.no_new_privileges && s.readonly_rootfs);
        assert_eq!(s.seccomp, Seccomp::RuntimeDefault);
        assert_eq!(s.capabilities_add, vec!["NET_ADMIN".to_string()]);
        assert_eq!(s.capabilities_drop, vec!["ALL".to_string()]);
        let plain: PodSpec =
            serde_json::from_value(json!({"containers": [{"name": "a"}]})).expect("spec");
        let s = security_config(&plain, &plain.containers[0], Path::new("/x"));
        assert!(!s.no_new_privileges && !s.privileged);
        assert_eq!(s.seccomp, Seccomp::Unconfined);
    }
}
