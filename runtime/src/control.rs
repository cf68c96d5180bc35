//! Connector management that lasts: every change the REST API makes goes
//! through the [`Supervisor`] (so it takes effect at once) and into the
//! [`ConnectorStore`] (so it survives a restart).
//!
//! TOML-declared and REST-managed connectors coexist by one rule: **the
//! last writer wins, and the file writes only when it changes**. At start
//! (and on SIGHUP) a `[connectors.NAME]` table is applied when it is new or
//! differs from the table applied last time; otherwise the stored version,
//! which includes REST changes, pause/stop and deletion, is kept. Connectors
//! created over REST are restored from the store. A table removed from the
//! file deletes its connector.
//!
//! Every write to one connector holds that connector's write lock from the
//! read to the apply, so concurrent writes are all applied in some order,
//! never acknowledged and lost. A write is saved before it is applied; when
//! the apply fails, the saved record is put back as it was, so the store
//! never holds a change the API refused.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::config::{ConfigProblem, ConnectorConfig};
use crate::messenger::Messenger;
use crate::security::{Policy, Trust};
use crate::store::{ConnectorStore, Origin, StoreError, StoredConnector};
use crate::supervisor::{
    ConnectorStatus, OffsetChange, OffsetsError, PartitionOffset, Supervisor, SupervisorError,
    TargetState,
};

/// Why a management operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The configuration is invalid; every problem is listed.
    #[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigProblem>),
    /// The supervisor refused.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// Reading or changing offsets failed.
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The supervisor plus the store.
#[derive(Clone)]
pub struct Control {
    supervisor: Supervisor,
    store: Arc<dyn ConnectorStore>,
    policy: Arc<Policy>,
    writes: WriteLocks,
}

/// One lock per connector name, taken by every write to that connector.
/// An entry lives while someone holds or waits for it.
#[derive(Clone, Default)]
struct WriteLocks(Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

/// A held write lock; dropping it removes the entry when nobody waits.
struct WriteGuard {
    locks: WriteLocks,
    name: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // Never held across an await or a panic point.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn lock(&self, name: &str) -> WriteGuard {
        let lock = self.map().entry(name.to_owned()).or_default().clone();
        WriteGuard {
            locks: self.clone(),
            name: name.to_owned(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        let guard = self.guard.take();
        let mut map = self.locks.map();
        drop(guard);
        // Ours plus the map's: nobody else holds or awaits it.
        if map
            .get(&self.name)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.name);
        }
    }
}

impl Control {
    /// Management over `supervisor`, persisted in `store`; configs written
    /// over REST are held to `policy`.
    pub fn new(
        supervisor: Supervisor,
        store: Arc<dyn ConnectorStore>,
        policy: Arc<Policy>,
    ) -> Self {
        Self {
            supervisor,
            store,
            policy,
            writes: WriteLocks::default(),
        }
    }

    /// Who wrote a stored connector's properties: the operator when they
    /// are the file's table as it was last applied, a REST caller otherwise.
    fn trust_of(stored: &StoredConnector) -> Trust {
        if stored.toml_properties.as_ref() == Some(&stored.properties) {
            Trust::Operator
        } else {
            Trust::Api
        }
    }

    /// The supervisor.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// The connectors whose dead letters go through `messenger` (named by
    /// id or name in `errors.deadletterqueue.messenger`).
    pub async fn connectors_using_messenger(&self, messenger: &Messenger) -> Vec<String> {
        self.supervisor
            .statuses()
            .await
            .into_iter()
            .filter(|status| {
                status
                    .config
                    .dead_letter
                    .as_ref()
                    .and_then(|d| d.messenger.as_deref())
                    .is_some_and(|reference| {
                        reference == messenger.name
                            || uuid::Uuid::parse_str(reference).is_ok_and(|id| id == messenger.id)
                    })
            })
            .map(|status| status.config.name)
            .collect()
    }

    /// Starts the process's connectors: the file's tables and the stored
    /// connectors, by the rule in the module documentation. A TOML
    /// connector that cannot start is an error (the process refuses to
    /// start); a stored REST connector that cannot start is logged and kept
    /// in the store.
    pub async fn restore(&self, toml: Vec<ConnectorConfig>) -> Result<(), Vec<ControlError>> {
        let stored: BTreeMap<String, StoredConnector> = self
            .store
            .load_all()
            .map_err(|e| vec![e.into()])?
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect();
        let mut problems = Vec::new();
        let toml_names: BTreeSet<String> = toml.iter().map(|c| c.name.clone()).collect();
        let mut plan: Vec<(ConnectorConfig, StoredConnector, bool)> = Vec::new();
        for config in toml {
            match stored.get(&config.name) {
                Some(s) if s.toml_properties.as_ref() == Some(&config.properties) => {
                    if s.deleted {
                        continue;
                    }
                    match ConnectorConfig::from_raw_properties(
                        &s.name,
                        &s.properties,
                        &self.policy,
                        Self::trust_of(s),
                    ) {
                        Ok(c) => plan.push((c, s.clone(), true)),
                        Err(found) => problems.push(ControlError::Invalid(found)),
                    }
                }
                previous => {
                    let record = StoredConnector {
                        name: config.name.clone(),
                        properties: config.properties.clone(),
                        target: previous.map_or(TargetState::Running, |p| p.target),
                        origin: Origin::Toml,
                        toml_properties: Some(config.properties.clone()),
                        deleted: false,
                    };
                    plan.push((config, record, true));
                }
            }
        }
        for s in stored.values() {
            if toml_names.contains(&s.name) {
                continue;
            }
            if s.origin == Origin::Toml {
                // Its table left the file while the process was down.
                if let Err(e) = self.store.remove(&s.name) {
                    problems.push(e.into());
                }
                continue;
            }
            if s.deleted {
                continue;
            }
            match ConnectorConfig::from_raw_properties(
                &s.name,
                &s.properties,
                &self.policy,
                Self::trust_of(s),
            ) {
                Ok(c) => plan.push((c, s.clone(), false)),
                Err(found) => {
                    tracing::error!(connector = %s.name, problems = %ControlError::Invalid(found), "stored connector not started")
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        for (config, record, from_toml) in plan {
            match self.supervisor.create(config, record.target).await {
                Ok(()) => {
                    if let Err(e) = self.store.save(&record) {
                        problems.push(e.into());
                    }
                }
                Err(e) if from_toml => problems.push(e.into()),
                Err(e) => {
                    tracing::error!(connector = %record.name, error = %e, "stored connector not started")
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Applies a reloaded file: new or changed tables are applied, removed
    /// tables delete their connectors, unchanged tables leave REST changes
    /// alone. Returns what each change did or why it failed.
    pub async fn reload_toml(
        &self,
        toml: Vec<ConnectorConfig>,
    ) -> Vec<Result<String, ControlError>> {
        let mut outcomes = Vec::new();
        let stored: BTreeMap<String, StoredConnector> = match self.store.load_all() {
            Ok(all) => all.into_iter().map(|c| (c.name.clone(), c)).collect(),
            Err(e) => return vec![Err(e.into())],
        };
        let names: BTreeSet<String> = toml.iter().map(|c| c.name.clone()).collect();
        for s in stored.values() {
            if s.origin == Origin::Toml && !names.contains(&s.name) {
                let name = s.name.clone();
                let _write = self.writes.lock(&name).await;
                let result = async {
                    match self.supervisor.delete(&name).await {
                        Ok(()) | Err(SupervisorError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.store.remove(&name)?;
                    Ok(format!("deleted {name}"))
                }
                .await;
                outcomes.push(result);
            }
        }
        for config in toml {
            let previous = stored.get(&config.name);
            if previous.is_some_and(|p| p.toml_properties.as_ref() == Some(&config.properties)) {
                continue;
            }
            let name = config.name.clone();
            let mut record = StoredConnector {
                name: name.clone(),
                properties: config.properties.clone(),
                target: previous.map_or(TargetState::Running, |p| p.target),
                origin: previous.map_or(Origin::Toml, |p| p.origin),
                toml_properties: Some(config.properties.clone()),
                deleted: false,
            };
            if previous.is_some_and(|p| p.deleted) {
                record.target = TargetState::Running;
            }
            let target = record.target;
            let _write = self.writes.lock(&name).await;
            let result = async {
                let created = self.supervisor.put(config).await?;
                if created && target != TargetState::Running {
                    self.apply_target_locked(&name, target).await?;
                }
                self.store.save(&record)?;
                Ok(format!(
                    "{} {name}",
                    if created { "created" } else { "updated" }
                ))
            }
            .await;
            outcomes.push(result);
        }
        outcomes
    }

    /// Validates properties written over REST, holding them to the policy
    /// (secret references are resolved for the check only).
    pub fn validate(
        &self,
        name: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<ConnectorConfig, ControlError> {
        ConnectorConfig::from_raw_properties(name, properties, &self.policy, Trust::Api)
            .map_err(ControlError::Invalid)
    }

    /// Creates a connector in the `target` state.
    pub async fn create(
        &self,
        name: &str,
        properties: BTreeMap<String, String>,
        target: TargetState,
    ) -> Result<ConnectorConfig, ControlError> {
        let _write = self.writes.lock(name).await;
        let config = self.validate(name, &properties)?;
        if self.supervisor.status(name).await.is_ok() {
            return Err(SupervisorError::AlreadyExists(name.to_owned()).into());
        }
        let previous = self.stored(name)?;
        self.save_rest_change(name, properties, target, previous.as_ref())?;
        if let Err(error) = self.supervisor.create(config.clone(), target).await {
            self.put_back(name, previous)?;
            return Err(error.into());
        }
        Ok(config)
    }

    /// Stores a REST change, keeping the connector's origin and the TOML
    /// table it was last declared with.
    fn save_rest_change(
        &self,
        name: &str,
        properties: BTreeMap<String, String>,
        target: TargetState,
        previous: Option<&StoredConnector>,
    ) -> Result<(), ControlError> {
        self.store.save(&StoredConnector {
            name: name.to_owned(),
            properties,
            target,
            origin: previous.map_or(Origin::Rest, |p| p.origin),
            toml_properties: previous.and_then(|p| p.toml_properties.clone()),
            deleted: false,
        })?;
        Ok(())
    }

    /// Restores a stored record after a change that was saved failed to
    /// apply (`None`: there was none).
    fn put_back(&self, name: &str, previous: Option<StoredConnector>) -> Result<(), ControlError> {
        match previous {
            Some(record) => self.store.save(&record)?,
            None => self.store.remove(name)?,
        }
        Ok(())
    }

    /// Creates or replaces a connector's configuration; true when created.
    pub async fn put(
        &self,
        name: &str,
        properties: BTreeMap<String, String>,
    ) -> Result<(ConnectorConfig, bool), ControlError> {
        let _write = self.writes.lock(name).await;
        self.put_locked(name, properties).await
    }

    /// [`Self::put`] with the connector's write lock held.
    async fn put_locked(
        &self,
        name: &str,
        properties: BTreeMap<String, String>,
    ) -> Result<(ConnectorConfig, bool), ControlError> {
        let config = self.validate(name, &properties)?;
        let target = match self.supervisor.target_state(name).await {
            Ok(target) => target,
            Err(SupervisorError::NotFound(_)) => TargetState::Running,
            Err(other) => return Err(other.into()),
        };
        let previous = self.stored(name)?;
        self.save_rest_change(name, properties, target, previous.as_ref())?;
        match self.supervisor.put(config.clone()).await {
            Ok(created) => Ok((config, created)),
            Err(error) => {
                self.put_back(name, previous)?;
                Err(error.into())
            }
        }
    }

    /// Changes some keys of a connector's configuration: `None` removes a key.
    pub async fn patch(
        &self,
        name: &str,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<ConnectorConfig, ControlError> {
        let _write = self.writes.lock(name).await;
        let mut properties = self.supervisor.status(name).await?.config.properties;
        for (key, value) in changes {
            match value {
                Some(value) => properties.insert(key, value),
                None => properties.remove(&key),
            };
        }
        Ok(self.put_locked(name, properties).await?.0)
    }

    /// Deletes a connector.
    pub async fn delete(&self, name: &str) -> Result<(), ControlError> {
        let _write = self.writes.lock(name).await;
        self.supervisor.status(name).await?;
        let previous = self.stored(name)?;
        match previous.clone() {
            Some(mut record) if record.origin == Origin::Toml => {
                record.deleted = true;
                self.store.save(&record)?;
            }
            _ => self.store.remove(name)?,
        }
        if let Err(error) = self.supervisor.delete(name).await {
            self.put_back(name, previous)?;
            return Err(error.into());
        }
        Ok(())
    }

    /// Pauses, resumes or stops a connector and records it.
    pub async fn apply_target(&self, name: &str, target: TargetState) -> Result<(), ControlError> {
        let _write = self.writes.lock(name).await;
        self.apply_target_locked(name, target).await
    }

    /// [`Self::apply_target`] with the connector's write lock held.
    async fn apply_target_locked(
        &self,
        name: &str,
        target: TargetState,
    ) -> Result<(), ControlError> {
        self.supervisor.status(name).await?;
        let previous = self.stored(name)?;
        if let Some(mut record) = previous.clone()
            && record.target != target
        {
            record.target = target;
            self.store.save(&record)?;
        }
        let applied = match target {
            TargetState::Running => self.supervisor.resume(name).await,
            TargetState::Paused => self.supervisor.pause(name).await,
            TargetState::Stopped => self.supervisor.stop(name).await,
        };
        if let Err(error) = applied {
            if previous.is_some() {
                self.put_back(name, previous)?;
            }
            return Err(error.into());
        }
        // A pause of a stopped connector leaves it stopped: record what is.
        let actual = self.supervisor.target_state(name).await?;
        if actual != target
            && let Some(mut record) = self.stored(name)?
        {
            record.target = actual;
            self.store.save(&record)?;
        }
        Ok(())
    }

    /// Restarts a connector.
    pub async fn restart(&self, name: &str, only_failed: bool) -> Result<(), ControlError> {
        let _write = self.writes.lock(name).await;
        Ok(self.supervisor.restart(name, only_failed).await?)
    }

    /// A connector's status.
    pub async fn status(&self, name: &str) -> Result<ConnectorStatus, ControlError> {
        Ok(self.supervisor.status(name).await?)
    }

    /// Committed offsets.
    pub async fn offsets(&self, name: &str) -> Result<Vec<PartitionOffset>, ControlError> {
        Ok(self.supervisor.committed_offsets(name).await?)
    }

    /// Alters offsets (STOPPED only).
    pub async fn alter_offsets(
        &self,
        name: &str,
        changes: Vec<OffsetChange>,
    ) -> Result<(), ControlError> {
        Ok(self.supervisor.alter_offsets(name, changes).await?)
    }

    /// Resets offsets (STOPPED only).
    pub async fn reset_offsets(&self, name: &str) -> Result<(), ControlError> {
        Ok(self.supervisor.reset_offsets(name).await?)
    }

    /// The topics the connector has consumed from since it was created or
    /// its topics were last reset: topics whose committed offsets exist and
    /// have moved since the reset.
    pub async fn active_topics(&self, name: &str) -> Result<Vec<String>, ControlError> {
        let fingerprints = fingerprints(self.supervisor.committed_offsets(name).await?);
        let resets = self.store.topic_resets(name)?;
        Ok(fingerprints
            .into_iter()
            .filter(|(topic, print)| resets.get(topic) != Some(print))
            .map(|(topic, _)| topic)
            .collect())
    }

    /// Forgets the active topics (offsets are not touched).
    pub async fn reset_topics(&self, name: &str) -> Result<(), ControlError> {
        let fingerprints = fingerprints(self.supervisor.committed_offsets(name).await?);
        self.store.set_topic_resets(name, &fingerprints)?;
        Ok(())
    }

    fn stored(&self, name: &str) -> Result<Option<StoredConnector>, ControlError> {
        Ok(self.store.load_all()?.into_iter().find(|c| c.name == name))
    }
}

/// Per topic, its committed offsets as text (`p:o,p:o`).
fn fingerprints(offsets: Vec<PartitionOffset>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for p in offsets {
        let entry = out.entry(p.topic).or_default();
        if !entry.is_empty() {
            entry.push(',');
        }
        entry.push_str(&format!("{}:{}", p.partition, p.offset));
    }
    out
}
