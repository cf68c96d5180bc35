//! What FusionAuth-compatible endpoints (`/api/...`) share: FusionAuth's
//! answers (400 with an `Errors` body; 401, 404 and 405 with an empty body;
//! success always 200) and how their inputs are read.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use uuid::Uuid;

use crate::messenger::Errors;

/// The path prefix of FusionAuth's API.
pub const PREFIX: &str = "/api/";

/// A request refused before its handler's work: answered as it is.
pub struct Refusal(Box<Response>);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Refusal {
    fn from(response: Response) -> Self {
        Self(Box::new(response))
    }
}

/// An answer with no body.
pub fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

/// 400 with FusionAuth's `Errors` body.
pub fn invalid(errors: Errors) -> Response {
    (StatusCode::BAD_REQUEST, Json(errors)).into_response()
}

/// A URL parameter that must be a UUID; `[couldNotConvert]NAME` otherwise.
pub fn uuid_param(name: &str, text: &str) -> Result<Uuid, Refusal> {
    Uuid::parse_str(text).map_err(|_| {
        Refusal::from(invalid(Errors::one_field(
            "couldNotConvert",
            name,
            format!(
                "Invalid {name} on the URL [{text}]. This must be a valid UUID String \
                 (e.g. 25a872da-bb44-4af8-a43d-e7bcb5351ebc)."
            ),
        )))
    })
}

/// A request body as JSON: empty means `{}`; malformed is `[invalidJSON]`;
/// too large keeps axum's 413.
pub fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, Refusal> {
    let bytes = body.map_err(|rejection| Refusal::from(empty(rejection.status())))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Refusal::from(invalid(Errors::invalid_json(None, &e.to_string()))))
}
