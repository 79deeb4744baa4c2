//! # hollow-core
//!
//! Hollow Kubernetes nodes: fake kubelets that a real control plane cannot tell from
//! real ones. A controller test against a real API server, scheduler and controller
//! manager, with three hollow nodes:
//!
//! ```no_run
//! # // rustdoc compiles doctests without `--test`, which drops `#[test]` functions
//! # // unchecked: here `tokio::test` is `tokio::main`, so the test below is compiled.
//! # mod tokio { pub use ::tokio::*; pub use ::tokio::main as test; }
//! use std::{sync::Arc, time::Duration};
//!
//! use futures::StreamExt;
//! use hollow_core::{node::HollowCluster, testenv::TestEnv};
//! use k8s_openapi::api::core::v1::{Node, Pod};
//! use kube::api::{Api, Patch, PatchParams, PostParams, ResourceExt};
//! use kube::runtime::{Controller, controller::Action, wait::await_condition};
//! use kube::{Client, Error};
//! use serde_json::json;
//!
//! const ZONE: &str = "topology.kubernetes.io/zone";
//! const POD_ZONE: &str = "example.hollow.dev/zone";
//!
//! /// The controller under test: labels each scheduled pod with its node's zone.
//! async fn reconcile(pod: Arc<Pod>, client: Arc<Client>) -> Result<Action, Error> {
//!     if let Some(node) = pod.spec.as_ref().and_then(|spec| spec.node_name.as_ref()) {
//!         let node = Api::<Node>::all(Client::clone(&client)).get(node).await?;
//!         let zone = node.labels().get(ZONE);
//!         let patch = json!({ "metadata": { "labels": { POD_ZONE: zone } } });
//!         Api::<Pod>::namespaced(Client::clone(&client), &pod.namespace().unwrap())
//!             .patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch))
//!             .await?;
//!     }
//!     Ok(Action::await_change())
//! }
//!
//! #[tokio::test]
//! async fn pods_get_their_node_zone() -> Result<(), Box<dyn std::error::Error>> {
//!     let env = TestEnv::builder().start().await?; // etcd, apiserver, scheduler, KCM
//!     let _nodes = HollowCluster::builder("zone")
//!         .nodes(3, |i, node| node.label(ZONE, ["a", "b", "c"][i]))
//!         .start(env.client())
//!         .await?; // every node is Ready
//!     let retry = |_, _: &Error, _| Action::requeue(Duration::from_secs(1));
//!     let controller = Controller::new(Api::<Pod>::all(env.client()), Default::default())
//!         .run(reconcile, retry, Arc::new(env.client()));
//!     tokio::spawn(controller.for_each(|_| async {}));
//!
//!     let pods = Api::<Pod>::namespaced(env.client(), "default");
//!     let pod = json!({ "metadata": { "name": "web" },
//!         "spec": { "containers": [{ "name": "web", "image": "nginx" }] } });
//!     pods.create(&PostParams::default(), &serde_json::from_value(pod)?).await?;
//!     let labelled = await_condition(pods, "web", |pod: Option<&Pod>| {
//!         pod.is_some_and(|pod| pod.labels().contains_key(POD_ZONE))
//!     });
//!     let pod = tokio::time::timeout(Duration::from_secs(60), labelled).await??.unwrap();
//!     let node = pod.spec.as_ref().and_then(|spec| spec.node_name.as_ref()).unwrap();
//!     let node = Api::<Node>::all(env.client()).get(node).await?;
//!     assert_eq!(pod.labels().get(POD_ZONE), node.labels().get(ZONE));
//!     Ok(())
//! }
//! ```
//!
//! [`examples/controller.rs`](https://github.com/hollow-rs/hollow/blob/main/examples/controller.rs)
//! is this test with a Deployment of six, run in CI. [`testenv`] (feature `testenv`)
//! runs the upstream etcd and Kubernetes binaries: build them once with the repository's
//! `control-plane/install`, or point `HOLLOW_K8S_BIN` at them.
//!
//! - Four provider traits, each with a ready fake: [`runtime::RuntimeService`]
//!   ([`runtime::FakeRuntime`]), [`cadvisor::Cadvisor`], [`node_status::NodeStatusProvider`]
//!   and [`proxier::Proxier`].
//! - The hollow node engine in [`node`]: registration, Lease, node status, pods driven to
//!   the status a real kubelet writes, graceful deletion; [`node::HollowCluster`] runs many
//!   nodes on one client and one pod watch.
//! - [`manage::NodeManager`] serves Nodes that others create (Karpenter's KWOK provider,
//!   an autoscaler, `kubectl create`), as KWOK does, with the same engine.
//! - With the `tls-bootstrap` feature, `bootstrap::TlsBootstrap` gives each node its own
//!   `system:node:<name>` identity, as the kubelet's TLS bootstrap does.
//! - With the `testenv` feature, [`testenv`] starts a real local control plane (etcd,
//!   kube-apiserver, kube-scheduler, kube-controller-manager) for tests.
//!
//! One node, configured by hand:
//!
//! ```no_run
//! use hollow_core::node::HollowNode;
//! use hollow_core::testenv::TestEnv;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let env = TestEnv::builder().start().await?;
//! let node = HollowNode::builder("hollow-0")
//!     .label("topology.kubernetes.io/zone", "a")
//!     .capacity("nvidia.com/gpu", "8")
//!     .build()?
//!     .start(env.client())
//!     .await?; // Ready when this returns
//! // ... create pods; they run on the hollow node with kubelet-exact statuses ...
//! node.shutdown().await;
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod annotations;
mod backoff;
#[cfg(feature = "tls-bootstrap")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls-bootstrap")))]
pub mod bootstrap;
pub mod cadvisor;
pub mod connect;
pub mod error;
mod interned;
#[cfg(feature = "kubelet-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubelet-api")))]
pub mod kubelet_api;
pub mod lifecycle;
pub mod manage;
pub mod node;
pub mod node_status;
pub mod pod;
pub mod proxier;
pub mod proxy;
pub mod quantity;
pub mod runtime;
mod streaming_list;
#[cfg(feature = "testenv")]
#[cfg_attr(docsrs, doc(cfg(feature = "testenv")))]
pub mod testenv;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod version;

pub use error::{Error, Result};

/// What the fuzz tests share (cases, seed corpus, runner); also `tests/fuzz_parsers.rs`'s.
#[cfg(test)]
#[path = "../tests/fuzz_support/mod.rs"]
mod fuzz_support;

#[cfg(all(test, feature = "mock"))]
mod tests {
    use std::sync::Arc;

    #[test]
    fn every_provider_trait_has_its_mock() {
        let _runtime: Arc<dyn crate::runtime::RuntimeService> =
            Arc::new(crate::runtime::MockRuntimeService::new());
        let _cadvisor: Arc<dyn crate::cadvisor::Cadvisor> =
            Arc::new(crate::cadvisor::MockCadvisor::new());
        let _status: Arc<dyn crate::node_status::NodeStatusProvider> =
            Arc::new(crate::node_status::MockNodeStatusProvider::new());
        let _proxier: Arc<dyn crate::proxier::Proxier> =
            Arc::new(crate::proxier::MockProxier::new());
    }
}
