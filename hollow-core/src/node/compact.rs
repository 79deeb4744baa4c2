//! A pod as a node holds it between its worker's passes: its JSON, deflated against a
//! dictionary (a running pod's object is some 11 KiB in memory, its JSON some 3 KiB,
//! and what is left once deflated against its siblings a few hundred bytes). A pass,
//! and a reader such as the kubelet API, inflates it again; a steady pod has no passes.
//!
//! The dictionary is what pods have in common: the JSON of a typical running pod, and
//! the JSON of a pod of the same controller (a ReplicaSet's, a Job's) this process
//! saw, which differs from its siblings only in names, ids, addresses and times: the
//! first, until one of them runs, then the first that runs (most pods are held
//! running most of their lives). One is shared by the controller's pods held since it
//! was made, and dropped with the last of them.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Weak};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;

/// Deflate looks back at most this far: a longer dictionary's start is never used.
const WINDOW: usize = 32 * 1024;

/// A pod's JSON, deflated against a shared dictionary, with its resource version and
/// generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompactPod {
    bytes: Box<[u8]>,
    dictionary: Arc<[u8]>,
    version: u64,
    generation: Option<i64>,
}

impl CompactPod {
    /// Holds `pod`.
    pub(crate) fn new(pod: &Pod) -> Self {
        let held = serde_json::to_vec(pod)
            .map_err(std::io::Error::from)
            .and_then(|json| {
                let dictionary = dictionary_for(pod, &json);
                let bytes = deflate(&json, &dictionary)?;
                Ok((bytes, dictionary))
            });
        let (bytes, dictionary) = held.unwrap_or_else(|error| {
            // Writing to memory does not fail; were it to, the pod reads as empty.
            tracing::error!(%error, "a pod could not be held");
            (Box::default(), TYPICAL.clone())
        });
        CompactPod {
            bytes,
            dictionary,
            version: resource_version(pod),
            generation: pod.metadata.generation,
        }
    }

    /// The pod again.
    pub(crate) fn pod(&self) -> Pod {
        let read = inflate(&self.bytes, &self.dictionary)
            .and_then(|json| serde_json::from_slice(&json).map_err(std::io::Error::from));
        read.unwrap_or_else(|error| {
            tracing::error!(%error, "a held pod could not be read back");
            Pod::default()
        })
    }

    /// Its resource version as a number (0 if it has none).
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Its `metadata.generation`.
    pub(crate) fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// Bytes held on the heap for this pod alone (its dictionary is shared).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// A pod's resource version as a number (0 if it has none).
pub(crate) fn resource_version(pod: &Pod) -> u64 {
    pod.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The JSON of a typical running pod: the keys, condition types, states and defaults
/// every pod's JSON repeats, in the order serde writes a `Pod`.
static TYPICAL: LazyLock<Arc<[u8]>> = LazyLock::new(|| {
    let pod: Pod = serde_json::from_str(include_str!("compact_typical.json")).unwrap_or_default();
    serde_json::to_vec(&pod).unwrap_or_default().into()
});

/// The dictionaries of the controllers whose pods this process holds, by the
/// controller's UID; an entry lives as long as a pod holds it.
static BY_CONTROLLER: LazyLock<Mutex<Dictionaries>> = LazyLock::new(Mutex::default);

#[derive(Default)]
struct Dictionaries {
    /// Each with whether it was made from a running pod.
    by_controller: HashMap<Box<str>, (Weak<[u8]>, bool)>,
    /// How many entries there were when dead ones were last dropped.
    swept_at: usize,
}

/// The dictionary for `pod`, whose JSON is `json`: its controller's (made from this
/// pod if it is the first), or the typical pod's for a pod without one.
fn dictionary_for(pod: &Pod, json: &[u8]) -> Arc<[u8]> {
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true));
    let Some(controller) = controller else {
        return TYPICAL.clone();
    };
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let mut dictionaries = BY_CONTROLLER.lock();
    if let Some((dictionary, of_running)) = dictionaries.by_controller.get(controller.uid.as_str())
        && (*of_running || !running)
        && let Some(dictionary) = dictionary.upgrade()
    {
        return dictionary;
    }
    let mut bytes = Vec::with_capacity(TYPICAL.len() + json.len());
    bytes.extend_from_slice(&TYPICAL);
    bytes.extend_from_slice(json);
    let start = bytes.len().saturating_sub(WINDOW);
    let dictionary: Arc<[u8]> = bytes[start..].into();
    dictionaries.insert(controller.uid.as_str(), &dictionary, running);
    dictionary
}

impl Dictionaries {
    fn insert(&mut self, controller: &str, dictionary: &Arc<[u8]>, running: bool) {
        // Dead entries go when the table has doubled since the last sweep, so a
        // process that churns controllers does not keep their names.
        if self.by_controller.len() >= 2 * self.swept_at.max(64) {
            self.by_controller
                .retain(|_, (entry, _)| entry.strong_count() > 0);
            self.swept_at = self.by_controller.len();
        }
        self.by_controller
            .insert(controller.into(), (Arc::downgrade(dictionary), running));
    }
}

/// `json` deflated (raw, no header) against `dictionary`.
fn deflate(json: &[u8], dictionary: &[u8]) -> std::io::Result<Box<[u8]>> {
    let mut compress = Compress::new(Compression::default(), false);
    compress
        .set_dictionary(dictionary)
        .map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(json.len() / 4 + 64);
    loop {
        let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
        let status = compress
            .compress_vec(
                &json[consumed.min(json.len())..],
                &mut out,
                FlushCompress::Finish,
            )
            .map_err(std::io::Error::other)?;
        if status == Status::StreamEnd {
            return Ok(out.into_boxed_slice());
        }
        out.reserve(out.capacity().max(64));
    }
}

/// What [`deflate`] made of `bytes` with `dictionary`, inflated again.
fn inflate(bytes: &[u8], dictionary: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut decompress = Decompress::new(false);
    decompress
        .set_dictionary(dictionary)
        .map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(bytes.len() * 8 + 256);
    loop {
        let consumed = usize::try_from(decompress.total_in()).unwrap_or(usize::MAX);
        let before = decompress.total_out();
        let status = decompress
            .decompress_vec(
                &bytes[consumed.min(bytes.len())..],
                &mut out,
                FlushDecompress::Finish,
            )
            .map_err(std::io::Error::other)?;
        match status {
            Status::StreamEnd => return Ok(out),
            _ if out.len() < out.capacity() && decompress.total_out() == before => {
                return Err(std::io::Error::other("a held pod's bytes end early"));
            }
            _ => out.reserve(out.capacity().max(256)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A running pod of a ReplicaSet, as the API server holds it.
    fn running_pod(owner: &str, suffix: &str, uid: &str, ip: &str, second: u32) -> Pod {
        let at = format!("2026-12-01T10:00:{second:02}Z");
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("web-7c9f8d6b5-{suffix}"), "generateName": "web-7c9f8d6b5-",
                "namespace": "default", "uid": uid,
                "resourceVersion": "12345", "creationTimestamp": at,
                "labels": { "app": "web", "pod-template-hash": "7c9f8d6b5" },
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7c9f8d6b5", "uid": owner,
                    "controller": true, "blockOwnerDeletion": true }],
            },
            "spec": {
                "nodeName": "hollow-1",
                "containers": [{ "name": "c", "image": "nginx:1.27",
                    "resources": { "requests": { "cpu": "1m" } },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent" }],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
                "tolerations": [
                    { "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                      "effect": "NoExecute", "tolerationSeconds": 300 },
                    { "key": "node.kubernetes.io/unreachable", "operator": "Exists",
                      "effect": "NoExecute", "tolerationSeconds": 300 },
                ],
            },
            "status": {
                "phase": "Running", "hostIP": "127.1.0.1", "podIP": ip,
                "startTime": at, "qosClass": "Burstable",
                "conditions": [
                    { "type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": at },
                    { "type": "Initialized", "status": "True", "lastTransitionTime": at },
                    { "type": "Ready", "status": "True", "lastTransitionTime": at },
                    { "type": "ContainersReady", "status": "True", "lastTransitionTime": at },
                    { "type": "PodScheduled", "status": "True", "lastTransitionTime": at },
                ],
                "containerStatuses": [{ "name": "c", "ready": true, "restartCount": 0,
                    "started": true, "image": "docker.io/library/nginx:1.27",
                    "imageID": "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                    "containerID": format!("containerd://{uid}"),
                    "state": { "running": { "startedAt": at } } }],
            },
        }))
        .unwrap()
    }

    /// Two running pods of the ReplicaSet `owner`, started at different times.
    fn first_and_sibling(owner: &str) -> (Pod, Pod) {
        let first = running_pod(
            owner,
            "x2x4q",
            "3c1f6d2e-9a1b-4c1d-8e2f-0a1b2c3d4e5f",
            "10.0.1.7",
            1,
        );
        let sibling = running_pod(
            owner,
            "k8r2m",
            "9d4e2a7c-1b3f-4e6a-8c2d-5f7a9b1c3e5d",
            "10.0.3.21",
            7,
        );
        (first, sibling)
    }

    #[test]
    fn the_typical_pod_is_a_pod() {
        let typical: Result<Pod, _> = serde_json::from_str(include_str!("compact_typical.json"));
        assert!(typical.is_ok(), "{typical:?}");
        assert!(TYPICAL.len() > 4096, "{} bytes", TYPICAL.len());
    }

    #[test]
    fn a_held_pod_reads_back_the_same() {
        let owner = "0a1b2c3d-4e5f-6a7b-8c9d-000000000001";
        let pod = running_pod(
            owner,
            "x2x4q",
            "3c1f6d2e-9a1b-4c1d-8e2f-0a1b2c3d4e5f",
            "10.0.1.7",
            1,
        );
        let held = CompactPod::new(&pod);
        assert_eq!(held.pod(), pod);
        assert_eq!(held.version(), 12345);
        let mut bare = pod.clone();
        bare.metadata.owner_references = None;
        assert_eq!(CompactPod::new(&bare).pod(), bare);
        assert_eq!(CompactPod::new(&Pod::default()).pod(), Pod::default());
    }

    #[test]
    fn a_pod_is_held_in_a_fraction_of_its_json_and_its_siblings_in_less() {
        let owner = "0a1b2c3d-4e5f-6a7b-8c9d-000000000002";
        let (first, sibling) = first_and_sibling(owner);
        let json = serde_json::to_vec(&sibling).unwrap().len();
        let held_first = CompactPod::new(&first);
        let held = CompactPod::new(&sibling);
        assert_eq!(held.pod(), sibling);
        // Size guards on what every running pod holds (#21).
        assert!(
            held_first.heap_bytes() * 3 < json,
            "{} bytes held for {json} of JSON",
            held_first.heap_bytes()
        );
        assert!(
            held.heap_bytes() <= 256,
            "{} bytes held for {json} of JSON",
            held.heap_bytes()
        );
        // One dictionary for both.
        assert!(Arc::ptr_eq(&held_first.dictionary, &held.dictionary));
    }

    #[test]
    fn the_first_running_sibling_makes_the_dictionary_running_pods_are_held_against() {
        let owner = "0a1b2c3d-4e5f-6a7b-8c9d-000000000004";
        let mut pending = running_pod(
            owner,
            "aaaaa",
            "11111111-9a1b-4c1d-8e2f-0a1b2c3d4e5f",
            "",
            0,
        );
        pending.status = None;
        let (first, sibling) = first_and_sibling(owner);
        let held_pending = CompactPod::new(&pending);
        let held_first = CompactPod::new(&first);
        let held = CompactPod::new(&sibling);
        assert!(!Arc::ptr_eq(
            &held_pending.dictionary,
            &held_first.dictionary
        ));
        assert!(Arc::ptr_eq(&held_first.dictionary, &held.dictionary));
        // A pending pod held later keeps to the running one's.
        let again = CompactPod::new(&pending);
        assert!(Arc::ptr_eq(&again.dictionary, &held.dictionary));
        assert_eq!(again.pod(), pending);
        assert_eq!(held_pending.pod(), pending);
        assert!(held.heap_bytes() <= 256, "{} bytes", held.heap_bytes());
    }

    #[test]
    fn a_controllers_dictionary_goes_with_its_last_pod() {
        let owner = "0a1b2c3d-4e5f-6a7b-8c9d-000000000003";
        let pod = running_pod(
            owner,
            "x2x4q",
            "3c1f6d2e-9a1b-4c1d-8e2f-0a1b2c3d4e5f",
            "10.0.1.7",
            1,
        );
        let held = CompactPod::new(&pod);
        let dictionary = Arc::downgrade(&held.dictionary);
        drop(held);
        assert!(dictionary.upgrade().is_none());
        assert_eq!(CompactPod::new(&pod).pod(), pod);
    }

    #[test]
    fn damaged_bytes_read_as_an_empty_pod() {
        let pod = running_pod("0a1b", "x2x4q", "3c1f", "10.0.1.7", 1);
        let mut held = CompactPod::new(&pod);
        held.bytes = held.bytes[..held.bytes.len() / 2].into();
        assert_eq!(held.pod(), Pod::default());
        held.bytes = vec![0xff; 16].into();
        assert_eq!(held.pod(), Pod::default());
    }
}
