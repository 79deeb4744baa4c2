//! The manifests in `deploy/`, against a real local control plane.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use hollow_core::testenv::TestEnv;
use hollow_tests::{
    eventually, get, init_tracing, kubectl_ok, kubelet_client, node_ready, served_address,
};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(120);

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[tokio::test]
async fn the_manifests_apply_and_the_statefulset_command_registers_its_nodes() -> anyhow::Result<()>
{
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let deploy = deploy_dir();
    let path = |file: &str| deploy.join(file).display().to_string();

    // Every manifest passes a server-side dry run (the namespace must exist for it).
    kubectl_ok(&env, &["apply", "-f", &path("namespace.yaml")]).await;
    let dry_run = kubectl_ok(
        &env,
        &[
            "apply",
            "--dry-run=server",
            "-k",
            &deploy.display().to_string(),
        ],
    )
    .await;
    for object in [
        "serviceaccount/hollow-node",
        "clusterrole.rbac.authorization.k8s.io/hollow-node",
        "service/hollow-node",
        "statefulset.apps/hollow-node",
    ] {
        assert!(dry_run.contains(object), "{object} missing from: {dry_run}");
    }

    // The StatefulSet's command, run locally with its ServiceAccount's token, registers
    // its nodes: the ClusterRole is enough.
    kubectl_ok(&env, &["apply", "-f", &path("rbac.yaml")]).await;
    let token = kubectl_ok(&env, &["-n", "hollow", "create", "token", "hollow-node"]).await;
    let mut kubeconfig: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.kubeconfig_path())?)?;
    kubeconfig["users"][0]["user"] = serde_json::json!({ "token": token.trim() });
    let dir = tempfile::tempdir()?;
    let token_kubeconfig = dir.path().join("sa.kubeconfig");
    std::fs::write(&token_kubeconfig, serde_json::to_vec(&kubeconfig)?)?;

    let rendered: serde_json::Value = serde_json::from_str(
        &kubectl_ok(
            &env,
            &[
                "create",
                "--dry-run=client",
                "-o",
                "json",
                "-f",
                &path("statefulset.yaml"),
            ],
        )
        .await,
    )?;
    // A container's args as the pod would run them, but listening on loopback only.
    let args_of = |container: usize| -> Vec<String> {
        rendered["spec"]["template"]["spec"]["containers"][container]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|arg| {
                let arg = arg
                    .as_str()
                    .unwrap()
                    .replace("$(POD_NAME)", "hollow-node-0")
                    .replace("$(POD_IP)", "127.0.0.1");
                match arg.split_once('=') {
                    Some((flag, _)) if flag.ends_with("-bind-address") => {
                        format!("{flag}=127.0.0.1:0")
                    }
                    _ => arg,
                }
            })
            .collect()
    };
    let args = args_of(0);
    let log = std::fs::File::create(dir.path().join("kubelet.log"))?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hollow-kubelet"))
        .args(&args)
        .arg(format!("--kubeconfig={}", token_kubeconfig.display()))
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;

    let nodes: Api<Node> = Api::all(env.client());
    let selector = ListParams::default().labels("hollow-node=true");
    eventually("the StatefulSet command's 50 nodes Ready", WAIT, || async {
        let list = nodes.list(&selector).await.map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                n.metadata
                    .name
                    .as_deref()
                    .is_some_and(|name| name.starts_with("hollow-node-0-"))
            })
            .filter(|n| node_ready(n) == Some("True"))
            .count();
        (ready == 50).then_some(()).ok_or(format!("{ready} Ready"))
    })
    .await;

    // The kubelet API of a node, at the pod IP and its own port, as the API server
    // reaches it: the process checks the caller with the ServiceAccount's review rights.
    let node = nodes.get("hollow-node-0-7").await?;
    let status = node.status.unwrap_or_default();
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .unwrap();
    let ip = status
        .addresses
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .unwrap()
        .address;
    assert_eq!(ip, "127.0.0.1");
    let admin = env.kubeconfig().auth_infos[0].auth_info.clone().unwrap();
    let kubelet = kubelet_client(&format!("https://{ip}:{port}"), admin);
    // Retried: on a loaded machine a first connection can be reset while the process
    // is busy with its 50 nodes' start.
    let healthz = eventually(
        "the kubelet API's /healthz",
        Duration::from_secs(60),
        || async {
            kubelet
                .request_text(http::Request::get("/healthz").body(Vec::new()).unwrap())
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    assert_eq!(healthz, "ok");

    // The proxy container's command, with the same token: it watches what it needs and
    // reports the nodes eligible.
    let proxy_log_path = dir.path().join("proxy.log");
    let proxy_log = std::fs::File::create(&proxy_log_path)?;
    // Built next to hollow-kubelet by `cargo test --workspace` (which scripts/test runs).
    let proxy_binary =
        env!("CARGO_BIN_EXE_hollow-kubelet").replace("hollow-kubelet", "hollow-proxy");
    assert!(
        std::path::Path::new(&proxy_binary).exists(),
        "{proxy_binary} is missing: run `cargo build -p hollow-proxy` (scripts/test builds it)"
    );
    let mut proxy = Command::new(&proxy_binary)
        .args(args_of(1))
        .arg(format!("--kubeconfig={}", token_kubeconfig.display()))
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(proxy_log.try_clone()?)
        .stderr(proxy_log)
        .kill_on_drop(true)
        .spawn()?;
    let health = served_address(&proxy_log_path, "/healthz", WAIT).await;
    eventually("the proxy healthy for all 50 nodes", WAIT, || async {
        let (code, body) = get(&health, "/healthz").await?;
        let log = std::fs::read_to_string(&proxy_log_path).unwrap_or_default();
        (code == 200)
            .then_some(())
            .ok_or(format!("{code} {body}: {log}"))
    })
    .await;
    let proxy_log = std::fs::read_to_string(&proxy_log_path)?;
    assert!(!proxy_log.contains("forbidden"), "{proxy_log}");
    kill(
        Pid::from_raw(i32::try_from(proxy.id().unwrap())?),
        Signal::SIGTERM,
    )?;
    assert!(
        tokio::time::timeout(Duration::from_secs(30), proxy.wait())
            .await??
            .success()
    );

    kill(
        Pid::from_raw(i32::try_from(child.id().unwrap())?),
        Signal::SIGTERM,
    )?;
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await??;
    let log = std::fs::read_to_string(dir.path().join("kubelet.log"))?;
    assert!(status.success(), "{log}");
    assert!(
        nodes.list(&selector).await?.items.is_empty(),
        "--cleanup-on-exit works with the ServiceAccount's rights: {log}"
    );
    Ok(())
}
