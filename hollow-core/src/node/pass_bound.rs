//! How many pods' passes run at once in a process.
//!
//! A pass (a pod worker's step toward its pod's desired state) holds its pod's object
//! and the futures of its API and runtime calls while it waits on them. Unbounded, a
//! burst of new pods (thousands bound at once) would hold them all at the same moment,
//! and the allocator keeps much of what such a peak took: partly used pages, each
//! holding a few of the long-lived records made during the burst. A pod waiting its
//! turn holds only its inbox, where news keeps gathering. The bound trades memory for
//! how fast a burst runs: `hollow-bench` at 200 nodes and 6,000 direct pods measured
//! 128 passes at once against 64 and 32 (docs/benchmarks.md, "How many passes at once").

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use tokio::sync::Semaphore;

/// Pods' passes at once in a process unless [`set_pod_passes_at_once`] says otherwise.
pub const DEFAULT_POD_PASSES_AT_ONCE: usize = 64;

/// The turns, and how many there are; made when the first pass asks for one (or the
/// first read of the bound).
static TURNS: OnceLock<(Semaphore, usize)> = OnceLock::new();

/// [`set_pod_passes_at_once`] came after the bound was set, or after a pass started or
/// [`pod_passes_at_once`] read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pods' passes are already bounded at {bound} at once in this process")]
pub struct PassBoundAlreadySet {
    /// The bound in force.
    pub bound: usize,
}

/// Sets how many pods' passes run at once in this process (across all its hollow
/// nodes), before any node drives a pod. More runs a burst of new pods faster when the
/// API server keeps up, at the cost of memory after the burst.
///
/// ```
/// use std::num::NonZeroUsize;
/// use hollow_core::node::{pod_passes_at_once, set_pod_passes_at_once};
///
/// let bound = NonZeroUsize::new(32).unwrap();
/// set_pod_passes_at_once(bound).unwrap();
/// assert_eq!(pod_passes_at_once(), 32);
/// // Once set (or once a pass has run), it stays.
/// let again = set_pod_passes_at_once(NonZeroUsize::new(8).unwrap());
/// assert_eq!(again.unwrap_err().bound, 32);
/// ```
pub fn set_pod_passes_at_once(bound: NonZeroUsize) -> Result<(), PassBoundAlreadySet> {
    let mut set = false;
    let (_, in_force) = TURNS.get_or_init(|| {
        set = true;
        (Semaphore::new(bound.get()), bound.get())
    });
    if set {
        Ok(())
    } else {
        Err(PassBoundAlreadySet { bound: *in_force })
    }
}

/// How many pods' passes run at once in this process. Reading it fixes it: a
/// [`set_pod_passes_at_once`] after it is refused.
///
/// ```
/// use hollow_core::node::{DEFAULT_POD_PASSES_AT_ONCE, pod_passes_at_once};
///
/// assert_eq!(pod_passes_at_once(), DEFAULT_POD_PASSES_AT_ONCE);
/// ```
pub fn pod_passes_at_once() -> usize {
    turns().1
}

/// The process's turns.
pub(crate) fn turns() -> &'static (Semaphore, usize) {
    TURNS.get_or_init(|| {
        (
            Semaphore::new(DEFAULT_POD_PASSES_AT_ONCE),
            DEFAULT_POD_PASSES_AT_ONCE,
        )
    })
}
