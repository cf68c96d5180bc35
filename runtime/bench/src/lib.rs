//! Benchmark tools for wasmsink, driven by `scripts/bench.sh`.
//!
//! - `bench-load` fills topics with benchmark records, or produces them at a
//!   fixed rate with their produce time embedded (the latency run).
//! - `bench-receiver` is the HTTP callback: it answers `200 {"retry":false}`
//!   (or a configured share of `503 {"retry":true}`, or after a delay) and
//!   counts distinct records, duplicates and per-key order violations.
//!
//! This library holds what both sides must agree on: the record format
//! ([`record`]) and the receiver's bookkeeping ([`tracker`]).

pub mod record;
pub mod tracker;

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock microseconds since the Unix epoch: the unit of every
/// timestamp the tools exchange (the script compares them with
/// `$EPOCHREALTIME`).
pub fn now_us() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    since_epoch.as_micros().try_into().unwrap_or(u64::MAX)
}
