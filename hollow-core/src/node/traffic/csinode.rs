//! The node's CSINode, as the kubelet's CSI plugin makes it when it starts
//! (`tryInitializeCSINodeWithAnnotation` and `CreateCSINode` in
//! pkg/volume/csi/nodeinfomanager/nodeinfomanager.go): the Node is read for its UID, the
//! CSINode read, and created (owned by the Node, no drivers, the in-tree plugins whose
//! migration to CSI is complete in its annotation) when it is missing; one that another
//! Node of the same name owned is deleted and made again.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::{CSINode, CSINodeSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::backoff::Doubling;

/// The annotation naming the migrated in-tree plugins, and their names: every one
/// `migratedPlugins` in pkg/volume/csi/csi_plugin.go lists as migrated, sorted as
/// `setMigrationAnnotation` joins them.
const MIGRATED_PLUGINS_ANNOTATION: &str = "storage.alpha.kubernetes.io/migrated-plugins";
const MIGRATED_PLUGINS: &str = "kubernetes.io/aws-ebs,kubernetes.io/azure-disk,kubernetes.io/azure-file,kubernetes.io/cinder,kubernetes.io/gce-pd,kubernetes.io/portworx-volume,kubernetes.io/vsphere-volume";
/// Retries: the kubelet's `initializeCSINode` backs off from 1 s, doubling.
const RETRIES: Doubling = Doubling::new(Duration::from_secs(1), Duration::from_secs(32));
const ATTEMPTS: usize = 8;

/// Makes sure the CSINode of `node_name` exists, as the kubelet does at start.
pub(crate) async fn register_csinode(client: kube::Client, node_name: String) {
    for delay in RETRIES.delays().take(ATTEMPTS) {
        match try_register(&client, &node_name).await {
            Ok(()) => return,
            Err(error) => {
                tracing::debug!(node = %node_name, %error, "cannot initialize the CSINode yet");
                tokio::time::sleep(delay).await;
            }
        }
    }
    tracing::warn!(node = %node_name, "gave up initializing the node's CSINode");
}

async fn try_register(client: &kube::Client, node_name: &str) -> Result<(), kube::Error> {
    let node = Api::<Node>::all(client.clone()).get(node_name).await?;
    let uid = node.metadata.uid.unwrap_or_default();
    let csinodes: Api<CSINode> = Api::all(client.clone());
    match csinodes.get_opt(node_name).await? {
        None => {
            csinodes
                .create(&PostParams::default(), &csinode(node_name, &uid))
                .await?;
        }
        Some(existing) => {
            let owned = existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|owner| owner.kind == "Node" && owner.uid == uid);
            if !owned {
                csinodes.delete(node_name, &DeleteParams::default()).await?;
                // The kubelet fails this attempt and makes it anew on the next.
                return Err(kube::Error::Api(Box::new(kube::core::Status::failure(
                    "existing CSINode was owned by another Node",
                    "Conflict",
                ))));
            }
            let annotated = existing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MIGRATED_PLUGINS_ANNOTATION))
                .is_some_and(|value| value == MIGRATED_PLUGINS);
            if !annotated {
                let mut updated = existing;
                updated
                    .metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(MIGRATED_PLUGINS_ANNOTATION.into(), MIGRATED_PLUGINS.into());
                csinodes
                    .replace(node_name, &PostParams::default(), &updated)
                    .await?;
            }
        }
    }
    Ok(())
}

/// The CSINode the kubelet creates for a node (fields newer API versions add, such as
/// 1.37's `status`, unset: the library builds against any).
#[allow(clippy::needless_update)]
fn csinode(node_name: &str, node_uid: &str) -> CSINode {
    CSINode {
        metadata: ObjectMeta {
            name: Some(node_name.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node_name.into(),
                uid: node_uid.into(),
                ..Default::default()
            }]),
            annotations: Some(
                [(MIGRATED_PLUGINS_ANNOTATION.into(), MIGRATED_PLUGINS.into())].into(),
            ),
            ..Default::default()
        },
        spec: CSINodeSpec { drivers: vec![] },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csinode_is_owned_by_its_node_and_names_the_migrated_plugins() {
        let made = serde_json::to_value(csinode("n1", "uid-1")).unwrap();
        assert_eq!(
            made,
            serde_json::json!({
                "apiVersion": "storage.k8s.io/v1",
                "kind": "CSINode",
                "metadata": {
                    "name": "n1",
                    "annotations": { MIGRATED_PLUGINS_ANNOTATION: MIGRATED_PLUGINS },
                    "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "uid-1" }],
                },
                "spec": { "drivers": [] },
            })
        );
        let mut plugins: Vec<&str> = MIGRATED_PLUGINS.split(',').collect();
        plugins.sort_unstable();
        assert_eq!(plugins.join(","), MIGRATED_PLUGINS);
    }
}
