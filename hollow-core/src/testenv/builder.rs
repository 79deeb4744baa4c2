//! The builder that configures and starts a test environment.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::component::{
    Component, apiserver_args, controller_manager_args, etcd_args, metrics_server_args,
    scheduler_args,
};
use super::layout::{Layout, Ports};
use super::pki::Pki;
use super::process::ComponentProcess;
use super::{BIN_DIR_ENV, Error, KUBERNETES_VERSION, Result, TestEnv, client_from, io, kubeconfig};

/// Where `control-plane/install` puts the binaries by default:
/// `$HOLLOW_CACHE_DIR/bin/kubernetes-<version>`, with `$HOLLOW_CACHE_DIR` defaulting to
/// `$HOME/.cache/hollow`. `HOLLOW_K8S_BIN`, when set, takes precedence.
///
/// ```
/// let dir = hollow_core::testenv::default_bin_dir();
/// assert!(dir.is_absolute() || std::env::var_os("HOLLOW_K8S_BIN").is_some());
/// ```
pub fn default_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return PathBuf::from(dir);
    }
    installed_bin_dirs().join(format!("kubernetes-{KUBERNETES_VERSION}"))
}

/// `$HOLLOW_CACHE_DIR/bin` (default `$HOME/.cache/hollow/bin`), where
/// `control-plane/install` puts one directory per Kubernetes version.
fn installed_bin_dirs() -> PathBuf {
    let cache = std::env::var_os("HOLLOW_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(".cache").join("hollow")
        });
    cache.join("bin")
}

/// The installed control plane of `version` (`1.35`, `v1.35` or `v1.35.4`): the
/// directory `control-plane/install --kubernetes <version>` filled, the newest patch of
/// that minor where `version` names none.
fn installed_version_dir(version: &str) -> Result<PathBuf> {
    find_version_dir(installed_bin_dirs(), version)
}

fn find_version_dir(searched: PathBuf, version: &str) -> Result<PathBuf> {
    let bare = version.trim().trim_start_matches('v');
    let not_installed = || Error::VersionNotInstalled {
        version: bare.to_string(),
        searched: searched.clone(),
    };
    let patch_of = |name: &str| -> Option<u32> {
        let rest = name.strip_prefix("kubernetes-v")?;
        if rest == bare {
            return Some(u32::MAX);
        }
        rest.strip_prefix(bare)?.strip_prefix('.')?.parse().ok()
    };
    let newest = std::fs::read_dir(&searched)
        .map_err(|_| not_installed())?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            Some((patch_of(&name)?, name))
        })
        .max();
    let (_, name) = newest.ok_or_else(not_installed)?;
    Ok(searched.join(name))
}

/// The API server's `--kubelet-preferred-address-types` in a [`TestEnv`] unless
/// [`TestEnvBuilder::kubelet_preferred_address_types`] says otherwise: InternalIP first,
/// as kubeadm and kind clusters have it.
pub const DEFAULT_KUBELET_PREFERRED_ADDRESS_TYPES: [&str; 2] = ["InternalIP", "Hostname"];

/// Every request logged once, when received, without its body.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted, ResponseComplete, Panic]
rules:
  - level: Metadata
";

/// Every request logged once it is answered (a watch once it starts streaming, and
/// again when it ends), with its response code, without its body.
const AUDIT_POLICY_RESPONSES: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, Panic]
rules:
  - level: Metadata
";

/// Configures and starts a [`TestEnv`]. Built with [`TestEnv::builder`].
///
/// ```
/// use std::time::Duration;
/// use hollow_core::testenv::TestEnv;
///
/// let builder = TestEnv::builder()
///     .scheduler(false)
///     .node_monitor_grace_period(Duration::from_secs(20))
///     .start_timeout(Duration::from_secs(120));
/// # drop(builder);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct TestEnvBuilder {
    bin_dir: Option<PathBuf>,
    kubernetes_version: Option<String>,
    dir: Option<PathBuf>,
    scheduler: bool,
    controller_manager: bool,
    metrics_server: bool,
    node_monitor_grace_period: Duration,
    kubelet_preferred_address_types: Vec<String>,
    start_timeout: Duration,
    audit_log: bool,
    audit_responses: bool,
    extra_args: BTreeMap<Component, Vec<String>>,
}

impl Default for TestEnvBuilder {
    fn default() -> Self {
        Self {
            bin_dir: None,
            kubernetes_version: None,
            dir: None,
            scheduler: true,
            controller_manager: true,
            metrics_server: false,
            node_monitor_grace_period: Duration::from_secs(20),
            kubelet_preferred_address_types: DEFAULT_KUBELET_PREFERRED_ADDRESS_TYPES
                .map(String::from)
                .to_vec(),
            start_timeout: Duration::from_secs(180),
            audit_log: false,
            audit_responses: false,
            extra_args: BTreeMap::new(),
        }
    }
}

impl TestEnvBuilder {
    /// Looks for the binaries in `dir` instead of [`default_bin_dir`].
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// Runs the control plane of Kubernetes `version` (`1.35`, or `v1.35.4`), as
    /// `control-plane/install --kubernetes <version>` built it, instead of the pinned
    /// one ([`KUBERNETES_VERSION`]). [`start`](Self::start) fails with
    /// [`Error::VersionNotInstalled`], naming the command, if it is not installed.
    /// [`bin_dir`](Self::bin_dir) and `HOLLOW_K8S_BIN` are ignored.
    ///
    /// ```no_run
    /// # async fn run() -> hollow_core::testenv::Result<()> {
    /// use hollow_core::testenv::TestEnv;
    ///
    /// let env = TestEnv::builder().kubernetes_version("1.35").start().await?;
    /// # drop(env); Ok(()) }
    /// ```
    pub fn kubernetes_version(mut self, version: impl Into<String>) -> Self {
        self.kubernetes_version = Some(version.into());
        self
    }

    /// Keeps state (PKI, etcd data, logs, kubeconfig) in `dir`, which is created if
    /// needed and kept after the environment stops. By default a temporary directory
    /// is used and removed.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Whether to run metrics-server, registered as the `metrics.k8s.io` API so
    /// `kubectl top` and HorizontalPodAutoscalers work (default: no; built by
    /// `control-plane/install`). It scrapes kubelet APIs, such as hollow nodes serve
    /// with the `kubelet-api` feature.
    pub fn metrics_server(mut self, enabled: bool) -> Self {
        self.metrics_server = enabled;
        self
    }

    /// Whether to run kube-scheduler (default: yes).
    pub fn scheduler(mut self, enabled: bool) -> Self {
        self.scheduler = enabled;
        self
    }

    /// Whether to run kube-controller-manager (default: yes).
    pub fn controller_manager(mut self, enabled: bool) -> Self {
        self.controller_manager = enabled;
        self
    }

    /// The controller manager's `--node-monitor-grace-period`: how long a node may go
    /// without a heartbeat before it is marked Unknown (default 20 s; upstream 50 s).
    pub fn node_monitor_grace_period(mut self, period: Duration) -> Self {
        self.node_monitor_grace_period = period;
        self
    }

    /// The API server's `--kubelet-preferred-address-types`: which of a node's addresses
    /// it dials for `kubectl logs`, `exec`, `attach` and `port-forward`, first found
    /// first (default [`DEFAULT_KUBELET_PREFERRED_ADDRESS_TYPES`]; kube-apiserver's own
    /// default puts `Hostname` first). Use this rather than [`arg`](Self::arg): a list
    /// flag given twice is appended to, not replaced.
    ///
    /// ```
    /// use hollow_core::testenv::TestEnv;
    ///
    /// // As a cluster with kube-apiserver's default flags.
    /// let builder = TestEnv::builder().kubelet_preferred_address_types([
    ///     "Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP",
    /// ]);
    /// # drop(builder);
    /// ```
    pub fn kubelet_preferred_address_types(
        mut self,
        types: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.kubelet_preferred_address_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the API server writes an audit log: one JSON line per request it
    /// receives, at `Metadata` level (verb, resource, user, user agent; no bodies), at
    /// [`TestEnv::audit_log_path`]. For counting what clients ask of it (default: no).
    ///
    /// ```
    /// use hollow_core::testenv::TestEnv;
    ///
    /// let builder = TestEnv::builder().audit_log(true);
    /// # drop(builder);
    /// ```
    pub fn audit_log(mut self, enabled: bool) -> Self {
        self.audit_log = enabled;
        self
    }

    /// Turns the audit log on ([`audit_log`](Self::audit_log)) with one line per
    /// request when it is answered, with its `responseStatus.code`, in place of one
    /// when it is received: for checking what was allowed or refused. A watch has two
    /// lines, one when it starts streaming (`ResponseStarted`) and one when it ends.
    ///
    /// ```
    /// use hollow_core::testenv::TestEnv;
    ///
    /// let builder = TestEnv::builder().audit_responses(true);
    /// # drop(builder);
    /// ```
    pub fn audit_responses(mut self, enabled: bool) -> Self {
        self.audit_responses = enabled;
        self.audit_log |= enabled;
        self
    }

    /// How long each component may take to become ready (default 180 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Adds a command-line argument for one component, after the defaults (a later flag
    /// wins over an earlier one, except a list flag, which is appended to).
    pub fn arg(mut self, component: Component, arg: impl Into<String>) -> Self {
        self.extra_args
            .entry(component)
            .or_default()
            .push(arg.into());
        self
    }

    /// Starts the environment and waits until every component is ready. With the
    /// controller manager on, it also waits for the `default` service account, so pods
    /// can be created at once.
    pub async fn start(self) -> Result<TestEnv> {
        let bin_dir = match &self.kubernetes_version {
            Some(version) => installed_version_dir(version)?,
            None => self.bin_dir.clone().unwrap_or_else(default_bin_dir),
        };
        let enabled: Vec<Component> = Component::ALL
            .into_iter()
            .chain([Component::MetricsServer])
            .filter(|component| match component {
                Component::Scheduler => self.scheduler,
                Component::ControllerManager => self.controller_manager,
                Component::MetricsServer => self.metrics_server,
                _ => true,
            })
            .collect();
        check_binaries(&bin_dir, &enabled)?;

        let (temp_dir, dir) = match &self.dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("hollow-testenv-")
                    .tempdir()
                    .map_err(io("cannot create a temporary directory"))?;
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
        let layout = Layout::new(&dir)?;
        let audit_log_path = self.audit_log.then(|| layout.logs.join("audit.log"));
        if self.audit_log {
            let policy = if self.audit_responses {
                AUDIT_POLICY_RESPONSES
            } else {
                AUDIT_POLICY
            };
            std::fs::write(layout.pki.join("audit-policy.yaml"), policy)
                .map_err(io("cannot write the audit policy"))?;
        }
        let pki = Pki::generate()?;
        let ports = Ports::allocate()?;
        let server_url = format!("https://127.0.0.1:{}", ports.apiserver);
        layout.write_pki(&pki, &server_url)?;

        let admin = pki.client_cert("hollow-admin", &["system:masters"])?;
        let admin_document =
            kubeconfig::kubeconfig_json(&server_url, &pki.ca_pem(), "hollow-admin", &admin);
        let kubeconfig_path = dir.join("admin.kubeconfig");
        kubeconfig::write(&kubeconfig_path, &admin_document)?;
        let admin_kubeconfig = kubeconfig::to_kubeconfig(admin_document)?;
        let client = client_from(admin_kubeconfig.clone()).await?;

        let apiserver_minor = binary_minor(&bin_dir.join(Component::ApiServer.binary_name())).await;
        let processes = enabled
            .iter()
            .map(|&component| {
                ComponentProcess::new(
                    component,
                    bin_dir.join(component.binary_name()),
                    self.args(component, &layout, &ports, apiserver_minor),
                    layout.logs.join(format!("{component}.log")),
                )
            })
            .collect();

        let env = TestEnv {
            processes: Mutex::new(processes),
            client,
            kubeconfig: admin_kubeconfig,
            kubeconfig_path,
            server_url,
            pki,
            ports,
            bin_dir,
            dir,
            start_timeout: self.start_timeout,
            audit_log_path,
            _temp_dir: temp_dir,
        };
        // On an error here `env` drops and kills whatever was started.
        for component in enabled {
            env.start_component(component).await?;
        }
        if self.controller_manager {
            env.wait_for_default_service_account().await?;
        }
        if self.metrics_server {
            env.register_metrics_api().await?;
        }
        tracing::info!(server = %env.server_url, dir = %env.dir.display(), "test environment ready");
        Ok(env)
    }

    fn args(
        &self,
        component: Component,
        layout: &Layout,
        ports: &Ports,
        apiserver_minor: Option<u32>,
    ) -> Vec<String> {
        let mut args = match component {
            Component::Etcd => etcd_args(layout, ports),
            Component::ApiServer => {
                let mut args = apiserver_args(layout, ports, &self.kubelet_preferred_address_types);
                if apiserver_minor.is_some_and(|minor| minor >= 37) {
                    // From 1.37 the API server refuses to advertise a loopback address
                    // with an endpoint reconciler (pkg/controlplane/instance.go,
                    // `ValidateIP`), and the environment serves on loopback only: the
                    // `kubernetes` Service gets no endpoints, as no pod here dials it.
                    args.push("--endpoint-reconciler-type=none".into());
                }
                if self.audit_log {
                    let policy = layout.pki.join("audit-policy.yaml");
                    args.extend([
                        format!("--audit-policy-file={}", policy.display()),
                        format!(
                            "--audit-log-path={}",
                            layout.logs.join("audit.log").display()
                        ),
                        // One file, never rotated.
                        "--audit-log-maxsize=0".into(),
                    ]);
                }
                args
            }
            Component::ControllerManager => {
                controller_manager_args(layout, ports, self.node_monitor_grace_period)
            }
            Component::Scheduler => scheduler_args(layout, ports),
            Component::MetricsServer => metrics_server_args(layout, ports),
        };
        if let Some(extra) = self.extra_args.get(&component) {
            args.extend(extra.iter().cloned());
        }
        args
    }
}

/// The Kubernetes minor of a component binary, from its `--version` (`Kubernetes
/// v1.37.2`); `None` if it does not say within 30 s.
async fn binary_minor(binary: &Path) -> Option<u32> {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(binary)
            .arg("--version")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find(|word| word.starts_with("v1."))?;
    version.strip_prefix("v1.")?.split('.').next()?.parse().ok()
}

pub(crate) fn check_binaries(bin_dir: &Path, enabled: &[Component]) -> Result<()> {
    let missing: Vec<String> = enabled
        .iter()
        .map(|component| component.binary_name())
        .filter(|name| !is_executable(&bin_dir.join(name)))
        .map(String::from)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::BinariesNotFound {
            dir: bin_dir.to_path_buf(),
            missing,
        })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_finds_the_newest_installed_patch_of_its_minor() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "kubernetes-v1.35.4",
            "kubernetes-v1.35.10",
            "kubernetes-v1.36.5",
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let found = |version: &str| find_version_dir(dir.path().to_path_buf(), version);
        assert!(found("1.35").unwrap().ends_with("kubernetes-v1.35.10"));
        assert!(found("v1.35.4").unwrap().ends_with("kubernetes-v1.35.4"));
        assert!(found("v1.36").unwrap().ends_with("kubernetes-v1.36.5"));
        let missing = found("1.3").unwrap_err();
        assert!(
            matches!(missing, Error::VersionNotInstalled { .. }),
            "{missing}"
        );
        let message = found("1.37").unwrap_err().to_string();
        assert!(
            message.contains("control-plane/install --kubernetes 1.37"),
            "{message}"
        );
    }
}
