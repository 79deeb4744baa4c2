//! `hollow-traffic`: what N hollow nodes and N Kubemark nodes ask of the API server,
//! counted from its audit log by verb and resource, per node per minute, side by side
//! (#19). Both run the same pods (pause containers mounting a ConfigMap, a Secret and
//! their service account token) on one control plane; requests are told apart by user
//! agent (hollow's `hollow-kubelet/<version> (<os>/<arch>) hollow/<commit>`, Kubemark's
//! plain `hollow-kubelet`).
//!
//! ```sh
//! control-plane/install
//! cargo build --release -p hollow-kubelet -p hollow-tests
//! target/release/hollow-traffic --nodes 10 --pods-per-node 10 --window 180 --out /tmp/traffic
//! ```

// hollow-bench's simulators; this binary uses only their start and stop.
#[path = "sim.rs"]
#[allow(dead_code)]
mod sim;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use hollow_core::testenv::TestEnv;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use sim::{Kind, Simulator};

#[derive(Parser, Debug)]
#[command(about = "Requests per node per minute by verb and resource: hollow beside Kubemark")]
struct Args {
    /// Nodes of each simulator.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Pods on each node.
    #[arg(long, default_value_t = 10)]
    pods_per_node: usize,
    /// Seconds counted, once every pod runs and `--settle` passed.
    #[arg(long, default_value_t = 180)]
    window: u64,
    /// Seconds waited after every pod runs, before counting.
    #[arg(long, default_value_t = 30)]
    settle: u64,
    /// The simulators compared (hollow, hollow-managed, kubemark).
    #[arg(long, value_delimiter = ',', default_value = "kubemark,hollow")]
    simulators: Vec<Kind>,
    /// Where the table (traffic.md) and counts (traffic.json) go.
    #[arg(long, default_value = "/tmp/hollow-traffic")]
    out: PathBuf,
}

const WAIT: Duration = Duration::from_secs(300);
/// How long the start window runs on after the last pod runs.
const START_TAIL: Duration = Duration::from_secs(10);

/// Whose request an audit event is, from its user agent: `hollow` (either hollow
/// kind), `kubemark` or `kwok`.
fn simulator_of(user_agent: &str) -> Option<&'static str> {
    let product = user_agent.split('/').next().unwrap_or_default();
    match product {
        "hollow-kubelet" if user_agent.contains(" hollow/") => Some("hollow"),
        // Kubemark's kubelet names itself `hollow-kubelet`, with nothing after it.
        "hollow-kubelet" if user_agent == "hollow-kubelet" => Some("kubemark"),
        "kubemark" | "hollow-kubelet" if user_agent.contains(" kubernetes/") => Some("kubemark"),
        "kwok" => Some("kwok"),
        _ => None,
    }
}

/// The name [`simulator_of`] gives a simulator's requests.
fn agent_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Hollow | Kind::HollowManaged => "hollow",
        Kind::Kubemark => "kubemark",
        Kind::Kwok => "kwok",
    }
}

/// `verb resource[/subresource]` of an audit event.
fn request_key(event: &Value) -> String {
    let verb = event["verb"].as_str().unwrap_or("?");
    let resource = event["objectRef"]["resource"].as_str().unwrap_or("-");
    match event["objectRef"]["subresource"].as_str() {
        Some(sub) => format!("{verb} {resource}/{sub}"),
        None => format!("{verb} {resource}"),
    }
}

async fn wait_until(
    what: &str,
    mut done: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done().await? {
        anyhow::ensure!(started.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

fn ready(node: &Node) -> bool {
    hollow_tests::node_ready(node) == Some("True")
}

async fn create_pods(client: &kube::Client, kind: Kind, per_node: usize) -> anyhow::Result<usize> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("bench={}", kind.name())))
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut created = 0;
    for (n, node) in nodes.items.iter().enumerate() {
        for p in 0..per_node {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("traffic-{}-{n}-{p}", kind.name()),
                    "labels": { "traffic": kind.name() },
                },
                "spec": {
                    "nodeName": node.metadata.name,
                    "containers": [{
                        "name": "app",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } },
                        "volumeMounts": [
                            { "name": "config", "mountPath": "/etc/config" },
                            { "name": "secret", "mountPath": "/etc/secret" },
                        ],
                    }],
                    "volumes": [
                        { "name": "config", "configMap": { "name": "traffic-config" } },
                        { "name": "secret", "secret": { "secretName": "traffic-secret" } },
                    ],
                },
            }))?;
            pods.create(&PostParams::default(), &pod).await?;
            created += 1;
        }
    }
    Ok(created)
}

/// Requests by simulator and `verb resource`, received in `[from, to)`, and the other
/// user agents' totals.
type Counts = BTreeMap<String, BTreeMap<String, u64>>;

fn count(
    log: &std::path::Path,
    from: Timestamp,
    to: Timestamp,
) -> anyhow::Result<(Counts, BTreeMap<String, u64>)> {
    let file = std::fs::File::open(log).with_context(|| format!("reading {}", log.display()))?;
    let mut counts = Counts::new();
    let mut others = BTreeMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let Ok(event) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        let Some(at) = event["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
        else {
            continue;
        };
        if at < from || at >= to {
            continue;
        }
        let agent = event["userAgent"].as_str().unwrap_or_default();
        match simulator_of(agent) {
            Some(simulator) => {
                *counts
                    .entry(simulator.to_string())
                    .or_default()
                    .entry(request_key(&event))
                    .or_default() += 1;
            }
            None => {
                *others.entry(agent.to_string()).or_default() += 1;
            }
        }
    }
    Ok((counts, others))
}

/// The counts side by side, each divided by `divisor` (nodes, or node-minutes).
fn table(counts: &Counts, simulators: &[Kind], divisor: f64) -> String {
    let rate = |kind: Kind, key: &str| {
        counts
            .get(agent_name(kind))
            .and_then(|c| c.get(key))
            .map_or(0.0, |n| *n as f64 / divisor)
    };
    let mut keys: Vec<&String> = counts.values().flat_map(|c| c.keys()).collect();
    keys.sort();
    keys.dedup();
    let first = simulators[0];
    keys.sort_by(|a, b| rate(first, b).total_cmp(&rate(first, a)));
    let names: Vec<&str> = simulators.iter().map(|k| k.name()).collect();
    let mut out = format!(
        "| request | {} | ratio to {} |\n|---|{}---|\n",
        names.join(" | "),
        first.name(),
        "---|".repeat(names.len())
    );
    let ratio = |value: f64, base: f64| {
        if base > 0.0 {
            format!("{:.2}", value / base)
        } else {
            "-".into()
        }
    };
    let mut total = vec![0.0; simulators.len()];
    for key in keys {
        let rates: Vec<f64> = simulators.iter().map(|k| rate(*k, key)).collect();
        for (sum, r) in total.iter_mut().zip(&rates) {
            *sum += r;
        }
        let shown: Vec<String> = rates.iter().map(|r| format!("{r:.2}")).collect();
        let last = *rates.last().unwrap_or(&0.0);
        out.push_str(&format!(
            "| {key} | {} | {} |\n",
            shown.join(" | "),
            ratio(last, rates[0])
        ));
    }
    let shown: Vec<String> = total.iter().map(|r| format!("**{r:.2}**")).collect();
    out.push_str(&format!(
        "| **all** | {} | {} |\n",
        shown.join(" | "),
        ratio(*total.last().unwrap_or(&0.0), total[0])
    ));
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    hollow_tests::init_tracing();
    let args = Args::parse();
    anyhow::ensure!(!args.simulators.is_empty(), "no simulator given");
    let mut agents: Vec<&str> = args.simulators.iter().map(|k| agent_name(*k)).collect();
    agents.sort_unstable();
    agents.dedup();
    anyhow::ensure!(
        agents.len() == args.simulators.len(),
        "hollow and hollow-managed send the same user agent: compare one of them at a time"
    );
    std::fs::create_dir_all(&args.out)?;
    let env = TestEnv::builder().audit_log(true).start().await?;
    let client = env.client();
    let log = env.audit_log_path().context("no audit log")?.to_path_buf();
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({ "metadata": { "name": "traffic-config" }, "data": { "k": "v" } }),
            )?,
        )
        .await?;
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({ "metadata": { "name": "traffic-secret" }, "stringData": { "k": "v" } }),
            )?,
        )
        .await?;
    let mut running = Vec::new();
    for kind in &args.simulators {
        let dir = args.out.join(kind.name());
        std::fs::create_dir_all(&dir)?;
        running.push(Simulator::start(*kind, &env, args.nodes, &dir).await?);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for kind in &args.simulators {
        let labels = format!("bench={}", kind.name());
        wait_until(&format!("{} nodes Ready", kind.name()), async || {
            let list = nodes.list(&ListParams::default().labels(&labels)).await?;
            Ok(list.items.iter().filter(|n| ready(n)).count() >= args.nodes)
        })
        .await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Each simulator's pods start in a window of their own: from the first create until
    // all run, plus the status writes of the next seconds.
    let mut start_windows = Vec::new();
    for kind in &args.simulators {
        let started = Timestamp::now();
        let created = create_pods(&client, *kind, args.pods_per_node).await?;
        let labels = format!("traffic={}", kind.name());
        wait_until(&format!("{} pods Running", kind.name()), async || {
            let list = pods.list(&ListParams::default().labels(&labels)).await?;
            let running = list
                .items
                .iter()
                .filter(|p| hollow_tests::pod_phase(p) == "Running")
                .count();
            Ok(running >= created)
        })
        .await?;
        tokio::time::sleep(START_TAIL).await;
        start_windows.push((*kind, started, Timestamp::now()));
    }
    println!(
        "all pods run; settling {} s, then counting {} s",
        args.settle, args.window
    );
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let from = Timestamp::now();
    tokio::time::sleep(Duration::from_secs(args.window)).await;
    let to = Timestamp::now();
    // The audit backend writes as it goes; a moment for the last lines.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (steady, others) = count(&log, from, to)?;
    let mut starting = Counts::new();
    for (kind, started, ended) in start_windows {
        let (counts, _) = count(&log, started, ended)?;
        if let Some(mine) = counts.get(agent_name(kind)) {
            starting.insert(agent_name(kind).to_string(), mine.clone());
        }
    }
    let minutes = args.window as f64 / 60.0;
    let nodes = args.nodes as f64;
    let text = format!(
        "{} nodes each, {} pods per node (pause, mounting a ConfigMap, a Secret and the service account token).\n\n\
         While the pods start (from the first create until all run, plus {} s), requests per node:\n\n{}\n\
         Steady ({} s counted after {} s settling), requests per node per minute:\n\n{}",
        args.nodes,
        args.pods_per_node,
        START_TAIL.as_secs(),
        table(&starting, &args.simulators, nodes),
        args.window,
        args.settle,
        table(&steady, &args.simulators, nodes * minutes),
    );
    println!("{text}");
    println!("other clients in the steady window: {others:?}");
    std::fs::write(args.out.join("traffic.md"), &text)?;
    std::fs::write(
        args.out.join("traffic.json"),
        serde_json::to_string_pretty(&json!({
            "nodes": args.nodes,
            "pods_per_node": args.pods_per_node,
            "window_seconds": args.window,
            "starting": starting,
            "steady": steady,
            "other_clients": others,
        }))?,
    )?;
    for simulator in running {
        simulator.stop().await;
    }
    env.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_told_apart_by_user_agent() {
        assert_eq!(
            simulator_of("hollow-kubelet/v0.1.0 (linux/amd64) hollow/abc1234"),
            Some("hollow")
        );
        assert_eq!(simulator_of("hollow-kubelet"), Some("kubemark"));
        assert_eq!(
            simulator_of("kubemark/v1.36.5 (linux/amd64) kubernetes/9b1f0c3"),
            Some("kubemark")
        );
        assert_eq!(
            simulator_of("kube-controller-manager/v1.36.5 (linux/amd64) kubernetes/9b1f0c3"),
            None
        );
        let event = json!({ "verb": "patch", "objectRef": { "resource": "pods", "subresource": "status" } });
        assert_eq!(request_key(&event), "patch pods/status");
    }
}
