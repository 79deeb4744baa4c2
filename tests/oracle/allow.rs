//! The differences the oracle accepts, each with its reason. Two kinds only:
//!
//! - [`Why::KubemarkFake`]: Kubemark differs from a real kubelet because of one of its
//!   fakes (runtime, prober, cAdvisor); the entry names the fake and the upstream file
//!   whose behaviour hollow follows instead.
//! - [`Why::Deliberate`]: hollow differs on purpose (it names itself, or declares only
//!   what it serves); the entry says why.
//! - [`Why::OpenInHollow`]: hollow is wrong and the fix is still open; the entry names
//!   the issue. The report counts these apart, and the list is meant to shrink to none.
//!
//! Upstream paths are of k8s.io/kubernetes v1.36.5, on disk after `control-plane/install`
//! under `$(go env GOMODCACHE)/k8s.io/kubernetes@v1.36.5/`.

use wildmatch::WildMatch;

/// Why a difference is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Kubemark's fake differs from the kubelet; hollow follows the kubelet's code.
    KubemarkFake {
        /// What differs, and which fake makes it so.
        reason: &'static str,
        /// The upstream file hollow follows.
        upstream: &'static str,
    },
    /// hollow differs on purpose.
    Deliberate {
        /// Why.
        reason: &'static str,
    },
    /// hollow's difference, still to be fixed.
    OpenInHollow {
        /// What is missing.
        reason: &'static str,
        /// The issue that fixes it.
        issue: u32,
    },
}

/// Which object a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A pod's status.
    Pod,
    /// The Node object.
    Node,
}

/// Which values a rule accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Any pair.
    Any,
    /// Only where Kubemark has no value.
    KubemarkAbsent,
    /// Only where Kubemark's value is this (JSON text).
    Kubemark(&'static str),
}

/// One accepted difference: for the cases matching `cases` and the fields matching
/// `path` (both `*`-globs), with the values `values` allows.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Pod or Node.
    pub scope: Scope,
    /// The case names it covers (`*` for all; the Node's case is `node`).
    pub cases: &'static str,
    /// The flattened field paths it covers.
    pub path: &'static str,
    /// The values it accepts.
    pub values: Values,
    /// Why.
    pub why: Why,
}

/// The rule accepting a difference at `path` of `case` where Kubemark has `kubemark`,
/// if any.
pub fn rule_for(
    scope: Scope,
    case: &str,
    path: &str,
    kubemark: Option<&str>,
) -> Option<&'static Rule> {
    RULES.iter().find(|rule| {
        rule.scope == scope
            && WildMatch::new(rule.cases).matches(case)
            && WildMatch::new(rule.path).matches(path)
            && match rule.values {
                Values::Any => true,
                Values::KubemarkAbsent => kubemark.is_none(),
                Values::Kubemark(value) => kubemark == Some(value),
            }
    })
}

const FAKE_PROBER_STARTED: Why = Why::KubemarkFake {
    reason: "Kubemark's prober is a fake (prober/testing.FakeManager, pkg/kubemark/hollow_kubelet.go) that never sets `started`; the kubelet's prober manager sets it on every container status",
    upstream: "pkg/kubelet/prober/prober_manager.go (UpdatePodStatus)",
};

const FAKE_PROBER_READY: Why = Why::KubemarkFake {
    reason: "Kubemark's fake prober marks every regular container ready, waiting and terminated ones too (so a pod whose volume or env is missing shows Ready there), and leaves init containers (sidecars included) unready; the kubelet's prober manager makes a container ready only while it runs, and a started sidecar without a readiness probe ready",
    upstream: "pkg/kubelet/prober/prober_manager.go (UpdatePodStatus)",
};

const FAKE_RUNTIME_NEVER_EXITS: Why = Why::KubemarkFake {
    reason: "Kubemark's fake runtime never ends a container, so an init container never completes and the pod stays Pending; the kubelet starts the regular containers once the init containers exited 0 (hollow's lifecycle tests cover it)",
    upstream: "pkg/kubelet/kuberuntime/kuberuntime_container.go (computeInitContainerActions)",
};

const FAKE_RUNTIME_NO_REASON: Why = Why::KubemarkFake {
    reason: "Kubemark's fake runtime reports no reason for an exited container; the kubelet copies the runtime's, which containerd sets to Completed (exit 0) or Error",
    upstream: "pkg/kubelet/kuberuntime/kuberuntime_container.go (toKubeContainerStatus)",
};

const FAKE_RUNTIME_NO_RESOURCES: Why = Why::KubemarkFake {
    reason: "Kubemark's fake runtime reports no container resources, so the kubelet fills them from the allocated ones, a zero memory request and limit included; a runtime that reports its cgroup settings (containerd) gives no memory limit where none is set",
    upstream: "pkg/kubelet/kuberuntime/kuberuntime_container.go (toKubeContainerStatus), pkg/kubelet/kubelet_pods.go (convertContainerStatusResources)",
};

const FAKE_CADVISOR_IDS: Why = Why::KubemarkFake {
    reason: "Kubemark's fake cAdvisor has empty machine, system and boot IDs; the kubelet copies cAdvisor's, which a real machine has",
    upstream: "pkg/kubelet/nodestatus/setters.go (MachineInfo)",
};

const KUBEMARK_NO_ATTACH_DETACH: Why = Why::KubemarkFake {
    reason: "Kubemark turns the controller-managed attach/detach off (EnableControllerAttachDetach = false in pkg/kubemark/hollow_kubelet.go); a kubelet with default flags annotates its Node with it",
    upstream: "pkg/kubelet/kubelet_node_status.go (initialNode)",
};

const STUB_CGROUPS_NO_RESIZE: Why = Why::KubemarkFake {
    reason: "Kubemark's stub container manager has no pod cgroups (GetPodCgroupConfig answers \"not implemented\"), so its kubelet never applies an accepted resize: the pod stays PodResizeInProgress, and as its fake runtime reports no container resources the status keeps the old ones. With a runtime that applies and reports them, the kubelet shows the new resources and clears PodResizeInProgress at its next sync (ResizeCompleted), as hollow does",
    upstream: "pkg/kubelet/cm/container_manager_stub.go, pkg/kubelet/kuberuntime/kuberuntime_manager.go (doPodResizeAction, IsPodResizeInProgress), pkg/kubelet/kubelet.go (SyncPod), pkg/kubelet/kubelet_pods.go (convertContainerStatusResources)",
};

const STUB_NO_NODE_ALLOCATABLE: Why = Why::KubemarkFake {
    reason: "Kubemark 1.34 and 1.35 only: their kubelet calls a resize that asks for more than the container manager's absolute node allocatable Infeasible, and Kubemark's stub container manager has none (GetNodeAllocatableAbsolute answers nil), so every resize is Infeasible there with \"capacity: 0\". A real 1.34 or 1.35 kubelet compares with the machine's allocatable, as hollow does on those versions; 1.36 removed the check",
    upstream: "pkg/kubelet/allocation/allocation_manager.go of 1.35 (canResizePod), pkg/kubelet/cm/container_manager_stub.go",
};

const fn pod(cases: &'static str, path: &'static str, values: Values, why: Why) -> Rule {
    Rule {
        scope: Scope::Pod,
        cases,
        path,
        values,
        why,
    }
}

const fn node(path: &'static str, values: Values, why: Why) -> Rule {
    Rule {
        scope: Scope::Node,
        cases: "node",
        path,
        values,
        why,
    }
}

/// Every accepted difference.
pub static RULES: &[Rule] = &[
    pod(
        "*",
        "*ontainerStatuses[*].started",
        Values::KubemarkAbsent,
        FAKE_PROBER_STARTED,
    ),
    // A container that is not running is never ready; Kubemark's fake prober says it is.
    pod(
        "*",
        "containerStatuses[*].ready",
        Values::Kubemark("true"),
        FAKE_PROBER_READY,
    ),
    pod(
        "configmap-volume-missing",
        "conditions[type=*Ready].*",
        Values::Any,
        FAKE_PROBER_READY,
    ),
    pod(
        "secret-volume-missing",
        "conditions[type=*Ready].*",
        Values::Any,
        FAKE_PROBER_READY,
    ),
    pod(
        "projected-missing",
        "conditions[type=*Ready].*",
        Values::Any,
        FAKE_PROBER_READY,
    ),
    pod(
        "pvc-missing",
        "conditions[type=*Ready].*",
        Values::Any,
        FAKE_PROBER_READY,
    ),
    pod(
        "env-from-missing-secret",
        "conditions[type=*Ready].*",
        Values::Any,
        FAKE_PROBER_READY,
    ),
    pod(
        "env-key-missing-configmap",
        "conditions[type=*Ready].*",
        Values::Any,
        FAKE_PROBER_READY,
    ),
    pod(
        "env-file-*",
        "conditions[type=*Ready].*",
        Values::Any,
        FAKE_PROBER_READY,
    ),
    pod(
        "sidecar",
        "initContainerStatuses[*].ready",
        Values::Kubemark("false"),
        FAKE_PROBER_READY,
    ),
    pod(
        "sidecar",
        "conditions[type=*Ready].*",
        Values::Any,
        FAKE_PROBER_READY,
    ),
    pod(
        "init-containers",
        "*",
        Values::Any,
        FAKE_RUNTIME_NEVER_EXITS,
    ),
    pod(
        "*",
        "*ontainerStatuses[*].state.terminated.reason",
        Values::KubemarkAbsent,
        FAKE_RUNTIME_NO_REASON,
    ),
    pod(
        "resize-1-fits",
        "conditions[order]",
        Values::Any,
        STUB_CGROUPS_NO_RESIZE,
    ),
    pod(
        "resize-1-fits",
        "conditions[*PodResizeInProgress*",
        Values::Any,
        STUB_CGROUPS_NO_RESIZE,
    ),
    pod(
        "resize-1-fits",
        "*resources.*",
        Values::Any,
        STUB_CGROUPS_NO_RESIZE,
    ),
    pod(
        "resize-1-fits",
        "conditions[type=PodResizePending].*",
        Values::Any,
        STUB_NO_NODE_ALLOCATABLE,
    ),
    pod(
        "resize-1-fits",
        "containerStatuses[*].allocatedResources.*",
        Values::Any,
        STUB_NO_NODE_ALLOCATABLE,
    ),
    pod(
        "resize-*",
        "conditions[type=PodResizePending].reason",
        Values::Kubemark("\"Infeasible\""),
        STUB_NO_NODE_ALLOCATABLE,
    ),
    pod(
        "resize-*",
        "conditions[type=PodResizePending].message",
        Values::Kubemark("\"Node didn't have enough capacity: cpu, requested: 1000, capacity: 0\""),
        STUB_NO_NODE_ALLOCATABLE,
    ),
    pod(
        "*",
        "containerStatuses[*].resources.*.memory",
        Values::Kubemark("\"0\""),
        FAKE_RUNTIME_NO_RESOURCES,
    ),
    node(
        "status.nodeInfo.*ID",
        Values::Kubemark("\"\""),
        FAKE_CADVISOR_IDS,
    ),
    node(
        "annotations.volumes.kubernetes.io/controller-managed-attach-detach",
        Values::KubemarkAbsent,
        KUBEMARK_NO_ATTACH_DETACH,
    ),
    node(
        "annotations.hollow.dev/managed",
        Values::KubemarkAbsent,
        Why::Deliberate {
            reason: "hollow marks the Nodes it serves, so a restarted process adopts them and tools can tell them apart",
        },
    ),
    node(
        "spec.providerID",
        Values::Any,
        Why::Deliberate {
            reason: "each simulator names itself in the provider ID (kubemark://<node>, hollow://<node>)",
        },
    ),
    node(
        "status.nodeInfo.containerRuntimeVersion",
        Values::Any,
        Why::Deliberate {
            reason: "each fake runtime names itself (fakeRuntime://0.1.0, hollow://0.1.0)",
        },
    ),
    node(
        "status.nodeInfo.kernelVersion",
        Values::Any,
        Why::Deliberate {
            reason: "hollow reports a current kernel (configurable through NodeStatusProvider); Kubemark's fake cAdvisor reports a 2014 one",
        },
    ),
    node(
        "status.nodeInfo.osImage",
        Values::Any,
        Why::Deliberate {
            reason: "hollow reports a current OS image (configurable); Kubemark's fake reports Debian 7",
        },
    ),
    node(
        "status.declaredFeatures*",
        Values::Any,
        Why::Deliberate {
            reason: "a node declares only the features it serves (pkg/kubelet/kubelet_node_declared_features.go); hollow resizes regular containers and sidecars in place, which needs no declared feature, but serves no resize of other init containers or of pod-level resources, no WebSocket streaming and no restart-all-containers yet, so it declares none of them, and the scheduler and the API server keep pods that need them off it",
        },
    ),
];

/// The rules as a Markdown table, for `docs/fidelity.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "| object | cases | field | values | kind | why | upstream |\n|---|---|---|---|---|---|---|\n",
    );
    for rule in RULES {
        let scope = match rule.scope {
            Scope::Pod => "pod",
            Scope::Node => "Node",
        };
        let values = match rule.values {
            Values::Any => "any".to_string(),
            Values::KubemarkAbsent => "Kubemark has none".to_string(),
            Values::Kubemark(value) => format!("Kubemark has `{value}`"),
        };
        let (kind, why, upstream) = match rule.why {
            Why::KubemarkFake { reason, upstream } => ("Kubemark's fake", reason, upstream),
            Why::Deliberate { reason } => ("deliberate", reason, ""),
            Why::OpenInHollow { reason, issue } => {
                out.push_str(&format!(
                    "| {scope} | `{}` | `{}` | {values} | open in hollow (#{issue}) | {reason} | |\n",
                    rule.cases, rule.path
                ));
                continue;
            }
        };
        out.push_str(&format!(
            "| {scope} | `{}` | `{}` | {values} | {kind} | {why} | {upstream} |\n",
            rule.cases, rule.path
        ));
    }
    out
}
