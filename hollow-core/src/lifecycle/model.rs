//! The lifecycle's types: rules that match a container, a pull, a deletion or a node,
//! and the ordered steps that then happen.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::duration;
use crate::pod::ContainerKind;

/// The smallest total wait a repeating step list may have, so a loop cannot spin.
pub const MIN_REPEAT_PERIOD: Duration = Duration::from_millis(100);

/// One rule: which objects it applies to, when its steps begin, how likely it is to be
/// chosen among the rules that match, and its steps.
///
/// `M` is what it matches ([`PodMatch`] or [`NodeMatch`]), `S` its kind of step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(deserialize = "M: Deserialize<'de> + Default, S: Deserialize<'de> + Step")
)]
pub struct Rule<M, S> {
    /// A name for logs and errors.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Which objects the rule applies to; empty matches everything.
    #[serde(default, rename = "match")]
    pub selector: M,
    /// How long after the triggering moment the steps begin.
    #[serde(default, with = "duration::text")]
    pub delay: Duration,
    /// A random extra delay, uniform in `[0, jitter]`, drawn from the lifecycle's seed.
    #[serde(default, with = "duration::text")]
    pub jitter: Duration,
    /// The rule's weight among the rules that match the same object (default 1).
    #[serde(default = "one")]
    pub weight: NonZeroU32,
    /// The steps, in order.
    #[serde(default)]
    pub steps: Steps<S>,
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

impl<M: Default, S> Rule<M, S> {
    /// A rule named `name` matching everything, with no delay, weight 1 and `steps`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hollow_core::lifecycle::{ContainerRule, ContainerStep};
    ///
    /// let rule = ContainerRule::new("finish", [ContainerStep::Exit { code: 0 }])
    ///     .with_delay(Duration::from_secs(5), Duration::from_secs(1))
    ///     .with_weight(3);
    /// assert_eq!(rule.weight.get(), 3);
    /// ```
    pub fn new(name: impl Into<String>, steps: impl IntoIterator<Item = S>) -> Self {
        Self {
            name: name.into(),
            selector: M::default(),
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            weight: one(),
            steps: Steps(steps.into_iter().collect()),
        }
    }

    /// Sets what the rule matches.
    #[must_use]
    pub fn matching(mut self, selector: M) -> Self {
        self.selector = selector;
        self
    }

    /// Sets the delay before the steps begin and its jitter.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration, jitter: Duration) -> Self {
        self.delay = delay;
        self.jitter = jitter;
        self
    }

    /// Sets the weight (0 is read as 1).
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = NonZeroU32::new(weight).unwrap_or(one());
        self
    }
}

/// Which containers (or pulls, or deletions) a rule applies to. Every field given must
/// match; an empty field matches anything.
///
/// ```
/// use hollow_core::lifecycle::PodMatch;
///
/// let batch = PodMatch::default().label("app", "batch").container("worker");
/// assert_eq!(batch.containers, ["worker"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMatch {
    /// The pod's namespace is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The pod carries each of these labels with this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The pod carries each of these annotations with this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The container's name is one of these (not checked for pulls: a pull knows its
    /// image, not its container).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    /// The image is one of these, as the pod spec names it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// The container is one of these kinds (`init`, `sidecar`, `regular`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<ContainerKind>,
}

impl PodMatch {
    /// Also requires the label `key=value`.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Also requires the annotation `key=value`.
    #[must_use]
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Also allows containers named `name` (the first call restricts to it).
    #[must_use]
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.containers.push(name.into());
        self
    }

    /// Also allows containers of `kind` (the first call restricts to it).
    #[must_use]
    pub fn kind(mut self, kind: ContainerKind) -> Self {
        self.kinds.push(kind);
        self
    }
}

/// Which nodes a node rule applies to. Every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeMatch {
    /// The node's name is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The node is configured with each of these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The node is configured with each of these annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl NodeMatch {
    /// Also requires the label `key=value`.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// What happens to a running container, step by step, from its start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ContainerStep {
    /// Nothing, for this long.
    Wait(#[serde(with = "duration::text")] Duration),
    /// The readiness probe now succeeds (`true`) or fails (`false`).
    Ready(bool),
    /// The container exits with this code (reason Completed for 0, Error otherwise).
    Exit {
        /// The exit code.
        code: i32,
    },
    /// The container is OOM-killed: exit code 137, reason OOMKilled.
    OomKill,
    /// The container is killed after a failed liveness probe (exit code 137, reason
    /// Error) and restarted as the pod's restart policy says.
    Restart,
    /// An Event about the pod is recorded, as the kubelet records its own.
    Event(EventStep),
    /// The pod's finalizers are removed.
    RemoveFinalizers,
    /// The pod is deleted (gracefully, as `kubectl delete` would).
    Delete,
    /// The steps start over from the first (the list must wait at least 100 ms).
    Repeat,
}

/// What an image pull does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum PullStep {
    /// The pull takes this long.
    Wait(#[serde(with = "duration::text")] Duration),
    /// The pull fails with this message (ErrImagePull, then ImagePullBackOff).
    PullError(String),
}

/// What stopping a container of a pod being deleted does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum DeletionStep {
    /// The container takes this long to exit (at most the grace period).
    Wait(#[serde(with = "duration::text")] Duration),
    /// It exits with this code (default 0; e.g. 143 for a SIGTERM it did not handle).
    Exit {
        /// The exit code.
        code: i32,
    },
    /// An Event about the pod is recorded.
    Event(EventStep),
    /// The pod's finalizers are removed.
    RemoveFinalizers,
}

/// What happens to a node, step by step, from its start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum NodeStep {
    /// Nothing, for this long.
    Wait(#[serde(with = "duration::text")] Duration),
    /// A node condition is set (or replaced, for the kubelet's own types).
    Condition(ConditionStep),
    /// A condition this lifecycle set is withdrawn: the kubelet's own value returns.
    ClearCondition(String),
    /// Heartbeats stop (the node vanishes: Lease and status writes stop) or resume.
    Heartbeat(Heartbeat),
    /// The steps start over from the first (the list must wait at least 100 ms).
    Repeat,
}

/// An Event to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventStep {
    /// `Normal` or `Warning`.
    #[serde(rename = "type", default)]
    pub type_: EventType,
    /// The reason, e.g. `Unhealthy`.
    pub reason: String,
    /// The message.
    #[serde(default)]
    pub message: String,
}

/// An Event's type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// Normal.
    #[default]
    Normal,
    /// Warning.
    Warning,
}

impl EventType {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A node condition to set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionStep {
    /// The condition type, e.g. `MemoryPressure`, `Ready`, `NetworkUnavailable`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Its status.
    pub status: ConditionStatus,
    /// Its reason (default: the kubelet's for the kubelet's types, else `Hollow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// True.
    True,
    /// False.
    False,
    /// Unknown.
    Unknown,
}

impl ConditionStatus {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// Heartbeats stop or resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Heartbeat {
    /// Lease renewals and status writes stop.
    Stop,
    /// They resume.
    Resume,
}

/// What a step means for the list it is in.
pub trait Step {
    /// How long the step waits.
    fn wait(&self) -> Duration;
    /// Whether no step may follow it (the container is gone, or the list loops).
    fn ends_list(&self) -> bool;
    /// Whether it loops the list.
    fn repeats(&self) -> bool;
}

impl Step for ContainerStep {
    fn wait(&self) -> Duration {
        match self {
            ContainerStep::Wait(d) => *d,
            _ => Duration::ZERO,
        }
    }
    fn ends_list(&self) -> bool {
        matches!(
            self,
            ContainerStep::Exit { .. }
                | ContainerStep::OomKill
                | ContainerStep::Restart
                | ContainerStep::Delete
                | ContainerStep::Repeat
        )
    }
    fn repeats(&self) -> bool {
        matches!(self, ContainerStep::Repeat)
    }
}

impl Step for PullStep {
    fn wait(&self) -> Duration {
        match self {
            PullStep::Wait(d) => *d,
            PullStep::PullError(_) => Duration::ZERO,
        }
    }
    fn ends_list(&self) -> bool {
        matches!(self, PullStep::PullError(_))
    }
    fn repeats(&self) -> bool {
        false
    }
}

impl Step for DeletionStep {
    fn wait(&self) -> Duration {
        match self {
            DeletionStep::Wait(d) => *d,
            _ => Duration::ZERO,
        }
    }
    fn ends_list(&self) -> bool {
        matches!(self, DeletionStep::Exit { .. })
    }
    fn repeats(&self) -> bool {
        false
    }
}

impl Step for NodeStep {
    fn wait(&self) -> Duration {
        match self {
            NodeStep::Wait(d) => *d,
            _ => Duration::ZERO,
        }
    }
    fn ends_list(&self) -> bool {
        matches!(self, NodeStep::Repeat)
    }
    fn repeats(&self) -> bool {
        matches!(self, NodeStep::Repeat)
    }
}

/// An ordered step list, checked as it is read: a step that ends the list (an exit, a
/// deletion, `repeat`) comes last, and a repeating list waits at least 100 ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Steps<S>(pub Vec<S>);

impl<S> Default for Steps<S> {
    fn default() -> Self {
        Steps(Vec::new())
    }
}

impl<S> std::ops::Deref for Steps<S> {
    type Target = [S];
    fn deref(&self) -> &[S] {
        &self.0
    }
}

impl<S: Step> Steps<S> {
    /// Checks the list's shape; the message names the offending step (1-based).
    pub fn check(&self) -> Result<(), String> {
        for (index, step) in self.0.iter().enumerate() {
            if step.ends_list() && index + 1 < self.0.len() {
                return Err(format!(
                    "step {} ends the list (an exit, a deletion or repeat) but step {} follows it",
                    index + 1,
                    index + 2
                ));
            }
        }
        if self.0.last().is_some_and(Step::repeats) {
            // Saturating: steps built in code may wait any `Duration`.
            let period = self
                .0
                .iter()
                .fold(Duration::ZERO, |sum, step| sum.saturating_add(step.wait()));
            if period < MIN_REPEAT_PERIOD {
                return Err(format!(
                    "a repeating step list must wait at least {MIN_REPEAT_PERIOD:?} in all, this one waits {period:?}"
                ));
            }
        }
        Ok(())
    }
}

impl<'de, S: Deserialize<'de> + Step> Deserialize<'de> for Steps<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepsVisitor<S>(PhantomData<S>);
        impl<'de, S: Deserialize<'de> + Step> Visitor<'de> for StepsVisitor<S> {
            type Value = Steps<S>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of steps")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Steps<S>, A::Error> {
                let mut steps = Steps(Vec::new());
                while let Some(step) = seq.next_element::<S>()? {
                    steps.0.push(step);
                    // Checked at each step, so the error points at the one that breaks it.
                    if steps.0.len() >= 2 && steps.0[steps.0.len() - 2].ends_list() {
                        return Err(de::Error::custom(steps.check().unwrap_err()));
                    }
                }
                steps.check().map_err(de::Error::custom)?;
                Ok(steps)
            }
        }
        deserializer.deserialize_seq(StepsVisitor(PhantomData))
    }
}

/// What a container does once started.
pub type ContainerRule = Rule<PodMatch, ContainerStep>;
/// What an image pull does.
pub type PullRule = Rule<PodMatch, PullStep>;
/// What stopping a container of a pod being deleted does.
pub type DeletionRule = Rule<PodMatch, DeletionStep>;
/// What happens to a node.
pub type NodeRule = Rule<NodeMatch, NodeStep>;
