//! `/exec`, `/attach` and `/portForward`: the kubelet's streaming endpoints, over SPDY
//! (exec and attach also over WebSocket: `super::websocket`).
//!
//! As the kubelet does, the request is checked first (the pod, the container, the
//! runtime's support) and answered with a plain HTTP error if it cannot go on; then the
//! connection is upgraded to SPDY/3.1 with the negotiated sub-protocol
//! (`v4.channel.k8s.io` down to `channel.k8s.io` for exec and attach,
//! `portforward.k8s.io` for port-forward), the client's streams are collected, and the
//! runtime's [`Process`] or [`PortStream`] is connected to them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;

use super::spdy::{Session, Stream};
use super::websocket;
use crate::node::NodeView;
use crate::runtime::{ContainerState, Output, Process, ProcessIo, TerminalSize};

/// The header a client offers sub-protocols in, and the server names its choice in.
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// The header listing what the server accepts, when nothing matched.
const ACCEPTED_HEADER: &str = "x-accepted-stream-protocol-versions";
/// Exec and attach sub-protocols, newest first (v5 is v4 over SPDY).
const EXEC_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// The port-forward sub-protocol.
const PORT_FORWARD_PROTOCOLS: &[&str] = &["portforward.k8s.io"];
/// How long a client has to open its streams (the kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Terminal resizes queued for a process.
const RESIZE_QUEUE: usize = 4;

/// Exec or attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Exec,
    Attach,
}

/// Which streams a request asks for.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Options {
    pub(super) stdin: bool,
    pub(super) stdout: bool,
    pub(super) stderr: bool,
    pub(super) tty: bool,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// A request answered before any upgrade (boxed: a response is large).
pub(super) type Refused = Box<Response>;

pub(super) fn refuse(status: StatusCode, message: impl Into<String>) -> Refused {
    Box::new(error(status, message))
}

fn flag(query: &[(String, String)], name: &str) -> bool {
    query
        .iter()
        .any(|(n, v)| n == name && matches!(v.as_str(), "1" | "true"))
}

/// What a streaming path names: `{namespace}/{pod}[/{uid}]`, then the container for
/// exec and attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PodPath<'a> {
    namespace: &'a str,
    name: &'a str,
    uid: Option<&'a str>,
    container: Option<&'a str>,
}

/// Reads the path after `/exec/`, `/attach/` or `/portForward/` (empty segments
/// skipped, as the kubelet's router does).
fn pod_path(rest: &str, with_container: bool) -> Result<PodPath<'_>, Refused> {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (namespace, name, uid, container) = match (segments.as_slice(), with_container) {
        ([namespace, name, container], true) => (*namespace, *name, None, Some(*container)),
        ([namespace, name, uid, container], true) => {
            (*namespace, *name, Some(*uid), Some(*container))
        }
        ([namespace, name], false) => (*namespace, *name, None, None),
        ([namespace, name, uid], false) => (*namespace, *name, Some(*uid), None),
        _ => return Err(refuse(StatusCode::NOT_FOUND, "404 page not found")),
    };
    Ok(PodPath {
        namespace,
        name,
        uid,
        container,
    })
}

/// The pod a path names, and the container that follows it.
fn find_pod<'a>(
    node: &NodeView,
    rest: &'a str,
    with_container: bool,
) -> Result<(Arc<k8s_openapi::api::core::v1::Pod>, Option<&'a str>), Refused> {
    let PodPath {
        namespace,
        name,
        uid,
        container,
    } = pod_path(rest, with_container)?;
    node.pods()
        .into_iter()
        .find(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.metadata.name.as_deref() == Some(name)
                && uid.is_none_or(|uid| p.metadata.uid.as_deref() == Some(uid))
        })
        .map(|pod| (pod, container))
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "pod does not exist"))
}

/// Negotiates the sub-protocol as the kubelet's handshake does: the client's first
/// offer the server accepts; none offered means the oldest.
fn negotiate(headers: &HeaderMap, server: &[&'static str]) -> Result<&'static str, Refused> {
    let spdy = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("spdy/3.1"));
    let upgrade = headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    if !spdy || !upgrade {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: this kubelet streams over SPDY/3.1 (Connection: Upgrade, \
             Upgrade: SPDY/3.1)",
        ));
    }
    let offered: Vec<String> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if offered.is_empty() {
        return server
            .last()
            .copied()
            .ok_or_else(|| refuse(StatusCode::INTERNAL_SERVER_ERROR, "no protocols"));
    }
    if let Some(chosen) = offered
        .iter()
        .find_map(|o| server.iter().find(|s| **s == o.as_str()))
    {
        return Ok(chosen);
    }
    let mut response = refuse(
        StatusCode::FORBIDDEN,
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, \
             server accepts {server:?}"
        ),
    );
    for protocol in server {
        response
            .headers_mut()
            .append(ACCEPTED_HEADER, HeaderValue::from_static(protocol));
    }
    Err(response)
}

/// Answers 101 and serves SPDY on the upgraded connection with `session`.
fn upgrade<F, Fut>(mut request: Request, protocol: &'static str, session: F) -> Response
where
    F: FnOnce(Session, mpsc::Receiver<Stream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let (spdy, streams) = Session::serve(TokioIo::new(upgraded));
                session(spdy, streams).await;
            }
            Err(error) => tracing::debug!(%error, "kubelet API upgrade failed"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, "Upgrade"),
            (header::UPGRADE, "SPDY/3.1"),
            (header::HeaderName::from_static(PROTOCOL_HEADER), protocol),
        ],
    )
        .into_response()
}

/// What an exec or attach query asks for: its streams, and the command (exec).
fn exec_query(kind: Kind, query: &[(String, String)]) -> Result<(Options, Vec<String>), Refused> {
    let mut options = Options {
        stdin: flag(query, "input"),
        stdout: flag(query, "output"),
        stderr: flag(query, "error"),
        tty: flag(query, "tty"),
    };
    if options.tty {
        options.stderr = false;
    }
    if !(options.stdin || options.stdout || options.stderr) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let command: Vec<String> = query
        .iter()
        .filter(|(n, _)| n == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if kind == Kind::Exec && command.is_empty() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "you must specify a command",
        ));
    }
    Ok((options, command))
}

/// `/exec/{namespace}/{pod}[/{uid}]/{container}` and `/attach/...`.
pub(super) async fn exec_or_attach(
    node: NodeView,
    kind: Kind,
    rest: String,
    query: Vec<(String, String)>,
    request: Request,
) -> Response {
    let (options, command) = match exec_query(kind, &query) {
        Ok(asked) => asked,
        Err(response) => return *response,
    };
    let (pod, container) = match find_pod(&node, &rest, true) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let container = container.unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let runtime = node.runtime().clone();
    let running = match runtime.list_containers(None).await {
        Ok(all) => all.into_iter().find(|c| {
            c.pod_uid == uid
                && c.name == container
                && matches!(c.state, ContainerState::Running { .. })
        }),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(running) = running else {
        return error(
            StatusCode::NOT_FOUND,
            format!("container not found (\"{container}\")"),
        );
    };
    let prepared = match kind {
        Kind::Exec => runtime.exec(&running.id, &command, options.tty).await,
        Kind::Attach => runtime.attach(&running.id, options.tty).await,
    };
    let process = match prepared {
        Ok(process) => process,
        Err(e) if e.is_unsupported() => {
            let what = if kind == Kind::Exec { "exec" } else { "attach" };
            return error(
                StatusCode::NOT_IMPLEMENTED,
                format!("{what} is not supported by this runtime"),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if websocket::is_websocket(request.headers()) {
        return match websocket::negotiate(request.headers()) {
            Ok(protocol) => websocket::upgrade(request, protocol, options, process, command).await,
            Err(response) => *response,
        };
    }
    let protocol = match negotiate(request.headers(), EXEC_PROTOCOLS) {
        Ok(protocol) => protocol,
        Err(response) => return *response,
    };
    upgrade(request, protocol, move |session, streams| {
        run_process(session, streams, protocol, options, process, command)
    })
}

/// The streams of an exec or attach, by type.
#[derive(Default)]
struct Channels {
    error: Option<DuplexStream>,
    stdin: Option<DuplexStream>,
    stdout: Option<DuplexStream>,
    stderr: Option<DuplexStream>,
    resize: Option<DuplexStream>,
}

async fn collect(
    streams: &mut mpsc::Receiver<Stream>,
    expected: usize,
) -> Result<Channels, &'static str> {
    let mut channels = Channels::default();
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while received < expected {
        let stream = tokio::time::timeout_at(deadline, streams.recv())
            .await
            .map_err(|_| "timed out waiting for client to create streams")?
            .ok_or("the client left before creating its streams")?;
        let slot = match stream.headers.get("streamtype") {
            Some("error") => &mut channels.error,
            Some("stdin") => &mut channels.stdin,
            Some("stdout") => &mut channels.stdout,
            Some("stderr") => &mut channels.stderr,
            Some("resize") => &mut channels.resize,
            other => {
                tracing::debug!(?other, "unexpected stream type");
                continue;
            }
        };
        *slot = Some(stream.io);
        received += 1;
    }
    Ok(channels)
}

async fn run_process(
    session: Session,
    mut streams: mpsc::Receiver<Stream>,
    protocol: &'static str,
    options: Options,
    process: Box<dyn Process>,
    command: Vec<String>,
) {
    let resizable = options.tty && protocol != "v2.channel.k8s.io" && protocol != "channel.k8s.io";
    let expected = 1
        + usize::from(options.stdin)
        + usize::from(options.stdout)
        + usize::from(options.stderr)
        + usize::from(resizable);
    let channels = match collect(&mut streams, expected).await {
        Ok(channels) => channels,
        Err(reason) => {
            tracing::debug!(reason, "exec session abandoned");
            session.close().await;
            return;
        }
    };
    let resize = channels.resize.map(|stream| {
        let (sizes, receiver) = mpsc::channel(RESIZE_QUEUE);
        tokio::spawn(read_resizes(stream, sizes));
        receiver
    });
    let output = |s: Option<DuplexStream>| s.map(|s| Box::new(s) as Output);
    let mut io = ProcessIo::new(
        channels.stdin.map(|s| Box::new(s) as crate::runtime::Input),
        output(channels.stdout),
        output(channels.stderr),
    );
    if options.tty {
        io = io.with_tty(resize);
    }
    let ended = session.ended();
    let outcome = tokio::select! {
        outcome = process.run(io) => Some(outcome),
        () = ended.cancelled() => None,
    };
    if let (Some(outcome), Some(mut error_stream)) = (outcome, channels.error) {
        let status = status_of(&outcome, &command);
        let report = if protocol == "v4.channel.k8s.io" || protocol == "v5.channel.k8s.io" {
            Some(status.to_string())
        } else {
            // Older protocols carry only a failure's message.
            (status["status"] != "Success")
                .then(|| status["message"].as_str().unwrap_or_default().to_string())
        };
        if let Some(report) = report {
            let _ = error_stream.write_all(report.as_bytes()).await;
        }
        let _ = error_stream.shutdown().await;
    }
    drop(streams);
    session.close().await;
}

/// The Status the kubelet writes on the error stream for a process's end.
pub(super) fn status_of(outcome: &crate::Result<i32>, command: &[String]) -> serde_json::Value {
    match outcome {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: command {command:?} exited with {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => {
            let message = format!("error executing command in container: {e}");
            serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {message}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": message}]},
                "code": 500,
            })
        }
    }
}

async fn read_resizes(stream: DuplexStream, sizes: mpsc::Sender<TerminalSize>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(size) = serde_json::from_str::<TerminalSize>(&line)
            && sizes.send(size).await.is_err()
        {
            return;
        }
    }
}

/// `/portForward/{namespace}/{pod}[/{uid}]`.
pub(super) async fn port_forward(node: NodeView, rest: String, request: Request) -> Response {
    let pod = match find_pod(&node, &rest, false) {
        Ok((pod, _)) => pod,
        Err(response) => return *response,
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let runtime = node.runtime().clone();
    let sandbox = match runtime.list_containers(None).await {
        Ok(all) => all
            .into_iter()
            .find(|c| c.pod_uid == uid)
            .map(|c| c.sandbox_id),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(sandbox) = sandbox else {
        return error(StatusCode::NOT_FOUND, "pod sandbox does not exist");
    };
    let protocol = match negotiate(request.headers(), PORT_FORWARD_PROTOCOLS) {
        Ok(protocol) => protocol,
        Err(response) => return *response,
    };
    let target = Target {
        runtime,
        sandbox,
        pod: name,
        uid,
    };
    upgrade(request, protocol, move |session, streams| {
        forward_ports(session, streams, target)
    })
}

/// Where a port-forward session's connections go.
#[derive(Clone)]
struct Target {
    runtime: Arc<dyn crate::runtime::RuntimeService>,
    sandbox: String,
    pod: String,
    uid: String,
}

/// A forwarded connection's two streams, as they arrive.
#[derive(Default)]
struct Pair {
    port: u16,
    data: Option<DuplexStream>,
    error: Option<DuplexStream>,
}

async fn forward_ports(session: Session, mut streams: mpsc::Receiver<Stream>, target: Target) {
    let ended = session.ended();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let forwards = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            stream = streams.recv() => stream,
            () = ended.cancelled() => None,
        };
        let Some(stream) = stream else { break };
        let Some(port) = stream
            .headers
            .get("port")
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0)
        else {
            tracing::debug!(id = stream.id, "port-forward stream without a valid port");
            continue;
        };
        let kind = stream
            .headers
            .get("streamtype")
            .unwrap_or_default()
            .to_string();
        // Old clients send no request id: their pairs are consecutive odd stream ids.
        let request = stream
            .headers
            .get("requestid")
            .map(str::to_string)
            .unwrap_or_else(|| match kind.as_str() {
                "data" => stream.id.saturating_sub(2).to_string(),
                _ => stream.id.to_string(),
            });
        let pair = pairs.entry(request.clone()).or_default();
        pair.port = port;
        match kind.as_str() {
            "data" => pair.data = Some(stream.io),
            "error" => pair.error = Some(stream.io),
            _ => continue,
        }
        if pair.data.is_some()
            && pair.error.is_some()
            && let Some(Pair {
                port,
                data: Some(data),
                error: Some(error),
            }) = pairs.remove(&request)
        {
            forwards.spawn(forward(target.clone(), port, data, error));
        }
    }
    drop(pairs);
    forwards.close();
    // A forward ends when either side hangs up; the session is over, so do they.
    let _ = tokio::time::timeout(Duration::from_secs(5), forwards.wait()).await;
    drop(streams);
    session.close().await;
}

async fn forward(target: Target, port: u16, mut data: DuplexStream, mut error: DuplexStream) {
    match target.runtime.port_forward(&target.sandbox, port).await {
        Ok(mut connection) => {
            let _ = tokio::io::copy_bidirectional(&mut data, &mut connection).await;
            let _ = connection.shutdown().await;
        }
        Err(e) => {
            let message = format!(
                "error forwarding port {port} to pod {}, uid {}: {}",
                target.pod,
                target.uid,
                if e.is_unsupported() {
                    "port forward is not supported by this runtime".to_string()
                } else {
                    e.to_string()
                }
            );
            let body = serde_json::json!({"message": message}).to_string();
            let _ = error.write_all(body.as_bytes()).await;
        }
    }
    let _ = data.shutdown().await;
    let _ = error.shutdown().await;
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests;
