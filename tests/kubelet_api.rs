//! The kubelet HTTP API of hollow nodes, reached the ordinary ways: `kubectl logs`,
//! `kubectl exec`, `kubectl attach` and `kubectl port-forward` through the API server,
//! `kubectl top` and a HorizontalPodAutoscaler through a real metrics-server, and direct
//! requests with and without credentials.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use hollow_core::cadvisor::FakeCadvisor;
use hollow_core::kubelet_api::KubeletServer;
use hollow_core::node::HollowCluster;
use hollow_core::runtime::FakeRuntime;
use hollow_core::testenv::TestEnv;
use hollow_tests::{
    End, established, eventually, free_port, init_tracing, kubectl, kubectl_command, kubelet_client,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const WAIT: Duration = Duration::from_secs(180);

/// How long the test's kubelet API keeps an idle connection.
const IDLE: Duration = Duration::from_secs(2);

fn node_ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 3, 0, u8::try_from(index + 1).unwrap()))
}

async fn get_status(client: &kube::Client, path: &str) -> Result<String, u16> {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    client
        .request_text(request)
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) => status.code,
            other => panic!("unexpected error from {path}: {other}"),
        })
}

/// Starts `kubectl port-forward` from a free local port to `port` of `target`, once it
/// says it is forwarding; its stderr stays piped for what it reports later.
async fn port_forward(
    env: &TestEnv,
    target: &str,
    port: u16,
) -> anyhow::Result<(tokio::process::Child, u16)> {
    let local = free_port();
    let mapping = format!("{local}:{port}");
    let mut child = kubectl_command(
        env,
        &["port-forward", target, &mapping, "--address", "127.0.0.1"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()?;
    let mut said = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), said.next_line()).await??;
    anyhow::ensure!(
        ready
            .as_deref()
            .is_some_and(|l| l.contains("Forwarding from")),
        "kubectl port-forward did not start: {ready:?}"
    );
    // kubectl says "Handling connection for ..." on every connection; a closed pipe
    // would end it.
    tokio::spawn(async move { while let Ok(Some(_)) = said.next_line().await {} });
    Ok((child, local))
}

/// What a WebSocket session got: the bytes of each channel, and the protocol chosen.
#[derive(Debug, Default)]
struct WsSession {
    protocol: String,
    channels: std::collections::BTreeMap<u8, Vec<u8>>,
}

impl WsSession {
    fn text(&self, channel: u8) -> String {
        String::from_utf8_lossy(self.channels.get(&channel).map_or(&[][..], |b| b)).into_owned()
    }
}

/// Opens a WebSocket to `path` on the API server as an admin, offering `protocols`,
/// and reads it to its end (channel-framed unless `raw`).
async fn websocket(
    env: &TestEnv,
    path: &str,
    protocols: &str,
    raw: bool,
) -> anyhow::Result<WsSession> {
    use base64::Engine;
    use futures::StreamExt;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_tungstenite::tungstenite::Message;

    let pki = env.pki();
    let admin = pki.client_cert("websocket-admin", &["system:masters"])?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem().as_bytes()) {
        roots.add(cert?)?;
    }
    let chain =
        CertificateDer::pem_slice_iter(admin.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(admin.key_pem.as_bytes())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    let authority = env.server_url().trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&authority).await?;
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, _)| h);
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host.to_string())?, tcp)
        .await?;
    let request = http::Request::builder()
        .uri(format!("wss://{authority}{path}"))
        .header("Host", &authority)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .header("Sec-WebSocket-Protocol", protocols)
        .body(())?;
    let (mut socket, response) = tokio_tungstenite::client_async(request, tls).await?;
    let mut session = WsSession {
        protocol: response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        ..WsSession::default()
    };
    let base64 = session.protocol.contains("base64");
    let read = async {
        while let Some(message) = socket.next().await {
            let (channel, data) = match message? {
                Message::Binary(bytes) if raw => (1, bytes.to_vec()),
                Message::Text(text) if raw => (
                    1,
                    base64::engine::general_purpose::STANDARD.decode(text.as_str())?,
                ),
                Message::Binary(bytes) if !bytes.is_empty() => (bytes[0], bytes[1..].to_vec()),
                Message::Text(text) if base64 && !text.is_empty() => (
                    text.as_bytes()[0] - b'0',
                    base64::engine::general_purpose::STANDARD.decode(&text.as_str()[1..])?,
                ),
                Message::Close(_) => break,
                _ => continue,
            };
            session.channels.entry(channel).or_default().extend(data);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(60), read).await??;
    Ok(session)
}

/// exec and logs over WebSocket with the channel protocols, which the API server
/// passes through to the kubelet (all but v5, which it translates to SPDY).
async fn websocket_streaming_works_through_the_api_server(env: &TestEnv) -> anyhow::Result<()> {
    let exec = "/api/v1/namespaces/default/pods/shell/exec?container=main\
                &stdout=true&stderr=true&command=sh&command=-c&command=";
    let echo = format!("{exec}echo%20over%20websocket");
    let session = websocket(env, &echo, "v4.channel.k8s.io", false).await?;
    assert_eq!(session.protocol, "v4.channel.k8s.io");
    assert_eq!(session.text(1), "over websocket\n", "{session:?}");
    let status: serde_json::Value = serde_json::from_str(&session.text(3))?;
    assert_eq!(status["status"], "Success", "{session:?}");

    let failing = format!("{exec}echo%20oops%20%3E%262%3B%20exit%203");
    let session = websocket(env, &failing, "v4.base64.channel.k8s.io", false).await?;
    assert_eq!(session.protocol, "v4.base64.channel.k8s.io");
    assert_eq!(session.text(2), "oops\n", "{session:?}");
    let status: serde_json::Value = serde_json::from_str(&session.text(3))?;
    assert_eq!(status["reason"], "NonZeroExitCode", "{session:?}");
    assert_eq!(
        status["details"]["causes"][0]["message"], "3",
        "{session:?}"
    );

    // The oldest protocol carries only a failure's message.
    let session = websocket(env, &failing, "channel.k8s.io", false).await?;
    assert_eq!(session.protocol, "channel.k8s.io");
    assert!(session.text(3).contains("exit code"), "{session:?}");

    // Logs: the API server reads the kubelet's /containerLogs into the WebSocket.
    let (ok, expected) = kubectl(env, &["logs", "shell", "-c", "main"]).await;
    assert!(ok && !expected.is_empty(), "{expected}");
    let logs = "/api/v1/namespaces/default/pods/shell/log?container=main";
    for protocol in ["binary.k8s.io", "base64.binary.k8s.io"] {
        let session = websocket(env, logs, protocol, true).await?;
        assert_eq!(session.protocol, protocol);
        let got = session.text(1);

        assert!(
            !got.is_empty() && expected.starts_with(got.lines().next().unwrap_or("-")),
            "{protocol}: {got:?} vs {expected:?}"
        );
    }
    Ok(())
}

/// `kubectl exec`, `attach` and `port-forward`: the API server upgrades to SPDY and
/// talks to the node's kubelet API, which runs the fake runtime's shell and echo server.
async fn streaming_works_through_the_api_server(
    env: &TestEnv,
    pods: &Api<Pod>,
) -> anyhow::Result<()> {
    for name in ["shell", "quiet"] {
        eventually(&format!("pod {name} Running"), WAIT, || async {
            let pod = pods.get(name).await.map_err(|e| e.to_string())?;
            let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
            (phase == "Running").then_some(()).ok_or(phase)
        })
        .await;
    }
    let (ok, out) = kubectl(env, &["exec", "shell", "--", "echo", "hello", "world"]).await;
    assert!(ok && out == "hello world\n", "{out:?}");
    let (ok, out) = kubectl(env, &["exec", "shell", "--", "hostname"]).await;
    assert!(ok && out.trim() == "shell", "{out:?}");

    // Standard input reaches the process; its output comes back.
    let mut cat = kubectl_command(env, &["exec", "-i", "shell", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = cat.stdin.take().expect("piped stdin");
    stdin.write_all(b"typed line one\ntyped line two\n").await?;
    drop(stdin);
    let catted = tokio::time::timeout(Duration::from_secs(60), cat.wait_with_output()).await??;
    assert_eq!(
        String::from_utf8_lossy(&catted.stdout),
        "typed line one\ntyped line two\n"
    );
    assert!(catted.status.success());

    // Exit codes travel to kubectl's own exit code.
    let exited = kubectl_command(env, &["exec", "shell", "--", "sh", "-c", "exit 3"])
        .output()
        .await?;
    assert_eq!(exited.status.code(), Some(3), "{exited:?}");
    assert!(
        String::from_utf8_lossy(&exited.stderr).contains("command terminated with exit code 3")
    );

    // What the runtime cannot run, and a container that does not exist.
    let (ok, out) = kubectl(env, &["exec", "shell", "--", "no-such-tool"]).await;
    assert!(!ok && out.contains("executable file not found"), "{out}");
    let (ok, out) = kubectl(env, &["exec", "shell", "-c", "ghost", "--", "true"]).await;
    assert!(!ok && out.contains("ghost"), "{out}");
    // A runtime without streaming: a clear refusal.
    let (ok, out) = kubectl(env, &["exec", "quiet", "--", "true"]).await;
    assert!(
        !ok && out.contains("exec is not supported by this runtime"),
        "{out}"
    );

    // kubectl attach: the container's output as it is written (a line every 10 s).
    let mut attach = kubectl_command(env, &["attach", "shell"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut attached = BufReader::new(attach.stdout.take().expect("piped stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), attached.next_line()).await??;
    assert!(
        line.as_deref()
            .is_some_and(|l| l.contains("hollow: main running for")),
        "{line:?}"
    );
    attach.start_kill()?;

    // kubectl port-forward: a local port reaches the pod's declared port (an echo).
    let (mut forward, local) = port_forward(env, "pod/shell", 80).await?;
    for round in 0..2 {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", local)).await?;
        let message = format!("round {round} through the API server\n");
        socket.write_all(message.as_bytes()).await?;
        let mut back = vec![0; message.len()];
        tokio::time::timeout(Duration::from_secs(30), socket.read_exact(&mut back)).await??;
        assert_eq!(String::from_utf8_lossy(&back), message);
    }
    forward.start_kill()?;

    websocket_streaming_works_through_the_api_server(env).await?;

    // A port nothing declares is refused, as a closed port is.
    let (mut refused, local) = port_forward(env, "pod/shell", 81).await?;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", local)).await?;
    let _ = socket.write_all(b"anyone?").await;
    let mut back = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut back)).await;
    assert!(back.is_empty(), "a refused port answered {back:?}");
    refused.start_kill()?;
    let refused = refused.wait_with_output().await?;
    let complaint = String::from_utf8_lossy(&refused.stderr);
    assert!(complaint.contains("connection refused"), "{complaint}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_top_hpa_and_authentication_work_through_the_real_control_plane() -> anyhow::Result<()>
{
    init_tracing();
    let env = TestEnv::builder().metrics_server(true).start().await?;
    // Idle connections close after 2 s, so metrics-server and the API server reconnect
    // as they go.
    let api = KubeletServer::builder()
        .idle_timeout(IDLE)
        .start(env.client())
        .await?;
    let port = free_port();
    let cadvisors: Vec<FakeCadvisor> = (0..2).map(|_| FakeCadvisor::default()).collect();
    let for_nodes = cadvisors.clone();
    let cluster = HollowCluster::builder("api")
        .nodes(2, move |i, node| {
            // The second node's runtime has no streaming server: exec is refused there.
            let runtime = match i {
                0 => FakeRuntime::default(),
                _ => FakeRuntime::default().without_streaming(),
            };
            node.address(node_ip(i))
                .kubelet_port(port)
                .cadvisor(Arc::new(for_nodes[i].clone()))
                .runtime(Arc::new(runtime))
        })
        .start(env.client())
        .await?;
    for node in cluster.nodes() {
        api.serve(node.view()).await?;
    }
    let client = env.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": {
                    "labels": { "app": "web" },
                    "annotations": { "hollow.dev/logs": "listening on :8080\nready to serve" },
                },
                "spec": { "containers": [{
                    "name": "app",
                    "image": "nginx:1.27",
                    "resources": { "requests": { "cpu": "200m", "memory": "64Mi" } },
                }] },
            },
        },
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let crasher: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "crasher",
            "annotations": { "hollow.dev/exit-after": "2s", "hollow.dev/exit-code": "3" },
        },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
    }))?;
    pods.create(&PostParams::default(), &crasher).await?;
    // A pod on each node for exec, attach and port-forward.
    for (name, node) in [("shell", "api-0"), ("quiet", "api-1")] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "nodeName": node,
                "containers": [{
                    "name": "main",
                    "image": "busybox",
                    "ports": [{ "containerPort": 80 }],
                }],
            },
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
    }

    let running_web = eventually("two web pods Running", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?;
        let running: Vec<String> = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        (running.len() == 2)
            .then_some(running.clone())
            .ok_or(format!("{running:?}"))
    })
    .await;
    let web = running_web[0].as_str();

    // kubectl logs, through the API server to the node's kubelet API.
    let (ok, out) = kubectl(&env, &["logs", web]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("hollow: container app of pod default/"),
        "{out}"
    );
    assert!(out.contains("listening on :8080\nready to serve"), "{out}");
    let (ok, out) = kubectl(&env, &["logs", web, "--tail=1"]).await;
    assert!(ok && out.trim() == "ready to serve", "{out}");
    let (ok, out) = kubectl(&env, &["logs", web, "--timestamps", "--tail=1"]).await;
    assert!(ok && out.trim_end().ends_with("Z ready to serve"), "{out}");
    let (ok, out) = kubectl(&env, &["logs", web, "-c", "nope"]).await;
    assert!(!ok && out.contains("container nope is not valid"), "{out}");

    // --previous shows the crashed instance; following shows lines as they come.
    eventually("crasher restarted", WAIT, || async {
        let pod = pods.get("crasher").await.map_err(|e| e.to_string())?;
        let restarts = pod
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.first().map(|c| c.restart_count))
            .unwrap_or(0);
        (restarts >= 1)
            .then_some(())
            .ok_or(format!("{restarts} restarts"))
    })
    .await;
    let (ok, out) = kubectl(&env, &["logs", "crasher", "--previous"]).await;
    assert!(
        ok && out.contains("hollow: c exited with code 3 (Error)"),
        "{out}"
    );
    let mut follow = kubectl_command(&env, &["logs", "-f", web])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(13)).await;
    follow.start_kill()?;
    let followed = follow.wait_with_output().await?;
    let followed = String::from_utf8_lossy(&followed.stdout);
    assert!(
        followed.contains("hollow: app running for 10s"),
        "{followed}"
    );

    streaming_works_through_the_api_server(&env, &pods).await?;

    // kubectl top: metrics-server scrapes the nodes' resource metrics.
    eventually(
        "kubectl top pods shows the web pods at half their request",
        WAIT,
        || async {
            let (ok, out) = kubectl(&env, &["top", "pods", "-l", "app=web", "--no-headers"]).await;
            if !ok {
                return Err(out);
            }
            let cpus: Vec<u64> = out
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter_map(|cpu| cpu.trim_end_matches('m').parse().ok())
                .collect();
            (cpus.len() == 2 && cpus.iter().all(|m| (80..=120).contains(m)))
                .then_some(())
                .ok_or(out)
        },
    )
    .await;
    eventually("kubectl top nodes shows both nodes", WAIT, || async {
        let (ok, out) = kubectl(&env, &["top", "nodes", "--no-headers"]).await;
        (ok && out.contains("api-0") && out.contains("api-1"))
            .then_some(())
            .ok_or(out)
    })
    .await;

    // An HPA scales the Deployment once the fake usage crosses its target.
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [{ "type": "Resource", "resource": {
                "name": "cpu",
                "target": { "type": "Utilization", "averageUtilization": 80 },
            } }],
        },
    }))?;
    Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &hpa)
        .await?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        deployments.get("web").await?.spec.replicas,
        Some(2),
        "no scaling at 50% of the request"
    );
    for cadvisor in &cadvisors {
        cadvisor.set_cpu_utilisation(2.0);
    }
    eventually("the HPA scales web to 4", WAIT, || async {
        let replicas = deployments
            .get("web")
            .await
            .map_err(|e| e.to_string())?
            .spec
            .replicas;
        (replicas == Some(4))
            .then_some(())
            .ok_or(format!("{replicas:?}"))
    })
    .await;

    // Direct requests: anonymous refused, an unauthorised user forbidden, an
    // administrator served.
    let (ip, port) = (node_ip(0), port);
    let base = format!("https://{ip}:{port}");
    let anonymous = kubelet_client(&base, Default::default());
    assert_eq!(get_status(&anonymous, "/pods").await, Err(401));
    assert_eq!(get_status(&anonymous, "/healthz").await, Err(401));
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let nobody: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "nobody" } }))?;
    accounts.create(&PostParams::default(), &nobody).await?;
    let request = http::Request::post("/api/v1/namespaces/default/serviceaccounts/nobody/token")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {} }))?)?;
    let token: TokenRequest = client.request(request).await?;
    let token = token.status.unwrap().token.expect("a token");
    let with_token = kubelet_client(
        &base,
        kube::config::AuthInfo {
            token: Some(token.clone().into()),
            ..Default::default()
        },
    );
    assert_eq!(get_status(&with_token, "/pods").await, Err(403));
    let admin = env.kubeconfig().auth_infos[0].auth_info.clone().unwrap();
    let as_admin = kubelet_client(&base, admin);
    let listed = get_status(&as_admin, "/pods").await.unwrap();
    let list: serde_json::Value = serde_json::from_str(&listed)?;
    assert_eq!(list["kind"], "PodList");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["spec"]["nodeName"] == "api-0"),
        "only the node's own pods"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&get_status(&as_admin, "/stats/summary").await.unwrap())?;
    assert_eq!(summary["node"]["nodeName"], "api-0");
    assert!(
        summary["node"]["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );

    // The connection a direct client keeps is closed once idle; the next request opens
    // another.
    assert!(get_status(&as_admin, "/healthz").await.is_ok());
    assert!(
        established(End::Local, port) >= 1,
        "the client's connection is open"
    );
    eventually("idle kubelet API connections closed", WAIT, || async {
        let open = established(End::Local, port);
        (open == 0).then_some(()).ok_or(format!("{open} open"))
    })
    .await;
    assert!(get_status(&as_admin, "/healthz").await.is_ok());

    cluster.shutdown().await;
    drop(api);
    Ok(())
}
