//! A throw-away public key infrastructure for a local control plane.
//!
//! Everything is generated in memory with [`rcgen`]: one CA that signs the API server's
//! serving certificate and every client certificate, and the key pair that signs service
//! account tokens. Keys are ECDSA P-256, which every Kubernetes component accepts.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// Errors from generating certificates and keys.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen could not generate a key or certificate.
    #[error("cannot generate {what}")]
    Generate {
        /// What was being generated.
        what: String,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
}

fn generating(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Generate { what, source }
}

/// A certificate with its private key, both PEM encoded.
#[derive(Clone)]
pub struct CertAndKey {
    /// The certificate (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// The PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The CA and service-account keys of one test environment.
///
/// ```
/// use hollow_core::testenv::Pki;
///
/// let pki = Pki::generate()?;
/// let node = pki.client_cert("system:node:a", &["system:nodes"])?;
/// assert!(node.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// # Ok::<(), hollow_core::testenv::PkiError>(())
/// ```
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    service_account_key: KeyPair,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

impl Pki {
    /// Generates a fresh CA and service-account key pair.
    pub fn generate() -> Result<Self, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generating("CA"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = common_name("hollow-testenv-ca");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(generating("CA key"))?;
        let ca = CertifiedIssuer::self_signed(params, ca_key).map_err(generating("CA"))?;
        let service_account_key = KeyPair::generate().map_err(generating("service-account key"))?;
        Ok(Self {
            ca,
            service_account_key,
        })
    }

    /// The CA certificate, PEM encoded.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The CA's private key, PEM encoded (the controller manager signs CSRs with it).
    pub fn ca_key_pem(&self) -> String {
        self.ca.key().serialize_pem()
    }

    /// The private key that signs service-account tokens, PEM encoded.
    pub fn service_account_key_pem(&self) -> String {
        self.service_account_key.serialize_pem()
    }

    /// The public key that verifies service-account tokens, PEM encoded.
    pub fn service_account_public_pem(&self) -> String {
        self.service_account_key.public_key_pem()
    }

    /// Mints a serving certificate for the given host names and IP addresses.
    pub fn serving_cert(
        &self,
        common: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
    ) -> Result<CertAndKey, PkiError> {
        let what = format!("serving certificate for {common}");
        let names: Vec<String> = dns_names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).map_err(generating(&what))?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name = common_name(common);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, &what)
    }

    /// Mints a client certificate for `user` in `groups`, as the API server reads them:
    /// the common name is the user, each organization a group.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> Result<CertAndKey, PkiError> {
        let what = format!("client certificate for {user}");
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generating(&what))?;
        let mut name = common_name(user);
        for group in groups {
            name.push(DnType::OrganizationName, *group);
        }
        params.distinguished_name = name;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, &what)
    }

    fn sign(&self, params: CertificateParams, what: &str) -> Result<CertAndKey, PkiError> {
        let key = KeyPair::generate().map_err(generating(format!("key of the {what}")))?;
        let cert = params.signed_by(&key, &self.ca).map_err(generating(what))?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_cert_differs_per_user() {
        let pki = Pki::generate().unwrap();
        let a = pki.client_cert("a", &["g"]).unwrap();
        let b = pki.client_cert("b", &["g"]).unwrap();
        assert_ne!(a.cert_pem, b.cert_pem);
        assert_ne!(a.key_pem, b.key_pem);
        assert!(a.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{a:?}").contains(&a.key_pem));
    }

    #[test]
    fn service_account_keys_pair_up() {
        let pki = Pki::generate().unwrap();
        assert!(pki.service_account_public_pem().contains("PUBLIC KEY"));
        assert!(pki.service_account_key_pem().contains("PRIVATE KEY"));
    }
}
