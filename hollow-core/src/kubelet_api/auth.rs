//! Who is asking, and may they: client certificates or bearer tokens (TokenReview),
//! then a SubjectAccessReview on the node's subresource, as the kubelet's webhook
//! authenticator and authoriser do. Results are cached for every node of the process
//! (tokens 2 min; decisions 5 min allowed, 30 s denied, the kubelet's defaults).

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use sha2::{Digest, Sha256};

const TOKEN_TTL: Duration = Duration::from_secs(120);
const TOKEN_DENIED_TTL: Duration = Duration::from_secs(10);
const ALLOWED_TTL: Duration = Duration::from_secs(300);
const DENIED_TTL: Duration = Duration::from_secs(30);
/// Entries a cache holds before it is emptied (bounds memory under token churn).
const CACHE_LIMIT: usize = 10_000;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Identity {
    pub fn from_certificate(user: String, mut groups: Vec<String>) -> Identity {
        groups.push("system:authenticated".into());
        Identity {
            user,
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 401: no or bad credentials.
    Unauthorized,
    /// 403: authenticated, not allowed.
    Forbidden(String),
    /// 500: the API server could not be asked.
    Unavailable(String),
}

struct Cache<K, V> {
    entries: HashMap<K, (Instant, V)>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Cache<K, V> {
    fn get(&mut self, key: &K) -> Option<V> {
        match self.entries.get(key) {
            Some((until, value)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: K, value: V, ttl: Duration) {
        if self.entries.len() >= CACHE_LIMIT {
            self.entries.clear();
        }
        self.entries.insert(key, (Instant::now() + ttl, value));
    }
}

/// Who asks to do what to which node: `(caller, verb, subresource, node)`.
type Question = (Identity, String, String, String);
/// Allowed, or why not.
type Decision = Result<(), String>;

/// The authenticator and authoriser every node of a process shares.
pub(crate) struct Auth {
    client: kube::Client,
    tokens: Mutex<Cache<[u8; 32], Option<Identity>>>,
    decisions: Mutex<Cache<Question, Decision>>,
}

impl Auth {
    pub fn new(client: kube::Client) -> Auth {
        Auth {
            client,
            tokens: Mutex::new(Cache {
                entries: HashMap::new(),
            }),
            decisions: Mutex::new(Cache {
                entries: HashMap::new(),
            }),
        }
    }

    /// The caller of a request with this certificate identity or `Authorization`
    /// header; anonymous callers are refused.
    pub async fn authenticate(
        &self,
        certificate: Option<&Identity>,
        authorization: Option<&str>,
    ) -> Result<Identity, Refusal> {
        if let Some(identity) = certificate {
            return Ok(identity.clone());
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Unauthorized)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(cached) = self.tokens.lock().get(&key) {
            return cached.ok_or(Refusal::Unauthorized);
        }
        // Required from the 1.36 API on; the library builds against any API version.
        k8s_openapi::k8s_if_ge_1_36! {
            let token = token.to_string();
        }
        k8s_openapi::k8s_if_le_1_35! {
            let token = Some(token.to_string());
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token,
                ..Default::default()
            },
            ..Default::default()
        };
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Refusal::Unavailable(format!("token review failed: {e}")))?;
        let status = answer.status.unwrap_or_default();
        let identity = status
            .authenticated
            .unwrap_or(false)
            .then(|| status.user.unwrap_or_default())
            .map(|user| Identity {
                user: user.username.unwrap_or_default(),
                uid: user.uid.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
            });
        let ttl = if identity.is_some() {
            TOKEN_TTL
        } else {
            TOKEN_DENIED_TTL
        };
        self.tokens.lock().put(key, identity.clone(), ttl);
        identity.ok_or(Refusal::Unauthorized)
    }

    /// Whether `identity` may `verb` the `subresource` of node `node`; the first of
    /// `subresources` allowed wins (fine-grained first, `proxy` last, as the kubelet
    /// checks).
    pub async fn authorize(
        &self,
        identity: &Identity,
        verb: &str,
        subresources: &[&str],
        node: &str,
    ) -> Result<(), Refusal> {
        let mut last = String::new();
        for subresource in subresources {
            let key = (
                identity.clone(),
                verb.to_string(),
                subresource.to_string(),
                node.to_string(),
            );
            let cached = self.decisions.lock().get(&key);
            let decision = match cached {
                Some(decision) => decision,
                None => {
                    let decision = self.review(identity, verb, subresource, node).await?;
                    let ttl = if decision.is_ok() {
                        ALLOWED_TTL
                    } else {
                        DENIED_TTL
                    };
                    self.decisions.lock().put(key, decision.clone(), ttl);
                    decision
                }
            };
            match decision {
                Ok(()) => return Ok(()),
                Err(reason) => last = reason,
            }
        }
        Err(Refusal::Forbidden(last))
    }

    async fn review(
        &self,
        identity: &Identity,
        verb: &str,
        subresource: &str,
        node: &str,
    ) -> Result<Result<(), String>, Refusal> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(identity.user.clone()),
                uid: (!identity.uid.is_empty()).then(|| identity.uid.clone()),
                groups: Some(identity.groups.clone()),
                extra: (!identity.extra.is_empty()).then(|| identity.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    resource: Some("nodes".into()),
                    subresource: Some(subresource.into()),
                    name: Some(node.into()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Refusal::Unavailable(format!("subject access review failed: {e}")))?;
        let status = answer.status.unwrap_or_default();
        Ok(if status.allowed {
            Ok(())
        } else {
            Err(format!(
                "user={}, verb={verb}, resource=nodes, subresource={subresource}{}",
                identity.user,
                status
                    .reason
                    .filter(|r| !r.is_empty())
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ))
        })
    }
}

/// The kubelet's verb for an HTTP method.
pub(crate) fn verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    }
}

/// The node subresources that authorise a path, most specific first.
pub(crate) fn subresources(path: &str) -> &'static [&'static str] {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if under("/stats") {
        &["stats"]
    } else if under("/metrics") {
        &["metrics"]
    } else if under("/logs") {
        &["log"]
    } else if under("/pods") {
        &["pods", "proxy"]
    } else if under("/healthz") {
        &["healthz", "proxy"]
    } else {
        &["proxy"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_kubelets_subresources() {
        assert_eq!(subresources("/stats/summary"), ["stats"]);
        assert_eq!(subresources("/metrics/resource"), ["metrics"]);
        assert_eq!(subresources("/pods"), ["pods", "proxy"]);
        assert_eq!(subresources("/containerLogs/ns/p/c"), ["proxy"]);
        assert_eq!(subresources("/statsx"), ["proxy"]);
        assert_eq!(verb(&http::Method::POST), "create");
        assert_eq!(verb(&http::Method::HEAD), "get");
    }
}
