//! Custom guests end to end: the examples against a real broker and real
//! receivers, hostile guests that must not take anything else down, and a
//! guest swapped live.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rdkafka::Message;
use sha2::Sha256;

use crate::support::{
    Broker, PATIENCE, Receiver, Wasmsink, config, header_value, no_retry, please_retry,
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn connector(name: &str, topic: &str, url: &str, extra: &str) -> String {
    format!(
        "[connectors.{name}]\ntopics = \"{topic}\"\ncallback.request.url = \"{url}\"\n{extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn json_envelope_wraps_each_value_and_routes_by_header() {
    let broker = Broker::start();
    broker.create_topic("events", 1);
    broker
        .produce(
            "events",
            0,
            Some("k1"),
            Some(br#"{"amount":5}"#),
            &[("route", b"orders")],
        )
        .await;
    broker
        .produce("events", 0, None, Some(b"plain text"), &[])
        .await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "guest.path = \"{}\"\n",
        wasmsink_guest_artifacts::JSON_ENVELOPE
    );
    let _wasmsink = Wasmsink::start(
        dir.path(),
        &config(
            &broker,
            &connector("env", "events", &receiver.url("/hook"), &extra),
        ),
    );
    let requests = receiver.wait_for(2, PATIENCE).await;
    assert_eq!(requests[0].uri.path(), "/hook/orders");
    let first: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(first["topic"], "events");
    assert_eq!(first["partition"], 0);
    assert_eq!(first["offset"], 0);
    assert_eq!(first["key"], "k1");
    assert_eq!(first["data"], serde_json::json!({"amount": 5}));
    assert!(first["timestamp"].is_i64());
    assert_eq!(requests[1].uri.path(), "/hook");
    let second: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(second["data"], "plain text");
    assert_eq!(second["key"], serde_json::Value::Null);
    // The connector's trace headers are still added after the guest's.
    assert_eq!(requests[0].header("x-kafka-topic"), Some("events"));
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_signing_signs_and_retries_carry_the_same_id() {
    let broker = Broker::start();
    broker.create_topic("hooks", 1);
    broker
        .produce("hooks", 0, None, Some(br#"{"event":"paid"}"#), &[])
        .await;
    // The first attempt is refused; the retry must carry the same id and signature.
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let receiver = Receiver::start(move |_| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            please_retry(500)
        } else {
            no_retry()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "guest.path = \"{}\"\nguest.config.secret = \"{SECRET}\"\nretry.backoff.sec = \"0.2\"\n",
        wasmsink_guest_artifacts::WEBHOOK_SIGNING
    );
    let wasmsink = Wasmsink::start(
        dir.path(),
        &config(
            &broker,
            &connector("signed", "hooks", &receiver.url("/"), &extra),
        ),
    );
    let requests = receiver.wait_for(2, PATIENCE).await;
    let (first, retry) = (&requests[0], &requests[1]);
    let id = first.header("webhook-id").expect("webhook-id");
    assert_eq!(id, "msg_hooks-0-0");
    assert_eq!(retry.header("webhook-id"), Some(id));
    assert_eq!(
        retry.header("webhook-signature"),
        first.header("webhook-signature")
    );
    let timestamp = first.header("webhook-timestamp").unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&first.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(first.header("webhook-signature"), Some(expected.as_str()));
    assert!(
        !wasmsink.log().contains(SECRET.trim_start_matches("whsec_")),
        "the secret must never be logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_retry_honours_retry_after_dead_letters_4xx_and_accepts_any_2xx() {
    let broker = Broker::start();
    broker.create_topic("calls", 1);
    broker.create_topic("calls-dlq", 1);
    for value in ["throttled", "missing", "plain-ok"] {
        broker
            .produce("calls", 0, None, Some(value.as_bytes()), &[])
            .await;
    }
    let throttled_once = std::sync::atomic::AtomicBool::new(false);
    let receiver = Receiver::start(move |r| match r.text().as_str() {
        "throttled" if !throttled_once.swap(true, std::sync::atomic::Ordering::SeqCst) => {
            (429, "slow down".into())
        }
        "missing" => (404, "no such thing".into()),
        _ => (200, "done, no JSON here".into()),
    })
    .await;
    // The guest's own schedule would wait 50-100 ms (base 100ms); the
    // header asks for 1 s, which is also the configured cap.
    receiver.add_answer_header("retry-after", "1");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "guest.path = \"{}\"\nguest.config.base = \"100ms\"\nguest.config.cap = \"1s\"\nerrors.deadletterqueue.topic.name = \"calls-dlq\"\n",
        wasmsink_guest_artifacts::HTTP_RETRY
    );
    let _wasmsink = Wasmsink::start(
        dir.path(),
        &config(
            &broker,
            &connector("calls", "calls", &receiver.url("/"), &extra),
        ),
    );
    let requests = receiver.wait_for(4, PATIENCE).await;
    receiver
        .assert_no_more_than(4, Duration::from_millis(800))
        .await;
    let bodies: Vec<String> = requests.iter().map(|r| r.text()).collect();
    assert_eq!(
        bodies,
        ["throttled", "throttled", "missing", "plain-ok"],
        "2xx without a flag is success; 404 is not retried"
    );
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "the retry came {waited:?} after the 429, not after its Retry-After of 1 s"
    );
    let dead = broker.read("calls-dlq", 1, 1);
    assert_eq!(dead[0].payload(), Some(&b"missing"[..]));
    let reason = String::from_utf8_lossy(
        header_value(&dead[0], "__connect.errors.exception.message").unwrap(),
    )
    .into_owned();
    assert!(reason.contains("HTTP 404"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_javascript_guest_skips_test_records_and_wraps_the_rest() {
    let broker = Broker::start();
    broker.create_topic("js", 1);
    broker
        .produce("js", 0, None, Some(br#"{"test":true,"n":1}"#), &[])
        .await;
    broker
        .produce("js", 0, None, Some(br#"{"n":2}"#), &[])
        .await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    // The default limits, as the README promises.
    let extra = format!("guest.path = \"{}\"\n", wasmsink_guest_artifacts::JS_FILTER);
    let _wasmsink = Wasmsink::start(
        dir.path(),
        &config(&broker, &connector("js", "js", &receiver.url("/"), &extra)),
    );
    let requests = receiver.wait_for(1, PATIENCE * 2).await;
    receiver
        .assert_no_more_than(1, Duration::from_millis(800))
        .await;
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["data"], serde_json::json!({"n": 2}));
    assert_eq!(body["offset"], 1, "the test record at offset 0 was skipped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_guest_stops_only_its_connector_and_loses_nothing() {
    let broker = Broker::start();
    broker.create_topic("bad", 1);
    broker.create_topic("good", 1);
    broker.create_topic("bad-dlq", 1);
    for value in ["before", "panic", "after"] {
        broker
            .produce("bad", 0, None, Some(value.as_bytes()), &[])
            .await;
        broker
            .produce(
                "good",
                0,
                None,
                Some(format!("good-{value}").as_bytes()),
                &[],
            )
            .await;
    }
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let guest = format!(
        "guest.path = \"{}\"\n",
        wasmsink_guest_artifacts::TEST_GUESTS
    );
    let connectors = |policy: &str| {
        connector(
            "bad",
            "bad",
            &receiver.url("/bad"),
            &format!("{guest}{policy}errors.deadletterqueue.topic.name = \"bad-dlq\"\n"),
        ) + &connector("good", "good", &receiver.url("/good"), "")
    };
    let mut first = Wasmsink::start(dir.path(), &config(&broker, &connectors("")));
    first.wait_for_log("connector FAILED", PATIENCE).await;
    receiver.wait_for(4, PATIENCE).await;
    receiver
        .assert_no_more_than(4, Duration::from_millis(800))
        .await;
    let paths: Vec<(String, String)> = receiver
        .requests()
        .iter()
        .map(|r| (r.uri.path().to_owned(), r.text()))
        .collect();
    assert!(paths.contains(&("/bad".into(), "before".into())));
    assert!(
        !paths.iter().any(|(_, body)| body == "after"),
        "nothing past the crashing record: {paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|(p, _)| p == "/good").count(),
        3,
        "the other connector keeps delivering"
    );
    let log = first.log();
    assert!(
        log.contains("trapped") && log.contains("panic requested by record"),
        "{log}"
    );

    // With guest.errors = dead-letter the crashing record is parked and the rest flows.
    first.kill9();
    let _second = Wasmsink::start(
        dir.path(),
        &config(&broker, &connectors("guest.errors = \"dead-letter\"\n")),
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    while !receiver.requests().iter().any(|r| r.text() == "after") {
        assert!(
            std::time::Instant::now() < deadline,
            "the record after the crash never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = broker.read("bad-dlq", 1, 1);
    assert_eq!(dead[0].payload(), Some(&b"panic"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_swapped_by_reload_takes_effect_without_loss_or_duplicates() {
    let broker = Broker::start();
    broker.create_topic("swap", 1);
    for n in 0..3 {
        broker
            .produce(
                "swap",
                0,
                None,
                Some(format!(r#"{{"n":{n}}}"#).as_bytes()),
                &[],
            )
            .await;
    }
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let envelope = format!(
        "guest.path = \"{}\"\n",
        wasmsink_guest_artifacts::JSON_ENVELOPE
    );
    let signing = format!(
        "guest.path = \"{}\"\nguest.config.secret = \"{SECRET}\"\n",
        wasmsink_guest_artifacts::WEBHOOK_SIGNING
    );
    let wasmsink = Wasmsink::start(
        dir.path(),
        &config(
            &broker,
            &connector("swap", "swap", &receiver.url("/"), &envelope),
        ),
    );
    receiver.wait_for(3, PATIENCE).await;

    wasmsink.reload(
        dir.path(),
        &config(
            &broker,
            &connector("swap", "swap", &receiver.url("/"), &signing),
        ),
    );
    wasmsink
        .wait_for_log("reload: updated swap", PATIENCE)
        .await;
    wasmsink.wait_for_log("partitions assigned", PATIENCE).await;
    for n in 3..6 {
        broker
            .produce(
                "swap",
                0,
                None,
                Some(format!(r#"{{"n":{n}}}"#).as_bytes()),
                &[],
            )
            .await;
    }
    let requests = receiver.wait_for(6, PATIENCE).await;
    receiver
        .assert_no_more_than(6, Duration::from_secs(1))
        .await;
    for (n, request) in requests.iter().enumerate() {
        if n < 3 {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            assert_eq!(body["data"]["n"], n, "before the swap: the envelope guest");
            assert!(request.header("webhook-id").is_none());
        } else {
            assert_eq!(
                request.text(),
                format!(r#"{{"n":{n}}}"#),
                "after the swap: the signing guest"
            );
            assert_eq!(
                request.header("webhook-id"),
                Some(format!("msg_swap-0-{n}").as_str())
            );
        }
    }
}

/// A guest spinning for 20 s (within its 10 s CPU budget, as a background
/// call) next to a healthy connector on 12 partitions: the healthy
/// connector's records, produced while the guest spins, arrive within a
/// few seconds (guest calls yield to the other lanes of their thread);
/// after the spinning connector FAILED (the crash-loop breaker, although
/// `guest.errors = drop`), new records still arrive promptly and `/health`
/// shows the healthy one RUNNING.
#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_guest_does_not_stall_other_connectors() {
    let broker = Broker::start();
    broker.create_topic("spin", 1);
    broker.create_topic("healthy", 12);
    // One record spins for 20 s; the panics behind it (each tried twice)
    // trip the crash-loop breaker soon after.
    for value in ["busy:20000", "panic", "panic", "panic"] {
        broker
            .produce("spin", 0, None, Some(value.as_bytes()), &[])
            .await;
    }
    broker
        .produce("healthy", 0, None, Some(b"warm-up"), &[])
        .await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let spin = format!(
        "guest.path = \"{}\"\nguest.errors = \"drop\"\nguest.timeout.transform.ms = 10000\n",
        wasmsink_guest_artifacts::TEST_GUESTS
    );
    let connectors = connector("spin", "spin", &receiver.url("/spin"), &spin)
        + &connector("healthy", "healthy", &receiver.url("/healthy"), "")
        + "[server.guests]\nmax_call_ms = 10000\n";
    let wasmsink = Wasmsink::start(dir.path(), &config(&broker, &connectors));
    let assigned = |name: &str| {
        wasmsink.log().lines().any(|l| {
            l.contains("partitions assigned") && l.contains(&format!("\"connector\":\"{name}\""))
        })
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    while !(assigned("spin") && assigned("healthy")) {
        assert!(std::time::Instant::now() < deadline, "{}", wasmsink.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.wait_for(1, PATIENCE).await;
    // The spin connector took its first record at assignment: it spins for
    // 20 s. Without yields it would hold its lane thread for its whole
    // 10 s budget.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let produced = std::time::Instant::now();
    for i in 0..120 {
        broker
            .produce(
                "healthy",
                i % 12,
                None,
                Some(format!("h{i}").as_bytes()),
                &[],
            )
            .await;
    }
    receiver.wait_for(121, Duration::from_secs(4)).await;
    let took = produced.elapsed();
    assert!(
        !wasmsink.log().contains("panic requested"),
        "the guest was still spinning while the healthy records arrived ({took:?}): {}",
        wasmsink.log()
    );

    wasmsink
        .wait_for_log("connector FAILED", Duration::from_secs(120))
        .await;
    let before = receiver.requests().len();
    for i in 0..12 {
        broker
            .produce(
                "healthy",
                i,
                None,
                Some(format!("after-{i}").as_bytes()),
                &[],
            )
            .await;
    }
    receiver.wait_for(before + 12, Duration::from_secs(4)).await;
    let (status, health) =
        crate::support::call(wasmsink.api(), reqwest::Method::GET, "/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["connectors"]["healthy"], "RUNNING", "{health}");
    assert_eq!(health["connectors"]["spin"], "FAILED", "{health}");
    // guest.errors = drop, yet the crash-loop breaker stopped it.
    let (_, spin) = crate::support::call(
        wasmsink.api(),
        reqwest::Method::GET,
        "/connectors/spin/status",
        None,
    )
    .await;
    let trace = spin["connector"]["trace"].as_str().unwrap_or_default();
    assert!(trace.contains("failed 5 times within 60s"), "{spin}");
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| !r.uri.path().starts_with("/spin")),
        "a dropped record is never sent"
    );
}

/// Produces `values` in order to partition 0 of `topic`.
async fn produce_values(broker: &Broker, topic: &str, values: &[&str]) {
    for value in values {
        broker
            .produce(topic, 0, None, Some(value.as_bytes()), &[])
            .await;
    }
}

/// A test-guests connector `name` with `guest.errors = policy` and the
/// dead-letter topic `{name}-dlq`, reading its own one-partition topic
/// `name` that holds `values`; returns the configuration file.
async fn test_guest_connector(
    broker: &Broker,
    receiver: &Receiver,
    name: &str,
    policy: &str,
    values: &[&str],
) -> String {
    let dead_letters = format!("{name}-dlq");
    broker.create_topic(name, 1);
    broker.create_topic(&dead_letters, 1);
    produce_values(broker, name, values).await;
    let extra = format!(
        "guest.path = \"{}\"\nguest.errors = \"{policy}\"\nerrors.deadletterqueue.topic.name = \"{dead_letters}\"\n",
        wasmsink_guest_artifacts::TEST_GUESTS
    );
    config(broker, &connector(name, name, &receiver.url("/"), &extra))
}

/// Starts wasmsink and waits until connector `name` is FAILED; returns the
/// process and the connector's trace.
async fn start_until_failed(dir: &std::path::Path, config: &str, name: &str) -> (Wasmsink, String) {
    let wasmsink = Wasmsink::start(dir, config);
    wasmsink.wait_for_api().await;
    let trace = crate::support::wait_for_failed(wasmsink.api(), name).await;
    (wasmsink, trace)
}

/// The bodies the receiver got, in arrival order.
fn bodies(receiver: &Receiver) -> Vec<String> {
    receiver.requests().iter().map(|r| r.text()).collect()
}

/// `error(invalid-record)` gives up on that record only (to the dead-letter
/// topic); `error(fatal)` stops the connector without committing its record,
/// whatever `guest.errors` says, so a restart meets it again.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_record_parks_one_record_and_fatal_stops_without_committing() {
    let broker = Broker::start();
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let values = ["a", "invalid", "b", "fatal", "c"];
    let config = test_guest_connector(&broker, &receiver, "errs", "drop", &values).await;

    let (mut first, trace) = start_until_failed(dir.path(), &config, "errs").await;
    assert!(trace.contains("fatal error requested"), "{trace}");
    receiver
        .assert_no_more_than(2, Duration::from_millis(500))
        .await;
    assert_eq!(bodies(&receiver), ["a", "b"]);
    let dead = broker.read_exactly("errs-dlq", 1, 1);
    assert_eq!(dead[0].payload(), Some(&b"invalid"[..]));
    assert!(first.terminate(PATIENCE).success(), "{}", first.log());

    // The fatal record was not committed: the restart stops on it again,
    // and nothing past it is ever sent.
    let (_second, trace) = start_until_failed(dir.path(), &config, "errs").await;
    assert!(trace.contains("fatal error requested"), "{trace}");
    receiver
        .assert_no_more_than(2, Duration::from_millis(500))
        .await;
    assert!(!bodies(&receiver).contains(&"c".to_owned()));
}

/// A guest call that fails is tried once more on a fresh instance: a record
/// that only fails on an instance spoiled by an earlier record is delivered,
/// and the connector keeps running although `guest.errors = stop`.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_call_is_retried_on_a_fresh_instance() {
    let broker = Broker::start();
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let values = ["a", "poison", "b", "c"];
    let config = test_guest_connector(&broker, &receiver, "fresh", "stop", &values).await;
    let wasmsink = Wasmsink::start(dir.path(), &config);
    receiver.wait_for(4, PATIENCE).await;
    receiver
        .assert_no_more_than(4, Duration::from_millis(500))
        .await;
    assert_eq!(bodies(&receiver), ["a", "poison", "b", "c"]);
    let log = wasmsink.log();
    assert_eq!(
        log.matches("trying once more on a fresh instance").count(),
        1,
        "{log}"
    );
    let (_, status) = crate::support::call(
        wasmsink.api(),
        reqwest::Method::GET,
        "/connectors/fresh/status",
        None,
    )
    .await;
    assert_eq!(status["connector"]["state"], "RUNNING", "{status}");
}

/// Five guest failures within 60 s stop the connector even with
/// `guest.errors = dead-letter`: each `panic` record fails twice (the call
/// and its retry on a fresh instance), so the first two are dead-lettered
/// and the third trips the breaker. Neither it nor the record behind it is
/// sent or committed: after a restart (a fresh count) the third is
/// dead-lettered and the last one delivered.
#[tokio::test(flavor = "multi_thread")]
async fn the_crash_loop_breaker_stops_the_connector_whatever_guest_errors_says() {
    let broker = Broker::start();
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let values = ["panic", "panic", "panic", "after"];
    let config = test_guest_connector(&broker, &receiver, "loop", "dead-letter", &values).await;

    let (mut first, trace) = start_until_failed(dir.path(), &config, "loop").await;
    assert!(trace.contains("failed 5 times within 60s"), "{trace}");
    assert!(
        trace.contains("loop/0/2"),
        "the third record tripped it: {trace}"
    );
    receiver
        .assert_no_more_than(0, Duration::from_millis(500))
        .await;
    broker.read_exactly("loop-dlq", 1, 2);
    assert!(first.terminate(PATIENCE).success(), "{}", first.log());

    let _second = Wasmsink::start(dir.path(), &config);
    receiver.wait_for(1, PATIENCE).await;
    receiver
        .assert_no_more_than(1, Duration::from_millis(500))
        .await;
    assert_eq!(bodies(&receiver), ["after"]);
    // The third panic record is dead-lettered once, after the restart.
    broker.read_exactly("loop-dlq", 1, 3);
}
