//! Configuration: the TOML file, and connector configs as Kafka Connect
//! property maps.
//!
//! A file has a `[kafka]` table of librdkafka client properties shared by all
//! connectors, an optional `[runtime]` table, and one `[connectors.NAME]`
//! table per connector. Connector keys are the Kafka Connect property names
//! written as TOML dotted keys (`callback.request.url = "..."`), so the same
//! names work in the file and over the REST API. Every problem in a file is
//! reported at once, each naming the connector, the key and the reason.

mod connector;
mod delivery;
mod guest;
mod headers;
mod rest_policy;
mod secrets;
mod server;
mod toml_file;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub use connector::{
    CallbackConfig, ConnectorConfig, DeadLetterConfig, NullValueBehavior, SEED_CONNECTOR_CLASS,
    Subscription,
};
pub use delivery::{Concurrency, DeliverySettings, NullKeys, Ordering as DeliveryOrdering};
pub use guest::{GUEST_CONFIG_PREFIX, GuestErrorPolicy, GuestSettings};
pub use headers::{HeaderParseError, parse_headers};
pub use secrets::{MAX_SECRET_FILE_BYTES, Scope, SecretError, resolve_properties, resolve_value};
pub use server::{
    ApiKey, AuthMode, DEFAULT_AUTH_FAILURES_PER_MINUTE, DEFAULT_DATA_DIR, DEFAULT_LISTEN,
    ServerConfig, StoreConfig, TlsFiles, apply_env,
};
pub use toml_file::{load_file, parse_str};

/// A whole configuration file, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// librdkafka client properties shared by every connector's consumer and
    /// dead-letter producer.
    pub kafka: BTreeMap<String, String>,
    /// Process-wide settings.
    pub runtime: RuntimeConfig,
    /// The connectors, in file order.
    pub connectors: Vec<ConnectorConfig>,
    /// The REST server (`[server]`).
    pub server: ServerConfig,
    /// The durable connector store (`[store]`).
    pub store: StoreConfig,
}

/// Process-wide settings from the `[runtime]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// On SIGTERM/SIGINT, how long in-flight attempts may take to finish
    /// (`shutdown.timeout.sec`, default 30).
    pub shutdown_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The connector the key belongs to; `None` for `[kafka]`, `[runtime]` or
    /// the file itself.
    pub connector: Option<String>,
    /// The key (a dotted property name), or a table name.
    pub key: String,
    /// What is wrong and, where it helps, what would be right.
    pub reason: String,
}

impl ConfigProblem {
    /// A problem with a connector's key.
    pub fn connector(connector: &str, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            connector: Some(connector.to_owned()),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A problem outside any connector.
    pub fn global(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            connector: None,
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.connector {
            Some(connector) => write!(
                f,
                "connector \"{connector}\": key \"{}\": {}",
                self.key, self.reason
            ),
            None => write!(f, "key \"{}\": {}", self.key, self.reason),
        }
    }
}

/// Every problem found in a configuration; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order they were found.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        writeln!(
            f,
            "invalid configuration ({count} problem{}):",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl From<Vec<ConfigProblem>> for ConfigError {
    fn from(problems: Vec<ConfigProblem>) -> Self {
        Self { problems }
    }
}
