//! The kubelet API's routes: the authorisation every request passes, and the handlers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use super::auth::{self, Refusal};
use super::connection::Connection;
use super::{Inner, Served, logs, stats, streaming};

pub(super) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/stats/summary", get(summary))
        .route("/metrics/resource", get(resource_metrics))
        .route("/metrics", get(metrics))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route(
            "/exec/{*rest}",
            any(|path, query, request| exec_or_attach(streaming::Kind::Exec, path, query, request)),
        )
        .route(
            "/attach/{*rest}",
            any(|path, query, request| {
                exec_or_attach(streaming::Kind::Attach, path, query, request)
            }),
        )
        .route("/portForward/{*rest}", any(port_forward))
        .route("/run/{*rest}", any(unsupported))
        .layer(middleware::from_fn_with_state(inner, authorize))
}

/// Authenticates and authorises every request before it reaches a handler.
async fn authorize(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    let Some(connection) = request.extensions().get::<Connection>().cloned() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let node = connection.served.node.name().to_string();
    let verb = auth::verb(request.method());
    let subresources = auth::subresources(request.uri().path());
    let outcome = async {
        let identity = inner
            .auth
            .authenticate(connection.certificate.as_ref(), authorization.as_deref())
            .await?;
        inner
            .auth
            .authorize(&identity, verb, subresources, &node)
            .await
    }
    .await;
    match outcome {
        Ok(()) => next.run(request).await,
        Err(Refusal::Unauthorized) => (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
        Err(Refusal::Forbidden(reason)) => {
            (StatusCode::FORBIDDEN, format!("Forbidden ({reason})")).into_response()
        }
        Err(Refusal::Unavailable(reason)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, reason).into_response()
        }
    }
}

fn served(request: &axum::http::Extensions) -> Option<Arc<Served>> {
    request.get::<Connection>().map(|c| c.served.clone())
}

async fn pods(request: Request) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let items: Vec<serde_json::Value> = served
        .node
        .pods()
        .iter()
        .filter_map(|pod| serde_json::to_value(pod.as_ref()).ok())
        .collect();
    let list = serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    });
    axum::Json(list).into_response()
}

async fn summary(request: Request) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match stats::sample(&served.node, &served.cpu).await {
        Ok(sample) => axum::Json(stats::summary(&served.node, &sample)).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn resource_metrics(request: Request) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match stats::sample(&served.node, &served.cpu).await {
        Ok(sample) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            stats::resource_metrics(&sample),
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn metrics(request: Request) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let node = &served.node;
    let pods = node.pods().len();
    let containers = node
        .runtime()
        .list_containers(None)
        .await
        .map(|all| {
            all.iter()
                .filter(|c| matches!(c.state, crate::runtime::ContainerState::Running { .. }))
                .count()
        })
        .unwrap_or(0);
    let text = format!(
        "# HELP kubelet_node_name [ALPHA] The node's name. The count is always 1.\n\
         # TYPE kubelet_node_name gauge\n\
         kubelet_node_name{{node=\"{}\"}} 1\n\
         # HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox\n\
         # TYPE kubelet_running_pods gauge\n\
         kubelet_running_pods {pods}\n\
         # HELP kubelet_running_containers [ALPHA] Number of containers currently running\n\
         # TYPE kubelet_running_containers gauge\n\
         kubelet_running_containers{{container_state=\"running\"}} {containers}\n",
        node.name()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn container_logs(
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<logs::LogQuery>,
    request: Request,
) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    logs::container_logs(served.node.clone(), namespace, pod, container, query).await
}

/// `/exec/...` and `/attach/...`.
async fn exec_or_attach(
    kind: streaming::Kind,
    Path(rest): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    streaming::exec_or_attach(served.node.clone(), kind, rest, query, request).await
}

async fn port_forward(Path(rest): Path<String>, request: Request) -> Response {
    let Some(served) = served(request.extensions()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    streaming::port_forward(served.node.clone(), rest, request).await
}

async fn unsupported(request: Request) -> Response {
    let what = request
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    (
        StatusCode::NOT_IMPLEMENTED,
        format!("{what} is not supported by the hollow kubelet: use exec"),
    )
        .into_response()
}
