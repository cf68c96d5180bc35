//! The Kafka side: one consumer (and consumer group) per connector, and a
//! dispatcher that hands each partition's records to that partition's lane.
//!
//! Partitions are delivered concurrently, each strictly in order. A lane with
//! a long queue (a slow callback, a retry wait) gets its partition paused, so
//! memory stays bounded and other partitions keep flowing.
//!
//! Offsets: `enable.auto.commit=true` with `enable.auto.offset.store=false`.
//! A lane stores `offset + 1` only when a record is finished, and librdkafka
//! commits stored offsets periodically, on rebalance and on close. On halt the
//! dispatcher also commits the lanes' finished positions synchronously.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, Timestamp, TopicPartitionList};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use crate::config::Subscription;
use crate::connector::{Connector, ConnectorStats};
use crate::delivery::{ConsumedRecord, LaneHandle, OffsetSink, ResumeRequest};
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
    ("queued.max.messages.kbytes", "16384"),
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

/// Lanes by partition, shared by the dispatcher and the rebalance callbacks
/// (which run inside `recv`, on the dispatcher's task).
#[derive(Default)]
struct LaneRegistry {
    active: HashMap<PartitionKey, LaneHandle>,
    /// Lanes of revoked partitions that may still be finishing an attempt.
    retiring: HashMap<PartitionKey, JoinHandle<()>>,
}

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
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let mut lanes = self.lanes.lock().expect("lane registry");
                for element in partitions.elements() {
                    let key = (element.topic().to_owned(), element.partition());
                    if let Some(lane) = lanes.active.remove(&key) {
                        let join = lane.retire();
                        lanes.retiring.insert(key, join);
                    }
                }
                tracing::info!(connector = %self.log.owner(), count = partitions.count(), "partitions revoked");
            }
            Rebalance::Assign(_) => {}
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
            // New partitions follow the connector's pause switch; a partition
            // paused for back-pressure before a rebalance must not stay paused.
            let result = if *self.paused.borrow() {
                consumer.pause(partitions)
            } else {
                consumer.resume(partitions)
            };
            if let Err(error) = result {
                tracing::debug!(connector = %self.log.owner(), %error, "pause/resume after assignment");
            }
            tracing::info!(connector = %self.log.owner(), count = partitions.count(), "partitions assigned");
        }
    }
}

/// Stores finished positions in librdkafka's offset store.
struct ConsumerOffsets(Arc<SourceConsumer>);

impl OffsetSink for ConsumerOffsets {
    fn store(&self, topic: &str, partition: i32, next_offset: i64) {
        // librdkafka's rd_kafka_offset_store commits the offset given + 1, so
        // it is handed the finished record's own offset. It fails only when
        // the partition was revoked meanwhile: its new owner starts from the
        // last commit, so nothing is skipped.
        if let Err(error) = self.0.store_offset(topic, partition, next_offset - 1) {
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
        let consumer = client_config(kafka, &defaults, &connector.consumer_overrides, &forced)
            .create_with_context(context)
            .map_err(SourceError::Create)?;
        Ok(Self {
            consumer: Arc::new(consumer),
            lanes,
        })
    }

    /// Subscribes and dispatches records until the connector halts, then
    /// lets in-flight attempts finish within `grace` and commits what is
    /// finished.
    pub async fn run(self, connector: Arc<Connector>, grace: Duration) -> Result<(), SourceError> {
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

        let (resume_tx, resume_rx) = tokio::sync::mpsc::unbounded_channel();
        self.dispatch(&connector, resume_tx, resume_rx).await;
        self.drain(&connector, grace).await;
        connector.mark_stopped();
        Ok(())
    }

    async fn dispatch(
        &self,
        connector: &Arc<Connector>,
        resume_tx: UnboundedSender<ResumeRequest>,
        mut resume_rx: UnboundedReceiver<ResumeRequest>,
    ) {
        let offsets: Arc<dyn OffsetSink> = Arc::new(ConsumerOffsets(self.consumer.clone()));
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
                Some(request) = resume_rx.recv() => self.resume(connector, &request),
                received = self.consumer.recv() => match received {
                    Ok(message) => self.hand_to_lane(connector, &offsets, &resume_tx, &message),
                    Err(error) => {
                        tracing::warn!(connector = %connector.name(), %error, "Kafka consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    fn hand_to_lane(
        &self,
        connector: &Arc<Connector>,
        offsets: &Arc<dyn OffsetSink>,
        resume: &UnboundedSender<ResumeRequest>,
        message: &BorrowedMessage<'_>,
    ) {
        ConnectorStats::bump(&connector.stats.consumed);
        let record = to_record(message);
        let key = (record.topic.clone(), record.partition);
        let mut lanes = self.lanes.lock().expect("lane registry");
        let registry = &mut *lanes;
        let lane = registry
            .active
            .entry(key)
            .or_insert_with_key(|(topic, partition)| {
                let predecessor = registry.retiring.remove(&(topic.clone(), *partition));
                LaneHandle::spawn(
                    connector.clone(),
                    offsets.clone(),
                    topic.clone(),
                    *partition,
                    resume.clone(),
                    predecessor,
                )
            });
        let (topic, partition) = (message.topic(), message.partition());
        if lane.push(ConsumedRecord {
            record,
            read_at: SystemTime::now(),
        }) && let Err(error) = self.consumer.pause(&single_partition(topic, partition))
        {
            tracing::warn!(connector = %connector.name(), topic, partition, %error, "cannot pause partition");
        }
    }

    /// Pauses every assigned partition, or resumes those whose lanes are not
    /// holding them back for back-pressure.
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
            let lanes = self.lanes.lock().expect("lane registry");
            let mut ready = TopicPartitionList::new();
            for element in assignment.elements() {
                let key = (element.topic().to_owned(), element.partition());
                if !lanes.active.get(&key).is_some_and(LaneHandle::held_back) {
                    ready.add_partition(element.topic(), element.partition());
                }
            }
            self.consumer.resume(&ready)
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

    fn resume(&self, connector: &Connector, request: &ResumeRequest) {
        if connector.is_paused() {
            // Resumed with the connector; see apply_pause.
            return;
        }
        let lanes = self.lanes.lock().expect("lane registry");
        let current = lanes
            .active
            .get(&(request.topic.clone(), request.partition));
        if current.is_some_and(|lane| lane.asked(request))
            && let Err(error) = self
                .consumer
                .resume(&single_partition(&request.topic, request.partition))
        {
            tracing::warn!(connector = %connector.name(), topic = %request.topic, partition = request.partition, %error,
                    "cannot resume partition");
        }
    }

    /// Stops every lane, waits up to `grace` for in-flight attempts, then
    /// commits each partition's finished position.
    async fn drain(&self, connector: &Connector, grace: Duration) {
        let (lanes, mut joins) = {
            let mut registry = self.lanes.lock().expect("lane registry");
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

fn single_partition(topic: &str, partition: i32) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(1);
    list.add_partition(topic, partition);
    list
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
