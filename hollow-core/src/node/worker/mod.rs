//! One pod's worker: drives the pod's containers through the runtime as the kubelet's
//! pod workers do, and writes the status the kubelet would.

mod containers;
mod env;
mod hooks;
mod kubelet;
mod probes;
mod resize;
mod status;
mod stop;
mod volumes;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use tokio::time::Instant;

use super::admission::{Rejection, admit};
use super::compact::CompactPod;
use super::heartbeat::{Observed, observe};
use super::inbox::{News, PodInbox};
use super::pod_status::{ContainerRecord, phase};
use super::references::VolumeNeed;
use super::shared::NodeShared;
use super::traffic::PodTraffic;
use crate::backoff::Doubling;
use crate::pod::ContainerKind;
use crate::runtime::PodSandboxConfig;

/// Restart delays of a crashing container or a failing pull: 10 s doubling to 5 min,
/// the kubelet's `backOffPeriod` and `MaxContainerBackOff`.
const BACKOFF: Doubling = Doubling::new(Duration::from_secs(10), Duration::from_secs(300));
/// How often a runtime that pushes no events is relisted.
const RELIST_PERIOD: Duration = Duration::from_secs(10);
/// Retry delay for failed API writes and sandbox creation.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Retries of a volume whose object is missing: 0.5 s doubling to 2 min 2 s, the
/// volume manager's operation back-off (pkg/util/goroutinemap/exponentialbackoff).
const MOUNT_BACKOFF: Doubling = Doubling::new(Duration::from_millis(500), Duration::from_secs(122));
/// When the kubelet's pod worker syncs a pod again after a failed sync
/// (`backOffPeriod` in pkg/kubelet/kubelet.go), e.g. a container whose env names a
/// missing ConfigMap.
const SYNC_RETRY: Duration = Duration::from_secs(10);

/// What a worker's pod is between passes: nothing of its own.
static EMPTY_POD: std::sync::LazyLock<Arc<Pod>> = std::sync::LazyLock::new(Arc::default);

#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// When the last restart or pull attempt happened.
    since: Instant,
    delay: Duration,
}

impl Backoff {
    fn until(&self) -> Instant {
        self.since + self.delay
    }

    fn next(previous: Option<Backoff>, now: Instant) -> Backoff {
        let delay = BACKOFF.after(previous.map(|b| b.delay));
        Backoff { since: now, delay }
    }
}

/// Back-offs by container name, a map made at the first (a pod worker lives as long
/// as its pod, and most never back off: an empty `HashMap` is 48 bytes, this 8).
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // boxed on purpose: 8 bytes inline while empty
struct Backoffs(Option<Box<HashMap<String, Backoff>>>);

impl Backoffs {
    fn get(&self, name: &str) -> Option<&Backoff> {
        self.0.as_ref()?.get(name)
    }

    fn insert(&mut self, name: &str, backoff: Backoff) {
        self.0
            .get_or_insert_default()
            .insert(name.to_string(), backoff);
    }

    fn remove(&mut self, name: &str) {
        if let Some(map) = self.0.as_mut() {
            map.remove(name);
            if map.is_empty() {
                self.0 = None;
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = &Backoff> {
        self.0.iter().flat_map(|map| map.values())
    }
}

pub(crate) struct PodWorker {
    shared: Arc<NodeShared>,
    pod: Arc<Pod>,
    /// Newer pod objects, nudges, and where the phase last computed is published.
    inbox: Arc<PodInbox>,
    sandbox: Option<super::runtime_id::RuntimeId>,
    sandbox_stopped: bool,
    pod_ips: Box<[IpAddr]>,
    init: Box<[ContainerRecord]>,
    regular: Box<[ContainerRecord]>,
    /// Crash-restart backoff by container name.
    restarts: Backoffs,
    /// Image-pull backoff by container name.
    pulls: Backoffs,
    /// Create/start-failure backoff by container name.
    start_failures: Backoffs,
    start_time: Timestamp,
    /// Set once the pod reached Succeeded or Failed: nothing runs any more.
    terminal: bool,
    /// Set once the pod ran past its `activeDeadlineSeconds` and was killed for it.
    deadline_exceeded: bool,
    /// Why the node refused the pod, if it did: it never runs.
    rejected: Option<Box<Rejection>>,
    /// Set once the final delete was sent.
    deleted: bool,
    retry_at: Option<Instant>,
    /// The objects the pod's volumes mount, until all were found.
    volume_needs: Option<Box<[VolumeNeed]>>,
    /// When a missing volume is looked for again.
    mount_backoff: Option<Backoff>,
    /// An in-place resize underway.
    resize: Option<Box<resize::ResizeState>>,
    /// What the pod makes the node ask for in the kubelet traffic profile.
    traffic: Option<Box<PodTraffic>>,
    /// When the pod's service account tokens are renewed, once they were requested.
    token_renewal: Option<Instant>,
    /// Set once the kubelet's first status, before the volumes are mounted, was sent.
    first_status_sent: bool,
    /// The runtime told of a change since the last pass (probes are asked again).
    nudged: bool,
}

fn records(
    containers: &[Container],
    kind_of: impl Fn(&Container) -> ContainerKind,
) -> Box<[ContainerRecord]> {
    containers
        .iter()
        .map(|c| {
            let delay = |probe: Option<&k8s_openapi::api::core::v1::Probe>| {
                probe
                    .and_then(|p| p.initial_delay_seconds)
                    .and_then(|s| u32::try_from(s).ok())
                    .unwrap_or(0)
            };
            ContainerRecord {
                kind: kind_of(c),
                name: crate::interned::intern(&c.name),
                image: crate::interned::intern(c.image.as_deref().unwrap_or_default()),
                startup_delay: delay(c.startup_probe.as_ref()),
                readiness_delay: delay(c.readiness_probe.as_ref()),
                ..Default::default()
            }
        })
        .collect()
}

impl PodWorker {
    pub(crate) fn new(
        shared: Arc<NodeShared>,
        inbox: Arc<PodInbox>,
        pod: Arc<Pod>,
        volume_needs: Option<Box<[VolumeNeed]>>,
        traffic: Option<Box<PodTraffic>>,
    ) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let init = records(spec.init_containers.as_deref().unwrap_or_default(), |c| {
            if c.restart_policy.as_deref() == Some("Always") {
                ContainerKind::Sidecar
            } else {
                ContainerKind::Init
            }
        });
        let regular = records(&spec.containers, |_| ContainerKind::Regular);
        // A pod a kubelet started before this worker (e.g. before a restart) has its
        // volumes mounted already.
        let started_before = pod.status.as_ref().is_some_and(|s| s.start_time.is_some());
        let volume_needs = volume_needs.filter(|_| !started_before);
        // A pod already finished before this worker (e.g. before a restart) stays so.
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        Self {
            shared,
            // Read back from the inbox for the first pass: a worker waiting its turn
            // holds no pod object.
            pod: EMPTY_POD.clone(),
            inbox,
            sandbox: None,
            sandbox_stopped: false,
            pod_ips: Box::default(),
            init,
            regular,
            restarts: Backoffs::default(),
            pulls: Backoffs::default(),
            start_failures: Backoffs::default(),
            start_time: Timestamp::now(),
            terminal,
            deadline_exceeded: false,
            rejected: None,
            deleted: false,
            retry_at: None,
            volume_needs,
            mount_backoff: None,
            resize: None,
            traffic,
            token_renewal: None,
            first_status_sent: started_before,
            nudged: false,
        }
    }

    /// What the runtime is told of the pod's sandbox (made when needed rather than
    /// kept: it copies the pod's labels and annotations).
    fn sandbox_config(&self) -> PodSandboxConfig {
        let meta = &self.pod.metadata;
        PodSandboxConfig {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            uid: self.inbox.uid.to_string(),
            host_network: self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
        }
    }

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    /// The pods of this pod's namespace. Made for each request rather than kept: a worker
    /// lives as long as its pod, and an `Api` is 272 bytes.
    fn pods_api(&self) -> Api<Pod> {
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced(self.shared.client.clone(), namespace)
    }

    /// Admits the pod as the kubelet does before it runs anything; a pod that does not
    /// fit is failed with the kubelet's reason and message instead. Pods a kubelet
    /// already started (they have a start time: admitted before this process started)
    /// are not checked again.
    async fn admit(&mut self) {
        if self.terminal
            || self.pod.metadata.deletion_timestamp.is_some()
            || self
                .pod
                .status
                .as_ref()
                .is_some_and(|s| s.start_time.is_some())
        {
            return;
        }
        let Observed::Status(node) = observe(&self.shared).await else {
            return;
        };
        let earlier = self.shared.pods_admitted_before(&self.pod);
        let earlier: Vec<&k8s_openapi::api::core::v1::Pod> =
            earlier.iter().map(AsRef::as_ref).collect();
        let allocatable = node.allocatable.unwrap_or_default();
        // A pod that constrains its node's labels is matched against the Node as the
        // API server holds it now, as the kubelet's `getNodeAnyWay` reads it.
        let node_object = if super::affinity::constrains_node(&self.pod)
            || self.shared.no_execute_taints.load(Ordering::Relaxed)
        {
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.shared.client.clone());
            nodes.get(&self.shared.config.name).await.ok()
        } else {
            None
        };
        if let Err(rejection) = admit(&self.pod, &allocatable, &earlier, node_object.as_ref()) {
            tracing::info!(pod = %self.name(), reason = %rejection.reason, "pod rejected at admission");
            self.inbox
                .phase
                .store(super::phases::phase_index("Failed"), Ordering::Relaxed);
            self.rejected = Some(Box::new(rejection));
            self.terminal = true;
        }
    }

    /// One pass on `news`: returns when to wake without news, or `None` once the pod
    /// is gone and cleaned up after (the worker has ended).
    pub(crate) async fn step(&mut self, news: News) -> Option<Option<Instant>> {
        // A plain status update (our own write's echo, a controller's condition) only
        // gets a status pass; the first, a container change, a timer and a deletion
        // drive the containers.
        let drive = match news {
            News::First => {
                self.materialize();
                self.register_references();
                Box::pin(self.admit()).await;
                true
            }
            News::Pod(previous, nudged) => {
                let pod = Arc::new(self.inbox.taken());
                self.observe(pod, &previous);
                self.nudged |= nudged;
                nudged || self.pod.metadata.deletion_timestamp.is_some()
            }
            News::Nudged => {
                self.nudged = true;
                true
            }
            News::Timer => true,
            News::Gone => {
                self.materialize();
                self.unregister_references();
                Box::pin(self.remove_from_runtime()).await;
                return None;
            }
        };
        self.materialize();
        let wake = Box::pin(self.sync(drive)).await;
        // Between passes the pod is held only compactly, by the inbox.
        self.pod = EMPTY_POD.clone();
        Some(wake)
    }

    /// Whether the worker's node stopped: it does nothing more.
    pub(crate) fn stopped(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// The queue the worker's wakes go on.
    pub(crate) fn timers(&self) -> super::pod_timers::PodTimers {
        self.shared.pod_timers().clone()
    }

    /// Reads the pod back from the inbox after a wait, unless a delivery brought it.
    fn materialize(&mut self) {
        if Arc::ptr_eq(&self.pod, &EMPTY_POD) {
            self.pod = Arc::new(self.inbox.taken());
        }
    }

    /// Takes a newer pod object from the watch (`previous`: the one it replaces; the
    /// inbox hands over no older one).
    fn observe(&mut self, pod: Arc<Pod>, previous: &CompactPod) {
        if pod.metadata.generation != previous.generation() {
            self.note_resize(&previous.pod(), &pod);
        }
        self.pod = pod;
    }

    /// Takes a pod the worker read or wrote (the API's answer), if it is newer than
    /// the one it has; the inbox holds it from now on.
    fn take_read(&mut self, pod: Pod) {
        let pod = super::shared::slimmed(pod);
        if let Some(previous) = self.inbox.take_newer(&pod) {
            self.observe(Arc::new(pod), &previous);
        }
    }

    /// One pass toward the desired state; returns when to wake up without news.
    async fn sync(&mut self, drive: bool) -> Option<Instant> {
        if self.retry_at.is_some_and(|at| at <= Instant::now()) {
            self.retry_at = None;
        }
        if self.deleted {
            return None;
        }
        let was_terminal = self.terminal;
        if self.pod.metadata.deletion_timestamp.is_some() {
            self.terminate_and_delete().await;
            return self.retry_at;
        }
        if !self.terminal
            && self
                .active_deadline()
                .is_some_and(|at| at <= Instant::now())
        {
            // The kubelet's active deadline handler evicts the pod: its containers are
            // killed with the pod's grace period, and it fails (pkg/kubelet/active_deadline.go,
            // applied in generateAPIPodStatus, pkg/kubelet/kubelet_pods.go).
            self.deadline_exceeded = true;
            self.terminal = true;
            self.pod_event(
                crate::node::events::Kind::Normal,
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline".into(),
            );
            self.stop_everything(self.grace_period()).await;
        }
        Box::pin(self.handle_resize(drive)).await;
        if drive && !self.terminal {
            self.refresh().await;
            self.send_first_status().await;
            self.renew_tokens().await;
            if self.volumes_mounted().await
                && self.tokens_mounted().await
                && self.ensure_sandbox().await
            {
                self.drive_containers().await;
                let nudged = std::mem::take(&mut self.nudged);
                Box::pin(self.run_probes(nudged)).await;
            }
            if matches!(
                phase(&self.pod, &self.init, &self.regular, self.restart_rules()),
                "Succeeded" | "Failed"
            ) {
                self.terminal = true;
                self.stop_everything(Duration::ZERO).await;
            }
        }
        self.write_status(None).await;
        if self.terminal && !was_terminal {
            // Its resources are free: deferred resizes may fit now.
            self.shared.retry_pending_resizes();
        }
        self.next_wake()
    }

    /// When the pod has been active on the node for its `activeDeadlineSeconds`, counted
    /// from its start time, as the kubelet counts it.
    fn active_deadline(&self) -> Option<Instant> {
        let seconds = self.pod.spec.as_ref()?.active_deadline_seconds?;
        let started = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or(self.start_time, |t| t.0);
        let deadline = started + Duration::from_secs(u64::try_from(seconds).ok()?);
        let left = std::time::SystemTime::from(deadline)
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        Some(Instant::now() + left)
    }

    /// The pod's termination grace period (30 s unless its spec says otherwise).
    fn grace_period(&self) -> Duration {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(Duration::from_secs(30), Duration::from_secs)
    }

    /// The earliest future moment something is due: a back-off ending, a retry, the
    /// pod's active deadline, or a relist of a runtime that pushes no events. Expired
    /// back-offs are not due.
    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        let retry = self.retry_at.filter(|at| *at > now);
        if self.terminal {
            return retry;
        }
        // Probes' first successes change `started` and `ready` without a runtime event.
        let wall = std::time::SystemTime::now();
        let probes = self
            .init
            .iter()
            .chain(&self.regular)
            .flat_map(|r| [r.started_by(), r.ready_by()])
            .flatten()
            .chain(self.probes_due())
            .filter_map(|at| at.duration_since(wall).ok())
            .filter(|wait| !wait.is_zero())
            .map(|wait| now + wait);
        // Half-way through a pull back-off the waiting reason turns from ErrImagePull
        // to ImagePullBackOff, as the kubelet's next sync shows it.
        let pull_midpoints = self.pulls.values().map(|b| b.since + b.delay / 2);
        let backoffs = self
            .restarts
            .values()
            .chain(self.pulls.values())
            .chain(self.start_failures.values())
            .map(Backoff::until)
            .chain(pull_midpoints)
            .chain(probes);
        let relist = (!self.shared.runtime_pushes_events.load(Ordering::Relaxed))
            .then(|| now + RELIST_PERIOD);
        let mount = self
            .mount_backoff
            .filter(|_| self.volume_needs.is_some() || self.tokens_pending());
        backoffs
            .chain(mount.map(|b| b.until()))
            .chain(self.token_renewal)
            .chain(self.active_deadline())
            .chain(self.resize_wake())
            .filter(|at| *at > now)
            .chain(relist)
            .chain(retry)
            .min()
    }
}
