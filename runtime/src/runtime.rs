//! Starting and stopping the connectors of a configuration.
//!
//! Everything that can be checked is checked before any record is consumed:
//! the HTTP clients, the guests (pre-instantiated and `init` run once), the
//! Kafka clients. A problem in any connector stops the start with every
//! problem listed.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConnectorConfig};
use crate::connector::Connector;
use crate::deadletter::DeadLetterProducer;
use crate::guest::{GuestEngine, GuestLimits};
use crate::sink::HttpSink;
use crate::source::Source;

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start:\n{}", .problems.iter().map(|(c, r)| format!("  - connector \"{c}\": {r}")).collect::<Vec<_>>().join("\n"))]
pub struct StartError {
    /// (connector, reason) pairs.
    pub problems: Vec<(String, String)>,
}

/// The running connectors.
pub struct Runtime {
    running: Vec<(Arc<Connector>, JoinHandle<()>)>,
}

impl Runtime {
    /// Builds every connector, then starts them all. Connectors halt when
    /// `shutdown` is cancelled.
    pub async fn start(
        config: &Config,
        engine: &GuestEngine,
        shutdown: &CancellationToken,
    ) -> Result<Self, StartError> {
        let mut problems = Vec::new();
        let mut ready = Vec::new();
        for connector in &config.connectors {
            match build(config, connector, engine, shutdown).await {
                Ok(built) => ready.push(built),
                Err(reason) => problems.push((connector.name.clone(), reason)),
            }
        }
        if !problems.is_empty() {
            return Err(StartError { problems });
        }
        let grace = config.runtime.shutdown_timeout;
        let running = ready
            .into_iter()
            .map(|(connector, source)| {
                let task_connector = connector.clone();
                let join = tokio::spawn(async move {
                    if let Err(error) = source.run(task_connector.clone(), grace).await {
                        task_connector.fail(error.to_string());
                    }
                });
                (connector, join)
            })
            .collect();
        Ok(Self { running })
    }

    /// The connectors, in configuration order.
    pub fn connectors(&self) -> impl Iterator<Item = &Arc<Connector>> {
        self.running.iter().map(|(connector, _)| connector)
    }

    /// Waits until every connector has halted and committed.
    pub async fn wait(self) {
        for (connector, join) in self.running {
            if let Err(error) = join.await {
                tracing::error!(connector = %connector.name(), %error, "connector task ended abnormally");
            }
        }
    }
}

async fn build(
    config: &Config,
    connector: &ConnectorConfig,
    engine: &GuestEngine,
    shutdown: &CancellationToken,
) -> Result<(Arc<Connector>, Source), String> {
    warn_about(connector);
    let sink = HttpSink::new(&connector.callback).map_err(|e| e.to_string())?;
    let init_config = connector
        .strategy
        .to_pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let guest = engine
        .prepare_builtin(&connector.name, init_config, GuestLimits::default())
        .map_err(|e| e.to_string())?;
    // A dry run: init must accept the configuration before anything is consumed.
    guest.instantiate().await.map_err(|e| e.to_string())?;
    let dead_letter = connector
        .dead_letter
        .as_ref()
        .map(|dlq| {
            DeadLetterProducer::new(
                &connector.name,
                dlq,
                &config.kafka,
                &connector.producer_overrides,
            )
        })
        .transpose()
        .map_err(|e| e.to_string())?;
    let source = Source::new(connector, &config.kafka).map_err(|e| e.to_string())?;
    let connector = Arc::new(Connector::new(
        connector.clone(),
        sink,
        guest,
        dead_letter,
        shutdown,
    ));
    Ok((connector, source))
}

fn warn_about(connector: &ConnectorConfig) {
    let has_content_type = connector
        .callback
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if !has_content_type {
        tracing::warn!(connector = %connector.name, "callback.request.headers sets no Content-Type: requests are sent without one");
    }
    for key in &connector.no_effect_keys {
        tracing::warn!(connector = %connector.name, key = %key, "accepted for Kafka Connect compatibility; it has no effect in wasmsink");
    }
}
