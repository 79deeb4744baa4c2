//! Three hollow nodes in three zones on a real local control plane, a Deployment spread
//! over them, and one node losing its heartbeats.
//!
//! ```text
//! control-plane/install && cargo run -p hollow-examples --example hollow_cluster
//! ```

use std::time::Duration;

use hollow_core::node::HollowCluster;
use hollow_core::testenv::TestEnv;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let zones = ["a", "b", "c"];
    let nodes = HollowCluster::builder("hollow")
        .nodes(3, move |i, node| {
            node.label("topology.kubernetes.io/zone", zones[i])
        })
        .start(env.client())
        .await?;
    println!(
        "3 hollow nodes Ready; kubeconfig: {}",
        env.kubeconfig_path().display()
    );

    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 6,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
            },
        },
    }))?;
    Api::<Deployment>::namespaced(env.client(), "default")
        .create(&PostParams::default(), &deployment)
        .await?;

    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    for _ in 0..60 {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        if running == 6 {
            for pod in &list.items {
                let spec = pod.spec.as_ref().unwrap();
                let status = pod.status.as_ref().unwrap();
                println!(
                    "{} on {} at {}",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    spec.node_name.as_deref().unwrap_or_default(),
                    status.pod_ip.as_deref().unwrap_or_default()
                );
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // A real NotReady: the node lifecycle controller notices the missing heartbeats.
    nodes.node(1).pause_heartbeats();
    println!("hollow-1 stopped its heartbeats; it goes Unknown after the grace period");
    nodes.shutdown().await;
    Ok(())
}
