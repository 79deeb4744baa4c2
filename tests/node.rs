//! The hollow node engine against a real control plane (scheduler and controller
//! manager included).

use std::collections::BTreeSet;
use std::time::Duration;

use hollow_core::node::{HollowCluster, HollowNode, LEASE_NAMESPACE, TaintEffect};
use hollow_core::testenv::{Component, TestEnv};
use hollow_tests::{
    eventually, init_tracing, node_ready, pod, pod_condition as condition, pod_phase as phase,
    wait_job_condition,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// Waits until the controller manager has lifted the not-ready taint it puts on new nodes.
async fn wait_schedulable(env: &TestEnv, name: &str) {
    let nodes: Api<Node> = Api::all(env.client());
    eventually("the node to lose its not-ready taint", WAIT, || async {
        let node = nodes.get(name).await.map_err(|e| e.to_string())?;
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        match taints
            .iter()
            .find(|t| t.key == "node.kubernetes.io/not-ready")
        {
            Some(_) => Err("still tainted not-ready".to_string()),
            None => Ok(()),
        }
    })
    .await;
}

async fn wait_pod(pods: &Api<Pod>, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    hollow_tests::wait_pod(pods, name, what, WAIT, check).await
}

#[tokio::test]
async fn three_nodes_run_a_deployment_of_thirty() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let zones = ["a", "b", "c"];
    let cluster = HollowCluster::builder("hollow")
        .nodes(3, move |i, node| {
            node.label("topology.kubernetes.io/zone", zones[i])
        })
        .start(env.client())
        .await?;

    let nodes: Api<Node> = Api::all(env.client());
    let leases: Api<Lease> = Api::namespaced(env.client(), LEASE_NAMESPACE);
    let mut first_renewals = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        let name = format!("hollow-{i}");
        let node = nodes.get(&name).await?;
        assert_eq!(node_ready(&node), Some("True"));
        assert_eq!(
            node.metadata.labels.as_ref().unwrap()["topology.kubernetes.io/zone"],
            *zone
        );
        let status = node.status.clone().unwrap();
        let types: Vec<String> = status
            .conditions
            .unwrap()
            .into_iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        assert_eq!(
            status
                .daemon_endpoints
                .unwrap()
                .kubelet_endpoint
                .unwrap()
                .port,
            10250
        );
        assert_eq!(
            node.spec.unwrap().provider_id.as_deref(),
            Some(format!("hollow://{name}").as_str())
        );
        let lease = leases.get(&name).await?;
        let owner = &lease.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Node", node.metadata.uid.as_deref().unwrap())
        );
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(name.as_str()));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        first_renewals.push(spec.renew_time.unwrap());
    }

    // Ready at creation, a node still carries the not-ready taint until the controller
    // manager's next pass; until then the scheduler passes it by.
    for i in 0..zones.len() {
        wait_schedulable(&env, &format!("hollow-{i}")).await;
    }

    let deployments: Api<Deployment> = Api::namespaced(env.client(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 30,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{
                    "name": "web", "image": "nginx:1.27",
                    "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } },
                }] },
            },
        },
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    eventually(
        "the Deployment to be Available with 30 replicas",
        WAIT,
        || async {
            let d = deployments.get("web").await.map_err(|e| e.to_string())?;
            let status = d.status.unwrap_or_default();
            let available = status.conditions.unwrap_or_default().iter().any(|c| {
                c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True")
            });
            (available && status.available_replicas == Some(30))
                .then_some(())
                .ok_or(format!("{:?} available", status.available_replicas))
        },
    )
    .await;

    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let list = pods.list(&ListParams::default().labels("app=web")).await?;
    assert_eq!(list.items.len(), 30);
    let mut ips = BTreeSet::new();
    let mut used_nodes = BTreeSet::new();
    for pod in &list.items {
        let status = pod.status.as_ref().unwrap();
        assert_eq!(phase(pod), "Running");
        assert_eq!(status.qos_class.as_deref(), Some("Burstable"));
        assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
        let types: Vec<&str> = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        // Conditions that turned True keep no reason or message from when they were
        // False: the kubelet's status patch removes what is gone.
        for condition in status.conditions.as_ref().unwrap() {
            assert_eq!(condition.status, "True", "{condition:?}");
            assert!(
                condition.reason.is_none() && condition.message.is_none(),
                "stale condition text: {condition:?}"
            );
        }
        let state = status.container_statuses.as_ref().unwrap()[0]
            .state
            .clone()
            .unwrap();
        assert!(
            state.running.is_some() && state.waiting.is_none() && state.terminated.is_none(),
            "a running container has only its running state: {state:?}"
        );
        let node_name = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
        let cidr = nodes.get(&node_name).await?.spec.unwrap().pod_cidr.unwrap();
        let ip = status.pod_ip.clone().unwrap();
        let prefix = cidr.trim_end_matches("0/24");
        assert!(ip.starts_with(prefix), "pod IP {ip} outside {cidr}");
        assert!(ips.insert(ip), "duplicate pod IP");
        used_nodes.insert(node_name);
        let container = &status.container_statuses.as_ref().unwrap()[0];
        assert!(container.ready && container.started == Some(true));
        assert!(
            container
                .container_id
                .as_deref()
                .unwrap()
                .starts_with("hollow://")
        );
        assert!(
            container
                .image_id
                .starts_with("docker.io/library/nginx@sha256:")
        );
        assert!(
            container
                .state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at
                .is_some()
        );
    }
    assert_eq!(used_nodes.len(), 3, "the scheduler spreads over every node");
    let running: usize = cluster
        .nodes()
        .iter()
        .map(|node| node.pods_by_phase().running)
        .sum();
    assert_eq!(running, 30, "the nodes count their Running pods");

    // Leases keep renewing.
    eventually("every lease to renew", Duration::from_secs(40), || async {
        for (i, first) in first_renewals.iter().enumerate() {
            let lease = leases
                .get(&format!("hollow-{i}"))
                .await
                .map_err(|e| e.to_string())?;
            let renewed = lease.spec.unwrap().renew_time.unwrap();
            if renewed.0 <= first.0 {
                return Err(format!("hollow-{i} not renewed since {:?}", first.0));
            }
        }
        Ok(())
    })
    .await;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn deletion_is_graceful_and_respects_the_uid() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let node = HollowNode::builder("solo")
        .build()?
        .start(env.client())
        .await?;
    node.wait_ready(WAIT).await?;
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let spec = json!({ "terminationGracePeriodSeconds": 20, "containers": [{ "name": "c", "image": "busybox" }] });
    pods.create(&PostParams::default(), &pod("p", spec.clone()))
        .await?;
    let first = wait_pod(&pods, "p", "p Running", |p| phase(p) == "Running").await;

    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(env.binary("kubectl"))
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path())
        .args(["delete", "pod", "p", "--wait=true", "--timeout=60s"])
        .output()
        .await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "deleted within the grace period"
    );
    assert!(pods.get_opt("p").await?.is_none());

    pods.create(&PostParams::default(), &pod("p", spec)).await?;
    let second = wait_pod(&pods, "p", "the new p Running", |p| phase(p) == "Running").await;
    assert_ne!(first.metadata.uid, second.metadata.uid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = pods.get("p").await?;
    assert_eq!(still.metadata.uid, second.metadata.uid);
    assert!(still.metadata.deletion_timestamp.is_none());
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn extended_resources_max_pods_and_cordon_are_respected() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let node = HollowNode::builder("gpu-0")
        .capacity("nvidia.com/gpu", "8")
        .max_pods(3)
        .build()?
        .start(env.client())
        .await?;
    node.wait_ready(WAIT).await?;
    wait_schedulable(&env, "gpu-0").await;
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let gpu_pod = |gpus: u32| {
        json!({ "containers": [{ "name": "c", "image": "cuda",
            "resources": { "limits": { "nvidia.com/gpu": gpus.to_string() } } }] })
    };
    pods.create(&PostParams::default(), &pod("one-gpu", gpu_pod(1)))
        .await?;
    pods.create(&PostParams::default(), &pod("nine-gpus", gpu_pod(9)))
        .await?;
    wait_pod(&pods, "one-gpu", "one-gpu Running", |p| {
        phase(p) == "Running"
    })
    .await;
    let unschedulable = wait_pod(
        &pods,
        "nine-gpus",
        "nine-gpus unschedulable for lack of GPUs",
        |p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
                .is_some_and(|c| {
                    c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                        && c.message
                            .as_deref()
                            .is_some_and(|m| m.contains("Insufficient nvidia.com/gpu"))
                })
        },
    )
    .await;
    assert!(unschedulable.spec.unwrap().node_name.is_none());
    assert_eq!(phase(&pods.get("nine-gpus").await?), "Pending");

    // max-pods 3: one-gpu, nine-gpus (Pending, not bound) + two more fill the node.
    let plain = json!({ "containers": [{ "name": "c", "image": "busybox" }] });
    for name in ["second", "third", "fourth"] {
        pods.create(&PostParams::default(), &pod(name, plain.clone()))
            .await?;
    }
    wait_pod(&pods, "second", "second Running", |p| phase(p) == "Running").await;
    wait_pod(&pods, "third", "third Running", |p| phase(p) == "Running").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fourth = pods.get("fourth").await?;
    assert_eq!(phase(&fourth), "Pending");
    assert!(
        fourth.spec.unwrap().node_name.is_none(),
        "max-pods is respected"
    );

    // A cordoned node gets no new pods.
    pods.delete("fourth", &Default::default()).await?;
    pods.delete("third", &Default::default()).await?;
    let nodes: Api<Node> = Api::all(env.client());
    nodes
        .patch(
            "gpu-0",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "unschedulable": true } })),
        )
        .await?;
    eventually("third to be gone", WAIT, || async {
        match pods.get_opt("third").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    pods.create(&PostParams::default(), &pod("cordoned", plain))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        pods.get("cordoned")
            .await?
            .spec
            .unwrap()
            .node_name
            .is_none()
    );
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn lost_heartbeats_make_the_node_unknown_and_recovery_makes_it_ready() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder()
        .node_monitor_grace_period(Duration::from_secs(16))
        .start()
        .await?;
    let node = HollowNode::builder("flaky")
        .build()?
        .start(env.client())
        .await?;
    node.wait_ready(WAIT).await?;
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "p",
            json!({ "containers": [{ "name": "c", "image": "busybox" }] }),
        ),
    )
    .await?;
    wait_pod(&pods, "p", "p Ready", |p| {
        condition(p, "Ready") == Some("True")
    })
    .await;

    node.pause_heartbeats();
    let nodes: Api<Node> = Api::all(env.client());
    let unknown = eventually("the node to be Unknown and tainted", WAIT, || async {
        let n = nodes.get("flaky").await.map_err(|e| e.to_string())?;
        let tainted = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.key == "node.kubernetes.io/unreachable"));
        (node_ready(&n) == Some("Unknown") && tainted)
            .then_some(n.clone())
            .ok_or(format!("{:?}", node_ready(&n)))
    })
    .await;
    let ready = unknown
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    wait_pod(&pods, "p", "p not Ready", |p| {
        condition(p, "Ready") == Some("False")
    })
    .await;

    node.resume_heartbeats();
    eventually("the node Ready and untainted", WAIT, || async {
        let n = nodes.get("flaky").await.map_err(|e| e.to_string())?;
        let tainted = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.key.starts_with("node.kubernetes.io/un")));
        (node_ready(&n) == Some("True") && !tainted)
            .then_some(())
            .ok_or(format!("{:?} tainted={tainted}", node_ready(&n)))
    })
    .await;
    wait_pod(&pods, "p", "p Ready again", |p| {
        condition(p, "Ready") == Some("True")
    })
    .await;
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn nodes_and_pods_survive_an_api_server_restart() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    // Over HTTP/2, as hollow-kubelet talks: the one connection dies with the server.
    let cluster = HollowCluster::builder("r")
        .nodes(2, |_, n| n)
        .start(hollow_tests::http2_client(&env).await)
        .await?;
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    for name in ["a", "b"] {
        pods.create(
            &PostParams::default(),
            &pod(
                name,
                json!({ "containers": [{ "name": "c", "image": "busybox" }] }),
            ),
        )
        .await?;
        wait_pod(&pods, name, "Running", |p| phase(p) == "Running").await;
    }
    env.restart_component(Component::ApiServer).await?;
    // A pod created after the restart reaches the nodes through the resumed watch.
    pods.create(
        &PostParams::default(),
        &pod(
            "after",
            json!({ "containers": [{ "name": "c", "image": "busybox" }] }),
        ),
    )
    .await?;
    wait_pod(&pods, "after", "after Running", |p| phase(p) == "Running").await;
    for name in ["a", "b"] {
        let p = pods.get(name).await?;
        assert_eq!(phase(&p), "Running");
        assert_eq!(condition(&p, "Ready"), Some("True"));
    }
    let nodes: Api<Node> = Api::all(env.client());
    for name in ["r-0", "r-1"] {
        assert_eq!(node_ready(&nodes.get(name).await?), Some("True"));
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_node_runs_with_its_own_certificate_under_node_restriction() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let client = env
        .client_for("system:node:restricted", &["system:nodes"])
        .await?;
    let node = HollowNode::builder("restricted")
        .build()?
        .start(client)
        .await?;
    node.wait_ready(WAIT).await?;
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    // Ready 2 s after it runs: written not ready (ContainersNotReady), then Ready.
    let spec = json!({ "nodeName": "restricted", "containers": [{
        "name": "c", "image": "busybox",
        "readinessProbe": { "exec": { "command": ["true"] }, "initialDelaySeconds": 2 },
    }] });
    pods.create(&PostParams::default(), &pod("mine", spec))
        .await?;
    let mine = wait_pod(&pods, "mine", "mine Running and Ready", |p| {
        phase(p) == "Running" && condition(p, "Ready") == Some("True")
    })
    .await;
    // Bound by spec.nodeName, no scheduler saw it: the kubelet writes PodScheduled.
    assert_eq!(condition(&mine, "PodScheduled"), Some("True"));
    // Conditions that turned True keep no reason or message from when they were False:
    // the kubelet's status patch removes what is gone.
    for condition in mine.status.as_ref().unwrap().conditions.as_ref().unwrap() {
        assert_eq!(condition.status, "True", "{condition:?}");
        assert!(
            condition.reason.is_none() && condition.message.is_none(),
            "stale condition text: {condition:?}"
        );
    }
    pods.delete("mine", &Default::default()).await?;
    eventually("mine to be deleted by the node", WAIT, || async {
        match pods.get_opt("mine").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(p) => Err(format!("{:?}", p.status.and_then(|s| s.phase))),
        }
    })
    .await;
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn exits_crash_loops_pull_failures_and_init_containers_follow_the_kubelet()
-> anyhow::Result<()> {
    use hollow_core::runtime::{Behavior, FakeRuntime, RuntimeMethod};
    use std::sync::Arc;

    init_tracing();
    let env = TestEnv::builder().start().await?;
    let fake = FakeRuntime::default();
    fake.set_behavior(|c| match (c.pod_name.as_str(), c.kind) {
        ("crash", _) => Behavior::Exit {
            after: Duration::from_millis(500),
            code: 1,
        },
        ("done", _) => Behavior::Exit {
            after: Duration::from_secs(1),
            code: 0,
        },
        (_, hollow_core::pod::ContainerKind::Init) => Behavior::Exit {
            after: Duration::from_millis(300),
            code: 0,
        },
        _ => Behavior::Run,
    });
    fake.fail_pulls_of("registry.example/missing:1", "manifest unknown");
    let node = HollowNode::builder("lifecycle")
        .runtime(Arc::new(fake.clone()))
        .build()?
        .start(env.client())
        .await?;
    node.wait_ready(WAIT).await?;
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let busybox = |policy: &str| json!({ "restartPolicy": policy, "containers": [{ "name": "c", "image": "busybox" }] });
    pods.create(&PostParams::default(), &pod("crash", busybox("Always")))
        .await?;
    pods.create(&PostParams::default(), &pod("done", busybox("Never")))
        .await?;
    pods.create(
        &PostParams::default(),
        &pod(
            "missing",
            json!({
        "containers": [{ "name": "c", "image": "registry.example/missing:1" }] }),
        ),
    )
    .await?;
    pods.create(&PostParams::default(), &pod("with-init", json!({
        "initContainers": [{ "name": "one", "image": "busybox" }, { "name": "two", "image": "busybox" }],
        "containers": [{ "name": "c", "image": "busybox" }] })))
        .await?;

    pods.create(
        &PostParams::default(),
        &pod(
            "host",
            json!({
        "hostNetwork": true, "containers": [{ "name": "c", "image": "busybox" }] }),
        ),
    )
    .await?;
    let host = wait_pod(&pods, "host", "host Running", |p| phase(p) == "Running").await;
    let host_status = host.status.unwrap();
    assert_eq!(
        host_status.pod_ip, host_status.host_ip,
        "host-network pods take the node's IP"
    );
    assert_eq!(host_status.pod_ip.as_deref(), Some("127.0.0.1"));

    pods.create(
        &PostParams::default(),
        &pod(
            "slow-ready",
            json!({ "containers": [{ "name": "c", "image": "busybox",
                "readinessProbe": { "initialDelaySeconds": 5, "exec": { "command": ["true"] } } }] }),
        ),
    )
    .await?;
    // Ready only once the readiness probe's initial delay has passed.
    let slow = wait_pod(&pods, "slow-ready", "slow-ready Ready", |p| {
        condition(p, "Ready") == Some("True")
    })
    .await;
    let status = slow.status.unwrap();
    let started = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .running
        .unwrap()
        .started_at
        .unwrap();
    let ready_at = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .unwrap();
    let waited = ready_at.0.duration_since(started.0);
    assert!(waited.as_secs() >= 5, "ready {waited:?} after start");

    let done = wait_pod(&pods, "done", "done Succeeded", |p| phase(p) == "Succeeded").await;
    let terminated = done.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );

    let crash = wait_pod(&pods, "crash", "crash in CrashLoopBackOff", |p| {
        let Some(c) = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|c| &c[0])
        else {
            return false;
        };
        c.restart_count >= 2
            && c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some("CrashLoopBackOff")
    })
    .await;
    let status = crash.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let container = &status.container_statuses.unwrap()[0];
    assert_eq!(
        container
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
    assert!(!container.ready);

    let reason = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c[0].state.clone())
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason)
    };
    wait_pod(&pods, "missing", "ErrImagePull", |p| {
        reason(p).as_deref() == Some("ErrImagePull")
    })
    .await;
    wait_pod(&pods, "missing", "ImagePullBackOff", |p| {
        reason(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;

    let with_init = wait_pod(&pods, "with-init", "with-init Running", |p| {
        phase(p) == "Running"
    })
    .await;
    let inits = with_init.status.unwrap().init_container_statuses.unwrap();
    assert_eq!(inits.len(), 2);
    for init in &inits {
        assert!(init.ready);
        assert_eq!(
            init.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("Completed")
        );
    }
    // One at a time: the second init container started after the first finished.
    let first_finished = inits[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .finished_at
        .clone()
        .unwrap();
    let second_started = inits[1]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .started_at
        .clone()
        .unwrap();
    assert!(second_started.0 >= first_finished.0);
    assert!(fake.calls_to(RuntimeMethod::PullImage) >= 6);
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn sick_and_pressured_nodes_are_seen_by_the_scheduler_and_controllers() -> anyhow::Result<()>
{
    use hollow_core::node_status::{FakeNodeStatus, Pressure};
    use std::sync::Arc;

    init_tracing();
    let env = TestEnv::builder()
        .node_monitor_grace_period(Duration::from_secs(16))
        .start()
        .await?;
    let status = FakeNodeStatus::default();
    let node = HollowNode::builder("sick")
        .node_status(Arc::new(status.clone()))
        .build()?
        .start(env.client())
        .await?;
    node.wait_ready(WAIT).await?;
    wait_schedulable(&env, "sick").await;
    let nodes: Api<Node> = Api::all(env.client());
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let has_taint = |n: &Node, key: &str| {
        n.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.key == key))
    };
    let busybox = json!({ "containers": [{ "name": "c", "image": "busybox" }] });

    // Memory pressure: the kubelet's condition, then the controller's taint; BestEffort
    // pods stay Pending.
    status.set_pressure(Pressure {
        memory: true,
        ..Default::default()
    });
    eventually("MemoryPressure and its taint", WAIT, || async {
        let n = nodes.get("sick").await.map_err(|e| e.to_string())?;
        let pressure = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == "MemoryPressure")
                    .map(|c| (c.status.clone(), c.reason.clone()))
            });
        (pressure == Some(("True".into(), Some("KubeletHasInsufficientMemory".into())))
            && has_taint(&n, "node.kubernetes.io/memory-pressure"))
        .then_some(())
        .ok_or(format!("{pressure:?}"))
    })
    .await;
    pods.create(&PostParams::default(), &pod("squeezed", busybox.clone()))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        pods.get("squeezed")
            .await?
            .spec
            .unwrap()
            .node_name
            .is_none()
    );
    status.set_pressure(Pressure::default());
    wait_pod(
        &pods,
        "squeezed",
        "squeezed Running once the pressure is gone",
        |p| phase(p) == "Running",
    )
    .await;

    // A failing health check: Ready False (not Unknown: the Lease is still renewed),
    // tainted not-ready, past the grace period.
    status.set_healthy(false);
    let sick = eventually("Ready False and the not-ready taint", WAIT, || async {
        let n = nodes.get("sick").await.map_err(|e| e.to_string())?;
        (node_ready(&n) == Some("False") && has_taint(&n, "node.kubernetes.io/not-ready"))
            .then_some(n.clone())
            .ok_or(format!("{:?}", node_ready(&n)))
    })
    .await;
    let ready = sick
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        node_ready(&nodes.get("sick").await?),
        Some("False"),
        "still False, not Unknown"
    );
    pods.create(&PostParams::default(), &pod("refused", busybox))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(pods.get("refused").await?.spec.unwrap().node_name.is_none());

    status.set_healthy(true);
    wait_pod(&pods, "refused", "refused Running once healthy", |p| {
        phase(p) == "Running"
    })
    .await;
    node.shutdown().await;
    Ok(())
}

/// A pod past its `activeDeadlineSeconds` is killed and failed by the kubelet's active
/// deadline handler (pkg/kubelet/active_deadline.go): phase Failed, reason
/// DeadlineExceeded and its message, containers terminated; a pod without a deadline
/// on the same node runs on.
#[tokio::test]
async fn a_pod_past_its_active_deadline_fails_as_the_kubelet_fails_it() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().scheduler(false).start().await?;
    let node = HollowNode::builder("deadline")
        .build()?
        .start(env.client())
        .await?;
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    for (name, deadline) in [("bounded", Some(3)), ("unbounded", None)] {
        let spec = json!({
            "nodeName": "deadline",
            "activeDeadlineSeconds": deadline,
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "c", "image": "busybox" }],
        });
        pods.create(&PostParams::default(), &pod(name, spec))
            .await?;
    }
    let failed = wait_pod(&pods, "bounded", "bounded Failed", |p| phase(p) == "Failed").await;
    let status = failed.status.as_ref().unwrap();
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    let started = status.start_time.as_ref().unwrap().0;
    let container = &status.container_statuses.as_ref().unwrap()[0];
    let terminated = container.state.as_ref().unwrap().terminated.as_ref();
    assert!(terminated.is_some(), "{container:?}");
    let finished = terminated.unwrap().finished_at.as_ref().unwrap().0;
    assert!(
        finished.duration_since(started).as_secs_f64() >= 3.0,
        "killed {:?} after its start, before its 3 s deadline",
        finished.duration_since(started)
    );
    assert!(!container.ready);
    assert_eq!(condition(&failed, "Ready"), Some("False"));
    let unbounded = pods.get("unbounded").await?;
    assert_eq!(phase(&unbounded), "Running");
    node.shutdown().await;
    Ok(())
}

/// A Job whose pod template has `activeDeadlineSeconds`: the kubelet fails the pod
/// past its deadline (DeadlineExceeded), and the Job controller, with no retries left,
/// fails the Job, as on a real node.
#[tokio::test]
async fn a_job_whose_pod_runs_past_its_active_deadline_fails() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().scheduler(false).start().await?;
    let node = HollowNode::builder("job-deadline")
        .build()?
        .start(env.client())
        .await?;
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(env.client(), "default");
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(json!({
        "metadata": { "name": "bounded" },
        "spec": {
            "backoffLimit": 0,
            "template": { "spec": {
                "nodeName": "job-deadline",
                "restartPolicy": "Never",
                "activeDeadlineSeconds": 3,
                "terminationGracePeriodSeconds": 1,
                "containers": [{ "name": "work", "image": "busybox" }],
            } },
        },
    }))?;
    jobs.create(&PostParams::default(), &job).await?;
    let failed = wait_job_condition(&jobs, "bounded", "Failed", Duration::from_secs(120)).await;
    let reason = failed
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Failed"))
        .and_then(|c| c.reason.clone());
    assert_eq!(reason.as_deref(), Some("BackoffLimitExceeded"));
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let list = pods
        .list(&ListParams::default().labels("job-name=bounded"))
        .await?;
    let pod = list.items.first().expect("the Job's pod");
    assert_eq!(phase(pod), "Failed");
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.reason.as_deref()),
        Some("DeadlineExceeded")
    );
    node.shutdown().await;
    Ok(())
}

/// Pods bound to a node they do not fit (by `spec.nodeName`, past the scheduler) are
/// rejected at the kubelet's admission: Failed, the kubelet's reason and message, no
/// container run (pkg/kubelet/lifecycle/predicate.go).
#[tokio::test]
async fn pods_that_do_not_fit_are_rejected_at_admission() -> anyhow::Result<()> {
    init_tracing();
    // No controller manager: its taint eviction would delete the intolerant pod below
    // before the test reads its status.
    let env = TestEnv::builder()
        .scheduler(false)
        .controller_manager(false)
        .start()
        .await?;
    // Which also makes the default ServiceAccount pods need.
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(env.client(), "default");
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "default" } }))?,
        )
        .await?;
    // And the CA bundle every pod's service account volume mounts, which its
    // root-ca-cert-publisher would publish: without it the kubelet never mounts the
    // volume, and the pods would wait in ContainerCreating.
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(env.client(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "kube-root-ca.crt" },
                "data": { "ca.crt": "" },
            }))?,
        )
        .await?;
    let node = HollowNode::builder("small")
        .label("topology.kubernetes.io/zone", "a")
        .capacity("cpu", "1")
        .build()?
        .start(env.client())
        .await?;
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let create = |name: &'static str, cpu: &'static str, host_port: Option<i32>| {
        let pods = pods.clone();
        async move {
            let spec = json!({
                "nodeName": "small",
                "containers": [{
                    "name": "c", "image": "busybox",
                    "resources": { "requests": { "cpu": cpu } },
                    "ports": [{ "containerPort": 80, "hostPort": host_port }],
                }],
            });
            pods.create(&PostParams::default(), &pod(name, spec)).await
        }
    };
    create("fits", "600m", Some(8080)).await?;
    wait_pod(&pods, "fits", "fits Running", |p| phase(p) == "Running").await;
    create("too-big", "600m", None).await?;
    create("port-taken", "100m", Some(8080)).await?;
    for (name, zone) in [("wrong-zone", "b"), ("right-zone", "a")] {
        let spec = json!({
            "nodeName": "small",
            "nodeSelector": { "topology.kubernetes.io/zone": zone },
            "containers": [{ "name": "c", "image": "busybox" }],
        });
        pods.create(&PostParams::default(), &pod(name, spec))
            .await?;
    }
    wait_pod(&pods, "right-zone", "right-zone Running", |p| {
        phase(p) == "Running"
    })
    .await;
    for (name, reason, message) in [
        (
            "wrong-zone",
            "NodeAffinity",
            "Pod was rejected: Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector",
        ),
        (
            "too-big",
            "OutOfcpu",
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 600, used: 600, capacity: 1000",
        ),
        (
            "port-taken",
            "NodePorts",
            "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports",
        ),
    ] {
        let rejected = wait_pod(&pods, name, "rejected", |p| phase(p) == "Failed").await;
        let status = rejected.status.unwrap();
        assert_eq!(status.reason.as_deref(), Some(reason), "{name}");
        assert_eq!(status.message.as_deref(), Some(message), "{name}");
        assert!(status.container_statuses.is_none(), "{name} ran nothing");
        // The status manager gives every status it writes a start time, a rejected
        // pod's too (updateStatusInternal, pkg/kubelet/status/status_manager.go; the
        // fidelity oracle found Kubemark's kubelet doing so).
        assert!(status.start_time.is_some(), "{name} has a start time");
        assert_eq!(status.observed_generation, Some(1), "{name}");
    }
    assert_eq!(phase(&pods.get("fits").await?), "Running");
    // A rejected pod is deleted as any finished pod is.
    pods.delete("too-big", &Default::default()).await?;
    eventually(
        "the rejected pod to be deleted by the node",
        WAIT,
        || async {
            match pods.get_opt("too-big").await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(p) => Err(format!("{:?}", p.status.and_then(|s| s.phase))),
            }
        },
    )
    .await;
    assert_eq!(phase(&pods.get("port-taken").await?), "Failed");
    node.shutdown().await;

    // A NoExecute taint the pod does not tolerate.
    let tainted = HollowNode::builder("tainted")
        .taint("dedicated", "db", TaintEffect::NoExecute)
        .build()?
        .start(env.client())
        .await?;
    for (name, tolerations) in [
        ("intolerant", json!([])),
        (
            "tolerant",
            json!([{ "key": "dedicated", "value": "db", "effect": "NoExecute" }]),
        ),
    ] {
        let spec = json!({
            "nodeName": "tainted",
            "tolerations": tolerations,
            "containers": [{ "name": "c", "image": "busybox" }],
        });
        pods.create(&PostParams::default(), &pod(name, spec))
            .await?;
    }
    wait_pod(&pods, "tolerant", "tolerant Running", |p| {
        phase(p) == "Running"
    })
    .await;
    let rejected = wait_pod(&pods, "intolerant", "rejected", |p| phase(p) == "Failed").await;
    let status = rejected.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("TaintToleration"));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "Pod was rejected: Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate"
        )
    );
    tainted.shutdown().await;
    Ok(())
}
