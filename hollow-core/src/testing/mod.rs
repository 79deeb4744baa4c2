//! A conformance suite any [`RuntimeService`] implementation can run against itself,
//! as Virtual Kubelet's providers run its end-to-end suite.
//!
//! ```
//! use hollow_core::runtime::FakeRuntime;
//! use hollow_core::testing::check_runtime;
//!
//! # tokio_test::block_on(async {
//! check_runtime(&FakeRuntime::default()).await?;
//! # Ok::<(), hollow_core::testing::ConformanceError>(())
//! # }).unwrap();
//! ```

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::pod::ContainerKind;
use crate::runtime::{
    ContainerConfig, ContainerState, PodSandboxConfig, RuntimeService, SandboxState,
};

/// A conformance check that failed.
#[derive(Debug, thiserror::Error)]
#[error("runtime conformance check {check:?} failed: {detail}")]
pub struct ConformanceError {
    /// The check.
    pub check: &'static str,
    /// What was seen.
    pub detail: String,
}

fn fail(check: &'static str, detail: impl std::fmt::Display) -> ConformanceError {
    ConformanceError {
        check,
        detail: detail.to_string(),
    }
}

fn ensure(
    check: &'static str,
    ok: bool,
    detail: impl FnOnce() -> String,
) -> Result<(), ConformanceError> {
    if ok {
        Ok(())
    } else {
        Err(fail(check, detail()))
    }
}

const CIDR: &str = "10.200.0.0/24";

/// Runs every check: version, pod CIDR and sandbox IPs, host-network sandboxes, image
/// pulls, the container lifecycle (create, start, list, stop, remove), not-found errors
/// for unknown ids, idempotent sandbox stop and removal, volume files (none in a volume
/// nothing wrote, unless unsupported), and pushed events (when the runtime offers them).
pub async fn check_runtime(runtime: &dyn RuntimeService) -> Result<(), ConformanceError> {
    let version = runtime.version().await.map_err(|e| fail("version", e))?;
    ensure("version", !version.name.is_empty(), || {
        "empty runtime name".into()
    })?;
    runtime
        .update_pod_cidr(CIDR)
        .await
        .map_err(|e| fail("update_pod_cidr", e))?;
    let mut events = runtime.subscribe();

    let pod = PodSandboxConfig {
        name: "conformance".into(),
        namespace: "default".into(),
        uid: "conformance-uid".into(),
        ..Default::default()
    };
    let sandbox = runtime
        .run_pod_sandbox(&pod)
        .await
        .map_err(|e| fail("run_pod_sandbox", e))?;
    let status = runtime
        .pod_sandbox_status(&sandbox)
        .await
        .map_err(|e| fail("pod_sandbox_status", e))?;
    ensure(
        "sandbox is ready",
        status.state == SandboxState::Ready,
        || format!("{status:?}"),
    )?;
    ensure(
        "sandbox IP in the pod CIDR",
        status.ips.iter().any(in_cidr),
        || format!("{:?}", status.ips),
    )?;

    let file = runtime
        .volume_file(&sandbox, "conformance-none", "x.env")
        .await;
    ensure(
        "no volume file nothing wrote",
        matches!(file, Ok(None)) || file.as_ref().is_err_and(crate::Error::is_unsupported),
        || format!("{file:?}"),
    )?;

    let host = PodSandboxConfig {
        host_network: true,
        uid: "conformance-host".into(),
        ..pod.clone()
    };
    let host_sandbox = runtime
        .run_pod_sandbox(&host)
        .await
        .map_err(|e| fail("host-network sandbox", e))?;
    let host_status = runtime
        .pod_sandbox_status(&host_sandbox)
        .await
        .map_err(|e| fail("host-network sandbox", e))?;
    ensure(
        "host-network sandbox has no pod IP",
        host_status.ips.is_empty(),
        || format!("{:?}", host_status.ips),
    )?;

    let image_ref = runtime
        .pull_image("busybox:1.36", &pod)
        .await
        .map_err(|e| fail("pull_image", e))?;
    ensure("image reference", !image_ref.is_empty(), || {
        "empty image reference".into()
    })?;

    let config = ContainerConfig {
        name: "main".into(),
        image: "busybox:1.36".into(),
        kind: ContainerKind::Regular,
        pod_uid: pod.uid.clone(),
        pod_namespace: pod.namespace.clone(),
        pod_name: pod.name.clone(),
        ..Default::default()
    };
    let id = runtime
        .create_container(&sandbox, &config)
        .await
        .map_err(|e| fail("create_container", e))?;
    let created = runtime
        .container_status(&id)
        .await
        .map_err(|e| fail("container_status", e))?;
    ensure(
        "created state",
        matches!(created.state, ContainerState::Created { .. }),
        || format!("{:?}", created.state),
    )?;
    ensure(
        "status names the container",
        created.name == "main" && created.sandbox_id == sandbox,
        || format!("{created:?}"),
    )?;
    runtime
        .start_container(&id)
        .await
        .map_err(|e| fail("start_container", e))?;
    let started = runtime
        .container_status(&id)
        .await
        .map_err(|e| fail("container_status", e))?;
    ensure(
        "started state",
        !matches!(started.state, ContainerState::Created { .. }),
        || format!("{:?}", started.state),
    )?;
    if let Some(events) = events.as_mut() {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
        ensure(
            "a start event is pushed",
            matches!(&event, Ok(Ok(e)) if e.container_id == id),
            || format!("{event:?}"),
        )?;
    }
    let listed = runtime
        .list_containers(Some(&sandbox))
        .await
        .map_err(|e| fail("list_containers", e))?;
    ensure("list_containers", listed.iter().any(|c| c.id == id), || {
        format!("{listed:?}")
    })?;
    let resized = k8s_openapi::api::core::v1::ResourceRequirements {
        requests: Some([("cpu".to_string(), Quantity("200m".into()))].into()),
        ..Default::default()
    };
    runtime
        .update_container_resources(&id, &resized)
        .await
        .map_err(|e| fail("update_container_resources", e))?;
    runtime
        .stop_container(&id, Duration::from_secs(1))
        .await
        .map_err(|e| fail("stop_container", e))?;
    let stopped = runtime
        .container_status(&id)
        .await
        .map_err(|e| fail("container_status", e))?;
    ensure(
        "exited after stop",
        matches!(stopped.state, ContainerState::Exited { .. }),
        || format!("{:?}", stopped.state),
    )?;
    runtime
        .remove_container(&id)
        .await
        .map_err(|e| fail("remove_container", e))?;
    let gone = runtime.container_status(&id).await;
    ensure(
        "removed container is not found",
        gone.as_ref().is_err_and(|e| e.is_not_found()),
        || format!("{gone:?}"),
    )?;
    let unknown = runtime.start_container("no-such-container").await;
    ensure(
        "unknown container is not found",
        unknown.as_ref().is_err_and(|e| e.is_not_found()),
        || format!("{unknown:?}"),
    )?;

    for id in [&sandbox, &host_sandbox] {
        runtime
            .stop_pod_sandbox(id)
            .await
            .map_err(|e| fail("stop_pod_sandbox", e))?;
        runtime
            .stop_pod_sandbox(id)
            .await
            .map_err(|e| fail("stop_pod_sandbox twice", e))?;
        runtime
            .remove_pod_sandbox(id)
            .await
            .map_err(|e| fail("remove_pod_sandbox", e))?;
        runtime
            .remove_pod_sandbox(id)
            .await
            .map_err(|e| fail("remove_pod_sandbox twice", e))?;
    }
    let gone = runtime.pod_sandbox_status(&sandbox).await;
    ensure(
        "removed sandbox is not found",
        gone.as_ref().is_err_and(|e| e.is_not_found()),
        || format!("{gone:?}"),
    )?;
    Ok(())
}

fn in_cidr(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [10, 200, 0])
}
