//! A real admission webhook server for tests (included by tests/webhook.rs
//! with `#[path]`, so other test binaries do not build it): HTTPS on 127.0.0.1 with a
//! random port, its own CA (rcgen) and a serving certificate for
//! 127.0.0.1, `localhost` and any extra names (`NAME.NAMESPACE.svc`). It
//! runs on its own tokio runtime in the test process; the path decides the
//! answer, and every AdmissionReview received is recorded.
//!
//! Paths (any query is ignored):
//! - `/allow`: allowed;
//! - `/deny`: refused with message "the test says no" (code 403);
//! - `/deny-invalid`: refused with code 422, reason Invalid;
//! - `/deny-quiet`: refused without a message;
//! - `/label`: allowed, with a JSONPatch adding label `webhook-added: "yes"`;
//! - `/b-label`: as `/label` but adds `b: "yes"`;
//! - `/a-sees-b`: adds annotation `a-saw-b: "true"` once label `b` is there;
//! - `/bad-patch`: a patch adding label `bad` with an invalid value;
//! - `/rename`: a patch changing `metadata.name`;
//! - `/replicas`: sets `spec.replicas` to 3 (for Scales);
//! - `/container`: sets `container` to "nope" (for exec options);
//! - `/proxy-path`: sets `path` to "/changed" (for proxy options);
//! - `/warn`: allowed, with warning "from the test webhook";
//! - `/sleep`: answers (allowed) after 5 s;
//! - `/garbage`: a body that is not JSON;
//! - `/wrong-uid`: allowed, with another uid;
//! - `/error500`: HTTP 500.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use serde_json::{Value, json};

type Log = Arc<Mutex<Vec<(String, Value)>>>;

pub struct WebhookServer {
    pub port: u16,
    /// The CA's certificate, PEM.
    pub ca_pem: String,
    log: Log,
    rt: Option<tokio::runtime::Runtime>,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn answer(uid: &str, response: Value) -> Value {
    let mut r = response;
    r["uid"] = json!(uid);
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
}

fn patch_response(uid: &str, ops: Value) -> Value {
    answer(
        uid,
        json!({"allowed": true, "patchType": "JSONPatch",
               "patch": b64(ops.to_string().as_bytes())}),
    )
}

/// A JSONPatch adding label `key: "yes"` (creating the map if need be).
fn add_label(obj: &Value, key: &str) -> Value {
    if obj
        .pointer("/metadata/labels")
        .is_some_and(Value::is_object)
    {
        json!([{"op": "add", "path": format!("/metadata/labels/{key}"), "value": "yes"}])
    } else {
        let mut m = BTreeMap::new();
        m.insert(key, "yes");
        json!([{"op": "add", "path": "/metadata/labels", "value": m}])
    }
}

async fn respond(path: &str, review: &Value) -> http::Response<Full<Bytes>> {
    let uid = review
        .pointer("/request/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let obj = review
        .pointer("/request/object")
        .cloned()
        .unwrap_or(Value::Null);
    let json_resp = |v: Value| {
        http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap_or_default()
    };
    match path {
        "/allow" => json_resp(answer(&uid, json!({"allowed": true}))),
        "/deny" => json_resp(answer(
            &uid,
            json!({"allowed": false, "status": {"code": 403, "message": "the test says no"}}),
        )),
        "/deny-invalid" => json_resp(answer(
            &uid,
            json!({"allowed": false, "status": {"code": 422, "reason": "Invalid", "message": "spec is wrong"}}),
        )),
        "/deny-quiet" => json_resp(answer(&uid, json!({"allowed": false}))),
        "/label" => json_resp(patch_response(&uid, add_label(&obj, "webhook-added"))),
        "/b-label" => json_resp(patch_response(&uid, add_label(&obj, "b"))),
        "/a-sees-b" => {
            if obj.pointer("/metadata/labels/b").is_some() {
                let ops = if obj
                    .pointer("/metadata/annotations")
                    .is_some_and(Value::is_object)
                {
                    json!([{"op": "add", "path": "/metadata/annotations/a-saw-b", "value": "true"}])
                } else {
                    json!([{"op": "add", "path": "/metadata/annotations", "value": {"a-saw-b": "true"}}])
                };
                json_resp(patch_response(&uid, ops))
            } else {
                json_resp(answer(&uid, json!({"allowed": true})))
            }
        }
        "/bad-patch" => json_resp(patch_response(
            &uid,
            json!([{"op": "add", "path": "/metadata/labels/bad", "value": "not valid!"}]),
        )),
        "/rename" => json_resp(patch_response(
            &uid,
            json!([{"op": "replace", "path": "/metadata/name", "value": "renamed"}]),
        )),
        "/replicas" => json_resp(patch_response(
            &uid,
            json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
        )),
        "/container" => json_resp(patch_response(
            &uid,
            json!([{"op": "add", "path": "/container", "value": "nope"}]),
        )),
        "/proxy-path" => json_resp(patch_response(
            &uid,
            json!([{"op": "add", "path": "/path", "value": "/changed"}]),
        )),
        "/warn" => json_resp(answer(
            &uid,
            json!({"allowed": true, "warnings": ["from the test webhook"]}),
        )),
        "/sleep" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json_resp(answer(&uid, json!({"allowed": true})))
        }
        "/garbage" => http::Response::new(Full::new(Bytes::from_static(b"this is not json"))),
        "/wrong-uid" => json_resp(answer("not-the-uid", json!({"allowed": true}))),
        "/error500" => http::Response::builder()
            .status(500)
            .body(Full::new(Bytes::from_static(b"webhook broke")))
            .unwrap_or_default(),
        _ => http::Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"no such path")))
            .unwrap_or_default(),
    }
}

impl WebhookServer {
    pub fn start() -> Self {
        Self::start_with_names(&[])
    }

    /// With extra DNS names in the serving certificate.
    pub fn start_with_names(names: &[&str]) -> Self {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "webhook-test-ca");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::from_ca_cert_der(ca.der(), &ca_key).expect("issuer");
        let key = KeyPair::generate().expect("key");
        let mut dns: Vec<String> = vec!["localhost".into()];
        dns.extend(names.iter().map(|s| s.to_string()));
        let mut params = CertificateParams::new(dns).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let cert = params.signed_by(&key, &issuer).expect("serving cert");
        let certs = vec![cert.der().clone()];
        let key_der =
            rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .expect("server config");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log: Log = Default::default();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let log2 = log.clone();
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let log = log2.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let review: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                if let Ok(mut l) = log.lock() {
                                    l.push((path.clone(), review.clone()));
                                }
                                Ok::<_, Infallible>(respond(&path, &review).await)
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        WebhookServer {
            port,
            ca_pem: ca.pem(),
            log,
            rt: Some(rt),
        }
    }

    /// The caBundle field's value (base64 of the CA's PEM).
    pub fn ca_bundle(&self) -> String {
        b64(self.ca_pem.as_bytes())
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The AdmissionReviews received on `path`, oldest first.
    pub fn received(&self, path: &str) -> Vec<Value> {
        self.log
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(p, _)| p == path)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut l) = self.log.lock() {
            l.clear();
        }
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
