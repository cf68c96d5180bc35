//! Builds the guest workspace (`guest-examples/`) for `wasm32-wasip2` and the
//! JavaScript guest (`guest-examples/js-filter`), and copies each component
//! into `OUT_DIR`, where `src/lib.rs` points at it.
//!
//! The Rust guests are built by `wasmsink-guest-build`'s nested `cargo
//! build`, as the built-in guest is, away from the host's compiler flags.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use wasmsink_guest_build::{build_guests, copy_component, ensure_guest_target, rerun_if_changed};

/// Rust guests: the file name of each component of the guest workspace.
const RUST_GUESTS: &[&str] = &[
    "json_envelope.wasm",
    "webhook_signing.wasm",
    "http_retry.wasm",
    "test_guests.wasm",
];

/// Inputs of the builds, relative to `guest-examples/`.
const WATCHED: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "sdk",
    "json-envelope",
    "webhook-signing",
    "http-retry",
    "test-guests",
    "js-filter/src",
    "js-filter/build.mjs",
    "js-filter/package.json",
    "js-filter/package-lock.json",
    "../wit",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let guests_dir = manifest_dir
        .parent()
        .expect("artifacts/ has a parent")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    rerun_if_changed(WATCHED.iter().map(|w| guests_dir.join(w)));

    ensure_guest_target();
    let target_dir = out_dir.join("guest-target");
    build_guests(&guests_dir, &target_dir);
    for file in RUST_GUESTS {
        copy_component(&target_dir, file, &out_dir);
    }
    build_js_guest(
        &guests_dir.join("js-filter"),
        &out_dir.join("js_filter.wasm"),
    );
}

/// Runs `node build.mjs OUT` in the JS guest's folder, with componentize-js
/// from its `node_modules`.
fn build_js_guest(js_dir: &Path, out: &Path) {
    let hint = "run scripts/install-test-deps.sh";
    if !js_dir
        .join("node_modules/@bytecodealliance/componentize-js")
        .is_dir()
    {
        panic!(
            "{}/node_modules is missing, so the JavaScript guest cannot be built: {hint} \
             (it runs `npm ci --prefix guest-examples/js-filter`)",
            js_dir.display()
        );
    }
    let node = env::var("NODE").unwrap_or_else(|_| "node".into());
    let status = Command::new(&node)
        .current_dir(js_dir)
        .arg("build.mjs")
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("running `{node}` (Node.js 20 or later) failed: {e}; {hint}"));
    assert!(
        status.success(),
        "building the JavaScript guest in {} failed",
        js_dir.display()
    );
}
