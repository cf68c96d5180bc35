//! The Kafka record a guest transforms.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// What a record's [`Timestamp`] means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampKind {
    /// Set by the producer when it created the record.
    CreateTime,
    /// Set by the broker when it appended the record to the log.
    LogAppendTime,
}

/// A record timestamp: milliseconds since the Unix epoch, and what they mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch (may be negative for dates before 1970).
    pub millis: i64,
    /// Who set the timestamp.
    pub kind: TimestampKind,
}

impl Timestamp {
    /// The timestamp as a [`SystemTime`].
    pub fn system_time(&self) -> SystemTime {
        let offset = Duration::from_millis(self.millis.unsigned_abs());
        if self.millis >= 0 {
            UNIX_EPOCH + offset
        } else {
            UNIX_EPOCH - offset
        }
    }
}

/// One consumed Kafka record, owned by the guest for the duration of a
/// `transform` call.
///
/// Fields are public so a guest's own tests can build records; the
/// `with_*` methods do the same more briefly:
///
/// ```
/// use wasmsink_guest::Record;
///
/// let record = Record::new("orders", 0, 42)
///     .with_key("customer-7")
///     .with_value(r#"{"total": 12}"#)
///     .with_header("route", "eu");
/// assert_eq!(record.header_str("route"), Some("eu"));
/// let value: serde_json::Value = record.value_json().unwrap();
/// assert_eq!(value["total"], 12);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Topic the record was consumed from.
    pub topic: String,
    /// Partition within the topic.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// The record's timestamp, if it has one.
    pub timestamp: Option<Timestamp>,
    /// Key bytes; `None` is a null key.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` is a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in log order, duplicates kept; a `None` value is a null header.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// A record with no timestamp, key, value or headers (for tests).
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        Record {
            topic: topic.into(),
            partition,
            offset,
            timestamp: None,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), Some(value.into())));
        self
    }

    /// Sets a create-time timestamp.
    pub fn with_timestamp_ms(mut self, millis: i64) -> Self {
        self.timestamp = Some(Timestamp {
            millis,
            kind: TimestampKind::CreateTime,
        });
        self
    }

    /// Topic the record was consumed from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Partition within the topic.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Offset within the partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The timestamp, or `None` when the record has none.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// Key bytes; `None` for a null key.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The key as text, invalid UTF-8 replaced by U+FFFD; `None` for a null key.
    pub fn key_str(&self) -> Option<Cow<'_, str>> {
        self.key.as_deref().map(String::from_utf8_lossy)
    }

    /// Value bytes; `None` for a null value (a tombstone).
    pub fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }

    /// The value as text, invalid UTF-8 replaced by U+FFFD; `None` for a tombstone.
    pub fn value_str(&self) -> Option<Cow<'_, str>> {
        self.value.as_deref().map(String::from_utf8_lossy)
    }

    /// Takes the value out of the record, without copying (empty for a tombstone).
    pub fn into_value(self) -> Vec<u8> {
        self.value.unwrap_or_default()
    }

    /// Parses the value as JSON into `T`.
    ///
    /// A tombstone reads as JSON `null`, so `value_json::<Option<T>>()`
    /// returns `Ok(None)` for it. A failure is an
    /// [`ErrorKind::InvalidRecord`](crate::ErrorKind::InvalidRecord) error
    /// naming the record.
    pub fn value_json<T: DeserializeOwned>(&self) -> Result<T> {
        let parsed = match &self.value {
            Some(bytes) => serde_json::from_slice(bytes),
            None => serde_json::from_value(serde_json::Value::Null),
        };
        parsed.map_err(|e| {
            Error::invalid_record(format!(
                "value of {}/{}@{} is not the expected JSON: {e}",
                self.topic, self.partition, self.offset
            ))
        })
    }

    /// The value as a JSON value when it is valid JSON, else as a JSON string
    /// (lossy UTF-8); `null` for a tombstone. See [`crate::json::value_or_string`].
    pub fn value_json_or_string(&self) -> serde_json::Value {
        match &self.value {
            Some(bytes) => crate::json::value_or_string(bytes),
            None => serde_json::Value::Null,
        }
    }

    /// The value of the **last** header named `name` (compared exactly, as
    /// Kafka does); `None` when there is no such header or its value is null.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }

    /// [`Record::header`] as UTF-8 text; `None` also when it is not valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// Every header in log order, duplicates kept.
    pub fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.headers
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn last_header_wins_and_null_headers_read_as_none() {
        let mut record = Record::new("t", 0, 1)
            .with_header("route", "a")
            .with_header("route", "b");
        record.headers.push(("gone".into(), None));
        assert_eq!(record.header_str("route"), Some("b"));
        assert_eq!(record.header("Route"), None);
        assert_eq!(record.header("gone"), None);
        assert_eq!(record.headers().count(), 3);
    }

    #[test]
    fn value_json_reads_tombstones_as_null() {
        let tombstone = Record::new("t", 0, 1);
        assert_eq!(tombstone.value_json::<Option<u32>>().unwrap(), None);
        let error = tombstone.value_json::<u32>().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRecord);
        assert!(
            error
                .message()
                .starts_with("value of t/0@1 is not the expected JSON")
        );
    }

    #[test]
    fn text_views_are_lossy() {
        let record = Record::new("t", 0, 1).with_key(vec![b'k', 0xff]);
        assert_eq!(record.key_str().as_deref(), Some("k\u{fffd}"));
        assert_eq!(record.value_str(), None);
        assert_eq!(record.into_value(), Vec::<u8>::new());
    }

    #[test]
    fn timestamps_convert_to_system_time() {
        let record = Record::new("t", 0, 1).with_timestamp_ms(1_500);
        let at = record.timestamp().unwrap().system_time();
        assert_eq!(at.duration_since(UNIX_EPOCH).unwrap().as_millis(), 1_500);
        let before = Timestamp {
            millis: -1_000,
            kind: TimestampKind::LogAppendTime,
        };
        assert_eq!(
            UNIX_EPOCH
                .duration_since(before.system_time())
                .unwrap()
                .as_secs(),
            1
        );
    }
}
