//! Timed exits of many containers on one timer: a container whose only step is an
//! exit after a while (a userland script's end, [`Behavior::Exit`](super::Behavior))
//! waits as an entry in its fake's queue, not as a task of its own, so a container
//! that sleeps costs a queue entry (a few dozen bytes and its id).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::FakeRuntime;
use super::state::Inner;
use super::steps::apply_step;
use crate::lifecycle::ContainerStep;

/// The exits a fake waits to play, by when they are due (and a count, so two due at
/// once both stay).
#[derive(Default)]
pub(super) struct Exits {
    due: Mutex<BTreeMap<(Instant, u64), (String, i32)>>,
    count: AtomicU64,
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
    pub(super) fn exit_later(&self, container_id: String, code: i32, after: Duration) {
        let exits = self.inner.exits.get_or_init(|| {
            let exits = Arc::new(Exits::default());
            tokio::spawn(run(Arc::downgrade(&self.inner), exits.clone()));
            exits
        });
        let at = Instant::now() + after;
        let key = (at, exits.count.fetch_add(1, Ordering::Relaxed));
        let earliest = {
            let mut due = exits.due.lock();
            due.insert(key, (container_id, code));
            due.first_key_value().map(|(k, _)| *k) == Some(key)
        };
        if earliest {
            exits.wake.notify_one();
        }
    }
}

/// The timer: plays each exit when it is due, until the fake is gone.
async fn run(inner: Weak<Inner>, exits: Arc<Exits>) {
    while !exits.closed.load(Ordering::Relaxed) {
        let next = exits.due.lock().first_key_value().map(|(k, _)| k.0);
        let Some(at) = next else {
            exits.wake.notified().await;
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = exits.wake.notified() => continue,
        }
        let now = Instant::now();
        let due: Vec<(String, i32)> = {
            let mut queue = exits.due.lock();
            let later = queue.split_off(&(now, u64::MAX));
            std::mem::replace(&mut *queue, later)
                .into_values()
                .collect()
        };
        let Some(inner) = inner.upgrade() else { return };
        for (container_id, code) in due {
            apply_step(&inner, &container_id, &ContainerStep::Exit { code });
        }
    }
}
