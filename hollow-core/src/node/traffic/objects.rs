//! The kubelet's watch on each ConfigMap and Secret its pods refer to
//! (pkg/kubelet/util/manager/watch_based_manager.go): started when the first pod that
//! refers to an object arrives, stopped when the last one is gone, or once the object
//! is seen to be immutable.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use parking_lot::Mutex;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::token::TokenSource;
use super::watch::{self, Watched};

/// The kind of a watched object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    ConfigMap,
    Secret,
}

/// What a pod makes its node ask for in the kubelet profile, read before the pod is
/// slimmed (which drops its volumes).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PodTraffic {
    /// The ConfigMaps and Secrets it refers to, in its namespace.
    objects: Box<[(Kind, Box<str>)]>,
    /// Its projected service account tokens.
    pub tokens: Box<[TokenSource]>,
}

impl PodTraffic {
    /// What `pod` makes its node ask for; `None` when nothing.
    pub(crate) fn of(pod: &Pod) -> Option<Box<Self>> {
        let spec = pod.spec.as_ref()?;
        let mut objects = BTreeSet::new();
        // `VisitPodConfigmapNames` and `VisitPodSecretNames` in pkg/api/v1/pod/util.go:
        // optional references count too.
        for secret in spec.image_pull_secrets.iter().flatten() {
            objects.insert((Kind::Secret, secret.name.clone()));
        }
        let ephemeral = spec
            .ephemeral_containers
            .iter()
            .flatten()
            .map(|c| (c.env.as_ref(), c.env_from.as_ref()));
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c: &Container| (c.env.as_ref(), c.env_from.as_ref()))
            .chain(ephemeral);
        for (env, env_from) in containers {
            for source in env_from.into_iter().flatten() {
                if let Some(map) = &source.config_map_ref {
                    objects.insert((Kind::ConfigMap, map.name.clone()));
                }
                if let Some(secret) = &source.secret_ref {
                    objects.insert((Kind::Secret, secret.name.clone()));
                }
            }
            for from in env
                .into_iter()
                .flatten()
                .filter_map(|v| v.value_from.as_ref())
            {
                if let Some(key) = &from.config_map_key_ref {
                    objects.insert((Kind::ConfigMap, key.name.clone()));
                }
                if let Some(key) = &from.secret_key_ref {
                    objects.insert((Kind::Secret, key.name.clone()));
                }
            }
        }
        let mut tokens = Vec::new();
        let service_account = spec.service_account_name.as_deref().unwrap_or("default");
        for volume in spec.volumes.iter().flatten() {
            if let Some(map) = &volume.config_map {
                objects.insert((Kind::ConfigMap, map.name.clone()));
            }
            if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                objects.insert((Kind::Secret, name));
            }
            if let Some(reference) = volume
                .csi
                .as_ref()
                .and_then(|csi| csi.node_publish_secret_ref.as_ref())
            {
                objects.insert((Kind::Secret, reference.name.clone()));
            }
            for source in volume
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
            {
                if let Some(map) = &source.config_map {
                    objects.insert((Kind::ConfigMap, map.name.clone()));
                }
                if let Some(secret) = &source.secret {
                    objects.insert((Kind::Secret, secret.name.clone()));
                }
                if let Some(token) = &source.service_account_token {
                    tokens.push(TokenSource::new(
                        &volume.name,
                        service_account,
                        token.audience.as_deref(),
                        token.expiration_seconds,
                    ));
                }
            }
        }
        objects.retain(|(_, name)| !name.is_empty());
        if objects.is_empty() && tokens.is_empty() {
            return None;
        }
        Some(Box::new(Self {
            objects: objects
                .into_iter()
                .map(|(kind, name)| (kind, name.into_boxed_str()))
                .collect(),
            tokens: tokens.into_boxed_slice(),
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: Kind,
    namespace: Box<str>,
    name: Box<str>,
}

struct Held {
    pods: u32,
    task: AbortHandle,
}

/// A node's watches on the objects its pods refer to.
#[derive(Default)]
pub(crate) struct NodeTraffic {
    watches: Mutex<HashMap<Key, Held>>,
}

/// The reflector's minimum watch timeout for these watches, 30 min.
const OBJECT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

impl NodeTraffic {
    /// Counts a pod's references, starting a watch on each object first referred to.
    pub(crate) fn register(
        &self,
        client: &kube::Client,
        cancel: &CancellationToken,
        namespace: &str,
        pod: &PodTraffic,
    ) {
        let mut watches = self.watches.lock();
        for (kind, name) in &pod.objects {
            let key = Key {
                kind: *kind,
                namespace: namespace.into(),
                name: name.clone(),
            };
            if let Some(held) = watches.get_mut(&key) {
                held.pods += 1;
                continue;
            }
            let resource = match kind {
                Kind::ConfigMap => "configmaps",
                Kind::Secret => "secrets",
            };
            let watched = Watched {
                path: format!("/api/v1/namespaces/{namespace}/{resource}"),
                fields: Some(format!("metadata.name={name}")),
                min_timeout: OBJECT_WATCH_TIMEOUT,
                until_immutable: true,
            };
            let task = tokio::spawn(watch::hold(client.clone(), watched, cancel.clone(), |_| {}));
            watches.insert(
                key,
                Held {
                    pods: 1,
                    task: task.abort_handle(),
                },
            );
        }
    }

    /// Drops a pod's references, stopping the watches no pod needs any more.
    pub(crate) fn unregister(&self, namespace: &str, pod: &PodTraffic) {
        let mut watches = self.watches.lock();
        for (kind, name) in &pod.objects {
            let key = Key {
                kind: *kind,
                namespace: namespace.into(),
                name: name.clone(),
            };
            if let Some(held) = watches.get_mut(&key) {
                held.pods -= 1;
                if held.pods == 0 {
                    held.task.abort();
                    watches.remove(&key);
                }
            }
        }
    }

    /// How many objects are watched.
    #[cfg(test)]
    pub(crate) fn watched(&self) -> usize {
        self.watches.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_refers_to_every_object_its_env_volumes_and_pull_secrets_name() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "ns" },
            "spec": {
                "serviceAccountName": "builder",
                "imagePullSecrets": [{ "name": "registry" }],
                "initContainers": [{ "name": "i", "envFrom": [{ "configMapRef": { "name": "init-env", "optional": true } }] }],
                "containers": [{ "name": "c", "env": [
                    { "name": "A", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "k" } } },
                ] }],
                "volumes": [
                    { "name": "a", "configMap": { "name": "settings" } },
                    { "name": "kube-api-access-x", "projected": { "sources": [
                        { "serviceAccountToken": { "path": "token", "expirationSeconds": 3607 } },
                        { "configMap": { "name": "kube-root-ca.crt" } },
                    ] } },
                ],
            },
        }))
        .unwrap();
        let traffic = PodTraffic::of(&pod).unwrap();
        let names: Vec<(Kind, &str)> = traffic.objects.iter().map(|(k, n)| (*k, &**n)).collect();
        assert_eq!(
            names,
            [
                (Kind::ConfigMap, "init-env"),
                (Kind::ConfigMap, "kube-root-ca.crt"),
                (Kind::ConfigMap, "settings"),
                (Kind::Secret, "creds"),
                (Kind::Secret, "registry"),
            ]
        );
        assert_eq!(
            &*traffic.tokens,
            [TokenSource::new(
                "kube-api-access-x",
                "builder",
                None,
                Some(3607)
            )]
        );
    }

    #[test]
    fn a_pod_without_references_asks_for_nothing() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": { "containers": [{ "name": "c" }] },
        }))
        .unwrap();
        assert_eq!(PodTraffic::of(&pod), None);
    }

    #[tokio::test]
    async fn an_object_is_watched_while_a_pod_refers_to_it() {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let cancel = CancellationToken::new();
        let pod = PodTraffic {
            objects: Box::new([(Kind::ConfigMap, "settings".into())]),
            tokens: Box::new([]),
        };
        let node = NodeTraffic::default();
        node.register(&client, &cancel, "ns", &pod);
        node.register(&client, &cancel, "ns", &pod);
        node.register(&client, &cancel, "other", &pod);
        assert_eq!(node.watched(), 2);
        node.unregister("ns", &pod);
        assert_eq!(node.watched(), 2);
        node.unregister("ns", &pod);
        node.unregister("other", &pod);
        assert_eq!(node.watched(), 0);
        cancel.cancel();
    }
}
