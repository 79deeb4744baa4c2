//! The fake as a node uses it: through [`RuntimeService`] calls.

use std::net::IpAddr;
use std::time::Duration;

use super::{Behavior, FakeRuntime, RuntimeMethod};
use crate::error::Error;
use crate::lifecycle::Lifecycle;
use crate::runtime::RuntimeService;
use crate::runtime::types::{ContainerConfig, ContainerState, PodActionKind, PodSandboxConfig};

#[tokio::test]
async fn ips_are_allocated_and_released() {
    let fake = FakeRuntime::default();
    let config = PodSandboxConfig::default();
    assert!(matches!(
        fake.run_pod_sandbox(&config).await,
        Err(Error::InvalidInput(_))
    ));
    fake.update_pod_cidr("10.0.0.0/30").await.unwrap();
    let first = fake.run_pod_sandbox(&config).await.unwrap();
    // A /30 has one usable pod address after the gateway.
    assert!(fake.run_pod_sandbox(&config).await.is_err());
    fake.remove_pod_sandbox(&first).await.unwrap();
    let again = fake.run_pod_sandbox(&config).await.unwrap();
    let ips = fake.pod_sandbox_status(&again).await.unwrap().ips;
    assert_eq!(ips, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
    let host = PodSandboxConfig {
        host_network: true,
        ..Default::default()
    };
    let sandbox = fake.run_pod_sandbox(&host).await.unwrap();
    assert!(
        fake.pod_sandbox_status(&sandbox)
            .await
            .unwrap()
            .ips
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn scripted_exits_are_pushed_as_events() {
    let fake = FakeRuntime::default();
    fake.set_behavior(|_| Behavior::Exit {
        after: Duration::from_secs(5),
        code: 3,
    });
    let mut events = fake.subscribe().unwrap();
    fake.update_pod_cidr("10.0.0.0/24").await.unwrap();
    let sandbox = fake
        .run_pod_sandbox(&PodSandboxConfig::default())
        .await
        .unwrap();
    let config = ContainerConfig {
        name: "c".into(),
        pod_uid: "uid-1".into(),
        ..Default::default()
    };
    let id = fake.create_container(&sandbox, &config).await.unwrap();
    fake.start_container(&id).await.unwrap();
    let started = events.recv().await.unwrap();
    assert!(matches!(started.state, ContainerState::Running { .. }));
    let exited = events.recv().await.unwrap();
    assert_eq!(exited.pod_uid, "uid-1");
    match exited.state {
        ContainerState::Exited {
            exit_code, reason, ..
        } => {
            assert_eq!((exit_code, reason.as_str()), (3, "Error"));
        }
        other => panic!("expected an exit, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn timed_exits_play_in_order_on_one_timer() {
    let fake = FakeRuntime::default();
    let mut events = fake.subscribe().unwrap();
    let mut ids = Vec::new();
    for seconds in [30, 10, 20] {
        let config = ContainerConfig {
            command: ["sleep".to_string(), seconds.to_string()].to_vec(),
            ..regular(&format!("p{seconds}"))
        };
        ids.push((started(&fake, config).await, seconds));
    }
    let begun = tokio::time::Instant::now();
    let mut exited = Vec::new();
    while exited.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("every sleep ends within a minute")
            .unwrap();
        if let ContainerState::Exited { exit_code: 0, .. } = event.state {
            let seconds = ids
                .iter()
                .find(|(id, _)| *id == event.container_id)
                .unwrap()
                .1;
            assert_eq!(begun.elapsed().as_secs(), seconds);
            exited.push(seconds);
        }
    }
    assert_eq!(exited, [10, 20, 30]);
}

#[tokio::test(start_paused = true)]
async fn a_userland_command_ignores_sigterm_until_its_grace_period_ends() {
    let fake = FakeRuntime::default();
    let stopped = |script: &str, grace: u64| {
        let fake = fake.clone();
        let command = if script.is_empty() {
            Vec::new()
        } else {
            ["sh", "-c", script].map(String::from).to_vec()
        };
        async move {
            let id = started(
                &fake,
                ContainerConfig {
                    command,
                    ..regular("p")
                },
            )
            .await;
            let begun = tokio::time::Instant::now();
            fake.stop_container(&id, Duration::from_secs(grace))
                .await
                .unwrap();
            let ContainerState::Exited { exit_code, .. } =
                fake.container_status(&id).await.unwrap().state
            else {
                panic!("not exited");
            };
            (exit_code, begun.elapsed().as_secs())
        }
    };
    assert_eq!(stopped("sleep 3600", 5).await, (137, 5));
    // It ends by itself first: with its own code.
    assert_eq!(stopped("sleep 2; exit 4", 10).await, (4, 2));
    // Past the userland, its program handles SIGTERM; so does an image's entrypoint.
    assert_eq!(stopped("echo up; exec nginx", 30).await, (0, 0));
    assert_eq!(stopped("", 30).await, (0, 0));
}

async fn started(fake: &FakeRuntime, config: ContainerConfig) -> String {
    fake.update_pod_cidr("10.0.0.0/24").await.unwrap();
    let sandbox = fake
        .run_pod_sandbox(&PodSandboxConfig::default())
        .await
        .unwrap();
    let id = fake.create_container(&sandbox, &config).await.unwrap();
    fake.start_container(&id).await.unwrap();
    id
}

fn regular(pod: &str) -> ContainerConfig {
    ContainerConfig {
        name: "app".into(),
        image: "nginx".into(),
        pod_name: pod.into(),
        pod_namespace: "default".into(),
        pod_uid: format!("uid-{pod}"),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn lifecycle_steps_flap_readiness_and_ask_for_actions() {
    let lifecycle = Lifecycle::from_yaml(
        "containers:\n  - delay: 1s\n    steps: [ {ready: false}, {event: {type: Warning, reason: Flap}}, {wait: 2s}, {ready: true}, {wait: 2s}, repeat ]\n",
        "t",
    )
    .unwrap();
    let fake = FakeRuntime::default().with_lifecycle(lifecycle);
    let mut actions = fake.subscribe_actions().unwrap();
    let id = started(&fake, regular("p")).await;
    assert_eq!(fake.container_status(&id).await.unwrap().ready, None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.container_status(&id).await.unwrap().ready, Some(false));
    let action = actions.recv().await.unwrap();
    assert_eq!(
        (action.name.as_str(), action.pod_uid.as_str()),
        ("p", "uid-p")
    );
    assert!(matches!(action.kind, PodActionKind::Event(ref e) if e.reason == "Flap"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.container_status(&id).await.unwrap().ready, Some(true));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.container_status(&id).await.unwrap().ready, Some(false));
    // Stopping the container ends the play.
    fake.stop_container(&id, Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(matches!(
        fake.container_status(&id).await.unwrap().state,
        ContainerState::Exited { exit_code: 0, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn lifecycle_oom_kills_and_pull_errors() {
    let lifecycle = Lifecycle::from_yaml(
        "containers:\n  - steps: [ {wait: 3s}, oomKill ]\npulls:\n  - match: {images: [broken]}\n    steps: [ {wait: 1s}, {pullError: manifest unknown} ]\n",
        "t",
    )
    .unwrap();
    let fake = FakeRuntime::default().with_lifecycle(lifecycle);
    let id = started(&fake, regular("p")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    match fake.container_status(&id).await.unwrap().state {
        ContainerState::Exited {
            exit_code, reason, ..
        } => assert_eq!((exit_code, reason.as_str()), (137, "OOMKilled")),
        other => panic!("expected an OOM kill, got {other:?}"),
    }
    let pod = PodSandboxConfig::default();
    let before = tokio::time::Instant::now();
    let error = fake.pull_image("broken", &pod).await.unwrap_err();
    assert!(error.to_string().contains("manifest unknown"), "{error}");
    assert!(before.elapsed() >= Duration::from_secs(1));
    assert!(fake.pull_image("nginx", &pod).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn deletion_rules_stop_within_the_grace_period() {
    let lifecycle = Lifecycle::from_yaml(
        "deletions:\n  - match: {containers: [slow]}\n    steps: [ {wait: 1m}, {exit: {code: 0}} ]\n  - match: {containers: [app]}\n    steps: [ {wait: 2s}, removeFinalizers, {exit: {code: 143}} ]\n",
        "t",
    )
    .unwrap();
    let fake = FakeRuntime::default().with_lifecycle(lifecycle);
    let mut actions = fake.subscribe_actions().unwrap();
    let app = started(&fake, regular("p")).await;
    let before = tokio::time::Instant::now();
    fake.stop_container(&app, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(before.elapsed().as_secs(), 2);
    assert_eq!(
        actions.recv().await.unwrap().kind,
        PodActionKind::RemoveFinalizers
    );
    let exit_code = |state| match state {
        ContainerState::Exited { exit_code, .. } => exit_code,
        other => panic!("expected an exit, got {other:?}"),
    };
    assert_eq!(
        exit_code(fake.container_status(&app).await.unwrap().state),
        143
    );
    let slow = started(
        &fake,
        ContainerConfig {
            name: "slow".into(),
            ..regular("q")
        },
    )
    .await;
    let before = tokio::time::Instant::now();
    fake.stop_container(&slow, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        before.elapsed().as_secs(),
        5,
        "killed at the end of the grace period"
    );
    assert_eq!(
        exit_code(fake.container_status(&slow).await.unwrap().state),
        137
    );
}

#[tokio::test]
async fn faults_fail_the_next_calls_only() {
    let fake = FakeRuntime::default();
    fake.inject_fault(RuntimeMethod::Version, 1);
    assert!(matches!(fake.version().await, Err(Error::Injected(_))));
    assert!(fake.version().await.is_ok());
    assert_eq!(fake.calls_to(RuntimeMethod::Version), 2);
    fake.fail_pulls_of("bad:1", "manifest unknown");
    assert!(
        fake.pull_image("bad:1", &PodSandboxConfig::default())
            .await
            .is_err()
    );
    fake.allow_pulls_of("bad:1");
    assert!(
        fake.pull_image("bad:1", &PodSandboxConfig::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let fake = FakeRuntime::default();
    assert!(
        fake.container_status("nope")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        fake.start_container("nope")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        fake.pod_sandbox_status("nope")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(fake.remove_pod_sandbox("nope").await.is_ok());
}

#[tokio::test]
async fn calls_are_recorded_with_their_method_and_main_argument() {
    let fake = FakeRuntime::default();
    fake.update_pod_cidr("10.0.0.0/24").await.unwrap();
    let sandbox = fake
        .run_pod_sandbox(&PodSandboxConfig {
            namespace: "ns".into(),
            name: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    fake.inject_fault(RuntimeMethod::StopPodSandbox, 1);
    let error = fake.stop_pod_sandbox(&sandbox).await.unwrap_err();
    assert!(matches!(error, Error::Injected(ref method) if method == "stop_pod_sandbox"));
    let methods: Vec<_> = fake.calls().iter().map(|call| call.method).collect();
    assert_eq!(
        methods,
        [
            RuntimeMethod::UpdatePodCidr,
            RuntimeMethod::RunPodSandbox,
            RuntimeMethod::StopPodSandbox
        ]
    );
    assert_eq!(fake.calls()[1].arg, "ns/p");
    assert_eq!(fake.calls_to(RuntimeMethod::StopPodSandbox), 1);
    assert_eq!(
        RuntimeMethod::StopPodSandbox.to_string(),
        "stop_pod_sandbox"
    );
}

#[tokio::test(start_paused = true)]
async fn a_container_runs_its_script_in_the_userland() {
    let fake = FakeRuntime::default();
    let mut events = fake.subscribe().unwrap();
    let config = ContainerConfig {
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo index $INDEX; sleep 5; exit $((INDEX % 2))".into(),
        ],
        env: vec![("INDEX".into(), "3".into())],
        ..regular("job-3")
    };
    let id = started(&fake, config).await;
    assert!(matches!(
        events.recv().await.unwrap().state,
        ContainerState::Running { .. }
    ));
    let logs = fake.container_logs(&id, None).await.unwrap();
    assert_eq!(
        logs.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        ["index 3"]
    );
    let exited = tokio::time::timeout(Duration::from_secs(6), events.recv())
        .await
        .expect("the script ends after its sleep")
        .unwrap();
    let ContainerState::Exited {
        exit_code, reason, ..
    } = exited.state
    else {
        panic!("{exited:?}");
    };
    assert_eq!((exit_code, reason.as_str()), (1, "Error"));

    // A program outside the userland: the container runs, its log says why.
    let server = ContainerConfig {
        command: vec!["sh".into(), "-c".into(), "echo up; exec nginx".into()],
        ..regular("web")
    };
    let id = started(&fake, server).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(matches!(
        fake.container_status(&id).await.unwrap().state,
        ContainerState::Running { .. }
    ));
    let logs = fake.container_logs(&id, None).await.unwrap();
    assert_eq!(logs[0].text, "up");
    assert!(
        logs[1]
            .text
            .contains("`nginx` is outside hollow's userland"),
        "{logs:?}"
    );
    assert_eq!(logs.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn termination_messages_come_from_the_file_or_the_log() {
    let fake = FakeRuntime::default();
    let exited = |fake: FakeRuntime, id: String| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match fake.container_status(&id).await.unwrap().state {
            ContainerState::Exited { message, .. } => message,
            other => panic!("{other:?}"),
        }
    };
    let script = |text: &str| vec!["sh".into(), "-c".into(), text.into()];
    let written = ContainerConfig {
        command: script("echo done > /dev/termination-log; echo logged; exit 2"),
        termination_message_path: Some("/dev/termination-log".into()),
        fallback_to_logs: true,
        ..regular("a")
    };
    let id = started(&fake, written).await;
    assert_eq!(exited(fake.clone(), id).await.as_deref(), Some("done\n"));
    let fallback = ContainerConfig {
        command: script("echo one; echo two >&2; exit 1"),
        termination_message_path: Some("/dev/termination-log".into()),
        fallback_to_logs: true,
        ..regular("b")
    };
    let id = started(&fake, fallback.clone()).await;
    assert_eq!(
        exited(fake.clone(), id).await.as_deref(),
        Some("one\ntwo\n")
    );
    // The policy applies to failures only, and only when asked for.
    let succeeded = ContainerConfig {
        command: script("echo one; exit 0"),
        ..fallback.clone()
    };
    let id = started(&fake, succeeded).await;
    assert_eq!(exited(fake.clone(), id).await, None);
    let file_policy = ContainerConfig {
        fallback_to_logs: false,
        ..fallback
    };
    let id = started(&fake, file_policy).await;
    assert_eq!(exited(fake.clone(), id).await, None);
}

#[tokio::test]
async fn a_lifecycle_without_container_pull_or_deletion_rules_plays_as_none() {
    // hollow-kubelet's default, the `fast` preset: a plain container keeps only what
    // it shows, as without a lifecycle.
    let fake = FakeRuntime::default().with_lifecycle(Lifecycle::fast());
    fake.update_pod_cidr("10.0.0.0/24").await.unwrap();
    let sandbox = fake
        .run_pod_sandbox(&PodSandboxConfig::default())
        .await
        .unwrap();
    let config = ContainerConfig {
        name: "c".into(),
        image: "registry.k8s.io/pause:3.10".into(),
        pod_uid: "uid-1".into(),
        pod_labels: [("app".to_string(), "web".to_string())].into(),
        ..Default::default()
    };
    let id = fake.create_container(&sandbox, &config).await.unwrap();
    fake.start_container(&id).await.unwrap();
    {
        let state = fake.lock();
        assert!(state.lifecycle.is_none());
        let container = state.containers.get(&id).unwrap();
        assert!(matches!(container.held, super::held::Held::Plain(_)));
    }
    // A lifecycle with rules is played, and its containers keep what the rules match.
    fake.set_lifecycle(Lifecycle::realistic());
    let id = fake.create_container(&sandbox, &config).await.unwrap();
    fake.start_container(&id).await.unwrap();
    let state = fake.lock();
    assert!(state.lifecycle.is_some());
    let container = state.containers.get(&id).unwrap();
    assert!(matches!(container.held, super::held::Held::Full(_)));
}
