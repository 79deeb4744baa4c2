//! What the worker writes to the API server: the pod's status, and its final delete.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{PodWorker, RETRY_DELAY};
use crate::node::phases::phase_index;
use crate::node::pod_status::{PodFacts, compute, qos_class};
use crate::pod::ContainerKind;
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

impl PodWorker {
    /// Graceful deletion: stop within the grace period, write the terminal status, then
    /// delete with grace period 0 and this pod's UID as precondition.
    pub(super) async fn terminate_and_delete(&mut self) {
        if self.retry_at.is_some_and(|at| at > Instant::now()) {
            return;
        }
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(Duration::from_secs(30), Duration::from_secs);
        if !self.terminal {
            self.stop_everything(grace).await;
            self.terminal = true;
        }
        let all_succeeded = self
            .init
            .iter()
            .filter(|c| c.kind != ContainerKind::Init)
            .chain(&self.regular)
            .all(|c| c.exit_code().is_none_or(|code| code == 0));
        let phase = if all_succeeded { "Succeeded" } else { "Failed" };
        if !self.write_status(Some(phase)).await {
            self.retry_at = Some(Instant::now() + RETRY_DELAY);
            return;
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.inbox.uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.pods_api().delete(self.name(), &params).await {
            Ok(_) => self.deleted = true,
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                self.deleted = true
            }
            Err(error) => {
                tracing::warn!(pod = %self.name(), %error, "cannot delete the pod");
                self.retry_at = Some(Instant::now() + RETRY_DELAY);
            }
        }
    }

    /// Writes the status if it differs from what the API holds; returns false when a
    /// write failed.
    pub(super) async fn write_status(&mut self, phase_override: Option<&str>) -> bool {
        if self.shared.cut_off() {
            // A node cut off from the API server writes nothing; it catches up on resume.
            return false;
        }
        // In the kubelet profile, a status that differs from the worker's copy of the
        // pod is computed again against the pod as read from the API server.
        let mut read = self.shared.traffic.is_none();
        loop {
            // Computed apart: only the patch is held while it is sent (a pass waiting
            // on the API server holds as little as it can; in a burst of new pods many
            // wait at once).
            let Some(mut diff) = self.status_diff(phase_override) else {
                return false;
            };
            if diff.is_empty() {
                return true;
            }
            if !read {
                read = true;
                match self.read_for_patch().await {
                    super::kubelet::Read::Fresh => continue,
                    super::kubelet::Read::Gone => {
                        self.deleted = true;
                        return true;
                    }
                    super::kubelet::Read::Failed => {
                        self.retry_at = Some(Instant::now() + RETRY_DELAY);
                        return false;
                    }
                }
            }
            if let Some(Value::Array(conditions)) = diff.get("conditions") {
                // The order the kubelet's two-way merge patch sets for the merged list.
                let order: Vec<Value> = conditions
                    .iter()
                    .filter(|c| c.get("$patch").is_none())
                    .map(|c| json!({ "type": c["type"] }))
                    .collect();
                diff.insert("$setElementOrder/conditions".into(), Value::Array(order));
            }
            let patch =
                json!({ "metadata": { "uid": self.inbox.uid.to_string() }, "status": diff });
            return match self
                .pods_api()
                .patch_status(
                    self.name(),
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await
            {
                Ok(pod) => {
                    self.take_read(pod);
                    true
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.deleted = true;
                    true
                }
                Err(error) => {
                    tracing::warn!(pod = %self.name(), %error, "pod status update failed");
                    self.retry_at = Some(Instant::now() + RETRY_DELAY);
                    false
                }
            };
        }
    }

    /// The status the pod should have, as the top-level fields that differ from the
    /// status of the worker's copy of the pod (`None` if it cannot be written as JSON);
    /// publishes the phase computed.
    fn status_diff(&self, phase_override: Option<&str>) -> Option<Map<String, Value>> {
        let host_ips: Vec<IpAddr> = self.shared.node_ips().to_vec();
        let allocated = self.allocated_pod();
        let resize_conditions = self.resize_conditions();
        let facts = PodFacts {
            pod: allocated.as_ref().unwrap_or(&self.pod),
            resize_conditions: &resize_conditions,
            init: &self.init,
            regular: &self.regular,
            sandbox_ready: self.sandbox.is_some() && !self.sandbox_stopped,
            sandbox_not_ready: self.sandbox_not_ready(),
            pod_ips: &self.pod_ips,
            host_ips: &host_ips,
            runtime_name: &self.shared.runtime_name,
            start_time: self.start_time,
            restart_rules: self.restart_rules(),
            pod_level_status: self
                .shared
                .config
                .kubelet
                .has(crate::version::Behaviour::PodLevelResourcesStatus),
            forced_phase: if self.deadline_exceeded {
                Some("Failed")
            } else {
                phase_override
            },
        };
        let mut status = match &self.rejected {
            // The kubelet's `rejectPod` sets the phase, reason, message and QoS class,
            // and its status manager the start time and observed generation
            // (`updateStatusInternal` in pkg/kubelet/status/status_manager.go); the
            // conditions stay as they were.
            Some(rejection) => PodStatus {
                phase: Some("Failed".into()),
                reason: Some(rejection.reason.clone()),
                message: Some(rejection.status_message()),
                qos_class: Some(qos_class(&self.pod).into()),
                conditions: self.pod.status.as_ref().and_then(|s| s.conditions.clone()),
                start_time: self
                    .pod
                    .status
                    .as_ref()
                    .and_then(|s| s.start_time.clone())
                    .or(Some(Time(self.start_time))),
                observed_generation: self.pod.metadata.generation,
                ..Default::default()
            },
            None => compute(&facts, Timestamp::now()),
        };
        if self.deadline_exceeded {
            status.reason = Some("DeadlineExceeded".into());
            status.message =
                Some("Pod was active on the node longer than the specified deadline".into());
        }
        let phase = phase_index(status.phase.as_deref().unwrap_or("Unknown"));
        self.inbox.phase.store(phase, Ordering::Relaxed);
        let mut new = serde_json::to_value(&status).ok()?;
        let observed = match &self.pod.status {
            Some(observed) => serde_json::to_value(observed).unwrap_or(Value::Null),
            None => Value::Object(Map::new()),
        };
        null_removed(&observed, &mut new);
        let diff = top_level_diff(&observed, &new);
        Some(diff)
    }
}

/// The key the API server merges the items of list `field` by in a strategic merge
/// patch (the `patchMergeKey` of the pod status types), if it does.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "conditions" => Some("type"),
        "containerStatuses" | "initContainerStatuses" | "ephemeralContainerStatuses" => {
            Some("name")
        }
        "resourceClaimStatuses" => Some("name"),
        "podIPs" | "hostIPs" => Some("ip"),
        "volumeMounts" => Some("mountPath"),
        _ => None,
    }
}

/// Sets `null` in `new` for every field that `old` has and `new` dropped, inside
/// objects and inside the items of lists merged by key, so that a strategic merge patch
/// of `new` removes them. The kubelet's status manager patches with a two-way merge
/// patch from the old status to the new (`strategicpatch.CreateTwoWayMergePatch`, via
/// `statusutil.PatchPodStatus` in pkg/kubelet/status/status_manager.go), which does the
/// same: a condition that turned True loses its reason and message, a container that
/// started loses its waiting state.
pub(super) fn null_removed(old: &Value, new: &mut Value) {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return;
    };
    for (key, old_value) in old {
        match new.get_mut(key) {
            None => {
                new.insert(key.clone(), Value::Null);
            }
            Some(new_value @ Value::Object(_)) => null_removed(old_value, new_value),
            Some(Value::Array(items)) => {
                let (Some(merge_key), Value::Array(old_items)) = (merge_key(key), old_value) else {
                    continue;
                };
                for item in items.iter_mut() {
                    let same = old_items
                        .iter()
                        .find(|old_item| old_item.get(merge_key) == item.get(merge_key));
                    if let Some(old_item) = same {
                        null_removed(old_item, item);
                    }
                }
                // An item gone from the list (a resize condition cleared) is deleted
                // by its key, as the two-way merge patch's `$patch: delete` does.
                let gone: Vec<Value> = old_items
                    .iter()
                    .filter_map(|old_item| old_item.get(merge_key))
                    .filter(|key| !items.iter().any(|item| item.get(merge_key) == Some(*key)))
                    .map(|key| json!({ merge_key: key, "$patch": "delete" }))
                    .collect();
                items.extend(gone);
            }
            Some(_) => {}
        }
    }
}

/// The top-level fields of `new` that differ from `old`, and `null` for the ones `new`
/// dropped.
pub(super) fn top_level_diff(old: &Value, new: &Value) -> Map<String, Value> {
    let empty = Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let mut diff: Map<String, Value> = new
        .iter()
        .filter(|(key, value)| old.get(*key) != Some(value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for key in old.keys() {
        if !new.contains_key(key) {
            diff.insert(key.clone(), Value::Null);
        }
    }
    diff
}
