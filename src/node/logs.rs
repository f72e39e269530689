//! Reading container logs in the CRI format, as the kubelet serves
//! `kubectl logs`. Each line of `<log_dir>/<container>/<attempt>.log` is
//! `<RFC3339Nano time> <stdout|stderr> <P|F> <message>`; `P` marks a
//! fragment of a longer line that continues on the next. Rotated files sit
//! next to the live one as `<attempt>.log.<YYYYMMDD-HHMMSS>` (optionally
//! gzip-compressed, `.gz`) and are read first, oldest first.
//!
//! Follow mode polls the file (a few times a second) rather than using
//! inotify: no inotify crate is in the tree and a poll is cheap at log
//! rates; it stops once the container has exited and the file is drained.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::api::streams::backend::LogOptions;

const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    BadRequest(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// What to read, resolved from `kubectl logs` options.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub tail_lines: Option<usize>,
    pub since: Option<jiff::Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
    pub follow: bool,
}

impl ReadOptions {
    pub fn from_log_options(o: &LogOptions) -> Result<Self, LogError> {
        let since = match (&o.since_time, o.since_seconds) {
            (Some(t), _) => Some(
                t.parse::<jiff::Timestamp>()
                    .map_err(|e| LogError::BadRequest(format!("invalid sinceTime {t:?}: {e}")))?,
            ),
            (None, Some(s)) => Some(
                jiff::Timestamp::now()
                    .checked_sub(jiff::SignedDuration::from_secs(s))
                    .map_err(|e| LogError::BadRequest(e.to_string()))?,
            ),
            (None, None) => None,
        };
        Ok(ReadOptions {
            tail_lines: o.tail_lines.map(|n| n.max(0) as usize),
            since,
            timestamps: o.timestamps,
            limit_bytes: o.limit_bytes.map(|n| n.max(0) as u64),
            follow: o.follow,
        })
    }
}

/// One parsed line of a CRI log file.
#[derive(Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub time: jiff::Timestamp,
    pub stream: &'a str,
    pub partial: bool,
    pub message: &'a [u8],
}

/// Parse `time stream tag message` (the message without its newline).
pub fn parse_line(line: &[u8]) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    // The tag is `P`, `F`, or several `:`-separated tags led by one of them.
    let tag = parts.next()?;
    let partial = tag.first() == Some(&b'P');
    let message = parts.next().unwrap_or_default();
    Some(LogLine {
        time,
        stream,
        partial,
        message,
    })
}

/// The files of a log, oldest first: rotated ones, then the live one.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        && let Ok(rd) = std::fs::read_dir(dir)
    {
        let prefix = format!("{name}.");
        let mut rotated: Vec<(String, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.to_string();
                let suffix = n.strip_prefix(&prefix)?;
                // Skip a file mid-write by a rotator (`.tmp`).
                (!suffix.ends_with(".tmp")).then(|| (suffix.to_string(), e.path()))
            })
            .collect();
        rotated.sort();
        files.extend(rotated.into_iter().map(|(_, p)| p));
    }
    files.push(path.to_path_buf());
    files
}

/// Turns raw file bytes into `kubectl logs` output: joins fragments,
/// applies `since`, prefixes timestamps.
struct Decoder {
    opts: ReadOptions,
    /// Bytes after the last newline seen.
    rest: Vec<u8>,
    /// Whether the next message starts a new output line.
    at_line_start: bool,
}

impl Decoder {
    fn new(opts: ReadOptions) -> Self {
        Decoder {
            opts,
            rest: Vec::new(),
            at_line_start: true,
        }
    }

    /// Feed bytes; complete output lines (or fragments) go to `emit`, each
    /// with whether it ends an output line.
    fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(Vec<u8>, bool)) {
        self.rest.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = self.rest[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl;
            let line = self.rest[start..end].to_vec();
            start = end + 1;
            self.line(&line, emit);
        }
        self.rest.drain(..start);
    }

    fn line(&mut self, line: &[u8], emit: &mut dyn FnMut(Vec<u8>, bool)) {
        let Some(l) = parse_line(line) else { return };
        if let Some(since) = self.opts.since
            && l.time < since
        {
            return;
        }
        let mut out = Vec::with_capacity(l.message.len() + 40);
        if self.opts.timestamps && self.at_line_start {
            out.extend_from_slice(l.time.to_string().as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(l.message);
        if !l.partial {
            out.push(b'\n');
        }
        self.at_line_start = !l.partial;
        emit(out, !l.partial);
    }
}

/// Read a whole (possibly gzip-compressed) rotated file.
fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Output with the byte limit applied; false once the limit is reached.
struct Sink {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    left: Option<u64>,
}

impl Sink {
    async fn send(&mut self, mut data: Vec<u8>) -> bool {
        if let Some(left) = &mut self.left {
            if (data.len() as u64) >= *left {
                data.truncate(*left as usize);
                *left = 0;
            } else {
                *left -= data.len() as u64;
            }
        }
        if !data.is_empty() && self.tx.send(Ok(Bytes::from(data))).await.is_err() {
            return false;
        }
        self.left != Some(0)
    }
}

/// Stream the log at `path` (the live file of the attempt). In follow mode
/// the stream goes on until `exited` resolves and the file is drained (or
/// the reader goes away).
pub fn stream(
    path: PathBuf,
    opts: ReadOptions,
    exited: Option<BoxFuture<'static, ()>>,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut sink = Sink {
            tx: tx.clone(),
            left: opts.limit_bytes,
        };
        if let Err(e) = run(&path, opts, exited, &mut sink).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

async fn run(
    path: &Path,
    opts: ReadOptions,
    exited: Option<BoxFuture<'static, ()>>,
    sink: &mut Sink,
) -> std::io::Result<()> {
    if opts.limit_bytes == Some(0) {
        return Ok(());
    }
    let mut dec = Decoder::new(opts.clone());
    let files = log_files(path);
    let (rotated, live) = files.split_at(files.len() - 1);
    // The live file is opened first so that a rotation while reading the
    // old ones is caught by the inode check below.
    let mut live_file = match tokio::fs::File::open(&live[0]).await {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    // With a tail, keep only the last N output lines (a line's fragments
    // stay together) of what is there now; else stream it as it is read.
    let mut tail: Option<VecDeque<Vec<u8>>> = opts.tail_lines.map(|_| VecDeque::new());
    let tail_n = opts.tail_lines.unwrap_or(0);
    let mut buf = vec![0u8; 64 * 1024];
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut rotated_data = rotated.iter();
    loop {
        let data: Vec<u8> = if let Some(f) = rotated_data.next() {
            let f = f.clone();
            match tokio::task::spawn_blocking(move || read_file(&f)).await {
                Ok(Ok(d)) => d,
                // Deleted by rotation since the listing: skip it.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        } else if let Some(f) = &mut live_file {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            buf[..n].to_vec()
        } else {
            break;
        };
        dec.feed(&data, &mut |chunk, _| chunks.push(chunk));
        for chunk in chunks.drain(..) {
            match &mut tail {
                Some(t) => {
                    match t.back_mut() {
                        Some(last) if !last.ends_with(b"\n") => last.extend(chunk),
                        _ => t.push_back(chunk),
                    }
                    while t.len() > tail_n {
                        t.pop_front();
                    }
                }
                None => {
                    if !sink.send(chunk).await {
                        return Ok(());
                    }
                }
            }
        }
    }
    for chunk in tail.into_iter().flatten() {
        if !sink.send(chunk).await {
            return Ok(());
        }
    }
    if !opts.follow {
        return Ok(());
    }
    follow(path, live_file, dec, exited, sink, &mut buf).await
}

/// Keep reading the live file as it grows (and across rotations) until
/// the container has exited and the file is drained.
async fn follow(
    path: &Path,
    mut file: Option<tokio::fs::File>,
    mut dec: Decoder,
    exited: Option<BoxFuture<'static, ()>>,
    sink: &mut Sink,
    buf: &mut [u8],
) -> std::io::Result<()> {
    let mut exited = exited.map(|f| f.shared());
    let mut done = false;
    loop {
        // Drain what is there.
        if let Some(f) = &mut file {
            loop {
                let n = f.read(buf).await?;
                if n == 0 {
                    break;
                }
                let mut out = Vec::new();
                dec.feed(&buf[..n], &mut |chunk, _| out.push(chunk));
                for chunk in out {
                    if !sink.send(chunk).await {
                        return Ok(());
                    }
                }
            }
        }
        // Rotated or truncated: the live path is a new file, or shorter.
        let reopen = match (&file, tokio::fs::metadata(path).await) {
            (None, Ok(_)) => true,
            (Some(f), Ok(m)) => match f.metadata().await {
                Ok(cur) => cur.ino() != m.ino() || cur.dev() != m.dev(),
                Err(_) => true,
            },
            (_, Err(_)) => false,
        };
        if reopen {
            if let Ok(f) = tokio::fs::File::open(path).await {
                file = Some(f);
            }
            continue;
        }
        if let Some(f) = &mut file {
            // copytruncate-style rotation: start over from the top.
            let pos = f.stream_position().await?;
            if f.metadata().await.map(|m| m.len() < pos).unwrap_or(false) {
                f.seek(std::io::SeekFrom::Start(0)).await?;
                continue;
            }
        }
        if done {
            return Ok(());
        }
        let tick = tokio::time::sleep(POLL);
        match &mut exited {
            Some(ex) => {
                tokio::select! {
                    _ = tick => {}
                    _ = ex.clone() => { done = true; exited = None; }
                    _ = sink.tx.closed() => return Ok(()),
                }
            }
            None => {
                tokio::select! {
                    _ = tick => {}
                    _ = sink.tx.closed() => return Ok(()),
                }
            }
        }
    }
}

/// The kubelet's checks before serving logs, from the pod's status:
/// which containers have logs to show, worded as upstream.
pub fn check_container_log_status(
    pod: &Value,
    container: &str,
    previous: bool,
) -> Result<(), String> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|k| {
        pod.pointer(&format!("/status/{k}"))
            .and_then(Value::as_array)
    })
    .flatten()
    .find(|s| s.get("name").and_then(Value::as_str) == Some(container));
    let Some(s) = status else {
        return Err(format!(
            "container \"{container}\" in pod \"{pod_name}\" is not available"
        ));
    };
    let has_id = |v: Option<&Value>| {
        v.and_then(|t| t.get("containerID"))
            .and_then(Value::as_str)
            .is_some_and(|id| !id.is_empty())
    };
    let last_term = s.pointer("/lastState/terminated");
    let state = s.get("state");
    let running = state.and_then(|v| v.get("running"));
    let terminated = state.and_then(|v| v.get("terminated"));
    let waiting = state.and_then(|v| v.get("waiting"));
    let term_msg = || format!("container \"{container}\" in pod \"{pod_name}\" is terminated");
    if previous {
        return if has_id(last_term) {
            Ok(())
        } else {
            Err(format!(
                "previous terminated container \"{container}\" in pod \"{pod_name}\" not found"
            ))
        };
    }
    if running.is_some() {
        return Ok(());
    }
    if let Some(t) = terminated {
        return if has_id(Some(t)) || has_id(last_term) {
            Ok(())
        } else {
            Err(term_msg())
        };
    }
    if last_term.is_some() {
        return if has_id(last_term) {
            Ok(())
        } else {
            Err(term_msg())
        };
    }
    if let Some(w) = waiting {
        let reason = w.get("reason").and_then(Value::as_str).unwrap_or_default();
        let why = match reason {
            "ErrImagePull" => "image can't be pulled",
            "ImagePullBackOff" => "trying and failing to pull image",
            r => r,
        };
        return Err(format!(
            "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {why}"
        ));
    }
    Err(format!(
        "container \"{container}\" in pod \"{pod_name}\" is waiting to start - no logs yet"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::json;

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("rk3s-logs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    async fn collect(s: BoxStream<'static, std::io::Result<Bytes>>) -> String {
        let parts: Vec<Bytes> = s.map(|r| r.expect("chunk")).collect().await;
        String::from_utf8(parts.concat()).expect("utf8")
    }

    const LOG: &str = "\
2024-01-01T00:00:01.000000001Z stdout F one
2024-01-01T00:00:02.5Z stderr F two
2024-01-01T00:00:03Z stdout P thr
2024-01-01T00:00:03.1Z stdout F ee
2024-01-01T00:00:04Z stdout F four
";

    #[test]
    fn parses_cri_lines() {
        let l = parse_line(b"2024-01-01T00:00:03Z stdout P thr").expect("line");
        assert_eq!(l.stream, "stdout");
        assert!(l.partial);
        assert_eq!(l.message, b"thr");
        let l = parse_line(b"2024-01-01T00:00:03Z stderr F ").expect("empty message");
        assert_eq!(l.message, b"");
        assert!(parse_line(b"garbage").is_none());
        assert!(parse_line(b"2024-01-01T00:00:03Z stdin F x").is_none());
    }

    #[tokio::test]
    async fn reads_joins_fragments_and_prefixes_timestamps() {
        let d = tmpdir();
        let p = d.join("0.log");
        std::fs::write(&p, LOG).expect("write");
        let plain = collect(stream(p.clone(), ReadOptions::default(), None)).await;
        assert_eq!(plain, "one\ntwo\nthree\nfour\n");
        let ts = collect(stream(
            p.clone(),
            ReadOptions {
                timestamps: true,
                ..Default::default()
            },
            None,
        ))
        .await;
        assert_eq!(
            ts,
            "2024-01-01T00:00:01.000000001Z one\n2024-01-01T00:00:02.5Z two\n\
             2024-01-01T00:00:03Z three\n2024-01-01T00:00:04Z four\n"
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[tokio::test]
    async fn tail_since_and_limit() {
        let d = tmpdir();
        let p = d.join("0.log");
        std::fs::write(&p, LOG).expect("write");
        let tail = |n| ReadOptions {
            tail_lines: Some(n),
            ..Default::default()
        };
        assert_eq!(
            collect(stream(p.clone(), tail(2), None)).await,
            "three\nfour\n"
        );
        assert_eq!(collect(stream(p.clone(), tail(0), None)).await, "");
        assert_eq!(
            collect(stream(p.clone(), tail(10), None)).await,
            "one\ntwo\nthree\nfour\n"
        );
        let since = ReadOptions {
            since: Some("2024-01-01T00:00:02.5Z".parse().expect("ts")),
            ..Default::default()
        };
        assert_eq!(
            collect(stream(p.clone(), since, None)).await,
            "two\nthree\nfour\n"
        );
        let limit = ReadOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(collect(stream(p.clone(), limit, None)).await, "one\ntw");
        let _ = std::fs::remove_dir_all(d);
    }

    #[tokio::test]
    async fn rotated_files_come_first() {
        let d = tmpdir();
        let p = d.join("0.log");
        std::fs::write(
            d.join("0.log.20240101-000000"),
            "2024-01-01T00:00:00Z stdout F old\n",
        )
        .expect("write");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"2023-12-31T00:00:00Z stdout F oldest\n").expect("gz");
        std::fs::write(d.join("0.log.20231231-000000.gz"), gz.finish().expect("gz"))
            .expect("write");
        std::fs::write(&p, "2024-01-02T00:00:00Z stdout F new\n").expect("write");
        assert_eq!(
            collect(stream(p.clone(), ReadOptions::default(), None)).await,
            "oldest\nold\nnew\n"
        );
        let _ = std::fs::remove_dir_all(d);
    }

    async fn next_chunk(s: &mut BoxStream<'static, std::io::Result<Bytes>>) -> Option<Bytes> {
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("no output in time")
            .map(|r| r.expect("chunk"))
    }

    /// Follow returns what is appended, survives a rotation, and ends once
    /// the container has exited and the file is drained.
    #[tokio::test]
    async fn follow_until_exit() {
        use std::io::Write;
        let d = tmpdir();
        let p = d.join("0.log");
        std::fs::write(&p, "2024-01-01T00:00:00Z stdout F a\n").expect("write");
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel::<()>();
        let exited = async move {
            let _ = exit_rx.await;
        }
        .boxed();
        let mut s = stream(
            p.clone(),
            ReadOptions {
                follow: true,
                ..Default::default()
            },
            Some(exited),
        );
        assert_eq!(next_chunk(&mut s).await.as_deref(), Some(&b"a\n"[..]));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .expect("open");
        f.write_all(b"2024-01-01T00:00:01Z stdout F b\n")
            .expect("append");
        assert_eq!(next_chunk(&mut s).await.as_deref(), Some(&b"b\n"[..]));
        // Rotate: rename and start a new live file.
        std::fs::rename(&p, d.join("0.log.20240101-000001")).expect("rotate");
        std::fs::write(&p, "2024-01-01T00:00:02Z stdout F c\n").expect("write");
        assert_eq!(next_chunk(&mut s).await.as_deref(), Some(&b"c\n"[..]));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .expect("open");
        f.write_all(b"2024-01-01T00:00:03Z stdout F d\n")
            .expect("append");
        let _ = exit_tx.send(());
        assert_eq!(next_chunk(&mut s).await.as_deref(), Some(&b"d\n"[..]));
        assert!(next_chunk(&mut s).await.is_none(), "stream ends after exit");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn container_status_checks_read_like_the_kubelet() {
        let pod = |statuses: Value| json!({"metadata": {"name": "p"}, "status": {"containerStatuses": statuses}});
        let waiting =
            pod(json!([{"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}]));
        assert_eq!(
            check_container_log_status(&waiting, "c", false).unwrap_err(),
            "container \"c\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        assert_eq!(
            check_container_log_status(&waiting, "c", true).unwrap_err(),
            "previous terminated container \"c\" in pod \"p\" not found"
        );
        let pull =
            pod(json!([{"name": "c", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]));
        assert_eq!(
            check_container_log_status(&pull, "c", false).unwrap_err(),
            "container \"c\" in pod \"p\" is waiting to start: trying and failing to pull image"
        );
        let restarted = pod(json!([{"name": "c", "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "rk3s://x"}}}]));
        assert!(check_container_log_status(&restarted, "c", false).is_ok());
        assert!(check_container_log_status(&restarted, "c", true).is_ok());
        assert_eq!(
            check_container_log_status(&restarted, "d", false).unwrap_err(),
            "container \"d\" in pod \"p\" is not available"
        );
    }
}
