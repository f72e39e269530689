//! A minimal SPDY/3.1 server session: what kubectl's streaming clients
//! (exec/attach up to 1.29, port-forward up to 1.30, and port-forward
//! tunnelled through a WebSocket after that) speak. There is no maintained
//! SPDY crate, so this is hand-written from the SPDY/3.1 draft: the frames
//! clients send (SYN_STREAM, DATA, RST_STREAM, PING, GOAWAY, SETTINGS,
//! WINDOW_UPDATE, HEADERS) are read; the server only replies to streams
//! (SYN_REPLY), writes DATA on them and echoes PINGs; the client ends the
//! session. Flow control is not
//! enforced by the Go client (moby/spdystream), so window updates are
//! ignored and none are sent.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const FLAG_FIN: u8 = 0x01;
/// Largest frame payload we accept (SPDY allows 2^24-1).
const MAX_FRAME: usize = 1 << 24;
/// Largest DATA frame we write.
const CHUNK: usize = 32 * 1024;
/// RST_STREAM status CANCEL.
const RST_CANCEL: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("spdy: {0}")]
    Protocol(String),
    #[error("spdy: i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The header-compression dictionary of SPDY/3 (draft 3, section 2.6.10.1):
/// length-prefixed common header names and values, then common text.
static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    );
    let mut d = Vec::with_capacity(1424);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
});

/// Stream headers, names lower-cased as SPDY sends them.
pub type Headers = HashMap<String, String>;

/// A stream the client opened.
pub struct SpdyStream {
    pub id: u32,
    pub headers: Headers,
    /// What the client sends on it; ends at the client's FIN or RST.
    pub data: mpsc::Receiver<Bytes>,
}

impl SpdyStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

enum Out {
    Reply(u32),
    Data(u32, Bytes, bool),
    Reset(u32),
    Ping(u32),
}

/// The server's side of a SPDY connection: accepts client streams and
/// writes to them. Dropping every handle ends the session.
#[derive(Clone)]
pub struct SpdySession {
    out: mpsc::Sender<Out>,
    /// Cancelled when the client's side of the connection ends.
    closed: tokio_util::sync::CancellationToken,
}

/// Writes to one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }
    /// Send `data` (split into frames); false once the connection is gone.
    pub async fn write(&self, data: Bytes) -> bool {
        let mut data = data;
        while !data.is_empty() {
            let n = data.len().min(CHUNK);
            if self
                .out
                .send(Out::Data(self.id, data.split_to(n), false))
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }
    /// Half-close: the server sends no more on this stream.
    pub async fn close(&self) {
        let _ = self.out.send(Out::Data(self.id, Bytes::new(), true)).await;
    }
    /// Abort the stream in both directions.
    pub async fn reset(&self) {
        let _ = self.out.send(Out::Reset(self.id)).await;
    }
}

impl SpdySession {
    /// Run the session over `io`; new client streams arrive on the receiver,
    /// which ends when the connection does.
    pub fn start<IO>(io: IO) -> (SpdySession, mpsc::Receiver<SpdyStream>)
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel::<Out>(64);
        let (accept_tx, accept_rx) = mpsc::channel(16);
        tokio::spawn(async move {
            if let Err(e) = write_loop(wr, out_rx).await {
                tracing::debug!("{e}");
            }
        });
        let session = SpdySession {
            out: out_tx,
            closed: Default::default(),
        };
        let reader = session.clone();
        tokio::spawn(async move {
            if let Err(e) = reader.read_loop(rd, accept_tx).await {
                tracing::debug!("{e}");
            }
            reader.closed.cancel();
        });
        (session, accept_rx)
    }

    pub fn writer(&self, id: u32) -> StreamWriter {
        StreamWriter {
            id,
            out: self.out.clone(),
        }
    }

    /// Resolves once the client has closed the connection (or it broke).
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        mut rd: R,
        accept: mpsc::Sender<SpdyStream>,
    ) -> Result<(), SpdyError> {
        let streams: Arc<Mutex<HashMap<u32, mpsc::Sender<Bytes>>>> = Default::default();
        let mut inflate = HeaderInflater::new();
        let mut head = [0u8; 8];
        loop {
            match rd.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let flags = head[4];
            let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
            if len >= MAX_FRAME {
                return Err(SpdyError::Protocol(format!("frame of {len} bytes")));
            }
            let mut payload = vec![0u8; len];
            rd.read_exact(&mut payload).await?;
            if head[0] & 0x80 == 0 {
                // DATA
                let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                let tx = streams.lock().get(&id).cloned();
                if let Some(tx) = tx {
                    if !payload.is_empty() {
                        // A consumer that went away just drops the data.
                        let _ = tx.send(Bytes::from(payload)).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        streams.lock().remove(&id);
                    }
                }
                continue;
            }
            let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
            let kind = u16::from_be_bytes([head[2], head[3]]);
            if version != VERSION {
                return Err(SpdyError::Protocol(format!("version {version}")));
            }
            let mut p = &payload[..];
            match kind {
                SYN_STREAM => {
                    if p.len() < 10 {
                        return Err(SpdyError::Protocol("short SYN_STREAM".into()));
                    }
                    let id = p.get_u32() & 0x7fff_ffff;
                    p.advance(6);
                    let headers = parse_headers(&inflate.inflate(p)?)?;
                    let (tx, rx) = mpsc::channel(64);
                    if flags & FLAG_FIN == 0 {
                        streams.lock().insert(id, tx);
                    }
                    if self.out.send(Out::Reply(id)).await.is_err() {
                        return Ok(());
                    }
                    let stream = SpdyStream {
                        id,
                        headers,
                        data: rx,
                    };
                    if accept.send(stream).await.is_err() {
                        return Ok(());
                    }
                }
                // Extra headers on a stream: decompress to keep the shared
                // zlib context in step, otherwise ignore.
                HEADERS if p.len() >= 4 => {
                    let id = p.get_u32() & 0x7fff_ffff;
                    let _ = inflate.inflate(p)?;
                    if flags & FLAG_FIN != 0 {
                        streams.lock().remove(&id);
                    }
                }
                RST_STREAM if p.len() >= 4 => {
                    let id = p.get_u32() & 0x7fff_ffff;
                    streams.lock().remove(&id);
                }
                PING if p.len() >= 4 => {
                    let id = p.get_u32();
                    // Client pings are odd; answer them.
                    if id % 2 == 1 {
                        let _ = self.out.send(Out::Ping(id)).await;
                    }
                }
                GOAWAY => return Ok(()),
                // SETTINGS, WINDOW_UPDATE, NOOP and others: nothing to do.
                _ => {}
            }
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Out>,
) -> Result<(), SpdyError> {
    let mut deflate = HeaderDeflater::new()?;
    let mut buf = BytesMut::with_capacity(CHUNK + 16);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Coalesce whatever is queued into one write.
        while let Some(o) = next {
            encode(&mut buf, o, &mut deflate)?;
            if buf.len() > CHUNK {
                break;
            }
            next = rx.try_recv().ok();
        }
        wr.write_all(&buf).await?;
        wr.flush().await?;
        buf.clear();
    }
    let _ = wr.shutdown().await;
    Ok(())
}

fn control(buf: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]) {
    buf.put_u16(0x8000 | VERSION);
    buf.put_u16(kind);
    buf.put_u32(((flags as u32) << 24) | payload.len() as u32);
    buf.put_slice(payload);
}

fn encode(buf: &mut BytesMut, o: Out, deflate: &mut HeaderDeflater) -> Result<(), SpdyError> {
    match o {
        Out::Reply(id) => {
            let mut p = id.to_be_bytes().to_vec();
            // An empty header block: zero name/value pairs.
            p.extend(deflate.deflate(&0u32.to_be_bytes())?);
            control(buf, SYN_REPLY, 0, &p);
        }
        Out::Data(id, data, fin) => {
            buf.put_u32(id & 0x7fff_ffff);
            buf.put_u32((if fin { (FLAG_FIN as u32) << 24 } else { 0 }) | data.len() as u32);
            buf.put_slice(&data);
        }
        Out::Reset(id) => {
            let mut p = id.to_be_bytes().to_vec();
            p.extend(RST_CANCEL.to_be_bytes());
            control(buf, RST_STREAM, 0, &p);
        }
        Out::Ping(id) => control(buf, PING, 0, &id.to_be_bytes()),
    }
    Ok(())
}

/// `num pairs, (len name, len value)*` with NUL-separated multiple values.
fn parse_headers(mut p: &[u8]) -> Result<Headers, SpdyError> {
    let bad = || SpdyError::Protocol("malformed header block".into());
    let take = |p: &mut &[u8]| -> Result<String, SpdyError> {
        if p.len() < 4 {
            return Err(bad());
        }
        let n = p.get_u32() as usize;
        if p.len() < n {
            return Err(bad());
        }
        let s = String::from_utf8_lossy(&p[..n]).into_owned();
        p.advance(n);
        Ok(s)
    };
    if p.len() < 4 {
        return Err(bad());
    }
    let count = p.get_u32();
    let mut h = Headers::new();
    for _ in 0..count {
        let name = take(&mut p)?.to_ascii_lowercase();
        let value = take(&mut p)?;
        // Several values of one name: the first is what the protocols use.
        let first = value.split('\0').next().unwrap_or("").to_string();
        h.entry(name).or_insert(first);
    }
    Ok(h)
}

/// The client-to-server zlib context, shared by every header block of the
/// connection.
struct HeaderInflater {
    z: Decompress,
}

impl HeaderInflater {
    fn new() -> Self {
        HeaderInflater {
            z: Decompress::new(true),
        }
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let err = |e: flate2::DecompressError| SpdyError::Protocol(format!("header block: {e}"));
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(4096);
            }
            let before_in = self.z.total_in();
            let before_out = out.len();
            let r = self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.z.total_in() - before_in) as usize..];
            match r {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z.set_dictionary(&DICTIONARY).map_err(err)?;
                    continue;
                }
                Err(e) => return Err(err(e)),
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
            }
            // Everything is in and the output was not the limit: flushed.
            let stalled = out.len() == before_out && self.z.total_in() == before_in;
            if (input.is_empty() && out.len() < out.capacity()) || stalled {
                break;
            }
        }
        Ok(out)
    }
}

/// The server-to-client zlib context.
struct HeaderDeflater {
    z: Compress,
}

impl HeaderDeflater {
    fn new() -> Result<Self, SpdyError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&DICTIONARY)
            .map_err(|e| SpdyError::Protocol(format!("header dictionary: {e}")))?;
        Ok(HeaderDeflater { z })
    }

    fn deflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() + 128);
        let before = self.z.total_in();
        loop {
            let used = (self.z.total_in() - before) as usize;
            self.z
                .compress_vec(&input[used..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Protocol(format!("header block: {e}")))?;
            // Done when all input is in and the flush left spare room.
            if (self.z.total_in() - before) as usize == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(256);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_spdy3s() {
        // The draft's dictionary is 1423 bytes long.
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b",*,enq=0."));
    }

    /// Header blocks round-trip through the shared compression contexts,
    /// several blocks in a row as on a real connection.
    #[test]
    fn header_blocks_round_trip() {
        let mut d = HeaderDeflater::new().expect("deflater");
        let mut i = HeaderInflater::new();
        for n in 0..3 {
            let mut block = Vec::new();
            block.extend(2u32.to_be_bytes());
            for (k, v) in [("streamtype", "data"), ("port", "8080")] {
                block.extend((k.len() as u32).to_be_bytes());
                block.extend(k.as_bytes());
                let v = format!("{v}{n}");
                block.extend((v.len() as u32).to_be_bytes());
                block.extend(v.as_bytes());
            }
            let z = d.deflate(&block).expect("deflate");
            let h = parse_headers(&i.inflate(&z).expect("inflate")).expect("parse");
            assert_eq!(h["streamtype"], format!("data{n}"));
            assert_eq!(h["port"], format!("8080{n}"));
        }
    }
}
