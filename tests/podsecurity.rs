//! PodSecurity admission through stock kubectl: a namespace's
//! `pod-security.kubernetes.io/*` labels refuse (enforce) or warn about
//! (warn) pods and workloads that break the Pod Security Standards, with
//! upstream's messages; relabelling warns about existing pods; malformed
//! labels are refused.

mod common;

use std::time::Duration;

use common::{Server, wait_until};

fn pod(name: &str, extra_spec: &str, container_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{extra_spec}  containers:\n  - name: c\n    image: busybox\n{container_extra}"
    )
}

const HARDENED_SPEC: &str =
    "  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n";
const HARDENED_CONTAINER: &str =
    "    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn enforce_refuses_pods_that_break_the_level() {
    let s = Server::start();
    s.k(&["create", "namespace", "locked"]);
    s.k(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let err = s.k_in_err(
        &pod("plain", "", ""),
        &["-n", "locked", "create", "-f", "-"],
    );
    assert!(
        err.contains(
            "pods \"plain\" is forbidden: violates PodSecurity \"restricted:latest\": \
             allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        ),
        "{err}"
    );
    s.k_in(
        &pod("hardened", HARDENED_SPEC, HARDENED_CONTAINER),
        &["-n", "locked", "create", "-f", "-"],
    );
    s.k(&["-n", "locked", "get", "pod", "hardened"]);

    // A Deployment is admitted with a warning; its ReplicaSet's pods are
    // refused, which the ReplicaSet reports as FailedCreate.
    let out = s.kubectl(&[
        "-n",
        "locked",
        "create",
        "deployment",
        "web",
        "--image=busybox",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("Warning: would violate PodSecurity \"restricted:latest\""),
        "{}",
        stderr_of(&out)
    );
    let ok = wait_until(Duration::from_secs(30), || {
        s.k(&["-n", "locked", "get", "events", "-o", "json"])
            .contains("violates PodSecurity")
    });
    assert!(ok, "no FailedCreate event citing PodSecurity");
}

#[test]
fn warn_answers_with_warnings_and_admits() {
    let s = Server::start();
    s.k(&["create", "namespace", "watched"]);
    s.k(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/warn=baseline",
        "pod-security.kubernetes.io/warn-version=v1.33",
    ]);
    let out = s.kubectl_stdin(
        &pod("hostnet", "  hostNetwork: true\n", ""),
        &["-n", "watched", "create", "-f", "-"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(
            "Warning: would violate PodSecurity \"baseline:v1.33\": host namespaces (hostNetwork=true)"
        ),
        "{}",
        stderr_of(&out)
    );
    // A pod within the level: no warning.
    let out = s.kubectl_stdin(
        &pod("fine", "", ""),
        &["-n", "watched", "create", "-f", "-"],
    );
    assert!(out.status.success());
    assert!(
        !stderr_of(&out).contains("PodSecurity"),
        "{}",
        stderr_of(&out)
    );
    // No labels, no checks.
    let out = s.kubectl_stdin(
        &pod("hostnet", "  hostNetwork: true\n", ""),
        &["-n", "default", "create", "-f", "-"],
    );
    assert!(out.status.success());
    assert!(
        !stderr_of(&out).contains("PodSecurity"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn audit_admits_silently_and_records_the_violation() {
    let s = Server::start();
    s.k(&["create", "namespace", "audited"]);
    s.k(&[
        "label",
        "namespace",
        "audited",
        "pod-security.kubernetes.io/audit=baseline",
    ]);
    let out = s.kubectl_stdin(
        &pod("hostnet", "  hostNetwork: true\n", ""),
        &["-n", "audited", "create", "-f", "-"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        !stderr_of(&out).contains("PodSecurity"),
        "audit mode does not warn: {}",
        stderr_of(&out)
    );
    let recorded = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&s.log).is_ok_and(|l| {
            l.lines().any(|line| {
                line.contains("rk3s::audit")
                    && line.contains("name=\"hostnet\"")
                    && line.contains(
                        "pod-security.kubernetes.io/audit-violations: would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)",
                    )
            })
        })
    });
    assert!(recorded, "{}", s.log_tail(10));
    // Within the level: nothing recorded.
    s.k_in(
        &pod("fine", "", ""),
        &["-n", "audited", "create", "-f", "-"],
    );
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(!log.contains("name=\"fine\""), "{log}");
}

#[test]
fn a_stricter_label_warns_about_existing_pods_and_bad_labels_are_refused() {
    let s = Server::start();
    s.k(&["create", "namespace", "legacy"]);
    s.k_in(
        &pod("priv", "", "    securityContext: {privileged: true}\n"),
        &["-n", "legacy", "create", "-f", "-"],
    );
    let out = s.kubectl(&[
        "label",
        "namespace",
        "legacy",
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains(
            "Warning: existing pods in namespace \"legacy\" violate the new PodSecurity enforce level \"baseline:latest\""
        ),
        "{err}"
    );
    assert!(err.contains("Warning: priv: privileged"), "{err}");
    // The existing pod stays; new privileged pods are refused.
    s.k(&["-n", "legacy", "get", "pod", "priv"]);
    let err = s.k_in_err(
        &pod("priv2", "", "    securityContext: {privileged: true}\n"),
        &["-n", "legacy", "create", "-f", "-"],
    );
    assert!(
        err.contains("violates PodSecurity \"baseline:latest\": privileged (container \"c\" must not set securityContext.privileged=true)"),
        "{err}"
    );

    let err = s.k_err(&[
        "label",
        "namespace",
        "legacy",
        "--overwrite",
        "pod-security.kubernetes.io/enforce=strict",
    ]);
    assert!(
        err.contains(
            "metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\""
        ),
        "{err}"
    );
}
