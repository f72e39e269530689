//! Event recorder: writes core/v1 Events as upstream's recorder does,
//! aggregating repeats of the same event into one object with a count.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use parking_lot::Mutex;

/// Event types.
pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// (namespace, involved uid, type, reason, message): what makes events repeats.
type EventKey = (String, String, String, String, String);

#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    /// The node a kubelet's events come from (source.host, reportingInstance).
    host: Option<String>,
    /// (namespace, involved uid, type, reason, message) -> (event name, count)
    seen: Arc<Mutex<HashMap<EventKey, (String, i32)>>>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.to_string(),
            host: None,
            seen: Default::default(),
        }
    }

    /// Events from a node's agent name the node, as the kubelet's do.
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }

    /// Record an event about `obj`. Failures are logged, never returned:
    /// events are best effort, as upstream.
    pub async fn publish(&self, obj: &ObjectReference, type_: &str, reason: &str, message: &str) {
        if let Err(e) = self.try_publish(obj, type_, reason, message).await {
            tracing::debug!(reason, "event not recorded: {e}");
        }
    }

    async fn try_publish(
        &self,
        obj: &ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let ns = obj
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = jiff::Timestamp::now();
        let key = (
            ns.clone(),
            obj.uid.clone().unwrap_or_default(),
            type_.to_string(),
            reason.to_string(),
            message.to_string(),
        );
        let existing = self.seen.lock().get(&key).cloned();
        if let Some((name, count)) = existing {
            let patch = serde_json::json!({"count": count + 1, "lastTimestamp": Time(now)});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .is_ok()
            {
                self.seen.lock().insert(key, (name, count + 1));
                return Ok(());
            }
        }
        // Upstream names events <object>.<unique hex>.
        let name = format!(
            "{}.{:x}",
            obj.name.clone().unwrap_or_default(),
            rand::random::<u64>() >> 8
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns),
                ..Default::default()
            },
            involved_object: obj.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        api.create(&PostParams::default(), &ev).await?;
        let mut seen = self.seen.lock();
        // Bounded memory: forget old aggregation keys wholesale.
        if seen.len() > 4096 {
            seen.clear();
        }
        seen.insert(key, (name, 1));
        Ok(())
    }
}

/// An ObjectReference to a typed object.
pub fn reference<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}
