//! Records reach the callback in order per partition, with the right
//! request, and responses are read with the seed's semantics.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use crate::support::{Broker, PATIENCE, Receiver, Wasmsink, config, offsets_by_partition};

#[tokio::test(flavor = "multi_thread")]
async fn records_arrive_in_order_per_partition_across_topics() {
    let broker = Broker::start();
    broker.create_topic("alpha", 3);
    broker.create_topic("beta", 3);
    let receiver = Receiver::ok().await;
    // (topic, partition) → [(offset, value)] in produce order.
    type Produced = BTreeMap<(String, i32), Vec<(i64, Vec<u8>)>>;
    let mut produced = Produced::new();
    for seq in 0..20 {
        for topic in ["alpha", "beta"] {
            for partition in 0..3 {
                let value = format!(r#"{{"key":"{topic}-{partition}","seq":{seq}}}"#).into_bytes();
                let offset = broker
                    .produce(topic, partition, Some("k"), Some(&value), &[])
                    .await;
                produced
                    .entry((topic.to_owned(), partition))
                    .or_default()
                    .push((offset, value));
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let connectors = format!(
        "[connectors.ordered]\ntopics = \"alpha,beta\"\ncallback.request.url = \"{}\"\ncallback.request.method = \"PUT\"\n\
         callback.request.headers = '{{\"Content-Type\":\"application/json\",\"apikey\":\"secret-key\"}}'\n",
        receiver.url("/hook")
    );
    let wasmsink = Wasmsink::start(dir.path(), &config(&broker, &connectors));

    let requests = receiver.wait_for(120, PATIENCE).await;
    receiver
        .assert_no_more_than(120, Duration::from_millis(500))
        .await;
    let by_partition = offsets_by_partition(&requests);
    for (key, records) in &produced {
        let expected: Vec<i64> = records.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(
            by_partition.get(key),
            Some(&expected),
            "partition {key:?} out of order or incomplete"
        );
    }
    for request in &requests {
        let (topic, partition, offset) = request.position();
        let (_, value) = produced[&(topic.clone(), partition)]
            .iter()
            .find(|(o, _)| *o == offset)
            .unwrap();
        assert_eq!(
            &request.body, value,
            "the body is the record value, unchanged"
        );
        assert_eq!(request.method, "PUT");
        assert_eq!(request.uri.path(), "/hook");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("apikey"), Some("secret-key"));
        assert_eq!(request.header("x-kafka-topic"), Some(topic.as_str()));
        assert_eq!(request.header("x-b3-sampled"), Some("Defer"));
        assert_eq!(request.header("x-b3-traceid").map(str::len), Some(16));
        assert_eq!(
            request.header("x-b3-spanid"),
            request.header("x-b3-traceid")
        );
    }
    assert!(
        !wasmsink.log().contains("secret-key"),
        "header values must never be logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_false_on_a_500_is_success() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    let receiver = Receiver::start(|_| {
        (
            500,
            r#"{"message":"User with ID=test not found","retry":false}"#.to_owned(),
        )
    })
    .await;
    for n in 0..3 {
        broker
            .produce("t", 0, None, Some(format!("r{n}").as_bytes()), &[])
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let connectors = format!(
        "[connectors.c]\ntopics = \"t\"\ncallback.request.url = \"{}\"\nretry.backoff.sec = \"0.1\"\n",
        receiver.url("/")
    );
    let _wasmsink = Wasmsink::start(dir.path(), &config(&broker, &connectors));
    let requests = receiver.wait_for(3, PATIENCE).await;
    receiver
        .assert_no_more_than(3, Duration::from_millis(800))
        .await;
    let bodies: Vec<String> = requests.iter().map(|r| r.text()).collect();
    assert_eq!(
        bodies,
        ["r0", "r1", "r2"],
        "one attempt each: retry=false wins over the status"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn success_on_2xx_accepts_a_2xx_without_a_flag() {
    let broker = Broker::start();
    broker.create_topic("lenient", 1);
    broker.create_topic("strict", 1);
    // 204 without a body: no retry flag.
    let receiver = Receiver::start(|_| (204, String::new())).await;
    broker.produce("lenient", 0, None, Some(b"l0"), &[]).await;
    broker.produce("lenient", 0, None, Some(b"l1"), &[]).await;
    broker.produce("strict", 0, None, Some(b"s0"), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = format!(
        "[connectors.lenient]\ntopics = \"lenient\"\ncallback.request.url = \"{url}\"\ncallback.success.on.2xx = true\n\n\
         [connectors.strict]\ntopics = \"strict\"\ncallback.request.url = \"{url}\"\nretry.backoff.sec = \"0.2,0.2\"\n",
        url = receiver.url("/")
    );
    let wasmsink = Wasmsink::start(dir.path(), &config(&broker, &connectors));
    // lenient: 1 attempt per record; strict: 1 + 2 retries, then dropped.
    receiver.wait_for(5, PATIENCE).await;
    wasmsink
        .wait_for_log("Dropping the message", PATIENCE)
        .await;
    receiver
        .assert_no_more_than(5, Duration::from_millis(800))
        .await;
    let requests = receiver.requests();
    let count = |body: &str| {
        requests
            .iter()
            .filter(|r| r.body == body.as_bytes())
            .count()
    };
    assert_eq!((count("l0"), count("l1"), count("s0")), (1, 1, 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn request_delay_holds_each_record_until_its_timestamp_plus_the_delay() {
    let broker = Broker::start();
    broker.create_topic("late", 2);
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = format!(
        "[connectors.c]\ntopics = \"late\"\ncallback.request.url = \"{}\"\nrequest.delay.sec = 2\n",
        receiver.url("/")
    );
    let wasmsink = Wasmsink::start(dir.path(), &config(&broker, &connectors));
    wasmsink.wait_until_assigned().await;
    for partition in 0..2 {
        broker
            .produce(
                "late",
                partition,
                None,
                Some(format!("p{partition}").as_bytes()),
                &[],
            )
            .await;
    }
    let requests = receiver.wait_for(2, PATIENCE).await;
    let messages = broker.read("late", 2, 2);
    for request in &requests {
        let (_, partition, _) = request.position();
        let message = messages
            .iter()
            .find(|m| rdkafka::Message::partition(*m) == partition)
            .unwrap();
        let timestamp = rdkafka::Message::timestamp(message).to_millis().unwrap();
        let arrived = request.wall.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let waited = arrived - timestamp;
        assert!(
            (1_950..6_000).contains(&waited),
            "partition {partition} delivered {waited} ms after its timestamp"
        );
    }
    // Each partition waits on its own: the two delays overlap instead of adding up.
    let apart = requests[1].at.duration_since(requests[0].at);
    assert!(
        apart < Duration::from_millis(1_000),
        "partitions were delayed one after the other ({apart:?} apart)"
    );
}

/// A partition whose record is already due is delivered while another
/// partition's record waits out its delay: a connector-wide gate (one wait
/// after another) would hold it behind the waiting one.
#[tokio::test(flavor = "multi_thread")]
async fn request_delay_never_holds_up_other_partitions() {
    let broker = Broker::start();
    broker.create_topic("late", 2);
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = format!(
        "[connectors.c]\ntopics = \"late\"\ncallback.request.url = \"{}\"\nrequest.delay.sec = 6\n",
        receiver.url("/")
    );
    let wasmsink = Wasmsink::start(dir.path(), &config(&broker, &connectors));
    wasmsink.wait_until_assigned().await;
    broker.produce("late", 0, None, Some(b"waits"), &[]).await;
    // p0's record is now waiting for its 6 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let produced = std::time::Instant::now();
    broker
        .produce_at("late", 1, None, Some(b"due"), &[], Some(now_ms - 60_000))
        .await;
    let first = receiver.wait_for(1, PATIENCE).await;
    assert_eq!(
        first[0].text(),
        "due",
        "the due record waited behind the other partition"
    );
    assert!(
        produced.elapsed() < Duration::from_secs(3),
        "the due record took {:?}",
        produced.elapsed()
    );
    let both = receiver.wait_for(2, PATIENCE).await;
    assert_eq!(both[1].text(), "waits");
}
