//! Field-by-field comparison of two objects' JSON: values that differ from node to
//! node by nature (times, UIDs, container and image IDs, IPs, ports, the node's and
//! namespace's own names) are normalised first, then both sides are flattened into
//! `path = value` leaves and compared.

use std::collections::BTreeMap;

use serde_json::Value;

/// Keys whose values are times.
const TIMES: &[&str] = &[
    "startTime",
    "lastTransitionTime",
    "lastProbeTime",
    "startedAt",
    "finishedAt",
    "lastHeartbeatTime",
    "creationTimestamp",
    "renewTime",
];

/// Keys whose values are per-node or per-run identities.
const IDENTITIES: &[&str] = &[
    "containerID",
    "imageID",
    "uid",
    "machineID",
    "systemUUID",
    "bootID",
    "ip",
    "podIP",
    "hostIP",
    "address",
    "resourceVersion",
    "Port",
    "podCIDR",
    "podCIDRs",
];

/// The prefix of the projected service account token volume the API server adds to
/// every pod, followed by five random characters.
const TOKEN_VOLUME: &str = "kube-api-access-";

/// What a normalised value is shown as.
const NORMALISED: &str = "<normalised>";

/// Replaces the values that differ by nature with a placeholder (keeping whether they
/// are present and empty), and each of `names` (node and namespace names, longest
/// first) in every string with `<name>`.
pub fn normalise(value: &Value, names: &[(&str, &str)]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let placeholder =
                        TIMES.contains(&key.as_str()) || IDENTITIES.contains(&key.as_str());
                    let value = match value {
                        Value::String(text) if placeholder && !text.is_empty() => {
                            Value::String(NORMALISED.into())
                        }
                        Value::Number(_) if placeholder => Value::String(NORMALISED.into()),
                        // A Node image's references by digest are the runtime's own
                        // (Kubemark's fake image service reports none); its tags are
                        // compared.
                        Value::Array(items) if key == "names" => Value::Array(
                            items
                                .iter()
                                .filter(|name| {
                                    !name.as_str().is_some_and(|n| n.contains("@sha256:"))
                                })
                                .map(|v| normalise(v, names))
                                .collect(),
                        ),
                        Value::Array(items) if placeholder => Value::Array(
                            items
                                .iter()
                                .map(|_| Value::String(NORMALISED.into()))
                                .collect(),
                        ),
                        other => normalise(other, names),
                    };
                    (rename(key, names), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| normalise(v, names)).collect()),
        Value::String(text) => Value::String(rename(text, names)),
        other => other.clone(),
    }
}

fn rename(text: &str, names: &[(&str, &str)]) -> String {
    if text.len() == TOKEN_VOLUME.len() + 5 && text.starts_with(TOKEN_VOLUME) {
        return format!("{TOKEN_VOLUME}<random>");
    }
    names
        .iter()
        .fold(text.to_string(), |text, (name, placeholder)| {
            text.replace(name, placeholder)
        })
}

/// The leaves of `value`, by path. An array of objects that name themselves (by `name`,
/// `type` or `key`) is keyed by that name, and gets one more leaf, `<path>[order]`, with
/// the names in order; other arrays are keyed by index.
pub fn flatten(value: &Value) -> BTreeMap<String, String> {
    let mut leaves = BTreeMap::new();
    flatten_into(value, "", &mut leaves);
    leaves
}

fn flatten_into(value: &Value, path: &str, leaves: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                flatten_into(value, &path, leaves);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let names: Option<Vec<String>> = items.iter().map(identity).collect();
            match names {
                Some(names) => {
                    for (name, item) in names.iter().zip(items) {
                        flatten_into(item, &format!("{path}[{name}]"), leaves);
                    }
                    leaves.insert(format!("{path}[order]"), names.join(","));
                }
                None => {
                    for (index, item) in items.iter().enumerate() {
                        flatten_into(item, &format!("{path}[{index}]"), leaves);
                    }
                }
            }
        }
        leaf => {
            leaves.insert(path.to_string(), leaf.to_string());
        }
    }
}

/// The name an array element goes by: `name`, `type` or `key`, as `key=value`.
fn identity(item: &Value) -> Option<String> {
    ["name", "type", "key"].iter().find_map(|key| {
        item.get(*key)
            .and_then(Value::as_str)
            .map(|value| format!("{key}={value}"))
    })
}

/// One field that differs: its path, and its value on each side (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    /// The flattened path.
    pub path: String,
    /// Kubemark's value.
    pub kubemark: Option<String>,
    /// hollow's value.
    pub hollow: Option<String>,
}

/// The fields where `kubemark` and `hollow` differ.
pub fn diff(kubemark: &Value, hollow: &Value) -> Vec<FieldDiff> {
    let left = flatten(kubemark);
    let right = flatten(hollow);
    let mut paths: Vec<&String> = left.keys().chain(right.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|path| left.get(*path) != right.get(*path))
        .map(|path| FieldDiff {
            path: path.clone(),
            kubemark: left.get(path).cloned(),
            hollow: right.get(path).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_ids_and_names_are_normalised_and_arrays_keyed_by_name() {
        let kubemark = json!({
            "phase": "Running",
            "startTime": "2026-01-01T00:00:00Z",
            "message": "on node-a",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}],
            "containerStatuses": [{"name": "c", "containerID": "containerd://1", "ready": true}],
        });
        let hollow = json!({
            "phase": "Running",
            "startTime": "2026-01-01T00:00:07Z",
            "message": "on node-b",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "c", "containerID": "hollow://2", "ready": true, "started": true}],
        });
        let kubemark = normalise(&kubemark, &[("node-a", "<node>")]);
        let hollow = normalise(&hollow, &[("node-b", "<node>")]);
        let paths: Vec<String> = diff(&kubemark, &hollow)
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(
            paths,
            [
                "conditions[order]",
                "conditions[type=Ready].status",
                "containerStatuses[name=c].started",
            ]
        );
    }
}
