//! What a node reports about itself: capacity, pressure, addresses, images, health.
//!
//! The engine turns a [`NodeStatusReport`] into the Node status a kubelet writes
//! (conditions with the kubelet's reasons and messages, Ready last).
//!
//! ```
//! use hollow_core::node_status::{FakeNodeStatus, NodeStatusProvider, Pressure};
//!
//! # tokio_test::block_on(async {
//! let fake = FakeNodeStatus::default();
//! fake.set_pressure(Pressure { memory: true, ..Default::default() });
//! let report = fake.status().await?;
//! assert!(report.pressure.memory);
//! assert_eq!(report.capacity["pods"].0, "110");
//! fake.set_healthy(false);
//! assert!(fake.ping().await.is_err());
//! # Ok::<(), hollow_core::Error>(())
//! # }).unwrap();
//! ```

mod fake;

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerImage, NodeAddress};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::error::Result;

pub use fake::FakeNodeStatus;
#[cfg(test)]
pub(crate) use fake::default_capacity;

/// Resource pressure, as the kubelet's eviction manager sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// MemoryPressure.
    pub memory: bool,
    /// DiskPressure.
    pub disk: bool,
    /// PIDPressure.
    pub pid: bool,
}

/// A node's view of itself at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatusReport {
    /// Capacity (cpu, memory, pods, ephemeral-storage, extended resources).
    pub capacity: BTreeMap<String, Quantity>,
    /// Allocatable; when empty, the capacity.
    pub allocatable: BTreeMap<String, Quantity>,
    /// Pressure conditions.
    pub pressure: Pressure,
    /// Addresses; when empty, the node's configured ones.
    pub addresses: Vec<NodeAddress>,
    /// Images present on the node.
    pub images: Vec<ContainerImage>,
    /// Conditions to report besides (or instead of, for the same type) the kubelet's
    /// own; a reason or message left out takes the kubelet's wording.
    pub conditions: Vec<ConditionOverride>,
    /// Whether the node has vanished: no Lease renewals, no status writes (the node
    /// lifecycle controller then marks it Unknown), until a report says otherwise.
    pub heartbeats_stopped: bool,
}

/// A node condition a provider sets.
pub type ConditionOverride = crate::lifecycle::ConditionStep;

/// The source of a node's status. Object safe: store it as `Arc<dyn NodeStatusProvider>`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait NodeStatusProvider: Send + Sync + 'static {
    /// The current report; called every node-status update period (10 s).
    async fn status(&self) -> Result<NodeStatusReport>;

    /// A health check: an error turns the node's Ready condition False (reason
    /// KubeletNotReady, the error as message), as a kubelet whose runtime is down
    /// reports. The Lease keeps being renewed: the kubelet itself is alive. (To make a
    /// node vanish instead, pause its heartbeats.)
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
