//! Tests of the state one node's tasks share.

use super::*;

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
