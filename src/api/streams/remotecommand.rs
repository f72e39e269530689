//! pods/exec and pods/attach: the remote command protocols. Over a
//! WebSocket (`v5.channel.k8s.io` .. `channel.k8s.io`, `base64.` variants)
//! every message starts with its channel (0 stdin, 1 stdout, 2 stderr,
//! 3 status, 4 resize; v5 adds 255 "close channel N"); over SPDY/3.1 each
//! of those is a stream named by its `streamtype` header. From v4 on the
//! status channel carries a metav1.Status; a non-zero exit is reason
//! `NonZeroExitCode` with an `ExitCode` cause, which kubectl turns into its
//! own exit code.

use std::time::Duration;

use axum::extract::Request;
use axum::extract::ws::{Message, WebSocket};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::spdy::{SpdySession, StreamWriter};
use super::upgrade;
use super::{flag, last, query_pairs};
use crate::api::ApiState;
use crate::api::handlers::Target;
use crate::api::status::ApiError;
use crate::runtime::cri::{BoxedReader, ExecRequest, ExecSession, TerminalSize};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

const WS_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// How long the SPDY client has to open its streams.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

struct Options {
    command: Vec<String>,
    container: String,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Options {
    /// The options as mutating admission webhooks left them (upstream
    /// connects with the admitted object).
    fn admitted(self, v: &Value) -> Options {
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        let command = match v.get("command").and_then(Value::as_array) {
            Some(c) => c
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            None => self.command,
        };
        Options {
            command,
            container: v
                .get("container")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        }
    }
}

fn options(req: &Request, attach: bool) -> Result<Options, ApiError> {
    let q = query_pairs(req)?;
    let command: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let o = Options {
        command,
        container: last(&q, "container").unwrap_or_default().to_string(),
        stdin: flag(&q, "stdin")?,
        stdout: flag(&q, "stdout")?,
        stderr: flag(&q, "stderr")?,
        tty: flag(&q, "tty")?,
    };
    if !attach && o.command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    if !(o.stdin || o.stdout || o.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least one of stdin, stdout, stderr",
        ));
    }
    Ok(o)
}

pub(super) async fn serve(
    st: &ApiState,
    t: &Target,
    mut req: Request,
    attach: bool,
) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let o = options(&req, attach)?;
    let admitted = super::admit_connect(
        st,
        t,
        &req,
        crate::admission::webhook::connect::exec_options(
            &crate::admission::webhook::connect::Streams {
                container: &o.container,
                stdin: o.stdin,
                stdout: o.stdout,
                stderr: o.stderr,
                tty: o.tty,
            },
            (!attach).then_some(o.command.as_slice()),
        ),
    )
    .await?;
    let o = o.admitted(&admitted);
    let pod = super::get_pod(st, t, &name).await?;
    let container = super::pick_container(&pod, &name, &o.container)?;
    if let Some(phase @ ("Succeeded" | "Failed")) =
        pod.pointer("/status/phase").and_then(Value::as_str)
    {
        return Err(ApiError::bad_request(format!(
            "cannot exec into or attach to a container in a completed pod; current phase is {phase}"
        )));
    }
    let backend = super::node_backend(st, &pod, &name)?;
    let pod_ref = super::pod_ref(&pod);
    // Negotiate first so a bad request fails before anything starts.
    enum Wire {
        Ws(axum::extract::ws::WebSocketUpgrade, Proto),
        Spdy(upgrade::SpdyUpgrade, Proto),
    }
    let wire = if upgrade::is_websocket(&req) {
        let (ws, p) = upgrade::websocket(req, WS_PROTOCOLS).await?;
        Wire::Ws(ws, Proto::websocket(p.as_deref()))
    } else if let Some(up) = upgrade::spdy(&mut req, SPDY_PROTOCOLS)? {
        let p = Proto::spdy(up.protocol.as_deref());
        Wire::Spdy(up, p)
    } else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let session = if attach {
        backend.attach(&pod_ref, &container, o.stdin, o.tty).await?
    } else {
        let r = ExecRequest {
            cmd: o.command.clone(),
            tty: o.tty,
            stdin: o.stdin,
            stdout: o.stdout,
            stderr: o.stderr && !o.tty,
        };
        backend.exec(&pod_ref, &container, r).await?
    };
    let what = if attach {
        String::new()
    } else {
        o.command.join(" ")
    };
    let expect = Expect {
        stdin: o.stdin,
        stdout: o.stdout,
        stderr: o.stderr && !o.tty,
        tty: o.tty,
    };
    Ok(match wire {
        Wire::Ws(ws, proto) => ws
            .on_upgrade(move |socket| async move {
                let io = websocket_io(socket, proto);
                pump(session, io, proto, what).await;
            })
            .into_response(),
        Wire::Spdy(up, proto) => {
            let conn = up.conn;
            tokio::spawn(async move {
                let Ok(upgraded) = conn.await else { return };
                let io = hyper_util::rt::TokioIo::new(upgraded);
                // The client closes the connection once it has the status.
                match spdy_io(io, proto, &expect).await {
                    Some((io, _sess)) => pump(session, io, proto, what).await,
                    None => tracing::debug!("exec: the client did not open its streams"),
                }
            });
            up.response
        }
    })
}

/// Which version of the protocol, and its encoding.
#[derive(Clone, Copy)]
struct Proto {
    version: u8,
    base64: bool,
}

impl Proto {
    fn websocket(p: Option<&str>) -> Self {
        match p {
            Some("v5.channel.k8s.io") => Proto {
                version: 5,
                base64: false,
            },
            Some("v4.channel.k8s.io") => Proto {
                version: 4,
                base64: false,
            },
            Some("v4.base64.channel.k8s.io") => Proto {
                version: 4,
                base64: true,
            },
            Some("base64.channel.k8s.io") => Proto {
                version: 1,
                base64: true,
            },
            _ => Proto {
                version: 1,
                base64: false,
            },
        }
    }
    fn spdy(p: Option<&str>) -> Self {
        let version = match p {
            Some("v4.channel.k8s.io") => 4,
            Some("v3.channel.k8s.io") => 3,
            Some("v2.channel.k8s.io") => 2,
            _ => 1,
        };
        Proto {
            version,
            base64: false,
        }
    }
}

/// Which streams the client asked for.
struct Expect {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

enum Out {
    Data(u8, Bytes),
    /// The server has nothing more for this channel.
    Close(u8),
    /// The last message: the status, then the connection ends.
    Status(Option<Bytes>),
}

/// Protocol-neutral ends of a connection.
struct Io {
    stdin: Option<mpsc::Receiver<Bytes>>,
    resize: Option<mpsc::Receiver<TerminalSize>>,
    out: mpsc::Sender<Out>,
    /// The client went away.
    gone: CancellationToken,
}

fn parse_size(v: &Value) -> Option<TerminalSize> {
    Some(TerminalSize {
        width: u16::try_from(v.get("Width")?.as_u64()?).ok()?,
        height: u16::try_from(v.get("Height")?.as_u64()?).ok()?,
    })
}

fn websocket_io(socket: WebSocket, proto: Proto) -> Io {
    let (mut tx, mut rx) = socket.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<TerminalSize>(4);
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(16);
    let gone = CancellationToken::new();
    let b64 = &base64::engine::general_purpose::STANDARD;
    // Reader: client messages to stdin / resize.
    {
        let gone = gone.clone();
        tokio::spawn(async move {
            let mut stdin_tx = Some(stdin_tx);
            while let Some(Ok(msg)) = rx.next().await {
                let (chan, data) = match msg {
                    Message::Binary(b) if !b.is_empty() => (b[0], b.slice(1..)),
                    Message::Text(t) if proto.base64 && !t.is_empty() => {
                        let t = t.as_str().as_bytes();
                        match b64.decode(&t[1..]) {
                            Ok(d) => (t[0].wrapping_sub(b'0'), Bytes::from(d)),
                            Err(_) => continue,
                        }
                    }
                    Message::Close(_) => break,
                    _ => continue,
                };
                match chan {
                    STDIN => {
                        if let Some(s) = &stdin_tx
                            && s.send(data).await.is_err()
                        {
                            stdin_tx = None;
                        }
                    }
                    RESIZE => {
                        if let Some(sz) = serde_json::from_slice::<Value>(&data)
                            .ok()
                            .as_ref()
                            .and_then(parse_size)
                        {
                            let _ = resize_tx.try_send(sz);
                        }
                    }
                    CLOSE if proto.version >= 5 && data.first() == Some(&STDIN) => {
                        stdin_tx = None;
                    }
                    _ => {}
                }
            }
            gone.cancel();
        });
    }
    // Writer: output channels to messages.
    tokio::spawn(async move {
        let encode = |chan: u8, data: &[u8]| {
            if proto.base64 {
                Message::Text(format!("{}{}", (b'0' + chan) as char, b64.encode(data)).into())
            } else {
                let mut v = Vec::with_capacity(data.len() + 1);
                v.push(chan);
                v.extend_from_slice(data);
                Message::Binary(Bytes::from(v))
            }
        };
        while let Some(o) = out_rx.recv().await {
            let msg = match o {
                Out::Data(chan, data) => encode(chan, &data),
                Out::Close(_) => continue,
                Out::Status(status) => {
                    if let Some(s) = status {
                        let _ = tx.send(encode(ERROR, &s)).await;
                    }
                    let _ = tx.send(upgrade::normal_close()).await;
                    break;
                }
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    Io {
        stdin: Some(stdin_rx),
        resize: Some(resize_rx),
        out: out_tx,
        gone,
    }
}

/// Wait for the client's SPDY streams, then bridge them.
async fn spdy_io<IO>(io: IO, proto: Proto, expect: &Expect) -> Option<(Io, SpdySession)>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (session, mut accept) = SpdySession::start(io);
    let mut error: Option<StreamWriter> = None;
    let mut stdout: Option<StreamWriter> = None;
    let mut stderr: Option<StreamWriter> = None;
    let mut stdin = None;
    let mut resize = None;
    let complete = |e: &Option<StreamWriter>,
                    o: &Option<StreamWriter>,
                    r: &Option<StreamWriter>,
                    i: &Option<mpsc::Receiver<Bytes>>,
                    z: &Option<mpsc::Receiver<Bytes>>| {
        e.is_some()
            && (o.is_some() || !expect.stdout)
            && (r.is_some() || !expect.stderr)
            && (i.is_some() || !expect.stdin)
            && (z.is_some() || !(expect.tty && proto.version >= 3))
    };
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while !complete(&error, &stdout, &stderr, &stdin, &resize) {
        let s = tokio::time::timeout_at(deadline, accept.recv())
            .await
            .ok()??;
        match s.header("streamtype") {
            Some("error") => error = Some(session.writer(s.id)),
            Some("stdout") => stdout = Some(session.writer(s.id)),
            Some("stderr") => stderr = Some(session.writer(s.id)),
            Some("stdin") => stdin = Some(s.data),
            Some("resize") => resize = Some(s.data),
            _ => session.writer(s.id).reset().await,
        }
    }
    let gone = CancellationToken::new();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(16);
    let error = error?;
    tokio::spawn(async move {
        let pick = |chan: u8| match chan {
            STDOUT => stdout.as_ref(),
            STDERR => stderr.as_ref(),
            _ => None,
        };
        while let Some(o) = out_rx.recv().await {
            match o {
                Out::Data(chan, data) => {
                    if let Some(w) = pick(chan)
                        && !w.write(data).await
                    {
                        break;
                    }
                }
                Out::Close(chan) => {
                    if let Some(w) = pick(chan) {
                        w.close().await;
                    }
                }
                Out::Status(status) => {
                    if let Some(s) = status {
                        error.write(s).await;
                    }
                    error.close().await;
                    break;
                }
            }
        }
    });
    // Resize: a stream of JSON objects, possibly split across frames.
    let resize_rx = resize.map(|mut data| {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(chunk) = data.recv().await {
                buf.extend_from_slice(&chunk);
                let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
                let mut used = 0;
                while let Some(Ok(v)) = it.next() {
                    used = it.byte_offset();
                    if let Some(sz) = parse_size(&v) {
                        let _ = tx.try_send(sz);
                    }
                }
                buf.drain(..used);
            }
        });
        rx
    });
    {
        let gone = gone.clone();
        let session = session.clone();
        tokio::spawn(async move {
            // Streams opened after the expected ones are not used.
            let drain = async { while accept.recv().await.is_some() {} };
            tokio::join!(drain, session.closed());
            gone.cancel();
        });
    }
    Some((
        Io {
            stdin,
            resize: resize_rx,
            out: out_tx,
            gone,
        },
        session,
    ))
}

/// Move bytes between the process and the client until the process ends
/// (or the client leaves), then report how it ended.
async fn pump(session: ExecSession, io: Io, proto: Proto, what: String) {
    let ExecSession {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = session;
    let Io {
        stdin: stdin_rx,
        resize: resize_rx,
        out,
        gone,
    } = io;
    if let (Some(mut w), Some(mut rx)) = (stdin, stdin_rx) {
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if w.write_all(&b).await.is_err() || w.flush().await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        });
    }
    if let (Some(tx), Some(mut rx)) = (resize, resize_rx) {
        tokio::spawn(async move {
            while let Some(sz) = rx.recv().await {
                if tx.send(sz).await.is_err() {
                    return;
                }
            }
        });
    }
    let copy = |r: Option<BoxedReader>, chan: u8| {
        let out = out.clone();
        async move {
            let Some(mut r) = r else { return };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let data = Bytes::copy_from_slice(&buf[..n]);
                        if out.send(Out::Data(chan, data)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = out.send(Out::Close(chan)).await;
        }
    };
    let work = async {
        tokio::join!(copy(stdout, STDOUT), copy(stderr, STDERR));
        exit.await
    };
    let code = tokio::select! {
        c = work => c,
        _ = gone.cancelled() => return,
    };
    let status = status_message(proto, code.map_err(|_| ()), &what);
    let _ = out.send(Out::Status(status)).await;
}

/// What the status channel says: a metav1.Status from v4 on, else the
/// error text (nothing on success).
fn status_message(proto: Proto, code: Result<i32, ()>, what: &str) -> Option<Bytes> {
    let v4 = proto.version >= 4;
    match code {
        Ok(0) if v4 => Some(json_bytes(&json!({"metadata": {}, "status": "Success"}))),
        Ok(0) => None,
        Ok(n) => {
            let msg = format!(
                "command terminated with non-zero exit code: command '{what}' exited with {n}"
            );
            if v4 {
                Some(json_bytes(&json!({
                    "metadata": {}, "status": "Failure", "message": msg,
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": n.to_string()}]},
                })))
            } else {
                Some(Bytes::from(msg))
            }
        }
        Err(()) => {
            let msg = "error executing command: the process's status is unknown".to_string();
            if v4 {
                Some(json_bytes(&json!({
                    "metadata": {}, "status": "Failure", "message": msg,
                    "reason": "InternalError", "code": 500,
                })))
            } else {
                Some(Bytes::from(msg))
            }
        }
    }
}

fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}
