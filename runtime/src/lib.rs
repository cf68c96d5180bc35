//! wasmsink: a WebAssembly-pluggable Kafka-to-HTTP sink runtime.
//!
//! Records flow `source` (Kafka consumer, one lane per partition) →
//! `delivery` (the lane: delay, guest `transform`, HTTP attempts, guest
//! `decide`, dead letters) → `sink` (the HTTP client). The `guest` module
//! hosts the WebAssembly components; `config` reads and validates the TOML
//! file; `supervisor` starts, changes and stops the connectors; `messenger`
//! offers FusionAuth-compatible Kafka messengers; `api` serves both over REST.
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod connector;
pub mod control;
pub mod deadletter;
pub mod delivery;
pub mod guest;
pub mod kafka;
mod lane_threads;
pub mod messenger;
pub mod metrics;
pub mod quickstart;
pub mod security;
pub mod sink;
pub mod source;
pub mod store;
pub mod supervisor;

/// Installs rustls' ring crypto provider for the HTTP client; call once at
/// start-up (later calls are harmless).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Returns on the first SIGTERM or SIGINT.
pub async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let which = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(
        signal = which,
        "shutting down: finishing in-flight attempts and committing finished offsets"
    );
}
