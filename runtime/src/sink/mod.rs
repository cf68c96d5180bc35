//! The HTTP side: each record's request, built from the guest's
//! [`OutboundRequest`], the connector's configured headers and the
//! reference's trace headers, and each lane's way of sending it: its own
//! keep-alive connection ([`direct`]), or reqwest's pooled client when the
//! environment names an HTTP proxy ([`proxied`]).

mod direct;
mod proxied;
#[cfg(test)]
pub(crate) mod scripted;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::config::CallbackConfig;
use crate::guest::bindings::{
    AttemptOutcome, HttpMethod, HttpResponse, KafkaRecord, OutboundRequest,
};
use crate::security::EgressPolicy;
use direct::{DirectConnection, Endpoint};
use proxied::ProxiedClient;

/// Most response-body bytes handed to the guest's `decide`.
pub const RESPONSE_BODY_CAP: usize = 64 * 1024;
/// The Kafka header whose value, when present, is the trace id.
const TRACE_ID_HEADER: &str = "X-B3-TraceId";
/// The `User-Agent` of every request unless the configuration or guest sets one.
const USER_AGENT: &str = concat!("wasmsink/", env!("CARGO_PKG_VERSION"));

/// The trace headers every request gets (see [`HttpSink::prepare`]).
const X_B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
const X_B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const X_B3_INFO: HeaderName = HeaderName::from_static("x-b3-info");
const X_KAFKA_TOPIC: HeaderName = HeaderName::from_static("x-kafka-topic");
/// How many headers [`insert_trace_headers`] adds.
const TRACE_HEADER_COUNT: usize = 5;
/// Headers an attempt holds without growing the map it starts as a clone
/// of: the base headers, the guest's, and the trace headers. (Growing
/// rehashes every header; the map is built for every attempt.)
const ATTEMPT_HEADER_ROOM: usize = 32;

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

/// The callback's connect and read timeouts; `None` waits for ever.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Resolving, connecting and the TLS handshake.
    pub connect: Option<Duration>,
    /// From sending a request to the end of its answer.
    pub read: Option<Duration>,
}

/// How a connector's lanes reach the callback.
enum Route {
    /// Each lane keeps its own connection to the callback's host.
    Direct(Arc<Endpoint>),
    /// Through the environment's proxy, on one pooled client.
    Proxied(ProxiedClient),
    /// To a function standing in for the callback.
    #[cfg(test)]
    Scripted(scripted::Script),
}

/// Which route [`HttpSink::build`] sets up.
enum RouteChoice {
    Direct,
    /// Through this proxy, or the environment's when `None`.
    Proxied(Option<Box<reqwest::Proxy>>),
    #[cfg(test)]
    Scripted(scripted::Script),
}

/// A connector's HTTP callback.
pub struct HttpSink {
    route: Route,
    timeouts: Timeouts,
    base_url: Url,
    /// The base URL's path and query, the request target without a guest path.
    base_path_and_query: http::Uri,
    default_method: Method,
    /// `Host`, `User-Agent` and `Accept`, then the configured headers, in a
    /// map with room for [`ATTEMPT_HEADER_ROOM`].
    base_headers: Arc<HeaderMap>,
}

/// A record's request, checked and ready to send, for every attempt of it.
///
/// Its headers are built for each attempt ([`Self::headers`]) rather than
/// kept: the client takes an attempt's headers, so keeping them would mean
/// building them once and cloning them for every attempt, first included.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    method: Method,
    path_and_query: http::Uri,
    base_headers: Arc<HeaderMap>,
    /// The guest's headers, checked, in order.
    guest_headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl PreparedRequest {
    /// The method the request is sent with.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request target: the path and query sent to the callback's host.
    pub fn path_and_query(&self) -> &http::Uri {
        &self.path_and_query
    }

    /// The headers an attempt sends for `record`. Header precedence, later
    /// wins (names compared case-insensitively): configured headers, then
    /// the guest's, then the trace headers `X-B3-TraceId`, `X-B3-SpanId`,
    /// `X-B3-Sampled`, `X-B3-Info` and `X-Kafka-Topic`. Values may be
    /// secrets: never log them.
    pub fn headers(&self, connector: &str, record: &KafkaRecord) -> HeaderMap {
        let mut headers = HeaderMap::clone(&self.base_headers);
        headers.reserve(self.guest_headers.len() + TRACE_HEADER_COUNT);
        override_headers(&mut headers, self.guest_headers.iter().cloned());
        insert_trace_headers(&mut headers, connector, record);
        headers
    }

    /// The body sent.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// Whether the responses a lane reads keep their headers for `decide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseHeaders {
    /// Every header whose value is text, names lower-case.
    Keep,
    /// None: the guest that decides does not read them (the built-in guest
    /// decides from the status and body), so they are neither converted nor
    /// copied into it.
    Drop,
}

/// A lane's sender: its own connection, or the connector's proxied client.
pub enum LaneSender {
    /// The lane's keep-alive connection.
    Direct(DirectConnection),
    /// The connector's client through the environment's proxy.
    Proxied(ProxiedClient, ResponseHeaders),
    /// A function standing in for the callback.
    #[cfg(test)]
    Scripted(scripted::Script),
}

impl LaneSender {
    /// Sends one attempt of `request` with `headers` (from
    /// [`PreparedRequest::headers`]) and reports what happened.
    pub async fn send(&mut self, request: &PreparedRequest, headers: HeaderMap) -> AttemptOutcome {
        match self {
            LaneSender::Direct(connection) => connection.send(request, headers).await,
            LaneSender::Proxied(client, which) => client.send(request, headers, *which).await,
            #[cfg(test)]
            LaneSender::Scripted(script) => script(request).await,
        }
    }
}

impl HttpSink {
    /// Builds the sink: direct connections per lane, or through the proxy
    /// the environment names (see [`proxied`]). Every connection is opened
    /// only to an address `egress` allows.
    pub fn new(callback: &CallbackConfig, egress: Arc<EgressPolicy>) -> Result<Self, SinkError> {
        let choice = if proxied::proxy_configured() {
            RouteChoice::Proxied(None)
        } else {
            RouteChoice::Direct
        };
        Self::build(callback, choice, egress)
    }

    /// A sink whose requests go to `script` instead of the callback's URL.
    #[cfg(test)]
    pub(crate) fn scripted(
        callback: &CallbackConfig,
        script: scripted::Script,
    ) -> Result<Self, SinkError> {
        let nowhere = Arc::new(EgressPolicy::new(&[], &[]));
        Self::build(callback, RouteChoice::Scripted(script), nowhere)
    }

    fn build(
        callback: &CallbackConfig,
        choice: RouteChoice,
        egress: Arc<EgressPolicy>,
    ) -> Result<Self, SinkError> {
        let url = &callback.url;
        let timeouts = Timeouts {
            connect: callback.connect_timeout,
            read: callback.read_timeout,
        };
        let route = match choice {
            RouteChoice::Proxied(proxy) => Route::Proxied(ProxiedClient::new(
                url,
                timeouts,
                proxy.map(|p| *p),
                egress,
            )?),
            RouteChoice::Direct => {
                let endpoint = Endpoint::of(url, egress).ok_or_else(|| {
                    SinkError(format!("{url} is not an http or https URL with a host"))
                })?;
                Route::Direct(Arc::new(endpoint))
            }
            #[cfg(test)]
            RouteChoice::Scripted(script) => Route::Scripted(script),
        };
        let mut base_headers = HeaderMap::with_capacity(ATTEMPT_HEADER_ROOM);
        let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let host = HeaderValue::from_str(host).map_err(|e| SinkError(e.to_string()))?;
        base_headers.insert(http::header::HOST, host);
        base_headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        base_headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        if let Some(credentials) = basic_credentials(url) {
            base_headers.insert(http::header::AUTHORIZATION, credentials);
        }
        // Validated with the configuration; a failure here is a bug.
        let configured = callback
            .headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| SinkError(e.to_string()))?;
                let mut value = HeaderValue::from_str(value)
                    .map_err(|_| SinkError(format!("bad value for {name}")))?;
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, SinkError>>()?;
        override_headers(&mut base_headers, configured);
        Ok(Self {
            route,
            timeouts,
            base_path_and_query: origin_form(url)?,
            base_url: url.clone(),
            default_method: callback.method.clone(),
            base_headers: Arc::new(base_headers),
        })
    }

    /// A sender for one lane, whose responses keep or drop their headers.
    pub fn lane(&self, headers: ResponseHeaders) -> LaneSender {
        match &self.route {
            Route::Direct(endpoint) => LaneSender::Direct(DirectConnection::new(
                endpoint.clone(),
                self.timeouts,
                headers,
            )),
            Route::Proxied(client) => LaneSender::Proxied(client.clone(), headers),
            #[cfg(test)]
            Route::Scripted(script) => LaneSender::Scripted(script.clone()),
        }
    }

    /// Checks the guest's request for a record and fixes its method, target
    /// and body; its headers are built for each attempt
    /// ([`PreparedRequest::headers`]).
    pub fn prepare(&self, request: OutboundRequest) -> Result<PreparedRequest, RequestError> {
        let path_and_query = match request.path_and_query.as_deref() {
            None => self.base_path_and_query.clone(),
            Some(path) => origin_form(&join_url(&self.base_url, path)?)
                .map_err(|_| RequestError::InvalidPath(path.to_owned()))?,
        };
        let guest_headers = request
            .headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| RequestError::InvalidHeaderName(name.clone()))?;
                let value = HeaderValue::from_str(value)
                    .map_err(|_| RequestError::InvalidHeaderValue(name.to_string()))?;
                Ok((name, value))
            })
            .collect::<Result<_, _>>()?;
        let method = request
            .method
            .map_or_else(|| self.default_method.clone(), to_reqwest_method);
        Ok(PreparedRequest {
            method,
            path_and_query,
            base_headers: self.base_headers.clone(),
            guest_headers,
            body: Bytes::from(request.body),
        })
    }
}

/// Adds `added` to `headers`: a name in `added` replaces that name's values
/// in `headers` (compared case-insensitively), and every value `added`
/// gives for it is kept.
fn override_headers(
    headers: &mut HeaderMap,
    added: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) {
    let mut replaced: Vec<HeaderName> = Vec::new();
    for (name, value) in added {
        if !replaced.contains(&name) {
            headers.remove(&name);
            replaced.push(name.clone());
        }
        headers.append(name, value);
    }
}

/// A response as the guest sees it, its body collected up to
/// [`RESPONSE_BODY_CAP`] bytes.
struct ResponseReader(HttpResponse);

impl ResponseReader {
    /// Starts with the status and, when kept, the headers whose values are text.
    fn new(status: http::StatusCode, headers: &HeaderMap, which: ResponseHeaders) -> Self {
        let headers = match which {
            ResponseHeaders::Drop => Vec::new(),
            ResponseHeaders::Keep => headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect(),
        };
        Self(HttpResponse {
            status: status.as_u16(),
            headers,
            body: Vec::new(),
            body_truncated: false,
        })
    }

    /// Appends a body chunk; false once the cap is reached (read no more).
    fn push(&mut self, chunk: &[u8]) -> bool {
        let body = &mut self.0.body;
        let room = RESPONSE_BODY_CAP - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            self.0.body_truncated = true;
            return false;
        }
        body.extend_from_slice(chunk);
        true
    }

    fn finish(self) -> HttpResponse {
        self.0
    }
}

/// `Authorization: Basic` from the URL's `user:password@`, as curl sends it
/// (a configured `Authorization` header wins).
fn basic_credentials(url: &Url) -> Option<HeaderValue> {
    use base64::Engine as _;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |text: &str| percent_encoding::percent_decode_str(text).collect::<Vec<u8>>();
    let mut pair = decode(url.username());
    pair.push(b':');
    pair.extend(decode(url.password().unwrap_or("")));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The path and query of `url`, as a request target.
fn origin_form(url: &Url) -> Result<http::Uri, SinkError> {
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    target
        .parse()
        .map_err(|e| SinkError(format!("{target} is not a request target: {e}")))
}

/// The error and its sources on one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(err) = source {
        let text = err.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = err.source();
    }
    parts.join(": ")
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
    let mut digits = itoa::Buffer::new();
    let mut info = String::with_capacity(record.topic.len() + 48);
    info.push_str("topic=");
    info.push_str(&record.topic);
    info.push_str("|partition=");
    info.push_str(digits.format(record.partition));
    info.push_str("|offset=");
    info.push_str(digits.format(record.offset));
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
    let mut digits = itoa::Buffer::new();
    md5.update(connector.as_bytes());
    md5.update(topic.as_bytes());
    md5.update(digits.format(partition).as_bytes());
    md5.update(digits.format(offset).as_bytes());
    let mut id = [0u8; 16];
    hex::encode_to_slice(&md5.finalize()[..8], &mut id).expect("8 bytes are 16 hex digits");
    std::str::from_utf8(&id).expect("hex is ASCII").to_owned()
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
        HttpSink::build(
            &CallbackConfig {
                url: Url::parse("http://127.0.0.1:9/base/").unwrap(),
                method: Method::POST,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                connect_timeout: None,
                read_timeout: None,
            },
            RouteChoice::Direct,
            Arc::default(),
        )
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
        let prepared = sink.prepare(request(&[], None)).unwrap();
        let h = prepared.headers("http-sink", &record(vec![]));
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
        let prepared = sink(&[]).prepare(request(&[], None)).unwrap();
        assert_eq!(
            prepared.headers("c", &record(headers))["x-b3-traceid"],
            "second"
        );
    }

    #[test]
    fn guest_headers_replace_configured_ones_but_not_trace_headers() {
        let sink = sink(&[("Accept", "a"), ("Accept", "b"), ("apikey", "k")]);
        let prepared = sink
            .prepare(request(
                &[("accept", "x"), ("Accept", "y"), ("X-Kafka-Topic", "t")],
                None,
            ))
            .unwrap();
        let h = prepared.headers("c", &record(vec![]));
        let accept: Vec<_> = h.get_all("accept").iter().collect();
        assert_eq!(accept, ["x", "y"]);
        assert_eq!(h["apikey"], "k");
        assert_eq!(h["x-kafka-topic"], "nz-ac-auckland-person");
    }

    #[test]
    fn every_attempt_sends_the_same_headers_however_many_there_are() {
        /// 40 headers named `{prefix}-N` with values `{value}N`.
        fn numbered(prefix: &str, value: &str) -> Vec<(String, String)> {
            (0..40)
                .map(|i| (format!("{prefix}-{i}"), format!("{value}{i}")))
                .collect()
        }
        fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
            headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        }
        let (configured, guest) = (numbered("x-conf", "c"), numbered("x-guest", "g"));
        let (configured, guest) = (borrowed(&configured), borrowed(&guest));
        let prepared = sink(&configured).prepare(request(&guest, None)).unwrap();
        let rec = record(vec![]);
        let first = prepared.headers("http-sink", &rec);
        // Host, User-Agent, Accept, 40 configured, 40 from the guest, 5 trace.
        assert_eq!(first.len(), 3 + 40 + 40 + 5);
        assert_eq!(first["x-conf-39"], "c39");
        assert_eq!(first["x-guest-39"], "g39");
        assert_eq!(first["x-b3-traceid"], "ff1bc4d07d06a30c");
        for _ in 0..3 {
            assert_eq!(prepared.headers("http-sink", &rec), first);
        }
    }

    #[test]
    fn guest_paths_are_joined_to_the_base_url() {
        let sink = sink(&[]);
        let url = |p: &str| {
            sink.prepare(request(&[], Some(p)))
                .map(|r| r.path_and_query().to_string())
        };
        assert_eq!(url("/orders?v=2").unwrap(), "/base/orders?v=2");
        assert_eq!(url("?v=3").unwrap(), "/base/?v=3");
        assert!(url("orders").is_err());
        assert!(url("//evil.example/x").is_err());
        assert!(url("/a b").is_err());
        assert!(url("/a#frag").is_err());
    }

    #[test]
    fn credentials_in_the_url_become_basic_authorization() {
        let with_credentials = |url: &str| {
            let mut config = CallbackConfig {
                url: Url::parse(url).unwrap(),
                method: Method::POST,
                headers: Vec::new(),
                connect_timeout: None,
                read_timeout: None,
            };
            let sink = HttpSink::build(&config, RouteChoice::Direct, Arc::default()).unwrap();
            let plain = sink.prepare(request(&[], None)).unwrap();
            config.headers = vec![("Authorization".into(), "Bearer t".into())];
            let sink = HttpSink::build(&config, RouteChoice::Direct, Arc::default()).unwrap();
            let configured = sink.prepare(request(&[], None)).unwrap();
            let rec = record(vec![]);
            (plain.headers("c", &rec), configured.headers("c", &rec))
        };
        let (plain, configured) = with_credentials("https://al%40ice:p%3Ass@example.com/hook");
        // base64("al@ice:p:ss")
        assert_eq!(plain["authorization"], "Basic YWxAaWNlOnA6c3M=");
        assert!(plain["authorization"].is_sensitive());
        assert_eq!(plain["host"], "example.com");
        assert_eq!(configured["authorization"], "Bearer t");
        let (plain, _) = with_credentials("http://example.com:8080/hook");
        assert!(plain.get("authorization").is_none());
        assert_eq!(plain["host"], "example.com:8080");
    }

    #[test]
    fn bad_guest_headers_are_refused() {
        let sink = sink(&[]);
        let bad_name = sink.prepare(request(&[("bad name", "v")], None));
        assert!(matches!(bad_name, Err(RequestError::InvalidHeaderName(_))));
        let bad_value = sink.prepare(request(&[("x", "a\r\nb")], None));
        assert!(matches!(
            bad_value,
            Err(RequestError::InvalidHeaderValue(_))
        ));
    }
}
