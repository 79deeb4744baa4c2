//! What a container's environment needs before the container is created: the
//! ConfigMaps, Secrets and keys it names, and the files its `fileKeyRef` variables read.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;

use super::PodWorker;
use crate::node::env_files;
use crate::runtime::RuntimeService;
use crate::version::Behaviour;

impl PodWorker {
    /// The values of `container`'s `fileKeyRef` variables, by name, once every object
    /// and file its environment reads is there; else why it cannot be made, as the
    /// kubelet's `makeEnvironmentVariables` words it.
    pub(super) async fn env_inputs(
        &self,
        runtime: &dyn RuntimeService,
        sandbox_id: &str,
        container: Option<&Container>,
    ) -> Result<BTreeMap<String, String>, String> {
        let Some(container) = container else {
            return Ok(BTreeMap::new());
        };
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let problem = self
            .shared
            .found
            .env_problem(
                &self.shared.client,
                self.shared.traffic.as_deref(),
                namespace,
                container,
            )
            .await;
        if let Some(message) = problem {
            return Err(message);
        }
        if !self.shared.config.kubelet.has(Behaviour::EnvFiles) {
            return Ok(BTreeMap::new());
        }
        env_files::file_values(runtime, sandbox_id, &self.pod, container).await
    }
}
