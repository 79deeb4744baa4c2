//! Serving Nodes that others create, as KWOK does: a [`NodeManager`] watches the Nodes
//! a selector picks and runs a hollow node for each one
//! ([`HollowNodeBuilder::serve_existing`]), so the tools that drive KWOK (Karpenter's
//! KWOK provider, `kwokctl scale node`, autoscaler simulations) drive hollow.
//!
//! A Node its creator deletes stops its hollow node at once; its pods are left to the
//! control plane, as a kubelet's are when its machine goes away. Every managed node
//! shares the process's client, pod watch, Node watch and heartbeat driver, so one
//! costs what a registered node costs.

mod selector;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use kube::core::{Selector, SelectorExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use selector::{SelectorError, parse_selector};

use crate::backoff::{Doubling, WatchBackoff};
#[cfg(feature = "kubelet-api")]
use crate::kubelet_api::KubeletServer;
use crate::node::{HollowNode, HollowNodeBuilder, PodRouter, RunningNode};

/// KWOK's annotation for the Nodes it serves (`kwok.x-k8s.io/node: fake`), which its
/// default deployment selects with `--manage-nodes-with-annotation-selector`.
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// Errors of a [`NodeManager`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A selector does not parse.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// The API server refused the Node watch (a selector it does not accept, or no
    /// permission to list Nodes).
    #[error("cannot list the Nodes to manage")]
    List(#[source] kube::Error),
}

type Configure = Box<dyn Fn(usize, &Node, HollowNodeBuilder) -> HollowNodeBuilder + Send + Sync>;

/// Configures a [`NodeManager`].
///
/// ```
/// use hollow_core::manage::NodeManager;
///
/// let manager = NodeManager::builder()
///     .label_selector("type=kwok")
///     .annotation_selector("kwok.x-k8s.io/node=fake")
///     .configure(|_index, _node, builder| builder.max_pods(250));
/// # drop(manager);
/// ```
#[must_use]
pub struct NodeManagerBuilder {
    labels: Option<String>,
    annotations: Option<String>,
    name: Option<String>,
    configure: Configure,
    parallelism: usize,
    #[cfg(feature = "kubelet-api")]
    kubelet_api: Option<KubeletServer>,
}

impl std::fmt::Debug for NodeManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeManagerBuilder")
            .field("labels", &self.labels)
            .field("annotations", &self.annotations)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NodeManagerBuilder {
    /// Manages the Nodes whose labels match `selector` (the API's syntax, evaluated by
    /// the API server: `type=kwok`, `pool in (a,b)`).
    pub fn label_selector(mut self, selector: impl Into<String>) -> Self {
        self.labels = Some(selector.into());
        self
    }

    /// Manages the Nodes whose annotations match `selector` (the label selector syntax,
    /// evaluated here: `kwok.x-k8s.io/node=fake`). With a label selector too, a Node
    /// must match both.
    pub fn annotation_selector(mut self, selector: impl Into<String>) -> Self {
        self.annotations = Some(selector.into());
        self
    }

    /// Manages the one Node named `name` (KWOK's `--manage-single-node`).
    pub fn single_node(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Configures each managed node: `configure(index, node, builder)`, with `index`
    /// counting the nodes managed so far (for distinct addresses or ports) and `node`
    /// the Node as its creator wrote it. The creator's capacity replaces the builder's
    /// ([`HollowNodeBuilder::serve_existing`]).
    pub fn configure(
        mut self,
        configure: impl Fn(usize, &Node, HollowNodeBuilder) -> HollowNodeBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure = Box::new(configure);
        self
    }

    /// How many nodes start at once (default 64).
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism.max(1);
        self
    }

    /// Serves each managed node's kubelet API on `server` while it runs.
    #[cfg(feature = "kubelet-api")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kubelet-api")))]
    pub fn kubelet_api(mut self, server: KubeletServer) -> Self {
        self.kubelet_api = Some(server);
        self
    }

    /// Checks the selectors (listing one Node with them, so one the API server refuses
    /// fails here), then starts watching: every matching Node, present or to come, gets
    /// a hollow node. Returns without waiting for them; [`NodeManager::names`] lists
    /// those running.
    pub async fn start(self, client: kube::Client) -> Result<NodeManager, Error> {
        if let Some(labels) = &self.labels {
            parse_selector(labels)?;
        }
        let annotations = self
            .annotations
            .as_deref()
            .map(parse_selector)
            .transpose()?;
        let mut config = watcher::Config::default();
        let mut probe = ListParams::default().limit(1);
        if let Some(labels) = &self.labels {
            config = config.labels(labels);
            probe = probe.labels(labels);
        }
        if let Some(name) = &self.name {
            let field = format!("metadata.name={name}");
            config = config.fields(&field);
            probe = probe.fields(&field);
        }
        let nodes: Api<Node> = Api::all(client.clone());
        nodes.list_metadata(&probe).await.map_err(Error::List)?;
        let router = Arc::new(PodRouter::default());
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let inner = Arc::new(Inner {
            client: client.clone(),
            router: router.clone(),
            server: crate::version::ServerVersion::default(),
            annotations,
            configure: self.configure,
            starts: Semaphore::new(self.parallelism),
            #[cfg(feature = "kubelet-api")]
            kubelet_api: self.kubelet_api,
            managed: Mutex::new(HashMap::new()),
            counter: AtomicUsize::new(0),
            tasks: tasks.clone(),
        });
        tasks.spawn(
            router
                .clone()
                .run(client, "spec.nodeName!=".into(), cancel.clone()),
        );
        tasks.spawn(inner.clone().watch(nodes, config, cancel.clone()));
        Ok(NodeManager {
            inner,
            cancel,
            tasks,
        })
    }
}

/// Runs a hollow node for every Node a selector picks, until dropped or shut down.
///
/// ```no_run
/// # async fn run(client: kube::Client) -> Result<(), hollow_core::manage::Error> {
/// use hollow_core::manage::NodeManager;
///
/// // Every Node created with the label type=kwok is served from now on.
/// let manager = NodeManager::builder()
///     .label_selector("type=kwok")
///     .start(client)
///     .await?;
/// println!("serving {:?}", manager.names());
/// manager.shutdown().await;
/// # Ok(()) }
/// ```
pub struct NodeManager {
    inner: Arc<Inner>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for NodeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeManager")
            .field("nodes", &self.len())
            .finish_non_exhaustive()
    }
}

impl NodeManager {
    /// A builder that manages every Node until a selector narrows it down.
    pub fn builder() -> NodeManagerBuilder {
        NodeManagerBuilder {
            labels: None,
            annotations: None,
            name: None,
            configure: Box::new(|_, _, builder| builder),
            parallelism: 64,
            #[cfg(feature = "kubelet-api")]
            kubelet_api: None,
        }
    }

    /// The names of the Nodes served now (started, not yet stopped), sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .managed
            .lock()
            .iter()
            .filter(|(_, slot)| slot.node.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// The hollow nodes serving Nodes now, in no order.
    pub fn nodes(&self) -> Vec<Arc<RunningNode>> {
        let managed = self.inner.managed.lock();
        managed
            .values()
            .filter_map(|slot| slot.node.clone())
            .collect()
    }

    /// How many Nodes are served now.
    pub fn len(&self) -> usize {
        let managed = self.inner.managed.lock();
        managed.values().filter(|slot| slot.node.is_some()).count()
    }

    /// Whether no Node is served now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every node and the watches. The Node objects stay (they are their
    /// creators'), and go NotReady once their Leases expire.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.inner.stop_all();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for NodeManager {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.inner.stop_all();
    }
}

/// One managed Node: the task starting its hollow node, then the node. Nothing runs
/// per node once it has started but the node's own work.
struct Slot {
    /// Tells this Node's slot from one of a Node made again under the same name.
    id: u64,
    starting: Option<AbortHandle>,
    node: Option<Arc<RunningNode>>,
}

struct Inner {
    client: kube::Client,
    router: Arc<PodRouter>,
    /// The API server's version, read once for every Node served.
    server: crate::version::ServerVersion,
    annotations: Option<Selector>,
    configure: Configure,
    starts: Semaphore,
    #[cfg(feature = "kubelet-api")]
    kubelet_api: Option<KubeletServer>,
    managed: Mutex<HashMap<String, Slot>>,
    /// Nodes served so far: each one's index, and its slot's id.
    counter: AtomicUsize,
    tasks: TaskTracker,
}

impl Inner {
    /// Follows the Nodes the selectors pick: starts a hollow node for each new match,
    /// stops it when the Node goes (or stops matching), and passes each Node's state to
    /// its hollow node.
    async fn watch(
        self: Arc<Self>,
        nodes: Api<Node>,
        config: watcher::Config,
        cancel: CancellationToken,
    ) {
        let mut events = watcher::watcher(nodes, config)
            .backoff(WatchBackoff::new())
            .boxed();
        let mut listed: Option<HashSet<String>> = None;
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                None => return,
                Some(Ok(Event::Apply(node))) => self.observe(&node),
                Some(Ok(Event::Delete(node))) => {
                    if let Some(name) = node.metadata.name.as_deref() {
                        self.stop(name);
                    }
                }
                Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
                Some(Ok(Event::InitApply(node))) => {
                    if let (Some(seen), Some(name)) = (listed.as_mut(), &node.metadata.name) {
                        seen.insert(name.clone());
                    }
                    self.observe(&node);
                }
                Some(Ok(Event::InitDone)) => {
                    // Nodes deleted while the watch was down are gone from the new list.
                    if let Some(seen) = listed.take() {
                        let gone: Vec<String> = self
                            .managed
                            .lock()
                            .keys()
                            .filter(|name| !seen.contains(*name))
                            .cloned()
                            .collect();
                        for name in gone {
                            self.stop(&name);
                        }
                    }
                }
                Some(Err(error)) => tracing::warn!(%error, "managed Node watch failed; retrying"),
            }
        }
    }

    fn observe(self: &Arc<Self>, node: &Node) {
        let Some(name) = node.metadata.name.as_deref() else {
            return;
        };
        // A Node being deleted is still served: its creator may be draining it (as
        // Karpenter's termination finalizer does), and its pods end only through it.
        let wanted = self.annotations.as_ref().is_none_or(|selector| {
            selector.matches(
                node.metadata
                    .annotations
                    .as_ref()
                    .unwrap_or(&Default::default()),
            )
        });
        let managed = self.managed.lock().contains_key(name);
        match (wanted, managed) {
            (true, false) => self.start(node),
            (false, true) => self.stop(name),
            _ => {}
        }
        self.router.observe_node(node);
    }

    fn start(self: &Arc<Self>, node: &Node) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        let index = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = index as u64;
        let builder = (self.configure)(index, node, HollowNode::builder(&name))
            .serve_existing(true)
            .existing_node(node.clone());
        let inner = self.clone();
        let mut managed = self.managed.lock();
        let starting = self.tasks.spawn(async move {
            let Some(running) = inner.start_node(&name, builder).await else {
                return;
            };
            let running = Arc::new(running);
            let unwanted = {
                let mut managed = inner.managed.lock();
                match managed.get_mut(&name) {
                    Some(slot) if slot.id == id => {
                        slot.starting = None;
                        slot.node = Some(running.clone());
                        false
                    }
                    _ => true,
                }
            };
            // Stopped while it started (the start is aborted, unless it had just ended).
            if unwanted {
                inner.retire(&name, running);
            }
        });
        managed.insert(
            name_of(node),
            Slot {
                id,
                starting: Some(starting.abort_handle()),
                node: None,
            },
        );
    }

    /// Starts the hollow node of `name`, retrying with backoff while it fails; `None`
    /// when the configuration is invalid or the Node is gone.
    async fn start_node(&self, name: &str, builder: HollowNodeBuilder) -> Option<RunningNode> {
        let mut delays = Doubling::new(Duration::from_secs(1), Duration::from_secs(60)).delays();
        loop {
            let node = match builder.clone().build() {
                Ok(node) => node,
                Err(error) => {
                    tracing::error!(node = %name, %error, "cannot serve the Node: invalid configuration");
                    return None;
                }
            };
            let started = {
                let _permit = self.starts.acquire().await.ok()?;
                node.start_with(self.client.clone(), self.router.clone(), true, &self.server)
                    .await
            };
            match started {
                Ok(running) => {
                    #[cfg(feature = "kubelet-api")]
                    if let Some(api) = &self.kubelet_api
                        && let Err(error) = api.serve(running.view()).await
                    {
                        tracing::warn!(node = %name, %error, "cannot serve the node's kubelet API");
                    }
                    return Some(running);
                }
                Err(crate::node::Error::NodeMissing(_)) => return None,
                Err(crate::node::Error::Version(crate::version::VersionError::TooOld {
                    version,
                    oldest,
                })) => {
                    tracing::error!(node = %name, %version, oldest = %format!("1.{oldest}"), "cannot serve the Node: the API server is older than any kubelet hollow knows");
                    return None;
                }
                Err(error) => {
                    tracing::warn!(node = %name, error = %format!("{error:#}"), "cannot start serving the Node; retrying");
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(60))).await;
                }
            }
        }
    }

    /// Stops serving the Node `name`: aborts its start, or stops its hollow node.
    fn stop(&self, name: &str) {
        let Some(slot) = self.managed.lock().remove(name) else {
            return;
        };
        if let Some(starting) = slot.starting {
            starting.abort();
        }
        if let Some(node) = slot.node {
            self.retire(name, node);
        }
    }

    fn stop_all(&self) {
        let names: Vec<String> = self.managed.lock().keys().cloned().collect();
        for name in names {
            self.stop(&name);
        }
    }

    /// Stops a hollow node no longer wanted, in the background, and its kubelet API.
    fn retire(&self, name: &str, node: Arc<RunningNode>) {
        // Not when a Node of the same name was made again and is served since: the
        // server knows nodes by name. (This one's entry, stopped, then answers as a
        // stopped node until the address is taken.)
        #[cfg(feature = "kubelet-api")]
        if let Some(api) = &self.kubelet_api
            && !self.managed.lock().contains_key(name)
        {
            api.stop_serving(name);
        }
        #[cfg(not(feature = "kubelet-api"))]
        let _ = name;
        // Its last handle, unless a reader holds one for a moment: dropped, it stops
        // all the same.
        if let Ok(node) = Arc::try_unwrap(node) {
            self.tasks.spawn(node.shutdown());
        }
    }
}

fn name_of(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}
