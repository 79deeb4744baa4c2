//! The simulators under test, started as their users start them, and stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use hollow_core::testenv::TestEnv;
use hollow_tests::kubemark::{self, spawn_logged};
use hollow_tests::process_alive;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use tokio::process::Child;

/// Which simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Hollow,
    /// hollow-kubelet with `--traffic-profile=lean`, on an identity of its own
    /// (`hollow-lean`), so that its requests are told apart from `hollow`'s in an audit
    /// log (both send the same user agent).
    #[serde(rename = "hollow-lean")]
    HollowLean,
    /// hollow-kubelet serving Nodes the benchmark creates, as KWOK serves them.
    #[serde(rename = "hollow-managed")]
    HollowManaged,
    Kwok,
    Kubemark,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hollow => "hollow",
            Kind::HollowLean => "hollow-lean",
            Kind::HollowManaged => "hollow-managed",
            Kind::Kwok => "kwok",
            Kind::Kubemark => "kubemark",
        }
    }
}

/// The user `hollow-lean` runs as (in the group `system:masters`).
pub const LEAN_USER: &str = "hollow-lean";

/// A running simulator.
pub struct Simulator {
    pub kind: Kind,
    children: Vec<Child>,
    client: kube::Client,
    /// hollow-kubelet's log, where it says where its /metrics are.
    hollow_log: Option<PathBuf>,
}

/// The hollow-kubelet binary: next to this one (cargo builds both), or as given.
pub fn hollow_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("HOLLOW_KUBELET") {
        return Ok(path.into());
    }
    let me = std::env::current_exe()?;
    let beside = me
        .parent()
        .context("no directory for the current executable")?
        .join("hollow-kubelet");
    if beside.exists() {
        Ok(beside)
    } else {
        bail!(
            "{} is missing: build it with `cargo build --release -p hollow-kubelet` (or set HOLLOW_KUBELET)",
            beside.display()
        )
    }
}

impl Simulator {
    /// Starts `count` nodes of `kind` labelled `bench=<kind>`.
    pub async fn start(
        kind: Kind,
        env: &TestEnv,
        count: usize,
        dir: &Path,
    ) -> anyhow::Result<Simulator> {
        let kubeconfig = env.kubeconfig_path().display().to_string();
        let label = format!("bench={}", kind.name());
        let mut children = Vec::new();
        match kind {
            Kind::Hollow | Kind::HollowLean => {
                let (kubeconfig, profile) = if kind == Kind::HollowLean {
                    let path = dir.join("kubeconfig-hollow-lean");
                    env.write_kubeconfig_for(LEAN_USER, &["system:masters"], &path)?;
                    (path.display().to_string(), "lean")
                } else {
                    (kubeconfig, "kubelet")
                };
                let args = [
                    "--kubeconfig".to_string(),
                    kubeconfig,
                    format!("--name=bench-{}", kind.name()),
                    format!("--nodes={count}"),
                    format!("--node-labels={label}"),
                    format!("--traffic-profile={profile}"),
                    "--metrics-bind-address=127.0.0.1:0".into(),
                    "--kubelet-port=0".into(),
                    "--cleanup-on-exit".into(),
                ];
                children.push(spawn_logged(&hollow_binary()?, &args, dir, "hollow")?);
            }
            Kind::HollowManaged => {
                // KWOK's command line below, the same Nodes.
                let args = [
                    "--kubeconfig".to_string(),
                    kubeconfig.clone(),
                    "--manage-all-nodes=false".into(),
                    format!("--manage-nodes-with-label-selector={label}"),
                    "--node-lease-duration-seconds=40".into(),
                    "--metrics-bind-address=127.0.0.1:0".into(),
                    "--kubelet-port=0".into(),
                    "--cidr=10.192.0.0/10".into(),
                ];
                children.push(spawn_logged(&hollow_binary()?, &args, dir, "hollow")?);
                create_nodes(&env.client(), kind, count).await?;
            }
            Kind::Kwok => {
                let args = [
                    "--kubeconfig".to_string(),
                    kubeconfig.clone(),
                    format!(
                        "--config={}",
                        env.bin_dir().join("kwok-stages-fast.yaml").display()
                    ),
                    "--manage-all-nodes=false".into(),
                    format!("--manage-nodes-with-label-selector={label}"),
                    "--node-lease-duration-seconds=40".into(),
                    "--server-address=127.0.0.1:0".into(),
                    "--cidr=10.192.0.0/10".into(),
                ];
                children.push(spawn_logged(&env.binary("kwok"), &args, dir, "kwok")?);
                create_nodes(&env.client(), kind, count).await?;
            }
            Kind::Kubemark => {
                for index in 0..count {
                    children.push(kubemark::start_node(
                        env,
                        &format!("bench-kubemark-{index}"),
                        &label,
                        &dir.join(format!("kubemark-{index}")),
                        index,
                    )?);
                }
            }
        }
        let hollow_log = matches!(kind, Kind::Hollow | Kind::HollowLean | Kind::HollowManaged)
            .then(|| dir.join("hollow.log"));
        Ok(Simulator {
            kind,
            children,
            client: env.client(),
            hollow_log,
        })
    }

    /// jemalloc's counts in hollow-kubelet (its `hollow_allocator_bytes` metrics), by
    /// stat; none for the other simulators, or if they cannot be read.
    pub async fn allocator(&self) -> Option<BTreeMap<String, u64>> {
        let log = self.hollow_log.as_ref()?;
        let text = std::fs::read_to_string(log).ok()?;
        let url = text
            .lines()
            .find_map(|line| line.strip_prefix("serving /healthz and /metrics on "))?;
        let (_, metrics) = hollow_tests::get(url, "/metrics").await.ok()?;
        let stats: BTreeMap<String, u64> = metrics
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("hollow_allocator_bytes{stat=\"")?;
                let (stat, value) = rest.split_once("\"} ")?;
                Some((stat.to_string(), value.trim().parse().ok()?))
            })
            .collect();
        (!stats.is_empty()).then_some(stats)
    }

    /// The simulator's process ids (those still running).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// Whether a process exited already, without collecting it.
    pub fn crashed_now(&self) -> bool {
        self.children
            .iter()
            .any(|c| c.id().is_none_or(|pid| !process_alive(pid)))
    }

    /// Whether a process exited already (a crash), with its status.
    pub fn crashed(&mut self) -> Option<String> {
        self.children.iter_mut().find_map(|c| match c.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        })
    }

    /// Stops the processes (SIGTERM, then SIGKILL after 30 s) and deletes the nodes.
    pub async fn stop(mut self) {
        for child in &self.children {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        let label = format!("bench={}", self.kind.name());
        let _ = nodes
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels(&label),
            )
            .await;
    }
}

/// KWOK (and hollow-kubelet with --manage-*) simulate Nodes they are given: the
/// benchmark creates them, as KWOK's users do.
async fn create_nodes(client: &kube::Client, kind: Kind, count: usize) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = kind.name();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..count)
        .map(|index| {
            let nodes = nodes.clone();
            async move {
                let node: Node = serde_json::from_value(json!({
                    "metadata": {
                        "name": format!("bench-{name}-{index}"),
                        "labels": { "bench": name, "type": "kwok" },
                        "annotations": { "kwok.x-k8s.io/node": "fake" },
                    },
                    "status": {
                        "allocatable": { "cpu": "4", "memory": "16Gi", "pods": "110" },
                        "capacity": { "cpu": "4", "memory": "16Gi", "pods": "110" },
                    },
                }))?;
                nodes.create(&PostParams::default(), &node).await?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}
