//! Connection upgrades: SPDY/3.1 (`Upgrade: SPDY/3.1` with
//! `X-Stream-Protocol-Version` negotiation, as client-go's SPDY round
//! tripper asks) and WebSocket sub-protocol negotiation.

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::status::ApiError;

pub const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

fn header_has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

pub fn is_websocket(req: &Request) -> bool {
    header_has_token(req.headers(), header::UPGRADE, "websocket")
}

fn is_spdy(req: &Request) -> bool {
    header_has_token(req.headers(), header::CONNECTION, "upgrade")
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"))
}

/// Comma-separated values across every instance of `name`, in order.
fn tokens(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The first protocol the client lists that the server supports; `None`
/// when the client lists none. Upstream answers a mismatch with 403.
fn negotiate(client: &[String], server: &[&str]) -> Result<Option<String>, ApiError> {
    if client.is_empty() {
        return Ok(None);
    }
    client
        .iter()
        .find(|c| server.contains(&c.as_str()))
        .cloned()
        .map(Some)
        .ok_or_else(|| {
            ApiError::forbidden(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {:?}, server supports {:?}",
                client, server
            ))
        })
}

pub struct SpdyUpgrade {
    pub protocol: Option<String>,
    pub response: Response,
    pub conn: hyper::upgrade::OnUpgrade,
}

/// Accept a SPDY/3.1 upgrade; `Ok(None)` when the request is not one.
pub fn spdy(req: &mut Request, server: &[&str]) -> Result<Option<SpdyUpgrade>, ApiError> {
    if !is_spdy(req) {
        return Ok(None);
    }
    let protocol = negotiate(&tokens(req.headers(), STREAM_PROTOCOL_HEADER), server)?;
    let conn = req
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| {
            ApiError::bad_request("unable to upgrade: the connection cannot be upgraded (HTTP/2?)")
        })?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Some(p) = &protocol
        && let Ok(v) = HeaderValue::from_str(p)
    {
        h.insert(STREAM_PROTOCOL_HEADER, v);
    }
    Ok(Some(SpdyUpgrade {
        protocol,
        response,
        conn,
    }))
}

/// A WebSocket upgrade with the first client sub-protocol we support.
pub async fn websocket(
    req: Request,
    server: &[&str],
) -> Result<(WebSocketUpgrade, Option<String>), ApiError> {
    let client = tokens(req.headers(), "sec-websocket-protocol");
    let protocol = negotiate(&client, server)?;
    let (mut parts, _) = req.into_parts();
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("unable to upgrade: {e}")))?;
    let ws = match &protocol {
        Some(p) => ws.protocols([p.clone()]),
        None => ws,
    };
    Ok((ws, protocol))
}

/// A WebSocket as a byte stream (binary messages in, one message per
/// write out): SPDY tunnelled over WebSockets rides on this.
pub fn websocket_bytes(ws: WebSocket) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut tx, mut rx) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]));
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(normal_close()).await;
    });
    theirs
}

pub fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: 1000,
        reason: "".into(),
    }))
}
