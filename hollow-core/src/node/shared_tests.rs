//! Tests of the state one node's tasks share.

use super::*;

#[tokio::test(start_paused = true)]
async fn an_inbox_hands_over_the_latest_pod_nudges_and_the_end() {
    let pod = |version: &str| {
        let mut pod = Pod::default();
        pod.metadata.resource_version = Some(version.into());
        pod
    };
    let version = |pod: &Pod| pod.metadata.resource_version.clone().unwrap();
    let inbox = PodInbox::new(&pod("1"));
    inbox.offer(pod("2"));
    inbox.nudge();
    inbox.offer(pod("3"));
    // An older object than the latest (a relisted watch's) is dropped.
    inbox.offer(pod("2"));
    match inbox.next().await {
        Delivery::Pod(latest, previous, nudged) => {
            assert!(version(&latest) == "3" && nudged);
            assert_eq!(version(&previous.pod()), "1");
        }
        _ => panic!("expected the latest pod"),
    }
    // All of that was one delivery: nothing more is pending.
    let pending = tokio::time::timeout(Duration::from_secs(1), inbox.next()).await;
    assert!(pending.is_err());
    inbox.nudge();
    assert!(matches!(inbox.next().await, Delivery::Nudged));
    assert_eq!(version(&inbox.pod().unwrap()), "3");
    assert_eq!(version(&inbox.taken()), "3");
    // What the worker read itself: taken if newer, and a waiting older one dropped.
    inbox.offer(pod("4"));
    assert!(inbox.take_newer(&pod("2")).is_none());
    let previous = inbox.take_newer(&pod("5")).expect("newer");
    assert_eq!(version(&previous.pod()), "3");
    assert_eq!(version(&inbox.pod().unwrap()), "5");
    inbox.nudge();
    assert!(matches!(inbox.next().await, Delivery::Nudged));
    inbox.close();
    inbox.offer(pod("6"));
    assert!(matches!(inbox.next().await, Delivery::Gone));
    assert!(inbox.pod().is_none());
    assert_eq!(
        version(&inbox.taken()),
        "5",
        "the worker still reads its pod to clean up"
    );
}

#[tokio::test]
async fn liveness_wakes_a_waiter_once_ready_and_leased() {
    let liveness = Arc::new(Liveness::default());
    let waiter = tokio::spawn({
        let liveness = liveness.clone();
        async move { liveness.wait_ready().await }
    });
    liveness.set_ready(true);
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished() && liveness.last_lease_renewal().is_none());
    liveness.lease_renewed();
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert!(liveness.is_ready());
}

#[test]
fn derived_cidrs_are_stable_and_in_shared_space() {
    let a = derived_pod_cidr("node-a");
    assert_eq!(a, derived_pod_cidr("node-a"));
    let second: u8 = a.split('.').nth(1).unwrap().parse().unwrap();
    assert!((64..128).contains(&second), "{a}");
    assert!(a.ends_with(".0/24"));
}

#[test]
fn slimmed_pods_keep_no_spare_room() {
    // From text, as a watch reads it (a `Value` would tell serde each list's length).
    let json = serde_json::json!({
        "metadata": { "name": "p", "managedFields": [{ "manager": "m" }] },
        "spec": {
            "containers": [{
                "name": "c",
                "image": "i",
                "env": [{ "name": "A", "value": "1" }],
                "volumeMounts": [{ "name": "v", "mountPath": "/v" }],
            }],
            "tolerations": [{ "key": "a" }, { "key": "b" }, { "key": "c" }],
            "volumes": [{ "name": "v", "emptyDir": {} }],
        },
        "status": {
            "conditions": [{ "type": "Ready", "status": "True" }],
            "containerStatuses": [{
                "name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            }],
        },
    });
    let pod: Pod = serde_json::from_str(&json.to_string()).unwrap();
    let statuses = |pod: &Pod| {
        let status = pod.status.as_ref().unwrap();
        status.container_statuses.as_ref().unwrap().capacity()
    };
    assert!(statuses(&pod) > 1);
    let pod = slimmed(pod);
    assert_eq!(statuses(&pod), 1);
    let spec = pod.spec.unwrap();
    assert_eq!(spec.containers.capacity(), 1);
    assert_eq!(spec.tolerations.unwrap().capacity(), 3);
    assert_eq!(spec.containers[0].env.as_ref().unwrap().capacity(), 1);
    assert_eq!(pod.status.unwrap().conditions.unwrap().capacity(), 1);
    // The status lists no mounts yet: the spec's are kept for it.
    assert!(spec.volumes.is_none() && spec.containers[0].volume_mounts.is_some());
    assert!(pod.metadata.managed_fields.is_none());
}
