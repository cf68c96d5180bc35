//! Paths of the example and test guest components, built by this crate's
//! build script (as wasmtime's `test-programs-artifacts` does), so the host's
//! tests never depend on prebuilt binaries.
//!
//! The Rust guests come from the guest workspace (`guest-examples/`), built
//! for `wasm32-wasip2`; the JavaScript guest from `guest-examples/js-filter`
//! with componentize-js from its `node_modules` (installed by
//! `scripts/install-test-deps.sh`).
//!
//! ```no_run
//! let bytes = std::fs::read(wasmsink_guest_artifacts::JSON_ENVELOPE).unwrap();
//! assert!(bytes.starts_with(b"\0asm"));
//! ```

/// `json-envelope`: transform only (exports `lifecycle`, `transformer`).
pub const JSON_ENVELOPE: &str = concat!(env!("OUT_DIR"), "/json_envelope.wasm");

/// `webhook-signing`: transform only (exports `lifecycle`, `transformer`).
pub const WEBHOOK_SIGNING: &str = concat!(env!("OUT_DIR"), "/webhook_signing.wasm");

/// `http-retry`: decide only (exports `lifecycle`, `retry-policy`).
pub const HTTP_RETRY: &str = concat!(env!("OUT_DIR"), "/http_retry.wasm");

/// `test-guests`: the hostile test guest (exports `lifecycle`,
/// `transformer`, `retry-policy`; imports `wasi:filesystem` for its `file`
/// behaviour).
pub const TEST_GUESTS: &str = concat!(env!("OUT_DIR"), "/test_guests.wasm");

/// `js-filter`: the JavaScript guest, transform only (exports `lifecycle`,
/// `transformer`).
pub const JS_FILTER: &str = concat!(env!("OUT_DIR"), "/js_filter.wasm");

/// Every component, by guest name.
pub const ALL: &[(&str, &str)] = &[
    ("json-envelope", JSON_ENVELOPE),
    ("webhook-signing", WEBHOOK_SIGNING),
    ("http-retry", HTTP_RETRY),
    ("test-guests", TEST_GUESTS),
    ("js-filter", JS_FILTER),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_artifact_is_a_component() {
        // Core modules have version 1; components carry version 0x0d, layer 1.
        const COMPONENT: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        for (name, path) in super::ALL {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{name}: {path}: {e}"));
            assert!(bytes.starts_with(&COMPONENT), "{name} is not a component");
        }
    }
}
