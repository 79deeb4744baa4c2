//! `hollow-traffic`: what N hollow nodes and N Kubemark nodes ask of the API server,
//! counted from its audit log by verb and resource, per node per minute, side by side
//! (#19). All run the same pods (pause containers mounting a ConfigMap, a Secret and
//! their service account token) on one control plane; requests are told apart by user
//! agent (hollow's `hollow-kubelet/<version> (<os>/<arch>) hollow/<commit>`, Kubemark's
//! plain `hollow-kubelet`) and, between hollow's two traffic profiles, by user (the
//! lean profile's process runs as `hollow-lean`).
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
    /// The simulators compared (kubemark, hollow, hollow-lean, hollow-managed); the
    /// first is the one the others are compared with.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kubemark,hollow,hollow-lean"
    )]
    simulators: Vec<Kind>,
    /// Where the table (traffic.md) and counts (traffic.json) go.
    #[arg(long, default_value = "/tmp/hollow-traffic")]
    out: PathBuf,
}

const WAIT: Duration = Duration::from_secs(300);
/// How long the start window runs on after the last pod runs.
const START_TAIL: Duration = Duration::from_secs(10);

/// Whose request an audit event is, from its user agent and user: `hollow` (hollow's
/// kubelet profile, or hollow-managed), `hollow-lean`, `kubemark` or `kwok`.
fn simulator_of(user_agent: &str, user: &str) -> Option<&'static str> {
    let product = user_agent.split('/').next().unwrap_or_default();
    match product {
        "hollow-kubelet" if user_agent.contains(" hollow/") && user == sim::LEAN_USER => {
            Some("hollow-lean")
        }
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
        Kind::HollowLean => "hollow-lean",
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

/// The same pods on every node of every simulator, created together (node by node,
/// one simulator after the other), so that all start in one window.
async fn create_pods(
    client: &kube::Client,
    kinds: &[Kind],
    per_node: usize,
) -> anyhow::Result<usize> {
    let mut nodes_of = Vec::new();
    for kind in kinds {
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default().labels(&format!("bench={}", kind.name())))
            .await?;
        nodes_of.push((*kind, nodes.items));
    }
    let most = nodes_of.iter().map(|(_, n)| n.len()).max().unwrap_or(0);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut created = 0;
    for n in 0..most {
        for p in 0..per_node {
            for (kind, nodes) in &nodes_of {
                let Some(node) = nodes.get(n) else { continue };
                pods.create(&PostParams::default(), &pod(*kind, node, n, p)?)
                    .await?;
                created += 1;
            }
        }
    }
    Ok(created)
}

fn pod(kind: Kind, node: &Node, n: usize, p: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {
            "name": format!("traffic-{}-{n}-{p}", kind.name()),
            "labels": { "traffic": "true" },
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
    }))?)
}

fn minutes_between(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_millisecond() - from.as_millisecond()) as f64 / 60_000.0
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
        let user = event["user"]["username"].as_str().unwrap_or_default();
        match simulator_of(agent, user) {
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

/// Whether a `verb resource` line is an Event's. Kubemark's kubelet records none: its
/// dependencies have no `EventClient` (k8s.io/kubernetes pkg/kubemark/hollow_kubelet.go),
/// and the kubelet sends Events only with one (cmd/kubelet/app/server.go,
/// `makeEventRecorder`); a kubelet with default flags sends them, and so does hollow.
fn is_event(key: &str) -> bool {
    key.split(' ')
        .nth(1)
        .is_some_and(|r| r == "events" || r.starts_with("events/"))
}

/// The rate of `key` (or of all lines `keep` keeps, with `key` empty) for `simulator`.
fn rate(counts: &Counts, simulator: &str, key: &str, divisor: f64) -> f64 {
    counts
        .get(simulator)
        .and_then(|c| c.get(key))
        .map_or(0.0, |n| *n as f64 / divisor)
}

fn total(counts: &Counts, simulator: &str, divisor: f64, keep: impl Fn(&str) -> bool) -> f64 {
    counts.get(simulator).map_or(0.0, |c| {
        c.iter()
            .filter(|(k, _)| keep(k))
            .map(|(_, n)| *n as f64)
            .sum::<f64>()
            / divisor
    })
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}", value / base)
    } else {
        "-".into()
    }
}

/// The counts side by side, each divided by `divisor` (nodes, or node-minutes), with
/// each simulator's ratio to the first.
fn table(counts: &Counts, simulators: &[Kind], divisor: f64) -> String {
    let agents: Vec<&str> = simulators.iter().map(|k| agent_name(*k)).collect();
    let first = agents[0];
    let mut keys: Vec<&String> = counts.values().flat_map(|c| c.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.sort_by(|a, b| {
        rate(counts, first, b, divisor).total_cmp(&rate(counts, first, a, divisor))
    });
    let ratios: Vec<String> = agents[1..].iter().map(|a| format!("{a}/{first}")).collect();
    let mut out = format!(
        "| request | {} | {} |\n|---|{}\n",
        agents.join(" | "),
        ratios.join(" | "),
        "---|".repeat(agents.len() + ratios.len())
    );
    let mut row = |label: &str, rates: Vec<f64>, bold: bool| {
        let shown: Vec<String> = rates
            .iter()
            .map(|r| {
                if bold {
                    format!("**{r:.2}**")
                } else {
                    format!("{r:.2}")
                }
            })
            .collect();
        let ratios: Vec<String> = rates[1..].iter().map(|r| ratio(*r, rates[0])).collect();
        out.push_str(&format!(
            "| {label} | {} | {} |\n",
            shown.join(" | "),
            ratios.join(" | ")
        ));
    };
    for key in keys {
        row(
            key,
            agents
                .iter()
                .map(|a| rate(counts, a, key, divisor))
                .collect(),
            false,
        );
    }
    let all = |keep: fn(&str) -> bool| -> Vec<f64> {
        agents
            .iter()
            .map(|a| total(counts, a, divisor, keep))
            .collect()
    };
    row("**all**", all(|_| true), true);
    row("**all but Events**", all(|k| !is_event(k)), true);
    out
}

/// What keeps `candidate` out of the issue's bounds beside `base` (#19): each line
/// `base` sends at least `floor` times (per node, or per node per minute, as `divisor`
/// makes it) within ±20 %, and all requests but Events within ±10 %. Empty when inside.
fn out_of_bounds(
    counts: &Counts,
    base: &str,
    candidate: &str,
    divisor: f64,
    floor: f64,
) -> Vec<String> {
    let mut failures = Vec::new();
    let within = |value: f64, reference: f64, tolerance: f64| {
        (value - reference).abs() <= tolerance * reference
    };
    for key in counts.get(base).into_iter().flat_map(|c| c.keys()) {
        let reference = rate(counts, base, key, divisor);
        let value = rate(counts, candidate, key, divisor);
        if reference >= floor && !within(value, reference, 0.2) {
            failures.push(format!("{key}: {value:.2} against {reference:.2} (±20 %)"));
        }
    }
    let reference = total(counts, base, divisor, |k| !is_event(k));
    let value = total(counts, candidate, divisor, |k| !is_event(k));
    if !within(value, reference, 0.1) {
        failures.push(format!(
            "all but Events: {value:.2} against {reference:.2} (±10 %)"
        ));
    }
    failures
}

/// [`out_of_bounds`] for each simulator after the first, as lines of text.
fn verdicts(counts: &Counts, simulators: &[Kind], divisor: f64, floor: f64) -> String {
    let base = agent_name(simulators[0]);
    let mut out = String::new();
    for kind in &simulators[1..] {
        let candidate = agent_name(*kind);
        let failures = out_of_bounds(counts, base, candidate, divisor, floor);
        if failures.is_empty() {
            out.push_str(&format!("- {candidate}: within the bounds of {base}\n"));
        } else {
            out.push_str(&format!(
                "- {candidate}: outside, {}\n",
                failures.join("; ")
            ));
        }
    }
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
    // All pods start in one window: from the first create until all run, plus the
    // status writes of the next seconds.
    let started = Timestamp::now();
    let created = create_pods(&client, &args.simulators, args.pods_per_node).await?;
    wait_until("all pods Running", async || {
        let list = pods.list(&ListParams::default().labels("traffic")).await?;
        let running = list
            .items
            .iter()
            .filter(|p| hollow_tests::pod_phase(p) == "Running")
            .count();
        Ok(running >= created)
    })
    .await?;
    tokio::time::sleep(START_TAIL).await;
    let start_ended = Timestamp::now();
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
    let (starting, _) = count(&log, started, start_ended)?;
    let (whole, _) = count(&log, started, to)?;
    let start_minutes = minutes_between(started, start_ended);
    let whole_minutes = minutes_between(started, to);
    let minutes = args.window as f64 / 60.0;
    let nodes = args.nodes as f64;
    let text = format!(
        "{} nodes each, {} pods per node (pause, mounting a ConfigMap, a Secret and the service account token), \
         all created together.\n\n\
         While the pods start (from the first create until all run, plus {} s: {:.1} min), requests per node:\n\n{}\n\
         Steady ({} s counted after {} s settling), requests per node per minute:\n\n{}\n\
         The whole run (from the first create to the end of the steady window: {:.1} min), requests per node per minute:\n\n{}\n\
         Against #19's bounds (each line {} sends at least 0.5 times a node a minute within ±20 %; \
         all but Events within ±10 %):\n\n\
         The whole run:\n{}Steady:\n{}",
        args.nodes,
        args.pods_per_node,
        START_TAIL.as_secs(),
        start_minutes,
        table(&starting, &args.simulators, nodes),
        args.window,
        args.settle,
        table(&steady, &args.simulators, nodes * minutes),
        whole_minutes,
        table(&whole, &args.simulators, nodes * whole_minutes),
        args.simulators[0].name(),
        verdicts(&whole, &args.simulators, nodes * whole_minutes, 0.5),
        verdicts(&steady, &args.simulators, nodes * minutes, 0.5),
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
            "start_minutes": start_minutes,
            "starting": starting,
            "steady": steady,
            "whole_minutes": whole_minutes,
            "whole": whole,
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
            simulator_of(
                "hollow-kubelet/v0.1.0 (linux/amd64) hollow/abc1234",
                "admin"
            ),
            Some("hollow")
        );
        assert_eq!(
            simulator_of(
                "hollow-kubelet/v0.1.0 (linux/amd64) hollow/abc1234",
                "hollow-lean"
            ),
            Some("hollow-lean")
        );
        assert_eq!(simulator_of("hollow-kubelet", "admin"), Some("kubemark"));
        assert_eq!(
            simulator_of("kubemark/v1.36.5 (linux/amd64) kubernetes/9b1f0c3", "admin"),
            Some("kubemark")
        );
        assert_eq!(
            simulator_of(
                "kube-controller-manager/v1.36.5 (linux/amd64) kubernetes/9b1f0c3",
                "system:kube-controller-manager"
            ),
            None
        );
        let event = json!({ "verb": "patch", "objectRef": { "resource": "pods", "subresource": "status" } });
        assert_eq!(request_key(&event), "patch pods/status");
    }

    fn counts(lines: &[(&str, &str, u64)]) -> Counts {
        let mut counts = Counts::new();
        for (simulator, key, n) in lines {
            counts
                .entry(simulator.to_string())
                .or_default()
                .insert(key.to_string(), *n);
        }
        counts
    }

    #[test]
    fn bounds_are_per_line_above_the_floor_and_on_the_total_without_events() {
        let inside = counts(&[
            ("kubemark", "get pods", 100),
            ("kubemark", "update leases", 3),
            ("hollow", "get pods", 118),
            ("hollow", "update leases", 9),
            ("hollow", "create events", 500),
        ]);
        // Leases are under the floor (0.3 a node) and may differ; get pods is within
        // 20 %, but the total without Events (12.7 against 10.3) is not within 10 %.
        let failures = out_of_bounds(&inside, "kubemark", "hollow", 10.0, 0.5);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("all but Events"), "{failures:?}");
        let line = counts(&[("kubemark", "get pods", 100), ("hollow", "get pods", 121)]);
        let failures = out_of_bounds(&line, "kubemark", "hollow", 10.0, 0.5);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].starts_with("get pods"));
        let exact = counts(&[
            ("kubemark", "get pods", 100),
            ("hollow", "get pods", 105),
            ("hollow", "create events", 50),
            ("hollow", "patch events", 5),
        ]);
        assert!(out_of_bounds(&exact, "kubemark", "hollow", 10.0, 0.5).is_empty());
        assert!(is_event("create events") && !is_event("get pods"));
    }
}
