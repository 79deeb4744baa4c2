//! The requests of the two traffic profiles, read from the API server's audit log: a
//! node of the kubelet profile asks what a 1.36 kubelet asks for the same pod (its
//! informers' watches, a watch on exactly the ConfigMaps and Secrets the pod refers to,
//! its CSINode, a TokenRequest bound to the pod, the status manager's read before each
//! status patch, and the first status before the volumes); a lean node asks none of it.

use std::collections::BTreeSet;
use std::time::Duration;

use hollow_core::connect::{pooled_client, set_user_agent};
use hollow_core::node::{HollowNode, RunningNode, TrafficProfile};
use hollow_core::testenv::{Component, TestEnv};
use hollow_tests::{audit_events_of, init_tracing, is_request, pod, pod_phase as phase, wait_pod};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::storage::v1::CSINode;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

/// A client of `env` whose requests carry `agent`, as hollow-kubelet builds it.
async fn client_named(env: &TestEnv, agent: &str) -> anyhow::Result<kube::Client> {
    let mut config =
        kube::Config::from_custom_kubeconfig(env.kubeconfig().clone(), &Default::default()).await?;
    set_user_agent(&mut config, agent)?;
    Ok(pooled_client(config, Default::default())?.build())
}

/// The objects of `resource` watched by name (`fieldSelector=metadata.name=...`).
fn watched_by_name(events: &[Value], resource: &str) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| is_request(e, "watch", resource, None))
        .filter_map(|e| {
            let uri = e["requestURI"].as_str()?;
            let query = uri.split_once('?')?.1;
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "fieldSelector")
                .and_then(|(_, value)| value.strip_prefix("metadata.name=").map(String::from))
        })
        .collect()
}

fn the_pod(node: &str) -> Pod {
    let mut pod = pod(
        &format!("on-{node}"),
        json!({
            "nodeName": node,
            "containers": [{
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "env": [{ "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } }],
                "volumeMounts": [{ "name": "settings", "mountPath": "/etc/settings" }],
            }],
            "volumes": [{ "name": "settings", "configMap": { "name": "settings" } }],
        }),
    );
    pod.metadata.namespace = Some("default".into());
    pod
}

/// The nodes of the two profiles in `env`, each on a client named by its agent, and on
/// each `the_pod` Running (the ConfigMap and Secret it refers to made first). The
/// nodes stop when the returned handles drop.
async fn both_profiles_run_the_pod(
    env: &TestEnv,
    kubelet_agent: &str,
    lean_agent: &str,
) -> anyhow::Result<Vec<RunningNode>> {
    let client = env.client();
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({ "metadata": { "name": "settings" }, "data": { "mode": "fast" } }),
            )?,
        )
        .await?;
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({ "metadata": { "name": "creds" }, "stringData": { "password": "x" } }),
            )?,
        )
        .await?;
    let nodes = vec![
        HollowNode::builder("kubelet-profile")
            .build()?
            .start(client_named(env, kubelet_agent).await?)
            .await?,
        HollowNode::builder("lean-profile")
            .traffic(TrafficProfile::Lean)
            .build()?
            .start(client_named(env, lean_agent).await?)
            .await?,
    ];
    let pods: Api<Pod> = Api::namespaced(client, "default");
    for node in ["kubelet-profile", "lean-profile"] {
        pods.create(&PostParams::default(), &the_pod(node)).await?;
    }
    for node in ["kubelet-profile", "lean-profile"] {
        wait_pod(&pods, &format!("on-{node}"), "the pod running", WAIT, |p| {
            phase(p) == "Running"
        })
        .await;
    }
    Ok(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_profile_asks_what_a_kubelet_asks_and_the_lean_one_does_not()
-> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().audit_log(true).start().await?;
    let client = env.client();
    let (kubelet_agent, lean_agent) = ("traffic-test-kubelet", "traffic-test-lean");
    let _nodes = both_profiles_run_the_pod(&env, kubelet_agent, lean_agent).await?;

    let kubelet = audit_events_of(&env, kubelet_agent)?;
    let count = |verb, resource, subresource| {
        kubelet
            .iter()
            .filter(|e| is_request(e, verb, resource, subresource))
            .count()
    };
    // The projected service account token the ServiceAccount admission mounted.
    let tokens: Vec<&Value> = kubelet
        .iter()
        .filter(|e| is_request(e, "create", "serviceaccounts", Some("token")))
        .collect();
    assert_eq!(tokens.len(), 1, "one TokenRequest for the pod: {tokens:#?}");
    assert_eq!(tokens[0]["objectRef"]["name"], "default");
    // A watch on exactly the ConfigMaps and Secrets the pod refers to.
    assert_eq!(
        watched_by_name(&kubelet, "configmaps"),
        BTreeSet::from(["kube-root-ca.crt".to_string(), "settings".to_string()])
    );
    assert_eq!(
        watched_by_name(&kubelet, "secrets"),
        BTreeSet::from(["creds".to_string()])
    );
    // The kubelet's informers.
    for resource in ["services", "runtimeclasses", "csidrivers", "pods", "nodes"] {
        assert!(
            count("watch", resource, None) >= 1,
            "no watch of {resource}"
        );
    }
    // The status manager reads the pod before each patch; the first status goes out
    // before the volumes are set up (the token is had).
    let patches: Vec<&Value> = kubelet
        .iter()
        .filter(|e| is_request(e, "patch", "pods", Some("status")))
        .collect();
    assert!(
        patches.len() >= 2,
        "Pending first, then Running: {}",
        patches.len()
    );
    assert!(count("get", "pods", None) >= patches.len());
    let at = |event: &Value| {
        event["requestReceivedTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        at(patches[0]) < at(tokens[0]),
        "the first status patch ({}) before the TokenRequest ({})",
        at(patches[0]),
        at(tokens[0])
    );
    // Its CSINode, owned by its Node.
    let csinode = Api::<CSINode>::all(client.clone())
        .get("kubelet-profile")
        .await?;
    let owner = &csinode.metadata.owner_references.unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", "kubelet-profile")
    );

    // The lean node asks for none of it.
    let lean = audit_events_of(&env, lean_agent)?;
    for (verb, resource, subresource) in [
        ("create", "serviceaccounts", Some("token")),
        ("watch", "configmaps", None),
        ("watch", "secrets", None),
        ("watch", "services", None),
        ("get", "pods", None),
        ("create", "csinodes", None),
    ] {
        let asked = lean
            .iter()
            .filter(|e| is_request(e, verb, resource, subresource))
            .count();
        assert_eq!(asked, 0, "the lean node's {verb} {resource}");
    }
    assert!(
        lean.iter()
            .any(|e| is_request(e, "patch", "pods", Some("status")))
    );
    Ok(())
}

/// An API server with its `WatchList` gate off refuses streaming lists (422); each
/// watch then lists the current objects and watches from there, as client-go's
/// reflector falls back (tools/cache/reflector.go), and the pods run as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_streaming_lists_each_watch_lists_instead() -> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder()
        .audit_log(true)
        .arg(Component::ApiServer, "--feature-gates=WatchList=false")
        .start()
        .await?;
    let (kubelet_agent, lean_agent) = ("no-watch-list-kubelet", "no-watch-list-lean");
    // The Secret's key is read from its held watch's list: without it the container
    // would not start (CreateContainerConfigError).
    let _nodes = both_profiles_run_the_pod(&env, kubelet_agent, lean_agent).await?;
    for (agent, resources) in [
        (
            kubelet_agent,
            &["pods", "nodes", "services", "configmaps", "secrets"][..],
        ),
        (lean_agent, &["pods", "nodes"][..]),
    ] {
        let events = audit_events_of(&env, agent)?;
        for resource in resources {
            assert!(
                events.iter().any(|e| is_request(e, "list", resource, None)),
                "{agent} listed no {resource}"
            );
            // The watch that follows the list resumes from its version, without
            // initial events (the audit policy logs a watch as it is received).
            assert!(
                events.iter().any(|e| is_request(e, "watch", resource, None)
                    && e["requestURI"]
                        .as_str()
                        .is_some_and(|uri| !uri.contains("sendInitialEvents"))),
                "{agent} watches no {resource} after listing"
            );
        }
    }
    Ok(())
}
