//! The Kafka side: one consumer (and consumer group) per connector, and one
//! lane per assigned partition.
//!
//! Partitions are delivered concurrently, each in the order its connector's
//! `delivery.ordering` asks for (see [`crate::delivery`]). Each assigned
//! partition gets its own librdkafka queue (split from the consumer's queue
//! as it is assigned), read by its lane one record at a time, while the
//! lane holds fewer than `delivery.max.pending.records` unfinished ones. librdkafka stops fetching a partition
//! whose queue holds `queued.max.messages.kbytes` (or `queued.min.messages`),
//! so a slow lane (a slow callback, a retry wait) holds back only its own
//! partition, memory stays bounded, and nothing is paused and re-fetched.
//! The consumer's own queue then carries only events: rebalances, errors and
//! statistics, served by the dispatcher.
//!
//! Offsets: `enable.auto.commit=true` with `enable.auto.offset.store=false`.
//! A lane stores its partition's commit mark (the lowest offset read and not
//! finished) whenever it moves, and librdkafka commits stored offsets
//! periodically and on close. On halt the dispatcher also commits the lanes'
//! finished positions synchronously, and so does a revoke, after waiting (up
//! to the shutdown grace) for the revoked lanes' attempts in flight: the
//! partition's next owner then starts after every record delivered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, Timestamp, TopicPartitionList};
use tokio::task::JoinHandle;

use crate::config::Subscription;
use crate::connector::{Connector, ConnectorStats};
use crate::delivery::{
    ConcurrencyLimit, ConsumedRecord, LaneHandle, LanePosition, OffsetSink, RecordQueue,
};
use crate::guest::bindings::{Header, KafkaRecord, TimestampType};
use crate::kafka::{LogContext, client_config, log_librdkafka};

/// The consumer type of a connector.
pub type SourceConsumer = StreamConsumer<SourceContext>;

type PartitionKey = (String, i32);

/// Consumer properties wasmsink defaults (the `[kafka]` table and
/// `consumer.override.*` may change them).
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("auto.commit.interval.ms", "1000"),
    // Each partition has its own queue (see the module documentation), so
    // these bound what is fetched ahead per partition: 1 MiB, or 10,000
    // records if they are small.
    ("queued.max.messages.kbytes", "1024"),
    ("queued.min.messages", "10000"),
    // librdkafka postpones fetching a partition whose queue is full by this
    // much (1 s by default). With queues of 1 MiB, a lane can empty its
    // queue sooner than that: 1 KiB records ran at 0.17 of the limit with
    // 1 s and 0.26 with 100 ms.
    ("fetch.queue.backoff.ms", "100"),
    // How long the broker may hold a fetch that finds no new record. Kafka
    // answers as soon as a record arrives, so this mostly sets the idle
    // fetch rate; tansu waits it out even when it has records, so there it
    // is also a floor under the delivery latency. A trade-off (README):
    // at librdkafka's 500 ms the p99 at 200 records/s was 252 ms, at 100 ms
    // 54 ms, at 10 ms 8 ms; but 20 connectors fetching every 10 ms overload
    // tansu (p99 2.3 s at 8,000 records/s, against 0.4 s at 100 ms).
    ("fetch.wait.max.ms", "100"),
    // Feeds the consumer-lag metric.
    ("statistics.interval.ms", "5000"),
];

/// Why a connector's consumer could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// librdkafka refused the configuration.
    #[error("cannot create the Kafka consumer: {0}")]
    Create(KafkaError),
    /// The subscription was refused.
    #[error("cannot subscribe: {0}")]
    Subscribe(KafkaError),
}

/// What a new lane needs; present while the connector runs.
struct LaneSpawner {
    connector: Arc<Connector>,
    /// The connector's request limit, shared by its lanes.
    limit: Arc<ConcurrencyLimit>,
    /// How long a revoked lane may finish its attempts before its partition
    /// is handed over anyway (`shutdown.timeout.sec`).
    grace: Duration,
    offsets: Arc<dyn OffsetSink>,
    consumer: Weak<SourceConsumer>,
}

/// Lanes by partition, shared by the dispatcher and the rebalance callbacks
/// (which run inside `recv`, on the dispatcher's task).
#[derive(Default)]
struct LaneRegistry {
    active: HashMap<PartitionKey, LaneHandle>,
    /// Lanes of revoked partitions that may still be finishing an attempt.
    retiring: HashMap<PartitionKey, JoinHandle<()>>,
    /// Set by [`Source::run`], taken away when the connector halts.
    spawner: Option<LaneSpawner>,
}

impl LaneRegistry {
    /// Starts a lane for each newly assigned partition, reading that
    /// partition's own queue. Called before librdkafka starts fetching the
    /// partitions, so that none of their records reaches the consumer's
    /// queue: a partition split once stays split (librdkafka keeps a queue
    /// the application forwarded), even while no handle is open.
    fn assign(&mut self, partitions: &TopicPartitionList) {
        let Some(spawner) = &self.spawner else {
            return;
        };
        for element in partitions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let key = (topic.to_owned(), partition);
            // A partition assigned again waits for its previous lane.
            let predecessor = match self.active.remove(&key) {
                Some(lane) => Some(lane.retire()),
                None => self.retiring.remove(&key),
            };
            let split = PartitionSplit {
                consumer: spawner.consumer.clone(),
                connector: spawner.connector.clone(),
                topic: topic.to_owned(),
                partition,
            };
            // Split now, unless the previous lane still holds a handle: when
            // it drops it, librdkafka forgets the queue's wake-up callback,
            // which the new handle shares. Then the new lane splits again
            // once its predecessor is gone.
            let open: Box<dyn FnOnce() -> Option<PartitionRecords> + Send> = match predecessor {
                None => {
                    let queue = split.open();
                    Box::new(move || queue)
                }
                Some(_) => Box::new(move || split.open()),
            };
            let lane = LaneHandle::spawn(
                spawner.connector.clone(),
                spawner.limit.clone(),
                spawner.offsets.clone(),
                topic.to_owned(),
                partition,
                open,
                predecessor,
            );
            self.active.insert(key, lane);
        }
    }

    /// Stops the lanes of revoked partitions; returns them with how long
    /// they may take to finish their attempts in flight.
    fn revoke(&mut self, partitions: &TopicPartitionList) -> (Vec<Handoff>, Duration) {
        let mut handoffs = Vec::new();
        for element in partitions.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if let Some(lane) = self.active.remove(&key) {
                let position = lane.position();
                handoffs.push(Handoff {
                    key,
                    position,
                    join: lane.retire(),
                });
            }
        }
        let grace = self
            .spawner
            .as_ref()
            .map_or(Duration::ZERO, |spawner| spawner.grace);
        (handoffs, grace)
    }
}

/// A revoked partition's lane, finishing before the partition moves on.
struct Handoff {
    key: PartitionKey,
    position: LanePosition,
    join: JoinHandle<()>,
}

/// Waits (blocking the rebalance callback, up to `grace`) for revoked lanes
/// to finish their attempts in flight, then commits their finished
/// positions, so that the partition's next owner, in this process or
/// another, starts after every record that was delivered: no key sees a
/// record from the new owner while the old one still sends. A lane still
/// busy when the grace runs out keeps finishing; its partition resumes from
/// the last commit and the records it was sending may arrive twice.
fn hand_over(
    consumer: &rdkafka::consumer::BaseConsumer<SourceContext>,
    owner: &str,
    handoffs: &[Handoff],
    grace: Duration,
) {
    let deadline = std::time::Instant::now() + grace;
    while handoffs.iter().any(|lane| !lane.join.is_finished())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(HANDOFF_POLL);
    }
    let mut finished = TopicPartitionList::new();
    for lane in handoffs {
        if let Some(next) = lane.position.get() {
            let _ = finished.add_partition_offset(&lane.key.0, lane.key.1, Offset::Offset(next));
        }
    }
    if finished.count() > 0
        && let Err(error) = consumer.commit(&finished, CommitMode::Sync)
    {
        tracing::warn!(connector = %owner, %error, "commit on revoke failed; the last finished records may be delivered again");
    }
}

/// How often a rebalance callback checks whether revoked lanes finished.
const HANDOFF_POLL: Duration = Duration::from_millis(10);

/// The consumer's context: librdkafka logs and rebalance handling.
pub struct SourceContext {
    log: LogContext,
    lanes: Arc<Mutex<LaneRegistry>>,
    paused: tokio::sync::watch::Receiver<bool>,
    lag: Arc<crate::metrics::ConsumerLag>,
}

impl ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(self.log.owner(), level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        self.lag.update(&statistics);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let (handoffs, grace) =
                    self.lanes.lock().expect("lane registry").revoke(partitions);
                hand_over(consumer, self.log.owner(), &handoffs, grace);
                let mut registry = self.lanes.lock().expect("lane registry");
                for lane in handoffs {
                    if !lane.join.is_finished() {
                        registry.retiring.insert(lane.key, lane.join);
                    }
                }
                drop(registry);
                tracing::info!(connector = %self.log.owner(), count = partitions.count(), "partitions revoked");
            }
            Rebalance::Assign(partitions) => {
                self.lanes.lock().expect("lane registry").assign(partitions);
            }
            Rebalance::Error(error) => {
                tracing::warn!(connector = %self.log.owner(), %error, "rebalance error")
            }
        }
    }

    fn post_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Assign(partitions) = rebalance {
            // New partitions follow the connector's pause switch.
            if *self.paused.borrow()
                && let Err(error) = consumer.pause(partitions)
            {
                tracing::debug!(connector = %self.log.owner(), %error, "pause after assignment");
            }
            tracing::info!(connector = %self.log.owner(), count = partitions.count(), "partitions assigned");
        }
    }
}

/// How a lane gets its partition's queue.
struct PartitionSplit {
    consumer: Weak<SourceConsumer>,
    connector: Arc<Connector>,
    topic: String,
    partition: i32,
}

impl PartitionSplit {
    /// Splits the partition's queue off the consumer's; fails the connector
    /// when librdkafka has none (the consumer is gone when halting).
    fn open(self) -> Option<PartitionRecords> {
        let queue = self
            .consumer
            .upgrade()?
            .split_partition_queue(&self.topic, self.partition);
        if queue.is_none() {
            self.connector.fail(format!(
                "librdkafka has no queue for the assigned partition {}/{}",
                self.topic, self.partition
            ));
        }
        Some(PartitionRecords {
            queue: queue?,
            connector: self.connector,
        })
    }
}

/// One partition's own librdkafka queue, read by its lane.
struct PartitionRecords {
    queue: StreamPartitionQueue<SourceContext>,
    connector: Arc<Connector>,
}

impl RecordQueue for PartitionRecords {
    type Error = KafkaError;

    async fn next(&mut self) -> Result<ConsumedRecord, KafkaError> {
        let message = self.queue.recv().await?;
        ConnectorStats::bump(&self.connector.stats.consumed);
        Ok(ConsumedRecord {
            record: to_record(&message),
            read_at: SystemTime::now(),
        })
    }
}

/// Stores finished positions in librdkafka's offset store.
struct ConsumerOffsets(Weak<SourceConsumer>);

impl OffsetSink for ConsumerOffsets {
    fn store(&self, topic: &str, partition: i32, next_offset: i64) {
        let Some(consumer) = self.0.upgrade() else {
            return;
        };
        // librdkafka's rd_kafka_offset_store commits the offset given + 1, so
        // it is handed the finished record's own offset. It fails only when
        // the partition was revoked meanwhile: its new owner starts from the
        // last commit, so nothing is skipped.
        if let Err(error) = consumer.store_offset(topic, partition, next_offset - 1) {
            tracing::debug!(topic, partition, next_offset, %error, "offset not stored");
        }
    }
}

/// A connector's consumer, created (and its configuration checked) before
/// anything is consumed.
pub struct Source {
    consumer: Arc<SourceConsumer>,
    lanes: Arc<Mutex<LaneRegistry>>,
}

impl Source {
    /// Creates the consumer for `connector` from the shared `[kafka]`
    /// properties and its `consumer.override.*` properties.
    pub fn new(
        connector: &crate::config::ConnectorConfig,
        kafka: &std::collections::BTreeMap<String, String>,
        paused: tokio::sync::watch::Receiver<bool>,
        lag: Arc<crate::metrics::ConsumerLag>,
    ) -> Result<Self, SourceError> {
        let lanes = Arc::new(Mutex::new(LaneRegistry::default()));
        let client_id = format!("wasmsink-{}", connector.name);
        let mut defaults = CONSUMER_DEFAULTS.to_vec();
        defaults.push(("client.id", &client_id));
        let forced = [
            ("group.id", connector.group_id.as_str()),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
        ];
        let context = SourceContext {
            log: LogContext::new(connector.name.clone()),
            lanes: lanes.clone(),
            paused,
            lag,
        };
        let consumer = client_config(
            kafka,
            connector.consumer_inherit,
            &defaults,
            &connector.consumer_overrides,
            &forced,
        )
        .create_with_context(context)
        .map_err(SourceError::Create)?;
        Ok(Self {
            consumer: Arc::new(consumer),
            lanes,
        })
    }

    /// Subscribes and serves the consumer's events (rebalances start and
    /// stop lanes) until the connector halts, then lets in-flight attempts
    /// finish within `grace` and commits what is finished.
    pub async fn run(self, connector: Arc<Connector>, grace: Duration) -> Result<(), SourceError> {
        let limit = ConcurrencyLimit::new(&connector.config.delivery);
        connector
            .stats
            .delivery
            .concurrency_limit
            .store(limit.limit() as u64, std::sync::atomic::Ordering::Relaxed);
        self.lanes.lock().expect("lane registry").spawner = Some(LaneSpawner {
            connector: connector.clone(),
            limit,
            grace,
            offsets: Arc::new(ConsumerOffsets(Arc::downgrade(&self.consumer))),
            consumer: Arc::downgrade(&self.consumer),
        });
        match &connector.config.subscription {
            Subscription::Topics(topics) => {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                self.consumer.subscribe(&topics)
            }
            Subscription::Regex(regex) => {
                let pattern = if regex.starts_with('^') {
                    regex.clone()
                } else {
                    format!("^{regex}")
                };
                self.consumer.subscribe(&[pattern.as_str()])
            }
        }
        .map_err(SourceError::Subscribe)?;
        tracing::info!(connector = %connector.name(), group = %connector.config.group_id, "connector running");

        self.dispatch(&connector).await;
        self.drain(&connector, grace).await;
        connector.mark_stopped();
        Ok(())
    }

    /// Serves the consumer's queue, which carries events only: records go
    /// to the partitions' own queues.
    async fn dispatch(&self, connector: &Arc<Connector>) {
        let halt = connector.halt_token().clone();
        let mut paused = connector.pause_watch();
        loop {
            tokio::select! {
                biased;
                () = halt.cancelled() => break,
                Ok(()) = paused.changed() => {
                    let paused = *paused.borrow_and_update();
                    self.apply_pause(connector, paused);
                }
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        // Cannot happen: every assigned partition's queue is
                        // split off before it is fetched. Stop rather than
                        // deliver it out of order; nothing is committed past it.
                        connector.fail(format!(
                            "record {}/{}/{} arrived outside its partition's queue",
                            message.topic(), message.partition(), message.offset()
                        ));
                    }
                    Err(error) => {
                        tracing::warn!(connector = %connector.name(), %error, "Kafka consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    /// Pauses or resumes every assigned partition's fetching. Lanes hold at
    /// a record boundary on their own (see `Connector::set_paused`).
    fn apply_pause(&self, connector: &Connector, paused: bool) {
        let assignment = match self.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(error) => {
                tracing::warn!(connector = %connector.name(), %error, "cannot read the assignment");
                return;
            }
        };
        let result = if paused {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        match result {
            Ok(()) => {
                tracing::info!(connector = %connector.name(), paused, "connector {}", if paused { "paused" } else { "resumed" })
            }
            Err(error) => {
                tracing::warn!(connector = %connector.name(), %error, "cannot pause or resume partitions")
            }
        }
    }

    /// Stops every lane, waits up to `grace` for in-flight attempts, then
    /// commits each partition's finished position.
    async fn drain(&self, connector: &Connector, grace: Duration) {
        let (lanes, mut joins) = {
            let mut registry = self.lanes.lock().expect("lane registry");
            registry.spawner = None;
            let lanes: Vec<(PartitionKey, LaneHandle)> = registry.active.drain().collect();
            let joins: Vec<JoinHandle<()>> =
                registry.retiring.drain().map(|(_, join)| join).collect();
            (lanes, joins)
        };
        let mut positions = Vec::with_capacity(lanes.len());
        for ((topic, partition), lane) in lanes {
            positions.push((topic, partition, lane.position()));
            joins.push(lane.retire());
        }
        let aborts: Vec<_> = joins.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(grace, futures::future::join_all(joins))
            .await
            .is_err()
        {
            tracing::warn!(connector = %connector.name(), ?grace, "in-flight attempts did not finish in time; they stay uncommitted");
            aborts.iter().for_each(|abort| abort.abort());
        }
        let mut finished = TopicPartitionList::new();
        for (topic, partition, position) in &positions {
            if let Some(next) = position.get() {
                let _ = finished.add_partition_offset(topic, *partition, Offset::Offset(next));
            }
        }
        if finished.count() > 0 {
            match self.consumer.commit(&finished, CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(connector = %connector.name(), partitions = finished.count(), "committed finished offsets")
                }
                Err(error) => {
                    tracing::warn!(connector = %connector.name(), %error, "final commit failed; the last finished records may be delivered again")
                }
            }
        }
        self.consumer.unsubscribe();
    }
}

/// Copies a consumed message into the record type the guest sees.
fn to_record(message: &BorrowedMessage<'_>) -> KafkaRecord {
    let (timestamp_ms, timestamp_type) = match message.timestamp() {
        Timestamp::NotAvailable => (-1, TimestampType::NotAvailable),
        Timestamp::CreateTime(ms) => (ms, TimestampType::CreateTime),
        Timestamp::LogAppendTime(ms) => (ms, TimestampType::LogAppendTime),
    };
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    KafkaRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms,
        timestamp_type,
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}
