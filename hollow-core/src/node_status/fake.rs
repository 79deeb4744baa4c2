//! [`FakeNodeStatus`]: a node of configurable capacity whose health a test switches.

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{ConditionOverride, NodeStatusProvider, NodeStatusReport, Pressure};
use crate::error::{Error, Result};
use crate::lifecycle::{Lifecycle, NodeFacts, NodeFaults, NodeStep, Plan};

/// A [`NodeStatusProvider`] with 4 CPUs, 16 GiB, 110 pods and 100 GiB of ephemeral
/// storage by default, healthy, without pressure. Clones share state, so a test can
/// flip a node's health or pressure while it runs.
///
/// Node faults come from code ([`FakeNodeStatus::set_condition`],
/// [`FakeNodeStatus::set_heartbeats_stopped`]) or from a [`Lifecycle`]'s node rules
/// ([`FakeNodeStatus::with_lifecycle`]); code wins.
#[derive(Clone)]
pub struct FakeNodeStatus {
    inner: Arc<Mutex<State>>,
}

struct State {
    /// Shared by every fake until one is changed: thousands of nodes of the default
    /// size keep one report, not a capacity map each.
    report: Arc<NodeStatusReport>,
    healthy: bool,
    /// The chosen node rule: its name, when its steps begin, and the steps.
    plan: Option<(String, std::time::Duration, Vec<NodeStep>)>,
    /// When the plan's clock started (the first status call: the node's start).
    started: Option<std::time::Instant>,
    conditions: BTreeMap<String, ConditionOverride>,
    heartbeats_stopped: Option<bool>,
    status_calls: usize,
    ping_calls: usize,
}

/// The default capacity of a fake node.
pub(crate) fn default_capacity() -> BTreeMap<String, Quantity> {
    [
        ("cpu", "4"),
        ("memory", "16Gi"),
        ("pods", "110"),
        ("ephemeral-storage", "100Gi"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), Quantity(value.to_string())))
    .collect()
}

/// The report of a fake nobody changed.
static DEFAULT_REPORT: LazyLock<Arc<NodeStatusReport>> = LazyLock::new(|| {
    Arc::new(NodeStatusReport {
        capacity: default_capacity(),
        ..Default::default()
    })
});

impl Default for FakeNodeStatus {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                report: DEFAULT_REPORT.clone(),
                healthy: true,
                plan: None,
                started: None,
                conditions: BTreeMap::new(),
                heartbeats_stopped: None,
                status_calls: 0,
                ping_calls: 0,
            })),
        }
    }
}

impl std::fmt::Debug for FakeNodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("FakeNodeStatus")
            .field("report", &state.report)
            .field("healthy", &state.healthy)
            .finish()
    }
}

impl FakeNodeStatus {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock()
    }

    /// Sets the capacity of one resource (e.g. `("nvidia.com/gpu", "8")`).
    pub fn set_capacity(&self, resource: &str, quantity: &str) {
        Arc::make_mut(&mut self.lock().report)
            .capacity
            .insert(resource.to_string(), Quantity(quantity.to_string()));
    }

    /// Sets the allocatable amount of one resource (by default allocatable is capacity).
    pub fn set_allocatable(&self, resource: &str, quantity: &str) {
        Arc::make_mut(&mut self.lock().report)
            .allocatable
            .insert(resource.to_string(), Quantity(quantity.to_string()));
    }

    /// Sets the pressure conditions.
    pub fn set_pressure(&self, pressure: Pressure) {
        Arc::make_mut(&mut self.lock().report).pressure = pressure;
    }

    /// Makes [`NodeStatusProvider::ping`] fail (`false`) or succeed (`true`).
    pub fn set_healthy(&self, healthy: bool) {
        self.lock().healthy = healthy;
    }

    /// Plays the node rule of `lifecycle` that `node` matches (if any), its clock
    /// starting at the first status report.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use hollow_core::lifecycle::{Lifecycle, NodeFacts};
    /// use hollow_core::node_status::FakeNodeStatus;
    ///
    /// let labels = BTreeMap::from([("pool".to_string(), "flaky".to_string())]);
    /// let node = NodeFacts { name: "n-0", labels: &labels, annotations: &BTreeMap::new() };
    /// let fake = FakeNodeStatus::default().with_lifecycle(&Lifecycle::chaos(1.0), &node);
    /// # drop(fake);
    /// ```
    #[must_use]
    pub fn with_lifecycle(self, lifecycle: &Lifecycle, node: &NodeFacts<'_>) -> Self {
        let plan = lifecycle
            .node_plan(node)
            .map(|plan| (plan.rule.to_string(), plan.delay, plan.steps.to_vec()));
        {
            let mut state = self.lock();
            state.plan = plan;
            state.started = None;
        }
        self
    }

    /// Sets a node condition (replacing the kubelet's own of that type), e.g.
    /// `NetworkUnavailable`, or `Ready` False with a reason of your own.
    pub fn set_condition(&self, condition: ConditionOverride) {
        self.lock()
            .conditions
            .insert(condition.type_.clone(), condition);
    }

    /// Withdraws a condition set with [`FakeNodeStatus::set_condition`].
    pub fn clear_condition(&self, type_: &str) {
        self.lock().conditions.remove(type_);
    }

    /// Stops (`true`) or resumes heartbeats: a stopped node renews no Lease and
    /// writes no status, so the node lifecycle controller marks it Unknown.
    pub fn set_heartbeats_stopped(&self, stopped: bool) {
        self.lock().heartbeats_stopped = Some(stopped);
    }

    /// How many times `status` and `ping` were called.
    pub fn calls(&self) -> (usize, usize) {
        let state = self.lock();
        (state.status_calls, state.ping_calls)
    }
}

#[async_trait]
impl NodeStatusProvider for FakeNodeStatus {
    async fn status(&self) -> Result<NodeStatusReport> {
        let mut state = self.lock();
        state.status_calls += 1;
        let started = *state.started.get_or_insert_with(std::time::Instant::now);
        let faults = match &state.plan {
            Some((rule, delay, steps)) => NodeFaults::at(
                &Plan {
                    rule,
                    delay: *delay,
                    steps,
                },
                started.elapsed(),
            ),
            None => NodeFaults::default(),
        };
        let mut conditions = faults.conditions;
        conditions.extend(state.conditions.clone());
        let mut report = NodeStatusReport::clone(&state.report);
        report.conditions = conditions.into_values().collect();
        report.heartbeats_stopped = state
            .heartbeats_stopped
            .unwrap_or(faults.heartbeats_stopped);
        Ok(report)
    }

    async fn ping(&self) -> Result<()> {
        let mut state = self.lock();
        state.ping_calls += 1;
        if state.healthy {
            Ok(())
        } else {
            Err(Error::Injected("the node is set unhealthy".into()))
        }
    }
}
