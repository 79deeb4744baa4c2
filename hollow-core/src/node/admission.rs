//! The kubelet's admission of a pod: a pod that does not fit the node's allocatable
//! resources, or asks for a host port another pod holds, is rejected with the
//! kubelet's reason and message instead of run (pkg/kubelet/lifecycle/predicate.go,
//! `predicateAdmitHandler.Admit`, over the scheduler's `AdmissionCheck` in
//! pkg/scheduler/eventhandlers.go and `noderesources.Fits`; the status written is
//! `Kubelet.rejectPod`'s in pkg/kubelet/kubelet.go).
//!
//! A pod with a node selector or required node affinity is matched against the Node as
//! read when it is admitted (the kubelet's `getNodeAnyWay`), and so is a pod admitted
//! while the node has a NoExecute taint, which it must tolerate.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::parse_quantity;

/// Why the kubelet refused a pod: the status reason and message it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub reason: String,
    pub message: String,
}

impl Rejection {
    /// The status message: the kubelet prefixes the predicate's.
    pub(crate) fn status_message(&self) -> String {
        format!("Pod was rejected: {}", self.message)
    }
}

/// A resource amount as the scheduler counts it: CPU in millicores, the rest in units,
/// rounded up (`Quantity.MilliValue` and `Value`).
fn amount(resource: &str, quantity: &Quantity) -> i64 {
    let value = parse_quantity(&quantity.0).unwrap_or(0.0);
    let scaled = if resource == "cpu" {
        value * 1000.0
    } else {
        value
    };
    scaled.ceil() as i64
}

fn add(total: &mut BTreeMap<String, i64>, requests: &BTreeMap<String, Quantity>) {
    for (resource, quantity) in requests {
        *total.entry(resource.clone()).or_default() += amount(resource, quantity);
    }
}

fn requests(container: &Container) -> BTreeMap<String, Quantity> {
    container
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default()
}

/// What a pod requests, as `resourcehelper.PodRequests` counts it: its containers and
/// sidecars together, or an init container with the sidecars started before it if that
/// is more, plus the pod's overhead.
pub(crate) fn pod_requests(pod: &Pod) -> BTreeMap<String, i64> {
    let Some(spec) = pod.spec.as_ref() else {
        return BTreeMap::new();
    };
    let mut total = BTreeMap::new();
    for container in &spec.containers {
        add(&mut total, &requests(container));
    }
    let mut sidecars = BTreeMap::new();
    let mut init_peak: BTreeMap<String, i64> = BTreeMap::new();
    for container in spec.init_containers.iter().flatten() {
        let sidecar = container.restart_policy.as_deref() == Some("Always");
        if sidecar {
            add(&mut total, &requests(container));
            add(&mut sidecars, &requests(container));
        }
        let mut this = sidecars.clone();
        if !sidecar {
            add(&mut this, &requests(container));
        }
        for (resource, value) in this {
            let peak = init_peak.entry(resource).or_default();
            *peak = (*peak).max(value);
        }
    }
    for (resource, peak) in init_peak {
        let value = total.entry(resource).or_default();
        *value = (*value).max(peak);
    }
    if let Some(overhead) = spec.overhead.as_ref() {
        add(&mut total, overhead);
    }
    total
}

/// Why a resize of `pod` (its desired resources) is infeasible on a node of
/// `allocatable`, as 1.34 and 1.35 kubelets' `canResizePod` says it before admission
/// (pkg/kubelet/allocation/allocation_manager.go of 1.35): the pod asks for more CPU
/// (millicores) or memory (bytes) than the node has, memory named first.
pub(crate) fn beyond_allocatable(
    pod: &Pod,
    allocatable: &BTreeMap<String, Quantity>,
) -> Option<String> {
    let requests = pod_requests(pod);
    let available = |resource: &str| allocatable.get(resource).map_or(0, |q| amount(resource, q));
    let asked = |resource: &str| requests.get(resource).copied().unwrap_or(0);
    let over = |resource: &str| asked(resource) > available(resource);
    let resource = if over("memory") {
        "memory"
    } else if over("cpu") {
        "cpu"
    } else {
        return None;
    };
    Some(format!(
        "Node didn't have enough capacity: {resource}, requested: {}, capacity: {}",
        asked(resource),
        available(resource)
    ))
}

/// The host ports a pod holds: (protocol, host IP, port).
fn host_ports(pod: &Pod) -> BTreeSet<(String, String, i32)> {
    let Some(spec) = pod.spec.as_ref() else {
        return BTreeSet::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|port| port > 0))
        .map(|p| {
            (
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                p.host_port.unwrap_or_default(),
            )
        })
        .collect()
}

/// Whether two host ports conflict: the same protocol and port, and the same host IP
/// or either the wildcard (`nodeports.Fits`).
fn conflict(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1 == b.1 || a.1 == "0.0.0.0" || b.1 == "0.0.0.0")
}

/// The resources `noderesources.Fits` checks first, in its order; extended resources
/// follow by name.
const FIRST_CHECKED: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// Admits `pod` to a node with `allocatable` that already runs `admitted` (its other
/// pods that are not finished), or says why the kubelet would refuse it. `node` is the
/// Node object, for a pod that [constrains its node](super::affinity::constrains_node)
/// or while the Node has NoExecute taints (those checks are skipped without it).
pub(crate) fn admit(
    pod: &Pod,
    allocatable: &BTreeMap<String, Quantity>,
    admitted: &[&Pod],
    node: Option<&Node>,
) -> Result<(), Rejection> {
    let insufficient = |resource: &str, requested: i64, used: i64, capacity: i64| Rejection {
        reason: match resource {
            "cpu" => "OutOfcpu".into(),
            "memory" => "OutOfmemory".into(),
            "ephemeral-storage" => "OutOfephemeral-storage".into(),
            "pods" => "OutOfpods".into(),
            other => format!("OutOf{other}"),
        },
        message: format!(
            "Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"
        ),
    };
    let capacity = |resource: &str| allocatable.get(resource).map(|q| amount(resource, q));
    if let Some(pods) = capacity("pods")
        && admitted.len() as i64 + 1 > pods
    {
        return Err(insufficient("pods", 1, admitted.len() as i64, pods));
    }
    let wanted = pod_requests(pod);
    let mut used = BTreeMap::new();
    for other in admitted {
        for (resource, value) in pod_requests(other) {
            *used.entry(resource).or_insert(0) += value;
        }
    }
    let extended = wanted
        .keys()
        .filter(|r| !FIRST_CHECKED.contains(&r.as_str()) && r.as_str() != "pods");
    for resource in FIRST_CHECKED
        .iter()
        .copied()
        .chain(extended.map(String::as_str))
    {
        let requested = wanted.get(resource).copied().unwrap_or(0);
        if requested == 0 {
            continue;
        }
        // An extended resource the node does not have at all is a cluster-level one,
        // which the kubelet leaves alone (`removeMissingExtendedResources`).
        let Some(capacity) =
            capacity(resource).or_else(|| FIRST_CHECKED.contains(&resource).then_some(0))
        else {
            continue;
        };
        let used = used.get(resource).copied().unwrap_or(0);
        if requested + used > capacity {
            return Err(insufficient(resource, requested, used, capacity));
        }
    }
    if let Some(node) = node
        && super::affinity::constrains_node(pod)
        && !super::affinity::matches(pod, node)
    {
        return Err(Rejection {
            reason: "NodeAffinity".into(),
            message:
                "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"
                    .into(),
        });
    }
    let taken: Vec<_> = admitted.iter().flat_map(|p| host_ports(p)).collect();
    if host_ports(pod)
        .iter()
        .any(|wanted| taken.iter().any(|held| conflict(wanted, held)))
    {
        return Err(Rejection {
            reason: "NodePorts".into(),
            message: "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports".into(),
        });
    }
    if let Some(node) = node
        && !super::affinity::tolerates_no_execute_taints(pod, node)
    {
        return Err(Rejection {
            reason: "TaintToleration".into(),
            message:
                "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate"
                    .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "p" }, "spec": spec })).unwrap()
    }

    fn with_requests(cpu: &str, memory: &str) -> Pod {
        pod(json!({ "containers": [{ "name": "c", "image": "i",
            "resources": { "requests": { "cpu": cpu, "memory": memory } } }] }))
    }

    fn allocatable(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    #[test]
    fn a_resize_beyond_the_nodes_allocatable_is_named_as_1_35_names_it() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": { "containers": [{ "name": "app",
                "resources": { "requests": { "cpu": "1500m", "memory": "64Mi" } } }] },
        }))
        .unwrap();
        let node = |cpu: &str, memory: &str| -> BTreeMap<String, Quantity> {
            [
                ("cpu".to_string(), Quantity(cpu.into())),
                ("memory".to_string(), Quantity(memory.into())),
            ]
            .into()
        };
        assert_eq!(
            beyond_allocatable(&pod, &node("1", "1Gi")).as_deref(),
            Some("Node didn't have enough capacity: cpu, requested: 1500, capacity: 1000")
        );
        assert_eq!(
            beyond_allocatable(&pod, &node("1", "32Mi")).as_deref(),
            Some(
                "Node didn't have enough capacity: memory, requested: 67108864, capacity: 33554432"
            )
        );
        assert_eq!(beyond_allocatable(&pod, &node("2", "1Gi")), None);
    }

    #[test]
    fn requests_count_sidecars_and_the_largest_init_container() {
        let pod = pod(json!({
            "initContainers": [
                { "name": "sidecar", "image": "i", "restartPolicy": "Always",
                  "resources": { "requests": { "cpu": "100m" } } },
                { "name": "setup", "image": "i", "resources": { "requests": { "cpu": "2" } } },
            ],
            "containers": [{ "name": "c", "image": "i", "resources": { "requests": { "cpu": "500m" } } }],
            "overhead": { "cpu": "10m" },
        }));
        // max(500m + 100m, 2 + 100m) + 10m overhead.
        assert_eq!(pod_requests(&pod)["cpu"], 2110);
    }

    #[test]
    fn a_pod_that_does_not_fit_is_refused_as_the_kubelet_refuses_it() {
        let node = allocatable(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "2")]);
        let running = with_requests("600m", "100Mi");
        let rejection =
            admit(&with_requests("500m", "100Mi"), &node, &[&running], None).unwrap_err();
        assert_eq!(rejection.reason, "OutOfcpu");
        assert_eq!(
            rejection.status_message(),
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 500, used: 600, capacity: 1000"
        );
        let rejection = admit(&with_requests("1m", "2Gi"), &node, &[], None).unwrap_err();
        assert_eq!(rejection.reason, "OutOfmemory");
        let rejection = admit(
            &with_requests("1m", "1Mi"),
            &node,
            &[&running, &running],
            None,
        )
        .unwrap_err();
        assert_eq!(rejection.reason, "OutOfpods");
        assert_eq!(
            rejection.message,
            "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"
        );
        assert_eq!(
            admit(&with_requests("400m", "100Mi"), &node, &[&running], None),
            Ok(())
        );
    }

    #[test]
    fn extended_resources_the_node_lacks_entirely_are_left_to_the_cluster() {
        let gpu = pod(json!({ "containers": [{ "name": "c", "image": "i",
            "resources": { "requests": { "nvidia.com/gpu": "2" }, "limits": { "nvidia.com/gpu": "2" } } }] }));
        let without = allocatable(&[("cpu", "1"), ("pods", "10")]);
        assert_eq!(admit(&gpu, &without, &[], None), Ok(()));
        let one = allocatable(&[("cpu", "1"), ("pods", "10"), ("nvidia.com/gpu", "1")]);
        let rejection = admit(&gpu, &one, &[], None).unwrap_err();
        assert_eq!(rejection.reason, "OutOfnvidia.com/gpu");
    }

    #[test]
    fn a_host_port_held_by_another_pod_is_refused() {
        let node = allocatable(&[("cpu", "4"), ("pods", "10")]);
        let web = |ip: Option<&str>| {
            pod(json!({ "containers": [{ "name": "c", "image": "i",
                "ports": [{ "containerPort": 80, "hostPort": 8080, "hostIP": ip }] }] }))
        };
        let holder = web(None);
        let rejection = admit(&web(Some("127.0.0.1")), &node, &[&holder], None).unwrap_err();
        assert_eq!(rejection.reason, "NodePorts");
        assert_eq!(
            rejection.status_message(),
            "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
        );
        let elsewhere = web(Some("127.0.0.2"));
        assert_eq!(
            admit(&elsewhere, &node, &[&web(Some("127.0.0.1"))], None),
            Ok(())
        );
    }
}
