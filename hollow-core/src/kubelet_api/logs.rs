//! `/containerLogs/{namespace}/{pod}/{container}`: a container's log from the
//! runtime, with the kubelet's query options (`tailLines`, `limitBytes`,
//! `sinceSeconds`, `sinceTime`, `timestamps`, `previous`, `follow`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use crate::node::NodeView;
use crate::runtime::{ContainerState, ContainerStatus, LogLine, RuntimeService};

/// How often a followed log is read again for new lines.
const FOLLOW_PERIOD: Duration = Duration::from_secs(1);
/// How long after a finished log's text its response ends.
const END_AFTER_TEXT: Duration = Duration::from_millis(250);

/// The query of a log request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogQuery {
    #[serde(default)]
    follow: Option<String>,
    #[serde(default)]
    previous: Option<String>,
    #[serde(default)]
    timestamps: Option<String>,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
    since_seconds: Option<i64>,
    since_time: Option<String>,
}

fn flag(value: &Option<String>) -> bool {
    value
        .as_deref()
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

/// What a log request asks for, read from its query at `now`. Values the kubelet would
/// refuse (a negative count, a time it cannot read) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogOptions {
    follow: bool,
    previous: bool,
    timestamps: bool,
    /// Lines from then on only.
    since: Option<SystemTime>,
    /// The last this many lines only.
    tail: Option<usize>,
    /// At most this many bytes.
    limit: Option<usize>,
}

impl LogOptions {
    pub(crate) fn new(query: &LogQuery, now: SystemTime) -> LogOptions {
        let since = query
            .since_time
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(SystemTime::from)
            .or_else(|| {
                query
                    .since_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    // Longer ago than the clock reaches: every line.
                    .and_then(|s| now.checked_sub(Duration::from_secs(s)))
            });
        LogOptions {
            follow: flag(&query.follow),
            previous: flag(&query.previous),
            timestamps: flag(&query.timestamps),
            since,
            tail: query.tail_lines.and_then(|t| usize::try_from(t).ok()),
            limit: query.limit_bytes.and_then(|l| usize::try_from(l).ok()),
        }
    }
}

fn text_error(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

fn format_line(line: &LogLine, timestamps: bool) -> String {
    if timestamps {
        let at = Timestamp::try_from(line.time).unwrap_or(Timestamp::UNIX_EPOCH);
        format!("{at:.9} {}\n", line.text)
    } else {
        format!("{}\n", line.text)
    }
}

/// The container of `pod` named `name`: the current one, or the one before it.
fn pick(statuses: &[ContainerStatus], previous: bool) -> Option<&ContainerStatus> {
    let mut by_attempt: Vec<&ContainerStatus> = statuses.iter().collect();
    by_attempt.sort_by_key(|s| std::cmp::Reverse(s.attempt));
    by_attempt.get(usize::from(previous)).copied()
}

pub(crate) async fn container_logs(
    node: NodeView,
    namespace: String,
    pod_name: String,
    container: String,
    query: LogQuery,
) -> Response {
    let options = LogOptions::new(&query, SystemTime::now());
    let Some(pod) = node.pods().into_iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(namespace.as_str())
            && p.metadata.name.as_deref() == Some(pod_name.as_str())
    }) else {
        return text_error(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod_name} is not known to this node"),
        );
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let declared = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == container);
    if !declared {
        return text_error(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not valid for pod {pod_name}"),
        );
    }
    let runtime = node.runtime().clone();
    let statuses: Vec<ContainerStatus> = match runtime.list_containers(None).await {
        Ok(all) => all
            .into_iter()
            .filter(|s| s.pod_uid == uid && s.name == container)
            .collect(),
        Err(error) => return text_error(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    };
    let previous = options.previous;
    let Some(chosen) = pick(&statuses, previous) else {
        let message = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod_name}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{pod_name}\" is waiting to start")
        };
        return text_error(StatusCode::BAD_REQUEST, message);
    };
    let id = chosen.id.clone();
    let lines = match runtime.container_logs(&id, None).await {
        Ok(lines) => lines,
        Err(error) if error.is_not_found() => {
            return text_error(
                StatusCode::NOT_FOUND,
                format!("container {container} is gone"),
            );
        }
        Err(error) => return text_error(StatusCode::NOT_IMPLEMENTED, error.to_string()),
    };
    let timestamps = options.timestamps;
    let mut selected: Vec<LogLine> = lines
        .into_iter()
        .filter(|l| options.since.is_none_or(|since| l.time >= since))
        .collect();
    if let Some(tail) = options.tail {
        let skip = selected.len().saturating_sub(tail);
        selected.drain(..skip);
    }
    let mut text: String = selected
        .iter()
        .map(|l| format_line(l, timestamps))
        .collect();
    if let Some(limit) = options.limit {
        let mut cut = limit.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let following = options.follow && !previous && is_running(&chosen.state);
    // Streamed (chunked, no length) even when not following, as the kubelet writes
    // logs through a flushing writer (getContainerLogs in pkg/kubelet/server/server.go),
    // and the end sent a moment after the text: the API server's WebSocket log reader
    // drops a read that comes with the end of the body (messageCopy in k8s.io/streaming's
    // wsstream), which a whole body read at once is.
    let body = if following {
        let last_seen = selected.last().map(|l| l.time);
        Body::from_stream(follow(runtime, id, text, last_seen, timestamps))
    } else {
        let end = futures::stream::once(async {
            tokio::time::sleep(END_AFTER_TEXT).await;
            Ok(String::new())
        });
        Body::from_stream(
            futures::stream::once(async move { Ok::<_, std::io::Error>(text) }).chain(end),
        )
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn is_running(state: &ContainerState) -> bool {
    matches!(state, ContainerState::Running { .. })
}

/// The log so far, then new lines as the container writes them, until it stops (or
/// is removed, or the client goes away).
fn follow(
    runtime: Arc<dyn RuntimeService>,
    id: String,
    first: String,
    last_seen: Option<SystemTime>,
    timestamps: bool,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> + Send {
    futures::stream::unfold(
        (Some(first), last_seen, false),
        move |(first, mut last_seen, done)| {
            let runtime = runtime.clone();
            let id = id.clone();
            async move {
                if let Some(first) = first {
                    return Some((Ok(first), (None, last_seen, false)));
                }
                if done {
                    return None;
                }
                loop {
                    tokio::time::sleep(FOLLOW_PERIOD).await;
                    let status = runtime.container_status(&id).await.ok();
                    let ended = status.as_ref().is_none_or(|s| !is_running(&s.state));
                    let lines = runtime.container_logs(&id, None).await.unwrap_or_default();
                    let fresh: String = lines
                        .iter()
                        .filter(|l| last_seen.is_none_or(|seen| l.time > seen))
                        .map(|l| format_line(l, timestamps))
                        .collect();
                    if let Some(last) = lines.last() {
                        last_seen = Some(last_seen.map_or(last.time, |seen| seen.max(last.time)));
                    }
                    if !fresh.is_empty() || ended {
                        return Some((Ok(fresh), (None, last_seen, ended)));
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod fuzz;
