//! The presets: `fast`, `realistic` and `chaos`.

use std::time::Duration;

use super::Lifecycle;
use super::model::{
    ConditionStatus, ConditionStep, ContainerRule, ContainerStep, DeletionRule, NodeRule, NodeStep,
    PodMatch, PullRule, PullStep,
};
use crate::pod::ContainerKind;

/// The presets' names.
pub const PRESETS: [&str; 3] = ["fast", "realistic", "chaos"];

/// The fault rate of the `chaos` preset.
pub const DEFAULT_CHAOS_RATE: f64 = 0.05;

/// The seed the presets use.
const PRESET_SEED: u64 = 1;

/// Weights are parts per million of the whole.
const WEIGHT_SCALE: f64 = 1_000_000.0;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn weight(share: f64) -> u32 {
    (share.clamp(0.0, 1.0) * WEIGHT_SCALE).round() as u32
}

impl Lifecycle {
    /// A preset by name: `fast`, `realistic` or `chaos`.
    pub fn preset(name: &str) -> Option<Lifecycle> {
        match name {
            "fast" => Some(Lifecycle::fast()),
            "realistic" => Some(Lifecycle::realistic()),
            "chaos" => Some(Lifecycle::chaos(DEFAULT_CHAOS_RATE)),
            _ => None,
        }
    }

    /// Containers run at once, pulls succeed at once, nodes stay healthy: no rules.
    pub fn fast() -> Lifecycle {
        Lifecycle::default().seed(PRESET_SEED)
    }

    /// Kubelet-like timings with jitter: pulls take 0.5 to 2.5 s, init containers run
    /// 1 to 3 s, containers of deleted pods take 0.5 to 2 s to stop.
    pub fn realistic() -> Lifecycle {
        Lifecycle::fast()
            .pull_rule(
                PullRule::new(
                    "pull-takes-time",
                    [PullStep::Wait(Duration::from_millis(500))],
                )
                .with_delay(Duration::ZERO, secs(2)),
            )
            .container_rule(
                ContainerRule::new("init-runs-a-while", [ContainerStep::Exit { code: 0 }])
                    .matching(PodMatch::default().kind(ContainerKind::Init))
                    .with_delay(secs(1), secs(2)),
            )
            .deletion_rule(
                DeletionRule::new("graceful-stop", [])
                    .with_delay(Duration::from_millis(500), Duration::from_millis(1500)),
            )
    }

    /// Random faults at `rate` (0 to 1): that share of regular containers crash,
    /// are OOM-killed or flap their readiness 10 to 60 s after they start; half that
    /// share of pulls fail; that share of nodes come under memory pressure now and
    /// then. Timings are [`Lifecycle::realistic`]'s.
    ///
    /// ```
    /// use hollow_core::lifecycle::Lifecycle;
    ///
    /// let chaos = Lifecycle::chaos(0.1);
    /// assert!(!chaos.nodes.is_empty());
    /// assert_eq!(chaos, Lifecycle::chaos(0.1), "deterministic");
    /// ```
    pub fn chaos(rate: f64) -> Lifecycle {
        let rate = if rate.is_finite() {
            rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let regular = || PodMatch::default().kind(ContainerKind::Regular);
        let mut lifecycle = Lifecycle::realistic();
        let faults = [
            (
                "chaos-crash",
                0.6,
                vec![ContainerStep::Exit { code: 1 }],
                secs(50),
            ),
            ("chaos-oom", 0.2, vec![ContainerStep::OomKill], secs(50)),
            (
                "chaos-readiness-flaps",
                0.2,
                vec![
                    ContainerStep::Ready(false),
                    ContainerStep::Wait(secs(10)),
                    ContainerStep::Ready(true),
                    ContainerStep::Wait(secs(30)),
                    ContainerStep::Repeat,
                ],
                secs(20),
            ),
        ];
        for (name, share, steps, jitter) in faults {
            let w = weight(rate * share);
            if w > 0 {
                lifecycle = lifecycle.container_rule(
                    ContainerRule::new(name, steps)
                        .matching(regular())
                        .with_delay(secs(10), jitter)
                        .with_weight(w),
                );
            }
        }
        lifecycle = lifecycle.container_rule(
            ContainerRule::new("chaos-healthy", [])
                .matching(regular())
                .with_weight(weight(1.0 - rate)),
        );
        let pull_failures = weight(rate / 2.0);
        if pull_failures > 0 {
            lifecycle = lifecycle.pull_rule(
                PullRule::new(
                    "chaos-pull-fails",
                    [PullStep::PullError(
                        "rpc error: code = NotFound desc = failed to pull and unpack image: not found"
                            .into(),
                    )],
                )
                .with_weight(pull_failures),
            );
            // The realistic pull rule takes the rest of the weight.
            lifecycle.pulls[0].weight = std::num::NonZeroU32::new(weight(1.0 - rate / 2.0))
                .unwrap_or(std::num::NonZeroU32::MIN);
        }
        let pressured = weight(rate);
        if pressured > 0 {
            lifecycle = lifecycle
                .node_rule(
                    NodeRule::new(
                        "chaos-memory-pressure",
                        [
                            NodeStep::Condition(ConditionStep {
                                type_: "MemoryPressure".into(),
                                status: ConditionStatus::True,
                                reason: None,
                                message: None,
                            }),
                            NodeStep::Wait(secs(120)),
                            NodeStep::ClearCondition("MemoryPressure".into()),
                            NodeStep::Wait(secs(600)),
                            NodeStep::Repeat,
                        ],
                    )
                    .with_delay(secs(60), secs(240))
                    .with_weight(pressured),
                )
                .node_rule(NodeRule::new("chaos-healthy", []).with_weight(weight(1.0 - rate)));
        }
        lifecycle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_round_trip_through_yaml() {
        for name in PRESETS {
            let preset = Lifecycle::preset(name).unwrap();
            for rule in &preset.containers {
                rule.steps.check().unwrap();
            }
            let text = serde_saphyr::to_string(&preset).unwrap();
            assert_eq!(Lifecycle::from_yaml(&text, name).unwrap(), preset, "{name}");
        }
        assert!(Lifecycle::fast().is_empty());
        assert!(Lifecycle::preset("slow").is_none());
    }

    #[test]
    fn chaos_hits_about_its_rate() {
        let chaos = Lifecycle::chaos(0.2);
        let none = Default::default();
        let faulty = (0..2000)
            .filter(|i| {
                let pod = format!("p-{i}");
                let facts = crate::lifecycle::ContainerFacts {
                    namespace: "default",
                    pod: &pod,
                    labels: &none,
                    annotations: &none,
                    container: "app",
                    image: "nginx",
                    kind: ContainerKind::Regular,
                    attempt: 0,
                };
                chaos.container_plan(&facts).unwrap().rule != "chaos-healthy"
            })
            .count();
        assert!((300..=500).contains(&faulty), "{faulty} of 2000 faulty");
        assert_eq!(Lifecycle::chaos(0.0).nodes.len(), 0);
    }
}
