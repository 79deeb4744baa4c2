//! What the engine's prober asks a runtime: the outcome of one container probe.
//!
//! The kubelet runs exec probes in the container (the CRI's `ExecSync`) and HTTP, TCP
//! and gRPC probes over the pod's network (pkg/kubelet/prober/prober.go). A hollow
//! node has no pod network, so the runtime answers all four; one that cannot tell
//! answers [`ProbeOutcome::Unknown`] and the engine keeps its timing model (the probe
//! succeeds once its initial delay has passed).

use std::time::{Duration, SystemTime};

/// What a probe does (the handler of a pod spec's `Probe`), ports resolved.
///
/// ```
/// use hollow_core::runtime::ProbeAction;
///
/// let action = ProbeAction::Exec { command: vec!["cat".into(), "/tmp/health".into()] };
/// assert!(matches!(action, ProbeAction::Exec { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeAction {
    /// Runs `command` in the container; exit code 0 succeeds.
    Exec {
        /// The command and its arguments.
        command: Vec<String>,
    },
    /// An HTTP GET of `path` on `port`; a status from 200 to 399 succeeds.
    HttpGet {
        /// The port, named ports resolved.
        port: u16,
        /// The path asked for.
        path: String,
    },
    /// A TCP connection to `port`.
    TcpSocket {
        /// The port, named ports resolved.
        port: u16,
    },
    /// A gRPC health check on `port`.
    Grpc {
        /// The port.
        port: u16,
    },
}

/// A probe's outcome.
///
/// ```
/// use hollow_core::runtime::ProbeOutcome;
///
/// let failed = ProbeOutcome::Failure { output: "cat: can't open '/tmp/health'".into() };
/// assert!(!failed.is_success());
/// assert!(ProbeOutcome::Success.is_success());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeOutcome {
    /// The probe succeeded.
    Success,
    /// The probe failed; `output` is what the kubelet's `Unhealthy` Event quotes.
    Failure {
        /// The probe's output or the reason it failed.
        output: String,
    },
    /// The runtime cannot tell (a program or server it does not model).
    Unknown,
}

impl ProbeOutcome {
    /// Whether the probe succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, ProbeOutcome::Success)
    }
}

/// A probe's outcome, and until when it holds.
///
/// ```
/// use std::time::Duration;
/// use hollow_core::runtime::{ProbeOutcome, ProbeReport};
///
/// let report = ProbeReport::new(ProbeOutcome::Success).took(Duration::from_secs(2));
/// assert_eq!(report.until, None);
/// assert_eq!(report.took, Duration::from_secs(2));
/// assert_eq!(ProbeReport::unknown().outcome, ProbeOutcome::Unknown);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeReport {
    /// What the probe gave now.
    pub outcome: ProbeOutcome,
    /// The moment the outcome may change by itself (a script that removes a file
    /// later); `None` when only something the engine sees (an exec, a restart) changes
    /// it. The engine probes again then, not every period.
    pub until: Option<SystemTime>,
    /// How long an exec ran before it ended (a `sleep` in it); the engine waits as long
    /// for a lifecycle hook's exec, which it runs through [`probe`] too, as the kubelet
    /// runs both through the runtime's `ExecSync`.
    ///
    /// [`probe`]: crate::runtime::RuntimeService::probe
    pub took: Duration,
}

impl ProbeReport {
    /// `outcome`, holding until something happens to the container.
    pub fn new(outcome: ProbeOutcome) -> Self {
        ProbeReport {
            outcome,
            until: None,
            took: Duration::ZERO,
        }
    }

    /// The runtime cannot tell.
    pub fn unknown() -> Self {
        ProbeReport::new(ProbeOutcome::Unknown)
    }

    /// The outcome may change by itself at `until`.
    #[must_use]
    pub fn until(mut self, until: Option<SystemTime>) -> Self {
        self.until = until;
        self
    }

    /// The exec ran for `took`.
    #[must_use]
    pub fn took(mut self, took: Duration) -> Self {
        self.took = took;
        self
    }
}
