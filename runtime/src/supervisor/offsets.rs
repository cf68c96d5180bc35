//! A connector's committed offsets and the topics it has consumed, read and
//! changed through a short-lived consumer in the connector's group (Kafka
//! Connect's KIP-875). Offsets change only while the connector is STOPPED,
//! when no member of its group is consuming.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{Supervisor, SupervisorError, TargetState};
use crate::config::{ConnectorConfig, Subscription};
use crate::kafka::client_config;

/// How long one Kafka request of the offsets API may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a commit waits for the stopped consumer to leave its group.
const COMMIT_PATIENCE: Duration = Duration::from_secs(3);

/// One partition's committed position: the next offset to consume.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
}

/// A requested change of one partition's position; `None` resets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetChange {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to consume, or `None` to go back to the start.
    pub offset: Option<i64>,
}

/// Why an offsets operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetsError {
    /// The supervisor refused (unknown connector, shutting down).
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// Offsets change only while the connector is STOPPED.
    #[error("connector {0} must be STOPPED to change its offsets; PUT /connectors/{0}/stop first")]
    NotStopped(String),
    /// A Kafka request failed.
    #[error("Kafka: {0}")]
    Kafka(String),
    /// A negative offset was asked for.
    #[error("offset {offset} for {topic}-{partition} is negative")]
    Negative {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset given.
        offset: i64,
    },
}

impl Supervisor {
    /// The state an operator asked a connector to be in.
    pub async fn target_state(&self, name: &str) -> Result<TargetState, SupervisorError> {
        self.inner
            .view(name)
            .map(|view| view.target)
            .ok_or_else(|| SupervisorError::NotFound(name.to_owned()))
    }

    /// The committed offsets of the connector's consumer group, for the
    /// topics it subscribes to (every topic, for `topics.regex`).
    pub async fn committed_offsets(
        &self,
        name: &str,
    ) -> Result<Vec<PartitionOffset>, OffsetsError> {
        let config = self.status(name).await?.config;
        let kafka = self.inner.kafka.clone();
        blocking(move || read_committed(&config, &kafka)).await
    }

    /// Moves some partitions' committed positions; only while STOPPED.
    pub async fn alter_offsets(
        &self,
        name: &str,
        changes: Vec<OffsetChange>,
    ) -> Result<(), OffsetsError> {
        if let Some(bad) = changes.iter().find(|c| c.offset.is_some_and(|o| o < 0)) {
            return Err(OffsetsError::Negative {
                topic: bad.topic.clone(),
                partition: bad.partition,
                offset: bad.offset.unwrap_or_default(),
            });
        }
        let held = self.inner.lock(name).await?;
        let config = stopped_config(&held, name)?;
        let kafka = self.inner.kafka.clone();
        // The slot lock is held so that nobody resumes the connector meanwhile.
        blocking(move || commit_changes(&config, &kafka, &changes)).await
    }

    /// Forgets every committed position of the connector's group (its next
    /// start follows `auto.offset.reset`); only while STOPPED.
    pub async fn reset_offsets(&self, name: &str) -> Result<(), OffsetsError> {
        let held = self.inner.lock(name).await?;
        let config = stopped_config(&held, name)?;
        let kafka = self.inner.kafka.clone();
        let admin: AdminClient<DefaultClientContext> = client_config(
            &kafka,
            config.consumer_inherit,
            &[],
            &config.consumer_overrides,
            &[],
        )
        .create()
        .map_err(|e| OffsetsError::Kafka(e.to_string()))?;
        let options = AdminOptions::new().request_timeout(Some(KAFKA_TIMEOUT));
        let deleted = admin
            .delete_groups(&[config.group_id.as_str()], &options)
            .await;
        match deleted.as_deref() {
            Ok([Ok(_)]) => Ok(()),
            // Not every broker implements DeleteGroups: rewind each committed
            // partition to its first offset instead.
            other => {
                tracing::debug!(connector = %name, result = ?other.map(|r| r.len()), "delete_groups did not succeed; rewinding offsets");
                blocking(move || {
                    let committed = read_committed(&config, &kafka)?;
                    let changes: Vec<OffsetChange> = committed
                        .into_iter()
                        .map(|p| OffsetChange {
                            topic: p.topic,
                            partition: p.partition,
                            offset: None,
                        })
                        .collect();
                    commit_changes(&config, &kafka, &changes)
                })
                .await
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, OffsetsError> + Send + 'static,
) -> Result<T, OffsetsError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| OffsetsError::Kafka(e.to_string()))?
}

fn group_consumer(
    config: &ConnectorConfig,
    kafka: &BTreeMap<String, String>,
) -> Result<BaseConsumer, OffsetsError> {
    client_config(
        kafka,
        config.consumer_inherit,
        &[],
        &config.consumer_overrides,
        &[
            ("group.id", config.group_id.as_str()),
            ("enable.auto.commit", "false"),
        ],
    )
    .create()
    .map_err(|e| OffsetsError::Kafka(e.to_string()))
}

fn kafka_error(e: rdkafka::error::KafkaError) -> OffsetsError {
    OffsetsError::Kafka(e.to_string())
}

fn read_committed(
    config: &ConnectorConfig,
    kafka: &BTreeMap<String, String>,
) -> Result<Vec<PartitionOffset>, OffsetsError> {
    let consumer = group_consumer(config, kafka)?;
    let mut list = TopicPartitionList::new();
    let topics: Option<Vec<String>> = match &config.subscription {
        Subscription::Topics(topics) => Some(topics.clone()),
        Subscription::Regex(_) => None,
    };
    let metadata = match &topics {
        Some(topics) if topics.len() == 1 => consumer
            .fetch_metadata(Some(&topics[0]), KAFKA_TIMEOUT)
            .map_err(kafka_error)?,
        _ => consumer
            .fetch_metadata(None, KAFKA_TIMEOUT)
            .map_err(kafka_error)?,
    };
    for topic in metadata.topics() {
        let wanted = match &topics {
            Some(topics) => topics.iter().any(|t| t == topic.name()),
            None => !topic.name().starts_with("__"),
        };
        if wanted && topic.error().is_none() {
            for partition in topic.partitions() {
                list.add_partition(topic.name(), partition.id());
            }
        }
    }
    if list.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer
        .committed_offsets(list, KAFKA_TIMEOUT)
        .map_err(kafka_error)?;
    let mut out: Vec<PartitionOffset> = committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) if offset >= 0 => Some(PartitionOffset {
                topic: e.topic().to_owned(),
                partition: e.partition(),
                offset,
            }),
            _ => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

fn commit_changes(
    config: &ConnectorConfig,
    kafka: &BTreeMap<String, String>,
    changes: &[OffsetChange],
) -> Result<(), OffsetsError> {
    if changes.is_empty() {
        return Ok(());
    }
    let consumer = group_consumer(config, kafka)?;
    let mut list = TopicPartitionList::new();
    for change in changes {
        let offset = match change.offset {
            Some(offset) => offset,
            None => {
                consumer
                    .fetch_watermarks(&change.topic, change.partition, KAFKA_TIMEOUT)
                    .map_err(kafka_error)?
                    .0
            }
        };
        list.add_partition_offset(&change.topic, change.partition, Offset::Offset(offset))
            .map_err(kafka_error)?;
    }
    // Right after a stop the broker may still count the old member in the
    // group until it has left or its session expired: retry meanwhile.
    let deadline = std::time::Instant::now() + COMMIT_PATIENCE;
    loop {
        match consumer.commit(&list, CommitMode::Sync) {
            Ok(()) => return Ok(()),
            Err(error)
                if std::time::Instant::now() < deadline
                    && matches!(
                        error.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::UnknownMemberId
                                | RDKafkaErrorCode::IllegalGeneration
                                | RDKafkaErrorCode::RebalanceInProgress
                        )
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(error) => return Err(kafka_error(error)),
        }
    }
}

/// The configuration of a connector that is STOPPED with no live instance:
/// offsets may only change then.
fn stopped_config(slot: &super::Slot, name: &str) -> Result<ConnectorConfig, OffsetsError> {
    if slot.target != TargetState::Stopped || slot.instance.is_some() {
        return Err(OffsetsError::NotStopped(name.to_owned()));
    }
    Ok(slot.config.clone())
}
