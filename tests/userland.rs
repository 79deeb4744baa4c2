//! Containers that run their command (#24): the fake runtime's userland, judged by the
//! real Job controller and read back through the API server's log endpoint.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hollow_core::kubelet_api::KubeletServer;
use hollow_core::node::HollowCluster;
use hollow_core::testenv::TestEnv;
use hollow_tests::{
    eventually, free_port, init_tracing, pod, pod_phase, wait_job_condition, wait_pod,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{ListParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(150);

fn node_ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 41, 10 + index as u8))
}

/// test/e2e/framework/job/fixtures.go's `failOddSucceedEven` pods, as
/// test/e2e/apps/job.go's "should execute all indexes despite some failing when using
/// backoffLimitPerIndex" runs them.
fn indexed_job() -> Job {
    serde_json::from_value(json!({
        "metadata": { "name": "with-backoff-limit-per-index" },
        "spec": {
            "parallelism": 2,
            "completions": 4,
            "backoffLimitPerIndex": 1,
            "completionMode": "Indexed",
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "c",
                        "image": "registry.k8s.io/e2e-test-images/busybox:1.37.0-1",
                        "command": ["sh", "-c"],
                        "args": ["\n\t\t\tif [ $(expr ${JOB_COMPLETION_INDEX} % 2) -ne 0 ]; then\n\t\t\t\texit 1\n\t\t\telse\n\t\t\t\texit 0\n\t\t\tfi\n\t\t\t"],
                    }],
                },
            },
        },
    }))
    .expect("a valid Job")
}

async fn logs(pods: &Api<Pod>, name: &str, container: &str) -> String {
    let params = LogParams {
        container: Some(container.into()),
        ..LogParams::default()
    };
    pods.logs(name, &params)
        .await
        .unwrap_or_else(|e| format!("error: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_run_their_command() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let api = KubeletServer::builder().start(env.client()).await?;
    let port = free_port();
    let cluster = HollowCluster::builder("userland")
        .nodes(2, move |i, node| {
            node.address(node_ip(i)).kubelet_port(port)
        })
        .start(env.client())
        .await?;
    for node in cluster.nodes() {
        api.serve(node.view()).await?;
    }
    let client = env.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The Job controller's verdict, exactly as upstream's e2e test expects it.
    jobs.create(&PostParams::default(), &indexed_job()).await?;

    // A pod that prints what its environment holds (literal values, references to
    // earlier variables, the downward API), then waits.
    let echo = pod(
        "echo",
        json!({
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "echo \"greeting: $GREETING\"; printenv MY_NODE; sleep 3600"],
                "env": [
                    { "name": "NAME", "value": "world" },
                    { "name": "GREETING", "value": "hello $(NAME)" },
                    { "name": "MY_NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                ],
            }],
        }),
    );
    pods.create(&PostParams::default(), &echo).await?;
    // A pod that prints what its downward API volume holds.
    let mut podinfo = pod(
        "podinfo",
        json!({
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "cat /etc/podinfo/labels; echo; cat /etc/podinfo/name; sleep 3600"],
                "volumeMounts": [{ "name": "podinfo", "mountPath": "/etc/podinfo" }],
            }],
            "volumes": [{ "name": "podinfo", "downwardAPI": { "items": [
                { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } },
                { "path": "name", "fieldRef": { "fieldPath": "metadata.name" } },
            ] } }],
        }),
    );
    podinfo.metadata.labels = Some(
        [("zone", "us-east-1a"), ("app", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    pods.create(&PostParams::default(), &podinfo).await?;
    // A pod that reads a ConfigMap and a Secret (as files and as variables) and what
    // its init container left in an emptyDir (as a file, and as a variable read from
    // an env file: `fileKeyRef`, EnvFiles, on from 1.35).
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let settings: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "settings" },
        "data": { "greeting": "hi\n", "MODE": "fast" },
    }))?;
    config_maps
        .create(&PostParams::default(), &settings)
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let creds: Secret = serde_json::from_value(json!({
        "metadata": { "name": "creds" },
        "stringData": { "user": "admin\n", "password": "s3cret" },
    }))?;
    secrets.create(&PostParams::default(), &creds).await?;
    let configured = pod(
        "configured",
        json!({
            "initContainers": [{
                "name": "prepare",
                "image": "busybox",
                "command": ["sh", "-c", "echo prepared > /work/state; echo \"STAGE='ready'\" > /work/app.env"],
                "volumeMounts": [{ "name": "work", "mountPath": "/work" }],
            }],
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "cat /etc/config/greeting /etc/creds/user; echo \"$APP_MODE $PASSWORD $STAGE\"; cat /scratch/state; ls /etc/creds; sleep 3600"],
                "envFrom": [{ "configMapRef": { "name": "settings" }, "prefix": "APP_" }],
                "env": [
                    { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } },
                    { "name": "STAGE", "valueFrom": { "fileKeyRef": { "volumeName": "work", "path": "app.env", "key": "STAGE" } } },
                ],
                "volumeMounts": [
                    { "name": "config", "mountPath": "/etc/config" },
                    { "name": "creds", "mountPath": "/etc/creds" },
                    { "name": "work", "mountPath": "/scratch" },
                ],
            }],
            "volumes": [
                { "name": "config", "configMap": { "name": "settings" } },
                { "name": "creds", "secret": { "secretName": "creds", "items": [{ "key": "user", "path": "user" }] } },
                { "name": "work", "emptyDir": {} },
            ],
        }),
    );
    pods.create(&PostParams::default(), &configured).await?;
    // A pod whose env file lacks a key it needs: its container cannot be created.
    let lacking = pod(
        "lacking",
        json!({
            "initContainers": [{
                "name": "prepare",
                "image": "busybox",
                "command": ["sh", "-c", "echo \"OTHER='x'\" > /work/app.env"],
                "volumeMounts": [{ "name": "work", "mountPath": "/work" }],
            }],
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "sleep 3600"],
                "env": [
                    { "name": "SPARE", "valueFrom": { "fileKeyRef": { "volumeName": "work", "path": "app.env", "key": "SPARE", "optional": true } } },
                    { "name": "NEEDED", "valueFrom": { "fileKeyRef": { "volumeName": "work", "path": "app.env", "key": "NEEDED" } } },
                ],
            }],
            "volumes": [{ "name": "work", "emptyDir": {} }],
        }),
    );
    pods.create(&PostParams::default(), &lacking).await?;
    // A pod whose init container sleeps and leaves a termination message, and whose
    // container fails after a line (its termination message, from its log).
    let fails = pod(
        "fails",
        json!({
            "restartPolicy": "Never",
            "initContainers": [{
                "name": "wait",
                "image": "busybox",
                "command": ["sh", "-c", "sleep 1; echo ready > /dev/termination-log"],
            }],
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["/bin/sh", "-c", "echo starting >&2; sleep 2; exit 3"],
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
        }),
    );
    pods.create(&PostParams::default(), &fails).await?;

    let running = wait_pod(&pods, "echo", "echo Running", WAIT, |p| {
        pod_phase(p) == "Running"
    })
    .await;
    let node = running
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let printed = logs(&pods, "echo", "main").await;
    assert_eq!(printed, format!("greeting: hello world\n{node}\n"));
    wait_pod(&pods, "podinfo", "podinfo Running", WAIT, |p| {
        pod_phase(p) == "Running"
    })
    .await;
    assert_eq!(
        logs(&pods, "podinfo", "main").await,
        "app=\"web\"\nzone=\"us-east-1a\"\npodinfo\n"
    );

    wait_pod(&pods, "configured", "configured Running", WAIT, |p| {
        pod_phase(p) == "Running"
    })
    .await;
    assert_eq!(
        logs(&pods, "configured", "main").await,
        "hi\nadmin\nfast s3cret ready\nprepared\nuser\n"
    );
    // As the kubelet's makeEnvironmentVariables words it (pkg/kubelet/kubelet_pods.go);
    // the optional key before it is skipped.
    let waiting = |p: &Pod| {
        let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
        let waiting = statuses.first()?.state.as_ref()?.waiting.clone()?;
        Some((waiting.reason?, waiting.message?))
    };
    let lacking = wait_pod(
        &pods,
        "lacking",
        "lacking CreateContainerConfigError",
        WAIT,
        |p| waiting(p).is_some_and(|(reason, _)| reason == "CreateContainerConfigError"),
    )
    .await;
    let uid = lacking.metadata.uid.clone().unwrap_or_default();
    assert_eq!(
        waiting(&lacking).map(|(_, message)| message),
        Some(format!(
            "environment variable key \"NEEDED\" not found in file \"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir/work/app.env\""
        ))
    );

    let failed = wait_pod(&pods, "fails", "fails Failed", WAIT, |p| {
        pod_phase(p) == "Failed"
    })
    .await;
    let status = failed.status.expect("a status");
    let init = status
        .init_container_statuses
        .clone()
        .expect("init statuses")[0]
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("the init container terminated");
    assert_eq!(init.message.as_deref(), Some("ready\n"));
    let terminated = status.container_statuses.expect("container statuses")[0]
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("terminated");
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (3, Some("Error"))
    );
    let ran = terminated.finished_at.expect("finished").0.as_millisecond()
        - terminated.started_at.expect("started").0.as_millisecond();
    assert!((1500..=4000).contains(&ran), "ran {ran} ms, not about 2 s");
    assert_eq!(terminated.message.as_deref(), Some("starting\n"));
    assert_eq!(logs(&pods, "fails", "main").await, "starting\n");

    let job = wait_job_condition(&jobs, "with-backoff-limit-per-index", "Failed", WAIT).await;
    let status = job.status.expect("a Job status");
    assert_eq!(status.failed_indexes.as_deref(), Some("1,3"));
    assert_eq!(status.completed_indexes.as_deref(), Some("0,2"));
    assert_eq!(status.failed, Some(4));
    assert_eq!(status.succeeded, Some(2));
    let reason = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed")
        .and_then(|c| c.reason.clone());
    assert_eq!(reason.as_deref(), Some("FailedIndexes"));

    cluster.shutdown().await;
    env.stop();
    Ok(())
}

/// The waiting reasons of the pods with `labels`, by pod, and how many run.
async fn waiting_reasons(pods: &Api<Pod>, labels: &str) -> (Vec<String>, usize) {
    let list = pods
        .list(&ListParams::default().labels(labels))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let reasons = list
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .collect();
    let running = list.iter().filter(|p| pod_phase(p) == "Running").count();
    (reasons, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_to_an_image_that_does_not_exist_stalls() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let cluster = HollowCluster::builder("images")
        .nodes(2, |_, node| node)
        .start(env.client())
        .await?;
    let client = env.client();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
            },
        },
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    eventually("two web pods run", WAIT, || async {
        let (_, running) = waiting_reasons(&pods, "app=web").await;
        (running == 2)
            .then_some(())
            .ok_or(format!("{running} running"))
    })
    .await;

    // The new ReplicaSet's pod cannot pull; the old pods keep serving.
    let broken = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "web", "image": "registry.k8s.io/web:does-not-exist" }
    ] } } } });
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&broken))
        .await?;
    eventually("the new pod backs off pulling", WAIT, || async {
        let (reasons, running) = waiting_reasons(&pods, "app=web").await;
        (reasons.iter().any(|r| r == "ImagePullBackOff") && running == 2)
            .then_some(())
            .ok_or(format!("{reasons:?}, {running} running"))
    })
    .await;
    let web = deployments.get("web").await?;
    let status = web.status.expect("a Deployment status");
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.updated_replicas, Some(1));

    // `imagePullPolicy: Never` and an image no pod pulled on the node.
    let never = pod(
        "never",
        json!({ "containers": [{
            "name": "main", "image": "registry.example/never-pulled:1",
            "imagePullPolicy": "Never",
        }] }),
    );
    pods.create(&PostParams::default(), &never).await?;
    let waiting = wait_pod(&pods, "never", "ErrImageNeverPull", WAIT, |p| {
        p.status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
            .any(|w| w.reason.as_deref() == Some("ErrImageNeverPull"))
    })
    .await;
    let message = waiting
        .status
        .and_then(|s| s.container_statuses)
        .expect("statuses")[0]
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone());
    assert_eq!(
        message.as_deref(),
        Some(
            "Container image \"registry.example/never-pulled:1\" is not present with pull policy of Never"
        )
    );

    cluster.shutdown().await;
    env.stop();
    Ok(())
}
