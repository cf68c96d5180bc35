//! `wasmsink guest check` and `wasmsink guest run`: what a guest author needs
//! to know about a component, without Kafka or a network.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use super::bindings::{
    AttemptInfo, AttemptOutcome, Header, HttpResponse, KafkaRecord, RecordRef, RetryDecision,
    TimestampType, TransformOutcome,
};
use super::{GuestEngine, GuestError, GuestLimits, GuestPlan, check_component_bytes};
use crate::config::{CallbackConfig, GuestSettings};
use crate::sink::HttpSink;

/// The contract version this host implements.
pub const CONTRACT: &str = "wasmsink:plugin@0.1.0";
const TRANSFORMER: &str = "wasmsink:plugin/transformer";
const RETRY_POLICY: &str = "wasmsink:plugin/retry-policy";
const LIFECYCLE: &str = "wasmsink:plugin/lifecycle";

/// Checks a `.wasm` file against the contract; the report on success, an
/// explanation of every problem found otherwise.
pub async fn check(
    engine: &GuestEngine,
    path: &Path,
    config: &[(String, String)],
) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    check_component_bytes(&bytes).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let component = engine.compile(&bytes).map_err(|e| e.to_string())?;
    let compile_ms = started.elapsed().as_millis();
    let exports = engine.export_names(&component);
    let imports = engine.import_names(&component);

    let ours: Vec<&String> = exports
        .iter()
        .filter(|e| e.starts_with("wasmsink:plugin/"))
        .collect();
    let version_of = |name: &str| name.split_once('@').map(|(_, v)| v.to_owned());
    let wrong: Vec<&&String> = ours
        .iter()
        .filter(|e| version_of(e).as_deref() != Some("0.1.0"))
        .collect();
    if !wrong.is_empty() {
        return Err(format!(
            "the guest targets another contract version: it exports {}; this wasmsink implements {CONTRACT}",
            wrong
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let has = |interface: &str| ours.iter().any(|e| e.starts_with(interface));
    let (transform, decide, lifecycle) = (has(TRANSFORMER), has(RETRY_POLICY), has(LIFECYCLE));
    if !transform && !decide {
        return Err(format!(
            "missing export: a guest exports {TRANSFORMER}@0.1.0, {RETRY_POLICY}@0.1.0 or both (with {LIFECYCLE}@0.1.0); \
             this component exports: {}",
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            }
        ));
    }
    if !lifecycle {
        return Err(format!(
            "missing export: {LIFECYCLE}@0.1.0 (init) is required"
        ));
    }
    let settings = GuestSettings {
        path: Some(path.to_owned()),
        config: config.to_vec(),
        ..GuestSettings::default()
    };
    let plan = GuestPlan::prepare(engine, "guest-check", &settings, Vec::new())
        .await
        .map_err(|e| explain(&e))?;
    plan.dry_run().await.map_err(|e| explain(&e))?;

    let mut report = String::new();
    let _ = writeln!(report, "OK: {} is a {CONTRACT} guest", path.display());
    let _ = writeln!(
        report,
        "  size:      {} bytes (compiled in {compile_ms} ms)",
        bytes.len()
    );
    let _ = writeln!(
        report,
        "  transform: {}",
        if transform {
            "yes"
        } else {
            "no (the built-in transform sends the value unchanged)"
        }
    );
    let _ = writeln!(
        report,
        "  decide:    {}",
        if decide {
            "yes"
        } else {
            "no (the built-in retry-flag strategies decide)"
        }
    );
    let _ = writeln!(
        report,
        "  init:      accepted {} config key(s)",
        config.len()
    );
    let _ = writeln!(report, "  imports:   {}", imports.join(", "));
    Ok(report)
}

/// Adds what to do about a load error.
fn explain(error: &GuestError) -> String {
    match error {
        GuestError::Contract(message)
            if message.contains("matching implementation was not found") =>
        {
            format!(
                "{error}\n  hint: wasmsink gives guests WASI clocks, random, stdio and an empty filesystem, plus \
             {CONTRACT}'s logging; sockets and HTTP are not available to guests"
            )
        }
        _ => error.to_string(),
    }
}

/// A record given on the command line as JSON: `{"topic":"t","partition":0,
/// "offset":0,"timestamp":1700000000000,"key":"k","value":<any JSON>,
/// "headers":{"name":"value"}}`. A string value is sent as its text, any
/// other JSON as its serialization, `null` as a tombstone.
pub fn record_from_json(text: &str) -> Result<KafkaRecord, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("--record is not JSON: {e}"))?;
    let object = json.as_object().ok_or("--record must be a JSON object")?;
    let bytes = |value: Option<&serde_json::Value>| match value {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone().into_bytes()),
        Some(other) => Some(other.to_string().into_bytes()),
    };
    let headers = match object.get("headers") {
        None => Vec::new(),
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| Header {
                key: k.clone(),
                value: bytes(Some(v)),
            })
            .collect(),
        Some(_) => return Err("--record headers must be an object of name: value".into()),
    };
    let timestamp = object.get("timestamp").and_then(serde_json::Value::as_i64);
    Ok(KafkaRecord {
        topic: object
            .get("topic")
            .and_then(|t| t.as_str())
            .unwrap_or("topic")
            .to_owned(),
        partition: object
            .get("partition")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0) as i32,
        offset: object
            .get("offset")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0),
        timestamp_ms: timestamp.unwrap_or(-1),
        timestamp_type: if timestamp.is_some() {
            TimestampType::CreateTime
        } else {
            TimestampType::NotAvailable
        },
        key: bytes(object.get("key")),
        value: bytes(object.get("value")),
        headers,
    })
}

/// Runs a guest on one record: prints the request it would send and, given
/// a response, its decision for the first attempt.
pub async fn run(
    engine: &GuestEngine,
    path: &Path,
    config: &[(String, String)],
    record: &KafkaRecord,
    callback: &CallbackConfig,
    response: Option<(u16, String)>,
) -> Result<String, String> {
    let settings = GuestSettings {
        path: Some(path.to_owned()),
        config: config.to_vec(),
        limits: GuestLimits::default(),
        ..GuestSettings::default()
    };
    let plan = GuestPlan::prepare(engine, "guest-run", &settings, Vec::new())
        .await
        .map_err(|e| explain(&e))?;
    let mut guests = plan.lane();
    let mut out = String::new();
    let request = match guests.transform(record).await.map_err(|e| e.to_string())? {
        TransformOutcome::Deliver(request) => request,
        TransformOutcome::Skip => {
            return Ok("transform: skip (nothing is sent; the record counts as finished)\n".into());
        }
        TransformOutcome::Error(error) => {
            return Ok(format!(
                "transform: error ({:?}): {}\n",
                error.kind, error.message
            ));
        }
    };
    // Nothing is sent: the default egress policy is never consulted.
    let sink = HttpSink::new(callback, Default::default()).map_err(|e| e.to_string())?;
    let prepared = sink
        .prepare(request)
        .map_err(|e| format!("the guest's request is invalid: {e}"))?;
    let _ = writeln!(
        out,
        "{} {} HTTP/1.1",
        prepared.method(),
        prepared.path_and_query()
    );
    for (name, value) in &prepared.headers("guest-run", record) {
        let _ = writeln!(out, "{name}: {}", value.to_str().unwrap_or("<binary>"));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", String::from_utf8_lossy(prepared.body()));
    if let Some((status, body)) = response {
        let outcome = AttemptOutcome::Response(HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into_bytes(),
            body_truncated: false,
        });
        let reference = RecordRef {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        };
        let decision = guests
            .decide(
                &reference,
                &outcome,
                AttemptInfo {
                    attempt: 1,
                    elapsed_ms: 0,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "decide (attempt 1, HTTP {status}): {}",
            describe(&decision)
        );
    }
    Ok(out)
}

fn describe(decision: &RetryDecision) -> String {
    match decision {
        RetryDecision::Accept => "accept (delivered)".into(),
        RetryDecision::RetryAfter(ms) => format!("retry after {ms} ms"),
        RetryDecision::Drop(reason) => format!("drop: {reason}"),
        RetryDecision::DeadLetter(reason) => format!("dead-letter: {reason}"),
        RetryDecision::Stop(reason) => format!("stop the connector: {reason}"),
    }
}
