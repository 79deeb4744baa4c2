//! `hollow-encodings`: what a watcher costs the API server in each encoding.
//!
//! hollow's watches ask for JSON; kubelets' for protobuf (`--kube-api-content-type`).
//! The API server serializes each watch event once per encoding its watchers asked for
//! (k8s.io/apiserver's `cachingObject`), so a JSON watcher beside protobuf ones (the
//! controller manager's and the scheduler's) could cost a second serialization of every
//! event it gets. This measures it: a local control plane, `--objects` pods bound to a
//! Node no kubelet serves, an annotation of each patched in turn at `--rate` a second
//! for `--seconds` under each set of watchers, and the API server's CPU per patch from
//! /proc.
//!
//! ```text
//! cargo run --release -p hollow-tests --bin hollow-encodings
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// hollow-bench's /proc reader; this binary uses only a process's CPU time.
#[path = "procfs.rs"]
#[allow(dead_code)]
mod procfs;

use anyhow::Context as _;
use clap::Parser;
use hollow_core::testenv::{Component, TestEnv};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

const NAMESPACE: &str = "default";
const NAME: &str = "hollow-encodings";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf;stream=watch";
const JSON: &str = "application/json";

/// API server CPU per object update, with watchers in one or two encodings.
#[derive(Parser)]
struct Args {
    /// Pods patched in turn.
    #[arg(long, default_value_t = 500)]
    objects: usize,
    /// Patches a second.
    #[arg(long, default_value_t = 150)]
    rate: u32,
    /// Length of each window, seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
}

/// The watchers of one window: how many ask for protobuf, how many for JSON.
const WINDOWS: [(usize, usize); 8] = [
    (1, 0),
    (2, 0),
    (1, 1),
    (1, 0),
    (1, 1),
    (2, 0),
    (1, 10),
    (11, 0),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rate > 0 && args.seconds > 0,
        "--rate and --seconds must be positive"
    );
    let env = TestEnv::builder().start().await?;
    let client = env.client();
    let node = json!({ "metadata": { "name": NAME } });
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(node)?)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for i in 0..args.objects {
        create_with_retries(&pods, &bench_pod(i)).await?;
    }
    let size = serde_json::to_vec(&pods.get(&format!("{NAME}-0")).await?)?.len();
    let apiserver = env
        .pid(Component::ApiServer)
        .context("the API server's process")?;
    println!(
        "{} pods of {size} bytes in JSON, {} patches a second for {} s a window",
        args.objects, args.rate, args.seconds
    );
    let mut sequence = 0u64;
    for (protobuf, json) in WINDOWS {
        let received = Arc::new(AtomicU64::new(0));
        let mut watches = watch(&client, PROTOBUF, protobuf, &received).await?;
        watches.extend(watch(&client, JSON, json, &received).await?);
        tokio::time::sleep(Duration::from_secs(3)).await;
        received.store(0, Ordering::Relaxed);
        let (cpu_before, started) = (cpu_seconds(apiserver)?, Instant::now());
        let total = u64::from(args.rate) * u64::from(args.seconds);
        let patched = patch_at_rate(&pods, args.objects, args.rate, total, &mut sequence).await;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(apiserver)? - cpu_before;
        println!(
            "{protobuf:>2} protobuf + {json:>2} JSON watchers: {patched}/{total} patches in {elapsed:.1} s, \
             API server {:.3} cores, {:.3} ms of CPU a patch, {:.1} KiB watched a patch",
            cpu / elapsed,
            cpu * 1000.0 / total as f64,
            received.load(Ordering::Relaxed) as f64 / 1024.0 / total as f64,
        );
        for watch in watches {
            watch.abort();
        }
    }
    env.stop();
    Ok(())
}

/// A pod of the bench's Node with what pods commonly have: two containers with
/// environment, ports, resources and probes, and (from admission) a service account
/// token volume.
fn bench_pod(i: usize) -> Pod {
    let container = |name: &str| {
        json!({
            "name": name,
            "image": "registry.k8s.io/pause:3.10",
            "env": (0..8).map(|e| json!({ "name": format!("SETTING_{e}"), "value": format!("value-{e}") })).collect::<Vec<_>>(),
            "ports": [{ "name": "http", "containerPort": 8080 }],
            "resources": { "requests": { "cpu": "100m", "memory": "64Mi" }, "limits": { "memory": "128Mi" } },
            "readinessProbe": { "httpGet": { "path": "/ready", "port": 8080 }, "periodSeconds": 5 },
        })
    };
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{NAME}-{i}"),
            "labels": { NAME: "yes", "app": "encodings", "tier": "backend" },
            "annotations": { "n": "0" },
        },
        "spec": {
            "nodeName": NAME,
            "containers": [container("app"), container("sidecar")],
            "tolerations": [{ "operator": "Exists" }],
        },
    }))
    .expect("a valid pod")
}

/// Creates a pod, waiting up to 60 s for the namespace's service account to be made.
async fn create_with_retries(pods: &Api<Pod>, pod: &Pod) -> anyhow::Result<()> {
    let mut attempts = 0;
    loop {
        match pods.create(&PostParams::default(), pod).await {
            Ok(_) => return Ok(()),
            Err(error) if attempts < 60 => {
                attempts += 1;
                if attempts == 1 {
                    eprintln!("creating a pod failed, retrying for up to 60 s: {error}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error).context("creating the pods"),
        }
    }
}

/// Starts `count` watches of the pods in `accept`; their bytes are counted.
async fn watch(
    client: &kube::Client,
    accept: &str,
    count: usize,
    received: &Arc<AtomicU64>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut watches = Vec::with_capacity(count);
    for _ in 0..count {
        let request = http::Request::get(format!(
            "/api/v1/namespaces/{NAMESPACE}/pods?watch=true&labelSelector={NAME}%3Dyes&timeoutSeconds=3600"
        ))
        .header(http::header::ACCEPT, accept)
        .body(kube::client::Body::empty())?;
        let response = client.send(request).await?;
        anyhow::ensure!(
            response.status().is_success(),
            "a {accept} watch: {}",
            response.status()
        );
        let received = received.clone();
        watches.push(tokio::spawn(async move {
            let mut body = response.into_body();
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    received.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    Ok(watches)
}

/// Sends `total` patches, `rate` a second, to the pods in turn; returns how many
/// the API server took.
async fn patch_at_rate(
    pods: &Api<Pod>,
    objects: usize,
    rate: u32,
    total: u64,
    sequence: &mut u64,
) -> usize {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut sent = tokio::task::JoinSet::new();
    for _ in 0..total {
        tick.tick().await;
        *sequence += 1;
        let (pods, n) = (pods.clone(), *sequence);
        sent.spawn(async move {
            let name = format!("{NAME}-{}", n % objects as u64);
            let patch = json!({ "metadata": { "annotations": { "n": n.to_string() } } });
            pods.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .is_ok()
        });
    }
    sent.join_all().await.into_iter().filter(|ok| *ok).count()
}

/// CPU seconds the API server has used, from /proc.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    procfs::usage(pid)
        .map(|usage| usage.cpu.as_secs_f64())
        .context("the API server's process is gone")
}
