//! The hollow proxy engine: feeds each node's [`Proxier`] the Service, EndpointSlice
//! and Node changes kube-proxy would see, and syncs it as kube-proxy does: at most once
//! per min-sync period after changes, and every sync period regardless.
//!
//! One engine serves many nodes over one set of watches.
//!
//! ```no_run
//! use std::sync::Arc;
//! use hollow_core::proxier::FakeProxier;
//! use hollow_core::proxy::HollowProxy;
//!
//! # async fn run(client: kube::Client) {
//! let proxier = FakeProxier::default();
//! let proxy = HollowProxy::builder()
//!     .node("hollow-0", Arc::new(proxier.clone()))
//!     .build()
//!     .start(client);
//! // ... create Services; proxier.rules() shows what kube-proxy would program ...
//! assert!(proxy.health("hollow-0").is_some());
//! proxy.shutdown().await;
//! # }
//! ```

mod watch;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::proxier::Proxier;

/// The taint the cluster autoscaler puts on nodes it is about to delete; kube-proxy
/// reports such nodes as not eligible for traffic.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// Configures a [`HollowProxy`].
#[must_use]
#[derive(Clone)]
pub struct HollowProxyBuilder {
    nodes: Vec<(String, Arc<dyn Proxier>)>,
    min_sync_period: Duration,
    sync_period: Duration,
}

impl std::fmt::Debug for HollowProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HollowProxyBuilder")
            .field(
                "nodes",
                &self.nodes.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("min_sync_period", &self.min_sync_period)
            .field("sync_period", &self.sync_period)
            .finish()
    }
}

impl HollowProxyBuilder {
    /// Serves `node` with `proxier`.
    pub fn node(mut self, node: impl Into<String>, proxier: Arc<dyn Proxier>) -> Self {
        self.nodes.push((node.into(), proxier));
        self
    }

    /// The shortest time between two syncs of a node (kube-proxy's default: 1 s).
    pub fn min_sync_period(mut self, period: Duration) -> Self {
        self.min_sync_period = period;
        self
    }

    /// How often a node syncs even without changes (kube-proxy's default: 30 s).
    pub fn sync_period(mut self, period: Duration) -> Self {
        self.sync_period = period.max(Duration::from_millis(1));
        self
    }

    /// The engine, not started.
    pub fn build(self) -> HollowProxy {
        HollowProxy { config: self }
    }
}

/// A configured proxy engine; [`HollowProxy::start`] runs it.
#[derive(Debug)]
pub struct HollowProxy {
    config: HollowProxyBuilder,
}

/// One served node's state.
pub(crate) struct NodeProxy {
    pub name: String,
    pub proxier: Arc<dyn Proxier>,
    dirty: Notify,
    /// When the oldest change not yet synced arrived.
    pending_since: Mutex<Option<Instant>>,
    last_sync: Mutex<Option<SystemTime>>,
    pub eligible: AtomicBool,
    syncs: AtomicU64,
    last_sync_seconds: Mutex<f64>,
}

impl NodeProxy {
    fn new(name: String, proxier: Arc<dyn Proxier>) -> Self {
        Self {
            name,
            proxier,
            dirty: Notify::new(),
            pending_since: Mutex::new(None),
            last_sync: Mutex::new(None),
            eligible: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            last_sync_seconds: Mutex::new(0.0),
        }
    }

    /// Records a change to sync.
    pub(crate) fn changed(&self) {
        self.pending_since.lock().get_or_insert_with(Instant::now);
        self.dirty.notify_one();
    }
}

/// kube-proxy's view of one node's health, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyHealth {
    /// When the rules were last synced.
    pub last_updated: Option<SystemTime>,
    /// Whether no change has waited longer than twice the sync period.
    pub synced: bool,
    /// Whether the node may take traffic: it exists, is not being deleted and is not
    /// tainted [`TO_BE_DELETED_TAINT`].
    pub node_eligible: bool,
}

impl ProxyHealth {
    /// What `/healthz` answers 200 for.
    pub fn is_healthy(&self) -> bool {
        self.synced && self.node_eligible
    }
}

impl HollowProxy {
    /// A builder with kube-proxy's default periods.
    pub fn builder() -> HollowProxyBuilder {
        HollowProxyBuilder {
            nodes: Vec::new(),
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
        }
    }

    /// Starts the watches and a sync loop per node.
    pub fn start(self, client: kube::Client) -> RunningProxy {
        let config = self.config;
        let nodes: HashMap<String, Arc<NodeProxy>> = config
            .nodes
            .into_iter()
            .map(|(name, proxier)| (name.clone(), Arc::new(NodeProxy::new(name, proxier))))
            .collect();
        let nodes = Arc::new(nodes);
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        watch::spawn_all(&mut tasks, client, nodes.clone(), cancel.clone());
        for node in nodes.values() {
            tasks.spawn(sync_loop(
                node.clone(),
                config.min_sync_period,
                config.sync_period,
                cancel.clone(),
            ));
        }
        RunningProxy {
            nodes,
            sync_period: config.sync_period,
            cancel,
            tasks,
        }
    }
}

async fn sync_loop(
    node: Arc<NodeProxy>,
    min_period: Duration,
    period: Duration,
    cancel: CancellationToken,
) {
    let mut last: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = node.dirty.notified() => {}
            _ = tokio::time::sleep(period) => {}
        }
        if let Some(wait) = last.map(|at| min_period.saturating_sub(at.elapsed()))
            && !wait.is_zero()
        {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Changes that arrive from here on wait for the next sync.
        *node.pending_since.lock() = None;
        let started = Instant::now();
        if let Err(error) = node.proxier.sync().await {
            tracing::warn!(node = %node.name, %error, "proxier sync failed");
            node.changed();
        } else {
            *node.last_sync.lock() = Some(SystemTime::now());
            node.syncs.fetch_add(1, Ordering::Relaxed);
        }
        *node.last_sync_seconds.lock() = started.elapsed().as_secs_f64();
        last = Some(Instant::now());
    }
}

/// A running proxy engine. Dropping it stops the watches and sync loops.
pub struct RunningProxy {
    nodes: Arc<HashMap<String, Arc<NodeProxy>>>,
    sync_period: Duration,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for RunningProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProxy")
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl RunningProxy {
    /// The names of the nodes served.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// One node's health, as kube-proxy's `/healthz` would report it.
    pub fn health(&self, node: &str) -> Option<ProxyHealth> {
        let node = self.nodes.get(node)?;
        let pending = *node.pending_since.lock();
        Some(ProxyHealth {
            last_updated: *node.last_sync.lock(),
            // Saturating: `hollow-proxy --sync-period` takes any number of seconds.
            synced: pending
                .is_none_or(|since| since.elapsed() < self.sync_period.saturating_mul(2)),
            node_eligible: node.eligible.load(Ordering::Relaxed),
        })
    }

    /// How many times a node's proxier synced.
    pub fn sync_count(&self, node: &str) -> Option<u64> {
        self.nodes
            .get(node)
            .map(|n| n.syncs.load(Ordering::Relaxed))
    }

    /// How long each node's last sync took, in seconds.
    pub fn last_sync_durations(&self) -> Vec<f64> {
        self.nodes
            .values()
            .map(|n| *n.last_sync_seconds.lock())
            .collect()
    }

    /// Stops the watches and sync loops.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxier::FakeProxier;

    #[tokio::test(start_paused = true)]
    async fn changes_are_batched_by_the_min_sync_period_and_resynced_by_the_period() {
        let proxier = FakeProxier::default();
        let node = Arc::new(NodeProxy::new("n".into(), Arc::new(proxier.clone())));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(sync_loop(
            node.clone(),
            Duration::from_secs(1),
            Duration::from_secs(30),
            cancel.clone(),
        ));
        // 100 changes over one second.
        for _ in 0..100 {
            node.changed();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let syncs = proxier.sync_count();
        assert!((1..=3).contains(&syncs), "{syncs} syncs for 100 changes");
        assert!(node.pending_since.lock().is_none());

        // Without changes, a full sync every sync period.
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(proxier.sync_count(), syncs + 1);
        cancel.cancel();
        task.await.unwrap();
    }

    #[test]
    fn any_sync_period_gives_a_health() {
        // `hollow-proxy --sync-period 18446744073709551615` panicked here on a change.
        let node = Arc::new(NodeProxy::new("n".into(), Arc::new(FakeProxier::default())));
        node.changed();
        let proxy = RunningProxy {
            nodes: Arc::new(HashMap::from([("n".to_string(), node)])),
            sync_period: Duration::from_secs(u64::MAX),
            cancel: CancellationToken::new(),
            tasks: JoinSet::new(),
        };
        assert!(proxy.health("n").unwrap().synced);
    }
}
