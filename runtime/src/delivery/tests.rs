//! The lane's schedule against a scripted receiver on loopback: which
//! records overlap, in which order each key arrives, what is committed.
//! Records carry their key and offset as the value (`key:offset`), which
//! the built-in guest sends as the body.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as Atomic};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::ConnectorConfig;
use crate::guest::bindings::TimestampType;
use crate::guest::{GuestEngine, GuestPlan};
use crate::sink::HttpSink;

/// The seed connector's "accepted" body.
const OK: &str = r#"{"retry":false}"#;

/// What the receiver answers a body with: a delay, a status and a body.
type Script = Arc<dyn Fn(&str) -> (Duration, u16, &'static str) + Send + Sync>;

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Bodies in the order their requests arrived.
    arrivals: Vec<String>,
    in_flight: usize,
    max_in_flight: usize,
    by_key: HashMap<String, usize>,
    max_per_key: usize,
}

async fn receiver(script: Script) -> (u16, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (script, log) = (script.clone(), log.clone());
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    stream.read_exact(&mut body).await.unwrap();
                    let body = String::from_utf8(body).unwrap();
                    let key = body.split(':').next().unwrap().to_owned();
                    {
                        let mut seen = log.lock().unwrap();
                        seen.arrivals.push(body.clone());
                        seen.in_flight += 1;
                        seen.max_in_flight = seen.max_in_flight.max(seen.in_flight);
                        let count = seen.by_key.entry(key.clone()).or_default();
                        *count += 1;
                        let count = *count;
                        seen.max_per_key = seen.max_per_key.max(count);
                    }
                    let (delay, status, answer) = script(&body);
                    tokio::time::sleep(delay).await;
                    {
                        let mut seen = log.lock().unwrap();
                        seen.in_flight -= 1;
                        *seen.by_key.get_mut(&key).unwrap() -= 1;
                    }
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if stream
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
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

/// Remembers the last position stored.
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

/// `(key, value)` pairs become records at offsets 0, 1, …
fn records(keys: &[Option<&str>]) -> Vec<ConsumedRecord> {
    keys.iter()
        .enumerate()
        .map(|(offset, key)| ConsumedRecord {
            record: KafkaRecord {
                topic: "t".into(),
                partition: 0,
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

struct Run {
    seen: Arc<Mutex<Seen>>,
    stored: Arc<Stored>,
    reads: Arc<AtomicUsize>,
    connector: Arc<Connector>,
    lane: Option<LaneHandle>,
}

impl Run {
    /// Waits until every record up to `end` is committed.
    async fn committed(&self, end: i64) {
        for _ in 0..1000 {
            if *self.stored.0.lock().unwrap() == Some(end) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "committed {:?}, not {end}; state {:?}; arrivals {:?}",
            self.stored.0.lock().unwrap(),
            self.connector.state(),
            self.seen.lock().unwrap().arrivals
        );
    }

    async fn stop(&mut self) {
        if let Some(lane) = self.lane.take() {
            lane.retire().await.unwrap();
        }
    }

    /// The offsets of each key's requests, in arrival order.
    fn arrivals_by_key(&self) -> HashMap<String, Vec<i64>> {
        let mut by_key: HashMap<String, Vec<i64>> = HashMap::new();
        for body in &self.seen.lock().unwrap().arrivals {
            let (key, offset) = body.split_once(':').unwrap();
            by_key
                .entry(key.to_owned())
                .or_default()
                .push(offset.parse().unwrap());
        }
        by_key
    }
}

async fn run(properties: &[(&str, &str)], keys: &[Option<&str>], script: Script) -> Run {
    let (port, seen) = receiver(script).await;
    let mut map: std::collections::BTreeMap<String, String> = properties
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.insert("topics".into(), "t".into());
    map.insert(
        "callback.request.url".into(),
        format!("http://127.0.0.1:{port}/hook"),
    );
    let config = ConnectorConfig::from_properties("lane-test", &map).expect("valid config");
    let allow = crate::security::egress::parse_cidrs(&["127.0.0.0/8".into()]).unwrap();
    let egress = Arc::new(crate::security::EgressPolicy::new(&allow, &[]));
    let sink = HttpSink::new(&config.callback, egress).unwrap();
    let engine = GuestEngine::new().unwrap();
    let init = config
        .strategy
        .to_pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let guests = GuestPlan::prepare(&engine, &config.name, &config.guest, init)
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
    let stored = Arc::new(Stored::default());
    let reads = Arc::new(AtomicUsize::new(0));
    let queue = ListQueue {
        records: records(keys).into_iter(),
        reads: reads.clone(),
    };
    let lane = LaneHandle::spawn(
        connector.clone(),
        limit,
        stored.clone(),
        "t".into(),
        0,
        move || Some(queue),
        None,
    );
    Run {
        seen,
        stored,
        reads,
        connector,
        lane: Some(lane),
    }
}

fn answer(delay_ms: u64) -> Script {
    Arc::new(move |_| (Duration::from_millis(delay_ms), 200, OK))
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

#[tokio::test]
async fn partition_order_sends_one_record_at_a_time_in_offset_order() {
    let mut run = run(&[], &ten_keys(), answer(1)).await;
    run.committed(200).await;
    {
        let seen = run.seen.lock().unwrap();
        assert_eq!(seen.max_in_flight, 1);
        let offsets: Vec<i64> = seen
            .arrivals
            .iter()
            .map(|body| body.split_once(':').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(offsets, (0..200).collect::<Vec<_>>());
    }
    run.stop().await;
}

#[tokio::test]
async fn key_order_overlaps_keys_but_never_one_key() {
    let mut run = run(
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

#[tokio::test]
async fn a_hot_key_and_all_null_keys_stay_serial() {
    // Half of the records on one key, the rest on distinct keys.
    let mut keys: Vec<Option<String>> = Vec::new();
    for i in 0..100 {
        keys.push(Some("hot".into()));
        keys.push(Some(format!("k{i}")));
    }
    let keys: Vec<Option<&str>> = keys.iter().map(Option::as_deref).collect();
    let mut run = run(
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
    run.stop().await;

    let nulls = vec![None; 50];
    let mut run = self::run(&[("delivery.ordering", "key")], &nulls, answer(1)).await;
    run.committed(50).await;
    assert_eq!(
        run.seen.lock().unwrap().max_in_flight,
        1,
        "null keys are one serial key"
    );
    assert_in_order(&run.arrivals_by_key());
    run.stop().await;

    let mut run = self::run(
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

#[tokio::test]
async fn none_order_fills_its_cap_with_one_key() {
    let keys = vec![Some("only"); 100];
    let mut run = run(
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
}

#[tokio::test]
async fn a_retry_parks_only_its_key() {
    // The first attempt of a:0 asks for a retry after 1 s; everything else
    // is accepted at once.
    let first = Arc::new(AtomicUsize::new(0));
    let script: Script = Arc::new(move |body| {
        if body == "a:0" && first.fetch_add(1, Atomic::SeqCst) == 0 {
            (Duration::ZERO, 500, r#"{"retry":true}"#)
        } else {
            (Duration::from_millis(1), 200, OK)
        }
    });
    let mut run = run(
        &[("delivery.ordering", "key"), ("retry.backoff.sec", "1")],
        &ten_keys(),
        script,
    )
    .await;
    // Every other key is delivered while a waits, and nothing passes a:0.
    for _ in 0..500 {
        if run.seen.lock().unwrap().arrivals.len() > 180 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
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
            *run.stored.0.lock().unwrap(),
            None,
            "nothing passes the parked a:0"
        );
    }
    assert_eq!(run.connector.stats.delivery.parked.load(Atomic::SeqCst), 1);
    run.committed(200).await;
    let by_key = run.arrivals_by_key();
    assert_eq!(
        by_key["a"],
        [
            0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180,
            190
        ]
    );
    assert_in_order(&by_key);
    run.stop().await;
}

#[tokio::test]
async fn reading_stops_at_the_pending_cap() {
    // A receiver that holds every request for 3 s: 16 records are read, 4 are sent.
    let mut run = run(
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
    // Wait until the lane is full, then give it time to read more than it may.
    for _ in 0..200 {
        if run.seen.lock().unwrap().in_flight == 4 && run.reads.load(Atomic::SeqCst) >= 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(run.reads.load(Atomic::SeqCst), 16);
    assert_eq!(run.seen.lock().unwrap().max_in_flight, 4);
    assert_eq!(
        run.connector.stats.delivery.pending.load(Atomic::SeqCst),
        16
    );
    assert_eq!(
        run.connector.stats.delivery.in_flight.load(Atomic::SeqCst),
        4
    );
    run.connector.halt_token().cancel();
    run.stop().await;
}

#[tokio::test]
async fn a_stop_commits_nothing_past_the_stopped_record() {
    // 503 without a retry flag stops the connector (the seed's stop class).
    let script: Script = Arc::new(|body| {
        if body == "c:2" {
            (Duration::ZERO, 503, "")
        } else {
            (Duration::from_millis(3), 200, OK)
        }
    });
    let mut run = run(
        &[
            ("delivery.ordering", "key"),
            ("request.retry.backoff.sec", "0.1"),
        ],
        &ten_keys(),
        script,
    )
    .await;
    for _ in 0..500 {
        if run.connector.halt_token().is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        run.connector.halt_token().is_cancelled(),
        "the connector stopped"
    );
    let stored = *run.stored.0.lock().unwrap();
    assert!(
        stored.is_none_or(|mark| mark <= 2),
        "committed past c:2: {stored:?}"
    );
    run.stop().await;
    // One retry after 0.1 s, then the stop; no later c was sent.
    assert_eq!(run.arrivals_by_key()["c"], vec![2, 2]);
}
