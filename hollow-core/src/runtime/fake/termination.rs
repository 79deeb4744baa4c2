//! A fake container's termination message, as the kubelet's runtime manager makes it
//! (`convertToKubeContainerStatus` and `getTerminationMessage` in
//! pkg/kubelet/kuberuntime/kuberuntime_container.go): what the container wrote to its
//! `terminationMessagePath` (its last 4 KiB), else, with `FallbackToLogsOnError` and a
//! non-zero exit code, the last 80 lines of its log (their last 2 KiB).

use std::time::SystemTime;

use super::logs::generated_logs;
use super::state::Container;
use super::userland;
use crate::runtime::HeldState;

/// Where a container writes its termination message unless its spec says otherwise.
const DEFAULT_PATH: &str = "/dev/termination-log";
/// `MaxContainerTerminationMessageLength` (pkg/kubelet/container/runtime.go).
const MAX_MESSAGE: usize = 4 * 1024;
/// `MaxContainerTerminationMessageLogLength`.
const MAX_LOG_MESSAGE: usize = 2 * 1024;
/// `MaxContainerTerminationMessageLogLines`.
const MAX_LOG_LINES: usize = 80;

/// The message of a running container that exits now with `code`.
pub(super) fn termination_message(
    container: &Container,
    code: i32,
    now: SystemTime,
) -> Option<String> {
    let c = container.held.config();
    let path = c
        .termination_message_path
        .as_deref()
        .unwrap_or(DEFAULT_PATH);
    if userland::runs(&c.command)
        && let Some(written) = written_file(container, path, now)
        && !written.is_empty()
    {
        return Some(last_bytes(&written, MAX_MESSAGE).to_string());
    }
    if !c.fallback_to_logs || code == 0 {
        return None;
    }
    let lines = generated_logs(container, now);
    let mut tail = String::new();
    for line in &lines[lines.len().saturating_sub(MAX_LOG_LINES)..] {
        tail.push_str(&line.text);
        tail.push('\n');
    }
    (!tail.is_empty()).then(|| last_bytes(&tail, MAX_LOG_MESSAGE).to_string())
}

/// The file at `path` as the container's command left it by `now`.
fn written_file(container: &Container, path: &str, now: SystemTime) -> Option<String> {
    let HeldState::Running(started_at) = container.state else {
        return None;
    };
    let c = container.held.config();
    let ran = now.duration_since(started_at).unwrap_or_default();
    userland::file_at(c.view(), ran, path)
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn last_bytes(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
