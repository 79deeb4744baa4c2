//! What kube-proxy would program: the provider behind the hollow proxy engine.
//!
//! The engine feeds a [`Proxier`] Service, EndpointSlice and Node changes and calls
//! [`Proxier::sync`] after batching them, as kube-proxy's min-sync-period does.
//!
//! ```
//! use hollow_core::proxier::{FakeProxier, Proxier};
//!
//! # tokio_test::block_on(async {
//! let fake = FakeProxier::default();
//! fake.sync().await?;
//! assert_eq!(fake.sync_count(), 1);
//! # Ok::<(), hollow_core::Error>(())
//! # }).unwrap();
//! ```

mod fake;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::error::Result;

pub use fake::{FakeProxier, ProxyRules};

/// kube-proxy's data-plane provider. Object safe: store it as `Arc<dyn Proxier>`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Proxier: Send + Sync + 'static {
    /// A Service was added or changed.
    async fn on_service_update(&self, service: &Service) -> Result<()>;
    /// A Service was deleted.
    async fn on_service_delete(&self, service: &Service) -> Result<()>;
    /// An EndpointSlice was added or changed.
    async fn on_endpoint_slice_update(&self, slice: &EndpointSlice) -> Result<()>;
    /// An EndpointSlice was deleted.
    async fn on_endpoint_slice_delete(&self, slice: &EndpointSlice) -> Result<()>;
    /// The proxy's own Node changed.
    async fn on_node_update(&self, _node: &Node) -> Result<()> {
        Ok(())
    }
    /// Programs the rules for everything seen so far.
    async fn sync(&self) -> Result<()>;
}
