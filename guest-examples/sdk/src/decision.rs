//! What `decide` returns.

use std::time::Duration;

/// What an attempt means and what to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The record is finished (delivered); its offset may be committed.
    Accept,
    /// Try the same record again after this long (rounded down to whole
    /// milliseconds). Only this record is re-sent.
    RetryAfter(Duration),
    /// Give up on the record: it is finished, logged and counted as dropped
    /// (and produced to the dead-letter topic if the connector has one).
    Drop(String),
    /// Give up on the record and produce it to the connector's dead-letter
    /// topic with this reason; without one it is dropped.
    DeadLetter(String),
    /// Stop the connector with this reason. The record is not committed: it
    /// is tried again after a restart.
    Stop(String),
}

impl Decision {
    /// The delay in whole milliseconds, saturating, as the host receives it.
    pub(crate) fn millis(delay: Duration) -> u64 {
        u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_saturate_to_whole_milliseconds() {
        assert_eq!(Decision::millis(Duration::from_micros(1_999)), 1);
        assert_eq!(Decision::millis(Duration::MAX), u64::MAX);
    }
}
