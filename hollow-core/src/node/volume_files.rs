//! The files a container's volumes hold, made for a command the fake runtime's userland
//! runs, so `cat /etc/podinfo/labels` prints them:
//! - downward API items (pkg/volume/downwardapi: each item's path holds its field's
//!   value; `metadata.labels` and `metadata.annotations` as sorted `key="value"`
//!   lines, `fieldpath.FormatMap` in pkg/fieldpath);
//! - ConfigMap and Secret keys (pkg/volume/configmap and pkg/volume/secret
//!   `MakePayload`: every key as a file named for it, or only the listed `items`, each
//!   at its `path`), also as projected sources (pkg/volume/projected);
//! - an `emptyDir`'s mount point, as a directory (a path ending in `/`), which the
//!   fake runtime shares between the pod's containers.
//!
//! A mount with a `subPath` sees that part of its volume.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use super::container_env::field_value;
use super::object_data::{Data, ObjectData};

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

/// The files (absolute path, text) `container`'s volumes hold, their ConfigMaps' and
/// Secrets' data taken from `data`.
pub(crate) fn volume_files(
    pod: &Pod,
    container: &Container,
    data: &ObjectData,
) -> Vec<(String, String)> {
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
        let root = mount.mount_path.trim_end_matches('/');
        let sub_path = mount.sub_path.as_deref().unwrap_or_default();
        let sub_path = sub_path.trim_matches('/');
        for (path, text) in volume_payload(pod, volume, data) {
            let path = path.trim_start_matches('/');
            let at = if path.is_empty() {
                format!("{root}/")
            } else if sub_path.is_empty() {
                format!("{root}/{path}")
            } else if path == sub_path {
                root.to_string()
            } else if let Some(rest) = path
                .strip_prefix(sub_path)
                .and_then(|r| r.strip_prefix('/'))
            {
                format!("{root}/{rest}")
            } else {
                continue;
            };
            files.push((at, text));
        }
    }
    files
}

/// What a volume holds, by path inside it (`""` with an empty text: an empty
/// directory, the volume itself).
fn volume_payload(pod: &Pod, volume: &Volume, data: &ObjectData) -> Vec<(String, String)> {
    let mut files = Vec::new();
    if volume.empty_dir.is_some() {
        files.push((String::new(), String::new()));
    }
    let downward = |items: Option<&Vec<DownwardAPIVolumeFile>>, files: &mut Vec<_>| {
        for item in items.into_iter().flatten() {
            if let Some(text) = item_text(pod, item) {
                files.push((item.path.clone(), text));
            }
        }
    };
    downward(
        volume.downward_api.as_ref().and_then(|d| d.items.as_ref()),
        &mut files,
    );
    if let Some(map) = &volume.config_map {
        keys(data.config_map(&map.name), map.items.as_deref(), &mut files);
    }
    if let Some(secret) = &volume.secret {
        let found = secret.secret_name.as_deref().and_then(|n| data.secret(n));
        keys(found, secret.items.as_deref(), &mut files);
    }
    for source in volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
    {
        downward(
            source.downward_api.as_ref().and_then(|d| d.items.as_ref()),
            &mut files,
        );
        if let Some(map) = &source.config_map {
            keys(data.config_map(&map.name), map.items.as_deref(), &mut files);
        }
        if let Some(secret) = &source.secret {
            keys(
                data.secret(&secret.name),
                secret.items.as_deref(),
                &mut files,
            );
        }
    }
    files
}

/// `MakePayload`: each key as a file of its name, or only the `items` listed (a key
/// the object lacks is left out: the kubelet fails the mount unless it is optional,
/// which `super::references` reports).
fn keys(data: Option<&Data>, items: Option<&[KeyToPath]>, files: &mut Vec<(String, String)>) {
    let Some(data) = data else {
        return;
    };
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                if let Some(text) = data.values.get(&item.key) {
                    files.push((item.path.clone(), text.clone()));
                }
            }
        }
        _ => files.extend(data.values.iter().map(|(k, v)| (k.clone(), v.clone()))),
    }
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
            volume_files(&pod, container, &ObjectData::default()),
            vec![
                (
                    "/etc/podinfo/labels".to_string(),
                    "a=\"1\"\nb=\"say \\\"hi\\\"\"".to_string()
                ),
                ("/etc/podinfo/name".to_string(), "web-0".to_string()),
            ]
        );
    }

    #[test]
    fn config_maps_and_secrets_are_written_key_by_key() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": {
                "containers": [{ "name": "c", "volumeMounts": [
                    { "name": "conf", "mountPath": "/etc/conf" },
                    { "name": "one", "mountPath": "/etc/app.yaml", "subPath": "app.yaml" },
                    { "name": "keys", "mountPath": "/keys" },
                    { "name": "scratch", "mountPath": "/scratch" },
                ] }],
                "volumes": [
                    { "name": "conf", "configMap": { "name": "settings" } },
                    { "name": "one", "configMap": { "name": "settings", "items": [
                        { "key": "mode", "path": "app.yaml" },
                        { "key": "absent", "path": "other" },
                    ] } },
                    { "name": "keys", "projected": { "sources": [
                        { "secret": { "name": "creds", "items": [{ "key": "p", "path": "pw/p" }] } },
                    ] } },
                    { "name": "scratch", "emptyDir": {} },
                ],
            },
        }))
        .unwrap();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let data = ObjectData::default()
            .with(true, "settings", &[("mode", "fast"), ("level", "3")])
            .with(false, "creds", &[("p", "s3cret"), ("q", "unused")]);
        let files = volume_files(&pod, container, &data);
        let expected = [
            ("/etc/conf/level", "3"),
            ("/etc/conf/mode", "fast"),
            ("/etc/app.yaml", "fast"),
            ("/keys/pw/p", "s3cret"),
            ("/scratch/", ""),
        ]
        .map(|(p, t)| (p.to_string(), t.to_string()));
        assert_eq!(files, expected);
    }
}
