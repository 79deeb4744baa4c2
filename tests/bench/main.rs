//! hollow-bench: hollow, KWOK and Kubemark side by side on one local control plane,
//! measured from the outside (/proc, the API server's own metrics, watches).
//!
//! ```text
//! cargo run --release -p hollow-tests --bin hollow-bench            # the full run
//! cargo run --release -p hollow-tests --bin hollow-bench -- --quick # a minute or two
//! ```
//!
//! Writes `results.json`, `results.md` and PNG plots into `--out` (default
//! `docs/benchmarks`).

mod observe;
mod plot;
mod procfs;
mod sim;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt;
use hollow_core::testenv::{Component, TestEnv};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde::Serialize;
use serde_json::json;

use sim::{Kind, Simulator};

/// Runs the simulators against one control plane and records what they cost.
#[derive(Debug, Parser)]
#[command(name = "hollow-bench", about)]
struct Args {
    /// Small sizes and short windows (a minute or two): a smoke test.
    #[arg(long)]
    quick: bool,
    /// Node counts for hollow and KWOK (default 100,1000,5000; quick 20).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Kubemark node counts, one process per node (default 10,50; quick 2).
    #[arg(long, value_delimiter = ',')]
    kubemark_sizes: Option<Vec<usize>>,
    /// Which simulators.
    #[arg(long, value_delimiter = ',', default_value = "hollow,kwok,kubemark")]
    simulators: Vec<Kind>,
    /// Pods per node in the pod scenarios (default 10; quick 2).
    #[arg(long)]
    pods_per_node: Option<usize>,
    /// At most this many pods in one pod scenario.
    #[arg(long, default_value_t = 10_000)]
    max_pods: usize,
    /// The steady-state window, seconds (default 120; quick 15).
    #[arg(long)]
    steady: Option<u64>,
    /// The soak with pod churn at the smallest size, seconds (default 1800; quick 20).
    #[arg(long)]
    soak: Option<u64>,
    /// Which simulators soak (default: all).
    #[arg(long, value_delimiter = ',')]
    soak_simulators: Option<Vec<Kind>>,
    /// Runs only the direct pods, not those through the scheduler (a shorter run
    /// when comparing builds; memory with pods is then sampled after the direct pods).
    #[arg(long)]
    direct_pods_only: bool,
    /// Where results go.
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
}

/// Figures of one simulator at one size.
#[derive(Debug, Default, Serialize)]
struct Scenario {
    simulator: String,
    nodes: usize,
    /// Start to all nodes Ready.
    ready_seconds: Option<f64>,
    idle: Option<Cost>,
    with_pods: Option<Cost>,
    apiserver: Option<ApiServerLoad>,
    leases: Option<LeaseHealth>,
    pods_scheduled: Option<PodRun>,
    pods_direct: Option<PodRun>,
    soak: Option<Soak>,
    /// Why a figure is missing.
    errors: Vec<String>,
}

#[derive(Debug, Default, Serialize, Clone, Copy)]
struct Cost {
    rss_bytes: u64,
    pss_bytes: u64,
    rss_per_node: f64,
    pss_per_node: f64,
    /// CPU seconds per node per minute over the window.
    cpu_seconds_per_node_per_minute: f64,
}

#[derive(Debug, Default, Serialize)]
struct ApiServerLoad {
    /// Cores the API server used over the steady window.
    cpu_cores: f64,
    requests_per_node_per_minute: f64,
    leases_per_node_per_minute: f64,
    nodes_per_node_per_minute: f64,
    pods_per_node_per_minute: f64,
}

#[derive(Debug, Default, Serialize)]
struct LeaseHealth {
    window_seconds: f64,
    renewals: u64,
    /// Leases with a gap over twice the renew interval (20 s), or none seen.
    misses: usize,
}

#[derive(Debug, Default, Serialize)]
struct PodRun {
    pods: usize,
    /// First create call to the last pod Running.
    seconds_to_all_running: f64,
    p50_seconds: f64,
    p99_seconds: f64,
    max_seconds: f64,
}

#[derive(Debug, Default, Serialize)]
struct Soak {
    seconds: u64,
    churned_pods: usize,
    /// Replacement pods the API server refused even after retries (an overloaded or
    /// restarting API server); their slots stay empty.
    failed_creates: usize,
    pss_first: u64,
    pss_last: u64,
    pss_max: u64,
    /// (last - first) / first.
    drift: f64,
    /// PSS once every pod slot has been replaced a few times (see [`SOAK_WARM_UP`]).
    pss_warm: u64,
    /// (last - warm) / warm: growth after the warm-up.
    drift_after_warm_up: f64,
    /// `(seconds into the soak, PSS bytes)`, every 30 s.
    samples: Vec<(u64, u64)>,
    /// hollow-kubelet only: `(seconds into the soak, jemalloc's counts by stat)`, with
    /// each PSS sample.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allocator_samples: Vec<(u64, std::collections::BTreeMap<String, u64>)>,
}

/// When a soak's warm-up ends: by then a tenth of the pods replaced every 10 s has
/// replaced each pod about three times, and allocator pools have grown to their use.
const SOAK_WARM_UP: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    versions: serde_json::Value,
    command: String,
    quick: bool,
    scenarios: Vec<Scenario>,
}

const LEASE_MISS: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let quick = args.quick;
    let sizes = args.sizes.clone().unwrap_or(if quick {
        vec![20]
    } else {
        vec![100, 1000, 5000]
    });
    let kubemark_sizes =
        args.kubemark_sizes
            .clone()
            .unwrap_or(if quick { vec![2] } else { vec![10, 50] });
    let steady = Duration::from_secs(args.steady.unwrap_or(if quick { 15 } else { 120 }));
    let soak = Duration::from_secs(args.soak.unwrap_or(if quick { 20 } else { 1800 }));
    let settle = if quick { 5 } else { 15 };
    let pods_per_node = args.pods_per_node.unwrap_or(if quick { 2 } else { 10 });
    std::fs::create_dir_all(&args.out)?;
    let logs = args.out.join("logs");
    std::fs::create_dir_all(&logs)?;

    eprintln!("starting the control plane");
    let env = TestEnv::builder()
        .node_monitor_grace_period(Duration::from_secs(40))
        .start()
        .await?;
    let mut scenarios = Vec::new();
    for (kind_index, &kind) in args.simulators.iter().enumerate() {
        let sizes = if kind == Kind::Kubemark {
            &kubemark_sizes
        } else {
            &sizes
        };
        for (index, &nodes) in sizes.iter().enumerate() {
            let last = kind_index + 1 == args.simulators.len() && index + 1 == sizes.len();
            let soaks = args
                .soak_simulators
                .as_ref()
                .is_none_or(|k| k.contains(&kind));
            let soak_here = (index == 0 && soaks && !soak.is_zero()).then_some(soak);
            eprintln!("== {} with {nodes} nodes", kind.name());
            let plan = Plan {
                kind,
                nodes,
                steady,
                soak: soak_here,
                // The controllers' work on new nodes (CIDRs, taints) ends before the window.
                settle: Duration::from_secs(settle.max(nodes as u64 / 50)),
                pods: (pods_per_node * nodes).min(args.max_pods),
                direct_pods_only: args.direct_pods_only,
                last,
            };
            let dir = logs.join(format!("{}-{nodes}", kind.name()));
            std::fs::create_dir_all(&dir)?;
            let scenario = run(&env, &plan, &dir).await;
            eprintln!("{}", serde_json::to_string(&scenario)?);
            scenarios.push(scenario);
        }
    }
    let report = Report {
        machine: machine(),
        versions: json!({
            "kubernetes": hollow_core::testenv::KUBERNETES_VERSION,
            "hollow": env!("CARGO_PKG_VERSION"),
            "kwok": "v0.8.0",
            "kubemark": hollow_core::testenv::KUBERNETES_VERSION,
        }),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick,
        scenarios,
    };
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(args.out.join("results.md"), markdown(&report))?;
    plot::memory_per_node(
        &report_points(&report, |s| s.idle.map(|c| c.pss_per_node / 1024.0)),
        &args.out.join("memory-per-node.png"),
    )?;
    plot::pod_latency(
        &report_points(&report, |s| {
            s.pods_scheduled.as_ref().map(|p| p.p99_seconds)
        }),
        &args.out.join("pod-latency-p99.png"),
    )?;
    let soaks: Vec<(String, Vec<(f64, f64)>)> = report
        .scenarios
        .iter()
        .filter_map(|s| {
            let soak = s.soak.as_ref()?;
            let points = soak
                .samples
                .iter()
                .map(|(at, pss)| (*at as f64 / 60.0, *pss as f64 / 1024.0 / 1024.0))
                .collect();
            Some((format!("{} ({} nodes)", s.simulator, s.nodes), points))
        })
        .collect();
    if !soaks.is_empty() {
        plot::soak(&soaks, &args.out.join("soak-memory.png"))?;
    }
    eprintln!("results in {}", args.out.display());
    env.stop();
    Ok(())
}

struct Plan {
    kind: Kind,
    nodes: usize,
    steady: Duration,
    soak: Option<Duration>,
    /// How long nodes run before the steady window opens.
    settle: Duration,
    pods: usize,
    direct_pods_only: bool,
    /// The run's last scenario: its pods are left to the control plane's end (at
    /// 150,000 pods their deletion takes longer than their creation).
    last: bool,
}

/// One simulator at one size; a failing step is recorded and the rest skipped or run.
async fn run(env: &TestEnv, plan: &Plan, dir: &std::path::Path) -> Scenario {
    let mut scenario = Scenario {
        simulator: plan.kind.name().into(),
        nodes: plan.nodes,
        ..Default::default()
    };
    let client = env.client();
    let label = format!("bench={}", plan.kind.name());
    let (ready, node_watch) = observe::watch_nodes(client.clone(), &label);
    let (renewals, lease_watch) = observe::watch_leases(client.clone());
    let started = Instant::now();
    let mut simulator = match Simulator::start(plan.kind, env, plan.nodes, dir).await {
        Ok(simulator) => simulator,
        Err(error) => {
            scenario.errors.push(format!("start: {error:#}"));
            node_watch.abort();
            lease_watch.abort();
            return scenario;
        }
    };
    let ready_limit = Duration::from_secs(180 + plan.nodes as u64 / 20);
    let all_ready = wait_until(ready_limit, || {
        ready.count() >= plan.nodes || simulator.crashed_now()
    })
    .await
        && ready.count() >= plan.nodes;
    if all_ready {
        scenario.ready_seconds = Some(started.elapsed().as_secs_f64());
    } else {
        let crash = simulator
            .crashed()
            .map(|s| format!(" (a process exited: {s})"))
            .unwrap_or_default();
        scenario.errors.push(format!(
            "only {} of {} nodes Ready after {ready_limit:?}{crash}; logs in {}",
            ready.count(),
            plan.nodes,
            dir.display()
        ));
        simulator.stop().await;
        node_watch.abort();
        lease_watch.abort();
        return scenario;
    }

    // Steady state, idle.
    tokio::time::sleep(plan.settle).await;
    let apiserver_pid = env.pid(Component::ApiServer);
    renewals.reset();
    let window = Instant::now();
    let before = procfs::total(&simulator.pids());
    let api_before = apiserver_pid.and_then(procfs::usage);
    let requests_before = observe::requests(&client).await.ok();
    tokio::time::sleep(plan.steady).await;
    let after = procfs::total(&simulator.pids());
    let api_after = apiserver_pid.and_then(procfs::usage);
    let requests_after = observe::requests(&client).await.ok();
    let minutes = window.elapsed().as_secs_f64() / 60.0;
    let nodes = plan.nodes as f64;
    scenario.idle = Some(cost(before, after, nodes, minutes));
    if let (Some(a), Some(b), Some(ra), Some(rb)) =
        (api_before, api_after, requests_before, requests_after)
    {
        let delta = rb.since(&ra);
        let per = |resource: &str| {
            delta.by_resource.get(resource).copied().unwrap_or(0.0) / nodes / minutes
        };
        scenario.apiserver = Some(ApiServerLoad {
            cpu_cores: (b.cpu - a.cpu).as_secs_f64() / window.elapsed().as_secs_f64(),
            requests_per_node_per_minute: delta.total / nodes / minutes,
            leases_per_node_per_minute: per("leases"),
            nodes_per_node_per_minute: per("nodes"),
            pods_per_node_per_minute: per("pods"),
        });
    }
    let names = ready.names();
    let (misses, renewed) = renewals.misses(&names, LEASE_MISS);
    scenario.leases = Some(LeaseHealth {
        window_seconds: window.elapsed().as_secs_f64(),
        renewals: renewed,
        misses,
    });

    // Pods through the scheduler, then placed directly (as KWOK's own benchmark does).
    let pod_label = format!("bench-pod={}", plan.kind.name());
    let (running, pod_watch) = observe::watch_pods(client.clone(), &pod_label);
    if !plan.direct_pods_only {
        match pod_run(&client, plan, &names, &running, true).await {
            Ok(run) => scenario.pods_scheduled = Some(run),
            Err(error) => scenario.errors.push(format!("scheduled pods: {error:#}")),
        }
        scenario.with_pods = Some(settled_cost(&simulator, plan).await);
        if let Err(error) = delete_pods(&client, &pod_label, plan.pods).await {
            scenario.errors.push(format!("deleting pods: {error:#}"));
        }
        running.clear();
    }
    match pod_run(&client, plan, &names, &running, false).await {
        Ok(run) => scenario.pods_direct = Some(run),
        Err(error) => scenario.errors.push(format!("direct pods: {error:#}")),
    }
    if plan.direct_pods_only {
        scenario.with_pods = Some(settled_cost(&simulator, plan).await);
    }
    if let Some(soak) = plan.soak {
        match soak_with_churn(&client, plan, &simulator, soak).await {
            Ok(result) => scenario.soak = Some(result),
            Err(error) => scenario.errors.push(format!("soak: {error:#}")),
        }
    }
    if !plan.last
        && let Err(error) = delete_pods(&client, &pod_label, plan.pods).await
    {
        scenario.errors.push(format!("deleting pods: {error:#}"));
    }
    pod_watch.abort();
    node_watch.abort();
    lease_watch.abort();
    if let Some(crash) = simulator.crashed() {
        scenario.errors.push(format!(
            "a simulator process exited during the run: {crash}"
        ));
    }
    simulator.stop().await;
    scenario
}

/// The simulator's memory with its pods Running, once the writes that started them
/// are answered: sampled up to 30 s (the settling time, if shorter) after the last
/// pod ran.
async fn settled_cost(simulator: &Simulator, plan: &Plan) -> Cost {
    tokio::time::sleep(plan.settle.min(Duration::from_secs(30))).await;
    let loaded = procfs::total(&simulator.pids());
    cost(loaded, loaded, plan.nodes as f64, 1.0)
}

fn cost(before: procfs::Usage, after: procfs::Usage, nodes: f64, minutes: f64) -> Cost {
    Cost {
        rss_bytes: after.rss,
        pss_bytes: after.pss,
        rss_per_node: after.rss as f64 / nodes,
        pss_per_node: after.pss as f64 / nodes,
        cpu_seconds_per_node_per_minute: (after.cpu.saturating_sub(before.cpu)).as_secs_f64()
            / nodes
            / minutes,
    }
}

/// Polls `done` every 250 ms until true or `limit` passes.
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    done()
}

fn bench_pod(kind: Kind, name: &str, node: Option<&str>) -> Pod {
    let mut spec = json!({
        "containers": [{ "name": "pause", "image": "registry.k8s.io/pause:3.10" }],
        "tolerations": [{ "operator": "Exists" }],
        "nodeSelector": { "bench": kind.name() },
        "terminationGracePeriodSeconds": 0,
    });
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "bench-pod": kind.name() } },
        "spec": spec,
    }))
    .expect("a valid pod")
}

/// Creates the plan's pods and waits until all run; latency per pod from its create call.
async fn pod_run(
    client: &kube::Client,
    plan: &Plan,
    nodes: &[String],
    running: &observe::FirstSeen,
    scheduled: bool,
) -> anyhow::Result<PodRun> {
    anyhow::ensure!(plan.pods > 0, "no pods to run (--max-pods 0)");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mode = if scheduled { "s" } else { "d" };
    let started = Instant::now();
    let created: Vec<(String, Instant)> = futures::stream::iter(0..plan.pods)
        .map(|i| {
            let pods = pods.clone();
            let name = format!("bench-{}-{mode}-{i}", plan.kind.name());
            let node = (!scheduled).then(|| nodes[i % nodes.len()].clone());
            async move {
                let pod = bench_pod(plan.kind, &name, node.as_deref());
                let at = Instant::now();
                pods.create(&PostParams::default(), &pod)
                    .await
                    .map(|_| (name, at))
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .context("creating pods")?;
    let limit = Duration::from_secs(300 + plan.pods as u64 / 20);
    if !wait_until(limit, || running.count() >= plan.pods).await {
        anyhow::bail!(
            "only {} of {} pods Running after {limit:?}",
            running.count(),
            plan.pods
        );
    }
    let total = started.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = created
        .iter()
        .filter_map(|(name, at)| {
            running
                .when(name)
                .map(|r| r.saturating_duration_since(*at).as_secs_f64())
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index]
    };
    Ok(PodRun {
        pods: plan.pods,
        seconds_to_all_running: total,
        p50_seconds: percentile(0.50),
        p99_seconds: percentile(0.99),
        max_seconds: latencies.last().copied().unwrap_or_default(),
    })
}

/// Deletes the benchmark's pods at once (grace period 0: the simulator is not waited
/// for, and its nodes see the pods go) and waits until they are gone. A
/// delete-collection of thousands of pods can outlast the API server's request
/// timeout; it is repeated until nothing is left, for up to 900 s and a further second
/// per 100 pods created (`created`).
async fn delete_pods(client: &kube::Client, label: &str, created: usize) -> anyhow::Result<()> {
    let limit = Duration::from_secs(900 + created as u64 / 100);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let selector = ListParams::default().labels(label);
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let deadline = Instant::now() + limit;
    let mut last_error = None;
    loop {
        match pods.list_metadata(&selector.clone().limit(1)).await {
            Ok(left) if left.items.is_empty() => return Ok(()),
            Ok(_) => {
                if let Err(error) = pods.delete_collection(&now, &selector).await {
                    last_error = Some(error.to_string());
                }
            }
            Err(error) => last_error = Some(error.to_string()),
        }
        if Instant::now() >= deadline {
            anyhow::bail!("pods still there after {limit:?} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Keeps the plan's pods running while a tenth of them are replaced every 10 s; samples
/// the simulator's memory every 30 s.
/// Creates a pod, retrying a refused create up to four times with backoff (1, 2, 4,
/// 8 s): a soak rides out a slow or restarting API server rather than ending.
async fn create_with_retries(pods: &Api<Pod>, pod: &Pod) -> bool {
    for attempt in 0..5u32 {
        match pods.create(&PostParams::default(), pod).await {
            Ok(_) => return true,
            Err(kube::Error::Api(status)) if status.code == 409 => return true,
            Err(error) => {
                eprintln!(
                    "soak: creating a pod failed (attempt {}): {error}",
                    attempt + 1
                );
                if attempt < 4 {
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
            }
        }
    }
    false
}

async fn soak_with_churn(
    client: &kube::Client,
    plan: &Plan,
    simulator: &Simulator,
    length: Duration,
) -> anyhow::Result<Soak> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let count = plan.pods.max(1);
    let name =
        |generation: usize, i: usize| format!("bench-{}-soak-{generation}-{i}", plan.kind.name());
    let mut live: Vec<String> = Vec::with_capacity(count);
    for i in 0..count {
        let pod = bench_pod(plan.kind, &name(0, i), None);
        anyhow::ensure!(
            create_with_retries(&pods, &pod).await,
            "the soak's pods could not be created"
        );
        live.push(name(0, i));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut allocator_samples = Vec::new();
    let mut next_sample = started;
    let mut generation = 0;
    let mut churned = 0;
    let mut failed_creates = 0;
    while started.elapsed() < length {
        if Instant::now() >= next_sample {
            let pss = procfs::total(&simulator.pids()).pss;
            samples.push((started.elapsed().as_secs(), pss));
            if let Some(stats) = simulator.allocator().await {
                allocator_samples.push((started.elapsed().as_secs(), stats));
            }
            next_sample += Duration::from_secs(30);
        }
        generation += 1;
        let batch = (count / 10).max(1);
        for slot in 0..batch {
            let index = (generation * batch + slot) % count;
            let old = std::mem::replace(&mut live[index], name(generation, index));
            let _ = pods.delete(&old, &DeleteParams::default()).await;
            let pod = bench_pod(plan.kind, &live[index], None);
            if create_with_retries(&pods, &pod).await {
                churned += 1;
            } else {
                failed_creates += 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    samples.push((
        started.elapsed().as_secs(),
        procfs::total(&simulator.pids()).pss,
    ));
    let pss = |sample: Option<&(u64, u64)>| sample.map_or(0, |(_, pss)| *pss);
    let first = pss(samples.first());
    let last = pss(samples.last());
    let warm_up = SOAK_WARM_UP.min(length / 6).as_secs();
    let warm = pss(samples.iter().find(|(at, _)| *at >= warm_up));
    let growth = |from: u64| {
        if from == 0 {
            0.0
        } else {
            (last as f64 - from as f64) / from as f64
        }
    };
    Ok(Soak {
        seconds: length.as_secs(),
        churned_pods: churned,
        failed_creates,
        pss_first: first,
        pss_last: last,
        pss_max: samples
            .iter()
            .map(|(_, pss)| *pss)
            .max()
            .unwrap_or_default(),
        drift: growth(first),
        pss_warm: warm,
        drift_after_warm_up: growth(warm),
        samples,
        allocator_samples,
    })
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024 / 1024);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), {memory} GiB")
}

fn report_points(
    report: &Report,
    value: impl Fn(&Scenario) -> Option<f64>,
) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for scenario in &report.scenarios {
        let Some(y) = value(scenario) else { continue };
        let point = (scenario.nodes as f64, y);
        match series
            .iter_mut()
            .find(|(name, _)| *name == scenario.simulator)
        {
            Some((_, points)) => points.push(point),
            None => series.push((scenario.simulator.clone(), vec![point])),
        }
    }
    series
}

fn markdown(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let f = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    let _ = writeln!(
        out,
        "Machine: {}. Versions: {}. Command: `{}`.\n",
        report.machine, report.versions, report.command
    );
    let _ = writeln!(
        out,
        "| simulator | nodes | Ready (s) | PSS/node idle (KiB) | RSS/node idle (KiB) | PSS/node with pods (KiB) | CPU s/node/min | API server cores | API req/node/min (leases, nodes, pods) | lease misses | pods sched: all Running (s), p50/p99 (s) | pods direct: all Running (s), p50/p99 (s) | errors |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in &report.scenarios {
        let kib = |v: Option<f64>| f(v.map(|b| b / 1024.0), 1);
        let pods = |p: &Option<PodRun>| {
            p.as_ref().map_or("-".into(), |p| {
                format!(
                    "{} pods: {:.1}, {:.2}/{:.2}",
                    p.pods, p.seconds_to_all_running, p.p50_seconds, p.p99_seconds
                )
            })
        };
        let api = s.apiserver.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.simulator,
            s.nodes,
            f(s.ready_seconds, 1),
            kib(s.idle.map(|c| c.pss_per_node)),
            kib(s.idle.map(|c| c.rss_per_node)),
            kib(s.with_pods.map(|c| c.pss_per_node)),
            f(s.idle.map(|c| c.cpu_seconds_per_node_per_minute), 4),
            f(api.map(|a| a.cpu_cores), 2),
            api.map_or("-".into(), |a| format!(
                "{:.1} ({:.1}, {:.2}, {:.2})",
                a.requests_per_node_per_minute,
                a.leases_per_node_per_minute,
                a.nodes_per_node_per_minute,
                a.pods_per_node_per_minute
            )),
            s.leases.as_ref().map_or("-".into(), |l| format!(
                "{} of {} ({} renewals in {:.0} s)",
                l.misses, s.nodes, l.renewals, l.window_seconds
            )),
            pods(&s.pods_scheduled),
            pods(&s.pods_direct),
            if s.errors.is_empty() {
                String::new()
            } else {
                s.errors.join("; ").replace('|', "/")
            },
        );
    }
    let soaks: Vec<&Scenario> = report
        .scenarios
        .iter()
        .filter(|s| s.soak.is_some())
        .collect();
    if !soaks.is_empty() {
        let _ = writeln!(
            out,
            "\n| simulator | nodes | soak (s) | pods churned (failed creates) | PSS first (MiB) | PSS after warm-up (MiB) | PSS last (MiB) | PSS max (MiB) | drift | drift after warm-up |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for s in soaks {
            let k = s.soak.as_ref().expect("filtered");
            let mib = |b: u64| b as f64 / 1024.0 / 1024.0;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} ({}) | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1} % | {:+.1} % |",
                s.simulator,
                s.nodes,
                k.seconds,
                k.churned_pods,
                k.failed_creates,
                mib(k.pss_first),
                mib(k.pss_warm),
                mib(k.pss_last),
                mib(k.pss_max),
                k.drift * 100.0,
                k.drift_after_warm_up * 100.0
            );
        }
    }
    out
}
