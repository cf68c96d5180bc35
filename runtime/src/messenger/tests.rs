//! The messenger service: FusionAuth's rules across create, replace, patch
//! and delete, and sends through librdkafka's mock cluster and to an
//! unreachable broker.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::json;

use super::*;

fn body(name: &str, bootstrap: &str) -> Value {
    json!({"messenger": {"type": "Kafka", "name": name, "defaultTopic": "sms",
        "producer": {"bootstrap.servers": bootstrap}}})
}

fn outgoing(value: &str) -> Outgoing {
    Outgoing {
        topic: None,
        key: Some(b"user-1".to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: OwnedHeaders::new(),
    }
}

fn codes(error: MessengerError) -> Vec<String> {
    match error {
        MessengerError::Invalid(errors) => errors.codes().into_iter().map(str::to_owned).collect(),
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn changes_follow_fusionauths_rules_and_failed_ones_change_nothing() {
    let messengers = Messengers::in_memory().unwrap();
    let id = Uuid::new_v4();
    let first = messengers
        .create(Some(id), &body("a", "k:1"))
        .await
        .unwrap();
    assert_eq!(first.insert_instant, first.last_update_instant);
    let again = messengers
        .create(Some(id), &body("b", "k:1"))
        .await
        .unwrap_err();
    assert_eq!(codes(again), ["[duplicate]messengerId"]);
    let twin = messengers
        .create(None, &body("a", "k:1"))
        .await
        .unwrap_err();
    assert_eq!(codes(twin), ["[duplicate]messenger.name"]);
    messengers.create(None, &body("b", "k:1")).await.unwrap();

    let patched = messengers
        .patch(
            &id,
            PatchFlavour::Original,
            &json!({"messenger": {"debug": true}}),
        )
        .await
        .unwrap();
    assert!(patched.debug);
    assert!(patched.last_update_instant > first.last_update_instant);
    assert_eq!(patched.insert_instant, first.insert_instant);
    // A PUT that omits debug and data resets them.
    let replaced = messengers.replace(&id, &body("a", "k:1")).await.unwrap();
    assert!(!replaced.debug);
    let rename = messengers
        .patch(
            &id,
            PatchFlavour::MergePatch,
            &json!({"messenger": {"name": "b"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(codes(rename), ["[duplicate]messenger.name"]);
    let blank = messengers
        .patch(
            &id,
            PatchFlavour::MergePatch,
            &json!({"messenger": {"defaultTopic": " "}}),
        )
        .await
        .unwrap_err();
    assert_eq!(codes(blank), ["[blank]messenger.defaultTopic"]);
    assert_eq!(
        messengers.get(&id).unwrap(),
        replaced,
        "failed changes change nothing"
    );
    assert_eq!(
        messengers
            .list()
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(messengers.find("b").unwrap().name, "b");
    assert_eq!(messengers.find(&id.simple().to_string()).unwrap().id, id);
    messengers.delete(&id).await.unwrap();
    assert!(matches!(
        messengers.delete(&id).await,
        Err(MessengerError::NotFound)
    ));
    assert!(matches!(
        messengers.replace(&id, &body("a", "k:1")).await,
        Err(MessengerError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_reuse_one_producer_and_debug_writes_an_event_log_per_send() {
    let cluster = MockCluster::<DefaultProducerContext>::new(1).unwrap();
    cluster.create_topic("sms", 1, 1).unwrap();
    let messengers = Messengers::in_memory().unwrap();
    let mut create = body("m", &cluster.bootstrap_servers());
    create["messenger"]["debug"] = json!(true);
    let id = messengers.create(None, &create).await.unwrap().id;
    let first = messengers.send(&id, outgoing("{\"n\":1}")).await.unwrap();
    let second = messengers.send(&id, outgoing("{\"n\":2}")).await.unwrap();
    assert_eq!((first.topic.as_str(), first.partition), ("sms", 0));
    assert_eq!(second.offset, first.offset + 1);
    assert_eq!(
        messengers.producers().built(),
        1,
        "one producer, not one per send"
    );
    let search = EventLogSearch {
        kind: Some(EventLogType::Debug),
        ..EventLogSearch::default()
    };
    let (logs, total) = messengers.event_logs().search_event_logs(&search).unwrap();
    assert_eq!(total, 2);
    assert!(
        logs[0]
            .message
            .contains(&format!("offset [{}]", second.offset)),
        "{}",
        logs[0].message
    );
    assert!(
        !logs[0].message.contains("\"n\""),
        "no payload in event logs"
    );

    messengers
        .patch(
            &id,
            PatchFlavour::Original,
            &json!({"messenger": {"debug": false, "producer": {"acks": "1"}}}),
        )
        .await
        .unwrap();
    messengers.send(&id, outgoing("{}")).await.unwrap();
    assert_eq!(
        messengers.producers().built(),
        2,
        "a changed producer map rebuilds it"
    );
    let (_, total) = messengers.event_logs().search_event_logs(&search).unwrap();
    assert_eq!(total, 2, "debug off: successful sends write nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_fails_within_max_block_ms_and_leaves_an_error_log() {
    let messengers = Messengers::in_memory().unwrap();
    let create = json!({"messenger": {"type": "Kafka", "name": "down", "defaultTopic": "sms",
        "producer": {"bootstrap.servers": "127.0.0.1:1", "max.block.ms": "800",
                     "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"hunter2\";"}}});
    let id = messengers.create(None, &create).await.unwrap().id;
    let started = Instant::now();
    let failure = messengers.send(&id, outgoing("{}")).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(2_000),
        "{took:?}"
    );
    assert!(
        matches!(failure.error, SendError::TimedOut(800)),
        "{:?}",
        failure.error
    );
    let entry = messengers
        .event_logs()
        .event_log(failure.event_log.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(entry.kind, EventLogType::Error);
    assert!(
        entry
            .message
            .starts_with("Failed to send a message to topic [sms]"),
        "{}",
        entry.message
    );
    assert!(!entry.message.contains("hunter2"));
    assert_eq!(messengers.send_counts()[0].failed, 1);
    let mut text = String::new();
    crate::metrics::render_messengers(&mut text, &messengers.send_counts());
    assert!(
        text.contains("wasmsink_messenger_sends_total{messenger=\"down\",outcome=\"failed\"} 1"),
        "{text}"
    );
}
