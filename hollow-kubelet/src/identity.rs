//! Nodes that talk as themselves: the kubelet's TLS bootstrap (--bootstrap-kubeconfig).

use std::sync::Arc;

use anyhow::Context as _;
use hollow_core::bootstrap::TlsBootstrap;
use kube::config::KubeConfigOptions;

use crate::cli::Cli;
use crate::metrics::Metrics;

/// The TLS bootstrap of --bootstrap-kubeconfig: each node's client connects as the
/// process's does, on a connection of its own to start with, and is counted in the
/// process's metrics.
pub(crate) async fn tls_bootstrap(
    cli: &Cli,
    path: &std::path::Path,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<TlsBootstrap> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read --bootstrap-kubeconfig {}", path.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("cannot use --bootstrap-kubeconfig {}", path.display()))?;
    hollow_core::connect::set_user_agent(
        &mut config,
        &hollow_core::connect::user_agent("hollow-kubelet"),
    )?;
    let pool = hollow_core::connect::ConnectionPool {
        http2: cli.http2,
        // A kubelet's watches and requests fit one HTTP/2 connection; more open if not.
        connections: 4,
        max_idle: 4,
        ..Default::default()
    };
    let (metrics, max_in_flight) = (metrics.clone(), cli.max_requests_in_flight as usize);
    Ok(TlsBootstrap::new(config)?
        .connect_with(move |config| metrics.instrument(config, pool, max_in_flight)))
}
