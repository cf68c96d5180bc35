//! A real HTTP receiver on a loopback port that records every request and
//! answers through a test-chosen responder.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use tokio_util::sync::CancellationToken;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
    pub wall: SystemTime,
}

impl Received {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// (topic, partition, offset) from the `X-B3-Info` header.
    pub fn position(&self) -> (String, i32, i64) {
        let info = self.header("x-b3-info").expect("X-B3-Info header");
        let mut parts = info.split('|').map(|p| p.split_once('=').expect("k=v").1);
        let topic = parts.next().unwrap().to_owned();
        let partition = parts.next().unwrap().parse().unwrap();
        let offset = parts.next().unwrap().parse().unwrap();
        (topic, partition, offset)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Chooses the answer (status, body) to a request.
pub type Responder = Arc<dyn Fn(&Received) -> (u16, String) + Send + Sync>;
/// Chooses how long to hold a request before answering it.
pub type Hold = Arc<dyn Fn(&Received) -> Duration + Send + Sync>;

#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Vec<Received>>>,
    responder: Arc<Mutex<Responder>>,
    hold: Hold,
    /// Headers added to every answer.
    answer_headers: Arc<Mutex<HeaderMap>>,
}

/// The receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Shared,
    stop: CancellationToken,
}

impl Receiver {
    /// Answers every request `200 {"retry":false}`.
    pub async fn ok() -> Self {
        Self::start(|_| (200, r#"{"retry":false}"#.to_owned())).await
    }

    /// Answers through `responder` at once.
    pub async fn start(
        responder: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        Self::start_holding(responder, |_| Duration::ZERO).await
    }

    /// Answers through `responder` after holding each request as long as
    /// `hold` says. Requests are recorded when they arrive.
    pub async fn start_holding(
        responder: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
        hold: impl Fn(&Received) -> Duration + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            log: Arc::default(),
            responder: Arc::new(Mutex::new(Arc::new(responder))),
            hold: Arc::new(hold),
            answer_headers: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        Self { addr, shared, stop }
    }

    /// Replaces the responder.
    pub fn respond_with(
        &self,
        responder: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
    ) {
        *self.shared.responder.lock().unwrap() = Arc::new(responder);
    }

    /// Adds the header `name: value` to every answer from now on.
    pub fn add_answer_header(&self, name: &'static str, value: &'static str) {
        self.shared
            .answer_headers
            .lock()
            .unwrap()
            .insert(name, HeaderValue::from_static(value));
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Waits until `count` requests have arrived; panics after `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} requests arrived within {timeout:?}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a request whose body is `text` has arrived; returns how
    /// many requests had arrived by then. Panics after `timeout`.
    pub async fn wait_for_text(&self, text: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.iter().any(|r| r.body == text.as_bytes()) {
                return requests.len();
            }
            assert!(
                Instant::now() < deadline,
                "no request {text:?} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `count` distinct records (by topic, partition and offset)
    /// have arrived, however many times each; panics after `timeout`.
    pub async fn wait_for_distinct(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let distinct: std::collections::BTreeSet<_> =
                self.requests().iter().map(Received::position).collect();
            if distinct.len() >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} distinct records arrived within {timeout:?}",
                distinct.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits `quiet` and asserts that no more than `count` requests arrived.
    pub async fn assert_no_more_than(&self, count: usize, quiet: Duration) {
        tokio::time::sleep(quiet).await;
        let requests = self.requests();
        assert!(
            requests.len() <= count,
            "expected at most {count} requests, got {}: {:?}",
            requests.len(),
            requests.iter().map(Received::text).collect::<Vec<_>>()
        );
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let received = Received {
        method,
        uri,
        headers,
        body: body.to_vec(),
        at: Instant::now(),
        wall: SystemTime::now(),
    };
    shared.log.lock().unwrap().push(received.clone());
    let hold = (shared.hold)(&received);
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    let responder = shared.responder.lock().unwrap().clone();
    let (status, answer) = responder(&received);
    let answer_headers = shared.answer_headers.lock().unwrap().clone();
    (
        StatusCode::from_u16(status).unwrap(),
        answer_headers,
        answer,
    )
}
