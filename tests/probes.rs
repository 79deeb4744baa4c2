//! Probes and lifecycle hooks that consult the fake runtime's userland (#24): exec
//! probes run in the container's files, HTTP probes of well-known web servers find
//! their page there, and `kubectl exec` changes what they see; liveness failures
//! restart containers and readiness gates a StatefulSet's rolling update, judged by
//! the real controllers; postStart and preStop exec hooks run there too.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hollow_core::kubelet_api::KubeletServer;
use hollow_core::node::HollowCluster;
use hollow_core::testenv::TestEnv;
use hollow_tests::{eventually, free_port, init_tracing, kubectl, pod, pod_condition, wait_pod};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(150);

fn node_ip(prefix: u8, index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, prefix, 10 + index as u8))
}

/// `nodes` hollow nodes on 127.0.`prefix`.x, their kubelet API served (for
/// `kubectl exec`).
async fn served_cluster(
    env: &TestEnv,
    name: &str,
    nodes: usize,
    prefix: u8,
) -> anyhow::Result<(HollowCluster, KubeletServer)> {
    let api = KubeletServer::builder().start(env.client()).await?;
    let port = free_port();
    let cluster = HollowCluster::builder(name)
        .nodes(nodes, move |i, node| {
            node.address(node_ip(prefix, i)).kubelet_port(port)
        })
        .start(env.client())
        .await?;
    for node in cluster.nodes() {
        api.serve(node.view()).await?;
    }
    Ok((cluster, api))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

fn ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready") == Some("True")
}

/// A busybox pod running `script` with `probes` on its one container.
fn busybox(name: &str, script: &str, probes: serde_json::Value) -> Pod {
    let mut container = json!({
        "name": "busybox",
        "image": "registry.k8s.io/e2e-test-images/busybox:1.37.0-1",
        "command": ["/bin/sh", "-c", script],
    });
    if let (Some(container), Some(probes)) = (container.as_object_mut(), probes.as_object()) {
        container.extend(probes.clone());
    }
    pod(name, json!({ "containers": [container] }))
}

fn exec_probe(command: &[&str], extra: serde_json::Value) -> serde_json::Value {
    let mut probe = json!({ "exec": { "command": command } });
    if let (Some(probe), Some(extra)) = (probe.as_object_mut(), extra.as_object()) {
        probe.extend(extra.clone());
    }
    probe
}

/// `RunHostCmd` of test/e2e/framework/pod/output: `kubectl exec <pod> -- /bin/sh -x -c <cmd>`.
async fn host_cmd(env: &TestEnv, pod: &str, cmd: &str) -> String {
    let (ok, out) = kubectl(env, &["exec", pod, "--", "/bin/sh", "-x", "-c", cmd]).await;
    assert!(ok, "kubectl exec {pod} -- {cmd}: {out}");
    out
}

async fn events_of(events: &Api<Event>, pod: &str) -> Vec<(String, String)> {
    let selector = format!("involvedObject.name={pod}");
    events
        .list(&ListParams::default().fields(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_follow_the_containers_files() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let (cluster, _api) = served_cluster(&env, "probes", 1, 42).await?;
    let client = env.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");

    // test/e2e/common/node/container_probe.go: "should be restarted with a exec
    // "cat /tmp/health" liveness probe".
    let conformance = busybox(
        "liveness-exec",
        "echo ok >/tmp/health; sleep 10; rm -rf /tmp/health; sleep 600",
        json!({ "livenessProbe": exec_probe(&["cat", "/tmp/health"], json!({
            "initialDelaySeconds": 15, "timeoutSeconds": 5, "failureThreshold": 1,
        })) }),
    );
    // The same probe, broken by hand: `kubectl exec ... rm /tmp/health`.
    let by_hand = busybox(
        "liveness-by-hand",
        "echo ok >/tmp/health; sleep 600",
        json!({ "livenessProbe": exec_probe(&["cat", "/tmp/health"], json!({
            "periodSeconds": 1, "failureThreshold": 1,
        })) }),
    );
    // Readiness that waits for a file only `kubectl exec` makes.
    let readiness = busybox(
        "readiness-by-hand",
        "sleep 3600",
        json!({ "readinessProbe": exec_probe(&["test", "-f", "/tmp/ready"], json!({
            "periodSeconds": 1,
        })) }),
    );
    for pod in [&conformance, &by_hand, &readiness] {
        pods.create(&PostParams::default(), pod).await?;
    }

    wait_pod(
        &pods,
        "liveness-by-hand",
        "liveness-by-hand Ready",
        WAIT,
        ready,
    )
    .await;
    let running = wait_pod(
        &pods,
        "readiness-by-hand",
        "readiness-by-hand Running",
        WAIT,
        |p| hollow_tests::pod_phase(p) == "Running",
    )
    .await;
    // A readiness probe fails until it succeeds: Running, not Ready.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unready = pods.get("readiness-by-hand").await?;
    assert!(!ready(&unready), "{:?}", unready.status);
    assert_eq!(restarts(&running), 0);
    // A failing probe is asked every period: each failure an `Unhealthy` Event,
    // counted on the first as client-go's correlator counts a repeat.
    eventually("repeated readiness failures", WAIT, || async {
        let selector = "involvedObject.name=readiness-by-hand,reason=Unhealthy";
        let list = events
            .list(&ListParams::default().fields(selector))
            .await
            .map_err(|e| e.to_string())?;
        let counts: Vec<(Option<String>, Option<i32>)> = list
            .items
            .into_iter()
            .map(|e| (e.message, e.count))
            .collect();
        counts
            .iter()
            .any(|(message, count)| {
                message.as_deref() == Some("Readiness probe failed: ") && count.unwrap_or(0) >= 2
            })
            .then_some(())
            .ok_or(format!("{counts:?}"))
    })
    .await;

    host_cmd(&env, "readiness-by-hand", "touch /tmp/ready").await;
    wait_pod(
        &pods,
        "readiness-by-hand",
        "readiness-by-hand Ready",
        WAIT,
        ready,
    )
    .await;

    host_cmd(&env, "liveness-by-hand", "rm /tmp/health").await;
    let restarted = wait_pod(
        &pods,
        "liveness-by-hand",
        "liveness-by-hand restarted",
        WAIT,
        |p| restarts(p) >= 1,
    )
    .await;
    let last = restarted
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    let killed = last
        .and_then(|c| c.first()?.last_state.as_ref()?.terminated.clone())
        .unwrap_or_else(|| panic!("the killed container is the last state: {last:?}"));
    // `sh` as the container's first process ignores SIGTERM: the runtime kills it when
    // the grace period ends, as with a real runtime.
    assert_eq!(
        (killed.exit_code, killed.reason.as_deref()),
        (137, Some("Error")),
        "{killed:?}"
    );
    // The new container has its file again: healthy, Ready, and not restarted again.
    wait_pod(
        &pods,
        "liveness-by-hand",
        "liveness-by-hand Ready again",
        WAIT,
        ready,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(restarts(&pods.get("liveness-by-hand").await?), 1);

    // The script removes its file 10 s in; the first probe at 15 s fails: restarted.
    let conformance = wait_pod(
        &pods,
        "liveness-exec",
        "liveness-exec restarted",
        WAIT,
        |p| restarts(p) >= 1,
    )
    .await;
    let started = conformance
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0);
    assert!(started.is_some());
    let recorded = eventually("the kubelet's probe Events", WAIT, || async {
        let recorded = events_of(&events, "liveness-exec").await;
        let unhealthy = recorded.iter().any(|(reason, message)| {
            reason == "Unhealthy" && message.starts_with("Liveness probe failed: ")
        });
        let killing = recorded.iter().any(|(reason, message)| {
            reason == "Killing"
                && message == "Container busybox failed liveness probe, will be restarted"
        });
        (unhealthy && killing)
            .then_some(recorded.clone())
            .ok_or(format!("{recorded:?}"))
    })
    .await;
    assert!(!recorded.is_empty());

    cluster.shutdown().await;
    env.stop();
    Ok(())
}

/// test/e2e/apps/statefulset.go's `rollbackTest`, its first half: a rolling update
/// waits while a pod's readiness probe is broken through `kubectl exec`, and completes
/// once it is restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_waits_for_a_broken_readiness_probe() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let (cluster, _api) = served_cluster(&env, "rollout", 2, 43).await?;
    let client = env.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let old_image = "registry.k8s.io/e2e-test-images/agnhost:2.55";
    let new_image = "registry.k8s.io/e2e-test-images/agnhost:2.56";
    // test/e2e/framework/statefulset/fixtures.go's StatefulSet with setHTTPProbe's probe.
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "ss2" },
        "spec": {
            "replicas": 3,
            "serviceName": "test",
            "selector": { "matchLabels": { "app": "ss2" } },
            "template": {
                "metadata": { "labels": { "app": "ss2" } },
                "spec": { "containers": [{
                    "name": "webserver",
                    "image": old_image,
                    "args": ["test-webserver"],
                    "readinessProbe": {
                        "httpGet": { "path": "/localhost.crt", "port": 80 },
                        "periodSeconds": 1, "successThreshold": 1, "failureThreshold": 1,
                    },
                }] },
            },
        },
    }))?;
    sets.create(&PostParams::default(), &set).await?;
    let all_ready = || async {
        let list = pods
            .list(&ListParams::default().labels("app=ss2"))
            .await
            .map_err(|e| e.to_string())?;
        let ready = list.items.iter().filter(|p| ready(p)).count();
        (ready == 3)
            .then_some(list.items)
            .ok_or(format!("{ready} of 3 ready"))
    };
    eventually("three ready pods", WAIT, all_ready).await;

    // breakPodHTTPProbe on the second pod.
    host_cmd(&env, "ss2-1", "mv -v /localhost.crt /tmp/ || true").await;
    wait_pod(&pods, "ss2-1", "ss2-1 not ready", WAIT, |p| !ready(p)).await;
    let update = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "webserver", "image": new_image }
    ] } } } });
    sets.patch("ss2", &PatchParams::default(), &Patch::Strategic(&update))
        .await?;
    let updated = eventually("a new revision", WAIT, || async {
        let set = sets.get("ss2").await.map_err(|e| e.to_string())?;
        let status = set.status.clone().unwrap_or_default();
        (status.update_revision.is_some() && status.current_revision != status.update_revision)
            .then_some(status.clone())
            .ok_or(format!("{status:?}"))
    })
    .await;
    let update_revision = updated.update_revision.clone().unwrap_or_default();
    // While ss2-1 is not ready, the controller does not take ss2-1 or ss2-0 down.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for name in ["ss2-0", "ss2-1"] {
        let pod = pods.get(name).await?;
        let revision = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("controller-revision-hash"))
            .cloned();
        assert_ne!(
            revision.as_deref(),
            Some(update_revision.as_str()),
            "{name} updated early"
        );
    }

    // restorePodHTTPProbe; the update then rolls through in reverse ordinal order.
    host_cmd(&env, "ss2-1", "mv -v /tmp/localhost.crt / || true").await;
    eventually("the rolling update completes", WAIT, || async {
        let set = sets.get("ss2").await.map_err(|e| e.to_string())?;
        let status = set.status.clone().unwrap_or_default();
        let list = pods
            .list(&ListParams::default().labels("app=ss2"))
            .await
            .map_err(|e| e.to_string())?;
        let done = list.items.len() == 3
            && list.items.iter().all(|p| {
                ready(p)
                    && p.spec.as_ref().map(|s| s.containers[0].image.as_deref())
                        == Some(Some(new_image))
            })
            && status.current_revision.as_deref() == Some(update_revision.as_str());
        done.then_some(()).ok_or(format!("{status:?}"))
    })
    .await;

    cluster.shutdown().await;
    env.stop();
    Ok(())
}

fn with_hooks(name: &str, lifecycle: serde_json::Value, extra: serde_json::Value) -> Pod {
    let mut container = json!({
        "name": "busybox",
        "image": "registry.k8s.io/e2e-test-images/busybox:1.37.0-1",
        "command": ["sleep", "3600"],
        "lifecycle": lifecycle,
    });
    if let (Some(container), Some(extra)) = (container.as_object_mut(), extra.as_object()) {
        container.extend(extra.clone());
    }
    pod(
        name,
        json!({ "containers": [container], "terminationGracePeriodSeconds": 30 }),
    )
}

fn exec_hook(script: &str) -> serde_json::Value {
    json!({ "exec": { "command": ["sh", "-c", script] } })
}

/// postStart and preStop exec hooks, as pkg/kubelet/kuberuntime runs them: a failed
/// postStart kills the container, a postStart's files are there for its probes, a
/// preStop's `sleep` holds the deletion, a failed preStop is an Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_hooks_run_in_the_userland() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().start().await?;
    let cluster = HollowCluster::builder("hooks")
        .nodes(1, |_, node| node)
        .start(env.client())
        .await?;
    let client = env.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let created = [
        with_hooks(
            "post-start-fails",
            json!({ "postStart": exec_hook("exit 1") }),
            json!({}),
        ),
        with_hooks(
            "post-start-ready",
            json!({ "postStart": exec_hook("echo ok > /tmp/started") }),
            json!({ "readinessProbe": exec_probe(&["cat", "/tmp/started"], json!({ "periodSeconds": 1 })) }),
        ),
        with_hooks(
            "pre-stop-sleeps",
            json!({ "preStop": exec_hook("sleep 4") }),
            json!({}),
        ),
        with_hooks(
            "pre-stop-fails",
            json!({ "preStop": exec_hook("exit 2") }),
            json!({}),
        ),
    ];
    for pod in &created {
        pods.create(&PostParams::default(), pod).await?;
    }
    wait_pod(
        &pods,
        "post-start-ready",
        "post-start-ready Ready",
        WAIT,
        ready,
    )
    .await;
    wait_pod(
        &pods,
        "post-start-fails",
        "post-start-fails restarted",
        WAIT,
        |p| restarts(p) >= 1,
    )
    .await;
    eventually("the postStart Events", WAIT, || async {
        let recorded = events_of(&events, "post-start-fails").await;
        let failed = recorded
            .iter()
            .any(|(r, m)| r == "FailedPostStartHook" && m == "PostStartHook failed");
        let killing = recorded
            .iter()
            .any(|(r, m)| r == "Killing" && m == "FailedPostStartHook");
        (failed && killing)
            .then_some(())
            .ok_or(format!("{recorded:?}"))
    })
    .await;

    for name in ["pre-stop-sleeps", "pre-stop-fails"] {
        wait_pod(&pods, name, &format!("{name} Running"), WAIT, |p| {
            hollow_tests::pod_phase(p) == "Running"
        })
        .await;
    }
    let deleting = std::time::Instant::now();
    for name in ["pre-stop-sleeps", "pre-stop-fails"] {
        pods.delete(name, &Default::default()).await?;
    }
    eventually("pre-stop-sleeps gone", WAIT, || async {
        match pods.get_opt("pre-stop-sleeps").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let held = deleting.elapsed();
    assert!(
        held >= Duration::from_millis(3500),
        "the preStop sleep held it {held:?}"
    );
    eventually("the preStop Event", WAIT, || async {
        let recorded = events_of(&events, "pre-stop-fails").await;
        recorded
            .iter()
            .any(|(r, m)| r == "FailedPreStopHook" && m == "PreStopHook failed")
            .then_some(())
            .ok_or(format!("{recorded:?}"))
    })
    .await;

    cluster.shutdown().await;
    env.stop();
    Ok(())
}
