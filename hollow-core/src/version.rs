//! The Kubernetes minor a hollow node behaves as.
//!
//! A node reads the API server's version (`/version`) as it starts and behaves as the
//! kubelet of that minor: it reports the server's version as its `kubeletVersion`, and
//! does what that minor's kubelet does where the supported minors differ. Every such
//! difference is one row of [`BEHAVIOURS`], which names the feature gate and the minor
//! where its default turned on (from `pkg/features/kube_features.go` of each release);
//! the code asks [`KubeletVersion::has`] rather than comparing versions.
//!
//! A node can be told its version ([`HollowNodeBuilder::kubelet_version`], or
//! `hollow-kubelet --kubelet-version`), for version-skew tests: a kubelet older than its
//! API server, as production clusters run during an upgrade.
//!
//! [`HollowNodeBuilder::kubelet_version`]: crate::node::HollowNodeBuilder::kubelet_version
//!
//! ```
//! use hollow_core::version::{Behaviour, KubeletVersion};
//!
//! let kubelet = KubeletVersion::parse("v1.35.4")?;
//! assert_eq!(kubelet.minor(), 35);
//! assert!(kubelet.has(Behaviour::ContainerRestartRules));
//! assert!(!KubeletVersion::parse("v1.34.4")?.has(Behaviour::HostnameOverride));
//! # Ok::<(), hollow_core::version::VersionError>(())
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::version::Info;

use crate::backoff::Doubling;

/// The oldest Kubernetes minor a hollow node can behave as.
pub const OLDEST_MINOR: u32 = 34;

/// The newest Kubernetes minor a hollow node knows; a newer API server gets a node that
/// behaves as this one, with a warning.
pub const NEWEST_MINOR: u32 = 37;

/// A kubelet behaviour that differs between the supported minors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Behaviour {
    /// A container's own `restartPolicy` and `restartPolicyRules` decide whether it
    /// restarts, and the pod's phase counts a stopped container that will restart as
    /// running (`podutil.ContainerShouldRestart`); before, only the pod's policy did.
    ContainerRestartRules,
    /// `spec.hostnameOverride` is the pod's hostname (`GeneratePodHostNameAndDomain`).
    HostnameOverride,
    /// An environment variable's `valueFrom.fileKeyRef` is read from a file in an
    /// `emptyDir` volume when the container starts (`makeEnvironmentVariables`); before,
    /// the kubelet ignores it.
    EnvFiles,
    /// A False `PodReadyToStartContainers` condition says why: reason
    /// `PodSandboxNotReady`, and whether the pod has no sandbox or one not ready
    /// (`GeneratePodReadyToStartContainersCondition`).
    SandboxNotReadyReason,
    /// A resize asking for more CPU or memory than the node's allocatable is
    /// `Infeasible` before the admission handlers run (`canResizePod`); from 1.36 the
    /// resize admission handler decides alone.
    ResizeInfeasibleBeyondAllocatable,
    /// The Node's `status.nodeInfo.runningInUserNamespace` says whether the kubelet runs
    /// in a user namespace (false here) (the MachineInfo setter).
    RunningInUserNamespaceField,
    /// A pod's status shows its own `resources` and `allocatedResources` (pod-level
    /// resources) (`generateAPIPodStatus`). Before, the kubelet leaves them out, and an
    /// API server of that version drops them.
    PodLevelResourcesStatus,
}

/// One row of [`BEHAVIOURS`]: a behaviour, the feature gate that turns it on (if any),
/// and the first minor whose kubelet has it.
#[derive(Debug, Clone, Copy)]
pub struct BehaviourRow {
    /// The behaviour.
    pub behaviour: Behaviour,
    /// The kubelet's feature gate; `None` for a change of the kubelet's code.
    pub gate: Option<&'static str>,
    /// The first minor with the behaviour (its gate on by default).
    pub since_minor: u32,
    /// The first minor without it again, for behaviours a release removed.
    pub until_minor: Option<u32>,
    /// Where upstream the gate's default and the kubelet's use of it are.
    pub upstream: &'static str,
}

/// Every kubelet behaviour that differs between [`OLDEST_MINOR`] and [`NEWEST_MINOR`]
/// and that hollow serves, with the minor it starts in (docs/versions.md lists the
/// gates that changed and why the others need no row). The gates' histories are in
/// `pkg/features/kube_features.go` (`defaultVersionedKubernetesFeatureGates`) of
/// Kubernetes 1.37, which lists each gate's default per release.
pub const BEHAVIOURS: &[BehaviourRow] = &[
    BehaviourRow {
        behaviour: Behaviour::ContainerRestartRules,
        gate: Some("ContainerRestartRules"),
        since_minor: 35,
        until_minor: None,
        upstream: "alpha (off) in 1.34, beta (on) in 1.35; pkg/api/v1/pod/util.go \
                   ContainerShouldRestart, pkg/kubelet/kubelet_pods.go getPhase, \
                   pkg/kubelet/container/helpers.go ShouldContainerBeRestarted",
    },
    BehaviourRow {
        behaviour: Behaviour::HostnameOverride,
        gate: Some("HostnameOverride"),
        since_minor: 35,
        until_minor: None,
        upstream: "alpha (off) in 1.34, beta (on) in 1.35; pkg/kubelet/kubelet_pods.go \
                   GeneratePodHostNameAndDomain",
    },
    BehaviourRow {
        behaviour: Behaviour::EnvFiles,
        gate: Some("EnvFiles"),
        since_minor: 35,
        until_minor: None,
        upstream: "alpha (off) in 1.34, beta (on) in 1.35; pkg/kubelet/kubelet_pods.go \
                   makeEnvironmentVariables, pkg/kubelet/util/env/env_util.go ParseEnv",
    },
    BehaviourRow {
        behaviour: Behaviour::SandboxNotReadyReason,
        gate: None,
        since_minor: 37,
        until_minor: None,
        upstream: "pkg/kubelet/status/generate.go GeneratePodReadyToStartContainersCondition \
                   (1.37 adds the reason and message from \
                   pkg/kubelet/kuberuntime/util/util.go PodSandboxChanged); found by the \
                   fidelity harness against Kubemark 1.37",
    },
    BehaviourRow {
        behaviour: Behaviour::RunningInUserNamespaceField,
        gate: Some("KubeletInUserNamespace"),
        since_minor: 37,
        until_minor: None,
        upstream: "alpha (off) until 1.36, beta (on) in 1.37; pkg/kubelet/nodestatus/setters.go \
                   MachineInfo; found by the fidelity harness against Kubemark 1.37",
    },
    BehaviourRow {
        behaviour: Behaviour::PodLevelResourcesStatus,
        gate: Some("InPlacePodLevelResourcesVerticalScaling"),
        since_minor: 36,
        until_minor: None,
        upstream: "alpha (off) in 1.35, beta (on) in 1.36; pkg/kubelet/kubelet_pods.go \
                   generateAPIPodStatus (the fields are not in the 1.34 API)",
    },
    BehaviourRow {
        behaviour: Behaviour::ResizeInfeasibleBeyondAllocatable,
        gate: None,
        since_minor: OLDEST_MINOR,
        until_minor: Some(36),
        upstream: "pkg/kubelet/allocation/allocation_manager.go canResizePod of 1.35 \
                   (against the container manager's GetNodeAllocatableAbsolute); 1.36 \
                   moved resize admission to pkg/kubelet/allocation/handlers.go \
                   podResizesAdmitHandler, without it",
    },
];

/// Why a version cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The text is not a Kubernetes version (`v1.36.5`, `1.36`).
    #[error("'{0}' is not a Kubernetes version (such as v1.36.5)")]
    Unparsable(String),
    /// Older than [`OLDEST_MINOR`]: hollow does not know that kubelet.
    #[error(
        "Kubernetes {version} is older than the oldest version hollow serves (1.{oldest}); \
         use a hollow release of that time, or a newer control plane"
    )]
    TooOld {
        /// The version asked for or served.
        version: String,
        /// [`OLDEST_MINOR`].
        oldest: u32,
    },
    /// The API server's `/version` could not be read (the client's error, as text).
    #[error("cannot read the API server's version: {0}")]
    Query(String),
}

/// The kubelet a node behaves as: the version it reports and the minor whose behaviour
/// it has. Cheap to clone (the version text is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletVersion {
    reported: Arc<str>,
    minor: u32,
}

impl KubeletVersion {
    /// The version `text` names (`v1.35.4`, `1.35.4`, `v1.36.5-gke.100`, `1.35`),
    /// reported as given with a leading `v`. Older than [`OLDEST_MINOR`] is
    /// [`VersionError::TooOld`]; newer than [`NEWEST_MINOR`] behaves as the newest,
    /// with a warning.
    ///
    /// ```
    /// use hollow_core::version::{KubeletVersion, NEWEST_MINOR, VersionError};
    ///
    /// assert_eq!(KubeletVersion::parse("1.36")?.reported(), "v1.36");
    /// assert_eq!(KubeletVersion::parse("v1.99.0")?.minor(), NEWEST_MINOR);
    /// assert!(matches!(KubeletVersion::parse("v1.20.0"), Err(VersionError::TooOld { .. })));
    /// assert!(matches!(KubeletVersion::parse("next"), Err(VersionError::Unparsable(_))));
    /// # Ok::<(), VersionError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let trimmed = text.trim();
        let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let minor = minor_of(bare).ok_or_else(|| VersionError::Unparsable(text.into()))?;
        Self::of_minor(format!("v{bare}"), minor)
    }

    /// The version of the API server `info` describes (as `/version` answers): its
    /// `gitVersion`, or its major and minor where that is not a version (a server built
    /// from an untagged tree).
    pub fn of_server(info: &Info) -> Result<Self, VersionError> {
        match Self::parse(&info.git_version) {
            Err(VersionError::Unparsable(_)) => {
                let minor = info.minor.trim_end_matches('+');
                Self::parse(&format!("{}.{minor}", info.major))
            }
            resolved => resolved,
        }
    }

    /// Reads the API server's version (one request) and resolves it as
    /// [`of_server`](Self::of_server) does.
    pub async fn of_cluster(client: &kube::Client) -> Result<Self, VersionError> {
        let info = client
            .apiserver_version()
            .await
            .map_err(|error| VersionError::Query(error.to_string()))?;
        Self::of_server(&info)
    }

    fn of_minor(reported: String, minor: u32) -> Result<Self, VersionError> {
        if minor < OLDEST_MINOR {
            return Err(VersionError::TooOld {
                version: reported,
                oldest: OLDEST_MINOR,
            });
        }
        if minor > NEWEST_MINOR {
            tracing::warn!(
                version = %reported,
                newest = %format!("1.{NEWEST_MINOR}"),
                "Kubernetes {reported} is newer than the newest version hollow knows; its nodes \
                 behave as the kubelet of 1.{NEWEST_MINOR}"
            );
        }
        Ok(Self {
            reported: reported.into(),
            minor: minor.min(NEWEST_MINOR),
        })
    }

    /// The version the node reports as `status.nodeInfo.kubeletVersion`.
    pub fn reported(&self) -> &str {
        &self.reported
    }

    /// The minor whose kubelet the node behaves as (at most [`NEWEST_MINOR`]).
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// Whether this minor's kubelet has `behaviour` (its [`BEHAVIOURS`] row's gate is on
    /// by default).
    pub fn has(&self, behaviour: Behaviour) -> bool {
        BEHAVIOURS
            .iter()
            .find(|row| row.behaviour == behaviour)
            .is_some_and(|row| {
                self.minor >= row.since_minor
                    && row.until_minor.is_none_or(|until| self.minor < until)
            })
    }
}

impl Default for KubeletVersion {
    /// The pinned control plane's version ([`crate::node::DEFAULT_KUBELET_VERSION`]).
    fn default() -> Self {
        Self::parse(crate::node::DEFAULT_KUBELET_VERSION).expect("the default version is known")
    }
}

impl std::fmt::Display for KubeletVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reported)
    }
}

/// The API server's version, read once for all the nodes of a process (the first node
/// to start reads it).
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerVersion(Arc<tokio::sync::OnceCell<KubeletVersion>>);

impl ServerVersion {
    /// The server's version, read with `client` if no node has read it yet. An API
    /// server that fails or answers late is asked again, with backoff (0.5 s doubling to
    /// 8 s, each request given 10 s), for up to `patience`, as registration is; a
    /// version hollow cannot serve fails at once.
    pub(crate) async fn get(
        &self,
        client: &kube::Client,
        patience: Duration,
    ) -> Result<KubeletVersion, VersionError> {
        self.0
            .get_or_try_init(|| async {
                let started = Instant::now();
                let mut delays =
                    Doubling::new(Duration::from_millis(500), Duration::from_secs(8)).delays();
                loop {
                    let asked =
                        tokio::time::timeout(REQUEST_TIMEOUT, KubeletVersion::of_cluster(client));
                    let error = match asked.await {
                        Ok(Err(VersionError::Query(error))) => error,
                        Ok(resolved) => return resolved,
                        Err(_) => format!("no answer within {REQUEST_TIMEOUT:?}"),
                    };
                    let delay = delays.next().unwrap_or(Duration::from_secs(8));
                    if started.elapsed() + delay > patience {
                        return Err(VersionError::Query(error));
                    }
                    tracing::warn!(%error, "cannot read the API server's version; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
            })
            .await
            .cloned()
    }
}

/// How long one `/version` request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The minor of `1.<minor>[.<patch>][-suffix]`.
fn minor_of(bare: &str) -> Option<u32> {
    let mut parts = bare.split(['.', '-', '+']);
    if parts.next()? != "1" {
        return None;
    }
    let minor = parts.next()?.parse().ok()?;
    Some(minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(git_version: &str, major: &str, minor: &str) -> Info {
        Info {
            git_version: git_version.into(),
            major: major.into(),
            minor: minor.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_supported_minor_has_the_rows_from_its_minor_on() {
        for minor in OLDEST_MINOR..=NEWEST_MINOR {
            let kubelet = KubeletVersion::parse(&format!("v1.{minor}.0")).unwrap();
            for row in BEHAVIOURS {
                let until = row.until_minor.unwrap_or(u32::MAX);
                assert_eq!(
                    kubelet.has(row.behaviour),
                    minor >= row.since_minor && minor < until,
                    "{row:?}"
                );
            }
        }
        assert!(
            !KubeletVersion::parse("1.34.4")
                .unwrap()
                .has(Behaviour::HostnameOverride)
        );
        assert!(
            KubeletVersion::parse("1.36.5")
                .unwrap()
                .has(Behaviour::ContainerRestartRules)
        );
    }

    #[test]
    fn every_row_is_within_the_supported_window() {
        for row in BEHAVIOURS {
            let starts = row.since_minor > OLDEST_MINOR && row.since_minor <= NEWEST_MINOR;
            let ends = row
                .until_minor
                .is_some_and(|until| until > OLDEST_MINOR && until <= NEWEST_MINOR);
            assert!(
                starts || ends,
                "{row:?} changes nothing between the supported minors"
            );
        }
    }

    #[test]
    fn a_server_reports_its_git_version() {
        let kubelet = KubeletVersion::of_server(&info("v1.35.4", "1", "35")).unwrap();
        assert_eq!((kubelet.reported(), kubelet.minor()), ("v1.35.4", 35));
        let vendor = KubeletVersion::of_server(&info("v1.36.5-gke.1200", "1", "36+")).unwrap();
        assert_eq!(
            (vendor.reported(), vendor.minor()),
            ("v1.36.5-gke.1200", 36)
        );
        let untagged = KubeletVersion::of_server(&info("v0.0.0-master+$Format:%H$", "1", "37+"));
        assert_eq!(untagged.unwrap().minor(), 37);
    }

    #[test]
    fn too_old_is_refused_and_too_new_behaves_as_the_newest() {
        let old = KubeletVersion::of_server(&info("v1.33.9", "1", "33")).unwrap_err();
        assert!(
            matches!(
                old,
                VersionError::TooOld {
                    oldest: OLDEST_MINOR,
                    ..
                }
            ),
            "{old}"
        );
        assert!(old.to_string().contains("1.33.9"), "{old}");
        let new = KubeletVersion::of_server(&info("v1.40.1", "1", "40")).unwrap();
        assert_eq!((new.reported(), new.minor()), ("v1.40.1", NEWEST_MINOR));
        for row in BEHAVIOURS {
            assert_eq!(new.has(row.behaviour), row.until_minor.is_none(), "{row:?}");
        }
    }

    #[test]
    fn nonsense_is_unparsable() {
        for text in ["", "v2.1.0", "1", "latest", "v1.x"] {
            assert!(
                matches!(
                    KubeletVersion::parse(text),
                    Err(VersionError::Unparsable(_))
                ),
                "{text}"
            );
        }
    }
}
