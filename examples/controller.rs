//! A controller tested against a real control plane and three hollow nodes: it labels
//! each pod with the zone of the node it runs on, and the example fails unless every pod
//! of a six-replica Deployment gets its node's zone within a minute.
//!
//! ```text
//! control-plane/install && cargo run -p hollow-examples --example controller
//! ```
//!
//! `cargo test` runs it too (`test = true` in `examples/Cargo.toml`): the `tests` module
//! at the bottom calls the same [`run`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hollow_core::node::HollowCluster;
use hollow_core::testenv::TestEnv;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, ResourceExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Error};
use serde_json::json;

/// The Node label the controller reads.
const NODE_ZONE: &str = "topology.kubernetes.io/zone";
/// The pod label the controller writes.
const POD_ZONE: &str = "example.hollow.dev/zone";
const REPLICAS: usize = 6;
const WAIT: Duration = Duration::from_secs(60);

/// The controller under test: labels a scheduled pod with its node's zone (and removes
/// the label if the node has none). Unscheduled pods wait for the binding, which is a
/// change the controller's watch sees.
async fn reconcile(pod: Arc<Pod>, client: Arc<Client>) -> Result<Action, Error> {
    let Some(node) = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) else {
        return Ok(Action::await_change());
    };
    let node = Api::<Node>::all(Client::clone(&client)).get(node).await?;
    let zone = node.labels().get(NODE_ZONE);
    if pod.labels().get(POD_ZONE) != zone {
        let patch = json!({ "metadata": { "labels": { POD_ZONE: zone } } });
        let pods = Api::<Pod>::namespaced(Client::clone(&client), &pod.namespace().unwrap());
        let params = PatchParams::default();
        pods.patch(&pod.name_any(), &params, &Patch::Merge(patch))
            .await?;
    }
    Ok(Action::await_change())
}

/// Retries a failed reconcile a second later.
fn error_policy(_pod: Arc<Pod>, _error: &Error, _client: Arc<Client>) -> Action {
    Action::requeue(Duration::from_secs(1))
}

/// Starts the control plane, three hollow nodes in zones a, b and c, the controller and
/// a Deployment; fails unless every pod gets its node's zone within [`WAIT`].
async fn run() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let nodes = HollowCluster::builder("zone")
        .nodes(3, |i, node| node.label(NODE_ZONE, ["a", "b", "c"][i]))
        .start(env.client())
        .await?; // every node is Ready
    println!("3 hollow nodes Ready in zones a, b and c");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(
        Controller::new(Api::<Pod>::all(env.client()), watcher::Config::default())
            .graceful_shutdown_on(async move {
                let _ = stopped.await;
            })
            .run(reconcile, error_policy, Arc::new(env.client()))
            .for_each(|result| async move {
                if let Err(error) = result {
                    eprintln!("reconcile failed: {error}");
                }
            }),
    );

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": REPLICAS,
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

    let outcome = wait_for_zone_labels(env.client()).await;
    let _ = stop.send(());
    controller.await?;
    nodes.shutdown().await;
    env.stop();
    let labelled = outcome?;
    for (pod, zone) in &labelled {
        println!("{pod}: {POD_ZONE}={zone}");
    }
    println!("all {REPLICAS} pods carry their node's zone");
    Ok(())
}

/// Polls until there are [`REPLICAS`] pods of the Deployment, each scheduled and
/// labelled with its node's zone; returns pod name to zone, or fails after [`WAIT`]
/// naming the pods still wrong.
async fn wait_for_zone_labels(client: Client) -> anyhow::Result<BTreeMap<String, String>> {
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let nodes = Api::<Node>::all(client);
    let deadline = Instant::now() + WAIT;
    loop {
        let zones: BTreeMap<String, String> = nodes
            .list(&ListParams::default())
            .await?
            .into_iter()
            .filter_map(|node| Some((node.name_any(), node.labels().get(NODE_ZONE)?.clone())))
            .collect();
        let mut labelled = BTreeMap::new();
        let mut wrong = Vec::new();
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        for pod in &list.items {
            let node = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref());
            let want = node.and_then(|node| zones.get(node));
            match (want, pod.labels().get(POD_ZONE)) {
                (Some(want), Some(got)) if want == got => {
                    labelled.insert(pod.name_any(), got.clone());
                }
                (want, got) => wrong.push(format!(
                    "{} on {}: want {want:?}, has {got:?}",
                    pod.name_any(),
                    node.unwrap_or("no node yet")
                )),
            }
        }
        if labelled.len() == REPLICAS && wrong.is_empty() {
            return Ok(labelled);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "after {WAIT:?}, {} of {REPLICAS} pods carry their node's zone; wrong: {wrong:?}",
                labelled.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run().await
}

#[cfg(test)]
mod tests {
    /// The example itself, run by `cargo test` against the control plane in
    /// `HOLLOW_K8S_BIN`.
    #[tokio::test(flavor = "multi_thread")]
    async fn every_pod_gets_its_node_zone() -> anyhow::Result<()> {
        super::run().await
    }
}
