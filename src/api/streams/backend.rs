//! What the API server needs from a node to serve pods/exec, attach,
//! portforward and log: the kubelet's streaming server, as a trait. The
//! local node agent implements it in process; a remote agent (on port
//! 10250) will implement it over HTTPS.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::runtime::cri::{ExecRequest, ExecSession};

/// The pod a stream is for, as the API server found it.
#[derive(Clone, Debug)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// `kubectl logs` options (PodLogOptions).
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    /// RFC 3339.
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// 404: no such pod or container on the node.
    #[error("{0}")]
    NotFound(String),
    /// 400: e.g. a container that is not running, previous logs that do not exist.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

pub type DuplexStream = Pin<Box<dyn Duplex>>;

#[async_trait]
pub trait NodeStreams: Send + Sync {
    async fn exec(
        &self,
        pod: &PodRef,
        container: &str,
        request: ExecRequest,
    ) -> Result<ExecSession, StreamError>;
    async fn attach(
        &self,
        pod: &PodRef,
        container: &str,
        stdin: bool,
        tty: bool,
    ) -> Result<ExecSession, StreamError>;
    /// A connection to `port` inside the pod's network namespace.
    async fn port_forward(&self, pod: &PodRef, port: u16) -> Result<DuplexStream, StreamError>;
    /// The container's log, as `kubectl logs` shows it (raw lines, with
    /// RFC 3339 timestamps prefixed when asked).
    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        options: LogOptions,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, StreamError>;
    /// nodes/proxy: an HTTP request to the node's own endpoints
    /// (`/stats/summary`, `/metrics`, `/healthz`, ...); the URI is the path
    /// (and query) on the node. Nodes without such endpoints keep this.
    async fn proxy(
        &self,
        request: http::Request<axum::body::Body>,
    ) -> Result<http::Response<axum::body::Body>, StreamError> {
        let _ = request;
        Err(StreamError::NotFound(
            "this node serves no proxy endpoints".into(),
        ))
    }
}
