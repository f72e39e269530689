//! Every namespace gets a `default` ServiceAccount and a `kube-root-ca.crt`
//! ConfigMap holding the cluster CA, and both come back when deleted.

mod common;

use std::time::Duration;

use common::{Server, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn has(s: &Server, args: &[&str]) -> bool {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend(["--ignore-not-found", "-o", "name"]);
    !s.k(&a).trim().is_empty()
}

#[test]
fn default_service_account_in_every_namespace() {
    let s = Server::start();
    // The built-in namespaces have one too.
    for ns in ["default", "kube-system"] {
        assert!(
            wait_until(WAIT, || has(&s, &["sa", "default", "-n", ns])),
            "no default ServiceAccount in {ns}"
        );
    }
    s.k(&["create", "namespace", "team-a"]);
    assert!(
        wait_until(WAIT, || has(&s, &["sa", "default", "-n", "team-a"])),
        "no default ServiceAccount in team-a"
    );
    let first = s.k(&[
        "get",
        "sa",
        "default",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    s.k(&["delete", "sa", "default", "-n", "team-a"]);
    assert!(
        wait_until(WAIT, || {
            let uid = s.k(&[
                "get",
                "sa",
                "default",
                "-n",
                "team-a",
                "--ignore-not-found",
                "-o",
                "jsonpath={.metadata.uid}",
            ]);
            !uid.is_empty() && uid != first
        }),
        "the default ServiceAccount was not recreated"
    );
    // Other accounts are not touched.
    s.k(&["create", "sa", "robot", "-n", "team-a"]);
    s.k(&["delete", "sa", "robot", "-n", "team-a"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!has(&s, &["sa", "robot", "-n", "team-a"]));
}

#[test]
fn root_ca_config_map_in_every_namespace() {
    let mut s = Server::start();
    let ca = std::fs::read_to_string(s.creds().ca).expect("CA from the kubeconfig");
    s.k(&["create", "namespace", "team-b"]);
    let get_ca = |s: &Server| {
        s.k(&[
            "get",
            "cm",
            "kube-root-ca.crt",
            "-n",
            "team-b",
            "--ignore-not-found",
            "-o",
            r"jsonpath={.data.ca\.crt}",
        ])
    };
    assert!(
        wait_until(WAIT, || !get_ca(&s).is_empty()),
        "no kube-root-ca.crt in team-b"
    );
    assert_eq!(get_ca(&s).trim(), ca.trim());
    assert_eq!(
        s.k(&[
            "get",
            "cm",
            "kube-root-ca.crt",
            "-n",
            "team-b",
            "-o",
            r"jsonpath={.metadata.annotations.kubernetes\.io/description}"
        ]),
        "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
    );
    assert!(has(&s, &["cm", "kube-root-ca.crt", "-n", "default"]));
    // Tampering is reverted; deletion is undone.
    s.k(&[
        "patch",
        "cm",
        "kube-root-ca.crt",
        "-n",
        "team-b",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"bogus"}}"#,
    ]);
    assert!(
        wait_until(WAIT, || get_ca(&s).trim() == ca.trim()),
        "tampered kube-root-ca.crt not restored"
    );
    s.k(&["delete", "cm", "kube-root-ca.crt", "-n", "team-b"]);
    assert!(
        wait_until(WAIT, || get_ca(&s).trim() == ca.trim()),
        "deleted kube-root-ca.crt not recreated"
    );
}
