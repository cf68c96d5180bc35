//! The dead-letter topic: records a connector gives up on are produced there,
//! with their original key, value and headers plus context headers, before
//! their offset is committed. The producer is the connector's own (on the
//! `[kafka]` cluster) or, with `errors.deadletterqueue.messenger`, a Kafka
//! messenger's, so dead letters may go to another cluster with its own
//! credentials.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::DeadLetterConfig;
use crate::guest::bindings::KafkaRecord;
use crate::kafka::{LogContext, client_config};
use crate::messenger::{Messengers, Outgoing, SendFailure};
use crate::security::Inherit;

/// How long a dead-letter record may wait in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a dead-letter record says about why it is there.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterContext<'a> {
    /// Connector that gave up on the record.
    pub connector: &'a str,
    /// Delivery attempts made (0 when the record never reached HTTP).
    pub attempts: u32,
    /// HTTP status of the last attempt, if there was a response.
    pub last_status: Option<u16>,
    /// Why the record was given up.
    pub reason: &'a str,
}

/// Why a dead-letter record could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The producer could not be created.
    #[error("cannot create the dead-letter producer: {0}")]
    Create(KafkaError),
    /// The broker did not acknowledge the record.
    #[error("producing to dead-letter topic {topic} failed: {error}")]
    Produce {
        /// The dead-letter topic.
        topic: String,
        /// librdkafka's error.
        error: KafkaError,
    },
    /// `errors.deadletterqueue.messenger` names no messenger.
    #[error("errors.deadletterqueue.messenger: no messenger has the id or name [{0}]")]
    UnknownMessenger(String),
    /// The messenger could not send the record.
    #[error("producing to dead-letter topic {} through messenger {messenger} failed: {}", .failure.topic, .failure.error)]
    Messenger {
        /// The messenger's name.
        messenger: String,
        /// Why.
        failure: Box<SendFailure>,
    },
}

/// Who produces the dead letters.
enum Destination {
    /// The connector's own producer on the `[kafka]` cluster.
    Own {
        producer: FutureProducer<LogContext>,
        topic: String,
    },
    /// A Kafka messenger, looked up by id or name at each send; `topic`
    /// overrides its `defaultTopic`.
    Messenger {
        messengers: Messengers,
        reference: String,
        topic: Option<String>,
    },
}

/// A connector's dead-letter producer.
pub struct DeadLetterProducer {
    destination: Destination,
    context_headers: bool,
}

impl DeadLetterProducer {
    /// Creates the producer: a messenger's when the config names one,
    /// otherwise one from the `[kafka]` properties and the connector's
    /// `producer.override.*` properties.
    ///
    /// A messenger is looked up when a dead letter is sent, so a connector
    /// may start before its messenger is created over REST (a warning says
    /// so); a dead letter with no messenger to take it stops the connector
    /// without committing the record.
    pub fn new(
        connector: &str,
        config: &DeadLetterConfig,
        kafka: &BTreeMap<String, String>,
        (overrides, inherit): (&BTreeMap<String, String>, Inherit),
        messengers: &Messengers,
    ) -> Result<Self, DeadLetterError> {
        let destination = match (&config.messenger, &config.topic) {
            (Some(reference), topic) => {
                if messengers.find(reference).is_none() {
                    tracing::warn!(connector, messenger = %reference,
                        "errors.deadletterqueue.messenger names no messenger yet; create it before a record needs the dead-letter topic");
                }
                Destination::Messenger {
                    messengers: messengers.clone(),
                    reference: reference.clone(),
                    topic: topic.clone(),
                }
            }
            (None, topic) => Destination::Own {
                producer: client_config(kafka, inherit, &[("acks", "all")], overrides, &[])
                    .create_with_context(LogContext::new(format!("{connector}/dead-letter")))
                    .map_err(DeadLetterError::Create)?,
                topic: topic.clone().unwrap_or_default(),
            },
        };
        Ok(Self {
            destination,
            context_headers: config.context_headers,
        })
    }

    /// The topic records go to now.
    pub fn topic(&self) -> String {
        match &self.destination {
            Destination::Own { topic, .. } => topic.clone(),
            Destination::Messenger {
                messengers,
                reference,
                topic,
            } => topic.clone().unwrap_or_else(|| {
                messengers
                    .find(reference)
                    .map(|m| m.default_topic)
                    .unwrap_or_default()
            }),
        }
    }

    /// Produces `record` to the dead-letter topic and waits for the broker's
    /// acknowledgement.
    pub async fn send(
        &self,
        record: &KafkaRecord,
        context: DeadLetterContext<'_>,
    ) -> Result<(), DeadLetterError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 7);
        for header in &record.headers {
            headers = headers.insert(Header {
                key: &header.key,
                value: header.value.as_deref(),
            });
        }
        if self.context_headers {
            let partition = record.partition.to_string();
            let offset = record.offset.to_string();
            let attempts = context.attempts.to_string();
            let status = context.last_status.map(|s| s.to_string());
            let pairs: [(&str, Option<&str>); 7] = [
                ("__connect.errors.topic", Some(&record.topic)),
                ("__connect.errors.partition", Some(&partition)),
                ("__connect.errors.offset", Some(&offset)),
                ("__connect.errors.connector.name", Some(context.connector)),
                ("__connect.errors.attempts", Some(&attempts)),
                ("__connect.errors.http.status", status.as_deref()),
                ("__connect.errors.exception.message", Some(context.reason)),
            ];
            for (key, value) in pairs {
                if let Some(value) = value {
                    headers = headers.insert(Header {
                        key,
                        value: Some(value),
                    });
                }
            }
        }
        match &self.destination {
            Destination::Own { producer, topic } => {
                let mut message = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
                if let Some(key) = &record.key {
                    message = message.key(key.as_slice());
                }
                if let Some(value) = &record.value {
                    message = message.payload(value.as_slice());
                }
                producer
                    .send(message, QUEUE_TIMEOUT)
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| DeadLetterError::Produce {
                        topic: topic.clone(),
                        error,
                    })
            }
            Destination::Messenger {
                messengers,
                reference,
                topic,
            } => {
                let messenger = messengers
                    .find(reference)
                    .ok_or_else(|| DeadLetterError::UnknownMessenger(reference.clone()))?;
                let outgoing = Outgoing {
                    topic: topic.clone(),
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers,
                };
                messengers
                    .send(&messenger.id, outgoing)
                    .await
                    .map(|_| ())
                    .map_err(|failure| DeadLetterError::Messenger {
                        messenger: messenger.name,
                        failure: Box::new(failure),
                    })
            }
        }
    }
}
