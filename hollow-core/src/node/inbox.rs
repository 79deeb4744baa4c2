//! A pod's place on its node: the pod as its worker last took it, the news the worker
//! has yet to take, and the worker itself between passes. No task waits for a pod: news
//! (a newer object, a container change, the pod's end, a timer come due) starts a
//! short task that runs the worker's passes until nothing more is new, then puts the
//! worker back (a task per pod would hold its future and a timer all the pod's life,
//! about 1 KiB). Timers are one queue a process ([`PodTimers`](super::pod_timers::PodTimers)).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8};

use k8s_openapi::api::core::v1::Pod;
use parking_lot::{Mutex, MutexGuard};

use super::compact::CompactPod;
use super::worker::PodWorker;

/// What a pod's worker is handed, and what it publishes: the pod as the worker last
/// took it (held compactly: the worker drops its object between passes), a newer one
/// it has yet to take, a nudge when its containers change, and the phase it last
/// computed. One allocation per pod, with the worker's own (boxed) state.
pub(crate) struct PodInbox {
    /// The pod's UID (the key of the node's table of pods).
    pub uid: super::pod_uid::PodUid,
    slot: Mutex<Slot>,
    /// The phase the worker last computed, as a [`phase_index`](super::phases::phase_index).
    pub phase: AtomicU8,
    /// Set while the pod has a deferred resize, which is tried again when another pod
    /// frees or takes resources.
    pub resize_pending: AtomicBool,
}

struct Slot {
    /// The pod as the worker last took it.
    taken: CompactPod,
    /// A newer pod object, until the worker takes it (boxed: it is there only for a
    /// moment, but during a burst for many pods at once).
    fresh: Option<Box<CompactPod>>,
    /// The pod is gone from the API.
    gone: bool,
    /// Its containers changed (or events were lost).
    nudged: bool,
    /// The wake the worker asked for came due.
    timer_due: bool,
    /// Counts the worker's passes: a timer set before the latest is void.
    passes: u32,
    /// The worker between passes; `None` while a pass runs, and once it ended.
    worker: Option<Box<PodWorker>>,
    /// A pass runs: news waits for it to end.
    passing: bool,
}

/// What a pod's worker is told.
pub(crate) enum News {
    /// The worker is new: it has its pod and nothing done.
    First,
    /// A newer pod object (the inbox holds it now), the one it replaces, and whether
    /// the pod's containers were nudged as well.
    Pod(CompactPod, bool),
    /// The pod's containers changed (or events were lost).
    Nudged,
    /// The wake it asked for came due.
    Timer,
    /// The pod is gone from the API: clean up and end.
    Gone,
}

impl PodInbox {
    pub(crate) fn new(uid: super::pod_uid::PodUid, pod: &Pod) -> Self {
        Self {
            uid,
            slot: Mutex::new(Slot {
                taken: CompactPod::new(pod),
                fresh: None,
                gone: false,
                nudged: false,
                timer_due: false,
                passes: 0,
                worker: None,
                passing: false,
            }),
            phase: AtomicU8::new(0),
            resize_pending: AtomicBool::new(false),
        }
    }

    /// Starts `worker`'s first pass; it runs its later ones as news comes.
    pub(crate) fn start(self: &Arc<Self>, worker: PodWorker) {
        self.slot.lock().passing = true;
        tokio::spawn(passes(self.clone(), Some(Box::new(worker))));
    }

    /// Drops the worker, unless a pass runs (that pass ends it): its node stopped.
    pub(crate) fn end(&self) {
        let worker = self.slot.lock().worker.take();
        drop(worker);
    }

    /// The latest pod object (`None` once the pod is gone).
    pub(crate) fn pod(&self) -> Option<Arc<Pod>> {
        let slot = self.slot.lock();
        if slot.gone {
            return None;
        }
        let latest = slot.fresh.as_deref().unwrap_or(&slot.taken).clone();
        drop(slot);
        Some(Arc::new(latest.pod()))
    }

    /// The pod as the worker last took it (also once the pod is gone).
    pub(crate) fn taken(&self) -> Pod {
        let taken = self.slot.lock().taken.clone();
        taken.pod()
    }

    /// Hands the worker a newer pod object (an older one than it has is dropped), held
    /// compactly until the worker takes it.
    pub(crate) fn offer(self: &Arc<Self>, pod: Pod) {
        let compact = CompactPod::new(&pod);
        let mut slot = self.slot.lock();
        let newest = slot
            .fresh
            .as_ref()
            .map_or(slot.taken.version(), |fresh| fresh.version());
        if slot.gone || compact.version() < newest {
            return;
        }
        slot.fresh = Some(Box::new(compact));
        self.wake(slot);
    }

    /// Takes `pod`, read by the worker itself, as the one it has if it is no older
    /// than that one (a newer object waiting to be taken no older than it is then
    /// dropped); returns the one it replaces.
    pub(crate) fn take_newer(&self, pod: &Pod) -> Option<CompactPod> {
        let compact = CompactPod::new(pod);
        let mut slot = self.slot.lock();
        if compact.version() < slot.taken.version() {
            return None;
        }
        if slot
            .fresh
            .as_ref()
            .is_some_and(|fresh| fresh.version() <= compact.version())
        {
            slot.fresh = None;
        }
        Some(std::mem::replace(&mut slot.taken, compact))
    }

    /// Tells the worker its containers changed.
    pub(crate) fn nudge(self: &Arc<Self>) {
        let mut slot = self.slot.lock();
        slot.nudged = true;
        self.wake(slot);
    }

    /// Tells the worker the pod is gone.
    pub(crate) fn close(self: &Arc<Self>) {
        let mut slot = self.slot.lock();
        slot.gone = true;
        slot.fresh = None;
        self.wake(slot);
    }

    /// Tells the worker the wake it asked for after pass `pass` came due (void if it
    /// has passed since).
    pub(crate) fn timer_due(self: &Arc<Self>, pass: u32) {
        let mut slot = self.slot.lock();
        if slot.passes == pass && !slot.gone {
            slot.timer_due = true;
            self.wake(slot);
        }
    }

    /// Starts a task for the worker's passes, unless one runs or waits to (it takes
    /// the news when it runs) or the worker ended.
    fn wake(self: &Arc<Self>, mut slot: MutexGuard<'_, Slot>) {
        if slot.passing || slot.worker.is_none() {
            return;
        }
        slot.passing = true;
        drop(slot);
        tokio::spawn(passes(self.clone(), None));
    }

    /// The news the worker has not taken, all in one (`None`: nothing new).
    #[cfg(test)]
    pub(crate) fn news(&self) -> Option<News> {
        self.slot.lock().take_news()
    }
}

impl Slot {
    /// Takes what is new, all in one: the end, else a newer pod (with a nudge), else a
    /// nudge, else a timer. Each counts as a pass begun.
    fn take_news(&mut self) -> Option<News> {
        let nudged = std::mem::take(&mut self.nudged);
        let timer = std::mem::take(&mut self.timer_due);
        let news = if self.gone {
            News::Gone
        } else if let Some(fresh) = self.fresh.take() {
            let previous = std::mem::replace(&mut self.taken, *fresh);
            News::Pod(previous, nudged)
        } else if nudged {
            News::Nudged
        } else if timer {
            News::Timer
        } else {
            return None;
        };
        self.passes = self.passes.wrapping_add(1);
        Some(news)
    }
}

/// Runs the worker's passes (a new `first` worker's first) once a turn is free, while
/// there is news, then puts it back with its wake on the timers; drops it once its pod
/// is gone or its node stopped.
async fn passes(inbox: Arc<PodInbox>, first: Option<Box<PodWorker>>) {
    // The semaphore is never closed.
    let Ok(_turn) = super::pass_bound::turns().0.acquire().await else {
        return;
    };
    let (mut worker, mut news) = match first {
        Some(worker) => (worker, Some(News::First)),
        None => {
            let mut slot = inbox.slot.lock();
            let Some(worker) = slot.worker.take() else {
                slot.passing = false;
                return;
            };
            let news = slot.take_news();
            (worker, news)
        }
    };
    let mut wake = None;
    loop {
        if let Some(next) = news.take() {
            if worker.stopped() {
                break;
            }
            // Boxed: the pass's future is large, and this task's is its size.
            match Box::pin(worker.step(next)).await {
                Some(at) => wake = at,
                None => break,
            }
        }
        let mut slot = inbox.slot.lock();
        news = slot.take_news();
        if news.is_some() {
            continue;
        }
        if worker.stopped() {
            break;
        }
        let pass = slot.passes;
        let timers = wake.map(|at| (at, worker.timers()));
        slot.worker = Some(worker);
        slot.passing = false;
        drop(slot);
        if let Some((at, timers)) = timers {
            timers.schedule(&inbox, at, pass);
        }
        return;
    }
    inbox.slot.lock().passing = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(version: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.resource_version = Some(version.into());
        pod
    }

    fn version(pod: &Pod) -> String {
        pod.metadata.resource_version.clone().unwrap()
    }

    #[tokio::test]
    async fn an_inbox_hands_over_the_latest_pod_nudges_and_the_end() {
        let inbox = Arc::new(PodInbox::new("1".into(), &pod("1")));
        inbox.offer(pod("2"));
        inbox.nudge();
        inbox.offer(pod("3"));
        // An older object than the latest (a relisted watch's) is dropped.
        inbox.offer(pod("2"));
        match inbox.news() {
            Some(News::Pod(previous, nudged)) => {
                assert!(version(&inbox.taken()) == "3" && nudged);
                assert_eq!(version(&previous.pod()), "1");
            }
            _ => panic!("expected the latest pod"),
        }
        // All of that was one piece of news: nothing more is new.
        assert!(inbox.news().is_none());
        inbox.nudge();
        assert!(matches!(inbox.news(), Some(News::Nudged)));
        assert_eq!(version(&inbox.pod().unwrap()), "3");
        assert_eq!(version(&inbox.taken()), "3");
        // What the worker read itself: taken if newer, and a waiting older one dropped.
        inbox.offer(pod("4"));
        assert!(inbox.take_newer(&pod("2")).is_none());
        let previous = inbox.take_newer(&pod("5")).expect("newer");
        assert_eq!(version(&previous.pod()), "3");
        assert_eq!(version(&inbox.pod().unwrap()), "5");
        inbox.nudge();
        assert!(matches!(inbox.news(), Some(News::Nudged)));
        inbox.close();
        inbox.offer(pod("6"));
        assert!(matches!(inbox.news(), Some(News::Gone)));
        assert!(inbox.pod().is_none());
        assert_eq!(
            version(&inbox.taken()),
            "5",
            "the worker still reads its pod to clean up"
        );
    }

    #[tokio::test]
    async fn a_wake_asked_for_before_the_latest_pass_is_void() {
        let inbox = Arc::new(PodInbox::new("1".into(), &pod("1")));
        inbox.nudge();
        assert!(matches!(inbox.news(), Some(News::Nudged)));
        let pass = inbox.slot.lock().passes;
        inbox.timer_due(pass.wrapping_sub(1));
        assert!(inbox.news().is_none(), "a wake from an earlier pass");
        inbox.timer_due(pass);
        assert!(matches!(inbox.news(), Some(News::Timer)));
        // News and a wake together are one pass.
        let pass = inbox.slot.lock().passes;
        inbox.timer_due(pass);
        inbox.nudge();
        assert!(matches!(inbox.news(), Some(News::Nudged)));
        assert!(inbox.news().is_none());
        // A wake due once the pod is gone is not news: the end is.
        inbox.close();
        let pass = inbox.slot.lock().passes;
        inbox.timer_due(pass);
        assert!(matches!(inbox.news(), Some(News::Gone)));
    }
}
