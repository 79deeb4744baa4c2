//! Every `hollow.dev/*` annotation hollow reads or writes, named once.
//!
//! | annotation | on | value | effect |
//! |---|---|---|---|
//! | [`MANAGED`] | Node | `true` | written by hollow on the Nodes it registers, so a later process adopts them |
//! | [`CONDITIONS`] | Node | `Type=Status[:Reason]`, comma-separated | the node reports these conditions (within a second); removing it restores the kubelet's |
//! | [`HEARTBEAT`] | Node | `stopped` | the node stops its heartbeats (Lease and status), as a node cut off from the API server |
//! | [`EXIT_AFTER`] | Pod | a duration: `500ms`, `5s`, `2m`, `1h` | regular containers exit that long after they start |
//! | [`EXIT_CODE`] | Pod | an integer (default 0) | the code they exit with |
//! | [`PULL_ERROR`] | Pod | a message | every image pull of the pod fails with it (ErrImagePull, then ImagePullBackOff) |
//! | [`LOGS`] | Pod | lines separated by newlines | every container logs them when it starts |
//! | [`STEPS`] | Pod | lifecycle [container steps](crate::lifecycle::ContainerStep), YAML or JSON | regular containers play them from their start |
//! | [`CPU_USAGE`] | Pod | a CPU quantity (`250m`, `1.5`) | the containers' CPU usage the fake cAdvisor reports |
//! | [`MEMORY_USAGE`] | Pod | a memory quantity (`100Mi`) | the containers' working-set memory the fake cAdvisor reports |
//!
//! ```
//! use hollow_core::annotations;
//!
//! assert_eq!(annotations::EXIT_AFTER, "hollow.dev/exit-after");
//! assert!(annotations::ALL.iter().all(|name| name.starts_with("hollow.dev/")));
//! ```

/// Put by hollow on the Nodes it registers, so it can adopt them later.
pub const MANAGED: &str = "hollow.dev/managed";
/// Node conditions to report, as `Type=Status[:Reason]` separated by commas.
pub const CONDITIONS: &str = "hollow.dev/conditions";
/// `stopped` stops the node's heartbeats.
pub const HEARTBEAT: &str = "hollow.dev/heartbeat";
/// Regular containers of the pod exit this long after they start.
pub const EXIT_AFTER: &str = "hollow.dev/exit-after";
/// The code they exit with (default 0).
pub const EXIT_CODE: &str = "hollow.dev/exit-code";
/// Every image pull of the pod fails with this message.
pub const PULL_ERROR: &str = "hollow.dev/pull-error";
/// Lines every container of the pod logs when it starts (separated by newlines).
pub const LOGS: &str = "hollow.dev/logs";
/// Container steps, as in a lifecycle file (`[{wait: 5s}, {exit: {code: 1}}]`).
pub const STEPS: &str = "hollow.dev/steps";
/// The CPU usage of the pod's containers (`250m`, `1.5`), whatever their requests.
pub const CPU_USAGE: &str = "hollow.dev/cpu-usage";
/// The working-set memory of the pod's containers (`100Mi`).
pub const MEMORY_USAGE: &str = "hollow.dev/memory-usage";

/// Every annotation above.
pub const ALL: [&str; 10] = [
    MANAGED,
    CONDITIONS,
    HEARTBEAT,
    EXIT_AFTER,
    EXIT_CODE,
    PULL_ERROR,
    LOGS,
    STEPS,
    CPU_USAGE,
    MEMORY_USAGE,
];
