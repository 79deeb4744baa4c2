//! Many hollow nodes in one process, sharing one client and one pod watch.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pods::PodRouter;
use super::{Error, HollowNode, HollowNodeBuilder, RunningNode};

/// The name of node `index` of a cluster: `<prefix>-<index>`.
fn node_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index}")
}

/// The names of the nodes of a process serving `count` nodes under `name`: `name` itself
/// for one node, `<name>-0` .. `<name>-(count-1)` (as [`HollowCluster`] names them) for
/// more. `hollow-kubelet` and `hollow-proxy` both name their nodes so, which is what
/// pairs a proxy with its kubelet.
///
/// ```
/// use hollow_core::node::process_node_names;
///
/// assert_eq!(process_node_names("solo", 1), ["solo"]);
/// assert_eq!(process_node_names("hollow", 2), ["hollow-0", "hollow-1"]);
/// ```
pub fn process_node_names(name: &str, count: usize) -> Vec<String> {
    if count == 1 {
        vec![name.to_string()]
    } else {
        (0..count).map(|index| node_name(name, index)).collect()
    }
}

/// How many nodes [`HollowCluster::deregister`] deletes at once.
const DEREGISTRATION_PARALLELISM: usize = 32;

type Configure = Box<dyn Fn(usize, HollowNodeBuilder) -> HollowNodeBuilder + Send + Sync>;
type Progress = Box<dyn Fn(usize, usize) + Send + Sync>;

/// Where each node's own client comes from, when the nodes of a [`HollowCluster`] talk
/// to the API server as themselves (`system:node:<name>`) rather than on the process's
/// credentials: [`TlsBootstrap`](crate::bootstrap::TlsBootstrap) (feature
/// `tls-bootstrap`) does the kubelet's TLS bootstrap.
///
/// ```
/// use hollow_core::node::NodeCredentials;
///
/// /// Clients from kubeconfigs written beforehand, one per node.
/// struct Kubeconfigs(std::path::PathBuf);
///
/// #[async_trait::async_trait]
/// impl NodeCredentials for Kubeconfigs {
///     async fn client_for(
///         &self,
///         node: &str,
///     ) -> Result<kube::Client, Box<dyn std::error::Error + Send + Sync>> {
///         let kubeconfig = kube::config::Kubeconfig::read_from(self.0.join(node))?;
///         let options = kube::config::KubeConfigOptions::default();
///         let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
///         Ok(kube::Client::try_from(config)?)
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait NodeCredentials: Send + Sync {
    /// A client that talks as `node`.
    async fn client_for(
        &self,
        node: &str,
    ) -> Result<kube::Client, Box<dyn std::error::Error + Send + Sync>>;
}

/// Configures a [`HollowCluster`].
///
/// ```
/// use hollow_core::node::HollowCluster;
///
/// let builder = HollowCluster::builder("hollow")
///     .nodes(3, |i, node| node.label("topology.kubernetes.io/zone", ["a", "b", "c"][i]))
///     .parallelism(16);
/// # drop(builder);
/// ```
#[must_use]
pub struct HollowClusterBuilder {
    prefix: String,
    count: usize,
    configure: Configure,
    parallelism: usize,
    progress: Option<Progress>,
    ready_timeout: Option<Duration>,
    credentials: Option<Arc<dyn NodeCredentials>>,
}

impl std::fmt::Debug for HollowClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HollowClusterBuilder")
            .field("prefix", &self.prefix)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl HollowClusterBuilder {
    /// `count` nodes named `<prefix>-0` .. `<prefix>-<count-1>`, each configured by
    /// `configure(index, builder)`.
    pub fn nodes(
        mut self,
        count: usize,
        configure: impl Fn(usize, HollowNodeBuilder) -> HollowNodeBuilder + Send + Sync + 'static,
    ) -> Self {
        self.count = count;
        self.configure = Box::new(configure);
        self
    }

    /// How many nodes register at once (default 64).
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism.max(1);
        self
    }

    /// Calls `progress(ready, total)` each time another node is Ready.
    pub fn on_progress(mut self, progress: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// How long each node may take to be Ready once it starts registering, for every
    /// node (default: each node's own [`HollowNodeBuilder::ready_timeout`]).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = Some(timeout);
        self
    }

    /// Each node talks as itself, on the client `credentials` gives it, as kubelets do:
    /// it registers, renews its Lease, writes its pods' status and watches its own pods
    /// and Node (`spec.nodeName=<name>`, `metadata.name=<name>`, all a node may watch
    /// under the Node authorizer) on that client; the process shares no watch. The
    /// client given to [`start`](Self::start) is then not used by the nodes. A node may
    /// not delete its own Node object (the Node authorizer lets it create, update and
    /// patch it), so [`HollowCluster::deregister`] fails under NodeRestriction: stop the
    /// nodes with [`HollowCluster::shutdown`] and delete them with other credentials
    /// ([`deregister`](crate::node::deregister)), as `hollow-kubelet` does.
    ///
    /// ```no_run
    /// # #[cfg(feature = "tls-bootstrap")]
    /// # async fn run(bootstrap: kube::Config, client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use hollow_core::bootstrap::TlsBootstrap;
    /// use hollow_core::node::HollowCluster;
    ///
    /// let cluster = HollowCluster::builder("hollow")
    ///     .nodes(100, |_, node| node)
    ///     .credentials(TlsBootstrap::new(bootstrap)?)
    ///     .start(client)
    ///     .await?;
    /// # drop(cluster); Ok(()) }
    /// ```
    pub fn credentials(mut self, credentials: impl NodeCredentials + 'static) -> Self {
        self.credentials = Some(Arc::new(credentials));
        self
    }

    /// Registers every node, starts one pod watch for all of them (or, with
    /// [`credentials`](Self::credentials), one per node on its own client), and returns
    /// once every node is Ready, as [`HollowNode::start`] does for one; a node not Ready
    /// within its ready timeout fails the start with [`Error::NotReady`] (the nodes
    /// started so far are stopped).
    pub async fn start(self, client: kube::Client) -> Result<HollowCluster, Error> {
        let ready_timeout = self.ready_timeout;
        let nodes: Vec<HollowNode> = (0..self.count)
            .map(|i| {
                let mut node = (self.configure)(i, HollowNode::builder(node_name(&self.prefix, i)));
                if let Some(timeout) = ready_timeout {
                    node = node.ready_timeout(timeout);
                }
                node.build()
            })
            .collect::<Result<_, _>>()?;
        let router = Arc::new(PodRouter::default());
        let server = crate::version::ServerVersion::default();
        let cancel = CancellationToken::new();
        let credentials = self.credentials;
        let watch = credentials.is_none().then(|| {
            let pod_watch =
                router
                    .clone()
                    .run(client.clone(), "spec.nodeName!=".into(), cancel.clone());
            let node_watch = router
                .clone()
                .run_nodes(client.clone(), None, cancel.clone());
            tokio::spawn(async move {
                futures::join!(pod_watch, node_watch);
            })
        });
        let cluster = HollowCluster {
            nodes: Vec::with_capacity(nodes.len()),
            cancel,
            watch,
        };
        let total = nodes.len();
        let mut started = futures::stream::iter(nodes.into_iter().enumerate())
            .map(|(index, node)| {
                let (client, router, server) = (client.clone(), router.clone(), server.clone());
                let credentials = credentials.clone();
                async move {
                    let ready_timeout = node.ready_timeout;
                    let node = match credentials {
                        None => node.start_with(client, router, true, &server).await?,
                        Some(credentials) => {
                            let name = node.name().to_string();
                            let own = credentials.client_for(&name).await.map_err(|source| {
                                Error::Credentials {
                                    node: name.clone(),
                                    source,
                                }
                            })?;
                            let node = node.start_with(own.clone(), router, false, &server).await?;
                            node.watch_own(own);
                            node
                        }
                    };
                    node.wait_ready(ready_timeout).await?;
                    Ok::<_, Error>((index, node))
                }
            })
            .buffer_unordered(self.parallelism);
        let mut ready = Vec::with_capacity(total);
        let mut cluster = cluster;
        while let Some(result) = started.next().await {
            ready.push(result?);
            if let Some(progress) = &self.progress {
                progress(ready.len(), total);
            }
        }
        drop(started);
        ready.sort_by_key(|(index, _)| *index);
        cluster.nodes = ready.into_iter().map(|(_, node)| node).collect();
        Ok(cluster)
    }
}

/// Many hollow nodes sharing one client and one pod watch. Dropping it stops them.
///
/// With thousands of nodes, give it a client that caps the requests in flight (tower's
/// `ConcurrencyLimitLayer` through `kube::client::ClientBuilder::with_layer`) and speaks
/// HTTP/2 over a few connections ([`crate::connect::pooled_client`] with
/// [`ConnectionPool::for_nodes`](crate::connect::ConnectionPool::for_nodes)), as
/// `hollow-kubelet` does: kube's own HTTP/1.1 client opens a connection for every
/// request that waits on a slow API server, and keeps them all.
pub struct HollowCluster {
    nodes: Vec<RunningNode>,
    cancel: CancellationToken,
    watch: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HollowCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HollowCluster")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl HollowCluster {
    /// A builder of nodes named `<prefix>-<index>`.
    pub fn builder(prefix: impl Into<String>) -> HollowClusterBuilder {
        HollowClusterBuilder {
            prefix: prefix.into(),
            count: 1,
            configure: Box::new(|_, node| node),
            parallelism: 64,
            progress: None,
            ready_timeout: None,
            credentials: None,
        }
    }

    /// The node at `index`, in the order the builder named them.
    ///
    /// # Panics
    ///
    /// If `index` is out of range; [`HollowCluster::get`] looks a node up by name.
    pub fn node(&self, index: usize) -> &RunningNode {
        &self.nodes[index]
    }

    /// The node named `name`, if it is one of these.
    ///
    /// ```no_run
    /// # async fn run(client: kube::Client) -> Result<(), hollow_core::node::Error> {
    /// use hollow_core::node::HollowCluster;
    ///
    /// let cluster = HollowCluster::builder("hollow").nodes(2, |_, node| node).start(client).await?;
    /// assert!(cluster.get("hollow-1").is_some());
    /// assert!(cluster.get("hollow-2").is_none());
    /// # Ok(()) }
    /// ```
    pub fn get(&self, name: &str) -> Option<&RunningNode> {
        self.nodes.iter().find(|node| node.name() == name)
    }

    /// All nodes.
    pub fn nodes(&self) -> &[RunningNode] {
        &self.nodes
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Stops every node, as [`HollowCluster::shutdown`], then deletes their Node objects
    /// and Leases ([`RunningNode::deregister`]). Every node is tried; the first error is
    /// returned.
    pub async fn deregister(mut self) -> Result<(), Error> {
        self.cancel.cancel();
        let nodes = std::mem::take(&mut self.nodes);
        let deregistered = futures::stream::iter(nodes)
            .map(RunningNode::deregister)
            .buffer_unordered(DEREGISTRATION_PARALLELISM)
            .collect::<Vec<_>>()
            .await;
        self.shutdown().await;
        deregistered.into_iter().collect()
    }

    /// Stops every node and the shared watch. The Node objects stay, and go NotReady
    /// once their Leases expire, as stopped kubelets' would.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for node in std::mem::take(&mut self.nodes) {
            node.shutdown().await;
        }
        if let Some(watch) = self.watch.take() {
            let _ = watch.await;
        }
    }
}

impl From<RunningNode> for HollowCluster {
    /// One node, on its own pod watch, as a set of nodes: a program that runs one node
    /// or many handles both alike.
    fn from(node: RunningNode) -> Self {
        HollowCluster {
            nodes: vec![node],
            cancel: CancellationToken::new(),
            watch: None,
        }
    }
}

impl Drop for HollowCluster {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
