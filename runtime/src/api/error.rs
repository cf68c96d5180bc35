//! Kafka Connect's error body: `{"error_code": N, "message": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::control::ControlError;
use crate::supervisor::{OffsetsError, SupervisorError};

/// An API error: a status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status (also the `error_code`).
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for a connector.
    pub fn not_found(name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("Connector {name} not found"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.status.as_u16(), "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

impl From<SupervisorError> for ApiError {
    fn from(error: SupervisorError) -> Self {
        let status = match &error {
            SupervisorError::NotFound(_) => StatusCode::NOT_FOUND,
            SupervisorError::AlreadyExists(_) => StatusCode::CONFLICT,
            SupervisorError::Start { .. } => StatusCode::BAD_REQUEST,
            SupervisorError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = match &error {
            SupervisorError::NotFound(name) => format!("Connector {name} not found"),
            SupervisorError::AlreadyExists(name) => format!("Connector {name} already exists"),
            other => other.to_string(),
        };
        Self::new(status, message)
    }
}

impl From<OffsetsError> for ApiError {
    fn from(error: OffsetsError) -> Self {
        match error {
            OffsetsError::Supervisor(e) => e.into(),
            OffsetsError::NotStopped(_) | OffsetsError::Negative { .. } => {
                Self::bad_request(error.to_string())
            }
            OffsetsError::Kafka(_) => Self::new(StatusCode::BAD_GATEWAY, error.to_string()),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        match error {
            ControlError::Invalid(problems) => {
                let count = problems.len();
                let list = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.key, p.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                Self::bad_request(format!(
                    "Connector configuration is invalid and contains the following {count} error(s): {list}"
                ))
            }
            ControlError::Supervisor(e) => e.into(),
            ControlError::Offsets(e) => e.into(),
            ControlError::Store(e) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}
