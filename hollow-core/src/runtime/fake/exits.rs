//! Timed exits of many containers on one timer: a container whose only step is an
//! exit after a while (a userland script's end, [`Behavior::Exit`](super::Behavior))
//! keeps when and how it exits in its own record, and its fake's one timer wakes at
//! the earliest and finds those due among the fake's containers (a node's, a few
//! dozen). A container that sleeps costs no task and no queue entry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::FakeRuntime;
use super::state::{Inner, State};
use super::steps::apply_step;
use crate::lifecycle::ContainerStep;

/// The fake's timer of timed exits.
#[derive(Default)]
pub(super) struct Exits {
    /// Told of an exit due earlier than those before, and of the fake's end.
    wake: Notify,
    /// Set when the fake is gone: the timer ends.
    closed: AtomicBool,
}

impl Exits {
    /// Ends the timer (the fake is gone).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }
}

impl FakeRuntime {
    /// Exits the container after `after` with `code`, on the fake's shared timer
    /// (started with the first exit).
    pub(super) fn exit_later(&self, container_id: &str, code: i32, after: Duration) {
        let exits = self.inner.exits.get_or_init(|| {
            let exits = Arc::new(Exits::default());
            tokio::spawn(run(Arc::downgrade(&self.inner), exits.clone()));
            exits
        });
        let at = Instant::now() + after;
        let mut state = self.lock();
        let earliest = next_exit(&state).is_none_or(|next| at < next);
        if let Some(container) = state.containers.get_mut(container_id) {
            container.exit_at = Some(Box::new((at, code)));
            drop(state);
            if earliest {
                exits.wake.notify_one();
            }
        }
    }
}

/// When the next timed exit is due.
fn next_exit(state: &State) -> Option<Instant> {
    state
        .containers
        .values()
        .filter_map(|c| c.exit_at.as_deref().map(|(at, _)| *at))
        .min()
}

/// The timer: plays each exit when it is due, until the fake is gone.
async fn run(inner: Weak<Inner>, exits: Arc<Exits>) {
    while !exits.closed.load(Ordering::Relaxed) {
        let next = match inner.upgrade() {
            Some(inner) => next_exit(&inner.state.lock()),
            None => return,
        };
        let Some(at) = next else {
            exits.wake.notified().await;
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = exits.wake.notified() => continue,
        }
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        let due: Vec<(String, i32)> = inner
            .state
            .lock()
            .containers
            .iter_mut()
            .filter(|(_, c)| c.exit_at.as_deref().is_some_and(|(at, _)| *at <= now))
            .filter_map(|(key, c)| Some((key.id(), c.exit_at.take()?.1)))
            .collect();
        for (container_id, code) in due {
            apply_step(&inner, &container_id, &ContainerStep::Exit { code });
        }
    }
}
