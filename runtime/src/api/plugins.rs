//! `/connector-plugins/**`: the one plugin wasmsink offers, and Connect's
//! config validation result shape.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use serde_json::{Value, json};

use super::connectors::{json_body, properties};
use super::{ApiError, ApiState};
use crate::config::{ConfigProblem, SEED_CONNECTOR_CLASS};
use crate::control::ControlError;

/// Names under which the plugin is known.
const PLUGIN_NAMES: &[&str] = &[
    SEED_CONNECTOR_CLASS,
    "HttpSinkConnector",
    "HttpSink",
    "wasmsink",
];

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/connector-plugins", get(list))
        .route("/connector-plugins/{plugin}/config/validate", put(validate))
}

async fn list() -> Json<Value> {
    Json(json!([{
        "class": SEED_CONNECTOR_CLASS,
        "type": "sink",
        "version": env!("CARGO_PKG_VERSION"),
    }]))
}

async fn validate(
    State(state): State<ApiState>,
    Path(plugin): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    if !PLUGIN_NAMES.contains(&plugin.as_str()) {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("Connector plugin {plugin} not found; wasmsink offers {SEED_CONNECTOR_CLASS}"),
        ));
    }
    let properties = properties(&json_body(body)?)?;
    let name = properties
        .get("name")
        .cloned()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "validate".to_owned());
    let problems = match state.control.validate(&name, &properties) {
        Ok(_) => Vec::new(),
        Err(ControlError::Invalid(problems)) => problems,
        Err(other) => return Err(other.into()),
    };
    Ok(Json(result(&plugin, &properties, &problems)))
}

/// Connect's `ConfigInfos`: one entry per key given or complained about.
fn result(
    plugin: &str,
    properties: &BTreeMap<String, String>,
    problems: &[ConfigProblem],
) -> Value {
    let mut keys: Vec<&str> = properties.keys().map(String::as_str).collect();
    for p in problems {
        if !keys.contains(&p.key.as_str()) {
            keys.push(&p.key);
        }
    }
    let configs: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(order, key)| {
            let errors: Vec<&str> = problems
                .iter()
                .filter(|p| p.key == *key)
                .map(|p| p.reason.as_str())
                .collect();
            json!({
                "definition": {
                    "name": key,
                    "type": "STRING",
                    "required": matches!(*key, "topics" | "callback.request.url"),
                    "default_value": null,
                    "importance": "MEDIUM",
                    "documentation": "",
                    "group": "Common",
                    "width": "NONE",
                    "display_name": key,
                    "dependents": [],
                    "order": order,
                },
                "value": {
                    "name": key,
                    "value": properties.get(*key),
                    "recommended_values": [],
                    "errors": errors,
                    "visible": true,
                },
            })
        })
        .collect();
    json!({
        "name": plugin,
        "error_count": problems.len(),
        "groups": ["Common"],
        "configs": configs,
    })
}
