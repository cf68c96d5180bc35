//! The seed's exception strategies and the status-code stop rule, observed
//! at a real receiver: attempt counts, spacing, dropped versus stopped.

use std::time::Duration;

use crate::support::{Broker, PATIENCE, Receiver, Wasmsink, config, no_retry, please_retry};

/// Two records on one partition: `poison` is always refused with
/// `{"retry":true}`, `next` is accepted.
struct Scenario {
    broker: Broker,
    receiver: Receiver,
    dir: tempfile::TempDir,
}

impl Scenario {
    async fn new(refusal: fn() -> (u16, String)) -> Self {
        let broker = Broker::start();
        broker.create_topic("jobs", 1);
        let receiver = Receiver::start(move |r| {
            if r.body == b"poison" {
                refusal()
            } else {
                no_retry()
            }
        })
        .await;
        broker.produce("jobs", 0, None, Some(b"poison"), &[]).await;
        broker.produce("jobs", 0, None, Some(b"next"), &[]).await;
        Self {
            broker,
            receiver,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn start(&self, extra: &str) -> Wasmsink {
        self.start_with_backoff("0.3,0.6", extra)
    }

    fn start_with_backoff(&self, backoff: &str, extra: &str) -> Wasmsink {
        let connectors = format!(
            "[connectors.jobs]\ntopics = \"jobs\"\ncallback.request.url = \"{}\"\nretry.backoff.sec = \"{backoff}\"\n{extra}\n",
            self.receiver.url("/jobs")
        );
        Wasmsink::start(self.dir.path(), &config(&self.broker, &connectors))
    }

    fn attempts(&self, body: &str) -> Vec<std::time::Instant> {
        self.receiver
            .requests()
            .iter()
            .filter(|r| r.body == body.as_bytes())
            .map(|r| r.at)
            .collect()
    }
}

fn assert_spacing(attempts: &[std::time::Instant], expected: &[u64]) {
    assert_spacing_within(attempts, expected, Duration::from_millis(700));
}

/// The attempts came `expected` milliseconds apart, each gap no shorter and
/// at most `slack` longer.
fn assert_spacing_within(attempts: &[std::time::Instant], expected: &[u64], slack: Duration) {
    assert_eq!(attempts.len(), expected.len() + 1, "attempt count");
    for (pair, wait) in attempts.windows(2).zip(expected) {
        let gap = pair[1].duration_since(pair[0]);
        let wait = Duration::from_millis(*wait);
        assert!(
            gap >= wait && gap < wait + slack,
            "waited {gap:?}, expected about {wait:?}"
        );
    }
}

/// Back-off waits are kept exactly, not rounded to the 1 s auto-commit
/// interval: one longer and one much shorter than it.
#[tokio::test(flavor = "multi_thread")]
async fn back_off_waits_are_exact_not_cut_to_the_commit_interval() {
    let scenario = Scenario::new(|| please_retry(500)).await;
    let _wasmsink = scenario.start_with_backoff(
        "1.5,0.2",
        "exception.strategy = \"PROGRESS_BACK_OFF_DROP_MESSAGE\"",
    );
    scenario.receiver.wait_for(4, PATIENCE).await;
    assert_spacing_within(
        &scenario.attempts("poison"),
        &[1500, 200],
        Duration::from_millis(450),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_back_off_drop_message_retries_on_schedule_then_drops() {
    let scenario = Scenario::new(|| please_retry(500)).await;
    let wasmsink = scenario.start("exception.strategy = \"PROGRESS_BACK_OFF_DROP_MESSAGE\"");
    scenario.receiver.wait_for(4, PATIENCE).await;
    assert_spacing(&scenario.attempts("poison"), &[300, 600]);
    assert_eq!(
        scenario.attempts("next").len(),
        1,
        "the next record is delivered after the drop"
    );
    wasmsink
        .wait_for_log("Dropping the message", PATIENCE)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_back_off_stop_task_retries_then_stops_and_resumes_at_that_record() {
    let scenario = Scenario::new(|| please_retry(500)).await;
    let mut wasmsink = scenario.start("exception.strategy = \"PROGRESS_BACK_OFF_STOP_TASK\"");
    wasmsink.wait_for_log("connector FAILED", PATIENCE).await;
    assert_spacing(&scenario.attempts("poison"), &[300, 600]);
    scenario
        .receiver
        .assert_no_more_than(3, Duration::from_millis(800))
        .await;
    assert!(
        wasmsink.log().contains("stopped after 3 attempts"),
        "{}",
        wasmsink.log()
    );

    // After a restart, delivery resumes at the record it stopped on.
    wasmsink.kill9();
    scenario.receiver.respond_with(|_| no_retry());
    let _restarted = scenario.start("exception.strategy = \"PROGRESS_BACK_OFF_STOP_TASK\"");
    scenario.receiver.wait_for(5, PATIENCE).await;
    assert_eq!(scenario.attempts("poison").len(), 4);
    assert_eq!(scenario.attempts("next").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_message_drops_at_once() {
    let scenario = Scenario::new(|| please_retry(500)).await;
    let wasmsink = scenario.start("exception.strategy = \"DROP_MESSAGE\"");
    scenario.receiver.wait_for(2, PATIENCE).await;
    scenario
        .receiver
        .assert_no_more_than(2, Duration::from_millis(800))
        .await;
    assert_eq!(
        (
            scenario.attempts("poison").len(),
            scenario.attempts("next").len()
        ),
        (1, 1)
    );
    assert!(wasmsink.log().contains("Dropping the message"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_task_stops_at_once() {
    let scenario = Scenario::new(|| please_retry(500)).await;
    let wasmsink = scenario.start("exception.strategy = \"STOP_TASK\"");
    wasmsink.wait_for_log("connector FAILED", PATIENCE).await;
    scenario
        .receiver
        .assert_no_more_than(1, Duration::from_millis(800))
        .await;
    assert_eq!(scenario.attempts("poison").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_statuses_without_a_flag_retry_then_stop_whatever_the_strategy() {
    // 503 with a body that is not JSON: no retry flag.
    let scenario = Scenario::new(|| (503, "Service Unavailable".to_owned())).await;
    let wasmsink = scenario.start("exception.strategy = \"DROP_MESSAGE\"");
    wasmsink.wait_for_log("connector FAILED", PATIENCE).await;
    assert_spacing(&scenario.attempts("poison"), &[300, 600]);
    scenario
        .receiver
        .assert_no_more_than(3, Duration::from_millis(800))
        .await;
    assert!(
        wasmsink.log().contains("HTTP 503 without a retry flag"),
        "{}",
        wasmsink.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn other_statuses_without_a_flag_follow_the_strategy() {
    let scenario = Scenario::new(|| (404, String::new())).await;
    let _wasmsink = scenario.start("exception.strategy = \"DROP_MESSAGE\"");
    scenario.receiver.wait_for(2, PATIENCE).await;
    assert_eq!(
        (
            scenario.attempts("poison").len(),
            scenario.attempts("next").len()
        ),
        (1, 1)
    );
}

/// A receiver that reads each request and closes the connection without
/// answering (an I/O error at the sender); the arrival time of each request.
fn hang_up_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            seen.lock().unwrap().push(std::time::Instant::now());
        }
    });
    (url, arrivals)
}

/// Transport errors take the stop path: the schedule's attempts, spaced as
/// it says, then FAILED without committing, so a restart sends the record
/// again (checked at the receivers, not in the log).
#[tokio::test(flavor = "multi_thread")]
async fn transport_errors_retry_then_stop() {
    let broker = Broker::start();
    broker.create_topic("jobs", 1);
    broker
        .produce("jobs", 0, None, Some(b"unanswered"), &[])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (url, arrivals) = hang_up_receiver();
    let connectors = |url: &str| {
        format!(
            "[connectors.jobs]\ntopics = \"jobs\"\ncallback.request.url = \"{url}\"\nretry.backoff.sec = \"0.4,0.4\"\nexception.strategy = \"DROP_MESSAGE\"\n"
        )
    };
    let mut wasmsink = Wasmsink::start(dir.path(), &config(&broker, &connectors(&url)));
    wasmsink.wait_for_log("connector FAILED", PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let attempts = arrivals.lock().unwrap().clone();
    assert_spacing(&attempts, &[400, 400]);
    assert!(
        wasmsink.log().contains("transport error"),
        "{}",
        wasmsink.log()
    );

    // Past the commit interval, then a restart against a receiver that answers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wasmsink.kill9();
    let receiver = Receiver::ok().await;
    let _again = Wasmsink::start(
        dir.path(),
        &config(&broker, &connectors(&receiver.url("/"))),
    );
    let requests = receiver.wait_for(1, PATIENCE).await;
    assert_eq!(
        requests[0].text(),
        "unanswered",
        "the stopped record was committed"
    );
    assert_eq!(arrivals.lock().unwrap().len(), 3, "no attempt after FAILED");
}
