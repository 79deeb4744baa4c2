//! The kubelet HTTP API, served for hollow nodes: what the API server, `kubectl logs`
//! and metrics-server talk to.
//!
//! One [`KubeletServer`] serves every node of a process. Each node is reached at its
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
//!     .kubelet_api(api.clone())
//!     .build()?
//!     .start(client)
//!     .await?;
//! // kubectl logs, kubectl top (with metrics-server) now reach the node.
//! # drop(node); Ok(()) }
//! ```

mod auth;
mod logs;
mod spdy;
mod stats;
mod streaming;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::node::NodeShared;
use auth::{Auth, Identity, Refusal};
use stats::NodeCpu;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
            listeners: std::sync::Mutex::new(HashMap::new()),
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
    listeners: std::sync::Mutex<HashMap<u16, CancellationToken>>,
    nodes: RwLock<HashMap<(IpAddr, u16), Arc<Served>>>,
}

/// A node as the server sees it.
pub(crate) struct Served {
    shared: Arc<NodeShared>,
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
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&port)
    }

    /// Starts accepting on `listener` unless `port` is served already (then it closes).
    fn adopt_listener(&self, listener: TcpListener, port: u16) {
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if listeners.contains_key(&port) {
            return;
        }
        let stop = self.guard.0.child_token();
        listeners.insert(port, stop.clone());
        tokio::spawn(accept(Arc::downgrade(&self.inner), listener, port, stop));
    }

    /// Serves `shared` at its first address and its kubelet port.
    pub(crate) async fn register(&self, shared: Arc<NodeShared>) -> Result<(), Error> {
        let ip = shared
            .config
            .addresses
            .first()
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let port = shared.config.kubelet_port;
        {
            let mut nodes = self.inner.nodes.write().unwrap_or_else(|p| p.into_inner());
            if let Some(other) = nodes.get(&(ip, port))
                && other.shared.config.name != shared.config.name
            {
                return Err(Error::Taken {
                    node: other.shared.config.name.clone(),
                    address: SocketAddr::new(ip, port),
                });
            }
            nodes.insert(
                (ip, port),
                Arc::new(Served {
                    shared,
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
                self.inner
                    .nodes
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(ip, port));
                return Err(Error::Bind { address, source });
            }
        };
        self.adopt_listener(listener, port);
        Ok(())
    }

    /// Stops serving the node named `name`; a port without nodes closes.
    pub(crate) fn unregister(&self, name: &str) {
        let ports: Vec<u16> = {
            let mut nodes = self.inner.nodes.write().unwrap_or_else(|p| p.into_inner());
            nodes.retain(|_, served| served.shared.config.name != name);
            nodes.keys().map(|(_, port)| *port).collect()
        };
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner());
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
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        if let Some(served) = nodes.get(&(local.ip(), local.port())) {
            return Some(served.clone());
        }
        let mut on_port = nodes.iter().filter(|((_, port), _)| *port == local.port());
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

/// What the middleware and handlers know of a connection.
#[derive(Clone)]
struct Connection {
    served: Arc<Served>,
    certificate: Option<Identity>,
}

async fn connection(inner: Arc<Inner>, router: Router, stream: tokio::net::TcpStream) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let Some(served) = inner.node_for(local) else {
        tracing::debug!(%local, "kubelet API connection for no node");
        return;
    };
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, inner.tls.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, "kubelet API TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(tls::identity)
        .map(|(user, groups)| Identity::from_certificate(user, groups));
    let connection = Connection {
        served,
        certificate,
    };
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(connection.clone());
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
    // The header read timeout runs while the connection waits for a request, the first
    // or the next: an idle connection is closed when it expires.
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(inner.idle_timeout)
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "kubelet API connection ended");
    }
}

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/stats/summary", get(summary))
        .route("/metrics/resource", get(resource_metrics))
        .route("/metrics", get(metrics))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route(
            "/exec/{*rest}",
            any(|path, query, request| exec_or_attach(streaming::Kind::Exec, path, query, request)),
        )
        .route(
            "/attach/{*rest}",
            any(|path, query, request| {
                exec_or_attach(streaming::Kind::Attach, path, query, request)
            }),
        )
        .route("/portForward/{*rest}", any(port_forward))
        .route("/run/{*rest}", any(unsupported))
        .layer(middleware::from_fn_with_state(inner, authorize))
}

/// Authenticates and authorises every request before it reaches a handler.
async fn authorize(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    let Some(connection) = request.extensions().get::<Connection>().cloned() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let node = connection.served.shared.config.name.clone();
    let verb = auth::verb(request.method());
    let subresources = auth::subresources(request.uri().path());
    let outcome = async {
        let identity = inner
            .auth
            .authenticate(connection.certificate.as_ref(), authorization.as_deref())
            .await?;
        inner
            .auth
            .authorize(&identity, verb, subresources, &node)
            .await
    }
    .await;
    match outcome {
        Ok(()) => next.run(request).await,
        Err(Refusal::Unauthorized) => (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
        Err(Refusal::Forbidden(reason)) => {
            (StatusCode::FORBIDDEN, format!("Forbidden ({reason})")).into_response()
        }
        Err(Refusal::Unavailable(reason)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, reason).into_response()
        }
    }
}

fn served(request: &axum::http::Extensions) -> Option<Arc<Served>> {
    request.get::<Connection>().map(|c| c.served.clone())
}

async fn pods(request: Request) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let items: Vec<serde_json::Value> = served
        .shared
        .pods()
        .iter()
        .filter_map(|pod| serde_json::to_value(pod.as_ref()).ok())
        .collect();
    let list = serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    });
    axum::Json(list).into_response()
}

async fn summary(request: Request) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match stats::sample(&served.shared, &served.cpu).await {
        Ok(sample) => axum::Json(stats::summary(&served.shared, &sample)).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn resource_metrics(request: Request) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match stats::sample(&served.shared, &served.cpu).await {
        Ok(sample) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            stats::resource_metrics(&sample),
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn metrics(request: Request) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let shared = &served.shared;
    let pods = shared.pods().len();
    let containers = shared
        .config
        .runtime
        .list_containers(None)
        .await
        .map(|all| {
            all.iter()
                .filter(|c| matches!(c.state, crate::runtime::ContainerState::Running { .. }))
                .count()
        })
        .unwrap_or(0);
    let text = format!(
        "# HELP kubelet_node_name [ALPHA] The node's name. The count is always 1.\n\
         # TYPE kubelet_node_name gauge\n\
         kubelet_node_name{{node=\"{}\"}} 1\n\
         # HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox\n\
         # TYPE kubelet_running_pods gauge\n\
         kubelet_running_pods {pods}\n\
         # HELP kubelet_running_containers [ALPHA] Number of containers currently running\n\
         # TYPE kubelet_running_containers gauge\n\
         kubelet_running_containers{{container_state=\"running\"}} {containers}\n",
        shared.config.name
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn container_logs(
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<logs::LogQuery>,
    request: Request,
) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    logs::container_logs(served.shared.clone(), namespace, pod, container, query).await
}

/// `/exec/...` and `/attach/...`.
async fn exec_or_attach(
    kind: streaming::Kind,
    Path(rest): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let shared = served.shared.clone();
    streaming::exec_or_attach(shared, kind, rest, query, request).await
}

async fn port_forward(Path(rest): Path<String>, request: Request) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let shared = served.shared.clone();
    streaming::port_forward(shared, rest, request).await
}

async fn unsupported(request: Request) -> Response {
    let what = request
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    (
        StatusCode::NOT_IMPLEMENTED,
        format!("{what} is not supported by the hollow kubelet: use exec"),
    )
        .into_response()
}
