//! What the build scripts that build guest components share (`runtime/build.rs`
//! for the built-in guest, `guest-examples/artifacts/build.rs` for the
//! examples): as wasmtime's `crates/test-programs/artifacts/build.rs` does,
//! a guest workspace is built by a nested `cargo build` with its own target
//! directory, and the host's compiler flags are kept away from it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target guests are built for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Variables of the host build that must not reach a guest build (coverage,
/// sanitizers, `target-cpu`, wrappers, the host's target directory).
const HOST_ONLY: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// Asks cargo to rerun the build script when any of `paths` changes.
pub fn rerun_if_changed<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) {
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.as_ref().display());
    }
}

/// Installs the guest target with rustup when it is missing, so a plain
/// `cargo build` works on a fresh machine; panics with the command to run
/// when that is not possible.
pub fn ensure_guest_target() {
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
    let mut add = Command::new("rustup");
    add.args(["target", "add", GUEST_TARGET]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        add.args(["--toolchain", &toolchain]);
    }
    let added = add.status().map(|s| s.success()).unwrap_or(false);
    if !added || !sysroot.as_deref().is_some_and(installed) {
        panic!(
            "the {GUEST_TARGET} target is not installed for this toolchain and could not be \
             added automatically; run `rustup target add {GUEST_TARGET}`"
        );
    }
}

/// Builds the guest workspace (or crate) in `dir` in release mode for
/// [`GUEST_TARGET`] into `target_dir`, with its own lock file; panics with
/// the reason when the build fails.
pub fn build_guests(dir: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            GUEST_TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    for var in HOST_ONLY {
        cmd.env_remove(var);
    }
    let shown = dir.display();
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build the guests in {shown}: {e}"));
    assert!(
        status.success(),
        "building the guests in {shown} for {GUEST_TARGET} failed"
    );
}

/// Copies the component `file` built into `target_dir` to `out_dir`.
pub fn copy_component(target_dir: &Path, file: &str, out_dir: &Path) {
    let built = target_dir.join(GUEST_TARGET).join("release").join(file);
    std::fs::copy(&built, out_dir.join(file)).unwrap_or_else(|e| {
        panic!(
            "copying {} into {}: {e}",
            built.display(),
            out_dir.display()
        )
    });
}
