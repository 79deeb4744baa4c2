//! The client side of the framing, for tests: what kubectl and the API server send.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::frames::{
    FLAG_FIN, GOAWAY, PING, RST_STREAM, SYN_REPLY, SYN_STREAM, control_frame, data_frame,
};
use super::headers::{Deflater, Headers, Inflater};
use super::read_u32;

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
