//! A partition lane: delivers one partition's records strictly in order.
//!
//! For each record the lane waits for `request.delay.sec`, applies
//! `behavior.on.null.values`, asks the guest to `transform` it, sends the
//! request, and asks the guest to `decide` after every attempt: accept,
//! retry after a wait, drop, dead-letter or stop. Only a finished record
//! (delivered, dropped, dead-lettered or skipped) moves the partition's
//! committed position, through [`progress::PartitionProgress`], so the
//! position is always the end of a contiguous finished prefix.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::GuestErrorPolicy;
use crate::config::NullValueBehavior;
use crate::connector::{CRASH_LOOP_FAILURES, CRASH_LOOP_WINDOW};
use crate::connector::{Connector, ConnectorStats};
use crate::deadletter::DeadLetterContext;
use crate::guest::bindings::{
    AttemptInfo, AttemptOutcome, ErrorKind, KafkaRecord, RecordRef, RetryDecision, TimestampType,
    TransformOutcome,
};
use crate::guest::{GuestError, LaneGuests};
use crate::metrics::GuestExport;
use crate::sink::{LaneSender, PreparedRequest, ResponseHeaders};

mod progress;

use progress::PartitionProgress;

/// How long a lane waits after a consumer error before reading again.
const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A record read from Kafka, about to be delivered by its lane.
#[derive(Debug)]
pub struct ConsumedRecord {
    /// The record as the guest sees it.
    pub record: KafkaRecord,
    /// When wasmsink read it (the base of `request.delay.sec` without a timestamp).
    pub read_at: SystemTime,
}

/// Where a lane reads its partition's records, in order, one at a time.
///
/// A lane asks for the next record only when it is ready to deliver it, so
/// the queue behind this (librdkafka's own queue for the partition, which
/// stops fetching when it holds `queued.max.messages.kbytes`) is all the
/// buffering there is: a slow lane never needs its partition paused.
pub trait RecordQueue: Send + 'static {
    /// Why a record could not be read; the lane logs it and reads on.
    type Error: std::fmt::Display + Send;

    /// The partition's next record, waiting until there is one.
    fn next(&mut self) -> impl Future<Output = Result<ConsumedRecord, Self::Error>> + Send;
}

/// Where finished positions go (librdkafka's offset store, committed by its
/// auto-commit, on rebalance and on close).
pub trait OffsetSink: Send + Sync + 'static {
    /// Records that every record of the partition before `next_offset` is finished.
    fn store(&self, topic: &str, partition: i32, next_offset: i64);
}

/// A partition lane, as its owner (the source) holds it.
pub struct LaneHandle {
    next_offset: Arc<AtomicI64>,
    stop: CancellationToken,
    join: JoinHandle<()>,
}

impl LaneHandle {
    /// Starts a lane that delivers the records of one partition's queue,
    /// which `open` returns (or `None` when there is none; the lane ends).
    ///
    /// When `predecessor` is given (the partition's previous lane, revoked
    /// and maybe still finishing its in-flight attempt), the new lane waits
    /// for it first, so records never overtake each other at the callback,
    /// and only then calls `open`: the handles of one partition's queue
    /// share librdkafka state, so the predecessor's must be gone first.
    pub fn spawn<Q, F>(
        connector: Arc<Connector>,
        offsets: Arc<dyn OffsetSink>,
        topic: String,
        partition: i32,
        open: F,
        predecessor: Option<JoinHandle<()>>,
    ) -> Self
    where
        Q: RecordQueue,
        F: FnOnce() -> Option<Q> + Send + 'static,
    {
        let next_offset = Arc::new(AtomicI64::new(-1));
        let stop = connector.halt_token().child_token();
        let guest = connector.guests.lane();
        let sender = connector
            .sink
            .lane(if connector.guests.decide_reads_response_headers() {
                ResponseHeaders::Keep
            } else {
                ResponseHeaders::Drop
            });
        let lane = Lane {
            pause: connector.pause_watch(),
            connector,
            offsets,
            progress: PartitionProgress::default(),
            next_offset: next_offset.clone(),
            stop: stop.clone(),
            topic,
            partition,
        };
        let join = crate::lane_threads::spawn(async move {
            if let Some(previous) = predecessor {
                let _ = previous.await;
            }
            if let Some(queue) = open() {
                lane.run(guest, sender, queue).await;
            }
        });
        Self {
            next_offset,
            stop,
            join,
        }
    }

    /// A view of the partition's finished position that outlives the handle.
    pub fn position(&self) -> LanePosition {
        LanePosition(self.next_offset.clone())
    }

    /// Tells the lane to stop after its in-flight attempt; returns its task.
    pub fn retire(self) -> JoinHandle<()> {
        self.stop.cancel();
        self.join
    }
}

/// A lane's finished position: the partition's next offset to commit.
pub struct LanePosition(Arc<AtomicI64>);

impl LanePosition {
    /// The next offset to commit, once a record has finished.
    pub fn get(&self) -> Option<i64> {
        let next = self.0.load(Ordering::Acquire);
        (next >= 0).then_some(next)
    }
}

/// How one record ended.
enum RecordOutcome {
    /// Finished: its offset may be committed.
    Finished,
    /// Not finished because the lane is stopping; it is read again later.
    Abandoned,
    /// Not finished; the connector must fail with this reason.
    Failed(String),
}

/// The lane task's state (its guest instance is kept apart: a wasmtime
/// `Store` is not `Sync`).
struct Lane {
    connector: Arc<Connector>,
    pause: tokio::sync::watch::Receiver<bool>,
    offsets: Arc<dyn OffsetSink>,
    /// The records read and finished; the source of `next_offset`.
    progress: PartitionProgress,
    next_offset: Arc<AtomicI64>,
    stop: CancellationToken,
    topic: String,
    partition: i32,
}

impl Lane {
    async fn run<Q: RecordQueue>(
        mut self,
        mut guest: LaneGuests,
        mut sender: LaneSender,
        mut queue: Q,
    ) {
        loop {
            let consumed = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                next = queue.next() => match next {
                    Ok(consumed) => consumed,
                    Err(error) => {
                        tracing::warn!(connector = %self.connector.name(), topic = %self.topic,
                            partition = self.partition, %error, "Kafka consumer error");
                        if !self.sleep(CONSUMER_ERROR_PAUSE).await {
                            break;
                        }
                        continue;
                    }
                },
            };
            // A record read just as the connector was paused waits here.
            if !self.wait_while_paused().await {
                break;
            }
            self.progress.read(consumed.record.offset);
            match self.process(&mut guest, &mut sender, &consumed).await {
                RecordOutcome::Finished => {
                    if let Some(next) = self.progress.finish(consumed.record.offset) {
                        self.next_offset.store(next, Ordering::Release);
                        self.offsets.store(&self.topic, self.partition, next);
                    }
                }
                RecordOutcome::Abandoned => break,
                RecordOutcome::Failed(reason) => {
                    self.connector.fail(reason);
                    break;
                }
            }
        }
    }

    /// Holds the lane at a record boundary while the connector is paused;
    /// false when the lane must stop instead.
    async fn wait_while_paused(&mut self) -> bool {
        if !*self.pause.borrow() {
            return true;
        }
        tokio::select! {
            biased;
            () = self.stop.cancelled() => false,
            resumed = self.pause.wait_for(|paused| !*paused) => resumed.is_ok(),
        }
    }

    async fn process(
        &self,
        guest: &mut LaneGuests,
        sender: &mut LaneSender,
        consumed: &ConsumedRecord,
    ) -> RecordOutcome {
        let record = &consumed.record;
        let stats = &self.connector.stats;
        if !self.wait_for_delay(consumed).await {
            return RecordOutcome::Abandoned;
        }
        if record.value.is_none() {
            match self.connector.config.null_values {
                NullValueBehavior::Ignore => {
                    tracing::warn!(connector = %self.connector.name(), topic = %record.topic, partition = record.partition,
                        offset = record.offset, "skipping a record with a null value (behavior.on.null.values=ignore)");
                    ConnectorStats::bump(&stats.skipped);
                    return RecordOutcome::Finished;
                }
                NullValueBehavior::Fail => {
                    return RecordOutcome::Failed(format!(
                        "record {}/{}/{} has a null value and behavior.on.null.values=fail",
                        record.topic, record.partition, record.offset
                    ));
                }
                NullValueBehavior::Send => {}
            }
        }
        let started = Instant::now();
        let transformed = match guest.transform(record).await {
            Err(error) if error.is_call_failure() => {
                self.note_retrying(record, &error);
                guest.transform(record).await
            }
            other => other,
        };
        stats
            .guest_calls
            .record(GuestExport::Transform, started.elapsed());
        let request = match transformed {
            Err(error) => return self.guest_failed(record, error, 0, None).await,
            Ok(TransformOutcome::Skip) => {
                ConnectorStats::bump(&stats.skipped);
                return RecordOutcome::Finished;
            }
            Ok(TransformOutcome::Error(error)) => {
                let reason = format!("the guest refused the record: {}", error.message);
                return match error.kind {
                    ErrorKind::InvalidRecord => self.give_up(record, &reason, 0, None).await,
                    ErrorKind::Fatal => RecordOutcome::Failed(self.describe(record, &reason)),
                };
            }
            Ok(TransformOutcome::Deliver(request)) => request,
        };
        let prepared = match self
            .connector
            .sink
            .prepare(self.connector.name(), record, request)
        {
            Ok(prepared) => prepared,
            Err(error) => {
                return RecordOutcome::Failed(
                    self.describe(record, &format!("the guest's request is invalid: {error}")),
                );
            }
        };
        self.deliver(guest, sender, record, &prepared).await
    }

    /// Sends attempts until the guest accepts, gives up or stops.
    async fn deliver(
        &self,
        guest: &mut LaneGuests,
        sender: &mut LaneSender,
        record: &KafkaRecord,
        request: &PreparedRequest,
    ) -> RecordOutcome {
        let stats = &self.connector.stats;
        let reference = RecordRef {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        };
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let sent = Instant::now();
            let outcome = sender.send(request).await;
            let last_status = match &outcome {
                AttemptOutcome::Response(response) => Some(response.status),
                AttemptOutcome::Transport(_) => None,
            };
            // One clock read serves the attempt's duration, the record's
            // elapsed time and the start of `decide`.
            let answered = Instant::now();
            stats.attempts.record(last_status, answered - sent);
            let info = AttemptInfo {
                attempt,
                elapsed_ms: (answered - started)
                    .as_millis()
                    .try_into()
                    .unwrap_or(u64::MAX),
            };
            let decided = match guest.decide(&reference, &outcome, info).await {
                Err(error) if error.is_call_failure() => {
                    self.note_retrying(record, &error);
                    guest.decide(&reference, &outcome, info).await
                }
                other => other,
            };
            stats
                .guest_calls
                .record(GuestExport::Decide, answered.elapsed());
            let decision = match decided {
                Ok(decision) => decision,
                Err(error) => return self.guest_failed(record, error, attempt, last_status).await,
            };
            match decision {
                RetryDecision::Accept => {
                    ConnectorStats::bump(&stats.delivered);
                    tracing::debug!(connector = %self.connector.name(), topic = %record.topic, partition = record.partition,
                        offset = record.offset, attempt, status = ?last_status, "delivered");
                    return RecordOutcome::Finished;
                }
                RetryDecision::RetryAfter(wait_ms) => {
                    ConnectorStats::bump(&stats.retried);
                    tracing::info!(connector = %self.connector.name(), topic = %record.topic, partition = record.partition,
                        offset = record.offset, attempt, status = ?last_status, wait_ms, "will retry");
                    if !self.sleep(Duration::from_millis(wait_ms)).await {
                        return RecordOutcome::Abandoned;
                    }
                }
                RetryDecision::Drop(reason) | RetryDecision::DeadLetter(reason) => {
                    return self.give_up(record, &reason, attempt, last_status).await;
                }
                RetryDecision::Stop(reason) => {
                    return RecordOutcome::Failed(self.describe(record, &reason));
                }
            }
        }
    }

    /// Finishes a record the connector gives up on: to the dead-letter topic
    /// if there is one (and it acknowledges), otherwise dropped and logged.
    async fn give_up(
        &self,
        record: &KafkaRecord,
        reason: &str,
        attempts: u32,
        last_status: Option<u16>,
    ) -> RecordOutcome {
        let stats = &self.connector.stats;
        let name = self.connector.name();
        let Some(dead_letter) = &self.connector.dead_letter else {
            tracing::error!(connector = %name, topic = %record.topic, partition = record.partition, offset = record.offset,
                attempts, %reason, "Dropping the message: no dead-letter topic is configured");
            ConnectorStats::bump(&stats.dropped);
            return RecordOutcome::Finished;
        };
        let context = DeadLetterContext {
            connector: name,
            attempts,
            last_status,
            reason,
        };
        match dead_letter.send(record, context).await {
            Ok(()) => {
                tracing::warn!(connector = %name, topic = %record.topic, partition = record.partition, offset = record.offset,
                    attempts, %reason, dead_letter_topic = %dead_letter.topic(), "record sent to the dead-letter topic");
                ConnectorStats::bump(&stats.dead_lettered);
                RecordOutcome::Finished
            }
            Err(error) => {
                RecordOutcome::Failed(self.describe(record, &format!("{reason}; then {error}")))
            }
        }
    }

    /// Logs a failed guest call that is about to be tried once more on a
    /// fresh instance, and counts it towards the crash-loop breaker.
    fn note_retrying(&self, record: &KafkaRecord, error: &GuestError) {
        tracing::warn!(connector = %self.connector.name(), topic = %record.topic, partition = record.partition,
            offset = record.offset, %error, "guest call failed; trying once more on a fresh instance");
        self.connector.note_guest_failure();
    }

    /// A guest call failed twice (or could not be made): the connector's
    /// `guest.errors` policy decides, unless the guest is crash-looping.
    async fn guest_failed(
        &self,
        record: &KafkaRecord,
        error: GuestError,
        attempts: u32,
        last_status: Option<u16>,
    ) -> RecordOutcome {
        if !error.is_call_failure() {
            return RecordOutcome::Failed(self.describe(record, &error.to_string()));
        }
        if self.connector.note_guest_failure() {
            let reason = format!(
                "the guest failed {CRASH_LOOP_FAILURES} times within {}s, last: {error}",
                CRASH_LOOP_WINDOW.as_secs()
            );
            return RecordOutcome::Failed(self.describe(record, &reason));
        }
        match self.connector.config.guest.errors {
            GuestErrorPolicy::Stop => {
                RecordOutcome::Failed(self.describe(record, &error.to_string()))
            }
            GuestErrorPolicy::DeadLetter | GuestErrorPolicy::Drop => {
                self.give_up(record, &error.to_string(), attempts, last_status)
                    .await
            }
        }
    }

    /// Waits until `request.delay.sec` after the record's timestamp (or after
    /// it was read, without one); false if the lane must stop first.
    async fn wait_for_delay(&self, consumed: &ConsumedRecord) -> bool {
        let delay = self.connector.config.request_delay;
        if delay.is_zero() {
            return true;
        }
        let record = &consumed.record;
        let base = match record.timestamp_type {
            TimestampType::NotAvailable => consumed.read_at,
            _ if record.timestamp_ms < 0 => consumed.read_at,
            // A timestamp from a producer clock running ahead counts as "now".
            _ => (UNIX_EPOCH + Duration::from_millis(record.timestamp_ms.unsigned_abs()))
                .min(consumed.read_at),
        };
        match (base + delay).duration_since(SystemTime::now()) {
            Ok(wait) => self.sleep(wait).await,
            Err(_) => true,
        }
    }

    /// Sleeps unless the lane is stopping; false when it must stop.
    async fn sleep(&self, duration: Duration) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        tokio::select! {
            biased;
            () = self.stop.cancelled() => false,
            () = tokio::time::sleep(duration) => true,
        }
    }

    fn describe(&self, record: &KafkaRecord, reason: &str) -> String {
        format!(
            "record {}/{}/{}: {reason}",
            record.topic, record.partition, record.offset
        )
    }
}
