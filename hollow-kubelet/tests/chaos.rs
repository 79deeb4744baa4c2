//! Faults a hollow-kubelet process must recover from as a kubelet does, against a real
//! local control plane. Every case ends with no node and no pod lost, no container
//! restarted, no panic in the process's log, and every node and pod Ready within
//! [`RECOVERY`] of the fault ending.
//!
//! The cases run one at a time (each holds [`SERIAL`]): they measure recovery times, and
//! two at once on a 2-core machine would measure each other.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hollow_core::testenv::{Component, TestEnv};
use hollow_tests::{eventually, init_tracing, node_ready};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

const WAIT: Duration = Duration::from_secs(120);
const BINARY: &str = env!("CARGO_BIN_EXE_hollow-kubelet");
/// How soon after a fault ends every node and pod must be Ready again: the kubelet's
/// status period (10 s) and some slack for a loaded machine.
const RECOVERY: Duration = Duration::from_secs(15);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum())
}

fn not_ready_tainted(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == "node.kubernetes.io/not-ready"))
}

/// A hollow-kubelet process of `nodes` nodes named `<name>-*` running a Deployment of
/// `pods` pods, on a control plane of its own.
struct Case {
    env: TestEnv,
    name: &'static str,
    nodes: usize,
    child: Child,
    pid: Pid,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// The pods' UIDs once all were Ready.
    pods_before: Vec<String>,
}

impl Case {
    /// Starts the process (reaching the API server at `server`, or directly) with three
    /// nodes and six pods; returns once every node and pod is Ready.
    async fn start(name: &'static str, env: TestEnv, server: Option<&str>) -> anyhow::Result<Case> {
        Case::start_sized(name, env, server, 3, 6).await
    }

    /// [`Case::start`] with `nodes` nodes and `pods` pods.
    async fn start_sized(
        name: &'static str,
        env: TestEnv,
        server: Option<&str>,
        nodes: usize,
        pods: usize,
    ) -> anyhow::Result<Case> {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig.json");
        let mut config = env.kubeconfig().clone();
        if let Some(server) = server {
            for cluster in &mut config.clusters {
                if let Some(cluster) = cluster.cluster.as_mut() {
                    cluster.server = Some(server.to_string());
                }
            }
        }
        // JSON is YAML: kubectl and kube read it as a kubeconfig.
        std::fs::write(&kubeconfig, serde_json::to_vec(&config)?)?;
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(BINARY)
            .args([
                &format!("--name={name}"),
                &format!("--nodes={nodes}"),
                "--serve-kubelet-api=false",
                &format!("--kubeconfig={}", kubeconfig.display()),
            ])
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        let pid = Pid::from_raw(i32::try_from(child.id().expect("running"))?);
        let mut case = Case {
            env,
            name,
            nodes,
            child,
            pid,
            log,
            _dir: dir,
            pods_before: Vec::new(),
        };
        let nodes_api = case.nodes_api();
        eventually("every node Ready and schedulable", WAIT, || async {
            let list = nodes_api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let ready = list
                .items
                .iter()
                .filter(|n| node_ready(n) == Some("True") && !not_ready_tainted(n))
                .count();
            (ready == nodes)
                .then_some(())
                .ok_or(format!("{ready} of {nodes}"))
        })
        .await;
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "replicas": pods,
                "selector": { "matchLabels": { "app": name } },
                "template": {
                    "metadata": { "labels": { "app": name } },
                    "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1" }] },
                },
            },
        }))?;
        Api::<Deployment>::namespaced(case.env.client(), "default")
            .create(&PostParams::default(), &deployment)
            .await?;
        let ready = eventually("every pod Ready", WAIT, || async {
            let seen = case.pods().await?;
            let ready = seen.values().filter(|(ready, _)| *ready).count();
            (ready == pods)
                .then(|| seen.clone())
                .ok_or(format!("{ready} of {pods} Ready ({} seen)", seen.len()))
        })
        .await;
        case.pods_before = ready.into_keys().collect();
        Ok(case)
    }

    fn nodes_api(&self) -> Api<Node> {
        Api::all(self.env.client())
    }

    /// The Ready status of each node of the process, by name.
    async fn nodes(&self) -> Result<BTreeMap<String, String>, String> {
        let list = self
            .nodes_api()
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let prefix = format!("{}-", self.name);
        Ok(list
            .items
            .iter()
            .filter(|n| {
                n.metadata
                    .name
                    .as_deref()
                    .is_some_and(|name| name.starts_with(&prefix))
            })
            .map(|n| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    node_ready(n).unwrap_or("none").to_string(),
                )
            })
            .collect())
    }

    /// The pods of the Deployment by UID, with whether each is Ready and its restarts.
    async fn pods(&self) -> Result<BTreeMap<String, (bool, i32)>, String> {
        let pods: Api<Pod> = Api::namespaced(self.env.client(), "default");
        let list = pods
            .list(&ListParams::default().labels(&format!("app={}", self.name)))
            .await
            .map_err(|e| e.to_string())?;
        Ok(list
            .items
            .iter()
            .map(|p| {
                (
                    p.metadata.uid.clone().unwrap_or_default(),
                    (pod_ready(p), restarts(p)),
                )
            })
            .collect())
    }

    /// Waits until the node lifecycle controller has marked every node Unknown.
    async fn wait_all_unknown(&self) {
        eventually("every node Unknown", WAIT, || async {
            let nodes = self.nodes().await?;
            nodes
                .values()
                .all(|ready| ready == "Unknown")
                .then_some(())
                .ok_or(format!("{nodes:?}"))
        })
        .await;
    }

    /// Checks what every case ends with, the fault having ended at `ended`.
    async fn assert_recovered(mut self, ended: Instant) -> anyhow::Result<()> {
        let (nodes, pods) = eventually("every node and pod Ready again", WAIT, || async {
            let (n, p) = (self.nodes().await?, self.pods().await?);
            let all_ready = n.values().all(|r| r == "True") && p.values().all(|(ready, _)| *ready);
            all_ready
                .then_some((n.clone(), p.clone()))
                .ok_or(format!("{n:?} {p:?}"))
        })
        .await;
        let took = ended.elapsed();
        eprintln!(
            "{}: every node and pod Ready {took:?} after the fault ended",
            self.name
        );
        let log = std::fs::read_to_string(&self.log)?;
        assert!(
            took <= RECOVERY,
            "nodes and pods Ready {took:?} after the fault ended; a kubelet is within {RECOVERY:?}\n{log}"
        );
        assert_eq!(nodes.len(), self.nodes, "no node lost: {nodes:?}");
        assert_eq!(
            pods.keys().cloned().collect::<Vec<_>>(),
            self.pods_before,
            "no pod lost or replaced"
        );
        assert!(
            pods.values().all(|(_, restarts)| *restarts == 0),
            "no container restarted: {pods:?}"
        );
        assert!(!log.contains("panicked"), "{log}");
        kill(self.pid, Signal::SIGTERM)?;
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??;
        assert!(exit.success(), "{log}");
        Ok(())
    }
}

/// The process frozen (SIGSTOP) past the node monitor grace period, so the node
/// lifecycle controller marks its nodes Unknown and their pods not ready, then resumed:
/// a kubelet is Ready again within a status period, and so must hollow's nodes be,
/// although their Lease renewals merely arrive late (none fails).
#[tokio::test]
async fn a_frozen_process_is_ready_again_within_a_status_period_of_resuming() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    init_tracing();
    let case = Case::start("frozen", TestEnv::builder().start().await?, None).await?;
    kill(case.pid, Signal::SIGSTOP)?;
    let frozen = async {
        case.wait_all_unknown().await;
        eventually("every pod marked not ready", WAIT, || async {
            let pods = case.pods().await?;
            pods.values()
                .all(|(ready, _)| !ready)
                .then_some(())
                .ok_or(format!("{pods:?}"))
        })
        .await;
    };
    // Resumed whatever happens, so a failure does not leave a stopped process behind.
    let outcome = tokio::time::timeout(WAIT, frozen).await;
    kill(case.pid, Signal::SIGCONT)?;
    outcome.expect("the controller marked the frozen nodes and pods within 120 s");
    case.assert_recovered(Instant::now()).await
}

/// kube-apiserver killed (SIGKILL) for 30 s, longer than the grace period, then
/// started again on the same etcd.
#[tokio::test]
async fn nodes_recover_from_an_api_server_killed_for_30_seconds() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let case = Case::start("apikill", TestEnv::builder().start().await?, None).await?;
    case.env.kill_component(Component::ApiServer)?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    case.env.start_component(Component::ApiServer).await?;
    case.assert_recovered(Instant::now()).await
}

/// etcd killed (SIGKILL) for 20 s, then started again on the same data.
#[tokio::test]
async fn nodes_recover_from_etcd_killed_for_20_seconds() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let case = Case::start("etcdkill", TestEnv::builder().start().await?, None).await?;
    case.env.kill_component(Component::Etcd)?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    case.env.start_component(Component::Etcd).await?;
    // The API server is ready again once it reaches etcd.
    let client = case.env.client();
    eventually("the API server to reach etcd again", WAIT, || async {
        client
            .apiserver_version()
            .await
            .map(drop)
            .map_err(|e| e.to_string())?;
        Api::<Node>::all(client.clone())
            .list(&ListParams::default().limit(1))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    case.assert_recovered(Instant::now()).await
}

/// A TCP proxy on loopback between the process and the API server, which the test can
/// cut (every connection closed, the port refusing new ones) and restore.
struct CuttableProxy {
    port: u16,
    cut: watch::Sender<bool>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> anyhow::Result<Arc<CuttableProxy>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (cut, mut cut_seen) = watch::channel(false);
        tokio::spawn(async move {
            let mut listener = Some(listener);
            let mut connections = JoinSet::new();
            loop {
                match listener.as_ref() {
                    Some(open) => tokio::select! {
                        accepted = open.accept() => {
                            if let Ok((inbound, _)) = accepted {
                                let upstream = upstream.clone();
                                connections.spawn(async move {
                                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                                        let mut inbound = inbound;
                                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                                    }
                                });
                            }
                        }
                        changed = cut_seen.changed() => {
                            if changed.is_err() { return; }
                            if *cut_seen.borrow() {
                                listener = None;
                                connections.abort_all();
                            }
                        }
                    },
                    None => {
                        if cut_seen.changed().await.is_err() {
                            return;
                        }
                        if !*cut_seen.borrow() {
                            listener = TcpListener::bind(("127.0.0.1", port)).await.ok();
                        }
                    }
                }
            }
        });
        Ok(Arc::new(CuttableProxy { port, cut }))
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// The network between the process and the API server cut for 60 s (a loopback TCP
/// proxy the test stops and restarts), longer than the grace period.
#[tokio::test]
async fn nodes_recover_from_a_network_cut_of_60_seconds() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let upstream = env
        .server_url()
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let proxy = CuttableProxy::start(upstream).await?;
    let server = format!("https://127.0.0.1:{}", proxy.port);
    let case = Case::start("netcut", env, Some(&server)).await?;
    proxy.set_cut(true);
    tokio::time::sleep(Duration::from_secs(60)).await;
    case.wait_all_unknown().await;
    proxy.set_cut(false);
    case.assert_recovered(Instant::now()).await
}

/// An API server that throttles (`--max-requests-inflight=4
/// --max-mutating-requests-inflight=2`, priority and fairness off, so excess requests
/// get 429) while 100 nodes register and run 200 pods: every node and pod gets Ready,
/// and none falls back out of Ready over the next minute.
#[tokio::test]
async fn a_hundred_nodes_register_and_stay_ready_under_a_throttling_api_server()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let env = TestEnv::builder()
        .arg(Component::ApiServer, "--max-requests-inflight=4")
        .arg(Component::ApiServer, "--max-mutating-requests-inflight=2")
        .arg(Component::ApiServer, "--enable-priority-and-fairness=false")
        .start()
        .await?;
    let case = Case::start_sized("throttled", env, None, 100, 200).await?;
    let watched = Instant::now();
    let deadline = watched + Duration::from_secs(60);
    while Instant::now() < deadline {
        let (nodes, pods) = (case.nodes().await, case.pods().await);
        // A throttled list is no finding; a node or pod seen out of Ready is.
        if let (Ok(nodes), Ok(pods)) = (nodes, pods) {
            let not_ready: Vec<_> = nodes.iter().filter(|(_, r)| *r != "True").collect();
            assert!(
                not_ready.is_empty(),
                "nodes fell out of Ready: {not_ready:?}"
            );
            let pods_not_ready = pods.values().filter(|(ready, _)| !ready).count();
            assert_eq!(pods_not_ready, 0, "pods fell out of Ready");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    case.assert_recovered(Instant::now()).await
}

/// The pod watch expires (410 Gone) during pod churn: the API server serves watches
/// from etcd (`--watch-cache=false`) and compacts every 2 s, and the process's
/// connection is cut for 10 s while pods are deleted and created. The watch resumes at
/// a compacted version, gets 410, and lists again: the deleted pods are torn down
/// (their graceful deletion, which only the node can finish, completes) and the new
/// ones run.
#[tokio::test]
async fn pods_churned_while_the_watch_expires_are_torn_down_and_run() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let env = TestEnv::builder()
        .arg(Component::ApiServer, "--watch-cache=false")
        .arg(Component::ApiServer, "--etcd-compaction-interval=2s")
        .start()
        .await?;
    let upstream = env
        .server_url()
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let proxy = CuttableProxy::start(upstream).await?;
    let server = format!("https://127.0.0.1:{}", proxy.port);
    let case = Case::start("expired", env, Some(&server)).await?;
    let pods: Api<Pod> = Api::namespaced(case.env.client(), "default");
    let churn_pod = |name: String| -> anyhow::Result<Pod> {
        Ok(serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { "churn": "true" } },
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [{ "name": "c", "image": "registry.invalid/app:1" }],
            },
        }))?)
    };
    for i in 0..5 {
        pods.create(&PostParams::default(), &churn_pod(format!("old-{i}"))?)
            .await?;
    }
    eventually("the old pods Running", WAIT, || async {
        let running = pods
            .list(&ListParams::default().labels("churn=true"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .filter(|p| pod_ready(p))
            .count();
        (running == 5)
            .then_some(())
            .ok_or(format!("{running} of 5"))
    })
    .await;

    proxy.set_cut(true);
    for i in 0..5 {
        pods.delete(&format!("old-{i}"), &Default::default())
            .await?;
        pods.create(&PostParams::default(), &churn_pod(format!("new-{i}"))?)
            .await?;
    }
    // Churn on: more revisions for the compactor to compact away.
    for round in 0..10 {
        let name = format!("flash-{round}");
        pods.create(&PostParams::default(), &churn_pod(name.clone())?)
            .await?;
        pods.delete(&name, &kube::api::DeleteParams::default().grace_period(0))
            .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    proxy.set_cut(false);

    eventually("old pods gone and new pods Ready", WAIT, || async {
        let churned = pods
            .list(&ListParams::default().labels("churn=true"))
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<(String, bool)> = churned
            .items
            .iter()
            .map(|p| (p.metadata.name.clone().unwrap_or_default(), pod_ready(p)))
            .collect();
        let done = names.len() == 5
            && names
                .iter()
                .all(|(name, ready)| name.starts_with("new-") && *ready);
        done.then_some(()).ok_or(format!("{names:?}"))
    })
    .await;
    let log = std::fs::read_to_string(&case.log)?;
    assert!(
        log.contains("watch is too old.: Expired"),
        "the pod watch was expected to expire (410) and list again:\n{log}"
    );
    case.assert_recovered(Instant::now()).await
}
