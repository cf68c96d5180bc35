//! FusionAuth-compatible Kafka messengers: named Kafka producer
//! configurations, managed over REST (`/api/messenger`), that send messages
//! to a default topic.
//!
//! [`Messengers`] keeps them (in memory and in the store), applies
//! FusionAuth's rules on every change, sends through one cached producer per
//! messenger, and writes FusionAuth's event log: an `Error` entry for every
//! failed send and, for a messenger with `debug: true`, a `Debug` entry for
//! every send. Connectors use the same path for dead letters
//! (`errors.deadletterqueue.messenger`).

mod errors;
mod event_log;
mod model;
mod patch;
mod producer;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde_json::Value;
use uuid::Uuid;

pub use errors::{ErrorEntry, Errors};
pub use event_log::{
    EventLogEntry, EventLogSearch, EventLogType, SortColumn, like_pattern, parse_order_by,
};
pub use model::{Draft, KAFKA, Messenger, PRODUCER_DEFAULTS};
pub use patch::PatchFlavour;
pub use producer::{DEFAULT_WAIT, ProducerSettings, Producers, PropertyError, settings};

use crate::security::{Client, Policy};
use crate::store::{EventLogStore, MessengerStore, StoreError};

/// Why a change to a messenger was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessengerError {
    /// The request breaks FusionAuth's rules (400 with this body).
    #[error("invalid messenger request")]
    Invalid(Errors),
    /// No messenger has that id (404).
    #[error("no such messenger")]
    NotFound,
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One message for a messenger to send.
#[derive(Debug)]
pub struct Outgoing {
    /// The topic; the messenger's `defaultTopic` when `None`.
    pub topic: Option<String>,
    /// The record key.
    pub key: Option<Vec<u8>>,
    /// The record value (`None` for a tombstone).
    pub value: Option<Vec<u8>>,
    /// The record headers.
    pub headers: OwnedHeaders,
}

/// Where a sent message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No messenger has that id or name.
    #[error("no messenger [{0}]")]
    NotFound(String),
    /// A producer property cannot be honoured.
    #[error(transparent)]
    Property(#[from] PropertyError),
    /// Kafka refused or lost the message.
    #[error("{0}")]
    Kafka(KafkaError),
    /// No acknowledgement came within the messenger's `max.block.ms`.
    #[error("no acknowledgement from Kafka within {0} ms (max.block.ms)")]
    TimedOut(u128),
}

/// A failed send: why, to which topic, and the event log it wrote.
#[derive(Debug)]
pub struct SendFailure {
    /// Why.
    pub error: SendError,
    /// The topic it was for (empty when the messenger was not found).
    pub topic: String,
    /// The id of the `Error` event log written for it.
    pub event_log: Option<i64>,
}

/// How many messages one messenger sent and failed to send since the
/// process started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCounts {
    /// The messenger's name.
    pub name: String,
    /// Acknowledged sends.
    pub sent: u64,
    /// Failed sends.
    pub failed: u64,
}

struct Inner {
    store: Arc<dyn MessengerStore>,
    counts: std::sync::Mutex<std::collections::HashMap<Uuid, (u64, u64)>>,
    event_logs: Arc<dyn EventLogStore>,
    by_id: RwLock<BTreeMap<Uuid, Messenger>>,
    writes: tokio::sync::Mutex<()>,
    producers: Producers,
    policy: Arc<Policy>,
}

/// The messengers of this process.
#[derive(Clone)]
pub struct Messengers {
    inner: Arc<Inner>,
}

/// Now, in epoch milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Messengers {
    /// The messengers kept in `store`; event logs go to the same store.
    /// Producer maps are held to `policy` when written and when a producer
    /// is built.
    pub fn open<S>(store: Arc<S>, policy: Arc<Policy>) -> Result<Self, StoreError>
    where
        S: MessengerStore + EventLogStore + 'static,
    {
        let by_id = store
            .load_messengers()?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                store: store.clone(),
                counts: Default::default(),
                event_logs: store,
                by_id: RwLock::new(by_id),
                writes: tokio::sync::Mutex::new(()),
                producers: Producers::new(policy.clone()),
                policy,
            }),
        })
    }

    /// Messengers kept in memory only (for the quickstart and tests),
    /// under the default policy.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::open(
            Arc::new(crate::store::SqliteStore::in_memory()?),
            Arc::default(),
        )
    }

    /// Every messenger, by name then id.
    pub fn list(&self) -> Vec<Messenger> {
        let mut all: Vec<Messenger> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        all
    }

    /// The messenger with `id`.
    pub fn get(&self, id: &Uuid) -> Option<Messenger> {
        self.read().get(id).cloned()
    }

    /// The messenger whose id (any UUID spelling) or name is `reference`.
    pub fn find(&self, reference: &str) -> Option<Messenger> {
        let by_id = self.read();
        Uuid::parse_str(reference.trim())
            .ok()
            .and_then(|id| by_id.get(&id))
            .or_else(|| by_id.values().find(|m| m.name == reference))
            .cloned()
    }

    /// Each messenger's send counts, by name.
    pub fn send_counts(&self) -> Vec<SendCounts> {
        let counts = self.inner.counts.lock().unwrap_or_else(|p| p.into_inner());
        self.list()
            .into_iter()
            .map(|m| {
                let (sent, failed) = counts.get(&m.id).copied().unwrap_or_default();
                SendCounts {
                    name: m.name,
                    sent,
                    failed,
                }
            })
            .collect()
    }

    fn count(&self, id: &Uuid, ok: bool) {
        let mut counts = self.inner.counts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = counts.entry(*id).or_default();
        if ok {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    /// The event log.
    pub fn event_logs(&self) -> &dyn EventLogStore {
        self.inner.event_logs.as_ref()
    }

    /// The producers cache (exposed for tests and metrics).
    pub fn producers(&self) -> &Producers {
        &self.inner.producers
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Uuid, Messenger>> {
        self.inner.by_id.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a messenger from `{"messenger": {...}}`, with `id` or a new
    /// random one.
    pub async fn create(
        &self,
        id: Option<Uuid>,
        body: &Value,
    ) -> Result<Messenger, MessengerError> {
        let _write = self.inner.writes.lock().await;
        let draft = Draft::read(body).map_err(MessengerError::Invalid)?;
        let mut errors = Errors::default();
        if let Some(id) = id
            && self.get(&id).is_some()
        {
            errors.field(
                "duplicate",
                "messengerId",
                format!("A Messenger with Id [{id}] already exists."),
            );
        }
        self.check(&draft, None, &mut errors);
        if !errors.is_empty() {
            return Err(MessengerError::Invalid(errors));
        }
        let now = now_ms();
        let messenger = draft.into_messenger(id.unwrap_or_else(Uuid::new_v4), now, now);
        self.save(messenger)
    }

    /// Replaces a messenger with `{"messenger": {...}}` (omitted optional
    /// fields return to their defaults).
    pub async fn replace(&self, id: &Uuid, body: &Value) -> Result<Messenger, MessengerError> {
        let _write = self.inner.writes.lock().await;
        let current = self.get(id).ok_or(MessengerError::NotFound)?;
        self.update(current, body)
    }

    /// Patches a messenger in one of FusionAuth's three flavours; the result
    /// is checked like a PUT, and nothing changes when it fails.
    pub async fn patch(
        &self,
        id: &Uuid,
        flavour: PatchFlavour,
        body: &Value,
    ) -> Result<Messenger, MessengerError> {
        let _write = self.inner.writes.lock().await;
        let current = self.get(id).ok_or(MessengerError::NotFound)?;
        let patched = patch::apply(flavour, &current, body).map_err(MessengerError::Invalid)?;
        self.update(current, &patched)
    }

    /// Deletes a messenger.
    pub async fn delete(&self, id: &Uuid) -> Result<(), MessengerError> {
        let _write = self.inner.writes.lock().await;
        if self.get(id).is_none() {
            return Err(MessengerError::NotFound);
        }
        self.inner.store.remove_messenger(id)?;
        self.inner
            .by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.inner.producers.forget(id);
        Ok(())
    }

    fn update(&self, current: Messenger, body: &Value) -> Result<Messenger, MessengerError> {
        let draft = Draft::read(body).map_err(MessengerError::Invalid)?;
        let mut errors = Errors::default();
        self.check(&draft, Some(&current.id), &mut errors);
        if !errors.is_empty() {
            return Err(MessengerError::Invalid(errors));
        }
        // Instants never go backwards, even within one millisecond.
        let now = now_ms().max(current.last_update_instant + 1);
        let messenger = draft.into_messenger(current.id, current.insert_instant, now);
        self.save(messenger)
    }

    /// The field rules, the client property policy on `producer`, and the
    /// unique name (`own` is excluded).
    fn check(&self, draft: &Draft, own: Option<&Uuid>, errors: &mut Errors) {
        draft.check(errors);
        if let Some(producer) = draft.producer()
            && let Err(refusals) = self.inner.policy.client.check(
                Client::Messenger,
                producer,
                &self.inner.policy.egress,
            )
        {
            for refusal in refusals {
                errors.field(
                    "invalid",
                    "messenger.producer",
                    format!(
                        "The producer property [{}] is refused: it {}.",
                        refusal.key, refusal.reason
                    ),
                );
            }
        }
        if let Some(name) = draft.name()
            && self
                .read()
                .values()
                .any(|m| m.name == name && Some(&m.id) != own)
        {
            errors.field(
                "duplicate",
                "messenger.name",
                format!("A Messenger with name = [{name}] already exists."),
            );
        }
    }

    fn save(&self, messenger: Messenger) -> Result<Messenger, MessengerError> {
        self.inner.store.save_messenger(&messenger)?;
        self.inner
            .by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(messenger.id, messenger.clone());
        Ok(messenger)
    }

    /// Sends one message through the messenger with `id`, waiting at most
    /// its `max.block.ms` for Kafka's acknowledgement. A failure writes an
    /// `Error` event log; with `debug` every success writes a `Debug` one.
    /// Event logs name the messenger, topic and sizes, never the payload or
    /// a producer property.
    pub async fn send(&self, id: &Uuid, outgoing: Outgoing) -> Result<Delivered, SendFailure> {
        let Some(messenger) = self.get(id) else {
            return Err(SendFailure {
                error: SendError::NotFound(id.to_string()),
                topic: String::new(),
                event_log: None,
            });
        };
        let topic = outgoing
            .topic
            .clone()
            .unwrap_or_else(|| messenger.default_topic.clone());
        let value_len = outgoing.value.as_ref().map_or(0, Vec::len);
        let keyed = outgoing.key.is_some();
        let result = self.produce(&messenger, &topic, outgoing).await;
        self.count(&messenger.id, result.is_ok());
        match result {
            Ok(delivered) => {
                if messenger.debug {
                    self.log(
                        EventLogType::Debug,
                        format!(
                            "Sent a message to topic [{topic}] with messenger [{}] ({}): partition [{}], offset [{}], \
                             {} key, {value_len} byte value.",
                            messenger.name,
                            messenger.id,
                            delivered.partition,
                            delivered.offset,
                            if keyed { "with a" } else { "no" },
                        ),
                    );
                }
                Ok(delivered)
            }
            Err(error) => {
                tracing::warn!(messenger = %messenger.name, %topic, %error, "messenger send failed");
                let event_log = self.log(
                    EventLogType::Error,
                    format!(
                        "Failed to send a message to topic [{topic}] with messenger [{}] ({}).\n\nReason: {error}",
                        messenger.name, messenger.id
                    ),
                );
                Err(SendFailure {
                    error,
                    topic,
                    event_log,
                })
            }
        }
    }

    async fn produce(
        &self,
        messenger: &Messenger,
        topic: &str,
        outgoing: Outgoing,
    ) -> Result<Delivered, SendError> {
        let cached = self.inner.producers.get(messenger)?;
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(outgoing.headers);
        if let Some(key) = &outgoing.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &outgoing.value {
            record = record.payload(value.as_slice());
        }
        let send = cached.producer.send(record, Timeout::After(cached.wait));
        match tokio::time::timeout(cached.wait, send).await {
            Err(_) => Err(SendError::TimedOut(cached.wait.as_millis())),
            Ok(Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::MessageTimedOut),
                _,
            ))) => Err(SendError::TimedOut(cached.wait.as_millis())),
            Ok(Err((error, _))) => Err(SendError::Kafka(error)),
            Ok(Ok(delivery)) => Ok(Delivered {
                topic: topic.to_owned(),
                partition: delivery.partition,
                offset: delivery.offset,
            }),
        }
    }

    /// Writes an event log entry; a store failure is logged, not raised.
    fn log(&self, kind: EventLogType, message: String) -> Option<i64> {
        match self
            .inner
            .event_logs
            .append_event_log(kind, &message, now_ms())
        {
            Ok(entry) => Some(entry.id),
            Err(error) => {
                tracing::error!(%error, "cannot write the event log");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
