//! The kubelet's watch on each ConfigMap and Secret its pods refer to
//! (pkg/kubelet/util/manager/watch_based_manager.go): started when the first pod that
//! refers to an object arrives, stopped when the last one is gone, once the object is
//! seen to be immutable, or when it has not been read for five sync periods (5 min,
//! checked every minute) and started again by the next read. Objects a volume or an
//! image pull secret refers to are read every sync (by the volume manager, and by each
//! pod sync), so only those that pods' environments alone refer to go idle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;
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
    /// The ConfigMaps and Secrets it refers to, in its namespace, and whether a volume
    /// or an image pull secret refers to each (read every sync, so never idle).
    objects: Box<[(Kind, Box<str>, bool)]>,
    /// Its projected service account tokens.
    pub tokens: Box<[TokenSource]>,
}

impl PodTraffic {
    /// What `pod` makes its node ask for; `None` when nothing.
    pub(crate) fn of(pod: &Pod) -> Option<Box<Self>> {
        let spec = pod.spec.as_ref()?;
        let mut objects = References::default();
        // `VisitPodConfigmapNames` and `VisitPodSecretNames` in pkg/api/v1/pod/util.go:
        // optional references count too.
        for secret in spec.image_pull_secrets.iter().flatten() {
            objects.synced(Kind::Secret, &secret.name);
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
                    objects.env(Kind::ConfigMap, &map.name);
                }
                if let Some(secret) = &source.secret_ref {
                    objects.env(Kind::Secret, &secret.name);
                }
            }
            for from in env
                .into_iter()
                .flatten()
                .filter_map(|v| v.value_from.as_ref())
            {
                if let Some(key) = &from.config_map_key_ref {
                    objects.env(Kind::ConfigMap, &key.name);
                }
                if let Some(key) = &from.secret_key_ref {
                    objects.env(Kind::Secret, &key.name);
                }
            }
        }
        let mut tokens = Vec::new();
        let service_account = spec.service_account_name.as_deref().unwrap_or("default");
        for volume in spec.volumes.iter().flatten() {
            if let Some(map) = &volume.config_map {
                objects.synced(Kind::ConfigMap, &map.name);
            }
            for secret in volume_secrets(volume) {
                objects.synced(Kind::Secret, secret);
            }
            for source in volume
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
            {
                if let Some(map) = &source.config_map {
                    objects.synced(Kind::ConfigMap, &map.name);
                }
                if let Some(secret) = &source.secret {
                    objects.synced(Kind::Secret, &secret.name);
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
        objects.0.retain(|(_, name), _| !name.is_empty());
        if objects.0.is_empty() && tokens.is_empty() {
            return None;
        }
        Some(Box::new(Self {
            objects: objects
                .0
                .into_iter()
                .map(|((kind, name), synced)| (kind, name.into_boxed_str(), synced))
                .collect(),
            tokens: tokens.into_boxed_slice(),
        }))
    }
}

/// A pod's references, each with whether something reads it every sync.
#[derive(Default)]
struct References(BTreeMap<(Kind, String), bool>);

impl References {
    /// Referred to by a volume or as an image pull secret: read every sync.
    fn synced(&mut self, kind: Kind, name: &str) {
        self.0.insert((kind, name.to_string()), true);
    }

    /// Referred to by a container's environment: read when a container starts.
    fn env(&mut self, kind: Kind, name: &str) {
        self.0.entry((kind, name.to_string())).or_insert(false);
    }
}

/// The Secrets a volume's own source names (`VisitPodSecretNames`): a secret volume,
/// and the credentials of CSI and in-tree volume plugins.
fn volume_secrets(volume: &k8s_openapi::api::core::v1::Volume) -> Vec<&str> {
    let mut names = Vec::new();
    if let Some(secret) = &volume.secret {
        names.extend(secret.secret_name.as_deref());
    }
    if let Some(azure) = &volume.azure_file {
        names.push(azure.secret_name.as_str());
    }
    if let Some(scale_io) = &volume.scale_io {
        names.push(scale_io.secret_ref.name.as_str());
    }
    let references = [
        volume
            .csi
            .as_ref()
            .and_then(|v| v.node_publish_secret_ref.as_ref()),
        volume.cephfs.as_ref().and_then(|v| v.secret_ref.as_ref()),
        volume.cinder.as_ref().and_then(|v| v.secret_ref.as_ref()),
        volume
            .flex_volume
            .as_ref()
            .and_then(|v| v.secret_ref.as_ref()),
        volume.rbd.as_ref().and_then(|v| v.secret_ref.as_ref()),
        volume.iscsi.as_ref().and_then(|v| v.secret_ref.as_ref()),
        volume
            .storageos
            .as_ref()
            .and_then(|v| v.secret_ref.as_ref()),
    ];
    names.extend(references.into_iter().flatten().map(|r| r.name.as_str()));
    names
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
    /// To start the watch again after it went idle.
    client: kube::Client,
    cancel: CancellationToken,
}

impl Held {
    fn start(client: &kube::Client, cancel: &CancellationToken, key: &Key) -> Self {
        let view = Arc::new(ObjectView::new());
        Self {
            pods: 0,
            task: watch_until_idle(client, cancel, key, view.clone()),
            view,
            client: client.clone(),
            cancel: cancel.clone(),
        }
    }

    /// Starts the watch again if it went idle.
    fn wake(&mut self, key: &Key) {
        let woken = std::mem::replace(&mut self.view.state.lock().idle, false);
        if woken {
            self.task = watch_until_idle(&self.client, &self.cancel, key, self.view.clone());
        }
    }
}

/// Watches `key` until its watch ends (the object is immutable, or the node stops) or
/// it goes idle.
fn watch_until_idle(
    client: &kube::Client,
    cancel: &CancellationToken,
    key: &Key,
    view: Arc<ObjectView>,
) -> AbortHandle {
    let resource = match key.kind {
        Kind::ConfigMap => "configmaps",
        Kind::Secret => "secrets",
    };
    let watched = Watched {
        path: format!("/api/v1/namespaces/{}/{resource}", key.namespace),
        fields: Some(format!("metadata.name={}", key.name)),
        min_timeout: OBJECT_WATCH_TIMEOUT,
        until_immutable: true,
    };
    let seen = view.clone();
    let hold = watch::hold(client.clone(), watched, cancel.clone(), move |update| {
        seen.update(update)
    });
    tokio::spawn(async move {
        tokio::select! {
            _ = hold => {}
            () = view.until_idle() => {}
        }
    })
    .abort_handle()
}

/// An object as its watch last saw it: its data keys, or `None` when it is not there;
/// meaningful once `synced`.
struct ObjectView {
    state: Mutex<ViewState>,
    synced: Notify,
    /// Pods that refer to it from a volume or as an image pull secret.
    read_every_sync: AtomicU32,
}

struct ViewState {
    synced: bool,
    keys: Option<Vec<String>>,
    last_read: Instant,
    /// The watch stopped for want of reads.
    idle: bool,
}

impl ObjectView {
    fn new() -> Self {
        Self {
            state: Mutex::new(ViewState {
                synced: false,
                keys: None,
                last_read: Instant::now(),
                idle: false,
            }),
            synced: Notify::new(),
            read_every_sync: AtomicU32::new(0),
        }
    }

    fn update(&self, update: Update) {
        let mut state = self.state.lock();
        match update {
            Update::Present(keys) => state.keys = Some(keys),
            Update::Gone => state.keys = None,
            Update::Restart => (state.synced, state.keys) = (false, None),
            Update::Synced => {
                state.synced = true;
                self.synced.notify_waiters();
            }
        }
    }

    fn seen(&self) -> Option<Option<Vec<String>>> {
        let state = self.state.lock();
        state.synced.then(|| state.keys.clone())
    }

    /// Returns once the object has gone unread for [`MAX_IDLE`] with its watch synced,
    /// at the next of the kubelet's one-minute checks, marking it idle and unsynced.
    async fn until_idle(&self) {
        let mut next = self.state.lock().last_read + MAX_IDLE;
        loop {
            let jitter = Duration::from_millis(rand::rng().random_range(0..=IDLE_CHECK_MS));
            tokio::time::sleep_until(next + jitter).await;
            let now = Instant::now();
            let mut state = self.state.lock();
            if self.read_every_sync.load(Ordering::Relaxed) > 0 {
                state.last_read = now;
            } else if state.synced && state.last_read + MAX_IDLE <= now {
                state.idle = true;
                (state.synced, state.keys) = (false, None);
                return;
            }
            next = (state.last_read + MAX_IDLE).max(now + Duration::from_millis(IDLE_CHECK_MS));
        }
    }
}

/// How long the kubelet keeps watching an object no one reads: five sync periods
/// (`NewWatchBasedManager`, `maxIdleTime := resyncInterval * 5`).
const MAX_IDLE: Duration = Duration::from_secs(300);
/// The kubelet checks for idle watches once a minute (`startRecycleIdleWatch`).
const IDLE_CHECK_MS: u64 = 60_000;

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
    /// Counts a pod's references, starting a watch on each object first referred to
    /// (one that went idle starts again with the next read, as the kubelet's does).
    pub(crate) fn register(
        &self,
        client: &kube::Client,
        cancel: &CancellationToken,
        namespace: &str,
        pod: &PodTraffic,
    ) {
        let mut watches = self.watches.lock();
        for (kind, name, read_every_sync) in &pod.objects {
            let key = Key::new(*kind, namespace, name);
            let held = watches
                .entry(key.clone())
                .or_insert_with(|| Held::start(client, cancel, &key));
            held.pods += 1;
            if *read_every_sync {
                held.view.read_every_sync.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops a pod's references, stopping the watches no pod needs any more.
    pub(crate) fn unregister(&self, namespace: &str, pod: &PodTraffic) {
        let mut watches = self.watches.lock();
        for (kind, name, read_every_sync) in &pod.objects {
            let key = Key::new(*kind, namespace, name);
            if let Some(held) = watches.get_mut(&key) {
                held.pods -= 1;
                if *read_every_sync {
                    held.view.read_every_sync.fetch_sub(1, Ordering::Relaxed);
                }
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
    /// synced within a second. A read: a watch that went idle starts again.
    pub(crate) async fn lookup(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Option<Option<Vec<String>>> {
        let key = Key::new(kind, namespace, name);
        let view = {
            let mut watches = self.watches.lock();
            let held = watches.get_mut(&key)?;
            held.view.state.lock().last_read = Instant::now();
            held.wake(&key);
            held.view.clone()
        };
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

    /// How many objects are watched and not idle.
    #[cfg(test)]
    pub(crate) fn watching(&self) -> usize {
        let watches = self.watches.lock();
        watches
            .values()
            .filter(|h| !h.view.state.lock().idle)
            .count()
    }
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
