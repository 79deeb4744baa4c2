//! Pods that refer to ConfigMaps, Secrets and claims wait for them as the kubelet's
//! pods do (its volume manager, and the env it makes for each container), against the
//! real control plane: a Deployment whose pod mounts a ConfigMap created later, a pod
//! whose env reads a Secret created later, a claim that is never bound.

use std::time::Duration;

use hollow_core::node::HollowNode;
use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, init_tracing, pod, pod_condition as condition, pod_phase as phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerStatus, Event, PersistentVolumeClaim, Pod, Secret,
};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(150);

fn container(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn waiting(pod: &Pod) -> Option<(String, Option<String>)> {
    let waiting = container(pod)?.state.as_ref()?.waiting.as_ref()?;
    Some((waiting.reason.clone()?, waiting.message.clone()))
}

async fn wait_pod(
    pods: &Api<Pod>,
    selector: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    eventually(what, WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| e.to_string())?;
        match list.items.into_iter().next() {
            Some(pod) if check(&pod) => Ok(pod),
            Some(pod) => Err(format!("{:?}", pod.status)),
            None => Err("no pod yet".into()),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_wait_for_the_configmaps_secrets_and_claims_they_refer_to() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let client = env.client();
    let _node = HollowNode::builder("refs")
        .build()?
        .start(client.clone())
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // A Deployment whose pod mounts a ConfigMap that does not exist yet.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "mounts-late" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "mounts-late" } },
            "template": {
                "metadata": { "labels": { "app": "mounts-late" } },
                "spec": {
                    "nodeName": "refs",
                    "containers": [{
                        "name": "app", "image": "nginx:1.27",
                        "volumeMounts": [{ "name": "config", "mountPath": "/config" }],
                    }],
                    "volumes": [{ "name": "config", "configMap": { "name": "late" } }],
                },
            },
        },
    }))?;
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment)
        .await?;
    // Its env reads a Secret that does not exist yet.
    pods.create(
        &PostParams::default(),
        &pod(
            "env-late",
            json!({
                "nodeName": "refs",
                "containers": [{
                    "name": "app", "image": "nginx:1.27",
                    "envFrom": [{ "secretRef": { "name": "creds" } }],
                }],
            }),
        ),
    )
    .await?;
    // Its claim exists but is never bound (no provisioner runs).
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": { "name": "unbound" },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "none",
            "resources": { "requests": { "storage": "1Gi" } },
        },
    }))?;
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &claim)
        .await?;
    let mut claimed = pod(
        "claims-unbound",
        json!({
            "nodeName": "refs",
            "containers": [{ "name": "app", "image": "nginx:1.27" }],
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "unbound" } }],
        }),
    );
    claimed.metadata.labels = Some([("app".to_string(), "claims-unbound".to_string())].into());
    pods.create(&PostParams::default(), &claimed).await?;

    // While the ConfigMap is missing: Pending, no sandbox, the container being created.
    let mounting = wait_pod(
        &pods,
        "app=mounts-late",
        "a pod waiting for its volume",
        |p| waiting(p).is_some_and(|(reason, _)| reason == "ContainerCreating"),
    )
    .await;
    assert_eq!(phase(&mounting), "Pending");
    assert_eq!(
        condition(&mounting, "PodReadyToStartContainers"),
        Some("False")
    );
    assert!(
        mounting.status.as_ref().unwrap().pod_ip.is_none(),
        "no sandbox, no IP"
    );
    // While the Secret is missing: the sandbox runs, the container cannot be made.
    let env_pod = eventually("CreateContainerConfigError", WAIT, || async {
        let pod = pods.get("env-late").await.map_err(|e| e.to_string())?;
        match waiting(&pod) {
            Some((reason, _)) if reason == "CreateContainerConfigError" => Ok(pod),
            _ => Err(format!("{:?}", pod.status)),
        }
    })
    .await;
    assert_eq!(
        waiting(&env_pod)
            .and_then(|(_, message)| message)
            .as_deref(),
        Some("secret \"creds\" not found"),
        "the kubelet's message"
    );
    assert_eq!(phase(&env_pod), "Pending");
    assert_eq!(
        condition(&env_pod, "PodReadyToStartContainers"),
        Some("True")
    );
    // And the kubelet's Events say why.
    let events = Api::<Event>::namespaced(client.clone(), "default");
    eventually("FailedMount and Failed events", WAIT, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let said = |reason: &str, message: &str| {
            list.items.iter().any(|e| {
                e.reason.as_deref() == Some(reason) && e.message.as_deref() == Some(message)
            })
        };
        (said(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"config\" : configmap \"late\" not found",
        ) && said("Failed", "Error: secret \"creds\" not found"))
        .then_some(())
        .ok_or(format!(
            "{:?}",
            list.items
                .iter()
                .map(|e| (e.reason.clone(), e.message.clone()))
                .collect::<Vec<_>>()
        ))
    })
    .await;

    // The objects appear: both pods start.
    let config_map: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "late" }, "data": { "a": "1" } }))?;
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &config_map)
        .await?;
    let secret: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "creds" }, "stringData": { "token": "t" } }),
    )?;
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await?;
    let running = wait_pod(
        &pods,
        "app=mounts-late",
        "the pod running once its ConfigMap exists",
        |p| phase(p) == "Running" && condition(p, "Ready") == Some("True"),
    )
    .await;
    let mounts = container(&running)
        .and_then(|c| c.volume_mounts.clone())
        .unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "config" && m.mount_path == "/config"),
        "its status lists the mount: {mounts:?}"
    );
    eventually(
        "the env pod running once its Secret exists",
        WAIT,
        || async {
            let pod = pods.get("env-late").await.map_err(|e| e.to_string())?;
            (phase(&pod) == "Running")
                .then_some(())
                .ok_or(format!("{:?}", pod.status))
        },
    )
    .await;

    // The claim is still unbound: its pod still waits.
    let claimed = pods.get("claims-unbound").await?;
    assert_eq!(phase(&claimed), "Pending");
    assert_eq!(
        waiting(&claimed).map(|(reason, _)| reason).as_deref(),
        Some("ContainerCreating")
    );
    env.stop();
    Ok(())
}
