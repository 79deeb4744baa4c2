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

/// The back-off of the node's watches between failed attempts: 0.8 s doubling to 4 s,
/// with up to 25 % jitter, from the start again once a watch works.
///
/// client-go's reflectors (and kube's `default_backoff`) grow to 30 s, so after an
/// outage of a minute a watch could wait half a minute before it tries again, and a
/// node would learn that long after the fact what the control plane did meanwhile
/// (its pods marked not ready); hollow answers within a status period instead. A
/// process has one pod watch and one Node watch, so the shorter wait costs an API
/// server that is down a request every few seconds.
pub(crate) struct WatchBackoff {
    previous: Option<Duration>,
}

impl WatchBackoff {
    const DELAYS: Doubling = Doubling::new(Duration::from_millis(800), Duration::from_secs(4));

    pub(crate) fn new() -> Self {
        Self { previous: None }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = Self::DELAYS.after(self.previous);
        self.previous = Some(delay);
        Some(delay.mul_f64(1.0 + rand::random::<f64>() * 0.25))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.previous = None;
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

    #[test]
    fn watch_retries_stay_within_five_seconds_and_start_again_after_a_reset() {
        use kube::runtime::utils::Backoff as _;
        let mut backoff = WatchBackoff::new();
        let delays: Vec<Duration> = backoff.by_ref().take(10).collect();
        assert!(delays[0] >= Duration::from_millis(800) && delays[0] <= Duration::from_secs(1));
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(5)),
            "{delays:?}"
        );
        assert!(delays[9] >= Duration::from_secs(4));
        backoff.reset();
        assert!(backoff.next().unwrap() <= Duration::from_secs(1));
    }
}
