//! The `hollow-proxy` binary, run as a process against a real local control plane.

use std::process::Stdio;
use std::time::Duration;

use hollow_core::node::HollowNode;
use hollow_core::proxy::TO_BE_DELETED_TAINT;
use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, get, init_tracing, served_address};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(120);
const BINARY: &str = env!("CARGO_BIN_EXE_hollow-proxy");

#[tokio::test]
async fn the_seeds_proxy_command_line_serves_kube_proxy_health() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().scheduler(false).start().await?;
    let node = HollowNode::builder("hollow-node-x1")
        .build()?
        .start(env.client())
        .await?;
    node.wait_ready(WAIT).await?;

    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("proxy.log");
    // The seeds' proxy command line with the binary swapped, `$(NODE_NAME)` expanded as
    // Kubernetes would in the pod, and loopback ports picked freely.
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(BINARY)
        .args([
            "--morph=proxy",
            "--name=hollow-node-x1",
            "--use-real-proxier=false",
            &format!("--kubeconfig={}", env.kubeconfig_path().display()),
            "--alsologtostderr",
            "--v=2",
            "--healthz-bind-address=127.0.0.1:0",
            "--metrics-bind-address=127.0.0.1:0",
        ])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;

    let health = served_address(&log_path, "/healthz", WAIT).await;
    let metrics = served_address(&log_path, "/metrics", WAIT).await;
    let body = eventually("/healthz 200 with an eligible node", WAIT, || async {
        let (code, body) = get(&health, "/healthz").await?;
        (code == 200)
            .then_some(body.clone())
            .ok_or(format!("{code} {body}"))
    })
    .await;
    let json: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(json["nodeEligible"], true);
    assert!(!json["lastUpdated"].as_str().unwrap().is_empty());
    let (code, _) = get(&health, "/healthz/hollow-node-x1").await.unwrap();
    assert_eq!(code, 200);
    let (code, _) = get(&health, "/healthz/unknown").await.unwrap();
    assert_eq!(code, 404);
    let (_, text) = get(&metrics, "/metrics").await.unwrap();
    assert!(
        text.contains("kubeproxy_sync_proxy_rules_last_timestamp_seconds"),
        "{text}"
    );

    // A node the autoscaler drains: /healthz 503 with nodeEligible false; /livez 200.
    let nodes: Api<Node> = Api::all(env.client());
    nodes
        .patch("hollow-node-x1", &PatchParams::default(), &Patch::Merge(serde_json::json!({
            "spec": { "taints": [{ "key": TO_BE_DELETED_TAINT, "value": "1", "effect": "NoSchedule" }] }
        })))
        .await?;
    let body = eventually("/healthz 503", WAIT, || async {
        let (code, body) = get(&health, "/healthz").await?;
        (code == 503)
            .then_some(body.clone())
            .ok_or(format!("{code} {body}"))
    })
    .await;
    assert!(body.contains("\"nodeEligible\":false"), "{body}");
    assert_eq!(get(&health, "/livez").await.unwrap().0, 200);

    kill(
        Pid::from_raw(i32::try_from(child.id().unwrap())?),
        Signal::SIGTERM,
    )?;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert!(status.success());
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    for (args, expected) in [
        (vec!["--morph=kubelet"], "run hollow-kubelet"),
        (vec![], "hollow-proxy needs a cluster"),
        (vec!["--nodes=0"], "--nodes"),
    ] {
        let output = Command::new(BINARY)
            .args(&args)
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && text.contains(expected),
            "{args:?}: {text}"
        );
    }
}
