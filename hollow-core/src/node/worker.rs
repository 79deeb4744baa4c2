//! One pod's worker: drives the pod's containers through the runtime as the kubelet's
//! pod workers do, and writes the status the kubelet would.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::pod_status::{ContainerRecord, PodFacts, compute, phase, restart_policy};
use super::shared::{Delivery, NodeShared, PodInbox, phase_index};
use crate::runtime::{ContainerConfig, ContainerKind, PodSandboxConfig};

/// The first restart delay of a crashing container or a failing pull; it doubles.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest restart delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often a runtime that pushes no events is relisted.
const RELIST_PERIOD: Duration = Duration::from_secs(10);
/// Retry delay for failed API writes and sandbox creation.
const RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// When the last restart or pull attempt happened.
    since: Instant,
    delay: Duration,
}

impl Backoff {
    fn until(&self) -> Instant {
        self.since + self.delay
    }

    fn next(previous: Option<Backoff>, now: Instant) -> Backoff {
        let delay = previous.map_or(BACKOFF_INITIAL, |b| (b.delay * 2).min(BACKOFF_MAX));
        Backoff { since: now, delay }
    }
}

pub(crate) struct PodWorker {
    shared: Arc<NodeShared>,
    pod: Arc<Pod>,
    /// Newer pod objects, nudges, and where the phase last computed is published.
    inbox: Arc<PodInbox>,
    uid: String,
    sandbox: Option<String>,
    sandbox_stopped: bool,
    pod_ips: Vec<IpAddr>,
    init: Vec<ContainerRecord>,
    regular: Vec<ContainerRecord>,
    /// Crash-restart backoff by container name.
    restarts: HashMap<String, Backoff>,
    /// Image-pull backoff by container name.
    pulls: HashMap<String, Backoff>,
    /// Create/start-failure backoff by container name.
    start_failures: HashMap<String, Backoff>,
    start_time: Timestamp,
    /// Set once the pod reached Succeeded or Failed: nothing runs any more.
    terminal: bool,
    /// Set once the final delete was sent.
    deleted: bool,
    retry_at: Option<Instant>,
}

fn records(
    containers: &[Container],
    kind_of: impl Fn(&Container) -> ContainerKind,
) -> Vec<ContainerRecord> {
    containers
        .iter()
        .map(|c| {
            let delay = |probe: Option<&k8s_openapi::api::core::v1::Probe>| {
                probe
                    .and_then(|p| p.initial_delay_seconds)
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(Duration::ZERO, Duration::from_secs)
            };
            ContainerRecord {
                kind: kind_of(c),
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                startup_delay: delay(c.startup_probe.as_ref()),
                readiness_delay: delay(c.readiness_probe.as_ref()),
                ..Default::default()
            }
        })
        .collect()
}

impl PodWorker {
    pub(crate) fn new(shared: Arc<NodeShared>, inbox: Arc<PodInbox>) -> Self {
        let pod = inbox.pod().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let init = records(spec.init_containers.as_deref().unwrap_or_default(), |c| {
            if c.restart_policy.as_deref() == Some("Always") {
                ContainerKind::Sidecar
            } else {
                ContainerKind::Init
            }
        });
        let regular = records(&spec.containers, |_| ContainerKind::Regular);
        // A pod already finished before this worker (e.g. before a restart) stays so.
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        Self {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            shared,
            pod,
            inbox,
            sandbox: None,
            sandbox_stopped: false,
            pod_ips: Vec::new(),
            init,
            regular,
            restarts: HashMap::new(),
            pulls: HashMap::new(),
            start_failures: HashMap::new(),
            start_time: Timestamp::now(),
            terminal,
            deleted: false,
            retry_at: None,
        }
    }

    /// What the runtime is told of the pod's sandbox (made when needed rather than
    /// kept: it copies the pod's labels and annotations).
    fn sandbox_config(&self) -> PodSandboxConfig {
        let meta = &self.pod.metadata;
        PodSandboxConfig {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            uid: self.uid.clone(),
            host_network: self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
        }
    }

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    /// The pods of this pod's namespace. Made for each request rather than kept: a worker
    /// lives as long as its pod, and an `Api` is 272 bytes.
    fn pods_api(&self) -> Api<Pod> {
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced(self.shared.client.clone(), namespace)
    }

    pub(crate) async fn run(mut self) {
        // The first pass drives the containers; later ones do only when the runtime
        // reported a change, a timer is due, or the pod is being deleted. A plain status
        // update (our own write's echo, a controller's condition) only gets a status pass.
        let mut drive = true;
        loop {
            // Boxed, so a waiting worker holds only its state, not the larger future of
            // a pass (kept inline it would cost every pod several KiB all its life).
            let wake = Box::pin(self.sync(drive)).await;
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            drive = tokio::select! {
                _ = self.shared.cancel.cancelled() => return,
                delivery = self.inbox.next() => match delivery {
                    Delivery::Pod(pod, nudged) => {
                        self.observe(pod);
                        nudged || self.pod.metadata.deletion_timestamp.is_some()
                    }
                    Delivery::Nudged => true,
                    Delivery::Gone => break,
                },
                _ = sleep => true,
            };
        }
        Box::pin(self.remove_from_runtime()).await;
    }

    /// Takes a newer pod object (from the watch or a write's response).
    fn observe(&mut self, pod: Arc<Pod>) {
        let version = |p: &Pod| {
            p.metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if version(&pod) >= version(&self.pod) {
            self.pod = pod;
        }
    }

    /// One pass toward the desired state; returns when to wake up without news.
    async fn sync(&mut self, drive: bool) -> Option<Instant> {
        if self.retry_at.is_some_and(|at| at <= Instant::now()) {
            self.retry_at = None;
        }
        if self.deleted {
            return None;
        }
        if self.pod.metadata.deletion_timestamp.is_some() {
            self.terminate_and_delete().await;
            return self.retry_at;
        }
        if drive && !self.terminal {
            self.refresh().await;
            if self.ensure_sandbox().await {
                self.drive_containers().await;
            }
            if matches!(
                phase(&self.pod, &self.init, &self.regular),
                "Succeeded" | "Failed"
            ) {
                self.terminal = true;
                self.stop_everything(Duration::ZERO).await;
            }
        }
        self.write_status(None).await;
        self.next_wake()
    }

    /// The earliest future moment something is due: a back-off ending, a retry, or a
    /// relist of a runtime that pushes no events. Expired back-offs are not due.
    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        let retry = self.retry_at.filter(|at| *at > now);
        if self.terminal {
            return retry;
        }
        // Probes' first successes change `started` and `ready` without a runtime event.
        let wall = std::time::SystemTime::now();
        let probes = self
            .init
            .iter()
            .chain(&self.regular)
            .flat_map(|r| [r.started_by(), r.ready_by()])
            .flatten()
            .filter_map(|at| at.duration_since(wall).ok())
            .filter(|wait| !wait.is_zero())
            .map(|wait| now + wait);
        // Half-way through a pull back-off the waiting reason turns from ErrImagePull
        // to ImagePullBackOff, as the kubelet's next sync shows it.
        let pull_midpoints = self.pulls.values().map(|b| b.since + b.delay / 2);
        let backoffs = self
            .restarts
            .values()
            .chain(self.pulls.values())
            .chain(self.start_failures.values())
            .map(Backoff::until)
            .chain(pull_midpoints)
            .chain(probes);
        let relist = (!self.shared.runtime_pushes_events.load(Ordering::Relaxed))
            .then(|| now + RELIST_PERIOD);
        backoffs
            .filter(|at| *at > now)
            .chain(relist)
            .chain(retry)
            .min()
    }

    /// Reads the current containers' states from the runtime.
    async fn refresh(&mut self) {
        let runtime = self.shared.config.runtime.clone();
        for record in self.init.iter_mut().chain(self.regular.iter_mut()) {
            if let Some(id) = &record.id {
                match runtime.container_status(id).await {
                    Ok(status) => {
                        record.state = Some(status.state);
                        record.runtime_ready = status.ready;
                    }
                    Err(error) if error.is_not_found() => {
                        record.id = None;
                        record.state = None;
                    }
                    Err(error) => tracing::debug!(%error, "container status failed"),
                }
            }
        }
    }

    async fn ensure_sandbox(&mut self) -> bool {
        if self.sandbox.is_some() {
            return true;
        }
        if self.retry_at.is_some_and(|at| at > Instant::now()) {
            return false;
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        if !host_network && !self.shared.ensure_pod_cidr().await {
            self.retry_at = Some(Instant::now() + RETRY_DELAY);
            return false;
        }
        let config = self.sandbox_config();
        let runtime = self.shared.config.runtime.clone();
        let result = async {
            let id = runtime.run_pod_sandbox(&config).await?;
            let status = runtime.pod_sandbox_status(&id).await?;
            Ok::<_, crate::Error>((id, status.ips))
        }
        .await;
        match result {
            Ok((id, ips)) => {
                self.sandbox = Some(id);
                self.pod_ips = if host_network {
                    self.shared.node_ips().to_vec()
                } else {
                    ips
                };
                self.retry_at = None;
                true
            }
            Err(error) => {
                tracing::warn!(pod = %self.name(), %error, "cannot create the pod sandbox");
                self.retry_at = Some(Instant::now() + RETRY_DELAY);
                false
            }
        }
    }

    /// Init containers one at a time (sidecars started and left running), then every
    /// regular container; exited ones restarted as the restart policy says.
    async fn drive_containers(&mut self) {
        let policy = restart_policy(&self.pod).to_string();
        for index in 0..self.init.len() {
            let record = &self.init[index];
            match record.kind {
                ContainerKind::Sidecar => {
                    if record.id.is_none() {
                        self.start(true, index).await;
                    } else if record.exit_code().is_some() {
                        self.restart(true, index).await;
                    }
                }
                _ => match record.exit_code() {
                    Some(0) => continue,
                    Some(_) if policy == "Never" => return,
                    Some(_) => {
                        self.restart(true, index).await;
                        return;
                    }
                    None if record.id.is_none() => {
                        self.start(true, index).await;
                        return;
                    }
                    None => return,
                },
            }
        }
        if self.init.iter().any(|c| !c.init_done()) {
            return;
        }
        for index in 0..self.regular.len() {
            let record = &self.regular[index];
            match record.exit_code() {
                None if record.id.is_none() => self.start(false, index).await,
                Some(code) if policy == "Always" || (policy == "OnFailure" && code != 0) => {
                    self.restart(false, index).await;
                }
                _ => {}
            }
        }
    }

    fn record(&mut self, init: bool, index: usize) -> &mut ContainerRecord {
        if init {
            &mut self.init[index]
        } else {
            &mut self.regular[index]
        }
    }

    /// Restarts an exited container, unless it is in crash-loop back-off.
    async fn restart(&mut self, init: bool, index: usize) {
        let now = Instant::now();
        let name = self.record(init, index).name.clone();
        if let Some(backoff) = self.restarts.get(&name).copied()
            && backoff.until() > now
        {
            let message = format!(
                "back-off {}s restarting failed container={name} pod={}_{}({})",
                backoff.delay.as_secs(),
                self.name(),
                self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                self.uid,
            );
            self.record(init, index).waiting = Some(("CrashLoopBackOff".into(), message));
            return;
        }
        let previous = self.restarts.get(&name).copied();
        self.restarts.insert(name, Backoff::next(previous, now));
        let runtime = self.shared.config.runtime.clone();
        let record = self.record(init, index);
        // The exited container stays for `logs --previous`; the one before it goes.
        if let Some(older) = record.previous_id.take() {
            let _ = runtime.remove_container(&older).await;
        }
        record.previous_id = record.id.take();
        record.last_exit = record.state.take();
        record.restart_count += 1;
        self.start(init, index).await;
    }

    /// Pulls, creates and starts a container; failures show as waiting reasons.
    async fn start(&mut self, init: bool, index: usize) {
        let Some(sandbox) = self.sandbox.clone() else {
            return;
        };
        let now = Instant::now();
        let runtime = self.shared.config.runtime.clone();
        let meta = self.pod.metadata.clone();
        let spec_container = {
            let spec = self.pod.spec.clone().unwrap_or_default();
            if init {
                spec.init_containers.unwrap_or_default().get(index).cloned()
            } else {
                spec.containers.get(index).cloned()
            }
        };
        let record = self.record(init, index).clone();
        if self
            .start_failures
            .get(&record.name)
            .is_some_and(|b| b.until() > now)
        {
            // Still backing off from a failed create or start; the waiting reason stays.
            return;
        }
        if let Some(backoff) = self.pulls.get(&record.name)
            && backoff.until() > now
        {
            let message = format!("Back-off pulling image \"{}\"", record.image);
            self.record(init, index).waiting = Some(("ImagePullBackOff".into(), message));
            return;
        }
        let image_ref = match runtime
            .pull_image(&record.image, &self.sandbox_config())
            .await
        {
            Ok(image_ref) => {
                self.pulls.remove(&record.name);
                image_ref
            }
            Err(error) => {
                let previous = self.pulls.get(&record.name).copied();
                self.pulls
                    .insert(record.name.clone(), Backoff::next(previous, now));
                let message = format!("Failed to pull image \"{}\": {error}", record.image);
                self.record(init, index).waiting = Some(("ErrImagePull".into(), message));
                return;
            }
        };
        let ports = spec_container
            .as_ref()
            .and_then(|c| c.ports.as_ref())
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| u16::try_from(p.container_port).ok())
                    .collect()
            })
            .unwrap_or_default();
        let config = ContainerConfig {
            ports,
            name: record.name.clone(),
            image: record.image.clone(),
            kind: record.kind,
            attempt: record.restart_count,
            pod_uid: self.uid.clone(),
            pod_namespace: meta.namespace.clone().unwrap_or_default(),
            pod_name: meta.name.clone().unwrap_or_default(),
            command: spec_container
                .map(|c| {
                    c.command
                        .unwrap_or_default()
                        .into_iter()
                        .chain(c.args.unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            pod_labels: meta.labels.clone().unwrap_or_default(),
        };
        let started = async {
            let id = runtime
                .create_container(&sandbox, &config)
                .await
                .map_err(|e| ("CreateContainerError", e))?;
            if let Err(error) = runtime.start_container(&id).await {
                // Leave nothing behind: the next attempt creates a fresh container.
                let _ = runtime.remove_container(&id).await;
                return Err(("RunContainerError", error));
            }
            let status = runtime
                .container_status(&id)
                .await
                .map_err(|e| ("RunContainerError", e))?;
            Ok::<_, (&str, crate::Error)>((id, status))
        }
        .await;
        let record = self.record(init, index);
        record.image_ref = Some(image_ref);
        match started {
            Ok((id, status)) => {
                record.id = Some(id);
                record.state = Some(status.state);
                record.runtime_ready = status.ready;
                record.waiting = None;
                let name = record.name.clone();
                self.start_failures.remove(&name);
            }
            Err((reason, error)) => {
                record.waiting = Some((reason.into(), error.to_string()));
                let name = record.name.clone();
                let previous = self.start_failures.get(&name).copied();
                self.start_failures
                    .insert(name, Backoff::next(previous, now));
            }
        }
    }

    /// Stops every container (all at once, as the kubelet kills a pod) and the
    /// sandbox, giving containers `grace` to exit.
    async fn stop_everything(&mut self, grace: Duration) {
        let runtime = self.shared.config.runtime.clone();
        let mut running = Vec::new();
        for record in self.init.iter_mut().chain(self.regular.iter_mut()) {
            record.waiting = None;
            if let (Some(id), true) = (&record.id, record.is_running()) {
                running.push(id.clone());
            }
        }
        let stops = running.iter().map(|id| runtime.stop_container(id, grace));
        futures::future::join_all(stops).await;
        if let Some(sandbox) = &self.sandbox
            && !self.sandbox_stopped
        {
            let _ = runtime.stop_pod_sandbox(sandbox).await;
            self.sandbox_stopped = true;
        }
        self.refresh().await;
    }

    /// Graceful deletion: stop within the grace period, write the terminal status, then
    /// delete with grace period 0 and this pod's UID as precondition.
    async fn terminate_and_delete(&mut self) {
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
                uid: Some(self.uid.clone()),
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

    async fn remove_from_runtime(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            let runtime = self.shared.config.runtime.clone();
            let _ = runtime.stop_pod_sandbox(&sandbox).await;
            let _ = runtime.remove_pod_sandbox(&sandbox).await;
        }
    }

    /// Writes the status if it differs from what the API holds; returns false when a
    /// write failed.
    async fn write_status(&mut self, phase_override: Option<&str>) -> bool {
        if self.shared.cut_off() {
            // A node cut off from the API server writes nothing; it catches up on resume.
            return false;
        }
        let host_ips: Vec<IpAddr> = self.shared.node_ips().to_vec();
        let facts = PodFacts {
            pod: &self.pod,
            init: &self.init,
            regular: &self.regular,
            sandbox_ready: self.sandbox.is_some() && !self.sandbox_stopped,
            pod_ips: &self.pod_ips,
            host_ips: &host_ips,
            runtime_name: &self.shared.runtime_name,
            start_time: self.start_time,
        };
        let mut status = compute(&facts, Timestamp::now());
        if let Some(phase) = phase_override {
            status.phase = Some(phase.into());
        }
        let phase = phase_index(status.phase.as_deref().unwrap_or("Unknown"));
        self.inbox.phase.store(phase, Ordering::Relaxed);
        let Ok(new) = serde_json::to_value(&status) else {
            return false;
        };
        let observed = serde_json::to_value(self.pod.status.clone().unwrap_or_default())
            .unwrap_or(Value::Null);
        let diff = top_level_diff(&observed, &new);
        if diff.is_empty() {
            return true;
        }
        let patch = json!({ "metadata": { "uid": self.uid }, "status": diff });
        match self
            .pods_api()
            .patch_status(
                self.name(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Ok(pod) => {
                self.observe(Arc::new(super::shared::slimmed(pod)));
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
        }
    }
}

/// The top-level fields of `new` that differ from `old`, and `null` for the ones `new`
/// dropped.
fn top_level_diff(old: &Value, new: &Value) -> Map<String, Value> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_cover_changes_and_removals() {
        let old = json!({ "phase": "Pending", "podIP": "10.0.0.2", "qosClass": "BestEffort" });
        let new = json!({ "phase": "Running", "qosClass": "BestEffort", "hostIP": "127.0.0.1" });
        let diff = top_level_diff(&old, &new);
        assert_eq!(
            Value::Object(diff),
            json!({ "phase": "Running", "hostIP": "127.0.0.1", "podIP": null })
        );
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let now = Instant::now();
        let mut backoff = Backoff::next(None, now);
        let mut delays = vec![backoff.delay.as_secs()];
        for _ in 0..7 {
            backoff = Backoff::next(Some(backoff), now);
            delays.push(backoff.delay.as_secs());
        }
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
