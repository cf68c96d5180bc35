//! Prometheus metrics: counters kept as atomics in the hot path (no lock,
//! no allocation per record) and rendered in the text exposition format
//! when `/metrics` is scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::supervisor::{ConnectorPhase, ConnectorStatus};

/// Upper bounds of the request latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Per-connector HTTP attempt counters.
#[derive(Debug, Default)]
pub struct AttemptStats {
    /// Attempts by status class: index 0 transport errors, 1..=5 for 1xx..5xx.
    pub by_class: [AtomicU64; 6],
    /// Cumulative-at-render histogram counts (one slot per bucket, plus +Inf).
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of latencies in microseconds.
    latency_sum_us: AtomicU64,
    /// Guest calls that trapped, ran out of time or memory, or failed otherwise.
    pub guest_failures: AtomicU64,
}

impl AttemptStats {
    /// Records one HTTP attempt: its status (`None` for a transport error)
    /// and how long it took.
    pub fn record(&self, status: Option<u16>, elapsed: Duration) {
        let class = status.map_or(0, |s| usize::from((s / 100).clamp(1, 5)));
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Gauges of a connector's delivery, summed over its partition lanes.
#[derive(Debug, Default)]
pub struct DeliveryGauges {
    /// HTTP requests in flight.
    pub in_flight: AtomicI64,
    /// Records waiting for their next attempt or for `request.delay.sec`:
    /// each parks its key.
    pub parked: AtomicI64,
    /// Records read and not finished.
    pub pending: AtomicI64,
    /// Offsets between the committed mark and the highest offset read.
    pub uncommitted: AtomicI64,
    /// The connector's current request limit (see `delivery.concurrency`).
    pub concurrency_limit: AtomicU64,
}

/// One count held in a gauge for as long as the value lives: taken back
/// when it is dropped, also when the future that holds it is (a lane
/// aborted mid-request), so a gauge never keeps a count for something
/// that ended.
#[must_use = "the count is taken back when this is dropped"]
pub(crate) struct Counted<'a>(&'a AtomicI64);

impl<'a> Counted<'a> {
    pub(crate) fn raise(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Guest calls per export and the time they took.
#[derive(Debug, Default)]
pub struct GuestCallStats {
    /// Calls: index 0 `transform`, 1 `decide`.
    calls: [AtomicU64; 2],
    /// Their total time in nanoseconds.
    nanos: [AtomicU64; 2],
}

/// Which guest export a call went to, for [`GuestCallStats`].
#[derive(Debug, Clone, Copy)]
pub enum GuestExport {
    /// `transform`.
    Transform = 0,
    /// `decide`.
    Decide = 1,
}

impl GuestCallStats {
    /// Records one call and how long it took.
    pub fn record(&self, export: GuestExport, elapsed: Duration) {
        self.calls[export as usize].fetch_add(1, Ordering::Relaxed);
        self.nanos[export as usize].fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Consumer lag per partition (high watermark minus committed offset), as
/// librdkafka's statistics report it every few seconds.
#[derive(Debug, Default)]
pub struct ConsumerLag {
    partitions: std::sync::Mutex<std::collections::BTreeMap<(String, i32), i64>>,
}

impl ConsumerLag {
    /// Replaces the table with the lag of every assigned partition in `statistics`.
    pub fn update(&self, statistics: &rdkafka::Statistics) {
        let mut table = std::collections::BTreeMap::new();
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    table.insert((topic.clone(), *partition), p.consumer_lag);
                }
            }
        }
        *self.partitions.lock().expect("lag lock") = table;
    }

    /// (topic, partition, lag) rows.
    pub fn rows(&self) -> Vec<(String, i32, i64)> {
        self.partitions
            .lock()
            .expect("lag lock")
            .iter()
            .map(|((t, p), lag)| (t.clone(), *p, *lag))
            .collect()
    }
}

/// A counter's name, help and how to read it.
type Counter = (&'static str, &'static str, fn(&ConnectorStatus) -> u64);

const STATES: [&str; 4] = ["RUNNING", "PAUSED", "STOPPED", "FAILED"];

/// One connector's figures for a scrape.
pub struct ConnectorMetrics<'a> {
    /// Status (config, phase and counters).
    pub status: &'a ConnectorStatus,
    /// Attempt counters of the live instance, if any.
    pub attempts: Option<&'a AttemptStats>,
    /// Guest call counters of the live instance, if any.
    pub guest_calls: Option<&'a GuestCallStats>,
    /// Consumer lag of the live instance, if any.
    pub lag: Option<&'a ConsumerLag>,
    /// Delivery gauges of the live instance, if any.
    pub delivery: Option<&'a DeliveryGauges>,
}

/// A delivery gauge's name, help and how to read it.
type Gauge = (&'static str, &'static str, fn(&DeliveryGauges) -> i64);

fn render_delivery(out: &mut String, connectors: &[ConnectorMetrics<'_>]) {
    let gauges: [Gauge; 5] = [
        ("delivery_in_flight", "HTTP requests in flight.", |g| {
            g.in_flight.load(Ordering::Relaxed)
        }),
        (
            "delivery_parked_keys",
            "Records (each holding its key) waiting for a retry or request.delay.sec.",
            |g| g.parked.load(Ordering::Relaxed),
        ),
        (
            "delivery_pending_records",
            "Records read and not finished.",
            |g| g.pending.load(Ordering::Relaxed),
        ),
        (
            "delivery_uncommitted_offsets",
            "Offsets between the committed mark and the highest offset read, summed over partitions.",
            |g| g.uncommitted.load(Ordering::Relaxed),
        ),
        (
            "delivery_concurrency_limit",
            "Requests the connector may have in flight now (delivery.concurrency).",
            |g| i64::try_from(g.concurrency_limit.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        ),
    ];
    for (name, help, read) in gauges {
        let _ = writeln!(out, "# HELP wasmsink_{name} {help}");
        let _ = writeln!(out, "# TYPE wasmsink_{name} gauge");
        for c in connectors {
            let Some(delivery) = c.delivery else { continue };
            let _ = writeln!(
                out,
                "wasmsink_{name}{{connector=\"{}\"}} {}",
                escape(&c.status.config.name),
                read(delivery)
            );
        }
    }
}

/// Renders every connector's metrics in the Prometheus text format.
pub fn render(connectors: &[ConnectorMetrics<'_>]) -> String {
    let mut out = String::new();
    let counters: [Counter; 6] = [
        ("records_consumed", "Records read from Kafka.", |s| {
            s.stats.consumed
        }),
        ("records_delivered", "Records the callback accepted.", |s| {
            s.stats.delivered
        }),
        ("records_retried", "Attempts followed by a retry.", |s| {
            s.stats.retried
        }),
        (
            "records_dropped",
            "Records given up without a dead-letter topic.",
            |s| s.stats.dropped,
        ),
        (
            "records_dead_lettered",
            "Records produced to the dead-letter topic.",
            |s| s.stats.dead_lettered,
        ),
        (
            "records_skipped",
            "Records finished without a request.",
            |s| s.stats.skipped,
        ),
    ];
    for (name, help, read) in counters {
        let _ = writeln!(
            out,
            "# HELP wasmsink_{name}_total {help} Reset when the connector restarts."
        );
        let _ = writeln!(out, "# TYPE wasmsink_{name}_total counter");
        for c in connectors {
            let _ = writeln!(
                out,
                "wasmsink_{name}_total{{connector=\"{}\"}} {}",
                escape(&c.status.config.name),
                read(c.status)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP wasmsink_http_responses_total HTTP attempts by status class (\"error\" is a transport error)."
    );
    let _ = writeln!(out, "# TYPE wasmsink_http_responses_total counter");
    for c in connectors {
        let Some(attempts) = c.attempts else { continue };
        for (index, class) in ["error", "1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "wasmsink_http_responses_total{{connector=\"{}\",class=\"{class}\"}} {}",
                escape(&c.status.config.name),
                attempts.by_class[index].load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP wasmsink_http_request_duration_seconds Time of one HTTP attempt."
    );
    let _ = writeln!(
        out,
        "# TYPE wasmsink_http_request_duration_seconds histogram"
    );
    for c in connectors {
        let Some(attempts) = c.attempts else { continue };
        let name = escape(&c.status.config.name);
        let mut cumulative = 0;
        for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += attempts.latency[index].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "wasmsink_http_request_duration_seconds_bucket{{connector=\"{name}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += attempts.latency[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "wasmsink_http_request_duration_seconds_bucket{{connector=\"{name}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = attempts.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "wasmsink_http_request_duration_seconds_sum{{connector=\"{name}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "wasmsink_http_request_duration_seconds_count{{connector=\"{name}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP wasmsink_guest_failures_total Guest calls that trapped, hit their deadline or failed."
    );
    let _ = writeln!(out, "# TYPE wasmsink_guest_failures_total counter");
    for c in connectors {
        let Some(attempts) = c.attempts else { continue };
        let _ = writeln!(
            out,
            "wasmsink_guest_failures_total{{connector=\"{}\"}} {}",
            escape(&c.status.config.name),
            attempts.guest_failures.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP wasmsink_guest_calls_total Guest calls by export."
    );
    let _ = writeln!(out, "# TYPE wasmsink_guest_calls_total counter");
    let _ = writeln!(
        out,
        "# HELP wasmsink_guest_call_seconds_total Time spent in guest calls, by export."
    );
    let _ = writeln!(out, "# TYPE wasmsink_guest_call_seconds_total counter");
    for c in connectors {
        let Some(guest) = c.guest_calls else { continue };
        let name = escape(&c.status.config.name);
        for (index, export) in ["transform", "decide"].iter().enumerate() {
            let calls = guest.calls[index].load(Ordering::Relaxed);
            let seconds = guest.nanos[index].load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "wasmsink_guest_calls_total{{connector=\"{name}\",export=\"{export}\"}} {calls}"
            );
            let _ = writeln!(
                out,
                "wasmsink_guest_call_seconds_total{{connector=\"{name}\",export=\"{export}\"}} {seconds}"
            );
        }
    }
    render_delivery(&mut out, connectors);
    let _ = writeln!(
        out,
        "# HELP wasmsink_consumer_lag Records behind the partition's end (high watermark minus committed offset)."
    );
    let _ = writeln!(out, "# TYPE wasmsink_consumer_lag gauge");
    for c in connectors {
        let Some(lag) = c.lag else { continue };
        let name = escape(&c.status.config.name);
        for (topic, partition, records) in lag.rows() {
            let _ = writeln!(
                out,
                "wasmsink_consumer_lag{{connector=\"{name}\",topic=\"{}\",partition=\"{partition}\"}} {records}",
                escape(&topic)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP wasmsink_connector_state 1 for the connector's current state."
    );
    let _ = writeln!(out, "# TYPE wasmsink_connector_state gauge");
    for c in connectors {
        let current = c.status.phase.name();
        for state in STATES {
            let _ = writeln!(
                out,
                "wasmsink_connector_state{{connector=\"{}\",state=\"{state}\"}} {}",
                escape(&c.status.config.name),
                u8::from(state == current)
            );
        }
    }
    let failed = connectors
        .iter()
        .filter(|c| matches!(c.status.phase, ConnectorPhase::Failed { .. }))
        .count();
    let _ = writeln!(
        out,
        "# HELP wasmsink_connectors Connectors known to this process."
    );
    let _ = writeln!(out, "# TYPE wasmsink_connectors gauge");
    let _ = writeln!(out, "wasmsink_connectors {}", connectors.len());
    let _ = writeln!(
        out,
        "# HELP wasmsink_connectors_failed Connectors in the FAILED state."
    );
    let _ = writeln!(out, "# TYPE wasmsink_connectors_failed gauge");
    let _ = writeln!(out, "wasmsink_connectors_failed {failed}");
    out
}

/// Appends the messengers' send counters.
pub fn render_messengers(out: &mut String, counts: &[crate::messenger::SendCounts]) {
    let _ = writeln!(
        out,
        "# HELP wasmsink_messenger_sends_total Messages sent through a Kafka messenger, by outcome (dead letters included)."
    );
    let _ = writeln!(out, "# TYPE wasmsink_messenger_sends_total counter");
    for count in counts {
        for (outcome, value) in [("sent", count.sent), ("failed", count.failed)] {
            let _ = writeln!(
                out,
                "wasmsink_messenger_sends_total{{messenger=\"{}\",outcome=\"{outcome}\"}} {value}",
                escape(&count.name)
            );
        }
    }
}

/// Escapes a label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_fall_in_the_right_buckets() {
        let stats = AttemptStats::default();
        stats.record(Some(200), Duration::from_millis(3));
        stats.record(Some(503), Duration::from_secs(20));
        stats.record(None, Duration::from_millis(1));
        assert_eq!(stats.by_class[2].load(Ordering::Relaxed), 1);
        assert_eq!(stats.by_class[5].load(Ordering::Relaxed), 1);
        assert_eq!(stats.by_class[0].load(Ordering::Relaxed), 1);
        assert_eq!(stats.latency[0].load(Ordering::Relaxed), 1);
        assert_eq!(stats.latency[2].load(Ordering::Relaxed), 1);
        assert_eq!(
            stats.latency[LATENCY_BUCKETS.len()].load(Ordering::Relaxed),
            1
        );
    }
}
