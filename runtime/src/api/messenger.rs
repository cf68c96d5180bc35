//! `/api/messenger/**`: FusionAuth's Kafka Messenger API, plus our `send`
//! extension.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rdkafka::message::{Header, OwnedHeaders};
use serde_json::{Map, Value, json};

use super::ApiState;
use super::fusionauth::{Refusal, empty, invalid, json_body, uuid_param};
use crate::messenger::{
    ErrorEntry, Errors, Messenger, MessengerError, Outgoing, PatchFlavour, SendError,
};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/messenger", get(list).post(create))
        .route(
            "/api/messenger/{messengerId}",
            get(retrieve)
                .post(create_with_id)
                .put(replace)
                .patch(patch)
                .delete(delete),
        )
        .route("/api/messenger/{messengerId}/send", post(send))
}

type Body = Result<Bytes, BytesRejection>;

fn one(messenger: &Messenger) -> Response {
    Json(json!({ "messenger": messenger.to_json() })).into_response()
}

fn answer(result: Result<Messenger, MessengerError>) -> Response {
    match result {
        Ok(messenger) => one(&messenger),
        Err(error) => refusal(error),
    }
}

fn refusal(error: MessengerError) -> Response {
    match error {
        MessengerError::Invalid(errors) => invalid(errors),
        MessengerError::NotFound => empty(StatusCode::NOT_FOUND),
        MessengerError::Store(error) => {
            tracing::error!(%error, "messenger store failed");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

async fn list(State(state): State<ApiState>) -> Response {
    let all: Vec<Value> = state
        .messengers
        .list()
        .iter()
        .map(Messenger::to_json)
        .collect();
    Json(json!({ "messengers": all })).into_response()
}

type Answer = Result<Response, Refusal>;

async fn retrieve(State(state): State<ApiState>, Path(id): Path<String>) -> Answer {
    let id = uuid_param("messengerId", &id)?;
    Ok(match state.messengers.get(&id) {
        Some(messenger) => one(&messenger),
        None => empty(StatusCode::NOT_FOUND),
    })
}

async fn create(State(state): State<ApiState>, body: Body) -> Answer {
    let body = json_body(body)?;
    Ok(answer(state.messengers.create(None, &body).await))
}

async fn create_with_id(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let id = uuid_param("messengerId", &id)?;
    let body = json_body(body)?;
    Ok(answer(state.messengers.create(Some(id), &body).await))
}

async fn replace(State(state): State<ApiState>, Path(id): Path<String>, body: Body) -> Answer {
    let id = uuid_param("messengerId", &id)?;
    let body = json_body(body)?;
    Ok(answer(state.messengers.replace(&id, &body).await))
}

async fn patch(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let id = uuid_param("messengerId", &id)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let flavour =
        PatchFlavour::from_content_type(content_type).map_err(|e| Refusal::from(invalid(e)))?;
    let body = json_body(body)?;
    Ok(answer(state.messengers.patch(&id, flavour, &body).await))
}

async fn delete(State(state): State<ApiState>, Path(id): Path<String>) -> Answer {
    let id = uuid_param("messengerId", &id)?;
    let Some(messenger) = state.messengers.get(&id) else {
        return Ok(empty(StatusCode::NOT_FOUND));
    };
    let users = state.control.connectors_using_messenger(&messenger).await;
    if !users.is_empty() {
        return Ok(invalid(Errors::one_field(
            "inUseByConnector",
            "messengerId",
            format!(
                "The Messenger is the dead-letter producer of the connector(s) [{}]; \
                 change their errors.deadletterqueue.messenger first.",
                users.join(", ")
            ),
        )));
    }
    Ok(match state.messengers.delete(&id).await {
        Ok(()) => empty(StatusCode::OK),
        Err(error) => refusal(error),
    })
}

/// Reads the send extension's body:
/// `{"message": <any JSON>, "key": "...", "headers": {"k": "v"}, "topic": "..."}`.
fn outgoing(body: &Value) -> Result<Outgoing, Errors> {
    let Some(body) = body.as_object() else {
        return Err(Errors::invalid_json(None, "expected a JSON object"));
    };
    let optional_text = |field: &str| match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(Errors::invalid_json(Some(field), "expected a string")),
    };
    let key = optional_text("key")?;
    let topic = optional_text("topic")?;
    let mut headers = OwnedHeaders::new();
    match body.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(pairs)) => {
            for (name, value) in pairs {
                let value = match value {
                    Value::Null => None,
                    Value::String(text) => Some(text.as_str()),
                    _ => {
                        return Err(Errors::invalid_json(
                            Some(&format!("headers.{name}")),
                            "expected a string or null",
                        ));
                    }
                };
                headers = headers.insert(Header { key: name, value });
            }
        }
        Some(_) => return Err(Errors::invalid_json(Some("headers"), "expected an object")),
    }
    let mut errors = Errors::default();
    let message = body.get("message");
    if message.is_none() {
        errors.field(
            "missing",
            "message",
            "You must specify the [message] property.",
        );
    }
    if topic.as_deref().is_some_and(|t| t.trim().is_empty()) {
        errors.field(
            "blank",
            "topic",
            "The [topic] property, when given, must not be blank.",
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Outgoing {
        topic,
        key: key.map(String::into_bytes),
        value: Some(serde_json::to_vec(message.unwrap_or(&Value::Null)).expect("JSON serialises")),
        headers,
    })
}

/// `POST /api/messenger/{id}/send` (our extension): produces one record and
/// answers where it landed.
async fn send(State(state): State<ApiState>, Path(id): Path<String>, body: Body) -> Answer {
    let id = uuid_param("messengerId", &id)?;
    let body = json_body(body)?;
    let outgoing = outgoing(&body).map_err(|e| Refusal::from(invalid(e)))?;
    Ok(match state.messengers.send(&id, outgoing).await {
        Ok(delivered) => Json(json!({
            "topic": delivered.topic,
            "partition": delivered.partition,
            "offset": delivered.offset,
        }))
        .into_response(),
        Err(failure) => {
            let data = failure.event_log.map(|id| {
                let mut data = Map::new();
                data.insert("eventLogId".into(), json!(id));
                data
            });
            let entry = |code: &str| ErrorEntry {
                code: code.to_owned(),
                message: format!(
                    "Failed to send a message to topic [{}]: {}",
                    failure.topic, failure.error
                ),
                data: data.clone(),
            };
            let (status, code) = match &failure.error {
                SendError::NotFound(_) => return Ok(empty(StatusCode::NOT_FOUND)),
                SendError::Property(_) => (StatusCode::BAD_REQUEST, "[invalid]messenger.producer"),
                SendError::TimedOut(_) => (StatusCode::GATEWAY_TIMEOUT, "[SendFailed]"),
                SendError::Kafka(_) => (StatusCode::BAD_GATEWAY, "[SendFailed]"),
            };
            let mut errors = Errors::default();
            match code.strip_prefix("[invalid]") {
                Some(field) => errors
                    .field_errors
                    .push((field.to_owned(), vec![entry(code)])),
                None => errors.general_errors.push(entry(code)),
            }
            (status, Json(errors)).into_response()
        }
    })
}
