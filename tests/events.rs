//! A hollow node records the Events a kubelet records (reasons and messages from the
//! kubelet's code: pkg/kubelet/kubelet.go, kubelet_node_status.go, images/,
//! kuberuntime/), seen through the real API server; and none when told not to.

use std::time::Duration;

use hollow_core::node::HollowNode;
use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, init_tracing, pod};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// `reason: message` of the events about `kind`/`name` in `namespace`, oldest first.
async fn events_of(client: &kube::Client, namespace: &str, kind: &str, name: &str) -> Vec<Event> {
    let mut events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind={kind},involvedObject.name={name}"
        )))
        .await
        .map(|list| list.items)
        .unwrap_or_default();
    // Times are whole seconds; the kubelet's names (`<object>.<hex nanoseconds>`) order
    // the events of one second.
    events.sort_by(|a, b| {
        (&a.first_timestamp, &a.metadata.name).cmp(&(&b.first_timestamp, &b.metadata.name))
    });
    events
}

fn reasons(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.reason.clone().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_pods_record_the_kubelets_events() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let client = env.client();
    let _loud = HollowNode::builder("loud")
        .build()?
        .start(client.clone())
        .await?;
    let _quiet = HollowNode::builder("quiet")
        .events(false)
        .build()?
        .start(client.clone())
        .await?;

    // The node's own, in the kubelet's order, from source kubelet on the node. They are
    // written in the background, so the list is complete only once all have landed.
    let expected = [
        "Starting",
        "NodeHasSufficientMemory",
        "NodeHasNoDiskPressure",
        "NodeHasSufficientPID",
        "NodeAllocatableEnforced",
        "NodeReady",
    ];
    let node_events = eventually("the node's events", WAIT, || async {
        let events = events_of(&client, "default", "Node", "loud").await;
        let mine: Vec<String> = reasons(&events)
            .into_iter()
            .filter(|r| r != "RegisteredNode")
            .collect();
        (mine == expected)
            .then_some(events)
            .ok_or(format!("{mine:?}"))
    })
    .await;
    let ready = node_events
        .iter()
        .find(|e| e.reason.as_deref() == Some("NodeReady"))
        .unwrap();
    assert_eq!(
        ready.message.as_deref(),
        Some("Node loud status is now: NodeReady")
    );
    let source = ready.source.clone().unwrap_or_default();
    assert_eq!(source.component.as_deref(), Some("kubelet"));
    assert_eq!(source.host.as_deref(), Some("loud"));
    assert_eq!(ready.reporting_component.as_deref(), Some("kubelet"));
    assert_eq!(ready.involved_object.uid.as_deref(), Some("loud"));

    // A pod's life: pulled, created, started; killed when deleted. (Once the controller
    // manager has published the CA bundle its service account volume mounts: before,
    // the kubelet would record FailedMount first.)
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    eventually("kube-root-ca.crt", WAIT, || async {
        match config_maps.get_opt("kube-root-ca.crt").await {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, node) in [("web", "loud"), ("silent", "quiet")] {
        pods.create(
            &PostParams::default(),
            &pod(
                name,
                json!({
                    "nodeName": node,
                    "containers": [{ "name": "app", "image": "nginx:1.27" }],
                }),
            ),
        )
        .await?;
    }
    let started = eventually("the pod's events up to Started", WAIT, || async {
        let events = events_of(&client, "default", "Pod", "web").await;
        let reasons = reasons(&events);
        (reasons == ["Pulling", "Pulled", "Created", "Started"])
            .then_some(events)
            .ok_or(format!("{reasons:?}"))
    })
    .await;
    let message = |reason: &str| {
        started
            .iter()
            .find(|e| e.reason.as_deref() == Some(reason))
            .and_then(|e| e.message.clone())
            .unwrap_or_default()
    };
    assert_eq!(message("Pulling"), "Pulling image \"nginx:1.27\"");
    assert!(
        message("Pulled").starts_with("Successfully pulled image \"nginx:1.27\" in "),
        "{}",
        message("Pulled")
    );
    assert_eq!(message("Created"), "Container created");
    assert_eq!(
        started[0].involved_object.field_path.as_deref(),
        Some("spec.containers{app}")
    );
    pods.delete("web", &DeleteParams::default()).await?;
    eventually("Killing", WAIT, || async {
        let events = events_of(&client, "default", "Pod", "web").await;
        events
            .iter()
            .find(|e| e.reason.as_deref() == Some("Killing"))
            .map(|e| e.message.clone())
            .ok_or(format!("{:?}", reasons(&events)))
    })
    .await
    .filter(|m| m == "Stopping container app")
    .expect("the kubelet's message");

    // The quiet node ran its pod and recorded nothing.
    eventually("the quiet node's pod running", WAIT, || async {
        let pod = pods.get("silent").await.map_err(|e| e.to_string())?;
        (pod.status.and_then(|s| s.phase).as_deref() == Some("Running"))
            .then_some(())
            .ok_or("not running".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        events_of(&client, "default", "Pod", "silent")
            .await
            .is_empty()
    );
    let quiet_node = events_of(&client, "default", "Node", "quiet").await;
    assert!(
        quiet_node
            .iter()
            .all(|e| e.source.as_ref().and_then(|s| s.component.as_deref()) != Some("kubelet")),
        "only the controllers' events: {:?}",
        reasons(&quiet_node)
    );
    env.stop();
    Ok(())
}
