//! The values that cross the [`RuntimeService`](super::RuntimeService) boundary.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use crate::pod::ContainerKind;

/// A runtime's name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// The runtime's name, the scheme of its container IDs (e.g. `containerd`).
    pub name: String,
    /// Its version (e.g. `2.1.0`).
    pub version: String,
}

/// What the engine asks of a pod sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandboxConfig {
    /// The pod's name.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's UID.
    pub uid: String,
    /// Whether the pod uses the node's network (then it takes the node's IPs).
    pub host_network: bool,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations (a runtime may read behaviour from them).
    pub annotations: BTreeMap<String, String>,
}

/// Whether a sandbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// The sandbox runs.
    Ready,
    /// The sandbox was stopped.
    NotReady,
}

/// A sandbox's state and network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandboxStatus {
    /// The sandbox id.
    pub id: String,
    /// Whether it runs.
    pub state: SandboxState,
    /// Its IP addresses (empty for host-network pods: they take the node's).
    pub ips: Vec<IpAddr>,
}

/// What the engine asks of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// The container's name in the pod.
    pub name: String,
    /// The image as the pod spec names it.
    pub image: String,
    /// Init, sidecar or regular.
    pub kind: ContainerKind,
    /// How many times this container was started before (its restart count).
    pub attempt: u32,
    /// The pod's UID.
    pub pod_uid: String,
    /// The pod's namespace.
    pub pod_namespace: String,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's hostname where it is not its name: `spec.hostname`, or (from 1.35)
    /// `spec.hostnameOverride`, cut to 63 characters as the kubelet's
    /// `GeneratePodHostNameAndDomain` has it (pkg/kubelet/kubelet_pods.go).
    pub hostname: Option<String>,
    /// The container's command and arguments.
    pub command: Vec<String>,
    /// The container's environment, by name; the engine fills it only for a command
    /// the fake runtime's userland runs (a shell's `-c` script or a program it knows),
    /// as nothing else reads it.
    pub env: Vec<(String, String)>,
    /// Where the container writes its termination message (the pod spec's
    /// `terminationMessagePath`), when it is not the default `/dev/termination-log`
    /// (`None`); the engine sets it for a command the userland runs (only its
    /// containers write files).
    pub termination_message_path: Option<String>,
    /// The files the container's volumes hold (absolute path, text; a path ending in
    /// `/` is an empty directory), as far as the engine makes them (downward API,
    /// ConfigMap and Secret volumes, `emptyDir` mount points), for a container whose
    /// files the fake reads (its userland runs the command, or a well-known web server
    /// serves them).
    pub files: Vec<(String, String)>,
    /// The `emptyDir` volumes the container mounts, by volume name and mount path (for
    /// the same containers as `files`): a fake shares their files between the pod's
    /// containers.
    pub shared_dirs: Vec<(String, String)>,
    /// `terminationMessagePolicy: FallbackToLogsOnError`: a container that fails with
    /// no message gets the tail of its log as one.
    pub fallback_to_logs: bool,
    /// The ports the container declares (what a fake may pretend listens).
    pub ports: Vec<u16>,
    /// The pod's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The pod's labels.
    pub pod_labels: BTreeMap<String, String>,
}

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created {
        /// When it was created.
        created_at: SystemTime,
    },
    /// Running.
    Running {
        /// When it started.
        started_at: SystemTime,
    },
    /// Exited.
    Exited {
        /// When it started.
        started_at: SystemTime,
        /// When it exited.
        finished_at: SystemTime,
        /// Its exit code.
        exit_code: i32,
        /// Why (`Completed`, `Error`, `OOMKilled`, ...).
        reason: String,
        /// A message, if any.
        message: Option<String>,
    },
}

/// A container's status as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The container id (without the runtime scheme).
    pub id: String,
    /// The sandbox it belongs to.
    pub sandbox_id: String,
    /// The UID of the pod it belongs to.
    pub pod_uid: String,
    /// Its name in the pod.
    pub name: String,
    /// The attempt it was created for.
    pub attempt: u32,
    /// The image as the pod spec names it.
    pub image: String,
    /// The image's reference by digest.
    pub image_ref: String,
    /// Its state.
    pub state: ContainerState,
    /// Its readiness as the runtime scripts it (`None`: the engine decides from the
    /// readiness probe's timing, as for a probe that succeeds).
    pub ready: Option<bool>,
}

/// A change the runtime pushes to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The container.
    pub container_id: String,
    /// The UID of the pod it belongs to.
    pub pod_uid: String,
    /// Its new state.
    pub state: ContainerState,
}

/// Something a runtime asks the engine to do to a pod's API object, as a test script
/// or an operator would: fakes use it to play lifecycle steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAction {
    /// The pod's UID (the engine acts only on its own pods, and only on this UID).
    pub pod_uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// What to do.
    pub kind: PodActionKind,
}

/// What a [`PodAction`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodActionKind {
    /// Record an Event about the pod, from the kubelet of its node.
    Event(crate::lifecycle::EventStep),
    /// Remove the pod's finalizers.
    RemoveFinalizers,
    /// Delete the pod gracefully.
    Delete,
}

/// One line of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written.
    pub time: SystemTime,
    /// The text, without a trailing newline.
    pub text: String,
}
