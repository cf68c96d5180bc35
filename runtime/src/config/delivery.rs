//! A connector's `delivery.*` keys: how many requests of a partition may be
//! in flight at once, and which records must keep their order.

use std::collections::BTreeMap;

use super::ConfigProblem;

/// Largest `delivery.max.in.flight` (one keep-alive connection each).
const MAX_IN_FLIGHT: usize = 1024;
/// Largest `delivery.max.in.flight.total`.
const MAX_IN_FLIGHT_TOTAL: usize = 65_536;
/// Largest `delivery.max.pending.records`.
const MAX_PENDING_RECORDS: usize = 100_000;
/// `delivery.max.in.flight` when the ordering is `key` or `none`.
const DEFAULT_IN_FLIGHT: usize = 64;
/// `delivery.max.in.flight.total`.
const DEFAULT_IN_FLIGHT_TOTAL: usize = 1024;
/// `delivery.max.pending.records` when the ordering is `key` or `none`.
const DEFAULT_PENDING_RECORDS: usize = 1024;

/// `delivery.ordering`: which records of a partition keep their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// One request per partition at a time, in offset order (the seed's semantics).
    #[default]
    Partition,
    /// At most one request per record key at a time; each key in offset order.
    Key,
    /// No order: any record may be sent while others are in flight.
    None,
}

/// `delivery.null.key`: how records without a key are ordered in `key` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NullKeys {
    /// All null-key records of a partition form one key, sent in offset order.
    #[default]
    Serial,
    /// Each null-key record is its own key: no order among them.
    Unordered,
}

/// `delivery.concurrency`: whether the connector's request limit adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// Up to `delivery.max.in.flight.total` requests, whatever the endpoint does.
    Fixed,
    /// Starts at one request and follows the endpoint: more while answers
    /// come back fast and healthy, fewer when most attempts of a window fail
    /// for endpoint-wide reasons or latency doubles. Never above the caps.
    Adaptive,
}

/// A connector's delivery settings.
///
/// Invariants (checked by [`read`]): `max_in_flight` is 1 in `partition`
/// order, `max_pending_records >= max_in_flight`, and every number is at
/// least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    /// `delivery.ordering`.
    pub ordering: Ordering,
    /// `delivery.max.in.flight`: requests per partition.
    pub max_in_flight: usize,
    /// `delivery.max.in.flight.total`: requests across the connector's partitions.
    pub max_in_flight_total: usize,
    /// `delivery.max.pending.records`: records read and not finished, per partition.
    pub max_pending_records: usize,
    /// `delivery.concurrency`.
    pub concurrency: Concurrency,
    /// `delivery.null.key`.
    pub null_keys: NullKeys,
}

impl Default for DeliverySettings {
    /// Partition order: one request per partition, one record read ahead.
    fn default() -> Self {
        Self {
            ordering: Ordering::Partition,
            max_in_flight: 1,
            max_in_flight_total: DEFAULT_IN_FLIGHT_TOTAL,
            max_pending_records: 1,
            concurrency: Concurrency::Fixed,
            null_keys: NullKeys::Serial,
        }
    }
}

/// Reads the `delivery.*` keys; returns the settings and the keys it read.
pub(super) fn read(
    connector: &str,
    properties: &BTreeMap<String, String>,
    problems: &mut Vec<ConfigProblem>,
) -> (DeliverySettings, Vec<String>) {
    let mut used = Vec::new();
    let mut problem =
        |key: &str, reason: String| problems.push(ConfigProblem::connector(connector, key, reason));
    let mut values: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in properties.range("delivery.".to_owned()..) {
        let Some(name) = key.strip_prefix("delivery.") else {
            break;
        };
        used.push(key.clone());
        let value = value.trim();
        match name {
            "ordering"
            | "max.in.flight"
            | "max.in.flight.total"
            | "max.pending.records"
            | "concurrency"
            | "null.key" => {
                if !value.is_empty() {
                    values.insert(name, value);
                }
            }
            _ => problem(
                key,
                "unknown key; the delivery keys are delivery.ordering, delivery.max.in.flight, \
                 delivery.max.in.flight.total, delivery.max.pending.records, \
                 delivery.concurrency and delivery.null.key"
                    .into(),
            ),
        }
    }

    let ordering = match values.get("ordering").map(|v| v.to_ascii_lowercase()) {
        None => Ordering::Partition,
        Some(v) if v == "partition" => Ordering::Partition,
        Some(v) if v == "key" => Ordering::Key,
        Some(v) if v == "none" => Ordering::None,
        Some(other) => {
            problem(
                "delivery.ordering",
                format!("\"{other}\" is not one of partition, key, none"),
            );
            Ordering::Partition
        }
    };
    let parallel = ordering != Ordering::Partition;
    let mut number = |name: &str, max: usize, default: usize| -> usize {
        let Some(text) = values.get(name) else {
            return default;
        };
        match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                problem(
                    &format!("delivery.{name}"),
                    format!("\"{text}\" is not a whole number from 1 to {max}"),
                );
                default
            }
        }
    };
    let max_in_flight = number(
        "max.in.flight",
        MAX_IN_FLIGHT,
        if parallel { DEFAULT_IN_FLIGHT } else { 1 },
    );
    let max_in_flight_total = number(
        "max.in.flight.total",
        MAX_IN_FLIGHT_TOTAL,
        DEFAULT_IN_FLIGHT_TOTAL,
    );
    let max_pending_records = number(
        "max.pending.records",
        MAX_PENDING_RECORDS,
        if parallel {
            DEFAULT_PENDING_RECORDS.max(max_in_flight)
        } else {
            1
        },
    );
    let concurrency = match values.get("concurrency").map(|v| v.to_ascii_lowercase()) {
        None if parallel => Concurrency::Adaptive,
        None => Concurrency::Fixed,
        Some(v) if v == "fixed" => Concurrency::Fixed,
        Some(v) if v == "adaptive" => Concurrency::Adaptive,
        Some(other) => {
            problem(
                "delivery.concurrency",
                format!("\"{other}\" is not one of fixed, adaptive"),
            );
            Concurrency::Fixed
        }
    };
    let null_keys = match values.get("null.key").map(|v| v.to_ascii_lowercase()) {
        None => NullKeys::Serial,
        Some(v) if v == "serial" => NullKeys::Serial,
        Some(v) if v == "unordered" => NullKeys::Unordered,
        Some(other) => {
            problem(
                "delivery.null.key",
                format!("\"{other}\" is not one of serial, unordered"),
            );
            NullKeys::Serial
        }
    };
    if !parallel && max_in_flight > 1 {
        problem(
            "delivery.max.in.flight",
            format!(
                "{max_in_flight} requests per partition need delivery.ordering = key or none; \
                 partition order sends one at a time"
            ),
        );
    } else if max_pending_records < max_in_flight {
        problem(
            "delivery.max.pending.records",
            format!(
                "{max_pending_records} is below delivery.max.in.flight ({max_in_flight}): \
                 the partition could never fill its requests"
            ),
        );
    }
    let settings = DeliverySettings {
        ordering,
        max_in_flight,
        max_in_flight_total,
        max_pending_records,
        concurrency,
        null_keys,
    };
    (settings, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_props(pairs: &[(&str, &str)]) -> (DeliverySettings, Vec<ConfigProblem>) {
        let properties = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut problems = Vec::new();
        let (settings, _) = read("c", &properties, &mut problems);
        (settings, problems)
    }

    #[test]
    fn partition_order_is_the_default_and_keeps_one_request_per_partition() {
        let (settings, problems) = read_props(&[]);
        assert!(problems.is_empty());
        assert_eq!(settings, DeliverySettings::default());
        assert_eq!(settings.max_in_flight, 1);
        assert_eq!(settings.max_pending_records, 1);
        assert_eq!(settings.concurrency, Concurrency::Fixed);
    }

    #[test]
    fn key_order_defaults_to_64_in_flight_and_adaptive_concurrency() {
        let (settings, problems) = read_props(&[("delivery.ordering", "KEY")]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(settings.ordering, Ordering::Key);
        assert_eq!(settings.max_in_flight, 64);
        assert_eq!(settings.max_in_flight_total, 1024);
        assert_eq!(settings.max_pending_records, 1024);
        assert_eq!(settings.concurrency, Concurrency::Adaptive);
        assert_eq!(settings.null_keys, NullKeys::Serial);
    }

    #[test]
    fn every_key_is_read() {
        let (settings, problems) = read_props(&[
            ("delivery.ordering", "none"),
            ("delivery.max.in.flight", "8"),
            ("delivery.max.in.flight.total", "20"),
            ("delivery.max.pending.records", "100"),
            ("delivery.concurrency", "fixed"),
            ("delivery.null.key", "unordered"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            settings,
            DeliverySettings {
                ordering: Ordering::None,
                max_in_flight: 8,
                max_in_flight_total: 20,
                max_pending_records: 100,
                concurrency: Concurrency::Fixed,
                null_keys: NullKeys::Unordered,
            }
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("delivery.ordering", "topic")],
                "delivery.ordering",
                "partition, key, none",
            ),
            (
                &[
                    ("delivery.ordering", "key"),
                    ("delivery.max.in.flight", "0"),
                ],
                "delivery.max.in.flight",
                "from 1 to 1024",
            ),
            (
                &[
                    ("delivery.ordering", "key"),
                    ("delivery.max.in.flight", "2000"),
                ],
                "delivery.max.in.flight",
                "from 1 to 1024",
            ),
            (
                &[("delivery.max.in.flight", "4")],
                "delivery.max.in.flight",
                "delivery.ordering = key or none",
            ),
            (
                &[
                    ("delivery.ordering", "key"),
                    ("delivery.max.pending.records", "10"),
                ],
                "delivery.max.pending.records",
                "below delivery.max.in.flight",
            ),
            (
                &[("delivery.max.in.flight.total", "-1")],
                "delivery.max.in.flight.total",
                "whole number",
            ),
            (
                &[("delivery.concurrency", "auto")],
                "delivery.concurrency",
                "fixed, adaptive",
            ),
            (
                &[("delivery.null.key", "random")],
                "delivery.null.key",
                "serial, unordered",
            ),
            (
                &[("delivery.max.inflight", "4")],
                "delivery.max.inflight",
                "unknown key",
            ),
        ];
        for (pairs, key, reason) in cases {
            let (_, problems) = read_props(pairs);
            assert_eq!(problems.len(), 1, "{pairs:?}: {problems:?}");
            let text = problems[0].to_string();
            assert!(
                text.contains(key) && text.contains(reason),
                "{pairs:?}: {text}"
            );
        }
    }
}
