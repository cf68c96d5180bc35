//! Start-up refusal, crash recovery and graceful shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{Broker, PATIENCE, Receiver, Wasmsink, config, offsets_by_partition};

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_config_is_refused_before_anything_is_consumed() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    broker.produce("t", 0, None, Some(b"x"), &[]).await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = format!(
        "[connectors.good]\ntopics = \"t\"\ncallback.request.url = \"{url}\"\n\n\
         [connectors.bad]\ntopics = \"t\"\ncallback.request.url = \"{url}\"\nexception.strategy = \"SOMETIMES\"\nretry.backoff.sec = \"5,,30\"\n",
        url = receiver.url("/")
    );
    let mut wasmsink = Wasmsink::start(dir.path(), &config(&broker, &connectors));
    let status = wasmsink.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(2));
    let log = wasmsink.log();
    assert!(
        log.contains(r#"connector "bad": key "exception.strategy""#),
        "{log}"
    );
    assert!(
        log.contains(r#"connector "bad": key "retry.backoff.sec""#),
        "{log}"
    );
    receiver
        .assert_no_more_than(0, Duration::from_millis(300))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_property_librdkafka_refuses_stops_the_start() {
    let broker = Broker::start();
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = format!(
        "[connectors.c]\ntopics = \"t\"\ncallback.request.url = \"{}\"\nconsumer.override.no.such.property = \"1\"\n",
        receiver.url("/")
    );
    let mut wasmsink = Wasmsink::start(dir.path(), &config(&broker, &connectors));
    assert_eq!(wasmsink.wait_exit(Duration::from_secs(20)).code(), Some(2));
    let log = wasmsink.log();
    assert!(
        log.contains(r#"connector "c""#) && log.contains("no.such.property"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_run_then_restart_delivers_every_record_at_least_once() {
    const PER_PARTITION: i64 = 100;
    /// Partition 0 stalls on this offset: the kill lands while it is in flight.
    const STALLED: i64 = 40;
    let broker = Broker::start();
    broker.create_topic("crash", 3);
    for n in 0..PER_PARTITION {
        for partition in 0..3 {
            let value = format!("{partition}-{n}");
            broker
                .produce("crash", partition, None, Some(value.as_bytes()), &[])
                .await;
        }
    }
    let stalled_body = format!("0-{STALLED}").into_bytes();
    let held_once = std::sync::atomic::AtomicBool::new(false);
    let receiver = Receiver::start_holding(
        |_| crate::support::no_retry(),
        move |r| {
            let first_time = r.body == stalled_body
                && !held_once.swap(true, std::sync::atomic::Ordering::SeqCst);
            if first_time {
                Duration::from_secs(30)
            } else {
                Duration::from_millis(5)
            }
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = format!(
        "[connectors.crash]\ntopics = \"crash\"\ncallback.request.url = \"{}\"\n",
        receiver.url("/")
    );
    let config = config(&broker, &connectors);

    let mut first = Wasmsink::start(dir.path(), &config);
    let stalled = format!("0-{STALLED}");
    let deadline = std::time::Instant::now() + PATIENCE;
    while !receiver.requests().iter().any(|r| r.text() == stalled) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled record never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Long enough for auto-commit (every second) to commit the finished
    // prefix, with room for a busy machine.
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    first.kill9();
    let before = receiver.requests().len();
    assert!(
        before < 300,
        "the kill must land mid-run ({before} requests)"
    );

    let _second = Wasmsink::start(dir.path(), &config);
    receiver.wait_for_distinct(300, PATIENCE * 2).await;
    let all = receiver.requests();
    let (first_run, second_run) = all.split_at(before);
    let first_offsets = offsets_by_partition(first_run);
    let second_offsets = offsets_by_partition(second_run);
    for partition in 0..3 {
        let key = ("crash".to_owned(), partition);
        let sorted = |v: &Vec<i64>| v.windows(2).all(|w| w[0] < w[1]);
        let one = first_offsets.get(&key).cloned().unwrap_or_default();
        let two = second_offsets.get(&key).cloned().unwrap_or_default();
        assert!(
            sorted(&one) && sorted(&two),
            "partition {partition} out of order: {one:?} / {two:?}"
        );
    }
    // The record in flight at the kill was not finished: the restart starts
    // exactly there. Not past it (a lost record), and not before it: the
    // finished prefix was committed by auto-commit during the 2.5 s wait.
    let resumed_at = second_offsets[&("crash".to_owned(), 0)][0];
    assert_eq!(
        resumed_at, STALLED,
        "partition 0 resumed at {resumed_at}; {STALLED} was the unfinished record"
    );
    assert!(
        second_run.iter().any(|r| r.text() == stalled),
        "the unfinished record was not sent again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_commits_and_exits_zero() {
    let broker = Broker::start();
    broker.create_topic("calm", 2);
    for n in 0..20 {
        broker
            .produce("calm", n % 2, None, Some(format!("r{n}").as_bytes()), &[])
            .await;
    }
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = format!(
        "[connectors.calm]\ntopics = \"calm\"\ncallback.request.url = \"{}\"\n",
        receiver.url("/")
    );
    let config = config(&broker, &connectors);

    let mut first = Wasmsink::start(dir.path(), &config);
    receiver.wait_for(20, PATIENCE).await;
    let status = first.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}\n{}", first.log());
    assert!(
        first.log().contains("committed finished offsets"),
        "{}",
        first.log()
    );

    // A restart resumes after the committed records: only new ones arrive.
    let second = Wasmsink::start(dir.path(), &config);
    second.wait_until_assigned().await;
    broker.produce("calm", 0, None, Some(b"fresh"), &[]).await;
    let requests = receiver.wait_for(21, PATIENCE).await;
    receiver
        .assert_no_more_than(21, Duration::from_secs(1))
        .await;
    assert_eq!(requests[20].text(), "fresh");
    let counts: BTreeMap<String, usize> = requests.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.text()).or_default() += 1;
        m
    });
    assert!(
        counts.values().all(|c| *c == 1),
        "duplicates after a clean restart: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_between_two_instances_loses_nothing() {
    const PER_PARTITION: i64 = 100;
    let broker = Broker::start();
    broker.create_topic("shared", 4);
    for n in 0..PER_PARTITION {
        for partition in 0..4 {
            let value = format!("{partition}-{n}");
            broker
                .produce("shared", partition, None, Some(value.as_bytes()), &[])
                .await;
        }
    }
    let receiver = Receiver::start_holding(
        |_| crate::support::no_retry(),
        |_| Duration::from_millis(60),
    )
    .await;
    let instance = |name: &str| {
        let connectors = format!(
            "[connectors.shared]\ntopics = \"shared\"\ncallback.request.url = \"{}\"\ncallback.request.headers = \"X-Instance:{name}\"\n",
            receiver.url("/")
        );
        config(&broker, &connectors)
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let first = Wasmsink::start(dir_a.path(), &instance("a"));
    receiver.wait_for(20, PATIENCE).await;
    // A second instance joins the same consumer group: partitions move.
    let second = Wasmsink::start(dir_b.path(), &instance("b"));
    receiver
        .wait_for_distinct(4 * PER_PARTITION as usize, PATIENCE * 2)
        .await;
    assert!(
        first.log().contains("partitions revoked"),
        "no rebalance happened:\n{}",
        first.log()
    );
    assert!(second.log().contains("partitions assigned"));
}

/// A partition taken away while its lane is mid-attempt and handed back
/// before that attempt ends keeps flowing: the new lane must not lose the
/// wake-ups of its partition's queue when the old lane finally lets go.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_handed_back_mid_attempt_keeps_flowing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const PARTITIONS: i32 = 4;
    // Longer than the hand-over: the revoke waits up to the grace
    // (shutdown.timeout.sec = 5) for a's held attempts, then b joins and
    // leaves, and the partitions come back while a's old lanes still hold.
    const HOLD: Duration = Duration::from_secs(20);
    let broker = Broker::start();
    broker.create_topic("shared", PARTITIONS);
    let produce_round = |round: usize| {
        let broker = &broker;
        async move {
            for partition in 0..PARTITIONS {
                let value = format!("{partition}-{round}");
                broker
                    .produce("shared", partition, None, Some(value.as_bytes()), &[])
                    .await;
            }
        }
    };
    produce_round(0).await;
    // Instance a's attempts are held while `holding`, so its lanes are
    // mid-attempt when partitions move away and back.
    let holding = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start_holding(|_| crate::support::no_retry(), {
        let holding = holding.clone();
        move |r| {
            if r.header("x-instance") == Some("a") && holding.load(Ordering::SeqCst) {
                HOLD
            } else {
                Duration::ZERO
            }
        }
    })
    .await;
    let instance = |name: &str| {
        config(
            &broker,
            &format!(
                "[connectors.shared]\ntopics = \"shared\"\ncallback.request.url = \"{}\"\ncallback.request.headers = \"X-Instance:{name}\"\n",
                receiver.url("/")
            ),
        )
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Wasmsink::start(dir_a.path(), &instance("a"));
    receiver
        .wait_for_distinct(PARTITIONS as usize, PATIENCE)
        .await;

    holding.store(true, Ordering::SeqCst);
    let held_since = std::time::Instant::now();
    produce_round(1).await;
    receiver.wait_for(2 * PARTITIONS as usize, PATIENCE).await;
    let mut second = Wasmsink::start(dir_b.path(), &instance("b"));
    first.wait_for_log("partitions revoked", PATIENCE).await;
    second.wait_for_log("partitions assigned", PATIENCE).await;
    // b leaves at once: its partitions go back to a while a's old lanes are
    // still held in their attempts.
    assert!(second.terminate(PATIENCE).success());
    let deadline = std::time::Instant::now() + PATIENCE;
    while first.log().matches("partitions assigned").count() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the partitions never came back:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    holding.store(false, Ordering::SeqCst);
    assert!(
        held_since.elapsed() < HOLD,
        "the hand-back took longer than the hold; the test proves nothing"
    );
    // Once the old lanes have let go of their queues, records produced
    // afterwards still reach the callback.
    tokio::time::sleep((held_since + HOLD + Duration::from_secs(1)) - std::time::Instant::now())
        .await;
    for round in 2..5 {
        produce_round(round).await;
    }
    receiver
        .wait_for_distinct(5 * PARTITIONS as usize, PATIENCE * 2)
        .await;
}

/// A one-partition topic `topic` holding the records `{prefix}0..{count}`,
/// and the configuration of a connector `topic` that reads it and calls
/// `receiver` with the connector keys `extra`.
async fn numbered_topic(
    broker: &Broker,
    receiver: &Receiver,
    topic: &str,
    (prefix, count): (&str, usize),
    extra: &str,
) -> String {
    broker.create_topic(topic, 1);
    for n in 0..count {
        broker
            .produce(topic, 0, None, Some(format!("{prefix}{n}").as_bytes()), &[])
            .await;
    }
    let connectors = format!(
        "[connectors.{topic}]\ntopics = \"{topic}\"\ncallback.request.url = \"{}\"\n{extra}",
        receiver.url("/")
    );
    config(broker, &connectors)
}

/// A receiver that accepts every request, holding the first one whose body
/// is `body` for `hold`.
async fn holding_first(body: &'static str, hold: Duration) -> Receiver {
    let held_once = std::sync::atomic::AtomicBool::new(false);
    Receiver::start_holding(
        |_| crate::support::no_retry(),
        move |r| {
            let first = r.body == body.as_bytes()
                && !held_once.swap(true, std::sync::atomic::Ordering::SeqCst);
            if first { hold } else { Duration::ZERO }
        },
    )
    .await
}

/// How often each body arrived.
fn arrivals(receiver: &Receiver) -> BTreeMap<String, usize> {
    receiver
        .requests()
        .iter()
        .fold(BTreeMap::new(), |mut counts, r| {
            *counts.entry(r.text()).or_default() += 1;
            counts
        })
}

/// SIGTERM while an attempt is in flight: the attempt finishes, its record
/// is committed, and a restart never sends it again.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_attempt_in_flight_finish_and_a_restart_never_resends_it() {
    const HOLD: Duration = Duration::from_secs(2);
    let broker = Broker::start();
    let receiver = holding_first("h2", HOLD).await;
    let dir = tempfile::tempdir().unwrap();
    let config = numbered_topic(&broker, &receiver, "held", ("h", 5), "").await;

    let mut first = Wasmsink::start(dir.path(), &config);
    receiver.wait_for_text("h2", PATIENCE).await;
    let asked = std::time::Instant::now();
    let status = first.terminate(PATIENCE);
    assert!(status.success(), "exit status {status:?}\n{}", first.log());
    assert!(
        asked.elapsed() >= HOLD - Duration::from_millis(500),
        "exited after {:?}, before the attempt in flight finished",
        asked.elapsed()
    );
    assert!(
        !first.log().contains("did not finish in time"),
        "{}",
        first.log()
    );

    let second = Wasmsink::start(dir.path(), &config);
    second.wait_until_assigned().await;
    broker.produce("held", 0, None, Some(b"fresh"), &[]).await;
    receiver.wait_for_text("fresh", PATIENCE).await;
    receiver
        .assert_no_more_than(6, Duration::from_secs(1))
        .await;
    let counts = arrivals(&receiver);
    for n in 0..5 {
        assert_eq!(counts.get(&format!("h{n}")), Some(&1), "h{n}: {counts:?}");
    }
}

/// SIGTERM while a record waits for its next attempt: the process exits at
/// once without retrying it, and the restart sends it first.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_back_off_exits_at_once_and_the_restart_retries_the_record() {
    let broker = Broker::start();
    let refused_once = std::sync::atomic::AtomicBool::new(false);
    let receiver = Receiver::start(move |r| {
        if r.body == b"w1" && !refused_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            crate::support::please_retry(503)
        } else {
            crate::support::no_retry()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let backoff = "retry.backoff.sec = \"30\"\n";
    let config = numbered_topic(&broker, &receiver, "wait", ("w", 4), backoff).await;

    let mut first = Wasmsink::start(dir.path(), &config);
    // w1 was refused and now waits out its 30 s back-off.
    first.wait_for_log("will retry", PATIENCE).await;
    let asked = std::time::Instant::now();
    let status = first.terminate(PATIENCE);
    assert!(status.success(), "exit status {status:?}\n{}", first.log());
    // A back-off that ignored the stop would hold the exit until the 5 s
    // shutdown timeout gave up on it.
    assert!(
        asked.elapsed() < Duration::from_millis(4_500),
        "a back-off held the exit for {:?}",
        asked.elapsed()
    );
    assert!(
        !first.log().contains("did not finish in time"),
        "{}",
        first.log()
    );
    assert_eq!(
        arrivals(&receiver),
        BTreeMap::from([("w0".to_owned(), 1), ("w1".to_owned(), 1)]),
        "before the exit: w1 retried, or a later record passed it"
    );

    let _second = Wasmsink::start(dir.path(), &config);
    receiver.wait_for_text("w3", PATIENCE).await;
    receiver
        .assert_no_more_than(5, Duration::from_secs(1))
        .await;
    let texts: Vec<String> = receiver.requests().iter().map(|r| r.text()).collect();
    assert_eq!(texts, ["w0", "w1", "w1", "w2", "w3"]);
}

/// An attempt that outlasts `shutdown.timeout.sec` does not hold the exit
/// past it, and stays uncommitted: the restart sends it again.
#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_longer_than_the_shutdown_timeout_ends_the_process_in_time() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let broker = Broker::start();
    let receiver = holding_first("s1", Duration::from_secs(120)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = numbered_topic(&broker, &receiver, "slow", ("s", 3), "")
        .await
        .replace(
            "shutdown.timeout.sec = 5",
            &format!("shutdown.timeout.sec = {}", TIMEOUT.as_secs()),
        );
    assert!(config.contains("shutdown.timeout.sec = 2"));

    let mut first = Wasmsink::start(dir.path(), &config);
    receiver.wait_for_text("s1", PATIENCE).await;
    let asked = std::time::Instant::now();
    first.terminate(PATIENCE);
    let took = asked.elapsed();
    // The timeout, then the final commit and the consumer's close.
    assert!(
        took < TIMEOUT + Duration::from_secs(3),
        "exited {took:?} after SIGTERM with shutdown.timeout.sec = 2\n{}",
        first.log()
    );
    assert!(
        first.log().contains("did not finish in time"),
        "{}",
        first.log()
    );

    let _second = Wasmsink::start(dir.path(), &config);
    receiver.wait_for_text("s2", PATIENCE).await;
    receiver
        .assert_no_more_than(4, Duration::from_secs(1))
        .await;
    let texts: Vec<String> = receiver.requests().iter().map(|r| r.text()).collect();
    assert_eq!(texts, ["s0", "s1", "s1", "s2"]);
}
