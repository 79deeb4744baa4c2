//! Hollow nodes reached through an API server that prefers the `Hostname` address, as
//! kube-apiserver does with its default `--kubelet-preferred-address-types`: a node
//! whose hostname is its IP address serves `kubectl logs`; one whose hostname is its
//! node name, which does not resolve, cannot.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hollow_core::kubelet_api::KubeletServer;
use hollow_core::node::HollowCluster;
use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, free_port, init_tracing, kubectl, pod_from};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);

/// kube-apiserver's own default order.
const APISERVER_DEFAULT: [&str; 5] = [
    "Hostname",
    "InternalDNS",
    "InternalIP",
    "ExternalDNS",
    "ExternalIP",
];

fn node_ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 4, 0, u8::try_from(index + 1).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_reaches_a_node_whose_hostname_is_its_ip_when_hostname_is_preferred()
-> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder()
        .scheduler(false)
        .kubelet_preferred_address_types(APISERVER_DEFAULT)
        .start()
        .await?;
    let api = KubeletServer::builder().start(env.client()).await?;
    let port = free_port();
    // Node 0 publishes its IP as its hostname; node 1 keeps the default, its name.
    let cluster = HollowCluster::builder("hostname")
        .nodes(2, move |i, node| {
            let node = node.address(node_ip(i)).kubelet_port(port);
            match i {
                0 => node.hostname(node_ip(i).to_string()),
                _ => node,
            }
        })
        .start(env.client())
        .await?;
    for node in cluster.nodes() {
        api.serve(node.view()).await?;
    }

    let nodes: Api<Node> = Api::all(env.client());
    for (i, hostname) in [(0, node_ip(0).to_string()), (1, "hostname-1".into())] {
        let node = nodes.get(&format!("hostname-{i}")).await?;
        let addresses: Vec<(String, String)> = node
            .status
            .and_then(|s| s.addresses)
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.type_, a.address))
            .collect();
        assert_eq!(
            addresses,
            [
                ("InternalIP".into(), node_ip(i).to_string()),
                ("Hostname".into(), hostname),
            ]
        );
        // The label stays the node name.
        assert_eq!(
            node.metadata.labels.unwrap()["kubernetes.io/hostname"],
            format!("hostname-{i}")
        );
    }

    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    for i in 0..2 {
        let logged = pod_from(
            json!({
                "name": format!("logged-{i}"),
                "annotations": { "hollow.dev/logs": "reached by hostname" },
            }),
            json!({
                "nodeName": format!("hostname-{i}"),
                "containers": [{ "name": "app", "image": "busybox" }],
            }),
        );
        pods.create(&PostParams::default(), &logged).await?;
    }
    for i in 0..2 {
        let name = format!("logged-{i}");
        eventually(&format!("pod {name} Running"), WAIT, || async {
            let pod = pods.get(&name).await.map_err(|e| e.to_string())?;
            let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
            (phase == "Running").then_some(()).ok_or(phase)
        })
        .await;
    }

    // The API server dials the Hostname address, 127.4.0.1, on the published port.
    let (ok, out) = kubectl(&env, &["logs", "logged-0"]).await;
    assert!(ok && out.contains("reached by hostname"), "{out}");
    // It dials "hostname-1" there, which does not resolve.
    let (ok, out) = kubectl(&env, &["logs", "logged-1"]).await;
    assert!(!ok && out.contains("lookup hostname-1"), "{out}");
    Ok(())
}
