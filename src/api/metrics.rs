//! Prometheus metrics on /metrics: requests by verb, resource and code,
//! request and store latency, open watches.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub operation: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<LatencyLabels, Histogram>,
    pub store_latency: Family<StoreLabels, Histogram>,
    pub watches: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub watch_events: Counter<u64, AtomicU64>,
}

fn buckets() -> Histogram {
    // 0.5 ms .. ~30 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<LatencyLabels, Histogram>::new_with_constructor(buckets as fn() -> Histogram);
        let store_latency =
            Family::<StoreLabels, Histogram>::new_with_constructor(buckets as fn() -> Histogram);
        let watches = Gauge::default();
        let watch_events = Counter::default();
        registry.register(
            "apiserver_request",
            "Requests by verb, resource and HTTP code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Request latency by verb and resource (watches excluded)",
            latency.clone(),
        );
        registry.register(
            "rk3s_store_operation_duration_seconds",
            "Store operation latency",
            store_latency.clone(),
        );
        registry.register(
            "apiserver_registered_watchers",
            "Open watch streams",
            watches.clone(),
        );
        registry.register(
            "apiserver_watch_events",
            "Watch events sent",
            watch_events.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            store_latency,
            watches,
            watch_events,
        }
    }
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.into(),
                resource: resource.into(),
                code: code.to_string(),
            })
            .inc();
        if verb != "WATCH" {
            self.latency
                .get_or_create(&LatencyLabels {
                    verb: verb.into(),
                    resource: resource.into(),
                })
                .observe(seconds);
        }
    }
    pub fn observe_store(&self, op: &str, seconds: f64) {
        self.store_latency
            .get_or_create(&StoreLabels {
                operation: op.into(),
            })
            .observe(seconds);
    }
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
