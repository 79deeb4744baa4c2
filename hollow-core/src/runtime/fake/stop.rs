//! Graceful stops: a container of a pod being deleted stops as the lifecycle's
//! deletion rules say, within its grace period; without a lifecycle, one whose
//! command the userland runs ignores SIGTERM and is killed when its grace period ends,
//! as a shell or `sleep` as a container's first process is.

use std::time::{Duration, SystemTime};

use super::FakeRuntime;
use super::state::Container;
use super::steps::container_facts;
use super::userland::{self, End};
use crate::lifecycle::DeletionStep;
use crate::runtime::HeldState;
use crate::runtime::types::{PodAction, PodActionKind};

impl FakeRuntime {
    /// Stops a container of a pod being deleted as the lifecycle's deletion rules say,
    /// within `grace`; returns the exit code (137 when the grace period ran out).
    pub(super) async fn stop_gracefully(&self, container_id: &str, grace: Duration) -> i32 {
        let ignores = {
            let state = self.lock();
            match state.containers.get(container_id) {
                Some(container) if state.lifecycle.is_none() => ignores_sigterm(container),
                _ => None,
            }
        };
        if let Some(exit) = ignores {
            return self.outlast(container_id, grace, exit).await;
        }
        let plan = {
            let state = self.lock();
            let (Some(container), Some(lifecycle)) =
                (state.containers.get(container_id), state.lifecycle.clone())
            else {
                return 0;
            };
            if !matches!(container.state, HeldState::Running(_)) {
                return 0;
            }
            let config = container.held.config().into_owned();
            lifecycle
                .deletion_plan(&container_facts(&config))
                .map(|plan| (plan.delay, plan.steps.to_vec(), config))
        };
        let Some((delay, steps, config)) = plan else {
            return 0;
        };
        let deadline = tokio::time::Instant::now() + grace;
        let wait =
            |d: Duration| tokio::time::sleep_until((tokio::time::Instant::now() + d).min(deadline));
        wait(delay).await;
        let mut code = 0;
        for step in steps {
            let kind = match step {
                DeletionStep::Wait(d) => {
                    wait(d).await;
                    continue;
                }
                DeletionStep::Exit { code: c } => {
                    code = c;
                    continue;
                }
                DeletionStep::Event(event) => PodActionKind::Event(event),
                DeletionStep::RemoveFinalizers => PodActionKind::RemoveFinalizers,
            };
            self.inner.ask(PodAction {
                pod_uid: config.pod_uid.clone(),
                namespace: config.pod_namespace.clone(),
                name: config.pod_name.clone(),
                kind,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            137
        } else {
            code
        }
    }
}

/// Whether a running container ignores the SIGTERM a stop sends: a command the
/// userland runs (a shell or `sleep` as the container's first process installs no
/// handler, and a PID namespace's init gets only the signals it handles, so the
/// runtime kills it when the grace period ends), until it reaches a program outside
/// the userland. `Some` with when it ends by itself (as its timed exit says), if it
/// ignores it.
fn ignores_sigterm(container: &Container) -> Option<Option<(tokio::time::Instant, i32)>> {
    let HeldState::Running(started_at) = container.state else {
        return None;
    };
    if !userland::runs(&container.held.config().command) {
        return None;
    }
    let ran = SystemTime::now()
        .duration_since(started_at)
        .unwrap_or_default();
    let run = userland::run(container.view(), userland::HORIZON, false);
    match run.end {
        End::Forever {
            after,
            why: Some(_),
        } if after <= ran => None,
        _ => Some(container.exit_at.as_deref().copied()),
    }
}

impl FakeRuntime {
    /// Waits out a container that ignores SIGTERM: it exits by itself if its script
    /// ends first (with its code), else it is killed when `grace` runs out (137).
    async fn outlast(
        &self,
        container_id: &str,
        grace: Duration,
        exit: Option<(tokio::time::Instant, i32)>,
    ) -> i32 {
        let deadline = tokio::time::Instant::now() + grace;
        match exit {
            Some((at, code)) if at <= deadline => {
                tokio::time::sleep_until(at).await;
                if let Some(container) = self.lock().containers.get_mut(container_id) {
                    container.exit_at = None;
                }
                code
            }
            _ => {
                tokio::time::sleep_until(deadline).await;
                137
            }
        }
    }
}
