//! Kubeconfig documents for a test environment, with certificates embedded.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kube::config::Kubeconfig;
use serde_json::json;

use super::Error;
use super::pki::CertAndKey;

/// A kubeconfig for one user of the cluster at `server`, as JSON (which is YAML too, so
/// kubectl and every client read it).
pub(crate) fn kubeconfig_json(
    server: &str,
    ca_pem: &str,
    user: &str,
    identity: &CertAndKey,
) -> serde_json::Value {
    document(
        server,
        ca_pem,
        user,
        json!({
            "client-certificate-data": STANDARD.encode(&identity.cert_pem),
            "client-key-data": STANDARD.encode(&identity.key_pem),
        }),
    )
}

/// A kubeconfig for the cluster at `server` that authenticates with a bearer token.
pub(crate) fn token_kubeconfig_json(server: &str, ca_pem: &str, token: &str) -> serde_json::Value {
    document(server, ca_pem, "bootstrap", json!({ "token": token }))
}

fn document(
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "hollow",
            "cluster": {
                "server": server,
                "certificate-authority-data": STANDARD.encode(ca_pem),
            },
        }],
        "users": [{ "name": user, "user": credentials }],
        "contexts": [{
            "name": "hollow",
            "context": { "cluster": "hollow", "user": user },
        }],
        "current-context": "hollow",
    })
}

/// Parses the JSON document into kube's kubeconfig type.
pub(crate) fn to_kubeconfig(document: serde_json::Value) -> Result<Kubeconfig, Error> {
    serde_json::from_value(document).map_err(|source| Error::Io {
        context: "cannot build a kubeconfig".into(),
        source: source.into(),
    })
}

/// Writes the document to `path`, readable by its owner only (it holds a private key).
pub(crate) fn write(path: &Path, document: &serde_json::Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(document).map_err(|source| Error::Io {
        context: "cannot serialize a kubeconfig".into(),
        source: source.into(),
    })?;
    super::write_private(path, text.as_bytes())
}
