//! The audit log: one entry for every request that changes a connector or
//! a messenger, written to the event log (type `Information`, readable
//! through `/api/system/event-log/search`) and logged with the target
//! `audit`.
//!
//! An entry says when (the event log's instant), which key (by label, never
//! by value), from which address, what was asked (method and path), how it
//! was answered, which keys the request set, and, when it sets one, the
//! callback URL's host. **Invariant:** no value from a request body is
//! written, only key names, and those are trimmed to printable ASCII.
//! Refused requests are audited too: a 400 for a plugin library path is
//! worth knowing about. Requests refused before they reach the API (no key,
//! a foreign `Host`) are logged by the guard instead.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::auth::Caller;
use super::{ApiError, ApiState, BODY_LIMIT, fusionauth};
use crate::messenger::EventLogType;

/// Most key names one entry lists.
const MAX_KEYS: usize = 64;
/// Longest key name written, in characters.
const MAX_KEY_CHARS: usize = 128;

/// Whether `method path` changes something worth an entry.
fn audited(method: &Method, path: &str) -> bool {
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        // The seed connector's documented calls pause and resume with GET.
        || path.ends_with("/pause")
        || path.ends_with("/resume");
    let resource = path.starts_with("/connectors") || path.starts_with("/api/messenger");
    changes && resource && !path.ends_with("/send")
}

/// Writes an audit entry for every request that changes a connector or a
/// messenger, after it was answered.
pub async fn record(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if !audited(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let caller = request.extensions().get::<Caller>().cloned();
    let method = request.method().clone();
    let path = printable(request.uri().path(), 1024);
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return if path.starts_with(fusionauth::PREFIX) {
                fusionauth::empty(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than {BODY_LIMIT} bytes"),
                )
                .into_response()
            };
        }
    };
    let summary = summarize(&bytes);
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (key, address) = caller.as_ref().map_or_else(
        || ("(unknown)".to_owned(), "an unknown address".to_owned()),
        |c| (c.key_label().to_owned(), c.address_label()),
    );
    let status = response.status().as_u16();
    let mut message =
        format!("Audit: {method} {path} answered {status} for key [{key}] from {address}");
    if !summary.keys.is_empty() {
        message.push_str(&format!("; keys: {}", summary.keys.join(", ")));
    }
    if let Some(host) = &summary.callback_host {
        message.push_str(&format!("; callback host: {host}"));
    }
    tracing::info!(target: "audit", %method, %path, status, key = %key, %address, keys = %summary.keys.join(","), "audit");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    if let Err(error) =
        state
            .messengers
            .event_logs()
            .append_event_log(EventLogType::Information, &message, now)
    {
        tracing::error!(%error, "cannot write the audit entry to the event log");
    }
    response
}

/// What an entry says about a request body.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    /// The keys the body sets.
    keys: Vec<String>,
    /// The host of a `callback.request.url` it sets.
    callback_host: Option<String>,
}

/// The key names a body sets: a connector create's `config`, a messenger's
/// fields (and `producer.*` keys), a JSON Patch's paths, or the top-level
/// keys of anything else.
fn summarize(body: &[u8]) -> Summary {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Summary::default();
    };
    let mut keys: Vec<String> = Vec::new();
    let mut callback_host = None;
    let mut object_keys = |object: &serde_json::Map<String, Value>, keys: &mut Vec<String>| {
        for (key, value) in object {
            if key == "callback.request.url"
                && let Some(url) = value.as_str().and_then(|u| url::Url::parse(u).ok())
            {
                callback_host = url.host_str().map(|h| printable(h, 255));
            }
            if key == "producer"
                && let Value::Object(producer) = value
            {
                keys.extend(producer.keys().map(|k| format!("producer.{k}")));
            } else {
                keys.push(key.clone());
            }
        }
    };
    match &value {
        Value::Object(map) => match (map.get("config"), map.get("messenger")) {
            (Some(Value::Object(config)), _) => object_keys(config, &mut keys),
            (_, Some(Value::Object(messenger))) => object_keys(messenger, &mut keys),
            _ => object_keys(map, &mut keys),
        },
        Value::Array(operations) => keys.extend(
            operations
                .iter()
                .filter_map(|op| op.get("path")?.as_str().map(str::to_owned)),
        ),
        _ => {}
    }
    let total = keys.len();
    let mut keys: Vec<String> = keys
        .into_iter()
        .take(MAX_KEYS)
        .map(|k| printable(&k, MAX_KEY_CHARS))
        .collect();
    if total > MAX_KEYS {
        keys.push(format!("and {} more", total - MAX_KEYS));
    }
    Summary {
        keys,
        callback_host,
    }
}

/// `text` as printable ASCII (anything else becomes `?`), at most `max`
/// characters, so an entry stays one line whatever a caller sends.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_audited_and_reads_and_sends_are_not() {
        assert!(audited(&Method::POST, "/connectors"));
        assert!(audited(&Method::PUT, "/connectors/a/config"));
        assert!(audited(&Method::DELETE, "/connectors/a/offsets"));
        assert!(audited(&Method::GET, "/connectors/a/pause"));
        assert!(audited(&Method::PATCH, "/api/messenger/x"));
        assert!(!audited(&Method::GET, "/connectors/a/config"));
        assert!(!audited(&Method::POST, "/api/messenger/x/send"));
        assert!(!audited(
            &Method::PUT,
            "/connector-plugins/HttpSink/config/validate"
        ));
        assert!(!audited(&Method::POST, "/api/system/event-log/search"));
    }

    #[test]
    fn entries_name_keys_never_values() {
        let body = br#"{"name":"c","config":{"topics":"t","callback.request.url":"https://user:pw@api.example.com/h","callback.request.headers":"{\"k\":\"s3cret\"}"}}"#;
        let summary = summarize(body);
        assert_eq!(
            summary.keys,
            ["topics", "callback.request.url", "callback.request.headers"]
        );
        assert_eq!(summary.callback_host.as_deref(), Some("api.example.com"));
        assert!(
            !format!("{summary:?}").contains("s3cret") && !format!("{summary:?}").contains("pw")
        );
        let messenger = summarize(
            br#"{"messenger":{"name":"m","producer":{"sasl.password":"hunter2","acks":"all"}}}"#,
        );
        assert_eq!(
            messenger.keys,
            ["name", "producer.sasl.password", "producer.acks"]
        );
        let patch =
            summarize(br#"[{"op":"replace","path":"/messenger/producer/acks","value":"1"}]"#);
        assert_eq!(patch.keys, ["/messenger/producer/acks"]);
        assert_eq!(summarize(b"not json"), Summary::default());
        assert_eq!(printable("a\nb\u{7f}c", 10), "a?b?c");
    }
}
