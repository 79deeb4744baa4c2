//! The hollow node engine: registration, Lease, node status, and pods driven to the
//! status a real kubelet writes.
//!
//! Build a node with [`HollowNode::builder`] (no I/O), [`HollowNode::start`] it with a
//! client, and keep the [`RunningNode`] to wait for readiness, pause heartbeats or shut
//! it down. [`HollowCluster`] runs many nodes on one client and one pod watch.
//!
//! ```no_run
//! use std::time::Duration;
//! use hollow_core::node::HollowNode;
//!
//! # async fn run(client: kube::Client) -> Result<(), hollow_core::node::Error> {
//! let node = HollowNode::builder("hollow-0").build()?.start(client).await?;
//! node.wait_ready(Duration::from_secs(30)).await?;
//! node.pause_heartbeats(); // the node lifecycle controller will mark it Unknown
//! node.resume_heartbeats(); // and Ready again
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod actions;
mod admission;
mod affinity;
mod cluster;
mod compact;
mod config;
mod container_env;
mod container_record;
mod env_files;
mod events;
mod faults;
mod heartbeat;
mod inbox;
mod node_status;
mod object_data;
mod pass_bound;
mod phases;
mod pod_status;
mod pod_timers;
mod pod_uid;
mod pods;
mod prober;
mod references;
mod register;
mod resize;
mod restart;
mod runtime_id;
mod shared;
mod slim;
mod spec_status;
mod taint_effect;
mod traffic;
mod view;
mod volume_files;
mod worker;

#[cfg(test)]
mod mock_tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use cluster::{HollowCluster, HollowClusterBuilder, NodeCredentials, process_node_names};
pub use config::{
    ConfigError, DEFAULT_KUBELET_VERSION, DEFAULT_READY_TIMEOUT, HollowNodeBuilder, NodeTiming,
    check_hostname,
};
pub use heartbeat::LEASE_NAMESPACE;
pub use pass_bound::{
    DEFAULT_POD_PASSES_AT_ONCE, PassBoundAlreadySet, pod_passes_at_once, set_pod_passes_at_once,
};
pub use phases::PodPhaseCounts;
pub use register::deregister;
pub use taint_effect::TaintEffect;
pub use traffic::TrafficProfile;
pub use view::NodeView;

use config::NodeConfig;
pub(crate) use pods::PodRouter;
use shared::NodeShared;

/// How long registration retries transient errors before it gives up.
const REGISTRATION_PATIENCE: Duration = Duration::from_secs(120);

/// Errors of a hollow node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A Node of this name exists and was not registered by hollow; set
    /// [`HollowNodeBuilder::adopt`] to take it over.
    #[error(
        "node {0} already exists and was not registered by hollow (adopt it explicitly to take it over)"
    )]
    NodeExists(String),
    /// The Node to serve with [`HollowNodeBuilder::serve_existing`] does not exist.
    #[error("node {0} does not exist: a node that serves an existing Node never creates it")]
    NodeMissing(String),
    /// The Node could not be registered.
    #[error("cannot register node {node}")]
    Registration {
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The node's own client could not be made
    /// ([`HollowClusterBuilder::credentials`]).
    #[error("cannot get the credentials of node {node}")]
    Credentials {
        /// The node.
        node: String,
        /// The credentials' error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A provider failed while the node started.
    #[error("provider failed while starting node {node}")]
    Provider {
        /// The node.
        node: String,
        /// The provider's error.
        #[source]
        source: crate::Error,
    },
    /// The API server's version could not be read, or is one hollow cannot behave as
    /// (older than [`crate::version::OLDEST_MINOR`]).
    #[error(transparent)]
    Version(#[from] crate::version::VersionError),
    /// The node's Node object or Lease could not be deleted.
    #[error("cannot deregister node {node}")]
    Deregistration {
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The node did not become Ready in time.
    #[error("node {node} was not Ready within {timeout:?}")]
    NotReady {
        /// The node.
        node: String,
        /// How long it was given.
        timeout: Duration,
    },
}

/// A configured hollow node, not started. Built with [`HollowNode::builder`].
pub struct HollowNode {
    pub(crate) config: NodeConfig,
    ready_timeout: Duration,
}

impl std::fmt::Debug for HollowNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HollowNode")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl HollowNode {
    /// A builder for a node named `name`.
    pub fn builder(name: impl Into<String>) -> HollowNodeBuilder {
        HollowNodeBuilder::new(name)
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Registers the node and starts its heartbeats and its own pod watch
    /// (`spec.nodeName=<name>`, as a kubelet's), so it works with a node's own
    /// credentials. Returns once the node is Ready (it has written a Ready status and
    /// holds its Lease); if it is not within
    /// [`HollowNodeBuilder::ready_timeout`], the node is stopped and
    /// [`Error::NotReady`] returned.
    pub async fn start(self, client: kube::Client) -> Result<RunningNode, Error> {
        let ready_timeout = self.ready_timeout;
        let router = Arc::new(PodRouter::default());
        let server = crate::version::ServerVersion::default();
        let node = self
            .start_with(client.clone(), router, false, &server)
            .await?;
        node.watch_own(client);
        node.wait_ready(ready_timeout).await?;
        Ok(node)
    }

    /// Registers the node and starts its heartbeats; pods come through `router`.
    /// Returns once the Node object exists, before the node is Ready.
    /// `process_watches`: the pods and Node come from watches the process shares;
    /// `server`: the API server's version, read once for the nodes of a process.
    pub(crate) async fn start_with(
        self,
        client: kube::Client,
        router: Arc<PodRouter>,
        process_watches: bool,
        server: &crate::version::ServerVersion,
    ) -> Result<RunningNode, Error> {
        let mut config = self.config;
        if !config.kubelet_pinned {
            config.kubelet = server.get(&client, REGISTRATION_PATIENCE).await?;
        }
        let mut registration = std::mem::take(&mut config.registration);
        let provider_error = |source| Error::Provider {
            node: config.name.clone(),
            source,
        };
        let version = config.runtime.version().await.map_err(provider_error)?;
        let machine = config
            .cadvisor
            .machine_info()
            .await
            .map_err(provider_error)?;
        let nodes: Api<Node> = Api::all(client.clone());
        let existing = if registration.existing {
            let node = match registration.existing_node.take() {
                Some(node) => *node,
                None => register::existing(&nodes, &config.name, REGISTRATION_PATIENCE).await?,
            };
            take_resources_of(&node, &mut config);
            Some(node)
        } else {
            None
        };
        let shared = Arc::new(NodeShared::new(
            config,
            client,
            version.name.clone(),
            format!("{}://{}", version.name, version.version),
            machine,
            CancellationToken::new(),
        ));
        // As the kubelet does, the Node is created with its status, so it is Ready
        // with its first request and the heartbeat has nothing to write at once.
        // (A Node someone else created gets its status from the first heartbeat.)
        let observed = match existing {
            Some(_) => heartbeat::Observed::Stopped,
            None => heartbeat::observe(&shared).await,
        };
        let initial = match observed {
            heartbeat::Observed::Status(status) => {
                let mut status = *status;
                node_status::stamp(&mut status, None, k8s_openapi::jiff::Timestamp::now());
                Some(status)
            }
            heartbeat::Observed::Stopped | heartbeat::Observed::Failed => None,
        };
        // A Node someone else created is completed after its first status (the kubelet
        // completes it before): it is served as soon as the creator's Node is seen, and
        // a thousand created at once are Ready sooner.
        let completing = existing.as_ref().map(|node| node.metadata.clone());
        let (registered, created) = match existing {
            Some(node) => (node, false),
            None => {
                register::register(
                    &nodes,
                    &shared.config.name,
                    &registration,
                    initial.clone(),
                    REGISTRATION_PATIENCE,
                )
                .await?
            }
        };
        let node_uid = registered.metadata.uid.clone().unwrap_or_default();
        // Known before the Node watch's first event, so the first pods are admitted
        // against the taints the node registered with.
        shared.no_execute_taints.store(
            affinity::has_no_execute_taint(&registered),
            Ordering::Relaxed,
        );
        let written = initial.filter(|_| created).map(|status| {
            shared.liveness.set_ready(heartbeat::is_ready(&status));
            heartbeat::record_node_events(&shared, &status, None);
            node_status::Written::of(&status)
        });
        if let Some(cidr) = registered.spec.and_then(|spec| spec.pod_cidr) {
            shared.learn_pod_cidr(&cidr).await;
        } else if let Some(cidr) = shared.config.pod_cidr.clone() {
            shared.learn_pod_cidr(&cidr).await;
        }
        let mut tasks = JoinSet::new();
        if let Some(metadata) = completing {
            let node = shared.clone();
            tasks.spawn(async move {
                let complete = async {
                    // Ready first, or a status period if it is not to be Ready.
                    let period = node.config.timing.status_update;
                    let _ = tokio::time::timeout(period, node.liveness.wait_ready()).await;
                    // A few at a time per process: when a thousand Nodes appear at
                    // once, their labels wait behind the others' first status writes.
                    let _turn = register::COMPLETING.acquire().await;
                    register::complete_existing(&nodes, &metadata, REGISTRATION_PATIENCE).await
                };
                tokio::select! {
                    () = node.cancel.cancelled() => {}
                    completed = complete => if let Err(error) = completed {
                        tracing::warn!(error = %format!("{error:#}"), "cannot add the kubelet's labels to the Node");
                    }
                }
            });
        }
        if shared.config.traffic == TrafficProfile::Kubelet {
            tasks.spawn(traffic::register_csinode(
                shared.client.clone(),
                shared.config.name.clone(),
            ));
            traffic::start_informers(&shared, process_watches);
        }
        router.heartbeats().add(&shared, node_uid, written);
        router.add(shared.clone());
        Ok(RunningNode {
            shared,
            router,
            tasks: parking_lot::Mutex::new(tasks),
        })
    }
}

/// Takes the capacity and allocatable resources a Node's creator listed in place of
/// the configuration's: allocatable is capacity where the creator gave only capacity.
fn take_resources_of(node: &Node, config: &mut NodeConfig) {
    let Some(status) = &node.status else { return };
    let capacity = status.capacity.clone().unwrap_or_default();
    let allocatable = status.allocatable.clone().unwrap_or_default();
    for (name, quantity) in &capacity {
        config.capacity.insert(name.clone(), quantity.clone());
        let allocatable = allocatable.get(name).unwrap_or(quantity);
        config.allocatable.insert(name.clone(), allocatable.clone());
    }
    config.allocatable.extend(allocatable);
}

/// A started hollow node. Dropping it stops the node's tasks, like
/// [`RunningNode::shutdown`].
pub struct RunningNode {
    shared: Arc<NodeShared>,
    router: Arc<PodRouter>,
    tasks: parking_lot::Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl RunningNode {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// Starts the node's own pod and Node watches on `client` (`spec.nodeName=<name>`,
    /// `metadata.name=<name>`, as a kubelet's), routed to it; they stop with the node.
    pub(crate) fn watch_own(&self, client: kube::Client) {
        let selector = format!("spec.nodeName={}", self.name());
        let own_node = format!("metadata.name={}", self.name());
        let cancel = self.shared.cancel.clone();
        let mut tasks = self.tasks.lock();
        tasks.spawn(
            self.router
                .clone()
                .run(client.clone(), selector, cancel.clone()),
        );
        tasks.spawn(
            self.router
                .clone()
                .run_nodes(client, Some(own_node), cancel),
        );
    }

    /// Waits until the node has written a Ready status and holds its Lease.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        tokio::time::timeout(timeout, self.shared.liveness.wait_ready())
            .await
            .map_err(|_| Error::NotReady {
                node: self.name().to_string(),
                timeout,
            })
    }

    /// Whether the node's last status write said Ready.
    pub fn is_ready(&self) -> bool {
        self.shared.liveness.is_ready()
    }

    /// When the node last created or renewed its Lease.
    pub fn last_lease_renewal(&self) -> Option<std::time::Instant> {
        self.shared.liveness.last_lease_renewal()
    }

    /// How many pods the node runs (has a worker for), whatever their phase.
    pub fn pod_count(&self) -> usize {
        self.shared.pod_uids().len()
    }

    /// How many of the node's pods are in each phase.
    pub fn pods_by_phase(&self) -> PodPhaseCounts {
        self.shared.pods_by_phase()
    }

    /// A read-only view of the node, for what serves it from outside the engine (the
    /// kubelet API's `KubeletServer::serve`).
    pub fn view(&self) -> NodeView {
        NodeView::new(self.shared.clone())
    }

    /// Stops heartbeats (Lease renewals and status writes), as a node that lost its
    /// network would: the node lifecycle controller marks it Unknown after its grace
    /// period. Pods keep running.
    pub fn pause_heartbeats(&self) {
        self.shared.heartbeats_paused.store(true, Ordering::Relaxed);
    }

    /// Resumes heartbeats at once: the Lease is renewed, the status rewritten, and pods
    /// the controller marked not ready are set Ready again.
    pub fn resume_heartbeats(&self) {
        self.shared
            .heartbeats_paused
            .store(false, Ordering::Relaxed);
        heartbeat::beat_now(&self.shared);
        // Every pod worker resyncs and rewrites what changed while the node was away.
        self.shared.route_event(Err(RecvError::Lagged(0)));
    }

    /// The node's runtime, whatever it is.
    pub fn runtime(&self) -> Arc<dyn crate::runtime::RuntimeService> {
        self.shared.config.runtime.clone()
    }

    /// The node's [`FakeRuntime`](crate::runtime::FakeRuntime), to script, when it runs
    /// the default one (no [`HollowNodeBuilder::runtime`] was given).
    ///
    /// ```no_run
    /// # async fn run(client: kube::Client) -> Result<(), hollow_core::node::Error> {
    /// use hollow_core::node::HollowNode;
    ///
    /// let node = HollowNode::builder("hollow-0").build()?.start(client).await?;
    /// let fake = node.fake_runtime().expect("the default runtime is a fake");
    /// fake.fail_pulls_of("example.com/broken:1", "manifest unknown");
    /// # Ok(()) }
    /// ```
    pub fn fake_runtime(&self) -> Option<&crate::runtime::FakeRuntime> {
        self.shared.config.default_runtime.as_ref()
    }

    /// The node's [`FakeCadvisor`](crate::cadvisor::FakeCadvisor), when it runs the
    /// default one (no [`HollowNodeBuilder::cadvisor`] was given).
    pub fn fake_cadvisor(&self) -> Option<&crate::cadvisor::FakeCadvisor> {
        self.shared.config.default_cadvisor.as_ref()
    }

    /// Stops the node's tasks (heartbeats, pod workers, its pod watch). The Node object
    /// stays, and goes NotReady once its Lease expires, as a stopped kubelet's would.
    pub async fn shutdown(self) {
        self.stop();
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        while tasks.join_next().await.is_some() {}
    }

    /// Stops the node, as [`RunningNode::shutdown`], then deletes its Node object and
    /// its Lease, as `kubectl delete node` after draining a machine would: its pods are
    /// left to the control plane (the pod garbage collector deletes them).
    pub async fn deregister(self) -> Result<(), Error> {
        let client = self.shared.client.clone();
        let name = self.name().to_string();
        self.shutdown().await;
        register::deregister(&client, &name).await
    }

    fn stop(&self) {
        self.router.remove(&self.shared);
        self.shared.cancel.cancel();
        self.shared.end_pod_workers();
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.stop();
    }
}
