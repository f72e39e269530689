//! Bodies are encoded with k8s-pb's prost types (an encoder independent of
//! our table), with the zero values Go's marshaller writes for non-pointer
//! fields set explicitly, and compared with the JSON a JSON client sends.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::{Value, json};

use super::*;

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// The body kubectl sends: magic + runtime.Unknown around the object.
fn body(api_version: &str, kind: &str, object: &impl prost::Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

fn decode(api_version: &str, kind: &str, object: &impl prost::Message) -> Value {
    decode_object(&body(api_version, kind, object)).unwrap()
}

/// ObjectMeta as Go marshals a freshly built one: empty non-pointer strings
/// and a zero creationTimestamp are on the wire.
fn object_meta(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

fn int_port(port: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(port),
        str_val: s(""),
    }
}

fn named_port(name: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(name),
    }
}

/// A container with the zero fields Go writes.
fn container(name: &str, image: &str) -> core::Container {
    core::Container {
        name: s(name),
        image: s(image),
        working_dir: s(""),
        resources: Some(core::ResourceRequirements::default()),
        termination_message_path: s(""),
        termination_message_policy: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    }
}

#[test]
fn namespace() {
    let mut metadata = object_meta("pb", "");
    metadata.labels = labels(&[("team", "a")]);
    let ns = core::Namespace {
        metadata: Some(metadata),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("v1", "Namespace", &ns),
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "pb", "creationTimestamp": null, "labels": {"team": "a"}},
            "spec": {},
            "status": {}
        })
    );
}

#[test]
fn deployment_with_pod_template() {
    let mut c = container("nginx", "nginx:1.25");
    c.ports = vec![core::ContainerPort {
        name: s("http"),
        host_port: Some(0),
        container_port: Some(80),
        protocol: s("TCP"),
        host_ip: s(""),
    }];
    c.resources = Some(core::ResourceRequirements {
        limits: [
            ("cpu".to_string(), quantity("500m")),
            ("memory".to_string(), quantity("128Mi")),
        ]
        .into(),
        requests: [("cpu".to_string(), quantity("100m"))].into(),
        claims: vec![],
    });
    c.liveness_probe = Some(core::Probe {
        handler: Some(core::ProbeHandler {
            http_get: Some(core::HttpGetAction {
                path: s("/healthz"),
                port: Some(named_port("http")),
                host: s(""),
                scheme: s(""),
                http_headers: vec![],
            }),
            ..Default::default()
        }),
        initial_delay_seconds: Some(0),
        timeout_seconds: Some(0),
        period_seconds: Some(10),
        success_threshold: Some(0),
        failure_threshold: Some(0),
        termination_grace_period_seconds: None,
    });
    c.env = vec![core::EnvVar {
        name: s("MODE"),
        value: s(""),
        value_from: None,
    }];
    let mut template_meta = object_meta("", "");
    template_meta.labels = labels(&[("app", "web")]);
    let deploy = apps::Deployment {
        metadata: Some(object_meta("web", "pb")),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(core::PodSpec {
                    containers: vec![c],
                    restart_policy: s(""),
                    dns_policy: s(""),
                    service_account_name: s(""),
                    node_name: s(""),
                    host_network: Some(false),
                    scheduler_name: s(""),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s(""),
                rolling_update: None,
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("apps/v1", "Deployment", &deploy),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "pb", "creationTimestamp": null},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "MODE"}],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": "100m"}
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 10
                            }
                        }]
                    }
                },
                "strategy": {}
            },
            "status": {}
        })
    );
}

#[test]
fn secret_bytes_are_base64_and_pointer_false_is_kept() {
    let secret = core::Secret {
        metadata: Some(object_meta("s", "pb")),
        immutable: Some(false),
        data: [
            ("p".to_string(), b"q".to_vec()),
            ("empty".to_string(), vec![]),
        ]
        .into(),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
    };
    assert_eq!(
        decode("v1", "Secret", &secret),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "pb", "creationTimestamp": null},
            "immutable": false,
            "data": {"p": "cQ==", "empty": ""},
            "type": "Opaque"
        })
    );
}

#[test]
fn service_target_port_int_or_string() {
    let port = |name: &str, target: IntOrString| core::ServicePort {
        name: s(name),
        protocol: s("TCP"),
        port: Some(80),
        target_port: Some(target),
        node_port: Some(0),
        ..Default::default()
    };
    let svc = core::Service {
        metadata: Some(object_meta("svc", "pb")),
        spec: Some(core::ServiceSpec {
            ports: vec![port("a", int_port(8080)), port("b", named_port("web"))],
            selector: labels(&[("app", "svc")]),
            cluster_ip: s(""),
            r#type: s("ClusterIP"),
            session_affinity: s(""),
            external_name: s(""),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    assert_eq!(
        decode("v1", "Service", &svc),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "svc", "namespace": "pb", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "a", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "b", "protocol": "TCP", "port": 80, "targetPort": "web"}
                ],
                "selector": {"app": "svc"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        })
    );
}

#[test]
fn job_keeps_zero_backoff_limit() {
    let mut c = container("work", "busybox");
    c.command = vec!["sh".into(), "-c".into(), "true".into()];
    let job = batch::Job {
        metadata: Some(object_meta("j", "pb")),
        spec: Some(batch::JobSpec {
            backoff_limit: Some(0),
            completions: Some(1),
            parallelism: Some(1),
            suspend: Some(false),
            template: Some(core::PodTemplateSpec {
                metadata: Some(object_meta("", "")),
                spec: Some(core::PodSpec {
                    containers: vec![c],
                    restart_policy: s("Never"),
                    termination_grace_period_seconds: Some(0),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        decode("batch/v1", "Job", &job),
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j", "namespace": "pb", "creationTimestamp": null},
            "spec": {
                "backoffLimit": 0,
                "completions": 1,
                "parallelism": 1,
                "suspend": false,
                "template": {
                    "metadata": {"creationTimestamp": null},
                    "spec": {
                        "containers": [{
                            "name": "work",
                            "image": "busybox",
                            "command": ["sh", "-c", "true"],
                            "resources": {}
                        }],
                        "restartPolicy": "Never",
                        "terminationGracePeriodSeconds": 0
                    }
                }
            }
        })
    );
}

#[test]
fn inline_volume_sources_flatten() {
    let pod = core::Pod {
        metadata: Some(object_meta("p", "pb")),
        spec: Some(core::PodSpec {
            containers: vec![container("c", "busybox")],
            volumes: vec![core::Volume {
                name: s("cfg"),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference { name: s("cm") }),
                        items: vec![],
                        default_mode: Some(420),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
        status: None,
    };
    let v = decode("v1", "Pod", &pod);
    assert_eq!(
        v["spec"]["volumes"],
        json!([{"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420, "optional": false}}])
    );
}

#[test]
fn times_and_managed_fields() {
    let mut metadata = object_meta("l", "kube-node-lease");
    metadata.creation_timestamp = Some(meta::Time {
        seconds: Some(1_136_214_245),
        nanos: Some(0),
    });
    metadata.managed_fields = vec![meta::ManagedFieldsEntry {
        manager: s("kubectl"),
        operation: s("Update"),
        api_version: s("coordination.k8s.io/v1"),
        time: Some(meta::Time {
            seconds: Some(0),
            nanos: Some(0),
        }),
        fields_type: s("FieldsV1"),
        fields_v1: Some(meta::FieldsV1 {
            raw: Some(br#"{"f:spec":{}}"#.to_vec()),
        }),
        subresource: s(""),
    }];
    let lease = coordination::Lease {
        metadata: Some(metadata),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(0),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_136_214_245),
                nanos: Some(123_456_789),
            }),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("coordination.k8s.io/v1", "Lease", &lease),
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": "l",
                "namespace": "kube-node-lease",
                "creationTimestamp": "2006-01-02T15:04:05Z",
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "coordination.k8s.io/v1",
                    "time": "1970-01-01T00:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {}}
                }]
            },
            "spec": {
                "holderIdentity": "node-1",
                "leaseDurationSeconds": 0,
                "renewTime": "2006-01-02T15:04:05.123456Z"
            }
        })
    );
}

#[test]
fn self_subject_access_review() {
    let review = authz::SelfSubjectAccessReview {
        metadata: Some(object_meta("", "")),
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authz::ResourceAttributes {
                namespace: s("pb"),
                verb: s("create"),
                group: s(""),
                version: s(""),
                resource: s("pods"),
                subresource: s(""),
                name: s(""),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: Some(authz::SubjectAccessReviewStatus {
            allowed: Some(false),
            denied: Some(false),
            reason: s(""),
            evaluation_error: s(""),
        }),
    };
    assert_eq!(
        decode(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &review
        ),
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {"namespace": "pb", "verb": "create", "resource": "pods"}},
            // allowed has no omitempty upstream: a JSON client sends it
            "status": {"allowed": false}
        })
    );
}

#[test]
fn extra_values_are_string_lists() {
    let review = authz::SubjectAccessReview {
        metadata: Some(object_meta("", "")),
        spec: Some(authz::SubjectAccessReviewSpec {
            user: s("alice"),
            extra: [(
                "scopes".to_string(),
                authz::ExtraValue {
                    items: vec!["a".into(), "b".into()],
                },
            )]
            .into(),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode("authorization.k8s.io/v1", "SubjectAccessReview", &review);
    assert_eq!(
        v["spec"],
        json!({"user": "alice", "extra": {"scopes": ["a", "b"]}})
    );
}

#[test]
fn eviction_keeps_zero_grace_period() {
    let eviction = policy::Eviction {
        metadata: Some(object_meta("p", "pb")),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            dry_run: vec![],
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("policy/v1", "Eviction", &eviction),
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "p", "namespace": "pb", "creationTimestamp": null},
            "deleteOptions": {"gracePeriodSeconds": 0}
        })
    );
}

#[test]
fn raw_extension_embeds_json() {
    let rev = apps::ControllerRevision {
        metadata: Some(object_meta("r", "pb")),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"replicas":3}}"#.to_vec()),
        }),
        revision: Some(0),
    };
    assert_eq!(
        decode("apps/v1", "ControllerRevision", &rev),
        json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": "r", "namespace": "pb", "creationTimestamp": null},
            "data": {"spec": {"replicas": 3}},
            // required upstream (no omitempty): kept at zero
            "revision": 0
        })
    );
}

#[test]
fn crd_schema_unions_and_json() {
    let string_schema = apiext::JsonSchemaProps {
        r#type: s("string"),
        ..Default::default()
    };
    let root = apiext::JsonSchemaProps {
        r#type: s("object"),
        properties: [
            (
                "spec".to_string(),
                apiext::JsonSchemaProps {
                    r#type: s("object"),
                    x_kubernetes_preserve_unknown_fields: Some(true),
                    nullable: Some(false),
                    ..Default::default()
                },
            ),
            (
                "tags".to_string(),
                apiext::JsonSchemaProps {
                    r#type: s("array"),
                    items: Some(Box::new(apiext::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(string_schema.clone())),
                        j_son_schemas: vec![],
                    })),
                    max_items: Some(0),
                    ..Default::default()
                },
            ),
            (
                "size".to_string(),
                apiext::JsonSchemaProps {
                    r#type: s("integer"),
                    default: Some(apiext::Json {
                        raw: Some(b"5".to_vec()),
                    }),
                    maximum: Some(10.0),
                    minimum: Some(0.5),
                    r#enum: vec![
                        apiext::Json {
                            raw: Some(b"1".to_vec()),
                        },
                        apiext::Json {
                            raw: Some(b"5".to_vec()),
                        },
                    ],
                    ..Default::default()
                },
            ),
        ]
        .into(),
        additional_properties: Some(Box::new(apiext::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        dependencies: [(
            "a".to_string(),
            apiext::JsonSchemaPropsOrStringArray {
                schema: None,
                property: vec!["b".into()],
            },
        )]
        .into(),
        ..Default::default()
    };
    let crd = apiext::CustomResourceDefinition {
        metadata: Some(object_meta("widgets.example.com", "")),
        spec: Some(apiext::CustomResourceDefinitionSpec {
            group: s("example.com"),
            names: Some(apiext::CustomResourceDefinitionNames {
                plural: s("widgets"),
                kind: s("Widget"),
                ..Default::default()
            }),
            scope: s("Namespaced"),
            versions: vec![apiext::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(apiext::CustomResourceValidation {
                    open_apiv3_schema: Some(root),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let v = decode("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd);
    assert_eq!(
        v["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
                "size": {"type": "integer", "default": 5, "maximum": 10, "minimum": 0.5, "enum": [1, 5]}
            },
            "additionalProperties": false,
            "dependencies": {"a": ["b"]}
        })
    );
    assert_eq!(
        v["spec"]["names"],
        json!({"plural": "widgets", "kind": "Widget"})
    );
}

#[test]
fn packed_and_unpacked_repeated_numbers_agree() {
    // JobSpec.podFailurePolicy.rules[0].onExitCodes.values, built by hand:
    // OnExitCodesRequirement { operator = 2: "In", values = 3: [1, 2] }
    fn len(tag: u8, b: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2, b.len() as u8];
        out.extend_from_slice(b);
        out
    }
    let decode_values = |on_exit: Vec<u8>| {
        let rule = len(2, &on_exit); // PodFailurePolicyRule.onExitCodes = 2
        let policy = len(1, &rule); // PodFailurePolicy.rules = 1
        let spec = len(11, &policy); // JobSpec.podFailurePolicy = 11
        let job = len(2, &spec); // Job.spec = 2
        let unknown = [
            len(1, &[len(1, b"batch/v1"), len(2, b"Job")].concat()),
            len(2, &job),
        ]
        .concat();
        let v = decode_object(&[MAGIC, &unknown].concat()).unwrap();
        v["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"].clone()
    };
    let operator = len(2, b"In");
    let unpacked = decode_values([operator.clone(), vec![0x18, 1, 0x18, 2]].concat());
    let packed = decode_values([operator, len(3, &[1, 2])].concat());
    assert_eq!(unpacked, json!({"operator": "In", "values": [1, 2]}));
    assert_eq!(packed, unpacked);
}

#[test]
fn kinds_resolve_to_messages() {
    let name = |v: &str, k: &str| schema::message_for(v, k).map(|m| (m.module, m.name));
    assert_eq!(name("v1", "Namespace"), Some(("api.core.v1", "Namespace")));
    assert_eq!(
        name("storage.k8s.io/v1", "CSIDriver"),
        Some(("api.storage.v1", "CSIDriver"))
    );
    assert_eq!(
        name("rbac.authorization.k8s.io/v1", "ClusterRole"),
        Some(("api.rbac.v1", "ClusterRole"))
    );
    assert_eq!(
        name("v1", "DeleteOptions"),
        Some((schema::META_V1, "DeleteOptions"))
    );
    assert_eq!(name("example.com/v1", "Widget"), None);
    // Every built-in kind the server serves has a message.
    for def in crate::registry::catalogue::builtin() {
        let api_version = if def.group.is_empty() {
            def.version.clone()
        } else {
            format!("{}/{}", def.group, def.version)
        };
        assert!(
            schema::message_for(&api_version, &def.kind).is_some(),
            "{api_version} {}",
            def.kind
        );
    }
}

#[test]
fn json_names_come_from_the_openapi_schema() {
    let field = |v: &str, k: &str, tag: u32| {
        let m = schema::message_for(v, k).unwrap();
        m.field(tag).unwrap().json
    };
    // proto/prost spellings differ from these
    let ebs = MESSAGES
        .iter()
        .find(|m| m.module == "api.core.v1" && m.name == "AWSElasticBlockStoreVolumeSource")
        .unwrap();
    assert_eq!(ebs.field(1).unwrap().json, "volumeID");
    assert_eq!(field("v1", "ServiceSpec", 18), "clusterIPs");
    assert_eq!(field("v1", "PodStatus", 12), "podIPs");
    assert_eq!(field("v1", "ObjectMeta", 2), "generateName");
}

// ---- malformed input ---------------------------------------------------------

fn namespace_body() -> Vec<u8> {
    body(
        "v1",
        "Namespace",
        &core::Namespace {
            metadata: Some(object_meta("pb", "")),
            spec: Some(core::NamespaceSpec {
                finalizers: vec!["kubernetes".into()],
            }),
            status: None,
        },
    )
}

#[test]
fn bad_magic_is_an_error() {
    let mut b = namespace_body();
    b[0] = b'x';
    assert!(decode_object(&b).unwrap_err().contains("prefix"));
    assert!(decode_object(b"{}").is_err());
    assert!(decode_object(b"").is_err());
}

#[test]
fn truncated_bodies_are_errors() {
    let b = namespace_body();
    // Unknown = typeMeta (tag, len, bytes), raw, then two empty strings.
    let type_meta_end = MAGIC.len() + 2 + usize::from(b[MAGIC.len() + 1]);
    let raw_end = b.len() - 4;
    for n in MAGIC.len()..raw_end {
        // Cutting between two whole fields leaves a well-formed message.
        if n != type_meta_end {
            assert!(decode_object(&b[..n]).is_err(), "prefix of {n} bytes");
        }
    }
    assert!(decode_object(&b[..raw_end]).is_ok());
    // a varint that never ends
    let mut v = MAGIC.to_vec();
    v.extend([0x0a, 0xff, 0xff, 0xff]);
    assert!(decode_object(&v).is_err());
}

#[test]
fn wrong_wire_types_are_errors() {
    // Namespace.metadata (tag 1) sent as a varint
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Namespace"),
        }),
        raw: Some(vec![0x08, 0x01]),
        ..Default::default()
    };
    let b = [MAGIC, &unknown.encode_to_vec()].concat();
    let err = decode_object(&b).unwrap_err();
    assert!(err.contains("metadata"), "{err}");
}

#[test]
fn unknown_kinds_and_encodings_are_errors() {
    let unknown = |kind: &str, encoding: &str| {
        let u = Unknown {
            type_meta: Some(TypeMeta {
                api_version: s("v1"),
                kind: s(kind),
            }),
            raw: Some(vec![]),
            content_encoding: s(encoding),
            content_type: s(""),
        };
        [MAGIC, &u.encode_to_vec()].concat()
    };
    assert!(
        decode_object(&unknown("NoSuchKind", ""))
            .unwrap_err()
            .contains("NoSuchKind")
    );
    assert!(decode_object(&unknown("", "")).is_err());
    assert!(decode_object(&unknown("Namespace", "gzip")).is_err());
    assert_eq!(
        decode_object(&unknown("Namespace", "")).unwrap(),
        json!({"apiVersion": "v1", "kind": "Namespace"})
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let mut schema = apiext::JsonSchemaProps::default();
    for _ in 0..400 {
        schema = apiext::JsonSchemaProps {
            not: Some(Box::new(schema)),
            ..Default::default()
        };
    }
    let crd = apiext::CustomResourceDefinition {
        spec: Some(apiext::CustomResourceDefinitionSpec {
            versions: vec![apiext::CustomResourceDefinitionVersion {
                schema: Some(apiext::CustomResourceValidation {
                    open_apiv3_schema: Some(schema),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let b = body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd);
    assert!(decode_object(&b).unwrap_err().contains("deeper"));
}

#[test]
fn corrupted_bodies_never_panic() {
    let base = namespace_body();
    // xorshift: deterministic pseudo-random mutations
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
        let mut b = base.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = MAGIC.len() + (next() as usize) % (b.len() - MAGIC.len());
            b[i] = next() as u8;
        }
        let _ = decode_object(&b);
    }
}
