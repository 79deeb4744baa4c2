//! A read-only view of a running node, for what serves it from outside the engine
//! (the kubelet API): its name, addresses, kubelet port, pods and providers.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::NodeShared;
use crate::cadvisor::{Cadvisor, MachineInfo};
use crate::runtime::RuntimeService;

/// What a running node shows of itself: cheap to clone (one reference count), and
/// read-only, so whoever holds one can serve the node but cannot steer it.
///
/// Taken from [`RunningNode::view`](super::RunningNode::view); a view outlives its node
/// harmlessly ([`NodeView::is_running`] then says `false`).
///
/// ```no_run
/// # async fn run(client: kube::Client) -> Result<(), hollow_core::node::Error> {
/// use hollow_core::node::HollowNode;
///
/// let node = HollowNode::builder("hollow-0").build()?.start(client).await?;
/// let view = node.view();
/// assert_eq!(view.name(), "hollow-0");
/// assert!(view.pods().is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NodeView {
    node: Arc<NodeShared>,
}

impl std::fmt::Debug for NodeView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeView")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl NodeView {
    pub(super) fn new(node: Arc<NodeShared>) -> Self {
        Self { node }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.node.config.name
    }

    /// The node's addresses, as published in its status.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.node.config.addresses
    }

    /// The address its kubelet API is reached at: the first of its addresses, or
    /// `127.0.0.1` for a node that has none.
    pub fn kubelet_address(&self) -> IpAddr {
        self.addresses()
            .first()
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The kubelet port published in the node's `daemonEndpoints`.
    pub fn kubelet_port(&self) -> u16 {
        self.node.config.kubelet_port
    }

    /// The latest object of every pod the node runs.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.node.pods()
    }

    /// The pod `namespace/name` the node runs, if it runs one of that name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.node.pods().into_iter().find(|pod| {
            pod.metadata.namespace.as_deref() == Some(namespace)
                && pod.metadata.name.as_deref() == Some(name)
        })
    }

    /// The node's container runtime.
    pub fn runtime(&self) -> &Arc<dyn RuntimeService> {
        &self.node.config.runtime
    }

    /// The node's cAdvisor.
    pub fn cadvisor(&self) -> &Arc<dyn Cadvisor> {
        &self.node.config.cadvisor
    }

    /// The machine the node reports, read from its cAdvisor when it started.
    pub fn machine_info(&self) -> &MachineInfo {
        &self.node.machine
    }

    /// When the node registered (its kubelet's start, for uptime and start times).
    pub fn started_at(&self) -> std::time::Instant {
        self.node.registered_at.into_std()
    }

    /// Whether the node still runs (it has not been shut down).
    pub fn is_running(&self) -> bool {
        !self.node.cancel.is_cancelled()
    }
}
