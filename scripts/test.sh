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
# guest-examples is a virtual workspace, so its fmt needs --all (which, for
# builtin-guest, would follow its path dependency into the main workspace).
cargo fmt --manifest-path runtime/builtin-guest/Cargo.toml -- --check
cargo fmt --all --manifest-path guest-examples/Cargo.toml -- --check
for guest in runtime/builtin-guest guest-examples; do
    cargo clippy --manifest-path "$guest/Cargo.toml" --target wasm32-wasip2 --locked --target-dir target/guest-lint -- -D warnings
done

echo "==> unit and end-to-end tests"
# The guest SDK's helpers and the example guests' logic, natively.
cargo clippy --manifest-path guest-examples/Cargo.toml --all-targets --locked --target-dir target/guest-test -- -D warnings
cargo test --manifest-path guest-examples/Cargo.toml --locked --target-dir target/guest-test
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi

echo "==> quickstart (the README's one command)"
cargo run --locked --quiet -p wasmsink -- quickstart > target/quickstart.log 2>&1 || { cat target/quickstart.log; exit 1; }
tail -n 1 target/quickstart.log
# The tally the README shows: a run that drops or never retries fails here.
expected="tally: produced=12 consumed=12 delivered=11 retried=4 dropped=1 dead-lettered=0 skipped=0"
tail -n 1 target/quickstart.log | grep -qxF "$expected" || {
    echo "the quickstart's tally is not the README's: $expected" >&2
    exit 1
}
scripts/bench.sh --smoke  # the benchmark harness, correctness only (never speed)
