//! `/connectors/**`: Kafka Connect's connector endpoints.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};

use super::{ApiError, ApiState};
use crate::supervisor::{ConnectorPhase, ConnectorStatus, OffsetChange, TargetState};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/connectors", get(list).post(create))
        .route(
            "/connectors/{name}",
            get(info).put(put_config).delete(delete),
        )
        .route(
            "/connectors/{name}/config",
            get(get_config).put(put_config).patch(patch_config),
        )
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{id}/status", get(task_status))
        .route("/connectors/{name}/tasks/{id}/restart", post(restart_task))
        .route("/connectors/{name}/pause", get(pause).put(pause))
        .route("/connectors/{name}/resume", get(resume).put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/restart", post(restart))
        .route(
            "/connectors/{name}/offsets",
            get(offsets).patch(alter_offsets).delete(reset_offsets),
        )
        .route("/connectors/{name}/topics", get(topics))
        .route("/connectors/{name}/topics/reset", put(reset_topics))
}

type Body = Result<Bytes, BytesRejection>;

/// Parses a JSON body, mapping an oversized body to 413 and bad JSON to 400.
pub(super) fn json_body(body: Body) -> Result<Value, ApiError> {
    let bytes = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("Malformed JSON request body: {e}")))
}

/// A Connect config object as a property map: strings as they are,
/// numbers and booleans as text, objects (such as headers) as JSON text.
pub(super) fn properties(value: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request(
            "the connector configuration must be a JSON object of string values",
        ));
    };
    let mut out = BTreeMap::new();
    let mut nulls = Vec::new();
    for (key, value) in map {
        match value {
            Value::String(s) => {
                out.insert(key.clone(), s.clone());
            }
            Value::Null => nulls.push(key.clone()),
            Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                let texts: Vec<String> = items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect();
                out.insert(key.clone(), texts.join(","));
            }
            other => {
                out.insert(key.clone(), other.to_string());
            }
        }
    }
    if nulls.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::bad_request(format!(
            "Connector configuration is invalid: null values for {}",
            nulls.join(", ")
        )))
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("Connector name is required"));
    }
    Ok(())
}

/// Properties with `name` added, as Connect shows them.
fn shown(name: &str, properties: &BTreeMap<String, String>) -> Value {
    let mut map: Map<String, Value> = properties
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    map.entry("name")
        .or_insert_with(|| Value::String(name.to_owned()));
    Value::Object(map)
}

fn info_of(name: &str, properties: &BTreeMap<String, String>, stopped: bool) -> Value {
    let tasks = if stopped {
        json!([])
    } else {
        json!([{"connector": name, "task": 0}])
    };
    json!({"name": name, "config": shown(name, properties), "tasks": tasks, "type": "sink"})
}

fn status_of(status: &ConnectorStatus, worker_id: &str) -> Value {
    let name = &status.config.name;
    let state = status.phase.name();
    let mut connector = json!({"state": state, "worker_id": worker_id});
    let mut task = json!({"id": 0, "state": state, "worker_id": worker_id});
    if let ConnectorPhase::Failed { reason } = &status.phase {
        connector["trace"] = json!(reason);
        task["trace"] = json!(reason);
    }
    let tasks = if matches!(status.phase, ConnectorPhase::Stopped) {
        json!([])
    } else {
        json!([task])
    };
    json!({"name": name, "connector": connector, "tasks": tasks, "type": "sink"})
}

async fn list(State(state): State<ApiState>, RawQuery(query): RawQuery) -> Response {
    let expand: Vec<String> = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("expand="))
        .map(str::to_owned)
        .collect();
    let statuses = state.control.supervisor().statuses().await;
    if expand.is_empty() {
        let names: Vec<&str> = statuses.iter().map(|s| s.config.name.as_str()).collect();
        return Json(json!(names)).into_response();
    }
    let mut out = Map::new();
    for s in &statuses {
        let name = &s.config.name;
        let mut entry = Map::new();
        if expand.iter().any(|e| e == "status") {
            entry.insert("status".into(), status_of(s, &state.worker_id));
        }
        if expand.iter().any(|e| e == "info") {
            let stopped = matches!(s.phase, ConnectorPhase::Stopped);
            entry.insert("info".into(), info_of(name, &s.config.properties, stopped));
        }
        out.insert(name.clone(), Value::Object(entry));
    }
    Json(Value::Object(out)).into_response()
}

async fn create(State(state): State<ApiState>, body: Body) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(
            "the request body must be an object: {\"name\": ..., \"config\": {...}}",
        ));
    };
    let config = body
        .get("config")
        .ok_or_else(|| ApiError::bad_request("the request body has no \"config\" object"))?;
    let mut properties = properties(config)?;
    let name = match body.get("name") {
        Some(Value::String(name)) => name.clone(),
        None | Some(Value::Null) => properties.get("name").cloned().unwrap_or_default(),
        Some(_) => return Err(ApiError::bad_request("\"name\" must be a string")),
    };
    check_name(&name)?;
    properties
        .entry("name".into())
        .or_insert_with(|| name.clone());
    let target = match body.get("initial_state") {
        None | Some(Value::Null) => TargetState::Running,
        Some(Value::String(s)) => crate::store::parse_target(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "initial_state \"{s}\" is not one of RUNNING, PAUSED, STOPPED"
            ))
        })?,
        Some(_) => return Err(ApiError::bad_request("\"initial_state\" must be a string")),
    };
    if state.control.supervisor().status(&name).await.is_ok() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Connector {name} already exists"),
        ));
    }
    state
        .control
        .create(&name, properties.clone(), target)
        .await?;
    let stopped = target == TargetState::Stopped;
    Ok((
        StatusCode::CREATED,
        Json(info_of(&name, &properties, stopped)),
    )
        .into_response())
}

async fn info(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let status = state.control.status(&name).await?;
    let stopped = matches!(status.phase, ConnectorPhase::Stopped);
    Ok(Json(info_of(&name, &status.config.properties, stopped)).into_response())
}

async fn get_config(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let status = state.control.status(&name).await?;
    Ok(Json(shown(&name, &status.config.properties)).into_response())
}

async fn put_config(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let mut properties = properties(&json_body(body)?)?;
    properties
        .entry("name".into())
        .or_insert_with(|| name.clone());
    let (_, created) = state.control.put(&name, properties.clone()).await?;
    let stopped = state.control.supervisor().target_state(&name).await? == TargetState::Stopped;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info_of(&name, &properties, stopped))).into_response())
}

async fn patch_config(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let Value::Object(map) = &body else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let mut changes = BTreeMap::new();
    for (key, value) in map {
        let value = match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        changes.insert(key.clone(), value);
    }
    let config = state.control.patch(&name, changes).await?;
    let stopped = state.control.supervisor().target_state(&name).await? == TargetState::Stopped;
    Ok(Json(info_of(&name, &config.properties, stopped)).into_response())
}

async fn delete(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.control.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn status(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let status = state.control.status(&name).await?;
    Ok(Json(status_of(&status, &state.worker_id)).into_response())
}

async fn tasks(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let status = state.control.status(&name).await?;
    if matches!(status.phase, ConnectorPhase::Stopped) {
        return Ok(Json(json!([])).into_response());
    }
    Ok(Json(json!([{
        "id": {"connector": name, "task": 0},
        "config": shown(&name, &status.config.properties),
    }]))
    .into_response())
}

fn task_id(name: &str, id: &str) -> Result<(), ApiError> {
    if id == "0" {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Task {name}-{id} not found: a wasmsink connector has one task, 0"),
        ))
    }
}

async fn task_status(
    State(state): State<ApiState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let status = state.control.status(&name).await?;
    task_id(&name, &id)?;
    let full = status_of(&status, &state.worker_id);
    match full["tasks"].get(0) {
        Some(task) => Ok(Json(task.clone()).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Task {name}-{id} not found: the connector is STOPPED"),
        )),
    }
}

async fn restart_task(
    State(state): State<ApiState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.control.status(&name).await?;
    task_id(&name, &id)?;
    state.control.restart(&name, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .control
        .apply_target(&name, TargetState::Paused)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

async fn resume(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .control
        .apply_target(&name, TargetState::Running)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

async fn stop(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .control
        .apply_target(&name, TargetState::Stopped)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn flag(query: Option<&str>, key: &str) -> Result<Option<bool>, ApiError> {
    for pair in query.unwrap_or("").split('&') {
        if let Some(value) = pair.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
            return match value.to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(ApiError::bad_request(format!(
                    "{key} must be true or false, not \"{value}\""
                ))),
            };
        }
    }
    Ok(None)
}

async fn restart(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let include_tasks = flag(query.as_deref(), "includeTasks")?;
    let only_failed = flag(query.as_deref(), "onlyFailed")?;
    state.control.status(&name).await?;
    state
        .control
        .restart(&name, only_failed.unwrap_or(false))
        .await?;
    if include_tasks.is_none() && only_failed.is_none() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let status = state.control.status(&name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(status_of(&status, &state.worker_id)),
    )
        .into_response())
}

async fn offsets(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let offsets = state.control.offsets(&name).await?;
    let list: Vec<Value> = offsets
        .into_iter()
        .map(|p| {
            json!({
                "partition": {"kafka_topic": p.topic, "kafka_partition": p.partition},
                "offset": {"kafka_offset": p.offset},
            })
        })
        .collect();
    Ok(Json(json!({"offsets": list})).into_response())
}

fn offset_changes(body: &Value) -> Result<Vec<OffsetChange>, ApiError> {
    let bad = |what: &str| ApiError::bad_request(format!("invalid offsets request: {what}"));
    let list = body
        .get("offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("expected {\"offsets\": [...]}"))?;
    list.iter()
        .map(|entry| {
            let partition = entry
                .get("partition")
                .ok_or_else(|| bad("an entry has no partition"))?;
            let topic = partition
                .get("kafka_topic")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad("kafka_topic must be a non-empty string"))?;
            let number = partition
                .get("kafka_partition")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| bad("kafka_partition must be a non-negative integer"))?;
            let offset = match entry.get("offset") {
                None | Some(Value::Null) => None,
                Some(offset) => Some(
                    offset
                        .get("kafka_offset")
                        .and_then(Value::as_i64)
                        .filter(|o| *o >= 0)
                        .ok_or_else(|| bad("kafka_offset must be a non-negative integer"))?,
                ),
            };
            Ok(OffsetChange {
                topic: topic.to_owned(),
                partition: number,
                offset,
            })
        })
        .collect()
}

async fn alter_offsets(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let changes = offset_changes(&json_body(body)?)?;
    state.control.alter_offsets(&name, changes).await?;
    Ok(
        Json(json!({"message": "The offsets for this connector have been altered successfully"}))
            .into_response(),
    )
}

async fn reset_offsets(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.control.reset_offsets(&name).await?;
    Ok(
        Json(json!({"message": "The offsets for this connector have been reset successfully"}))
            .into_response(),
    )
}

async fn topics(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let topics = state.control.active_topics(&name).await?;
    Ok(Json(json!({ name: {"topics": topics} })).into_response())
}

async fn reset_topics(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.control.reset_topics(&name).await?;
    Ok(StatusCode::ACCEPTED)
}
