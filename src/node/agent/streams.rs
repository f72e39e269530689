//! The local node's streaming backend (`NodeStreams`): exec and attach go
//! to the runtime; port-forward connects to localhost:PORT inside the
//! pod's network namespace (as the kubelet's runtimes do, so servers bound
//! to 127.0.0.1 in the pod are reachable); logs are read from the CRI log
//! files by `crate::node::logs`; nodes/proxy answers the kubelet's
//! `/stats/summary` and `/healthz` from the agent's latest usage sample.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::stream::BoxStream;

use super::podworker::PodWorkers;
use super::stats::StatsCollector;
use crate::api::streams::backend::{DuplexStream, LogOptions, NodeStreams, PodRef, StreamError};
use crate::runtime::cri::{self, ContainerRuntime, ExecRequest, ExecSession};

pub struct LocalStreams {
    runtime: Arc<dyn ContainerRuntime>,
    workers: PodWorkers,
    stats: Option<Arc<StatsCollector>>,
}

impl LocalStreams {
    pub fn new(runtime: Arc<dyn ContainerRuntime>, workers: PodWorkers) -> Self {
        LocalStreams {
            runtime,
            workers,
            stats: None,
        }
    }

    /// Serve `/stats/summary` from this collector.
    pub fn with_stats(mut self, stats: Arc<StatsCollector>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// The current (or, with `previous`, the one before) container of
    /// `name` in the pod.
    async fn container(
        &self,
        pod: &PodRef,
        name: &str,
        previous: bool,
    ) -> Result<cri::ContainerStatus, StreamError> {
        let not_found = || {
            StreamError::NotFound(format!(
                "container \"{name}\" in pod \"{}\" is not available",
                pod.name
            ))
        };
        let sandbox = self.workers.sandbox_of(&pod.uid).ok_or_else(not_found)?;
        let mut list: Vec<cri::ContainerStatus> = self
            .runtime
            .list_containers(&sandbox)
            .await
            .map_err(|e| StreamError::Internal(e.to_string()))?
            .into_iter()
            .filter(|c| c.name == name)
            .collect();
        list.sort_by_key(|c| std::cmp::Reverse(c.attempt));
        let pick = if previous { list.get(1) } else { list.first() };
        match pick {
            Some(c) => Ok(c.clone()),
            None if previous => Err(StreamError::BadRequest(format!(
                "previous terminated container \"{name}\" in pod \"{}\" not found",
                pod.name
            ))),
            None => Err(not_found()),
        }
    }

    async fn running(&self, pod: &PodRef, name: &str) -> Result<cri::ContainerStatus, StreamError> {
        let c = self.container(pod, name, false).await?;
        if c.state != cri::ContainerState::Running {
            return Err(StreamError::BadRequest(format!(
                "container {name} is not valid for pod {}",
                pod.name
            )));
        }
        Ok(c)
    }
}

fn internal(e: cri::RuntimeError) -> StreamError {
    match e {
        cri::RuntimeError::NotFound(m) => StreamError::NotFound(m),
        cri::RuntimeError::InvalidArgument(m) => StreamError::BadRequest(m),
        other => StreamError::Internal(other.to_string()),
    }
}

#[async_trait]
impl NodeStreams for LocalStreams {
    async fn exec(
        &self,
        pod: &PodRef,
        container: &str,
        request: ExecRequest,
    ) -> Result<ExecSession, StreamError> {
        let c = self.running(pod, container).await?;
        self.runtime.exec(&c.id, request).await.map_err(internal)
    }

    async fn attach(
        &self,
        pod: &PodRef,
        container: &str,
        stdin: bool,
        tty: bool,
    ) -> Result<ExecSession, StreamError> {
        let c = self.running(pod, container).await?;
        self.runtime
            .attach(&c.id, stdin, tty)
            .await
            .map_err(internal)
    }

    async fn port_forward(&self, pod: &PodRef, port: u16) -> Result<DuplexStream, StreamError> {
        let netns = self.workers.netns_of(&pod.uid);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let std_stream = match netns {
            Some(path) => tokio::task::spawn_blocking(move || {
                crate::net::netns::run_in(&path, move || {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(
                        |e| {
                            crate::net::NetError::Unsupported(format!(
                                "failed to connect to localhost:{port} inside namespace: {e}"
                            ))
                        },
                    )
                })
            })
            .await
            .map_err(|e| StreamError::Internal(e.to_string()))?
            .map_err(|e| StreamError::Internal(e.to_string()))?,
            // hostNetwork pods share the node's namespace.
            None if self.workers.sandbox_of(&pod.uid).is_some() => {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .and_then(|s| s.into_std())
                    .map_err(|e| {
                        StreamError::Internal(format!("failed to connect to localhost:{port}: {e}"))
                    })?
            }
            None => {
                return Err(StreamError::NotFound(format!(
                    "pod {} is not running on this node",
                    pod.name
                )));
            }
        };
        std_stream
            .set_nonblocking(true)
            .map_err(|e| StreamError::Internal(e.to_string()))?;
        let s = tokio::net::TcpStream::from_std(std_stream)
            .map_err(|e| StreamError::Internal(e.to_string()))?;
        Ok(Box::pin(s))
    }

    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        options: LogOptions,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, StreamError> {
        let c = self.container(pod, container, options.previous).await?;
        let opts = crate::node::logs::ReadOptions::from_log_options(&options)
            .map_err(|e| StreamError::BadRequest(e.to_string()))?;
        let exited = if opts.follow {
            let runtime = self.runtime.clone();
            let id = c.id.clone();
            Some(
                async move {
                    // The container's end, as the runtime reports it.
                    let mut events = runtime.subscribe();
                    loop {
                        match runtime.container_status(&id).await {
                            Ok(s) if s.state == cri::ContainerState::Running => {}
                            _ => return,
                        }
                        tokio::select! {
                            _ = events.recv() => {}
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
                .boxed(),
            )
        } else {
            None
        };
        Ok(crate::node::logs::stream(c.log_path.clone(), opts, exited))
    }

    async fn proxy(
        &self,
        request: http::Request<axum::body::Body>,
    ) -> Result<http::Response<axum::body::Body>, StreamError> {
        let text = |code: http::StatusCode, ct: &str, body: Vec<u8>| {
            http::Response::builder()
                .status(code)
                .header(http::header::CONTENT_TYPE, ct)
                .body(axum::body::Body::from(body))
                .map_err(|e| StreamError::Internal(e.to_string()))
        };
        if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
            return text(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                b"405: Method Not Allowed".to_vec(),
            );
        }
        match request.uri().path().trim_end_matches('/') {
            "/healthz" => text(
                http::StatusCode::OK,
                "text/plain; charset=utf-8",
                b"ok".to_vec(),
            ),
            "/stats/summary" => {
                // Sample now if nothing was sampled yet (just started).
                let snapshot = match self.stats.as_ref() {
                    Some(s) => match s.latest() {
                        Some(snap) => snap,
                        None => s.collect().await,
                    },
                    None => return Err(StreamError::NotFound("no stats on this node".into())),
                };
                let body = serde_json::to_vec_pretty(&snapshot.summary())
                    .map_err(|e| StreamError::Internal(e.to_string()))?;
                text(http::StatusCode::OK, "application/json", body)
            }
            _ => text(
                http::StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                b"404 page not found\n".to_vec(),
            ),
        }
    }
}
