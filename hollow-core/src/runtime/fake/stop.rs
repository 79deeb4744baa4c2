//! Graceful stops: a container of a pod being deleted stops as the lifecycle's
//! deletion rules say, within its grace period.

use std::time::Duration;

use super::FakeRuntime;
use super::steps::container_facts;
use crate::lifecycle::DeletionStep;
use crate::runtime::types::{ContainerState, PodAction, PodActionKind};

impl FakeRuntime {
    /// Stops a container of a pod being deleted as the lifecycle's deletion rules say,
    /// within `grace`; returns the exit code (137 when the grace period ran out).
    pub(super) async fn stop_gracefully(&self, container_id: &str, grace: Duration) -> i32 {
        let plan = {
            let state = self.lock();
            let (Some(container), Some(lifecycle)) =
                (state.containers.get(container_id), state.lifecycle.clone())
            else {
                return 0;
            };
            if !matches!(container.state, ContainerState::Running { .. }) {
                return 0;
            }
            let config = container.config.clone();
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
