//! Stock kubectl (v1.33) against a fresh `rk3s server`: the cluster-level
//! commands, discovery, the bootstrap objects and the written kubeconfig.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Server, json, lines, squeeze};

#[test]
fn version_reports_v1_33() {
    let s = Server::start();
    let v = json(&s.k(&["version", "-o", "json"]));
    let sv = &v["serverVersion"];
    let git = sv["gitVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no serverVersion.gitVersion in {v}"));
    assert!(
        git.starts_with("v1.33."),
        "server gitVersion {git} is not v1.33.x"
    );
    assert_eq!(sv["major"], "1", "{sv}");
    assert_eq!(sv["minor"], "33", "{sv}");
    // Go's names for the architecture, as upstream reports them.
    let goarch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(sv["platform"], format!("linux/{goarch}"), "{sv}");
    // The plain form prints both versions and no skew warning.
    let plain = s.kubectl(&["version"]);
    let out = common::stdout(&plain);
    assert!(out.contains(&format!("Server Version: {git}")), "{out}");
    assert!(
        !common::stderr(&plain).contains("WARNING"),
        "version skew warning: {}",
        common::stderr(&plain)
    );
}

#[test]
fn version_and_health_need_no_credentials() {
    let mut s = Server::start();
    for path in ["/version", "/healthz", "/livez", "/readyz"] {
        let r = s.request(common::Req::new("GET", path).anonymous());
        assert_eq!(r.status, 200, "anonymous GET {path}: {}", r.snippet());
    }
    let v = s
        .request(common::Req::new("GET", "/version").anonymous())
        .json();
    assert!(
        v["gitVersion"].as_str().unwrap_or("").starts_with("v1.33."),
        "{v}"
    );
    assert_eq!(
        s.request(common::Req::new("GET", "/healthz").anonymous())
            .text(),
        "ok"
    );
    // ?verbose lists each check and ends with the verdict, as upstream.
    let verbose = s
        .request(common::Req::new("GET", "/readyz?verbose").anonymous())
        .text();
    assert!(
        verbose
            .lines()
            .any(|l| l.starts_with("[+]") && l.ends_with(" ok")),
        "no per-check lines:\n{verbose}"
    );
    assert!(
        verbose.trim_end().ends_with("readyz check passed"),
        "{verbose}"
    );
    let livez = s
        .request(common::Req::new("GET", "/livez?verbose").anonymous())
        .text();
    assert!(livez.trim_end().ends_with("livez check passed"), "{livez}");
}

#[test]
fn cluster_info_points_at_the_server() {
    let s = Server::start();
    let out = s.k(&["cluster-info"]);
    // kubectl colours the output; strip ANSI escapes before matching.
    let plain: String = strip_ansi(&out);
    let want = format!("Kubernetes control plane is running at {}", s.url());
    assert!(plain.contains(&want), "wanted {want:?} in:\n{plain}");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Rows of `kubectl api-resources` as upstream 1.33 prints them (columns
/// squeezed): NAME SHORTNAMES APIVERSION NAMESPACED KIND.
const API_RESOURCES: &[&str] = &[
    "pods po v1 true Pod",
    "services svc v1 true Service",
    "endpoints ep v1 true Endpoints",
    "configmaps cm v1 true ConfigMap",
    "secrets v1 true Secret",
    "serviceaccounts sa v1 true ServiceAccount",
    "events ev v1 true Event",
    "nodes no v1 false Node",
    "namespaces ns v1 false Namespace",
    "persistentvolumes pv v1 false PersistentVolume",
    "persistentvolumeclaims pvc v1 true PersistentVolumeClaim",
    "limitranges limits v1 true LimitRange",
    "resourcequotas quota v1 true ResourceQuota",
    "replicationcontrollers rc v1 true ReplicationController",
    "podtemplates v1 true PodTemplate",
    "deployments deploy apps/v1 true Deployment",
    "replicasets rs apps/v1 true ReplicaSet",
    "statefulsets sts apps/v1 true StatefulSet",
    "daemonsets ds apps/v1 true DaemonSet",
    "controllerrevisions apps/v1 true ControllerRevision",
    "jobs batch/v1 true Job",
    "cronjobs cj batch/v1 true CronJob",
    "horizontalpodautoscalers hpa autoscaling/v2 true HorizontalPodAutoscaler",
    "poddisruptionbudgets pdb policy/v1 true PodDisruptionBudget",
    "ingresses ing networking.k8s.io/v1 true Ingress",
    "ingressclasses networking.k8s.io/v1 false IngressClass",
    "networkpolicies netpol networking.k8s.io/v1 true NetworkPolicy",
    "endpointslices discovery.k8s.io/v1 true EndpointSlice",
    "leases coordination.k8s.io/v1 true Lease",
    "roles rbac.authorization.k8s.io/v1 true Role",
    "rolebindings rbac.authorization.k8s.io/v1 true RoleBinding",
    "clusterroles rbac.authorization.k8s.io/v1 false ClusterRole",
    "clusterrolebindings rbac.authorization.k8s.io/v1 false ClusterRoleBinding",
    "storageclasses sc storage.k8s.io/v1 false StorageClass",
    "csidrivers storage.k8s.io/v1 false CSIDriver",
    "csinodes storage.k8s.io/v1 false CSINode",
    "volumeattachments storage.k8s.io/v1 false VolumeAttachment",
    "priorityclasses pc scheduling.k8s.io/v1 false PriorityClass",
    "runtimeclasses node.k8s.io/v1 false RuntimeClass",
    "events ev events.k8s.io/v1 true Event",
    "certificatesigningrequests csr certificates.k8s.io/v1 false CertificateSigningRequest",
    "mutatingwebhookconfigurations admissionregistration.k8s.io/v1 false MutatingWebhookConfiguration",
    "validatingwebhookconfigurations admissionregistration.k8s.io/v1 false ValidatingWebhookConfiguration",
    "customresourcedefinitions crd,crds apiextensions.k8s.io/v1 false CustomResourceDefinition",
];

#[test]
fn api_resources_lists_the_builtin_kinds() {
    let s = Server::start();
    let out = s.k(&["api-resources"]);
    let mut rows = out.lines();
    let header = squeeze(rows.next().unwrap_or(""));
    assert_eq!(header, "NAME SHORTNAMES APIVERSION NAMESPACED KIND");
    let rows: Vec<String> = rows.map(squeeze).collect();
    let missing: Vec<&&str> = API_RESOURCES
        .iter()
        .filter(|want| !rows.iter().any(|r| r == **want))
        .collect();
    assert!(
        missing.is_empty(),
        "api-resources lacks rows {missing:#?}\nit printed:\n{out}"
    );

    // Categories: `kubectl get all` expands to exactly upstream's set.
    let all = lines(&s.k(&["api-resources", "--categories=all", "-o", "name"]));
    let want = lines(
        "pods\nreplicationcontrollers\nservices\ndaemonsets.apps\ndeployments.apps\nreplicasets.apps\n\
         statefulsets.apps\nhorizontalpodautoscalers.autoscaling\ncronjobs.batch\njobs.batch",
    );
    assert_eq!(all, want, "category all");

    // Verbs in the wide output (no subresources as rows).
    let wide = s.k(&["api-resources", "-o", "wide", "--api-group=apps"]);
    let deploy = wide
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap_or_else(|| panic!("no deployments row:\n{wide}"));
    for verb in [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "update",
        "watch",
    ] {
        assert!(
            deploy.contains(verb),
            "deployments verbs lack {verb}: {deploy}"
        );
    }
    assert!(
        deploy.contains("all"),
        "deployments categories lack all: {deploy}"
    );
    assert!(
        !wide.contains("deployments/status"),
        "subresources must not be listed:\n{wide}"
    );
}

#[test]
fn api_versions_lists_every_group_version() {
    let s = Server::start();
    let got = lines(&s.k(&["api-versions"]));
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v1",
        "autoscaling/v2",
        "policy/v1",
        "networking.k8s.io/v1",
        "discovery.k8s.io/v1",
        "coordination.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
        "storage.k8s.io/v1",
        "scheduling.k8s.io/v1",
        "node.k8s.io/v1",
        "events.k8s.io/v1",
        "certificates.k8s.io/v1",
        "admissionregistration.k8s.io/v1",
        "apiextensions.k8s.io/v1",
    ] {
        assert!(
            got.iter().any(|g| g == gv),
            "api-versions lacks {gv}: {got:?}"
        );
    }
}

#[test]
fn discovery_documents() {
    let mut s = Server::start();
    let api = s.get_json("/api");
    assert_eq!(api["kind"], "APIVersions", "{api}");
    assert_eq!(api["versions"][0], "v1");
    let v1 = s.get_json("/api/v1");
    assert_eq!(v1["kind"], "APIResourceList");
    let pods = v1["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "pods"))
        .unwrap_or_else(|| panic!("no pods in /api/v1: {v1}"));
    assert_eq!(pods["namespaced"], true);
    assert_eq!(pods["kind"], "Pod");
    assert_eq!(pods["shortNames"][0], "po");
    let apis = s.get_json("/apis");
    assert_eq!(apis["kind"], "APIGroupList");
    let autoscaling = apis["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == "autoscaling"))
        .unwrap_or_else(|| panic!("no autoscaling group: {apis}"));
    assert_eq!(
        autoscaling["preferredVersion"]["groupVersion"],
        "autoscaling/v2"
    );
    let apps = s.get_json("/apis/apps/v1");
    assert_eq!(apps["groupVersion"], "apps/v1");

    // Aggregated discovery, as kubectl 1.33 asks for it first.
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    for path in ["/api", "/apis"] {
        let r = s.request(common::Req::new("GET", path).header("Accept", accept));
        assert_eq!(r.status, 200, "{path}: {}", r.snippet());
        let doc = r.json();
        assert_eq!(doc["kind"], "APIGroupDiscoveryList", "{path}: {doc}");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2", "{path}");
        let ct = r.header("content-type").unwrap_or_default();
        assert!(
            ct.contains("as=APIGroupDiscoveryList"),
            "{path} content-type {ct}"
        );
    }
}

#[test]
fn explain_uses_the_served_openapi() {
    let s = Server::start();
    let out = s.k(&["explain", "pods.spec.containers"]);
    for want in [
        "KIND:       Pod",
        "VERSION:    v1",
        "FIELD: containers <[]Container>",
        "DESCRIPTION:",
        "FIELDS:",
    ] {
        assert!(out.contains(want), "explain lacks {want:?}:\n{out}");
    }
    let fields: Vec<String> = out.lines().map(squeeze).collect();
    for want in [
        "name <string> -required-",
        "image <string>",
        "ports <[]ContainerPort>",
        "env <[]EnvVar>",
    ] {
        assert!(
            fields.iter().any(|l| l == want),
            "explain lacks field line {want:?}:\n{out}"
        );
    }
    let dep = s.k(&["explain", "deployment.spec.strategy.rollingUpdate.maxSurge"]);
    assert!(dep.contains("GROUP:      apps"), "{dep}");
    assert!(dep.contains("FIELD: maxSurge <IntOrString>"), "{dep}");
}

#[test]
fn bootstrap_namespaces_and_kubernetes_service() {
    let s = Server::start();
    let ns = lines(&s.k(&["get", "namespaces", "-o", "name"]));
    for want in [
        "namespace/default",
        "namespace/kube-node-lease",
        "namespace/kube-public",
        "namespace/kube-system",
    ] {
        assert!(ns.iter().any(|n| n == want), "missing {want}: {ns:?}");
    }
    let table = s.k(&["get", "ns"]);
    assert_eq!(
        squeeze(table.lines().next().unwrap_or("")),
        "NAME STATUS AGE"
    );
    for row in table.lines().skip(1) {
        assert_eq!(
            squeeze(row).split(' ').nth(1),
            Some("Active"),
            "namespace not Active: {row}"
        );
    }

    let svc = s.k_json(&["get", "service", "kubernetes", "-n", "default"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.1", "{svc}");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["name"], "https");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(
        svc["spec"]["ports"][0]["targetPort"], s.port,
        "targetPort is the serving port"
    );
    assert_eq!(svc["metadata"]["labels"]["component"], "apiserver");
    assert_eq!(svc["metadata"]["labels"]["provider"], "kubernetes");
    let row = squeeze(s.k(&["get", "svc", "kubernetes", "--no-headers"]).trim());
    assert!(
        row.starts_with("kubernetes ClusterIP 10.43.0.1 <none> 443/TCP "),
        "{row}"
    );
}

#[test]
fn kubeconfig_files_are_written() {
    let s = Server::start();
    assert!(s.kubeconfig.exists(), "{} missing", s.kubeconfig.display());
    let written = std::fs::metadata(&s.written_kubeconfig).unwrap_or_else(|e| {
        panic!(
            "--write-kubeconfig file {}: {e}",
            s.written_kubeconfig.display()
        )
    });
    assert_eq!(
        written.permissions().mode() & 0o777,
        0o600,
        "default --write-kubeconfig-mode is 0600"
    );
    let admin = std::fs::metadata(&s.kubeconfig).expect("admin kubeconfig");
    assert_eq!(
        admin.permissions().mode() & 0o077,
        0,
        "admin kubeconfig must not be group/world readable"
    );
    // The written copy works on its own, with the same identity.
    let o = common::run(
        std::process::Command::new(common::kubectl_bin())
            .env("HOME", s.root.join("home"))
            .env("KUBECONFIG", &s.written_kubeconfig)
            .args(["auth", "whoami", "-o", "json"]),
        None,
        std::time::Duration::from_secs(60),
    );
    // `auth whoami` needs SelfSubjectReview (authentication.k8s.io); when it
    // is not served, fall back to a plain read that still proves the file works.
    if o.status.success() {
        let who = json(&common::stdout(&o));
        assert_eq!(
            who["status"]["userInfo"]["username"], "system:admin",
            "{who}"
        );
        let groups = who["status"]["userInfo"]["groups"].to_string();
        assert!(groups.contains("system:masters"), "{who}");
    } else {
        let o = common::run(
            std::process::Command::new(common::kubectl_bin())
                .env("HOME", s.root.join("home"))
                .env("KUBECONFIG", &s.written_kubeconfig)
                .args(["get", "ns", "default", "-o", "name"]),
            None,
            std::time::Duration::from_secs(60),
        );
        assert!(
            o.status.success(),
            "written kubeconfig does not work: {}",
            common::stderr(&o)
        );
        assert_eq!(common::stdout(&o).trim(), "namespace/default");
    }
}

#[test]
fn write_kubeconfig_mode_is_honoured() {
    let s = Server::builder()
        .arg("--write-kubeconfig-mode")
        .arg("0644")
        .start();
    let mode = std::fs::metadata(&s.written_kubeconfig)
        .expect("written kubeconfig")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn tls_san_is_in_the_serving_certificate() {
    let mut s = Server::builder()
        .arg("--tls-san")
        .arg("rk3s.example")
        .arg("--tls-san")
        .arg("10.9.8.7")
        .start();
    let creds = s.creds();
    let curl = |host: &str| {
        common::run(
            std::process::Command::new("curl")
                .args([
                    "-sS",
                    "--noproxy",
                    "*",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--cacert",
                ])
                .arg(&creds.ca)
                .arg("--resolve")
                .arg(format!("{host}:{}:127.0.0.1", s.port))
                .arg(format!("https://{host}:{}/version", s.port)),
            None,
            std::time::Duration::from_secs(30),
        )
    };
    for ok in [
        "rk3s.example",
        "localhost",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        let o = curl(ok);
        assert!(
            o.status.success(),
            "serving cert should cover {ok}: {}",
            common::stderr(&o)
        );
        assert_eq!(common::stdout(&o), "200");
    }
    let bad = curl("not-a-san.example");
    assert!(
        !bad.status.success(),
        "serving cert must not cover arbitrary names"
    );
    assert!(
        common::stderr(&bad).contains("certificate"),
        "{}",
        common::stderr(&bad)
    );
    // IP SANs: the first service IP and --tls-san addresses, checked with openssl.
    let text = std::process::Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", s.port))
        .args(["-servername", "localhost", "-showcerts"])
        .stdin(std::process::Stdio::null())
        .output();
    if let Ok(o) = text {
        let pem = common::stdout(&o);
        let start = pem.find("-----BEGIN CERTIFICATE-----");
        let end = pem.find("-----END CERTIFICATE-----");
        if let (Some(a), Some(b)) = (start, end) {
            let cert = &pem[a..b + "-----END CERTIFICATE-----".len()];
            let decoded = common::run(
                std::process::Command::new("openssl").args([
                    "x509",
                    "-noout",
                    "-ext",
                    "subjectAltName",
                ]),
                Some(cert.as_bytes()),
                std::time::Duration::from_secs(30),
            );
            let sans = common::stdout(&decoded);
            for ip in [
                "IP Address:127.0.0.1",
                "IP Address:10.43.0.1",
                "IP Address:10.9.8.7",
            ] {
                assert!(sans.contains(ip), "serving cert SANs lack {ip}: {sans}");
            }
        }
    }
}

#[test]
fn credentials_are_reused_across_restarts() {
    let mut s = Server::start();
    let before = std::fs::read(&s.kubeconfig).expect("kubeconfig");
    s.restart();
    let after = std::fs::read(&s.kubeconfig).expect("kubeconfig");
    assert_eq!(
        before, after,
        "the admin kubeconfig (CA, client cert) must survive a restart"
    );
    assert_eq!(
        s.k(&["get", "ns", "kube-system", "-o", "name"]).trim(),
        "namespace/kube-system"
    );
}

/// Flags win over env (`RK3S_<FLAG>`), env wins over the config file.
#[test]
fn configuration_precedence_flag_env_file() {
    let (p_file, p_env, p_flag) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let file = format!("https-port: {p_file}\nservice-cidr: 10.44.0.0/16\n");

    let s = Server::builder()
        .without_port_flag()
        .expect_port(p_file)
        .config_yaml(file.clone())
        .start();
    assert!(s.url().ends_with(&format!(":{p_file}")));
    // service-cidr from the file: the kubernetes Service takes its first IP.
    let ip = s.k(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(ip, "10.44.0.1", "service-cidr from the config file");
    drop(s);

    let s = Server::builder()
        .without_port_flag()
        .expect_port(p_env)
        .config_yaml(file.clone())
        .env("RK3S_HTTPS_PORT", p_env.to_string())
        .start();
    let server = s.k(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    assert_eq!(
        server,
        format!("https://127.0.0.1:{p_env}"),
        "env must win over the config file"
    );
    drop(s);

    let s = Server::builder()
        .without_port_flag()
        .expect_port(p_flag)
        .arg("--https-port")
        .arg(p_flag.to_string())
        .config_yaml(file)
        .env("RK3S_HTTPS_PORT", p_env.to_string())
        .start();
    let server = s.k(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    assert_eq!(
        server,
        format!("https://127.0.0.1:{p_flag}"),
        "the flag must win over env"
    );
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut s = Server::start();
    s.k(&["create", "configmap", "before-stop", "--from-literal=a=b"]);
    let status = s.stop();
    assert!(status.success());
    // Nothing is listening any more.
    let probe = std::net::TcpStream::connect(("127.0.0.1", s.port));
    assert!(
        probe.is_err(),
        "port {} still accepts connections after shutdown",
        s.port
    );
    s.start_again();
    assert_eq!(
        s.k(&["get", "cm", "before-stop", "-o", "jsonpath={.data.a}"]),
        "b"
    );
}
