//! The supervisor: runs connectors and changes them live.
//!
//! Each connector has a slot holding its configuration, the state an
//! operator asked for (running, paused or stopped) and, while it runs or is
//! paused, a live instance: a consumer with its lanes. Changes take effect at
//! once and touch only the connector concerned:
//!
//! * **create** builds everything that can be checked (HTTP client, guest and
//!   its `init`, Kafka clients) before the first record is consumed;
//! * **update** replaces the instance: the old one drains (in-flight
//!   attempts finish within the grace period, finished offsets are
//!   committed), then the new one starts from those offsets;
//! * **pause** keeps the consumer and its partitions and stops at the next
//!   record boundary; **resume** continues from there;
//! * **stop** drains and closes the consumer (offsets may then be changed);
//! * **restart** drains and starts again: a FAILED connector retries the
//!   record it stopped on, because that record was never committed;
//! * **delete** drains and forgets the connector.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{ConnectorConfig, RuntimeConfig};
use crate::connector::{Connector, ConnectorState, StatsSnapshot};
use crate::deadletter::DeadLetterProducer;
use crate::guest::{GuestEngine, GuestPlan};
use crate::messenger::Messengers;
use crate::security::EgressPolicy;
use crate::sink::HttpSink;
use crate::source::Source;

mod offsets;

pub use offsets::{OffsetChange, OffsetsError, PartitionOffset};

/// The state an operator asked a connector to be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetState {
    /// Consuming and delivering.
    #[default]
    Running,
    /// Holding its partitions without delivering.
    Paused,
    /// No consumer at all.
    Stopped,
}

/// A connector's state as Kafka Connect reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorPhase {
    /// Delivering.
    Running,
    /// Paused by an operator.
    Paused,
    /// Stopped by an operator.
    Stopped,
    /// Stopped by a failure.
    Failed {
        /// Why.
        reason: String,
    },
}

impl ConnectorPhase {
    /// `RUNNING`, `PAUSED`, `STOPPED` or `FAILED`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Stopped => "STOPPED",
            Self::Failed { .. } => "FAILED",
        }
    }
}

/// A connector's configuration, state and counters.
#[derive(Debug, Clone)]
pub struct ConnectorStatus {
    /// The configuration in force.
    pub config: ConnectorConfig,
    /// Where it is.
    pub phase: ConnectorPhase,
    /// What the current instance did (zero when stopped).
    pub stats: StatsSnapshot,
}

/// Why a supervisor operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// No connector has that name.
    #[error("connector {0} not found")]
    NotFound(String),
    /// A connector with that name exists already.
    #[error("connector {0} already exists")]
    AlreadyExists(String),
    /// The connector could not be started (guest, HTTP client or Kafka client).
    #[error("connector \"{name}\" cannot start: {reason}")]
    Start {
        /// The connector.
        name: String,
        /// Why.
        reason: String,
    },
    /// The process is shutting down.
    #[error("the process is shutting down")]
    ShuttingDown,
}

/// A live instance of a connector.
struct Instance {
    connector: Arc<Connector>,
    join: JoinHandle<()>,
}

/// Everything the supervisor knows about one connector. Only the holder of
/// its [`Entry::slot`] lock changes it.
struct Slot {
    config: ConnectorConfig,
    target: TargetState,
    instance: Option<Instance>,
}

/// What readers see of a slot: a copy the lock holder publishes after each
/// change, so status, `/health` and `/metrics` never wait for a build, a
/// drain or a Kafka admin call.
#[derive(Clone)]
struct View {
    config: ConnectorConfig,
    target: TargetState,
    connector: Option<Arc<Connector>>,
}

/// One connector in the registry.
struct Entry {
    /// Serialises changes to this connector; held across builds and drains.
    slot: Arc<Mutex<Slot>>,
    /// `None` while the connector is being created: readers skip it.
    view: Option<View>,
}

/// The slot lock of one connector, held.
type Held = tokio::sync::OwnedMutexGuard<Slot>;

/// Runs and changes connectors.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    engine: GuestEngine,
    messengers: Messengers,
    kafka: BTreeMap<String, String>,
    runtime: RuntimeConfig,
    egress: Arc<EgressPolicy>,
    shutdown: CancellationToken,
    /// Every connector by name. Locked only to look up or publish, never
    /// across an `.await`; changes to one connector take its slot lock, so
    /// connectors change independently of each other.
    registry: std::sync::Mutex<BTreeMap<String, Entry>>,
}

impl Supervisor {
    /// A supervisor whose connectors use the `[kafka]` properties `kafka`
    /// (and `messengers` for dead letters that name one), call back only
    /// addresses `egress` allows, and halt when `shutdown` is cancelled.
    pub fn new(
        engine: GuestEngine,
        messengers: Messengers,
        kafka: BTreeMap<String, String>,
        runtime: RuntimeConfig,
        egress: Arc<EgressPolicy>,
        shutdown: CancellationToken,
    ) -> Self {
        let inner = Inner {
            engine,
            messengers,
            kafka,
            runtime,
            egress,
            shutdown,
            registry: std::sync::Mutex::default(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Starts several connectors, all or none: every one is built (and its
    /// problems collected) before any of them consumes a record.
    pub async fn start_all(
        &self,
        configs: Vec<ConnectorConfig>,
    ) -> Result<(), Vec<SupervisorError>> {
        let mut built = Vec::new();
        let mut problems = Vec::new();
        for config in configs {
            if self.inner.exists(&config.name) {
                problems.push(SupervisorError::AlreadyExists(config.name.clone()));
                continue;
            }
            match self.inner.build(&config).await {
                Ok(ready) => built.push((config, ready)),
                Err(error) => problems.push(error),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        for (config, ready) in built {
            let name = config.name.clone();
            let Some(mut held) = self.inner.reserve(config, TargetState::Running) else {
                problems.push(SupervisorError::AlreadyExists(name));
                continue;
            };
            held.instance = Some(self.inner.launch(ready, false));
            self.inner.publish(&name, &held);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Creates a connector in the `target` state.
    pub async fn create(
        &self,
        config: ConnectorConfig,
        target: TargetState,
    ) -> Result<(), SupervisorError> {
        let name = config.name.clone();
        let mut held = self
            .inner
            .reserve(config, target)
            .ok_or_else(|| SupervisorError::AlreadyExists(name.clone()))?;
        match self.inner.instance_for(&held.config, target).await {
            Ok(instance) => {
                held.instance = instance;
                self.inner.publish(&name, &held);
                Ok(())
            }
            Err(error) => {
                self.inner.forget(&name, &held);
                Err(error)
            }
        }
    }

    /// Replaces a connector's configuration (creating it when absent; the
    /// result says whether it was created). Only that connector restarts; its
    /// target state is kept.
    pub async fn put(&self, config: ConnectorConfig) -> Result<bool, SupervisorError> {
        loop {
            let mut held = match self.inner.lock(&config.name).await {
                Ok(held) => held,
                Err(SupervisorError::NotFound(_)) => {
                    match self.create(config.clone(), TargetState::Running).await {
                        Err(SupervisorError::AlreadyExists(_)) => continue,
                        created => return created.map(|()| true),
                    }
                }
                Err(other) => return Err(other),
            };
            // Build the new instance's parts first: a bad config leaves the old one running.
            let ready = match held.target {
                TargetState::Stopped => None,
                _ => Some(self.inner.build(&config).await?),
            };
            self.inner.retire(held.instance.take()).await;
            let paused = held.target == TargetState::Paused;
            held.instance = ready.map(|ready| self.inner.launch(ready, paused));
            held.config = config;
            let name = held.config.name.clone();
            self.inner.publish(&name, &held);
            return Ok(false);
        }
    }

    /// Deletes a connector after draining it.
    pub async fn delete(&self, name: &str) -> Result<(), SupervisorError> {
        let mut held = self.inner.lock(name).await?;
        self.inner.retire(held.instance.take()).await;
        self.inner.forget(name, &held);
        Ok(())
    }

    /// Pauses a connector at its next record boundary, keeping its partitions.
    pub async fn pause(&self, name: &str) -> Result<(), SupervisorError> {
        let mut held = self.inner.lock(name).await?;
        if held.target == TargetState::Running {
            held.target = TargetState::Paused;
            if let Some(instance) = &held.instance {
                instance.connector.set_paused(true);
            }
        }
        self.inner.publish(name, &held);
        Ok(())
    }

    /// Resumes a paused or stopped connector from where it was.
    pub async fn resume(&self, name: &str) -> Result<(), SupervisorError> {
        let mut held = self.inner.lock(name).await?;
        match held.target {
            TargetState::Running => {}
            TargetState::Paused => {
                held.target = TargetState::Running;
                if let Some(instance) = &held.instance {
                    instance.connector.set_paused(false);
                }
            }
            TargetState::Stopped => {
                held.instance = self
                    .inner
                    .instance_for(&held.config, TargetState::Running)
                    .await?;
                held.target = TargetState::Running;
            }
        }
        self.inner.publish(name, &held);
        Ok(())
    }

    /// Stops a connector: it drains, commits and closes its consumer.
    pub async fn stop(&self, name: &str) -> Result<(), SupervisorError> {
        let mut held = self.inner.lock(name).await?;
        held.target = TargetState::Stopped;
        // Readers see STOPPED at once; the drain runs under the slot lock.
        self.inner.publish(name, &held);
        self.inner.retire(held.instance.take()).await;
        self.inner.publish(name, &held);
        Ok(())
    }

    /// Restarts a connector's instance (unless it is stopped). With
    /// `only_failed`, a connector that has not failed is left alone.
    pub async fn restart(&self, name: &str, only_failed: bool) -> Result<(), SupervisorError> {
        let mut held = self.inner.lock(name).await?;
        let failed = held
            .instance
            .as_ref()
            .is_some_and(|i| matches!(i.connector.state(), ConnectorState::Failed { .. }));
        if held.target == TargetState::Stopped || (only_failed && !failed) {
            return Ok(());
        }
        let ready = self.inner.build(&held.config).await?;
        self.inner.retire(held.instance.take()).await;
        let paused = held.target == TargetState::Paused;
        held.instance = Some(self.inner.launch(ready, paused));
        self.inner.publish(name, &held);
        Ok(())
    }

    /// Makes the running set match `configs` (a reloaded file): creates new
    /// connectors, replaces changed ones, deletes missing ones, and leaves
    /// unchanged ones alone. Returns what each change did or why it failed.
    pub async fn apply(
        &self,
        configs: Vec<ConnectorConfig>,
    ) -> Vec<Result<String, SupervisorError>> {
        let wanted: std::collections::BTreeSet<String> =
            configs.iter().map(|c| c.name.clone()).collect();
        let mut outcomes = Vec::new();
        for name in self
            .names()
            .await
            .into_iter()
            .filter(|n| !wanted.contains(n))
        {
            outcomes.push(self.delete(&name).await.map(|()| format!("deleted {name}")));
        }
        for config in configs {
            let name = config.name.clone();
            let unchanged = self
                .inner
                .view(&name)
                .is_some_and(|view| view.config == config);
            if !unchanged {
                outcomes.push(self.put(config).await.map(|created| {
                    format!("{} {name}", if created { "created" } else { "updated" })
                }));
            }
        }
        outcomes
    }

    /// Names of all connectors, sorted.
    pub async fn names(&self) -> Vec<String> {
        self.inner
            .registry()
            .iter()
            .filter(|(_, entry)| entry.view.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A connector's configuration, state and counters.
    pub async fn status(&self, name: &str) -> Result<ConnectorStatus, SupervisorError> {
        self.inner
            .view(name)
            .map(|view| status_of(&view))
            .ok_or_else(|| SupervisorError::NotFound(name.to_owned()))
    }

    /// Every connector's status, by name.
    pub async fn statuses(&self) -> Vec<ConnectorStatus> {
        let views: Vec<View> = self
            .inner
            .registry()
            .values()
            .filter_map(|entry| entry.view.clone())
            .collect();
        views.iter().map(status_of).collect()
    }

    /// The live connector object, for counters and tests.
    pub async fn connector(&self, name: &str) -> Option<Arc<Connector>> {
        self.inner.view(name).and_then(|view| view.connector)
    }

    /// Halts every connector (the shutdown token must be cancelled first or
    /// they are halted here) and waits until all have drained and committed.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let slots: Vec<(String, Arc<Mutex<Slot>>)> = self
            .inner
            .registry()
            .iter()
            .map(|(name, entry)| (name.clone(), entry.slot.clone()))
            .collect();
        for (name, slot) in slots {
            let mut held = slot.lock_owned().await;
            self.inner.retire(held.instance.take()).await;
            self.inner.publish(&name, &held);
        }
    }
}

fn status_of(view: &View) -> ConnectorStatus {
    let (phase, stats) = match (&view.connector, view.target) {
        (_, TargetState::Stopped) | (None, _) => {
            (ConnectorPhase::Stopped, StatsSnapshot::default())
        }
        (Some(connector), target) => {
            let phase = match connector.state() {
                ConnectorState::Failed { reason } => ConnectorPhase::Failed { reason },
                _ if target == TargetState::Paused => ConnectorPhase::Paused,
                _ => ConnectorPhase::Running,
            };
            (phase, connector.stats.snapshot())
        }
    };
    ConnectorStatus {
        config: view.config.clone(),
        phase,
        stats,
    }
}

/// A connector built and checked, not yet consuming.
struct Ready {
    connector: Arc<Connector>,
    source: Source,
}

impl Inner {
    /// The registry. Its lock is never held across an `.await` and no code
    /// panics while holding it, so a poisoned lock still holds consistent
    /// data.
    fn registry(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exists(&self, name: &str) -> bool {
        self.registry().contains_key(name)
    }

    fn view(&self, name: &str) -> Option<View> {
        self.registry()
            .get(name)
            .and_then(|entry| entry.view.clone())
    }

    /// Adds a connector that readers do not see yet, its slot lock held;
    /// `None` when the name is taken.
    fn reserve(&self, config: ConnectorConfig, target: TargetState) -> Option<Held> {
        let mut registry = self.registry();
        if registry.contains_key(&config.name) {
            return None;
        }
        let name = config.name.clone();
        let slot = Arc::new(Mutex::new(Slot {
            config,
            target,
            instance: None,
        }));
        let held = slot
            .clone()
            .try_lock_owned()
            .expect("a new slot is not locked");
        registry.insert(name, Entry { slot, view: None });
        Some(held)
    }

    /// Takes a connector's slot lock, waiting for the change in progress.
    /// NotFound when it was deleted meanwhile.
    async fn lock(&self, name: &str) -> Result<Held, SupervisorError> {
        let not_found = || SupervisorError::NotFound(name.to_owned());
        let slot = self
            .registry()
            .get(name)
            .filter(|entry| entry.view.is_some())
            .map(|entry| entry.slot.clone())
            .ok_or_else(not_found)?;
        let held = slot.clone().lock_owned().await;
        let current = self
            .registry()
            .get(name)
            .is_some_and(|entry| Arc::ptr_eq(&entry.slot, &slot));
        if current { Ok(held) } else { Err(not_found()) }
    }

    /// Shows readers the slot as `held` has it.
    fn publish(&self, name: &str, held: &Held) {
        if let Some(entry) = self
            .registry()
            .get_mut(name)
            .filter(|entry| Arc::ptr_eq(&entry.slot, Held::mutex(held)))
        {
            entry.view = Some(View {
                config: held.config.clone(),
                target: held.target,
                connector: held.instance.as_ref().map(|i| i.connector.clone()),
            });
        }
    }

    /// Removes the connector whose slot lock is `held`.
    fn forget(&self, name: &str, held: &Held) {
        let mut registry = self.registry();
        if registry
            .get(name)
            .is_some_and(|entry| Arc::ptr_eq(&entry.slot, Held::mutex(held)))
        {
            registry.remove(name);
        }
    }

    async fn instance_for(
        &self,
        config: &ConnectorConfig,
        target: TargetState,
    ) -> Result<Option<Instance>, SupervisorError> {
        if target == TargetState::Stopped {
            return Ok(None);
        }
        let ready = self.build(config).await?;
        Ok(Some(self.launch(ready, target == TargetState::Paused)))
    }

    /// Builds everything that can be checked before consuming: the HTTP
    /// client, the guest (with a dry-run `init`) and the Kafka clients.
    async fn build(&self, config: &ConnectorConfig) -> Result<Ready, SupervisorError> {
        if self.shutdown.is_cancelled() {
            return Err(SupervisorError::ShuttingDown);
        }
        let fail = |reason: String| SupervisorError::Start {
            name: config.name.clone(),
            reason,
        };
        warn_about(config);
        let sink = HttpSink::new(&config.callback, self.egress.clone())
            .map_err(|e| fail(e.to_string()))?;
        let guests = GuestPlan::prepare(
            &self.engine,
            &config.name,
            &config.guest,
            config.builtin_guest_config(),
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        guests.dry_run().await.map_err(|e| fail(e.to_string()))?;
        let (transform_by, decide_by) = guests.describe();
        tracing::info!(connector = %config.name, transform = transform_by, decide = decide_by, "guests ready");
        let dead_letter = config
            .dead_letter
            .as_ref()
            .map(|dlq| {
                DeadLetterProducer::new(
                    &config.name,
                    dlq,
                    &self.kafka,
                    (&config.producer_overrides, config.producer_inherit),
                    &self.messengers,
                )
            })
            .transpose()
            .map_err(|e| fail(e.to_string()))?;
        let (paused_tx, paused_rx) = tokio::sync::watch::channel(false);
        let lag = Arc::new(crate::metrics::ConsumerLag::default());
        let source = Source::new(config, &self.kafka, paused_rx, lag.clone())
            .map_err(|e| fail(e.to_string()))?;
        let connector = Arc::new(Connector::new(
            config.clone(),
            sink,
            guests,
            dead_letter,
            &self.shutdown,
            paused_tx,
            lag,
        ));
        Ok(Ready { connector, source })
    }

    fn launch(&self, ready: Ready, paused: bool) -> Instance {
        let Ready { connector, source } = ready;
        connector.set_paused(paused);
        let grace = self.runtime.shutdown_timeout;
        let task_connector = connector.clone();
        let join = tokio::spawn(async move {
            if let Err(error) = source.run(task_connector.clone(), grace).await {
                task_connector.fail(error.to_string());
            }
        });
        Instance { connector, join }
    }

    /// Halts an instance and waits until it has drained and committed.
    async fn retire(&self, instance: Option<Instance>) {
        let Some(Instance { connector, join }) = instance else {
            return;
        };
        connector.halt_token().cancel();
        if let Err(error) = join.await {
            tracing::error!(connector = %connector.name(), %error, "connector task ended abnormally");
        }
    }
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

#[cfg(test)]
mod tests;
