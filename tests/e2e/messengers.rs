//! FusionAuth-compatible Kafka messengers end to end: sends read back from a
//! real tansu broker, a bounded failure against an unreachable one that
//! leaves an Error event log without holding other requests up, messengers
//! across a restart, and a connector whose dead letters go through a
//! messenger to a second cluster.

use std::time::{Duration, Instant};

use rdkafka::Message;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Broker, PATIENCE, Receiver, Wasmsink, config, header_value, please_retry};

async fn call(api: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    crate::support::call(api, method, path, body.map(|b| b.to_string()).as_deref()).await
}

async fn create_messenger(api: &str, body: Value) -> String {
    let (status, created) = call(
        api,
        Method::POST,
        "/api/messenger",
        Some(json!({ "messenger": body })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created["messenger"]["id"].as_str().unwrap().to_owned()
}

async fn started(broker: &Broker, dir: &std::path::Path) -> Wasmsink {
    let wasmsink = Wasmsink::start(dir, &config(broker, ""));
    wasmsink.wait_for_api().await;
    wasmsink
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_lands_on_the_default_topic_with_its_key_and_headers_and_debug_logs_each_send() {
    let broker = Broker::start();
    broker.create_topic("fa-sms", 1);
    broker.create_topic("other", 1);
    let dir = tempfile::tempdir().unwrap();
    let wasmsink = started(&broker, dir.path()).await;
    let api = wasmsink.api();
    let id = create_messenger(
        api,
        json!({"type": "Kafka", "name": "sms", "defaultTopic": "fa-sms", "debug": true,
               "producer": {"bootstrap.servers": broker.bootstrap(), "acks": "all", "max.block.ms": 10000,
                            "sasl.username": "svc", "sasl.password": "hunter2-secret"}}),
    )
    .await;
    let message =
        json!({"type": "SMS", "phoneNumber": "+15555555555", "textMessage": "Your code is 123456"});
    let (status, sent) = call(
        api,
        Method::POST,
        &format!("/api/messenger/{id}/send"),
        Some(json!({"message": message, "key": "user-1", "headers": {"source": "app", "empty": null}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(
        sent,
        json!({"topic": "fa-sms", "partition": 0, "offset": 0})
    );
    let (status, sent) = call(
        api,
        Method::POST,
        &format!("/api/messenger/{id}/send"),
        Some(json!({"message": "plain", "topic": "other"})),
    )
    .await;
    assert_eq!(
        (status, &sent["topic"]),
        (StatusCode::OK, &json!("other")),
        "{sent}"
    );

    let record = &broker.read("fa-sms", 1, 1)[0];
    assert_eq!(record.key(), Some(&b"user-1"[..]));
    let value: Value = serde_json::from_slice(record.payload().unwrap()).unwrap();
    assert_eq!(value, message, "the value is the message's JSON");
    assert_eq!(header_value(record, "source"), Some(&b"app"[..]));
    let other = &broker.read("other", 1, 1)[0];
    assert_eq!(
        (other.key(), other.payload()),
        (None, Some(&b"\"plain\""[..]))
    );

    let (_, logs) = call(
        api,
        Method::POST,
        "/api/system/event-log/search",
        Some(json!({"search": {"type": "Debug", "orderBy": "id ASC"}})),
    )
    .await;
    assert_eq!(logs["total"], 2, "{logs}");
    let first = logs["eventLogs"][0]["message"].as_str().unwrap();
    assert!(
        first.contains("topic [fa-sms]") && first.contains("offset [0]"),
        "{first}"
    );
    assert!(
        !wasmsink.log().contains("hunter2-secret"),
        "a producer password reached the log"
    );
    assert!(
        !first.contains("123456"),
        "the payload stays out of event logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_fails_within_max_block_ms_without_holding_up_other_requests() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let wasmsink = started(&broker, dir.path()).await;
    let api = wasmsink.api().to_owned();
    let nowhere = format!("127.0.0.1:{}", crate::support::free_port());
    let id = create_messenger(
        &api,
        json!({"type": "Kafka", "name": "down", "defaultTopic": "fa-sms",
               "producer": {"bootstrap.servers": nowhere, "max.block.ms": "1500"}}),
    )
    .await;
    let started = Instant::now();
    let send = tokio::spawn({
        let api = api.clone();
        async move {
            let answer = call(
                &api,
                Method::POST,
                &format!("/api/messenger/{id}/send"),
                Some(json!({"message": {}})),
            )
            .await;
            (answer, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quick = Instant::now();
    let (status, _) = call(&api, Method::GET, "/api/messenger", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        quick.elapsed() < Duration::from_millis(500),
        "a send in flight held up another request"
    );
    assert!(
        !send.is_finished(),
        "the send was not in flight during that request"
    );
    let ((status, failure), took) = send.await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{failure}");
    assert!(
        took >= Duration::from_millis(1_400) && took < Duration::from_millis(3_000),
        "{took:?}"
    );
    let (_, logs) = call(
        &api,
        Method::POST,
        "/api/system/event-log/search",
        Some(json!({"search": {"type": "Error", "message": "*fa-sms*"}})),
    )
    .await;
    assert_eq!(logs["total"], 1, "{logs}");
    assert_eq!(
        logs["eventLogs"][0]["id"],
        failure["generalErrors"][0]["data"]["eventLogId"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn messengers_and_event_logs_survive_a_restart() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut first = started(&broker, dir.path()).await;
    let id = create_messenger(
        first.api(),
        json!({"type": "Kafka", "name": "kept", "defaultTopic": "t", "data": {"a": [1]}}),
    )
    .await;
    let (_, before) = call(
        first.api(),
        Method::GET,
        &format!("/api/messenger/{id}"),
        None,
    )
    .await;
    let (status, _) = call(
        first.api(),
        Method::POST,
        &format!("/api/messenger/{id}/send"),
        Some(json!({"message": 1})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::GATEWAY_TIMEOUT,
        "localhost:9092 has no broker"
    );
    assert!(first.terminate(PATIENCE).success());

    let second = started(&broker, dir.path()).await;
    let (status, after) = call(
        second.api(),
        Method::GET,
        &format!("/api/messenger/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after, before);
    let (_, logs) = call(
        second.api(),
        Method::GET,
        "/api/system/event-log/search?type=Error",
        None,
    )
    .await;
    assert_eq!(logs["total"], 1, "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_go_through_a_messenger_to_another_cluster() {
    let source = Broker::start();
    source.create_topic("orders", 1);
    let other_cluster = Broker::start();
    other_cluster.create_topic("orders-dlq", 1);
    let receiver = Receiver::start(|_| please_retry(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let wasmsink = started(&source, dir.path()).await;
    let api = wasmsink.api();
    // The connector may come first: its messenger is looked up per dead letter.
    let connector = json!({"name": "orders-sink", "config": {"topics": "orders",
        "callback.request.url": receiver.url("/"), "retry.backoff.sec": "0.1",
        "errors.deadletterqueue.messenger": "dlq-cluster"}});
    let (status, created) = call(api, Method::POST, "/connectors", Some(connector)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    source
        .produce("orders", 0, Some("k"), Some(b"bad"), &[])
        .await;
    let trace = crate::support::wait_for_failed(api, "orders-sink").await;
    assert!(
        trace.contains("errors.deadletterqueue.messenger"),
        "{trace}"
    );

    let id = create_messenger(
        api,
        json!({"type": "Kafka", "name": "dlq-cluster", "defaultTopic": "orders-dlq",
               "producer": {"bootstrap.servers": other_cluster.bootstrap()}}),
    )
    .await;
    let (status, _) = call(api, Method::POST, "/connectors/orders-sink/restart", None).await;
    assert!(status.is_success(), "{status}");
    // The record was not committed while no messenger could take it.
    let dead = &other_cluster.read("orders-dlq", 1, 1)[0];
    assert_eq!(
        (dead.key(), dead.payload()),
        (Some(&b"k"[..]), Some(&b"bad"[..]))
    );
    assert_eq!(
        header_value(dead, "__connect.errors.connector.name"),
        Some(&b"orders-sink"[..])
    );
    let (status, refused) = call(api, Method::DELETE, &format!("/api/messenger/{id}"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused["fieldErrors"]["messengerId"][0]["code"],
        "[inUseByConnector]messengerId"
    );
}
