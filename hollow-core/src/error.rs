//! The error type shared by the provider traits ([`RuntimeService`](crate::runtime::RuntimeService),
//! [`Cadvisor`](crate::cadvisor::Cadvisor), [`NodeStatusProvider`](crate::node_status::NodeStatusProvider),
//! [`Proxier`](crate::proxier::Proxier)), so callers can branch on what went wrong.

/// What a provider says went wrong.
///
/// ```
/// use hollow_core::Error;
///
/// let error = Error::not_found("container", "c1");
/// assert!(error.is_not_found());
/// assert_eq!(error.to_string(), "container c1 not found");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// What kind of object (`"container"`, `"sandbox"`, ...).
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The request is malformed or not allowed in the object's state.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The provider does not implement this operation.
    #[error("{0} is not supported by this provider")]
    Unsupported(&'static str),
    /// A fault scripted by a test.
    #[error("injected fault: {0}")]
    Injected(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API error")]
    Api(#[from] kube::Error),
    /// Anything else, with its cause.
    #[error("{context}")]
    Other {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A [`Error::NotFound`].
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether this is [`Error::Unsupported`].
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported(_))
    }
}

/// A result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
