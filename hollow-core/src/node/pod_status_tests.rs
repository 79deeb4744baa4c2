//! Golden tests: pod and container facts in, the kubelet's status out, times fixed.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::*;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + seconds)
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": "p", "namespace": "default", "uid": "u1", "generation": 1 },
        "spec": spec,
        "status": {
            "phase": "Pending",
            "conditions": [{ "type": "PodScheduled", "status": "True",
                             "lastTransitionTime": "2026-01-01T00:00:00Z" }],
        },
    }))
    .unwrap()
}

fn running(name: &str, started: u64) -> ContainerRecord {
    ContainerRecord {
        kind: ContainerKind::Regular,
        name: name.into(),
        image: "nginx:1.27".into(),
        id: Some(format!("{name}-id").into()),
        image_ref: Some("docker.io/library/nginx@sha256:abc".into()),
        current: Some(
            ContainerState::Running {
                started_at: at(started),
            }
            .into(),
        ),
        ..Default::default()
    }
}

fn exited(mut record: ContainerRecord, code: i32) -> ContainerRecord {
    let Some(ContainerState::Running { started_at }) = record.state().as_deref().cloned() else {
        panic!("not running")
    };
    record.set_state(Some(ContainerState::Exited {
        started_at,
        finished_at: at(60),
        exit_code: code,
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
    }));
    record
}

fn status(pod: &Pod, init: &[ContainerRecord], regular: &[ContainerRecord]) -> serde_json::Value {
    status_in(pod, init, regular, None)
}

fn status_in(
    pod: &Pod,
    init: &[ContainerRecord],
    regular: &[ContainerRecord],
    forced_phase: Option<&str>,
) -> serde_json::Value {
    let facts = PodFacts {
        pod,
        init,
        regular,
        sandbox_ready: true,
        sandbox_not_ready: None,
        pod_ips: &["10.128.0.2".parse().unwrap()],
        host_ips: &["127.0.0.1".parse().unwrap()],
        runtime_name: "hollow",
        start_time: "2026-01-01T00:00:01Z".parse().unwrap(),
        forced_phase,
        resize_conditions: &[],
        restart_rules: true,
        pod_level_status: true,
    };
    serde_json::to_value(compute(&facts, "2026-01-01T00:00:05Z".parse().unwrap())).unwrap()
}

#[test]
fn a_pod_bound_by_node_name_gets_pod_scheduled_from_the_kubelet() {
    let mut pod = pod(json!({ "containers": [{ "name": "web", "image": "nginx:1.27" }] }));
    pod.status = None;
    let got = status(&pod, &[], &[running("web", 3)]);
    let scheduled = got["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned();
    assert_eq!(
        scheduled,
        Some(
            json!({ "type": "PodScheduled", "status": "True", "observedGeneration": 1,
                     "lastTransitionTime": "2026-01-01T00:00:05Z" })
        )
    );
}

#[test]
fn a_running_pod_matches_the_kubelet() {
    let pod = pod(json!({
        "containers": [
            // As the API server stores it: requests defaulted from limits.
            { "name": "web", "image": "nginx:1.27",
              "resources": { "limits": { "cpu": "1", "memory": "1Gi" },
                             "requests": { "cpu": "1", "memory": "1Gi" } } },
        ],
    }));
    let got = status(&pod, &[], &[running("web", 3)]);
    let want = json!({
        "phase": "Running",
        "observedGeneration": 1,
        "conditions": [
            { "type": "PodReadyToStartContainers", "status": "True", "observedGeneration": 1,
              "lastTransitionTime": "2026-01-01T00:00:05Z" },
            { "type": "Initialized", "status": "True", "observedGeneration": 1,
              "lastTransitionTime": "2026-01-01T00:00:05Z" },
            { "type": "Ready", "status": "True", "observedGeneration": 1,
              "lastTransitionTime": "2026-01-01T00:00:05Z" },
            { "type": "ContainersReady", "status": "True", "observedGeneration": 1,
              "lastTransitionTime": "2026-01-01T00:00:05Z" },
            // The kubelet's own PodScheduled (pkg/kubelet/kubelet_pods.go), with the
            // pod's generation (PodObservedGenerationTracking, pkg/api/v1/pod/util.go)
            // and the scheduler's transition time, its status being the same.
            { "type": "PodScheduled", "status": "True", "observedGeneration": 1,
              "lastTransitionTime": "2026-01-01T00:00:00Z" },
        ],
        "hostIP": "127.0.0.1",
        "hostIPs": [{ "ip": "127.0.0.1" }],
        "podIP": "10.128.0.2",
        "podIPs": [{ "ip": "10.128.0.2" }],
        "startTime": "2026-01-01T00:00:01Z",
        "qosClass": "Guaranteed",
        "containerStatuses": [{
            "name": "web",
            "image": "nginx:1.27",
            "imageID": "docker.io/library/nginx@sha256:abc",
            "containerID": "hollow://web-id",
            "restartCount": 0,
            "ready": true,
            "started": true,
            "state": { "running": { "startedAt": "2026-01-01T00:00:03Z" } },
            "lastState": {},
            // What the runtime was given (InPlacePodVerticalScaling,
            // convertToAPIContainerStatuses in pkg/kubelet/kubelet_pods.go).
            "resources": { "limits": { "cpu": "1", "memory": "1Gi" },
                           "requests": { "cpu": "1", "memory": "1Gi" } },
            "allocatedResources": { "cpu": "1", "memory": "1Gi" },
        }],
        // The pod's own (InPlacePodLevelResourcesVerticalScaling, generateAPIPodStatus).
        "resources": { "limits": { "cpu": "1", "memory": "1Gi" },
                       "requests": { "cpu": "1", "memory": "1Gi" } },
        "allocatedResources": { "cpu": "1", "memory": "1Gi" },
    });
    assert_eq!(got, want, "\n got: {got:#}\nwant: {want:#}");
}

#[test]
fn init_containers_hold_the_pod_pending() {
    let pod = pod(json!({
        "initContainers": [{ "name": "setup", "image": "busybox" }],
        "containers": [{ "name": "app", "image": "app",
                         "resources": { "requests": { "cpu": "100m" } } }],
    }));
    let mut setup = running("setup", 2);
    setup.kind = ContainerKind::Init;
    let app = ContainerRecord {
        name: "app".into(),
        image: "app".into(),
        ..Default::default()
    };
    let got = status(
        &pod,
        std::slice::from_ref(&setup),
        std::slice::from_ref(&app),
    );
    assert_eq!(got["phase"], "Pending");
    assert_eq!(got["qosClass"], "Burstable");
    let initialized = &got["conditions"][1];
    assert_eq!(initialized["status"], "False");
    assert_eq!(initialized["reason"], "ContainersNotInitialized");
    assert_eq!(
        initialized["message"],
        "containers with incomplete status: [setup]"
    );
    assert_eq!(
        got["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );

    // Once the init container exits 0 it is ready and the app container is created.
    let done = exited(setup, 0);
    let got = status(&pod, &[done], &[running("app", 61)]);
    assert_eq!(got["phase"], "Running");
    assert_eq!(got["initContainerStatuses"][0]["ready"], true);
    assert_eq!(got["initContainerStatuses"][0]["started"], false);
    assert_eq!(
        got["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[test]
fn phases_follow_the_restart_policy() {
    let spec = |policy: &str| {
        pod(json!({
            "restartPolicy": policy,
            "containers": [{ "name": "a", "image": "x" }, { "name": "b", "image": "x" }],
        }))
    };
    let ok = exited(running("a", 1), 0);
    let failed = exited(running("b", 1), 1);
    let phase_of = |policy, records: &[ContainerRecord]| {
        let with_rules = super::phase(&spec(policy), &[], records, true);
        assert_eq!(
            with_rules,
            super::phase(&spec(policy), &[], records, false),
            "no container policies: the same"
        );
        with_rules
    };
    assert_eq!(phase_of("Never", &[ok.clone(), failed.clone()]), "Failed");
    assert_eq!(
        phase_of("Never", &[ok.clone(), exited(running("b", 1), 0)]),
        "Succeeded"
    );
    assert_eq!(
        phase_of("OnFailure", &[ok.clone(), failed.clone()]),
        "Running"
    );
    assert_eq!(
        phase_of("OnFailure", &[ok.clone(), exited(running("b", 1), 0)]),
        "Succeeded"
    );
    assert_eq!(
        phase_of("Always", &[ok.clone(), exited(running("b", 1), 0)]),
        "Running"
    );
    assert_eq!(phase_of("Always", &[ok, running("b", 1)]), "Running");

    let completed = status(
        &spec("Never"),
        &[],
        &[exited(running("a", 1), 0), exited(running("b", 1), 0)],
    );
    assert_eq!(completed["conditions"][2]["reason"], "PodCompleted");
    assert_eq!(completed["conditions"][1]["reason"], "PodCompleted");
    assert_eq!(completed["qosClass"], "BestEffort");
}

#[test]
fn a_failed_init_container_fails_a_never_pod() {
    let pod = pod(json!({
        "restartPolicy": "Never",
        "initContainers": [{ "name": "setup", "image": "busybox" }],
        "containers": [{ "name": "app", "image": "app" }],
    }));
    let mut setup = exited(running("setup", 1), 2);
    setup.kind = ContainerKind::Init;
    for rules in [true, false] {
        assert_eq!(
            super::phase(&pod, &[setup.clone()], &[ContainerRecord::default()], rules),
            "Failed"
        );
    }
}

/// Container restart rules (1.35 on): a container's own policy and rules decide whether
/// a stopped container restarts, and so the phase (getPhase in
/// pkg/kubelet/kubelet_pods.go); a 1.34 kubelet goes by the pod's policy alone.
#[test]
fn a_containers_own_restart_policy_and_rules_decide_the_phase_from_1_35() {
    let pod = pod(json!({
        "restartPolicy": "Never",
        "initContainers": [{ "name": "setup", "image": "busybox", "restartPolicy": "OnFailure" }],
        "containers": [{ "name": "a", "image": "x", "restartPolicy": "Never",
            "restartPolicyRules": [{ "action": "Restart", "exitCodes": { "operator": "In", "values": [42] } }] }],
    }));
    let mut setup = exited(running("setup", 1), 2);
    setup.kind = ContainerKind::Init;
    assert_eq!(
        super::phase(&pod, &[setup.clone()], &[ContainerRecord::default()], true),
        "Pending"
    );
    assert_eq!(
        super::phase(&pod, &[setup], &[ContainerRecord::default()], false),
        "Failed"
    );
    let retried = exited(running("a", 1), 42);
    assert_eq!(
        super::phase(&pod, &[], std::slice::from_ref(&retried), true),
        "Running"
    );
    assert_eq!(super::phase(&pod, &[], &[retried], false), "Failed");
    assert_eq!(
        super::phase(&pod, &[], &[exited(running("a", 1), 1)], true),
        "Failed"
    );
}

#[test]
fn crash_loop_back_off_shows_waiting_with_the_last_exit() {
    let pod = pod(json!({ "containers": [{ "name": "c", "image": "x" }] }));
    let crashed = exited(running("c", 1), 1);
    let record = ContainerRecord {
        restart_count: 3,
        last_exit: crashed.state().map(|s| Box::new(s.into_owned())),
        waiting: Some(Box::new((
            "CrashLoopBackOff".into(),
            "back-off 40s restarting failed container=c pod=p_default(u1)".into(),
        ))),
        ..crashed
    };
    let got = status(&pod, &[], &[record]);
    let container = &got["containerStatuses"][0];
    assert_eq!(got["phase"], "Running");
    assert_eq!(container["restartCount"], 3);
    assert_eq!(container["ready"], false);
    assert_eq!(container["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(container["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(
        got["conditions"][3]["message"],
        "containers with unready status: [c]"
    );
}

#[test]
fn sidecars_count_once_started_and_take_part_in_readiness() {
    let pod = pod(json!({
        "initContainers": [{ "name": "proxy", "image": "envoy", "restartPolicy": "Always" }],
        "containers": [{ "name": "app", "image": "app" }],
    }));
    let mut proxy = running("proxy", 1);
    proxy.kind = ContainerKind::Sidecar;
    let got = status(&pod, std::slice::from_ref(&proxy), &[running("app", 2)]);
    assert_eq!(got["phase"], "Running");
    assert_eq!(got["conditions"][1]["status"], "True");
    assert_eq!(got["conditions"][3]["status"], "True");
    let crashed = exited(proxy, 1);
    let got = status(&pod, &[crashed], &[running("app", 2)]);
    assert_eq!(
        got["conditions"][1]["status"], "True",
        "a started sidecar stays initialized"
    );
    assert_eq!(
        got["conditions"][3]["message"],
        "containers with unready status: [proxy]"
    );
}

#[test]
fn readiness_gates_hold_ready_back() {
    let mut pod = pod(json!({
        "readinessGates": [{ "conditionType": "example.com/lb" }],
        "containers": [{ "name": "c", "image": "x" }],
    }));
    let got = status(&pod, &[], &[running("c", 1)]);
    assert_eq!(got["conditions"][2]["status"], "False");
    assert_eq!(got["conditions"][2]["reason"], "ReadinessGatesNotReady");
    assert_eq!(got["conditions"][3]["status"], "True");
    pod.status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()
        .push(PodCondition {
            type_: "example.com/lb".into(),
            status: "True".into(),
            ..Default::default()
        });
    let got = status(&pod, &[], &[running("c", 1)]);
    assert_eq!(got["conditions"][3]["type"], "Ready");
    assert_eq!(got["conditions"][3]["status"], "True");
    assert_eq!(
        got["conditions"][0]["type"], "example.com/lb",
        "kept first, before the kubelet's own (mergePodStatus)"
    );
}

#[test]
fn probes_delay_started_and_ready() {
    let pod = pod(json!({ "containers": [{ "name": "c", "image": "x" }] }));
    // Started at 00:00:03, now 00:00:05.
    let slow_ready = ContainerRecord {
        readiness_delay: 10,
        ..running("c", 3)
    };
    let got = status(&pod, &[], &[slow_ready]);
    let container = &got["containerStatuses"][0];
    assert_eq!(
        (container["started"].clone(), container["ready"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(got["conditions"][3]["status"], "False");

    let slow_start = ContainerRecord {
        startup_delay: 10,
        ..running("c", 3)
    };
    let got = status(&pod, &[], &[slow_start]);
    assert_eq!(got["containerStatuses"][0]["started"], false);
    assert_eq!(got["phase"], "Running");

    let quick = ContainerRecord {
        readiness_delay: 1,
        ..running("c", 3)
    };
    assert_eq!(
        status(&pod, &[], &[quick])["containerStatuses"][0]["ready"],
        true
    );
}

#[test]
fn an_oom_kill_fails_a_never_pod_with_the_reason() {
    let pod =
        pod(json!({ "restartPolicy": "Never", "containers": [{ "name": "c", "image": "x" }] }));
    let mut killed = running("c", 1);
    killed.set_state(Some(ContainerState::Exited {
        started_at: at(1),
        finished_at: at(3),
        exit_code: 137,
        reason: "OOMKilled".into(),
        message: None,
    }));
    let got = status(&pod, &[], &[killed]);
    assert_eq!(got["phase"], "Failed");
    let terminated = &got["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 137);
    assert_eq!(terminated["reason"], "OOMKilled");
    assert_eq!(got["containerStatuses"][0]["restartCount"], 0);
}

#[test]
fn a_failing_pull_waits_with_the_kubelet_reasons() {
    let pod = pod(json!({ "containers": [{ "name": "c", "image": "x" }] }));
    for (reason, message) in [
        ("ErrImagePull", "Failed to pull image \"x\": not found"),
        ("ImagePullBackOff", "Back-off pulling image \"x\""),
    ] {
        let record = ContainerRecord {
            kind: ContainerKind::Regular,
            name: "c".into(),
            image: "x".into(),
            waiting: Some(Box::new((reason.into(), message.into()))),
            ..Default::default()
        };
        let got = status(&pod, &[], &[record]);
        assert_eq!(got["phase"], "Pending");
        let container = &got["containerStatuses"][0];
        assert_eq!(container["state"]["waiting"]["reason"], reason);
        assert_eq!(container["state"]["waiting"]["message"], message);
        assert_eq!(container["image"], "x");
        assert_eq!(container["started"], false);
    }
}

#[test]
fn runtime_readiness_overrides_the_probe_timing() {
    let pod = pod(json!({ "containers": [{ "name": "c", "image": "x" }] }));
    let unready = ContainerRecord {
        runtime_ready: Some(false),
        ..running("c", 1)
    };
    let got = status(&pod, &[], &[unready]);
    assert_eq!(got["phase"], "Running");
    assert_eq!(got["containerStatuses"][0]["ready"], false);
    assert_eq!(got["conditions"][2]["type"], "Ready");
    assert_eq!(got["conditions"][2]["status"], "False");
    assert_eq!(got["conditions"][2]["reason"], "ContainersNotReady");
    // Ready by script before the readiness probe's initial delay has passed.
    let early = ContainerRecord {
        runtime_ready: Some(true),
        readiness_delay: 60,
        ..running("c", 1)
    };
    let got = status(&pod, &[], &[early]);
    assert_eq!(got["containerStatuses"][0]["ready"], true);
}

#[test]
fn a_failed_pods_containers_are_not_ready_for_reason_pod_failed() {
    // A pod killed past its activeDeadlineSeconds: the kubelet's terminal-phase
    // conditions (generateContainersReadyConditionForTerminalPhase and
    // generatePodReadyConditionForTerminalPhase, pkg/kubelet/status/generate.go), and an
    // Initialized condition without a reason (only Succeeded has PodCompleted).
    let pod = pod(json!({ "containers": [{ "name": "web", "image": "nginx:1.27" }] }));
    let got = status_in(&pod, &[], &[exited(running("web", 3), 0)], Some("Failed"));
    assert_eq!(got["phase"], "Failed");
    let condition = |kind: &str| {
        got["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
            .unwrap()
    };
    for kind in ["ContainersReady", "Ready"] {
        assert_eq!(condition(kind)["status"], "False", "{kind}");
        assert_eq!(condition(kind)["reason"], "PodFailed", "{kind}");
    }
    assert_eq!(condition("Initialized")["status"], "True");
    assert!(condition("Initialized").get("reason").is_none());
}

#[test]
fn container_statuses_are_sorted_by_name_and_init_ones_kept_in_spec_order() {
    // convertToAPIContainerStatuses (pkg/kubelet/kubelet_pods.go) sorts regular
    // statuses by name, init ones by their order in the spec.
    let pod = pod(json!({
        "initContainers": [
            { "name": "z-sidecar", "image": "nginx:1.27", "restartPolicy": "Always" },
            { "name": "a-sidecar", "image": "nginx:1.27", "restartPolicy": "Always" },
        ],
        "containers": [
            { "name": "web", "image": "nginx:1.27" },
            { "name": "log", "image": "nginx:1.27" },
        ],
    }));
    let sidecar = |name: &str| ContainerRecord {
        kind: ContainerKind::Sidecar,
        ..running(name, 2)
    };
    let got = status(
        &pod,
        &[sidecar("z-sidecar"), sidecar("a-sidecar")],
        &[running("web", 3), running("log", 3)],
    );
    let names = |field: &str| -> Vec<String> {
        got[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("containerStatuses"), ["log", "web"]);
    assert_eq!(names("initContainerStatuses"), ["z-sidecar", "a-sidecar"]);
}

/// The facts of a pod with `regular` containers, its sandbox ready, as a 1.36 node has them.
fn facts<'a>(pod: &'a Pod, regular: &'a [ContainerRecord]) -> PodFacts<'a> {
    PodFacts {
        pod,
        init: &[],
        regular,
        sandbox_ready: true,
        sandbox_not_ready: None,
        pod_ips: &[],
        host_ips: &[],
        runtime_name: "hollow",
        start_time: "2026-01-01T00:00:01Z".parse().unwrap(),
        forced_phase: None,
        resize_conditions: &[],
        restart_rules: true,
        pod_level_status: true,
    }
}

/// From 1.37 a False PodReadyToStartContainers says why (pkg/kubelet/status/generate.go
/// `GeneratePodReadyToStartContainersCondition`); before, it has no reason.
#[test]
fn a_pod_without_a_ready_sandbox_says_why_from_1_37() {
    let pod = pod(json!({ "containers": [{ "name": "c", "image": "x" }] }));
    let records = [ContainerRecord::default()];
    for (why, reason) in [
        (Some("no pod sandbox exists"), Some("PodSandboxNotReady")),
        (None, None),
    ] {
        let facts = PodFacts {
            sandbox_ready: false,
            sandbox_not_ready: why,
            ..facts(&pod, &records)
        };
        let status = compute(&facts, "2026-01-01T00:00:05Z".parse().unwrap());
        let condition = &status.conditions.unwrap()[0];
        assert_eq!(
            (condition.type_.as_str(), condition.status.as_str()),
            ("PodReadyToStartContainers", "False")
        );
        assert_eq!(condition.reason.as_deref(), reason);
        assert_eq!(condition.message.as_deref(), why);
    }
}

/// A pod's own `resources` and `allocatedResources` are in its status from 1.36 only
/// (`generateAPIPodStatus` in pkg/kubelet/kubelet_pods.go, behind
/// InPlacePodLevelResourcesVerticalScaling).
#[test]
fn pod_level_resources_are_shown_from_1_36() {
    let pod = pod(json!({ "containers": [{ "name": "c", "image": "x",
        "resources": { "requests": { "cpu": "100m" } } }] }));
    let records = [running("c", 1)];
    for shown in [true, false] {
        let facts = PodFacts {
            pod_level_status: shown,
            ..facts(&pod, &records)
        };
        let status = compute(&facts, "2026-01-01T00:00:05Z".parse().unwrap());
        assert_eq!(status.resources.is_some(), shown);
        assert_eq!(status.allocated_resources.is_some(), shown);
    }
}
