//! The worker's wait for the objects the pod's volumes mount, as the kubelet's volume
//! manager waits before the sandbox starts.

use tokio::time::Instant;

use super::{Backoff, MOUNT_BACKOFF, PodWorker};
use crate::node::events::Kind;

impl PodWorker {
    /// Whether every object the pod's volumes mount exists (a claim: is bound), as the
    /// kubelet's volume manager waits for them before the sandbox starts; while one is
    /// missing the pod stays Pending, its containers `ContainerCreating`, and it is
    /// looked for again after a back-off.
    pub(super) async fn volumes_mounted(&mut self) -> bool {
        let Some(needs) = self.volume_needs.as_ref() else {
            return true;
        };
        if self.sandbox.is_some() {
            self.volume_needs = None;
            return true;
        }
        let now = Instant::now();
        if self.mount_backoff.is_some_and(|b| b.until() > now) {
            return false;
        }
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let missing = self
            .shared
            .found
            .first_unmounted(
                &self.shared.client,
                self.shared.traffic.as_deref(),
                namespace,
                needs,
            )
            .await;
        match missing {
            None => {
                self.volume_needs = None;
                self.mount_backoff = None;
                true
            }
            Some((volume, problem)) => {
                let volume = volume.to_string();
                self.mount_failed(&volume, &problem, now);
                false
            }
        }
    }

    /// A volume could not be set up: the volume manager's `FailedMount` Event (its
    /// words, pkg/volume/util/operationexecutor), and its back-off before the next try.
    pub(super) fn mount_failed(&mut self, volume: &str, problem: &str, now: Instant) {
        tracing::info!(pod = %self.name(), volume, %problem, "volume not mountable yet");
        self.pod_event(
            Kind::Warning,
            "FailedMount",
            format!("MountVolume.SetUp failed for volume \"{volume}\" : {problem}"),
        );
        let previous = self.mount_backoff.map(|b| b.delay);
        self.mount_backoff = Some(Backoff {
            since: now,
            delay: MOUNT_BACKOFF.after(previous),
        });
    }
}
