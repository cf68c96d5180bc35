#!/usr/bin/env bash
# The test command: installs what is missing, then runs lints, unit tests,
# the end-to-end tests against a real tansu broker, and the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "==> formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Guest crates are their own workspaces, built for wasm32-wasip2 only.
for guest in runtime/builtin-guest; do
    cargo fmt --manifest-path "$guest/Cargo.toml" -- --check
    cargo clippy --manifest-path "$guest/Cargo.toml" --target wasm32-wasip2 --locked --target-dir target/guest-lint -- -D warnings
done

echo "==> unit and end-to-end tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi

echo "==> quickstart (the README's one command)"
cargo run --locked --quiet -p wasmsink -- quickstart > target/quickstart.log 2>&1 || { cat target/quickstart.log; exit 1; }
tail -n 1 target/quickstart.log
