//! The log a fake container writes, computed from its times, never stored.

use std::time::{Duration, SystemTime};

use super::state::Container;
use super::userland::{self, End};
use crate::annotations;
use crate::runtime::types::{ContainerState, LogLine};

/// How often a running fake container writes a log line.
const LOG_TICK: Duration = Duration::from_secs(10);
/// How many of those lines are kept (older ones are rotated away).
const LOG_TICKS_KEPT: u32 = 1000;

/// A fake container's log as of `now`. One whose command the userland runs logs what
/// its command prints (and, if it reaches a program outside the userland, one line
/// saying so); any other logs a start line, the pod's `hollow.dev/logs` lines, a line
/// every 10 s while it runs, and an exit line. A created container has logged nothing.
pub(super) fn generated_logs(container: &Container, now: SystemTime) -> Vec<LogLine> {
    let c = container.held.config();
    if userland::runs(&c.command) {
        return userland_logs(container, now);
    }
    let state = container.state.get();
    let (started_at, end, exit) = match &*state {
        ContainerState::Created { .. } => return Vec::new(),
        ContainerState::Running { started_at } => (*started_at, now, None),
        ContainerState::Exited {
            started_at,
            finished_at,
            exit_code,
            reason,
            ..
        } => (
            *started_at,
            *finished_at,
            Some((*exit_code, reason.as_str())),
        ),
    };
    let line = |time, text: String| LogLine { time, text };
    let mut lines = vec![line(
        started_at,
        format!(
            "hollow: container {} of pod {}/{} started (attempt {})",
            c.name, c.pod_namespace, c.pod_name, c.attempt
        ),
    )];
    if let Some(configured) = c.annotations.get(annotations::LOGS) {
        lines.extend(
            configured
                .lines()
                .map(|text| line(started_at, text.to_string())),
        );
    }
    let ran = end.duration_since(started_at).unwrap_or_default();
    let ticks = u32::try_from(ran.as_secs() / LOG_TICK.as_secs()).unwrap_or(u32::MAX);
    for tick in ticks.saturating_sub(LOG_TICKS_KEPT) + 1..=ticks {
        let after = LOG_TICK * tick;
        lines.push(line(
            started_at + after,
            format!("hollow: {} running for {}s", c.name, after.as_secs()),
        ));
    }
    if let Some((code, reason)) = exit {
        lines.push(line(
            end,
            format!("hollow: {} exited with code {code} ({reason})", c.name),
        ));
    }
    lines
}

/// What a container the userland runs printed by `now` (or by its exit), worked out
/// again from its command and environment: nothing of it is stored.
fn userland_logs(container: &Container, now: SystemTime) -> Vec<LogLine> {
    let c = container.held.config();
    let (started_at, end) = match &*container.state.get() {
        ContainerState::Created { .. } => return Vec::new(),
        ContainerState::Running { started_at } => (*started_at, now),
        ContainerState::Exited {
            started_at,
            finished_at,
            ..
        } => (*started_at, *finished_at),
    };
    let horizon = end.duration_since(started_at).unwrap_or_default();
    let run = userland::run(c.view(), horizon, true);
    let mut lines: Vec<LogLine> = run
        .log
        .into_iter()
        .map(|line| LogLine {
            time: started_at + line.after,
            text: line.text,
        })
        .collect();
    if let End::Forever {
        after,
        why: Some(why),
    } = run.end
    {
        lines.push(LogLine {
            time: started_at + after,
            text: format!("hollow: {why}; it runs until stopped"),
        });
    }
    lines
}
