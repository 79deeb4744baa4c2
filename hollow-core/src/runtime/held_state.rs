//! A container's state held compactly.

use std::borrow::Cow;
use std::time::SystemTime;

use super::ContainerState;

/// A container's state as the engine's records and the fake runtime hold it: 16 bytes
/// where a [`ContainerState`] takes 88 (both live as long as their pod, and most
/// containers run; an exit's reason and message are boxed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeldState {
    Created(SystemTime),
    Running(SystemTime),
    /// Always a [`ContainerState::Exited`].
    Exited(Box<ContainerState>),
}

impl From<ContainerState> for HeldState {
    fn from(state: ContainerState) -> Self {
        match state {
            ContainerState::Created { created_at } => HeldState::Created(created_at),
            ContainerState::Running { started_at } => HeldState::Running(started_at),
            exited @ ContainerState::Exited { .. } => HeldState::Exited(Box::new(exited)),
        }
    }
}

impl HeldState {
    /// The state it holds.
    pub fn get(&self) -> Cow<'_, ContainerState> {
        match self {
            HeldState::Created(created_at) => Cow::Owned(ContainerState::Created {
                created_at: *created_at,
            }),
            HeldState::Running(started_at) => Cow::Owned(ContainerState::Running {
                started_at: *started_at,
            }),
            HeldState::Exited(exited) => Cow::Borrowed(exited),
        }
    }

    pub fn into_state(self) -> ContainerState {
        match self {
            HeldState::Exited(exited) => *exited,
            held => held.get().into_owned(),
        }
    }
}
