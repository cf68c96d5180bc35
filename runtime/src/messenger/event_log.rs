//! FusionAuth's event log: what messenger sends leave behind for operators
//! (`Error` when a send fails, `Debug` for every send of a messenger with
//! `debug: true`), and how it is searched.

use serde::Serialize;
use serde_json::{Value, json};

/// The kind of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventLogType {
    /// Something worth knowing.
    Information,
    /// A trace of one operation.
    Debug,
    /// A failure.
    Error,
}

impl EventLogType {
    /// Its name in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Information => "Information",
            Self::Debug => "Debug",
            Self::Error => "Error",
        }
    }

    /// The kind named `text` (exact, as FusionAuth's enum).
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Information, Self::Debug, Self::Error]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLogEntry {
    /// Its id, increasing.
    pub id: i64,
    /// When it was written, epoch milliseconds.
    pub insert_instant: i64,
    /// What happened.
    pub message: String,
    /// Its kind.
    pub kind: EventLogType,
}

impl EventLogEntry {
    /// FusionAuth's JSON for an event log.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "insertInstant": self.insert_instant,
            "message": self.message,
            "type": self.kind.as_str(),
        })
    }
}

/// A column results can be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    /// `id`.
    Id,
    /// `insertInstant`.
    InsertInstant,
    /// `message`.
    Message,
    /// `type`.
    Type,
}

/// An event log search, with FusionAuth's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLogSearch {
    /// Entries whose message matches; `*` is a wildcard, and without one
    /// the text may appear anywhere. Case-insensitive.
    pub message: Option<String>,
    /// Entries written at or after, epoch milliseconds.
    pub start: Option<i64>,
    /// Entries written at or before, epoch milliseconds.
    pub end: Option<i64>,
    /// Entries of this kind.
    pub kind: Option<EventLogType>,
    /// At most this many (default 25).
    pub number_of_results: u32,
    /// Skip this many (default 0).
    pub start_row: u32,
    /// The order (default `insertInstant DESC, id DESC`); `true` is descending.
    pub order_by: Vec<(SortColumn, bool)>,
}

impl Default for EventLogSearch {
    fn default() -> Self {
        Self {
            message: None,
            start: None,
            end: None,
            kind: None,
            number_of_results: 25,
            start_row: 0,
            order_by: vec![(SortColumn::InsertInstant, true), (SortColumn::Id, true)],
        }
    }
}

/// Parses an `orderBy` text such as `insertInstant DESC, id ASC`.
pub fn parse_order_by(text: &str) -> Result<Vec<(SortColumn, bool)>, String> {
    let mut order = Vec::new();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let mut words = term.split_whitespace();
        let column = match words.next().unwrap_or_default() {
            "id" => SortColumn::Id,
            "insertInstant" => SortColumn::InsertInstant,
            "message" => SortColumn::Message,
            "type" => SortColumn::Type,
            other => {
                return Err(format!(
                    "[{other}] cannot be sorted on; use id, insertInstant, message or type"
                ));
            }
        };
        let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(other) => return Err(format!("[{other}] is not ASC or DESC")),
        };
        if words.next().is_some() {
            return Err(format!("[{term}] is not a column and a direction"));
        }
        order.push((column, descending));
    }
    if order.is_empty() {
        return Err("names no column".into());
    }
    Ok(order)
}

/// The SQL `LIKE` pattern for a FusionAuth message search (escape `\`).
pub fn like_pattern(message: &str) -> String {
    let escaped: String = message
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            '*' => vec!['%'],
            c => vec![c],
        })
        .collect();
    if message.contains('*') {
        escaped
    } else {
        format!("%{escaped}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_accepts_fusionauths_columns_only() {
        assert_eq!(
            parse_order_by("insertInstant DESC, id asc").unwrap(),
            [(SortColumn::InsertInstant, true), (SortColumn::Id, false)]
        );
        assert!(parse_order_by("insertUser DESC").is_err());
        assert!(parse_order_by("id sideways").is_err());
        assert!(parse_order_by(" ").is_err());
    }

    #[test]
    fn message_patterns_use_stars_and_match_anywhere_without_them() {
        assert_eq!(like_pattern("topic [a]"), "%topic [a]%");
        assert_eq!(like_pattern("Failed*[t_1]*"), "Failed%[t\\_1]%");
        assert_eq!(like_pattern("100%"), "%100\\%%");
    }
}
