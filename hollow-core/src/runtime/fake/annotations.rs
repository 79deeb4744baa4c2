//! Per-pod behaviour of [`FakeRuntime`](super::FakeRuntime) containers, set by pod
//! annotations, so plain manifests can script what hollow pods do:
//!
//! `hollow.dev/exit-after`, `exit-code`, `pull-error`, `logs` and `steps`, listed with
//! their values in [`crate::annotations`].
//!
//! For example `hollow.dev/exit-after: 5s` with restartPolicy Never completes a pod;
//! `hollow.dev/exit-code: "1"` with restartPolicy Always crash-loops it;
//! `hollow.dev/steps: "[{wait: 10s}, {ready: false}, {wait: 10s}, {ready: true}, repeat]"`
//! flaps its readiness.
//!
//! Init containers exit 0 at once either way; sidecars run. Annotations take precedence
//! over the runtime's [`Lifecycle`](crate::lifecycle::Lifecycle); a script given to
//! [`FakeRuntime::set_behavior`](super::FakeRuntime::set_behavior) over both.
//!
//! ```
//! use std::time::Duration;
//! use hollow_core::annotations::{EXIT_AFTER, EXIT_CODE};
//! use hollow_core::runtime::{Behavior, ContainerConfig, annotations};
//!
//! let mut config = ContainerConfig::default();
//! config.annotations.insert(EXIT_AFTER.into(), "5s".into());
//! config.annotations.insert(EXIT_CODE.into(), "1".into());
//! assert_eq!(
//!     annotations::behavior(&config)?,
//!     Some(Behavior::Exit { after: Duration::from_secs(5), code: 1 })
//! );
//! # Ok::<(), hollow_core::Error>(())
//! ```

use std::time::Duration;

use super::behavior::Behavior;
use crate::annotations::{EXIT_AFTER, EXIT_CODE, STEPS};
use crate::error::{Error, Result};
use crate::lifecycle::parse_duration;
use crate::pod::ContainerKind;
use crate::runtime::types::ContainerConfig;

/// The behaviour the pod's annotations ask of this container, if any; a malformed
/// annotation is [`Error::InvalidInput`] naming it.
pub fn behavior(config: &ContainerConfig) -> Result<Option<Behavior>> {
    if config.kind != ContainerKind::Regular {
        return Ok(None);
    }
    let annotation = |key: &str| config.annotations.get(key).map(String::as_str);
    if let Some(raw) = annotation(STEPS) {
        let steps: crate::lifecycle::Steps<crate::lifecycle::ContainerStep> =
            serde_saphyr::from_str(raw).map_err(|error| {
                Error::InvalidInput(format!(
                    "annotation {STEPS}: {}",
                    crate::lifecycle::describe(&error)
                ))
            })?;
        return Ok(Some(Behavior::Steps {
            delay: Duration::ZERO,
            steps: steps.0,
        }));
    }
    let code = match annotation(EXIT_CODE) {
        None => 0,
        Some(raw) => raw.trim().parse::<i32>().map_err(|_| {
            Error::InvalidInput(format!(
                "annotation {EXIT_CODE}={raw:?}: expected an integer exit code"
            ))
        })?,
    };
    match annotation(EXIT_AFTER) {
        None if annotation(EXIT_CODE).is_some() => Ok(Some(Behavior::Exit {
            after: Duration::ZERO,
            code,
        })),
        None => Ok(None),
        Some(raw) => {
            let after = parse_duration(raw).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "annotation {EXIT_AFTER}={raw:?}: expected {}",
                    crate::lifecycle::EXPECTED_DURATION
                ))
            })?;
            Ok(Some(Behavior::Exit { after, code }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(annotations: &[(&str, &str)], kind: ContainerKind) -> ContainerConfig {
        ContainerConfig {
            kind,
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn annotations_script_regular_containers_only() {
        let regular = with(
            &[(EXIT_AFTER, "1s"), (EXIT_CODE, "3")],
            ContainerKind::Regular,
        );
        assert_eq!(
            behavior(&regular).unwrap(),
            Some(Behavior::Exit {
                after: Duration::from_secs(1),
                code: 3
            })
        );
        let init = with(&[(EXIT_AFTER, "1s")], ContainerKind::Init);
        assert_eq!(behavior(&init).unwrap(), None);
        let code_only = with(&[(EXIT_CODE, "1")], ContainerKind::Regular);
        assert_eq!(
            behavior(&code_only).unwrap(),
            Some(Behavior::Exit {
                after: Duration::ZERO,
                code: 1
            })
        );
        assert_eq!(behavior(&with(&[], ContainerKind::Regular)).unwrap(), None);
    }

    #[test]
    fn steps_annotations_play_lifecycle_steps() {
        use crate::lifecycle::ContainerStep;
        let flapping = with(
            &[(
                STEPS,
                "[{wait: 1s}, {ready: false}, {wait: 1s}, {ready: true}, repeat]",
            )],
            ContainerKind::Regular,
        );
        let Some(Behavior::Steps { steps, .. }) = behavior(&flapping).unwrap() else {
            panic!("expected steps");
        };
        assert_eq!(steps[1], ContainerStep::Ready(false));
        assert_eq!(steps.last(), Some(&ContainerStep::Repeat));
        let error = behavior(&with(
            &[(STEPS, "[{exit: {code: 1}}, {ready: true}]")],
            ContainerKind::Regular,
        ))
        .unwrap_err();
        assert!(error.to_string().contains("step 2 follows"), "{error}");
    }

    #[test]
    fn malformed_annotations_name_themselves() {
        let error = behavior(&with(&[(EXIT_AFTER, "soon")], ContainerKind::Regular)).unwrap_err();
        assert!(error.to_string().contains(EXIT_AFTER), "{error}");
        let error = behavior(&with(&[(EXIT_CODE, "one")], ContainerKind::Regular)).unwrap_err();
        assert!(error.to_string().contains(EXIT_CODE), "{error}");
    }
}
