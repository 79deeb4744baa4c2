//! The exact requests of registration, lease renewal and status writes, checked
//! against a `tower_test` mock API server.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use kube::Api;
use kube::client::Body;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_test::mock::{Handle, SendResponse};

use super::shared::NodeShared;
use super::{HollowNode, NodeTiming, heartbeat, register};
use crate::annotations::MANAGED as MANAGED_ANNOTATION;
use crate::cadvisor::{Cadvisor, FakeCadvisor};

pub(super) type MockHandle = Handle<Request<Body>, Response<Body>>;

pub(super) fn mock_client() -> (kube::Client, MockHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

pub(super) async fn next(
    handle: &mut MockHandle,
) -> (
    Method,
    String,
    Option<String>,
    Value,
    SendResponse<Response<Body>>,
) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request within 10s")
        .expect("the client is alive");
    let method = request.method().clone();
    let uri = request.uri().to_string();
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (method, uri, content_type, body, send)
}

pub(super) fn respond(send: SendResponse<Response<Body>>, code: u16, body: Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

pub(super) fn status(code: u16, reason: &str) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason })
}

#[tokio::test]
async fn registration_creates_the_node_and_adopts_its_own_on_conflict() {
    let (client, mut handle) = mock_client();
    let node = HollowNode::builder("n1")
        .label("zone", "a")
        .build()
        .unwrap();
    let server = tokio::spawn(async move {
        let (method, uri, _, body, send) = next(&mut handle).await;
        assert_eq!((method, uri.as_str()), (Method::POST, "/api/v1/nodes?"));
        assert_eq!(body["metadata"]["name"], "n1");
        assert_eq!(body["metadata"]["labels"]["zone"], "a");
        assert_eq!(body["metadata"]["annotations"][MANAGED_ANNOTATION], "true");
        assert_eq!(body["spec"]["providerID"], "hollow://n1");
        // Created with its status, as the kubelet creates its Node.
        assert_eq!(body["status"]["conditions"][0]["type"], "Ready");
        respond(send, 409, status(409, "AlreadyExists"));

        let (method, uri, _, _, send) = next(&mut handle).await;
        assert_eq!((method, uri.as_str()), (Method::GET, "/api/v1/nodes/n1"));
        respond(
            send,
            200,
            json!({ "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": "n1", "uid": "u1", "annotations": { MANAGED_ANNOTATION: "true" } } }),
        );

        let (method, uri, content_type, body, send) = next(&mut handle).await;
        assert_eq!((method, uri.as_str()), (Method::PATCH, "/api/v1/nodes/n1?"));
        assert_eq!(
            content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert_eq!(body["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
        respond(
            send,
            200,
            json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1", "uid": "u1" } }),
        );
    });
    let nodes: Api<Node> = Api::all(client);
    let ready = NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let (registered, created) = register::register(
        &nodes,
        &node.config.name,
        &node.config.registration,
        Some(ready),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(registered.metadata.uid.as_deref(), Some("u1"));
    assert!(!created, "adopted, not created");
    server.await.unwrap();
}

#[tokio::test]
async fn registration_refuses_a_foreign_node() {
    let (client, mut handle) = mock_client();
    let node = HollowNode::builder("n1").events(false).build().unwrap();
    let server = tokio::spawn(async move {
        let (_, _, _, _, send) = next(&mut handle).await;
        respond(send, 409, status(409, "AlreadyExists"));
        let (_, _, _, _, send) = next(&mut handle).await;
        respond(
            send,
            200,
            json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" } }),
        );
    });
    let nodes: Api<Node> = Api::all(client);
    let error = register::register(
        &nodes,
        &node.config.name,
        &node.config.registration,
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, super::Error::NodeExists(ref name) if name == "n1"),
        "{error}"
    );
    server.await.unwrap();
}

/// A node's shared state, as `start_with` makes it, on `client`.
async fn node_shared(
    node: HollowNode,
    client: kube::Client,
    cancel: CancellationToken,
) -> Arc<NodeShared> {
    let machine = FakeCadvisor::default().machine_info().await.unwrap();
    Arc::new(NodeShared::new(
        node.config,
        client,
        "hollow".into(),
        "hollow://0.1.0".into(),
        machine,
        cancel,
    ))
}

#[tokio::test]
async fn heartbeats_write_status_then_create_and_renew_the_lease() {
    let (client, mut handle) = mock_client();
    let timing = NodeTiming {
        lease_renew: Duration::from_millis(300),
        lease_duration: Duration::from_secs(2),
        status_update: Duration::from_secs(60),
        ..Default::default()
    };
    // Events are written by tasks of their own; these tests follow the node's requests.
    // The lean profile: the kubelet profile reads the Lease before it creates it.
    let node = HollowNode::builder("n1")
        .timing(timing)
        .events(false)
        .traffic(super::TrafficProfile::Lean)
        .build()
        .unwrap();
    let cancel = CancellationToken::new();
    let shared = node_shared(node, client, cancel.clone()).await;
    let heartbeats = heartbeat::Heartbeats::start();
    heartbeats.add(&shared, "node-uid".into(), None);

    // The first status write: a strategic merge patch of the status subresource.
    let (method, uri, content_type, body, send) = next(&mut handle).await;
    assert_eq!(
        (method, uri.as_str()),
        (Method::PATCH, "/api/v1/nodes/n1/status?")
    );
    assert_eq!(
        content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let conditions: Vec<&str> = body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        conditions,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    assert_eq!(
        body["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        10250
    );
    respond(
        send,
        200,
        json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" } }),
    );

    // The first renewal creates the Lease at once, with an owner reference. Here one
    // exists already (a restarted process): 409, then it is read and renewed.
    let (method, uri, _, body, send) = next(&mut handle).await;
    assert_eq!(
        (method, uri.as_str()),
        (
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases?"
        )
    );
    assert_eq!(body["spec"]["holderIdentity"], "n1");
    assert_eq!(body["spec"]["leaseDurationSeconds"], 2);
    assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "node-uid");
    assert_eq!(body["metadata"]["ownerReferences"][0]["kind"], "Node");
    let mut lease = body.clone();
    lease["metadata"]["resourceVersion"] = json!("1");
    respond(send, 409, status(409, "AlreadyExists"));
    let (method, uri, _, _, send) = next(&mut handle).await;
    assert_eq!(
        (method, uri.as_str()),
        (
            Method::GET,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"
        )
    );
    respond(send, 200, lease.clone());
    let (method, uri, _, body, send) = next(&mut handle).await;
    assert_eq!(
        (method, uri.as_str()),
        (
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1?"
        )
    );
    assert_eq!(body["metadata"]["resourceVersion"], "1");
    respond(send, 200, lease.clone());

    // Renewal: a PUT of the Lease held, with its resourceVersion and a new renewTime.
    let (method, uri, _, body, send) = next(&mut handle).await;
    assert_eq!(
        (method, uri.as_str()),
        (
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1?"
        )
    );
    assert_eq!(body["metadata"]["resourceVersion"], "1");
    assert!(body["spec"]["renewTime"].as_str().is_some());
    respond(send, 200, lease);

    // A node shut down beats no more (the next renewal was due in 300 ms).
    cancel.cancel();
    let after = tokio::time::timeout(Duration::from_secs(1), handle.next_request()).await;
    assert!(!matches!(after, Ok(Some(_))), "a request after shutdown");
}

/// A node's heartbeat state and runtime listener live as long as the node, and a pod's
/// worker and inbox as long as its pod, so they are per-node and per-pod memory. A field or an
/// unboxed await that makes them grow (the heartbeat's once held 4.3 KiB: two `Api`s,
/// the Lease and the last written status) fails here.
#[tokio::test]
async fn long_lived_node_tasks_stay_small() {
    let (client, _handle) = mock_client();
    let node = HollowNode::builder("n1").events(false).build().unwrap();
    let shared = node_shared(node, client, CancellationToken::new()).await;
    let heartbeat = size_of::<heartbeat::Slot>();
    let listener = super::actions::listen(
        shared.clone(),
        shared.config.runtime.subscribe(),
        shared.config.runtime.subscribe_actions(),
    );
    let sizes = (heartbeat, size_of_val(&listener));
    assert!(sizes.0 <= 256 && sizes.1 <= 1024, "{sizes:?} bytes");
    // A pod worker lives as long as its pod.
    let pod = k8s_openapi::api::core::v1::Pod {
        metadata: kube::api::ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("pod-uid".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let inbox = Arc::new(super::shared::PodInbox::new("pod-uid".into(), &pod));
    let worker = super::worker::PodWorker::new(shared, inbox.clone(), Arc::new(pod), None, None);
    // Between passes a pod is its inbox and its worker's boxed state, no task.
    let held = (size_of_val(&worker), size_of_val(&*inbox));
    assert!(
        held.0 <= 272 && held.1 <= 128,
        "a pod's worker and inbox are {held:?} bytes"
    );
}

#[tokio::test]
async fn a_kubelet_profile_node_watches_as_the_kubelets_informers_and_makes_its_csinode() {
    let (client, mut handle) = mock_client();
    let cancel = CancellationToken::new();
    let node = HollowNode::builder("n1").build().unwrap();
    let shared = node_shared(node, client.clone(), cancel.clone()).await;
    super::traffic::start_informers(&shared, true);
    tokio::spawn(super::traffic::register_csinode(client, "n1".into()));
    let mut watches = Vec::new();
    let mut held = Vec::new();
    let mut created = None;
    // Five watches, then the CSINode's three requests, in any order.
    while watches.len() < 5 || created.is_none() {
        let (method, uri, _, body, send) = next(&mut handle).await;
        let (path, query) = uri.split_once('?').unwrap_or((&uri, ""));
        let query: std::collections::BTreeMap<String, String> =
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        match (method, path) {
            (Method::GET, "/api/v1/nodes/n1") => respond(
                send,
                200,
                json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1", "uid": "u1" } }),
            ),
            (Method::GET, "/apis/storage.k8s.io/v1/csinodes/n1") => {
                respond(send, 404, status(404, "NotFound"));
            }
            (Method::POST, "/apis/storage.k8s.io/v1/csinodes") => {
                created = Some(body.clone());
                respond(send, 201, body);
            }
            (Method::GET, path) => {
                assert_eq!(query["watch"], "true", "{uri}");
                // client-go's watch-list: the current objects, then changes.
                assert_eq!(query["sendInitialEvents"], "true", "{uri}");
                assert_eq!(query["resourceVersionMatch"], "NotOlderThan", "{uri}");
                assert_eq!(query["allowWatchBookmarks"], "true", "{uri}");
                let timeout: u64 = query["timeoutSeconds"].parse().unwrap();
                assert!((300..=600).contains(&timeout), "{uri}");
                watches.push((path.to_string(), query.get("fieldSelector").cloned()));
                held.push(send);
            }
            (method, _) => panic!("unexpected request {method} {uri}"),
        }
    }
    watches.sort();
    let selector = |s: &str| Some(s.to_string());
    assert_eq!(
        watches,
        [
            ("/api/v1/nodes".to_string(), selector("metadata.name=n1")),
            ("/api/v1/pods".to_string(), selector("spec.nodeName=n1")),
            ("/api/v1/services".to_string(), None),
            ("/apis/node.k8s.io/v1/runtimeclasses".to_string(), None),
            ("/apis/storage.k8s.io/v1/csidrivers".to_string(), None),
        ]
    );
    let created = created.unwrap();
    assert_eq!(created["metadata"]["ownerReferences"][0]["uid"], "u1");
    assert_eq!(created["spec"]["drivers"], json!([]));
    cancel.cancel();
}

fn version_info(git_version: &str, minor: &str) -> Value {
    json!({ "major": "1", "minor": minor, "gitVersion": git_version, "gitCommit": "", "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z", "goVersion": "go1.26", "compiler": "gc", "platform": "linux/amd64" })
}

#[tokio::test]
async fn a_node_reads_the_servers_version_first_and_reports_it() {
    let (client, mut handle) = mock_client();
    let node = HollowNode::builder("n1").build().unwrap();
    let server = tokio::spawn(async move {
        let (method, uri, _, _, send) = next(&mut handle).await;
        assert_eq!((method, uri.as_str()), (Method::GET, "/version"));
        // Newer than hollow knows: the node behaves as the newest it knows, and reports
        // the server's version.
        respond(send, 200, version_info("v1.40.1", "40"));
        let (method, uri, _, body, send) = next(&mut handle).await;
        assert_eq!((method, uri.as_str()), (Method::POST, "/api/v1/nodes?"));
        assert_eq!(body["status"]["nodeInfo"]["kubeletVersion"], "v1.40.1");
        respond(send, 403, status(403, "Forbidden"));
    });
    let error = node.start(client).await.unwrap_err();
    assert!(
        matches!(error, super::Error::Registration { .. }),
        "{error}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_server_older_than_hollow_knows_is_refused_with_a_clear_error() {
    let (client, mut handle) = mock_client();
    let node = HollowNode::builder("n1").build().unwrap();
    let server = tokio::spawn(async move {
        let (method, uri, _, _, send) = next(&mut handle).await;
        assert_eq!((method, uri.as_str()), (Method::GET, "/version"));
        respond(send, 200, version_info("v1.30.14", "30"));
    });
    let error = node.start(client).await.unwrap_err();
    assert!(
        matches!(
            error,
            super::Error::Version(crate::version::VersionError::TooOld { .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("v1.30.14"), "{error}");
    server.await.unwrap();
}

#[tokio::test]
async fn a_node_given_its_version_does_not_ask_the_server() {
    let (client, mut handle) = mock_client();
    let node = HollowNode::builder("n1")
        .kubelet_version("v1.35.4")
        .build()
        .unwrap();
    let server = tokio::spawn(async move {
        let (method, uri, _, body, send) = next(&mut handle).await;
        assert_eq!((method, uri.as_str()), (Method::POST, "/api/v1/nodes?"));
        assert_eq!(body["status"]["nodeInfo"]["kubeletVersion"], "v1.35.4");
        respond(send, 403, status(403, "Forbidden"));
    });
    assert!(node.start(client).await.is_err());
    server.await.unwrap();
}

#[tokio::test]
async fn a_failing_version_read_is_retried_as_registration_is() {
    let (client, mut handle) = mock_client();
    let node = HollowNode::builder("n1").build().unwrap();
    let server = tokio::spawn(async move {
        let (method, uri, _, _, send) = next(&mut handle).await;
        assert_eq!((method, uri.as_str()), (Method::GET, "/version"));
        respond(send, 503, status(503, "ServiceUnavailable"));
        let (method, uri, _, _, send) = next(&mut handle).await;
        assert_eq!(
            (method, uri.as_str()),
            (Method::GET, "/version"),
            "asked again"
        );
        respond(send, 200, version_info("v1.35.4", "35"));
        let (method, uri, _, body, send) = next(&mut handle).await;
        assert_eq!((method, uri.as_str()), (Method::POST, "/api/v1/nodes?"));
        assert_eq!(body["status"]["nodeInfo"]["kubeletVersion"], "v1.35.4");
        respond(send, 403, status(403, "Forbidden"));
    });
    let error = node.start(client).await.unwrap_err();
    assert!(
        matches!(error, super::Error::Registration { .. }),
        "{error}"
    );
    server.await.unwrap();
}
