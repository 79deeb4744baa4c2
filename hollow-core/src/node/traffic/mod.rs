//! The requests a node sends beyond what it needs to work: the kubelet's informers,
//! its per-object ConfigMap and Secret watches, its CSINode and its service account
//! tokens, so that an API server under hollow nodes carries what it carries under
//! kubelets ([`TrafficProfile::Kubelet`]).

mod csinode;
mod lines;
mod objects;
mod token;
mod watch;

pub(crate) use csinode::register_csinode;
pub(crate) use objects::{Kind, NodeTraffic, PodTraffic};

use std::sync::Arc;

use super::shared::NodeShared;

/// Which requests a node sends to the API server.
///
/// ```
/// use hollow_core::node::{HollowNode, TrafficProfile};
///
/// let node = HollowNode::builder("cheap-node").traffic(TrafficProfile::Lean).build()?;
/// # drop(node);
/// # Ok::<(), hollow_core::node::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrafficProfile {
    /// The requests a 1.36 kubelet sends, on its periods: its own pod and Node watches
    /// and its Services, RuntimeClasses and CSIDrivers informers (per node, as
    /// client-go's reflectors hold them); a watch on each ConfigMap and Secret its pods
    /// refer to (pkg/kubelet/util/manager/watch_based_manager.go); its CSINode; a
    /// TokenRequest for each projected service account token, renewed at 80 % of its
    /// lifetime (pkg/kubelet/token/token_manager.go); the status manager's read of a
    /// pod before each status patch, and its first status before the volumes are
    /// mounted (pkg/kubelet/status/status_manager.go, `SyncPod` in
    /// pkg/kubelet/kubelet.go). For load tests.
    #[default]
    Kubelet,
    /// Only what the node needs: the process's nodes share one pod watch and one Node
    /// watch, a pod's status is written once it changes. For functional tests that
    /// want the cheapest nodes.
    Lean,
}

impl std::str::FromStr for TrafficProfile {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "kubelet" => Ok(Self::Kubelet),
            "lean" => Ok(Self::Lean),
            other => Err(format!(
                "unknown traffic profile {other:?}: must be kubelet or lean"
            )),
        }
    }
}

impl std::fmt::Display for TrafficProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Kubelet => "kubelet",
            Self::Lean => "lean",
        })
    }
}

/// Starts the informers' watches a kubelet holds for its node (nothing in the lean
/// profile), each ending with the node. `process_watches`: the node's work is driven
/// by its process's shared pod and Node watches, so its own are held here as well (the
/// kubelet's pod source in pkg/kubelet/config/apiserver.go and its Node lister in
/// pkg/kubelet/kubelet.go watch only their own node's objects).
pub(crate) fn start_informers(shared: &Arc<NodeShared>, process_watches: bool) {
    if shared.config.traffic != TrafficProfile::Kubelet {
        return;
    }
    let name = &shared.config.name;
    let mut watched = vec![
        watch::Watched::informer("/api/v1/services", None),
        watch::Watched::informer("/apis/node.k8s.io/v1/runtimeclasses", None),
        watch::Watched::informer("/apis/storage.k8s.io/v1/csidrivers", None),
    ];
    if process_watches {
        watched.push(watch::Watched::informer(
            "/api/v1/pods",
            Some(format!("spec.nodeName={name}")),
        ));
        watched.push(watch::Watched::informer(
            "/api/v1/nodes",
            Some(format!("metadata.name={name}")),
        ));
    }
    for watched in watched {
        let (client, cancel) = (shared.client.clone(), shared.cancel.clone());
        tokio::spawn(watch::hold(client, watched, cancel, |_| {}));
    }
}
