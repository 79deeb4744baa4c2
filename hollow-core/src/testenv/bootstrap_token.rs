//! Bootstrap tokens for kubelets' TLS bootstrap, set up as `kubeadm` sets them up.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::PostParams;
use kube::config::Kubeconfig;
use rand::Rng;
use serde_json::json;

use super::{Error, Result, TestEnv};

/// The group bootstrap tokens authenticate in, unless a token adds others.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";

/// The bindings `kubeadm` makes: bootstrappers may request node client certificates
/// and have them approved, and nodes may renew their own.
const BINDINGS: [(&str, &str, &str); 3] = [
    (
        "hollow:kubelet-bootstrap",
        "system:node-bootstrapper",
        BOOTSTRAPPERS,
    ),
    (
        "hollow:node-autoapprove-bootstrap",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        BOOTSTRAPPERS,
    ),
    (
        "hollow:node-autoapprove-certificate-rotation",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        "system:nodes",
    ),
];

fn api_error(context: &str) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |source| Error::Api {
        context: context.to_string(),
        source,
    }
}

/// `n` characters of `[a-z0-9]`, the alphabet of bootstrap token ids and secrets.
fn token_part(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

impl TestEnv {
    /// A new bootstrap token (`<id>.<secret>`, a `bootstrap.kubernetes.io/token`
    /// Secret in `kube-system`), whose holders (`system:bootstrap:<id>` in
    /// [`BOOTSTRAPPERS`]) may request kubelet client certificates, which the controller
    /// manager approves and signs: a kubeconfig that authenticates with it, for
    /// kubelets' TLS bootstrap (`hollow-kubelet --bootstrap-kubeconfig`, or
    /// `hollow_core::bootstrap::TlsBootstrap`).
    ///
    /// ```no_run
    /// # async fn run(env: hollow_core::testenv::TestEnv) -> Result<(), Box<dyn std::error::Error>> {
    /// let kubeconfig = env.bootstrap_kubeconfig().await?;
    /// let user = &kubeconfig.auth_infos[0];
    /// assert!(user.auth_info.as_ref().unwrap().token.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn bootstrap_kubeconfig(&self) -> Result<Kubeconfig> {
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client());
        for (name, role, group) in BINDINGS {
            let binding: ClusterRoleBinding = serde_json::from_value(json!({
                "metadata": { "name": name },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [{
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": group,
                }],
            }))
            .expect("a ClusterRoleBinding");
            match bindings.create(&PostParams::default(), &binding).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(api_error("cannot bind the bootstrap roles")(error)),
            }
        }
        let (id, secret) = (token_part(6), token_part(16));
        let token: Secret = serde_json::from_value(json!({
            "metadata": { "name": format!("bootstrap-token-{id}"), "namespace": "kube-system" },
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "token-id": id,
                "token-secret": secret,
                "usage-bootstrap-authentication": "true",
                "description": "hollow testenv: kubelet TLS bootstrap",
            },
        }))
        .expect("a Secret");
        Api::<Secret>::namespaced(self.client(), "kube-system")
            .create(&PostParams::default(), &token)
            .await
            .map_err(api_error("cannot create a bootstrap token"))?;
        super::kubeconfig::to_kubeconfig(super::kubeconfig::token_kubeconfig_json(
            self.server_url(),
            &self.pki().ca_pem(),
            &format!("{id}.{secret}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parts_are_lowercase_alphanumerics() {
        let id = token_part(6);
        assert_eq!(id.len(), 6);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(token_part(16), token_part(16));
    }
}
