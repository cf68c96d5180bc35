//! End-to-end tests: the real `wasmsink` binary, a real tansu broker process
//! and real HTTP receivers, all on loopback.
//!
//! Every test starts its own broker, so tests run in parallel. When tansu is
//! missing they fail (never skip) with the command that installs it.

mod support;

mod dead_letters;
mod delivery;
mod guests;
mod key_order;
mod lifecycle;
mod messengers;
mod rest;
mod security;
mod strategies;
