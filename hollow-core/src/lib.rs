//! # hollow-core
//!
//! Hollow Kubernetes nodes: fake kubelets that a real control plane cannot tell from
//! real ones.
//!
//! - Four provider traits, each with a ready fake: [`runtime::RuntimeService`]
//!   ([`runtime::FakeRuntime`]), [`cadvisor::Cadvisor`], [`node_status::NodeStatusProvider`]
//!   and [`proxier::Proxier`].
//! - The hollow node engine in [`node`]: registration, Lease, node status, pods driven to
//!   the status a real kubelet writes, graceful deletion; [`node::HollowCluster`] runs many
//!   nodes on one client and one pod watch.
//! - With the `testenv` feature, [`testenv`] starts a real local control plane (etcd,
//!   kube-apiserver, kube-scheduler, kube-controller-manager) for tests.
//!
//! ```no_run
//! use hollow_core::node::HollowNode;
//! use hollow_core::testenv::TestEnv;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let env = TestEnv::builder().start().await?;
//! let node = HollowNode::builder("hollow-0")
//!     .label("topology.kubernetes.io/zone", "a")
//!     .capacity("nvidia.com/gpu", "8")
//!     .build()?
//!     .start(env.client())
//!     .await?;
//! node.wait_ready(Duration::from_secs(30)).await?;
//! // ... create pods; they run on the hollow node with kubelet-exact statuses ...
//! node.shutdown().await;
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cadvisor;
pub mod connect;
pub mod error;
#[cfg(feature = "kubelet-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubelet-api")))]
pub mod kubelet_api;
pub mod lifecycle;
pub mod node;
pub mod node_status;
pub mod proxier;
pub mod proxy;
pub mod quantity;
pub mod runtime;
#[cfg(feature = "testenv")]
#[cfg_attr(docsrs, doc(cfg(feature = "testenv")))]
pub mod testenv;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use error::{Error, Result};
