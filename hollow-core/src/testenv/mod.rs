//! A real local control plane for tests: etcd, kube-apiserver, kube-scheduler and
//! kube-controller-manager as child processes on free 127.0.0.1 ports.
//!
//! The binaries are the upstream ones, built from the Go module proxy by the
//! repository's `control-plane/install`. [`TestEnv`] finds them through the
//! `HOLLOW_K8S_BIN` environment variable, or else in the directory that script fills
//! by default (see [`default_bin_dir`]).
//!
//! Every environment has its own fresh PKI, ports, etcd data and logs in a temporary
//! directory; several run side by side. Dropping a [`TestEnv`], also while a test
//! panics, kills every child process.
//!
//! ```no_run
//! use hollow_core::testenv::TestEnv;
//! use k8s_openapi::api::core::v1::Namespace;
//! use kube::Api;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let env = TestEnv::builder().start().await?;
//! let namespaces: Api<Namespace> = Api::all(env.client());
//! assert!(namespaces.get_opt("kube-system").await?.is_some());
//! println!("kubectl --kubeconfig {} get nodes", env.kubeconfig_path().display());
//! # Ok(()) }
//! ```

mod bootstrap_token;
mod builder;
mod component;
mod error;
mod kubeconfig;
mod layout;
mod pki;
mod ports;
mod probe;
mod process;

use parking_lot::{Mutex, MutexGuard};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

pub use bootstrap_token::BOOTSTRAPPERS;
pub use builder::{DEFAULT_KUBELET_PREFERRED_ADDRESS_TYPES, TestEnvBuilder, default_bin_dir};
pub use component::Component;
pub use error::{Error, Result};
pub use pki::{CertAndKey, Pki, PkiError};

use layout::Ports;
use probe::Probe;
use process::ComponentProcess;

/// The Kubernetes version `control-plane/install` builds and [`TestEnv`] expects.
pub const KUBERNETES_VERSION: &str = "v1.36.5";

/// The environment variable naming the directory that holds the control-plane binaries.
pub const BIN_DIR_ENV: &str = "HOLLOW_K8S_BIN";

/// The command that builds the binaries, named in errors.
pub const INSTALL_COMMAND: &str = "control-plane/install";

const POLL_INTERVAL: Duration = Duration::from_millis(250);

fn io(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        context: context.to_string(),
        source,
    }
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let context = || format!("cannot write {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Io {
            context: context(),
            source,
        })?;
    file.write_all(contents).map_err(|source| Error::Io {
        context: context(),
        source,
    })
}

async fn client_from(kubeconfig: Kubeconfig) -> Result<kube::Client> {
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    kube::Client::try_from(config).map_err(Error::Client)
}

/// A running local control plane. Built with [`TestEnv::builder`]; stopped by
/// [`TestEnv::stop`] or by dropping it.
pub struct TestEnv {
    processes: Mutex<Vec<ComponentProcess>>,
    client: kube::Client,
    kubeconfig: Kubeconfig,
    kubeconfig_path: PathBuf,
    server_url: String,
    pki: Pki,
    ports: Ports,
    bin_dir: PathBuf,
    dir: PathBuf,
    start_timeout: Duration,
    audit_log_path: Option<PathBuf>,
    // Last, so it is removed after the processes are gone.
    _temp_dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEnv")
            .field("server_url", &self.server_url)
            .field("dir", &self.dir)
            .field("bin_dir", &self.bin_dir)
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// A builder with the defaults: every component, binaries from [`default_bin_dir`].
    pub fn builder() -> TestEnvBuilder {
        TestEnvBuilder::default()
    }

    /// A client with cluster-admin rights (`system:masters`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Kubeconfig {
        &self.kubeconfig
    }

    /// Where the admin kubeconfig is written, for kubectl and other processes.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The environment's certificates and keys.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The directory the binaries come from.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The directory holding PKI, logs, etcd data and kubeconfigs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's audit log, if [`TestEnvBuilder::audit_log`] turned it on: one
    /// JSON audit event (`audit.k8s.io/v1`) a line, one per request received.
    pub fn audit_log_path(&self) -> Option<&Path> {
        self.audit_log_path.as_deref()
    }

    /// The path of an upstream binary in [`TestEnv::bin_dir`], e.g. `kubectl`.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The loopback ports this environment holds.
    pub fn ports(&self) -> Vec<u16> {
        self.ports.all().to_vec()
    }

    /// A kubeconfig for `user` in `groups`, with a fresh client certificate signed by
    /// the environment's CA; e.g. `("system:node:a", &["system:nodes"])` for a kubelet.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> Result<Kubeconfig> {
        kubeconfig::to_kubeconfig(self.kubeconfig_document_for(user, groups)?)
    }

    /// Writes a kubeconfig for `user` in `groups` to `path`, for another process.
    pub fn write_kubeconfig_for(&self, user: &str, groups: &[&str], path: &Path) -> Result<()> {
        kubeconfig::write(path, &self.kubeconfig_document_for(user, groups)?)
    }

    /// A client authenticated as `user` in `groups`.
    pub async fn client_for(&self, user: &str, groups: &[&str]) -> Result<kube::Client> {
        client_from(self.kubeconfig_for(user, groups)?).await
    }

    fn kubeconfig_document_for(&self, user: &str, groups: &[&str]) -> Result<serde_json::Value> {
        let identity = self.pki.client_cert(user, groups)?;
        Ok(kubeconfig::kubeconfig_json(
            &self.server_url,
            &self.pki.ca_pem(),
            user,
            &identity,
        ))
    }

    /// The process id of a component while it runs.
    pub fn pid(&self, component: Component) -> Option<u32> {
        self.with_process(component, |process| process.pid())
            .ok()
            .flatten()
    }

    /// The path of a component's log file.
    pub fn log_path(&self, component: Component) -> Result<PathBuf> {
        self.with_process(component, |process| process.log_path().clone())
    }

    /// Stops a component gracefully (SIGTERM, then SIGKILL after 10 s). Its data and
    /// port are kept for [`TestEnv::start_component`].
    pub fn stop_component(&self, component: Component) -> Result<()> {
        self.with_process(component, |process| process.stop(Duration::from_secs(10)))
    }

    /// Kills a component at once (SIGKILL), as a crash would.
    pub fn kill_component(&self, component: Component) -> Result<()> {
        self.with_process(component, ComponentProcess::kill)
    }

    /// Starts a component again (if it is not running) and waits until it is ready.
    pub async fn start_component(&self, component: Component) -> Result<()> {
        self.with_process(component, ComponentProcess::spawn)??;
        self.wait_ready(component).await
    }

    /// Stops a component gracefully and starts it again, waiting until it is ready.
    pub async fn restart_component(&self, component: Component) -> Result<()> {
        self.stop_component(component)?;
        self.start_component(component).await
    }

    /// Stops every component gracefully, the API server's clients first.
    pub fn stop(self) {
        let mut processes = self.lock();
        for process in processes.iter_mut().rev() {
            process.stop(Duration::from_secs(10));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<ComponentProcess>> {
        self.processes.lock()
    }

    fn with_process<T>(
        &self,
        component: Component,
        f: impl FnOnce(&mut ComponentProcess) -> T,
    ) -> Result<T> {
        let mut processes = self.lock();
        let process = processes
            .iter_mut()
            .find(|process| process.component == component)
            .ok_or(Error::NotEnabled(component))?;
        Ok(f(process))
    }

    async fn wait_ready(&self, component: Component) -> Result<()> {
        let probe = match component {
            Component::Etcd => Probe::new(
                &format!("http://127.0.0.1:{}", self.ports.etcd_client),
                "/health",
                "\"health\":\"true\"",
            )?,
            Component::ApiServer => Probe {
                client: self.client.clone(),
                path: "/readyz",
                expect: "ok",
            },
            Component::ControllerManager => Probe::new(
                &format!("https://127.0.0.1:{}", self.ports.controller_manager),
                "/healthz",
                "ok",
            )?,
            Component::Scheduler => Probe::new(
                &format!("https://127.0.0.1:{}", self.ports.scheduler),
                "/healthz",
                "ok",
            )?,
            // Its readyz waits for a first scrape of nodes; being alive is enough here.
            Component::MetricsServer => Probe::new(
                &format!("https://127.0.0.1:{}", self.ports.metrics_server),
                "/livez",
                "ok",
            )?,
        };
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if let Some(error) = self.with_process(component, ComponentProcess::exit_error)? {
                return Err(error);
            }
            let last_probe = match probe.check().await {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            if Instant::now() >= deadline {
                return Err(
                    self.with_process(component, |process| Error::ComponentNotReady {
                        component,
                        timeout: self.start_timeout,
                        last_probe,
                        log_path: process.log_path().clone(),
                        log_tail: process.log_tail(),
                    })?,
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Serves metrics-server as `v1beta1.metrics.k8s.io`: an ExternalName Service for
    /// `localhost` (Endpoints may not point at loopback) and an APIService on it; waits
    /// until the aggregator says it is available.
    async fn register_metrics_api(&self) -> Result<()> {
        use k8s_openapi::api::core::v1::Service;
        use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
        use kube::api::{Patch, PatchParams};
        let port = i32::from(self.ports.metrics_server);
        let service: Service = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": "metrics-server", "namespace": "kube-system" },
            "spec": {
                "type": "ExternalName",
                "externalName": "localhost",
                "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
            },
        }))
        .map_err(|e| Error::Io {
            context: "metrics-server Service".into(),
            source: std::io::Error::other(e),
        })?;
        let api_service: APIService = serde_json::from_value(serde_json::json!({
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": { "name": "v1beta1.metrics.k8s.io" },
            "spec": {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "service": { "name": "metrics-server", "namespace": "kube-system", "port": port },
                "insecureSkipTLSVerify": true,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        }))
        .map_err(|e| Error::Io {
            context: "metrics-server APIService".into(),
            source: std::io::Error::other(e),
        })?;
        let apply = PatchParams::apply("hollow-testenv").force();
        let services: kube::Api<Service> = kube::Api::namespaced(self.client(), "kube-system");
        let api_services: kube::Api<APIService> = kube::Api::all(self.client());
        let deadline = Instant::now() + self.start_timeout;
        let mut last = String::from("not registered yet");
        while Instant::now() < deadline {
            let registered = async {
                services
                    .patch("metrics-server", &apply, &Patch::Apply(&service))
                    .await?;
                api_services
                    .patch(
                        "v1beta1.metrics.k8s.io",
                        &apply,
                        &Patch::Apply(&api_service),
                    )
                    .await
            }
            .await;
            match registered {
                Ok(current) => {
                    let available = current
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .into_iter()
                        .find(|c| c.type_ == "Available");
                    match available {
                        Some(c) if c.status == "True" => return Ok(()),
                        Some(c) => last = c.message.unwrap_or(c.status),
                        None => last = "no Available condition yet".into(),
                    }
                }
                Err(error) => last = error.to_string(),
            }
            if let Some(error) =
                self.with_process(Component::MetricsServer, ComponentProcess::exit_error)?
            {
                return Err(error);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(self.with_process(Component::MetricsServer, |process| {
            Error::ComponentNotReady {
                component: Component::MetricsServer,
                timeout: self.start_timeout,
                last_probe: format!("APIService v1beta1.metrics.k8s.io: {last}"),
                log_path: process.log_path().clone(),
                log_tail: process.log_tail(),
            }
        })?)
    }

    async fn wait_for_default_service_account(&self) -> Result<()> {
        use k8s_openapi::api::core::v1::ServiceAccount;
        let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(self.client(), "default");
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if let Ok(Some(_)) = accounts.get_opt("default").await {
                return Ok(());
            }
            if let Some(error) =
                self.with_process(Component::ControllerManager, ComponentProcess::exit_error)?
            {
                return Err(error);
            }
            if Instant::now() >= deadline {
                return Err(self.with_process(Component::ControllerManager, |process| {
                    Error::ComponentNotReady {
                        component: Component::ControllerManager,
                        timeout: self.start_timeout,
                        last_probe: "no service account default/default yet".into(),
                        log_path: process.log_path().clone(),
                        log_tail: process.log_tail(),
                    }
                })?);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for process in self.lock().iter_mut().rev() {
            process.kill();
        }
        ports::release(&self.ports.all());
    }
}
