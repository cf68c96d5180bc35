//! The lane's schedule on tokio's paused clock, against a scripted receiver
//! that stands in for the callback: which records overlap, in which order
//! each key arrives, exactly when, and what is committed.
//!
//! Records carry their key and offset as the value (`key:offset`), which
//! the built-in guest sends as the body. No socket is involved, so virtual
//! time moves only when every task waits: a 5 ms answer takes exactly 5 ms,
//! a 1 s back-off exactly 1 s, and a test that parks a key for seconds runs
//! in an instant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as Atomic};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::ConnectorConfig;
use crate::guest::bindings::{
    AttemptOutcome, HttpResponse, TimestampType, TransportError, TransportErrorKind,
};
use crate::guest::{GuestEngine, GuestPlan};
use crate::sink::HttpSink;
use crate::sink::scripted::Script;

/// The seed connector's "accepted" body.
const OK: &str = r#"{"retry":false}"#;
/// The seed connector's "try again" body.
const RETRY: &str = r#"{"retry":true}"#;

/// What the receiver answers a body with, given the virtual time since the
/// run began: a delay, a status (0: a transport error) and a body.
type Answer = Arc<dyn Fn(&str, Duration) -> (Duration, u16, &'static str) + Send + Sync>;

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Bodies in the order their requests arrived, with when they arrived.
    arrivals: Vec<(String, Duration)>,
    /// Requests in flight when each arrived (itself included).
    in_flight_at: Vec<usize>,
    in_flight: usize,
    max_in_flight: usize,
    by_key: HashMap<String, usize>,
    max_per_key: usize,
}

/// The receiver: counts each request in flight from the moment it is sent
/// until it is answered (or abandoned), then answers as `answer` says.
fn receiver(answer: Answer, seen: Arc<Mutex<Seen>>, began: Instant) -> Script {
    Arc::new(move |request| {
        let body = String::from_utf8(request.body().to_vec()).unwrap();
        let key = body.split(':').next().unwrap().to_owned();
        let now = began.elapsed();
        {
            let mut seen = seen.lock().unwrap();
            seen.arrivals.push((body.clone(), now));
            seen.in_flight += 1;
            let in_flight = seen.in_flight;
            seen.in_flight_at.push(in_flight);
            seen.max_in_flight = seen.max_in_flight.max(in_flight);
            let count = seen.by_key.entry(key.clone()).or_default();
            *count += 1;
            let count = *count;
            seen.max_per_key = seen.max_per_key.max(count);
        }
        let (delay, status, text) = answer(&body, now);
        let answering = Answering {
            seen: seen.clone(),
            key,
        };
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            drop(answering);
            if status == 0 {
                return AttemptOutcome::Transport(TransportError {
                    kind: TransportErrorKind::Connect,
                    message: "connection refused".into(),
                });
            }
            AttemptOutcome::Response(HttpResponse {
                status,
                headers: Vec::new(),
                body: text.as_bytes().to_vec(),
                body_truncated: false,
            })
        })
    })
}

/// One request in flight at the receiver, until dropped.
struct Answering {
    seen: Arc<Mutex<Seen>>,
    key: String,
}

impl Drop for Answering {
    fn drop(&mut self) {
        let mut seen = self.seen.lock().unwrap();
        seen.in_flight -= 1;
        *seen.by_key.get_mut(&self.key).unwrap() -= 1;
    }
}

/// Hands out a fixed list of records, then waits forever; counts reads.
struct ListQueue {
    records: std::vec::IntoIter<ConsumedRecord>,
    reads: Arc<AtomicUsize>,
}

impl RecordQueue for ListQueue {
    type Error = std::convert::Infallible;

    async fn next(&mut self) -> Result<ConsumedRecord, Self::Error> {
        match self.records.next() {
            Some(record) => {
                self.reads.fetch_add(1, Atomic::SeqCst);
                Ok(record)
            }
            None => std::future::pending().await,
        }
    }
}

/// Remembers the last position stored, and that it never moved back.
#[derive(Default)]
struct Stored(Mutex<Option<i64>>);

impl OffsetSink for Stored {
    fn store(&self, _topic: &str, _partition: i32, next_offset: i64) {
        let mut last = self.0.lock().unwrap();
        assert!(
            last.is_none_or(|last| last < next_offset),
            "the mark moved back"
        );
        *last = Some(next_offset);
    }
}

/// Keys become records at offsets 0, 1, … of `partition`.
fn records(partition: i32, keys: &[Option<&str>]) -> Vec<ConsumedRecord> {
    keys.iter()
        .enumerate()
        .map(|(offset, key)| ConsumedRecord {
            record: KafkaRecord {
                topic: "t".into(),
                partition,
                offset: offset as i64,
                timestamp_ms: -1,
                timestamp_type: TimestampType::NotAvailable,
                key: key.map(|k| k.as_bytes().to_vec()),
                value: Some(format!("{}:{offset}", key.unwrap_or("null")).into_bytes()),
                headers: Vec::new(),
            },
            read_at: SystemTime::now(),
        })
        .collect()
}

/// A connector's lanes, one per partition, running on the test's runtime.
struct Run {
    seen: Arc<Mutex<Seen>>,
    began: Instant,
    /// Per lane: what it stored, how many records it read, its stop and task.
    stored: Vec<Arc<Stored>>,
    reads: Vec<Arc<AtomicUsize>>,
    stops: Vec<CancellationToken>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    connector: Arc<Connector>,
}

impl Run {
    /// Waits until every lane committed every record up to `end`; at most
    /// a virtual minute.
    async fn committed(&self, end: i64) {
        for _ in 0..6_000 {
            if self
                .stored
                .iter()
                .all(|s| *s.0.lock().unwrap() == Some(end))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "not every lane committed {end}: {:?}; state {:?}",
            self.stored
                .iter()
                .map(|s| *s.0.lock().unwrap())
                .collect::<Vec<_>>(),
            self.connector.state(),
        );
    }

    /// Waits until the connector halts; at most a virtual minute.
    async fn halted(&self) {
        for _ in 0..6_000 {
            if self.connector.halt_token().is_cancelled() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the connector did not stop");
    }

    /// Sleeps until `at` after the run began.
    async fn until(&self, at: Duration) {
        tokio::time::sleep_until(self.began + at).await;
    }

    async fn stop(self) {
        for stop in &self.stops {
            stop.cancel();
        }
        for task in self.tasks {
            task.await.unwrap();
        }
    }

    /// The offsets of each key's requests, in arrival order.
    fn arrivals_by_key(&self) -> HashMap<String, Vec<i64>> {
        let mut by_key: HashMap<String, Vec<i64>> = HashMap::new();
        for (body, _) in &self.seen.lock().unwrap().arrivals {
            let (key, offset) = body.split_once(':').unwrap();
            by_key
                .entry(key.to_owned())
                .or_default()
                .push(offset.parse().unwrap());
        }
        by_key
    }

    /// When each attempt of `body` arrived.
    fn arrived(&self, body: &str) -> Vec<Duration> {
        let seen = self.seen.lock().unwrap();
        seen.arrivals
            .iter()
            .filter(|(b, _)| b == body)
            .map(|&(_, at)| at)
            .collect()
    }
}

/// Starts one lane over `keys`.
async fn run(properties: &[(&str, &str)], keys: &[Option<&str>], answer: Answer) -> Run {
    run_lanes(properties, &[keys], answer).await
}

/// Starts a lane per partition, partition `i` reading `partitions[i]`,
/// sharing the connector's concurrency limit.
async fn run_lanes(
    properties: &[(&str, &str)],
    partitions: &[&[Option<&str>]],
    answer: Answer,
) -> Run {
    let queues = (0..)
        .zip(partitions)
        .map(|(partition, keys)| records(partition, keys))
        .collect();
    run_queues(properties, queues, answer).await
}

/// Starts a lane per partition, partition `i` reading `queues[i]`.
async fn run_queues(
    properties: &[(&str, &str)],
    queues: Vec<Vec<ConsumedRecord>>,
    answer: Answer,
) -> Run {
    let mut map: std::collections::BTreeMap<String, String> = properties
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.insert("topics".into(), "t".into());
    map.insert("callback.request.url".into(), "http://receiver/hook".into());
    let config = ConnectorConfig::from_properties("lane-test", &map).expect("valid config");
    let began = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = HttpSink::scripted(&config.callback, receiver(answer, seen.clone(), began)).unwrap();
    let engine = GuestEngine::new().unwrap();
    let guests = GuestPlan::prepare(
        &engine,
        &config.name,
        &config.guest,
        config.builtin_guest_config(),
    )
    .await
    .unwrap();
    let (paused, _) = watch::channel(false);
    let connector = Arc::new(Connector::new(
        config,
        sink,
        guests,
        None,
        &CancellationToken::new(),
        paused,
        Arc::default(),
    ));
    let limit = ConcurrencyLimit::new(&connector.config.delivery);
    let mut run = Run {
        seen,
        began,
        stored: Vec::new(),
        reads: Vec::new(),
        stops: Vec::new(),
        tasks: Vec::new(),
        connector: connector.clone(),
    };
    for (partition, records) in (0..).zip(queues) {
        let stored = Arc::new(Stored::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let stop = connector.halt_token().child_token();
        let queue = ListQueue {
            records: records.into_iter(),
            reads: reads.clone(),
        };
        let lane = Lane::new(
            connector.clone(),
            limit.clone(),
            stored.clone(),
            "t".into(),
            partition,
            stop.clone(),
            Arc::new(AtomicI64::new(-1)),
        );
        run.tasks.push(tokio::spawn(lane.run(queue)));
        run.stored.push(stored);
        run.reads.push(reads);
        run.stops.push(stop);
    }
    run
}

/// Asks for a retry at once on a:0's first attempt, and accepts every
/// other attempt after `delay_ms`.
fn a0_retried_then_all_accepted_after(delay_ms: u64) -> Answer {
    Arc::new(move |body, at| {
        if body == "a:0" && at.is_zero() {
            (Duration::ZERO, 500, RETRY)
        } else {
            (Duration::from_millis(delay_ms), 200, OK)
        }
    })
}

/// Accepts everything after `delay_ms`.
fn answer(delay_ms: u64) -> Answer {
    Arc::new(move |_, _| (Duration::from_millis(delay_ms), 200, OK))
}

fn assert_in_order(by_key: &HashMap<String, Vec<i64>>) {
    for (key, offsets) in by_key {
        assert!(
            offsets.is_sorted(),
            "key {key} arrived out of order: {offsets:?}"
        );
    }
}

/// 10 keys, 200 records, round-robin.
fn ten_keys() -> Vec<Option<&'static str>> {
    const KEYS: [&str; 10] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    (0..200).map(|i| Some(KEYS[i % 10])).collect()
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[tokio::test(start_paused = true)]
async fn partition_order_sends_one_record_at_a_time_in_offset_order() {
    let run = run(&[], &ten_keys(), answer(1)).await;
    run.committed(200).await;
    {
        let seen = run.seen.lock().unwrap();
        assert_eq!(seen.max_in_flight, 1);
        let offsets: Vec<i64> = seen
            .arrivals
            .iter()
            .map(|(body, _)| body.split_once(':').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(offsets, (0..200).collect::<Vec<_>>());
        // Each record is sent the moment the one before is answered.
        let times: Vec<Duration> = seen.arrivals.iter().map(|&(_, at)| at).collect();
        assert_eq!(times, (0..200).map(ms).collect::<Vec<_>>());
    }
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn key_order_overlaps_keys_but_never_one_key() {
    let run = run(
        &[
            ("delivery.ordering", "key"),
            ("delivery.max.in.flight", "8"),
            ("delivery.concurrency", "fixed"),
        ],
        &ten_keys(),
        answer(5),
    )
    .await;
    run.committed(200).await;
    {
        let seen = run.seen.lock().unwrap();
        assert_eq!(seen.max_per_key, 1, "two requests of one key overlapped");
        assert_eq!(
            seen.max_in_flight, 8,
            "the partition's cap is reached, never passed"
        );
        assert_eq!(seen.arrivals.len(), 200);
    }
    assert_in_order(&run.arrivals_by_key());
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn distinct_keys_run_in_waves_of_the_cap() {
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let keys: Vec<Option<&str>> = keys.iter().map(|k| Some(k.as_str())).collect();
    let run = run(
        &[
            ("delivery.ordering", "key"),
            ("delivery.max.in.flight", "8"),
            ("delivery.concurrency", "fixed"),
        ],
        &keys,
        answer(5),
    )
    .await;
    run.committed(200).await;
    {
        let seen = run.seen.lock().unwrap();
        assert_eq!(seen.max_in_flight, 8);
        // 25 waves of 8, 5 ms each: every slot is refilled the moment it frees.
        let times: Vec<Duration> = seen.arrivals.iter().map(|&(_, at)| at).collect();
        let waves: Vec<Duration> = (0..200).map(|i| ms(5 * (i / 8))).collect();
        assert_eq!(times, waves);
    }
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pause_lets_requests_in_flight_finish_and_starts_nothing_until_resumed() {
    // A pending cap of 8: the lane is idle while paused, and only the
    // resume can wake it. Of 1024: records read ahead wait in delivery.
    for pending in ["8", "1024"] {
        let keys: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
        let keys: Vec<Option<&str>> = keys.iter().map(|k| Some(k.as_str())).collect();
        let run = run(
            &[
                ("delivery.ordering", "key"),
                ("delivery.max.in.flight", "8"),
                ("delivery.max.pending.records", pending),
                ("delivery.concurrency", "fixed"),
            ],
            &keys,
            answer(5),
        )
        .await;
        // Waves of 8 leave at 0, 5 and 10 ms; the third is in flight at 12 ms.
        run.until(ms(12)).await;
        run.connector.set_paused(true);
        let read = run.reads[0].load(Atomic::SeqCst);
        run.until(ms(100)).await;
        {
            let seen = run.seen.lock().unwrap();
            assert_eq!(seen.arrivals.len(), 24, "a paused connector sent a request");
            assert_eq!(seen.in_flight, 0, "the wave in flight was not answered");
        }
        if pending == "8" {
            assert_eq!(
                run.reads[0].load(Atomic::SeqCst),
                read,
                "a paused lane read"
            );
        }
        run.connector.set_paused(false);
        run.committed(64).await;
        let times: Vec<Duration> = run
            .seen
            .lock()
            .unwrap()
            .arrivals
            .iter()
            .map(|&(_, at)| at)
            .collect();
        let expected: Vec<Duration> = (0..64)
            .map(|i| {
                if i < 24 {
                    ms(5 * (i / 8))
                } else {
                    ms(100 + 5 * ((i - 24) / 8))
                }
            })
            .collect();
        assert_eq!(
            times, expected,
            "pending {pending}: the lane resumes the moment it is resumed"
        );
        run.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_hot_key_and_all_null_keys_stay_serial() {
    // Half of the records on one key, the rest on distinct keys.
    let mut keys: Vec<Option<String>> = Vec::new();
    for i in 0..100 {
        keys.push(Some("hot".into()));
        keys.push(Some(format!("k{i}")));
    }
    let keys: Vec<Option<&str>> = keys.iter().map(Option::as_deref).collect();
    let run = run(
        &[
            ("delivery.ordering", "key"),
            ("delivery.concurrency", "fixed"),
        ],
        &keys,
        answer(2),
    )
    .await;
    run.committed(200).await;
    assert_eq!(run.seen.lock().unwrap().max_per_key, 1);
    assert!(run.seen.lock().unwrap().max_in_flight > 1);
    assert_in_order(&run.arrivals_by_key());
    // The hot key alone sets the pace: 100 records, 2 ms each, back to back.
    assert_eq!(run.arrived("hot:198"), [ms(198)]);
    run.stop().await;

    let nulls = vec![None; 50];
    let run = self::run(&[("delivery.ordering", "key")], &nulls, answer(1)).await;
    run.committed(50).await;
    assert_eq!(
        run.seen.lock().unwrap().max_in_flight,
        1,
        "null keys are one serial key"
    );
    assert_in_order(&run.arrivals_by_key());
    run.stop().await;

    let run = self::run(
        &[
            ("delivery.ordering", "key"),
            ("delivery.null.key", "unordered"),
            ("delivery.concurrency", "fixed"),
            ("delivery.max.in.flight", "4"),
        ],
        &nulls,
        answer(5),
    )
    .await;
    run.committed(50).await;
    assert_eq!(run.seen.lock().unwrap().max_in_flight, 4);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn none_order_fills_its_cap_with_one_key() {
    let keys = vec![Some("only"); 100];
    let run = run(
        &[
            ("delivery.ordering", "none"),
            ("delivery.max.in.flight", "6"),
            ("delivery.concurrency", "fixed"),
        ],
        &keys,
        answer(5),
    )
    .await;
    run.committed(100).await;
    assert_eq!(run.seen.lock().unwrap().max_in_flight, 6);
    run.stop().await;

    // The same key in key order: one at a time.
    let run = self::run(&[("delivery.ordering", "key")], &keys, answer(5)).await;
    run.committed(100).await;
    assert_eq!(run.seen.lock().unwrap().max_in_flight, 1);
    assert_eq!(run.arrived("only:99"), [ms(5 * 99)]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_connector_cap_holds_across_partitions() {
    let left: Vec<Option<String>> = (0..100).map(|i| Some(format!("l{i}"))).collect();
    let right: Vec<Option<String>> = (0..100).map(|i| Some(format!("r{i}"))).collect();
    let left: Vec<Option<&str>> = left.iter().map(Option::as_deref).collect();
    let right: Vec<Option<&str>> = right.iter().map(Option::as_deref).collect();
    let run = run_lanes(
        &[
            ("delivery.ordering", "key"),
            ("delivery.max.in.flight", "8"),
            ("delivery.max.in.flight.total", "12"),
            ("delivery.concurrency", "fixed"),
        ],
        &[&left, &right],
        answer(5),
    )
    .await;
    run.committed(100).await;
    assert_eq!(
        run.seen.lock().unwrap().max_in_flight,
        12,
        "two lanes of 8 share the connector's 12"
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_parks_only_its_key_for_exactly_its_back_off() {
    // The first attempt of a:0 asks for a retry after 1 s; everything else
    // is accepted after 1 ms.
    let answer = a0_retried_then_all_accepted_after(1);
    let run = run(
        &[("delivery.ordering", "key"), ("retry.backoff.sec", "1")],
        &ten_keys(),
        answer,
    )
    .await;
    // Every other key is delivered while a waits, and nothing passes a:0.
    run.until(ms(500)).await;
    {
        let by_key = run.arrivals_by_key();
        assert_eq!(by_key["a"], vec![0], "a's later records waited for a:0");
        assert!(
            by_key
                .iter()
                .filter(|(k, _)| *k != "a")
                .all(|(_, o)| o.len() == 20)
        );
        assert_eq!(
            *run.stored[0].0.lock().unwrap(),
            None,
            "nothing passes the parked a:0"
        );
    }
    assert_eq!(run.connector.stats.delivery.parked.load(Atomic::SeqCst), 1);
    run.committed(200).await;
    // The wait is exact: the retry leaves 1 s after the answer.
    assert_eq!(run.arrived("a:0"), [ms(0), ms(1_000)]);
    assert_eq!(run.arrived("a:10"), [ms(1_001)]);
    let by_key = run.arrivals_by_key();
    assert_eq!(
        by_key["a"],
        [
            0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180,
            190
        ]
    );
    assert_in_order(&by_key);
    assert_eq!(run.connector.stats.delivery.parked.load(Atomic::SeqCst), 0);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reading_stops_at_the_pending_cap() {
    // A receiver that holds every request for 3 s: 16 records are read, 4 are sent.
    let run = run(
        &[
            ("delivery.ordering", "key"),
            ("delivery.max.in.flight", "4"),
            ("delivery.max.pending.records", "16"),
            ("delivery.concurrency", "fixed"),
        ],
        &ten_keys().into_iter().chain(ten_keys()).collect::<Vec<_>>(),
        answer(3_000),
    )
    .await;
    run.until(ms(2_000)).await;
    assert_eq!(run.reads[0].load(Atomic::SeqCst), 16);
    assert_eq!(run.seen.lock().unwrap().max_in_flight, 4);
    let gauges = &run.connector.stats.delivery;
    assert_eq!(gauges.pending.load(Atomic::SeqCst), 16);
    assert_eq!(gauges.in_flight.load(Atomic::SeqCst), 4);
    // 16 read past the mark (offset 0, in flight): a crash now resends them.
    assert_eq!(gauges.uncommitted.load(Atomic::SeqCst), 16);
    run.connector.halt_token().cancel();
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_parked_key_holds_its_partition_once_the_pending_cap_is_read_past_it() {
    // a:0 waits 1 s for its retry. Reading goes on past it for the other
    // keys, but only up to 64 records from the mark: what a crash would
    // re-send stays bounded however long a:0 waits.
    let answer = a0_retried_then_all_accepted_after(1);
    let keys: Vec<_> = (0..5).flat_map(|_| ten_keys()).collect();
    let run = run(
        &[
            ("delivery.ordering", "key"),
            ("delivery.max.in.flight", "8"),
            ("delivery.max.pending.records", "64"),
            ("delivery.concurrency", "fixed"),
            ("retry.backoff.sec", "1"),
        ],
        &keys,
        answer,
    )
    .await;
    run.until(ms(500)).await;
    assert_eq!(run.reads[0].load(Atomic::SeqCst), 64);
    let gauges = &run.connector.stats.delivery;
    assert_eq!(gauges.uncommitted.load(Atomic::SeqCst), 64);
    // The other keys' records among the 64 were delivered; a's wait.
    assert_eq!(run.seen.lock().unwrap().arrivals.len(), 1 + 63 - 6);
    assert_eq!(gauges.pending.load(Atomic::SeqCst), 7);
    assert_eq!(*run.stored[0].0.lock().unwrap(), None);
    run.committed(1_000).await;
    assert_in_order(&run.arrivals_by_key());
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_rewind_never_commits_past_a_record_still_in_delivery() {
    // a:0 waits 1 s for its retry while the consumer is reset from 20 back
    // to 15 (an out-of-range fetch with `auto.offset.reset`): 15..19 are
    // read and delivered again, and the mark must still wait for a:0.
    let answer = a0_retried_then_all_accepted_after(1);
    let keys = &ten_keys()[..20];
    let mut queue = records(0, keys);
    queue.extend(records(0, keys).into_iter().skip(15));
    let run = run_queues(
        &[
            ("delivery.ordering", "key"),
            ("delivery.concurrency", "fixed"),
            ("retry.backoff.sec", "1"),
        ],
        vec![queue],
        answer,
    )
    .await;
    run.until(ms(500)).await;
    assert_eq!(run.reads[0].load(Atomic::SeqCst), 25);
    assert_eq!(run.arrived("f:15").len(), 2, "read again after the rewind");
    assert_eq!(*run.stored[0].0.lock().unwrap(), None, "nothing passes a:0");
    run.committed(20).await;
    assert_eq!(run.arrived("a:0"), [ms(0), ms(1_000)]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_aborted_lane_takes_its_share_out_of_the_gauges() {
    // A revoke whose grace ran out aborts the lane's task mid-request, with
    // a:0 parked for its retry: nothing it counted may stay in the gauges.
    let answer = a0_retried_then_all_accepted_after(3_000);
    let run = run(
        &[
            ("delivery.ordering", "key"),
            ("delivery.max.in.flight", "4"),
            ("delivery.max.pending.records", "16"),
            ("delivery.concurrency", "fixed"),
            ("retry.backoff.sec", "10"),
        ],
        &ten_keys(),
        answer,
    )
    .await;
    run.until(ms(500)).await;
    let gauges = &run.connector.stats.delivery;
    assert_eq!(gauges.in_flight.load(Atomic::SeqCst), 4);
    assert_eq!(gauges.parked.load(Atomic::SeqCst), 1);
    assert_eq!(gauges.pending.load(Atomic::SeqCst), 16);
    assert_eq!(gauges.uncommitted.load(Atomic::SeqCst), 16);
    for task in run.tasks {
        task.abort();
        assert!(task.await.is_err_and(|error| error.is_cancelled()));
    }
    assert_eq!(gauges.in_flight.load(Atomic::SeqCst), 0);
    assert_eq!(gauges.parked.load(Atomic::SeqCst), 0);
    assert_eq!(gauges.pending.load(Atomic::SeqCst), 0);
    assert_eq!(gauges.uncommitted.load(Atomic::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stop_commits_nothing_past_the_stopped_record() {
    // 503 without a retry flag stops the connector (the seed's stop class).
    let answer: Answer = Arc::new(|body, _| {
        if body == "c:2" {
            (Duration::ZERO, 503, "")
        } else {
            (ms(3), 200, OK)
        }
    });
    let run = run(
        &[
            ("delivery.ordering", "key"),
            ("delivery.concurrency", "fixed"),
            ("request.retry.backoff.sec", "0.1"),
        ],
        &ten_keys(),
        answer,
    )
    .await;
    run.halted().await;
    let stored = *run.stored[0].0.lock().unwrap();
    assert!(
        stored.is_none_or(|mark| mark <= 2),
        "committed past c:2: {stored:?}"
    );
    // One retry exactly 0.1 s later, then the stop; no later c was sent.
    assert_eq!(run.arrived("c:2"), [ms(0), ms(100)]);
    let c = run.arrivals_by_key().remove("c");
    run.stop().await;
    assert_eq!(c, Some(vec![2, 2]));
}

#[tokio::test(start_paused = true)]
async fn a_dead_endpoint_lowers_adaptive_concurrency_and_recovers() {
    // Healthy for 200 ms, then every request answered 503 {"retry":true}
    // until 2 s, then healthy again. 200 keys, so up to 64 could be in flight.
    let keys: Vec<String> = (0..4_000).map(|i| format!("k{}", i % 200)).collect();
    let keys: Vec<Option<&str>> = keys.iter().map(|k| Some(k.as_str())).collect();
    let answer: Answer = Arc::new(|_, at| {
        if at >= ms(200) && at < ms(2_000) {
            (ms(5), 503, RETRY)
        } else {
            (ms(5), 200, OK)
        }
    });
    let schedule = vec!["0.05"; 100].join(",");
    let run = run(
        &[
            ("delivery.ordering", "key"),
            ("delivery.max.in.flight", "64"),
            ("delivery.concurrency", "adaptive"),
            ("retry.backoff.sec", &schedule),
        ],
        &keys,
        answer,
    )
    .await;
    let gauges = &run.connector.stats.delivery;
    run.until(ms(190)).await;
    let healthy = gauges.concurrency_limit.load(Atomic::SeqCst);
    assert!(healthy >= 32, "slow start reached {healthy}");
    run.until(ms(1_500)).await;
    assert_eq!(
        gauges.concurrency_limit.load(Atomic::SeqCst),
        1,
        "a dead endpoint halves the limit down to one"
    );
    assert!(gauges.in_flight.load(Atomic::SeqCst) <= 1);
    {
        // Once the limit is down, the failing endpoint sees one request at a time.
        let seen = run.seen.lock().unwrap();
        let storm = seen
            .arrivals
            .iter()
            .zip(&seen.in_flight_at)
            .filter(|((_, at), _)| *at >= ms(1_000) && *at < ms(2_000))
            .map(|(_, &in_flight)| in_flight)
            .max();
        assert_eq!(storm, Some(1));
    }
    run.committed(4_000).await;
    assert_eq!(
        run.connector.stats.dropped.load(Atomic::SeqCst),
        0,
        "nothing dropped"
    );
    assert_in_order(&run.arrivals_by_key());
    let recovered = gauges.concurrency_limit.load(Atomic::SeqCst);
    assert!(recovered > 8, "the limit grows again: {recovered}");
    run.stop().await;
}
