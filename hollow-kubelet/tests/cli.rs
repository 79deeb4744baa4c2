//! The `hollow-kubelet` binary, run as a process against a real local control plane.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, get, init_tracing, node_ready, served_address, wait_ready_nodes};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ListParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(120);
const BINARY: &str = env!("CARGO_BIN_EXE_hollow-kubelet");

fn spawn(args: &[&str], node_name: Option<&str>, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true);
    if let Some(name) = node_name {
        command.env("NODE_NAME", name);
    }
    command.spawn().unwrap()
}

/// Runs the binary to its end (bounded) and returns its exit success and output.
async fn run(args: &[&str]) -> (bool, String) {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("hollow-kubelet did not exit within 60s")
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn terminate(child: &Child) {
    let pid = i32::try_from(child.id().unwrap()).unwrap();
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
}

async fn wait_exit(child: &mut Child) -> bool {
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("hollow-kubelet did not stop within 60s after SIGTERM")
        .unwrap()
        .success()
}

/// Every request the API server's audit log shows for the nodes named `prefix...` (their
/// registration, their Leases) carries hollow-kubelet's client-go-style User-Agent.
fn requests_of_nodes(
    env: &TestEnv,
    prefix: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let log = std::fs::read_to_string(env.audit_log_path().expect("audit log on"))?;
    let mut agents = std::collections::BTreeMap::<String, usize>::new();
    for line in log.lines() {
        let event: serde_json::Value = serde_json::from_str(line)?;
        let object = &event["objectRef"];
        // Node registrations and node Lease writes: only the nodes make them here (the
        // controllers patch the Nodes too, with their own User-Agents). A create's
        // audit event names no object; an update's does.
        let write = matches!(event["verb"].as_str(), Some("create" | "update" | "patch"));
        let named_ours = object["name"]
            .as_str()
            .is_none_or(|n| n.starts_with(prefix));
        let ours = named_ours
            && match object["resource"].as_str() {
                Some("leases") => write && object["namespace"] == "kube-node-lease",
                Some("nodes") => event["verb"] == "create",
                _ => false,
            };
        if ours {
            let agent = event["userAgent"].as_str().unwrap_or_default().to_string();
            *agents.entry(agent).or_default() += 1;
        }
    }
    Ok(agents)
}

async fn assert_requests_name_hollow_kubelet(env: &TestEnv, prefix: &str) -> anyhow::Result<()> {
    // The nodes' first Lease writes come within a renewal period of Ready.
    let agents = eventually("50 registrations and 50 Lease writes", WAIT, || async {
        let agents = requests_of_nodes(env, prefix).map_err(|e| e.to_string())?;
        (agents.values().sum::<usize>() >= 100)
            .then_some(agents.clone())
            .ok_or(format!("{agents:?}"))
    })
    .await;
    let expected = format!("hollow-kubelet/v{} (", env!("CARGO_PKG_VERSION"));
    for agent in agents.keys() {
        assert!(
            agent.starts_with(&expected) && agent.contains(") hollow/"),
            "a node's request with the User-Agent {agent:?}: {agents:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn fifty_nodes_carry_their_flags_and_clean_up_on_sigterm() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().audit_log(true).start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = env.kubeconfig_path().display().to_string();
    let mut child = spawn(
        &[
            "--kubeconfig",
            &kubeconfig,
            "--name=fifty",
            "--nodes=50",
            "--node-labels=hollow-node=true,tier=load",
            "--register-with-taints=kubemark=true:NoSchedule",
            "--capacity=cpu=72,memory=256Gi,pods=110,ephemeral-storage=1Ti",
            "--extended-resources=nvidia.com/gpu=8",
            "--cleanup-on-exit",
            "--metrics-bind-address=127.0.0.1:0",
            // Two requests at a time for 50 nodes: the cap queues requests, and the
            // process's long watches do not hold it.
            "--max-requests-in-flight=2",
            // Each node's Hostname address is its own InternalIP.
            "--hostname-override=node-ip",
        ],
        None,
        &dir.path().join("kubelet.log"),
    );
    let nodes: Api<Node> = Api::all(env.client());
    let listed = wait_ready_nodes(&nodes, "tier=load", 50, WAIT).await;
    assert_requests_name_hollow_kubelet(&env, "fifty-").await?;
    for node in &listed {
        let name = node.metadata.name.as_deref().unwrap();
        assert!(name.starts_with("fifty-"), "{name}");
        assert_eq!(
            node.metadata.labels.as_ref().unwrap()["hollow-node"],
            "true"
        );
        let taints = node.spec.as_ref().unwrap().taints.clone().unwrap();
        assert!(
            taints
                .iter()
                .any(|t| t.key == "kubemark" && t.effect == "NoSchedule")
        );
        let capacity = node.status.as_ref().unwrap().capacity.clone().unwrap();
        assert_eq!(capacity["cpu"].0, "72");
        assert_eq!(capacity["memory"].0, "256Gi");
        assert_eq!(capacity["nvidia.com/gpu"].0, "8");
    }
    let addresses: std::collections::BTreeSet<String> = listed
        .iter()
        .map(|n| {
            n.status.as_ref().unwrap().addresses.as_ref().unwrap()[0]
                .address
                .clone()
        })
        .collect();
    assert_eq!(
        addresses.len(),
        50,
        "each node has its own loopback address"
    );
    for node in &listed {
        let published: Vec<(&str, &str)> = node
            .status
            .as_ref()
            .unwrap()
            .addresses
            .as_ref()
            .unwrap()
            .iter()
            .map(|a| (a.type_.as_str(), a.address.as_str()))
            .collect();
        let [("InternalIP", ip), ("Hostname", hostname)] = published[..] else {
            panic!("{published:?}");
        };
        assert_eq!(hostname, ip, "--hostname-override=node-ip");
        // The label stays the node name, which tells nodes apart.
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(
            Some(&labels["kubernetes.io/hostname"]),
            node.metadata.name.as_ref()
        );
    }

    // The process's own /healthz and /metrics.
    let url = served_address(
        &dir.path().join("kubelet.log"),
        "/healthz and /metrics",
        WAIT,
    )
    .await;
    let get = |path: &'static str| {
        let url = url.clone();
        async move {
            let (code, body) = get(&url, path).await?;
            (code == 200)
                .then_some(body)
                .ok_or(format!("{code} for {path}"))
        }
    };
    assert_eq!(get("/healthz").await.map_err(anyhow::Error::msg)?, "ok");
    let metrics = eventually("metrics counting 50 Ready nodes", WAIT, || async {
        let text = get("/metrics").await?;
        text.contains("hollow_nodes{ready=\"true\"} 50")
            .then_some(text.clone())
            .ok_or(text)
    })
    .await;
    for expected in [
        "hollow_nodes{ready=\"false\"} 0",
        "hollow_api_requests_total{method=\"POST\"}",
        "hollow_api_responses_total{code=\"201\"}",
        "hollow_api_request_duration_seconds_bucket",
        "hollow_lease_renew_lag_seconds",
        "hollow_pods{phase=\"Running\"} 0",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from {metrics}"
        );
    }

    terminate(&child);
    assert!(wait_exit(&mut child).await, "clean exit on SIGTERM");
    let left = nodes
        .list(&ListParams::default().labels("tier=load"))
        .await?;
    assert!(left.items.is_empty(), "--cleanup-on-exit removes the nodes");
    let leases: Api<Lease> = Api::namespaced(env.client(), "kube-node-lease");
    assert!(leases.get_opt("fifty-0").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn the_seeds_kubemark_command_lines_register_and_go_not_ready_on_sigterm()
-> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = format!("--kubeconfig={}", env.kubeconfig_path().display());
    // As in the seeds' manifests, with only the binary swapped.
    let mut first = spawn(
        &[
            "--morph=kubelet",
            "--name=hollow-node-7d9f",
            &kubeconfig,
            "--kube-api-content-type=application/vnd.kubernetes.protobuf",
            "--alsologtostderr",
            "--v=2",
        ],
        None,
        &dir.path().join("first.log"),
    );
    let mut second = spawn(
        &[
            "--morph=kubelet",
            &kubeconfig,
            "--node-labels=hollow-node=true",
            "--containerd=/run/crio/crio.sock",
            "--v=9",
        ],
        Some("hollow-node-from-env"),
        &dir.path().join("second.log"),
    );
    let nodes: Api<Node> = Api::all(env.client());
    for name in ["hollow-node-7d9f", "hollow-node-from-env"] {
        eventually("the seed's node Ready", WAIT, || async {
            let node = nodes
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("not registered")?;
            (node_ready(&node) == Some("True"))
                .then_some(())
                .ok_or("not Ready".to_string())
        })
        .await;
    }
    let log = std::fs::read_to_string(dir.path().join("second.log"))?;
    assert!(
        log.contains("--containerd is accepted for Kubemark compatibility"),
        "{log}"
    );
    // Requests carry hollow-kubelet's User-Agent: the API server names the field
    // manager of what the node wrote after it (the part before the first '/').
    let node = nodes.get("hollow-node-7d9f").await?;
    let managers: Vec<(String, Option<String>)> = node
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|f| (f.manager.clone().unwrap_or_default(), f.subresource.clone()))
        .collect();
    assert!(
        managers.contains(&("hollow-kubelet".into(), None)),
        "the Node was created by hollow-kubelet: {managers:?}"
    );

    terminate(&first);
    assert!(wait_exit(&mut first).await);
    // Without --cleanup-on-exit the Node stays and the node lifecycle controller marks it.
    eventually("the stopped node to go Unknown", WAIT, || async {
        let node = nodes
            .get("hollow-node-7d9f")
            .await
            .map_err(|e| e.to_string())?;
        (node_ready(&node) == Some("Unknown"))
            .then_some(())
            .ok_or(format!("{:?}", node_ready(&node)))
    })
    .await;
    terminate(&second);
    assert!(wait_exit(&mut second).await);
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_clear_errors() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().scheduler(false).start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = env.kubeconfig_path().display().to_string();

    let garbage = dir.path().join("garbage.kubeconfig");
    std::fs::write(&garbage, "this: [is not a kubeconfig")?;
    let (ok, out) = run(&["--kubeconfig", garbage.to_str().unwrap()]).await;
    assert!(!ok && out.contains("cannot read kubeconfig"), "{out}");
    assert!(!out.contains("panicked"), "{out}");

    let unreachable = dir.path().join("unreachable.kubeconfig");
    let text = std::fs::read_to_string(env.kubeconfig_path())?
        .replace(env.server_url(), "https://127.0.0.1:1");
    std::fs::write(&unreachable, text)?;
    let (ok, out) = run(&[
        "--kubeconfig",
        unreachable.to_str().unwrap(),
        "--connect-timeout=3",
    ])
    .await;
    assert!(
        !ok && out.contains("cannot reach the API server after"),
        "{out}"
    );

    for (flag, expected) in [
        ("--extended-resources=foo", "expected name=quantity"),
        ("--capacity=cpu=-1", "invalid quantity \"-1\" for cpu"),
        ("--register-with-taints=a=b:Often", "effect must be"),
        ("--morph=proxy", "run hollow-proxy"),
        ("--max-requests-in-flight=0", "0 is not in 1..=10000"),
        ("--api-connections=0", "0 is not in 1..=1024"),
        ("--kubelet-api-idle-timeout=0", "0 is not in 1..=86400"),
        (
            "--hostname-override=under_score",
            "invalid hostname \"under_score\": must be an IP address or a DNS name",
        ),
        (
            "--manage-nodes-with-label-selector=type in (kwok",
            "invalid selector \"type in (kwok\" at \"type in (kwok\": expected a set of values in parentheses",
        ),
        (
            "--manage-nodes-with-annotation-selector=a=b,,c",
            "empty requirement",
        ),
    ] {
        let (ok, out) = run(&["--kubeconfig", &kubeconfig, flag]).await;
        assert!(!ok && out.contains(expected), "{flag}: {out}");
    }
    let (ok, out) = run(&[
        "--kubeconfig",
        &kubeconfig,
        "--http2=false",
        "--api-connections=4",
    ])
    .await;
    assert!(
        !ok && out.contains("no meaning with --http2=false"),
        "{out}"
    );
    // Serving others' Nodes excludes registering or deleting nodes of one's own.
    for (conflicting, expected) in [
        (
            ["--manage-all-nodes", "--nodes=3"],
            "--nodes is about nodes this process registers",
        ),
        (
            [
                "--manage-nodes-with-label-selector=type=kwok",
                "--cleanup-on-exit",
            ],
            "--cleanup-on-exit is about nodes this process registers",
        ),
        (["--manage-single-node=n1", "--adopt"], "--adopt is about"),
        (
            ["--manage-all-nodes", "--manage-single-node=n1"],
            "exclude each other (as in KWOK)",
        ),
        (
            [
                "--manage-single-node=n1",
                "--manage-nodes-with-label-selector=a=b",
            ],
            "exclude each other",
        ),
    ] {
        let mut args = vec!["--kubeconfig", &kubeconfig];
        args.extend(conflicting);
        let (ok, out) = run(&args).await;
        assert!(!ok && out.contains(expected), "{conflicting:?}: {out}");
    }
    // One hostname for several nodes is refused before anything registers.
    let (ok, out) = run(&[
        "--kubeconfig",
        &kubeconfig,
        "--nodes=2",
        "--hostname-override=10.0.0.7",
    ])
    .await;
    assert!(
        !ok && out.contains("would give all 2 nodes one hostname")
            && out.contains("--hostname-override=node-ip"),
        "{out}"
    );

    // A lifecycle file with a mistake stops the process before anything registers.
    let bad_lifecycle = dir.path().join("bad-lifecycle.yaml");
    std::fs::write(
        &bad_lifecycle,
        "containers:\n  - name: finish\n    steps:\n      - exit: {code: 0, after: 5s}\n",
    )?;
    let (ok, out) = run(&[
        "--kubeconfig",
        &kubeconfig,
        "--name=never-registered",
        "--lifecycle",
        bad_lifecycle.to_str().unwrap(),
    ])
    .await;
    let place = format!("{}:4:", bad_lifecycle.display());
    assert!(!ok && out.contains(&place), "{out}");
    assert!(
        out.contains("containers[0].steps[0].exit.after") && out.contains("unknown field `after`"),
        "{out}"
    );
    let (ok, out) = run(&["--kubeconfig", &kubeconfig, "--lifecycle=slow"]).await;
    assert!(
        !ok && out.contains("expected a preset (fast, realistic, chaos)"),
        "{out}"
    );
    let nodes: Api<Node> = Api::all(env.client());
    assert!(nodes.get_opt("never-registered").await?.is_none());

    // A Node hollow did not register is not taken over unless --adopt says so.
    let foreign: Node =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "taken" } }))?;
    nodes.create(&PostParams::default(), &foreign).await?;
    let (ok, out) = run(&["--kubeconfig", &kubeconfig, "--name=taken"]).await;
    assert!(
        !ok && out.contains("already exists and was not registered by hollow"),
        "{out}"
    );
    // The adopted node also plays a lifecycle file's node rule.
    let lifecycle = dir.path().join("lifecycle.json");
    std::fs::write(
        &lifecycle,
        r#"{"nodes": [{"steps": [{"condition": {"type": "HollowChecked", "status": "True"}}]}]}"#,
    )?;
    let mut adopted = spawn(
        &[
            "--kubeconfig",
            &kubeconfig,
            "--name=taken",
            "--adopt",
            "--lifecycle",
            lifecycle.to_str().unwrap(),
        ],
        None,
        &dir.path().join("adopt.log"),
    );
    eventually(
        "the adopted node Ready, with its lifecycle's condition",
        WAIT,
        || async {
            let node = nodes.get("taken").await.map_err(|e| e.to_string())?;
            let checked = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "HollowChecked" && c.status == "True")
                });
            (node_ready(&node) == Some("True") && checked)
                .then_some(())
                .ok_or("not Ready with HollowChecked".to_string())
        },
    )
    .await;
    terminate(&adopted);
    assert!(wait_exit(&mut adopted).await);
    Ok(())
}

#[tokio::test]
async fn sigterm_during_start_up_exits_cleanly_and_cleans_up() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().scheduler(false).start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = env.kubeconfig_path().display().to_string();
    let log = dir.path().join("kubelet.log");
    let mut child = spawn(
        &[
            "--kubeconfig",
            &kubeconfig,
            "--name=early",
            "--nodes=300",
            "--parallelism=4",
            "--cleanup-on-exit",
            "--metrics-bind-address=127.0.0.1:0",
        ],
        None,
        &log,
    );
    // Stop it once the first nodes exist, long before all 300 are Ready.
    let nodes: Api<Node> = Api::all(env.client());
    eventually("the first nodes to register", WAIT, || async {
        let list = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let early = list
            .items
            .iter()
            .filter(|n| {
                n.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("early-"))
            })
            .count();
        (early > 0).then_some(()).ok_or("none yet".to_string())
    })
    .await;
    terminate(&child);
    let clean = wait_exit(&mut child).await;
    let output = std::fs::read_to_string(&log)?;
    assert!(clean, "{output}");
    assert!(
        output.contains("interrupted while starting the nodes"),
        "{output}"
    );
    let left = nodes.list(&ListParams::default()).await?;
    assert!(
        left.items.iter().all(|n| !n
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with("early-")),
        "--cleanup-on-exit removes nodes registered before the signal"
    );
    Ok(())
}

/// KWOK's own command line (its configuration's defaults as flags, `--node-port`
/// included) serves the Nodes `kubectl create` makes with KWOK's annotation, runs their
/// pods with `kubectl logs` working, drops the Nodes deleted, and leaves the creator's
/// Nodes in place on SIGTERM.
#[tokio::test]
async fn kwok_command_lines_serve_the_nodes_kubectl_creates() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = env.kubeconfig_path().display().to_string();
    let log = dir.path().join("kubelet.log");
    let port = hollow_tests::free_port().to_string();
    let mut child = spawn(
        &[
            "--kubeconfig",
            &kubeconfig,
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--manage-nodes-with-label-selector=",
            "--manage-single-node=",
            "--node-port",
            &port,
            "--cidr=10.0.0.0/24",
            "--node-lease-duration-seconds=40",
            "--metrics-bind-address=127.0.0.1:0",
        ],
        None,
        &log,
    );
    // As KWOK's documentation creates fake nodes, plus one that is not KWOK's.
    let mut manifest = String::new();
    for i in 0..20 {
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: kwok-node-{i}\n  annotations:\n    kwok.x-k8s.io/node: fake\n  labels:\n    type: kwok\nspec:\n  taints:\n  - key: kwok.x-k8s.io/node\n    value: fake\n    effect: NoSchedule\n"
        ));
    }
    manifest.push_str("---\napiVersion: v1\nkind: Node\nmetadata:\n  name: real-node\n");
    let file = dir.path().join("nodes.yaml");
    std::fs::write(&file, manifest)?;
    hollow_tests::kubectl_ok(&env, &["create", "-f", file.to_str().unwrap()]).await;

    let nodes: Api<Node> = Api::all(env.client());
    wait_ready_nodes(&nodes, "type=kwok", 20, WAIT).await;
    let node = nodes.get("kwok-node-3").await?;
    let endpoint = node
        .status
        .as_ref()
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map(|e| e.port.to_string());
    assert_eq!(endpoint.as_deref(), Some(port.as_str()), "--node-port");
    assert_eq!(node_ready(&nodes.get("real-node").await?), None);

    // A pod on a served Node runs (its IP from the Node's podCIDR, which the controller
    // manager allocates here, else from --cidr), and its logs come through the node's
    // kubelet API.
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "on-kwok" },
        "spec": {
            "nodeName": "kwok-node-3",
            "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists" }],
            "containers": [{ "name": "app", "image": "busybox" }],
        },
    }))?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client(), "default");
    pods.create(&PostParams::default(), &pod).await?;
    let ip = eventually("the pod Running", WAIT, || async {
        let pod = pods.get("on-kwok").await.map_err(|e| e.to_string())?;
        let status = pod.status.unwrap_or_default();
        (status.phase.as_deref() == Some("Running"))
            .then_some(status.pod_ip.unwrap_or_default())
            .ok_or(format!("{:?}", status.phase))
    })
    .await;
    assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{ip:?}");
    let (ok, logs) = hollow_tests::kubectl(&env, &["logs", "on-kwok"]).await;
    assert!(
        ok,
        "kubectl logs through the served node's kubelet API: {logs}"
    );

    // Deleted Nodes are dropped: the process's metrics count 15.
    let deleted: Vec<String> = (0..5).map(|i| format!("node/kwok-node-1{i}")).collect();
    let mut args = vec!["delete"];
    args.extend(deleted.iter().map(String::as_str));
    hollow_tests::kubectl_ok(&env, &args).await;
    let url = served_address(&log, "/healthz and /metrics", WAIT).await;
    eventually("metrics counting 15 served nodes", WAIT, || async {
        let (_, text) = get(&url, "/metrics").await?;
        text.contains("hollow_nodes{ready=\"true\"} 15")
            .then_some(())
            .ok_or(text)
    })
    .await;

    terminate(&child);
    assert!(wait_exit(&mut child).await, "clean exit on SIGTERM");
    let left = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await?;
    assert_eq!(left.items.len(), 15, "the creator's Nodes stay");
    Ok(())
}

/// Writes `kubeconfig` where a process can read it.
fn write_kubeconfig(kubeconfig: &kube::config::Kubeconfig, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec(kubeconfig)?)?;
    Ok(())
}

#[tokio::test]
async fn bootstrapped_nodes_talk_as_themselves_and_bad_bootstrap_input_is_refused()
-> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().audit_responses(true).start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = env.kubeconfig_path().display().to_string();
    let bootstrap = dir.path().join("bootstrap.kubeconfig");
    write_kubeconfig(&env.bootstrap_kubeconfig().await?, &bootstrap)?;
    let bootstrap = bootstrap.display().to_string();

    // Refused before anything is registered.
    let garbage = dir.path().join("garbage.kubeconfig");
    std::fs::write(&garbage, "this: [is not a kubeconfig")?;
    for (args, expected) in [
        (
            vec![
                "--kubeconfig",
                &kubeconfig,
                "--bootstrap-kubeconfig",
                garbage.to_str().unwrap(),
            ],
            "cannot read --bootstrap-kubeconfig",
        ),
        (
            vec![
                "--kubeconfig",
                &kubeconfig,
                "--bootstrap-kubeconfig",
                &bootstrap,
                "--manage-all-nodes=true",
            ],
            "does not apply to Nodes others create",
        ),
        (
            vec!["--bootstrap-kubeconfig", &bootstrap],
            "give --kubeconfig too, or --serve-kubelet-api=false",
        ),
    ] {
        let (ok, out) = run(&args).await;
        assert!(!ok && out.contains(expected), "{args:?}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    // A token the API server does not know: the certificate request is refused.
    let forged = dir.path().join("forged.kubeconfig");
    let mut forged_kubeconfig: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bootstrap.kubeconfig"))?)?;
    let token = forged_kubeconfig["users"][0]["user"]["token"]
        .as_str()
        .expect("a token")
        .to_string();
    let (id, _) = token.split_once('.').expect("<id>.<secret>");
    forged_kubeconfig["users"][0]["user"]["token"] = format!("{id}.0000000000000000").into();
    std::fs::write(&forged, serde_json::to_vec(&forged_kubeconfig)?)?;
    let (ok, out) = run(&[
        "--kubeconfig",
        &kubeconfig,
        "--bootstrap-kubeconfig",
        forged.to_str().unwrap(),
        "--name=forged",
    ])
    .await;
    assert!(
        !ok && out.contains("cannot request a client certificate for node forged"),
        "{out}"
    );

    let mut child = spawn(
        &[
            "--kubeconfig",
            &kubeconfig,
            "--bootstrap-kubeconfig",
            &bootstrap,
            "--name=boot",
            "--nodes=5",
            "--node-labels=tier=bootstrapped",
            "--cleanup-on-exit",
            "--metrics-bind-address=127.0.0.1:0",
        ],
        None,
        &dir.path().join("kubelet.log"),
    );
    let nodes: Api<Node> = Api::all(env.client());
    wait_ready_nodes(&nodes, "tier=bootstrapped", 5, WAIT).await;
    // Each node's registration and Lease writes were its own, and allowed.
    let writers = eventually("each node's Lease written by itself", WAIT, || async {
        let log =
            std::fs::read_to_string(env.audit_log_path().unwrap()).map_err(|e| e.to_string())?;
        let mut writers = std::collections::BTreeMap::<String, String>::new();
        for line in log.lines() {
            let event: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            let object = &event["objectRef"];
            if object["resource"] == "leases"
                && event["verb"] == "update"
                && event["responseStatus"]["code"] == 200
                && let Some(name) = object["name"].as_str().filter(|n| n.starts_with("boot-"))
            {
                let user = event["user"]["username"].as_str().unwrap_or_default();
                writers.insert(name.to_string(), user.to_string());
            }
        }
        (writers.len() == 5)
            .then_some(writers.clone())
            .ok_or(format!("{writers:?}"))
    })
    .await;
    for (lease, user) in &writers {
        assert_eq!(user, &format!("system:node:{lease}"));
    }
    terminate(&child);
    assert!(wait_exit(&mut child).await, "clean exit on SIGTERM");
    let left = nodes
        .list(&ListParams::default().labels("tier=bootstrapped"))
        .await?;
    assert!(
        left.items.is_empty(),
        "--cleanup-on-exit removes the nodes with the process's credentials"
    );
    Ok(())
}
