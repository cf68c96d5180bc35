//! The delivery strategies: configuration and the per-attempt decision.
//!
//! [`decide`] turns the outcome of one attempt to deliver one record into
//! what to do next. It follows the reference connector's classification
//! (the retry flag wins over the status code; the "API down" statuses and
//! transport errors retry on their own schedule and then stop whatever the
//! configured strategy says) with the project's decisions: counters are per
//! record, waits are the nominal ones, and an optional switch accepts 2xx
//! responses that carry no flag.

use std::fmt;
use std::str::FromStr;

use crate::backoff::BackoffSchedule;
use crate::retry_flag::{RetryFlag, parse_retry_flag};

/// Config key of the strategy for failed deliveries.
pub const KEY_EXCEPTION_STRATEGY: &str = "exception.strategy";
/// Config key of the back-off list used by the configured strategy.
pub const KEY_RETRY_BACKOFF: &str = "retry.backoff.sec";
/// Config key of the back-off list used before stopping on an "API down"
/// status or a transport error.
pub const KEY_STOP_BACKOFF: &str = "request.retry.backoff.sec";
/// Config key of the switch that accepts 2xx responses without a flag.
pub const KEY_SUCCESS_ON_2XX: &str = "callback.success.on.2xx";

/// Statuses that, without a retry flag, retry on the schedule and then stop
/// the connector whatever the strategy.
pub const STOP_STATUSES: [u16; 7] = [502, 503, 504, 401, 403, 405, 406];

/// What to do with a record whose delivery failed (`exception.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExceptionStrategy {
    /// Retry on the back-off schedule, then drop the record and go on.
    #[default]
    ProgressBackOffDropMessage,
    /// Retry on the back-off schedule, then stop the connector.
    ProgressBackOffStopTask,
    /// Drop the record at once and go on.
    DropMessage,
    /// Stop the connector at once.
    StopTask,
}

impl ExceptionStrategy {
    /// Every strategy, in the reference's documentation order.
    pub const ALL: [Self; 4] = [
        ExceptionStrategy::ProgressBackOffDropMessage,
        ExceptionStrategy::ProgressBackOffStopTask,
        ExceptionStrategy::DropMessage,
        ExceptionStrategy::StopTask,
    ];

    /// The canonical configuration spelling, e.g.
    /// `PROGRESS_BACK_OFF_DROP_MESSAGE`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            ExceptionStrategy::ProgressBackOffDropMessage => "PROGRESS_BACK_OFF_DROP_MESSAGE",
            ExceptionStrategy::ProgressBackOffStopTask => "PROGRESS_BACK_OFF_STOP_TASK",
            ExceptionStrategy::DropMessage => "DROP_MESSAGE",
            ExceptionStrategy::StopTask => "STOP_TASK",
        }
    }
}

impl fmt::Display for ExceptionStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExceptionStrategy {
    type Err = UnknownStrategy;

    /// Trims the text and compares it ignoring ASCII case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim();
        Self::ALL
            .into_iter()
            .find(|strategy| strategy.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownStrategy {
                value: text.to_owned(),
            })
    }
}

/// A value that names no [`ExceptionStrategy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStrategy {
    /// The rejected value, as given.
    pub value: String,
}

impl fmt::Display for UnknownStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown strategy {:?}; valid values are ", self.value)?;
        for (index, strategy) in ExceptionStrategy::ALL.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            f.write_str(strategy.as_str())?;
        }
        f.write_str(" (case-insensitive)")
    }
}

impl std::error::Error for UnknownStrategy {}

/// The delivery settings [`decide`] needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StrategyConfig {
    /// What to do when a delivery fails (`exception.strategy`).
    pub strategy: ExceptionStrategy,
    /// Waits of the progressive strategies (`retry.backoff.sec`).
    pub backoff: BackoffSchedule,
    /// Schedule for the stop class (`STOP_STATUSES` without a flag, transport errors); None = use `backoff`.
    pub stop_backoff: Option<BackoffSchedule>,
    /// Accept a 2xx response that carries no retry flag
    /// (`callback.success.on.2xx`; the reference treats it as a failure).
    pub success_on_2xx: bool,
}

/// One invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key whose value is invalid.
    pub key: &'static str,
    /// Why, in words for the operator.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl StrategyConfig {
    /// Reads the four keys above from (key, value) pairs, ignoring every other key; reports every problem at once.
    ///
    /// Keys match exactly. A missing key keeps its default (a missing
    /// `request.retry.backoff.sec` leaves `stop_backoff` at `None`). When a
    /// key occurs more than once, the last occurrence is the one read.
    ///
    /// # Errors
    ///
    /// One [`ConfigError`] per invalid value, in the order of the keys
    /// above.
    pub fn from_pairs<'a, I: IntoIterator<Item = (&'a str, &'a str)>>(
        pairs: I,
    ) -> Result<Self, Vec<ConfigError>> {
        let raw = RawValues::collect(pairs);
        let mut config = StrategyConfig::default();
        let mut errors = Vec::new();
        if let Some(value) = raw.strategy {
            record(
                &mut errors,
                KEY_EXCEPTION_STRATEGY,
                value.parse(),
                |strategy| {
                    config.strategy = strategy;
                },
            );
        }
        if let Some(value) = raw.backoff {
            record(
                &mut errors,
                KEY_RETRY_BACKOFF,
                BackoffSchedule::parse(value),
                |schedule| {
                    config.backoff = schedule;
                },
            );
        }
        if let Some(value) = raw.stop_backoff {
            record(
                &mut errors,
                KEY_STOP_BACKOFF,
                BackoffSchedule::parse(value),
                |schedule| {
                    config.stop_backoff = Some(schedule);
                },
            );
        }
        if let Some(value) = raw.success_on_2xx {
            record(&mut errors, KEY_SUCCESS_ON_2XX, parse_bool(value), |flag| {
                config.success_on_2xx = flag;
            });
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// The same keys back as (key, value) pairs, canonical spelling (to hand to the guest's init).
    ///
    /// `request.retry.backoff.sec` is left out when `stop_backoff` is
    /// `None`, so that [`StrategyConfig::from_pairs`] reads back an equal
    /// configuration.
    #[must_use]
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            (KEY_EXCEPTION_STRATEGY, self.strategy.as_str().to_owned()),
            (KEY_RETRY_BACKOFF, self.backoff.to_string()),
        ];
        if let Some(stop_backoff) = &self.stop_backoff {
            pairs.push((KEY_STOP_BACKOFF, stop_backoff.to_string()));
        }
        pairs.push((KEY_SUCCESS_ON_2XX, self.success_on_2xx.to_string()));
        pairs
    }

    /// The schedule of the stop class.
    fn stop_schedule(&self) -> &BackoffSchedule {
        self.stop_backoff.as_ref().unwrap_or(&self.backoff)
    }
}

/// The last value given for each key [`StrategyConfig`] reads.
#[derive(Default)]
struct RawValues<'a> {
    strategy: Option<&'a str>,
    backoff: Option<&'a str>,
    stop_backoff: Option<&'a str>,
    success_on_2xx: Option<&'a str>,
}

impl<'a> RawValues<'a> {
    fn collect<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> Self {
        let mut raw = RawValues::default();
        for (key, value) in pairs {
            let slot = match key {
                KEY_EXCEPTION_STRATEGY => &mut raw.strategy,
                KEY_RETRY_BACKOFF => &mut raw.backoff,
                KEY_STOP_BACKOFF => &mut raw.stop_backoff,
                KEY_SUCCESS_ON_2XX => &mut raw.success_on_2xx,
                _ => continue,
            };
            *slot = Some(value);
        }
        raw
    }
}

/// Applies a parsed value, or records why it failed under `key`.
fn record<T, E: fmt::Display>(
    errors: &mut Vec<ConfigError>,
    key: &'static str,
    parsed: Result<T, E>,
    apply: impl FnOnce(T),
) {
    match parsed {
        Ok(value) => apply(value),
        Err(error) => errors.push(ConfigError {
            key,
            reason: error.to_string(),
        }),
    }
}

/// `true` or `false`, trimmed, ignoring ASCII case.
fn parse_bool(text: &str) -> Result<bool, String> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if trimmed.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(format!(
            "{text:?} is not a boolean (expected true or false)"
        ))
    }
}

/// How one attempt to deliver a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The endpoint answered.
    Response {
        /// HTTP status code.
        status: u16,
        /// Response body (only its retry flag is read).
        body: &'a [u8],
    },
    /// No usable response: connection refused, DNS, TLS, timeout, reset…
    Transport {
        /// What went wrong, for the operator.
        description: &'a str,
    },
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The record is delivered: commit it and go on.
    Accept,
    /// Try the same record again after this many milliseconds.
    RetryAfterMs(u64),
    /// Give up on the record, commit it and go on; the reason is one line.
    Drop(String),
    /// Stop the connector without committing the record; the reason is one
    /// line.
    Stop(String),
}

/// `attempt` is 1-based and counts attempts of this one record.
///
/// - A response whose body carries `retry: false` is accepted whatever its
///   status; `retry: true` takes the configured strategy's path.
/// - Without a flag: a 2xx is accepted if `success_on_2xx`; a status in
///   [`STOP_STATUSES`] takes the stop path; any other status takes the
///   strategy's path.
/// - A transport error takes the stop path.
///
/// The progressive strategies retry after `backoff.wait_before_retry(attempt)`
/// and give up (drop or stop) when it is exhausted; `DROP_MESSAGE` and
/// `STOP_TASK` give up at once. The stop path retries on `stop_backoff`
/// (or `backoff`) and then stops, whatever the strategy. An `attempt` of 0
/// is taken as 1.
#[must_use]
pub fn decide(config: &StrategyConfig, outcome: &Outcome<'_>, attempt: u32) -> Decision {
    let attempt = attempt.max(1);
    match *outcome {
        Outcome::Response { status, body } => {
            decide_response(config, status, parse_retry_flag(body), attempt)
        }
        Outcome::Transport { description } => stop_path(
            config,
            attempt,
            &format!("transport error: {}", one_line(description)),
            None,
        ),
    }
}

fn decide_response(
    config: &StrategyConfig,
    status: u16,
    flag: RetryFlag,
    attempt: u32,
) -> Decision {
    match flag {
        RetryFlag::NoRetry => Decision::Accept,
        RetryFlag::Retry => {
            strategy_path(config, attempt, &format!("HTTP {status} with retry=true"))
        }
        RetryFlag::Absent if config.success_on_2xx && (200..300).contains(&status) => {
            Decision::Accept
        }
        RetryFlag::Absent => {
            let what = format!("HTTP {status} without a retry flag");
            if STOP_STATUSES.contains(&status) {
                let why = format!(
                    "status {status} stops the connector whatever {KEY_EXCEPTION_STRATEGY} says"
                );
                stop_path(config, attempt, &what, Some(&why))
            } else {
                strategy_path(config, attempt, &what)
            }
        }
    }
}

/// The configured strategy, for a failure described by `what`.
fn strategy_path(config: &StrategyConfig, attempt: u32, what: &str) -> Decision {
    let strategy = config.strategy;
    let progressive = matches!(
        strategy,
        ExceptionStrategy::ProgressBackOffDropMessage | ExceptionStrategy::ProgressBackOffStopTask
    );
    if progressive && let Some(wait) = config.backoff.wait_before_retry(attempt) {
        return Decision::RetryAfterMs(wait);
    }
    let attempts = attempts(attempt);
    match strategy {
        ExceptionStrategy::ProgressBackOffDropMessage => {
            Decision::Drop(format!("{what}; gave up after {attempts} ({strategy})"))
        }
        ExceptionStrategy::DropMessage => {
            Decision::Drop(format!("{what}; dropped after {attempts} ({strategy})"))
        }
        ExceptionStrategy::ProgressBackOffStopTask | ExceptionStrategy::StopTask => {
            Decision::Stop(format!("{what}; stopped after {attempts} ({strategy})"))
        }
    }
}

/// Retry on the stop schedule, then stop, whatever the strategy.
fn stop_path(config: &StrategyConfig, attempt: u32, what: &str, why: Option<&str>) -> Decision {
    if let Some(wait) = config.stop_schedule().wait_before_retry(attempt) {
        return Decision::RetryAfterMs(wait);
    }
    let attempts = attempts(attempt);
    Decision::Stop(match why {
        Some(why) => format!("{what}; stopped after {attempts} ({why})"),
        None => format!("{what}; stopped after {attempts}"),
    })
}

fn attempts(count: u32) -> String {
    if count == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{count} attempts")
    }
}

/// Keeps a reason on one line: control characters become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
