//! [`FakeRuntime`]: an in-memory runtime whose containers run, exit and fail on script.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::fake_streaming::{ExecOutput, FakeAttach, FakeShell, echo_connection};
use super::streaming::{PortStream, Process};
use super::types::{
    ContainerConfig, ContainerEvent, ContainerKind, ContainerState, ContainerStatus, LogLine,
    PodAction, PodActionKind, PodSandboxConfig, PodSandboxStatus, RuntimeVersion, SandboxState,
};
use super::{RuntimeService, annotations};
use crate::error::{Error, Result};
use crate::lifecycle::{
    ContainerFacts, ContainerStep, DeletionStep, EventStep, EventType, Lifecycle, MIN_REPEAT_PERIOD,
};

/// How many calls a fake remembers by default (the oldest are dropped first).
const CALL_RECORD_LIMIT: usize = 10_000;
/// Events a slow subscriber may fall behind by before it is told it lagged (the engine
/// then resyncs every pod of the node). Preallocated per subscribed runtime, so kept
/// small.
const EVENT_CAPACITY: usize = 8;
/// Pod actions (lifecycle Events, finalizer removals, deletions) are rare: a few slots.
const ACTION_CAPACITY: usize = 4;

/// What a fake container does once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Runs until stopped.
    Run,
    /// Exits by itself `after` its start, with `code` (reason `Completed` for 0,
    /// `Error` otherwise).
    Exit {
        /// How long it runs.
        after: Duration,
        /// Its exit code.
        code: i32,
    },
    /// Plays lifecycle steps, beginning `delay` after its start.
    Steps {
        /// When the steps begin.
        delay: Duration,
        /// The steps.
        steps: Vec<ContainerStep>,
    },
}

impl Behavior {
    /// The steps this behaviour plays, and when they begin.
    fn into_script(self) -> (Duration, Vec<ContainerStep>) {
        match self {
            Behavior::Run => (Duration::ZERO, Vec::new()),
            Behavior::Exit { after, code } => (after, vec![ContainerStep::Exit { code }]),
            Behavior::Steps { delay, steps } => (delay, steps),
        }
    }

    /// The default: init containers exit 0 at once, all others run.
    pub fn default_for(config: &ContainerConfig) -> Behavior {
        match config.kind {
            ContainerKind::Init => Behavior::Exit {
                after: Duration::ZERO,
                code: 0,
            },
            ContainerKind::Sidecar | ContainerKind::Regular => Behavior::Run,
        }
    }
}

/// One recorded call: the method's name and its main argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCall {
    /// The trait method, e.g. `"start_container"`.
    pub method: &'static str,
    /// Its main argument (an id, an image, `namespace/name` of a pod).
    pub arg: String,
}

type BehaviorFn = Arc<dyn Fn(&ContainerConfig) -> Behavior + Send + Sync>;

/// An in-memory [`RuntimeService`]: `Default` works with no setup, and a clone is a
/// handle on the same state, so a test keeps one after handing the other to a node.
///
/// - Containers follow a [`Behavior`]: scripted per container with
///   [`FakeRuntime::set_behavior`], else set by the pod's [`annotations`], else by the
///   [`Lifecycle`] given to [`FakeRuntime::with_lifecycle`], else init containers exit 0
///   at once and all others run.
/// - Pulls fail for images given to [`FakeRuntime::fail_pulls_of`], for pods annotated
///   so, or as the lifecycle's pull rules say; containers of deleted pods stop as its
///   deletion rules say.
/// - [`FakeRuntime::inject_fault`] makes the next calls of a method fail.
/// - [`FakeRuntime::calls`] records every call.
/// - Pod IPs come from the pod CIDR given to [`RuntimeService::update_pod_cidr`].
///
/// ```
/// use std::time::Duration;
/// use hollow_core::runtime::{Behavior, FakeRuntime, RuntimeService, PodSandboxConfig};
///
/// # tokio_test::block_on(async {
/// let fake = FakeRuntime::default();
/// fake.set_behavior(|c| if c.name == "job" {
///     Behavior::Exit { after: Duration::from_secs(5), code: 0 }
/// } else {
///     Behavior::Run
/// });
/// fake.update_pod_cidr("10.1.0.0/24").await?;
/// let sandbox = fake.run_pod_sandbox(&PodSandboxConfig::default()).await?;
/// let status = fake.pod_sandbox_status(&sandbox).await?;
/// assert_eq!(status.ips[0].to_string(), "10.1.0.2");
/// assert_eq!(fake.calls_to("run_pod_sandbox"), 1);
/// # Ok::<(), hollow_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Made at the first subscription: a node subscribes when it gets its first pod,
    /// so the fake of an idle node holds no channel (about 2 KiB for both).
    events: OnceLock<broadcast::Sender<ContainerEvent>>,
    actions: OnceLock<broadcast::Sender<PodAction>>,
}

impl Inner {
    /// Tells subscribers, if any, of a container event.
    fn emit(&self, event: ContainerEvent) {
        if let Some(events) = self.events.get() {
            let _ = events.send(event);
        }
    }

    /// Asks subscribers, if any, to act on a pod.
    fn ask(&self, action: PodAction) {
        if let Some(actions) = self.actions.get() {
            let _ = actions.send(action);
        }
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    pod_cidr: Option<(Ipv4Addr, u8)>,
    used_ips: BTreeSet<u32>,
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, Container>,
    calls: VecDeque<RuntimeCall>,
    faults: HashMap<&'static str, usize>,
    failing_pulls: HashMap<String, String>,
    behavior: Option<BehaviorFn>,
    lifecycle: Option<Arc<Lifecycle>>,
    /// How many calls to remember; 0 records none.
    call_limit: usize,
    /// Programs the fake shell runs with scripted output.
    exec_outputs: Arc<HashMap<String, ExecOutput>>,
    /// Whether exec, attach and port-forward answer `Unsupported`.
    streaming_disabled: bool,
}

struct Sandbox {
    state: SandboxState,
    ip: Option<Ipv4Addr>,
}

struct Container {
    config: ContainerConfig,
    sandbox_id: String,
    image_ref: String,
    state: ContainerState,
    ready: Option<bool>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    call_limit: CALL_RECORD_LIMIT,
                    ..State::default()
                }),
                events: OnceLock::new(),
                actions: OnceLock::new(),
            }),
        }
    }
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("FakeRuntime")
            .field("sandboxes", &state.sandboxes.len())
            .field("containers", &state.containers.len())
            .finish_non_exhaustive()
    }
}

impl FakeRuntime {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plays `lifecycle`'s container, pull and deletion rules (see [`crate::lifecycle`]).
    ///
    /// ```
    /// use hollow_core::lifecycle::Lifecycle;
    /// use hollow_core::runtime::FakeRuntime;
    ///
    /// let fake = FakeRuntime::default().with_lifecycle(Lifecycle::realistic());
    /// # drop(fake);
    /// ```
    #[must_use]
    pub fn with_lifecycle(self, lifecycle: impl Into<Arc<Lifecycle>>) -> Self {
        self.set_lifecycle(lifecycle);
        self
    }

    /// Remembers at most `limit` calls (default 10,000; 0 records none). The runtime a
    /// node builds for itself records none: at thousands of nodes the records would
    /// cost more than the nodes.
    #[must_use]
    pub fn with_call_record_limit(self, limit: usize) -> Self {
        {
            let mut state = self.lock();
            state.call_limit = limit;
            let excess = state.calls.len().saturating_sub(limit);
            state.calls.drain(..excess);
        }
        self
    }

    /// Replaces the lifecycle; containers started from now on follow it.
    pub fn set_lifecycle(&self, lifecycle: impl Into<Arc<Lifecycle>>) {
        self.lock().lifecycle = Some(lifecycle.into());
    }

    /// Scripts what containers do once started.
    pub fn set_behavior(
        &self,
        behavior: impl Fn(&ContainerConfig) -> Behavior + Send + Sync + 'static,
    ) {
        self.lock().behavior = Some(Arc::new(behavior));
    }

    /// Makes every pull of `image` fail with `message` (until [`FakeRuntime::allow_pulls_of`]).
    pub fn fail_pulls_of(&self, image: impl Into<String>, message: impl Into<String>) {
        self.lock()
            .failing_pulls
            .insert(image.into(), message.into());
    }

    /// Lets pulls of `image` succeed again.
    pub fn allow_pulls_of(&self, image: &str) {
        self.lock().failing_pulls.remove(image);
    }

    /// Makes the next `times` calls of `method` (e.g. `"start_container"`) fail with
    /// [`Error::Injected`].
    pub fn inject_fault(&self, method: &'static str, times: usize) {
        self.lock().faults.insert(method, times);
    }

    /// Makes `kubectl exec` of `program` (matched by its file name, also inside
    /// `sh -c`) print and exit as `output` says, instead of the built-in shell's answer.
    ///
    /// ```
    /// use hollow_core::runtime::{ExecOutput, FakeRuntime};
    ///
    /// let fake = FakeRuntime::default();
    /// fake.set_exec_output("date", ExecOutput::new().stdout("Sun Nov 22\n"));
    /// ```
    pub fn set_exec_output(&self, program: impl Into<String>, output: ExecOutput) {
        let mut state = self.lock();
        Arc::make_mut(&mut state.exec_outputs).insert(program.into(), output);
    }

    /// Answers exec, attach and port-forward with [`Error::Unsupported`], as a runtime
    /// without a streaming server does.
    ///
    /// ```
    /// use hollow_core::runtime::FakeRuntime;
    ///
    /// let fake = FakeRuntime::default().without_streaming();
    /// # drop(fake);
    /// ```
    #[must_use]
    pub fn without_streaming(self) -> Self {
        self.lock().streaming_disabled = true;
        self
    }

    /// Every call recorded so far (the latest 10,000).
    pub fn calls(&self) -> Vec<RuntimeCall> {
        self.lock().calls.iter().cloned().collect()
    }

    /// How many times `method` was called.
    pub fn calls_to(&self, method: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|call| call.method == method)
            .count()
    }

    /// The number of sandboxes that exist (ready or not).
    pub fn sandbox_count(&self) -> usize {
        self.lock().sandboxes.len()
    }

    /// Makes a running container exit now with `code`, as a crash or OOM kill would
    /// (`reason` e.g. `"Error"`, `"OOMKilled"`).
    pub fn exit_container(&self, container_id: &str, code: i32, reason: &str) -> Result<()> {
        let event = {
            let mut state = self.lock();
            let container = state
                .containers
                .get_mut(container_id)
                .ok_or_else(|| Error::not_found("container", container_id))?;
            exit(container, container_id, code, reason)
        };
        if let Some(event) = event {
            self.inner.emit(event);
        }
        Ok(())
    }

    /// The ids of running containers named `name` in pods named `pod_name`.
    pub fn running_containers(&self, pod_name: &str, name: &str) -> Vec<String> {
        self.lock()
            .containers
            .iter()
            .filter(|(_, c)| c.config.pod_name == pod_name && c.config.name == name)
            .filter(|(_, c)| matches!(c.state, ContainerState::Running { .. }))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Records a call and fails it if a fault is scripted for it.
    fn enter(&self, method: &'static str, arg: impl Into<String>) -> Result<MutexGuard<'_, State>> {
        let mut state = self.lock();
        if state.call_limit > 0 {
            if state.calls.len() >= state.call_limit {
                state.calls.pop_front();
            }
            state.calls.push_back(RuntimeCall {
                method,
                arg: arg.into(),
            });
        }
        if let Some(remaining) = state.faults.get_mut(method)
            && *remaining > 0
        {
            *remaining -= 1;
            return Err(Error::Injected(method.to_string()));
        }
        Ok(state)
    }

    /// Plays a container's steps in the background, until they end or the container
    /// stops running. A repeating list waits at least [`MIN_REPEAT_PERIOD`] a pass.
    fn play(&self, container_id: String, delay: Duration, steps: Vec<ContainerStep>) {
        if steps.is_empty() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut index = 0;
            let mut pass_started = tokio::time::Instant::now();
            while let Some(step) = steps.get(index) {
                index += 1;
                match step {
                    ContainerStep::Wait(wait) => {
                        tokio::time::sleep(*wait).await;
                        continue;
                    }
                    ContainerStep::Repeat => {
                        let pass = pass_started.elapsed();
                        if pass < MIN_REPEAT_PERIOD {
                            tokio::time::sleep(MIN_REPEAT_PERIOD - pass).await;
                        }
                        pass_started = tokio::time::Instant::now();
                        index = 0;
                        continue;
                    }
                    _ => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                if !apply_step(&inner, &container_id, step) {
                    return;
                }
            }
        });
    }
}

/// Plays one step on a running container; false when the container is gone, stopped
/// or the step ended it.
fn apply_step(inner: &Inner, container_id: &str, step: &ContainerStep) -> bool {
    let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
    let Some(container) = state.containers.get_mut(container_id) else {
        return false;
    };
    if !matches!(container.state, ContainerState::Running { .. }) {
        return false;
    }
    let action = |kind| {
        let c = &container.config;
        PodAction {
            pod_uid: c.pod_uid.clone(),
            namespace: c.pod_namespace.clone(),
            name: c.pod_name.clone(),
            kind,
        }
    };
    let (event, action, goes_on) = match step {
        ContainerStep::Ready(ready) => {
            container.ready = Some(*ready);
            let event = ContainerEvent {
                container_id: container_id.to_string(),
                pod_uid: container.config.pod_uid.clone(),
                state: container.state.clone(),
            };
            (Some(event), None, true)
        }
        ContainerStep::Exit { code } => {
            let reason = if *code == 0 { "Completed" } else { "Error" };
            (exit(container, container_id, *code, reason), None, false)
        }
        ContainerStep::OomKill => (exit(container, container_id, 137, "OOMKilled"), None, false),
        ContainerStep::Restart => {
            let unhealthy = action(PodActionKind::Event(EventStep {
                type_: EventType::Warning,
                reason: "Unhealthy".into(),
                message: "Liveness probe failed: the hollow lifecycle says so".into(),
            }));
            let event = exit(container, container_id, 137, "Error");
            (event, Some(unhealthy), false)
        }
        ContainerStep::Event(step) => {
            (None, Some(action(PodActionKind::Event(step.clone()))), true)
        }
        ContainerStep::RemoveFinalizers => {
            (None, Some(action(PodActionKind::RemoveFinalizers)), true)
        }
        ContainerStep::Delete => (None, Some(action(PodActionKind::Delete)), false),
        ContainerStep::Wait(_) | ContainerStep::Repeat => (None, None, true),
    };
    drop(state);
    if let Some(action) = action {
        inner.ask(action);
    }
    if let Some(event) = event {
        inner.emit(event);
    }
    goes_on
}

impl FakeRuntime {
    /// The pod facts lifecycle rules match a container against.
    fn facts<'a>(config: &'a ContainerConfig) -> ContainerFacts<'a> {
        ContainerFacts {
            namespace: &config.pod_namespace,
            pod: &config.pod_name,
            labels: &config.pod_labels,
            annotations: &config.annotations,
            container: &config.name,
            image: &config.image,
            kind: config.kind,
            attempt: config.attempt,
        }
    }

    /// Stops a container of a pod being deleted as the lifecycle's deletion rules say,
    /// within `grace`; returns the exit code (137 when the grace period ran out).
    async fn stop_gracefully(&self, container_id: &str, grace: Duration) -> i32 {
        let plan = {
            let state = self.lock();
            let (Some(container), Some(lifecycle)) =
                (state.containers.get(container_id), state.lifecycle.clone())
            else {
                return 0;
            };
            if !matches!(container.state, ContainerState::Running { .. }) {
                return 0;
            }
            let config = container.config.clone();
            lifecycle
                .deletion_plan(&Self::facts(&config))
                .map(|plan| (plan.delay, plan.steps.to_vec(), config))
        };
        let Some((delay, steps, config)) = plan else {
            return 0;
        };
        let deadline = tokio::time::Instant::now() + grace;
        let wait =
            |d: Duration| tokio::time::sleep_until((tokio::time::Instant::now() + d).min(deadline));
        wait(delay).await;
        let mut code = 0;
        for step in steps {
            let kind = match step {
                DeletionStep::Wait(d) => {
                    wait(d).await;
                    continue;
                }
                DeletionStep::Exit { code: c } => {
                    code = c;
                    continue;
                }
                DeletionStep::Event(event) => PodActionKind::Event(event),
                DeletionStep::RemoveFinalizers => PodActionKind::RemoveFinalizers,
            };
            self.inner.ask(PodAction {
                pod_uid: config.pod_uid.clone(),
                namespace: config.pod_namespace.clone(),
                name: config.pod_name.clone(),
                kind,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            137
        } else {
            code
        }
    }
}

/// Moves a running container to Exited; returns the event to publish.
fn exit(container: &mut Container, id: &str, code: i32, reason: &str) -> Option<ContainerEvent> {
    let ContainerState::Running { started_at } = container.state else {
        return None;
    };
    container.state = ContainerState::Exited {
        started_at,
        finished_at: SystemTime::now(),
        exit_code: code,
        reason: reason.to_string(),
        message: None,
    };
    Some(ContainerEvent {
        container_id: id.to_string(),
        pod_uid: container.config.pod_uid.clone(),
        state: container.state.clone(),
    })
}

fn new_id(state: &mut State, seed: &str) -> String {
    state.next_id += 1;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hex_digest(&format!("{seed}/{}/{nanos}", state.next_id))
}

fn hex_digest(input: &str) -> String {
    Sha256::digest(input.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `nginx:1.27` -> `docker.io/library/nginx@sha256:<digest of the name>`.
fn image_ref(image: &str) -> String {
    let without_tag = match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    };
    let repo = without_tag.split('@').next().unwrap_or(without_tag);
    let qualified = match repo.split_once('/') {
        None => format!("docker.io/library/{repo}"),
        Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            repo.to_string()
        }
        Some(_) => format!("docker.io/{repo}"),
    };
    format!("{qualified}@sha256:{}", hex_digest(image))
}

fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8)> {
    let invalid = || Error::InvalidInput(format!("pod CIDR {cidr:?} is not an IPv4 CIDR"));
    let (addr, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    if !(8..=30).contains(&prefix) {
        return Err(invalid());
    }
    Ok((addr, prefix))
}

fn allocate_ip(state: &mut State) -> Result<Ipv4Addr> {
    let (network, prefix) = state
        .pod_cidr
        .ok_or_else(|| Error::InvalidInput("no pod CIDR set: the network is not ready".into()))?;
    let size = 1u32 << (32 - prefix);
    let base = u32::from(network) & !(size - 1);
    // .0 is the network, .1 the gateway, the last the broadcast address.
    let offset = (2..size - 1)
        .find(|offset| !state.used_ips.contains(offset))
        .ok_or_else(|| Error::InvalidInput("the pod CIDR has no free address".into()))?;
    state.used_ips.insert(offset);
    Ok(Ipv4Addr::from(base + offset))
}

fn release_ip(state: &mut State, ip: Ipv4Addr) {
    if let Some((network, prefix)) = state.pod_cidr {
        let size = 1u32 << (32 - prefix);
        let base = u32::from(network) & !(size - 1);
        state.used_ips.remove(&u32::from(ip).wrapping_sub(base));
    }
}

/// How often a running fake container writes a log line.
const LOG_TICK: Duration = Duration::from_secs(10);
/// How many of those lines are kept (older ones are rotated away).
const LOG_TICKS_KEPT: u32 = 1000;

/// A fake container's log: a start line, the pod's `hollow.dev/logs` lines, a line
/// every 10 s while it runs, and an exit line. Computed from its times, never stored.
/// A running container, or the error a runtime gives for exec into anything else.
fn running<'a>(state: &'a State, container_id: &str) -> Result<&'a Container> {
    let container = state
        .containers
        .get(container_id)
        .ok_or_else(|| Error::not_found("container", container_id))?;
    match container.state {
        ContainerState::Running { .. } => Ok(container),
        _ => Err(Error::InvalidInput(format!(
            "container {container_id} is not running"
        ))),
    }
}

fn generated_logs(container: &Container, now: SystemTime) -> Vec<LogLine> {
    let c = &container.config;
    let (started_at, end, exit) = match &container.state {
        ContainerState::Created { .. } => return Vec::new(),
        ContainerState::Running { started_at } => (*started_at, now, None),
        ContainerState::Exited {
            started_at,
            finished_at,
            exit_code,
            reason,
            ..
        } => (
            *started_at,
            *finished_at,
            Some((*exit_code, reason.as_str())),
        ),
    };
    let line = |time, text: String| LogLine { time, text };
    let mut lines = vec![line(
        started_at,
        format!(
            "hollow: container {} of pod {}/{} started (attempt {})",
            c.name, c.pod_namespace, c.pod_name, c.attempt
        ),
    )];
    if let Some(configured) = c.annotations.get(annotations::LOGS) {
        lines.extend(
            configured
                .lines()
                .map(|text| line(started_at, text.to_string())),
        );
    }
    let ran = end.duration_since(started_at).unwrap_or_default();
    let ticks = u32::try_from(ran.as_secs() / LOG_TICK.as_secs()).unwrap_or(u32::MAX);
    for tick in ticks.saturating_sub(LOG_TICKS_KEPT) + 1..=ticks {
        let after = LOG_TICK * tick;
        lines.push(line(
            started_at + after,
            format!("hollow: {} running for {}s", c.name, after.as_secs()),
        ));
    }
    if let Some((code, reason)) = exit {
        lines.push(line(
            end,
            format!("hollow: {} exited with code {code} ({reason})", c.name),
        ));
    }
    lines
}

fn status_of(id: &str, container: &Container) -> ContainerStatus {
    ContainerStatus {
        id: id.to_string(),
        sandbox_id: container.sandbox_id.clone(),
        pod_uid: container.config.pod_uid.clone(),
        name: container.config.name.clone(),
        attempt: container.config.attempt,
        image: container.config.image.clone(),
        image_ref: container.image_ref.clone(),
        state: container.state.clone(),
        ready: container.ready,
    }
}

#[async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        let _state = self.enter("version", "")?;
        Ok(RuntimeVersion {
            name: "hollow".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    async fn update_pod_cidr(&self, cidr: &str) -> Result<()> {
        let mut state = self.enter("update_pod_cidr", cidr)?;
        let parsed = parse_cidr(cidr)?;
        if state.pod_cidr != Some(parsed) {
            state.pod_cidr = Some(parsed);
            state.used_ips.clear();
            let ips: Vec<Ipv4Addr> = state.sandboxes.values().filter_map(|s| s.ip).collect();
            for ip in ips {
                let size = 1u32 << (32 - parsed.1);
                let base = u32::from(parsed.0) & !(size - 1);
                state.used_ips.insert(u32::from(ip).wrapping_sub(base));
            }
        }
        Ok(())
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let mut state = self.enter(
            "run_pod_sandbox",
            format!("{}/{}", config.namespace, config.name),
        )?;
        let ip = if config.host_network {
            None
        } else {
            Some(allocate_ip(&mut state)?)
        };
        let id = new_id(&mut state, &config.uid);
        state.sandboxes.insert(
            id.clone(),
            Sandbox {
                state: SandboxState::Ready,
                ip,
            },
        );
        Ok(id)
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus> {
        let state = self.enter("pod_sandbox_status", sandbox_id)?;
        let sandbox = state
            .sandboxes
            .get(sandbox_id)
            .ok_or_else(|| Error::not_found("sandbox", sandbox_id))?;
        Ok(PodSandboxStatus {
            id: sandbox_id.to_string(),
            state: sandbox.state,
            ips: sandbox.ip.map(IpAddr::V4).into_iter().collect(),
        })
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let events = {
            let mut state = self.enter("stop_pod_sandbox", sandbox_id)?;
            let Some(sandbox) = state.sandboxes.get_mut(sandbox_id) else {
                return Ok(());
            };
            sandbox.state = SandboxState::NotReady;
            let mut events = Vec::new();
            for (id, container) in state.containers.iter_mut() {
                if container.sandbox_id == sandbox_id {
                    events.extend(exit(container, id, 0, "Completed"));
                }
            }
            events
        };
        for event in events {
            self.inner.emit(event);
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let mut state = self.enter("remove_pod_sandbox", sandbox_id)?;
        if let Some(sandbox) = state.sandboxes.remove(sandbox_id) {
            if let Some(ip) = sandbox.ip {
                release_ip(&mut state, ip);
            }
            state.containers.retain(|_, c| c.sandbox_id != sandbox_id);
        }
        Ok(())
    }

    async fn pull_image(&self, image: &str, pod: &PodSandboxConfig) -> Result<String> {
        let (wait, failure) = {
            let state = self.enter("pull_image", image)?;
            let failure = state
                .failing_pulls
                .get(image)
                .or_else(|| pod.annotations.get(annotations::PULL_ERROR));
            if let Some(message) = failure {
                return Err(Error::InvalidInput(message.clone()));
            }
            let facts = ContainerFacts {
                namespace: &pod.namespace,
                pod: &pod.name,
                labels: &pod.labels,
                annotations: &pod.annotations,
                container: "",
                image,
                kind: ContainerKind::Regular,
                attempt: 0,
            };
            match state.lifecycle.as_ref().and_then(|l| l.pull_plan(&facts)) {
                None => (Duration::ZERO, None),
                Some(plan) => plan
                    .steps
                    .iter()
                    .fold((plan.delay, None), |(wait, error), step| match step {
                        crate::lifecycle::PullStep::Wait(d) => (wait + *d, error),
                        crate::lifecycle::PullStep::PullError(m) => (wait, Some(m.clone())),
                    }),
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        match failure {
            Some(message) => Err(Error::InvalidInput(message)),
            None => Ok(image_ref(image)),
        }
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let mut state = self.enter("create_container", format!("{sandbox_id}/{}", config.name))?;
        match state.sandboxes.get(sandbox_id) {
            None => return Err(Error::not_found("sandbox", sandbox_id)),
            Some(sandbox) if sandbox.state != SandboxState::Ready => {
                return Err(Error::InvalidInput(format!(
                    "sandbox {sandbox_id} is not ready"
                )));
            }
            Some(_) => {}
        }
        let id = new_id(
            &mut state,
            &format!("{sandbox_id}/{}/{}", config.name, config.attempt),
        );
        state.containers.insert(
            id.clone(),
            Container {
                config: config.clone(),
                sandbox_id: sandbox_id.to_string(),
                image_ref: image_ref(&config.image),
                state: ContainerState::Created {
                    created_at: SystemTime::now(),
                },
                ready: None,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        let (behavior, event) = {
            let mut state = self.enter("start_container", container_id)?;
            let behavior = state.behavior.clone();
            let lifecycle = state.lifecycle.clone();
            let container = state
                .containers
                .get_mut(container_id)
                .ok_or_else(|| Error::not_found("container", container_id))?;
            if !matches!(container.state, ContainerState::Created { .. }) {
                return Err(Error::InvalidInput(format!(
                    "container {container_id} was started before"
                )));
            }
            let behavior = match behavior {
                Some(script) => script(&container.config),
                None => match annotations::behavior(&container.config)? {
                    Some(behavior) => behavior,
                    None => lifecycle
                        .as_ref()
                        .and_then(|l| l.container_plan(&Self::facts(&container.config)))
                        .map(|plan| Behavior::Steps {
                            delay: plan.delay,
                            steps: plan.steps.to_vec(),
                        })
                        .unwrap_or_else(|| Behavior::default_for(&container.config)),
                },
            };
            container.state = ContainerState::Running {
                started_at: SystemTime::now(),
            };
            let event = ContainerEvent {
                container_id: container_id.to_string(),
                pod_uid: container.config.pod_uid.clone(),
                state: container.state.clone(),
            };
            (behavior, event)
        };
        self.inner.emit(event);
        let (delay, steps) = behavior.into_script();
        self.play(container_id.to_string(), delay, steps);
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<()> {
        drop(self.enter("stop_container", container_id)?);
        let code = if timeout.is_zero() {
            0
        } else {
            self.stop_gracefully(container_id, timeout).await
        };
        let event = {
            let mut state = self.lock();
            let container = state
                .containers
                .get_mut(container_id)
                .ok_or_else(|| Error::not_found("container", container_id))?;
            let reason = if code == 0 { "Completed" } else { "Error" };
            exit(container, container_id, code, reason)
        };
        if let Some(event) = event {
            self.inner.emit(event);
        }
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        let mut state = self.enter("remove_container", container_id)?;
        state.containers.remove(container_id);
        Ok(())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        let state = self.enter("container_status", container_id)?;
        state
            .containers
            .get(container_id)
            .map(|container| status_of(container_id, container))
            .ok_or_else(|| Error::not_found("container", container_id))
    }

    async fn list_containers<'a>(
        &self,
        sandbox_id: Option<&'a str>,
    ) -> Result<Vec<ContainerStatus>> {
        let state = self.enter("list_containers", sandbox_id.unwrap_or_default())?;
        Ok(state
            .containers
            .iter()
            .filter(|(_, c)| sandbox_id.is_none_or(|sandbox| c.sandbox_id == sandbox))
            .map(|(id, c)| status_of(id, c))
            .collect())
    }

    async fn container_logs(
        &self,
        container_id: &str,
        tail: Option<usize>,
    ) -> Result<Vec<LogLine>> {
        let state = self.enter("container_logs", container_id)?;
        let container = state
            .containers
            .get(container_id)
            .ok_or_else(|| Error::not_found("container", container_id))?;
        let lines = generated_logs(container, SystemTime::now());
        let skip = tail.map_or(0, |tail| lines.len().saturating_sub(tail));
        Ok(lines.into_iter().skip(skip).collect())
    }

    async fn exec(
        &self,
        container_id: &str,
        command: &[String],
        _tty: bool,
    ) -> Result<Box<dyn Process>> {
        let state = self.enter("exec", container_id)?;
        if state.streaming_disabled {
            return Err(Error::Unsupported("exec"));
        }
        let container = running(&state, container_id)?;
        Ok(Box::new(FakeShell {
            command: command.to_vec(),
            hostname: container.config.pod_name.clone(),
            scripted: state.exec_outputs.clone(),
        }))
    }

    async fn attach(&self, container_id: &str, _tty: bool) -> Result<Box<dyn Process>> {
        let state = self.enter("attach", container_id)?;
        if state.streaming_disabled {
            return Err(Error::Unsupported("attach"));
        }
        running(&state, container_id)?;
        Ok(Box::new(FakeAttach {
            runtime: self.clone(),
            container_id: container_id.to_string(),
        }))
    }

    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<Box<dyn PortStream>> {
        let state = self.enter("port_forward", sandbox_id)?;
        if state.streaming_disabled {
            return Err(Error::Unsupported("port forward"));
        }
        if !state.sandboxes.contains_key(sandbox_id) {
            return Err(Error::not_found("sandbox", sandbox_id));
        }
        let listening = state.containers.values().any(|c| {
            c.sandbox_id == sandbox_id
                && matches!(c.state, ContainerState::Running { .. })
                && c.config.ports.contains(&port)
        });
        if !listening {
            return Err(Error::InvalidInput(format!(
                "failed to connect to localhost:{port} inside the pod's network: \
                 connection refused (no running container declares port {port})"
            )));
        }
        Ok(echo_connection())
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<ContainerEvent>> {
        let events = self
            .inner
            .events
            .get_or_init(|| broadcast::channel(EVENT_CAPACITY).0);
        Some(events.subscribe())
    }

    fn subscribe_actions(&self) -> Option<broadcast::Receiver<PodAction>> {
        let actions = self
            .inner
            .actions
            .get_or_init(|| broadcast::channel(ACTION_CAPACITY).0);
        Some(actions.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_are_qualified_digests() {
        let nginx = image_ref("nginx:1.27");
        assert!(
            nginx.starts_with("docker.io/library/nginx@sha256:"),
            "{nginx}"
        );
        assert_eq!(nginx.len(), "docker.io/library/nginx@sha256:".len() + 64);
        assert!(image_ref("registry.k8s.io/pause:3.10").starts_with("registry.k8s.io/pause@"));
        assert!(image_ref("localhost:5000/app").starts_with("localhost:5000/app@"));
        assert!(image_ref("me/app:v1").starts_with("docker.io/me/app@"));
        assert_ne!(image_ref("nginx:1.27"), image_ref("nginx:1.28"));
    }

    #[tokio::test]
    async fn ips_are_allocated_and_released() {
        let fake = FakeRuntime::default();
        let config = PodSandboxConfig::default();
        assert!(matches!(
            fake.run_pod_sandbox(&config).await,
            Err(Error::InvalidInput(_))
        ));
        fake.update_pod_cidr("10.0.0.0/30").await.unwrap();
        let first = fake.run_pod_sandbox(&config).await.unwrap();
        // A /30 has one usable pod address after the gateway.
        assert!(fake.run_pod_sandbox(&config).await.is_err());
        fake.remove_pod_sandbox(&first).await.unwrap();
        let again = fake.run_pod_sandbox(&config).await.unwrap();
        let ips = fake.pod_sandbox_status(&again).await.unwrap().ips;
        assert_eq!(ips, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
        let host = PodSandboxConfig {
            host_network: true,
            ..Default::default()
        };
        let sandbox = fake.run_pod_sandbox(&host).await.unwrap();
        assert!(
            fake.pod_sandbox_status(&sandbox)
                .await
                .unwrap()
                .ips
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn scripted_exits_are_pushed_as_events() {
        let fake = FakeRuntime::default();
        fake.set_behavior(|_| Behavior::Exit {
            after: Duration::from_secs(5),
            code: 3,
        });
        let mut events = fake.subscribe().unwrap();
        fake.update_pod_cidr("10.0.0.0/24").await.unwrap();
        let sandbox = fake
            .run_pod_sandbox(&PodSandboxConfig::default())
            .await
            .unwrap();
        let config = ContainerConfig {
            name: "c".into(),
            pod_uid: "uid-1".into(),
            ..Default::default()
        };
        let id = fake.create_container(&sandbox, &config).await.unwrap();
        fake.start_container(&id).await.unwrap();
        let started = events.recv().await.unwrap();
        assert!(matches!(started.state, ContainerState::Running { .. }));
        let exited = events.recv().await.unwrap();
        assert_eq!(exited.pod_uid, "uid-1");
        match exited.state {
            ContainerState::Exited {
                exit_code, reason, ..
            } => {
                assert_eq!((exit_code, reason.as_str()), (3, "Error"));
            }
            other => panic!("expected an exit, got {other:?}"),
        }
    }

    async fn started(fake: &FakeRuntime, config: ContainerConfig) -> String {
        fake.update_pod_cidr("10.0.0.0/24").await.unwrap();
        let sandbox = fake
            .run_pod_sandbox(&PodSandboxConfig::default())
            .await
            .unwrap();
        let id = fake.create_container(&sandbox, &config).await.unwrap();
        fake.start_container(&id).await.unwrap();
        id
    }

    fn regular(pod: &str) -> ContainerConfig {
        ContainerConfig {
            name: "app".into(),
            image: "nginx".into(),
            pod_name: pod.into(),
            pod_namespace: "default".into(),
            pod_uid: format!("uid-{pod}"),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lifecycle_steps_flap_readiness_and_ask_for_actions() {
        let lifecycle = Lifecycle::from_yaml(
            "containers:\n  - delay: 1s\n    steps: [ {ready: false}, {event: {type: Warning, reason: Flap}}, {wait: 2s}, {ready: true}, {wait: 2s}, repeat ]\n",
            "t",
        )
        .unwrap();
        let fake = FakeRuntime::default().with_lifecycle(lifecycle);
        let mut actions = fake.subscribe_actions().unwrap();
        let id = started(&fake, regular("p")).await;
        assert_eq!(fake.container_status(&id).await.unwrap().ready, None);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(fake.container_status(&id).await.unwrap().ready, Some(false));
        let action = actions.recv().await.unwrap();
        assert_eq!(
            (action.name.as_str(), action.pod_uid.as_str()),
            ("p", "uid-p")
        );
        assert!(matches!(action.kind, PodActionKind::Event(ref e) if e.reason == "Flap"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fake.container_status(&id).await.unwrap().ready, Some(true));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fake.container_status(&id).await.unwrap().ready, Some(false));
        // Stopping the container ends the play.
        fake.stop_container(&id, Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(matches!(
            fake.container_status(&id).await.unwrap().state,
            ContainerState::Exited { exit_code: 0, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn lifecycle_oom_kills_and_pull_errors() {
        let lifecycle = Lifecycle::from_yaml(
            "containers:\n  - steps: [ {wait: 3s}, oomKill ]\npulls:\n  - match: {images: [broken]}\n    steps: [ {wait: 1s}, {pullError: manifest unknown} ]\n",
            "t",
        )
        .unwrap();
        let fake = FakeRuntime::default().with_lifecycle(lifecycle);
        let id = started(&fake, regular("p")).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        match fake.container_status(&id).await.unwrap().state {
            ContainerState::Exited {
                exit_code, reason, ..
            } => assert_eq!((exit_code, reason.as_str()), (137, "OOMKilled")),
            other => panic!("expected an OOM kill, got {other:?}"),
        }
        let pod = PodSandboxConfig::default();
        let before = tokio::time::Instant::now();
        let error = fake.pull_image("broken", &pod).await.unwrap_err();
        assert!(error.to_string().contains("manifest unknown"), "{error}");
        assert!(before.elapsed() >= Duration::from_secs(1));
        assert!(fake.pull_image("nginx", &pod).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn deletion_rules_stop_within_the_grace_period() {
        let lifecycle = Lifecycle::from_yaml(
            "deletions:\n  - match: {containers: [slow]}\n    steps: [ {wait: 1m}, {exit: {code: 0}} ]\n  - match: {containers: [app]}\n    steps: [ {wait: 2s}, removeFinalizers, {exit: {code: 143}} ]\n",
            "t",
        )
        .unwrap();
        let fake = FakeRuntime::default().with_lifecycle(lifecycle);
        let mut actions = fake.subscribe_actions().unwrap();
        let app = started(&fake, regular("p")).await;
        let before = tokio::time::Instant::now();
        fake.stop_container(&app, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(before.elapsed().as_secs(), 2);
        assert_eq!(
            actions.recv().await.unwrap().kind,
            PodActionKind::RemoveFinalizers
        );
        let exit_code = |state| match state {
            ContainerState::Exited { exit_code, .. } => exit_code,
            other => panic!("expected an exit, got {other:?}"),
        };
        assert_eq!(
            exit_code(fake.container_status(&app).await.unwrap().state),
            143
        );
        let slow = started(
            &fake,
            ContainerConfig {
                name: "slow".into(),
                ..regular("q")
            },
        )
        .await;
        let before = tokio::time::Instant::now();
        fake.stop_container(&slow, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            before.elapsed().as_secs(),
            5,
            "killed at the end of the grace period"
        );
        assert_eq!(
            exit_code(fake.container_status(&slow).await.unwrap().state),
            137
        );
    }

    #[tokio::test]
    async fn faults_fail_the_next_calls_only() {
        let fake = FakeRuntime::default();
        fake.inject_fault("version", 1);
        assert!(matches!(fake.version().await, Err(Error::Injected(_))));
        assert!(fake.version().await.is_ok());
        assert_eq!(fake.calls_to("version"), 2);
        fake.fail_pulls_of("bad:1", "manifest unknown");
        assert!(
            fake.pull_image("bad:1", &PodSandboxConfig::default())
                .await
                .is_err()
        );
        fake.allow_pulls_of("bad:1");
        assert!(
            fake.pull_image("bad:1", &PodSandboxConfig::default())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn unknown_ids_are_not_found() {
        let fake = FakeRuntime::default();
        assert!(
            fake.container_status("nope")
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(
            fake.start_container("nope")
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(
            fake.pod_sandbox_status("nope")
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(fake.remove_pod_sandbox("nope").await.is_ok());
    }
}
