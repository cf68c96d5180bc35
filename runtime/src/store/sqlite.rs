//! The embedded store: one SQLite file, `wasmsink.db`, in the data
//! directory. The schema is versioned with `PRAGMA user_version`; each
//! migration runs once, in order, in a transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{ConnectorStore, Origin, StoreError, StoredConnector, parse_target, target_name};

/// The schema version this wasmsink writes.
pub const SCHEMA_VERSION: i64 = 2;

/// Migrations; entry `n` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE connectors (
        name            TEXT PRIMARY KEY NOT NULL,
        properties      TEXT NOT NULL,   -- JSON object, secret references unresolved
        target_state    TEXT NOT NULL,   -- RUNNING | PAUSED | STOPPED
        origin          TEXT NOT NULL,   -- toml | rest
        toml_properties TEXT,            -- JSON object: the TOML table last applied
        deleted         INTEGER NOT NULL DEFAULT 0,
        updated_at      INTEGER NOT NULL -- unix seconds
    );
    CREATE TABLE topic_resets (
        name        TEXT NOT NULL,
        topic       TEXT NOT NULL,
        fingerprint TEXT NOT NULL,       -- committed offsets when the topics were reset
        PRIMARY KEY (name, topic)
    );
",
    "
    CREATE TABLE messengers (
        id       TEXT PRIMARY KEY NOT NULL, -- lower-case UUID
        name     TEXT NOT NULL UNIQUE,
        document TEXT NOT NULL              -- the messenger as JSON
    );
    CREATE TABLE event_logs (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        insert_instant INTEGER NOT NULL,    -- epoch milliseconds
        type           TEXT NOT NULL,       -- Information | Debug | Error
        message        TEXT NOT NULL
    );
    CREATE INDEX event_logs_by_instant ON event_logs (insert_instant);
",
];

/// A SQLite-file store.
pub struct SqliteStore {
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating when needed) `DIR/wasmsink.db` and migrates it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let connection = Connection::open(data_dir.join("wasmsink.db"))?;
        Self::with_connection(connection)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(mut connection: Connection) -> Result<Self, StoreError> {
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        let version: i64 = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = connection.transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn to_json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).expect("a string map serialises")
}

fn from_json(name: &str, text: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        name: format!("connector {name}"),
        reason: e.to_string(),
    })
}

impl ConnectorStore for SqliteStore {
    fn load_all(&self) -> Result<Vec<StoredConnector>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT name, properties, target_state, origin, toml_properties, deleted
             FROM connectors ORDER BY name",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, bool>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, properties, target, origin, toml, deleted) = row?;
            let corrupt = |reason: &str| StoreError::Corrupt {
                name: format!("connector {name}"),
                reason: reason.to_owned(),
            };
            out.push(StoredConnector {
                properties: from_json(&name, &properties)?,
                target: parse_target(&target).ok_or_else(|| corrupt("unknown target state"))?,
                origin: match origin.as_str() {
                    "toml" => Origin::Toml,
                    "rest" => Origin::Rest,
                    _ => return Err(corrupt("unknown origin")),
                },
                toml_properties: toml.map(|t| from_json(&name, &t)).transpose()?,
                deleted,
                name,
            });
        }
        Ok(out)
    }

    fn save(&self, c: &StoredConnector) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.lock().execute(
            "INSERT INTO connectors (name, properties, target_state, origin, toml_properties, deleted, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(name) DO UPDATE SET properties = ?2, target_state = ?3, origin = ?4,
                 toml_properties = ?5, deleted = ?6, updated_at = ?7",
            params![
                c.name,
                to_json(&c.properties),
                target_name(c.target),
                c.origin.as_str(),
                c.toml_properties.as_ref().map(to_json),
                c.deleted,
                now
            ],
        )?;
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        let connection = self.lock();
        connection.execute("DELETE FROM connectors WHERE name = ?1", [name])?;
        connection.execute("DELETE FROM topic_resets WHERE name = ?1", [name])?;
        Ok(())
    }

    fn topic_resets(&self, name: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT topic, fingerprint FROM topic_resets WHERE name = ?1")?;
        let rows = statement.query_map([name], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_topic_resets(
        &self,
        name: &str,
        resets: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        tx.execute("DELETE FROM topic_resets WHERE name = ?1", [name])?;
        for (topic, fingerprint) in resets {
            tx.execute(
                "INSERT INTO topic_resets (name, topic, fingerprint) VALUES (?1, ?2, ?3)",
                params![name, topic, fingerprint],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl SqliteStore {
    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::TargetState;

    fn sample(name: &str) -> StoredConnector {
        StoredConnector {
            name: name.to_owned(),
            properties: BTreeMap::from([("topics".to_owned(), "t".to_owned())]),
            target: TargetState::Paused,
            origin: Origin::Rest,
            toml_properties: None,
            deleted: false,
        }
    }

    #[test]
    fn connectors_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.save(&sample("a")).unwrap();
            let mut b = sample("b");
            b.origin = Origin::Toml;
            b.toml_properties = Some(b.properties.clone());
            store.save(&b).unwrap();
            b.target = TargetState::Stopped;
            store.save(&b).unwrap();
            store
                .set_topic_resets("a", &BTreeMap::from([("t".into(), "0:5".into())]))
                .unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let all = store.load_all().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], sample("a"));
        assert_eq!(all[1].target, TargetState::Stopped);
        assert_eq!(all[1].origin, Origin::Toml);
        assert_eq!(store.topic_resets("a").unwrap().len(), 1);
        store.remove("a").unwrap();
        assert_eq!(store.load_all().unwrap().len(), 1);
        assert!(store.topic_resets("a").unwrap().is_empty());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("wasmsink.db")).unwrap();
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(connection);
        assert!(matches!(
            SqliteStore::open(dir.path()),
            Err(StoreError::TooNew { .. })
        ));
    }
}
