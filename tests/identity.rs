//! Nodes on their own identities: 100 hollow nodes do the kubelet's TLS bootstrap with a
//! bootstrap token, then register, renew their Leases and run a pod as
//! `system:node:<name>`, against an API server with the Node authorizer and the
//! NodeRestriction admission plugin on (as every testenv has them), all read from the
//! API server's audit log.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hollow_core::bootstrap::TlsBootstrap;
use hollow_core::connect::set_user_agent;
use hollow_core::node::HollowCluster;
use hollow_core::testenv::TestEnv;
use hollow_tests::{
    audit_events_of, eventually, init_tracing, is_request, pod, pod_phase, wait_pod,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const NODES: usize = 100;
const WAIT: Duration = Duration::from_secs(120);
const AGENT: &str = "identity-test-nodes";

/// The bootstrap token's configuration, its requests carrying `agent`.
async fn bootstrap_config(env: &TestEnv, agent: &str) -> anyhow::Result<kube::Config> {
    let kubeconfig = env.bootstrap_kubeconfig().await?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    set_user_agent(&mut config, agent)?;
    Ok(config)
}

fn user(event: &Value) -> &str {
    event["user"]["username"].as_str().unwrap_or_default()
}

fn code(event: &Value) -> i64 {
    event["responseStatus"]["code"].as_i64().unwrap_or_default()
}

/// Lease renew times by node.
async fn renew_times(leases: &Api<Lease>) -> BTreeMap<String, String> {
    leases
        .list(&ListParams::default())
        .await
        .expect("leases")
        .items
        .into_iter()
        .filter_map(|lease| {
            let name = lease.metadata.name?;
            let renewed = lease.spec?.renew_time?;
            name.starts_with("ident-")
                .then(|| (name, format!("{:?}", renewed.0)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrapped_nodes_register_renew_and_run_pods_under_node_restriction()
-> anyhow::Result<()> {
    init_tracing();
    let env = TestEnv::builder().audit_responses(true).start().await?;
    let client = env.client();
    let bootstrap = TlsBootstrap::new(bootstrap_config(&env, AGENT).await?)?;
    let cluster = HollowCluster::builder("ident")
        .nodes(NODES, |_, node| node)
        .parallelism(32)
        .credentials(bootstrap)
        .start(client.clone())
        .await?;
    assert_eq!(cluster.len(), NODES);
    let names: BTreeSet<String> = (0..NODES).map(|i| format!("ident-{i}")).collect();

    // Every Lease is renewed after its first write.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = renew_times(&leases).await;
    assert_eq!(first.keys().cloned().collect::<BTreeSet<_>>(), names);
    eventually("every Lease renewed", WAIT, || async {
        let now = renew_times(&leases).await;
        let stale: Vec<&String> = first
            .keys()
            .filter(|n| now.get(*n) == first.get(*n))
            .collect();
        if stale.is_empty() {
            Ok(())
        } else {
            Err(format!("{} not renewed: {stale:?}", stale.len()))
        }
    })
    .await;

    // A pod with a projected service account token and a ConfigMap runs, and is
    // deleted, on its node's own identity.
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({ "metadata": { "name": "settings" }, "data": { "a": "b" } }),
            )?,
        )
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    eventually("the default service account", WAIT, || async {
        match accounts.get_opt("default").await {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut the_pod = pod(
        "on-ident-7",
        json!({
            "nodeName": "ident-7",
            "containers": [{
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "volumeMounts": [{ "name": "settings", "mountPath": "/etc/settings" }],
            }],
            "volumes": [{ "name": "settings", "configMap": { "name": "settings" } }],
        }),
    );
    the_pod.metadata.namespace = Some("default".into());
    pods.create(&PostParams::default(), &the_pod).await?;
    wait_pod(&pods, "on-ident-7", "the pod running", WAIT, |p| {
        pod_phase(p) == "Running"
    })
    .await;
    pods.delete("on-ident-7", &DeleteParams::default()).await?;
    eventually("the pod deleted by its node", WAIT, || async {
        match pods.get_opt("on-ident-7").await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|p| p.map(|p| p.status)))),
        }
    })
    .await;

    // NodeRestriction: a node's identity may not write another node's status, nor the
    // Node authorizer let it renew another node's Lease.
    let intruder_agent = "identity-test-intruder";
    let intruder = TlsBootstrap::new(bootstrap_config(&env, intruder_agent).await?)?
        .node_client("ident-0")
        .await?;
    let status = json!({ "status": { "conditions": [{ "type": "Ready", "status": "False", "reason": "Intruder" }] } });
    let denied = Api::<Node>::all(intruder.clone())
        .patch_status(
            "ident-1",
            &PatchParams::default(),
            &Patch::Strategic(&status),
        )
        .await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(s)) if s.code == 403),
        "ident-0 wrote ident-1's status: {denied:?}"
    );
    let denied = Api::<Lease>::namespaced(intruder, "kube-node-lease")
        .get("ident-1")
        .await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(s)) if s.code == 403),
        "ident-0 read ident-1's Lease: {denied:?}"
    );

    let events = audit_events_of(&env, AGENT)?;
    // Only the bootstrap token (for the certificate requests) and the nodes themselves.
    let users: BTreeSet<&str> = events.iter().map(user).collect();
    for user in &users {
        assert!(
            user.starts_with("system:bootstrap:") || user.starts_with("system:node:ident-"),
            "a request as {user}"
        );
    }
    let bootstrapped: Vec<&Value> = events
        .iter()
        .filter(|e| is_request(e, "create", "certificatesigningrequests", None))
        .collect();
    assert_eq!(
        bootstrapped.len(),
        NODES,
        "one certificate request per node"
    );
    let odd: Vec<(&str, i64)> = bootstrapped
        .iter()
        .filter(|e| !user(e).starts_with("system:bootstrap:") || code(e) != 201)
        .map(|e| (user(e), code(e)))
        .collect();
    assert!(
        odd.is_empty(),
        "certificate requests not created by the token: {odd:?}"
    );
    // Each node registered itself and renewed its own Lease.
    let by = |verb: &str, resource: &str, subresource: Option<&str>| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| is_request(e, verb, resource, subresource) && (200..300).contains(&code(e)))
            .filter(|e| {
                user(e)
                    == format!(
                        "system:node:{}",
                        e["objectRef"]["name"].as_str().unwrap_or("?")
                    )
            })
            .filter_map(|e| e["objectRef"]["name"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(
        by("create", "nodes", None),
        names,
        "Nodes each created by itself"
    );
    assert_eq!(
        by("update", "leases", None),
        names,
        "Leases each renewed by its node"
    );
    // The pod's requests came from its node, and were allowed.
    let of_node_7 = |verb: &str, resource: &str, subresource: Option<&str>| -> Vec<i64> {
        events
            .iter()
            .filter(|e| {
                is_request(e, verb, resource, subresource) && user(e) == "system:node:ident-7"
            })
            .map(code)
            .collect()
    };
    let tokens = of_node_7("create", "serviceaccounts", Some("token"));
    assert!(
        tokens.contains(&201),
        "a TokenRequest by ident-7: {tokens:?}"
    );
    let patches = of_node_7("patch", "pods", Some("status"));
    assert!(
        !patches.is_empty() && patches.iter().all(|c| *c == 200),
        "status patches: {patches:?}"
    );
    let watches = of_node_7("watch", "configmaps", None);
    assert!(
        watches.contains(&200),
        "the ConfigMap watched by ident-7: {watches:?}"
    );
    let deletes = of_node_7("delete", "pods", None);
    assert!(
        deletes.contains(&200),
        "the pod deleted by ident-7: {deletes:?}"
    );
    // Nothing the nodes asked stayed forbidden. The Node authorizer learns of a pod
    // from its own watch, so a node's first read of a new pod, or watch of the
    // ConfigMap it refers to, may come before the authorizer's graph has the pod; the
    // kubelet's status manager and ConfigMap manager retry, and so does hollow. Those
    // two reads may be refused, if the same request by the same node is later allowed.
    // (The answer to an allowed request adds the object's UID and version to its
    // reference.)
    let same = |a: &Value, b: &Value| {
        user(a) == user(b)
            && a["verb"] == b["verb"]
            && ["resource", "subresource", "namespace", "name"]
                .iter()
                .all(|key| a["objectRef"][key] == b["objectRef"][key])
    };
    let forbidden: Vec<String> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| code(e) == 403)
        .filter(|(at, e)| {
            let graph_lag =
                is_request(e, "watch", "configmaps", None) || is_request(e, "get", "pods", None);
            let allowed_later = events[at + 1..]
                .iter()
                .any(|later| same(e, later) && (200..300).contains(&code(later)));
            !(graph_lag && allowed_later)
        })
        .map(|(_, e)| format!("{} {} {}", user(e), e["verb"], e["requestURI"]))
        .collect();
    assert!(forbidden.is_empty(), "forbidden: {forbidden:#?}");
    cluster.shutdown().await;
    Ok(())
}
