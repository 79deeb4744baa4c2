//! A node plan as a function of time: no task runs it, the node's state at any moment
//! is computed from the steps and the time since the node started.

use std::collections::BTreeMap;
use std::time::Duration;

use super::choose::Plan;
use super::model::{ConditionStep, Heartbeat, NodeStep};

/// The faults a node plan holds at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFaults {
    /// Conditions set by the plan, by type.
    pub conditions: BTreeMap<String, ConditionStep>,
    /// Whether heartbeats are stopped.
    pub heartbeats_stopped: bool,
}

impl NodeFaults {
    fn apply(&mut self, step: &NodeStep) {
        match step {
            NodeStep::Condition(condition) => {
                self.conditions
                    .insert(condition.type_.clone(), condition.clone());
            }
            NodeStep::ClearCondition(type_) => {
                self.conditions.remove(type_);
            }
            NodeStep::Heartbeat(beat) => self.heartbeats_stopped = *beat == Heartbeat::Stop,
            NodeStep::Wait(_) | NodeStep::Repeat => {}
        }
    }

    /// The state `elapsed` after the node started, under `plan`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hollow_core::lifecycle::{Lifecycle, NodeFaults, NodeFacts};
    ///
    /// let lifecycle = Lifecycle::from_yaml(
    ///     "nodes: [ { delay: 10s, steps: [ {heartbeat: stop}, {wait: 30s}, {heartbeat: resume} ] } ]",
    ///     "inline",
    /// )?;
    /// let none = Default::default();
    /// let plan = lifecycle
    ///     .node_plan(&NodeFacts { name: "n", labels: &none, annotations: &none })
    ///     .unwrap();
    /// let at = |s| NodeFaults::at(&plan, Duration::from_secs(s)).heartbeats_stopped;
    /// assert_eq!((at(5), at(15), at(45)), (false, true, false));
    /// # Ok::<(), hollow_core::lifecycle::LoadError>(())
    /// ```
    pub fn at(plan: &Plan<'_, NodeStep>, elapsed: Duration) -> NodeFaults {
        let mut faults = NodeFaults::default();
        let Some(mut left) = elapsed.checked_sub(plan.delay) else {
            return faults;
        };
        let repeats = plan.steps.last().is_some_and(|s| *s == NodeStep::Repeat);
        let period: Duration = plan
            .steps
            .iter()
            .map(|s| match s {
                NodeStep::Wait(d) => *d,
                _ => Duration::ZERO,
            })
            .sum();
        if repeats && !period.is_zero() && left >= period {
            // Steps only assign, so every full pass ends in the same state: play one,
            // then the part of the current pass that has happened.
            for step in plan.steps {
                faults.apply(step);
            }
            let passes = left.as_nanos() / period.as_nanos();
            let done = period.saturating_mul(u32::try_from(passes).unwrap_or(u32::MAX));
            left = left.saturating_sub(done);
        }
        for step in plan.steps {
            if let NodeStep::Wait(wait) = step {
                match left.checked_sub(*wait) {
                    Some(rest) => left = rest,
                    None => break,
                }
            }
            faults.apply(step);
        }
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{ConditionStatus, Lifecycle, NodeFacts};

    #[test]
    fn a_repeating_plan_flaps_forever() {
        let lifecycle = Lifecycle::from_yaml(
            "nodes:\n  - delay: 5s\n    steps:\n      - condition: {type: MemoryPressure, status: \"True\"}\n      - wait: 10s\n      - clearCondition: MemoryPressure\n      - wait: 20s\n      - repeat\n",
            "t",
        )
        .unwrap();
        let none = BTreeMap::new();
        let plan = lifecycle
            .node_plan(&NodeFacts {
                name: "n",
                labels: &none,
                annotations: &none,
            })
            .unwrap();
        let pressure = |s: u64| {
            NodeFaults::at(&plan, Duration::from_secs(s))
                .conditions
                .get("MemoryPressure")
                .map(|c| c.status)
        };
        assert_eq!(pressure(0), None);
        assert_eq!(pressure(5), Some(ConditionStatus::True));
        assert_eq!(pressure(14), Some(ConditionStatus::True));
        assert_eq!(pressure(16), None);
        assert_eq!(pressure(36), Some(ConditionStatus::True));
        assert_eq!(pressure(30 * 1000 + 5 + 5), Some(ConditionStatus::True));
        assert_eq!(pressure(30 * 1000 + 5 + 25), None);
    }
}
