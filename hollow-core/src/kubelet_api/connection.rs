//! One kubelet API connection: its TLS handshake, then HTTP/1 through the shared router.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use tower::ServiceExt as _;

use super::auth::Identity;
use super::{Inner, Served, tls};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the middleware and handlers know of a connection.
#[derive(Clone)]
pub(super) struct Connection {
    pub(super) served: Arc<Served>,
    pub(super) certificate: Option<Identity>,
}

pub(super) async fn connection(inner: Arc<Inner>, router: Router, stream: tokio::net::TcpStream) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let Some(served) = inner.node_for(local) else {
        tracing::debug!(%local, "kubelet API connection for no node");
        return;
    };
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, inner.tls.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, "kubelet API TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(tls::identity)
        .map(|(user, groups)| Identity::from_certificate(user, groups));
    let connection = Connection {
        served,
        certificate,
    };
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(connection.clone());
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
    // The header read timeout runs while the connection waits for a request, the first
    // or the next: an idle connection is closed when it expires.
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(inner.idle_timeout)
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "kubelet API connection ended");
    }
}
