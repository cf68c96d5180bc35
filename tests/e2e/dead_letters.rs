//! Records given up on go to the dead-letter topic with their context, and
//! null values follow `behavior.on.null.values`.

use std::time::Duration;

use rdkafka::Message;

use crate::support::{
    Broker, PATIENCE, Receiver, Wasmsink, config, header_value, no_retry, please_retry,
};

#[tokio::test(flavor = "multi_thread")]
async fn dropped_records_go_to_the_dead_letter_topic_with_context_headers() {
    let broker = Broker::start();
    broker.create_topic("orders", 2);
    broker.create_topic("orders-dlq", 1);
    let receiver = Receiver::start(|r| {
        if r.body.starts_with(b"bad") {
            please_retry(500)
        } else {
            no_retry()
        }
    })
    .await;
    broker
        .produce(
            "orders",
            1,
            Some("key-1"),
            Some(b"bad-1"),
            &[("origin", b"shop"), ("origin", b"app")],
        )
        .await;
    broker
        .produce("orders", 1, Some("key-2"), Some(b"good-2"), &[])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = format!(
        "[connectors.orders-sink]\ntopics = \"orders\"\ncallback.request.url = \"{}\"\nretry.backoff.sec = \"0.1\"\n\
         errors.deadletterqueue.topic.name = \"orders-dlq\"\n",
        receiver.url("/")
    );
    let wasmsink = Wasmsink::start(dir.path(), &config(&broker, &connectors));
    receiver.wait_for(3, PATIENCE).await;

    // Exactly one dead letter: the bad record, parked once.
    let dead = broker.read_exactly("orders-dlq", 1, 1);
    let record = &dead[0];
    assert_eq!(record.key(), Some(&b"key-1"[..]));
    assert_eq!(record.payload(), Some(&b"bad-1"[..]));
    let header =
        |name: &str| header_value(record, name).map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(
        header("origin").as_deref(),
        Some("shop"),
        "original headers come first, in order"
    );
    assert_eq!(header("__connect.errors.topic").as_deref(), Some("orders"));
    assert_eq!(header("__connect.errors.partition").as_deref(), Some("1"));
    assert_eq!(header("__connect.errors.offset").as_deref(), Some("0"));
    assert_eq!(
        header("__connect.errors.connector.name").as_deref(),
        Some("orders-sink")
    );
    assert_eq!(header("__connect.errors.attempts").as_deref(), Some("2"));
    assert_eq!(
        header("__connect.errors.http.status").as_deref(),
        Some("500")
    );
    assert!(
        header("__connect.errors.exception.message")
            .unwrap()
            .contains("retry=true")
    );
    use rdkafka::message::Headers;
    let origins: Vec<_> = record
        .headers()
        .unwrap()
        .iter()
        .filter(|h| h.key == "origin")
        .map(|h| h.value.unwrap().to_vec())
        .collect();
    assert_eq!(origins, [b"shop".to_vec(), b"app".to_vec()]);
    wasmsink
        .wait_for_log("record sent to the dead-letter topic", PATIENCE)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn null_values_are_ignored_sent_or_fail_as_configured() {
    let broker = Broker::start();
    for topic in ["ignore", "send", "fail"] {
        broker.create_topic(topic, 1);
        broker.produce(topic, 0, Some("k"), None, &[]).await;
        broker
            .produce(
                topic,
                0,
                Some("k"),
                Some(format!("{topic}-after").as_bytes()),
                &[],
            )
            .await;
    }
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = ["ignore", "send", "fail"]
        .iter()
        .map(|b| format!("[connectors.{b}]\ntopics = \"{b}\"\ncallback.request.url = \"{}\"\nbehavior.on.null.values = \"{b}\"\n", receiver.url(&format!("/{b}"))))
        .collect::<String>();
    let config = config(&broker, &connectors);
    let mut wasmsink = Wasmsink::start(dir.path(), &config);
    wasmsink.wait_for_log("connector FAILED", PATIENCE).await;
    receiver.wait_for(3, PATIENCE).await;
    receiver
        .assert_no_more_than(3, Duration::from_millis(800))
        .await;
    let seen: Vec<(String, String)> = receiver
        .requests()
        .iter()
        .map(|r| (r.uri.path().to_owned(), r.text()))
        .collect();
    assert!(
        seen.contains(&("/ignore".into(), "ignore-after".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("/send".into(), String::new())),
        "send: the tombstone is sent with an empty body: {seen:?}"
    );
    assert!(
        seen.contains(&("/send".into(), "send-after".into())),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|(path, _)| path == "/fail"),
        "fail: the connector stops at the tombstone: {seen:?}"
    );
    let log = wasmsink.log();
    assert!(
        log.contains("null value and behavior.on.null.values=fail"),
        "{log}"
    );
    assert!(log.contains("skipping a record with a null value"), "{log}");

    // `fail` stopped without committing the tombstone: a restart stops on
    // the same record again, and the record behind it is never sent.
    assert!(wasmsink.terminate(PATIENCE).success(), "{log}");
    let again = Wasmsink::start(dir.path(), &config);
    again.wait_for_log("connector FAILED", PATIENCE).await;
    assert!(
        again.log().contains("record fail/0/0 has a null value"),
        "{}",
        again.log()
    );
    receiver
        .assert_no_more_than(3, Duration::from_millis(800))
        .await;
}
