//! A partition lane: reads one partition's records and schedules their
//! delivery, keeping the order `delivery.ordering` asks for.
//!
//! The lane is three parts, each with one job:
//! - [`record::RecordDelivery`] delivers one record: `request.delay.sec`,
//!   `behavior.on.null.values`, the guest's `transform`, the attempts and
//!   `decide` after each, until it is finished or the connector must stop;
//! - [`progress::PartitionProgress`] tracks which records are finished and
//!   the commit mark (the lowest unfinished offset read): only finished
//!   records move it, whatever order they finish in;
//! - the schedule here decides which record starts when: a record starts
//!   once no earlier record of its [`keys::OrderKey`] is unfinished. In
//!   `partition` order every record has the same key, so one record at a
//!   time is in delivery, exactly as the seed connector did; in `key`
//!   order each record key is its own; in `none` order nothing waits.
//!
//! Reading is bounded by `delivery.max.pending.records`: a lane that holds
//! that many records from its commit mark on (finished or not) stops
//! reading its queue, so librdkafka stops fetching that partition and no
//! other, and a crash re-sends at most that many records of it beyond what
//! finished since the last commit. Requests are bounded by
//! `delivery.max.in.flight` per lane and by the connector's
//! [`concurrency::ConcurrencyLimit`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::connector::Connector;
use crate::guest::bindings::KafkaRecord;

mod concurrency;
mod keys;
mod progress;
mod record;
#[cfg(test)]
mod tests;

pub(crate) use concurrency::ConcurrencyLimit;
use keys::{KeyQueues, KeyRule, OrderKey};
use progress::{PartitionProgress, Ticket};
use record::{RecordDelivery, RecordOutcome};

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
/// A lane asks for the next record only while it holds fewer than
/// `delivery.max.pending.records` records from its commit mark on, so the
/// queue behind this (librdkafka's own queue for the partition, which stops
/// fetching when it holds `queued.max.messages.kbytes`) is all the other
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
    pub(crate) fn spawn<Q, F>(
        connector: Arc<Connector>,
        limit: Arc<ConcurrencyLimit>,
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
        let lane = Lane::new(
            connector,
            limit,
            offsets,
            topic,
            partition,
            stop.clone(),
            next_offset.clone(),
        );
        let join = crate::lane_threads::spawn(async move {
            if let Some(previous) = predecessor {
                let _ = previous.await;
            }
            if let Some(queue) = open() {
                lane.run(queue).await;
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

    /// Tells the lane to stop: each attempt in flight finishes, and nothing
    /// new starts. Returns its task.
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

/// A lane task: the records in delivery borrow `delivery`, while the loop
/// owns `schedule`.
struct Lane {
    delivery: RecordDelivery,
    schedule: Schedule,
    pause: tokio::sync::watch::Receiver<bool>,
    stop: CancellationToken,
    /// `delivery.max.pending.records`.
    max_pending: usize,
}

impl Lane {
    /// A lane for one partition that stores its finished position in
    /// `offsets` and `next_offset` and stops when `stop` is cancelled.
    fn new(
        connector: Arc<Connector>,
        limit: Arc<ConcurrencyLimit>,
        offsets: Arc<dyn OffsetSink>,
        topic: String,
        partition: i32,
        stop: CancellationToken,
        next_offset: Arc<AtomicI64>,
    ) -> Self {
        let settings = connector.config.delivery;
        Lane {
            pause: connector.pause_watch(),
            max_pending: settings.max_pending_records,
            delivery: RecordDelivery::new(connector.clone(), stop.clone(), limit),
            stop,
            schedule: Schedule {
                rule: KeyRule::new(settings.ordering, settings.null_keys),
                keys: KeyQueues::default(),
                ready: VecDeque::new(),
                pending: 0,
                progress: PartitionProgress::default(),
                shown: Shown::default(),
                next_offset,
                offsets,
                connector,
                topic,
                partition,
            },
        }
    }

    /// Reads, starts and finishes records until the lane stops, then waits
    /// for the records in delivery: each finishes its attempt in flight,
    /// and a record that would wait for another is abandoned, uncommitted.
    async fn run<Q: RecordQueue>(self, mut queue: Q) {
        let Lane {
            delivery,
            mut schedule,
            pause,
            stop,
            max_pending,
        } = self;
        let start = |key: OrderKey, read: ReadRecord| {
            let delivery = &delivery;
            async move {
                let outcome = delivery.deliver(&read.consumed).await;
                (key, read.ticket, outcome)
            }
        };
        let mut running = FuturesUnordered::new();
        // The stop token and the pause flag, in a set of their own so that
        // each is polled only after it woke the lane. The lane wakes for
        // every answer of every record in delivery, and polling them then
        // would take the token's and the watch's locks each time.
        let mut control: FuturesUnordered<ControlChange<'_>> = FuturesUnordered::new();
        control.push(Box::pin(async {
            stop.cancelled().await;
            Control::Stop
        }));
        control.push(pause_change(pause.clone()));
        // Kept up to date by the pause changes, so that no turn of the loop
        // takes the watch's lock.
        let mut paused = *pause.borrow();
        let mut stopping = false;
        // After a consumer error, reading waits until then.
        let mut read_after: Option<Instant> = None;
        loop {
            if !stopping && !paused {
                while let Some((key, read)) = schedule.ready.pop_front() {
                    running.push(start(key, read));
                }
            }
            if stopping && running.is_empty() {
                break;
            }
            let can_read =
                !stopping && !paused && read_after.is_none() && schedule.has_room(max_pending);
            tokio::select! {
                biased;
                Some(done) = running.next(), if !running.is_empty() => {
                    stopping |= schedule.done(done);
                }
                Some(change) = control.next(), if !stopping => match change {
                    Control::Pause(Some(receiver)) => {
                        paused = *receiver.borrow();
                        control.push(pause_change(receiver));
                    }
                    Control::Pause(None) | Control::Stop => stopping = true,
                },
                () = resume_reading(read_after), if read_after.is_some() => read_after = None,
                next = queue.next(), if can_read => match next {
                    Ok(consumed) => schedule.read(consumed),
                    Err(error) => {
                        tracing::warn!(connector = %schedule.connector.name(), topic = %schedule.topic,
                            partition = schedule.partition, %error, "Kafka consumer error");
                        read_after = Some(Instant::now() + CONSUMER_ERROR_PAUSE);
                    }
                },
            }
        }
    }
}

/// A change the lane must act on, apart from its records.
enum Control {
    /// The lane's stop token was cancelled.
    Stop,
    /// The pause flag changed: the receiver to wait on next, or `None`
    /// when the connector is gone.
    Pause(Option<tokio::sync::watch::Receiver<bool>>),
}

/// Waits for one [`Control`] change.
type ControlChange<'a> = Pin<Box<dyn Future<Output = Control> + Send + 'a>>;

/// Waits for the pause flag to change.
fn pause_change<'a>(mut pause: tokio::sync::watch::Receiver<bool>) -> ControlChange<'a> {
    Box::pin(async move { Control::Pause(pause.changed().await.ok().map(|()| pause)) })
}

/// Waits until `at`; never ends without one. (A timer is only made when
/// there is one to wait for: this runs on every turn of the lane's loop.)
async fn resume_reading(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A lane's bookkeeping: which records wait, which may start, and how far
/// the partition is finished.
struct Schedule {
    connector: Arc<Connector>,
    offsets: Arc<dyn OffsetSink>,
    rule: KeyRule,
    /// Records read behind a key that has one in delivery.
    keys: KeyQueues<ReadRecord>,
    /// Records that may start, in the order they became startable.
    ready: VecDeque<(OrderKey, ReadRecord)>,
    /// Records read and not finished (waiting, ready or in delivery).
    pending: usize,
    progress: PartitionProgress,
    /// What this lane added to the connector's gauges.
    shown: Shown,
    next_offset: Arc<AtomicI64>,
    topic: String,
    partition: i32,
}

/// A record read by its lane, with what says later that it finished.
struct ReadRecord {
    ticket: Ticket,
    consumed: ConsumedRecord,
}

/// This lane's share of the connector's summed gauges.
#[derive(Default)]
struct Shown {
    pending: i64,
    uncommitted: i64,
}

impl Schedule {
    /// A record was read: it starts now or waits behind its key.
    fn read(&mut self, consumed: ConsumedRecord) {
        let ticket = self.progress.read(consumed.record.offset);
        self.pending += 1;
        let key = self.rule.order_key(consumed.record.key.as_deref());
        if let Some(startable) = self.keys.push(key, ReadRecord { ticket, consumed }) {
            self.ready.push_back((key, startable));
        }
        self.show();
    }

    /// Whether the lane may read another record: it holds fewer than
    /// `max_pending` from its commit mark on, and fewer than that are
    /// unfinished (which differs only after a rewind, when records read
    /// before it may still be in delivery).
    fn has_room(&self, max_pending: usize) -> bool {
        self.pending < max_pending && self.progress.held() < max_pending
    }

    /// A record's delivery ended; true when the lane must stop.
    fn done(&mut self, (key, ticket, outcome): (OrderKey, Ticket, RecordOutcome)) -> bool {
        match outcome {
            RecordOutcome::Finished => {
                self.finish(key, ticket);
                false
            }
            RecordOutcome::Abandoned => true,
            RecordOutcome::Failed(reason) => {
                self.connector.fail(reason);
                true
            }
        }
    }

    /// A record finished: its key's next record may start, and the commit
    /// mark may move.
    fn finish(&mut self, key: OrderKey, ticket: Ticket) {
        self.pending -= 1;
        if let Some(next) = self.keys.finish(key) {
            self.ready.push_back((key, next));
        }
        if let Some(mark) = self.progress.finish(ticket) {
            self.next_offset.store(mark, Ordering::Release);
            self.offsets.store(&self.topic, self.partition, mark);
        }
        self.show();
    }

    /// Brings the connector's gauges up to date with this lane.
    fn show(&mut self) {
        let gauges = &self.connector.stats.delivery;
        let pending = i64::try_from(self.pending).unwrap_or(i64::MAX);
        let uncommitted = self.progress.uncommitted();
        if pending != self.shown.pending {
            gauges
                .pending
                .fetch_add(pending - self.shown.pending, Ordering::Relaxed);
        }
        if uncommitted != self.shown.uncommitted {
            gauges
                .uncommitted
                .fetch_add(uncommitted - self.shown.uncommitted, Ordering::Relaxed);
        }
        self.shown = Shown {
            pending,
            uncommitted,
        };
    }
}

impl Drop for Schedule {
    /// Takes this lane's share out of the connector's gauges as it ends,
    /// also when its task is aborted (a revoke whose grace ran out).
    fn drop(&mut self) {
        let gauges = &self.connector.stats.delivery;
        gauges
            .pending
            .fetch_sub(self.shown.pending, Ordering::Relaxed);
        gauges
            .uncommitted
            .fetch_sub(self.shown.uncommitted, Ordering::Relaxed);
    }
}
