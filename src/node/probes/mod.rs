//! Container probes (the kubelet's prober and probe workers): liveness,
//! readiness and startup probes with exec, httpGet, tcpSocket and grpc
//! handlers, run on the probe's schedule with its thresholds. Results and
//! events go to the agent over a channel; the agent owns what they mean
//! (restarts, the Ready condition) and records the events.

pub mod grpc;
pub mod http;
#[cfg(test)]
pub(crate) mod live_tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::runtime::cri::{ContainerId, ContainerRuntime};

/// The kubelet keeps at most this much of an exec probe's output.
const MAX_EXEC_OUTPUT: usize = 10 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        })
    }
}

/// One probe run's outcome (upstream's probe.Result).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// Success, with a warning event (an HTTP redirect to another host).
    Warning(String),
    Failure(String),
    /// The probe could not run (bad port name, runtime error): ignored
    /// for thresholds, reported as an event.
    Error(String),
}

/// Go's Duration.String() for whole seconds (`1s`, `1m30s`).
pub fn go_duration(d: Duration) -> String {
    let total = d.as_secs();
    let ms = d.subsec_millis();
    if total == 0 && ms > 0 {
        return format!("{ms}ms");
    }
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Where a container's probes go.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    pub container_id: ContainerId,
    /// The pod's IP (the default host of httpGet/tcpSocket/grpc).
    pub pod_ip: Option<String>,
    /// The container spec (for named ports and the probe specs).
    pub container: Container,
}

/// A port number or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port number: {n}")),
        IntOrString::String(s) => {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {s} in {}", container.name))
        }
    }
}

/// Runs single probes.
#[derive(Clone)]
pub struct Prober {
    runtime: Arc<dyn ContainerRuntime>,
}

impl Prober {
    pub fn new(runtime: Arc<dyn ContainerRuntime>) -> Self {
        Prober { runtime }
    }

    /// Run `probe` once against `target`.
    pub async fn run(&self, probe: &Probe, target: &ProbeTarget) -> ProbeResult {
        let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let pod_ip = target.pod_ip.clone().unwrap_or_default();
        if let Some(exec) = &probe.exec {
            let cmd = exec.command.clone().unwrap_or_default();
            return self.exec(&target.container_id, &cmd, timeout).await;
        }
        if let Some(h) = &probe.http_get {
            let port = match resolve_port(&h.port, &target.container) {
                Ok(p) => p,
                Err(e) => return ProbeResult::Error(e),
            };
            let req = http::HttpGet {
                scheme: h.scheme.clone().unwrap_or_else(|| "HTTP".into()),
                host: h.host.clone().filter(|h| !h.is_empty()).unwrap_or(pod_ip),
                port,
                path: h.path.clone().unwrap_or_default(),
                headers: h
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
                user_agent: format!("kube-probe/{}", http::KUBE_VERSION),
            };
            return match http::get(&req, timeout).await {
                Err(e) => ProbeResult::Failure(e),
                Ok(r) if r.redirect_not_followed => ProbeResult::Warning(format!(
                    "Probe terminated redirects, Response body: {}",
                    r.body
                )),
                Ok(r) if (200..400).contains(&r.status) => ProbeResult::Success,
                Ok(r) => {
                    ProbeResult::Failure(format!("HTTP probe failed with statuscode: {}", r.status))
                }
            };
        }
        if let Some(t) = &probe.tcp_socket {
            let port = match resolve_port(&t.port, &target.container) {
                Ok(p) => p,
                Err(e) => return ProbeResult::Error(e),
            };
            let host = t.host.clone().filter(|h| !h.is_empty()).unwrap_or(pod_ip);
            return match http::dial(&host, port, Instant::now() + timeout).await {
                Ok(_) => ProbeResult::Success,
                Err(e) => ProbeResult::Failure(e),
            };
        }
        if let Some(g) = &probe.grpc {
            let Ok(port) = u16::try_from(g.port) else {
                return ProbeResult::Error(format!("invalid port number: {}", g.port));
            };
            let service = g.service.clone().unwrap_or_default();
            let (ok, msg) = grpc::check(&pod_ip, port, &service, timeout).await;
            return if ok {
                ProbeResult::Success
            } else {
                ProbeResult::Failure(msg)
            };
        }
        ProbeResult::Error("missing probe handler".into())
    }

    async fn exec(&self, id: &ContainerId, cmd: &[String], timeout: Duration) -> ProbeResult {
        let timed_out = || ProbeResult::Failure(format!("command \"{}\" timed out", cmd.join(" ")));
        // A little slack so the runtime's own timeout answers first.
        let call = self.runtime.exec_sync(id, cmd, timeout);
        match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
            Err(_) => timed_out(),
            Ok(Err(e)) => {
                let text = e.to_string();
                if text.contains("timed out") || text.contains("deadline exceeded") {
                    timed_out()
                } else {
                    ProbeResult::Error(text)
                }
            }
            Ok(Ok(out)) => {
                let mut data = out.stdout;
                data.extend_from_slice(&out.stderr);
                data.truncate(MAX_EXEC_OUTPUT);
                let text = String::from_utf8_lossy(&data).into_owned();
                if out.exit_code == 0 {
                    ProbeResult::Success
                } else {
                    ProbeResult::Failure(text)
                }
            }
        }
    }
}

/// What the probe workers tell the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeMessage {
    /// The probe's result changed (after its thresholds), from the initial
    /// liveness success / readiness failure / startup unknown. Liveness or
    /// startup `success: false` means: restart the container (the worker
    /// stops). Startup `success: true` means the container has started.
    Result {
        container_id: ContainerId,
        container: String,
        kind: ProbeKind,
        success: bool,
        /// The probe's own terminationGracePeriodSeconds, for the kill.
        termination_grace_period_seconds: Option<i64>,
    },
    /// An event for the agent to record about the pod, with
    /// involvedObject.fieldPath `spec.containers{<container>}`.
    Event {
        container_id: ContainerId,
        container: String,
        type_: &'static str,
        reason: &'static str,
        message: String,
    },
}

/// Upstream's event for one probe run, if any.
fn event_for(
    kind: ProbeKind,
    result: &ProbeResult,
) -> Option<(&'static str, &'static str, String)> {
    match result {
        ProbeResult::Success => None,
        ProbeResult::Warning(out) => Some((
            "Warning",
            "ProbeWarning",
            format!("{kind} probe warning: {out}"),
        )),
        ProbeResult::Failure(out) => Some((
            "Warning",
            "Unhealthy",
            format!("{kind} probe failed: {out}"),
        )),
        ProbeResult::Error(e) => Some((
            "Warning",
            "Unhealthy",
            format!("{kind} probe errored and resulted in unknown state: {e}"),
        )),
    }
}

/// The probe workers of one running container; dropping it stops them.
pub struct ContainerProbes {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl ContainerProbes {
    /// Start the container's startup, liveness and readiness workers.
    /// `started_at` is when the container started (initialDelaySeconds
    /// counts from it). Liveness and readiness wait for the startup probe
    /// to succeed, as upstream.
    pub fn start(
        prober: Prober,
        target: ProbeTarget,
        started_at: Instant,
        tx: mpsc::Sender<ProbeMessage>,
    ) -> ContainerProbes {
        let c = target.container.clone();
        let (started_tx, started_rx) = watch::channel(c.startup_probe.is_none());
        let started_tx = Arc::new(started_tx);
        let mut tasks = Vec::new();
        for (kind, probe) in [
            (ProbeKind::Startup, c.startup_probe.clone()),
            (ProbeKind::Liveness, c.liveness_probe.clone()),
            (ProbeKind::Readiness, c.readiness_probe.clone()),
        ] {
            let Some(probe) = probe else { continue };
            let worker = Worker {
                prober: prober.clone(),
                target: target.clone(),
                kind,
                probe,
                started_at,
                tx: tx.clone(),
                started_rx: started_rx.clone(),
                started_tx: started_tx.clone(),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        ContainerProbes { tasks }
    }
}

struct Worker {
    prober: Prober,
    target: ProbeTarget,
    kind: ProbeKind,
    probe: Probe,
    started_at: Instant,
    tx: mpsc::Sender<ProbeMessage>,
    started_rx: watch::Receiver<bool>,
    started_tx: Arc<watch::Sender<bool>>,
}

impl Worker {
    async fn run(mut self) {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        let initial_delay = secs(self.probe.initial_delay_seconds, 0);
        let period = secs(self.probe.period_seconds, 10).max(Duration::from_secs(1));
        let success_threshold = self.probe.success_threshold.unwrap_or(1).max(1) as u32;
        let failure_threshold = self.probe.failure_threshold.unwrap_or(3).max(1) as u32;
        if self.kind != ProbeKind::Startup {
            // Not before the startup probe has succeeded.
            if self.started_rx.wait_for(|s| *s).await.is_err() {
                return;
            }
        }
        tokio::time::sleep_until(self.started_at + initial_delay).await;
        // Upstream's initial results: liveness Success, readiness Failure
        // (not ready until it passes), startup unknown. Only changes are
        // reported.
        let mut reported: Option<bool> = match self.kind {
            ProbeKind::Liveness => Some(true),
            ProbeKind::Readiness => Some(false),
            ProbeKind::Startup => None,
        };
        let mut last: Option<bool> = None;
        let mut run = 0u32;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = self.prober.run(&self.probe, &self.target).await;
            if let Some((type_, reason, message)) = event_for(self.kind, &result) {
                let ev = ProbeMessage::Event {
                    container_id: self.target.container_id.clone(),
                    container: self.target.container.name.clone(),
                    type_,
                    reason,
                    message,
                };
                if self.tx.send(ev).await.is_err() {
                    return;
                }
            }
            let success = match result {
                ProbeResult::Success | ProbeResult::Warning(_) => true,
                ProbeResult::Failure(_) => false,
                ProbeResult::Error(_) => continue,
            };
            if last == Some(success) {
                run = run.saturating_add(1);
            } else {
                last = Some(success);
                run = 1;
            }
            let threshold = if success {
                success_threshold
            } else {
                failure_threshold
            };
            if run < threshold || reported == Some(success) {
                continue;
            }
            reported = Some(success);
            let msg = ProbeMessage::Result {
                container_id: self.target.container_id.clone(),
                container: self.target.container.name.clone(),
                kind: self.kind,
                success,
                termination_grace_period_seconds: self.probe.termination_grace_period_seconds,
            };
            if self.tx.send(msg).await.is_err() {
                return;
            }
            match (self.kind, success) {
                // The container will be restarted: stop probing this one.
                (ProbeKind::Liveness | ProbeKind::Startup, false) => return,
                (ProbeKind::Startup, true) => {
                    self.started_tx.send_replace(true);
                    return;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ports() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]}))
        .unwrap();
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Ok(81));
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &c),
            Err("couldn't find port: grpc in web".into())
        );
    }

    #[test]
    fn events() {
        assert_eq!(
            event_for(
                ProbeKind::Liveness,
                &ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
            ),
            Some((
                "Warning",
                "Unhealthy",
                "Liveness probe failed: HTTP probe failed with statuscode: 500".into()
            ))
        );
        assert_eq!(event_for(ProbeKind::Readiness, &ProbeResult::Success), None);
    }
}
