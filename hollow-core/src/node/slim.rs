//! A pod as a node keeps it: without what the node never reads.

use k8s_openapi::api::core::v1::Pod;

/// Drops what the node never reads from a pod it keeps for as long as the pod runs:
/// `metadata.managedFields` (often the largest part of the object) and the volumes
/// with their mounts (a hollow runtime mounts nothing; each `Volume` alone is over
/// 3 KiB in memory).
pub(crate) fn slimmed(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    shrink(&mut pod.metadata.owner_references);
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        // serde grows a list by doubling, from room for four items of up to 1 KiB (one
        // for larger ones): one ContainerStatus (750 bytes) sits in 3 KiB, five
        // conditions in room for eight. Every pod is kept for its life.
        spec.containers.shrink_to_fit();
        shrink(&mut spec.init_containers);
        shrink(&mut spec.tolerations);
        // A container's mounts are kept until its status lists them (the kubelet
        // writes them once; they are immutable there).
        let status = pod.status.as_ref();
        let mounts_in_status = |name: &str| {
            status
                .into_iter()
                .flat_map(|s| {
                    s.container_statuses
                        .iter()
                        .flatten()
                        .chain(s.init_container_statuses.iter().flatten())
                })
                .any(|c| c.name == name && c.volume_mounts.is_some())
        };
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for container in containers {
            if mounts_in_status(&container.name) {
                container.volume_mounts = None;
            } else {
                shrink(&mut container.volume_mounts);
            }
            container.volume_devices = None;
            shrink(&mut container.env);
            shrink(&mut container.ports);
            shrink(&mut container.args);
            shrink(&mut container.command);
        }
    }
    if let Some(status) = pod.status.as_mut() {
        shrink(&mut status.conditions);
        shrink(&mut status.container_statuses);
        shrink(&mut status.init_container_statuses);
        shrink(&mut status.pod_ips);
        shrink(&mut status.host_ips);
    }
    pod
}

fn shrink<T>(list: &mut Option<Vec<T>>) {
    if let Some(list) = list {
        list.shrink_to_fit();
    }
}
