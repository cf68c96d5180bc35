//! The HTTP side: one pooled keep-alive client per connector, and the request
//! for each record built from the guest's [`OutboundRequest`], the
//! connector's configured headers and the reference's trace headers.

use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};

use crate::config::CallbackConfig;
use crate::guest::bindings::{
    AttemptOutcome, HttpMethod, HttpResponse, KafkaRecord, OutboundRequest, TransportError,
    TransportErrorKind,
};

/// Most response-body bytes handed to the guest's `decide`.
pub const RESPONSE_BODY_CAP: usize = 64 * 1024;
/// The Kafka header whose value, when present, is the trace id.
const TRACE_ID_HEADER: &str = "X-B3-TraceId";

/// The trace headers every request gets (see [`HttpSink::prepare`]).
const X_B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
const X_B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const X_B3_INFO: HeaderName = HeaderName::from_static("x-b3-info");
const X_KAFKA_TOPIC: HeaderName = HeaderName::from_static("x-kafka-topic");
/// How many headers [`insert_trace_headers`] adds.
const TRACE_HEADER_COUNT: usize = 5;

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct SinkError(String);

/// Why a guest's request cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `path-and-query` is not a relative path or query.
    #[error(
        "path-and-query \"{0}\" must start with '/' or '?' and hold no spaces, control characters or '#'"
    )]
    InvalidPath(String),
    /// A header name from the guest is not an HTTP token.
    #[error("header name \"{0}\" is not valid HTTP")]
    InvalidHeaderName(String),
    /// A header value from the guest holds a forbidden character.
    #[error("the value of header \"{0}\" holds a line break or another character HTTP forbids")]
    InvalidHeaderValue(String),
}

/// A connector's HTTP callback.
pub struct HttpSink {
    client: Client,
    base_url: Url,
    default_method: Method,
    configured_headers: HeaderMap,
}

/// A request ready to send, reused for every attempt of one record.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Bytes,
}

impl PreparedRequest {
    /// The method the request is sent with.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL the request is sent to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The headers sent. Values may be secrets: never log them.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body sent.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

impl HttpSink {
    /// Builds the client: pooled keep-alive connections, redirects not
    /// followed, the configured connect and read timeouts.
    pub fn new(callback: &CallbackConfig) -> Result<Self, SinkError> {
        crate::install_tls_provider();
        let mut builder = Client::builder()
            .user_agent(concat!("wasmsink/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true);
        if let Some(timeout) = callback.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(timeout) = callback.read_timeout {
            builder = builder.read_timeout(timeout);
        }
        let client = builder.build().map_err(|e| SinkError(error_chain(&e)))?;
        let mut configured_headers = HeaderMap::new();
        for (name, value) in &callback.headers {
            // Validated with the configuration; a failure here is a bug.
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| SinkError(e.to_string()))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| SinkError(format!("bad value for {name}")))?;
            value.set_sensitive(true);
            configured_headers.append(name, value);
        }
        Ok(Self {
            client,
            base_url: callback.url.clone(),
            default_method: callback.method.clone(),
            configured_headers,
        })
    }

    /// Builds the request for a record. Header precedence, later wins (names
    /// compared case-insensitively): configured headers, then the guest's,
    /// then the trace headers `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`,
    /// `X-B3-Info` and `X-Kafka-Topic`.
    pub fn prepare(
        &self,
        connector: &str,
        record: &KafkaRecord,
        request: OutboundRequest,
    ) -> Result<PreparedRequest, RequestError> {
        let url = match request.path_and_query.as_deref() {
            None => self.base_url.clone(),
            Some(path) => join_url(&self.base_url, path)?,
        };
        let mut headers = self.configured_headers.clone();
        headers.reserve(request.headers.len() + TRACE_HEADER_COUNT);
        let mut replaced: Vec<HeaderName> = Vec::new();
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| RequestError::InvalidHeaderName(name.clone()))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| RequestError::InvalidHeaderValue(name.to_string()))?;
            if !replaced.contains(&name) {
                headers.remove(&name);
                replaced.push(name.clone());
            }
            headers.append(name, value);
        }
        insert_trace_headers(&mut headers, connector, record);
        let method = request
            .method
            .map_or_else(|| self.default_method.clone(), to_reqwest_method);
        Ok(PreparedRequest {
            method,
            url,
            headers,
            body: Bytes::from(request.body),
        })
    }

    /// Sends one attempt and reports what happened.
    pub async fn send(&self, request: &PreparedRequest) -> AttemptOutcome {
        // Built directly rather than through a RequestBuilder, which would
        // insert the headers one by one into an empty map.
        let mut attempt = reqwest::Request::new(request.method.clone(), request.url.clone());
        *attempt.headers_mut() = request.headers.clone();
        *attempt.body_mut() = Some(request.body.clone().into());
        let sent = self.client.execute(attempt).await;
        match sent {
            Ok(response) => read_response(response).await,
            Err(error) => AttemptOutcome::Transport(transport_error(&error)),
        }
    }
}

async fn read_response(mut response: reqwest::Response) -> AttemptOutcome {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let mut body = Vec::new();
    let mut body_truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = RESPONSE_BODY_CAP - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    body_truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            // The status line arrived, then the connection broke mid-body.
            Err(error) => return AttemptOutcome::Transport(transport_error(&error)),
        }
    }
    AttemptOutcome::Response(HttpResponse {
        status,
        headers,
        body,
        body_truncated,
    })
}

fn to_reqwest_method(method: HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
    }
}

/// Appends a guest's `path-and-query` to the base URL: a path goes after the
/// base path, a query replaces the base query.
fn join_url(base: &Url, path_and_query: &str) -> Result<Url, RequestError> {
    let invalid = || RequestError::InvalidPath(path_and_query.to_owned());
    if !(path_and_query.starts_with('/') || path_and_query.starts_with('?'))
        || path_and_query
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
        || path_and_query.starts_with("//")
    {
        return Err(invalid());
    }
    let mut joined = base.clone();
    joined.set_fragment(None);
    if let Some(query) = path_and_query.strip_prefix('?') {
        joined.set_query(Some(query));
        return Ok(joined);
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let base_path = base.path().trim_end_matches('/');
    joined.set_path(&format!("{base_path}{path}"));
    joined.set_query(query);
    Ok(joined)
}

/// Adds the reference connector's trace headers, replacing any of the same name.
fn insert_trace_headers(headers: &mut HeaderMap, connector: &str, record: &KafkaRecord) {
    let trace_id = kafka_trace_id(record)
        .and_then(|id| HeaderValue::from_str(std::str::from_utf8(id).ok()?).ok())
        .unwrap_or_else(|| {
            let id = trace_id(connector, &record.topic, record.partition, record.offset);
            HeaderValue::try_from(id).expect("hex is a valid header value")
        });
    let info = format!(
        "topic={}|partition={}|offset={}",
        record.topic, record.partition, record.offset
    );
    headers.insert(X_B3_TRACE_ID, trace_id.clone());
    headers.insert(X_B3_SPAN_ID, trace_id);
    headers.insert(X_B3_SAMPLED, HeaderValue::from_static("Defer"));
    if let Ok(info) = HeaderValue::try_from(info) {
        headers.insert(X_B3_INFO, info);
    }
    if let Ok(topic) = HeaderValue::from_str(&record.topic) {
        headers.insert(X_KAFKA_TOPIC, topic);
    }
}

/// The last non-null `X-B3-TraceId` Kafka header (exact name), as the reference reads it.
fn kafka_trace_id(record: &KafkaRecord) -> Option<&[u8]> {
    record
        .headers
        .iter()
        .rev()
        .find(|h| h.key == TRACE_ID_HEADER && h.value.is_some())
        .and_then(|h| h.value.as_deref())
}

/// The reference's trace id: the first 16 hex digits of
/// MD5(connector + topic + partition + offset), over UTF-8.
pub fn trace_id(connector: &str, topic: &str, partition: i32, offset: i64) -> String {
    let mut md5 = Md5::new();
    md5.update(connector.as_bytes());
    md5.update(topic.as_bytes());
    md5.update(partition.to_string().as_bytes());
    md5.update(offset.to_string().as_bytes());
    let mut id = hex::encode(md5.finalize());
    id.truncate(16);
    id
}

fn transport_error(error: &reqwest::Error) -> TransportError {
    let message = error_chain(error);
    let lower = message.to_ascii_lowercase();
    let kind = if error.is_timeout() {
        TransportErrorKind::Timeout
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        TransportErrorKind::Dns
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        TransportErrorKind::Tls
    } else if error.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Io
    };
    TransportError { kind, message }
}

/// The error and its sources on one line, without the URL (it may carry
/// credentials in its query).
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(err) = source {
        let text = err.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = err.source();
    }
    if parts.is_empty() {
        parts.push(error.to_string());
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::bindings::{Header, TimestampType};

    fn record(headers: Vec<Header>) -> KafkaRecord {
        KafkaRecord {
            topic: "nz-ac-auckland-person".into(),
            partition: 0,
            offset: 4,
            timestamp_ms: 0,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: Some(b"{}".to_vec()),
            headers,
        }
    }

    fn sink(headers: &[(&str, &str)]) -> HttpSink {
        HttpSink::new(&CallbackConfig {
            url: Url::parse("http://127.0.0.1:9/base/").unwrap(),
            method: Method::POST,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            connect_timeout: None,
            read_timeout: None,
        })
        .unwrap()
    }

    fn request(headers: &[(&str, &str)], path: Option<&str>) -> OutboundRequest {
        OutboundRequest {
            method: None,
            path_and_query: path.map(str::to_owned),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: b"payload".to_vec(),
        }
    }

    #[test]
    fn trace_id_matches_the_reference_test_vector() {
        assert_eq!(
            trace_id("http-sink", "nz-ac-auckland-person", 0, 4),
            "ff1bc4d07d06a30c"
        );
    }

    #[test]
    fn trace_headers_follow_the_reference_and_win_over_configured_ones() {
        let sink = sink(&[
            ("Content-Type", "application/json"),
            ("x-b3-traceid", "mine"),
        ]);
        let prepared = sink
            .prepare("http-sink", &record(vec![]), request(&[], None))
            .unwrap();
        let h = prepared.headers();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["x-b3-traceid"], "ff1bc4d07d06a30c");
        assert_eq!(h["x-b3-spanid"], "ff1bc4d07d06a30c");
        assert_eq!(h["x-b3-sampled"], "Defer");
        assert_eq!(
            h["x-b3-info"],
            "topic=nz-ac-auckland-person|partition=0|offset=4"
        );
        assert_eq!(h["x-kafka-topic"], "nz-ac-auckland-person");
        assert_eq!(prepared.method(), Method::POST);
        assert_eq!(prepared.body().as_ref(), b"payload");
    }

    #[test]
    fn the_last_kafka_trace_header_is_used() {
        let headers = vec![
            Header {
                key: "X-B3-TraceId".into(),
                value: Some(b"first".to_vec()),
            },
            Header {
                key: "X-B3-TraceId".into(),
                value: Some(b"second".to_vec()),
            },
            Header {
                key: "X-B3-TraceId".into(),
                value: None,
            },
            Header {
                key: "x-b3-traceid".into(),
                value: Some(b"wrong-case".to_vec()),
            },
        ];
        let prepared = sink(&[])
            .prepare("c", &record(headers), request(&[], None))
            .unwrap();
        assert_eq!(prepared.headers()["x-b3-traceid"], "second");
    }

    #[test]
    fn guest_headers_replace_configured_ones_but_not_trace_headers() {
        let sink = sink(&[("Accept", "a"), ("Accept", "b"), ("apikey", "k")]);
        let prepared = sink
            .prepare(
                "c",
                &record(vec![]),
                request(
                    &[("accept", "x"), ("Accept", "y"), ("X-Kafka-Topic", "t")],
                    None,
                ),
            )
            .unwrap();
        let accept: Vec<_> = prepared.headers().get_all("accept").iter().collect();
        assert_eq!(accept, ["x", "y"]);
        assert_eq!(prepared.headers()["apikey"], "k");
        assert_eq!(prepared.headers()["x-kafka-topic"], "nz-ac-auckland-person");
    }

    #[test]
    fn guest_paths_are_joined_to_the_base_url() {
        let sink = sink(&[]);
        let url = |p: &str| {
            sink.prepare("c", &record(vec![]), request(&[], Some(p)))
                .map(|r| r.url().to_string())
        };
        assert_eq!(
            url("/orders?v=2").unwrap(),
            "http://127.0.0.1:9/base/orders?v=2"
        );
        assert_eq!(url("?v=3").unwrap(), "http://127.0.0.1:9/base/?v=3");
        assert!(url("orders").is_err());
        assert!(url("//evil.example/x").is_err());
        assert!(url("/a b").is_err());
        assert!(url("/a#frag").is_err());
    }

    #[test]
    fn bad_guest_headers_are_refused() {
        let sink = sink(&[]);
        let bad_name = sink.prepare("c", &record(vec![]), request(&[("bad name", "v")], None));
        assert!(matches!(bad_name, Err(RequestError::InvalidHeaderName(_))));
        let bad_value = sink.prepare("c", &record(vec![]), request(&[("x", "a\r\nb")], None));
        assert!(matches!(
            bad_value,
            Err(RequestError::InvalidHeaderValue(_))
        ));
    }
}
