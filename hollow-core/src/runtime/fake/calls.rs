//! What the fake records of a call ([`RuntimeCall`]) and scripts faults for
//! ([`RuntimeMethod`]).

/// A method of [`RuntimeService`](crate::runtime::RuntimeService), to script faults
/// with [`FakeRuntime::inject_fault`](super::FakeRuntime::inject_fault) and count calls
/// with [`FakeRuntime::calls_to`](super::FakeRuntime::calls_to).
///
/// ```
/// use hollow_core::runtime::RuntimeMethod;
///
/// let method = RuntimeMethod::PullImage;
/// assert_eq!(method.as_str(), "pull_image");
/// assert_eq!(method.to_string(), "pull_image");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuntimeMethod {
    /// `version`.
    Version,
    /// `update_pod_cidr`.
    UpdatePodCidr,
    /// `run_pod_sandbox`.
    RunPodSandbox,
    /// `pod_sandbox_status`.
    PodSandboxStatus,
    /// `stop_pod_sandbox`.
    StopPodSandbox,
    /// `remove_pod_sandbox`.
    RemovePodSandbox,
    /// `pull_image`.
    PullImage,
    /// `create_container`.
    CreateContainer,
    /// `start_container`.
    StartContainer,
    /// `update_container_resources`.
    UpdateContainerResources,
    /// `stop_container`.
    StopContainer,
    /// `remove_container`.
    RemoveContainer,
    /// `container_status`.
    ContainerStatus,
    /// `list_containers`.
    ListContainers,
    /// `container_logs`.
    ContainerLogs,
    /// `exec`.
    Exec,
    /// `probe`.
    Probe,
    /// `attach`.
    Attach,
    /// `port_forward`.
    PortForward,
    /// `volume_file`.
    VolumeFile,
    /// `subscribe` (the fake neither records nor fails it).
    Subscribe,
    /// `subscribe_actions` (the fake neither records nor fails it).
    SubscribeActions,
}

impl RuntimeMethod {
    /// The trait method's name, e.g. `"start_container"`.
    ///
    /// ```
    /// use hollow_core::runtime::RuntimeMethod;
    ///
    /// assert_eq!(RuntimeMethod::StartContainer.as_str(), "start_container");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            RuntimeMethod::Version => "version",
            RuntimeMethod::UpdatePodCidr => "update_pod_cidr",
            RuntimeMethod::RunPodSandbox => "run_pod_sandbox",
            RuntimeMethod::PodSandboxStatus => "pod_sandbox_status",
            RuntimeMethod::StopPodSandbox => "stop_pod_sandbox",
            RuntimeMethod::RemovePodSandbox => "remove_pod_sandbox",
            RuntimeMethod::PullImage => "pull_image",
            RuntimeMethod::CreateContainer => "create_container",
            RuntimeMethod::StartContainer => "start_container",
            RuntimeMethod::UpdateContainerResources => "update_container_resources",
            RuntimeMethod::StopContainer => "stop_container",
            RuntimeMethod::RemoveContainer => "remove_container",
            RuntimeMethod::ContainerStatus => "container_status",
            RuntimeMethod::ListContainers => "list_containers",
            RuntimeMethod::ContainerLogs => "container_logs",
            RuntimeMethod::Exec => "exec",
            RuntimeMethod::Probe => "probe",
            RuntimeMethod::Attach => "attach",
            RuntimeMethod::PortForward => "port_forward",
            RuntimeMethod::VolumeFile => "volume_file",
            RuntimeMethod::Subscribe => "subscribe",
            RuntimeMethod::SubscribeActions => "subscribe_actions",
        }
    }
}

impl std::fmt::Display for RuntimeMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded call: the method and its main argument.
///
/// ```
/// use hollow_core::runtime::{FakeRuntime, RuntimeMethod, RuntimeService};
///
/// # tokio_test::block_on(async {
/// let fake = FakeRuntime::default();
/// fake.update_pod_cidr("10.0.0.0/24").await?;
/// let call = &fake.calls()[0];
/// assert_eq!((call.method, call.arg.as_str()), (RuntimeMethod::UpdatePodCidr, "10.0.0.0/24"));
/// # Ok::<(), hollow_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCall {
    /// The trait method, e.g. [`RuntimeMethod::StartContainer`].
    pub method: RuntimeMethod,
    /// Its main argument (an id, an image, `namespace/name` of a pod).
    pub arg: String,
}
