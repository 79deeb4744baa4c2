//! Pods scripted by annotations (`hollow.dev/exit-after`, `exit-code`, `pull-error`)
//! on hollow nodes, judged by the real Job controller.

use std::time::Duration;

use hollow_core::node::HollowCluster;
use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, init_tracing, job, wait_job_condition};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(150);

#[tokio::test]
async fn jobs_complete_and_fail_through_the_real_job_controller() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let cluster = HollowCluster::builder("jobs")
        .nodes(2, |_, n| n)
        .start(env.client())
        .await?;
    let jobs: Api<Job> = Api::namespaced(env.client(), "default");

    jobs.create(
        &PostParams::default(),
        &job(
            "five",
            5,
            2,
            2,
            json!({ "annotations": { "hollow.dev/exit-after": "1s" } }),
        ),
    )
    .await?;
    jobs.create(
        &PostParams::default(),
        &job(
            "failing",
            1,
            1,
            2,
            json!({ "annotations": { "hollow.dev/exit-after": "500ms", "hollow.dev/exit-code": "1" } }),
        ),
    )
    .await?;

    let five = wait_job_condition(&jobs, "five", "Complete", WAIT).await;
    assert_eq!(five.status.unwrap().succeeded, Some(5));
    let failing = wait_job_condition(&jobs, "failing", "Failed", WAIT).await;
    let status = failing.status.unwrap();
    let failed = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(status.failed, Some(3), "the first try and two retries");

    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let list = pods
        .list(&kube::api::ListParams::default().labels("job-name=failing"))
        .await?;
    for pod in list.items {
        let status = pod.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let exit = status.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((exit.exit_code, exit.reason.as_deref()), (1, Some("Error")));
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn pull_errors_and_malformed_annotations_show_as_waiting_reasons() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let cluster = HollowCluster::builder("w")
        .nodes(1, |_, n| n)
        .start(env.client())
        .await?;
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let pod = |name: &str, annotations: serde_json::Value| -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "annotations": annotations },
            "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
        }))
        .unwrap()
    };
    pods.create(
        &PostParams::default(),
        &pod(
            "no-pull",
            json!({ "hollow.dev/pull-error": "manifest unknown" }),
        ),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod("typo", json!({ "hollow.dev/exit-after": "soon" })),
    )
    .await?;
    let waiting = |name: &'static str, reason: &'static str| {
        let pods = pods.clone();
        async move {
            eventually(&format!("{name} waiting with {reason}"), WAIT, || async {
                let pod = pods.get(name).await.map_err(|e| e.to_string())?;
                let state = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c[0].state.clone())
                    .and_then(|s| s.waiting);
                match state {
                    Some(w) if w.reason.as_deref() == Some(reason) => {
                        Ok(w.message.unwrap_or_default())
                    }
                    other => Err(format!("{other:?}")),
                }
            })
            .await
        }
    };
    let message = waiting("no-pull", "ErrImagePull").await;
    assert!(message.contains("manifest unknown"), "{message}");
    waiting("no-pull", "ImagePullBackOff").await;
    let message = waiting("typo", "RunContainerError").await;
    assert!(message.contains("hollow.dev/exit-after"), "{message}");
    // Failed starts back off and leave no containers behind.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let left = cluster.node(0).runtime().list_containers(None).await?;
    assert!(left.is_empty(), "{left:?}");
    cluster.shutdown().await;
    Ok(())
}
