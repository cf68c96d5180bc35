//! The REST API in Kafka Connect's shapes, against a real supervisor on an
//! in-memory Kafka (librdkafka's mock cluster) and a SQLite store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rdkafka::mocking::MockCluster;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{ApiKey, RuntimeConfig};
use crate::guest::GuestEngine;
use crate::store::SqliteStore;
use crate::supervisor::Supervisor;

pub(super) struct Api {
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub(super) base: String,
    pub(super) client: reqwest::Client,
    supervisor: Supervisor,
    stop: CancellationToken,
}

/// The seed connector's create payload, verbatim but for the placeholders.
fn seed_create(name: &str, url: &str) -> Value {
    json!({ "name": name, "config": seed_config(url) })
}

fn seed_config(url: &str) -> Value {
    json!({
        "connector.class":"nz.ac.auckland.kafka.http.sink.HttpSinkConnector",
        "tasks.max":"1",
        "value.converter":"org.apache.kafka.connect.storage.StringConverter",
        "key.converter":"org.apache.kafka.connect.storage.StringConverter",
        "header.converter":"org.apache.kafka.connect.storage.StringConverter",
        "topics":"t",
        "callback.request.url": url,
        "callback.request.method":"POST",
        "callback.request.headers":"{\"Content-Type\":\"application/json\",\"apikey\":\"API_KEY_HERE\"}",
        "retry.backoff.sec":"5,60,120,300,600",
        "exception.strategy":"PROGRESS_BACK_OFF_DROP_MESSAGE"
    })
}

impl Api {
    /// An API with `keys`, no limit on failed authentication and the
    /// default policy.
    pub(super) async fn start(keys: Vec<ApiKey>, data_dir: Option<&std::path::Path>) -> Self {
        let server = crate::config::ServerConfig {
            api_keys: keys,
            auth_failures_per_minute: u32::MAX,
            ..Default::default()
        };
        Self::start_with(server, data_dir).await
    }

    /// An API as `server` configures it (listening on a free loopback port).
    pub(super) async fn start_with(
        server: crate::config::ServerConfig,
        data_dir: Option<&std::path::Path>,
    ) -> Self {
        Self::start_draining(server, data_dir, Duration::from_secs(2)).await
    }

    /// As [`Self::start_with`], with `grace` for in-flight attempts when a
    /// connector stops.
    async fn start_draining(
        server: crate::config::ServerConfig,
        data_dir: Option<&std::path::Path>,
        grace: Duration,
    ) -> Self {
        crate::install_tls_provider();
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 1, 1).unwrap();
        let kafka = BTreeMap::from([
            ("bootstrap.servers".to_owned(), cluster.bootstrap_servers()),
            ("session.timeout.ms".to_owned(), "6000".to_owned()),
        ]);
        let store = Arc::new(match data_dir {
            Some(dir) => SqliteStore::open(dir).unwrap(),
            None => SqliteStore::in_memory().unwrap(),
        });
        let policy = Arc::new(server.policy.clone());
        let messengers = Messengers::open(store.clone(), policy.clone()).unwrap();
        let supervisor = Supervisor::new(
            GuestEngine::new().unwrap(),
            messengers.clone(),
            kafka,
            RuntimeConfig {
                shutdown_timeout: grace,
            },
            policy.egress.clone(),
            CancellationToken::new(),
        );
        let control = Control::new(supervisor.clone(), store, policy);
        control.restore(Vec::new()).await.unwrap();
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            None,
            router(
                control,
                messengers,
                addr.to_string(),
                Access::for_server(&server, addr),
            ),
            stop.clone(),
        ));
        Self {
            _cluster: cluster,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            supervisor,
            stop,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: &str,
        auth: Option<&str>,
    ) -> (StatusCode, String) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    pub(super) async fn shutdown(self) {
        self.supervisor.shutdown().await;
        self.stop.cancel();
    }

    /// Produces `value` to topic `t`.
    async fn produce(&self, value: &str) {
        let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self._cluster.bootstrap_servers())
            .create()
            .unwrap();
        producer
            .send(
                rdkafka::producer::FutureRecord::<(), _>::to("t").payload(value),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
}

#[test]
fn the_openapi_document_lists_exactly_the_routes() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method != "parameters" {
                documented.insert((path.clone(), method.to_ascii_uppercase()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|m| (path.to_string(), m.to_string())))
        .collect();
    assert_eq!(documented, routed);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_is_served() {
    let api = Api::start(Vec::new(), None).await;
    for (path, methods) in ROUTES {
        let concrete = path
            .replace("{name}", "nobody")
            .replace("{id}", "0")
            .replace("{plugin}", "HttpSink")
            .replace("{messengerId}", "8b277ae3-7b76-4e1e-bb07-7320046355bc")
            .replace("{eventLogId}", "1");
        for method in *methods {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let (status, body) = api.raw(method.clone(), &concrete, "{}", None).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !body.contains("HTTP 404 Not Found"),
                "{method} {path}: {body}"
            );
            assert!(
                !status.is_server_error(),
                "{method} {path}: {status} {body}"
            );
        }
    }
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_calls_work_verbatim_in_connect_shapes() {
    let api = Api::start(Vec::new(), None).await;
    let url = "http://127.0.0.1:9/hook";
    let (status, body) = api
        .call(Method::POST, "/connectors", Some(&seed_create("seed", url)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "seed");
    assert_eq!(body["type"], "sink");
    assert_eq!(body["tasks"], json!([{"connector": "seed", "task": 0}]));
    assert_eq!(body["config"]["topics"], "t");

    let (status, body) = api
        .call(Method::POST, "/connectors", Some(&seed_create("seed", url)))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error_code"], 409);

    let (status, body) = api.call(Method::GET, "/connectors", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!(["seed"])));

    // The seed's update: PUT /connectors/<name> with the bare config.
    let mut update = seed_config(url);
    update["retry.backoff.sec"] = json!("1,2");
    let (status, body) = api
        .call(Method::PUT, "/connectors/seed", Some(&update))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["config"]["retry.backoff.sec"], "1,2");

    let (status, body) = api.call(Method::GET, "/connectors/seed", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["config"]["retry.backoff.sec"], "1,2");
    assert_eq!(body["config"]["name"], "seed");

    let (_, body) = api.call(Method::GET, "/connectors/seed/config", None).await;
    assert_eq!(body["exception.strategy"], "PROGRESS_BACK_OFF_DROP_MESSAGE");

    let patch = json!({"exception.strategy": "DROP_MESSAGE", "retry.backoff.sec": null});
    let (status, body) = api
        .call(Method::PATCH, "/connectors/seed/config", Some(&patch))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["config"]["exception.strategy"], "DROP_MESSAGE");
    assert!(body["config"].get("retry.backoff.sec").is_none());

    let (_, body) = api.call(Method::GET, "/connectors/seed/status", None).await;
    assert_eq!(body["connector"]["state"], "RUNNING");
    assert_eq!(body["tasks"][0]["id"], 0);
    assert_eq!(body["tasks"][0]["state"], "RUNNING");
    assert!(
        body["connector"]["worker_id"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // The seed documents GET for pause and resume.
    let (status, _) = api.call(Method::GET, "/connectors/seed/pause", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, body) = api.call(Method::GET, "/connectors/seed/status", None).await;
    assert_eq!(body["connector"]["state"], "PAUSED");
    let (status, _) = api.call(Method::GET, "/connectors/seed/resume", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, body) = api
        .call(Method::GET, "/connectors/seed/tasks/0/status", None)
        .await;
    assert_eq!(body["state"], "RUNNING");
    let (status, body) = api
        .call(Method::GET, "/connectors/seed/tasks/1/status", None)
        .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(404))
    );

    let (_, body) = api.call(Method::GET, "/connectors/seed/tasks", None).await;
    assert_eq!(body[0]["id"], json!({"connector": "seed", "task": 0}));

    let (_, body) = api
        .call(Method::GET, "/connectors?expand=status&expand=info", None)
        .await;
    assert_eq!(body["seed"]["status"]["connector"]["state"], "RUNNING");
    assert_eq!(body["seed"]["info"]["name"], "seed");

    let (status, body) = api
        .call(
            Method::POST,
            "/connectors/seed/restart?includeTasks=true&onlyFailed=true",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["connector"]["state"], "RUNNING");
    let (status, _) = api
        .call(Method::POST, "/connectors/seed/restart", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .call(Method::POST, "/connectors/seed/tasks/0/restart", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Offsets change only while STOPPED.
    let alter = json!({"offsets": [{"partition": {"kafka_topic": "t", "kafka_partition": 0}, "offset": {"kafka_offset": 0}}]});
    let (status, body) = api
        .call(Method::PATCH, "/connectors/seed/offsets", Some(&alter))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = api.call(Method::PUT, "/connectors/seed/stop", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = api.call(Method::GET, "/connectors/seed/status", None).await;
    assert_eq!(body["connector"]["state"], "STOPPED");
    assert_eq!(body["tasks"], json!([]));
    let (status, body) = api
        .call(Method::GET, "/connectors/seed/offsets", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["offsets"].is_array(), "{body}");

    // A connector created STOPPED has no group member: its offsets can be set.
    let mut never = seed_create("never", url);
    never["initial_state"] = json!("STOPPED");
    let (status, body) = api.call(Method::POST, "/connectors", Some(&never)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["tasks"], json!([]));
    let (status, body) = api
        .call(Method::PATCH, "/connectors/never/offsets", Some(&alter))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(Method::GET, "/connectors/never/offsets", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["offsets"],
        json!([{"partition": {"kafka_topic": "t", "kafka_partition": 0}, "offset": {"kafka_offset": 0}}])
    );
    let (status, body) = api
        .call(Method::GET, "/connectors/never/topics", None)
        .await;
    assert_eq!(
        (status, body["never"]["topics"].clone()),
        (StatusCode::OK, json!(["t"]))
    );
    let (status, _) = api
        .call(Method::PUT, "/connectors/never/topics/reset", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, body) = api
        .call(Method::GET, "/connectors/never/topics", None)
        .await;
    assert_eq!(body["never"]["topics"], json!([]));
    let bad = json!({"offsets": [{"partition": {"kafka_topic": "t", "kafka_partition": -1}}]});
    let (status, _) = api
        .call(Method::PATCH, "/connectors/never/offsets", Some(&bad))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = api.call(Method::DELETE, "/connectors/seed", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.call(Method::GET, "/connectors/seed", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error_code": 404, "message": "Connector seed not found"})
    );
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_connect_error_bodies() {
    let api = Api::start(Vec::new(), None).await;
    let (status, body) = api
        .raw(Method::POST, "/connectors", "{\"name\": ", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("\"error_code\":400"), "{body}");

    let invalid = json!({"name": "bad", "config": {
        "topics": "t", "callback.request.url": "ftp://x", "exception.strategy": "SOMETIMES",
        "value.converter": "io.confluent.connect.avro.AvroConverter", "colour": "blue"
    }});
    let (status, body) = api.call(Method::POST, "/connectors", Some(&invalid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["message"].as_str().unwrap();
    for key in [
        "callback.request.url",
        "exception.strategy",
        "value.converter",
        "colour",
    ] {
        assert!(message.contains(key), "{key} missing from {message}");
    }
    assert!(message.contains("4 error(s)"), "{message}");

    let huge = format!(
        "{{\"name\":\"x\",\"config\":{{\"topics\":\"{}\"}}}}",
        "a".repeat(BODY_LIMIT + 10)
    );
    let (status, _) = api.raw(Method::POST, "/connectors", &huge, None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, body) = api.call(Method::DELETE, "/connectors", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error_code"], 405);
    let (status, body) = api.call(Method::GET, "/nowhere", None).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(404))
    );
    for path in [
        "/connectors/ghost",
        "/connectors/ghost/status",
        "/connectors/ghost/pause",
    ] {
        let (status, _) = api.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = api
        .call(
            Method::POST,
            "/connectors/ghost/restart?onlyFailed=maybe",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = api
        .call(
            Method::PUT,
            "/connector-plugins/HttpSinkConnector/config/validate",
            Some(&invalid["config"]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["error_count"], 4, "{body}");
    assert_eq!(body["name"], "HttpSinkConnector");
    let url_entry = body["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["value"]["name"] == "callback.request.url")
        .unwrap();
    assert_eq!(url_entry["value"]["errors"].as_array().unwrap().len(), 1);
    let (status, _) = api
        .call(
            Method::PUT,
            "/connector-plugins/FileStreamSink/config/validate",
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_guard_everything_but_health() {
    let keys = vec![
        ApiKey::unrestricted("s3cret"),
        ApiKey {
            key: "reader".into(),
            label: "reader".into(),
            endpoints: vec!["/connectors".into()],
            methods: vec!["GET".into()],
            expires_at: None,
        },
    ];
    let api = Api::start(keys, None).await;
    let basic = |user: &str, key: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{key}"))
        )
    };
    let (status, body) = api.raw(Method::GET, "/connectors", "", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, ""));
    let (status, _) = api.raw(Method::GET, "/connectors", "", Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .raw(Method::GET, "/connectors", "", Some("s3cret"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .raw(Method::GET, "/", "", Some(&basic("admin", "s3cret")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .raw(Method::GET, "/", "", Some(&basic("admin", "nope")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .raw(Method::GET, "/connectors", "", Some("reader"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .raw(Method::POST, "/connectors", "{}", Some("reader"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.raw(Method::GET, "/metrics", "", Some("reader")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api.raw(Method::GET, "/health", "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_shown_as_references_and_metrics_are_prometheus_text() {
    // SAFETY: a name only this test uses.
    unsafe { std::env::set_var("WASMSINK_API_TEST_KEY", "resolved-secret") };
    let mut server = crate::config::ServerConfig::default();
    server.policy.secrets.env_allow =
        Some(crate::security::SecretPolicy::env_pattern("WASMSINK_API_TEST_[A-Z]+").unwrap());
    let api = Api::start_with(server, None).await;
    let mut config = seed_config("http://127.0.0.1:9/hook");
    config["callback.request.headers"] = json!("{\"apikey\":\"${env:WASMSINK_API_TEST_KEY}\"}");
    let (status, body) = api
        .call(Method::PUT, "/connectors/s/config", Some(&config))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, text) = api.raw(Method::GET, "/connectors/s", "", None).await;
    assert!(text.contains("${env:WASMSINK_API_TEST_KEY}"), "{text}");
    assert!(!text.contains("resolved-secret"), "{text}");
    config["callback.request.headers"] = json!("{\"apikey\":\"${env:WASMSINK_API_TEST_UNSET}\"}");
    let (status, body) = api
        .call(Method::PUT, "/connectors/s/config", Some(&config))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("WASMSINK_API_TEST_UNSET")
    );

    let (status, text) = api.raw(Method::GET, "/metrics", "", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("wasmsink_records_delivered_total{connector=\"s\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("wasmsink_guest_failures_total{connector=\"s\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("wasmsink_connector_state{connector=\"s\",state=\"RUNNING\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("wasmsink_http_request_duration_seconds_bucket{connector=\"s\",le=\"+Inf\"}"),
        "{text}"
    );
    let (_, body) = api.call(Method::GET, "/health", None).await;
    assert_eq!(body["connectors"]["s"], "RUNNING");
    let (_, body) = api.call(Method::GET, "/", None).await;
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_connectors_and_their_state_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let api = Api::start(Vec::new(), Some(dir.path())).await;
        let url = "http://127.0.0.1:9/hook";
        for name in ["kept", "paused", "stopped"] {
            let (status, _) = api
                .call(Method::POST, "/connectors", Some(&seed_create(name, url)))
                .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        api.call(Method::PUT, "/connectors/paused/pause", None)
            .await;
        api.call(Method::PUT, "/connectors/stopped/stop", None)
            .await;
        api.call(Method::POST, "/connectors", Some(&seed_create("gone", url)))
            .await;
        api.call(Method::DELETE, "/connectors/gone", None).await;
        api.shutdown().await;
    }
    let api = Api::start(Vec::new(), Some(dir.path())).await;
    let (_, body) = api
        .call(Method::GET, "/connectors?expand=status", None)
        .await;
    let states: BTreeMap<String, String> = body
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v["status"]["connector"]["state"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("kept".to_owned(), "RUNNING".to_owned()),
            ("paused".to_owned(), "PAUSED".to_owned()),
            ("stopped".to_owned(), "STOPPED".to_owned()),
        ])
    );
    api.shutdown().await;
}

/// Twenty PATCHes at once, each setting its own key: every one is kept
/// (without the connector's write lock, read-modify-write loses most).
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_patches_are_all_applied() {
    let api = Api::start(Vec::new(), None).await;
    let (status, _) = api
        .call(
            Method::POST,
            "/connectors",
            Some(&seed_create("r", "http://127.0.0.1:9/hook")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // librdkafka's defaults, so every combination is a valid consumer.
    let changes = [
        ("socket.timeout.ms", "60000"),
        ("socket.connection.setup.timeout.ms", "30000"),
        ("connections.max.idle.ms", "0"),
        ("reconnect.backoff.ms", "100"),
        ("reconnect.backoff.max.ms", "10000"),
        ("api.version.request.timeout.ms", "10000"),
        ("metadata.max.age.ms", "900000"),
        ("topic.metadata.refresh.interval.ms", "300000"),
        ("topic.metadata.refresh.sparse", "true"),
        ("topic.metadata.propagation.max.ms", "30000"),
        ("socket.keepalive.enable", "false"),
        ("socket.nagle.disable", "false"),
        ("broker.address.ttl", "1000"),
        ("broker.address.family", "any"),
        ("socket.send.buffer.bytes", "0"),
        ("socket.receive.buffer.bytes", "0"),
        ("message.max.bytes", "1000000"),
        ("message.copy.max.bytes", "65535"),
        ("receive.message.max.bytes", "100000000"),
        ("max.in.flight.requests.per.connection", "1000000"),
    ];
    let patches = changes.iter().map(|(key, value)| {
        let body = json!({ format!("consumer.override.{key}"): value });
        let api = &api;
        async move {
            api.call(Method::PATCH, "/connectors/r/config", Some(&body))
                .await
                .0
        }
    });
    let statuses = futures::future::join_all(patches).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let (_, config) = api.call(Method::GET, "/connectors/r/config", None).await;
    let missing: Vec<&str> = changes
        .iter()
        .filter(|(key, value)| config[format!("consumer.override.{key}")] != *value)
        .map(|(key, _)| *key)
        .collect();
    assert!(missing.is_empty(), "acknowledged and lost: {missing:?}");
    api.shutdown().await;
}

/// While a connector drains a 20 s request, `/health`, `/metrics` and the
/// status of every connector answer at once.
#[tokio::test(flavor = "multi_thread")]
async fn health_answers_while_a_connector_drains_a_slow_request() {
    let held = Arc::new(tokio::sync::Notify::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}", listener.local_addr().unwrap());
    let arrived = held.clone();
    // Both connectors read topic t; only the one being stopped must be held.
    let slow = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let arrived = arrived.clone();
        async move {
            if uri.path() == "/slow" {
                arrived.notify_one();
            }
            tokio::time::sleep(Duration::from_secs(20)).await;
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, slow).await });
    let api = Api::start_draining(
        crate::config::ServerConfig::default(),
        None,
        Duration::from_secs(30),
    )
    .await;
    for name in ["slow", "other"] {
        let (status, _) = api
            .call(
                Method::POST,
                "/connectors",
                Some(&seed_create(name, &format!("{receiver}/{name}"))),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    api.produce("{}").await;
    tokio::time::timeout(Duration::from_secs(15), held.notified())
        .await
        .expect("the stopped connector's record reaches the receiver");
    let stopping = {
        let client = api.client.clone();
        let url = format!("{}/connectors/slow/stop", api.base);
        tokio::spawn(async move { client.put(url).send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stopping.is_finished(),
        "the stop waits for the held request"
    );
    for path in [
        "/health",
        "/metrics",
        "/connectors?expand=status",
        "/connectors/slow/status",
        "/connectors/other/status",
    ] {
        let started = std::time::Instant::now();
        let (status, _) = api.call(Method::GET, path, None).await;
        let took = started.elapsed();
        assert!(status.is_success(), "{path}: {status}");
        assert!(took < Duration::from_millis(100), "{path} took {took:?}");
    }
    let (_, status) = api.call(Method::GET, "/connectors/slow/status", None).await;
    assert_eq!(status["connector"]["state"], "STOPPED");
}

/// A change that fails to apply is not saved: after a restart the
/// connector runs the config it ran before.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_that_fails_to_apply_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:9/hook";
    {
        let api = Api::start(Vec::new(), Some(dir.path())).await;
        let (status, _) = api
            .call(Method::POST, "/connectors", Some(&seed_create("r", url)))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        // Allowed by the policy, refused by librdkafka when the consumer is built.
        let bad = json!({ "consumer.override.socket.timeout.ms": "soon" });
        let (status, body) = api
            .call(Method::PATCH, "/connectors/r/config", Some(&bad))
            .await;
        assert!(status.is_client_error(), "{status}: {body}");
        assert!(body.to_string().contains("cannot start"), "{body}");
        api.shutdown().await;
    }
    let api = Api::start(Vec::new(), Some(dir.path())).await;
    let (status, config) = api.call(Method::GET, "/connectors/r/config", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["consumer.override.socket.timeout.ms"], Value::Null);
    assert_eq!(config["callback.request.url"], url);
    api.shutdown().await;
}
