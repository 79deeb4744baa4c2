//! Lifecycle as data: what hollow containers, image pulls, deletions and nodes do, as
//! typed rules that load from YAML or JSON.
//!
//! A [`Lifecycle`] holds four lists of [`Rule`]s. When a container starts, an image is
//! pulled, a container of a deleted pod is stopped, or a node starts, the rules of that
//! list that match the object are found, one is chosen by weight, and its steps run
//! after its delay (plus jitter). Choices and jitter are drawn from the lifecycle's seed
//! and the object's identity, so a run is reproducible.
//!
//! [`FakeRuntime::with_lifecycle`](crate::runtime::FakeRuntime::with_lifecycle) plays the
//! container, pull and deletion rules; [`FakeNodeStatus`](crate::node_status::FakeNodeStatus)
//! plays the node rules; [`HollowNodeBuilder::lifecycle`](crate::node::HollowNodeBuilder::lifecycle)
//! hands one lifecycle to both. The engine turns what results into the statuses a
//! kubelet writes (CrashLoopBackOff, ImagePullBackOff, restart counts, phases).
//!
//! ```
//! use hollow_core::lifecycle::Lifecycle;
//!
//! let lifecycle = Lifecycle::from_yaml(r#"
//! seed: 7
//! containers:
//!   - name: batch-finishes
//!     match: { labels: { app: batch } }
//!     delay: 5s
//!     jitter: 2s
//!     steps: [ { exit: { code: 0 } } ]
//!   - name: web-flaps
//!     match: { labels: { app: web } }
//!     steps: [ { wait: 20s }, { ready: false }, { wait: 10s }, { ready: true }, repeat ]
//! pulls:
//!   - match: { images: [ "registry.invalid/app:1" ] }
//!     steps: [ { pullError: "manifest unknown" } ]
//! nodes:
//!   - match: { labels: { pool: flaky } }
//!     delay: 1m
//!     steps:
//!       - condition: { type: MemoryPressure, status: "True" }
//!       - wait: 2m
//!       - clearCondition: MemoryPressure
//! "#, "example.yaml")?;
//! assert_eq!(lifecycle.containers.len(), 2);
//!
//! let error = Lifecycle::from_yaml("containers: [ { stepz: [] } ]", "bad.yaml").unwrap_err();
//! assert!(error.to_string().starts_with("bad.yaml:1:"), "{error}");
//! # Ok::<(), hollow_core::lifecycle::LoadError>(())
//! ```

mod choose;
mod duration;
mod load;
mod model;
mod presets;
mod timeline;

use serde::{Deserialize, Serialize};

pub use choose::{ContainerFacts, NodeFacts, Plan};
pub(crate) use duration::EXPECTED_DURATION;
pub use duration::{MAX_DURATION, format_duration, parse_duration};
pub use load::LoadError;
pub(crate) use load::describe;
pub use model::{
    ConditionStatus, ConditionStep, ContainerRule, ContainerStep, DeletionRule, DeletionStep,
    EventStep, EventType, Heartbeat, MIN_REPEAT_PERIOD, NodeMatch, NodeRule, NodeStep, PodMatch,
    PullRule, PullStep, Rule, Step, Steps,
};
pub use presets::PRESETS;
pub use timeline::NodeFaults;

/// The version a lifecycle file may declare in `apiVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiVersion {
    /// `hollow.dev/v1alpha1`.
    #[serde(rename = "hollow.dev/v1alpha1")]
    V1Alpha1,
}

/// The kind a lifecycle file may declare in `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// `Lifecycle`.
    Lifecycle,
}

/// Rules for what containers, pulls, deletions and nodes do. The default has none:
/// containers run at once and until stopped, init containers exit 0 at once, pulls
/// succeed, nodes stay healthy (the `fast` preset).
///
/// ```
/// use std::time::Duration;
/// use hollow_core::lifecycle::{ContainerRule, ContainerStep, Lifecycle, PodMatch};
///
/// let lifecycle = Lifecycle::default().seed(42).container_rule(
///     ContainerRule::new("crash", [ContainerStep::Wait(Duration::from_secs(2)), ContainerStep::Exit { code: 1 }])
///         .matching(PodMatch::default().label("app", "crashy")),
/// );
/// assert_eq!(lifecycle.containers[0].name, "crash");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifecycle {
    /// `hollow.dev/v1alpha1` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<ApiVersion>,
    /// `Lifecycle` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// The seed every choice and jitter is drawn from.
    #[serde(default)]
    pub seed: u64,
    /// What containers do once started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerRule>,
    /// What image pulls do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pulls: Vec<PullRule>,
    /// What stopping the containers of a pod being deleted does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deletions: Vec<DeletionRule>,
    /// What happens to nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeRule>,
}

impl Lifecycle {
    /// Sets the seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Adds a container rule.
    #[must_use]
    pub fn container_rule(mut self, rule: ContainerRule) -> Self {
        self.containers.push(rule);
        self
    }

    /// Adds a pull rule.
    #[must_use]
    pub fn pull_rule(mut self, rule: PullRule) -> Self {
        self.pulls.push(rule);
        self
    }

    /// Adds a deletion rule.
    #[must_use]
    pub fn deletion_rule(mut self, rule: DeletionRule) -> Self {
        self.deletions.push(rule);
        self
    }

    /// Adds a node rule.
    #[must_use]
    pub fn node_rule(mut self, rule: NodeRule) -> Self {
        self.nodes.push(rule);
        self
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.pulls.is_empty()
            && self.deletions.is_empty()
            && self.nodes.is_empty()
    }
}
