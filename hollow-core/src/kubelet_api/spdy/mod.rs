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

mod frames;
mod headers;

#[cfg(test)]
pub(crate) mod client;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use frames::{Frame, Outgoing, read_frame};
pub(crate) use headers::Headers;
use headers::{Deflater, Inflater};

/// The buffer between the session and each stream's user, per direction.
const STREAM_BUFFER: usize = 64 * 1024;
/// The largest DATA frame sent.
const CHUNK: usize = 32 * 1024;
/// Frames queued for the writer.
const OUTGOING_QUEUE: usize = 64;
/// How long closing waits for streams to flush and for the peer to hang up.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
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
