//! pods/portforward. kubectl speaks SPDY/3.1 with protocol
//! `portforward.k8s.io`, either over an upgraded HTTP/1.1 connection (up
//! to 1.30) or tunnelled through a WebSocket with sub-protocol
//! `SPDY/3.1+portforward.k8s.io` (1.31 on). Each forwarded connection is a
//! pair of client streams sharing a `requestid`: `streamtype: error` and
//! `streamtype: data`, with the `port` header. The older WebSocket protocol
//! (`v4.portforward.k8s.io`, ports in the query, channel 2n data and 2n+1
//! errors for the n-th port, each opened with the port as two
//! little-endian bytes) is served too.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::extract::ws::{Message, WebSocket};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::backend::{NodeStreams, PodRef};
use super::query_pairs;
use super::spdy::{SpdySession, SpdyStream};
use super::upgrade;
use crate::api::ApiState;
use crate::api::handlers::Target;
use crate::api::status::ApiError;

const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
const WS_V4: &str = "v4.portforward.k8s.io";
const WS_V1: &str = "portforward.k8s.io";

pub(super) async fn serve(
    st: &ApiState,
    t: &Target,
    mut req: Request,
) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let forward = crate::admission::webhook::connect::port_forward_options(&query_pairs(&req)?);
    super::admit_connect(st, t, &req, forward).await?;
    let pod = super::get_pod(st, t, &name).await?;
    let backend = super::node_backend(st, &pod, &name)?;
    let pod = super::pod_ref(&pod);
    if upgrade::is_websocket(&req) {
        let q = query_pairs(&req)?;
        let (ws, proto) = upgrade::websocket(req, &[TUNNEL, WS_V4, WS_V1]).await?;
        if proto.as_deref() == Some(TUNNEL) {
            return Ok(ws
                .on_upgrade(move |socket| async move {
                    forward_spdy(upgrade::websocket_bytes(socket), backend, pod).await;
                })
                .into_response());
        }
        let mut ports = Vec::new();
        for (_, v) in q.iter().filter(|(k, _)| k == "ports") {
            for p in v.split(',').filter(|p| !p.is_empty()) {
                ports.push(parse_port(p).map_err(ApiError::bad_request)?);
            }
        }
        if ports.is_empty() {
            return Err(ApiError::bad_request(
                "query parameter \"port\" is required",
            ));
        }
        return Ok(ws
            .on_upgrade(move |socket| forward_websocket(socket, ports, backend, pod))
            .into_response());
    }
    let Some(up) = upgrade::spdy(&mut req, &[WS_V1])? else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let conn = up.conn;
    tokio::spawn(async move {
        if let Ok(upgraded) = conn.await {
            forward_spdy(hyper_util::rt::TokioIo::new(upgraded), backend, pod).await;
        }
    });
    Ok(up.response)
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.trim().parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("invalid port {p:?}")),
    }
}

#[derive(Default)]
struct Pair {
    error: Option<SpdyStream>,
    data: Option<SpdyStream>,
}

/// Serve one SPDY port-forward connection until the client closes it.
async fn forward_spdy<IO>(io: IO, backend: Arc<dyn NodeStreams>, pod: PodRef)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (session, mut accept) = SpdySession::start(io);
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(s) = accept.recv().await {
        let id = s.header("requestid").unwrap_or_default().to_string();
        let pair = pending.entry(id.clone()).or_default();
        match s.header("streamtype") {
            Some("error") => pair.error = Some(s),
            Some("data") => pair.data = Some(s),
            _ => {
                session.writer(s.id).reset().await;
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            let Some(Pair {
                error: Some(error),
                data: Some(data),
            }) = pending.remove(&id)
            else {
                continue;
            };
            tokio::spawn(forward_one(
                session.clone(),
                backend.clone(),
                pod.clone(),
                error,
                data,
            ));
        }
    }
}

async fn forward_one(
    session: SpdySession,
    backend: Arc<dyn NodeStreams>,
    pod: PodRef,
    error: SpdyStream,
    data: SpdyStream,
) {
    let err_w = session.writer(error.id);
    let data_w = session.writer(data.id);
    let fail = |msg: String| {
        let err_w = err_w.clone();
        let data_w = data_w.clone();
        async move {
            err_w.write(Bytes::from(msg)).await;
            err_w.close().await;
            data_w.close().await;
        }
    };
    let port = match data.header("port").map(parse_port) {
        Some(Ok(p)) => p,
        Some(Err(e)) => return fail(e).await,
        None => return fail("missing port header".into()).await,
    };
    let conn = match backend.port_forward(&pod, port).await {
        Ok(c) => c,
        Err(e) => {
            return fail(format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                pod.name, pod.uid
            ))
            .await;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(conn);
    let mut incoming = data.data;
    // Client to pod, until the client half-closes.
    tokio::spawn(async move {
        while let Some(b) = incoming.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    // Pod to client, until the pod closes; then the error stream ends
    // empty, which is how the client learns all went well.
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let read = tokio::select! {
            r = rd.read(&mut buf) => r,
            // The client is gone: drop the pod connection too.
            _ = session.closed() => return,
        };
        match read {
            Ok(0) => break,
            Ok(n) => {
                if !data_w.write(Bytes::copy_from_slice(&buf[..n])).await {
                    return;
                }
            }
            Err(e) => {
                err_w
                    .write(Bytes::from(format!(
                        "error forwarding port {port} to pod {}, uid {}: {e}",
                        pod.name, pod.uid
                    )))
                    .await;
                break;
            }
        }
    }
    data_w.close().await;
    err_w.close().await;
}

/// The channel WebSocket protocol: every port's connection is opened at
/// once; the socket closes when any of them ends.
async fn forward_websocket(
    socket: WebSocket,
    ports: Vec<u16>,
    backend: Arc<dyn NodeStreams>,
    pod: PodRef,
) {
    let (mut tx, mut rx) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(16);
    let mut writers = HashMap::new();
    for (i, port) in ports.iter().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, err_ch] {
            let _ = out_tx
                .send((ch, Bytes::copy_from_slice(&port.to_le_bytes())))
                .await;
        }
        match backend.port_forward(&pod, *port).await {
            Ok(conn) => {
                let (mut rd, wr) = tokio::io::split(conn);
                writers.insert(data_ch, wr);
                let out = out_tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = rd.read(&mut buf).await {
                        if n == 0
                            || out
                                .send((data_ch, Bytes::copy_from_slice(&buf[..n])))
                                .await
                                .is_err()
                        {
                            break;
                        }
                    }
                });
            }
            Err(e) => {
                let msg = format!(
                    "error forwarding port {port} to pod {}, uid {}: {e}",
                    pod.name, pod.uid
                );
                let _ = out_tx.send((err_ch, Bytes::from(msg))).await;
            }
        }
    }
    drop(out_tx);
    let writer = tokio::spawn(async move {
        while let Some((ch, data)) = out_rx.recv().await {
            let mut v = Vec::with_capacity(data.len() + 1);
            v.push(ch);
            v.extend_from_slice(&data);
            if tx.send(Message::Binary(Bytes::from(v))).await.is_err() {
                return;
            }
        }
        let _ = tx.send(upgrade::normal_close()).await;
    });
    while let Some(Ok(msg)) = rx.next().await {
        match msg {
            Message::Binary(b) if !b.is_empty() => {
                if let Some(w) = writers.get_mut(&b[0])
                    && w.write_all(&b[1..]).await.is_err()
                {
                    writers.remove(&b[0]);
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    writer.abort();
}
