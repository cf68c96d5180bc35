//! Which records of a partition may start now, so that records of one
//! ordering key start one at a time and in offset order.
//!
//! A pure data structure: the lane pushes records as it reads them and tells
//! it when a record finished; it answers which record may start. It never
//! looks at time, the network or the guest, so its rules are tested alone.

use std::collections::VecDeque;
use std::collections::hash_map::{Entry, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use crate::config::{DeliveryOrdering, NullKeys};

/// The ordering key of a record: records with the same `OrderKey` of one
/// partition never overlap and start in offset order.
///
/// Keys are compared by a 64-bit hash of their bytes. Two distinct keys
/// with the same hash share one order, which costs parallelism, never
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OrderKey {
    /// Ordered with every other record of its key.
    Serial(u64),
    /// Ordered with nothing (`none` order, or a null key with `unordered`).
    Free,
}

/// Maps a record key to its [`OrderKey`] under a connector's settings.
#[derive(Debug, Clone)]
pub(crate) struct KeyRule {
    ordering: DeliveryOrdering,
    null_keys: NullKeys,
    hasher: std::hash::RandomState,
}

impl KeyRule {
    pub(crate) fn new(ordering: DeliveryOrdering, null_keys: NullKeys) -> Self {
        Self {
            ordering,
            null_keys,
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The order a record with this key belongs to.
    pub(crate) fn order_key(&self, key: Option<&[u8]>) -> OrderKey {
        match (self.ordering, key) {
            // One order for the whole partition.
            (DeliveryOrdering::Partition, _) => OrderKey::Serial(0),
            (DeliveryOrdering::None, _) => OrderKey::Free,
            (DeliveryOrdering::Key, None) => match self.null_keys {
                NullKeys::Serial => OrderKey::Serial(self.hash(None)),
                NullKeys::Unordered => OrderKey::Free,
            },
            (DeliveryOrdering::Key, Some(bytes)) => OrderKey::Serial(self.hash(Some(bytes))),
        }
    }

    fn hash(&self, key: Option<&[u8]>) -> u64 {
        self.hasher.hash_one(key)
    }
}

/// Records waiting behind a busy key.
///
/// Invariant: a key is present in `busy` exactly while one of its records
/// has started and not finished; its queue holds the key's later records in
/// the order they were pushed (offset order, as the lane reads them).
#[derive(Debug)]
pub(crate) struct KeyQueues<T> {
    busy: HashMap<u64, VecDeque<T>, BuildHasherDefault<KeyHashHasher>>,
}

impl<T> Default for KeyQueues<T> {
    fn default() -> Self {
        Self {
            busy: HashMap::default(),
        }
    }
}

/// Hashes a [`OrderKey::Serial`] hash to itself: it is already a keyed
/// hash ([`KeyRule`]'s `RandomState`), so hashing it again would cost time
/// and add no protection against chosen keys.
#[derive(Debug, Default)]
pub(crate) struct KeyHashHasher(u64);

impl Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the map's keys are `u64`); anything else
        // still hashes, by folding its bytes in.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

impl<T> KeyQueues<T> {
    /// A record was read: returns it if it may start now (its key is idle,
    /// and becomes busy), or keeps it behind its key's running record.
    pub(crate) fn push(&mut self, key: OrderKey, record: T) -> Option<T> {
        let OrderKey::Serial(hash) = key else {
            return Some(record);
        };
        match self.busy.entry(hash) {
            Entry::Vacant(idle) => {
                idle.insert(VecDeque::new());
                Some(record)
            }
            Entry::Occupied(mut running) => {
                running.get_mut().push_back(record);
                None
            }
        }
    }

    /// A record of `key` finished: returns the key's next record, which may
    /// start now (the key stays busy), or makes the key idle.
    pub(crate) fn finish(&mut self, key: OrderKey) -> Option<T> {
        let OrderKey::Serial(hash) = key else {
            return None;
        };
        let Entry::Occupied(mut running) = self.busy.entry(hash) else {
            return None;
        };
        match running.get_mut().pop_front() {
            Some(next) => Some(next),
            None => {
                running.remove();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ordering: DeliveryOrdering, null_keys: NullKeys) -> KeyRule {
        KeyRule::new(ordering, null_keys)
    }

    #[test]
    fn partition_order_puts_every_record_in_one_key() {
        let rule = rule(DeliveryOrdering::Partition, NullKeys::Unordered);
        assert_eq!(rule.order_key(Some(b"a")), rule.order_key(Some(b"b")));
        assert_eq!(rule.order_key(None), rule.order_key(Some(b"b")));
    }

    #[test]
    fn key_order_separates_keys_and_follows_the_null_key_setting() {
        let serial = rule(DeliveryOrdering::Key, NullKeys::Serial);
        assert_ne!(serial.order_key(Some(b"a")), serial.order_key(Some(b"b")));
        assert_eq!(serial.order_key(Some(b"a")), serial.order_key(Some(b"a")));
        assert_eq!(serial.order_key(None), serial.order_key(None));
        assert_ne!(serial.order_key(None), serial.order_key(Some(b"")));
        let unordered = rule(DeliveryOrdering::Key, NullKeys::Unordered);
        assert_eq!(unordered.order_key(None), OrderKey::Free);
        assert_eq!(
            rule(DeliveryOrdering::None, NullKeys::Serial).order_key(Some(b"a")),
            OrderKey::Free
        );
    }

    #[test]
    fn one_record_per_key_runs_and_the_rest_follow_in_order() {
        let mut queues = KeyQueues::default();
        let (a, b) = (OrderKey::Serial(1), OrderKey::Serial(2));
        assert_eq!(queues.push(a, 0), Some(0));
        assert_eq!(queues.push(a, 1), None);
        assert_eq!(queues.push(b, 2), Some(2));
        assert_eq!(queues.push(a, 3), None);
        assert_eq!(queues.finish(b), None);
        assert_eq!(queues.push(b, 4), Some(4));
        assert_eq!(queues.finish(a), Some(1));
        assert_eq!(queues.finish(a), Some(3));
        assert_eq!(queues.finish(a), None);
        assert_eq!(queues.push(a, 5), Some(5));
    }

    #[test]
    fn free_records_always_start() {
        let mut queues = KeyQueues::default();
        assert_eq!(queues.push(OrderKey::Free, 0), Some(0));
        assert_eq!(queues.push(OrderKey::Free, 1), Some(1));
        assert_eq!(queues.finish(OrderKey::Free), None);
    }
}
