//! [`FakeRuntime`]: an in-memory runtime whose containers run, exit and fail on script.
//!
//! This file holds the handle and its scripting API; the parts it is made of:
//!
//! - `service`: the [`RuntimeService`](super::RuntimeService) implementation,
//! - `state`: what the fake remembers (sandboxes, containers, scripts, recorded calls,
//!   injected faults) and its event channels,
//! - `calls`: what a call is recorded as ([`RuntimeMethod`], [`RuntimeCall`]),
//! - `behavior`: what a container does once started ([`Behavior`]),
//! - [`annotations`]: the pod annotations that script it,
//! - `steps`: the player of a container's lifecycle steps,
//! - `stop`: graceful stops as the lifecycle's deletion rules say,
//! - `pulls`: image pulls as failing images, annotations and pull rules say,
//! - `ids`: sandbox and container ids, image digests,
//! - `ips`: pod IPs from the pod CIDR,
//! - `logs`: the log lines a container writes,
//! - `streaming`: exec, attach and port-forward.

pub mod annotations;
mod behavior;
mod calls;
mod exits;
mod files;
mod held;
mod ids;
mod ips;
mod logs;
mod pulls;
mod service;
mod state;
mod steps;
mod stop;
mod streaming;
mod termination;
mod userland;

use std::sync::Arc;

use parking_lot::MutexGuard;

use self::state::{Inner, State};
use super::types::ContainerConfig;
use crate::error::{Error, Result};
use crate::lifecycle::Lifecycle;
use crate::runtime::HeldState;

pub use self::behavior::Behavior;

/// Whether the fake runtime's userland runs `command` (a container's command and
/// args): the engine then makes the container's environment for it.
pub(crate) fn runs_in_userland(command: &[String]) -> bool {
    userland::runs(command)
}

/// Whether the fake reads the files of a container of `image` running `command`: the
/// userland runs it, or it is a well-known web server serving files. The engine then
/// gives it what its volumes hold.
pub(crate) fn reads_files(image: &str, command: &[String]) -> bool {
    userland::runs(command) || userland::docroot(image, command).is_some()
}
pub use self::calls::{RuntimeCall, RuntimeMethod};
pub use self::streaming::ExecOutput;

/// An in-memory [`RuntimeService`](super::RuntimeService): `Default` works with no
/// setup, and a clone is a handle on the same state, so a test keeps one after handing
/// the other to a node.
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
/// - Pod IPs come from the pod CIDR given to
///   [`RuntimeService::update_pod_cidr`](super::RuntimeService::update_pod_cidr).
///
/// ```
/// use std::time::Duration;
/// use hollow_core::runtime::{
///     Behavior, FakeRuntime, PodSandboxConfig, RuntimeMethod, RuntimeService,
/// };
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
/// assert_eq!(fake.calls_to(RuntimeMethod::RunPodSandbox), 1);
/// # Ok::<(), hollow_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner::new()),
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
    /// Checks that `cidr` is a pod CIDR the fake runtime takes (`update_pod_cidr`): an
    /// IPv4 network with a prefix of 8 to 30 bits. For validating a CIDR early, before
    /// any node starts.
    ///
    /// ```
    /// use hollow_core::runtime::FakeRuntime;
    ///
    /// assert!(FakeRuntime::check_pod_cidr("10.0.0.0/24").is_ok());
    /// assert!(FakeRuntime::check_pod_cidr("10.0.0.0/31").is_err());
    /// assert!(FakeRuntime::check_pod_cidr("fd00::/64").is_err());
    /// ```
    pub fn check_pod_cidr(cidr: &str) -> crate::error::Result<()> {
        ips::parse_cidr(cidr).map(drop)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock()
    }

    /// Records a call and fails it if a fault is scripted for it; else the state, locked.
    fn enter(
        &self,
        method: RuntimeMethod,
        arg: impl Into<String>,
    ) -> Result<MutexGuard<'_, State>> {
        let mut state = self.lock();
        state.record_call(method, arg)?;
        Ok(state)
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
    ///
    /// ```
    /// use hollow_core::runtime::FakeRuntime;
    ///
    /// let fake = FakeRuntime::default().with_call_record_limit(100);
    /// # drop(fake);
    /// ```
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

    /// Replaces the lifecycle; containers started from now on follow it. One with no
    /// container, pull or deletion rule (the `fast` preset) plays as none: the runtime
    /// then keeps only what a plain container shows, and a container that ignores
    /// SIGTERM outlasts its stop as without a lifecycle.
    pub fn set_lifecycle(&self, lifecycle: impl Into<Arc<Lifecycle>>) {
        let lifecycle: Arc<Lifecycle> = lifecycle.into();
        let plays = !(lifecycle.containers.is_empty()
            && lifecycle.pulls.is_empty()
            && lifecycle.deletions.is_empty());
        self.lock().lifecycle = plays.then_some(lifecycle);
    }

    /// Scripts what containers do once started.
    pub fn set_behavior(
        &self,
        behavior: impl Fn(&ContainerConfig) -> Behavior + Send + Sync + 'static,
    ) {
        self.lock().behavior = Some(Arc::new(behavior));
    }

    /// Makes every pull of `image` fail with `message` (until [`FakeRuntime::allow_pulls_of`]).
    ///
    /// ```
    /// use hollow_core::runtime::{FakeRuntime, PodSandboxConfig, RuntimeService};
    ///
    /// # tokio_test::block_on(async {
    /// let fake = FakeRuntime::default();
    /// fake.fail_pulls_of("nginx:broken", "manifest unknown");
    /// let pod = PodSandboxConfig::default();
    /// assert!(fake.pull_image("nginx:broken", &pod).await.is_err());
    /// fake.allow_pulls_of("nginx:broken");
    /// assert!(fake.pull_image("nginx:broken", &pod).await.is_ok());
    /// # });
    /// ```
    pub fn fail_pulls_of(&self, image: impl Into<String>, message: impl Into<String>) {
        self.lock()
            .failing_pulls
            .insert(image.into(), message.into());
    }

    /// Lets pulls of `image` succeed again.
    pub fn allow_pulls_of(&self, image: &str) {
        self.lock().failing_pulls.remove(image);
    }

    /// Makes the next `times` calls of `method` fail with [`Error::Injected`] (calls
    /// of [`RuntimeMethod::Subscribe`] and [`RuntimeMethod::SubscribeActions`] cannot
    /// fail).
    ///
    /// ```
    /// use hollow_core::runtime::{FakeRuntime, RuntimeMethod, RuntimeService};
    ///
    /// # tokio_test::block_on(async {
    /// let fake = FakeRuntime::default();
    /// fake.inject_fault(RuntimeMethod::Version, 1);
    /// assert!(fake.version().await.is_err());
    /// assert!(fake.version().await.is_ok());
    /// # });
    /// ```
    pub fn inject_fault(&self, method: RuntimeMethod, times: usize) {
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

    /// How many times `method` was called (of the calls recorded; subscriptions are
    /// not recorded).
    ///
    /// ```
    /// use hollow_core::runtime::{FakeRuntime, RuntimeMethod, RuntimeService};
    ///
    /// # tokio_test::block_on(async {
    /// let fake = FakeRuntime::default();
    /// fake.version().await?;
    /// assert_eq!(fake.calls_to(RuntimeMethod::Version), 1);
    /// assert_eq!(fake.calls_to(RuntimeMethod::PullImage), 0);
    /// # Ok::<(), hollow_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn calls_to(&self, method: RuntimeMethod) -> usize {
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
            container.exit(container_id, code, reason)
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
            .filter(|(_, c)| c.held.pod_name() == pod_name && c.held.name() == name)
            .filter(|(_, c)| matches!(c.state, HeldState::Running(_)))
            .map(|(key, _)| key.id())
            .collect()
    }
}

#[cfg(test)]
mod tests;
