//! A pod as a node holds it between its worker's passes: its JSON, deflated against a
//! dictionary (a running pod's object is some 11 KiB in memory, its JSON some 3 KiB,
//! and what is left once deflated against its siblings a few hundred bytes). A pass,
//! and a reader such as the kubelet API, inflates it again; a steady pod has no passes.
//!
//! The dictionary is what pods have in common: the JSON of a typical running pod, and
//! the JSON of a sibling this process saw, which differs from the pod only in names,
//! ids, addresses and times. Siblings are a family: the pods of one controller (a
//! ReplicaSet's, a Job's), or, for pods without one, those of a namespace with the same
//! labels and images (pods a tool or a test makes in a loop). A family gets its own
//! dictionary once this process has seen a few of its pods (a single pod's dictionary
//! would cost more than it saves), made from the pod seen then, and made again from the
//! first that runs (most pods are held running most of their lives). One is shared by
//! the family's pods held since it was made, and dropped with the last of them.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash, Hasher};
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

/// How many of a family's pods this process sees before the family gets a dictionary.
const SIBLINGS_BEFORE_A_DICTIONARY: u8 = 3;

/// The families whose pods this process holds, by a hash of what makes them one; an
/// entry lives as long as a pod holds its dictionary.
static FAMILIES: LazyLock<Mutex<Families>> = LazyLock::new(Mutex::default);

#[derive(Default)]
struct Families {
    by_key: HashMap<u64, Family>,
    /// How many entries there were when dead ones were last dropped.
    swept_at: usize,
}

#[derive(Default)]
struct Family {
    /// None until the family has one.
    dictionary: Option<Weak<[u8]>>,
    /// Whether it was made from a running pod.
    of_running: bool,
    /// Distinct pods seen (up to the threshold), told apart by a hash of their UID.
    pods_seen: u8,
    last_uid: u64,
}

/// A fixed hash (the same in every process and run) of `value`.
fn hash_of(value: impl Hash) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// What makes `pod` one of a family: its controller, or without one, its namespace,
/// labels and images.
fn family_key(pod: &Pod) -> u64 {
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true));
    match controller {
        Some(controller) => hash_of(("controller", &controller.uid)),
        None => {
            let mut hasher = BuildHasherDefault::<DefaultHasher>::default().build_hasher();
            ("pods", &pod.metadata.namespace, &pod.metadata.labels).hash(&mut hasher);
            if let Some(spec) = &pod.spec {
                let init = spec.init_containers.iter().flatten();
                for container in init.chain(&spec.containers) {
                    container.image.hash(&mut hasher);
                }
            }
            hasher.finish()
        }
    }
}

/// The dictionary for `pod`, whose JSON is `json`: its family's (made from this pod
/// if the family has seen enough pods and has none, or has only a pending pod's and
/// this one runs), or the typical pod's.
fn dictionary_for(pod: &Pod, json: &[u8]) -> Arc<[u8]> {
    let key = family_key(pod);
    let uid = hash_of(&pod.metadata.uid);
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let mut families = FAMILIES.lock();
    let family = families.entry(key);
    if family.last_uid != uid || family.pods_seen == 0 {
        family.last_uid = uid;
        family.pods_seen = family.pods_seen.saturating_add(1);
    }
    if let Some(dictionary) = family.dictionary.as_ref().and_then(Weak::upgrade)
        && (family.of_running || !running)
    {
        return dictionary;
    }
    if family.pods_seen < SIBLINGS_BEFORE_A_DICTIONARY {
        return TYPICAL.clone();
    }
    let mut bytes = Vec::with_capacity(TYPICAL.len() + json.len());
    bytes.extend_from_slice(&TYPICAL);
    bytes.extend_from_slice(json);
    let start = bytes.len().saturating_sub(WINDOW);
    let dictionary: Arc<[u8]> = bytes[start..].into();
    family.dictionary = Some(Arc::downgrade(&dictionary));
    family.of_running = running;
    dictionary
}

impl Families {
    /// The family of `key`, made if new.
    fn entry(&mut self, key: u64) -> &mut Family {
        // Dead entries (and those of families with no dictionary yet) go when the table
        // has doubled since the last sweep, so a process that churns pods and
        // controllers does not keep them.
        if !self.by_key.contains_key(&key) && self.by_key.len() >= 2 * self.swept_at.max(64) {
            self.by_key.retain(|_, family| {
                family
                    .dictionary
                    .as_ref()
                    .is_some_and(|d| d.strong_count() > 0)
            });
            self.swept_at = self.by_key.len();
        }
        self.by_key.entry(key).or_default()
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

    /// The `n`th running pod of the ReplicaSet `owner` (its own name, UID, address and
    /// start time).
    fn sibling(owner: &str, n: u32) -> Pod {
        running_pod(
            owner,
            &format!("k8r{n:02}"),
            &format!("9d4e2a7c-1b3f-4e6a-8c2d-5f7a9b1c{n:04}"),
            &format!("10.0.3.{n}"),
            n,
        )
    }

    /// The family's first pods held, each a different pod: the last makes the family's
    /// dictionary.
    fn enough_siblings(owner: &str) -> Vec<CompactPod> {
        let seen = (1..=u32::from(SIBLINGS_BEFORE_A_DICTIONARY)).map(|n| sibling(owner, n));
        seen.map(|pod| CompactPod::new(&pod)).collect()
    }

    fn holds_typical(held: &CompactPod) -> bool {
        Arc::ptr_eq(&held.dictionary, &TYPICAL)
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
        let pod = sibling(owner, 40);
        let json = serde_json::to_vec(&pod).unwrap().len();
        let first = enough_siblings(owner);
        let held = CompactPod::new(&pod);
        assert_eq!(held.pod(), pod);
        // The first pods of a family are held against the typical pod; the rest against
        // the sibling that made the family's dictionary.
        let (made_it, before) = first.split_last().unwrap();
        assert!(before.iter().all(holds_typical));
        assert!(Arc::ptr_eq(&made_it.dictionary, &held.dictionary));
        // Size guards on what every running pod holds (#21).
        assert!(
            before[0].heap_bytes() * 3 < json,
            "{} bytes held for {json} of JSON",
            before[0].heap_bytes()
        );
        assert!(
            held.heap_bytes() <= 256,
            "{} bytes held for {json} of JSON",
            held.heap_bytes()
        );
    }

    #[test]
    fn a_lone_pod_changing_often_gets_no_dictionary_of_its_own() {
        let mut pod = sibling("0a1b2c3d-4e5f-6a7b-8c9d-000000000005", 1);
        for version in 0..10 {
            pod.metadata.resource_version = Some(format!("{}", 500 + version));
            assert!(holds_typical(&CompactPod::new(&pod)));
        }
    }

    #[test]
    fn pods_without_an_owner_alike_share_a_dictionary_and_others_do_not() {
        let ownerless = |n: u32, app: &str| {
            let mut pod = sibling("", n);
            pod.metadata.owner_references = None;
            pod.metadata.labels = Some([("app".to_string(), app.to_string())].into());
            pod
        };
        let held: Vec<CompactPod> = (1..=4)
            .map(|n| CompactPod::new(&ownerless(n, "loop-a")))
            .collect();
        assert!(Arc::ptr_eq(&held[2].dictionary, &held[3].dictionary));
        assert!(!holds_typical(&held[3]));
        assert!(
            held[3].heap_bytes() <= 256,
            "{} bytes",
            held[3].heap_bytes()
        );
        let other = CompactPod::new(&ownerless(5, "loop-b"));
        assert!(holds_typical(&other));
        for (n, held) in (1..).zip(&held) {
            assert_eq!(held.pod(), ownerless(n, "loop-a"));
        }
    }

    #[test]
    fn the_first_running_sibling_makes_the_dictionary_running_pods_are_held_against() {
        let owner = "0a1b2c3d-4e5f-6a7b-8c9d-000000000004";
        let pending = |n: u32| {
            let mut pod = sibling(owner, n);
            pod.status = None;
            pod
        };
        let held_pending: Vec<CompactPod> = (1..=u32::from(SIBLINGS_BEFORE_A_DICTIONARY))
            .map(|n| CompactPod::new(&pending(n)))
            .collect();
        let of_pending = held_pending.last().unwrap();
        assert!(!holds_typical(of_pending));
        let first_running = CompactPod::new(&sibling(owner, 1));
        let held = CompactPod::new(&sibling(owner, 2));
        assert!(!Arc::ptr_eq(
            &of_pending.dictionary,
            &first_running.dictionary
        ));
        assert!(Arc::ptr_eq(&first_running.dictionary, &held.dictionary));
        // A pending pod held later keeps to the running one's.
        let again = CompactPod::new(&pending(9));
        assert!(Arc::ptr_eq(&again.dictionary, &held.dictionary));
        assert_eq!(again.pod(), pending(9));
        assert_eq!(of_pending.pod(), pending(3));
        assert!(held.heap_bytes() <= 256, "{} bytes", held.heap_bytes());
    }

    #[test]
    fn a_familys_dictionary_goes_with_its_last_pod() {
        let owner = "0a1b2c3d-4e5f-6a7b-8c9d-000000000003";
        let held = enough_siblings(owner);
        let dictionary = Arc::downgrade(&held.last().unwrap().dictionary);
        assert!(dictionary.upgrade().is_some());
        drop(held);
        assert!(dictionary.upgrade().is_none());
        let pod = sibling(owner, 1);
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
