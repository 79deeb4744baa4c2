//! The parts of a pod's status the kubelet copies from its spec rather than from the
//! runtime: each container's volume mounts, resources and allocated resources, and the
//! pod's own (pkg/kubelet/kubelet_pods.go, `convertToAPIContainerStatuses` and
//! `generateAPIPodStatus`, with the feature gates a 1.36 kubelet has on:
//! RecursiveReadOnlyMounts, InPlacePodVerticalScaling,
//! InPlacePodLevelResourcesVerticalScaling).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Pod, ResourceRequirements, VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::{format_like, parse_quantity};

/// A container's volume mounts as its status lists them: every mount of its spec, in
/// order, with `recursiveReadOnly: Disabled` on read-only ones (the kubelet resolves
/// `IfPossible` and `Enabled` against the runtime handler, which here supports no
/// recursive read-only mounts).
// Fields newer API versions add stay unset (the library builds against any).
#[allow(clippy::needless_update)]
pub(crate) fn volume_mounts(container: &Container) -> Option<Vec<VolumeMountStatus>> {
    let mounts = container.volume_mounts.as_ref()?;
    Some(
        mounts
            .iter()
            .map(|mount| VolumeMountStatus {
                name: mount.name.clone(),
                mount_path: mount.mount_path.clone(),
                read_only: mount.read_only.filter(|read_only| *read_only),
                recursive_read_only: (mount.read_only == Some(true)).then(|| "Disabled".into()),
                ..Default::default()
            })
            .collect(),
    )
    .filter(|mounts: &Vec<VolumeMountStatus>| !mounts.is_empty())
}

/// Fills a container status's fields that come from its spec: its volume mounts
/// always (from the spec, or as `previous` listed them: they do not change, and a
/// node keeps a pod's spec without them once its status has them), and, once the
/// runtime has created the container, its resources (the allocated ones, which a
/// runtime that applied them reports back) and its allocated requests.
pub(crate) fn fill_container(
    status: &mut ContainerStatus,
    spec: &Container,
    previous: Option<&ContainerStatus>,
    created: bool,
) {
    status.volume_mounts =
        volume_mounts(spec).or_else(|| previous.and_then(|p| p.volume_mounts.clone()));
    if created {
        let resources = spec.resources.clone().unwrap_or_default();
        status.allocated_resources = resources.requests.clone().filter(|r| !r.is_empty());
        status.resources = Some(resources);
    }
}

/// One resource's total, and the quantity it started from (whose format it keeps).
#[derive(Clone)]
struct Total {
    value: f64,
    like: String,
}

type Totals = BTreeMap<String, Total>;

fn add(totals: &mut Totals, list: Option<&BTreeMap<String, Quantity>>) {
    for (resource, quantity) in list.into_iter().flatten() {
        let value = parse_quantity(&quantity.0).unwrap_or(0.0);
        totals
            .entry(resource.clone())
            .and_modify(|total| total.value += value)
            .or_insert_with(|| Total {
                value,
                like: quantity.0.clone(),
            });
    }
}

fn max_into(totals: &mut Totals, other: &Totals) {
    for (resource, candidate) in other {
        match totals.get(resource) {
            Some(total) if total.value >= candidate.value => {}
            _ => {
                totals.insert(resource.clone(), candidate.clone());
            }
        }
    }
}

/// What the pod's containers ask for, one side (`requests` or `limits`) of their
/// resources, as `resourcehelper.PodRequests` and `PodLimits` add them up: regular
/// containers and sidecars together, or an init container with the sidecars started
/// before it if that is more, plus the pod's overhead (for limits, only when some limit
/// is set).
fn pod_total(
    pod: &Pod,
    side: fn(&ResourceRequirements) -> Option<&BTreeMap<String, Quantity>>,
    is_limits: bool,
) -> Totals {
    let Some(spec) = pod.spec.as_ref() else {
        return Totals::new();
    };
    fn of(
        container: &Container,
        side: fn(&ResourceRequirements) -> Option<&BTreeMap<String, Quantity>>,
    ) -> Option<&BTreeMap<String, Quantity>> {
        container.resources.as_ref().and_then(side)
    }
    let mut total = Totals::new();
    for container in &spec.containers {
        add(&mut total, of(container, side));
    }
    let mut sidecars = Totals::new();
    let mut init_peak = Totals::new();
    for container in spec.init_containers.iter().flatten() {
        if container.restart_policy.as_deref() == Some("Always") {
            add(&mut total, of(container, side));
            add(&mut sidecars, of(container, side));
            max_into(&mut init_peak, &sidecars);
        } else {
            let mut this = sidecars.clone();
            add(&mut this, of(container, side));
            max_into(&mut init_peak, &this);
        }
    }
    max_into(&mut total, &init_peak);
    if !is_limits || !total.is_empty() {
        add(&mut total, spec.overhead.as_ref());
    }
    total
}

fn quantities(totals: Totals) -> BTreeMap<String, Quantity> {
    totals
        .into_iter()
        .map(|(resource, total)| (resource, Quantity(format_like(total.value, &total.like))))
        .collect()
}

/// The pod's `status.resources` and `status.allocatedResources`: the pod's effective
/// requests and limits (`getEffectiveAllocatedResources`) and its requests. Once the
/// pod runs, the kubelet reads CPU and memory back from the pod's cgroup instead and
/// lists no other resource (`convertToAPIPodLevelResourcesStatus`); a fake cgroup holds
/// what was allocated, so those are the allocated CPU and memory.
pub(crate) fn pod_resources(
    pod: &Pod,
    running: bool,
) -> (ResourceRequirements, Option<BTreeMap<String, Quantity>>) {
    let requests = quantities(pod_total(pod, |r| r.requests.as_ref(), false));
    let limits = quantities(pod_total(pod, |r| r.limits.as_ref(), true));
    let mut resources = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.resources.clone())
        .unwrap_or_default();
    let from_cgroup = |list: &BTreeMap<String, Quantity>| -> BTreeMap<String, Quantity> {
        list.iter()
            .filter(|(resource, _)| !running || matches!(resource.as_str(), "cpu" | "memory"))
            .map(|(resource, quantity)| (resource.clone(), quantity.clone()))
            .collect()
    };
    let shown_requests = from_cgroup(&requests);
    let shown_limits = from_cgroup(&limits);
    resources.requests = (!shown_requests.is_empty()).then_some(shown_requests);
    resources.limits = (!shown_limits.is_empty()).then_some(shown_limits);
    (resources, (!requests.is_empty()).then_some(requests))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "p" }, "spec": spec })).unwrap()
    }

    #[test]
    fn pod_resources_add_up_containers_in_the_first_quantitys_format() {
        let pod = pod(json!({ "containers": [
            { "name": "a", "resources": { "requests": { "cpu": "100m", "memory": "64Mi" }, "limits": { "memory": "64Mi" } } },
            { "name": "b", "resources": { "requests": { "cpu": "200m", "memory": "64Mi" } } },
        ] }));
        let (resources, allocated) = pod_resources(&pod, false);
        assert_eq!(
            serde_json::to_value(&resources).unwrap(),
            json!({ "requests": { "cpu": "300m", "memory": "128Mi" }, "limits": { "memory": "64Mi" } })
        );
        assert_eq!(allocated, resources.requests);
    }

    #[test]
    fn a_larger_init_container_sets_the_pods_requests() {
        let pod = pod(json!({
            "initContainers": [{ "name": "i", "resources": { "requests": { "cpu": "1" } } }],
            "containers": [{ "name": "a", "resources": { "requests": { "cpu": "100m" } } }],
        }));
        let (resources, _) = pod_resources(&pod, false);
        assert_eq!(
            serde_json::to_value(&resources).unwrap(),
            json!({ "requests": { "cpu": "1" } })
        );
    }

    #[test]
    fn a_best_effort_pod_has_empty_resources_and_no_allocated_ones() {
        let pod = pod(json!({ "containers": [{ "name": "a" }] }));
        let (resources, allocated) = pod_resources(&pod, true);
        assert_eq!(serde_json::to_value(&resources).unwrap(), json!({}));
        assert_eq!(allocated, None);
    }

    #[test]
    fn a_running_pod_shows_only_the_cpu_and_memory_of_its_cgroup() {
        let pod = pod(json!({ "containers": [{ "name": "a", "resources": {
            "requests": { "cpu": "1", "example.com/gpu": "1" },
            "limits": { "example.com/gpu": "1" },
        } }] }));
        let (resources, allocated) = pod_resources(&pod, true);
        assert_eq!(
            serde_json::to_value(&resources).unwrap(),
            json!({ "requests": { "cpu": "1" } })
        );
        assert_eq!(
            serde_json::to_value(allocated).unwrap(),
            json!({ "cpu": "1", "example.com/gpu": "1" })
        );
    }

    #[test]
    fn read_only_mounts_say_recursive_read_only_is_disabled() {
        let container: Container = serde_json::from_value(json!({
            "name": "a",
            "volumeMounts": [
                { "name": "token", "mountPath": "/var/run/secrets", "readOnly": true },
                { "name": "data", "mountPath": "/data" },
            ],
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_value(volume_mounts(&container)).unwrap(),
            json!([
                { "name": "token", "mountPath": "/var/run/secrets", "readOnly": true, "recursiveReadOnly": "Disabled" },
                { "name": "data", "mountPath": "/data" },
            ])
        );
    }
}
