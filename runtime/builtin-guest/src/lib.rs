//! The built-in guest: the seed connector's default behaviour as a
//! WebAssembly component.
//!
//! Every connector without a custom guest runs this component through
//! wasmtime, the same path a custom guest takes. It is deliberately thin: the
//! decisions live in the plain-Rust [`wasmsink_policy`] crate, which the host
//! also uses to validate configuration and which is unit-tested natively.
//!
//! * `init` reads `exception.strategy`, `retry.backoff.sec`,
//!   `request.retry.backoff.sec` and `callback.success.on.2xx`.
//! * `transform` sends the record value unchanged as the body (an empty body
//!   for a null value), with the connector's method and URL.
//! * `decide` applies [`wasmsink_policy::decide`].

use std::cell::RefCell;

use wasmsink_policy::{Decision, Outcome, StrategyConfig};

wit_bindgen::generate!({
    path: "../../wit",
    world: "connector-plugin",
});

use exports::wasmsink::plugin::{lifecycle, retry_policy, transformer};
use wasmsink::plugin::types::{
    AttemptInfo, AttemptOutcome, KafkaRecord, OutboundRequest, RecordRef, RetryDecision,
    TransformOutcome, TransportErrorKind,
};

thread_local! {
    /// The strategy set by `init`; a component instance is single-threaded.
    static CONFIG: RefCell<StrategyConfig> = RefCell::new(StrategyConfig::default());
}

/// The exported component.
struct BuiltinGuest;

impl lifecycle::Guest for BuiltinGuest {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let parsed =
            StrategyConfig::from_pairs(config.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|errors| {
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                })?;
        CONFIG.with(|slot| *slot.borrow_mut() = parsed);
        Ok(())
    }
}

impl transformer::Guest for BuiltinGuest {
    fn transform(rec: KafkaRecord) -> TransformOutcome {
        TransformOutcome::Deliver(OutboundRequest {
            method: None,
            path_and_query: None,
            headers: Vec::new(),
            body: rec.value.unwrap_or_default(),
        })
    }
}

impl retry_policy::Guest for BuiltinGuest {
    fn decide(_rec: RecordRef, outcome: AttemptOutcome, info: AttemptInfo) -> RetryDecision {
        let description;
        let outcome = match &outcome {
            AttemptOutcome::Response(response) => Outcome::Response {
                status: response.status,
                body: &response.body,
            },
            AttemptOutcome::Transport(error) => {
                description = format!("{}: {}", kind_name(error.kind), error.message);
                Outcome::Transport {
                    description: &description,
                }
            }
        };
        let decision =
            CONFIG.with(|config| wasmsink_policy::decide(&config.borrow(), &outcome, info.attempt));
        match decision {
            Decision::Accept => RetryDecision::Accept,
            Decision::RetryAfterMs(ms) => RetryDecision::RetryAfter(ms),
            Decision::Drop(reason) => RetryDecision::Drop(reason),
            Decision::Stop(reason) => RetryDecision::Stop(reason),
        }
    }
}

/// The kind as operators read it in reasons: `connect`, `dns`, `tls`, `timeout`, `io`.
fn kind_name(kind: TransportErrorKind) -> &'static str {
    match kind {
        TransportErrorKind::Connect => "connect",
        TransportErrorKind::Dns => "dns",
        TransportErrorKind::Tls => "tls",
        TransportErrorKind::Timeout => "timeout",
        TransportErrorKind::Io => "io",
    }
}

export!(BuiltinGuest);
