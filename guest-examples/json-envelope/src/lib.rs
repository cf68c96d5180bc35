//! `json-envelope`: wraps each record's value in a JSON envelope and routes
//! it by a record header. Transform only; the built-in retry policy decides.
//!
//! The body is `{"topic", "partition", "offset", "key", "timestamp", "data"}`:
//! `key` is the key as text or `null`, `timestamp` milliseconds since the
//! epoch or `null`, and `data` the value itself when it is valid JSON (its
//! text as it is: checked, never parsed into a tree and printed again), else
//! the value as a string (`null` for a tombstone).
//!
//! Configuration (`guest.config.*`):
//! * `route-header` (default `route`): a record with this header goes to
//!   `/{value}` under the connector's URL (percent-encoded);
//! * `default-path` (default: the connector's URL as is): where the others go.

use wasmsink_guest::prelude::*;
use wasmsink_guest::serde_json;

/// The guest: which header routes, and where unrouted records go.
struct JsonEnvelope {
    route_header: String,
    default_path: Option<String>,
}

impl Guest for JsonEnvelope {
    fn init(config: &Config) -> Result<Self> {
        config.check_keys(&["route-header", "default-path"])?;
        Ok(JsonEnvelope {
            route_header: config.get_or("route-header", "route").to_string(),
            default_path: config.get("default-path").map(str::to_string),
        })
    }
}

impl Transform for JsonEnvelope {
    fn transform(&mut self, record: Record) -> Result<Action> {
        let path = match record.header(&self.route_header) {
            Some(route) => Some(route_path(route)?),
            None => self.default_path.clone(),
        };
        let request = Request::deliver()
            .header("content-type", "application/json")
            .body(envelope(&record)?);
        Ok(match path {
            Some(path) => request.path(path),
            None => request,
        }
        .into())
    }
}

/// The JSON envelope of `record` (see the crate documentation). Written
/// field by field so that the value's JSON text is copied, not re-printed.
fn envelope(record: &Record) -> Result<Vec<u8>> {
    let value = record.value();
    let mut body = Vec::with_capacity(128 + record.topic().len() + value.map_or(0, <[u8]>::len));
    body.extend_from_slice(b"{\"topic\":");
    serde_json::to_writer(&mut body, record.topic())?;
    body.extend_from_slice(
        format!(
            ",\"partition\":{},\"offset\":{},\"key\":",
            record.partition(),
            record.offset()
        )
        .as_bytes(),
    );
    serde_json::to_writer(&mut body, &record.key_str())?;
    body.extend_from_slice(b",\"timestamp\":");
    serde_json::to_writer(&mut body, &record.timestamp().map(|t| t.millis))?;
    body.extend_from_slice(b",\"data\":");
    match value {
        Some(value) => wasmsink_guest::json::write_value_or_string(&mut body, value),
        None => body.extend_from_slice(b"null"),
    }
    body.push(b'}');
    Ok(body)
}

/// `/{route}`, percent-encoded; a route that is not UTF-8, blank, `.` or
/// `..` makes the record invalid.
fn route_path(route: &[u8]) -> Result<String> {
    let route = std::str::from_utf8(route)
        .map_err(|_| Error::invalid_record("the route header is not UTF-8"))?
        .trim();
    if matches!(route, "" | "." | "..") {
        return Err(Error::invalid_record(format!("unusable route {route:?}")));
    }
    Ok(format!("/{}", wasmsink_guest::percent_encode(route)))
}

export_transform!(JsonEnvelope);

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(pairs: &[(&str, &str)]) -> JsonEnvelope {
        JsonEnvelope::init(&Config::from_pairs(pairs.iter().copied())).unwrap()
    }

    fn deliver(action: Action) -> Request {
        match action {
            Action::Deliver(request) => request,
            Action::Skip => panic!("skipped"),
        }
    }

    #[test]
    fn wraps_json_and_routes_by_header() {
        let record = Record::new("orders", 3, 7)
            .with_key("k1")
            .with_timestamp_ms(1_700_000_000_000)
            .with_value(r#"{"total":12}"#)
            .with_header("route", "eu west");
        let request = deliver(guest(&[]).transform(record).unwrap());
        assert_eq!(request.path_and_query.as_deref(), Some("/eu%20west"));
        assert_eq!(
            request.header_value("content-type"),
            Some("application/json")
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({"topic": "orders", "partition": 3, "offset": 7, "key": "k1",
                   "timestamp": 1_700_000_000_000i64, "data": {"total": 12}})
        );
    }

    #[test]
    fn text_values_null_keys_and_default_paths() {
        let mut guest = guest(&[("route-header", "to"), ("default-path", "/other")]);
        let record = Record::new("t", 0, 1)
            .with_value("not json")
            .with_header("route", "x");
        let request = deliver(guest.transform(record).unwrap());
        assert_eq!(request.path_and_query.as_deref(), Some("/other"));
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["data"], "not json");
        assert_eq!(body["key"], Value::Null);
        assert_eq!(body["timestamp"], Value::Null);

        let tombstone = deliver(guest.transform(Record::new("t", 0, 2)).unwrap());
        let body: Value = serde_json::from_slice(&tombstone.body).unwrap();
        assert_eq!(body["data"], Value::Null);
    }

    #[test]
    fn bad_routes_and_unknown_keys_are_refused() {
        let record = Record::new("t", 0, 1).with_header("route", "..");
        let error = guest(&[]).transform(record).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRecord);
        assert!(JsonEnvelope::init(&Config::from_pairs([("route", "x")])).is_err());
    }
}
