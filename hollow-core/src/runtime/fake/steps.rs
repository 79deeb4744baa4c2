//! The step player: which [`Behavior`] a starting container follows, and the playing
//! of its steps in the background.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::FakeRuntime;
use super::annotations;
use super::behavior::{Behavior, BehaviorFn};
use super::state::Inner;
use super::userland;
use crate::error::Result;
use crate::lifecycle::{
    ContainerFacts, ContainerStep, EventStep, EventType, Lifecycle, MIN_REPEAT_PERIOD,
};
use crate::pod::ContainerKind;
use crate::runtime::HeldState;
use crate::runtime::types::{ContainerConfig, PodAction, PodActionKind};

/// The pod facts lifecycle rules match a container against.
pub(super) fn container_facts(config: &ContainerConfig) -> ContainerFacts<'_> {
    ContainerFacts {
        namespace: &config.pod_namespace,
        pod: &config.pod_name,
        labels: &config.pod_labels,
        annotations: &config.annotations,
        container: &config.name,
        image: &config.image,
        kind: config.kind,
        attempt: config.attempt,
    }
}

/// What a starting container does: as `script` says, else as the pod's annotations
/// say, else as `lifecycle`'s container rules say, else as its command does when the
/// userland runs it, else [`Behavior::default_for`]. A malformed annotation is an
/// error.
pub(super) fn behavior_of(
    config: &ContainerConfig,
    script: Option<&BehaviorFn>,
    lifecycle: Option<&Lifecycle>,
) -> Result<Behavior> {
    if let Some(script) = script {
        return Ok(script(config));
    }
    if let Some(behavior) = annotations::behavior(config)? {
        return Ok(behavior);
    }
    Ok(lifecycle
        .and_then(|l| l.container_plan(&container_facts(config)))
        .map(|plan| Behavior::Steps {
            delay: plan.delay,
            steps: plan.steps.to_vec(),
        })
        .or_else(|| userland_behavior(config))
        .unwrap_or_else(|| Behavior::default_for(config)))
}

/// How a container the userland runs ends: it exits when its script does; from a
/// program outside the userland on, it runs until stopped (an init container
/// completes there, as the default has it).
fn userland_behavior(config: &ContainerConfig) -> Option<Behavior> {
    if !userland::runs(&config.command) {
        return None;
    }
    let run = userland::run(config.view(), userland::HORIZON, false);
    Some(match run.end {
        userland::End::Exit { after, code } => Behavior::Exit { after, code },
        userland::End::Forever {
            after,
            why: Some(_),
        } if config.kind == ContainerKind::Init => Behavior::Exit { after, code: 0 },
        userland::End::Forever { .. } | userland::End::Running => Behavior::Run,
    })
}

impl FakeRuntime {
    /// Plays a container's steps in the background, until they end or the container
    /// stops running. A repeating list waits at least [`MIN_REPEAT_PERIOD`] a pass.
    pub(super) fn play(&self, container_id: String, delay: Duration, steps: Vec<ContainerStep>) {
        if let [ContainerStep::Exit { code }] = steps.as_slice() {
            self.exit_later(&container_id, *code, delay);
            return;
        }
        if steps.is_empty() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut index = 0;
            let mut pass_started = tokio::time::Instant::now();
            while let Some(step) = steps.get(index) {
                index += 1;
                match step {
                    ContainerStep::Wait(wait) => {
                        tokio::time::sleep(*wait).await;
                        continue;
                    }
                    ContainerStep::Repeat => {
                        let pass = pass_started.elapsed();
                        if pass < MIN_REPEAT_PERIOD {
                            tokio::time::sleep(MIN_REPEAT_PERIOD - pass).await;
                        }
                        pass_started = tokio::time::Instant::now();
                        index = 0;
                        continue;
                    }
                    _ => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                if !apply_step(&inner, &container_id, step) {
                    return;
                }
            }
        });
    }
}

/// Plays one step on a running container; false when the container is gone, stopped
/// or the step ended it.
pub(super) fn apply_step(inner: &Inner, container_id: &str, step: &ContainerStep) -> bool {
    let mut state = inner.state.lock();
    let Some(container) = state.containers.get_mut(container_id) else {
        return false;
    };
    if !matches!(container.state, HeldState::Running(_)) {
        return false;
    }
    let action = |kind| {
        let c = container.held.config();
        PodAction {
            pod_uid: c.pod_uid.clone(),
            namespace: c.pod_namespace.clone(),
            name: c.pod_name.clone(),
            kind,
        }
    };
    let (event, action, goes_on) = match step {
        ContainerStep::Ready(ready) => {
            container.ready = Some(*ready);
            (Some(container.event(container_id)), None, true)
        }
        ContainerStep::Exit { code } => {
            let reason = if *code == 0 { "Completed" } else { "Error" };
            (container.exit(container_id, *code, reason), None, false)
        }
        ContainerStep::OomKill => (container.exit(container_id, 137, "OOMKilled"), None, false),
        ContainerStep::Restart => {
            let unhealthy = action(PodActionKind::Event(EventStep {
                type_: EventType::Warning,
                reason: "Unhealthy".into(),
                message: "Liveness probe failed: the hollow lifecycle says so".into(),
            }));
            let event = container.exit(container_id, 137, "Error");
            (event, Some(unhealthy), false)
        }
        ContainerStep::Event(step) => {
            (None, Some(action(PodActionKind::Event(step.clone()))), true)
        }
        ContainerStep::RemoveFinalizers => {
            (None, Some(action(PodActionKind::RemoveFinalizers)), true)
        }
        ContainerStep::Delete => (None, Some(action(PodActionKind::Delete)), false),
        ContainerStep::Wait(_) | ContainerStep::Repeat => (None, None, true),
    };
    drop(state);
    if let Some(action) = action {
        inner.ask(action);
    }
    if let Some(event) = event {
        inner.emit(event);
    }
    goes_on
}
