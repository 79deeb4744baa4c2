//! What a runtime asks of a pod's API object (record an Event, remove finalizers,
//! delete), done with the node's client for the node's own pods only.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};

use super::shared::NodeShared;
use crate::runtime::{ContainerEvent, PodAction, PodActionKind};

/// Listens to the runtime for as long as the node runs: container events nudge the
/// pod workers, pod actions are performed. One task per node serves both streams.
pub(crate) async fn listen(
    shared: Arc<NodeShared>,
    mut events: Option<broadcast::Receiver<ContainerEvent>>,
    mut actions: Option<broadcast::Receiver<PodAction>>,
) {
    while events.is_some() || actions.is_some() {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            event = next(&mut events) => match event {
                Err(RecvError::Closed) => events = None,
                event => shared.route_event(event),
            },
            action = next(&mut actions) => match action {
                // Boxed: a waiting loop holds no room for the API calls of an action.
                Ok(action) => Box::pin(perform(&shared, action)).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(node = %shared.config.name, missed, "pod actions were dropped");
                }
                Err(RecvError::Closed) => actions = None,
            },
        }
    }
}

/// The next message of a stream the runtime may not offer (then, never).
async fn next<T: Clone>(stream: &mut Option<broadcast::Receiver<T>>) -> Result<T, RecvError> {
    match stream {
        Some(stream) => stream.recv().await,
        None => std::future::pending().await,
    }
}

async fn perform(shared: &NodeShared, action: PodAction) {
    if !shared.pod_uids().contains(&action.pod_uid) {
        return;
    }
    let result = match &action.kind {
        PodActionKind::Event(event) => {
            record_event(
                shared,
                &action,
                event.type_.as_str(),
                &event.reason,
                &event.message,
            )
            .await
        }
        PodActionKind::RemoveFinalizers => {
            let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &action.namespace);
            // The UID in the patch is a precondition: a new pod of the same name is left alone.
            let patch = json!({ "metadata": { "uid": action.pod_uid, "finalizers": null } });
            pods.patch(&action.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(drop)
        }
        PodActionKind::Delete => {
            let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &action.namespace);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(action.pod_uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            pods.delete(&action.name, &params).await.map(drop)
        }
    };
    match result {
        Ok(()) => {}
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
        Err(error) => tracing::warn!(
            node = %shared.config.name,
            pod = %action.name,
            %error,
            "lifecycle action on the pod failed"
        ),
    }
}

/// Records an Event about the pod from the node's kubelet, as the kubelet's recorder
/// writes them (core/v1, source kubelet on this host).
async fn record_event(
    shared: &NodeShared,
    action: &PodAction,
    type_: &str,
    reason: &str,
    message: &str,
) -> Result<(), kube::Error> {
    let now = Time(Timestamp::now());
    let node = shared.config.name.clone();
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", action.name)),
            namespace: Some(action.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(action.name.clone()),
            namespace: Some(action.namespace.clone()),
            uid: Some(action.pod_uid.clone()),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.clone()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node),
        ..Default::default()
    };
    let events: Api<Event> = Api::namespaced(shared.client.clone(), &action.namespace);
    events
        .create(&PostParams::default(), &event)
        .await
        .map(drop)
}
