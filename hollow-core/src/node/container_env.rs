//! A container's environment and command as the kubelet hands them to the runtime:
//! `makeEnvironmentVariables` and `podFieldSelectorRuntimeValue` in
//! pkg/kubelet/kubelet_pods.go, `ExpandContainerCommandAndArgs` in
//! pkg/kubelet/container/helpers.go, and `$(VAR)` references as
//! third_party/forked/golang/expansion/expand.go reads them.
//!
//! Values from ConfigMaps and Secrets (`envFrom` first, then `configMapKeyRef` and
//! `secretKeyRef` variables) come from [`ObjectData`], read as the container starts.
//!
//! What hollow leaves out, and why: the Services' variables (`KUBERNETES_SERVICE_HOST`
//! and each Service's `<NAME>_SERVICE_HOST`/`_PORT` family; they would need a watch of
//! every Service) and `resourceFieldRef`. A variable left out is unset in the
//! container.
//!
//! Only a container whose command the fake runtime's userland runs gets its
//! environment made (it is read by nothing else, and a pod is kept small).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, EnvVarSource, ObjectFieldSelector, Pod};

use super::object_data::ObjectData;

/// The API server's default `terminationMessagePath`, which the runtime is not told.
const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// The container's command and args, with `$(VAR)` references expanded over `env`.
fn expanded_command(container: &Container, env: &BTreeMap<String, String>) -> Vec<String> {
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|word| expand(word, |name| env.get(name).map(String::as_str)))
        .collect()
}

/// A container's command followed by its args, as written.
pub(crate) fn command_line(container: &Container) -> Vec<String> {
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .cloned()
        .collect()
}

/// What the runtime is given to run a container: its command and, when the fake's
/// userland runs it, the environment the kubelet would make and where the container
/// writes its termination message.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Launch {
    pub(crate) command: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) termination_message_path: Option<String>,
    /// What its volumes hold.
    pub(crate) files: Vec<(String, String)>,
    /// Its `emptyDir` volumes, by name and mount path.
    pub(crate) shared_dirs: Vec<(String, String)>,
}

/// The [`Launch`] of `container` in `pod`.
pub(crate) fn launch(
    pod: &Pod,
    container: Option<&Container>,
    pod_ips: &[IpAddr],
    host_ips: &[IpAddr],
    data: &ObjectData,
) -> Launch {
    let Some(container) = container else {
        return Launch::default();
    };
    let raw = command_line(container);
    let image = container.image.as_deref().unwrap_or_default();
    if !crate::runtime::reads_files(image, &raw) {
        return Launch {
            command: raw,
            ..Launch::default()
        };
    }
    let files = super::volume_files::volume_files(pod, container, data);
    let shared_dirs = shared_dirs(pod, container);
    if !crate::runtime::runs_in_userland(&raw) {
        return Launch {
            command: raw,
            files,
            shared_dirs,
            ..Launch::default()
        };
    }
    let env = environment(pod, container, (pod_ips, host_ips), data);
    Launch {
        command: expanded_command(container, &env),
        env: env.into_iter().collect(),
        termination_message_path: container
            .termination_message_path
            .clone()
            .filter(|path| path != DEFAULT_TERMINATION_MESSAGE_PATH),
        files,
        shared_dirs,
    }
}

/// The pod's hostname where it is not its name, as the kubelet's
/// `GeneratePodHostNameAndDomain` makes it (pkg/kubelet/kubelet_pods.go): with
/// `hostname_override` (feature gate HostnameOverride, from 1.35) its
/// `spec.hostnameOverride`, else its `spec.hostname`, else its name; cut to 63
/// characters, less trailing `-` and `.` (`truncatePodHostnameIfNeeded`). The API
/// server has validated both fields.
pub(crate) fn pod_hostname(pod: &Pod, hostname_override: bool) -> Option<String> {
    const MAX_LEN: usize = 63;
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let wanted = spec
        .and_then(|s| s.hostname_override.as_deref())
        .filter(|_| hostname_override)
        .or_else(|| {
            spec.and_then(|s| s.hostname.as_deref())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or(name);
    let hostname = match wanted.get(..MAX_LEN) {
        Some(cut) if wanted.len() > MAX_LEN => cut.trim_end_matches(['-', '.']),
        _ => wanted,
    };
    (hostname != name).then(|| hostname.to_string())
}

/// The `emptyDir` volumes `container` mounts, by name and mount path.
fn shared_dirs(pod: &Pod, container: &Container) -> Vec<(String, String)> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
    let empty_dir = |name: &str| {
        volumes
            .into_iter()
            .flatten()
            .any(|v| v.name == name && v.empty_dir.is_some())
    };
    container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.sub_path.is_none() && empty_dir(&m.name))
        .map(|m| {
            (
                m.name.clone(),
                m.mount_path.trim_end_matches('/').to_string(),
            )
        })
        .collect()
}

/// `makeEnvironmentVariables`: the keys of the container's `envFrom` sources (a
/// ConfigMap's text data, a Secret's data; each under its prefix), then its `env`, in
/// order, each value's `$(VAR)` references expanded over the variables before it;
/// downward API fields and ConfigMap and Secret keys resolved.
fn environment(
    pod: &Pod,
    container: &Container,
    ips: (&[IpAddr], &[IpAddr]),
    data: &ObjectData,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let source = match (&from.config_map_ref, &from.secret_ref) {
            (Some(map), _) => data.config_map(&map.name),
            (None, Some(secret)) => data.secret(&secret.name),
            (None, None) => None,
        };
        for (key, value) in source.into_iter().flat_map(|d| {
            d.values
                .iter()
                .filter(|(key, _)| d.text_keys.contains(*key))
        }) {
            env.insert(format!("{prefix}{key}"), value.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => Some(expand(var.value.as_deref().unwrap_or_default(), |name| {
                env.get(name).map(String::as_str)
            })),
            Some(source) if source.file_key_ref.is_some() => {
                data.env_file(&var.name).map(str::to_string)
            }
            Some(source) => source_value(pod, source, ips, data),
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    env
}

/// An env var's `valueFrom`: a downward API field, or a ConfigMap's or Secret's key
/// (`None`: not there, or a source hollow leaves out).
fn source_value(
    pod: &Pod,
    source: &EnvVarSource,
    (pod_ips, host_ips): (&[IpAddr], &[IpAddr]),
    data: &ObjectData,
) -> Option<String> {
    if let Some(field) = &source.field_ref {
        return field_value(pod, field, pod_ips, host_ips);
    }
    if let Some(key) = &source.config_map_key_ref {
        let map = data.config_map(&key.name)?;
        return map
            .values
            .get(&key.key)
            .filter(|_| map.text_keys.contains(&key.key))
            .cloned();
    }
    let key = source.secret_key_ref.as_ref()?;
    data.secret(&key.name)?.values.get(&key.key).cloned()
}

/// `podFieldSelectorRuntimeValue`, and `fieldpath.ExtractFieldPathAsString` for the
/// metadata paths.
pub(super) fn field_value(
    pod: &Pod,
    field: &ObjectFieldSelector,
    pod_ips: &[IpAddr],
    host_ips: &[IpAddr],
) -> Option<String> {
    let spec = pod.spec.as_ref();
    let meta = &pod.metadata;
    let joined = |ips: &[IpAddr]| {
        ips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let path = field.field_path.as_str();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => host_ips.first().map(ToString::to_string)?,
        "status.hostIPs" => joined(host_ips),
        "status.podIP" => pod_ips.first().map(ToString::to_string).unwrap_or_default(),
        "status.podIPs" => joined(pod_ips),
        _ => keyed("metadata.labels['", meta.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", meta.annotations.as_ref()))?,
    })
}

/// `$(NAME)` replaced by `lookup(NAME)`, left as written when it has none; `$$` is a
/// `$`; any other `$` stays.
pub(crate) fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.chars().next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pods_hostname_is_its_override_from_1_35_else_its_hostname_else_its_name() {
        let pod = |spec: serde_json::Value| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": "web-0" },
                "spec": { "containers": [{ "name": "c" }], "hostname": spec["hostname"], "hostnameOverride": spec["hostnameOverride"] },
            }))
            .unwrap()
        };
        let both =
            pod(serde_json::json!({ "hostname": "db", "hostnameOverride": "db.example.com" }));
        assert_eq!(
            super::pod_hostname(&both, true).as_deref(),
            Some("db.example.com")
        );
        assert_eq!(
            super::pod_hostname(&both, false).as_deref(),
            Some("db"),
            "a 1.34 kubelet"
        );
        assert_eq!(
            super::pod_hostname(&pod(serde_json::json!({})), true),
            None,
            "its name"
        );
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let cut = super::pod_hostname(&pod(serde_json::json!({ "hostnameOverride": long })), true);
        assert_eq!(
            cut,
            Some("a".repeat(62)),
            "63 characters, less the trailing '-'"
        );
    }

    use super::*;

    #[test]
    fn references_expand_as_the_kubelet_expands_them() {
        let env = |name: &str| match name {
            "A" => Some("1"),
            "EMPTY" => Some(""),
            _ => None,
        };
        // The cases of third_party/forked/golang/expansion/expand_test.go.
        assert_eq!(expand("$(A)-$(EMPTY)-$(B)", env), "1--$(B)");
        assert_eq!(expand("$$(A) $$ $A $(A", env), "$(A) $ $A $(A");
        assert_eq!(expand("x$", env), "x$");
        assert_eq!(expand("", env), "");
    }

    #[test]
    fn a_job_index_from_the_downward_api_and_values_from_earlier_variables() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "job-1-x", "namespace": "ns", "uid": "u-1",
                "annotations": { "batch.kubernetes.io/job-completion-index": "3" },
            },
            "spec": {
                "nodeName": "node-a",
                "containers": [{
                    "name": "c",
                    "command": ["sh", "-c"],
                    "args": ["echo $(GREETING) $JOB_COMPLETION_INDEX"],
                    "env": [
                        { "name": "JOB_COMPLETION_INDEX", "valueFrom": { "fieldRef": {
                            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']" } } },
                        { "name": "NAME", "value": "world" },
                        { "name": "GREETING", "value": "hello $(NAME) on $(NODE)" },
                        { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                        { "name": "IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                        { "name": "FROM_SECRET", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } },
                    ],
                }],
            },
        }))
        .expect("a pod");
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        let data = ObjectData::default().with(false, "s", &[("k", "v")]);
        let launched = launch(&pod, Some(container), &[ip], &[], &ObjectData::default());
        let with_secret = launch(&pod, Some(container), &[ip], &[], &data);
        assert!(
            with_secret
                .env
                .contains(&("FROM_SECRET".into(), "v".into()))
        );
        let (command, env) = (launched.command, launched.env);
        // NODE comes after GREETING: its reference stays as written.
        assert_eq!(
            command,
            [
                "sh",
                "-c",
                "echo hello world on $(NODE) $JOB_COMPLETION_INDEX"
            ]
        );
        let env: BTreeMap<String, String> = env.into_iter().collect();
        assert_eq!(env["JOB_COMPLETION_INDEX"], "3");
        assert_eq!(env["NODE"], "node-a");
        assert_eq!(env["IP"], "10.0.0.7");
        assert!(!env.contains_key("FROM_SECRET"));

        let server = Container {
            name: "s".into(),
            command: Some(vec!["nginx".into()]),
            env: container.env.clone(),
            ..Container::default()
        };
        assert_eq!(
            launch(&pod, Some(&server), &[ip], &[], &data),
            Launch {
                command: vec!["nginx".to_string()],
                ..Launch::default()
            }
        );
    }

    #[test]
    fn env_from_comes_first_and_env_overrides_it() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": { "containers": [{
                "name": "c",
                "command": ["sh", "-c", "env"],
                "envFrom": [
                    { "configMapRef": { "name": "settings" }, "prefix": "APP_" },
                    { "secretRef": { "name": "creds" } },
                    { "configMapRef": { "name": "absent", "optional": true } },
                ],
                "env": [
                    { "name": "APP_MODE", "value": "slow, not $(APP_LEVEL)" },
                    { "name": "LEVEL", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "LEVEL" } } },
                ],
            }] },
        }))
        .expect("a pod");
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let data = ObjectData::default()
            .with(true, "settings", &[("MODE", "fast"), ("LEVEL", "3")])
            .with(false, "creds", &[("USER", "me")]);
        let env: BTreeMap<_, _> = launch(&pod, Some(container), &[], &[], &data)
            .env
            .into_iter()
            .collect();
        let expected: BTreeMap<String, String> = [
            ("APP_LEVEL", "3"),
            ("APP_MODE", "slow, not 3"),
            ("LEVEL", "3"),
            ("USER", "me"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);
    }
}
