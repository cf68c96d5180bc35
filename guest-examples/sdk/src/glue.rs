//! Conversions between the generated WIT types and the SDK's types, and the
//! functions the export macros call. Not public API: use the macros.

use std::cell::RefCell;
use std::thread::LocalKey;
use std::time::Duration;

use crate::bindings::transformer::wasmsink::plugin::types as wit;
use crate::{
    Action, Attempt, Config, Decide, Decision, Error, ErrorKind, Guest, Method, Outcome, Record,
    RecordRef, Response, Timestamp, TimestampKind, Transform, TransportError, TransportErrorKind,
};

/// Where an export macro keeps the guest value that `init` built.
pub type State<T> = LocalKey<RefCell<Option<T>>>;

/// The `lifecycle.init` export.
pub fn init<T: Guest>(
    state: &'static State<T>,
    config: Vec<(String, String)>,
) -> Result<(), String> {
    let guest = T::init(&Config::from_pairs(config)).map_err(|e| e.to_string())?;
    state.with(|slot| *slot.borrow_mut() = Some(guest));
    Ok(())
}

/// The `transformer.transform` export.
pub fn transform<T: Transform>(
    state: &'static State<T>,
    rec: wit::KafkaRecord,
) -> wit::TransformOutcome {
    let record = record(rec);
    let result = state.with(|slot| match slot.borrow_mut().as_mut() {
        Some(guest) => guest.transform(record),
        None => Err(Error::fatal("transform was called before init")),
    });
    match result {
        Ok(Action::Deliver(request)) => wit::TransformOutcome::Deliver(wit::OutboundRequest {
            method: request.method.map(method),
            path_and_query: request.path_and_query,
            headers: request.headers,
            body: request.body,
        }),
        Ok(Action::Skip) => wit::TransformOutcome::Skip,
        Err(error) => wit::TransformOutcome::Error(wit::TransformError {
            kind: match error.kind() {
                ErrorKind::InvalidRecord => wit::ErrorKind::InvalidRecord,
                ErrorKind::Fatal => wit::ErrorKind::Fatal,
            },
            message: error.to_string(),
        }),
    }
}

/// The `retry-policy.decide` export.
pub fn decide<T: Decide>(
    state: &'static State<T>,
    rec: wit::RecordRef,
    outcome: wit::AttemptOutcome,
    info: wit::AttemptInfo,
) -> wit::RetryDecision {
    let attempt = attempt(rec, outcome, info);
    let decision = state.with(|slot| match slot.borrow_mut().as_mut() {
        Some(guest) => guest.decide(attempt),
        None => Decision::Stop("decide was called before init".into()),
    });
    match decision {
        Decision::Accept => wit::RetryDecision::Accept,
        Decision::RetryAfter(delay) => wit::RetryDecision::RetryAfter(Decision::millis(delay)),
        Decision::Drop(reason) => wit::RetryDecision::Drop(reason),
        Decision::DeadLetter(reason) => wit::RetryDecision::DeadLetter(reason),
        Decision::Stop(reason) => wit::RetryDecision::Stop(reason),
    }
}

fn record(rec: wit::KafkaRecord) -> Record {
    let kind = match rec.timestamp_type {
        wit::TimestampType::CreateTime => Some(TimestampKind::CreateTime),
        wit::TimestampType::LogAppendTime => Some(TimestampKind::LogAppendTime),
        wit::TimestampType::NotAvailable => None,
    };
    Record {
        topic: rec.topic,
        partition: rec.partition,
        offset: rec.offset,
        timestamp: kind.map(|kind| Timestamp {
            millis: rec.timestamp_ms,
            kind,
        }),
        key: rec.key,
        value: rec.value,
        headers: rec.headers.into_iter().map(|h| (h.key, h.value)).collect(),
    }
}

fn method(method: Method) -> wit::HttpMethod {
    match method {
        Method::Get => wit::HttpMethod::Get,
        Method::Post => wit::HttpMethod::Post,
        Method::Put => wit::HttpMethod::Put,
        Method::Patch => wit::HttpMethod::Patch,
        Method::Delete => wit::HttpMethod::Delete,
    }
}

fn attempt(rec: wit::RecordRef, outcome: wit::AttemptOutcome, info: wit::AttemptInfo) -> Attempt {
    Attempt {
        record: RecordRef {
            topic: rec.topic,
            partition: rec.partition,
            offset: rec.offset,
        },
        number: info.attempt,
        elapsed: Duration::from_millis(info.elapsed_ms),
        outcome: match outcome {
            wit::AttemptOutcome::Response(r) => Outcome::Response(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
                body_truncated: r.body_truncated,
            }),
            wit::AttemptOutcome::Transport(e) => Outcome::Transport(TransportError {
                kind: match e.kind {
                    wit::TransportErrorKind::Connect => TransportErrorKind::Connect,
                    wit::TransportErrorKind::Dns => TransportErrorKind::Dns,
                    wit::TransportErrorKind::Tls => TransportErrorKind::Tls,
                    wit::TransportErrorKind::Timeout => TransportErrorKind::Timeout,
                    wit::TransportErrorKind::Io => TransportErrorKind::Io,
                },
                message: e.message,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, Result};

    /// Counts calls, to check that state survives between calls.
    struct Counter(u32);
    impl Guest for Counter {
        fn init(config: &Config) -> Result<Self> {
            Ok(Counter(config.parse_or("start", 0)?))
        }
    }
    impl Transform for Counter {
        fn transform(&mut self, record: Record) -> Result<Action> {
            self.0 += 1;
            match record.value_str().as_deref() {
                Some("skip") => Ok(Action::Skip),
                Some("bad") => Err(Error::invalid_record("bad value")),
                _ => Ok(Request::deliver()
                    .method(Method::Patch)
                    .path(format!("/{}", self.0))
                    .body(record.into_value())
                    .into()),
            }
        }
    }
    impl Decide for Counter {
        fn decide(&mut self, attempt: Attempt) -> Decision {
            match attempt.outcome {
                Outcome::Transport(e) => Decision::Stop(e.message),
                Outcome::Response(_) => Decision::RetryAfter(attempt.elapsed * attempt.number),
            }
        }
    }

    std::thread_local! {
        static STATE: RefCell<Option<Counter>> = const { RefCell::new(None) };
    }

    fn kafka_record(value: &str) -> wit::KafkaRecord {
        wit::KafkaRecord {
            topic: "t".into(),
            partition: 1,
            offset: 2,
            timestamp_ms: -1,
            timestamp_type: wit::TimestampType::NotAvailable,
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: vec![wit::Header {
                key: "h".into(),
                value: None,
            }],
        }
    }

    #[test]
    fn exports_use_the_state_built_by_init() {
        let before = transform(&STATE, kafka_record("x"));
        assert!(matches!(
            before,
            wit::TransformOutcome::Error(wit::TransformError {
                kind: wit::ErrorKind::Fatal,
                ..
            })
        ));
        assert_eq!(
            init(&STATE, vec![("start".into(), "x".into())]).unwrap_err(),
            "guest.config.start = \"x\": expected a whole number, 0 or more: invalid digit found in string"
        );
        init(&STATE, vec![("start".into(), "10".into())]).unwrap();
        match transform(&STATE, kafka_record("v")) {
            wit::TransformOutcome::Deliver(request) => {
                assert_eq!(request.method, Some(wit::HttpMethod::Patch));
                assert_eq!(request.path_and_query.as_deref(), Some("/11"));
                assert_eq!(request.body, b"v");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            transform(&STATE, kafka_record("skip")),
            wit::TransformOutcome::Skip
        ));
        match transform(&STATE, kafka_record("bad")) {
            wit::TransformOutcome::Error(e) => {
                assert_eq!(e.kind, wit::ErrorKind::InvalidRecord);
                assert_eq!(e.message, "bad value");
            }
            other => panic!("unexpected {other:?}"),
        }

        let rec = || wit::RecordRef {
            topic: "t".into(),
            partition: 1,
            offset: 2,
        };
        let info = wit::AttemptInfo {
            attempt: 3,
            elapsed_ms: 100,
        };
        let response = wit::AttemptOutcome::Response(wit::HttpResponse {
            status: 500,
            headers: vec![],
            body: vec![],
            body_truncated: false,
        });
        assert!(matches!(
            decide(&STATE, rec(), response, info),
            wit::RetryDecision::RetryAfter(300)
        ));
        let transport = wit::AttemptOutcome::Transport(wit::TransportError {
            kind: wit::TransportErrorKind::Dns,
            message: "no such host".into(),
        });
        assert!(matches!(
            decide(&STATE, rec(), transport, info),
            wit::RetryDecision::Stop(reason) if reason == "no such host"
        ));
    }

    #[test]
    fn records_convert_with_timestamps_and_null_headers() {
        let mut rec = kafka_record("v");
        rec.timestamp_ms = 5;
        rec.timestamp_type = wit::TimestampType::LogAppendTime;
        let record = record(rec);
        assert_eq!(
            record.timestamp(),
            Some(Timestamp {
                millis: 5,
                kind: TimestampKind::LogAppendTime
            })
        );
        assert_eq!(record.headers, vec![("h".to_string(), None)]);
        assert_eq!(record.partition(), 1);
    }
}
