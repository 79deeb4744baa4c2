//! `hollow-proxy`: hollow kube-proxies, a drop-in for `kubemark --morph=proxy`.
//!
//! Serves one node or many (`--nodes`) over one set of watches, each with a fake
//! proxier that records the rules kube-proxy would program; answers kube-proxy's
//! `/healthz` (with its node-eligibility semantics) and `/livez`, and Prometheus
//! `/metrics`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Parser;
use hollow_cli::shutdown_signal;
use hollow_core::connect::{cluster_config, wait_for_api};
use hollow_core::node::process_node_names;
use hollow_core::proxier::FakeProxier;
use hollow_core::proxy::{HollowProxy, ProxyHealth, RunningProxy};
use k8s_openapi::jiff::Timestamp;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[cfg(test)]
mod fuzz_flags;

/// jemalloc, as hollow-kubelet uses: it returns freed pages and fragments less.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Runs hollow kube-proxies: a drop-in for `kubemark --morph=proxy`.
#[derive(Debug, Parser)]
#[command(name = "hollow-proxy", version, about, long_about = None)]
struct Cli {
    /// Node name; with --nodes N > 1 the nodes are NAME-0 .. NAME-(N-1), as hollow-kubelet names them.
    #[arg(long, env = "NODE_NAME", default_value = "hollow-node")]
    name: String,
    /// Kubeconfig of the cluster (in a pod, the ServiceAccount is used without one).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// How many nodes this process serves.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    nodes: u32,
    /// Kubemark's role switch: only "proxy" is served here (see hollow-kubelet).
    #[arg(long, default_value = "proxy")]
    morph: String,
    /// Accepted for Kubemark compatibility: hollow always uses its fake proxier.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    use_real_proxier: Option<String>,
    /// Where to serve /healthz and /livez (kube-proxy's port is 10256; 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:10256")]
    healthz_bind_address: String,
    /// Where to serve /metrics (kube-proxy's port is 10249).
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_bind_address: String,
    /// The shortest time between two syncs of a node, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    min_sync_period_ms: u64,
    /// How often each node syncs without changes, in seconds.
    #[arg(long, default_value_t = 30)]
    sync_period: u64,
    /// How long to keep retrying an unreachable API server, in seconds.
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
    /// Log verbosity (klog's -v): 0-1 info, 2-4 debug, 5+ trace.
    #[arg(long = "v", short = 'v')]
    verbosity: Option<u8>,
    /// Ignored (logs always go to stderr).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    alsologtostderr: Option<String>,
    /// Ignored (hollow speaks JSON).
    #[arg(long)]
    kube_api_content_type: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    hollow_cli::init_logging("hollow_proxy", cli.verbosity);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hollow-proxy: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.morph != "proxy" {
        bail!(
            "--morph={} is not served by hollow-proxy; run hollow-kubelet for the kubelet role",
            cli.morph
        );
    }
    for (flag, given) in [
        ("--use-real-proxier", cli.use_real_proxier.is_some()),
        ("--alsologtostderr", cli.alsologtostderr.is_some()),
        (
            "--kube-api-content-type",
            cli.kube_api_content_type.is_some(),
        ),
    ] {
        if given {
            tracing::info!("{flag} is accepted for Kubemark compatibility and has no effect");
        }
    }
    // Signals are handled from the start, so one during start-up also shuts down cleanly.
    let shutdown = shutdown_signal().context("cannot handle SIGTERM and SIGINT")?;
    let config = cluster_config(cli.kubeconfig.as_deref()).await?.context(
        "hollow-proxy needs a cluster: pass --kubeconfig (or set KUBECONFIG, or run it in a pod)",
    )?;
    let mut config = config;
    hollow_core::connect::set_user_agent(
        &mut config,
        &hollow_core::connect::user_agent("hollow-proxy"),
    )?;
    let client = kube::Client::try_from(config).context("cannot build a client")?;
    wait_for_api(&client, Duration::from_secs(cli.connect_timeout)).await?;

    let mut builder = HollowProxy::builder()
        .min_sync_period(Duration::from_millis(cli.min_sync_period_ms))
        .sync_period(Duration::from_secs(cli.sync_period));
    for name in process_node_names(&cli.name, cli.nodes as usize) {
        builder = builder.node(name, Arc::new(FakeProxier::default()));
    }
    let proxy = Arc::new(builder.build().start(client));
    eprintln!("serving {} node(s)", cli.nodes);

    let health = Router::new()
        .route("/healthz", get(healthz_all))
        .route("/healthz/{node}", get(healthz_node))
        .route("/livez", get(livez))
        .with_state(proxy.clone());
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .with_state(proxy.clone());
    tokio::spawn(serve(cli.healthz_bind_address.clone(), health, "/healthz"));
    tokio::spawn(serve(cli.metrics_bind_address.clone(), metrics, "/metrics"));

    shutdown.await;
    eprintln!("shutting down");
    if let Ok(proxy) = Arc::try_unwrap(proxy) {
        proxy.shutdown().await;
    }
    Ok(())
}

async fn serve(address: String, app: Router, what: &str) {
    match tokio::net::TcpListener::bind(&address).await {
        Ok(listener) => {
            if let Ok(bound) = listener.local_addr() {
                eprintln!("serving {what} on http://{bound}");
            }
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "{what} server stopped");
            }
        }
        Err(error) => {
            tracing::warn!(%address, %error, "cannot serve {what}; choose another bind address")
        }
    }
}

fn rfc3339(time: Option<SystemTime>) -> String {
    time.and_then(|t| Timestamp::try_from(t).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// kube-proxy's answer: 200 when healthy, else 503, with its JSON body.
fn answer(
    health: &ProxyHealth,
    check_eligibility: bool,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
) {
    let ok = health.synced && (!check_eligibility || health.node_eligible);
    let body = serde_json::json!({
        "lastUpdated": rfc3339(health.last_updated),
        "currentTime": rfc3339(Some(SystemTime::now())),
        "nodeEligible": health.node_eligible,
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, [(CONTENT_TYPE, "application/json")], body.to_string())
}

/// Every node's health folded into one: synced and eligible only if all are; the
/// oldest last sync.
fn combined(proxy: &RunningProxy) -> ProxyHealth {
    let all: Vec<ProxyHealth> = proxy
        .node_names()
        .iter()
        .filter_map(|n| proxy.health(n))
        .collect();
    ProxyHealth {
        last_updated: all.iter().map(|h| h.last_updated).min().flatten(),
        synced: all.iter().all(|h| h.synced),
        node_eligible: all.iter().all(|h| h.node_eligible),
    }
}

async fn healthz_all(State(proxy): State<Arc<RunningProxy>>) -> impl IntoResponse {
    answer(&combined(&proxy), true)
}

async fn livez(State(proxy): State<Arc<RunningProxy>>) -> impl IntoResponse {
    answer(&combined(&proxy), false)
}

async fn healthz_node(
    State(proxy): State<Arc<RunningProxy>>,
    Path(node): Path<String>,
) -> impl IntoResponse {
    match proxy.health(&node) {
        Some(health) => answer(&health, true).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("node {node} is not served here"),
        )
            .into_response(),
    }
}

async fn metrics(State(proxy): State<Arc<RunningProxy>>) -> impl IntoResponse {
    let mut registry = Registry::default();
    let last = Gauge::<f64, AtomicU64>::default();
    let duration = Gauge::<f64, AtomicU64>::default();
    let syncs: Gauge = Gauge::default();
    let names = proxy.node_names();
    let newest = names
        .iter()
        .filter_map(|n| proxy.health(n)?.last_updated)
        .max()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    last.set(newest);
    duration.set(proxy.last_sync_durations().into_iter().fold(0.0, f64::max));
    syncs.set(
        names
            .iter()
            .filter_map(|n| proxy.sync_count(n))
            .map(|c| i64::try_from(c).unwrap_or(i64::MAX))
            .sum(),
    );
    registry.register(
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "The last time rules were synced",
        last,
    );
    registry.register(
        "kubeproxy_sync_proxy_rules_duration_seconds_max",
        "The longest last sync of any node",
        duration,
    );
    registry.register("hollow_proxy_syncs", "Syncs of every node served", syncs);
    let mut text = String::new();
    let _ = encode(&mut text, &registry);
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
