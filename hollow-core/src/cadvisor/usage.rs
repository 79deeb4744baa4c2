//! The fake's usage model. A container uses a share of its request (the utilisation,
//! 0.5 by default, switchable at run time), or what its pod's annotations say, with a
//! gentle ±10 % wave of one minute so graphs move. Cumulative CPU is the exact integral
//! of that rate, so it never decreases, whatever the utilisation does.

use std::f64::consts::TAU;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::SystemTime;

use super::{ContainerRef, ContainerUsage};
use crate::quantity::parse_quantity;

/// The CPU a container without a request is taken to ask for, in millicores.
const DEFAULT_CPU_MILLIS: f64 = 10.0;
/// The memory a container without a request is taken to ask for.
const DEFAULT_MEMORY_BYTES: f64 = 32.0 * 1024.0 * 1024.0;
/// The wave's amplitude, as a share of the rate.
const WAVE: f64 = 0.1;
/// The wave's period in seconds.
const PERIOD: f64 = 60.0;

/// Utilisation as it changed over time: `(since, share of the request)`, in order.
#[derive(Debug, Clone)]
pub(crate) struct Utilisation {
    segments: Vec<(SystemTime, f64)>,
}

impl Default for Utilisation {
    fn default() -> Self {
        Self {
            segments: vec![(SystemTime::UNIX_EPOCH, 0.5)],
        }
    }
}

impl Utilisation {
    /// From `since` on, containers use `share` of their request.
    pub fn set(&mut self, since: SystemTime, share: f64) {
        let share = if share.is_finite() {
            share.max(0.0)
        } else {
            0.0
        };
        self.segments.retain(|(at, _)| *at < since);
        self.segments.push((since, share));
    }

    fn at(&self, time: SystemTime) -> f64 {
        self.segments
            .iter()
            .rev()
            .find(|(since, _)| *since <= time)
            .map_or(0.0, |(_, share)| *share)
    }
}

fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).map_or(0.0, |d| d.as_secs_f64())
}

/// The wave's phase for this container, so containers do not move in step.
fn phase(container: &ContainerRef) -> f64 {
    let mut hasher = DefaultHasher::new();
    (&container.pod_uid, &container.container).hash(&mut hasher);
    (hasher.finish() % 10_000) as f64 / 10_000.0 * TAU
}

/// ∫ (1 + WAVE·sin(phase + τt/P)) dt from `a` to `b` seconds after the start.
fn wave_integral(phase: f64, a: f64, b: f64) -> f64 {
    let cos = |t: f64| (phase + TAU * t / PERIOD).cos();
    (b - a) - WAVE * PERIOD / TAU * (cos(b) - cos(a))
}

fn annotation(container: &ContainerRef, key: &str) -> Option<f64> {
    container
        .annotations
        .get(key)
        .and_then(|raw| parse_quantity(raw.trim()))
}

/// The usage of `container` at `now` under `utilisation`; annotations give absolute
/// usage (not scaled by the utilisation).
pub(crate) fn modelled(
    container: &ContainerRef,
    utilisation: &Utilisation,
    now: SystemTime,
    cpu_annotation: &str,
    memory_annotation: &str,
) -> ContainerUsage {
    let started = container.started_at.unwrap_or(now);
    let phase = phase(container);
    let elapsed = seconds_between(started, now);
    let wave_now = 1.0 + WAVE * (phase + TAU * elapsed / PERIOD).sin();
    let (cpu_now, cpu_total) = match annotation(container, cpu_annotation) {
        Some(cores) => {
            let rate = cores * 1e9;
            (rate * wave_now, rate * wave_integral(phase, 0.0, elapsed))
        }
        None => {
            let request = if container.cpu_request_millis == 0 {
                DEFAULT_CPU_MILLIS
            } else {
                container.cpu_request_millis as f64
            };
            let full = request * 1e6;
            // Sum over the utilisation segments that overlap the container's life.
            let mut total = 0.0;
            let segments = &utilisation.segments;
            for (index, (since, share)) in segments.iter().enumerate() {
                let until = segments.get(index + 1).map_or(now, |(next, _)| *next);
                let a = seconds_between(started, *since).min(elapsed);
                let b = seconds_between(started, until).min(elapsed);
                if b > a {
                    total += full * share * wave_integral(phase, a, b);
                }
            }
            (full * utilisation.at(now) * wave_now, total)
        }
    };
    let memory = annotation(container, memory_annotation).unwrap_or_else(|| {
        let request = if container.memory_request_bytes == 0 {
            DEFAULT_MEMORY_BYTES
        } else {
            container.memory_request_bytes as f64
        };
        request * utilisation.at(now)
    });
    ContainerUsage {
        cpu_nano_cores: cpu_now.max(0.0) as u64,
        cpu_usage_core_nano_seconds: cpu_total.max(0.0) as u64,
        memory_working_set_bytes: memory.max(0.0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn container(started: SystemTime) -> ContainerRef {
        ContainerRef {
            namespace: "default".into(),
            pod: "p".into(),
            pod_uid: "u".into(),
            container: "c".into(),
            started_at: Some(started),
            cpu_request_millis: 200,
            memory_request_bytes: 64 << 20,
            ..Default::default()
        }
    }

    #[test]
    fn usage_follows_the_request_and_its_total_never_decreases() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let c = container(start);
        let mut utilisation = Utilisation::default();
        let at = |s| start + Duration::from_secs(s);
        let usage = |u: &Utilisation, s| modelled(&c, u, at(s), "cpu", "mem");
        let now = usage(&utilisation, 30);
        // 0.5 of 200m, within the 10 % wave.
        assert!(
            (90_000_000..=110_000_000).contains(&now.cpu_nano_cores),
            "{now:?}"
        );
        assert_eq!(now.memory_working_set_bytes, 32 << 20);
        let mut last = 0;
        for s in (0..600).step_by(7) {
            if s == 301 {
                utilisation.set(at(300), 2.0);
            }
            if s == 406 {
                utilisation.set(at(400), 0.1);
            }
            let total = usage(&utilisation, s).cpu_usage_core_nano_seconds;
            assert!(total >= last, "decreased at {s}s: {total} < {last}");
            last = total;
        }
        // Over a whole number of periods the wave cancels: 300 s at 0.1 cores, 100 s at
        // 0.4, 200 s at 0.02 (from 400 s to 600 s).
        let expected = 0.1e9 * 300.0 + 0.4e9 * 100.0 + 0.02e9 * 200.0;
        let total = usage(&utilisation, 600).cpu_usage_core_nano_seconds as f64;
        assert!(
            (total - expected).abs() / expected < 0.02,
            "{total} vs {expected}"
        );
    }

    #[test]
    fn annotations_give_absolute_usage() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut c = container(start);
        c.annotations.insert("cpu".into(), "750m".into());
        c.annotations.insert("mem".into(), "100Mi".into());
        let usage = modelled(
            &c,
            &Utilisation::default(),
            start + Duration::from_secs(60),
            "cpu",
            "mem",
        );
        assert!((675_000_000..=825_000_000).contains(&usage.cpu_nano_cores));
        assert_eq!(usage.memory_working_set_bytes, 100 << 20);
        let total = usage.cpu_usage_core_nano_seconds as f64;
        assert!((total - 45e9).abs() < 1e7, "{total}");
    }
}
