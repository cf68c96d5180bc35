//! Shared librdkafka plumbing: client configuration from property maps and
//! librdkafka's log routed into `tracing`.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::security::{Inherit, client_properties};

/// Builds a client configuration: the defaults wasmsink chooses, then the
/// `[kafka]` properties the client inherits, then per-connector overrides,
/// then `forced` properties that correctness depends on.
///
/// Overrides written over REST have passed the client property policy
/// ([`crate::security::client_properties`]) before they get here.
pub fn client_config(
    shared: &BTreeMap<String, String>,
    inherit: Inherit,
    defaults: &[(&str, &str)],
    overrides: &BTreeMap<String, String>,
    forced: &[(&str, &str)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in shared
        .iter()
        .filter(|(key, _)| client_properties::inherited(key, inherit))
        .chain(overrides)
    {
        config.set(key, value);
    }
    for (key, value) in forced {
        config.set(*key, *value);
    }
    config.set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// A librdkafka client context that logs through `tracing`, tagged with the
/// connector (or component) it belongs to.
#[derive(Debug, Clone)]
pub struct LogContext {
    owner: String,
}

impl LogContext {
    /// A context for the named owner.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
        }
    }

    /// The owner this client belongs to.
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(&self.owner, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", owner = %self.owner, %error, "{reason}");
    }
}

/// Writes one librdkafka log line at the matching `tracing` level.
pub fn log_librdkafka(owner: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", owner, facility, "{message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", owner, facility, "{message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", owner, facility, "{message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", owner, facility, "{message}")
        }
    }
}
