//! The proxy engine's watches: Services and EndpointSlices for every node served, and
//! the served Nodes themselves. Each resumes after errors and re-lists on 410 Gone;
//! objects missing from a re-list are delivered as deletions.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{NodeProxy, TO_BE_DELETED_TAINT};
use crate::error::Result;
use crate::proxier::Proxier;

type Nodes = Arc<HashMap<String, Arc<NodeProxy>>>;

/// A kind the proxier is told about.
#[async_trait]
trait Delivered:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    async fn update(proxier: &dyn Proxier, object: &Self) -> Result<()>;
    async fn delete(proxier: &dyn Proxier, object: &Self) -> Result<()>;
}

#[async_trait]
impl Delivered for Service {
    async fn update(proxier: &dyn Proxier, object: &Self) -> Result<()> {
        proxier.on_service_update(object).await
    }
    async fn delete(proxier: &dyn Proxier, object: &Self) -> Result<()> {
        proxier.on_service_delete(object).await
    }
}

#[async_trait]
impl Delivered for EndpointSlice {
    async fn update(proxier: &dyn Proxier, object: &Self) -> Result<()> {
        proxier.on_endpoint_slice_update(object).await
    }
    async fn delete(proxier: &dyn Proxier, object: &Self) -> Result<()> {
        proxier.on_endpoint_slice_delete(object).await
    }
}

pub(super) fn spawn_all(
    tasks: &mut JoinSet<()>,
    client: kube::Client,
    nodes: Nodes,
    cancel: CancellationToken,
) {
    tasks.spawn(watch_kind::<Service>(
        client.clone(),
        nodes.clone(),
        cancel.clone(),
    ));
    tasks.spawn(watch_kind::<EndpointSlice>(
        client.clone(),
        nodes.clone(),
        cancel.clone(),
    ));
    tasks.spawn(watch_nodes(client, nodes, cancel));
}

async fn deliver<K: Delivered>(nodes: &Nodes, object: &K, deleted: bool) {
    for node in nodes.values() {
        let result = if deleted {
            K::delete(node.proxier.as_ref(), object).await
        } else {
            K::update(node.proxier.as_ref(), object).await
        };
        if let Err(error) = result {
            tracing::warn!(node = %node.name, %error, "proxier rejected a change");
        }
        node.changed();
    }
}

fn key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

async fn watch_kind<K: Delivered>(client: kube::Client, nodes: Nodes, cancel: CancellationToken) {
    let api: Api<K> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: HashMap<String, K> = HashMap::new();
    let mut listed: Option<HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            Some(Ok(Event::Apply(object) | Event::InitApply(object))) => {
                let key = key(&object);
                if let Some(seen) = listed.as_mut() {
                    seen.insert(key.clone());
                }
                deliver(&nodes, &object, false).await;
                known.insert(key, object);
            }
            Some(Ok(Event::Delete(object))) => {
                known.remove(&key(&object));
                deliver(&nodes, &object, true).await;
            }
            Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
            Some(Ok(Event::InitDone)) => {
                let seen = listed.take().unwrap_or_default();
                let gone: Vec<String> = known
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    if let Some(object) = known.remove(&key) {
                        deliver(&nodes, &object, true).await;
                    }
                }
            }
            Some(Err(error)) => {
                tracing::warn!(%error, kind = %K::kind(&()), "proxy watch failed; retrying")
            }
        }
    }
}

/// Whether kube-proxy would call this node eligible for traffic.
fn eligible(node: &Node) -> bool {
    node.metadata.deletion_timestamp.is_none()
        && !node
            .spec
            .as_ref()
            .and_then(|spec| spec.taints.as_ref())
            .is_some_and(|taints| taints.iter().any(|t| t.key == TO_BE_DELETED_TAINT))
}

async fn watch_nodes(client: kube::Client, nodes: Nodes, cancel: CancellationToken) {
    let api: Api<Node> = Api::all(client);
    let mut config = watcher::Config::default();
    if nodes.len() == 1
        && let Some(name) = nodes.keys().next()
    {
        config = config.fields(&format!("metadata.name={name}"));
    }
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            Some(Ok(Event::Apply(node) | Event::InitApply(node))) => {
                let Some(served) = node.metadata.name.as_ref().and_then(|name| nodes.get(name))
                else {
                    continue;
                };
                served.eligible.store(eligible(&node), Ordering::Relaxed);
                if let Err(error) = served.proxier.on_node_update(&node).await {
                    tracing::warn!(node = %served.name, %error, "proxier rejected a node change");
                }
                served.changed();
            }
            Some(Ok(Event::Delete(node))) => {
                if let Some(served) = node.metadata.name.as_ref().and_then(|name| nodes.get(name)) {
                    served.eligible.store(false, Ordering::Relaxed);
                }
            }
            Some(Ok(Event::Init | Event::InitDone)) => {}
            Some(Err(error)) => tracing::warn!(%error, "node watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_being_deleted_or_drained_by_the_autoscaler_are_not_eligible() {
        let node = |value: serde_json::Value| serde_json::from_value::<Node>(value).unwrap();
        assert!(eligible(&node(json!({ "metadata": { "name": "n" } }))));
        assert!(!eligible(&node(
            json!({ "metadata": { "name": "n", "deletionTimestamp": "2026-01-01T00:00:00Z" } })
        )));
        assert!(!eligible(&node(json!({ "metadata": { "name": "n" },
            "spec": { "taints": [{ "key": TO_BE_DELETED_TAINT, "effect": "NoSchedule" }] } }))));
        // A Node with no spec at all is handled, not a crash (Kubemark's proxy panicked here).
        assert!(eligible(&node(
            json!({ "metadata": { "name": "n" }, "spec": {} })
        )));
    }
}
