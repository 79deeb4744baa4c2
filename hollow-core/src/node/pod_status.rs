//! The pod status a kubelet writes, computed from what the runtime says happened to
//! each container (pkg/kubelet/kubelet_pods.go, pkg/kubelet/status/generate.go).

use std::net::IpAddr;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub(crate) use super::container_record::ContainerRecord;
use super::restart::{container_should_restart, pod_policy_restarts};
use super::spec_status;
use crate::pod::ContainerKind;
use crate::runtime::ContainerState;

/// The conditions the kubelet owns, in the order it writes them
/// (`generateAPIPodStatus` in pkg/kubelet/kubelet_pods.go). PodScheduled is among them:
/// the kubelet writes it True for every pod it runs, so a pod bound by `spec.nodeName`,
/// which no scheduler saw, has it too.
const OWNED_CONDITIONS: [&str; 7] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
    super::resize::PENDING,
    super::resize::IN_PROGRESS,
];

/// Everything a pod's status is computed from.
#[derive(Debug)]
pub(crate) struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub init: &'a [ContainerRecord],
    pub regular: &'a [ContainerRecord],
    pub sandbox_ready: bool,
    /// Why the sandbox is not ready, where the kubelet says so (from 1.37): the
    /// message of a False `PodReadyToStartContainers`.
    pub sandbox_not_ready: Option<&'static str>,
    pub pod_ips: &'a [IpAddr],
    pub host_ips: &'a [IpAddr],
    pub runtime_name: &'a str,
    /// When the kubelet first accepted the pod.
    pub start_time: Timestamp,
    /// A phase decided apart from the containers' states: `Failed` for a pod past its
    /// `activeDeadlineSeconds`, the terminal phase of a pod being deleted.
    pub forced_phase: Option<&'a str>,
    /// The conditions of a resize underway, with their own times and generations.
    pub resize_conditions: &'a [PodCondition],
    /// Whether containers' own restart policies and rules count (from 1.35).
    pub restart_rules: bool,
    /// Whether the pod's own `resources` and `allocatedResources` are shown (from 1.36).
    pub pod_level_status: bool,
}

pub(crate) fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The names of init containers not done yet.
fn pending_init(init: &[ContainerRecord]) -> Vec<&str> {
    init.iter()
        .filter(|c| !c.init_done())
        .map(|c| &*c.name)
        .collect()
}

/// The pod phase, as the kubelet's getPhase decides it (pkg/kubelet/kubelet_pods.go):
/// with `rules` (container restart rules, from 1.35) a stopped container counts as
/// restarting by its own policy and rules ([`container_should_restart`]), else by the
/// pod's policy.
pub(crate) fn phase(
    pod: &Pod,
    init: &[ContainerRecord],
    regular: &[ContainerRecord],
    rules: bool,
) -> &'static str {
    let policy = restart_policy(pod);
    let spec = pod.spec.as_ref();
    let restarts =
        |containers: Option<&Vec<Container>>, record: &ContainerRecord, code: i32| match containers
            .and_then(|list| list.iter().find(|c| *c.name == *record.name))
        {
            Some(container) => container_should_restart(container, policy, code, rules),
            None => pod_policy_restarts(policy, code),
        };
    let failed_init: Vec<(&ContainerRecord, i32)> = init
        .iter()
        .filter(|c| c.kind == ContainerKind::Init)
        .filter_map(|c| {
            c.exit_code()
                .filter(|code| *code != 0)
                .map(|code| (c, code))
        })
        .collect();
    let init_fails_pod = if rules {
        let init_specs = spec.and_then(|s| s.init_containers.as_ref());
        failed_init
            .iter()
            .any(|(c, code)| !restarts(init_specs, c, *code))
    } else {
        !failed_init.is_empty() && policy == "Never"
    };
    if init_fails_pod {
        return "Failed";
    }
    if !pending_init(init).is_empty() {
        return "Pending";
    }
    let specs = spec.map(|s| &s.containers);
    let (mut running, mut waiting, mut stopped, mut succeeded, mut for_good) = (0, 0, 0, 0, 0);
    for container in regular {
        let state = container.state();
        let code = match state.as_deref() {
            Some(ContainerState::Running { .. }) => {
                running += 1;
                continue;
            }
            Some(ContainerState::Exited { exit_code, .. }) => *exit_code,
            _ => match container.last_exit.as_deref() {
                Some(ContainerState::Exited { exit_code, .. }) => *exit_code,
                Some(_) => 0,
                None => {
                    waiting += 1;
                    continue;
                }
            },
        };
        stopped += 1;
        if matches!(state.as_deref(), Some(ContainerState::Exited { .. })) && code == 0 {
            succeeded += 1;
        }
        if rules && !restarts(specs, container, code) {
            for_good += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if rules {
            if stopped != for_good {
                "Running"
            } else if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// The QoS class from requests and limits of every container (init ones included).
pub(crate) fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let (mut any, mut guaranteed) = (false, true);
    for container in containers {
        let resources = container.resources.clone().unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        for resource in ["cpu", "memory"] {
            let limit = limits.get(resource);
            let request = requests.get(resource).or(limit);
            any |= limit.is_some() || request.is_some();
            guaranteed &= limit.is_some() && request.map(|q| &q.0) == limit.map(|q| &q.0);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

pub(crate) fn time(at: SystemTime) -> Time {
    Time(Timestamp::try_from(at).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn api_state(state: &ContainerState, container_id: Option<String>) -> ApiState {
    match state {
        ContainerState::Created { .. } => ApiState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        },
        ContainerState::Running { started_at } => ApiState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..Default::default()
        },
        ContainerState::Exited {
            started_at,
            finished_at,
            exit_code,
            reason,
            message,
        } => ApiState {
            terminated: Some(ContainerStateTerminated {
                container_id,
                exit_code: *exit_code,
                reason: Some(reason.clone()),
                message: message.clone(),
                started_at: Some(time(*started_at)),
                finished_at: Some(time(*finished_at)),
                signal: None,
            }),
            ..Default::default()
        },
    }
}

fn container_status(
    record: &ContainerRecord,
    spec: Option<&Container>,
    previous: Option<&ApiStatus>,
    runtime: &str,
    initialized: bool,
    now: SystemTime,
) -> ApiStatus {
    let container_id = record.id.as_ref().map(|id| format!("{runtime}://{id}"));
    let waiting = |reason: &str, message: Option<String>| ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    };
    let state = match (record.waiting.as_deref(), record.state()) {
        (Some((reason, message)), _) => waiting(reason, Some(message.clone())),
        (None, Some(state)) => api_state(&state, container_id.clone()),
        (None, None) if record.kind == ContainerKind::Regular && initialized => {
            waiting("ContainerCreating", None)
        }
        (None, None) => waiting("PodInitializing", None),
    };
    let shown_id = if record.waiting.is_some() && record.last_exit.is_none() {
        None
    } else {
        container_id.clone()
    };
    let mut status = ApiStatus {
        name: record.name.to_string(),
        image: record.image.to_string(),
        image_id: record.image_ref.as_deref().unwrap_or_default().to_string(),
        container_id: shown_id,
        restart_count: i32::try_from(record.restart_count).unwrap_or(i32::MAX),
        ready: record.ready(now) && record.waiting.is_none(),
        started: Some(record.started(now) && record.waiting.is_none()),
        state: Some(state),
        last_state: Some(
            record
                .last_exit
                .as_ref()
                .map(|exit| api_state(exit, None))
                .unwrap_or_default(),
        ),
        ..Default::default()
    };
    if let Some(spec) = spec {
        spec_status::fill_container(&mut status, spec, previous, record.id.is_some());
    }
    status
}

fn condition(
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.map(String::from),
        message,
        ..Default::default()
    }
}

fn names_message(what: &str, names: &[&str]) -> String {
    format!("containers with {what} status: [{}]", names.join(" "))
}

/// The conditions the kubelet owns, in its order.
fn owned_conditions(facts: &PodFacts<'_>, phase: &str, now: SystemTime) -> Vec<PodCondition> {
    let pending = pending_init(facts.init);
    let completed = phase == "Succeeded";
    // A failed pod's containers are not ready, whatever they say
    // (`generateContainersReadyConditionForTerminalPhase` in
    // pkg/kubelet/status/generate.go).
    let failed = phase == "Failed";
    let initialized = if !pending.is_empty() {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(names_message("incomplete", &pending)),
        )
    } else {
        condition(
            "Initialized",
            true,
            completed.then_some("PodCompleted"),
            None,
        )
    };
    let unready: Vec<&str> = facts
        .init
        .iter()
        .filter(|c| c.kind == ContainerKind::Sidecar)
        .chain(facts.regular)
        .filter(|c| !(c.ready(now) && c.waiting.is_none()))
        .map(|c| &*c.name)
        .collect();
    let containers_ready = if completed {
        condition("ContainersReady", false, Some("PodCompleted"), None)
    } else if failed {
        condition("ContainersReady", false, Some("PodFailed"), None)
    } else if !pending.is_empty() {
        condition(
            "ContainersReady",
            false,
            Some("ContainersNotInitialized"),
            Some(names_message("incomplete", &pending)),
        )
    } else if !unready.is_empty() {
        condition(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(names_message("unready", &unready)),
        )
    } else {
        condition("ContainersReady", true, None, None)
    };
    let ready = readiness(facts.pod, &containers_ready);
    vec![
        condition(
            "PodReadyToStartContainers",
            facts.sandbox_ready,
            facts
                .sandbox_not_ready
                .filter(|_| !facts.sandbox_ready)
                .map(|_| "PodSandboxNotReady"),
            facts
                .sandbox_not_ready
                .filter(|_| !facts.sandbox_ready)
                .map(String::from),
        ),
        initialized,
        ready,
        containers_ready,
        // Its transition time is the scheduler's where it already said True
        // (`updateLastTransitionTime` in pkg/kubelet/status/status_manager.go).
        condition("PodScheduled", true, None, None),
    ]
}

/// Ready: ContainersReady, and every readiness gate's condition True.
fn readiness(pod: &Pod, containers_ready: &PodCondition) -> PodCondition {
    let mut ready = containers_ready.clone();
    ready.type_ = "Ready".into();
    if ready.status != "True" {
        return ready;
    }
    let existing = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref());
    for gate in gates.into_iter().flatten() {
        let found = existing
            .into_iter()
            .flatten()
            .find(|c| c.type_ == gate.condition_type);
        let message = match found {
            None => format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gate.condition_type
            ),
            Some(c) if c.status != "True" => format!(
                "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                gate.condition_type, c.status
            ),
            Some(_) => continue,
        };
        return condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(message),
        );
    }
    ready
}

/// Keeps each condition's transition time where its status did not change.
fn carry_transition_times(
    conditions: &mut [PodCondition],
    previous: &[PodCondition],
    now: Timestamp,
) {
    for condition in conditions {
        let before = previous.iter().find(|old| old.type_ == condition.type_);
        condition.last_transition_time = match before {
            Some(old) if old.status == condition.status => old.last_transition_time.clone(),
            _ => Some(Time(now)),
        };
    }
}

/// The whole status the kubelet would write now.
pub(crate) fn compute(facts: &PodFacts<'_>, now: Timestamp) -> PodStatus {
    let pod = facts.pod;
    let phase = facts
        .forced_phase
        .unwrap_or_else(|| phase(pod, facts.init, facts.regular, facts.restart_rules));
    let previous = pod.status.clone().unwrap_or_default();
    let previous_conditions = previous.conditions.clone().unwrap_or_default();
    let generation = pod.metadata.generation;

    let now_system = SystemTime::from(now);
    let mut owned = owned_conditions(facts, phase, now_system);
    carry_transition_times(&mut owned, &previous_conditions, now);
    for condition in &mut owned {
        condition.observed_generation = generation;
    }
    // In the status manager's order (`mergePodStatus` in
    // pkg/kubelet/status/status_manager.go over `generateAPIPodStatus`): the conditions
    // the kubelet does not own (DisruptionTarget, readiness gates) as they are, then a
    // resize's, then the rest of its own.
    let mut conditions: Vec<PodCondition> = previous_conditions
        .into_iter()
        .filter(|c| !OWNED_CONDITIONS.contains(&c.type_.as_str()))
        .collect();
    conditions.extend_from_slice(facts.resize_conditions);
    conditions.extend(owned);
    let initialized = pending_init(facts.init).is_empty();
    let ip_list = |ips: &[IpAddr]| ips.iter().map(IpAddr::to_string).collect::<Vec<_>>();
    let host_ips = ip_list(facts.host_ips);
    let pod_ips = ip_list(facts.pod_ips);
    let spec = pod.spec.as_ref();
    let statuses = |records: &[ContainerRecord],
                    specs: Option<&Vec<Container>>,
                    before: Option<&Vec<ApiStatus>>| {
        let list: Vec<ApiStatus> = records
            .iter()
            .map(|r| {
                let spec = specs.and_then(|specs| specs.iter().find(|c| *c.name == *r.name));
                let previous = before.and_then(|list| list.iter().find(|c| *c.name == *r.name));
                container_status(
                    r,
                    spec,
                    previous,
                    facts.runtime_name,
                    initialized,
                    now_system,
                )
            })
            .collect();
        (!list.is_empty()).then_some(list)
    };
    // Init containers in spec order, the others by name
    // (`convertToAPIContainerStatuses` in pkg/kubelet/kubelet_pods.go).
    let mut container_statuses = statuses(
        facts.regular,
        spec.map(|s| &s.containers),
        previous.container_statuses.as_ref(),
    );
    if let Some(list) = container_statuses.as_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    // The kubelet looks at the phase the API server holds, not the one it computes.
    let was_running = previous.phase.as_deref() == Some("Running");
    let (resources, allocated_resources) = if facts.pod_level_status {
        let (resources, allocated) = spec_status::pod_resources(pod, was_running);
        (Some(resources), allocated)
    } else {
        (None, None)
    };
    #[allow(unused_mut)] // Written to below against the 1.35 API and newer.
    let mut status = PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: host_ips.first().cloned(),
        host_ips: (!host_ips.is_empty()).then(|| {
            host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: previous.start_time.or(Some(Time(facts.start_time))),
        qos_class: Some(qos_class(pod).into()),
        init_container_statuses: statuses(
            facts.init,
            spec.and_then(|s| s.init_containers.as_ref()),
            previous.init_container_statuses.as_ref(),
        ),
        container_statuses,
        observed_generation: generation,
        // Fields the kubelet does not own are kept.
        nominated_node_name: previous.nominated_node_name,
        resize: previous.resize,
        resource_claim_statuses: previous.resource_claim_statuses,
        ..Default::default()
    };
    // Pod-level resources in the status came with the 1.35 API: built against an
    // older one, the library cannot write them.
    k8s_openapi::k8s_if_ge_1_35! {
        status.resources = resources;
        status.allocated_resources = allocated_resources;
    }
    k8s_openapi::k8s_if_le_1_34! {
        let _ = (resources, allocated_resources);
    }
    status
}

#[cfg(test)]
#[path = "pod_status_tests.rs"]
mod tests;
