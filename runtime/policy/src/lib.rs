//! The seed connector's delivery strategies as plain Rust.
//!
//! This crate has no dependencies. The host uses it to validate the
//! configuration, and the built-in WebAssembly guest uses it to decide what
//! happens after each attempt to deliver a record.
//!
//! - [`retry_flag`]: reads the `retry` indicator from a response body exactly
//!   as the reference connector does (lenient Gson 2.8.9 parsing and
//!   `getAsBoolean`).
//! - [`backoff`]: back-off schedules such as `5,30,60,300,600` seconds.
//! - [`strategy`]: the four `exception.strategy` values, the configuration
//!   keys and [`decide`], which maps one attempt's outcome to accept,
//!   retry, drop or stop.
//!
//! ```
//! use wasmsink_policy::{Decision, Outcome, StrategyConfig, decide};
//!
//! let config = StrategyConfig::default();
//! let failed = Outcome::Response { status: 500, body: br#"{"retry":true}"# };
//! assert_eq!(decide(&config, &failed, 1), Decision::RetryAfterMs(5_000));
//! let done = Outcome::Response { status: 500, body: br#"{"retry":false}"# };
//! assert_eq!(decide(&config, &done, 2), Decision::Accept);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backoff;
pub mod retry_flag;
pub mod strategy;

pub use backoff::{BackoffError, BackoffSchedule};
pub use retry_flag::{RetryFlag, parse_retry_flag};
pub use strategy::{
    ConfigError, Decision, ExceptionStrategy, KEY_EXCEPTION_STRATEGY, KEY_RETRY_BACKOFF,
    KEY_STOP_BACKOFF, KEY_SUCCESS_ON_2XX, Outcome, STOP_STATUSES, StrategyConfig, UnknownStrategy,
    decide,
};
