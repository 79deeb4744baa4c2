//! What a [`FakeRuntime`](super::FakeRuntime) remembers (sandboxes, containers, the
//! scripts it follows) and the channels it tells its subscribers on.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::behavior::BehaviorFn;
use super::calls::{RuntimeCall, RuntimeMethod};
use super::exits::Exits;
use super::held::Held;
use super::ids::{IdKey, IdMap};
use super::streaming::ExecOutput;
use super::termination::termination_message;
use super::userland::FsDiff;
use crate::error::{Error, Result};
use crate::lifecycle::Lifecycle;
use crate::runtime::HeldState;
use crate::runtime::types::{
    ContainerEvent, ContainerState, ContainerStatus, PodAction, SandboxState,
};

/// How many calls a fake remembers by default (the oldest are dropped first).
const CALL_RECORD_LIMIT: usize = 10_000;
/// Events a slow subscriber may fall behind by before it is told it lagged (the engine
/// then resyncs every pod of the node). Preallocated per subscribed runtime, so kept
/// small.
const EVENT_CAPACITY: usize = 8;
/// Pod actions (lifecycle Events, finalizer removals, deletions) are rare: a few slots.
const ACTION_CAPACITY: usize = 4;

/// What the clones of one fake share.
pub(super) struct Inner {
    pub(super) state: Mutex<State>,
    /// Made at the first subscription: a node subscribes when it gets its first pod,
    /// so the fake of an idle node holds no channel (about 2 KiB for both).
    events: OnceLock<broadcast::Sender<ContainerEvent>>,
    actions: OnceLock<broadcast::Sender<PodAction>>,
    /// The shared timer of timed exits, made at the first.
    pub(super) exits: OnceLock<Arc<Exits>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(exits) = self.exits.get() {
            exits.close();
        }
    }
}

impl Inner {
    /// A fake with nothing in it, remembering the latest [`CALL_RECORD_LIMIT`] calls.
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                call_limit: CALL_RECORD_LIMIT,
                ..State::default()
            }),
            events: OnceLock::new(),
            actions: OnceLock::new(),
            exits: OnceLock::new(),
        }
    }

    /// Tells subscribers, if any, of a container event.
    pub(super) fn emit(&self, event: ContainerEvent) {
        if let Some(events) = self.events.get() {
            let _ = events.send(event);
        }
    }

    /// Asks subscribers, if any, to act on a pod.
    pub(super) fn ask(&self, action: PodAction) {
        if let Some(actions) = self.actions.get() {
            let _ = actions.send(action);
        }
    }

    /// A new subscriber to container events (the channel is made at the first).
    pub(super) fn subscribe_events(&self) -> broadcast::Receiver<ContainerEvent> {
        self.events
            .get_or_init(|| broadcast::channel(EVENT_CAPACITY).0)
            .subscribe()
    }

    /// A new subscriber to pod actions (the channel is made at the first).
    pub(super) fn subscribe_actions(&self) -> broadcast::Receiver<PodAction> {
        self.actions
            .get_or_init(|| broadcast::channel(ACTION_CAPACITY).0)
            .subscribe()
    }
}

/// Everything a fake remembers, behind one lock.
#[derive(Default)]
pub(super) struct State {
    /// The pod CIDR: its address and prefix length.
    pub(super) pod_cidr: Option<(Ipv4Addr, u8)>,
    /// The pod IPs in use, as offsets into the pod CIDR.
    pub(super) used_ips: BTreeSet<u32>,
    pub(super) sandboxes: IdMap<Sandbox>,
    /// Boxed: a container record is some 300 bytes, and a table keeps room to spare.
    pub(super) containers: IdMap<Box<Container>>,
    pub(super) calls: VecDeque<RuntimeCall>,
    /// How many of the next calls of a method fail.
    pub(super) faults: HashMap<RuntimeMethod, usize>,
    /// Images whose pulls fail, with the message they fail with.
    pub(super) failing_pulls: HashMap<String, String>,
    pub(super) behavior: Option<BehaviorFn>,
    pub(super) lifecycle: Option<Arc<Lifecycle>>,
    /// How many calls to remember; 0 records none.
    pub(super) call_limit: usize,
    /// Programs the fake shell runs with scripted output.
    pub(super) exec_outputs: Arc<HashMap<String, ExecOutput>>,
    /// Whether exec, attach and port-forward answer `Unsupported`.
    pub(super) streaming_disabled: bool,
}

impl State {
    /// Records a call (unless calls are not recorded), and fails it if a fault is
    /// scripted for its method.
    pub(super) fn record_call(
        &mut self,
        method: RuntimeMethod,
        arg: impl Into<String>,
    ) -> Result<()> {
        if self.call_limit > 0 {
            if self.calls.len() >= self.call_limit {
                self.calls.pop_front();
            }
            self.calls.push_back(RuntimeCall {
                method,
                arg: arg.into(),
            });
        }
        if let Some(remaining) = self.faults.get_mut(&method)
            && *remaining > 0
        {
            *remaining -= 1;
            return Err(Error::Injected(method.as_str().to_string()));
        }
        Ok(())
    }

    /// A running container, or the error a runtime gives for exec into anything else.
    pub(super) fn running_container(&self, container_id: &str) -> Result<&Container> {
        let container = self
            .containers
            .get(container_id)
            .ok_or_else(|| Error::not_found("container", container_id))?;
        match container.state {
            HeldState::Running(_) => Ok(container),
            _ => Err(Error::InvalidInput(format!(
                "container {container_id} is not running"
            ))),
        }
    }
}

/// A pod sandbox.
pub(super) struct Sandbox {
    pub(super) state: SandboxState,
    /// Its pod IP; none on the host network.
    pub(super) ip: Option<Ipv4Addr>,
}

/// A container of a sandbox.
pub(super) struct Container {
    /// What it was created with, as much as the fake reads again.
    pub(super) held: Held,
    /// Its sandbox's key.
    pub(super) sandbox: IdKey,
    /// (Held in 16 bytes: a container lives as long as its pod.)
    pub(super) state: HeldState,
    /// Set by lifecycle steps; `None` leaves readiness to the engine.
    pub(super) ready: Option<bool>,
    /// What `kubectl exec` changed in its files, once something was.
    pub(super) files_diff: Option<Box<FsDiff>>,
    /// When it exits by itself, and with what code (`super::exits`).
    /// (Boxed: few containers have one, and a container lives as long as its pod.)
    pub(super) exit_at: Option<Box<(tokio::time::Instant, i32)>>,
}

impl Container {
    /// Moves a running container to Exited; returns the event to publish.
    pub(super) fn exit(&mut self, id: &str, code: i32, reason: &str) -> Option<ContainerEvent> {
        let HeldState::Running(started_at) = self.state else {
            return None;
        };
        let finished_at = SystemTime::now();
        let message = termination_message(self, code, finished_at);
        self.state = ContainerState::Exited {
            started_at,
            finished_at,
            exit_code: code,
            reason: reason.to_string(),
            message,
        }
        .into();
        Some(self.event(id))
    }

    /// The event telling subscribers of the container's current state.
    pub(super) fn event(&self, id: &str) -> ContainerEvent {
        ContainerEvent {
            container_id: id.to_string(),
            pod_uid: self.held.pod_uid().to_string(),
            state: self.state.get().into_owned(),
        }
    }

    /// The status the runtime reports for it.
    pub(super) fn status(&self, id: &str) -> ContainerStatus {
        ContainerStatus {
            id: id.to_string(),
            sandbox_id: self.sandbox.id(),
            pod_uid: self.held.pod_uid().to_string(),
            name: self.held.name().to_string(),
            attempt: self.held.attempt(),
            image: self.held.image().to_string(),
            // Derived from the image name, not kept.
            image_ref: super::ids::image_ref(self.held.image()),
            state: self.state.get().into_owned(),
            ready: self.ready,
        }
    }
}
