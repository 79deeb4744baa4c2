//! The kubelet's probe workers as data: one per probe of a running container, asked
//! on the probe's period, its result published after `successThreshold` or
//! `failureThreshold` outcomes in a row (pkg/kubelet/prober/worker.go, `doProbe`).
//!
//! A hollow probe is asked only when its outcome may have changed: at its first
//! period, while a streak runs towards a threshold, at the moment the runtime said the
//! outcome may change by itself, and after the container changed (an exec). Between,
//! a settled probe costs no work, where a kubelet asks every period. The moments it is
//! asked are still the kubelet's: `initialDelaySeconds` after the start, then whole
//! periods.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::runtime::ProbeAction;

/// The three probes, in the order the kubelet gates them: liveness and readiness run
/// once the startup probe succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// As the kubelet's `Unhealthy` Events name it.
    pub(crate) fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }

    fn spec(self, container: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => container.startup_probe.as_ref(),
            ProbeKind::Liveness => container.liveness_probe.as_ref(),
            ProbeKind::Readiness => container.readiness_probe.as_ref(),
        }
    }

    /// A result before the first: readiness fails, startup is unknown (not started),
    /// liveness succeeds (`initialValue` in worker.go).
    fn initial(self) -> bool {
        self == ProbeKind::Liveness
    }
}

/// A probe's timing, the API's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    fn of(probe: &Probe) -> Self {
        let seconds = |value: Option<i32>, default: u64| {
            value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default)
        };
        let count = |value: Option<i32>, default: u32| {
            value
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Timing {
            initial_delay: Duration::from_secs(seconds(probe.initial_delay_seconds, 0)),
            period: Duration::from_secs(seconds(probe.period_seconds, 10).max(1)),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// What a probe asks, its named ports resolved against the container's; `None` for
/// a probe without a handler or with a port the container does not name.
pub(crate) fn action(probe: &Probe, container: &Container) -> Option<ProbeAction> {
    let port = |port: &IntOrString| match port {
        IntOrString::Int(number) => u16::try_from(*number).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    };
    if let Some(exec) = &probe.exec {
        return Some(ProbeAction::Exec {
            command: exec.command.clone().unwrap_or_default(),
        });
    }
    if let Some(http) = &probe.http_get {
        return Some(ProbeAction::HttpGet {
            port: port(&http.port)?,
            path: http.path.clone().unwrap_or_else(|| "/".into()),
        });
    }
    if let Some(tcp) = &probe.tcp_socket {
        return Some(ProbeAction::TcpSocket {
            port: port(&tcp.port)?,
        });
    }
    let grpc = probe.grpc.as_ref()?;
    Some(ProbeAction::Grpc {
        port: u16::try_from(grpc.port).ok()?,
    })
}

/// One probe of one running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeWorker {
    pub kind: ProbeKind,
    timing: Timing,
    /// The container's start: the probe's periods count from it.
    started_at: SystemTime,
    /// The published result.
    pub result: bool,
    /// The latest outcome and how many times in a row it came.
    streak: Option<(bool, u32)>,
    /// When it is asked next; `None` until the container changes.
    pub next_at: Option<SystemTime>,
    /// The runtime cannot tell: the probe is left to the timing model.
    pub unknown: bool,
    /// Its container is being killed for it: not asked again.
    pub on_hold: bool,
}

/// What one outcome did to a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The published result did not change.
    None,
    /// It changed to this.
    Published(bool),
}

impl ProbeWorker {
    /// The container's `kind` probe, if it has one, for a container started at
    /// `started_at`.
    pub(crate) fn new(
        kind: ProbeKind,
        container: &Container,
        started_at: SystemTime,
    ) -> Option<Self> {
        let timing = Timing::of(kind.spec(container)?);
        Some(ProbeWorker {
            kind,
            timing,
            started_at,
            result: kind.initial(),
            streak: None,
            next_at: Some(started_at + timing.initial_delay),
            unknown: false,
            on_hold: false,
        })
    }

    /// The first of its moments (initial delay, then whole periods) at or after `at`.
    pub(crate) fn tick_at_or_after(&self, at: SystemTime) -> SystemTime {
        let first = self.started_at + self.timing.initial_delay;
        let Ok(since) = at.duration_since(first) else {
            return first;
        };
        let period = self.timing.period.as_nanos().max(1);
        let periods = since.as_nanos().div_ceil(period);
        let periods = u32::try_from(periods).unwrap_or(u32::MAX);
        first + self.timing.period.saturating_mul(periods)
    }

    /// The moment a probe asked at `now` counts for: the one it was due at, or the
    /// latest period before `now` if it is asked more than a period late.
    pub(crate) fn asked_at(&self, now: SystemTime) -> SystemTime {
        let due = self.next_at.unwrap_or(now);
        let latest = self.tick_at_or_after(now);
        let latest = if latest > now {
            latest.checked_sub(self.timing.period).unwrap_or(due)
        } else {
            latest
        };
        due.max(latest)
    }

    /// Whether it is due at `now`.
    pub(crate) fn due(&self, now: SystemTime) -> bool {
        !self.unknown && !self.on_hold && self.next_at.is_some_and(|at| at <= now)
    }

    /// Takes the outcome of the probe asked at its moment `asked` (`until`: when the
    /// runtime said it may change by itself), as `doProbe` counts it.
    pub(crate) fn observe(
        &mut self,
        success: bool,
        asked: SystemTime,
        until: Option<SystemTime>,
    ) -> Change {
        let run = match self.streak {
            Some((last, run)) if last == success => run.saturating_add(1),
            _ => 1,
        };
        self.streak = Some((success, run));
        let threshold = if success {
            self.timing.success_threshold
        } else {
            self.timing.failure_threshold
        };
        let settled = run >= threshold;
        let change = if settled && self.result != success {
            self.result = success;
            Change::Published(success)
        } else {
            Change::None
        };
        self.next_at = if !settled || !success {
            // A failing probe is asked every period, each failure an `Unhealthy`
            // Event, as the kubelet's worker asks it.
            Some(asked + self.timing.period)
        } else if self.kind == ProbeKind::Startup && success {
            // A startup probe is done once it succeeded.
            None
        } else {
            until.map(|at| self.tick_at_or_after(at))
        };
        if change == Change::Published(false) && self.kind != ProbeKind::Readiness {
            self.on_hold = true;
        }
        change
    }

    /// The container changed (an exec): asked again at its next moment.
    pub(crate) fn rearm(&mut self, now: SystemTime) {
        let done = self.kind == ProbeKind::Startup && self.result;
        if self.next_at.is_none() && !done {
            self.next_at = Some(self.tick_at_or_after(now));
        }
    }
}

/// The probes of one running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerProbes {
    /// The container they probe (a restarted container gets new ones).
    pub container_id: String,
    pub workers: Vec<ProbeWorker>,
}

impl ContainerProbes {
    /// The probes of a container started at `started_at`; `None` without any.
    pub(crate) fn new(
        container_id: &str,
        container: &Container,
        started_at: SystemTime,
    ) -> Option<Self> {
        let workers: Vec<ProbeWorker> = [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ]
        .into_iter()
        .filter_map(|kind| ProbeWorker::new(kind, container, started_at))
        .collect();
        (!workers.is_empty()).then(|| ContainerProbes {
            container_id: container_id.to_string(),
            workers,
        })
    }

    fn worker(&self, kind: ProbeKind) -> Option<&ProbeWorker> {
        self.workers.iter().find(|w| w.kind == kind && !w.unknown)
    }

    /// Whether the startup probe, where the runtime answers it, succeeded; `None`
    /// leaves it to the timing model.
    pub(crate) fn started(&self) -> Option<bool> {
        self.worker(ProbeKind::Startup)
            .filter(|w| w.streak.is_some())
            .map(|w| w.result)
    }

    /// The readiness probe's result, where the runtime answers it and it was asked.
    pub(crate) fn ready(&self) -> Option<bool> {
        self.worker(ProbeKind::Readiness)
            .filter(|w| w.streak.is_some())
            .map(|w| w.result)
    }

    /// The next moment one is due.
    pub(crate) fn next_at(&self) -> Option<SystemTime> {
        self.workers
            .iter()
            .filter(|w| !w.unknown && !w.on_hold)
            .filter_map(|w| w.next_at)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, HTTPGetAction};

    fn exec_probe(period: i32, failure: i32) -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(vec!["cat".into(), "/tmp/health".into()]),
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(period),
            failure_threshold: Some(failure),
            ..Default::default()
        }
    }

    fn at(start: SystemTime, seconds: u64) -> SystemTime {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn liveness_fails_after_failure_threshold_outcomes_in_a_row_on_its_periods() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let container = Container {
            liveness_probe: Some(exec_probe(5, 3)),
            ..Default::default()
        };
        let mut probe = ProbeWorker::new(ProbeKind::Liveness, &container, start).unwrap();
        assert!(probe.result, "liveness starts as a success");
        assert_eq!(probe.next_at, Some(at(start, 5)));
        assert_eq!(probe.observe(true, at(start, 5), None), Change::None);
        assert_eq!(
            probe.next_at, None,
            "settled: asked again when something changes"
        );
        probe.rearm(at(start, 12));
        assert_eq!(probe.next_at, Some(at(start, 15)), "the next whole period");
        assert_eq!(probe.observe(false, at(start, 15), None), Change::None);
        assert_eq!(probe.next_at, Some(at(start, 20)));
        assert_eq!(probe.observe(false, at(start, 20), None), Change::None);
        assert_eq!(
            probe.observe(false, at(start, 25), None),
            Change::Published(false)
        );
        assert!(probe.on_hold && !probe.due(at(start, 100)));
    }

    #[test]
    fn readiness_starts_failing_and_a_known_change_is_asked_at_its_period() {
        let start = SystemTime::UNIX_EPOCH;
        let mut readiness = exec_probe(10, 1);
        readiness.success_threshold = Some(2);
        let container = Container {
            readiness_probe: Some(readiness),
            ..Default::default()
        };
        let mut probes = ContainerProbes::new("c1", &container, start).unwrap();
        assert_eq!(probes.ready(), None, "not asked yet: the timing model");
        let probe = &mut probes.workers[0];
        assert_eq!(probe.observe(true, at(start, 5), None), Change::None);
        assert_eq!(probes.ready(), Some(false));
        let probe = &mut probes.workers[0];
        assert_eq!(
            probe.observe(true, at(start, 15), Some(at(start, 31))),
            Change::Published(true)
        );
        assert_eq!(probe.next_at, Some(at(start, 35)));
        assert_eq!(probes.ready(), Some(true));
        // Failing again: asked every period for as long as it fails.
        let probe = &mut probes.workers[0];
        assert_eq!(
            probe.observe(false, at(start, 35), None),
            Change::Published(false)
        );
        assert_eq!(probe.next_at, Some(at(start, 45)));
        assert_eq!(probe.observe(false, at(start, 45), None), Change::None);
        assert_eq!(probe.next_at, Some(at(start, 55)));
    }

    #[test]
    fn named_ports_resolve_against_the_container() {
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("/index.html".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let container = Container {
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            action(&probe, &container),
            Some(ProbeAction::HttpGet {
                port: 80,
                path: "/index.html".into()
            })
        );
        assert_eq!(action(&probe, &Container::default()), None);
    }
}
