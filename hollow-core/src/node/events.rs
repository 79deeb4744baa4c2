//! Events as the kubelet records them: core/v1 Events from source `kubelet` on the
//! node's host, about pods (a container's `fieldPath` included) and about the node,
//! with the reasons and messages of the kubelet's code (pkg/kubelet/events/event.go
//! and the callers cited at each reason below).
//!
//! Writing them never holds a pod or a heartbeat back. As client-go's broadcaster
//! writes a kubelet's events (tools/record/event.go, `recordToSink`), each node's
//! events wait in a queue of their own and are written one at a time, oldest first;
//! past [`NODE_QUEUED`] waiting for a node, new ones are dropped. An event that cannot
//! reach the API server (a transport error, or a 429 or 5xx that client-go's REST
//! client would have retried) is tried [`WRITE_ATTEMPTS`] times, the first retry after
//! a random part of [`RETRY_AFTER`] and the others after all of it, while the node's
//! later events wait; one the API server refuses otherwise is dropped. Only the
//! queues cost memory, so the process bounds them too: past [`QUEUED`] waiting across
//! its nodes new ones are dropped, and at most [`IN_FLIGHT`] are written at once. An
//! idle node holds no queue and no task.
//!
//! An event identical to one recorded in the last ten minutes (same object, reason,
//! message and type) updates that one's `count` and `lastTimestamp` instead, as
//! client-go's `EventCorrelator` does (tools/record/events_cache.go), and, as its
//! `EventSourceObjectSpamFilter` does there, each object's events from a node pass
//! a token bucket of 25 that refills one every 5 minutes: past it, an event is
//! counted (a later repeat carries the count) but not written.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;
use tokio::sync::Semaphore;

use super::register::is_transient;

/// Events being written at once, per process.
pub(crate) const IN_FLIGHT: usize = 16;
/// Events waiting to be written, per node, past which its new ones are dropped
/// (client-go's `maxQueuedEvents`, its broadcaster's queue).
pub(crate) const NODE_QUEUED: usize = 1000;
/// Events waiting to be written across the nodes of a process, past which new ones
/// are dropped: the bound on their memory (each is an [`Event`] and its strings, a
/// kilobyte or two), reached only when the API server falls behind or away.
pub(crate) const QUEUED: usize = 10_000;
/// Tries to write an event while the API server cannot be reached (client-go's
/// `maxTriesPerEvent`).
const WRITE_ATTEMPTS: u32 = 12;
/// The wait between tries (client-go's `defaultSleepDuration`); the first is a random
/// part of it, so that nodes cut off together do not retry together.
const RETRY_AFTER: Duration = Duration::from_secs(10);
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
/// Events waiting across the process's queues.
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// Each node's waiting events, by the node's name; a node has an entry only while a
/// task is writing its events, and the task removes it when none are left.
static QUEUES: LazyLock<Mutex<HashMap<Box<str>, NodeQueue>>> = LazyLock::new(Default::default);

/// Recent events by a digest of what makes them identical: the Event's name, its
/// count, and when it was last recorded.
static RECENT: LazyLock<Mutex<HashMap<u64, Recent>>> = LazyLock::new(Default::default);
/// The spam filter's buckets by a digest of source and object: tokens left, and when
/// they were counted.
static SPAM: LazyLock<Mutex<HashMap<u64, (f64, Instant)>>> = LazyLock::new(Default::default);

/// A node's waiting events and a sign of life of the task writing them.
struct NodeQueue {
    waiting: VecDeque<Write>,
    /// Held by the writing task; gone when the task was dropped unfinished (its
    /// runtime shut down), and then the queue is replaced by the next event.
    writer: Weak<()>,
}

impl NodeQueue {
    /// Whether a task is writing the queue's events.
    fn written(&self) -> bool {
        self.writer.strong_count() > 0
    }
}

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
    // As the broadcaster's queue, a full one drops the event before it is counted.
    let node_full = QUEUES
        .lock()
        .get(host)
        .is_some_and(|queue| queue.written() && queue.waiting.len() >= NODE_QUEUED);
    if node_full || WAITING.fetch_add(1, Ordering::Relaxed) >= QUEUED {
        if !node_full {
            WAITING.fetch_sub(1, Ordering::Relaxed);
        }
        tracing::debug!(reason, "event dropped: too many waiting");
        return;
    }
    // Stamped now, not when written: the Event's time and name keep the order events
    // were recorded in.
    let allowed = spam_allows(host, &object);
    let write = Write::new(host, object, kind, reason, message, Timestamp::now());
    if !allowed {
        WAITING.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(reason, "event dropped by the spam filter");
        return;
    }
    let mut queues = QUEUES.lock();
    match queues.get_mut(host) {
        Some(queue) if queue.written() => queue.waiting.push_back(write),
        _ => {
            let writer = Arc::new(());
            let queue = NodeQueue {
                waiting: VecDeque::from([write]),
                writer: Arc::downgrade(&writer),
            };
            if let Some(stale) = queues.insert(host.into(), queue) {
                WAITING.fetch_sub(stale.waiting.len(), Ordering::Relaxed);
            }
            tokio::spawn(write_in_turn(client.clone(), host.into(), writer));
        }
    }
}

/// Writes `host`'s waiting events one at a time until none are left, holding
/// `_writer` meanwhile.
async fn write_in_turn(client: kube::Client, host: Box<str>, _writer: Arc<()>) {
    while let Some(write) = next_waiting(&host) {
        WAITING.fetch_sub(1, Ordering::Relaxed);
        let api: Api<Event> = Api::namespaced(client.clone(), &write.namespace());
        // Boxed: the task holds the futures of its requests only while it writes.
        Box::pin(write_with_tries(&api, &write)).await;
    }
}

/// The oldest of `host`'s waiting events; when there is none, the node's queue is
/// removed (under the same lock a new event finds it by, so none is left behind).
fn next_waiting(host: &str) -> Option<Write> {
    let mut queues = QUEUES.lock();
    let next = queues.get_mut(host)?.waiting.pop_front();
    if next.is_none() {
        queues.remove(host);
    }
    next
}

/// Writes one event, trying again while the API server cannot be reached.
async fn write_with_tries(api: &Api<Event>, write: &Write) {
    for attempt in 1..=WRITE_ATTEMPTS {
        let sent = match WRITERS.acquire().await {
            Ok(_permit) => write.send(api).await,
            Err(_) => return,
        };
        match sent {
            Ok(()) => return,
            Err(error) if attempt < WRITE_ATTEMPTS && is_transient(&error) => {
                tracing::debug!(%error, attempt, "event not recorded yet; retrying");
                tokio::time::sleep(retry_delay(attempt)).await;
            }
            Err(error) => {
                tracing::debug!(%error, attempt, "event not recorded");
                return;
            }
        }
    }
}

/// The wait after the `attempt`th try failed: a random part of [`RETRY_AFTER`] after
/// the first, all of it after the others (`recordToSink`).
fn retry_delay(attempt: u32) -> Duration {
    if attempt == 1 {
        RETRY_AFTER.mul_f64(rand::rng().random_range(0.0..1.0))
    } else {
        RETRY_AFTER
    }
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

    /// Creates the Event, or counts a repeat on it. As client-go's recorder
    /// (`tools/record/event.go`), a repeat whose Event is gone (expired by the API
    /// server's TTL, or its creation dropped) creates it with the count so far; a
    /// creation that finds the Event there (an earlier process of the node wrote it)
    /// is not an error.
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
    use super::super::mock_tests::{mock_client, next, respond, status};
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

    fn record_about(client: &kube::Client, host: &str, pod: &str, reason: &str) {
        let object = pod_reference("queue", pod, &format!("uid-{pod}"), None);
        record(client, host, object, Kind::Normal, reason, reason.into());
    }

    /// The reason of the Event a request creates.
    fn created_reason(method: &http::Method, uri: &str, body: &serde_json::Value) -> String {
        assert_eq!(method, http::Method::POST);
        assert!(uri.starts_with("/api/v1/namespaces/queue/events"), "{uri}");
        body["reason"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_nodes_events_are_written_one_at_a_time_in_the_order_recorded() {
        let (client, mut handle) = mock_client();
        for reason in ["First", "Second", "Third"] {
            record_about(&client, "queue-node-a", "in-order", reason);
        }
        // Another node's events do not wait for this node's.
        record_about(&client, "queue-node-b", "elsewhere", "Other");
        let mut reasons = Vec::new();
        let mut held = Vec::new();
        for _ in 0..2 {
            let (method, uri, _, body, send) = next(&mut handle).await;
            reasons.push(created_reason(&method, &uri, &body));
            held.push((send, body));
        }
        reasons.sort();
        assert_eq!(reasons, ["First", "Other"]);
        // Node a's second event waits until its first is answered.
        let early = tokio::time::timeout(Duration::from_millis(300), handle.next_request());
        assert!(early.await.is_err(), "a node wrote two events at once");
        for (send, body) in held {
            respond(send, 201, body);
        }
        for expected in ["Second", "Third"] {
            let (method, uri, _, body, send) = next(&mut handle).await;
            assert_eq!(created_reason(&method, &uri, &body), expected);
            respond(send, 201, body);
        }
        // The queue is gone with its last event, and its task with it.
        tokio::time::timeout(Duration::from_secs(5), async {
            while QUEUES.lock().contains_key("queue-node-a") {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the node's queue removed once empty");
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_the_api_server_cannot_take_is_tried_again_and_one_it_refuses_is_dropped() {
        let (client, mut handle) = mock_client();
        record_about(&client, "queue-node-c", "refused", "Refused");
        record_about(&client, "queue-node-c", "unavailable", "Unavailable");
        let (method, uri, _, body, send) = next(&mut handle).await;
        assert_eq!(created_reason(&method, &uri, &body), "Refused");
        respond(send, 422, status(422, "Invalid"));
        let (method, uri, _, body, send) = next(&mut handle).await;
        assert_eq!(created_reason(&method, &uri, &body), "Unavailable");
        let refused_at = tokio::time::Instant::now();
        respond(send, 503, status(503, "ServiceUnavailable"));
        // The same event again, within client-go's first, randomised wait.
        let (method, uri, _, body, send) = next(&mut handle).await;
        assert_eq!(created_reason(&method, &uri, &body), "Unavailable");
        assert!(refused_at.elapsed() < RETRY_AFTER);
        respond(send, 201, body);
    }

    #[test]
    fn a_queue_left_by_a_runtime_that_shut_down_is_replaced() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        // The first runtime ends with its writer waiting for an answer.
        runtime().block_on(async {
            let (client, mut handle) = mock_client();
            record_about(&client, "queue-node-d", "left", "Left");
            let (_, _, _, body, _send) = next(&mut handle).await;
            assert_eq!(body["reason"], "Left");
        });
        runtime().block_on(async {
            let (client, mut handle) = mock_client();
            record_about(&client, "queue-node-d", "left", "Again");
            let (method, uri, _, body, send) = next(&mut handle).await;
            assert_eq!(created_reason(&method, &uri, &body), "Again");
            respond(send, 201, body);
        });
    }

    #[test]
    fn retries_wait_as_client_gos_recorder_does() {
        assert!((1..50).all(|_| retry_delay(1) < RETRY_AFTER));
        assert_eq!(retry_delay(2), RETRY_AFTER);
        assert_eq!(retry_delay(WRITE_ATTEMPTS - 1), RETRY_AFTER);
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
