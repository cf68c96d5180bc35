//! The cost of guest calls per record: `cargo bench -p wasmsink --bench guest_calls`.
//!
//! For 1 KiB values it reports, in nanoseconds per record (median of
//! several rounds, so the figure is robust on a shared machine):
//! * transform + decide on a warm instance of the built-in guest, next to a
//!   native call of the same logic (`wasmsink_policy::decide` and a copy of
//!   the value);
//! * the same for the JSON-envelope example guest, next to the same
//!   envelope written natively (the value checked as JSON, its text copied);
//! * a fresh instance per record (instantiate + init + transform + decide),
//!   to show what instance reuse saves.
//!
//! This is a benchmark, not a test: it prints figures and ratios and
//! asserts nothing about speed.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use wasmsink::config::GuestSettings;
use wasmsink::guest::bindings::{
    AttemptInfo, AttemptOutcome, HttpResponse, KafkaRecord, RecordRef, TimestampType,
};
use wasmsink::guest::{GuestEngine, GuestPlan, LaneGuests};
use wasmsink_policy::{Outcome, StrategyConfig};

const ROUNDS: usize = 7;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

fn record() -> KafkaRecord {
    let mut value = br#"{"id":42,"customer":"c-17","items":["#.to_vec();
    while value.len() < 980 {
        value.extend_from_slice(br#"{"sku":"A-1","qty":1},"#);
    }
    value.extend_from_slice(br#"{"sku":"Z","qty":0}]}"#);
    assert!(value.len() <= 1024, "the sample value must fit in 1 KiB");
    value.resize(1024, b' ');
    KafkaRecord {
        topic: "orders".into(),
        partition: 3,
        offset: 1_000_000,
        timestamp_ms: 1_700_000_000_000,
        timestamp_type: TimestampType::CreateTime,
        key: Some(b"c-17".to_vec()),
        value: Some(value),
        headers: vec![],
    }
}

fn ok() -> AttemptOutcome {
    AttemptOutcome::Response(HttpResponse {
        status: 200,
        headers: vec![],
        body: br#"{"retry":false}"#.to_vec(),
        body_truncated: false,
    })
}

/// Median nanoseconds per iteration of `$body` over `ROUNDS` rounds of `$n`.
macro_rules! measure {
    ($n:expr, $body:expr) => {{
        let n: u32 = $n;
        let mut rounds = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let started = Instant::now();
            for _ in 0..n {
                $body;
            }
            rounds.push(started.elapsed().as_nanos() as f64 / f64::from(n));
        }
        rounds.sort_by(f64::total_cmp);
        rounds[ROUNDS / 2]
    }};
}

async fn plan(engine: &GuestEngine, path: Option<&str>) -> GuestPlan {
    let settings = GuestSettings {
        path: path.map(|p| Path::new(p).to_owned()),
        ..GuestSettings::default()
    };
    let plan = GuestPlan::prepare(engine, "bench", &settings, Vec::new())
        .await
        .unwrap();
    plan.dry_run().await.unwrap();
    plan
}

async fn warm_calls(guests: &mut LaneGuests, record: &KafkaRecord) {
    let reference = RecordRef {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
    };
    black_box(guests.transform(record).await.unwrap());
    black_box(
        guests
            .decide(
                &reference,
                &ok(),
                AttemptInfo {
                    attempt: 1,
                    elapsed_ms: 0,
                },
            )
            .await
            .unwrap(),
    );
}

async fn run() {
    let engine = GuestEngine::new().unwrap();
    let record = record();
    let strategy = StrategyConfig::default();

    let native_builtin = measure!(200_000, {
        black_box(record.value.clone());
        black_box(wasmsink_policy::decide(
            &strategy,
            &Outcome::Response {
                status: 200,
                body: br#"{"retry":false}"#,
            },
            1,
        ));
    });
    let builtin = plan(&engine, None).await;
    let mut lane = builtin.lane();
    let wasm_builtin = measure!(50_000, warm_calls(&mut lane, &record).await);

    let native_envelope = measure!(100_000, {
        black_box(native_envelope(&record));
        black_box(wasmsink_policy::decide(
            &strategy,
            &Outcome::Response {
                status: 200,
                body: br#"{"retry":false}"#,
            },
            1,
        ));
    });
    let envelope = plan(&engine, Some(wasmsink_guest_artifacts::JSON_ENVELOPE)).await;
    let mut lane = envelope.lane();
    let wasm_envelope = measure!(20_000, warm_calls(&mut lane, &record).await);

    let fresh_builtin = measure!(2_000, {
        let mut lane = builtin.lane();
        warm_calls(&mut lane, &record).await;
    });

    println!(
        "guest calls per record, 1 KiB value (median of {ROUNDS} rounds; pooling allocator: {})",
        engine.pooling()
    );
    println!(
        "  built-in guest, warm instance:  {wasm_builtin:>9.0} ns   native same logic: {native_builtin:>7.0} ns   ratio {:.1}x",
        wasm_builtin / native_builtin
    );
    println!(
        "  json-envelope guest, warm:      {wasm_envelope:>9.0} ns   native same logic: {native_envelope:>7.0} ns   ratio {:.1}x",
        wasm_envelope / native_envelope
    );
    println!(
        "  built-in guest, fresh instance: {fresh_builtin:>9.0} ns   reuse is {:.1}x cheaper",
        fresh_builtin / wasm_builtin
    );
}

/// The JSON-envelope guest's body, natively: the value is checked as JSON
/// without building it and its text copied, the other fields written by
/// serde_json.
fn native_envelope(record: &KafkaRecord) -> Vec<u8> {
    let value = record.value.as_deref().unwrap_or_default();
    let mut body = Vec::with_capacity(128 + value.len());
    body.extend_from_slice(b"{\"topic\":");
    serde_json::to_writer(&mut body, &record.topic).unwrap();
    body.extend_from_slice(
        format!(
            ",\"partition\":{},\"offset\":{},\"key\":\"c-17\",\"timestamp\":{},\"data\":",
            record.partition, record.offset, record.timestamp_ms
        )
        .as_bytes(),
    );
    let valid = std::str::from_utf8(value).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(value).is_ok();
    assert!(valid, "the benchmark's value is JSON");
    body.extend_from_slice(value);
    body.push(b'}');
    body
}
