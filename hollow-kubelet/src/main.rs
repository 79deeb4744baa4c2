//! `hollow-kubelet`: runs hollow nodes, a drop-in for `kubemark --morph=kubelet`.
//!
//! With no cluster given (no `--kubeconfig`, no `KUBECONFIG`, no in-cluster service
//! account) it starts a local control plane first, so one command gives a working
//! cluster of hollow nodes on a laptop.

mod cli;
mod identity;
mod metrics;
mod settings;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use hollow_cli::shutdown_signal;
use hollow_core::bootstrap::TlsBootstrap;
use hollow_core::connect::{cluster_config, wait_for_api};
use hollow_core::kubelet_api::KubeletServer;
use hollow_core::manage::NodeManager;
use hollow_core::node::{HollowCluster, HollowNode, process_node_names};
use hollow_core::testenv::TestEnv;
use kube::config::KubeConfigOptions;

use cli::{Cli, HostnameOverride, Managed};
use metrics::{Metrics, Served, ServedNodes};
use settings::NodeSettings;

/// jemalloc rather than glibc's allocator: it returns freed pages and fragments less,
/// which at 5,000 idle nodes made 47 MiB of anonymous memory 32 (docs/benchmarks.md).
/// Its settings are compiled in from `.cargo/config.toml`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The most HTTP/2 connections to the API server in the kubelet traffic profile.
const MAX_API_CONNECTIONS: usize = 1_024;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    hollow_cli::init_logging("hollow_kubelet", cli.ignored.verbosity);
    for flag in cli.ignored.given() {
        tracing::info!("{flag} is accepted for Kubemark compatibility and has no effect");
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hollow-kubelet: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.morph != "kubelet" {
        bail!(
            "--morph={} is not served by hollow-kubelet; run hollow-proxy for the proxy role",
            cli.morph
        );
    }
    if !cli.http2 && cli.api_connections.is_some() {
        bail!("--api-connections counts HTTP/2 connections; it has no meaning with --http2=false");
    }
    if let Some(HostnameOverride::Fixed(hostname)) = &cli.hostname_override
        && cli.nodes > 1
    {
        bail!(
            "--hostname-override={hostname} would give all {} nodes one hostname; use --hostname-override=node-ip for each node's own address",
            cli.nodes
        );
    }
    let managed = cli.managed().map_err(anyhow::Error::msg)?;
    if cli.bootstrap_kubeconfig.is_some() {
        if managed.is_some() {
            bail!(
                "--bootstrap-kubeconfig gives the nodes this process registers their own identities; it does not apply to Nodes others create (--manage-*)"
            );
        }
        if cli.kubeconfig.is_none() && cli.serve_kubelet_api {
            bail!(
                "--bootstrap-kubeconfig without --kubeconfig: the kubelet API needs credentials that may create TokenReviews and SubjectAccessReviews (give --kubeconfig too, or --serve-kubelet-api=false)"
            );
        }
    }
    if let Some(bound) = std::num::NonZeroUsize::new(cli.pod_passes_at_once) {
        // Set before any node starts: it cannot be in force yet.
        hollow_core::node::set_pod_passes_at_once(bound)?;
    }
    // Signals are handled from the start, so one during start-up also shuts down cleanly.
    let shutdown = shutdown_signal().context("cannot handle SIGTERM and SIGINT")?;
    tokio::pin!(shutdown);
    let metrics = Metrics::new();
    let (config, local) = tokio::select! {
        connected = connect(&cli) => connected?,
        () = &mut shutdown => return Ok(()),
    };
    let mut defaults = hollow_core::connect::ConnectionPool::for_nodes(cli.nodes as usize);
    if cli.traffic_profile == hollow_core::node::TrafficProfile::Kubelet {
        // Each node holds its informers' and objects' watches, a stream each while it
        // runs; connections are opened as the ones before fill up.
        defaults.connections = MAX_API_CONNECTIONS;
    }
    let pool = hollow_core::connect::ConnectionPool {
        http2: cli.http2,
        connections: cli
            .api_connections
            .map_or(defaults.connections, |n| n as usize),
        // As many idle HTTP/1.1 connections may stay open as requests are in flight:
        // fewer would close and reopen TLS connections under load.
        max_idle: cli.max_requests_in_flight as usize,
        ..defaults
    };
    let mut config = config;
    hollow_core::connect::set_user_agent(
        &mut config,
        &hollow_core::connect::user_agent("hollow-kubelet"),
    )?;
    let bootstrap = match &cli.bootstrap_kubeconfig {
        Some(path) => Some(identity::tls_bootstrap(&cli, path, &metrics).await?),
        None => None,
    };
    let client = metrics.instrument(config, pool, cli.max_requests_in_flight as usize)?;
    tokio::select! {
        reached = wait_for_api(&client, Duration::from_secs(cli.connect_timeout)) => reached?,
        () = &mut shutdown => return Ok(()),
    }
    let served = Arc::new(Served {
        metrics,
        nodes: tokio::sync::RwLock::new(None),
    });
    let bind = cli.metrics_bind_address.clone();
    let server = served.clone();
    tokio::spawn(async move { metrics::serve(&bind, server).await });

    let api = if cli.serve_kubelet_api {
        Some(start_kubelet_api(&cli, &client, managed.is_some()).await?)
    } else {
        None
    };
    if let Some(managed) = managed {
        let manager = start_manager(&cli, &client, api.as_ref(), managed).await?;
        *served.nodes.write().await = Some(ServedNodes::Managed(manager));
        shutdown.await;
        eprintln!("shutting down");
        if let Some(ServedNodes::Managed(manager)) = served.nodes.write().await.take() {
            manager.shutdown().await;
        }
        if let Some(env) = local {
            env.stop();
        }
        return Ok(());
    }
    let started = Instant::now();
    let nodes = tokio::select! {
        nodes = start_nodes(&cli, &client, bootstrap, api.as_ref()) => Some(nodes?),
        () = &mut shutdown => None,
    };
    if let Some(nodes) = nodes {
        eprintln!(
            "{} node(s) Ready in {:.1}s",
            cli.nodes,
            started.elapsed().as_secs_f64()
        );
        if let Some(env) = &local {
            eprintln!(
                "run kubectl with: export KUBECONFIG={}",
                env.kubeconfig_path().display()
            );
            eprintln!("kubectl: {}", env.binary("kubectl").display());
        }
        *served.nodes.write().await = Some(ServedNodes::Registered(nodes));
        shutdown.await;
    } else {
        eprintln!("interrupted while starting the nodes");
        if cli.cleanup_on_exit {
            // The nodes registered before the signal stopped when their start was
            // dropped; their Node objects and Leases are deleted by name.
            for name in process_node_names(&cli.name, cli.nodes as usize) {
                if let Err(error) = hollow_core::node::deregister(&client, &name).await {
                    tracing::warn!(error = %format!("{error:#}"), "cannot delete a node");
                }
            }
            eprintln!("deleted the node(s) registered before the signal");
        }
    }
    eprintln!("shutting down");
    if let Some(ServedNodes::Registered(nodes)) = served.nodes.write().await.take() {
        let count = nodes.len();
        if cli.cleanup_on_exit && cli.bootstrap_kubeconfig.is_some() {
            // A node may not delete its own Node object (the Node authorizer allows it
            // create, update and patch): the process's credentials delete them.
            nodes.shutdown().await;
            for name in process_node_names(&cli.name, count) {
                if let Err(error) = hollow_core::node::deregister(&client, &name).await {
                    tracing::warn!(error = %format!("{error:#}"), "cannot delete a node");
                }
            }
        } else if cli.cleanup_on_exit {
            match nodes.deregister().await {
                Ok(()) => eprintln!("deleted {count} node(s) and their leases"),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "cannot delete every node")
                }
            }
        } else {
            nodes.shutdown().await;
        }
    }
    if let Some(env) = local {
        env.stop();
    }
    Ok(())
}

/// Starts the kubelet API server and opens the nodes' ports: one shared port, or with
/// --node-ip one port per node. Returns the server and the ports by node index.
async fn start_kubelet_api(
    cli: &Cli,
    client: &kube::Client,
    managing: bool,
) -> anyhow::Result<(KubeletServer, Vec<u16>)> {
    let mut builder = KubeletServer::builder()
        .bind_address(cli.address)
        .idle_timeout(Duration::from_secs(cli.kubelet_api_idle_timeout));
    if let Some(path) = &cli.client_ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read --client-ca-file {}", path.display()))?;
        builder = builder.client_ca_pem(pem);
    }
    if let (Some(cert), Some(key)) = (&cli.tls_cert_file, &cli.tls_private_key_file) {
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        builder = builder.serving_cert_pem(read(cert)?, read(key)?);
    }
    let api = builder
        .start(client.clone())
        .await
        .context("cannot start the kubelet API (--serve-kubelet-api=false runs without it)")?;
    let wanted: Vec<u16> = match cli.node_ip {
        None => vec![cli.kubelet_port],
        // Ports for Nodes that others create open as each is served.
        Some(_) if managing => Vec::new(),
        Some(_) if cli.kubelet_port == 0 => vec![0; cli.nodes as usize],
        Some(_) => (0..cli.nodes)
            .map(|i| {
                u16::try_from(u32::from(cli.kubelet_port) + i)
                    .context("--kubelet-port + --nodes goes past port 65535")
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let mut ports = Vec::with_capacity(wanted.len());
    let mut moved = 0;
    for want in wanted {
        let port = match api.listen(want).await {
            Ok(port) => port,
            Err(hollow_core::kubelet_api::Error::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                moved += 1;
                api.listen(0).await?
            }
            Err(error) => return Err(error.into()),
        };
        ports.push(port);
    }
    if moved > 0 {
        tracing::warn!(
            "{moved} kubelet port(s) from {} were in use; those nodes serve on free ports instead (published in their daemonEndpoints)",
            cli.kubelet_port
        );
    }
    match ports.as_slice() {
        [] => eprintln!(
            "kubelet API on {} from port {}, a port per node",
            cli.address, cli.kubelet_port
        ),
        [one] => eprintln!("kubelet API on {}:{one}", cli.address),
        many => eprintln!(
            "kubelet API on {} ports {}..{}",
            cli.address,
            many.iter().min().unwrap_or(&0),
            many.iter().max().unwrap_or(&0)
        ),
    }
    Ok((api, ports))
}

/// Registers the nodes, waits until they are Ready, and serves their kubelet API. With
/// `bootstrap`, each node talks as itself.
async fn start_nodes(
    cli: &Cli,
    client: &kube::Client,
    bootstrap: Option<TlsBootstrap>,
    api: Option<&(KubeletServer, Vec<u16>)>,
) -> anyhow::Result<HollowCluster> {
    let count = cli.nodes as usize;
    let mut settings = NodeSettings::from(cli);
    if let Some((_, ports)) = api {
        settings.kubelet_ports = Arc::new(ports.clone());
    }
    let nodes: HollowCluster = if count == 1 {
        let client = match &bootstrap {
            Some(bootstrap) => bootstrap.node_client(&cli.name).await?,
            None => client.clone(),
        };
        settings
            .apply(HollowNode::builder(&cli.name), 0)
            .build()?
            .start(client)
            .await?
            .into()
    } else {
        let mut cluster = HollowCluster::builder(&cli.name)
            .nodes(count, move |i, node| settings.apply(node, i))
            .parallelism(cli.parallelism)
            .on_progress(progress_reporter(count));
        if let Some(bootstrap) = bootstrap {
            cluster = cluster.credentials(bootstrap);
        }
        cluster.start(client.clone()).await?
    };
    if let Some((server, _)) = api {
        for node in nodes.nodes() {
            server.serve(node.view()).await?;
        }
    }
    Ok(nodes)
}

/// Serves the Nodes the --manage-* flags select, as they come and go, and their kubelet
/// API.
async fn start_manager(
    cli: &Cli,
    client: &kube::Client,
    api: Option<&(KubeletServer, Vec<u16>)>,
    managed: Managed,
) -> anyhow::Result<NodeManager> {
    let mut settings = NodeSettings::from(cli);
    if let Some((_, ports)) = api {
        settings.kubelet_ports = Arc::new(ports.clone());
    }
    let mut manager = NodeManager::builder()
        .parallelism(cli.parallelism)
        .configure(move |index, _node, builder| settings.apply(builder, index));
    let what = match managed {
        Managed::All => "every Node of the cluster".to_string(),
        Managed::Single(name) => {
            manager = manager.single_node(&name);
            format!("the Node {name}")
        }
        Managed::Selected {
            labels,
            annotations,
        } => {
            let mut selected = Vec::new();
            if let Some(selector) = labels {
                selected.push(format!("labels {selector}"));
                manager = manager.label_selector(selector);
            }
            if let Some(selector) = annotations {
                selected.push(format!("annotations {selector}"));
                manager = manager.annotation_selector(selector);
            }
            format!("the Nodes with {}", selected.join(" and "))
        }
    };
    if let Some((server, _)) = api {
        manager = manager.kubelet_api(server.clone());
    }
    let manager = manager
        .start(client.clone())
        .await
        .context("cannot watch the Nodes to serve")?;
    eprintln!("serving {what}, as they are created");
    Ok(manager)
}

/// The client configuration for the cluster given, or for a local control plane
/// started here.
async fn connect(cli: &Cli) -> anyhow::Result<(kube::Config, Option<TestEnv>)> {
    if let Some(config) = cluster_config(cli.kubeconfig.as_deref()).await? {
        return Ok((config, None));
    }
    eprintln!(
        "no cluster given: starting a local control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, metrics-server)"
    );
    // metrics-server too, so `kubectl top` works against the hollow nodes.
    let mut builder = TestEnv::builder().metrics_server(cli.serve_kubelet_api);
    if let Some(dir) = &cli.local_dir {
        builder = builder.dir(dir);
    }
    let env = builder
        .start()
        .await
        .context("cannot start the local control plane")?;
    eprintln!("local control plane ready at {}", env.server_url());
    println!("export KUBECONFIG={}", env.kubeconfig_path().display());
    let config = kube::Config::from_custom_kubeconfig(
        env.kubeconfig().clone(),
        &KubeConfigOptions::default(),
    )
    .await
    .context("cannot use the local control plane's kubeconfig")?;
    Ok((config, Some(env)))
}

/// Shows registration progress: a bar on a terminal, a log line per tenth otherwise.
fn progress_reporter(total: usize) -> impl Fn(usize, usize) + Send + Sync + 'static {
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} nodes Ready {elapsed}")
        {
            bar.set_style(style);
        }
        bar
    });
    let step = (total / 10).max(1);
    move |ready, total| match &bar {
        Some(bar) => {
            bar.set_position(ready as u64);
            if ready == total {
                bar.finish_and_clear();
            }
        }
        None if ready % step == 0 || ready == total => eprintln!("{ready}/{total} nodes Ready"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jemalloc_returns_freed_pages_after_a_second_from_its_own_threads() {
        let compiled_in = tikv_jemalloc_ctl::config::malloc_conf::read().unwrap();
        assert!(
            compiled_in.contains("dirty_decay_ms:1000"),
            "built without .cargo/config.toml's JEMALLOC_SYS_WITH_MALLOC_CONF: {compiled_in:?}"
        );
        if std::env::var_os("_RJEM_MALLOC_CONF").is_none() {
            assert!(tikv_jemalloc_ctl::opt::background_thread::read().unwrap());
        }
    }
}
