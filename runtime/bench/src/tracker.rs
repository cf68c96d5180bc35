//! The receiver's bookkeeping: which records arrived, how often, in what
//! order, when, and how long after they were produced.
//!
//! A record is identified by its key and sequence number. Within a key,
//! sequence numbers were produced in increasing order to one partition, so a
//! record arriving after a higher sequence number of its key is an order
//! violation, and a record arriving a second time is a duplicate.

use std::collections::HashMap;

use crate::record::Fields;

/// Everything the receiver has accepted so far.
#[derive(Debug, Default)]
pub struct Tracker {
    keys: HashMap<Box<str>, KeyLog>,
    distinct: u64,
    duplicates: u64,
    order_violations: u64,
    first_us: Option<u64>,
    last_us: u64,
    /// Produce-to-arrival times of records that carried their produce time.
    latencies_us: Vec<u64>,
}

/// One key's history.
#[derive(Debug, Default)]
struct KeyLog {
    /// The highest sequence number seen.
    highest: Option<u64>,
    /// A bitmap of the sequence numbers seen.
    seen: Vec<u64>,
}

impl KeyLog {
    /// Marks `seq` as seen; false if it was already.
    fn mark(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let fresh = self.seen[word] & bit == 0;
        self.seen[word] |= bit;
        fresh
    }
}

/// A summary of a [`Tracker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Records accepted at least once.
    pub distinct: u64,
    /// Acceptances of a record already accepted.
    pub duplicates: u64,
    /// Records accepted after a higher sequence number of their key.
    pub order_violations: u64,
    /// When the first record arrived (µs since the epoch), 0 if none did.
    pub first_us: u64,
    /// When the last record arrived (µs since the epoch), 0 if none did.
    pub last_us: u64,
    /// Produce-to-arrival percentiles, over the records that carried their
    /// produce time.
    pub latency: Latency,
}

/// Latency percentiles in microseconds (all 0 without samples).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latency {
    /// How many records carried their produce time.
    pub samples: u64,
    /// The median.
    pub p50_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
    /// The slowest.
    pub max_us: u64,
}

impl Tracker {
    /// Counts one accepted record that arrived at `arrived_us`.
    pub fn accept(&mut self, fields: Fields<'_>, arrived_us: u64) {
        let log = match self.keys.get_mut(fields.key) {
            Some(log) => log,
            None => self.keys.entry(fields.key.into()).or_default(),
        };
        if !log.mark(fields.seq) {
            self.duplicates += 1;
        } else {
            self.distinct += 1;
            if log.highest.is_some_and(|highest| fields.seq < highest) {
                self.order_violations += 1;
            }
        }
        log.highest = log.highest.max(Some(fields.seq));
        self.first_us.get_or_insert(arrived_us);
        self.last_us = self.last_us.max(arrived_us);
        if fields.produced_us > 0 {
            self.latencies_us
                .push(arrived_us.saturating_sub(fields.produced_us));
        }
    }

    /// The counts so far, with latency percentiles.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            distinct: self.distinct,
            duplicates: self.duplicates,
            order_violations: self.order_violations,
            first_us: self.first_us.unwrap_or(0),
            last_us: self.last_us,
            latency: Latency::of(&self.latencies_us),
        }
    }
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (microseconds).
    pub fn of(samples: &[u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = |percent: usize| sorted[(sorted.len() * percent).div_ceil(100).max(1) - 1];
        Self {
            samples: sorted.len() as u64,
            p50_us: rank(50),
            p99_us: rank(99),
            max_us: sorted[sorted.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(key: &str, seq: u64) -> Fields<'_> {
        Fields {
            key,
            seq,
            produced_us: 0,
        }
    }

    #[test]
    fn counts_distinct_records_duplicates_and_order_violations() {
        let mut tracker = Tracker::default();
        for (key, seq) in [("a", 0), ("b", 0), ("a", 1), ("a", 1), ("a", 3), ("a", 2)] {
            tracker.accept(fields(key, seq), 10);
        }
        let snapshot = tracker.snapshot();
        assert_eq!(snapshot.distinct, 5);
        assert_eq!(snapshot.duplicates, 1);
        assert_eq!(snapshot.order_violations, 1);
    }

    #[test]
    fn a_redelivered_older_record_is_a_duplicate_not_a_violation() {
        let mut tracker = Tracker::default();
        for seq in [0, 1, 2, 0] {
            tracker.accept(fields("a", seq), 10);
        }
        let snapshot = tracker.snapshot();
        assert_eq!((snapshot.distinct, snapshot.duplicates), (3, 1));
        assert_eq!(snapshot.order_violations, 0);
    }

    #[test]
    fn records_first_and_last_arrival_and_latency_percentiles() {
        let mut tracker = Tracker::default();
        for seq in 0..100 {
            let produced_us = if seq == 0 { 0 } else { 1_000 };
            let record = Fields {
                key: "a",
                seq,
                produced_us,
            };
            tracker.accept(record, 1_000 + seq * 10);
        }
        let snapshot = tracker.snapshot();
        assert_eq!((snapshot.first_us, snapshot.last_us), (1_000, 1_990));
        assert_eq!(snapshot.latency.samples, 99);
        assert_eq!(snapshot.latency.p50_us, 500);
        assert_eq!(snapshot.latency.p99_us, 990);
        assert_eq!(snapshot.latency.max_us, 990);
    }
}
