//! The objects a pod needs before the kubelet runs it: ConfigMaps, Secrets and claims
//! its volumes mount (the volume manager waits for them before the sandbox starts,
//! pkg/kubelet/volumemanager), and ConfigMaps and Secrets its containers' env reads
//! (`makeEnvironmentVariables` in pkg/kubelet/kubelet_pods.go, which fails the container
//! with `CreateContainerConfigError`). Optional references never block.
//!
//! A node remembers the objects it found (per namespace), so the service account's
//! `kube-root-ca.crt` that every pod mounts costs one read per namespace, not one per
//! pod; what is missing is read again on each retry.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::Api;

use super::traffic::{Kind, NodeTraffic};

/// An object a pod refers to, by kind and name (in the pod's namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Object {
    ConfigMap(String),
    Secret(String),
    Claim(String),
}

impl Object {
    /// The kubelet's words for it missing (`configmap "x" not found`).
    fn not_found(&self) -> String {
        match self {
            Object::ConfigMap(name) => format!("configmap \"{name}\" not found"),
            Object::Secret(name) => format!("secret \"{name}\" not found"),
            // `getPVCExtractPV` in
            // pkg/kubelet/volumemanager/populator/desired_state_of_world_populator.go.
            Object::Claim(name) => format!(
                "failed to fetch PVC from API server: persistentvolumeclaims \"{name}\" not found"
            ),
        }
    }
}

/// A volume's need: the volume's name and the object it mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeNeed {
    pub volume: String,
    pub object: Object,
}

/// The objects the pod's volumes mount and must exist first, in spec order; `None`
/// when there are none. Read before the pod is slimmed (which drops its volumes).
pub(crate) fn volume_needs(pod: &Pod) -> Option<Box<[VolumeNeed]>> {
    let spec = pod.spec.as_ref()?;
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let needs: Vec<VolumeNeed> = spec
        .volumes
        .iter()
        .flatten()
        .flat_map(|volume| objects_of(volume, pod_name))
        .collect();
    (!needs.is_empty()).then(|| needs.into_boxed_slice())
}

fn objects_of(volume: &Volume, pod_name: &str) -> Vec<VolumeNeed> {
    let need = |object| VolumeNeed {
        volume: volume.name.clone(),
        object,
    };
    let mut needs = Vec::new();
    if let Some(source) = &volume.config_map
        && source.optional != Some(true)
    {
        needs.push(need(Object::ConfigMap(source.name.clone())));
    }
    if let Some(source) = &volume.secret
        && source.optional != Some(true)
    {
        needs.push(need(Object::Secret(
            source.secret_name.clone().unwrap_or_default(),
        )));
    }
    if let Some(source) = &volume.persistent_volume_claim {
        needs.push(need(Object::Claim(source.claim_name.clone())));
    }
    // A generic ephemeral volume's claim is named after the pod and the volume
    // (pkg/volume/util/ephemeral).
    if volume.ephemeral.is_some() {
        needs.push(need(Object::Claim(format!("{pod_name}-{}", volume.name))));
    }
    for source in volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
    {
        if let Some(map) = &source.config_map
            && map.optional != Some(true)
        {
            needs.push(need(Object::ConfigMap(map.name.clone())));
        }
        if let Some(secret) = &source.secret
            && secret.optional != Some(true)
        {
            needs.push(need(Object::Secret(secret.name.clone())));
        }
    }
    needs
}

/// One lookup the container's env makes: an object, and a key it must have.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EnvNeed {
    pub object: Object,
    pub key: Option<String>,
}

/// The non-optional ConfigMaps, Secrets and keys a container's env reads, in the
/// kubelet's order (`envFrom` first, then `env`).
pub(crate) fn env_needs(container: &Container) -> Vec<EnvNeed> {
    let mut needs = Vec::new();
    for source in container.env_from.iter().flatten() {
        if let Some(map) = &source.config_map_ref
            && map.optional != Some(true)
        {
            needs.push(EnvNeed {
                object: Object::ConfigMap(map.name.clone()),
                key: None,
            });
        }
        if let Some(secret) = &source.secret_ref
            && secret.optional != Some(true)
        {
            needs.push(EnvNeed {
                object: Object::Secret(secret.name.clone()),
                key: None,
            });
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(selector) = &from.config_map_key_ref
            && selector.optional != Some(true)
        {
            needs.push(EnvNeed {
                object: Object::ConfigMap(selector.name.clone()),
                key: Some(selector.key.clone()),
            });
        }
        if let Some(selector) = &from.secret_key_ref
            && selector.optional != Some(true)
        {
            needs.push(EnvNeed {
                object: Object::Secret(selector.name.clone()),
                key: Some(selector.key.clone()),
            });
        }
    }
    needs
}

/// What a node found: `(namespace, object, key)` triples known to exist (a key of
/// `None`: the object itself; a claim: bound). Held while an object is read, so pods
/// that start together read it once.
#[derive(Debug, Default)]
pub(crate) struct Found {
    present: tokio::sync::Mutex<HashSet<(String, Object, Option<String>)>>,
}

impl Found {
    /// `None` when `need` is met, or the kubelet's message for why it is not.
    async fn check(
        &self,
        client: &kube::Client,
        watched: Option<&NodeTraffic>,
        namespace: &str,
        object: &Object,
        key: Option<&str>,
    ) -> Option<String> {
        let entry = (
            namespace.to_string(),
            object.clone(),
            key.map(str::to_string),
        );
        let mut present = self.present.lock().await;
        if present.contains(&entry) {
            return None;
        }
        // In the kubelet profile a ConfigMap or Secret is answered from its watch, as
        // the kubelet's watch-based managers answer (it is read when the watch has not
        // synced in time).
        let from_watch = match (watched, object) {
            (Some(traffic), Object::ConfigMap(name)) => traffic
                .lookup(Kind::ConfigMap, namespace, name)
                .await
                .map(|seen| seen.map(|keys| (keys.into_iter().collect(), "ConfigMap", true))),
            (Some(traffic), Object::Secret(name)) => traffic
                .lookup(Kind::Secret, namespace, name)
                .await
                .map(|seen| seen.map(|keys| (keys.into_iter().collect(), "Secret", true))),
            _ => None,
        };
        let problem = match from_watch {
            Some(seen) => judge(namespace, object, key, Ok(seen)),
            None => read(client, namespace, object, key).await,
        };
        if problem.is_none() {
            present.insert(entry);
        }
        problem
    }

    /// The first of `needs` that is not met, as the volume and the kubelet's message.
    pub(crate) async fn first_unmounted<'a>(
        &self,
        client: &kube::Client,
        watched: Option<&NodeTraffic>,
        namespace: &str,
        needs: &'a [VolumeNeed],
    ) -> Option<(&'a str, String)> {
        for need in needs {
            if let Some(problem) = self
                .check(client, watched, namespace, &need.object, None)
                .await
            {
                return Some((need.volume.as_str(), problem));
            }
        }
        None
    }

    /// The kubelet's message for the first env lookup of `container` that fails.
    pub(crate) async fn env_problem(
        &self,
        client: &kube::Client,
        watched: Option<&NodeTraffic>,
        namespace: &str,
        container: &Container,
    ) -> Option<String> {
        for need in env_needs(container) {
            let problem = self
                .check(
                    client,
                    watched,
                    namespace,
                    &need.object,
                    need.key.as_deref(),
                )
                .await;
            if problem.is_some() {
                return problem;
            }
        }
        None
    }
}

/// Reads `object`: `None` if it exists (with `key`, if given; a claim: bound), else
/// the kubelet's message. An API error other than 404 is a problem too (retried).
async fn read(
    client: &kube::Client,
    namespace: &str,
    object: &Object,
    key: Option<&str>,
) -> Option<String> {
    let keys = |data: Option<BTreeMap<String, String>>, binary: Option<Vec<String>>| {
        data.into_iter()
            .flat_map(BTreeMap::into_keys)
            .chain(binary.into_iter().flatten())
            .collect::<HashSet<String>>()
    };
    let result = match object {
        Object::ConfigMap(name) => Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map(|found| {
                found.map(|map| {
                    let binary = map.binary_data.map(|b| b.into_keys().collect());
                    (keys(map.data, binary), "ConfigMap", true)
                })
            }),
        Object::Secret(name) => Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map(|found| {
                found.map(|secret| {
                    let data = secret.data.map(|d| d.into_keys().collect());
                    let text = secret
                        .string_data
                        .map(|d| d.into_keys().collect::<Vec<_>>());
                    let mut all: HashSet<String> = data.unwrap_or_default();
                    all.extend(text.into_iter().flatten());
                    (all, "Secret", true)
                })
            }),
        Object::Claim(name) => Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map(|found| {
                found.map(|claim| {
                    let bound = claim.status.and_then(|s| s.phase).as_deref() == Some("Bound");
                    (HashSet::new(), "PersistentVolumeClaim", bound)
                })
            }),
    };
    judge(namespace, object, key, result)
}

/// What an object found (its keys, kind, and whether it is usable: a claim bound) means
/// for a need of it: `None` if met, else the kubelet's message.
type Lookup = Result<Option<(HashSet<String>, &'static str, bool)>, kube::Error>;

fn judge(namespace: &str, object: &Object, key: Option<&str>, result: Lookup) -> Option<String> {
    let name = match object {
        Object::ConfigMap(name) | Object::Secret(name) | Object::Claim(name) => name,
    };
    match result {
        Ok(None) => Some(object.not_found()),
        Ok(Some((_, "PersistentVolumeClaim", false))) => Some("PVC is not bound".into()),
        Ok(Some((keys, kind, _))) => match key {
            Some(key) if !keys.contains(key) => Some(format!(
                "couldn't find key {key} in {kind} {namespace}/{name}"
            )),
            _ => None,
        },
        Err(error) => Some(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optional_sources_need_nothing_and_the_rest_are_listed_in_order() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "web" },
            "spec": {
                "containers": [],
                "volumes": [
                    { "name": "a", "configMap": { "name": "settings" } },
                    { "name": "b", "configMap": { "name": "maybe", "optional": true } },
                    { "name": "c", "secret": { "secretName": "token" } },
                    { "name": "d", "persistentVolumeClaim": { "claimName": "data" } },
                    { "name": "e", "projected": { "sources": [
                        { "configMap": { "name": "kube-root-ca.crt" } },
                        { "serviceAccountToken": { "path": "token" } },
                        { "secret": { "name": "opt", "optional": true } },
                    ] } },
                    { "name": "f", "ephemeral": { "volumeClaimTemplate": { "spec": {} } } },
                    { "name": "g", "emptyDir": {} },
                ],
            },
        }))
        .unwrap();
        let needs: Vec<(String, Object)> = volume_needs(&pod)
            .unwrap()
            .iter()
            .map(|n| (n.volume.clone(), n.object.clone()))
            .collect();
        assert_eq!(
            needs,
            [
                ("a".into(), Object::ConfigMap("settings".into())),
                ("c".into(), Object::Secret("token".into())),
                ("d".into(), Object::Claim("data".into())),
                ("e".into(), Object::ConfigMap("kube-root-ca.crt".into())),
                ("f".into(), Object::Claim("web-f".into())),
            ]
        );
    }

    #[test]
    fn env_reads_env_from_before_env_and_skips_optional_ones() {
        let container: Container = serde_json::from_value(json!({
            "name": "c",
            "envFrom": [
                { "secretRef": { "name": "creds" } },
                { "configMapRef": { "name": "opt", "optional": true } },
            ],
            "env": [
                { "name": "A", "value": "1" },
                { "name": "B", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "mode" } } },
                { "name": "C", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
            ],
        }))
        .unwrap();
        assert_eq!(
            env_needs(&container),
            [
                EnvNeed {
                    object: Object::Secret("creds".into()),
                    key: None
                },
                EnvNeed {
                    object: Object::ConfigMap("settings".into()),
                    key: Some("mode".into())
                },
            ]
        );
    }

    #[test]
    fn the_kubelets_words_for_a_missing_object() {
        assert_eq!(
            Object::Secret("absent".into()).not_found(),
            "secret \"absent\" not found"
        );
        assert_eq!(
            Object::ConfigMap("absent".into()).not_found(),
            "configmap \"absent\" not found"
        );
    }
}
