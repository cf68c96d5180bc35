//! Host bindings for the WIT worlds in `wit/plugin.wit`.
//!
//! One binding set per world a guest may target. A component may export the
//! transformer, the retry policy or both; the host instantiates it once and
//! builds a typed view for each world it satisfies. The shared `types` and
//! `logging` interfaces are generated once and reused.

/// The `transform-plugin` world: `lifecycle` + `transformer`.
#[allow(missing_docs)] // generated; the WIT file documents every item
pub mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform-plugin",
        exports: { default: async },
    });
}

/// The `retry-plugin` world: `lifecycle` + `retry-policy`.
#[allow(missing_docs)] // generated; the WIT file documents every item
pub mod retry {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "retry-plugin",
        exports: { default: async },
        with: {
            "wasmsink:plugin/types": super::transform::wasmsink::plugin::types,
            "wasmsink:plugin/logging": super::transform::wasmsink::plugin::logging,
        },
    });
}

pub use transform::wasmsink::plugin::logging::Level as LogLevel;
pub use transform::wasmsink::plugin::types::{
    AttemptInfo, AttemptOutcome, ErrorKind, Header, HttpMethod, HttpResponse, KafkaRecord,
    OutboundRequest, RecordRef, RetryDecision, TimestampType, TransformError, TransformOutcome,
    TransportError, TransportErrorKind,
};
