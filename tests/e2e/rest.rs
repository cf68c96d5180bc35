//! The REST API end to end: the seed's own calls, sent verbatim, manage a
//! connector that delivers real records through a real broker; pause/resume
//! and stop/offset changes are counted at a real receiver; REST-managed
//! connectors survive a process restart.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Broker, PATIENCE, Receiver, Wasmsink, call, config};

/// A config file with the broker and no connector: REST-only operation.
fn rest_only(broker: &Broker) -> String {
    config(broker, "")
}

async fn produce(broker: &Broker, topic: &str, from: usize, to: usize) {
    for n in from..to {
        broker
            .produce(
                topic,
                0,
                None,
                Some(format!("{{\"n\":{n}}}").as_bytes()),
                &[],
            )
            .await;
    }
}

/// How many requests carried each body.
fn counts(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in receiver.requests() {
        *counts.entry(request.text()).or_default() += 1;
    }
    counts
}

fn bodies(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|n| format!("{{\"n\":{n}}}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_rest_calls_verbatim_manage_a_delivering_connector() {
    let broker = Broker::start();
    broker.create_topic("person", 1);
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let wasmsink = Wasmsink::start(dir.path(), &rest_only(&broker));
    wasmsink.wait_for_api().await;
    let api = wasmsink.api();

    // "Create new connection", the seed's payload with its placeholders filled in.
    let create = r#"{ "name": "integration", "config": { "connector.class":"nz.ac.auckland.kafka.http.sink.HttpSinkConnector", "tasks.max":"1", "value.converter":"org.apache.kafka.connect.storage.StringConverter", "key.converter":"org.apache.kafka.connect.storage.StringConverter", "header.converter":"org.apache.kafka.connect.storage.StringConverter", "topics":"person", "callback.request.url":"URL", "callback.request.method":"POST", "callback.request.headers":"{\"Content-Type\":\"application/json\",\"apikey\":\"API_KEY_HERE\"}", "retry.backoff.sec":"5,60,120,300,600", "exception.strategy":"PROGRESS_BACK_OFF_DROP_MESSAGE" } }"#
        .replace("URL", &receiver.url("/v1"));
    let (status, body) = call(api, Method::POST, "/connectors", Some(&create)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    produce(&broker, "person", 0, 5).await;
    receiver.wait_for(5, PATIENCE).await;

    // "Update existing connection": PUT /connectors/<name> with the bare config.
    let update = r#"{ "connector.class":"nz.ac.auckland.kafka.http.sink.HttpSinkConnector", "tasks.max":"1", "value.converter":"org.apache.kafka.connect.storage.StringConverter", "key.converter":"org.apache.kafka.connect.storage.StringConverter", "header.converter":"org.apache.kafka.connect.storage.StringConverter", "topics":"person", "callback.request.url":"URL", "callback.request.method":"POST", "callback.request.headers":"{\"Content-Type\":\"application/json\",\"apikey\":\"API_KEY_HERE\"}", "retry.backoff.sec":"5,60,120,300,600", "exception.strategy":"PROGRESS_BACK_OFF_DROP_MESSAGE" }"#
        .replace("URL", &receiver.url("/v2"));
    let (status, body) = call(api, Method::PUT, "/connectors/integration", Some(&update)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    produce(&broker, "person", 5, 10).await;
    let requests = receiver.wait_for(10, PATIENCE).await;
    assert!(
        requests[5..].iter().all(|r| r.uri.path() == "/v2"),
        "{requests:?}"
    );

    // "List connections" and "Connection Details".
    let (_, list) = call(api, Method::GET, "/connectors", None).await;
    assert_eq!(list, json!(["integration"]));
    let (_, details) = call(api, Method::GET, "/connectors/integration", None).await;
    assert_eq!(
        details["config"]["callback.request.url"],
        receiver.url("/v2")
    );

    // "Pause Connection" (GET), records wait; "Resume Connection" (GET), they come.
    let (status, _) = call(api, Method::GET, "/connectors/integration/pause", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    crate::support::wait_for_state(api, "integration", "PAUSED").await;
    produce(&broker, "person", 10, 15).await;
    receiver
        .assert_no_more_than(10, Duration::from_secs(2))
        .await;
    let (status, _) = call(api, Method::GET, "/connectors/integration/resume", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    receiver.wait_for(15, PATIENCE).await;
    receiver
        .assert_no_more_than(15, Duration::from_millis(500))
        .await;
    let expected: BTreeMap<String, usize> = bodies(0, 15).into_iter().map(|b| (b, 1)).collect();
    assert_eq!(counts(&receiver), expected, "each record exactly once");

    // Metrics: consumer lag (from librdkafka's statistics, every 5 s) falls
    // to 0 once everything is committed, and guest calls are counted.
    let deadline = std::time::Instant::now() + PATIENCE;
    let lag_line =
        r#"wasmsink_consumer_lag{connector="integration",topic="person",partition="0"} 0"#;
    let metrics = loop {
        let (_, metrics) = call(api, Method::GET, "/metrics", None).await;
        let text = metrics.as_str().unwrap_or_default().to_owned();
        if text.lines().any(|l| l == lag_line) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no zero lag reported:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for export in ["transform", "decide"] {
        let prefix =
            format!(r#"wasmsink_guest_calls_total{{connector="integration",export="{export}"}} "#);
        let calls: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(calls >= 5, "{export} calls: {calls}\n{metrics}");
    }

    // "Delete Connection": nothing more is delivered.
    let (status, _) = call(api, Method::DELETE, "/connectors/integration", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    produce(&broker, "person", 15, 18).await;
    receiver
        .assert_no_more_than(15, Duration::from_secs(2))
        .await;
    let (status, _) = call(api, Method::GET, "/connectors/integration", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(wasmsink);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_then_offsets_moved_back_replays_exactly_from_there() {
    let broker = Broker::start();
    broker.create_topic("ledger", 1);
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let wasmsink = Wasmsink::start(dir.path(), &rest_only(&broker));
    wasmsink.wait_for_api().await;
    let api = wasmsink.api();
    let create = json!({"name": "ledger", "config": {
        "topics": "ledger", "callback.request.url": receiver.url("/"),
        "connector.class": "HttpSink"}});
    let (status, body) = call(api, Method::POST, "/connectors", Some(&create.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    produce(&broker, "ledger", 0, 10).await;
    receiver.wait_for(10, PATIENCE).await;

    let (status, _) = call(api, Method::PUT, "/connectors/ledger/stop", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = call(api, Method::GET, "/connectors/ledger/offsets", None).await;
    assert_eq!(
        body["offsets"],
        json!([{"partition": {"kafka_topic": "ledger", "kafka_partition": 0}, "offset": {"kafka_offset": 10}}]),
        "a stop commits every finished record"
    );
    let (_, body) = call(api, Method::GET, "/connectors/ledger/topics", None).await;
    assert_eq!(body["ledger"]["topics"], json!(["ledger"]));

    let rewind = json!({"offsets": [{"partition": {"kafka_topic": "ledger", "kafka_partition": 0}, "offset": {"kafka_offset": 6}}]});
    let (status, body) = call(
        api,
        Method::PATCH,
        "/connectors/ledger/offsets",
        Some(&rewind.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    produce(&broker, "ledger", 10, 12).await;
    receiver
        .assert_no_more_than(10, Duration::from_secs(1))
        .await;
    let (status, _) = call(api, Method::PUT, "/connectors/ledger/resume", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Offsets 6..=11: four replayed on request, two new.
    receiver.wait_for(16, PATIENCE).await;
    receiver
        .assert_no_more_than(16, Duration::from_millis(500))
        .await;
    let counts = counts(&receiver);
    for (n, body) in bodies(0, 12).iter().enumerate() {
        let expected = if (6..10).contains(&n) { 2 } else { 1 };
        assert_eq!(counts.get(body), Some(&expected), "{body}: {counts:?}");
    }
    // While running, offsets cannot change.
    let (status, body) = call(api, Method::DELETE, "/connectors/ledger/offsets", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    drop(wasmsink);
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_connectors_come_back_with_their_state_after_a_restart() {
    let broker = Broker::start();
    broker.create_topic("durable", 1);
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let mut wasmsink = Wasmsink::start(dir.path(), &rest_only(&broker));
    wasmsink.wait_for_api().await;
    let create = json!({"name": "durable", "config": {
        "topics": "durable", "callback.request.url": receiver.url("/")}});
    let (status, body) = call(
        wasmsink.api(),
        Method::POST,
        "/connectors",
        Some(&create.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    produce(&broker, "durable", 0, 5).await;
    receiver.wait_for(5, PATIENCE).await;
    let (status, _) = call(
        wasmsink.api(),
        Method::PUT,
        "/connectors/durable/pause",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(wasmsink.terminate(Duration::from_secs(20)).success());

    produce(&broker, "durable", 5, 10).await;
    let wasmsink = Wasmsink::start(dir.path(), &rest_only(&broker));
    wasmsink.wait_for_api().await;
    let api = wasmsink.api();
    crate::support::wait_for_state(api, "durable", "PAUSED").await;
    receiver
        .assert_no_more_than(5, Duration::from_secs(2))
        .await;
    let (status, _) = call(api, Method::PUT, "/connectors/durable/resume", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    receiver.wait_for(10, PATIENCE).await;
    receiver
        .assert_no_more_than(10, Duration::from_millis(500))
        .await;
    let expected: BTreeMap<String, usize> = bodies(0, 10).into_iter().map(|b| (b, 1)).collect();
    assert_eq!(counts(&receiver), expected);
}

/// Schemathesis (from PyPI) drives every operation of `/openapi.json` but
/// the messenger send with generated inputs; no answer may be a 5xx and the
/// process must live.
/// Short mode: a few examples per operation and a 40 s budget;
/// `SCHEMATHESIS_MAX_EXAMPLES` and `SCHEMATHESIS_MAX_TIME` (seconds) raise them.
#[tokio::test(flavor = "multi_thread")]
async fn fuzzing_the_api_from_its_openapi_document_finds_no_server_error() {
    let Some(schemathesis) = which("schemathesis") else {
        panic!(
            "schemathesis is missing: run scripts/install-test-deps.sh (pip install schemathesis)"
        );
    };
    let broker = Broker::start();
    broker.create_topic("fuzz", 1);
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let mut wasmsink = Wasmsink::start(dir.path(), &rest_only(&broker));
    wasmsink.wait_for_api().await;
    let api = wasmsink.api().to_owned();
    let create = json!({"name": "fuzz", "config": {"topics": "fuzz", "callback.request.url": receiver.url("/")}});
    let (status, _) = call(&api, Method::POST, "/connectors", Some(&create.to_string())).await;
    assert_eq!(status, StatusCode::CREATED);
    let examples = std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| "5".into());
    let budget = std::env::var("SCHEMATHESIS_MAX_TIME").unwrap_or_else(|_| "40".into());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(schemathesis)
            .args(["run", &format!("{api}/openapi.json"), "--url", &api])
            .args(["--checks", "not_a_server_error"])
            // A messenger's send answers 502/504 by design when its Kafka
            // cannot be reached (tests/e2e/messengers.rs covers it).
            .args(["--exclude-operation-id", "sendMessage"])
            .args(["--phases", "examples,fuzzing"])
            .args(["--max-examples", &examples, "--workers", "1"])
            .args(["--request-timeout", "30", "--max-time", &budget])
            .env("NO_COLOR", "1")
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !report.contains("Server error"),
        "a 5xx was found:\n{report}\nwasmsink log:\n{}",
        wasmsink.log()
    );
    assert!(
        report.contains("generated") && output.status.success(),
        "schemathesis failed:\n{report}"
    );
    eprintln!("{report}");
    let (status, _) = call(wasmsink.api(), Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK, "the process died under fuzzing");
    assert!(wasmsink.terminate(Duration::from_secs(30)).success());
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|path| path.is_file())
}
