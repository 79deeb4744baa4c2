//! What the engine knows of one container of a pod, for the pod's whole life: its
//! runtime ids, the state the runtime last reported, its restarts and back-off reason,
//! and when its probes first succeed.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use super::prober::ContainerProbes;
use super::runtime_id::RuntimeId;
use crate::pod::ContainerKind;
use crate::runtime::{ContainerState, HeldState};

/// What the engine knows of one container of the pod (one per spec entry).
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerRecord {
    pub kind: ContainerKind,
    /// Held once per process (`crate::interned`), as the image.
    pub name: std::sync::Arc<str>,
    pub image: std::sync::Arc<str>,
    /// The current container's runtime id.
    pub id: Option<RuntimeId>,
    /// The previous container's id, kept for its logs until the next restart.
    pub previous_id: Option<Box<RuntimeId>>,
    pub image_ref: Option<std::sync::Arc<str>>,
    /// The current container's state, once created (`state`, `set_state`).
    pub current: Option<HeldState>,
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
    /// The current container's state, once created.
    pub fn state(&self) -> Option<Cow<'_, ContainerState>> {
        self.current.as_ref().map(HeldState::get)
    }

    pub fn set_state(&mut self, state: Option<ContainerState>) {
        self.current = state.map(HeldState::from);
    }

    /// The current container's state, which the record no longer holds.
    pub fn take_state(&mut self) -> Option<ContainerState> {
        self.current.take().map(HeldState::into_state)
    }

    pub fn is_running(&self) -> bool {
        matches!(self.current, Some(HeldState::Running(_)))
    }

    /// The current container's id, while it runs.
    pub fn running_id(&self) -> Option<String> {
        self.id
            .as_ref()
            .filter(|_| self.is_running())
            .map(ToString::to_string)
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self.current.as_ref()?.get().as_ref() {
            ContainerState::Exited { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }

    /// An init container that completed, or a sidecar that started.
    pub fn init_done(&self) -> bool {
        match self.kind {
            ContainerKind::Sidecar => {
                self.restart_count > 0
                    || self
                        .current
                        .as_ref()
                        .is_some_and(|s| !matches!(s, HeldState::Created(_)))
            }
            _ => self.exit_code() == Some(0),
        }
    }

    /// When a running container's startup probe first succeeds (at once without one).
    pub fn started_by(&self) -> Option<SystemTime> {
        match self.current {
            Some(HeldState::Running(started_at)) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_state_is_the_state_it_was_made_from() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        for state in [
            ContainerState::Created { created_at: at },
            ContainerState::Running { started_at: at },
            ContainerState::Exited {
                started_at: at,
                finished_at: at + Duration::from_secs(1),
                exit_code: 137,
                reason: "OOMKilled".into(),
                message: Some("killed".into()),
            },
        ] {
            let mut record = ContainerRecord::default();
            record.set_state(Some(state.clone()));
            assert_eq!(record.state().as_deref(), Some(&state));
            assert_eq!(
                record.is_running(),
                matches!(state, ContainerState::Running { .. })
            );
            assert_eq!(record.take_state(), Some(state));
            assert!(record.state().is_none());
        }
    }

    #[test]
    fn a_record_is_small() {
        // Size guard (#21): a record lives as long as its pod, one per container.
        let size = size_of::<ContainerRecord>();
        assert!(size <= 160, "{size} bytes");
    }
}
