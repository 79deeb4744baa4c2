//! The node's heartbeats: its Lease, renewed every 10 s, and its status, computed every
//! 10 s and written on change or every 5 minutes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use rand::Rng;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;

use super::config::NodeConfig;
use super::node_status::{StatusInputs, Written, compute, ready_digest, stamp};
use super::shared::NodeShared;

/// The namespace kubelets keep their Leases in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The jitter the kubelet adds to its lease renew interval.
const RENEW_JITTER: f64 = 0.04;

/// A node's heartbeat state, kept in its [`NodeShared`] for the node's life, so it is
/// small (a test bounds it): the resource version of its Lease, a digest of the written
/// status, when each beat is due, and API handles made when a request is made.
#[derive(Default)]
pub(crate) struct State {
    node_uid: Box<str>,
    /// The resource version of the Lease this node last wrote: the next renewal
    /// replaces that version with a Lease built afresh (about 0.8 KiB a node less than
    /// keeping the object).
    lease_version: Option<Box<str>>,
    /// Whether this node's Lease has been seen (created or renewed) by this process.
    lease_seen: bool,
    written: Option<Written>,
    /// When the status is written even if unchanged; `None` until a first write.
    report_due: Option<Instant>,
    force_write: bool,
    /// When the status is next computed and the Lease next renewed; `None`: at once.
    next_status: Option<Instant>,
    next_lease: Option<Instant>,
}

/// A node's place on a [`Heartbeats`] driver.
#[derive(Default)]
pub(crate) struct Slot {
    state: tokio::sync::Mutex<State>,
    /// Bumped when a beat is asked for at once: beats scheduled before are void.
    generation: AtomicU64,
    /// Set when a beat is asked for at once: it renews and writes whatever is due.
    resumed: AtomicBool,
    /// The status of the Node's Ready condition as the API server last showed it (a
    /// digest; 0 until seen), from the process's Node watch: when someone else changed
    /// it (the node lifecycle controller's `Unknown` after a freeze or late renewals),
    /// the next status period writes the node's own again, as the kubelet, which
    /// compares with the Node it reads, does.
    server_ready: AtomicU64,
    driver: OnceLock<Heartbeats>,
}

/// A beat scheduled: the node, when, and the generation of its slot it belongs to.
type Due = (Arc<NodeShared>, Instant, u64);

/// Drives the heartbeats of many nodes from one task: a timer queue of nodes, each
/// beat a short task of its own. A task per node would hold its future and its timer
/// for the node's whole life (about 0.7 KiB a node).
#[derive(Clone)]
pub(crate) struct Heartbeats {
    due: mpsc::UnboundedSender<Due>,
}

impl Heartbeats {
    /// Starts a driver; it ends once every handle to it, and every node on it, is gone.
    pub(crate) fn start() -> Self {
        let (due, queue) = mpsc::unbounded_channel();
        tokio::spawn(drive(queue));
        Self { due }
    }

    /// Starts the heartbeats of `shared`, whose Node has `node_uid`. `registered` is the
    /// status the Node was created with, if it was: it counts as written, so it is not
    /// written again at once.
    pub(crate) fn add(
        &self,
        shared: &Arc<NodeShared>,
        node_uid: String,
        registered: Option<Written>,
    ) {
        let slot = &shared.heartbeat;
        if let Ok(mut state) = slot.state.try_lock() {
            state.node_uid = node_uid.into();
            state.report_due = registered
                .as_ref()
                .map(|_| report_due(Instant::now(), shared.config.timing.status_report, true));
            state.written = registered;
        }
        if slot.driver.set(self.clone()).is_ok() {
            let generation = slot.generation.load(Ordering::Relaxed);
            let _ = self.due.send((shared.clone(), Instant::now(), generation));
        }
    }
}

/// Records the Node's conditions as the API server holds them now (a Node watch event):
/// a Ready condition other than the one the node wrote is written again within a
/// status period.
pub(crate) fn observe_server_conditions(shared: &NodeShared, conditions: &[NodeCondition]) {
    let ready = ready_digest(conditions);
    if ready != 0 {
        shared
            .heartbeat
            .server_ready
            .store(ready, Ordering::Relaxed);
    }
}

/// Asks for a beat of `shared` at once (a resume, or changed fault annotations): the
/// Lease is renewed and the status written.
pub(crate) fn beat_now(shared: &Arc<NodeShared>) {
    let slot = &shared.heartbeat;
    slot.resumed.store(true, Ordering::Relaxed);
    let generation = slot.generation.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(driver) = slot.driver.get() {
        let _ = driver
            .due
            .send((shared.clone(), Instant::now(), generation));
    }
}

async fn drive(mut due: mpsc::UnboundedReceiver<Due>) {
    let mut queue: DelayQueue<(Arc<NodeShared>, u64)> = DelayQueue::new();
    loop {
        tokio::select! {
            next = due.recv() => match next {
                Some((node, at, generation)) => {
                    queue.insert_at((node, generation), at);
                }
                None => return,
            },
            Some(expired) = queue.next(), if !queue.is_empty() => {
                let (node, generation) = expired.into_inner();
                let slot = &node.heartbeat;
                if node.cancel.is_cancelled() || slot.generation.load(Ordering::Relaxed) != generation {
                    continue;
                }
                tokio::spawn(async move {
                    let next = tokio::select! {
                        _ = node.cancel.cancelled() => return,
                        next = beat(&node) => next,
                    };
                    if let Some(driver) = node.heartbeat.driver.get() {
                        let _ = driver.due.send((node.clone(), next, generation));
                    }
                });
            }
        }
    }
}

/// When a node that wrote its status `at` writes it again unchanged. The first period
/// after start is drawn from half to all of `report`: nodes started together (a
/// thousand in a few seconds) would otherwise rewrite their status together every
/// 5 minutes, a burst the API server answers late, and Leases renewed in it miss.
/// Later periods are whole; each node keeps the phase it drew.
fn report_due(at: Instant, report: Duration, first: bool) -> Instant {
    let share = if first {
        rand::rng().random_range(0.5..=1.0)
    } else {
        1.0
    };
    at + report.mul_f64(share)
}

/// One beat: computes the status and writes it if needed, renews the Lease if due.
/// Returns when the next beat is due.
async fn beat(shared: &NodeShared) -> Instant {
    let mut state = shared.heartbeat.state.lock().await;
    let timing = shared.config.timing;
    let now = Instant::now();
    let mut next_status = state.next_status.unwrap_or(now);
    let mut next_lease = state.next_lease.unwrap_or(now);
    if shared.heartbeat.resumed.swap(false, Ordering::Relaxed) {
        state.force_write = true;
        (next_status, next_lease) = (now, now);
    }
    (next_status, next_lease) = if shared.heartbeats_paused.load(Ordering::Relaxed) {
        (now + timing.status_update, now + timing.lease_renew)
    } else {
        state.due_work(shared, now, next_status, next_lease).await
    };
    state.next_status = Some(next_status);
    state.next_lease = Some(next_lease);
    next_status.min(next_lease)
}

/// What the node has to report now.
pub(crate) enum Observed {
    /// Its status, not yet stamped with times.
    Status(Box<NodeStatus>),
    /// Its heartbeats are stopped (a fault): nothing is written.
    Stopped,
    /// The status provider failed (logged).
    Failed,
}

/// Asks the providers for the node's status, with the Node's fault annotations applied.
pub(crate) async fn observe(shared: &NodeShared) -> Observed {
    let config = &shared.config;
    let health = config
        .node_status
        .ping()
        .await
        .map_err(|error| error.to_string());
    let mut report = match config.node_status.status().await {
        Ok(report) => report,
        Err(error) => {
            tracing::warn!(node = %config.name, %error, "node status provider failed");
            return Observed::Failed;
        }
    };
    if report.images.is_empty() {
        report.images = super::node_status::pulled_images(&shared.images.lock());
    }
    let annotated = shared.annotated.lock().clone();
    report.conditions.extend(annotated.conditions);
    let stopped = report.heartbeats_stopped || annotated.heartbeats_stopped;
    if shared.heartbeats_stopped.swap(stopped, Ordering::Relaxed) != stopped {
        tracing::info!(node = %config.name, stopped, "heartbeats switched by the node's faults");
    }
    if stopped {
        return Observed::Stopped;
    }
    let addresses = node_addresses(config);
    Observed::Status(Box::new(compute(&StatusInputs {
        report: &report,
        configured_addresses: &addresses,
        capacity_overrides: &config.capacity,
        allocatable_overrides: &config.allocatable,
        machine: &shared.machine,
        runtime_version: &shared.runtime_version,
        kubelet_version: config.kubelet.reported(),
        reports_user_namespace: config
            .kubelet
            .has(crate::version::Behaviour::RunningInUserNamespaceField),
        kubelet_port: config.kubelet_port,
        health,
    })))
}

/// The node's addresses, as the kubelet's NodeAddress setter
/// (pkg/kubelet/nodestatus/setters.go, with `--node-ip`) lists them: the InternalIP
/// addresses, then the hostname, which is the node name unless overridden (its
/// `--hostname-override`).
fn node_addresses(config: &NodeConfig) -> Vec<NodeAddress> {
    config
        .addresses
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        })
        .chain(std::iter::once(NodeAddress {
            type_: "Hostname".into(),
            address: config.hostname.as_deref().unwrap_or(&config.name).into(),
        }))
        .collect()
}

/// Whether a status says the node is Ready.
/// The kubelet's event for a node condition now at `status`
/// (pkg/kubelet/nodestatus/setters.go, `recordEventFunc` of each condition setter).
fn condition_event(type_: &str, status: &str) -> Option<&'static str> {
    let on = status == "True";
    Some(match type_ {
        "MemoryPressure" if on => "NodeHasInsufficientMemory",
        "MemoryPressure" => "NodeHasSufficientMemory",
        "DiskPressure" if on => "NodeHasDiskPressure",
        "DiskPressure" => "NodeHasNoDiskPressure",
        "PIDPressure" if on => "NodeHasInsufficientPID",
        "PIDPressure" => "NodeHasSufficientPID",
        "Ready" if on => "NodeReady",
        "Ready" => "NodeNotReady",
        _ => return None,
    })
}

/// The node's Events for a status just written over `before`: at the first write,
/// `Starting` (pkg/kubelet/kubelet.go) and `NodeAllocatableEnforced`
/// (pkg/kubelet/cm/node_container_manager_linux.go); for every condition that is new or
/// changed, its event ("Node n status is now: NodeReady", `recordNodeStatusEvent` in
/// pkg/kubelet/kubelet_node_status.go), Ready's last.
pub(crate) fn record_node_events(
    shared: &NodeShared,
    status: &NodeStatus,
    before: Option<&Written>,
) {
    use super::events::Kind;
    let name = &shared.config.name;
    if before.is_none() {
        shared.node_event(Kind::Normal, "Starting", "Starting kubelet.".into());
    }
    let changed: Vec<&'static str> = status
        .conditions
        .iter()
        .flatten()
        .filter(|c| before.is_none_or(|old| !old.had_condition(&c.type_, &c.status)))
        .filter_map(|c| condition_event(&c.type_, &c.status))
        .collect();
    let (readiness, pressure): (Vec<&str>, Vec<&str>) = changed
        .into_iter()
        .partition(|reason| reason.contains("Ready"));
    for reason in pressure {
        shared.node_event(
            Kind::Normal,
            reason,
            format!("Node {name} status is now: {reason}"),
        );
    }
    if before.is_none() {
        shared.node_event(
            Kind::Normal,
            "NodeAllocatableEnforced",
            "Updated Node Allocatable limit across pods".into(),
        );
    }
    for reason in readiness {
        shared.node_event(
            Kind::Normal,
            reason,
            format!("Node {name} status is now: {reason}"),
        );
    }
}

pub(crate) fn is_ready(status: &NodeStatus) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

impl State {
    /// Does what is due at `now`; returns when status and Lease are next due.
    async fn due_work(
        &mut self,
        shared: &NodeShared,
        now: Instant,
        mut next_status: Instant,
        mut next_lease: Instant,
    ) -> (Instant, Instant) {
        let timing = shared.config.timing;
        if now >= next_status {
            let was_stopped = shared.heartbeats_stopped.load(Ordering::Relaxed);
            self.update_status(shared).await;
            next_status = now + timing.status_update;
            if shared.heartbeats_stopped.load(Ordering::Relaxed) {
                // A vanished node renews nothing; the provider is asked again next period.
                return (next_status, next_status);
            }
            if was_stopped {
                next_lease = now;
                // Every pod worker rewrites what changed while the node was away.
                shared.route_event(Err(RecvError::Lagged(0)));
            }
        }
        // The Lease says the kubelet is alive, not that the node is healthy: a kubelet
        // whose runtime is down keeps renewing it and reports Ready=False instead.
        if now >= next_lease {
            next_lease = if self.renew_lease(shared).await {
                let jitter = rand::rng().random_range(0.0..RENEW_JITTER);
                now + timing.lease_renew.mul_f64(1.0 + jitter)
            } else {
                self.force_write = true;
                now + Duration::from_secs(1)
            };
        }
        (next_status, next_lease)
    }

    /// Computes the status and writes it if needed.
    async fn update_status(&mut self, shared: &NodeShared) {
        let config = &shared.config;
        let mut status = match observe(shared).await {
            Observed::Status(status) => *status,
            Observed::Stopped => {
                self.force_write = true;
                return;
            }
            Observed::Failed => return,
        };
        let due = self.report_due.is_none_or(|at| Instant::now() >= at);
        let changed = self.written.as_ref().is_none_or(|old| old.differs(&status));
        let server_ready = shared.heartbeat.server_ready.load(Ordering::Relaxed);
        let overwritten = server_ready != 0
            && self
                .written
                .as_ref()
                .is_some_and(|old| old.ready_differs(server_ready));
        if overwritten {
            tracing::info!(node = %config.name, "the API server holds another Ready condition than the node wrote: writing it again");
        }
        if !(changed || due || self.force_write || overwritten) {
            return;
        }
        stamp(&mut status, self.written.as_ref(), Timestamp::now());
        // Serialized from the status itself: a JSON tree of it would be several times
        // its size, and thousands of writes wait for the API server when it is slow.
        #[derive(Debug, serde::Serialize)]
        struct StatusPatch<'a> {
            status: &'a NodeStatus,
        }
        let patch = StatusPatch { status: &status };
        let nodes: Api<Node> = Api::all(shared.client.clone());
        match nodes
            .patch_status(
                &config.name,
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Ok(node) => {
                let ready = is_ready(&status);
                let first = self.written.is_none();
                record_node_events(shared, &status, self.written.as_ref());
                self.written = Some(Written::of(&status));
                self.report_due = Some(report_due(
                    Instant::now(),
                    config.timing.status_report,
                    first,
                ));
                self.force_write = false;
                shared.liveness.set_ready(ready);
                if let Some(cidr) = node.spec.and_then(|spec| spec.pod_cidr) {
                    shared.learn_pod_cidr(&cidr).await;
                }
            }
            Err(error) => {
                tracing::warn!(node = %config.name, %error, "node status update failed");
                self.force_write = true;
            }
        }
    }

    /// Creates or renews the Lease; returns whether it worked. A renewal replaces the
    /// version this node last wrote; without one (first run, or after a conflict) the
    /// Lease is read again, or created.
    async fn renew_lease(&mut self, shared: &NodeShared) -> bool {
        let name = &shared.config.name;
        let now = MicroTime(Timestamp::now());
        // In the lean profile a node's first renewal creates its Lease without asking
        // first (one request fewer per node while thousands register); one that exists
        // answers 409, and is then read and renewed. The kubelet reads it first
        // (`ensureLease` in k8s.io/component-helpers/apimachinery/lease/controller.go).
        let mut assume_missing = self.lease_version.is_none()
            && !self.lease_seen
            && shared.config.traffic == super::TrafficProfile::Lean;
        let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
        for _ in 0..3 {
            let current = match self.lease_version.take() {
                Some(version) => {
                    let mut lease = self.new_lease(shared, now.clone());
                    lease.metadata.resource_version = Some(version.into());
                    Ok(Some(lease))
                }
                None if assume_missing => Ok(None),
                None => leases.get_opt(name).await,
            };
            assume_missing = false;
            let result = match current {
                Ok(Some(mut lease)) => {
                    let spec = lease.spec.get_or_insert_with(Default::default);
                    spec.renew_time = Some(now.clone());
                    spec.holder_identity = Some(name.clone());
                    leases.replace(name, &PostParams::default(), &lease).await
                }
                Ok(None) => {
                    leases
                        .create(&PostParams::default(), &self.new_lease(shared, now.clone()))
                        .await
                }
                Err(error) => Err(error),
            };
            match result {
                Ok(lease) => {
                    self.lease_version = lease.metadata.resource_version.map(Into::into);
                    self.lease_seen = true;
                    shared.liveness.lease_renewed();
                    return true;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => {
                    tracing::warn!(node = %name, %error, "lease renewal failed");
                    return false;
                }
            }
        }
        false
    }

    fn new_lease(&self, shared: &NodeShared, now: MicroTime) -> Lease {
        let name = &shared.config.name;
        Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(LEASE_NAMESPACE.into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.clone(),
                    uid: self.node_uid.to_string(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: i32::try_from(
                    shared.config.timing.lease_duration.as_secs(),
                )
                .ok(),
                renew_time: Some(now),
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ips_come_first_then_the_hostname() {
        let listed = |node: crate::node::HollowNodeBuilder| {
            node_addresses(&node.build().unwrap().config)
                .into_iter()
                .map(|a| format!("{}={}", a.type_, a.address))
                .collect::<Vec<_>>()
        };
        let node = crate::node::HollowNode::builder("n");
        assert_eq!(
            listed(node.clone().address("10.0.0.1".parse().unwrap())),
            ["InternalIP=10.0.0.1", "Hostname=n"]
        );
        assert_eq!(
            listed(
                node.address("10.0.0.1".parse().unwrap())
                    .hostname("10.0.0.1")
            ),
            ["InternalIP=10.0.0.1", "Hostname=10.0.0.1"]
        );
    }

    #[test]
    fn the_first_report_period_is_spread_and_later_ones_are_whole() {
        let at = Instant::now();
        let report = Duration::from_secs(300);
        let firsts: Vec<Duration> = (0..200)
            .map(|_| report_due(at, report, true) - at)
            .collect();
        assert!(firsts.iter().all(|d| (report / 2..=report).contains(d)));
        let (min, max) = (firsts.iter().min().unwrap(), firsts.iter().max().unwrap());
        assert!(*max - *min > report / 4, "spread {min:?}..{max:?}");
        assert_eq!(report_due(at, report, false), at + report);
    }
}
