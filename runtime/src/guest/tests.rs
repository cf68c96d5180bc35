//! The built-in guest run through wasmtime, checked against the native policy.

use super::*;
use crate::guest::bindings::{HttpResponse, TimestampType, TransportError, TransportErrorKind};
use wasmsink_policy::{Decision, Outcome, StrategyConfig};

fn record(value: Option<&[u8]>) -> KafkaRecord {
    KafkaRecord {
        topic: "orders".into(),
        partition: 2,
        offset: 41,
        timestamp_ms: 1_700_000_000_000,
        timestamp_type: TimestampType::CreateTime,
        key: Some(b"k".to_vec()),
        value: value.map(<[u8]>::to_vec),
        headers: vec![],
    }
}

async fn builtin(config: &[(&str, &str)]) -> GuestInstance {
    let engine = GuestEngine::new().expect("engine");
    let pairs = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let prepared = engine
        .prepare_builtin("test", pairs, GuestLimits::default())
        .expect("prepare");
    assert!(prepared.exports_transform() && prepared.exports_decide());
    prepared.instantiate().await.expect("instantiate")
}

#[tokio::test]
async fn builtin_transform_sends_the_value_unchanged() {
    let mut guest = builtin(&[]).await;
    let TransformOutcome::Deliver(request) =
        guest.transform(&record(Some(b"{\"a\":1}"))).await.unwrap()
    else {
        panic!("expected deliver");
    };
    assert_eq!(request.body, b"{\"a\":1}");
    assert_eq!(request.method, None);
    assert_eq!(request.path_and_query, None);
    assert!(request.headers.is_empty());
    let TransformOutcome::Deliver(empty) = guest.transform(&record(None)).await.unwrap() else {
        panic!("expected deliver");
    };
    assert!(empty.body.is_empty());
}

#[tokio::test]
async fn builtin_init_refuses_a_bad_strategy() {
    let engine = GuestEngine::new().unwrap();
    let prepared = engine
        .prepare_builtin(
            "test",
            vec![("exception.strategy".into(), "SOMETIMES".into())],
            GuestLimits::default(),
        )
        .unwrap();
    let err = prepared.instantiate().await.err().expect("init must fail");
    assert!(
        matches!(&err, GuestError::InitRefused(m) if m.contains("exception.strategy")),
        "{err}"
    );
}

/// The guest and the native policy must agree on every (strategy, outcome, attempt).
#[tokio::test]
async fn builtin_decide_matches_the_native_policy() {
    let bodies: &[&[u8]] = &[
        b"{\"retry\":false}",
        b"{\"retry\":true}",
        b"",
        b"ok",
        b"{\"retry\":\"TRUE\"}",
    ];
    let statuses = [200u16, 201, 204, 302, 400, 401, 404, 429, 500, 502, 503];
    for strategy in [
        "PROGRESS_BACK_OFF_DROP_MESSAGE",
        "PROGRESS_BACK_OFF_STOP_TASK",
        "DROP_MESSAGE",
        "STOP_TASK",
    ] {
        for success_on_2xx in ["false", "true"] {
            let config = [
                ("exception.strategy", strategy),
                ("retry.backoff.sec", "0.2,1,3"),
                ("callback.success.on.2xx", success_on_2xx),
            ];
            let native = StrategyConfig::from_pairs(config.iter().copied()).unwrap();
            let mut guest = builtin(&config).await;
            let rec = RecordRef {
                topic: "orders".into(),
                partition: 0,
                offset: 7,
            };
            for attempt in 1..=5u32 {
                let info = AttemptInfo {
                    attempt,
                    elapsed_ms: 0,
                };
                for status in statuses {
                    for body in bodies {
                        let outcome = AttemptOutcome::Response(HttpResponse {
                            status,
                            headers: vec![],
                            body: body.to_vec(),
                            body_truncated: false,
                        });
                        let expected = wasmsink_policy::decide(
                            &native,
                            &Outcome::Response { status, body },
                            attempt,
                        );
                        let got = guest.decide(&rec, &outcome, info).await.unwrap();
                        assert_same(
                            &expected,
                            &got,
                            &format!(
                                "{strategy} 2xx={success_on_2xx} #{attempt} {status} {body:?}"
                            ),
                        );
                    }
                }
                let transport = AttemptOutcome::Transport(TransportError {
                    kind: TransportErrorKind::Connect,
                    message: "connection refused".into(),
                });
                let got = guest.decide(&rec, &transport, info).await.unwrap();
                let expected = wasmsink_policy::decide(
                    &native,
                    &Outcome::Transport {
                        description: "connect: connection refused",
                    },
                    attempt,
                );
                assert_same(&expected, &got, &format!("{strategy} transport #{attempt}"));
            }
        }
    }
}

fn assert_same(expected: &Decision, got: &RetryDecision, case: &str) {
    let same = match (expected, got) {
        (Decision::Accept, RetryDecision::Accept) => true,
        (Decision::RetryAfterMs(a), RetryDecision::RetryAfter(b)) => a == b,
        (Decision::Drop(a), RetryDecision::Drop(b))
        | (Decision::Stop(a), RetryDecision::Stop(b)) => a == b,
        _ => false,
    };
    assert!(same, "{case}: native {expected:?} vs guest {got:?}");
}
