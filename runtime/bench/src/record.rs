//! The benchmark record: a JSON value of an exact size carrying its key, a
//! per-key sequence number and, in paced runs, its produce time.
//!
//! ```json
//! {"key":"bench-0/k0042","seq":83,"ts":1732280000123456,"pad":"xxxx…"}
//! ```
//!
//! `ts` is 0 when the record carries no produce time (a fill). The receiver
//! finds the fields by name rather than parsing the whole document, so a
//! guest that wraps the value in an envelope still gets its records counted.

use std::fmt::Write as _;

/// How a run's records are spread over topics, keys and partitions.
///
/// Record `g` of a run (counting across all topics) goes to topic
/// `g % topics`, where it is that topic's record `index = first_index + g /
/// topics`. Its key is `index % keys` and its sequence number `index / keys`,
/// so keys take turns and each key's sequence grows by one per round. Key
/// `k` lives on partition `k % partitions`, which spreads keys evenly.
///
/// With `hot_key`, key 0 carries every other record (half of them, index
/// even) and the other keys take turns with the rest.
pub struct Plan {
    /// The topics, filled in turn.
    pub topics: Vec<String>,
    /// Partitions of each topic.
    pub partitions: u32,
    /// Distinct keys per topic.
    pub keys: u32,
    /// The per-topic index of the run's first record; a later run starts
    /// past the earlier ones so that every key's sequence keeps growing.
    pub first_index: u64,
    /// Whether key 0 carries half of the records.
    pub hot_key: bool,
}

/// Where one record of a [`Plan`] goes and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its key: the topic name, `/k` and the key number.
    pub key: String,
    /// Its sequence number within the key.
    pub seq: u64,
}

impl Plan {
    /// Where the run's `g`-th record goes.
    pub fn place(&self, g: u64) -> Placement<'_> {
        let topic_count = self.topics.len() as u64;
        let topic = &self.topics[(g % topic_count) as usize];
        let index = self.first_index + g / topic_count;
        let (key, seq) = match (self.hot_key, index % 2) {
            (true, 0) => (0, index / 2),
            (true, _) => {
                let others = u64::from(self.keys.max(2) - 1);
                (1 + ((index / 2) % others) as u32, (index / 2) / others)
            }
            (false, _) => (
                (index % u64::from(self.keys)) as u32,
                index / u64::from(self.keys),
            ),
        };
        Placement {
            topic,
            partition: (key % self.partitions) as i32,
            key: format!("{topic}/k{key:04}"),
            seq,
        }
    }
}

/// The fields of a record, borrowed from a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    /// The record's key.
    pub key: &'a str,
    /// Its sequence number within the key.
    pub seq: u64,
    /// Its produce time in microseconds since the epoch; 0 when unknown.
    pub produced_us: u64,
}

/// A value cannot hold its fields in the requested size.
#[derive(Debug)]
pub struct TooSmall {
    /// The smallest size that fits.
    pub needed: usize,
}

impl std::fmt::Display for TooSmall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a record value needs at least {} bytes", self.needed)
    }
}

impl std::error::Error for TooSmall {}

/// Writes the value of a record into `out` (cleared first), padded to
/// exactly `size` bytes.
pub fn encode(fields: Fields<'_>, size: usize, out: &mut String) -> Result<(), TooSmall> {
    out.clear();
    write!(
        out,
        r#"{{"key":"{}","seq":{},"ts":{},"pad":""#,
        fields.key, fields.seq, fields.produced_us
    )
    .expect("writing to a String");
    let needed = out.len() + 2;
    if size < needed {
        return Err(TooSmall { needed });
    }
    out.extend(std::iter::repeat_n('x', size - needed));
    out.push_str("\"}");
    Ok(())
}

/// Finds a record's fields in a body; `None` when the key or the sequence
/// number is missing. A missing `ts` reads as 0.
pub fn scan(body: &[u8]) -> Option<Fields<'_>> {
    let key_start = find(body, br#""key":""#)?;
    let key_len = body[key_start..].iter().position(|&b| b == b'"')?;
    let key = std::str::from_utf8(&body[key_start..key_start + key_len]).ok()?;
    let seq = number_after(body, br#""seq":"#)?;
    let produced_us = number_after(body, br#""ts":"#).unwrap_or(0);
    Some(Fields {
        key,
        seq,
        produced_us,
    })
}

/// The offset just past the first occurrence of `needle`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + needle.len())
}

/// The unsigned integer right after `name`.
fn number_after(body: &[u8], name: &[u8]) -> Option<u64> {
    let start = find(body, name)?;
    let digits = body[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&body[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_values_have_the_exact_size_and_scan_back() {
        let fields = Fields {
            key: "bench-0/k0042",
            seq: 83,
            produced_us: 1_732_280_000_123_456,
        };
        for size in [256, 1024] {
            let mut value = String::new();
            encode(fields, size, &mut value).unwrap();
            assert_eq!(value.len(), size);
            assert!(serde_json::from_str::<serde_json::Value>(&value).is_ok());
            assert_eq!(scan(value.as_bytes()), Some(fields));
        }
    }

    #[test]
    fn a_value_too_small_for_its_fields_is_refused() {
        let fields = Fields {
            key: "k",
            seq: 1,
            produced_us: 0,
        };
        let error = encode(fields, 10, &mut String::new()).unwrap_err();
        assert!(error.needed > 10);
    }

    #[test]
    fn fields_are_found_inside_an_envelope() {
        let body = br#"{"topic":"t","value":{"key":"t/k0001","seq":7,"pad":"x"}}"#;
        let fields = scan(body).unwrap();
        assert_eq!(
            (fields.key, fields.seq, fields.produced_us),
            ("t/k0001", 7, 0)
        );
        assert_eq!(scan(br#"{"retry":false}"#), None);
    }

    #[test]
    fn the_plan_spreads_keys_evenly_and_grows_sequences() {
        let plan = Plan {
            topics: vec!["a".into(), "b".into()],
            partitions: 3,
            keys: 6,
            first_index: 0,
            hot_key: false,
        };
        let first = plan.place(0);
        assert_eq!((first.topic, first.partition, first.seq), ("a", 0, 0));
        assert_eq!(first.key, "a/k0000");
        assert_eq!(plan.place(1).topic, "b");
        let later = plan.place(2 * 6 + 2 * 4);
        assert_eq!(
            (later.key.as_str(), later.partition, later.seq),
            ("a/k0004", 1, 1)
        );
        let resumed = Plan {
            first_index: 12,
            ..plan
        };
        assert_eq!(resumed.place(0).seq, 2);
    }

    #[test]
    fn a_hot_key_carries_half_of_the_records_with_growing_sequences() {
        let plan = Plan {
            topics: vec!["t".into()],
            partitions: 2,
            keys: 4,
            first_index: 0,
            hot_key: true,
        };
        let placed: Vec<(String, u64)> = (0..12)
            .map(|g| {
                let p = plan.place(g);
                (p.key, p.seq)
            })
            .collect();
        let hot: Vec<u64> = placed
            .iter()
            .filter(|(k, _)| k == "t/k0000")
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(hot, [0, 1, 2, 3, 4, 5]);
        let k1: Vec<u64> = placed
            .iter()
            .filter(|(k, _)| k == "t/k0001")
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(k1, [0, 1]);
    }
}
