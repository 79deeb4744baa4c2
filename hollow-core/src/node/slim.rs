//! A pod as a node keeps it: without what the node never reads.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

/// Whether a volume holds files the fake's userland shows (`super::volume_files`:
/// downward API, ConfigMap, Secret, `emptyDir`, and projected sources of these) that a
/// pod asked for: the service account's projected volume (`kube-api-access-*`) is not
/// kept, as every pod has one and a `Volume` costs over 3 KiB.
fn holds_files(volume: &Volume) -> bool {
    let sources = || {
        volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
    };
    volume.downward_api.is_some()
        || volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.empty_dir.is_some()
        || (sources().next().is_some() && !sources().any(|s| s.service_account_token.is_some()))
}

/// Whether the fake reads a container's files (`crate::runtime::reads_files`) and it
/// mounts one of `volumes`.
fn reads_files(container: &Container, volumes: &BTreeSet<&str>) -> bool {
    container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| volumes.contains(m.name.as_str()))
        && crate::runtime::reads_files(
            container.image.as_deref().unwrap_or_default(),
            &super::container_env::command_line(container),
        )
}

/// Drops what the node never reads from a pod it keeps for as long as the pod runs:
/// `metadata.managedFields` (often the largest part of the object) and the volumes
/// with their mounts (a hollow runtime mounts nothing; each `Volume` alone is over
/// 3 KiB in memory), but for the volumes whose files the fake reads for a container
/// (`holds_files`, `reads_files`) or a container's `fileKeyRef` variables read, and
/// their mounts.
pub(crate) fn slimmed(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    shrink(&mut pod.metadata.owner_references);
    if let Some(spec) = pod.spec.as_mut() {
        let with_files: BTreeSet<&str> = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| holds_files(v))
            .map(|v| v.name.as_str())
            .collect();
        let readers: BTreeSet<String> = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter(|c| !with_files.is_empty() && reads_files(c, &with_files))
            .map(|c| c.name.clone())
            .collect();
        let env_files: BTreeSet<String> = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(super::env_files::env_file_volumes)
            .map(str::to_string)
            .collect();
        let read: BTreeSet<String> = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter(|c| readers.contains(&c.name))
            .flat_map(|c| c.volume_mounts.iter().flatten().map(|m| m.name.clone()))
            .filter(|name| with_files.contains(name.as_str()))
            .chain(env_files.iter().cloned())
            .collect();
        match spec.volumes.as_mut() {
            Some(volumes) if !read.is_empty() => {
                volumes.retain(|v| read.contains(&v.name));
                volumes.shrink_to_fit();
            }
            _ => spec.volumes = None,
        }
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
            // Mounts of a volume env files are read from stay: the kubelet finds only
            // mounted volumes.
            let mounts_env_files = || {
                container
                    .volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| env_files.contains(&m.name))
            };
            if mounts_in_status(&container.name)
                && !readers.contains(&container.name)
                && !mounts_env_files()
            {
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
