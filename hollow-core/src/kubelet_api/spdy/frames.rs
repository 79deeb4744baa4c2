//! SPDY/3 frames: reading the peer's, and encoding the ones the session sends.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::headers::{Deflater, Headers, Inflater};
use super::{invalid, read_u32};

/// The protocol version this module speaks.
const VERSION: u16 = 3;
pub(super) const SYN_STREAM: u16 = 1;
pub(super) const SYN_REPLY: u16 = 2;
pub(super) const RST_STREAM: u16 = 3;
pub(super) const PING: u16 = 6;
pub(super) const GOAWAY: u16 = 7;
pub(super) const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status for a stream we cannot take.
const REFUSED_STREAM: u32 = 3;
/// The largest frame payload accepted (SPDY lengths are 24 bits).
const MAX_FRAME: usize = (1 << 24) - 1;

/// A frame as read from the peer.
#[derive(Debug)]
pub(super) enum Frame {
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

pub(super) async fn read_frame(
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

pub(super) fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(0).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

pub(super) fn data_frame(stream_id: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    frame.push(if fin { FLAG_FIN } else { 0 });
    frame.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

/// What the session sends, in order.
pub(super) enum Outgoing {
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
    pub(super) fn encode(self, deflater: &mut Deflater, last_stream: u32) -> io::Result<Vec<u8>> {
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
