//! gRPC probes: one `grpc.health.v1.Health/Check` call over cleartext
//! HTTP/2 (h2c with prior knowledge, as the kubelet's insecure gRPC
//! client). The two protobuf messages involved have one field each, so
//! they are encoded by hand rather than pulling in a gRPC stack.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use super::go_duration;
use super::http::{KUBE_VERSION, dial};

/// HealthCheckResponse.ServingStatus names.
fn status_name(n: u64) -> String {
    match n {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

/// gRPC status code names, as Go's codes.Code.String().
fn code_name(code: u32) -> String {
    let names = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    names
        .get(code as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("Code({code})"))
}

/// A length-prefixed HealthCheckRequest{service}.
fn request_frame(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + msg.len());
    frame.put_u8(0); // not compressed
    frame.put_u32(msg.len() as u32);
    frame.put_slice(&msg);
    frame.freeze()
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn read_varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// HealthCheckResponse.status from a length-prefixed message (absent = 0).
fn parse_response(body: &[u8]) -> Option<u64> {
    let len = u32::from_be_bytes(body.get(1..5)?.try_into().ok()?) as usize;
    let msg = body.get(5..5 + len)?;
    let mut i = 0;
    let mut status = 0;
    while i < msg.len() {
        let key = read_varint(msg, &mut i)?;
        match key & 7 {
            0 => {
                let v = read_varint(msg, &mut i)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let n = read_varint(msg, &mut i)? as usize;
                i += n;
            }
            1 => i += 8,
            5 => i += 4,
            _ => return None,
        }
    }
    Some(status)
}

/// Probe `host:port` within `timeout`: (success, message) as the
/// kubelet's gRPC prober words it.
pub async fn check(host: &str, port: u16, service: &str, timeout: Duration) -> (bool, String) {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let deadline = Instant::now() + timeout;
    let connect_timeout = || {
        (
            false,
            format!(
                "timeout: failed to connect service \"{addr}\" within {}",
                go_duration(timeout)
            ),
        )
    };
    // A blocking dial: keep trying until the deadline, as grpc.WithBlock.
    let sender = loop {
        if let Ok(tcp) = dial(host, port, deadline).await
            && let Ok(Ok((sender, conn))) = tokio::time::timeout_at(
                deadline,
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)),
            )
            .await
        {
            tokio::spawn(conn);
            break sender;
        }
        if Instant::now() + Duration::from_millis(100) >= deadline {
            return connect_timeout();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rpc_timeout = || {
        (
            false,
            format!(
                "timeout: health rpc did not complete within {}",
                go_duration(timeout)
            ),
        )
    };
    match tokio::time::timeout_at(deadline, call(sender, &addr, service)).await {
        Err(_) => rpc_timeout(),
        Ok(Err(RpcError::Status(4, _))) => rpc_timeout(),
        Ok(Err(RpcError::Status(12, msg))) => (
            false,
            format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {msg}"
            ),
        ),
        Ok(Err(RpcError::Status(code, msg))) => (
            false,
            format!(
                "error: health rpc probe failed: rpc error: code = {} desc = {msg}",
                code_name(code)
            ),
        ),
        Ok(Err(RpcError::Transport(e))) => (
            false,
            format!("error: health rpc probe failed: rpc error: code = Unavailable desc = {e}"),
        ),
        Ok(Ok(1)) => (true, "service healthy".into()),
        Ok(Ok(status)) => (
            false,
            format!(
                "service unhealthy (responded with \"{}\")",
                status_name(status)
            ),
        ),
    }
}

enum RpcError {
    Status(u32, String),
    Transport(String),
}

async fn call(
    mut sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    authority: &str,
    service: &str,
) -> Result<u64, RpcError> {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .header(
            http::header::USER_AGENT,
            format!("kube-probe/{KUBE_VERSION}"),
        )
        .body(Full::new(request_frame(service)))
        .map_err(|e| RpcError::Transport(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| RpcError::Transport(e.to_string()))?;
    if resp.status() != http::StatusCode::OK {
        return Err(RpcError::Status(
            14,
            format!(
                "unexpected HTTP status code received from server: {}",
                resp.status().as_u16()
            ),
        ));
    }
    let headers = resp.headers().clone();
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| RpcError::Transport(e.to_string()))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let body = collected.to_bytes();
    // Trailers-only responses carry the status in the headers.
    let get = |name: &str| {
        trailers
            .get(name)
            .or_else(|| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let code = get("grpc-status")
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(2);
    if code != 0 {
        let msg = get("grpc-message").unwrap_or_default();
        let msg = percent_encoding::percent_decode_str(&msg)
            .decode_utf8_lossy()
            .into_owned();
        return Err(RpcError::Status(code, msg));
    }
    parse_response(&body).ok_or_else(|| {
        RpcError::Status(13, "grpc: failed to unmarshal the received message".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let f = request_frame("svc");
        assert_eq!(&f[..], &[0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']);
        assert_eq!(&request_frame("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(parse_response(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(parse_response(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(parse_response(&[0, 0, 0, 0, 2, 0x08]), None);
        assert_eq!(status_name(2), "NOT_SERVING");
        assert_eq!(code_name(12), "Unimplemented");
    }
}
