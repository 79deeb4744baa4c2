//! The kubelet's watch on each ConfigMap and Secret its pods refer to
//! (pkg/kubelet/util/manager/watch_based_manager.go): started when the first pod that
//! refers to an object arrives, stopped when the last one is gone, or once the object
//! is seen to be immutable.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::token::TokenSource;
use super::watch::{self, Update, Watched};

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

impl Key {
    fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

struct Held {
    pods: u32,
    task: AbortHandle,
    view: Arc<ObjectView>,
}

/// An object as its watch last saw it: its data keys, or `None` when it is not there;
/// meaningful once `synced`.
#[derive(Default)]
struct ObjectView {
    state: Mutex<(bool, Option<Vec<String>>)>,
    synced: Notify,
}

impl ObjectView {
    fn update(&self, update: Update) {
        let mut state = self.state.lock();
        match update {
            Update::Present(keys) => state.1 = Some(keys),
            Update::Gone => state.1 = None,
            Update::Restart => *state = (false, None),
            Update::Synced => {
                state.0 = true;
                self.synced.notify_waiters();
            }
        }
    }

    fn seen(&self) -> Option<Option<Vec<String>>> {
        let state = self.state.lock();
        state.0.then(|| state.1.clone())
    }
}

/// How long a lookup waits for an object's watch to have the object, as the kubelet's
/// `objectCache.Get` waits (1 s), before the node reads it instead.
const SYNC_PATIENCE: Duration = Duration::from_secs(1);

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
            let key = Key::new(*kind, namespace, name);
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
            let view = Arc::new(ObjectView::default());
            let seen = view.clone();
            let task = tokio::spawn(watch::hold(
                client.clone(),
                watched,
                cancel.clone(),
                move |update| seen.update(update),
            ));
            watches.insert(
                key,
                Held {
                    pods: 1,
                    task: task.abort_handle(),
                    view,
                },
            );
        }
    }

    /// Drops a pod's references, stopping the watches no pod needs any more.
    pub(crate) fn unregister(&self, namespace: &str, pod: &PodTraffic) {
        let mut watches = self.watches.lock();
        for (kind, name) in &pod.objects {
            let key = Key::new(*kind, namespace, name);
            if let Some(held) = watches.get_mut(&key) {
                held.pods -= 1;
                if held.pods == 0 {
                    held.task.abort();
                    watches.remove(&key);
                }
            }
        }
    }

    /// The object as its watch sees it (`Some(None)`: not there; `Some(Some(keys))`:
    /// there, with these data keys), as the kubelet's ConfigMap and Secret managers
    /// answer from their watches; `None` when it is not watched, or its watch has not
    /// synced within a second.
    pub(crate) async fn lookup(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Option<Option<Vec<String>>> {
        let key = Key::new(kind, namespace, name);
        let view = self.watches.lock().get(&key)?.view.clone();
        let synced = view.synced.notified();
        if let Some(seen) = view.seen() {
            return Some(seen);
        }
        tokio::time::timeout(SYNC_PATIENCE, synced).await.ok()?;
        view.seen()
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

    #[tokio::test(start_paused = true)]
    async fn a_lookup_answers_from_the_watch_once_synced_and_none_otherwise() {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let cancel = CancellationToken::new();
        let node = NodeTraffic::default();
        let pod = PodTraffic {
            objects: Box::new([(Kind::Secret, "creds".into())]),
            tokens: Box::new([]),
        };
        node.register(&client, &cancel, "ns", &pod);
        let view = node.watches.lock().values().next().unwrap().view.clone();
        // Not watched: the node reads it instead.
        assert_eq!(node.lookup(Kind::ConfigMap, "ns", "creds").await, None);
        // Watched, not synced within a second: read too.
        assert_eq!(node.lookup(Kind::Secret, "ns", "creds").await, None);
        view.update(Update::Restart);
        view.update(Update::Synced);
        assert_eq!(node.lookup(Kind::Secret, "ns", "creds").await, Some(None));
        view.update(Update::Present(vec!["password".into()]));
        assert_eq!(
            node.lookup(Kind::Secret, "ns", "creds").await,
            Some(Some(vec!["password".into()]))
        );
        view.update(Update::Gone);
        assert_eq!(node.lookup(Kind::Secret, "ns", "creds").await, Some(None));
        // A re-list: unknown until synced again, then answered.
        view.update(Update::Restart);
        let later = {
            let view = view.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                view.update(Update::Present(vec![]));
                view.update(Update::Synced);
            })
        };
        assert_eq!(
            node.lookup(Kind::Secret, "ns", "creds").await,
            Some(Some(vec![]))
        );
        later.await.unwrap();
        cancel.cancel();
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
