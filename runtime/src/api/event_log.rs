//! `/api/system/event-log/**`: FusionAuth's event log API, where messenger
//! sends leave their `Error` and `Debug` entries.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::fusionauth::{empty, invalid, json_body};
use crate::messenger::{Errors, EventLogEntry, EventLogSearch, EventLogType, parse_order_by};

/// The largest page a search returns.
const MAX_RESULTS: u32 = 500;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/api/system/event-log/search",
            get(search_by_query).post(search_by_body),
        )
        .route("/api/system/event-log/{eventLogId}", get(retrieve))
}

async fn retrieve(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return invalid(Errors::one_field(
            "couldNotConvert",
            "eventLogId",
            format!("Invalid eventLogId on the URL [{id}]. This must be a number."),
        ));
    };
    match state.messengers.event_logs().event_log(id) {
        Ok(Some(entry)) => Json(json!({ "eventLog": entry.to_json() })).into_response(),
        Ok(None) => empty(StatusCode::NOT_FOUND),
        Err(error) => {
            tracing::error!(%error, "event log store failed");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

async fn search_by_body(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match json_body(body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let criteria = match body.get("search") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(criteria)) => criteria.clone(),
        Some(_) => return invalid(Errors::invalid_json(Some("search"), "expected an object")),
    };
    run(&state, &criteria)
}

async fn search_by_query(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // Query values are text; numbers are read as numbers when they parse.
    let criteria = query
        .into_iter()
        .map(|(key, text)| {
            let value = match key.as_str() {
                "start" | "end" | "numberOfResults" | "startRow" => {
                    text.parse::<i64>().map_or(Value::String(text), Value::from)
                }
                _ => Value::String(text),
            };
            (key, value)
        })
        .collect();
    run(&state, &criteria)
}

fn run(state: &ApiState, criteria: &Map<String, Value>) -> Response {
    let search = match read_search(criteria) {
        Ok(search) => search,
        Err(errors) => return invalid(errors),
    };
    match state.messengers.event_logs().search_event_logs(&search) {
        Ok((entries, total)) => Json(json!({
            "eventLogs": entries.iter().map(EventLogEntry::to_json).collect::<Vec<_>>(),
            "total": total,
        }))
        .into_response(),
        Err(error) => {
            tracing::error!(%error, "event log store failed");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// FusionAuth's `search` criteria; unknown ones are ignored.
fn read_search(criteria: &Map<String, Value>) -> Result<EventLogSearch, Errors> {
    let mut search = EventLogSearch::default();
    let mut errors = Errors::default();
    let number = |field: &str| -> Result<Option<i64>, Errors> {
        match criteria.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_i64().map(Some).ok_or_else(|| {
                Errors::invalid_json(Some(&format!("search.{field}")), "expected a number")
            }),
        }
    };
    let text = |field: &str| -> Result<Option<String>, Errors> {
        match criteria.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(Errors::invalid_json(
                Some(&format!("search.{field}")),
                "expected a string",
            )),
        }
    };
    search.message = text("message")?.filter(|m| !m.trim().is_empty());
    search.start = number("start")?;
    search.end = number("end")?;
    if let Some(kind) = text("type")? {
        match EventLogType::parse(&kind) {
            Some(kind) => search.kind = Some(kind),
            None => errors.field(
                "invalid",
                "search.type",
                format!("The type [{kind}] is not one of [Information, Debug, Error]."),
            ),
        }
    }
    if let Some(count) = number("numberOfResults")? {
        match u32::try_from(count) {
            Ok(count) if (1..=MAX_RESULTS).contains(&count) => search.number_of_results = count,
            _ => errors.field(
                "invalid",
                "search.numberOfResults",
                format!("The [search.numberOfResults] must be between 1 and {MAX_RESULTS}."),
            ),
        }
    }
    if let Some(row) = number("startRow")? {
        match u32::try_from(row) {
            Ok(row) => search.start_row = row,
            Err(_) => errors.field(
                "invalid",
                "search.startRow",
                "The [search.startRow] must not be negative.",
            ),
        }
    }
    if let Some(order) = text("orderBy")? {
        match parse_order_by(&order) {
            Ok(order) => search.order_by = order,
            Err(reason) => errors.field(
                "invalid",
                "search.orderBy",
                format!("The [search.orderBy] {reason}."),
            ),
        }
    }
    if errors.is_empty() {
        Ok(search)
    } else {
        Err(errors)
    }
}
