//! Tests of the pod worker's status diffs and back-offs.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Backoff;
use super::status::{null_removed, top_level_diff};

#[test]
fn diffs_cover_changes_and_removals() {
    let old = json!({ "phase": "Pending", "podIP": "10.0.0.2", "qosClass": "BestEffort" });
    let new = json!({ "phase": "Running", "qosClass": "BestEffort", "hostIP": "127.0.0.1" });
    let diff = top_level_diff(&old, &new);
    assert_eq!(
        Value::Object(diff),
        json!({ "phase": "Running", "hostIP": "127.0.0.1", "podIP": null })
    );
}

#[test]
fn fields_gone_from_conditions_and_container_states_are_patched_away() {
    let old = json!({
        "conditions": [
            { "type": "Ready", "status": "False", "reason": "ContainersNotReady",
              "message": "containers with unready status: [app]" },
            { "type": "PodScheduled", "status": "True" },
        ],
        "containerStatuses": [
            { "name": "app", "state": { "waiting": { "reason": "ContainerCreating" } } },
        ],
    });
    let mut new = json!({
        "conditions": [
            { "type": "Ready", "status": "True" },
            { "type": "PodScheduled", "status": "True" },
        ],
        "containerStatuses": [
            { "name": "app", "state": { "running": { "startedAt": "2026-01-01T00:00:03Z" } } },
        ],
    });
    null_removed(&old, &mut new);
    assert_eq!(
        new,
        json!({
            "conditions": [
                { "type": "Ready", "status": "True", "reason": null, "message": null },
                { "type": "PodScheduled", "status": "True" },
            ],
            "containerStatuses": [
                { "name": "app", "state": {
                    "running": { "startedAt": "2026-01-01T00:00:03Z" }, "waiting": null } },
            ],
        })
    );
}

#[test]
fn a_condition_gone_from_the_list_is_deleted_by_its_type() {
    let old = json!({ "conditions": [
        { "type": "Ready", "status": "True" },
        { "type": "PodResizeInProgress", "status": "True", "observedGeneration": 2 },
    ] });
    let mut new = json!({ "conditions": [{ "type": "Ready", "status": "True" }] });
    null_removed(&old, &mut new);
    assert_eq!(
        new,
        json!({ "conditions": [
            { "type": "Ready", "status": "True" },
            { "type": "PodResizeInProgress", "$patch": "delete" },
        ] })
    );
}

#[test]
fn backoff_doubles_to_five_minutes() {
    let now = Instant::now();
    let mut backoff = Backoff::next(None, now);
    let mut delays = vec![backoff.delay.as_secs()];
    for _ in 0..7 {
        backoff = Backoff::next(Some(backoff), now);
        delays.push(backoff.delay.as_secs());
    }
    assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300]);
}
