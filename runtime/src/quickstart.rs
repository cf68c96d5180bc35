//! `wasmsink quickstart`: the whole pipeline on one machine with no external
//! service. An in-memory Kafka (librdkafka's mock cluster: nothing is kept
//! when the process exits), a local HTTP receiver that answers like the
//! seed's callbacks, and one connector running the built-in guest.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConnectorConfig, RuntimeConfig};
use crate::guest::GuestEngine;
use crate::supervisor::Supervisor;

const TOPIC: &str = "quickstart";
const PARTITIONS: i32 = 3;
/// Ids the receiver refuses once with `{"retry":true}`, to show a retry.
const FLAKY_EVERY: u64 = 5;
/// The id the receiver always refuses, to show a drop after the back-off schedule.
const POISON_ID: u64 = 10;

/// Runs the demo with `records` sample records and prints a tally.
pub async fn run(records: u32) -> anyhow::Result<()> {
    println!("wasmsink quickstart");
    println!("  Kafka:     IN-MEMORY (librdkafka's mock cluster; nothing is kept after exit)");
    let cluster = MockCluster::new(1).context("starting the in-memory Kafka")?;
    cluster
        .create_topic(TOPIC, PARTITIONS, 1)
        .context("creating the topic")?;
    let bootstrap = cluster.bootstrap_servers();

    let (receiver_addr, receiver_stop) = start_receiver().await?;
    println!("  Receiver:  http://{receiver_addr}/hook (answers like the seed's callbacks)");
    println!(
        "  Connector: \"quickstart\", built-in guest, PROGRESS_BACK_OFF_DROP_MESSAGE, retry.backoff.sec=0.2,0.5"
    );
    println!();

    produce_samples(&bootstrap, records).await?;

    let properties: BTreeMap<String, String> = [
        ("topics", TOPIC),
        (
            "callback.request.url",
            &format!("http://{receiver_addr}/hook"),
        ),
        ("callback.request.method", "POST"),
        (
            "callback.request.headers",
            r#"{"Content-Type":"application/json"}"#,
        ),
        ("retry.backoff.sec", "0.2,0.5"),
        ("exception.strategy", "PROGRESS_BACK_OFF_DROP_MESSAGE"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let connector = ConnectorConfig::from_properties("quickstart", &properties)
        .map_err(|problems| anyhow::anyhow!("{}", crate::config::ConfigError::from(problems)))?;
    let kafka = [
        ("bootstrap.servers", bootstrap.as_str()),
        ("session.timeout.ms", "6000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config {
        kafka,
        runtime: RuntimeConfig {
            shutdown_timeout: Duration::from_secs(5),
        },
        connectors: vec![connector],
        server: Default::default(),
        store: Default::default(),
    };

    let engine = GuestEngine::new()?;
    let supervisor = Supervisor::new(
        engine,
        crate::messenger::Messengers::in_memory()?,
        config.kafka,
        config.runtime,
        config.server.policy.egress.clone(),
        CancellationToken::new(),
    );
    if let Err(problems) = supervisor.start_all(config.connectors).await {
        anyhow::bail!(
            "{}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let connector = supervisor
        .connector("quickstart")
        .await
        .expect("started above");

    let deadline = Instant::now() + Duration::from_secs(60);
    while connector.stats.snapshot().finished() < u64::from(records) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    supervisor.shutdown().await;
    receiver_stop.cancel();

    let tally = connector.stats.snapshot();
    println!();
    println!(
        "tally: produced={records} consumed={} delivered={} retried={} dropped={} dead-lettered={} skipped={}",
        tally.consumed,
        tally.delivered,
        tally.retried,
        tally.dropped,
        tally.dead_lettered,
        tally.skipped
    );
    anyhow::ensure!(
        tally.finished() == u64::from(records),
        "only {} of {records} records finished",
        tally.finished()
    );
    Ok(())
}

async fn produce_samples(bootstrap: &str, records: u32) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    for id in 0..u64::from(records) {
        let key = format!("customer-{}", id % 4);
        let value =
            serde_json::json!({"id": id, "customer": key, "event": "order.created"}).to_string();
        producer
            .send(
                FutureRecord::to(TOPIC).key(&key).payload(&value),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(error, _)| anyhow::anyhow!("producing a sample record: {error}"))?;
    }
    println!("produced {records} records to \"{TOPIC}\" ({PARTITIONS} partitions)");
    Ok(())
}

/// Ids already refused once.
type Refused = Arc<Mutex<HashSet<u64>>>;

async fn start_receiver() -> anyhow::Result<(SocketAddr, CancellationToken)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(Refused::default());
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
    });
    Ok((addr, stop))
}

/// Answers like the seed's callbacks: `{"retry":false}` when done, and
/// `{"retry":true}` for ids it cannot process (yet).
async fn receive(
    State(refused): State<Refused>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_u64());
    let first_time = id.is_some_and(|id| refused.lock().expect("lock").insert(id));
    let (status, answer) = match id {
        Some(POISON_ID) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"message":"Unable to process. An unhandled exception has been thrown.","retry":true}"#,
        ),
        Some(id) if id % FLAKY_EVERY == 3 && first_time => (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"message":"Busy, try again.","retry":true}"#,
        ),
        _ => (StatusCode::OK, r#"{"retry":false}"#),
    };
    let info = headers
        .get("x-b3-info")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    println!(
        "  POST /hook [{info}] {}  ->  {} {answer}",
        String::from_utf8_lossy(&body),
        status.as_u16()
    );
    (status, answer.to_owned())
}
