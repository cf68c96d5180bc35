//! The REST API: Kafka Connect's endpoints and shapes, plus `/health`,
//! `/metrics` and `/openapi.json`, served by axum in the same process as the
//! connectors.
//!
//! The same server offers FusionAuth's Kafka Messenger API
//! (`/api/messenger/**`) and event log API (`/api/system/event-log/**`) in
//! FusionAuth's shapes (see [`fusionauth`]).
//!
//! Connect's errors use its body `{"error_code": N, "message": "..."}`;
//! bodies are limited to [`BODY_LIMIT`] bytes (413 beyond); a wrong method is
//! 405; when API keys are configured every endpoint but `/health` needs one
//! (401 with an empty body otherwise; see [`auth`]). Every change to a
//! connector or a messenger is audited ([`audit`]).

mod audit;
mod auth;
mod connectors;
mod error;
mod event_log;
pub mod fusionauth;
mod messenger;
mod plugins;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use auth::{Access, Caller};
pub use error::ApiError;
pub use tls::{TlsError, server_config as tls_config};

use crate::control::Control;
use crate::messenger::Messengers;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route and its methods, as the OpenAPI document lists them.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/health", &["GET"]),
    ("/metrics", &["GET"]),
    ("/openapi.json", &["GET"]),
    ("/connectors", &["GET", "POST"]),
    ("/connectors/{name}", &["GET", "PUT", "DELETE"]),
    ("/connectors/{name}/config", &["GET", "PUT", "PATCH"]),
    ("/connectors/{name}/status", &["GET"]),
    ("/connectors/{name}/tasks", &["GET"]),
    ("/connectors/{name}/tasks/{id}/status", &["GET"]),
    ("/connectors/{name}/tasks/{id}/restart", &["POST"]),
    ("/connectors/{name}/pause", &["GET", "PUT"]),
    ("/connectors/{name}/resume", &["GET", "PUT"]),
    ("/connectors/{name}/stop", &["PUT"]),
    ("/connectors/{name}/restart", &["POST"]),
    ("/connectors/{name}/offsets", &["GET", "PATCH", "DELETE"]),
    ("/connectors/{name}/topics", &["GET"]),
    ("/connectors/{name}/topics/reset", &["PUT"]),
    ("/connector-plugins", &["GET"]),
    ("/connector-plugins/{plugin}/config/validate", &["PUT"]),
    ("/api/messenger", &["GET", "POST"]),
    (
        "/api/messenger/{messengerId}",
        &["GET", "POST", "PUT", "PATCH", "DELETE"],
    ),
    ("/api/messenger/{messengerId}/send", &["POST"]),
    ("/api/system/event-log/search", &["GET", "POST"]),
    ("/api/system/event-log/{eventLogId}", &["GET"]),
];

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// Connector management.
    pub control: Control,
    /// The Kafka messengers and the event log.
    pub messengers: Messengers,
    /// `host:port` reported as `worker_id`.
    pub worker_id: Arc<str>,
}

/// The API's router, letting in whom `access` allows.
pub fn router(
    control: Control,
    messengers: Messengers,
    worker_id: String,
    access: Access,
) -> Router {
    let state = ApiState {
        control,
        messengers,
        worker_id: worker_id.into(),
    };
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(connectors::routes())
        .merge(plugins::routes())
        .merge(messenger::routes())
        .merge(event_log::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            auth::Guard::new(access),
            auth::guard,
        ))
        .with_state(state)
}

/// Serves the API on `listener`, over TLS when `tls` is given, until
/// `shutdown` is cancelled; handlers see each peer's address.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let signal = async move { shutdown.cancelled().await };
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
        }
        // tap_io makes axum give the TLS listener's peer address to handlers.
        Some(config) => {
            axum::serve(tls::TlsListener::new(listener, config).tap_io(|_| {}), app)
                .with_graceful_shutdown(signal)
                .await
        }
    }
}

/// Binds the listen address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn root() -> impl IntoResponse {
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": concat!("wasmsink-", env!("CARGO_PKG_VERSION")),
        "kafka_cluster_id": null,
    }))
}

async fn health(State(state): State<ApiState>) -> impl IntoResponse {
    let statuses = state.control.supervisor().statuses().await;
    let connectors: serde_json::Map<String, serde_json::Value> = statuses
        .iter()
        .map(|s| (s.config.name.clone(), json!(s.phase.name())))
        .collect();
    let failed = statuses
        .iter()
        .filter(|s| s.phase.name() == "FAILED")
        .count();
    axum::Json(json!({
        "status": "healthy",
        "message": if failed == 0 {
            "Worker has completed startup and is ready to handle requests.".to_owned()
        } else {
            format!("Worker is serving; {failed} connector(s) FAILED.")
        },
        "connectors": connectors,
    }))
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let statuses = state.control.supervisor().statuses().await;
    let mut live = Vec::new();
    for status in &statuses {
        live.push(
            state
                .control
                .supervisor()
                .connector(&status.config.name)
                .await,
        );
    }
    let rows: Vec<crate::metrics::ConnectorMetrics<'_>> = statuses
        .iter()
        .zip(&live)
        .map(|(status, connector)| crate::metrics::ConnectorMetrics {
            status,
            attempts: connector.as_ref().map(|c| &c.stats.attempts),
            guest_calls: connector.as_ref().map(|c| &c.stats.guest_calls),
            lag: connector.as_ref().map(|c| &*c.stats.lag),
            delivery: connector.as_ref().map(|c| &c.stats.delivery),
        })
        .collect();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let mut text = crate::metrics::render(&rows);
            crate::metrics::render_messengers(&mut text, &state.messengers.send_counts());
            text
        },
    )
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn not_found(uri: Uri) -> axum::response::Response {
    if uri.path().starts_with(fusionauth::PREFIX) {
        return fusionauth::empty(StatusCode::NOT_FOUND);
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("HTTP 404 Not Found: {}", uri.path()),
    )
    .into_response()
}

async fn method_not_allowed(uri: Uri) -> axum::response::Response {
    if uri.path().starts_with(fusionauth::PREFIX) {
        return fusionauth::empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "HTTP 405 Method Not Allowed",
    )
    .into_response()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fusionauth_tests;
