//! The container runtime a hollow node drives, shaped like the CRI's runtime service.
//!
//! A runtime answers "what happened to this container" (created, running since t,
//! exited with code c at t, failed to pull); the node engine turns those facts into the
//! pod status a kubelet writes. So any runtime, [`FakeRuntime`] or your own, gets
//! kubelet-exact statuses.
//!
//! ```
//! use std::sync::Arc;
//! use hollow_core::runtime::{FakeRuntime, RuntimeService};
//!
//! let fake = FakeRuntime::default();
//! let runtime: Arc<dyn RuntimeService> = Arc::new(fake.clone());
//! // hand `runtime` to a hollow node, keep `fake` to assert on its calls
//! assert!(fake.calls().is_empty());
//! # drop(runtime);
//! ```

mod fake;
mod held_state;
mod probe;
mod streaming;
mod types;

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ResourceRequirements;
use tokio::sync::broadcast;

use crate::error::{Error, Result};

pub use fake::annotations;
pub use fake::{Behavior, ExecOutput, FakeRuntime, RuntimeCall, RuntimeMethod};
pub(crate) use fake::{reads_files, runs_in_userland};
pub(crate) use held_state::HeldState;
pub use probe::{ProbeAction, ProbeOutcome, ProbeReport};
pub use streaming::{Input, Output, PortStream, Process, ProcessIo, TerminalSize};
pub use types::{
    ContainerConfig, ContainerEvent, ContainerState, ContainerStatus, LogLine, PodAction,
    PodActionKind, PodSandboxConfig, PodSandboxStatus, RuntimeVersion, SandboxState,
};

/// Pod sandboxes and containers, as the CRI's `RuntimeService` and `ImageService`
/// offer them. Object safe: store it as `Arc<dyn RuntimeService>`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RuntimeService: Send + Sync + 'static {
    /// The runtime's name and version, e.g. `("containerd", "2.1.0")`; the name is the
    /// scheme of container IDs (`<name>://<id>`).
    async fn version(&self) -> Result<RuntimeVersion>;

    /// Sets the pod CIDR the runtime's network assigns pod IPs from.
    async fn update_pod_cidr(&self, _cidr: &str) -> Result<()> {
        Ok(())
    }

    /// Creates and starts a pod sandbox; returns its id.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String>;

    /// The sandbox's state and IP addresses.
    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus>;

    /// Stops the sandbox and every container in it. Stopping a stopped sandbox is fine.
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()>;

    /// Removes the sandbox and its containers. Removing a missing sandbox is fine.
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()>;

    /// Pulls an image for a pod; returns its reference by digest (the pod status's
    /// `imageID`). Any error shows as ErrImagePull, then ImagePullBackOff.
    async fn pull_image(&self, image: &str, pod: &PodSandboxConfig) -> Result<String>;

    /// Creates a container in a sandbox; returns its id.
    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String>;

    /// Starts a created container.
    async fn start_container(&self, container_id: &str) -> Result<()>;

    /// Applies new CPU and memory requests and limits to a running container (an
    /// in-place pod resize, the CRI's `UpdateContainerResources`). The default applies
    /// nothing and succeeds, as a runtime without cgroups would.
    async fn update_container_resources(
        &self,
        _container_id: &str,
        _resources: &ResourceRequirements,
    ) -> Result<()> {
        Ok(())
    }

    /// Stops a container, giving it `timeout` to exit before it is killed.
    async fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<()>;

    /// Removes a container.
    async fn remove_container(&self, container_id: &str) -> Result<()>;

    /// A container's status.
    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus>;

    /// The containers of one sandbox, or of all sandboxes.
    async fn list_containers<'a>(
        &self,
        sandbox_id: Option<&'a str>,
    ) -> Result<Vec<ContainerStatus>>;

    /// The log lines of a container, oldest first (`tail` lines from the end when
    /// given). A stopped container's log stays readable until it is removed.
    async fn container_logs(
        &self,
        _container_id: &str,
        _tail: Option<usize>,
    ) -> Result<Vec<LogLine>> {
        Err(Error::Unsupported("container logs"))
    }

    /// Prepares `command` to run in a running container (`kubectl exec`); the kubelet
    /// API then runs it with the client's streams. The default answers
    /// [`Error::Unsupported`], which the client sees as "exec is not supported by this
    /// runtime".
    async fn exec(
        &self,
        _container_id: &str,
        _command: &[String],
        _tty: bool,
    ) -> Result<Box<dyn Process>> {
        Err(Error::Unsupported("exec"))
    }

    /// Runs one probe of a running container, as the kubelet's prober does (exec
    /// probes in the container, network probes against the pod). The default answers
    /// [`ProbeOutcome::Unknown`]: the engine then counts the probe as succeeding once
    /// its initial delay has passed.
    async fn probe(&self, _container_id: &str, _action: &ProbeAction) -> Result<ProbeReport> {
        Ok(ProbeReport::unknown())
    }

    /// Prepares an attach to a running container's main process (`kubectl attach`).
    /// The default answers [`Error::Unsupported`].
    async fn attach(&self, _container_id: &str, _tty: bool) -> Result<Box<dyn Process>> {
        Err(Error::Unsupported("attach"))
    }

    /// Opens a connection to `port` in a sandbox's network (`kubectl port-forward`).
    /// Nothing listening there is an error, as a refused connection is. The default
    /// answers [`Error::Unsupported`].
    async fn port_forward(&self, _sandbox_id: &str, _port: u16) -> Result<Box<dyn PortStream>> {
        Err(Error::Unsupported("port forward"))
    }

    /// A file in the `emptyDir` volume `volume` of a sandbox's pod, as its containers
    /// left it (`path` relative to the volume); `Ok(None)` when there is none. The
    /// engine reads one for an environment variable's `fileKeyRef`, as the kubelet
    /// reads the volume's directory on the host. The default answers
    /// [`Error::Unsupported`]: such variables then fail their container's start, as a
    /// file the kubelet cannot read does.
    async fn volume_file(
        &self,
        _sandbox_id: &str,
        _volume: &str,
        _path: &str,
    ) -> Result<Option<String>> {
        Err(Error::Unsupported("volume files"))
    }

    /// A stream of container events (started, exited), so the engine need not poll.
    /// Runtimes without one return `None` and are relisted periodically instead. A node
    /// subscribes (to both streams) once, when it gets its first pod: an idle node
    /// listens to nothing.
    fn subscribe(&self) -> Option<broadcast::Receiver<ContainerEvent>> {
        None
    }

    /// A stream of [`PodAction`]s (record an Event, remove finalizers, delete) the
    /// runtime asks of the engine; `None` (the default) when it asks none.
    fn subscribe_actions(&self) -> Option<broadcast::Receiver<PodAction>> {
        None
    }
}

#[cfg(all(test, feature = "mock"))]
mod mock_tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn mocks_stand_in_for_the_trait_objects() {
        let mut mock = MockRuntimeService::new();
        mock.expect_version().times(1).returning(|| {
            Ok(RuntimeVersion {
                name: "mocked".into(),
                version: "1".into(),
            })
        });
        mock.expect_pull_image()
            .returning(|image, _| Err(Error::InvalidInput(format!("{image} is not allowed"))));
        let runtime: Arc<dyn RuntimeService> = Arc::new(mock);
        assert_eq!(runtime.version().await.unwrap().name, "mocked");
        assert!(matches!(
            runtime.pull_image("x", &PodSandboxConfig::default()).await,
            Err(Error::InvalidInput(_))
        ));
    }
}
