//! The fidelity oracle: the same pods on a Kubemark node (the real kubelet code over
//! Kubemark's fake runtime) and on a hollow node, side by side on one control plane,
//! and their statuses, Node objects and Events compared field by field.
//!
//! Run it with `hollow-fidelity` (a binary of this crate) or the `fidelity` test;
//! `docs/fidelity.md` has the latest table and the accepted differences.

pub mod allow;
pub mod compare;
pub mod corpus;
pub mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hollow_core::node::{HollowNode, RunningNode};
use hollow_core::testenv::TestEnv;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

pub use report::{Judged, PodReport, Report};

/// The Kubemark node's name.
pub const KUBEMARK_NODE: &str = "oracle-kubemark";
/// The hollow node's name.
pub const HOLLOW_NODE: &str = "oracle-hollow";
/// The namespace of the pods on the Kubemark node.
pub const KUBEMARK_NAMESPACE: &str = "fidelity-kubemark";
/// The namespace of the pods on the hollow node.
pub const HOLLOW_NAMESPACE: &str = "fidelity-hollow";
/// The label both nodes carry.
const LABEL: (&str, &str) = ("hollow.dev/oracle", "true");

/// What to compare and how long to wait.
#[derive(Debug, Clone)]
pub struct Options {
    /// The corpus directory.
    pub corpus: PathBuf,
    /// Only the cases whose name contains this.
    pub only: Option<String>,
    /// The pods have settled when none changed for this long.
    pub quiet: Duration,
    /// Compare anyway after this long.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            corpus: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/oracle/corpus")),
            only: None,
            quiet: Duration::from_secs(12),
            timeout: Duration::from_secs(240),
        }
    }
}

/// Runs the corpus on both nodes and compares. The nodes, namespaces and pods are
/// removed afterwards.
pub async fn run(env: &TestEnv, options: &Options) -> anyhow::Result<Report> {
    let cases = corpus::load(&options.corpus, options.only.as_deref())?;
    anyhow::ensure!(!cases.is_empty(), "no case in {}", options.corpus.display());
    let client = env.client();
    let label = format!("{}={}", LABEL.0, LABEL.1);
    let mut kubemark =
        crate::kubemark::start_node(env, KUBEMARK_NODE, &label, &env.dir().join("oracle"), 0)?;
    let kubemark_node = wait_ready(&client, KUBEMARK_NODE).await?;
    let hollow = start_hollow(&client, &kubemark_node).await?;
    for namespace in [KUBEMARK_NAMESPACE, HOLLOW_NAMESPACE] {
        create_namespace(&client, namespace).await?;
    }
    for case in &cases {
        create_case(&client, case).await?;
    }
    let mut settled = settle(&client, options).await?;
    if cases.iter().any(|case| !case.resizes.is_empty()) {
        for case in &cases {
            resize_case(&client, case).await?;
        }
        settled &= settle(&client, options).await?;
    }
    let report = collect(&client, &cases, settled).await;
    for namespace in [KUBEMARK_NAMESPACE, HOLLOW_NAMESPACE] {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(namespace, &DeleteParams::default())
            .await;
    }
    let _ = kubemark.start_kill();
    let _ = kubemark.wait().await;
    let _ = hollow.deregister().await;
    let _ = Api::<Node>::all(client)
        .delete(KUBEMARK_NODE, &DeleteParams::default())
        .await;
    report
}

async fn wait_ready(client: &kube::Client, name: &str) -> anyhow::Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(node) = nodes.get_opt(name).await?
            && crate::node_ready(&node) == Some("True")
        {
            return Ok(node);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node {name} not Ready in 120 s (its log: kubemark.log in the test env's oracle directory)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A hollow node shaped as the Kubemark node: the same capacity and allocatable (from
/// Kubemark's fake cAdvisor), so admission decides the same way on both.
async fn start_hollow(client: &kube::Client, kubemark: &Node) -> anyhow::Result<RunningNode> {
    let status = kubemark.status.clone().unwrap_or_default();
    let mut builder = HollowNode::builder(HOLLOW_NODE).label(LABEL.0, LABEL.1);
    for (resource, quantity) in status.capacity.unwrap_or_default() {
        builder = builder.capacity(resource, quantity.0);
    }
    for (resource, quantity) in status.allocatable.unwrap_or_default() {
        builder = builder.allocatable(resource, quantity.0);
    }
    Ok(builder.build()?.start(client.clone()).await?)
}

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    // Pods are refused until the namespace's default ServiceAccount exists.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    let deadline = Instant::now() + Duration::from_secs(60);
    while accounts.get_opt("default").await?.is_none() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no default ServiceAccount in {name}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Creates the case's objects in both namespaces, then its pods in order, each on both
/// nodes; pods of one case are a second apart, so the kubelet, which admits pods in
/// creation-time order, sees them in file order.
async fn create_case(client: &kube::Client, case: &corpus::Case) -> anyhow::Result<()> {
    let sides = [
        (KUBEMARK_NAMESPACE, KUBEMARK_NODE),
        (HOLLOW_NAMESPACE, HOLLOW_NODE),
    ];
    for object in &case.objects {
        for (namespace, _) in sides {
            create_object(client, namespace, object)
                .await
                .with_context(|| format!("case {}", case.name))?;
        }
    }
    for (index, pod) in case.pods.iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        for (namespace, node) in sides {
            let mut pod = pod.clone();
            pod["spec"]["nodeName"] = json!(node);
            let pod: Pod = serde_json::from_value(pod)
                .with_context(|| format!("case {}: not a Pod", case.name))?;
            Api::<Pod>::namespaced(client.clone(), namespace)
                .create(&PostParams::default(), &pod)
                .await
                .with_context(|| format!("case {}: creating its pod", case.name))?;
        }
    }
    Ok(())
}

/// Applies the case's resizes to its pods on both nodes, through the `resize`
/// subresource as `kubectl patch --subresource resize` does.
async fn resize_case(client: &kube::Client, case: &corpus::Case) -> anyhow::Result<()> {
    for resize in &case.resizes {
        let name = resize["metadata"]["name"].as_str().unwrap_or_default();
        for namespace in [KUBEMARK_NAMESPACE, HOLLOW_NAMESPACE] {
            Api::<Pod>::namespaced(client.clone(), namespace)
                .patch_subresource(
                    "resize",
                    name,
                    &PatchParams::default(),
                    &Patch::Strategic(json!({ "spec": resize["spec"] })),
                )
                .await
                .with_context(|| format!("case {}: resizing {namespace}/{name}", case.name))?;
        }
    }
    Ok(())
}

/// Creates any object from its JSON in `namespace` (core group objects and others the
/// API server serves), by its apiVersion and kind.
async fn create_object(
    client: &kube::Client,
    namespace: &str,
    object: &Value,
) -> anyhow::Result<()> {
    let api_version = object["apiVersion"]
        .as_str()
        .context("an object without apiVersion")?;
    let kind = object["kind"].as_str().context("an object without kind")?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural(kind));
    let object: DynamicObject = serde_json::from_value(object.clone())?;
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
        .create(&PostParams::default(), &object)
        .await?;
    Ok(())
}

fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

/// Waits until no pod of either namespace changed for `options.quiet`; false if they
/// still changed at `options.timeout`.
async fn settle(client: &kube::Client, options: &Options) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut quiet_since = Instant::now();
    while started.elapsed() < options.timeout {
        let mut versions = BTreeMap::new();
        for namespace in [KUBEMARK_NAMESPACE, HOLLOW_NAMESPACE] {
            for pod in Api::<Pod>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await?
            {
                versions.insert(
                    format!("{namespace}/{}", pod.metadata.name.unwrap_or_default()),
                    pod.metadata.resource_version.unwrap_or_default(),
                );
            }
        }
        if versions != last {
            last = versions;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= options.quiet {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(false)
}

/// Reads both sides and compares.
async fn collect(
    client: &kube::Client,
    cases: &[corpus::Case],
    settled: bool,
) -> anyhow::Result<Report> {
    let statuses = |namespace: &'static str| {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        async move {
            let list = pods.list(&ListParams::default()).await?;
            anyhow::Ok(
                list.items
                    .into_iter()
                    .map(|pod| {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        (name, serde_json::to_value(pod.status).unwrap_or_default())
                    })
                    .collect::<BTreeMap<_, _>>(),
            )
        }
    };
    let kubemark = statuses(KUBEMARK_NAMESPACE).await?;
    let hollow = statuses(HOLLOW_NAMESPACE).await?;
    let events = events(client).await?;
    let mut pods = Vec::new();
    for case in cases {
        for name in case.pod_names() {
            pods.push(report::compare_pod(
                &case.name,
                name,
                kubemark.get(name),
                hollow.get(name),
                &events,
            ));
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let node = |node: Node| {
        json!({
            "labels": node.metadata.labels,
            "annotations": node.metadata.annotations,
            "spec": node.spec,
            "status": node.status,
        })
    };
    let node = report::compare_node(
        &node(nodes.get(KUBEMARK_NODE).await?),
        &node(nodes.get(HOLLOW_NODE).await?),
        &events,
    );
    Ok(Report {
        settled,
        pods,
        node,
    })
}

/// Every Event of both sides, as `reason` lists keyed by `<namespace>/<object name>`
/// (a node's key is `node/<name>`), in the order they were first seen.
async fn events(client: &kube::Client) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut all = Vec::new();
    for namespace in [KUBEMARK_NAMESPACE, HOLLOW_NAMESPACE, "default"] {
        all.extend(
            Api::<Event>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await?
                .items,
        );
    }
    all.sort_by(|a, b| a.first_timestamp.cmp(&b.first_timestamp));
    let mut by_object: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in all {
        let object = &event.involved_object;
        let key = match object.kind.as_deref() {
            Some("Node") => format!("node/{}", object.name.clone().unwrap_or_default()),
            _ => format!(
                "{}/{}",
                object.namespace.clone().unwrap_or_default(),
                object.name.clone().unwrap_or_default()
            ),
        };
        let reason = event.reason.unwrap_or_default();
        let count = event.count.unwrap_or(1);
        by_object.entry(key).or_default().push(if count > 1 {
            format!("{reason} (x{count})")
        } else {
            reason
        });
    }
    Ok(by_object)
}
