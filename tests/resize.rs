//! In-place pod resize against the real control plane, as a 1.36 kubelet handles it: a
//! resize the node has room for is applied through the runtime and completes; one it
//! has no room for is deferred with the kubelet's reason and message, the status
//! keeping the allocated resources, and goes through once another pod frees the room; a
//! container whose resize policy says so is restarted at its new size.

use std::sync::Arc;
use std::time::Duration;

use hollow_core::node::HollowNode;
use hollow_core::runtime::{FakeRuntime, RuntimeMethod};
use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, init_tracing, pod, pod_condition};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

fn app(requests_cpu: &str, limits_cpu: &str) -> Value {
    json!({ "containers": [{
        "name": "app",
        "image": "registry.k8s.io/pause:3.10",
        "resources": {
            "requests": { "cpu": requests_cpu, "memory": "64Mi" },
            "limits": { "cpu": limits_cpu, "memory": "64Mi" },
        },
    }] })
}

/// A container whose memory resize restarts it.
fn memory_app(memory: &str) -> Value {
    json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "app",
            "image": "registry.k8s.io/pause:3.10",
            "resizePolicy": [{ "resourceName": "memory", "restartPolicy": "RestartContainer" }],
            "resources": {
                "requests": { "cpu": "50m", "memory": memory },
                "limits": { "cpu": "100m", "memory": memory },
            },
        }],
    })
}

async fn resize(pods: &Api<Pod>, name: &str, requests_cpu: &str, limits_cpu: &str) {
    pods.patch_subresource(
        "resize",
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({ "spec": app(requests_cpu, limits_cpu) })),
    )
    .await
    .expect("the API server takes the resize");
}

/// The container's (requests, limits) CPU in the status, and the allocated CPU.
fn shown_cpu(pod: &Pod) -> Option<(String, String, String)> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let resources = status.resources.as_ref()?;
    Some((
        resources.requests.as_ref()?.get("cpu")?.0.clone(),
        resources.limits.as_ref()?.get("cpu")?.0.clone(),
        status.allocated_resources.as_ref()?.get("cpu")?.0.clone(),
    ))
}

fn resize_condition(pod: &Pod) -> Option<(String, Option<String>, Option<String>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.starts_with("PodResize"))
        .map(|c| (c.type_.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_for(pods: &Api<Pod>, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    hollow_tests::wait_pod(pods, name, what, WAIT, check).await
}

async fn reasons(client: &kube::Client, pod: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let mut list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
        .await
        .expect("events")
        .items;
    list.sort_by(|a, b| a.first_timestamp.cmp(&b.first_timestamp));
    list.into_iter().filter_map(|e| e.reason).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resizes_are_applied_or_deferred_until_another_pod_frees_the_room() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let client = env.client();
    let runtime = FakeRuntime::default();
    let _node = HollowNode::builder("resizer")
        .allocatable("cpu", "2")
        .runtime(Arc::new(runtime.clone()))
        .build()?
        .start(client.clone())
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut web = pod("web", app("100m", "200m"));
    web.spec.as_mut().unwrap().node_name = Some("resizer".into());
    pods.create(&PostParams::default(), &web).await?;
    wait_for(&pods, "web", "web Ready", |p| {
        pod_condition(p, "Ready") == Some("True")
    })
    .await;

    // Room for it: applied, in progress, then done, the status showing the new size.
    resize(&pods, "web", "300m", "600m").await;
    let done = wait_for(&pods, "web", "the resize applied and done", |p| {
        shown_cpu(p) == Some(("300m".into(), "600m".into(), "300m".into()))
            && resize_condition(p).is_none()
    })
    .await;
    assert_eq!(
        done.status.as_ref().unwrap().observed_generation,
        done.metadata.generation,
        "the status observed the resized spec"
    );
    assert!(
        runtime.calls_to(RuntimeMethod::UpdateContainerResources) >= 1,
        "the runtime was told the new resources"
    );
    eventually("ResizeStarted and ResizeCompleted", WAIT, || async {
        let seen = reasons(&client, "web").await;
        let started = seen.iter().position(|r| r == "ResizeStarted");
        let completed = seen.iter().position(|r| r == "ResizeCompleted");
        match (started, completed) {
            (Some(s), Some(c)) if s < c => Ok(()),
            _ => Err(format!("{seen:?}")),
        }
    })
    .await;

    // No room while another pod holds it: deferred with the kubelet's message, the
    // status keeping what is allocated.
    let mut db = pod("db", app("500m", "500m"));
    db.spec.as_mut().unwrap().node_name = Some("resizer".into());
    pods.create(&PostParams::default(), &db).await?;
    wait_for(&pods, "db", "db Ready", |p| {
        pod_condition(p, "Ready") == Some("True")
    })
    .await;
    resize(&pods, "web", "1800m", "1900m").await;
    let deferred = wait_for(&pods, "web", "the resize deferred", |p| {
        resize_condition(p).is_some()
    })
    .await;
    assert_eq!(
        resize_condition(&deferred),
        Some((
            "PodResizePending".into(),
            Some("Deferred".into()),
            Some(
                "Node didn't have enough resource: cpu, requested: 1800, used: 500, capacity: 2000"
                    .into()
            ),
        ))
    );
    assert_eq!(
        shown_cpu(&deferred),
        Some(("300m".into(), "600m".into(), "300m".into())),
        "a deferred resize leaves the allocated resources in the status"
    );
    eventually("ResizeDeferred", WAIT, || async {
        let seen = reasons(&client, "web").await;
        if seen.iter().any(|r| r == "ResizeDeferred") {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;

    // The other pod goes: the deferred resize is judged again and goes through.
    pods.delete("db", &DeleteParams::default()).await?;
    wait_for(&pods, "web", "the deferred resize applied", |p| {
        shown_cpu(p) == Some(("1800m".into(), "1900m".into(), "1800m".into()))
            && resize_condition(p).is_none()
    })
    .await;

    // A container whose resize policy says so for memory is restarted to resize it.
    pods.delete("web", &DeleteParams::default()).await?;
    let mut cache = pod("cache", memory_app("64Mi"));
    cache.spec.as_mut().unwrap().node_name = Some("resizer".into());
    pods.create(&PostParams::default(), &cache).await?;
    wait_for(&pods, "cache", "cache Ready", |p| {
        pod_condition(p, "Ready") == Some("True")
    })
    .await;
    pods.patch_subresource(
        "resize",
        "cache",
        &PatchParams::default(),
        &Patch::Strategic(json!({ "spec": memory_app("128Mi") })),
    )
    .await?;
    let restarted = wait_for(&pods, "cache", "cache restarted at its new size", |p| {
        let status = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first());
        status.is_some_and(|c| {
            c.restart_count == 1
                && c.ready
                && c.resources
                    .as_ref()
                    .and_then(|r| r.limits.as_ref())
                    .map(|l| l["memory"].0.clone())
                    == Some("128Mi".into())
        }) && resize_condition(p).is_none()
    })
    .await;
    let container = &restarted
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(
        container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some(),
        "the container before the restart is its last state: {container:?}"
    );
    eventually(
        "the kubelet's Killing event for the restart",
        WAIT,
        || async {
            let events: Api<Event> = Api::namespaced(client.clone(), "default");
            let list = events
                .list(&ListParams::default().fields("involvedObject.name=cache,reason=Killing"))
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .iter()
                .any(|e| e.message.as_deref() == Some("Container app resize requires restart"))
                .then_some(())
                .ok_or(format!(
                    "{:?}",
                    list.items.iter().map(|e| &e.message).collect::<Vec<_>>()
                ))
        },
    )
    .await;
    env.stop();
    Ok(())
}
