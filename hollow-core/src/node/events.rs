//! Events as the kubelet records them: core/v1 Events from source `kubelet` on the
//! node's host, about pods (a container's `fieldPath` included) and about the node,
//! with the reasons and messages of the kubelet's code (pkg/kubelet/events/event.go
//! and the callers cited at each reason below).
//!
//! Writing them never holds a pod or a heartbeat back: each is sent by a task of its
//! own, at most [`IN_FLIGHT`] at once per process (one the API server fails for a while
//! is tried [`WRITE_ATTEMPTS`] times); past [`QUEUED`] waiting, new ones are dropped,
//! as client-go's broadcaster drops events when its queue is full. An
//! event identical to one recorded in the last ten minutes (same object, reason,
//! message and type) updates that one's `count` and `lastTimestamp` instead, as
//! client-go's `EventCorrelator` does (tools/record/events_cache.go), and, as its
//! `EventSourceObjectSpamFilter` does there, each object's events from a node pass
//! a token bucket of 25 that refills one every 5 minutes: past it, an event is
//! counted (a later repeat carries the count) but not written.

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

use super::register::is_transient;

/// Events being written at once, per process.
pub(crate) const IN_FLIGHT: usize = 16;
/// Events waiting to be written, per process, past which new ones are dropped
/// (client-go's `maxQueuedEvents` is 1000 per broadcaster).
pub(crate) const QUEUED: usize = 1000;
/// Tries to write an event while the API server answers with a transient error
/// (client-go's sink tries 12 times, 10 s apart; fewer here, as hollow nodes are many
/// and their events are held in memory meanwhile).
const WRITE_ATTEMPTS: u32 = 3;
/// The wait before a retry, times the attempts so far.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long an identical event is counted on the first one (client-go's
/// `defaultAggregateIntervalInSeconds` and its LRU's reach).
const SAME_EVENT_WINDOW: Duration = Duration::from_secs(600);
/// Identical-event records kept per process (client-go's `maxLruCacheEntries`).
const REMEMBERED: usize = 4096;

/// The spam filter's bucket per source and object (client-go's `defaultSpamBurst`)
/// and how long one token takes to come back (`defaultSpamQPS`, 1/300).
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL: Duration = Duration::from_secs(300);

static WRITERS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(IN_FLIGHT));
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// Recent events by a digest of what makes them identical: the Event's name, its
/// count, and when it was last recorded.
static RECENT: LazyLock<Mutex<HashMap<u64, Recent>>> = LazyLock::new(Default::default);
/// The spam filter's buckets by a digest of source and object: tokens left, and when
/// they were counted.
static SPAM: LazyLock<Mutex<HashMap<u64, (f64, Instant)>>> = LazyLock::new(Default::default);

/// Whether the spam filter lets an event about `object` from the kubelet on `host`
/// through (`getSpamKey` in tools/record/events_cache.go: the source and the object,
/// not the reason), taking a token if so.
fn spam_allows(host: &str, object: &ObjectReference) -> bool {
    let key = BuildHasherDefault::<DefaultHasher>::default().hash_one((
        host,
        &object.kind,
        &object.namespace,
        &object.name,
        &object.uid,
        &object.api_version,
    ));
    let now = Instant::now();
    let refilled = |(tokens, at): (f64, Instant)| {
        let back = now.duration_since(at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        (tokens + back).min(SPAM_BURST)
    };
    let mut buckets = SPAM.lock();
    if buckets.len() >= REMEMBERED {
        // A full bucket is as good as none.
        buckets.retain(|_, bucket| refilled(*bucket) < SPAM_BURST);
        if buckets.len() >= REMEMBERED {
            buckets.clear();
        }
    }
    let bucket = buckets.entry(key).or_insert((SPAM_BURST, now));
    let tokens = refilled(*bucket);
    let allowed = tokens >= 1.0;
    *bucket = (if allowed { tokens - 1.0 } else { tokens }, now);
    allowed
}

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
///
/// Whether it is new or a repeat is decided here, in the order events are recorded
/// (as client-go's correlator decides before its sink writes), so two identical
/// events recorded together make one Event counted twice.
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
    // Stamped now, not when written: the Event's time and name keep the order events
    // were recorded in, whichever is written first.
    let allowed = spam_allows(host, &object);
    let write = Write::new(host, object, kind, reason, message, Timestamp::now());
    if !allowed {
        WAITING.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(reason, "event dropped by the spam filter");
        return;
    }
    let api: Api<Event> = Api::namespaced(client.clone(), &write.namespace());
    tokio::spawn(async move {
        let mut waiting = true;
        for attempt in 1..=WRITE_ATTEMPTS {
            let sent = {
                let permit = WRITERS.acquire().await;
                if std::mem::take(&mut waiting) {
                    WAITING.fetch_sub(1, Ordering::Relaxed);
                }
                if permit.is_err() {
                    return;
                }
                // Boxed: an event waiting its turn holds only what it writes, not the
                // futures of the requests that write it.
                Box::pin(write.send(&api)).await
            };
            match sent {
                Ok(()) => return,
                Err(error) if attempt < WRITE_ATTEMPTS && is_transient(&error) => {
                    tracing::debug!(%error, attempt, "event not recorded yet; retrying");
                    tokio::time::sleep(RETRY_AFTER * attempt).await;
                }
                Err(error) => {
                    tracing::debug!(%error, "event not recorded");
                    return;
                }
            }
        }
    });
}

/// One event to write: a new Event, or a repeat counted on one recorded before.
struct Write {
    event: Event,
    /// Set when an identical event was recorded within [`SAME_EVENT_WINDOW`].
    repeat: Option<i32>,
}

impl Write {
    fn new(
        host: &str,
        object: ObjectReference,
        kind: Kind,
        reason: &str,
        message: String,
        now: Timestamp,
    ) -> Self {
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
        // client-go's `makeEvent`: the object's name and the time in hex nanoseconds.
        let fresh_name = format!(
            "{}.{:x}",
            object.name.as_deref().unwrap_or_default(),
            now.as_nanosecond()
        );
        let (name, count) = {
            let mut recent = RECENT.lock();
            recent.retain(|_, r| r.at.elapsed() < SAME_EVENT_WINDOW);
            if recent.len() >= REMEMBERED {
                recent.clear();
            }
            let entry = recent.entry(key).or_insert_with(|| Recent {
                name: fresh_name,
                count: 0,
                at: Instant::now(),
            });
            entry.count += 1;
            entry.at = Instant::now();
            (entry.name.clone(), entry.count)
        };
        let namespace = object.namespace.clone().filter(|n| !n.is_empty());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.unwrap_or_else(|| "default".into())),
                ..Default::default()
            },
            involved_object: object,
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(kind.as_str().into()),
            count: Some(count),
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
        Write {
            event,
            repeat: (count > 1).then_some(count),
        }
    }

    fn namespace(&self) -> String {
        self.event.metadata.namespace.clone().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.event.metadata.name.as_deref().unwrap_or_default()
    }

    /// Creates the Event, or counts a repeat on it. A repeat that overtakes the
    /// Event's creation creates it (with the count so far); the creation it overtook
    /// then finds it there, and that is not an error.
    async fn send(&self, api: &Api<Event>) -> Result<(), kube::Error> {
        if let Some(count) = self.repeat {
            let patch = json!({
                "count": count,
                "lastTimestamp": self.event.last_timestamp,
                "message": self.event.message,
            });
            match api
                .patch(
                    self.name(),
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await
            {
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                other => return other.map(drop),
            }
        }
        match api.create(&PostParams::default(), &self.event).await {
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            other => other.map(drop),
        }
    }
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

    #[test]
    fn an_objects_events_pass_the_spam_filter_25_at_once() {
        let pod = pod_reference("spam", "noisy", "uid-noisy", None);
        let passed = (0..40).filter(|_| spam_allows("node-a", &pod)).count();
        assert_eq!(passed, 25);
        // Another object, or the same one from another node, has its own bucket.
        let other = pod_reference("spam", "quiet", "uid-quiet", None);
        assert!(spam_allows("node-a", &other));
        assert!(spam_allows("node-b", &pod));
        // The container's field path is not part of the key.
        let container = pod_reference("spam", "noisy", "uid-noisy", Some("c".into()));
        assert!(!spam_allows("node-a", &container));
    }
}

/// A duration as Go prints a `time.Duration` truncated to milliseconds (`1.234s`,
/// `12ms`, `1m2.5s`, `0s`), as the kubelet's pull events show it.
pub(crate) fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let minutes = millis / 60_000;
    let rest = millis % 60_000;
    let seconds = format!("{}.{:03}", rest / 1000, rest % 1000);
    let seconds = seconds.trim_end_matches('0').trim_end_matches('.');
    if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod go_duration_tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_micros(300)), "0s");
        assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(go_duration(Duration::from_millis(1234)), "1.234s");
        assert_eq!(go_duration(Duration::from_millis(2000)), "2s");
        assert_eq!(go_duration(Duration::from_millis(62_500)), "1m2.5s");
    }
}
