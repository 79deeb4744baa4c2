//! Reaching a cluster the way a kubelet does: from kubeconfig files, or from the
//! in-cluster service account, and waiting for the API server with backoff.
//!
//! ```no_run
//! use std::time::Duration;
//! use hollow_core::connect::{cluster_config, wait_for_api};
//!
//! # async fn run() -> Result<(), hollow_core::connect::ConnectError> {
//! if let Some(config) = cluster_config(None).await? {
//!     let client = kube::Client::try_from(config).expect("a valid configuration");
//!     wait_for_api(&client, Duration::from_secs(60)).await?;
//! }
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::backoff::Doubling;

mod spread;

pub use self::spread::Open;
use self::spread::{Counted, Spread};

/// Why a cluster could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A kubeconfig file could not be read or parsed.
    #[error("cannot read kubeconfig {}", path.display())]
    ReadKubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig files do not make a usable configuration.
    #[error("invalid kubeconfig {}", path.display())]
    InvalidKubeconfig {
        /// The files, as given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The in-cluster service account cannot be used.
    #[error("cannot use the in-cluster service account")]
    InCluster(#[source] kube::config::InClusterError),
    /// The API server did not answer in time.
    #[error(
        "cannot reach the API server after {attempts} attempts over {seconds:.0}s: {last_error}"
    )]
    Unreachable {
        /// How many requests were tried.
        attempts: u32,
        /// Over how long.
        seconds: f64,
        /// What the last one said.
        last_error: String,
    },
}

/// The client configuration for a cluster: from `kubeconfig` (a `KUBECONFIG`-style list
/// of files, merged), else from the in-cluster service account when running in a pod;
/// `None` when neither is given.
pub async fn cluster_config(
    kubeconfig: Option<&Path>,
) -> Result<Option<kube::Config>, ConnectError> {
    if let Some(paths) = kubeconfig {
        let mut merged: Option<Kubeconfig> = None;
        for path in std::env::split_paths(paths) {
            let file =
                Kubeconfig::read_from(&path).map_err(|source| ConnectError::ReadKubeconfig {
                    path: path.clone(),
                    source,
                })?;
            merged = Some(match merged {
                None => file,
                Some(base) => {
                    base.merge(file)
                        .map_err(|source| ConnectError::InvalidKubeconfig {
                            path: paths.to_path_buf(),
                            source,
                        })?
                }
            });
        }
        let kubeconfig = merged.unwrap_or_default();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| ConnectError::InvalidKubeconfig {
                    path: paths.to_path_buf(),
                    source,
                })?;
        return Ok(Some(config));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return kube::Config::incluster()
            .map(Some)
            .map_err(ConnectError::InCluster);
    }
    Ok(None)
}

/// The service under a [`pooled_client`]: kube's own client stack, boxed.
pub type ClientService = tower::util::BoxService<
    http::Request<kube::client::Body>,
    http::Response<Box<kube::client::DynBody>>,
    tower::BoxError,
>;

/// How a [`pooled_client`] connects to the API server.
///
/// With `http2` (the default) the client offers HTTP/2 as client-go, and so a real
/// kubelet, does, and keeps up to `connections` connections, each carrying many
/// requests at once. A request goes to the first connection with fewer than
/// [`REQUESTS_PER_CONNECTION`](Self::REQUESTS_PER_CONNECTION) requests in flight (to the
/// least busy one when all have that many), and a connection left unused for
/// `idle_timeout` closes. Steady heartbeats of thousands of nodes go over one
/// connection (5,000 nodes registered over one in 14 s), and a burst that a connection
/// cannot carry (the API server lets each have only so many requests in flight, and
/// handles its frames in one goroutine) spills onto more, which close once it is over:
/// each connection kept costs memory.
///
/// Over HTTP/1.1 (when `http2` is off, or the server does not offer it) each request in
/// flight needs a connection of its own; at most `max_idle` of those are kept once
/// idle, each closed after `idle_timeout` unused.
///
/// ```
/// use hollow_core::connect::ConnectionPool;
///
/// let http1 = ConnectionPool { http2: false, max_idle: 64, ..Default::default() };
/// assert_eq!(http1.idle_timeout, ConnectionPool::default().idle_timeout);
/// let for_5000_nodes = ConnectionPool::for_nodes(5000);
/// assert_eq!(for_5000_nodes.connections, 50);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPool {
    /// Offer HTTP/2 (ALPN `h2`), falling back to HTTP/1.1.
    pub http2: bool,
    /// HTTP/2 connections the requests may be spread over, at most (at least one):
    /// each is opened when those before it have
    /// [`REQUESTS_PER_CONNECTION`](Self::REQUESTS_PER_CONNECTION) streams open
    /// (requests in flight, and watches, which hold theirs while they run).
    pub connections: usize,
    /// Idle HTTP/1.1 connections kept at most.
    pub max_idle: usize,
    /// How long an unused connection is kept.
    pub idle_timeout: Duration,
}

impl Default for ConnectionPool {
    /// HTTP/2 over one connection; over HTTP/1.1, 16 idle connections kept for 30 s.
    fn default() -> Self {
        Self {
            http2: true,
            connections: 1,
            max_idle: 16,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl ConnectionPool {
    /// Nodes one HTTP/2 connection serves in [`ConnectionPool::for_nodes`].
    pub const NODES_PER_CONNECTION: usize = 100;

    /// Streams open on an HTTP/2 connection (requests in flight, watches running)
    /// before the next connection takes requests too: under the 100 streams an API
    /// server allows a connection by default (`--http2-max-streams-per-connection`), so
    /// requests do not wait for a stream while a connection is free.
    pub const REQUESTS_PER_CONNECTION: usize = 64;

    /// The default, with an HTTP/2 connection for every
    /// [`NODES_PER_CONNECTION`](Self::NODES_PER_CONNECTION) nodes (at most 64).
    pub fn for_nodes(nodes: usize) -> Self {
        Self {
            connections: nodes.div_ceil(Self::NODES_PER_CONNECTION).clamp(1, 64),
            ..Self::default()
        }
    }
}

/// A User-Agent in client-go's form, `<program>/<version> (<os>/<arch>) hollow/<commit>`
/// (the kubelet's is `kubelet/v1.36.5 (linux/amd64) kubernetes/<commit>`), so the
/// requests of hollow's processes are told apart in audit logs, flow schemas and
/// `managedFields` (whose manager is the part before the first `/`). The commit is
/// `HOLLOW_COMMIT` at build time, else `unknown`.
///
/// ```
/// let agent = hollow_core::connect::user_agent("hollow-kubelet");
/// assert!(agent.starts_with(&format!("hollow-kubelet/v{} (", env!("CARGO_PKG_VERSION"))));
/// assert!(agent.ends_with(") hollow/unknown") || option_env!("HOLLOW_COMMIT").is_some());
/// ```
pub fn user_agent(program: &str) -> String {
    // Go's names, as client-go writes them.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!(
        "{program}/v{} ({}/{arch}) hollow/{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        option_env!("HOLLOW_COMMIT").unwrap_or("unknown")
    )
}

/// Sends `agent` as the User-Agent of every request made with `config` (replacing one
/// set before).
///
/// ```
/// use hollow_core::connect::{set_user_agent, user_agent};
///
/// let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
/// set_user_agent(&mut config, &user_agent("my-controller-test"))?;
/// assert_eq!(config.headers.len(), 1);
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
pub fn set_user_agent(
    config: &mut kube::Config,
    agent: &str,
) -> Result<(), http::header::InvalidHeaderValue> {
    let value = http::HeaderValue::from_str(agent)?;
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((http::header::USER_AGENT, value));
    Ok(())
}

/// How often an HTTP/2 connection with requests open is pinged, and how long a ping may
/// go unanswered before the connection is dropped: client-go's health check, so a
/// connection to an API server that vanished without closing it is not waited on.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(15);

/// A builder of kube's client for `config` (TLS, timeouts, authentication, extra
/// headers and retries as `kube::Client::try_from` makes them) that connects as `pool`
/// says, with `hollow`'s [`user_agent`] unless `config` sets one. kube's own client speaks only HTTP/1.1 and gives its pool no timer, so every
/// connection a burst of requests opened stays open, with its buffers (about 36 KiB
/// each): a process that registered thousands of nodes keeps a connection for each
/// request it had in flight. Add layers and `build()` it.
///
/// ```no_run
/// use hollow_core::connect::{ConnectionPool, pooled_client};
///
/// # fn run(config: kube::Config) -> Result<(), kube::Error> {
/// let client = pooled_client(config, ConnectionPool::default())?.build();
/// # drop(client);
/// # Ok(()) }
/// ```
pub fn pooled_client(
    config: kube::Config,
    pool: ConnectionPool,
) -> Result<kube::client::ClientBuilder<ClientService>, kube::Error> {
    use kube::client::ConfigExt;
    use tower::{BoxError, ServiceBuilder, ServiceExt};

    let mut config = config;
    if !config
        .headers
        .iter()
        .any(|(name, _)| name == http::header::USER_AGENT)
    {
        // The library's own, for embedders who set none.
        let _ = set_user_agent(&mut config, &user_agent("hollow"));
    }

    let mut connector = hyper_timeout::TimeoutConnector::new(https_connector(&config, pool)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    // A client of its own per HTTP/2 connection (one client pools a single one),
    // made when the connections before it are full.
    let max = if pool.http2 {
        pool.connections.max(1)
    } else {
        1
    };
    let make = move || {
        Counted::new(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(pool.max_idle)
                .pool_idle_timeout(pool.idle_timeout)
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .http2_keep_alive_interval(HTTP2_PING_INTERVAL)
                .http2_keep_alive_timeout(HTTP2_PING_TIMEOUT)
                .build(connector.clone()),
        )
    };
    let fill_first = Spread {
        clients: Arc::new(parking_lot::Mutex::new(vec![make()])),
        make: Arc::new(make),
        max,
    };
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(fill_first)
        .map_response(|response| {
            response.map(|body| {
                Box::new(http_body_util::BodyExt::map_err(body, BoxError::from))
                    as Box<kube::client::DynBody>
            })
        })
        .boxed();
    Ok(kube::client::ClientBuilder::new(
        service,
        config.default_namespace,
    ))
}

/// kube's HTTPS connector for `config` (its TLS settings and server name), without
/// Nagle's algorithm, offering HTTP/2 when `pool` asks for it.
fn https_connector(
    config: &kube::Config,
    pool: ConnectionPool,
) -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    kube::Error,
> {
    use kube::client::ConfigExt;

    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    // Small requests go out at once, as Go sends them. With Nagle's algorithm a request
    // written while an earlier one on the connection is unacknowledged waits for that
    // ACK, which the server may delay by 40 ms: an HTTP/2 connection with many requests
    // in flight then carries a few dozen a second.
    http.set_nodelay(true);
    if !pool.http2 {
        return config.rustls_https_connector_with_connector(http);
    }
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            let name = rustls_pki_types::ServerName::try_from(name.clone()).map_err(|error| {
                kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(error))
            })?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(builder.enable_all_versions().wrap_connector(http))
}

/// Waits until the API server answers `/version`, retrying with backoff (0.5 s
/// doubling to 8 s) for up to `patience`.
pub async fn wait_for_api(client: &kube::Client, patience: Duration) -> Result<(), ConnectError> {
    let started = Instant::now();
    let mut delays = Doubling::new(Duration::from_millis(500), Duration::from_secs(8)).delays();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last_error =
            match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) => error.to_string(),
                Err(_) => "no answer within 10s".to_string(),
            };
        let delay = delays.next().unwrap_or(Duration::from_secs(8));
        if started.elapsed() + delay > patience {
            return Err(ConnectError::Unreachable {
                attempts,
                seconds: started.elapsed().as_secs_f64(),
                last_error,
            });
        }
        tracing::warn!(attempt = attempts, error = %last_error, "API server not reachable; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
    }
}
