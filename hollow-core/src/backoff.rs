//! Doubling retry delays, as the kubelet and client-go use for restarts, pulls and
//! reconnects: one type for every retry loop of the crate.

use std::time::Duration;

/// Delays that start at `initial` and double up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Doubling {
    initial: Duration,
    max: Duration,
}

impl Doubling {
    /// Delays from `initial`, doubling, capped at `max`.
    pub(crate) const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay after `previous` (the first delay when there was none).
    pub(crate) fn after(self, previous: Option<Duration>) -> Duration {
        previous.map_or(self.initial, |delay| (delay * 2).min(self.max))
    }

    /// Every delay in turn, without end.
    pub(crate) fn delays(self) -> impl Iterator<Item = Duration> {
        std::iter::successors(Some(self.initial), move |delay| {
            Some(self.after(Some(*delay)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let secs: Vec<u64> = Doubling::new(Duration::from_secs(10), Duration::from_secs(300))
            .delays()
            .take(7)
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300]);
    }
}
