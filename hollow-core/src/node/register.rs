//! Registering the Node object, or adopting one registered before.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use super::Error;
use super::config::Registration;
use crate::annotations::MANAGED as MANAGED_ANNOTATION;
use crate::backoff::Doubling;

/// The Node object named `name` a kubelet with this configuration creates.
pub(crate) fn desired_node(name: &str, config: &Registration) -> Node {
    let mut labels = config.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), name.into());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), "amd64".into());
    let mut annotations = config.annotations.clone();
    annotations.insert(MANAGED_ANNOTATION.into(), "true".into());
    annotations.insert("node.alpha.kubernetes.io/ttl".into(), "0".into());
    annotations.insert(
        "volumes.kubernetes.io/controller-managed-attach-detach".into(),
        "true".into(),
    );
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(config.provider_id.clone()),
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

/// Whether an API error is worth retrying (the server is unreachable, restarting or
/// overloaded) rather than a final answer.
pub(crate) fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        _ => true,
    }
}

/// Deletes the Node named `name` and its Lease, as
/// [`RunningNode::deregister`](super::RunningNode::deregister) does for a running node;
/// either already gone is no error. For nodes no longer running, such as those that a
/// start that was interrupted registered.
///
/// ```no_run
/// # async fn run(client: kube::Client) -> Result<(), hollow_core::node::Error> {
/// hollow_core::node::deregister(&client, "hollow-0").await?;
/// # Ok(()) }
/// ```
pub async fn deregister(client: &kube::Client, name: &str) -> Result<(), Error> {
    let failed = |source| Error::Deregistration {
        node: name.to_string(),
        source,
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), super::LEASE_NAMESPACE);
    let params = DeleteParams::default();
    absent_is_fine(nodes.delete(name, &params).await.map(drop)).map_err(failed)?;
    absent_is_fine(leases.delete(name, &params).await.map(drop)).map_err(failed)
}

fn absent_is_fine(deleted: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match deleted {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other,
    }
}

/// Creates the Node with `status`, or adopts an existing one hollow registered before
/// (or any, with `adopt`); says which. Transient errors are retried with backoff for up
/// to `patience`.
pub(crate) async fn register(
    nodes: &Api<Node>,
    name: &str,
    config: &Registration,
    status: Option<NodeStatus>,
    patience: Duration,
) -> Result<(Node, bool), Error> {
    let mut desired = desired_node(name, config);
    desired.status = status;
    let registered = retry_transient(name, patience, || async {
        match nodes.create(&PostParams::default(), &desired).await {
            Ok(node) => Ok(Some((node, true))),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(adopt(nodes, name, config.adopt, &desired)
                    .await?
                    .map(|node| (node, false)))
            }
            Err(error) => Err(error),
        }
    })
    .await?;
    registered.ok_or_else(|| Error::NodeExists(name.into()))
}

/// Reads the Node named `name` that someone else created, for a node that serves it
/// ([`HollowNodeBuilder::serve_existing`](super::HollowNodeBuilder::serve_existing)).
/// Transient errors are retried with backoff for up to `patience`.
pub(crate) async fn existing(
    nodes: &Api<Node>,
    name: &str,
    patience: Duration,
) -> Result<Node, Error> {
    retry_transient(name, patience, || nodes.get_opt(name))
        .await?
        .ok_or_else(|| Error::NodeMissing(name.into()))
}

/// Nodes of a process adding the kubelet's labels to a Node someone else created, at
/// once.
pub(crate) static COMPLETING: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(4));

/// Adds to a Node someone else created what a kubelet adds on registration and the
/// creator left out: the well-known hostname, OS and architecture labels, and the
/// attach-detach annotation (`updateDefaultLabels` and
/// `reconcileCMADAnnotationWithExistingNode` in pkg/kubelet/kubelet_node_status.go).
/// Nothing the creator wrote is changed; a Node that lacks nothing is not written. As
/// the kubelet writes them: a patch of the Node's status subresource, which keeps
/// metadata changes (`PatchNodeStatus` in `tryRegisterWithAPIServer`).
pub(crate) async fn complete_existing(
    nodes: &Api<Node>,
    existing: &ObjectMeta,
    patience: Duration,
) -> Result<(), Error> {
    let name = existing.name.clone().unwrap_or_default();
    let missing = |present: &Option<std::collections::BTreeMap<String, String>>,
                   wanted: &[(&str, &str)]| {
        wanted
            .iter()
            .filter(|(key, _)| present.as_ref().is_none_or(|map| !map.contains_key(*key)))
            .map(|(key, value)| ((*key).to_string(), serde_json::Value::from(*value)))
            .collect::<serde_json::Map<_, _>>()
    };
    let labels = missing(
        &existing.labels,
        &[
            ("kubernetes.io/hostname", name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ],
    );
    let annotations = missing(
        &existing.annotations,
        &[(
            "volumes.kubernetes.io/controller-managed-attach-detach",
            "true",
        )],
    );
    if labels.is_empty() && annotations.is_empty() {
        return Ok(());
    }
    let patch =
        Patch::Strategic(json!({ "metadata": { "labels": labels, "annotations": annotations } }));
    let params = PatchParams::default();
    match retry_transient(&name, patience, || {
        nodes.patch_status(&name, &params, &patch)
    })
    .await
    {
        Err(Error::Registration {
            source: kube::Error::Api(status),
            ..
        }) if status.code == 404 => Err(Error::NodeMissing(name)),
        completed => completed.map(drop),
    }
}

/// Runs `attempt` until it succeeds or fails for good, retrying transient errors with
/// backoff for up to `patience`; a final error is a registration error of `node`.
async fn retry_transient<T, F, Fut>(node: &str, patience: Duration, attempt: F) -> Result<T, Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delays = Doubling::new(Duration::from_millis(100), Duration::from_secs(7)).delays();
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(error) if is_transient(&error) && tokio::time::Instant::now() < deadline => {
                tracing::warn!(%node, %error, "registration failed; retrying");
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(7))).await;
            }
            Err(source) => {
                return Err(Error::Registration {
                    node: node.into(),
                    source,
                });
            }
        }
    }
}

/// Takes over an existing Node when hollow made it (or adoption is asked for), updating
/// the labels and annotations hollow owns; `None` when the Node is not ours to take.
async fn adopt(
    nodes: &Api<Node>,
    name: &str,
    adopt_any: bool,
    desired: &Node,
) -> Result<Option<Node>, kube::Error> {
    let existing = nodes.get(name).await?;
    let ours = existing
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.get(MANAGED_ANNOTATION).map(String::as_str) == Some("true"));
    if !ours && !adopt_any {
        return Ok(None);
    }
    let patch = json!({
        "metadata": {
            "labels": desired.metadata.labels,
            "annotations": desired.metadata.annotations,
        },
    });
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::HollowNode;

    #[test]
    fn the_node_carries_well_known_labels_taints_and_provider_id() {
        let node = HollowNode::builder("n1")
            .label("zone", "a")
            .taint("dedicated", "", crate::node::TaintEffect::NoExecute)
            .build()
            .unwrap();
        let object = desired_node(&node.config.name, &node.config.registration);
        let labels = object.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["zone"], "a");
        let spec = object.spec.unwrap();
        assert_eq!(spec.provider_id.as_deref(), Some("hollow://n1"));
        let taint = &spec.taints.unwrap()[0];
        assert_eq!(
            (
                taint.key.as_str(),
                taint.value.as_deref(),
                taint.effect.as_str()
            ),
            ("dedicated", None, "NoExecute")
        );
    }
}
