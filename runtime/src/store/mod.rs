//! The durable connector store: connectors created or changed over the REST
//! API, and the state an operator asked for, survive a restart.
//!
//! The store is a small interface ([`ConnectorStore`]) so that a store shared
//! by several wasmsink instances can come later. The embedded default is
//! [`SqliteStore`], one SQLite file in the data directory.

mod messengers;
mod sqlite;

use std::collections::BTreeMap;

pub use sqlite::{SCHEMA_VERSION, SqliteStore};

use crate::messenger::{EventLogEntry, EventLogSearch, EventLogType, Messenger};
use crate::supervisor::TargetState;

/// Where a connector was first declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A `[connectors.NAME]` table in the TOML file.
    Toml,
    /// Created over the REST API.
    Rest,
}

impl Origin {
    /// `toml` or `rest`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Toml => "toml",
            Self::Rest => "rest",
        }
    }
}

/// One stored connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConnector {
    /// Its name.
    pub name: String,
    /// Its properties as written (secret references unresolved).
    pub properties: BTreeMap<String, String>,
    /// The state an operator asked for.
    pub target: TargetState,
    /// Where it was first declared.
    pub origin: Origin,
    /// For TOML-declared connectors: the TOML table's properties when they
    /// were last applied. When the file changes that table, the file wins
    /// again.
    pub toml_properties: Option<BTreeMap<String, String>>,
    /// Deleted over REST (kept so a TOML-declared connector is not recreated
    /// from an unchanged file).
    pub deleted: bool,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be created.
    #[error("store: cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A stored row could not be read.
    #[error("store: corrupt row for {name}: {reason}")]
    Corrupt {
        /// The connector.
        name: String,
        /// Why.
        reason: String,
    },
    /// The file was written by a newer wasmsink.
    #[error("store: schema version {found} is newer than this wasmsink's {supported}")]
    TooNew {
        /// The file's version.
        found: i64,
        /// Ours.
        supported: i64,
    },
}

/// Keeps connectors across restarts.
pub trait ConnectorStore: Send + Sync {
    /// Every stored connector, by name (deleted ones included).
    fn load_all(&self) -> Result<Vec<StoredConnector>, StoreError>;
    /// Inserts or replaces a connector.
    fn save(&self, connector: &StoredConnector) -> Result<(), StoreError>;
    /// Forgets a connector entirely.
    fn remove(&self, name: &str) -> Result<(), StoreError>;
    /// The committed-offset fingerprints recorded by the last topic reset.
    fn topic_resets(&self, name: &str) -> Result<BTreeMap<String, String>, StoreError>;
    /// Replaces the topic-reset fingerprints of a connector.
    fn set_topic_resets(
        &self,
        name: &str,
        resets: &BTreeMap<String, String>,
    ) -> Result<(), StoreError>;
}

/// Keeps Kafka messengers across restarts.
pub trait MessengerStore: Send + Sync {
    /// Every stored messenger.
    fn load_messengers(&self) -> Result<Vec<Messenger>, StoreError>;
    /// Inserts or replaces a messenger.
    fn save_messenger(&self, messenger: &Messenger) -> Result<(), StoreError>;
    /// Forgets a messenger.
    fn remove_messenger(&self, id: &uuid::Uuid) -> Result<(), StoreError>;
}

/// The event log: the newest [`EVENT_LOG_CAPACITY`] entries are kept.
pub trait EventLogStore: Send + Sync {
    /// Writes an entry and returns it with its id.
    fn append_event_log(
        &self,
        kind: EventLogType,
        message: &str,
        insert_instant: i64,
    ) -> Result<EventLogEntry, StoreError>;
    /// The entry with `id`.
    fn event_log(&self, id: i64) -> Result<Option<EventLogEntry>, StoreError>;
    /// One page of the entries a search matches, and how many match in all.
    fn search_event_logs(
        &self,
        search: &EventLogSearch,
    ) -> Result<(Vec<EventLogEntry>, u64), StoreError>;
}

/// How many event log entries are kept; older ones are removed as new ones
/// arrive.
pub const EVENT_LOG_CAPACITY: i64 = 10_000;

/// The text of a target state in the store and the API.
pub fn target_name(target: TargetState) -> &'static str {
    match target {
        TargetState::Running => "RUNNING",
        TargetState::Paused => "PAUSED",
        TargetState::Stopped => "STOPPED",
    }
}

/// A target state from its text.
pub fn parse_target(text: &str) -> Option<TargetState> {
    match text.to_ascii_uppercase().as_str() {
        "RUNNING" => Some(TargetState::Running),
        "PAUSED" => Some(TargetState::Paused),
        "STOPPED" => Some(TargetState::Stopped),
        _ => None,
    }
}
