//! Faults a hollow-kubelet process must recover from as a kubelet does, against a real
//! local control plane: every case ends with no node and no pod lost, no container
//! restarted, and every node and pod Ready again soon after the fault ends.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, init_tracing, node_ready};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(120);
const BINARY: &str = env!("CARGO_BIN_EXE_hollow-kubelet");
/// How soon after a fault ends every node and pod must be Ready again: the kubelet's
/// status period (10 s) and some slack for a loaded machine.
const RECOVERY: Duration = Duration::from_secs(15);

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum())
}

/// The UIDs of the nodes named `<prefix>-*` and the Ready status of each.
async fn nodes_ready(nodes: &Api<Node>, prefix: &str) -> Result<BTreeMap<String, String>, String> {
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .filter(|n| {
            n.metadata
                .name
                .as_deref()
                .is_some_and(|name| name.starts_with(prefix))
        })
        .map(|n| {
            (
                n.metadata.name.clone().unwrap_or_default(),
                node_ready(n).unwrap_or("none").to_string(),
            )
        })
        .collect())
}

/// The pods of `app` by UID, with whether each is Ready and its restarts.
async fn app_pods(pods: &Api<Pod>, app: &str) -> Result<BTreeMap<String, (bool, i32)>, String> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .map(|p| {
            (
                p.metadata.uid.clone().unwrap_or_default(),
                (pod_ready(p), restarts(p)),
            )
        })
        .collect())
}

/// The process frozen (SIGSTOP) past the node monitor grace period, so the node
/// lifecycle controller marks its nodes Unknown and their pods not ready, then resumed:
/// a kubelet is Ready again within a status period, and so must hollow's nodes be,
/// although their Lease renewals merely arrive late (none fails).
#[tokio::test]
async fn a_frozen_process_is_ready_again_within_a_status_period_of_resuming() -> anyhow::Result<()>
{
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let dir = tempfile::tempdir()?;
    let log = std::fs::File::create(dir.path().join("frozen.log"))?;
    let mut child = Command::new(BINARY)
        .args([
            "--name=frozen",
            "--nodes=3",
            "--serve-kubelet-api=false",
            &format!("--kubeconfig={}", env.kubeconfig_path().display()),
        ])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let pid = Pid::from_raw(i32::try_from(child.id().expect("running"))?);
    let nodes: Api<Node> = Api::all(env.client());
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    eventually("3 nodes Ready and schedulable", WAIT, || async {
        let list = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|n| node_ready(n) == Some("True"))
            .filter(|n| {
                !n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key == "node.kubernetes.io/not-ready"))
            })
            .count();
        (ready == 3).then_some(()).ok_or(format!("{ready} of 3"))
    })
    .await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "frozen" },
        "spec": {
            "replicas": 6,
            "selector": { "matchLabels": { "app": "frozen" } },
            "template": {
                "metadata": { "labels": { "app": "frozen" } },
                "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1" }] },
            },
        },
    }))?;
    Api::<Deployment>::namespaced(env.client(), "default")
        .create(&PostParams::default(), &deployment)
        .await?;
    let before = eventually("6 pods Ready", WAIT, || async {
        let pods = app_pods(&pods, "frozen").await?;
        let ready = pods.values().filter(|(ready, _)| *ready).count();
        (ready == 6)
            .then_some(pods.clone())
            .ok_or(format!("{ready} of 6: {pods:?}"))
    })
    .await;

    kill(pid, Signal::SIGSTOP)?;
    let frozen = async {
        eventually("every node Unknown", WAIT, || async {
            let nodes = nodes_ready(&nodes, "frozen-").await?;
            nodes
                .values()
                .all(|ready| ready == "Unknown")
                .then_some(())
                .ok_or(format!("{nodes:?}"))
        })
        .await;
        eventually("every pod marked not ready", WAIT, || async {
            let pods = app_pods(&pods, "frozen").await?;
            pods.values()
                .all(|(ready, _)| !ready)
                .then_some(())
                .ok_or(format!("{pods:?}"))
        })
        .await;
    };
    // Resumed whatever happens, so a failure does not leave a stopped process behind.
    let outcome = tokio::time::timeout(WAIT, frozen).await;
    kill(pid, Signal::SIGCONT)?;
    outcome.expect("the controller marked the frozen nodes and pods within 120 s");
    let resumed = Instant::now();

    let (nodes_after, pods_after) = eventually("every node and pod Ready again", WAIT, || async {
        let (n, p) = (
            nodes_ready(&nodes, "frozen-").await?,
            app_pods(&pods, "frozen").await?,
        );
        let all_ready = n.values().all(|r| r == "True") && p.values().all(|(ready, _)| *ready);
        all_ready
            .then_some((n.clone(), p.clone()))
            .ok_or(format!("{n:?} {p:?}"))
    })
    .await;
    let took = resumed.elapsed();
    assert!(
        took <= RECOVERY,
        "nodes and pods Ready {took:?} after the process resumed; a kubelet is within {RECOVERY:?}"
    );
    assert_eq!(nodes_after.len(), 3, "no node lost: {nodes_after:?}");
    assert_eq!(
        pods_after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "no pod lost or replaced"
    );
    assert!(
        pods_after.values().all(|(_, restarts)| *restarts == 0),
        "no container restarted: {pods_after:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("frozen.log"))?;
    assert!(!log.contains("panicked"), "{log}");

    kill(pid, Signal::SIGTERM)?;
    let exit = tokio::time::timeout(Duration::from_secs(60), child.wait()).await??;
    assert!(exit.success());
    Ok(())
}
