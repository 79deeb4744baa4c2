//! `hollow-heap`: the heap a hollow node and a running pod cost, counted by dhat.
//!
//! Starts a local control plane (separate processes, not counted), then in this process
//! N hollow nodes, then a Deployment of P pods on them, and prints the live heap per
//! node and per pod. With `--profile <file>` it also writes dhat's profile, to be read
//! with dhat's viewer (allocation sites at the peak). PSS from outside, with allocator
//! overhead and fragmentation, is `hollow-bench`'s figure; this one says where bytes go.
//!
//! With `--soak <seconds>` it then replaces a tenth of the pods every 10 s (as
//! `hollow-bench`'s soak does) and prints the live heap, and the process's anonymous
//! PSS, every `--sample-every` seconds: whether memory grows over a long run, and with
//! `--profile`, which allocation sites hold the bytes at the end.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hollow_core::connect::{ConnectionPool, pooled_client};
use hollow_core::node::{HollowCluster, TrafficProfile};
use hollow_core::testenv::TestEnv;
use hollow_tests::eventually;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Heap per hollow node and per running pod.
#[derive(Parser)]
struct Args {
    /// Hollow nodes.
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Pods (one Deployment), spread by the scheduler.
    #[arg(long, default_value_t = 500)]
    pods: usize,
    /// Seconds to let nodes settle before counting, and pods after all run (past the
    /// client's 30 s idle timeout, so the connections of a burst are closed).
    #[arg(long, default_value_t = 40)]
    settle: u64,
    /// Write dhat's profile here.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// After counting, churn pods for this many seconds: a tenth of them deleted (and
    /// replaced by their Deployment) every 10 s.
    #[arg(long, default_value_t = 0)]
    soak: u64,
    /// Seconds between the soak's samples.
    #[arg(long, default_value_t = 60)]
    sample_every: u64,
    /// Whether the nodes record Events (`--events=false` to count without them).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    events: bool,
    /// The nodes' traffic profile (kubelet or lean).
    #[arg(long, default_value = "kubelet")]
    traffic: TrafficProfile,
    /// The pods' container runs `sh -c <SCRIPT>` in the fake runtime's userland (e.g.
    /// `'echo hello; sleep 3600'`) instead of its image's entrypoint.
    #[arg(long)]
    script: Option<String>,
    /// The pods are a Job's (as many completions as pods, all at once), counted once
    /// all have succeeded: what a finished pod keeps.
    #[arg(long)]
    job: bool,
    /// An annotation on the pods, `KEY=VALUE` (e.g. `hollow.dev/exit-after=1s`, so the
    /// plain fake's containers finish); repeatable.
    #[arg(long = "annotate", value_parser = parse_annotation)]
    annotations: Vec<(String, String)>,
    /// The pods are placed directly, without an owner, round robin over the nodes
    /// (`spec.nodeName` set), as `hollow-bench --direct-pods-only` and KWOK's own
    /// benchmark place theirs: all created at once, 64 requests at a time.
    #[arg(long, conflicts_with_all = ["job", "soak"])]
    direct: bool,
}

fn parse_annotation(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    Ok((key.to_string(), value.to_string()))
}

/// Live heap bytes and blocks.
fn live() -> (u64, u64) {
    let stats = dhat::HeapStats::get();
    (stats.curr_bytes as u64, stats.curr_blocks as u64)
}

fn per(after: (u64, u64), before: (u64, u64), count: usize) -> (f64, f64) {
    let count = count.max(1) as f64;
    (
        after.0.saturating_sub(before.0) as f64 / count,
        after.1.saturating_sub(before.1) as f64 / count,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = TestEnv::builder().start().await?;
    let profiler = dhat::Profiler::builder()
        .file_name(
            args.profile
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("hollow-heap-dhat.json")),
        )
        .build();
    // As hollow-kubelet's: idle connections close, so the heap counted is the nodes'
    // and pods', not that of connections a burst opened.
    let config =
        kube::Config::from_custom_kubeconfig(env.kubeconfig().clone(), &Default::default()).await?;
    // Kubelet-profile nodes hold watches, a stream each: connections open as needed.
    let pool = ConnectionPool {
        connections: 1024,
        ..ConnectionPool::default()
    };
    let client = pooled_client(config, pool)?.build();
    let base = live();
    let cluster = HollowCluster::builder("heap")
        .nodes(args.nodes, {
            let (events, traffic) = (args.events, args.traffic);
            move |_, node| node.events(events).traffic(traffic)
        })
        .start(client.clone())
        .await?;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let idle = live();
    let (bytes, blocks) = per(idle, base, args.nodes);
    println!("per node (idle): {bytes:.0} bytes in {blocks:.0} blocks");
    if args.pods > 0 {
        if args.direct {
            let nodes: Vec<String> = cluster
                .nodes()
                .iter()
                .map(|n| n.name().to_string())
                .collect();
            place_pods(&client, &args, &nodes).await?;
        }
        count_pods(&client, &args, idle).await?;
        if args.soak > 0 {
            soak(&client, args.pods, &args).await?;
        }
    }
    // The profile is written while the nodes still run, so its bytes "at end" are the
    // steady state.
    drop(profiler);
    drop(cluster);
    env.stop();
    Ok(())
}

/// Starts a Deployment (or with `--job`, a Job) of `args.pods` pods, waits until all
/// run (or succeeded) and `args.settle` seconds more, and prints the heap each added
/// to `idle`.
async fn count_pods(client: &kube::Client, args: &Args, idle: (u64, u64)) -> anyhow::Result<()> {
    let replicas = args.pods;
    let command = args.script.as_deref().map(|s| json!(["sh", "-c", s]));
    let annotations: serde_json::Map<String, serde_json::Value> = args
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let template = json!({
        "metadata": { "labels": { "app": "heap" }, "annotations": annotations },
        "spec": {
            "restartPolicy": if args.job { "Never" } else { "Always" },
            "containers": [{
                "name": "c",
                "image": "nginx:1.27",
                "command": command,
                "resources": { "requests": { "cpu": "1m" } },
            }],
        },
    });
    let (want, phase) = if args.direct {
        ("Running", "running")
    } else if args.job {
        let job: Job = serde_json::from_value(json!({
            "metadata": { "name": "heap" },
            "spec": {
                "completions": replicas,
                "parallelism": replicas,
                "template": template,
            },
        }))?;
        Api::<Job>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &job)
            .await?;
        ("Succeeded", "succeeded")
    } else {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": { "name": "heap" },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": "heap" } },
                "template": template,
            },
        }))?;
        Api::<Deployment>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &deployment)
            .await?;
        ("Running", "running")
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually(
        &format!("every pod {want}"),
        Duration::from_secs(600),
        || async {
            // Counted without listing every pod, so this process's peak is the nodes'.
            let done = if args.direct {
                let waiting = ListParams::default()
                    .labels("app=heap")
                    .fields(&format!("status.phase!={want}"))
                    .limit(1);
                let page = pods
                    .list_metadata(&waiting)
                    .await
                    .map_err(|e| e.to_string())?;
                if page.items.is_empty() { replicas } else { 0 }
            } else if args.job {
                let job = Api::<Job>::namespaced(client.clone(), "default")
                    .get("heap")
                    .await;
                let succeeded = job
                    .map_err(|e| e.to_string())?
                    .status
                    .and_then(|s| s.succeeded);
                usize::try_from(succeeded.unwrap_or(0)).unwrap_or(0)
            } else {
                let deployment = Api::<Deployment>::namespaced(client.clone(), "default");
                let ready = deployment.get("heap").await.map_err(|e| e.to_string())?;
                let ready = ready.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                usize::try_from(ready).unwrap_or(0)
            };
            (done == replicas)
                .then_some(())
                .ok_or(format!("{done} of {replicas} {want}"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let (bytes, blocks) = per(live(), idle, replicas);
    println!("per {phase} pod: {bytes:.0} bytes in {blocks:.0} blocks");
    Ok(())
}

/// Creates `args.pods` ownerless pods placed round robin on `nodes`, with the template's
/// labels and container.
async fn place_pods(client: &kube::Client, args: &Args, nodes: &[String]) -> anyhow::Result<()> {
    use futures::StreamExt;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = futures::stream::iter(0..args.pods)
        .map(|i| {
            let pods = pods.clone();
            let pod: Result<Pod, _> = serde_json::from_value(json!({
                "metadata": { "name": format!("heap-{i}"), "labels": { "app": "heap" } },
                "spec": {
                    "nodeName": nodes[i % nodes.len()],
                    "containers": [{ "name": "pause", "image": "registry.k8s.io/pause:3.10" }],
                    "tolerations": [{ "operator": "Exists" }],
                    "terminationGracePeriodSeconds": 0,
                },
            }));
            // The created pod is dropped at once: this process's peak is the nodes'.
            async move {
                pods.create(&PostParams::default(), &pod?).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    created.into_iter().collect()
}

/// Deletes the oldest tenth of the Deployment's pods every 10 s for `args.soak` seconds,
/// printing a sample line every `args.sample_every` seconds and a last one at the end.
async fn soak(client: &kube::Client, replicas: usize, args: &Args) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let length = Duration::from_secs(args.soak);
    let every = Duration::from_secs(args.sample_every.max(1));
    let started = std::time::Instant::now();
    let mut next_sample = started;
    let mut churned = 0usize;
    let batch = (replicas / 10).max(1);
    println!("soak: {} s, {batch} pods replaced every 10 s", args.soak);
    while started.elapsed() < length {
        if std::time::Instant::now() >= next_sample {
            print_sample(started.elapsed(), churned);
            next_sample += every;
        }
        match pods.list(&ListParams::default().labels("app=heap")).await {
            Ok(list) => {
                let mut items = list.items;
                items.sort_by(|a, b| {
                    a.metadata
                        .creation_timestamp
                        .cmp(&b.metadata.creation_timestamp)
                });
                let oldest = items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter_map(|p| p.metadata.name.as_deref())
                    .take(batch);
                for name in oldest {
                    match pods.delete(name, &DeleteParams::default()).await {
                        Ok(_) => churned += 1,
                        Err(error) => eprintln!("soak: deleting {name} failed: {error}"),
                    }
                }
            }
            Err(error) => eprintln!("soak: listing pods failed: {error}"),
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    print_sample(started.elapsed(), churned);
    Ok(())
}

/// One line: seconds since the soak began, pods deleted so far, live heap (dhat) and the
/// process's anonymous PSS (which includes dhat's own bookkeeping).
fn print_sample(elapsed: Duration, churned: usize) {
    let (bytes, blocks) = live();
    let anon_kib = std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|rollup| {
            rollup
                .lines()
                .find_map(|line| line.strip_prefix("Pss_Anon:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .unwrap_or_default();
    println!(
        "t={}s churned={churned} heap_bytes={bytes} heap_blocks={blocks} pss_anon_kib={anon_kib}",
        elapsed.as_secs()
    );
}
