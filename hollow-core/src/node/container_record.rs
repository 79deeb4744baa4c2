//! What the engine knows of one container of a pod, for the pod's whole life: its
//! runtime ids, the state the runtime last reported, its restarts and back-off reason,
//! and when its probes first succeed.

use std::time::{Duration, SystemTime};

use super::prober::ContainerProbes;
use super::runtime_id::RuntimeId;
use crate::pod::ContainerKind;
use crate::runtime::ContainerState;

/// What the engine knows of one container of the pod (one per spec entry).
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerRecord {
    pub kind: ContainerKind,
    pub name: Box<str>,
    pub image: Box<str>,
    /// The current container's runtime id.
    pub id: Option<RuntimeId>,
    /// The previous container's id, kept for its logs until the next restart.
    pub previous_id: Option<Box<RuntimeId>>,
    pub image_ref: Option<std::sync::Arc<str>>,
    /// The current container's state, once created.
    pub state: Option<ContainerState>,
    pub restart_count: u32,
    /// The previous container's exit, shown as `lastState` (boxed, as `waiting`: most
    /// containers never have one, and a record lives as long as its pod).
    pub last_exit: Option<Box<ContainerState>>,
    /// Why the container waits (`CrashLoopBackOff`, `ErrImagePull`, ...), with a message.
    pub waiting: Option<Box<(String, String)>>,
    /// The startup probe's initial delay in seconds: the container counts as started
    /// that long after it runs (its first probe succeeds). Zero without a probe.
    pub startup_delay: u32,
    /// The readiness probe's initial delay in seconds, after startup.
    pub readiness_delay: u32,
    /// Readiness as the runtime scripts it; `None` leaves it to the probe's timing.
    pub runtime_ready: Option<bool>,
    /// The probes of the current container, where it has any.
    pub probes: Option<Box<ContainerProbes>>,
}

impl ContainerRecord {
    pub fn is_running(&self) -> bool {
        matches!(self.state, Some(ContainerState::Running { .. }))
    }

    /// The current container's id, while it runs.
    pub fn running_id(&self) -> Option<String> {
        self.id
            .as_ref()
            .filter(|_| self.is_running())
            .map(ToString::to_string)
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self.state {
            Some(ContainerState::Exited { exit_code, .. }) => Some(exit_code),
            _ => None,
        }
    }

    /// An init container that completed, or a sidecar that started.
    pub fn init_done(&self) -> bool {
        match self.kind {
            ContainerKind::Sidecar => {
                self.restart_count > 0
                    || self
                        .state
                        .as_ref()
                        .is_some_and(|s| !matches!(s, ContainerState::Created { .. }))
            }
            _ => self.exit_code() == Some(0),
        }
    }

    /// When a running container's startup probe first succeeds (at once without one).
    pub fn started_by(&self) -> Option<SystemTime> {
        match self.state {
            Some(ContainerState::Running { started_at }) => {
                Some(started_at + Duration::from_secs(self.startup_delay.into()))
            }
            _ => None,
        }
    }

    /// When a running container's readiness probe first succeeds (at start without one).
    pub fn ready_by(&self) -> Option<SystemTime> {
        self.started_by()
            .map(|at| at + Duration::from_secs(self.readiness_delay.into()))
    }

    /// The probers' results for the current container, where the runtime answers them.
    fn probed(&self) -> Option<&ContainerProbes> {
        self.probes
            .as_deref()
            .filter(|p| self.id.as_ref().is_some_and(|id| *id == *p.container_id))
    }

    /// Whether a container its liveness or startup probe failed is being killed for it.
    pub fn killed_by_probe(&self) -> bool {
        self.probed()
            .is_some_and(|p| p.workers.iter().any(|w| w.on_hold))
    }

    pub(crate) fn started(&self, now: SystemTime) -> bool {
        match self.probed().and_then(ContainerProbes::started) {
            Some(started) => started && self.is_running(),
            None => self.started_by().is_some_and(|at| at <= now),
        }
    }

    pub(crate) fn ready(&self, now: SystemTime) -> bool {
        match self.kind {
            ContainerKind::Init => self.exit_code() == Some(0),
            ContainerKind::Sidecar | ContainerKind::Regular => {
                let probed = self.probed().and_then(ContainerProbes::ready);
                match (self.runtime_ready, probed) {
                    (None, Some(ready)) => ready && self.started(now),
                    _ => {
                        self.ready_by().is_some_and(|at| at <= now)
                            && self.started(now)
                            && self.runtime_ready != Some(false)
                            || self.runtime_ready == Some(true) && self.started(now)
                    }
                }
            }
        }
    }
}
