//! The data of the ConfigMaps and Secrets a container reads (its `envFrom`, its
//! `configMapKeyRef`/`secretKeyRef` variables, the ConfigMap, Secret and projected
//! volumes it mounts), read when it starts and only when the fake runtime's userland
//! runs its command: nothing else reads values, and none is kept after the container
//! is made. The kubelet reads them through its ConfigMap and Secret managers
//! (pkg/kubelet/configmap, pkg/kubelet/secret); hollow checks that they exist before
//! (`super::references`), and reads them here with one GET each.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Volume};
use kube::Api;

/// A ConfigMap's or Secret's keys and their text (binary values decoded as UTF-8,
/// lossily), and which keys are text data (`envFrom` reads only those of a
/// ConfigMap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Data {
    pub(crate) values: BTreeMap<String, String>,
    pub(crate) text_keys: BTreeSet<String>,
}

/// The ConfigMaps and Secrets a container reads, by name (`None`: not found), and the
/// values its `fileKeyRef` variables read from files, by variable.
#[derive(Debug, Default)]
pub(crate) struct ObjectData {
    config_maps: HashMap<String, Option<Data>>,
    secrets: HashMap<String, Option<Data>>,
    env_files: BTreeMap<String, String>,
}

impl ObjectData {
    /// With the values of the container's `fileKeyRef` variables.
    pub(crate) fn with_env_files(mut self, values: BTreeMap<String, String>) -> Self {
        self.env_files = values;
        self
    }

    /// The value a `fileKeyRef` variable read from its file (`None`: an optional key
    /// its file lacks).
    pub(crate) fn env_file(&self, variable: &str) -> Option<&str> {
        self.env_files.get(variable).map(String::as_str)
    }

    /// A ConfigMap's data, if it was found.
    pub(crate) fn config_map(&self, name: &str) -> Option<&Data> {
        self.config_maps.get(name)?.as_ref()
    }

    /// A Secret's data, if it was found.
    pub(crate) fn secret(&self, name: &str) -> Option<&Data> {
        self.secrets.get(name)?.as_ref()
    }

    /// Reads what `container` of `pod` reads; nothing unless `wanted` (its command
    /// runs in the userland). A failed read leaves the object out, as not found.
    pub(crate) async fn read(
        client: &kube::Client,
        pod: &Pod,
        container: &Container,
        wanted: bool,
    ) -> Self {
        let mut data = ObjectData::default();
        if !wanted {
            return data;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let (maps, secrets) = referenced(pod, container);
        let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
        for name in maps {
            let found = config_maps.get_opt(&name).await.ok().flatten();
            data.config_maps.insert(name, found.map(config_map_data));
        }
        let secret_api = Api::<Secret>::namespaced(client.clone(), namespace);
        for name in secrets {
            let found = secret_api.get_opt(&name).await.ok().flatten();
            data.secrets.insert(name, found.map(secret_data));
        }
        data
    }

    /// Data known without the API (for tests of what is made of it).
    #[cfg(test)]
    pub(crate) fn with(mut self, config_map: bool, name: &str, pairs: &[(&str, &str)]) -> Self {
        let values: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let text_keys = values.keys().cloned().collect();
        let data = Some(Data { values, text_keys });
        if config_map {
            self.config_maps.insert(name.into(), data);
        } else {
            self.secrets.insert(name.into(), data);
        }
        self
    }
}

fn config_map_data(map: ConfigMap) -> Data {
    let text = map.data.unwrap_or_default();
    let text_keys = text.keys().cloned().collect();
    let mut values = text;
    for (key, bytes) in map.binary_data.into_iter().flatten() {
        values.insert(key, String::from_utf8_lossy(&bytes.0).into_owned());
    }
    Data { values, text_keys }
}

fn secret_data(secret: Secret) -> Data {
    let values: BTreeMap<String, String> = secret
        .data
        .into_iter()
        .flatten()
        .map(|(key, bytes)| (key, String::from_utf8_lossy(&bytes.0).into_owned()))
        .collect();
    let text_keys = values.keys().cloned().collect();
    Data { values, text_keys }
}

/// The volumes of `pod` that `container` mounts.
fn mounted<'a>(pod: &'a Pod, container: &'a Container) -> impl Iterator<Item = &'a Volume> + 'a {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|mount| volumes.iter().find(|v| v.name == mount.name))
}

/// The names of the ConfigMaps and of the Secrets `container` reads.
fn referenced(pod: &Pod, container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for from in container.env_from.iter().flatten() {
        maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
        secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
    }
    for source in container
        .env
        .iter()
        .flatten()
        .filter_map(|v| v.value_from.as_ref())
    {
        maps.extend(source.config_map_key_ref.as_ref().map(|r| r.name.clone()));
        secrets.extend(source.secret_key_ref.as_ref().map(|r| r.name.clone()));
    }
    for volume in mounted(pod, container) {
        maps.extend(volume.config_map.as_ref().map(|c| c.name.clone()));
        secrets.extend(volume.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            maps.extend(source.config_map.as_ref().map(|c| c.name.clone()));
            secrets.extend(source.secret.as_ref().map(|s| s.name.clone()));
        }
    }
    (maps, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_container_reads_the_objects_its_env_and_mounts_name() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": {
                "containers": [{
                    "name": "c",
                    "envFrom": [{ "configMapRef": { "name": "settings" } }],
                    "env": [{ "name": "P", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "p" } } }],
                    "volumeMounts": [
                        { "name": "conf", "mountPath": "/etc/conf" },
                        { "name": "both", "mountPath": "/etc/both" },
                    ],
                }],
                "volumes": [
                    { "name": "conf", "configMap": { "name": "files" } },
                    { "name": "unmounted", "secret": { "secretName": "other" } },
                    { "name": "both", "projected": { "sources": [
                        { "configMap": { "name": "more" } },
                        { "secret": { "name": "keys" } },
                    ] } },
                ],
            },
        }))
        .unwrap();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let (maps, secrets) = referenced(&pod, container);
        assert_eq!(maps, ["files", "more", "settings"].map(String::from).into());
        assert_eq!(secrets, ["creds", "keys"].map(String::from).into());
    }
}
