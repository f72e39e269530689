//! Container lifecycle hooks (postStart, preStop) with exec, httpGet and
//! sleep handlers, and the kubelet's failure messages, which the agent
//! records as FailedPostStartHook / FailedPreStopHook events.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};

use crate::node::probes::http::{self, HttpGet, KUBE_VERSION};
use crate::node::probes::resolve_port;
use crate::node::volumes::downward::go_quote as q;
use crate::runtime::cri::{ContainerId, ContainerRuntime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    PostStart,
    PreStop,
}

impl HookKind {
    /// The Warning event reason for a failed hook.
    pub fn failure_reason(self) -> &'static str {
        match self {
            HookKind::PostStart => "FailedPostStartHook",
            HookKind::PreStop => "FailedPreStopHook",
        }
    }
}

/// A hook failed; Display is the event message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HookError {
    pub kind: HookKind,
    pub message: String,
}

impl HookError {
    pub fn reason(&self) -> &'static str {
        self.kind.failure_reason()
    }
}

/// `name_namespace(uid)`, as the kubelet's format.Pod.
fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Go's `%v` of a []string: `[sh -c exit 1]`.
fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

#[derive(Clone)]
pub struct HookRunner {
    runtime: Arc<dyn ContainerRuntime>,
}

impl HookRunner {
    pub fn new(runtime: Arc<dyn ContainerRuntime>) -> Self {
        HookRunner { runtime }
    }

    /// Run `handler` for `container` (already running as `container_id`).
    /// `limit` bounds the whole hook (preStop: the grace period; upstream
    /// gives postStart none, so the agent may pass a generous one).
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        kind: HookKind,
        handler: &LifecycleHandler,
        pod: &Pod,
        container: &Container,
        container_id: &ContainerId,
        pod_ip: Option<&str>,
        limit: Duration,
    ) -> Result<(), HookError> {
        let fail = |message: String| HookError { kind, message };
        let pod_name = format_pod(pod);
        if let Some(exec) = &handler.exec {
            let cmd = exec.command.clone().unwrap_or_default();
            let call = self.runtime.exec_sync(container_id, &cmd, limit);
            let (err, output) =
                match tokio::time::timeout(limit + Duration::from_secs(1), call).await {
                    Err(_) => (
                        format!("command {} timed out", q(&cmd.join(" "))),
                        Vec::new(),
                    ),
                    Ok(Err(e)) => (e.to_string(), Vec::new()),
                    Ok(Ok(out)) if out.exit_code == 0 => return Ok(()),
                    Ok(Ok(out)) => {
                        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                        let mut all = out.stdout;
                        all.extend_from_slice(&out.stderr);
                        (
                            format!(
                                "command '{}' exited with {}: {stderr}",
                                cmd.join(" "),
                                out.exit_code
                            ),
                            all,
                        )
                    }
                };
            return Err(fail(format!(
                "Exec lifecycle hook ({}) for Container {} in Pod {} failed - error: {err}, message: {}",
                go_list(&cmd),
                q(&container.name),
                q(&pod_name),
                q(&String::from_utf8_lossy(&output))
            )));
        }
        if let Some(h) = &handler.http_get {
            let path = h.path.clone().unwrap_or_default();
            let port = resolve_port(&h.port, container).map_err(|e| {
                fail(format!(
                    "HTTP lifecycle hook ({path}) for Container {} in Pod {} failed - error: {e}",
                    q(&container.name),
                    q(&pod_name)
                ))
            })?;
            let req = HttpGet {
                scheme: h.scheme.clone().unwrap_or_else(|| "HTTP".into()),
                host: h
                    .host
                    .clone()
                    .filter(|h| !h.is_empty())
                    .or_else(|| pod_ip.map(str::to_string))
                    .unwrap_or_default(),
                port,
                path: path.clone(),
                headers: h
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
                user_agent: format!("kube-lifecycle/{KUBE_VERSION}"),
            };
            // Only a transport error fails a hook; the status code does not.
            let mut result = http::get(&req, limit).await;
            if result.is_err() && req.scheme.eq_ignore_ascii_case("https") {
                // As upstream: an HTTPS hook answered in plain HTTP is retried as HTTP.
                let mut plain = req.clone();
                plain.scheme = "http".into();
                if http::get(&plain, limit).await.is_ok() {
                    result = Ok(http::HttpResponse {
                        status: 200,
                        body: String::new(),
                        redirect_not_followed: false,
                    });
                }
            }
            return result.map(|_| ()).map_err(|e| {
                fail(format!(
                    "HTTP lifecycle hook ({path}) for Container {} in Pod {} failed - error: {e}",
                    q(&container.name),
                    q(&pod_name)
                ))
            });
        }
        if let Some(s) = &handler.sleep {
            let want = Duration::from_secs(s.seconds.max(0) as u64);
            if want > limit {
                tokio::time::sleep(limit).await;
                return Err(fail(format!(
                    "Sleep lifecycle hook ({}) for Container {} in Pod {} failed - error: context deadline exceeded",
                    s.seconds,
                    q(&container.name),
                    q(&pod_name)
                )));
            }
            tokio::time::sleep(want).await;
            return Ok(());
        }
        Err(fail(
            "Cannot run handler: invalid handler: no exec, httpGet or sleep action".to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::probes::live_tests::FakeRuntime;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pod() -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}}),
        )
        .unwrap()
    }

    fn handler(v: serde_json::Value) -> LifecycleHandler {
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn exec_http_and_sleep_hooks() {
        let rt = FakeRuntime::new();
        let runner = HookRunner::new(rt.clone());
        let c: Container = serde_json::from_value(json!({"name": "app"})).unwrap();
        let id = "cid".to_string();
        let limit = Duration::from_secs(5);
        let run = |h: LifecycleHandler, kind: HookKind| {
            let (runner, c, id) = (runner.clone(), c.clone(), id.clone());
            async move {
                runner
                    .run(kind, &h, &pod(), &c, &id, Some("127.0.0.1"), limit)
                    .await
            }
        };
        run(
            handler(json!({"exec": {"command": ["true"]}})),
            HookKind::PostStart,
        )
        .await
        .unwrap();
        let err = run(
            handler(json!({"exec": {"command": ["fail", "now"]}})),
            HookKind::PostStart,
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "FailedPostStartHook");
        assert_eq!(
            err.to_string(),
            "Exec lifecycle hook ([fail now]) for Container \"app\" in Pod \"web_default(u1)\" failed - error: command 'fail now' exited with 1: healthy, message: \"not healthy\""
        );

        // httpGet: any answer is success; a refused connection fails.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(parking_lot::Mutex::new(String::new()));
        let s2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).await.unwrap_or(0);
                *s2.lock() = String::from_utf8_lossy(&buf[..n]).into_owned();
                let _ = s
                    .write_all(
                        b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            }
        });
        run(
            handler(json!({"httpGet": {"path": "/stop", "port": port}})),
            HookKind::PreStop,
        )
        .await
        .unwrap();
        let head = seen.lock().to_ascii_lowercase();
        assert!(head.starts_with("get /stop http/1.1"), "{head}");
        assert!(head.contains("user-agent: kube-lifecycle/1.33"), "{head}");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = run(
            handler(json!({"httpGet": {"path": "/stop", "port": closed}})),
            HookKind::PreStop,
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "FailedPreStopHook");
        assert_eq!(
            err.to_string(),
            format!(
                "HTTP lifecycle hook (/stop) for Container \"app\" in Pod \"web_default(u1)\" failed - error: Get \"http://127.0.0.1:{closed}/stop\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
            )
        );

        // sleep: waits; cut short by the limit, it fails.
        let t = std::time::Instant::now();
        run(handler(json!({"sleep": {"seconds": 1}})), HookKind::PreStop)
            .await
            .unwrap();
        assert!(t.elapsed() >= Duration::from_secs(1));
        let short = runner
            .run(
                HookKind::PreStop,
                &handler(json!({"sleep": {"seconds": 30}})),
                &pod(),
                &c,
                &id,
                None,
                Duration::from_millis(200),
            )
            .await
            .unwrap_err();
        assert!(
            short
                .to_string()
                .ends_with("failed - error: context deadline exceeded"),
            "{short}"
        );
    }
}
