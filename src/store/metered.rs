//! A `Store` decorator that records operation latency in the metrics.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{EventStream, KeyValue, ListOptions, ListResult, Revision, Store, StoreResult};
use crate::api::metrics::Metrics;

pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }
    fn done(&self, op: &str, start: Instant) {
        self.metrics
            .observe_store(op, start.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl Store for MeteredStore {
    fn current_revision(&self) -> Revision {
        self.inner.current_revision()
    }
    fn compacted_revision(&self) -> Revision {
        self.inner.compacted_revision()
    }
    async fn get(&self, key: &str, revision: Option<Revision>) -> StoreResult<Option<KeyValue>> {
        let t = Instant::now();
        let r = self.inner.get(key, revision).await;
        self.done("get", t);
        r
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> StoreResult<ListResult> {
        let t = Instant::now();
        let r = self.inner.list(prefix, opts).await;
        self.done("list", t);
        r
    }
    async fn count(&self, prefix: &str) -> StoreResult<usize> {
        self.inner.count(prefix).await
    }
    async fn create(&self, key: &str, value: bytes::Bytes) -> StoreResult<KeyValue> {
        let t = Instant::now();
        let r = self.inner.create(key, value).await;
        self.done("create", t);
        r
    }
    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: bytes::Bytes,
    ) -> StoreResult<KeyValue> {
        let t = Instant::now();
        let r = self.inner.update(key, expected, value).await;
        self.done("update", t);
        r
    }
    async fn delete(&self, key: &str, expected: Revision) -> StoreResult<KeyValue> {
        let t = Instant::now();
        let r = self.inner.delete(key, expected).await;
        self.done("delete", t);
        r
    }
    fn watch(&self, prefix: &str, after: Revision) -> StoreResult<EventStream> {
        self.inner.watch(prefix, after)
    }
    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        let t = Instant::now();
        let r = self.inner.compact(revision).await;
        self.done("compact", t);
        r
    }
    async fn close(&self) {
        self.inner.close().await
    }
}
