//! [`FakeNodeStatus`]: a node of configurable capacity whose health a test switches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{NodeStatusProvider, NodeStatusReport, Pressure};
use crate::error::{Error, Result};

/// A [`NodeStatusProvider`] with 4 CPUs, 16 GiB, 110 pods and 100 GiB of ephemeral
/// storage by default, healthy, without pressure. Clones share state, so a test can
/// flip a node's health or pressure while it runs.
#[derive(Clone)]
pub struct FakeNodeStatus {
    inner: Arc<Mutex<State>>,
}

struct State {
    report: NodeStatusReport,
    healthy: bool,
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

impl Default for FakeNodeStatus {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                report: NodeStatusReport {
                    capacity: default_capacity(),
                    ..Default::default()
                },
                healthy: true,
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
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the capacity of one resource (e.g. `("nvidia.com/gpu", "8")`).
    pub fn set_capacity(&self, resource: &str, quantity: &str) {
        self.lock()
            .report
            .capacity
            .insert(resource.to_string(), Quantity(quantity.to_string()));
    }

    /// Sets the allocatable amount of one resource (by default allocatable is capacity).
    pub fn set_allocatable(&self, resource: &str, quantity: &str) {
        self.lock()
            .report
            .allocatable
            .insert(resource.to_string(), Quantity(quantity.to_string()));
    }

    /// Sets the pressure conditions.
    pub fn set_pressure(&self, pressure: Pressure) {
        self.lock().report.pressure = pressure;
    }

    /// Makes [`NodeStatusProvider::ping`] fail (`false`) or succeed (`true`).
    pub fn set_healthy(&self, healthy: bool) {
        self.lock().healthy = healthy;
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
        Ok(state.report.clone())
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
