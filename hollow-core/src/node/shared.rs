//! The state one node's tasks share: its configuration, client, runtime, pod workers.

use parking_lot::Mutex;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use tokio::sync::{Notify, broadcast};

pub(crate) use super::inbox::PodInbox;
use super::pod_uid::PodUid;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::NodeConfig;
use super::faults::AnnotatedFaults;
pub(crate) use super::slim::slimmed;
use super::worker::PodWorker;
use crate::cadvisor::MachineInfo;
use crate::runtime::ContainerEvent;

/// How long a node waits for the controller manager to allocate its pod CIDR before it
/// derives one from its name.
const POD_CIDR_PATIENCE: Duration = Duration::from_secs(10);

/// What the heartbeat last achieved, for [`RunningNode::wait_ready`](super::RunningNode::wait_ready)
/// and its kin: a flag, a time and one `Notify` (a `watch` channel for each would cost
/// a node about 0.7 KiB).
#[derive(Default)]
pub(crate) struct Liveness {
    ready: AtomicBool,
    lease_renewed: Mutex<Option<std::time::Instant>>,
    changed: Notify,
}

impl Liveness {
    /// Records whether the last status written said Ready.
    pub(crate) fn set_ready(&self, ready: bool) {
        if self.ready.swap(ready, Ordering::Relaxed) != ready {
            self.changed.notify_waiters();
        }
    }

    /// Records a Lease renewal, now.
    pub(crate) fn lease_renewed(&self) {
        let first = self
            .lease_renewed
            .lock()
            .replace(std::time::Instant::now())
            .is_none();
        if first {
            self.changed.notify_waiters();
        }
    }

    /// Whether the last status written said Ready.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// When the Lease was last created or renewed.
    pub(crate) fn last_lease_renewal(&self) -> Option<std::time::Instant> {
        *self.lease_renewed.lock()
    }

    /// Waits until the node is Ready and has renewed its Lease once.
    pub(crate) async fn wait_ready(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change between the two is not missed.
            changed.as_mut().enable();
            if self.is_ready() && self.last_lease_renewal().is_some() {
                return;
            }
            changed.await;
        }
    }
}

pub(crate) struct NodeShared {
    pub(super) config: NodeConfig,
    pub(super) client: kube::Client,
    pub(super) runtime_name: String,
    pub(super) runtime_version: String,
    /// Whether the runtime pushes container events; known once the node listens.
    pub(super) runtime_pushes_events: AtomicBool,
    /// Set when the node starts listening to its runtime (with its first pod).
    listening: AtomicBool,
    pub(super) machine: MachineInfo,
    pub(super) registered_at: Instant,
    pub(super) cancel: CancellationToken,
    /// Set by [`RunningNode::pause_heartbeats`](super::RunningNode::pause_heartbeats).
    pub(super) heartbeats_paused: AtomicBool,
    /// Set while the status provider or the Node's annotations stop heartbeats.
    pub(super) heartbeats_stopped: AtomicBool,
    /// Whether the Node, as the process's Node watch last saw it, has a NoExecute
    /// taint: pods are then admitted against the Node read afresh.
    pub(super) no_execute_taints: AtomicBool,
    /// The node's heartbeat state and its place on the driver.
    pub(super) heartbeat: super::heartbeat::Slot,
    /// The faults the Node object's annotations ask for.
    pub(super) annotated: Mutex<AnnotatedFaults>,
    /// Whether the node is Ready and when it last renewed its Lease.
    pub(super) liveness: Liveness,
    /// The ConfigMaps, Secrets and claims pods refer to that the node found.
    pub(super) found: super::references::Found,
    /// The images pulled on this node, each with the reference by digest the runtime
    /// answered (for the kubelet's "already present" event and the Node's images).
    /// The reference is shared with the container records of the node's pods.
    pub(super) images: Mutex<HashMap<Arc<str>, Arc<str>>>,
    pod_cidr: tokio::sync::Mutex<Option<String>>,
    /// By pod UID.
    workers: Mutex<HashSet<ByUid>>,
    /// The queue of its pods' wakes: the process's, given by its router, or the
    /// node's own, made at its first pod.
    pub(super) pod_timers: OnceLock<super::pod_timers::PodTimers>,
    /// The watches on objects its pods refer to, in the kubelet traffic profile.
    pub(super) traffic: Option<Box<super::traffic::NodeTraffic>>,
}

impl NodeShared {
    pub(crate) fn new(
        config: NodeConfig,
        client: kube::Client,
        runtime_name: String,
        runtime_version: String,
        machine: MachineInfo,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            client,
            runtime_name,
            runtime_version,
            runtime_pushes_events: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            machine,
            registered_at: Instant::now(),
            cancel,
            heartbeats_paused: AtomicBool::new(false),
            heartbeats_stopped: AtomicBool::new(false),
            no_execute_taints: AtomicBool::new(false),
            heartbeat: Default::default(),
            annotated: Mutex::new(AnnotatedFaults::default()),
            liveness: Liveness::default(),
            found: Default::default(),
            images: Mutex::new(Default::default()),
            pod_cidr: tokio::sync::Mutex::new(None),
            workers: Mutex::new(HashSet::new()),
            pod_timers: OnceLock::new(),
            traffic: (config.traffic == super::TrafficProfile::Kubelet).then(Box::default),
            config,
        }
    }

    /// Records an Event about `object` from this node's kubelet (nothing when the node
    /// records no events).
    pub(crate) fn event(
        &self,
        object: k8s_openapi::api::core::v1::ObjectReference,
        kind: super::events::Kind,
        reason: &str,
        message: String,
    ) {
        if self.config.events {
            super::events::record(
                &self.client,
                &self.config.name,
                object,
                kind,
                reason,
                message,
            );
        }
    }

    /// Records an Event about the node.
    pub(crate) fn node_event(&self, kind: super::events::Kind, reason: &str, message: String) {
        self.event(
            super::events::node_reference(&self.config.name),
            kind,
            reason,
            message,
        );
    }

    /// Whether the node is cut off from the API server: heartbeats paused or stopped,
    /// so nothing is written.
    pub(crate) fn cut_off(&self) -> bool {
        self.heartbeats_paused.load(Ordering::Relaxed)
            || self.heartbeats_stopped.load(Ordering::Relaxed)
    }

    /// Takes the fault annotations of the Node object; a change asks for a beat at once.
    pub(crate) fn observe_node_annotations(
        self: &Arc<Self>,
        annotations: &BTreeMap<String, String>,
    ) {
        let faults = super::faults::from_annotations(&self.config.name, annotations);
        let mut annotated = self.annotated.lock();
        if *annotated != faults {
            *annotated = faults;
            drop(annotated);
            super::heartbeat::beat_now(self);
        }
    }

    /// The node's addresses, which host-network pods take.
    pub(crate) fn node_ips(&self) -> &[IpAddr] {
        &self.config.addresses
    }

    /// Hands a pod to its worker, starting one for a pod seen the first time.
    pub(crate) fn apply_pod(self: &Arc<Self>, pod: Pod) {
        let Some(uid) = pod.metadata.uid.as_deref().map(PodUid::from) else {
            return;
        };
        let mut workers = self.workers.lock();
        if let Some(ByUid(inbox)) = workers.get(&uid) {
            let inbox = inbox.clone();
            drop(workers);
            inbox.offer(slimmed(pod));
            return;
        }
        // What the volumes need is read before slimming drops them.
        let volume_needs = super::references::volume_needs(&pod);
        let traffic = self
            .traffic
            .as_ref()
            .and_then(|_| super::traffic::PodTraffic::of(&pod));
        let pod = Arc::new(slimmed(pod));
        self.listen_to_runtime();
        let inbox = Arc::new(PodInbox::new(uid, &pod));
        workers.insert(ByUid(inbox.clone()));
        drop(workers);
        let worker = PodWorker::new(self.clone(), inbox.clone(), pod, volume_needs, traffic);
        inbox.start(worker);
    }

    /// The queue the node's pods' wakes go on.
    pub(crate) fn pod_timers(&self) -> &super::pod_timers::PodTimers {
        self.pod_timers.get_or_init(Default::default)
    }

    /// Ends the workers of the node's pods (the node stopped): each drops its state,
    /// at once or when its pass ends.
    pub(crate) fn end_pod_workers(&self) {
        for ByUid(inbox) in self.workers.lock().iter() {
            inbox.end();
        }
    }

    /// Starts the node's runtime listener, unless it runs: container events nudge pod
    /// workers, pod actions are performed. Started with the first pod, so an idle
    /// node has no listener task and its runtime no channels.
    fn listen_to_runtime(self: &Arc<Self>) {
        if self.listening.swap(true, Ordering::Relaxed) {
            return;
        }
        let events = self.config.runtime.subscribe();
        self.runtime_pushes_events
            .store(events.is_some(), Ordering::Relaxed);
        let actions = self.config.runtime.subscribe_actions();
        tokio::spawn(super::actions::listen(self.clone(), events, actions));
    }

    /// The latest object of every pod the node runs.
    pub(crate) fn pods(&self) -> Vec<Arc<Pod>> {
        // Read back outside the lock: each is an inflate and a parse.
        let inboxes: Vec<Arc<PodInbox>> = self.workers.lock().iter().map(ByUid::inbox).collect();
        inboxes.iter().filter_map(|inbox| inbox.pod()).collect()
    }

    /// The other pods the node runs that are not finished and came before `pod` (by
    /// creation time, then name), which its admission counts as using the node: the
    /// kubelet admits pods one at a time in that order.
    pub(crate) fn pods_admitted_before(&self, pod: &Pod) -> Vec<Arc<Pod>> {
        let key = |p: &Pod| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        };
        let own = key(pod);
        let mut others = self.other_active_pods(&PodUid::from(
            pod.metadata.uid.as_deref().unwrap_or_default(),
        ));
        others.retain(|other| key(other) < own);
        others
    }

    /// The node's pods that are not finished, but the one with `uid`.
    pub(crate) fn other_active_pods(&self, uid: &PodUid) -> Vec<Arc<Pod>> {
        // Chosen by key and phase under the lock, read back outside it.
        let inboxes: Vec<Arc<PodInbox>> = self
            .workers
            .lock()
            .iter()
            .filter(|ByUid(inbox)| {
                inbox.uid != *uid && !matches!(inbox.phase.load(Ordering::Relaxed), 2 | 3)
            })
            .map(ByUid::inbox)
            .collect();
        inboxes.iter().filter_map(|inbox| inbox.pod()).collect()
    }

    /// Tells a pod's worker the pod is gone from the API: it cleans up and ends.
    pub(crate) fn remove_pod(&self, uid: &str) {
        let removed = self.workers.lock().take(&PodUid::from(uid));
        if let Some(ByUid(inbox)) = removed {
            inbox.close();
            self.retry_pending_resizes();
        }
    }

    /// Has every pod with a deferred resize judge it again: a pod was removed or
    /// finished, or another was resized (the allocation manager's
    /// `RetryPendingResizes` triggers).
    pub(crate) fn retry_pending_resizes(&self) {
        for ByUid(inbox) in self.workers.lock().iter() {
            if inbox.resize_pending.load(Ordering::Relaxed) {
                inbox.nudge();
            }
        }
    }

    /// The UIDs of the pods this node has workers for.
    pub(crate) fn pod_uids(&self) -> Vec<String> {
        self.workers
            .lock()
            .iter()
            .map(|ByUid(inbox)| inbox.uid.to_string())
            .collect()
    }

    /// How many of this node's pods are in each phase.
    pub(crate) fn pods_by_phase(&self) -> super::PodPhaseCounts {
        let workers = self.workers.lock();
        super::PodPhaseCounts::count(
            workers
                .iter()
                .map(|ByUid(inbox)| inbox.phase.load(Ordering::Relaxed)),
        )
    }

    /// Nudges the worker of the pod whose container changed (or every worker when
    /// events were lost).
    pub(crate) fn route_event(&self, event: Result<ContainerEvent, broadcast::error::RecvError>) {
        let workers = self.workers.lock();
        match event {
            Ok(event) => {
                if let Some(ByUid(inbox)) = workers.get(&PodUid::from(event.pod_uid.as_str())) {
                    inbox.nudge();
                }
            }
            Err(_) => {
                for ByUid(inbox) in workers.iter() {
                    inbox.nudge();
                }
            }
        }
    }

    /// Records the pod CIDR the controller manager allocated, and tells the runtime.
    pub(crate) async fn learn_pod_cidr(&self, cidr: &str) {
        let mut known = self.pod_cidr.lock().await;
        self.give_runtime_pod_cidr(&mut known, cidr).await;
    }

    async fn give_runtime_pod_cidr(&self, known: &mut Option<String>, cidr: &str) {
        if known.as_deref() == Some(cidr) {
            return;
        }
        match self.config.runtime.update_pod_cidr(cidr).await {
            Ok(()) => *known = Some(cidr.to_string()),
            Err(error) => {
                tracing::warn!(node = %self.config.name, %error, "runtime refused the pod CIDR")
            }
        }
    }

    /// Takes the pod CIDR the watched Node was allocated, unless the node has one or
    /// was configured with one: the node's pods then need not read their Node for it.
    pub(crate) fn observe_pod_cidr(self: &Arc<Self>, cidr: Option<&str>) {
        let Some(cidr) = cidr.filter(|_| self.config.pod_cidr.is_none()) else {
            return;
        };
        if self.pod_cidr.try_lock().is_ok_and(|known| known.is_none()) {
            let shared = self.clone();
            let cidr = cidr.to_string();
            tokio::spawn(async move { shared.learn_pod_cidr(&cidr).await });
        }
    }

    /// Makes sure the runtime has a pod CIDR: the configured one, the one allocated to
    /// the Node, or after [`POD_CIDR_PATIENCE`] one derived from the node's name.
    /// Returns whether it has one. The lock is held throughout, so pods that start
    /// together read the Node once.
    pub(crate) async fn ensure_pod_cidr(&self) -> bool {
        let mut known = self.pod_cidr.lock().await;
        if known.is_some() {
            return true;
        }
        let cidr = match self.config.pod_cidr.clone() {
            Some(cidr) => Some(cidr),
            None => {
                let nodes: Api<Node> = Api::all(self.client.clone());
                let allocated = nodes
                    .get(&self.config.name)
                    .await
                    .ok()
                    .and_then(|node| node.spec)
                    .and_then(|spec| spec.pod_cidr);
                match allocated {
                    Some(cidr) => Some(cidr),
                    None if self.registered_at.elapsed() >= POD_CIDR_PATIENCE => {
                        let cidr = derived_pod_cidr(&self.config.name);
                        tracing::info!(node = %self.config.name, %cidr, "no pod CIDR allocated; using a derived one");
                        Some(cidr)
                    }
                    None => None,
                }
            }
        };
        if let Some(cidr) = cidr {
            self.give_runtime_pod_cidr(&mut known, &cidr).await;
        }
        known.is_some()
    }
}

/// A /24 in 100.64.0.0/10 (shared address space) chosen by a hash of the node's name.
pub(crate) fn derived_pod_cidr(name: &str) -> String {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    let index = hasher.finish() % (1 << 14);
    format!("100.{}.{}.0/24", 64 + (index >> 8), index & 0xff)
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;

/// A pod's inbox in its node's table, found by the pod's UID (which the inbox holds,
/// so the table keeps one pointer a pod).
struct ByUid(Arc<PodInbox>);

impl ByUid {
    fn inbox(&self) -> Arc<PodInbox> {
        self.0.clone()
    }
}

impl Borrow<PodUid> for ByUid {
    fn borrow(&self) -> &PodUid {
        &self.0.uid
    }
}

impl PartialEq for ByUid {
    fn eq(&self, other: &Self) -> bool {
        self.0.uid == other.0.uid
    }
}

impl Eq for ByUid {}

impl Hash for ByUid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.uid.hash(state);
    }
}
