//! The worker's requests of the kubelet traffic profile
//! ([`TrafficProfile::Kubelet`](crate::node::TrafficProfile)): the watches on the
//! objects the pod refers to, its service account tokens, the status manager's read
//! before a patch and the first status the kubelet writes.

use std::time::Duration;

use tokio::time::Instant;

use super::PodWorker;
use crate::node::pod_uid::PodUid;

/// When a token renewal that failed is tried again: the volume manager remounts a
/// pod's projected volumes about once a minute (its pod sync period).
const RENEWAL_RETRY: Duration = Duration::from_secs(60);
/// The token manager renews every token within a day.
const MAX_RENEWAL: Duration = Duration::from_secs(24 * 3600);

/// What the status manager's read of the pod found.
pub(super) enum Read {
    /// The pod, newer than or as new as the worker's.
    Fresh,
    /// The pod is gone, or is another pod of the same name now.
    Gone,
    /// The read failed.
    Failed,
}

impl PodWorker {
    /// Starts the node's watches on the objects the pod refers to, as the kubelet's
    /// ConfigMap and Secret managers do when a pod is added (`RegisterPod`).
    pub(super) fn register_references(&self) {
        if let (Some(node), Some(pod)) = (&self.shared.traffic, &self.traffic) {
            let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
            node.register(&self.shared.client, &self.shared.cancel, namespace, pod);
        }
    }

    /// Drops the pod's references (`UnregisterPod`), once it is gone.
    pub(super) fn unregister_references(&self) {
        if let (Some(node), Some(pod)) = (&self.shared.traffic, &self.traffic) {
            let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
            node.unregister(namespace, pod);
        }
    }

    /// The kubelet's `SyncPod` sets the pod's status before it waits for the volumes
    /// and starts anything (pkg/kubelet/kubelet.go), and its status manager sends it at
    /// once: a pod is first written Pending with its containers `ContainerCreating`.
    pub(super) async fn send_first_status(&mut self) {
        if self.first_status_sent || self.shared.traffic.is_none() || self.sandbox.is_some() {
            return;
        }
        if self.write_status(None).await {
            self.first_status_sent = true;
        }
    }

    /// Whether the pod's tokens have yet to be requested.
    pub(super) fn tokens_pending(&self) -> bool {
        self.token_renewal.is_none() && self.traffic.as_ref().is_some_and(|t| !t.tokens.is_empty())
    }

    /// Whether the pod's projected service account tokens were had, as the projected
    /// volume's set-up asks for them before the sandbox starts; while one cannot be
    /// had, the pod waits with the volume manager's back-off and a `FailedMount` Event.
    pub(super) async fn tokens_mounted(&mut self) -> bool {
        if !self.tokens_pending() {
            return true;
        }
        let now = Instant::now();
        if self.mount_backoff.is_some_and(|b| b.until() > now) {
            return false;
        }
        match self.request_tokens().await {
            Ok(renew_after) => {
                self.mount_backoff = None;
                self.token_renewal = Some(Instant::now() + renew_after);
                true
            }
            Err((volume, error)) => {
                self.mount_failed(&volume, &format!("failed to fetch token: {error}"), now);
                false
            }
        }
    }

    /// Renews the pod's tokens when the token manager would.
    pub(super) async fn renew_tokens(&mut self) {
        if self.token_renewal.is_none_or(|at| at > Instant::now()) {
            return;
        }
        let next = match self.request_tokens().await {
            Ok(renew_after) => renew_after,
            Err((volume, error)) => {
                tracing::warn!(pod = %self.name(), volume, %error, "cannot renew a service account token");
                RENEWAL_RETRY
            }
        };
        self.token_renewal = Some(Instant::now() + next);
    }

    /// Requests every token of the pod; returns when the first is to be renewed, or
    /// the volume whose token failed and why.
    async fn request_tokens(&self) -> Result<Duration, (String, kube::Error)> {
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut first = MAX_RENEWAL;
        for source in self.traffic.iter().flat_map(|t| t.tokens.iter()) {
            let renew_after = source
                .request(
                    &self.shared.client,
                    namespace,
                    self.name(),
                    &self.inbox.uid.to_string(),
                )
                .await
                .map_err(|error| (source.volume.to_string(), error))?;
            first = first.min(renew_after);
        }
        Ok(first)
    }

    /// The status manager's read of the pod before it patches its status
    /// (`syncPod` in pkg/kubelet/status/status_manager.go); the pod read is taken in.
    pub(super) async fn read_for_patch(&mut self) -> Read {
        match self.pods_api().get_opt(self.name()).await {
            Ok(Some(pod))
                if pod.metadata.uid.as_deref().map(PodUid::from).as_ref()
                    == Some(&self.inbox.uid) =>
            {
                self.take_read(pod);
                Read::Fresh
            }
            // Deleted, or deleted and made again: the kubelet skips the update.
            Ok(_) => Read::Gone,
            Err(error) => {
                tracing::warn!(pod = %self.name(), %error, "cannot read the pod before its status update");
                Read::Failed
            }
        }
    }
}
