//! The Node status a kubelet writes, computed from a [`NodeStatusReport`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::cadvisor::MachineInfo;
use crate::lifecycle::ConditionStatus;
use crate::node_status::{ConditionOverride, NodeStatusReport};

/// The resources a kubelet must report before it calls itself Ready.
const REQUIRED_RESOURCES: [&str; 4] = ["cpu", "memory", "pods", "ephemeral-storage"];

/// What the status is computed from besides the provider's report.
#[derive(Debug, Clone)]
pub(crate) struct StatusInputs<'a> {
    pub report: &'a NodeStatusReport,
    pub configured_addresses: &'a [NodeAddress],
    pub capacity_overrides:
        &'a BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    pub allocatable_overrides:
        &'a BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    pub machine: &'a MachineInfo,
    pub runtime_version: &'a str,
    pub kubelet_version: &'a str,
    /// Whether `nodeInfo.runningInUserNamespace` is reported (from 1.37; only with a
    /// `k8s-openapi` that has the field).
    pub reports_user_namespace: bool,
    pub kubelet_port: u16,
    /// `Err(message)` when the node's health check failed.
    pub health: Result<(), String>,
}

/// One row of the kubelet's condition table.
fn condition(type_: &str, status: bool, reason: &str, message: &str) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

/// The node status, with heartbeat and transition times left unset (see [`stamp`]).
pub(crate) fn compute(inputs: &StatusInputs<'_>) -> NodeStatus {
    let mut capacity = inputs.report.capacity.clone();
    capacity.extend(inputs.capacity_overrides.clone());
    let mut allocatable = if inputs.report.allocatable.is_empty() {
        capacity.clone()
    } else {
        inputs.report.allocatable.clone()
    };
    for (name, quantity) in inputs.capacity_overrides {
        allocatable
            .entry(name.clone())
            .or_insert_with(|| quantity.clone());
    }
    allocatable.extend(inputs.allocatable_overrides.clone());

    let pressure = inputs.report.pressure;
    let missing: Vec<&str> = REQUIRED_RESOURCES
        .into_iter()
        .filter(|resource| !capacity.contains_key(*resource))
        .collect();
    let ready = match (&inputs.health, missing.is_empty()) {
        (Err(message), _) => condition("Ready", false, "KubeletNotReady", message),
        (Ok(()), false) => condition(
            "Ready",
            false,
            "KubeletNotReady",
            &format!(
                "missing node capacity for resources: {}",
                missing.join(", ")
            ),
        ),
        (Ok(()), true) => condition(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    };
    let mut conditions = vec![
        if pressure.memory {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if pressure.disk {
            condition(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            condition(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        if pressure.pid {
            condition(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            condition(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
        ready,
    ];
    apply_overrides(&mut conditions, &inputs.report.conditions);
    let addresses = if inputs.report.addresses.is_empty() {
        inputs.configured_addresses.to_vec()
    } else {
        inputs.report.addresses.clone()
    };
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions),
        addresses: Some(addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(inputs.kubelet_port),
            }),
        }),
        node_info: Some(node_info(inputs)),
        images: (!inputs.report.images.is_empty()).then(|| inputs.report.images.clone()),
        ..Default::default()
    }
}

/// The kubelet's MachineInfo setter's `nodeInfo` (pkg/kubelet/nodestatus/setters.go).
fn node_info(inputs: &StatusInputs<'_>) -> NodeSystemInfo {
    #[allow(unused_mut)]
    let mut info = NodeSystemInfo {
        machine_id: inputs.machine.machine_id.clone(),
        system_uuid: inputs.machine.system_uuid.clone(),
        boot_id: inputs.machine.boot_id.clone(),
        kernel_version: "6.1.0-hollow-amd64".into(),
        os_image: "Debian GNU/Linux 12 (bookworm)".into(),
        container_runtime_version: inputs.runtime_version.into(),
        kubelet_version: inputs.kubelet_version.into(),
        operating_system: "linux".into(),
        architecture: "amd64".into(),
        ..Default::default()
    };
    let _reported = inputs.reports_user_namespace;
    k8s_openapi::k8s_if_ge_1_37! {
        if _reported {
            info.running_in_user_namespace = Some(false);
        }
    }
    info
}

/// Images a Node lists at most (the kubelet's `nodeStatusMaxImages` default).
const MAX_IMAGES: usize = 50;

/// The Node's `status.images` from the images its pods pulled (image name to the
/// runtime's reference by digest), as the kubelet's Images setter lists the image
/// manager's list (pkg/kubelet/nodestatus/setters.go): each image's digest reference,
/// then its tag; largest first, ties by ID descending (`sliceutils.ByImageSize`), which
/// here is the digest reference; at most [`MAX_IMAGES`]. A fake image has no size, so
/// `sizeBytes` is left out, as the kubelet leaves out a size of 0.
pub(crate) fn pulled_images(
    pulled: &std::collections::HashMap<std::sync::Arc<str>, std::sync::Arc<str>>,
) -> Vec<k8s_openapi::api::core::v1::ContainerImage> {
    let mut images: Vec<(&str, &str)> = pulled
        .iter()
        .map(|(image, reference)| (&**reference, &**image))
        .collect();
    images.sort_unstable_by(|a, b| b.cmp(a));
    images
        .into_iter()
        .take(MAX_IMAGES)
        .map(
            |(reference, image)| k8s_openapi::api::core::v1::ContainerImage {
                names: Some(if reference == image {
                    vec![image.to_string()]
                } else {
                    vec![reference.to_string(), image.to_string()]
                }),
                size_bytes: None,
            },
        )
        .collect()
}

/// The kubelet's wording for a condition it owns, else `Hollow` and an empty message.
fn default_wording(type_: &str, status: ConditionStatus) -> (&'static str, &'static str) {
    use ConditionStatus::{False, True};
    match (type_, status) {
        ("MemoryPressure", True) => (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        ),
        ("MemoryPressure", False) => (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        ("DiskPressure", True) => ("KubeletHasDiskPressure", "kubelet has disk pressure"),
        ("DiskPressure", False) => ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", True) => (
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        ),
        ("PIDPressure", False) => (
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        ("Ready", True) => ("KubeletReady", "kubelet is posting ready status"),
        ("Ready", _) => (
            "KubeletNotReady",
            "the hollow lifecycle set the node not ready",
        ),
        ("NetworkUnavailable", True) => ("NoRouteCreated", "Node created without a route"),
        ("NetworkUnavailable", False) => ("RouteCreated", "RouteController created a route"),
        _ => ("Hollow", ""),
    }
}

/// Replaces conditions of the overrides' types, and adds the others before Ready.
fn apply_overrides(conditions: &mut Vec<NodeCondition>, overrides: &[ConditionOverride]) {
    for wanted in overrides {
        let (reason, message) = default_wording(&wanted.type_, wanted.status);
        let condition = NodeCondition {
            type_: wanted.type_.clone(),
            status: wanted.status.as_str().into(),
            reason: Some(wanted.reason.clone().unwrap_or_else(|| reason.into())),
            message: Some(wanted.message.clone().unwrap_or_else(|| message.into())),
            ..Default::default()
        };
        if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == wanted.type_) {
            *existing = condition;
        } else {
            let before_ready = conditions
                .iter()
                .position(|c| c.type_ == "Ready")
                .unwrap_or(conditions.len());
            conditions.insert(before_ready, condition);
        }
    }
}

/// What the heartbeat keeps of the status it last wrote: a digest, to tell whether a
/// new status differs, and each condition's status and transition time, to stamp the
/// next one. A few hundred bytes rather than the 2 KiB of the status itself, for every
/// node all its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    digest: u64,
    conditions: Box<[WrittenCondition]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct WrittenCondition {
    /// Digest of the condition's type.
    type_: u64,
    /// Digest of its status.
    status: u64,
    since: Option<Timestamp>,
}

fn digest_of(value: &(impl std::hash::Hash + ?Sized)) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// A digest of everything in a status but its conditions' times.
fn status_digest(status: &NodeStatus) -> u64 {
    let mut stripped = status.clone();
    for condition in stripped.conditions.iter_mut().flatten() {
        condition.last_heartbeat_time = None;
        condition.last_transition_time = None;
    }
    // The status types implement neither Hash nor Eq; their JSON is canonical (fields
    // in a fixed order, maps sorted).
    serde_json::to_vec(&stripped).map_or(0, |json| digest_of(&json[..]))
}

impl Written {
    /// Whether the written status had a condition of `type_` with `status`.
    pub(crate) fn had_condition(&self, type_: &str, status: &str) -> bool {
        let (type_, status) = (digest_of(type_), digest_of(status));
        self.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status)
    }

    /// What to keep of a stamped status that was written.
    pub(crate) fn of(status: &NodeStatus) -> Self {
        let conditions = status
            .conditions
            .iter()
            .flatten()
            .map(|c| WrittenCondition {
                type_: digest_of(c.type_.as_str()),
                status: digest_of(c.status.as_str()),
                since: c.last_transition_time.as_ref().map(|t| t.0),
            })
            .collect();
        Self {
            digest: status_digest(status),
            conditions,
        }
    }

    /// Whether the API server's Ready condition, as [`ready_digest`] of its status,
    /// says something else than the written one.
    pub(crate) fn ready_differs(&self, server_ready: u64) -> bool {
        let ready = digest_of("Ready");
        self.conditions
            .iter()
            .find(|c| c.type_ == ready)
            .is_some_and(|c| c.status != server_ready)
    }

    /// Whether `status` differs from the written one in anything but condition times.
    pub(crate) fn differs(&self, status: &NodeStatus) -> bool {
        status_digest(status) != self.digest
    }

    /// When the written condition of this type last changed, if its status was this.
    fn since(&self, type_: &str, status: &str) -> Option<Timestamp> {
        let (type_, status) = (digest_of(type_), digest_of(status));
        self.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .filter(|c| c.status == status)
            .and_then(|c| c.since)
    }
}

/// A digest of the status of the Ready condition among `conditions` (0: none).
pub(crate) fn ready_digest(conditions: &[NodeCondition]) -> u64 {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map_or(0, |c| digest_of(c.status.as_str()))
}

/// Sets every condition's heartbeat to `now`, and its transition time to `now` where
/// its status differs from `previous` (or it is new), else to the previous one.
pub(crate) fn stamp(status: &mut NodeStatus, previous: Option<&Written>, now: Timestamp) {
    for condition in status.conditions.iter_mut().flatten() {
        condition.last_heartbeat_time = Some(Time(now));
        let since = previous.and_then(|p| p.since(&condition.type_, &condition.status));
        condition.last_transition_time = Some(Time(since.unwrap_or(now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_status::Pressure;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn pulled_images_list_digest_then_tag_by_id_descending_at_most_fifty() {
        let mut pulled = std::collections::HashMap::new();
        pulled.insert(
            "busybox:1.36".into(),
            "docker.io/library/busybox@sha256:aa".into(),
        );
        pulled.insert(
            "registry.k8s.io/pause:3.10".into(),
            "registry.k8s.io/pause@sha256:bb".into(),
        );
        let images = pulled_images(&pulled);
        let names: Vec<Vec<String>> = images.iter().map(|i| i.names.clone().unwrap()).collect();
        assert_eq!(
            names,
            [
                vec![
                    "registry.k8s.io/pause@sha256:bb",
                    "registry.k8s.io/pause:3.10"
                ],
                vec!["docker.io/library/busybox@sha256:aa", "busybox:1.36"],
            ]
        );
        assert!(images.iter().all(|i| i.size_bytes.is_none()));
        for n in 0..60 {
            pulled.insert(
                format!("app-{n}:v1").into(),
                format!("app-{n}@sha256:{n}").into(),
            );
        }
        assert_eq!(pulled_images(&pulled).len(), 50);
    }

    fn machine() -> MachineInfo {
        MachineInfo {
            num_cores: 4,
            memory_capacity: 1,
            machine_id: "m".into(),
            system_uuid: "s".into(),
            boot_id: "b".into(),
        }
    }

    fn compute_with(report: &NodeStatusReport, health: Result<(), String>) -> NodeStatus {
        let machine = machine();
        let empty = BTreeMap::new();
        let mut gpu = BTreeMap::new();
        gpu.insert("nvidia.com/gpu".to_string(), Quantity("8".into()));
        compute(&StatusInputs {
            report,
            configured_addresses: &[],
            capacity_overrides: &gpu,
            allocatable_overrides: &empty,
            machine: &machine,
            runtime_version: "hollow://0.1.0",
            kubelet_version: "v1.36.5",
            reports_user_namespace: false,
            kubelet_port: 10250,
            health,
        })
    }

    fn full_report() -> NodeStatusReport {
        NodeStatusReport {
            capacity: crate::node_status::default_capacity(),
            ..Default::default()
        }
    }

    /// Each condition as (type, status, reason).
    fn summary(conditions: &[NodeCondition]) -> Vec<(&str, &str, &str)> {
        conditions
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_deref().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn overrides_replace_or_join_the_kubelet_conditions() {
        let mut report = full_report();
        report.conditions = vec![
            ConditionOverride {
                type_: "MemoryPressure".into(),
                status: ConditionStatus::True,
                reason: None,
                message: None,
            },
            ConditionOverride {
                type_: "NetworkUnavailable".into(),
                status: ConditionStatus::True,
                reason: Some("NoRoute".into()),
                message: Some("cut".into()),
            },
        ];
        let conditions = compute_with(&report, Ok(())).conditions.unwrap();
        assert_eq!(
            summary(&conditions),
            vec![
                ("MemoryPressure", "True", "KubeletHasInsufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("NetworkUnavailable", "True", "NoRoute"),
                ("Ready", "True", "KubeletReady"),
            ]
        );
    }

    #[test]
    fn a_healthy_node_has_the_kubelet_conditions_ready_last() {
        let status = compute_with(&full_report(), Ok(()));
        let conditions = status.conditions.unwrap();
        assert_eq!(
            summary(&conditions),
            vec![
                ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("Ready", "True", "KubeletReady"),
            ]
        );
        assert_eq!(status.capacity.unwrap()["nvidia.com/gpu"].0, "8");
        assert_eq!(status.allocatable.unwrap()["nvidia.com/gpu"].0, "8");
    }

    #[test]
    fn missing_capacity_or_failed_health_is_not_ready() {
        let mut report = full_report();
        report.capacity.remove("pods");
        let ready = compute_with(&report, Ok(()))
            .conditions
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("KubeletNotReady"))
        );
        assert!(ready.message.unwrap().contains("pods"));

        let ready = compute_with(&full_report(), Err("runtime down".into()))
            .conditions
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(ready.message.as_deref(), Some("runtime down"));
    }

    #[test]
    fn pressure_flips_the_condition() {
        let mut report = full_report();
        report.pressure = Pressure {
            memory: true,
            ..Default::default()
        };
        let memory = compute_with(&report, Ok(())).conditions.unwrap().remove(0);
        assert_eq!(memory.status, "True");
        assert_eq!(
            memory.reason.as_deref(),
            Some("KubeletHasInsufficientMemory")
        );
    }

    #[test]
    fn transition_times_move_only_on_flips() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let mut first = compute_with(&full_report(), Ok(()));
        stamp(&mut first, None, t0);
        let mut second = compute_with(&full_report(), Err("sick".into()));
        let written = Written::of(&first);
        assert!(written.differs(&second));
        stamp(&mut second, Some(&written), t1);
        let conditions = second.conditions.unwrap();
        let memory = &conditions[0];
        let ready = &conditions[3];
        assert_eq!(memory.last_transition_time, Some(Time(t0)));
        assert_eq!(memory.last_heartbeat_time, Some(Time(t1)));
        assert_eq!(ready.last_transition_time, Some(Time(t1)));
        let mut same = compute_with(&full_report(), Ok(()));
        assert!(!written.differs(&same));
        stamp(&mut same, Some(&written), t1);
        assert!(!written.differs(&same), "times are not part of the digest");
        let ready = &same.conditions.as_ref().unwrap()[3];
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
    }
}
