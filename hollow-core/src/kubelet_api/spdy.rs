//! SPDY/3.1, the server side, as far as the kubelet's streaming endpoints need it.
//!
//! The API server (and kubectl, when it falls back) opens exec, attach and port-forward
//! sessions to a kubelet by upgrading an HTTPS request to SPDY/3.1, then opening one
//! stream per channel (stdin, stdout, stderr, error, resize; or a data and an error
//! stream per forwarded connection). This module frames that protocol: it accepts the
//! peer's streams, replies to them, and hands each to the caller as a
//! [`DuplexStream`]: reading it reads the peer's data, writing it sends data, and
//! dropping or shutting it down ends our half of the stream. Like the peers it talks to
//! (Go's `spdystream`), it does no flow control.

use std::collections::HashMap;
use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The protocol version this module speaks.
const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status for a stream we cannot take.
const REFUSED_STREAM: u32 = 3;
/// The largest frame payload accepted (SPDY lengths are 24 bits).
const MAX_FRAME: usize = (1 << 24) - 1;
/// The largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// The buffer between the session and each stream's user, per direction.
const STREAM_BUFFER: usize = 64 * 1024;
/// The largest DATA frame sent.
const CHUNK: usize = 32 * 1024;
/// Frames queued for the writer.
const OUTGOING_QUEUE: usize = 64;
/// How long closing waits for streams to flush and for the peer to hang up.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The dictionary SPDY/3 header compression is primed with (its section 2.6.10.1): the
/// common header names, each with a 32-bit length before it, then common values.
fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
            "accept-encoding", "accept-language", "accept-ranges", "age", "allow",
            "authorization", "cache-control", "connection", "content-base",
            "content-encoding", "content-language", "content-length", "content-location",
            "content-md5", "content-range", "content-type", "date", "etag", "expect",
            "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
            "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards",
            "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
            "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
            "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get",
            "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
            "keep-alive", "origin",
        ];
        const STATUS_CODES: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505";
        const PHRASES: &str = "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable";
        const DATES: &str = "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT";
        const VALUES: &str = "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
        let mut bytes = Vec::with_capacity(1424);
        for word in WORDS {
            bytes.extend_from_slice(&u32::try_from(word.len()).unwrap_or(0).to_be_bytes());
            bytes.extend_from_slice(word.as_bytes());
        }
        for tail in [STATUS_CODES, PHRASES, DATES, VALUES] {
            bytes.extend_from_slice(tail.as_bytes());
        }
        bytes
    })
}

/// A stream's headers, names in lower case; a name with several values holds them
/// separated by NUL, as SPDY sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.split('\0').next())
    }

    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
        )
    }

    fn encode(&self) -> Vec<u8> {
        let mut block = Vec::new();
        let length = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
        block.extend_from_slice(&length(self.0.len()));
        for (name, value) in &self.0 {
            block.extend_from_slice(&length(name.len()));
            block.extend_from_slice(name.as_bytes());
            block.extend_from_slice(&length(value.len()));
            block.extend_from_slice(value.as_bytes());
        }
        block
    }

    fn decode(block: &[u8]) -> io::Result<Self> {
        let mut rest = block;
        let mut take = |n: usize| -> io::Result<&[u8]> {
            if rest.len() < n {
                return Err(invalid("truncated header block"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let count = read_u32(take(4)?);
        let mut pairs = Vec::new();
        for _ in 0..count {
            let length = read_u32(take(4)?) as usize;
            let name = String::from_utf8_lossy(take(length)?).to_ascii_lowercase();
            let length = read_u32(take(4)?) as usize;
            let value = String::from_utf8_lossy(take(length)?).into_owned();
            pairs.push((name, value));
        }
        Ok(Self(pairs))
    }
}

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Header compression for one direction: one zlib stream for the whole session.
struct Deflater(Compress);

impl Deflater {
    fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        // A fresh stream always takes a dictionary.
        let _ = z.set_dictionary(dictionary());
        Self(z)
    }

    fn deflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.0.total_in();
            self.0
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| invalid(format!("compressing headers: {e}")))?;
            consumed += usize::try_from(self.0.total_in() - before).unwrap_or(0);
            if consumed >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Header decompression for one direction.
struct Inflater(Decompress);

impl Inflater {
    fn new() -> Self {
        Self(Decompress::new(true))
    }

    fn inflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let (before_in, before_out) = (self.0.total_in(), self.0.total_out());
            match self
                .0
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(dictionary())
                        .map_err(|e| invalid(format!("header dictionary: {e}")))?;
                }
                Err(error) => return Err(invalid(format!("decompressing headers: {error}"))),
            }
            consumed += usize::try_from(self.0.total_in() - before_in).unwrap_or(0);
            let progressed = self.0.total_in() != before_in || self.0.total_out() != before_out;
            if out.len() > MAX_HEADER_BLOCK {
                return Err(invalid("header block too large"));
            }
            if consumed >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if !progressed && consumed >= input.len() {
                return Ok(out);
            }
        }
    }
}

/// A frame as read from the peer.
#[derive(Debug)]
enum Frame {
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    Reset {
        stream_id: u32,
    },
    Ping(u32),
    GoAway,
    /// SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY: nothing this server acts on.
    Ignored,
}

async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    inflater: &mut Inflater,
) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let length = (usize::from(head[5]) << 16) | (usize::from(head[6]) << 8) | usize::from(head[7]);
    if length > MAX_FRAME {
        return Err(invalid("frame too large"));
    }
    let mut payload = vec![0; length];
    reader.read_exact(&mut payload).await?;
    let word = |at: usize| -> io::Result<u32> {
        payload
            .get(at..at + 4)
            .map(read_u32)
            .ok_or_else(|| invalid("frame too short"))
    };
    if head[0] & 0x80 == 0 {
        return Ok(Some(Frame::Data {
            stream_id: read_u32(&head[0..4]) & 0x7fff_ffff,
            fin: flags & FLAG_FIN != 0,
            data: payload,
        }));
    }
    let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
    if version != VERSION {
        return Err(invalid(format!(
            "SPDY version {version} is not spoken here"
        )));
    }
    let frame = match u16::from_be_bytes([head[2], head[3]]) {
        SYN_STREAM => {
            let stream_id = word(0)? & 0x7fff_ffff;
            let block = payload
                .get(10..)
                .ok_or_else(|| invalid("frame too short"))?;
            Frame::SynStream {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                headers: Headers::decode(&inflater.inflate(block)?)?,
            }
        }
        SYN_REPLY => {
            // Keep the shared decompressor in step, though a server gets no replies.
            if let Some(block) = payload.get(4..) {
                inflater.inflate(block)?;
            }
            Frame::Ignored
        }
        RST_STREAM => Frame::Reset {
            stream_id: word(0)? & 0x7fff_ffff,
        },
        PING => Frame::Ping(word(0)?),
        GOAWAY => Frame::GoAway,
        8 => {
            // HEADERS: decompress to stay in step.
            if let Some(block) = payload.get(4..) {
                inflater.inflate(block)?;
            }
            Frame::Ignored
        }
        _ => Frame::Ignored,
    };
    Ok(Some(frame))
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(0).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

fn data_frame(stream_id: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    frame.push(if fin { FLAG_FIN } else { 0 });
    frame.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

/// What the session sends, in order.
enum Outgoing {
    Reply(u32),
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    Reset(u32),
    Ping(u32),
    GoAway,
}

impl Outgoing {
    fn encode(self, deflater: &mut Deflater, last_stream: u32) -> io::Result<Vec<u8>> {
        Ok(match self {
            Outgoing::Reply(stream_id) => {
                let mut payload = stream_id.to_be_bytes().to_vec();
                payload.extend(deflater.deflate(&Headers::default().encode())?);
                control_frame(SYN_REPLY, 0, &payload)
            }
            Outgoing::Data {
                stream_id,
                fin,
                data,
            } => data_frame(stream_id, fin, &data),
            Outgoing::Reset(stream_id) => {
                let mut payload = stream_id.to_be_bytes().to_vec();
                payload.extend_from_slice(&REFUSED_STREAM.to_be_bytes());
                control_frame(RST_STREAM, 0, &payload)
            }
            Outgoing::Ping(id) => control_frame(PING, 0, &id.to_be_bytes()),
            Outgoing::GoAway => {
                let mut payload = last_stream.to_be_bytes().to_vec();
                payload.extend_from_slice(&0u32.to_be_bytes());
                control_frame(GOAWAY, 0, &payload)
            }
        })
    }
}

/// A stream the peer opened: its headers, and our end of it.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The stream's id.
    pub(crate) id: u32,
    /// The headers it was opened with (`streamtype`, `port`, `requestid`, ...).
    pub(crate) headers: Headers,
    /// Reads what the peer sends; writes to the peer; shut down or drop to end it.
    pub(crate) io: DuplexStream,
}

/// A SPDY session over an upgraded connection.
pub(crate) struct Session {
    outgoing: mpsc::Sender<Outgoing>,
    pumps: TaskTracker,
    ended: CancellationToken,
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Serves SPDY on `io`; the peer's streams arrive on the returned receiver.
    pub(crate) fn serve<IO>(io: IO) -> (Self, mpsc::Receiver<Stream>)
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE);
        let (streams_tx, streams) = mpsc::channel(16);
        let pumps = TaskTracker::new();
        let ended = CancellationToken::new();
        let writer = tokio::spawn(write_frames(write_half, queue));
        let reader = tokio::spawn(read_frames(
            read_half,
            outgoing.clone(),
            streams_tx,
            pumps.clone(),
            ended.clone(),
        ));
        let session = Self {
            outgoing,
            pumps,
            ended,
            writer,
            reader,
        };
        (session, streams)
    }

    /// Cancelled when the peer hangs up or the connection fails.
    pub(crate) fn ended(&self) -> CancellationToken {
        self.ended.clone()
    }

    /// Ends the session as the kubelet does: once every stream handed out has been
    /// dropped and flushed, a GOAWAY, then the connection closes when the peer hangs up
    /// (or after a grace period).
    pub(crate) async fn close(self) {
        self.pumps.close();
        let _ = tokio::time::timeout(CLOSE_GRACE, self.pumps.wait()).await;
        let _ = self.outgoing.send(Outgoing::GoAway).await;
        drop(self.outgoing);
        let mut reader = self.reader;
        if tokio::time::timeout(CLOSE_GRACE, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
        let _ = tokio::time::timeout(CLOSE_GRACE, self.writer).await;
    }
}

async fn write_frames(mut writer: impl AsyncWrite + Unpin, mut queue: mpsc::Receiver<Outgoing>) {
    let mut deflater = Deflater::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        let mut going_away = false;
        while let Some(frame) = next.take() {
            going_away |= matches!(frame, Outgoing::GoAway);
            let Ok(bytes) = frame.encode(&mut deflater, 0) else {
                return;
            };
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
            next = queue.try_recv().ok();
        }
        if writer.flush().await.is_err() {
            return;
        }
        if going_away {
            let _ = writer.shutdown().await;
            return;
        }
    }
}

async fn read_frames(
    mut reader: impl AsyncRead + Unpin,
    outgoing: mpsc::Sender<Outgoing>,
    streams: mpsc::Sender<Stream>,
    pumps: TaskTracker,
    ended: CancellationToken,
) {
    let mut inflater = Inflater::new();
    let mut inbound: HashMap<u32, WriteHalf<DuplexStream>> = HashMap::new();
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, &mut inflater) => frame,
            () = ended.cancelled() => break,
        };
        match frame {
            Ok(Some(Frame::SynStream {
                stream_id,
                fin,
                headers,
            })) => {
                if stream_id % 2 == 0 || inbound.contains_key(&stream_id) {
                    let _ = outgoing.send(Outgoing::Reset(stream_id)).await;
                    continue;
                }
                let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
                let (our_reader, our_writer) = tokio::io::split(ours);
                if outgoing.send(Outgoing::Reply(stream_id)).await.is_err() {
                    break;
                }
                pumps.spawn(pump(stream_id, our_reader, outgoing.clone()));
                if fin {
                    drop(our_writer);
                } else {
                    inbound.insert(stream_id, our_writer);
                }
                let stream = Stream {
                    id: stream_id,
                    headers,
                    io: theirs,
                };
                if streams.send(stream).await.is_err() {
                    tracing::debug!(stream_id, "SPDY stream opened after the handler left");
                }
            }
            Ok(Some(Frame::Data {
                stream_id,
                fin,
                data,
            })) => {
                if let Some(writer) = inbound.get_mut(&stream_id)
                    && !data.is_empty()
                    && writer.write_all(&data).await.is_err()
                {
                    // Its user dropped it; what comes for it is dropped too.
                    inbound.remove(&stream_id);
                }
                if fin && let Some(mut writer) = inbound.remove(&stream_id) {
                    let _ = writer.shutdown().await;
                }
            }
            Ok(Some(Frame::Reset { stream_id })) => {
                inbound.remove(&stream_id);
            }
            Ok(Some(Frame::Ping(id))) => {
                // Echo the peer's pings (odd ids: the client's); ours would be even.
                if id % 2 == 1 {
                    let _ = outgoing.send(Outgoing::Ping(id)).await;
                }
            }
            Ok(Some(Frame::GoAway)) | Ok(None) => break,
            Ok(Some(Frame::Ignored)) => {}
            Err(error) => {
                tracing::debug!(%error, "SPDY session ended");
                break;
            }
        }
    }
    // Every stream's user sees the end of its input.
    drop(inbound);
    ended.cancel();
}

/// Sends what a stream's user writes as DATA frames, and a FIN when it is done.
async fn pump(
    stream_id: u32,
    mut reader: impl AsyncRead + Unpin,
    outgoing: mpsc::Sender<Outgoing>,
) {
    let mut buffer = vec![0; CHUNK];
    loop {
        let (fin, data) = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => (true, Vec::new()),
            Ok(n) => (false, buffer[..n].to_vec()),
        };
        let frame = Outgoing::Data {
            stream_id,
            fin,
            data,
        };
        if outgoing.send(frame).await.is_err() || fin {
            return;
        }
    }
}

/// The client side of the framing, for tests: what kubectl and the API server send.
#[cfg(test)]
pub(crate) mod client {
    use super::*;

    /// Frames a client writes and reads.
    pub(crate) struct Client {
        deflater: Deflater,
        inflater: Inflater,
    }

    /// What the client sees from the server.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Seen {
        Reply(u32),
        Data(u32, bool, Vec<u8>),
        Ping(u32),
        GoAway,
        Reset(u32),
    }

    impl Client {
        pub(crate) fn new() -> Self {
            Self {
                deflater: Deflater::new(),
                inflater: Inflater::new(),
            }
        }

        pub(crate) fn syn_stream(&mut self, id: u32, fin: bool, headers: &Headers) -> Vec<u8> {
            let mut payload = id.to_be_bytes().to_vec();
            payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            payload.extend(self.deflater.deflate(&headers.encode()).unwrap());
            control_frame(SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &payload)
        }

        pub(crate) fn data(&self, id: u32, fin: bool, data: &[u8]) -> Vec<u8> {
            data_frame(id, fin, data)
        }

        pub(crate) fn ping(&self, id: u32) -> Vec<u8> {
            control_frame(PING, 0, &id.to_be_bytes())
        }

        pub(crate) async fn read(&mut self, io: &mut (impl AsyncRead + Unpin)) -> Option<Seen> {
            let mut head = [0u8; 8];
            io.read_exact(&mut head).await.ok()?;
            let length =
                (usize::from(head[5]) << 16) | (usize::from(head[6]) << 8) | usize::from(head[7]);
            let mut payload = vec![0; length];
            io.read_exact(&mut payload).await.ok()?;
            if head[0] & 0x80 == 0 {
                let id = read_u32(&head[0..4]);
                return Some(Seen::Data(id, head[4] & FLAG_FIN != 0, payload));
            }
            Some(match u16::from_be_bytes([head[2], head[3]]) {
                SYN_REPLY => {
                    let headers = self.inflater.inflate(&payload[4..]).unwrap();
                    assert_eq!(Headers::decode(&headers).unwrap(), Headers::default());
                    Seen::Reply(read_u32(&payload))
                }
                PING => Seen::Ping(read_u32(&payload)),
                GOAWAY => Seen::GoAway,
                RST_STREAM => Seen::Reset(read_u32(&payload)),
                other => panic!("unexpected frame type {other}"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client::{Client, Seen};
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        // Every zlib stream a SPDY/3 peer sends names its dictionary by this checksum.
        let mut z = Decompress::new(true);
        let mut peer = Compress::new(Compression::default(), true);
        peer.set_dictionary(dictionary()).unwrap();
        let mut compressed = Vec::with_capacity(64);
        peer.compress_vec(b"x", &mut compressed, FlushCompress::Sync)
            .unwrap();
        let mut out = Vec::with_capacity(64);
        let error = z
            .decompress_vec(&compressed, &mut out, FlushDecompress::Sync)
            .unwrap_err();
        assert_eq!(error.needs_dictionary(), Some(0xe3c6_a7c2));
        assert_eq!(dictionary().len(), 1423);
    }

    #[test]
    fn header_blocks_survive_compression_across_frames() {
        let mut deflater = Deflater::new();
        let mut inflater = Inflater::new();
        for port in ["80", "8080", "443"] {
            let headers = Headers::from_pairs(&[("streamtype", "data"), ("port", port)]);
            let packed = deflater.deflate(&headers.encode()).unwrap();
            let unpacked = Headers::decode(&inflater.inflate(&packed).unwrap()).unwrap();
            assert_eq!(unpacked.get("port"), Some(port));
            assert_eq!(unpacked.get("StreamType"), Some("data"));
        }
        assert!(Headers::decode(&[0, 0, 0, 2, 0, 0]).is_err());
    }

    #[tokio::test]
    async fn streams_are_replied_to_and_carry_data_both_ways() {
        let (server_io, mut client_io) = tokio::io::duplex(1 << 16);
        let (session, mut streams) = Session::serve(server_io);
        let mut client = Client::new();
        let headers = Headers::from_pairs(&[("streamtype", "stdin")]);
        client_io
            .write_all(&client.syn_stream(1, false, &headers))
            .await
            .unwrap();
        client_io
            .write_all(&client.data(1, true, b"hello"))
            .await
            .unwrap();
        client_io.write_all(&client.ping(7)).await.unwrap();
        let mut stream = streams.recv().await.unwrap();
        assert_eq!(
            (stream.id, stream.headers.get("streamtype")),
            (1, Some("stdin"))
        );
        let mut got = String::new();
        stream.io.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello");
        stream.io.write_all(b"back").await.unwrap();
        drop(stream);
        assert_eq!(client.read(&mut client_io).await, Some(Seen::Reply(1)));
        assert_eq!(client.read(&mut client_io).await, Some(Seen::Ping(7)));
        assert_eq!(
            client.read(&mut client_io).await,
            Some(Seen::Data(1, false, b"back".to_vec()))
        );
        assert_eq!(
            client.read(&mut client_io).await,
            Some(Seen::Data(1, true, Vec::new()))
        );
        let closing = tokio::spawn(session.close());
        assert_eq!(client.read(&mut client_io).await, Some(Seen::GoAway));
        drop(client_io);
        closing.await.unwrap();
    }

    #[tokio::test]
    async fn garbage_ends_the_session_without_panicking() {
        let (server_io, mut client_io) = tokio::io::duplex(1 << 16);
        let (session, _streams) = Session::serve(server_io);
        client_io
            .write_all(&[0x80, 0x02, 0, 1, 0, 0, 0, 0])
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), session.ended().cancelled())
            .await
            .unwrap();
    }
}
