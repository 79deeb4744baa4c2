//! Errors of the test environment.

use std::path::PathBuf;
use std::time::Duration;

use super::pki::PkiError;
use super::{BIN_DIR_ENV, Component, INSTALL_COMMAND};

/// Errors from starting or driving a test environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binaries are missing from the directory searched.
    #[error(
        "control-plane binaries missing from {}: {}; build them with `{INSTALL_COMMAND}` \
         (from the hollow repository) or set {BIN_DIR_ENV} to a directory that holds them",
        dir.display(), missing.join(", ")
    )]
    BinariesNotFound {
        /// The directory searched.
        dir: PathBuf,
        /// The binaries not found there.
        missing: Vec<String>,
    },
    /// No control plane of the Kubernetes version asked for
    /// ([`TestEnvBuilder::kubernetes_version`](super::TestEnvBuilder::kubernetes_version))
    /// is installed.
    #[error(
        "no control plane of Kubernetes {version} in {}; build it with \
         `control-plane/install --kubernetes {version}` (from the hollow repository)",
        searched.display()
    )]
    VersionNotInstalled {
        /// The version asked for.
        version: String,
        /// The directory searched for `kubernetes-v<version>.*`.
        searched: PathBuf,
    },
    /// A component exited while it should run.
    #[error("{component} exited ({status}); the end of its log ({}):\n{log_tail}", log_path.display())]
    ComponentExited {
        /// The component.
        component: Component,
        /// How it exited.
        status: String,
        /// Its full log.
        log_path: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A component did not become ready in time.
    #[error(
        "{component} was not ready within {timeout:?} (last probe: {last_probe}); \
         the end of its log ({}):\n{log_tail}", log_path.display()
    )]
    ComponentNotReady {
        /// The component.
        component: Component,
        /// How long it was given.
        timeout: Duration,
        /// What the last readiness probe said.
        last_probe: String,
        /// Its full log.
        log_path: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The component is not part of this environment (for example the scheduler when
    /// it was turned off).
    #[error("{0} is not part of this test environment")]
    NotEnabled(Component),
    /// Generating certificates failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A file or process operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Kubernetes client could not be built.
    #[error("cannot build a client for the test environment")]
    Client(#[source] kube::Error),
    /// A request to the environment's API server failed.
    #[error("{context}")]
    Api {
        /// What was being done.
        context: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A kubeconfig could not be turned into a client configuration.
    #[error("cannot use the test environment's kubeconfig")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
}

/// A result with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
