//! The lane connection against scripted servers on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::config::CallbackConfig;
use crate::guest::bindings::{KafkaRecord, OutboundRequest, TimestampType};
use crate::sink::{HttpSink, LaneSender, RESPONSE_BODY_CAP, RouteChoice};

/// What a scripted server does with each request it reads.
#[derive(Clone, Copy)]
enum Script {
    /// Answers 200 `ok` and keeps the connection.
    Answer,
    /// Answers 200 `ok`, then closes the connection (an idle-timeout close).
    AnswerThenClose,
    /// Answers with a body larger than the cap.
    HugeBody,
    /// Never answers.
    Silent,
    /// Writes half a status line and closes.
    BreakMidAnswer,
    /// Writes the head and part of the body, then closes.
    BreakMidBody,
    /// Answers the first bytes it reads with a plain-HTTP 400 and closes,
    /// as an HTTP server does with a TLS handshake.
    PlainHttpOnly,
}

/// A server on loopback; counts connections opened and closed, and keeps
/// each request's head.
struct Server {
    port: u16,
    connections: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn serve(script: Script) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counted, ended, kept) = (connections.clone(), closed.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let (ended, kept) = (ended.clone(), kept.clone());
            tokio::spawn(async move {
                serve_connection(stream, script, kept).await;
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Server {
        port,
        connections,
        closed,
        heads,
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    script: Script,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut buffer = Vec::new();
    if let Script::PlainHttpOnly = script {
        let mut chunk = [0u8; 4096];
        let _ = stream.read(&mut chunk).await;
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    loop {
        // Read one request: the head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.drain(..head_end + length);
        heads.lock().unwrap().push(head);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        match script {
            Script::Answer => stream.write_all(ok).await.unwrap(),
            Script::AnswerThenClose => {
                stream.write_all(ok).await.unwrap();
                return;
            }
            Script::HugeBody => {
                let body = vec![b'x'; RESPONSE_BODY_CAP * 2];
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                stream.write_all(head.as_bytes()).await.unwrap();
                let _ = stream.write_all(&body).await;
            }
            Script::Silent => std::future::pending::<()>().await,
            Script::BreakMidAnswer => {
                stream.write_all(b"HTTP/1.1 2").await.unwrap();
                return;
            }
            Script::BreakMidBody => {
                let partial = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"retry\":";
                stream.write_all(partial).await.unwrap();
                return;
            }
            Script::PlainHttpOnly => unreachable!("answered before reading a request"),
        }
    }
}

fn callback(url: &str, read_timeout: Option<Duration>) -> CallbackConfig {
    CallbackConfig {
        url: url.parse().unwrap(),
        method: Method::POST,
        headers: vec![("Content-Type".into(), "application/json".into())],
        connect_timeout: Some(Duration::from_secs(2)),
        read_timeout,
    }
}

fn record() -> KafkaRecord {
    KafkaRecord {
        topic: "orders".into(),
        partition: 0,
        offset: 7,
        timestamp_ms: 0,
        timestamp_type: TimestampType::CreateTime,
        key: None,
        value: Some(b"{}".to_vec()),
        headers: Vec::new(),
    }
}

/// A lane sender and the request it sends, for the callback `url`.
fn lane(url: &str, read_timeout: Option<Duration>) -> (LaneSender, PreparedRequest) {
    let sink = HttpSink::build(
        &callback(url, read_timeout),
        RouteChoice::Direct,
        Arc::default(),
    )
    .unwrap();
    let request = OutboundRequest {
        method: None,
        path_and_query: None,
        headers: Vec::new(),
        body: br#"{"id":1}"#.to_vec(),
    };
    let prepared = sink.prepare(request).unwrap();
    (sink.lane(ResponseHeaders::Keep), prepared)
}

/// The headers of an attempt of `request` for the test record.
fn headers(request: &PreparedRequest) -> http::HeaderMap {
    request.headers("c", &record())
}

fn status(outcome: &AttemptOutcome) -> u16 {
    match outcome {
        AttemptOutcome::Response(response) => response.status,
        AttemptOutcome::Transport(error) => panic!("transport error: {error:?}"),
    }
}

fn transport_kind(outcome: &AttemptOutcome) -> TransportErrorKind {
    match outcome {
        AttemptOutcome::Transport(error) => error.kind,
        AttemptOutcome::Response(response) => panic!("answered {}", response.status),
    }
}

#[tokio::test]
async fn one_connection_carries_every_attempt_of_a_lane() {
    let server = serve(Script::Answer).await;
    let (mut lane, request) = lane(
        &format!("http://127.0.0.1:{}/hooks/in?v=1", server.port),
        None,
    );
    for _ in 0..5 {
        let outcome = lane.send(&request, headers(&request)).await;
        assert_eq!(status(&outcome), 200);
        let AttemptOutcome::Response(response) = outcome else {
            unreachable!()
        };
        assert_eq!(response.body, b"ok");
        assert!(!response.body_truncated);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    let heads = server.heads.lock().unwrap();
    assert_eq!(heads.len(), 5);
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with("post /hooks/in?v=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nhost: 127.0.0.1:{}\r\n", server.port)),
        "{head}"
    );
    assert!(head.contains("\r\nuser-agent: wasmsink/"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/json\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\ncontent-length: 8\r\n"), "{head}");
    assert!(head.contains("\r\nx-b3-traceid: "), "{head}");
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced_without_a_failed_attempt() {
    let server = serve(Script::AnswerThenClose).await;
    let (mut lane, request) = lane(&format!("http://127.0.0.1:{}/", server.port), None);
    for sent in 1..=3 {
        assert_eq!(status(&lane.send(&request, headers(&request)).await), 200);
        // The server has closed the connection before the next attempt.
        let waiting = Instant::now();
        while server.closed.load(Ordering::SeqCst) < sent {
            assert!(
                waiting.elapsed() < Duration::from_secs(5),
                "the server never closed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
    let heads = server.heads.lock().unwrap();
    assert_eq!(heads.len(), 3, "each request sent once");
    // A request that went back unsent from a closed connection goes on the
    // next one whole: its headers and its body's length.
    for head in heads.iter().map(|head| head.to_ascii_lowercase()) {
        assert!(head.contains("\r\ncontent-length: 8\r\n"), "{head}");
        assert!(head.contains("\r\nx-b3-traceid: "), "{head}");
    }
}

#[tokio::test]
async fn an_answer_past_the_cap_is_truncated_and_its_connection_not_reused() {
    let server = serve(Script::HugeBody).await;
    let (mut lane, request) = lane(&format!("http://127.0.0.1:{}/", server.port), None);
    for _ in 0..2 {
        let AttemptOutcome::Response(response) = lane.send(&request, headers(&request)).await
        else {
            panic!("no answer")
        };
        assert_eq!(response.body.len(), RESPONSE_BODY_CAP);
        assert!(response.body_truncated);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn no_answer_within_the_read_timeout_is_a_timeout() {
    let server = serve(Script::Silent).await;
    let (mut lane, request) = lane(
        &format!("http://127.0.0.1:{}/", server.port),
        Some(Duration::from_millis(200)),
    );
    let started = Instant::now();
    let outcome = lane.send(&request, headers(&request)).await;
    assert_eq!(transport_kind(&outcome), TransportErrorKind::Timeout);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (mut lane, request) = lane(&format!("http://127.0.0.1:{port}/"), None);
    assert_eq!(
        transport_kind(&lane.send(&request, headers(&request)).await),
        TransportErrorKind::Connect
    );
}

#[tokio::test]
async fn an_answer_broken_off_is_an_io_error_and_the_next_attempt_reconnects() {
    let server = serve(Script::BreakMidAnswer).await;
    let (mut lane, request) = lane(&format!("http://127.0.0.1:{}/", server.port), None);
    assert_eq!(
        transport_kind(&lane.send(&request, headers(&request)).await),
        TransportErrorKind::Io
    );
    assert_eq!(
        transport_kind(&lane.send(&request, headers(&request)).await),
        TransportErrorKind::Io
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_broken_off_is_an_io_error_even_without_a_read_timeout() {
    let server = serve(Script::BreakMidBody).await;
    let (mut lane, request) = lane(&format!("http://127.0.0.1:{}/", server.port), None);
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        lane.send(&request, headers(&request)),
    )
    .await
    .expect("the attempt ends when the connection does");
    assert_eq!(transport_kind(&outcome), TransportErrorKind::Io);
}

#[tokio::test]
async fn https_to_a_server_that_does_not_speak_tls_is_a_tls_error() {
    let server = serve(Script::PlainHttpOnly).await;
    let (mut lane, request) = lane(&format!("https://localhost:{}/", server.port), None);
    let outcome = lane.send(&request, headers(&request)).await;
    assert_eq!(
        transport_kind(&outcome),
        TransportErrorKind::Tls,
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_proxied_route_sends_through_the_proxy() {
    // The "proxy" is a scripted server: a request sent through a proxy
    // names the whole URL in its request line.
    let proxy = serve(Script::Answer).await;
    let config = callback("http://callback.example:8080/hooks?v=1", None);
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let sink = HttpSink::build(
        &config,
        RouteChoice::Proxied(Some(Box::new(reqwest::Proxy::all(&proxy_url).unwrap()))),
        Arc::default(),
    )
    .unwrap();
    let request = OutboundRequest {
        method: None,
        path_and_query: Some("/orders".into()),
        headers: Vec::new(),
        body: b"{}".to_vec(),
    };
    let prepared = sink.prepare(request).unwrap();
    assert_eq!(
        status(
            &sink
                .lane(ResponseHeaders::Keep)
                .send(&prepared, headers(&prepared))
                .await
        ),
        200
    );
    let head = proxy.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        head.starts_with("post http://callback.example:8080/hooks/orders http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nhost: callback.example:8080\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn response_headers_are_kept_for_a_guest_that_reads_them_and_dropped_otherwise() {
    let server = serve(Script::Answer).await;
    let url = format!("http://127.0.0.1:{}/", server.port);
    let sink = HttpSink::build(&callback(&url, None), RouteChoice::Direct, Arc::default()).unwrap();
    let request = OutboundRequest {
        method: None,
        path_and_query: None,
        headers: Vec::new(),
        body: b"{}".to_vec(),
    };
    let prepared = sink.prepare(request).unwrap();
    let response = |outcome| match outcome {
        AttemptOutcome::Response(response) => response,
        AttemptOutcome::Transport(error) => panic!("transport error: {error:?}"),
    };

    let kept = response(
        sink.lane(ResponseHeaders::Keep)
            .send(&prepared, headers(&prepared))
            .await,
    );
    assert_eq!(
        kept.headers,
        [("content-length".to_owned(), "2".to_owned())]
    );

    let dropped = response(
        sink.lane(ResponseHeaders::Drop)
            .send(&prepared, headers(&prepared))
            .await,
    );
    assert!(dropped.headers.is_empty(), "{:?}", dropped.headers);
    assert_eq!((dropped.status, dropped.body.as_slice()), (200, &b"ok"[..]));
}

#[tokio::test]
async fn a_name_resolving_to_a_refused_address_is_never_connected_to() {
    let server = serve(Script::Answer).await;
    let deny = crate::security::egress::parse_cidrs(&["127.0.0.0/8".into(), "::1".into()]).unwrap();
    let egress = Arc::new(crate::security::EgressPolicy::new(&[], &deny));
    let url = format!("http://localhost:{}/hook", server.port);
    let sink = HttpSink::build(&callback(&url, None), RouteChoice::Direct, egress.clone()).unwrap();
    let request = OutboundRequest {
        method: None,
        path_and_query: None,
        headers: Vec::new(),
        body: b"{}".to_vec(),
    };
    let prepared = sink.prepare(request).unwrap();
    let outcome = sink
        .lane(ResponseHeaders::Keep)
        .send(&prepared, headers(&prepared))
        .await;
    let AttemptOutcome::Transport(error) = &outcome else {
        panic!("connected: {outcome:?}");
    };
    assert_eq!(error.kind, TransportErrorKind::Connect);
    assert!(error.message.contains("egress policy"), "{}", error.message);
    // Through the proxied route's resolver too (localhost is in NO_PROXY's place: no proxy).
    let proxied =
        HttpSink::build(&callback(&url, None), RouteChoice::Proxied(None), egress).unwrap();
    let outcome = proxied
        .lane(ResponseHeaders::Keep)
        .send(&prepared, headers(&prepared))
        .await;
    assert!(
        matches!(outcome, AttemptOutcome::Transport(_)),
        "{outcome:?}"
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}
