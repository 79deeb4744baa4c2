//! Whether a container that exited runs again, as the kubelet decides it: with
//! container restart rules (feature gate ContainerRestartRules, on from 1.35,
//! [`Behaviour::ContainerRestartRules`](crate::version::Behaviour::ContainerRestartRules))
//! a container's own `restartPolicy` and `restartPolicyRules` decide, else the pod's
//! `restartPolicy` (pkg/api/v1/pod/util.go `ContainerShouldRestart` and
//! `FindMatchingContainerRestartRule`; pkg/kubelet/container/helpers.go
//! `ShouldContainerBeRestarted`).

use k8s_openapi::api::core::v1::{Container, ContainerRestartRule};

/// The pod's restart policy applied to an exit code (`Always` when unset).
pub(crate) fn pod_policy_restarts(pod_policy: &str, exit_code: i32) -> bool {
    match pod_policy {
        "OnFailure" => exit_code != 0,
        "Never" => false,
        _ => true,
    }
}

/// The first of the container's rules whose exit codes match `exit_code`.
fn matching_rule(container: &Container, exit_code: i32) -> Option<&ContainerRestartRule> {
    container
        .restart_policy_rules
        .iter()
        .flatten()
        .find(|rule| {
            rule.exit_codes.as_ref().is_some_and(|codes| {
                let listed = codes.values.iter().flatten().any(|code| *code == exit_code);
                match codes.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                }
            })
        })
}

/// Whether `container`, exited with `exit_code`, is restarted: with `rules`, a matching
/// `Restart` rule restarts it, else its own policy decides where it has one; else (and
/// without `rules`) the pod's policy. A `RestartAllContainers` rule falls through to the
/// container's policy, as the kubelet does with RestartAllContainersOnContainerExits off:
/// hollow does not serve it, and declares no such feature (`status.declaredFeatures`),
/// so the scheduler keeps pods that need it elsewhere.
pub(crate) fn container_should_restart(
    container: &Container,
    pod_policy: &str,
    exit_code: i32,
    rules: bool,
) -> bool {
    if rules && let Some(policy) = container.restart_policy.as_deref() {
        if matching_rule(container, exit_code).is_some_and(|rule| rule.action == "Restart") {
            return true;
        }
        match policy {
            "Always" => return true,
            "OnFailure" => return exit_code != 0,
            "Never" => return false,
            _ => {}
        }
    }
    pod_policy_restarts(pod_policy, exit_code)
}

/// Whether a running container killed by a failed liveness or startup probe is started
/// again: with `rules`, its own policy (other than Never) where it has one, since a
/// running container has no exit code for its rules; else the pod's policy, other than
/// Never (pkg/kubelet/kuberuntime/kuberuntime_manager.go `computePodActions`). A sidecar
/// always is.
pub(crate) fn restarts_after_probe_kill(
    container: &Container,
    pod_policy: &str,
    rules: bool,
    sidecar: bool,
) -> bool {
    if sidecar {
        return true;
    }
    match container.restart_policy.as_deref() {
        Some(policy) if rules => policy != "Never",
        _ => pod_policy != "Never",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn without_rules_the_pods_policy_decides() {
        let own = container(json!({ "name": "c", "restartPolicy": "Always" }));
        for (policy, code, restarts) in [
            ("Always", 0, true),
            ("OnFailure", 0, false),
            ("OnFailure", 2, true),
            ("Never", 2, false),
        ] {
            assert_eq!(
                container_should_restart(&own, policy, code, false),
                restarts,
                "{policy} {code}"
            );
        }
    }

    #[test]
    fn with_rules_a_matching_rule_then_the_containers_policy_decides() {
        // Retry on exit code 42 only.
        let retry_42 = container(json!({ "name": "c", "restartPolicy": "Never",
            "restartPolicyRules": [{ "action": "Restart", "exitCodes": { "operator": "In", "values": [42] } }] }));
        assert!(container_should_restart(&retry_42, "Never", 42, true));
        assert!(!container_should_restart(&retry_42, "Never", 1, true));
        assert!(
            !container_should_restart(&retry_42, "Never", 42, false),
            "gate off"
        );
        let not_in = container(json!({ "name": "c", "restartPolicy": "Never",
            "restartPolicyRules": [{ "action": "Restart", "exitCodes": { "operator": "NotIn", "values": [0, 3] } }] }));
        assert!(container_should_restart(&not_in, "Always", 1, true));
        assert!(!container_should_restart(&not_in, "Always", 3, true));
        let on_failure = container(json!({ "name": "c", "restartPolicy": "OnFailure" }));
        assert!(container_should_restart(&on_failure, "Never", 1, true));
        assert!(!container_should_restart(&on_failure, "Always", 0, true));
        let plain = container(json!({ "name": "c" }));
        assert!(!container_should_restart(&plain, "OnFailure", 0, true));
        let all = container(json!({ "name": "c", "restartPolicy": "Never",
            "restartPolicyRules": [{ "action": "RestartAllContainers", "exitCodes": { "operator": "In", "values": [7] } }] }));
        assert!(
            !container_should_restart(&all, "Always", 7, true),
            "not served: the container's policy"
        );
    }

    #[test]
    fn a_probe_kill_restarts_by_the_containers_policy_with_rules() {
        let never = container(json!({ "name": "c", "restartPolicy": "Never" }));
        assert!(!restarts_after_probe_kill(&never, "Always", true, false));
        assert!(restarts_after_probe_kill(&never, "Always", false, false));
        let always = container(json!({ "name": "c", "restartPolicy": "Always" }));
        assert!(restarts_after_probe_kill(&always, "Never", true, false));
        assert!(
            restarts_after_probe_kill(&always, "Never", false, true),
            "a sidecar"
        );
    }
}
