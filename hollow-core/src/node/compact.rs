//! A pod as a node holds it between its worker's passes: its JSON, deflated (about a
//! tenth of the `Pod` it was read into: a running pod's object is some 11 KiB in
//! memory, its deflated JSON about 1 KiB). A pass, and a reader such as the kubelet
//! API, inflates it again; a steady pod has no passes.

use std::io::Read;

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use k8s_openapi::api::core::v1::Pod;

/// A pod's JSON, deflated, with its resource version and generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompactPod {
    bytes: Box<[u8]>,
    version: u64,
    generation: Option<i64>,
}

impl CompactPod {
    /// Holds `pod`.
    pub(crate) fn new(pod: &Pod) -> Self {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        let written = serde_json::to_writer(&mut encoder, pod);
        let bytes = match written
            .map_err(std::io::Error::from)
            .and_then(|()| encoder.finish())
        {
            Ok(bytes) => bytes.into_boxed_slice(),
            Err(error) => {
                // Writing to memory does not fail; were it to, the pod reads as empty.
                tracing::error!(%error, "a pod could not be held");
                Box::default()
            }
        };
        CompactPod {
            bytes,
            version: resource_version(pod),
            generation: pod.metadata.generation,
        }
    }

    /// The pod again.
    pub(crate) fn pod(&self) -> Pod {
        let mut json = Vec::with_capacity(self.bytes.len() * 4);
        let read = DeflateDecoder::new(&self.bytes[..]).read_to_end(&mut json);
        match read
            .map_err(serde_json::Error::io)
            .and_then(|_| serde_json::from_slice(&json))
        {
            Ok(pod) => pod,
            Err(error) => {
                tracing::error!(%error, "a held pod could not be read back");
                Pod::default()
            }
        }
    }

    /// Its resource version as a number (0 if it has none).
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Its `metadata.generation`.
    pub(crate) fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// Bytes held on the heap.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_held_pod_reads_back_the_same_in_a_fraction_of_its_size() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "web-7c9f8d6b5-x2x4q", "generateName": "web-7c9f8d6b5-",
                "namespace": "default", "uid": "3c1f6d2e-9a1b-4c1d-8e2f-0a1b2c3d4e5f",
                "resourceVersion": "12345", "creationTimestamp": "2026-12-01T10:00:00Z",
                "labels": { "app": "web", "pod-template-hash": "7c9f8d6b5" },
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7c9f8d6b5", "uid": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
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
                "phase": "Running", "hostIP": "127.1.0.1", "podIP": "10.0.1.7",
                "startTime": "2026-12-01T10:00:01Z", "qosClass": "Burstable",
                "conditions": [
                    { "type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-12-01T10:00:02Z" },
                    { "type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-01T10:00:01Z" },
                    { "type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T10:00:03Z" },
                    { "type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-01T10:00:03Z" },
                    { "type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-01T10:00:00Z" },
                ],
                "containerStatuses": [{ "name": "c", "ready": true, "restartCount": 0,
                    "started": true, "image": "docker.io/library/nginx:1.27",
                    "imageID": "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                    "containerID": "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                    "state": { "running": { "startedAt": "2026-12-01T10:00:02Z" } } }],
            },
        }))
        .unwrap();
        let held = CompactPod::new(&pod);
        assert_eq!(held.pod(), pod);
        assert_eq!(held.version(), 12345);
        let json = serde_json::to_vec(&pod).unwrap().len();
        // A size guard on what every running pod holds (#21): about half its JSON,
        // which is incompressible ids for much of it.
        assert!(
            held.heap_bytes() * 2 < json && held.heap_bytes() <= 1024,
            "{} bytes held for {json} of JSON",
            held.heap_bytes()
        );
    }
}
