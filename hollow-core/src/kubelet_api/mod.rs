//! The kubelet HTTP API, served for hollow nodes: what the API server, `kubectl logs`
//! and metrics-server talk to.
//!
//! One [`KubeletServer`] serves every node of a process, each given to it as a
//! read-only [`NodeView`] ([`KubeletServer::serve`]): the node engine does not know
//! the server exists. Each node is reached at its
//! address and kubelet port (as published in its `daemonEndpoints`); nodes on the same
//! port share one listener, which tells them apart by the address a connection came
//! in on. Every request is over TLS and must be authenticated (a client certificate
//! signed by the cluster's client CA, or a bearer token checked with a TokenReview) and
//! authorised (a SubjectAccessReview on the node's `stats`, `metrics`, `log`, `pods`,
//! `healthz` or `proxy` subresource), as the kubelet's webhook mode does; anonymous
//! requests get 401.
//!
//! | path | what |
//! |---|---|
//! | `/healthz` | `ok` |
//! | `/pods` | the node's pods, as a PodList |
//! | `/stats/summary` | the Summary API, from the node's `Cadvisor` |
//! | `/metrics/resource` | the resource metrics metrics-server scrapes |
//! | `/metrics` | the kubelet's own metrics (running pods and containers) |
//! | `/containerLogs/{ns}/{pod}/{container}` | logs from the `RuntimeService`, with `tailLines`, `limitBytes`, `sinceSeconds`, `sinceTime`, `timestamps`, `previous` and `follow` |
//! | `/exec/{ns}/{pod}/{container}`, `/attach/...` | `kubectl exec` and `kubectl attach`: the `RuntimeService`'s [`Process`](crate::runtime::Process), over SPDY/3.1 |
//! | `/portForward/{ns}/{pod}` | `kubectl port-forward`: the `RuntimeService`'s [`PortStream`](crate::runtime::PortStream), over SPDY/3.1 |
//! | `/run` | 501 (deprecated in the kubelet; use exec) |
//!
//! ```no_run
//! use hollow_core::kubelet_api::KubeletServer;
//! use hollow_core::node::HollowNode;
//!
//! # async fn run(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
//! // The client CA comes from kube-system/extension-apiserver-authentication.
//! let api = KubeletServer::builder().start(client.clone()).await?;
//! let node = HollowNode::builder("hollow-0")
//!     .address("127.1.0.1".parse()?)
//!     .build()?
//!     .start(client)
//!     .await?;
//! api.serve(node.view()).await?;
//! // kubectl logs, kubectl top (with metrics-server) now reach the node.
//! # drop(node); Ok(()) }
//! ```

mod auth;
mod connection;
mod logs;
#[cfg(test)]
mod query_fuzz;
mod routes;
mod spdy;
mod stats;
mod streaming;
mod tls;
mod websocket;

use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::node::NodeView;
use auth::Auth;
use connection::connection;
use routes::router;
use stats::NodeCpu;

/// Errors of the kubelet API server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The serving certificate or key is unusable.
    #[error("kubelet API TLS: {0}")]
    Tls(String),
    /// The client CA is missing or unusable.
    #[error("kubelet API client CA: {0}")]
    ClientCa(String),
    /// The port could not be bound.
    #[error("cannot listen on {address} for the kubelet API")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another node of this process already serves this address and port.
    #[error("node {node} already serves the kubelet API at {address}")]
    Taken {
        /// The other node.
        node: String,
        /// The address and port.
        address: SocketAddr,
    },
}

/// Configures a [`KubeletServer`].
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct KubeletServerBuilder {
    client_ca_pem: Option<Vec<u8>>,
    serving: Option<(Vec<u8>, Vec<u8>)>,
    bind: Option<IpAddr>,
    idle_timeout: Option<Duration>,
}

impl KubeletServerBuilder {
    /// The CA bundle client certificates must chain to (the kubelet's
    /// `--client-ca-file`). By default it is read from the API server's
    /// `kube-system/extension-apiserver-authentication` ConfigMap.
    pub fn client_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client_ca_pem = Some(pem.into());
        self
    }

    /// The serving certificate and key, PEM (the kubelet's `--tls-cert-file` and
    /// `--tls-private-key-file`). By default a self-signed one is made for the process.
    pub fn serving_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.serving = Some((cert.into(), key.into()));
        self
    }

    /// The address listeners bind (the kubelet's `--address`; default `0.0.0.0`, so
    /// each node is reached at its own address).
    pub fn bind_address(mut self, ip: IpAddr) -> Self {
        self.bind = Some(ip);
        self
    }

    /// How long a connection may wait for its next request before it is closed
    /// (default [`KubeletServer::DEFAULT_IDLE_TIMEOUT`]). A real kubelet keeps idle
    /// connections open; here each costs about 20 KiB, and metrics-server keeps one to
    /// every node, which at thousands of nodes in a process is most of its memory. A
    /// client whose connection was closed opens another on its next request.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hollow_core::kubelet_api::KubeletServer;
    ///
    /// let keep_for_a_minute = KubeletServer::builder().idle_timeout(Duration::from_secs(60));
    /// # drop(keep_for_a_minute);
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Reads the client CA if needed and prepares TLS; listeners open as nodes register.
    pub async fn start(self, client: kube::Client) -> Result<KubeletServer, Error> {
        let client_ca = match self.client_ca_pem {
            Some(pem) => pem,
            None => cluster_client_ca(&client).await?,
        };
        let (cert, key) = match self.serving {
            Some(pair) => pair,
            None => {
                let (cert, key) = tls::self_signed()?;
                (cert.into_bytes(), key.into_bytes())
            }
        };
        let tls = tls::server_config(&cert, &key, &client_ca)?;
        let inner = Arc::new(Inner {
            auth: Auth::new(client),
            tls: tokio_rustls::TlsAcceptor::from(tls),
            bind: self.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            idle_timeout: self
                .idle_timeout
                .unwrap_or(KubeletServer::DEFAULT_IDLE_TIMEOUT),
            listeners: parking_lot::Mutex::new(HashMap::new()),
            nodes: RwLock::new(HashMap::new()),
        });
        Ok(KubeletServer {
            inner,
            guard: Arc::new(Guard(CancellationToken::new())),
        })
    }
}

/// The client CA the API server itself trusts for client certificates.
async fn cluster_client_ca(client: &kube::Client) -> Result<Vec<u8>, Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let map = maps
        .get("extension-apiserver-authentication")
        .await
        .map_err(|e| {
            Error::ClientCa(format!(
                "cannot read kube-system/extension-apiserver-authentication ({e}); give the CA explicitly"
            ))
        })?;
    map.data
        .and_then(|mut data| data.remove("client-ca-file"))
        .map(String::into_bytes)
        .ok_or_else(|| {
            Error::ClientCa(
                "kube-system/extension-apiserver-authentication has no client-ca-file".into(),
            )
        })
}

/// The kubelet API of every hollow node of a process. A clone is a handle on the same
/// server; when the last handle goes, the listeners close.
#[derive(Clone)]
pub struct KubeletServer {
    inner: Arc<Inner>,
    guard: Arc<Guard>,
}

impl std::fmt::Debug for KubeletServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletServer")
            .field("bind", &self.inner.bind)
            .finish_non_exhaustive()
    }
}

/// Stops the listeners when the last handle is dropped.
struct Guard(CancellationToken);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

struct Inner {
    auth: Auth,
    tls: tokio_rustls::TlsAcceptor,
    bind: IpAddr,
    idle_timeout: Duration,
    /// Listening ports, and whether each still has nodes.
    listeners: parking_lot::Mutex<HashMap<u16, CancellationToken>>,
    nodes: RwLock<HashMap<(IpAddr, u16), Arc<Served>>>,
}

/// A node as the server sees it.
pub(crate) struct Served {
    node: NodeView,
    cpu: NodeCpu,
}

impl KubeletServer {
    /// How long a connection may wait for its next request unless
    /// [`KubeletServerBuilder::idle_timeout`] says otherwise: under the shortest scrape
    /// interval metrics-server allows (10 s; 60 s by default), so the connections it
    /// keeps are closed between scrapes, and long enough for a burst of requests to
    /// share one.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

    /// A builder with the defaults (client CA from the cluster, self-signed serving
    /// certificate, listeners on `0.0.0.0`).
    ///
    /// ```
    /// use hollow_core::kubelet_api::KubeletServer;
    ///
    /// let builder = KubeletServer::builder().bind_address("127.0.0.1".parse().unwrap());
    /// # drop(builder);
    /// ```
    pub fn builder() -> KubeletServerBuilder {
        KubeletServerBuilder::default()
    }

    /// Opens the listener for `port` now (0: any free port) and returns the port, so a
    /// busy port shows before any node registers. Nodes registered on it later share it.
    pub async fn listen(&self, port: u16) -> Result<u16, Error> {
        let address = SocketAddr::new(self.inner.bind, port);
        if port != 0 && self.listening(port) {
            return Ok(port);
        }
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Bind { address, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| Error::Bind { address, source })?
            .port();
        self.adopt_listener(listener, port);
        Ok(port)
    }

    fn listening(&self, port: u16) -> bool {
        self.inner.listeners.lock().contains_key(&port)
    }

    /// Starts accepting on `listener` unless `port` is served already (then it closes).
    fn adopt_listener(&self, listener: TcpListener, port: u16) {
        let mut listeners = self.inner.listeners.lock();
        if listeners.contains_key(&port) {
            return;
        }
        let stop = self.guard.0.child_token();
        listeners.insert(port, stop.clone());
        tokio::spawn(accept(Arc::downgrade(&self.inner), listener, port, stop));
    }

    /// Serves `node` at its kubelet address and port, opening the port's listener if
    /// no other node has. Any number of nodes may be served; a node that stops is no
    /// longer served (its address may be taken by another), and
    /// [`KubeletServer::stop_serving`] closes a port that no node needs.
    ///
    /// ```no_run
    /// use hollow_core::kubelet_api::KubeletServer;
    /// use hollow_core::node::HollowNode;
    ///
    /// # async fn run(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let api = KubeletServer::builder().start(client.clone()).await?;
    /// let node = HollowNode::builder("hollow-0")
    ///     .address("127.1.0.1".parse()?)
    ///     .build()?
    ///     .start(client)
    ///     .await?;
    /// api.serve(node.view()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve(&self, node: NodeView) -> Result<(), Error> {
        let ip = node.kubelet_address();
        let port = node.kubelet_port();
        {
            let mut nodes = self.inner.nodes.write();
            if let Some(other) = nodes.get(&(ip, port))
                && other.node.is_running()
                && other.node.name() != node.name()
            {
                return Err(Error::Taken {
                    node: other.node.name().to_string(),
                    address: SocketAddr::new(ip, port),
                });
            }
            nodes.insert(
                (ip, port),
                Arc::new(Served {
                    node,
                    cpu: NodeCpu::new(),
                }),
            );
        }
        if self.listening(port) {
            return Ok(());
        }
        let address = SocketAddr::new(self.inner.bind, port);
        let listener = match TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(source) => {
                self.inner.nodes.write().remove(&(ip, port));
                return Err(Error::Bind { address, source });
            }
        };
        self.adopt_listener(listener, port);
        Ok(())
    }

    /// Stops serving the node named `name`; a port without nodes closes.
    pub fn stop_serving(&self, name: &str) {
        let ports: Vec<u16> = {
            let mut nodes = self.inner.nodes.write();
            nodes.retain(|_, served| served.node.name() != name);
            nodes.keys().map(|(_, port)| *port).collect()
        };
        let mut listeners = self.inner.listeners.lock();
        listeners.retain(|port, stop| {
            let keep = ports.contains(port);
            if !keep {
                stop.cancel();
            }
            keep
        });
    }
}

impl Inner {
    /// The node a connection to `local` is for: the one at that address and port, or
    /// the only one on the port.
    fn node_for(&self, local: SocketAddr) -> Option<Arc<Served>> {
        let nodes = self.nodes.read();
        if let Some(served) = nodes.get(&(local.ip(), local.port()))
            && served.node.is_running()
        {
            return Some(served.clone());
        }
        let mut on_port = nodes
            .iter()
            .filter(|((_, port), served)| *port == local.port() && served.node.is_running());
        match (on_port.next(), on_port.next()) {
            (Some((_, only)), None) => Some(only.clone()),
            _ => None,
        }
    }
}

async fn accept(inner: Weak<Inner>, listener: TcpListener, port: u16, stop: CancellationToken) {
    // Built with the first connection and shared by all: a router is several KiB, and
    // a process serving thousands of nodes keeps a connection open for each.
    let mut shared_router: Option<Router> = None;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(port, %error, "kubelet API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        let router = shared_router
            .get_or_insert_with(|| router(inner.clone()))
            .clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                () = connection(inner, router, stream) => {}
            }
        });
    }
}
