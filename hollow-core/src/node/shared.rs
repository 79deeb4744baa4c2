//! The state one node's tasks share: its configuration, client, runtime, pod workers.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::NodeConfig;
use super::faults::AnnotatedFaults;
use super::worker::PodWorker;
use crate::cadvisor::MachineInfo;
use crate::runtime::ContainerEvent;

/// Drops what the node never reads from a pod it keeps for as long as the pod runs:
/// `metadata.managedFields` (often the largest part of the object) and the volumes
/// with their mounts (a hollow runtime mounts nothing; each `Volume` alone is over
/// 3 KiB in memory).
pub(crate) fn slimmed(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    shrink(&mut pod.metadata.owner_references);
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        // serde grows a list by doubling, from room for four items of up to 1 KiB (one
        // for larger ones): one ContainerStatus (750 bytes) sits in 3 KiB, five
        // conditions in room for eight. Every pod is kept for its life.
        spec.containers.shrink_to_fit();
        shrink(&mut spec.init_containers);
        shrink(&mut spec.tolerations);
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for container in containers {
            container.volume_mounts = None;
            container.volume_devices = None;
            shrink(&mut container.env);
            shrink(&mut container.ports);
            shrink(&mut container.args);
            shrink(&mut container.command);
        }
    }
    if let Some(status) = pod.status.as_mut() {
        shrink(&mut status.conditions);
        shrink(&mut status.container_statuses);
        shrink(&mut status.init_container_statuses);
        shrink(&mut status.pod_ips);
        shrink(&mut status.host_ips);
    }
    pod
}

fn shrink<T>(list: &mut Option<Vec<T>>) {
    if let Some(list) = list {
        list.shrink_to_fit();
    }
}

/// How long a node waits for the controller manager to allocate its pod CIDR before it
/// derives one from its name.
const POD_CIDR_PATIENCE: Duration = Duration::from_secs(10);

/// A pod worker's inputs: the latest pod object, and a nudge when its containers change.
pub(crate) struct WorkerHandle {
    pub pod: watch::Sender<Arc<Pod>>,
    pub nudge: Arc<Notify>,
    /// The phase the worker last computed, as an index into [`PHASES`].
    pub phase: Arc<AtomicU8>,
}

/// The pod phases, in the order [`NodeShared::pods_by_phase`] counts them.
pub const PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];

/// The index of a phase in [`PHASES`] (Unknown for anything else).
pub(crate) fn phase_index(phase: &str) -> u8 {
    PHASES.iter().position(|p| *p == phase).unwrap_or(4) as u8
}

pub(crate) struct NodeShared {
    pub config: NodeConfig,
    pub client: kube::Client,
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_pushes_events: bool,
    pub machine: MachineInfo,
    pub registered_at: Instant,
    pub cancel: CancellationToken,
    /// Set by [`RunningNode::pause_heartbeats`](super::RunningNode::pause_heartbeats).
    pub heartbeats_paused: AtomicBool,
    /// Set while the status provider or the Node's annotations stop heartbeats.
    pub heartbeats_stopped: AtomicBool,
    /// Wakes the heartbeat to renew and write at once.
    pub resumed: Notify,
    /// The faults the Node object's annotations ask for.
    pub annotated: Mutex<AnnotatedFaults>,
    pub ready: watch::Sender<bool>,
    /// When the Lease was last created or renewed.
    pub lease_renewed: watch::Sender<Option<std::time::Instant>>,
    pod_cidr: tokio::sync::Mutex<Option<String>>,
    workers: Mutex<HashMap<String, WorkerHandle>>,
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
        let runtime_pushes_events = config.runtime.subscribe().is_some();
        Self {
            config,
            client,
            runtime_name,
            runtime_version,
            runtime_pushes_events,
            machine,
            registered_at: Instant::now(),
            cancel,
            heartbeats_paused: AtomicBool::new(false),
            heartbeats_stopped: AtomicBool::new(false),
            resumed: Notify::new(),
            annotated: Mutex::new(AnnotatedFaults::default()),
            ready: watch::channel(false).0,
            lease_renewed: watch::channel(None).0,
            pod_cidr: tokio::sync::Mutex::new(None),
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the node is cut off from the API server: heartbeats paused or stopped,
    /// so nothing is written.
    pub(crate) fn cut_off(&self) -> bool {
        self.heartbeats_paused.load(Ordering::Relaxed)
            || self.heartbeats_stopped.load(Ordering::Relaxed)
    }

    /// Takes the fault annotations of the Node object; a change wakes the heartbeat.
    pub(crate) fn observe_node_annotations(&self, annotations: &BTreeMap<String, String>) {
        let faults = super::faults::from_annotations(&self.config.name, annotations);
        let mut annotated = self.annotated.lock().unwrap_or_else(|p| p.into_inner());
        if *annotated != faults {
            *annotated = faults;
            drop(annotated);
            self.resumed.notify_one();
        }
    }

    /// The node's addresses, which host-network pods take.
    pub(crate) fn node_ips(&self) -> &[IpAddr] {
        &self.config.addresses
    }

    /// Hands a pod to its worker, starting one for a pod seen the first time.
    pub(crate) fn apply_pod(self: &Arc<Self>, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod = Arc::new(slimmed(pod));
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = workers.get(&uid) {
            handle.pod.send_replace(pod);
            return;
        }
        let (pod_tx, pod_rx) = watch::channel(pod);
        let nudge = Arc::new(Notify::new());
        let phase = Arc::new(AtomicU8::new(0));
        workers.insert(
            uid.clone(),
            WorkerHandle {
                pod: pod_tx,
                nudge: nudge.clone(),
                phase: phase.clone(),
            },
        );
        let worker = PodWorker::new(self.clone(), pod_rx, nudge, phase);
        let shared = self.clone();
        tokio::spawn(async move {
            worker.run().await;
            shared
                .workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&uid);
        });
    }

    /// The latest object of every pod the node runs.
    #[cfg_attr(not(feature = "kubelet-api"), allow(dead_code))]
    pub(crate) fn pods(&self) -> Vec<Arc<Pod>> {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|handle| handle.pod.borrow().clone())
            .collect()
    }

    /// Tells a pod's worker the pod is gone from the API: it cleans up and ends.
    pub(crate) fn remove_pod(&self, uid: &str) {
        // Dropping the senders ends the worker's input.
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }

    /// The UIDs of the pods this node has workers for.
    pub(crate) fn pod_uids(&self) -> Vec<String> {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// How many of this node's pods are in each of [`PHASES`].
    pub(crate) fn pods_by_phase(&self) -> [usize; 5] {
        let mut counts = [0; 5];
        for handle in self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            counts[usize::from(handle.phase.load(Ordering::Relaxed)).min(4)] += 1;
        }
        counts
    }

    /// Nudges the worker of the pod whose container changed (or every worker when
    /// events were lost).
    pub(crate) fn route_event(&self, event: Result<ContainerEvent, broadcast::error::RecvError>) {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Ok(event) => {
                if let Some(handle) = workers.get(&event.pod_uid) {
                    handle.nudge.notify_one();
                }
            }
            Err(_) => {
                for handle in workers.values() {
                    handle.nudge.notify_one();
                }
            }
        }
    }

    /// Records the pod CIDR the controller manager allocated, and tells the runtime.
    pub(crate) async fn learn_pod_cidr(&self, cidr: &str) {
        let mut known = self.pod_cidr.lock().await;
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

    /// Makes sure the runtime has a pod CIDR: the configured one, the one allocated to
    /// the Node, or after [`POD_CIDR_PATIENCE`] one derived from the node's name.
    /// Returns whether it has one.
    pub(crate) async fn ensure_pod_cidr(&self) -> bool {
        if self.pod_cidr.lock().await.is_some() {
            return true;
        }
        if let Some(cidr) = self.config.pod_cidr.clone() {
            self.learn_pod_cidr(&cidr).await;
        } else {
            let nodes: Api<Node> = Api::all(self.client.clone());
            if let Ok(node) = nodes.get(&self.config.name).await
                && let Some(cidr) = node.spec.and_then(|spec| spec.pod_cidr)
            {
                self.learn_pod_cidr(&cidr).await;
            } else if self.registered_at.elapsed() >= POD_CIDR_PATIENCE {
                let cidr = derived_pod_cidr(&self.config.name);
                tracing::info!(node = %self.config.name, %cidr, "no pod CIDR allocated; using a derived one");
                self.learn_pod_cidr(&cidr).await;
            }
        }
        self.pod_cidr.lock().await.is_some()
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
mod tests {
    use super::*;

    #[test]
    fn derived_cidrs_are_stable_and_in_shared_space() {
        let a = derived_pod_cidr("node-a");
        assert_eq!(a, derived_pod_cidr("node-a"));
        let second: u8 = a.split('.').nth(1).unwrap().parse().unwrap();
        assert!((64..128).contains(&second), "{a}");
        assert!(a.ends_with(".0/24"));
    }

    #[test]
    fn slimmed_pods_keep_no_spare_room() {
        // From text, as a watch reads it (a `Value` would tell serde each list's length).
        let json = serde_json::json!({
            "metadata": { "name": "p", "managedFields": [{ "manager": "m" }] },
            "spec": {
                "containers": [{
                    "name": "c",
                    "image": "i",
                    "env": [{ "name": "A", "value": "1" }],
                    "volumeMounts": [{ "name": "v", "mountPath": "/v" }],
                }],
                "tolerations": [{ "key": "a" }, { "key": "b" }, { "key": "c" }],
                "volumes": [{ "name": "v", "emptyDir": {} }],
            },
            "status": {
                "conditions": [{ "type": "Ready", "status": "True" }],
                "containerStatuses": [{
                    "name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                }],
            },
        });
        let pod: Pod = serde_json::from_str(&json.to_string()).unwrap();
        let statuses = |pod: &Pod| {
            let status = pod.status.as_ref().unwrap();
            status.container_statuses.as_ref().unwrap().capacity()
        };
        assert!(statuses(&pod) > 1);
        let pod = slimmed(pod);
        assert_eq!(statuses(&pod), 1);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.containers.capacity(), 1);
        assert_eq!(spec.tolerations.unwrap().capacity(), 3);
        assert_eq!(spec.containers[0].env.as_ref().unwrap().capacity(), 1);
        assert_eq!(pod.status.unwrap().conditions.unwrap().capacity(), 1);
        assert!(spec.volumes.is_none() && spec.containers[0].volume_mounts.is_none());
        assert!(pod.metadata.managed_fields.is_none());
    }
}
