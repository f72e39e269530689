//! LimitRange admission through stock kubectl: a namespace's LimitRange
//! defaults the resources of new pods (with upstream's annotation), refuses
//! pods and claims outside its bounds with upstream's 403 messages, and
//! leaves other namespaces alone.

mod common;

use common::Server;

const LIMITS: &str = r#"
apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 100m}
    max: {cpu: "1", memory: 1Gi}
    min: {cpu: 50m}
  - type: Pod
    max: {cpu: 1500m}
  - type: PersistentVolumeClaim
    min: {storage: 1Gi}
    max: {storage: 5Gi}
"#;

fn pod(name: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n{resources}"
    )
}

fn setup() -> Server {
    let s = Server::start();
    s.k(&["create", "namespace", "lr"]);
    s.k_in(LIMITS, &["-n", "lr", "apply", "-f", "-"]);
    s
}

#[test]
fn defaults_fill_in_missing_requests_and_limits() {
    let s = setup();
    // The LimitRange's own defaulting: defaultRequest.memory from default.
    let lr = s.k_json(&["-n", "lr", "get", "limitrange", "limits", "-o", "json"]);
    assert_eq!(lr["spec"]["limits"][0]["defaultRequest"]["memory"], "256Mi");

    s.k_in(&pod("bare", ""), &["-n", "lr", "apply", "-f", "-"]);
    let p = s.k_json(&["-n", "lr", "get", "pod", "bare", "-o", "json"]);
    let r = &p["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"]["cpu"], "500m", "{r}");
    assert_eq!(r["limits"]["memory"], "256Mi", "{r}");
    assert_eq!(r["requests"]["cpu"], "100m", "{r}");
    assert_eq!(r["requests"]["memory"], "256Mi", "{r}");
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );

    // What the pod says stays; only the missing ones are filled in.
    s.k_in(
        &pod(
            "half",
            "    resources: {limits: {cpu: 800m}, requests: {cpu: 800m}}",
        ),
        &["-n", "lr", "apply", "-f", "-"],
    );
    let p = s.k_json(&["-n", "lr", "get", "pod", "half", "-o", "json"]);
    let r = &p["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"]["cpu"], "800m", "{r}");
    assert_eq!(r["requests"]["cpu"], "800m", "{r}");
    assert_eq!(r["limits"]["memory"], "256Mi", "{r}");

    // Another namespace has no LimitRange: nothing is added.
    s.k_in(&pod("free", ""), &["-n", "default", "apply", "-f", "-"]);
    let p = s.k_json(&["-n", "default", "get", "pod", "free", "-o", "json"]);
    assert!(
        p["spec"]["containers"][0]["resources"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{p}"
    );
    assert!(
        p["metadata"]["annotations"]
            .get("kubernetes.io/limit-ranger")
            .is_none()
    );
}

#[test]
fn pods_outside_the_bounds_are_forbidden_with_upstream_messages() {
    let s = setup();
    let err = s.k_in_err(
        &pod("big", "    resources: {limits: {cpu: \"2\"}}"),
        &["-n", "lr", "create", "-f", "-"],
    );
    assert!(
        err.contains(
            "pods \"big\" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, maximum cpu usage per Pod is 1500m, but limit is 2]"
        ),
        "{err}"
    );
    let err = s.k_in_err(
        &pod(
            "tiny",
            "    resources: {requests: {cpu: 10m}, limits: {cpu: 10m}}",
        ),
        &["-n", "lr", "create", "-f", "-"],
    );
    assert!(
        err.contains(
            "pods \"tiny\" is forbidden: minimum cpu usage per Container is 50m, but request is 10m"
        ),
        "{err}"
    );
    // Two containers within the Container bounds, over the Pod's.
    let two = "apiVersion: v1\nkind: Pod\nmetadata: {name: two}\nspec:\n  containers:\n  - {name: a, image: busybox, resources: {limits: {cpu: 800m}}}\n  - {name: b, image: busybox, resources: {limits: {cpu: 800m}}}\n";
    let err = s.k_in_err(two, &["-n", "lr", "create", "-f", "-"]);
    assert!(
        err.contains("maximum cpu usage per Pod is 1500m, but limit is 1600m"),
        "{err}"
    );
    // A dry run is refused the same way and stores nothing.
    let err = s.k_in_err(
        &pod("big", "    resources: {limits: {cpu: \"2\"}}"),
        &["-n", "lr", "create", "--dry-run=server", "-f", "-"],
    );
    assert!(err.contains("is forbidden"), "{err}");
    assert!(
        s.k(&["-n", "lr", "get", "pods", "-o", "name"])
            .trim()
            .is_empty()
    );
}

#[test]
fn claims_are_bounded_by_their_storage_request() {
    let s = setup();
    let pvc = |size: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n"
        )
    };
    let err = s.k_in_err(&pvc("512Mi"), &["-n", "lr", "create", "-f", "-"]);
    assert!(
        err.contains("persistentvolumeclaims \"data\" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 512Mi"),
        "{err}"
    );
    s.k_in(&pvc("2Gi"), &["-n", "lr", "create", "-f", "-"]);
    let err = s.k_in_err(
        &pvc("10Gi").replace("name: data", "name: huge"),
        &["-n", "lr", "create", "-f", "-"],
    );
    assert!(
        err.contains("maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi"),
        "{err}"
    );
}

#[test]
fn max_limit_request_ratio_bounds_how_far_limits_exceed_requests() {
    let s = Server::start();
    s.k(&["create", "namespace", "ratio"]);
    s.k_in(
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: r}\nspec:\n  limits:\n  - type: Container\n    maxLimitRequestRatio: {memory: \"2\"}\n",
        &["-n", "ratio", "apply", "-f", "-"],
    );
    let err = s.k_in_err(
        &pod(
            "wide",
            "    resources: {requests: {memory: 100Mi}, limits: {memory: 300Mi}}",
        ),
        &["-n", "ratio", "create", "-f", "-"],
    );
    assert!(
        err.contains(
            "pods \"wide\" is forbidden: memory max limit to request ratio per Container is 2, but provided ratio is 3.000000"
        ),
        "{err}"
    );
    s.k_in(
        &pod(
            "narrow",
            "    resources: {requests: {memory: 100Mi}, limits: {memory: 200Mi}}",
        ),
        &["-n", "ratio", "create", "-f", "-"],
    );
}
