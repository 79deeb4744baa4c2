//! The [`RuntimeService`] the fake is: each call is recorded, may fail on script, and
//! works on the in-memory state.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ResourceRequirements;
use tokio::sync::broadcast;

use super::FakeRuntime;
use super::RuntimeMethod as Method;
use super::held::Held;
use super::ids::{IdKey, image_ref};
use super::ips::{allocate_ip, parse_cidr, release_ip, set_pod_cidr};
use super::logs::generated_logs;
use super::pulls::planned_pull;
use super::state::{Container, Sandbox};
use super::steps::behavior_of;
use super::streaming::{FakeAttach, FakeShell, echo_connection};
use crate::error::{Error, Result};
use crate::runtime::HeldState;
use crate::runtime::RuntimeService;
use crate::runtime::probe::{ProbeAction, ProbeReport};
use crate::runtime::streaming::{PortStream, Process};
use crate::runtime::types::{
    ContainerConfig, ContainerEvent, ContainerStatus, LogLine, PodAction, PodSandboxConfig,
    PodSandboxStatus, RuntimeVersion, SandboxState,
};

#[async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        let _state = self.enter(Method::Version, "")?;
        Ok(RuntimeVersion {
            name: "hollow".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    async fn update_pod_cidr(&self, cidr: &str) -> Result<()> {
        let mut state = self.enter(Method::UpdatePodCidr, cidr)?;
        let parsed = parse_cidr(cidr)?;
        set_pod_cidr(&mut state, parsed);
        Ok(())
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let mut state = self.enter(
            Method::RunPodSandbox,
            format!("{}/{}", config.namespace, config.name),
        )?;
        let ip = if config.host_network {
            None
        } else {
            Some(allocate_ip(&mut state)?)
        };
        let key = IdKey::new();
        state.sandboxes.insert(
            key,
            Sandbox {
                state: SandboxState::Ready,
                ip,
            },
        );
        Ok(key.id())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus> {
        let state = self.enter(Method::PodSandboxStatus, sandbox_id)?;
        let sandbox = state
            .sandboxes
            .get(sandbox_id)
            .ok_or_else(|| Error::not_found("sandbox", sandbox_id))?;
        Ok(PodSandboxStatus {
            id: sandbox_id.to_string(),
            state: sandbox.state,
            ips: sandbox.ip.map(IpAddr::V4).into_iter().collect(),
        })
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let events = {
            let mut state = self.enter(Method::StopPodSandbox, sandbox_id)?;
            let (Some(sandbox_key), Some(sandbox)) =
                (IdKey::of(sandbox_id), state.sandboxes.get_mut(sandbox_id))
            else {
                return Ok(());
            };
            sandbox.state = SandboxState::NotReady;
            let mut events = Vec::new();
            for (key, container) in state.containers.iter_mut() {
                if container.sandbox == sandbox_key {
                    events.extend(container.exit(&key.id(), 0, "Completed"));
                }
            }
            events
        };
        for event in events {
            self.inner.emit(event);
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let mut state = self.enter(Method::RemovePodSandbox, sandbox_id)?;
        if let Some(sandbox) = state.sandboxes.remove(sandbox_id) {
            if let Some(ip) = sandbox.ip {
                release_ip(&mut state, ip);
            }
            if let Some(sandbox_key) = IdKey::of(sandbox_id) {
                state.containers.retain(|_, c| c.sandbox != sandbox_key);
            }
        }
        Ok(())
    }

    async fn pull_image(&self, image: &str, pod: &PodSandboxConfig) -> Result<String> {
        let (wait, failure) = {
            let state = self.enter(Method::PullImage, image)?;
            planned_pull(&state, image, pod)?
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        match failure {
            Some(message) => Err(Error::InvalidInput(message)),
            None => Ok(image_ref(image)),
        }
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let mut state = self.enter(
            Method::CreateContainer,
            format!("{sandbox_id}/{}", config.name),
        )?;
        let (Some(sandbox_key), Some(sandbox)) =
            (IdKey::of(sandbox_id), state.sandboxes.get(sandbox_id))
        else {
            return Err(Error::not_found("sandbox", sandbox_id));
        };
        if sandbox.state != SandboxState::Ready {
            return Err(Error::InvalidInput(format!(
                "sandbox {sandbox_id} is not ready"
            )));
        }
        let key = IdKey::new();
        let mut config = config.clone();
        if !config.shared_dirs.is_empty() {
            // The pod's other containers' files in the emptyDir volumes it mounts.
            let (shared, _) = state.shared_files(sandbox_key, &config.shared_dirs, key);
            config.files.extend(shared);
        }
        state.containers.insert(
            key,
            Box::new(Container {
                held: Held::Full(Box::new(config)),
                sandbox: sandbox_key,
                state: HeldState::Created(SystemTime::now()),
                ready: None,
                files_diff: None,
                exit_at: None,
            }),
        );
        Ok(key.id())
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        let (behavior, event) = {
            let mut state = self.enter(Method::StartContainer, container_id)?;
            let script = state.behavior.clone();
            let lifecycle = state.lifecycle.clone();
            let container = state
                .containers
                .get_mut(container_id)
                .ok_or_else(|| Error::not_found("container", container_id))?;
            if !matches!(container.state, HeldState::Created(_)) {
                return Err(Error::InvalidInput(format!(
                    "container {container_id} was started before"
                )));
            }
            let behavior = behavior_of(
                &container.held.config(),
                script.as_ref(),
                lifecycle.as_deref(),
            )?;
            container.state = HeldState::Running(SystemTime::now());
            if lifecycle.is_none() {
                // Without a lifecycle (whose deletion rules match them when the
                // container stops), the pod's labels and annotations are read only
                // here; hollow's own annotations are read again (its logs).
                // A plain container then keeps only what it shows.
                if let Held::Full(config) = &mut container.held {
                    config.pod_labels = BTreeMap::new();
                    config.annotations = std::mem::take(&mut config.annotations)
                        .into_iter()
                        .filter(|(key, _)| crate::annotations::ALL.contains(&key.as_str()))
                        .collect();
                }
                container.held.slim();
            }
            (behavior, container.event(container_id))
        };
        self.inner.emit(event);
        let (delay, steps) = behavior.into_script();
        self.play(container_id.to_string(), delay, steps);
        Ok(())
    }

    async fn update_container_resources(
        &self,
        container_id: &str,
        _resources: &ResourceRequirements,
    ) -> Result<()> {
        let state = self.enter(Method::UpdateContainerResources, container_id)?;
        let container = state
            .containers
            .get(container_id)
            .ok_or_else(|| Error::not_found("container", container_id))?;
        if !matches!(container.state, HeldState::Running(_)) {
            return Err(Error::InvalidInput(format!(
                "container {container_id} is not running"
            )));
        }
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<()> {
        drop(self.enter(Method::StopContainer, container_id)?);
        let code = if timeout.is_zero() {
            0
        } else {
            self.stop_gracefully(container_id, timeout).await
        };
        let event = {
            let mut state = self.lock();
            let container = state
                .containers
                .get_mut(container_id)
                .ok_or_else(|| Error::not_found("container", container_id))?;
            let reason = if code == 0 { "Completed" } else { "Error" };
            container.exit(container_id, code, reason)
        };
        if let Some(event) = event {
            self.inner.emit(event);
        }
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        let mut state = self.enter(Method::RemoveContainer, container_id)?;
        state.containers.remove(container_id);
        Ok(())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        let state = self.enter(Method::ContainerStatus, container_id)?;
        state
            .containers
            .get(container_id)
            .map(|container| container.status(container_id))
            .ok_or_else(|| Error::not_found("container", container_id))
    }

    async fn list_containers<'a>(
        &self,
        sandbox_id: Option<&'a str>,
    ) -> Result<Vec<ContainerStatus>> {
        let state = self.enter(Method::ListContainers, sandbox_id.unwrap_or_default())?;
        Ok(state
            .containers
            .iter()
            .filter(|(_, c)| sandbox_id.is_none_or(|sandbox| c.sandbox.id() == sandbox))
            .map(|(key, c)| c.status(&key.id()))
            .collect())
    }

    async fn container_logs(
        &self,
        container_id: &str,
        tail: Option<usize>,
    ) -> Result<Vec<LogLine>> {
        let state = self.enter(Method::ContainerLogs, container_id)?;
        let container = state
            .containers
            .get(container_id)
            .ok_or_else(|| Error::not_found("container", container_id))?;
        let lines = generated_logs(container, SystemTime::now());
        let skip = tail.map_or(0, |tail| lines.len().saturating_sub(tail));
        Ok(lines.into_iter().skip(skip).collect())
    }

    async fn exec(
        &self,
        container_id: &str,
        command: &[String],
        _tty: bool,
    ) -> Result<Box<dyn Process>> {
        let state = self.enter(Method::Exec, container_id)?;
        if state.streaming_disabled {
            return Err(Error::Unsupported("exec"));
        }
        state.running_container(container_id)?;
        Ok(Box::new(FakeShell {
            runtime: self.clone(),
            container_id: container_id.to_string(),
            command: command.to_vec(),
        }))
    }

    async fn probe(&self, container_id: &str, action: &ProbeAction) -> Result<ProbeReport> {
        drop(self.enter(Method::Probe, container_id)?);
        self.probe_inside(container_id, action)
    }

    async fn attach(&self, container_id: &str, _tty: bool) -> Result<Box<dyn Process>> {
        let state = self.enter(Method::Attach, container_id)?;
        if state.streaming_disabled {
            return Err(Error::Unsupported("attach"));
        }
        state.running_container(container_id)?;
        Ok(Box::new(FakeAttach {
            runtime: self.clone(),
            container_id: container_id.to_string(),
        }))
    }

    async fn volume_file(
        &self,
        sandbox_id: &str,
        volume: &str,
        path: &str,
    ) -> Result<Option<String>> {
        let state = self.enter(Method::VolumeFile, sandbox_id)?;
        let key = IdKey::of(sandbox_id)
            .filter(|_| state.sandboxes.contains_key(sandbox_id))
            .ok_or_else(|| Error::not_found("sandbox", sandbox_id))?;
        // What the pod's containers wrote where they mount the volume, as the others
        // see it (pod_files).
        let (files, _) = state.shared_files(key, &[(volume.to_string(), String::new())], None);
        let wanted = format!("/{}", path.trim_start_matches('/'));
        Ok(files
            .into_iter()
            .find(|(at, _)| *at == wanted)
            .map(|(_, text)| text))
    }

    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<Box<dyn PortStream>> {
        let state = self.enter(Method::PortForward, sandbox_id)?;
        if state.streaming_disabled {
            return Err(Error::Unsupported("port forward"));
        }
        if !state.sandboxes.contains_key(sandbox_id) {
            return Err(Error::not_found("sandbox", sandbox_id));
        }
        let listening = state.containers.values().any(|c| {
            c.sandbox.id() == sandbox_id
                && matches!(c.state, HeldState::Running(_))
                && c.held.ports().contains(&port)
        });
        if !listening {
            return Err(Error::InvalidInput(format!(
                "failed to connect to localhost:{port} inside the pod's network: \
                 connection refused (no running container declares port {port})"
            )));
        }
        Ok(echo_connection())
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<ContainerEvent>> {
        Some(self.inner.subscribe_events())
    }

    fn subscribe_actions(&self) -> Option<broadcast::Receiver<PodAction>> {
        Some(self.inner.subscribe_actions())
    }
}
