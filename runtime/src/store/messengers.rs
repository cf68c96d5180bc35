//! Messengers and the event log in the SQLite store.

use rusqlite::{OptionalExtension, ToSql, params};

use super::{EVENT_LOG_CAPACITY, EventLogStore, MessengerStore, SqliteStore, StoreError};
use crate::messenger::{
    EventLogEntry, EventLogSearch, EventLogType, Messenger, SortColumn, like_pattern,
};

impl MessengerStore for SqliteStore {
    fn load_messengers(&self) -> Result<Vec<Messenger>, StoreError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT id, document FROM messengers ORDER BY name, id")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, document) = row?;
            out.push(
                serde_json::from_str(&document).map_err(|e| StoreError::Corrupt {
                    name: format!("messenger {id}"),
                    reason: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    fn save_messenger(&self, messenger: &Messenger) -> Result<(), StoreError> {
        let document = serde_json::to_string(messenger).expect("a messenger serialises");
        self.lock().execute(
            "INSERT INTO messengers (id, name, document) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, document = excluded.document",
            params![messenger.id.to_string(), messenger.name, document],
        )?;
        Ok(())
    }

    fn remove_messenger(&self, id: &uuid::Uuid) -> Result<(), StoreError> {
        self.lock().execute(
            "DELETE FROM messengers WHERE id = ?1",
            params![id.to_string()],
        )?;
        Ok(())
    }
}

fn entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, String, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn to_entry(
    (id, insert_instant, kind, message): (i64, i64, String, String),
) -> Result<EventLogEntry, StoreError> {
    Ok(EventLogEntry {
        id,
        insert_instant,
        message,
        kind: EventLogType::parse(&kind).ok_or_else(|| StoreError::Corrupt {
            name: format!("event log {id}"),
            reason: format!("unknown type {kind}"),
        })?,
    })
}

impl EventLogStore for SqliteStore {
    fn append_event_log(
        &self,
        kind: EventLogType,
        message: &str,
        insert_instant: i64,
    ) -> Result<EventLogEntry, StoreError> {
        let connection = self.lock();
        connection.execute(
            "INSERT INTO event_logs (insert_instant, type, message) VALUES (?1, ?2, ?3)",
            params![insert_instant, kind.as_str(), message],
        )?;
        let id = connection.last_insert_rowid();
        connection.execute(
            "DELETE FROM event_logs WHERE id <= ?1",
            params![id - EVENT_LOG_CAPACITY],
        )?;
        Ok(EventLogEntry {
            id,
            insert_instant,
            message: message.to_owned(),
            kind,
        })
    }

    fn event_log(&self, id: i64) -> Result<Option<EventLogEntry>, StoreError> {
        let found = self
            .lock()
            .query_row(
                "SELECT id, insert_instant, type, message FROM event_logs WHERE id = ?1",
                params![id],
                entry,
            )
            .optional()?;
        found.map(to_entry).transpose()
    }

    fn search_event_logs(
        &self,
        search: &EventLogSearch,
    ) -> Result<(Vec<EventLogEntry>, u64), StoreError> {
        let mut conditions = Vec::new();
        let mut values: Vec<Box<dyn ToSql>> = Vec::new();
        if let Some(message) = &search.message {
            conditions.push("message LIKE ? ESCAPE '\\'");
            values.push(Box::new(like_pattern(message)));
        }
        if let Some(start) = search.start {
            conditions.push("insert_instant >= ?");
            values.push(Box::new(start));
        }
        if let Some(end) = search.end {
            conditions.push("insert_instant <= ?");
            values.push(Box::new(end));
        }
        if let Some(kind) = search.kind {
            conditions.push("type = ?");
            values.push(Box::new(kind.as_str()));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let order = search
            .order_by
            .iter()
            .map(|(column, descending)| {
                let column = match column {
                    SortColumn::Id => "id",
                    SortColumn::InsertInstant => "insert_instant",
                    SortColumn::Message => "message",
                    SortColumn::Type => "type",
                };
                format!("{column} {}", if *descending { "DESC" } else { "ASC" })
            })
            .collect::<Vec<_>>()
            .join(", ");
        let connection = self.lock();
        let bound: Vec<&dyn ToSql> = values.iter().map(|v| v.as_ref()).collect();
        let total: i64 = connection.query_row(
            &format!("SELECT COUNT(*) FROM event_logs{filter}"),
            bound.as_slice(),
            |row| row.get(0),
        )?;
        let mut statement = connection.prepare(&format!(
            "SELECT id, insert_instant, type, message FROM event_logs{filter} ORDER BY {order} LIMIT {} OFFSET {}",
            search.number_of_results, search.start_row
        ))?;
        let rows = statement.query_map(bound.as_slice(), entry)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(to_entry(row?)?);
        }
        Ok((out, total as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messenger::parse_order_by;

    #[test]
    fn messengers_round_trip_and_names_stay_unique() {
        let store = SqliteStore::in_memory().unwrap();
        let messenger: Messenger = serde_json::from_value(serde_json::json!({
            "id": "8b277ae3-7b76-4e1e-bb07-7320046355bc", "name": "m", "defaultTopic": "t",
            "producer": {"acks": "1"}, "data": {"a": [1]}, "debug": true,
            "insertInstant": 1, "lastUpdateInstant": 2}))
        .unwrap();
        store.save_messenger(&messenger).unwrap();
        assert_eq!(
            store.load_messengers().unwrap(),
            std::slice::from_ref(&messenger)
        );
        let mut twin = messenger.clone();
        twin.id = uuid::Uuid::new_v4();
        assert!(store.save_messenger(&twin).is_err(), "the name is unique");
        store.remove_messenger(&messenger.id).unwrap();
        assert!(store.load_messengers().unwrap().is_empty());
    }

    #[test]
    fn event_logs_are_searched_filtered_paged_and_capped() {
        let store = SqliteStore::in_memory().unwrap();
        for n in 0..30 {
            let kind = if n % 3 == 0 {
                EventLogType::Error
            } else {
                EventLogType::Debug
            };
            store
                .append_event_log(
                    kind,
                    &format!("Failed to send a message to topic [t{n}]"),
                    1000 + n,
                )
                .unwrap();
        }
        let all = EventLogSearch::default();
        let (page, total) = store.search_event_logs(&all).unwrap();
        assert_eq!((page.len(), total), (25, 30));
        assert_eq!(page[0].insert_instant, 1029, "newest first by default");
        let errors = EventLogSearch {
            kind: Some(EventLogType::Error),
            message: Some("*[t2*".into()),
            order_by: parse_order_by("id ASC").unwrap(),
            ..EventLogSearch::default()
        };
        let (page, total) = store.search_event_logs(&errors).unwrap();
        assert_eq!(total, 3, "t21, t24 and t27 are the errors starting [t2");
        assert_eq!(
            page.iter().map(|e| e.insert_instant).collect::<Vec<_>>(),
            [1021, 1024, 1027]
        );
        let window = EventLogSearch {
            start: Some(1010),
            end: Some(1012),
            start_row: 1,
            number_of_results: 1,
            ..EventLogSearch::default()
        };
        let (page, total) = store.search_event_logs(&window).unwrap();
        assert_eq!((total, page[0].insert_instant), (3, 1011));
        assert_eq!(store.event_log(page[0].id).unwrap().unwrap(), page[0]);
        assert!(store.event_log(9_999).unwrap().is_none());
        let first = store
            .append_event_log(EventLogType::Information, "x", 1)
            .unwrap()
            .id;
        for _ in 0..EVENT_LOG_CAPACITY {
            store
                .append_event_log(EventLogType::Information, "x", 1)
                .unwrap();
        }
        assert!(
            store.event_log(first).unwrap().is_none(),
            "the oldest entries go first"
        );
        let (_, total) = store.search_event_logs(&all).unwrap();
        assert_eq!(total, EVENT_LOG_CAPACITY as u64);
    }
}
