//! The worker's prober: asks the runtime the probes that are due
//! (`crate::node::prober`), records the kubelet's `Unhealthy` Events, and kills a
//! container whose liveness or startup probe failed, as
//! pkg/kubelet/kuberuntime/kuberuntime_manager.go (`computePodActions`) does.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Container;

use super::PodWorker;
use crate::node::events::Kind;
use crate::node::pod_status::restart_policy;
use crate::node::prober::{self, Change, ContainerProbes, ProbeKind};
use crate::node::restart::restarts_after_probe_kill;
use crate::runtime::HeldState;
use crate::runtime::ProbeOutcome;

impl PodWorker {
    /// Asks every probe that is due; `nudged`: the runtime told of a change (an exec
    /// into a container), so settled probes are asked again at their next period.
    pub(super) async fn run_probes(&mut self, nudged: bool) {
        let pod = self.pod.clone();
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let now = SystemTime::now();
        let sidecars = spec.init_containers.as_deref().unwrap_or_default();
        for (index, container) in sidecars.iter().enumerate() {
            self.probe_container(true, index, container, nudged, now)
                .await;
        }
        for (index, container) in spec.containers.iter().enumerate() {
            self.probe_container(false, index, container, nudged, now)
                .await;
        }
    }

    async fn probe_container(
        &mut self,
        init: bool,
        index: usize,
        container: &Container,
        nudged: bool,
        now: SystemTime,
    ) {
        let has_probes = container.startup_probe.is_some()
            || container.liveness_probe.is_some()
            || container.readiness_probe.is_some();
        if !has_probes {
            return;
        }
        let Some(record) = self.records_mut(init).get_mut(index) else {
            return;
        };
        let (Some(id), Some(&HeldState::Running(started_at))) = (
            record.id.as_ref().map(ToString::to_string),
            record.current.as_ref(),
        ) else {
            return;
        };
        if record.probes.as_ref().map(|p| p.container_id.as_str()) != Some(id.as_str()) {
            record.probes = ContainerProbes::new(&id, container, started_at).map(Box::new);
        }
        let Some(mut probes) = record.probes.take() else {
            return;
        };
        if nudged {
            for worker in &mut probes.workers {
                worker.rearm(now);
            }
        }
        let runtime = self.shared.config.runtime.clone();
        let mut kill = None;
        for at in 0..probes.workers.len() {
            let worker = &probes.workers[at];
            if !worker.due(now) {
                continue;
            }
            let kind = worker.kind;
            let started = probes.started().unwrap_or(true);
            if kind != ProbeKind::Startup && !started {
                // Asked once the startup probe succeeded.
                probes.workers[at].next_at = None;
                continue;
            }
            let spec = match kind {
                ProbeKind::Startup => container.startup_probe.as_ref(),
                ProbeKind::Liveness => container.liveness_probe.as_ref(),
                ProbeKind::Readiness => container.readiness_probe.as_ref(),
            };
            let Some(action) = spec.and_then(|spec| prober::action(spec, container)) else {
                probes.workers[at].unknown = true;
                continue;
            };
            let asked = probes.workers[at].asked_at(now);
            let report = match runtime.probe(&id, &action).await {
                Ok(report) => report,
                Err(error) => {
                    tracing::debug!(%error, container = %container.name, "probe failed to run");
                    probes.workers[at].next_at = None;
                    continue;
                }
            };
            let success = match report.outcome {
                ProbeOutcome::Success => true,
                ProbeOutcome::Failure { output } => {
                    // pkg/kubelet/prober/prober.go: an Event for every failed probe.
                    let message = format!("{} probe failed: {output}", kind.title());
                    self.container_event(
                        init,
                        &container.name,
                        Kind::Warning,
                        "Unhealthy",
                        message,
                    );
                    false
                }
                _ => {
                    probes.workers[at].unknown = true;
                    continue;
                }
            };
            let change = probes.workers[at].observe(success, asked, report.until);
            match (kind, change) {
                (ProbeKind::Startup, Change::Published(true)) => {
                    for worker in &mut probes.workers {
                        worker.rearm(now);
                    }
                }
                (ProbeKind::Startup | ProbeKind::Liveness, Change::Published(false)) => {
                    kill = Some(kind);
                }
                _ => {}
            }
        }
        if let Some(record) = self.records_mut(init).get_mut(index) {
            record.probes = Some(probes);
        }
        if let Some(kind) = kill {
            self.kill_for_probe(init, index, container, &id, kind).await;
        }
    }

    /// Kills a container whose liveness or startup probe failed; the restart policy
    /// then restarts it (unless it is Never), whatever its exit code.
    async fn kill_for_probe(
        &mut self,
        init: bool,
        index: usize,
        container: &Container,
        id: &str,
        kind: ProbeKind,
    ) {
        let restart = restarts_after_probe_kill(
            container,
            restart_policy(&self.pod),
            self.restart_rules(),
            init,
        );
        let probe = if kind == ProbeKind::Startup {
            "startup"
        } else {
            "liveness"
        };
        let mut message = format!("Container {} failed {probe} probe", container.name);
        if restart {
            message.push_str(", will be restarted");
        }
        self.container_event(init, &container.name, Kind::Normal, "Killing", message);
        let grace = container
            .liveness_probe
            .as_ref()
            .filter(|_| kind == ProbeKind::Liveness)
            .or(container.startup_probe.as_ref())
            .and_then(|p| p.termination_grace_period_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or_else(|| self.grace_period(), Duration::from_secs);
        let runtime = self.shared.config.runtime.clone();
        let started = tokio::time::Instant::now();
        let pre_stop = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref());
        if let Some(hook) = pre_stop.filter(|_| !grace.is_zero())
            && super::hooks::run_hook(runtime.as_ref(), id, hook, grace)
                .await
                .is_err()
        {
            let message = "PreStopHook failed".to_string();
            self.container_event(
                init,
                &container.name,
                Kind::Warning,
                "FailedPreStopHook",
                message,
            );
        }
        let grace = if pre_stop.is_some() {
            grace
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(2))
        } else {
            grace
        };
        let _ = runtime.stop_container(id, grace).await;
        if let Some(record) = self.records_mut(init).get_mut(index)
            && let Ok(status) = runtime.container_status(id).await
        {
            record.set_state(Some(status.state));
        }
    }

    fn records_mut(&mut self, init: bool) -> &mut [crate::node::pod_status::ContainerRecord] {
        if init {
            &mut self.init
        } else {
            &mut self.regular
        }
    }

    /// The next moment a probe is due.
    pub(super) fn probes_due(&self) -> Option<SystemTime> {
        self.init
            .iter()
            .chain(&self.regular)
            .filter(|r| r.is_running())
            .filter_map(|r| r.probes.as_ref()?.next_at())
            .min()
    }
}
