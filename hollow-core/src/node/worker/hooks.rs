//! Lifecycle hooks as the kubelet runs them (pkg/kubelet/lifecycle/handlers.go): exec
//! handlers in the container through the runtime (the fake's userland; a `sleep` in
//! one takes its time), `sleep` handlers on the clock, HTTP handlers recorded as sent.
//! postStart runs once a container started, and a failure kills it (`startContainer`
//! in pkg/kubelet/kuberuntime/kuberuntime_container.go); preStop runs before a
//! container is stopped (`super::stop`).

use std::time::Duration;

use k8s_openapi::api::core::v1::LifecycleHandler;

use super::PodWorker;
use crate::node::events::Kind;
use crate::runtime::{ContainerState, ProbeAction, ProbeOutcome, RuntimeService};

/// The longest a postStart hook is waited for (the kubelet sets none).
const POST_START_LIMIT: Duration = Duration::from_secs(3600);

/// Runs `hook` in container `id` for at most `limit`; the error is the handler's
/// output. A hook still running at `limit` counts as done, as the kubelet stops
/// waiting for it.
pub(super) async fn run_hook(
    runtime: &dyn RuntimeService,
    id: &str,
    hook: &LifecycleHandler,
    limit: Duration,
) -> Result<(), String> {
    if let Some(exec) = &hook.exec {
        let command = exec.command.clone().unwrap_or_default();
        let report = runtime
            .probe(id, &ProbeAction::Exec { command })
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(report.took.min(limit)).await;
        return match report.outcome {
            ProbeOutcome::Failure { output } if report.took <= limit => Err(output),
            _ => Ok(()),
        };
    }
    if let Some(sleep) = &hook.sleep {
        let seconds = u64::try_from(sleep.seconds).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(seconds).min(limit)).await;
        return Ok(());
    }
    if let Some(http) = &hook.http_get {
        tracing::debug!(path = ?http.path, port = ?http.port, "HTTP lifecycle hook sent");
    }
    Ok(())
}

impl PodWorker {
    /// Runs the postStart hook of a container that just started; one that fails kills
    /// it (the restart policy then restarts it).
    pub(super) async fn post_start(&mut self, init: bool, index: usize) {
        let pod = self.pod.clone();
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let container = if init {
            spec.init_containers.as_deref().and_then(|c| c.get(index))
        } else {
            spec.containers.get(index)
        };
        let Some(container) = container else {
            return;
        };
        let Some(hook) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
        else {
            return;
        };
        let record = if init {
            &self.init[index]
        } else {
            &self.regular[index]
        };
        let Some(id) = record.running_id() else {
            return;
        };
        let runtime = self.shared.config.runtime.clone();
        let Err(output) = run_hook(runtime.as_ref(), &id, hook, POST_START_LIMIT).await else {
            return;
        };
        tracing::info!(container = %container.name, %output, "postStart hook failed");
        // The message is left out of the Event, so no secret leaks.
        let name = &container.name;
        self.container_event(
            init,
            name,
            Kind::Warning,
            "FailedPostStartHook",
            "PostStartHook failed".into(),
        );
        self.container_event(
            init,
            name,
            Kind::Normal,
            "Killing",
            "FailedPostStartHook".into(),
        );
        let _ = runtime.stop_container(&id, self.grace_period()).await;
        let state = runtime.container_status(&id).await.ok().map(|s| s.state);
        let record = if init {
            &mut self.init[index]
        } else {
            &mut self.regular[index]
        };
        if let Some(state @ ContainerState::Exited { .. }) = state {
            record.set_state(Some(state));
        }
    }
}
