//! Image pulls: they fail for images given to
//! [`FakeRuntime::fail_pulls_of`](super::FakeRuntime::fail_pulls_of), for pods
//! annotated [`annotations::PULL_ERROR`], and as the lifecycle's pull rules say, which
//! may also make them take time.

use std::time::Duration;

use super::state::State;
use crate::annotations;
use crate::error::{Error, Result};
use crate::lifecycle::{ContainerFacts, PullStep};
use crate::pod::ContainerKind;
use crate::runtime::types::PodSandboxConfig;

/// How a pull of `image` for `pod` goes: how long it takes, and the error it then
/// fails with, if any. An image or pod scripted to fail is an error at once.
pub(super) fn planned_pull(
    state: &State,
    image: &str,
    pod: &PodSandboxConfig,
) -> Result<(Duration, Option<String>)> {
    let failure = state
        .failing_pulls
        .get(image)
        .or_else(|| pod.annotations.get(annotations::PULL_ERROR));
    if let Some(message) = failure {
        return Err(Error::InvalidInput(message.clone()));
    }
    let facts = ContainerFacts {
        namespace: &pod.namespace,
        pod: &pod.name,
        labels: &pod.labels,
        annotations: &pod.annotations,
        container: "",
        image,
        kind: ContainerKind::Regular,
        attempt: 0,
    };
    Ok(
        match state.lifecycle.as_ref().and_then(|l| l.pull_plan(&facts)) {
            None => (Duration::ZERO, None),
            Some(plan) => plan
                .steps
                .iter()
                .fold((plan.delay, None), |(wait, error), step| match step {
                    PullStep::Wait(d) => (wait + *d, error),
                    PullStep::PullError(m) => (wait, Some(m.clone())),
                }),
        },
    )
}
