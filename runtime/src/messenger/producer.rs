//! From a messenger's `producer` map (Java Kafka client property names, as
//! FusionAuth stores them) to a librdkafka producer, cached per messenger.
//!
//! Keys are stored verbatim, whatever they are; they are only translated
//! when a message is sent, and a key that cannot be honoured fails that send
//! with a clear reason, never the save:
//!
//! - `max.block.ms` bounds the whole send (default 5,000 ms) and becomes
//!   librdkafka's `message.timeout.ms`, so a message we report as failed is
//!   not delivered later; Java's `delivery.timeout.ms` gives way to it;
//! - `sasl.jaas.config` with `PlainLoginModule` or `ScramLoginModule`
//!   becomes `sasl.username` and `sasl.password`;
//! - `buffer.memory` (bytes) becomes `queue.buffering.max.kbytes`;
//! - `key.serializer` / `value.serializer` naming a String, ByteArray or
//!   Bytes serializer are satisfied as they are (messages are UTF-8 JSON);
//! - Java KeyStore settings (`ssl.truststore.*`, `ssl.keystore.type`) are
//!   refused: librdkafka takes PEM files (`ssl.ca.location`);
//! - everything else goes to librdkafka unchanged, which refuses what it
//!   does not know.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use uuid::Uuid;

use super::model::Messenger;
use crate::kafka::{LogContext, client_config};
use crate::security::{Client, Inherit, Policy};

/// How long a send may take when `max.block.ms` is not given.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// Why a messenger's producer properties cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("producer property [{key}] {reason}")]
pub struct PropertyError {
    /// The property.
    pub key: String,
    /// Why (never the value of a secret).
    pub reason: String,
}

fn refuse(key: &str, reason: impl Into<String>) -> PropertyError {
    PropertyError {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// librdkafka's properties for a producer map, and how long a send may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSettings {
    /// Properties for librdkafka, in order.
    pub properties: Vec<(String, String)>,
    /// The bound on one send.
    pub wait: Duration,
}

/// Translates a stored `producer` map for librdkafka.
pub fn settings(producer: &BTreeMap<String, String>) -> Result<ProducerSettings, PropertyError> {
    let mut properties = Vec::new();
    let mut wait = DEFAULT_WAIT;
    for (key, value) in producer {
        match key.as_str() {
            "max.block.ms" => {
                let ms = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| refuse(key, "must be a positive number of milliseconds"))?;
                wait = Duration::from_millis(ms);
            }
            // wasmsink sets message.timeout.ms from max.block.ms; Java's
            // delivery.timeout.ms (and any spelling of it) gives way.
            key if crate::security::client_properties::canonical(key)
                == Some("message.timeout.ms") => {}
            "sasl.jaas.config" => {
                let (username, password) =
                    parse_jaas(value).map_err(|reason| refuse(key, reason))?;
                properties.push(("sasl.username".into(), username));
                properties.push(("sasl.password".into(), password));
            }
            "buffer.memory" => {
                let bytes = value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| refuse(key, "must be a number of bytes"))?;
                properties.push((
                    "queue.buffering.max.kbytes".into(),
                    bytes.div_ceil(1024).max(1).to_string(),
                ));
            }
            "key.serializer" | "value.serializer" => {
                let class = value.rsplit('.').next().unwrap_or_default();
                if !["StringSerializer", "ByteArraySerializer", "BytesSerializer"].contains(&class)
                {
                    return Err(refuse(
                        key,
                        "can only name a String, ByteArray or Bytes serializer: messages are sent as UTF-8 JSON",
                    ));
                }
            }
            "ssl.truststore.location"
            | "ssl.truststore.password"
            | "ssl.truststore.type"
            | "ssl.keystore.type" => {
                return Err(refuse(
                    key,
                    "is a Java KeyStore setting; librdkafka reads PEM files: use ssl.ca.location \
                     (and ssl.keystore.location for a PKCS#12 client certificate)",
                ));
            }
            _ => properties.push((key.clone(), value.clone())),
        }
    }
    properties.push(("message.timeout.ms".into(), wait.as_millis().to_string()));
    Ok(ProducerSettings { properties, wait })
}

/// Reads the username and password of a Java `sasl.jaas.config` value for
/// the PLAIN and SCRAM login modules.
fn parse_jaas(text: &str) -> Result<(String, String), String> {
    let text = text.trim().trim_end_matches(';');
    let (module, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let module_name = module.rsplit('.').next().unwrap_or_default();
    if !["PlainLoginModule", "ScramLoginModule"].contains(&module_name) {
        return Err(format!(
            "names the login module [{module_name}]; only PlainLoginModule and ScramLoginModule \
             map to librdkafka (sasl.username / sasl.password)"
        ));
    }
    let mut options = HashMap::new();
    let mut chars = rest.trim_start().chars().peekable();
    // The control flag (required, optional, ...) comes first.
    while chars.peek().is_some_and(|c| !c.is_whitespace()) {
        chars.next();
    }
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if name.trim().is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            return Err("is not a JAAS login module line (name=value expected)".into());
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err("has an unterminated quoted value".into()),
                }
            }
            value
        } else {
            std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect()
        };
        options.insert(name.trim().to_owned(), value);
    }
    match (options.remove("username"), options.remove("password")) {
        (Some(username), Some(password)) => Ok((username, password)),
        _ => Err("needs both username and password".into()),
    }
}

/// Whether a property's value must never appear in a message.
fn is_secret(key: &str) -> bool {
    ["password", "secret", "jaas", "token", "oauthbearer"]
        .iter()
        .any(|word| key.contains(word))
}

/// A built producer and its send bound.
#[derive(Clone)]
pub struct CachedProducer {
    /// The producer.
    pub producer: Arc<FutureProducer<LogContext>>,
    /// How long one send may take.
    pub wait: Duration,
}

struct Entry {
    fingerprint: (String, BTreeMap<String, String>),
    cached: CachedProducer,
}

/// One producer per messenger, built on first use and rebuilt when the
/// messenger's name or producer properties change, never one per send.
///
/// **Invariant:** a producer map reaches librdkafka only after the client
/// property policy accepted it, here, whatever the store holds: a messenger
/// saved before the operator tightened the policy cannot send.
#[derive(Default)]
pub struct Producers {
    entries: Mutex<HashMap<Uuid, Entry>>,
    built: AtomicU64,
    policy: Arc<Policy>,
}

impl Producers {
    /// Producers whose properties are held to `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// The producer for `messenger`, built when missing or out of date.
    pub fn get(&self, messenger: &Messenger) -> Result<CachedProducer, PropertyError> {
        let fingerprint = (messenger.name.clone(), messenger.producer.clone());
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get(&messenger.id)
            && entry.fingerprint == fingerprint
        {
            return Ok(entry.cached.clone());
        }
        check_policy(&self.policy, &messenger.producer)?;
        let settings = settings(&messenger.producer)?;
        let overrides: BTreeMap<String, String> = settings.properties.into_iter().collect();
        let producer: FutureProducer<LogContext> =
            client_config(&BTreeMap::new(), Inherit::TuningOnly, &[], &overrides, &[])
                .create_with_context(LogContext::new(format!("messenger {}", messenger.name)))
                .map_err(describe_refusal)?;
        self.built.fetch_add(1, Ordering::Relaxed);
        let cached = CachedProducer {
            producer: Arc::new(producer),
            wait: settings.wait,
        };
        entries.insert(
            messenger.id,
            Entry {
                fingerprint,
                cached: cached.clone(),
            },
        );
        Ok(cached)
    }

    /// Drops a messenger's producer (sends in flight keep theirs).
    pub fn forget(&self, id: &Uuid) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// How many producers were built so far.
    pub fn built(&self) -> u64 {
        self.built.load(Ordering::Relaxed)
    }
}

/// Holds a producer map to the client property policy; the first refusal.
pub fn check_policy(
    policy: &Policy,
    producer: &BTreeMap<String, String>,
) -> Result<(), PropertyError> {
    match policy
        .client
        .check(Client::Messenger, producer, &policy.egress)
    {
        Ok(_) => Ok(()),
        Err(refusals) => {
            let first = refusals.into_iter().next().expect("a refusal");
            Err(refuse(&first.key, first.reason))
        }
    }
}

/// librdkafka's refusal, without the value of a secret property.
fn describe_refusal(error: KafkaError) -> PropertyError {
    match error {
        KafkaError::ClientConfig(_, description, key, _) => {
            let reason = if is_secret(&key) {
                "is refused by librdkafka".to_owned()
            } else {
                format!("is refused by librdkafka: {description}")
            };
            refuse(&key, reason)
        }
        other => refuse("(producer)", format!("cannot be built: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn java_names_are_translated_for_librdkafka() {
        let settings = settings(&map(&[
            ("bootstrap.servers", "k:9092"),
            ("max.block.ms", "1500"),
            ("delivery.timeout.ms", "120000"),
            ("buffer.memory", "33554432"),
            ("value.serializer", "org.apache.kafka.common.serialization.StringSerializer"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="svc" password="p\"w d";"#,
            ),
        ]))
        .unwrap();
        assert_eq!(settings.wait, Duration::from_millis(1500));
        assert_eq!(
            settings.properties,
            [
                ("bootstrap.servers".to_owned(), "k:9092".to_owned()),
                ("queue.buffering.max.kbytes".to_owned(), "32768".to_owned()),
                ("sasl.username".to_owned(), "svc".to_owned()),
                ("sasl.password".to_owned(), "p\"w d".to_owned()),
                ("message.timeout.ms".to_owned(), "1500".to_owned()),
            ]
        );
        assert_eq!(settings_wait(&[]), DEFAULT_WAIT);
    }

    fn settings_wait(pairs: &[(&str, &str)]) -> Duration {
        settings(&map(pairs)).unwrap().wait
    }

    #[test]
    fn keys_that_cannot_be_honoured_are_refused_without_their_values() {
        let refused = |pairs: &[(&str, &str)]| settings(&map(pairs)).unwrap_err();
        assert_eq!(refused(&[("max.block.ms", "soon")]).key, "max.block.ms");
        assert_eq!(
            refused(&[("ssl.truststore.location", "/x.jks")]).key,
            "ssl.truststore.location"
        );
        assert_eq!(
            refused(&[("value.serializer", "com.acme.AvroSerializer")]).key,
            "value.serializer"
        );
        let jaas = refused(&[(
            "sasl.jaas.config",
            r#"org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required token="s3cret";"#,
        )]);
        assert!(!jaas.to_string().contains("s3cret"), "{jaas}");
        let producers = Producers::default();
        let mut messenger = crate::messenger::model::Draft::read(&serde_json::json!({"messenger": {
            "type": "Kafka", "name": "m", "defaultTopic": "t",
            "producer": {"bootstrap.servers": "127.0.0.1:1", "sasl.password": "hunter2", "compression.type": "zip"}}}))
        .unwrap()
        .into_messenger(Uuid::nil(), 1, 1);
        let error = producers
            .get(&messenger)
            .err()
            .expect("librdkafka refuses an unknown codec");
        assert_eq!(error.key, "compression.type");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        messenger
            .producer
            .insert("no.such.property".into(), "x".into());
        messenger.producer.remove("compression.type");
        assert_eq!(
            producers.get(&messenger).err().unwrap().key,
            "no.such.property"
        );
    }

    #[test]
    fn one_producer_per_messenger_until_it_changes() {
        let producers = Producers::default();
        let mut messenger = crate::messenger::model::Draft::read(&serde_json::json!({"messenger": {
            "type": "Kafka", "name": "m", "defaultTopic": "t", "producer": {"bootstrap.servers": "127.0.0.1:1"}}}))
        .unwrap()
        .into_messenger(Uuid::nil(), 1, 1);
        let first = producers.get(&messenger).unwrap();
        let again = producers.get(&messenger).unwrap();
        assert!(Arc::ptr_eq(&first.producer, &again.producer));
        assert_eq!(producers.built(), 1);
        messenger.producer.insert("acks".into(), "1".into());
        let rebuilt = producers.get(&messenger).unwrap();
        assert!(!Arc::ptr_eq(&first.producer, &rebuilt.producer));
        assert_eq!(producers.built(), 2);
        producers.forget(&messenger.id);
        producers.get(&messenger).unwrap();
        assert_eq!(producers.built(), 3);
    }
}
