//! [`FakeProxier`]: records the rules kube-proxy would program.

use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use super::Proxier;
use crate::error::Result;

/// The rules as of the last sync: for each `namespace/service`, its ready endpoint
/// addresses.
pub type ProxyRules = BTreeMap<String, BTreeSet<String>>;

/// A [`Proxier`] that keeps Services and EndpointSlices and, on each sync, records the
/// rules it would program. Clones share state.
#[derive(Clone, Default)]
pub struct FakeProxier {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    services: BTreeSet<String>,
    slices: BTreeMap<String, (String, BTreeSet<String>)>,
    rules: ProxyRules,
    syncs: usize,
}

impl std::fmt::Debug for FakeProxier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("FakeProxier")
            .field("rules", &state.rules)
            .field("syncs", &state.syncs)
            .finish()
    }
}

fn key(namespace: Option<&String>, name: Option<&String>) -> String {
    format!(
        "{}/{}",
        namespace.map_or("default", String::as_str),
        name.map_or("", String::as_str)
    )
}

impl FakeProxier {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock()
    }

    /// The rules programmed at the last sync.
    pub fn rules(&self) -> ProxyRules {
        self.lock().rules.clone()
    }

    /// How many syncs ran.
    pub fn sync_count(&self) -> usize {
        self.lock().syncs
    }
}

#[async_trait]
impl Proxier for FakeProxier {
    async fn on_service_update(&self, service: &Service) -> Result<()> {
        let m = &service.metadata;
        self.lock()
            .services
            .insert(key(m.namespace.as_ref(), m.name.as_ref()));
        Ok(())
    }

    async fn on_service_delete(&self, service: &Service) -> Result<()> {
        let m = &service.metadata;
        self.lock()
            .services
            .remove(&key(m.namespace.as_ref(), m.name.as_ref()));
        Ok(())
    }

    async fn on_endpoint_slice_update(&self, slice: &EndpointSlice) -> Result<()> {
        let m = &slice.metadata;
        let service = m
            .labels
            .as_ref()
            .and_then(|labels| labels.get("kubernetes.io/service-name"));
        let addresses = endpoints(slice)
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .flat_map(|e| e.addresses.iter().cloned())
            .collect();
        self.lock().slices.insert(
            key(m.namespace.as_ref(), m.name.as_ref()),
            (key(m.namespace.as_ref(), service), addresses),
        );
        Ok(())
    }

    async fn on_endpoint_slice_delete(&self, slice: &EndpointSlice) -> Result<()> {
        let m = &slice.metadata;
        self.lock()
            .slices
            .remove(&key(m.namespace.as_ref(), m.name.as_ref()));
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        let mut state = self.lock();
        let mut rules = ProxyRules::new();
        for service in &state.services {
            rules.insert(service.clone(), BTreeSet::new());
        }
        for (service, addresses) in state.slices.values() {
            if let Some(endpoints) = rules.get_mut(service) {
                endpoints.extend(addresses.iter().cloned());
            }
        }
        state.rules = rules;
        state.syncs += 1;
        Ok(())
    }
}

// The 1.36 API made an EndpointSlice's endpoints optional; the library builds
// against any API version.
k8s_openapi::k8s_if_ge_1_36! {
    fn endpoints(slice: &EndpointSlice) -> &[Endpoint] {
        slice.endpoints.as_deref().unwrap_or_default()
    }
}
k8s_openapi::k8s_if_le_1_35! {
    fn endpoints(slice: &EndpointSlice) -> &[Endpoint] {
        &slice.endpoints
    }
}
