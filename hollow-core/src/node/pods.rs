//! The pod watch: one per node (a kubelet's `spec.nodeName=<node>` watch, which works
//! with a node's own credentials) or one shared by every node of a process, routing
//! each pod to its node's worker; and likewise the Node metadata watch that carries
//! fault annotations to each node.

use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use super::heartbeat::Heartbeats;
use super::shared::NodeShared;
use crate::backoff::WatchBackoff;
use crate::streaming_list;

/// Routes pods from one watch to the nodes it serves, whose heartbeats one driver
/// runs.
#[derive(Default)]
pub(crate) struct PodRouter {
    nodes: RwLock<HashMap<String, Arc<NodeShared>>>,
    heartbeats: OnceLock<Heartbeats>,
    /// The queue of the pods' wakes.
    pod_timers: super::pod_timers::PodTimers,
    /// Set once the pod watch has started listing: a node added later lists its own
    /// pods.
    listed: AtomicBool,
}

impl PodRouter {
    /// The heartbeat driver of the router's nodes, started on first use.
    pub(crate) fn heartbeats(&self) -> &Heartbeats {
        self.heartbeats.get_or_init(Heartbeats::start)
    }

    /// Routes `node`'s pods to it. A node added after the watch listed the pods (one
    /// that registered late, or that a creator made later) lists its own once, as a
    /// kubelet's pod reflector does when it starts: pods bound to it before are not
    /// missed.
    pub(crate) fn add(&self, node: Arc<NodeShared>) {
        let name = node.config.name.clone();
        let _ = node.pod_timers.set(self.pod_timers.clone());
        self.nodes.write().insert(name, node.clone());
        if self.listed.load(Ordering::Acquire) {
            tokio::spawn(list_own_pods(node));
        }
    }

    /// Stops routing to `node`; a node of the same name added since (a Node deleted
    /// and made again) stays.
    pub(crate) fn remove(&self, node: &Arc<NodeShared>) {
        let mut nodes = self.nodes.write();
        if nodes
            .get(&node.config.name)
            .is_some_and(|routed| Arc::ptr_eq(routed, node))
        {
            nodes.remove(&node.config.name);
        }
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
    ///
    /// The list is a streaming list (`sendInitialEvents=true`, served from the API
    /// server's watch cache), as a 1.36 kubelet's informers list (client-go's
    /// `WatchListClient`, on by default from 1.35; the API server's `WatchList`, from
    /// 1.34). A paged list read from etcd, kube's default, failed at 150,000 pods: its
    /// pages took longer than etcd's compaction interval, each continue token expired
    /// (410) and the list started over, again and again. An API server that refuses
    /// streaming lists (its `WatchList` gate off) gets a list instead
    /// (`crate::streaming_list`).
    pub(crate) async fn run(
        self: Arc<Self>,
        client: kube::Client,
        field_selector: String,
        cancel: CancellationToken,
    ) {
        let api: Api<Pod> = Api::all(client);
        let watch = |streaming| {
            let config = streaming_list::config(streaming).fields(&field_selector);
            watcher::watcher(api.clone(), config)
                .backoff(WatchBackoff::new())
                .boxed()
        };
        let mut streaming = true;
        let mut events = watch(streaming);
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
                Some(Ok(Event::Init)) => {
                    // From here a node added may miss pods the list routes before it
                    // joins: it lists its own.
                    self.listed.store(true, Ordering::Release);
                    listed = Some(HashSet::new());
                }
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
                Some(Err(error)) if streaming && streaming_list::watcher_refused(&error) => {
                    tracing::info!(%error, selector = %field_selector, "the API server refuses streaming lists; the pod watch lists instead");
                    streaming = false;
                    events = watch(streaming);
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
        // Streamed as the pods' list is (`run`), and listed if that is refused.
        let watch = |streaming| {
            let mut config = streaming_list::config(streaming);
            if let Some(selector) = &field_selector {
                config = config.fields(selector);
            }
            watcher::watcher(api.clone(), config)
                .backoff(WatchBackoff::new())
                .applied_objects()
                .boxed()
        };
        let mut streaming = true;
        let mut events = watch(streaming);
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                None => return,
                Some(Ok(node)) => self.observe_node(&node),
                Some(Err(error)) if streaming && streaming_list::watcher_refused(&error) => {
                    tracing::info!(%error, "the API server refuses streaming lists; the node watch lists instead");
                    streaming = false;
                    events = watch(streaming);
                }
                Some(Err(error)) => tracing::warn!(%error, "node watch failed; retrying"),
            }
        }
    }

    /// Passes what the API server holds of a Node to the hollow node serving it: its
    /// fault annotations, whether it has NoExecute taints, its pod CIDR, and its
    /// conditions.
    pub(crate) fn observe_node(&self, node: &Node) {
        let Some(name) = node.metadata.name.as_deref() else {
            return;
        };
        let Some(shared) = self.nodes.read().get(name).cloned() else {
            return;
        };
        shared.observe_node_annotations(
            node.metadata
                .annotations
                .as_ref()
                .unwrap_or(&Default::default()),
        );
        shared.no_execute_taints.store(
            super::affinity::has_no_execute_taint(node),
            Ordering::Relaxed,
        );
        shared.observe_pod_cidr(node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()));
        if let Some(conditions) = node.status.as_ref().and_then(|s| s.conditions.as_deref()) {
            super::heartbeat::observe_server_conditions(&shared, conditions);
        }
    }

    fn apply(&self, pod: Pod) {
        if let Some(node) = self.node_of(&pod) {
            node.apply_pod(pod);
        }
    }
}

/// Lists the pods bound to `node` and gives it those it does not know yet; the shared
/// watch carries every later change. A failure is left to the watch's next re-list.
async fn list_own_pods(node: Arc<NodeShared>) {
    let api: Api<Pod> = Api::all(node.client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={}", node.config.name));
    let listed = tokio::select! {
        () = node.cancel.cancelled() => return,
        listed = api.list(&params) => listed,
    };
    match listed {
        Ok(list) => {
            let known: HashSet<String> = node.pod_uids().into_iter().collect();
            for pod in list.items {
                if pod
                    .metadata
                    .uid
                    .as_ref()
                    .is_some_and(|uid| !known.contains(uid))
                {
                    node.apply_pod(pod);
                }
            }
        }
        Err(error) => {
            tracing::warn!(node = %node.config.name, %error, "cannot list the node's pods; the watch's next re-list brings them")
        }
    }
}
