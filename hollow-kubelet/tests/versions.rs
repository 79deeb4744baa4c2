//! `hollow-kubelet` against the control plane `HOLLOW_K8S_BIN` names (the pinned one in
//! CI; every supported minor in `scripts/test-matrix`): its nodes report the API
//! server's version and behave as that version's kubelet, and the workloads a load
//! test runs (a Deployment, a Job, init and sidecar containers, deletion) run on them.
//! A node told an older version (`--kubelet-version`) behaves as that kubelet.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use hollow_core::testenv::TestEnv;
use hollow_core::version::{Behaviour, KubeletVersion};
use hollow_tests::{
    eventually, init_tracing, kubectl_ok, pod, pod_phase, wait_pod, wait_ready_nodes,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(120);
const BINARY: &str = env!("CARGO_BIN_EXE_hollow-kubelet");
/// The version the skewed node is told: the oldest hollow serves.
const SKEWED: &str = "v1.34.4";

fn spawn(kubeconfig: &Path, args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(BINARY)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

/// A pod bound to `node` whose one container exits 42, with the pod's policy Never but
/// a container rule that restarts it on 42 (container restart rules, from 1.35).
fn exits_42(name: &str, node: &str) -> Pod {
    pod(
        name,
        serde_json::json!({
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{
                "name": "work", "image": "busybox", "command": ["sh", "-c", "sleep 1; exit 42"],
                "restartPolicy": "Never",
                "restartPolicyRules": [{ "action": "Restart", "exitCodes": { "operator": "In", "values": [42] } }],
            }],
        }),
    )
}

#[tokio::test]
async fn nodes_behave_as_the_servers_version_and_run_a_load_tests_workloads() -> anyhow::Result<()>
{
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let server = env.client().apiserver_version().await?;
    let kubelet = KubeletVersion::of_server(&server)?;
    println!(
        "API server {} (nodes behave as 1.{})",
        server.git_version,
        kubelet.minor()
    );
    let dir = tempfile::tempdir()?;
    let _nodes = spawn(
        env.kubeconfig_path(),
        &[
            "--name=matrix",
            "--nodes=2",
            "--node-labels=matrix=true",
            "--metrics-bind-address=127.0.0.1:0",
        ],
        &dir.path().join("matrix.log"),
    );
    let _skewed = spawn(
        env.kubeconfig_path(),
        &[
            "--name=skewed",
            "--node-labels=skewed=true",
            "--register-with-taints=skewed=true:NoSchedule",
            &format!("--kubelet-version={SKEWED}"),
            "--kubelet-port=10251",
            "--metrics-bind-address=127.0.0.1:0",
        ],
        &dir.path().join("skewed.log"),
    );
    let nodes: Api<Node> = Api::all(env.client());
    let ready = wait_ready_nodes(&nodes, "matrix=true", 2, WAIT).await;
    wait_ready_nodes(&nodes, "skewed=true", 1, WAIT).await;
    for node in &ready {
        let info = node
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .unwrap();
        assert_eq!(
            info.kubelet_version, server.git_version,
            "the server's version"
        );
    }
    let wide = kubectl_ok(&env, &["get", "nodes", "-o", "wide"]).await;
    println!("kubectl get nodes -o wide:\n{wide}");
    for line in wide.lines().filter(|l| l.starts_with("matrix-")) {
        assert!(line.contains(&server.git_version), "{line}");
    }
    let skewed_line = wide.lines().find(|l| l.starts_with("skewed ")).unwrap();
    assert!(skewed_line.contains(SKEWED), "{skewed_line}");

    // A Deployment, a Job, and a pod with an init container and a sidecar.
    let deployments: Api<Deployment> = Api::namespaced(env.client(), "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "nginx", "image": "nginx:1.27" }] },
            },
        },
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let jobs: Api<Job> = Api::namespaced(env.client(), "default");
    let job: Job = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "once" },
        "spec": {
            "completions": 2,
            "parallelism": 2,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "work", "image": "busybox", "command": ["sh", "-c", "echo done"] }],
            } },
        },
    }))?;
    jobs.create(&PostParams::default(), &job).await?;
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let sidecar = pod(
        "init-and-sidecar",
        serde_json::json!({
            "initContainers": [
                { "name": "setup", "image": "busybox", "command": ["sh", "-c", "echo ready > /tmp/x"] },
                { "name": "proxy", "image": "nginx:1.27", "restartPolicy": "Always" },
            ],
            "containers": [{ "name": "app", "image": "nginx:1.27" }],
        }),
    );
    pods.create(&PostParams::default(), &sidecar).await?;
    eventually("the Deployment available", WAIT, || async {
        let d = deployments.get("web").await.map_err(|e| e.to_string())?;
        let available = d
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        (available == 3)
            .then_some(())
            .ok_or(format!("{available} available"))
    })
    .await;
    // A settled pod is written no more on any version (no status field flips between
    // what the node writes and what this version's API server keeps).
    let list = pods
        .list(&kube::api::ListParams::default().labels("app=web"))
        .await?;
    let settled: Vec<(String, Option<String>)> = list
        .items
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap(),
                p.metadata.resource_version.clone(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(12)).await;
    for (name, version) in &settled {
        let now = pods.get(name).await?;
        assert_eq!(
            &now.metadata.resource_version, version,
            "{name} was written again: {:?}",
            now.status
        );
    }
    eventually("the Job complete", WAIT, || async {
        let job = jobs.get("once").await.map_err(|e| e.to_string())?;
        let conditions = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
        {
            return Ok(());
        }
        let list = pods
            .list(&kube::api::ListParams::default().labels("job-name=once"))
            .await;
        let states: Vec<_> = list
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .map(|p| {
                (
                    p.spec.and_then(|s| s.node_name),
                    p.status.and_then(|s| s.container_statuses),
                )
            })
            .collect();
        Err(format!("{conditions:?}; pods: {states:?}"))
    })
    .await;
    let running = wait_pod(
        &pods,
        "init-and-sidecar",
        "init and sidecar Running and Ready",
        WAIT,
        |p| pod_phase(p) == "Running" && hollow_tests::pod_condition(p, "Ready") == Some("True"),
    )
    .await;
    let init = running
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.clone())
        .unwrap();
    assert_eq!(init.len(), 2);
    assert!(init[1].started == Some(true), "the sidecar runs: {init:?}");
    pods.delete("init-and-sidecar", &DeleteParams::default())
        .await?;
    eventually("the deleted pod gone", WAIT, || async {
        match pods
            .get_opt("init-and-sidecar")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(p) => Err(format!("{:?}", p.status.and_then(|s| s.phase))),
        }
    })
    .await;

    // Container restart rules: a behaviour of the version table, so the node that
    // follows the server restarts the container from 1.35 on, and the node told 1.34
    // does not, whatever the server.
    let follows = pods
        .create(
            &PostParams::default(),
            &exits_42("rules-follow", "matrix-0"),
        )
        .await;
    let skewed = pods
        .create(&PostParams::default(), &exits_42("rules-skewed", "skewed"))
        .await;
    match (follows, skewed) {
        (Ok(_), Ok(_)) => {
            let restarted = |p: &Pod| restart_count(p) >= 1;
            let failed = |p: &Pod| pod_phase(p) == "Failed";
            if kubelet.has(Behaviour::ContainerRestartRules) {
                let pod = wait_pod(
                    &pods,
                    "rules-follow",
                    "restarted on exit 42",
                    WAIT,
                    restarted,
                )
                .await;
                assert_ne!(pod_phase(&pod), "Failed");
            } else {
                let pod = wait_pod(&pods, "rules-follow", "Failed", WAIT, failed).await;
                assert_eq!(restart_count(&pod), 0);
            }
            let pod = wait_pod(
                &pods,
                "rules-skewed",
                "Failed on the 1.34 node",
                WAIT,
                failed,
            )
            .await;
            assert_eq!(
                restart_count(&pod),
                0,
                "a 1.34 kubelet goes by the pod's policy"
            );
        }
        (Err(error), _) | (_, Err(error)) => {
            // The API server has the gate off (1.34): a regular container may not have a
            // restart policy.
            assert!(
                kubelet.minor() < 35,
                "refused by a {} server: {error}",
                server.git_version
            );
            assert!(error.to_string().contains("restartPolicy"), "{error}");
        }
    }

    // hostnameOverride, another row: the hostname the userland shows.
    for (name, node) in [("named-follow", "matrix-0"), ("named-skewed", "skewed")] {
        let spec = serde_json::json!({
            "nodeName": node,
            "hostnameOverride": "db.example.com",
            "containers": [{ "name": "c", "image": "busybox", "command": ["sleep", "3600"] }],
        });
        pods.create(&PostParams::default(), &pod(name, spec))
            .await?;
    }
    for (name, kubelet_has) in [
        ("named-follow", kubelet.has(Behaviour::HostnameOverride)),
        ("named-skewed", false),
    ] {
        let running = wait_pod(&pods, name, "Running", WAIT, |p| pod_phase(p) == "Running").await;
        let kept = running
            .spec
            .as_ref()
            .and_then(|s| s.hostname_override.as_deref())
            .is_some();
        let hostname = kubectl_ok(&env, &["exec", name, "--", "hostname"]).await;
        let expected = if kept && kubelet_has {
            "db.example.com"
        } else {
            name
        };
        assert_eq!(
            hostname.trim(),
            expected,
            "{name} (override kept by the server: {kept})"
        );
    }

    // A resize beyond the node's allocatable: a 1.36 or later API server refuses it
    // itself; on 1.34 and 1.35 it reaches the node, which calls it Infeasible.
    let mut web = pod(
        "resized",
        serde_json::json!({
            "nodeName": "matrix-0",
            "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": { "requests": { "cpu": "100m" }, "limits": { "cpu": "100m" } } }],
        }),
    );
    web.metadata.labels = None;
    pods.create(&PostParams::default(), &web).await?;
    wait_pod(&pods, "resized", "Running", WAIT, |p| {
        pod_phase(p) == "Running"
    })
    .await;
    let patch = serde_json::json!({ "spec": { "containers": [{ "name": "app",
        "resources": { "requests": { "cpu": "1000" }, "limits": { "cpu": "1000" } } }] } });
    let resized = pods
        .patch_subresource(
            "resize",
            "resized",
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await;
    if kubelet.has(Behaviour::ResizeInfeasibleBeyondAllocatable) {
        resized?;
        let pod = wait_pod(&pods, "resized", "the resize Infeasible", WAIT, |p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.type_ == "PodResizePending" && c.reason.as_deref() == Some("Infeasible")
                    })
                })
        })
        .await;
        let conditions = pod.status.and_then(|s| s.conditions).unwrap_or_default();
        let pending = conditions
            .iter()
            .find(|c| c.type_ == "PodResizePending")
            .unwrap();
        let message = pending.message.as_deref().unwrap_or_default();
        assert!(
            message.starts_with(
                "Node didn't have enough capacity: cpu, requested: 1000000, capacity: "
            ),
            "{message}"
        );
    } else {
        let error = resized
            .expect_err("a 1.36 or later API server refuses it")
            .to_string();
        assert!(error.contains("allocatable"), "{error}");
    }
    env.stop();
    Ok(())
}
