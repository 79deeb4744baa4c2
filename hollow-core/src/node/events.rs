//! Events as the kubelet records them: core/v1 Events from source `kubelet` on the
//! node's host, about pods (a container's `fieldPath` included) and about the node,
//! with the reasons and messages of the kubelet's code (pkg/kubelet/events/event.go
//! and the callers cited at each reason below).
//!
//! Writing them never holds a pod or a heartbeat back: each is sent by a task of its
//! own, at most [`IN_FLIGHT`] at once per process; past [`QUEUED`] waiting, new ones
//! are dropped, as client-go's broadcaster drops events when its queue is full. An
//! event identical to one recorded in the last ten minutes (same object, reason,
//! message and type) updates that one's `count` and `lastTimestamp` instead, as
//! client-go's `EventCorrelator` does (tools/record/events_cache.go).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::Semaphore;

/// Events being written at once, per process.
pub(crate) const IN_FLIGHT: usize = 16;
/// Events waiting to be written, per process, past which new ones are dropped
/// (client-go's `maxQueuedEvents` is 1000 per broadcaster).
pub(crate) const QUEUED: usize = 1000;
/// How long an identical event is counted on the first one (client-go's
/// `defaultAggregateIntervalInSeconds` and its LRU's reach).
const SAME_EVENT_WINDOW: Duration = Duration::from_secs(600);
/// Identical-event records kept per process (client-go's `maxLruCacheEntries`).
const REMEMBERED: usize = 4096;

static WRITERS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(IN_FLIGHT));
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// Recent events by a digest of what makes them identical: the Event's name, its
/// count, and when it was last recorded.
static RECENT: LazyLock<Mutex<HashMap<u64, Recent>>> = LazyLock::new(Default::default);

#[derive(Debug, Clone)]
struct Recent {
    name: String,
    count: i32,
    at: Instant,
}

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Normal,
    Warning,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        }
    }
}

/// The object an event is about.
pub(crate) fn pod_reference(
    namespace: &str,
    name: &str,
    uid: &str,
    field_path: Option<String>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        field_path,
        ..Default::default()
    }
}

/// The kubelet's reference to its node: the node's name as its UID too
/// (`nodeRef` in pkg/kubelet/kubelet.go).
pub(crate) fn node_reference(node: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        name: Some(node.into()),
        uid: Some(node.into()),
        ..Default::default()
    }
}

/// A container's field path, as the kubelet's `GenerateContainerRef` writes it.
pub(crate) fn container_field_path(init: bool, name: &str) -> String {
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

/// Records an event about `object` from the kubelet on `host`, in the background.
pub(crate) fn record(
    client: &kube::Client,
    host: &str,
    object: ObjectReference,
    kind: Kind,
    reason: &str,
    message: String,
) {
    if WAITING.fetch_add(1, Ordering::Relaxed) >= QUEUED {
        WAITING.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(reason, "event dropped: too many waiting");
        return;
    }
    let client = client.clone();
    let host = host.to_string();
    let reason = reason.to_string();
    // Stamped now, not when written: the Event's time and name keep the order events
    // were recorded in, whichever is written first.
    let now = Timestamp::now();
    tokio::spawn(async move {
        let permit = WRITERS.acquire().await;
        WAITING.fetch_sub(1, Ordering::Relaxed);
        if permit.is_err() {
            return;
        }
        if let Err(error) = write(&client, &host, object, kind, &reason, message, now).await {
            tracing::debug!(%error, reason, "event not recorded");
        }
    });
}

async fn write(
    client: &kube::Client,
    host: &str,
    object: ObjectReference,
    kind: Kind,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let namespace = object
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let key = BuildHasherDefault::<DefaultHasher>::default().hash_one((
        host,
        &object.kind,
        &object.namespace,
        &object.name,
        &object.uid,
        &object.field_path,
        kind.as_str(),
        reason,
        &message,
    ));
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let seen = {
        let mut recent = RECENT.lock();
        recent.retain(|_, r| r.at.elapsed() < SAME_EVENT_WINDOW);
        recent.get_mut(&key).map(|r| {
            r.count += 1;
            r.at = Instant::now();
            r.clone()
        })
    };
    if let Some(seen) = seen {
        let patch = json!({ "count": seen.count, "lastTimestamp": Time(now), "message": message });
        api.patch(
            &seen.name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await?;
        return Ok(());
    }
    let object_name = object.name.clone().unwrap_or_default();
    let event = Event {
        metadata: ObjectMeta {
            // client-go's `makeEvent`: the object's name and the time in hex nanoseconds.
            name: Some(format!("{object_name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: object,
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(kind.as_str().into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(host.into()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(host.into()),
        ..Default::default()
    };
    let created = api.create(&PostParams::default(), &event).await?;
    let mut recent = RECENT.lock();
    if recent.len() >= REMEMBERED {
        recent.clear();
    }
    recent.insert(
        key,
        Recent {
            name: created.metadata.name.unwrap_or_default(),
            count: 1,
            at: Instant::now(),
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_references_carry_the_kubelets_field_path() {
        assert_eq!(container_field_path(false, "web"), "spec.containers{web}");
        assert_eq!(
            container_field_path(true, "setup"),
            "spec.initContainers{setup}"
        );
        let node = node_reference("n1");
        assert_eq!(node.uid.as_deref(), Some("n1"));
        assert!(node.namespace.is_none());
    }
}
