//! The hollow proxy engine against a real control plane: the real EndpointSlice
//! controller publishes endpoints of pods on hollow nodes, and the proxier sees them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use hollow_core::node::HollowCluster;
use hollow_core::proxier::FakeProxier;
use hollow_core::proxy::{HollowProxy, TO_BE_DELETED_TAINT};
use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, init_tracing};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn the_proxier_follows_services_and_endpoints() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let cluster = HollowCluster::builder("p")
        .nodes(2, |_, n| n)
        .start(env.client())
        .await?;
    let proxiers = [FakeProxier::default(), FakeProxier::default()];
    let proxy = HollowProxy::builder()
        .node("p-0", Arc::new(proxiers[0].clone()))
        .node("p-1", Arc::new(proxiers[1].clone()))
        .min_sync_period(Duration::from_millis(500))
        .build()
        .start(env.client());

    let deployments: Api<Deployment> = Api::namespaced(env.client(), "default");
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "web" },
                "spec": {
                    "replicas": 3,
                    "selector": { "matchLabels": { "app": "web" } },
                    "template": {
                        "metadata": { "labels": { "app": "web" } },
                        "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
                    },
                },
            }))?,
        )
        .await?;
    let services: Api<Service> = Api::namespaced(env.client(), "default");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "web" },
                "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80 }] },
            }))?,
        )
        .await?;

    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let pod_ips = eventually("3 Running pods with IPs", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?;
        let ips: BTreeSet<String> = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
            .collect();
        (ips.len() == 3)
            .then_some(ips.clone())
            .ok_or(format!("{ips:?}"))
    })
    .await;
    for proxier in &proxiers {
        eventually("the proxier to program the 3 endpoints", WAIT, || async {
            let rules = proxier.rules();
            (rules.get("default/web") == Some(&pod_ips))
                .then_some(())
                .ok_or(format!("{rules:?}"))
        })
        .await;
    }
    let health = proxy.health("p-0").unwrap();
    assert!(
        health.is_healthy() && health.last_updated.is_some(),
        "{health:?}"
    );

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 0 } })),
        )
        .await?;
    eventually("scaling to 0 to remove the endpoints", WAIT, || async {
        let rules = proxiers[0].rules();
        (rules.get("default/web").is_some_and(BTreeSet::is_empty))
            .then_some(())
            .ok_or(format!("{rules:?}"))
    })
    .await;
    services.delete("web", &Default::default()).await?;
    eventually("deleting the Service to remove its rules", WAIT, || async {
        let rules = proxiers[1].rules();
        (!rules.contains_key("default/web"))
            .then_some(())
            .ok_or(format!("{rules:?}"))
    })
    .await;

    // Batching itself is unit-tested on paused time; here the proxier synced.
    assert!(proxy.sync_count("p-0").unwrap() >= 1);

    // A node the autoscaler is draining is not eligible; /healthz would say 503.
    let nodes: Api<Node> = Api::all(env.client());
    nodes
        .patch("p-1", &PatchParams::default(), &Patch::Merge(json!({
            "spec": { "taints": [{ "key": TO_BE_DELETED_TAINT, "value": "1", "effect": "NoSchedule" }] }
        })))
        .await?;
    eventually("p-1 to be ineligible", WAIT, || async {
        let health = proxy.health("p-1").unwrap();
        (!health.node_eligible && !health.is_healthy())
            .then_some(())
            .ok_or(format!("{health:?}"))
    })
    .await;
    assert!(proxy.health("p-0").unwrap().node_eligible);
    proxy.shutdown().await;
    cluster.shutdown().await;
    Ok(())
}
