//! Readiness probes of the components.

use std::time::Duration;

use super::{Error, Result};

/// A readiness check: GET `path` and expect `expect` in the body.
pub(crate) struct Probe {
    pub(crate) client: kube::Client,
    pub(crate) path: &'static str,
    pub(crate) expect: &'static str,
}

impl Probe {
    /// A probe of a loopback endpoint whose certificate is not checked (the scheduler
    /// and controller manager serve self-signed ones).
    pub(crate) fn new(base: &str, path: &'static str, expect: &'static str) -> Result<Self> {
        let uri: http::Uri = base.parse().map_err(|err| Error::Io {
            context: format!("invalid probe address {base}"),
            source: std::io::Error::other(err),
        })?;
        let mut config = kube::Config::new(uri);
        config.accept_invalid_certs = true;
        // The probe polls by itself; a retried 503 would only delay the next look.
        config.default_retry = false;
        config.connect_timeout = Some(Duration::from_secs(2));
        config.read_timeout = Some(Duration::from_secs(5));
        let client = kube::Client::try_from(config).map_err(Error::Client)?;
        Ok(Self {
            client,
            path,
            expect,
        })
    }

    pub(crate) async fn check(&self) -> Result<(), String> {
        let request = http::Request::get(self.path)
            .body(Vec::new())
            .map_err(|err| err.to_string())?;
        let body = tokio::time::timeout(Duration::from_secs(10), self.client.request_text(request))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|err| err.to_string())?;
        if body.contains(self.expect) {
            Ok(())
        } else {
            Err(format!("unexpected answer: {}", body.trim()))
        }
    }
}
