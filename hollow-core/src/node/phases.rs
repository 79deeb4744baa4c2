//! How many of a node's pods are in each phase.

/// The pod phases, in the order a node counts them.
const PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];

/// The index of a phase in [`PHASES`] (Unknown for anything else), as a pod's worker
/// publishes it.
pub(crate) fn phase_index(phase: &str) -> u8 {
    PHASES.iter().position(|p| *p == phase).unwrap_or(4) as u8
}

/// How many of a node's pods are in each phase, from
/// [`RunningNode::pods_by_phase`](super::RunningNode::pods_by_phase).
///
/// ```
/// use hollow_core::node::PodPhaseCounts;
///
/// let counts = PodPhaseCounts { running: 3, failed: 1, ..Default::default() };
/// assert_eq!(counts.total(), 4);
/// assert_eq!(counts.iter().find(|(phase, _)| *phase == "Running"), Some(("Running", 3)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodPhaseCounts {
    /// Pods in phase Pending.
    pub pending: usize,
    /// Pods in phase Running.
    pub running: usize,
    /// Pods in phase Succeeded.
    pub succeeded: usize,
    /// Pods in phase Failed.
    pub failed: usize,
    /// Pods in phase Unknown.
    pub unknown: usize,
}

impl PodPhaseCounts {
    /// Counts the phases published as [`phase_index`]es.
    pub(crate) fn count(indices: impl IntoIterator<Item = u8>) -> Self {
        let mut counts = [0; 5];
        for index in indices {
            counts[usize::from(index).min(4)] += 1;
        }
        let [pending, running, succeeded, failed, unknown] = counts;
        Self {
            pending,
            running,
            succeeded,
            failed,
            unknown,
        }
    }

    /// All pods counted.
    pub fn total(&self) -> usize {
        self.pending + self.running + self.succeeded + self.failed + self.unknown
    }

    /// `(phase, count)` for each phase, as the API spells the phase.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, usize)> {
        let counts = [
            self.pending,
            self.running,
            self.succeeded,
            self.failed,
            self.unknown,
        ];
        PHASES.into_iter().zip(counts)
    }
}
