//! The kubelet's TLS bootstrap: each node gets a client certificate for its own identity
//! (`system:node:<name>`, group `system:nodes`) with bootstrap credentials, and then
//! talks as that node, so the API server's Node authorizer and NodeRestriction
//! admission check its requests as they check a kubelet's.
//!
//! Followed from the kubelet (`pkg/kubelet/certificate/bootstrap/bootstrap.go`,
//! `requestNodeCertificate`, and client-go's `util/certificate/csr/csr.go`): a new ECDSA
//! P-256 key; a CertificateSigningRequest for that subject, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, usages `digital signature` and
//! `client auth`, named `node-csr-<digest of key, subject and usages>`, created with the
//! bootstrap credentials; then a wait, on a watch of that request, until it is approved
//! and signed (the controller manager's `csrapproving` controller approves it when the
//! requester may create `certificatesigningrequests/nodeclient`; `csrsigning` signs it)
//! or denied. The certificate is held in memory: a restarted process bootstraps again,
//! where a kubelet would reuse the one in its `--cert-dir`. It is not rotated (the
//! controller manager signs for a year by default, `--cluster-signing-duration`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kube::config::AuthInfo;
use sha2::Digest as _;

use crate::connect::{ConnectionPool, pooled_client};

/// The signer of kubelets' client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// The key usages a kubelet asks for with an ECDSA key.
const USAGES: [&str; 2] = ["digital signature", "client auth"];

/// How long a node waits for its certificate by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of the TLS bootstrap.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The key or the certificate request could not be made.
    #[error("cannot make the key or certificate request of node {node}")]
    Key {
        /// The node.
        node: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A client could not be made from the bootstrap or the node's configuration.
    #[error("cannot make a client for the TLS bootstrap")]
    Client(#[source] kube::Error),
    /// The certificate request could not be created or watched.
    #[error("cannot request a client certificate for node {node}")]
    Request {
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The certificate request was denied or failed.
    #[error("the client certificate request {request} of node {node} was {outcome}: {message}")]
    Refused {
        /// The node.
        node: String,
        /// The CertificateSigningRequest's name.
        request: String,
        /// `Denied` or `Failed`.
        outcome: String,
        /// The condition's message.
        message: String,
    },
    /// No certificate was issued in time: is the controller manager running, and may the
    /// bootstrap identity create `certificatesigningrequests/nodeclient`?
    #[error(
        "no client certificate for node {node} within {timeout:?} (request {request}): is the controller manager running, and is the bootstrap group bound to system:certificates.k8s.io:certificatesigningrequests:nodeclient?"
    )]
    TimedOut {
        /// The node.
        node: String,
        /// The CertificateSigningRequest's name.
        request: String,
        /// How long it waited.
        timeout: Duration,
    },
}

/// A node's own credentials: its signed certificate and private key, in PEM.
#[derive(Clone)]
pub struct NodeIdentity {
    /// The certificate the controller manager signed.
    pub certificate_pem: String,
    /// The node's private key (PKCS #8).
    pub key_pem: String,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity").finish_non_exhaustive()
    }
}

type Connect = Arc<dyn Fn(kube::Config) -> Result<kube::Client, kube::Error> + Send + Sync>;

/// Bootstraps node identities with a bootstrap kubeconfig's credentials (a bootstrap
/// token, as `kubeadm` gives kubelets). Give it to
/// [`HollowClusterBuilder::credentials`](crate::node::HollowClusterBuilder::credentials)
/// and each node registers and runs as itself.
///
/// ```no_run
/// # async fn run(bootstrap: kube::Config) -> Result<(), Box<dyn std::error::Error>> {
/// use hollow_core::bootstrap::TlsBootstrap;
///
/// let bootstrap = TlsBootstrap::new(bootstrap)?;
/// let client = bootstrap.node_client("hollow-0").await?;
/// // Talks as system:node:hollow-0.
/// # drop(client); Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsBootstrap {
    config: kube::Config,
    client: kube::Client,
    timeout: Duration,
    connect: Connect,
}

impl std::fmt::Debug for TlsBootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsBootstrap")
            .field("cluster", &self.config.cluster_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TlsBootstrap {
    /// Bootstraps with `config`'s credentials; nodes' clients connect as `config` does
    /// (server, CA, headers), one HTTP/2 connection each to start with, as each kubelet
    /// has its own. Called within a Tokio runtime, as kube's clients are made.
    pub fn new(config: kube::Config) -> Result<Self, BootstrapError> {
        let client = pooled_client(config.clone(), ConnectionPool::default())
            .map_err(BootstrapError::Client)?
            .build();
        Ok(Self {
            config,
            client,
            timeout: DEFAULT_TIMEOUT,
            connect: Arc::new(|config| {
                Ok(pooled_client(config, ConnectionPool::default())?.build())
            }),
        })
    }

    /// How long a node waits for its certificate (default 2 minutes; the kubelet waits
    /// up to an hour).
    ///
    /// ```no_run
    /// # fn run(config: kube::Config) -> Result<(), hollow_core::bootstrap::BootstrapError> {
    /// let bootstrap = hollow_core::bootstrap::TlsBootstrap::new(config)?
    ///     .timeout(std::time::Duration::from_secs(30));
    /// # drop(bootstrap); Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Makes each node's client from its configuration with `connect` (to add layers,
    /// metrics or another connection pool).
    ///
    /// ```no_run
    /// # fn run(config: kube::Config) -> Result<(), hollow_core::bootstrap::BootstrapError> {
    /// use hollow_core::connect::{ConnectionPool, pooled_client};
    ///
    /// let bootstrap = hollow_core::bootstrap::TlsBootstrap::new(config)?.connect_with(|config| {
    ///     Ok(pooled_client(config, ConnectionPool { connections: 2, ..Default::default() })?.build())
    /// });
    /// # drop(bootstrap); Ok(()) }
    /// ```
    pub fn connect_with(
        mut self,
        connect: impl Fn(kube::Config) -> Result<kube::Client, kube::Error> + Send + Sync + 'static,
    ) -> Self {
        self.connect = Arc::new(connect);
        self
    }

    /// Requests, and waits for, a client certificate for `node`.
    pub async fn identity(&self, node: &str) -> Result<NodeIdentity, BootstrapError> {
        let key_error = |source| BootstrapError::Key {
            node: node.to_string(),
            source,
        };
        let key = rcgen::KeyPair::generate().map_err(key_error)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = node_subject(node);
        let request_pem = params
            .serialize_request(&key)
            .and_then(|request| request.pem())
            .map_err(key_error)?;
        let name = digested_name(&rcgen::PublicKeyData::subject_public_key_info(&key), node);
        let requests: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        let request = CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: k8s_openapi::ByteString(request_pem.into_bytes()),
                signer_name: KUBELET_CLIENT_SIGNER.into(),
                usages: Some(USAGES.iter().map(|usage| usage.to_string()).collect()),
                ..Default::default()
            },
            status: None,
        };
        let request_error = |source| BootstrapError::Request {
            node: node.to_string(),
            source,
        };
        requests
            .create(&PostParams::default(), &request)
            .await
            .map_err(request_error)?;
        let issued = kube::runtime::wait::await_condition(requests, &name, issued_or_refused);
        let issued = match tokio::time::timeout(self.timeout, issued).await {
            Ok(Ok(Some(issued))) => issued,
            Ok(Ok(None)) | Err(_) => {
                return Err(BootstrapError::TimedOut {
                    node: node.to_string(),
                    request: name,
                    timeout: self.timeout,
                });
            }
            Ok(Err(error)) => {
                return Err(request_error(kube::Error::Service(Box::new(error))));
            }
        };
        let status = issued.status.unwrap_or_default();
        if let Some(refused) = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|condition| is_refusal(&condition.type_) && condition.status == "True")
        {
            return Err(BootstrapError::Refused {
                node: node.to_string(),
                request: name,
                outcome: refused.type_,
                message: refused.message.unwrap_or_default(),
            });
        }
        let certificate = status.certificate.map(|bytes| bytes.0).unwrap_or_default();
        Ok(NodeIdentity {
            certificate_pem: String::from_utf8_lossy(&certificate).into_owned(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The bootstrap configuration with `identity`'s credentials in place of the
    /// bootstrap ones.
    pub fn node_config(&self, identity: &NodeIdentity) -> kube::Config {
        let mut config = self.config.clone();
        let base64 = base64::engine::general_purpose::STANDARD;
        config.auth_info = AuthInfo {
            client_certificate_data: Some(base64.encode(&identity.certificate_pem)),
            client_key_data: Some(base64.encode(&identity.key_pem).into()),
            ..AuthInfo::default()
        };
        config
    }

    /// Bootstraps `node`'s identity and returns a client that talks as it.
    pub async fn node_client(&self, node: &str) -> Result<kube::Client, BootstrapError> {
        let identity = self.identity(node).await?;
        (self.connect)(self.node_config(&identity)).map_err(BootstrapError::Client)
    }
}

#[async_trait::async_trait]
impl crate::node::NodeCredentials for TlsBootstrap {
    async fn client_for(
        &self,
        node: &str,
    ) -> Result<kube::Client, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.node_client(node).await?)
    }
}

/// `CN=system:node:<node>, O=system:nodes`, the subject the Node authorizer knows.
fn node_subject(node: &str) -> rcgen::DistinguishedName {
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::OrganizationName, "system:nodes");
    subject.push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    subject
}

/// `node-csr-<digest>` of the public key, the subject and the usages, each written
/// base64url-encoded and `|`-delimited, as the kubelet names its requests (so a name
/// says which key and subject it is for; the kubelet digests with SHA-512/256).
fn digested_name(public_key_der: &[u8], node: &str) -> String {
    let encode = |data: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data);
    let mut hash = sha2::Sha512_256::new();
    let mut write = |data: &[u8]| {
        hash.update(encode(data));
        hash.update(b"|");
    };
    write(public_key_der);
    write(format!("system:node:{node}").as_bytes());
    write(b"system:nodes");
    for usage in USAGES {
        write(usage.as_bytes());
    }
    format!("node-csr-{}", encode(&hash.finalize()))
}

fn is_refusal(condition: &str) -> bool {
    matches!(condition, "Denied" | "Failed")
}

/// Whether a request has its certificate, or was denied or failed.
fn issued_or_refused(request: Option<&CertificateSigningRequest>) -> bool {
    let Some(status) = request.and_then(|request| request.status.as_ref()) else {
        return false;
    };
    let refused = status
        .conditions
        .iter()
        .flatten()
        .any(|condition| is_refusal(&condition.type_) && condition.status == "True");
    refused || status.certificate.as_ref().is_some_and(|c| !c.0.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };

    fn with_status(status: CertificateSigningRequestStatus) -> CertificateSigningRequest {
        CertificateSigningRequest {
            status: Some(status),
            ..Default::default()
        }
    }

    fn condition(type_: &str) -> CertificateSigningRequestCondition {
        CertificateSigningRequestCondition {
            type_: type_.into(),
            status: "True".into(),
            ..Default::default()
        }
    }

    #[test]
    fn waits_until_a_certificate_or_a_refusal() {
        assert!(!issued_or_refused(None));
        let approved = with_status(CertificateSigningRequestStatus {
            conditions: Some(vec![condition("Approved")]),
            ..Default::default()
        });
        assert!(
            !issued_or_refused(Some(&approved)),
            "approved, not yet signed"
        );
        let signed = with_status(CertificateSigningRequestStatus {
            conditions: Some(vec![condition("Approved")]),
            certificate: Some(k8s_openapi::ByteString(b"PEM".to_vec())),
        });
        assert!(issued_or_refused(Some(&signed)));
        for refusal in ["Denied", "Failed"] {
            let refused = with_status(CertificateSigningRequestStatus {
                conditions: Some(vec![condition(refusal)]),
                ..Default::default()
            });
            assert!(issued_or_refused(Some(&refused)), "{refusal}");
        }
    }

    #[test]
    fn names_a_request_by_its_key_and_node() {
        let name = digested_name(b"key", "hollow-0");
        assert!(name.starts_with("node-csr-"));
        // SHA-512/256, base64url without padding: 43 characters.
        assert_eq!(name.len(), "node-csr-".len() + 43);
        assert_eq!(name, digested_name(b"key", "hollow-0"));
        assert_ne!(name, digested_name(b"key", "hollow-1"));
        assert_ne!(name, digested_name(b"other key", "hollow-0"));
    }

    #[test]
    fn the_request_names_the_node_in_system_nodes() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = node_subject("hollow-7");
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let subject = &params.distinguished_name;
        assert_eq!(
            subject.get(&rcgen::DnType::CommonName),
            Some(&rcgen::DnValue::Utf8String("system:node:hollow-7".into()))
        );
        assert_eq!(
            subject.get(&rcgen::DnType::OrganizationName),
            Some(&rcgen::DnValue::Utf8String("system:nodes".into()))
        );
    }

    #[tokio::test]
    async fn a_node_config_carries_the_identity_not_the_token() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        config.auth_info.token = Some("abcdef.0123456789abcdef".to_string().into());
        let bootstrap = TlsBootstrap::new(config).unwrap();
        let identity = NodeIdentity {
            certificate_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let node = bootstrap.node_config(&identity);
        assert!(node.auth_info.token.is_none());
        assert_eq!(
            node.auth_info.client_certificate_data.as_deref(),
            Some("Q0VSVA==")
        );
        assert_eq!(node.cluster_url, bootstrap.config.cluster_url);
    }
}
