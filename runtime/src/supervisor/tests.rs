//! Live changes on an in-memory Kafka (librdkafka's mock cluster) and a
//! loopback receiver: nothing finished is re-sent, nothing unfinished is
//! skipped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::ConnectorConfig;

/// (path, body) of every request, in arrival order.
type Log = Arc<Mutex<Vec<(String, String)>>>;

struct Harness {
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    producer: FutureProducer,
    supervisor: Supervisor,
    log: Log,
    receiver: String,
}

impl Harness {
    async fn new() -> Self {
        crate::install_tls_provider();
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 1, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let log = Log::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(record).with_state(log.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let kafka = BTreeMap::from([
            ("bootstrap.servers".to_owned(), bootstrap),
            ("session.timeout.ms".to_owned(), "6000".to_owned()),
        ]);
        let runtime = RuntimeConfig {
            shutdown_timeout: Duration::from_secs(5),
        };
        let supervisor = Supervisor::new(
            GuestEngine::new().unwrap(),
            crate::messenger::Messengers::in_memory().unwrap(),
            kafka,
            runtime,
            Arc::default(),
            CancellationToken::new(),
        );
        Self {
            _cluster: cluster,
            producer,
            supervisor,
            log,
            receiver,
        }
    }

    fn config(&self, path: &str, extra: &[(&str, &str)]) -> ConnectorConfig {
        let url = format!("{}{path}", self.receiver);
        let mut properties = BTreeMap::from([
            ("topics".to_owned(), "t".to_owned()),
            ("callback.request.url".to_owned(), url),
            ("retry.backoff.sec".to_owned(), "0.1".to_owned()),
        ]);
        properties.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        ConnectorConfig::from_properties("c", &properties).unwrap()
    }

    async fn produce(&self, bodies: impl IntoIterator<Item = String>) {
        for body in bodies {
            self.producer
                .send(
                    FutureRecord::<(), _>::to("t").payload(&body),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
        }
    }

    fn bodies(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }

    fn paths(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(path, _)| path.clone())
            .collect()
    }

    async fn wait_for(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log.lock().unwrap().len() < count {
            assert!(
                Instant::now() < deadline,
                "only {:?} arrived",
                self.bodies()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn phase(&self) -> ConnectorPhase {
        self.supervisor.status("c").await.unwrap().phase
    }
}

/// Answers `{"retry":false}`, except `{"retry":true}` for bodies starting with "poison".
async fn record(State(log): State<Log>, uri: Uri, body: Bytes) -> (StatusCode, &'static str) {
    let body = String::from_utf8_lossy(&body).into_owned();
    let poison = body.starts_with("poison");
    log.lock().unwrap().push((uri.path().to_owned(), body));
    if poison {
        (StatusCode::INTERNAL_SERVER_ERROR, r#"{"retry":true}"#)
    } else {
        (StatusCode::OK, r#"{"retry":false}"#)
    }
}

fn numbered(range: std::ops::Range<u32>) -> impl Iterator<Item = String> {
    range.map(|n| format!("r{n}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_holds_at_a_record_boundary_and_resume_continues() {
    let h = Harness::new().await;
    h.produce(numbered(0..5)).await;
    h.supervisor
        .create(h.config("/", &[]), TargetState::Running)
        .await
        .unwrap();
    h.wait_for(5).await;

    h.supervisor.pause("c").await.unwrap();
    assert_eq!(h.phase().await, ConnectorPhase::Paused);
    h.produce(numbered(5..10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.bodies().len(), 5, "nothing is delivered while paused");

    h.supervisor.resume("c").await.unwrap();
    assert_eq!(h.phase().await, ConnectorPhase::Running);
    h.wait_for(10).await;
    assert_eq!(h.bodies(), numbered(0..10).collect::<Vec<_>>());
    h.supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_then_resume_continues_after_the_committed_records() {
    let h = Harness::new().await;
    h.produce(numbered(0..4)).await;
    h.supervisor
        .create(h.config("/", &[]), TargetState::Running)
        .await
        .unwrap();
    h.wait_for(4).await;
    h.supervisor.stop("c").await.unwrap();
    assert_eq!(h.phase().await, ConnectorPhase::Stopped);
    h.produce(numbered(4..8)).await;
    h.supervisor.resume("c").await.unwrap();
    h.wait_for(8).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.bodies(),
        numbered(0..8).collect::<Vec<_>>(),
        "no record is re-sent or skipped"
    );
    h.supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn put_replaces_only_that_connector_and_keeps_its_position() {
    let h = Harness::new().await;
    h.produce(numbered(0..3)).await;
    assert!(
        h.supervisor.put(h.config("/v1", &[])).await.unwrap(),
        "put creates a missing connector"
    );
    h.wait_for(3).await;
    assert!(!h.supervisor.put(h.config("/v2", &[])).await.unwrap());
    h.produce(numbered(3..6)).await;
    h.wait_for(6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.bodies(), numbered(0..6).collect::<Vec<_>>());
    assert_eq!(h.paths(), ["/v1", "/v1", "/v1", "/v2", "/v2", "/v2"]);
    h.supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_of_a_failed_connector_retries_the_record_it_stopped_on() {
    let h = Harness::new().await;
    h.produce(["ok-0".to_owned(), "poison-1".to_owned(), "ok-2".to_owned()])
        .await;
    h.supervisor
        .create(
            h.config("/", &[("exception.strategy", "STOP_TASK")]),
            TargetState::Running,
        )
        .await
        .unwrap();
    h.wait_for(2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(h.phase().await, ConnectorPhase::Failed { .. }) {
        assert!(Instant::now() < deadline, "never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // restart with onlyFailed leaves a running connector alone, but restarts this one.
    h.supervisor.restart("c", true).await.unwrap();
    h.wait_for(3).await;
    assert_eq!(
        h.bodies()[..3],
        ["ok-0", "poison-1", "poison-1"],
        "the failed record is tried again, the one before is not"
    );
    h.supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_and_apply_follow_the_wanted_set() {
    let h = Harness::new().await;
    h.supervisor
        .create(h.config("/", &[]), TargetState::Paused)
        .await
        .unwrap();
    assert_eq!(h.phase().await, ConnectorPhase::Paused);
    assert_eq!(
        h.supervisor
            .create(h.config("/", &[]), TargetState::Running)
            .await,
        Err(SupervisorError::AlreadyExists("c".into()))
    );

    // Applying the same config changes nothing; a changed one is updated; an empty set deletes.
    assert!(
        h.supervisor
            .apply(vec![h.config("/", &[])])
            .await
            .is_empty()
    );
    let changed = h.supervisor.apply(vec![h.config("/other", &[])]).await;
    assert_eq!(changed, vec![Ok("updated c".to_owned())]);
    assert_eq!(
        h.phase().await,
        ConnectorPhase::Paused,
        "an update keeps the target state"
    );
    assert_eq!(
        h.supervisor.apply(vec![]).await,
        vec![Ok("deleted c".to_owned())]
    );
    assert_eq!(
        h.supervisor.status("c").await.unwrap_err(),
        SupervisorError::NotFound("c".into())
    );
    assert_eq!(
        h.supervisor.delete("c").await,
        Err(SupervisorError::NotFound("c".into()))
    );
}
