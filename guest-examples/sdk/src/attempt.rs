//! What `decide` sees: one delivery attempt and its outcome.

use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Identity of the record an attempt was made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRef {
    /// Topic of the record.
    pub topic: String,
    /// Partition of the record.
    pub partition: i32,
    /// Offset of the record.
    pub offset: i64,
}

/// The HTTP response the callback sent back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code; redirects (3xx) are not followed and arrive as is.
    pub status: u16,
    /// Headers as (name, value) pairs; the host lower-cases the names.
    pub headers: Vec<(String, String)>,
    /// Body, cut at the host's cap (64 KiB).
    pub body: Vec<u8>,
    /// True when the body was longer than the cap and has been cut.
    pub body_truncated: bool,
}

/// Why no response arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// The connection could not be made (refused, unreachable).
    Connect,
    /// The host name could not be resolved.
    Dns,
    /// The TLS handshake failed.
    Tls,
    /// The connect or read timeout expired.
    Timeout,
    /// The connection broke after the request was sent.
    Io,
}

/// A failure below HTTP, with the underlying error's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    /// Which kind of failure.
    pub kind: TransportErrorKind,
    /// The error's text (never contains header values).
    pub message: String,
}

/// The outcome of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The callback answered.
    Response(Response),
    /// No answer arrived.
    Transport(TransportError),
}

/// One delivery attempt of a record: which record, which attempt, and what
/// happened. `decide` is called after every attempt, 2xx included.
///
/// ```
/// use std::time::Duration;
/// use wasmsink_guest::Attempt;
///
/// let attempt = Attempt::new_response(2, 429, r#"{"error":"slow down"}"#)
///     .with_header("Retry-After", "7");
/// assert_eq!(attempt.number(), 2);
/// assert_eq!(attempt.status(), Some(429));
/// assert_eq!(attempt.retry_after(), Some(Duration::from_secs(7)));
/// let body: serde_json::Value = attempt.json().unwrap();
/// assert_eq!(body["error"], "slow down");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The record the attempt was for.
    pub record: RecordRef,
    /// 1 for the first attempt of the record, 2 for the first retry, and so on.
    pub number: u32,
    /// Time since the first attempt of this record started.
    pub elapsed: Duration,
    /// What happened.
    pub outcome: Outcome,
}

impl Attempt {
    /// An attempt that got a response (for tests): record `test/0@0`, no
    /// headers, `elapsed` zero.
    pub fn new_response(number: u32, status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::with_outcome(
            number,
            Outcome::Response(Response {
                status,
                headers: Vec::new(),
                body: body.into(),
                body_truncated: false,
            }),
        )
    }

    /// An attempt that failed below HTTP (for tests): record `test/0@0`.
    pub fn new_transport(
        number: u32,
        kind: TransportErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self::with_outcome(
            number,
            Outcome::Transport(TransportError {
                kind,
                message: message.into(),
            }),
        )
    }

    fn with_outcome(number: u32, outcome: Outcome) -> Self {
        Attempt {
            record: RecordRef {
                topic: "test".into(),
                partition: 0,
                offset: 0,
            },
            number,
            elapsed: Duration::ZERO,
            outcome,
        }
    }

    /// Adds a response header (for tests); the name is lower-cased as the host does.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        if let Outcome::Response(response) = &mut self.outcome {
            response
                .headers
                .push((name.to_ascii_lowercase(), value.into()));
        }
        self
    }

    /// 1 for the first attempt of the record, 2 for the first retry, and so on.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Time since the first attempt of this record started.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The record the attempt was for.
    pub fn record(&self) -> &RecordRef {
        &self.record
    }

    /// What happened.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The response, or `None` after a transport error.
    pub fn response(&self) -> Option<&Response> {
        match &self.outcome {
            Outcome::Response(response) => Some(response),
            Outcome::Transport(_) => None,
        }
    }

    /// The transport error, or `None` when a response arrived.
    pub fn transport_error(&self) -> Option<&TransportError> {
        match &self.outcome {
            Outcome::Transport(error) => Some(error),
            Outcome::Response(_) => None,
        }
    }

    /// The response status, or `None` after a transport error.
    pub fn status(&self) -> Option<u16> {
        self.response().map(|r| r.status)
    }

    /// True for a 2xx response.
    pub fn is_success(&self) -> bool {
        self.status().is_some_and(|s| (200..300).contains(&s))
    }

    /// The first response header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response()?
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response body (empty after a transport error).
    pub fn body(&self) -> &[u8] {
        self.response().map_or(&[], |r| r.body.as_slice())
    }

    /// Parses the response body as JSON into `T`. Fails after a transport
    /// error, and when the body was cut at the host's cap.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        let response = self.response().ok_or_else(|| {
            Error::invalid_record("no response body: the attempt failed below HTTP")
        })?;
        if response.body_truncated {
            return Err(Error::invalid_record(
                "the response body was cut at the host's cap and is not complete JSON",
            ));
        }
        serde_json::from_slice(&response.body).map_err(|e| {
            Error::invalid_record(format!("response body is not the expected JSON: {e}"))
        })
    }

    /// The wait the server asked for in `Retry-After` (delta-seconds or an
    /// HTTP-date; a date in the past is zero), or `None` when there is no
    /// valid header.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_at(SystemTime::now())
    }

    /// [`Attempt::retry_after`], with HTTP-dates measured from `now`.
    pub fn retry_after_at(&self, now: SystemTime) -> Option<Duration> {
        parse_retry_after(self.header("retry-after")?, now)
    }
}

/// Parses a `Retry-After` value: delta-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, also the obsolete RFC 850 and asctime
/// forms), the date measured from `now` and a past date read as zero.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Longer digit strings than u64 holds are a very long wait.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let at = |v: &str| parse_retry_after(v, now);
        assert_eq!(at(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(
            at("Wed, 21 Oct 2015 07:29:30 GMT"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            at("Wednesday, 21-Oct-15 07:28:10 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(at("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("-5"), None);
        assert_eq!(at("1.5"), None);
        assert_eq!(at(""), None);
        assert_eq!(
            at("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn accessors_cover_both_outcomes() {
        let ok = Attempt::new_response(1, 204, "").with_header("X-Id", "a");
        assert!(ok.is_success());
        assert_eq!(ok.header("x-id"), Some("a"));
        assert!(ok.transport_error().is_none());

        let failed = Attempt::new_transport(3, TransportErrorKind::Timeout, "read timed out");
        assert!(!failed.is_success());
        assert_eq!(failed.status(), None);
        assert_eq!(failed.body(), b"");
        assert_eq!(failed.header("retry-after"), None);
        assert_eq!(
            failed.transport_error().unwrap().kind,
            TransportErrorKind::Timeout
        );
        assert!(failed.json::<serde_json::Value>().is_err());
    }

    #[test]
    fn truncated_bodies_are_not_parsed() {
        let mut attempt = Attempt::new_response(1, 200, "{}");
        if let Outcome::Response(r) = &mut attempt.outcome {
            r.body_truncated = true;
        }
        assert!(
            attempt
                .json::<serde_json::Value>()
                .unwrap_err()
                .message()
                .contains("cap")
        );
    }
}
