//! The node's heartbeats: its Lease, renewed every 10 s, and its status, computed every
//! 10 s and written on change or every 5 minutes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use rand::Rng;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::node_status::{StatusInputs, Written, compute, stamp};
use super::shared::NodeShared;

/// The namespace kubelets keep their Leases in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The jitter the kubelet adds to its lease renew interval.
const RENEW_JITTER: f64 = 0.04;

/// A node's heartbeat state. Its task lives as long as the node, so it keeps little
/// (a test bounds the task's size): the Lease boxed, a digest of the written status,
/// and API handles made when a request is made.
struct Heartbeat {
    shared: Arc<NodeShared>,
    node_uid: Box<str>,
    lease: Option<Box<Lease>>,
    /// Whether this node's Lease has been seen (created or renewed) by this process.
    lease_seen: bool,
    written: Option<Written>,
    /// When the status is written even if unchanged; `None` until a first write.
    report_due: Option<Instant>,
    force_write: bool,
}

/// When a node that wrote its status `at` writes it again unchanged. The first period
/// after start is drawn from half to all of `report`: nodes started together (a
/// thousand in a few seconds) would otherwise rewrite their status together every
/// 5 minutes, a burst the API server answers late, and Leases renewed in it miss.
/// Later periods are whole; each node keeps the phase it drew.
fn report_due(at: Instant, report: Duration, first: bool) -> Instant {
    let share = if first {
        rand::rng().random_range(0.5..=1.0)
    } else {
        1.0
    };
    at + report.mul_f64(share)
}

/// Runs until the node shuts down. `registered` is the status the Node was created
/// with, if it was: it counts as written, so it is not written again at once.
pub(crate) async fn run(shared: Arc<NodeShared>, node_uid: String, registered: Option<Written>) {
    let report = shared.config.timing.status_report;
    let mut heartbeat = Heartbeat {
        shared,
        node_uid: node_uid.into(),
        lease: None,
        lease_seen: false,
        report_due: registered
            .as_ref()
            .map(|_| report_due(Instant::now(), report, true)),
        written: registered,
        force_write: false,
    };
    let timing = heartbeat.shared.config.timing;
    let mut next_status = Instant::now();
    let mut next_lease = Instant::now();
    loop {
        let shared = &heartbeat.shared;
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = shared.resumed.notified() => {
                heartbeat.force_write = true;
                next_status = Instant::now();
                next_lease = Instant::now();
            }
            _ = tokio::time::sleep_until(next_status.min(next_lease)) => {}
        }
        let now = Instant::now();
        if heartbeat.shared.heartbeats_paused.load(Ordering::Relaxed) {
            next_status = now + timing.status_update;
            next_lease = now + timing.lease_renew;
            continue;
        }
        if now >= next_status {
            let was_stopped = heartbeat.shared.heartbeats_stopped.load(Ordering::Relaxed);
            // Boxed, as below: a waiting loop then holds only its state, not the
            // larger future of a write (several KiB for every node, all its life).
            Box::pin(heartbeat.update_status()).await;
            next_status = now + timing.status_update;
            let stopped = heartbeat.shared.heartbeats_stopped.load(Ordering::Relaxed);
            if stopped {
                // A vanished node renews nothing; the provider is asked again next period.
                next_lease = next_status;
                continue;
            }
            if was_stopped {
                next_lease = now;
                // Every pod worker rewrites what changed while the node was away.
                heartbeat.shared.route_event(Err(RecvError::Lagged(0)));
            }
        }
        // The Lease says the kubelet is alive, not that the node is healthy: a kubelet
        // whose runtime is down keeps renewing it and reports Ready=False instead.
        if now >= next_lease {
            next_lease = if Box::pin(heartbeat.renew_lease()).await {
                let jitter = rand::rng().random_range(0.0..RENEW_JITTER);
                now + timing.lease_renew.mul_f64(1.0 + jitter)
            } else {
                heartbeat.force_write = true;
                now + Duration::from_secs(1)
            };
        }
    }
}

/// What the node has to report now.
pub(crate) enum Observed {
    /// Its status, not yet stamped with times.
    Status(Box<NodeStatus>),
    /// Its heartbeats are stopped (a fault): nothing is written.
    Stopped,
    /// The status provider failed (logged).
    Failed,
}

/// Asks the providers for the node's status, with the Node's fault annotations applied.
pub(crate) async fn observe(shared: &NodeShared) -> Observed {
    let config = &shared.config;
    let health = config
        .node_status
        .ping()
        .await
        .map_err(|error| error.to_string());
    let mut report = match config.node_status.status().await {
        Ok(report) => report,
        Err(error) => {
            tracing::warn!(node = %config.name, %error, "node status provider failed");
            return Observed::Failed;
        }
    };
    let annotated = shared
        .annotated
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    report.conditions.extend(annotated.conditions);
    let stopped = report.heartbeats_stopped || annotated.heartbeats_stopped;
    if shared.heartbeats_stopped.swap(stopped, Ordering::Relaxed) != stopped {
        tracing::info!(node = %config.name, stopped, "heartbeats switched by the node's faults");
    }
    if stopped {
        return Observed::Stopped;
    }
    let addresses: Vec<NodeAddress> = config
        .addresses
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        })
        .chain(std::iter::once(NodeAddress {
            type_: "Hostname".into(),
            address: config.name.clone(),
        }))
        .collect();
    Observed::Status(Box::new(compute(&StatusInputs {
        report: &report,
        configured_addresses: &addresses,
        capacity_overrides: &config.capacity,
        allocatable_overrides: &config.allocatable,
        machine: &shared.machine,
        runtime_version: &shared.runtime_version,
        kubelet_version: &config.kubelet_version,
        kubelet_port: config.kubelet_port,
        health,
    })))
}

/// Whether a status says the node is Ready.
pub(crate) fn is_ready(status: &NodeStatus) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

impl Heartbeat {
    /// Computes the status and writes it if needed.
    async fn update_status(&mut self) {
        let shared = &self.shared;
        let config = &shared.config;
        let mut status = match observe(shared).await {
            Observed::Status(status) => *status,
            Observed::Stopped => {
                self.force_write = true;
                return;
            }
            Observed::Failed => return,
        };
        let due = self.report_due.is_none_or(|at| Instant::now() >= at);
        let changed = self.written.as_ref().is_none_or(|old| old.differs(&status));
        if !(changed || due || self.force_write) {
            return;
        }
        stamp(&mut status, self.written.as_ref(), Timestamp::now());
        let patch = json!({ "status": status });
        let nodes: Api<Node> = Api::all(shared.client.clone());
        match nodes
            .patch_status(
                &config.name,
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Ok(node) => {
                let ready = is_ready(&status);
                let first = self.written.is_none();
                self.written = Some(Written::of(&status));
                self.report_due = Some(report_due(
                    Instant::now(),
                    config.timing.status_report,
                    first,
                ));
                self.force_write = false;
                shared.ready.send_replace(ready);
                if let Some(cidr) = node.spec.and_then(|spec| spec.pod_cidr) {
                    shared.learn_pod_cidr(&cidr).await;
                }
            }
            Err(error) => {
                tracing::warn!(node = %config.name, %error, "node status update failed");
                self.force_write = true;
            }
        }
    }

    /// Creates or renews the Lease; returns whether it worked. The Lease held from the
    /// last renewal is updated in place; without one (first run, or after a conflict)
    /// it is read again, or created.
    async fn renew_lease(&mut self) -> bool {
        let name = self.shared.config.name.clone();
        let now = MicroTime(Timestamp::now());
        // A node's first renewal creates its Lease without asking first (one request
        // fewer per node while thousands register); one that exists answers 409, and
        // is then read and renewed.
        let mut assume_missing = self.lease.is_none() && !self.lease_seen;
        let leases: Api<Lease> = Api::namespaced(self.shared.client.clone(), LEASE_NAMESPACE);
        for _ in 0..3 {
            let current = match self.lease.take() {
                Some(lease) => Ok(Some(*lease)),
                None if assume_missing => Ok(None),
                None => leases.get_opt(&name).await,
            };
            assume_missing = false;
            let result = match current {
                Ok(Some(mut lease)) => {
                    let spec = lease.spec.get_or_insert_with(Default::default);
                    spec.renew_time = Some(now.clone());
                    spec.holder_identity = Some(name.clone());
                    leases.replace(&name, &PostParams::default(), &lease).await
                }
                Ok(None) => {
                    leases
                        .create(&PostParams::default(), &self.new_lease(now.clone()))
                        .await
                }
                Err(error) => Err(error),
            };
            match result {
                Ok(mut lease) => {
                    // Kept for the next renewal without its managedFields (most of the
                    // object); an update that omits them leaves the server's as they are.
                    lease.metadata.managed_fields = None;
                    self.lease = Some(Box::new(lease));
                    self.lease_seen = true;
                    self.shared
                        .lease_renewed
                        .send_replace(Some(std::time::Instant::now()));
                    return true;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => {
                    tracing::warn!(node = %name, %error, "lease renewal failed");
                    return false;
                }
            }
        }
        false
    }

    fn new_lease(&self, now: MicroTime) -> Lease {
        let name = &self.shared.config.name;
        Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(LEASE_NAMESPACE.into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.clone(),
                    uid: self.node_uid.to_string(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: i32::try_from(
                    self.shared.config.timing.lease_duration.as_secs(),
                )
                .ok(),
                renew_time: Some(now),
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_report_period_is_spread_and_later_ones_are_whole() {
        let at = Instant::now();
        let report = Duration::from_secs(300);
        let firsts: Vec<Duration> = (0..200)
            .map(|_| report_due(at, report, true) - at)
            .collect();
        assert!(firsts.iter().all(|d| (report / 2..=report).contains(d)));
        let (min, max) = (firsts.iter().min().unwrap(), firsts.iter().max().unwrap());
        assert!(*max - *min > report / 4, "spread {min:?}..{max:?}");
        assert_eq!(report_due(at, report, false), at + report);
    }
}
