//! The wakes pod workers ask for (a back-off ending, a probe due, a retry), one timer
//! queue a process: a waiting pod is an entry in it, not a task with a timer.

use std::sync::{Arc, OnceLock, Weak};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;

use super::inbox::PodInbox;

/// A wake asked for: the pod, when, and the pass of its worker it belongs to.
type Wake = (Weak<PodInbox>, Instant, u32);

/// A handle to a process's queue of pod wakes. The queue's task starts with the first
/// wake asked for (nodes whose pods never wait have none) and ends once every handle
/// is gone.
#[derive(Clone, Default)]
pub(crate) struct PodTimers {
    due: Arc<OnceLock<mpsc::UnboundedSender<Wake>>>,
}

impl PodTimers {
    /// Wakes the worker of `inbox` at `at`, unless it has passed again since `pass`.
    pub(crate) fn schedule(&self, inbox: &Arc<PodInbox>, at: Instant, pass: u32) {
        let due = self.due.get_or_init(|| {
            let (due, queue) = mpsc::unbounded_channel();
            tokio::spawn(drive(queue));
            due
        });
        let _ = due.send((Arc::downgrade(inbox), at, pass));
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
