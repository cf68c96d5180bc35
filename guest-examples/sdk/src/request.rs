//! What `transform` returns: the request to send, or nothing.

use serde::Serialize;

use crate::Result;

/// HTTP methods a guest may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

/// The HTTP request a guest wants sent for a record, built fluently.
///
/// The host owns the base URL (`callback.request.url`), TLS and timeouts; a
/// guest chooses the method, the path and query appended to the base URL,
/// extra headers and the body. Headers are sent after the connector's
/// configured headers (a guest header replaces a configured one of the same
/// name) and before the host's trace headers (`X-B3-*`, `X-Kafka-Topic`),
/// which always win.
///
/// ```
/// use wasmsink_guest::{Method, Request};
/// use serde_json::json;
///
/// let request = Request::deliver()
///     .method(Method::Put)
///     .path("/orders/42")
///     .header("x-tenant", "acme")
///     .json(&json!({"id": 42}))
///     .unwrap();
/// assert_eq!(request.path_and_query.as_deref(), Some("/orders/42"));
/// assert_eq!(request.header_value("content-type"), Some("application/json"));
/// assert_eq!(request.body, br#"{"id":42}"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Method; `None` uses the connector's `callback.request.method`.
    pub method: Option<Method>,
    /// Path and query appended to the base URL; `None` sends to the base URL.
    pub path_and_query: Option<String>,
    /// Extra headers as (name, value) pairs, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes, sent as is.
    pub body: Vec<u8>,
}

impl Request {
    /// A request to the connector's URL with its method, no extra headers and
    /// an empty body.
    pub fn deliver() -> Self {
        Request::default()
    }

    /// Sets the method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Sets the path and query appended to the connector's base URL. A `/` is
    /// put in front unless it starts with `/` or `?`, so `"orders"` and
    /// `"/orders"` mean the same. The guest is responsible for
    /// percent-encoding: see [`crate::percent_encode`].
    pub fn path(mut self, path_and_query: impl Into<String>) -> Self {
        let mut path = path_and_query.into();
        if !path.starts_with(['/', '?']) {
            path.insert(0, '/');
        }
        self.path_and_query = Some(path);
        self
    }

    /// Adds a header, replacing any earlier one with the same name (names
    /// compare case-insensitively).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Serializes `value` as the JSON body and sets `Content-Type:
    /// application/json` unless a content type is already set.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self> {
        self.body = serde_json::to_vec(value)?;
        if self.header_value("content-type").is_none() {
            self.headers
                .push(("content-type".into(), "application/json".into()));
        }
        Ok(self)
    }

    /// The value of the header named `name` (case-insensitive), if set.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What `transform` decided for a record.
///
/// A [`Request`] converts into [`Action::Deliver`], so a transform can end
/// with `Ok(request.into())`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this request.
    Deliver(Request),
    /// Send nothing: the record is finished and its offset is committed.
    Skip,
}

impl From<Request> for Action {
    fn from(request: Request) -> Self {
        Action::Deliver(request)
    }
}

/// Percent-encodes `text` for use in a URL path segment or a query value:
/// everything but `A-Z a-z 0-9 - . _ ~` is encoded (so `/` becomes `%2F`).
///
/// ```
/// assert_eq!(wasmsink_guest::percent_encode("a b/ü"), "a%20b%2F%C3%BC");
/// ```
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_gets_a_leading_slash_unless_it_is_a_query() {
        assert_eq!(Request::deliver().path("x").path_and_query.unwrap(), "/x");
        assert_eq!(Request::deliver().path("/x").path_and_query.unwrap(), "/x");
        assert_eq!(
            Request::deliver().path("?a=1").path_and_query.unwrap(),
            "?a=1"
        );
    }

    #[test]
    fn headers_replace_case_insensitively_and_json_keeps_a_set_content_type() {
        let request = Request::deliver()
            .header("Content-Type", "application/cloudevents+json")
            .header("x-a", "1")
            .header("X-A", "2")
            .json(&[1, 2])
            .unwrap();
        assert_eq!(
            request.headers,
            vec![
                (
                    "Content-Type".to_string(),
                    "application/cloudevents+json".to_string()
                ),
                ("X-A".to_string(), "2".to_string()),
            ]
        );
        assert_eq!(request.body, b"[1,2]");
    }

    #[test]
    fn requests_convert_into_deliver_actions() {
        let action: Action = Request::deliver().body("x").into();
        assert_eq!(action, Action::Deliver(Request::deliver().body("x")));
    }

    #[test]
    fn percent_encoding_keeps_unreserved_bytes() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(percent_encode("?&="), "%3F%26%3D");
    }
}
