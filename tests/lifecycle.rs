//! Lifecycles loaded from files drive hollow pods and nodes; the real Job, EndpointSlice
//! and node lifecycle controllers and the real scheduler judge the result.

use std::time::Duration;

use hollow_core::annotations::{
    CONDITIONS as CONDITIONS_ANNOTATION, HEARTBEAT as HEARTBEAT_ANNOTATION,
};
use hollow_core::lifecycle::Lifecycle;
use hollow_core::node::HollowCluster;
use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, init_tracing, job, node_condition, pod_from, wait_job_condition};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(150);

const PODS_LIFECYCLE: &str = r#"
apiVersion: hollow.dev/v1alpha1
kind: Lifecycle
seed: 5
containers:
  - name: batch-completes
    match: { labels: { workload: batch } }
    delay: 1s
    jitter: 1s
    steps: [ { exit: { code: 0 } } ]
  - name: doomed-fails
    match: { labels: { workload: doomed } }
    steps: [ { wait: 500ms }, { exit: { code: 1 } } ]
  - name: crasher
    match: { labels: { workload: crasher } }
    steps: [ { wait: 1s }, { exit: { code: 2 } } ]
  - name: flapper
    match: { labels: { workload: flapper } }
    steps:
      - wait: 4s
      - event: { type: Warning, reason: Unhealthy, message: "Readiness probe failed" }
      - ready: false
      - wait: 4s
      - ready: true
      - wait: 4s
      - repeat
pulls:
  - match: { labels: { workload: unpullable } }
    steps: [ { pullError: "manifest for registry.invalid/app:1 not found" } ]
deletions:
  - match: { labels: { workload: finalized } }
    steps: [ { wait: 1s }, removeFinalizers ]
"#;

fn pod(name: &str, workload: &str, extra_metadata: serde_json::Value) -> Pod {
    let mut metadata = json!({ "name": name, "labels": { "workload": workload } });
    if let (Some(m), Some(extra)) = (metadata.as_object_mut(), extra_metadata.as_object()) {
        m.extend(extra.clone());
    }
    pod_from(
        metadata,
        json!({ "containers": [{ "name": "c", "image": "registry.invalid/app:1" }] }),
    )
}

/// The first container's status of a pod.
async fn container_status(
    pods: &Api<Pod>,
    name: &str,
) -> Result<k8s_openapi::api::core::v1::ContainerStatus, String> {
    let pod = pods.get(name).await.map_err(|e| e.to_string())?;
    pod.status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| "no container status yet".to_string())
}

fn waiting_reason(status: &k8s_openapi::api::core::v1::ContainerStatus) -> Option<&str> {
    status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

#[test]
fn the_example_lifecycles_and_presets_load() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lifecycles");
    let mut loaded = 0;
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        let lifecycle = Lifecycle::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!lifecycle.is_empty(), "{}", path.display());
        loaded += 1;
    }
    assert!(loaded >= 2, "only {loaded} example files");
    for preset in hollow_core::lifecycle::PRESETS {
        Lifecycle::resolve(preset).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycle_file_drives_jobs_crash_loops_pulls_readiness_and_deletion()
-> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("pods.yaml");
    std::fs::write(&file, PODS_LIFECYCLE)?;
    let lifecycle = std::sync::Arc::new(Lifecycle::from_file(&file)?);
    let env = TestEnv::builder().start().await?;
    let cluster = HollowCluster::builder("life")
        .nodes(2, move |_, node| node.lifecycle(lifecycle.clone()))
        .start(env.client())
        .await?;
    let client = env.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let completes = async {
        jobs.create(
            &PostParams::default(),
            &job(
                "batch",
                5,
                2,
                2,
                json!({ "labels": { "workload": "batch" } }),
            ),
        )
        .await
        .unwrap();
        let done = wait_job_condition(&jobs, "batch", "Complete", WAIT).await;
        assert_eq!(done.status.unwrap().succeeded, Some(5));
    };

    let fails = async {
        jobs.create(
            &PostParams::default(),
            &job(
                "doomed",
                1,
                1,
                1,
                json!({ "labels": { "workload": "doomed" } }),
            ),
        )
        .await
        .unwrap();
        let failed = wait_job_condition(&jobs, "doomed", "Failed", WAIT).await;
        let condition = failed
            .status
            .unwrap()
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Failed")
            .unwrap();
        assert_eq!(condition.reason.as_deref(), Some("BackoffLimitExceeded"));
    };

    let crash_loops = async {
        pods.create(
            &PostParams::default(),
            &pod("crasher", "crasher", json!({})),
        )
        .await
        .unwrap();
        let status = eventually(
            "crasher in CrashLoopBackOff, restarted twice",
            WAIT,
            || async {
                let status = container_status(&pods, "crasher").await?;
                (waiting_reason(&status) == Some("CrashLoopBackOff") && status.restart_count >= 2)
                    .then_some(status.clone())
                    .ok_or(format!("{status:?}"))
            },
        )
        .await;
        let last = status.last_state.unwrap().terminated.unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
    };

    let pull_fails = async {
        pods.create(
            &PostParams::default(),
            &pod("unpullable", "unpullable", json!({})),
        )
        .await
        .unwrap();
        let first = eventually("ErrImagePull", WAIT, || async {
            let status = container_status(&pods, "unpullable").await?;
            (waiting_reason(&status) == Some("ErrImagePull"))
                .then_some(status.clone())
                .ok_or(format!("{status:?}"))
        })
        .await;
        let message = first.state.unwrap().waiting.unwrap().message.unwrap();
        assert!(
            message.contains("registry.invalid/app:1 not found"),
            "{message}"
        );
        eventually("ImagePullBackOff", WAIT, || async {
            let status = container_status(&pods, "unpullable").await?;
            (waiting_reason(&status) == Some("ImagePullBackOff"))
                .then_some(())
                .ok_or(format!("{status:?}"))
        })
        .await;
    };

    let flaps = async {
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": "flapper" },
            "spec": { "selector": { "workload": "flapper" }, "ports": [{ "port": 80 }] },
        }))
        .unwrap();
        Api::<Service>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
        pods.create(
            &PostParams::default(),
            &pod("flapper", "flapper", json!({})),
        )
        .await
        .unwrap();
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
        let endpoint_ready = || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=flapper"))
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .find(|e| e.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some("flapper"))
                .map(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .ok_or_else(|| "no endpoint for the pod yet".to_string())
        };
        for (round, want) in [(1, true), (1, false), (2, true), (2, false), (3, true)] {
            eventually(
                &format!("the flapper endpoint ready={want} (round {round})"),
                WAIT,
                || async {
                    let ready = endpoint_ready().await?;
                    (ready == want)
                        .then_some(())
                        .ok_or(format!("ready={ready}"))
                },
            )
            .await;
        }
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let unhealthy = events
            .list(&ListParams::default().fields("involvedObject.name=flapper,reason=Unhealthy"))
            .await
            .unwrap();
        let event = unhealthy.items.first().expect("an Unhealthy event");
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(
            event.source.as_ref().and_then(|s| s.component.as_deref()),
            Some("kubelet")
        );
    };

    let finalized = async {
        let metadata = json!({ "finalizers": ["hollow.dev/test-guard"] });
        pods.create(
            &PostParams::default(),
            &pod("finalized", "finalized", metadata),
        )
        .await
        .unwrap();
        // This rule's pod pulls fine (no pull rule matches it) and runs.
        eventually("finalized Running", WAIT, || async {
            let pod = pods.get("finalized").await.map_err(|e| e.to_string())?;
            let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
            (phase == "Running").then_some(()).ok_or(phase)
        })
        .await;
        pods.delete("finalized", &DeleteParams::default())
            .await
            .unwrap();
        // Without the deletion rule's removeFinalizers the pod would stay Terminating.
        eventually("finalized gone", WAIT, || async {
            match pods.get_opt("finalized").await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(pod) => Err(format!("{:?}", pod.metadata.finalizers)),
            }
        })
        .await;
    };

    futures::join!(completes, fails, crash_loops, pull_fails, flaps, finalized);
    cluster.shutdown().await;
    Ok(())
}

fn condition(node: &Node, type_: &str) -> Option<(String, Option<String>)> {
    node_condition(node, type_).map(|c| (c.status.clone(), c.reason.clone()))
}

fn has_taint(node: &Node, key: &str) -> bool {
    taints(node).any(|t| t.key == key)
}

/// Whether the node has the taint that keeps new pods off. For not-ready the node
/// lifecycle controller adds two taints, NoSchedule and NoExecute, in separate passes,
/// and every pod tolerates NoExecute not-ready for 300 s: only NoSchedule refuses a pod.
fn has_no_schedule_taint(node: &Node, key: &str) -> bool {
    taints(node).any(|t| t.key == key && t.effect == "NoSchedule")
}

fn taints(node: &Node) -> impl Iterator<Item = &k8s_openapi::api::core::v1::Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
}

async fn wait_node(
    nodes: &Api<Node>,
    name: &str,
    what: &str,
    check: impl Fn(&Node) -> bool,
) -> Node {
    eventually(&format!("{name}: {what}"), WAIT, || async {
        let node = nodes.get(name).await.map_err(|e| e.to_string())?;
        if check(&node) {
            Ok(node)
        } else {
            Err(format!(
                "Ready {:?}, taints {:?}",
                condition(&node, "Ready"),
                node.spec.as_ref().and_then(|s| s.taints.clone())
            ))
        }
    })
    .await
}

async fn wait_scheduled(pods: &Api<Pod>, name: &str, when: &str) {
    eventually(&format!("{name} scheduled {when}"), WAIT, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        pod.spec
            .and_then(|s| s.node_name)
            .map(drop)
            .ok_or_else(|| "unscheduled".to_string())
    })
    .await;
}

async fn annotate(nodes: &Api<Node>, name: &str, key: &str, value: Option<&str>) {
    let patch = json!({ "metadata": { "annotations": { key: value } } });
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_faults_from_a_lifecycle_and_from_annotations_reach_the_scheduler_and_controllers()
-> anyhow::Result<()> {
    init_tracing();
    let lifecycle = std::sync::Arc::new(Lifecycle::from_yaml(
        r#"
nodes:
  - name: pressure-spell
    match: { labels: { pool: flaky } }
    delay: 15s
    steps:
      - condition: { type: MemoryPressure, status: "True" }
      - wait: 30s
      - clearCondition: MemoryPressure
"#,
        "nodes.yaml",
    )?);
    let env = TestEnv::builder()
        .node_monitor_grace_period(Duration::from_secs(16))
        .start()
        .await?;
    let cluster = HollowCluster::builder("fault")
        .nodes(2, move |i, node| {
            let node = node.lifecycle(lifecycle.clone());
            if i == 0 {
                node.label("pool", "flaky")
            } else {
                node
            }
        })
        .start(env.client())
        .await?;
    let nodes: Api<Node> = Api::all(env.client());
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let pinned = |name: &str, node: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "nodeSelector": { "kubernetes.io/hostname": node },
                "containers": [{ "name": "c", "image": "busybox" }],
            },
        }))
        .unwrap()
    };

    let lifecycle_pressure = async {
        // The lifecycle's node rule: pressure on, seen by the controller, then off.
        wait_node(&nodes, "fault-0", "MemoryPressure and its taint", |n| {
            condition(n, "MemoryPressure")
                == Some(("True".into(), Some("KubeletHasInsufficientMemory".into())))
                && has_no_schedule_taint(n, "node.kubernetes.io/memory-pressure")
        })
        .await;
        pods.create(&PostParams::default(), &pinned("squeezed", "fault-0"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let squeezed = pods.get("squeezed").await.unwrap();
        assert!(
            squeezed.spec.unwrap().node_name.is_none(),
            "not scheduled under pressure"
        );
        wait_node(&nodes, "fault-0", "pressure and taint gone", |n| {
            condition(n, "MemoryPressure").is_some_and(|(s, _)| s == "False")
                && !has_taint(n, "node.kubernetes.io/memory-pressure")
        })
        .await;
        wait_scheduled(&pods, "squeezed", "once the pressure is gone").await;
    };

    let annotated_faults = async {
        // Not ready by annotation: Ready False with the kubelet's reason, tainted.
        annotate(
            &nodes,
            "fault-1",
            CONDITIONS_ANNOTATION,
            Some("Ready=False"),
        )
        .await;
        wait_node(
            &nodes,
            "fault-1",
            "Ready False and tainted not-ready",
            |n| {
                condition(n, "Ready") == Some(("False".into(), Some("KubeletNotReady".into())))
                    && has_no_schedule_taint(n, "node.kubernetes.io/not-ready")
            },
        )
        .await;
        // The scheduler sees the taint through its own informer, which on a loaded
        // machine can trail the API by a moment: a pod created at once may be bound
        // before the scheduler's cache has the taint (the CI rehearsal saw that once).
        tokio::time::sleep(Duration::from_secs(3)).await;
        pods.create(&PostParams::default(), &pinned("refused", "fault-1"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            pods.get("refused")
                .await
                .unwrap()
                .spec
                .unwrap()
                .node_name
                .is_none()
        );
        annotate(&nodes, "fault-1", CONDITIONS_ANNOTATION, None).await;
        wait_node(&nodes, "fault-1", "Ready again", |n| {
            condition(n, "Ready").is_some_and(|(s, _)| s == "True")
                && !has_taint(n, "node.kubernetes.io/not-ready")
        })
        .await;
        wait_scheduled(&pods, "refused", "once Ready").await;

        // Heartbeats stopped by annotation: the controller marks the node Unknown.
        annotate(&nodes, "fault-1", HEARTBEAT_ANNOTATION, Some("stopped")).await;
        wait_node(&nodes, "fault-1", "Ready Unknown", |n| {
            condition(n, "Ready") == Some(("Unknown".into(), Some("NodeStatusUnknown".into())))
        })
        .await;
        annotate(&nodes, "fault-1", HEARTBEAT_ANNOTATION, None).await;
        wait_node(&nodes, "fault-1", "Ready after heartbeats resume", |n| {
            condition(n, "Ready").is_some_and(|(s, _)| s == "True")
        })
        .await;
    };

    futures::join!(lifecycle_pressure, annotated_faults);
    cluster.shutdown().await;
    Ok(())
}
