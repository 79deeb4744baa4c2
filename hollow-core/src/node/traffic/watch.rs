//! A watch held as a client-go reflector holds it, its events read and dropped: the
//! requests a kubelet's informer sends, without the informer's cache.
//!
//! client-go v0.36's reflector (k8s.io/client-go/tools/cache/reflector.go) with the
//! `WatchListClient` feature on, as the 1.36 kubelet runs it: the first request is a
//! watch that streams the current objects (`sendInitialEvents=true`,
//! `resourceVersionMatch=NotOlderThan`, bookmarks allowed), each later one resumes from
//! the last resource version seen; every watch asks the server to end it after a random
//! time between the reflector's minimum watch timeout and twice that; a watch whose
//! resource version expired (410) starts over with the current objects; a failed one
//! is tried again after the reflector's back-off (0.8 s doubling to 30 s). An API
//! server that refuses the streaming list (its `WatchList` gate off) is asked for a
//! list of the current objects instead, as the reflector falls back to one
//! (`crate::streaming_list`).

use std::time::Duration;

use kube::api::{ListParams, WatchParams};
use kube::core::{Request, WatchEvent};
use rand::Rng;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::lines::Events;
use crate::backoff::Doubling;
use crate::streaming_list;

/// The reflector's back-off between failed watches.
const BACKOFF: Doubling = Doubling::new(Duration::from_millis(800), Duration::from_secs(30));

/// What a held watch reads of each object: enough to resume, the keys of a ConfigMap's
/// or Secret's data (for the lookups a node serves from the watch), and whether it is
/// immutable (its watch then stops, as the kubelet's watch-based manager stops it).
#[derive(Debug, Clone, Deserialize, Default)]
struct Seen {
    #[serde(default)]
    metadata: SeenMeta,
    #[serde(default)]
    immutable: Option<bool>,
    #[serde(default, deserialize_with = "keys")]
    data: Vec<String>,
    #[serde(default, rename = "binaryData", deserialize_with = "keys")]
    binary_data: Vec<String>,
}

/// The keys of a JSON object, its values skipped.
fn keys<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                keys.push(key);
            }
            Ok(keys)
        }
    }
    deserializer.deserialize_any(Keys)
}

/// What a held watch tells its owner.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Update {
    /// An object is there, with these data keys.
    Present(Vec<String>),
    /// An object was deleted.
    Gone,
    /// The initial objects have all been sent.
    Synced,
    /// The current objects are being sent again (first, or after a 410).
    Restart,
}

/// What a held watch reads of a list (when the API server refuses streaming lists):
/// the objects, and the version its watch resumes from.
#[derive(Debug, Clone, Deserialize, Default)]
struct SeenList {
    #[serde(default)]
    metadata: SeenMeta,
    #[serde(default)]
    items: Vec<Seen>,
}

#[derive(Debug, Clone, Deserialize, Default)]
struct SeenMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
}

/// One watched collection: its path and field selector, and the reflector's minimum
/// watch timeout.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    /// The collection's path, e.g. `/api/v1/services`.
    pub path: String,
    /// A field selector, e.g. `spec.nodeName=node-1`.
    pub fields: Option<String>,
    /// The reflector's minimum watch timeout (5 min for informers, 30 min for the
    /// kubelet's ConfigMap and Secret watches).
    pub min_timeout: Duration,
    /// Whether the watch ends once it sees an immutable object.
    pub until_immutable: bool,
}

impl Watched {
    /// A collection watched as an informer watches it (5 min minimum timeout).
    pub(crate) fn informer(path: impl Into<String>, fields: Option<String>) -> Self {
        Self {
            path: path.into(),
            fields,
            min_timeout: Duration::from_secs(300),
            until_immutable: false,
        }
    }

    /// The list a reflector asks for when the streaming list is refused: the current
    /// objects from the watch cache (`resourceVersion=0`).
    fn list(&self) -> Result<http::Request<Vec<u8>>, kube::Error> {
        let params = ListParams::default().match_any();
        let params = match &self.fields {
            Some(fields) => params.fields(fields),
            None => params,
        };
        Request::new(self.path.clone())
            .list(&params)
            .map_err(kube::Error::BuildRequest)
    }

    fn params(&self, initial: bool) -> WatchParams {
        let seconds = self.min_timeout.as_secs().max(1);
        let timeout = rand::rng().random_range(seconds..=2 * seconds);
        let params = if initial {
            WatchParams::streaming_lists()
        } else {
            WatchParams::default()
        };
        let params = params.timeout(u32::try_from(timeout).unwrap_or(u32::MAX));
        match &self.fields {
            Some(fields) => params.fields(fields),
            None => params,
        }
    }
}

/// How a held watch ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// `cancel` fired.
    Cancelled,
    /// It saw an immutable object (only with [`Watched::until_immutable`]).
    Immutable,
}

/// Holds `watched` until `cancel` fires (or, if asked, an immutable object is seen),
/// telling `on_update` what it sees.
pub(crate) async fn hold(
    client: kube::Client,
    watched: Watched,
    cancel: CancellationToken,
    mut on_update: impl FnMut(Update) + Send,
) -> Ended {
    let request = Request::new(watched.path.clone());
    let mut version: Option<String> = None;
    let mut failures: Option<Duration> = None;
    let mut streaming = true;
    loop {
        let initial = version.is_none();
        let attempt = async {
            if initial && !streaming {
                // Boxed as the watch's request is (below).
                let list: SeenList = Box::pin(client.request(watched.list()?)).await?;
                on_update(Update::Restart);
                for seen in list.items {
                    if present(seen, &watched, &mut on_update) {
                        return Ok(Some(Ended::Immutable));
                    }
                }
                on_update(Update::Synced);
                version = list.metadata.resource_version;
            }
            let params = watched.params(initial && streaming);
            let http = request
                .watch(&params, version.as_deref().unwrap_or(""))
                .map_err(kube::Error::BuildRequest)?;
            // Boxed: the request's future (kube's service stack) is over a kilobyte, and
            // the watch waits on its events, not on it, nearly all its life.
            let mut events = Box::pin(Events::open(&client, http)).await?;
            if initial && streaming {
                on_update(Update::Restart);
            }
            while let Some(event) = events.next::<Seen>().await? {
                match event {
                    WatchEvent::Added(seen) | WatchEvent::Modified(seen) => {
                        let resource_version = seen.metadata.resource_version.clone();
                        if present(seen, &watched, &mut on_update) {
                            return Ok(Some(Ended::Immutable));
                        }
                        version = resource_version.or(version.take());
                    }
                    WatchEvent::Deleted(seen) => {
                        on_update(Update::Gone);
                        version = seen.metadata.resource_version.or(version.take());
                    }
                    WatchEvent::Bookmark(bookmark) => {
                        let ends_initial = bookmark
                            .metadata
                            .annotations
                            .get("k8s.io/initial-events-end")
                            .is_some_and(|v| v == "true");
                        if ends_initial {
                            on_update(Update::Synced);
                        }
                        version = Some(bookmark.metadata.resource_version);
                    }
                    WatchEvent::Error(status) if status.code == 410 => {
                        version = None;
                        return Ok(None);
                    }
                    WatchEvent::Error(status) => {
                        return Err(kube::Error::Api(status));
                    }
                }
                failures = None;
            }
            Ok::<_, kube::Error>(None)
        };
        let outcome = tokio::select! {
            () = cancel.cancelled() => return Ended::Cancelled,
            outcome = attempt => outcome,
        };
        match outcome {
            Ok(Some(ended)) => return ended,
            Ok(None) => {}
            Err(kube::Error::Api(status)) if status.code == 410 => version = None,
            Err(error) if initial && streaming && streaming_list::refused(&error) => {
                tracing::debug!(path = %watched.path, %error, "streaming list refused; listing");
                streaming = false;
            }
            Err(error) => {
                let delay = BACKOFF.after(failures);
                failures = Some(delay);
                tracing::debug!(path = %watched.path, %error, ?delay, "watch failed");
                tokio::select! {
                    () = cancel.cancelled() => return Ended::Cancelled,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Tells `on_update` of an object that is there; true if the watch ends with it (an
/// immutable object, when the watch ends there).
fn present(seen: Seen, watched: &Watched, on_update: &mut impl FnMut(Update)) -> bool {
    let immutable = seen.immutable == Some(true);
    let mut keys = seen.data;
    keys.extend(seen.binary_data);
    on_update(Update::Present(keys));
    if watched.until_immutable && immutable {
        on_update(Update::Synced);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::mock_tests::{mock_client, next, respond, status};
    use http::Method;
    use serde_json::json;

    /// An API server with its `WatchList` gate off: the streaming list refused (422),
    /// a list from the watch cache at once, then a watch from the list's version.
    #[tokio::test]
    async fn a_refused_streaming_list_is_listed_then_watched_from_the_lists_version() {
        let (client, mut handle) = mock_client();
        let watched = Watched::informer(
            "/api/v1/namespaces/ns/configmaps",
            Some("metadata.name=settings".into()),
        );
        let cancel = CancellationToken::new();
        let (updates, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let held = tokio::spawn(hold(client, watched, cancel.clone(), move |update| {
            let _ = updates.send(update);
        }));
        let (_, uri, _, _, send) = next(&mut handle).await;
        assert!(uri.contains("sendInitialEvents=true"), "{uri}");
        respond(send, 422, status(422, "Invalid"));
        let (method, uri, _, _, send) = next(&mut handle).await;
        assert_eq!(method, Method::GET);
        assert!(
            !uri.contains("watch=")
                && uri.contains("resourceVersion=0")
                && uri.contains("fieldSelector=metadata.name%3Dsettings"),
            "{uri}"
        );
        respond(
            send,
            200,
            json!({
                "kind": "ConfigMapList", "apiVersion": "v1",
                "metadata": { "resourceVersion": "42" },
                "items": [{ "metadata": { "name": "settings", "resourceVersion": "40" }, "data": { "mode": "fast" } }],
            }),
        );
        let (_, uri, _, _, send) = next(&mut handle).await;
        assert!(
            uri.contains("watch=true")
                && uri.contains("resourceVersion=42")
                && !uri.contains("sendInitialEvents"),
            "{uri}"
        );
        assert_eq!(seen.recv().await, Some(Update::Restart));
        assert_eq!(
            seen.recv().await,
            Some(Update::Present(vec!["mode".into()]))
        );
        assert_eq!(seen.recv().await, Some(Update::Synced));
        cancel.cancel();
        assert_eq!(held.await.unwrap(), Ended::Cancelled);
        drop(send);
    }

    #[test]
    fn an_object_is_read_for_its_version_data_keys_and_immutability() {
        let seen: Seen = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "settings", "resourceVersion": "42", "labels": { "a": "b" } },
            "data": { "mode": "fast", "level": "3" },
            "binaryData": { "blob": "AAE=" },
            "immutable": true,
        }))
        .unwrap();
        assert_eq!(seen.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(seen.data, ["level", "mode"]);
        assert_eq!(seen.binary_data, ["blob"]);
        assert_eq!(seen.immutable, Some(true));
        let empty: Seen = serde_json::from_value(serde_json::json!({ "data": null })).unwrap();
        assert!(empty.data.is_empty() && empty.metadata.resource_version.is_none());
    }

    /// A held watch lives as long as its node (or the pods that refer to its object),
    /// so its future is per-node memory: an unboxed await of the request (kube's
    /// service stack) made it 1.6 KiB (0.8 KiB boxed, in a debug build).
    #[tokio::test]
    async fn a_held_watch_stays_small() {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let watched = Watched::informer("/api/v1/services", None);
        let held = hold(client, watched, CancellationToken::new(), |_| {});
        let size = size_of_val(&held);
        assert!(size <= 1024, "a held watch's future is {size} bytes");
    }
}
