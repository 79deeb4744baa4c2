//! `/exec` and `/attach` over WebSocket, with the kubelet's channel sub-protocols, as
//! a client (or an API server passing a client's request through) asks for them.
//!
//! Followed: k8s.io/cri-streaming `pkg/streaming/remotecommand/websocket.go`
//! (`createWebSocketStreams`: the protocols, the channels, the empty first message on
//! the lowest writable channel, the v4 Status on the error channel) and k8s.io/streaming
//! `pkg/httpstream/wsstream/conn.go` (the framing: each message starts with its
//! channel, a byte in the binary protocols, an ASCII digit before base64 text in the
//! `base64` ones; the client's first offer the server accepts wins, none offered
//! means binary). `v5.channel.k8s.io` is not among them: the API server translates it
//! to SPDY before it reaches a kubelet.

use axum::extract::FromRequestParts;
use axum::extract::Request;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::streaming::{Options, Refused, refuse, status_of};
use crate::runtime::{Output, Process, ProcessIo, TerminalSize};

/// The sub-protocols the kubelet serves exec and attach with over WebSocket.
const PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// Messages queued for the client.
const OUTGOING_QUEUE: usize = 16;
/// Terminal resizes queued for a process.
const RESIZE_QUEUE: usize = 4;
/// The buffer between the client's stdin messages and the process.
const STDIN_BUFFER: usize = 64 * 1024;
/// The most one output message carries.
const CHUNK: usize = 32 * 1024;

/// Whether a request asks to upgrade to WebSocket.
pub(super) fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The client's first offered sub-protocol the kubelet serves; `""` (binary, v1
/// Status) when it offers none.
pub(super) fn negotiate(headers: &HeaderMap) -> Result<&'static str, Refused> {
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok("");
    }
    offered
        .iter()
        .find_map(|o| PROTOCOLS.iter().find(|p| *p == o).copied())
        .ok_or_else(|| {
            refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports \
                     {offered:?}, server accepts {PROTOCOLS:?}"
                ),
            )
        })
}

/// Answers the upgrade and runs `process` over the WebSocket.
pub(super) async fn upgrade(
    request: Request,
    protocol: &'static str,
    options: Options,
    process: Box<dyn Process>,
    command: Vec<String>,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let upgrade = if protocol.is_empty() {
        upgrade
    } else {
        upgrade.protocols([protocol])
    };
    upgrade.on_upgrade(move |socket| session(socket, protocol, options, process, command))
}

/// A message on `channel` in the protocol's framing.
fn frame(channel: u8, data: &[u8], base64: bool) -> Message {
    if base64 {
        let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
        text.push(char::from(b'0' + channel));
        text.push_str(&STANDARD.encode(data));
        Message::Text(text.into())
    } else {
        let mut bytes = Vec::with_capacity(1 + data.len());
        bytes.push(channel);
        bytes.extend_from_slice(data);
        Message::Binary(bytes.into())
    }
}

/// A client's message: its channel and data; `None` for control messages and
/// malformed ones.
fn unframe(message: Message, base64: bool) -> Option<(u8, Vec<u8>)> {
    match message {
        Message::Binary(bytes) if !base64 => {
            let (channel, data) = bytes.split_first()?;
            Some((*channel, data.to_vec()))
        }
        Message::Text(text) if base64 => {
            let text = text.as_str();
            let channel = text.as_bytes().first()?.checked_sub(b'0')?;
            Some((channel, STANDARD.decode(&text[1..]).ok()?))
        }
        _ => None,
    }
}

/// Copies what the process writes on one stream to the client's channel.
fn pump(
    channel: u8,
    outgoing: mpsc::Sender<(u8, Vec<u8>)>,
) -> (Output, tokio::task::JoinHandle<()>) {
    let (writer, mut reader) = tokio::io::duplex(CHUNK);
    let task = tokio::spawn(async move {
        let mut buffer = vec![0; CHUNK];
        while let Ok(read) = reader.read(&mut buffer).await {
            if read == 0
                || outgoing
                    .send((channel, buffer[..read].to_vec()))
                    .await
                    .is_err()
            {
                return;
            }
        }
    });
    (Box::new(writer), task)
}

async fn session(
    socket: WebSocket,
    protocol: &'static str,
    options: Options,
    process: Box<dyn Process>,
    command: Vec<String>,
) {
    let base64 = protocol.contains("base64");
    let (mut sink, mut incoming) = socket.split();
    let (outgoing, mut queued) = mpsc::channel::<(u8, Vec<u8>)>(OUTGOING_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some((channel, data)) = queued.recv().await {
            if sink.send(frame(channel, &data, base64)).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    // The client learns the connection is up from an empty message on the lowest
    // channel it reads.
    let first = if options.stdout {
        STDOUT
    } else if options.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = outgoing.send((first, Vec::new())).await;
    let mut pumps = Vec::new();
    let mut output = |wanted: bool, channel: u8| {
        wanted.then(|| {
            let (writer, task) = pump(channel, outgoing.clone());
            pumps.push(task);
            writer
        })
    };
    let stdout = output(options.stdout, STDOUT);
    let stderr = output(options.stderr, STDERR);
    let (mut stdin_writer, stdin) = match options.stdin {
        true => {
            let (writer, reader) = tokio::io::duplex(STDIN_BUFFER);
            (
                Some(writer),
                Some(Box::new(reader) as crate::runtime::Input),
            )
        }
        false => (None, None),
    };
    let (sizes, resizes) = mpsc::channel::<TerminalSize>(RESIZE_QUEUE);
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                return;
            }
            match unframe(message, base64) {
                Some((STDIN, data)) => {
                    if let Some(stdin) = stdin_writer.as_mut()
                        && stdin.write_all(&data).await.is_err()
                    {
                        stdin_writer = None;
                    }
                }
                Some((RESIZE, data)) => {
                    if let Ok(size) = serde_json::from_slice::<TerminalSize>(&data) {
                        let _ = sizes.try_send(size);
                    }
                }
                _ => {}
            }
        }
    });
    let mut io = ProcessIo::new(stdin, stdout, stderr);
    if options.tty {
        io = io.with_tty(Some(resizes));
    }
    let outcome = tokio::select! {
        outcome = process.run(io) => Some(outcome),
        _ = &mut reader => None,
    };
    reader.abort();
    for task in pumps {
        let _ = task.await;
    }
    if let Some(outcome) = outcome {
        let status = status_of(&outcome, &command);
        let report = if protocol.starts_with("v4.") {
            Some(status.to_string())
        } else {
            // The older protocols carry only a failure's message.
            (status["status"] != "Success")
                .then(|| status["message"].as_str().unwrap_or_default().to_string())
        };
        if let Some(report) = report {
            let _ = outgoing.send((ERROR, report.into_bytes())).await;
        }
    }
    drop(outgoing);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn offering(protocols: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(protocols).unwrap(),
        );
        headers
    }

    #[test]
    fn the_clients_first_protocol_the_kubelet_serves_wins() {
        assert!(is_websocket(&offering("x")));
        let chosen = |offer| negotiate(&offering(offer)).ok();
        assert_eq!(
            chosen("v5.channel.k8s.io, v4.channel.k8s.io"),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            chosen("base64.channel.k8s.io,channel.k8s.io"),
            Some("base64.channel.k8s.io")
        );
        assert_eq!(chosen(""), Some(""));
        let refused = negotiate(&offering("v5.channel.k8s.io")).unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn messages_carry_their_channel_in_either_framing() {
        assert_eq!(
            frame(STDOUT, b"hi", false),
            Message::Binary(vec![1, b'h', b'i'].into())
        );
        assert_eq!(frame(ERROR, b"hi", true), Message::Text("3aGk=".into()));
        assert_eq!(
            unframe(Message::Text("0aGk=".into()), true),
            Some((STDIN, b"hi".to_vec()))
        );
        assert_eq!(
            unframe(Message::Binary(vec![4, b'{'].into()), false),
            Some((RESIZE, b"{".to_vec()))
        );
        assert_eq!(unframe(Message::Binary(Vec::new().into()), false), None);
        assert_eq!(unframe(Message::Text("x".into()), false), None);
    }
}
