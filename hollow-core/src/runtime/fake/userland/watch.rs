//! Watching a run's files: what they are at a moment, and when they next change
//! (the moment a probe that reads them may give another outcome).

use std::time::Duration;

use super::eval::Stop;
use super::fs::Fs;

/// The files at a moment of a run, and the moment after it when they first change.
#[derive(Debug, Default)]
pub(super) struct Watch {
    pub(super) at: Duration,
    pub(super) snapshot: Option<Fs>,
    pub(super) next_change: Option<Duration>,
}

impl Watch {
    /// The run, its files `fs` at `clock`, sleeps for `duration`: the moment to take
    /// the snapshot, or (once it differs from the files) the change looked for, which
    /// ends the run.
    pub(super) fn sleeps(
        &mut self,
        fs: &Fs,
        clock: Duration,
        duration: Duration,
    ) -> Result<(), Stop> {
        match &self.snapshot {
            // Nothing runs while it sleeps: the files at `at` are those now.
            None if clock.saturating_add(duration) > self.at => {
                self.snapshot = Some(fs.clone());
            }
            Some(snapshot) if snapshot != fs => {
                self.next_change = Some(clock);
                return Err(Stop::Horizon);
            }
            _ => {}
        }
        Ok(())
    }
}
