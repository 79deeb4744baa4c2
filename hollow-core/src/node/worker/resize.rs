//! The worker's side of an in-place resize ([`crate::node::resize`]): a newer spec that
//! asks for other resources is admitted again, applied through the runtime, and shown
//! through the resize conditions and Events, as the kubelet's allocation manager and
//! `SyncPod` do (pkg/kubelet/allocation/allocation_manager.go,
//! `handlePodResourcesResize`; pkg/kubelet/kubelet.go, `SyncPod` and `HandlePodUpdates`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition, ResourceRequirements};
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::PodWorker;
use crate::node::admission::admit;
use crate::node::admission::beyond_allocatable;
use crate::node::events::Kind;
use crate::node::heartbeat::{Observed, observe};
use crate::node::resize::{
    Allocation, DEFERRED, IN_PROGRESS, INFEASIBLE, PENDING, condition, event_message,
};

/// When a deferred resize is tried again (the allocation manager's `retryDelay`).
const RETRY: Duration = Duration::from_secs(180);
/// When an applied resize is seen done: the kubelet's next sync of the pod, which the
/// relist it asks for after a sync brings (the PLEG's relist period).
const SETTLE: Duration = Duration::from_secs(1);

/// A resize underway: held only while one is (a pod never resized holds nothing).
#[derive(Debug, Default)]
pub(super) struct ResizeState {
    /// What the resizable containers are allocated, while the spec asks for more or
    /// less; `None` once the spec is what they are allocated.
    allocated: Option<Allocation>,
    pending: Option<PodCondition>,
    in_progress: Option<PodCondition>,
    /// The generation a pending resize was last judged at.
    judged: Option<i64>,
    /// When the resize is looked at again without news.
    wake: Option<Instant>,
}

impl PodWorker {
    /// Before `newer` replaces the pod: a spec whose resizable containers ask for other
    /// resources starts a resize, keeping what they were allocated.
    pub(super) fn note_resize(&mut self, older: &Pod, newer: &Pod) {
        if self.terminal
            || self.rejected.is_some()
            || newer.metadata.generation == older.metadata.generation
            || self.resize.as_ref().is_some_and(|r| r.allocated.is_some())
        {
            return;
        }
        let allocated = Allocation::of(older);
        if allocated != Allocation::of(newer) {
            self.resize.get_or_insert_with(Default::default).allocated = Some(allocated);
        }
    }

    /// The pod as its status shows it: with its allocated resources while a resize
    /// waits, `None` when that is the pod itself.
    pub(super) fn allocated_pod(&self) -> Option<Pod> {
        let allocated = self.resize.as_ref()?.allocated.as_ref()?;
        Some(allocated.apply(&self.pod))
    }

    /// The resize conditions the status carries.
    pub(super) fn resize_conditions(&self) -> Vec<PodCondition> {
        self.resize
            .iter()
            .flat_map(|r| [r.pending.clone(), r.in_progress.clone()])
            .flatten()
            .collect()
    }

    /// When the resize needs a look without news.
    pub(super) fn resize_wake(&self) -> Option<Instant> {
        self.resize.as_ref().and_then(|r| r.wake)
    }

    /// One step of a resize underway: an applied one is done, a reverted one dropped, a
    /// new or deferred one admitted (and applied) or deferred. A deferred one is judged
    /// again when its spec changed, when it is due, or on a `nudged` pass (another
    /// pod freed or took resources).
    pub(super) async fn handle_resize(&mut self, nudged: bool) {
        if self.resize.is_none() {
            return;
        }
        if self.terminal {
            // A finished pod's resize conditions are cleared (`determinePodResizeStatus`).
            self.resize = None;
            self.inbox.resize_pending.store(false, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        let generation = self.pod.metadata.generation;
        let Some(state) = self.resize.as_mut() else {
            return;
        };
        let due = state.wake.is_none_or(|at| at <= now);
        if state.allocated.is_none() && due && state.in_progress.is_some() {
            let failed = state
                .in_progress
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some("Error"));
            // A failed update is tried again as it is, restarting nothing.
            if failed
                && !self
                    .apply_resize(&Allocation::default(), &Allocation::of(&self.pod), false)
                    .await
            {
                return;
            }
            // Applied: what is allocated is what the runtime runs.
            let Some(state) = self.resize.as_mut() else {
                return;
            };
            let done = state.in_progress.take();
            let shown = done.and_then(|c| c.observed_generation).unwrap_or_default();
            let message = event_message("Pod resize completed", &self.pod, shown, "");
            self.pod_event(Kind::Normal, "ResizeCompleted", message);
        }
        let Some(state) = self.resize.as_mut() else {
            return;
        };
        if let Some(allocated) = state.allocated.clone() {
            let desired = Allocation::of(&self.pod);
            if desired == allocated {
                // Reverted before it was applied.
                state.allocated = None;
                state.pending = None;
            } else if due || nudged || state.judged != generation {
                Box::pin(self.admit_resize(allocated, desired)).await;
            }
        }
        if self.resize.as_ref().is_some_and(|r| {
            r.allocated.is_none() && r.pending.is_none() && r.in_progress.is_none()
        }) {
            self.resize = None;
        }
        let pending = self.resize.as_ref().is_some_and(|r| r.pending.is_some());
        self.inbox.resize_pending.store(pending, Ordering::Relaxed);
    }

    /// Admits the resize to `desired` against the node's other pods; applies it to the
    /// running containers or defers it.
    async fn admit_resize(&mut self, allocated: Allocation, desired: Allocation) {
        let generation = self.pod.metadata.generation;
        let Observed::Status(node) = observe(&self.shared).await else {
            return;
        };
        let allocatable = node.allocatable.unwrap_or_default();
        let capacity_check = self
            .shared
            .config
            .kubelet
            .has(crate::version::Behaviour::ResizeInfeasibleBeyondAllocatable);
        if let Some(message) =
            beyond_allocatable(&self.pod, &allocatable).filter(|_| capacity_check)
        {
            self.resize_infeasible(&message, generation);
            return;
        }
        let others = self.shared.other_active_pods(&self.inbox.uid);
        let others: Vec<&Pod> = others.iter().map(AsRef::as_ref).collect();
        let verdict = admit(&self.pod, &allocatable, &others, None);
        let now = Timestamp::now();
        let Some(state) = self.resize.as_mut() else {
            return;
        };
        state.judged = generation;
        match verdict {
            Ok(()) => {
                state.allocated = None;
                state.pending = None;
                state.in_progress = Some(condition(IN_PROGRESS, None, "", "", generation, now));
                state.wake = Some(Instant::now() + SETTLE);
                let message =
                    event_message("Pod resize started", &self.pod, generation.unwrap_or(0), "");
                self.pod_event(Kind::Normal, "ResizeStarted", message);
                self.inbox.resize_pending.store(false, Ordering::Relaxed);
                self.shared.retry_pending_resizes();
                self.apply_resize(&allocated, &desired, true).await;
            }
            Err(rejection) => {
                let retry = Some(Instant::now() + RETRY);
                let event = ("ResizeDeferred", rejection.reason.as_str());
                self.mark_pending(DEFERRED, &rejection.message, generation, retry, event);
            }
        }
    }

    /// Marks the resize `Infeasible` with `message`, never retried (1.34 and 1.35's
    /// `handlePodResourcesResize`: an infeasible resize leaves the pending list).
    fn resize_infeasible(&mut self, message: &str, generation: Option<i64>) {
        self.inbox.resize_pending.store(false, Ordering::Relaxed);
        let event = ("ResizeInfeasible", INFEASIBLE);
        self.mark_pending(INFEASIBLE, message, generation, None, event);
    }

    /// Sets `PodResizePending` with `reason` and `message`, to be judged again at
    /// `retry`, and records the Warning `event` (its reason, and the reason its message
    /// names) when the reason or the generation changed.
    fn mark_pending(
        &mut self,
        reason: &str,
        message: &str,
        generation: Option<i64>,
        retry: Option<Instant>,
        (event, event_reason): (&str, &str),
    ) {
        let Some(state) = self.resize.as_mut() else {
            return;
        };
        state.judged = generation;
        let previous = state.pending.take();
        let changed = previous.as_ref().is_none_or(|p| {
            p.reason.as_deref() != Some(reason) || p.observed_generation != generation
        });
        state.pending = Some(condition(
            PENDING,
            previous.as_ref(),
            reason,
            message,
            generation,
            Timestamp::now(),
        ));
        state.wake = retry;
        if changed {
            let prefix = format!("Pod resize {event_reason}");
            let message = event_message(&prefix, &self.pod, generation.unwrap_or(0), message);
            self.pod_event(Kind::Warning, event, message);
        }
    }

    /// Whether the container's `resizePolicy` says `RestartContainer` for a resource
    /// whose request or limit changes (CPU and memory only are resizable).
    fn resize_needs_restart(
        &self,
        name: &str,
        before: Option<&ResourceRequirements>,
        after: &ResourceRequirements,
    ) -> bool {
        let spec = self.pod.spec.as_ref();
        let container = spec.into_iter().flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        });
        let Some(container) = container.into_iter().find(|c| c.name == name) else {
            return false;
        };
        let quantity = |r: Option<&ResourceRequirements>, limits: bool, resource: &str| {
            r.and_then(|r| {
                if limits {
                    r.limits.as_ref()
                } else {
                    r.requests.as_ref()
                }
            })
            .and_then(|list| list.get(resource))
            .map(|q| q.0.clone())
        };
        container.resize_policy.iter().flatten().any(|policy| {
            policy.restart_policy == "RestartContainer"
                && [false, true].into_iter().any(|limits| {
                    quantity(before, limits, &policy.resource_name)
                        != quantity(Some(after), limits, &policy.resource_name)
                })
        })
    }

    /// Tells the runtime the new resources of each running container they changed for;
    /// a failure shows on the in-progress condition as the kubelet shows it (reason
    /// `Error`, a `ResizeError` Event) and is tried again later. With `restarts`, a
    /// container whose resize policy asks for it is restarted instead. True if all
    /// applied.
    async fn apply_resize(
        &mut self,
        allocated: &Allocation,
        desired: &Allocation,
        restarts: bool,
    ) -> bool {
        let runtime = self.shared.config.runtime.clone();
        let mut failure = None;
        for (name, resources) in allocated.changed_in(desired) {
            if restarts && self.resize_needs_restart(name, allocated.resources_of(name), resources)
            {
                let place = self
                    .init
                    .iter()
                    .position(|r| *r.name == *name)
                    .map(|i| (true, i));
                let place = place.or_else(|| {
                    self.regular
                        .iter()
                        .position(|r| *r.name == *name)
                        .map(|i| (false, i))
                });
                if let Some((init, index)) = place {
                    self.restart_for_resize(init, index).await;
                }
                continue;
            }
            let running = self
                .init
                .iter()
                .chain(&self.regular)
                .find(|r| *r.name == *name && r.is_running())
                .and_then(|r| r.id.as_ref().map(ToString::to_string));
            let Some(id) = running else {
                continue;
            };
            if let Err(error) = runtime.update_container_resources(&id, resources).await {
                failure = Some(format!("failed to update container {name}: {error}"));
            }
        }
        let Some(message) = failure else {
            return true;
        };
        let generation = self.pod.metadata.generation;
        if let Some(state) = self.resize.as_mut() {
            let previous = state.in_progress.take();
            state.in_progress = Some(condition(
                IN_PROGRESS,
                previous.as_ref(),
                "Error",
                &message,
                generation,
                Timestamp::now(),
            ));
            state.wake = Some(Instant::now() + RETRY);
        }
        let text = event_message(
            "Pod resize error",
            &self.pod,
            generation.unwrap_or(0),
            &message,
        );
        self.pod_event(Kind::Warning, "ResizeError", text);
        false
    }
}
