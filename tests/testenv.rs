//! `hollow_core::testenv` against the real upstream binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use hollow_core::testenv::{Component, Error, KUBERNETES_VERSION, TestEnv, default_bin_dir};
use hollow_tests::{eventually, init_tracing, process_alive};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn node(name: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": { "hollow.test/owner": "testenv" } },
    }))
    .unwrap()
}

#[tokio::test]
async fn reports_its_binaries_version_and_serves_nodes() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder()
        .scheduler(false)
        .controller_manager(false)
        .start()
        .await?;
    let version = env.client().apiserver_version().await?;
    // The pinned version, or the one whose `control-plane/install --kubernetes` bin
    // directory HOLLOW_K8S_BIN names (scripts/test-matrix).
    let expected = env
        .bin_dir()
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix("kubernetes-"))
        .unwrap_or(KUBERNETES_VERSION);
    assert_eq!(version.git_version, expected);

    let nodes: Api<Node> = Api::all(env.client());
    nodes.create(&PostParams::default(), &node("n1")).await?;
    let fetched = nodes.get("n1").await?;
    assert_eq!(
        fetched.metadata.labels.unwrap()["hollow.test/owner"],
        "testenv"
    );
    nodes.delete("n1", &DeleteParams::default()).await?;
    assert!(nodes.get_opt("n1").await?.is_none());

    // The kubeconfig on disk works for kubectl.
    let output = std::process::Command::new(env.binary("kubectl"))
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path())
        .args(["version", "-o", "json"])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "kubectl failed: {stdout}");
    assert!(stdout.contains(expected), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn controller_manager_and_scheduler_run() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let deployments: Api<Deployment> = Api::namespaced(env.client(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
            },
        },
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;

    let replica_sets: Api<ReplicaSet> = Api::namespaced(env.client(), "default");
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let events: Api<Event> = Api::namespaced(env.client(), "default");
    eventually("a ReplicaSet for the Deployment", WAIT, || async {
        let list = replica_sets
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?;
        (list.items.len() == 1)
            .then_some(())
            .ok_or(format!("{} ReplicaSets", list.items.len()))
    })
    .await;
    eventually("two Pending pods", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?;
        let pending = list
            .items
            .iter()
            .filter(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
            .count();
        (pending == 2)
            .then_some(())
            .ok_or(format!("{pending} Pending"))
    })
    .await;
    // With no nodes the scheduler says so.
    eventually("a FailedScheduling event", WAIT, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .find(|event| event.reason.as_deref() == Some("FailedScheduling"))
            .map(|_| ())
            .ok_or(format!(
                "{} events, none FailedScheduling",
                list.items.len()
            ))
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn node_identities_are_restricted() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder()
        .scheduler(false)
        .controller_manager(false)
        .start()
        .await?;
    let admin_nodes: Api<Node> = Api::all(env.client());
    admin_nodes
        .create(&PostParams::default(), &node("b"))
        .await?;

    let as_a: Api<Node> = Api::all(env.client_for("system:node:a", &["system:nodes"]).await?);
    as_a.create(&PostParams::default(), &node("a")).await?;
    let label = Patch::Merge(json!({ "metadata": { "labels": { "touched": "yes" } } }));
    as_a.patch_status(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({
            "status": { "capacity": { "pods": "10" } }
        })),
    )
    .await?;

    let denied = as_a
        .patch("b", &PatchParams::default(), &label)
        .await
        .expect_err("node a may not modify node b");
    assert_forbidden(&denied);
    let denied = as_a
        .create(&PostParams::default(), &node("c"))
        .await
        .expect_err("node a may not create node c");
    assert_forbidden(&denied);
    let untouched = admin_nodes.get("b").await?;
    assert!(
        !untouched
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("touched")
    );
    Ok(())
}

fn assert_forbidden(error: &kube::Error) {
    match error {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn two_environments_run_side_by_side_and_leave_nothing() -> anyhow::Result<()> {
    init_tracing();
    let (first, second) = tokio::try_join!(TestEnv::builder().start(), TestEnv::builder().start())?;
    assert_ne!(first.server_url(), second.server_url());
    let first_nodes: Api<Node> = Api::all(first.client());
    let second_nodes: Api<Node> = Api::all(second.client());
    first_nodes
        .create(&PostParams::default(), &node("only-in-first"))
        .await?;
    assert!(second_nodes.get_opt("only-in-first").await?.is_none());

    let pids: Vec<u32> = [&first, &second]
        .iter()
        .flat_map(|env| Component::ALL.map(|component| env.pid(component)))
        .map(|pid| pid.expect("every component runs"))
        .collect();
    assert_eq!(pids.len(), 8);
    assert!(pids.iter().all(|&pid| process_alive(pid)));
    let dir = first.dir().to_path_buf();

    drop(first);
    second.stop();
    for pid in pids {
        assert!(
            !process_alive(pid),
            "process {pid} outlived its environment"
        );
    }
    assert!(!dir.exists(), "the temporary directory was left behind");
    Ok(())
}

#[tokio::test]
async fn components_restart_with_their_data() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().scheduler(false).start().await?;
    let maps: Api<ConfigMap> = Api::namespaced(env.client(), "default");
    let map: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "kept" }, "data": { "k": "v" }
    }))?;
    maps.create(&PostParams::default(), &map).await?;

    let old_pid = env.pid(Component::ApiServer).unwrap();
    env.kill_component(Component::ApiServer)?;
    assert!(env.pid(Component::ApiServer).is_none());
    assert!(maps.get("kept").await.is_err(), "the API server is down");
    env.start_component(Component::ApiServer).await?;
    assert_ne!(env.pid(Component::ApiServer), Some(old_pid));

    env.restart_component(Component::Etcd).await?;
    let fetched = eventually("the ConfigMap after restarts", WAIT, || async {
        maps.get("kept").await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(fetched.data.unwrap()["k"], "v");
    assert!(matches!(
        env.stop_component(Component::Scheduler),
        Err(Error::NotEnabled(Component::Scheduler))
    ));
    Ok(())
}

#[tokio::test]
async fn missing_binaries_name_the_install_command() {
    let missing = tempfile::tempdir().unwrap();
    let error = TestEnv::builder()
        .bin_dir(missing.path())
        .start()
        .await
        .expect_err("no binaries there");
    assert!(matches!(error, Error::BinariesNotFound { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("control-plane/install"), "{message}");
    assert!(message.contains("kube-apiserver"), "{message}");
}

/// A bin directory with the real binaries, but kube-apiserver replaced by `script`.
fn bin_dir_with_fake_apiserver(script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let real = default_bin_dir();
    for component in Component::ALL {
        let name = component.binary_name();
        std::os::unix::fs::symlink(real.join(name), dir.path().join(name)).unwrap();
    }
    let fake = dir.path().join("kube-apiserver");
    std::fs::remove_file(&fake).unwrap();
    write_script(&fake, script);
    dir
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn a_component_killed_during_start_up_is_reported_with_its_log() {
    init_tracing();
    let bin = bin_dir_with_fake_apiserver("echo 'loading the fake apiserver'; kill -9 $$");
    let error = TestEnv::builder()
        .bin_dir(bin.path())
        .start()
        .await
        .expect_err("the API server dies");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            Error::ComponentExited {
                component: Component::ApiServer,
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains("loading the fake apiserver"), "{message}");
    assert!(message.contains("signal: 9"), "{message}");
}

#[tokio::test]
async fn a_component_that_never_gets_ready_times_out_with_its_log() {
    init_tracing();
    let bin = bin_dir_with_fake_apiserver("echo 'waiting for nothing'; exec sleep 600");
    let started = std::time::Instant::now();
    let error = TestEnv::builder()
        .bin_dir(bin.path())
        .start_timeout(Duration::from_secs(5))
        .start()
        .await
        .expect_err("the API server never answers");
    assert!(started.elapsed() < Duration::from_secs(60));
    let message = error.to_string();
    assert!(
        matches!(
            error,
            Error::ComponentNotReady {
                component: Component::ApiServer,
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains("waiting for nothing"), "{message}");
}

#[test]
fn the_pinned_version_matches_the_control_plane_module() {
    let go_mod = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../control-plane/kubernetes/go.mod"),
    )
    .unwrap();
    let required = format!("k8s.io/kubernetes {KUBERNETES_VERSION}");
    assert!(
        go_mod.contains(&required),
        "go.mod does not require {required}"
    );
    let staging = KUBERNETES_VERSION.replacen("v1.", "v0.", 1);
    assert!(go_mod.contains(&format!("k8s.io/api => k8s.io/api {staging}")));
}

/// The client sockets of this process connected to `port` on loopback (other tests of
/// this binary talk to control planes of their own, on other ports).
fn connections_to(port: u16) -> usize {
    hollow_tests::established(hollow_tests::End::Remote, port)
}

#[tokio::test]
async fn a_pooled_client_opens_http2_connections_as_requests_need_and_closes_idle_ones()
-> anyhow::Result<()> {
    use hollow_core::connect::{ConnectionPool, pooled_client};
    use k8s_openapi::api::core::v1::Namespace;
    init_tracing();
    let env = TestEnv::builder()
        .scheduler(false)
        .controller_manager(false)
        .start()
        .await?;
    let server = env.kubeconfig().clusters[0].cluster.as_ref().unwrap();
    let port = server
        .server
        .as_deref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    let port: u16 = port.trim_end_matches('/').parse()?;
    let config =
        kube::Config::from_custom_kubeconfig(env.kubeconfig().clone(), &Default::default()).await?;
    let burst = |client: kube::Client, requests: usize| async move {
        let namespaces: Api<Namespace> = Api::all(client);
        let list = ListParams::default();
        futures::future::try_join_all((0..requests).map(|_| namespaces.list(&list))).await
    };
    let before = connections_to(port);
    let all_closed = |what: &'static str| {
        eventually(what, WAIT, move || async move {
            let open = connections_to(port);
            (open <= before)
                .then_some(())
                .ok_or(format!("{open} open, {before} before"))
        })
    };

    // HTTP/1.1: requests in flight together each take a connection of their own.
    let pool = ConnectionPool {
        http2: false,
        max_idle: 64,
        idle_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let client = pooled_client(config.clone(), pool)?.build();
    burst(client.clone(), 24).await?;
    let opened = connections_to(port) - before;
    assert!(opened >= 4, "the burst left {opened} connections open");
    all_closed("the idle connections closed").await;
    // Closed connections are reopened when needed.
    Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    drop(client);
    all_closed("a dropped client's connections closed").await;

    // HTTP/2, the default: requests fill a connection, up to REQUESTS_PER_CONNECTION in
    // flight, before the next takes any; connections left idle close.
    let pool = ConnectionPool {
        connections: 3,
        idle_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let full = ConnectionPool::REQUESTS_PER_CONNECTION;
    let client = pooled_client(config.clone(), pool)?.build();
    for (requests, connections) in [(full / 2, 1), (full * 4, 3), (full / 2, 1)] {
        burst(client.clone(), requests).await?;
        // Connections a first burst raced to open beside those kept are dropped.
        eventually("the HTTP/2 connections a burst needed", WAIT, || async {
            let opened = connections_to(port).saturating_sub(before);
            (opened == connections).then_some(()).ok_or(format!(
                "{opened} connections open after {requests} requests, not {connections}"
            ))
        })
        .await;
        all_closed("idle HTTP/2 connections closed").await;
    }
    drop(client);
    Ok(())
}
