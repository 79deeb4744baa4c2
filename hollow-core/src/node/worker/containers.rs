//! The worker's runtime side: the pod's sandbox and containers, started and restarted
//! (stopped: `super::stop`).

use tokio::time::Instant;

use super::{Backoff, PodWorker, RETRY_DELAY, SYNC_RETRY};
use crate::node::container_env::{command_line, launch};
use crate::node::events::{self, Kind, go_duration};
use crate::node::object_data::ObjectData;
use crate::node::pod_status::{ContainerRecord, restart_policy};
use crate::node::restart::{
    container_should_restart, pod_policy_restarts, restarts_after_probe_kill,
};
use crate::pod::ContainerKind;
use crate::runtime::ContainerConfig;

/// What [`PodWorker::drive_containers`] does with one container.
enum Step {
    Start,
    Restart,
    /// Nothing; the next container may go on.
    Next,
    /// Nothing; an init container holds the ones after it.
    Wait,
}

impl PodWorker {
    /// Reads the current containers' states from the runtime.
    pub(super) async fn refresh(&mut self) {
        let runtime = self.shared.config.runtime.clone();
        for record in self.init.iter_mut().chain(self.regular.iter_mut()) {
            if let Some(id) = &record.id {
                match runtime.container_status(&id.to_string()).await {
                    Ok(status) => {
                        record.set_state(Some(status.state));
                        record.runtime_ready = status.ready;
                    }
                    Err(error) if error.is_not_found() => {
                        record.id = None;
                        record.set_state(None);
                    }
                    Err(error) => tracing::debug!(%error, "container status failed"),
                }
            }
        }
    }

    pub(super) async fn ensure_sandbox(&mut self) -> bool {
        if self.sandbox.is_some() {
            return true;
        }
        if self.retry_at.is_some_and(|at| at > Instant::now()) {
            return false;
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        if !host_network && !self.shared.ensure_pod_cidr().await {
            self.retry_at = Some(Instant::now() + RETRY_DELAY);
            return false;
        }
        let config = self.sandbox_config();
        let runtime = self.shared.config.runtime.clone();
        let result = async {
            let id = runtime.run_pod_sandbox(&config).await?;
            let status = runtime.pod_sandbox_status(&id).await?;
            Ok::<_, crate::Error>((id, status.ips))
        }
        .await;
        match result {
            Ok((id, ips)) => {
                self.sandbox = Some(id.into());
                self.pod_ips = if host_network {
                    self.shared.node_ips().into()
                } else {
                    ips.into()
                };
                self.retry_at = None;
                true
            }
            Err(error) => {
                tracing::warn!(pod = %self.name(), %error, "cannot create the pod sandbox");
                self.retry_at = Some(Instant::now() + RETRY_DELAY);
                false
            }
        }
    }

    /// Whether containers' own restart policies and rules count (from 1.35).
    pub(super) fn restart_rules(&self) -> bool {
        self.shared
            .config
            .kubelet
            .has(crate::version::Behaviour::ContainerRestartRules)
    }

    /// Why the pod's sandbox is not ready, as a 1.37 kubelet says it
    /// (`PodSandboxChanged` in pkg/kubelet/kuberuntime/util/util.go); `None` before.
    pub(super) fn sandbox_not_ready(&self) -> Option<&'static str> {
        if !self
            .shared
            .config
            .kubelet
            .has(crate::version::Behaviour::SandboxNotReadyReason)
        {
            return None;
        }
        Some(if self.sandbox.is_none() {
            "no pod sandbox exists"
        } else {
            "pod sandbox is not ready"
        })
    }

    /// Init containers one at a time (sidecars started and left running), then every
    /// regular container; exited ones restarted as their restart policy says
    /// (pkg/kubelet/kuberuntime/kuberuntime_container.go `computeInitContainerActions`,
    /// kuberuntime_manager.go `computePodActions`).
    pub(super) async fn drive_containers(&mut self) {
        for index in 0..self.init.len() {
            match self.next_step(true, index) {
                Step::Start => self.start(true, index).await,
                Step::Restart => self.restart(true, index).await,
                Step::Next => continue,
                Step::Wait => {}
            }
            if self.init[index].kind != ContainerKind::Sidecar {
                return;
            }
        }
        if self.init.iter().any(|c| !c.init_done()) {
            return;
        }
        for index in 0..self.regular.len() {
            match self.next_step(false, index) {
                Step::Start => self.start(false, index).await,
                Step::Restart => self.restart(false, index).await,
                Step::Next | Step::Wait => {}
            }
        }
    }

    /// What one container needs now: an init container that failed restarts if its
    /// policy says so, and holds the ones after it either way; a regular one killed for
    /// a failed probe restarts unless its policy is Never, whatever its exit code.
    fn next_step(&self, init: bool, index: usize) -> Step {
        let record = if init {
            &self.init[index]
        } else {
            &self.regular[index]
        };
        let policy = restart_policy(&self.pod);
        let rules = self.restart_rules();
        let spec = self.pod.spec.as_ref().and_then(|spec| {
            let list = if init {
                spec.init_containers.as_ref()?
            } else {
                &spec.containers
            };
            list.iter().find(|c| *c.name == *record.name)
        });
        let restarts = |code: i32| match spec {
            Some(container) => container_should_restart(container, policy, code, rules),
            None => pod_policy_restarts(policy, code),
        };
        match (record.kind, record.exit_code()) {
            (_, None) if record.id.is_none() => Step::Start,
            (ContainerKind::Sidecar, Some(_)) => Step::Restart,
            (ContainerKind::Init, Some(0)) => Step::Next,
            (ContainerKind::Init, Some(code)) if restarts(code) => Step::Restart,
            (ContainerKind::Regular, Some(code))
                if record.killed_by_probe()
                    && spec.is_none_or(|c| restarts_after_probe_kill(c, policy, rules, false))
                    || restarts(code) =>
            {
                Step::Restart
            }
            (ContainerKind::Sidecar, None) => Step::Next,
            _ => Step::Wait,
        }
    }

    /// Records an event about one of the pod's containers.
    pub(super) fn container_event(
        &self,
        init: bool,
        container: &str,
        kind: Kind,
        reason: &str,
        message: String,
    ) {
        let path = events::container_field_path(init, container);
        self.shared
            .event(self.event_reference(Some(path)), kind, reason, message);
    }

    /// Records an event about the pod.
    pub(super) fn pod_event(&self, kind: Kind, reason: &str, message: String) {
        self.shared
            .event(self.event_reference(None), kind, reason, message);
    }

    fn event_reference(
        &self,
        field_path: Option<String>,
    ) -> k8s_openapi::api::core::v1::ObjectReference {
        events::pod_reference(
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
            self.name(),
            &self.inbox.uid.to_string(),
            field_path,
        )
    }

    fn record(&mut self, init: bool, index: usize) -> &mut ContainerRecord {
        if init {
            &mut self.init[index]
        } else {
            &mut self.regular[index]
        }
    }

    /// Restarts an exited container, unless it is in crash-loop back-off.
    async fn restart(&mut self, init: bool, index: usize) {
        let now = Instant::now();
        let name = self.record(init, index).name.clone();
        if let Some(backoff) = self.restarts.get(&name).copied()
            && backoff.until() > now
        {
            let message = format!(
                "back-off {}s restarting failed container={name} pod={}_{}({})",
                backoff.delay.as_secs(),
                self.name(),
                self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                self.inbox.uid,
            );
            self.record(init, index).waiting = Some(Box::new(("CrashLoopBackOff".into(), message)));
            // pkg/kubelet/kuberuntime/kuberuntime_manager.go (doBackOff).
            self.container_event(
                init,
                &name,
                Kind::Warning,
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {}_{}({})",
                    self.name(),
                    self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                    self.inbox.uid,
                ),
            );
            return;
        }
        let previous = self.restarts.get(&name).copied();
        self.restarts.insert(&name, Backoff::next(previous, now));
        let runtime = self.shared.config.runtime.clone();
        let record = self.record(init, index);
        // The exited container stays for `logs --previous`; the one before it goes.
        if let Some(older) = record.previous_id.take() {
            let _ = runtime.remove_container(&older.to_string()).await;
        }
        record.previous_id = record.id.take().map(Box::new);
        record.last_exit = record.take_state().map(Box::new);
        record.restart_count += 1;
        self.start(init, index).await;
    }

    /// Kills a running container and starts it again at once, whatever the pod's
    /// restart policy, as the kubelet does when a resize needs it
    /// (`computePodResizeAction` in pkg/kubelet/kuberuntime/kuberuntime_manager.go).
    pub(super) async fn restart_for_resize(&mut self, init: bool, index: usize) {
        let runtime = self.shared.config.runtime.clone();
        let record = self.record(init, index).clone();
        let Some(id) = record.running_id() else {
            return;
        };
        let message = format!("Container {} resize requires restart", record.name);
        self.container_event(init, &record.name, Kind::Normal, "Killing", message);
        let _ = runtime.stop_container(&id, self.grace_period()).await;
        let exited = runtime.container_status(&id).await.ok().map(|s| s.state);
        let record = self.record(init, index);
        if let Some(older) = record.previous_id.take() {
            let _ = runtime.remove_container(&older.to_string()).await;
        }
        record.previous_id = record.id.take().map(Box::new);
        record.last_exit = exited.or_else(|| record.take_state()).map(Box::new);
        record.set_state(None);
        record.restart_count += 1;
        self.start(init, index).await;
    }

    /// Pulls, creates and starts a container; failures show as waiting reasons.
    async fn start(&mut self, init: bool, index: usize) {
        let Some(sandbox) = self.sandbox.as_ref().map(ToString::to_string) else {
            return;
        };
        let now = Instant::now();
        let runtime = self.shared.config.runtime.clone();
        let meta = self.pod.metadata.clone();
        let spec_container = {
            let spec = self.pod.spec.clone().unwrap_or_default();
            if init {
                spec.init_containers.unwrap_or_default().get(index).cloned()
            } else {
                spec.containers.get(index).cloned()
            }
        };
        let record = self.record(init, index).clone();
        if self
            .start_failures
            .get(&record.name)
            .is_some_and(|b| b.until() > now)
        {
            // Still backing off from a failed create or start; the waiting reason stays.
            return;
        }
        if let Some(backoff) = self.pulls.get(&record.name)
            && backoff.until() > now
        {
            let message = format!("Back-off pulling image \"{}\"", record.image);
            self.container_event(init, &record.name, Kind::Normal, "BackOff", message.clone());
            self.container_event(
                init,
                &record.name,
                Kind::Warning,
                "Failed",
                "Error: ImagePullBackOff".into(),
            );
            self.record(init, index).waiting = Some(Box::new(("ImagePullBackOff".into(), message)));
            return;
        }
        // The image manager's events (pkg/kubelet/images/image_manager.go): an image
        // already on the node is not pulled again unless the policy says Always.
        let policy = spec_container
            .as_ref()
            .and_then(|c| c.image_pull_policy.as_deref());
        let on_node = self.shared.images.lock().contains_key(&*record.image);
        let present = policy != Some("Always") && on_node;
        if policy == Some("Never") && !on_node {
            // `imagePullPrecheck` in pkg/kubelet/images/image_manager.go, and
            // startContainer's "Error: ..." event; retried on the next sync.
            let message = format!(
                "Container image \"{}\" is not present with pull policy of Never",
                record.image
            );
            let (kind, reason) = (Kind::Warning, "ErrImageNeverPull");
            self.container_event(init, &record.name, kind, reason, message.clone());
            let error = format!("Error: {reason}");
            self.container_event(init, &record.name, kind, "Failed", error);
            self.record(init, index).waiting = Some(Box::new((reason.into(), message)));
            return;
        }
        if present {
            self.container_event(
                init,
                &record.name,
                Kind::Normal,
                "Pulled",
                format!(
                    "Container image \"{}\" already present on machine and can be accessed by the pod",
                    record.image
                ),
            );
        } else {
            self.container_event(
                init,
                &record.name,
                Kind::Normal,
                "Pulling",
                format!("Pulling image \"{}\"", record.image),
            );
        }
        let pull_started = std::time::Instant::now();
        let image_ref = match runtime
            .pull_image(&record.image, &self.sandbox_config())
            .await
        {
            Ok(image_ref) => {
                self.pulls.remove(&record.name);
                if !present {
                    let took = go_duration(pull_started.elapsed());
                    self.container_event(
                        init,
                        &record.name,
                        Kind::Normal,
                        "Pulled",
                        format!(
                            "Successfully pulled image \"{}\" in {took} ({took} including waiting). Image size: 0 bytes.",
                            record.image
                        ),
                    );
                }
                // One copy of the reference per image on the node, shared by the
                // records of its containers.
                let mut images = self.shared.images.lock();
                match images.get(&*record.image) {
                    Some(known) if **known == *image_ref => known.clone(),
                    _ => {
                        let image_ref: std::sync::Arc<str> = image_ref.into();
                        images.insert(record.image.clone(), image_ref.clone());
                        image_ref
                    }
                }
            }
            Err(error) => {
                let previous = self.pulls.get(&record.name).copied();
                self.pulls
                    .insert(&record.name, Backoff::next(previous, now));
                let message = format!("Failed to pull image \"{}\": {error}", record.image);
                self.container_event(init, &record.name, Kind::Warning, "Failed", message.clone());
                self.container_event(
                    init,
                    &record.name,
                    Kind::Warning,
                    "Failed",
                    "Error: ErrImagePull".into(),
                );
                self.record(init, index).waiting = Some(Box::new(("ErrImagePull".into(), message)));
                return;
            }
        };
        // The container's env is made before it is created; a missing ConfigMap, Secret
        // or key, or an env file it cannot read, fails it (`generateContainerConfig` in
        // pkg/kubelet/kuberuntime/kuberuntime_container.go), retried on the next sync.
        let env_files = match self
            .env_inputs(&*runtime, &sandbox, spec_container.as_ref())
            .await
        {
            Ok(values) => values,
            Err(message) => {
                // pkg/kubelet/kuberuntime/kuberuntime_container.go (startContainer).
                self.container_event(
                    init,
                    &record.name,
                    Kind::Warning,
                    "Failed",
                    format!("Error: {message}"),
                );
                let record = self.record(init, index);
                record.waiting = Some(Box::new(("CreateContainerConfigError".into(), message)));
                let name = record.name.clone();
                self.start_failures.insert(
                    &name,
                    Backoff {
                        since: now,
                        delay: SYNC_RETRY,
                    },
                );
                return;
            }
        };
        let ports = spec_container
            .as_ref()
            .and_then(|c| c.ports.as_ref())
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| u16::try_from(p.container_port).ok())
                    .collect()
            })
            .unwrap_or_default();
        let data = match spec_container.as_ref() {
            Some(container) => {
                let wanted = crate::runtime::reads_files(&record.image, &command_line(container));
                ObjectData::read(&self.shared.client, &self.pod, container, wanted).await
            }
            None => ObjectData::default(),
        }
        .with_env_files(env_files);
        let launch = launch(
            &self.pod,
            spec_container.as_ref(),
            &self.pod_ips,
            self.shared.node_ips(),
            &data,
        );
        let fallback_to_logs = spec_container
            .as_ref()
            .and_then(|c| c.termination_message_policy.as_deref())
            == Some("FallbackToLogsOnError");
        let config = ContainerConfig {
            ports,
            command: launch.command,
            env: launch.env,
            termination_message_path: launch.termination_message_path,
            files: launch.files,
            shared_dirs: launch.shared_dirs,
            fallback_to_logs,
            name: record.name.to_string(),
            image: record.image.to_string(),
            kind: record.kind,
            attempt: record.restart_count,
            pod_uid: self.inbox.uid.to_string(),
            pod_namespace: meta.namespace.clone().unwrap_or_default(),
            pod_name: meta.name.clone().unwrap_or_default(),
            hostname: crate::node::container_env::pod_hostname(
                &self.pod,
                self.shared
                    .config
                    .kubelet
                    .has(crate::version::Behaviour::HostnameOverride),
            ),
            annotations: meta.annotations.clone().unwrap_or_default(),
            pod_labels: meta.labels.clone().unwrap_or_default(),
        };
        let started = async {
            let id = runtime
                .create_container(&sandbox, &config)
                .await
                .map_err(|e| ("CreateContainerError", e))?;
            if let Err(error) = runtime.start_container(&id).await {
                // Leave nothing behind: the next attempt creates a fresh container.
                let _ = runtime.remove_container(&id).await;
                return Err(("RunContainerError", error));
            }
            let status = runtime
                .container_status(&id)
                .await
                .map_err(|e| ("RunContainerError", e))?;
            Ok::<_, (&str, crate::Error)>((id, status))
        }
        .await;
        match &started {
            Ok(_) => {
                // startContainer's events, in pkg/kubelet/kuberuntime/kuberuntime_container.go.
                self.container_event(
                    init,
                    &record.name,
                    Kind::Normal,
                    "Created",
                    "Container created".into(),
                );
                self.container_event(
                    init,
                    &record.name,
                    Kind::Normal,
                    "Started",
                    "Container started".into(),
                );
            }
            Err((_, error)) => {
                self.container_event(
                    init,
                    &record.name,
                    Kind::Warning,
                    "Failed",
                    format!("Error: {error}"),
                );
            }
        }
        let record = self.record(init, index);
        record.image_ref = Some(image_ref);
        match started {
            Ok((id, status)) => {
                record.id = Some(id.into());
                record.set_state(Some(status.state));
                record.runtime_ready = status.ready;
                record.waiting = None;
                let name = record.name.clone();
                self.start_failures.remove(&name);
                self.post_start(init, index).await;
            }
            Err((reason, error)) => {
                record.waiting = Some(Box::new((reason.into(), error.to_string())));
                let name = record.name.clone();
                let previous = self.start_failures.get(&name).copied();
                self.start_failures
                    .insert(&name, Backoff::next(previous, now));
            }
        }
    }
}
