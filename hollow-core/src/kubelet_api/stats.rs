//! `/stats/summary` and `/metrics/resource`: usage from the node's `Cadvisor`, for the
//! containers its runtime runs.

use parking_lot::Mutex;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::cadvisor::{ContainerRef, ContainerUsage};
use crate::node::NodeView;
use crate::quantity::parse_quantity;
use crate::runtime::ContainerState;

/// CPU the node itself uses besides its containers (kubelet, runtime, system).
const NODE_OVERHEAD_NANO_CORES: f64 = 50_000_000.0;
/// Memory the node itself uses besides its containers.
const NODE_OVERHEAD_BYTES: u64 = 256 << 20;

/// The node's cumulative CPU, integrated from each sample's rate so it never decreases
/// when pods go.
#[derive(Debug)]
pub(crate) struct NodeCpu(Mutex<Option<(SystemTime, f64)>>);

impl NodeCpu {
    pub fn new() -> NodeCpu {
        NodeCpu(Mutex::new(None))
    }

    fn advance(&self, now: SystemTime, rate: f64, uptime: f64) -> f64 {
        let mut state = self.0.lock();
        let total = match *state {
            // Until the first sample, as if the node had run at this rate since it started.
            None => rate * uptime,
            Some((then, total)) => {
                total + rate * now.duration_since(then).unwrap_or_default().as_secs_f64()
            }
        };
        *state = Some((now, total));
        total
    }
}

/// The sum of usages, at most `u64::MAX`: usage annotations can be as large as a
/// quantity (`hollow.dev/memory-usage: 8Ei` on three pods).
fn total(usages: impl Iterator<Item = u64>) -> u64 {
    usages.fold(0, u64::saturating_add)
}

/// One running container's usage.
pub(crate) struct ContainerSample {
    pub name: String,
    pub started_at: SystemTime,
    pub usage: ContainerUsage,
}

/// One pod's running containers.
pub(crate) struct PodSample {
    pub pod: Arc<Pod>,
    pub containers: Vec<ContainerSample>,
}

/// The node's usage at one moment.
pub(crate) struct NodeSample {
    pub time: SystemTime,
    pub pods: Vec<PodSample>,
    pub cpu_nano_cores: u64,
    pub cpu_total_nano_seconds: u64,
    pub memory_working_set_bytes: u64,
    pub fs_capacity: u64,
    pub fs_available: u64,
}

fn requests(pod: &Pod, container: &str) -> (u64, u64) {
    let spec = pod.spec.as_ref();
    let found = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    let Some(resources) = found
        .filter(|c| c.name == container)
        .find_map(|c| c.resources.as_ref())
    else {
        return (0, 0);
    };
    let amount = |name: &str| {
        resources
            .requests
            .as_ref()
            .and_then(|r| r.get(name))
            .or_else(|| resources.limits.as_ref().and_then(|l| l.get(name)))
            .and_then(|q| parse_quantity(&q.0))
    };
    (
        amount("cpu").map_or(0, |cores| (cores * 1000.0).round() as u64),
        amount("memory").map_or(0, |bytes| bytes as u64),
    )
}

/// Samples every running container of the node.
pub(crate) async fn sample(node: &NodeView, cpu: &NodeCpu) -> crate::Result<NodeSample> {
    let time = SystemTime::now();
    let pods = node.pods();
    let statuses = node.runtime().list_containers(None).await?;
    let cadvisor = node.cadvisor();
    let mut samples: Vec<PodSample> = Vec::new();
    for pod in pods {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut containers = Vec::new();
        for status in statuses.iter().filter(|s| s.pod_uid == uid) {
            let ContainerState::Running { started_at } = status.state else {
                continue;
            };
            let (cpu_request_millis, memory_request_bytes) = requests(&pod, &status.name);
            let reference = ContainerRef {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                pod_uid: uid.clone(),
                container: status.name.clone(),
                started_at: Some(started_at),
                cpu_request_millis,
                memory_request_bytes,
                annotations: pod.metadata.annotations.clone().unwrap_or_default(),
            };
            match cadvisor.container_usage(&reference).await {
                Ok(usage) => containers.push(ContainerSample {
                    name: status.name.clone(),
                    started_at,
                    usage,
                }),
                Err(error) => tracing::debug!(%error, container = %status.name, "no usage"),
            }
        }
        samples.push(PodSample { pod, containers });
    }
    let all = samples.iter().flat_map(|p| &p.containers);
    let cpu_rate = NODE_OVERHEAD_NANO_CORES
        + all
            .clone()
            .map(|c| c.usage.cpu_nano_cores as f64)
            .sum::<f64>();
    let memory = total(
        std::iter::once(NODE_OVERHEAD_BYTES).chain(all.map(|c| c.usage.memory_working_set_bytes)),
    );
    let uptime = node.started_at().elapsed().as_secs_f64();
    let fs = cadvisor.root_fs_info().await?;
    Ok(NodeSample {
        time,
        pods: samples,
        cpu_nano_cores: cpu_rate as u64,
        cpu_total_nano_seconds: cpu.advance(time, cpu_rate, uptime) as u64,
        memory_working_set_bytes: memory,
        fs_capacity: fs.capacity,
        fs_available: fs.available,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    node: NodeStats,
    pods: Vec<PodStats>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeStats {
    node_name: String,
    start_time: Time,
    cpu: CpuStats,
    memory: MemoryStats,
    fs: FsStats,
    runtime: RuntimeStats,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeStats {
    image_fs: FsStats,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CpuStats {
    time: Time,
    usage_nano_cores: u64,
    usage_core_nano_seconds: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemoryStats {
    time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    available_bytes: Option<u64>,
    usage_bytes: u64,
    working_set_bytes: u64,
    rss_bytes: u64,
    page_faults: u64,
    major_page_faults: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FsStats {
    time: Time,
    available_bytes: u64,
    capacity_bytes: u64,
    used_bytes: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodRef {
    name: String,
    namespace: String,
    uid: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodStats {
    pod_ref: PodRef,
    start_time: Time,
    containers: Vec<ContainerStats>,
    cpu: CpuStats,
    memory: MemoryStats,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStats {
    name: String,
    start_time: Time,
    cpu: CpuStats,
    memory: MemoryStats,
}

fn time(at: SystemTime) -> Time {
    Time(Timestamp::try_from(at).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn memory(at: SystemTime, working_set: u64, available: Option<u64>) -> MemoryStats {
    MemoryStats {
        time: time(at),
        available_bytes: available,
        usage_bytes: working_set,
        working_set_bytes: working_set,
        rss_bytes: working_set,
        page_faults: 0,
        major_page_faults: 0,
    }
}

/// The Summary API's JSON (`/stats/summary`).
pub(crate) fn summary(node: &NodeView, sample: &NodeSample) -> serde_json::Value {
    let at = sample.time;
    let node_start = SystemTime::now() - node.started_at().elapsed();
    let fs = || FsStats {
        time: time(at),
        available_bytes: sample.fs_available,
        capacity_bytes: sample.fs_capacity,
        used_bytes: sample.fs_capacity.saturating_sub(sample.fs_available),
    };
    let pods = sample
        .pods
        .iter()
        .map(|p| {
            let meta = &p.pod.metadata;
            let containers: Vec<ContainerStats> = p
                .containers
                .iter()
                .map(|c| ContainerStats {
                    name: c.name.clone(),
                    start_time: time(c.started_at),
                    cpu: CpuStats {
                        time: time(at),
                        usage_nano_cores: c.usage.cpu_nano_cores,
                        usage_core_nano_seconds: c.usage.cpu_usage_core_nano_seconds,
                    },
                    memory: memory(at, c.usage.memory_working_set_bytes, None),
                })
                .collect();
            let sum =
                |f: fn(&ContainerUsage) -> u64| total(p.containers.iter().map(|c| f(&c.usage)));
            PodStats {
                pod_ref: PodRef {
                    name: meta.name.clone().unwrap_or_default(),
                    namespace: meta.namespace.clone().unwrap_or_default(),
                    uid: meta.uid.clone().unwrap_or_default(),
                },
                start_time: p
                    .pod
                    .status
                    .as_ref()
                    .and_then(|s| s.start_time.clone())
                    .unwrap_or_else(|| time(at)),
                cpu: CpuStats {
                    time: time(at),
                    usage_nano_cores: sum(|u| u.cpu_nano_cores),
                    usage_core_nano_seconds: sum(|u| u.cpu_usage_core_nano_seconds),
                },
                memory: memory(at, sum(|u| u.memory_working_set_bytes), None),
                containers,
            }
        })
        .collect();
    let capacity = node.machine_info().memory_capacity;
    let summary = Summary {
        node: NodeStats {
            node_name: node.name().to_string(),
            start_time: time(node_start),
            cpu: CpuStats {
                time: time(at),
                usage_nano_cores: sample.cpu_nano_cores,
                usage_core_nano_seconds: sample.cpu_total_nano_seconds,
            },
            memory: memory(
                at,
                sample.memory_working_set_bytes,
                Some(capacity.saturating_sub(sample.memory_working_set_bytes)),
            ),
            fs: fs(),
            runtime: RuntimeStats { image_fs: fs() },
        },
        pods,
    };
    serde_json::to_value(summary).unwrap_or_default()
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The kubelet's resource metrics (`/metrics/resource`), as metrics-server reads them.
pub(crate) fn resource_metrics(sample: &NodeSample) -> String {
    let ms = sample
        .time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value} {ms}");
        }
    };
    let containers = || {
        sample.pods.iter().flat_map(|p| {
            let ns = escape(p.pod.metadata.namespace.as_deref().unwrap_or_default());
            let pod = escape(p.pod.metadata.name.as_deref().unwrap_or_default());
            p.containers.iter().map(move |c| {
                (
                    format!(
                        "{{container=\"{}\",namespace=\"{ns}\",pod=\"{pod}\"}}",
                        escape(&c.name)
                    ),
                    c,
                )
            })
        })
    };
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        containers()
            .map(|(l, c)| (l, c.usage.cpu_usage_core_nano_seconds as f64 / 1e9))
            .collect(),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        containers()
            .map(|(l, c)| (l, c.usage.memory_working_set_bytes as f64))
            .collect(),
    );
    family(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
        containers()
            .map(|(l, c)| {
                let start = c
                    .started_at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                (l, start.as_secs_f64())
            })
            .collect(),
    );
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
        vec![(String::new(), sample.cpu_total_nano_seconds as f64 / 1e9)],
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
        vec![(String::new(), sample.memory_working_set_bytes as f64)],
    );
    let pods = || {
        sample
            .pods
            .iter()
            .filter(|p| !p.containers.is_empty())
            .map(|p| {
                (
                    format!(
                        "{{namespace=\"{}\",pod=\"{}\"}}",
                        escape(p.pod.metadata.namespace.as_deref().unwrap_or_default()),
                        escape(p.pod.metadata.name.as_deref().unwrap_or_default())
                    ),
                    p,
                )
            })
    };
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        pods()
            .map(|(l, p)| {
                let cpu = total(
                    p.containers
                        .iter()
                        .map(|c| c.usage.cpu_usage_core_nano_seconds),
                );
                (l, cpu as f64 / 1e9)
            })
            .collect(),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        pods()
            .map(|(l, p)| {
                let memory = total(
                    p.containers
                        .iter()
                        .map(|c| c.usage.memory_working_set_bytes),
                );
                (l, memory as f64)
            })
            .collect(),
    );
    let _ = writeln!(
        out,
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise"
    );
    let _ = writeln!(out, "# TYPE resource_scrape_error gauge");
    let _ = writeln!(out, "resource_scrape_error 0");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usages_at_the_limit_add_up_without_overflow() {
        // What three pods annotated `hollow.dev/memory-usage: 8Ei` and
        // `hollow.dev/cpu-usage: 1e12` report (a debug build panicked adding them).
        let usage = ContainerUsage {
            cpu_nano_cores: u64::MAX,
            cpu_usage_core_nano_seconds: u64::MAX,
            memory_working_set_bytes: 1 << 63,
        };
        let container = |name: &str| ContainerSample {
            name: name.into(),
            started_at: SystemTime::UNIX_EPOCH,
            usage,
        };
        let sample = NodeSample {
            time: SystemTime::now(),
            pods: vec![PodSample {
                pod: Arc::new(Pod::default()),
                containers: vec![container("a"), container("b"), container("c")],
            }],
            cpu_nano_cores: u64::MAX,
            cpu_total_nano_seconds: u64::MAX,
            memory_working_set_bytes: u64::MAX,
            fs_capacity: 0,
            fs_available: 0,
        };
        let text = resource_metrics(&sample);
        let pod_memory = text
            .lines()
            .find(|l| l.starts_with("pod_memory_working_set_bytes{"))
            .unwrap();
        assert!(
            pod_memory.contains(&format!(" {} ", u64::MAX as f64)),
            "{pod_memory}"
        );
        assert_eq!(total([NODE_OVERHEAD_BYTES, u64::MAX].into_iter()), u64::MAX);
    }
}
