//! The service account tokens a pod's projected volumes mount: a TokenRequest bound to
//! the pod when the volume is set up (`SetUpAt` in pkg/volume/projected/projected.go),
//! renewed as the kubelet's token manager renews it (pkg/kubelet/token/token_manager.go):
//! once it is older than 80 % of its lifetime or than 24 hours, less up to 10 s of
//! jitter.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use rand::Rng;

/// The token manager's longest token age, and its jitter.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_JITTER: Duration = Duration::from_secs(10);
/// A projected token's lifetime when its source names none (the API's default).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// One projected service account token of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenSource {
    /// The volume that mounts it.
    pub volume: Box<str>,
    service_account: Box<str>,
    audience: Option<Box<str>>,
    expiration_seconds: i64,
}

impl TokenSource {
    pub(crate) fn new(
        volume: &str,
        service_account: &str,
        audience: Option<&str>,
        expiration_seconds: Option<i64>,
    ) -> Self {
        Self {
            volume: volume.into(),
            service_account: service_account.into(),
            audience: audience.filter(|a| !a.is_empty()).map(Into::into),
            expiration_seconds: expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
        }
    }

    /// Requests the token for pod `pod_name` (`pod_uid`) in `namespace`; returns how
    /// long until the kubelet would renew it.
    pub(crate) async fn request(
        &self,
        client: &kube::Client,
        namespace: &str,
        pod_name: &str,
        pod_uid: &str,
    ) -> Result<Duration, kube::Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let audiences = self.audience.as_ref().map(|a| vec![a.to_string()]);
        // Fields newer API versions add stay unset (the library builds against any).
        #[allow(clippy::needless_update)]
        let spec = TokenRequestSpec {
            // Optional from the 1.36 API on.
            audiences: optional_from_1_36(audiences),
            expiration_seconds: Some(self.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod_name.into()),
                uid: Some(pod_uid.into()),
            }),
            ..Default::default()
        };
        let request = TokenRequest {
            spec: optional_from_1_36(Some(spec)),
            ..Default::default()
        };
        let answer = accounts
            .create_token_request(&self.service_account, &PostParams::default(), &request)
            .await?;
        let (lifetime, expires) = granted(answer);
        let lifetime = lifetime.unwrap_or(self.expiration_seconds);
        let left = expires
            .and_then(|at| {
                std::time::SystemTime::from(at)
                    .duration_since(std::time::SystemTime::now())
                    .ok()
            })
            .unwrap_or(Duration::from_secs(u64::try_from(lifetime).unwrap_or(0)));
        Ok(renew_after(
            lifetime,
            left,
            rand::rng().random_range(Duration::ZERO..MAX_JITTER),
        ))
    }
}

// The 1.36 API made the token request's fields optional; the library builds against
// any API version, so the request and its answer go through these.
k8s_openapi::k8s_if_ge_1_36! {
    /// A field optional from the 1.36 API on.
    fn optional_from_1_36<T>(value: Option<T>) -> Option<T> {
        value
    }

    /// The granted lifetime (seconds) and expiry of a token request's answer.
    fn granted(answer: TokenRequest) -> (Option<i64>, Option<Timestamp>) {
        let lifetime = answer.spec.and_then(|spec| spec.expiration_seconds);
        let expires = answer.status.and_then(|s| s.expiration_timestamp);
        (lifetime, expires.map(|t| t.0))
    }
}
k8s_openapi::k8s_if_le_1_35! {
    /// A field required before the 1.36 API.
    fn optional_from_1_36<T: Default>(value: Option<T>) -> T {
        value.unwrap_or_default()
    }

    /// The granted lifetime (seconds) and expiry of a token request's answer.
    fn granted(answer: TokenRequest) -> (Option<i64>, Option<Timestamp>) {
        let expires = answer.status.map(|s| s.expiration_timestamp.0);
        (answer.spec.expiration_seconds, expires)
    }
}

/// When the token manager renews a token of `lifetime` seconds that expires in
/// `left`: when 20 % of its lifetime is left, or when it is 24 hours old, less
/// `jitter` (`requiresRefresh`).
fn renew_after(lifetime: i64, left: Duration, jitter: Duration) -> Duration {
    let seconds = u64::try_from(lifetime).unwrap_or(0);
    let lifetime = Duration::from_secs(seconds);
    let age = lifetime.saturating_sub(left);
    // In whole seconds, as the token manager computes it.
    let by_share = left.saturating_sub(Duration::from_secs(seconds * 20 / 100));
    let by_age = MAX_TTL.saturating_sub(age);
    by_share.min(by_age).saturating_sub(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_with_a_fifth_of_its_lifetime_left() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            renew_after(3600, hour, Duration::ZERO),
            Duration::from_secs(2880)
        );
        assert_eq!(
            renew_after(3607, Duration::from_secs(3607), Duration::from_secs(5)),
            Duration::from_secs(3607 - 721 - 5)
        );
    }

    #[test]
    fn a_long_lived_token_is_renewed_after_a_day() {
        let week = 7 * 24 * 3600;
        assert_eq!(
            renew_after(
                week,
                Duration::from_secs(u64::try_from(week).unwrap()),
                Duration::ZERO
            ),
            MAX_TTL
        );
    }

    #[test]
    fn an_audience_is_kept_only_when_named() {
        assert_eq!(TokenSource::new("v", "sa", Some(""), None).audience, None);
        assert_eq!(
            TokenSource::new("v", "sa", Some("vault"), None)
                .audience
                .as_deref(),
            Some("vault")
        );
    }
}
