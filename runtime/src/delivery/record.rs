//! Delivering one record: `request.delay.sec`, `behavior.on.null.values`,
//! the guest's `transform`, the attempts and the guest's `decide` after
//! each, until the record is finished or the connector must stop.
//!
//! Several records of a partition may be in delivery at once (the lane's
//! scheduler decides which, see [`super`]). They share the lane's guest
//! instance, one call at a time, and a pool of keep-alive connections, one
//! per request in flight. A record waiting for its next attempt holds
//! nothing but its key.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ConsumedRecord;
use super::concurrency::{ConcurrencyLimit, Signal};
use crate::config::{GuestErrorPolicy, NullValueBehavior};
use crate::connector::{CRASH_LOOP_FAILURES, CRASH_LOOP_WINDOW};
use crate::connector::{Connector, ConnectorStats};
use crate::deadletter::DeadLetterContext;
use crate::guest::bindings::{
    AttemptInfo, AttemptOutcome, ErrorKind, KafkaRecord, RecordRef, RetryDecision, TimestampType,
    TransformOutcome,
};
use crate::guest::{GuestError, LaneGuests};
use crate::metrics::{Counted, GuestExport};
use crate::sink::{LaneSender, PreparedRequest, ResponseHeaders};

/// How one record ended.
pub(super) enum RecordOutcome {
    /// Finished: its offset may be committed.
    Finished,
    /// Not finished because the lane is stopping; it is read again later.
    Abandoned,
    /// Not finished; the connector must fail with this reason.
    Failed(String),
}

/// What the records of one partition lane share while being delivered.
pub(super) struct RecordDelivery {
    connector: Arc<Connector>,
    stop: CancellationToken,
    /// The connector's pause switch: while it is on, no attempt starts.
    pause: tokio::sync::watch::Receiver<bool>,
    /// The lane's guest instance: one call at a time (a wasmtime `Store` is
    /// not `Sync`), interleaved between records. (`futures`' lock, not
    /// tokio's: taking and giving back a free lock is one atomic operation
    /// each, where tokio's gives back through its semaphore's mutex.)
    guest: futures::lock::Mutex<LaneGuests>,
    senders: SenderPool,
    /// `delivery.max.in.flight`: requests of this partition. `None` when
    /// `delivery.max.pending.records` is no larger (as in `partition`
    /// order): a partition never has more records in delivery than pending,
    /// nor a record more than one request in flight.
    slots: Option<Semaphore>,
    /// The connector's limit across partitions.
    limit: Arc<ConcurrencyLimit>,
}

/// Idle senders of a lane; a request takes one (or opens one) and gives it back.
struct SenderPool {
    idle: Mutex<Vec<LaneSender>>,
    headers: ResponseHeaders,
}

impl RecordDelivery {
    pub(super) fn new(
        connector: Arc<Connector>,
        stop: CancellationToken,
        limit: Arc<ConcurrencyLimit>,
    ) -> Self {
        let headers = if connector.guests.decide_reads_response_headers() {
            ResponseHeaders::Keep
        } else {
            ResponseHeaders::Drop
        };
        let settings = connector.config.delivery;
        Self {
            guest: futures::lock::Mutex::new(connector.guests.lane()),
            senders: SenderPool {
                idle: Mutex::new(Vec::new()),
                headers,
            },
            slots: (settings.max_pending_records > settings.max_in_flight)
                .then(|| Semaphore::new(settings.max_in_flight)),
            limit,
            stop,
            pause: connector.pause_watch(),
            connector,
        }
    }

    /// Delivers one record until it is finished, abandoned or failed.
    pub(super) async fn deliver(&self, consumed: &ConsumedRecord) -> RecordOutcome {
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
        let transformed = {
            let mut guest = self.guest.lock().await;
            match guest.transform(record).await {
                Err(error) if error.is_call_failure() => {
                    self.note_retrying(record, &error);
                    guest.transform(record).await
                }
                other => other,
            }
        };
        stats
            .guest_calls
            .record(GuestExport::Transform, started.elapsed());
        let request = match transformed {
            Err(error) => return Box::pin(self.guest_failed(record, error, 0, None)).await,
            Ok(TransformOutcome::Skip) => {
                ConnectorStats::bump(&stats.skipped);
                return RecordOutcome::Finished;
            }
            Ok(TransformOutcome::Error(error)) => {
                let reason = format!("the guest refused the record: {}", error.message);
                return match error.kind {
                    ErrorKind::InvalidRecord => {
                        Box::pin(self.give_up(record, &reason, 0, None)).await
                    }
                    ErrorKind::Fatal => RecordOutcome::Failed(self.describe(record, &reason)),
                };
            }
            Ok(TransformOutcome::Deliver(request)) => request,
        };
        let prepared = match self.connector.sink.prepare(request) {
            Ok(prepared) => prepared,
            Err(error) => {
                return RecordOutcome::Failed(
                    self.describe(record, &format!("the guest's request is invalid: {error}")),
                );
            }
        };
        self.attempts(record, &prepared).await
    }

    /// Sends attempts until the guest accepts, gives up or stops.
    async fn attempts(&self, record: &KafkaRecord, request: &PreparedRequest) -> RecordOutcome {
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
            let Some((outcome, sent, answered)) = self.send(record, request).await else {
                return RecordOutcome::Abandoned;
            };
            let last_status = match &outcome {
                AttemptOutcome::Response(response) => Some(response.status),
                AttemptOutcome::Transport(_) => None,
            };
            // The answer's clock reading also serves the record's elapsed
            // time and the start of `decide`.
            stats.attempts.record(last_status, answered - sent);
            let info = AttemptInfo {
                attempt,
                elapsed_ms: (answered - started)
                    .as_millis()
                    .try_into()
                    .unwrap_or(u64::MAX),
            };
            let decided = {
                let mut guest = self.guest.lock().await;
                match guest.decide(&reference, &outcome, info).await {
                    Err(error) if error.is_call_failure() => {
                        self.note_retrying(record, &error);
                        guest.decide(&reference, &outcome, info).await
                    }
                    other => other,
                }
            };
            stats
                .guest_calls
                .record(GuestExport::Decide, answered.elapsed());
            let decision = match decided {
                Ok(decision) => decision,
                Err(error) => {
                    return Box::pin(self.guest_failed(record, error, attempt, last_status)).await;
                }
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
                    if !self.park(Duration::from_millis(wait_ms)).await {
                        return RecordOutcome::Abandoned;
                    }
                }
                RetryDecision::Drop(reason) | RetryDecision::DeadLetter(reason) => {
                    // Rare, and its future (a dead-letter produce) is large:
                    // boxed, so that every record's future stays small.
                    return Box::pin(self.give_up(record, &reason, attempt, last_status)).await;
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
            Ok(wait) => self.park(wait).await,
            Err(_) => true,
        }
    }

    /// Waits (for a back-off or `request.delay.sec`) unless the lane is
    /// stopping; false when it must stop. Only this record's key waits.
    async fn park(&self, duration: Duration) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        let _parked = Counted::raise(&self.connector.stats.delivery.parked);
        tokio::select! {
            biased;
            () = self.stop.cancelled() => false,
            () = tokio::time::sleep(duration) => true,
        }
    }

    /// Sends one attempt once the partition and the connector have room for
    /// it and the connector is not paused; `None` when the lane stops
    /// first. Returns what happened, when the request left and when it was
    /// answered.
    async fn send(
        &self,
        record: &KafkaRecord,
        request: &PreparedRequest,
    ) -> Option<(AttemptOutcome, Instant, Instant)> {
        let (_slot, permit) = loop {
            if !self.unpaused().await {
                return None;
            }
            let permits = async {
                let slot = match &self.slots {
                    Some(slots) => slots.acquire().await.ok(),
                    None => None,
                };
                (slot, self.limit.acquire().await)
            };
            let permits = tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                permits = permits => permits,
            };
            // Paused while waiting for room: the room goes back (to the
            // connector's other lanes, too) until the connector resumes.
            if !self.connector.is_paused() {
                break permits;
            }
        };
        let headers = request.headers(self.connector.name(), record);
        let gauges = &self.connector.stats.delivery;
        let mut sender = self.senders.take(&self.connector);
        let in_flight = Counted::raise(&gauges.in_flight);
        let sent = Instant::now();
        let outcome = sender.send(request, headers).await;
        let answered = Instant::now();
        drop(in_flight);
        self.senders.give_back(sender);
        permit.report(
            Signal::of(&outcome),
            sent,
            answered,
            &gauges.concurrency_limit,
        );
        Some((outcome, sent, answered))
    }

    /// Waits while the connector is paused: a paused connector starts no
    /// attempt, and lets those in flight finish. False when the lane stops
    /// (or the connector is gone) first.
    async fn unpaused(&self) -> bool {
        if !self.connector.is_paused() {
            return true;
        }
        let mut pause = self.pause.clone();
        tokio::select! {
            biased;
            () = self.stop.cancelled() => false,
            resumed = pause.wait_for(|paused| !paused) => resumed.is_ok(),
        }
    }

    fn describe(&self, record: &KafkaRecord, reason: &str) -> String {
        format!(
            "record {}/{}/{}: {reason}",
            record.topic, record.partition, record.offset
        )
    }
}

impl SenderPool {
    fn take(&self, connector: &Connector) -> LaneSender {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| connector.sink.lane(self.headers))
    }

    fn give_back(&self, sender: LaneSender) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sender);
    }
}
