//! `hollow-kubelet`: runs hollow nodes.
//!
//! With no cluster given (no `--kubeconfig`, no `KUBECONFIG`, no in-cluster service
//! account) it starts a local control plane first, so one command gives a working
//! cluster on a laptop.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use hollow_core::testenv::TestEnv;

/// Runs hollow Kubernetes nodes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Kubeconfig of the cluster to join; without one (and without KUBECONFIG or an
    /// in-cluster service account) a local control plane is started.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Where the local control plane keeps its state (default: a temporary directory).
    #[arg(long, env = "HOLLOW_LOCAL_DIR")]
    local_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    if cli.kubeconfig.is_some() {
        anyhow::bail!("joining an existing cluster is not implemented yet");
    }
    let mut builder = TestEnv::builder();
    if let Some(dir) = cli.local_dir {
        builder = builder.dir(dir);
    }
    eprintln!(
        "starting a local control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager)..."
    );
    let env = builder
        .start()
        .await
        .context("cannot start the local control plane")?;
    println!("local control plane ready at {}", env.server_url());
    println!("export KUBECONFIG={}", env.kubeconfig_path().display());
    println!("press Ctrl-C to stop");
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    env.stop();
    Ok(())
}
