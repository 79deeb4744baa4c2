//! Stopping a pod's containers as the kubelet kills them (`killContainer` in
//! pkg/kubelet/kuberuntime/kuberuntime_container.go): the `Killing` Event, the preStop
//! hook within the grace period, then the runtime's stop with what is left of it.

use std::time::Duration;

use tokio::time::Instant;

use super::PodWorker;
use super::hooks::run_hook;
use crate::node::events::Kind;
use crate::pod::ContainerKind;

/// The least a container is given to stop after its preStop hook
/// (`minimumGracePeriodInSeconds`).
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

impl PodWorker {
    /// Stops every container (all at once, as the kubelet kills a pod) and the
    /// sandbox, giving containers `grace` to exit, their preStop hooks first.
    pub(super) async fn stop_everything(&mut self, grace: Duration) {
        let runtime = self.shared.config.runtime.clone();
        let pod = self.pod.clone();
        let spec = pod.spec.as_ref();
        let mut running = Vec::new();
        for record in self.init.iter_mut().chain(self.regular.iter_mut()) {
            record.waiting = None;
            if let (Some(id), true) = (&record.id, record.is_running()) {
                let init = record.kind != ContainerKind::Regular;
                let containers = if init {
                    spec.and_then(|s| s.init_containers.as_deref())
                } else {
                    spec.map(|s| s.containers.as_slice())
                };
                let pre_stop = containers
                    .into_iter()
                    .flatten()
                    .find(|c| *c.name == *record.name)
                    .and_then(|c| c.lifecycle.as_ref()?.pre_stop.clone());
                running.push((id.to_string(), init, record.name.to_string(), pre_stop));
            }
        }
        // killContainer's event (pkg/kubelet/kuberuntime/kuberuntime_container.go).
        for (_, init, name, _) in &running {
            let message = format!("Stopping container {name}");
            self.container_event(*init, name, Kind::Normal, "Killing", message);
        }
        let stops = running.iter().map(|(id, _, _, pre_stop)| {
            let runtime = runtime.clone();
            async move {
                let started = Instant::now();
                let failed = match pre_stop.as_ref().filter(|_| !grace.is_zero()) {
                    Some(hook) => run_hook(runtime.as_ref(), id, hook, grace).await.is_err(),
                    None => false,
                };
                let left = grace.saturating_sub(started.elapsed());
                let left = if pre_stop.is_some() && !grace.is_zero() {
                    left.max(MINIMUM_GRACE)
                } else {
                    left
                };
                let _ = runtime.stop_container(id, left).await;
                failed
            }
        });
        let failed = futures::future::join_all(stops).await;
        for ((_, init, name, _), failed) in running.iter().zip(failed) {
            if failed {
                // executePreStopHook: the message is left out, so no secret leaks.
                let message = "PreStopHook failed".to_string();
                self.container_event(*init, name, Kind::Warning, "FailedPreStopHook", message);
            }
        }
        if let Some(sandbox) = &self.sandbox
            && !self.sandbox_stopped
        {
            let _ = runtime.stop_pod_sandbox(&sandbox.to_string()).await;
            self.sandbox_stopped = true;
        }
        self.refresh().await;
    }

    pub(super) async fn remove_from_runtime(&mut self) {
        if let Some(sandbox) = self.sandbox.take().map(|id| id.to_string()) {
            let runtime = self.shared.config.runtime.clone();
            let _ = runtime.stop_pod_sandbox(&sandbox).await;
            let _ = runtime.remove_pod_sandbox(&sandbox).await;
        }
    }
}
