//! Shared helpers for the integration tests in this folder.
//!
//! Every test here runs against a real control plane started by
//! `hollow_core::testenv`; build its binaries once with `control-plane/install`.

pub mod kubemark;
pub mod oracle;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 250 ms until it returns `Some`, or fails after `timeout` with
/// `what` and the last value seen.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Whether a process with this pid exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// A Job of `completions` busybox pods, `parallelism` at a time, whose pod template
/// carries `template_metadata` (labels or annotations that script the pods).
pub fn job(
    name: &str,
    completions: i32,
    parallelism: i32,
    backoff_limit: i32,
    template_metadata: serde_json::Value,
) -> k8s_openapi::api::batch::v1::Job {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": template_metadata,
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "work", "image": "busybox" }],
                },
            },
        },
    }))
    .expect("a valid Job")
}

/// Waits until the Job has `condition` (`Complete`, `Failed`) True; returns it.
pub async fn wait_job_condition(
    jobs: &kube::Api<k8s_openapi::api::batch::v1::Job>,
    name: &str,
    condition: &str,
    timeout: Duration,
) -> k8s_openapi::api::batch::v1::Job {
    eventually(&format!("job {name} {condition}"), timeout, || async {
        let job = jobs.get(name).await.map_err(|e| e.to_string())?;
        let reached = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == condition && c.status == "True"));
        reached
            .then_some(job.clone())
            .ok_or(format!("{:?}", job.status))
    })
    .await
}

/// A client for a kubelet API at `base` (`https://ip:port`), whose self-signed serving
/// certificate is accepted, with `auth` (none, a token, a client certificate).
pub fn kubelet_client(base: &str, auth: kube::config::AuthInfo) -> kube::Client {
    let mut config = kube::Config::new(base.parse().expect("a kubelet URL"));
    config.accept_invalid_certs = true;
    config.default_retry = false;
    config.auth_info = auth;
    kube::Client::try_from(config).expect("a kubelet client")
}

/// A client of `env`'s API server as `hollow-kubelet` builds it: HTTP/2, so every
/// request shares one connection.
pub async fn http2_client(env: &hollow_core::testenv::TestEnv) -> kube::Client {
    let config =
        kube::Config::from_custom_kubeconfig(env.kubeconfig().clone(), &Default::default())
            .await
            .expect("the test environment's kubeconfig");
    hollow_core::connect::pooled_client(config, Default::default())
        .expect("a client")
        .build()
}

/// Which end of a TCP connection a port is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// This process's end: a server's sockets on its listening port.
    Local,
    /// The peer's end: a client's connections to a server's port.
    Remote,
}

/// This process's established IPv4 TCP connections whose `end` is on `port`.
pub fn established(end: End, port: u16) -> usize {
    let ours: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .trim_end_matches(']')
                    .to_string(),
            )
        })
        .collect();
    let column = match end {
        End::Local => 1,
        End::Remote => 2,
    };
    let suffix = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() > 9 && fields[3] == "01")
        .filter(|fields| fields[column].ends_with(&suffix))
        .filter(|fields| ours.contains(fields[9]))
        .count()
}

/// A loopback port no one listens on now (for servers a test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("no free loopback port")
}

/// Sets up `tracing` output for a test once (quiet unless RUST_LOG says otherwise).
pub fn init_tracing() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// The address a process printed on a line `serving <what> on <url>` in its log at
/// `log`, once it has (bounded by `timeout`).
pub async fn served_address(log: &std::path::Path, what: &str, timeout: Duration) -> String {
    let prefix = format!("serving {what} on ");
    eventually(&format!("the address of {what}"), timeout, || async {
        let text = std::fs::read_to_string(log).map_err(|e| e.to_string())?;
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix).map(String::from))
            .ok_or(text)
    })
    .await
}

/// GETs `path` from one of our plain HTTP endpoints at `base` (e.g. a health port) and
/// returns the status code and body. kube's client retries 503 answers by default;
/// here they are turned off, so a health check sees them.
pub async fn get(base: &str, path: &str) -> Result<(u16, String), String> {
    let mut config = kube::Config::new(base.parse().map_err(|e| format!("{base}: {e}"))?);
    config.read_timeout = Some(Duration::from_secs(10));
    config.default_retry = false;
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .map_err(|e| e.to_string())?;
    let code = response.status().as_u16();
    let body = response
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| e.to_string())?;
    Ok((code, String::from_utf8_lossy(&body).to_string()))
}

/// A Node's condition of type `type_`.
pub fn node_condition<'a>(
    node: &'a k8s_openapi::api::core::v1::Node,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The status of a Node's Ready condition: `True`, `False` or `Unknown`.
pub fn node_ready(node: &k8s_openapi::api::core::v1::Node) -> Option<&str> {
    node_condition(node, "Ready").map(|c| c.status.as_str())
}

/// A pod from its metadata and spec, as JSON.
pub fn pod_from(
    metadata: serde_json::Value,
    spec: serde_json::Value,
) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec,
    }))
    .expect("a valid pod")
}

/// A pod named `name` with `spec`, as JSON.
pub fn pod(name: &str, spec: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
    pod_from(serde_json::json!({ "name": name }), spec)
}

/// kubectl against the environment, killed if dropped.
pub fn kubectl_command(
    env: &hollow_core::testenv::TestEnv,
    args: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env.binary("kubectl"));
    command
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path())
        .args(args)
        .kill_on_drop(true);
    command
}

/// Runs kubectl against the environment (bounded to 60 s), returning whether it
/// succeeded and its standard output and error.
pub async fn kubectl(env: &hollow_core::testenv::TestEnv, args: &[&str]) -> (bool, String) {
    let (success, stdout, stderr) = kubectl_output(env, args).await;
    (success, stdout + &stderr)
}

/// Runs kubectl against the environment (bounded to 60 s) and returns its standard
/// output; panics with its output if it fails.
pub async fn kubectl_ok(env: &hollow_core::testenv::TestEnv, args: &[&str]) -> String {
    let (success, stdout, stderr) = kubectl_output(env, args).await;
    assert!(success, "kubectl {args:?} failed: {stdout}{stderr}");
    stdout
}

async fn kubectl_output(
    env: &hollow_core::testenv::TestEnv,
    args: &[&str],
) -> (bool, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(60), kubectl_command(env, args).output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within 60s"))
        .expect("kubectl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A pod's phase; empty before it has one.
pub fn pod_phase(pod: &k8s_openapi::api::core::v1::Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The status (`True`, `False`, `Unknown`) of a pod's condition of `type_`.
pub fn pod_condition<'a>(pod: &'a k8s_openapi::api::core::v1::Pod, type_: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// Waits until the pod `name` passes `check`; returns it.
pub async fn wait_pod(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&k8s_openapi::api::core::v1::Pod) -> bool,
) -> k8s_openapi::api::core::v1::Pod {
    eventually(what, timeout, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        if check(&pod) {
            Ok(pod)
        } else {
            Err(format!("{:?}", pod.status))
        }
    })
    .await
}

/// Waits until `count` Nodes with `labels` are Ready, and returns them.
pub async fn wait_ready_nodes(
    nodes: &kube::Api<k8s_openapi::api::core::v1::Node>,
    labels: &str,
    count: usize,
    timeout: Duration,
) -> Vec<k8s_openapi::api::core::v1::Node> {
    eventually(
        &format!("{count} Ready nodes ({labels})"),
        timeout,
        || async {
            let list = nodes
                .list(&kube::api::ListParams::default().labels(labels))
                .await
                .map_err(|e| e.to_string())?;
            let ready = list
                .items
                .iter()
                .filter(|n| node_ready(n) == Some("True"))
                .count();
            (ready == count)
                .then_some(list.items)
                .ok_or(format!("{ready} Ready"))
        },
    )
    .await
}

/// The audit log's events (one per line of `env`'s audit log) of the client `agent`.
pub fn audit_events_of(
    env: &hollow_core::testenv::TestEnv,
    agent: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let path = env
        .audit_log_path()
        .ok_or_else(|| anyhow::anyhow!("the audit log is off"))?;
    let log = std::fs::read_to_string(path)?;
    let mut events = Vec::new();
    for line in log.lines() {
        let event: serde_json::Value = serde_json::from_str(line)?;
        if event["userAgent"] == agent {
            events.push(event);
        }
    }
    Ok(events)
}

/// Whether an audit event is a `verb` of `resource` (and `subresource`).
pub fn is_request(
    event: &serde_json::Value,
    verb: &str,
    resource: &str,
    subresource: Option<&str>,
) -> bool {
    event["verb"] == verb
        && event["objectRef"]["resource"] == resource
        && event["objectRef"]["subresource"].as_str() == subresource
}
