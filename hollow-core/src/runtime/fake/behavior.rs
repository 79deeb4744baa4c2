//! [`Behavior`]: what a fake container does once started.

use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::ContainerStep;
use crate::pod::ContainerKind;
use crate::runtime::types::ContainerConfig;

/// A script given to [`FakeRuntime::set_behavior`](super::FakeRuntime::set_behavior).
pub(super) type BehaviorFn = Arc<dyn Fn(&ContainerConfig) -> Behavior + Send + Sync>;

/// What a fake container does once started.
///
/// ```
/// use std::time::Duration;
/// use hollow_core::pod::ContainerKind;
/// use hollow_core::runtime::{Behavior, ContainerConfig};
///
/// let init = ContainerConfig { kind: ContainerKind::Init, ..Default::default() };
/// assert_eq!(
///     Behavior::default_for(&init),
///     Behavior::Exit { after: Duration::ZERO, code: 0 }
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Runs until stopped.
    Run,
    /// Exits by itself `after` its start, with `code` (reason `Completed` for 0,
    /// `Error` otherwise).
    Exit {
        /// How long it runs.
        after: Duration,
        /// Its exit code.
        code: i32,
    },
    /// Plays lifecycle steps, beginning `delay` after its start.
    Steps {
        /// When the steps begin.
        delay: Duration,
        /// The steps.
        steps: Vec<ContainerStep>,
    },
}

impl Behavior {
    /// The steps this behaviour plays, and when they begin.
    pub(super) fn into_script(self) -> (Duration, Vec<ContainerStep>) {
        match self {
            Behavior::Run => (Duration::ZERO, Vec::new()),
            Behavior::Exit { after, code } => (after, vec![ContainerStep::Exit { code }]),
            Behavior::Steps { delay, steps } => (delay, steps),
        }
    }

    /// The default: init containers exit 0 at once, all others run.
    pub fn default_for(config: &ContainerConfig) -> Behavior {
        match config.kind {
            ContainerKind::Init => Behavior::Exit {
                after: Duration::ZERO,
                code: 0,
            },
            ContainerKind::Sidecar | ContainerKind::Regular => Behavior::Run,
        }
    }
}
