//! Nodes created by others, served as KWOK serves them, against the real control
//! plane: Nodes made through the API (as Karpenter's KWOK provider or `kubectl create`
//! make them) with their own capacity, labels, taints and provider ID; hollow fills in
//! what the kubelet owns, keeps what the creator wrote, runs the pods the scheduler
//! puts there (and those bound before it started), picks up Nodes made later and drops
//! those deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use hollow_core::manage::NodeManager;
use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, init_tracing, node_ready, pod, pod_phase as phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// A Node as Karpenter's KWOK provider makes one: labels, a taint, a provider ID and its
/// instance type's capacity, no status conditions.
fn created_node(name: &str, annotated: bool) -> Node {
    let annotations = if annotated {
        json!({ "kwok.x-k8s.io/node": "fake" })
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {
                "type": "kwok",
                "node.kubernetes.io/instance-type": "c-4x-amd64-linux",
                "kubernetes.io/hostname": format!("{name}-host"),
            },
            "annotations": annotations,
        },
        "spec": {
            "providerID": format!("kwok://{name}"),
            "taints": [{ "key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule" }],
        },
        "status": {
            "capacity": { "cpu": "4", "memory": "16Gi", "pods": "30", "ephemeral-storage": "20Gi" },
            "allocatable": { "cpu": "3900m", "memory": "15Gi", "pods": "30", "ephemeral-storage": "20Gi" },
        },
    }))
    .expect("a Node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_made_by_others_are_served_kept_as_made_and_dropped_when_deleted()
-> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let client = env.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let post = PostParams::default();
    // Nodes take their status on create (pkg/registry/core/node/strategy.go), as
    // Karpenter's KWOK provider writes capacity.
    for (name, annotated) in [("kwok-0", true), ("kwok-1", true), ("unannotated", false)] {
        nodes.create(&post, &created_node(name, annotated)).await?;
    }
    let mut plain = created_node("unlabelled", true);
    plain.metadata.labels = None;
    nodes.create(&post, &plain).await?;
    // Until the node lifecycle controller gives up on the Nodes nothing serves (its
    // grace period), the scheduler would place pods on them: keep it off.
    for name in ["unannotated", "unlabelled"] {
        nodes
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({ "spec": { "unschedulable": true } })),
            )
            .await?;
    }
    // A pod bound before anything serves its node (the scheduler would not place it on
    // a node that is not Ready; a creator restarting its simulator finds such pods).
    pods.create(
        &post,
        &pod(
            "bound-before",
            json!({
                "nodeName": "kwok-1",
                "containers": [{ "name": "app", "image": "nginx:1.27" }],
            }),
        ),
    )
    .await?;

    let manager = NodeManager::builder()
        .label_selector("type=kwok")
        .annotation_selector("kwok.x-k8s.io/node=fake")
        .start(client.clone())
        .await?;

    for name in ["kwok-0", "kwok-1"] {
        // Ready, and completed with the kubelet's labels (written beside the first
        // status, not before it).
        let node = eventually(&format!("{name} Ready"), WAIT, || async {
            let node = nodes.get(name).await.map_err(|e| e.to_string())?;
            let completed = node
                .metadata
                .labels
                .as_ref()
                .is_some_and(|labels| labels.contains_key("kubernetes.io/os"));
            (node_ready(&node) == Some("True") && completed)
                .then_some(node.clone())
                .ok_or(format!("{:?}", node.status.and_then(|s| s.conditions)))
        })
        .await;
        // What the creator wrote stays.
        let labels = node.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["type"], "kwok");
        assert_eq!(labels["kubernetes.io/hostname"], format!("{name}-host"));
        assert_eq!(labels["kubernetes.io/os"], "linux", "added where missing");
        let spec = node.spec.clone().unwrap_or_default();
        assert_eq!(spec.provider_id, Some(format!("kwok://{name}")));
        // (Besides the creator's, the controller manager's not-ready taint may still be
        // there: it lifts it on its next pass over the Ready node.)
        let taints = spec.taints.unwrap_or_default();
        assert!(
            taints
                .iter()
                .any(|t| t.key == "kwok.x-k8s.io/node" && t.effect == "NoSchedule"),
            "{taints:?}"
        );
        let status = node.status.clone().unwrap_or_default();
        let capacity = status.capacity.unwrap_or_default();
        let allocatable = status.allocatable.unwrap_or_default();
        assert_eq!(capacity["cpu"].0, "4");
        assert_eq!(capacity["pods"].0, "30");
        assert_eq!(allocatable["cpu"].0, "3900m");
        assert_eq!(allocatable["memory"].0, "15Gi");
        // What the kubelet owns is filled in.
        let info = status.node_info.unwrap_or_default();
        assert!(!info.kubelet_version.is_empty(), "{info:?}");
        assert!(status.daemon_endpoints.is_some());
        assert!(
            node.metadata
                .annotations
                .unwrap_or_default()
                .contains_key("volumes.kubernetes.io/controller-managed-attach-detach")
        );
        let lease = Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
            .get(name)
            .await?;
        assert_eq!(
            lease.spec.and_then(|s| s.holder_identity).as_deref(),
            Some(name)
        );
    }
    assert_eq!(manager.names(), ["kwok-0", "kwok-1"]);

    // The pod bound before its node was served runs.
    eventually("the pod bound before runs", WAIT, || async {
        let pod = pods.get("bound-before").await.map_err(|e| e.to_string())?;
        (phase(&pod) == "Running")
            .then_some(())
            .ok_or(format!("{:?}", pod.status))
    })
    .await;

    // The scheduler places a Deployment on the served nodes, within their capacity.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 4,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists" }],
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "resources": { "requests": { "cpu": "1500m" } },
                    }],
                },
            },
        },
    }))?;
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&post, &deployment)
        .await?;
    let running = eventually("the Deployment's pods running", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?;
        let seen: Vec<String> = list
            .items
            .iter()
            .map(|p| {
                let status = p.status.clone().unwrap_or_default();
                format!(
                    "{:?} on {:?}: {} {:?} {:?}",
                    p.metadata.name,
                    p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    phase(p),
                    status.reason,
                    status.conditions.map(|c| c
                        .into_iter()
                        .map(|c| (c.type_, c.status, c.message))
                        .collect::<Vec<_>>())
                )
            })
            .collect();
        let running: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| phase(p) == "Running")
            .collect();
        (running.len() == 4)
            .then_some(running.clone())
            .ok_or(format!("{} running: {seen:#?}", running.len()))
    })
    .await;
    let mut per_node = BTreeMap::<String, usize>::new();
    for pod in &running {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        *per_node.entry(node.unwrap_or_default()).or_default() += 1;
    }
    // 3.9 CPUs allocatable: two pods of 1.5 CPUs fit on each node, not three.
    assert_eq!(
        per_node,
        BTreeMap::from([("kwok-0".to_string(), 2), ("kwok-1".to_string(), 2)])
    );

    // Nodes not selected are left alone.
    for name in ["unannotated", "unlabelled"] {
        let node = nodes.get(name).await?;
        assert_eq!(node_ready(&node), None, "{name} is not served");
    }

    // A Node made later is served; one deleted is dropped at once, its pods left to
    // the control plane.
    nodes.create(&post, &created_node("kwok-2", true)).await?;
    eventually("kwok-2 Ready", WAIT, || async {
        let node = nodes.get("kwok-2").await.map_err(|e| e.to_string())?;
        (node_ready(&node) == Some("True"))
            .then_some(())
            .ok_or("not Ready".to_string())
    })
    .await;
    nodes.delete("kwok-2", &DeleteParams::default()).await?;
    eventually("kwok-2 dropped", Duration::from_secs(30), || async {
        let names = manager.names();
        (!names.contains(&"kwok-2".to_string()))
            .then_some(())
            .ok_or(format!("{names:?}"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        nodes.get_opt("kwok-2").await?.is_none(),
        "a dropped Node is not written again"
    );
    // A Node that stops matching is dropped too.
    let unlabel = json!({ "metadata": { "labels": { "type": null } } });
    nodes
        .patch(
            "kwok-1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(unlabel),
        )
        .await?;
    eventually("kwok-1 dropped", Duration::from_secs(30), || async {
        let names = manager.names();
        (names == ["kwok-0"])
            .then_some(())
            .ok_or(format!("{names:?}"))
    })
    .await;

    manager.shutdown().await;
    env.stop();
    Ok(())
}
