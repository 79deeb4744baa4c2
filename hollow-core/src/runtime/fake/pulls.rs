//! Image pulls: they fail for images given to
//! [`FakeRuntime::fail_pulls_of`](super::FakeRuntime::fail_pulls_of), for pods
//! annotated [`annotations::PULL_ERROR`], for images that name no registry or
//! repository there is ([`missing_image`]), and as the lifecycle's pull rules say,
//! which may also make them take time.

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
    let missing = || missing_image(image).map(Error::InvalidInput);
    Ok(
        match state.lifecycle.as_ref().and_then(|l| l.pull_plan(&facts)) {
            None => return missing().map_or(Ok((Duration::ZERO, None)), Err),
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

/// Why an image that cannot exist fails to pull, in containerd's words: a registry
/// named `invalid.*` (upstream's e2e tests pull `invalid.registry.k8s.io/invalid`),
/// or a repository or tag that says it does not exist (`nonexistent`,
/// `does-not-exist`, `no-such-tag`, `invalid-tag`). A lifecycle's pull rule for the
/// image wins.
pub(super) fn missing_image(image: &str) -> Option<String> {
    let (registry, _) = image.split_once('/').unwrap_or(("", image));
    let registry = registry.split(':').next().unwrap_or_default();
    let domain = registry.contains('.') || registry == "localhost";
    if domain && registry.starts_with("invalid.") {
        return Some(format!(
            "rpc error: code = Unknown desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": failed to do request: Head \"https://{registry}/v2/\": dial tcp: lookup {registry}: no such host"
        ));
    }
    let named = image.rsplit('/').next().unwrap_or(image);
    const MISSING: &[&str] = &[
        "nonexistent",
        "does-not-exist",
        "no-such-tag",
        "invalid-tag",
    ];
    MISSING.iter().any(|word| named.contains(word)).then(|| {
        format!(
            "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::missing_image;

    #[test]
    fn images_that_cannot_exist_fail_to_pull() {
        let no_host = missing_image("invalid.registry.k8s.io/invalid:1").unwrap();
        assert!(
            no_host.contains("lookup invalid.registry.k8s.io: no such host"),
            "{no_host}"
        );
        // A `.invalid` registry is a placeholder many manifests use (and hollow's tests).
        assert_eq!(missing_image("registry.invalid/app:1"), None);
        let not_found = missing_image("registry.k8s.io/pause:does-not-exist").unwrap();
        assert!(not_found.ends_with("registry.k8s.io/pause:does-not-exist: not found"));
        assert!(missing_image("nginx:nonexistent").is_some());
        for real in [
            "nginx",
            "registry.k8s.io/pause:3.10",
            "invalid/app:1",
            "localhost:5000/app",
        ] {
            assert_eq!(missing_image(real), None, "{real}");
        }
    }
}
