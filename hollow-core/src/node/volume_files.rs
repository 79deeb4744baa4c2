//! The files a container's downward API volumes hold (pkg/volume/downwardapi: each
//! item's path holds its field's value; `metadata.labels` and `metadata.annotations`
//! as sorted `key="value"` lines, `fieldpath.FormatMap` in pkg/fieldpath), made for a
//! command the fake runtime's userland runs, so `cat /etc/podinfo/labels` prints them.
//! ConfigMap and Secret volumes are not among them yet (hollow keeps no values).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, Pod};

use super::container_env::field_value;

/// `fieldpath.FormatMap`: `key="value"` lines, sorted by key, the value quoted as Go's
/// `%q` quotes it (for the printable text labels hold: `\` and `"` escaped).
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", quoted(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn item_text(pod: &Pod, item: &DownwardAPIVolumeFile) -> Option<String> {
    let field = item.field_ref.as_ref()?;
    match field.field_path.as_str() {
        "metadata.labels" => Some(format_map(pod.metadata.labels.as_ref())),
        "metadata.annotations" => Some(format_map(pod.metadata.annotations.as_ref())),
        _ => field_value(pod, field, &[], &[]),
    }
}

/// The files (absolute path, text) `container`'s downward API volumes hold.
pub(crate) fn volume_files(pod: &Pod, container: &Container) -> Vec<(String, String)> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let mut files = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.iter().find(|v| v.name == mount.name) else {
            continue;
        };
        let projected = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.downward_api.as_ref())
            .flat_map(|d| d.items.iter().flatten());
        let items = volume
            .downward_api
            .iter()
            .flat_map(|d| d.items.iter().flatten())
            .chain(projected);
        let root = mount.mount_path.trim_end_matches('/');
        for item in items {
            if let Some(text) = item_text(pod, item) {
                files.push((
                    format!("{root}/{}", item.path.trim_start_matches('/')),
                    text,
                ));
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_and_fields_are_written_as_the_kubelet_writes_them() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "web-0", "labels": { "b": "say \"hi\"", "a": "1" } },
            "spec": {
                "containers": [{ "name": "c", "volumeMounts": [
                    { "name": "podinfo", "mountPath": "/etc/podinfo/" },
                ] }],
                "volumes": [{ "name": "podinfo", "downwardAPI": { "items": [
                    { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } },
                    { "path": "name", "fieldRef": { "fieldPath": "metadata.name" } },
                ] } }],
            },
        }))
        .unwrap();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            volume_files(&pod, container),
            vec![
                (
                    "/etc/podinfo/labels".to_string(),
                    "a=\"1\"\nb=\"say \\\"hi\\\"\"".to_string()
                ),
                ("/etc/podinfo/name".to_string(), "web-0".to_string()),
            ]
        );
    }
}
