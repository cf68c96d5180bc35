//! Builds the built-in guest component for `wasm32-wasip2` and puts it in
//! `OUT_DIR`, so the host can embed it with `include_bytes!`.
//!
//! As wasmtime's `crates/test-programs/artifacts/build.rs` does, the guest is
//! built by a nested `cargo build` with its own target directory, and the
//! host's compiler flags are kept away from it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";

/// Guests built here: (crate directory under runtime/, file name of the component).
const GUESTS: &[(&str, &str)] = &[("builtin-guest", "wasmsink_builtin_guest.wasm")];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace_root = manifest_dir
        .parent()
        .expect("runtime/ has a parent")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    for watched in [
        "builtin-guest/src",
        "builtin-guest/Cargo.toml",
        "policy/src",
        "policy/Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(watched).display()
        );
    }
    println!(
        "cargo:rerun-if-changed={}",
        workspace_root.join("wit").display()
    );

    ensure_guest_target();
    let target_dir = out_dir.join("guest-target");
    for (crate_dir, file) in GUESTS {
        build_guest(&manifest_dir.join(crate_dir), &target_dir);
        let built = target_dir.join(GUEST_TARGET).join("release").join(file);
        std::fs::copy(&built, out_dir.join(file))
            .unwrap_or_else(|e| panic!("copying {} into OUT_DIR: {e}", built.display()));
    }
}

/// Installs the guest target with rustup when it is missing, so a plain
/// `cargo build` works on a fresh machine; fails with the command to run when
/// that is not possible.
fn ensure_guest_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    let installed = |root: &Path| root.join("lib/rustlib").join(GUEST_TARGET).exists();
    if sysroot.as_deref().is_some_and(installed) {
        return;
    }
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok();
    let mut add = Command::new("rustup");
    add.args(["target", "add", GUEST_TARGET]);
    if let Some(toolchain) = &toolchain {
        add.args(["--toolchain", toolchain]);
    }
    let added = add.status().map(|s| s.success()).unwrap_or(false);
    if !added || !sysroot.as_deref().is_some_and(installed) {
        panic!(
            "the {GUEST_TARGET} target is not installed for this toolchain and could not be \
             added automatically; run `rustup target add {GUEST_TARGET}`"
        );
    }
}

/// Builds one guest crate (its own workspace, with its own lock file).
fn build_guest(crate_dir: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            GUEST_TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    // Host flags (coverage, sanitizers, target-cpu) must not reach the guest.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let shown = crate_dir.display();
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build the guest in {shown}: {e}"));
    assert!(
        status.success(),
        "building the guest in {shown} for {GUEST_TARGET} failed"
    );
}
