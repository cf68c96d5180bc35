//! Write [wasmsink](https://example.invalid/wasmsink) guests in Rust.
//!
//! A guest is a WebAssembly component that wasmsink loads for a connector
//! (`guest.path`). For every Kafka record the host calls the guest's
//! **transform** to turn the record into an HTTP request, and after every
//! delivery attempt its **decide** to say what the attempt means. This crate
//! wraps the contract (`wit/plugin.wit`, package `wasmsink:plugin@0.1.0`) in
//! plain Rust types, so a guest is a type with two or three methods and one
//! macro call.
//!
//! # A guest in twenty lines
//!
//! ```
//! use wasmsink_guest::prelude::*;
//!
//! /// Sends each order to `/orders/{id}` as `{"order": <value>, "offset": N}`.
//! struct Orders {
//!     prefix: String,
//! }
//!
//! impl Guest for Orders {
//!     fn init(config: &Config) -> Result<Self> {
//!         config.check_keys(&["prefix"])?;
//!         Ok(Orders { prefix: config.get_or("prefix", "/orders").to_string() })
//!     }
//! }
//!
//! impl Transform for Orders {
//!     fn transform(&mut self, record: Record) -> Result<Action> {
//!         let order: Value = record.value_json()?;
//!         let Some(id) = order["id"].as_u64() else {
//!             return Ok(Action::Skip);
//!         };
//!         let body = json!({"order": order, "offset": record.offset()});
//!         Ok(Request::deliver().path(format!("{}/{id}", self.prefix)).json(&body)?.into())
//!     }
//! }
//!
//! export_transform!(Orders);
//! # fn main() {}
//! ```
//!
//! Build it as a `cdylib` with `cargo build --release --target wasm32-wasip2`.
//!
//! # What to implement
//!
//! * [`Guest`]: `init`, called once per instance with the connector's
//!   `guest.config.*` properties ([`Config`]); it builds the guest value that
//!   later calls get as `&mut self`.
//! * [`Transform`]: `transform`, once per record (not per attempt): return
//!   [`Action::Deliver`] with a [`Request`], [`Action::Skip`], or an
//!   [`Error`].
//! * [`Decide`]: `decide`, after every attempt, 2xx included, with the
//!   [`Attempt`] (number, elapsed time, [`Outcome`]); return a [`Decision`].
//!
//! Then export with one macro: [`export_transform!`] (the component is a
//! `transform-plugin`; the built-in retry policy decides), [`export_decide!`]
//! (a `retry-plugin`; the built-in transform sends the value unchanged) or
//! [`export_guest!`] (a `connector-plugin`, both).
//!
//! # Instances and state
//!
//! The host keeps one instance per Kafka partition it delivers, calls one
//! export at a time, and may rebuild an instance at any record boundary
//! (after a trap, a rebalance). Fields of the guest value are therefore a
//! cache, never a contract. Calls for different records may interleave
//! when the connector sets `delivery.ordering = key` or `none`: a `decide`
//! for one record may come between the `transform` and `decide` calls of
//! another. Only records of one key (with `key`) keep their sequence, so
//! keep per-record state by the attempt's record reference. A panic traps the instance: the host logs it
//! (the panic message goes to the host's log through stderr) and rebuilds
//! the instance.
//!
//! # Testing a guest natively
//!
//! Every SDK type can be built in plain Rust ([`Record::new`],
//! [`Attempt::new_response`], [`Config::from_pairs`]), and logging falls back to
//! stderr off WebAssembly, so a guest's logic can be unit-tested with
//! `cargo test` on the host. `wasmsink guest run FILE --record '...'` runs
//! the built component the way the host does.

#![warn(missing_docs)]

mod attempt;
#[doc(hidden)]
pub mod bindings;
mod config;
mod decision;
mod error;
#[doc(hidden)]
pub mod glue;
pub mod json;
pub mod log;
mod record;
mod request;

pub use attempt::{
    Attempt, Outcome, RecordRef, Response, TransportError, TransportErrorKind, parse_retry_after,
};
pub use config::Config;
pub use decision::Decision;
pub use error::{Error, ErrorKind, Result};
pub use record::{Record, Timestamp, TimestampKind};
pub use request::{Action, Method, Request, percent_encode};
pub use serde_json;

/// Everything a guest usually needs: `use wasmsink_guest::prelude::*;`.
pub mod prelude {
    pub use crate::json::{Value, json};
    pub use crate::{
        Action, Attempt, Config, Decide, Decision, Error, ErrorKind, Guest, Method, Outcome,
        Record, Request, Result, Transform, export_decide, export_guest, export_transform,
    };
    pub use std::time::Duration;
}

/// A guest: the value `init` builds from the configuration.
///
/// For a guest without configuration, `init` is `Ok(Self)` (after
/// `config.check_keys(&[])?` to refuse stray keys).
pub trait Guest: Sized + 'static {
    /// Builds the guest from its configuration. An error rejects the
    /// connector with the error's message; it is called once per instance.
    fn init(config: &Config) -> Result<Self>;
}

/// A guest that turns records into requests (the `transformer` export).
pub trait Transform: Guest {
    /// Called once per record as it starts delivery, in offset order within
    /// its partition (`partition` ordering) or its key (`key`). An
    /// [`ErrorKind::InvalidRecord`] error applies the connector's policy for
    /// unusable records; an [`ErrorKind::Fatal`] error stops the connector
    /// without committing the record.
    fn transform(&mut self, record: Record) -> Result<Action>;
}

/// A guest that decides what each delivery attempt means (the
/// `retry-policy` export).
pub trait Decide: Guest {
    /// Called after every attempt of a record, successful or not.
    fn decide(&mut self, attempt: Attempt) -> Decision;
}

/// A pseudo-random `u64` for jitter, seeded from the host's random source
/// (`wasi:random`) once per instance. Not for cryptography.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    // Each RandomState gets fresh keys (the per-thread seed plus a counter).
    RandomState::new().hash_one(0u8)
}

/// Exports a [`Transform`] guest: the component exports `lifecycle` and
/// `transformer` (world `transform-plugin`); the host's built-in retry
/// policy decides.
///
/// Use it once per crate, at the top level: `export_transform!(MyGuest);`.
#[macro_export]
macro_rules! export_transform {
    ($ty:ty) => {
        const _: () = {
            $crate::__export_state!($ty);
            $crate::__export_lifecycle!($ty);
            $crate::__export_transformer!($ty);
        };
    };
}

/// Exports a [`Decide`] guest: the component exports `lifecycle` and
/// `retry-policy` (world `retry-plugin`); the host's built-in transform
/// sends each record's value unchanged.
///
/// Use it once per crate, at the top level: `export_decide!(MyGuest);`.
#[macro_export]
macro_rules! export_decide {
    ($ty:ty) => {
        const _: () = {
            $crate::__export_state!($ty);
            $crate::__export_lifecycle!($ty);
            $crate::__export_retry_policy!($ty);
        };
    };
}

/// Exports a guest that implements both [`Transform`] and [`Decide`]: the
/// component exports `lifecycle`, `transformer` and `retry-policy` (world
/// `connector-plugin`). Both share one guest value per instance.
///
/// Use it once per crate, at the top level: `export_guest!(MyGuest);`.
#[macro_export]
macro_rules! export_guest {
    ($ty:ty) => {
        const _: () = {
            $crate::__export_state!($ty);
            $crate::__export_lifecycle!($ty);
            $crate::__export_transformer!($ty);
            $crate::__export_retry_policy!($ty);
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_state {
    ($ty:ty) => {
        ::std::thread_local! {
            static STATE: ::std::cell::RefCell<::core::option::Option<$ty>> =
                const { ::std::cell::RefCell::new(::core::option::Option::None) };
        }
        struct Exports;
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_lifecycle {
    ($ty:ty) => {
        impl $crate::bindings::lifecycle::exports::wasmsink::plugin::lifecycle::Guest for Exports {
            fn init(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::glue::init::<$ty>(&STATE, config)
            }
        }
        $crate::bindings::lifecycle::export_lifecycle!(Exports with_types_in $crate::bindings::lifecycle);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_transformer {
    ($ty:ty) => {
        impl $crate::bindings::transformer::exports::wasmsink::plugin::transformer::Guest
            for Exports
        {
            fn transform(
                rec: $crate::bindings::transformer::wasmsink::plugin::types::KafkaRecord,
            ) -> $crate::bindings::transformer::wasmsink::plugin::types::TransformOutcome {
                $crate::glue::transform::<$ty>(&STATE, rec)
            }
        }
        $crate::bindings::transformer::export_transformer!(Exports with_types_in $crate::bindings::transformer);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_retry_policy {
    ($ty:ty) => {
        impl $crate::bindings::retry::exports::wasmsink::plugin::retry_policy::Guest for Exports {
            fn decide(
                rec: $crate::bindings::transformer::wasmsink::plugin::types::RecordRef,
                outcome: $crate::bindings::transformer::wasmsink::plugin::types::AttemptOutcome,
                info: $crate::bindings::transformer::wasmsink::plugin::types::AttemptInfo,
            ) -> $crate::bindings::transformer::wasmsink::plugin::types::RetryDecision {
                $crate::glue::decide::<$ty>(&STATE, rec, outcome, info)
            }
        }
        $crate::bindings::retry::export_retry_policy!(Exports with_types_in $crate::bindings::retry);
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_values_differ() {
        let values: std::collections::HashSet<u64> = (0..64).map(|_| super::random_u64()).collect();
        assert!(values.len() > 60);
    }
}
