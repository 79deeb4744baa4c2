//! The process's `/healthz` and Prometheus `/metrics`: nodes by readiness, pods, API
//! requests and their latency, the worst Lease renewal lag, and jemalloc's own counts
//! of the memory it holds.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::RwLock;

use hollow_core::node::RunningNode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabel {
    ready: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatLabel {
    stat: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

/// The body type of responses in kube's client stack.
type ResponseBody = Box<
    dyn http_body::Body<Data = bytes::Bytes, Error = Box<dyn std::error::Error + Send + Sync>>
        + Send
        + Unpin,
>;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    nodes: Family<ReadyLabel, Gauge>,
    pods: Family<PhaseLabel, Gauge>,
    lease_lag: Gauge<f64, AtomicU64>,
    requests: Family<MethodLabel, Counter>,
    responses: Family<CodeLabel, Counter>,
    latency: Histogram,
    allocator: Family<StatLabel, Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("hollow");
        let nodes = Family::<ReadyLabel, Gauge>::default();
        let pods = Family::<PhaseLabel, Gauge>::default();
        let lease_lag = Gauge::<f64, AtomicU64>::default();
        let requests = Family::<MethodLabel, Counter>::default();
        let responses = Family::<CodeLabel, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "nodes",
            "Hollow nodes of this process, by readiness",
            nodes.clone(),
        );
        registry.register(
            "pods",
            "Pods the nodes of this process run, by phase",
            pods.clone(),
        );
        registry.register(
            "lease_renew_lag_seconds",
            "The longest time since any node of this process renewed its Lease",
            lease_lag.clone(),
        );
        registry.register(
            "api_requests",
            "Requests sent to the API server, by method",
            requests.clone(),
        );
        registry.register(
            "api_responses",
            "Responses from the API server, by status code",
            responses.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Latency of requests to the API server",
            latency.clone(),
        );
        let allocator = Family::<StatLabel, Gauge>::default();
        registry.register(
            "allocator_bytes",
            "jemalloc's counts (its stats.* values): allocated (live objects), active (the pages holding them), resident, mapped, retained (unmapped but kept) and metadata",
            allocator.clone(),
        );
        Arc::new(Self {
            registry,
            nodes,
            pods,
            lease_lag,
            requests,
            responses,
            latency,
            allocator,
        })
    }

    /// Builds the process's client, connecting as `pool` says: every API request
    /// counted and timed, at most `max_in_flight` of them waiting for an answer at once.
    pub fn instrument(
        self: &Arc<Self>,
        config: kube::Config,
        pool: hollow_core::connect::ConnectionPool,
        max_in_flight: usize,
    ) -> Result<kube::Client, kube::Error> {
        use tower_http::trace::TraceLayer;
        let on_request = {
            let metrics = self.clone();
            move |request: &http::Request<kube::client::Body>, _: &tracing::Span| {
                let method = request.method().to_string();
                metrics
                    .requests
                    .get_or_create(&MethodLabel { method })
                    .inc();
            }
        };
        let on_response = {
            let metrics = self.clone();
            move |response: &http::Response<ResponseBody>, latency: Duration, _: &tracing::Span| {
                let code = response.status().as_u16().to_string();
                metrics.responses.get_or_create(&CodeLabel { code }).inc();
                metrics.latency.observe(latency.as_secs_f64());
            }
        };
        let layer = TraceLayer::new_for_http()
            .on_request(on_request)
            .on_response(on_response);
        Ok(hollow_core::connect::pooled_client(config, pool)?
            .with_layer(&layer)
            .with_layer(&tower::limit::ConcurrencyLimitLayer::new(max_in_flight))
            .build())
    }

    fn render(&self, nodes: &[&RunningNode]) -> String {
        let ready = nodes.iter().filter(|n| n.is_ready()).count();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.nodes
            .get_or_create(&ReadyLabel { ready: "true" })
            .set(count(ready));
        self.nodes
            .get_or_create(&ReadyLabel { ready: "false" })
            .set(count(nodes.len() - ready));
        let mut phases = std::collections::BTreeMap::<&'static str, usize>::new();
        for node in nodes {
            for (phase, pods) in node.pods_by_phase().iter() {
                *phases.entry(phase).or_default() += pods;
            }
        }
        for (phase, pods) in phases {
            self.pods
                .get_or_create(&PhaseLabel { phase })
                .set(count(pods));
        }
        let now = Instant::now();
        let lag = nodes
            .iter()
            .filter_map(|n| n.last_lease_renewal())
            .map(|at| now.saturating_duration_since(at).as_secs_f64())
            .fold(0.0, f64::max);
        self.lease_lag.set(lag);
        self.sample_allocator();
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

impl Metrics {
    /// Reads jemalloc's statistics afresh (they are cached until the epoch advances).
    fn sample_allocator(&self) {
        use tikv_jemalloc_ctl::{epoch, stats};
        if epoch::advance().is_err() {
            return;
        }
        let stats: [(&'static str, tikv_jemalloc_ctl::Result<usize>); 6] = [
            ("allocated", stats::allocated::read()),
            ("active", stats::active::read()),
            ("resident", stats::resident::read()),
            ("mapped", stats::mapped::read()),
            ("retained", stats::retained::read()),
            ("metadata", stats::metadata::read()),
        ];
        for (stat, bytes) in stats {
            if let Ok(bytes) = bytes {
                self.allocator
                    .get_or_create(&StatLabel { stat })
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
    }
}

/// What the endpoints read: the metrics and the nodes (absent while starting or after
/// shutdown).
pub struct Served {
    pub metrics: Arc<Metrics>,
    pub nodes: RwLock<Option<ServedNodes>>,
}

/// The nodes of the process: registered by it, or created by others and served.
pub enum ServedNodes {
    Registered(hollow_core::node::HollowCluster),
    Managed(hollow_core::manage::NodeManager),
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(served): State<Arc<Served>>) -> impl IntoResponse {
    let nodes = served.nodes.read().await;
    let managed = match nodes.as_ref() {
        Some(ServedNodes::Managed(manager)) => manager.nodes(),
        _ => Vec::new(),
    };
    let running: Vec<&RunningNode> = match nodes.as_ref() {
        Some(ServedNodes::Registered(cluster)) => cluster.nodes().iter().collect(),
        Some(ServedNodes::Managed(_)) => managed.iter().map(AsRef::as_ref).collect(),
        None => Vec::new(),
    };
    let text = served.metrics.render(&running);
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Serves `/healthz` and `/metrics` on `address`; a port in use is a warning, not an
/// error: the nodes matter more than their metrics.
pub async fn serve(address: &str, served: Arc<Served>) {
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%address, %error, "cannot serve /healthz and /metrics; choose another --metrics-bind-address");
            return;
        }
    };
    if let Ok(bound) = listener.local_addr() {
        eprintln!("serving /healthz and /metrics on http://{bound}");
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(served);
    if let Err(error) = axum::serve(listener, app).await {
        tracing::warn!(%error, "the metrics server stopped");
    }
}
