//! The wakes pod workers ask for (a back-off ending, a probe due, a retry), one timer
//! queue a process: a waiting pod is an entry in it, not a task with a timer.

use std::sync::{Arc, Weak};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;

use super::inbox::PodInbox;

/// A wake asked for: the pod, when, and the pass of its worker it belongs to.
type Wake = (Weak<PodInbox>, Instant, u32);

/// A handle to a process's queue of pod wakes; the queue's task ends once every handle
/// is gone.
#[derive(Clone)]
pub(crate) struct PodTimers {
    due: mpsc::UnboundedSender<Wake>,
}

impl PodTimers {
    /// Starts a queue.
    pub(crate) fn start() -> Self {
        let (due, queue) = mpsc::unbounded_channel();
        tokio::spawn(drive(queue));
        Self { due }
    }

    /// Wakes the worker of `inbox` at `at`, unless it has passed again since `pass`.
    pub(crate) fn schedule(&self, inbox: &Arc<PodInbox>, at: Instant, pass: u32) {
        let _ = self.due.send((Arc::downgrade(inbox), at, pass));
    }
}

async fn drive(mut due: mpsc::UnboundedReceiver<Wake>) {
    let mut queue: DelayQueue<(Weak<PodInbox>, u32)> = DelayQueue::new();
    loop {
        tokio::select! {
            next = due.recv() => match next {
                Some((inbox, at, pass)) => {
                    queue.insert_at((inbox, pass), at);
                }
                None => return,
            },
            Some(expired) = queue.next(), if !queue.is_empty() => {
                let (inbox, pass) = expired.into_inner();
                if let Some(inbox) = inbox.upgrade() {
                    inbox.timer_due(pass);
                }
            }
        }
    }
}
