//! In-place pod resize as a 1.36 kubelet handles it: what was allocated to a pod's
//! resizable containers, the `PodResizePending` and `PodResizeInProgress` conditions,
//! and the messages of its resize Events.
//!
//! The kubelet keeps the resources it admitted each container at (its allocation,
//! pkg/kubelet/allocation/allocation_manager.go). A pod whose spec asks for other
//! resources (a `resize` subresource update) is admitted again at the new size
//! (`handlePodResourcesResize`): if the node has room, the allocation becomes the new
//! size, the pod is `PodResizeInProgress` until the runtime applied it, and then the
//! condition clears (`SyncPod` in pkg/kubelet/kubelet.go); if not, it is
//! `PodResizePending` with reason `Deferred` and the admission's message, and it is
//! tried again later. The status shows the allocation, not the spec
//! (`UpdatePodFromAllocation`). Regular containers and sidecars are resizable; other
//! init containers and pod-level resources are not resized here (their node features,
//! `InPlacePodVerticalScalingInitContainers` and
//! `InPlacePodLevelResourcesVerticalScaling`, are not declared).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The condition of a resize the node accepted and is applying.
pub(crate) const IN_PROGRESS: &str = "PodResizeInProgress";
/// The condition of a resize the node cannot accept now.
pub(crate) const PENDING: &str = "PodResizePending";
/// The reason of [`PENDING`] for a resize the node can never accept.
pub(crate) const INFEASIBLE: &str = "Infeasible";
/// The reason of [`PENDING`] for every admission failure but an infeasible one
/// (`SetPodResizePendingCondition` in pkg/kubelet/status/status_manager.go).
pub(crate) const DEFERRED: &str = "Deferred";

fn resizable(container: &Container, sidecar_or_regular: bool) -> bool {
    sidecar_or_regular || container.restart_policy.as_deref() == Some("Always")
}

/// The resources of a container, with absent and empty lists alike (the kubelet
/// compares them semantically).
fn normalized(resources: Option<&ResourceRequirements>) -> ResourceRequirements {
    let mut resources = resources.cloned().unwrap_or_default();
    resources.limits = resources.limits.filter(|l| !l.is_empty());
    resources.requests = resources.requests.filter(|r| !r.is_empty());
    resources.claims = resources.claims.filter(|c| !c.is_empty());
    resources
}

/// What a pod's resizable containers (regular ones and sidecars) are allocated, by
/// container name.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Allocation(Vec<(String, ResourceRequirements)>);

impl Allocation {
    /// The resources `pod`'s spec gives its resizable containers.
    pub(crate) fn of(pod: &Pod) -> Self {
        let Some(spec) = pod.spec.as_ref() else {
            return Self::default();
        };
        let init = spec.init_containers.iter().flatten().map(|c| (c, false));
        let regular = spec.containers.iter().map(|c| (c, true));
        Self(
            init.chain(regular)
                .filter(|(c, regular)| resizable(c, *regular))
                .map(|(c, _)| (c.name.clone(), normalized(c.resources.as_ref())))
                .collect(),
        )
    }

    /// `pod` with this allocation in place of its spec's resources, as the kubelet's
    /// `UpdatePodFromAllocation` gives it to the status it writes.
    pub(crate) fn apply(&self, pod: &Pod) -> Pod {
        let mut pod = pod.clone();
        if let Some(spec) = pod.spec.as_mut() {
            let containers = spec
                .init_containers
                .iter_mut()
                .flatten()
                .chain(spec.containers.iter_mut());
            for container in containers {
                if let Some((_, resources)) =
                    self.0.iter().find(|(name, _)| *name == container.name)
                {
                    container.resources = Some(resources.clone());
                }
            }
        }
        pod
    }

    /// The resources allocated to container `name`, if it is resizable.
    pub(crate) fn resources_of(&self, name: &str) -> Option<&ResourceRequirements> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    /// The containers whose resources differ in `other`, with their resources there.
    pub(crate) fn changed_in<'a>(
        &self,
        other: &'a Allocation,
    ) -> impl Iterator<Item = (&'a str, &'a ResourceRequirements)> {
        other
            .0
            .iter()
            .filter(|(name, resources)| {
                self.0
                    .iter()
                    .find(|(mine, _)| mine == name)
                    .is_none_or(|(_, mine)| mine != resources)
            })
            .map(|(name, resources)| (name.as_str(), resources))
    }
}

/// A resize condition, True, with the kubelet's times: the transition time kept while
/// the reason stays (`updatedPodResizeCondition` in
/// pkg/kubelet/status/status_manager.go).
pub(crate) fn condition(
    type_: &str,
    previous: Option<&PodCondition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> PodCondition {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let transition = match previous {
        Some(old) if old.reason.as_deref().unwrap_or_default() == reason => {
            old.last_transition_time.clone()
        }
        _ => Some(Time(now)),
    };
    PodCondition {
        type_: type_.into(),
        status: "True".into(),
        last_probe_time: Some(Time(now)),
        last_transition_time: transition,
        observed_generation: generation,
        reason: non_empty(reason),
        message: non_empty(message),
    }
}

/// `"name":{"key":"quantity",...}`, keys sorted, or nothing for an absent list.
fn list_json(name: &str, list: Option<&BTreeMap<String, Quantity>>) -> Option<String> {
    let items: Vec<String> = list?
        .iter()
        .map(|(key, quantity)| format!("{}:{}", quoted(key), quoted(&quantity.0)))
        .collect();
    Some(format!("{}:{{{}}}", quoted(name), items.join(",")))
}

/// `{"limits":{...},"requests":{...}}` as Go encodes a `ResourceRequirements` (fields
/// in declaration order, empty ones left out, map keys sorted).
fn resources_json(resources: Option<&ResourceRequirements>) -> String {
    let resources = normalized(resources);
    let mut fields: Vec<String> = [
        list_json("limits", resources.limits.as_ref()),
        list_json("requests", resources.requests.as_ref()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(claims) = resources.claims.as_ref() {
        let claims: Vec<String> = claims
            .iter()
            .map(|claim| match claim.request.as_deref() {
                Some(request) => format!(
                    "{{\"name\":{},\"request\":{}}}",
                    quoted(&claim.name),
                    quoted(request)
                ),
                None => format!("{{\"name\":{}}}", quoted(&claim.name)),
            })
            .collect();
        fields.push(format!("\"claims\":[{}]", claims.join(",")));
    }
    format!("{{{}}}", fields.join(","))
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// The message of a resize Event: `prefix`, then the pod's containers and their
/// resources, the generation and any error, as JSON (`podResizeMessage` in
/// pkg/kubelet/events/resize.go).
pub(crate) fn event_message(prefix: &str, pod: &Pod, generation: i64, error: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let list = |containers: &[Container]| {
        containers
            .iter()
            .map(|c| {
                format!(
                    "{{\"name\":{},\"resources\":{}}}",
                    quoted(&c.name),
                    resources_json(c.resources.as_ref())
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut fields = Vec::new();
    if let Some(init) = spec.init_containers.as_deref().filter(|i| !i.is_empty()) {
        fields.push(format!("\"initContainers\":[{}]", list(init)));
    }
    if !spec.containers.is_empty() {
        fields.push(format!("\"containers\":[{}]", list(&spec.containers)));
    }
    fields.push(format!("\"generation\":{generation}"));
    if !error.is_empty() {
        fields.push(format!("\"error\":{}", quoted(error)));
    }
    format!("{prefix}: {{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value, init: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "p", "generation": 2 },
            "spec": { "containers": containers, "initContainers": init },
        }))
        .unwrap()
    }

    #[test]
    fn regular_containers_and_sidecars_are_resizable_other_init_containers_not() {
        let pod = pod(
            json!([{ "name": "app", "resources": { "requests": { "cpu": "100m" } } }]),
            json!([
                { "name": "setup", "resources": { "requests": { "cpu": "1" } } },
                { "name": "proxy", "restartPolicy": "Always" },
            ]),
        );
        let allocation = Allocation::of(&pod);
        let names: Vec<&str> = allocation.0.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["proxy", "app"]);
    }

    #[test]
    fn an_allocation_applied_replaces_the_spec_resources_and_empty_equals_absent() {
        let before = pod(
            json!([{ "name": "app", "resources": { "requests": { "cpu": "100m" } } }]),
            json!([{ "name": "proxy", "restartPolicy": "Always", "resources": {} }]),
        );
        let after = pod(
            json!([{ "name": "app", "resources": { "requests": { "cpu": "200m" } } }]),
            json!([{ "name": "proxy", "restartPolicy": "Always" }]),
        );
        let allocated = Allocation::of(&before);
        let desired = Allocation::of(&after);
        let changed: Vec<&str> = allocated
            .changed_in(&desired)
            .map(|(name, _)| name)
            .collect();
        assert_eq!(changed, ["app"]);
        let shown = allocated.apply(&after);
        assert_eq!(Allocation::of(&shown), allocated);
    }

    #[test]
    fn event_messages_are_the_kubelets_json_summary() {
        let pod = pod(
            json!([
                { "name": "app", "resources": { "requests": { "cpu": "200m", "memory": "64Mi" }, "limits": { "cpu": "400m" } } },
                { "name": "log" },
            ]),
            json!([{ "name": "setup" }]),
        );
        assert_eq!(
            event_message("Pod resize started", &pod, 2, ""),
            r#"Pod resize started: {"initContainers":[{"name":"setup","resources":{}}],"containers":[{"name":"app","resources":{"limits":{"cpu":"400m"},"requests":{"cpu":"200m","memory":"64Mi"}}},{"name":"log","resources":{}}],"generation":2}"#
        );
        assert_eq!(
            event_message(
                "Pod resize Deferred",
                &pod,
                3,
                "Node didn't have enough resource: cpu"
            ),
            r#"Pod resize Deferred: {"initContainers":[{"name":"setup","resources":{}}],"containers":[{"name":"app","resources":{"limits":{"cpu":"400m"},"requests":{"cpu":"200m","memory":"64Mi"}}},{"name":"log","resources":{}}],"generation":3,"error":"Node didn't have enough resource: cpu"}"#
        );
    }

    #[test]
    fn a_conditions_transition_time_stays_while_its_reason_does() {
        let first = Timestamp::from_second(1_000).unwrap();
        let later = Timestamp::from_second(2_000).unwrap();
        let deferred = condition(PENDING, None, DEFERRED, "no room", Some(2), first);
        let again = condition(
            PENDING,
            Some(&deferred),
            DEFERRED,
            "still none",
            Some(3),
            later,
        );
        assert_eq!(again.last_transition_time, Some(Time(first)));
        assert_eq!(again.last_probe_time, Some(Time(later)));
        assert_eq!(again.observed_generation, Some(3));
        let in_progress = condition(IN_PROGRESS, None, "", "", Some(3), later);
        assert_eq!((in_progress.reason, in_progress.message), (None, None));
    }
}
