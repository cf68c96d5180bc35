//! The receiver's request handling: deliveries, injected faults and stats.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use wasmsink_bench::now_us;
use wasmsink_bench::record::scan;
use wasmsink_bench::tracker::Tracker;

/// The answer to an accepted delivery.
const ACCEPTED: &[u8] = br#"{"retry":false}"#;
/// The answer to a delivery refused by fault injection.
const REFUSED: &[u8] = br#"{"retry":true}"#;

/// Faults injected into delivery requests.
#[derive(Debug)]
pub struct Faults {
    /// Requests whose mixed counter falls below this are refused.
    fail_below: u64,
    delay: Duration,
    counter: AtomicU64,
}

impl Faults {
    /// Refuses about `fail_fraction` of requests (pseudo-randomly, the same
    /// pattern every run) and delays every answer by `delay`.
    pub fn new(fail_fraction: f64, delay: Duration) -> Self {
        Self {
            fail_below: (fail_fraction * u64::MAX as f64) as u64,
            delay,
            counter: AtomicU64::new(0),
        }
    }

    /// Whether the next request is refused.
    fn refuse_next(&self) -> bool {
        self.fail_below > 0
            && splitmix64(self.counter.fetch_add(1, Ordering::Relaxed)) < self.fail_below
    }
}

/// SplitMix64: a counter turned into evenly spread pseudo-random bits.
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Request counters kept outside the tracker's lock.
#[derive(Debug, Default)]
struct Requests {
    total: AtomicU64,
    refused: AtomicU64,
    unparsed: AtomicU64,
}

/// The receiver's shared state.
#[derive(Debug)]
pub struct Receiver {
    faults: Faults,
    requests: Requests,
    tracker: Mutex<Tracker>,
}

type HttpResponse = Response<Full<Bytes>>;

impl Receiver {
    /// A receiver with nothing received yet.
    pub fn new(faults: Faults) -> Self {
        Self {
            faults,
            requests: Requests::default(),
            tracker: Mutex::new(Tracker::default()),
        }
    }

    /// Answers one request.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<HttpResponse, Infallible> {
        if request.method() == Method::GET && request.uri().path() == "/stats" {
            return Ok(json(StatusCode::OK, self.stats().into()));
        }
        let body = match request.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Ok(json(StatusCode::BAD_REQUEST, Bytes::new())),
        };
        Ok(self.deliver(&body).await)
    }

    /// Counts a delivery, unless fault injection refuses it.
    async fn deliver(&self, body: &[u8]) -> HttpResponse {
        let arrived_us = now_us();
        self.requests.total.fetch_add(1, Ordering::Relaxed);
        if self.faults.refuse_next() {
            self.requests.refused.fetch_add(1, Ordering::Relaxed);
            return json(StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(REFUSED));
        }
        if !self.faults.delay.is_zero() {
            tokio::time::sleep(self.faults.delay).await;
        }
        match scan(body) {
            Some(fields) => self
                .tracker
                .lock()
                .expect("tracker lock")
                .accept(fields, arrived_us),
            None => {
                self.requests.unparsed.fetch_add(1, Ordering::Relaxed);
            }
        }
        json(StatusCode::OK, Bytes::from_static(ACCEPTED))
    }

    /// The counts as one flat JSON object of integers.
    fn stats(&self) -> String {
        let snapshot = self.tracker.lock().expect("tracker lock").snapshot();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        serde_json::json!({
            "requests": load(&self.requests.total),
            "refused": load(&self.requests.refused),
            "unparsed": load(&self.requests.unparsed),
            "distinct": snapshot.distinct,
            "duplicates": snapshot.duplicates,
            "order_violations": snapshot.order_violations,
            "first_us": snapshot.first_us,
            "last_us": snapshot.last_us,
            "latency_samples": snapshot.latency.samples,
            "latency_p50_us": snapshot.latency.p50_us,
            "latency_p99_us": snapshot.latency.p99_us,
            "latency_max_us": snapshot.latency.max_us,
        })
        .to_string()
    }
}

fn json(status: StatusCode, body: Bytes) -> HttpResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_about_the_configured_share() {
        let faults = Faults::new(0.05, Duration::ZERO);
        let refused = (0..100_000).filter(|_| faults.refuse_next()).count();
        assert!((4_500..5_500).contains(&refused), "{refused}");
        let none = Faults::new(0.0, Duration::ZERO);
        assert!(!(0..1_000).any(|_| none.refuse_next()));
    }
}
