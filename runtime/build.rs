//! Builds the built-in guest component for `wasm32-wasip2` and puts it in
//! `OUT_DIR`, so the host can embed it with `include_bytes!`. The nested
//! build is `wasmsink-guest-build`'s, shared with the example guests.

use std::env;
use std::path::PathBuf;

use wasmsink_guest_build::{build_guests, copy_component, ensure_guest_target, rerun_if_changed};

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace_root = manifest_dir.parent().expect("runtime/ has a parent");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    rerun_if_changed(
        [
            "builtin-guest/src",
            "builtin-guest/Cargo.toml",
            "policy/src",
            "policy/Cargo.toml",
        ]
        .map(|p| manifest_dir.join(p)),
    );
    rerun_if_changed([workspace_root.join("wit")]);

    ensure_guest_target();
    let target_dir = out_dir.join("guest-target");
    build_guests(&manifest_dir.join("builtin-guest"), &target_dir);
    copy_component(&target_dir, "wasmsink_builtin_guest.wasm", &out_dir);
}
