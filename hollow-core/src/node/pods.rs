//! The pod watch: one per node (a kubelet's `spec.nodeName=<node>` watch, which works
//! with a node's own credentials) or one shared by every node of a process, routing
//! each pod to its node's worker; and likewise the Node metadata watch that carries
//! fault annotations to each node.

use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use super::heartbeat::Heartbeats;
use super::shared::NodeShared;
use crate::backoff::WatchBackoff;

/// Routes pods from one watch to the nodes it serves, whose heartbeats one driver
/// runs.
#[derive(Default)]
pub(crate) struct PodRouter {
    nodes: RwLock<HashMap<String, Arc<NodeShared>>>,
    heartbeats: OnceLock<Heartbeats>,
}

impl PodRouter {
    /// The heartbeat driver of the router's nodes, started on first use.
    pub(crate) fn heartbeats(&self) -> &Heartbeats {
        self.heartbeats.get_or_init(Heartbeats::start)
    }

    pub(crate) fn add(&self, node: Arc<NodeShared>) {
        let name = node.config.name.clone();
        self.nodes.write().insert(name, node);
    }

    pub(crate) fn remove(&self, name: &str) {
        self.nodes.write().remove(name);
    }

    fn node_of(&self, pod: &Pod) -> Option<Arc<NodeShared>> {
        let name = pod.spec.as_ref()?.node_name.as_deref()?;
        self.nodes.read().get(name).cloned()
    }

    fn all(&self) -> Vec<Arc<NodeShared>> {
        self.nodes.read().values().cloned().collect()
    }

    /// Watches pods matching `field_selector` until cancelled, resuming after errors
    /// with backoff and re-listing when the watch expires (410 Gone).
    pub(crate) async fn run(
        self: Arc<Self>,
        client: kube::Client,
        field_selector: String,
        cancel: CancellationToken,
    ) {
        let api: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(&field_selector);
        let mut events = watcher::watcher(api, config)
            .backoff(WatchBackoff::new())
            .boxed();
        let mut listed: Option<HashSet<String>> = None;
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                None => return,
                Some(Ok(Event::Apply(pod))) => self.apply(pod),
                Some(Ok(Event::Delete(pod))) => {
                    if let (Some(node), Some(uid)) =
                        (self.node_of(&pod), pod.metadata.uid.as_deref())
                    {
                        node.remove_pod(uid);
                    }
                }
                Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (listed.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    self.apply(pod);
                }
                Some(Ok(Event::InitDone)) => {
                    // Pods deleted while the watch was down are gone from the new list.
                    if let Some(seen) = listed.take() {
                        for node in self.all() {
                            for uid in node.pod_uids() {
                                if !seen.contains(&uid) {
                                    node.remove_pod(&uid);
                                }
                            }
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, selector = %field_selector, "pod watch failed; retrying")
                }
            }
        }
    }

    /// Watches the Nodes matching `field_selector` until cancelled: their fault
    /// annotations, and their Ready condition as the API server holds it (which the
    /// node writes again when someone else changed it).
    pub(crate) async fn run_nodes(
        self: Arc<Self>,
        client: kube::Client,
        field_selector: Option<String>,
        cancel: CancellationToken,
    ) {
        let api: Api<Node> = Api::all(client);
        let mut config = watcher::Config::default();
        if let Some(selector) = &field_selector {
            config = config.fields(selector);
        }
        let mut events = watcher::watcher(api, config)
            .backoff(WatchBackoff::new())
            .applied_objects()
            .boxed();
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                None => return,
                Some(Ok(node)) => {
                    let Some(name) = node.metadata.name.as_deref() else {
                        continue;
                    };
                    let shared = self.nodes.read().get(name).cloned();
                    if let Some(shared) = shared {
                        shared.observe_node_annotations(
                            node.metadata
                                .annotations
                                .as_ref()
                                .unwrap_or(&Default::default()),
                        );
                        shared.no_execute_taints.store(
                            super::affinity::has_no_execute_taint(&node),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        if let Some(conditions) =
                            node.status.as_ref().and_then(|s| s.conditions.as_deref())
                        {
                            super::heartbeat::observe_server_conditions(&shared, conditions);
                        }
                    }
                }
                Some(Err(error)) => tracing::warn!(%error, "node watch failed; retrying"),
            }
        }
    }

    fn apply(&self, pod: Pod) {
        if let Some(node) = self.node_of(&pod) {
            node.apply_pod(pod);
        }
    }
}
