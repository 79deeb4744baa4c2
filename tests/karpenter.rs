//! A real creator of Nodes: Karpenter, with the KWOK cloud provider from its own
//! module (built by `control-plane/install`), provisions Nodes for a pending
//! Deployment; hollow serves them as KWOK would (they carry KWOK's annotation), the
//! pods run, and when the Deployment goes Karpenter consolidates the empty Nodes away
//! and hollow drops them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use hollow_core::manage::{KWOK_NODE_ANNOTATION, NodeManager};
use hollow_core::testenv::{INSTALL_COMMAND, TestEnv};
use hollow_tests::{eventually, free_port, init_tracing, kubectl_ok, node_ready, pod_phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(180);
const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";

/// Karpenter as its chart runs it, here as a local process: no leader election, its
/// ports free ones, its output in `<dir>/karpenter.log`.
fn start_karpenter(env: &TestEnv, dir: &Path) -> anyhow::Result<Child> {
    let binary = env.binary("karpenter-kwok");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: run {INSTALL_COMMAND}, which builds Karpenter's KWOK provider",
        binary.display()
    );
    let log = std::fs::File::create(dir.join("karpenter.log"))?;
    Command::new(&binary)
        .env("KUBECONFIG", env.kubeconfig_path())
        .env("SYSTEM_NAMESPACE", "kube-system")
        .env("DISABLE_LEADER_ELECTION", "true")
        .env("METRICS_PORT", free_port().to_string())
        .env("HEALTH_PROBE_PORT", free_port().to_string())
        .env("KUBERNETES_MIN_VERSION", "1.19.0-0")
        .env("BATCH_IDLE_DURATION", "1s")
        .env("BATCH_MAX_DURATION", "3s")
        .env("LOG_LEVEL", "info")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

fn karpenter_log(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("karpenter.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

async fn nodepool_nodes(nodes: &Api<Node>) -> Result<Vec<Node>, String> {
    nodes
        .list(&ListParams::default().labels(NODEPOOL_LABEL))
        .await
        .map(|list| list.items)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn karpenter_provisions_nodes_hollow_serves_and_consolidates_them() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let dir = tempfile::tempdir()?;
    let client = env.client();
    let crds = env.bin_dir().join("karpenter-crds");
    anyhow::ensure!(
        crds.is_dir(),
        "{} is missing: run {INSTALL_COMMAND}",
        crds.display()
    );
    // kubectl reads a symbolic link to a directory as a file.
    let crds = std::fs::canonicalize(crds)?;
    kubectl_ok(
        &env,
        &["apply", "--server-side", "-f", crds.to_str().unwrap()],
    )
    .await;
    kubectl_ok(
        &env,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/nodepools.karpenter.sh",
            "crd/nodeclaims.karpenter.sh",
            "crd/kwoknodeclasses.karpenter.kwok.sh",
        ],
    )
    .await;
    let classes = dir.path().join("nodepool.yaml");
    std::fs::write(
        &classes,
        r#"apiVersion: karpenter.kwok.sh/v1alpha1
kind: KWOKNodeClass
metadata:
  name: default
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 1s
    budgets:
    - nodes: 100%
  limits:
    cpu: 1000
  template:
    spec:
      expireAfter: Never
      requirements:
      - key: kubernetes.io/os
        operator: In
        values: ["linux"]
      - key: karpenter.sh/capacity-type
        operator: In
        values: ["on-demand"]
      nodeClassRef:
        group: karpenter.kwok.sh
        kind: KWOKNodeClass
        name: default
"#,
    )?;
    kubectl_ok(&env, &["apply", "-f", classes.to_str().unwrap()]).await;

    let manager = NodeManager::builder()
        .annotation_selector(format!("{KWOK_NODE_ANNOTATION}=fake"))
        .start(client.clone())
        .await?;
    let _karpenter = start_karpenter(&env, dir.path())?;

    // Six pods of 2 CPUs each: more than any one node the provider offers holds.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "inflate" },
        "spec": {
            "replicas": 6,
            "selector": { "matchLabels": { "app": "inflate" } },
            "template": {
                "metadata": { "labels": { "app": "inflate" } },
                "spec": {
                    "containers": [{
                        "name": "inflate",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": { "requests": { "cpu": "2", "memory": "1Gi" } },
                    }],
                },
            },
        },
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;

    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running = eventually(
        "the Deployment's pods running on Karpenter's Nodes",
        WAIT,
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=inflate"))
                .await
                .map_err(|e| e.to_string())?;
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| pod_phase(p) == "Running")
                .collect();
            (running.len() == 6)
                .then_some(running.clone())
                .ok_or(format!(
                    "{} running; karpenter said:\n{}",
                    running.len(),
                    karpenter_log(dir.path())
                ))
        },
    )
    .await;
    let used: BTreeSet<String> = running
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    let provisioned = nodepool_nodes(&nodes).await.map_err(anyhow::Error::msg)?;
    for node in &provisioned {
        let name = node.metadata.name.clone().unwrap_or_default();
        assert_eq!(node_ready(node), Some("True"), "{name} served");
        // Karpenter registered it (the unregistered taint gone, its label set) and the
        // provider's labels and provider ID stayed.
        let labels = node.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("karpenter.sh/registered").map(String::as_str),
            Some("true")
        );
        assert!(
            labels.contains_key("node.kubernetes.io/instance-type"),
            "{labels:?}"
        );
        let spec = node.spec.clone().unwrap_or_default();
        assert_eq!(spec.provider_id, Some(format!("kwok://{name}")));
    }
    let provisioned_names: BTreeSet<String> = provisioned
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert!(
        used.is_subset(&provisioned_names),
        "{used:?} on {provisioned_names:?}"
    );
    assert_eq!(
        manager.names().into_iter().collect::<BTreeSet<_>>(),
        provisioned_names,
        "hollow serves exactly the Nodes Karpenter made"
    );
    // Karpenter saw them initialized: Ready, with the resources it launched them for.
    let claims = kubectl_ok(
        &env,
        &[
            "get",
            "nodeclaims",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Initialized\")].status}{\"\\n\"}{end}",
        ],
    )
    .await;
    assert!(
        claims.lines().count() == provisioned.len() && claims.lines().all(|l| l == "True"),
        "every NodeClaim Initialized: {claims:?}"
    );

    // Scaled to zero, the Nodes are empty; Karpenter drains and deletes them and hollow
    // stops serving each as it goes.
    deployments
        .patch(
            "inflate",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 0 } })),
        )
        .await?;
    eventually("Karpenter's Nodes consolidated away", WAIT, || async {
        let left = nodepool_nodes(&nodes).await?;
        (left.is_empty() && manager.is_empty())
            .then_some(())
            .ok_or(format!(
                "{} Nodes left, {:?} served; karpenter said:\n{}",
                left.len(),
                manager.names(),
                karpenter_log(dir.path())
            ))
    })
    .await;

    manager.shutdown().await;
    env.stop();
    Ok(())
}
