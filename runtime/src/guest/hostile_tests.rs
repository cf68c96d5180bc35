//! Deliberately hostile guests: every misbehaviour ends as a clear error,
//! and the lane goes on with a fresh instance.

use std::path::Path;
use std::time::{Duration, Instant};

use super::bindings::{
    AttemptInfo, AttemptOutcome, HttpResponse, KafkaRecord, RecordRef, TimestampType,
    TransformOutcome,
};
use super::*;
use crate::config::GuestSettings;

fn record(value: &str) -> KafkaRecord {
    KafkaRecord {
        topic: "t".into(),
        partition: 0,
        offset: 7,
        timestamp_ms: -1,
        timestamp_type: TimestampType::NotAvailable,
        key: None,
        value: Some(value.as_bytes().to_vec()),
        headers: vec![],
    }
}

async fn hostile(limits: GuestLimits, config: &[(&str, &str)]) -> Result<LaneGuests, GuestError> {
    hostile_on(&GuestEngine::new().unwrap(), limits, config).await
}

async fn hostile_on(
    engine: &GuestEngine,
    limits: GuestLimits,
    config: &[(&str, &str)],
) -> Result<LaneGuests, GuestError> {
    let settings = GuestSettings {
        path: Some(Path::new(wasmsink_guest_artifacts::TEST_GUESTS).to_owned()),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        limits,
        ..GuestSettings::default()
    };
    let plan = GuestPlan::prepare(engine, "hostile", &settings, Vec::new()).await?;
    plan.dry_run().await?;
    Ok(plan.lane())
}

fn ok_response() -> AttemptOutcome {
    AttemptOutcome::Response(HttpResponse {
        status: 200,
        headers: vec![],
        body: vec![],
        body_truncated: false,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ticker_sleeps_while_idle_and_still_interrupts_a_loop_at_once() {
    let engine = GuestEngine::new().unwrap();
    let mut guests = hostile_on(&engine, GuestLimits::default(), &[])
        .await
        .unwrap();
    let waiting = Instant::now();
    while !engine.ticker.sleeping() {
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "the ticker should sleep after about 100 idle ticks"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let error = guests.transform(&record("loop")).await.unwrap_err();
    assert!(
        matches!(
            error,
            GuestError::Timeout {
                call: GuestCall::Transform,
                ..
            }
        ),
        "{error}"
    );
    // A ticker that never woke would leave the loop running for ever; the
    // bound only catches that, not speed. The 100 ms budget is CPU time,
    // paced by 2 ms pauses, and the suite shares 2 cores: 1.8 s was seen.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "interrupted after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_is_interrupted_at_the_deadline() {
    let mut guests = hostile(GuestLimits::default(), &[]).await.unwrap();
    let started = Instant::now();
    let error = guests.transform(&record("loop")).await.unwrap_err();
    assert!(
        matches!(error, GuestError::Timeout { call: GuestCall::Transform, limit } if limit == Duration::from_millis(100)),
        "{error}"
    );
    // A hang check, not a speed check (see the test above).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The poisoned instance is replaced: the next record works.
    assert!(matches!(
        guests.transform(&record("fine")).await.unwrap(),
        TransformOutcome::Deliver(_)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_hits_the_cap_with_an_out_of_memory_error() {
    let limits = GuestLimits {
        max_memory_bytes: 16 << 20,
        ..GuestLimits::default()
    };
    let mut guests = hostile(limits, &[]).await.unwrap();
    let error = guests.transform(&record("alloc")).await.unwrap_err();
    assert!(
        matches!(error, GuestError::OutOfMemory { call: GuestCall::Transform, limit_bytes } if limit_bytes == 16 << 20),
        "{error}"
    );
    assert!(error.to_string().contains("ran out of memory"));
}

/// The cap a connector sets with `guest.memory.max.mb` is the one applied:
/// 12 MiB fits under 16 MiB, 20 MiB does not, and the next call (on a fresh
/// instance) fits again.
#[tokio::test(flavor = "multi_thread")]
async fn the_memory_cap_set_by_the_connector_key_is_the_one_applied() {
    let properties = [
        ("topics", "t"),
        ("callback.request.url", "http://127.0.0.1:9/"),
        ("guest.path", wasmsink_guest_artifacts::TEST_GUESTS),
        ("guest.memory.max.mb", "16"),
        ("guest.timeout.transform.ms", "1000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = crate::config::ConnectorConfig::from_properties("mem", &properties).unwrap();
    let plan = GuestPlan::prepare(
        &GuestEngine::new().unwrap(),
        "mem",
        &config.guest,
        Vec::new(),
    )
    .await
    .unwrap();
    let mut guests = plan.lane();
    guests
        .transform(&record("alloc:12"))
        .await
        .expect("12 MiB fits under a 16 MiB cap");
    let error = guests.transform(&record("alloc:20")).await.unwrap_err();
    assert!(
        matches!(error, GuestError::OutOfMemory { .. }),
        "20 MiB under a 16 MiB cap: {error}"
    );
    guests
        .transform(&record("alloc:12"))
        .await
        .expect("the next call runs on a fresh instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_is_a_trap_that_carries_the_panic_message() {
    let mut guests = hostile(GuestLimits::default(), &[]).await.unwrap();
    let error = guests.transform(&record("panic")).await.unwrap_err();
    let GuestError::Trap {
        call: GuestCall::Transform,
        message,
    } = &error
    else {
        panic!("{error}")
    };
    assert!(message.contains("panic requested by record"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_output_is_refused() {
    // Filling and lifting 32 MiB takes longer than the default deadline.
    let limits = GuestLimits {
        max_memory_bytes: 256 << 20,
        transform_timeout: Duration::from_secs(10),
        ..GuestLimits::default()
    };
    let mut guests = hostile(limits, &[]).await.unwrap();
    let error = guests.transform(&record("big")).await.unwrap_err();
    assert!(
        matches!(&error, GuestError::OutputTooLarge { call: GuestCall::Transform, what } if what.contains("33554432-byte body")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_a_file_fails_inside_the_sandbox() {
    let mut guests = hostile(GuestLimits::default(), &[]).await.unwrap();
    let TransformOutcome::Error(error) = guests.transform(&record("file")).await.unwrap() else {
        panic!("expected an error")
    };
    assert_eq!(
        error.kind,
        super::bindings::ErrorKind::InvalidRecord,
        "the guest must not be able to read files: {}",
        error.message
    );
    assert!(
        error.message.contains("reading /etc/passwd failed"),
        "{}",
        error.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn decide_misbehaviour_is_caught_too() {
    let mut guests = hostile(GuestLimits::default(), &[]).await.unwrap();
    let reference = RecordRef {
        topic: "t".into(),
        partition: 0,
        offset: 7,
    };
    let info = AttemptInfo {
        attempt: 1,
        elapsed_ms: 0,
    };
    let body = |text: &str| {
        AttemptOutcome::Response(HttpResponse {
            status: 200,
            headers: vec![],
            body: text.into(),
            body_truncated: false,
        })
    };
    let looping = guests
        .decide(&reference, &body("decide-loop"), info)
        .await
        .unwrap_err();
    assert!(
        matches!(
            looping,
            GuestError::Timeout {
                call: GuestCall::Decide,
                ..
            }
        ),
        "{looping}"
    );
    let panicking = guests
        .decide(&reference, &body("decide-panic"), info)
        .await
        .unwrap_err();
    assert!(
        matches!(
            panicking,
            GuestError::Trap {
                call: GuestCall::Decide,
                ..
            }
        ),
        "{panicking}"
    );
    assert!(
        guests
            .decide(&reference, &ok_response(), info)
            .await
            .is_ok(),
        "a fresh instance decides again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_failure_rejects_the_guest_with_its_message() {
    let error = hostile(GuestLimits::default(), &[("fail", "no secret configured")])
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&error, GuestError::InitRefused(message) if message.contains("no secret configured")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_config_reaches_init() {
    let mut guests = hostile(GuestLimits::default(), &[("a", "1"), ("b", "two")])
        .await
        .unwrap();
    let TransformOutcome::Deliver(request) = guests.transform(&record("config")).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(
        String::from_utf8(request.body).unwrap(),
        r#"[["a","1"],["b","two"]]"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_core_module_or_garbage_is_refused_with_an_explanation() {
    let core = check_component_bytes(b"\0asm\x01\0\0\0")
        .unwrap_err()
        .to_string();
    assert!(
        core.contains("core WebAssembly module, not a component"),
        "{core}"
    );
    let junk = check_component_bytes(b"hello").unwrap_err().to_string();
    assert!(junk.contains("not a WebAssembly binary"), "{junk}");
    let huge = vec![0u8; MAX_COMPONENT_BYTES + 1];
    assert!(matches!(
        check_component_bytes(&huge),
        Err(GuestError::TooBig(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_guest_passes_guest_check() {
    let engine = GuestEngine::new().unwrap();
    for (name, path) in wasmsink_guest_artifacts::ALL {
        let config: Vec<(String, String)> = match *name {
            "webhook-signing" => vec![(
                "secret".into(),
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            )],
            _ => vec![],
        };
        let report = tool::check(&engine, Path::new(path), &config).await;
        assert!(report.is_ok(), "{name}: {}", report.unwrap_err());
    }
}
